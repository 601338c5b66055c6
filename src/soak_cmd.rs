//! `collapse-bench soak`: the native engine with every oracle on, for a
//! long time, on each policy in turn. Not a CI test: the command that
//! shows a policy survives minutes of the `mixed` preset's races, the way
//! a kernel change is soaked before it is trusted.
//!
//! A soak is a sequence of rounds, each a fresh model run for `--round`
//! with the next seed (so the rounds explore different interleavings and
//! each ends with a teardown check), until `--duration` has passed. It
//! prints, per policy, the operations every actor completed, the
//! collapses by result, the violations and the rounds that had them, and
//! the first violation of each rule with the command that reruns its
//! round. Exit 1 on any violation or failed
//! run; Ctrl-C stops after the current round and prints the counts so far.

use crate::cli::{
    parse_duration_flag, parse_policies, print_failure, quote, scenario, CliError, WatchdogArgs, WorkloadArgs,
    GIT_REVISION,
};
use crate::interrupt;
use bench_core::actor::Limit;
use bench_core::kernel::DynPolicy;
use bench_core::oracle::{Oracle, Violation};
use bench_core::results::PolicyRun;
use reports::schema::PolicyFailure;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use workloads::scenario::available_memory;
use workloads::{run_policy, RunError, RunOptions, Scenario};

/// Arguments of `soak`.
#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// Policies to soak, one after the other, comma-separated.
    #[arg(short = 'p', long = "policies", default_value = "v1,v2-flush-bool,v2-step3-down")]
    pub policies: String,
    /// The workload (default: the `mixed` preset); oracles are always on.
    #[command(flatten)]
    pub workload: WorkloadArgs,
    #[command(flatten)]
    pub kernel: crate::cli::KernelSourceArgs,
    /// How long to soak each policy (`10m`, `90s`; 1s to 24h).
    #[arg(long, default_value = "10m")]
    pub duration: String,
    /// Length of one round (a fresh model and the next seed; 100ms to 1h).
    #[arg(long, default_value = "10s")]
    pub round: String,
    /// Seed of the first round (default: the scenario's).
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub watchdog: WatchdogArgs,
}

/// What one policy's soak added up to.
#[derive(Default)]
struct Totals {
    rounds: u64,
    seconds: f64,
    collapses: u64,
    results: BTreeMap<String, u64>,
    ops: BTreeMap<String, u64>,
    trylock_failures: BTreeMap<String, u64>,
    recheck_passes: u64,
    flush_mm: u64,
    tables_freed: u64,
    violations: u64,
    /// Seeds of the rounds that broke a rule.
    violating_rounds: Vec<u64>,
    /// The first violation of each oracle, with the seed of its round.
    first_of_each: BTreeMap<Oracle, (u64, Violation)>,
    failure: Option<PolicyFailure>,
}

impl Totals {
    fn add(&mut self, seed: u64, run: &PolicyRun) {
        let add = |to: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>| {
            for (k, v) in from {
                *to.entry(k.clone()).or_default() += v;
            }
        };
        let c = &run.metrics.counters;
        self.rounds += 1;
        self.seconds += run.wall_s;
        self.collapses += run.collapses;
        add(&mut self.results, &c.results);
        add(&mut self.ops, &c.ops);
        add(&mut self.trylock_failures, &c.trylock_failures);
        self.recheck_passes += c.recheck_passes;
        self.flush_mm += c.flush_mm;
        self.tables_freed += c.tables_freed;
        self.violations += run.violations_total;
        if run.violations_total > 0 {
            self.violating_rounds.push(seed);
        }
        for v in &run.violations {
            self.first_of_each.entry(v.oracle).or_insert_with(|| (seed, v.clone()));
        }
    }

    /// `name 12, other 3` of a counter map.
    fn list(map: &BTreeMap<String, u64>) -> String {
        if map.is_empty() {
            return "none".into();
        }
        map.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    }

    fn text(&self, policy: &str, rerun: &dyn Fn(u64) -> String) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{policy}: {} rounds, {:.1} s, {} collapses ({:.0}/s), {} violations",
            self.rounds,
            self.seconds,
            self.collapses,
            if self.seconds > 0.0 { self.collapses as f64 / self.seconds } else { 0.0 },
            self.violations
        );
        if self.violations > 0 {
            let oracles: Vec<&str> = self.first_of_each.keys().map(|o| o.name()).collect();
            let _ = writeln!(
                out,
                "  broken in {} of {} rounds: {}",
                self.violating_rounds.len(),
                self.rounds,
                oracles.join(", ")
            );
        }
        let _ = writeln!(out, "  results: {}", Self::list(&self.results));
        let _ = writeln!(out, "  operations: {}", Self::list(&self.ops));
        let _ = writeln!(
            out,
            "  recheck passes {}, trylock failures: {}, flush_tlb_mm {}, tables freed {}",
            self.recheck_passes,
            Self::list(&self.trylock_failures),
            self.flush_mm,
            self.tables_freed
        );
        for (seed, v) in self.first_of_each.values() {
            let _ = writeln!(out, "  first {}: {v}\n    rerun: {}", v.oracle, rerun(*seed));
        }
        if let Some(f) = &self.failure {
            let _ = writeln!(out, "  {}", f.summary());
        }
        out
    }
}

/// What `soak` will do, every argument checked.
pub struct SoakPlan {
    /// The policies, soaked one after the other.
    policies: Vec<Arc<dyn DynPolicy>>,
    /// The workload of the first round, every oracle on.
    scenario: Scenario,
    /// How long each policy is soaked.
    duration: Duration,
    /// The length of one round.
    round: Duration,
    /// The run options of a round (its limit is `round`).
    opts: RunOptions,
    /// The workload as `run` takes it (`-w NAME` or `--scenario FILE`),
    /// for the command that reruns a round.
    workload_words: Vec<String>,
}

impl SoakPlan {
    /// Check `args` into a plan, before any work. Bad input is
    /// [`CliError::Usage`] (exit 2) naming the field and what it allows.
    pub fn new(args: &SoakArgs) -> Result<SoakPlan, CliError> {
        let policies = parse_policies(&args.policies)?;
        let mut workload = args.workload.clone();
        if workload.workload.is_none() && workload.scenario.is_none() {
            workload.workload = Some("mixed".into());
        }
        let mut scenario = scenario(&workload, args.seed)?;
        scenario.oracles = true;
        scenario.check_memory(available_memory())?;
        let duration =
            parse_duration_flag("--duration", &args.duration, Duration::from_secs(1), Duration::from_secs(86400))?;
        let round = parse_duration_flag("--round", &args.round, Duration::from_millis(100), Duration::from_secs(3600))?;
        let watchdog = args.watchdog.timeout([&scenario])?;
        let opts = RunOptions {
            limit: Limit::Duration(round),
            pin: true,
            hook: None,
            git_revision: GIT_REVISION.into(),
            watchdog,
        };
        let workload_words: Vec<String> = match (&workload.scenario, &workload.workload) {
            (Some(path), _) => vec!["--scenario".into(), quote(&path.display().to_string())],
            (None, name) => vec!["-w".into(), quote(name.as_deref().unwrap_or("mixed"))],
        };
        Ok(SoakPlan { policies, scenario, duration, round, opts, workload_words })
    }

    /// Soak every policy in turn, printing each one's totals as it ends.
    /// Exit 1 at the end when any broke a rule or failed; Ctrl-C (or
    /// stdout closing) stops after the current round.
    pub fn run(&self) -> Result<(), CliError> {
        let SoakPlan { policies, scenario, duration, round, opts, workload_words } = self;
        let (duration, round) = (*duration, *round);
        interrupt::install();
        sayln!(
            "soak: workload {} on {} threads, {:?} per policy in rounds of {:?} (seeds {}, {}, ...), every oracle \
             on, watchdog {:?}",
            scenario.name,
            scenario.threads.total(),
            duration,
            round,
            scenario.seed,
            scenario.seed.wrapping_add(1),
            opts.watchdog
        );
        let mut any_bad = false;
        let mut interrupted = false;
        for policy in policies {
            let label = policy.label();
            let kernel_words: Vec<String> = crate::cli::kernel_options(&label).iter().map(|w| quote(w)).collect();
            let rerun = |seed: u64| {
                format!(
                    "{} run -p {} {}{} --seed {seed} --duration {}ms",
                    crate::program(),
                    quote(&label),
                    kernel_words.iter().map(|w| format!("{w} ")).collect::<String>(),
                    workload_words.join(" "),
                    round.as_millis()
                )
            };
            tell!("soaking {label} for {duration:?} ...");
            let mut totals = Totals::default();
            let started = Instant::now();
            let mut seed = scenario.seed;
            while started.elapsed() < duration {
                // A soak writes no file: with its reader gone it has no one to tell.
                crate::console::end_if_stdout_closed();
                if interrupt::requested() {
                    interrupted = true;
                    break;
                }
                let mut this = scenario.clone();
                this.seed = seed;
                let left = duration.saturating_sub(started.elapsed()).max(Duration::from_millis(100));
                let opts = RunOptions { limit: Limit::Duration(round.min(left)), ..opts.clone() };
                match run_policy(policy.clone(), &this, &opts) {
                    Ok(run) => totals.add(seed, &run),
                    Err(RunError::Invalid(e)) => return Err(e.into()),
                    Err(RunError::Failed(failure)) => {
                        let failure = PolicyFailure {
                            policy: label.clone(),
                            workload: this.name.clone(),
                            part: format!("soak, seed {seed}"),
                            failure: *failure,
                        };
                        print_failure(&failure);
                        totals.failure = Some(failure);
                        break;
                    }
                }
                seed = seed.wrapping_add(1) & i64::MAX as u64;
            }
            any_bad |= totals.violations > 0 || totals.failure.is_some();
            say!("{}", totals.text(&label, &rerun));
            if interrupted {
                break;
            }
        }
        if interrupted {
            return Err(CliError::Interrupted("interrupted: the counts above are those of the rounds finished".into()));
        }
        if any_bad {
            return Err(CliError::Failed("soak found violations or failed runs (see above)".into()));
        }
        sayln!("soak: no violation");
        Ok(())
    }
}

/// `soak`: check the arguments, then soak (it writes no file: what it
/// found is printed as it goes).
pub fn soak(args: &SoakArgs) -> Result<(), CliError> {
    SoakPlan::new(args)?.run()
}
