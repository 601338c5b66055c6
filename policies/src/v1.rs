//! `v1` — the merged fix (v6.6): take `pml` early for a uffd-armed private VMA.
//!
//! For such a VMA, `pml` is taken before step 2 and held, with `ptl`
//! nested inside, until the table is removed: `ptl` is never dropped
//! between clearing the table and freeing it, so userfaultfd cannot insert
//! into it. Every other VMA keeps the short `pml` hold of step 4.

use crate::khugepaged::{abort_unlock, account_cleared, clear_ptes, collapse_pte_mapped_thp, remove_table};
use bench_core::kernel::{
    userfaultfd_armed, CollapsePolicy, Cx, Engine, LockId, NoParams, Pfn, Pmd, PmdRef, ScanResult, Step, Vma,
    SINGLE_DEPTH_NESTING, VM_SHARED,
};

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
        collapse_pte_mapped_thp(cx, haddr, install_pmd, steps_2_to_4)
    }
}

/// Steps 2 to 4 and the abort path of `collapse_pte_mapped_thp()` in
/// v6.6, from just after the notifier range starts (`ptl` is step 1's,
/// dropped) to the detached PMD.
fn steps_2_to_4<E: Engine>(
    cx: &mut Cx<'_, E>,
    vma: &Vma,
    haddr: u64,
    hpage: Pfn,
    pmd: PmdRef,
    mut ptl: LockId,
) -> Result<Pmd, ScanResult> {
    let mut pml = None;
    // Some while the table is mapped with ptl held: what the abort path's
    // `if (start_pte)` asks.
    let mut start_pte = None;
    let mut nr_ptes = 0;
    let result = 'abort: {
        // The page lock does not keep a uffd-armed private VMA's table
        // empty: UFFDIO_COPY there installs an anonymous page under ptl
        // alone. So from step 2 until the PMD is cleared, ptl must stay
        // held; ptl nests inside pml, and pml cannot be waited for under
        // ptl, so pml is taken first, now. Every other VMA takes pml only
        // at step 4: it covers the PMDs of a whole 1 GiB (or the whole mm),
        // whose faults, splits and zaps wait for it.
        if userfaultfd_armed(vma) && vma.flags & VM_SHARED == 0 {
            pml = Some(cx.pmd_lock(pmd));
        }

        let Some((table, table_ptl)) = cx.pte_offset_map_nolock(pmd, haddr) else {
            // Not expected, with mmap_lock and the page lock held.
            break 'abort ScanResult::Fail;
        };
        (start_pte, ptl) = (Some(table), table_ptl);
        match pml {
            None => cx.spin_lock(ptl),
            Some(pml) if pml != ptl => cx.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING),
            Some(_) => {} // ptl is pml (locks not split): already held
        }

        /* step 2: clear page table and adjust rmap */
        cx.step(Step::Clear);
        if let Err(result) = clear_ptes(cx, vma, haddr, hpage, table, &mut nr_ptes) {
            break 'abort result;
        }
        cx.pte_unmap(table);
        if pml.is_none() {
            // The short pml hold: from here to step 4 only the page lock
            // guards the emptied table, enough where uffd cannot insert.
            cx.spin_unlock(ptl);
        }

        /* step 3: set proper refcount and mm_counters. */
        cx.step(Step::Account);
        account_cleared(cx, hpage, nr_ptes);

        /* step 4: remove empty page table */
        cx.step(Step::RemoveTable);
        let pml = match pml {
            Some(pml) => pml,
            None => {
                let pml = cx.pmd_lock(pmd);
                if ptl != pml {
                    cx.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING);
                }
                pml
            }
        };
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
    abort_unlock(cx, start_pte, ptl, pml);
    Err(result)
}
