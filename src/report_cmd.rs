//! `collapse-bench report`: the main job. Runs the default matrix (the
//! correct policies on every preset, each cell repeated), a scaling sweep
//! over `pml` neighbours, a simulated sweep over CPU counts and the
//! checker's verdicts of every policy; writes report.txt, results.json,
//! the plots and index.html into the output directory.
//!
//! Every file is built in a temporary directory beside the output and then
//! renamed into place one by one, so an interrupted report leaves the
//! previous one intact.

use crate::check_cmd::{counterexample_doc, policy_doc, replay_command};
use crate::cli::{
    parse_policies, reproducer, run_on_engine, CliError, EngineArgs, EngineKind, WorkloadArgs, GIT_REVISION, MAX_CPUS,
};
use bench_core::native::Limit;
use bench_core::results::{write_atomic, Cell, CpuSweep, Environment, ReportResults, ScalingPoint, Verdict, SCHEMA};
use bench_core::{CostModel, DynPolicy};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workloads::check::{check_policy, CheckOptions};
use workloads::{preset, simulate_policy, RunOptions, Scenario, SimOptions, PRESETS};

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
    let costs = args.engine.cost_model()?;
    let mut plan = Plan::new(args.quick, args.engine.engine);
    match args.schedules {
        Some(0) => return Err(CliError::Usage("--schedules: must be at least 1".into())),
        Some(n) => plan.schedules = n,
        None => {}
    }
    if let Some(spec) = &args.sweep_cpus {
        plan.cpu_sweep = sweep_cpus(spec)?;
    }
    let t0 = Instant::now();
    let cells_total = (scenarios.len() * measured.len()) as u64 * plan.repetitions as u64;
    let scaling_total = (plan.scaling.len() * measured.len()) as u64;
    let sweep_total = (plan.cpu_sweep.len() * measured.len()) as u64;
    let checks_total = (CHECKED_WORKLOADS.len() * all.len()) as u64;
    let bar = progress(cells_total + scaling_total + sweep_total + checks_total);
    let opts =
        RunOptions { limit: Limit::Duration(plan.run_time), pin: true, hook: None, git_revision: GIT_REVISION.into() };
    let limit = Limit::Duration(plan.run_time);
    let mut cells = vec![];
    for scenario in &scenarios {
        for policy in &measured {
            bar.set_message(format!("{} on {}", policy.label(), scenario.name));
            let mut runs = vec![];
            for k in 0..plan.repetitions {
                // A simulated repetition with the same seed would repeat itself exactly.
                let mut scenario = scenario.clone();
                if costs.is_some() {
                    scenario.seed = scenario.seed.wrapping_add(k.into());
                }
                runs.push(run_on_engine(policy.clone(), &scenario, limit, costs.as_ref(), &opts)?.0);
                bar.inc(1);
            }
            cells.push(Cell { workload: scenario.name.clone(), policy: policy.label(), runs });
        }
    }
    let scaling = scaling_sweep(&measured, &plan, args.seed, (costs.as_ref(), &opts), &bar)?;
    let sweep_costs = costs.clone().unwrap_or_default();
    let cpu_sweep = simulated_cpu_sweep(&measured, &plan, args.seed, &sweep_costs, &bar)?;
    let verdicts = verdicts(&all, &plan, args.seed, &bar)?;
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
    };
    let text = reports::robot::report_text(&result);
    write_outputs(&args.out, &result, &text)?;
    print!("{text}");
    eprintln!(
        "report written to {}/ in {:.1}s (report.txt, results.json, index.html, plots)",
        args.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn scaling_sweep(
    policies: &[Arc<dyn DynPolicy>],
    plan: &Plan,
    seed: u64,
    (costs, opts): (Option<&CostModel>, &RunOptions),
    bar: &ProgressBar,
) -> Result<Vec<ScalingPoint>, CliError> {
    let mut points = vec![];
    for &value in plan.scaling {
        let mut scenario = preset(SCALING_WORKLOAD)?;
        scenario.seed = seed;
        scenario.set(SCALING_KNOB, &value.to_string())?;
        scenario.validate()?;
        for policy in policies {
            bar.set_message(format!("scaling {} {SCALING_KNOB}={value}", policy.label()));
            let run = run_on_engine(policy.clone(), &scenario, opts.limit, costs, opts)?.0;
            points.push(ScalingPoint {
                workload: scenario.name.clone(),
                policy: policy.label(),
                knob: SCALING_KNOB.into(),
                value,
                threads: scenario.threads.total(),
                run,
            });
            bar.inc(1);
        }
    }
    Ok(points)
}

/// The CPU sweep: every measured policy on [`CPU_SWEEP_WORKLOAD`] scaled
/// to each CPU count, simulated for `plan.sweep_time` of virtual time.
fn simulated_cpu_sweep(
    policies: &[Arc<dyn DynPolicy>],
    plan: &Plan,
    seed: u64,
    costs: &CostModel,
    bar: &ProgressBar,
) -> Result<Option<CpuSweep>, CliError> {
    if plan.cpu_sweep.is_empty() {
        return Ok(None);
    }
    let opts = SimOptions { costs: costs.clone(), limit: Limit::Duration(plan.sweep_time) };
    let mut points = vec![];
    for &cpus in &plan.cpu_sweep {
        let mut scenario = preset(CPU_SWEEP_WORKLOAD)?;
        scenario.seed = seed;
        scenario.threads = scenario.threads.scaled_to(cpus);
        scenario.validate()?;
        for policy in policies {
            bar.set_message(format!("simulating {} on {cpus} CPUs", policy.label()));
            let run = simulate_policy(policy.clone(), &scenario, &opts)?.run;
            points.push(ScalingPoint {
                workload: scenario.name.clone(),
                policy: policy.label(),
                knob: "cpus".into(),
                value: cpus,
                threads: cpus,
                run,
            });
            bar.inc(1);
        }
    }
    Ok(Some(CpuSweep {
        workload: CPU_SWEEP_WORKLOAD.into(),
        virtual_seconds: plan.sweep_time.as_secs_f64(),
        costs: costs.clone(),
        points,
    }))
}

fn verdicts(
    policies: &[Arc<dyn DynPolicy>],
    plan: &Plan,
    seed: u64,
    bar: &ProgressBar,
) -> Result<Vec<Verdict>, CliError> {
    let mut verdicts = vec![];
    for name in CHECKED_WORKLOADS {
        let mut scenario = preset(name)?;
        scenario.seed = seed;
        let opts = CheckOptions { schedules: plan.schedules, seed, ..CheckOptions::default() };
        let workload = WorkloadArgs { workload: Some(name.into()), scenario: None, threads: None, set: vec![] };
        for policy in policies {
            bar.set_message(format!("checking {} on {name}", policy.label()));
            let report = check_policy(policy, &scenario, &opts)?;
            let first = report
                .first
                .as_ref()
                .map(|cx| counterexample_doc(cx, replay_command(&workload, &scenario, &report.policy, &cx.token())));
            verdicts.push(Verdict { workload: name.into(), check: policy_doc(policy, &report, first) });
            bar.inc(1);
        }
    }
    Ok(verdicts)
}

/// Build everything in a temporary directory beside `out`, then rename
/// each file into `out`.
fn write_outputs(out: &Path, result: &ReportResults, text: &str) -> Result<(), CliError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| CliError::Failed(format!("{what}: {e}"));
    std::fs::create_dir_all(out).map_err(|e| failed(&format!("creating {}", out.display()), &e))?;
    let staging = out.join(format!(".staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| failed(&format!("creating {}", staging.display()), &e))?;
    let built = (|| -> Result<Vec<String>, CliError> {
        let json = serde_json::to_vec_pretty(result).map_err(|e| failed("encoding results", &e))?;
        write_atomic(&staging.join("results.json"), &json).map_err(|e| failed("writing results.json", &e))?;
        write_atomic(&staging.join("report.txt"), text.as_bytes()).map_err(|e| failed("writing report.txt", &e))?;
        let stems = reports::plots::render_all(result, &staging).map_err(|e| failed("drawing plots", &e))?;
        let html = index_html(text, &stems, &staging)?;
        write_atomic(&staging.join("index.html"), html.as_bytes()).map_err(|e| failed("writing index.html", &e))?;
        let mut files = vec!["results.json".to_owned(), "report.txt".into(), "index.html".into()];
        for stem in &stems {
            files.push(format!("{stem}.svg"));
            files.push(format!("{stem}.png"));
        }
        Ok(files)
    })();
    let result = built.and_then(|files| {
        for f in &files {
            std::fs::rename(staging.join(f), out.join(f)).map_err(|e| failed(&format!("moving {f} into place"), &e))?;
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&staging);
    result
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
