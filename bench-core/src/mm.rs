//! The address space: VMAs, page tables, the page cache's huge pages, mm
//! counters, TLBs, and the teardown that reports what the kernel would.
//!
//! Layout. Collapse range `r` (2 MiB) lives in PMD table `r / 511` at slot
//! `r % 511`; slot 511 of every PMD table holds a huge PMD owned by the
//! `pml` neighbours (another THP in the same 1 GiB, so its faults, splits and
//! zaps take the same `pml`). Each range is one VMA backed by one 512-subpage
//! huge page of the file, already in the page cache (the state
//! `collapse_pte_mapped_thp()` starts from).

use crate::footprint::{AtomicI64, AtomicU32, AtomicU64, AtomicU8};
use crate::locks::{LockClass, LockId, LockStats, SpinLock};
use crate::oracle::{CachedTranslation, Oracle, Violation, Violations};
use crate::page::{PageArray, PG_SHMEM};
use crate::pgtable::{PmdTables, TablePool};
use crate::pte::{
    Pfn, Pmd, PmdKind, Pte, HPAGE_PMD_NR, HPAGE_PMD_ORDER, HPAGE_PMD_SIZE, PAGE_SHIFT, PAGE_SIZE, PMD_TABLE_SPAN,
    PTRS_PER_PTE,
};
use crate::rcu::Rcu;
use crate::role::installer_name;
use crate::rwsem::RwSem;
use crate::tlb::Tlbs;
use crossbeam::utils::CachePadded;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;

/// Where the mapping starts (1 TiB: PMD-table aligned).
pub const MAP_BASE: u64 = 1 << 40;
/// Most collapse ranges a PMD table holds (slot 511 is the neighbours'),
/// and how many it holds by default ([`MmConfig::ranges_per_pmd_table`]).
pub const RANGES_PER_PMD_TABLE: u32 = 511;
/// The PMD slot the `pml` neighbours own in every PMD table.
pub const NEIGHBOUR_SLOT: u32 = 511;

/// `VM_SHARED`.
pub const VM_SHARED: u32 = 1 << 0;
/// `VM_UFFD_MISSING`.
pub const VM_UFFD_MISSING: u32 = 1 << 1;
/// `VM_UFFD_WP`.
pub const VM_UFFD_WP: u32 = 1 << 2;
/// `VM_UFFD_MINOR`.
pub const VM_UFFD_MINOR: u32 = 1 << 3;

/// What backs the file mapping.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// tmpfs / shmem: counted in MM_SHMEMPAGES.
    Shmem,
    /// A regular file's page cache: counted in MM_FILEPAGES.
    File,
}

/// The mm's RSS counters, in the kernel's order.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MmCounter {
    /// `MM_FILEPAGES`.
    FilePages = 0,
    /// `MM_ANONPAGES`.
    AnonPages = 1,
    /// `MM_SWAPENTS`.
    SwapEnts = 2,
    /// `MM_SHMEMPAGES`.
    ShmemPages = 3,
}

impl MmCounter {
    /// Every counter.
    pub const ALL: [MmCounter; 4] =
        [MmCounter::FilePages, MmCounter::AnonPages, MmCounter::SwapEnts, MmCounter::ShmemPages];
    /// The kernel's name for it.
    pub fn name(self) -> &'static str {
        ["MM_FILEPAGES", "MM_ANONPAGES", "MM_SWAPENTS", "MM_SHMEMPAGES"][self as usize]
    }
}

/// How the model is built.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MmConfig {
    /// VM flags of each collapse range's VMA (one VMA per 2 MiB range).
    pub ranges: Vec<u32>,
    /// What backs the mapping.
    pub file: FileKind,
    /// `USE_SPLIT_PMD_PTLOCKS`: one `pml` per PMD table; else `mm->page_table_lock`.
    pub split_pmd_ptlocks: bool,
    /// `USE_SPLIT_PTE_PTLOCKS`: one `ptl` per PTE table; else `mm->page_table_lock`.
    pub split_pte_ptlocks: bool,
    /// Model CPUs (one per actor).
    pub cpus: u32,
    /// Present PTEs (of 512) in each range's table when it is (re)populated.
    pub density: u32,
    /// Size of the anonymous page pool.
    pub anon_pages: u32,
    /// PTE tables beyond one per range (for re-population while freed ones wait).
    pub spare_tables: u32,
    /// Run the oracles (stale-TLB clock, per-collapse accounting).
    pub oracles: bool,
    /// Collapse ranges laid out in each PMD table, 1 to
    /// [`RANGES_PER_PMD_TABLE`]: all of them (one contiguous mapping, the
    /// default), or fewer, the rest of each 1 GiB left empty, as copies of a
    /// workload each in a 1 GiB of its own would be (each with its own
    /// `pml` and neighbours).
    #[serde(default = "all_ranges_per_pmd_table")]
    pub ranges_per_pmd_table: u32,
}

fn all_ranges_per_pmd_table() -> u32 {
    RANGES_PER_PMD_TABLE
}

impl MmConfig {
    /// The smallest useful model: one private shmem range, split locks,
    /// every PTE mapped, small pools, oracles on, `cpus` CPUs (tests and
    /// benches override what they need).
    pub fn one_range(cpus: u32) -> MmConfig {
        MmConfig {
            ranges: vec![0],
            file: FileKind::Shmem,
            split_pmd_ptlocks: true,
            split_pte_ptlocks: true,
            cpus,
            density: 512,
            anon_pages: 64,
            spare_tables: 64,
            oracles: true,
            ranges_per_pmd_table: RANGES_PER_PMD_TABLE,
        }
    }

    /// Where its ranges lie.
    pub fn layout(&self) -> RangeLayout {
        RangeLayout { per_table: self.ranges_per_pmd_table }
    }
}

/// Where each collapse range lies: range `r` in PMD table `r / per_table`
/// at slot `r % per_table`, so at address [`MAP_BASE`] plus that table's
/// 1 GiB and that slot's 2 MiB.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RangeLayout {
    per_table: u32,
}

impl RangeLayout {
    /// The PMD table and slot of range `r`.
    pub fn pmd(&self, r: u32) -> (u32, u32) {
        (r / self.per_table, r % self.per_table)
    }

    /// Start address of range `r`.
    pub fn addr(&self, r: u32) -> u64 {
        let (table, slot) = self.pmd(r);
        MAP_BASE + table as u64 * PMD_TABLE_SPAN + slot as u64 * HPAGE_PMD_SIZE
    }

    /// The range an address falls in, if any.
    pub fn range_of(&self, addr: u64) -> Option<u32> {
        let off = addr.checked_sub(MAP_BASE)?;
        let t = u32::try_from(off / PMD_TABLE_SPAN).ok()?;
        let s = ((off % PMD_TABLE_SPAN) / HPAGE_PMD_SIZE) as u32;
        (s < self.per_table).then(|| t.checked_mul(self.per_table)?.checked_add(s)).flatten()
    }
}

/// A VMA.
#[derive(Clone, Debug)]
pub struct Vma {
    /// `vm_start`.
    pub start: u64,
    /// `vm_end`.
    pub end: u64,
    /// `VM_*` flags.
    pub flags: u32,
    /// `vm_pgoff`: file page index at `vm_start`.
    pub pgoff: u64,
}

/// What [`Mm::new`] allocates for a configuration, derived in one place:
/// for the model itself and for the memory estimate made before it is
/// built (`workloads::Scenario::memory_need`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// PMD tables: [`MmConfig::ranges_per_pmd_table`] ranges each.
    pub pmd_tables: u32,
    /// Frames of the file: frame 0's huge page (never mapped), one huge
    /// page per range and one per PMD table (the neighbours' huge PMDs).
    pub file_frames: usize,
    /// Frames for anonymous pages.
    pub anon_frames: usize,
    /// PTE table slots: one per range plus the spares.
    pub table_slots: usize,
    /// Spinlocks: `mm->page_table_lock`, one `pml` per PMD table, one
    /// `ptl` per PTE table slot.
    pub locks: usize,
    /// Model CPUs (each with a TLB).
    pub cpus: usize,
}

impl Layout {
    /// The layout of `config` (not validated: see [`Mm::new`]).
    pub fn of(config: &MmConfig) -> Layout {
        let ranges = config.ranges.len();
        let pmd_tables = (ranges as u32).div_ceil(config.ranges_per_pmd_table.max(1));
        let table_slots = ranges + config.spare_tables as usize;
        Layout {
            pmd_tables,
            file_frames: (1 + ranges + pmd_tables as usize) * HPAGE_PMD_NR,
            anon_frames: config.anon_pages.max(1) as usize,
            table_slots,
            locks: 1 + pmd_tables as usize + table_slots,
            cpus: config.cpus as usize,
        }
    }

    /// Bytes the model takes: frame descriptors, PTE and PMD tables, locks
    /// and TLBs.
    pub fn bytes(&self) -> u64 {
        let frames = (self.file_frames + self.anon_frames) * std::mem::size_of::<crate::page::Page>();
        let tables = (self.table_slots + self.pmd_tables as usize) * crate::pgtable::TABLE_BYTES;
        let locks = self.locks * std::mem::size_of::<SpinLock>();
        (frames + tables + locks + self.cpus * crate::tlb::TLB_BYTES_PER_CPU) as u64
    }
}

#[derive(Default)]
struct PerCpu {
    counters: [AtomicI64; 4],
    nr_ptes: AtomicI64,
    notifier_start: AtomicU64,
    notifier_end: AtomicU64,
}

/// The model mm.
pub struct Mm {
    /// How it was built.
    pub config: MmConfig,
    /// `struct page` array.
    pub pages: PageArray,
    /// PTE tables.
    pub tables: TablePool,
    /// PMD tables.
    pub pmds: PmdTables,
    locks: Box<[SpinLock]>,
    /// One VMA per collapse range.
    pub vmas: Vec<Vma>,
    percpu: Box<[CachePadded<PerCpu>]>,
    /// Per-CPU TLBs.
    pub tlbs: Tlbs,
    /// Grace periods for table freeing.
    pub rcu: Rcu,
    /// `mm->mmap_lock`.
    pub mmap_lock: RwSem,
    /// The file's `mapping->i_mmap_rwsem` (the model maps one file).
    pub i_mmap_rwsem: RwSem,
    /// `vma->anon_vma` of each VMA, as set or not (1 once the first COW or
    /// uffd fill of a private VMA prepared it); in `vmas` order.
    anon_vma: Box<[AtomicU8]>,
    /// Broken rules seen so far.
    pub violations: Violations,
    /// The lock-order oracle's dependency graph, kept for the whole run.
    pub lockdep: crate::lockdep::Lockdep,
    next_swap_slot: AtomicU32,
}

/// Why a model could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MmError {
    /// A parameter is out of range.
    #[error("{field}: {problem}")]
    Invalid {
        /// The configuration field.
        field: &'static str,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// mmap failed.
    #[error("mapping model memory: {0}")]
    Map(#[from] std::io::Error),
}

impl Mm {
    /// Every allocation of the model's shared state, in a fixed order: the
    /// names the exhaustive checker gives the words a step touches
    /// ([`crate::footprint::Regions`]). The model itself holds the
    /// inline ones (RCU's epoch, the TLB clock, the free lists, the
    /// violation list).
    pub fn footprint_regions(&self) -> crate::footprint::Regions {
        use crate::footprint::{region_of, region_of_value};
        let mut out = vec![region_of_value(self), region_of(&self.locks), region_of(&self.percpu)];
        self.pages.footprint_regions(&mut out);
        self.tables.footprint_regions(&mut out);
        self.pmds.footprint_regions(&mut out);
        self.tlbs.footprint_regions(&mut out);
        self.rcu.footprint_regions(&mut out);
        self.mmap_lock.footprint_regions(&mut out);
        self.i_mmap_rwsem.footprint_regions(&mut out);
        out.push(region_of(&self.anon_vma));
        crate::footprint::Regions::new(out)
    }

    /// Build and populate: every range's PMD points to a PTE table with
    /// `density` entries mapping its huge page's subpages.
    pub fn new(config: MmConfig) -> Result<Mm, MmError> {
        let invalid = |field, problem: String| Err(MmError::Invalid { field, problem });
        let nr = config.ranges.len() as u32;
        if nr == 0 || nr > 65536 {
            return invalid("ranges", format!("{nr} ranges; allowed 1..=65536"));
        }
        if config.density as usize > PTRS_PER_PTE {
            return invalid("density", format!("{}; allowed 0..=512 present PTEs per table", config.density));
        }
        if config.cpus == 0 || config.cpus > 4096 {
            return invalid("cpus", format!("{}; allowed 1..=4096", config.cpus));
        }
        if !(1..=RANGES_PER_PMD_TABLE).contains(&config.ranges_per_pmd_table) {
            return invalid(
                "ranges_per_pmd_table",
                format!("{}; allowed 1..={RANGES_PER_PMD_TABLE}", config.ranges_per_pmd_table),
            );
        }
        if config.split_pmd_ptlocks && !config.split_pte_ptlocks {
            return invalid(
                "split_pmd_ptlocks",
                "split PMD locks need split PTE locks too (as USE_SPLIT_PMD_PTLOCKS implies USE_SPLIT_PTE_PTLOCKS)"
                    .into(),
            );
        }
        let layout = Layout::of(&config);
        let (pmd_tables, anon, slots, cpus) = (layout.pmd_tables, layout.anon_frames, layout.table_slots, layout.cpus);
        let pages = PageArray::new(layout.file_frames + anon, anon)?;
        let tables = TablePool::new(slots)?;
        let pmds = PmdTables::new(pmd_tables as usize)?;
        let locks = (0..layout.locks).map(|_| SpinLock::default()).collect();
        let shmem = if config.file == FileKind::Shmem { PG_SHMEM } else { 0 };
        let vmas = (0..nr)
            .map(|r| Vma {
                start: config.layout().addr(r),
                end: config.layout().addr(r) + HPAGE_PMD_SIZE,
                flags: config.ranges[r as usize],
                pgoff: r as u64 * HPAGE_PMD_NR as u64,
            })
            .collect();
        let mm = Mm {
            pages,
            tables,
            pmds,
            locks,
            vmas,
            percpu: (0..cpus).map(|_| CachePadded::new(PerCpu::default())).collect(),
            tlbs: Tlbs::new(cpus),
            rcu: Rcu::new(cpus),
            mmap_lock: RwSem::new(cpus),
            i_mmap_rwsem: RwSem::new(cpus),
            anon_vma: (0..nr).map(|_| AtomicU8::new(0)).collect(),
            violations: Violations::default(),
            lockdep: crate::lockdep::Lockdep::default(),
            next_swap_slot: AtomicU32::new(1),
            config,
        };
        for r in 0..nr {
            let head = mm.file_hpage(r);
            mm.pages.make_compound(head, HPAGE_PMD_ORDER, shmem);
            // The page cache's own references: one per subpage.
            mm.pages.get(head).refcount.store(HPAGE_PMD_NR as i32, Ordering::Relaxed);
            for i in 0..HPAGE_PMD_NR {
                mm.pages.get(head.nth(i)).tag.store(vpn(mm.range_addr(r)) + i as u64, Ordering::Relaxed);
            }
            let slot = mm.tables.alloc().expect("one table per range is reserved");
            mm.populate_table(0, r, slot);
            let (t, s) = mm.range_pmd(r);
            mm.pmds.entry(t, s).store(Pmd::table(slot).0, Ordering::Release);
            mm.percpu[0].nr_ptes.fetch_add(1, Ordering::Relaxed);
        }
        for t in 0..pmd_tables {
            let head = mm.neighbour_hpage(t);
            mm.pages.make_compound(head, HPAGE_PMD_ORDER, 0);
            mm.pmds.entry(t, NEIGHBOUR_SLOT).store(Pmd::huge(head).0, Ordering::Release);
        }
        Ok(mm)
    }

    /// Number of collapse ranges.
    pub fn nr_ranges(&self) -> u32 {
        self.vmas.len() as u32
    }

    /// Start address of range `r` ([`RangeLayout::addr`]).
    pub fn range_addr(&self, r: u32) -> u64 {
        self.config.layout().addr(r)
    }

    /// The range `addr` falls in, if it is one of this model's.
    pub fn addr_range(&self, addr: u64) -> Option<u32> {
        self.config.layout().range_of(addr).filter(|&r| r < self.nr_ranges())
    }

    /// The PMD table and slot of range `r`.
    pub fn range_pmd(&self, r: u32) -> (u32, u32) {
        self.config.layout().pmd(r)
    }

    /// The range whose PMD points to PTE table `slot`, if any (the only
    /// PMDs that hold tables are the ranges'; the neighbours' are huge).
    pub(crate) fn range_mapping_table(&self, slot: u32) -> Option<u32> {
        (0..self.nr_ranges()).find(|&r| {
            let (t, s) = self.range_pmd(r);
            self.pmds.get(t, s) == Pmd::table(slot)
        })
    }

    /// Index of `vma` in [`Mm::vmas`] (one VMA per range, in address order).
    fn vma_index(&self, vma: &Vma) -> usize {
        self.vmas.binary_search_by_key(&vma.start, |v| v.start).expect("a VMA of this mm")
    }

    /// `READ_ONCE(vma->anon_vma) != NULL`.
    pub(crate) fn has_anon_vma(&self, vma: &Vma) -> bool {
        self.anon_vma[self.vma_index(vma)].load(Ordering::Acquire) != 0
    }

    /// Set `vma->anon_vma` (`__anon_vma_prepare()`'s store).
    pub(crate) fn set_anon_vma(&self, vma: &Vma) {
        self.anon_vma[self.vma_index(vma)].store(1, Ordering::Release);
    }

    /// The huge page of the file that backs range `r`.
    pub fn file_hpage(&self, r: u32) -> Pfn {
        Pfn((1 + r) * HPAGE_PMD_NR as u32)
    }

    /// The huge page the neighbours map in PMD table `t`.
    pub fn neighbour_hpage(&self, t: u32) -> Pfn {
        Pfn((1 + self.nr_ranges() + t) * HPAGE_PMD_NR as u32)
    }

    /// The file's counter for its pages: `mm_counter_file()`.
    pub fn file_counter(&self) -> MmCounter {
        match self.config.file {
            FileKind::Shmem => MmCounter::ShmemPages,
            FileKind::File => MmCounter::FilePages,
        }
    }

    /// Whether the density pattern maps subpage `i` when a table is (re)populated.
    pub fn density_maps(&self, i: usize) -> bool {
        let d = self.config.density as usize;
        (i * d) % PTRS_PER_PTE < d
    }

    /// Fill none slots of table `slot` of range `r` with the density pattern,
    /// as page-cache faults would (rmap, refcount, counter). Returns entries set.
    pub(crate) fn populate_table(&self, cpu: u32, r: u32, slot: u32) -> usize {
        let head = self.file_hpage(r);
        let mut n = 0;
        for i in (0..PTRS_PER_PTE).filter(|&i| self.density_maps(i)) {
            if self.tables.get(slot, i).is_none() {
                self.map_file_pte(slot, i, head.nth(i));
                n += 1;
            }
        }
        self.pages.get(head).refcount.fetch_add(n as i32, Ordering::Relaxed);
        self.add_counter(cpu, self.file_counter(), n as i64);
        n
    }

    /// Set one PTE to a file subpage and add its rmap (caller does refcount and counter).
    fn map_file_pte(&self, slot: u32, i: usize, page: Pfn) {
        self.pages.get(page).mapcount.fetch_add(1, Ordering::Relaxed);
        self.tables.entry(slot, i).store(Pte::present(page).0, Ordering::Release);
    }

    /// The lock `pmd_lockptr()` returns for PMD table `t`.
    pub fn pmd_lock_id(&self, t: u32) -> LockId {
        if self.config.split_pmd_ptlocks {
            LockId(1 + t)
        } else {
            LockId(0)
        }
    }

    /// The lock `pte_lockptr()` returns for PTE table `slot`.
    pub fn pte_lock_id(&self, slot: u32) -> LockId {
        if self.config.split_pte_ptlocks {
            LockId(1 + self.pmds.len() as u32 + slot)
        } else {
            LockId(0)
        }
    }

    /// The spinlock behind an id.
    #[inline]
    pub fn lock(&self, id: LockId) -> &SpinLock {
        &self.locks[id.0 as usize]
    }

    /// Its lockdep class.
    pub fn lock_class(&self, id: LockId) -> LockClass {
        if id.0 == 0 {
            LockClass::PageTableLock
        } else if id.0 <= self.pmds.len() as u32 {
            LockClass::PmdLock
        } else {
            LockClass::PteLock
        }
    }

    /// Human name of a lock ("pml of PMD table 0", "ptl of table 3", ...).
    pub fn lock_name(&self, id: LockId) -> String {
        match self.lock_class(id) {
            LockClass::PageTableLock => "mm->page_table_lock".into(),
            LockClass::PmdLock => format!("pml (PMD table {})", id.0 - 1),
            LockClass::PteLock => format!("ptl (PTE table {})", self.pte_lock_slot(id)),
            sleeping @ (LockClass::MmapLock | LockClass::IMmapRwsem) => sleeping.name().into(),
        }
    }

    /// The PTE table whose split `ptl` `id` is (`id` of class `ptl`).
    pub(crate) fn pte_lock_slot(&self, id: LockId) -> u32 {
        id.0 - 1 - self.pmds.len() as u32
    }

    /// Every lock with its name, class and totals.
    pub fn lock_stats(&self) -> impl Iterator<Item = (LockId, LockClass, LockStats)> + '_ {
        (0..self.locks.len() as u32)
            .map(move |i| (LockId(i), self.lock_class(LockId(i)), self.locks[i as usize].stats()))
    }

    /// `add_mm_counter()` on `cpu`'s share (the kernel's per-CPU rss_stat).
    #[inline]
    pub(crate) fn add_counter(&self, cpu: u32, c: MmCounter, delta: i64) {
        if delta != 0 {
            self.percpu[cpu as usize].counters[c as usize].fetch_add(delta, Ordering::Relaxed);
        }
    }

    /// `get_mm_counter()`: the sum over CPUs.
    pub fn counter(&self, c: MmCounter) -> i64 {
        self.percpu.iter().map(|p| p.counters[c as usize].load(Ordering::Relaxed)).sum()
    }

    /// `mm_inc_nr_ptes()` / `mm_dec_nr_ptes()`.
    pub(crate) fn add_nr_ptes(&self, cpu: u32, delta: i64) {
        self.percpu[cpu as usize].nr_ptes.fetch_add(delta, Ordering::Relaxed);
    }

    /// Page tables the mm accounts for (`pgtables_bytes / PAGE_SIZE`).
    pub fn nr_ptes(&self) -> i64 {
        self.percpu.iter().map(|p| p.nr_ptes.load(Ordering::Relaxed)).sum()
    }

    pub(crate) fn note_notifier(&self, cpu: u32, start: bool) {
        let p = &self.percpu[cpu as usize];
        if start { &p.notifier_start } else { &p.notifier_end }.fetch_add(1, Ordering::Relaxed);
    }

    /// mmu-notifier invalidations started and ended so far.
    pub fn notifier_counts(&self) -> (u64, u64) {
        self.percpu.iter().fold((0, 0), |(s, e), p| {
            (s + p.notifier_start.load(Ordering::Relaxed), e + p.notifier_end.load(Ordering::Relaxed))
        })
    }

    /// A fresh swap offset.
    pub(crate) fn alloc_swap_slot(&self) -> u32 {
        self.next_swap_slot.fetch_add(1, Ordering::Relaxed)
    }

    /// The stale-translation rule ([`Oracle::StaleTranslation`]) for one
    /// translation: CPU `cpu` caches `addr -> cached` (and `verb`s through
    /// it: "read", "still caches") while the PTE maps `now`. Broken when
    /// the two frames hold different data (content ids differ: a
    /// migration's copy holds the same). Returns the message, naming who
    /// put `now` there, and the stale translation as evidence.
    pub(crate) fn stale_translation(
        &self,
        cpu: u32,
        addr: u64,
        cached: Pfn,
        now: Pfn,
        verb: &str,
    ) -> Option<(String, CachedTranslation)> {
        let (old, new) = (self.pages.get(cached), self.pages.get(now));
        if old.content.load(Ordering::Acquire) == new.content.load(Ordering::Acquire) {
            return None;
        }
        let who = if new.is_anon() {
            format!("an anonymous page installed by {}", installer_name(new.installer.load(Ordering::Relaxed)))
        } else {
            "a file subpage".to_owned()
        };
        let message = format!(
            "CPU {cpu} {verb} {addr:#x} through its TLB entry to {cached}, but the PTE maps {now} now ({who}): \
             the entry was changed under ptl while this translation was cached, and no flush reached CPU {cpu} \
             since"
        );
        Some((message, CachedTranslation { cpu, vpn: vpn(addr), pfn: cached }))
    }

    /// Record a violation.
    pub fn report(&self, oracle: Oracle, cpu: Option<u32>, step: Option<&str>, message: String) {
        self.violations.push(Violation {
            oracle,
            cpu,
            step: step.map(str::to_owned),
            message,
            cached: vec![],
            freed_live: vec![],
        });
    }

    /// `exit_mmap()` then `check_mm()`: unmap everything, free every table,
    /// and report what the kernel would print, plus pages nobody freed.
    /// Call once, after every actor has stopped. Returns the teardown's
    /// violations (also recorded in [`Mm::violations`]).
    pub fn exit_mmap(&self) -> Vec<Violation> {
        let mut found = vec![];
        let mut report = |oracle, message: String| {
            let v = Violation {
                oracle,
                cpu: None,
                step: Some("exit_mmap".into()),
                message,
                cached: vec![],
                freed_live: vec![],
            };
            self.violations.push(v.clone());
            found.push(v);
        };
        let file_counter = self.file_counter();
        for t in 0..self.pmds.len() as u32 {
            for s in 0..=NEIGHBOUR_SLOT {
                let entry = self.pmds.entry(t, s);
                let pmd = Pmd(entry.swap(0, Ordering::AcqRel));
                match pmd.kind() {
                    PmdKind::None => {}
                    PmdKind::Huge(_) if s == NEIGHBOUR_SLOT => {}
                    PmdKind::Huge(head) => {
                        let p = self.pages.get(head);
                        p.entire_mapcount.fetch_sub(1, Ordering::Relaxed);
                        p.refcount.fetch_sub(1, Ordering::Relaxed);
                        self.add_counter(0, file_counter, -(HPAGE_PMD_NR as i64));
                    }
                    PmdKind::Table(slot) => {
                        for i in 0..PTRS_PER_PTE {
                            // No CPU runs the mm any more: nothing to flush first.
                            if let Some(page) = self.zap_pte(0, slot, i, &mut report) {
                                if let Err(e) = self.pages.free_anon(page) {
                                    report(Oracle::UseAfterFree, format!("exit_mmap: free_page: {e:?}"));
                                }
                            }
                        }
                        self.tables.release(slot);
                        self.add_nr_ptes(0, -1);
                    }
                }
            }
        }
        self.rcu.reclaim(|slot| self.tables.release(slot));
        // The kernel prints a hashed pointer; a fixed one keeps reports and
        // result files identical from run to run.
        let mm_addr = 0xffff_8881_0000_0000u64;
        for c in MmCounter::ALL {
            let val = self.counter(c);
            if val != 0 {
                report(
                    Oracle::Accounting,
                    format!("BUG: Bad rss-counter state mm:{mm_addr:016x} type:{} val:{val}", c.name()),
                );
            }
        }
        let nr_ptes = self.nr_ptes();
        if nr_ptes != 0 {
            report(
                Oracle::Accounting,
                format!("BUG: non-zero pgtables_bytes on freeing mm: {}", nr_ptes * PAGE_SIZE as i64),
            );
        }
        if self.tables.in_use() != 0 {
            report(
                Oracle::Accounting,
                format!("{} PTE tables still allocated after exit_mmap (leaked)", self.tables.in_use()),
            );
        }
        for r in 0..self.nr_ranges() {
            let head = self.file_hpage(r);
            let refs = self.pages.get(head).refcount.load(Ordering::Relaxed);
            if refs != HPAGE_PMD_NR as i32 {
                report(
                    Oracle::Accounting,
                    format!("hpage {head} refcount {refs} after exit_mmap, expected {HPAGE_PMD_NR} (page cache only)"),
                );
            }
            for i in 0..HPAGE_PMD_NR {
                let m = self.pages.get(head.nth(i)).mapcount.load(Ordering::Relaxed);
                if m != 0 {
                    report(Oracle::Accounting, format!("subpage {} of hpage {head} mapcount {m} after exit_mmap", i));
                }
            }
        }
        for pfn in self.pages.anon_used() {
            let page = self.pages.get(Pfn(pfn));
            if !page.is_free() {
                let tag = page.tag.load(Ordering::Relaxed);
                report(
                    Oracle::LostPage,
                    format!(
                        "anon page {} for address {:#x}, installed by {}, is neither mapped nor freed (refcount {})",
                        Pfn(pfn),
                        tag << PAGE_SHIFT,
                        crate::role::installer_name(page.installer.load(Ordering::Relaxed)),
                        page.refcount.load(Ordering::Relaxed)
                    ),
                );
            }
        }
        found
    }

    /// Unmap entry `i` of table `slot` the way `zap_pte_range()` does
    /// (no TLB flush: callers flush before freeing anything a CPU could read).
    /// Returns an anonymous page to free after the flush.
    pub(crate) fn zap_pte(
        &self,
        cpu: u32,
        slot: u32,
        i: usize,
        report: &mut impl FnMut(Oracle, String),
    ) -> Option<Pfn> {
        let pte = Pte(self.tables.entry(slot, i).swap(0, Ordering::AcqRel));
        if let Some(pfn) = pte.pfn() {
            let page = self.pages.get(pfn);
            page.mapcount.fetch_sub(1, Ordering::Relaxed);
            if page.is_anon() {
                self.add_counter(cpu, MmCounter::AnonPages, -1);
                let after = page.refcount.fetch_sub(1, Ordering::Relaxed) - 1;
                if after == 0 {
                    return Some(pfn);
                }
                report(Oracle::Accounting, format!("anon {pfn} refcount {after} after its only unmap"));
            } else {
                let head = Pfn(pfn.0 & !(HPAGE_PMD_NR as u32 - 1));
                self.pages.get(head).refcount.fetch_sub(1, Ordering::Relaxed);
                self.add_counter(cpu, self.file_counter(), -1);
            }
        } else if pte.is_swap() {
            self.add_counter(cpu, MmCounter::SwapEnts, -1);
        } else if let Some(pfn) = pte.migration_pfn() {
            report(Oracle::Accounting, format!("migration entry for {pfn} left in table at idx {i}"));
        }
        None
    }
}

/// Virtual page number of an address.
pub fn vpn(addr: u64) -> u64 {
    addr >> PAGE_SHIFT
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn small(ranges: usize, density: u32) -> Mm {
        Mm::new(MmConfig {
            ranges: vec![0; ranges],
            file: FileKind::Shmem,
            split_pmd_ptlocks: true,
            split_pte_ptlocks: true,
            cpus: 2,
            density,
            anon_pages: 64,
            spare_tables: 4,
            oracles: true,
            ranges_per_pmd_table: crate::mm::RANGES_PER_PMD_TABLE,
        })
        .unwrap()
    }

    #[test]
    fn layout_round_trips() {
        let contiguous = MmConfig::one_range(1).layout();
        for r in [0, 1, 510, 511, 1022, 1500] {
            assert_eq!(contiguous.range_of(contiguous.addr(r)), Some(r));
            assert_eq!(contiguous.addr(r) % HPAGE_PMD_SIZE, 0);
        }
        assert_eq!(contiguous.pmd(1022), (2, 0));
        assert_eq!(contiguous.range_of(MAP_BASE + NEIGHBOUR_SLOT as u64 * HPAGE_PMD_SIZE), None);
        // Four ranges to a table: the rest of each 1 GiB is no range.
        let sparse = MmConfig { ranges_per_pmd_table: 4, ..MmConfig::one_range(1) }.layout();
        assert_eq!((sparse.pmd(5), sparse.addr(5)), ((1, 1), MAP_BASE + PMD_TABLE_SPAN + HPAGE_PMD_SIZE));
        for r in [0, 3, 4, 9] {
            assert_eq!(sparse.range_of(sparse.addr(r)), Some(r));
        }
        assert_eq!(sparse.range_of(MAP_BASE + 4 * HPAGE_PMD_SIZE), None);
        assert_eq!(sparse.range_of(MAP_BASE - 1), None);
        // A model knows only its own ranges.
        let mm = Mm::new(MmConfig { ranges: vec![0; 6], ranges_per_pmd_table: 4, ..MmConfig::one_range(1) }).unwrap();
        assert_eq!((mm.pmds.len(), mm.addr_range(mm.range_addr(5)), mm.addr_range(sparse.addr(6))), (2, Some(5), None));
        assert_eq!(mm.pmds.get(1, 1).kind(), PmdKind::Table(5));
    }

    #[test]
    fn populated_then_torn_down_cleanly() {
        let mm = small(3, 512);
        assert_eq!(mm.counter(MmCounter::ShmemPages), 3 * 512);
        assert_eq!(mm.nr_ptes(), 3);
        assert_eq!(mm.pages.get(mm.file_hpage(1)).refcount.load(Ordering::Relaxed), 1024);
        assert!(mm.exit_mmap().is_empty());
    }

    #[test]
    fn density_pattern_counts() {
        let mm = small(1, 100);
        assert_eq!((0..512).filter(|&i| mm.density_maps(i)).count(), 100);
        assert_eq!(mm.counter(MmCounter::ShmemPages), 100);
    }

    #[test]
    fn teardown_reports_a_leaked_anon_counter() {
        let mm = small(1, 0);
        mm.add_counter(1, MmCounter::AnonPages, 1);
        let v = mm.exit_mmap();
        assert_eq!(v.len(), 1);
        assert!(
            v[0].message.contains("BUG: Bad rss-counter state") && v[0].message.ends_with("type:MM_ANONPAGES val:1"),
            "{}",
            v[0]
        );
    }

    #[test]
    fn bad_config_names_the_field() {
        let mut c = small(1, 0).config.clone();
        c.density = 513;
        let e = Mm::new(c).err().unwrap().to_string();
        assert!(e.starts_with("density:") && e.contains("0..=512"), "{e}");
    }
}
