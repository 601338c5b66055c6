//! `collapse-bench`: run, check and compare `collapse_pte_mapped_thp()`
//! locking policies. A thin layer over the workspace crates.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod check_cmd;
mod cli;
mod report_cmd;

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
    /// Run policies on a workload with the native engine; print a summary
    /// and write the results as JSON.
    Run(Box<cli::RunArgs>),
    /// Search controlled schedules of policies for broken rules; print a
    /// verdict per policy and each failure's shrunk counterexample as a
    /// timeline with a replay token (exit 1 if any rule was broken).
    Check(Box<check_cmd::CheckArgs>),
    /// The main job: measure the policies on every preset (repeated runs),
    /// sweep pml contention, check every policy, and write report.txt (for
    /// a mailing-list reply), results.json, plots and index.html.
    Report(Box<report_cmd::ReportArgs>),
    /// Compare two result files (of `run` or `report`) in the report's
    /// table layout: two commits, two machines, two configurations.
    Compare {
        /// The base result file.
        base: std::path::PathBuf,
        /// The result file compared with it.
        new: std::path::PathBuf,
    },
}

/// `compare`: bad or mismatched files are bad input (exit 2).
fn compare(base: &std::path::Path, new: &std::path::Path) -> Result<(), cli::CliError> {
    let usage = |e: reports::compare::CompareError| cli::CliError::Usage(e.to_string());
    let (base, new) = (reports::compare::load(base).map_err(usage)?, reports::compare::load(new).map_err(usage)?);
    print!("{}", reports::compare::compare(&base, &new).map_err(usage)?);
    Ok(())
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::List => {
            print!("{}", cli::list());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => cli::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Report(args) => report_cmd::report(&args).map(|()| ExitCode::SUCCESS),
        Command::Compare { base, new } => compare(&base, &new).map(|()| ExitCode::SUCCESS),
        Command::Check(args) => {
            check_cmd::check(&args).map(|failed| if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("collapse-bench: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
