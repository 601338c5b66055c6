//! `v2-flush-bool` — v2 repaired with a separate flag for the owed flush.
//!
//! As `v2-posted`, plus a `bool` set whenever step 2 clears an entry in
//! any pass; the abort path flushes when it is set, and accounts
//! `nr_ptes`, which counts only what step 3 has not yet accounted.

use crate::khugepaged::{
    abort, account_cleared, clear_ptes, collapse_pte_mapped_thp, notify_start, step1_check, Locals, Target,
};
use crate::recheck::{lock_pml_or_recheck, remove_table, RecheckParams};
use bench_core::kernel::{CollapsePolicy, Cx, Engine, ScanResult, Step};

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
        collapse_pte_mapped_thp(cx, haddr, install_pmd, |cx, t| steps_1_to_4(cx, t, &self.0))
    }
}

fn steps_1_to_4<E: Engine>(cx: &mut Cx<'_, E>, t: &Target<'_>, params: &RecheckParams) -> ScanResult {
    let mut k = Locals::default();
    // Some entry was cleared (in any pass): a TLB flush is owed.
    let mut flush_owed = false;
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
            let cleared_before = k.nr_ptes;
            let scan = clear_ptes(cx, t, start_pte, &mut k.nr_ptes);
            flush_owed |= k.nr_ptes != cleared_before;
            if let Err(result) = scan {
                break 'abort result;
            }

            /* step 3: set proper refcount and mm_counters. */
            cx.step(Step::Account);
            account_cleared(cx, t.hpage, k.nr_ptes);
            k.nr_ptes = 0; // accounted; flush_owed remembers the flush

            /* step 4: remove page table */
            cx.step(Step::RemoveTable);
            if !lock_pml_or_recheck(cx, t, &mut k, ptl, params) {
                break;
            }
            pass = Step::Recheck;
        }
        return remove_table(cx, t, &mut k, start_pte, ptl);
    };

    abort(cx, t.hpage, k, flush_owed, result)
}
