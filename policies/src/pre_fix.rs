//! `pre-fix` — the code before v1 (mm-unstable, August 2023). A control:
//! it has the bug the thread was about.
//!
//! `ptl` is taken plainly for step 2 and dropped after it; step 4 takes
//! `pml` then `ptl` with no recheck. Between them only the page lock of
//! `hpage` guards the emptied table, and the page lock does not stop
//! userfaultfd's UFFDIO_COPY on a private VMA: a PTE it inserts there is
//! freed with the table (`table-freed-live`; at exit, "Bad rss-counter
//! state ... type:MM_ANONPAGES val:1").

use crate::khugepaged::{abort_unlock, account_cleared, clear_ptes, collapse_pte_mapped_thp, remove_table};
use bench_core::kernel::{
    CollapsePolicy, Cx, Engine, LockId, NoParams, Pfn, Pmd, PmdRef, ScanResult, Step, Vma, SINGLE_DEPTH_NESTING,
};

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
        collapse_pte_mapped_thp(cx, haddr, install_pmd, steps_2_to_4)
    }
}

/// Steps 2 to 4 and the abort path of `collapse_pte_mapped_thp()` as
/// mm-unstable had them before v1, from just after the notifier range
/// starts (`ptl` is step 1's, dropped) to the detached PMD.
fn steps_2_to_4<E: Engine>(
    cx: &mut Cx<'_, E>,
    vma: &Vma,
    haddr: u64,
    hpage: Pfn,
    pmd: PmdRef,
    mut ptl: LockId,
) -> Result<Pmd, ScanResult> {
    // Some while the table is mapped with ptl held: what the abort path's
    // `if (start_pte)` asks.
    let mut start_pte = None;
    let mut nr_ptes = 0;
    let result = 'abort: {
        let Some((table, table_ptl)) = cx.pte_offset_map_lock(pmd, haddr) else {
            // Not expected, with mmap_lock and the page lock held.
            break 'abort ScanResult::Fail;
        };
        (start_pte, ptl) = (Some(table), table_ptl);

        /* step 2: clear page table and adjust rmap */
        cx.step(Step::Clear);
        if let Err(result) = clear_ptes(cx, vma, haddr, hpage, table, &mut nr_ptes) {
            break 'abort result;
        }
        // THE BUG: ptl is dropped with the table empty. The page lock keeps
        // page-cache faults out until step 4, but not uffd's insert of an
        // anonymous page on a private VMA.
        cx.pte_unmap_unlock(table, ptl);

        /* step 3: set proper refcount and mm_counters. */
        cx.step(Step::Account);
        account_cleared(cx, hpage, nr_ptes);

        /* step 4: remove page table */
        cx.step(Step::RemoveTable);
        // Taken in lock order, pml then ptl, with no look at the table.
        let pml = cx.pmd_lock(pmd);
        if ptl != pml {
            cx.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING);
        }
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
    abort_unlock(cx, start_pte, ptl, None);
    Err(result)
}
