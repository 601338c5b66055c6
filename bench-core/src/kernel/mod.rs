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

mod policy;
mod primitives;

pub use crate::event::Step;
pub use crate::locks::LockId;
pub use crate::mm::{MmCounter, Vma, VM_SHARED, VM_UFFD_MINOR, VM_UFFD_MISSING, VM_UFFD_WP};
pub use crate::pte::{
    Pfn, Pmd, PmdKind, Pte, PteMarker, HPAGE_PMD_MASK, HPAGE_PMD_NR, HPAGE_PMD_ORDER, HPAGE_PMD_SIZE, PAGE_SHIFT,
    PAGE_SIZE, PTRS_PER_PTE,
};
pub use crate::scan::ScanResult;
pub use policy::{entry, CollapsePolicy, DynPolicy, Engine, NoParams, PolicyEntry};
pub use primitives::{
    linear_page_index, pmd_offset, pmd_pgtable, range_in_vma, userfaultfd_armed, userfaultfd_wp, Cx, NotifierRange,
    PgTable, PmdRef, PteMap, PteRef, SINGLE_DEPTH_NESTING,
};
