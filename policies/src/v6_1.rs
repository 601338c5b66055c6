//! `v6.1` — the function before Hugh Dickins' 2023 series (v6.1, as
//! Debian's linux-source-6.1 has it): the collapse runs with `mmap_lock`
//! held for write and the file's `i_mmap_rwsem` for write, and frees the
//! table at once.
//!
//! With `mmap_lock` held for write no fault, uffd ioctl or madvise of the
//! process can run; with `i_mmap_rwsem` held for write no rmap walker of
//! the file's pages (reclaim, migration, truncation, another collapse's
//! table retraction) can reach the table. What is left are the walkers
//! that take none of those locks: GUP-fast and the hardware walker. So
//! step 1 checks the entries under `ptl` (which v6.1 itself calls
//! unnecessary, with every other writer excluded), step 2 only drops
//! each entry's rmap, leaving the entries in the table, and step 4
//! (`collapse_and_free_pmd()`) clears the PMD, flushes the range, waits
//! with an IPI for every CPU that may be inside a GUP-fast walk
//! (`tlb_remove_table_sync_one()`, added in late 2022 after such a walk
//! was found reading a freed table) and frees the table immediately
//! (`pte_free()`), entries and all. Correct, at the price of every fault
//! of the process waiting for the collapse: the latency v6.6 removed.
//!
//! Where the model departs from v6.1, the comment says so at the place.

use crate::khugepaged::{account_cleared, maybe_install_pmd};
use bench_core::kernel::{
    pmd_pgtable, range_in_vma, userfaultfd_wp, CollapsePolicy, Cx, Engine, MmapLock, NoParams, Pfn, PmdRef, PteMap,
    ScanResult, Step, Vma,
};
use bench_core::pte::{HPAGE_PMD_NR, HPAGE_PMD_ORDER, HPAGE_PMD_SIZE, PAGE_SIZE};

/// The v6.1 form.
pub struct V6_1(NoParams);

impl CollapsePolicy for V6_1 {
    type Params = NoParams;
    const NAME: &'static str = "v6.1";
    const SUMMARY: &'static str =
        "before v6.6: mmap_lock and i_mmap_rwsem held for write, entries left in place, table freed at once after an IPI";
    /// v6.1's callers (khugepaged's `khugepaged_collapse_pte_mapped_thps()`
    /// and `madvise_collapse()`) take `mmap_lock` for write.
    const MMAP_LOCK: MmapLock = MmapLock::Write;

    fn new(params: NoParams) -> Self {
        V6_1(params)
    }

    fn params(&self) -> &NoParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult {
        collapse_pte_mapped_thp(cx, haddr, install_pmd)
    }
}

/// `collapse_pte_mapped_thp(mm, addr, install_pmd)` in v6.1.
fn collapse_pte_mapped_thp<E: Engine>(cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult {
    cx.step(Step::Prologue);
    cx.mmap_assert_write_locked();

    // The PMD is looked at once, before anything else, and that answer
    // is used below: nothing can change it while mmap_lock is held for
    // write (v6.1's table retraction takes mmap_lock for write too, by
    // trylock).
    let (pmd_result, pmd) = cx.find_pmd_or_thp_or_none(haddr);
    if pmd_result == ScanResult::PmdMapped {
        return ScanResult::PmdMapped;
    }
    // The model's VMAs are all shmem or file VMAs that THP may map, so
    // `!vma->vm_file` and hugepage_vma_check() have nothing to reject.
    let Some(vma) = cx.vma_lookup(haddr) else {
        return ScanResult::VmaCheck;
    };
    if !range_in_vma(vma, haddr, haddr + HPAGE_PMD_SIZE) {
        return ScanResult::VmaCheck;
    }
    // A uffd-wp VMA keeps its PTE table: wp markers live in it.
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
        let pmd = match (pmd_result, pmd) {
            (ScanResult::Succeed, Some(pmd)) => pmd,
            // The table is already gone (retracted): only step 5 is left.
            (ScanResult::PmdNone, Some(pmd)) => {
                break 'drop_hpage maybe_install_pmd(cx, vma, haddr, pmd, hpage, install_pmd)
            }
            (result, _) => break 'drop_hpage result,
        };

        // With the mapping's rmap lock held for write as well as mmap_lock,
        // only GUP-fast and the hardware walker can still reach this
        // table: see step 4.
        cx.i_mmap_lock_write();
        let removed = steps_1_to_4(cx, vma, haddr, hpage, pmd);
        // On both paths, before step 5 (and after the anon_vma unlock that
        // the model leaves out: see step 4).
        cx.i_mmap_unlock_write();
        match removed {
            Ok(()) => maybe_install_pmd(cx, vma, haddr, pmd, hpage, install_pmd),
            Err(result) => result,
        }
    };
    cx.unlock_page(hpage);
    cx.put_page(hpage);
    result
}

/// Steps 1 to 4 with `i_mmap_rwsem` held for write, and the abort path up
/// to (not including) its `i_mmap_unlock_write()`, which the caller does
/// on both paths.
fn steps_1_to_4<E: Engine>(
    cx: &mut Cx<'_, E>,
    vma: &Vma,
    haddr: u64,
    hpage: Pfn,
    pmd: PmdRef,
) -> Result<(), ScanResult> {
    // v6.1 says itself that this lock should be unnecessary: every other
    // path that changes entries of this table is excluded by the two
    // write locks. v6.1's pte_offset_map_lock() cannot fail: every table
    // remover of v6.1 took mmap_lock (retract_page_tables() for write, by
    // trylock). Only a later kernel's remover, the `retract` preset's
    // (v6.6 on: no mmap_lock), can empty the PMD between the look at it
    // above and here. DEPARTURE: v6.1 would then map a table that is not
    // there (the kernel's own 6.1 C, compiled by the kernel-c front end,
    // dereferences NULL and is reported as the oops that is); the port
    // gives up with SCAN_FAIL, so that the 6.1 form can be set beside the
    // others on that preset.
    let Some((start_pte, ptl)) = cx.pte_offset_map_lock(pmd, haddr) else {
        return Err(ScanResult::Fail);
    };

    /* step 1: check all mapped PTEs are to the right huge page */
    cx.step(Step::Check);
    let count = match check_and_count(cx, vma, haddr, hpage, start_pte) {
        Ok(count) => count,
        Err(result) => {
            /* abort: */
            cx.step(Step::Abort);
            cx.pte_unmap_unlock(start_pte, ptl);
            return Err(result);
        }
    };

    /* step 2: adjust rmap */
    // Under the same ptl hold as step 1, so the entries are exactly those
    // step 1 checked. Only the rmap is dropped: the entries stay, and go
    // with the table, which no walker but GUP-fast and the hardware
    // walker can reach until it is freed. (v6.1 aborts here on a
    // zone-device page, which the model has none of.) The model's name for
    // this step is Clear, although nothing is cleared here.
    cx.step(Step::Clear);
    for i in 0..HPAGE_PMD_NR {
        let addr = haddr + i as u64 * PAGE_SIZE;
        let ptent = cx.ptep_get(start_pte.at(i));
        if ptent.is_none() {
            continue;
        }
        if let Some(page) = cx.vm_normal_page(vma, addr, ptent) {
            cx.page_remove_rmap(page, vma, false);
        }
    }
    cx.pte_unmap_unlock(start_pte, ptl);

    /* step 3: set proper refcount and mm_counters. */
    cx.step(Step::Account);
    account_cleared(cx, hpage, count);

    /* step 4: remove pte entries */
    cx.step(Step::RemoveTable);
    // v6.1 takes the VMA's anon_vma lock for write here when it has an
    // anon_vma, to keep rmap walkers of anonymous pages (reclaim,
    // migration) away from the table. The model has no anon_vma lock: it
    // leaves this out, which is sound here because step 1 found only
    // subpages of hpage in the range, and with mmap_lock held for write
    // no COW or uffd fill can have put an anonymous page there since, so
    // such a walker has nothing to find in this table.
    collapse_and_free_pmd(cx, vma, haddr, pmd);
    Ok(())
}

/// Step 1's loop, under `ptl`: every entry that is not none must be
/// present and map exactly `hpage + i`. Returns how many do (v6.1's
/// `count`), which step 3 accounts.
fn check_and_count<E: Engine>(
    cx: &mut Cx<'_, E>,
    vma: &Vma,
    haddr: u64,
    hpage: Pfn,
    start_pte: PteMap,
) -> Result<i32, ScanResult> {
    let mut count = 0;
    for i in 0..HPAGE_PMD_NR {
        let addr = haddr + i as u64 * PAGE_SIZE;
        let ptent = cx.ptep_get(start_pte.at(i));
        if ptent.is_none() {
            continue;
        }
        // Swapped out or migrating.
        if !ptent.is_present() {
            return Err(ScanResult::PteNonPresent);
        }
        // A COWed copy or a uprobe's page is some other page.
        if cx.vm_normal_page(vma, addr, ptent) != Some(hpage.nth(i)) {
            return Err(ScanResult::Fail);
        }
        count += 1;
    }
    Ok(count)
}

/// `collapse_and_free_pmd()` (v6.1): detach the table, make sure no
/// lockless walker is still reading it, and free it now.
fn collapse_and_free_pmd<E: Engine>(cx: &mut Cx<'_, E>, vma: &Vma, haddr: u64, pmd: PmdRef) {
    // v6.1 asserts mmap_lock and i_mmap_rwsem (and the anon_vma lock, if
    // any) held for write, and takes no page-table lock: with those held,
    // ptl and pml synchronise nobody that could reach this PMD.
    cx.mmap_assert_write_locked();
    // Started only now (it may sleep: no spinlock is held), so the model
    // marks no "mmu_notifier start" step between steps 1 and 2: v6.1 has
    // no point there where ptl is dropped.
    let range = cx.mmu_notifier_invalidate_range_start(haddr, haddr + HPAGE_PMD_SIZE);
    // No page-table lock: every path that would take pml here is shut
    // out by the two write locks, and pmdp_collapse_flush() accepts them
    // in its place.
    let pgt_pmd = cx.pmdp_collapse_flush(vma, haddr, pmd);
    // GUP-fast walks with interrupts off and no lock: a walker that read
    // the PMD before the clear may still be reading the table. The IPI
    // returns only when every such walk has finished, so the table can
    // be freed at once rather than after an RCU grace period.
    cx.tlb_remove_table_sync_one();
    cx.mmu_notifier_invalidate_range_end(range);
    cx.mm_dec_nr_ptes();
    // Freed with step 2's entries still in it: their pages are out of the
    // rmap and their references were dropped by step 3, so they are dead
    // (v6.1's page_table_check_pte_clear_range() uncounts them; the model
    // folds that into pte_free(), which counts only entries whose pages
    // this collapse did not take out of the rmap as live).
    cx.pte_free(pmd_pgtable(pgt_pmd));
}
