//! The conformance suite on the five shipped policies and on broken
//! copies defined here, as a plugin author would define a policy in a
//! crate of their own: the suite must pass the correct ones, and catch
//! each broken one by the matching oracle — one that never flushes on
//! abort (stale-tlb, and the step 1 -> 2 window cases), one that drops
//! `ptl` before removing the table (table-freed-live), and one with a
//! plain functional bug (a leaked reference, caught by the functional
//! cases alone).
//!
//! Schedule counts: [`SCHEDULES`] PCT schedules per preset at seed 1
//! (schedules are deterministic, so each finding is too). There,
//! v2-posted's stale-tlb shows on pml-contended in 4 of 150 schedules,
//! first at #25, and pre-fix's table-freed-live on uffd-private and
//! pml-contended within the first 10.

use bench_core::harness::Harness;
use bench_core::kernel::{
    entry, CollapsePolicy, Cx, Engine, LockId, NoParams, Pfn, Pmd, PmdRef, PolicyEntry, ScanResult, Step, Vma,
    SINGLE_DEPTH_NESTING,
};
use bench_core::Oracle;
use policies::khugepaged::{account_cleared, clear_ptes, collapse_pte_mapped_thp};
use policies::recheck::RecheckParams;
use policies::v1::V1;
mod v2_copy;

use workloads::conformance::{assert_conforms, conformance, ConformanceOptions, ConformanceReport, Expect};

/// PCT schedules per preset.
const SCHEDULES: u64 = 150;

fn run(entry: &PolicyEntry, expect: Expect) -> ConformanceReport {
    let opts = ConformanceOptions { expect, schedules: SCHEDULES, ..ConformanceOptions::default() };
    let report = conformance(entry, &serde_json::Value::Null, &opts);
    println!("{report}");
    report
}

fn shipped(name: &str) -> PolicyEntry {
    policies::registry().into_iter().find(|e| e.name == name).unwrap_or_else(|| panic!("{name} is not registered"))
}

// ---------------------------------------------------------------------
// Broken copy (a): v2-step3-down that never flushes on abort.
// ---------------------------------------------------------------------

/// `v2-step3-down` with the abort path's flush forgotten.
struct NoAbortFlush(RecheckParams);

impl CollapsePolicy for NoAbortFlush {
    type Params = RecheckParams;
    const NAME: &'static str = "broken-no-abort-flush";
    const SUMMARY: &'static str = "broken on purpose: v2-step3-down whose abort path never flushes the TLB";

    fn new(params: RecheckParams) -> Self {
        NoAbortFlush(params)
    }

    fn params(&self) -> &RecheckParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult {
        let slips = v2_copy::Slips { no_abort_flush: true, ..v2_copy::Slips::default() };
        v2_copy::collapse(cx, haddr, install_pmd, self.0.recheck_always, slips)
    }
}

// ---------------------------------------------------------------------
// Broken copy (b): v1 that drops ptl before removing the table.
// ---------------------------------------------------------------------

/// `v1` without the early `pml` for uffd-armed private VMAs: `ptl` is
/// dropped after step 2 for every VMA, as before the fix.
struct DropsPtl(NoParams);

impl CollapsePolicy for DropsPtl {
    type Params = NoParams;
    const NAME: &'static str = "broken-drops-ptl";
    const SUMMARY: &'static str = "broken on purpose: v1 that drops ptl between step 2 and step 4 for every VMA";

    fn new(params: NoParams) -> Self {
        DropsPtl(params)
    }

    fn params(&self) -> &NoParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult {
        collapse_pte_mapped_thp(cx, haddr, install_pmd, drops_ptl_steps_2_to_4)
    }
}

fn drops_ptl_steps_2_to_4<E: Engine>(
    cx: &mut Cx<'_, E>,
    vma: &Vma,
    haddr: u64,
    hpage: Pfn,
    pmd: PmdRef,
    mut ptl: LockId,
) -> Result<Pmd, ScanResult> {
    let mut start_pte = None;
    let mut nr_ptes = 0;
    let result = 'abort: {
        // BROKEN: no early pmd_lock for uffd-armed private VMAs.
        let Some((table, table_ptl)) = cx.pte_offset_map_nolock(pmd, haddr) else {
            break 'abort ScanResult::Fail;
        };
        (start_pte, ptl) = (Some(table), table_ptl);
        cx.spin_lock(ptl);
        cx.step(Step::Clear);
        if let Err(result) = clear_ptes(cx, vma, haddr, hpage, table, &mut nr_ptes) {
            break 'abort result;
        }
        cx.pte_unmap(table);
        // BROKEN: ptl dropped with the table empty; uffd may fill it now.
        cx.spin_unlock(ptl);
        cx.step(Step::Account);
        account_cleared(cx, hpage, nr_ptes);
        cx.step(Step::RemoveTable);
        let pml = cx.pmd_lock(pmd);
        if ptl != pml {
            cx.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING);
        }
        let pgt_pmd = cx.pmdp_collapse_flush(vma, haddr, pmd);
        if ptl != pml {
            cx.spin_unlock(ptl);
        }
        cx.spin_unlock(pml);
        return Ok(pgt_pmd);
    };
    cx.step(Step::Abort);
    if nr_ptes != 0 {
        cx.flush_tlb_mm();
        account_cleared(cx, hpage, nr_ptes);
    }
    if let Some(start_pte) = start_pte {
        cx.pte_unmap_unlock(start_pte, ptl);
    }
    Err(result)
}

// ---------------------------------------------------------------------

// ---------------------------------------------------------------------
// A functional bug: v1 that keeps an extra reference on success.
// ---------------------------------------------------------------------

/// `v1`, then a stray `get_page()` after a successful collapse.
struct LeaksRef(V1);

impl CollapsePolicy for LeaksRef {
    type Params = NoParams;
    const NAME: &'static str = "broken-leaks-ref";
    const SUMMARY: &'static str = "broken on purpose: v1 plus a stray get_page on success";

    fn new(params: NoParams) -> Self {
        LeaksRef(V1::new(params))
    }

    fn params(&self) -> &NoParams {
        self.0.params()
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult {
        let result = self.0.collapse(cx, haddr, install_pmd);
        if result == ScanResult::Succeed {
            let hpage = cx.file_hpage(0);
            cx.get_page(hpage);
        }
        result
    }
}

// ---------------------------------------------------------------------

#[test]
fn v1_conforms() {
    let report = run(&shipped("v1"), Expect::Correct);
    assert!(report.passed(), "{report}");
    assert!(report.cases.len() > 50 && report.cases.iter().all(|c| c.passed()), "{report}");
    // The merged v1 loses the guard-marker race: reported apart, not a
    // failure.
    let markers = report.presets.iter().find(|p| p.preset == "markers").unwrap();
    assert!(markers.found(Oracle::TableFreedLive), "{report}");
    let text = report.to_string();
    assert!(text.contains("CONFORMS") && text.contains("future ptl-only inserters (guard markers"), "{text}");
}

/// The two repairs of v2 pass every functional case, and the default
/// suite finds their one window on `pml-contended` (and on `mixed`, the
/// other preset with a `pml` neighbour and uffd-armed VMAs, when its
/// search reaches it): when the trylock fails they drop `ptl` with step
/// 2's entries cleared and unflushed, UFFDIO_COPY fills one, and a CPU
/// that cached it reads the old subpage (stale-translation, and nothing
/// graver).
#[test]
fn the_v2_repairs_are_caught_by_stale_translation_at_the_default_schedules() {
    for name in ["v2-flush-bool", "v2-step3-down"] {
        let report = conformance(&shipped(name), &serde_json::Value::Null, &ConformanceOptions::default());
        println!("{report}");
        assert!(report.cases.len() > 50 && report.cases.iter().all(|c| c.passed()), "{report}");
        // (preset, explored on its scope, verdict)
        let failing: Vec<(&str, bool, Option<Oracle>)> = report
            .presets
            .iter()
            .filter_map(|p| p.check.as_ref().filter(|c| c.failed_beyond_guard_markers()).map(|c| (p, c)))
            .map(|(p, c)| (p.preset.as_str(), c.exhaustive.is_some(), c.gravest_beyond_guard_markers))
            .collect();
        let window = Some(Oracle::StaleTranslation);
        assert_eq!(failing.first(), Some(&("pml-contended", false, window)), "{name}: {report}");
        // The scope of pml-contended holds the window too (one copy, one
        // read, one pml hold suffice); sampling may find it on mixed.
        assert!(failing.contains(&("pml-contended", true, window)), "{name}: {report}");
        let elsewhere: Vec<_> = failing[1..].iter().filter(|f| **f != ("pml-contended", true, window)).collect();
        assert!(elsewhere.iter().all(|f| **f == ("mixed", false, window)), "{name}: {report}");
        assert!(!report.passed(), "{report}");
    }
}

#[test]
fn a_functional_bug_fails_the_cases_that_show_it() {
    let opts = ConformanceOptions { schedules: 0, ..ConformanceOptions::default() };
    let report = conformance(&entry::<LeaksRef>(), &serde_json::Value::Null, &opts);
    println!("{report}");
    assert!(!report.passed());
    let case = report.cases.iter().find(|c| c.name == "full table / private / khugepaged").unwrap();
    assert!(case.failures.contains(&"hpage refcount: expected 512, found 513".to_owned()), "{report}");
    assert!(case.failures.iter().any(|f| f.contains("[accounting]")), "{report}");
    // Only the cases that succeed show it.
    let aborted = report.cases.iter().find(|c| c.name == "COWed entry / private / khugepaged").unwrap();
    assert!(aborted.passed(), "{report}");
    assert!(report.to_string().contains("FAIL full table / private / khugepaged"), "{report}");
}

#[test]
fn always_rechecking_v2_is_immune_to_guard_markers() {
    let opts = ConformanceOptions {
        schedules: SCHEDULES,
        functional: false,
        presets: vec!["markers".into()],
        exhaustive: vec!["markers".into()],
        ..ConformanceOptions::default()
    };
    let report = conformance(&shipped("v2-step3-down"), &serde_json::json!({"recheck_always": true}), &opts);
    assert_eq!(report.policy, "v2-step3-down:recheck_always=true");
    assert!(report.passed() && report.presets.iter().all(|p| !p.failed()), "{report}");
    assert!(report.to_string().contains("markers scope   verified (793 interleavings, complete"), "{report}");
}

#[test]
fn v2_posted_is_caught_by_stale_tlb() {
    let report = run(&shipped("v2-posted"), Expect::Caught(Oracle::StaleTlb));
    assert!(report.passed(), "{report}");
    // And it is not correct.
    let as_correct = ConformanceOptions { functional: false, schedules: SCHEDULES, ..ConformanceOptions::default() };
    assert!(!conformance(&shipped("v2-posted"), &serde_json::Value::Null, &as_correct).passed());
}

#[test]
fn pre_fix_is_caught_by_table_freed_live() {
    let report = run(&shipped("pre-fix"), Expect::Caught(Oracle::TableFreedLive));
    assert!(report.passed(), "{report}");
}

#[test]
fn broken_copy_that_never_flushes_on_abort_is_caught_by_stale_tlb() {
    let e = entry::<NoAbortFlush>();
    // The step 1 -> 2 window cases make step 2 abort after clearing
    // entries that CPU 1 caches: each of them shows the missing flush, by
    // the stale-tlb oracle and by what CPU 1's TLB still holds. No other
    // case aborts after clearing anything.
    let opts = ConformanceOptions { schedules: 0, ..ConformanceOptions::default() };
    let report = conformance(&e, &serde_json::Value::Null, &opts);
    let failed: Vec<&str> = report.cases.iter().filter(|c| !c.passed()).map(|c| c.name.as_str()).collect();
    assert_eq!(failed.len(), 16, "{report}");
    assert!(failed.iter().all(|name| name.contains(", step 1 -> 2 / ")), "{report}");
    for case in report.cases.iter().filter(|c| !c.passed()) {
        assert_eq!(case.failures.len(), 2, "{report}");
        assert!(case.failures[0].ends_with("entries the collapse cleared: the abort path owes a flush"), "{report}");
        assert!(case.failures[1].contains("first: [stale-tlb] CPU 0 at abort: "), "{report}");
    }
    // The checker finds it too.
    let report = run(&e, Expect::Caught(Oracle::StaleTlb));
    assert!(report.presets.iter().any(|p| p.found(Oracle::StaleTlb)), "{report}");
    // Expected correct, it fails, naming the oracle and a replay token.
    let opts = ConformanceOptions { schedules: SCHEDULES, ..ConformanceOptions::default() };
    let report = conformance(&e, &serde_json::Value::Null, &opts);
    assert!(!report.passed());
    let text = report.to_string();
    assert!(
        text.contains("DOES NOT CONFORM") && text.contains("stale-tlb") && text.contains("replay token: s2-"),
        "{text}"
    );
}

#[test]
fn broken_copy_that_drops_ptl_is_caught_by_table_freed_live() {
    let e = entry::<DropsPtl>();
    let report = run(&e, Expect::Caught(Oracle::TableFreedLive));
    assert!(report.passed(), "{report}");
    let uffd = report.presets.iter().find(|p| p.preset == "uffd-private").unwrap();
    assert!(uffd.found(Oracle::TableFreedLive), "{report}");
    // The wrong expectation is a failure that says what was found instead.
    let opts = ConformanceOptions {
        expect: Expect::Caught(Oracle::StaleTlb),
        schedules: SCHEDULES,
        functional: false,
        ..ConformanceOptions::default()
    };
    let report = conformance(&e, &serde_json::Value::Null, &opts);
    assert!(!report.passed());
    assert!(report.failures[0].contains("expected caught by stale-tlb, but found uffd-private: "), "{report}");
}

/// The suite as a policy crate runs it (`assert_conforms`, default
/// schedules or `COLLAPSE_BENCH_CONFORMANCE_SCHEDULES`), on every shipped
/// policy, timed. Ignored by default: `cargo test --release -p workloads
/// --test conformance -- --ignored --nocapture`.
#[test]
#[ignore]
fn default_suite_on_every_shipped_policy() {
    let expect = |name: &str| match name {
        "v2-flush-bool" | "v2-step3-down" => Expect::Caught(Oracle::StaleTranslation),
        "v2-posted" => Expect::Caught(Oracle::StaleTlb),
        "pre-fix" => Expect::Caught(Oracle::TableFreedLive),
        _ => Expect::Correct,
    };
    for e in policies::registry() {
        let t0 = std::time::Instant::now();
        assert_conforms(&e, expect(e.name));
        println!("{}: {:.1} s", e.name, t0.elapsed().as_secs_f64());
    }
}

/// The excuse on the marker presets is the guard-marker race only: v1's
/// finding on `markers` (a table freed with guard markers in it) is
/// excused; pre-fix's finding on `mixed` (a table freed with the anon page
/// UFFDIO_COPY installed) fails a policy expected correct.
#[test]
fn only_the_guard_marker_race_is_excused_on_the_marker_presets() {
    // The suite's default schedules: pre-fix's race on `mixed` is rare
    // (3 in 1000 schedules at seed 1, the first #207).
    let only = |preset: &str| ConformanceOptions {
        functional: false,
        presets: vec![preset.into()],
        exhaustive: vec![],
        ..ConformanceOptions::default()
    };
    let v1 = conformance(&shipped("v1"), &serde_json::Value::Null, &only("markers"));
    let check = v1.presets[0].check.as_ref().unwrap();
    assert!(check.violating > 0 && check.guard_marker_races == check.violating, "{v1}");
    assert!(check.first.as_ref().unwrap().violations[0].freed_with_guard_markers_only(), "{v1}");
    assert!(v1.passed(), "{v1}");

    let pre_fix = conformance(&shipped("pre-fix"), &serde_json::Value::Null, &only("mixed"));
    let check = pre_fix.presets[0].check.as_ref().unwrap();
    assert!(check.failed_beyond_guard_markers(), "{pre_fix}");
    assert!(!pre_fix.passed(), "{pre_fix}");
    assert_eq!(pre_fix.failures.len(), 1, "{pre_fix}");
    assert!(pre_fix.failures[0].starts_with("expected correct, but the checker found "), "{pre_fix}");
    assert!(pre_fix.failures[0].contains("on preset mixed"), "{pre_fix}");
}

#[test]
fn the_guard_marker_race_is_recognised_from_the_entries_left() {
    use bench_core::pte::{Pte, PteMarker};
    use bench_core::Violation;
    let guard = Pte::marker(PteMarker::Guard);
    let page = Pte::present(Pfn(0xc02));
    let freed = |oracle: Oracle, live: Vec<(usize, Pte)>| Violation {
        oracle,
        cpu: Some(0),
        step: None,
        message: String::new(),
        cached: vec![],
        freed_live: live,
    };
    assert!(freed(Oracle::TableFreedLive, vec![(3, guard), (9, guard)]).freed_with_guard_markers_only());
    assert!(!freed(Oracle::TableFreedLive, vec![(3, guard), (9, page)]).freed_with_guard_markers_only());
    assert!(!freed(Oracle::TableFreedLive, vec![(9, page)]).freed_with_guard_markers_only());
    assert!(!freed(Oracle::TableFreedLive, vec![]).freed_with_guard_markers_only());
    assert!(!freed(Oracle::StaleTlb, vec![(3, guard)]).freed_with_guard_markers_only());
}

/// Beside the sampled presets, the suite explores every interleaving of
/// every scope that finishes, and says so: v1 is verified there, and
/// pre-fix is caught there by the oracle that names its bug.
#[test]
fn the_suite_explores_the_scopes_that_finish_exhaustively() {
    let scopes_only =
        |expect| ConformanceOptions { expect, functional: false, presets: vec![], ..ConformanceOptions::default() };
    let v1 = conformance(&shipped("v1"), &serde_json::Value::Null, &scopes_only(Expect::Correct));
    assert!(v1.passed(), "{v1}");
    let text = v1.to_string();
    assert!(
        text.contains(
            "every interleaving of the exhaustive scope of uffd-private, shmem-shared, pml-contended, no-split-locks, \
             markers, pt-reclaim, retract, guard-file"
        ),
        "{text}"
    );
    assert!(text.contains("pml-contended scope verified (7452 interleavings, complete"), "{text}");
    assert!(text.contains("uffd-private scope verified (701 interleavings, complete"), "{text}");
    assert!(text.contains("shmem-shared scope verified (96 interleavings, complete"), "{text}");
    let caught = scopes_only(Expect::Caught(Oracle::TableFreedLive));
    let pre_fix = conformance(&shipped("pre-fix"), &serde_json::Value::Null, &caught);
    assert!(pre_fix.passed(), "{pre_fix}");
    assert!(pre_fix.to_string().contains("uffd-private scope FOUND table-freed-live in 142/828"), "{pre_fix}");
    assert!(pre_fix.to_string().contains("pml-contended scope FOUND table-freed-live in 920/8322"), "{pre_fix}");
}
