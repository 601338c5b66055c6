//! Kernel API contracts: copies of `v1` with one slip each, which the
//! kernel would not catch (or would catch with a VM_BUG_ON) and the
//! model reports as `api-contract`, by the checker over every preset and
//! by the conformance suite; and the five shipped policies, which keep
//! every contract (and free no table under a walker).
//!
//! * `broken-v1-normal-page-first`: steps 1 and 2 ask `vm_normal_page()`
//!   for the entry's page before testing `pte_present()` (the abort
//!   results stay right). The kernel would read a swap, migration or
//!   marker entry's bits as a pfn. Shows wherever the collapse meets
//!   such an entry: a swapped-out COW copy, a guard marker.
//! * `broken-v1-keeps-map`: step 2's `pte_unmap()` is forgotten, so the
//!   collapse returns inside the RCU read side `pte_offset_map_nolock()`
//!   entered: every collapse that gets past step 2 breaks it.
//!
//! Run `cargo test --release -p workloads --test api_contract --
//! --nocapture` for the figures: schedules and search time to the first
//! finding over ten seeds (that test runs in release builds only).

mod every_preset;
mod v1_copy;

use bench_core::kernel::{entry, CollapsePolicy, Cx, DynPolicy, Engine, NoParams, PolicyEntry, ScanResult};
use bench_core::Oracle;
use every_preset::{check_every_preset, first_finding, median, oracles};
use std::collections::BTreeSet;
use std::sync::Arc;
use v1_copy::Slips;
use workloads::conformance::{conformance, ConformanceOptions, ConformanceReport};

/// PCT schedules per preset for the conformance suite (as the suite's
/// own tests, `conformance.rs`, run it).
const CONFORMANCE_SCHEDULES: u64 = 150;
/// `v1` with one slip: steps 1 and 2 call `vm_normal_page()` before
/// testing `pte_present()`.
struct NormalPageFirst(NoParams);

impl CollapsePolicy for NormalPageFirst {
    type Params = NoParams;
    const NAME: &'static str = "broken-v1-normal-page-first";
    const SUMMARY: &'static str = "broken on purpose: v1 that calls vm_normal_page() before testing pte_present()";

    fn new(params: NoParams) -> Self {
        NormalPageFirst(params)
    }

    fn params(&self) -> &NoParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult {
        v1_copy::collapse(cx, haddr, install_pmd, Slips { normal_page_first: true, ..Slips::default() })
    }
}

/// `v1` with one slip: step 2's `pte_unmap()` is forgotten.
struct KeepsMap(NoParams);

impl CollapsePolicy for KeepsMap {
    type Params = NoParams;
    const NAME: &'static str = "broken-v1-keeps-map";
    const SUMMARY: &'static str = "broken on purpose: v1 that never pte_unmap()s the table it mapped for step 2";

    fn new(params: NoParams) -> Self {
        KeepsMap(params)
    }

    fn params(&self) -> &NoParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult {
        v1_copy::collapse(cx, haddr, install_pmd, Slips { keeps_map: true, ..Slips::default() })
    }
}

fn policy<P: CollapsePolicy<Params = NoParams>>() -> Arc<dyn DynPolicy> {
    Arc::new(P::new(NoParams {}))
}

/// The checker over every preset at seed 1 finds `api-contract`; the
/// first counterexample where it does names the contract in `words`.
fn checker_finds(policy: &Arc<dyn DynPolicy>, words: &str) -> Vec<&'static str> {
    let reports = check_every_preset(policy, 1);
    let mut found = vec![];
    for (name, report) in &reports {
        println!("{}: {name}: {:?}", policy.label(), report.by_oracle);
        if !report.by_oracle.contains_key(&Oracle::ApiContract) {
            continue;
        }
        found.push(*name);
        let cx = report.first.as_ref().expect("a counterexample");
        let v = cx.violations.iter().find(|v| v.oracle == Oracle::ApiContract).expect("in the first counterexample");
        assert!(v.message.contains(words), "{name}: {v}");
    }
    assert!(!found.is_empty(), "{}: {:?}", policy.label(), oracles(&reports));
    found
}

/// The conformance suite does not pass `entry`, and says why by
/// `api-contract`.
fn conformance_fails_by_api_contract(entry: &PolicyEntry) -> ConformanceReport {
    let report = conformance(
        entry,
        &serde_json::Value::Null,
        &ConformanceOptions { schedules: CONFORMANCE_SCHEDULES, ..ConformanceOptions::default() },
    );
    println!("{report}");
    assert!(!report.passed(), "{report}");
    assert!(report.presets.iter().any(|p| p.found(Oracle::ApiContract)), "{report}");
    for why in &report.failures {
        assert!(why.contains("api-contract"), "{why}\n{report}");
    }
    report
}

#[test]
fn vm_normal_page_before_pte_present_is_caught() {
    let found = checker_finds(&policy::<NormalPageFirst>(), "vm_normal_page() of a non-present pte");
    println!("found on {found:?}");
    let report = conformance_fails_by_api_contract(&entry::<NormalPageFirst>());
    // Of the functional cases, those with a non-present entry meet the
    // slip (and abort with the right result all the same): a swap entry
    // in step 1, or a swap entry or guard marker that appears in the step
    // 1 -> 2 window, in step 2.
    let failed: Vec<&str> = report.cases.iter().filter(|c| !c.passed()).map(|c| c.name.as_str()).collect();
    let non_present =
        ["swap entry / ", "COW then swap-out, step 1 -> 2 / ", "guard marker into a hole, step 1 -> 2 / "];
    assert_eq!(failed.len(), 14, "{failed:#?}");
    assert!(failed.iter().all(|n| non_present.iter().any(|p| n.starts_with(p))), "{failed:#?}");
    for c in report.cases.iter().filter(|c| !c.passed()) {
        assert!(c.failures.iter().all(|f| f.contains("[api-contract]")), "{}: {:?}", c.name, c.failures);
    }
}

#[test]
fn a_pte_map_left_at_return_is_caught() {
    let found = checker_finds(&policy::<KeepsMap>(), "still mapped: pte_offset_map() without pte_unmap()");
    assert_eq!(found.len(), every_preset_names().len(), "every preset collapses past step 2: {found:?}");
    let report = conformance_fails_by_api_contract(&entry::<KeepsMap>());
    // Every case that collapses fails, and names the contract.
    let failed: Vec<&str> = report.cases.iter().filter(|c| !c.passed()).map(|c| c.name.as_str()).collect();
    assert!(failed.iter().any(|n| n.starts_with("full table / private")), "{report}");
    for c in report.cases.iter().filter(|c| !c.passed()) {
        assert!(c.failures.iter().all(|f| f.contains("[api-contract]")), "{}: {:?}", c.name, c.failures);
    }
}

fn every_preset_names() -> Vec<&'static str> {
    workloads::PRESETS.iter().map(|p| p.0).collect()
}

#[test]
#[cfg_attr(debug_assertions, ignore = "a measurement: run it with --release")]
fn schedules_to_the_first_api_contract_finding_over_ten_seeds() {
    for policy in [policy::<NormalPageFirst>(), policy::<KeepsMap>()] {
        let mut found = vec![];
        for seed in 1..=10 {
            let f = first_finding(&policy, Oracle::ApiContract, seed)
                .unwrap_or_else(|| panic!("{} seed {seed}: no preset found it", policy.label()));
            println!(
                "{} seed {seed:>2}: {} schedule #{}, {} schedules in all, {:.3} s",
                policy.label(),
                f.preset,
                f.index,
                f.schedules,
                f.seconds
            );
            found.push(f);
        }
        println!(
            "{}: median {} schedules, {:.3} s to the first api-contract finding (10 seeds)",
            policy.label(),
            median(found.iter().map(|f| f.schedules).collect()),
            median(found.iter().map(|f| f.seconds).collect())
        );
    }
}

/// The shipped policies keep every contract and free no table under a
/// walker: over every preset at seed 1 they find exactly what they found
/// before these checks (pre-fix's table freed with the uffd page and its
/// teardown consequences, the v2 postings' stale TLB, the v2 forms'
/// stale translation, and the guard-marker race of every form that drops
/// ptl for a VMA without uffd; v6.1 holds mmap_lock for write, which keeps
/// the marker installer out). On `pt-reclaim` (empty-table reclaim,
/// v6.14) the forms that do not recheck the PMD lock a freed table's ptl
/// and clear a PMD that is not theirs; v6.13's rechecks are clean, and
/// its posting without the step-4 flush leaves a stale TLB.
#[test]
fn the_shipped_policies_keep_every_contract() {
    use Oracle::*;
    for e in policies::registry() {
        let policy = (e.build)(&serde_json::Value::Null).unwrap();
        let reports = check_every_preset(&policy, 1);
        for (name, r) in &reports {
            println!("{}: {name}: {:?}", e.name, r.by_oracle);
        }
        let (later, v6_6): (Vec<_>, Vec<_>) =
            reports.into_iter().partition(|(name, _)| workloads::LATER_KERNEL_PRESETS.contains(name));
        let want: BTreeSet<Oracle> = match e.name {
            // Every form that drops ptl with cleared, unflushed entries
            // while uffd can fill them also shows a stale translation.
            "pre-fix" => [TableFreedLive, Accounting, LostPage, StaleTranslation].into(),
            "v2-posted" | "v2-posted-relookup" => [TableFreedLive, StaleTlb, StaleTranslation].into(),
            "v2-flush-bool" | "v2-step3-down" => [TableFreedLive, StaleTranslation].into(),
            "v6.1" => [].into(),
            _ => [TableFreedLive].into(),
        };
        let want_later: BTreeSet<Oracle> = match e.name {
            "v1" | "pre-fix" => [UseAfterFree, StaleTable, Accounting].into(),
            "v2-posted" => [UseAfterFree].into(),
            "v6.13-noflush" => [StaleTlb].into(),
            _ => [].into(),
        };
        assert_eq!(oracles(&v6_6), want, "{}", e.name);
        assert_eq!(oracles(&later), want_later, "{} on the later kernels' presets", e.name);
    }
}
