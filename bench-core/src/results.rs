//! Result files: what was run, where, and what it measured (JSON via serde).

use crate::locks::LockStats;
use crate::metrics::MetricsSummary;
use crate::oracle::Violation;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the result-file layout.
pub const SCHEMA: u32 = 1;

/// The machine and build a result came from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// CPU model name (`/proc/cpuinfo`).
    pub cpu_model: String,
    /// Cores available to the process.
    pub cores: usize,
    /// Operating system.
    pub os: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Git revision of collapse-bench that produced the result.
    pub git_revision: String,
    /// Engine ("native" or "sim").
    pub engine: String,
    /// Seed every random choice came from.
    pub seed: u64,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix_s: u64,
}

impl Environment {
    /// Read the machine's facts.
    pub fn capture(engine: &str, seed: u64, git_revision: &str) -> Environment {
        let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_owned()).unwrap_or_default();
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
        let os = match read("/proc/sys/kernel/ostype") {
            s if s.is_empty() => std::env::consts::OS.to_owned(),
            s => s,
        };
        Environment {
            cpu_model,
            cores: crate::machine::available_cores(),
            os,
            kernel: read("/proc/sys/kernel/osrelease"),
            git_revision: git_revision.to_owned(),
            engine: engine.to_owned(),
            seed,
            started_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

/// One policy's run of one workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyRun {
    /// Name with non-default parameters (`v2-flush-bool:recheck_always=true`).
    pub policy: String,
    /// The policy's parameters.
    pub params: serde_json::Value,
    /// Workload preset or scenario name.
    pub workload: String,
    /// Seed.
    pub seed: u64,
    /// Wall time of the measured part, s.
    pub wall_s: f64,
    /// Model CPUs (threads).
    pub threads: usize,
    /// Cores available.
    pub cores: usize,
    /// Threads pinned one per core.
    pub pinned: bool,
    /// More threads than cores.
    pub oversubscribed: bool,
    /// Collapses run.
    pub collapses: u64,
    /// Collapses per second of wall time.
    pub collapses_per_s: f64,
    /// Histograms and counters.
    pub metrics: MetricsSummary,
    /// Lock totals per class ("pml", "ptl", "page_table_lock").
    pub locks: BTreeMap<String, LockStats>,
    /// Violations found (the first [`crate::oracle::Violations::KEEP`]).
    pub violations: Vec<Violation>,
    /// All violations found, kept or not.
    pub violations_total: u64,
    /// Which limit ended the run (absent in files of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<EndedBy>,
}

/// Which limit ended a run.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndedBy {
    /// Its duration (wall or virtual time) ran out.
    Duration,
    /// It made the collapses `--ops` asked for.
    Ops,
    /// `--ops` asked for more collapses than it made before the time cap.
    TimeCap,
}

/// A result file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// [`SCHEMA`].
    pub schema: u32,
    /// "collapse-bench X.Y.Z".
    pub tool: String,
    /// Where it ran.
    pub environment: Environment,
    /// The full workload configuration.
    pub scenario: serde_json::Value,
    /// The simulation's cost model (absent for native runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub costs: Option<crate::cost::CostModel>,
    /// The command line that reproduces it.
    pub command: String,
    /// One entry per policy.
    pub runs: Vec<PolicyRun>,
    /// The watchdog timeout each run had, s (absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchdog_s: Option<f64>,
    /// Policies whose run was abandoned (a panic, or no progress): they
    /// have no entry in `runs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<PolicyFailure>,
}

/// Why a policy's run was abandoned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RunFailure {
    /// A CPU panicked: in the policy's code, or in the framework under it.
    Panic {
        /// The CPU (None when the checker's controlled engine ran it).
        cpu: Option<u32>,
        /// What the CPU was doing ("collapse").
        role: Option<String>,
        /// The collapse step it was in (`cx.current_step()`), when it was collapsing.
        step: Option<String>,
        /// The panic message.
        message: String,
        /// `file:line:column` of the panic.
        location: Option<String>,
        /// The spinlocks the CPU held when it panicked.
        held_locks: Vec<String>,
    },
    /// The watchdog saw CPUs finish nothing for its whole timeout.
    Hung {
        /// The timeout, s.
        watchdog_s: f64,
        /// The CPUs that made no progress.
        cpus: Vec<u32>,
        /// The hung-task report: who waits for which lock, who holds it.
        report: Vec<String>,
    },
    /// The simulation gave the run up: a CPU's virtual clock stood still
    /// in a loop that costs nothing under the cost model.
    Stalled {
        /// The CPU.
        cpu: u32,
        /// The engine's report: the CPU's last scheduling point, the locks
        /// it held, the model's zero costs.
        report: String,
    },
    /// The run ended without one finished collapse: nothing was measured.
    NoCollapse {
        /// How long it ran, s.
        seconds: f64,
        /// Why, and what to change.
        why: String,
    },
}

impl RunFailure {
    /// One line: `panic on CPU 0 (collapse) at step 2 (clear) holding ptl
    /// (PTE table 0): boom (at src/lib.rs:12:9)`, or `hung: CPU 0, CPU 1
    /// finished nothing for 5 s (watchdog)`.
    pub fn summary(&self) -> String {
        match self {
            RunFailure::Panic { cpu, role, step, message, location, held_locks } => {
                let mut s = "panic".to_owned();
                if let Some(cpu) = cpu {
                    s += &format!(" on CPU {cpu}");
                }
                if let Some(role) = role {
                    s += &format!(" ({role})");
                }
                if let Some(step) = step {
                    s += &format!(" at {step}");
                }
                if !held_locks.is_empty() {
                    s += &format!(" holding {}", held_locks.join(", "));
                }
                s += &format!(": {message}");
                if let Some(location) = location {
                    s += &format!(" (at {location})");
                }
                s
            }
            RunFailure::Hung { watchdog_s, cpus, .. } => {
                let cpus: Vec<String> = cpus.iter().map(|c| format!("CPU {c}")).collect();
                format!("hung: {} finished nothing for {watchdog_s} s (watchdog)", cpus.join(", "))
            }
            RunFailure::Stalled { report, .. } => format!("stalled: {report}"),
            RunFailure::NoCollapse { seconds, why } => {
                format!("no collapse finished in {seconds:.2} s: {why}")
            }
        }
    }

    /// The whole description, one line each: for a panic an oops-like
    /// block (message, where, step, locks held), for a hang the hung-task
    /// report.
    pub fn lines(&self) -> Vec<String> {
        match self {
            RunFailure::Panic { cpu, role, step, message, location, held_locks } => {
                let on = match (cpu, role) {
                    (Some(cpu), Some(role)) => format!(" on CPU {cpu} ({role})"),
                    (Some(cpu), None) => format!(" on CPU {cpu}"),
                    _ => String::new(),
                };
                let mut lines = vec![format!("panic{on}: {message}")];
                if let Some(location) = location {
                    lines.push(format!("  at {location}"));
                }
                if let Some(step) = step {
                    lines.push(format!("  in {step}"));
                }
                if !held_locks.is_empty() {
                    lines.push(format!("  holding {}", held_locks.join(", ")));
                }
                lines
            }
            RunFailure::Hung { report, .. } => report.clone(),
            RunFailure::Stalled { .. } | RunFailure::NoCollapse { .. } => vec![self.summary()],
        }
    }
}

/// A policy's run that was abandoned, and where in the command it was.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyFailure {
    /// Policy label.
    pub policy: String,
    /// Workload.
    pub workload: String,
    /// Which part of the command: `run`, `measure`, `scaling
    /// threads.neighbours=4`, `check`, `soak`.
    pub part: String,
    /// What happened.
    pub failure: RunFailure,
}

impl PolicyFailure {
    /// `FAILED v2-x on uffd-private (measure): panic on CPU 0 ...`.
    pub fn summary(&self) -> String {
        format!("FAILED {} on {} ({}): {}", self.policy, self.workload, self.part, self.failure.summary())
    }
}

/// Schedules that broke one rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OracleCount {
    /// How many schedules.
    pub schedules: u64,
    /// Index of the first.
    pub first: u64,
}

/// One policy's search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyCheck {
    /// Label (`v2-flush-bool:recheck_always=true`).
    pub policy: String,
    /// Its parameters.
    pub params: serde_json::Value,
    /// "ok" or "FAIL".
    pub verdict: String,
    /// Schedules run.
    pub schedules: u64,
    /// Scheduling steps over all schedules.
    pub steps: u64,
    /// Schedules that hit the step budget.
    pub step_limits: u64,
    /// Wall time of the search, s.
    pub search_s: f64,
    /// Wall time to the end of the first violating schedule, s.
    pub first_found_s: Option<f64>,
    /// Wall time spent shrinking and replaying the counterexample, s.
    pub shrink_s: f64,
    /// Violations per oracle.
    pub by_oracle: BTreeMap<String, OracleCount>,
    /// The first counterexample, shrunk.
    pub first: Option<CounterexampleDoc>,
}

/// A counterexample as printed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CounterexampleDoc {
    /// Schedule index of the search that found it.
    pub index: u64,
    /// Its violations.
    pub violations: Vec<Violation>,
    /// Replay token.
    pub token: String,
    /// The command that replays it.
    pub replay: String,
    /// Steps of the shrunk schedule.
    pub steps: usize,
    /// Steps of the schedule as found.
    pub original_steps: usize,
    /// Context switches + 1 of the shrunk schedule.
    pub runs: usize,
    /// Same, as found.
    pub original_runs: usize,
    /// Replays the shrinker spent.
    pub shrink_replays: u32,
    /// The timeline, one line each.
    pub timeline: Vec<String>,
    /// The timeline as data, for drawing: lane names (one per CPU).
    pub lanes: Vec<String>,
    /// Every event of the replay up to the violation, in order.
    pub events: Vec<TimelineEvent>,
}

/// One event of a counterexample, for drawing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEvent {
    /// Scheduling step.
    pub step: u64,
    /// CPU (lane).
    pub cpu: u32,
    /// Short label ("lock pml", "step 2 (clear)").
    pub label: String,
}

/// The result file of `collapse-bench report`: a matrix of repeated
/// native runs, a scaling sweep, and the checker's verdicts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportResults {
    /// [`SCHEMA`].
    pub schema: u32,
    /// "collapse-bench X.Y.Z".
    pub tool: String,
    /// Where it ran.
    pub environment: Environment,
    /// The command line that reproduces it.
    pub command: String,
    /// The policy every other is compared with.
    pub base: String,
    /// `--quick` (shorter runs, fewer repetitions, fewer schedules).
    pub quick: bool,
    /// Native runs per cell.
    pub repetitions: u32,
    /// Seconds each native run lasted.
    pub run_seconds: f64,
    /// One per (workload, policy).
    pub cells: Vec<Cell>,
    /// Metric over actor-thread count.
    pub scaling: Vec<ScalingPoint>,
    /// Metric over simulated CPU count (absent in reports made before
    /// the simulation engine, or with the sweep turned off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_sweep: Option<CpuSweep>,
    /// The checker's verdict of every policy, per workload checked.
    pub verdicts: Vec<Verdict>,
    /// The watchdog timeout each native run had, s (absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchdog_s: Option<f64>,
    /// Runs and checks that were abandoned (a panic, or no progress):
    /// they have no entry in `cells`, `scaling` or `verdicts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<PolicyFailure>,
}

/// The repeated runs of one policy on one workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Workload (preset or scenario name).
    pub workload: String,
    /// Policy label.
    pub policy: String,
    /// The runs.
    pub runs: Vec<PolicyRun>,
}

/// One point of the scaling sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScalingPoint {
    /// Workload.
    pub workload: String,
    /// Policy label.
    pub policy: String,
    /// The scenario key swept (`threads.neighbours`).
    pub knob: String,
    /// Its value at this point.
    pub value: u32,
    /// Actor threads in all.
    pub threads: u32,
    /// The run.
    pub run: PolicyRun,
}

/// The simulation engine's sweep over CPU counts: one workload, every
/// measured policy, the same virtual time at every point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpuSweep {
    /// Workload preset, scaled to each CPU count (`Threads::scaled_to`).
    pub workload: String,
    /// Virtual time each point ran, s.
    pub virtual_seconds: f64,
    /// The cost model.
    pub costs: crate::cost::CostModel,
    /// Points with `knob` = "cpus", `value` = `threads` = the CPU count;
    /// each `run` is a simulated run (times virtual, `cores` = CPUs).
    pub points: Vec<ScalingPoint>,
}

/// The checker's verdict of one policy on one workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Workload checked.
    pub workload: String,
    /// What the search found.
    pub check: PolicyCheck,
}
