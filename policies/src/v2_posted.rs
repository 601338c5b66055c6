//! `v2-posted` — v2 as posted (linux-mm, 21 August 2023), then withdrawn.
//! A control: it has the bug Hugh Dickins found by rereading it overnight.
//!
//! No early `pml`. After the notifier range starts, step 1's `ptl` is
//! retaken with a plain `spin_lock()` on the pointer step 1 looked up:
//! no fresh lookup, no look at the PMD. Below the `recheck:` label the
//! table is mapped (`pte_offset_map()`), step 2 clears it, and it is
//! unmapped at once (`pte_unmap()`), `ptl` still held. Step 3 accounts
//! and resets `nr_ptes`. Step 4 trylocks `pml` under `ptl`; if that
//! fails, `ptl` is dropped, `pml` taken, `ptl` retaken nested, and for a
//! uffd-armed private VMA the collapse goes back to `recheck:`, mapping
//! the table again.
//!
//! THE BUG: the reset of `nr_ptes` that keeps a recheck pass from
//! accounting twice also erases the abort path's only record that the
//! first pass cleared entries. When the recheck pass aborts (on the PTE
//! uffd inserted meanwhile), the abort path skips `flush_tlb_mm()`, and
//! other CPUs keep translations of subpages whose references were
//! dropped (`stale-tlb`).
//!
//! On the thread Peter Xu asked whether the `ptl` pointer from step 1 was
//! still valid when retaken: since v6.6 a table, and the ptlock in its
//! page descriptor, may be freed by a path that holds no `mmap_lock`
//! (table retraction), so only the RCU read side of a mapping keeps it,
//! and step 1 had left that. In v6.6 the page lock of `hpage`, which
//! retraction also needs, keeps this table in place; from v6.14 empty
//! page-table reclaim frees tables without it (see `v6.13`).
//!
//! `v2-posted-relookup` is the same `nr_ptes` reset on the skeleton of
//! the two repairs (a fresh `pte_offset_map_lock()`, the table mapped to
//! step 4), which this form's handling of `ptl` differs from.

use crate::khugepaged::{abort_unlock, account_cleared, clear_ptes, collapse_pte_mapped_thp, remove_table};
use crate::recheck::{lock_pml_under_ptl, RecheckParams};
use bench_core::kernel::{
    userfaultfd_armed, CollapsePolicy, Cx, Engine, LockId, Pfn, Pmd, PmdRef, ScanResult, Step, Vma, VM_SHARED,
};

/// v2 as posted.
pub struct V2Posted(RecheckParams);

impl CollapsePolicy for V2Posted {
    type Params = RecheckParams;
    const NAME: &'static str = "v2-posted";
    const SUMMARY: &'static str =
        "control, buggy: v2 as posted, trylock + recheck; nr_ptes reset makes a recheck abort skip flush_tlb_mm";

    fn new(params: RecheckParams) -> Self {
        V2Posted(params)
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
/// posted v2 has them, from just after the notifier range starts (`ptl`
/// is step 1's, dropped) to the detached PMD.
fn steps_2_to_4<E: Engine>(
    cx: &mut Cx<'_, E>,
    vma: &Vma,
    haddr: u64,
    hpage: Pfn,
    pmd: PmdRef,
    ptl: LockId,
    recheck_always: bool,
) -> Result<Pmd, ScanResult> {
    let mut pml = None;
    // Some while the table is mapped (ptl is held then): what the abort
    // path's `if (start_pte)` asks. Every abort comes from step 2, with
    // the table mapped.
    let mut start_pte = None;
    let mut nr_ptes = 0;
    let result = 'abort: {
        // Step 1's pointer, taken as it is: what Peter Xu asked about.
        cx.spin_lock(ptl);

        let mut pass = Step::Clear;
        'recheck: loop {
            // The posting's pte_offset_map(). The model has no bare map:
            // pte_offset_map_nolock() maps the same way and also looks up
            // the table's ptl, which is not used (the posting does not
            // compare it with the ptl it holds).
            let Some((table, _)) = cx.pte_offset_map_nolock(pmd, haddr) else {
                // A VM_BUG_ON() in the posting: mmap_lock and the page
                // lock should prevent it. The model gives up cleanly.
                cx.spin_unlock(ptl);
                break 'abort ScanResult::Fail;
            };
            start_pte = Some(table);

            /* step 2: clear page table and adjust rmap */
            cx.step(pass);
            if let Err(result) = clear_ptes(cx, vma, haddr, hpage, table, &mut nr_ptes) {
                break 'abort result;
            }
            // Unmapped at once, ptl still held: from here to the PMD clear
            // only ptl (and, while that is dropped, nothing) holds the table.
            cx.pte_unmap(table);
            start_pte = None;

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
                // ptl was dropped: uffd on a private VMA may have filled
                // the emptied table, so step 2 looks again (or always:
                // see `policies::recheck`).
                if ptl_dropped && (recheck_always || userfaultfd_armed(vma) && vma.flags & VM_SHARED == 0) {
                    pass = Step::Recheck;
                    continue 'recheck;
                }
            }
            break;
        }
        let pml = pml.expect("taken at step 4's lock point");
        return Ok(remove_table(cx, vma, haddr, pmd, None, ptl, pml));
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
