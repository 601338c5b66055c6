//! `check`: search controlled schedules of each policy for broken rules,
//! print a verdict table and, for each failing policy, its shrunk
//! counterexample as a timeline with the token that replays it; or, with
//! `--replay`, run one token again.

use crate::cli::{parse_policies, quote, scenario, CliError, WorkloadArgs, GIT_REVISION};
use crate::output_file::OutputFile;
use bench_core::kernel::DynPolicy;
use bench_core::results::Environment;
use reports::schema::{
    CounterexampleDoc, CounterexampleTimeline, ExhaustiveDoc, OracleCount, PolicyCheck, PolicyFailure, SCHEMA,
};
use reports::verdicts::{counterexample_head, print_counterexample, verdict_table, wrap};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use workloads::check::{
    check_policy, counted_verdict, later_kernel_failure, overall_failure, parse_token, replay, runs, split_schedules,
    CheckOptions, CheckReport, Counterexample, ReplayOutcome, Search, TOKEN_FORMAT,
};
use workloads::exhaustive::{self, check_exhaustive, scope_options, ExhaustiveOptions, Reach};
use workloads::{Scenario, FUTURE_INSERTER_PRESETS, LATER_KERNEL_PRESETS, PRESETS};

/// Strategies `--strategy` takes.
const STRATEGIES: &str = "pct, random";

/// Arguments of `check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Policies, comma-separated; parameters after colons
    /// (`v2-flush-bool:recheck_always=true`). Default: every registered
    /// policy (see `list`).
    #[arg(short = 'p', long = "policies")]
    pub policies: Option<String>,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    #[command(flatten)]
    pub kernel: crate::cli::KernelSourceArgs,
    /// Schedules to run per policy.
    #[arg(long, default_value_t = CheckOptions::default().schedules)]
    pub schedules: u64,
    /// Search strategy: pct (probabilistic concurrency testing) or random.
    #[arg(long, default_value = "pct")]
    pub strategy: String,
    /// PCT bug depth (priority change points + 1).
    #[arg(long, default_value_t = 3)]
    pub depth: u32,
    /// Operations each CPU may do per schedule: longer runs reach races
    /// that need several operations to line up (a reader caching the very
    /// address uffd fills later), at proportionally more time per schedule.
    #[arg(long, value_name = "N", default_value_t = CheckOptions::default().ops_per_cpu)]
    pub ops_per_cpu: u64,
    /// Seed of the schedules and of the actors (default: the scenario's, 1
    /// for presets).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Threads that run schedules (default: every core). The verdicts,
    /// counts and counterexamples are the same for any number.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Run the schedule a counterexample printed, once (one policy, same
    /// workload, overrides and seed; with `--exhaustive` for a token an
    /// exhaustive check printed).
    #[arg(long, value_name = "TOKEN")]
    pub replay: Option<String>,
    /// Explore every interleaving of each workload's exhaustive scope
    /// (one range, one operation per actor, every actor aimed at one
    /// entry) instead of sampling schedules: `verified` when every one was
    /// explored and none broke a rule.
    #[arg(long, conflicts_with_all = ["schedules", "strategy", "depth", "ops_per_cpu"])]
    pub exhaustive: bool,
    /// With `--exhaustive`: at most K preemptions per interleaving (a
    /// bound for scopes too big to finish; a bounded exploration that
    /// left any interleaving out is never `verified`).
    #[arg(long, value_name = "K", requires = "exhaustive")]
    pub bound: Option<u32>,
    /// Also write the results as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// The result file of `check`.
#[derive(Serialize, Debug)]
pub struct CheckResult {
    /// Result-file layout version.
    pub schema: u32,
    /// "collapse-bench X.Y.Z".
    pub tool: String,
    /// Where it ran.
    pub environment: Environment,
    /// The full workload configuration (null for the default scope: see
    /// `presets`).
    pub scenario: serde_json::Value,
    /// The command line that reproduces it.
    pub command: String,
    /// How the search ran.
    pub options: OptionsDoc,
    /// One entry per policy (of the one workload; empty for the default
    /// scope).
    pub policies: Vec<PolicyCheck>,
    /// The default scope (no `-w`, no `--scenario`): one entry per preset,
    /// with its share of the schedules.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub presets: Vec<PresetCheck>,
}

/// One preset of the default scope, as run.
#[derive(Serialize, Debug)]
pub struct PresetCheck {
    /// The preset's name.
    pub workload: String,
    /// Whether its findings are reported apart (the guard-marker race).
    pub reported_apart: bool,
    /// Its full configuration.
    pub scenario: serde_json::Value,
    /// Schedules per policy it was given.
    pub schedules: u64,
    /// One entry per policy.
    pub policies: Vec<PolicyCheck>,
    /// The policies that broke a rule here other than by the guard-marker
    /// race (a table freed with only guard markers in it): on a preset
    /// reported apart, these count in the overall verdict.
    pub beyond_guard_markers: Vec<String>,
}

/// The search options, as run.
#[derive(Serialize, Debug)]
pub struct OptionsDoc {
    /// "pct", "random" or "replay".
    pub strategy: String,
    /// PCT depth (None for random and replay).
    pub depth: Option<u32>,
    /// Schedules per policy asked for (over all presets of the default
    /// scope).
    pub schedules: u64,
    /// Base seed.
    pub seed: u64,
    /// Collapses per schedule.
    pub collapses: u64,
    /// Operations each CPU may do per schedule.
    pub ops_per_cpu: u64,
    /// Step budget per schedule.
    pub max_steps: u64,
    /// Replays the shrinker may spend per counterexample.
    pub shrink_budget: u32,
    /// The token replayed (replay only).
    pub replay: Option<String>,
    /// Exhaustive: the preemption bound (null: none); absent when sampled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exhaustive: Option<ExhaustiveOptionsDoc>,
}

/// How an exhaustive check explored.
#[derive(Serialize, Debug)]
pub struct ExhaustiveOptionsDoc {
    /// Preemptions per interleaving at most (null: no bound).
    pub bound: Option<u32>,
}

fn parse_search(args: &CheckArgs) -> Result<Search, CliError> {
    if args.depth == 0 {
        return Err(CliError::Usage("--depth: must be at least 1 (1: no priority change points)".into()));
    }
    match args.strategy.as_str() {
        "pct" => Ok(Search::Pct { depth: args.depth }),
        "random" => Ok(Search::Random),
        other => Err(CliError::Usage(format!("--strategy: unknown strategy `{other}`; allowed: {STRATEGIES}"))),
    }
}

/// The command that replays `token` on the same configuration.
pub fn replay_command(
    workload: &WorkloadArgs,
    scenario: &Scenario,
    opts: &CheckOptions,
    policy: &str,
    token: &str,
) -> String {
    let mut words = vec![crate::program().to_owned(), "check".into(), "-p".into(), policy.to_owned()];
    words.extend(crate::cli::kernel_options(policy));
    match &workload.scenario {
        Some(path) => words.extend(["--scenario".into(), path.display().to_string()]),
        None => words.extend(["-w".into(), scenario.name.clone()]),
    }
    if let Some(t) = &workload.threads {
        words.extend(["--threads".into(), t.clone()]);
    }
    for kv in &workload.set {
        words.extend(["--set".into(), kv.clone()]);
    }
    if scenario.scope.is_some() {
        words.push("--exhaustive".into());
    } else if opts.ops_per_cpu != CheckOptions::default().ops_per_cpu {
        words.extend(["--ops-per-cpu".into(), opts.ops_per_cpu.to_string()]);
    }
    words.extend(["--seed".into(), scenario.seed.to_string(), "--replay".into(), token.to_owned()]);
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

/// The counterexample as result files keep it: the replay's events up to
/// the violation, typed, with the role of each CPU.
pub fn counterexample_doc(cx: &Counterexample, replay: String) -> CounterexampleDoc {
    CounterexampleDoc {
        index: cx.index,
        violations: cx.violations.clone(),
        token: cx.token(),
        replay,
        steps: cx.schedule.len(),
        original_steps: cx.original.len(),
        runs: runs(&cx.schedule).len(),
        original_runs: runs(&cx.original).len(),
        shrink_replays: cx.shrink_replays,
        timeline: CounterexampleTimeline::Events {
            roles: cx.roles.clone(),
            events: cx.timeline[..cx.violation_at].to_vec(),
        },
    }
}

/// One policy's check as result files keep it (`scenario`: the one it
/// ran on, for an exhaustive check's scope).
pub fn policy_doc(
    policy: &Arc<dyn DynPolicy>,
    scenario: &Scenario,
    report: &CheckReport,
    first: Option<CounterexampleDoc>,
) -> PolicyCheck {
    PolicyCheck {
        policy: report.policy.clone(),
        params: policy.params_json(),
        verdict: report.verdict_word().into(),
        schedules: report.schedules,
        steps: report.steps,
        step_limits: report.step_limits,
        search_s: report.search_s,
        first_found_s: report.first_found_s,
        shrink_s: report.shrink_s,
        by_oracle: report
            .by_oracle
            .iter()
            .map(|(o, &(n, first))| (o.name().to_owned(), OracleCount { schedules: n, first }))
            .collect(),
        first,
        exhaustive: report.exhaustive.as_ref().map(|e| ExhaustiveDoc {
            scope: exhaustive::describe(scenario),
            interleavings: e.stats.interleavings(),
            runs: e.stats.runs,
            sleep_blocked: e.stats.sleep_blocked,
            bound: e.bound,
            bound_hit: e.stats.bound_hit,
            complete: e.complete(),
        }),
    }
}

fn write_json(json: Option<&OutputFile>, result: &CheckResult) -> Result<(), CliError> {
    let Some(json) = json else { return Ok(()) };
    json.write(&serde_json::to_vec_pretty(result).map_err(|e| CliError::Failed(e.to_string()))?)?;
    sayln!("results: {}", json.path().display());
    Ok(())
}

/// What `check` was asked to do, every argument validated before any
/// work starts.
pub struct CheckPlan<'a> {
    args: &'a CheckArgs,
    json: Option<OutputFile>,
    policies: Vec<Arc<dyn DynPolicy>>,
    /// The workloads with the schedules each gets: the one asked for, or
    /// (no `-w`, no `--scenario`) every preset.
    scenarios: Vec<(Scenario, u64)>,
    opts: CheckOptions,
    /// The schedule index and the schedule `--replay` names; None: search.
    replay: Option<(u64, Vec<u32>)>,
    /// `--exhaustive`: explore each scenario's scope (the scenarios above
    /// are the scopes then).
    exhaustive: Option<ExhaustiveOptions>,
}

impl<'a> CheckPlan<'a> {
    /// Validate `args` (exit 2 on bad input, naming the flag).
    pub fn new(args: &'a CheckArgs) -> Result<CheckPlan<'a>, CliError> {
        let json = args.json.as_deref().map(|path| OutputFile::check("--json", path)).transpose()?;
        let policies = parse_policies(args.policies.as_deref().unwrap_or(&crate::registered_names()))?;
        let search = parse_search(args)?;
        if args.schedules == 0 {
            return Err(CliError::Usage("--schedules: must be at least 1".into()));
        }
        if args.ops_per_cpu == 0 {
            return Err(CliError::Usage("--ops-per-cpu: must be at least 1".into()));
        }
        let jobs = args.jobs.unwrap_or_else(bench_core::machine::available_cores);
        if jobs == 0 {
            return Err(CliError::Usage("--jobs: must be at least 1".into()));
        }
        let replay = match &args.replay {
            None => None,
            Some(token) => {
                if policies.len() != 1 {
                    let names: Vec<String> = policies.iter().map(|p| p.label()).collect();
                    return Err(CliError::Usage(format!(
                        "--replay: replays exactly one policy; -p names {}: {}",
                        policies.len(),
                        names.join(", ")
                    )));
                }
                Some(parse_token(token).map_err(|why| {
                    CliError::Usage(format!(
                        "--replay: `{token}` is not a replay token ({why}); format: {TOKEN_FORMAT}"
                    ))
                })?)
            }
        };
        let default_scope = args.workload.workload.is_none() && args.workload.scenario.is_none();
        let scenarios = if default_scope {
            if replay.is_some() {
                return Err(CliError::Usage(
                    "--replay: name the workload the token was printed for with -w (or --scenario)".into(),
                ));
            }
            let mut scenarios = vec![];
            for &(name, _) in PRESETS {
                let workload = WorkloadArgs { workload: Some(name.to_owned()), ..args.workload.clone() };
                scenarios.push(scenario(&workload, args.seed)?);
            }
            let n = scenarios.len() as u64;
            if args.schedules < n {
                return Err(CliError::Usage(format!(
                    "--schedules: the default scope runs {n} presets, so at least {n} schedules (or name one with -w)"
                )));
            }
            let shares = split_schedules(args.schedules, scenarios.len(), scenarios[0].seed);
            scenarios.into_iter().zip(shares).collect()
        } else {
            vec![(scenario(&args.workload, args.seed)?, args.schedules)]
        };
        let opts = CheckOptions {
            search,
            schedules: args.schedules,
            seed: scenarios[0].0.seed,
            ops_per_cpu: args.ops_per_cpu,
            jobs,
            ..CheckOptions::default()
        };
        let exhaustive = args.exhaustive.then_some(ExhaustiveOptions { bound: args.bound, reduce: true });
        // Exhaustively: each workload's scope, except, over every preset,
        // one whose scope is beyond reach: that one is sampled.
        let scenarios = match exhaustive {
            Some(_) => scenarios
                .into_iter()
                .map(|(s, n)| match exhaustive::default_reach(&s.name) {
                    Reach::Sampled if default_scope => (s, n),
                    _ => (exhaustive::scope(&s), n),
                })
                .collect(),
            None => scenarios,
        };
        Ok(CheckPlan { args, json, policies, scenarios, opts, replay, exhaustive })
    }

    /// How `scenario` is explored: exhaustively when it is a scope (with
    /// `--bound`, else the preset's default), else sampled (None).
    fn how(&self, scenario: &Scenario) -> Option<ExhaustiveOptions> {
        let e = self.exhaustive.filter(|_| scenario.scope.is_some())?;
        Some(ExhaustiveOptions { bound: e.bound.or_else(|| exhaustive::default_bound(&scenario.name)), ..e })
    }

    /// Search (or replay), printing as it goes. Returns the results and
    /// whether a rule was broken.
    pub fn run(&self) -> Result<(CheckResult, bool), CliError> {
        let (args, opts) = (self.args, &self.opts);
        let options = OptionsDoc {
            strategy: match (&args.replay, &self.exhaustive) {
                (Some(_), _) => "replay".into(),
                (None, Some(_)) => "exhaustive".into(),
                (None, None) => args.strategy.clone(),
            },
            depth: match opts.search {
                Search::Pct { depth } if args.replay.is_none() && self.exhaustive.is_none() => Some(depth),
                _ => None,
            },
            schedules: if args.replay.is_some() { 1 } else { args.schedules },
            seed: opts.seed,
            collapses: opts.collapses,
            ops_per_cpu: opts.ops_per_cpu,
            max_steps: opts.max_steps,
            shrink_budget: opts.shrink_budget,
            replay: args.replay.clone(),
            exhaustive: self.exhaustive.map(|e| ExhaustiveOptionsDoc { bound: e.bound }),
        };
        let seed = opts.seed;
        let mut result = CheckResult {
            schema: SCHEMA,
            tool: format!("collapse-bench {}", env!("CARGO_PKG_VERSION")),
            environment: Environment::capture("controlled", seed, GIT_REVISION),
            scenario: serde_json::Value::Null,
            command: crate::cli::reproducer(seed, args.seed.is_some()),
            options,
            policies: vec![],
            presets: vec![],
        };
        if let [(scenario, _)] = &self.scenarios[..] {
            result.scenario = to_json(scenario)?;
            let failed = match &self.replay {
                Some((index, schedule)) => {
                    replay_one(args, scenario, opts, &self.policies[0], *index, schedule, &mut result)?
                }
                None => self.search_all(scenario, opts, &mut result.policies)?.0,
            };
            return Ok((result, failed));
        }
        let head = match self.exhaustive {
            Some(how) => {
                let sampled: Vec<&str> =
                    self.scenarios.iter().filter(|(s, _)| s.scope.is_none()).map(|(s, _)| s.name.as_str()).collect();
                let sampled = match sampled[..] {
                    [] => String::new(),
                    _ => format!(" ({} sampled: its scope is beyond reach)", sampled.join(", ")),
                };
                format!("check on every preset's scope, exhaustively{}, seed {seed}{sampled}", bound_words(how.bound))
            }
            None => {
                let shares: Vec<String> = self.scenarios.iter().map(|(s, n)| format!("{} {n}", s.name)).collect();
                format!(
                    "check on every preset, seed {seed}: {} schedules per policy, split by the seed: {}",
                    args.schedules,
                    shares.join(", ")
                )
            }
        };
        sayln!("{}\n", wrap(&head, "", "  "));
        let mut by_preset = vec![];
        for (scenario, schedules) in &self.scenarios {
            let opts = CheckOptions { schedules: *schedules, ..opts.clone() };
            let mut policies = vec![];
            let (_, reports) = self.search_all(scenario, &opts, &mut policies)?;
            let beyond_guard_markers =
                reports.iter().filter(|r| r.failed_beyond_guard_markers()).map(|r| r.policy.clone()).collect();
            result.presets.push(PresetCheck {
                workload: scenario.name.clone(),
                reported_apart: FUTURE_INSERTER_PRESETS.contains(&scenario.name.as_str()),
                scenario: to_json(scenario)?,
                schedules: *schedules,
                policies,
                beyond_guard_markers,
            });
            by_preset.push((scenario.name.clone(), reports));
        }
        let (out, failed) = overall_verdicts(&self.policies, &by_preset);
        say!("{out}");
        Ok((result, failed))
    }

    /// Write `--json`, if asked for.
    pub fn write(&self, result: &CheckResult) -> Result<(), CliError> {
        write_json(self.json.as_ref(), result)
    }
}

fn to_json(scenario: &Scenario) -> Result<serde_json::Value, CliError> {
    serde_json::to_value(scenario).map_err(|e| CliError::Failed(e.to_string()))
}

/// Split `total` schedules over `presets` presets: each gets `total /
/// presets`, and the remainder goes one each to consecutive presets
/// starting at the one the seed names, so a seed gives one split.
/// The verdict of each policy over every preset of the default scope:
/// one line per policy, each preset's verdict, and the overall one, FAIL
/// when a preset failed, except by the guard-marker race alone on a
/// preset reported apart (shown in brackets, not counted). Also whether
/// any policy failed overall.
fn overall_verdicts(policies: &[Arc<dyn DynPolicy>], presets: &[(String, Vec<CheckReport>)]) -> (String, bool) {
    let mut out = wrap(
        "overall (in brackets, reported apart and not counted: the guard-marker race alone; pt-reclaim, \
         empty-table reclaim of v6.14+, which only a form with v6.13's rechecks survives, is judged apart as \
         the verdict on today's kernel):",
        "",
        "  ",
    );
    let mut any_failed = false;
    for policy in policies {
        let label = policy.label();
        let by_preset: Vec<(&str, &CheckReport)> = presets
            .iter()
            .filter_map(|(name, reports)| Some((name.as_str(), reports.iter().find(|r| r.policy == label)?)))
            .collect();
        let mut cells = vec![];
        for (name, _) in presets {
            cells.push(match by_preset.iter().find(|(n, _)| n == name) {
                None => format!("{name} PANIC"),
                Some((_, r)) => match (r.gravest(), counted_verdict(name, r)) {
                    (None, _) => format!("{name} {}", r.verdict_word()),
                    (Some(_), Some(counted)) => format!("{name} FAIL {counted}"),
                    (Some(gravest), None) if LATER_KERNEL_PRESETS.contains(&name.as_str()) => {
                        format!("{name} FAIL {gravest}")
                    }
                    (Some(excused), None) => format!("[{name} FAIL {excused}]"),
                },
            });
        }
        let verified = by_preset.iter().all(|(_, r)| r.exhaustive.as_ref().is_some_and(|e| e.complete()));
        let overall = match overall_failure(by_preset.iter().copied()) {
            Some((_, oracle)) => format!("FAIL {oracle}"),
            None if by_preset.len() < presets.len() => "PANIC".to_owned(),
            // Verified only when every preset's exploration was complete.
            None if verified => "verified".to_owned(),
            None => "ok".to_owned(),
        };
        let today = match later_kernel_failure(by_preset.iter().copied()) {
            Some((name, oracle)) => format!(" (today's kernel: FAIL {oracle} on {name})"),
            None => String::new(),
        };
        let line = format!("{label}: {overall}{today}; {}", cells.join(", "));
        out.push_str(&wrap(&line, "", "    "));
        any_failed |= overall != "ok" && overall != "verified" || !today.is_empty();
    }
    (out, any_failed)
}

/// `check`. Ok(true) when a rule was broken (exit 1).
pub fn check(args: &CheckArgs) -> Result<bool, CliError> {
    let plan = CheckPlan::new(args)?;
    let (result, failed) = plan.run()?;
    plan.write(&result)?;
    Ok(failed)
}

/// ", at most K preemptions" for a bound.
fn bound_words(bound: Option<u32>) -> String {
    bound.map_or_else(String::new, |k| format!(" with at most {k} preemptions per interleaving"))
}

impl CheckPlan<'_> {
    /// Check every policy on `scenario` (sampled, or exhaustively on its
    /// scope), print the verdict table and the counterexamples, and add each
    /// policy's result to `checks`. Returns whether any failed, and the reports.
    fn search_all(
        &self,
        scenario: &Scenario,
        opts: &CheckOptions,
        checks: &mut Vec<PolicyCheck>,
    ) -> Result<(bool, Vec<CheckReport>), CliError> {
        let (args, policies, writes_json) = (self.args, &self.policies, self.json.is_some());
        let how = self.how(scenario);
        let head = match how {
            Some(how) => format!(
                "check {} exhaustively{}, seed {}: scope {}",
                scenario.name,
                bound_words(how.bound),
                scenario.seed,
                exhaustive::describe(scenario)
            ),
            None => {
                let how = match opts.search {
                    Search::Pct { depth } => format!("pct depth {depth}"),
                    Search::Random => "random".into(),
                };
                let cores = bench_core::machine::available_cores();
                let jobs = match opts.jobs {
                    1 => String::new(),
                    n if n > cores => {
                        format!(", {n} jobs on {cores} cores (more threads than cores: slower, same results)")
                    }
                    n => format!(", {n} jobs"),
                };
                format!(
                    "check {}, seed {}, {} CPUs: {} schedules each, {how}{jobs}",
                    scenario.name,
                    scenario.seed,
                    scenario.threads.total(),
                    opts.schedules
                )
            }
        };
        say!("{}", wrap(&head, "", "  "));
        let t0 = Instant::now();
        let mut reports = vec![];
        let mut panicked = vec![];
        let check_one = |policy: &Arc<dyn DynPolicy>| {
            if !writes_json {
                // Nobody reads the verdicts any more, and no file keeps them.
                crate::console::end_if_stdout_closed();
            }
            tell!("checking {} ...", policy.label());
            bench_core::oops::catch(|| match &how {
                Some(how) => check_exhaustive(policy, scenario, opts, how),
                None => check_policy(policy, scenario, opts),
            })
        };
        // A sampled check spreads its schedules over the jobs; an exhaustive
        // exploration is one thread's, so the policies are spread instead.
        let outcomes: Vec<_> = match how {
            Some(_) if opts.jobs > 1 && policies.len() > 1 => {
                let next = std::sync::atomic::AtomicUsize::new(0);
                let mut done: Vec<_> = std::thread::scope(|s| {
                    let workers: Vec<_> = (0..opts.jobs.min(policies.len()))
                        .map(|_| {
                            s.spawn(|| {
                                let mut mine = vec![];
                                loop {
                                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    let Some(policy) = policies.get(i) else { return mine };
                                    mine.push((i, check_one(policy)));
                                }
                            })
                        })
                        .collect();
                    workers.into_iter().flat_map(|w| w.join().expect("a worker catches its policy's panic")).collect()
                });
                done.sort_by_key(|(i, _)| *i);
                done.into_iter().map(|(_, outcome)| outcome).collect()
            }
            _ => policies.iter().map(check_one).collect(),
        };
        for (policy, outcome) in policies.iter().zip(outcomes) {
            let report = match outcome {
                Ok(report) => report?,
                Err(panic) => {
                    let failure = PolicyFailure {
                        policy: policy.label(),
                        workload: scenario.name.clone(),
                        part: "check".into(),
                        failure: crate::cli::panic_failure(panic),
                    };
                    crate::cli::print_failure(&failure);
                    panicked.push(failure);
                    continue;
                }
            };
            let first = report.first.as_ref().map(|cx| {
                counterexample_doc(cx, replay_command(&args.workload, scenario, opts, &report.policy, &cx.token()))
            });
            checks.push(policy_doc(policy, scenario, &report, first));
            reports.push(report);
        }
        let elapsed = t0.elapsed().as_secs_f64();
        let mut out = String::from("\n");
        out.push_str(&verdict_table(checks));
        let (schedules, steps): (u64, u64) = reports.iter().fold((0, 0), |(a, b), r| (a + r.schedules, b + r.steps));
        let search_s: f64 = reports.iter().map(|r| r.search_s).sum::<f64>().max(1e-9);
        let what = if how.is_some() { "runs" } else { "schedules" };
        let _ = writeln!(
            out,
            "{schedules} {what}, {steps} steps in {elapsed:.2}s: {:.0} {what}/s, {:.0} steps/s",
            schedules as f64 / search_s,
            steps as f64 / search_s
        );
        for (c, r) in checks.iter().zip(&reports) {
            if let Some(e) = &c.exhaustive {
                let _ = writeln!(out, "{}: {} in {:.2}s", c.policy, e.phrase(r.failed()), r.search_s);
            }
        }
        for c in checks.iter() {
            let (Some(doc), Some(head)) = (&c.first, counterexample_head(c, &scenario.name)) else { continue };
            out.push('\n');
            out.push_str(&wrap(&head, "", ""));
            print_counterexample(&mut out, doc);
        }
        for f in &panicked {
            let _ = writeln!(out, "{}", f.summary());
        }
        say!("{out}");
        let failed = !panicked.is_empty() || checks.iter().any(|c| c.first.is_some() || c.verdict == "FAIL");
        Ok((failed, reports))
    }
}

fn replay_one(
    args: &CheckArgs,
    scenario: &Scenario,
    opts: &CheckOptions,
    policy: &Arc<dyn DynPolicy>,
    index: u64,
    schedule: &[u32],
    result: &mut CheckResult,
) -> Result<bool, CliError> {
    let token = args.replay.as_deref().unwrap_or_default();
    let label = policy.label();
    let t0 = Instant::now();
    // A scope's token replays with the scope's options (one operation a CPU).
    let scoped;
    let opts = match scenario.scope {
        Some(_) => {
            scoped = scope_options(opts);
            &scoped
        }
        None => opts,
    };
    let outcome = replay(policy, scenario, opts, index, schedule)?;
    let elapsed = t0.elapsed().as_secs_f64();
    let mut report = CheckReport { policy: label.clone(), schedules: 1, search_s: elapsed, ..Default::default() };
    let (failed, first) = match outcome {
        ReplayOutcome::Diverged { why, .. } => {
            return Err(CliError::Usage(format!(
                "--replay: the token does not fit this configuration ({label} on {}, seed {}): {why}; \
                 replay with the policy, workload, overrides and seed it was printed with",
                scenario.name, scenario.seed,
            )));
        }
        ReplayOutcome::Clean { steps } => {
            report.steps = steps;
            sayln!(
                "{label}: replay of {token} on {} (seed {}): {steps} steps, no violation",
                scenario.name,
                scenario.seed
            );
            (false, None)
        }
        ReplayOutcome::Violated(cx) => {
            report.steps = cx.schedule.len() as u64;
            for v in &cx.violations {
                report.by_oracle.entry(v.oracle).or_insert((1, 0));
            }
            let doc = counterexample_doc(&cx, replay_command(&args.workload, scenario, opts, &label, token));
            let mut out = format!(
                "{label}: replay of {token} on {} (seed {}): {} steps, {}\n",
                scenario.name, scenario.seed, doc.steps, doc.violations[0].oracle
            );
            print_counterexample(&mut out, &doc);
            say!("{out}");
            (true, Some(doc))
        }
    };
    result.policies.push(policy_doc(policy, scenario, &report, first));
    Ok(failed)
}
