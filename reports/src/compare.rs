//! `collapse-bench compare BASE.json NEW.json`: two result files (of
//! `run` or `report`) side by side in the report's table layout, one
//! table per (workload, policy) both have: two commits, two machines or
//! two configurations of the same policy.

use crate::robot::{comparison_of, params, rule, run_params, shell_lines};
use crate::verdicts::wrap;
use bench_core::results::{Cell, Environment, ReportResults, RunResult, SCHEMA};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;

/// A bad, unreadable or mismatched result file; the message names the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompareError(pub String);

impl std::fmt::Display for CompareError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CompareError {}

/// A result file, reduced to what a comparison needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    /// Where it came from (the path as given).
    pub origin: String,
    /// "run" or "report": which command wrote it.
    pub kind: &'static str,
    /// Where it ran.
    pub environment: Environment,
    /// The command that reproduces it.
    pub command: String,
    /// Runs grouped by (workload, policy), in the file's order.
    pub cells: Vec<Cell>,
}

/// The top-level keys of a `run` result, for error messages (`costs` only
/// in results of the simulation engine).
const RUN_KEYS: &str = "schema, tool, environment, scenario, costs, command, runs";
/// The top-level keys of a `report` result (`cpu_sweep` only in reports
/// with the simulation engine's sweep).
const REPORT_KEYS: &str =
    "schema, tool, environment, command, base, quick, repetitions, run_seconds, cells, scaling, cpu_sweep, verdicts";

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Group runs by (workload, policy), keeping the order they first appear in.
pub fn group(runs: Vec<bench_core::results::PolicyRun>) -> Vec<Cell> {
    let mut cells: Vec<Cell> = vec![];
    for run in runs {
        match cells.iter_mut().find(|c| c.workload == run.workload && c.policy == run.policy) {
            Some(c) => c.runs.push(run),
            None => cells.push(Cell { workload: run.workload.clone(), policy: run.policy.clone(), runs: vec![run] }),
        }
    }
    cells
}

/// Read a result file of `run` (its runs grouped into cells) or of
/// `report` (its cells).
pub fn load(path: &Path) -> Result<Loaded, CompareError> {
    let origin = path.display().to_string();
    let err = |what: String| CompareError(format!("{origin}: {what}"));
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| err(format!("not JSON: {e}")))?;
    let Some(obj) = value.as_object() else {
        return Err(err(format!(
            "not a result file: the JSON is {} where a `run` or `report` result is an object",
            json_kind(&value)
        )));
    };
    let (is_run, is_report) = (obj.contains_key("runs"), obj.contains_key("cells"));
    if !is_run && !is_report {
        let found: Vec<&str> = obj.keys().map(String::as_str).collect();
        let check = if obj.contains_key("policies") && obj.contains_key("options") {
            " (this looks like a `check` result: verdicts, no measurements to compare)"
        } else {
            ""
        };
        return Err(err(format!(
            "neither a `run` result (keys {RUN_KEYS}) nor a `report` result (keys {REPORT_KEYS}); it has keys: \
             {}{check}",
            if found.is_empty() { "none".to_owned() } else { found.join(", ") }
        )));
    }
    match obj.get("schema") {
        Some(v) if v.as_u64() == Some(SCHEMA as u64) => {}
        Some(v) => {
            return Err(err(format!(
                "result schema version {v}, but this collapse-bench reads version {SCHEMA}: compare it with the \
                 collapse-bench that wrote it"
            )))
        }
        None => return Err(err(format!("no `schema` key (a result of schema version {SCHEMA} has one)"))),
    }
    if is_report {
        let r: ReportResults =
            serde_json::from_str(&text).map_err(|e| err(format!("not a valid `report` result: {e}")))?;
        Ok(Loaded { origin, kind: "report", environment: r.environment, command: r.command, cells: r.cells })
    } else {
        let r: RunResult = serde_json::from_str(&text).map_err(|e| err(format!("not a valid `run` result: {e}")))?;
        Ok(Loaded { origin, kind: "run", environment: r.environment, command: r.command, cells: group(r.runs) })
    }
}

fn short_rev(rev: &str) -> String {
    if rev.len() <= 15 {
        return rev.to_owned();
    }
    match rev.strip_suffix("-dirty") {
        Some(hash) => format!("{}-dirty", &hash[..hash.len().min(8)]),
        None => rev.chars().take(12).collect(),
    }
}

fn file_name(origin: &str) -> String {
    Path::new(origin).file_name().map_or_else(|| origin.to_owned(), |n| n.to_string_lossy().into_owned())
}

/// Column labels: the git revisions where they differ, else the file
/// names where they differ, else "base" and "new".
fn labels(base: &Loaded, new: &Loaded) -> (String, String) {
    let (rb, rn) = (&base.environment.git_revision, &new.environment.git_revision);
    let (fb, fnew) = (file_name(&base.origin), file_name(&new.origin));
    if !rb.is_empty() && !rn.is_empty() && short_rev(rb) != short_rev(rn) {
        (short_rev(rb), short_rev(rn))
    } else if fb != fnew {
        (fb, fnew)
    } else {
        ("base".into(), "new".into())
    }
}

fn describe(out: &mut String, tag: &str, side: &Loaded) {
    let env = &side.environment;
    let pad = " ".repeat(tag.len());
    out.push_str(&wrap(&side.origin, tag, &pad));
    let rev = if env.git_revision.is_empty() { "unknown" } else { &env.git_revision };
    out.push_str(&wrap(&format!("{} result of git {rev}", side.kind), &pad, &pad));
    out.push_str(&wrap(&format!("{} cores, {}", env.cores, env.cpu_model), &pad, &pad));
    out.push_str(&wrap(
        &format!("kernel {} ({}), engine {}, seed {}", env.kernel, env.os, env.engine, env.seed),
        &pad,
        &pad,
    ));
    if !side.command.is_empty() {
        out.push_str(&shell_lines(&side.command, &pad, &format!("{pad}    ")));
    }
}

fn pairs(side: &Loaded) -> String {
    let names: Vec<String> = side.cells.iter().map(|c| format!("{}/{}", c.workload, c.policy)).collect();
    if names.is_empty() {
        "no runs".into()
    } else {
        names.join(", ")
    }
}

/// One table per (workload, policy) in both files, `base` on the left,
/// headed by which file, commit and machine each side is.
pub fn compare(base: &Loaded, new: &Loaded) -> Result<String, CompareError> {
    let common: Vec<(&Cell, &Cell)> = base
        .cells
        .iter()
        .filter_map(|b| new.cells.iter().find(|n| n.workload == b.workload && n.policy == b.policy).map(|n| (b, n)))
        .collect();
    if common.is_empty() {
        return Err(CompareError(format!(
            "no (workload, policy) in common: {} has {}; {} has {}",
            base.origin,
            pairs(base),
            new.origin,
            pairs(new)
        )));
    }
    let (lb, ln) = labels(base, new);
    let mut out = String::from("collapse-bench compare\n\n");
    describe(&mut out, &format!("{lb} (base): "), base);
    describe(&mut out, &format!("{ln} (new): "), new);
    let only = |side: &Loaded, other: &Loaded| -> Vec<String> {
        side.cells
            .iter()
            .filter(|c| !other.cells.iter().any(|o| o.workload == c.workload && o.policy == c.policy))
            .map(|c| format!("{}/{}", c.workload, c.policy))
            .collect()
    };
    for (side, other, tag) in [(base, new, &lb), (new, base, &ln)] {
        let o = only(side, other);
        if !o.is_empty() {
            out.push('\n');
            out.push_str(&wrap(&format!("only in {tag}, not compared: {}", o.join(", ")), "", "    "));
        }
    }
    out.push('\n');
    out.push_str(&wrap(
        &crate::robot::LEGEND
            .replace("the base (left) with the patch (right)", "the base file (left) with the new one (right)")
            .replace("(patch - base)", "(new - base)"),
        "",
        "",
    ));
    for (b, n) in common {
        out.push('\n');
        out.push_str(&rule());
        let workload_policy = format!("{}/{}", b.workload, b.policy);
        let side_params = |c: &Cell| {
            c.runs.first().map(|r| {
                let mut p = run_params("workload", b.workload.clone(), r);
                p.insert(1, ("policy", b.policy.clone()));
                p.push(("runs", c.runs.len().to_string()));
                p
            })
        };
        match (side_params(b), side_params(n)) {
            (Some(pb), Some(pn)) if pb == pn => out.push_str(&params(&pb)),
            (Some(pb), Some(pn)) => {
                // The sides differ: one value line each, labelled.
                let names: Vec<&str> = pb.iter().map(|p| p.0).collect();
                let _ = writeln!(out, "{}:", names.join("/"));
                for (side, label) in [(&pb, &lb), (&pn, &ln)] {
                    let values: Vec<&str> = side.iter().map(|p| p.1.as_str()).collect();
                    let _ = writeln!(out, "  {} ({label})", values.join("/"));
                }
            }
            _ => {
                let _ = writeln!(out, "{workload_policy}");
            }
        }
        out.push('\n');
        out.push_str(&comparison_of(&lb, &b.runs, &ln, &n.runs));
    }
    Ok(crate::robot::fit(&out))
}
