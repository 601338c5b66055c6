//! Runs of every preset under a correct policy, natively and on one
//! thread with the actors' operations interleaved deterministically.

mod common;

use bench_core::actor::{Actor as _, Limit};
use bench_core::harness::new_cpu;
use bench_core::harness::Harness;
use bench_core::kernel::{Cx, MmCounter, Step};
use bench_core::results::PolicyRun;
use bench_core::{Mm, Native, Oracle, Role, StepHook};
use common::EarlyPml;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use workloads::{preset, run_policy, Actor, RunError, RunOptions, Scenario, PRESETS};

fn opts(ops: u64) -> RunOptions {
    RunOptions {
        limit: Limit::Ops { ops, cap: Duration::from_secs(5) },
        pin: false,
        hook: None,
        git_revision: String::new(),
        watchdog: bench_core::watchdog::DEFAULT_TIMEOUT,
    }
}

/// Native runs take every core: one at a time, whatever the harness does.
static NATIVE: Mutex<()> = Mutex::new(());

/// 50 collapses of `name` under the correct policy: no violation during
/// the run or at teardown, and every actor did something. On a loaded
/// machine a thread may not get a CPU before the collapser has made its
/// 50 (a millisecond or two): then the run is made again with ten times
/// as many collapses, up to 5000, each run held to the same rules.
fn runs_clean(name: &str) {
    let _serial = NATIVE.lock().unwrap_or_else(|p| p.into_inner());
    let scenario = preset(name).unwrap();
    for collapses in [50, 500, 5000] {
        let run = run_policy(common::early_pml(), &scenario, &opts(collapses)).unwrap();
        assert_eq!(run.violations_total, 0, "{name}: {:#?}", run.violations);
        assert!(run.collapses >= collapses, "{name}: {} collapses", run.collapses);
        assert_eq!(run.workload, name);
        assert_eq!(run.policy, "test-early-pml");
        assert_eq!(run.threads, scenario.threads.total() as usize);
        let classes: Vec<&str> = run.locks.keys().map(String::as_str).collect();
        if scenario.split_pte_ptlocks {
            assert_eq!(classes, ["pml", "ptl"], "{name}");
        } else {
            assert_eq!(classes, ["page_table_lock"], "{name}");
        }
        assert!(run.locks.values().all(|s| s.hold_ns > 0), "{name}");
        let ops = &run.metrics.counters.ops;
        assert_eq!(ops["restore"], run.collapses, "{name}: one restore per collapse");
        let idle: Vec<Role> = workloads::scenario::ACTOR_ROLES
            .into_iter()
            .filter(|&role| role != Role::Collapse)
            .filter(|&role| {
                let done = ops.get(role.name()).copied().unwrap_or(0);
                assert!(scenario.threads.of(role) > 0 || done == 0, "{name}: {done} ops of absent {role}");
                scenario.threads.of(role) > 0 && done == 0
            })
            .collect();
        if idle.is_empty() {
            return;
        }
        assert!(collapses < 5000, "{name}: {idle:?} did nothing in {} collapses", run.collapses);
    }
}

macro_rules! preset_tests {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(#[test]
        fn $test() {
            runs_clean($name);
        })*

        #[test]
        fn every_preset_has_a_run_test() {
            let tested = [$($name),*];
            let all: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
            assert_eq!(tested.to_vec(), all);
        }
    };
}

preset_tests! {
    uffd_private_runs_clean => "uffd-private",
    shmem_shared_runs_clean => "shmem-shared",
    pml_contended_runs_clean => "pml-contended",
    cow_swap_runs_clean => "cow-swap",
    no_split_locks_runs_clean => "no-split-locks",
    markers_runs_clean => "markers",
    pt_reclaim_runs_clean => "pt-reclaim",
    retract_runs_clean => "retract",
    guard_file_runs_clean => "guard-file",
    mixed_runs_clean => "mixed",
}

#[test]
fn bad_scenario_is_refused_before_running() {
    let mut s = preset("uffd-private").unwrap();
    s.density = 513;
    let Err(RunError::Invalid(e)) = run_policy(common::early_pml(), &s, &opts(1)) else {
        panic!("a bad scenario is bad input")
    };
    assert_eq!(e.field.as_deref(), Some("density"));
}

/// What a deterministic single-thread run ends with.
#[derive(Debug, PartialEq)]
struct Outcome {
    ops: BTreeMap<String, u64>,
    results: BTreeMap<String, u64>,
    /// Most anon pages and swap entries seen at once, sampled every round.
    peak_anon: i64,
    peak_swap: i64,
    violations: u64,
}

/// Every actor of `scenario` on this one thread, one operation each per
/// round, for `rounds` rounds: no lock is ever contended (each operation
/// drops what it took), so the outcome depends only on the seed.
fn interleave(scenario: &Scenario, rounds: usize) -> Outcome {
    let mm = Mm::new(scenario.mm_config()).unwrap();
    let mut actors = Actor::for_scenario(scenario, &common::early_pml());
    let base = Instant::now();
    let mut cxs: Vec<Cx<'_, Native>> = actors
        .iter()
        .enumerate()
        .map(|(cpu, a)| new_cpu(&mm, cpu as u32, a.role(), Native::new(base, None, false)))
        .collect();
    let (mut peak_anon, mut peak_swap) = (0, 0);
    for _ in 0..rounds {
        for (a, cx) in actors.iter_mut().zip(&mut cxs) {
            a.op(cx);
        }
        peak_anon = peak_anon.max(mm.counter(MmCounter::AnonPages));
        peak_swap = peak_swap.max(mm.counter(MmCounter::SwapEnts));
    }
    let mut metrics = bench_core::Metrics::default();
    for cx in cxs {
        metrics.merge(cx.into_metrics());
    }
    let teardown = mm.exit_mmap();
    assert!(teardown.is_empty(), "{teardown:#?}");
    assert_eq!(mm.pages.anon_in_use(), 0);
    let counters = metrics.counts.summary();
    Outcome {
        ops: counters.ops,
        results: counters.results,
        peak_anon,
        peak_swap,
        violations: mm.violations.snapshot().1,
    }
}

#[test]
fn interleaved_actors_keep_every_count_balanced() {
    for name in ["mixed", "cow-swap", "markers", "shmem-shared"] {
        let mut s = preset(name).unwrap();
        s.density = 64;
        let out = interleave(&s, 300);
        assert_eq!(out.violations, 0, "{name}");
        assert_eq!(out.results.values().sum::<u64>(), 300, "{name}");
        for (role, n) in &out.ops {
            assert_eq!(*n, 300, "{name}: {role}");
        }
        if s.threads.cow > 0 {
            assert!(out.peak_anon > 0, "{name}: COW made anon copies");
            assert!(out.peak_swap > 0, "{name}: swap-out ran");
        }
    }
}

#[test]
fn same_seed_same_outcome() {
    let mut s = preset("mixed").unwrap();
    s.density = 128;
    let a = interleave(&s, 200);
    assert_eq!(interleave(&s, 200), a);
    s.seed = 99;
    assert_ne!(interleave(&s, 200), a, "the seed drives the choices");
}

/// Sleep at step 3 (accounting): the window between dropping `ptl` after
/// step 2 and taking `pml` for step 4, where only the page lock guards
/// the emptied table.
fn widened_step3() -> StepHook {
    Arc::new(|_, step| {
        if step == Step::Account {
            std::thread::sleep(Duration::from_micros(50));
        }
    })
}

/// 200 collapses of preset `name` under `early`, with the window widened.
fn widened(early: EarlyPml, name: &str) -> PolicyRun {
    let _serial = NATIVE.lock().unwrap_or_else(|p| p.into_inner());
    let options = RunOptions { hook: Some(widened_step3()), ..opts(200) };
    run_policy(common::policy(early), &preset(name).unwrap(), &options).unwrap()
}

/// Whether a table was freed holding an entry described as `what`.
fn freed_live(run: &PolicyRun, what: &str) -> bool {
    run.violations.iter().any(|v| v.oracle == Oracle::TableFreedLive && v.message.contains(what))
}

#[test]
fn uffd_fills_break_the_pre_fix_code() {
    let run = widened(EarlyPml::Never, "uffd-private");
    assert!(freed_live(&run, "anon page installed by uffd"), "{:#?}", run.violations);
    let run = widened(EarlyPml::UffdPrivate, "uffd-private");
    assert_eq!(run.violations_total, 0, "v1 closes it: {:#?}", run.violations);
}

#[test]
fn guard_markers_break_v1_where_it_takes_no_early_pml() {
    let run = widened(EarlyPml::UffdPrivate, "markers");
    assert!(freed_live(&run, "guard marker"), "{:#?}", run.violations);
    let run = widened(EarlyPml::Always, "markers");
    assert_eq!(run.violations_total, 0, "{:#?}", run.violations);
}
