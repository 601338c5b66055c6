//! `pre-fix` — the code before v1 (mm-unstable, August 2023). A control:
//! it has the bug the thread was about.
//!
//! `ptl` is taken plainly for step 2 and dropped after it; step 4 takes
//! `pml` then `ptl` with no recheck. Between them only the page lock of
//! `hpage` guards the emptied table, and the page lock does not stop
//! userfaultfd's UFFDIO_COPY on a private VMA: a PTE it inserts there is
//! freed with the table (`table-freed-live`; at exit, "Bad rss-counter
//! state ... type:MM_ANONPAGES val:1").

use crate::khugepaged::{
    abort, account_cleared, clear_ptes, collapse_pte_mapped_thp, free_table_and_install, notify_start, step1_check,
    Locals, Target,
};
use bench_core::kernel::{CollapsePolicy, Cx, Engine, NoParams, ScanResult, Step, SINGLE_DEPTH_NESTING};

/// The unfixed form.
pub struct PreFix(NoParams);

impl CollapsePolicy for PreFix {
    type Params = NoParams;
    const NAME: &'static str = "pre-fix";
    const SUMMARY: &'static str =
        "control, buggy: ptl dropped between step 2 and step 4, uffd can insert into the emptied table";

    fn new(params: NoParams) -> Self {
        PreFix(params)
    }

    fn params(&self) -> &NoParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult {
        collapse_pte_mapped_thp(cx, haddr, install_pmd, steps_1_to_4)
    }
}

fn steps_1_to_4<E: Engine>(cx: &mut Cx<'_, E>, t: &Target<'_>) -> ScanResult {
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

        /* step 2: clear page table and adjust rmap */
        cx.step(Step::Clear);
        if let Err(result) = clear_ptes(cx, t, start_pte, &mut k.nr_ptes) {
            break 'abort result;
        }
        // THE BUG: ptl is dropped with the table empty; the page lock keeps
        // page-cache faults out, but not uffd's insert of an anon page.
        cx.pte_unmap_unlock(start_pte, ptl);
        k.start_pte = None;

        /* step 3: set proper refcount and mm_counters. */
        cx.step(Step::Account);
        account_cleared(cx, t.hpage, k.nr_ptes);

        /* step 4: remove page table */
        cx.step(Step::RemoveTable);
        let pml = cx.pmd_lock(t.pmd);
        if ptl != pml {
            cx.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING);
        }
        let pgt_pmd = cx.pmdp_collapse_flush(t.vma, t.haddr, t.pmd);
        if ptl != pml {
            cx.spin_unlock(ptl);
        }
        cx.spin_unlock(pml);
        let range = k.range.take().expect("notifier range started above");
        return free_table_and_install(cx, range, pgt_pmd, t);
    };

    let flush_owed = k.nr_ptes != 0;
    abort(cx, t.hpage, k, flush_owed, result)
}
