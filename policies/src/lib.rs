//! The shipped collapse policies, one file each, each readable beside
//! `collapse_pte_mapped_thp()` in mm/khugepaged.c (v6.6 unless its name
//! says another version, or the posting it models): the same step
//! numbers and names, the kernel's locals as locals, and comments that
//! say why each lock is held and where the model departs from the kernel.
//!
//! | name | what it is | verdict expected |
//! |---|---|---|
//! | `v1` | the merged fix (v6.6 to v6.12): early `pml` for uffd-armed private VMAs | correct |
//! | `v6.13` | v1 plus Qi Zheng's `pmd_same()` rechecks, table mapped to the end | correct |
//! | `v6.1` | before v6.6: `mmap_lock` and `i_mmap_rwsem` for write, immediate free | correct |
//! | `v2-flush-bool` | trylock + recheck, a flag for the owed flush | correct by the thread; the model finds a stale translation under `pml` contention |
//! | `v2-step3-down` | trylock + recheck, step 3 below the lock point | correct by the thread; the model finds a stale translation under `pml` contention |
//! | `v2-posted` | v2 as posted (step 1's `ptl` retaken, table mapped per pass) | stale TLB after a recheck-pass abort (control) |
//! | `v2-posted-relookup` | v2-posted's `nr_ptes` reset on the repairs' skeleton | stale TLB after a recheck-pass abort (control) |
//! | `v6.13-noflush` | v6.13 as posted Aug/Sep 2024: step-4 mismatch skips the flush | stale TLB when a page-table freer races step 4 (control; needs a freer) |
//! | `pre-fix` | the code before v1 | table freed with a live uffd PTE (control) |

#![warn(missing_docs)]

pub mod khugepaged;
pub mod pre_fix;
pub mod recheck;
pub mod v1;
pub mod v2_flush_bool;
pub mod v2_posted;
pub mod v2_posted_relookup;
pub mod v2_step3_down;
pub mod v6_1;
pub mod v6_13;
pub mod v6_13_noflush;

use bench_core::kernel::{entry, PolicyEntry};

/// Every shipped policy, in report order (base first, controls last).
pub fn registry() -> Vec<PolicyEntry> {
    vec![
        entry::<v1::V1>(),
        entry::<v6_13::V6_13>(),
        entry::<v6_1::V6_1>(),
        entry::<v2_flush_bool::V2FlushBool>(),
        entry::<v2_step3_down::V2Step3Down>(),
        entry::<v2_posted::V2Posted>(),
        entry::<v2_posted_relookup::V2PostedRelookup>(),
        entry::<v6_13_noflush::V6_13NoFlush>(),
        entry::<pre_fix::PreFix>(),
    ]
}
