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
//! Shuttle (awslabs) was weighed: it offers PCT and replayable schedules on
//! corosensei too, but schedules threads it spawns itself and owns its own
//! notion of time; the simulation engine built on this one needs per-CPU
//! virtual clocks and costs, so the scheduler is kept here, small.

use crate::engine::{Engine, Event, Step};
use crate::metrics::{Metrics, Role};
use crate::mm::Mm;
use crate::native::Actor;
use crate::policy::{DynPolicy, ScanResult};
use crate::primitives::Cx;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

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
}

/// One line of a run's timeline.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TraceEntry {
    /// Scheduling step it happened in.
    pub step: u64,
    /// The CPU.
    pub cpu: u32,
    /// What it did.
    pub event: Event,
}

#[derive(Default)]
struct Shared {
    steps: Cell<u64>,
    record: bool,
    trace: RefCell<Vec<TraceEntry>>,
}

/// The engine a model CPU sees inside a coroutine.
pub struct Controlled<'y> {
    yielder: &'y Yielder<Resume, Suspend>,
    shared: Rc<Shared>,
    clock_ns: u64,
}

impl Controlled<'_> {
    fn wait(&mut self, on: Event, mut ready: impl FnMut() -> bool) {
        if ready() {
            return;
        }
        loop {
            match self.yielder.suspend(Suspend::Blocked(on)) {
                // Asked to check: if it is there now, take it and wait to be run.
                Resume::Probe => {
                    if ready() {
                        while self.yielder.suspend(Suspend::Ready) != Resume::Run {}
                        return;
                    }
                }
                Resume::Run => {
                    if ready() {
                        return;
                    }
                }
            }
        }
    }
}

impl Engine for Controlled<'_> {
    const NAME: &'static str = "controlled";
    const PREEMPTS: bool = true;

    fn now_ns(&mut self) -> u64 {
        self.clock_ns
    }

    fn spin_until(&mut self, on: Event, ready: impl FnMut() -> bool) {
        self.wait(on, ready);
    }

    fn sleep_until(&mut self, on: Event, ready: impl FnMut() -> bool) {
        self.wait(on, ready);
    }

    fn busy_wait(&mut self, ns: u64) {
        self.clock_ns += ns;
        self.sched_point(0, Event::LocklessRead);
    }

    fn idle(&mut self, ns: u64) {
        self.clock_ns += ns;
        self.sched_point(0, Event::LocklessRead);
    }

    fn sched_point(&mut self, _cpu: u32, _ev: Event) {
        self.clock_ns += 1;
        while self.yielder.suspend(Suspend::Ready) != Resume::Run {}
    }

    fn trace(&mut self, cpu: u32, event: Event) {
        if self.shared.record {
            let step = self.shared.steps.get();
            self.shared.trace.borrow_mut().push(TraceEntry { step, cpu, event });
        }
    }

    fn step(&mut self, _cpu: u32, _step: Step) {}

    fn collapse(policy: &dyn DynPolicy, cx: &mut Cx<'_, Self>, haddr: u64, install_pmd: bool) -> ScanResult {
        policy.collapse_controlled(cx, haddr, install_pmd)
    }
}

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
    /// Keep a timeline.
    pub record_trace: bool,
}

/// The result of one controlled run.
pub struct ControlledRun {
    /// The CPU chosen at every step: replaying it reproduces the run.
    pub schedule: Vec<u32>,
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
        self.schedule.len() as u64
    }
}

#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum State {
    Runnable,
    Blocked(Event),
    Done,
}

type Cpu = Coroutine<Resume, Suspend, Metrics>;

/// Run `actors` (actor `i` on model CPU `i`) under `cfg.strategy` until
/// `cfg.ops` counted operations are done and every CPU has finished its
/// current one. The caller tears down (`mm.exit_mmap()`) and reads
/// `mm.violations`; a run that did not finish leaves the model mid-flight.
pub fn run_controlled<A: Actor + 'static>(mm: Arc<Mm>, actors: Vec<A>, cfg: &ControlledConfig) -> ControlledRun {
    let shared = Rc::new(Shared { record: cfg.record_trace, ..Shared::default() });
    let counted = Rc::new(Cell::new(0u64));
    let stop = Rc::new(Cell::new(false));
    let roles: Vec<Role> = actors.iter().map(|a| a.role()).collect();
    let mut cpus: Vec<Cpu> = actors
        .into_iter()
        .enumerate()
        .map(|(cpu, mut actor)| {
            let (mm, shared, counted, stop) = (mm.clone(), shared.clone(), counted.clone(), stop.clone());
            let (ops, ops_per_cpu) = (cfg.ops, cfg.ops_per_cpu);
            Coroutine::new(move |yielder: &Yielder<Resume, Suspend>, _first: Resume| {
                let engine = Controlled { yielder, shared, clock_ns: 0 };
                let mut cx = Cx::new(&mm, cpu as u32, actor.role(), engine);
                let mut done = 0;
                while !stop.get() && done < ops_per_cpu {
                    if actor.op(&mut cx) {
                        counted.set(counted.get() + 1);
                        if counted.get() >= ops {
                            stop.set(true);
                        }
                    }
                    done += 1;
                }
                cx.metrics
            })
        })
        .collect();
    let mut state = vec![State::Runnable; cpus.len()];
    let mut chooser = Chooser::new(&cfg.strategy, cpus.len());
    let mut schedule = vec![];
    let mut metrics = Metrics::default();
    let end = loop {
        for (cpu, co) in cpus.iter_mut().enumerate() {
            if let State::Blocked(_) = state[cpu] {
                state[cpu] = resume(co, Resume::Probe, &mut metrics);
            }
        }
        let runnable: Vec<u32> = (0..cpus.len() as u32).filter(|&c| state[c as usize] == State::Runnable).collect();
        if runnable.is_empty() {
            if state.iter().all(|s| *s == State::Done) {
                break End::Finished;
            }
            break End::Deadlock(describe_deadlock(&mm, &state, &roles));
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
        state[cpu as usize] = resume(&mut cpus[cpu as usize], Resume::Run, &mut metrics);
    };
    let trace = shared.trace.take();
    // Unfinished coroutines are unwound when dropped here.
    drop(cpus);
    ControlledRun { schedule, trace, end, metrics, roles }
}

fn resume(co: &mut Cpu, how: Resume, metrics: &mut Metrics) -> State {
    match co.resume(how) {
        CoroutineResult::Yield(Suspend::Ready) => State::Runnable,
        CoroutineResult::Yield(Suspend::Blocked(ev)) => State::Blocked(ev),
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
            let what = match ev {
                Event::Lock(id) => {
                    let holder = mm
                        .lock(*id)
                        .holder()
                        .map_or("nobody".to_owned(), |h| format!("CPU {h} ({})", roles[h as usize]));
                    format!("{} held by {holder}", mm.lock_name(*id))
                }
                Event::PageLock(pfn) => format!("page lock of {pfn}"),
                Event::TableAlloc => "a free page table".to_owned(),
                other => format!("{other:?}"),
            };
            lines.push(format!("CPU {cpu} ({}) waits for {what}", roles[cpu]));
        }
    }
    lines.join("; ")
}
