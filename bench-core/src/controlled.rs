//! The controlled run loop: every model CPU is a stackful coroutine
//! (corosensei) on one OS thread, and a [`Scheduler`] decides which one
//! runs whenever the running one stops. The same policy and actor code
//! runs here as on the native engine. A run is a pure function of the
//! model configuration, the actors' seeds and the scheduler's choices.
//!
//! One loop serves the checker and the simulation; what differs is the
//! clock the scheduler asks for ([`Scheduler::costs`]; see [`crate::sched`]).
//! Each turn of the loop asks blocked CPUs whether they can go on
//! ("probe"), offers the runnable ones to the scheduler, and resumes the
//! one it picks until that CPU stops again. When none is runnable and
//! some have not finished, the run ends in a deadlock, reported with who
//! waits for what and who holds it.
//!
//! # The checker: a step clock
//!
//! With the step clock a CPU stops at every scheduling point: each lock
//! acquire, trylock and release, each lockless PMD/PTE read, TLB access
//! and page-lock operation. Accesses made under the lock that protects
//! them are not scheduling points: a 512-entry scan under `ptl` is one
//! step. Every blocked CPU is probed before every choice, in CPU order,
//! and the sequence of choices (the schedule) is kept: replayed, it
//! reproduces the run exactly. [`Strategy::Random`], [`Strategy::Pct`],
//! [`Strategy::Replay`] and [`Strategy::Guided`] run on it.
//!
//! # The simulation: the time-ordered scheduler on a cost clock
//!
//! With [`Strategy::TimeOrdered`] the loop is a discrete-event simulation
//! of a machine with one virtual CPU per actor: every primitive charges
//! its [`Cost`] to its CPU's virtual clock, and the runnable CPU with the
//! earliest clock runs next (ties: the lowest CPU number), until its clock
//! passes the next CPU's ("horizon"), so no CPU runs ahead of another by
//! more than one primitive. A spinning waiter burns virtual time until
//! the holder releases (its clock jumps to the release), then pays a
//! hand-off; the ticket lock hands over in FIFO order, as the queued
//! spinlock does. A sleeping waiter (the page lock) also pays a wake-up.
//! Blocked CPUs are probed only when something they could be waiting for
//! was released: a lock or page-lock waiter when that lock was released,
//! one waiter per release, in the order they blocked; every waiter once
//! more before the run is called a deadlock. No schedule is kept (it would
//! be as long as the run).
//!
//! A CPU gives control back only when its clock passes the horizon (or at
//! a release someone waits for), so a loop that costs nothing would keep
//! it forever at one instant. [`crate::CostModel::validate`] refuses the
//! zero costs that would allow it in the primitives, but a policy can
//! still loop on a scheduling point that charges nothing (a `spin_trylock`
//! of a lock it holds itself), and a table may come from a model that was
//! never validated. So every CPU carries a guard: it counts the CPU's
//! scheduling points and operations, and every [`STALL_CALLS`] it looks at
//! the clock; found where it was the last time, the guard watches the
//! next [`STALL_WATCH`] calls one by one, and if the clock still has not
//! moved the run ends as [`End::Stalled`], with the CPU's last scheduling
//! point and the model's zero costs. Legitimate code makes a handful of
//! calls at one instant at most. The count is a decrement and a test per
//! scheduling point, and charges are not counted at all: a loop that only
//! charges, passing no scheduling point, cannot be waiting for another
//! CPU (it sees nothing they do), so it is the policy's own endless loop.
//!
//! [`STALL_WATCH`]: crate::engine::STALL_WATCH
//!
//! Shuttle (awslabs) was weighed: it offers PCT and replayable schedules on
//! corosensei too, but schedules threads it spawns itself and owns its own
//! notion of time; the simulation needs per-CPU virtual clocks and costs,
//! so the loop is kept here, small, with a scheduler trait of shuttle's
//! shape.

use crate::actor::Actor;
use crate::cost::{Cost, CostTable};
use crate::engine::{Clock, Controlled, CostClock, Resume, Shared, StallGuard, Suspend, STALL_CALLS};
use crate::event::{Event, TraceEntry};
use crate::harness::Harness;
use crate::kernel::Cx;
use crate::metrics::Metrics;
use crate::mm::Mm;
use crate::recycle::{self, FreeList};
use crate::role::Role;
use crate::sched::{self, Runnable, Scheduler};
use crate::watchdog::{describe_wait, locks_held_by};
use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use strum::IntoEnumIterator;

/// How the next CPU is chosen: the configuration of a run's [`Scheduler`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Uniformly among the runnable CPUs ([`sched::Random`]).
    Random {
        /// Seed of the choices.
        seed: u64,
    },
    /// Probabilistic concurrency testing ([`sched::Pct`]): random
    /// distinct priorities, the highest-priority runnable CPU runs, and at
    /// `depth - 1` random steps the running CPU drops below all.
    Pct {
        /// Seed of the priorities and change points.
        seed: u64,
        /// Bug depth `d` (>= 1).
        depth: u32,
        /// Steps a run is expected to take (`k`): change points fall in 1..=k.
        expected_steps: u64,
    },
    /// Follow a recorded schedule exactly ([`sched::Replay`]).
    Replay(Vec<u32>),
    /// Follow a schedule where it can ([`sched::Guided`]): when the CPU it
    /// names cannot run (or the schedule has ended), keep running the CPU
    /// that ran last, or else the lowest-numbered runnable one. For
    /// shrinking a counterexample: the run's own schedule then replays it
    /// exactly.
    Guided(Vec<u32>),
    /// The simulation ([`sched::TimeOrdered`]): every primitive costs
    /// virtual time (from the table), and the CPU with the earliest clock
    /// runs (see the module documentation). No schedule is recorded.
    TimeOrdered(CostTable),
}

impl Strategy {
    /// The scheduler of one run on `cpus` CPUs.
    pub fn scheduler(&self, cpus: usize) -> Box<dyn Scheduler> {
        match self {
            Strategy::Random { seed } => Box::new(sched::Random::new(*seed)),
            Strategy::Pct { seed, depth, expected_steps } => {
                Box::new(sched::Pct::new(*seed, *depth, *expected_steps, cpus))
            }
            Strategy::Replay(schedule) => Box::new(sched::Replay::new(schedule.clone())),
            Strategy::Guided(schedule) => Box::new(sched::Guided::new(schedule.clone())),
            Strategy::TimeOrdered(costs) => Box::new(sched::TimeOrdered::new(costs.clone())),
        }
    }
}

/// What ran and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Every CPU finished its operations.
    Finished,
    /// No CPU could run; the description says who waits for what.
    Deadlock(String),
    /// The run took more than the step budget (a livelock, or a budget too small).
    StepLimit,
    /// A replayed schedule named a CPU that could not run (the
    /// configuration is not the one the schedule was recorded with).
    Diverged,
    /// On a cost clock: a CPU's clock stood still through
    /// more than [`STALL_CALLS`] scheduling points and operations, in a
    /// loop that costs nothing. The report says where it was, what it
    /// held, and which costs of the model are zero.
    Stalled {
        /// The CPU.
        cpu: u32,
        /// Its last scheduling point, the locks it held, the zero costs.
        report: String,
    },
}

/// How much each run does.
#[derive(Clone, Debug)]
pub struct ControlledConfig {
    /// Counted operations (collapses) after which every CPU stops.
    pub ops: u64,
    /// Operations each CPU may do at most (bounds runs under PCT, where a
    /// high-priority CPU runs until it blocks or finishes).
    pub ops_per_cpu: u64,
    /// Give up after this many scheduling steps.
    pub max_steps: u64,
    /// Each CPU stops starting operations once its clock reaches this
    /// (virtual time on a cost clock), ns.
    pub until_ns: u64,
    /// Keep a timeline.
    pub record_trace: bool,
}

/// The result of one controlled run.
pub struct ControlledRun {
    /// The CPU chosen at every step: replaying it reproduces the run
    /// (empty on a cost clock, the time-ordered strategy's, which needs none).
    pub schedule: Vec<u32>,
    /// Scheduling steps taken.
    pub steps: u64,
    /// The latest CPU clock at the end, ns (virtual time elapsed).
    pub elapsed_ns: u64,
    /// The timeline (when asked for).
    pub trace: Vec<TraceEntry>,
    /// How it ended.
    pub end: End,
    /// The CPUs' measurements, merged.
    pub metrics: Metrics,
    /// Role of each CPU.
    pub roles: Vec<Role>,
}

impl ControlledRun {
    /// Scheduling steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }
}

#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum State {
    Runnable,
    Blocked(Event),
    Stalled,
    Done,
}

type Cpu = Coroutine<Resume, Suspend, Metrics>;

/// Coroutine stacks a thread keeps for its next runs.
const STACKS_KEPT: usize = 64;

thread_local! {
    /// Stacks of finished coroutines: a run takes its CPUs' stacks here
    /// and gives back those whose coroutine finished, so the checker does
    /// not map, fault in and unmap a stack per CPU per schedule
    /// ([`crate::recycle`]).
    static STACKS: FreeList<DefaultStack> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A stack for a new coroutine: a kept one, or a new default one.
fn take_stack() -> DefaultStack {
    recycle::take(&STACKS, |_| true).unwrap_or_default()
}

/// Keep the stacks of the finished coroutines; the others are unwound
/// and freed when dropped.
fn keep_stacks(cpus: Vec<Cpu>) {
    for cpu in cpus.into_iter().filter(|cpu| cpu.done()) {
        recycle::keep(&STACKS, cpu.into_stack(), STACKS_KEPT);
    }
}

/// Run `actors` (actor `i` on model CPU `i`) under `strategy` until
/// `cfg.ops` counted operations are done (or every CPU's clock reached
/// `cfg.until_ns`) and every CPU has finished its current one. The caller
/// tears down (`mm.exit_mmap()`) and reads `mm.violations`; a run that did
/// not finish leaves the model mid-flight.
pub fn run_controlled<A: Actor + 'static>(
    mm: Arc<Mm>,
    actors: Vec<A>,
    cfg: &ControlledConfig,
    strategy: &Strategy,
) -> ControlledRun {
    let mut scheduler = strategy.scheduler(actors.len());
    run_controlled_with(mm, actors, cfg, scheduler.as_mut())
}

/// [`run_controlled`] with a scheduler the caller keeps: the exhaustive
/// checker's [`sched::Explorer`], which carries what it learnt from one
/// run into the next. A scheduler that
/// [`wants_footprints`](Scheduler::wants_footprints) is told what each
/// step touched, named by `mm`'s allocations; it needs a step clock and
/// no operation quota (`cfg.ops` = `u64::MAX`): the quota is a count
/// every CPU reads and the last collapse writes, outside the model.
pub fn run_controlled_with<A: Actor + 'static>(
    mm: Arc<Mm>,
    actors: Vec<A>,
    cfg: &ControlledConfig,
    scheduler: &mut dyn Scheduler,
) -> ControlledRun {
    let n = actors.len();
    let clock = match scheduler.costs() {
        Some(costs) => Clock::Cost(CostClock::new(costs.clone())),
        None => Clock::Step,
    };
    let shared = Rc::new(Shared::new(n, cfg.record_trace, clock));
    let counted = Rc::new(Cell::new(0u64));
    let stop = Rc::new(Cell::new(false));
    let roles: Vec<Role> = actors.iter().map(|a| a.role()).collect();
    let elapsed_ns = Rc::new(Cell::new(0u64));
    let mut cpus: Vec<Cpu> = actors
        .into_iter()
        .enumerate()
        .map(|(cpu, mut actor)| {
            let (mm, shared, counted, stop) = (mm.clone(), shared.clone(), counted.clone(), stop.clone());
            let elapsed_ns = elapsed_ns.clone();
            let (ops, ops_per_cpu, until_ns) = (cfg.ops, cfg.ops_per_cpu, cfg.until_ns);
            Coroutine::with_stack(take_stack(), move |yielder: &Yielder<Resume, Suspend>, _first: Resume| {
                let engine = Controlled { yielder, shared, cpu, clock_ps: 0, guard: StallGuard::new(0) };
                let mut cx = Cx::new(&mm, cpu as u32, actor.role(), engine);
                if let Clock::Step = cx.engine.shared.clock {
                    cx.metrics = Metrics::counts_only();
                }
                let mut done = 0;
                while !stop.get() && done < ops_per_cpu && cx.now_ns() < until_ns {
                    cx.engine.start_op();
                    // Every operation enters the kernel (and so takes time).
                    cx.charge(Cost::KernelEntry, 1);
                    if actor.op(&mut cx) {
                        counted.set(counted.get() + 1);
                        if counted.get() >= ops {
                            stop.set(true);
                        }
                    }
                    done += 1;
                }
                elapsed_ns.set(elapsed_ns.get().max(cx.now_ns()));
                cx.metrics
            })
        })
        .collect();
    let mut metrics = Metrics::default();
    let footprints = scheduler.wants_footprints().then(|| {
        assert!(matches!(shared.clock, Clock::Step), "footprints are kept on a step clock only");
        assert_eq!(cfg.ops, u64::MAX, "footprints do not name the operation quota: explore without one");
        crate::footprint::Recording::start(mm.footprint_regions())
    });
    let (schedule, steps, end) =
        run_loop(&mut cpus, &shared, scheduler, cfg.max_steps, &mut metrics, &mm, &roles, footprints.as_ref());
    drop(footprints);
    let trace = shared.trace.take();
    // Unfinished coroutines are unwound when dropped here.
    keep_stacks(cpus);
    ControlledRun { schedule, steps, elapsed_ns: elapsed_ns.get(), trace, end, metrics, roles }
}

/// The CPUs that can run and those that wait, each in the order the clock
/// gives: on a step clock both by CPU number; on a cost clock the runnable
/// earliest clock first (ties: the lower CPU), the blocked in the order
/// they blocked.
struct Queues {
    runnable: Vec<Runnable>,
    blocked: Vec<u32>,
    by_time: bool,
}

impl Queues {
    fn new(cpus: usize, clock: &Clock) -> Queues {
        // Every clock starts at 0: CPU order is both orders.
        let runnable = (0..cpus as u32).map(|cpu| Runnable { cpu, clock_ps: 0 }).collect();
        Queues { runnable, blocked: vec![], by_time: matches!(clock, Clock::Cost(_)) }
    }

    /// Where a runnable CPU goes: the lower key first.
    fn key(&self, r: &Runnable) -> (u64, u32) {
        (if self.by_time { r.clock_ps } else { 0 }, r.cpu)
    }

    /// A blocked CPU can go on.
    fn wake(&mut self, r: Runnable) {
        let at = self.runnable.partition_point(|e| self.key(e) < self.key(&r));
        self.runnable.insert(at, r);
    }

    /// Runnable entry `i` stopped again with its clock at `clock_ps`
    /// (never earlier than before): move it back past the entries now
    /// before it. On a cost clock that is the few CPUs it just passed,
    /// mostly, so a walk beats a search.
    fn requeue(&mut self, i: usize, clock_ps: u64) {
        let r = Runnable { clock_ps, ..self.runnable[i] };
        let key = self.key(&r);
        let mut at = i;
        while at + 1 < self.runnable.len() && self.key(&self.runnable[at + 1]) < key {
            self.runnable[at] = self.runnable[at + 1];
            at += 1;
        }
        self.runnable[at] = r;
    }

    /// Runnable entry `i` blocked.
    fn block(&mut self, i: usize) {
        let cpu = self.runnable.remove(i).cpu;
        let at = if self.by_time { self.blocked.len() } else { self.blocked.partition_point(|&b| b < cpu) };
        self.blocked.insert(at, cpu);
    }
}

/// The loop: probe, offer the runnable CPUs to the scheduler, resume the
/// one it picks until it stops. Returns the schedule (kept on a step
/// clock), the steps taken and how the run ended. With `footprints`, each
/// step's accesses (its probes' included) go to the scheduler before it
/// picks again.
#[allow(clippy::too_many_arguments)]
fn run_loop(
    cpus: &mut [Cpu],
    shared: &Shared,
    scheduler: &mut dyn Scheduler,
    max_steps: u64,
    metrics: &mut Metrics,
    mm: &Mm,
    roles: &[Role],
    footprints: Option<&crate::footprint::Recording>,
) -> (Vec<u32>, u64, End) {
    let mut state = vec![State::Runnable; cpus.len()];
    let mut queues = Queues::new(cpus.len(), &shared.clock);
    let mut schedule = vec![];
    let mut steps = 0u64;
    let mut last = None;
    let end = loop {
        if let Clock::Step = shared.clock {
            probe(cpus, shared, &mut state, &mut queues, metrics, None, footprints);
        }
        if let (Some(recording), Some(cpu)) = (footprints, last.take()) {
            if recording.active() {
                scheduler.stepped(cpu, recording.footprint());
            }
        }
        if queues.runnable.is_empty() {
            if queues.blocked.is_empty() {
                break End::Finished;
            }
            if let Clock::Cost(_) = shared.clock {
                // Nothing can run: a last look at every waiter before calling it a deadlock.
                probe(cpus, shared, &mut state, &mut queues, metrics, None, None);
                if !queues.runnable.is_empty() {
                    continue;
                }
            }
            break End::Deadlock(describe_deadlock(mm, &state, roles));
        }
        if steps >= max_steps {
            break End::StepLimit;
        }
        // No CPU, or one that cannot run: a schedule that does not fit this run.
        let picked = scheduler.next(&queues.runnable, steps);
        let Some((i, cpu)) = picked.and_then(|cpu| queues.runnable.iter().position(|r| r.cpu == cpu).map(|i| (i, cpu)))
        else {
            break End::Diverged;
        };
        if let Some(recording) = footprints {
            // The step and the probes after it, or neither.
            recording.set_active(scheduler.records_step(steps));
        }
        steps += 1;
        shared.steps.set(steps);
        last = Some(cpu);
        let c = cpu as usize;
        match &shared.clock {
            Clock::Step => schedule.push(cpu),
            Clock::Cost(clock) => {
                let next = queues.runnable.iter().find(|r| r.cpu != cpu);
                clock.horizon_ps.set(next.map_or(u64::MAX, |r| r.clock_ps));
            }
        }
        state[c] = resume(&mut cpus[c], Resume::Run, metrics);
        match state[c] {
            State::Runnable => queues.requeue(i, shared.clocks[c].get()),
            State::Blocked(_) => queues.block(i),
            State::Stalled => break End::Stalled { cpu, report: describe_stall(mm, shared, cpu, roles) },
            State::Done => {
                queues.runnable.remove(i);
            }
        }
        if let Clock::Cost(clock) = &shared.clock {
            // A CPU that blocked is counted by the probe that follows.
            clock.now_ps.set(shared.clocks[c].get());
            let released = clock.released.take();
            if !queues.blocked.is_empty() {
                probe(cpus, shared, &mut state, &mut queues, metrics, Some(released), None);
            }
        }
    };
    (schedule, steps, end)
}

/// Probe blocked CPUs, in the blocked queue's order; those that can go on
/// join the runnable ones. With `released` (the releases since the last
/// probe), a lock or page-lock waiter is probed only if its lock was
/// released, and one release wakes one waiter: both hand over to one CPU,
/// and on a cost clock the queue is in blocking order, which for the
/// ticket lock is ticket order. Without, every blocked CPU is probed.
///
/// With `recording` (the exhaustive checker), a probe that takes what its
/// CPU waits for belongs to the step just taken: the release and the
/// hand-off are one transition, as no step can come between them. A probe
/// that finds its CPU still blocked changed nothing, so what it touched
/// is forgotten: otherwise every step taken while a CPU waits would seem
/// to read the lock it waits for, and race with that lock's holder.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn probe(
    cpus: &mut [Cpu],
    shared: &Shared,
    state: &mut [State],
    queues: &mut Queues,
    metrics: &mut Metrics,
    mut released: Option<Vec<Event>>,
    recording: Option<&crate::footprint::Recording>,
) {
    let mut blocked = std::mem::take(&mut queues.blocked);
    blocked.retain(|&cpu| {
        let c = cpu as usize;
        let State::Blocked(on) = state[c] else { unreachable!("only blocked CPUs are queued as blocked") };
        if let Some(list) = released.as_mut() {
            let release = match on {
                Event::Lock(id) => Some(Event::Unlock(id)),
                Event::PageLock(pfn) => Some(Event::PageOp(pfn)),
                // A table comes back with a grace period: always look (rare).
                _ => None,
            };
            if let Some(release) = release {
                // Not released: not worth a look.
                let Some(at) = list.iter().position(|&r| r == release) else { return true };
                state[c] = look(&mut cpus[c], metrics, recording);
                if state[c] == State::Runnable {
                    // That release has handed over.
                    list.swap_remove(at);
                }
            } else {
                state[c] = look(&mut cpus[c], metrics, recording);
            }
        } else {
            state[c] = look(&mut cpus[c], metrics, recording);
        }
        match state[c] {
            State::Blocked(_) => true,
            State::Runnable => {
                queues.wake(Runnable { cpu, clock_ps: shared.clocks[c].get() });
                false
            }
            State::Stalled | State::Done => unreachable!("a probe only checks what the CPU waits for"),
        }
    });
    queues.blocked = blocked;
    if let Clock::Cost(clock) = &shared.clock {
        clock.blocked.set(queues.blocked.len());
    }
}

/// Probe one blocked CPU: whether it can go on now. With `recording`, what
/// the probe touched joins the step just taken if the CPU took what it
/// waited for, and is forgotten if not (see [`probe`]).
#[inline]
fn look(co: &mut Cpu, metrics: &mut Metrics, recording: Option<&crate::footprint::Recording>) -> State {
    if let Some(recording) = recording {
        recording.begin_probe();
    }
    let state = resume(co, Resume::Probe, metrics);
    if let Some(recording) = recording {
        recording.end_probe(state == State::Runnable);
    }
    state
}

#[inline]
fn resume(co: &mut Cpu, how: Resume, metrics: &mut Metrics) -> State {
    match co.resume(how) {
        CoroutineResult::Yield(Suspend::Ready) => State::Runnable,
        CoroutineResult::Yield(Suspend::Blocked(ev)) => State::Blocked(ev),
        CoroutineResult::Yield(Suspend::Stalled) => State::Stalled,
        CoroutineResult::Return(m) => {
            metrics.merge(m);
            State::Done
        }
    }
}

/// Like the hung-task detector: every blocked CPU, what it waits for, and
/// who holds that.
fn describe_deadlock(mm: &Mm, state: &[State], roles: &[Role]) -> String {
    let mut lines = vec![];
    for (cpu, s) in state.iter().enumerate() {
        if let State::Blocked(ev) = s {
            let what = describe_wait(mm, *ev, roles);
            lines.push(format!("CPU {cpu} ({}) waits for {what}", roles[cpu]));
        }
    }
    lines.join("; ")
}

/// Why CPU `cpu`'s clock stood still: where it was, its last scheduling
/// point, what it held, and which costs of the model are zero (the likely
/// cause).
fn describe_stall(mm: &Mm, shared: &Shared, cpu: u32, roles: &[Role]) -> String {
    let point = match shared.stalled_at.get() {
        Some(Event::Trylock(id, _)) => {
            format!("the last a spin_trylock of {}", describe_wait(mm, Event::Lock(id), roles))
        }
        Some(ev) => format!("the last at {}", describe_wait(mm, ev, roles)),
        None => "operation after operation, at no scheduling point".to_owned(),
    };
    let held = locks_held_by(mm, cpu);
    let held = if held.is_empty() { "nothing".to_owned() } else { held.join(", ") };
    let zero: Vec<&str> = Cost::iter().filter(|&c| shared.clock.ps(c, 1) == 0).map(|c| c.key()).collect();
    let cause = if zero.is_empty() {
        "no cost in this model is zero, so it passes only scheduling points that charge nothing (a \
         spin_trylock of a lock the CPU holds itself, say)"
            .to_owned()
    } else {
        format!("zero in this cost model: {}", zero.join(", "))
    };
    format!(
        "CPU {cpu} ({}) made over {STALL_CALLS} calls in a row into the simulation at {} ns of virtual time \
         without its clock moving, {point}, holding {held}: a loop that costs nothing; {cause}",
        roles[cpu as usize],
        shared.clocks[cpu as usize].get() / 1000,
    )
}
