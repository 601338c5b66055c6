//! The report's kernel history section: rendered from fixed fixtures
//! (golden text, exact table rows, the 72-column limit), rows of versions
//! the build does not register, and the schema: a report with a history
//! round-trips through its JSON, and files without one (schema 3 and
//! before) still load, with no section.
//!
//! `UPDATE_GOLDEN=1 cargo test -p reports --test history` rewrites the
//! golden texts (inspect the diff!).

use bench_core::metrics::{HistSummary, MetricsSummary};
use bench_core::oracle::Violation;
use bench_core::results::PolicyRun;
use reports::compare::load;
use reports::history::{history_section, NOT_REGISTERED};
use reports::robot::{report_text, WIDTH};
use reports::schema::{
    Cell, CounterexampleDoc, CounterexampleTimeline, ExhaustiveDoc, HistoryCell, HistoryVersion, KernelHistory,
    Measured, MmapLockCost, OracleCount, PolicyCheck, ReportResults, SCHEMA,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------- fixtures

const PRESETS: [&str; 5] = ["uffd-private", "pml-contended", "pt-reclaim", "retract", "guard-file"];
/// The --quick bound of the fixture's slow scopes.
const BOUNDED: [&str; 2] = ["pt-reclaim", "retract"];

/// What a version's exploration of one scope found: `None` nothing, else
/// the rule broken (gravest) and how many interleavings broke it.
type Found = Option<(&'static str, u64)>;

/// The exhaustive check of `policy` on `preset`'s scope: `interleavings`
/// explored (under a bound of 2 for [`BOUNDED`]), `found` broken.
fn explored(policy: &str, preset: &str, interleavings: u64, found: Found) -> PolicyCheck {
    let bound = BOUNDED.contains(&preset).then_some(2);
    let verdict = match (found, bound) {
        (Some(_), _) => "FAIL",
        (None, Some(_)) => "bounded",
        (None, None) => "verified",
    };
    let mut by_oracle = BTreeMap::new();
    let mut first = None;
    if let Some((oracle, n)) = found {
        by_oracle.insert(oracle.to_owned(), OracleCount { schedules: n, first: 14 });
        // A milder rule broken on the way: never the one the note names.
        by_oracle.insert("accounting".to_owned(), OracleCount { schedules: n, first: 14 });
        let token = format!("s2-0-0x14.1x9.0x{:x}.2x2", interleavings % 251);
        first = Some(CounterexampleDoc {
            index: 0,
            violations: vec![Violation {
                oracle: serde_json::from_value(serde_json::json!(oracle)).unwrap(),
                cpu: Some(0),
                step: Some("step 4 (remove table)".into()),
                message: format!("{oracle} on {preset}"),
                cached: vec![],
                freed_live: vec![],
            }],
            replay: format!("collapse-bench check -p {policy} -w {preset} --exhaustive --seed 1 --replay {token}"),
            token,
            steps: 40,
            original_steps: 90,
            runs: 5,
            original_runs: 7,
            shrink_replays: 30,
            timeline: CounterexampleTimeline::Lines(vec![]),
        });
    }
    PolicyCheck {
        policy: policy.into(),
        params: serde_json::json!({}),
        verdict: verdict.into(),
        schedules: interleavings,
        steps: interleavings * 60,
        step_limits: 0,
        search_s: 0.2,
        first_found_s: found.map(|_| 0.01),
        shrink_s: 0.0,
        by_oracle,
        first,
        exhaustive: Some(ExhaustiveDoc {
            scope: format!("{preset}'s scope"),
            interleavings,
            runs: interleavings + 100,
            sleep_blocked: 100,
            bound,
            bound_hit: bound.is_some(),
            complete: bound.is_none(),
        }),
    }
}

/// A version's row: one cell per preset, `found` in [`PRESETS`] order.
fn row(policy: &str, label: &str, found: [Found; 5]) -> HistoryVersion {
    let cells = PRESETS
        .iter()
        .zip(found)
        .zip([828, 8322, 2808, 2632, 242])
        .map(|((preset, found), n)| HistoryCell {
            workload: (*preset).into(),
            check: Some(explored(policy, preset, n, found)),
            error: None,
        })
        .collect();
    HistoryVersion { policy: policy.into(), label: label.into(), registered: true, cells }
}

fn unregistered(policy: &str) -> HistoryVersion {
    HistoryVersion { policy: policy.into(), label: policy.into(), registered: false, cells: vec![] }
}

const TFL: Found = Some(("table-freed-live", 142));
const UAF: Found = Some(("use-after-free", 202));

/// One run of `policy` on shmem-shared, `k` of the cell's runs: a
/// thousand faults, of which `waited` waited `wait_ns` (p99) for
/// `mmap_lock`; the collapse held it `hold_ns` (p99).
fn mmap_run(policy: &str, k: u64, waited: u64, wait_ns: u64, hold_ns: u64) -> PolicyRun {
    let hist = |count: u64, p99: u64| HistSummary { count, p50: p99 / 2, p99, max: p99 * 2, ..Default::default() };
    let mut metrics = MetricsSummary::default();
    metrics.counters.ops.insert("faulter".into(), 1000);
    metrics.lock_hold_ns.insert("collapse/mmap_lock".into(), hist(200, hold_ns + 100 * k));
    if waited > 0 {
        metrics.lock_wait_ns.insert("faulter/mmap_lock".into(), hist(waited + k, wait_ns + 100 * k));
    }
    PolicyRun {
        policy: policy.into(),
        params: serde_json::json!({}),
        workload: "shmem-shared".into(),
        seed: 1 + k,
        wall_s: 0.08,
        threads: 2,
        cores: 2,
        pinned: true,
        oversubscribed: false,
        collapses: 200,
        collapses_per_s: 2500.0,
        metrics,
        locks: BTreeMap::new(),
        violations: vec![],
        violations_total: 0,
        ended_by: None,
    }
}

/// The `mmap_lock` cells of `policies` (name, faults that waited, wait
/// p99 ns, hold p99 ns), fitted and simulated, five runs each.
fn mmap_cells(policies: &[(&str, u64, u64, u64)]) -> Vec<Cell> {
    let mut cells = vec![];
    for measured in [Measured::Fitted { actors: "collapse+faulter".into() }, Measured::Simulated] {
        let scale = if measured == Measured::Simulated { 4 } else { 1 };
        for &(policy, waited, wait, hold) in policies {
            let runs = (0..5).map(|k| mmap_run(policy, k, waited, wait / scale, hold / scale)).collect();
            cells.push(Cell {
                workload: "shmem-shared".into(),
                policy: policy.into(),
                measured: measured.clone(),
                runs,
            });
        }
    }
    cells
}

/// The history as this build makes it today: `v6.1` and `v6.13` not
/// registered; `--quick`, so `pt-reclaim` and `retract` bounded.
fn history_today() -> KernelHistory {
    KernelHistory {
        presets: PRESETS.iter().map(|p| (*p).into()).collect(),
        versions: vec![
            unregistered("v6.1"),
            row("pre-fix", "pre-fix", [TFL, TFL, UAF, TFL, TFL]),
            row("v1", "v1 (6.6)", [None, None, UAF, None, TFL]),
            unregistered("v6.13"),
        ],
        mmap_lock: Some(MmapLockCost {
            workload: "shmem-shared".into(),
            cells: mmap_cells(&[("pre-fix", 0, 0, 48_000), ("v1", 0, 0, 50_000)]),
        }),
    }
}

/// Every version registered: v6.1 (faults wait for its write lock) and
/// v6.13, whose exploration of `retract` did not finish.
fn history_registered() -> KernelHistory {
    let mut h = history_today();
    h.versions[0] = row("v6.1", "v6.1", [None, None, None, None, None]);
    let mut v613 = row("v6.13", "v6.13", [None, None, None, None, TFL]);
    v613.cells[3] = HistoryCell {
        workload: "retract".into(),
        check: None,
        error: Some("FAILED v6.13 on retract (kernel history): panic: boom".into()),
    };
    h.versions[3] = v613;
    h.mmap_lock = Some(MmapLockCost {
        workload: "shmem-shared".into(),
        cells: mmap_cells(&[
            ("v6.1", 120, 40_000, 45_000),
            ("pre-fix", 0, 0, 48_000),
            ("v1", 0, 0, 50_000),
            ("v6.13", 0, 0, 49_000),
        ]),
    });
    h
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The report fixture `robot` makes (no history: schema 3's layout), as
/// a `--quick` report with `history`.
fn report(history: Option<KernelHistory>) -> ReportResults {
    let json = std::fs::read_to_string(fixtures().join("report.json")).unwrap();
    let mut r: ReportResults = serde_json::from_str(&json).unwrap();
    assert_eq!(r.kernel_history, None, "the robot fixture has no history");
    r.quick = true;
    r.kernel_history = history;
    r
}

/// `actual` equals the stored file (rewritten under UPDATE_GOLDEN).
fn golden(name: &str, actual: &str) {
    let path = fixtures().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(expected == actual, "{} differs:\n--- expected\n{expected}\n--- actual\n{actual}", path.display());
}

fn assert_width(text: &str) {
    for (i, l) in text.lines().enumerate() {
        assert!(l.len() <= WIDTH, "line {} is {} columns:\n{l}", i + 1, l.len());
        assert!(l.is_ascii(), "line {} is not ASCII:\n{l}", i + 1);
        assert_eq!(l, l.trim_end(), "line {} has trailing blanks", i + 1);
    }
}

/// The lines of `text` from the one that starts with `first`, up to the
/// first blank one.
fn block<'a>(text: &'a str, first: &str) -> Vec<&'a str> {
    let start = text.find(&format!("\n{first}")).unwrap_or_else(|| panic!("no {first:?} in\n{text}")) + 1;
    text[start..].lines().take_while(|l| !l.is_empty()).collect()
}

// ---------------------------------------------------------------- tests

#[test]
fn the_section_renders_as_its_golden_text() {
    let r = report(Some(history_today()));
    let section = history_section(&r).unwrap();
    assert_width(&section);
    golden("history.txt", &section);
    // The table: a row per version, a column per preset, the bounded
    // ones starred; failures numbered row by row.
    assert_eq!(
        block(&section, "version ")[..5],
        [
            "version   uffd-private  pml-contended  pt-reclaim*  retract*  guard-file",
            "v6.1      not registered in this build",
            "pre-fix   FAIL [1]      FAIL [2]       FAIL [3]     FAIL [4]  FAIL [5]",
            "v1 (6.6)  verified      verified       FAIL [6]     bounded   FAIL [7]",
            "v6.13     not registered in this build",
        ]
    );
    let prose = section.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        prose.contains("* explored under a preemption bound (--quick; the full report explores every"),
        "{section}"
    );
    assert!(prose.contains("pt-reclaim within 2, retract within 2."), "{section}");
    assert!(prose.contains("not registered in this build: this build has no policy v6.1 or v6.13"), "{section}");
    // A note per failure: the gravest rule (not `accounting`, also
    // broken), where, how often, and the command that replays it.
    assert_eq!(section.matches("\n[").count(), 7, "{section}");
    assert_eq!(
        block(&section, "[6]"),
        [
            "[6] v1 (6.6) on pt-reclaim: FAIL use-after-free in 202 of 2808",
            "    interleavings within 2 preemptions (first #14)",
            "    collapse-bench check -p v1 -w pt-reclaim --exhaustive --seed 1 \\",
            "        --replay s2-0-0x14.1x9.0x2f.2x2",
        ]
    );
    assert!(!section.contains("FAIL accounting"), "{section}");
    // The mmap_lock figures per way of measuring: faults never wait for a
    // collapse that holds mmap_lock for read.
    assert!(prose.contains("before 6.6 the collapse's caller held mmap_lock for write, so every fault"), "{section}");
    assert!(section.contains("shmem-shared, native, fitted to this machine's 4 cores:\n  collapse+faulter"));
    assert!(section.contains("shmem-shared, simulated: every actor on a virtual CPU"), "{section}");
    let fitted = block(&section, "version     faults waited");
    assert_eq!(
        fitted,
        [
            "version     faults waited  fault wait p99_us  collapse hold p99_us",
            "v6.1      not registered in this build",
            "pre-fix              0.0%        0.00                 48.20",
            "v1 (6.6)             0.0%        0.00                 50.20",
            "v6.13     not registered in this build",
        ]
    );
}

#[test]
fn registered_versions_fill_their_rows() {
    let r = report(Some(history_registered()));
    let section = history_section(&r).unwrap();
    assert_width(&section);
    assert!(!section.contains(NOT_REGISTERED), "{section}");
    assert_eq!(
        block(&section, "version ")[..5],
        [
            "version  uffd-private pml-contended pt-reclaim* retract*  guard-file",
            "v6.1     verified     verified      bounded     bounded   verified",
            "pre-fix  FAIL [1]     FAIL [2]      FAIL [3]    FAIL [4]  FAIL [5]",
            "v1 (6.6) verified     verified      FAIL [6]    bounded   FAIL [7]",
            "v6.13    verified     verified      bounded     error [8] FAIL [9]",
        ]
    );
    assert!(section.contains("\n[8] v6.13 on retract: not checked: FAILED v6.13 on retract (kernel\n"), "{section}");
    // v6.1's faults wait for its write lock: 120 of 1000 (the median run
    // adds 2), p99 of those that waited.
    let fitted = block(&section, "version     faults waited");
    assert_eq!(fitted[1], "v6.1                12.2%       40.20                 45.20");
    assert_eq!(fitted[4], "v6.13                0.0%        0.00                 49.20");
    let simulated = &section[section.find("shmem-shared, simulated").unwrap()..];
    let rows = block(simulated, "version     faults waited");
    assert_eq!(rows[1], "v6.1                12.2%       10.20 +-  2%          11.45 +-  2%");
}

#[test]
fn the_report_places_the_section_after_the_verdicts() {
    let r = report(Some(history_today()));
    let text = report_text(&r);
    assert_width(&text);
    let verdicts = text.find("verdicts (collapse-bench check").unwrap();
    let history = text.find("kernel history: the checker on each version's collapse").unwrap();
    assert!(verdicts < history, "{text}");
    assert!(text.ends_with(&history_section(&r).unwrap()), "the last section, without failures");
}

#[test]
fn a_history_round_trips_and_older_files_load_without_one() {
    let r = report(Some(history_registered()));
    let json = serde_json::to_string_pretty(&r).unwrap();
    let back: ReportResults = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    // Unregistered versions have no cells in the file; an errored cell
    // no check.
    let v: serde_json::Value = serde_json::to_value(report(Some(history_today()))).unwrap();
    assert_eq!(
        v["kernel_history"]["versions"][0],
        serde_json::json!({"policy": "v6.1", "label": "v6.1", "registered": false})
    );
    assert_eq!(SCHEMA, 4);
    // A schema-3 file: no `kernel_history`, and no section.
    let path = fixtures().join("report.json");
    let mut old: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    old["schema"] = serde_json::json!(3);
    assert!(old.get("kernel_history").is_none());
    let r: ReportResults = serde_json::from_value(old.clone()).unwrap();
    assert_eq!(r.kernel_history, None);
    assert_eq!(history_section(&r), None);
    assert!(!report_text(&r).contains("kernel history"));
    // And `compare` reads it.
    let dir = std::env::temp_dir().join(format!("cb-history-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("report-schema3.json");
    std::fs::write(&file, old.to_string()).unwrap();
    assert_eq!(load(&file).unwrap().cells.len(), r.cells.len());
    // A history without its mmap_lock part loads too, and renders the table.
    let mut v = serde_json::to_value(report(Some(history_today()))).unwrap();
    v["kernel_history"].as_object_mut().unwrap().remove("mmap_lock");
    let r: ReportResults = serde_json::from_value(v).unwrap();
    let section = history_section(&r).unwrap();
    assert!(section.contains("pre-fix   FAIL [1]") && !section.contains("mmap_lock: page-cache faults"), "{section}");
}
