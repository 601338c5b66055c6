//! Single-threaded cases after the kernel's khugepaged selftests, for every
//! policy, on a plain private VMA and on a uffd-armed one (where v1 takes
//! `pml` early). Each checks the result and then refcount, mapcount,
//! counters, page-table count and lock state.

mod harness;

use bench_core::mm::{range_addr, VM_SHARED, VM_UFFD_WP};
use bench_core::{MmCounter, Oracle, PmdKind, Role, ScanResult};
use harness::*;

const VMAS: [(&str, u32); 3] = [("private", 0), ("shared", VM_SHARED), ("uffd private", UFFD_PRIVATE)];

/// Run one collapse of range 0 and the accounting oracle; return the result.
fn collapse(mm: &bench_core::Mm, policy: &dyn bench_core::DynPolicy, install: bool) -> ScanResult {
    let mut cx = cpu(mm, 0, Role::Collapse, None);
    let r = cx.run_collapse(policy, range_addr(0), install);
    cx.check_range_accounting(0);
    assert!(!any_lock_held(mm), "{}: a lock is still held", policy.name());
    r
}

fn assert_clean(mm: &bench_core::Mm, what: &str) {
    let (v, _) = mm.violations.snapshot();
    assert!(v.is_empty(), "{what}: {v:?}");
    let teardown = mm.exit_mmap();
    assert!(teardown.is_empty(), "{what}: teardown {teardown:?}");
}

#[test]
fn full_table_collapses_and_installs_pmd_when_asked() {
    for policy in all_policies() {
        for (vma, flags) in VMAS {
            for install in [false, true] {
                let what = format!("{} / {vma} / install={install}", policy.label());
                let mm = model(flags, 512, 2);
                assert_eq!(collapse(&mm, &*policy, install), ScanResult::Succeed, "{what}");
                if install {
                    assert_eq!(pmd_kind(&mm), PmdKind::Huge(mm.file_hpage(0)), "{what}");
                    assert_eq!(hpage_refs(&mm), 512 + 1, "{what}: page cache + the PMD mapping");
                    assert_eq!(mm.counter(MmCounter::ShmemPages), 512, "{what}");
                } else {
                    assert_eq!(pmd_kind(&mm), PmdKind::None, "{what}: table retracted");
                    assert_eq!(hpage_refs(&mm), 512, "{what}: page cache only");
                    assert_eq!(mm.counter(MmCounter::ShmemPages), 0, "{what}");
                }
                assert_eq!(hpage_mapcount(&mm), 0, "{what}: no PTE maps a subpage");
                assert_eq!(mm.nr_ptes(), 0, "{what}: table uncounted");
                assert_eq!(mm.notifier_counts(), (1, 1), "{what}: notifier paired");
                assert_clean(&mm, &what);
            }
        }
    }
}

#[test]
fn empty_and_single_entry_tables_collapse() {
    for policy in all_policies() {
        for (vma, flags) in VMAS {
            for density in [0, 1, 511] {
                let what = format!("{} / {vma} / density {density}", policy.label());
                let mm = model(flags, density, 2);
                assert_eq!(collapse(&mm, &*policy, true), ScanResult::Succeed, "{what}");
                assert_eq!(hpage_refs(&mm), 513, "{what}");
                assert_eq!(mm.counter(MmCounter::ShmemPages), 512, "{what}");
                assert_eq!(hpage_mapcount(&mm), 0, "{what}");
                assert_eq!(mm.nr_ptes(), 0, "{what}");
                assert_clean(&mm, &what);
            }
        }
    }
}

#[test]
fn cowed_entry_fails_without_touching_anything() {
    for policy in all_policies() {
        for (vma, flags) in [VMAS[0], VMAS[2]] {
            let what = format!("{} / {vma}", policy.label());
            let mm = model(flags, 512, 2);
            cow(&mut cpu(&mm, 1, Role::Cow, None), 7);
            assert_eq!(collapse(&mm, &*policy, true), ScanResult::Fail, "{what}");
            // Step 1 aborts before step 2: no entry was cleared.
            assert_eq!(hpage_refs(&mm), 512 + 511, "{what}");
            assert_eq!(hpage_mapcount(&mm), 511, "{what}");
            assert_eq!(mm.counter(MmCounter::ShmemPages), 511, "{what}");
            assert_eq!(mm.counter(MmCounter::AnonPages), 1, "{what}");
            assert!(matches!(pmd_kind(&mm), PmdKind::Table(_)), "{what}");
            assert_eq!(mm.nr_ptes(), 1, "{what}");
            assert_eq!(mm.notifier_counts(), (0, 0), "{what}: aborted before the notifier");
            assert_clean(&mm, &what);
        }
    }
}

#[test]
fn swap_entry_is_non_present() {
    for policy in all_policies() {
        let what = policy.label();
        let mm = model(0, 512, 2);
        let mut other = cpu(&mm, 1, Role::Swap, None);
        cow(&mut other, 3);
        swap_out(&mut other, 3);
        assert_eq!(collapse(&mm, &*policy, false), ScanResult::PteNonPresent, "{what}");
        assert_eq!(hpage_refs(&mm), 512 + 511, "{what}");
        assert_eq!(mm.counter(MmCounter::SwapEnts), 1, "{what}");
        assert!(matches!(pmd_kind(&mm), PmdKind::Table(_)), "{what}");
        assert_clean(&mm, &what);
    }
}

#[test]
fn uffd_wp_vma_keeps_its_table() {
    for policy in all_policies() {
        let what = policy.label();
        let mm = model(VM_UFFD_WP, 512, 2);
        assert_eq!(collapse(&mm, &*policy, true), ScanResult::PteUffdWp, "{what}");
        assert_eq!(hpage_refs(&mm), 1024, "{what}: not even a page reference taken");
        assert!(matches!(pmd_kind(&mm), PmdKind::Table(_)), "{what}");
        assert_clean(&mm, &what);
    }
}

#[test]
fn pmd_mapped_and_retracted_ranges() {
    for policy in all_policies() {
        let what = policy.label();
        // khugepaged retracts the table; MADV_COLLAPSE then finds PMD none
        // and goes straight to step 5; a third call finds it PMD-mapped.
        let mm = model(0, 512, 2);
        assert_eq!(collapse(&mm, &*policy, false), ScanResult::Succeed, "{what}");
        assert_eq!(pmd_kind(&mm), PmdKind::None, "{what}");
        let notifiers = mm.notifier_counts();
        assert_eq!(collapse(&mm, &*policy, true), ScanResult::Succeed, "{what}: PMD none installs directly");
        assert_eq!(mm.notifier_counts(), notifiers, "{what}: no step 1-4 for a retracted table");
        assert_eq!(pmd_kind(&mm), PmdKind::Huge(mm.file_hpage(0)), "{what}");
        assert_eq!(hpage_refs(&mm), 513, "{what}");
        assert_eq!(collapse(&mm, &*policy, true), ScanResult::PmdMapped, "{what}");
        assert_eq!(hpage_refs(&mm), 513, "{what}");
        assert_clean(&mm, &what);
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
    assert_eq!(names, ["v1", "v2-flush-bool", "v2-step3-down", "v2-posted", "pre-fix"]);
    let e = policies::registry().into_iter().find(|e| e.name == "v2-posted").unwrap();
    let p = (e.build)(&serde_json::json!({"recheck_always": true})).unwrap();
    assert_eq!(p.label(), "v2-posted:recheck_always=true");
    let err = (e.build)(&serde_json::json!({"recheck": true})).err().unwrap();
    assert!(err.contains("unknown field `recheck`") && err.contains("recheck_always"), "{err}");
}
