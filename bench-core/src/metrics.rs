//! Per-CPU measurements: histograms and counters, merged after a run.
//!
//! Every model CPU owns its [`Metrics`] (no sharing on the hot path); the
//! engine merges them at the end. Histograms are hdrhistogram with two
//! significant digits (1 % resolution), 1 ns to 60 s.

use crate::locks::LockClass;
use crate::role::Role;
use crate::scan::ScanResult;
use enum_map::EnumMap;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use strum::IntoEnumIterator;

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 2).expect("valid histogram bounds")
}

fn record(counts_only: bool, slot: &mut Option<Box<Histogram<u64>>>, v: u64) {
    if !counts_only {
        slot.get_or_insert_with(|| Box::new(new_hist())).saturating_record(v.max(1));
    }
}

/// Event counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Collapse results by `SCAN_*` name.
    pub results: BTreeMap<String, u64>,
    /// Step-2 passes run again after a failed trylock (v2 forms).
    pub recheck_passes: u64,
    /// `spin_trylock()` calls that failed, by lock class.
    pub trylock_failures: BTreeMap<String, u64>,
    /// `flush_tlb_mm()` calls.
    pub flush_mm: u64,
    /// Range flushes (`flush_tlb_range`, `pmdp_collapse_flush`, per-page flushes).
    pub flush_range: u64,
    /// IPIs those flushes would send.
    pub ipis: u64,
    /// Flushes (range and whole-mm) a collapse itself did.
    #[serde(default)]
    pub collapse_flushes: u64,
    /// IPIs the collapses' own flushes sent.
    #[serde(default)]
    pub collapse_ipis: u64,
    /// Operations completed, by role.
    pub ops: BTreeMap<String, u64>,
    /// Tables passed to `pte_free_defer()`.
    pub tables_freed: u64,
    /// mmu-notifier invalidations started.
    pub notifier_ranges: u64,
}

/// What a CPU counts as it runs: [`Counters`] with enum-indexed tables
/// in place of the named maps, so that counting is an increment.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Collapse results.
    pub results: EnumMap<ScanResult, u64>,
    /// Step-2 passes run again after a failed trylock (v2 forms).
    pub recheck_passes: u64,
    /// `spin_trylock()` calls that failed, by lock class.
    pub trylock_failures: EnumMap<LockClass, u64>,
    /// `flush_tlb_mm()` calls.
    pub flush_mm: u64,
    /// Range flushes.
    pub flush_range: u64,
    /// IPIs those flushes would send.
    pub ipis: u64,
    /// Flushes a collapse itself did.
    pub collapse_flushes: u64,
    /// IPIs the collapses' own flushes sent.
    pub collapse_ipis: u64,
    /// Operations completed, by role.
    pub ops: EnumMap<Role, u64>,
    /// Tables passed to `pte_free_defer()`.
    pub tables_freed: u64,
    /// mmu-notifier invalidations started.
    pub notifier_ranges: u64,
}

impl Counts {
    /// Collapses counted, whatever their result.
    pub fn collapses(&self) -> u64 {
        self.results.values().sum()
    }

    fn merge(&mut self, o: &Counts) {
        let add = |a: &mut u64, b: u64| *a += b;
        for (k, v) in &o.results {
            add(&mut self.results[k], *v);
        }
        for (k, v) in &o.trylock_failures {
            add(&mut self.trylock_failures[k], *v);
        }
        for (k, v) in &o.ops {
            add(&mut self.ops[k], *v);
        }
        self.recheck_passes += o.recheck_passes;
        self.flush_mm += o.flush_mm;
        self.flush_range += o.flush_range;
        self.ipis += o.ipis;
        self.collapse_flushes += o.collapse_flushes;
        self.collapse_ipis += o.collapse_ipis;
        self.tables_freed += o.tables_freed;
        self.notifier_ranges += o.notifier_ranges;
    }

    /// As recorded in results files: named maps, with only what was seen.
    pub fn summary(&self) -> Counters {
        fn named<K: enum_map::EnumArray<u64>>(
            map: &EnumMap<K, u64>,
            name: impl Fn(K) -> &'static str,
        ) -> BTreeMap<String, u64> {
            map.iter().filter(|(_, &n)| n > 0).map(|(k, &n)| (name(k).to_owned(), n)).collect()
        }
        Counters {
            results: named(&self.results, ScanResult::name),
            recheck_passes: self.recheck_passes,
            trylock_failures: named(&self.trylock_failures, LockClass::name),
            flush_mm: self.flush_mm,
            flush_range: self.flush_range,
            ipis: self.ipis,
            collapse_flushes: self.collapse_flushes,
            collapse_ipis: self.collapse_ipis,
            ops: named(&self.ops, Role::name),
            tables_freed: self.tables_freed,
            notifier_ranges: self.notifier_ranges,
        }
    }
}

/// A histogram, allocated at its first value.
type Hist = Option<Box<Histogram<u64>>>;

/// One CPU's (or, merged, a whole run's) measurements.
#[derive(Default)]
pub struct Metrics {
    collapse: EnumMap<ScanResult, Hist>,
    hold: EnumMap<Role, EnumMap<LockClass, Hist>>,
    wait: EnumMap<Role, EnumMap<LockClass, Hist>>,
    op: EnumMap<Role, Hist>,
    /// Event counters.
    pub counts: Counts,
    /// Counters only: the latencies are not recorded ([`Metrics::counts_only`]).
    counts_only: bool,
}

impl Metrics {
    /// Measurements that keep the counters and drop the latencies: a
    /// checker's run, whose clock counts scheduling points rather than
    /// time, so its latencies would mean nothing, and whose histograms
    /// (tens of KiB each to allocate and zero) would cost more than the
    /// run itself.
    pub fn counts_only() -> Metrics {
        Metrics { counts_only: true, ..Metrics::default() }
    }

    /// Record a collapse's latency and result.
    pub fn record_collapse(&mut self, result: ScanResult, ns: u64) {
        record(self.counts_only, &mut self.collapse[result], ns.max(1));
        self.counts.results[result] += 1;
    }

    /// Record how long `role` held a lock of `class`.
    #[inline]
    pub fn record_hold(&mut self, role: Role, class: LockClass, ns: u64) {
        record(self.counts_only, &mut self.hold[role][class], ns);
    }

    /// Record how long `role` waited for a lock of `class` (contended only).
    #[inline]
    pub fn record_wait(&mut self, role: Role, class: LockClass, ns: u64) {
        record(self.counts_only, &mut self.wait[role][class], ns);
    }

    /// Record one operation of `role` and its latency.
    pub fn record_op(&mut self, role: Role, ns: u64) {
        record(self.counts_only, &mut self.op[role], ns);
        self.counts.ops[role] += 1;
    }

    /// Fold another CPU's measurements into this one. Taken by value: a
    /// histogram this side lacks is moved over rather than allocated and
    /// added into (a fresh one is tens of KiB to zero, and the checker
    /// merges every CPU of every schedule).
    pub fn merge(&mut self, o: Metrics) {
        let add = |a: &mut Option<Box<Histogram<u64>>>, b: Option<Box<Histogram<u64>>>| match (a.as_mut(), b) {
            (_, None) => {}
            (None, Some(b)) => *a = Some(b),
            (Some(a), Some(b)) => a.add(&*b).expect("same bounds"),
        };
        let Metrics { collapse, mut hold, mut wait, mut op, counts, counts_only: _ } = o;
        for (result, h) in collapse {
            add(&mut self.collapse[result], h);
        }
        for role in Role::iter() {
            for class in LockClass::iter() {
                add(&mut self.hold[role][class], hold[role][class].take());
                add(&mut self.wait[role][class], wait[role][class].take());
            }
            add(&mut self.op[role], op[role].take());
        }
        self.counts.merge(&counts);
    }

    /// Collapse latency over every outcome.
    pub fn collapse_all(&self) -> Option<HistSummary> {
        let mut all = new_hist();
        for h in self.collapse.values().flatten() {
            all.add(&**h).expect("same bounds");
        }
        (!all.is_empty()).then(|| HistSummary::of(&all))
    }

    /// Serializable summary of everything.
    pub fn summary(&self) -> MetricsSummary {
        let mut s = MetricsSummary {
            collapse_latency_ns: self
                .collapse
                .iter()
                .filter_map(|(k, h)| Some((k.name().to_owned(), HistSummary::of(h.as_ref()?))))
                .collect(),
            counters: self.counts.summary(),
            ..Default::default()
        };
        if let Some(all) = self.collapse_all() {
            s.collapse_latency_ns.insert("all".into(), all);
        }
        for role in Role::iter() {
            for class in LockClass::iter() {
                let key = format!("{}/{}", role.name(), class.name());
                if let Some(h) = &self.hold[role][class] {
                    s.lock_hold_ns.insert(key.clone(), HistSummary::of(h));
                }
                if let Some(h) = &self.wait[role][class] {
                    s.lock_wait_ns.insert(key, HistSummary::of(h));
                }
            }
            if let Some(h) = &self.op[role] {
                s.op_latency_ns.insert(role.name().to_owned(), HistSummary::of(h));
            }
        }
        s
    }
}

/// Quantiles of one histogram, in ns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HistSummary {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// (value, fraction at or below) points for plotting a CDF.
    pub cdf: Vec<(u64, f64)>,
}

impl HistSummary {
    /// Summarise a histogram.
    pub fn of(h: &Histogram<u64>) -> HistSummary {
        let mut cdf: Vec<(u64, f64)> = h
            .iter_quantiles(4)
            .map(|v| (h.highest_equivalent(v.value_iterated_to()), v.quantile_iterated_to()))
            .collect();
        cdf.dedup_by_key(|p| p.0);
        HistSummary {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            cdf,
        }
    }
}

/// Everything a run measured, serializable.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsSummary {
    /// Collapse latency by result (`SCAN_*`), plus "all".
    pub collapse_latency_ns: BTreeMap<String, HistSummary>,
    /// Lock hold time by "role/class".
    pub lock_hold_ns: BTreeMap<String, HistSummary>,
    /// Contended lock wait time by "role/class".
    pub lock_wait_ns: BTreeMap<String, HistSummary>,
    /// Operation latency by role.
    pub op_latency_ns: BTreeMap<String, HistSummary>,
    /// Event counters.
    pub counters: Counters,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_up() {
        let mut a = Metrics::default();
        let mut b = Metrics::default();
        a.record_hold(Role::Collapse, LockClass::PmdLock, 100);
        b.record_hold(Role::Collapse, LockClass::PmdLock, 300);
        b.record_collapse(ScanResult::Succeed, 1000);
        b.counts.recheck_passes = 2;
        a.merge(b);
        let s = a.summary();
        assert_eq!(s.lock_hold_ns["collapse/pml"].count, 2);
        assert_eq!(s.collapse_latency_ns["SCAN_SUCCEED"].count, 1);
        assert_eq!(s.counters.results["SCAN_SUCCEED"], 1);
        assert_eq!(s.counters.recheck_passes, 2);
    }
}
