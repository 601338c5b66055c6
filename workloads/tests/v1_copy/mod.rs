//! The shipped `v1` (`policies::khugepaged::collapse_pte_mapped_thp` with
//! `policies::v1`'s steps 2 to 4) copied whole, as a plugin author starts
//! a port, so that a test can put one slip into it: the broken copies of
//! `table_free.rs`, `api_contract.rs` and `broken_copies.rs`. With no slip
//! it is `v1`. Every slip is marked `BROKEN`.

use bench_core::kernel::{
    pmd_pgtable, range_in_vma, userfaultfd_armed, userfaultfd_wp, Cx, Engine, LockId, Pfn, Pmd, PmdRef, PteMap,
    ScanResult, Step, Vma, SINGLE_DEPTH_NESTING, VM_SHARED,
};
use bench_core::pte::{HPAGE_PMD_NR, HPAGE_PMD_ORDER, HPAGE_PMD_SIZE, PAGE_SIZE};
use policies::khugepaged::{abort_unlock, account_cleared, remove_table};

/// Which slips the copy makes.
#[derive(Copy, Clone, Default)]
pub struct Slips {
    /// Free the detached table with `pte_free()`, at once, where v6.6
    /// calls `pte_free_defer()`: what `collapse_and_free_pmd()` did
    /// before v6.6, under `mmap_lock` for write.
    pub pte_free: bool,
    /// In the loops of steps 1 and 2, ask `vm_normal_page()` for the
    /// entry's page before testing `pte_present()`.
    pub normal_page_first: bool,
    /// Forget step 2's `pte_unmap()`: return with the table still mapped.
    pub keeps_map: bool,
    /// Skip the abort path's flush when `pml` was taken before step 2.
    pub no_flush_under_early_pml: bool,
    /// In step 2, clear whatever is present without asking again which
    /// page it maps.
    pub step_2_trusts_step_1: bool,
}

/// `collapse_pte_mapped_thp()` as `v1`, with `slips`.
pub fn collapse<E: Engine>(cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool, slips: Slips) -> ScanResult {
    cx.step(Step::Prologue);
    let Some(vma) = cx.vma_lookup(haddr) else {
        return ScanResult::VmaCheck;
    };
    if !range_in_vma(vma, haddr, haddr + HPAGE_PMD_SIZE) {
        return ScanResult::VmaCheck;
    }
    if cx.find_pmd_or_thp_or_none(haddr).0 == ScanResult::PmdMapped {
        return ScanResult::PmdMapped;
    }
    if userfaultfd_wp(vma) {
        return ScanResult::PteUffdWp;
    }
    let Some(hpage) = cx.find_lock_page(vma, haddr) else {
        return ScanResult::PageNull;
    };
    let result = 'drop_hpage: {
        if !cx.page_head(hpage) {
            break 'drop_hpage ScanResult::Fail;
        }
        if cx.compound_order(hpage) != HPAGE_PMD_ORDER {
            break 'drop_hpage ScanResult::PageCompound;
        }
        let pmd = match cx.find_pmd_or_thp_or_none(haddr) {
            (ScanResult::Succeed, Some(pmd)) => pmd,
            (ScanResult::PmdNone, Some(pmd)) => {
                break 'drop_hpage maybe_install_pmd(cx, vma, haddr, pmd, hpage, install_pmd)
            }
            (result, _) => break 'drop_hpage result,
        };
        /* step 1 */
        cx.step(Step::Check);
        let Some((start_pte, ptl)) = cx.pte_offset_map_lock(pmd, haddr) else {
            break 'drop_hpage ScanResult::Fail;
        };
        for i in 0..HPAGE_PMD_NR {
            if let Err(result) = check_pte(cx, vma, haddr, hpage, start_pte, i, slips) {
                cx.step(Step::Abort);
                cx.pte_unmap_unlock(start_pte, ptl);
                break 'drop_hpage result;
            }
        }
        cx.pte_unmap_unlock(start_pte, ptl);
        cx.step(Step::Notify);
        let range = cx.mmu_notifier_invalidate_range_start(haddr, haddr + HPAGE_PMD_SIZE);
        let removed = steps_2_to_4(cx, vma, haddr, hpage, pmd, ptl, slips);
        cx.mmu_notifier_invalidate_range_end(range);
        let pgt_pmd = match removed {
            Ok(pgt_pmd) => pgt_pmd,
            Err(result) => break 'drop_hpage result,
        };
        cx.mm_dec_nr_ptes();
        if slips.pte_free {
            // BROKEN: with mmap_lock for read only, a lockless walker may
            // still be reading the table.
            cx.pte_free(pmd_pgtable(pgt_pmd));
        } else {
            cx.pte_free_defer(pmd_pgtable(pgt_pmd));
        }
        maybe_install_pmd(cx, vma, haddr, pmd, hpage, install_pmd)
    };
    cx.unlock_page(hpage);
    cx.put_page(hpage);
    result
}

fn maybe_install_pmd<E: Engine>(
    cx: &mut Cx<'_, E>,
    vma: &Vma,
    haddr: u64,
    pmd: PmdRef,
    hpage: Pfn,
    install_pmd: bool,
) -> ScanResult {
    cx.step(Step::Install);
    if install_pmd {
        cx.set_huge_pmd(vma, haddr, pmd, hpage)
    } else {
        ScanResult::Succeed
    }
}

/// The test of entry `i` that steps 1 and 2 share: none is fine
/// (`Ok(false)`), else it must be present and map `hpage + i`
/// (`Ok(true)`).
fn check_pte<E: Engine>(
    cx: &mut Cx<'_, E>,
    vma: &Vma,
    haddr: u64,
    hpage: Pfn,
    start_pte: PteMap,
    i: usize,
    slips: Slips,
) -> Result<bool, ScanResult> {
    let addr = haddr + i as u64 * PAGE_SIZE;
    let ptent = cx.ptep_get(start_pte.at(i));
    if ptent.is_none() {
        return Ok(false);
    }
    // BROKEN (normal_page_first): the page is asked for whatever the
    // entry is; the result still comes out right.
    if slips.normal_page_first && cx.vm_normal_page(vma, addr, ptent) != Some(hpage.nth(i)) {
        return Err(if ptent.is_present() { ScanResult::Fail } else { ScanResult::PteNonPresent });
    }
    if !ptent.is_present() {
        return Err(ScanResult::PteNonPresent);
    }
    if cx.vm_normal_page(vma, addr, ptent) != Some(hpage.nth(i)) {
        return Err(ScanResult::Fail);
    }
    Ok(true)
}

/// `policies::v1`'s steps 2 to 4 and abort path, with `slips`.
fn steps_2_to_4<E: Engine>(
    cx: &mut Cx<'_, E>,
    vma: &Vma,
    haddr: u64,
    hpage: Pfn,
    pmd: PmdRef,
    mut ptl: LockId,
    slips: Slips,
) -> Result<Pmd, ScanResult> {
    let mut pml = None;
    let mut start_pte = None;
    let mut nr_ptes = 0;
    let result = 'abort: {
        if userfaultfd_armed(vma) && vma.flags & VM_SHARED == 0 {
            pml = Some(cx.pmd_lock(pmd));
        }
        let Some((table, table_ptl)) = cx.pte_offset_map_nolock(pmd, haddr) else {
            break 'abort ScanResult::Fail;
        };
        (start_pte, ptl) = (Some(table), table_ptl);
        match pml {
            None => cx.spin_lock(ptl),
            Some(pml) if pml != ptl => cx.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING),
            Some(_) => {}
        }
        /* step 2 */
        cx.step(Step::Clear);
        for i in 0..HPAGE_PMD_NR {
            let addr = haddr + i as u64 * PAGE_SIZE;
            let checked = if slips.step_2_trusts_step_1 {
                // BROKEN (step_2_trusts_step_1): "step 1 checked every
                // present entry is hpage + i" -- but ptl was dropped since,
                // and a COW or UFFDIO_COPY may have put an anonymous page
                // here.
                let ptent = cx.ptep_get(table.at(i));
                match (ptent.is_none(), ptent.is_present()) {
                    (true, _) => Ok(false),
                    (false, false) => Err(ScanResult::PteNonPresent),
                    (false, true) => Ok(true),
                }
            } else {
                check_pte(cx, vma, haddr, hpage, table, i, slips)
            };
            match checked {
                Ok(true) => {}
                Ok(false) => continue,
                Err(result) => break 'abort result,
            }
            cx.ptep_clear(addr, table.at(i));
            cx.page_remove_rmap(hpage.nth(i), vma, false);
            nr_ptes += 1;
        }
        // BROKEN (keeps_map): the table stays mapped, under RCU, past return.
        if !slips.keeps_map {
            cx.pte_unmap(table);
        }
        if pml.is_none() {
            cx.spin_unlock(ptl);
        }
        /* step 3 */
        cx.step(Step::Account);
        account_cleared(cx, hpage, nr_ptes);
        /* step 4 */
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
    cx.step(Step::Abort);
    if nr_ptes != 0 {
        // BROKEN (no_flush_under_early_pml): "with pml held since before
        // step 2 nobody can have walked to these entries" -- but the TLBs
        // filled before step 1 still hold them.
        if !(slips.no_flush_under_early_pml && pml.is_some()) {
            cx.flush_tlb_mm();
        }
        account_cleared(cx, hpage, nr_ptes);
    }
    abort_unlock(cx, start_pte, ptl, pml);
    Err(result)
}
