//! The controlled engine: every model CPU is a stackful coroutine
//! (corosensei) on one OS thread, and a [`Strategy`] decides which one runs
//! at every scheduling point — each lock acquire, trylock and release, each
//! lockless PMD/PTE read, TLB access and page-lock operation. Accesses made
//! under the lock that protects them are not scheduling points: a 512-entry
//! scan under `ptl` is one step.
//!
//! The same policy and actor code runs here as on the native engine. A run
//! is a pure function of the model configuration, the actors' seeds and the
//! strategy's choices, so the sequence of choices (the schedule) replays it
//! exactly.
//!
//! A CPU that must wait (a spinlock held by another, the page lock, a table
//! still in its grace period) reports itself blocked; before every choice
//! the engine asks each blocked CPU whether it can go on now ("probe"), and
//! only runnable CPUs are offered to the strategy. When none is runnable and
//! some have not finished, the run ends in a deadlock, reported with who
//! waits for what and who holds it.
//!
//! # The simulation engine: the time-ordered strategy
//!
//! With [`Strategy::TimeOrdered`] the same engine is a discrete-event
//! simulation of a machine with one virtual CPU per actor: every
//! primitive charges its [`Cost`] to its CPU's virtual clock, and the
//! runnable CPU with the earliest clock runs next (ties: the lowest CPU
//! number), until its clock passes the next CPU's ("horizon"), so no CPU
//! runs ahead of another by more than one primitive. A spinning waiter
//! burns virtual time until the holder releases (its clock jumps to the
//! release), then pays a hand-off; the ticket lock hands over in FIFO
//! order, as the queued spinlock does. A sleeping waiter (the page lock)
//! also pays a wake-up. Blocked CPUs are probed only when something they
//! could be waiting for was released. There is no randomness in the
//! strategy: a run is a pure function of the configuration, the seed and
//! the cost model, and no schedule is kept (it would be as long as the run).
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
//! Shuttle (awslabs) was weighed: it offers PCT and replayable schedules on
//! corosensei too, but schedules threads it spawns itself and owns its own
//! notion of time; the simulation engine built on this one needs per-CPU
//! virtual clocks and costs, so the scheduler is kept here, small.

use crate::actor::Actor;
use crate::cost::{Cost, CostTable};
use crate::engine::{Controlled, Resume, Shared, SimShared, StallGuard, Suspend, STALL_CALLS};
use crate::event::{Event, TraceEntry};
use crate::harness::Harness;
use crate::kernel::Cx;
use crate::metrics::Metrics;
use crate::mm::Mm;
use crate::role::Role;
use crate::watchdog::{describe_wait, locks_held_by};
use corosensei::{Coroutine, CoroutineResult, Yielder};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::sync::Arc;
use strum::IntoEnumIterator;

/// How the next CPU is chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Uniformly among the runnable CPUs.
    Random {
        /// Seed of the choices.
        seed: u64,
    },
    /// Probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010):
    /// random distinct priorities, the highest-priority runnable CPU runs,
    /// and at `depth - 1` random steps the running CPU drops below all.
    /// Finds any bug of depth `d` with probability at least 1/(n k^(d-1)).
    Pct {
        /// Seed of the priorities and change points.
        seed: u64,
        /// Bug depth `d` (>= 1).
        depth: u32,
        /// Steps a run is expected to take (`k`): change points fall in 1..=k.
        expected_steps: u64,
    },
    /// Follow a recorded schedule exactly.
    Replay(Vec<u32>),
    /// Follow a schedule where it can: when the CPU it names cannot run
    /// (or the schedule has ended), keep running the CPU that ran last, or
    /// else the lowest-numbered runnable one. For shrinking a
    /// counterexample: the run's own schedule then replays it exactly.
    Guided(Vec<u32>),
    /// The simulation engine: every primitive costs virtual time (from
    /// the table), and the CPU with the earliest clock runs (see the
    /// module documentation). No schedule is recorded.
    TimeOrdered(CostTable),
}

enum Chooser {
    Random(Box<ChaCha8Rng>),
    Pct { priorities: Vec<u64>, change_points: Vec<u64> },
    Replay(Vec<u32>),
    Guided { schedule: Vec<u32>, last: Option<u32> },
}

impl Chooser {
    fn new(strategy: &Strategy, cpus: usize) -> Chooser {
        match strategy {
            Strategy::Random { seed } => Chooser::Random(Box::new(ChaCha8Rng::seed_from_u64(*seed))),
            Strategy::Pct { seed, depth, expected_steps } => {
                let mut rng = ChaCha8Rng::seed_from_u64(*seed);
                let depth = (*depth).max(1) as u64;
                // Initial priorities depth..depth+n, shuffled (Fisher-Yates).
                let mut priorities: Vec<u64> = (0..cpus as u64).map(|i| depth + i).collect();
                for i in (1..cpus).rev() {
                    priorities.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
                }
                let k = (*expected_steps).max(1);
                let change_points = (0..depth - 1).map(|_| 1 + rng.next_u64() % k).collect();
                Chooser::Pct { priorities, change_points }
            }
            Strategy::Replay(schedule) => Chooser::Replay(schedule.clone()),
            Strategy::Guided(schedule) => Chooser::Guided { schedule: schedule.clone(), last: None },
            Strategy::TimeOrdered(_) => unreachable!("the time-ordered strategy has its own loop"),
        }
    }

    /// Pick among `runnable` (ascending CPU numbers) at step `step`.
    fn pick(&mut self, runnable: &[u32], step: u64) -> Option<u32> {
        match self {
            Chooser::Random(rng) => Some(runnable[(rng.next_u64() % runnable.len() as u64) as usize]),
            Chooser::Pct { priorities, change_points } => {
                let top =
                    |p: &Vec<u64>| *runnable.iter().max_by_key(|&&c| p[c as usize]).expect("runnable is not empty");
                let mut cpu = top(priorities);
                if let Some(i) = change_points.iter().position(|&c| c == step) {
                    // Change point i: the would-be runner drops below every initial priority.
                    priorities[cpu as usize] = i as u64;
                    cpu = top(priorities);
                }
                Some(cpu)
            }
            Chooser::Replay(schedule) => schedule.get(step as usize).copied().filter(|c| runnable.contains(c)),
            Chooser::Guided { schedule, last } => {
                let cpu = [schedule.get(step as usize).copied(), *last]
                    .into_iter()
                    .flatten()
                    .find(|c| runnable.contains(c))
                    .unwrap_or(runnable[0]);
                *last = Some(cpu);
                Some(cpu)
            }
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
    /// Under the time-ordered strategy: a CPU's clock stood still through
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
    /// The strategy.
    pub strategy: Strategy,
    /// Counted operations (collapses) after which every CPU stops.
    pub ops: u64,
    /// Operations each CPU may do at most (bounds runs under PCT, where a
    /// high-priority CPU runs until it blocks or finishes).
    pub ops_per_cpu: u64,
    /// Give up after this many scheduling steps.
    pub max_steps: u64,
    /// Each CPU stops starting operations once its clock reaches this
    /// (virtual time under the time-ordered strategy), ns.
    pub until_ns: u64,
    /// Keep a timeline.
    pub record_trace: bool,
}

/// The result of one controlled run.
pub struct ControlledRun {
    /// The CPU chosen at every step: replaying it reproduces the run
    /// (empty under the time-ordered strategy, which needs none).
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

/// Run `actors` (actor `i` on model CPU `i`) under `cfg.strategy` until
/// `cfg.ops` counted operations are done (or every CPU's clock reached
/// `cfg.until_ns`) and every CPU has finished its current one. The caller
/// tears down (`mm.exit_mmap()`) and reads `mm.violations`; a run that did
/// not finish leaves the model mid-flight.
pub fn run_controlled<A: Actor + 'static>(mm: Arc<Mm>, actors: Vec<A>, cfg: &ControlledConfig) -> ControlledRun {
    let n = actors.len();
    let sim = match &cfg.strategy {
        Strategy::TimeOrdered(costs) => Some(SimShared {
            costs: costs.clone(),
            horizon_ps: Cell::new(u64::MAX),
            now_ps: Cell::new(0),
            clocks: (0..n).map(|_| Cell::new(0)).collect(),
            blocked: Cell::new(0),
            released: RefCell::new(vec![]),
            stalled_at: Cell::new(None),
        }),
        _ => None,
    };
    let shared = Rc::new(Shared { record: cfg.record_trace, sim, ..Shared::default() });
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
            Coroutine::new(move |yielder: &Yielder<Resume, Suspend>, _first: Resume| {
                let engine = Controlled { yielder, shared, cpu, clock_ps: 0, guard: StallGuard::new(0) };
                let mut cx = Cx::new(&mm, cpu as u32, actor.role(), engine);
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
    let (schedule, steps, end) = if let Strategy::TimeOrdered(_) = cfg.strategy {
        let (steps, end) = time_ordered(&mut cpus, &shared, cfg.max_steps, &mut metrics, &mm, &roles);
        (vec![], steps, end)
    } else {
        let (schedule, end) = chosen(&mut cpus, &shared, cfg, &mut metrics, &mm, &roles);
        let steps = schedule.len() as u64;
        (schedule, steps, end)
    };
    let trace = shared.trace.take();
    // Unfinished coroutines are unwound when dropped here.
    drop(cpus);
    ControlledRun { schedule, steps, elapsed_ns: elapsed_ns.get(), trace, end, metrics, roles }
}

/// The checker's loop: probe every blocked CPU, let the strategy choose
/// among the runnable ones, run it to its next scheduling point.
fn chosen(
    cpus: &mut [Cpu],
    shared: &Shared,
    cfg: &ControlledConfig,
    metrics: &mut Metrics,
    mm: &Mm,
    roles: &[Role],
) -> (Vec<u32>, End) {
    let mut state = vec![State::Runnable; cpus.len()];
    let mut chooser = Chooser::new(&cfg.strategy, cpus.len());
    let mut schedule = vec![];
    let end = loop {
        for (cpu, co) in cpus.iter_mut().enumerate() {
            if let State::Blocked(_) = state[cpu] {
                state[cpu] = resume(co, Resume::Probe, metrics);
            }
        }
        let runnable: Vec<u32> = (0..cpus.len() as u32).filter(|&c| state[c as usize] == State::Runnable).collect();
        if runnable.is_empty() {
            if state.iter().all(|s| *s == State::Done) {
                break End::Finished;
            }
            break End::Deadlock(describe_deadlock(mm, &state, roles));
        }
        let step = schedule.len() as u64;
        if step >= cfg.max_steps {
            break End::StepLimit;
        }
        let Some(cpu) = chooser.pick(&runnable, step) else {
            break End::Diverged;
        };
        schedule.push(cpu);
        shared.steps.set(step + 1);
        state[cpu as usize] = resume(&mut cpus[cpu as usize], Resume::Run, metrics);
    };
    (schedule, end)
}

/// The simulation's loop: run the runnable CPU with the earliest clock
/// until it passes the next one's; after a release, probe the CPUs
/// blocked on what was released.
fn time_ordered(
    cpus: &mut [Cpu],
    shared: &Shared,
    max_steps: u64,
    metrics: &mut Metrics,
    mm: &Mm,
    roles: &[Role],
) -> (u64, End) {
    let sim = shared.sim.as_ref().expect("time-ordered runs have a cost table");
    let mut state = vec![State::Runnable; cpus.len()];
    let mut runnable: BinaryHeap<Reverse<(u64, u32)>> = (0..cpus.len() as u32).map(|c| Reverse((0, c))).collect();
    let mut blocked: Vec<u32> = vec![];
    let mut steps = 0u64;
    // Probe blocked CPUs; those that can go on become runnable. With
    // `released` (the releases since the last probe), a lock or page-lock
    // waiter is probed only if its lock was released, and one release
    // wakes one waiter: both hand over to one CPU, and `blocked` is in
    // blocking order, which for the ticket lock is ticket order. Without,
    // every blocked CPU is probed.
    let probe = |cpus: &mut [Cpu],
                 state: &mut [State],
                 blocked: &mut Vec<u32>,
                 runnable: &mut BinaryHeap<Reverse<(u64, u32)>>,
                 metrics: &mut Metrics,
                 mut released: Option<Vec<Event>>| {
        blocked.retain(|&cpu| {
            let State::Blocked(on) = state[cpu as usize] else { unreachable!("only blocked CPUs are listed") };
            let release = match on {
                Event::Lock(id) => Some(Event::Unlock(id)),
                Event::PageLock(pfn) => Some(Event::PageOp(pfn)),
                // A table comes back with a grace period: always look (rare).
                _ => None,
            };
            let pending = match (&released, release) {
                (Some(list), Some(ev)) => list.iter().position(|&r| r == ev),
                _ => None,
            };
            if released.is_some() && release.is_some() && pending.is_none() {
                return true;
            }
            state[cpu as usize] = resume(&mut cpus[cpu as usize], Resume::Probe, metrics);
            match state[cpu as usize] {
                State::Blocked(_) => true,
                State::Runnable => {
                    if let (Some(list), Some(i)) = (released.as_mut(), pending) {
                        list.swap_remove(i);
                    }
                    runnable.push(Reverse((sim.clocks[cpu as usize].get(), cpu)));
                    false
                }
                State::Stalled => unreachable!("a probe only checks what the CPU waits for"),
                State::Done => false,
            }
        });
        sim.blocked.set(blocked.len());
    };
    let end = loop {
        let Some(Reverse((_, cpu))) = runnable.pop() else {
            if blocked.is_empty() {
                break End::Finished;
            }
            // Nothing can run: a last look at every waiter before calling it a deadlock.
            probe(cpus, &mut state, &mut blocked, &mut runnable, metrics, None);
            if runnable.is_empty() {
                break End::Deadlock(describe_deadlock(mm, &state, roles));
            }
            continue;
        };
        if steps >= max_steps {
            break End::StepLimit;
        }
        steps += 1;
        shared.steps.set(steps);
        sim.horizon_ps.set(runnable.peek().map_or(u64::MAX, |Reverse((t, _))| *t));
        let c = cpu as usize;
        state[c] = resume(&mut cpus[c], Resume::Run, metrics);
        match state[c] {
            State::Runnable => runnable.push(Reverse((sim.clocks[c].get(), cpu))),
            State::Blocked(_) => {
                blocked.push(cpu);
                sim.blocked.set(blocked.len());
            }
            State::Stalled => break End::Stalled { cpu, report: describe_stall(mm, sim, cpu, roles) },
            State::Done => {}
        }
        sim.now_ps.set(sim.clocks[c].get());
        let released = sim.released.take();
        if !blocked.is_empty() {
            probe(cpus, &mut state, &mut blocked, &mut runnable, metrics, Some(released));
        }
    };
    (steps, end)
}

fn resume(co: &mut Cpu, how: Resume, metrics: &mut Metrics) -> State {
    match co.resume(how) {
        CoroutineResult::Yield(Suspend::Ready) => State::Runnable,
        CoroutineResult::Yield(Suspend::Blocked(ev)) => State::Blocked(ev),
        CoroutineResult::Yield(Suspend::Stalled) => State::Stalled,
        CoroutineResult::Return(m) => {
            metrics.merge(&m);
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
fn describe_stall(mm: &Mm, sim: &SimShared, cpu: u32, roles: &[Role]) -> String {
    let point = match sim.stalled_at.get() {
        Some(Event::Trylock(id, _)) => {
            format!("the last a spin_trylock of {}", describe_wait(mm, Event::Lock(id), roles))
        }
        Some(ev) => format!("the last at {}", describe_wait(mm, ev, roles)),
        None => "operation after operation, at no scheduling point".to_owned(),
    };
    let held = locks_held_by(mm, cpu);
    let held = if held.is_empty() { "nothing".to_owned() } else { held.join(", ") };
    let zero: Vec<&str> = Cost::iter().filter(|&c| sim.costs.ps(c, 1) == 0).map(|c| c.key()).collect();
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
        sim.clocks[cpu as usize].get() / 1000,
    )
}
