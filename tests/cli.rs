//! The binary as a user meets it: listing, a short run that writes its
//! JSON, and bad input that exits 2 with the field and the allowed values
//! and leaves no output file behind.

mod common;

use common::{bench, scratch};

#[test]
fn list_names_every_policy_and_preset() {
    let out = bench(&["list"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for name in ["v1", "v2-flush-bool", "v2-step3-down", "v2-posted", "pre-fix"] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(&format!("{name} "))), "{name} missing:\n{text}");
    }
    for name in ["uffd-private", "shmem-shared", "pml-contended", "cow-swap", "no-split-locks", "markers", "mixed"] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
}

#[test]
fn a_short_run_writes_its_results_and_the_reproducer() {
    let dir = scratch("run");
    let json = dir.join("r.json");
    let out = bench(&[
        "run",
        "-p",
        "v1,v2-step3-down:recheck_always=true",
        "-w",
        "uffd-private",
        "--ops",
        "30",
        "--seed",
        "7",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("oversubscribed") == (bench_core::machine::available_cores() < 3), "{stdout}");
    let r: reports::schema::RunResult = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r.environment.seed, 7);
    assert_eq!(r.scenario["seed"], 7);
    assert!(r.command.contains("--seed 7"), "{}", r.command);
    assert_eq!(r.runs.len(), 2);
    assert_eq!(r.runs[1].policy, "v2-step3-down:recheck_always=true");
    for run in &r.runs {
        assert!(run.collapses >= 30, "{}: {}", run.policy, run.collapses);
    }
    // v1 breaks nothing. The v2 form may show its one window (a failed
    // trylock: here when uffd's __pte_alloc() holds pml for the none PMD
    // that step 4 left before step 5), and nothing else.
    assert_eq!(r.runs[0].violations_total, 0, "v1: {:?}", r.runs[0].violations);
    let v2 = &r.runs[1];
    assert!(v2.violations.iter().all(|v| v.oracle == bench_core::Oracle::StaleTranslation), "{:?}", v2.violations);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "only the result file");
}

/// Runs `args` (with a --json path in a fresh directory), expects exit 2,
/// an error containing every `needle`, and no file written.
fn rejects(name: &str, args: &[&str], needles: &[&str]) {
    let dir = scratch(name);
    let json = dir.join("r.json");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--json", json.to_str().unwrap()]);
    let out = bench(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{name}: `{n}` not in: {stderr}");
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "{name}: nothing written");
}

#[test]
fn bad_input_exits_2_naming_the_field_and_allowed_values() {
    rejects(
        "policy",
        &["run", "-p", "v3"],
        &[
            "--policies",
            "unknown policy `v3`",
            "v1, v6.13, v6.1, v2-flush-bool, v2-step3-down, v2-posted, v2-posted-relookup, v6.13-noflush, pre-fix",
        ],
    );
    rejects("param", &["run", "-p", "v2-posted:recheck=1"], &["unknown field `recheck`", "recheck_always"]);
    rejects("preset", &["run", "-w", "uffd"], &["uffd", "uffd-private", "mixed"]);
    rejects("zero threads", &["run", "--threads", "collapsers=0"], &["threads.collapsers", "allowed 1..="]);
    rejects("absurd threads", &["run", "--threads", "readers=100000"], &["threads", "allowed 1..=1024"]);
    rejects("unknown kind", &["run", "--threads", "readerz=1"], &["threads.readerz", "readers"]);
    rejects("density", &["run", "--set", "density=513"], &["density", "0..=512"]);
    rejects("duration", &["run", "--duration", "soon"], &["--duration", "5s"]);
    rejects("ops", &["run", "--ops", "0"], &["--ops"]);
    let dir = scratch("toml");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "name = \"x\"\nranges = 2\ndensty = 5\n").unwrap();
    rejects("toml key", &["run", "--scenario", file.to_str().unwrap()], &["bad.toml", "densty", "density"]);
}

/// A kernel tree made here: a Makefile with a version and an
/// `mm/khugepaged.c` of `body` (this project's own few lines, not kernel
/// code).
fn synthetic_tree(name: &str, body: &str) -> std::path::PathBuf {
    let tree = scratch(&format!("tree-{name}")).join("tree");
    std::fs::create_dir_all(tree.join("mm")).unwrap();
    std::fs::write(tree.join("Makefile"), "VERSION = 6\nPATCHLEVEL = 99\nSUBLEVEL = 1\nEXTRAVERSION =\n").unwrap();
    std::fs::write(tree.join("mm/khugepaged.c"), body).unwrap();
    tree
}

const TINY: &str = "enum scan_result {\n\tSCAN_FAIL,\n\tSCAN_SUCCEED,\n};\n\n\
int collapse_pte_mapped_thp(struct mm_struct *mm, unsigned long addr,\n\t\t\t    bool install_pmd)\n{\n\
\treturn SCAN_FAIL;\n}\n";

#[test]
fn kernel_source_bad_input_exits_2_before_any_work() {
    rejects(
        "no source",
        &["run", "--kernel-source", "/nonexistent/linux", "-p", "kernel"],
        &["--kernel-source /nonexistent/linux", "linux-source-X.Y"],
    );
    rejects("alias without source", &["run", "-p", "kernel,v1"], &["--policies", "`kernel`", "--kernel-source PATH"]);
    rejects("patch without source", &["run", "--kernel-patch", "fix.patch"], &["--kernel-source"]);
    // A hunk whose context is not in the file: named, with the line missing.
    let tree = synthetic_tree("hunk", TINY);
    let patch = tree.join("../fix.patch");
    std::fs::write(
        &patch,
        "--- a/mm/khugepaged.c\n+++ b/mm/khugepaged.c\n@@ -7,3 +7,3 @@\n {\n-\treturn SCAN_NONE;\n+\treturn SCAN_SUCCEED;\n }\n",
    )
    .unwrap();
    rejects(
        "hunk",
        &["run", "--kernel-source", tree.to_str().unwrap(), "--kernel-patch", patch.to_str().unwrap(), "-p", "kernel"],
        &["fix.patch", "hunk #1", "@@ -7,3 +7,3 @@", "return SCAN_NONE;", "does not apply"],
    );
    // A function that calls what the compat layer lacks: named.
    let tree = synthetic_tree(
        "uncovered",
        &TINY.replace("\treturn SCAN_FAIL;", "\tfrobnicate_pmd(mm, addr);\n\treturn SCAN_FAIL;"),
    );
    rejects(
        "uncovered",
        &["run", "--kernel-source", tree.to_str().unwrap(), "-p", "kernel"],
        &["`frobnicate_pmd`", "does not provide", "mm/khugepaged.c:"],
    );
}

#[test]
fn a_kernel_function_from_a_tree_runs_as_a_policy_named_by_the_tree() {
    let tree = synthetic_tree("tiny", TINY);
    let dir = scratch("tiny-run");
    let json = dir.join("r.json");
    let out = bench(&[
        "run",
        "--kernel-source",
        tree.to_str().unwrap(),
        "-p",
        "kernel",
        "-w",
        "shmem-shared",
        "--ops",
        "5",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // It never collapses (SCAN_FAIL every time), so nothing is measured;
    // what counts here is that it was built, registered and run.
    assert!(stderr.contains("kernel: linux-6.99.1 from "), "{stderr}");
    assert!(stderr.contains("collapse_pte_mapped_thp() compiled and loaded in"), "{stderr}");
    let r: reports::schema::RunResult = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(r.command.contains("--kernel-source"), "{}", r.command);
    assert_eq!(r.runs.len() + r.failures.len(), 1);
}
