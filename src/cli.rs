//! What the commands share: the errors and their exit codes, the option
//! groups (workload, engine, watchdog), the parsing of policy, duration
//! and override specifications into checked values, the engine choice,
//! and the glue between the crates.

use bench_core::kernel::DynPolicy;
use bench_core::results::{PolicyRun, RunFailure};
use bench_core::CostModel;
use bench_core::IntoEnumIterator;
use reports::schema::PolicyFailure;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
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

/// The value of `--engine`: which engine runs the actors. What a command
/// runs on is an [`EngineChoice`], made from this and `--costs`.
#[derive(clap::ValueEnum, Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum EngineKind {
    /// OS threads on this machine, wall-clock time.
    #[default]
    Native,
    /// One virtual CPU per actor, virtual time from the cost model,
    /// deterministic.
    Sim,
}

/// The engine a command runs policies on, as checked from the command
/// line: the native engine, or the simulation under its cost model. (Not
/// to be confused with [`bench_core::kernel::Engine`], the trait a policy's
/// `collapse` is generic over; this picks which implementation of it runs.)
#[derive(Clone, Debug, PartialEq)]
pub enum EngineChoice {
    /// OS threads on this machine, wall-clock time.
    Native,
    /// One virtual CPU per actor, virtual time charged from this cost
    /// model, deterministic.
    Simulated(CostModel),
}

impl EngineChoice {
    /// The name results record (`environment.engine`): `native` or `sim`.
    pub fn name(&self) -> &'static str {
        match self {
            EngineChoice::Native => "native",
            EngineChoice::Simulated(_) => "sim",
        }
    }

    /// The cost model of the simulation (None for the native engine).
    pub fn costs(&self) -> Option<&CostModel> {
        match self {
            EngineChoice::Native => None,
            EngineChoice::Simulated(costs) => Some(costs),
        }
    }

    /// Whether this is the simulation.
    pub fn is_simulated(&self) -> bool {
        matches!(self, EngineChoice::Simulated(_))
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
    /// Run the workload on a machine of N CPUs (1 to 256): every actor
    /// kind and the ranges grown in proportion together, as copies of the
    /// workload side by side in one mm.
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

    /// The engine `--engine` names, the simulation under `costs` (the
    /// model of `--costs`, or the built-in one when None).
    pub fn engine_with(&self, costs: Option<CostModel>) -> EngineChoice {
        match self.engine {
            EngineKind::Native => EngineChoice::Native,
            EngineKind::Sim => EngineChoice::Simulated(costs.unwrap_or_default()),
        }
    }

    /// The engine asked for, where `--costs` belongs to the engine alone
    /// (`run`): the simulation under `--costs` (or the built-in model), or
    /// the native engine, which refuses `--costs`.
    pub fn choice(&self) -> Result<EngineChoice, CliError> {
        if self.engine == EngineKind::Native && self.costs.is_some() {
            return Err(CliError::Usage("--costs: only the simulation uses a cost model; add --engine sim".into()));
        }
        Ok(self.engine_with(self.cost_file()?))
    }

    /// Where the simulation's cost model comes from, for headers: the
    /// `--costs` file, or `built-in`.
    pub fn cost_source(&self) -> String {
        self.costs.as_ref().map_or("built-in".to_owned(), |p| p.display().to_string())
    }

    /// `scenario` on `--cpus` CPUs, validated.
    pub fn apply(&self, scenario: &mut Scenario) -> Result<(), CliError> {
        if let Some(cpus) = self.cpus {
            *scenario = scenario.scaled_to(cpus);
            scenario.validate().map_err(|e| CliError::Usage(format!("--cpus {cpus}: {e}")))?;
        }
        Ok(())
    }
}

/// A policy's run on an engine: its results and, for the simulation, the
/// scheduling steps it took; or why it was abandoned.
pub type Outcome = Result<(PolicyRun, Option<u64>), Box<RunFailure>>;

/// Run `policy` on `scenario` until `opts.limit` on `engine`: simulated
/// (the limit is then virtual time), or natively with `opts`. Bad input is
/// an error; a run that panicked or hung is an [`Outcome`] that says so,
/// so the caller goes on with the other policies.
pub fn run_on_engine(
    policy: Arc<dyn DynPolicy>,
    scenario: &Scenario,
    engine: &EngineChoice,
    opts: &RunOptions,
) -> Result<Outcome, CliError> {
    match engine {
        EngineChoice::Simulated(costs) => {
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
        EngineChoice::Native => match run_policy(policy, scenario, opts) {
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

/// `--kernel-source` and `--kernel-patch`: the kernel's own
/// `collapse_pte_mapped_thp()` as one more policy, on `run`, `check`,
/// `report` and `soak`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct KernelSourceArgs {
    /// A kernel tree, or its source tarball (.tar.xz or .tar, e.g. Debian's
    /// /usr/src/linux-source-6.12.tar.xz): collapse_pte_mapped_thp() is
    /// read from its mm/khugepaged.c, compiled with the machine's C
    /// compiler against collapse-bench's kernel-compat headers, and
    /// registered as the policy `linux-<version>` (`-p kernel` names it).
    #[arg(long, value_name = "PATH")]
    pub kernel_source: Option<PathBuf>,
    /// A patch to apply to that mm/khugepaged.c first (a unified diff, as
    /// posted: `git format-patch` mail or `diff -u`); repeat it to apply
    /// several, in order. The policy's name gains `+<patch file stem>`.
    #[arg(long, value_name = "FILE", requires = "kernel_source")]
    pub kernel_patch: Vec<PathBuf>,
}

/// The kernel policy's name once one is registered (`-p kernel` names
/// it), and the options that made it.
static KERNEL_POLICY: std::sync::OnceLock<(&'static str, KernelSourceArgs)> = std::sync::OnceLock::new();

/// The options a command that runs `policy` again needs: `--kernel-source`
/// and each `--kernel-patch` where `policy` is the kernel's function, else
/// none.
pub fn kernel_options(policy: &str) -> Vec<String> {
    let mut words = vec![];
    if let Some((_, args)) = KERNEL_POLICY.get().filter(|(name, _)| policy == *name) {
        if let Some(source) = &args.kernel_source {
            words.extend(["--kernel-source".to_owned(), source.display().to_string()]);
        }
        for patch in &args.kernel_patch {
            words.extend(["--kernel-patch".to_owned(), patch.display().to_string()]);
        }
    }
    words
}

impl KernelSourceArgs {
    /// Compile and load the kernel's function if `--kernel-source` is
    /// given, and say what was made (to stderr). Every failure is bad input
    /// (exit 2) that names the option, the file and what to do.
    pub fn load(&self) -> Result<Option<bench_core::kernel::PolicyEntry>, CliError> {
        let Some(source) = &self.kernel_source else { return Ok(None) };
        let function =
            kernel_c::KernelFunction::load(source, &self.kernel_patch).map_err(|e| CliError::Usage(e.to_string()))?;
        let p = &function.provenance;
        tell!(
            "kernel: {} from {} ({}{}): {} compiled and loaded in {:.2} s",
            bench_core::kernel::RuntimePolicy::name(&function),
            p.source.display(),
            p.version,
            p.patches.iter().map(|f| format!(" + {}", f.display())).collect::<String>(),
            p.functions.iter().map(|f| format!("{f}()")).collect::<Vec<_>>().join(", "),
            function.compile_time().as_secs_f64()
        );
        for ignored in &p.ignored_files {
            tell!("kernel: warning: not applied (the model reads mm/khugepaged.c only): {ignored}");
        }
        if !function.warnings().is_empty() {
            tell!("kernel: the C compiler warned:\n{}", function.warnings().trim_end());
        }
        let entry = function.entry();
        let _ = KERNEL_POLICY.set((entry.name, self.clone()));
        Ok(Some(entry))
    }
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
        let name = match parts.next().unwrap_or_default() {
            kernel_c::ALIAS => KERNEL_POLICY.get().map(|(name, _)| *name).ok_or_else(|| {
                CliError::Usage(format!(
                    "--policies: `{}` names the kernel's own collapse_pte_mapped_thp(), which needs \
                     --kernel-source PATH (a kernel tree or e.g. /usr/src/linux-source-6.12.tar.xz)",
                    kernel_c::ALIAS
                ))
            })?,
            name => name,
        };
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
