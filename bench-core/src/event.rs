//! What happens on a model CPU: the collapse's steps, and the events a
//! CPU passes (its scheduling points, and what a timeline shows).

use crate::locks::{LockClass, LockId};
use crate::pte::{Pfn, Pte};
use crate::scan::ScanResult;

/// Where a collapse is: the kernel's step numbers, for hooks and timelines.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Early exits and page-cache lookup.
    Prologue,
    /// Step 1: check every mapped PTE maps `hpage + i`, under `ptl`.
    Check,
    /// Between dropping `ptl` and starting the mmu-notifier range.
    Notify,
    /// Step 2: clear the entries and their rmap.
    Clear,
    /// Step 2 again after a failed `pml` trylock (v2 forms).
    Recheck,
    /// Step 3: refcount and mm counters.
    Account,
    /// Step 4: take `pml` (if not held), clear the PMD, flush, free the table.
    RemoveTable,
    /// Step 5: install the PMD mapping (MADV_COLLAPSE).
    Install,
    /// The abort path.
    Abort,
}

impl Step {
    /// Label used in timelines ("step 2 (clear)").
    pub fn label(self) -> &'static str {
        match self {
            Step::Prologue => "prologue",
            Step::Check => "step 1 (check)",
            Step::Notify => "mmu_notifier start",
            Step::Clear => "step 2 (clear)",
            Step::Recheck => "step 2 (recheck)",
            Step::Account => "step 3 (account)",
            Step::RemoveTable => "step 4 (remove table)",
            Step::Install => "step 5 (install pmd)",
            Step::Abort => "abort",
        }
    }
}

/// Something a model CPU does that another CPU could interleave with (a
/// scheduling point), or that a timeline shows (trace-only events).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// About to wait for a spinlock.
    Lock(LockId),
    /// About to try a spinlock; `bool` is the outcome (trace) or false (point).
    Trylock(LockId, bool),
    /// Just released a spinlock.
    Unlock(LockId),
    /// About to take a reader-writer semaphore of this class, for write
    /// if `bool` (a point; traced again once taken).
    Down(LockClass, bool),
    /// (trace) released a reader-writer semaphore (write if `bool`).
    Up(LockClass, bool),
    /// A lockless read of a PMD or PTE.
    LocklessRead,
    /// A TLB lookup or fill of a virtual page.
    TlbAccess(u64),
    /// A page lock, reference or flag change on a frame.
    PageOp(Pfn),
    /// Waiting for a page table to come back from a grace period.
    TableAlloc,
    /// Waiting for the page lock of a frame.
    PageLock(Pfn),
    /// (trace) `ptep_clear` of entry idx.
    PteClear(u16),
    /// (trace) `set_pte_at` of entry idx.
    PteSet(u16, Pte),
    /// (trace) PMD cleared by `pmdp_collapse_flush` (or a zap).
    PmdClear,
    /// (trace) PMD emptied by `pmd_clear()`: no flush (a page-table
    /// freer's mmu_gather owes it).
    PmdClearOnly,
    /// (trace) huge PMD installed.
    PmdHuge,
    /// (trace) `flush_tlb_mm`.
    FlushMm,
    /// (trace) range flush.
    FlushRange,
    /// (trace) `pte_free_defer` of a table.
    TableFree(u32),
    /// (trace) `pte_free` of a table (freed at once, no grace period).
    TableFreeNow(u32),
    /// (trace) a TLB miss walked the tables and cached virtual page -> frame.
    TlbFill(u64, Pfn),
    /// (trace) a collapse step began.
    Step(Step),
    /// (trace) the collapse returned.
    Returned(ScanResult),
}

/// One line of a run's timeline.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TraceEntry {
    /// Scheduling step it happened in.
    pub step: u64,
    /// The CPU.
    pub cpu: u32,
    /// What it did.
    pub event: Event,
}
