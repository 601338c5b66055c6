//! The command line with policies that misbehave (registered as a plugin
//! registers its own, through `main_with_args`): `run` and `report` go on
//! with the other policies, record the failures in their results, and exit
//! 1 at the end.

mod common;

#[path = "../workloads/tests/common/misbehaving.rs"]
mod misbehaving;

use bench_core::kernel::entry;
use bench_core::results::RunFailure;
use common::scratch;
use misbehaving::{Abba, NeverReleasesPtl, PanicsInStep2, PANIC_MESSAGE};
use reports::schema::{ReportResults, RunResult};
use std::process::ExitCode;
use std::sync::Mutex;

/// One command at a time: each runs native threads on every core.
static ONE: Mutex<()> = Mutex::new(());

fn bench(args: &[&str]) -> ExitCode {
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let extra = vec![entry::<PanicsInStep2>(), entry::<NeverReleasesPtl>(), entry::<Abba>()];
    collapse_bench::main_with_args(extra, std::iter::once("collapse-bench").chain(args.iter().copied()))
}

#[test]
fn run_keeps_the_other_policies_and_exits_1() {
    let json = scratch("run").join("out.json");
    let code = bench(&[
        "run",
        "-p",
        "test-panic,v1,test-hang",
        "-w",
        "uffd-private",
        "--duration",
        "300ms",
        "--watchdog",
        "500ms",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, ExitCode::from(1));
    let result: RunResult = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(result.runs.iter().map(|r| r.policy.as_str()).collect::<Vec<_>>(), ["v1"]);
    assert!(result.runs[0].collapses > 0);
    assert_eq!(result.watchdog_s, Some(0.5));
    let failed: Vec<(&str, &str)> = result.failures.iter().map(|f| (f.policy.as_str(), f.part.as_str())).collect();
    assert_eq!(failed, [("test-panic", "run"), ("test-hang", "run")]);
    let RunFailure::Panic { message, step, held_locks, location, .. } = &result.failures[0].failure else {
        panic!("{:?}", result.failures[0])
    };
    assert_eq!((message.as_str(), step.as_deref()), (PANIC_MESSAGE, Some("step 2 (clear)")));
    assert_eq!(held_locks, &["ptl (PTE table 0)"]);
    assert!(location.as_deref().unwrap().contains(&misbehaving::panic_line()));
    let RunFailure::Hung { report, .. } = &result.failures[1].failure else { panic!("{:?}", result.failures[1]) };
    assert!(report.iter().any(|l| l.contains("waiting for ptl (PTE table 0) held by CPU 0 (collapse)")), "{report:?}");
}

#[test]
fn report_leaves_a_failing_policy_out_and_says_why() {
    let out = scratch("report").join("report");
    let code = bench(&[
        "report",
        "--quick",
        "-w",
        "uffd-private",
        "-p",
        "v1,test-panic",
        "--schedules",
        "10",
        "--sweep-cpus",
        "none",
        "--watchdog",
        "500ms",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, ExitCode::from(1));
    let result: ReportResults = serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    // uffd-private (3 threads) on fewer cores: fitted and simulated cells,
    // of v1 only; else one native cell.
    let fits = bench_core::machine::available_cores() >= 3;
    let v1_cells = if fits { vec!["v1"] } else { vec!["v1", "v1"] };
    assert_eq!(result.cells.iter().map(|c| c.policy.as_str()).collect::<Vec<_>>(), v1_cells);
    assert!(result.scaling.iter().all(|p| p.policy == "v1") && !result.scaling.is_empty());
    let failed: Vec<(&str, &str, &str)> =
        result.failures.iter().map(|f| (f.policy.as_str(), f.workload.as_str(), f.part.as_str())).collect();
    assert_eq!(
        failed,
        [
            ("test-panic", "uffd-private", if fits { "measure native" } else { "measure fitted" }),
            ("test-panic", "pml-contended", "scaling threads.neighbours=1"),
            ("test-panic", "uffd-private", "explore"),
            ("test-panic", "uffd-private", "check"),
            ("test-panic", "pml-contended", "explore"),
            ("test-panic", "pml-contended", "check"),
        ]
    );
    // The hanging and deadlocking policies get verdicts, from the checker:
    // on each workload's scope, and sampled.
    let verdict = |policy: &str, workload: &str, explored: bool| {
        let v = result
            .verdicts
            .iter()
            .find(|v| v.check.policy == policy && v.workload == workload && v.check.exhaustive.is_some() == explored)
            .unwrap();
        (v.check.verdict.clone(), v.check.by_oracle.keys().cloned().collect::<Vec<_>>())
    };
    for explored in [true, false] {
        assert_eq!(verdict("test-hang", "uffd-private", explored).1, ["deadlock", "lock-order"]);
    }
    assert_eq!(verdict("v1", "uffd-private", true), ("verified".into(), vec![]));
    assert_eq!(verdict("v1", "uffd-private", false), ("ok".into(), vec![]));
    let text = std::fs::read_to_string(out.join("report.txt")).unwrap();
    assert!(text.lines().all(|l| l.len() <= 72 && l.is_ascii()), "{text}");
    let section = &text[text.find("failed (abandoned").expect("a failures section")..];
    assert!(section.contains("FAILED test-panic on uffd-private (measure "), "{section}");
    assert!(section.contains("): panic on CPU 0"), "{section}");
    assert!(section.contains(PANIC_MESSAGE), "{section}");
}

#[test]
fn check_reports_a_panicking_policy_and_exits_1() {
    let code = bench(&["check", "-p", "test-panic,v1", "-w", "uffd-private", "--schedules", "5"]);
    assert_eq!(code, ExitCode::from(1));
    let code = bench(&["check", "-p", "v1", "-w", "uffd-private", "--schedules", "5"]);
    assert_eq!(code, ExitCode::SUCCESS, "v1 alone passes");
}
