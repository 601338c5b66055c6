//! Engines: who decides when a model CPU runs, and what time it is.
//!
//! The same policy and actor code runs on every engine; an engine only
//! supplies waiting (a spinning waiter, a sleeping waiter), the clock, and
//! the points where another CPU may be scheduled. The native engine runs
//! each model CPU on an OS thread: its scheduling points compile to nothing.

use crate::cost::Cost;
use crate::mm::LockId;
use crate::policy::{DynPolicy, ScanResult};
use crate::primitives::Cx;
use crate::pte::{Pfn, Pte};
use std::sync::Arc;
use std::time::Instant;

/// Where a collapse is: the kernel's step numbers, for hooks and timelines.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Early exits and page-cache lookup.
    Prologue,
    /// Step 1: check every mapped PTE maps `hpage + i`, under `ptl`.
    Check,
    /// Between dropping `ptl` and starting the mmu-notifier range.
    Notify,
    /// Step 2: clear the entries and their rmap.
    Clear,
    /// Step 2 again after a failed `pml` trylock (v2 forms).
    Recheck,
    /// Step 3: refcount and mm counters.
    Account,
    /// Step 4: take `pml` (if not held), clear the PMD, flush, free the table.
    RemoveTable,
    /// Step 5: install the PMD mapping (MADV_COLLAPSE).
    Install,
    /// The abort path.
    Abort,
}

impl Step {
    /// Label used in timelines ("step 2 (clear)").
    pub fn label(self) -> &'static str {
        match self {
            Step::Prologue => "prologue",
            Step::Check => "step 1 (check)",
            Step::Notify => "mmu_notifier start",
            Step::Clear => "step 2 (clear)",
            Step::Recheck => "step 2 (recheck)",
            Step::Account => "step 3 (account)",
            Step::RemoveTable => "step 4 (remove table)",
            Step::Install => "step 5 (install pmd)",
            Step::Abort => "abort",
        }
    }
}

/// Something a model CPU does that another CPU could interleave with (a
/// scheduling point), or that a timeline shows (trace-only events).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// About to wait for a spinlock.
    Lock(LockId),
    /// About to try a spinlock; `bool` is the outcome (trace) or false (point).
    Trylock(LockId, bool),
    /// Just released a spinlock.
    Unlock(LockId),
    /// A lockless read of a PMD or PTE.
    LocklessRead,
    /// A TLB lookup or fill of a virtual page.
    TlbAccess(u64),
    /// A page lock, reference or flag change on a frame.
    PageOp(Pfn),
    /// Waiting for a page table to come back from a grace period.
    TableAlloc,
    /// Waiting for the page lock of a frame.
    PageLock(Pfn),
    /// (trace) `ptep_clear` of entry idx.
    PteClear(u16),
    /// (trace) `set_pte_at` of entry idx.
    PteSet(u16, Pte),
    /// (trace) PMD cleared by `pmdp_collapse_flush` (or a zap).
    PmdClear,
    /// (trace) huge PMD installed.
    PmdHuge,
    /// (trace) `flush_tlb_mm`.
    FlushMm,
    /// (trace) range flush.
    FlushRange,
    /// (trace) `pte_free_defer` of a table.
    TableFree(u32),
    /// (trace) a collapse step began.
    Step(Step),
    /// (trace) the collapse returned.
    Returned(ScanResult),
}

/// What a model CPU runs on.
pub trait Engine: Sized {
    /// Recorded in results ("native").
    const NAME: &'static str;
    /// Whether [`Engine::sched_point`] does anything (lets the native engine
    /// skip building events at compile time).
    const PREEMPTS: bool;

    /// Time now, ns (wall clock or virtual).
    fn now_ns(&mut self) -> u64;
    /// Busy-wait until `ready` (a spinlock waiter: burns its CPU); `on` says
    /// what for. `ready` may take what it waits for (a hand-off) and is not
    /// called again once it returned true.
    fn spin_until(&mut self, on: Event, ready: impl FnMut() -> bool);
    /// Block until `ready` (a sleeping lock: gives its CPU away).
    fn sleep_until(&mut self, on: Event, ready: impl FnMut() -> bool);
    /// Keep the CPU busy for `ns` (work done while holding a lock, say).
    fn busy_wait(&mut self, ns: u64);
    /// Give the CPU away for `ns` (an actor's think time between operations).
    fn idle(&mut self, ns: u64);
    /// Charge `n` times the cost of `cost` to this CPU's clock. Only the
    /// simulation engine keeps such a clock; the others ignore it.
    #[inline(always)]
    fn charge(&mut self, cost: Cost, n: u64) {
        let _ = (cost, n);
    }
    /// Another CPU may run here.
    fn sched_point(&mut self, cpu: u32, ev: Event);
    /// Record `ev` for a timeline (engines that keep none ignore it).
    fn trace(&mut self, cpu: u32, ev: Event);
    /// The CPU reached a named step of a collapse.
    fn step(&mut self, cpu: u32, step: Step);
    /// Run `policy` on this engine (static dispatch inside).
    fn collapse(policy: &dyn DynPolicy, cx: &mut Cx<'_, Self>, haddr: u64, install_pmd: bool) -> ScanResult;
}

/// A test hook: called on the collapsing CPU at every step; may block to
/// force an interleaving.
pub type StepHook = Arc<dyn Fn(u32, Step) + Send + Sync>;

/// Native engine: one OS thread per model CPU, wall-clock time.
pub struct Native {
    base: Instant,
    hook: Option<StepHook>,
    yield_while_spinning: bool,
    watch: Option<(Arc<crate::watchdog::Watch>, usize)>,
}

impl Native {
    /// A native engine whose clock starts at `base`. With
    /// `oversubscribed`, spinning waiters yield their OS CPU now and then so
    /// a preempted lock holder can run (the kernel would not; see the
    /// README on oversubscription).
    pub fn new(base: Instant, hook: Option<StepHook>, oversubscribed: bool) -> Self {
        Native { base, hook, yield_while_spinning: oversubscribed, watch: None }
    }

    /// Run as CPU `cpu` under `watch`: publish the collapse step and what
    /// the CPU waits for, and unwind (with the watchdog's private payload)
    /// at the next wait, trylock or pause once the run is abandoned.
    pub fn watched(mut self, watch: Arc<crate::watchdog::Watch>, cpu: u32) -> Self {
        self.watch = Some((watch, cpu as usize));
        self
    }

    /// Unwind if the watched run was abandoned.
    #[inline]
    fn check_abort(&self) {
        if let Some((watch, _)) = &self.watch {
            watch.check_abort();
        }
    }
}

impl Engine for Native {
    const NAME: &'static str = "native";
    const PREEMPTS: bool = false;

    #[inline]
    fn now_ns(&mut self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    #[inline]
    fn spin_until(&mut self, on: Event, mut ready: impl FnMut() -> bool) {
        if ready() {
            return;
        }
        let _waiting = self.watch.as_ref().map(|(watch, cpu)| watch.wait(*cpu, on));
        let mut spins = 0u32;
        while !ready() {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(128) {
                if self.yield_while_spinning {
                    std::thread::yield_now();
                }
                self.check_abort();
            }
        }
    }

    fn sleep_until(&mut self, on: Event, mut ready: impl FnMut() -> bool) {
        if ready() {
            return;
        }
        let _waiting = self.watch.as_ref().map(|(watch, cpu)| watch.wait(*cpu, on));
        let mut spins = 0u32;
        while !ready() {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                self.check_abort();
                std::thread::yield_now();
            }
        }
    }

    fn busy_wait(&mut self, ns: u64) {
        let end = self.now_ns().saturating_add(ns);
        let mut spins = 0u32;
        while self.now_ns() < end {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                self.check_abort();
            }
        }
    }

    fn idle(&mut self, ns: u64) {
        // Sleeping has ~50 us granularity: spin through short pauses.
        if ns < 20_000 {
            self.busy_wait(ns);
        } else {
            self.check_abort();
            std::thread::sleep(std::time::Duration::from_nanos(ns));
            self.check_abort();
        }
    }

    /// Nothing to schedule; a trylock (which a policy may retry in a loop
    /// that never waits) is where an abandoned run is noticed.
    #[inline(always)]
    fn sched_point(&mut self, _cpu: u32, ev: Event) {
        if let Event::Trylock(..) = ev {
            self.check_abort();
        }
    }

    #[inline(always)]
    fn trace(&mut self, _cpu: u32, _ev: Event) {}

    #[inline]
    fn step(&mut self, cpu: u32, step: Step) {
        if let Some((watch, me)) = &self.watch {
            watch.step(*me, step);
        }
        if let Some(hook) = &self.hook {
            hook(cpu, step);
        }
    }

    fn collapse(policy: &dyn DynPolicy, cx: &mut Cx<'_, Self>, haddr: u64, install_pmd: bool) -> ScanResult {
        policy.collapse_native(cx, haddr, install_pmd)
    }
}
