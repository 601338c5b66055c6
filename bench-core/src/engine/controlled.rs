//! The controlled engine, as a model CPU sees it: a stackful coroutine
//! (corosensei) that gives control back to the run loop
//! ([`crate::controlled`]) at every scheduling point, or, with a cost
//! clock, whenever its virtual clock passes the other CPUs'. What it
//! shares with the loop is [`Shared`].

use super::{CpuEngine, Sealed};
use crate::cost::{Cost, CostTable};
use crate::event::{Event, Step, TraceEntry};
use corosensei::Yielder;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// What the scheduler tells a suspended CPU.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Run until the next scheduling point.
    Run,
    /// Only check whether what you wait for is there now.
    Probe,
}

/// Why a CPU gave control back.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Suspend {
    /// At a scheduling point, ready to go on.
    Ready,
    /// Waiting (for the event named).
    Blocked(Event),
    /// Its clock stood still (see [`STALL_CALLS`]). It is not resumed.
    Stalled,
}

/// One CPU's stall guard (time-ordered strategy): what it counts, and
/// what it saw of a CPU whose clock stands still.
pub(crate) struct StallGuard {
    /// Calls left before the guard looks at the clock again.
    budget: u32,
    /// The clock, ps, when the guard last found it moved.
    at_ps: u64,
    /// Calls watched since it found the clock standing still.
    watched: u32,
    /// The last scheduling point among them.
    point: Option<Event>,
}

impl StallGuard {
    pub(crate) fn new(at_ps: u64) -> StallGuard {
        StallGuard { budget: STALL_CALLS, at_ps, watched: 0, point: None }
    }
}

/// What the stall guard counts.
#[derive(Copy, Clone)]
enum Call {
    /// A scheduling point.
    Point(Event),
    /// The start of an operation.
    Op,
}

/// Scheduling points and operations a CPU makes, under the time-ordered
/// strategy, between two looks of its stall guard at the clock.
pub const STALL_CALLS: u32 = 1 << 20;

/// Calls the guard watches one by one, once it has found the clock where
/// it was a look earlier, before it ends the run: enough for any loop to
/// come round many times. A stall ends the run within a few million calls
/// (well within a second).
pub const STALL_WATCH: u32 = 1 << 12;

#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) steps: Cell<u64>,
    pub(crate) record: bool,
    pub(crate) trace: RefCell<Vec<TraceEntry>>,
    /// Present under the time-ordered strategy.
    pub(crate) sim: Option<SimShared>,
}

/// What the time-ordered strategy and its CPUs share.
pub(crate) struct SimShared {
    pub(crate) costs: CostTable,
    /// The running CPU goes on until its clock passes this (the earliest
    /// clock among the other runnable CPUs).
    pub(crate) horizon_ps: Cell<u64>,
    /// The clock of the CPU that ran last, when it stopped: the time a
    /// waiter it released wakes at.
    pub(crate) now_ps: Cell<u64>,
    /// Each CPU's clock when it last stopped.
    pub(crate) clocks: Vec<Cell<u64>>,
    /// CPUs blocked now (a release is worth a stop only if some CPU waits).
    pub(crate) blocked: Cell<usize>,
    /// Releases (`Unlock`, `PageOp`) since the blocked CPUs were last probed.
    pub(crate) released: RefCell<Vec<Event>>,
    /// The last scheduling point of the CPU whose stall guard gave up.
    pub(crate) stalled_at: Cell<Option<Event>>,
}

/// The engine a model CPU sees inside a coroutine.
pub struct Controlled<'y> {
    pub(crate) yielder: &'y Yielder<Resume, Suspend>,
    pub(crate) shared: Rc<Shared>,
    pub(crate) cpu: usize,
    /// Virtual clock, ps (the checker's: 1 ns per scheduling point plus
    /// busy and idle time; the simulation's: the costs charged).
    pub(crate) clock_ps: u64,
    /// The stall guard (time-ordered strategy).
    pub(crate) guard: StallGuard,
}

impl Controlled<'_> {
    /// Wait until `ready`; true if the CPU had to block.
    fn wait(&mut self, on: Event, mut ready: impl FnMut() -> bool) -> bool {
        if ready() {
            return false;
        }
        if let Some(sim) = &self.shared.sim {
            sim.clocks[self.cpu].set(self.clock_ps);
        }
        loop {
            match self.yielder.suspend(Suspend::Blocked(on)) {
                // Asked to check: if it is there now, take it and wait to be run.
                Resume::Probe => {
                    if ready() {
                        if let Some(sim) = &self.shared.sim {
                            // It spun (or slept) until the release.
                            self.clock_ps = self.clock_ps.max(sim.now_ps.get());
                        }
                        self.stop_ready();
                        return true;
                    }
                }
                Resume::Run => {
                    if ready() {
                        return true;
                    }
                }
            }
        }
    }

    /// Give control back, ready to go on.
    fn stop_ready(&mut self) {
        if let Some(sim) = &self.shared.sim {
            sim.clocks[self.cpu].set(self.clock_ps);
        }
        while self.yielder.suspend(Suspend::Ready) != Resume::Run {}
    }

    /// Under the time-ordered strategy: stop if this CPU's clock has
    /// passed another runnable CPU's.
    #[inline]
    fn stop_past_horizon(&mut self, sim_horizon: u64) {
        if self.clock_ps > sim_horizon {
            self.stop_ready();
        }
    }

    /// Under the time-ordered strategy: count `call` against the stall
    /// guard's budget.
    #[inline(always)]
    fn count_call(&mut self, call: Call) {
        self.guard.budget -= 1;
        if self.guard.budget == 0 {
            self.look_at_clock(call);
        }
    }

    /// The stall guard's look: a clock that moved since the last look
    /// starts a new count; one that did not has every call watched (a
    /// budget of one), and after [`STALL_WATCH`] of them the scheduler is
    /// told, which ends the run and drops (unwinds) the CPU instead of
    /// resuming it.
    #[cold]
    #[inline(never)]
    fn look_at_clock(&mut self, call: Call) {
        if self.clock_ps != self.guard.at_ps {
            self.guard = StallGuard::new(self.clock_ps);
            return;
        }
        self.guard.budget = 1;
        self.guard.watched += 1;
        if let Call::Point(ev) = call {
            self.guard.point = Some(ev);
        }
        if self.guard.watched == STALL_WATCH {
            if let Some(sim) = &self.shared.sim {
                sim.clocks[self.cpu].set(self.clock_ps);
                sim.stalled_at.set(self.guard.point);
            }
            loop {
                self.yielder.suspend(Suspend::Stalled);
            }
        }
    }

    /// An operation starts (the actors' loop). Under the time-ordered
    /// strategy the stall guard counts it: an operation that passes no
    /// scheduling point is a call too.
    pub(crate) fn start_op(&mut self) {
        if self.shared.sim.is_some() {
            self.count_call(Call::Op);
        }
    }
}

impl CpuEngine for Controlled<'_> {
    const NAME: &'static str = "controlled";
    const PREEMPTS: bool = true;

    fn now_ns(&mut self) -> u64 {
        self.clock_ps / 1000
    }

    fn spin_until(&mut self, on: Event, ready: impl FnMut() -> bool) {
        self.wait(on, ready);
    }

    fn sleep_until(&mut self, on: Event, ready: impl FnMut() -> bool) {
        if self.wait(on, ready) {
            self.charge(Cost::Wakeup, 1);
        }
    }

    fn busy_wait(&mut self, ns: u64) {
        self.clock_ps += ns * 1000;
        match &self.shared.sim {
            Some(sim) => self.stop_past_horizon(sim.horizon_ps.get()),
            None => self.sched_point(0, Event::LocklessRead),
        }
    }

    fn idle(&mut self, ns: u64) {
        self.busy_wait(ns);
    }

    #[inline]
    fn charge(&mut self, cost: Cost, n: u64) {
        if let Some(sim) = &self.shared.sim {
            self.clock_ps += sim.costs.ps(cost, n);
            self.stop_past_horizon(sim.horizon_ps.get());
        }
    }

    fn sched_point(&mut self, _cpu: u32, ev: Event) {
        let Some(sim) = &self.shared.sim else {
            self.clock_ps += 1000;
            self.stop_ready();
            return;
        };
        // A release someone may wait for: stop now, so the waiter wakes at
        // this instant rather than at the end of this CPU's run.
        let release = matches!(ev, Event::Unlock(_) | Event::PageOp(_)) && sim.blocked.get() > 0;
        if release {
            sim.released.borrow_mut().push(ev);
        }
        let horizon = sim.horizon_ps.get();
        self.count_call(Call::Point(ev));
        if release {
            self.stop_ready();
        } else {
            self.stop_past_horizon(horizon);
        }
    }

    fn trace(&mut self, cpu: u32, event: Event) {
        if self.shared.record {
            let step = self.shared.steps.get();
            self.shared.trace.borrow_mut().push(TraceEntry { step, cpu, event });
        }
    }

    fn step(&mut self, _cpu: u32, _step: Step) {}
}

impl Sealed for Controlled<'_> {}
