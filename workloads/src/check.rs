//! The race checker: run a policy on a scenario under many controlled
//! schedules, each on a fresh model, with every oracle on; count
//! violations by oracle and keep the first counterexample with the
//! schedule that replays it.
//!
//! A counterexample is shrunk before it is kept (fewer context switches,
//! fewer steps, same oracle), replayed with a timeline, and given a
//! replay token (`s1-0x12.1x3.0x40`: CPU 0 for 12 steps, CPU 1 for 3, ...)
//! that [`replay`] runs again exactly, on the same scenario and seed.

use crate::actors::Actor;
use crate::presets::{preset, FUTURE_INSERTER_PRESETS, LATER_KERNEL_PRESETS, PRESETS};
use crate::scenario::{Scenario, ScenarioError};
use bench_core::controlled::{run_controlled_with, ControlledConfig, ControlledRun, End, Strategy};
use bench_core::kernel::{DynPolicy, LockId};
use bench_core::results::{TimelineEntry, TimelineEvent, TimelineLock};
use bench_core::sched::{Exploration, Scheduler};
use bench_core::LockClass;
use bench_core::{Event, Mm, Oracle, Role, Violation};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

/// Which search strategy.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Search {
    /// Probabilistic concurrency testing of the given depth.
    Pct {
        /// Bug depth.
        depth: u32,
    },
    /// Uniformly random choices.
    Random,
}

/// How much to search.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Strategy.
    pub search: Search,
    /// Schedules to run.
    pub schedules: u64,
    /// Base seed; schedule `i` uses a seed derived from it and `i`.
    pub seed: u64,
    /// Collapses per schedule.
    pub collapses: u64,
    /// Operations each CPU may do per schedule.
    pub ops_per_cpu: u64,
    /// Step budget per schedule.
    pub max_steps: u64,
    /// Stop at the first violating schedule.
    pub stop_at_first: bool,
    /// Replays the shrinker may spend on the first counterexample (0: keep
    /// it as found).
    pub shrink_budget: u32,
    /// Threads that run schedules (at least 1). The report does not
    /// depend on it: schedule `i` is a function of the seed and `i`, and
    /// results are taken in schedule order.
    pub jobs: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            search: Search::Pct { depth: 3 },
            schedules: 4000,
            seed: 1,
            collapses: 2,
            ops_per_cpu: 24,
            max_steps: 100_000,
            stop_at_first: false,
            shrink_budget: 200,
            jobs: 1,
        }
    }
}

/// A schedule that broke a rule, replayable.
#[derive(Clone, Debug)]
pub struct Counterexample {
    /// Which schedule (0-based) of the search found it; its actors drew
    /// that schedule's streams ([`actor_seed`]), so a replay needs it.
    pub index: u64,
    /// Every violation the schedule produced, gravest first
    /// ([`Violation::verdict_rank`]; the first is the verdict).
    pub violations: Vec<Violation>,
    /// The choices, one per step (after shrinking): [`token`] encodes it.
    pub schedule: Vec<u32>,
    /// The schedule as the search found it.
    pub original: Vec<u32>,
    /// Replays the shrinker spent.
    pub shrink_replays: u32,
    /// The timeline of the replay: every event of its trace, typed
    /// ([`timeline_event`]) while the model that names the locks was alive.
    pub timeline: Vec<TimelineEntry>,
    /// How many entries of `timeline` had happened when the first violation
    /// was reported (all of them for one found at teardown).
    pub violation_at: usize,
    /// Role of each CPU.
    pub roles: Vec<Role>,
}

impl Counterexample {
    /// The oracle of the verdict (the first violation).
    pub fn oracle(&self) -> Oracle {
        self.violations[0].oracle
    }

    /// The replay token of the schedule.
    pub fn token(&self) -> String {
        token(self.index, &self.schedule)
    }
}

/// What a search found for one policy.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// The policy's label.
    pub policy: String,
    /// Schedules run.
    pub schedules: u64,
    /// Scheduling steps over all schedules.
    pub steps: u64,
    /// Violations per oracle: (schedules with one, first schedule index).
    pub by_oracle: BTreeMap<Oracle, (u64, u64)>,
    /// Schedules that broke a rule.
    pub violating: u64,
    /// Of those, the schedules whose every violation is the guard-marker
    /// race ([`Violation::freed_with_guard_markers_only`]), reported apart.
    pub guard_marker_races: u64,
    /// The gravest verdict ([`Oracle::gravity`]) of a schedule whose
    /// findings are not only the guard-marker race: what the policy is
    /// judged by.
    pub gravest_beyond_guard_markers: Option<Oracle>,
    /// Schedules that hit the step budget (possible livelock; not a verdict).
    pub step_limits: u64,
    /// The counterexample: the first schedule whose verdict is the gravest
    /// of the search ([`Violation::verdict_rank`]).
    pub first: Option<Counterexample>,
    /// Wall time of the search, s (shrinking and the timeline replay not
    /// included).
    pub search_s: f64,
    /// Wall time from the start of the search to the end of the first
    /// violating schedule, s.
    pub first_found_s: Option<f64>,
    /// Wall time of shrinking and replaying the first counterexample, s.
    pub shrink_s: f64,
    /// For an exhaustive check ([`crate::exhaustive`]): how far the
    /// exploration went. Its runs are the report's schedules.
    pub exhaustive: Option<ExhaustiveRun>,
}

/// How far an exhaustive check went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExhaustiveRun {
    /// The explorer's counts.
    pub stats: Exploration,
    /// The preemption bound, if one was set.
    pub bound: Option<u32>,
    /// Whether it stopped at its first violation (then it is not complete).
    pub stopped_at_first: bool,
}

impl ExhaustiveRun {
    /// Whether every interleaving of the scope was explored.
    pub fn complete(&self) -> bool {
        self.stats.complete && !self.stopped_at_first
    }
}

impl CheckReport {
    /// Whether any rule was broken.
    pub fn failed(&self) -> bool {
        !self.by_oracle.is_empty()
    }

    /// The gravest rule any schedule broke ([`Oracle::gravity`]).
    pub fn gravest(&self) -> Option<Oracle> {
        self.by_oracle.keys().copied().min_by_key(|o| o.gravity())
    }

    /// Whether a schedule broke a rule other than by the guard-marker race.
    pub fn failed_beyond_guard_markers(&self) -> bool {
        self.violating > self.guard_marker_races
    }

    /// The verdict in one word: `FAIL` when a rule was broken; else
    /// `verified` for an exhaustive check that explored every
    /// interleaving of its scope, `bounded` for one its bound (or its
    /// first violation) cut short, `ok` for a sampled one.
    pub fn verdict_word(&self) -> &'static str {
        match &self.exhaustive {
            _ if self.failed() => "FAIL",
            Some(e) if e.complete() => "verified",
            Some(_) => "bounded",
            None => "ok",
        }
    }
}

/// The strategy seed of schedule `i` (splitmix64 of the base seed and `i`).
pub fn schedule_seed(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i + 1));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of the actors' streams in schedule `i` of a search of a
/// scenario seeded `seed` (splitmix64 of the seed's complement and `i`,
/// so it is not the strategy's seed). Each schedule draws its own
/// operations (the addresses uffd fills, a reader caches, COW copies) as
/// well as its own interleaving: with one set of operations for every
/// schedule, a race that needs two actors to pick the same entry is
/// either in every schedule's operations or in none.
pub fn actor_seed(seed: u64, i: u64) -> u64 {
    schedule_seed(!seed, i)
}

/// Run schedule `index` of a search (its actors' streams,
/// [`actor_seed`]) under `strategy` on a fresh model; returns the run and
/// its violations (teardown included when the run finished; a deadlock is
/// one violation).
pub fn run_schedule(
    policy: &Arc<dyn DynPolicy>,
    scenario: &Scenario,
    index: u64,
    strategy: Strategy,
    opts: &CheckOptions,
    record_trace: bool,
) -> Result<(ControlledRun, Vec<Violation>), ScenarioError> {
    run_on_fresh_mm(policy, scenario, index, strategy, opts, record_trace).map(|(_, run, v)| (run, v))
}

/// [`run_schedule`], also handing back the model (for naming its locks).
fn run_on_fresh_mm(
    policy: &Arc<dyn DynPolicy>,
    scenario: &Scenario,
    index: u64,
    strategy: Strategy,
    opts: &CheckOptions,
    record_trace: bool,
) -> Result<(Arc<Mm>, ControlledRun, Vec<Violation>), ScenarioError> {
    let mut scheduler = strategy.scheduler(scenario.threads.total() as usize);
    run_under(policy, scenario, index, scheduler.as_mut(), opts, record_trace)
}

/// Schedule `index` of a search of `policy` on `scenario` (its actors'
/// streams, [`actor_seed`]), on a fresh model, under a scheduler the
/// caller keeps (the exhaustive checker's explorer, or any other):
/// the model, the run, and its violations, gravest first.
pub fn run_under(
    policy: &Arc<dyn DynPolicy>,
    scenario: &Scenario,
    index: u64,
    scheduler: &mut dyn Scheduler,
    opts: &CheckOptions,
    record_trace: bool,
) -> Result<(Arc<Mm>, ControlledRun, Vec<Violation>), ScenarioError> {
    let mm =
        Arc::new(Mm::new(scenario.mm_config()).map_err(|e| ScenarioError::new(format!("building the model: {e}")))?);
    let streams = Scenario { seed: actor_seed(scenario.seed, index), ..scenario.clone() };
    let actors = Actor::for_scenario(&streams, policy);
    if scenario.scope.is_some() {
        // A scope's threads have all run the mm before it starts, so no
        // flush races a thread's first switch into it.
        for (cpu, actor) in actors.iter().enumerate() {
            if actor.runs_the_mm() {
                mm.tlbs.cpumask_set(cpu as u32);
            }
        }
    }
    let cfg = ControlledConfig {
        ops: opts.collapses,
        ops_per_cpu: opts.ops_per_cpu,
        max_steps: opts.max_steps,
        until_ns: u64::MAX,
        record_trace,
    };
    let run = run_controlled_with(mm.clone(), actors, &cfg, scheduler);
    match &run.end {
        End::Finished => {
            mm.exit_mmap();
        }
        End::Deadlock(who) => mm.report(Oracle::Deadlock, None, None, format!("every CPU is blocked: {who}")),
        End::StepLimit | End::Diverged | End::Stalled { .. } => {}
    }
    // Gravest first (stable: each rule's findings in the order found), so
    // the first is the schedule's verdict.
    let mut violations = mm.violations.snapshot().0;
    violations.sort_by_key(Violation::verdict_rank);
    Ok((mm, run, violations))
}

/// The schedules that give PCT its estimate of a run's length. They run
/// one at a time, each with the length of the one before as its estimate
/// (1000 steps for the first); every later schedule takes their mean. A
/// schedule's strategy then depends on the seed and its number only,
/// never on how many threads ran the schedules before it, and after the
/// pilot nothing waits for another schedule to finish.
pub const PILOT: u64 = 16;

/// Schedules started ahead of the one the search takes next, per worker,
/// after the pilot: enough that no worker waits for the search to take a
/// result, few enough that a search stopped at its first finding wastes
/// little. Only how the work is cut, never what it computes.
const AHEAD_PER_JOB: u64 = 16;

/// One schedule's run and violations; a worker thread's panic, caught
/// to be resumed where the search reaches that schedule.
type Outcome = std::thread::Result<Result<(ControlledRun, Vec<Violation>), ScenarioError>>;

/// The schedule a search keeps to shrink into its counterexample: its
/// number, the verdict's oracle, its choices.
pub(crate) type Kept = (u64, Oracle, Vec<u32>);

/// Where a search's schedules run: started in schedule order, each with
/// PCT's length estimate, and taken back in the same order.
trait Runner {
    /// Start schedule `i`.
    fn start(&mut self, i: u64, expected_steps: u64);
    /// The outcome of the earliest schedule started and not yet taken.
    fn take(&mut self) -> Outcome;
}

/// On the calling thread: a schedule runs when it is taken.
struct OnThisThread<F> {
    run: F,
    started: std::collections::VecDeque<(u64, u64)>,
}

impl<F: FnMut(u64, u64) -> Outcome> Runner for OnThisThread<F> {
    fn start(&mut self, i: u64, expected_steps: u64) {
        self.started.push_back((i, expected_steps));
    }
    fn take(&mut self) -> Outcome {
        let (i, expected_steps) = self.started.pop_front().expect("a schedule was started");
        (self.run)(i, expected_steps)
    }
}

/// On worker threads fed through a channel: outcomes come back in any
/// order and wait in `done` until their turn.
struct OnWorkers {
    work: crossbeam::channel::Sender<(u64, u64)>,
    results: crossbeam::channel::Receiver<(u64, Outcome)>,
    done: BTreeMap<u64, Outcome>,
    next: u64,
}

impl Runner for OnWorkers {
    fn start(&mut self, i: u64, expected_steps: u64) {
        self.work.send((i, expected_steps)).expect("the workers outlive the search");
    }
    fn take(&mut self) -> Outcome {
        let outcome = loop {
            if let Some(outcome) = self.done.remove(&self.next) {
                break outcome;
            }
            let (i, outcome) = self.results.recv().expect("every worker answers");
            self.done.insert(i, outcome);
        };
        self.next += 1;
        outcome
    }
}

/// Search `opts.schedules` schedules of `policy` on `scenario`, on
/// `opts.jobs` threads (the [`PILOT`] first, then the rest); the report
/// is the same for any number of threads.
pub fn check_policy(
    policy: &Arc<dyn DynPolicy>,
    scenario: &Scenario,
    opts: &CheckOptions,
) -> Result<CheckReport, ScenarioError> {
    scenario.validate()?;
    let one = |i: u64, expected_steps: u64| {
        run_schedule(policy, scenario, i, strategy_for(opts, i, expected_steps), opts, false)
    };
    let jobs = opts.jobs.clamp(1, opts.schedules.max(1) as usize);
    let (mut report, found) = if jobs == 1 {
        let mut runner = OnThisThread { run: |i, expected| Ok(one(i, expected)), started: Default::default() };
        search(policy, opts, jobs, &mut runner)
    } else {
        // Workers live for the whole search (each keeps its thread's
        // recycled model memory and coroutine stacks), take schedule
        // numbers from one channel and send results back on another. A
        // policy that panics panics the search, as on one thread: the
        // worker sends the panic back and the caller resumes it.
        let (work_tx, work_rx) = crossbeam::channel::unbounded::<(u64, u64)>();
        let (done_tx, done_rx) = crossbeam::channel::unbounded();
        std::thread::scope(|s| {
            for _ in 0..jobs {
                let (work_rx, done_tx) = (work_rx.clone(), done_tx.clone());
                s.spawn(move || {
                    for (i, expected) in work_rx {
                        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| one(i, expected)));
                        if done_tx.send((i, run)).is_err() {
                            return;
                        }
                    }
                });
            }
            // The runner owns the work channel's sender: dropped when the
            // search returns, or by a panic unwinding this closure, it
            // ends the workers' loops (after the schedules already
            // started), so the scope can join them either way.
            let mut runner = OnWorkers { work: work_tx, results: done_rx, done: BTreeMap::new(), next: 0 };
            search(policy, opts, jobs, &mut runner)
        })
    }?;
    if let Some(kept) = found {
        attach_counterexample(policy, scenario, opts, &mut report, kept)?;
    }
    Ok(report)
}

/// Shrink the schedule a search kept (its actors' streams are those of
/// schedule `index`), replay it with a timeline, and make it the report's
/// counterexample.
pub(crate) fn attach_counterexample(
    policy: &Arc<dyn DynPolicy>,
    scenario: &Scenario,
    opts: &CheckOptions,
    report: &mut CheckReport,
    (index, oracle, original): Kept,
) -> Result<(), ScenarioError> {
    let t1 = Instant::now();
    let (schedule, shrink_replays) = shrink(policy, scenario, opts, index, &original, oracle)?;
    // Replay with a timeline: the same schedule gives the same run.
    let ReplayOutcome::Violated(mut cx) = replay(policy, scenario, opts, index, &schedule)? else {
        return Err(ScenarioError::new("internal: a violating schedule did not replay".to_owned()));
    };
    cx.original = original;
    cx.shrink_replays = shrink_replays;
    report.first = Some(cx);
    report.shrink_s = t1.elapsed().as_secs_f64();
    Ok(())
}

/// The search itself, schedule by schedule in order, on `runner` (the
/// pilot one at a time, then [`AHEAD_PER_JOB`] times `jobs` schedules
/// started ahead): the report without its counterexample, and the
/// schedule to shrink into one.
fn search(
    policy: &Arc<dyn DynPolicy>,
    opts: &CheckOptions,
    jobs: usize,
    runner: &mut dyn Runner,
) -> Result<(CheckReport, Option<Kept>), ScenarioError> {
    let mut report = CheckReport { policy: policy.label(), ..CheckReport::default() };
    let mut expected_steps = 1000;
    let t0 = Instant::now();
    let mut found: Found = None;
    let (mut started, mut pilot_steps) = (0, 0);
    for i in 0..opts.schedules {
        let ahead = if i < PILOT { i + 1 } else { (i + AHEAD_PER_JOB * jobs as u64).min(opts.schedules) };
        while started < ahead {
            runner.start(started, expected_steps);
            started += 1;
        }
        // In schedule order: an error or a panic surfaces where it would
        // on one thread, and not if the search stopped before.
        let outcome = runner.take();
        let (run, violations) = outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        if i < PILOT {
            pilot_steps += run.steps();
            expected_steps = run.steps().max(1);
            if i + 1 == PILOT {
                expected_steps = (pilot_steps / PILOT).max(1);
            }
        }
        if tally(&mut report, &mut found, i, run, &violations, &t0) && opts.stop_at_first {
            break;
        }
    }
    report.search_s = t0.elapsed().as_secs_f64();
    Ok((report, found.map(|(index, _, oracle, original)| (index, oracle, original))))
}

/// The schedule a search keeps while it goes: its number, its verdict's
/// rank, the verdict's oracle, its choices.
pub(crate) type Found = Option<(u64, (bool, u8), Oracle, Vec<u32>)>;

/// Count schedule `i` (its run and its violations, gravest first) into
/// `report`, and keep it in `found` if its verdict is the gravest so far
/// (the first such schedule). Returns whether it broke a rule.
pub(crate) fn tally(
    report: &mut CheckReport,
    found: &mut Found,
    i: u64,
    run: ControlledRun,
    violations: &[Violation],
    t0: &Instant,
) -> bool {
    report.schedules += 1;
    report.steps += run.steps();
    if run.end == End::StepLimit {
        report.step_limits += 1;
    }
    let Some(verdict) = violations.first() else { return false };
    report.violating += 1;
    // Gravest first: the first is the verdict, and only a guard-marker
    // race when the schedule found nothing else.
    if verdict.freed_with_guard_markers_only() {
        report.guard_marker_races += 1;
    } else if report.gravest_beyond_guard_markers.is_none_or(|o| verdict.oracle.gravity() < o.gravity()) {
        report.gravest_beyond_guard_markers = Some(verdict.oracle);
    }
    let mut seen = vec![];
    for v in violations {
        if !seen.contains(&v.oracle) {
            seen.push(v.oracle);
            report.by_oracle.entry(v.oracle).or_insert((0, i)).0 += 1;
        }
    }
    report.first_found_s.get_or_insert(t0.elapsed().as_secs_f64());
    if found.as_ref().is_none_or(|(_, rank, _, _)| verdict.verdict_rank() < *rank) {
        *found = Some((i, verdict.verdict_rank(), verdict.oracle, run.schedule));
    }
    true
}

/// `total` schedules split among `parts` workloads: as evenly as they
/// go, the remainder to the parts the seed picks (so no preset is always
/// the one short). `total` must be at least `parts`.
pub fn split_schedules(total: u64, parts: usize, seed: u64) -> Vec<u64> {
    let n = parts as u64;
    assert!(n > 0 && total >= n, "{total} schedules cannot be split among {n} workloads");
    let start = schedule_seed(seed, 0) % n;
    (0..n).map(|i| total / n + u64::from((i + n - start) % n < total % n)).collect()
}

/// The verdict a preset's report counts against the policy with on the
/// v6.6 line (None: nothing counts): its gravest finding, except on a
/// preset that runs the guard-marker installer, where a schedule whose
/// only finding is that race is reported apart, and on a later kernel's
/// page-table freer ([`LATER_KERNEL_PRESETS`]), which a form of the 6.6
/// line is not expected to survive: that is judged apart, as the verdict
/// on today's kernel ([`later_kernel_failure`]).
pub fn counted_verdict(preset: &str, report: &CheckReport) -> Option<Oracle> {
    if LATER_KERNEL_PRESETS.contains(&preset) {
        None
    } else if FUTURE_INSERTER_PRESETS.contains(&preset) {
        report.gravest_beyond_guard_markers
    } else {
        report.gravest()
    }
}

/// `collapse-bench check` with no workload named: `policy` searched on
/// every preset (its seed `opts.seed`), `opts.schedules` split among them
/// by [`split_schedules`]. In [`PRESETS`] order.
pub fn check_every_preset(
    policy: &Arc<dyn DynPolicy>,
    opts: &CheckOptions,
) -> Result<Vec<(Scenario, CheckReport)>, ScenarioError> {
    let shares = split_schedules(opts.schedules, PRESETS.len(), opts.seed);
    let mut out = vec![];
    for (&(name, _), schedules) in PRESETS.iter().zip(shares) {
        let mut scenario = preset(name)?;
        scenario.seed = opts.seed;
        let report = check_policy(policy, &scenario, &CheckOptions { schedules, ..opts.clone() })?;
        out.push((scenario, report));
    }
    Ok(out)
}

/// The verdict on today's kernel over presets, each given as (preset
/// name, report): the gravest finding of a later kernel's page-table
/// freer ([`LATER_KERNEL_PRESETS`]), and the preset (None: ok there, or
/// none ran). [`overall_failure`] leaves those presets out: a form of the
/// 6.6 line is judged on them apart.
pub fn later_kernel_failure<'a>(
    reports: impl IntoIterator<Item = (&'a str, &'a CheckReport)>,
) -> Option<(&'a str, Oracle)> {
    let found = reports
        .into_iter()
        .filter(|(name, _)| LATER_KERNEL_PRESETS.contains(name))
        .filter_map(|(name, r)| Some((name, r.gravest()?)));
    found.min_by_key(|(_, oracle)| oracle.gravity())
}

/// The overall verdict over presets, each given as (preset name, report),
/// as [`check_every_preset`] gives them: the gravest verdict of the
/// reports that count against the policy ([`counted_verdict`]), and the first preset that
/// found it (None: ok).
pub fn overall_failure<'a>(reports: impl IntoIterator<Item = (&'a str, &'a CheckReport)>) -> Option<(&'a str, Oracle)> {
    let counted = reports.into_iter().filter_map(|(name, r)| Some((name, counted_verdict(name, r)?)));
    // min_by_key keeps the first of equal keys: the earliest preset.
    counted.min_by_key(|(_, oracle)| oracle.gravity())
}

/// The strategy of schedule `i`.
pub fn strategy_for(opts: &CheckOptions, i: u64, expected_steps: u64) -> Strategy {
    let seed = schedule_seed(opts.seed, i);
    match opts.search {
        Search::Pct { depth } => Strategy::Pct { seed, depth, expected_steps },
        Search::Random => Strategy::Random { seed },
    }
}

/// Runs of a schedule: (CPU, steps), neighbours never on the same CPU.
pub fn runs(schedule: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = vec![];
    for &cpu in schedule {
        match out.last_mut() {
            Some((c, n)) if *c == cpu => *n += 1,
            _ => out.push((cpu, 1)),
        }
    }
    out
}

/// The schedule of `runs`.
pub fn expand(runs: &[(u32, u32)]) -> Vec<u32> {
    runs.iter().flat_map(|&(cpu, n)| std::iter::repeat_n(cpu, n as usize)).collect()
}

/// Version prefix of replay tokens.
pub const TOKEN_PREFIX: &str = "s2-";

/// What a replay token looks like (for error messages).
pub const TOKEN_FORMAT: &str =
    "s2-<schedule>-<cpu>x<steps>[.<cpu>x<steps>...], e.g. s2-38-0x12.1x3.0x40 (schedule 38 of the search)";

/// The replay token of schedule `index` of a search, run as `schedule`:
/// `s2-`, the index, `-`, then its runs as `<cpu>x<steps>` joined by `.`.
pub fn token(index: u64, schedule: &[u32]) -> String {
    let runs: Vec<String> = runs(schedule).iter().map(|(cpu, n)| format!("{cpu}x{n}")).collect();
    format!("{TOKEN_PREFIX}{index}-{}", runs.join("."))
}

/// The schedule index and the schedule a replay token encodes; the error
/// says what is wrong.
pub fn parse_token(token: &str) -> Result<(u64, Vec<u32>), String> {
    let token = token.trim();
    if token.starts_with("s1-") {
        return Err("an s1- token comes from a collapse-bench whose schedules all ran one set of actor operations, \
                    and this one cannot rebuild them: run the check again for an s2- token"
            .to_owned());
    }
    let body = token.strip_prefix(TOKEN_PREFIX).ok_or_else(|| format!("does not start with `{TOKEN_PREFIX}`"))?;
    let (index, body) = body.split_once('-').ok_or_else(|| "no `-` after the schedule number".to_owned())?;
    let index: u64 = index.parse().map_err(|_| format!("`{index}` is not a schedule number"))?;
    let mut out = vec![];
    for run in body.split('.') {
        let (cpu, n) = run.split_once('x').ok_or_else(|| format!("`{run}` is not <cpu>x<steps>"))?;
        let cpu: u32 = cpu.parse().map_err(|_| format!("`{cpu}` in `{run}` is not a CPU number"))?;
        let n: u32 = n.parse().map_err(|_| format!("`{n}` in `{run}` is not a step count"))?;
        if n == 0 {
            return Err(format!("`{run}`: a run has at least one step"));
        }
        if out.len() + n as usize > 100_000_000 {
            return Err("more than 100000000 steps".to_owned());
        }
        out.extend(std::iter::repeat_n(cpu, n as usize));
    }
    Ok((index, out))
}

/// Shrink a schedule whose run's first violation is of `oracle`: drop
/// whole runs (chunks of them, then one at a time) and cut runs short
/// (to a half, a third or a quarter),
/// replaying each candidate with [`Strategy::Guided`]; a candidate is
/// taken when its first violation is still of `oracle` and the guided
/// run's actual schedule has fewer runs or fewer steps (and never more
/// steps). Returns the shrunk schedule (it replays exactly with
/// [`Strategy::Replay`]) and the replays spent (at most
/// `opts.shrink_budget`).
pub fn shrink(
    policy: &Arc<dyn DynPolicy>,
    scenario: &Scenario,
    opts: &CheckOptions,
    index: u64,
    schedule: &[u32],
    oracle: Oracle,
) -> Result<(Vec<u32>, u32), ScenarioError> {
    let mut cur = schedule.to_vec();
    let mut spent = 0u32;
    let budget = opts.shrink_budget;
    // Try a candidate; on success it becomes `cur`.
    let attempt = |cur: &mut Vec<u32>, candidate: Vec<(u32, u32)>, spent: &mut u32| -> Result<bool, ScenarioError> {
        *spent += 1;
        let (run, violations) =
            run_schedule(policy, scenario, index, Strategy::Guided(expand(&candidate)), opts, false)?;
        let same = violations.first().is_some_and(|v| v.oracle == oracle);
        let (new_runs, cur_runs) = (runs(&run.schedule).len(), runs(cur).len());
        let smaller = run.schedule.len() <= cur.len() && (new_runs < cur_runs || run.schedule.len() < cur.len());
        if same && smaller && run.end != End::Diverged {
            *cur = run.schedule;
            return Ok(true);
        }
        Ok(false)
    };
    loop {
        let mut progress = false;
        // Remove every run of one CPU: an actor with nothing to do with the
        // violation goes whole. Dropping its runs one at a time cannot do
        // that when each of its holds (a neighbour's lock pair) spans runs.
        let cpus: BTreeSet<u32> = cur.iter().copied().collect();
        for cpu in cpus {
            if spent >= budget {
                return Ok((cur, spent));
            }
            let candidate: Vec<(u32, u32)> = runs(&cur).into_iter().filter(|&(c, _)| c != cpu).collect();
            progress |= attempt(&mut cur, candidate, &mut spent)?;
        }
        // Remove chunks of runs, halving the chunk size (ddmin-like).
        let mut chunk = (runs(&cur).len() / 2).max(1);
        loop {
            let mut i = 0;
            while i < runs(&cur).len() {
                if spent >= budget {
                    return Ok((cur, spent));
                }
                let mut candidate = runs(&cur);
                let end = (i + chunk).min(candidate.len());
                candidate.drain(i..end);
                if attempt(&mut cur, candidate, &mut spent)? {
                    progress = true;
                } else {
                    i += chunk;
                }
            }
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
        // Cut each run to a half, else a third, else a quarter: a run that
        // ends halfway through an actor's critical section (a uffd copy
        // holding ptl) blocks the next run, where a shorter cut may end
        // between two of them.
        let mut i = 0;
        'runs: while i < runs(&cur).len() {
            for divisor in [2, 3, 4] {
                if spent >= budget {
                    return Ok((cur, spent));
                }
                let mut candidate = runs(&cur);
                if candidate[i].1 < divisor {
                    break;
                }
                candidate[i].1 /= divisor;
                if attempt(&mut cur, candidate, &mut spent)? {
                    progress = true;
                    continue 'runs;
                }
            }
            i += 1;
        }
        if !progress {
            return Ok((cur, spent));
        }
    }
}

/// What replaying a schedule gave.
#[derive(Clone, Debug)]
pub enum ReplayOutcome {
    /// The schedule does not fit this policy and scenario: it named a CPU
    /// that could not run, or ended before the run did, or the run ended
    /// before the schedule did.
    Diverged {
        /// Steps replayed before it went wrong.
        at: u64,
        /// What went wrong, in words.
        why: String,
    },
    /// The run broke no rule.
    Clean {
        /// Steps.
        steps: u64,
    },
    /// The run broke a rule (`original` the schedule itself).
    Violated(Counterexample),
}

/// Replay `schedule` exactly ([`Strategy::Replay`]) with a timeline, with
/// the actors' streams of schedule `index` of the search.
pub fn replay(
    policy: &Arc<dyn DynPolicy>,
    scenario: &Scenario,
    opts: &CheckOptions,
    index: u64,
    schedule: &[u32],
) -> Result<ReplayOutcome, ScenarioError> {
    let (mm, run, violations) =
        run_on_fresh_mm(policy, scenario, index, Strategy::Replay(schedule.to_vec()), opts, true)?;
    let (at, len) = (run.steps(), schedule.len());
    if run.end == End::Diverged {
        let why = match schedule.get(at as usize) {
            Some(cpu) => format!("at step {at} the schedule names CPU {cpu}, which cannot run then"),
            None => format!("the schedule ends after {len} steps, before the run does"),
        };
        return Ok(ReplayOutcome::Diverged { at, why });
    }
    if run.schedule != schedule {
        let why = format!("the run ended ({:?}) after {at} of the schedule's {len} steps", run.end);
        return Ok(ReplayOutcome::Diverged { at, why });
    }
    if violations.is_empty() {
        return Ok(ReplayOutcome::Clean { steps: run.steps() });
    }
    let timeline = run
        .trace
        .iter()
        .map(|t| TimelineEntry {
            step: t.step,
            cpu: t.cpu,
            event: timeline_event(&mm, run.roles[t.cpu as usize], &t.event),
        })
        .collect();
    drop(mm);
    let steps = violation_step(policy, scenario, opts, index, schedule, violations[0].oracle)?;
    let mut violation_at = run.trace.iter().take_while(|t| t.step <= steps).count();
    // A step may go on past the report: drop the step markers the
    // reporting CPU passed after it (the violation names its step).
    let first = &violations[0];
    while let Some(t) = violation_at.checked_sub(1).map(|i| &run.trace[i]) {
        match t.event {
            Event::Step(s)
                if t.step == steps && Some(t.cpu) == first.cpu && first.step.as_deref() != Some(s.label()) =>
            {
                violation_at -= 1
            }
            _ => break,
        }
    }
    Ok(ReplayOutcome::Violated(Counterexample {
        index,
        violations,
        schedule: run.schedule.clone(),
        original: run.schedule,
        shrink_replays: 0,
        timeline,
        violation_at,
        roles: run.roles,
    }))
}

/// The fewest steps of `schedule` after which a violation of `oracle` has
/// been reported (binary search over replayed prefixes; the whole
/// schedule when it is found only at the end or at teardown).
fn violation_step(
    policy: &Arc<dyn DynPolicy>,
    scenario: &Scenario,
    opts: &CheckOptions,
    index: u64,
    schedule: &[u32],
    oracle: Oracle,
) -> Result<u64, ScenarioError> {
    let seen = |len: usize| -> Result<bool, ScenarioError> {
        let (_, violations) =
            run_schedule(policy, scenario, index, Strategy::Replay(schedule[..len].to_vec()), opts, false)?;
        Ok(violations.iter().any(|v| v.oracle == oracle))
    };
    // Prefixes shorter than the schedule end as diverged: no teardown.
    let (mut lo, mut hi) = (0usize, schedule.len());
    if schedule.is_empty() || !seen(hi - 1)? {
        return Ok(hi as u64);
    }
    hi -= 1;
    // Invariant: seen(hi), !seen(lo) (an empty prefix runs nothing).
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if seen(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi as u64)
}

/// A trace event as a timeline keeps it: its locks named by the model
/// `mm`, and a uffd CPU's `set_pte_at` of a present entry told apart as
/// the anonymous page UFFDIO_COPY installs.
pub fn timeline_event(mm: &Mm, role: Role, event: &Event) -> TimelineEvent {
    let lock = |id: LockId| TimelineLock { class: mm.lock_class(id), name: mm.lock_name(id) };
    let rwsem = |class: LockClass, write: bool| TimelineLock {
        class,
        name: format!("{} ({})", class.name(), if write { "write" } else { "read" }),
    };
    match *event {
        Event::Step(step) => TimelineEvent::Step { step },
        Event::Lock(id) => TimelineEvent::Lock { lock: lock(id) },
        Event::Trylock(id, ok) => TimelineEvent::Trylock { lock: lock(id), ok },
        Event::Unlock(id) => TimelineEvent::Unlock { lock: lock(id) },
        Event::Down(class, write) => TimelineEvent::Lock { lock: rwsem(class, write) },
        Event::Up(class, write) => TimelineEvent::Unlock { lock: rwsem(class, write) },
        Event::PteClear(idx) => TimelineEvent::PteClear { idx },
        Event::PteSet(idx, pte) if role == Role::Uffd && pte.is_present() => TimelineEvent::InstallAnon { idx, pte },
        Event::PteSet(idx, pte) => TimelineEvent::PteSet { idx, pte },
        Event::PmdClear => TimelineEvent::PmdClear,
        Event::PmdClearOnly => TimelineEvent::PmdClearOnly,
        Event::PmdHuge => TimelineEvent::PmdHuge,
        Event::FlushMm => TimelineEvent::FlushMm,
        Event::FlushRange => TimelineEvent::FlushRange,
        Event::TableFree(table) => TimelineEvent::TableFree { table },
        Event::TableFreeNow(table) => TimelineEvent::TableFreeNow { table },
        Event::Returned(result) => TimelineEvent::Returned { result },
        Event::LocklessRead => TimelineEvent::LocklessRead,
        Event::TlbAccess(vpn) => TimelineEvent::TlbAccess { vpn },
        Event::TlbFill(vpn, pfn) => TimelineEvent::TlbFill { vpn, pfn },
        Event::PageOp(pfn) => TimelineEvent::PageOp { pfn },
        Event::TableAlloc => TimelineEvent::TableAlloc,
        Event::PageLock(pfn) => TimelineEvent::PageLock { pfn },
    }
}
