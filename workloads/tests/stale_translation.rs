//! The stale-translation oracle: a CPU that still caches an address's old
//! translation while the page table maps other data there.
//!
//! The v2 forms keep `ptl` across step 2, then drop it when the trylock
//! of `pml` fails; the entries step 2 cleared are not flushed until step
//! 4 or the abort path. UFFDIO_COPY on a private VMA needs only `ptl`, so
//! it can fill a cleared slot in that window: then one CPU reads the old
//! file subpage through its TLB while the PTE maps the new anonymous
//! page. v1 holds `ptl` (inside an early `pml`) from step 2 through the
//! PMD flush on such a VMA, so the same interleaving finds nothing.

use bench_core::harness::{new_cpu, Harness};
use bench_core::kernel::{
    userfaultfd_armed, CollapsePolicy, Cx, DynPolicy, Engine, LockId, Pfn, Pmd, PmdRef, ScanResult, Step, Vma,
    SINGLE_DEPTH_NESTING, VM_SHARED,
};
use bench_core::mm::{vpn, MAP_BASE, VM_UFFD_MISSING};
use bench_core::pte::{HPAGE_PMD_SIZE, PAGE_SIZE};
use bench_core::{CachedTranslation, FileKind, Mm, MmConfig, Native, Oracle, Role};
use policies::khugepaged::{abort_unlock, account_cleared, clear_ptes, collapse_pte_mapped_thp, remove_table};
use policies::recheck::RecheckParams;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;
use workloads::check::{check_policy, CheckOptions, CheckReport};
use workloads::LATER_KERNEL_PRESETS;

mod every_preset;
use every_preset::{check_every_preset, verdict};
use workloads::conformance::{conformance, ConformanceOptions, Expect};
use workloads::kernel_paths::{uffdio_copy, UffdCopy};
use workloads::preset;

/// The entry uffd fills.
const IDX: usize = 1;

fn addr(i: usize) -> u64 {
    MAP_BASE + i as u64 * PAGE_SIZE
}

fn cpu(mm: &Mm, cpu: u32, role: Role) -> Cx<'_, Native> {
    new_cpu(mm, cpu, role, Native::new(Instant::now(), None, false))
}

fn shipped(name: &str) -> Arc<dyn DynPolicy> {
    let e = policies::registry().into_iter().find(|e| e.name == name).unwrap();
    (e.build)(&serde_json::Value::Null).unwrap()
}

/// What the forced interleaving left.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    result: ScanResult,
    uffd: UffdCopy,
    /// What CPU 1's read of [`IDX`] returned.
    read: Option<Pfn>,
    /// Every violation as (oracle, reporting CPU, step).
    violations: Vec<(Oracle, Option<u32>, Option<String>)>,
}

/// A stale-translation finding: its message and the translations it names.
type Finding = (String, Vec<CachedTranslation>);

/// CPU 1 reads all of range 0 (its TLB caches every subpage); CPU 2
/// holds `pml`; CPU 0 collapses (MADV_COLLAPSE) and blocks on `pml`;
/// meanwhile CPU 3 does UFFDIO_COPY into [`IDX`] and CPU 1 reads it
/// again; then `pml` is released. Returns the outcome, the message of
/// every stale-translation finding with its evidence, and the frame uffd
/// installed.
fn race(policy: &Arc<dyn DynPolicy>) -> (Outcome, Vec<Finding>, Option<Pfn>) {
    let mm = Mm::new(MmConfig {
        ranges: vec![VM_UFFD_MISSING],
        file: FileKind::Shmem,
        split_pmd_ptlocks: true,
        split_pte_ptlocks: true,
        cpus: 4,
        density: 512,
        anon_pages: 8,
        spare_tables: 4,
        oracles: true,
        ranges_per_pmd_table: bench_core::mm::RANGES_PER_PMD_TABLE,
    })
    .unwrap();
    let mut reader = cpu(&mm, 1, Role::Reader);
    for i in 0..512 {
        assert!(reader.touch(addr(i)).is_some());
    }
    let mut neighbour = cpu(&mm, 2, Role::Neighbour);
    let pml = neighbour.pmd_lock(neighbour.pmd_offset(addr(0)).unwrap());
    let (result, uffd, read) = std::thread::scope(|s| {
        let collapser = s.spawn(|| cpu(&mm, 0, Role::Collapse).run_collapse(&**policy, MAP_BASE, true));
        while mm.lock(pml).waiters() == 0 {
            std::thread::yield_now();
        }
        let mut filler = cpu(&mm, 3, Role::Uffd);
        filler.switch_mm();
        let uffd = uffdio_copy(&mut filler, addr(IDX));
        let read = reader.touch(addr(IDX));
        neighbour.spin_unlock(pml);
        (collapser.join().unwrap(), uffd, read)
    });
    let installed = (uffd == UffdCopy::Installed).then(|| {
        let page = mm.pages.anon_used().find(|&p| !mm.pages.get(Pfn(p)).is_free());
        Pfn(page.expect("uffd's page is allocated"))
    });
    let (violations, _) = mm.violations.snapshot();
    let stale = violations
        .iter()
        .filter(|v| v.oracle == Oracle::StaleTranslation)
        .map(|v| (v.message.clone(), v.cached.clone()))
        .collect();
    let violations = violations.into_iter().map(|v| (v.oracle, v.cpu, v.step)).collect();
    (Outcome { result, uffd, read, violations }, stale, installed)
}

#[test]
fn uffd_fills_a_slot_a_v2_form_cleared_while_a_reader_still_caches_it() {
    let file = Pfn(512 + IDX as u32);
    let a = addr(IDX);
    for name in ["v2-flush-bool", "v2-step3-down", "v2-posted", "v1", "pre-fix"] {
        let (outcome, stale, anon) = race(&shipped(name));
        let found = |o: Oracle, cpu: u32, step: &str| (o, Some(cpu), Some(step.to_owned()));
        let stale_pair = vec![
            found(Oracle::StaleTranslation, 3, "UFFDIO_COPY"),
            found(Oracle::StaleTranslation, 1, "a read through the TLB"),
        ];
        match name {
            // ptl dropped at the failed trylock, step 2's entries unflushed:
            // uffd fills idx 1, CPU 1 reads the old subpage; the recheck
            // pass then finds uffd's page and aborts, flushing.
            "v2-flush-bool" | "v2-step3-down" => assert_eq!(
                outcome,
                Outcome { result: ScanResult::Fail, uffd: UffdCopy::Installed, read: None, violations: stale_pair },
                "{name}"
            ),
            // The same, and the abort path then skips its flush.
            "v2-posted" => {
                let mut want = stale_pair;
                want.push(found(Oracle::StaleTlb, 0, "abort"));
                assert_eq!(
                    outcome,
                    Outcome { result: ScanResult::Fail, uffd: UffdCopy::Installed, read: None, violations: want },
                    "{name}"
                );
            }
            // pml is taken before step 2: nothing is cleared while the
            // collapse waits, uffd finds idx 1 mapped (-EEXIST), and the
            // collapse then runs with ptl held to the PMD flush.
            "v1" => assert_eq!(
                outcome,
                Outcome { result: ScanResult::Succeed, uffd: UffdCopy::Exists, read: Some(file), violations: vec![] },
                "{name}"
            ),
            // ptl dropped after step 2 with no recheck: the same stale
            // reads, then the table is freed with uffd's page in it.
            "pre-fix" => {
                let mut want = stale_pair;
                want.push(found(Oracle::TableFreedLive, 0, "step 4 (remove table)"));
                assert_eq!(
                    outcome,
                    Outcome { result: ScanResult::Succeed, uffd: UffdCopy::Installed, read: None, violations: want },
                    "{name}"
                );
            }
            _ => unreachable!(),
        }
        if name == "v1" {
            continue;
        }
        let anon = anon.expect("uffd installed");
        let evidence = vec![CachedTranslation { cpu: 1, vpn: vpn(a), pfn: file }];
        let message = |verb| {
            format!(
                "CPU 1 {verb} {a:#x} through its TLB entry to {file}, but the PTE maps {anon} now (an anonymous \
                 page installed by uffd on CPU 3): the entry was changed under ptl while this translation was \
                 cached, and no flush reached CPU 1 since"
            )
        };
        assert_eq!(stale, vec![(message("still caches"), evidence.clone()), (message("read"), evidence)], "{name}");
    }
}

/// A copy of `v2-flush-bool` that never tries `pml` under `ptl` but
/// always drops `ptl` to take `pml` (the path v2 takes when the trylock
/// fails), so on a uffd-armed private VMA every collapse opens v2's
/// window. `FLUSH_FIRST`: flush the range before dropping `ptl`.
struct DropsPtl<const FLUSH_FIRST: bool>(RecheckParams);

/// The broken copy: it leaves step 2's entries cleared and unflushed with
/// `ptl` free. The recheck and the flag keep the table empty and the abort
/// flush paid: its one bug is the window.
type AlwaysDropsPtl = DropsPtl<false>;

/// The same with the owed flush paid before `ptl` is dropped (one
/// `flush_tlb_range()` of the 2 MiB range): the repair of the window,
/// which v2 would pay only when its trylock fails.
type FlushesBeforeDropping = DropsPtl<true>;

impl<const FLUSH_FIRST: bool> CollapsePolicy for DropsPtl<FLUSH_FIRST> {
    type Params = RecheckParams;
    const NAME: &'static str = if FLUSH_FIRST { "flushes-then-drops-ptl" } else { "always-drops-ptl" };
    const SUMMARY: &'static str = "v2-flush-bool with its step 4 lock point changed";

    fn new(params: RecheckParams) -> Self {
        DropsPtl(params)
    }

    fn params(&self) -> &RecheckParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult {
        collapse_pte_mapped_thp(cx, haddr, install_pmd, steps_2_to_4::<E, FLUSH_FIRST>)
    }
}

fn steps_2_to_4<E: Engine, const FLUSH_FIRST: bool>(
    cx: &mut Cx<'_, E>,
    vma: &Vma,
    haddr: u64,
    hpage: Pfn,
    pmd: PmdRef,
    mut ptl: LockId,
) -> Result<Pmd, ScanResult> {
    let (mut pml, mut start_pte, mut nr_ptes, mut flush_owed) = (None, None, 0, false);
    let result = 'abort: {
        let Some((table, table_ptl)) = cx.pte_offset_map_lock(pmd, haddr) else {
            break 'abort ScanResult::Fail;
        };
        (start_pte, ptl) = (Some(table), table_ptl);
        let mut pass = Step::Clear;
        loop {
            cx.step(pass);
            let cleared = clear_ptes(cx, vma, haddr, hpage, table, &mut nr_ptes);
            flush_owed |= nr_ptes != 0;
            if let Err(result) = cleared {
                break 'abort result;
            }
            cx.step(Step::Account);
            account_cleared(cx, hpage, nr_ptes);
            nr_ptes = 0;
            cx.step(Step::RemoveTable);
            if pml.is_none() {
                let lock = cx.pmd_lockptr(pmd);
                if lock != ptl {
                    if FLUSH_FIRST {
                        cx.flush_tlb_range(haddr, haddr + HPAGE_PMD_SIZE);
                    }
                    // Without the flush, the broken part: ptl dropped with
                    // step 2's clears unflushed.
                    cx.spin_unlock(ptl);
                    cx.spin_lock(lock);
                    cx.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING);
                }
                pml = Some(lock);
                if lock != ptl && userfaultfd_armed(vma) && vma.flags & VM_SHARED == 0 {
                    pass = Step::Recheck;
                    continue;
                }
            }
            break;
        }
        return Ok(remove_table(cx, vma, haddr, pmd, Some(table), ptl, pml.expect("taken above")));
    };
    cx.step(Step::Abort);
    if flush_owed {
        cx.flush_tlb_mm();
    }
    account_cleared(cx, hpage, nr_ptes);
    abort_unlock(cx, start_pte, ptl, pml);
    Err(result)
}

fn broken() -> Arc<dyn DynPolicy> {
    (bench_core::kernel::entry::<AlwaysDropsPtl>().build)(&serde_json::Value::Null).unwrap()
}

/// The presets on which the checker found `oracle`.
fn presets_finding(reports: &[(&'static str, CheckReport)], oracle: Oracle) -> Vec<&'static str> {
    reports.iter().filter(|(_, r)| r.by_oracle.contains_key(&oracle)).map(|(name, _)| *name).collect()
}

/// The default `check` and the default conformance suite catch the
/// broken copy by stale-translation alone.
#[test]
fn the_broken_copy_is_caught_by_the_default_check_and_fails_conformance() {
    let reports = check_every_preset(&broken(), 1);
    assert_eq!(verdict(&reports).map(|(_, o)| o), Some(Oracle::StaleTranslation));
    assert!(!presets_finding(&reports, Oracle::StaleTranslation).is_empty(), "not caught");
    // Caught by the rule that names its bug, and by no other (the
    // guard-marker race of `markers`, and the later kernels' page-table
    // freers, which it shares with v1, aside).
    for (name, r) in reports.iter().filter(|(name, _)| !LATER_KERNEL_PRESETS.contains(name)) {
        let others: Vec<Oracle> = r.by_oracle.keys().copied().filter(|&o| o != Oracle::StaleTranslation).collect();
        let only_guard_markers = others == [Oracle::TableFreedLive] && !r.failed_beyond_guard_markers();
        assert!(others.is_empty() || only_guard_markers, "{name}: {:?}", r.by_oracle);
    }
    let report = conformance(
        &bench_core::kernel::entry::<AlwaysDropsPtl>(),
        &serde_json::Value::Null,
        &ConformanceOptions::expecting(Expect::Correct),
    );
    assert!(!report.passed(), "{report}");
    assert!(report.failures.iter().all(|f| f.contains("found stale-translation on preset")), "{report}");
}

/// Flushing before `ptl` is dropped closes the window: the same copy
/// with that one flush added passes the default `check` (but for the
/// guard-marker race on `markers`, which it shares with v1).
#[test]
fn flushing_before_dropping_ptl_closes_the_window() {
    let policy = (bench_core::kernel::entry::<FlushesBeforeDropping>().build)(&serde_json::Value::Null).unwrap();
    let reports = check_every_preset(&policy, 1);
    assert_eq!(verdict(&reports), None, "{:?}", found(&reports));
    assert!(presets_finding(&reports, Oracle::StaleTranslation).is_empty(), "{:?}", found(&reports));
}

/// What the default `check` says of the shipped policies: the forms
/// that drop `ptl` between step 2 and the flush while uffd can insert
/// (the v2 forms when the trylock fails, pre-fix always) show a stale
/// translation; v1, which never does on a uffd-armed private VMA, does
/// not, and finds nothing but the guard-marker race.
#[test]
fn which_shipped_policies_show_a_stale_translation() {
    let mut showing = vec![];
    for e in policies::registry() {
        let policy = (e.build)(&serde_json::Value::Null).unwrap();
        let reports = check_every_preset(&policy, 1);
        if !presets_finding(&reports, Oracle::StaleTranslation).is_empty() {
            showing.push(e.name);
        }
        if e.name == "v1" {
            let v6_6 = reports.iter().filter(|(name, _)| !LATER_KERNEL_PRESETS.contains(name));
            assert!(v6_6.into_iter().all(|(_, r)| !r.failed_beyond_guard_markers()), "v1: {:?}", found(&reports));
        }
    }
    assert_eq!(showing, ["v2-flush-bool", "v2-step3-down", "v2-posted", "v2-posted-relookup", "pre-fix"]);
}

/// The oracles found on each preset that found any.
fn found(reports: &[(&'static str, CheckReport)]) -> Vec<(&'static str, BTreeSet<Oracle>)> {
    reports.iter().filter(|(_, r)| r.failed()).map(|(name, r)| (*name, r.by_oracle.keys().copied().collect())).collect()
}

/// Schedules (and wall time) to the broken copy's first stale-translation
/// on `uffd-private` at the default options, over seeds 1 to 10; prints
/// the median. A measurement, run in release:
/// `cargo test --release -p workloads --test stale_translation -- --ignored --nocapture`.
#[test]
#[ignore]
fn schedules_to_first_stale_translation_of_the_broken_copy() {
    let (policy, scenario) = (broken(), preset("uffd-private").unwrap());
    let mut found = vec![];
    for seed in 1..=10 {
        let opts =
            CheckOptions { schedules: 100_000, seed, stop_at_first: true, shrink_budget: 0, ..CheckOptions::default() };
        let t0 = Instant::now();
        let report = check_policy(&policy, &scenario, &opts).unwrap();
        let (_, first) = report.by_oracle[&Oracle::StaleTranslation];
        found.push((first + 1, t0.elapsed().as_secs_f64()));
        println!("seed {seed}: schedule {} ({:.3} s)", first + 1, found.last().unwrap().1);
    }
    let mut schedules: Vec<u64> = found.iter().map(|f| f.0).collect();
    let mut secs: Vec<f64> = found.iter().map(|f| f.1).collect();
    schedules.sort_unstable();
    secs.sort_by(f64::total_cmp);
    println!("median: {} schedules, {:.3} s", (schedules[4] + schedules[5]) / 2, (secs[4] + secs[5]) / 2.0);
}
