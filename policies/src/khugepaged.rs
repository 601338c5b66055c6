//! The parts of `collapse_pte_mapped_thp()` (mm/khugepaged.c, v6.6) that
//! every shipped policy runs unchanged: the early exits, finding and
//! locking `hpage`, step 1, the body of step 2, step 3's accounting, and
//! the tail of step 4 after the locks are dropped.
//!
//! What differs between the policies — which locks are held across which
//! steps, the trylock and recheck, and the abort path — is written out in
//! each policy's own file, so it can be read beside the patch it models.

use bench_core::kernel::{
    pmd_pgtable, range_in_vma, userfaultfd_armed, userfaultfd_wp, Cx, Engine, LockId, NotifierRange, Pfn, Pmd, PmdRef,
    PteMap, ScanResult, Step, Vma,
};
use bench_core::mm::VM_SHARED;
use bench_core::pte::{HPAGE_PMD_NR, HPAGE_PMD_ORDER, HPAGE_PMD_SIZE, PAGE_SIZE};

/// Early exits, with only `mmap_lock` held (implicit in the model).
fn vma_checks<'a, E: Engine>(cx: &mut Cx<'a, E>, haddr: u64) -> Result<&'a Vma, ScanResult> {
    cx.step(Step::Prologue);
    /* First check VMA found, in case page tables are being torn down */
    let Some(vma) = cx.vma_lookup(haddr) else {
        return Err(ScanResult::VmaCheck);
    };
    if !range_in_vma(vma, haddr, haddr + HPAGE_PMD_SIZE) {
        return Err(ScanResult::VmaCheck);
    }
    /* Fast check before locking page if already PMD-mapped */
    if cx.find_pmd_or_thp_or_none(haddr).0 == ScanResult::PmdMapped {
        return Err(ScanResult::PmdMapped);
    }
    /* Keep pmd pgtable for uffd-wp; see comment in retract_page_tables() */
    if userfaultfd_wp(vma) {
        return Err(ScanResult::PteUffdWp);
    }
    Ok(vma)
}

/// `find_lock_page()` and the checks on what it found. On success the page
/// is locked and referenced; the caller ends with [`drop_hpage`]. The
/// page lock keeps page-cache faults from mapping more subpages and keeps
/// other collapses away; it does not stop userfaultfd.
fn find_lock_hpage<E: Engine>(cx: &mut Cx<'_, E>, vma: &Vma, haddr: u64) -> Result<Pfn, ScanResult> {
    let Some(hpage) = cx.find_lock_page(vma, haddr) else {
        return Err(ScanResult::PageNull);
    };
    let bad = if !cx.page_head(hpage) {
        Some(ScanResult::Fail)
    } else if cx.compound_order(hpage) != HPAGE_PMD_ORDER {
        Some(ScanResult::PageCompound)
    } else {
        None
    };
    match bad {
        Some(result) => {
            drop_hpage(cx, hpage);
            Err(result)
        }
        None => Ok(hpage),
    }
}

/// `drop_hpage:` — always the last thing a collapse does.
fn drop_hpage<E: Engine>(cx: &mut Cx<'_, E>, hpage: Pfn) {
    cx.unlock_page(hpage);
    cx.put_page(hpage);
}

/// What the second look at the PMD found.
enum PmdState {
    /// A PTE table: go on to step 1.
    Table(PmdRef),
    /// None: the table was already retracted; skip to step 5.
    None(PmdRef),
    /// Anything else: give up with this result.
    GiveUp(ScanResult),
}

/// `find_pmd_or_thp_or_none()` again, now with the page locked.
fn recheck_pmd<E: Engine>(cx: &mut Cx<'_, E>, haddr: u64) -> PmdState {
    match cx.find_pmd_or_thp_or_none(haddr) {
        (ScanResult::Succeed, Some(pmd)) => PmdState::Table(pmd),
        /*
         * All pte entries have been removed and pmd cleared.
         * Skip all the pte checks and just update the pmd mapping.
         */
        (ScanResult::PmdNone, Some(pmd)) => PmdState::None(pmd),
        (result, _) => PmdState::GiveUp(result),
    }
}

/// Whether the VMA is a uffd-armed private one: the case where
/// `mfill_atomic_pte()` may insert an as-if-COWed PTE without looking at
/// the page cache, so the page lock does not keep the table empty.
pub fn uffd_private(vma: &Vma) -> bool {
    userfaultfd_armed(vma) && vma.flags & VM_SHARED == 0
}

/// Step 1: every entry that is not none must be present and map exactly
/// `hpage + i`. Nothing is changed. Caller holds `ptl`.
fn check_all_ptes<E: Engine>(
    cx: &mut Cx<'_, E>,
    vma: &Vma,
    haddr: u64,
    hpage: Pfn,
    start_pte: PteMap,
) -> Result<(), ScanResult> {
    for i in 0..HPAGE_PMD_NR {
        let addr = haddr + i as u64 * PAGE_SIZE;
        let ptent = cx.ptep_get(start_pte.at(i));
        /* empty pte, skip */
        if ptent.is_none() {
            continue;
        }
        /* page swapped out, abort */
        if !ptent.is_present() {
            return Err(ScanResult::PteNonPresent);
        }
        /*
         * Note that uprobe, debugger, or MAP_PRIVATE may change the
         * page table, but the new page will not be a subpage of hpage.
         */
        if cx.vm_normal_page(vma, addr, ptent) != Some(hpage.nth(i)) {
            return Err(ScanResult::Fail);
        }
    }
    Ok(())
}

/// Step 2 over the table: recheck each entry (it may have changed while
/// `ptl` was dropped), clear it and drop its rmap, counting in `nr_ptes`.
/// Returns the abort result at the first entry that is no longer
/// `hpage + i`; entries cleared before it stay cleared (and counted).
/// Caller holds `ptl`.
pub fn clear_ptes<E: Engine>(
    cx: &mut Cx<'_, E>,
    t: &Target<'_>,
    start_pte: PteMap,
    nr_ptes: &mut i32,
) -> Result<(), ScanResult> {
    let (vma, haddr, hpage) = (t.vma, t.haddr, t.hpage);
    for i in 0..HPAGE_PMD_NR {
        let addr = haddr + i as u64 * PAGE_SIZE;
        let pte = start_pte.at(i);
        let ptent = cx.ptep_get(pte);
        if ptent.is_none() {
            continue;
        }
        /*
         * We dropped ptl after the first scan, to do the mmu_notifier:
         * page lock stops more PTEs of the hpage being faulted in, but
         * does not stop write faults COWing anon copies from existing
         * PTEs; and does not stop those being swapped out or migrated.
         */
        if !ptent.is_present() {
            return Err(ScanResult::PteNonPresent);
        }
        let page = cx.vm_normal_page(vma, addr, ptent);
        if page != Some(hpage.nth(i)) {
            return Err(ScanResult::Fail);
        }
        /*
         * Must clear entry, or a racing truncate may re-remove it.
         * TLB flush can be left until pmdp_collapse_flush() does it.
         * PTE dirty? Shmem page is already dirty; file is read-only.
         */
        cx.ptep_clear(addr, pte);
        cx.page_remove_rmap(hpage.nth(i), vma, false);
        *nr_ptes += 1;
    }
    Ok(())
}

/// Step 3 (and the abort path's copy of it): drop the references and the
/// mm counter for `nr_ptes` cleared entries.
pub fn account_cleared<E: Engine>(cx: &mut Cx<'_, E>, hpage: Pfn, nr_ptes: i32) {
    if nr_ptes != 0 {
        cx.page_ref_sub(hpage, nr_ptes);
        let counter = cx.mm_counter_file(hpage);
        cx.add_mm_counter(counter, -(nr_ptes as i64));
    }
}

/// What a collapse works on once `hpage` is locked and the PMD holds a table.
pub struct Target<'v> {
    /// The VMA.
    pub vma: &'v Vma,
    /// The 2 MiB-aligned address.
    pub haddr: u64,
    /// The locked, referenced huge page.
    pub hpage: Pfn,
    /// The PMD.
    pub pmd: PmdRef,
    /// MADV_COLLAPSE (true) or khugepaged (false).
    pub install_pmd: bool,
}

/// `collapse_pte_mapped_thp()` around its policy-specific middle: the
/// early exits, `find_lock_page()`, the second look at the PMD (none: skip
/// to step 5), then `steps_1_to_4`, then `drop_hpage:`.
pub fn collapse_pte_mapped_thp<E: Engine>(
    cx: &mut Cx<'_, E>,
    haddr: u64,
    install_pmd: bool,
    steps_1_to_4: impl FnOnce(&mut Cx<'_, E>, &Target<'_>) -> ScanResult,
) -> ScanResult {
    let vma = match vma_checks(cx, haddr) {
        Ok(vma) => vma,
        Err(result) => return result,
    };
    let hpage = match find_lock_hpage(cx, vma, haddr) {
        Ok(hpage) => hpage,
        Err(result) => return result,
    };
    let result = match recheck_pmd(cx, haddr) {
        PmdState::Table(pmd) => steps_1_to_4(cx, &Target { vma, haddr, hpage, pmd, install_pmd }),
        PmdState::None(pmd) => maybe_install_pmd(cx, &Target { vma, haddr, hpage, pmd, install_pmd }),
        PmdState::GiveUp(result) => result,
    };
    drop_hpage(cx, hpage);
    result
}

/// The end of step 4, after `pml` and `ptl` are dropped: end the notifier
/// range, uncount the table and free it after a grace period (lockless
/// walkers may still be reading it); then step 5.
pub fn free_table_and_install<E: Engine>(
    cx: &mut Cx<'_, E>,
    range: NotifierRange,
    pgt_pmd: Pmd,
    t: &Target<'_>,
) -> ScanResult {
    cx.mmu_notifier_invalidate_range_end(range);
    cx.mm_dec_nr_ptes();
    cx.pte_free_defer(pmd_pgtable(pgt_pmd));
    maybe_install_pmd(cx, t)
}

/// `maybe_install_pmd:` — step 5: MADV_COLLAPSE maps `hpage` by PMD;
/// khugepaged just reports success.
pub fn maybe_install_pmd<E: Engine>(cx: &mut Cx<'_, E>, t: &Target<'_>) -> ScanResult {
    cx.step(Step::Install);
    if t.install_pmd {
        cx.set_huge_pmd(t.vma, t.haddr, t.pmd, t.hpage)
    } else {
        ScanResult::Succeed
    }
}

/// Step 1 under `ptl`, as every policy does it. On success `ptl` is
/// dropped again; on failure the table stays mapped and locked in
/// `k.start_pte` for the abort path.
pub fn step1_check<E: Engine>(cx: &mut Cx<'_, E>, t: &Target<'_>, k: &mut Locals) -> Result<(), ScanResult> {
    cx.step(Step::Check);
    /* mmap_lock + page lock should prevent a missing table */
    let (start_pte, ptl) = cx.pte_offset_map_lock(t.pmd, t.haddr).ok_or(ScanResult::Fail)?;
    (k.start_pte, k.ptl) = (Some(start_pte), Some(ptl));
    check_all_ptes(cx, t.vma, t.haddr, t.hpage, start_pte)?;
    cx.pte_unmap_unlock(start_pte, ptl);
    k.start_pte = None;
    Ok(())
}

/// Start the mmu-notifier invalidation of the range. It may sleep: that
/// is why `ptl` was dropped after step 1.
pub fn notify_start<E: Engine>(cx: &mut Cx<'_, E>, t: &Target<'_>, k: &mut Locals) {
    cx.step(Step::Notify);
    k.range = Some(cx.mmu_notifier_invalidate_range_start(t.haddr, t.haddr + HPAGE_PMD_SIZE));
}

/// The locals of `collapse_pte_mapped_thp()` that the abort path reads,
/// named as in the kernel.
#[derive(Default)]
pub struct Locals {
    /// Entries cleared and not yet accounted by step 3.
    pub nr_ptes: i32,
    /// The table, while it is mapped with `ptl` held.
    pub start_pte: Option<PteMap>,
    /// The table's lock pointer, once looked up.
    pub ptl: Option<LockId>,
    /// `pml`, while held.
    pub pml: Option<LockId>,
    /// The mmu-notifier range, once started (`notified`).
    pub range: Option<NotifierRange>,
}

/// `abort:` — pay the owed TLB flush if `flush_owed`, account the cleared
/// entries step 3 has not, drop `ptl` and `pml`, end the notifier range.
/// Cleared entries are not put back: they simply fault in again later.
pub fn abort<E: Engine>(
    cx: &mut Cx<'_, E>,
    hpage: Pfn,
    locals: Locals,
    flush_owed: bool,
    result: ScanResult,
) -> ScanResult {
    cx.step(Step::Abort);
    if flush_owed {
        cx.flush_tlb_mm();
    }
    account_cleared(cx, hpage, locals.nr_ptes);
    if let Some(start_pte) = locals.start_pte {
        cx.pte_unmap_unlock(start_pte, locals.ptl.expect("start_pte is mapped with its ptl held"));
    }
    if let Some(pml) = locals.pml {
        if Some(pml) != locals.ptl {
            cx.spin_unlock(pml);
        }
    }
    if let Some(range) = locals.range {
        cx.mmu_notifier_invalidate_range_end(range);
    }
    result
}
