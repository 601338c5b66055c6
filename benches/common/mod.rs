//! What the benchmarks share: the one-range model and its CPU, and the
//! straight-line reference collapse that the framework's overhead is
//! measured against (`collapse` times the two apart with criterion,
//! `overhead` times them in interleaved pairs).

use bench_core::harness::{new_cpu, Harness};
use bench_core::kernel::{Cx, DynPolicy, ScanResult};
use bench_core::mm::MmConfig;
use bench_core::pte::PTRS_PER_PTE;
use bench_core::{Mm, Native, Role};
use memmap2::MmapMut;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workloads::kernel_paths;

// ---------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------
/// A registered policy (`collapse_bench::registry()`: here the shipped
/// ones) with default parameters.
pub fn policy(name: &str) -> Arc<dyn DynPolicy> {
    policy_with(name, &serde_json::Value::Null)
}

/// The registered policy `name` built with `params`.
pub fn policy_with(name: &str, params: &serde_json::Value) -> Arc<dyn DynPolicy> {
    let entry = collapse_bench::registry()
        .into_iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("policy {name} is not registered"));
    (entry.build)(params).expect("parameters build")
}

/// A one-range model: a plain private shmem VMA, split locks, every PTE
/// mapped, oracles off (so nothing but the framework itself is measured).
pub fn model(cpus: u32) -> Mm {
    Mm::new(MmConfig { oracles: false, ..MmConfig::one_range(cpus) }).expect("valid model")
}

/// A native CPU context for model CPU `cpu`.
pub fn cpu(mm: &Mm, cpu: u32) -> Cx<'_, Native> {
    new_cpu(mm, cpu, Role::Collapse, Native::new(Instant::now(), None, false))
}

/// Put range 0 back as the Collapser does between collapses: as
/// `Role::Restore`, so its lock holds are not counted as the collapse's.
pub fn restore_range(cx: &mut Cx<'_, Native>) {
    cx.set_role(Role::Restore);
    kernel_paths::restore_range(cx, 0);
    cx.set_role(Role::Collapse);
}

/// One timed round of the framework's side: `v1` collapses `haddr`
/// (timed, and it must succeed), then the range is put back (untimed).
pub fn framework_round(cx: &mut Cx<'_, Native>, v1: &dyn DynPolicy, haddr: u64) -> Duration {
    let t0 = Instant::now();
    let result = cx.run_collapse(v1, haddr, false);
    let timed = t0.elapsed();
    assert_eq!(result, ScanResult::Succeed, "uncontended v1 collapse of a full table must succeed");
    restore_range(cx);
    timed
}

/// After a benchmark: the model is consistent (no violation recorded,
/// teardown balanced), so what was timed was real, successful work.
pub fn assert_clean(mm: &Mm, what: &str) {
    let teardown = mm.exit_mmap();
    let (violations, total) = mm.violations.snapshot();
    assert!(total == 0 && teardown.is_empty(), "{what}: {total} violation(s), first: {:?}", violations.first());
}

// ---------------------------------------------------------------------
// The reference collapse
// ---------------------------------------------------------------------

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
pub struct RefPage {
    flags: AtomicU32,
    pub refcount: AtomicI32,
    pub mapcount: AtomicI32,
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
pub struct Line<T>(pub T);

/// CPU 0's share of the mm counters (`rss_stat`, `pgtables_bytes`).
#[derive(Default)]
pub struct RefCounters {
    pub shmem_pages: AtomicI64,
    nr_ptes: AtomicI64,
}

/// The reference's address space: the memory a one-range model has,
/// laid out the same way, with nothing around it.
pub struct Reference {
    /// One 4 KiB PTE table: 512 × `AtomicU64`.
    ptes: MmapMut,
    /// One PMD table: 512 × `AtomicU64`; slot 0 points to the PTE table.
    pmds: MmapMut,
    /// 512 `struct page`s: the huge page's head and tails.
    pages: MmapMut,
    /// `pmd_lockptr()` and `pte_lockptr()` of the range.
    pml: TicketLock,
    ptl: TicketLock,
    pub counters: Line<RefCounters>,
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
    pub fn new() -> Reference {
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

    pub fn pages(&self) -> &[RefPage] {
        atomics(&self.pages, 512)
    }

    /// Untimed: put the range back as `kernel_paths::restore_range()` does — every PTE maps
    /// `hpage + i` with its rmap, reference and counter, and the PMD points
    /// to the table again.
    pub fn restore(&self) {
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

    /// One timed round of the reference's side: a collapse (timed, and it
    /// must succeed), then the restore (untimed).
    pub fn round(&self) -> Duration {
        let t0 = Instant::now();
        let ok = self.collapse();
        let timed = t0.elapsed();
        assert!(ok, "reference collapse of a full table must succeed");
        self.restore();
        timed
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
    pub fn collapse(&self) -> bool {
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
