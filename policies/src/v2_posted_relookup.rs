//! `v2-posted-relookup` — `v2-posted`'s bug on the skeleton the two
//! repairs share. A control.
//!
//! The posted v2 retook step 1's `ptl` pointer with a plain `spin_lock()`
//! and mapped the table afresh on each pass with `pte_offset_map()`,
//! unmapping it after each step 2 (`v2-posted` follows it). The two
//! repairs, which the thread named but never posted, are written on a
//! safer skeleton: one `pte_offset_map_lock()` at step 2, which looks the
//! table and its `ptl` up again and checks the PMD once the lock is held,
//! and the table kept mapped until the PMD is cleared. This form is that
//! skeleton with the posting's `nr_ptes` reset and nothing else, so it
//! differs from `v2-flush-bool` only by the missing flush flag: what the
//! checker finds here and not there is the reset's doing alone.
//!
//! Its bug is the posting's: step 3 resets `nr_ptes` so a recheck pass
//! does not account twice, so when the recheck pass aborts (on the PTE
//! uffd inserted meanwhile), the abort path sees `nr_ptes == 0` and skips
//! `flush_tlb_mm()`, although the first pass cleared entries: other CPUs
//! keep translations of subpages whose references were dropped
//! (`stale-tlb`).

use crate::khugepaged::{abort_unlock, account_cleared, clear_ptes, collapse_pte_mapped_thp, remove_table};
use crate::recheck::{lock_pml_under_ptl, RecheckParams};
use bench_core::kernel::{
    userfaultfd_armed, CollapsePolicy, Cx, Engine, LockId, Pfn, Pmd, PmdRef, ScanResult, Step, Vma, VM_SHARED,
};

/// v2's nr_ptes reset on the repairs' skeleton.
pub struct V2PostedRelookup(RecheckParams);

impl CollapsePolicy for V2PostedRelookup {
    type Params = RecheckParams;
    const NAME: &'static str = "v2-posted-relookup";
    const SUMMARY: &'static str =
        "control, buggy: v2-posted's nr_ptes reset on the repairs' skeleton (fresh ptl lookup, table mapped to step 4)";

    fn new(params: RecheckParams) -> Self {
        V2PostedRelookup(params)
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
/// posted v2 (linux-mm, 21 August 2023) has them on the repairs'
/// skeleton, from just after the notifier range starts (`ptl` is step 1's,
/// dropped) to the detached PMD.
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
        // retakes step 1's ptl and maps per pass (see `v2-posted`).
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

            /* step 3: set proper refcount and mm_counters. */
            cx.step(Step::Account);
            account_cleared(cx, hpage, nr_ptes);
            // So that a recheck pass accounts only what it clears itself.
            // THE BUG: nr_ptes was also the abort path's only record that
            // entries were cleared and a flush is owed.
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
    // As posted: after a recheck pass nr_ptes counts that pass only, so
    // when it aborts having cleared nothing (typically on the page uffd
    // inserted) this skips the flush the first pass's entries still owe.
    if nr_ptes != 0 {
        cx.flush_tlb_mm();
        account_cleared(cx, hpage, nr_ptes);
    }
    abort_unlock(cx, start_pte, ptl, pml);
    Err(result)
}
