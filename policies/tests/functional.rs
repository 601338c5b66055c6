//! The conformance suite's functional cases (after the kernel's khugepaged
//! selftests: full, empty, single entry, max-none, swap entry, COWed entry,
//! forked, retracted table, already PMD-mapped, uffd-wp VMA, on private,
//! shared and uffd-armed private VMAs, for khugepaged and MADV_COLLAPSE)
//! for every registered policy, with its default parameters and, for the
//! v2 forms, with `recheck_always`. The cases themselves live in
//! [`workloads::conformance`]; the checker half of the suite runs in
//! workloads/tests/conformance.rs.

mod harness;

use bench_core::harness::Harness;
use bench_core::{Oracle, Role};
use harness::*;
use workloads::conformance::{conformance, ConformanceOptions};

#[test]
fn every_registered_policy_passes_the_functional_cases() {
    // No checker schedules: functional cases only (the expectation is then
    // the same for the controls, whose bugs are races).
    let opts = ConformanceOptions { schedules: 0, ..ConformanceOptions::default() };
    for entry in policies::registry() {
        let mut params = vec![serde_json::Value::Null];
        if (entry.default_params)().get("recheck_always").is_some() {
            params.push(serde_json::json!({"recheck_always": true}));
        }
        for p in params {
            let report = conformance(&entry, &p, &opts);
            assert!(report.cases.len() >= 80, "{}: {} cases", report.policy, report.cases.len());
            if entry.name == "v6.1" {
                // The 16 window cases do not apply (see
                // `workloads::conformance`): 100 - 16 run, and pass.
                assert_eq!(report.cases.len(), 84, "{report}");
                assert!(report.to_string().contains("the step 1 -> 2 window cases do not apply"), "{report}");
            }
            assert!(report.passed(), "{report}");
        }
    }
}

#[test]
fn accounting_oracle_catches_a_wrong_refcount() {
    // The oracle itself: break the refcount by hand and it must say so.
    let mm = model(0, 512, 2);
    mm.pages.get(mm.file_hpage(0)).refcount.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    cpu(&mm, 0, Role::Collapse, None).check_range_accounting(0);
    assert!(mm.violations.any(Oracle::Accounting));
}

#[test]
fn every_policy_is_listed_once_with_its_parameters() {
    let names: Vec<_> = policies::registry().iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        [
            "v1",
            "v6.13",
            "v6.1",
            "v2-flush-bool",
            "v2-step3-down",
            "v2-posted",
            "v2-posted-relookup",
            "v6.13-noflush",
            "pre-fix"
        ]
    );
    let e = policies::registry().into_iter().find(|e| e.name == "v2-posted").unwrap();
    let p = (e.build)(&serde_json::json!({"recheck_always": true})).unwrap();
    assert_eq!(p.label(), "v2-posted:recheck_always=true");
    let err = (e.build)(&serde_json::json!({"recheck": true})).err().unwrap();
    assert!(err.contains("unknown field `recheck`") && err.contains("recheck_always"), "{err}");
}
