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
    // Every registered policy on two checked workloads, each explored on
    // its scope (complete, so `verified` or FAIL), then sampled.
    assert_eq!(results.verdicts.len(), 4 * policies::registry().len());
    for v in &results.verdicts {
        let word = v.check.verdict.as_str();
        match &v.check.exhaustive {
            Some(e) => assert!(e.complete && ["verified", "FAIL"].contains(&word), "{v:?}"),
            None => assert!(["ok", "FAIL"].contains(&word), "{v:?}"),
        }
    }
    assert_eq!(
        results.verdicts.iter().filter(|v| v.check.exhaustive.is_some()).count(),
        2 * policies::registry().len()
    );
    assert!(text.contains("uffd-private, every interleaving of its scope"), "{text}");
    assert!(text.contains("pre-fix on uffd-private scope: table-freed-live first in"), "{text}");
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("collapses_per_s"));
    kernel_history(&text, &html, &err, &results);
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

/// The kernel history of the quick report: every version this build
/// registers explored on the five presets' scopes (today's slow ones
/// under the quick bound), the others' rows saying so, and the
/// `mmap_lock` figures of each registered version on shmem-shared, measured
/// as the matrix measures (fitted and simulated where it does not fit the
/// cores).
fn kernel_history(text: &str, html: &str, err: &str, results: &reports::schema::ReportResults) {
    let history = &text[text.find("kernel history: the checker on each version's collapse\n").expect(text)..];
    assert!(html.contains("kernel history: the checker on each version's collapse"));
    let h = results.kernel_history.as_ref().expect("a kernel history in results.json");
    assert_eq!(h.presets, ["uffd-private", "pml-contended", "pt-reclaim", "retract", "guard-file"]);
    let versions: Vec<(&str, &str)> = h.versions.iter().map(|v| (v.policy.as_str(), v.label.as_str())).collect();
    assert_eq!(versions, [("v6.1", "v6.1"), ("pre-fix", "pre-fix"), ("v1", "v1 (6.6)"), ("v6.13", "v6.13")]);
    let row = |label: &str| -> Vec<&str> {
        let line = history.lines().find(|l| l.starts_with(&format!("{label} "))).unwrap_or_else(|| panic!("{history}"));
        // The words, without the notes' numbers.
        line[label.len()..].split_whitespace().filter(|w| !w.starts_with('[')).collect()
    };
    assert_eq!(row("pre-fix"), ["FAIL"; 5], "{history}");
    assert_eq!(row("v1 (6.6)"), ["verified", "verified", "FAIL", "bounded", "FAIL"], "{history}");
    let gravest = |policy: &str| -> Vec<String> {
        let v = h.versions.iter().find(|v| v.policy == policy).unwrap();
        v.cells
            .iter()
            .map(|c| {
                let check = c.check.as_ref().unwrap_or_else(|| panic!("{c:?}"));
                reports::history::gravest(check).map_or(check.verdict.clone(), |o| o.to_string())
            })
            .collect()
    };
    assert_eq!(
        gravest("pre-fix"),
        ["table-freed-live", "table-freed-live", "use-after-free", "table-freed-live", "table-freed-live"]
    );
    assert_eq!(gravest("v1"), ["verified", "verified", "use-after-free", "bounded", "table-freed-live"]);
    // Quick: pt-reclaim and retract within 2 preemptions, the others whole.
    let bounds: Vec<Option<u32>> =
        h.versions[2].cells.iter().map(|c| c.check.as_ref().unwrap().exhaustive.as_ref().unwrap().bound).collect();
    assert_eq!(bounds, [None, None, Some(2), Some(2), None]);
    assert!(history.contains("* explored under a preemption bound (--quick;"), "{history}");
    // A note per FAIL, each with its replay command.
    let fails =
        h.versions.iter().flat_map(|v| &v.cells).filter(|c| c.check.as_ref().unwrap().verdict == "FAIL").count();
    let notes = history.lines().filter(|l| l.starts_with('[') && l.contains(": FAIL ")).count();
    assert_eq!(notes, fails, "{history}");
    assert!(history.contains("\n    collapse-bench check -p v1 -w guard-file --exhaustive --seed 1 \\\n"), "{history}");
    assert!(err.contains("] explore v1 on pt-reclaim scope (kernel history)\n"), "{err}");
    // Versions this build does not register: a row that says so, no cells.
    let registered = |name: &str| collapse_bench::registry().iter().any(|e| e.name == name);
    for v in &h.versions {
        assert_eq!(v.registered, registered(&v.policy), "{v:?}");
        assert_eq!(v.cells.len(), if v.registered { 5 } else { 0 }, "{v:?}");
        if !v.registered {
            assert!(history.contains(&format!("\n{:<9} not registered in this build\n", v.label)), "{history}");
        }
    }
    // mmap_lock: each registered version, each way of measuring, five
    // runs; pre-fix and v1 hold it for read, so no fault ever waits.
    let cost = h.mmap_lock.as_ref().expect("mmap_lock figures");
    assert_eq!(cost.workload, "shmem-shared");
    let fits = bench_core::machine::available_cores() >= 3;
    let ways = if fits { 1 } else { 2 };
    let measured = h.versions.iter().filter(|v| v.registered).count();
    assert_eq!(
        cost.cells.len(),
        ways * measured,
        "{:?}",
        cost.cells.iter().map(|c| (&c.policy, &c.measured)).collect::<Vec<_>>()
    );
    for c in &cost.cells {
        assert_eq!(c.runs.len(), 5, "{} {:?}", c.policy, c.measured);
        assert!(c.runs.iter().all(|r| r.metrics.lock_hold_ns.contains_key("collapse/mmap_lock")), "{}", c.policy);
        if c.policy == "pre-fix" || c.policy == "v1" {
            assert!(c.runs.iter().all(|r| !r.metrics.lock_wait_ns.contains_key("faulter/mmap_lock")), "{}", c.policy);
        }
    }
    let heading = if fits { "shmem-shared, native, pinned" } else { "shmem-shared, native, fitted to this machine's" };
    assert!(history.contains(heading), "{history}");
    assert!(fits || history.contains("shmem-shared, simulated: every actor on a virtual CPU"), "{history}");
    assert!(history.contains("\nversion     faults waited  fault wait p99_us  collapse hold p99_us\n"), "{history}");
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
