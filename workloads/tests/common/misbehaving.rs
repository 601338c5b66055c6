//! Test policies that misbehave the way experimental code does: one
//! panics with `ptl` held (quickly, or slower than a watchdog), one never
//! releases `ptl`, a pair deadlocks ABBA, one retries a trylock of the
//! `ptl` it holds. Shared by the engine's tests
//! (workloads/tests/misbehave.rs, simulate.rs) and the command line's
//! (tests/misbehave.rs).
// Each test binary compiles this module and uses what it needs of it.
#![allow(dead_code)]

use bench_core::kernel::{CollapsePolicy, Cx, Engine, NoParams, PmdRef, ScanResult, Step};
use bench_core::mm::MAP_BASE;

/// The message of [`PanicsInStep2`]'s panic.
pub const PANIC_MESSAGE: &str = "test-panic: boom in step 2";

/// The end of `file:line:` of [`PanicsInStep2`]'s panic as the panic hook reports it.
pub fn panic_line() -> String {
    let line =
        1 + include_str!("misbehaving.rs").lines().position(|l| l.contains("panic!(\"{}\", PANIC_MESSAGE)")).unwrap();
    format!("common/misbehaving.rs:{line}:")
}

/// Takes `ptl` at step 2 and panics with it held; with `SLOW`, the panic
/// takes [`SLOW_PANIC`] from the panic hook to its report.
pub struct PanicsInStep2<const SLOW: bool = false>(NoParams);

/// [`PanicsInStep2`] whose panic is slower to report than a test's
/// watchdog, while uffd waits behind the `ptl` it holds. Only the engine's
/// tests use it (registered in the command line's, it would slow every
/// report's verdicts).
pub type PanicsSlowly = PanicsInStep2<true>;

/// How long [`PanicsSlowly`]'s panic takes from the panic hook to its report.
pub const SLOW_PANIC: std::time::Duration = std::time::Duration::from_secs(2);

/// A local whose drop takes [`SLOW_PANIC`]: dropped while the panic
/// unwinds, after the panic hook ran, it stands for what a backtrace under
/// `RUST_BACKTRACE=1` costs on a loaded machine.
struct SlowUnwind;

impl Drop for SlowUnwind {
    fn drop(&mut self) {
        std::thread::sleep(SLOW_PANIC);
    }
}

impl<const SLOW: bool> CollapsePolicy for PanicsInStep2<SLOW> {
    type Params = NoParams;
    const NAME: &'static str = if SLOW { "test-slow-panic" } else { "test-panic" };
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
        let _slow = SLOW.then(|| SlowUnwind);
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
        if haddr == MAP_BASE {
            let Some((pte, ptl)) = cx.pte_offset_map_lock(range0, MAP_BASE) else { return ScanResult::Fail };
            cx.ndelay(PAUSE_NS);
            cx.spin_lock(pml);
            cx.spin_unlock(pml);
            cx.pte_unmap_unlock(pte, ptl);
        } else {
            cx.spin_lock(pml);
            cx.ndelay(PAUSE_NS);
            if let Some((pte, ptl)) = cx.pte_offset_map_lock(range0, MAP_BASE) {
                cx.pte_unmap_unlock(pte, ptl);
            }
            cx.spin_unlock(pml);
        }
        ScanResult::Fail
    }
}

/// Takes `ptl`, then retries `spin_trylock(ptl)` until it succeeds: it
/// never does (the CPU holds it), and a trylock of a lock held by its
/// own CPU charges nothing, so under the simulation its clock stands still.
pub struct TrylocksItsOwnPtl(NoParams);

impl CollapsePolicy for TrylocksItsOwnPtl {
    type Params = NoParams;
    const NAME: &'static str = "test-own-trylock";
    const SUMMARY: &'static str = "retries spin_trylock of the ptl it holds (tests only)";

    fn new(params: NoParams) -> Self {
        TrylocksItsOwnPtl(params)
    }

    fn params(&self) -> &NoParams {
        &self.0
    }

    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, _install_pmd: bool) -> ScanResult {
        let (_, Some(pmd)) = cx.find_pmd_or_thp_or_none(haddr) else { return ScanResult::Fail };
        let Some((pte, ptl)) = cx.pte_offset_map_lock(pmd, haddr) else { return ScanResult::Fail };
        while !cx.spin_trylock(ptl) {}
        cx.spin_unlock(ptl);
        cx.pte_unmap_unlock(pte, ptl);
        ScanResult::Fail
    }
}
