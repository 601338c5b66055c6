//! The figures the comparison tables show: one row each, named the way
//! the kernel test robot names its metrics (dotted, unit last), with an
//! extractor that reads the figure from one run.
//!
//! Latencies are in µs (the result files hold ns). A figure that does not
//! exist for a run (no `uffd` actor, no collapse at all) is `None`; a
//! cell's value is the median over the runs that have it, with its
//! confidence interval ([`MedianCi`]).

use crate::stats::MedianCi;
use crate::summary::{neighbour_wait, pml_hold};
use bench_core::metrics::HistSummary;
use bench_core::results::PolicyRun;
use std::collections::BTreeSet;

/// Reads a figure from one run.
pub type Extract = Box<dyn Fn(&PolicyRun) -> Option<f64> + Send + Sync>;

/// One row of a comparison table.
pub struct Figure {
    /// As printed at the end of the row (`collapse.latency.p50_us`).
    pub name: String,
    /// A headline figure: listed first.
    pub headline: bool,
    /// Already a percentage (its change is shown in percentage points).
    pub percent: bool,
    /// The value of one run, `None` where the figure does not exist.
    pub extract: Extract,
}

impl std::fmt::Debug for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Figure")
            .field("name", &self.name)
            .field("headline", &self.headline)
            .field("percent", &self.percent)
            .finish_non_exhaustive()
    }
}

impl Figure {
    fn new(name: &str, headline: bool, extract: fn(&PolicyRun) -> Option<f64>) -> Figure {
        Figure { name: name.to_owned(), headline, percent: false, extract: Box::new(extract) }
    }

    /// The figure's value for one run.
    pub fn value(&self, run: &PolicyRun) -> Option<f64> {
        (self.extract)(run).filter(|v| v.is_finite())
    }

    /// The figure of each run that has it, in the runs' order.
    pub fn values(&self, runs: &[PolicyRun]) -> Vec<f64> {
        runs.iter().filter_map(|r| self.value(r)).collect()
    }

    /// Median and interval over the runs that have the figure.
    pub fn stat(&self, runs: &[PolicyRun]) -> Option<MedianCi> {
        MedianCi::of(&self.values(runs))
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

fn per_collapse(run: &PolicyRun, n: u64, scale: f64) -> Option<f64> {
    (run.collapses > 0).then(|| n as f64 * scale / run.collapses as f64)
}

fn collapse_latency(run: &PolicyRun) -> Option<&HistSummary> {
    run.metrics.collapse_latency_ns.get("all")
}

/// Collapse latency p99, µs.
pub fn collapse_latency_p99_us(run: &PolicyRun) -> Option<f64> {
    collapse_latency(run).map(|h| us(h.p99))
}

/// The collapse's own `pml` hold (see [`pml_hold`]), p99, µs.
pub fn pml_hold_p99_us(run: &PolicyRun) -> Option<f64> {
    pml_hold(run).map(|h| us(h.p99))
}

/// The neighbours' contended `pml` wait, p99, µs; 0 when neighbours ran
/// but never had to wait (only contended acquisitions are recorded).
pub fn neighbour_wait_p99_us(run: &PolicyRun) -> Option<f64> {
    match neighbour_wait(run) {
        Some(h) => Some(us(h.p99)),
        None => run.metrics.op_latency_ns.contains_key("neighbour").then_some(0.0),
    }
}

/// TLB flushes (range and whole-mm) the collapses did themselves, per collapse.
pub fn collapse_flushes_per_collapse(run: &PolicyRun) -> Option<f64> {
    per_collapse(run, run.metrics.counters.collapse_flushes, 1.0)
}

/// IPIs the collapses' own flushes sent, per collapse.
pub fn collapse_ipis_per_collapse(run: &PolicyRun) -> Option<f64> {
    per_collapse(run, run.metrics.counters.collapse_ipis, 1.0)
}

/// Prefix of the abort rows.
pub const ABORT_PREFIX: &str = "aborts.";

/// The result that is not an abort.
const SUCCEED: &str = "SCAN_SUCCEED";

/// The row of one abort reason: its share of the collapses, in %.
pub fn abort_figure(reason: &str) -> Figure {
    let key = reason.to_owned();
    Figure {
        name: format!("{ABORT_PREFIX}{reason}%"),
        headline: false,
        percent: true,
        extract: Box::new(move |r: &PolicyRun| {
            per_collapse(r, r.metrics.counters.results.get(&key).copied().unwrap_or(0), 100.0)
        }),
    }
}

/// The fixed figures, headline ones first.
pub fn fixed_figures() -> Vec<Figure> {
    vec![
        Figure::new("collapses_per_s", true, |r| Some(r.collapses_per_s)),
        Figure::new("collapse.latency.p50_us", true, |r| collapse_latency(r).map(|h| us(h.p50))),
        Figure::new("collapse.latency.p99_us", true, collapse_latency_p99_us),
        // Where most collapses abort (an inserter filled a hole), the
        // latency of all of them is mostly the abort path's.
        Figure::new("succeeded.latency.p50_us", true, |r| {
            r.metrics.collapse_latency_ns.get("SCAN_SUCCEED").map(|h| us(h.p50))
        }),
        Figure::new("pml.hold.p99_us", true, pml_hold_p99_us),
        // A maximum is one event: a preempted holder sets it. Not a headline.
        Figure::new("pml.hold.max_us", false, |r| pml_hold(r).map(|h| us(h.max))),
        Figure::new("neighbour.pml_wait.p99_us", true, neighbour_wait_p99_us),
        Figure::new("ptl.hold.p99_us", false, |r| r.metrics.lock_hold_ns.get("collapse/ptl").map(|h| us(h.p99))),
        Figure::new("faulter.latency.p99_us", false, |r| r.metrics.op_latency_ns.get("faulter").map(|h| us(h.p99))),
        Figure::new("uffd.latency.p99_us", false, |r| r.metrics.op_latency_ns.get("uffd").map(|h| us(h.p99))),
        Figure::new("trylock_failures_per_collapse", false, |r| {
            per_collapse(r, r.metrics.counters.trylock_failures.values().sum(), 1.0)
        }),
        Figure::new("recheck_passes_per_collapse", false, |r| per_collapse(r, r.metrics.counters.recheck_passes, 1.0)),
        Figure::new("collapse.flushes_per_collapse", false, collapse_flushes_per_collapse),
        Figure::new("collapse.ipis_per_collapse", false, collapse_ipis_per_collapse),
        // Every actor's, divided by the collapses: a reader's fault or a
        // swap-out flushes too.
        Figure::new("all_actors.flush_tlb_mm_per_1k", false, |r| per_collapse(r, r.metrics.counters.flush_mm, 1000.0)),
        Figure::new("all_actors.ipis_per_collapse", false, |r| per_collapse(r, r.metrics.counters.ipis, 1.0)),
    ]
}

/// The figures of the CPU sweep's tables, in the order printed: the
/// latencies named as in the comparison tables, then the collapse's own
/// TLB flushes and their IPIs (which grow with the CPUs in `mm_cpumask`).
pub fn cpu_sweep_figures() -> Vec<Figure> {
    vec![
        Figure::new("collapse.latency.p99_us", true, collapse_latency_p99_us),
        // Where most collapses abort (an inserter filled a hole), the
        // latency of all of them is mostly the abort path's.
        Figure::new("succeeded.latency.p50_us", true, |r| {
            r.metrics.collapse_latency_ns.get("SCAN_SUCCEED").map(|h| us(h.p50))
        }),
        Figure::new("pml.hold.p99_us", true, pml_hold_p99_us),
        Figure::new("neighbour.pml_wait.p99_us", true, neighbour_wait_p99_us),
        Figure::new("collapse.flushes_per_collapse", false, collapse_flushes_per_collapse),
        Figure::new("collapse.ipis_per_collapse", false, collapse_ipis_per_collapse),
    ]
}

/// Every figure for a comparison of `runs` (both sides): the fixed ones,
/// then one abort row per `SCAN_*` result other than `SCAN_SUCCEED` that
/// any of the runs saw, in name order. Headline figures come first.
pub fn figures<'a>(runs: impl IntoIterator<Item = &'a PolicyRun>) -> Vec<Figure> {
    let reasons: BTreeSet<&str> = runs
        .into_iter()
        .flat_map(|r| r.metrics.counters.results.keys())
        .map(String::as_str)
        .filter(|k| *k != SUCCEED)
        .collect();
    let mut all = fixed_figures();
    all.extend(reasons.into_iter().map(abort_figure));
    all.sort_by_key(|f| !f.headline);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> PolicyRun {
        PolicyRun {
            policy: "v1".into(),
            params: serde_json::json!({}),
            workload: "w".into(),
            seed: 1,
            wall_s: 1.0,
            threads: 3,
            cores: 2,
            pinned: false,
            oversubscribed: true,
            collapses: 200,
            collapses_per_s: 200.0,
            metrics: Default::default(),
            locks: Default::default(),
            violations: vec![],
            violations_total: 0,
            ended_by: None,
        }
    }

    #[test]
    fn extractors() {
        let mut r = run();
        r.metrics.counters.results.insert("SCAN_SUCCEED".into(), 150);
        r.metrics.counters.results.insert("SCAN_FAIL".into(), 50);
        r.metrics.counters.flush_mm = 3;
        r.metrics.collapse_latency_ns.insert("all".into(), HistSummary { p50: 7420, ..Default::default() });
        let figs = figures([&r]);
        let get = |r: &PolicyRun, name: &str| figs.iter().find(|f| f.name == name).unwrap().value(r);
        assert_eq!(get(&r, "collapses_per_s"), Some(200.0));
        assert_eq!(get(&r, "collapse.latency.p50_us"), Some(7.42));
        assert_eq!(get(&r, "aborts.SCAN_FAIL%"), Some(25.0));
        assert_eq!(get(&r, "all_actors.flush_tlb_mm_per_1k"), Some(15.0));
        assert_eq!(get(&r, "uffd.latency.p99_us"), None);
        assert_eq!(get(&r, "neighbour.pml_wait.p99_us"), None);
        assert!(figs.iter().all(|f| f.name != "aborts.SCAN_SUCCEED%"));
        let first_other = figs.iter().position(|f| !f.headline).unwrap();
        assert!(figs[first_other..].iter().all(|f| !f.headline));
        assert_eq!(first_other, 6);
        r.metrics.op_latency_ns.insert("neighbour".into(), HistSummary::default());
        assert_eq!(get(&r, "neighbour.pml_wait.p99_us"), Some(0.0));
        r.collapses = 0;
        assert_eq!(get(&r, "all_actors.ipis_per_collapse"), None);
    }
}
