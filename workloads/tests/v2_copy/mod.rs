//! `v2-step3-down`'s steps 2 to 4 and abort path (policies/src/v2_step3_down.rs)
//! copied whole, as a plugin author starts a port, so that a test can put
//! one slip into it: the broken copies of `conformance.rs` and
//! `broken_copies.rs`. With no slip it is `v2-step3-down`. Every slip is
//! marked `BROKEN`.
// Each test binary compiles this module and uses what it needs of it.
#![allow(dead_code)]

use bench_core::kernel::{userfaultfd_armed, Cx, Engine, LockId, Pfn, Pmd, PmdRef, ScanResult, Step, Vma, VM_SHARED};
use policies::khugepaged::{abort_unlock, account_cleared, clear_ptes, collapse_pte_mapped_thp, remove_table};

/// Which slips the copy makes.
#[derive(Copy, Clone, Default)]
pub struct Slips {
    /// The recheck after a failed trylock tests `VM_SHARED` the wrong way
    /// round.
    pub recheck_shared_only: bool,
    /// When step 2 stops at a non-present entry, the abort path forgets
    /// what step 2 had already cleared.
    pub forgets_cleared_on_non_present: bool,
    /// The abort path never flushes.
    pub no_abort_flush: bool,
}

/// `collapse_pte_mapped_thp()` as `v2-step3-down`, with `slips`.
pub fn collapse<E: Engine>(
    cx: &mut Cx<'_, E>,
    haddr: u64,
    install_pmd: bool,
    recheck_always: bool,
    slips: Slips,
) -> ScanResult {
    collapse_pte_mapped_thp(cx, haddr, install_pmd, |cx, vma, haddr, hpage, pmd, ptl| {
        steps_2_to_4(cx, vma, haddr, hpage, pmd, ptl, recheck_always, slips)
    })
}

#[allow(clippy::too_many_arguments)]
fn steps_2_to_4<E: Engine>(
    cx: &mut Cx<'_, E>,
    vma: &Vma,
    haddr: u64,
    hpage: Pfn,
    pmd: PmdRef,
    mut ptl: LockId,
    recheck_always: bool,
    slips: Slips,
) -> Result<Pmd, ScanResult> {
    let mut pml = None;
    let mut start_pte = None;
    let mut nr_ptes = 0;
    let result = 'abort: {
        let Some((table, table_ptl)) = cx.pte_offset_map_lock(pmd, haddr) else {
            break 'abort ScanResult::Fail;
        };
        (start_pte, ptl) = (Some(table), table_ptl);
        let mut pass = Step::Clear;
        'recheck: loop {
            /* step 2 */
            cx.step(pass);
            if let Err(result) = clear_ptes(cx, vma, haddr, hpage, table, &mut nr_ptes) {
                if slips.forgets_cleared_on_non_present && result == ScanResult::PteNonPresent {
                    // BROKEN (forgets_cleared_on_non_present): "a
                    // non-present entry maps no subpage, so there is
                    // nothing to give back" -- but the entries cleared
                    // before it were.
                    nr_ptes = 0;
                }
                break 'abort result;
            }
            if pml.is_none() {
                let (lock, ptl_dropped) = policies::recheck::lock_pml_under_ptl(cx, pmd, ptl);
                pml = Some(lock);
                // BROKEN (recheck_shared_only): the VM_SHARED test inverted.
                let private = (vma.flags & VM_SHARED == 0) != slips.recheck_shared_only;
                if ptl_dropped && (recheck_always || userfaultfd_armed(vma) && private) {
                    pass = Step::Recheck;
                    continue 'recheck;
                }
            }
            break;
        }
        let pml = pml.expect("taken at the lock point");
        /* step 3 */
        cx.step(Step::Account);
        account_cleared(cx, hpage, nr_ptes);
        /* step 4 */
        cx.step(Step::RemoveTable);
        return Ok(remove_table(cx, vma, haddr, pmd, Some(table), ptl, pml));
    };
    cx.step(Step::Abort);
    if nr_ptes != 0 {
        // BROKEN (no_abort_flush): the entries step 2 cleared are never
        // flushed.
        if !slips.no_abort_flush {
            cx.flush_tlb_mm();
        }
        account_cleared(cx, hpage, nr_ptes);
    }
    abort_unlock(cx, start_pte, ptl, pml);
    Err(result)
}
