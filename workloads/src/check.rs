//! The race checker: run a policy on a scenario under many controlled
//! schedules, each on a fresh model, with every oracle on; count
//! violations by oracle and keep the first counterexample with the
//! schedule that replays it.

use crate::actors::Actor;
use crate::scenario::{Scenario, ScenarioError};
use bench_core::controlled::{run_controlled, ControlledConfig, ControlledRun, End, Strategy, TraceEntry};
use bench_core::{DynPolicy, Mm, Oracle, Role, Violation};
use std::collections::BTreeMap;
use std::sync::Arc;

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
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            search: Search::Pct { depth: 3 },
            schedules: 1000,
            seed: 1,
            collapses: 2,
            ops_per_cpu: 12,
            max_steps: 100_000,
            stop_at_first: false,
        }
    }
}

/// A schedule that broke a rule, replayable.
#[derive(Clone, Debug)]
pub struct Counterexample {
    /// Which schedule (0-based) of the search found it.
    pub index: u64,
    /// Every violation the schedule produced (the first one is the verdict).
    pub violations: Vec<Violation>,
    /// The choices, one per step.
    pub schedule: Vec<u32>,
    /// The timeline of the replay.
    pub trace: Vec<TraceEntry>,
    /// Role of each CPU.
    pub roles: Vec<Role>,
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
    /// Schedules that hit the step budget (possible livelock; not a verdict).
    pub step_limits: u64,
    /// The first counterexample.
    pub first: Option<Counterexample>,
}

impl CheckReport {
    /// Whether any rule was broken.
    pub fn failed(&self) -> bool {
        !self.by_oracle.is_empty()
    }
}

/// The strategy seed of schedule `i` (splitmix64 of the base seed and `i`).
pub fn schedule_seed(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i + 1));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Run one schedule on a fresh model; returns the run and its violations
/// (teardown included when the run finished; a deadlock is one violation).
pub fn run_schedule(
    policy: &Arc<dyn DynPolicy>,
    scenario: &Scenario,
    strategy: Strategy,
    opts: &CheckOptions,
    record_trace: bool,
) -> Result<(ControlledRun, Vec<Violation>), ScenarioError> {
    let mm =
        Arc::new(Mm::new(scenario.mm_config()).map_err(|e| ScenarioError::new(format!("building the model: {e}")))?);
    let actors = Actor::for_scenario(scenario, policy);
    let cfg = ControlledConfig {
        strategy,
        ops: opts.collapses,
        ops_per_cpu: opts.ops_per_cpu,
        max_steps: opts.max_steps,
        record_trace,
    };
    let run = run_controlled(mm.clone(), actors, &cfg);
    match &run.end {
        End::Finished => {
            mm.exit_mmap();
        }
        End::Deadlock(who) => mm.report(Oracle::Deadlock, None, None, format!("every CPU is blocked: {who}")),
        End::StepLimit | End::Diverged => {}
    }
    Ok((run, mm.violations.snapshot().0))
}

/// Search `opts.schedules` schedules of `policy` on `scenario`.
pub fn check_policy(
    policy: &Arc<dyn DynPolicy>,
    scenario: &Scenario,
    opts: &CheckOptions,
) -> Result<CheckReport, ScenarioError> {
    scenario.validate()?;
    let mut report = CheckReport { policy: policy.label(), ..CheckReport::default() };
    let mut expected_steps = 1000;
    for i in 0..opts.schedules {
        let strategy = strategy_for(opts, i, expected_steps);
        let (run, violations) = run_schedule(policy, scenario, strategy, opts, false)?;
        report.schedules += 1;
        report.steps += run.steps();
        expected_steps = run.steps().max(1);
        if run.end == End::StepLimit {
            report.step_limits += 1;
        }
        if violations.is_empty() {
            continue;
        }
        let mut seen = vec![];
        for v in &violations {
            if !seen.contains(&v.oracle) {
                seen.push(v.oracle);
                report.by_oracle.entry(v.oracle).or_insert((0, i)).0 += 1;
            }
        }
        if report.first.is_none() {
            // Replay with a timeline: the same schedule gives the same run.
            let (replay, replay_violations) =
                run_schedule(policy, scenario, Strategy::Replay(run.schedule.clone()), opts, true)?;
            report.first = Some(Counterexample {
                index: i,
                violations: replay_violations,
                schedule: run.schedule,
                trace: replay.trace,
                roles: replay.roles,
            });
        }
        if opts.stop_at_first {
            break;
        }
    }
    Ok(report)
}

/// The strategy of schedule `i`.
pub fn strategy_for(opts: &CheckOptions, i: u64, expected_steps: u64) -> Strategy {
    let seed = schedule_seed(opts.seed, i);
    match opts.search {
        Search::Pct { depth } => Strategy::Pct { seed, depth, expected_steps },
        Search::Random => Strategy::Random { seed },
    }
}
