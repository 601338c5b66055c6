//! Test policies that misbehave the way experimental code does: one
//! panics with `ptl` held, one never releases `ptl`, a pair deadlocks
//! ABBA. Shared by the engine's tests (workloads/tests/misbehave.rs) and
//! the command line's (tests/misbehave.rs).

use bench_core::mm::range_addr;
use bench_core::{CollapsePolicy, Cx, Engine, NoParams, PmdRef, ScanResult, Step};

/// The message of [`PanicsInStep2`]'s panic.
pub const PANIC_MESSAGE: &str = "test-panic: boom in step 2";

/// The end of `file:line:` of [`PanicsInStep2`]'s panic as the panic hook reports it.
pub fn panic_line() -> String {
    let line =
        1 + include_str!("misbehaving.rs").lines().position(|l| l.contains("panic!(\"{}\", PANIC_MESSAGE)")).unwrap();
    format!("common/misbehaving.rs:{line}:")
}

/// Takes `ptl` at step 2 and panics with it held.
pub struct PanicsInStep2(NoParams);

impl CollapsePolicy for PanicsInStep2 {
    type Params = NoParams;
    const NAME: &'static str = "test-panic";
    const SUMMARY: &'static str = "panics at step 2 holding ptl (tests only)";

    fn new(params: NoParams) -> Self {
        PanicsInStep2(params)
    }

    fn params(&self) -> &NoParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, _install_pmd: bool) -> ScanResult {
        cx.step(Step::Prologue);
        let (_, Some(pmd)) = cx.find_pmd_or_thp_or_none(haddr) else { return ScanResult::Fail };
        cx.step(Step::Clear);
        let Some((_pte, _ptl)) = cx.pte_offset_map_lock(pmd, haddr) else { return ScanResult::Fail };
        panic!("{}", PANIC_MESSAGE)
    }
}

/// Takes `ptl` at step 1 and then sleeps for the page lock it already
/// holds: it never returns, and `ptl` is never released, so uffd blocks
/// behind it.
pub struct NeverReleasesPtl(NoParams);

impl CollapsePolicy for NeverReleasesPtl {
    type Params = NoParams;
    const NAME: &'static str = "test-hang";
    const SUMMARY: &'static str = "sleeps on its own page lock holding ptl (tests only)";

    fn new(params: NoParams) -> Self {
        NeverReleasesPtl(params)
    }

    fn params(&self) -> &NoParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, _install_pmd: bool) -> ScanResult {
        cx.step(Step::Prologue);
        let Some(vma) = cx.vma_lookup(haddr) else { return ScanResult::VmaCheck };
        let Some(hpage) = cx.find_lock_page(vma, haddr) else { return ScanResult::PageNull };
        if let (ScanResult::Succeed, Some(pmd)) = cx.find_pmd_or_thp_or_none(haddr) {
            cx.step(Step::Check);
            if let Some((start_pte, ptl)) = cx.pte_offset_map_lock(pmd, haddr) {
                cx.lock_page(hpage);
                cx.pte_unmap_unlock(start_pte, ptl);
            }
        }
        cx.unlock_page(hpage);
        cx.put_page(hpage);
        ScanResult::Fail
    }
}

/// Range 0's collapser takes range 0's `ptl` then `pml`; range 1's takes
/// `pml` then range 0's `ptl`; each waits 20 ms between, so they
/// deadlock on their first collapse.
pub struct Abba(NoParams);

impl CollapsePolicy for Abba {
    type Params = NoParams;
    const NAME: &'static str = "test-abba-pair";
    const SUMMARY: &'static str = "ABBA on range 0's ptl and pml between two collapsers (tests only)";

    fn new(params: NoParams) -> Self {
        Abba(params)
    }

    fn params(&self) -> &NoParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, _install_pmd: bool) -> ScanResult {
        const PAUSE_NS: u64 = 20_000_000;
        let range0 = PmdRef { table: 0, idx: 0 };
        cx.step(Step::RemoveTable);
        let pml = cx.pmd_lockptr(range0);
        if haddr == range_addr(0) {
            let Some((pte, ptl)) = cx.pte_offset_map_lock(range0, range_addr(0)) else { return ScanResult::Fail };
            cx.ndelay(PAUSE_NS);
            cx.spin_lock(pml);
            cx.spin_unlock(pml);
            cx.pte_unmap_unlock(pte, ptl);
        } else {
            cx.spin_lock(pml);
            cx.ndelay(PAUSE_NS);
            if let Some((pte, ptl)) = cx.pte_offset_map_lock(range0, range_addr(0)) {
                cx.pte_unmap_unlock(pte, ptl);
            }
            cx.spin_unlock(pml);
        }
        ScanResult::Fail
    }
}
