//! `collapse-bench report`: the main job. Runs the default matrix (the
//! correct policies on every preset, each cell repeated), a scaling sweep
//! over `pml` neighbours, a simulated sweep over CPU counts and the
//! checker's verdicts of every policy, then the kernel history (each
//! kernel version's form of the function explored on the 2023 presets'
//! and today's kernel's scopes, and what `mmap_lock` cost its faults);
//! writes report.txt, results.json, the plots and index.html into the
//! output directory.
//!
//! The files are built in a staging directory beside the output and the
//! two directories are swapped in one step ([`crate::output_dir`]), so an
//! interrupted or killed report leaves the previous one intact. Ctrl-C
//! stops after the current run, lists what was finished and exits 130.
//! A policy whose run panics or hangs is reported as failed and left out
//! of the tables; the others go on, and the command exits 1 at the end.

use crate::check_cmd::{counterexample_doc, policy_doc, replay_command};
use crate::cli::{
    failures_error, panic_failure, parse_policies, print_failure, reproducer, run_on_engine, CliError, EngineArgs,
    EngineChoice, Outcome, WatchdogArgs, WorkloadArgs, GIT_REVISION, MAX_CPUS,
};
use crate::interrupt;
use bench_core::actor::Limit;
use bench_core::kernel::DynPolicy;
use bench_core::machine::available_cores;
use bench_core::results::{Environment, PolicyRun, RunFailure};
use bench_core::CostModel;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reports::schema::{
    Cell, CpuSweep, HistoryCell, HistoryVersion, KernelHistory, Measured, MmapLockCost, PolicyCheck, PolicyFailure,
    ReportResults, ScalingPoint, SimCosts, Verdict, SCHEMA,
};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use workloads::check::{check_policy, CheckOptions, CheckReport};
use workloads::exhaustive::{self, check_exhaustive, ExhaustiveOptions};
use workloads::scenario::available_memory;
use workloads::{preset, RunOptions, Scenario, PRESETS};

/// Workloads the checker searches for each verdict: the original report's
/// shape, and with `pml` contended (where the v2 trylock fails).
const CHECKED_WORKLOADS: [&str; 2] = ["uffd-private", "pml-contended"];
/// The scaling sweep: `pml` neighbours on the contended preset.
const SCALING_WORKLOAD: &str = "pml-contended";
const SCALING_KNOB: &str = "threads.neighbours";
/// The simulated sweep over CPU counts: the same contended preset, its mix
/// scaled to each count.
const CPU_SWEEP_WORKLOAD: &str = "pml-contended";

/// Today's kernel's presets (issue 16): `pt-reclaim` (MADV_DONTNEED
/// freeing the PTE tables it empties, v6.14), `retract`
/// (`retract_page_tables()` from `collapse_file()`, v6.13) and
/// `guard-file` (MADV_GUARD_INSTALL on a file VMA, v6.15). The matrix
/// measures them only when `-w` names them (by default it stays on the
/// 2023 presets, and its time with it); the kernel history explores
/// their scopes. The one list of them: where `workloads` exports one,
/// this becomes a `use`.
pub const KERNEL_HISTORY_PRESETS: [&str; 3] = ["pt-reclaim", "retract", "guard-file"];

/// The kernel history's rows, oldest first: the policy that models each
/// version, as registered, and how the table names it. `v6.1` (the
/// caller holds `mmap_lock` for write) and `v6.13` (the `pmd_same()`
/// rechecks) may not be registered in a build; their rows say so.
const HISTORY_VERSIONS: [(&str, &str); 4] =
    [("v6.1", "v6.1"), ("pre-fix", "pre-fix"), ("v1", "v1 (6.6)"), ("v6.13", "v6.13")];

/// The scopes whose complete exploration takes more than a second or so
/// a version (release build, two cores: `pt-reclaim` 1.7-1.9 s, `retract`
/// 7 s for v1 and 15 s for pre-fix), which `--quick` explores under
/// [`QUICK_HISTORY_BOUND`] preemptions (0.2-0.3 s; both still find
/// pre-fix's and v1's failures on `pt-reclaim`, pre-fix's on `retract`).
const QUICK_BOUNDED_SCOPES: [&str; 2] = ["pt-reclaim", "retract"];
const QUICK_HISTORY_BOUND: u32 = 2;

/// The workload of the kernel history's `mmap_lock` figures: page-cache
/// faults (readers of `mmap_lock`) beside a khugepaged collapse.
const MMAP_LOCK_WORKLOAD: &str = "shmem-shared";

/// Runs a version of the `mmap_lock` figures makes on each way of
/// measuring, in the quick and the full report alike: medians to quote,
/// not changes to star, and little time (each run lasts the matrix's run
/// time: four versions, fitted and simulated, take about 12 s of the full
/// report on two cores, 4 s of the quick one).
const MMAP_LOCK_RUNS: u32 = 5;

/// The kernel history's presets, its table's columns: the 2023 thread's
/// (those the verdicts check) and today's kernel's.
fn history_presets() -> Vec<&'static str> {
    CHECKED_WORKLOADS.iter().chain(&KERNEL_HISTORY_PRESETS).copied().collect()
}

/// The preemption bound of the kernel history's exploration of `name`'s
/// scope: the preset's default ([`exhaustive::default_bound`]), or under
/// `--quick` [`QUICK_HISTORY_BOUND`] for [`QUICK_BOUNDED_SCOPES`].
fn history_bound(name: &str, quick: bool) -> Option<u32> {
    let quick_bound = (quick && QUICK_BOUNDED_SCOPES.contains(&name)).then_some(QUICK_HISTORY_BOUND);
    exhaustive::default_bound(name).or(quick_bound)
}

/// Arguments of `report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Shorter runs and searches (about a minute on two cores).
    #[arg(long)]
    pub quick: bool,
    /// Policies to measure, comma-separated (the first is the base unless
    /// --base says otherwise).
    #[arg(short = 'p', long = "policies", default_value = "v1,v2-flush-bool,v2-step3-down")]
    pub policies: String,
    /// Workload presets to measure, comma-separated (default: every
    /// preset but today's kernel's: pt-reclaim, retract, guard-file).
    #[arg(short = 'w', long = "workloads")]
    pub workloads: Option<String>,
    /// The policy the others are compared with.
    #[arg(long)]
    pub base: Option<String>,
    /// Output directory.
    #[arg(long, default_value = "collapse-report")]
    pub out: PathBuf,
    /// Seed of every run and search.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Checker schedules per policy and workload (default 2000, 300 with --quick).
    #[arg(long)]
    pub schedules: Option<u64>,
    /// The engine of the measured matrix: `native` (the default) measures
    /// natively what fits the cores and simulates what does not; `sim`
    /// simulates everything. `--costs` is the cost model of whatever is
    /// simulated (default: calibrated on this machine at the start).
    /// Each run of a cell uses the next seed. The CPU sweep is always
    /// simulated; the verdicts always come from the checker.
    #[command(flatten)]
    pub engine: EngineArgs,
    /// CPU counts of the simulated sweep, comma-separated (1 to 256;
    /// default 1,2,4,8,16,32,64,128,256, or 2,8,32 with --quick), or `none`.
    #[arg(long, value_name = "N,N,...")]
    pub sweep_cpus: Option<String>,
    #[command(flatten)]
    pub watchdog: WatchdogArgs,
    #[command(flatten)]
    pub kernel: crate::cli::KernelSourceArgs,
}

/// Parse `--sweep-cpus`.
fn sweep_cpus(spec: &str) -> Result<Vec<u32>, CliError> {
    if spec.trim() == "none" {
        return Ok(vec![]);
    }
    let bad = |item: &str| {
        CliError::Usage(format!("--sweep-cpus: `{item}` is not a CPU count; allowed: 1 to {MAX_CPUS}, or `none`"))
    };
    let mut cpus = vec![];
    for item in spec.split(',').map(str::trim) {
        let n: u32 = item.parse().map_err(|_| bad(item))?;
        if !(1..=MAX_CPUS).contains(&n) {
            return Err(bad(item));
        }
        if !cpus.contains(&n) {
            cpus.push(n);
        }
    }
    cpus.sort_unstable();
    Ok(cpus)
}

/// How much work each part of the report does.
#[derive(Clone)]
struct Work {
    /// Runs a cell makes at least, and at most: between the two, a
    /// workload's cells stop once every headline figure of every policy
    /// has settled ([`SETTLED`]) or their time is up (`group_time`).
    min_runs: u32,
    max_runs: u32,
    group_time: Duration,
    /// Wall time of a native run.
    run_time: Duration,
    /// Virtual time of a simulated run (matrix, scaling sweep, CPU sweep).
    sim_time: Duration,
    scaling: &'static [u32],
    /// Runs per point of the scaling sweep and of the CPU sweep.
    sweep_runs: u32,
    cpu_sweep: Vec<u32>,
    schedules: u64,
}

/// A headline figure has settled when half its interval is within this
/// share of its median.
const SETTLED: f64 = 0.05;

/// CPUs up to which a point of the CPU sweep runs the full virtual time;
/// past them each doubling halves it, so every point costs about the same
/// to simulate and collapses about as often (the collapsers grow with the
/// CPUs, [`Scenario::scaled_to`]).
const SWEEP_FULL_TIME_CPUS: u32 = 16;

impl Work {
    /// Virtual time of each run of the CPU sweep's point at `cpus`.
    fn sweep_time(&self, cpus: u32) -> Duration {
        self.sim_time * SWEEP_FULL_TIME_CPUS / cpus.max(SWEEP_FULL_TIME_CPUS)
    }
}

impl Work {
    fn new(quick: bool) -> Work {
        Work {
            // Ten runs: two halves of five, each of which can show a
            // change at p < 0.05 ([`reports::stats::reproduced`]).
            min_runs: 10,
            max_runs: if quick { 10 } else { 20 },
            group_time: Duration::from_secs(if quick { 5 } else { 15 }),
            run_time: Duration::from_millis(if quick { 80 } else { 300 }),
            sim_time: Duration::from_millis(if quick { 10 } else { 20 }),
            scaling: if quick { &[1, 2, 4] } else { &[1, 2, 4, 8] },
            sweep_runs: if quick { 3 } else { 5 },
            cpu_sweep: if quick { vec![2, 8, 32] } else { vec![1, 2, 4, 8, 16, 32, 64, 128, 256] },
            schedules: if quick { 300 } else { 2000 },
        }
    }

    /// The work of the kernel history's `mmap_lock` figures:
    /// [`MMAP_LOCK_RUNS`] runs a version, no settling.
    fn mmap_lock(&self) -> Work {
        Work { min_runs: MMAP_LOCK_RUNS, max_runs: MMAP_LOCK_RUNS, ..self.clone() }
    }
}

/// One workload measured one way: the scenario as it runs, how it is
/// measured, and on which engine.
struct Measure {
    scenario: Scenario,
    measured: Measured,
    engine: EngineChoice,
}

/// Whether a report with this plan simulates anything on a machine of
/// `cores` cores: under `--engine sim`, with a CPU sweep, or where a
/// workload of the matrix or a point of the scaling sweep does not fit
/// the cores ([`measures_of`]).
fn simulates_anything(
    native: bool,
    work: &Work,
    scenarios: &[Scenario],
    seed: u64,
    cores: u32,
) -> Result<bool, CliError> {
    let too_big = |s: &Scenario| s.threads.total() > cores;
    Ok(!native
        || !work.cpu_sweep.is_empty()
        || scenarios.iter().any(too_big)
        || scaling_scenarios(work.scaling, seed)?.iter().any(|(_, s)| too_big(s)))
}

/// How `scenario` is measured on a machine of `cores` cores: natively as
/// it is when its threads fit the cores (one pinned thread per core);
/// when they do not, natively fitted to the cores (the collapsers and
/// their share of the others, `Threads::fitted_to`) and, with every actor,
/// simulated on `sim_costs`. Under `--engine sim` (`native` false), only
/// simulated.
fn measures_of(scenario: &Scenario, native: bool, cores: u32, sim_costs: &CostModel) -> Vec<Measure> {
    let simulated = || Measure {
        scenario: scenario.clone(),
        measured: Measured::Simulated,
        engine: EngineChoice::Simulated(sim_costs.clone()),
    };
    if !native {
        return vec![simulated()];
    }
    if scenario.threads.total() <= cores {
        return vec![Measure { scenario: scenario.clone(), measured: Measured::Native, engine: EngineChoice::Native }];
    }
    let threads = scenario.threads.fitted_to(cores);
    let fitted = Measure {
        measured: Measured::Fitted { actors: threads.kinds() },
        scenario: Scenario { threads, ..scenario.clone() },
        engine: EngineChoice::Native,
    };
    vec![fitted, simulated()]
}

fn workloads(args: &ReportArgs) -> Result<Vec<Scenario>, CliError> {
    let names: Vec<String> = match &args.workloads {
        Some(list) => list.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
        None => PRESETS
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| !KERNEL_HISTORY_PRESETS.contains(name))
            .map(str::to_owned)
            .collect(),
    };
    if names.is_empty() {
        let allowed: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
        return Err(CliError::Usage(format!("--workloads: none given; allowed: {}", allowed.join(", "))));
    }
    names
        .iter()
        .map(|name| {
            let s = preset(name).map_err(|e| CliError::Usage(format!("--workloads: {e}")))?;
            matrix_scenario(s, args)
        })
        .collect()
}

/// `scenario` (a preset) as the matrix runs it: seeded, scaled to
/// `--cpus`, its memory checked.
fn matrix_scenario(mut scenario: Scenario, args: &ReportArgs) -> Result<Scenario, CliError> {
    scenario.seed = args.seed;
    args.engine.apply(&mut scenario)?;
    scenario.check_memory(available_memory())?;
    Ok(scenario)
}

/// A progress bar on stderr when it is a terminal (and not under CI).
fn progress(total: u64) -> ProgressBar {
    let visible = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
    let bar = ProgressBar::with_draw_target(
        Some(total),
        if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
    );
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} ETA {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// What `report` will do, every argument checked.
pub struct ReportPlan {
    /// The output directory as given, for messages.
    out_given: PathBuf,
    /// The real directory to replace ([`crate::output_dir::check_out_dir`]).
    out: PathBuf,
    /// The policies measured, the base among them.
    measured: Vec<Arc<dyn DynPolicy>>,
    /// The label of the base policy.
    base: String,
    /// Every registered policy: each gets a verdict.
    checked: Vec<Arc<dyn DynPolicy>>,
    /// The workloads of the matrix, seeded and scaled to `--cpus`.
    scenarios: Vec<Scenario>,
    /// The kernel history's versions ([`HISTORY_VERSIONS`]): the policy
    /// and its label, with the policy built where this build registers it.
    history: Vec<HistoryRow>,
    /// The workload of its `mmap_lock` figures, as the matrix would run it.
    mmap_scenario: Scenario,
    /// `--engine native`: measure natively what fits the cores.
    native: bool,
    /// `--costs`: the cost model of everything simulated; None: calibrate
    /// on this machine when the report starts.
    cost_file: Option<CostModel>,
    /// How much each part does.
    work: Work,
    /// The run options of the matrix (the watchdog among them).
    opts: RunOptions,
    seed: u64,
    quick: bool,
}

impl ReportPlan {
    /// Check `args` into a plan, before any work. Bad input is
    /// [`CliError::Usage`] (exit 2) naming the field and what it allows;
    /// nothing is written then.
    pub fn new(args: &ReportArgs) -> Result<ReportPlan, CliError> {
        let out = crate::output_dir::check_out_dir("--out", &args.out)?;
        let measured = parse_policies(&args.policies)?;
        let base = match &args.base {
            Some(b) => measured.iter().find(|p| p.label() == *b || p.name() == b).ok_or_else(|| {
                let have: Vec<String> = measured.iter().map(|p| p.label()).collect();
                CliError::Usage(format!("--base: `{b}` is not among --policies; allowed: {}", have.join(", ")))
            })?,
            None => &measured[0],
        }
        .label();
        // Every registered policy gets a verdict (a plugin's too).
        let checked = parse_policies(&crate::registered_names())?;
        let scenarios = workloads(args)?;
        let registry = crate::registry();
        let mut history = vec![];
        for (name, label) in HISTORY_VERSIONS {
            let policy = match registry.iter().any(|e| e.name == name) {
                true => Some(parse_policies(name)?.remove(0)),
                false => None,
            };
            history.push(HistoryRow { name, label, policy });
        }
        let mmap_scenario = matrix_scenario(preset(MMAP_LOCK_WORKLOAD)?, args)?;
        // `--costs` is the model of whatever is simulated: what does not
        // fit the cores (everything under `--engine sim`), and the CPU
        // sweep.
        let cost_file = args.engine.cost_file()?;
        let native = !args.engine.engine_with(None).is_simulated();
        let mut work = Work::new(args.quick);
        match args.schedules {
            Some(0) => return Err(CliError::Usage("--schedules: must be at least 1".into())),
            Some(n) => work.schedules = n,
            None => {}
        }
        if let Some(spec) = &args.sweep_cpus {
            work.cpu_sweep = sweep_cpus(spec)?;
        }
        let cores = available_cores() as u32;
        if cost_file.is_some() && !simulates_anything(native, &work, &scenarios, args.seed, cores)? {
            return Err(CliError::Usage(format!(
                "--costs: nothing is simulated (every workload fits the {cores} cores and --sweep-cpus none); drop \
                 --costs, or add --engine sim or a CPU sweep"
            )));
        }
        let watchdog = args.watchdog.timeout(scenarios.iter().chain([&mmap_scenario]))?;
        let opts = RunOptions {
            limit: Limit::Duration(work.run_time),
            pin: true,
            hook: None,
            git_revision: GIT_REVISION.into(),
            watchdog,
        };
        Ok(ReportPlan {
            out_given: args.out.clone(),
            out,
            measured,
            base,
            checked,
            scenarios,
            history,
            mmap_scenario,
            native,
            cost_file,
            work,
            opts,
            seed: args.seed,
            quick: args.quick,
        })
    }

    /// Run every part of the report: the matrix, the scaling sweep, the
    /// CPU sweep and the verdicts. Ctrl-C stops it between runs (exit 130,
    /// nothing written); a run that fails is recorded in the ledger and
    /// the others go on.
    pub fn run(&self) -> Result<(ReportResults, Ledger), CliError> {
        let work = &self.work;
        let cores = available_cores() as u32;
        let measured = &self.measured;
        // Each workload's scope explored, then sampled; the kernel
        // history's scopes that the verdicts do not explore.
        let history_explored = self.history_versions().len() * KERNEL_HISTORY_PRESETS.len();
        let checks = (2 * CHECKED_WORKLOADS.len() * self.checked.len() + history_explored) as u64;
        let mut ledger = Ledger::new(self.out.clone(), checks);
        // The cost model of everything simulated: given, or measured here.
        let (sim_costs, calibrated) = match &self.cost_file {
            Some(costs) => (costs.clone(), false),
            None => {
                ledger.say("calibrating the simulation's costs on this machine");
                (crate::calibrate_cmd::measure_model(|_| {}).0, true)
            }
        };
        let mut cells = vec![];
        let mut simulated = false;
        for scenario in &self.scenarios {
            for measure in measures_of(scenario, self.native, cores, &sim_costs) {
                simulated |= measure.engine.is_simulated();
                cells.extend(measure_cells(measured, &measure, work, &self.opts, &mut ledger)?);
            }
        }
        // The kernel history's `mmap_lock` figures, measured as the
        // matrix is (after it: nothing else runs meanwhile).
        let versions = self.history_versions();
        let mut mmap_cells = vec![];
        if !versions.is_empty() {
            for measure in measures_of(&self.mmap_scenario, self.native, cores, &sim_costs) {
                simulated |= measure.engine.is_simulated();
                mmap_cells.extend(measure_cells(&versions, &measure, &work.mmap_lock(), &self.opts, &mut ledger)?);
            }
        }
        let scaling = scaling_sweep(measured, work, self.seed, (cores, &sim_costs, &self.opts), &mut ledger)?;
        simulated |= scaling.iter().any(|p| p.measured == Measured::Simulated);
        let cpu_sweep = simulated_cpu_sweep(measured, work, self.seed, (&sim_costs, &self.opts), &mut ledger)?;
        let verdicts = verdicts(&self.checked, work, self.seed, &mut ledger)?;
        let mut kernel_history = kernel_history(&self.history, &verdicts, (work, self.seed, self.quick), &mut ledger)?;
        kernel_history.mmap_lock = Some(MmapLockCost { workload: MMAP_LOCK_WORKLOAD.into(), cells: mmap_cells });
        ledger.bar.finish_and_clear();
        let engine = match (self.native, simulated) {
            (false, _) => "sim",
            (true, false) => "native",
            (true, true) => "native+sim",
        };
        let repetitions = cells.iter().map(|c: &Cell| c.runs.len() as u32).min().unwrap_or(0);
        let result = ReportResults {
            schema: SCHEMA,
            tool: format!("collapse-bench {}", env!("CARGO_PKG_VERSION")),
            environment: Environment::capture(engine, self.seed, GIT_REVISION),
            command: reproducer(self.seed, true),
            base: self.base.clone(),
            quick: self.quick,
            repetitions,
            run_seconds: work.run_time.as_secs_f64(),
            sim_seconds: simulated.then_some(work.sim_time.as_secs_f64()),
            sim_costs: (simulated || cpu_sweep.is_some()).then_some(SimCosts { calibrated, costs: sim_costs }),
            cells,
            scaling,
            cpu_sweep,
            verdicts,
            watchdog_s: Some(self.opts.watchdog.as_secs_f64()),
            kernel_history: Some(kernel_history),
            failures: ledger.failures.clone(),
        };
        Ok((result, ledger))
    }

    /// The kernel history's versions that this build registers.
    fn history_versions(&self) -> Vec<Arc<dyn DynPolicy>> {
        self.history.iter().filter_map(|v| v.policy.clone()).collect()
    }

    /// Write the report into the output directory (swapped in whole, see
    /// `write_outputs`), print its text, and end with the failures'
    /// error (exit 1) if any run or check was abandoned.
    pub fn write(&self, result: &ReportResults, ledger: &Ledger, started: Instant) -> Result<(), CliError> {
        let text = reports::robot::report_text(result);
        write_outputs(&self.out, result, &text, ledger)?;
        // The terminal gets the gist; the mail is report.txt.
        say!("{}", reports::robot::terminal_summary(result));
        let dir = self.out_given.display();
        sayln!(
            "report written to {dir}/ in {:.1}s: {dir}/report.txt ({} lines, to paste), {dir}/index.html, \
             {dir}/results.json, plots",
            started.elapsed().as_secs_f64(),
            text.lines().count()
        );
        if !result.failures.is_empty() {
            return Err(failures_error(&result.failures, &format!("{}/", self.out_given.display())));
        }
        Ok(())
    }
}

/// `report`: check the arguments, run the plan (Ctrl-C stops it between
/// runs), write the report.
pub fn report(args: &ReportArgs) -> Result<(), CliError> {
    let plan = ReportPlan::new(args)?;
    interrupt::install();
    let started = Instant::now();
    let (result, ledger) = plan.run()?;
    plan.write(&result, &ledger, started)
}

/// What the report has finished so far (for Ctrl-C), and the runs and
/// checks it abandoned.
pub struct Ledger {
    /// The progress bar, on a terminal (hidden elsewhere).
    bar: ProgressBar,
    /// Where progress goes when there is no bar: a line per finished run
    /// or check on stderr, so a log shows where the time went.
    lines: bool,
    /// Runs and checks done so far.
    done: u64,
    started: Instant,
    out: PathBuf,
    finished: Vec<String>,
    failures: Vec<PolicyFailure>,
}

impl Ledger {
    /// A ledger for a report into `out` that will make `checks` checks
    /// besides its runs (announced with [`Ledger::expect`] as they come).
    fn new(out: PathBuf, checks: u64) -> Ledger {
        let bar = progress(checks);
        let lines = bar.is_hidden();
        Ledger { bar, lines, done: 0, started: Instant::now(), out, finished: vec![], failures: vec![] }
    }

    /// `n` more runs are coming (for the bar's length).
    fn expect(&mut self, n: u64) {
        self.bar.inc_length(n);
    }

    /// Say what the report does now: on the bar, or as a line.
    fn say(&self, what: &str) {
        if self.lines {
            tell!("report: {what}");
        } else {
            self.bar.set_message(what.to_owned());
        }
    }

    /// One run or check is over (`what`, in words): the bar moves on, or a
    /// line says so with the time since the report began.
    fn step_done(&mut self, what: &str) {
        self.done += 1;
        self.bar.inc(1);
        if self.lines {
            tell!("report: [{} {:.1}s] {what}", self.done, self.started.elapsed().as_secs_f64());
        } else {
            self.bar.set_message(what.to_owned());
        }
    }

    /// Stop here if Ctrl-C was pressed: print what was finished and return
    /// the error that exits 130. Nothing has been written yet, so the
    /// output directory keeps what it had.
    fn checkpoint(&self) -> Result<(), CliError> {
        if !interrupt::requested() {
            return Ok(());
        }
        self.bar.finish_and_clear();
        tell!("finished before the interrupt:");
        for part in &self.finished {
            tell!("  {part}");
        }
        for f in &self.failures {
            tell!("  {}", f.summary());
        }
        Err(CliError::Interrupted(format!(
            "interrupted after {} finished part(s); no report written: {} keeps what it had",
            self.finished.len(),
            self.out.display()
        )))
    }

    /// Whether `policy` already failed on `workload` (its further runs there are skipped).
    fn failed(&self, policy: &str, workload: &str) -> bool {
        self.failures.iter().any(|f| f.policy == policy && f.workload == workload)
    }

    /// Record a failure and print it as it happens.
    fn fail(&mut self, policy: &str, workload: &str, part: &str, failure: RunFailure) {
        let failure =
            PolicyFailure { policy: policy.to_owned(), workload: workload.to_owned(), part: part.to_owned(), failure };
        self.bar.suspend(|| print_failure(&failure));
        self.failures.push(failure);
    }

    /// The run of an outcome (`what`, in words, for the progress), or
    /// None after recording why there is none.
    fn ran(&mut self, outcome: Outcome, policy: &str, workload: &str, part: &str, what: &str) -> Option<PolicyRun> {
        self.step_done(what);
        match outcome {
            Ok((run, _)) => Some(run),
            Err(failure) => {
                self.fail(policy, workload, part, *failure);
                None
            }
        }
    }
}

/// Every policy on one workload measured one way, as cells: the policies
/// take turns, one run each per round, so each cell's runs spread over
/// the whole time the workload takes and a drift of the machine hits
/// every policy alike; round `k` runs with seed + `k`. Rounds go on from
/// `work.min_runs` until every headline figure of every policy has
/// settled ([`SETTLED`]), `work.max_runs`, or `work.group_time` is up, in
/// pairs (the halves a change is judged on stay alike). A policy whose run
/// fails is left out of the rest and has no cell.
fn measure_cells(
    policies: &[Arc<dyn DynPolicy>],
    measure: &Measure,
    work: &Work,
    opts: &RunOptions,
    ledger: &mut Ledger,
) -> Result<Vec<Cell>, CliError> {
    let limit = if measure.engine.is_simulated() { work.sim_time } else { work.run_time };
    let opts = RunOptions { limit: Limit::Duration(limit), ..opts.clone() };
    let name = &measure.scenario.name;
    let part = format!("measure {}", measure.measured.tag());
    let mut cells: Vec<Cell> = policies
        .iter()
        .map(|p| Cell { workload: name.clone(), policy: p.label(), measured: measure.measured.clone(), runs: vec![] })
        .collect();
    ledger.expect((policies.len() as u32 * work.min_runs).into());
    let t0 = Instant::now();
    for round in 0..work.max_runs {
        let enough = round >= work.min_runs && round % 2 == 0;
        if enough && (settled(&cells) || t0.elapsed() >= work.group_time) {
            break;
        }
        if round >= work.min_runs {
            ledger.expect(cells.len() as u64);
        }
        let slots = policies.iter().zip(cells.iter_mut().map(|c| (c.policy.as_str(), &mut c.runs)));
        let what = |policy: &str| format!("{part} {policy} on {name}, run {}", round + 1);
        run_round(slots, &measure.scenario, round, (&measure.engine, &opts), (&part, &what), ledger)?;
    }
    cells.retain(|c| !ledger.failed(&c.policy, name));
    for c in &cells {
        ledger.finished.push(format!("{part} {} on {name} ({} runs)", c.policy, c.runs.len()));
    }
    Ok(cells)
}

/// One round of every policy in `slots` (with its label and the runs it
/// has so far) on `base` with seed + `round`, taking turns: each run that
/// finishes is added to its policy's runs. A policy that failed on the
/// workload is not run again. `what` names a run in the progress lines.
fn run_round<'a>(
    slots: impl Iterator<Item = (&'a Arc<dyn DynPolicy>, (&'a str, &'a mut Vec<PolicyRun>))>,
    base: &Scenario,
    round: u32,
    (engine, opts): (&EngineChoice, &RunOptions),
    (part, what): (&str, &dyn Fn(&str) -> String),
    ledger: &mut Ledger,
) -> Result<(), CliError> {
    let scenario = Scenario { seed: base.seed.wrapping_add(round.into()), ..base.clone() };
    for (policy, (label, runs)) in slots {
        if ledger.failed(label, &base.name) {
            continue;
        }
        ledger.checkpoint()?;
        let outcome = run_on_engine(policy.clone(), &scenario, engine, opts)?;
        if let Some(run) = ledger.ran(outcome, label, &base.name, part, &what(label)) {
            runs.push(run);
        }
    }
    Ok(())
}

/// Whether every headline figure of every cell has settled: half its
/// interval within [`SETTLED`] of its median.
fn settled(cells: &[Cell]) -> bool {
    let headline: Vec<_> = reports::figures::fixed_figures().into_iter().filter(|f| f.headline).collect();
    cells.iter().all(|c| {
        headline.iter().all(|f| f.stat(&c.runs).and_then(|s| s.relative_half_width()).is_none_or(|r| r <= SETTLED))
    })
}

/// The scaling sweep's scenarios: [`SCALING_WORKLOAD`] with
/// [`SCALING_KNOB`] at each of `values`.
fn scaling_scenarios(values: &[u32], seed: u64) -> Result<Vec<(u32, Scenario)>, CliError> {
    let mut scenarios = vec![];
    for &value in values {
        let mut scenario = preset(SCALING_WORKLOAD)?;
        scenario.seed = seed;
        scenario.set(SCALING_KNOB, &value.to_string())?;
        scenario.validate()?;
        scenarios.push((value, scenario));
    }
    Ok(scenarios)
}

/// The scaling sweep: every measured policy at each value of
/// [`SCALING_KNOB`], natively where the workload fits the `cores`, else
/// simulated on `sim_costs` (with a `pml` neighbour per thread, a native
/// run past the cores would measure preemption, not contention).
fn scaling_sweep(
    policies: &[Arc<dyn DynPolicy>],
    work: &Work,
    seed: u64,
    (cores, sim_costs, opts): (u32, &CostModel, &RunOptions),
    ledger: &mut Ledger,
) -> Result<Vec<ScalingPoint>, CliError> {
    let mut points = vec![];
    for (value, scenario) in scaling_scenarios(work.scaling, seed)? {
        let (measured, engine, limit) = match scenario.threads.total() <= cores {
            true => (Measured::Native, EngineChoice::Native, work.run_time),
            false => (Measured::Simulated, EngineChoice::Simulated(sim_costs.clone()), work.sim_time),
        };
        let opts = RunOptions { limit: Limit::Duration(limit), ..opts.clone() };
        let part = format!("scaling {SCALING_KNOB}={value}");
        points.extend(sweep_point(
            policies,
            (&scenario, SCALING_KNOB, value),
            (&measured, &engine, &opts),
            work.sweep_runs,
            &part,
            ledger,
        )?);
    }
    Ok(points)
}

/// The CPU sweep: every measured policy on [`CPU_SWEEP_WORKLOAD`] scaled
/// to each CPU count ([`Scenario::scaled_to`]), simulated for
/// [`Work::sweep_time`] of virtual time on `costs`.
fn simulated_cpu_sweep(
    policies: &[Arc<dyn DynPolicy>],
    work: &Work,
    seed: u64,
    (costs, opts): (&CostModel, &RunOptions),
    ledger: &mut Ledger,
) -> Result<Option<CpuSweep>, CliError> {
    if work.cpu_sweep.is_empty() {
        return Ok(None);
    }
    let engine = EngineChoice::Simulated(costs.clone());
    let mut points = vec![];
    for &cpus in &work.cpu_sweep {
        let opts = RunOptions { limit: Limit::Duration(work.sweep_time(cpus)), ..opts.clone() };
        let mut scenario = preset(CPU_SWEEP_WORKLOAD)?;
        scenario.seed = seed;
        let scenario = scenario.scaled_to(cpus);
        scenario.validate()?;
        let part = format!("simulated on {cpus} CPUs");
        points.extend(sweep_point(
            policies,
            (&scenario, "cpus", cpus),
            (&Measured::Simulated, &engine, &opts),
            work.sweep_runs,
            &part,
            ledger,
        )?);
    }
    Ok(Some(CpuSweep {
        workload: CPU_SWEEP_WORKLOAD.into(),
        virtual_seconds: work.sim_time.as_secs_f64(),
        costs: costs.clone(),
        points,
    }))
}

/// One point of a sweep: `runs` rounds of every policy on `scenario` (the
/// knob at `value`), taking turns, round `k` with seed + `k`. A policy
/// that failed on the workload is not run again.
fn sweep_point(
    policies: &[Arc<dyn DynPolicy>],
    (scenario, knob, value): (&Scenario, &str, u32),
    (measured, engine, opts): (&Measured, &EngineChoice, &RunOptions),
    runs: u32,
    part: &str,
    ledger: &mut Ledger,
) -> Result<Vec<ScalingPoint>, CliError> {
    let name = &scenario.name;
    let mut points: Vec<ScalingPoint> = policies
        .iter()
        .map(|p| ScalingPoint {
            workload: name.clone(),
            policy: p.label(),
            knob: knob.into(),
            value,
            threads: scenario.threads.total(),
            measured: measured.clone(),
            runs: vec![],
        })
        .collect();
    ledger.expect((policies.len() as u32 * runs).into());
    for round in 0..runs {
        let slots = policies.iter().zip(points.iter_mut().map(|p| (p.policy.as_str(), &mut p.runs)));
        let what = |policy: &str| format!("{part} {policy}, run {}", round + 1);
        run_round(slots, scenario, round, (engine, opts), (part, &what), ledger)?;
    }
    points.retain(|p| !ledger.failed(&p.policy, name) && !p.runs.is_empty());
    for p in &points {
        ledger.finished.push(format!("{part} {} ({} runs)", p.policy, p.runs.len()));
    }
    Ok(points)
}

/// The verdict of every policy on each of [`CHECKED_WORKLOADS`]: first
/// every interleaving of the workload's exhaustive scope (about a second
/// a policy; under the preset's default bound where it has one, and then
/// the verdict says `bounded`), then `work.schedules` sampled schedules
/// of the workload itself, which reach what the scope leaves out (actors
/// acting more than once, on more than one entry).
fn verdicts(
    policies: &[Arc<dyn DynPolicy>],
    work: &Work,
    seed: u64,
    ledger: &mut Ledger,
) -> Result<Vec<Verdict>, CliError> {
    let mut verdicts = vec![];
    for name in CHECKED_WORKLOADS {
        let mut scenario = preset(name)?;
        scenario.seed = seed;
        let opts = CheckOptions { schedules: work.schedules, seed, ..CheckOptions::default() };
        let scope = exhaustive::scope(&scenario);
        let how = ExhaustiveOptions { bound: exhaustive::default_bound(name), reduce: true };
        for (scenario, explore) in [(&scope, true), (&scenario, false)] {
            let part = if explore { "explore" } else { "check" };
            for policy in policies {
                ledger.checkpoint()?;
                let searched = bench_core::oops::catch(|| match explore {
                    true => check_exhaustive(policy, scenario, &opts, &how),
                    false => check_policy(policy, scenario, &opts),
                });
                let scope = if explore { " scope" } else { "" };
                ledger.step_done(&format!("{part} {} on {name}{scope}", policy.label()));
                let report = match searched {
                    Ok(report) => report?,
                    Err(panic) => {
                        ledger.fail(&policy.label(), name, part, panic_failure(panic));
                        continue;
                    }
                };
                verdicts
                    .push(Verdict { workload: name.into(), check: check_doc(policy, name, scenario, &opts, &report) });
                ledger.finished.push(format!("{part} {} on {name}{scope}", policy.label()));
            }
        }
    }
    Ok(verdicts)
}

/// A row of the kernel history as planned.
struct HistoryRow {
    /// The policy's registered name ([`HISTORY_VERSIONS`]).
    name: &'static str,
    /// How the table names the version.
    label: &'static str,
    /// The policy, where this build registers it.
    policy: Option<Arc<dyn DynPolicy>>,
}

/// The kernel history's verdicts: every registered version of
/// [`HISTORY_VERSIONS`] on the scope of every preset of
/// [`history_presets`], under [`history_bound`]. A scope the verdicts
/// already explored the same way is taken from them; the others are
/// explored here, on every core at once (an exploration measures
/// nothing, so it may share the machine), each a cell of its own. A
/// version this build does not register gets a row without cells.
fn kernel_history(
    versions: &[HistoryRow],
    verdicts: &[Verdict],
    (work, seed, quick): (&Work, u64, bool),
    ledger: &mut Ledger,
) -> Result<KernelHistory, CliError> {
    let presets = history_presets();
    let mut rows: Vec<HistoryVersion> = versions
        .iter()
        .map(|v| HistoryVersion {
            policy: v.name.into(),
            label: v.label.into(),
            registered: v.policy.is_some(),
            cells: vec![],
        })
        .collect();
    // Every cell in table order, with its row; the cells to explore.
    let mut cells: Vec<(usize, Option<HistoryCell>)> = vec![];
    let mut jobs: Vec<(usize, Arc<dyn DynPolicy>, &str)> = vec![];
    for (row, v) in versions.iter().enumerate() {
        let Some(policy) = &v.policy else { continue };
        let label = policy.label();
        for &name in &presets {
            let bound = history_bound(name, quick);
            let explored = verdicts.iter().find(|v| {
                v.workload == name
                    && v.check.policy == label
                    && v.check.exhaustive.as_ref().is_some_and(|e| e.bound == bound)
            });
            let cell = match explored {
                Some(v) => Some(HistoryCell { workload: name.into(), check: Some(v.check.clone()), error: None }),
                None if ledger.failed(&label, name) => Some(HistoryCell {
                    workload: name.into(),
                    check: None,
                    error: Some("abandoned: see the failures".into()),
                }),
                None => {
                    jobs.push((cells.len(), policy.clone(), name));
                    None
                }
            };
            cells.push((row, cell));
        }
    }
    // The ledger counted on today's presets; more where a version was
    // not explored by the verdicts on a 2023 one.
    let counted = versions.iter().filter(|v| v.policy.is_some()).count() * KERNEL_HISTORY_PRESETS.len();
    ledger.expect(jobs.len().saturating_sub(counted) as u64);
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel();
    let workers = available_cores().max(1).min(jobs.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (tx, jobs, next) = (tx.clone(), &jobs, &next);
            scope.spawn(move || loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= jobs.len() || interrupt::requested() {
                    break;
                }
                let (_, policy, name) = &jobs[k];
                if tx.send((k, explore_history_cell(policy, name, (work, seed, quick)))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (k, outcome) in rx {
            let (index, policy, name) = &jobs[k];
            let (label, what) =
                (policy.label(), format!("explore {} on {name} scope (kernel history)", policy.label()));
            ledger.step_done(&what);
            cells[*index].1 = Some(match outcome {
                Ok(cell) => {
                    ledger.finished.push(what);
                    cell
                }
                Err(failure) => {
                    let error = failure.summary();
                    ledger.fail(&label, name, "kernel history", *failure);
                    HistoryCell { workload: (*name).into(), check: None, error: Some(error) }
                }
            });
        }
    });
    ledger.checkpoint()?;
    for (row, cell) in cells {
        rows[row].cells.push(cell.expect("every cell explored or taken from the verdicts"));
    }
    Ok(KernelHistory { presets: presets.iter().map(|p| (*p).to_owned()).collect(), versions: rows, mmap_lock: None })
}

/// One cell of the kernel history: `policy` explored on `name`'s scope
/// under [`history_bound`], as the verdicts explore theirs. A panic is a
/// failure for the ledger; a scope that will not run is the cell's error.
fn explore_history_cell(
    policy: &Arc<dyn DynPolicy>,
    name: &str,
    (work, seed, quick): (&Work, u64, bool),
) -> Result<HistoryCell, Box<RunFailure>> {
    let error =
        |e: &dyn std::fmt::Display| HistoryCell { workload: name.into(), check: None, error: Some(e.to_string()) };
    let mut scenario = match preset(name) {
        Ok(s) => s,
        Err(e) => return Ok(error(&e)),
    };
    scenario.seed = seed;
    let opts = CheckOptions { schedules: work.schedules, seed, ..CheckOptions::default() };
    let scope = exhaustive::scope(&scenario);
    let how = ExhaustiveOptions { bound: history_bound(name, quick), reduce: true };
    let report = match bench_core::oops::catch(|| check_exhaustive(policy, &scope, &opts, &how)) {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => return Ok(error(&e)),
        Err(panic) => return Err(Box::new(panic_failure(panic))),
    };
    Ok(HistoryCell { workload: name.into(), check: Some(check_doc(policy, name, &scope, &opts, &report)), error: None })
}

/// What a check of `policy` on preset `name` (its `scenario`, or its
/// scope) found, as results record it: the verdict, and the first
/// counterexample with the `check` command that replays it.
fn check_doc(
    policy: &Arc<dyn DynPolicy>,
    name: &str,
    scenario: &Scenario,
    opts: &CheckOptions,
    report: &CheckReport,
) -> PolicyCheck {
    let workload = WorkloadArgs { workload: Some(name.into()), scenario: None, threads: None, set: vec![] };
    let first = report
        .first
        .as_ref()
        .map(|cx| counterexample_doc(cx, replay_command(&workload, scenario, opts, &report.policy, &cx.token())));
    policy_doc(policy, scenario, report, first)
}

/// Build every file in a staging directory and swap it with `out` in one
/// step ([`crate::output_dir::replace_dir`]); a Ctrl-C during the build
/// leaves `out` as it was. The plots are drawn in memory, written as
/// `<stem>.svg` and `<stem>.png`, and the same SVG documents go into
/// index.html.
fn write_outputs(out: &Path, result: &ReportResults, text: &str, ledger: &Ledger) -> Result<(), CliError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| CliError::Failed(format!("{what}: {e}"));
    crate::output_dir::replace_dir(out, |staging| {
        let json = serde_json::to_vec_pretty(result).map_err(|e| failed("encoding results", &e))?;
        // Plain writes: the staging directory is swapped in whole.
        let write = |name: &str, bytes: &[u8]| {
            std::fs::write(staging.join(name), bytes).map_err(|e| failed(&format!("writing {name}"), &e))
        };
        write("results.json", &json)?;
        write("report.txt", text.as_bytes())?;
        let plots = reports::plots::render(result).map_err(|e| failed("drawing plots", &e))?;
        let mut files = vec!["results.json".to_owned(), "report.txt".into(), "index.html".into()];
        for plot in &plots {
            let (svg, png) = (format!("{}.svg", plot.stem), format!("{}.png", plot.stem));
            write(&svg, plot.svg.as_bytes())?;
            write(&png, &plot.png)?;
            files.extend([svg, png]);
        }
        write("index.html", reports::html::index_html(text, &plots).as_bytes())?;
        ledger.checkpoint()?;
        Ok(files)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(argv: &[&str]) -> ReportArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            report: ReportArgs,
        }
        <Cli as clap::Parser>::try_parse_from(std::iter::once("report").chain(argv.iter().copied())).unwrap().report
    }

    #[test]
    fn the_matrix_measures_today_s_kernel_s_presets_only_when_named() {
        let all: Vec<&str> = PRESETS.iter().map(|(name, _)| *name).collect();
        assert!(KERNEL_HISTORY_PRESETS.iter().all(|p| all.contains(p)), "{all:?}");
        let default: Vec<String> = workloads(&args(&[])).unwrap().into_iter().map(|s| s.name).collect();
        let want: Vec<&str> = all.iter().copied().filter(|p| !KERNEL_HISTORY_PRESETS.contains(p)).collect();
        assert_eq!(default, want);
        let named: Vec<String> =
            workloads(&args(&["-w", "retract,uffd-private"])).unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(named, ["retract", "uffd-private"]);
    }

    #[test]
    fn the_kernel_history_bounds_only_the_slow_scopes_and_only_when_quick() {
        assert_eq!(history_presets(), ["uffd-private", "pml-contended", "pt-reclaim", "retract", "guard-file"]);
        let bounds = |quick| history_presets().iter().map(|p| history_bound(p, quick)).collect::<Vec<_>>();
        assert_eq!(bounds(false), [None; 5]);
        assert_eq!(bounds(true), [None, None, Some(2), Some(2), None]);
        let labels: Vec<&str> = HISTORY_VERSIONS.iter().map(|v| v.1).collect();
        assert_eq!(labels, ["v6.1", "pre-fix", "v1 (6.6)", "v6.13"]);
        // pre-fix and v1 are shipped; the others are built where registered.
        let out = std::env::temp_dir().join(format!("collapse-bench-plan-{}", std::process::id()));
        let plan = ReportPlan::new(&args(&["-w", "uffd-private", "--out", out.to_str().unwrap()])).unwrap();
        assert!(!out.exists(), "a plan writes nothing");
        let built: Vec<(&str, bool)> = plan.history.iter().map(|v| (v.name, v.policy.is_some())).collect();
        let registered = |name: &str| crate::registry().iter().any(|e| e.name == name);
        assert_eq!(
            built,
            [("v6.1", registered("v6.1")), ("pre-fix", true), ("v1", true), ("v6.13", registered("v6.13"))]
        );
        assert_eq!(plan.mmap_scenario.name, MMAP_LOCK_WORKLOAD);
        assert!(plan.mmap_scenario.threads.faulters > 0);
    }

    #[test]
    fn a_machine_as_big_as_the_workloads_simulates_only_what_it_is_asked_to() {
        let mut work = Work::new(true);
        let scenarios: Vec<Scenario> = PRESETS.iter().map(|(name, _)| preset(name).unwrap()).collect();
        // Two cores: every preset (3 to 9 threads) is fitted natively and
        // simulated whole.
        assert!(simulates_anything(true, &work, &scenarios, 1, 2).unwrap());
        let costs = CostModel::default();
        let two = measures_of(&scenarios[0], true, 2, &costs);
        let how: Vec<Measured> = two.iter().map(|m| m.measured.clone()).collect();
        assert_eq!(how, [Measured::Fitted { actors: "collapse+uffd".into() }, Measured::Simulated]);
        assert_eq!(two[0].scenario.threads.total(), 2);
        // Sixteen cores: every workload and scaling point fits; only the
        // CPU sweep (or --engine sim) simulates.
        assert!(simulates_anything(true, &work, &scenarios, 1, 16).unwrap());
        work.cpu_sweep.clear();
        assert!(!simulates_anything(true, &work, &scenarios, 1, 16).unwrap());
        assert!(simulates_anything(false, &work, &scenarios, 1, 16).unwrap());
        let sixteen = measures_of(&scenarios[0], true, 16, &costs);
        assert_eq!((sixteen.len(), &sixteen[0].measured), (1, &Measured::Native));
        let sim = measures_of(&scenarios[0], false, 16, &costs);
        assert_eq!((sim.len(), &sim[0].measured), (1, &Measured::Simulated));
    }
}
