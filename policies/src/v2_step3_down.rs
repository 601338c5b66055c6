//! `v2-step3-down` — v2 repaired by moving step 3 below the lock point.
//!
//! As `v2-posted`, but step 3 (refcount and counter accounting) runs after
//! step 4's trylock or retake and after any recheck pass, so `nr_ptes`
//! counts every entry cleared in every pass and is never reset: the abort
//! path's `if (nr_ptes)` flush and accounting stay right.

use crate::khugepaged::{
    abort, account_cleared, clear_ptes, collapse_pte_mapped_thp, notify_start, step1_check, Locals, Target,
};
use crate::recheck::{lock_pml_or_recheck, remove_table, RecheckParams};
use bench_core::kernel::{CollapsePolicy, Cx, Engine, ScanResult, Step};

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

            /* step 4: remove page table (its lock point first) */
            cx.step(Step::RemoveTable);
            if !lock_pml_or_recheck(cx, t, &mut k, ptl, params) {
                break;
            }
            pass = Step::Recheck;
        }

        /* step 3: set proper refcount and mm_counters — once, for every pass */
        cx.step(Step::Account);
        account_cleared(cx, t.hpage, k.nr_ptes);

        cx.step(Step::RemoveTable);
        return remove_table(cx, t, &mut k, start_pte, ptl);
    };

    // nr_ptes counts every entry cleared in every pass: it alone decides.
    let flush_owed = k.nr_ptes != 0;
    abort(cx, t.hpage, k, flush_owed, result)
}
