//! Collapse policies for the workloads' own tests, so they do not depend
//! on the `policies` crate: v1's shape (DESIGN §2) with the early `pml`
//! taken for every VMA (correct against every ptl-only inserter: uffd
//! fills and guard markers), for uffd-armed private VMAs only (v1 as
//! merged: markers on other VMAs get through), or never (the pre-fix code:
//! uffd fills get through).

use bench_core::kernel::{
    pmd_pgtable, range_in_vma, userfaultfd_armed, userfaultfd_wp, CollapsePolicy, Cx, DynPolicy, Engine, NoParams,
    ScanResult, Step, SINGLE_DEPTH_NESTING,
};
use bench_core::mm::VM_SHARED;
use bench_core::pte::{HPAGE_PMD_NR, HPAGE_PMD_SIZE, PAGE_SIZE};
use std::sync::Arc;

/// When the collapse takes `pml` before step 2.
#[derive(Clone, Copy, PartialEq)]
pub enum EarlyPml {
    /// Every VMA: correct on every preset.
    Always,
    /// uffd-armed private VMAs: v1 as merged.
    UffdPrivate,
    /// Never: the pre-fix code.
    Never,
}

pub struct TestPolicy {
    early: EarlyPml,
    params: NoParams,
}

pub fn policy(early: EarlyPml) -> Arc<dyn DynPolicy> {
    Arc::new(TestPolicy { early, params: NoParams {} })
}

/// The correct one.
pub fn early_pml() -> Arc<dyn DynPolicy> {
    policy(EarlyPml::Always)
}

impl CollapsePolicy for TestPolicy {
    type Params = NoParams;
    const NAME: &'static str = "test-early-pml";
    const SUMMARY: &'static str = "v1 with pml taken before step 2 on every VMA (tests only)";

    fn new(params: NoParams) -> Self {
        TestPolicy { early: EarlyPml::Always, params }
    }

    fn params(&self) -> &NoParams {
        &self.params
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult {
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
            if cx.compound_order(hpage) != 9 {
                break 'drop_hpage ScanResult::PageCompound;
            }
            let pmd = match cx.find_pmd_or_thp_or_none(haddr) {
                (ScanResult::Succeed, Some(pmd)) => pmd,
                (ScanResult::PmdNone, Some(pmd)) => break 'drop_hpage install(cx, vma, haddr, pmd, hpage, install_pmd),
                (other, _) => break 'drop_hpage other,
            };
            // Step 1: check, under ptl.
            cx.step(Step::Check);
            let Some((map, ptl)) = cx.pte_offset_map_lock(pmd, haddr) else {
                break 'drop_hpage ScanResult::Fail;
            };
            for i in 0..HPAGE_PMD_NR {
                let pte = cx.ptep_get(map.at(i));
                if pte.is_none() {
                    continue;
                }
                let bad = if !pte.is_present() {
                    Some(ScanResult::PteNonPresent)
                } else if cx.vm_normal_page(vma, haddr + i as u64 * PAGE_SIZE, pte) != Some(hpage.nth(i)) {
                    Some(ScanResult::Fail)
                } else {
                    None
                };
                if let Some(r) = bad {
                    cx.pte_unmap_unlock(map, ptl);
                    break 'drop_hpage r;
                }
            }
            cx.pte_unmap_unlock(map, ptl);
            cx.step(Step::Notify);
            let range = cx.mmu_notifier_invalidate_range_start(haddr, haddr + HPAGE_PMD_SIZE);
            let early = match self.early {
                EarlyPml::Always => true,
                EarlyPml::UffdPrivate => userfaultfd_armed(vma) && vma.flags & VM_SHARED == 0,
                EarlyPml::Never => false,
            };
            let pml = early.then(|| cx.pmd_lock(pmd));
            let Some((map, ptl)) = cx.pte_offset_map_nolock(pmd, haddr) else {
                if let Some(pml) = pml {
                    cx.spin_unlock(pml);
                }
                cx.mmu_notifier_invalidate_range_end(range);
                break 'drop_hpage ScanResult::Fail;
            };
            match pml {
                None => cx.spin_lock(ptl),
                Some(pml) if pml != ptl => cx.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING),
                Some(_) => {}
            }
            // Step 2: recheck and clear.
            cx.step(Step::Clear);
            let mut nr_ptes = 0;
            let mut abort = None;
            for i in 0..HPAGE_PMD_NR {
                let addr = haddr + i as u64 * PAGE_SIZE;
                let pte = cx.ptep_get(map.at(i));
                if pte.is_none() {
                    continue;
                }
                if !pte.is_present() {
                    abort = Some(ScanResult::PteNonPresent);
                    break;
                }
                let page = cx.vm_normal_page(vma, addr, pte);
                if page != Some(hpage.nth(i)) {
                    abort = Some(ScanResult::Fail);
                    break;
                }
                cx.ptep_clear(addr, map.at(i));
                cx.page_remove_rmap(hpage.nth(i), vma, false);
                nr_ptes += 1;
            }
            if let Some(r) = abort {
                cx.step(Step::Abort);
                if nr_ptes > 0 {
                    cx.flush_tlb_mm();
                    cx.page_ref_sub(hpage, nr_ptes);
                    let c = cx.mm_counter_file(hpage);
                    cx.add_mm_counter(c, -(nr_ptes as i64));
                }
                cx.pte_unmap(map);
                if pml != Some(ptl) {
                    cx.spin_unlock(ptl);
                }
                if let Some(pml) = pml {
                    cx.spin_unlock(pml);
                }
                cx.mmu_notifier_invalidate_range_end(range);
                break 'drop_hpage r;
            }
            cx.pte_unmap(map);
            if pml.is_none() {
                cx.spin_unlock(ptl);
            }
            // Step 3: account.
            cx.step(Step::Account);
            if nr_ptes > 0 {
                cx.page_ref_sub(hpage, nr_ptes);
                let c = cx.mm_counter_file(hpage);
                cx.add_mm_counter(c, -(nr_ptes as i64));
            }
            // Step 4: remove the table.
            cx.step(Step::RemoveTable);
            let pml = pml.unwrap_or_else(|| {
                let pml = cx.pmd_lock(pmd);
                if ptl != pml {
                    cx.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING);
                }
                pml
            });
            let old = cx.pmdp_collapse_flush(vma, haddr, pmd);
            if ptl != pml {
                cx.spin_unlock(ptl);
            }
            cx.spin_unlock(pml);
            cx.mmu_notifier_invalidate_range_end(range);
            cx.mm_dec_nr_ptes();
            cx.pte_free_defer(pmd_pgtable(old));
            install(cx, vma, haddr, pmd, hpage, install_pmd)
        };
        cx.unlock_page(hpage);
        cx.put_page(hpage);
        result
    }
}

/// Step 5.
fn install<E: Engine>(
    cx: &mut Cx<'_, E>,
    vma: &bench_core::kernel::Vma,
    haddr: u64,
    pmd: bench_core::kernel::PmdRef,
    hpage: bench_core::kernel::Pfn,
    install_pmd: bool,
) -> ScanResult {
    cx.step(Step::Install);
    if install_pmd {
        cx.set_huge_pmd(vma, haddr, pmd, hpage)
    } else {
        ScanResult::Succeed
    }
}
