//! `v1` — the merged fix (v6.6): take `pml` early for a uffd-armed private VMA.
//!
//! For such a VMA, `pml` is taken before step 2 and held, with `ptl`
//! nested inside, until the table is removed: `ptl` is never dropped
//! between clearing the table and freeing it, so userfaultfd cannot insert
//! into it. Every other VMA keeps the short `pml` hold of step 4.

use crate::khugepaged::{
    abort, account_cleared, clear_ptes, collapse_pte_mapped_thp, free_table_and_install, notify_start, step1_check,
    uffd_private, Locals, Target,
};
use bench_core::kernel::{CollapsePolicy, Cx, Engine, NoParams, ScanResult, Step, SINGLE_DEPTH_NESTING};

/// The merged form.
pub struct V1(NoParams);

impl CollapsePolicy for V1 {
    type Params = NoParams;
    const NAME: &'static str = "v1";
    const SUMMARY: &'static str = "merged fix: pmd_lock before step 2 for uffd-armed private VMAs, held to step 4";

    fn new(params: NoParams) -> Self {
        V1(params)
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

        /*
         * pmd_lock covers a wider range than ptl, and (if split from mm's
         * page_table_lock) ptl nests inside pml. The less time we hold pml,
         * the better; but userfaultfd's mfill_atomic_pte() on a private VMA
         * inserts a valid as-if-COWed PTE without even looking up page cache.
         * So page lock of hpage does not protect from it, so we must not drop
         * ptl before pgt_pmd is removed, so uffd private needs pml taken now.
         */
        if uffd_private(t.vma) {
            k.pml = Some(cx.pmd_lock(t.pmd));
        }

        let Some((start_pte, ptl)) = cx.pte_offset_map_nolock(t.pmd, t.haddr) else {
            /* mmap_lock + page lock should prevent this */
            break 'abort ScanResult::Fail;
        };
        k.ptl = Some(ptl);
        match k.pml {
            None => cx.spin_lock(ptl),
            Some(pml) if pml != ptl => cx.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING),
            Some(_) => {} // ptl is pml (locks not split): already held
        }
        k.start_pte = Some(start_pte);

        /* step 2: clear page table and adjust rmap */
        cx.step(Step::Clear);
        if let Err(result) = clear_ptes(cx, t, start_pte, &mut k.nr_ptes) {
            break 'abort result;
        }
        cx.pte_unmap(start_pte);
        if k.pml.is_none() {
            // Short pml hold: from here only the page lock guards the
            // emptied table, which is enough when uffd cannot insert.
            cx.spin_unlock(ptl);
        }

        /* step 3: set proper refcount and mm_counters. */
        cx.step(Step::Account);
        account_cleared(cx, t.hpage, k.nr_ptes);

        /* step 4: remove page table */
        cx.step(Step::RemoveTable);
        let pml = match k.pml {
            Some(pml) => pml,
            None => {
                let pml = cx.pmd_lock(t.pmd);
                if ptl != pml {
                    cx.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING);
                }
                pml
            }
        };
        let pgt_pmd = cx.pmdp_collapse_flush(t.vma, t.haddr, t.pmd);
        if ptl != pml {
            cx.spin_unlock(ptl);
        }
        cx.spin_unlock(pml);
        let range = k.range.take().expect("notifier range started above");
        return free_table_and_install(cx, range, pgt_pmd, t);
    };

    // Entries cleared by step 2 were not flushed: other CPUs may cache them.
    let flush_owed = k.nr_ptes != 0;
    abort(cx, t.hpage, k, flush_owed, result)
}
