//! `collapse-bench` as a library: the whole command line (`list`, `run`,
//! `check`, `report`, `compare`, `new-policy`) behind one entry point,
//! [`main_with`], so that a policy written in another crate runs through
//! it exactly as the shipped ones do.
//!
//! The shipped binary is `collapse_bench::main_with(Vec::new())`. A plugin
//! crate (see `collapse-bench new-policy` and `examples/policy-template/`)
//! has a `src/main.rs` of three lines:
//!
//! ```text
//! fn main() -> std::process::ExitCode {
//!     collapse_bench::main_with(vec![bench_core::kernel::entry::<my_fix::MyFix>()])
//! }
//! ```
//!
//! and `cargo run --release -- check -p my-fix,v1` then checks it beside
//! `v1`, `report -p v1,my-fix` measures and checks it, and `list` shows it.

#[macro_use]
pub mod console;
pub mod calibrate_cmd;
pub mod check_cmd;
pub mod cli;
pub mod interrupt;
pub mod new_policy;
pub mod output_dir;
pub mod output_file;
pub mod report_cmd;
pub mod run_cmd;
pub mod soak_cmd;

use bench_core::kernel::PolicyEntry;
use clap::{Parser, Subcommand};
use cli::CliError;
use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::OnceLock;

/// The policies of this process: the shipped ones, then the plugin's.
static REGISTRY: OnceLock<Vec<PolicyEntry>> = OnceLock::new();
/// The name commands are reproduced with (`collapse-bench`, or a plugin's binary).
static PROGRAM: OnceLock<String> = OnceLock::new();

/// Every policy the command line knows: the shipped ones
/// (`policies::registry()`, in report order) followed by those given to
/// [`main_with`] or [`register`]. Before either is called, the shipped ones.
pub fn registry() -> Vec<PolicyEntry> {
    REGISTRY.get().cloned().unwrap_or_else(policies::registry)
}

/// The names of [`registry`], comma-separated: the default of `check` and
/// the policies `report` gives a verdict for.
pub fn registered_names() -> String {
    registry().iter().map(|e| e.name).collect::<Vec<_>>().join(",")
}

/// A policy name is used in `-p name:key=value,...` lists, report tables
/// and file names: ASCII letters, digits, `-`, `_`, `.` and `+` (the
/// kernel's function with a patch: `linux-6.12.118+fix`), starting with a
/// letter or digit.
fn valid_policy_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
}

/// Register `extra` policies beside the shipped ones for the rest of the
/// process (what [`main_with`] does first). A name that is not valid, or
/// that is already taken by a shipped policy or another extra one, is bad
/// input (exit 2) naming it. It can be called more than once only with the
/// same names.
pub fn register(extra: Vec<PolicyEntry>) -> Result<(), CliError> {
    let mut all = policies::registry();
    for e in extra {
        if !valid_policy_name(e.name) {
            return Err(CliError::Usage(format!(
                "policy name `{}` (added by this binary): a policy name may hold only ASCII letters, digits, \
                 `-`, `_`, `.` and `+`, starting with a letter or digit",
                e.name
            )));
        }
        if let Some(i) = all.iter().position(|s| s.name == e.name) {
            let whose = if i < policies::registry().len() { "a shipped policy" } else { "another added policy" };
            return Err(CliError::Usage(format!(
                "policy name `{}` (added by this binary) clashes with {whose} of that name; rename the plugin's \
                 CollapsePolicy::NAME (shipped: {})",
                e.name,
                policies::registry().iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
            )));
        }
        all.push(e);
    }
    let names = |v: &[PolicyEntry]| v.iter().map(|e| e.name).collect::<Vec<_>>();
    let set = REGISTRY.get_or_init(|| all.clone());
    if names(set) != names(&all) {
        return Err(CliError::Failed(format!(
            "the policies were already registered as {}; register them once per process",
            names(set).join(", ")
        )));
    }
    Ok(())
}

/// The program name printed in reproducer and replay commands:
/// `collapse-bench` for the shipped binary, the binary's own name (e.g.
/// `my-fix`) for a plugin's, so that the printed commands run the binary
/// that knows the plugin's policy.
pub fn program() -> &'static str {
    PROGRAM.get().map(String::as_str).unwrap_or("collapse-bench")
}

/// Run, check and compare collapse_pte_mapped_thp() locking policies.
#[derive(Parser)]
#[command(name = "collapse-bench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the policies and workload presets, one line each.
    List,
    /// Run policies on a workload (native threads, or `--engine sim`
    /// virtual CPUs); print a summary and write the results as JSON.
    Run(Box<run_cmd::RunArgs>),
    /// Search controlled schedules of policies for broken rules; print a
    /// verdict per policy and each failure's shrunk counterexample as a
    /// timeline with a replay token (exit 1 if any rule was broken).
    Check(Box<check_cmd::CheckArgs>),
    /// Run the native engine with every oracle on for a long time (10m
    /// by default), in rounds with fresh seeds; print the operation counts
    /// and any violation (exit 1 on a violation or a failed run). Not a CI
    /// test: a soak.
    Soak(Box<soak_cmd::SoakArgs>),
    /// The main job: measure the policies on every preset (repeated runs),
    /// sweep pml contention and (simulated) CPU count, check every policy,
    /// and write report.txt (for a mailing-list reply), results.json,
    /// plots and index.html.
    Report(Box<report_cmd::ReportArgs>),
    /// Compare two result files (of `run` or `report`) in the report's
    /// table layout: two commits, two machines, two configurations.
    Compare {
        /// The base result file.
        base: std::path::PathBuf,
        /// The result file compared with it.
        new: std::path::PathBuf,
    },
    /// Write a new policy crate, a copy of the template crate (the shipped
    /// v1's form, the place to change marked), ready to build: its binary
    /// is this command line with the new policy added; `cargo test` in it
    /// runs the conformance suite.
    NewPolicy(new_policy::NewPolicyArgs),
    /// Measure what the simulation's primitives cost on this machine and
    /// write a cost file for `--engine sim --costs FILE`.
    Calibrate(calibrate_cmd::CalibrateArgs),
}

/// `compare`: bad or mismatched files are bad input (exit 2).
fn compare(base: &std::path::Path, new: &std::path::Path) -> Result<(), CliError> {
    let usage = |e: reports::compare::CompareError| CliError::Usage(e.to_string());
    let (base, new) = (reports::compare::load(base).map_err(usage)?, reports::compare::load(new).map_err(usage)?);
    say!("{}", reports::compare::compare(&base, &new).map_err(usage)?);
    if let Some(warning) = reports::compare::warning(&base, &new) {
        tell!("{warning}");
    }
    Ok(())
}

/// The full `collapse-bench` command line, with the shipped policies and
/// `extra` (e.g. `vec![bench_core::kernel::entry::<MyFix>()]`): `list` shows them,
/// `run`, `check`, `report` take them in `-p`, `check` and `report`'s
/// verdicts cover them by default. Returns the exit status: 0 on success,
/// 1 when `check` found a broken rule or a command failed, 2 on bad input
/// — including an extra policy whose name is taken (a shipped one's) or
/// not valid.
pub fn main_with(extra: Vec<PolicyEntry>) -> ExitCode {
    main_with_args(extra, std::env::args_os())
}

/// [`main_with`] on the given command line (`args[0]` is the program).
pub fn main_with_args<I, T>(extra: Vec<PolicyEntry>, args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    if !extra.is_empty() {
        let name = args.first().map(std::path::Path::new).and_then(|p| p.file_stem()).and_then(|s| s.to_str());
        let _ = PROGRAM.set(name.unwrap_or("collapse-bench").to_owned());
    }
    let code = match dispatch(extra, args) {
        Ok(code) => code,
        Err(e) => {
            tell!("{}: error: {e}", program());
            ExitCode::from(e.exit_code())
        }
    };
    // Every file the command writes is written by now.
    console::end_if_stdout_closed();
    code
}

/// Parse the command line, register the policies (`extra`, and the
/// kernel's own function where `--kernel-source` names a tree), and run
/// the command.
fn dispatch(mut extra: Vec<PolicyEntry>, args: Vec<OsString>) -> Result<ExitCode, CliError> {
    let cli = Cli::try_parse_from(args).unwrap_or_else(|e| e.exit());
    let kernel = match &cli.command {
        Command::Run(args) => Some(&args.kernel),
        Command::Check(args) => Some(&args.kernel),
        Command::Report(args) => Some(&args.kernel),
        Command::Soak(args) => Some(&args.kernel),
        _ => None,
    };
    if let Some(kernel) = kernel {
        extra.extend(kernel.load()?);
    }
    register(extra)?;
    match cli.command {
        Command::List => {
            say!("{}", cli::list());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => run_cmd::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Report(args) => report_cmd::report(&args).map(|()| ExitCode::SUCCESS),
        Command::Compare { base, new } => compare(&base, &new).map(|()| ExitCode::SUCCESS),
        Command::Check(args) => {
            check_cmd::check(&args).map(|failed| if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Command::NewPolicy(args) => new_policy::new_policy(&args).map(|()| ExitCode::SUCCESS),
        Command::Soak(args) => soak_cmd::soak(&args).map(|()| ExitCode::SUCCESS),
        Command::Calibrate(args) => calibrate_cmd::calibrate(&args).map(|()| ExitCode::SUCCESS),
    }
}
