//! `v6.13` — v1 as Qi Zheng's 2024 series left it (merged for v6.13):
//! the collapse no longer trusts that the table it emptied is still the
//! PMD's when it removes it.
//!
//! From v6.14 `madvise(MADV_DONTNEED)` with `CONFIG_PT_RECLAIM` may free
//! an empty PTE table under `mmap_lock` for read, taking `pml` and `ptl`
//! and clearing the PMD, so a collapse holding `mmap_lock` for read and
//! the page lock can find its table gone between two of its steps. The
//! series (its v5, 26 September 2024, which is what went in) changed
//! three things against `v1`:
//!
//! * step 2 maps the table with `pte_offset_map_rw_nolock()`, which also
//!   returns the PMD value the table was found through, and once `ptl` is
//!   held checks that the PMD still holds that value (`pmd_same()`);
//! * the table stays mapped, so the RCU read side stays entered, from
//!   step 2 to the end: `pte_unmap_unlock()` comes after the PMD clear,
//!   and the table cannot be freed under a collapse that dropped `ptl`,
//!   nor the ptlock in its page descriptor (which the v6.14 reclaim
//!   series frees after the same grace period);
//! * at step 4, when `pml` is taken late and is not `ptl`, the PMD is
//!   checked again once `ptl` is retaken; if another path removed the
//!   table meanwhile, the flush step 2's clears owe is paid with
//!   `flush_tlb_mm()` and the collapse unlocks and gives up. Step 3 has
//!   already accounted those clears, so this goes to the `unlock:` label,
//!   past the abort path's accounting.
//!
//! The prologue (early exits, finding and locking the huge page, step 1)
//! is v6.6's, from [`crate::khugepaged`]: v6.13 checks the VMA before the
//! PMD, looks up a folio rather than a page and drops the head-page test,
//! none of which the model can tell apart. Where v6.13 clears a batch of
//! entries per folio (`clear_ptes()`, v6.16), the model clears one at a
//! time, as v6.13 did.
//!
//! `v6.13-noflush` is the series' earlier posting, which gave up at step
//! 4 without the flush.

use crate::khugepaged::{abort_unlock, account_cleared, clear_ptes, collapse_pte_mapped_thp};
use bench_core::kernel::{
    pmd_same, userfaultfd_armed, CollapsePolicy, Cx, Engine, LockId, NoParams, Pfn, Pmd, PmdRef, ScanResult, Step, Vma,
    SINGLE_DEPTH_NESTING, VM_SHARED,
};

/// The v6.13 form.
pub struct V6_13(NoParams);

impl CollapsePolicy for V6_13 {
    type Params = NoParams;
    const NAME: &'static str = "v6.13";
    const SUMMARY: &'static str =
        "v1 + pmd_same() rechecks (v6.13): table mapped to the end, step-4 mismatch flushes and gives up";

    fn new(params: NoParams) -> Self {
        V6_13(params)
    }

    fn params(&self) -> &NoParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult {
        collapse_pte_mapped_thp(cx, haddr, install_pmd, steps_2_to_4)
    }
}

/// Steps 2 to 4, the `abort:` path and the `unlock:` label of
/// `collapse_pte_mapped_thp()` in v6.13, from just after the notifier
/// range starts (`ptl` is step 1's, dropped) to the detached PMD.
fn steps_2_to_4<E: Engine>(
    cx: &mut Cx<'_, E>,
    vma: &Vma,
    haddr: u64,
    hpage: Pfn,
    pmd: PmdRef,
    mut ptl: LockId,
) -> Result<Pmd, ScanResult> {
    let mut pml = None;
    // Some once step 2 has mapped the table: from v6.13 it stays mapped
    // until the end, locked or not. What `if (start_pte)` asks.
    let mut start_pte = None;
    let mut nr_ptes = 0;
    let result = 'unlock: {
        let result = 'abort: {
            // As v1: a uffd-armed private VMA must not see ptl dropped
            // between step 2 and the PMD clear, and ptl nests inside pml,
            // so pml is taken first, now.
            if userfaultfd_armed(vma) && vma.flags & VM_SHARED == 0 {
                pml = Some(cx.pmd_lock(pmd));
            }

            let Some((table, pgt_pmd, table_ptl)) = cx.pte_offset_map_rw_nolock(pmd, haddr) else {
                // Not expected, with mmap_lock and the page lock held.
                // start_pte stays unset: the abort path unlocks pml only.
                break 'abort ScanResult::Fail;
            };
            (start_pte, ptl) = (Some(table), table_ptl);
            match pml {
                None => cx.spin_lock(ptl),
                Some(pml) if pml != ptl => cx.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING),
                Some(_) => {} // ptl is pml (locks not split): already held
            }
            // The table was looked up before ptl was taken: a page-table
            // freer (empty-table reclaim) may have detached it in between.
            // Under ptl the PMD can no longer change while this collapse
            // looks, so one comparison settles it. With pml held early it
            // cannot have changed at all, and the check always passes.
            if !pmd_same(pgt_pmd, cx.pmdp_get_lockless(pmd)) {
                break 'abort ScanResult::Fail;
            }

            /* step 2: clear page table and adjust rmap */
            cx.step(Step::Clear);
            if let Err(result) = clear_ptes(cx, vma, haddr, hpage, table, &mut nr_ptes) {
                break 'abort result;
            }
            // No pte_unmap() here any more: the table stays mapped, so this
            // CPU stays inside the RCU read side and the table, and the
            // ptlock in its page descriptor, cannot be freed under it while
            // ptl is dropped.
            if pml.is_none() {
                // The short pml hold, as v1.
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
                    let lock = cx.pmd_lock(pmd);
                    pml = Some(lock);
                    if ptl != lock {
                        cx.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING);
                        // ptl was dropped: the table may have been emptied
                        // further and detached by another path meanwhile.
                        // Then the PMD is not this collapse's to clear. The
                        // entries step 2 cleared still owe their flush (the
                        // freer flushes only what it zapped, and maybe
                        // after this collapse returns), and step 3 has
                        // accounted them: flush, then only unlock.
                        if !pmd_same(pgt_pmd, cx.pmdp_get_lockless(pmd)) {
                            cx.flush_tlb_mm();
                            break 'unlock ScanResult::Fail;
                        }
                    }
                    lock
                }
            };
            let pgt_pmd = cx.pmdp_collapse_flush(vma, haddr, pmd);
            // (v6.13's pmdp_get_lockless_sync() here is for PMDs read in two
            // halves; the model reads a PMD in one load.) The table is
            // unmapped only now, with the PMD cleared.
            cx.pte_unmap_unlock(table, ptl);
            if ptl != pml {
                cx.spin_unlock(pml);
            }
            return Ok(pgt_pmd);
        };

        /* abort: */
        cx.step(Step::Abort);
        if nr_ptes != 0 {
            // Step 2 cleared these without a flush, leaving it to step 4:
            // other CPUs may still cache them, and their references go now.
            cx.flush_tlb_mm();
            account_cleared(cx, hpage, nr_ptes);
        }
        result
    };

    /* unlock: */
    abort_unlock(cx, start_pte, ptl, pml);
    Err(result)
}
