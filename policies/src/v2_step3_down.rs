//! `v2-step3-down` — v2 repaired by moving step 3 below the lock point.
//!
//! As `v2-posted`, but step 3 (refcount and counter accounting) runs after
//! step 4's trylock or retake and after any recheck pass, so `nr_ptes`
//! counts every entry cleared in every pass and is never reset: the abort
//! path's `if (nr_ptes)` flush and accounting stay right.

use crate::khugepaged::{abort_unlock, account_cleared, clear_ptes, collapse_pte_mapped_thp, remove_table};
use crate::recheck::{lock_pml_under_ptl, RecheckParams};
use bench_core::kernel::{
    userfaultfd_armed, CollapsePolicy, Cx, Engine, LockId, Pfn, Pmd, PmdRef, ScanResult, Step, Vma, VM_SHARED,
};

/// v2 with step 3 moved down.
pub struct V2Step3Down(RecheckParams);

impl CollapsePolicy for V2Step3Down {
    type Params = RecheckParams;
    const NAME: &'static str = "v2-step3-down";
    const SUMMARY: &'static str = "trylock + recheck; step 3 moved below the lock point, nr_ptes never reset";

    fn new(params: RecheckParams) -> Self {
        V2Step3Down(params)
    }

    fn params(&self) -> &RecheckParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult {
        let recheck_always = self.0.recheck_always;
        collapse_pte_mapped_thp(cx, haddr, install_pmd, |cx, vma, haddr, hpage, pmd, ptl| {
            steps_2_to_4(cx, vma, haddr, hpage, pmd, ptl, recheck_always)
        })
    }
}

/// Steps 2 to 4 and the abort path of `collapse_pte_mapped_thp()` as the
/// posted v2 (linux-mm, 21 August 2023) has them with the second repair its
/// author named on withdrawing it (step 3 moved down), from just after the
/// notifier range starts (`ptl` is step 1's, dropped) to the detached PMD.
fn steps_2_to_4<E: Engine>(
    cx: &mut Cx<'_, E>,
    vma: &Vma,
    haddr: u64,
    hpage: Pfn,
    pmd: PmdRef,
    mut ptl: LockId,
    recheck_always: bool,
) -> Result<Pmd, ScanResult> {
    let mut pml = None;
    // Some while the table is mapped with ptl held: what the abort path's
    // `if (start_pte)` asks.
    let mut start_pte = None;
    let mut nr_ptes = 0;
    let result = 'abort: {
        // One pte_offset_map_lock() for every pass, where the posting
        // maps per pass (see `policies::recheck`).
        let Some((table, table_ptl)) = cx.pte_offset_map_lock(pmd, haddr) else {
            break 'abort ScanResult::Fail;
        };
        (start_pte, ptl) = (Some(table), table_ptl);

        let mut pass = Step::Clear;
        'recheck: loop {
            /* step 2: clear page table and adjust rmap */
            cx.step(pass);
            if let Err(result) = clear_ptes(cx, vma, haddr, hpage, table, &mut nr_ptes) {
                break 'abort result;
            }

            // Step 4's lock point, as in the posting, but reached before step
            // 3: a recheck pass adds to nr_ptes instead of starting it again,
            // so nothing is reset. In timelines it ends step 2's pass; step 4
            // is marked once, below step 3.
            if pml.is_none() {
                let (lock, ptl_dropped) = lock_pml_under_ptl(cx, pmd, ptl);
                pml = Some(lock);
                // ptl dropped: the recheck the posting makes for uffd on a
                // private VMA, or always (see `policies::recheck`).
                if ptl_dropped && (recheck_always || userfaultfd_armed(vma) && vma.flags & VM_SHARED == 0) {
                    pass = Step::Recheck;
                    continue 'recheck;
                }
            }
            break;
        }
        let pml = pml.expect("taken at step 4's lock point");

        /* step 3: set proper refcount and mm_counters. */
        cx.step(Step::Account);
        account_cleared(cx, hpage, nr_ptes);

        /* step 4: remove empty page table */
        cx.step(Step::RemoveTable);
        return Ok(remove_table(cx, vma, haddr, pmd, Some(table), ptl, pml));
    };

    /* abort: */
    cx.step(Step::Abort);
    // nr_ptes counts every entry cleared in every pass (step 3, which
    // would account them, comes after the last abort): it alone decides.
    if nr_ptes != 0 {
        cx.flush_tlb_mm();
        account_cleared(cx, hpage, nr_ptes);
    }
    abort_unlock(cx, start_pte, ptl, pml);
    Err(result)
}
