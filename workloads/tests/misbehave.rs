//! Policies that misbehave the way experimental code does — a panic with
//! locks held, a `ptl` never released, an ABBA between two CPUs — run on
//! the native engine: each run is abandoned and reported (an oops-like
//! summary, or a hung-task report naming who holds and who waits for
//! which lock) within the watchdog's time, the process goes on, and the
//! checker names the same bugs `deadlock` or `lock-order`.

use bench_core::mm::range_addr;
use bench_core::results::RunFailure;
use bench_core::{CollapsePolicy, Cx, DynPolicy, Engine, NoParams, Oracle, PmdRef, ScanResult, Step};
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
        limit: bench_core::native::Limit::Duration(Duration::from_secs(20)),
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

/// Takes `ptl` at step 2 and panics with it held.
struct PanicsInStep2(NoParams);

impl CollapsePolicy for PanicsInStep2 {
    type Params = NoParams;
    const NAME: &'static str = "test-panic";
    const SUMMARY: &'static str = "panics at step 2 holding ptl (tests only)";

    fn new(params: NoParams) -> Self {
        PanicsInStep2(params)
    }

    fn params(&self) -> &NoParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, _install_pmd: bool) -> ScanResult {
        cx.step(Step::Prologue);
        let (_, Some(pmd)) = cx.find_pmd_or_thp_or_none(haddr) else { return ScanResult::Fail };
        cx.step(Step::Clear);
        let Some((_pte, _ptl)) = cx.pte_offset_map_lock(pmd, haddr) else { return ScanResult::Fail };
        panic!("test-panic: boom in step 2")
    }
}

/// Takes `ptl` at step 1 and then sleeps for the page lock it already
/// holds: it never returns, and `ptl` is never released, so uffd blocks
/// behind it.
struct NeverReleasesPtl(NoParams);

impl CollapsePolicy for NeverReleasesPtl {
    type Params = NoParams;
    const NAME: &'static str = "test-hang";
    const SUMMARY: &'static str = "sleeps on its own page lock holding ptl (tests only)";

    fn new(params: NoParams) -> Self {
        NeverReleasesPtl(params)
    }

    fn params(&self) -> &NoParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, _install_pmd: bool) -> ScanResult {
        cx.step(Step::Prologue);
        let Some(vma) = cx.vma_lookup(haddr) else { return ScanResult::VmaCheck };
        let Some(hpage) = cx.find_lock_page(vma, haddr) else { return ScanResult::PageNull };
        if let (ScanResult::Succeed, Some(pmd)) = cx.find_pmd_or_thp_or_none(haddr) {
            cx.step(Step::Check);
            if let Some((start_pte, ptl)) = cx.pte_offset_map_lock(pmd, haddr) {
                cx.lock_page(hpage);
                cx.pte_unmap_unlock(start_pte, ptl);
            }
        }
        cx.unlock_page(hpage);
        cx.put_page(hpage);
        ScanResult::Fail
    }
}

/// Range 0's collapser takes range 0's `ptl` then `pml`; range 1's takes
/// `pml` then range 0's `ptl`; each waits 20 ms between, so they
/// deadlock on their first collapse.
struct Abba(NoParams);

impl CollapsePolicy for Abba {
    type Params = NoParams;
    const NAME: &'static str = "test-abba-pair";
    const SUMMARY: &'static str = "ABBA on range 0's ptl and pml between two collapsers (tests only)";

    fn new(params: NoParams) -> Self {
        Abba(params)
    }

    fn params(&self) -> &NoParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, _install_pmd: bool) -> ScanResult {
        const PAUSE_NS: u64 = 20_000_000;
        let range0 = PmdRef { table: 0, idx: 0 };
        cx.step(Step::RemoveTable);
        let pml = cx.pmd_lockptr(range0);
        if haddr == range_addr(0) {
            let Some((pte, ptl)) = cx.pte_offset_map_lock(range0, range_addr(0)) else { return ScanResult::Fail };
            cx.ndelay(PAUSE_NS);
            cx.spin_lock(pml);
            cx.spin_unlock(pml);
            cx.pte_unmap_unlock(pte, ptl);
        } else {
            cx.spin_lock(pml);
            cx.ndelay(PAUSE_NS);
            if let Some((pte, ptl)) = cx.pte_offset_map_lock(range0, range_addr(0)) {
                cx.pte_unmap_unlock(pte, ptl);
            }
            cx.spin_unlock(pml);
        }
        ScanResult::Fail
    }
}

fn policy<P: CollapsePolicy>() -> Arc<dyn DynPolicy> {
    (bench_core::entry::<P>().build)(&serde_json::json!({})).unwrap()
}

fn two_collapsers() -> Scenario {
    let mut s = preset("uffd-private").unwrap();
    s.name = "two-collapsers".into();
    s.ranges = 2;
    s.threads = workloads::Threads { collapsers: 2, readers: 0, ..workloads::Threads::default() };
    s.validate().unwrap();
    s
}

#[test]
fn a_panicking_policy_is_reported_with_its_step_location_and_locks() {
    let line = 1 + include_str!("misbehave.rs").lines().position(|l| l.contains("panic!(\"test-panic")).unwrap();
    let (failure, took) = fail(policy::<PanicsInStep2>(), &preset("uffd-private").unwrap());
    let RunFailure::Panic { cpu, role, step, message, location, held_locks } = &failure else {
        panic!("not a panic: {failure:?}")
    };
    assert_eq!(message, "test-panic: boom in step 2");
    assert_eq!((*cpu, role.as_deref(), step.as_deref()), (Some(0), Some("collapse"), Some("step 2 (clear)")));
    assert_eq!(held_locks, &["ptl (PTE table 0)"]);
    let location = location.as_deref().unwrap();
    assert!(location.starts_with(&format!("workloads/tests/misbehave.rs:{line}:")), "{location}");
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
    let opts = RunOptions { limit: bench_core::native::Limit::Duration(Duration::from_millis(200)), ..opts() };
    let run = run_policy(v1.unwrap(), &preset("uffd-private").unwrap(), &opts).unwrap();
    assert!(run.collapses > 0 && run.violations_total == 0);
}

#[test]
fn a_policy_that_never_releases_ptl_is_abandoned_by_the_watchdog() {
    let (failure, took) = fail(policy::<NeverReleasesPtl>(), &preset("uffd-private").unwrap());
    let RunFailure::Hung { watchdog_s, cpus, report } = &failure else { panic!("not a hang: {failure:?}") };
    assert_eq!(*watchdog_s, WATCHDOG.as_secs_f64());
    assert!(took >= WATCHDOG && took < WATCHDOG + MARGIN, "abandoned after {took:?}");
    let text = report.join("\n");
    eprintln!("{text}");
    // CPU 0 collapses, CPU 1 fills by uffd, CPU 2 reads (it goes on: not hung).
    assert_eq!(cpus, &[0, 1], "{text}");
    for want in [
        "INFO: task collapse:CPU0 blocked for more than 0.5 seconds.\n      at step 1 (check)\n      waiting for page \
         lock of pfn 0x200",
        "INFO: task uffd:CPU1 blocked for more than 0.5 seconds.\n      waiting for ptl (PTE table 0) held by CPU 0 \
         (collapse)",
        "Showing all locks held in the system:\n1 lock held by collapse/CPU0:\n #0: ptl (PTE table 0)",
    ] {
        assert!(text.contains(want), "{want}\nnot in\n{text}");
    }

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
    assert_eq!(cpus, &[0, 1], "{text}");
    for want in [
        "INFO: task collapse:CPU0 blocked for more than 0.5 seconds.\n      at step 4 (remove table)\n      waiting \
         for pml (PMD table 0) held by CPU 1 (collapse)",
        "INFO: task collapse:CPU1 blocked for more than 0.5 seconds.\n      at step 4 (remove table)\n      waiting \
         for ptl (PTE table 0) held by CPU 0 (collapse)",
        "1 lock held by collapse/CPU0:\n #0: ptl (PTE table 0)\n1 lock held by collapse/CPU1:\n #0: pml (PMD table 0)",
    ] {
        assert!(text.contains(want), "{want}\nnot in\n{text}");
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
    let panic = caught.err().expect("the checker's run panicked");
    assert_eq!(panic.message, "test-panic: boom in step 2");
    assert!(panic.location.unwrap().starts_with("workloads/tests/misbehave.rs:"));
}
