//! `collapse-bench`: run, check and compare `collapse_pte_mapped_thp()`
//! locking policies. A thin layer over the workspace crates.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

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
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Command::List => {
            print!("{}", cli::list());
            Ok(())
        }
        Command::Run(args) => cli::run(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("collapse-bench: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
