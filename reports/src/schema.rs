//! The result documents: the files `run`, `report` and `check --json`
//! write and `compare` reads back, and [`SCHEMA`], the version of their
//! layout. What goes into them (a policy's run, the machine, a
//! counterexample's typed timeline) is `bench_core::results`'s, made
//! where runs and checks are made; this crate renders it.

use bench_core::cost::CostModel;
use bench_core::oracle::Violation;
use bench_core::results::{Environment, PolicyRun, RunFailure, TimelineEntry};
use bench_core::Role;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// Version of the result-file layout. 2: counterexample timelines are
/// typed events ([`CounterexampleTimeline::Events`]) where 1 had printed
/// lines. 3: a report's cells and sweep points say how they were measured
/// ([`Measured`]), and a sweep point holds repeated runs. 4: a report
/// has a kernel history ([`KernelHistory`], optional: files before 4
/// load without one).
pub const SCHEMA: u32 = 4;

/// The oldest layout version this build still reads: a file of version 1
/// loads with its counterexample timelines as the lines it printed
/// ([`CounterexampleTimeline::Lines`]).
pub const OLDEST_READABLE: u32 = 1;

/// The result file of `collapse-bench run`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Layout version: [`SCHEMA`] as written, down to
    /// [`OLDEST_READABLE`] as read.
    pub schema: u32,
    /// "collapse-bench X.Y.Z".
    pub tool: String,
    /// Where it ran.
    pub environment: Environment,
    /// The full workload configuration.
    pub scenario: serde_json::Value,
    /// The simulation's cost model (absent for native runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub costs: Option<CostModel>,
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
    /// "FAIL"; else "verified" (exhaustive, complete), "bounded"
    /// (exhaustive, cut short by its bound) or "ok" (sampled).
    pub verdict: String,
    /// Schedules run (exhaustive: interleavings explored).
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
    /// How far an exhaustive check went (absent for a sampled one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exhaustive: Option<ExhaustiveDoc>,
}

/// An exhaustive check's reach.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExhaustiveDoc {
    /// The scope explored, in words.
    pub scope: String,
    /// Interleavings explored to their end.
    pub interleavings: u64,
    /// Runs made, counting those cut as equivalent to an explored one
    /// (sleep-set blocked) or by the bound.
    pub runs: u64,
    /// Runs cut as equivalent to one explored.
    pub sleep_blocked: u64,
    /// The preemption bound, if any.
    pub bound: Option<u32>,
    /// Whether the bound forbade a choice (then not complete).
    pub bound_hit: bool,
    /// Whether every interleaving of the scope was explored.
    pub complete: bool,
}

impl ExhaustiveDoc {
    /// The reach in words: `verified (N interleavings, complete)` only
    /// when nothing was left out and nothing broke.
    pub fn phrase(&self, failed: bool) -> String {
        let n = self.interleavings;
        match (failed, self.complete, self.bound) {
            (false, true, _) => format!("verified ({n} interleavings, complete)"),
            (true, true, _) => format!("every one of {n} interleavings explored"),
            (_, false, Some(k)) if self.bound_hit => {
                format!("{n} interleavings within {k} preemptions; the bound left others out: not verified")
            }
            (_, false, _) => format!("{n} interleavings before it stopped at the first violation: not complete"),
        }
    }
}

/// A counterexample: how it was found and shrunk, the command that
/// replays it, and its timeline.
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
    /// The replay's timeline up to the violation.
    pub timeline: CounterexampleTimeline,
}

/// A counterexample's timeline, as its file keeps it.
///
/// In the file: an object `{"roles": [...], "events": [...]}` for
/// [`CounterexampleTimeline::Events`], an array of lines for
/// [`CounterexampleTimeline::Lines`] (schema 1, whose drawing data beside
/// them, `lanes` and labelled `events`, is not read).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CounterexampleTimeline {
    /// The events, typed: rendered as text by [`crate::timeline::render`] and
    /// drawn by the plots.
    Events {
        /// Role of each CPU (lane).
        roles: Vec<Role>,
        /// Every event of the replay up to the violation, in order.
        events: Vec<TimelineEntry>,
    },
    /// A schema-1 file's timeline: the lines `check` printed, shown as
    /// they are and not drawn.
    Lines(Vec<String>),
}

impl<'de> Deserialize<'de> for CounterexampleTimeline {
    /// By shape: an array is the old lines, an object the typed events.
    /// (Not serde's `untagged`, which would hide why a typed timeline is
    /// wrong: here the error names the field at fault.)
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
        use serde::de::{MapAccess, SeqAccess, Visitor};

        #[derive(Deserialize)]
        struct Events {
            roles: Vec<Role>,
            events: Vec<TimelineEntry>,
        }

        struct Shape;
        impl<'de> Visitor<'de> for Shape {
            type Value = CounterexampleTimeline;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a timeline: an object of roles and events, or (schema 1) an array of lines")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let Events { roles, events } = Events::deserialize(MapAccessDeserializer::new(map))?;
                Ok(CounterexampleTimeline::Events { roles, events })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(seq)).map(CounterexampleTimeline::Lines)
            }
        }
        deserializer.deserialize_any(Shape)
    }
}

/// The result file of `collapse-bench report`: a matrix of repeated
/// native runs, a scaling sweep, and the checker's verdicts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportResults {
    /// Layout version: [`SCHEMA`] as written, down to
    /// [`OLDEST_READABLE`] as read.
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
    /// Runs per cell (the least, where cells ran until their figures
    /// settled: see each cell's runs).
    pub repetitions: u32,
    /// Seconds each native run lasted.
    pub run_seconds: f64,
    /// Virtual seconds each simulated run of the matrix and the scaling
    /// sweep lasted (absent before schema 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim_seconds: Option<f64>,
    /// The cost model of the simulated cells and scaling points, and
    /// whether it was calibrated on this machine (absent before schema 3,
    /// or when nothing was simulated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim_costs: Option<SimCosts>,
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
    /// The checker on each kernel version's form of the function, and
    /// the `mmap_lock` cost of each (absent before schema 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_history: Option<KernelHistory>,
    /// Runs and checks that were abandoned (a panic, or no progress):
    /// they have no entry in `cells`, `scaling` or `verdicts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<PolicyFailure>,
}

/// The cost model a report simulated with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimCosts {
    /// Measured on the machine the report ran on (`calibrate`), or given
    /// (`--costs`, or the built-in model where calibration was not asked for).
    pub calibrated: bool,
    /// The model.
    pub costs: CostModel,
}

/// The repeated runs of one policy on one workload, measured one way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Workload (preset or scenario name).
    pub workload: String,
    /// Policy label.
    pub policy: String,
    /// How (files before schema 3: natively, the workload as it is).
    #[serde(default)]
    pub measured: Measured,
    /// The runs, in the order they ran (the report runs the policies of a
    /// workload in turn, one run each, so the runs of two cells alternate
    /// in time).
    pub runs: Vec<PolicyRun>,
}

/// How a cell or a sweep point was measured. A report measures natively
/// what fits the machine's cores, one pinned thread per core, and
/// simulates what does not (a run with more threads than cores measures
/// the preemption of lock holders more than the policy).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "engine", rename_all = "kebab-case")]
pub enum Measured {
    /// Native threads, the workload as it is.
    #[default]
    Native,
    /// Native threads, the workload fitted to the machine's cores: its
    /// collapsers and as many of its other actors, in proportion, as fill
    /// the cores (`Threads::scaled_to`).
    Fitted {
        /// The actors that ran (`collapse+uffd`).
        actors: String,
    },
    /// The simulation engine: every actor on its virtual CPU, virtual
    /// time, the report's cost model.
    Simulated,
}

impl Measured {
    /// In words, for a section's head: `native`, `native, fitted to the
    /// cores (collapse+uffd)`, `simulated`.
    pub fn describe(&self) -> String {
        match self {
            Measured::Native => "native".into(),
            Measured::Fitted { actors } => format!("native, fitted to the cores ({actors})"),
            Measured::Simulated => "simulated".into(),
        }
    }

    /// A short tag for file names and keys: `native`, `fitted`, `sim`.
    pub fn tag(&self) -> &'static str {
        match self {
            Measured::Native => "native",
            Measured::Fitted { .. } => "fitted",
            Measured::Simulated => "sim",
        }
    }
}

/// One point of a sweep: a policy's repeated runs at one value of the
/// swept knob.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScalingPoint {
    /// Workload.
    pub workload: String,
    /// Policy label.
    pub policy: String,
    /// The scenario key swept (`threads.neighbours`, `cpus`).
    pub knob: String,
    /// Its value at this point.
    pub value: u32,
    /// Actor threads in all.
    pub threads: u32,
    /// How the point was measured.
    pub measured: Measured,
    /// The runs, each with its own seed.
    pub runs: Vec<PolicyRun>,
}

impl<'de> Deserialize<'de> for ScalingPoint {
    /// Also a point of a file before schema 3: one run, in `run`,
    /// measured natively (a CPU sweep's points are marked simulated by
    /// [`CpuSweep`]'s reader).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Stored {
            workload: String,
            policy: String,
            knob: String,
            value: u32,
            threads: u32,
            #[serde(default)]
            measured: Measured,
            #[serde(default)]
            runs: Vec<PolicyRun>,
            #[serde(default)]
            run: Option<PolicyRun>,
        }
        let p = Stored::deserialize(deserializer)?;
        let runs = match (p.runs, p.run) {
            (runs, None) => runs,
            (mut runs, Some(run)) => {
                runs.insert(0, run);
                runs
            }
        };
        if runs.is_empty() {
            return Err(serde::de::Error::custom("a sweep point needs `runs` (or, before schema 3, `run`)"));
        }
        let (workload, policy, knob, value, threads, measured) =
            (p.workload, p.policy, p.knob, p.value, p.threads, p.measured);
        Ok(ScalingPoint { workload, policy, knob, value, threads, measured, runs })
    }
}

/// The simulation engine's sweep over CPU counts: one workload, every
/// measured policy, the same virtual time at every point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpuSweep {
    /// Workload preset, scaled to each CPU count (`Threads::scaled_to`).
    pub workload: String,
    /// Virtual time each run of a point ran, s, up to 16 CPUs; past them
    /// each doubling of the CPUs halves it (each run's own is its
    /// `wall_s`).
    pub virtual_seconds: f64,
    /// The cost model.
    pub costs: CostModel,
    /// Points with `knob` = "cpus", `value` = `threads` = the CPU count;
    /// their runs are simulated (times virtual, `cores` = CPUs).
    #[serde(deserialize_with = "simulated_points")]
    pub points: Vec<ScalingPoint>,
}

/// A CPU sweep's points, each marked simulated (files before schema 3 do
/// not say so).
fn simulated_points<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<ScalingPoint>, D::Error> {
    let mut points = Vec::<ScalingPoint>::deserialize(deserializer)?;
    points.iter_mut().for_each(|p| p.measured = Measured::Simulated);
    Ok(points)
}

/// The checker's verdict of one policy on one workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Workload checked.
    pub workload: String,
    /// What the search found.
    pub check: PolicyCheck,
}

/// A report's kernel history: the exhaustive checker's verdict of each
/// kernel version's form of `collapse_pte_mapped_thp()` on the scope of
/// each preset (the 2023 thread's and today's kernel's), and what
/// `mmap_lock` cost the faults beside the collapse in each version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelHistory {
    /// The presets whose scopes were explored (the table's columns), in order.
    pub presets: Vec<String>,
    /// One per kernel version (the table's rows), oldest first.
    pub versions: Vec<HistoryVersion>,
    /// The `mmap_lock` figures (absent where nothing was measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mmap_lock: Option<MmapLockCost>,
}

/// One kernel version's row of the kernel history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryVersion {
    /// The policy that models it, as registered (`v1`).
    pub policy: String,
    /// As the table names it (`v1 (6.6)`).
    pub label: String,
    /// Whether the build that made the report registers the policy: a
    /// version it does not has no cells.
    pub registered: bool,
    /// One per preset explored, in [`KernelHistory::presets`] order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cells: Vec<HistoryCell>,
}

/// One version on one preset's scope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryCell {
    /// The preset.
    pub workload: String,
    /// The exhaustive check of its scope (None: it did not finish; see
    /// `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<PolicyCheck>,
    /// Why there is no check (a panic, a scope that would not build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `mmap_lock` costs the faults beside a collapse: each registered
/// version measured on one workload with page-cache faulters, the way
/// the report measures its matrix on the machine (natively what fits the
/// cores; fitted and simulated what does not).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MmapLockCost {
    /// The workload (a preset with page-cache faulters).
    pub workload: String,
    /// One per version and way of measuring; a cell's `policy` is the
    /// version's [`HistoryVersion::policy`].
    pub cells: Vec<Cell>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timelines_read_by_shape() {
        let old: CounterexampleTimeline =
            serde_json::from_str(r#"["step  CPU0 collapse", "  *** lost-page"]"#).unwrap();
        assert_eq!(old, CounterexampleTimeline::Lines(vec!["step  CPU0 collapse".into(), "  *** lost-page".into()]));
        let typed = r#"{"roles": ["collapse"], "events": [{"step": 1, "cpu": 0, "event": {"kind": "pmd_huge"}}]}"#;
        let CounterexampleTimeline::Events { roles, events } = serde_json::from_str(typed).unwrap() else { panic!() };
        assert_eq!((roles, events.len()), (vec![Role::Collapse], 1));
        let bad = r#"{"roles": [], "events": [{"step": 1, "cpu": 0, "event": {"kind": "nap"}}]}"#;
        let e = serde_json::from_str::<CounterexampleTimeline>(bad).unwrap_err().to_string();
        assert!(e.contains("unknown variant `nap`"), "{e}");
        let e = serde_json::from_str::<CounterexampleTimeline>("7").unwrap_err().to_string();
        assert!(e.contains("an object of roles and events"), "{e}");
    }
}
