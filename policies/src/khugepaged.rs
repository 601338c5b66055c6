//! What every shipped policy shares with `collapse_pte_mapped_thp()` in
//! mm/khugepaged.c (v6.6): the function around the part the fixes changed,
//! and the loops of steps 1 and 2 and the accounting of step 3.
//!
//! A policy writes steps 2 to 4 and the abort path: which of `pml` and
//! `ptl` it holds across which step, any trylock and recheck, and what the
//! abort path flushes. [`collapse_pte_mapped_thp`] runs it with everything
//! before (the early exits, finding and locking `hpage`, step 1, starting
//! the notifier range) and after (ending the range, freeing the table,
//! step 5, releasing `hpage`), so that each policy file holds only what
//! the thread argued about.
//!
//! Where the model departs from v6.6 here, the comment says so at the
//! place.

use bench_core::kernel::{
    pmd_pgtable, range_in_vma, userfaultfd_wp, Cx, Engine, LockId, Pfn, Pmd, PmdRef, PteMap, ScanResult, Step, Vma,
};
use bench_core::pte::{HPAGE_PMD_NR, HPAGE_PMD_ORDER, HPAGE_PMD_SIZE, PAGE_SIZE};

/// `collapse_pte_mapped_thp(mm, haddr, install_pmd)` with a policy's
/// steps 2 to 4 in the middle.
///
/// `steps_2_to_4(cx, vma, haddr, hpage, pmd, ptl)` starts where v6.6's
/// `notified = true` leaves off: `hpage` locked and referenced, step 1
/// passed with `ptl` (the table's lock, as step 1 looked it up) dropped
/// again, the notifier range started. It returns the PMD value step 4
/// cleared, with no spinlock held, or the result of its abort path. Either
/// way the notifier range is ended here, which is where the kernel ends it
/// on both paths; then, after a success, the table is freed and step 5
/// runs. Every path ends by unlocking and releasing `hpage`.
pub fn collapse_pte_mapped_thp<'a, E: Engine>(
    cx: &mut Cx<'a, E>,
    haddr: u64,
    install_pmd: bool,
    steps_2_to_4: impl FnOnce(&mut Cx<'a, E>, &'a Vma, u64, Pfn, PmdRef, LockId) -> Result<Pmd, ScanResult>,
) -> ScanResult {
    cx.step(Step::Prologue);
    // Early exits, holding only mmap_lock (implicit in the model). The
    // model's VMAs are all shmem or file VMAs that THP may map, so v6.6's
    // `!vma->vm_file` and hugepage_vma_check() tests have nothing to
    // reject and are left out.
    let Some(vma) = cx.vma_lookup(haddr) else {
        return ScanResult::VmaCheck;
    };
    if !range_in_vma(vma, haddr, haddr + HPAGE_PMD_SIZE) {
        return ScanResult::VmaCheck;
    }
    // Already mapped by a PMD: nothing to do, and no need to lock the page.
    if cx.find_pmd_or_thp_or_none(haddr).0 == ScanResult::PmdMapped {
        return ScanResult::PmdMapped;
    }
    // A uffd-wp VMA keeps its PTE table: wp markers live in it.
    if userfaultfd_wp(vma) {
        return ScanResult::PteUffdWp;
    }

    // The page lock keeps page-cache faults from mapping more subpages and
    // keeps other collapses and table retraction away. It does not stop
    // userfaultfd, COW or swap-out: see step 2.
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
            // The table is already gone (retracted): only step 5 is left.
            (ScanResult::PmdNone, Some(pmd)) => {
                break 'drop_hpage maybe_install_pmd(cx, vma, haddr, pmd, hpage, install_pmd)
            }
            (result, _) => break 'drop_hpage result,
        };

        let Some((start_pte, ptl)) = cx.pte_offset_map_lock(pmd, haddr) else {
            // Not expected, with mmap_lock and the page lock held; v6.6
            // gives up here without going through the abort path.
            break 'drop_hpage ScanResult::Fail;
        };

        /* step 1: check all mapped PTEs are to the right huge page */
        // Marked once ptl is held, where the kernel's comment stands (the
        // kernel-C cross-check compares the step marks too).
        cx.step(Step::Check);
        if let Err(result) = check_ptes(cx, vma, haddr, hpage, start_pte) {
            // The abort path, at a point where nothing is cleared, no pml
            // is held and no notifier range started: all it does is unlock.
            cx.step(Step::Abort);
            cx.pte_unmap_unlock(start_pte, ptl);
            break 'drop_hpage result;
        }
        // ptl is dropped because the notifier may sleep.
        cx.pte_unmap_unlock(start_pte, ptl);
        cx.step(Step::Notify);
        // The model's range_start takes the bounds v6.6 passes to
        // mmu_notifier_range_init() first.
        let range = cx.mmu_notifier_invalidate_range_start(haddr, haddr + HPAGE_PMD_SIZE);

        let removed = steps_2_to_4(cx, vma, haddr, hpage, pmd, ptl);
        cx.mmu_notifier_invalidate_range_end(range);
        let pgt_pmd = match removed {
            Ok(pgt_pmd) => pgt_pmd,
            Err(result) => break 'drop_hpage result,
        };
        cx.mm_dec_nr_ptes();
        // Freed after a grace period: GUP-fast and the hardware walker may
        // still be reading the detached table. v6.6 first calls
        // page_table_check_pte_clear_range(); the model folds that into
        // pte_free_defer(), and makes it stronger: a table freed with an
        // entry that is not none is reported (table-freed-live), where the
        // kernel's check only uncounts the pages it finds.
        cx.pte_free_defer(pmd_pgtable(pgt_pmd));
        maybe_install_pmd(cx, vma, haddr, pmd, hpage, install_pmd)
    };
    cx.unlock_page(hpage);
    cx.put_page(hpage);
    result
}

/// `maybe_install_pmd:`, step 5: MADV_COLLAPSE maps `hpage` by PMD;
/// khugepaged leaves that to the next fault and reports success.
pub fn maybe_install_pmd<E: Engine>(
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

/// Step 1's loop, under `ptl`: every entry that is not none must be
/// present and map exactly `hpage + i`. Nothing is changed.
fn check_ptes<E: Engine>(
    cx: &mut Cx<'_, E>,
    vma: &Vma,
    haddr: u64,
    hpage: Pfn,
    start_pte: PteMap,
) -> Result<(), ScanResult> {
    for i in 0..HPAGE_PMD_NR {
        let addr = haddr + i as u64 * PAGE_SIZE;
        let ptent = cx.ptep_get(start_pte.at(i));
        if ptent.is_none() {
            continue;
        }
        // Swapped out or migrating: not a subpage mapping at all.
        if !ptent.is_present() {
            return Err(ScanResult::PteNonPresent);
        }
        // Anything else (a COWed copy, a uprobe's page) is some other page.
        // The model has no zone-device pages, so v6.6's
        // is_zone_device_page() warning has nothing to catch.
        if cx.vm_normal_page(vma, addr, ptent) != Some(hpage.nth(i)) {
            return Err(ScanResult::Fail);
        }
    }
    Ok(())
}

/// Step 2's loop, under `ptl`: check each entry again, then clear it, drop
/// its rmap and count it in `nr_ptes`. Stops with the abort result at the
/// first entry that is no longer `hpage + i`; what it cleared before that
/// stays cleared and counted, for the abort path to flush and account.
pub fn clear_ptes<E: Engine>(
    cx: &mut Cx<'_, E>,
    vma: &Vma,
    haddr: u64,
    hpage: Pfn,
    start_pte: PteMap,
    nr_ptes: &mut i32,
) -> Result<(), ScanResult> {
    for i in 0..HPAGE_PMD_NR {
        let addr = haddr + i as u64 * PAGE_SIZE;
        let pte = start_pte.at(i);
        let ptent = cx.ptep_get(pte);
        if ptent.is_none() {
            continue;
        }
        // ptl was dropped after step 1 for the notifier. The page lock kept
        // page-cache faults out, but since then a write fault may have
        // COWed an entry into an anonymous copy, such a copy may have been
        // swapped out or migrated, and on a private VMA uffd may have put
        // an anonymous page into a none slot. Each of those aborts here; an
        // entry that appears after this pass went by is what the policies'
        // locking has to keep out (or a recheck pass find).
        if !ptent.is_present() {
            return Err(ScanResult::PteNonPresent);
        }
        if cx.vm_normal_page(vma, addr, ptent) != Some(hpage.nth(i)) {
            return Err(ScanResult::Fail);
        }
        // Cleared rather than left for the PMD clear, so that a racing
        // truncation cannot remove the mapping a second time. No TLB flush
        // per entry: step 4's pmdp_collapse_flush() pays it, or the abort
        // path's flush_tlb_mm(). The page is shmem (already dirty) or a
        // read-only file page, so the entry's dirty bit is not needed.
        cx.ptep_clear(addr, pte);
        cx.page_remove_rmap(hpage.nth(i), vma, false);
        *nr_ptes += 1;
    }
    Ok(())
}

/// Step 3, and the abort path's copy of it: the `nr_ptes` cleared entries
/// no longer hold references on `hpage` nor count in the mm's file (or
/// shmem) counter.
pub fn account_cleared<E: Engine>(cx: &mut Cx<'_, E>, hpage: Pfn, nr_ptes: i32) {
    if nr_ptes != 0 {
        cx.page_ref_sub(hpage, nr_ptes);
        let counter = cx.mm_counter_file(hpage);
        cx.add_mm_counter(counter, -(nr_ptes as i64));
    }
}

/// Step 4 once `pml`, and `ptl` where it is a lock of its own, are held:
/// clear the PMD and flush its range (`pmdp_collapse_flush()`), unmap the
/// table if `table` is still mapped (the v2 forms keep it mapped to
/// here; v6.6 unmaps it after step 2), and drop both locks. Returns the
/// detached PMD, for `pte_free_defer()`.
///
/// v6.6 and the v2 posting call `pmdp_get_lockless_sync()` after the
/// clear, for architectures that read a PMD in two halves without a
/// lock; the model reads a PMD in one load, so there is nothing to wait
/// for, and the call is left out.
pub fn remove_table<E: Engine>(
    cx: &mut Cx<'_, E>,
    vma: &Vma,
    haddr: u64,
    pmd: PmdRef,
    table: Option<PteMap<'_>>,
    ptl: LockId,
    pml: LockId,
) -> Pmd {
    let pgt_pmd = cx.pmdp_collapse_flush(vma, haddr, pmd);
    if let Some(table) = table {
        cx.pte_unmap(table);
    }
    if ptl != pml {
        cx.spin_unlock(ptl);
    }
    cx.spin_unlock(pml);
    pgt_pmd
}

/// The abort path's unlocks, after the policy's own flush decision:
/// `if (start_pte) pte_unmap_unlock(start_pte, ptl)`, then `pml` if it is
/// held and is not `ptl`. The kernel's `if (notified)
/// mmu_notifier_invalidate_range_end()` that follows is done by
/// [`collapse_pte_mapped_thp`], on both paths.
pub fn abort_unlock<E: Engine>(cx: &mut Cx<'_, E>, start_pte: Option<PteMap<'_>>, ptl: LockId, pml: Option<LockId>) {
    if let Some(start_pte) = start_pte {
        cx.pte_unmap_unlock(start_pte, ptl);
    }
    if let Some(pml) = pml.filter(|&pml| pml != ptl) {
        cx.spin_unlock(pml);
    }
}
