//! workloads: the kernel paths that run beside a collapse
//! ([`kernel_paths`]) and the actors that run them, the scenarios that
//! configure them (named presets or TOML files), and the runner that puts
//! a policy on a scenario and collects a [`bench_core::results::PolicyRun`];
//! the race checker ([`check`]) and the conformance suite every policy
//! plugin runs ([`conformance`]).
//!
//! ```text
//! let scenario = preset("uffd-private")?;
//! let run = run_policy(policy, &scenario, &opts)?;
//! ```

#![warn(missing_docs)]

pub mod actors;
pub mod check;
pub mod conformance;
pub mod exhaustive;
pub mod kernel_paths;
pub mod presets;
pub mod runner;
pub mod scenario;
pub mod simulate;

pub use actors::Actor;
pub use presets::{preset, FUTURE_INSERTER_PRESETS, LATER_KERNEL_PRESETS, PRESETS};
pub use runner::{run_policy, RunError, RunOptions};
pub use scenario::{CollapseMode, Pace, Scenario, ScenarioError, Threads, UffdMode, VmaShare};
pub use simulate::{simulate_policy, SimOptions, Simulated};
