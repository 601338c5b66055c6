//! `v2-posted` — v2 as posted, then withdrawn. A control: it has the bug
//! Hugh Dickins found by rereading it overnight.
//!
//! No early `pml`: `ptl` is held from step 2 through step 3, then `pml`
//! is trylocked. If that fails, `ptl` is dropped, `pml` taken, `ptl`
//! retaken, and (uffd-armed private) step 2 runs again. Step 3 resets
//! `nr_ptes` so a recheck pass does not account twice — so when the
//! recheck pass aborts (on the PTE uffd inserted meanwhile), the abort
//! path sees `nr_ptes == 0` and skips `flush_tlb_mm()`, although the first
//! pass cleared entries: other CPUs keep translations of subpages whose
//! references were dropped (`stale-tlb`).

use crate::khugepaged::{
    abort, account_cleared, clear_ptes, collapse_pte_mapped_thp, notify_start, step1_check, Locals, Target,
};
use crate::recheck::{lock_pml_or_recheck, remove_table, RecheckParams};
use bench_core::kernel::{CollapsePolicy, Cx, Engine, ScanResult, Step};

/// v2 as posted.
pub struct V2Posted(RecheckParams);

impl CollapsePolicy for V2Posted {
    type Params = RecheckParams;
    const NAME: &'static str = "v2-posted";
    const SUMMARY: &'static str =
        "control, buggy: trylock + recheck; nr_ptes reset makes a recheck abort skip flush_tlb_mm";

    fn new(params: RecheckParams) -> Self {
        V2Posted(params)
    }

    fn params(&self) -> &RecheckParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult {
        collapse_pte_mapped_thp(cx, haddr, install_pmd, |cx, t| steps_1_to_4(cx, t, &self.0))
    }
}

fn steps_1_to_4<E: Engine>(cx: &mut Cx<'_, E>, t: &Target<'_>, params: &RecheckParams) -> ScanResult {
    let mut k = Locals::default();
    let result = 'abort: {
        /* step 1: check all mapped PTEs are to the right huge page */
        if let Err(result) = step1_check(cx, t, &mut k) {
            break 'abort result;
        }
        notify_start(cx, t, &mut k);

        let Some((start_pte, ptl)) = cx.pte_offset_map_lock(t.pmd, t.haddr) else {
            /* mmap_lock + page lock should prevent this */
            break 'abort ScanResult::Fail;
        };
        (k.start_pte, k.ptl) = (Some(start_pte), Some(ptl));

        let mut pass = Step::Clear;
        loop {
            /* step 2: clear page table and adjust rmap */
            cx.step(pass);
            if let Err(result) = clear_ptes(cx, t, start_pte, &mut k.nr_ptes) {
                break 'abort result;
            }

            /* step 3: set proper refcount and mm_counters. */
            cx.step(Step::Account);
            account_cleared(cx, t.hpage, k.nr_ptes);
            // So that a recheck pass does not account twice. THE BUG: the
            // abort path now cannot tell that entries were cleared.
            k.nr_ptes = 0;

            /* step 4: remove page table */
            cx.step(Step::RemoveTable);
            if !lock_pml_or_recheck(cx, t, &mut k, ptl, params) {
                break;
            }
            pass = Step::Recheck;
        }
        return remove_table(cx, t, &mut k, start_pte, ptl);
    };

    // As posted: nr_ptes was reset by step 3, so after a recheck pass this
    // is false even though the first pass cleared entries.
    let flush_owed = k.nr_ptes != 0;
    abort(cx, t.hpage, k, flush_owed, result)
}
