//! Policies that misbehave the way experimental code does — a panic with
//! locks held, a `ptl` never released, an ABBA between two CPUs — run on
//! the native engine: each run is abandoned and reported (an oops-like
//! summary, or a hung-task report naming who holds and who waits for
//! which lock) within the watchdog's time, the process goes on, and the
//! checker names the same bugs `deadlock` or `lock-order`.

use bench_core::kernel::{CollapsePolicy, DynPolicy};
use bench_core::results::RunFailure;
use bench_core::Oracle;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use workloads::check::{check_policy, CheckOptions};
use workloads::{preset, run_policy, RunError, RunOptions, Scenario};

/// Native runs take every core: one at a time.
static NATIVE: Mutex<()> = Mutex::new(());

const WATCHDOG: Duration = Duration::from_millis(500);
/// What the watchdog may take beyond its timeout on a loaded 2-core
/// machine: its tick, the other CPUs unwinding, the threads' joins.
const MARGIN: Duration = Duration::from_millis(2500);

fn opts() -> RunOptions {
    RunOptions {
        limit: bench_core::actor::Limit::Duration(Duration::from_secs(20)),
        pin: false,
        hook: None,
        git_revision: String::new(),
        watchdog: WATCHDOG,
    }
}

/// Run `policy` natively on `scenario`; return how it failed and how long that took.
fn fail(policy: Arc<dyn DynPolicy>, scenario: &Scenario) -> (RunFailure, Duration) {
    let _one = NATIVE.lock().unwrap_or_else(|p| p.into_inner());
    let t0 = Instant::now();
    match run_policy(policy, scenario, &opts()) {
        Err(RunError::Failed(failure)) => (*failure, t0.elapsed()),
        Err(RunError::Invalid(e)) => panic!("bad scenario: {e}"),
        Ok(run) => panic!("the run finished: {} collapses", run.collapses),
    }
}

#[path = "common/misbehaving.rs"]
mod misbehaving;
use misbehaving::{Abba, NeverReleasesPtl, PanicsInStep2, PanicsSlowly, PANIC_MESSAGE, SLOW_PANIC};

fn policy<P: CollapsePolicy>() -> Arc<dyn DynPolicy> {
    (bench_core::kernel::entry::<P>().build)(&serde_json::json!({})).unwrap()
}

fn two_collapsers() -> Scenario {
    let mut s = preset("uffd-private").unwrap();
    s.name = "two-collapsers".into();
    s.ranges = 2;
    s.threads = workloads::Threads { collapsers: 2, readers: 0, ..workloads::Threads::default() };
    s.validate().unwrap();
    s
}

/// Two threads that spin until dropped: the loaded machine CI runs on.
struct BusyLoops(Arc<std::sync::atomic::AtomicBool>, Vec<std::thread::JoinHandle<()>>);

impl BusyLoops {
    fn start(n: usize) -> BusyLoops {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spin = |stop: Arc<std::sync::atomic::AtomicBool>| {
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        };
        BusyLoops(stop.clone(), (0..n).map(|_| spin(stop.clone())).collect())
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        for h in self.1.drain(..) {
            let _ = h.join();
        }
    }
}

#[test]
fn a_panicking_policy_is_reported_with_its_step_location_and_locks() {
    let load = BusyLoops::start(2);
    let (failure, took) = fail(policy::<PanicsInStep2>(), &preset("uffd-private").unwrap());
    drop(load);
    let RunFailure::Panic { cpu, role, step, message, location, held_locks } = &failure else {
        panic!("not a panic: {failure:?}")
    };
    assert_eq!(message, PANIC_MESSAGE);
    assert_eq!((*cpu, role.as_deref(), step.as_deref()), (Some(0), Some("collapse"), Some("step 2 (clear)")));
    assert_eq!(held_locks, &["ptl (PTE table 0)"]);
    let location = location.as_deref().unwrap();
    assert!(location.contains(&misbehaving::panic_line()), "{location}");
    assert!(took < MARGIN, "the other CPUs unwound at once: {took:?}");
    assert_eq!(
        failure.summary(),
        format!(
            "panic on CPU 0 (collapse) at step 2 (clear) holding ptl (PTE table 0): test-panic: boom in step 2 (at \
             {location})"
        )
    );

    // The process goes on: a correct policy runs next, on a fresh model.
    let _one = NATIVE.lock().unwrap_or_else(|p| p.into_inner());
    let v1 = (policies::registry().into_iter().find(|e| e.name == "v1").unwrap().build)(&serde_json::json!({}));
    let opts = RunOptions { limit: bench_core::actor::Limit::Duration(Duration::from_millis(200)), ..opts() };
    let run = run_policy(v1.unwrap(), &preset("uffd-private").unwrap(), &opts).unwrap();
    assert!(run.collapses > 0 && run.violations_total == 0);
}

/// A CPU that is panicking is not hung, however long the panic takes to
/// report (a backtrace under `RUST_BACKTRACE=1` on a loaded machine), and
/// neither is the uffd CPU waiting behind the `ptl` it holds.
#[test]
fn a_panic_slower_to_report_than_the_watchdog_is_a_panic_not_a_hang() {
    assert!(SLOW_PANIC >= 4 * WATCHDOG);
    let (failure, took) = fail(policy::<PanicsSlowly>(), &preset("uffd-private").unwrap());
    let RunFailure::Panic { cpu, message, held_locks, .. } = &failure else { panic!("not a panic: {failure:?}") };
    assert_eq!((*cpu, message.as_str()), (Some(0), PANIC_MESSAGE));
    assert_eq!(held_locks, &["ptl (PTE table 0)"]);
    assert!(took >= SLOW_PANIC, "reported once the panic was: {took:?}");
}

#[test]
fn a_policy_that_never_releases_ptl_is_abandoned_by_the_watchdog() {
    let (failure, took) = fail(policy::<NeverReleasesPtl>(), &preset("uffd-private").unwrap());
    let RunFailure::Hung { watchdog_s, cpus, report } = &failure else { panic!("not a hang: {failure:?}") };
    assert_eq!(*watchdog_s, WATCHDOG.as_secs_f64());
    assert!(took >= WATCHDOG && took < WATCHDOG + MARGIN, "abandoned after {took:?}");
    let text = report.join("\n");
    eprintln!("{text}");
    // CPU 0 collapses, CPU 1 fills by uffd, CPU 2 reads (it goes on: not
    // hung). The uffd CPU blocked after the collapser: it is hung too, or
    // (on a loaded machine, at the first tick) among the others waiting.
    assert_eq!(cpus[0], 0, "{text}");
    assert!(!cpus.contains(&2), "{text}");
    for want in [
        "INFO: task collapse:CPU0 blocked for more than 0.5 seconds.\n      at step 1 (check)\n      waiting for page \
         lock of pfn 0x200",
        "waiting for ptl (PTE table 0) held by CPU 0 (collapse)",
        "Showing all locks held in the system:\n1 lock held by collapse/CPU0:\n #0: ptl (PTE table 0)",
    ] {
        assert!(text.contains(want), "{want}\nnot in\n{text}");
    }
    assert!(text.contains("INFO: task uffd:CPU1 blocked") || text.contains("uffd/CPU1 waiting"), "{text}");

    // The checker: sleeping under ptl, and every CPU blocked.
    let report = check_policy(
        &policy::<NeverReleasesPtl>(),
        &preset("uffd-private").unwrap(),
        &CheckOptions { schedules: 20, ..Default::default() },
    )
    .unwrap();
    assert_eq!(report.by_oracle.keys().copied().collect::<Vec<_>>(), [Oracle::LockOrder, Oracle::Deadlock]);
}

#[test]
fn an_abba_between_two_cpus_is_abandoned_naming_holders_and_waiters() {
    let (failure, took) = fail(policy::<Abba>(), &two_collapsers());
    let RunFailure::Hung { cpus, report, .. } = &failure else { panic!("not a hang: {failure:?}") };
    assert!(took < WATCHDOG + MARGIN, "abandoned after {took:?}");
    let text = report.join("\n");
    eprintln!("{text}");
    assert!(!cpus.is_empty() && cpus.iter().all(|&c| c < 2), "{text}");
    for want in [
        "waiting for pml (PMD table 0) held by CPU 1 (collapse)",
        "waiting for ptl (PTE table 0) held by CPU 0 (collapse)",
        "1 lock held by collapse/CPU0:\n #0: ptl (PTE table 0)\n1 lock held by collapse/CPU1:\n #0: pml (PMD table 0)",
    ] {
        assert!(text.contains(want), "{want}\nnot in\n{text}");
    }
    if cpus.len() == 2 {
        assert!(text.contains(
            "INFO: task collapse:CPU0 blocked for more than 0.5 seconds.\n      at step 4 (remove table)\n      \
             waiting for pml (PMD table 0) held by CPU 1 (collapse)"
        ));
    }

    // The checker finds the inverted order on the first schedule.
    let report =
        check_policy(&policy::<Abba>(), &two_collapsers(), &CheckOptions { schedules: 20, ..Default::default() })
            .unwrap();
    assert!(report.by_oracle.contains_key(&Oracle::LockOrder), "{:?}", report.by_oracle);
}

#[test]
fn a_panic_on_the_controlled_engine_is_caught_by_the_caller() {
    let scenario = preset("uffd-private").unwrap();
    let caught = bench_core::oops::catch(|| {
        check_policy(&policy::<PanicsInStep2>(), &scenario, &CheckOptions { schedules: 5, ..Default::default() })
    });
    let Err(panic) = caught else { panic!("the checker's run should have panicked") };
    assert_eq!(panic.message, PANIC_MESSAGE);
    assert!(panic.location.unwrap().contains(&misbehaving::panic_line()));
}
