//! Put a policy on a scenario: build the model, run the actors natively,
//! tear down, and say what happened.

use crate::actors::Actor;
use crate::scenario::{Scenario, ScenarioError, Threads, ACTOR_ROLES};
use bench_core::actor::Limit;
use bench_core::kernel::DynPolicy;
use bench_core::locks::LockStats;
use bench_core::native::{run_native, NativeOptions};
use bench_core::results::{PolicyRun, RunFailure};
use bench_core::{Metrics, Mm, StepHook};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    /// When to stop (collapses or wall time).
    pub limit: Limit,
    /// Pin threads one per core when they fit.
    pub pin: bool,
    /// Test hook called at every collapse step.
    pub hook: Option<StepHook>,
    /// Git revision of the build, for the caller's
    /// [`bench_core::results::Environment`] (a `PolicyRun` has no field
    /// for it).
    pub git_revision: String,
    /// Abandon the run when a CPU finishes no operation for this long
    /// ([`bench_core::watchdog::DEFAULT_TIMEOUT`] unless told otherwise).
    pub watchdog: Duration,
}

/// Why [`run_policy`] has no result.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario is not valid, or its model cannot be built: bad input.
    #[error(transparent)]
    Invalid(#[from] ScenarioError),
    /// The run was abandoned: a CPU panicked, or the watchdog saw no
    /// progress. The other policies' runs are not affected.
    #[error("{}", .0.summary())]
    Failed(Box<RunFailure>),
}

/// Validate `scenario`, build its model and actors (CPU numbering:
/// collapsers first, then faulters, uffd, cow, swap, migrate, neighbours,
/// readers, markers), run them natively under `policy` until
/// `opts.limit`, tear down with `exit_mmap()` (whose findings count as
/// violations too), and report. A run that a CPU's panic or the watchdog
/// abandoned is [`RunError::Failed`], and its model is dropped untouched.
pub fn run_policy(policy: Arc<dyn DynPolicy>, scenario: &Scenario, opts: &RunOptions) -> Result<PolicyRun, RunError> {
    scenario.validate()?;
    let mm = Mm::new(scenario.mm_config()).map_err(|e| ScenarioError::new(format!("building the model: {e}")))?;
    let actors = Actor::for_scenario(scenario, &policy);
    let native = NativeOptions { limit: opts.limit, pin: opts.pin, hook: opts.hook.clone(), watchdog: opts.watchdog };
    let run = run_native(&mm, actors, &native);
    if let Some(failure) = run.failure {
        return Err(RunError::Failed(Box::new(failure)));
    }
    let measured = Measured {
        wall_s: run.wall.as_secs_f64(),
        threads: run.threads,
        cores: run.cores,
        pinned: run.pinned,
        oversubscribed: run.oversubscribed,
        finished: true,
        limit: opts.limit,
    };
    let run = policy_run(&*policy, scenario, &mm, run.metrics, measured);
    match no_collapse(scenario, &run) {
        Some(failure) => Err(RunError::Failed(Box::new(failure))),
        None => Ok(run),
    }
}

/// A native run of a scenario with collapsers that finished no collapse
/// measured nothing: say so, and why, instead of printing empty figures.
/// With more threads than cores the collapser got too little CPU time
/// among the others; otherwise the run was shorter than one collapse.
fn no_collapse(scenario: &Scenario, run: &PolicyRun) -> Option<RunFailure> {
    if run.collapses > 0 || scenario.threads.collapsers == 0 {
        return None;
    }
    let why = if run.oversubscribed {
        let t = &scenario.threads;
        let (most, n) = Threads::KEYS
            .iter()
            .zip(ACTOR_ROLES)
            .map(|(k, r)| (*k, t.of(r)))
            .max_by_key(|&(_, n)| n)
            .unwrap_or(("", 0));
        format!(
            "{} threads on {} cores starved the collapser; lower the thread counts (most: threads.{most}={n}) or \
             use --engine sim, which gives every actor a CPU of its own",
            run.threads, run.cores
        )
    } else {
        "the run ended before the collapser finished one; give a longer --duration".to_owned()
    };
    Some(RunFailure::NoCollapse { seconds: run.wall_s, why })
}

/// How a run went, beside its metrics.
pub(crate) struct Measured {
    /// Time of the measured part, s (virtual under the simulation).
    pub wall_s: f64,
    /// Model CPUs.
    pub threads: usize,
    /// Cores (virtual CPUs under the simulation).
    pub cores: usize,
    /// Threads pinned one per core.
    pub pinned: bool,
    /// More threads than cores.
    pub oversubscribed: bool,
    /// Every CPU finished (tear down and check the model).
    pub finished: bool,
    /// The limit it ran under.
    pub limit: Limit,
}

/// Tear down with `exit_mmap()` (whose findings count as violations
/// too; skipped for a run that did not finish, whose model is
/// mid-flight) and summarise a run of `policy` on `scenario`. `locks`
/// holds the lock classes that were taken at least once.
pub(crate) fn policy_run(
    policy: &dyn DynPolicy,
    scenario: &Scenario,
    mm: &Mm,
    metrics: Metrics,
    measured: Measured,
) -> PolicyRun {
    if measured.finished {
        mm.exit_mmap();
    }
    let (violations, violations_total) = mm.violations.snapshot();
    let metrics = metrics.summary();
    let collapses: u64 = metrics.counters.results.values().sum();
    let wall_s = measured.wall_s;
    // Per class, over the locks that were taken: the model has a lock per
    // PTE table and PMD table even when they are not split (then all go
    // to page_table_lock), and an all-zero class would read as "unused".
    let mut locks: BTreeMap<String, LockStats> = BTreeMap::new();
    for (_, class, stats) in mm.lock_stats().filter(|l| l.2.acquisitions > 0) {
        let sum = locks.entry(class.name().to_owned()).or_default();
        sum.acquisitions += stats.acquisitions;
        sum.contended += stats.contended;
        sum.wait_ns += stats.wait_ns;
        sum.hold_ns += stats.hold_ns;
    }
    PolicyRun {
        policy: policy.label(),
        params: policy.params_json(),
        workload: scenario.name.clone(),
        seed: scenario.seed,
        wall_s,
        threads: measured.threads,
        cores: measured.cores,
        pinned: measured.pinned,
        oversubscribed: measured.oversubscribed,
        collapses,
        collapses_per_s: if wall_s > 0.0 { collapses as f64 / wall_s } else { 0.0 },
        metrics,
        locks,
        violations,
        violations_total,
        ended_by: Some(measured.limit.ended_by(collapses)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bench_core::results::EndedBy;

    fn run(collapses: u64, threads: usize, cores: usize) -> PolicyRun {
        PolicyRun {
            policy: "v1".into(),
            params: serde_json::json!({}),
            workload: "uffd-private".into(),
            seed: 1,
            wall_s: 1.0,
            threads,
            cores,
            pinned: false,
            oversubscribed: threads > cores,
            collapses,
            collapses_per_s: collapses as f64,
            metrics: Default::default(),
            locks: Default::default(),
            violations: vec![],
            violations_total: 0,
            ended_by: Some(EndedBy::Duration),
        }
    }

    #[test]
    fn a_run_without_a_collapse_says_why() {
        let mut s = crate::preset("uffd-private").unwrap();
        s.threads.readers = 300;
        assert_eq!(no_collapse(&s, &run(5, 302, 2)), None, "it measured something");
        let Some(RunFailure::NoCollapse { seconds, why }) = no_collapse(&s, &run(0, 302, 2)) else { panic!() };
        assert_eq!(seconds, 1.0);
        assert_eq!(
            why,
            "302 threads on 2 cores starved the collapser; lower the thread counts (most: threads.readers=300) or use \
             --engine sim, which gives every actor a CPU of its own"
        );
        let Some(failure) = no_collapse(&s, &run(0, 2, 2)) else { panic!() };
        assert_eq!(
            failure.summary(),
            "no collapse finished in 1.00 s: the run ended before the collapser finished one; give a longer --duration"
        );
        s.threads.collapsers = 0;
        assert_eq!(no_collapse(&s, &run(0, 300, 2)), None, "no collapser: nothing to measure");
    }
}
