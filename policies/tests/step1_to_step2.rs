//! Forced interleavings in the step 1 -> step 2 window: the collapser is
//! parked when it has dropped `ptl` after step 1 (at the mmu-notifier
//! start), and another CPU runs one kernel path on one entry. Step 2's
//! pass must find the change and abort, with exactly the state the kernel
//! leaves: the `SCAN_*` result, the huge page's references and mapcounts,
//! the mm counters, the flush owed for the entries cleared before the
//! abort, and what another CPU's TLB still holds.

mod harness;

use bench_core::harness::Harness;
use bench_core::kernel::{MmCounter, PmdKind, Pte, PteMarker, ScanResult, Step};
use bench_core::mm::range_addr;
use bench_core::Role;
use harness::*;
use std::time::Duration;

/// Mapped entries per table: 3 of every 4, the holes at idx = 1 mod 4
/// (a file range partly faulted in).
const DENSITY: u32 = 384;
/// A hole, and a mapped entry, past a couple of hundred mapped ones.
const HOLE: usize = 301;
const MAPPED: usize = 300;

/// What the window's other path does to entry [`IDX`] (CPU 2's context).
#[derive(Copy, Clone, Debug)]
enum Path {
    /// UFFDIO_COPY into a hole: the range is mapped but for [`IDX`].
    UffdIntoHole,
    /// A write fault COWs [`IDX`] into an anonymous copy.
    Cow,
    /// The copy is COWed and then swapped out: a swap entry.
    CowThenSwapOut,
    /// The copy is COWed and then migrated: a new anonymous page.
    CowThenMigrate,
    /// A guard marker into a hole.
    MarkerIntoHole,
}

impl Path {
    /// VMA flags, and the entry the path changes.
    fn setup(self) -> (u32, usize) {
        match self {
            Path::UffdIntoHole => (UFFD_PRIVATE, HOLE),
            Path::MarkerIntoHole => (0, HOLE),
            Path::Cow | Path::CowThenSwapOut | Path::CowThenMigrate => (0, MAPPED),
        }
    }

    fn run(self, cx: &mut bench_core::kernel::Cx<'_, bench_core::Native>, i: usize) {
        match self {
            Path::UffdIntoHole => assert!(uffd_copy(cx, i), "uffd filled the hole"),
            Path::Cow => cow(cx, i),
            Path::CowThenSwapOut => {
                cow(cx, i);
                swap_out(cx, i);
            }
            Path::CowThenMigrate => {
                cow(cx, i);
                assert_eq!(workloads::kernel_paths::migrate_one(cx, addr(i)), Some(addr(i)));
            }
            Path::MarkerIntoHole => assert_eq!(
                workloads::kernel_paths::toggle_guard_marker(cx, addr(i)),
                Some(Pte::marker(PteMarker::Guard))
            ),
        }
    }
}

/// What a run left.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    result: ScanResult,
    /// Entries of the huge page still mapped by the table.
    still_mapped: usize,
    /// Refcount and summed subpage mapcount of the huge page.
    refs: i32,
    mapcount: i32,
    /// The mm's shmem, anon and swap-entry counters.
    shmem: i64,
    anon: i64,
    swap: i64,
    /// `flush_tlb_mm()`s and range flushes the collapse did.
    flush_mm: u64,
    flush_range: u64,
    /// Cleared entries CPU 1's TLB still translates to the huge page.
    stale_on_cpu1: usize,
    /// The oracles' findings (the run and teardown).
    violations: Vec<String>,
}

fn run(policy: &str, path: Path) -> Outcome {
    let policy = harness::policy(policy);
    let (flags, idx) = path.setup();
    let mm = model(flags, DENSITY, 3);
    assert_eq!((mm.density_maps(HOLE), mm.density_maps(MAPPED)), (false, true));
    // CPU 1 caches every translation the table has.
    let mut reader = cpu(&mm, 1, Role::Reader, None);
    for i in (0..512).filter(|&i| mm.density_maps(i)) {
        assert!(reader.touch(addr(i)).is_some());
    }
    let (hook, paused, resume) = pause_at(Step::Notify);
    let (result, metrics) = std::thread::scope(|s| {
        let collapser = s.spawn(|| {
            let mut cx = cpu(&mm, 0, Role::Collapse, Some(hook));
            let r = cx.run_collapse(&*policy, range_addr(0), false);
            (r, cx.into_metrics())
        });
        paused.recv_timeout(Duration::from_secs(10)).expect("the collapser reached the notifier start");
        path.run(&mut cpu(&mm, 2, path_role(path), None), idx);
        resume.send(()).unwrap();
        collapser.join().unwrap()
    });
    let hpage = mm.file_hpage(0);
    let PmdKind::Table(slot) = pmd_kind(&mm) else { panic!("the table stays: {:?}", pmd_kind(&mm)) };
    let maps = |i: usize| mm.tables.get(slot, i) == Pte::present(hpage.nth(i));
    let still_mapped = (0..512).filter(|&i| maps(i)).count();
    let stale_on_cpu1 = (0..512).filter(|&i| !maps(i) && tlb_caches(&mm, 1, i)).count();
    let outcome = Outcome {
        result,
        still_mapped,
        refs: hpage_refs(&mm),
        mapcount: hpage_mapcount(&mm),
        shmem: mm.counter(MmCounter::ShmemPages),
        anon: mm.counter(MmCounter::AnonPages),
        swap: mm.counter(MmCounter::SwapEnts),
        flush_mm: metrics.counts.flush_mm,
        flush_range: metrics.counts.flush_range,
        stale_on_cpu1,
        violations: vec![],
    };
    cpu(&mm, 0, Role::Collapse, None).check_range_accounting(0);
    mm.exit_mmap();
    let violations = mm.violations.snapshot().0.into_iter().map(|v| v.to_string()).collect();
    Outcome { violations, ..outcome }
}

fn path_role(path: Path) -> Role {
    match path {
        Path::UffdIntoHole => Role::Uffd,
        Path::Cow => Role::Cow,
        Path::CowThenSwapOut => Role::Swap,
        Path::CowThenMigrate => Role::Migrate,
        Path::MarkerIntoHole => Role::Marker,
    }
}

/// What the kernel leaves (collapse_pte_mapped_thp(), v6.6): step 2
/// clears the mapped entries before `idx`, then finds `idx` changed and
/// aborts — `SCAN_FAIL` for a present entry that is not `hpage + idx`,
/// `SCAN_PTE_NON_PRESENT` for a swap entry or marker. The abort path
/// hands back what was cleared (page_ref_sub(), add_mm_counter()) and,
/// with entries cleared, owes and pays flush_tlb_mm(): no TLB keeps a
/// cleared translation. The rest of the table stays mapped.
fn expected(path: Path) -> Outcome {
    let (_, idx) = path.setup();
    let mapped = |i: usize| (i * DENSITY as usize) % 512 < DENSITY as usize;
    let cleared = (0..idx).filter(|&i| mapped(i)).count();
    // A COWed entry no longer maps the huge page either.
    let replaced = usize::from(mapped(idx));
    // 158 either way: 226 mapped entries precede the hole at 301, and 225
    // the mapped entry at 300.
    let still_mapped = DENSITY as usize - cleared - replaced;
    let (result, anon, swap) = match path {
        Path::UffdIntoHole | Path::Cow | Path::CowThenMigrate => (ScanResult::Fail, 1, 0),
        Path::CowThenSwapOut => (ScanResult::PteNonPresent, 0, 1),
        Path::MarkerIntoHole => (ScanResult::PteNonPresent, 0, 0),
    };
    Outcome {
        result,
        still_mapped,
        // The page cache's reference per subpage, and one per mapping.
        refs: 512 + still_mapped as i32,
        mapcount: still_mapped as i32,
        shmem: still_mapped as i64,
        anon,
        swap,
        flush_mm: 1,
        flush_range: 0,
        stale_on_cpu1: 0,
        violations: vec![],
    }
}

/// Every shipped policy runs the same step 2 pass (policies::khugepaged)
/// and pays the first abort's flush, so each gives the kernel's outcome.
#[test]
fn each_path_in_the_step_1_to_step_2_window_aborts_step_2_with_the_kernels_state() {
    let paths = [Path::UffdIntoHole, Path::Cow, Path::CowThenSwapOut, Path::CowThenMigrate, Path::MarkerIntoHole];
    for name in ["v1", "pre-fix", "v2-posted", "v2-flush-bool", "v2-step3-down"] {
        for path in paths {
            assert_eq!(run(name, path), expected(path), "{name}, {path:?}");
        }
    }
}
