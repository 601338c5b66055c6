//! `--engine sim` as a user meets it: reproducible results files, the
//! cost model recorded, `calibrate`, and bad input that exits 2 naming
//! the flag or the file and line, with no output file left behind (a
//! cost model under which virtual time could stand still among it).

mod common;

use bench_core::IntoEnumIterator;
use common::{bench, scratch};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The results file without its environment block (host, time, revision).
fn without_environment(path: &Path) -> String {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(v["environment"]["engine"], "sim");
    v.as_object_mut().unwrap().remove("environment");
    serde_json::to_string_pretty(&v).unwrap()
}

#[test]
fn a_simulated_run_is_reproduced_byte_for_byte() {
    let dir = scratch("repeat");
    let args = |json: &Path| {
        let mut a: Vec<String> =
            ["run", "--engine", "sim", "--cpus", "12", "-w", "mixed", "-p", "v1,v2-step3-down", "--duration", "2ms"]
                .map(String::from)
                .to_vec();
        a.extend(["--seed".into(), "3".into(), "--json".into(), json.display().to_string()]);
        a
    };
    // Twice, to the same file (the command line is recorded).
    let path = dir.join("r.json");
    let mut outputs = vec![];
    for _ in 0..2 {
        let out = bench(&args(&path).iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{}", stderr(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("12 virtual CPUs, simulated"), "{stdout}");
        assert!(!stdout.contains("oversubscribed"), "{stdout}");
        outputs.push(without_environment(&path));
    }
    assert!(outputs[0] == outputs[1], "two runs of one configuration differ");
    let a = path;
    let r: reports::schema::RunResult = serde_json::from_slice(&std::fs::read(&a).unwrap()).unwrap();
    assert_eq!(r.costs, Some(bench_core::CostModel::default()));
    assert_eq!(r.runs.len(), 2);
    for run in &r.runs {
        assert_eq!((run.threads, run.cores), (12, 12));
        assert!((run.wall_s - 0.002).abs() < 0.0002, "virtual time {}", run.wall_s);
    }
}

/// A 1 ms simulated run of v1 on uffd-private under the cost file
/// `costs`, which must succeed; its results.
fn simulated_v1(costs: &std::path::Path, json: &std::path::Path) -> reports::schema::RunResult {
    let (costs, j) = (costs.to_str().unwrap(), json.to_str().unwrap());
    let args = ["run", "--engine", "sim", "--costs", costs, "-w", "uffd-private", "-p", "v1", "--duration", "1ms"];
    let out = bench(&[&args[..], &["--json", j]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

#[test]
fn calibrate_writes_a_cost_file_the_simulation_reads() {
    let dir = scratch("calibrate");
    let costs = dir.join("costs.toml");
    let out = bench(&["calibrate", "--out", costs.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&costs).unwrap();
    assert!(text.contains("# measured: atomic exchange of each entry"), "{text}");
    assert!(text.contains("# default: per other CPU in mm_cpumask"), "{text}");
    let model = bench_core::CostModel::parse(&text, "costs.toml").unwrap();
    assert!(model.entry_clear > 0.0 && model.kernel_entry > 0.0);
    let json = dir.join("r.json");
    assert_eq!(simulated_v1(&costs, &json).costs, Some(model));
}

#[test]
fn bad_engine_input_exits_2_naming_what_is_allowed() {
    let dir = scratch("bad");
    let json = dir.join("r.json");
    let bad_costs = dir.join("bad.toml");
    std::fs::write(&bad_costs, "entry_read = 1\nipis = 300\n").unwrap();
    let j = json.to_str().unwrap();
    let report_dir = dir.join("rep");
    let rep = report_dir.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["run", "--engine", "gpu", "--json", j], "possible values: native, sim"),
        (&["run", "--engine", "sim", "--cpus", "0", "--json", j], "--cpus"),
        (&["run", "--engine", "sim", "--cpus", "257", "--json", j], "1..=256"),
        (
            &["run", "--costs", "x.toml", "--json", j],
            "--costs: only the simulation uses a cost model; add --engine sim",
        ),
        (
            &["run", "--engine", "sim", "--costs", bad_costs.to_str().unwrap(), "--json", j],
            "bad.toml:2: unknown field `ipis`; allowed keys: lock_uncontended,",
        ),
        (&["report", "--sweep-cpus", "2,300", "--out", rep], "--sweep-cpus: `300`"),
    ];
    for (args, want) in cases {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
        assert!(!json.exists() && !report_dir.exists(), "{args:?} left output behind");
    }
}

#[test]
fn a_cost_model_that_could_stop_virtual_time_is_refused_before_the_run() {
    let dir = scratch("zero");
    let zero = dir.join("zero.toml");
    let text: String = bench_core::Cost::iter().map(|c| format!("{} = 0\n", c.key())).collect();
    std::fs::write(&zero, text).unwrap();
    let json = dir.join("r.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_collapse-bench"))
        .args(["run", "--engine", "sim", "--costs", zero.to_str().unwrap(), "-w", "uffd-private"])
        .args(["--duration", "10ms", "--json", json.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It used to spin forever: give it a generous half minute (a loaded
    // machine), then kill it.
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("still running after {:?}", t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let want = format!(
        "--costs: {}: lock_uncontended = 0, lock_handoff = 0, entry_read = 0, page_ref = 0, tlb_hit = 0, \
         tlb_walk = 0, kernel_entry = 0: each must be at least 0.001 ns",
        zero.display()
    );
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));
    assert!(!json.exists(), "it left {} behind", json.display());
    // ipi = 0 (broadcast TLB invalidation) runs.
    let arm64 = dir.join("arm64.toml");
    std::fs::write(&arm64, "ipi = 0\n").unwrap();
    assert_eq!(simulated_v1(&arm64, &json).costs.map(|c| c.ipi), Some(0.0));
}
