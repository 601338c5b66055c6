//! One-line slips in copies of shipped policies, one per gap issue 13
//! found in what the checker looked at, each caught by the oracle that
//! names its bug: by the default `check` (every preset, the schedules
//! split among them: [`check_every_preset`]) and by the conformance suite.
//! Each test also shows the gap: where the slip hides from a narrower look.
//!
//! - The default scope: `v2-step3-down` whose recheck after a failed
//!   trylock tests the wrong VMA kind. Only a contended `pml` makes the
//!   trylock fail, and `uffd-private` has no neighbour: it is ok there.
//! - Partly-populated tables: `v1` whose abort path skips the flush when it
//!   took `pml` early. Step 2 aborts after clearing only when an entry
//!   changed in the step 1 -> step 2 window; on a uffd-armed VMA that is
//!   UFFDIO_COPY into a hole, which a full table does not have.
//! - Marker presets: `v2-step3-down:recheck_always=true` (immune to the
//!   guard-marker race) whose abort path, stopped by a non-present entry,
//!   forgets what step 2 already cleared. On `markers`, its recheck pass
//!   finding a marker in a slot step 2 emptied is what stops it; the
//!   finding there is not the excused race, and must not be excused.
//! - The step 1 -> step 2 window: `v1` whose step 2 trusts step 1 and
//!   clears whatever is present. The conformance suite's window cases fail
//!   it functionally.

use bench_core::kernel::{entry, CollapsePolicy, Cx, DynPolicy, Engine, NoParams, PolicyEntry, ScanResult};
use bench_core::Oracle;
use policies::recheck::RecheckParams;
use std::sync::Arc;
use workloads::check::{check_every_preset, check_policy, overall_failure, CheckOptions, CheckReport};
use workloads::conformance::{conformance, ConformanceOptions, ConformanceReport};
use workloads::{preset, Scenario};

mod every_preset;
mod v1_copy;
mod v2_copy;
use every_preset::{first_finding, median};

/// The slips, by the gap each shows.
const RECHECK_SHARED_ONLY: u8 = 0;
const NO_FLUSH_UNDER_EARLY_PML: u8 = 1;
const FORGETS_CLEARED_ON_NON_PRESENT: u8 = 2;
const STEP_2_TRUSTS_STEP_1: u8 = 3;

// ---------------------------------------------------------------------
// v2-step3-down with a slip (the copy of `v2_copy`).
// ---------------------------------------------------------------------

/// `v2-step3-down` with slip `SLIP`.
struct SlippedV2<const SLIP: u8>(RecheckParams);

impl<const SLIP: u8> CollapsePolicy for SlippedV2<SLIP> {
    type Params = RecheckParams;
    const NAME: &'static str = match SLIP {
        RECHECK_SHARED_ONLY => "slip-recheck-shared-only",
        _ => "slip-forgets-cleared-on-non-present",
    };
    const SUMMARY: &'static str = "broken on purpose: v2-step3-down with one slip";

    fn new(params: RecheckParams) -> Self {
        SlippedV2(params)
    }

    fn params(&self) -> &RecheckParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult {
        let slips = v2_copy::Slips {
            recheck_shared_only: SLIP == RECHECK_SHARED_ONLY,
            forgets_cleared_on_non_present: SLIP == FORGETS_CLEARED_ON_NON_PRESENT,
            ..v2_copy::Slips::default()
        };
        v2_copy::collapse(cx, haddr, install_pmd, self.0.recheck_always, slips)
    }
}

// ---------------------------------------------------------------------
// v1 with a slip (the copy of `v1_copy`).
// ---------------------------------------------------------------------

/// `v1` with slip `SLIP`.
struct SlippedV1<const SLIP: u8>(NoParams);

impl<const SLIP: u8> CollapsePolicy for SlippedV1<SLIP> {
    type Params = NoParams;
    const NAME: &'static str = match SLIP {
        NO_FLUSH_UNDER_EARLY_PML => "slip-no-flush-under-early-pml",
        _ => "slip-step-2-trusts-step-1",
    };
    const SUMMARY: &'static str = "broken on purpose: v1 with one slip";

    fn new(params: NoParams) -> Self {
        SlippedV1(params)
    }

    fn params(&self) -> &NoParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult {
        let slips = v1_copy::Slips {
            no_flush_under_early_pml: SLIP == NO_FLUSH_UNDER_EARLY_PML,
            step_2_trusts_step_1: SLIP == STEP_2_TRUSTS_STEP_1,
            ..v1_copy::Slips::default()
        };
        v1_copy::collapse(cx, haddr, install_pmd, slips)
    }
}

// ---------------------------------------------------------------------
// How each is judged.
// ---------------------------------------------------------------------

/// The default `check`'s budget and seed, without shrinking (the verdict
/// does not depend on it).
fn default_options() -> CheckOptions {
    CheckOptions { shrink_budget: 0, ..CheckOptions::default() }
}

fn built(entry: &PolicyEntry) -> Arc<dyn DynPolicy> {
    (entry.build)(&serde_json::Value::Null).expect("default parameters")
}

/// `collapse-bench check -p NAME`: the overall verdict, (preset, oracle).
fn default_check(entry: &PolicyEntry) -> Option<(String, Oracle)> {
    verdict(&check_every_preset(&built(entry), &default_options()).expect("the presets run"))
}

fn verdict(reports: &[(Scenario, CheckReport)]) -> Option<(String, Oracle)> {
    overall_failure(reports.iter().map(|(s, r)| (s.name.as_str(), r))).map(|(p, o)| (p.to_owned(), o))
}

/// `collapse-bench check -p NAME -w PRESET`, at the default schedules.
fn check_one(entry: &PolicyEntry, scenario: &Scenario) -> CheckReport {
    check_policy(&built(entry), scenario, &default_options()).expect("the preset runs")
}

/// The conformance suite as a policy crate runs it, expecting correct.
fn conforms(entry: &PolicyEntry) -> ConformanceReport {
    let report = conformance(entry, &serde_json::Value::Null, &ConformanceOptions::default());
    println!("{report}");
    report
}

/// The oracles the suite's checker found, over its presets.
fn found(report: &ConformanceReport) -> Vec<Oracle> {
    let mut out: Vec<Oracle> =
        report.presets.iter().filter_map(|p| p.check.as_ref()).flat_map(|c| c.by_oracle.keys().copied()).collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn default_scope_a_wrong_recheck_condition_shows_only_under_pml_contention() {
    let e = entry::<SlippedV2<RECHECK_SHARED_ONLY>>();
    let alone = check_one(&e, &preset("uffd-private").unwrap());
    assert!(!alone.failed(), "no neighbour, no failed trylock: {:?}", alone.by_oracle);
    assert_eq!(default_check(&e), Some(("pml-contended".to_owned(), Oracle::TableFreedLive)));
    let report = conforms(&e);
    assert!(!report.passed(), "{report}");
    assert!(report.cases.iter().all(|c| c.passed()), "only racing shows it: {report}");
    let preset = report.presets.iter().find(|p| p.preset == "pml-contended").unwrap();
    assert!(preset.found(Oracle::TableFreedLive), "{report}");
}

#[test]
fn partly_populated_a_skipped_abort_flush_under_the_early_pml_needs_a_hole() {
    let e = entry::<SlippedV1<NO_FLUSH_UNDER_EARLY_PML>>();
    let mut full = preset("uffd-private").unwrap();
    full.density = 512;
    let on_full = check_one(&e, &full);
    assert!(!on_full.failed(), "a full table: step 2 never aborts: {:?}", on_full.by_oracle);
    let partial = check_one(&e, &preset("uffd-private").unwrap());
    assert_eq!(partial.by_oracle.keys().copied().collect::<Vec<_>>(), [Oracle::StaleTlb]);
    assert_eq!(default_check(&e), Some(("uffd-private".to_owned(), Oracle::StaleTlb)));
    let report = conforms(&e);
    assert!(!report.passed(), "{report}");
    assert!(found(&report).contains(&Oracle::StaleTlb), "{report}");
}

#[test]
fn marker_presets_a_finding_beside_the_guard_marker_race_counts() {
    // Rechecking always, the copy is immune to the guard-marker race, as
    // v2-step3-down:recheck_always=true is; but when its recheck pass
    // finds a marker in a slot step 2 emptied, the slip drops the count of
    // what step 2 cleared: no flush, no references given back.
    let e = entry::<SlippedV2<FORGETS_CLEARED_ON_NON_PRESENT>>();
    let always = serde_json::json!({"recheck_always": true});
    let policy = (e.build)(&always).unwrap();
    let reports = check_every_preset(&policy, &default_options()).unwrap();
    let markers = &reports.iter().find(|(s, _)| s.name == "markers").unwrap().1;
    assert_eq!(markers.by_oracle.keys().copied().collect::<Vec<_>>(), [Oracle::StaleTlb, Oracle::Accounting]);
    assert_eq!(markers.gravest_beyond_guard_markers, Some(Oracle::StaleTlb));
    // The default check names markers: with ten presets sharing the
    // default 4000 schedules, cow-swap's 400 (where a COWed copy swapped
    // out in the step 1 -> 2 window stops step 2 the same way) find the
    // slip's uncounted references at seed 1 but no reader caching a
    // cleared entry, and the missing flush is the gravest of what the
    // slip breaks.
    let cow_swap = &reports.iter().find(|(s, _)| s.name == "cow-swap").unwrap().1;
    assert_eq!(cow_swap.by_oracle.keys().copied().collect::<Vec<_>>(), [Oracle::Accounting]);
    assert_eq!(verdict(&reports), Some(("markers".to_owned(), Oracle::StaleTlb)));
    // The suite on markers alone, sampled and on its scope: a finding
    // there that is not the guard-marker race fails the policy.
    let only_markers = ConformanceOptions {
        presets: vec!["markers".into()],
        exhaustive: vec!["markers".into()],
        functional: false,
        ..ConformanceOptions::default()
    };
    let report = conformance(&e, &always, &only_markers);
    println!("{report}");
    assert!(!report.passed(), "{report}");
    assert_eq!(report.failures.len(), 2, "{report}");
    for failure in &report.failures {
        assert!(
            failure.starts_with("expected correct, but the checker found stale-tlb, accounting on preset markers"),
            "{report}"
        );
    }
}

#[test]
fn step_1_to_step_2_a_step_2_that_trusts_step_1_fails_the_window_cases() {
    let e = entry::<SlippedV1<STEP_2_TRUSTS_STEP_1>>();
    let report = conforms(&e);
    let failed: Vec<&str> = report.cases.iter().filter(|c| !c.passed()).map(|c| c.name.as_str()).collect();
    // Exactly the window cases that put a present anonymous page in the
    // slot; a swap entry or a marker still stops the slipped loop.
    let present =
        ["uffd copy into a hole, step 1 -> 2 / ", "COW, step 1 -> 2 / ", "COW then migration, step 1 -> 2 / "];
    assert_eq!(failed.len(), 10, "{failed:#?}");
    assert!(failed.iter().all(|n| present.iter().any(|p| n.starts_with(p))), "{failed:#?}");
    assert!(!report.passed(), "{report}");
    // UFFDIO_COPY into a hole in the window: step 2 clears the anonymous
    // page as if it were hpage + i, so that page is left neither mapped
    // nor freed (lost-page, the gravest), and drops a mapcount the subpage
    // never had (accounting).
    assert_eq!(default_check(&e), Some(("uffd-private".to_owned(), Oracle::LostPage)));
}

/// Time to the first finding, by the oracle that names it, of each broken
/// copy under the default `check` (presets in order, each with its share,
/// shrinking left out): the schedules run before it and the search time,
/// median over seeds 1 to 10. A measurement, not a test: `cargo test
/// --release -p workloads --test broken_copies -- --ignored --nocapture`.
#[test]
#[ignore]
fn time_to_first_violation() {
    let always = serde_json::json!({"recheck_always": true});
    let null = serde_json::Value::Null;
    let copies = [
        (entry::<SlippedV2<RECHECK_SHARED_ONLY>>(), &null, Oracle::TableFreedLive),
        (entry::<SlippedV1<NO_FLUSH_UNDER_EARLY_PML>>(), &null, Oracle::StaleTlb),
        (entry::<SlippedV2<FORGETS_CLEARED_ON_NON_PRESENT>>(), &always, Oracle::StaleTlb),
        (entry::<SlippedV1<STEP_2_TRUSTS_STEP_1>>(), &null, Oracle::LostPage),
    ];
    println!("{:<62} {:>6} {:>9} {:>9}  presets", "copy, oracle", "found", "schedules", "seconds");
    for (e, params, oracle) in copies {
        let policy = (e.build)(params).unwrap();
        let found: Vec<_> = (1..=10).filter_map(|seed| first_finding(&policy, oracle, seed)).collect();
        let mut presets: Vec<&str> = found.iter().map(|f| f.preset).collect();
        presets.dedup();
        println!(
            "{:<62} {:>3}/10 {:>9} {:>9.3}  {}",
            format!("{}, {oracle}", policy.label()),
            found.len(),
            median(found.iter().map(|f| f.schedules).collect()),
            median(found.iter().map(|f| f.seconds).collect()),
            presets.join(" ")
        );
    }
}
