//! Page-table memory: a pool of 4 KiB PTE tables and the PMD tables.
//!
//! PTE tables are 512 × 8-byte entries, 4 KiB aligned, in one mmap'd arena,
//! so a step-2 scan walks one 4 KiB page as in the kernel. A slot's state
//! (free / live / waiting for a grace period) lets lockless walkers and the
//! teardown detect use of freed table memory.

use crate::footprint::{AtomicU64, AtomicU8};
use crate::pte::{Pmd, Pte, PTRS_PER_PMD, PTRS_PER_PTE};
use crate::recycle::AnonMap;
use std::sync::atomic::Ordering;

/// Bytes of one PTE or PMD table (512 eight-byte entries: one page).
pub const TABLE_BYTES: usize = PTRS_PER_PTE * 8;

/// Lifecycle of a PTE-table slot.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TableState {
    /// On the free list.
    Free = 0,
    /// Allocated (possibly detached from its PMD already).
    Live = 1,
    /// Passed to `pte_free_defer()`, waiting for lockless walkers.
    Deferred = 2,
}

/// Fixed arena of PTE tables.
pub struct TablePool {
    map: AnonMap,
    slots: usize,
    state: Box<[AtomicU8]>,
    /// How many times each slot has been released: a lockless walker
    /// reads it with the PMD and again after the PTE, and a change means
    /// the table it walked was freed (and maybe reused) under it.
    releases: Box<[AtomicU64]>,
    /// The free list. A slot never handed out is zero and never touched:
    /// a reuse of the arena's mapping zeroes the slots handed out only.
    free: crate::pool::FreeNumbers,
}

impl TablePool {
    /// An arena of `slots` tables, all free.
    pub fn new(slots: usize) -> std::io::Result<Self> {
        let map = AnonMap::zeroed(slots * TABLE_BYTES)?;
        let state = (0..slots).map(|_| AtomicU8::new(TableState::Free as u8)).collect();
        let releases = (0..slots).map(|_| AtomicU64::new(0)).collect();
        Ok(TablePool { map, slots, state, releases, free: crate::pool::FreeNumbers::new(0, slots as u32) })
    }

    /// All 512 entries of table `slot`, for whole-table scans: one bounds
    /// check, and the base stays in a register across the atomic loads.
    #[inline]
    pub fn table(&self, slot: u32) -> &[AtomicU64; PTRS_PER_PTE] {
        assert!((slot as usize) < self.slots);
        // SAFETY: as for `entry`; the table is PTRS_PER_PTE entries from its start.
        unsafe { &*(self.map.as_ptr() as *const AtomicU64).add(slot as usize * PTRS_PER_PTE).cast() }
    }

    /// Entry `idx` of table `slot`.
    #[inline]
    pub fn entry(&self, slot: u32, idx: usize) -> &AtomicU64 {
        assert!((slot as usize) < self.slots && idx < PTRS_PER_PTE);
        // SAFETY: in bounds of a zero-initialised mapping that lives as long
        // as self; entries are only accessed atomically.
        unsafe { &*(self.map.as_ptr() as *const AtomicU64).add(slot as usize * PTRS_PER_PTE + idx) }
    }

    /// Read entry `idx` of table `slot`.
    #[inline]
    pub fn get(&self, slot: u32, idx: usize) -> Pte {
        Pte(self.entry(slot, idx).load(Ordering::Acquire))
    }

    /// `pte_alloc_one()`: a zeroed table, or `None` when the arena is exhausted.
    pub fn alloc(&self) -> Option<u32> {
        crate::footprint::note(&self.free as *const _ as *const (), true);
        let slot = self.free.take()?;
        self.state[slot as usize].store(TableState::Live as u8, Ordering::Release);
        Some(slot)
    }

    /// Move a live table to the deferred state (it was passed to `pte_free_defer`).
    pub(crate) fn mark_deferred(&self, slot: u32) {
        self.state[slot as usize].store(TableState::Deferred as u8, Ordering::Release);
    }

    /// Really free a table: zero it and put it back on the free list.
    pub(crate) fn release(&self, slot: u32) {
        for e in self.table(slot) {
            e.store(0, Ordering::Relaxed);
        }
        self.state[slot as usize].store(TableState::Free as u8, Ordering::Release);
        self.releases[slot as usize].fetch_add(1, Ordering::AcqRel);
        crate::footprint::note(&self.free as *const _ as *const (), true);
        self.free.give_back(slot);
    }

    /// How many times `slot` has been released so far.
    pub(crate) fn releases(&self, slot: u32) -> u64 {
        self.releases[slot as usize].load(Ordering::Acquire)
    }

    /// State of `slot` now.
    pub fn state(&self, slot: u32) -> TableState {
        match self.state[slot as usize].load(Ordering::Acquire) {
            0 => TableState::Free,
            1 => TableState::Live,
            _ => TableState::Deferred,
        }
    }

    /// The tables' allocations ([`crate::footprint::Regions`]).
    pub(crate) fn footprint_regions(&self, out: &mut Vec<(usize, usize)>) {
        out.push((self.map.as_ptr() as usize, self.slots * TABLE_BYTES));
        out.push(crate::footprint::region_of(&self.state));
        out.push(crate::footprint::region_of(&self.releases));
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Tables not on the free list.
    pub fn in_use(&self) -> usize {
        self.free.out(0)
    }
}

impl Drop for TablePool {
    fn drop(&mut self) {
        let used = self.free.touched_below() as usize;
        self.map.written_below(used * TABLE_BYTES);
    }
}

/// The PMD tables of the model's address space.
pub struct PmdTables {
    map: AnonMap,
    tables: usize,
}

impl PmdTables {
    /// `tables` PMD tables, every entry none.
    pub fn new(tables: usize) -> std::io::Result<Self> {
        Ok(PmdTables { map: AnonMap::zeroed(tables.max(1) * TABLE_BYTES)?, tables })
    }

    /// Entry `idx` of PMD table `table`.
    #[inline]
    pub fn entry(&self, table: u32, idx: u32) -> &AtomicU64 {
        assert!((table as usize) < self.tables && (idx as usize) < PTRS_PER_PMD);
        // SAFETY: as for TablePool::entry.
        unsafe { &*(self.map.as_ptr() as *const AtomicU64).add(table as usize * PTRS_PER_PMD + idx as usize) }
    }

    /// Read a PMD entry.
    #[inline]
    pub fn get(&self, table: u32, idx: u32) -> Pmd {
        Pmd(self.entry(table, idx).load(Ordering::Acquire))
    }

    /// The tables' allocation ([`crate::footprint::Regions`]).
    pub(crate) fn footprint_regions(&self, out: &mut Vec<(usize, usize)>) {
        out.push((self.map.as_ptr() as usize, self.tables.max(1) * TABLE_BYTES));
    }

    /// Number of PMD tables.
    pub fn len(&self) -> usize {
        self.tables
    }

    /// Whether there are none (never, once built).
    pub fn is_empty(&self) -> bool {
        self.tables == 0
    }
}
