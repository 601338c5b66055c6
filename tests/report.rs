//! `report` and `compare` as a user runs them.

mod common;

use common::{bench, scratch};
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn quick_report_writes_every_output() {
    let dir = scratch("quick");
    let out = dir.join("report");
    let o = bench(&[
        "report",
        "--quick",
        "-w",
        "uffd-private",
        "-p",
        "v1,v2-flush-bool",
        "--schedules",
        "40",
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(out.join("report.txt")).unwrap();
    // The terminal gets the gist: verdicts, reproduced changes, where the
    // files are; the whole text is report.txt.
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(summary.starts_with("verdicts (every interleaving of the scope; sampled schedules):\n"), "{summary}");
    let squeezed = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        summary.lines().any(|l| squeezed(l) == "v1 uffd-private verified, ok; pml-contended verified, ok"),
        "{summary}"
    );
    assert!(summary.contains("headline changes against v1 that a second run reproduces (*):\n"), "{summary}");
    assert!(summary.contains("headline figures too noisy here to quote (~): "), "{summary}");
    assert!(summary.contains(&format!("{}/report.txt (", out.display())), "{summary}");
    assert!(summary.lines().count() < 40, "{summary}");
    // Progress: a line per finished run or check on stderr (not a
    // terminal). uffd-private has 3 threads: on fewer cores it is fitted
    // natively and simulated whole, else native as it is.
    let fits = bench_core::machine::available_cores() >= 3;
    let err = String::from_utf8_lossy(&o.stderr);
    let first = if fits { "measure native" } else { "measure fitted" };
    assert!(err.contains(&format!("] {first} v1 on uffd-private, run 1\n")), "{err}");
    assert!(err.contains("] explore v1 on uffd-private scope\n"), "{err}");
    assert!(text.lines().all(|l| l.len() <= 72 && l.is_ascii()), "{text}");
    assert!(text.contains("v1") && text.contains("v2-flush-bool") && text.contains("collapses_per_s"));
    assert!(text.contains("pre-fix") && text.contains("table-freed-live"), "verdicts section: {text}");
    let results: reports::schema::ReportResults =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results.base, "v1");
    assert_eq!(results.cells.len(), if fits { 2 } else { 4 });
    assert!(results.cells.iter().all(|c| c.runs.len() == results.repetitions as usize));
    // Five policies on two checked workloads, each explored on its scope
    // (complete, so `verified` or FAIL), then sampled.
    assert_eq!(results.verdicts.len(), 20);
    for v in &results.verdicts {
        let word = v.check.verdict.as_str();
        match &v.check.exhaustive {
            Some(e) => assert!(e.complete && ["verified", "FAIL"].contains(&word), "{v:?}"),
            None => assert!(["ok", "FAIL"].contains(&word), "{v:?}"),
        }
    }
    assert_eq!(results.verdicts.iter().filter(|v| v.check.exhaustive.is_some()).count(), 10);
    assert!(text.contains("uffd-private, every interleaving of its scope"), "{text}");
    assert!(text.contains("pre-fix on uffd-private scope: table-freed-live first in"), "{text}");
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("collapses_per_s"));
    // Per clock and per way of measuring: native or fitted, and (where
    // uffd-private does not fit the cores) simulated.
    let native = if fits { "native" } else { "fitted" };
    let mut stems = vec![
        "throughput-native".to_owned(),
        format!("latency-cdf-uffd-private-{native}"),
        format!("pml-hold-uffd-private-{native}"),
    ];
    if !fits {
        stems.extend(["throughput-sim".to_owned(), "latency-cdf-uffd-private-sim".to_owned()]);
    }
    for stem in &stems {
        assert!(out.join(format!("{stem}.svg")).exists() && out.join(format!("{stem}.png")).exists(), "{stem}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "no staging files left: {leftovers:?}");

    // compare the report with itself: same table layout, no significant change.
    let json = out.join("results.json");
    let o = bench(&["compare", s(&json), s(&json)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cmp = String::from_utf8_lossy(&o.stdout);
    assert!(cmp.contains("%stddev"), "{cmp}");
    let row = cmp.lines().find(|l| l.ends_with("collapses_per_s")).expect("collapses_per_s row");
    assert!(row.contains(" 0.0% ") || row.contains(" 0.0%~ "), "a file compared with itself changes nothing: {row}");
    assert!(!cmp.lines().any(|l| l.contains("%*")), "nothing flagged: {cmp}");
}

#[test]
fn bad_input_exits_2() {
    let dir = scratch("bad");
    let out = dir.join("report");
    for (args, needle) in [
        (vec!["report", "-w", "nope"], "uffd-private"),
        (vec!["report", "--base", "v3"], "--base"),
        (vec!["report", "--schedules", "0"], "--schedules"),
    ] {
        let mut all = args.clone();
        all.extend(["--out", s(&out)]);
        let o = bench(&all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?}: nothing written");
    }
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"schema\": 1, \"runs\": [").unwrap();
    let o = bench(&["compare", s(&bad), s(&bad)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.json") && err.contains("not JSON"), "{err}");
}
