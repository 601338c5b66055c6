//! The subcommands: argument types, parsing of policy and override
//! specifications, and the glue between the crates.

use crate::output_file::OutputFile;
use bench_core::actor::Limit;
use bench_core::kernel::DynPolicy;
use bench_core::results::{EndedBy, Environment, PolicyRun, RunFailure};
use bench_core::CostModel;
use bench_core::IntoEnumIterator;
use reports::schema::{PolicyFailure, RunResult, SCHEMA};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use workloads::scenario::available_memory;
use workloads::{preset, run_policy, simulate_policy, RunError, RunOptions, Scenario, SimOptions, PRESETS};

/// Git revision of this build.
pub const GIT_REVISION: &str = env!("COLLAPSE_BENCH_GIT_REVISION");

/// Why a command failed, and its exit code.
#[derive(Debug)]
pub enum CliError {
    /// Bad input (exit 2): names the field and the allowed values.
    Usage(String),
    /// Something went wrong while running (exit 1).
    Failed(String),
    /// Stopped by Ctrl-C or SIGTERM (exit 130): says what was finished.
    Interrupted(String),
}

impl CliError {
    /// 2 for bad input, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failed(_) => 1,
            CliError::Interrupted(_) => crate::interrupt::EXIT_STATUS,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Failed(m) | CliError::Interrupted(m) => f.write_str(m),
        }
    }
}

impl From<workloads::ScenarioError> for CliError {
    fn from(e: workloads::ScenarioError) -> Self {
        CliError::Usage(e.to_string())
    }
}

/// The workload options `run` and `check` share.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WorkloadArgs {
    /// Workload preset (see `collapse-bench list`).
    #[arg(short = 'w', long = "workload", conflicts_with = "scenario")]
    pub workload: Option<String>,
    /// Load the workload from a TOML scenario file instead of a preset.
    #[arg(long, value_name = "FILE.toml")]
    pub scenario: Option<PathBuf>,
    /// Actor threads, e.g. `uffd=2,readers=1` (same as --set threads.uffd=2 ...).
    #[arg(long, value_name = "KIND=N,...")]
    pub threads: Option<String>,
    /// Override any scenario parameter, e.g. `--set density=256` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Which engine runs the actors.
#[derive(clap::ValueEnum, Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum EngineKind {
    /// OS threads on this machine, wall-clock time.
    #[default]
    Native,
    /// One virtual CPU per actor, virtual time from the cost model,
    /// deterministic.
    Sim,
}

impl EngineKind {
    /// The name results record.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Native => "native",
            EngineKind::Sim => "sim",
        }
    }
}

/// Most CPUs `--cpus` may ask for.
pub const MAX_CPUS: u32 = 256;

/// The engine options `run` and `report` share.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct EngineArgs {
    /// `native` (threads on this machine) or `sim` (virtual CPUs and time).
    #[arg(long, value_enum, default_value_t)]
    pub engine: EngineKind,
    /// Run the workload's mix on N CPUs (1 to 256): the collapsers stay,
    /// the other actors are scaled in proportion.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_CPUS as i64))]
    pub cpus: Option<u32>,
    /// Cost model of `--engine sim` (TOML, e.g. from `calibrate`; default:
    /// the built-in model).
    #[arg(long, value_name = "FILE.toml")]
    pub costs: Option<PathBuf>,
}

impl EngineArgs {
    /// The model of `--costs FILE`, loaded and checked (None without it:
    /// the built-in model).
    pub fn cost_file(&self) -> Result<Option<CostModel>, CliError> {
        let load = |path: &PathBuf| CostModel::load(path).map_err(|e| CliError::Usage(format!("--costs: {e}")));
        self.costs.as_ref().map(load).transpose()
    }

    /// The cost model of the engine asked for: the simulation's (from
    /// `--costs`, or built in), none for the native engine, which refuses
    /// `--costs`.
    pub fn cost_model(&self) -> Result<Option<CostModel>, CliError> {
        match self.engine {
            EngineKind::Native if self.costs.is_some() => {
                Err(CliError::Usage("--costs: only the simulation uses a cost model; add --engine sim".into()))
            }
            EngineKind::Native => Ok(None),
            EngineKind::Sim => Ok(Some(self.cost_file()?.unwrap_or_default())),
        }
    }

    /// `scenario` on `--cpus` CPUs, validated.
    pub fn apply(&self, scenario: &mut Scenario) -> Result<(), CliError> {
        if let Some(cpus) = self.cpus {
            scenario.threads = scenario.threads.scaled_to(cpus);
            scenario.validate().map_err(|e| CliError::Usage(format!("--cpus {cpus}: {e}")))?;
        }
        Ok(())
    }
}

/// A policy's run on an engine: its results and, for the simulation, the
/// scheduling steps it took; or why it was abandoned.
pub type Outcome = Result<(PolicyRun, Option<u64>), Box<RunFailure>>;

/// Run `policy` on `scenario` until `opts.limit`: simulated under `costs`
/// when given (the limit is then virtual time), else natively with
/// `opts`. Bad input is an error; a run that panicked or hung is an
/// [`Outcome`] that says so, so the caller goes on with the other policies.
pub fn run_on_engine(
    policy: Arc<dyn DynPolicy>,
    scenario: &Scenario,
    costs: Option<&CostModel>,
    opts: &RunOptions,
) -> Result<Outcome, CliError> {
    match costs {
        Some(costs) => {
            let simulated = bench_core::oops::catch(|| {
                simulate_policy(policy, scenario, &SimOptions { costs: costs.clone(), limit: opts.limit })
            });
            match simulated {
                Ok(Ok(sim)) => Ok(Ok((sim.run, Some(sim.steps)))),
                Ok(Err(RunError::Invalid(e))) => Err(e.into()),
                Ok(Err(RunError::Failed(failure))) => Ok(Err(failure)),
                Err(panic) => Ok(Err(Box::new(panic_failure(panic)))),
            }
        }
        None => match run_policy(policy, scenario, opts) {
            Ok(run) => Ok(Ok((run, None))),
            Err(RunError::Invalid(e)) => Err(e.into()),
            Err(RunError::Failed(failure)) => Ok(Err(failure)),
        },
    }
}

/// A panic caught around an engine that does not say on which CPU (the
/// controlled and simulation engines run every CPU on one thread).
pub fn panic_failure(panic: bench_core::oops::PanicReport) -> RunFailure {
    RunFailure::Panic {
        cpu: None,
        role: None,
        step: None,
        message: panic.message,
        location: panic.location,
        held_locks: vec![],
    }
}

/// Print a failed run as it happens: the summary line, then the oops or
/// hung-task lines.
pub fn print_failure(failure: &PolicyFailure) {
    tell!("{}", failure.summary());
    for line in failure.failure.lines() {
        tell!("  {line}");
    }
}

/// The closing lines of a command whose runs failed: one per failure, and
/// the error that makes the exit status 1.
pub fn failures_error(failures: &[PolicyFailure], written: &str) -> CliError {
    for f in failures {
        tell!("{}", f.summary());
    }
    CliError::Failed(format!(
        "{} run(s) abandoned (a panic, a hang the watchdog saw, or no collapse finished); the other results are in {written}",
        failures.len()
    ))
}

/// The watchdog option `run`, `report` and `soak` share.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WatchdogArgs {
    /// Abandon a native run when a CPU finishes no operation for this long
    /// (100ms to 1h; default 5s), printing who holds and who waits for
    /// which lock, and go on with the next run.
    #[arg(long, value_name = "DURATION")]
    pub watchdog: Option<String>,
}

impl WatchdogArgs {
    /// The timeout asked for, checked against what the scenarios' actors
    /// may legitimately take for one operation (the longest pace of an
    /// actor kind that runs, plus a neighbour's `pml` hold, twice over).
    pub fn timeout<'a>(&self, scenarios: impl IntoIterator<Item = &'a Scenario>) -> Result<Duration, CliError> {
        use bench_core::watchdog::{DEFAULT_TIMEOUT, MAX_TIMEOUT, MIN_TIMEOUT};
        let timeout = match &self.watchdog {
            Some(s) => parse_duration_flag("--watchdog", s, MIN_TIMEOUT, MAX_TIMEOUT)?,
            None => DEFAULT_TIMEOUT,
        };
        for scenario in scenarios {
            let t = &scenario.threads;
            let longest_pace =
                bench_core::Role::iter().filter(|&r| t.of(r) > 0).map(|r| scenario.pace.of(r)).max().unwrap_or(0);
            let hold = if t.neighbours > 0 { scenario.neighbour_hold_ns } else { 0 };
            let op = Duration::from_nanos(longest_pace.saturating_add(hold));
            if timeout < op * 2 {
                return Err(CliError::Usage(format!(
                    "--watchdog: {timeout:?} is less than twice the longest pause an actor of workload {} takes \
                     between operations ({op:?}: its longest pace plus neighbour_hold_ns); use at least {:?}",
                    scenario.name,
                    op * 2
                )));
            }
        }
        Ok(timeout)
    }
}

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

/// `list`: policies and presets, one line each.
pub fn list() -> String {
    let mut out = String::from("policies:\n");
    for e in crate::registry() {
        let params = (e.default_params)();
        let params = match params.as_object() {
            Some(m) if !m.is_empty() => {
                format!(" [{}]", m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))
            }
            _ => String::new(),
        };
        let _ = writeln!(out, "  {:<15} {}{params}", e.name, e.summary);
    }
    out.push_str("workloads:\n");
    for (name, summary) in PRESETS {
        let _ = writeln!(out, "  {name:<15} {summary}");
    }
    out
}

/// Build policies from `name[:key=value]...` specifications.
pub fn parse_policies(spec: &str) -> Result<Vec<Arc<dyn DynPolicy>>, CliError> {
    let registry = crate::registry();
    let allowed = || registry.iter().map(|e| e.name).collect::<Vec<_>>().join(", ");
    let mut out = vec![];
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mut parts = item.split(':');
        let name = parts.next().unwrap_or_default();
        let entry = registry
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| CliError::Usage(format!("--policies: unknown policy `{name}`; allowed: {}", allowed())))?;
        let mut params = serde_json::Map::new();
        for kv in parts {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| CliError::Usage(format!("--policies: `{kv}` in `{item}` is not KEY=VALUE")))?;
            let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_owned()));
            params.insert(k.to_owned(), value);
        }
        out.push((entry.build)(&serde_json::Value::Object(params)).map_err(|e| {
            let defaults = (entry.default_params)();
            CliError::Usage(format!("--policies: {e}; parameters of {name} and their defaults: {defaults}"))
        })?);
    }
    if out.is_empty() {
        return Err(CliError::Usage(format!("--policies: no policy given; allowed: {}", allowed())));
    }
    for (i, p) in out.iter().enumerate() {
        if out[..i].iter().any(|q| q.label() == p.label()) {
            return Err(CliError::Usage(format!(
                "--policies: `{}` is given twice; give each policy (with its parameters) once, e.g. \
                 v2-flush-bool,v2-flush-bool:recheck_always=true",
                p.label()
            )));
        }
    }
    Ok(out)
}

/// Parse `--duration`: `5s`, `500ms`, `2m`, `1.5h`, from 1ms to 24h.
pub fn parse_duration(s: &str) -> Result<Duration, CliError> {
    parse_duration_flag("--duration", s, Duration::from_millis(1), Duration::from_secs(86400))
}

/// Parse the value `s` of `flag` as a duration between `min` and `max`:
/// a number with a unit `ms`, `s`, `m` or `h`. A bare number is refused
/// (is `5` seconds or milliseconds?). The error names the flag, the units
/// and the bounds.
pub fn parse_duration_flag(flag: &str, s: &str, min: Duration, max: Duration) -> Result<Duration, CliError> {
    let bad = |why: &str| {
        CliError::Usage(format!(
            "{flag}: `{s}` {why}; allowed: a number with a unit ms, s, m or h (e.g. 500ms, 5s, 2m), from {min:?} to \
             {max:?}"
        ))
    };
    let t = s.trim();
    let Some((num, unit)) = t.find(|c: char| c.is_ascii_alphabetic()).map(|i| t.split_at(i)) else {
        return Err(bad("has no unit"));
    };
    let n: f64 = num.trim().parse().map_err(|_| bad("is not a duration"))?;
    let secs = match unit {
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad("has an unknown unit")),
    };
    if !(secs >= min.as_secs_f64() && secs <= max.as_secs_f64()) {
        return Err(bad("is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The workload a command asked for, with every override applied and
/// `seed` (when given) as its seed.
pub fn scenario(args: &WorkloadArgs, seed: Option<u64>) -> Result<Scenario, CliError> {
    let mut scenario = match &args.scenario {
        Some(path) => Scenario::from_toml_file(path)?,
        None => preset(args.workload.as_deref().unwrap_or("uffd-private"))?,
    };
    for kv in args.threads.iter().flat_map(|t| t.split(',')).filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| CliError::Usage(format!("--threads: `{kv}` is not KIND=N")))?;
        scenario.set(&format!("threads.{}", k.trim()), v.trim())?;
    }
    for kv in &args.set {
        let (k, v) = kv.split_once('=').ok_or_else(|| CliError::Usage(format!("--set: `{kv}` is not KEY=VALUE")))?;
        scenario.set(k.trim(), v.trim())?;
    }
    if let Some(seed) = seed {
        scenario.seed = seed;
    }
    scenario.validate()?;
    Ok(scenario)
}

/// The command line, quoted for a shell, with the seed made explicit.
pub fn reproducer(seed: u64, seed_given: bool) -> String {
    let mut words: Vec<String> = std::env::args().collect();
    words[0] = crate::program().into();
    if !seed_given {
        words.push(format!("--seed={seed}"));
    }
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

/// One word quoted for a shell where it needs it.
pub fn quote(w: &str) -> String {
    if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_=.,:/".contains(c)) {
        w.to_owned()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// `run`.
pub fn run(args: &RunArgs) -> Result<(), CliError> {
    let json = OutputFile::check("--json", &args.json)?;
    let policies = parse_policies(&args.policies)?;
    let mut scenario = scenario(&args.workload, args.seed)?;
    args.engine.apply(&mut scenario)?;
    scenario.check_memory(available_memory())?;
    let watchdog = args.watchdog.timeout([&scenario])?;
    let costs = args.engine.cost_model()?;
    let duration = args.duration.as_deref().map(parse_duration).transpose()?;
    let limit = match (args.ops, &costs) {
        (Some(0), _) => return Err(CliError::Usage("--ops: must be at least 1".into())),
        (Some(ops), _) => Limit::Ops { ops, cap: duration.unwrap_or(Duration::from_secs(60)) },
        (None, None) => Limit::Duration(duration.unwrap_or(Duration::from_secs(5))),
        (None, Some(_)) => Limit::Duration(duration.unwrap_or(Duration::from_millis(100))),
    };
    let opts = RunOptions { limit, pin: !args.no_pin, hook: None, git_revision: GIT_REVISION.into(), watchdog };
    let threads = scenario.threads.total() as usize;
    let cores = bench_core::machine::available_cores();
    if costs.is_some() {
        sayln!(
            "workload {} (seed {}), {threads} virtual CPUs, simulated (virtual time, cost model {})",
            scenario.name,
            scenario.seed,
            args.engine.costs.as_ref().map_or("built-in".to_owned(), |p| p.display().to_string())
        );
    } else {
        sayln!("workload {} (seed {}), {threads} threads on {cores} cores", scenario.name, scenario.seed);
    }
    if threads > cores && costs.is_none() {
        sayln!(
            "note: {threads} threads on {cores} cores: oversubscribed. A preempted lock holder stalls every\n\
             spinning waiter, so hold and wait figures include scheduler delays; use the\n\
             simulation engine (or a machine with more cores) for contention studies."
        );
    }
    let mut runs = vec![];
    let mut failures = vec![];
    for policy in &policies {
        tell!("running {} ...", policy.label());
        let started = Instant::now();
        let (run, steps) = match run_on_engine(policy.clone(), &scenario, costs.as_ref(), &opts)? {
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
        if let (Limit::Ops { ops, cap }, Some(EndedBy::TimeCap)) = (limit, run.ended_by) {
            tell!(
                "  stopped by the time limit ({cap:?}{}) after {} of the {ops} collapses --ops asked for",
                if duration.is_some() { ", --duration" } else { ", the default cap of --ops" },
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
    say!("\n{}", reports::summary::run_table(&runs));
    for r in runs.iter().filter(|r| r.violations_total > 0) {
        sayln!("{}: {} violation(s); first:", r.policy, r.violations_total);
        for v in r.violations.iter().take(3) {
            sayln!("  {v}");
        }
    }
    let result = RunResult {
        schema: SCHEMA,
        tool: format!("collapse-bench {}", env!("CARGO_PKG_VERSION")),
        environment: Environment::capture(args.engine.engine.name(), scenario.seed, GIT_REVISION),
        costs,
        scenario: serde_json::to_value(&scenario).map_err(|e| CliError::Failed(e.to_string()))?,
        command: reproducer(scenario.seed, args.seed.is_some()),
        runs,
        watchdog_s: Some(watchdog.as_secs_f64()),
        failures,
    };
    json.write(&serde_json::to_vec_pretty(&result).map_err(|e| CliError::Failed(e.to_string()))?)?;
    sayln!("results: {}\nreproduce: {}", json.path().display(), result.command);
    if !result.failures.is_empty() {
        return Err(failures_error(&result.failures, &json.path().display().to_string()));
    }
    Ok(())
}
