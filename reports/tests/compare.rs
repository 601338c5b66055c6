//! `compare` of files whose figures are not comparable: native against
//! simulated, another scenario, another cost model, other core counts
//! with oversubscription. The comparison is made, headed by what each
//! side ran on and a warning that says why the figures differ in kind.
//!
//! The files are the fixtures of `tests/robot.rs`, edited as JSON.

use bench_core::CostModel;
use reports::compare::{compare, load, warning, Loaded};
use reports::robot::WIDTH;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A fixture as JSON.
fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `value` written to a scratch file `name` and loaded as `compare` does.
fn loaded(name: &str, value: &Value) -> Loaded {
    let dir = std::env::temp_dir().join(format!("cb-compare-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(value).unwrap()).unwrap();
    load(&path).unwrap()
}

/// The two run fixtures: v1 and v2-flush-bool on pml-contended, 5
/// threads on 4 cores (oversubscribed), native.
fn runs() -> (Value, Value) {
    (fixture("run-base.json"), fixture("run-new.json"))
}

fn set_costs(v: &mut Value, costs: &CostModel) {
    v["environment"]["engine"] = json!("sim");
    v["costs"] = serde_json::to_value(costs).unwrap();
}

/// Every run of a file: `edit` applied to each.
fn each_run(v: &mut Value, edit: impl Fn(&mut Value)) {
    v["runs"].as_array_mut().unwrap().iter_mut().for_each(edit);
}

/// The text up to the first side's description: title, sides, warning.
fn header(text: &str) -> &str {
    let end = text.find(" (base): ").unwrap();
    &text[..text[..end].rfind('\n').unwrap() + 1]
}

fn assert_fits(text: &str) {
    for l in text.lines() {
        assert!(l.len() <= WIDTH, "{} columns:\n{l}", l.len());
    }
}

#[test]
fn native_against_simulated_warns() {
    let (base, mut new) = runs();
    set_costs(&mut new, &CostModel::default());
    let (base, new) = (loaded("native.json", &base), loaded("sim.json", &new));
    assert_eq!(new.costs, Some(CostModel::default()), "the cost model is loaded");
    let text = compare(&base, &new).unwrap();
    assert_fits(&text);
    assert_eq!(
        header(&text),
        "collapse-bench compare\n\
         \n\
         base: native (wall time) on 4 cores, oversubscribed / new: sim (virtual\n\
         \x20   time, built-in cost model)\n\
         warning: base and new differ, so the figures are not comparable: base\n\
         \x20   ran on the native engine (wall time), new on the sim engine (virtual\n\
         \x20   time)\n\
         \n"
    );
    assert_eq!(
        warning(&base, &new).as_deref(),
        Some(
            "warning: base and new differ, so the figures are not comparable: base ran on the native engine \
             (wall time), new on the sim engine (virtual time)"
        )
    );
    // Still compared: both tables are there.
    assert_eq!(text.matches("%stddev %change         %stddev").count(), 2, "{text}");
}

#[test]
fn two_native_files_of_one_scenario_do_not_warn() {
    let (base, mut new) = runs();
    // Another seed is the same scenario.
    new["scenario"]["seed"] = json!(2);
    let (base, new) = (loaded("same-base.json", &base), loaded("same-new.json", &new));
    let text = compare(&base, &new).unwrap();
    assert_eq!(warning(&base, &new), None);
    assert!(!text.contains("warning"), "{text}");
    assert!(
        text.starts_with(
            "collapse-bench compare\n\
             \n\
             base: native (wall time) on 4 cores, oversubscribed / new: native (wall\n\
             \x20   time) on 4 cores, oversubscribed\n\
             \n\
             7b232fb1c0de (base): "
        ),
        "{text}"
    );
}

#[test]
fn one_scenario_configured_differently_warns() {
    let (mut base, mut new) = runs();
    base["scenario"] = json!({"name": "pml-contended", "seed": 1, "density": 512, "threads": {"neighbours": 2}});
    new["scenario"] = json!({"name": "pml-contended", "seed": 2, "density": 256, "threads": {"neighbours": 4}});
    let (base, new) = (loaded("config-base.json", &base), loaded("config-new.json", &new));
    assert_eq!(
        warning(&base, &new).as_deref(),
        Some(
            "warning: base and new differ, so the figures are not comparable: workload pml-contended is \
             configured differently (density, threads.neighbours)"
        )
    );
    let text = compare(&base, &new).unwrap();
    assert_fits(&text);
    assert!(
        header(&text).ends_with(
            "\nwarning: base and new differ, so the figures are not comparable:\n\
             \x20   workload pml-contended is configured differently (density,\n\
             \x20   threads.neighbours)\n\n"
        ),
        "{text}"
    );
}

#[test]
fn two_scenarios_pair_by_policy_and_warn() {
    let (mut base, mut new) = runs();
    // One workload each, different ones.
    for v in [&mut base, &mut new] {
        v["runs"].as_array_mut().unwrap().retain(|r| r["workload"] == "pml-contended");
    }
    new["scenario"] = json!({"name": "my-scenario"});
    each_run(&mut new, |r| r["workload"] = json!("my-scenario"));
    let (base, new) = (loaded("named-base.json", &base), loaded("named-new.json", &new));
    assert_eq!(
        warning(&base, &new).as_deref(),
        Some(
            "warning: base and new differ, so the figures are not comparable: base ran workload \
             pml-contended, new workload my-scenario"
        )
    );
    let text = compare(&base, &new).unwrap();
    assert_fits(&text);
    assert!(!text.contains("only in"), "every policy has its pair:\n{text}");
    assert_eq!(text.matches("%stddev %change         %stddev").count(), 2, "{text}");
    // Each side's workload on its own labelled line.
    assert!(
        text.contains(
            "workload/policy/engine/threads/pinned/oversubscribed/runs:\n\
             \x20 pml-contended/v1/native/5/no/yes/10 (7b232fb1c0de)\n\
             \x20 my-scenario/v1/native/5/no/yes/10 (9c1e4d2a-dirty)\n"
        ),
        "{text}"
    );
}

#[test]
fn different_cost_models_warn() {
    let (mut base, mut new) = runs();
    set_costs(&mut base, &CostModel { ipi: 1000.0, wakeup: 1000.0, ..CostModel::default() });
    set_costs(&mut new, &CostModel { ipi: 1500.0, wakeup: 2000.0, ..CostModel::default() });
    let (base, new) = (loaded("costs-base.json", &base), loaded("costs-new.json", &new));
    let text = compare(&base, &new).unwrap();
    assert_fits(&text);
    assert!(
        text.starts_with(
            "collapse-bench compare\n\
             \n\
             base: sim (virtual time, custom cost model) / new: sim (virtual time,\n\
             \x20   custom cost model)\n"
        ),
        "{text}"
    );
    assert_eq!(
        warning(&base, &new).as_deref(),
        Some(
            "warning: base and new differ, so the figures are not comparable: the cost models differ (ipi \
             1000 vs 1500 ns, wakeup 1000 vs 2000 ns)"
        )
    );
    // The same cost model on both sides: comparable.
    let same = loaded("costs-same.json", &{
        let mut v = runs().1;
        set_costs(&mut v, &CostModel { ipi: 1000.0, wakeup: 1000.0, ..CostModel::default() });
        v
    });
    assert_eq!(warning(&base, &same), None);
}

#[test]
fn other_core_counts_warn_only_with_oversubscription() {
    let (base, mut new) = runs();
    new["environment"]["cores"] = json!(8);
    each_run(&mut new, |r| {
        r["cores"] = json!(8);
        r["oversubscribed"] = json!(false);
    });
    let (b, n) = (loaded("cores-base.json", &base), loaded("cores-new.json", &new));
    assert_eq!(
        warning(&b, &n).as_deref(),
        Some(
            "warning: base and new differ, so the figures are not comparable: base had 4 cores, new 8, and \
             base was oversubscribed (its hold and wait figures include scheduler delays)"
        )
    );
    let text = compare(&b, &n).unwrap();
    assert!(text.contains("\nbase: native (wall time) on 4 cores, oversubscribed / new: native (wall\n"), "{text}");
    assert!(text.contains("\n    time) on 8 cores\n"), "{text}");
    // Two machines, neither oversubscribed: a fair comparison.
    let mut base = base;
    each_run(&mut base, |r| r["oversubscribed"] = json!(false));
    let b = loaded("cores-fair.json", &base);
    assert_eq!(warning(&b, &n), None);
}

#[test]
fn a_report_records_the_cost_model_of_what_it_simulated() {
    let mut report = fixture("report.json");
    let mixed = loaded("report-mixed.json", &report);
    assert_eq!(mixed.scenario, None);
    assert_eq!(mixed.costs, Some(CostModel::default()), "its simulated cells' (sim_costs)");
    // Against a native run, its fitted and simulated cells are told apart.
    let run = loaded("report-run.json", &runs().1);
    let w = warning(&mixed, &run).unwrap();
    assert!(w.contains("pml-contended/v1 was measured simulated in base, native in new"), "{w}");
    // A report before schema 3 had no `sim_costs`: its cells share the CPU
    // sweep's cost model only when its matrix was simulated.
    report.as_object_mut().unwrap().remove("sim_costs");
    report["environment"]["engine"] = json!("native");
    let native = loaded("report-native.json", &report);
    assert_eq!(native.costs, None);
    report["environment"]["engine"] = json!("sim");
    let sim = loaded("report-sim.json", &report);
    assert_eq!(sim.costs, Some(CostModel::default()), "the CPU sweep's, which the matrix shares");
    assert!(warning(&sim, &run).unwrap().contains("base ran on the sim engine (virtual time), new on the native"));
}
