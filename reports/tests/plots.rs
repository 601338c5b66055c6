//! The report's plots: every file is written, decodes, and shows something.

use bench_core::kernel::Step;
use bench_core::metrics::{HistSummary, MetricsSummary};
use bench_core::results::{Environment, PolicyRun, TimelineEntry, TimelineEvent, TimelineLock};
use bench_core::{CostModel, LockClass, Oracle, Role, Violation};
use reports::plots::{file_stem, render_all, HEIGHT, WIDTH};
use reports::schema::{
    Cell, CounterexampleDoc, CounterexampleTimeline, CpuSweep, Measured, PolicyCheck, ReportResults, ScalingPoint,
    Verdict, SCHEMA,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const BASE: &str = "v1-baseline";
const PATCH: &str = "v2-flush-bool:recheck_always=true";
const W1: &str = "fault-storm";
const W2: &str = "Neighbours/heavy";
/// A policy only the CPU sweep has.
const SWEPT: &str = "v2-step3-down";
/// CPU counts of the CPU sweep (the quick report's).
const SWEEP_CPUS: [u32; 3] = [2, 8, 32];

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

fn cell(workload: &str, policy: &str, speed: f64, neighbours: bool) -> Cell {
    Cell {
        workload: workload.into(),
        policy: policy.into(),
        measured: Measured::Native,
        runs: [0.95, 1.0, 1.07].iter().map(|f| run(policy, workload, 4, speed * f, neighbours)).collect(),
    }
}

fn counterexample() -> CounterexampleDoc {
    let pml = TimelineLock { class: LockClass::PmdLock, name: "pml (PMD table 0)".into() };
    let ptl = TimelineLock { class: LockClass::PteLock, name: "ptl (PTE table 3)".into() };
    let mut events = vec![
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
            message: "CPU 1 read page 12 through a stale TLB entry".into(),
            cached: vec![],
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
            roles: vec![Role::Collapse, Role::Neighbour],
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
/// every collapse sends `flushes` IPIs to each other CPU.
fn cpu_sweep() -> CpuSweep {
    let points = [(BASE, 1.0, 2), (PATCH, 1.6, 1), (SWEPT, 2.0, 1)]
        .iter()
        .flat_map(|&(policy, speed, flushes)| {
            SWEEP_CPUS.map(|cpus| {
                let mut run = run(policy, "pml-contended", cpus as usize, speed / f64::from(cpus).sqrt(), true);
                run.cores = cpus as usize;
                run.metrics.counters.collapse_flushes = flushes * run.collapses;
                run.metrics.counters.collapse_ipis = flushes * u64::from(cpus - 1) * run.collapses;
                ScalingPoint {
                    workload: "pml-contended".into(),
                    policy: policy.into(),
                    knob: "cpus".into(),
                    value: cpus,
                    threads: cpus,
                    measured: Measured::Simulated,
                    runs: vec![run],
                }
            })
        })
        .collect();
    CpuSweep { workload: "pml-contended".into(), virtual_seconds: 0.01, costs: CostModel::default(), points }
}

fn results() -> ReportResults {
    let scaling = [BASE, PATCH]
        .iter()
        .flat_map(|&policy| {
            [1u32, 2, 4].map(|n| ScalingPoint {
                workload: W2.into(),
                policy: policy.into(),
                knob: "threads.neighbours".into(),
                value: n,
                threads: n + 1,
                measured: Measured::Native,
                runs: vec![run(policy, W2, n as usize + 1, if policy == BASE { 1.0 } else { 1.6 }, true)],
            })
        })
        .collect();
    ReportResults {
        schema: SCHEMA,
        tool: "collapse-bench test".into(),
        environment: Environment::default(),
        command: "collapse-bench report --quick".into(),
        base: BASE.into(),
        quick: true,
        repetitions: 3,
        run_seconds: 1.0,
        sim_seconds: None,
        sim_costs: None,
        cells: vec![
            cell(W1, BASE, 1.0, false),
            cell(W1, PATCH, 1.4, false),
            // An order of magnitude slower: throughput draws a panel per workload.
            cell(W2, BASE, 0.08, true),
            cell(W2, PATCH, 0.12, true),
        ],
        scaling,
        cpu_sweep: Some(cpu_sweep()),
        verdicts: vec![
            Verdict { workload: W2.into(), check: check(BASE, None) },
            Verdict { workload: W2.into(), check: check(PATCH, Some(counterexample())) },
        ],
        watchdog_s: None,
        failures: vec![],
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cb-plots-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
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

/// Parse an SVG; return the text of its `<text>` elements.
fn svg_texts(path: &Path) -> Vec<String> {
    let src = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&src).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.descendants().filter(|d| d.is_text()).filter_map(|d| d.text()).collect::<String>().trim().to_owned())
        .collect()
}

/// The distinct x positions of an SVG's point markers (circles), in order.
fn marker_xs(path: &Path) -> Vec<f64> {
    let src = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&src).unwrap();
    let mut xs: Vec<f64> = doc
        .descendants()
        .filter(|n| n.has_tag_name("circle"))
        .map(|n| n.attribute("cx").unwrap().parse().unwrap())
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    xs
}

#[test]
fn every_plot_renders_as_png_and_svg() {
    let dir = temp_dir("all");
    let stems = render_all(&results(), &dir).unwrap();
    let expected = [
        ("throughput", "Collapse throughput"),
        ("latency-cdf-fault-storm", "Collapse latency CDF: fault-storm"),
        ("pml-hold-fault-storm", "pml hold time of the collapse: fault-storm"),
        ("latency-cdf-neighbours-heavy", "Collapse latency CDF: Neighbours/heavy"),
        ("pml-hold-neighbours-heavy", "pml hold time of the collapse: Neighbours/heavy"),
        ("neighbour-wait-neighbours-heavy", "Neighbour pml wait CDF: Neighbours/heavy"),
        ("scaling-pml-hold", "pml hold p99 over actor threads: Neighbours/heavy"),
        ("scaling-neighbour-wait", "Neighbour pml wait p99 over actor threads: Neighbours/heavy"),
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
        let texts = svg_texts(&dir.join(format!("{stem}.svg")));
        assert!(texts.iter().any(|t| t.starts_with(title)), "{stem}.svg has no title {title:?}: {texts:?}");
    }
    // Legends and axes name what is drawn.
    let cdf = svg_texts(&dir.join("latency-cdf-fault-storm.svg"));
    assert!(cdf.iter().any(|t| t.starts_with(BASE)) && cdf.iter().any(|t| t.starts_with(PATCH)), "{cdf:?}");
    assert!(cdf.iter().any(|t| t.contains("µs")), "{cdf:?}");
    // The CPU axis is labelled at powers of two, its points evenly spaced;
    // the policy only the sweep has is in the legend.
    let cpus = svg_texts(&dir.join("cpus-pml-hold.svg"));
    let mut integers: Vec<u32> = cpus.iter().filter_map(|t| t.parse().ok()).filter(|&n| n > 0).collect();
    integers.sort_unstable();
    assert_eq!(integers, [2, 4, 8, 16, 32], "{cpus:?}");
    assert!(cpus.iter().any(|t| t == "simulated CPUs (log2 scale)"), "{cpus:?}");
    assert!([BASE, PATCH, SWEPT].iter().all(|p| cpus.iter().any(|t| t == p)), "{cpus:?}");
    let xs = marker_xs(&dir.join("cpus-pml-hold.svg"));
    assert_eq!(xs.len(), SWEEP_CPUS.len(), "one x per CPU count: {xs:?}");
    assert!(((xs[1] - xs[0]) - (xs[2] - xs[1])).abs() <= 1.0, "2, 8, 32 CPUs evenly spaced: {xs:?}");
    let timeline = svg_texts(&dir.join("timeline-v2-flush-bool-recheck-always-true.svg"));
    for want in
        ["CPU0 collapse", "CPU1 neighbour", "stale-tlb", "step 2 (clear)", "ptep_clear idx 0..2 (×3)", "pml held"]
    {
        assert!(timeline.iter().any(|t| t == want), "timeline lacks {want:?}: {timeline:?}");
    }
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
    sweep.points[0].runs[0].collapses = 0;
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
    assert_eq!(stems, ["throughput", "scaling-pml-hold", "cpus-collapse-latency", "cpus-pml-hold", "cpus-ipis"]);
    for stem in &stems[2..] {
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
