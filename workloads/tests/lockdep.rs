//! The lock-order oracle end to end: a test-only policy that takes `pml`
//! blocking while it holds `ptl` (an ABBA against every correct path's
//! pml -> ptl) is reported on every schedule of the checker, including the
//! schedules where nothing deadlocked; the shipped policies, which take
//! `pml` -> `ptl`, `ptl` nested under `pml`, and `pml` only by trylock
//! under `ptl`, are not.

use bench_core::kernel::{CollapsePolicy, Cx, DynPolicy, Engine, NoParams, PmdRef, ScanResult, Step};
use bench_core::Oracle;
use std::sync::Arc;
use workloads::check::{check_policy, CheckOptions, CheckReport};
use workloads::preset;

/// Which locks the ABBA policy takes, and in which order.
const ABBA_ONLY: u8 = 0;
/// ptl -> pml at step 1, then pml -> ptl (unannotated) at step 4.
const PTL_FIRST: u8 = 1;
/// pml -> ptl (unannotated) at step 4 first, then ptl -> pml at step 1.
const PML_FIRST: u8 = 2;

/// Looks the range up, locks the huge page, takes the locks as `MODE`
/// says, changes nothing, and returns SCAN_FAIL with the page unlocked and
/// put: the model stays consistent, only the lock order is wrong.
struct Abba<const MODE: u8>(NoParams);

impl<const MODE: u8> CollapsePolicy for Abba<MODE> {
    type Params = NoParams;
    const NAME: &'static str = match MODE {
        ABBA_ONLY => "test-abba",
        PTL_FIRST => "test-abba-ptl-first",
        _ => "test-abba-pml-first",
    };
    const SUMMARY: &'static str = "takes pml blocking while holding ptl (tests only)";

    fn new(params: NoParams) -> Self {
        Abba(params)
    }

    fn params(&self) -> &NoParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, _install_pmd: bool) -> ScanResult {
        cx.step(Step::Prologue);
        let Some(vma) = cx.vma_lookup(haddr) else {
            return ScanResult::VmaCheck;
        };
        let Some(hpage) = cx.find_lock_page(vma, haddr) else {
            return ScanResult::PageNull;
        };
        if let (ScanResult::Succeed, Some(pmd)) = cx.find_pmd_or_thp_or_none(haddr) {
            if MODE == PML_FIRST {
                pml_then_ptl(cx, pmd, haddr);
            }
            // Step 1 under ptl, then pml taken *blocking* with ptl still
            // held: v2's trylock written as a spin_lock.
            cx.step(Step::Check);
            if let Some((start_pte, ptl)) = cx.pte_offset_map_lock(pmd, haddr) {
                let pml = cx.pmd_lock(pmd);
                cx.spin_unlock(pml);
                cx.pte_unmap_unlock(start_pte, ptl);
            }
            if MODE == PTL_FIRST {
                pml_then_ptl(cx, pmd, haddr);
            }
        }
        cx.unlock_page(hpage);
        cx.put_page(hpage);
        ScanResult::Fail
    }
}

/// Step 4's order, pml then ptl, but with ptl taken by a plain spin_lock
/// (no nesting annotation): allowed by the order rule, and the same graph
/// node as the ptl of step 1, so the graph sees both halves of the ABBA.
fn pml_then_ptl<E: Engine>(cx: &mut Cx<'_, E>, pmd: PmdRef, haddr: u64) {
    cx.step(Step::RemoveTable);
    let pml = cx.pmd_lock(pmd);
    if let Some((start_pte, ptl)) = cx.pte_offset_map_lock(pmd, haddr) {
        cx.pte_unmap_unlock(start_pte, ptl);
    }
    cx.spin_unlock(pml);
}

const SCHEDULES: u64 = 50;

fn check(policy: Arc<dyn DynPolicy>, preset_name: &str) -> CheckReport {
    let scenario = preset(preset_name).unwrap();
    check_policy(&policy, &scenario, &CheckOptions { schedules: SCHEDULES, ..Default::default() }).unwrap()
}

/// Every schedule reports lock-order; none deadlocks (nothing else in
/// uffd-private takes pml while the collapser holds ptl), so the report
/// comes from the rules, not from a deadlock that happened.
fn check_abba(policy: Arc<dyn DynPolicy>) -> Vec<String> {
    let report = check(policy, "uffd-private");
    assert_eq!(report.schedules, SCHEDULES);
    let (with_lock_order, _) = report.by_oracle.get(&Oracle::LockOrder).copied().unwrap_or_default();
    assert_eq!(with_lock_order, report.schedules, "{:#?}", report.by_oracle);
    let deadlocks = report.by_oracle.get(&Oracle::Deadlock).map_or(0, |d| d.0);
    assert!(deadlocks < report.schedules, "{:#?}", report.by_oracle);
    assert_eq!(report.by_oracle.keys().copied().collect::<Vec<_>>(), [Oracle::LockOrder], "{:#?}", report.by_oracle);
    let first = report.first.expect("a counterexample");
    let messages: Vec<String> =
        first.violations.iter().filter(|v| v.oracle == Oracle::LockOrder).map(|v| v.to_string()).collect();
    for m in &messages {
        eprintln!("{m}\n");
    }
    messages
}

fn scenario_table(held: &str, new: &str) -> String {
    let cpu1 = " ".repeat(31);
    [
        " Possible unsafe locking scenario:\n\n".to_owned(),
        "       CPU0                    CPU1\n".to_owned(),
        "       ----                    ----\n".to_owned(),
        format!("  lock({held});\n"),
        format!("{cpu1}lock({new});\n"),
        format!("{cpu1}lock({held});\n"),
        format!("  lock({new});\n\n *** DEADLOCK ***\n"),
    ]
    .concat()
}

#[test]
fn abba_is_reported_by_the_order_rule_on_every_schedule() {
    let messages = check_abba(Arc::new(Abba::<ABBA_ONLY>(NoParams {})));
    // Once per pair per run, with lockdep's wording and scenario.
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let m = &messages[0];
    for want in [
        "[lock-order] CPU 0 at step 1 (check): WARNING: possible circular locking dependency detected\n",
        "CPU 0 (collapse) is trying to acquire lock:\n (pml){+.+.}, pml (PMD table 0), at: step 1 (check)\n",
        "but CPU 0 is already holding lock:\n (ptl){+.+.}, ptl (PTE table 0)\n",
        "which breaks the lock order pml -> ptl: with ptl held, pml may\nonly be trylocked.\n",
        &scenario_table("ptl", "pml"),
        "1 lock held by CPU 0 (collapse):\n #0: (ptl){+.+.}, ptl (PTE table 0)\n",
    ] {
        assert!(m.contains(want), "missing {want:?} in\n{m}");
    }
}

#[test]
fn the_graph_closes_the_cycle_on_the_half_the_order_rule_allows() {
    let messages = check_abba(Arc::new(Abba::<PTL_FIRST>(NoParams {})));
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(messages[0].contains("which breaks the lock order pml -> ptl"), "{}", messages[0]);
    let m = &messages[1];
    for want in [
        "[lock-order] CPU 0 at step 4 (remove table): WARNING: possible circular locking dependency detected\n",
        "CPU 0 (collapse) is trying to acquire lock:\n (ptl){+.+.}, ptl (PTE table 0), at: step 4 (remove table)\n",
        "but CPU 0 is already holding lock:\n (pml){+.+.}, pml (PMD table 0)\n",
        "which lock already depends on the new lock.\n\n",
        "the existing dependency chain (in reverse order) is:\n\n\
         -> #1 (pml){+.+.}:\n       pml (PMD table 0), taken while holding ptl (PTE table 0)\n       \
         by CPU 0 (collapse) at step 1 (check)\n\
         -> #0 (ptl){+.+.}:\n       ptl (PTE table 0), taken while holding pml (PMD table 0)\n       \
         by CPU 0 (collapse) at step 4 (remove table)\n\n",
        &scenario_table("pml", "ptl"),
    ] {
        assert!(m.contains(want), "missing {want:?} in\n{m}");
    }
    assert!(!m.contains("breaks the lock order"), "{m}");
}

#[test]
fn one_report_when_the_graph_and_the_order_rule_agree() {
    let messages = check_abba(Arc::new(Abba::<PML_FIRST>(NoParams {})));
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let m = &messages[0];
    for want in [
        "is trying to acquire lock:\n (pml){+.+.}, pml (PMD table 0), at: step 1 (check)\n",
        "which lock already depends on the new lock.\n",
        "(and which breaks the lock order pml -> ptl",
        "-> #1 (ptl){+.+.}:\n       ptl (PTE table 0), taken while holding pml (PMD table 0)\n       \
         by CPU 0 (collapse) at step 4 (remove table)\n",
        &scenario_table("ptl", "pml"),
    ] {
        assert!(m.contains(want), "missing {want:?} in\n{m}");
    }
}

/// The shipped policies take pml -> ptl, ptl nested under pml, and pml
/// only by trylock under ptl: no lock-order report on any preset that
/// exercises those paths (trylock failures included: pml-contended,
/// markers), nor with mm-wide locks.
#[test]
fn shipped_policies_keep_the_lock_order() {
    for entry in policies::registry() {
        for params in [serde_json::json!({}), serde_json::json!({ "recheck_always": true })] {
            let Ok(policy) = (entry.build)(&params) else {
                continue;
            };
            for name in ["uffd-private", "pml-contended", "no-split-locks", "markers"] {
                let scenario = preset(name).unwrap();
                let opts = CheckOptions { schedules: 20, ..Default::default() };
                let report = check_policy(&policy, &scenario, &opts).unwrap();
                assert!(
                    !report.by_oracle.contains_key(&Oracle::LockOrder),
                    "{} on {name}: {:#?}",
                    policy.label(),
                    report.first.map(|f| f.violations)
                );
            }
        }
    }
}
