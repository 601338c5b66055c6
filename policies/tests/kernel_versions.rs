//! The forms of `collapse_pte_mapped_thp()` from before and after v6.6
//! (`v6.1`, `v6.13`, `v6.13-noflush`) and v2 as posted, on the exhaustive
//! scopes of the presets the 2023 thread is about: every interleaving of
//! one collapse against one uffd copy and one reader (`uffd-private`),
//! and with two `pml` neighbours besides (`pml-contended`).
//!
//! `v6.13-noflush`'s bug needs a page-table freer racing step 4, which
//! neither scope has: there it behaves as `v6.13`. Today's kernel has
//! two: empty-table reclaim by MADV_DONTNEED (`pt-reclaim`, v6.14) and
//! `retract_page_tables()` (`retract`); and from v6.15 guard markers on
//! file VMAs (`guard-file`). The last tests here ask those presets.

use bench_core::event::{Event, Step};
use bench_core::kernel::{DynPolicy, MmapLock};
use bench_core::sched::Guided;
use bench_core::{LockClass, Oracle, Violation};
use std::collections::BTreeSet;
use std::sync::Arc;
use workloads::check::{run_under, CheckOptions, CheckReport};
use workloads::exhaustive::{check_exhaustive, scope, scope_options, ExhaustiveOptions};
use workloads::scenario::Threads;
use workloads::{preset, Scenario};

fn policy(name: &str) -> Arc<dyn DynPolicy> {
    let entry = policies::registry().into_iter().find(|e| e.name == name).unwrap_or_else(|| panic!("{name}"));
    (entry.build)(&serde_json::Value::Null).expect("default params")
}

/// Every interleaving of `name` on `preset_name`'s scope: (verdict word,
/// gravest oracle, every oracle found). The exploration must finish.
fn explore(name: &str, preset_name: &str) -> (&'static str, Option<Oracle>, BTreeSet<Oracle>) {
    let p = policy(name);
    let scenario = scope(&preset(preset_name).unwrap());
    let opts = CheckOptions { shrink_budget: 50, ..CheckOptions::default() };
    let report: CheckReport = check_exhaustive(&p, &scenario, &opts, &ExhaustiveOptions::default())
        .unwrap_or_else(|e| panic!("{name} on {preset_name}: {e}"));
    let e = report.exhaustive.as_ref().expect("an exhaustive report");
    assert!(e.complete(), "{name} on {preset_name}: {e:?}");
    (report.verdict_word(), report.gravest_beyond_guard_markers, report.by_oracle.keys().copied().collect())
}

const VERIFIED: (&str, Option<Oracle>, BTreeSet<Oracle>) = ("verified", None, BTreeSet::new());

#[test]
fn v6_13_and_its_noflush_posting_are_verified_on_uffd_private() {
    // pml is taken before step 2 on this uffd-armed private VMA, so the
    // PMD cannot change under either form and both rechecks pass.
    assert_eq!(explore("v6.13", "uffd-private"), VERIFIED);
    assert_eq!(explore("v6.13-noflush", "uffd-private"), VERIFIED);
}

#[test]
fn v6_13_and_its_noflush_posting_are_verified_on_pml_contended() {
    // The neighbours only delay the early pml; no path frees the table.
    assert_eq!(explore("v6.13", "pml-contended"), VERIFIED);
    assert_eq!(explore("v6.13-noflush", "pml-contended"), VERIFIED);
}

#[test]
fn v6_1_is_verified_on_uffd_private_and_pml_contended() {
    // Step 2 clears nothing, so the entry the uffd copy aims at never
    // becomes none before the table is gone.
    assert_eq!(explore("v6.1", "uffd-private"), VERIFIED);
    assert_eq!(explore("v6.1", "pml-contended"), VERIFIED);
}

#[test]
fn v6_1_alone_is_called_with_mmap_lock_held_for_write() {
    for e in policies::registry() {
        let p = (e.build)(&serde_json::Value::Null).unwrap();
        let want = if e.name == "v6.1" { MmapLock::Write } else { MmapLock::Read };
        assert_eq!(p.mmap_lock(), want, "{}", e.name);
    }
}

#[test]
fn v2_as_posted_is_caught_by_stale_tlb_under_pml_contention_only() {
    // The trylock never fails without a neighbour on pml: no recheck
    // pass, so nr_ptes is never reset before an abort.
    assert_eq!(explore("v2-posted", "uffd-private"), VERIFIED);
    // With it, the recheck pass finds uffd's page and aborts with nr_ptes
    // reset: no flush_tlb_mm(), the reader's TLB keeps a cleared entry
    // (stale-tlb), and uffd's copy replaced an entry the reader still
    // caches (stale-translation, which the repairs show too).
    let stale = BTreeSet::from([Oracle::StaleTlb, Oracle::StaleTranslation]);
    assert_eq!(explore("v2-posted", "pml-contended"), ("FAIL", Some(Oracle::StaleTlb), stale.clone()));
    // The same reset on the repairs' skeleton: the same verdicts. Taking
    // step 1's ptl pointer without a fresh lookup changes nothing where no
    // path frees the table.
    assert_eq!(explore("v2-posted-relookup", "uffd-private"), VERIFIED);
    assert_eq!(explore("v2-posted-relookup", "pml-contended"), ("FAIL", Some(Oracle::StaleTlb), stale));
}

#[test]
fn v6_13_is_verified_where_tables_are_freed_under_it() {
    // Its pmd_same() rechecks, after taking ptl at step 2 and after
    // retaking the locks at step 4, see a table the reclaimer or the
    // retraction freed meanwhile, and the table stays mapped (under RCU)
    // to the end, so its ptl stays valid to take.
    assert_eq!(explore("v6.13", "pt-reclaim"), VERIFIED);
    assert_eq!(explore("v6.13", "retract"), VERIFIED);
    // Retraction holds the huge page's lock, which the collapse takes too:
    // the 6.6 form needs no recheck there.
    assert_eq!(explore("v1", "retract"), VERIFIED);
}

#[test]
fn without_the_step_4_flush_the_reclaimers_flush_does_not_cover_step_2s_clears() {
    // Step 2 cleared the entries and dropped ptl; MADV_DONTNEED finds the
    // table empty, frees it, and flushes what its mmu_gather gathered: the
    // table's first page, not the 2 MiB. The step-4 recheck fails and the
    // posting jumped to the unlock without flush_tlb_mm(): a reader keeps
    // translations of subpages whose references step 3 dropped.
    assert_eq!(explore("v6.13-noflush", "pt-reclaim"), ("FAIL", Some(Oracle::StaleTlb), [Oracle::StaleTlb].into()));
}

#[test]
fn the_6_6_form_locks_a_freed_tables_ptl_where_tables_are_reclaimed() {
    // v6.6 drops ptl after step 2 (no uffd here) and unmaps the table; the
    // reclaimer frees it; step 4 takes the old table's ptl after its grace
    // period (use-after-free) and clears a PMD that no longer holds it
    // (stale-table), then frees pmd_pgtable() of that value and counts the
    // table twice (accounting). The reason v6.13 added the rechecks.
    let (verdict, gravest, found) = explore("v1", "pt-reclaim");
    assert_eq!((verdict, gravest), ("FAIL", Some(Oracle::UseAfterFree)));
    assert_eq!(found, [Oracle::UseAfterFree, Oracle::StaleTable, Oracle::Accounting].into());
}

#[test]
fn guard_markers_on_file_vmas_reach_the_collapse_of_today() {
    // The question of the guard-file preset (v6.15): a marker installed
    // under ptl alone into a slot step 2 emptied, before step 4 frees the
    // table. Every form that drops ptl between step 2 and step 4 for a VMA
    // without uffd frees it with the marker; v6.1 holds mmap_lock for
    // write, which MADV_GUARD_INSTALL takes for read. A model finding.
    let freed = ("FAIL", None, BTreeSet::from([Oracle::TableFreedLive]));
    assert_eq!(explore("v1", "guard-file"), freed);
    assert_eq!(explore("v6.13", "guard-file"), freed);
    assert_eq!(explore("v6.1", "guard-file"), VERIFIED);
}

/// `pt-reclaim`'s scope with the collapse and the reclaimer alone.
fn collapse_and_reclaimer() -> Scenario {
    let mut s = scope(&preset("pt-reclaim").unwrap());
    s.threads = Threads { collapsers: 1, reclaimers: 1, readers: 0, faulters: 0, ..Threads::default() };
    s
}

/// Run `name` on [`collapse_and_reclaimer`] with the collapse (CPU 0)
/// stopped just before step 2's `spin_lock(ptl)`, the table already mapped
/// by `pte_offset_map*_nolock()`, while the reclaimer (CPU 1) runs
/// MADV_DONTNEED to its end, freeing that table. Returns the violations,
/// gravest first.
fn reclaim_between_map_and_lock(name: &str) -> Vec<Violation> {
    let (p, s) = (policy(name), collapse_and_reclaimer());
    let opts = scope_options(&CheckOptions::default());
    // The collapse alone first, to find the step that takes step 2's ptl.
    let (mm, alone, _) = run_under(&p, &s, 0, &mut Guided::new(vec![]), &opts, true).unwrap();
    let mut notified = false;
    let at = alone
        .trace
        .iter()
        .find(|e| {
            notified |= e.cpu == 0 && e.event == Event::Step(Step::Notify);
            notified && e.cpu == 0 && matches!(e.event, Event::Lock(id) if mm.lock_class(id) == LockClass::PteLock)
        })
        .expect("step 2 takes ptl")
        .step;
    // A trace entry's step counts the steps taken (the one it is in, too):
    // the lock is taken in step `at - 1` of the schedule.
    let mut schedule = vec![0; at as usize - 1];
    schedule.push(1);
    let (mm, run, violations) = run_under(&p, &s, 0, &mut Guided::new(schedule), &opts, true).unwrap();
    // The interleaving is the one asked for: the reclaimer cleared the PMD
    // and freed the table the collapse had mapped, then the collapse took
    // that table's ptl.
    let (freed, locked) = {
        let pos = |f: &dyn Fn(&bench_core::event::TraceEntry) -> bool| run.trace.iter().position(f);
        (
            pos(&|e| e.cpu == 1 && matches!(e.event, Event::TableFree(_))).expect("the reclaimer freed the table"),
            pos(&|e| {
                e.step >= at
                    && e.cpu == 0
                    && matches!(e.event, Event::Lock(id) if mm.lock_class(id) == LockClass::PteLock)
            })
            .expect("the collapse then took ptl"),
        )
    };
    assert!(freed < locked, "{name}: {:#?}", run.trace);
    violations
}

#[test]
fn the_reclaimer_frees_the_table_between_the_lookup_and_the_ptl() {
    // v6.13 looked the table up with pte_offset_map_rw_nolock() and holds
    // it mapped: under RCU, the freed table and its ptl are still there to
    // take, and pmd_same() then sees the PMD changed and aborts. Clean.
    assert_eq!(reclaim_between_map_and_lock("v6.13"), vec![]);
    // v6.6 does the same at step 2 (its lookup is fresh, and it is under
    // RCU too), finds every entry none and clears nothing; but it unmaps
    // the table and drops ptl after step 2, and step 4 takes that ptl
    // again after the grace period, then clears a PMD that is none.
    let v1 = reclaim_between_map_and_lock("v1");
    let oracles: Vec<Oracle> = v1.iter().map(|v| v.oracle).collect();
    assert_eq!(oracles.first(), Some(&Oracle::UseAfterFree), "{v1:#?}");
    assert!(v1[0].step.as_deref() == Some("step 4 (remove table)"), "{v1:#?}");
    let want = "spin_lock(ptl (PTE table 0)): PTE table 0 went to pte_free_defer() after this CPU looked the lock up, \
                and its grace period has ended";
    assert!(v1[0].message.starts_with(want), "{}", v1[0]);
    assert!(oracles.contains(&Oracle::StaleTable), "{v1:#?}");
}
