//! A page table freed the wrong way: a copy of `v1` that frees the
//! detached table with `pte_free()` (at once) where v6.6 calls
//! `pte_free_defer()` (after an RCU grace period). The reader actor's
//! lockless walk (GUP-fast, the hardware walker) reads the PMD, may be
//! interleaved, then reads the PTE; when the collapse clears the PMD and
//! frees the table in between, the walk reads freed memory, and the
//! checker names the walker under `use-after-free`. The same policy with
//! `pte_free_defer()` — the shipped `v1` — is clean of it.
//!
//! Run `cargo test --release -p workloads --test table_free -- --nocapture`
//! for the figures: schedules and search time to the first finding over
//! ten seeds (that test runs in release builds only).

mod every_preset;
mod v1_copy;

use bench_core::kernel::{entry, CollapsePolicy, Cx, DynPolicy, Engine, NoParams, ScanResult};
use bench_core::results::TimelineEvent;
use bench_core::{Oracle, Role};
use every_preset::{check_every_preset, first_finding, median, oracles};
use std::sync::Arc;
use v1_copy::Slips;
use workloads::check::CheckReport;
use workloads::conformance::{conformance, ConformanceOptions};
use workloads::LATER_KERNEL_PRESETS;

/// PCT schedules per preset for the conformance suite (as the suite's
/// own tests, `conformance.rs`, run it).
const CONFORMANCE_SCHEDULES: u64 = 150;
/// `v1` with one slip: the table is freed with `pte_free()`.
struct V1PteFree(NoParams);

impl CollapsePolicy for V1PteFree {
    type Params = NoParams;
    const NAME: &'static str = "broken-v1-pte-free";
    const SUMMARY: &'static str = "broken on purpose: v1 that frees the table with pte_free(), no grace period";

    fn new(params: NoParams) -> Self {
        V1PteFree(params)
    }

    fn params(&self) -> &NoParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult {
        v1_copy::collapse(cx, haddr, install_pmd, Slips { pte_free: true, ..Slips::default() })
    }
}

fn broken() -> Arc<dyn DynPolicy> {
    Arc::new(V1PteFree(NoParams {}))
}

fn v1() -> Arc<dyn DynPolicy> {
    Arc::new(policies::v1::V1::new(NoParams {}))
}

/// The walker's finding: what the message must say, and who reports it.
fn assert_names_the_walker(v: &bench_core::Violation, roles: &[Role]) {
    assert_eq!(v.oracle, Oracle::UseAfterFree, "{v}");
    let cpu = v.cpu.expect("a CPU reports it");
    assert_eq!(roles[cpu as usize], Role::Reader, "{v}");
    assert_eq!(v.step.as_deref(), Some(Role::Reader.activity()), "{v}");
    let want = format!("on CPU {cpu} (reader) read PTE table ");
    assert!(v.message.starts_with("lockless walk (GUP-fast / hardware walker) of 0x"), "{v}");
    assert!(v.message.contains(&want), "{v}");
    assert!(v.message.contains("(pte_free() where pte_free_defer() is needed)"), "{v}");
}

#[test]
fn the_walker_sees_a_table_freed_with_pte_free_and_pte_free_defer_is_clean() {
    // pt-reclaim (empty-table reclaim, v6.14) is left out: there v1 itself
    // takes the ptl of a table freed under it (use-after-free), as every
    // form of the 6.6 line does.
    let v6_6 = |reports: Vec<(&'static str, CheckReport)>| -> Vec<(&'static str, CheckReport)> {
        reports.into_iter().filter(|(name, _)| !LATER_KERNEL_PRESETS.contains(name)).collect()
    };
    let (broken, v1) = (v6_6(check_every_preset(&broken(), 1)), v6_6(check_every_preset(&v1(), 1)));
    for ((name, b), (_, v)) in broken.iter().zip(&v1) {
        println!("{name}: pte_free {:?}, pte_free_defer {:?}", b.by_oracle, v.by_oracle);
        assert_eq!(b.schedules, v.schedules, "{name}");
        assert!(!v.by_oracle.contains_key(&Oracle::UseAfterFree), "{name}: v1 {:?}", v.by_oracle);
    }
    // Where the slip is the only difference: every preset but the two
    // with guard markers, whose race v1 loses as well.
    let found: Vec<&str> =
        broken.iter().filter(|(_, r)| r.by_oracle.contains_key(&Oracle::UseAfterFree)).map(|(n, _)| *n).collect();
    assert!(found.contains(&"uffd-private"), "{found:?}");
    for (name, report) in &broken {
        let beyond: Vec<Oracle> = report.by_oracle.keys().copied().filter(|&o| o != Oracle::UseAfterFree).collect();
        let v1_there: Vec<Oracle> = v1.iter().find(|(n, _)| n == name).unwrap().1.by_oracle.keys().copied().collect();
        assert_eq!(beyond, v1_there, "{name}: pte_free adds only use-after-free");
    }
    let cx = broken[0].1.first.as_ref().expect("uffd-private's counterexample");
    assert_eq!(cx.oracle(), Oracle::UseAfterFree, "{:#?}", cx.violations);
    assert_names_the_walker(&cx.violations[0], &cx.roles);
    // The timeline shows the free the walk ran into.
    assert!(cx.timeline.iter().any(|e| matches!(e.event, TimelineEvent::TableFreeNow { .. })), "{:#?}", cx.timeline);
    assert!(oracles(&v1).iter().all(|&o| o == Oracle::TableFreedLive), "{:?}", oracles(&v1));
}

#[test]
fn the_conformance_suite_fails_the_pte_free_copy_by_use_after_free() {
    let report = conformance(
        &entry::<V1PteFree>(),
        &serde_json::Value::Null,
        &ConformanceOptions { schedules: CONFORMANCE_SCHEDULES, ..ConformanceOptions::default() },
    );
    println!("{report}");
    assert!(!report.passed(), "{report}");
    // The functional cases pass: with no walker during the collapse,
    // freeing at once does no harm. The checker finds it.
    assert!(report.cases.iter().all(|c| c.passed()), "{report}");
    let caught: Vec<&str> =
        report.presets.iter().filter(|p| p.found(Oracle::UseAfterFree)).map(|p| p.preset.as_str()).collect();
    assert!(caught.contains(&"uffd-private"), "{report}");
    // Every failure outside the guard-marker presets and the later
    // kernels' page-table freers (where v1 fails too) is the walker's.
    for p in report.presets.iter().filter(|p| !p.future_inserters() && !p.later_kernel()) {
        let check = p.check.as_ref().expect("ran");
        assert!(check.by_oracle.keys().all(|&o| o == Oracle::UseAfterFree), "{}: {:?}", p.preset, check.by_oracle);
    }
    for why in &report.failures {
        assert!(why.contains("use-after-free"), "{why}\n{report}");
    }
}

#[test]
#[cfg_attr(debug_assertions, ignore = "a measurement: run it with --release")]
fn schedules_to_the_first_use_after_free_over_ten_seeds() {
    let policy = broken();
    let mut found = vec![];
    for seed in 1..=10 {
        let f = first_finding(&policy, Oracle::UseAfterFree, seed)
            .unwrap_or_else(|| panic!("seed {seed}: no preset found it"));
        println!(
            "seed {seed:>2}: {} schedule #{}, {} schedules in all, {:.3} s",
            f.preset, f.index, f.schedules, f.seconds
        );
        found.push(f);
    }
    println!(
        "broken-v1-pte-free: median {} schedules, {:.3} s to the first use-after-free (10 seeds)",
        median(found.iter().map(|f| f.schedules).collect()),
        median(found.iter().map(|f| f.seconds).collect())
    );
}
