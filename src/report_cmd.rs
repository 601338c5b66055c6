//! `collapse-bench report`: the main job. Runs the default matrix (the
//! correct policies on every preset, each cell repeated), a scaling sweep
//! over `pml` neighbours, a simulated sweep over CPU counts and the
//! checker's verdicts of every policy; writes report.txt, results.json,
//! the plots and index.html into the output directory.
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
use bench_core::results::{Environment, PolicyRun, RunFailure};
use bench_core::CostModel;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reports::schema::{Cell, CpuSweep, PolicyFailure, ReportResults, ScalingPoint, Verdict, SCHEMA};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workloads::check::{check_policy, CheckOptions};
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
    /// Workload presets to measure, comma-separated (default: all).
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
    /// The engine of the measured matrix (the CPU sweep is always
    /// simulated; the verdicts always come from the checker). Under `sim`
    /// each repetition of a cell uses the next seed.
    #[command(flatten)]
    pub engine: EngineArgs,
    /// CPU counts of the simulated sweep, comma-separated (1 to 256;
    /// default 1,2,4,8,16,32,64,128,256, or 2,8,32 with --quick), or `none`.
    #[arg(long, value_name = "N,N,...")]
    pub sweep_cpus: Option<String>,
    #[command(flatten)]
    pub watchdog: WatchdogArgs,
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
struct Work {
    repetitions: u32,
    run_time: Duration,
    scaling: &'static [u32],
    cpu_sweep: Vec<u32>,
    /// Virtual time of each point of the CPU sweep.
    sweep_time: Duration,
    schedules: u64,
}

impl Work {
    fn new(quick: bool, engine: &EngineChoice) -> Work {
        // Virtual time per simulated cell: long enough for hundreds of collapses.
        let sim_time = Duration::from_millis(if quick { 10 } else { 20 });
        let run_time = match (engine, quick) {
            (EngineChoice::Simulated(_), _) => sim_time,
            (EngineChoice::Native, true) => Duration::from_millis(150),
            (EngineChoice::Native, false) => Duration::from_millis(1500),
        };
        Work {
            repetitions: 5,
            run_time,
            scaling: if quick { &[1, 2, 4] } else { &[1, 2, 4, 8] },
            cpu_sweep: if quick { vec![2, 8, 32] } else { vec![1, 2, 4, 8, 16, 32, 64, 128, 256] },
            sweep_time: sim_time,
            schedules: if quick { 300 } else { 2000 },
        }
    }
}

fn workloads(args: &ReportArgs) -> Result<Vec<Scenario>, CliError> {
    let names: Vec<String> = match &args.workloads {
        Some(list) => list.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
        None => PRESETS.iter().map(|(name, _)| (*name).to_owned()).collect(),
    };
    if names.is_empty() {
        let allowed: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
        return Err(CliError::Usage(format!("--workloads: none given; allowed: {}", allowed.join(", "))));
    }
    names
        .iter()
        .map(|name| {
            let mut s = preset(name).map_err(|e| CliError::Usage(format!("--workloads: {e}")))?;
            s.seed = args.seed;
            args.engine.apply(&mut s)?;
            s.check_memory(available_memory())?;
            Ok(s)
        })
        .collect()
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
    /// The engine of the matrix and the scaling sweep.
    engine: EngineChoice,
    /// The cost model of the simulated CPU sweep (`--costs`, or built in).
    sweep_costs: CostModel,
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
        // `--costs` is the model of whatever is simulated: the matrix under
        // `--engine sim`, and the CPU sweep always.
        let cost_file = args.engine.cost_file()?;
        let engine = args.engine.engine_with(cost_file.clone());
        let mut work = Work::new(args.quick, &engine);
        match args.schedules {
            Some(0) => return Err(CliError::Usage("--schedules: must be at least 1".into())),
            Some(n) => work.schedules = n,
            None => {}
        }
        if let Some(spec) = &args.sweep_cpus {
            work.cpu_sweep = sweep_cpus(spec)?;
        }
        if cost_file.is_some() && !engine.is_simulated() && work.cpu_sweep.is_empty() {
            return Err(CliError::Usage(
                "--costs: nothing is simulated (a native matrix and --sweep-cpus none); drop --costs, or add \
                 --engine sim or a CPU sweep"
                    .into(),
            ));
        }
        let watchdog = args.watchdog.timeout(&scenarios)?;
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
            engine,
            sweep_costs: cost_file.unwrap_or_default(),
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
        let measured = &self.measured;
        let cells_total = (self.scenarios.len() * measured.len()) as u64 * work.repetitions as u64;
        let scaling_total = (work.scaling.len() * measured.len()) as u64;
        let sweep_total = (work.cpu_sweep.len() * measured.len()) as u64;
        // Each workload's scope explored, then sampled.
        let checks_total = (2 * CHECKED_WORKLOADS.len() * self.checked.len()) as u64;
        let bar = progress(cells_total + scaling_total + sweep_total + checks_total);
        let mut ledger = Ledger { bar: bar.clone(), out: self.out.clone(), finished: vec![], failures: vec![] };
        let mut cells = vec![];
        for scenario in &self.scenarios {
            for policy in measured {
                bar.set_message(format!("{} on {}", policy.label(), scenario.name));
                let mut runs = vec![];
                for k in 0..work.repetitions {
                    ledger.checkpoint()?;
                    // A simulated repetition with the same seed would repeat itself exactly.
                    let mut scenario = scenario.clone();
                    if self.engine.is_simulated() {
                        scenario.seed = scenario.seed.wrapping_add(k.into());
                    }
                    let outcome = run_on_engine(policy.clone(), &scenario, &self.engine, &self.opts)?;
                    bar.inc(1);
                    match ledger.ran(outcome, &policy.label(), &scenario.name, "measure") {
                        Some(run) => runs.push(run),
                        // The cell is left out: its other repetitions would fail the same way.
                        None => break,
                    }
                }
                if runs.len() == work.repetitions as usize {
                    ledger.finished.push(format!(
                        "measure {} on {} ({} runs)",
                        policy.label(),
                        scenario.name,
                        runs.len()
                    ));
                    cells.push(Cell { workload: scenario.name.clone(), policy: policy.label(), runs });
                } else {
                    bar.inc(work.repetitions as u64 - runs.len() as u64 - 1);
                }
            }
        }
        let scaling = scaling_sweep(measured, work, self.seed, (&self.engine, &self.opts), &mut ledger)?;
        let cpu_sweep = simulated_cpu_sweep(measured, work, self.seed, (&self.sweep_costs, &self.opts), &mut ledger)?;
        let verdicts = verdicts(&self.checked, work, self.seed, &mut ledger)?;
        bar.finish_and_clear();
        let result = ReportResults {
            schema: SCHEMA,
            tool: format!("collapse-bench {}", env!("CARGO_PKG_VERSION")),
            environment: Environment::capture(self.engine.name(), self.seed, GIT_REVISION),
            command: reproducer(self.seed, true),
            base: self.base.clone(),
            quick: self.quick,
            repetitions: work.repetitions,
            run_seconds: work.run_time.as_secs_f64(),
            cells,
            scaling,
            cpu_sweep,
            verdicts,
            watchdog_s: Some(self.opts.watchdog.as_secs_f64()),
            failures: ledger.failures.clone(),
        };
        Ok((result, ledger))
    }

    /// Write the report into the output directory (swapped in whole, see
    /// `write_outputs`), print its text, and end with the failures'
    /// error (exit 1) if any run or check was abandoned.
    pub fn write(&self, result: &ReportResults, ledger: &Ledger, started: Instant) -> Result<(), CliError> {
        let text = reports::robot::report_text(result);
        write_outputs(&self.out, result, &text, ledger)?;
        say!("{text}");
        tell!(
            "report written to {}/ in {:.1}s (report.txt, results.json, index.html, plots)",
            self.out_given.display(),
            started.elapsed().as_secs_f64()
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
    bar: ProgressBar,
    out: PathBuf,
    finished: Vec<String>,
    failures: Vec<PolicyFailure>,
}

impl Ledger {
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

    /// The run of an outcome, or None after recording why there is none.
    fn ran(&mut self, outcome: Outcome, policy: &str, workload: &str, part: &str) -> Option<PolicyRun> {
        match outcome {
            Ok((run, _)) => Some(run),
            Err(failure) => {
                self.fail(policy, workload, part, *failure);
                None
            }
        }
    }
}

fn scaling_sweep(
    policies: &[Arc<dyn DynPolicy>],
    work: &Work,
    seed: u64,
    (engine, opts): (&EngineChoice, &RunOptions),
    ledger: &mut Ledger,
) -> Result<Vec<ScalingPoint>, CliError> {
    let mut scenarios = vec![];
    for &value in work.scaling {
        let mut scenario = preset(SCALING_WORKLOAD)?;
        scenario.seed = seed;
        scenario.set(SCALING_KNOB, &value.to_string())?;
        scenario.validate()?;
        scenarios.push((value, scenario));
    }
    sweep(policies, scenarios, SCALING_KNOB, |value| format!("scaling {SCALING_KNOB}={value}"), (engine, opts), ledger)
}

/// The CPU sweep: every measured policy on [`CPU_SWEEP_WORKLOAD`] scaled
/// to each CPU count, simulated for `work.sweep_time` of virtual time.
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
    let mut scenarios = vec![];
    for &cpus in &work.cpu_sweep {
        let mut scenario = preset(CPU_SWEEP_WORKLOAD)?;
        scenario.seed = seed;
        scenario.threads = scenario.threads.scaled_to(cpus);
        scenario.validate()?;
        scenarios.push((cpus, scenario));
    }
    let opts = RunOptions { limit: Limit::Duration(work.sweep_time), ..opts.clone() };
    let engine = EngineChoice::Simulated(costs.clone());
    let points =
        sweep(policies, scenarios, "cpus", |cpus| format!("simulated on {cpus} CPUs"), (&engine, &opts), ledger)?;
    Ok(Some(CpuSweep {
        workload: CPU_SWEEP_WORKLOAD.into(),
        virtual_seconds: work.sweep_time.as_secs_f64(),
        costs: costs.clone(),
        points,
    }))
}

/// One run of every policy on each of a sweep's `scenarios` (each with
/// the value of `knob` it was made for), on `engine`. A policy that
/// failed on the workload is not run again.
fn sweep(
    policies: &[Arc<dyn DynPolicy>],
    scenarios: Vec<(u32, Scenario)>,
    knob: &str,
    part: impl Fn(u32) -> String,
    (engine, opts): (&EngineChoice, &RunOptions),
    ledger: &mut Ledger,
) -> Result<Vec<ScalingPoint>, CliError> {
    let mut points = vec![];
    for (value, scenario) in scenarios {
        let part = part(value);
        for policy in policies {
            ledger.bar.inc(1);
            if ledger.failed(&policy.label(), &scenario.name) {
                continue;
            }
            ledger.checkpoint()?;
            ledger.bar.set_message(format!("{part}: {}", policy.label()));
            let outcome = run_on_engine(policy.clone(), &scenario, engine, opts)?;
            let Some(run) = ledger.ran(outcome, &policy.label(), &scenario.name, &part) else { continue };
            ledger.finished.push(format!("{part} {}", policy.label()));
            points.push(ScalingPoint {
                workload: scenario.name.clone(),
                policy: policy.label(),
                knob: knob.into(),
                value,
                threads: scenario.threads.total(),
                run,
            });
        }
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
        let workload = WorkloadArgs { workload: Some(name.into()), scenario: None, threads: None, set: vec![] };
        let scope = exhaustive::scope(&scenario);
        let how = ExhaustiveOptions { bound: exhaustive::default_bound(name), reduce: true };
        for (scenario, explore) in [(&scope, true), (&scenario, false)] {
            let part = if explore { "explore" } else { "check" };
            for policy in policies {
                ledger.checkpoint()?;
                ledger.bar.set_message(format!("{part} {} on {}", policy.label(), scenario.name));
                ledger.bar.inc(1);
                let searched = bench_core::oops::catch(|| match explore {
                    true => check_exhaustive(policy, scenario, &opts, &how),
                    false => check_policy(policy, scenario, &opts),
                });
                let report = match searched {
                    Ok(report) => report?,
                    Err(panic) => {
                        ledger.fail(&policy.label(), name, part, panic_failure(panic));
                        continue;
                    }
                };
                let first = report.first.as_ref().map(|cx| {
                    counterexample_doc(cx, replay_command(&workload, scenario, &opts, &report.policy, &cx.token()))
                });
                verdicts.push(Verdict { workload: name.into(), check: policy_doc(policy, scenario, &report, first) });
                ledger.finished.push(format!(
                    "{part} {} on {name}{}",
                    policy.label(),
                    if explore { " scope" } else { "" }
                ));
            }
        }
    }
    Ok(verdicts)
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
