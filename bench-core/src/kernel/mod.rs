//! The kernel API for policies: what a collapse policy is written in, and
//! nothing else. A plugin imports from here alone:
//! `use bench_core::kernel::*;` gives the policy trait and its registry
//! entry, the model CPU's context [`Cx`] with the kernel-named primitives
//! (v6.6 names and lock rules), the kernel's helpers that take a VMA or a
//! PMD value, `ScanResult`, `Step`, and the value types and constants
//! they use.
//!
//! `Cx` keeps the model to itself: every read and write of a page table,
//! a page or a lock goes through a primitive, which is a scheduling point
//! for the race checker and is judged by the oracles. What the workloads
//! need besides (populating ranges, other actors' paths, the accounting
//! checks) is in [`crate::harness`], not here.
//!
//! # Writing a policy
//!
//! 1. Port the patch hunk by hunk: start from the shipped policy closest to
//!    it (the `policies` crate: `v1` is the merged form), keep the
//!    kernel's names and step numbers, and say why a lock is held in your
//!    own words, citing the kernel function and version. The parts every form
//!    shares (early exits, `find_lock_page()`, step 1, the body of step 2,
//!    step 3's accounting, the abort path) are in `policies::khugepaged`.
//! 2. Mark the steps with [`Cx::step`] ([`Step`]): timelines, test hooks
//!    and the `recheck_passes` counter ([`Step::Recheck`]) read them.
//! 3. Register it: [`entry`]`::<MyPolicy>()` gives the [`PolicyEntry`] that
//!    the command line, the runner and the reports list and build.
//! 4. Check it: `workloads::conformance::assert_conforms(&entry::<MyPolicy>(),
//!    Expect::Correct)` runs the functional cases and the race checker on
//!    every preset, and panics with a readable report if it is wrong.
//!
//! # The contract a policy keeps
//!
//! As for the kernel function it replaces, a collapse is called with
//! `mmap_lock` held for read (implicit in the model) for a 2 MiB-aligned
//! address whose file already has a PMD-order page in the page cache, and
//! must:
//!
//! * return with no spinlock held, the page lock of `hpage` dropped and its
//!   reference put, every `pte_offset_map*` balanced by `pte_unmap`, and
//!   every started mmu-notifier range ended (checked by the harness on return: [`crate::harness::Harness::check_clean_return`]);
//! * take locks only in the order `pml` → `ptl` (as lock classes, kept for
//!   the whole run, as lockdep does), except by [`Cx::spin_trylock`]; never
//!   sleep (`lock_page`, `mmu_notifier_invalidate_range_start`) with a
//!   spinlock held;
//! * never free a PTE table that still holds a non-none entry
//!   ([`Oracle::TableFreedLive`](crate::Oracle::TableFreedLive)), and
//!   free a detached one with [`Cx::pte_free_defer`]: [`Cx::pte_free`]
//!   frees at once, under lockless walkers still reading it
//!   ([`Oracle::UseAfterFree`](crate::Oracle::UseAfterFree));
//! * call the primitives within their contracts: `vm_normal_page()` only
//!   on a present entry, `pte_unmap()` only of a mapped table, a notifier
//!   range ended only once started, a table freed only once detached
//!   ([`Oracle::ApiContract`](crate::Oracle::ApiContract));
//! * flush every entry it cleared from every TLB before it drops the page
//!   lock, on success and on abort
//!   ([`Oracle::StaleTlb`](crate::Oracle::StaleTlb));
//! * not drop `ptl` between clearing entries and flushing them where
//!   another path may fill the emptied slots under `ptl` alone (uffd on a
//!   private VMA): a CPU would still read the old subpage while the PTE
//!   maps the new page
//!   ([`Oracle::StaleTranslation`](crate::Oracle::StaleTranslation));
//! * leave `hpage`'s refcount and mapcounts and the mm's counters equal to
//!   what the PTEs and the PMD imply
//!   ([`Oracle::Accounting`](crate::Oracle::Accounting)), and lose no page
//!   another actor installed ([`Oracle::LostPage`](crate::Oracle::LostPage)).
//!
//! The oracles check all of this as the policy runs; a policy reports
//! nothing itself.
//!
//! See the crate-level example ([`crate`]) for a complete policy run once.

mod policy;
mod primitives;
mod sleeping_locks;

pub use crate::event::Step;
pub use crate::locks::LockId;
pub use crate::mm::{MmCounter, Vma, VM_SHARED, VM_UFFD_MINOR, VM_UFFD_MISSING, VM_UFFD_WP};
pub use crate::pte::{
    Pfn, Pmd, PmdKind, Pte, PteMarker, HPAGE_PMD_MASK, HPAGE_PMD_NR, HPAGE_PMD_ORDER, HPAGE_PMD_SIZE, PAGE_SHIFT,
    PAGE_SIZE, PTRS_PER_PTE,
};
pub use crate::scan::ScanResult;
pub use policy::{
    entry, runtime_entry, CollapsePolicy, DynPolicy, Engine, MmapLock, NoParams, PolicyEntry, Runtime, RuntimePolicy,
};
pub use primitives::{
    linear_page_index, pmd_offset, pmd_pgtable, pmd_same, range_in_vma, userfaultfd_armed, userfaultfd_wp, Cx,
    NotifierRange, PgTable, PmdRef, PteMap, PteRef, SINGLE_DEPTH_NESTING,
};
