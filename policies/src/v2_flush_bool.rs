//! `v2-flush-bool` — v2 repaired with a separate flag for the owed flush.
//!
//! As `v2-posted`, plus a `bool` set whenever step 2 clears an entry in
//! any pass; the abort path flushes when it is set, and accounts
//! `nr_ptes`, which counts only what step 3 has not yet accounted.

use crate::khugepaged::{abort_unlock, account_cleared, clear_ptes, collapse_pte_mapped_thp, remove_table};
use crate::recheck::{lock_pml_under_ptl, RecheckParams};
use bench_core::kernel::{
    userfaultfd_armed, CollapsePolicy, Cx, Engine, LockId, Pfn, Pmd, PmdRef, ScanResult, Step, Vma, VM_SHARED,
};

/// v2 with a flush flag.
pub struct V2FlushBool(RecheckParams);

impl CollapsePolicy for V2FlushBool {
    type Params = RecheckParams;
    const NAME: &'static str = "v2-flush-bool";
    const SUMMARY: &'static str = "trylock + recheck; nr_ptes reset by step 3, a separate bool decides the abort flush";

    fn new(params: RecheckParams) -> Self {
        V2FlushBool(params)
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
/// posted v2 (linux-mm, 21 August 2023) has them with the first repair its
/// author named on withdrawing it (a separate bool decides the abort
/// path's flush), from just after the notifier range starts (`ptl` is step
/// 1's, dropped) to the detached PMD.
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
    // Some entry was cleared, in any pass: the abort path owes a flush.
    let mut flush_owed = false;
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
            let cleared = clear_ptes(cx, vma, haddr, hpage, table, &mut nr_ptes);
            // nr_ptes counts this pass only (step 3 resets it), so any
            // entry this pass cleared shows here, even if it then aborted.
            flush_owed |= nr_ptes != 0;
            if let Err(result) = cleared {
                break 'abort result;
            }

            /* step 3: set proper refcount and mm_counters. */
            cx.step(Step::Account);
            account_cleared(cx, hpage, nr_ptes);
            // So that a recheck pass accounts only what it clears itself;
            // flush_owed keeps the flush these entries still owe.
            nr_ptes = 0;

            /* step 4: remove empty page table */
            cx.step(Step::RemoveTable);
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
        return Ok(remove_table(cx, vma, haddr, pmd, Some(table), ptl, pml));
    };

    /* abort: */
    cx.step(Step::Abort);
    // The flag, not nr_ptes, decides the flush: after a recheck pass
    // nr_ptes counts that pass only, though the first pass's entries may
    // still be cached by other CPUs. nr_ptes still decides the accounting,
    // of what step 3 has not done.
    if flush_owed {
        cx.flush_tlb_mm();
    }
    account_cleared(cx, hpage, nr_ptes);
    abort_unlock(cx, start_pte, ptl, pml);
    Err(result)
}
