//! bench-core: the model of page tables that `collapse_pte_mapped_thp()`
//! policies run against, the kernel-named primitives they are written in,
//! the engines that run them, and the oracles that judge them.
//!
//! A policy implements [`CollapsePolicy`] with calls on [`Cx`]; the
//! engines ([`native`]) run it beside other actors on an [`Mm`]; the
//! oracles ([`Oracle`]) report what broke; [`metrics`] and [`results`]
//! say how fast.

#![warn(missing_docs)]

pub mod controlled;
pub mod engine;
pub mod lockdep;
pub mod metrics;
pub mod mm;
pub mod native;
pub mod oracle;
pub mod page;
pub mod pgtable;
pub mod policy;
pub mod primitives;
pub mod pte;
pub mod rcu;
pub mod results;
pub mod spinlock;
pub mod tlb;

pub use engine::{Engine, Event, Native, Step, StepHook};
pub use metrics::{Metrics, Role};
pub use mm::{FileKind, LockClass, LockId, Mm, MmConfig, MmCounter, Vma};
pub use oracle::{Oracle, Violation};
pub use policy::{entry, CollapsePolicy, DynPolicy, NoParams, PolicyEntry, ScanResult};
pub use primitives::{Cx, NotifierRange, PgTable, PmdRef, PteMap, PteRef, SINGLE_DEPTH_NESTING};
pub use pte::{Pfn, Pmd, PmdKind, Pte, PteMarker};
