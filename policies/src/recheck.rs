//! What the three v2 forms share: Jann Horn's trylock-and-recheck lock
//! point for step 4, and its `recheck_always` parameter.

use crate::khugepaged::{free_table_and_install, uffd_private, Locals, Target};
use bench_core::kernel::{Cx, Engine, LockId, PteMap, ScanResult, SINGLE_DEPTH_NESTING};
use serde::{Deserialize, Serialize};

/// Parameters of the v2 forms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecheckParams {
    /// Drop the `userfaultfd_armed()` test: after a failed trylock, always
    /// run step 2 again. The thread's open question: what does that cost,
    /// and does it make the policy immune to future ptl-only inserters
    /// (PTE markers for guard regions)?
    pub recheck_always: bool,
}

/// Step 4's lock point with `ptl` held: take `pml` by trylock (it nests
/// outside `ptl`, so only a trylock is allowed here). If that fails, drop
/// `ptl`, take `pml`, retake `ptl` nested — and since `ptl` was dropped,
/// anything that inserts under `ptl` alone may have filled the table.
/// Returns true when step 2 must run again. A second call (pml held) does
/// nothing.
pub fn lock_pml_or_recheck<E: Engine>(
    cx: &mut Cx<'_, E>,
    t: &Target<'_>,
    k: &mut Locals,
    ptl: LockId,
    params: &RecheckParams,
) -> bool {
    if k.pml.is_some() {
        return false;
    }
    let pml = cx.pmd_lockptr(t.pmd);
    k.pml = Some(pml);
    if pml == ptl || cx.spin_trylock(pml) {
        return false;
    }
    cx.spin_unlock(ptl);
    cx.spin_lock(pml);
    cx.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING);
    /*
     * pmd_lock covers a wider range than ptl, and (if split from mm's
     * page_table_lock) ptl nests inside pml. The less time we hold pml,
     * the better; but userfaultfd's mfill_atomic_pte() on a private VMA
     * inserts a valid as-if-COWed PTE without even looking up page cache.
     * So page lock of hpage does not protect from it, so we must not drop
     * ptl before pgt_pmd is removed, so uffd private needs rechecking.
     */
    params.recheck_always || uffd_private(t.vma)
}

/// Step 4 past the lock point, the same in every v2 form: with `pml` and
/// `ptl` held, clear the PMD and flush the range (`pmdp_collapse_flush`),
/// drop `ptl` then `pml`, free the table after a grace period, step 5.
pub fn remove_table<E: Engine>(
    cx: &mut Cx<'_, E>,
    t: &Target<'_>,
    k: &mut Locals,
    start_pte: PteMap,
    ptl: LockId,
) -> ScanResult {
    let pml = k.pml.expect("held after the lock point");
    let pgt_pmd = cx.pmdp_collapse_flush(t.vma, t.haddr, t.pmd);
    cx.pte_unmap(start_pte);
    if ptl != pml {
        cx.spin_unlock(ptl);
    }
    cx.spin_unlock(pml);
    let range = k.range.take().expect("notifier range started above");
    free_table_and_install(cx, range, pgt_pmd, t)
}
