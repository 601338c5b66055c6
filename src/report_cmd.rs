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
    EngineKind, Outcome, WatchdogArgs, WorkloadArgs, GIT_REVISION, MAX_CPUS,
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
struct Plan {
    repetitions: u32,
    run_time: Duration,
    scaling: &'static [u32],
    cpu_sweep: Vec<u32>,
    /// Virtual time of each point of the CPU sweep.
    sweep_time: Duration,
    schedules: u64,
}

impl Plan {
    fn new(quick: bool, engine: EngineKind) -> Plan {
        // Virtual time per simulated cell: long enough for hundreds of collapses.
        let sim_time = Duration::from_millis(if quick { 10 } else { 20 });
        let run_time = match (engine, quick) {
            (EngineKind::Sim, _) => sim_time,
            (EngineKind::Native, true) => Duration::from_millis(150),
            (EngineKind::Native, false) => Duration::from_millis(1500),
        };
        Plan {
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

/// `report`.
pub fn report(args: &ReportArgs) -> Result<(), CliError> {
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
    let all = parse_policies(&crate::registered_names())?;
    let scenarios = workloads(args)?;
    // `--costs` is the model of whatever is simulated: the matrix under
    // `--engine sim`, and the CPU sweep always.
    let cost_file = args.engine.cost_file()?;
    let costs = (args.engine.engine == EngineKind::Sim).then(|| cost_file.clone().unwrap_or_default());
    let mut plan = Plan::new(args.quick, args.engine.engine);
    match args.schedules {
        Some(0) => return Err(CliError::Usage("--schedules: must be at least 1".into())),
        Some(n) => plan.schedules = n,
        None => {}
    }
    if let Some(spec) = &args.sweep_cpus {
        plan.cpu_sweep = sweep_cpus(spec)?;
    }
    if cost_file.is_some() && costs.is_none() && plan.cpu_sweep.is_empty() {
        return Err(CliError::Usage(
            "--costs: nothing is simulated (a native matrix and --sweep-cpus none); drop --costs, or add \
             --engine sim or a CPU sweep"
                .into(),
        ));
    }
    let watchdog = args.watchdog.timeout(&scenarios)?;
    interrupt::install();
    let t0 = Instant::now();
    let cells_total = (scenarios.len() * measured.len()) as u64 * plan.repetitions as u64;
    let scaling_total = (plan.scaling.len() * measured.len()) as u64;
    let sweep_total = (plan.cpu_sweep.len() * measured.len()) as u64;
    let checks_total = (CHECKED_WORKLOADS.len() * all.len()) as u64;
    let bar = progress(cells_total + scaling_total + sweep_total + checks_total);
    let mut ledger = Ledger { bar: bar.clone(), out: out.clone(), finished: vec![], failures: vec![] };
    let opts = RunOptions {
        limit: Limit::Duration(plan.run_time),
        pin: true,
        hook: None,
        git_revision: GIT_REVISION.into(),
        watchdog,
    };
    let mut cells = vec![];
    for scenario in &scenarios {
        for policy in &measured {
            bar.set_message(format!("{} on {}", policy.label(), scenario.name));
            let mut runs = vec![];
            for k in 0..plan.repetitions {
                ledger.checkpoint()?;
                // A simulated repetition with the same seed would repeat itself exactly.
                let mut scenario = scenario.clone();
                if costs.is_some() {
                    scenario.seed = scenario.seed.wrapping_add(k.into());
                }
                let outcome = run_on_engine(policy.clone(), &scenario, costs.as_ref(), &opts)?;
                bar.inc(1);
                match ledger.ran(outcome, &policy.label(), &scenario.name, "measure") {
                    Some(run) => runs.push(run),
                    // The cell is left out: its other repetitions would fail the same way.
                    None => break,
                }
            }
            if runs.len() == plan.repetitions as usize {
                ledger.finished.push(format!("measure {} on {} ({} runs)", policy.label(), scenario.name, runs.len()));
                cells.push(Cell { workload: scenario.name.clone(), policy: policy.label(), runs });
            } else {
                bar.inc(plan.repetitions as u64 - runs.len() as u64 - 1);
            }
        }
    }
    let scaling = scaling_sweep(&measured, &plan, args.seed, (costs.as_ref(), &opts), &mut ledger)?;
    let sweep_costs = cost_file.unwrap_or_default();
    let cpu_sweep = simulated_cpu_sweep(&measured, &plan, args.seed, (&sweep_costs, &opts), &mut ledger)?;
    let verdicts = verdicts(&all, &plan, args.seed, &mut ledger)?;
    bar.finish_and_clear();
    let result = ReportResults {
        schema: SCHEMA,
        tool: format!("collapse-bench {}", env!("CARGO_PKG_VERSION")),
        environment: Environment::capture(args.engine.engine.name(), args.seed, GIT_REVISION),
        command: reproducer(args.seed, true),
        base,
        quick: args.quick,
        repetitions: plan.repetitions,
        run_seconds: plan.run_time.as_secs_f64(),
        cells,
        scaling,
        cpu_sweep,
        verdicts,
        watchdog_s: Some(watchdog.as_secs_f64()),
        failures: ledger.failures.clone(),
    };
    let text = reports::robot::report_text(&result);
    write_outputs(&out, &result, &text, &ledger)?;
    say!("{text}");
    tell!(
        "report written to {}/ in {:.1}s (report.txt, results.json, index.html, plots)",
        args.out.display(),
        t0.elapsed().as_secs_f64()
    );
    if !result.failures.is_empty() {
        return Err(failures_error(&result.failures, &format!("{}/", args.out.display())));
    }
    Ok(())
}

/// What the report has finished so far (for Ctrl-C), and the runs and
/// checks it abandoned.
struct Ledger {
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
    plan: &Plan,
    seed: u64,
    (costs, opts): (Option<&CostModel>, &RunOptions),
    ledger: &mut Ledger,
) -> Result<Vec<ScalingPoint>, CliError> {
    let mut scenarios = vec![];
    for &value in plan.scaling {
        let mut scenario = preset(SCALING_WORKLOAD)?;
        scenario.seed = seed;
        scenario.set(SCALING_KNOB, &value.to_string())?;
        scenario.validate()?;
        scenarios.push((value, scenario));
    }
    sweep(policies, scenarios, SCALING_KNOB, |value| format!("scaling {SCALING_KNOB}={value}"), (costs, opts), ledger)
}

/// The CPU sweep: every measured policy on [`CPU_SWEEP_WORKLOAD`] scaled
/// to each CPU count, simulated for `plan.sweep_time` of virtual time.
fn simulated_cpu_sweep(
    policies: &[Arc<dyn DynPolicy>],
    plan: &Plan,
    seed: u64,
    (costs, opts): (&CostModel, &RunOptions),
    ledger: &mut Ledger,
) -> Result<Option<CpuSweep>, CliError> {
    if plan.cpu_sweep.is_empty() {
        return Ok(None);
    }
    let mut scenarios = vec![];
    for &cpus in &plan.cpu_sweep {
        let mut scenario = preset(CPU_SWEEP_WORKLOAD)?;
        scenario.seed = seed;
        scenario.threads = scenario.threads.scaled_to(cpus);
        scenario.validate()?;
        scenarios.push((cpus, scenario));
    }
    let opts = RunOptions { limit: Limit::Duration(plan.sweep_time), ..opts.clone() };
    let points =
        sweep(policies, scenarios, "cpus", |cpus| format!("simulated on {cpus} CPUs"), (Some(costs), &opts), ledger)?;
    Ok(Some(CpuSweep {
        workload: CPU_SWEEP_WORKLOAD.into(),
        virtual_seconds: plan.sweep_time.as_secs_f64(),
        costs: costs.clone(),
        points,
    }))
}

/// One run of every policy on each of a sweep's `scenarios` (each with
/// the value of `knob` it was made for), on the engine `costs` asks for.
/// A policy that failed on the workload is not run again.
fn sweep(
    policies: &[Arc<dyn DynPolicy>],
    scenarios: Vec<(u32, Scenario)>,
    knob: &str,
    part: impl Fn(u32) -> String,
    (costs, opts): (Option<&CostModel>, &RunOptions),
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
            let outcome = run_on_engine(policy.clone(), &scenario, costs, opts)?;
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

fn verdicts(
    policies: &[Arc<dyn DynPolicy>],
    plan: &Plan,
    seed: u64,
    ledger: &mut Ledger,
) -> Result<Vec<Verdict>, CliError> {
    let mut verdicts = vec![];
    for name in CHECKED_WORKLOADS {
        let mut scenario = preset(name)?;
        scenario.seed = seed;
        let opts = CheckOptions { schedules: plan.schedules, seed, ..CheckOptions::default() };
        let workload = WorkloadArgs { workload: Some(name.into()), scenario: None, threads: None, set: vec![] };
        for policy in policies {
            ledger.checkpoint()?;
            ledger.bar.set_message(format!("checking {} on {name}", policy.label()));
            ledger.bar.inc(1);
            let report = match bench_core::oops::catch(|| check_policy(policy, &scenario, &opts)) {
                Ok(report) => report?,
                Err(panic) => {
                    ledger.fail(&policy.label(), name, "check", panic_failure(panic));
                    continue;
                }
            };
            let first = report
                .first
                .as_ref()
                .map(|cx| counterexample_doc(cx, replay_command(&workload, &scenario, &report.policy, &cx.token())));
            verdicts.push(Verdict { workload: name.into(), check: policy_doc(policy, &report, first) });
            ledger.finished.push(format!("check {} on {name}", policy.label()));
        }
    }
    Ok(verdicts)
}

/// Build every file in a staging directory and swap it with `out` in one
/// step ([`crate::output_dir::replace_dir`]); a Ctrl-C during the build
/// leaves `out` as it was.
fn write_outputs(out: &Path, result: &ReportResults, text: &str, ledger: &Ledger) -> Result<(), CliError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| CliError::Failed(format!("{what}: {e}"));
    crate::output_dir::replace_dir(out, |staging| {
        let json = serde_json::to_vec_pretty(result).map_err(|e| failed("encoding results", &e))?;
        // Plain writes: the staging directory is swapped in whole.
        std::fs::write(staging.join("results.json"), &json).map_err(|e| failed("writing results.json", &e))?;
        std::fs::write(staging.join("report.txt"), text).map_err(|e| failed("writing report.txt", &e))?;
        let stems = reports::plots::render_all(result, staging).map_err(|e| failed("drawing plots", &e))?;
        let html = index_html(text, &stems, staging)?;
        std::fs::write(staging.join("index.html"), html).map_err(|e| failed("writing index.html", &e))?;
        let mut files = vec!["results.json".to_owned(), "report.txt".into(), "index.html".into()];
        for stem in &stems {
            files.push(format!("{stem}.svg"));
            files.push(format!("{stem}.png"));
        }
        ledger.checkpoint()?;
        Ok(files)
    })
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// One self-contained page: the text report and every SVG inline.
fn index_html(text: &str, stems: &[String], dir: &Path) -> Result<String, CliError> {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>collapse-bench report</title>\n\
         <style>body{font-family:sans-serif;max-width:1100px;margin:auto}pre{font-size:13px}\
         figure{margin:1em 0}svg{max-width:100%;height:auto}</style></head><body>\n\
         <h1>collapse-bench report</h1>\n<pre>",
    );
    html.push_str(&escape_html(text));
    html.push_str("</pre>\n");
    for stem in stems {
        let path = dir.join(format!("{stem}.svg"));
        let svg =
            std::fs::read_to_string(&path).map_err(|e| CliError::Failed(format!("reading {}: {e}", path.display())))?;
        let svg = svg.trim_start_matches(|c| c != '<').to_owned();
        let svg = match svg.find("<svg") {
            Some(i) => svg[i..].to_owned(),
            None => svg,
        };
        html.push_str(&format!("<figure id=\"{stem}\">{svg}<figcaption>{stem}</figcaption></figure>\n"));
    }
    html.push_str("</body></html>\n");
    Ok(html)
}
