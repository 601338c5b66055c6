//! What the v2 forms share: Jann Horn's lock point for step 4 (take
//! `pml` by trylock while holding `ptl`, and fall back to dropping `ptl`),
//! and the `recheck_always` parameter.

use bench_core::kernel::{Cx, Engine, LockId, PmdRef, SINGLE_DEPTH_NESTING};
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

/// Step 4's lock point in the posted v2: take `pml` with `ptl` held.
/// Returns `pml` and whether `ptl` was dropped on the way.
///
/// With `ptl` dropped, uffd on a private VMA may have filled the emptied
/// table (the page lock does not stop it), so step 2 must look again, now
/// with both locks held. The posting rechecks in that case only
/// (`userfaultfd_armed(vma) && !(vma->vm_flags & VM_SHARED)`, written out
/// in each v2 form); `recheck_always` drops the condition, for any
/// inserter that needs only `ptl`.
///
/// The posting retakes step 1's `ptl` with `spin_lock()` and maps the
/// table with `pte_offset_map()` at `recheck:`, mapping it again on each
/// pass and unmapping it after each step 2: `v2-posted` does so. The
/// repairs (`v2-flush-bool`, `v2-step3-down`) and `v2-posted-relookup`
/// look the table and its `ptl` up afresh and lock it with one
/// `pte_offset_map_lock()`, and keep the table mapped until step 4 has
/// cleared the PMD. The posting's `VM_BUG_ON()` on a missing table is an
/// abort in all of them.
///
/// `ptl` nests inside `pml`, so with `ptl` held only a trylock of `pml` is
/// allowed (a trylock cannot wait, so it cannot deadlock). When `pml` is
/// `ptl` (locks not split) it is already held. When the trylock fails,
/// `ptl` is dropped, `pml` taken and `ptl` retaken nested: both are held
/// on return either way, but in that case the table went unguarded for a
/// while, and the caller decides whether step 2 must look at it again.
pub fn lock_pml_under_ptl<E: Engine>(cx: &mut Cx<'_, E>, pmd: PmdRef, ptl: LockId) -> (LockId, bool) {
    let pml = cx.pmd_lockptr(pmd);
    if pml == ptl || cx.spin_trylock(pml) {
        return (pml, false);
    }
    cx.spin_unlock(ptl);
    cx.spin_lock(pml);
    cx.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING);
    (pml, true)
}
