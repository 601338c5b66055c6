//! The report's plots: every file is written, decodes, and shows something;
//! what each shows is what its data says (the swept knob's values, the
//! intervals of the medians, how each cell was measured); no series hides
//! another and no text is cut.

use bench_core::kernel::{Pfn, Pte, ScanResult, Step};
use bench_core::metrics::{HistSummary, MetricsSummary};
use bench_core::results::{Environment, PolicyRun, RunFailure, TimelineEntry, TimelineEvent, TimelineLock};
use bench_core::{CachedTranslation, CostModel, LockClass, Oracle, Role, Violation};
use reports::figures::pml_hold_p99_us;
use reports::plots::{file_stem, render_all, HEIGHT, WIDTH};
use reports::schema::{
    Cell, CounterexampleDoc, CounterexampleTimeline, CpuSweep, Measured, PolicyCheck, PolicyFailure, ReportResults,
    ScalingPoint, Verdict, SCHEMA,
};
use reports::stats::MedianCi;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const BASE: &str = "v1-baseline";
const PATCH: &str = "v2-flush-bool:recheck_always=true";
const W1: &str = "fault-storm";
const W2: &str = "Neighbours/heavy";
/// A policy only the CPU sweep has: there, it does exactly what PATCH does.
const SWEPT: &str = "v2-step3-down";
/// CPU counts of the CPU sweep (the quick report's).
const SWEEP_CPUS: [u32; 3] = [2, 8, 32];
/// Values of the scaling sweep's knob, `threads.neighbours`.
const NEIGHBOURS: [u32; 4] = [1, 2, 4, 8];
/// tab10's first three colours: BASE's, PATCH's and (in the CPU sweep) SWEPT's.
const BASE_COLOUR: &str = "#1F77B4";
const PATCH_COLOUR: &str = "#FF7F0E";
const SWEPT_COLOUR: &str = "#2CA02C";
/// Ten runs of a cell, as factors of its speed: a median and a 95% interval
/// (the 2nd to the 9th of them) apart.
const CELL_RUNS: [f64; 10] = [0.95, 1.0, 1.07, 0.98, 1.03, 1.01, 0.97, 1.05, 0.99, 1.02];
/// Five runs of a sweep point.
const POINT_RUNS: [f64; 5] = [0.9, 1.0, 1.1, 0.95, 1.05];
/// What the counterexample's violation says: longer than a line.
const MESSAGE: &str = "CPU 2 still caches 0x10000005000 through its TLB entry to pfn 0x205, but the PTE maps pfn \
                       0x600 now (an anonymous page installed by uffd on CPU 1): the entry was changed under ptl \
                       while this translation was cached, and no flush reached CPU 2 since";

/// A histogram summary the way `HistSummary::of` lays one out: points at
/// quantiles 0, 1/2, 3/4, 7/8, ... of `base + scale * Exp(1)` ns.
fn hist(base: f64, scale: f64, count: u64) -> HistSummary {
    let at = |q: f64| (base + scale * -(1.0 - q).ln()) as u64;
    let cdf: Vec<(u64, f64)> = (0..18).map(|k| 1.0 - 0.5f64.powi(k)).map(|q| (at(q), q)).collect();
    HistSummary {
        count,
        min: at(0.0),
        mean: base + scale,
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        p999: at(0.999),
        max: at(0.999_99),
        cdf,
    }
}

fn run(policy: &str, workload: &str, threads: usize, speed: f64, neighbours: bool) -> PolicyRun {
    let mut metrics = MetricsSummary::default();
    metrics.collapse_latency_ns.insert("all".into(), hist(2_000.0 / speed, 3_000.0 / speed, 50_000));
    metrics.lock_hold_ns.insert("collapse/pml".into(), hist(300.0 / speed, 900.0 / speed, 50_000));
    if neighbours {
        metrics.lock_wait_ns.insert("neighbour/pml".into(), hist(100.0, 2_000.0 / speed * threads as f64, 4_000));
    }
    PolicyRun {
        policy: policy.into(),
        params: serde_json::Value::Null,
        workload: workload.into(),
        seed: 1,
        wall_s: 1.0,
        threads,
        cores: 8,
        pinned: true,
        oversubscribed: false,
        collapses: (40_000.0 * speed) as u64,
        collapses_per_s: 40_000.0 * speed,
        metrics,
        locks: BTreeMap::new(),
        violations: Vec::new(),
        violations_total: 0,
        ended_by: None,
    }
}

fn cell(workload: &str, policy: &str, measured: Measured, speed: f64, neighbours: bool) -> Cell {
    Cell {
        workload: workload.into(),
        policy: policy.into(),
        measured,
        runs: CELL_RUNS.iter().map(|f| run(policy, workload, 4, speed * f, neighbours)).collect(),
    }
}

fn fitted() -> Measured {
    Measured::Fitted { actors: "collapse+neighbour".into() }
}

/// Where the violation's stale translation was filled: on CPU 2, which
/// does nothing else.
fn stale() -> CachedTranslation {
    CachedTranslation { cpu: 2, vpn: 0x10000005, pfn: Pfn(0x205) }
}

fn counterexample() -> CounterexampleDoc {
    let pml = TimelineLock { class: LockClass::PmdLock, name: "pml (PMD table 0)".into() };
    let ptl = TimelineLock { class: LockClass::PteLock, name: "ptl (PTE table 3)".into() };
    let mut events = vec![
        (1, 0, TimelineEvent::Step { step: Step::Prologue }),
        (2, 2, TimelineEvent::TlbFill { vpn: stale().vpn, pfn: stale().pfn }),
        (3, 0, TimelineEvent::Step { step: Step::Check }),
        (4, 0, TimelineEvent::Lock { lock: pml.clone() }),
        (5, 0, TimelineEvent::Lock { lock: ptl.clone() }),
        (6, 0, TimelineEvent::Step { step: Step::Clear }),
    ];
    events.extend((0..3).map(|idx| (6, 0, TimelineEvent::PteClear { idx })));
    events.extend([
        (7, 1, TimelineEvent::LocklessRead),
        (8, 0, TimelineEvent::Unlock { lock: ptl }),
        (9, 0, TimelineEvent::Unlock { lock: pml.clone() }),
        (10, 1, TimelineEvent::Trylock { lock: pml, ok: true }),
        (11, 0, TimelineEvent::TableFree { table: 3 }),
        (12, 1, TimelineEvent::TlbAccess { vpn: 0x7f3a1000 }),
    ]);
    CounterexampleDoc {
        index: 17,
        violations: vec![Violation {
            oracle: Oracle::StaleTlb,
            cpu: Some(1),
            step: Some("tlb access".into()),
            message: MESSAGE.into(),
            cached: vec![stale()],
            freed_live: vec![],
        }],
        token: "abc123".into(),
        replay: "collapse-bench check --policy v2-flush-bool --replay abc123".into(),
        steps: 10,
        original_steps: 240,
        runs: 4,
        original_runs: 61,
        shrink_replays: 300,
        timeline: CounterexampleTimeline::Events {
            roles: vec![Role::Collapse, Role::Neighbour, Role::Reader],
            events: events.into_iter().map(|(step, cpu, event)| TimelineEntry { step, cpu, event }).collect(),
        },
    }
}

fn check(policy: &str, first: Option<CounterexampleDoc>) -> PolicyCheck {
    PolicyCheck {
        policy: policy.into(),
        params: serde_json::Value::Null,
        verdict: if first.is_some() { "FAIL" } else { "ok" }.into(),
        schedules: 1000,
        steps: 50_000,
        step_limits: 0,
        search_s: 1.0,
        first_found_s: None,
        shrink_s: 0.1,
        by_oracle: BTreeMap::new(),
        first,
        exhaustive: None,
    }
}

/// The simulated sweep over CPU counts: latencies grow with the CPUs, and
/// every collapse sends `flushes` IPIs to each other CPU; SWEPT does
/// exactly what PATCH does.
fn cpu_sweep() -> CpuSweep {
    let points = [(BASE, 1.0, 2), (PATCH, 1.6, 1), (SWEPT, 1.6, 1)]
        .iter()
        .flat_map(|&(policy, speed, flushes)| {
            SWEEP_CPUS.map(|cpus| ScalingPoint {
                workload: "pml-contended".into(),
                policy: policy.into(),
                knob: "cpus".into(),
                value: cpus,
                threads: cpus,
                measured: Measured::Simulated,
                runs: POINT_RUNS
                    .iter()
                    .map(|f| {
                        let speed = speed * f / f64::from(cpus).sqrt();
                        let mut run = run(policy, "pml-contended", cpus as usize, speed, true);
                        run.cores = cpus as usize;
                        run.metrics.counters.collapse_flushes = flushes * run.collapses;
                        run.metrics.counters.collapse_ipis = flushes * u64::from(cpus - 1) * run.collapses;
                        run
                    })
                    .collect(),
            })
        })
        .collect();
    CpuSweep { workload: "pml-contended".into(), virtual_seconds: 0.01, costs: CostModel::default(), points }
}

/// The scaling sweep: `threads.neighbours` at 1, 2, 4 and 8, simulated,
/// five runs a point.
fn scaling() -> Vec<ScalingPoint> {
    [BASE, PATCH]
        .iter()
        .flat_map(|&policy| {
            NEIGHBOURS.map(|n| ScalingPoint {
                workload: W2.into(),
                policy: policy.into(),
                knob: "threads.neighbours".into(),
                value: n,
                threads: n + 3,
                measured: Measured::Simulated,
                runs: POINT_RUNS
                    .iter()
                    .map(|f| {
                        let speed = if policy == BASE { 1.0 } else { 1.6 } * f / f64::from(n).sqrt();
                        run(policy, W2, n as usize + 3, speed, true)
                    })
                    .collect(),
            })
        })
        .collect()
}

fn results() -> ReportResults {
    ReportResults {
        schema: SCHEMA,
        tool: "collapse-bench test".into(),
        environment: Environment::default(),
        command: "collapse-bench report --quick".into(),
        base: BASE.into(),
        quick: true,
        repetitions: 10,
        run_seconds: 0.08,
        sim_seconds: Some(0.01),
        sim_costs: None,
        cells: vec![
            cell(W1, BASE, Measured::Native, 1.0, false),
            cell(W1, PATCH, Measured::Native, 1.4, false),
            // An order of magnitude slower, fitted to the cores natively
            // and simulated whole.
            cell(W2, BASE, fitted(), 0.08, true),
            cell(W2, PATCH, fitted(), 0.12, true),
            cell(W2, BASE, Measured::Simulated, 0.1, true),
            cell(W2, PATCH, Measured::Simulated, 0.15, true),
        ],
        scaling: scaling(),
        cpu_sweep: Some(cpu_sweep()),
        verdicts: vec![
            Verdict { workload: W2.into(), check: check(BASE, None) },
            Verdict { workload: W2.into(), check: check(PATCH, Some(counterexample())) },
        ],
        watchdog_s: None,
        kernel_history: None,
        failures: vec![],
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cb-plots-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `results()`'s plots, rendered once into a directory of their own.
fn rendered(name: &str) -> (PathBuf, Vec<String>) {
    let dir = temp_dir(name);
    let stems = render_all(&results(), &dir).unwrap();
    (dir, stems)
}

/// Decode a PNG; check its size, that it is not one colour, and that it has ink.
fn check_png(path: &Path) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (WIDTH, HEIGHT), "{}", path.display());
    assert_eq!(info.color_type, png::ColorType::Rgb, "{}", path.display());
    let px: Vec<&[u8]> = buf[..info.buffer_size()].chunks(3).collect();
    assert!(px.iter().any(|p| *p != px[0]), "{} is blank", path.display());
    let dark = px.iter().filter(|p| p.iter().all(|&c| c < 90)).count();
    assert!(dark > 1_000, "{}: only {dark} dark pixels (no text or lines?)", path.display());
}

/// A `<text>` of an SVG: where it is, how large, and what it says.
#[derive(Debug)]
struct SvgText {
    x: f64,
    y: f64,
    size: f64,
    text: String,
}

/// Parse an SVG; return its `<text>` elements.
fn svg_text_elements(path: &Path) -> Vec<SvgText> {
    let src = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&src).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let num = |n: &roxmltree::Node, a: &str| n.attribute(a).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| SvgText {
            x: num(&n, "x"),
            y: num(&n, "y"),
            size: num(&n, "font-size"),
            text: n
                .descendants()
                .filter(|d| d.is_text())
                .filter_map(|d| d.text())
                .collect::<String>()
                .trim()
                .to_owned(),
        })
        .collect()
}

/// The text of an SVG's `<text>` elements.
fn svg_texts(path: &Path) -> Vec<String> {
    svg_text_elements(path).into_iter().map(|t| t.text).collect()
}

/// Every text of an SVG joined by spaces, whitespace collapsed: where a
/// wrapped paragraph can be found whole.
fn svg_prose(path: &Path) -> String {
    svg_texts(path).join(" ").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The x axis's tick labels of an SVG: the lowest row of whole numbers
/// on the page, sorted.
fn x_tick_labels(path: &Path) -> Vec<u32> {
    let numbers: Vec<(f64, u32)> =
        svg_text_elements(path).iter().filter_map(|t| Some((t.y, t.text.parse().ok()?))).collect();
    let bottom = numbers.iter().map(|n| n.0).fold(f64::NEG_INFINITY, f64::max);
    let mut row: Vec<u32> = numbers.iter().filter(|n| (n.0 - bottom).abs() < 1.0).map(|n| n.1).collect();
    row.sort_unstable();
    row
}

/// An SVG's shapes with `attr` (`fill`, `stroke`) set to `colour`: their
/// tag and attributes.
fn shapes(path: &Path, attr: &str, colour: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let src = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&src).unwrap();
    doc.descendants()
        .filter(|n| n.is_element() && n.attribute(attr) == Some(colour))
        .map(|n| {
            let attrs = n.attributes().map(|a| (a.name().to_owned(), a.value().to_owned())).collect();
            (n.tag_name().name().to_owned(), attrs)
        })
        .collect()
}

fn number(attrs: &BTreeMap<String, String>, name: &str) -> f64 {
    attrs[name].parse().unwrap()
}

/// The points of a `<polyline>`.
fn polyline_points(attrs: &BTreeMap<String, String>) -> Vec<(f64, f64)> {
    attrs["points"]
        .split_whitespace()
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

/// The vertical segments (error bars) of an SVG drawn 2 px wide in
/// `colour`: (x, top y, bottom y).
fn error_bars(path: &Path, colour: &str) -> Vec<(f64, f64, f64)> {
    shapes(path, "stroke", colour)
        .into_iter()
        .filter(|(tag, a)| tag == "polyline" && a.get("stroke-width").map(String::as_str) == Some("2"))
        .map(|(_, a)| polyline_points(&a))
        .filter(|p| p.len() == 2 && p[0].0 == p[1].0 && p[0].1 != p[1].1)
        .map(|p| (p[0].0, p[0].1.min(p[1].1), p[0].1.max(p[1].1)))
        .collect()
}

#[test]
fn every_plot_renders_as_png_and_svg() {
    let (dir, stems) = rendered("all");
    let expected = [
        ("throughput-native", "Collapse throughput, native threads: per second of wall time"),
        ("throughput-sim", "Collapse throughput, simulated: per second of virtual time"),
        ("latency-cdf-fault-storm-native", "Collapse latency CDF: fault-storm, native"),
        ("pml-hold-fault-storm-native", "pml hold time of the collapse: fault-storm, native"),
        ("latency-cdf-neighbours-heavy-fitted", "Collapse latency CDF: Neighbours/heavy, native, fitted to the cores"),
        ("pml-hold-neighbours-heavy-fitted", "pml hold time of the collapse: Neighbours/heavy, native, fitted"),
        ("neighbour-wait-neighbours-heavy-fitted", "Neighbour pml wait CDF: Neighbours/heavy, native, fitted"),
        ("latency-cdf-neighbours-heavy-sim", "Collapse latency CDF: Neighbours/heavy, simulated"),
        ("pml-hold-neighbours-heavy-sim", "pml hold time of the collapse: Neighbours/heavy, simulated"),
        ("neighbour-wait-neighbours-heavy-sim", "Neighbour pml wait CDF: Neighbours/heavy, simulated"),
        ("scaling-pml-hold-sim", "pml hold p99 over pml neighbours: Neighbours/heavy, simulated"),
        ("scaling-neighbour-wait-sim", "Neighbour pml wait p99 over pml neighbours: Neighbours/heavy, simulated"),
        ("cpus-collapse-latency", "Collapse latency p99 over CPUs, simulated: pml-contended"),
        ("cpus-pml-hold", "pml hold p99 over CPUs, simulated: pml-contended"),
        ("cpus-neighbour-wait", "Neighbour pml wait p99 over CPUs, simulated: pml-contended"),
        ("cpus-ipis", "IPIs per collapse over CPUs, simulated: pml-contended"),
        (
            "timeline-v2-flush-bool-recheck-always-true",
            "Counterexample: v2-flush-bool:recheck_always=true breaks stale-tlb",
        ),
    ];
    assert_eq!(stems, expected.iter().map(|e| e.0).collect::<Vec<_>>());
    let mut files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    let mut want: Vec<String> = stems.iter().flat_map(|s| [format!("{s}.png"), format!("{s}.svg")]).collect();
    want.sort();
    assert_eq!(files, want, "exactly the plots, no temporaries");
    for (stem, title) in expected {
        check_png(&dir.join(format!("{stem}.png")));
        let prose = svg_prose(&dir.join(format!("{stem}.svg")));
        assert!(prose.starts_with(title), "{stem}.svg has no title {title:?}: {prose}");
        // No text is cut short anywhere.
        let texts = svg_texts(&dir.join(format!("{stem}.svg")));
        assert!(texts.iter().all(|t| !t.ends_with('…') && !t.ends_with("...")), "{stem}: {texts:?}");
    }
    // Legends and axes name what is drawn, with its unit and its clock.
    let cdf = svg_texts(&dir.join("latency-cdf-fault-storm-native.svg"));
    assert!(cdf.iter().any(|t| t.starts_with(BASE)) && cdf.iter().any(|t| t.starts_with(PATCH)), "{cdf:?}");
    assert!(cdf.iter().any(|t| t.contains("µs of wall time, log scale")), "{cdf:?}");
    let sim = svg_texts(&dir.join("latency-cdf-neighbours-heavy-sim.svg"));
    assert!(sim.iter().any(|t| t.contains("µs of virtual time, log scale")), "{sim:?}");
    // The CPU axis is labelled at powers of two, its points evenly spaced;
    // the policy only the sweep has is in the legend.
    let cpus = svg_texts(&dir.join("cpus-pml-hold.svg"));
    assert_eq!(x_tick_labels(&dir.join("cpus-pml-hold.svg")), [2, 4, 8, 16, 32], "{cpus:?}");
    assert!(cpus.iter().any(|t| t == "simulated CPUs (cpus, log2 scale)"), "{cpus:?}");
    assert!([BASE, PATCH, SWEPT].iter().all(|p| cpus.iter().any(|t| t == p)), "{cpus:?}");
    // BASE's markers (circles; the legend's is above the plot).
    let mut xs: Vec<f64> = shapes(&dir.join("cpus-pml-hold.svg"), "fill", BASE_COLOUR)
        .iter()
        .filter(|(tag, a)| tag == "circle" && number(a, "cy") > 130.0)
        .map(|(_, a)| number(a, "cx"))
        .collect();
    xs.sort_by(f64::total_cmp);
    assert_eq!(xs.len(), SWEEP_CPUS.len(), "one marker per CPU count: {xs:?}");
    assert!(((xs[1] - xs[0]) - (xs[2] - xs[1])).abs() <= 1.0, "2, 8, 32 CPUs evenly spaced: {xs:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_scaling_sweep_is_drawn_over_its_knob() {
    let (dir, _) = rendered("scaling");
    let path = dir.join("scaling-pml-hold-sim.svg");
    let texts = svg_texts(&path);
    // The x axis is the swept knob's value, named; not the thread count
    // (4, 5, 7, 11).
    assert_eq!(x_tick_labels(&path), NEIGHBOURS, "{texts:?}");
    assert!(texts.iter().any(|t| t == "pml neighbours (threads.neighbours, log2 scale)"), "{texts:?}");
    // The subtitle says how the points were measured, and from how many runs.
    let prose = svg_prose(&path);
    for want in ["simulated", "virtual time, 10 ms a run", "the median of 5 runs per point", "confidence interval"] {
        assert!(prose.contains(want), "no {want:?} in {prose}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sweep_error_bars_are_the_medians_intervals() {
    let (dir, _) = rendered("sweep-intervals");
    let path = dir.join("scaling-pml-hold-sim.svg");
    let cis: Vec<MedianCi> = scaling()
        .iter()
        .filter(|p| p.policy == BASE)
        .map(|p| MedianCi::of(&p.runs.iter().filter_map(pml_hold_p99_us).collect::<Vec<_>>()).unwrap())
        .collect();
    assert!(cis.iter().all(|c| c.lo < c.median && c.median < c.hi), "the runs differ: {cis:?}");
    // BASE's markers, in the knob's order, left to right.
    let mut markers: Vec<(f64, f64)> = shapes(&path, "fill", BASE_COLOUR)
        .iter()
        .filter(|(tag, a)| tag == "circle" && number(a, "cy") > 130.0)
        .map(|(_, a)| (number(a, "cx"), number(a, "cy")))
        .collect();
    markers.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(markers.len(), NEIGHBOURS.len(), "{markers:?}");
    // The y axis is linear: two markers give its scale, in px per µs.
    let (first, last) = (markers[0], markers[markers.len() - 1]);
    let (m0, m1) = (cis[0].median, cis[cis.len() - 1].median);
    let px_per_us = (first.1 - last.1) / (m1 - m0);
    let y_of = |v: f64| first.1 - (v - m0) * px_per_us;
    let bars = error_bars(&path, BASE_COLOUR);
    for ((x, y), ci) in markers.iter().zip(&cis) {
        assert!((y - y_of(ci.median)).abs() <= 1.5, "marker {y} for {ci:?}");
        let bar =
            bars.iter().find(|b| (b.0 - x).abs() < 0.5).unwrap_or_else(|| panic!("no error bar at {x}: {bars:?}"));
        assert!((bar.1 - y_of(ci.hi)).abs() <= 1.5 && (bar.2 - y_of(ci.lo)).abs() <= 1.5, "{bar:?} for {ci:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn throughput_bars_are_medians_with_their_intervals_per_clock() {
    let (dir, _) = rendered("throughput");
    // Wall time and virtual time are never on one axis.
    let native = svg_prose(&dir.join("throughput-native.svg"));
    assert!(native.contains("collapses per second of wall time"), "{native}");
    assert!(native.contains(W1) && native.contains("fitted: collapse+neighbour"), "{native}");
    assert!(!native.contains("virtual"), "{native}");
    let sim = svg_prose(&dir.join("throughput-sim.svg"));
    assert!(sim.contains("collapses per second of virtual time") && sim.contains(W2), "{sim}");
    assert!(!sim.contains(W1) && !sim.contains("wall"), "{sim}");
    for prose in [&native, &sim] {
        assert!(prose.contains("the median of 10 runs per cell"), "{prose}");
        assert!(prose.contains("95% confidence interval of the median"), "{prose}");
    }
    // W1's BASE bar: its height is the median, its error bar the interval.
    let path = dir.join("throughput-native.svg");
    let xs: Vec<f64> = results().cells[0].runs.iter().map(|r| r.collapses_per_s).collect();
    let ci = MedianCi::of(&xs).unwrap();
    let bar = shapes(&path, "fill", BASE_COLOUR)
        .into_iter()
        .filter(|(tag, a)| tag == "rect" && number(a, "height") > 40.0)
        .map(|(_, a)| (number(&a, "x"), number(&a, "y"), number(&a, "width"), number(&a, "height")))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap();
    let (x, top, width, height) = bar;
    let base = top + height;
    let y_of = |v: f64| base - v / ci.median * height;
    let whisker = error_bars(&path, "#000000")
        .into_iter()
        .find(|w| (w.0 - (x + width / 2.0)).abs() <= 1.0)
        .unwrap_or_else(|| panic!("no error bar over the bar at {x}"));
    assert!(ci.lo < ci.median && ci.median < ci.hi);
    assert!((whisker.1 - y_of(ci.hi)).abs() <= 1.5 && (whisker.2 - y_of(ci.lo)).abs() <= 1.5, "{whisker:?} {ci:?}");
    // The interval is the median's, not the mean's ± a deviation.
    assert!(whisker.2 < base - 1.0, "the error bar stays off the axis: {whisker:?}, axis at {base}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_policy_missing_from_a_panel_is_said_why() {
    let mut r = results();
    r.cells.retain(|c| !(c.policy == PATCH && c.workload == W2 && c.measured == fitted()));
    r.failures.push(PolicyFailure {
        policy: PATCH.into(),
        workload: W2.into(),
        part: "measure (fitted)".into(),
        failure: RunFailure::Hung { watchdog_s: 5.0, cpus: vec![0, 1], report: vec![] },
    });
    let dir = temp_dir("missing-bar");
    render_all(&r, &dir).unwrap();
    let native = svg_prose(&dir.join("throughput-native.svg"));
    let why = format!("No bar for {PATCH} on {W2}: {}", r.failures[0].summary());
    assert!(native.contains(&why), "{native}");
    // The simulated cells of W2 have every bar.
    assert!(!svg_prose(&dir.join("throughput-sim.svg")).contains("No bar"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn per_workload_plots_are_one_per_way_of_measuring() {
    let (dir, stems) = rendered("measured");
    let mut unique = stems.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), stems.len(), "{stems:?}");
    for kind in ["latency-cdf", "pml-hold", "neighbour-wait"] {
        for (tag, words, clock) in [
            ("fitted", "native, fitted to the cores (collapse+neighbour)", "wall time"),
            ("sim", "simulated", "virtual time"),
        ] {
            let stem = format!("{kind}-neighbours-heavy-{tag}");
            assert!(stems.contains(&stem), "no {stem}: {stems:?}");
            let prose = svg_prose(&dir.join(format!("{stem}.svg")));
            assert!(prose.contains(words) && prose.contains(clock), "{stem}: {prose}");
        }
    }
    // Every per-workload stem names how its cells were measured.
    for stem in
        stems.iter().filter(|s| ["latency-cdf-", "pml-hold-", "neighbour-wait-"].iter().any(|k| s.starts_with(k)))
    {
        assert!(["-native", "-fitted", "-sim"].iter().any(|t| stem.ends_with(t)), "{stem}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn coinciding_series_stay_visible_and_are_named() {
    let (dir, _) = rendered("coinciding");
    for stem in ["cpus-pml-hold", "cpus-ipis"] {
        let path = dir.join(format!("{stem}.svg"));
        let prose = svg_prose(&path);
        assert!(prose.contains(&format!("{PATCH} and {SWEPT} identical")), "{stem}: {prose}");
        assert!(!prose.contains(&format!("{BASE} and")), "BASE differs: {prose}");
        let lines = |colour: &str| -> Vec<Vec<(f64, f64)>> {
            shapes(&path, "stroke", colour)
                .into_iter()
                .filter(|(tag, a)| tag == "polyline" && a.get("stroke-width").map(String::as_str) == Some("2"))
                .map(|(_, a)| polyline_points(&a))
                .collect()
        };
        // PATCH's line is whole; SWEPT's, over it, in dashes.
        assert!(lines(PATCH_COLOUR).iter().any(|l| l.len() == SWEEP_CPUS.len()), "{stem}: PATCH solid");
        let swept = lines(SWEPT_COLOUR);
        assert!(swept.iter().all(|l| l.len() <= 4), "{stem}: SWEPT has no solid line: {swept:?}");
        let dashes = swept.iter().filter(|l| l.len() == 2 && l[0].0 != l[1].0).count();
        assert!(dashes >= 10, "{stem}: SWEPT dashed, {dashes} dashes");
        // Their markers differ: PATCH's filled squares, SWEPT's hollow
        // triangles around them.
        let filled = shapes(&path, "fill", PATCH_COLOUR).iter().filter(|(tag, _)| tag == "rect").count();
        assert!(filled > SWEEP_CPUS.len(), "{stem}: PATCH's squares, {filled}");
        let hollow = swept.iter().filter(|l| l.len() == 4 && l[0] == l[3]).count();
        assert!(hollow > SWEEP_CPUS.len(), "{stem}: SWEPT's hollow triangles, {hollow}");
    }
    // Series that differ are not called identical.
    let latency = svg_prose(&dir.join("latency-cdf-fault-storm-native.svg"));
    assert!(!latency.contains("identical") && !latency.contains("coincide"), "{latency}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_timeline_has_a_lane_for_every_cpu_the_violation_names_and_its_full_text() {
    let (dir, _) = rendered("timeline");
    let path = dir.join("timeline-v2-flush-bool-recheck-always-true.svg");
    let texts = svg_texts(&path);
    for want in [
        "CPU0",
        "collapse",
        "CPU1",
        "neighbour",
        "CPU2",
        "reader",
        "stale-tlb found at step 12",
        "step 2 (clear)",
        "ptep_clear idx 0..2 (×3)",
        "pml held",
        "tlb fill idx 5 (still cached)",
    ] {
        assert!(texts.iter().any(|t| t == want), "timeline lacks {want:?}: {texts:?}");
    }
    // The violation in full (wrapped, never cut), and the replay.
    let violation = &counterexample().violations[0];
    let prose = svg_prose(&path);
    assert!(prose.contains(&violation.to_string()), "{prose}");
    assert!(prose.contains("replay: collapse-bench check --policy v2-flush-bool --replay abc123"), "{prose}");
    // The labels of one row never run into each other, even by a lower
    // bound of their width (half an em a character).
    let labels: Vec<SvgText> = svg_text_elements(&path).into_iter().filter(|t| t.y > 110.0 && t.y < 520.0).collect();
    for a in &labels {
        for b in labels.iter().filter(|b| (b.y - a.y).abs() < 1.0 && b.x > a.x) {
            let width = a.text.chars().count() as f64 * a.size * 0.5;
            assert!(a.x + width <= b.x, "{a:?} runs into {b:?}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_crowded_timeline_keeps_every_label_whole() {
    // A long replay: twenty steps of the collapse, twelve UFFDIO_COPYs.
    let mut r = results();
    let cx = r.verdicts[1].check.first.as_mut().unwrap();
    let CounterexampleTimeline::Events { events, .. } = &mut cx.timeline else { unreachable!() };
    let ptl = TimelineLock { class: LockClass::PteLock, name: "ptl (PTE table 3)".into() };
    let violating = events.pop().unwrap();
    for k in 0..12u16 {
        let step = 20 + 3 * u64::from(k);
        events.extend([
            TimelineEntry { step, cpu: 1, event: TimelineEvent::Lock { lock: ptl.clone() } },
            TimelineEntry {
                step: step + 1,
                cpu: 1,
                event: TimelineEvent::InstallAnon { idx: 300 + k, pte: Pte::NONE },
            },
            TimelineEntry { step: step + 2, cpu: 1, event: TimelineEvent::Unlock { lock: ptl.clone() } },
            TimelineEntry { step: step + 1, cpu: 0, event: TimelineEvent::Returned { result: ScanResult::Fail } },
        ]);
    }
    events.sort_by_key(|e| e.step);
    events.push(TimelineEntry { step: 80, ..violating });
    let dir = temp_dir("crowded");
    let stems = render_all(&r, &dir).unwrap();
    let stem = stems.iter().find(|s| s.starts_with("timeline-")).unwrap();
    let path = dir.join(format!("{stem}.svg"));
    check_png(&dir.join(format!("{stem}.png")));
    let texts = svg_texts(&path);
    assert!(texts.iter().all(|t| !t.ends_with('…') && !t.ends_with("...")), "{texts:?}");
    // The installs, one label for the run (the text timeline folds them too).
    assert!(texts.iter().any(|t| t == "install anon idx 300..311 (×12, one per marker)"), "{texts:?}");
    // Whatever did not fit over its marker is a numbered note under the
    // plot, in full.
    let prose = svg_prose(&path);
    for note in texts.iter().filter(|t| t.starts_with('[') && t[1..].starts_with(|c: char| c.is_ascii_digit())) {
        assert!(note.contains("CPU") && note.contains("step"), "{note}");
    }
    assert!(prose.contains(&counterexample().violations[0].to_string()), "{prose}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_data_leaves_plots_out() {
    let dir = temp_dir("empty");
    let mut r = results();
    r.cells.clear();
    r.scaling.clear();
    r.cpu_sweep = None;
    r.verdicts.clear();
    assert_eq!(render_all(&r, &dir).unwrap(), Vec::<String>::new());

    // A cell without runs, runs without histograms, a verdict without a
    // counterexample, one with an empty timeline and one from a schema-1
    // file (its printed lines are not drawn).
    let mut r = results();
    r.cells[0].runs.clear();
    for run in &mut r.cells[1].runs {
        run.metrics = MetricsSummary::default();
    }
    r.cells.truncate(2);
    r.scaling.iter_mut().flat_map(|p| &mut p.runs).for_each(|run| run.metrics.lock_wait_ns.clear());
    // A sweep without neighbours, and one point without any collapse.
    let sweep = r.cpu_sweep.as_mut().unwrap();
    sweep.points.iter_mut().flat_map(|p| &mut p.runs).for_each(|run| run.metrics.lock_wait_ns.clear());
    sweep.points[0].runs.iter_mut().for_each(|run| run.collapses = 0);
    let mut from_schema_1 = r.verdicts[1].clone();
    from_schema_1.workload = W1.into();
    from_schema_1.check.first.as_mut().unwrap().timeline =
        CounterexampleTimeline::Lines(vec!["step  CPU0 collapse".into(), "      *** stale-tlb".into()]);
    if let Some(CounterexampleTimeline::Events { events, .. }) =
        r.verdicts[1].check.first.as_mut().map(|cx| &mut cx.timeline)
    {
        events.clear();
    }
    r.verdicts.push(from_schema_1);
    let stems = render_all(&r, &dir).unwrap();
    assert_eq!(
        stems,
        ["throughput-native", "scaling-pml-hold-sim", "cpus-collapse-latency", "cpus-pml-hold", "cpus-ipis"]
    );
    for stem in &stems {
        check_png(&dir.join(format!("{stem}.png")));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_cpu_plots_without_a_cpu_sweep() {
    let dir = temp_dir("no-sweep");
    let with = render_all(&results(), &dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut r = results();
    r.cpu_sweep = None;
    let without = render_all(&r, &dir).unwrap();
    let expected: Vec<&String> = with.iter().filter(|s| !s.starts_with("cpus-")).collect();
    assert_eq!(without.iter().collect::<Vec<_>>(), expected);
    assert_eq!(with.len() - without.len(), 4);
    let written = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("cpus-"))
        .count();
    assert_eq!(written, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stems_are_file_safe() {
    assert_eq!(file_stem("v2-flush-bool:recheck_always=true"), "v2-flush-bool-recheck-always-true");
    assert_eq!(file_stem("Neighbours/heavy"), "neighbours-heavy");
    assert_eq!(file_stem("a b.c"), "a-b-c");
}
