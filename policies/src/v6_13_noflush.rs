//! `v6.13-noflush` — Qi Zheng's series as posted in August and September
//! 2024 (v2, 22 August; v3, 4 September): step 4 gives up on a changed
//! PMD without paying the flush step 2's clears owe. A control.
//!
//! Against v6.12 (the `v1` form) those postings made two changes:
//!
//! * step 2 maps the table with `pte_offset_map_rw_nolock()` and, once
//!   `ptl` is held, checks the PMD still holds the value the table was
//!   found through (`pmd_same()`), as v6.13 does;
//! * at step 4, when `pml` is taken late, the early `pte_unmap()` after
//!   step 2 is kept, so the table may be freed while `ptl` is dropped: the
//!   PMD is checked under `pml` alone *before* `ptl` is retaken (whose
//!   ptlock would be freed memory if the table were gone), and on a
//!   mismatch the collapse drops `pml` and jumps past the abort path and
//!   the unlocks, straight to ending the notifier range.
//!
//! THE BUG: that jump skips `flush_tlb_mm()`. Step 2 cleared entries
//! without a flush, leaving it to step 4's `pmdp_collapse_flush()`, which
//! the jump also skips; other CPUs can still translate addresses of the
//! range to subpages whose references step 3 dropped, after the collapse
//! returns (`stale-tlb`). Muchun Song asked on the v2 thread (29 August
//! 2024) whether the TLB flush was forgotten; the author answered that
//! whoever freed the table flushes after clearing the PMD. The v4 posting
//! (24 September) jumped to the abort path instead, which flushed but
//! accounted step 2's clears a second time and unlocked `pml` twice
//! (Muchun Song again); v5 (26 September) flushes and goes to the
//! `unlock:` label: `v6.13`.
//!
//! The freer's own flush covers only what it zapped, and runs after it
//! drops its locks, so it can come after the collapse has returned. The
//! bug needs a page-table freer racing the collapse; in a workload with
//! none the PMD never changes and this form behaves as `v6.13`.

use crate::khugepaged::{abort_unlock, account_cleared, clear_ptes, collapse_pte_mapped_thp, remove_table};
use bench_core::kernel::{
    pmd_same, userfaultfd_armed, CollapsePolicy, Cx, Engine, LockId, NoParams, Pfn, Pmd, PmdRef, ScanResult, Step, Vma,
    SINGLE_DEPTH_NESTING, VM_SHARED,
};

/// The series' v2/v3 posting.
pub struct V6_13NoFlush(NoParams);

impl CollapsePolicy for V6_13NoFlush {
    type Params = NoParams;
    const NAME: &'static str = "v6.13-noflush";
    const SUMMARY: &'static str =
        "control, buggy (needs a table freer): v6.13 as posted Aug/Sep 2024, a step-4 pmd_same() mismatch skips flush_tlb_mm";

    fn new(params: NoParams) -> Self {
        V6_13NoFlush(params)
    }

    fn params(&self) -> &NoParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult {
        collapse_pte_mapped_thp(cx, haddr, install_pmd, steps_2_to_4)
    }
}

/// Steps 2 to 4 and the abort path of `collapse_pte_mapped_thp()` as the
/// series' v3 (linux-mm, 4 September 2024; v2 is the same) has them, from
/// just after the notifier range starts (`ptl` is step 1's, dropped) to
/// the detached PMD. The `pmd_change:` label, just before the notifier
/// range ends, is this function's return.
fn steps_2_to_4<E: Engine>(
    cx: &mut Cx<'_, E>,
    vma: &Vma,
    haddr: u64,
    hpage: Pfn,
    pmd: PmdRef,
    mut ptl: LockId,
) -> Result<Pmd, ScanResult> {
    let mut pml = None;
    // Some while the table is mapped with ptl held: what the abort path's
    // `if (start_pte)` asks.
    let mut start_pte = None;
    let mut nr_ptes = 0;
    let result = 'abort: {
        // As v1: pml first for a uffd-armed private VMA.
        if userfaultfd_armed(vma) && vma.flags & VM_SHARED == 0 {
            pml = Some(cx.pmd_lock(pmd));
        }

        let Some((table, pgt_pmd, table_ptl)) = cx.pte_offset_map_rw_nolock(pmd, haddr) else {
            // Not expected, with mmap_lock and the page lock held.
            break 'abort ScanResult::Fail;
        };
        (start_pte, ptl) = (Some(table), table_ptl);
        match pml {
            None => cx.spin_lock(ptl),
            Some(pml) if pml != ptl => cx.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING),
            Some(_) => {} // ptl is pml (locks not split): already held
        }
        // As v6.13: a freer may have detached the table between the
        // lookup and the lock.
        if !pmd_same(pgt_pmd, cx.pmdp_get_lockless(pmd)) {
            break 'abort ScanResult::Fail;
        }

        /* step 2: clear page table and adjust rmap */
        cx.step(Step::Clear);
        if let Err(result) = clear_ptes(cx, vma, haddr, hpage, table, &mut nr_ptes) {
            break 'abort result;
        }
        // As v6.12: unmapped now, so this CPU leaves the RCU read side and
        // the table can be freed once ptl is dropped below.
        // (The kernel leaves start_pte set, but no abort path is reached
        // from here on.)
        cx.pte_unmap(table);
        if pml.is_none() {
            cx.spin_unlock(ptl);
        }

        /* step 3: set proper refcount and mm_counters. */
        cx.step(Step::Account);
        account_cleared(cx, hpage, nr_ptes);

        /* step 4: remove empty page table */
        cx.step(Step::RemoveTable);
        let pml = match pml {
            Some(pml) => pml,
            None => {
                let pml = cx.pmd_lock(pmd);
                // Checked before ptl is retaken: if the table was freed,
                // its ptlock went with it.
                if !pmd_same(pgt_pmd, cx.pmdp_get_lockless(pmd)) {
                    cx.spin_unlock(pml);
                    // THE BUG: `goto pmd_change`, past the abort path's
                    // flush_tlb_mm(). Step 2's clears are still unflushed.
                    return Err(ScanResult::Fail);
                }
                if ptl != pml {
                    cx.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING);
                }
                pml
            }
        };
        return Ok(remove_table(cx, vma, haddr, pmd, None, ptl, pml));
    };

    /* abort: */
    cx.step(Step::Abort);
    if nr_ptes != 0 {
        // Step 2 cleared these without a flush, leaving it to step 4: other
        // CPUs may still cache them, and their references go now.
        cx.flush_tlb_mm();
        account_cleared(cx, hpage, nr_ptes);
    }
    abort_unlock(cx, start_pte, ptl, pml);
    Err(result)
}
