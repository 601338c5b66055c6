//! The table `collapse-bench run` prints: one column per policy, one row
//! per figure, at most 72 columns wide (wider runs are split into several
//! tables of three policies).

use bench_core::metrics::HistSummary;
use bench_core::results::PolicyRun;
use std::fmt::Write;

const LABEL: usize = 28;
const COLUMN: usize = 14;
const POLICIES_PER_TABLE: usize = 3;
/// The widest a table grows before its columns go to the next table.
const TABLE_WIDTH: usize = 72;

/// A duration in ns, human-sized ("812ns", "3.4us", "1.20ms").
pub fn fmt_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0}ns")
    } else if ns < 1e6 {
        format!("{:.2}us", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2}ms", ns / 1e6)
    } else {
        format!("{:.2}s", ns / 1e9)
    }
}

/// The `pml` hold of the collapse itself: the split PMD lock, or the
/// mm-wide page_table_lock when PMD locks are not split.
pub fn pml_hold(run: &PolicyRun) -> Option<&HistSummary> {
    let h = &run.metrics.lock_hold_ns;
    h.get("collapse/pml").or_else(|| h.get("collapse/page_table_lock"))
}

/// Wait of the `pml` neighbours for their lock (contended acquisitions).
pub fn neighbour_wait(run: &PolicyRun) -> Option<&HistSummary> {
    let w = &run.metrics.lock_wait_ns;
    w.get("neighbour/pml").or_else(|| w.get("neighbour/page_table_lock"))
}

type Row = (String, Vec<String>);

fn rows(runs: &[&PolicyRun]) -> Vec<Row> {
    let per_collapse = |r: &PolicyRun, n: u64| {
        if r.collapses == 0 {
            0.0
        } else {
            n as f64 / r.collapses as f64
        }
    };
    let hist = |f: fn(&PolicyRun) -> Option<&HistSummary>, q: fn(&HistSummary) -> u64| -> Vec<String> {
        runs.iter().map(|r| f(r).map_or("-".into(), |h| fmt_ns(q(h) as f64))).collect()
    };
    let mut out: Vec<Row> = vec![
        ("collapses".into(), runs.iter().map(|r| r.collapses.to_string()).collect()),
        ("collapses/s".into(), runs.iter().map(|r| format!("{:.0}", r.collapses_per_s)).collect()),
    ];
    let mut results: Vec<&String> = runs.iter().flat_map(|r| r.metrics.counters.results.keys()).collect();
    results.sort();
    results.dedup();
    for name in results {
        out.push((
            format!("  {name}"),
            runs.iter().map(|r| r.metrics.counters.results.get(name).copied().unwrap_or(0).to_string()).collect(),
        ));
    }
    fn collapse(r: &PolicyRun) -> Option<&HistSummary> {
        r.metrics.collapse_latency_ns.get("all")
    }
    fn ptl(r: &PolicyRun) -> Option<&HistSummary> {
        r.metrics.lock_hold_ns.get("collapse/ptl")
    }
    fn uffd(r: &PolicyRun) -> Option<&HistSummary> {
        r.metrics.op_latency_ns.get("uffd")
    }
    fn faulter(r: &PolicyRun) -> Option<&HistSummary> {
        r.metrics.op_latency_ns.get("faulter")
    }
    out.extend([
        ("collapse latency p50".into(), hist(collapse, |h| h.p50)),
        ("collapse latency p99".into(), hist(collapse, |h| h.p99)),
        ("pml hold p50".into(), hist(pml_hold, |h| h.p50)),
        ("pml hold p99".into(), hist(pml_hold, |h| h.p99)),
        ("pml hold max".into(), hist(pml_hold, |h| h.max)),
        ("ptl hold p99".into(), hist(ptl, |h| h.p99)),
        ("neighbour pml wait p99".into(), hist(neighbour_wait, |h| h.p99)),
        ("uffd op p99".into(), hist(uffd, |h| h.p99)),
        ("faulter op p99".into(), hist(faulter, |h| h.p99)),
    ]);
    let c = |f: fn(&PolicyRun) -> u64, scale: f64| -> Vec<String> {
        runs.iter().map(|r| format!("{:.2}", per_collapse(r, f(r)) * scale)).collect()
    };
    out.extend([
        ("trylock failures/collapse".into(), c(|r| r.metrics.counters.trylock_failures.values().sum(), 1.0)),
        ("recheck passes/collapse".into(), c(|r| r.metrics.counters.recheck_passes, 1.0)),
        ("collapse's flushes/collapse".into(), c(|r| r.metrics.counters.collapse_flushes, 1.0)),
        ("collapse's IPIs/collapse".into(), c(|r| r.metrics.counters.collapse_ipis, 1.0)),
        // Every actor's: readers' faults and swap-outs flush too.
        ("flush_tlb_mm/1000 (all)".into(), c(|r| r.metrics.counters.flush_mm, 1000.0)),
        ("IPIs/collapse (all actors)".into(), c(|r| r.metrics.counters.ipis, 1.0)),
        ("violations".into(), runs.iter().map(|r| r.violations_total.to_string()).collect()),
    ]);
    out
}

fn cell(s: &str, width: usize) -> String {
    let s: String = s.chars().take(width - 1).collect();
    format!("{s:>width$}")
}

/// Render the summary of `runs` (one workload, several policies).
/// A column is headed by the whole policy label, parameters and all (it
/// widens for a long one, and fewer columns then share a table).
pub fn run_table(runs: &[PolicyRun]) -> String {
    let width = runs.iter().map(|r| r.policy.len() + 1).max().unwrap_or(0).max(COLUMN);
    let per_table = ((TABLE_WIDTH - LABEL) / width).clamp(1, POLICIES_PER_TABLE);
    let mut out = String::new();
    for chunk in runs.chunks(per_table) {
        let refs: Vec<&PolicyRun> = chunk.iter().collect();
        let _ = write!(out, "{:<LABEL$}", "");
        for r in &refs {
            let _ = write!(out, "{}", cell(&r.policy, width));
        }
        out.push('\n');
        for (label, values) in rows(&refs) {
            let label: String = label.chars().take(LABEL - 1).collect();
            let _ = write!(out, "{label:<LABEL$}");
            for v in values {
                let _ = write!(out, "{}", cell(&v, width));
            }
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_human_sized() {
        assert_eq!(fmt_ns(812.0), "812ns");
        assert_eq!(fmt_ns(3400.0), "3.40us");
        assert_eq!(fmt_ns(1.2e6), "1.20ms");
        assert_eq!(fmt_ns(2.5e9), "2.50s");
    }

    #[test]
    fn table_fits_72_columns() {
        let run = PolicyRun {
            policy: "v2-flush-bool:recheck_always=true".into(),
            params: serde_json::json!({}),
            workload: "w".into(),
            seed: 1,
            wall_s: 1.0,
            threads: 3,
            cores: 2,
            pinned: false,
            oversubscribed: true,
            collapses: 10,
            collapses_per_s: 10.0,
            metrics: Default::default(),
            locks: Default::default(),
            violations: vec![],
            violations_total: 0,
            ended_by: None,
        };
        let short = PolicyRun { policy: "v1".into(), ..run.clone() };
        let t = run_table(&[short.clone(), short.clone(), short.clone(), short]);
        assert!(t.lines().all(|l| l.len() <= 72), "{t}");
        assert_eq!(t.matches("collapses/s").count(), 2, "split into two tables: {t}");
        // A label with parameters heads its column whole: one per table.
        let t = run_table(&[run.clone(), run]);
        assert!(t.lines().all(|l| l.len() <= 72), "{t}");
        assert_eq!(t.matches("collapses/s").count(), 2, "one column per table: {t}");
        assert_eq!(t.matches("v2-flush-bool:recheck_always=true").count(), 2, "{t}");
    }
}
