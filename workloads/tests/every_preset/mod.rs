//! The checker's default scope, as `collapse-bench check` runs it with no
//! `-w` (`workloads::check::check_every_preset`), and how long it takes
//! to a first finding.
// Each test binary compiles this module and uses what it needs of it.
#![allow(dead_code)]

use bench_core::kernel::DynPolicy;
use bench_core::Oracle;
use std::collections::BTreeSet;
use std::sync::Arc;
use workloads::check::{check_policy, split_schedules, CheckOptions, CheckReport};
use workloads::{preset, PRESETS};

/// `policy` on every preset at `seed` with the default options (PCT,
/// depth 3, 4000 schedules over all presets, 24 operations per CPU), in preset order.
pub fn check_every_preset(policy: &Arc<dyn DynPolicy>, seed: u64) -> Vec<(&'static str, CheckReport)> {
    let opts = CheckOptions { seed, ..CheckOptions::default() };
    let reports = workloads::check::check_every_preset(policy, &opts).unwrap();
    PRESETS.iter().zip(reports).map(|(&(name, _), (_, report))| (name, report)).collect()
}

/// The overall verdict of [`check_every_preset`]'s reports, as the
/// default `check` prints it: the preset and the gravest oracle that
/// counts against the policy (None: ok).
pub fn verdict<'a>(reports: &'a [(&'static str, CheckReport)]) -> Option<(&'a str, Oracle)> {
    workloads::check::overall_failure(reports.iter().map(|(name, r)| (*name, r)))
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
    for (&(name, _), share) in PRESETS.iter().zip(split_schedules(defaults.schedules, PRESETS.len(), seed)) {
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
