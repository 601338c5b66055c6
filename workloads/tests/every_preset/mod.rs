//! The checker's default scope, as `collapse-bench check` runs it with no
//! `-w`: one policy on every preset, the default schedule budget split
//! over the presets by the seed. A stand-in for the library function the
//! default scope is moving to (`workloads::check::check_every_preset`):
//! swap it in when it lands.

use bench_core::kernel::DynPolicy;
use bench_core::Oracle;
use std::collections::BTreeSet;
use std::sync::Arc;
use workloads::check::{check_policy, schedule_seed, CheckOptions, CheckReport};
use workloads::{preset, PRESETS};

/// Each preset's share of `total` schedules: equal shares, the
/// remainder one each to consecutive presets from the one the seed
/// names (as the command line splits them).
fn shares(total: u64, seed: u64) -> Vec<u64> {
    let n = PRESETS.len() as u64;
    let start = schedule_seed(seed, 0) % n;
    (0..n).map(|i| total / n + u64::from((i + n - start) % n < total % n)).collect()
}

/// `policy` on every preset at `seed` with the default options (PCT,
/// depth 3, 1000 schedules over all presets), in preset order.
pub fn check_every_preset(policy: &Arc<dyn DynPolicy>, seed: u64) -> Vec<(&'static str, CheckReport)> {
    let defaults = CheckOptions { seed, ..CheckOptions::default() };
    PRESETS
        .iter()
        .zip(shares(defaults.schedules, seed))
        .map(|(&(name, _), schedules)| {
            let mut scenario = preset(name).unwrap();
            scenario.seed = seed;
            let opts = CheckOptions { schedules, ..defaults.clone() };
            (name, check_policy(policy, &scenario, &opts).unwrap())
        })
        .collect()
}

/// Every oracle any preset found.
pub fn oracles(reports: &[(&str, CheckReport)]) -> BTreeSet<Oracle> {
    reports.iter().flat_map(|(_, r)| r.by_oracle.keys().copied()).collect()
}

/// How long the default scope at `seed` searches before `oracle` first
/// breaks: presets in order, each with its share, until one finds it.
#[derive(Debug)]
pub struct FirstFinding {
    /// The preset that found it.
    pub preset: &'static str,
    /// The schedule of that preset that found it (0-based).
    pub index: u64,
    /// Schedules run up to and including it, over all presets.
    pub schedules: u64,
    /// Search wall time up to and including it, s (shrinking and replay
    /// not included): the earlier presets' whole searches, then that
    /// preset's search rerun for `index + 1` schedules (schedules are
    /// deterministic, so it is the same search).
    pub seconds: f64,
}

/// The [`FirstFinding`] of `oracle` for `policy` at `seed` (None: no
/// preset found it in its share).
pub fn first_finding(policy: &Arc<dyn DynPolicy>, oracle: Oracle, seed: u64) -> Option<FirstFinding> {
    let defaults = CheckOptions { seed, shrink_budget: 0, ..CheckOptions::default() };
    let (mut schedules, mut seconds) = (0, 0.0);
    for (&(name, _), share) in PRESETS.iter().zip(shares(defaults.schedules, seed)) {
        let mut scenario = preset(name).unwrap();
        scenario.seed = seed;
        let opts = CheckOptions { schedules: share, ..defaults.clone() };
        let report = check_policy(policy, &scenario, &opts).unwrap();
        let Some(&(_, index)) = report.by_oracle.get(&oracle) else {
            schedules += share;
            seconds += report.search_s;
            continue;
        };
        let rerun = check_policy(policy, &scenario, &CheckOptions { schedules: index + 1, ..opts }).unwrap();
        let seconds = seconds + rerun.search_s;
        return Some(FirstFinding { preset: name, index, schedules: schedules + index + 1, seconds });
    }
    None
}

/// The median of `xs` (the lower middle for an even count).
pub fn median<T: PartialOrd + Copy>(mut xs: Vec<T>) -> T {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[(xs.len() - 1) / 2]
}
