//! `collapse-bench`: run, check and compare `collapse_pte_mapped_thp()`
//! locking policies. A thin layer over the workspace crates.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod check_cmd;
mod cli;

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
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::List => {
            print!("{}", cli::list());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => cli::run(&args).map(|()| ExitCode::SUCCESS),
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
