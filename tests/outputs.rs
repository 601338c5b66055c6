//! What a careless or hostile command line does to the files around it:
//! devices and links named as outputs, a pipe closed early, output paths
//! that cannot be written, configurations too big for the machine, and a
//! report written over a fuller one.

mod common;

use common::{bench, scratch};
use std::io::{BufRead as _, BufReader};
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A native run of v1 on uffd-private with `args`, writing `--json json`.
fn run_v1(args: &[&str], json: &str) -> std::process::Output {
    let mut all = vec!["run", "-p", "v1", "-w", "uffd-private"];
    all.extend(args);
    all.extend(["--json", json]);
    bench(&all)
}

/// A short native run of v1 on uffd-private writing `--json json`.
fn short_run(json: &str) -> std::process::Output {
    run_v1(&["--duration", "100ms"], json)
}

fn results(path: &Path) -> reports::schema::RunResult {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn a_device_node_named_by_json_is_written_through_not_replaced() {
    use std::os::unix::fs::FileTypeExt as _;
    let dir = scratch("device");
    let node = dir.join("null");
    let made = Command::new("mknod").args([s(&node), "c", "1", "3"]).status().unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert!(made.success(), "root can make a device node");
    }
    if made.success() {
        let o = short_run(s(&node));
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(std::fs::metadata(&node).unwrap().file_type().is_char_device(), "still the device node");
    }
    // A FIFO (no privilege needed) is written into, not renamed over.
    let fifo = dir.join("fifo");
    assert!(Command::new("mkfifo").arg(s(&fifo)).status().unwrap().success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let o = short_run(s(&fifo));
    assert!(o.status.success(), "{}", stderr(&o));
    let json: reports::schema::RunResult = serde_json::from_slice(&reader.join().unwrap()).unwrap();
    assert_eq!(json.runs[0].policy, "v1");
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_symlink_named_by_json_is_written_through() {
    let dir = scratch("symlink");
    std::fs::create_dir(dir.join("kept")).unwrap();
    std::os::unix::fs::symlink("kept/run.json", dir.join("latest.json")).unwrap();
    let o = short_run(s(&dir.join("latest.json")));
    assert!(o.status.success(), "{}", stderr(&o));
    let link = std::fs::symlink_metadata(dir.join("latest.json")).unwrap();
    assert!(link.file_type().is_symlink(), "the link is still a link");
    assert_eq!(results(&dir.join("kept/run.json")).runs.len(), 1, "its target holds the results");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `collapse-bench ARGS | head -1`: the first line, then the pipe closed;
/// how the command ended.
fn head_1(args: &[&str]) -> (String, std::process::ExitStatus) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_collapse-bench"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    (first, child.wait().unwrap())
}

#[test]
fn a_pipe_closed_early_still_leaves_the_whole_results_file() {
    let dir = scratch("pipe");
    let json = dir.join("r.json");
    let args = ["run", "-p", "v1,v2-flush-bool", "-w", "uffd-private", "--duration", "200ms", "--json", s(&json)];
    let (first, status) = head_1(&args);
    assert!(first.starts_with("workload uffd-private"), "{first}");
    assert!(status.success() || status.signal() == Some(libc::SIGPIPE), "ended quietly: {status:?}");
    assert_ne!(status.code(), Some(101), "no panic");
    let r = results(&json);
    assert_eq!(r.runs.iter().map(|r| r.policy.as_str()).collect::<Vec<_>>(), ["v1", "v2-flush-bool"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `soak | head` writes no file: once the pipe is closed nothing is left
/// to keep, so it stops at its next round instead of soaking for nobody.
#[test]
fn a_command_with_no_file_stops_once_its_pipe_is_closed() {
    let t0 = Instant::now();
    let (first, status) =
        head_1(&["soak", "-p", "v1,v2-flush-bool,v2-step3-down", "--duration", "1m", "--round", "1s"]);
    assert!(first.starts_with("soak: workload mixed"), "{first}");
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?}");
    assert!(t0.elapsed() < Duration::from_secs(30), "a 3-minute soak stopped after {:?}", t0.elapsed());
}

#[test]
fn output_paths_are_checked_before_any_work() {
    let dir = scratch("paths");
    std::fs::write(dir.join("file"), "").unwrap();
    let missing = dir.join("missing/dir/x.json");
    let under_file = dir.join("file/x.json");
    let file = dir.join("file");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", "--duration", "30s", "--json", s(&missing)], "--json"),
        (vec!["run", "--duration", "30s", "--json", s(&under_file)], "--json"),
        (vec!["check", "--schedules", "100000", "--json", s(&missing)], "--json"),
        (vec!["calibrate", "--out", s(&missing)], "--out"),
        (vec!["report", "--out", s(&under_file)], "--out"),
        (vec!["report", "--out", s(&file)], "--out"),
        (vec!["new-policy", "my-fix", "--dir", s(&under_file)], "--dir"),
    ];
    for (args, flag) in cases {
        let t0 = Instant::now();
        let o = bench(&args);
        let took = t0.elapsed();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(&format!("error: {flag} ")), "{args:?}: {err}");
        assert!(!err.contains("running"), "refused before any run: {err}");
        assert!(took < Duration::from_secs(10), "{args:?} took {took:?}: the work ran first");
    }
    assert!(!dir.join("missing").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// 1000 readers on a 2-core machine starve the collapser; the run still
/// keeps its duration (every CPU keeps the time limit itself), and says
/// why when it measured no collapse.
#[test]
fn a_thousand_readers_end_within_a_bound_of_the_duration() {
    let dir = scratch("readers");
    let json = dir.join("r.json");
    let t0 = Instant::now();
    let o = run_v1(&["--threads", "readers=1000", "--duration", "1s"], s(&json));
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(30), "a 1 s run took {took:?}");
    let r = results(&json);
    match o.status.code() {
        Some(0) => assert!(r.runs[0].collapses > 0),
        Some(1) => {
            assert!(r.runs.is_empty());
            let err = stderr(&o);
            assert!(
                err.contains("no collapse finished")
                    && err.contains("lower the thread counts (most: threads.readers=1000)"),
                "{err}"
            );
        }
        other => panic!("exit {other:?}: {}", stderr(&o)),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ops_capped_by_the_duration_says_which_limit_ended_the_run() {
    let dir = scratch("ops");
    let json = dir.join("r.json");
    let o = run_v1(&["--ops", "1000000000", "--duration", "100ms"], s(&json));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("stopped by the time limit (100ms, --duration) after"), "{}", stderr(&o));
    assert_eq!(results(&json).runs[0].ended_by, Some(bench_core::results::EndedBy::TimeCap));
    let o = run_v1(&["--ops", "10"], s(&json));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("stopped by"), "{}", stderr(&o));
    assert_eq!(results(&json).runs[0].ended_by, Some(bench_core::results::EndedBy::Ops));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn careless_policy_lists_and_durations_are_refused() {
    for (args, want) in [
        (vec!["run", "-p", "v1,v1"], "--policies: `v1` is given twice"),
        (vec!["check", "-p", "v2-posted, v2-posted"], "--policies: `v2-posted` is given twice"),
        (vec!["run", "--duration", "5"], "--duration: `5` has no unit"),
        (vec!["soak", "--round", "10"], "--round: `10` has no unit"),
    ] {
        let o = bench(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn columns_are_headed_with_the_policy_and_its_parameters() {
    let dir = scratch("columns");
    let json = dir.join("r.json");
    let o = bench(&[
        "run",
        "-p",
        "v2-flush-bool,v2-flush-bool:recheck_always=true",
        "-w",
        "uffd-private",
        "--duration",
        "100ms",
        "--json",
        s(&json),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    let heads: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("v2-flush-bool") && !l.contains(" violation(s)"))
        .collect();
    assert_eq!(heads, ["v2-flush-bool", "v2-flush-bool:recheck_always=true"], "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The files of a report named in a directory: sorted, without the manifest.
fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn a_smaller_report_leaves_no_file_of_the_fuller_one_and_keeps_the_user_s() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = scratch("smaller");
    let out = dir.join("report");
    let report = |workloads: &str, sweep: &str| {
        bench(&[
            "report",
            "--quick",
            "-p",
            "v1",
            "-w",
            workloads,
            "--schedules",
            "10",
            "--sweep-cpus",
            sweep,
            "--out",
            s(&out),
        ])
    };
    let o = report("uffd-private,pml-contended", "2");
    assert!(o.status.success(), "{}", stderr(&o));
    let fuller = files(&out);
    assert!(fuller.iter().any(|f| f.contains("pml-contended")) && fuller.iter().any(|f| f.starts_with("cpus-")));
    std::fs::write(out.join("my-notes.txt"), "mine").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o750)).unwrap();
    let o = report("uffd-private", "none");
    assert!(o.status.success(), "{}", stderr(&o));
    let smaller = files(&out);
    assert!(smaller.contains(&"my-notes.txt".to_owned()), "the user's file stays: {smaller:?}");
    let manifest = std::fs::read_to_string(out.join("manifest.txt")).unwrap();
    let mut listed: Vec<String> = manifest.lines().filter(|l| !l.starts_with('#')).map(str::to_owned).collect();
    listed.push("my-notes.txt".into());
    listed.sort();
    assert_eq!(smaller, listed, "exactly the new report's files and the user's");
    // The checker's verdicts (and their timelines) cover uffd-private and
    // pml-contended whatever -w names; the matrix figures follow -w.
    let matrix_of_pml_contended = |f: &String| f.contains("pml-contended") && !f.starts_with("timeline-");
    assert!(!smaller.iter().any(|f| matrix_of_pml_contended(f) || f.starts_with("cpus-")), "{smaller:?}");
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o750, "its mode is kept");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn report_costs_apply_to_its_simulated_sweep_on_a_native_matrix() {
    let dir = scratch("costs");
    let costs = dir.join("costs.toml");
    std::fs::write(&costs, "ipi = 1234\n").unwrap();
    let out = dir.join("report");
    let o = bench(&[
        "report",
        "--quick",
        "-p",
        "v1",
        "-w",
        "uffd-private",
        "--schedules",
        "10",
        "--sweep-cpus",
        "2",
        "--costs",
        s(&costs),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: reports::schema::ReportResults =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let sweep = r.cpu_sweep.expect("a sweep");
    assert_eq!(sweep.costs.ns(bench_core::Cost::Ipi), 1234.0);
    // Whatever of the matrix is simulated takes the same model, not
    // calibrated here.
    let sim = r.sim_costs.expect("a simulated sweep records its model");
    assert_eq!((sim.calibrated, sim.costs.ns(bench_core::Cost::Ipi)), (false, 1234.0));
    // (A machine where nothing is simulated, for which --costs is refused,
    // is tested in src/report_cmd.rs: this one has too few cores.)
    std::fs::remove_dir_all(&dir).unwrap();
}
