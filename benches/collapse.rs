//! Criterion benchmarks of the model: what one collapse costs, how many a
//! collapser does per second, and what each instrumented primitive costs.
//!
//! # Groups
//!
//! * `uncontended_collapse` — one khugepaged-mode collapse
//!   (`install_pmd = false`) of a full 512-entry table, nobody else running,
//!   oracles off. Two functions, reported side by side:
//!   - `v1_framework`: the shipped `v1` policy through [`Harness::run_collapse`](bench_core::harness::Harness::run_collapse)
//!     on a one-range [`Mm`], with everything the framework adds (lock
//!     hold/wait clocks and histograms, lockdep-style order checks, the
//!     record of cleared entries, RCU read-side marks, the deferred table
//!     free, the per-collapse latency histogram).
//!   - `reference_loop`: the same memory and atomic operations on the same
//!     layout (4 KiB table of 512 `AtomicU64`, PMD table, 64-byte page
//!     structs in mmap'd memory, two ticket spinlocks, per-CPU counters,
//!     a 1024-entry direct-mapped TLB) written as one straight-line
//!     function with no framework and no instrumentation.
//!
//!   framework / reference is the model's overhead (target <= 1.25). Only
//!   the collapse is timed; the range is put back untimed between
//!   iterations (`iter_custom`). The two run seconds apart, so on a shared
//!   machine their quotient drifts from run to run by more than the
//!   overhead changes it should show: **the overhead figure is the
//!   `overhead` bench's** (`cargo bench --bench overhead`), which times the
//!   same two rounds in interleaved pairs and reports the median ratio. The reference leaves out, and so
//!   counts as overhead, what only the model does: clock reads and
//!   histograms, lock-order and `lockdep_assert_held` checks, RCU
//!   read-side marks, mmu-notifier bookkeeping, and `pte_free_defer()`'s
//!   page_table_check scan and deferred free of the table.
//! * `native_collapses_per_sec` — `workloads::run_policy` on the
//!   `shmem-shared` preset reduced to one range and the collapser alone
//!   (no faulters, no readers, oracles off), for `v1` and `v2-step3-down`.
//!   Throughput is collapses; each collapse is followed by the restore
//!   that puts the range back, so the figure is *collapse + restore*
//!   rounds per second, not collapses alone.
//! * `primitives` — uncontended costs of single primitives through [`Cx`]:
//!   `spin_lock` + `spin_unlock` of a `ptl`, `pte_offset_map_lock` +
//!   `pte_unmap_unlock`, 512 `ptep_get`s, one `touch` that hits the TLB,
//!   and `flush_tlb_range` of 2 MiB with one CPU in `mm_cpumask`.
//! * `presets` — every shipped policy on every preset: mean collapse
//!   latency with the preset's other actors running in the background
//!   (oracles off; restores and background work not counted).
//! * `simulation` — the simulation engine's own speed, oracles on:
//!   scheduling steps (a virtual CPU run up to its next stop; each is one
//!   or more charged primitives) per second of wall time, on one core,
//!   for `pml-contended` on its 5 CPUs and `mixed` scaled to 64 CPUs.
//!   The `mixed`/64 figure times 2 ms of virtual time; the target (1
//!   virtual second in <= 30 s) is that figure times 500, or run
//!   `collapse-bench run --engine sim -w mixed --cpus 64 --duration 1s`.
//! * `exhaustive` — every cell of the exhaustive checker's verdict matrix:
//!   every interleaving of a preset's scope for one policy
//!   (`uffd-private`, `pml-contended` and `markers` for the five shipped
//!   policies, `markers` for the v2 forms with `recheck_always=true`;
//!   target <= 1 s a cell). `cargo test --release -p workloads --test
//!   exhaustive por_table -- --ignored --nocapture` prints the cells'
//!   interleavings beside an estimate of their number without the
//!   reduction.
//! * `sampling` — the sampling checker's speed: 4,000 schedules of `v1` on
//!   `uffd-private` (the default PCT search, 24 operations per CPU) on one
//!   job and on two (target >= 10,000 schedules/s on one, and two >= 1.6
//!   times one on a 2-core machine). Throughput is schedules.

//! # Running
//!
//! ```text
//! cargo bench --bench collapse                          # everything, a few minutes
//! cargo bench --bench collapse -- uncontended           # one group (a filter)
//! cargo bench --bench collapse -- --save-baseline main  # record a baseline
//! cargo bench --bench collapse -- --baseline main       # compare against it
//! cargo bench --bench collapse -- --test                # smoke: each once
//! ```
//!
//! Criterion writes its estimates under `target/criterion/<group>/<function>/`;
//! the overhead ratio is `v1_framework` over `reference_loop` (means or
//! medians from `new/estimates.json`).

mod common;

use bench_core::actor::Limit;
use bench_core::harness::Harness;
use bench_core::kernel::DynPolicy;
use bench_core::kernel::{pmd_offset, PmdKind};
use bench_core::mm::{vpn, MAP_BASE};
use bench_core::pte::{HPAGE_PMD_SIZE, PTRS_PER_PTE};
use bench_core::CostModel;
use common::{assert_clean, cpu, framework_round, model, policy, policy_with, Reference};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use workloads::{run_policy, simulate_policy, RunOptions, SimOptions};

// ---------------------------------------------------------------------
// Group 1: uncontended_collapse
// ---------------------------------------------------------------------

/// `v1` through the framework: `cx.run_collapse()` timed, `restore_range()` not.
fn bench_v1_framework(c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let mm = model(1);
    let v1 = policy("v1");
    let haddr = MAP_BASE;
    let mut cx = cpu(&mm, 0);
    // Put CPU 0 in mm_cpumask (and cache one translation), so that
    // pmdp_collapse_flush() really walks this CPU's TLB over the 2 MiB
    // range, as the reference's flush does. Without it the flush would
    // find an empty cpumask and skip the work.
    assert!(cx.touch(haddr).is_some());
    framework_round(&mut cx, &*v1, haddr);
    c.bench_function("v1_framework", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| framework_round(&mut cx, &*v1, haddr)).sum())
    });
    drop(cx);
    assert_clean(&mm, "v1_framework");
}

/// The reference: `Reference::collapse()` timed, `Reference::restore()` not.
fn bench_reference(c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let r = Reference::new();
    r.round();
    c.bench_function("reference_loop", |b| b.iter_custom(|iters| (0..iters).map(|_| r.round()).sum()));
    // Balanced as the framework's teardown checks: page cache refs only
    // after a last collapse, every mapcount back to 0.
    assert!(r.collapse());
    assert_eq!(r.pages()[0].refcount.load(Ordering::Relaxed), 512);
    assert!(r.pages().iter().all(|p| p.mapcount.load(Ordering::Relaxed) == 0));
    assert_eq!(r.counters.0.shmem_pages.load(Ordering::Relaxed), 0);
}

fn uncontended_collapse(c: &mut Criterion) {
    let mut group = c.benchmark_group("uncontended_collapse");
    group
        .throughput(Throughput::Elements(1))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(60);
    bench_v1_framework(&mut group);
    bench_reference(&mut group);
    group.finish();
}

// ---------------------------------------------------------------------
// Group 2: native_collapses_per_sec
// ---------------------------------------------------------------------

/// Collapses per run: long enough (tens of ms) that the runner's 1 ms
/// stop-polling granularity stays a small part of the wall time.
const COLLAPSES_PER_RUN: u64 = 5000;

/// One collapser on one range of `shmem-shared`, alone: `run_policy()`'s
/// wall time for [`COLLAPSES_PER_RUN`] rounds. Each round is a collapse
/// *and* the restore that puts the range back (the Collapser's loop), so
/// the elements/s criterion prints are collapse + restore rounds per
/// second. The wall time also includes thread start-up and join, and up
/// to 1 ms of the runner's stop polling.
fn native_collapses_per_sec(c: &mut Criterion) {
    let mut scenario = workloads::preset("shmem-shared").expect("preset");
    for (key, value) in [("threads.faulters", "0"), ("threads.readers", "0"), ("ranges", "1"), ("oracles", "false")] {
        scenario.set(key, value).unwrap_or_else(|e| panic!("{key}={value}: {e}"));
    }
    scenario.validate().expect("valid scenario");
    let opts = RunOptions {
        limit: Limit::Ops { ops: COLLAPSES_PER_RUN, cap: Duration::from_secs(10) },
        pin: true,
        hook: None,
        git_revision: String::new(),
        watchdog: bench_core::watchdog::DEFAULT_TIMEOUT,
    };

    let mut group = c.benchmark_group("native_collapses_per_sec");
    group
        .throughput(Throughput::Elements(COLLAPSES_PER_RUN))
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10);
    for name in ["v1", "v2-step3-down"] {
        let p = policy(name);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut wall = Duration::ZERO;
                for _ in 0..iters {
                    let run = run_policy(p.clone(), &scenario, &opts).expect("run");
                    assert_eq!(run.violations_total, 0, "{name}: {:?}", run.violations);
                    assert!(
                        run.collapses >= COLLAPSES_PER_RUN,
                        "{name}: only {} collapses before the 10 s cap",
                        run.collapses
                    );
                    // Normalise to exactly COLLAPSES_PER_RUN (the stop flag
                    // can let one more round finish).
                    wall += Duration::from_secs_f64(run.wall_s * COLLAPSES_PER_RUN as f64 / run.collapses as f64);
                }
                wall
            })
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------
// Group 3: primitives
// ---------------------------------------------------------------------

fn primitives(c: &mut Criterion) {
    let mm = model(2);
    let haddr = MAP_BASE;
    let pmd = pmd_offset(&mm, haddr).expect("range 0 is in the model");
    let PmdKind::Table(slot) = mm.pmds.get(pmd.table, pmd.idx).kind() else {
        panic!("range 0 starts with a PTE table");
    };
    let ptl = mm.pte_lock_id(slot);
    let mut cx = cpu(&mm, 0);
    // CPU 0 joins mm_cpumask and caches the translation of haddr.
    assert!(cx.touch(haddr).is_some());

    let mut group = c.benchmark_group("primitives");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));

    group.bench_function("spin_lock+spin_unlock(ptl)", |b| {
        b.iter(|| {
            cx.spin_lock(black_box(ptl));
            cx.spin_unlock(black_box(ptl));
        })
    });

    group.bench_function("pte_offset_map_lock+pte_unmap_unlock", |b| {
        b.iter(|| {
            let (map, ptl) = cx.pte_offset_map_lock(black_box(pmd), haddr).expect("a table");
            cx.pte_unmap_unlock(black_box(map), ptl);
        })
    });

    let (map, _) = cx.pte_offset_map_nolock(pmd, haddr).expect("range 0 has a table");
    cx.pte_unmap(map);
    group.throughput(Throughput::Elements(PTRS_PER_PTE as u64));
    group.bench_function("ptep_get_x512", |b| {
        b.iter(|| {
            let map = black_box(map);
            let mut present = 0u32;
            for i in 0..PTRS_PER_PTE {
                present += u32::from(cx.ptep_get(map.at(i)).is_present());
            }
            present
        })
    });

    // Before the flush bench, which empties the TLB: the setup touch
    // cached haddr, so every touch here is a hit.
    group.throughput(Throughput::Elements(1));
    group.bench_function("touch_tlb_hit", |b| b.iter(|| cx.touch(black_box(haddr))));
    assert_eq!(mm.tlbs.lookup(0, vpn(haddr)), Some(mm.file_hpage(0)), "touch_tlb_hit measured hits");

    group.bench_function("flush_tlb_range_2M_1cpu", |b| {
        b.iter(|| cx.flush_tlb_range(black_box(haddr), haddr + HPAGE_PMD_SIZE))
    });
    group.finish();
    drop(cx);
    assert_clean(&mm, "primitives");
}

// ---------------------------------------------------------------------
// Group 4: every policy on every preset
// ---------------------------------------------------------------------

/// Collapses timed per iteration batch of `presets`.
const PRESET_COLLAPSES: u64 = 50;

/// `presets/<preset>/<policy>`: collapse latency with the preset's actors
/// running in the background, oracles off. Each sample runs the preset
/// natively until [`PRESET_COLLAPSES`] collapses and reports the summed
/// latency of the collapses alone (restores and the other actors' work are
/// not counted), so criterion's time is the mean collapse latency under
/// that preset's contention. On a 2-core machine most presets run more
/// threads than cores (the run says so): read these as relative figures.
fn presets(c: &mut Criterion) {
    let mut group = c.benchmark_group("presets");
    group
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(10);
    for (preset, _) in workloads::PRESETS {
        let mut scenario = workloads::preset(preset).expect("preset");
        scenario.set("oracles", "false").expect("oracles key");
        for entry in collapse_bench::registry() {
            let p = policy(entry.name);
            let opts = RunOptions {
                limit: Limit::Ops { ops: PRESET_COLLAPSES, cap: Duration::from_secs(10) },
                pin: true,
                hook: None,
                git_revision: String::new(),
                watchdog: bench_core::watchdog::DEFAULT_TIMEOUT,
            };
            group.bench_function(format!("{preset}/{}", entry.name), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut done = 0u64;
                    while done < iters {
                        let run = run_policy(p.clone(), &scenario, &opts).expect("run");
                        let Some(lat) = run.metrics.collapse_latency_ns.get("all") else { continue };
                        let take = lat.count.min(iters - done);
                        total += Duration::from_nanos((lat.mean * take as f64) as u64);
                        done += take;
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

// ---------------------------------------------------------------------
// Group 5: the simulation engine's speed
// ---------------------------------------------------------------------

/// Virtual time of one simulated run.
const SIM_VIRTUAL: Duration = Duration::from_millis(2);

fn simulation(c: &mut Criterion) {
    let mut group = c.benchmark_group("simulation");
    group.sampling_mode(SamplingMode::Flat).sample_size(10).measurement_time(Duration::from_secs(3));
    let opts = SimOptions { costs: CostModel::default(), limit: Limit::Duration(SIM_VIRTUAL) };
    for (preset, cpus) in [("pml-contended", 5), ("mixed", 64)] {
        let scenario = workloads::preset(preset).expect("preset").scaled_to(cpus);
        let p = policy("v2-flush-bool");
        // The run is deterministic: its step count is the throughput unit.
        let steps = simulate_policy(p.clone(), &scenario, &opts).expect("simulate").steps;
        group.throughput(Throughput::Elements(steps));
        group.bench_function(format!("{preset}/{cpus}cpus/steps"), |b| {
            b.iter(|| {
                let sim = simulate_policy(p.clone(), &scenario, &opts).expect("simulate");
                assert_eq!(sim.steps, steps, "a simulation repeats itself");
                sim.run.collapses
            })
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------
// Group 6: the exhaustive checker
// ---------------------------------------------------------------------

fn exhaustive(c: &mut Criterion) {
    use workloads::check::CheckOptions;
    use workloads::exhaustive::{check_exhaustive, scope, ExhaustiveOptions};
    let mut group = c.benchmark_group("exhaustive");
    group.sampling_mode(SamplingMode::Flat).sample_size(10).measurement_time(Duration::from_secs(3));
    // No shrinking: the cell is the exploration.
    let opts = CheckOptions { shrink_budget: 0, ..CheckOptions::default() };
    let five = ["v1", "v2-flush-bool", "v2-step3-down", "v2-posted", "pre-fix"];
    let mut cells: Vec<(&str, Arc<dyn DynPolicy>)> = vec![];
    for preset in ["uffd-private", "pml-contended", "markers"] {
        cells.extend(five.iter().map(|name| (preset, policy(name))));
    }
    let always = serde_json::json!({"recheck_always": true});
    cells.extend(five[1..4].iter().map(|name| ("markers", policy_with(name, &always))));
    for (preset, p) in cells {
        let scenario = scope(&workloads::preset(preset).expect("preset"));
        let cell = || check_exhaustive(&p, &scenario, &opts, &ExhaustiveOptions::default()).expect("explore");
        group.bench_function(format!("{preset}/{}", p.label()), |b| b.iter(|| cell().schedules));
    }
    group.finish();
}

// ---------------------------------------------------------------------
// Group 7: the sampling checker
// ---------------------------------------------------------------------

fn sampling(c: &mut Criterion) {
    use workloads::check::{check_policy, CheckOptions};
    let mut group = c.benchmark_group("sampling");
    group.sampling_mode(SamplingMode::Flat).sample_size(10).measurement_time(Duration::from_secs(3));
    let scenario = workloads::preset("uffd-private").expect("preset");
    let v1 = policy("v1");
    const SCHEDULES: u64 = 4000;
    group.throughput(Throughput::Elements(SCHEDULES));
    for jobs in [1, 2] {
        // No shrinking: the figure is the search.
        let opts = CheckOptions { schedules: SCHEDULES, jobs, shrink_budget: 0, ..CheckOptions::default() };
        group.bench_function(format!("uffd-private/v1/jobs-{jobs}"), |b| {
            b.iter(|| check_policy(&v1, &scenario, &opts).expect("check").schedules)
        });
    }
    group.finish();
}

/// Criterion draws its own plots with plotters, which (sharing the
/// workspace's plotters features) needs the embedded font registered.
fn config() -> Criterion {
    reports::plots::register_fonts().expect("embedded font");
    Criterion::default()
}

criterion_group! {
    name = benches;
    config = config();
    targets = uncontended_collapse, native_collapses_per_sec, primitives, presets, simulation, exhaustive, sampling
}
criterion_main!(benches);
