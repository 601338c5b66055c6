//! The plots of `collapse-bench report`, each as SVG and PNG: collapse
//! latency CDFs, `pml` hold histograms and neighbour wait CDFs per workload,
//! throughput with error bars, the scaling sweep over actor threads, the
//! simulated sweep over CPU counts, and every counterexample as a timeline.
//!
//! Text is drawn with DejaVu Sans, embedded in the binary (`reports/fonts/`)
//! and rasterised with ab_glyph: no system font, no fontconfig. Both files of
//! a plot come from the same drawing code, so they show the same thing.

use crate::figures::{collapse_ipis_per_collapse, collapse_latency_p99_us, neighbour_wait_p99_us, pml_hold_p99_us};
use crate::schema::{Cell, CounterexampleDoc, CounterexampleTimeline, CpuSweep, ReportResults, ScalingPoint, Verdict};
use crate::stats::mean_stddev;
use crate::summary::{fmt_ns, neighbour_wait, pml_hold};
use crate::timeline;
use crate::verdicts::shown_counterexamples;
use bench_core::metrics::HistSummary;
use bench_core::results::{PolicyRun, TimelineEvent, TimelineLock};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

/// Width of every plot, px (PNG) or user units (SVG).
pub const WIDTH: u32 = 1024;
/// Height of every plot.
pub const HEIGHT: u32 = 640;

/// DejaVu Sans (Bitstream Vera license, `reports/fonts/LICENSE-DejaVu`).
static DEJAVU_SANS: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
/// The family the font is registered under; plotters' own defaults use it too.
const FAMILY: &str = "sans-serif";

/// A plot could not be drawn or written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlotError(String);

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlotError {}

trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T, PlotError>;
}

impl<T, E: fmt::Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, PlotError> {
        self.map_err(|e| PlotError(format!("{what}: {e}")))
    }
}

/// Register the embedded DejaVu Sans as plotters' `sans-serif` (once; later
/// calls are free). [`render`] does it itself. Any other user of
/// plotters in a process that links this crate must call it first:
/// plotters' `ab_glyph` feature, which this crate turns on, is unified
/// across the build, and with it plotters finds no font it was not given
/// (criterion's plots fail with `FontUnavailable`).
pub fn register_fonts() -> Result<(), PlotError> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            register_font(FAMILY, FontStyle::Normal, DEJAVU_SANS)
                .map_err(|_| "the embedded DejaVuSans.ttf does not parse".to_owned())
        })
        .clone()
        .map_err(PlotError)
}

/// One plot of a report, drawn: its file stem and both documents, in
/// memory. The caller writes `<stem>.svg` and `<stem>.png` where it wants
/// them, and can put the same SVG into a page ([`crate::html`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plot {
    /// The file stem (`throughput`, `latency-cdf-uffd-private`, ...).
    pub stem: String,
    /// The SVG document.
    pub svg: String,
    /// The PNG file.
    pub png: Vec<u8>,
}

/// Draw every plot of `r`, in reading order: throughput, then per
/// workload its latency CDF, `pml` hold histogram and neighbour wait CDF,
/// then the scaling sweep (`scaling-*`), then the CPU sweep (`cpus-*`,
/// where `r` has one), then the counterexample timelines. Plots without
/// data are left out.
pub fn render(r: &ReportResults) -> Result<Vec<Plot>, PlotError> {
    register_fonts()?;
    pages(r)
        .into_iter()
        .map(|page| Ok(Plot { svg: render_svg(&page)?, png: render_png(&page)?, stem: page.stem }))
        .collect()
}

/// [`render`] every plot of `r` into `dir` (which exists) as `<stem>.svg`
/// and `<stem>.png`; return the stems written, in reading order.
pub fn render_all(r: &ReportResults, dir: &Path) -> Result<Vec<String>, PlotError> {
    let mut stems = Vec::new();
    for plot in render(r)? {
        std::fs::write(dir.join(format!("{}.svg", plot.stem)), &plot.svg).ctx(&format!("writing {}.svg", plot.stem))?;
        std::fs::write(dir.join(format!("{}.png", plot.stem)), &plot.png).ctx(&format!("writing {}.png", plot.stem))?;
        stems.push(plot.stem);
    }
    Ok(stems)
}

/// `name` made safe for a file name: ASCII lower case, anything else than
/// `[a-z0-9-]` replaced with `-`.
pub fn file_stem(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' { c } else { '-' })
        .collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

// ---------------------------------------------------------------------------
// What a plot shows, independent of the backend.

/// One rendered file pair.
struct Page {
    stem: String,
    title: String,
    subtitle: String,
    legend: Vec<LegendEntry>,
    footer: Vec<String>,
    body: Body,
}

struct LegendEntry {
    color: RGBColor,
    text: String,
    /// A line swatch (else a filled box).
    line: bool,
}

enum Body {
    Xy(XyPlot),
    Bars(BarPlot),
    Timeline(TimelinePlot),
}

struct Axis {
    desc: String,
    range: Range<f64>,
    scale: Scale,
    ticks: Ticks,
}

/// How an axis maps values to positions, and where its ticks go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scale {
    /// Evenly spaced values, plotters' own ticks.
    Linear,
    /// Logarithmic, ticks at 1-2-5 steps (powers of ten alone over many
    /// decades). The range must be positive.
    Log10,
    /// Logarithmic, ticks at powers of two (CPU counts). The range must be
    /// positive.
    Log2,
}

/// How an axis labels its ticks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ticks {
    /// Plain numbers.
    Number,
    /// Whole numbers only (thread counts).
    Integer,
    /// Values in µs, labelled as durations ("500ns", "2µs", "20ms").
    Time,
}

impl Ticks {
    fn label(self, v: f64) -> String {
        match self {
            Ticks::Number => number(v),
            Ticks::Integer if v.fract() != 0.0 => String::new(),
            Ticks::Integer => format!("{v:.0}"),
            Ticks::Time => duration_us(v),
        }
    }
}

struct XySeries {
    color: RGBColor,
    points: Vec<(f64, f64)>,
    markers: bool,
    /// Fill under the line (histogram outlines).
    fill: bool,
}

struct XyPlot {
    x: Axis,
    y: Axis,
    series: Vec<XySeries>,
}

#[derive(Clone)]
struct Bar {
    group: usize,
    slot: usize,
    color: RGBColor,
    mean: f64,
    stddev: f64,
}

struct BarPlot {
    groups: Vec<String>,
    slots: usize,
    bars: Vec<Bar>,
    y_desc: String,
    /// One panel per group, each on its own scale (groups orders of
    /// magnitude apart), else one shared axis.
    panels: bool,
}

struct HoldBar {
    lane: usize,
    depth: usize,
    from: f64,
    to: f64,
    lock: usize,
    /// Still held at the violation.
    open: bool,
}

/// The events of one CPU at one step.
struct Mark {
    lane: usize,
    step: f64,
    /// First event first.
    labels: Vec<String>,
    last: bool,
}

struct TimelinePlot {
    lanes: Vec<String>,
    x: Range<f64>,
    bars: Vec<HoldBar>,
    marks: Vec<Mark>,
    locks: Vec<String>,
    violation_step: f64,
    oracle: String,
}

// ---------------------------------------------------------------------------
// Colours and number formats.

/// matplotlib's tab10: distinct, and readable on white.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
/// Lock hold bars of the timeline, apart from the policies' colours.
const LOCK_PALETTE: [RGBColor; 4] =
    [RGBColor(70, 130, 180), RGBColor(230, 145, 56), RGBColor(106, 168, 79), RGBColor(153, 102, 204)];
const GREY: RGBColor = RGBColor(100, 100, 100);
const VIOLATION: RGBColor = RGBColor(200, 0, 0);

/// Policies in a fixed order (the base first, then as they first appear
/// in the cells, the scaling sweep and the CPU sweep), so a policy keeps
/// its colour across every plot.
struct Policies(Vec<String>);

impl Policies {
    fn of(r: &ReportResults) -> Policies {
        let mut names: Vec<String> = Vec::new();
        let mut add = |n: &str| {
            if !names.iter().any(|m| m == n) {
                names.push(n.to_owned());
            }
        };
        let sweep_points = r.cpu_sweep.iter().flat_map(|s| &s.points);
        let points = || r.scaling.iter().chain(sweep_points.clone());
        if r.cells.iter().any(|c| c.policy == r.base) || points().any(|p| p.policy == r.base) {
            add(&r.base);
        }
        r.cells.iter().for_each(|c| add(&c.policy));
        points().for_each(|p| add(&p.policy));
        Policies(names)
    }

    fn index(&self, name: &str) -> usize {
        self.0.iter().position(|n| n == name).unwrap_or(0)
    }

    fn color(&self, name: &str) -> RGBColor {
        PALETTE[self.index(name) % PALETTE.len()]
    }
}

fn trim_zeros(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Axis numbers: "0.001", "2.5", "10000".
fn number(v: f64) -> String {
    let a = v.abs();
    let s = if a == 0.0 || a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    };
    trim_zeros(s)
}

/// A tick in µs as a duration: "0", "500ns", "2.5µs", "20ms", "1.5s".
fn duration_us(us: f64) -> String {
    let ns = us * 1e3;
    let a = ns.abs();
    let (v, unit) = if a < 0.5e-3 {
        return "0".into();
    } else if a < 1e3 {
        (ns, "ns")
    } else if a < 1e6 {
        (ns / 1e3, "µs")
    } else if a < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    trim_zeros(format!("{v:.2}")) + unit
}

/// Rates: "950", "12.5k", "1.2M".
fn rate(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        trim_zeros(format!("{:.2}", v / 1e6)) + "M"
    } else if a >= 1e3 {
        trim_zeros(format!("{:.1}", v / 1e3)) + "k"
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        trim_zeros(format!("{v:.1}"))
    }
}

/// A duration for people, with a real micro sign.
fn dur(ns: f64) -> String {
    fmt_ns(ns).replace("us", "µs")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        s.chars().take(max.saturating_sub(1)).collect::<String>() + "…"
    }
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

// ---------------------------------------------------------------------------
// From results to pages.

fn pages(r: &ReportResults) -> Vec<Page> {
    let policies = Policies::of(r);
    let mut workloads: Vec<&str> = Vec::new();
    for c in &r.cells {
        if !workloads.contains(&c.workload.as_str()) {
            workloads.push(&c.workload);
        }
    }
    let mut out = Vec::new();
    out.extend(throughput(r, &policies, &workloads));
    for w in &workloads {
        let cells: Vec<&Cell> = r.cells.iter().filter(|c| c.workload == *w && !c.runs.is_empty()).collect();
        out.extend(latency_cdf(w, &cells, &policies));
        out.extend(pml_hold_hist(w, &cells, &policies));
        out.extend(neighbour_wait_cdf(w, &cells, &policies));
    }
    out.extend(scaling(r, &policies));
    out.extend(r.cpu_sweep.iter().flat_map(|sweep| cpu_sweep(sweep, &policies)));
    out.extend(timelines(r));
    // Stems stay unique even where two names clean up the same.
    let mut seen: Vec<String> = Vec::new();
    for p in &mut out {
        let base = p.stem.clone();
        let mut n = 2;
        while seen.contains(&p.stem) {
            p.stem = format!("{base}-{n}");
            n += 1;
        }
        seen.push(p.stem.clone());
    }
    out
}

/// Which histogram of a run a plot shows.
type HistOf = fn(&PolicyRun) -> Option<&HistSummary>;

/// The run whose `hist` has the median p50 (the lower one of an even
/// count), with how many runs had one.
fn median_run(runs: &[PolicyRun], hist: HistOf) -> Option<(&HistSummary, usize)> {
    let mut hs: Vec<&HistSummary> = runs.iter().filter_map(hist).filter(|h| h.count > 0 && !h.cdf.is_empty()).collect();
    hs.sort_by_key(|h| h.p50);
    let n = hs.len();
    (n > 0).then(|| (hs[(n - 1) / 2], n))
}

fn collapse_latency(run: &PolicyRun) -> Option<&HistSummary> {
    run.metrics.collapse_latency_ns.get("all")
}

/// CDF points in (µs, fraction), ending at (max, 1).
fn cdf_points(h: &HistSummary) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = h.cdf.iter().map(|&(v, f)| (v.max(1) as f64 / 1e3, f.clamp(0.0, 1.0))).collect();
    let max = (h.max.max(1) as f64 / 1e3).max(pts.last().map_or(0.0, |p| p.0));
    if pts.last().is_some_and(|p| p.1 < 1.0) {
        pts.push((max, 1.0));
    }
    pts
}

/// `lo..hi` (both > 0) widened to 1-2-5 steps, for a log axis.
fn log_range(lo: f64, hi: f64) -> Range<f64> {
    let lo = lo.max(1e-3);
    let hi = hi.max(lo);
    let nice = |v: f64, up: bool| {
        let p = 10f64.powf(v.log10().floor());
        let steps = [1.0, 2.0, 5.0, 10.0].map(|m| m * p);
        let eps = 1e-9 * v;
        if up {
            steps.into_iter().find(|&s| s >= v - eps).unwrap_or(10.0 * p)
        } else {
            steps.into_iter().rev().find(|&s| s <= v + eps).unwrap_or(p)
        }
    };
    let (lo, mut hi) = (nice(lo, false), nice(hi, true));
    if hi <= lo * 1.000_001 {
        hi = nice(lo * 1.5, true);
    }
    lo..hi
}

/// How many runs an aggregate came from, for the subtitle.
fn runs_note(counts: &[usize]) -> String {
    let lo = counts.iter().copied().min().unwrap_or(0);
    let hi = counts.iter().copied().max().unwrap_or(0);
    if lo == hi {
        plural(lo, "run")
    } else {
        format!("{lo}-{hi} runs")
    }
}

/// What a CDF page shows.
struct CdfSpec {
    stem: String,
    title: String,
    /// What the samples are, for "no ..." in the legend.
    what: &'static str,
    x_desc: &'static str,
    y_desc: &'static str,
    hist: HistOf,
}

fn cdf_page(spec: CdfSpec, cells: &[&Cell], policies: &Policies) -> Option<Page> {
    let CdfSpec { stem, title, what, x_desc, y_desc, hist } = spec;
    let mut series = Vec::new();
    let mut legend = Vec::new();
    let mut counts = Vec::new();
    let mut lo = f64::INFINITY;
    let mut hi: f64 = 0.0;
    for c in cells {
        let color = policies.color(&c.policy);
        let Some((h, n)) = median_run(&c.runs, hist) else {
            legend.push(LegendEntry { color, text: format!("{}: no {what}", c.policy), line: true });
            continue;
        };
        counts.push(n);
        let pts = cdf_points(h);
        lo = lo.min(pts[0].0);
        hi = hi.max(pts[pts.len() - 1].0);
        legend.push(LegendEntry {
            color,
            text: format!("{}  (p50 {}, p99 {}, n={})", c.policy, dur(h.p50 as f64), dur(h.p99 as f64), h.count),
            line: true,
        });
        series.push(XySeries { color, points: pts, markers: false, fill: false });
    }
    if series.is_empty() {
        return None;
    }
    Some(Page {
        stem,
        title,
        subtitle: format!("each policy's median run (by p50) of {}", runs_note(&counts)),
        legend,
        footer: Vec::new(),
        body: Body::Xy(XyPlot {
            x: Axis { desc: x_desc.into(), range: log_range(lo, hi), scale: Scale::Log10, ticks: Ticks::Time },
            y: Axis { desc: y_desc.into(), range: 0.0..1.02, scale: Scale::Linear, ticks: Ticks::Number },
            series,
        }),
    })
}

fn latency_cdf(workload: &str, cells: &[&Cell], policies: &Policies) -> Option<Page> {
    let spec = CdfSpec {
        stem: format!("latency-cdf-{}", file_stem(workload)),
        title: format!("Collapse latency CDF: {workload}"),
        what: "collapses",
        x_desc: "collapse_pte_mapped_thp() latency (log scale)",
        y_desc: "fraction of collapses ≤ x",
        hist: collapse_latency,
    };
    cdf_page(spec, cells, policies)
}

fn neighbour_wait_cdf(workload: &str, cells: &[&Cell], policies: &Policies) -> Option<Page> {
    let spec = CdfSpec {
        stem: format!("neighbour-wait-{}", file_stem(workload)),
        title: format!("Neighbour pml wait CDF: {workload}"),
        what: "contended waits",
        x_desc: "neighbours' wait for the pml lock, contended acquisitions (log scale)",
        y_desc: "fraction of waits ≤ x",
        hist: neighbour_wait,
    };
    cdf_page(spec, cells, policies)
}

/// The CDF between its points, linear in log(value): what fraction of
/// samples is at most `x` (µs).
fn cdf_at(pts: &[(f64, f64)], x: f64) -> f64 {
    let x = x * (1.0 + 1e-9);
    match pts.iter().position(|p| p.0 > x) {
        None => pts.last().map_or(0.0, |p| p.1),
        Some(0) => 0.0,
        Some(i) => {
            let (a, b) = (pts[i - 1], pts[i]);
            let t = (x.ln() - a.0.ln()) / (b.0.ln() - a.0.ln());
            a.1 + t.clamp(0.0, 1.0) * (b.1 - a.1)
        }
    }
}

fn pml_hold_hist(workload: &str, cells: &[&Cell], policies: &Policies) -> Option<Page> {
    let picked: Vec<(&Cell, Option<(&HistSummary, usize)>)> =
        cells.iter().map(|c| (*c, median_run(&c.runs, pml_hold))).collect();
    let cdfs: Vec<Vec<(f64, f64)>> = picked.iter().filter_map(|(_, m)| m.map(|(h, _)| cdf_points(h))).collect();
    if cdfs.is_empty() {
        return None;
    }
    let lo = cdfs.iter().map(|p| p[0].0).fold(f64::INFINITY, f64::min);
    let hi = cdfs.iter().map(|p| p[p.len() - 1].0).fold(0.0, f64::max);
    let range = log_range(lo, hi);
    let n_decades = (range.end / range.start).log10().max(0.1);
    let per_decade = (40.0 / n_decades).round().clamp(2.0, 10.0);
    let bins = (n_decades * per_decade - 1e-6).ceil() as usize;
    let edge = |k: usize| range.start * 10f64.powf(k as f64 / per_decade);

    let mut series = Vec::new();
    let mut legend = Vec::new();
    let mut counts = Vec::new();
    let mut y_max: f64 = 0.0;
    for (c, m) in picked {
        let color = policies.color(&c.policy);
        let Some((h, n)) = m else {
            legend.push(LegendEntry { color, text: format!("{}: no pml holds", c.policy), line: false });
            continue;
        };
        counts.push(n);
        let pts = cdf_points(h);
        let mut outline = vec![(edge(0), 0.0)];
        for k in 0..bins {
            let f = (cdf_at(&pts, edge(k + 1)) - cdf_at(&pts, edge(k))).max(0.0);
            y_max = y_max.max(f);
            outline.push((edge(k), f));
            outline.push((edge(k + 1), f));
        }
        outline.push((edge(bins), 0.0));
        legend.push(LegendEntry {
            color,
            text: format!("{}  (p50 {}, p99 {}, n={})", c.policy, dur(h.p50 as f64), dur(h.p99 as f64), h.count),
            line: false,
        });
        series.push(XySeries { color, points: outline, markers: false, fill: true });
    }
    Some(Page {
        stem: format!("pml-hold-{}", file_stem(workload)),
        title: format!("pml hold time of the collapse: {workload}"),
        subtitle: format!(
            "each policy's median run (by p50) of {}; {} log-spaced bins per decade",
            runs_note(&counts),
            per_decade
        ),
        legend,
        footer: Vec::new(),
        body: Body::Xy(XyPlot {
            x: Axis {
                desc: "pml (PMD lock) hold time (log scale)".into(),
                range,
                scale: Scale::Log10,
                ticks: Ticks::Time,
            },
            y: Axis {
                desc: "fraction of holds in bin".into(),
                range: 0.0..(y_max * 1.1).max(0.01),
                scale: Scale::Linear,
                ticks: Ticks::Number,
            },
            series,
        }),
    })
}

fn throughput(r: &ReportResults, policies: &Policies, workloads: &[&str]) -> Option<Page> {
    let mut bars = Vec::new();
    let mut groups = Vec::new();
    let mut counts = Vec::new();
    let mut group_max: Vec<f64> = Vec::new();
    for w in workloads {
        let mut any = false;
        let mut top: f64 = 0.0;
        for c in r.cells.iter().filter(|c| c.workload == *w) {
            let xs: Vec<f64> = c.runs.iter().map(|r| r.collapses_per_s).filter(|x| x.is_finite()).collect();
            let Some((mean, stddev)) = mean_stddev(&xs) else { continue };
            counts.push(xs.len());
            top = top.max(mean + stddev);
            any = true;
            bars.push(Bar {
                group: groups.len(),
                slot: policies.index(&c.policy),
                color: policies.color(&c.policy),
                mean,
                stddev,
            });
        }
        if any {
            groups.push((*w).to_owned());
            group_max.push(top);
        }
    }
    if bars.is_empty() {
        return None;
    }
    let hi = group_max.iter().copied().fold(0.0, f64::max);
    let lo = group_max.iter().copied().fold(f64::INFINITY, f64::min);
    let panels = groups.len() > 1 && hi > 4.0 * lo;
    let used: Vec<usize> = {
        let mut s: Vec<usize> = bars.iter().map(|b| b.slot).collect();
        s.sort_unstable();
        s.dedup();
        s
    };
    // Slots only for policies that have a bar somewhere.
    for b in &mut bars {
        b.slot = used.iter().position(|&s| s == b.slot).unwrap_or(0);
    }
    let legend = used
        .iter()
        .map(|&i| LegendEntry { color: PALETTE[i % PALETTE.len()], text: policies.0[i].clone(), line: false })
        .collect();
    Some(Page {
        stem: "throughput".into(),
        title: "Collapse throughput".into(),
        subtitle: format!(
            "mean collapses/s over {} per cell; error bars ± one standard deviation{}",
            runs_note(&counts),
            if panels { "; each workload on its own scale" } else { "" }
        ),
        legend,
        footer: Vec::new(),
        body: Body::Bars(BarPlot { groups, slots: used.len(), bars, y_desc: "collapses per second".into(), panels }),
    })
}

/// What a sweep chart shows: one figure of every point's run, a line per
/// policy.
struct SweepChart {
    /// File stem, after the sweep's prefix (`scaling-`, `cpus-`).
    stem: &'static str,
    /// The figure, for the title ("pml hold p99").
    what: &'static str,
    /// The y axis's description.
    y_desc: &'static str,
    /// How the y axis labels the figure's values.
    y_ticks: Ticks,
    /// The figure of one run (`None`: the run does not have it).
    value: fn(&PolicyRun) -> Option<f64>,
}

/// The collapse's own `pml` hold, p99.
const PML_HOLD_P99: SweepChart = SweepChart {
    stem: "pml-hold",
    what: "pml hold p99",
    y_desc: "collapse's pml hold, p99",
    y_ticks: Ticks::Time,
    value: pml_hold_p99_us,
};

/// The neighbours' contended `pml` wait, p99.
const NEIGHBOUR_WAIT_P99: SweepChart = SweepChart {
    stem: "neighbour-wait",
    what: "Neighbour pml wait p99",
    y_desc: "neighbours' pml wait, p99",
    y_ticks: Ticks::Time,
    value: neighbour_wait_p99_us,
};

/// The charts of the CPU sweep, in order.
const CPU_SWEEP_CHARTS: [SweepChart; 4] = [
    SweepChart {
        stem: "collapse-latency",
        what: "Collapse latency p99",
        y_desc: "collapse_pte_mapped_thp() latency, p99",
        y_ticks: Ticks::Time,
        value: collapse_latency_p99_us,
    },
    PML_HOLD_P99,
    NEIGHBOUR_WAIT_P99,
    SweepChart {
        stem: "ipis",
        what: "IPIs per collapse",
        y_desc: "IPIs of the collapse's own TLB flushes, per collapse",
        y_ticks: Ticks::Number,
        value: collapse_ipis_per_collapse,
    },
];

/// The lines of `chart` over `points`, x = each point's `threads` on a
/// `x_scale` axis (padded so that no marker sits on its edge), one line
/// per policy in its colour, with their legend; `None` where no point has
/// the figure. The y axis is linear from 0, or logarithmic (zeros left
/// out) where the values are more than a factor 100 apart.
fn sweep_lines(
    points: &[&ScalingPoint],
    chart: &SweepChart,
    policies: &Policies,
    x_desc: &str,
    x_scale: Scale,
) -> Option<(Vec<LegendEntry>, Body)> {
    let mut by_policy: BTreeMap<usize, Vec<(f64, f64)>> = BTreeMap::new();
    for p in points {
        let ys: Vec<f64> = p.runs.iter().filter_map(|r| (chart.value)(r)).collect();
        if let Some(y) = crate::stats::MedianCi::of(&ys).map(|c| c.median) {
            by_policy.entry(policies.index(&p.policy)).or_default().push((p.threads as f64, y));
        }
    }
    if by_policy.is_empty() {
        return None;
    }
    let mut series = Vec::new();
    let mut legend = Vec::new();
    let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, 0f64);
    for (i, mut pts) in by_policy {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        for &(x, y) in &pts {
            x_lo = x_lo.min(x);
            x_hi = x_hi.max(x);
            y_hi = y_hi.max(y);
            if y > 0.0 {
                y_lo = y_lo.min(y);
            }
        }
        let color = PALETTE[i % PALETTE.len()];
        legend.push(LegendEntry { color, text: policies.0[i].clone(), line: true });
        series.push(XySeries { color, points: pts, markers: true, fill: false });
    }
    let x_range = match x_scale {
        Scale::Linear => {
            let pad = ((x_hi - x_lo) * 0.05).max(0.5);
            (x_lo - pad)..(x_hi + pad)
        }
        // A third of an octave on either side.
        Scale::Log10 | Scale::Log2 => (x_lo / 1.26)..(x_hi * 1.26),
    };
    let x = Axis { desc: x_desc.into(), range: x_range, scale: x_scale, ticks: Ticks::Integer };
    let y = if y_lo.is_finite() && y_hi / y_lo > 100.0 {
        for s in &mut series {
            s.points.retain(|p| p.1 > 0.0);
        }
        let desc = format!("{} (log scale)", chart.y_desc);
        Axis { desc, range: log_range(y_lo, y_hi), scale: Scale::Log10, ticks: chart.y_ticks }
    } else {
        let range = 0.0..(y_hi * 1.1).max(0.001);
        Axis { desc: chart.y_desc.into(), range, scale: Scale::Linear, ticks: chart.y_ticks }
    };
    Some((legend, Body::Xy(XyPlot { x, y, series })))
}

/// The scaling sweep over actor threads: per workload, the pml hold and
/// the neighbours' wait (`scaling-*`, suffixed with the workload where
/// there are several).
fn scaling(r: &ReportResults, policies: &Policies) -> Vec<Page> {
    let mut workloads: Vec<&str> = Vec::new();
    for p in &r.scaling {
        if !workloads.contains(&p.workload.as_str()) {
            workloads.push(&p.workload);
        }
    }
    let mut out = Vec::new();
    for w in &workloads {
        let points: Vec<&ScalingPoint> = r.scaling.iter().filter(|p| p.workload == *w).collect();
        let mut knobs: Vec<&str> = points.iter().map(|p| p.knob.as_str()).collect();
        knobs.dedup();
        let suffix = if workloads.len() > 1 { format!("-{}", file_stem(w)) } else { String::new() };
        for chart in [PML_HOLD_P99, NEIGHBOUR_WAIT_P99] {
            let Some((legend, body)) = sweep_lines(&points, &chart, policies, "actor threads", Scale::Linear) else {
                continue;
            };
            out.push(Page {
                stem: format!("scaling-{}{suffix}", chart.stem),
                title: format!("{} over actor threads: {w}", chart.what),
                subtitle: format!("one run per point; swept {}", knobs.join(", ")),
                legend,
                footer: Vec::new(),
                body,
            });
        }
    }
    out
}

/// The simulated sweep over CPU counts (`cpus-*`): collapse latency, pml
/// hold, neighbours' wait and the collapse's IPIs, on a log2 CPU axis.
fn cpu_sweep(sweep: &CpuSweep, policies: &Policies) -> Vec<Page> {
    let points: Vec<&ScalingPoint> = sweep.points.iter().collect();
    let x_desc = "simulated CPUs (log2 scale)";
    let mut out = Vec::new();
    for chart in &CPU_SWEEP_CHARTS {
        let Some((legend, body)) = sweep_lines(&points, chart, policies, x_desc, Scale::Log2) else { continue };
        out.push(Page {
            stem: format!("cpus-{}", chart.stem),
            title: format!("{} over CPUs, simulated: {}", chart.what, sweep.workload),
            subtitle: format!(
                "simulation engine, virtual time: one run of {} s per point; costs from the cost model in \
                 results.json",
                sweep.virtual_seconds
            ),
            legend,
            footer: Vec::new(),
            body,
        });
    }
    out
}

/// The counterexamples the text shows ([`shown_counterexamples`]), drawn.
/// A file is named by the policy, and by the workload (and `scope` for an
/// exhaustive check's) where the policy has several.
fn timelines(r: &ReportResults) -> Vec<Page> {
    let with_cx: Vec<&Verdict> = shown_counterexamples(&r.verdicts)
        .into_iter()
        .filter(|v| v.check.first.as_ref().is_some_and(drawable))
        .collect();
    let mut out = Vec::new();
    for v in &with_cx {
        let several = with_cx.iter().filter(|o| o.check.policy == v.check.policy).count() > 1;
        let scope = if v.check.exhaustive.is_some() { "-scope" } else { "" };
        let stem = if several {
            format!("timeline-{}-{}{scope}", file_stem(&v.check.policy), file_stem(&v.workload))
        } else {
            format!("timeline-{}", file_stem(&v.check.policy))
        };
        out.extend(timeline(v, stem));
    }
    out
}

/// Whether a counterexample has a timeline to draw: typed events (a
/// schema-1 file's printed lines are not drawn).
fn drawable(cx: &CounterexampleDoc) -> bool {
    matches!(&cx.timeline, CounterexampleTimeline::Events { events, .. } if !events.is_empty())
}

/// The lock an event takes (true) or drops (false); a failed trylock
/// neither.
fn hold_change(event: &TimelineEvent) -> Option<(bool, &TimelineLock)> {
    match event {
        TimelineEvent::Lock { lock } | TimelineEvent::Trylock { lock, ok: true } => Some((true, lock)),
        TimelineEvent::Unlock { lock } => Some((false, lock)),
        _ => None,
    }
}

fn timeline(v: &Verdict, stem: String) -> Option<Page> {
    let cx = v.check.first.as_ref()?;
    let CounterexampleTimeline::Events { roles, events } = &cx.timeline else { return None };
    let last = events.last()?;
    let lane_count = roles.len().max(events.iter().map(|e| e.cpu as usize + 1).max().unwrap_or(0));
    let lanes: Vec<String> = (0..lane_count)
        .map(|cpu| match roles.get(cpu) {
            Some(role) => format!("CPU{cpu} {role}"),
            None => format!("CPU{cpu}"),
        })
        .collect();
    // Bars are coloured and named by the lock's class; a hold runs from
    // the taking to the dropping of the same lock.
    let mut locks: Vec<String> = Vec::new();
    let mut open: BTreeMap<(usize, &TimelineLock), Vec<f64>> = BTreeMap::new();
    let mut bars: Vec<HoldBar> = Vec::new();
    // The events of each marker: (lane, step, events, whether the last is among them).
    let mut marked: Vec<(usize, f64, Vec<&TimelineEvent>, bool)> = Vec::new();
    let n = events.len();
    for (i, e) in events.iter().enumerate() {
        let lane = e.cpu as usize;
        let step = e.step as f64;
        let is_last = i + 1 == n;
        match hold_change(&e.event) {
            Some((true, lock)) => open.entry((lane, lock)).or_default().push(step),
            Some((false, lock)) => {
                if let Some(from) = open.get_mut(&(lane, lock)).and_then(Vec::pop) {
                    bars.push(hold_bar(&mut locks, lane, lock, from, step, false));
                }
            }
            None => {}
        }
        // Taking and dropping locks are the bars; everything else (a
        // failed trylock too, and the last event) a marker.
        if hold_change(&e.event).is_none() || is_last {
            match marked.last_mut() {
                Some((l, s, at, last)) if *l == lane && *s == step => {
                    at.push(&e.event);
                    *last |= is_last;
                }
                _ => marked.push((lane, step, vec![&e.event], is_last)),
            }
        }
    }
    let marks: Vec<Mark> = marked
        .into_iter()
        .map(|(lane, step, at, last)| Mark {
            lane,
            step,
            labels: squash(&at).iter().map(|l| truncate(l, 30)).collect(),
            last,
        })
        .collect();
    let end = last.step as f64;
    for ((lane, lock), starts) in open {
        for from in starts {
            bars.push(hold_bar(&mut locks, lane, lock, from, end, true));
        }
    }
    // Nested or overlapping holds on one CPU stack up.
    bars.sort_by(|a, b| (a.lane, a.from).partial_cmp(&(b.lane, b.from)).unwrap_or(std::cmp::Ordering::Equal));
    for i in 0..bars.len() {
        let mut depth = 0;
        while bars[..i].iter().any(|b| {
            b.lane == bars[i].lane
                && b.depth == depth
                && b.from < bars[i].to.max(bars[i].from + 0.3)
                && bars[i].from < b.to
        }) {
            depth += 1;
        }
        bars[i].depth = depth;
    }
    let first = events.iter().map(|e| e.step).min().unwrap_or(0) as f64;
    let oracle = cx
        .violations
        .first()
        .map(|v| v.oracle.to_string())
        .or_else(|| v.check.by_oracle.keys().next().cloned())
        .unwrap_or_else(|| "violation".into());
    let mut footer = Vec::new();
    if let Some(v) = cx.violations.first() {
        footer.push(truncate(&format!("{v}").replace('\n', " "), 140));
    }
    footer.push(truncate(&format!("replay: {}", cx.replay), 140));
    let legend = locks
        .iter()
        .enumerate()
        .map(|(i, l)| LegendEntry {
            color: LOCK_PALETTE[i % LOCK_PALETTE.len()],
            text: format!("{l} held"),
            line: false,
        })
        .chain(std::iter::once(LegendEntry { color: VIOLATION, text: format!("{oracle} broken"), line: true }))
        .collect();
    Some(Page {
        stem,
        title: match v.check.exhaustive {
            Some(_) => format!("Counterexample: {} breaks {oracle} ({} scope)", v.check.policy, v.workload),
            None => format!("Counterexample: {} breaks {oracle} ({})", v.check.policy, v.workload),
        },
        subtitle: match v.check.exhaustive {
            Some(_) => format!(
                "one interleaving of the scope, shrunk to {} steps in {} runs (from {} steps, {} runs)",
                cx.steps, cx.runs, cx.original_steps, cx.original_runs
            ),
            None => format!(
                "schedule #{}, shrunk to {} steps in {} runs (from {} steps, {} runs)",
                cx.index, cx.steps, cx.runs, cx.original_steps, cx.original_runs
            ),
        },
        legend,
        footer,
        body: Body::Timeline(TimelinePlot {
            lanes,
            x: (first - 0.8)..(end + 0.8),
            bars,
            marks,
            locks,
            violation_step: end,
            oracle,
        }),
    })
}

/// The labels of one marker's events, a run of three or more of the same
/// numbered kind shown as one ("ptep_clear idx 0..511 (×512)").
fn squash(events: &[&TimelineEvent]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < events.len() {
        if let Some((words, first)) = timeline::numbered(events[i]) {
            let run = events[i..].iter().take_while(|e| timeline::numbered(e).is_some_and(|(w, _)| w == words)).count();
            if run >= 3 {
                let last = timeline::numbered(events[i + run - 1]).map_or(first, |(_, n)| n);
                out.push(format!("{words} {first}..{last} (×{run})"));
                i += run;
                continue;
            }
        }
        out.push(timeline::label(events[i]));
        i += 1;
    }
    out
}

fn hold_bar(locks: &mut Vec<String>, lane: usize, lock: &TimelineLock, from: f64, to: f64, open: bool) -> HoldBar {
    let name = timeline::lock_label(lock);
    let idx = locks.iter().position(|l| l == name).unwrap_or_else(|| {
        locks.push(name.to_owned());
        locks.len() - 1
    });
    HoldBar { lane, depth: 0, from, to, lock: idx, open }
}

// ---------------------------------------------------------------------------
// Drawing, the same for SVG and PNG.

fn render_svg(page: &Page) -> Result<String, PlotError> {
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (WIDTH, HEIGHT)).into_drawing_area();
        draw_page(&root, page)?;
        root.present().ctx("svg")?;
    }
    Ok(s)
}

fn render_png(page: &Page) -> Result<Vec<u8>, PlotError> {
    let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        draw_page(&root, page)?;
        root.present().ctx("bitmap")?;
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, WIDTH, HEIGHT);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().ctx("png")?;
    w.write_image_data(&rgb).ctx("png")?;
    w.finish().ctx("png")?;
    Ok(out)
}

fn font(size: u32) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

const LEGEND_ROW: i32 = 22;

/// Where each legend entry goes (x, row), and how many rows.
fn legend_layout<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> Result<(Vec<(i32, i32)>, i32), PlotError> {
    let (mut x, mut row) = (20, 0);
    let mut at = Vec::new();
    for e in entries {
        let (w, _) = root.estimate_text_size(&e.text, &font(14)).ctx("legend")?;
        let need = 28 + w as i32 + 22;
        if x > 20 && x + need > WIDTH as i32 - 16 {
            x = 20;
            row += 1;
        }
        at.push((x, row));
        x += need;
    }
    Ok((at, if entries.is_empty() { 0 } else { row + 1 }))
}

fn draw_page<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, page: &Page) -> Result<(), PlotError> {
    root.fill(&WHITE).ctx("background")?;
    root.draw(&Text::new(page.title.clone(), (20, 12), font(24))).ctx("title")?;
    root.draw(&Text::new(page.subtitle.clone(), (20, 42), font(14).color(&GREY))).ctx("subtitle")?;
    let (at, rows) = legend_layout(root, &page.legend)?;
    let top = 66;
    for (e, &(x, row)) in page.legend.iter().zip(&at) {
        let y = top + row * LEGEND_ROW + 8;
        let style = e.color.filled();
        if e.line {
            root.draw(&PathElement::new(vec![(x, y), (x + 22, y)], e.color.stroke_width(3))).ctx("legend")?;
        } else {
            root.draw(&Rectangle::new([(x + 4, y - 7), (x + 18, y + 7)], style)).ctx("legend")?;
        }
        root.draw(&Text::new(e.text.clone(), (x + 28, y), font(14).pos(Pos::new(HPos::Left, VPos::Center))))
            .ctx("legend")?;
    }
    let header = top + rows * LEGEND_ROW + 4;
    let footer = page.footer.len() as i32 * 18 + if page.footer.is_empty() { 0 } else { 8 };
    let (_, rest) = root.split_vertically(header);
    let (body, foot) = rest.split_vertically(HEIGHT as i32 - header - footer);
    for (i, line) in page.footer.iter().enumerate() {
        foot.draw(&Text::new(line.clone(), (20, 2 + i as i32 * 18), font(13).color(&GREY))).ctx("footer")?;
    }
    match &page.body {
        Body::Xy(p) => draw_xy(&body, p),
        Body::Bars(b) => draw_bars(root, &body, b),
        Body::Timeline(t) => draw_timeline(root, &body, t),
    }
}

fn draw_xy<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &XyPlot) -> Result<(), PlotError> {
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .margin_right(30)
        .x_label_area_size(50)
        .y_label_area_size(76)
        .build_cartesian_2d(AxisCoord::of(&p.x), AxisCoord::of(&p.y))
        .ctx("chart")?;
    let x_fmt = |v: &f64| p.x.ticks.label(*v);
    let y_fmt = |v: &f64| p.y.ticks.label(*v);
    let integer = |a: &Axis| a.ticks == Ticks::Integer;
    let labels = |a: &Axis| if integer(a) { ((a.range.end - a.range.start) as usize + 1).clamp(2, 12) } else { 12 };
    chart
        .configure_mesh()
        .x_desc(p.x.desc.as_str())
        .y_desc(p.y.desc.as_str())
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .x_labels(labels(&p.x))
        .y_labels(labels(&p.y))
        .x_max_light_lines(if integer(&p.x) { 0 } else { 4 })
        .y_max_light_lines(if integer(&p.y) { 0 } else { 4 })
        .label_style(font(14))
        .axis_desc_style(font(15))
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .ctx("mesh")?;
    for s in &p.series {
        if s.fill {
            chart
                .draw_series(std::iter::once(Polygon::new(s.points.clone(), s.color.mix(0.12).filled())))
                .ctx("fill")?;
        }
        chart.draw_series(LineSeries::new(s.points.iter().copied(), s.color.stroke_width(2))).ctx("line")?;
        if s.markers {
            chart.draw_series(s.points.iter().map(|&pt| Circle::new(pt, 4, s.color.filled()))).ctx("markers")?;
        }
    }
    Ok(())
}

/// An axis as plotters' coordinate: linear (plotters' own mapping and
/// ticks), or logarithmic with ticks at 1-2-5 steps (powers of ten alone
/// over many decades; light lines at every whole multiple of a power of
/// ten) or at powers of two (no light lines).
#[derive(Clone)]
struct AxisCoord {
    range: Range<f64>,
    scale: Scale,
}

impl AxisCoord {
    fn of(axis: &Axis) -> AxisCoord {
        AxisCoord { range: axis.range.clone(), scale: axis.scale }
    }

    fn linear(&self) -> RangedCoordf64 {
        self.range.clone().into()
    }

    /// Every `m * 10^k` in the range, `m` from `mantissas`.
    fn decade_points(&self, mantissas: &[f64]) -> Vec<f64> {
        let Range { start, end } = self.range;
        let mut out = Vec::new();
        let mut p = 10f64.powf(start.log10().floor());
        while p <= end * (1.0 + 1e-9) {
            for m in mantissas {
                let v = m * p;
                if v >= start * (1.0 - 1e-9) && v <= end * (1.0 + 1e-9) {
                    out.push(v);
                }
            }
            p *= 10.0;
        }
        out
    }

    fn log10_key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        let max = hint.max_num_points();
        let sets: &[&[f64]] = if hint.weight().allow_light_points() {
            &[&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], &[1.0]]
        } else {
            &[&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], &[1.0, 2.0, 5.0], &[1.0]]
        };
        for set in sets {
            let pts = self.decade_points(set);
            // Bold points want room: at most about one per 80 px.
            let enough = if hint.weight().allow_light_points() { pts.len() <= max } else { pts.len() * 2 <= max + 2 };
            if enough && pts.len() >= 2 {
                return pts;
            }
        }
        thin_out(self.decade_points(&[1.0]), max)
    }

    /// Every power of two in the range, every second (fourth, ...) one
    /// where there are more than the hint allows.
    fn log2_key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            return Vec::new();
        }
        let Range { start, end } = self.range;
        let (lo, hi) = (start.log2().ceil() as i32, end.log2().floor() as i32);
        thin_out((lo..=hi).map(|k| 2f64.powi(k)).collect(), hint.max_num_points())
    }
}

/// Every `n`-th of `points`, the first kept, so that at most `max` remain.
fn thin_out(points: Vec<f64>, max: usize) -> Vec<f64> {
    let step = points.len().div_ceil(max.max(1));
    points.into_iter().step_by(step.max(1)).collect()
}

impl Ranged for AxisCoord {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        match self.scale {
            Scale::Linear => self.linear().map(v, limit),
            Scale::Log10 | Scale::Log2 => {
                let (lo, hi) = (self.range.start.ln(), self.range.end.ln());
                let f = (v.max(self.range.start * 1e-3).ln() - lo) / (hi - lo);
                limit.0 + ((limit.1 - limit.0) as f64 * f).round() as i32
            }
        }
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        match self.scale {
            Scale::Linear => self.linear().key_points(hint),
            Scale::Log10 => self.log10_key_points(hint),
            Scale::Log2 => self.log2_key_points(hint),
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// Categories on an axis: category `i` spans `i..i+1`, its label at the
/// middle. Reversed, the first category is at the top of a y axis.
#[derive(Clone)]
struct Categories {
    n: usize,
}

impl Ranged for Categories {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let f = v / self.n.max(1) as f64;
        limit.0 + ((limit.1 - limit.0) as f64 * f).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, _hint: H) -> Vec<f64> {
        (0..self.n).map(|i| i as f64 + 0.5).collect()
    }

    fn range(&self) -> Range<f64> {
        0.0..self.n as f64
    }
}

fn category(v: f64, names: &[String], reversed: bool) -> String {
    let i = v.floor().max(0.0) as usize;
    let i = if reversed { names.len().wrapping_sub(1).wrapping_sub(i) } else { i };
    names.get(i).cloned().unwrap_or_default()
}

fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    area: &DrawingArea<DB, Shift>,
    b: &BarPlot,
) -> Result<(), PlotError> {
    if !b.panels {
        return bar_panel(root, area, &b.groups, &b.bars, b.slots, Some(&b.y_desc), "workload");
    }
    let area = area.margin(0, 0, 0, 16);
    let cols = area.split_evenly((1, b.groups.len()));
    for (g, col) in cols.iter().enumerate() {
        let bars: Vec<Bar> = b.bars.iter().filter(|x| x.group == g).map(|x| Bar { group: 0, ..x.clone() }).collect();
        let desc = (g == 0).then_some(b.y_desc.as_str());
        bar_panel(root, col, &b.groups[g..g + 1], &bars, b.slots, desc, "")?;
    }
    Ok(())
}

/// Bars of `groups` on one shared axis.
fn bar_panel<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    area: &DrawingArea<DB, Shift>,
    groups: &[String],
    bars: &[Bar],
    slots: usize,
    y_desc: Option<&str>,
    x_desc: &str,
) -> Result<(), PlotError> {
    let y_max = bars.iter().map(|b| b.mean + b.stddev).fold(0.0, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .margin_right(if y_desc.is_some() { 14 } else { 6 })
        .x_label_area_size(50)
        .y_label_area_size(if y_desc.is_some() { 76 } else { 52 })
        .build_cartesian_2d(Categories { n: groups.len() }, 0.0..y_max)
        .ctx("chart")?;
    let x_fmt = |v: &f64| category(*v, groups, false);
    let y_fmt = |v: &f64| rate(*v);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc.unwrap_or(""))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .y_labels(10)
        .y_max_light_lines(1)
        .label_style(font(14))
        .axis_desc_style(font(15))
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .ctx("mesh")?;
    let slot_w = 0.8 / slots.max(1) as f64;
    for bar in bars {
        let x0 = bar.group as f64 + 0.1 + bar.slot as f64 * slot_w;
        let (l, r, c) = (x0 + 0.1 * slot_w, x0 + 0.9 * slot_w, x0 + 0.5 * slot_w);
        chart.draw_series(std::iter::once(Rectangle::new([(l, 0.0), (r, bar.mean)], bar.color.filled()))).ctx("bar")?;
        let (lo, hi) = ((bar.mean - bar.stddev).max(0.0), bar.mean + bar.stddev);
        if bar.stddev > 0.0 {
            let cap = 0.2 * slot_w;
            let ink = BLACK.stroke_width(2);
            chart
                .draw_series([
                    PathElement::new(vec![(c, lo), (c, hi)], ink),
                    PathElement::new(vec![(c - cap, lo), (c + cap, lo)], ink),
                    PathElement::new(vec![(c - cap, hi), (c + cap, hi)], ink),
                ])
                .ctx("error bar")?;
        }
        // The value above the bar, where it fits.
        let text = rate(bar.mean);
        let (w, _) = root.estimate_text_size(&text, &font(12)).ctx("bar label")?;
        let (pl, _) = chart.backend_coord(&(l, 0.0));
        let (pr, _) = chart.backend_coord(&(r, 0.0));
        if (pr - pl) as u32 >= w + 2 {
            let (px, py) = chart.backend_coord(&(c, hi));
            root.draw(&Text::new(text, (px, py - 4), font(12).pos(Pos::new(HPos::Center, VPos::Bottom))))
                .ctx("bar label")?;
        }
    }
    Ok(())
}

fn draw_timeline<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    area: &DrawingArea<DB, Shift>,
    t: &TimelinePlot,
) -> Result<(), PlotError> {
    let n = t.lanes.len();
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .margin_right(30)
        .x_label_area_size(46)
        .y_label_area_size(140)
        .build_cartesian_2d(t.x.clone(), Categories { n })
        .ctx("chart")?;
    let x_fmt = |v: &f64| if v.fract() == 0.0 { format!("{v:.0}") } else { String::new() };
    let y_fmt = |v: &f64| category(*v, &t.lanes, true);
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("scheduling step")
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .x_labels(20)
        .x_max_light_lines(0)
        .label_style(font(14))
        .axis_desc_style(font(15))
        .bold_line_style(RGBColor(225, 225, 225))
        .light_line_style(RGBColor(245, 245, 245))
        .draw()
        .ctx("mesh")?;
    let px = |step: f64| chart.backend_coord(&(step, 0.0)).0;
    // Lane `i` spans y = n-1-i .. n-i (the first lane on top).
    let lane_px = |i: usize| {
        let top = chart.backend_coord(&(t.x.start, (n - i) as f64)).1;
        let bottom = chart.backend_coord(&(t.x.start, (n - 1 - i) as f64)).1;
        (top, bottom)
    };
    let (left, right) = (px(t.x.start), px(t.x.end));
    let xv = px(t.violation_step);
    let label_style = font(12);
    for lane in 0..n {
        let (top, bottom) = lane_px(lane);
        if lane > 0 {
            root.draw(&PathElement::new(vec![(left, top), (right, top)], RGBColor(200, 200, 200))).ctx("lane")?;
        }
        let lane_h = bottom - top;
        let bar_h = (lane_h / 7).clamp(6, 14);
        let depth = t.bars.iter().filter(|b| b.lane == lane).map(|b| b.depth + 1).max().unwrap_or(0) as i32;
        for b in t.bars.iter().filter(|b| b.lane == lane) {
            let y1 = bottom - 6 - b.depth as i32 * (bar_h + 3);
            let (x0, mut x1) = (px(b.from), px(b.to));
            x1 = x1.max(x0 + 4);
            let color = LOCK_PALETTE[b.lock % LOCK_PALETTE.len()];
            root.draw(&Rectangle::new([(x0, y1 - bar_h), (x1, y1)], color.filled())).ctx("hold")?;
            if b.open {
                // Still held at the violation: an open end.
                root.draw(&Rectangle::new([(x1 - 3, y1 - bar_h), (x1, y1)], VIOLATION.filled())).ctx("hold")?;
            }
            let name = &t.locks[b.lock];
            let (w, _) = root.estimate_text_size(name, &font(11)).ctx("hold")?;
            if x1 - x0 >= w as i32 + 6 && bar_h >= 11 {
                root.draw(&Text::new(
                    name.clone(),
                    (x0 + 3, y1 - bar_h / 2),
                    font(11).color(&WHITE).pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .ctx("hold")?;
            }
        }
        // Markers above the bars, labels stacked above the markers.
        let y_mark = bottom - 6 - depth * (bar_h + 3) - 8;
        let row_h = 15;
        let rows = ((y_mark - 8 - (top + 2)) / row_h).max(0) as usize;
        let mut row_end = vec![i32::MIN; rows];
        for m in t.marks.iter().filter(|m| m.lane == lane) {
            let x = px(m.step);
            let color = if m.last { VIOLATION } else { RGBColor(50, 50, 50) };
            root.draw(&Circle::new((x, y_mark), 4, color.filled())).ctx("marker")?;
            // The step's labels as a block, the first event on top; cut
            // short where the lane has too few rows.
            let mut labels = m.labels.clone();
            if labels.len() > rows && rows > 0 {
                let more = labels.len() - (rows - 1);
                labels.truncate(rows - 1);
                labels.push(format!("+{more} more"));
            }
            let k = labels.len();
            if k == 0 || k > rows {
                continue;
            }
            let mut w = 0;
            for l in &labels {
                w = w.max(root.estimate_text_size(l, &label_style).ctx("marker")?.0 as i32);
            }
            // Labels stay clear of the violation line, the violating event's to its left.
            let x0 = if m.step >= t.violation_step { x - 6 - w } else { (x - 3).min(xv - 4 - w) };
            let x0 = x0.min(right - w - 2).max(left + 2);
            let Some(r) = (0..=rows - k).find(|&r| row_end[r..r + k].iter().all(|&e| e + 6 <= x0)) else { continue };
            row_end[r..r + k].iter_mut().for_each(|e| *e = x0 + w);
            let base = y_mark - 8 - r as i32 * row_h;
            root.draw(&PathElement::new(vec![(x, y_mark - 4), (x, base)], RGBColor(170, 170, 170))).ctx("marker")?;
            for (i, l) in labels.iter().enumerate() {
                let y = base - (k - 1 - i) as i32 * row_h;
                root.draw(&Text::new(
                    l.clone(),
                    (x0, y - 1),
                    label_style.color(&color).pos(Pos::new(HPos::Left, VPos::Bottom)),
                ))
                .ctx("marker")?;
            }
        }
    }
    // The violation.
    let (top, _) = lane_px(0);
    let (_, bottom) = lane_px(n.saturating_sub(1));
    root.draw(&PathElement::new(vec![(xv, top), (xv, bottom)], VIOLATION.stroke_width(2))).ctx("violation")?;
    let (w, h) = root.estimate_text_size(&t.oracle, &font(15)).ctx("violation")?;
    let (w, h) = (w as i32, h as i32);
    let x0 = if xv + 6 + w < right { xv + 6 } else { xv - 6 - w };
    root.draw(&Rectangle::new([(x0 - 3, top + 3), (x0 + w + 3, top + h + 9)], WHITE.mix(0.9).filled()))
        .ctx("violation")?;
    root.draw(&Text::new(t.oracle.clone(), (x0, top + 6), font(15).color(&VIOLATION))).ctx("violation")?;
    Ok(())
}
