//! `cargo bench`: one uncontended collapse (khugepaged mode, a full
//! 512-entry table, nobody else running, oracles off) by `template-v1` and by
//! the shipped `v1`, through the framework, as collapse-bench's
//! `uncontended_collapse/v1_framework`. Under contention, compare them
//! with `cargo run --release -- report -p v1,template-v1`.
//!
//! ```text
//! cargo bench -- --save-baseline before   # then change the policy, and
//! cargo bench -- --baseline before        # compare with it
//! cargo bench -- --test                   # smoke: each once
//! ```

use bench_core::harness::{new_cpu, Harness};
use bench_core::kernel::{CollapsePolicy, ScanResult};
use bench_core::mm::{MmConfig, MAP_BASE};
use bench_core::{Mm, Native, Role};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use policies::v1::V1;
use std::time::{Duration, Instant};
use workloads::kernel_paths::restore_range;

use policy_template::TemplateV1;

/// One uncontended khugepaged-mode collapse of a full table by `P`, timed
/// through the framework; the range is put back untimed after each.
fn uncontended<P: CollapsePolicy>(group: &mut BenchmarkGroup<'_, WallTime>) {
    let mm = Mm::new(MmConfig { oracles: false, ..MmConfig::one_range(1) }).expect("valid model");
    let policy = P::new(Default::default());
    let haddr = MAP_BASE;
    let mut cx = new_cpu(&mm, 0, Role::Collapse, Native::new(Instant::now(), None, false));
    // CPU 0 in mm_cpumask, so that the flush really walks its TLB.
    assert!(cx.touch(haddr).is_some());
    group.bench_function(P::NAME, |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                let result = cx.run_collapse(&policy, haddr, false);
                timed += t0.elapsed();
                assert_eq!(result, ScanResult::Succeed, "an uncontended collapse of a full table succeeds");
                cx.set_role(Role::Restore);
                restore_range(&mut cx, 0);
                cx.set_role(Role::Collapse);
            }
            timed
        })
    });
}

fn uncontended_collapse(c: &mut Criterion) {
    let mut group = c.benchmark_group("uncontended_collapse");
    uncontended::<TemplateV1>(&mut group);
    uncontended::<V1>(&mut group);
    group.finish();
}

/// Criterion's plots need the embedded font registered (as collapse-bench's own benches do).
fn config() -> Criterion {
    reports::plots::register_fonts().expect("embedded font");
    Criterion::default()
}

criterion_group! {
    name = benches;
    config = config();
    targets = uncontended_collapse
}
criterion_main!(benches);
