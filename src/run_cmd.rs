//! `collapse-bench run`: each policy on one workload, on the engine asked
//! for; a summary table on stdout and the results as JSON.
//!
//! The arguments are checked into a [`RunPlan`] before anything runs (bad
//! input exits 2 naming the field), the plan is run ([`RunPlan::run`]),
//! and what it ran is written ([`RunPlan::write`]).

use crate::cli::{
    failures_error, parse_duration, parse_policies, print_failure, reproducer, run_on_engine, scenario, CliError,
    EngineArgs, EngineChoice, WatchdogArgs, WorkloadArgs, GIT_REVISION,
};
use crate::output_file::OutputFile;
use bench_core::actor::Limit;
use bench_core::kernel::DynPolicy;
use bench_core::results::{EndedBy, Environment};
use reports::schema::{PolicyFailure, RunResult, SCHEMA};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use workloads::scenario::available_memory;
use workloads::{RunOptions, Scenario};

/// Arguments of `run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Policies, comma-separated; parameters after colons
    /// (`v2-flush-bool:recheck_always=true`).
    #[arg(short = 'p', long = "policies", default_value = "v1,v2-flush-bool,v2-step3-down")]
    pub policies: String,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    #[command(flatten)]
    pub kernel: crate::cli::KernelSourceArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Run each policy this long (`5s`, `500ms`, `2m`; virtual time under
    /// --engine sim). Default 5s (sim: 100ms), or the cap for --ops.
    #[arg(long)]
    pub duration: Option<String>,
    /// Stop each policy after this many collapses instead.
    #[arg(long)]
    pub ops: Option<u64>,
    /// Seed for every random choice (default: the scenario's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where to write the results.
    #[arg(long, default_value = "collapse-run.json")]
    pub json: PathBuf,
    /// Do not pin threads to cores.
    #[arg(long)]
    pub no_pin: bool,
    #[command(flatten)]
    pub watchdog: WatchdogArgs,
}

/// What `run` will do, every argument checked.
pub struct RunPlan {
    /// Where the results go (`--json`), checked writable.
    pub json: OutputFile,
    /// The policies, in the order given.
    pub policies: Vec<Arc<dyn DynPolicy>>,
    /// The workload with every override, `--seed` and `--cpus` applied.
    pub scenario: Scenario,
    /// The engine, with its cost model when simulated.
    pub engine: EngineChoice,
    /// Where the simulation's cost model came from (a file, `built-in`).
    pub cost_source: String,
    /// The run options: limit, pinning, watchdog.
    pub opts: RunOptions,
    /// Whether `--duration` was given (the time-cap message says which
    /// limit ended a run).
    pub duration_given: bool,
    /// Whether `--seed` was given (else the reproducer adds it).
    pub seed_given: bool,
}

impl RunPlan {
    /// Check `args` into a plan, before any work. Bad input is
    /// [`CliError::Usage`] (exit 2) naming the field and what it allows.
    pub fn new(args: &RunArgs) -> Result<RunPlan, CliError> {
        let json = OutputFile::check("--json", &args.json)?;
        let policies = parse_policies(&args.policies)?;
        let mut scenario = scenario(&args.workload, args.seed)?;
        args.engine.apply(&mut scenario)?;
        scenario.check_memory(available_memory())?;
        let watchdog = args.watchdog.timeout([&scenario])?;
        let engine = args.engine.choice()?;
        let duration = args.duration.as_deref().map(parse_duration).transpose()?;
        let limit = match (args.ops, &engine) {
            (Some(0), _) => return Err(CliError::Usage("--ops: must be at least 1".into())),
            (Some(ops), _) => Limit::Ops { ops, cap: duration.unwrap_or(Duration::from_secs(60)) },
            (None, EngineChoice::Native) => Limit::Duration(duration.unwrap_or(Duration::from_secs(5))),
            (None, EngineChoice::Simulated(_)) => Limit::Duration(duration.unwrap_or(Duration::from_millis(100))),
        };
        let opts = RunOptions { limit, pin: !args.no_pin, hook: None, git_revision: GIT_REVISION.into(), watchdog };
        Ok(RunPlan {
            json,
            policies,
            scenario,
            engine,
            cost_source: args.engine.cost_source(),
            opts,
            duration_given: duration.is_some(),
            seed_given: args.seed.is_some(),
        })
    }

    /// Run every policy, printing the header, progress and failures as it
    /// goes; the results of those that finished and the failures of those
    /// that did not. An error only for bad input the engine found.
    pub fn run(&self) -> Result<RunResult, CliError> {
        let scenario = &self.scenario;
        let threads = scenario.threads.total() as usize;
        let cores = bench_core::machine::available_cores();
        match &self.engine {
            EngineChoice::Simulated(_) => sayln!(
                "workload {} (seed {}), {threads} virtual CPUs, simulated (virtual time, cost model {})",
                scenario.name,
                scenario.seed,
                self.cost_source
            ),
            EngineChoice::Native => {
                sayln!("workload {} (seed {}), {threads} threads on {cores} cores", scenario.name, scenario.seed);
                if threads > cores {
                    sayln!(
                        "note: {threads} threads on {cores} cores: oversubscribed. A preempted lock holder stalls \
                         every\n\
                         spinning waiter, so hold and wait figures include scheduler delays; use the\n\
                         simulation engine (or a machine with more cores) for contention studies."
                    );
                }
            }
        }
        let mut runs = vec![];
        let mut failures = vec![];
        for policy in &self.policies {
            tell!("running {} ...", policy.label());
            let started = Instant::now();
            let (run, steps) = match run_on_engine(policy.clone(), scenario, &self.engine, &self.opts)? {
                Ok(ran) => ran,
                Err(failure) => {
                    let failure = PolicyFailure {
                        policy: policy.label(),
                        workload: scenario.name.clone(),
                        part: "run".into(),
                        failure: *failure,
                    };
                    print_failure(&failure);
                    failures.push(failure);
                    continue;
                }
            };
            if let (Limit::Ops { ops, cap }, Some(EndedBy::TimeCap)) = (self.opts.limit, run.ended_by) {
                tell!(
                    "  stopped by the time limit ({cap:?}{}) after {} of the {ops} collapses --ops asked for",
                    if self.duration_given { ", --duration" } else { ", the default cap of --ops" },
                    run.collapses
                );
            }
            if let Some(steps) = steps {
                let wall = started.elapsed().as_secs_f64();
                tell!(
                    "  {:.3} s virtual in {wall:.2} s wall: {steps} scheduling steps ({:.2} M/s)",
                    run.wall_s,
                    steps as f64 / wall / 1e6
                );
            }
            runs.push(run);
        }
        Ok(RunResult {
            schema: SCHEMA,
            tool: format!("collapse-bench {}", env!("CARGO_PKG_VERSION")),
            environment: Environment::capture(self.engine.name(), scenario.seed, GIT_REVISION),
            costs: self.engine.costs().cloned(),
            scenario: serde_json::to_value(scenario).map_err(|e| CliError::Failed(e.to_string()))?,
            command: reproducer(scenario.seed, self.seed_given),
            runs,
            watchdog_s: Some(self.opts.watchdog.as_secs_f64()),
            failures,
        })
    }

    /// Print the summary of `result`, write it to `--json`, and end with
    /// the failures' error (exit 1) if any run was abandoned.
    pub fn write(&self, result: &RunResult) -> Result<(), CliError> {
        say!("\n{}", reports::summary::run_table(&result.runs));
        for r in result.runs.iter().filter(|r| r.violations_total > 0) {
            sayln!("{}: {} violation(s); first:", r.policy, r.violations_total);
            for v in r.violations.iter().take(3) {
                sayln!("  {v}");
            }
        }
        let bytes = serde_json::to_vec_pretty(result).map_err(|e| CliError::Failed(e.to_string()))?;
        self.json.write(&bytes)?;
        sayln!("results: {}\nreproduce: {}", self.json.path().display(), result.command);
        if !result.failures.is_empty() {
            return Err(failures_error(&result.failures, &self.json.path().display().to_string()));
        }
        Ok(())
    }
}

/// `run`: check the arguments, run the plan, write its results.
pub fn run(args: &RunArgs) -> Result<(), CliError> {
    let plan = RunPlan::new(args)?;
    let result = plan.run()?;
    plan.write(&result)
}
