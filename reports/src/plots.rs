//! The plots of `collapse-bench report`, each as SVG and PNG: collapse
//! throughput, per workload and way of measuring the collapse latency CDF,
//! the `pml` hold histogram and the neighbour wait CDF, the scaling sweep
//! over its knob, the simulated sweep over CPU counts, and every shown
//! counterexample as a timeline.
//!
//! What a plot compares is measured one way: native runs (wall time) and
//! simulated ones (virtual time) are never drawn on one axis, and every
//! title and axis says which clock its times are on. A figure over
//! repeated runs is their median, with the distribution-free confidence
//! interval of [`MedianCi`] as its error bar.
//!
//! Text is drawn with DejaVu Sans, embedded in the binary (`reports/fonts/`)
//! and rasterised with ab_glyph: no system font, no fontconfig. Both files of
//! a plot come from the same drawing code, so they show the same thing.
//! Text is measured before it is placed: long lines are wrapped, labels that
//! would collide are moved or numbered, nothing is cut.

use crate::figures::{collapse_ipis_per_collapse, collapse_latency_p99_us, neighbour_wait_p99_us, pml_hold_p99_us};
use crate::schema::{
    Cell, CounterexampleDoc, CounterexampleTimeline, CpuSweep, Measured, ReportResults, ScalingPoint, Verdict,
};
use crate::stats::{MedianCi, CONFIDENCE};
use crate::summary::{fmt_ns, neighbour_wait, pml_hold};
use crate::timeline;
use crate::verdicts::shown_counterexamples;
use bench_core::metrics::HistSummary;
use bench_core::results::{PolicyRun, TimelineEvent, TimelineLock};
use bench_core::CachedTranslation;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle, FontTransform};
use std::collections::{BTreeMap, BTreeSet};
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
    /// The file stem (`throughput-native`, `latency-cdf-uffd-private-sim`, ...).
    pub stem: String,
    /// The SVG document.
    pub svg: String,
    /// The PNG file.
    pub png: Vec<u8>,
}

/// Draw every plot of `r`, in reading order: throughput (native cells,
/// then simulated ones), then per workload and way of measuring
/// (`-native`, `-fitted`, `-sim`) its latency CDF, `pml` hold histogram
/// and neighbour wait CDF, then the scaling sweep (`scaling-*`), then the
/// CPU sweep (`cpus-*`, where `r` has one), then the counterexample
/// timelines. Plots without data are left out; stems are unique.
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
    /// Paragraphs under the plot, each wrapped to the page's width.
    footer: Vec<String>,
    body: Body,
}

struct LegendEntry {
    text: String,
    swatch: Swatch,
}

/// What a legend entry shows beside its text.
enum Swatch {
    /// A line as the series draws it (dash, marker).
    Series(SeriesStyle),
    /// A filled box (bars, lock holds).
    Box(RGBColor),
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

impl Axis {
    /// Where `v` is along the axis, as a share of its extent: 0 at its
    /// start, 1 at its end.
    fn fraction(&self, v: f64) -> f64 {
        let Range { start, end } = self.range;
        match self.scale {
            Scale::Linear => (v - start) / (end - start),
            Scale::Log10 | Scale::Log2 => (v.max(start * 1e-3) / start).ln() / (end / start).ln(),
        }
    }
}

/// How an axis maps values to positions, and where its ticks go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scale {
    /// Evenly spaced values, plotters' own ticks.
    Linear,
    /// Logarithmic, ticks at 1-2-5 steps (powers of ten alone over many
    /// decades). The range must be positive.
    Log10,
    /// Logarithmic, ticks at powers of two (thread and CPU counts). The
    /// range must be positive.
    Log2,
}

/// How an axis labels its ticks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ticks {
    /// Plain numbers.
    Number,
    /// Whole numbers only (thread counts).
    Integer,
    /// Values in µs, labelled as plain numbers in one unit (the axis's
    /// description names it).
    Time(TimeUnit),
}

impl Ticks {
    fn label(self, v: f64) -> String {
        match self {
            Ticks::Number => number(v),
            Ticks::Integer if v.fract() != 0.0 => String::new(),
            Ticks::Integer => format!("{v:.0}"),
            Ticks::Time(unit) => number(v / unit.in_us()),
        }
    }
}

/// The unit a time axis is labelled in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum TimeUnit {
    Ns,
    Us,
    Ms,
    S,
}

impl TimeUnit {
    const ALL: [TimeUnit; 4] = [TimeUnit::Ns, TimeUnit::Us, TimeUnit::Ms, TimeUnit::S];

    /// One of it, in µs.
    fn in_us(self) -> f64 {
        match self {
            TimeUnit::Ns => 1e-3,
            TimeUnit::Us => 1.0,
            TimeUnit::Ms => 1e3,
            TimeUnit::S => 1e6,
        }
    }

    fn name(self) -> &'static str {
        match self {
            TimeUnit::Ns => "ns",
            TimeUnit::Us => "µs",
            TimeUnit::Ms => "ms",
            TimeUnit::S => "s",
        }
    }

    /// The largest unit not above `us` (ns for anything smaller).
    fn for_value(us: f64) -> TimeUnit {
        TimeUnit::ALL.into_iter().rev().find(|u| u.in_us() <= us * (1.0 + 1e-9)).unwrap_or(TimeUnit::Ns)
    }
}

/// A time axis over `range` (µs) on `scale`, labelled in the largest unit
/// not above the range's middle (geometric on a log scale, so both ends
/// read as short numbers), described as `what (µs of <clock>[, log
/// scale])`.
fn time_axis(what: &str, clock: Clock, range: Range<f64>, scale: Scale) -> Axis {
    let middle = match scale {
        Scale::Linear => range.end,
        Scale::Log10 | Scale::Log2 => (range.start * range.end).sqrt(),
    };
    let unit = TimeUnit::for_value(middle);
    let log = if scale == Scale::Linear { "" } else { ", log scale" };
    let desc = format!("{what} ({} of {}{log})", unit.name(), clock.words());
    Axis { desc, range, scale, ticks: Ticks::Time(unit) }
}

/// How a series' line and markers look.
#[derive(Clone, Copy, Debug, PartialEq)]
struct SeriesStyle {
    color: RGBColor,
    /// The marker at each point (none for CDFs and histograms).
    shape: Option<Shape>,
    /// A larger, unfilled marker: drawn around an identical series' marker.
    hollow: bool,
    dash: Dash,
}

/// A marker's shape; each policy has its own, so that series stay apart
/// without their colours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Circle,
    Square,
    Triangle,
    Diamond,
}

const SHAPES: [Shape; 4] = [Shape::Circle, Shape::Square, Shape::Triangle, Shape::Diamond];

/// A line's pattern: solid, or (for a series drawn over an identical one)
/// dashed, then dotted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dash {
    Solid,
    Dashed,
    Dotted,
}

/// The error bar of one point: the interval of its median.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Interval {
    x: f64,
    lo: f64,
    hi: f64,
}

struct XySeries {
    /// The policy.
    name: String,
    /// The legend's text.
    label: String,
    style: SeriesStyle,
    points: Vec<(f64, f64)>,
    intervals: Vec<Interval>,
    /// Fill under the line (histogram outlines).
    fill: bool,
}

struct XyPlot {
    x: Axis,
    y: Axis,
    series: Vec<XySeries>,
    /// Series drawn a few pixels apart sideways, so that error bars at one
    /// x do not cover each other.
    dodge: bool,
}

/// One bar: a policy's median, and its interval.
struct Bar {
    slot: usize,
    color: RGBColor,
    ci: MedianCi,
}

/// Bars of one workload, on their own scale.
struct BarPanel {
    /// Above the panel: the workload, then how it was measured.
    title: Vec<String>,
    bars: Vec<Bar>,
}

struct BarPlot {
    panels: Vec<BarPanel>,
    /// Bars per panel (every policy shown has its place in each).
    slots: usize,
    y_desc: String,
}

/// A lock held on one CPU, between two slots of the timeline.
struct HoldBar {
    lane: usize,
    depth: usize,
    /// Position on the x axis, in slots (a slot's centre is `k + 0.5`).
    from: f64,
    to: f64,
    lock: usize,
    /// Still held at the violation.
    open: bool,
}

/// What an event marker stands for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MarkKind {
    Event,
    /// The event the violation was found at.
    Violation,
    /// The fill of a translation the violation names as still cached.
    CachedFill,
}

/// The events of one CPU at one step.
struct Mark {
    lane: usize,
    slot: usize,
    /// First event first.
    labels: Vec<String>,
    kind: MarkKind,
}

struct TimelinePlot {
    /// `(CPU, role)` of each lane, top to bottom.
    lanes: Vec<(u32, String)>,
    /// The scheduling step of each slot of the x axis, in order: only the
    /// steps at which something is shown.
    steps: Vec<u64>,
    bars: Vec<HoldBar>,
    /// In slot order, then lane order.
    marks: Vec<Mark>,
    locks: Vec<String>,
}

// ---------------------------------------------------------------------------
// Colours, styles and number formats.

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
const INK: RGBColor = RGBColor(50, 50, 50);
const VIOLATION: RGBColor = RGBColor(200, 0, 0);

/// Policies in a fixed order (the base first, then as they first appear
/// in the cells, the scaling sweep and the CPU sweep), so a policy keeps
/// its colour and marker across every plot.
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

    /// The policy's colour and marker, a solid line.
    fn style(&self, name: &str, markers: bool) -> SeriesStyle {
        let shape = markers.then_some(SHAPES[self.index(name) % SHAPES.len()]);
        SeriesStyle { color: self.color(name), shape, hollow: false, dash: Dash::Solid }
    }
}

/// How close, as a share of each axis's extent, a series must be to
/// another's line for one to hide the other: about a line's width.
const COINCIDE: f64 = 0.01;

/// Give every series that coincides with an earlier one (one line within
/// [`COINCIDE`] of the other wherever it is drawn, as shares of the axes,
/// so that the one drawn later could hide it) the next dash pattern
/// and a hollow, larger marker, so that every series stays visible where
/// one is drawn over another; return a note naming each set: "v2-a and
/// v2-b identical" where what they draw and the figures their legend gives
/// are equal, "coincide" where they are only close.
fn distinguish_coinciding(series: &mut [XySeries], x: &Axis, y: &Axis) -> Vec<String> {
    let at = |(vx, vy): (f64, f64)| (x.fraction(vx), y.fraction(vy));
    // Every point of `a` within COINCIDE of `b`'s line.
    let on_line = |a: &[(f64, f64)], b: &[(f64, f64)]| {
        let line: Vec<(f64, f64)> = b.iter().map(|&q| at(q)).collect();
        a.iter().all(|&p| distance_to_line(at(p), &line) <= COINCIDE)
    };
    let close = |a: &XySeries, b: &XySeries| on_line(&a.points, &b.points) || on_line(&b.points, &a.points);
    let mut lead_of: Vec<usize> = (0..series.len()).collect();
    for i in 0..series.len() {
        if let Some(j) = (0..i).find(|&j| lead_of[j] == j && close(&series[j], &series[i])) {
            lead_of[i] = j;
        }
    }
    let mut notes = Vec::new();
    for lead in 0..series.len() {
        let members: Vec<usize> = (0..series.len()).filter(|&i| lead_of[i] == lead).collect();
        if members.len() < 2 {
            continue;
        }
        for (k, &i) in members.iter().enumerate().skip(1) {
            series[i].style.dash = if k == 1 { Dash::Dashed } else { Dash::Dotted };
            series[i].style.hollow = true;
        }
        // Equal: the same points and error bars, and the same figures in the legend.
        let figures = |s: &XySeries| s.label.strip_prefix(s.name.as_str()).unwrap_or_default().to_owned();
        let equal = members.iter().all(|&i| {
            let (s, l) = (&series[i], &series[lead]);
            s.points == l.points && s.intervals == l.intervals && figures(s) == figures(l)
        });
        let named: Vec<&str> = members.iter().map(|&i| series[i].name.as_str()).collect();
        let how = match equal {
            true => "identical".to_owned(),
            false => format!("coincide where both are drawn (within {:.0}% of the axes)", COINCIDE * 100.0),
        };
        notes.push(format!(
            "{} {how}: drawn over each other, {}",
            join_words(&named),
            if members.len() == 2 { "solid and dashed" } else { "solid, dashed and dotted" }
        ));
    }
    notes
}

/// How far `p` is from the polyline through `line` (a point's distance to
/// a single point); infinite for no points.
fn distance_to_line(p: (f64, f64), line: &[(f64, f64)]) -> f64 {
    let to_segment = |a: (f64, f64), b: (f64, f64)| {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = dx * dx + dy * dy;
        let t = if len2 == 0.0 { 0.0 } else { (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0) };
        (p.0 - a.0 - t * dx).hypot(p.1 - a.1 - t * dy)
    };
    match line {
        [] => f64::INFINITY,
        [only] => to_segment(*only, *only),
        _ => line.windows(2).map(|w| to_segment(w[0], w[1])).fold(f64::INFINITY, f64::min),
    }
}

/// "a", "a and b", "a, b and c".
fn join_words(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
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

/// A run's length: "80 ms", "1.5 s".
fn run_length(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{} s", number(seconds))
    } else {
        format!("{} ms", number(seconds * 1e3))
    }
}

/// A duration for people, with a real micro sign.
fn dur(ns: f64) -> String {
    fmt_ns(ns).replace("us", "µs")
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// How many runs an aggregate came from: "10 runs", "3-5 runs".
fn runs_note(counts: &[usize]) -> String {
    let lo = counts.iter().copied().min().unwrap_or(0);
    let hi = counts.iter().copied().max().unwrap_or(0);
    if lo == hi {
        plural(lo, "run")
    } else {
        format!("{lo}-{hi} runs")
    }
}

/// What the error bars of `cis` are, for a subtitle: the interval of
/// [`MedianCi`], at the confidence its runs allow (the least of them
/// where they differ).
fn interval_note(cis: &[MedianCi]) -> String {
    let least = cis.iter().map(|c| c.confidence).fold(1.0, f64::min);
    if least >= CONFIDENCE {
        format!("{:.0}% confidence interval of the median (order statistics)", CONFIDENCE * 100.0)
    } else {
        let n = cis.iter().map(|c| c.n).min().unwrap_or(0);
        format!(
            "{:.0}% confidence interval of the median (order statistics; {} allow no more)",
            (least * 100.0).floor(),
            plural(n, "run")
        )
    }
}

/// The clock a measurement's times and rates are on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Clock {
    Wall,
    Virtual,
}

impl Clock {
    fn of(measured: &Measured) -> Clock {
        match measured {
            Measured::Native | Measured::Fitted { .. } => Clock::Wall,
            Measured::Simulated => Clock::Virtual,
        }
    }

    fn words(self) -> &'static str {
        match self {
            Clock::Wall => "wall time",
            Clock::Virtual => "virtual time",
        }
    }
}

/// How `measured` ran, for a title: "native", "fitted to the cores",
/// "simulated".
fn measured_title(measured: &Measured) -> &'static str {
    match measured {
        Measured::Native => "native",
        Measured::Fitted { .. } => "native, fitted to the cores",
        Measured::Simulated => "simulated",
    }
}

/// How `measured` ran, for a subtitle, with its clock and how long a run
/// lasted: "native, fitted to the cores (collapse+uffd); wall time, 80 ms
/// a run".
fn measured_note(measured: &Measured, run_seconds: Option<f64>) -> String {
    let how = match measured {
        Measured::Simulated => "simulated, every actor on its own virtual CPU".to_owned(),
        other => other.describe(),
    };
    let clock = Clock::of(measured).words();
    match run_seconds {
        Some(s) => format!("{how}; {clock}, {} a run", run_length(s)),
        None => format!("{how}; {clock}"),
    }
}

/// How long a run measured as `measured` lasted in `r`.
fn run_seconds(r: &ReportResults, measured: &Measured) -> Option<f64> {
    match measured {
        Measured::Native | Measured::Fitted { .. } => Some(r.run_seconds),
        Measured::Simulated => r.sim_seconds,
    }
}

// ---------------------------------------------------------------------------
// From results to pages.

fn pages(r: &ReportResults) -> Vec<Page> {
    let policies = Policies::of(r);
    let mut out = Vec::new();
    out.extend(throughput(r, &policies));
    let mut groups: Vec<(&str, &Measured)> = Vec::new();
    for c in &r.cells {
        if !groups.contains(&(c.workload.as_str(), &c.measured)) {
            groups.push((&c.workload, &c.measured));
        }
    }
    for (workload, measured) in groups {
        let cells: Vec<&Cell> = r
            .cells
            .iter()
            .filter(|c| c.workload == workload && c.measured == *measured && !c.runs.is_empty())
            .collect();
        let group = CellGroup { workload, measured, run_seconds: run_seconds(r, measured), cells };
        out.extend(latency_cdf(&group, &policies));
        out.extend(pml_hold_hist(&group, &policies));
        out.extend(neighbour_wait_cdf(&group, &policies));
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

/// The cells of one workload measured one way: one plot each of the
/// per-workload kinds.
struct CellGroup<'a> {
    workload: &'a str,
    measured: &'a Measured,
    run_seconds: Option<f64>,
    cells: Vec<&'a Cell>,
}

impl CellGroup<'_> {
    /// `<kind>-<workload>-<native|fitted|sim>`.
    fn stem(&self, kind: &str) -> String {
        format!("{kind}-{}-{}", file_stem(self.workload), self.measured.tag())
    }

    /// `<what>: <workload>, <how measured>`.
    fn title(&self, what: &str) -> String {
        format!("{what}: {}, {}", self.workload, measured_title(self.measured))
    }

    fn clock(&self) -> Clock {
        Clock::of(self.measured)
    }
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

/// The legend's text for a policy's histogram: "v1  (p50 2µs, p99 9µs, n=5000)".
fn hist_label(policy: &str, h: &HistSummary) -> String {
    format!("{policy}  (p50 {}, p99 {}, n={})", dur(h.p50 as f64), dur(h.p99 as f64), h.count)
}

/// The series of a page, told apart where they coincide on its axes
/// ([`distinguish_coinciding`]), with their legend (then `missing`, the
/// entries of policies without data) and notes.
fn series_legend(
    mut series: Vec<XySeries>,
    missing: Vec<LegendEntry>,
    x: &Axis,
    y: &Axis,
) -> (Vec<XySeries>, Vec<LegendEntry>, Vec<String>) {
    let notes = distinguish_coinciding(&mut series, x, y);
    let legend = series
        .iter()
        .map(|s| LegendEntry { text: s.label.clone(), swatch: Swatch::Series(s.style) })
        .chain(missing)
        .collect();
    (series, legend, notes)
}

/// What a CDF page shows.
struct CdfSpec {
    kind: &'static str,
    title: &'static str,
    /// What the samples are, for "no ..." in the legend.
    what: &'static str,
    x_what: &'static str,
    y_desc: &'static str,
    hist: HistOf,
}

fn cdf_page(spec: CdfSpec, group: &CellGroup<'_>, policies: &Policies) -> Option<Page> {
    let mut series = Vec::new();
    let mut missing = Vec::new();
    let mut counts = Vec::new();
    let mut lo = f64::INFINITY;
    let mut hi: f64 = 0.0;
    for c in &group.cells {
        let style = policies.style(&c.policy, false);
        let Some((h, n)) = median_run(&c.runs, spec.hist) else {
            missing
                .push(LegendEntry { text: format!("{}: no {}", c.policy, spec.what), swatch: Swatch::Series(style) });
            continue;
        };
        counts.push(n);
        let pts = cdf_points(h);
        lo = lo.min(pts[0].0);
        hi = hi.max(pts[pts.len() - 1].0);
        let (name, label) = (c.policy.clone(), hist_label(&c.policy, h));
        series.push(XySeries { name, label, style, points: pts, intervals: vec![], fill: false });
    }
    if series.is_empty() {
        return None;
    }
    let x = time_axis(spec.x_what, group.clock(), log_range(lo, hi), Scale::Log10);
    let y = Axis { desc: spec.y_desc.into(), range: 0.0..1.02, scale: Scale::Linear, ticks: Ticks::Number };
    let (series, legend, footer) = series_legend(series, missing, &x, &y);
    Some(Page {
        stem: group.stem(spec.kind),
        title: group.title(spec.title),
        subtitle: format!(
            "{}; each policy's median run (by p50) of {}",
            measured_note(group.measured, group.run_seconds),
            runs_note(&counts)
        ),
        legend,
        footer,
        body: Body::Xy(XyPlot { x, y, series, dodge: false }),
    })
}

fn latency_cdf(group: &CellGroup<'_>, policies: &Policies) -> Option<Page> {
    let spec = CdfSpec {
        kind: "latency-cdf",
        title: "Collapse latency CDF",
        what: "collapses",
        x_what: "collapse_pte_mapped_thp() latency",
        y_desc: "fraction of collapses at most x",
        hist: collapse_latency,
    };
    cdf_page(spec, group, policies)
}

fn neighbour_wait_cdf(group: &CellGroup<'_>, policies: &Policies) -> Option<Page> {
    let spec = CdfSpec {
        kind: "neighbour-wait",
        title: "Neighbour pml wait CDF",
        what: "contended waits",
        x_what: "neighbours' wait for the pml lock, contended acquisitions",
        y_desc: "fraction of contended waits at most x",
        hist: neighbour_wait,
    };
    cdf_page(spec, group, policies)
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

fn pml_hold_hist(group: &CellGroup<'_>, policies: &Policies) -> Option<Page> {
    let picked: Vec<(&Cell, Option<(&HistSummary, usize)>)> =
        group.cells.iter().map(|c| (*c, median_run(&c.runs, pml_hold))).collect();
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
    let mut missing = Vec::new();
    let mut counts = Vec::new();
    let mut y_max: f64 = 0.0;
    for (c, m) in picked {
        let style = policies.style(&c.policy, false);
        let Some((h, n)) = m else {
            missing.push(LegendEntry { text: format!("{}: no pml holds", c.policy), swatch: Swatch::Series(style) });
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
        let (name, label) = (c.policy.clone(), hist_label(&c.policy, h));
        series.push(XySeries { name, label, style, points: outline, intervals: vec![], fill: true });
    }
    let x = time_axis("pml (PMD lock) hold time of one collapse", group.clock(), range, Scale::Log10);
    let y = Axis {
        desc: "fraction of the holds in the bin".into(),
        range: 0.0..(y_max * 1.1).max(0.01),
        scale: Scale::Linear,
        ticks: Ticks::Number,
    };
    let (series, legend, footer) = series_legend(series, missing, &x, &y);
    Some(Page {
        stem: group.stem("pml-hold"),
        title: group.title("pml hold time of the collapse"),
        subtitle: format!(
            "{}; each policy's median run (by p50) of {}; {} log-spaced bins per decade, from the run's quantiles",
            measured_note(group.measured, group.run_seconds),
            runs_note(&counts),
            per_decade
        ),
        legend,
        footer,
        body: Body::Xy(XyPlot { x, y, series, dodge: false }),
    })
}

/// Collapse throughput: one page for the cells measured on native threads
/// (wall time) and one for the simulated cells (virtual time), never the
/// two on one axis; a panel per workload, each on its own scale.
fn throughput(r: &ReportResults, policies: &Policies) -> Vec<Page> {
    let mut out = Vec::new();
    for clock in [Clock::Wall, Clock::Virtual] {
        let cells: Vec<&Cell> = r.cells.iter().filter(|c| Clock::of(&c.measured) == clock).collect();
        let mut panels: Vec<BarPanel> = Vec::new();
        let mut keys: Vec<(&str, &Measured)> = Vec::new();
        let mut used: BTreeSet<usize> = BTreeSet::new();
        let mut cis = Vec::new();
        for c in &cells {
            let xs: Vec<f64> = c.runs.iter().map(|r| r.collapses_per_s).filter(|x| x.is_finite()).collect();
            let Some(ci) = MedianCi::of(&xs) else { continue };
            let key = (c.workload.as_str(), &c.measured);
            let at = match keys.iter().position(|k| *k == key) {
                Some(at) => at,
                None => {
                    keys.push(key);
                    let mut title = vec![c.workload.clone()];
                    match &c.measured {
                        Measured::Fitted { actors } => title.push(format!("fitted: {actors}")),
                        Measured::Native if clock == Clock::Wall => title.push("native".into()),
                        _ => {}
                    }
                    panels.push(BarPanel { title, bars: Vec::new() });
                    panels.len() - 1
                }
            };
            let slot = policies.index(&c.policy);
            used.insert(slot);
            cis.push(ci);
            panels[at].bars.push(Bar { slot, color: policies.color(&c.policy), ci });
        }
        if panels.is_empty() {
            continue;
        }
        // A policy missing from a panel is said why: its failures there.
        let mut footer = Vec::new();
        for (&(workload, _), panel) in keys.iter().zip(&panels) {
            for &slot in used.iter().filter(|&&s| panel.bars.iter().all(|b| b.slot != s)) {
                let policy = &policies.0[slot];
                let failed: Vec<String> = r
                    .failures
                    .iter()
                    .filter(|f| &f.policy == policy && f.workload == workload)
                    .map(|f| f.summary())
                    .collect();
                match failed.is_empty() {
                    true => footer.push(format!("No bar for {policy} on {workload}: no runs.")),
                    false => footer.push(format!("No bar for {policy} on {workload}: {}", failed.join("; "))),
                }
            }
        }
        // Places only for policies that have a bar somewhere.
        let used: Vec<usize> = used.into_iter().collect();
        for bar in panels.iter_mut().flat_map(|p| &mut p.bars) {
            bar.slot = used.iter().position(|&s| s == bar.slot).unwrap_or(0);
        }
        let legend = used
            .iter()
            .map(|&i| LegendEntry { text: policies.0[i].clone(), swatch: Swatch::Box(PALETTE[i % PALETTE.len()]) })
            .collect();
        let counts: Vec<usize> = cis.iter().map(|c| c.n).collect();
        let (stem, title, how) = match clock {
            Clock::Wall => (
                "throughput-native",
                "Collapse throughput, native threads: per second of wall time",
                format!("native threads, pinned; wall time, {} a run", run_length(r.run_seconds)),
            ),
            Clock::Virtual => (
                "throughput-sim",
                "Collapse throughput, simulated: per second of virtual time",
                measured_note(&Measured::Simulated, r.sim_seconds),
            ),
        };
        out.push(Page {
            stem: stem.into(),
            title: title.into(),
            subtitle: format!(
                "{how}. Bar: the median of {} per cell; error bar: its {}; each workload on its own scale",
                runs_note(&counts),
                interval_note(&cis)
            ),
            legend,
            footer,
            body: Body::Bars(BarPlot {
                panels,
                slots: used.len(),
                y_desc: format!("collapses per second of {}", clock.words()),
            }),
        });
    }
    out
}

/// What a sweep chart shows: one figure of every point's runs, a line per
/// policy through the medians, an error bar at each.
struct SweepChart {
    /// File stem, after the sweep's prefix (`scaling-`, `cpus-`).
    stem: &'static str,
    /// The figure, for the title ("pml hold p99").
    what: &'static str,
    /// The y axis's description, before its unit.
    y_what: &'static str,
    /// A duration (µs), or a count.
    time: bool,
    /// The figure of one run (`None`: the run does not have it).
    value: fn(&PolicyRun) -> Option<f64>,
}

/// The collapse's own `pml` hold, p99.
const PML_HOLD_P99: SweepChart = SweepChart {
    stem: "pml-hold",
    what: "pml hold p99",
    y_what: "collapse's pml hold, p99",
    time: true,
    value: pml_hold_p99_us,
};

/// The neighbours' contended `pml` wait, p99.
const NEIGHBOUR_WAIT_P99: SweepChart = SweepChart {
    stem: "neighbour-wait",
    what: "Neighbour pml wait p99",
    y_what: "neighbours' contended pml wait, p99",
    time: true,
    value: neighbour_wait_p99_us,
};

/// The charts of the CPU sweep, in order.
const CPU_SWEEP_CHARTS: [SweepChart; 4] = [
    SweepChart {
        stem: "collapse-latency",
        what: "Collapse latency p99",
        y_what: "collapse_pte_mapped_thp() latency, p99",
        time: true,
        value: collapse_latency_p99_us,
    },
    PML_HOLD_P99,
    NEIGHBOUR_WAIT_P99,
    SweepChart {
        stem: "ipis",
        what: "IPIs per collapse",
        y_what: "IPIs of the collapse's own TLB flushes (count per collapse)",
        time: false,
        value: collapse_ipis_per_collapse,
    },
];

/// An error bar shorter than this share of its axis is hidden by its
/// marker.
const HIDDEN_BAR: f64 = 0.02;

/// A swept knob in words, for the x axis: what its value counts.
fn knob_words(knob: &str) -> String {
    match knob {
        "threads.neighbours" => "pml neighbours".into(),
        "cpus" => "simulated CPUs".into(),
        _ => match knob.strip_prefix("threads.") {
            Some(kind) => format!("{kind} threads"),
            None => knob.into(),
        },
    }
}

/// A sweep chart drawn: the body, its legend, notes and intervals.
struct SweepLines {
    legend: Vec<LegendEntry>,
    body: Body,
    notes: Vec<String>,
    cis: Vec<MedianCi>,
}

/// The lines of `chart` over `points` (one knob, measured one way): x =
/// each point's knob value, on a log2 axis where the values are powers of
/// two spanning a factor 4 or more, else a linear one; one line per policy
/// through the medians of its runs, an error bar from the interval of each
/// ([`MedianCi`]); `None` where no point has the figure. The y axis is
/// linear from 0, or logarithmic (zeros left out) where the medians are
/// more than a factor 100 apart.
fn sweep_lines(points: &[&ScalingPoint], chart: &SweepChart, policies: &Policies) -> Option<SweepLines> {
    // Each policy's (knob value, interval of the median) at every point.
    let mut by_policy: BTreeMap<usize, Vec<(f64, MedianCi)>> = BTreeMap::new();
    let mut cis = Vec::new();
    for p in points {
        let ys: Vec<f64> = p.runs.iter().filter_map(|r| (chart.value)(r)).filter(|y| y.is_finite()).collect();
        if let Some(ci) = MedianCi::of(&ys) {
            by_policy.entry(policies.index(&p.policy)).or_default().push((f64::from(p.value), ci));
            cis.push(ci);
        }
    }
    if by_policy.is_empty() {
        return None;
    }
    let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, 0f64);
    let mut series = Vec::new();
    for (i, mut at) in by_policy {
        at.sort_by(|a, b| a.0.total_cmp(&b.0));
        let pts: Vec<(f64, f64)> = at.iter().map(|(x, ci)| (*x, ci.median)).collect();
        let intervals: Vec<Interval> = at.iter().map(|&(x, ci)| Interval { x, lo: ci.lo, hi: ci.hi }).collect();
        for &(x, y) in &pts {
            x_lo = x_lo.min(x);
            x_hi = x_hi.max(x);
            if y > 0.0 {
                y_lo = y_lo.min(y);
            }
        }
        y_hi = y_hi.max(intervals.iter().map(|v| v.hi).fold(0.0, f64::max));
        let name = policies.0[i].clone();
        let style = policies.style(&name, true);
        series.push(XySeries { label: name.clone(), name, style, points: pts, intervals, fill: false });
    }
    let knob = &points[0].knob;
    let powers_of_two = points.iter().all(|p| p.value.is_power_of_two());
    let (x_scale, x_range, log_note) = if powers_of_two && x_lo > 0.0 && x_hi >= 4.0 * x_lo {
        // A third of an octave on either side.
        (Scale::Log2, (x_lo / 1.26)..(x_hi * 1.26), ", log2 scale")
    } else {
        let pad = ((x_hi - x_lo) * 0.05).max(0.5);
        (Scale::Linear, (x_lo - pad)..(x_hi + pad), "")
    };
    let x = Axis {
        desc: format!("{} ({knob}{log_note})", knob_words(knob)),
        range: x_range,
        scale: x_scale,
        ticks: Ticks::Integer,
    };
    let clock = Clock::of(&points[0].measured);
    let log_y = y_lo.is_finite() && y_hi / y_lo > 100.0;
    let (y_scale, y_range) = if log_y {
        for s in &mut series {
            s.points.retain(|p| p.1 > 0.0);
            let xs: Vec<f64> = s.points.iter().map(|p| p.0).collect();
            s.intervals.retain(|v| xs.contains(&v.x));
        }
        (Scale::Log10, log_range(y_lo, y_hi))
    } else {
        (Scale::Linear, 0.0..(y_hi * 1.1).max(0.001))
    };
    let y = if chart.time {
        time_axis(chart.y_what, clock, y_range, y_scale)
    } else {
        let log = if log_y { " (log scale)" } else { "" };
        Axis { desc: format!("{}{log}", chart.y_what), range: y_range, scale: y_scale, ticks: Ticks::Number }
    };
    let (series, legend, mut notes) = series_legend(series, Vec::new(), &x, &y);
    let short = |v: &Interval| y.fraction(v.hi) - y.fraction(v.lo) < HIDDEN_BAR;
    if series.iter().flat_map(|s| &s.intervals).any(short) {
        notes.push("Error bars shorter than a marker are hidden behind it (runs that agree).".into());
    }
    Some(SweepLines { legend, body: Body::Xy(XyPlot { x, y, series, dodge: true }), notes, cis })
}

/// The subtitle of a sweep's page: how its points were measured, and
/// what the markers and error bars are.
fn sweep_subtitle(how: &str, lines: &SweepLines) -> String {
    let counts: Vec<usize> = lines.cis.iter().map(|c| c.n).collect();
    format!(
        "{how}. Marker: the median of {} per point, each run its own seed; error bar: its {}",
        runs_note(&counts),
        interval_note(&lines.cis)
    )
}

/// The scaling sweep: per workload, knob and way of measuring, the pml
/// hold and the neighbours' wait over the knob's values
/// (`scaling-<chart>-<native|sim>`, the workload added where there are
/// several).
fn scaling(r: &ReportResults, policies: &Policies) -> Vec<Page> {
    let mut groups: Vec<(&str, &str, &Measured)> = Vec::new();
    for p in &r.scaling {
        if !groups.contains(&(p.workload.as_str(), p.knob.as_str(), &p.measured)) {
            groups.push((&p.workload, &p.knob, &p.measured));
        }
    }
    let several_workloads = groups.iter().any(|g| g.0 != groups[0].0);
    let mut out = Vec::new();
    for &(workload, knob, measured) in &groups {
        let points: Vec<&ScalingPoint> =
            r.scaling.iter().filter(|p| p.workload == workload && p.knob == knob && p.measured == *measured).collect();
        let suffix = if several_workloads { format!("-{}", file_stem(workload)) } else { String::new() };
        for chart in [PML_HOLD_P99, NEIGHBOUR_WAIT_P99] {
            let Some(lines) = sweep_lines(&points, &chart, policies) else { continue };
            out.push(Page {
                stem: format!("scaling-{}-{}{suffix}", chart.stem, measured.tag()),
                title: format!("{} over {}: {workload}, {}", chart.what, knob_words(knob), measured_title(measured)),
                subtitle: sweep_subtitle(&measured_note(measured, run_seconds(r, measured)), &lines),
                legend: lines.legend,
                footer: lines.notes,
                body: lines.body,
            });
        }
    }
    out
}

/// The simulated sweep over CPU counts (`cpus-*`): collapse latency, pml
/// hold, neighbours' wait and the collapse's IPIs, on a log2 CPU axis.
fn cpu_sweep(sweep: &CpuSweep, policies: &Policies) -> Vec<Page> {
    let points: Vec<&ScalingPoint> = sweep.points.iter().collect();
    let how = format!(
        "simulated, the workload's actors scaled to the CPUs; virtual time, {} a run; costs from the cost model in \
         results.json",
        run_length(sweep.virtual_seconds)
    );
    let mut out = Vec::new();
    for chart in &CPU_SWEEP_CHARTS {
        let Some(lines) = sweep_lines(&points, chart, policies) else { continue };
        out.push(Page {
            stem: format!("cpus-{}", chart.stem),
            title: format!("{} over CPUs, simulated: {}", chart.what, sweep.workload),
            subtitle: sweep_subtitle(&how, &lines),
            legend: lines.legend,
            footer: lines.notes,
            body: lines.body,
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

/// A counterexample's timeline: the events the text timeline shows
/// ([`timeline::shown`]: from the collapse's last prologue, what touches
/// what it touches, the fill of each translation a violation names) and
/// the violating event; a lane per CPU among them or named by a violation
/// (the CPU that found it, each CPU whose TLB it says still caches a
/// translation); a slot per scheduling step at which something is shown;
/// lock holds as bars, every other event as a labelled marker; under it
/// every violation in full and the replay command.
fn timeline(v: &Verdict, stem: String) -> Option<Page> {
    let cx = v.check.first.as_ref()?;
    let CounterexampleTimeline::Events { roles, events } = &cx.timeline else { return None };
    let last = events.len().checked_sub(1)?;
    let cached: Vec<CachedTranslation> = cx.violations.iter().flat_map(|x| x.cached.iter().copied()).collect();
    let view = timeline::Timeline {
        events,
        roles,
        cpu: cx.violations.first().and_then(|x| x.cpu),
        marker: String::new(),
        cached: &cached,
    };
    let mut shown = timeline::shown(&view);
    if shown.last() != Some(&last) {
        shown.push(last);
    }
    let fills = timeline::cached_fills(&view);
    let cached_fills: BTreeSet<usize> = fills.iter().flatten().copied().collect();
    let cpus: BTreeSet<u32> = shown
        .iter()
        .map(|&i| events[i].cpu)
        .chain(cx.violations.iter().filter_map(|x| x.cpu))
        .chain(cached.iter().map(|c| c.cpu))
        .collect();
    let lanes: Vec<(u32, String)> = cpus
        .iter()
        .map(|&cpu| (cpu, roles.get(cpu as usize).map_or_else(|| "?".to_owned(), |r| r.name().to_owned())))
        .collect();
    let lane_of = |cpu: u32| cpus.iter().position(|&c| c == cpu).unwrap_or(0);
    let steps: Vec<u64> = shown.iter().map(|&i| events[i].step).collect::<BTreeSet<_>>().into_iter().collect();
    let slot_of = |step: u64| steps.iter().position(|&s| s == step).unwrap_or(0);
    // Bars are coloured and named by the lock's class; a hold runs from
    // the taking to the dropping of the same lock.
    let mut locks: Vec<String> = Vec::new();
    let mut open: BTreeMap<(usize, &TimelineLock), Vec<f64>> = BTreeMap::new();
    let mut bars: Vec<HoldBar> = Vec::new();
    // The events of each marker: (lane, slot, events, kind).
    let mut marked: Vec<(usize, usize, Vec<&TimelineEvent>, MarkKind)> = Vec::new();
    for &i in &shown {
        let e = &events[i];
        let lane = lane_of(e.cpu);
        let slot = slot_of(e.step);
        let centre = slot as f64 + 0.5;
        match hold_change(&e.event) {
            Some((true, lock)) => open.entry((lane, lock)).or_default().push(centre),
            Some((false, lock)) => {
                if let Some(from) = open.get_mut(&(lane, lock)).and_then(Vec::pop) {
                    bars.push(hold_bar(&mut locks, lane, lock, from, centre, false));
                }
            }
            None => {}
        }
        // Taking and dropping locks are the bars; everything else (a
        // failed trylock too, and the last event) a marker.
        let kind = if i == last {
            MarkKind::Violation
        } else if cached_fills.contains(&i) {
            MarkKind::CachedFill
        } else {
            MarkKind::Event
        };
        if hold_change(&e.event).is_none() || kind != MarkKind::Event {
            match marked.iter_mut().find(|(l, s, _, _)| *l == lane && *s == slot) {
                Some((_, _, at, k)) => {
                    at.push(&e.event);
                    if kind != MarkKind::Event {
                        *k = kind;
                    }
                }
                None => marked.push((lane, slot, vec![&e.event], kind)),
            }
        }
    }
    marked.sort_by_key(|m| (m.1, m.0));
    let mut labels: Vec<Vec<String>> = marked.iter().map(|(_, _, at, _)| squash(at)).collect();
    fold_runs(&marked, &mut labels);
    let marks: Vec<Mark> = marked
        .into_iter()
        .zip(labels)
        .map(|((lane, slot, _, kind), mut labels)| {
            if kind == MarkKind::CachedFill {
                if let Some(last) = labels.last_mut() {
                    last.push_str(" (still cached)");
                }
            }
            Mark { lane, slot, labels, kind }
        })
        .collect();
    // A hold still open at the violation runs to the end of the last slot
    // (drawn to the violation line).
    let end = steps.len() as f64;
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
    let oracle = cx
        .violations
        .first()
        .map(|v| v.oracle.to_string())
        .or_else(|| v.check.by_oracle.keys().next().cloned())
        .unwrap_or_else(|| "violation".into());
    let mut footer: Vec<String> = cx.violations.iter().map(|v| v.to_string()).collect();
    for (c, _) in cached.iter().zip(&fills).filter(|(_, fill)| fill.is_none()) {
        footer.push(format!("CPU{}'s TLB entry for {:#x} was filled before the replay's first event", c.cpu, c.vpn));
    }
    footer.push(format!("replay: {}", cx.replay));
    let mut legend: Vec<LegendEntry> = locks
        .iter()
        .enumerate()
        .map(|(i, l)| LegendEntry {
            text: format!("{l} held"),
            swatch: Swatch::Box(LOCK_PALETTE[i % LOCK_PALETTE.len()]),
        })
        .collect();
    if bars.iter().any(|b| b.open) {
        legend.push(LegendEntry { text: "still held at the violation".into(), swatch: Swatch::Box(VIOLATION) });
    }
    let violation_line = SeriesStyle { color: VIOLATION, shape: None, hollow: false, dash: Dash::Solid };
    legend.push(LegendEntry {
        text: format!("{oracle} found at step {}", steps.last().copied().unwrap_or(0)),
        swatch: Swatch::Series(violation_line),
    });
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
        body: Body::Timeline(TimelinePlot { lanes, steps, bars, marks, locks }),
    })
}

/// Label a run of three or more markers in a row on one lane, each a
/// single event of the same numbered kind (a UFFDIO_COPY of many pages:
/// `install anon idx 330`, `331`, ...), once, at its first marker:
/// "install anon idx 330..341 (×12, one per marker)"; the others keep no
/// label. `marked` are the markers' (lane, slot, events, kind) in slot
/// order, `labels` their labels.
fn fold_runs(marked: &[(usize, usize, Vec<&TimelineEvent>, MarkKind)], labels: &mut [Vec<String>]) {
    let single = |i: usize| match &marked[i] {
        (_, _, at, MarkKind::Event) if at.len() == 1 => timeline::numbered(at[0]),
        _ => None,
    };
    let lanes: BTreeSet<usize> = marked.iter().map(|m| m.0).collect();
    for lane in lanes {
        let on_lane: Vec<usize> = (0..marked.len()).filter(|&i| marked[i].0 == lane).collect();
        let mut k = 0;
        while k < on_lane.len() {
            let Some((words, first)) = single(on_lane[k]) else {
                k += 1;
                continue;
            };
            let run = on_lane[k..].iter().take_while(|&&i| single(i).is_some_and(|(w, _)| w == words)).count();
            if run >= 3 {
                let last = single(on_lane[k + run - 1]).map_or(first, |(_, n)| n);
                labels[on_lane[k]] = vec![format!("{words} {first}..{last} (×{run}, one per marker)")];
                on_lane[k + 1..k + run].iter().for_each(|&i| labels[i].clear());
            }
            k += run;
        }
    }
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

/// Left and right margin of the page's text.
const MARGIN: i32 = 20;
const LEGEND_ROW: i32 = 22;
/// Width of a legend swatch.
const SWATCH: i32 = 34;
const FOOTER_LINE: i32 = 17;

/// How wide `text` is in `style`, px.
fn text_width<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    text: &str,
    style: &TextStyle,
) -> Result<i32, PlotError> {
    Ok(root.estimate_text_size(text, style).ctx("measuring text")?.0 as i32)
}

/// `text` broken at spaces into lines no wider than `width` px in `style`;
/// a word wider than a line is broken after the last `+`, `-`, `/`, `.`,
/// `,`, `:` or `=` that fits, else between characters. Nothing is left
/// out.
fn wrap_text<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    text: &str,
    style: &TextStyle,
    width: i32,
) -> Result<Vec<String>, PlotError> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let joined = if line.is_empty() { word.to_owned() } else { format!("{line} {word}") };
        if text_width(root, &joined, style)? <= width {
            line = joined;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        let mut rest: Vec<char> = word.chars().collect();
        loop {
            let mut take = rest.len();
            while take > 1 && text_width(root, &rest[..take].iter().collect::<String>(), style)? > width {
                take -= 1;
            }
            if take == rest.len() {
                line = rest.iter().collect();
                break;
            }
            if let Some(after) = rest[..take].iter().rposition(|c| "+-/.,:=".contains(*c)).filter(|&at| at > 0) {
                take = after + 1;
            }
            lines.push(rest[..take].iter().collect());
            rest.drain(..take);
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    Ok(lines)
}

/// Where each legend entry goes (x, row), and how many rows.
fn legend_layout<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> Result<(Vec<(i32, i32)>, i32), PlotError> {
    let (mut x, mut row) = (MARGIN, 0);
    let mut at = Vec::new();
    for e in entries {
        let need = SWATCH + 6 + text_width(root, &e.text, &font(14))? + 22;
        if x > MARGIN && x + need > WIDTH as i32 - MARGIN {
            x = MARGIN;
            row += 1;
        }
        at.push((x, row));
        x += need;
    }
    Ok((at, if entries.is_empty() { 0 } else { row + 1 }))
}

/// A polyline through `points` (pixels) in `color`, `width` px wide, dashed
/// as `dash` says.
fn draw_polyline<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    points: Vec<(i32, i32)>,
    color: RGBColor,
    width: u32,
    dash: Dash,
) -> Result<(), PlotError> {
    let ink = color.stroke_width(width);
    match dash {
        Dash::Solid => root.draw(&PathElement::new(points, ink)),
        Dash::Dashed => root.draw(&DashedPathElement::new(points, 10, 6, ink)),
        Dash::Dotted => root.draw(&DashedPathElement::new(points, 3, 5, ink)),
    }
    .ctx("line")
}

/// The marker of `style` at `(x, y)` (pixels), if it has one: filled, or
/// hollow and larger (drawn around an identical series' marker).
fn draw_marker<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    style: &SeriesStyle,
) -> Result<(), PlotError> {
    let Some(shape) = style.shape else { return Ok(()) };
    let r = if style.hollow { 8 } else { 5 };
    let ink = if style.hollow { style.color.stroke_width(2) } else { style.color.filled() };
    let outline = |pts: Vec<(i32, i32)>| {
        if style.hollow {
            let mut closed = pts.clone();
            closed.push(pts[0]);
            root.draw(&PathElement::new(closed, ink))
        } else {
            root.draw(&Polygon::new(pts, ink))
        }
    };
    match shape {
        Shape::Circle => root.draw(&Circle::new((x, y), r - 1, ink)),
        Shape::Square => root.draw(&Rectangle::new([(x - r + 1, y - r + 1), (x + r - 1, y + r - 1)], ink)),
        Shape::Triangle => outline(vec![(x, y - r), (x + r, y + r - 1), (x - r, y + r - 1)]),
        Shape::Diamond => outline(vec![(x, y - r - 1), (x + r + 1, y), (x, y + r + 1), (x - r - 1, y)]),
    }
    .ctx("marker")
}

/// An error bar at `x` from `y_lo` to `y_hi` (pixels), with caps `cap`
/// pixels to either side, in `color`: the one drawing of every interval,
/// bars' and lines' alike.
fn draw_error_bar<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    x: i32,
    (y_lo, y_hi): (i32, i32),
    cap: i32,
    color: RGBColor,
) -> Result<(), PlotError> {
    let ink = color.stroke_width(2);
    root.draw(&PathElement::new(vec![(x, y_lo), (x, y_hi)], ink)).ctx("error bar")?;
    for y in [y_lo, y_hi] {
        root.draw(&PathElement::new(vec![(x - cap, y), (x + cap, y)], ink)).ctx("error bar")?;
    }
    Ok(())
}

fn draw_swatch<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    swatch: &Swatch,
) -> Result<(), PlotError> {
    match swatch {
        Swatch::Series(style) => {
            draw_polyline(root, vec![(x, y), (x + SWATCH, y)], style.color, 3, style.dash)?;
            draw_marker(root, (x + SWATCH / 2, y), style)
        }
        Swatch::Box(color) => root
            .draw(&Rectangle::new([(x + SWATCH / 2 - 7, y - 7), (x + SWATCH / 2 + 7, y + 7)], color.filled()))
            .ctx("legend"),
    }
}

/// Draw `lines` from `(x, y)` down, `step` px apart; return the y below them.
fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    lines: &[String],
    (x, y): (i32, i32),
    step: i32,
    style: &TextStyle,
) -> Result<i32, PlotError> {
    for (i, line) in lines.iter().enumerate() {
        root.draw(&Text::new(line.clone(), (x, y + i as i32 * step), style.clone())).ctx("text")?;
    }
    Ok(y + lines.len() as i32 * step)
}

fn draw_page<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, page: &Page) -> Result<(), PlotError> {
    root.fill(&WHITE).ctx("background")?;
    let width = WIDTH as i32 - 2 * MARGIN;
    let title = wrap_text(root, &page.title, &font(22), width)?;
    let mut y = draw_lines(root, &title, (MARGIN, 12), 28, &font(22))? + 4;
    let subtitle_style = font(14).color(&GREY);
    let subtitle = wrap_text(root, &page.subtitle, &subtitle_style, width)?;
    y = draw_lines(root, &subtitle, (MARGIN, y), 18, &subtitle_style)? + 8;
    let (at, rows) = legend_layout(root, &page.legend)?;
    for (e, &(x, row)) in page.legend.iter().zip(&at) {
        let ly = y + row * LEGEND_ROW + 8;
        draw_swatch(root, (x, ly), &e.swatch)?;
        root.draw(&Text::new(e.text.clone(), (x + SWATCH + 6, ly), font(14).pos(Pos::new(HPos::Left, VPos::Center))))
            .ctx("legend")?;
    }
    let header = y + rows * LEGEND_ROW + 4;
    match &page.body {
        Body::Xy(p) => draw_xy(root, &footer_and_body(root, &page.footer, header)?, p),
        Body::Bars(b) => draw_bars(root, &footer_and_body(root, &page.footer, header)?, b),
        Body::Timeline(t) => {
            // Labels that do not fit become numbered notes under the
            // plot, which take room from it: lay it out again until the
            // notes it needs are the notes it has.
            let mut forced: BTreeSet<usize> = BTreeSet::new();
            loop {
                let paragraphs: Vec<String> = page.footer.iter().cloned().chain(footnotes(t, &forced)).collect();
                let lines = footer_lines(root, &paragraphs)?;
                let (body, _) = split_page(root, header, &lines);
                let geometry = TimelineGeometry::of(&body, t);
                let labels = place_labels(root, &geometry, t, &forced)?;
                if labels.footnoted == forced {
                    footer_and_body(root, &paragraphs, header)?;
                    return draw_timeline(root, &geometry, t, &labels);
                }
                forced = labels.footnoted;
            }
        }
    }
}

fn footer_style() -> TextStyle<'static> {
    font(13).color(&GREY)
}

/// The footer's `paragraphs`, wrapped to the page's width.
fn footer_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    paragraphs: &[String],
) -> Result<Vec<String>, PlotError> {
    let mut lines = Vec::new();
    for paragraph in paragraphs {
        lines.extend(wrap_text(root, paragraph, &footer_style(), WIDTH as i32 - 2 * MARGIN)?);
    }
    Ok(lines)
}

/// The page below a header `header` px high, split into the body and a
/// footer of `lines`.
fn split_page<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    header: i32,
    lines: &[String],
) -> (DrawingArea<DB, Shift>, DrawingArea<DB, Shift>) {
    let footer_h = if lines.is_empty() { 0 } else { lines.len() as i32 * FOOTER_LINE + 8 };
    let (_, rest) = root.split_vertically(header);
    rest.split_vertically(HEIGHT as i32 - header - footer_h)
}

/// Draw the footer of `paragraphs` at the page's foot; return the body's
/// area, between the header and the footer.
fn footer_and_body<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    paragraphs: &[String],
    header: i32,
) -> Result<DrawingArea<DB, Shift>, PlotError> {
    let lines = footer_lines(root, paragraphs)?;
    let (body, foot) = split_page(root, header, &lines);
    draw_lines(&foot, &lines, (MARGIN, 2), FOOTER_LINE, &footer_style())?;
    Ok(body)
}

fn draw_xy<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    area: &DrawingArea<DB, Shift>,
    p: &XyPlot,
) -> Result<(), PlotError> {
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
    for s in p.series.iter().filter(|s| s.fill) {
        chart
            .draw_series(std::iter::once(Polygon::new(s.points.clone(), s.style.color.mix(0.12).filled())))
            .ctx("fill")?;
    }
    // Lines are drawn in pixels, kept inside the plotting area.
    let (x_px, y_px) = chart.plotting_area().get_pixel_range();
    let inside = |(x, y): (i32, i32)| (x.clamp(x_px.start, x_px.end), y.clamp(y_px.start, y_px.end));
    let n = p.series.len() as i32;
    for (i, s) in p.series.iter().enumerate() {
        // Series side by side, DODGE px apart, around the true x.
        let shift = if p.dodge { (2 * i as i32 - (n - 1)) * DODGE / 2 } else { 0 };
        let at = |x: f64, y: f64| {
            let (px, py) = chart.backend_coord(&(x, y));
            inside((px + shift, py))
        };
        draw_polyline(root, s.points.iter().map(|&(x, y)| at(x, y)).collect(), s.style.color, 2, s.style.dash)?;
        for v in &s.intervals {
            let (x, lo) = at(v.x, v.lo);
            let (_, hi) = at(v.x, v.hi);
            draw_error_bar(root, x, (lo, hi), 5, s.style.color)?;
        }
        for &(x, y) in &s.points {
            draw_marker(root, at(x, y), &s.style)?;
        }
    }
    Ok(())
}

/// How far apart, px, the series of a dodged plot are drawn.
const DODGE: i32 = 6;

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

/// The bars' panels side by side, the y axis's description once at their
/// left.
fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    area: &DrawingArea<DB, Shift>,
    b: &BarPlot,
) -> Result<(), PlotError> {
    let (desc, panels) = area.split_horizontally(30);
    let (w, h) = desc.dim_in_pixel();
    desc.draw(&Text::new(
        b.y_desc.clone(),
        (w as i32 / 2, h as i32 / 2),
        font(15).transform(FontTransform::Rotate270).pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .ctx("axis")?;
    let panels_area = panels.margin(0, 0, 0, 4);
    let cols = panels_area.split_evenly((1, b.panels.len()));
    // Every panel's title wrapped to the room over its bars; the bars
    // start at one height under the tallest title.
    let mut titles = Vec::new();
    for (panel, col) in b.panels.iter().zip(&cols) {
        let w = col.dim_in_pixel().0 as i32;
        let mut title = Vec::new();
        for (i, line) in panel.title.iter().enumerate() {
            let style = if i == 0 { font(13) } else { font(12).color(&GREY) };
            let lines = wrap_text(root, line, &style, 2 * (w - panel_centre(w)) - 4)?;
            title.extend(lines.into_iter().map(|l| (l, style.clone())));
        }
        titles.push(title);
    }
    let head = titles.iter().map(Vec::len).max().unwrap_or(0) as i32 * 16 + 8;
    for ((panel, col), title) in b.panels.iter().zip(&cols).zip(&titles) {
        bar_panel(root, col, (title, head), panel, b.slots)?;
    }
    Ok(())
}

/// Where, px from a panel's left edge, the middle of its bars is.
fn panel_centre(width: i32) -> i32 {
    PANEL_LEFT + PANEL_Y_LABELS + (width - PANEL_LEFT - PANEL_Y_LABELS - PANEL_RIGHT) / 2
}

/// Width of a bar panel's y labels, and its margins left and right.
const PANEL_Y_LABELS: i32 = 44;
const PANEL_LEFT: i32 = 4;
const PANEL_RIGHT: i32 = 6;

/// One workload's bars under its title (lines and their styles, in a
/// head `head_h` px high), the title centred over the bars; the medians as
/// bars from 0, each one's value written up inside it where it fits; the
/// intervals as error bars.
fn bar_panel<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    area: &DrawingArea<DB, Shift>,
    (title, head_h): (&[(String, TextStyle)], i32),
    panel: &BarPanel,
    slots: usize,
) -> Result<(), PlotError> {
    let centre = panel_centre(area.dim_in_pixel().0 as i32);
    let (head, plot) = area.split_vertically(head_h);
    for (i, (line, style)) in title.iter().enumerate() {
        let style = style.pos(Pos::new(HPos::Center, VPos::Top));
        head.draw(&Text::new(line.clone(), (centre, 4 + i as i32 * 16), style)).ctx("panel title")?;
    }
    let y_max = panel.bars.iter().map(|b| b.ci.hi).fold(0.0, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.08 } else { 1.0 };
    let mut chart = ChartBuilder::on(&plot)
        .margin_left(PANEL_LEFT as u32)
        .margin_right(PANEL_RIGHT as u32)
        .margin_bottom(8)
        .x_label_area_size(0)
        .y_label_area_size(PANEL_Y_LABELS as u32)
        .build_cartesian_2d(0.0..1.0, 0.0..y_max)
        .ctx("chart")?;
    let y_fmt = |v: &f64| rate(*v);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_label_formatter(&y_fmt)
        .y_labels(8)
        .y_max_light_lines(1)
        .label_style(font(12))
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .ctx("mesh")?;
    let (left, base) = chart.backend_coord(&(0.0, 0.0));
    let (right, _) = chart.backend_coord(&(1.0, 0.0));
    root.draw(&PathElement::new(vec![(left, base), (right, base)], BLACK.stroke_width(1))).ctx("axis")?;
    let slot_w = 0.9 / slots.max(1) as f64;
    for bar in &panel.bars {
        let x0 = 0.05 + bar.slot as f64 * slot_w;
        let (l, r, c) = (x0 + 0.12 * slot_w, x0 + 0.88 * slot_w, x0 + 0.5 * slot_w);
        chart
            .draw_series(std::iter::once(Rectangle::new([(l, 0.0), (r, bar.ci.median)], bar.color.filled())))
            .ctx("bar")?;
        let (px, top) = chart.backend_coord(&(c, bar.ci.median));
        let (_, lo) = chart.backend_coord(&(c, bar.ci.lo));
        let (_, hi) = chart.backend_coord(&(c, bar.ci.hi));
        let (pl, _) = chart.backend_coord(&(l, 0.0));
        let (pr, _) = chart.backend_coord(&(r, 0.0));
        let text = rate(bar.ci.median);
        let label = font(11).color(&WHITE);
        let (tw, th) = root.estimate_text_size(&text, &label).ctx("bar label")?;
        // Up from the bar's foot, clear of the error bar's lower end.
        if tw as i32 + 8 <= base - lo.max(top) && th as i32 + 2 <= pr - pl {
            let style = label.transform(FontTransform::Rotate270).pos(Pos::new(HPos::Left, VPos::Center));
            root.draw(&Text::new(text, (px, base - 4), style)).ctx("bar label")?;
        }
        draw_error_bar(root, px, (lo, hi), ((pr - pl) / 4).clamp(2, 6), BLACK)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The timeline, laid out in pixels.

/// Left of the lanes: their names.
const LANE_NAMES: i32 = 92;
/// A label row's height, and the labels' font size.
const ROW: i32 = 15;
const LABEL_FONT: u32 = 12;
/// Room right of the last slot, px: the violation line is in its middle.
const TAIL: i32 = 24;
/// Free room kept around a label, px.
const GAP: i32 = 10;
/// How far apart, px, the left edges of two blocks of labels one on top
/// of the other must be.
const ALIGN: i32 = 24;

/// Where a timeline goes on the page, in pixels.
struct TimelineGeometry {
    left: i32,
    right: i32,
    top: i32,
    bottom: i32,
    /// Width of a slot.
    slot_w: f64,
    /// The top of each lane, then the bottom of the last.
    bounds: Vec<i32>,
    /// Lock bar height, and the bars' stacking depth on each lane.
    bar_h: i32,
    depth: Vec<i32>,
}

impl TimelineGeometry {
    fn of<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, t: &TimelinePlot) -> TimelineGeometry {
        let (x, y) = area.get_pixel_range();
        let lanes = t.lanes.len().max(1);
        let (top, bottom) = (y.start + 8, y.end - 46);
        let depth: Vec<i32> = (0..lanes)
            .map(|lane| t.bars.iter().filter(|b| b.lane == lane).map(|b| b.depth as i32 + 1).max().unwrap_or(0))
            .collect();
        let bar_h = ((bottom - top) / lanes as i32 / 7).clamp(6, 12);
        // Each lane has room for its bars, its markers and a row of
        // labels where it has any; what is left goes to the lanes by the
        // lines of labels they have (up to eight), one share each besides.
        let lines: Vec<usize> =
            (0..lanes).map(|lane| t.marks.iter().filter(|m| m.lane == lane).map(|m| m.labels.len()).sum()).collect();
        let base: Vec<i32> =
            (0..lanes).map(|l| 30 + depth[l] * (bar_h + 3) + if lines[l] > 0 { ROW + 4 } else { 0 }).collect();
        let need: i32 = base.iter().sum();
        let base: Vec<i32> = match need > bottom - top {
            true => base.iter().map(|b| b * (bottom - top) / need).collect(),
            false => base,
        };
        let spare = f64::from((bottom - top - base.iter().sum::<i32>()).max(0));
        let shares: Vec<f64> = lines.iter().map(|&n| 1.0 + n.min(8) as f64).collect();
        let total: f64 = shares.iter().sum();
        let mut bounds = vec![top];
        for (b, share) in base.iter().zip(&shares) {
            let last = *bounds.last().unwrap_or(&top);
            bounds.push(last + b + (spare * share / total).floor() as i32);
        }
        TimelineGeometry {
            left: x.start + LANE_NAMES,
            right: x.end - MARGIN,
            top,
            bottom,
            slot_w: f64::from(x.end - MARGIN - TAIL - x.start - LANE_NAMES) / t.steps.len().max(1) as f64,
            bounds,
            bar_h,
            depth,
        }
    }

    fn lanes(&self) -> usize {
        self.bounds.len() - 1
    }

    /// The x of a position in slots.
    fn x(&self, slots: f64) -> i32 {
        self.left + (self.slot_w * slots).round() as i32
    }

    /// The x of the violation line: past the last slot, in the tail.
    fn violation_x(&self) -> i32 {
        self.right - TAIL / 2
    }

    /// Top and bottom of a lane.
    fn lane(&self, lane: usize) -> (i32, i32) {
        (self.bounds[lane], self.bounds[lane + 1])
    }

    /// The lower edge of a hold bar at `depth` on `lane`.
    fn bar_bottom(&self, lane: usize, depth: usize) -> i32 {
        self.lane(lane).1 - 6 - depth as i32 * (self.bar_h + 3)
    }

    /// The y of a lane's markers: above its bars.
    fn marker_y(&self, lane: usize) -> i32 {
        self.lane(lane).1 - 6 - self.depth[lane] * (self.bar_h + 3) - 9
    }

    /// Label rows above a lane's markers; row 0 is the lowest.
    fn rows(&self, lane: usize) -> usize {
        ((self.marker_y(lane) - 8 - (self.lane(lane).0 + 2)) / ROW).max(0) as usize
    }

    /// The baseline of label row `row` on `lane`.
    fn row_y(&self, lane: usize, row: usize) -> i32 {
        self.marker_y(lane) - 9 - row as i32 * ROW
    }
}

/// Where each marker's labels go.
struct LabelPlaces {
    /// Per mark: the left edge of its block of labels and its lowest row,
    /// or `None` where they went to a numbered note under the plot.
    at: Vec<Option<(i32, usize)>>,
    /// The marks whose labels are notes.
    footnoted: BTreeSet<usize>,
}

/// Place each mark's labels as a block above it, its first label on top,
/// the marks from the last to the first: in the lowest row where the
/// block, and the leader line from the marker up to it, touch no other
/// block, leader or the violation line; where the block does not start
/// within [`ALIGN`] px of a block it touches in the row just below or above
/// (so that two blocks never read as one); where it covers the x of no
/// marker still to be placed (in the lowest row never, as that would
/// leave the marker no room; in the others where it can); the block
/// starting at the marker if it can, else as little left of it as it must
/// (it always spans the marker's x). A mark in `forced`, or whose block
/// fits nowhere, gets a number instead and its labels go under the plot
/// ([`footnotes`]).
fn place_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    g: &TimelineGeometry,
    t: &TimelinePlot,
    forced: &BTreeSet<usize>,
) -> Result<LabelPlaces, PlotError> {
    let style = font(LABEL_FONT);
    let xv = g.violation_x();
    // Per lane and row, the spans taken, and whether each is a block of labels.
    let mut taken: Vec<Vec<Vec<(i32, i32, bool)>>> =
        (0..g.lanes()).map(|lane| vec![vec![(xv - 2, xv + 2, false)]; g.rows(lane)]).collect();
    let free =
        |spans: &[(i32, i32, bool)], (a, b): (i32, i32)| spans.iter().all(|&(c, d, _)| b + GAP <= c || d + GAP <= a);
    let apart = |spans: &[(i32, i32, bool)], (a, b): (i32, i32)| {
        spans.iter().all(|&(c, d, block)| !block || b + GAP <= c || d + GAP <= a || (a - c).abs() >= ALIGN)
    };
    let mut at = vec![None; t.marks.len()];
    let mut footnoted = forced.clone();
    for (i, m) in t.marks.iter().enumerate().rev() {
        if forced.contains(&i) || m.labels.is_empty() {
            continue;
        }
        let x = g.x(m.slot as f64 + 0.5);
        let mut w = 0;
        for l in &m.labels {
            w = w.max(text_width(root, l, &style)?);
        }
        let waiting: Vec<i32> = (0..i)
            .filter(|&j| t.marks[j].lane == m.lane && !t.marks[j].labels.is_empty() && !forced.contains(&j))
            .map(|j| g.x(t.marks[j].slot as f64 + 0.5))
            .collect();
        let rows = &mut taken[m.lane];
        let k = m.labels.len();
        let leader = (x - 1, x + 1);
        // Left edges from "starts at the marker" to "ends at it", kept on the page.
        let (first, last) = ((x - 4).min(g.right - w), (x + 4 - w).max(g.left + 2));
        let starts = || (last..=first).rev().step_by(2);
        let clear_of_waiting = |x0: i32| waiting.iter().all(|&xw| free(&[(xw - 1, xw + 1, false)], (x0, x0 + w)));
        let place = [true, false].into_iter().find_map(|strict| {
            (0..(rows.len() + 1).saturating_sub(k)).find_map(|r| {
                if !rows[..r].iter().all(|spans| free(spans, leader)) {
                    return None;
                }
                let beside = [r.checked_sub(1), Some(r + k).filter(|&a| a < rows.len())];
                starts()
                    .filter(|&x0| (r > 0 && !strict) || clear_of_waiting(x0))
                    .find(|&x0| {
                        rows[r..r + k].iter().all(|spans| free(spans, (x0, x0 + w)))
                            && beside.iter().flatten().all(|&a| apart(&rows[a], (x0, x0 + w)))
                    })
                    .map(|x0| (x0, r))
            })
        });
        match place {
            Some((x0, r)) => {
                rows[..r].iter_mut().for_each(|spans| spans.push((leader.0, leader.1, false)));
                rows[r..r + k].iter_mut().for_each(|spans| spans.push((x0, x0 + w, true)));
                at[i] = Some((x0, r));
            }
            None => {
                footnoted.insert(i);
            }
        }
    }
    Ok(LabelPlaces { at, footnoted })
}

/// The number of each footnoted mark, in the marks' order.
fn footnote_numbers(footnoted: &BTreeSet<usize>) -> BTreeMap<usize, usize> {
    footnoted.iter().enumerate().map(|(n, &i)| (i, n + 1)).collect()
}

/// The notes of the marks whose labels did not fit: "[2] CPU0, step 21:
/// step 2 (clear); ptep_clear idx 0..511 (×512)".
fn footnotes(t: &TimelinePlot, footnoted: &BTreeSet<usize>) -> Vec<String> {
    footnote_numbers(footnoted)
        .into_iter()
        .map(|(i, n)| {
            let m = &t.marks[i];
            let cpu = t.lanes.get(m.lane).map_or(0, |l| l.0);
            format!("[{n}] CPU{cpu}, step {}: {}", t.steps[m.slot], m.labels.join("; "))
        })
        .collect()
}

fn draw_timeline<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    g: &TimelineGeometry,
    t: &TimelinePlot,
    labels: &LabelPlaces,
) -> Result<(), PlotError> {
    let (left, right) = (g.left, g.right);
    // Lanes, shaded in turn, each named at its left.
    for (lane, (cpu, role)) in t.lanes.iter().enumerate() {
        let (top, bottom) = g.lane(lane);
        if lane % 2 == 1 {
            root.draw(&Rectangle::new([(left, top), (right, bottom)], RGBColor(246, 246, 246).filled())).ctx("lane")?;
        }
        let mid = (top + bottom) / 2;
        let name = font(14).pos(Pos::new(HPos::Right, VPos::Bottom));
        root.draw(&Text::new(format!("CPU{cpu}"), (left - 10, mid), name)).ctx("lane")?;
        let role_style = font(12).color(&GREY).pos(Pos::new(HPos::Right, VPos::Top));
        root.draw(&Text::new(role.clone(), (left - 10, mid + 2), role_style)).ctx("lane")?;
    }
    // A light line through each step, and its number under the lanes
    // (every k-th where they would crowd).
    let tick_style = font(12).pos(Pos::new(HPos::Center, VPos::Top));
    let mut widest = 0;
    for step in &t.steps {
        widest = widest.max(text_width(root, &step.to_string(), &font(12))?);
    }
    let slot_w = (g.x(1.0) - g.x(0.0)).max(1);
    let every = ((widest + 8) / slot_w + 1) as usize;
    for (k, step) in t.steps.iter().enumerate() {
        let x = g.x(k as f64 + 0.5);
        root.draw(&PathElement::new(vec![(x, g.top), (x, g.bottom)], RGBColor(228, 228, 228))).ctx("grid")?;
        if k % every == 0 {
            root.draw(&PathElement::new(vec![(x, g.bottom), (x, g.bottom + 4)], BLACK)).ctx("tick")?;
            root.draw(&Text::new(step.to_string(), (x, g.bottom + 6), tick_style.clone())).ctx("tick")?;
        }
    }
    root.draw(&PathElement::new(vec![(left, g.bottom), (right, g.bottom)], BLACK)).ctx("axis")?;
    root.draw(&PathElement::new(vec![(left, g.top), (left, g.bottom)], BLACK)).ctx("axis")?;
    root.draw(&Text::new(
        "scheduling step (only the steps at which something is shown, in order)",
        ((left + right) / 2, g.bottom + 26),
        font(15).pos(Pos::new(HPos::Center, VPos::Top)),
    ))
    .ctx("axis")?;
    // Hold bars, named inside where the name fits.
    for b in &t.bars {
        let y1 = g.bar_bottom(b.lane, b.depth);
        let to = if b.open { g.violation_x() } else { g.x(b.to) };
        let (x0, x1) = (g.x(b.from), to.max(g.x(b.from) + 4));
        let color = LOCK_PALETTE[b.lock % LOCK_PALETTE.len()];
        root.draw(&Rectangle::new([(x0, y1 - g.bar_h), (x1, y1)], color.filled())).ctx("hold")?;
        if b.open {
            root.draw(&Rectangle::new([(x1 - 3, y1 - g.bar_h), (x1, y1)], VIOLATION.filled())).ctx("hold")?;
        }
        let name = &t.locks[b.lock];
        if x1 - x0 >= text_width(root, name, &font(11))? + 6 && g.bar_h >= 11 {
            let style = font(11).color(&WHITE).pos(Pos::new(HPos::Left, VPos::Center));
            root.draw(&Text::new(name.clone(), (x0 + 3, y1 - g.bar_h / 2), style)).ctx("hold")?;
        }
    }
    // The violation, after the last event.
    let xv = g.violation_x();
    root.draw(&PathElement::new(vec![(xv, g.top), (xv, g.bottom)], VIOLATION.stroke_width(2))).ctx("violation")?;
    // Markers, with their labels above them or their note's number.
    let numbers = footnote_numbers(&labels.footnoted);
    let label_style = font(LABEL_FONT);
    for (i, m) in t.marks.iter().enumerate() {
        let x = g.x(m.slot as f64 + 0.5);
        let y = g.marker_y(m.lane);
        let color = if m.kind == MarkKind::Event { INK } else { VIOLATION };
        if let Some(n) = numbers.get(&i) {
            let r = (slot_w / 2 - 1).clamp(6, 9);
            root.draw(&Circle::new((x, y), r, color.filled())).ctx("marker")?;
            let style = font(10).color(&WHITE).pos(Pos::new(HPos::Center, VPos::Center));
            root.draw(&Text::new(n.to_string(), (x, y), style)).ctx("marker")?;
            continue;
        }
        root.draw(&Circle::new((x, y), 4, color.filled())).ctx("marker")?;
        let Some(Some((x0, row))) = labels.at.get(i) else { continue };
        let k = m.labels.len();
        let base = g.row_y(m.lane, *row);
        root.draw(&PathElement::new(vec![(x, y - 4), (x, base)], RGBColor(170, 170, 170))).ctx("marker")?;
        for (j, l) in m.labels.iter().enumerate() {
            let ly = base - (k - 1 - j) as i32 * ROW;
            let style = label_style.color(&color).pos(Pos::new(HPos::Left, VPos::Bottom));
            root.draw(&Text::new(l.clone(), (*x0, ly), style)).ctx("marker")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A busy timeline: a collapse with a marker at every step, some of
    /// several events, and a second CPU with a few.
    fn busy() -> TimelinePlot {
        let words =
            ["prologue", "step 2 (clear)", "ptep_clear idx 0..511 (×512)", "return SCAN_FAIL", "lock_page pfn 0x200"];
        let mut marks: Vec<Mark> = (0..40)
            .map(|slot| {
                let labels = (0..1 + slot % 4).map(|k| words[(slot + k) % words.len()].to_owned()).collect();
                Mark { lane: 0, slot, labels, kind: MarkKind::Event }
            })
            .collect();
        marks.extend((0..40).step_by(7).map(|slot| Mark {
            lane: 1,
            slot,
            labels: vec!["install anon idx 300".into()],
            kind: MarkKind::Event,
        }));
        marks.sort_by_key(|m| (m.slot, m.lane));
        TimelinePlot {
            lanes: vec![(0, "collapse".into()), (1, "uffd".into())],
            steps: (1..=40).collect(),
            bars: vec![],
            marks,
            locks: vec![],
        }
    }

    fn series(name: &str, points: &[(f64, f64)]) -> XySeries {
        let style = SeriesStyle { color: PALETTE[0], shape: None, hollow: false, dash: Dash::Solid };
        XySeries {
            name: name.into(),
            label: name.into(),
            style,
            points: points.to_vec(),
            intervals: vec![],
            fill: false,
        }
    }

    #[test]
    fn a_series_that_another_hides_is_dashed_and_named() {
        let axis = |range| Axis { desc: String::new(), range, scale: Scale::Log10, ticks: Ticks::Number };
        let (x, y) = (axis(1.0..1000.0), Axis { scale: Scale::Linear, ..axis(0.0..1.0) });
        // b runs along a's line, with points of its own and a longer tail;
        // c is a's twin; d is apart.
        let a = [(10.0, 0.0), (20.0, 0.5), (40.0, 1.0)];
        let b = [(10.0, 0.0), (14.142, 0.25), (20.0, 0.5), (40.0, 1.0), (400.0, 1.0)];
        let d = [(12.0, 0.0), (25.0, 0.5), (50.0, 1.0)];
        let mut all = vec![series("a", &a), series("b", &b), series("c", &a), series("d", &d)];
        let notes = distinguish_coinciding(&mut all, &x, &y);
        assert_eq!(
            notes,
            ["a, b and c coincide where both are drawn (within 1% of the axes): drawn over each other, solid, dashed \
              and dotted"]
        );
        let dashes: Vec<Dash> = all.iter().map(|s| s.style.dash).collect();
        assert_eq!(dashes, [Dash::Solid, Dash::Dashed, Dash::Dotted, Dash::Solid]);
        assert!(all[1].style.hollow && all[2].style.hollow && !all[3].style.hollow);
        let mut twins = vec![series("a", &a), series("c", &a)];
        assert_eq!(
            distinguish_coinciding(&mut twins, &x, &y),
            ["a and c identical: drawn over each other, solid and dashed"]
        );
    }

    #[test]
    fn timeline_labels_never_touch_each_other_their_leaders_or_the_violation() {
        register_fonts().unwrap();
        let mut svg = String::new();
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        let t = busy();
        let g = TimelineGeometry::of(&root, &t);
        let places = place_labels(&root, &g, &t, &BTreeSet::new()).unwrap();
        // (lane, rows, x0, x1) of each block, (lane, rows below it, x) of each leader.
        let mut blocks = Vec::new();
        let mut leaders = Vec::new();
        for (i, m) in t.marks.iter().enumerate() {
            let Some((x0, row)) = places.at[i] else {
                assert!(places.footnoted.contains(&i), "mark {i} is placed or a note");
                continue;
            };
            let w = m.labels.iter().map(|l| text_width(&root, l, &font(LABEL_FONT)).unwrap()).max().unwrap();
            let x = g.x(m.slot as f64 + 0.5);
            assert!(x0 <= x && x <= x0 + w, "mark {i}'s block spans its marker");
            assert!(x0 >= g.left && x0 + w <= g.violation_x() - 2, "mark {i} stays left of the violation");
            assert!(row + m.labels.len() <= g.rows(m.lane), "mark {i} stays in its lane");
            blocks.push((m.lane, row..row + m.labels.len(), x0, x0 + w));
            leaders.push((m.lane, 0..row, x));
        }
        assert!(blocks.len() > t.marks.len() / 2, "most labels stand over their markers: {}", blocks.len());
        let rows_meet = |a: &Range<usize>, b: &Range<usize>| a.start < b.end && b.start < a.end;
        for (i, a) in blocks.iter().enumerate() {
            for b in &blocks[i + 1..] {
                if a.0 == b.0 && rows_meet(&a.1, &b.1) {
                    assert!(a.3 + GAP <= b.2 || b.3 + GAP <= a.2, "blocks {a:?} and {b:?} overlap");
                }
            }
            for l in leaders.iter().filter(|l| l.0 == a.0 && rows_meet(&l.1, &a.1)) {
                assert!(l.2 < a.2 || l.2 > a.3, "a leader {l:?} crosses the block {a:?}");
            }
        }
    }
}
