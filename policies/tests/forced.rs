//! Forced interleavings: the collapser is paused at a named step by a test
//! hook (or stalled on a held `pml`) while another CPU does exactly what
//! the thread said it could. These are the two bugs, shown by hand; the
//! checker finds them by search.

mod harness;

use bench_core::harness::Harness;
use bench_core::kernel::{MmCounter, MmapLock, PmdKind, ScanResult, Step};
use bench_core::mm::MAP_BASE;
use bench_core::{LockClass, Oracle, Role};
use harness::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The oracles the violations so far were reported under, in order.
fn oracles(mm: &bench_core::Mm) -> Vec<Oracle> {
    mm.violations.snapshot().0.into_iter().map(|v| v.oracle).collect()
}

/// uffd inserts an anonymous page between step 2 and step 4.
#[test]
fn uffd_insert_between_step_2_and_step_4() {
    for policy in all_policies() {
        for install in [false, true] {
            let what = format!("{} install={install}", policy.label());
            let mm = model(UFFD_PRIVATE, 512, 2);
            let ptl = match pmd_kind(&mm) {
                PmdKind::Table(slot) => mm.pte_lock_id(slot),
                other => panic!("{other:?}"),
            };
            // Between step 2 and step 4: at step 3 (which v2-step3-down runs
            // after step 4's lock point, with both locks held).
            let (hook, paused, resume) = pause_at(Step::Account);
            let uffd_done = AtomicBool::new(false);
            let result = std::thread::scope(|s| {
                let collapser =
                    s.spawn(|| cpu(&mm, 0, Role::Collapse, Some(hook)).run_collapse(&*policy, MAP_BASE, install));
                paused.recv_timeout(Duration::from_secs(10)).expect("collapser reached step 3");
                let uffd = s.spawn(|| {
                    let installed = uffd_copy(&mut cpu(&mm, 1, Role::Uffd, None), 1);
                    uffd_done.store(true, Ordering::SeqCst);
                    installed
                });
                // Either uffd got in (ptl was free) or it is queued on ptl;
                // under a collapse that holds mmap_lock for write (v6.1) it
                // waits for mmap_lock, so it cannot get in before the
                // collapse returns, whenever it starts.
                while !uffd_done.load(Ordering::SeqCst)
                    && mm.lock(ptl).waiters() == 0
                    && policy.mmap_lock() == MmapLock::Read
                {
                    std::thread::yield_now();
                }
                let raced = uffd_done.load(Ordering::SeqCst);
                resume.send(()).unwrap();
                let result = collapser.join().unwrap();
                let installed = uffd.join().unwrap();
                (result, raced, installed)
            });
            let (result, uffd_got_in_first, installed) = result;
            let teardown = mm.exit_mmap();
            let (violations, _) = mm.violations.snapshot();
            if policy.name() == "pre-fix" {
                assert!(uffd_got_in_first, "{what}: pre-fix dropped ptl after step 2");
                assert!(installed);
                assert_eq!(result, ScanResult::Succeed, "{what}: step 4 does not look again");
                let freed_live =
                    violations.iter().find(|v| v.oracle == Oracle::TableFreedLive).expect("table-freed-live");
                assert!(
                    freed_live.message.contains("idx 1") && freed_live.message.contains("uffd on CPU 1"),
                    "{freed_live}"
                );
                assert!(
                    teardown.iter().any(|v| v.message.ends_with("type:MM_ANONPAGES val:1")),
                    "{what}: the kernel's 'Bad rss-counter state' at exit: {teardown:?}"
                );
                assert!(teardown.iter().any(|v| v.oracle == Oracle::LostPage), "{what}: {teardown:?}");
            } else {
                // v6.1 drops ptl after step 2 as pre-fix does, but nothing
                // that takes mmap_lock, uffd included, can run meanwhile.
                assert!(!uffd_got_in_first, "{what}: ptl (or mmap_lock) must keep uffd out from step 2 to step 4");
                // After the table is gone uffd retries and installs into a new
                // table, unless MADV_COLLAPSE mapped the PMD first (-EEXIST);
                // if uffd's new table came first, set_huge_pmd() fails.
                match (install, result, installed) {
                    (false, ScanResult::Succeed, true)
                    | (true, ScanResult::Succeed, false)
                    | (true, ScanResult::Fail, true) => {}
                    other => {
                        panic!("{what}: unexpected (install, result, uffd installed) {other:?}")
                    }
                }
                assert!(violations.is_empty(), "{what}: {violations:?}");
                assert_eq!(mm.counter(MmCounter::AnonPages), 0, "{what}");
            }
        }
    }
}

/// `pml` is contended so the v2 trylock fails; while the collapser waits
/// for `pml` with `ptl` dropped, uffd inserts; the recheck pass then aborts.
/// Not `v6.1`: with `mmap_lock` held for write by the collapse, no uffd
/// ioctl runs while it waits for anything.
#[test]
fn trylock_fails_and_uffd_inserts_before_the_recheck() {
    for policy in all_policies() {
        if policy.mmap_lock() == MmapLock::Write {
            continue;
        }
        let what = policy.label();
        let mm = model(UFFD_PRIVATE, 512, 3);
        let pmd = bench_core::kernel::pmd_offset(&mm, MAP_BASE).unwrap();
        let mut reader = cpu(&mm, 1, Role::Reader, None);
        touch_all(&mut reader); // CPU 1 caches all 512 translations
        let mut neighbour = cpu(&mm, 2, Role::Neighbour, None);
        let pml = neighbour.pmd_lock(pmd);
        let (result, metrics, installed) = std::thread::scope(|s| {
            let collapser = s.spawn(|| {
                let mut cx = cpu(&mm, 0, Role::Collapse, None);
                let r = cx.run_collapse(&*policy, MAP_BASE, true);
                (r, cx.into_metrics())
            });
            while mm.lock(pml).waiters() == 0 {
                std::thread::yield_now();
            }
            // ptl is free while the collapser waits for pml: uffd fills idx 1 if it is none.
            let installed = uffd_copy(&mut reader, 1);
            neighbour.spin_unlock(pml);
            let (result, metrics) = collapser.join().unwrap();
            (result, metrics, installed)
        });
        let c = &metrics.counts;
        let stale = (0..512).filter(|&i| i != 1 && tlb_caches(&mm, 1, i)).count();
        match policy.name() {
            "v2-posted" | "v2-posted-relookup" => {
                assert!(installed, "{what}: step 2 emptied the table before the trylock");
                assert_eq!(result, ScanResult::Fail, "{what}: the recheck pass finds the uffd page");
                assert_eq!(c.recheck_passes, 1, "{what}");
                assert_eq!(c.trylock_failures[LockClass::PmdLock], 1, "{what}");
                assert_eq!(c.flush_mm, 0, "{what}: nr_ptes was reset, so no flush_tlb_mm");
                assert_eq!(stale, 511, "{what}: CPU 1 still caches every cleared entry");
                let v = mm.violations.snapshot().0;
                assert_eq!(oracles(&mm), [Oracle::StaleTranslation, Oracle::StaleTlb], "{what}: {v:?}");
                assert!(v[0].message.starts_with("CPU 1 still caches"), "{what}: {}", v[0]);
                assert!(v[1].message.contains("CPU 1"), "{what}: {}", v[1]);
            }
            "v2-flush-bool" | "v2-step3-down" => {
                assert!(installed, "{what}");
                assert_eq!(result, ScanResult::Fail, "{what}");
                assert_eq!(c.recheck_passes, 1, "{what}");
                assert_eq!(c.flush_mm, 1, "{what}: the owed flush is paid");
                assert_eq!(stale, 0, "{what}");
                // But only after uffd filled idx 1, which CPU 1 (uffd's own
                // CPU here) still cached from before step 2 cleared it.
                assert_eq!(oracles(&mm), [Oracle::StaleTranslation], "{what}");
            }
            "v1" | "v6.13" | "v6.13-noflush" => {
                // pml is taken before step 2, so nothing was cleared while it
                // waited: uffd found idx 1 mapped (-EEXIST); then the collapse
                // runs with both locks held and the PMD flush covers it.
                assert!(!installed, "{what}");
                assert_eq!(result, ScanResult::Succeed, "{what}");
                assert_eq!(c.trylock_failures[LockClass::PmdLock], 0, "{what}");
                assert_eq!(c.flush_mm, 0, "{what}");
                assert_eq!(stale, 0, "{what}");
            }
            "pre-fix" => {
                assert!(installed, "{what}: ptl dropped after step 2");
                assert_eq!(result, ScanResult::Succeed, "{what}");
                assert_eq!(oracles(&mm), [Oracle::StaleTranslation, Oracle::TableFreedLive], "{what}");
            }
            other => panic!("unexpected policy {other}"),
        }
        if policy.name() != "pre-fix" {
            // Aborted: what was cleared stays cleared, and accounting still adds up.
            cpu(&mm, 0, Role::Collapse, None).check_range_accounting(0);
            let teardown = mm.exit_mmap();
            assert!(teardown.is_empty(), "{what}: {teardown:?}");
            let others: Vec<_> = mm
                .violations
                .snapshot()
                .0
                .into_iter()
                .filter(|v| !matches!(v.oracle, Oracle::StaleTlb | Oracle::StaleTranslation))
                .collect();
            assert!(others.is_empty(), "{what}: {others:?}");
        }
    }
}
