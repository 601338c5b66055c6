//! The kernel's own `collapse_pte_mapped_thp()`, compiled from Debian's
//! linux-source-6.12 tarball, as a policy: it conforms, the shipped Rust
//! `v1` makes its calls case for case, and small patches written here that
//! turn it into the shipped buggy forms are caught by the oracle of their
//! real bug, as the Rust ports of those forms are.
//!
//! Skipped (saying so) where the tarball is not installed; a failure
//! under `CI=true`, where .ci/run installs it.

mod common;

use bench_core::kernel::{DynPolicy, PolicyEntry};
use bench_core::{Event, Oracle};
use common::{panic_message, run_natively};
use kernel_c::{source, KernelFunction};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use workloads::check::{check_policy, CheckOptions, CheckReport};
use workloads::conformance::{conformance, functional_cases, ConformanceOptions, Expect};

/// The 6.12 tree, read once per test process (the cache lives in the
/// target directory, so a CI run decodes the tarball once).
fn tree() -> Option<source::KernelTree> {
    static TREE: OnceLock<Option<source::KernelTree>> = OnceLock::new();
    TREE.get_or_init(|| read("6.12")).clone()
}

/// The 6.1 tree, likewise.
fn tree_6_1() -> Option<source::KernelTree> {
    static TREE: OnceLock<Option<source::KernelTree>> = OnceLock::new();
    TREE.get_or_init(|| read("6.1")).clone()
}

fn read(version: &str) -> Option<source::KernelTree> {
    let tarball = common::kernel_source(version)?;
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kernel-source-cache");
    Some(source::open_with_cache(&tarball, Some(&cache)).unwrap_or_else(|e| panic!("{e}")))
}

fn patch(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/patches").join(format!("{name}.patch"))
}

fn kernel(tree: source::KernelTree, patches: &[&str]) -> PolicyEntry {
    let patches: Vec<PathBuf> = patches.iter().map(|p| patch(p)).collect();
    KernelFunction::from_tree(tree, &patches).unwrap_or_else(|e| panic!("{e}")).entry()
}

fn built(entry: &PolicyEntry) -> Arc<dyn DynPolicy> {
    (entry.build)(&serde_json::Value::Null).unwrap()
}

fn shipped(name: &str) -> Arc<dyn DynPolicy> {
    built(&policies::registry().into_iter().find(|e| e.name == name).unwrap())
}

/// The default check of `policy` on `preset`.
fn check(policy: &Arc<dyn DynPolicy>, preset: &str) -> CheckReport {
    let scenario = workloads::preset(preset).unwrap();
    check_policy(policy, &scenario, &CheckOptions { jobs: 2, ..CheckOptions::default() }).unwrap()
}

#[test]
fn the_function_is_named_by_its_tree_and_compiles_its_helpers_from_the_file() {
    let Some(tree) = tree() else { return };
    let function = KernelFunction::from_tree(tree, &[patch("no-early-pml")]).unwrap();
    let p = &function.provenance;
    assert_eq!(p.version, "6.12.118");
    assert_eq!(p.functions, ["find_pmd_or_thp_or_none", "set_huge_pmd", "collapse_pte_mapped_thp"]);
    assert_eq!(p.steps, [1, 2, 3, 4, 5]);
    assert!(function.warnings().is_empty(), "{}", function.warnings());
    let entry = function.entry();
    assert_eq!(entry.name, "linux-6.12.118+no-early-pml");
    let err = (entry.build)(&serde_json::json!({"x": 1})).err().unwrap();
    assert!(err.contains("unknown field `x`: it takes no parameters"), "{err}");
}

#[test]
fn the_kernels_own_function_conforms_on_every_preset() {
    let Some(tree) = tree() else { return };
    let entry = kernel(tree, &[]);
    let report = conformance(&entry, &serde_json::Value::Null, &ConformanceOptions::expecting(Expect::Correct));
    assert!(report.passed(), "{report}");
}

/// The fidelity cross-check: in every functional case the Rust `v1` and
/// the kernel's C take the same locks and page locks, clear the same
/// entries and PMD, flush, free and mark the steps in the same order, and
/// return the same `SCAN_*` result.
#[test]
fn v1_makes_the_kernels_calls_in_every_case() {
    let Some(tree) = tree() else { return };
    same_calls(&built(&kernel(tree, &[])), &shipped("v1"));
}

/// The same for the v6.1 form: `mmap_lock` and `i_mmap_rwsem` for write,
/// the entries left in the table, no page-table lock around the PMD
/// clear, the table freed at once after the IPI.
#[test]
fn v6_1_makes_the_6_1_kernels_calls_in_every_case() {
    let Some(tree) = tree_6_1() else { return };
    let function = KernelFunction::from_tree(tree, &[]).unwrap();
    assert_eq!(
        function.provenance.functions,
        ["find_pmd_or_thp_or_none", "set_huge_pmd", "collapse_and_free_pmd", "collapse_pte_mapped_thp"]
    );
    let c = built(&function.entry());
    assert_eq!(c.mmap_lock(), bench_core::kernel::MmapLock::Write, "read from mmap_assert_write_locked()");
    same_calls(&c, &shipped("v6.1"));
}

/// v6.1's function is clean on every preset but one. On `retract` the
/// table remover is v6.6's and later `retract_page_tables()`, which takes
/// no `mmap_lock`: it can empty the PMD between v6.1's first look at it
/// (before the page lock) and `pte_offset_map_lock()`, which in v6.1
/// cannot fail, and the function dereferences the missing table: the
/// kernel would oops, and the compiled C faults (caught, and reported as
/// the oops it is). v6.1 itself never met that remover (its
/// `retract_page_tables()` took `mmap_lock` for write, by trylock); the
/// Rust port gives up with SCAN_FAIL there instead (its departure).
#[test]
fn the_6_1_function_is_clean_but_faults_against_a_later_kernels_retract() {
    let Some(tree) = tree_6_1() else { return };
    let c = built(&kernel(tree, &[]));
    for preset in workloads::PRESETS.iter().map(|(name, _)| *name).filter(|&p| p != "retract") {
        let report = check(&c, preset);
        assert_eq!(report.violating, 0, "{preset}: {:?}", report.by_oracle);
    }
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&c, "retract")))
        .expect_err("the 6.1 function faults on retract");
    assert_eq!(
        panic_message(&*panic),
        "collapse_pte_mapped_thp() faulted on address 0x0 (a NULL pointer dereference): the kernel would oops here"
    );
}

/// Every functional case passes for both, with the same calls.
fn same_calls(c: &Arc<dyn DynPolicy>, rust: &Arc<dyn DynPolicy>) {
    let (c_cases, rust_cases) = (functional_cases(c.as_ref()), functional_cases(rust.as_ref()));
    assert_eq!(c_cases.len(), rust_cases.len());
    let mut differ = vec![];
    for (c_case, rust_case) in c_cases.iter().zip(&rust_cases) {
        assert_eq!(c_case.name, rust_case.name);
        assert!(
            c_case.passed() && rust_case.passed(),
            "{}: {:?} {:?}",
            c_case.name,
            c_case.failures,
            rust_case.failures
        );
        assert!(c_case.calls.iter().any(|e| matches!(e, Event::Returned(_))), "{}: no call recorded", c_case.name);
        if let Some(at) = first_difference(&c_case.calls, &rust_case.calls) {
            differ.push(format!(
                "{}: call {at}: C {:?}, Rust v1 {:?}",
                c_case.name,
                &c_case.calls[at.saturating_sub(2)..(at + 3).min(c_case.calls.len())],
                &rust_case.calls[at.saturating_sub(2)..(at + 3).min(rust_case.calls.len())]
            ));
        }
    }
    assert!(differ.is_empty(), "v1 departs from the kernel's C in {} case(s):\n{}", differ.len(), differ.join("\n"));
}

fn first_difference(a: &[Event], b: &[Event]) -> Option<usize> {
    (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i))
}

/// Removing v6.6's early `pmd_lock()` gives back the race of the 2023
/// thread: a uffd page mapped into the emptied table, freed with it.
#[test]
fn without_the_early_pmd_lock_a_table_is_freed_live_on_uffd_private() {
    let Some(tree) = tree() else { return };
    let policy = built(&kernel(tree.clone(), &["no-early-pml"]));
    let report = check(&policy, "uffd-private");
    assert_eq!(report.gravest(), Some(Oracle::TableFreedLive), "{:?}", report.by_oracle);
    let first = report.first.expect("a counterexample");
    assert_eq!(first.violations[0].oracle, Oracle::TableFreedLive, "{}", first.violations[0]);
    // The kernel's own function, unpatched, is clean there.
    let clean = check(&built(&kernel(tree, &[])), "uffd-private");
    assert_eq!(clean.violating, 0, "{:?}", clean.by_oracle);
}

/// The v2 forms of the thread, written as patches to the 6.12 function,
/// make their Rust ports' calls in every functional case (a second pass
/// of step 2 marked as a recheck, as the ports mark it) and get their
/// verdicts on the two presets of the thread's bugs: the same oracles,
/// the same gravest.
#[test]
fn the_v2_forms_as_patches_get_their_rust_ports_verdicts() {
    let Some(tree) = tree() else { return };
    for (patch, rust) in
        [("v2-flush-bool", "v2-flush-bool"), ("v2-step3-down", "v2-step3-down"), ("v2-posted", "v2-posted")]
    {
        let c = built(&kernel(tree.clone(), &[patch]));
        let rust = shipped(rust);
        same_calls(&c, &rust);
        for preset in ["uffd-private", "pml-contended"] {
            let (c_report, rust_report) = (check(&c, preset), check(&rust, preset));
            let oracles = |r: &CheckReport| r.by_oracle.keys().copied().collect::<Vec<_>>();
            assert_eq!(
                (c_report.gravest(), oracles(&c_report)),
                (rust_report.gravest(), oracles(&rust_report)),
                "{patch} on {preset}: C {:?}, Rust {:?}",
                c_report.by_oracle,
                rust_report.by_oracle
            );
        }
    }
}

/// A misuse under the C (ptl taken twice after step 1) panics in the
/// primitive; the panic is caught at the C boundary, the C runs to its
/// return, and only then is it resumed: on the controlled engine it ends
/// the check as any policy's panic does, and natively the run is
/// reported failed with the panic's message and place. The process lives.
#[test]
fn a_panic_under_the_c_is_resumed_once_the_c_has_returned() {
    let Some(tree) = tree() else { return };
    let policy = built(&kernel(tree, &["ptl-twice"]));
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&policy, "uffd-private")))
        .expect_err("the check panics with the policy");
    assert_eq!(panic_message(&*panic), "recursive spin_lock(ptl (PTE table 0)) would deadlock");
    let failure = run_natively(policy, "uffd-private", Duration::from_secs(1));
    let text = failure.summary();
    assert!(text.contains("recursive spin_lock(ptl (PTE table 0)) would deadlock"), "{text}");
    assert!(text.contains("at step 1 (check)"), "{text}");
}

/// A C loop that cannot end (step 4 spinning on a trylock of the pml it
/// holds) is abandoned by the native watchdog with the C frames on the
/// spinning CPU's stack: the abandon is caught at the C boundary, the
/// loop's trylock then succeeds, the C returns, and the run is reported
/// hung at step 4 with pml held.
#[test]
fn the_watchdog_abandons_a_cpu_spinning_inside_the_c() {
    let Some(tree) = tree() else { return };
    let failure = run_natively(built(&kernel(tree, &["pml-spin"])), "shmem-shared", Duration::from_secs(1));
    let text = failure.summary();
    assert!(text.starts_with("hung: CPU 0 finished nothing for 1 s"), "{text}");
    let report = failure.lines().join("\n");
    assert!(report.contains("at step 4 (remove table)") && report.contains("#0: pml (PMD table 0)"), "{report}");
}
