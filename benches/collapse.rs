//! Criterion benchmarks of the model: what one collapse costs, how many a
//! collapser does per second, and what each instrumented primitive costs.
//!
//! # Groups
//!
//! * `uncontended_collapse` — one khugepaged-mode collapse
//!   (`install_pmd = false`) of a full 512-entry table, nobody else running,
//!   oracles off. Two functions, reported side by side:
//!   - `v1_framework`: the shipped `v1` policy through [`Harness::run_collapse`](bench_core::harness::Harness::run_collapse)
//!     on a one-range [`Mm`], with everything the framework adds (lock
//!     hold/wait clocks and histograms, lockdep-style order checks, the
//!     record of cleared entries, RCU read-side marks, the deferred table
//!     free, the per-collapse latency histogram).
//!   - `reference_loop`: the same memory and atomic operations on the same
//!     layout (4 KiB table of 512 `AtomicU64`, PMD table, 64-byte page
//!     structs in mmap'd memory, two ticket spinlocks, per-CPU counters,
//!     a 1024-entry direct-mapped TLB) written as one straight-line
//!     function with no framework and no instrumentation.
//!
//!   **framework / reference is the model's overhead figure** (target
//!   <= 1.25). Only the collapse is timed; the range is put back untimed
//!   between iterations (`iter_custom`). The reference leaves out, and so
//!   counts as overhead, what only the model does: clock reads and
//!   histograms, lock-order and `lockdep_assert_held` checks, RCU
//!   read-side marks, mmu-notifier bookkeeping, and `pte_free_defer()`'s
//!   page_table_check scan and deferred free of the table.
//! * `native_collapses_per_sec` — `workloads::run_policy` on the
//!   `shmem-shared` preset reduced to one range and the collapser alone
//!   (no faulters, no readers, oracles off), for `v1` and `v2-step3-down`.
//!   Throughput is collapses; each collapse is followed by the restore
//!   that puts the range back, so the figure is *collapse + restore*
//!   rounds per second, not collapses alone.
//! * `primitives` — uncontended costs of single primitives through [`Cx`]:
//!   `spin_lock` + `spin_unlock` of a `ptl`, `pte_offset_map_lock` +
//!   `pte_unmap_unlock`, 512 `ptep_get`s, one `touch` that hits the TLB,
//!   and `flush_tlb_range` of 2 MiB with one CPU in `mm_cpumask`.
//! * `presets` — every shipped policy on every preset: mean collapse
//!   latency with the preset's other actors running in the background
//!   (oracles off; restores and background work not counted).
//! * `simulation` — the simulation engine's own speed, oracles on:
//!   scheduling steps (a virtual CPU run up to its next stop; each is one
//!   or more charged primitives) per second of wall time, on one core,
//!   for `pml-contended` on its 5 CPUs and `mixed` scaled to 64 CPUs.
//!   The `mixed`/64 figure times 2 ms of virtual time; the target (1
//!   virtual second in <= 30 s) is that figure times 500, or run
//!   `collapse-bench run --engine sim -w mixed --cpus 64 --duration 1s`.
//!
//! # Running
//!
//! ```text
//! cargo bench --bench collapse                          # everything, a few minutes
//! cargo bench --bench collapse -- uncontended           # one group (a filter)
//! cargo bench --bench collapse -- --save-baseline main  # record a baseline
//! cargo bench --bench collapse -- --baseline main       # compare against it
//! cargo bench --bench collapse -- --test                # smoke: each once
//! ```
//!
//! Criterion writes its estimates under `target/criterion/<group>/<function>/`;
//! the overhead ratio is `v1_framework` over `reference_loop` (means or
//! medians from `new/estimates.json`).

use bench_core::actor::Limit;
use bench_core::harness::{new_cpu, Harness};
use bench_core::kernel::{pmd_offset, Cx, DynPolicy, PmdKind, ScanResult};
use bench_core::mm::{range_addr, vpn, MmConfig};
use bench_core::pte::{HPAGE_PMD_SIZE, PTRS_PER_PTE};
use bench_core::{CostModel, FileKind, Mm, Native, Role};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use memmap2::MmapMut;
use std::hint::black_box;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workloads::kernel_paths;
use workloads::{run_policy, simulate_policy, RunOptions, SimOptions};

// ---------------------------------------------------------------------
// Shared setup
// ---------------------------------------------------------------------

/// A registered policy (`collapse_bench::registry()`: here the shipped
/// ones) with default parameters.
fn policy(name: &str) -> Arc<dyn DynPolicy> {
    let entry = collapse_bench::registry()
        .into_iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("policy {name} is not registered"));
    (entry.build)(&serde_json::Value::Null).expect("default parameters build")
}

/// A one-range model: a plain private shmem VMA, split locks, every PTE
/// mapped, oracles off (so nothing but the framework itself is measured).
fn model(cpus: u32) -> Mm {
    Mm::new(MmConfig {
        ranges: vec![0],
        file: FileKind::Shmem,
        split_pmd_ptlocks: true,
        split_pte_ptlocks: true,
        cpus,
        density: 512,
        anon_pages: 64,
        spare_tables: 64,
        oracles: false,
    })
    .expect("valid model")
}

/// A native CPU context for model CPU `cpu`.
fn cpu(mm: &Mm, cpu: u32) -> Cx<'_, Native> {
    new_cpu(mm, cpu, Role::Collapse, Native::new(Instant::now(), None, false))
}

/// Put range 0 back as the Collapser does between collapses: as
/// `Role::Restore`, so its lock holds are not counted as the collapse's.
fn restore_range(cx: &mut Cx<'_, Native>) {
    cx.set_role(Role::Restore);
    kernel_paths::restore_range(cx, 0);
    cx.set_role(Role::Collapse);
}

/// After a benchmark: the model is consistent (no violation recorded,
/// teardown balanced), so what was timed was real, successful work.
fn assert_clean(mm: &Mm, what: &str) {
    let teardown = mm.exit_mmap();
    let (violations, total) = mm.violations.snapshot();
    assert!(total == 0 && teardown.is_empty(), "{what}: {total} violation(s), first: {:?}", violations.first());
}

// ---------------------------------------------------------------------
// Group 1: uncontended_collapse
// ---------------------------------------------------------------------

/// `v1` through the framework: `cx.run_collapse()` timed, `restore_range()` not.
fn bench_v1_framework(c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let mm = model(1);
    let v1 = policy("v1");
    let haddr = range_addr(0);
    let mut cx = cpu(&mm, 0);
    // Put CPU 0 in mm_cpumask (and cache one translation), so that
    // pmdp_collapse_flush() really walks this CPU's TLB over the 2 MiB
    // range, as the reference's flush does. Without it the flush would
    // find an empty cpumask and skip the work.
    assert!(cx.touch(haddr).is_some());
    assert_eq!(
        cx.run_collapse(&*v1, haddr, false),
        ScanResult::Succeed,
        "uncontended v1 collapse of a full table must succeed"
    );
    restore_range(&mut cx);

    c.bench_function("v1_framework", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                let result = cx.run_collapse(&*v1, haddr, false);
                timed += t0.elapsed();
                assert_eq!(result, ScanResult::Succeed);
                restore_range(&mut cx);
            }
            timed
        })
    });
    drop(cx);
    assert_clean(&mm, "v1_framework");
}

/// `PG_locked`, as in bench-core's page flags.
const REF_PG_LOCKED: u32 = 1 << 0;
/// A PTE's present bit and where its frame number starts (bench-core's encoding).
const REF_PRESENT: u64 = 1;
const REF_PFN_SHIFT: u32 = 12;
/// A PMD pointing to PTE table 0 (any non-zero value: only none vs table matters here).
const REF_PMD_TABLE: u64 = 0b10;
/// Frame number of the huge page's head (frame 512, as range 0's hpage in the model).
const REF_HPAGE: u64 = 512;
/// TLB geometry, as bench-core's `TLB_ENTRIES` and its valid bit.
const REF_TLB_ENTRIES: usize = 1024;
const REF_TLB_VALID: u64 = 1 << 63;
/// Virtual page number of the range (the model maps range 0 at 1 TiB).
const REF_VPN: u64 = (1u64 << 40) >> 12;

/// A `struct page`: the same 64-byte descriptor as bench-core's `Page`.
#[repr(C, align(64))]
struct RefPage {
    flags: AtomicU32,
    refcount: AtomicI32,
    mapcount: AtomicI32,
    entire_mapcount: AtomicI32,
    tag: AtomicU64,
    installer: AtomicU32,
    lock_waiters: AtomicU32,
}

/// A ticket spinlock on its own cache line, as bench-core's `SpinLock`
/// (the kernel's qspinlock has the same FIFO hand-off), without the
/// statistics fields.
#[repr(C, align(64))]
#[derive(Default)]
struct TicketLock {
    next: AtomicU32,
    owner: AtomicU32,
}

impl TicketLock {
    #[inline(always)]
    fn lock(&self) {
        let ticket = self.next.fetch_add(1, Ordering::Acquire);
        while self.owner.load(Ordering::Acquire) != ticket {
            std::hint::spin_loop();
        }
    }

    #[inline(always)]
    fn unlock(&self) {
        let owner = self.owner.load(Ordering::Relaxed);
        self.owner.store(owner.wrapping_add(1), Ordering::Release);
    }
}

/// A cache-line-aligned atomic (a per-CPU counter block, a flush generation).
#[repr(C, align(64))]
#[derive(Default)]
struct Line<T>(T);

/// CPU 0's share of the mm counters (`rss_stat`, `pgtables_bytes`).
#[derive(Default)]
struct RefCounters {
    shmem_pages: AtomicI64,
    nr_ptes: AtomicI64,
}

/// The reference's address space: the memory a one-range model has,
/// laid out the same way, with nothing around it.
struct Reference {
    /// One 4 KiB PTE table: 512 × `AtomicU64`.
    ptes: MmapMut,
    /// One PMD table: 512 × `AtomicU64`; slot 0 points to the PTE table.
    pmds: MmapMut,
    /// 512 `struct page`s: the huge page's head and tails.
    pages: MmapMut,
    /// `pmd_lockptr()` and `pte_lockptr()` of the range.
    pml: TicketLock,
    ptl: TicketLock,
    counters: Line<RefCounters>,
    /// CPU 0's TLB and its flush generation.
    tlb: Box<[AtomicU64]>,
    flush_gen: Line<AtomicU64>,
}

/// `n` atomics at the start of a zero-filled mapping.
fn atomics<T>(map: &MmapMut, n: usize) -> &[T] {
    assert!(map.len() >= n * std::mem::size_of::<T>());
    // SAFETY: the mapping is page-aligned (so aligned for T, whose
    // alignment is at most 64), zero-filled (a valid bit pattern for the
    // atomics used here), at least n * size_of::<T>() bytes, lives as long
    // as the borrow, and is only accessed through atomics.
    unsafe { std::slice::from_raw_parts(map.as_ptr().cast::<T>(), n) }
}

impl Reference {
    fn new() -> Reference {
        let map = |bytes| MmapMut::map_anon(bytes).expect("anonymous mapping");
        let r = Reference {
            ptes: map(PTRS_PER_PTE * 8),
            pmds: map(512 * 8),
            pages: map(512 * std::mem::size_of::<RefPage>()),
            pml: TicketLock::default(),
            ptl: TicketLock::default(),
            counters: Line::default(),
            tlb: (0..REF_TLB_ENTRIES).map(|_| AtomicU64::new(0)).collect(),
            flush_gen: Line::default(),
        };
        // The page cache's own references: one per subpage.
        r.pages()[0].refcount.store(512, Ordering::Relaxed);
        for (i, p) in r.pages().iter().enumerate() {
            p.tag.store(REF_VPN + i as u64, Ordering::Relaxed);
        }
        // One cached translation, as the framework's setup touch leaves.
        r.tlb[REF_VPN as usize % REF_TLB_ENTRIES].store(REF_TLB_VALID | (REF_VPN << 32) | REF_HPAGE, Ordering::Relaxed);
        r.restore();
        r
    }

    fn ptes(&self) -> &[AtomicU64] {
        atomics(&self.ptes, PTRS_PER_PTE)
    }

    fn pmd(&self) -> &AtomicU64 {
        &atomics(&self.pmds, 512)[0]
    }

    fn pages(&self) -> &[RefPage] {
        atomics(&self.pages, 512)
    }

    /// Untimed: put the range back as `kernel_paths::restore_range()` does — every PTE maps
    /// `hpage + i` with its rmap, reference and counter, and the PMD points
    /// to the table again.
    fn restore(&self) {
        for (i, (pte, page)) in self.ptes().iter().zip(self.pages()).enumerate() {
            page.mapcount.fetch_add(1, Ordering::Relaxed);
            pte.store(((REF_HPAGE + i as u64) << REF_PFN_SHIFT) | REF_PRESENT, Ordering::Release);
        }
        self.pages()[0].refcount.fetch_add(512, Ordering::Relaxed);
        let c = &self.counters.0;
        c.shmem_pages.fetch_add(512, Ordering::Relaxed);
        c.nr_ptes.fetch_add(1, Ordering::Relaxed);
        self.pmd().store(REF_PMD_TABLE, Ordering::Release);
    }

    /// Every entry that is not none is present and maps `hpage + i`
    /// (step 1's and step 2's check).
    #[inline(always)]
    fn maps_subpage(pte: u64, i: usize) -> bool {
        pte & REF_PRESENT != 0 && pte >> REF_PFN_SHIFT == REF_HPAGE + i as u64
    }

    /// `collapse_pte_mapped_thp()` as v1 runs it on a plain VMA (no uffd,
    /// so the short `pml` hold), khugepaged mode: the work the framework
    /// does, step by step, and nothing else. Returns whether it succeeded.
    #[inline(never)]
    fn collapse(&self) -> bool {
        let (ptes, pages, head) = (self.ptes(), self.pages(), &self.pages()[0]);

        // Prologue: find_pmd_or_thp_or_none() — a lockless PMD read.
        if self.pmd().load(Ordering::Acquire) != REF_PMD_TABLE {
            return false;
        }
        // find_lock_page(): get_page() on the head, then lock_page()
        // (trylock_page()'s fetch_or until PG_locked was clear).
        head.refcount.fetch_add(1, Ordering::AcqRel);
        while head.flags.fetch_or(REF_PG_LOCKED, Ordering::Acquire) & REF_PG_LOCKED != 0 {
            std::hint::spin_loop();
        }
        // The second look at the PMD, with the page locked.
        let ok = 'abort: {
            if self.pmd().load(Ordering::Acquire) != REF_PMD_TABLE {
                break 'abort false;
            }

            // Step 1 (check), under ptl: pte_offset_map_lock() reads the PMD,
            // locks, and reads it again; then every entry is compared.
            let _ = self.pmd().load(Ordering::Acquire);
            self.ptl.lock();
            if self.pmd().load(Ordering::Acquire) != REF_PMD_TABLE {
                self.ptl.unlock();
                break 'abort false;
            }
            for (i, pte) in ptes.iter().enumerate() {
                let v = pte.load(Ordering::Acquire);
                if v != 0 && !Self::maps_subpage(v, i) {
                    self.ptl.unlock();
                    break 'abort false;
                }
            }
            self.ptl.unlock();

            // (mmu_notifier_invalidate_range_start(): no notifier registered.)

            // Step 2 (clear), under ptl (pte_offset_map_nolock() + spin_lock()):
            // recheck each entry, ptep_clear() (an xchg, as
            // ptep_get_and_clear()), page_remove_rmap() on the subpage.
            let _ = self.pmd().load(Ordering::Acquire);
            self.ptl.lock();
            let mut nr_ptes = 0i32;
            for (i, (pte, page)) in ptes.iter().zip(pages).enumerate() {
                let v = pte.load(Ordering::Acquire);
                if v == 0 {
                    continue;
                }
                if !Self::maps_subpage(v, i) {
                    // Abort after clearing: flush_tlb_mm() and account
                    // (never taken in this benchmark; asserted below).
                    self.ptl.unlock();
                    break 'abort false;
                }
                pte.swap(0, Ordering::AcqRel);
                page.mapcount.fetch_sub(1, Ordering::AcqRel);
                nr_ptes += 1;
            }
            self.ptl.unlock();

            // Step 3 (account): page_ref_sub() and add_mm_counter().
            head.refcount.fetch_sub(nr_ptes, Ordering::AcqRel);
            self.counters.0.shmem_pages.fetch_add(-i64::from(nr_ptes), Ordering::Relaxed);

            // Step 4 (remove table): pmd_lock(), ptl nested,
            // pmdp_collapse_flush() = clear the PMD and flush the 2 MiB range
            // from every CPU in mm_cpumask (here CPU 0: bump its flush
            // generation, then visit the 512 TLB slots the range maps to and
            // drop entries inside it).
            self.pml.lock();
            self.ptl.lock();
            self.pmd().swap(0, Ordering::AcqRel);
            self.flush_gen.0.fetch_add(1, Ordering::SeqCst);
            for v in REF_VPN..REF_VPN + 512 {
                let slot = &self.tlb[v as usize % REF_TLB_ENTRIES];
                let e = slot.load(Ordering::SeqCst);
                let ev = (e & !REF_TLB_VALID) >> 32;
                if e & REF_TLB_VALID != 0 && (REF_VPN..REF_VPN + 512).contains(&ev) {
                    let _ = slot.compare_exchange(e, 0, Ordering::SeqCst, Ordering::Relaxed);
                }
            }
            self.ptl.unlock();
            self.pml.unlock();
            // mm_dec_nr_ptes(). (pte_free_defer() is not modelled here.)
            self.counters.0.nr_ptes.fetch_sub(1, Ordering::Relaxed);
            true
        };
        // drop_hpage: unlock_page() (no sleeper to hand over to: clear
        // PG_locked) and put_page().
        if head.lock_waiters.load(Ordering::SeqCst) == 0 {
            head.flags.fetch_and(!REF_PG_LOCKED, Ordering::Release);
        }
        head.refcount.fetch_sub(1, Ordering::AcqRel);
        ok
    }
}

/// The reference: `Reference::collapse()` timed, `Reference::restore()` not.
fn bench_reference(c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let r = Reference::new();
    assert!(r.collapse(), "reference collapse of a full table must succeed");
    r.restore();
    c.bench_function("reference_loop", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                let ok = r.collapse();
                timed += t0.elapsed();
                assert!(ok);
                r.restore();
            }
            timed
        })
    });
    // Balanced as the framework's teardown checks: page cache refs only
    // after a last collapse, every mapcount back to 0.
    assert!(r.collapse());
    assert_eq!(r.pages()[0].refcount.load(Ordering::Relaxed), 512);
    assert!(r.pages().iter().all(|p| p.mapcount.load(Ordering::Relaxed) == 0));
    assert_eq!(r.counters.0.shmem_pages.load(Ordering::Relaxed), 0);
}

fn uncontended_collapse(c: &mut Criterion) {
    let mut group = c.benchmark_group("uncontended_collapse");
    group
        .throughput(Throughput::Elements(1))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(60);
    bench_v1_framework(&mut group);
    bench_reference(&mut group);
    group.finish();
}

// ---------------------------------------------------------------------
// Group 2: native_collapses_per_sec
// ---------------------------------------------------------------------

/// Collapses per run: long enough (tens of ms) that the runner's 1 ms
/// stop-polling granularity stays a small part of the wall time.
const COLLAPSES_PER_RUN: u64 = 5000;

/// One collapser on one range of `shmem-shared`, alone: `run_policy()`'s
/// wall time for [`COLLAPSES_PER_RUN`] rounds. Each round is a collapse
/// *and* the restore that puts the range back (the Collapser's loop), so
/// the elements/s criterion prints are collapse + restore rounds per
/// second. The wall time also includes thread start-up and join, and up
/// to 1 ms of the runner's stop polling.
fn native_collapses_per_sec(c: &mut Criterion) {
    let mut scenario = workloads::preset("shmem-shared").expect("preset");
    for (key, value) in [("threads.faulters", "0"), ("threads.readers", "0"), ("ranges", "1"), ("oracles", "false")] {
        scenario.set(key, value).unwrap_or_else(|e| panic!("{key}={value}: {e}"));
    }
    scenario.validate().expect("valid scenario");
    let opts = RunOptions {
        limit: Limit::Ops { ops: COLLAPSES_PER_RUN, cap: Duration::from_secs(10) },
        pin: true,
        hook: None,
        git_revision: String::new(),
        watchdog: bench_core::watchdog::DEFAULT_TIMEOUT,
    };

    let mut group = c.benchmark_group("native_collapses_per_sec");
    group
        .throughput(Throughput::Elements(COLLAPSES_PER_RUN))
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10);
    for name in ["v1", "v2-step3-down"] {
        let p = policy(name);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut wall = Duration::ZERO;
                for _ in 0..iters {
                    let run = run_policy(p.clone(), &scenario, &opts).expect("run");
                    assert_eq!(run.violations_total, 0, "{name}: {:?}", run.violations);
                    assert!(
                        run.collapses >= COLLAPSES_PER_RUN,
                        "{name}: only {} collapses before the 10 s cap",
                        run.collapses
                    );
                    // Normalise to exactly COLLAPSES_PER_RUN (the stop flag
                    // can let one more round finish).
                    wall += Duration::from_secs_f64(run.wall_s * COLLAPSES_PER_RUN as f64 / run.collapses as f64);
                }
                wall
            })
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------
// Group 3: primitives
// ---------------------------------------------------------------------

fn primitives(c: &mut Criterion) {
    let mm = model(2);
    let haddr = range_addr(0);
    let pmd = pmd_offset(haddr).expect("range 0 is in the model");
    let PmdKind::Table(slot) = mm.pmds.get(pmd.table, pmd.idx).kind() else {
        panic!("range 0 starts with a PTE table");
    };
    let ptl = mm.pte_lock_id(slot);
    let mut cx = cpu(&mm, 0);
    // CPU 0 joins mm_cpumask and caches the translation of haddr.
    assert!(cx.touch(haddr).is_some());

    let mut group = c.benchmark_group("primitives");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));

    group.bench_function("spin_lock+spin_unlock(ptl)", |b| {
        b.iter(|| {
            cx.spin_lock(black_box(ptl));
            cx.spin_unlock(black_box(ptl));
        })
    });

    group.bench_function("pte_offset_map_lock+pte_unmap_unlock", |b| {
        b.iter(|| {
            let (map, ptl) = cx.pte_offset_map_lock(black_box(pmd), haddr).expect("a table");
            cx.pte_unmap_unlock(black_box(map), ptl);
        })
    });

    let (map, _) = cx.pte_offset_map_nolock(pmd, haddr).expect("range 0 has a table");
    cx.pte_unmap(map);
    group.throughput(Throughput::Elements(PTRS_PER_PTE as u64));
    group.bench_function("ptep_get_x512", |b| {
        b.iter(|| {
            let map = black_box(map);
            let mut present = 0u32;
            for i in 0..PTRS_PER_PTE {
                present += u32::from(cx.ptep_get(map.at(i)).is_present());
            }
            present
        })
    });

    // Before the flush bench, which empties the TLB: the setup touch
    // cached haddr, so every touch here is a hit.
    group.throughput(Throughput::Elements(1));
    group.bench_function("touch_tlb_hit", |b| b.iter(|| cx.touch(black_box(haddr))));
    assert_eq!(mm.tlbs.lookup(0, vpn(haddr)), Some(mm.file_hpage(0)), "touch_tlb_hit measured hits");

    group.bench_function("flush_tlb_range_2M_1cpu", |b| {
        b.iter(|| cx.flush_tlb_range(black_box(haddr), haddr + HPAGE_PMD_SIZE))
    });
    group.finish();
    drop(cx);
    assert_clean(&mm, "primitives");
}

// ---------------------------------------------------------------------
// Group 4: every policy on every preset
// ---------------------------------------------------------------------

/// Collapses timed per iteration batch of `presets`.
const PRESET_COLLAPSES: u64 = 50;

/// `presets/<preset>/<policy>`: collapse latency with the preset's actors
/// running in the background, oracles off. Each sample runs the preset
/// natively until [`PRESET_COLLAPSES`] collapses and reports the summed
/// latency of the collapses alone (restores and the other actors' work are
/// not counted), so criterion's time is the mean collapse latency under
/// that preset's contention. On a 2-core machine most presets run more
/// threads than cores (the run says so): read these as relative figures.
fn presets(c: &mut Criterion) {
    let mut group = c.benchmark_group("presets");
    group
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(10);
    for (preset, _) in workloads::PRESETS {
        let mut scenario = workloads::preset(preset).expect("preset");
        scenario.set("oracles", "false").expect("oracles key");
        for entry in collapse_bench::registry() {
            let p = policy(entry.name);
            let opts = RunOptions {
                limit: Limit::Ops { ops: PRESET_COLLAPSES, cap: Duration::from_secs(10) },
                pin: true,
                hook: None,
                git_revision: String::new(),
                watchdog: bench_core::watchdog::DEFAULT_TIMEOUT,
            };
            group.bench_function(format!("{preset}/{}", entry.name), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut done = 0u64;
                    while done < iters {
                        let run = run_policy(p.clone(), &scenario, &opts).expect("run");
                        let Some(lat) = run.metrics.collapse_latency_ns.get("all") else { continue };
                        let take = lat.count.min(iters - done);
                        total += Duration::from_nanos((lat.mean * take as f64) as u64);
                        done += take;
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

// ---------------------------------------------------------------------
// Group 5: the simulation engine's speed
// ---------------------------------------------------------------------

/// Virtual time of one simulated run.
const SIM_VIRTUAL: Duration = Duration::from_millis(2);

fn simulation(c: &mut Criterion) {
    let mut group = c.benchmark_group("simulation");
    group.sampling_mode(SamplingMode::Flat).sample_size(10).measurement_time(Duration::from_secs(3));
    let opts = SimOptions { costs: CostModel::default(), limit: Limit::Duration(SIM_VIRTUAL) };
    for (preset, cpus) in [("pml-contended", 5), ("mixed", 64)] {
        let mut scenario = workloads::preset(preset).expect("preset");
        scenario.threads = scenario.threads.scaled_to(cpus);
        let p = policy("v2-flush-bool");
        // The run is deterministic: its step count is the throughput unit.
        let steps = simulate_policy(p.clone(), &scenario, &opts).expect("simulate").steps;
        group.throughput(Throughput::Elements(steps));
        group.bench_function(format!("{preset}/{cpus}cpus/steps"), |b| {
            b.iter(|| {
                let sim = simulate_policy(p.clone(), &scenario, &opts).expect("simulate");
                assert_eq!(sim.steps, steps, "a simulation repeats itself");
                sim.run.collapses
            })
        });
    }
    group.finish();
}

/// Criterion draws its own plots with plotters, which (sharing the
/// workspace's plotters features) needs the embedded font registered.
fn config() -> Criterion {
    reports::plots::register_fonts().expect("embedded font");
    Criterion::default()
}

criterion_group! {
    name = benches;
    config = config();
    targets = uncontended_collapse, native_collapses_per_sec, primitives, presets, simulation
}
criterion_main!(benches);
