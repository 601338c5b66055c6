//! The controlled engine, as a model CPU sees it: a stackful coroutine
//! (corosensei) that gives control back to the run loop
//! ([`crate::controlled`]) when its [`Clock`] says so: at every
//! scheduling point on a step clock, or when its virtual time passes the
//! other CPUs' (and at a release someone waits for) on a cost clock. What
//! it shares with the loop is [`Shared`].

use super::{CpuEngine, Sealed};
use crate::cost::{Cost, CostTable};
use crate::event::{Event, Step, TraceEntry};
use corosensei::Yielder;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// What the run loop tells a suspended CPU.
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

/// One CPU's stall guard (cost clock): what it counts, and
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

/// Scheduling points and operations a CPU makes, on a cost clock, between
/// two looks of its stall guard at the clock.
pub const STALL_CALLS: u32 = 1 << 20;

/// Calls the guard watches one by one, once it has found the clock where
/// it was a look earlier, before it ends the run: enough for any loop to
/// come round many times. A stall ends the run within a few million calls
/// (well within a second).
pub const STALL_WATCH: u32 = 1 << 12;

pub(crate) struct Shared {
    pub(crate) steps: Cell<u64>,
    pub(crate) record: bool,
    pub(crate) trace: RefCell<Vec<TraceEntry>>,
    /// Each CPU's clock, ps, when it last stopped.
    pub(crate) clocks: Vec<Cell<u64>>,
    /// The last scheduling point of the CPU whose stall guard gave up.
    pub(crate) stalled_at: Cell<Option<Event>>,
    /// What time is, and when a CPU stops.
    pub(crate) clock: Clock,
}

impl Shared {
    pub(crate) fn new(cpus: usize, record: bool, clock: Clock) -> Shared {
        Shared {
            steps: Cell::new(0),
            record,
            trace: RefCell::new(vec![]),
            clocks: (0..cpus).map(|_| Cell::new(0)).collect(),
            stalled_at: Cell::new(None),
            clock,
        }
    }
}

/// What time is on the CPUs, and so when they stop.
pub(crate) enum Clock {
    /// The checker's: 1 ns per scheduling point (plus the busy and idle
    /// time asked for), and a stop at every point; costs are not charged.
    Step,
    /// The simulation's: the costs charged, and a stop when the clock
    /// passes the horizon or at a release someone waits for.
    Cost(CostClock),
}

impl Clock {
    /// What `n` times `cost` adds to a CPU's clock.
    pub(crate) fn ps(&self, cost: Cost, n: u64) -> u64 {
        match self {
            Clock::Step => 0,
            Clock::Cost(clock) => clock.costs.ps(cost, n),
        }
    }
}

/// What a cost clock's CPUs and the loop share.
pub(crate) struct CostClock {
    pub(crate) costs: CostTable,
    /// The running CPU goes on until its clock passes this (the earliest
    /// clock among the other runnable CPUs).
    pub(crate) horizon_ps: Cell<u64>,
    /// The clock of the CPU that ran last, when it stopped: the time a
    /// waiter it released wakes at.
    pub(crate) now_ps: Cell<u64>,
    /// CPUs blocked now (a release is worth a stop only if some CPU waits).
    pub(crate) blocked: Cell<usize>,
    /// Releases (`Unlock`, `PageOp`) since the blocked CPUs were last probed.
    pub(crate) released: RefCell<Vec<Event>>,
}

impl CostClock {
    pub(crate) fn new(costs: CostTable) -> CostClock {
        CostClock {
            costs,
            horizon_ps: Cell::new(u64::MAX),
            now_ps: Cell::new(0),
            blocked: Cell::new(0),
            released: RefCell::new(vec![]),
        }
    }
}

/// The engine a model CPU sees inside a coroutine.
pub struct Controlled<'y> {
    pub(crate) yielder: &'y Yielder<Resume, Suspend>,
    pub(crate) shared: Rc<Shared>,
    pub(crate) cpu: usize,
    /// Virtual clock, ps, kept as [`Shared::clock`] says.
    pub(crate) clock_ps: u64,
    /// The stall guard (cost clock).
    pub(crate) guard: StallGuard,
}

impl Controlled<'_> {
    /// Wait until `ready`; true if the CPU had to block.
    fn wait(&mut self, on: Event, mut ready: impl FnMut() -> bool) -> bool {
        if ready() {
            return false;
        }
        self.shared.clocks[self.cpu].set(self.clock_ps);
        loop {
            match self.yielder.suspend(Suspend::Blocked(on)) {
                // Asked to check: if it is there now, take it and wait to be run.
                Resume::Probe => {
                    if ready() {
                        if let Clock::Cost(clock) = &self.shared.clock {
                            // It spun (or slept) until the release.
                            self.clock_ps = self.clock_ps.max(clock.now_ps.get());
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
        self.shared.clocks[self.cpu].set(self.clock_ps);
        while self.yielder.suspend(Suspend::Ready) != Resume::Run {}
    }

    /// On a cost clock: stop if this CPU's clock has passed another
    /// runnable CPU's.
    #[inline]
    fn stop_past_horizon(&mut self, horizon_ps: u64) {
        if self.clock_ps > horizon_ps {
            self.stop_ready();
        }
    }

    /// On a cost clock: count `call` against the stall guard's budget.
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
            self.shared.clocks[self.cpu].set(self.clock_ps);
            self.shared.stalled_at.set(self.guard.point);
            loop {
                self.yielder.suspend(Suspend::Stalled);
            }
        }
    }

    /// An operation starts (the actors' loop). On a cost clock the stall
    /// guard counts it: an operation that passes no scheduling point is a
    /// call too.
    pub(crate) fn start_op(&mut self) {
        if let Clock::Cost(_) = self.shared.clock {
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
        match &self.shared.clock {
            Clock::Step => self.sched_point(0, Event::LocklessRead),
            Clock::Cost(clock) => self.stop_past_horizon(clock.horizon_ps.get()),
        }
    }

    fn idle(&mut self, ns: u64) {
        self.busy_wait(ns);
    }

    #[inline]
    fn charge(&mut self, cost: Cost, n: u64) {
        if let Clock::Cost(clock) = &self.shared.clock {
            self.clock_ps += clock.costs.ps(cost, n);
            self.stop_past_horizon(clock.horizon_ps.get());
        }
    }

    fn sched_point(&mut self, _cpu: u32, ev: Event) {
        let Clock::Cost(clock) = &self.shared.clock else {
            self.clock_ps += 1000;
            self.stop_ready();
            return;
        };
        // A release someone may wait for: stop now, so the waiter wakes at
        // this instant rather than at the end of this CPU's run.
        let release = matches!(ev, Event::Unlock(_) | Event::PageOp(_)) && clock.blocked.get() > 0;
        if release {
            clock.released.borrow_mut().push(ev);
        }
        let horizon = clock.horizon_ps.get();
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
