//! Put a policy on a scenario under the simulation engine: one virtual
//! CPU per actor, virtual time from a cost model, the earliest clock runs
//! next (the controlled engine's time-ordered strategy). The same policy
//! and actor code as the native engine, oracles on.

use crate::actors::Actor;
use crate::runner::{policy_run, Measured, RunError};
use crate::scenario::{Scenario, ScenarioError};
use bench_core::actor::Limit;
use bench_core::controlled::{run_controlled, ControlledConfig, End, Strategy};
use bench_core::kernel::DynPolicy;
use bench_core::results::{PolicyRun, RunFailure};
use bench_core::{CostModel, Mm};
use std::sync::Arc;

/// How to simulate.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// What each primitive costs.
    pub costs: CostModel,
    /// When to stop, in virtual time (or after so many collapses, with
    /// the duration as a virtual-time cap).
    pub limit: Limit,
}

/// A simulated run and what it cost to simulate.
pub struct Simulated {
    /// The results, as a native run's (times virtual; `cores` is the
    /// number of virtual CPUs).
    pub run: PolicyRun,
    /// Scheduling steps taken (a CPU run up to its next stop).
    pub steps: u64,
}

/// Validate `scenario`, build its model and actors (as [`crate::run_policy`]
/// does), simulate them under `policy` until `opts.limit` in virtual time,
/// tear down and report. The result depends only on the scenario (seed
/// included), the policy and the cost model. A run whose virtual time
/// stood still (`End::Stalled`) is [`RunError::Failed`].
pub fn simulate_policy(
    policy: Arc<dyn DynPolicy>,
    scenario: &Scenario,
    opts: &SimOptions,
) -> Result<Simulated, RunError> {
    scenario.validate()?;
    opts.costs.validate().map_err(|e| ScenarioError::new(format!("cost model: {e}")))?;
    let mm =
        Arc::new(Mm::new(scenario.mm_config()).map_err(|e| ScenarioError::new(format!("building the model: {e}")))?);
    let actors = Actor::for_scenario(scenario, &policy);
    let threads = actors.len();
    let (ops, until) = match opts.limit {
        Limit::Duration(d) => (u64::MAX, d),
        Limit::Ops { ops, cap } => (ops, cap),
    };
    let cfg = ControlledConfig {
        ops,
        ops_per_cpu: u64::MAX,
        max_steps: u64::MAX,
        until_ns: u64::try_from(until.as_nanos()).unwrap_or(u64::MAX),
        record_trace: false,
    };
    let sim = run_controlled(mm.clone(), actors, &cfg, &Strategy::TimeOrdered(opts.costs.table()));
    if let End::Stalled { cpu, report } = sim.end {
        return Err(RunError::Failed(Box::new(RunFailure::Stalled { cpu, report })));
    }
    if let End::Deadlock(who) = &sim.end {
        mm.report(bench_core::Oracle::Deadlock, None, None, format!("every CPU is blocked: {who}"));
    }
    let measured = Measured {
        wall_s: sim.elapsed_ns as f64 / 1e9,
        threads,
        cores: threads,
        pinned: false,
        oversubscribed: false,
        finished: sim.end == End::Finished,
        limit: opts.limit,
    };
    let run = policy_run(&*policy, scenario, &mm, sim.metrics, measured);
    Ok(Simulated { run, steps: sim.steps })
}
