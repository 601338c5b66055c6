//! The shipped collapse policies, one file each, each readable beside
//! `collapse_pte_mapped_thp()` in mm/khugepaged.c (v6.6, or the posting
//! it models): the same step numbers and names, the kernel's locals as
//! locals, and comments that say why each lock is held and where the
//! model departs from the kernel.
//!
//! | name | verdict expected |
//! |---|---|
//! | `v1` | correct (merged) |
//! | `v2-flush-bool` | correct by the thread; the model finds a stale translation under `pml` contention |
//! | `v2-step3-down` | correct by the thread; the model finds a stale translation under `pml` contention |
//! | `v2-posted` | stale TLB after a recheck-pass abort (control) |
//! | `pre-fix` | table freed with a live uffd PTE (control) |

#![warn(missing_docs)]

pub mod khugepaged;
pub mod pre_fix;
pub mod recheck;
pub mod v1;
pub mod v2_flush_bool;
pub mod v2_posted;
pub mod v2_step3_down;

use bench_core::kernel::{entry, PolicyEntry};

/// Every shipped policy, in report order (base first, controls last).
pub fn registry() -> Vec<PolicyEntry> {
    vec![
        entry::<v1::V1>(),
        entry::<v2_flush_bool::V2FlushBool>(),
        entry::<v2_step3_down::V2Step3Down>(),
        entry::<v2_posted::V2Posted>(),
        entry::<pre_fix::PreFix>(),
    ]
}
