//! `collapse-bench compare BASE.json NEW.json`: two result files (of
//! `run` or `report`) side by side in the report's table layout, one
//! table per (workload, policy) both have: two commits, two machines or
//! two configurations of the same policy. Two files of one workload each,
//! different ones, pair up by policy alone. What makes the figures
//! incomparable (wall time against virtual time, another scenario,
//! another cost model, oversubscription with other core counts) is said
//! in a warning; the comparison is still made.

use crate::robot::{cell_params, comparison_of, params, rule, shell_lines};
use crate::schema::{Cell, Measured, ReportResults, RunResult, OLDEST_READABLE, SCHEMA};
use crate::verdicts::wrap;
use bench_core::results::Environment;
use bench_core::IntoEnumIterator;
use bench_core::{Cost, CostModel};
use serde_json::Value;
use std::collections::BTreeSet;
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
    /// The full workload configuration (`run` results only: a report
    /// names its workloads, presets, without their configuration).
    pub scenario: Option<Value>,
    /// The cost model of simulated runs, where the file records it.
    pub costs: Option<CostModel>,
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

/// Group runs by (workload, policy), keeping the order they first appear
/// in; every cell `measured` so.
pub fn group(runs: Vec<bench_core::results::PolicyRun>, measured: &Measured) -> Vec<Cell> {
    let mut cells: Vec<Cell> = vec![];
    for run in runs {
        match cells.iter_mut().find(|c| c.workload == run.workload && c.policy == run.policy) {
            Some(c) => c.runs.push(run),
            None => cells.push(Cell {
                workload: run.workload.clone(),
                policy: run.policy.clone(),
                measured: measured.clone(),
                runs: vec![run],
            }),
        }
    }
    cells
}

/// Read a result file of `run` (its runs grouped into cells) or of
/// `report` (its cells), of any layout version from [`OLDEST_READABLE`]
/// to [`SCHEMA`].
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
    let readable = u64::from(OLDEST_READABLE)..=u64::from(SCHEMA);
    match obj.get("schema") {
        Some(v) if v.as_u64().is_some_and(|v| readable.contains(&v)) => {}
        Some(v) => {
            return Err(err(format!(
                "result schema version {v}, but this collapse-bench reads versions {OLDEST_READABLE} to {SCHEMA}: \
                 compare it with the collapse-bench that wrote it"
            )))
        }
        None => return Err(err(format!("no `schema` key (a result of schema version {SCHEMA} has one)"))),
    }
    if is_report {
        let r: ReportResults =
            serde_json::from_str(&text).map_err(|e| err(format!("not a valid `report` result: {e}")))?;
        // The cost model of the simulated cells; before schema 3, that of
        // a simulated matrix's CPU sweep (a native one's sweep has a cost
        // model its cells did not use).
        let costs = match r.sim_costs {
            Some(s) => Some(s.costs),
            None => r.cpu_sweep.filter(|_| r.environment.engine == "sim").map(|s| s.costs),
        };
        Ok(Loaded {
            origin,
            kind: "report",
            environment: r.environment,
            command: r.command,
            scenario: None,
            costs,
            cells: r.cells,
        })
    } else {
        let r: RunResult = serde_json::from_str(&text).map_err(|e| err(format!("not a valid `run` result: {e}")))?;
        let measured = if r.environment.engine == "sim" { Measured::Simulated } else { Measured::Native };
        Ok(Loaded {
            origin,
            kind: "run",
            environment: r.environment,
            command: r.command,
            scenario: Some(r.scenario),
            costs: r.costs,
            cells: group(r.runs, &measured),
        })
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

/// `workload/policy`, and how it was measured where that was not natively
/// as it is (`pml-contended/v1 (sim)`).
fn cell_name(c: &Cell) -> String {
    match c.measured {
        Measured::Native => format!("{}/{}", c.workload, c.policy),
        _ => format!("{}/{} ({})", c.workload, c.policy, c.measured.tag()),
    }
}

fn pairs(side: &Loaded) -> String {
    let names: Vec<String> = side.cells.iter().map(cell_name).collect();
    if names.is_empty() {
        "no runs".into()
    } else {
        names.join(", ")
    }
}

/// The workload of a file whose cells all have the same one.
fn only_workload(side: &Loaded) -> Option<&str> {
    let first = side.cells.first()?.workload.as_str();
    side.cells.iter().all(|c| c.workload == first).then_some(first)
}

/// Whether cells pair up by policy alone: two files of one workload each,
/// different ones (one scenario against another).
fn by_policy(base: &Loaded, new: &Loaded) -> bool {
    only_workload(base).zip(only_workload(new)).is_some_and(|(b, n)| b != n)
}

/// Whether `b` and `n` are the same cell: the same policy, and the same
/// workload unless pairing `by_policy`.
fn same_cell(by_policy: bool, b: &Cell, n: &Cell) -> bool {
    b.policy == n.policy && (by_policy || b.workload == n.workload)
}

/// The cells compared: each of `base` that `new` has, with its pair, one
/// measured the same way where there is one.
fn common<'a>(base: &'a Loaded, new: &'a Loaded) -> Vec<(&'a Cell, &'a Cell)> {
    let by_policy = by_policy(base, new);
    base.cells
        .iter()
        .filter_map(|b| {
            let mut same = new.cells.iter().filter(|n| same_cell(by_policy, b, n));
            let first = same.clone().next()?;
            Some((b, same.find(|n| n.measured.tag() == b.measured.tag()).unwrap_or(first)))
        })
        .collect()
}

/// Whether any compared run of each side had more threads than cores.
fn oversubscribed(pairs: &[(&Cell, &Cell)]) -> (bool, bool) {
    let any = |c: &Cell| c.runs.iter().any(|r| r.oversubscribed);
    (pairs.iter().any(|(b, _)| any(b)), pairs.iter().any(|(_, n)| any(n)))
}

/// What an engine's times are.
fn clock(engine: &str) -> &'static str {
    match engine {
        "native" => "wall time",
        "sim" => "virtual time",
        "native+sim" => "wall time where native, virtual where simulated",
        _ => "unknown clock",
    }
}

/// One side for the header: engine, clock, and cores (native) or cost
/// model (sim); `oversubscribed` if any of its compared runs was.
fn engine_line(side: &Loaded, oversubscribed: bool) -> String {
    let env = &side.environment;
    let clock = clock(&env.engine);
    match env.engine.as_str() {
        "native" | "native+sim" => {
            let over = if oversubscribed { ", oversubscribed" } else { "" };
            format!("{} ({clock}) on {} cores{over}", env.engine, env.cores)
        }
        "sim" => {
            let costs = match &side.costs {
                None => "cost model not recorded",
                Some(c) if *c == CostModel::default() => "built-in cost model",
                Some(_) => "custom cost model",
            };
            format!("sim ({clock}, {costs})")
        }
        other => format!("{other} ({clock})"),
    }
}

/// The dotted keys whose values differ between two scenarios, less
/// `name` and `seed` (another seed is other random choices of the same
/// workload; each side's seed is shown with it).
fn scenario_differences(a: &Value, b: &Value) -> Vec<String> {
    fn walk(path: String, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for key in x.keys().chain(y.keys()).collect::<BTreeSet<_>>() {
                    let sub = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                    match (x.get(key), y.get(key)) {
                        (Some(va), Some(vb)) => walk(sub, va, vb, out),
                        _ => out.push(sub),
                    }
                }
            }
            _ if a != b => out.push(path),
            _ => {}
        }
    }
    let mut out = vec![];
    walk(String::new(), a, b, &mut out);
    out.retain(|k| k != "name" && k != "seed");
    out
}

/// Why the figures of the cells `pairs` of `base` and `new` are not
/// comparable, one clause each; none when they are.
fn mismatches(base: &Loaded, new: &Loaded, pairs: &[(&Cell, &Cell)]) -> Vec<String> {
    let (eb, en) = (&base.environment, &new.environment);
    let mut why = vec![];
    if eb.engine != en.engine {
        why.push(format!(
            "base ran on the {} engine ({}), new on the {} engine ({})",
            eb.engine,
            clock(&eb.engine),
            en.engine,
            clock(&en.engine)
        ));
    }
    if by_policy(base, new) {
        why.push(format!("base ran workload {}, new workload {}", base.cells[0].workload, new.cells[0].workload));
    } else if let (Some(sb), Some(sn), Some((b, _))) = (&base.scenario, &new.scenario, pairs.first()) {
        let keys = scenario_differences(sb, sn);
        if !keys.is_empty() {
            why.push(format!("workload {} is configured differently ({})", b.workload, keys.join(", ")));
        }
    }
    if let (true, Some(cb), Some(cn)) = (eb.engine == "sim" && en.engine == "sim", &base.costs, &new.costs) {
        let costs: Vec<String> = Cost::iter()
            .filter(|&c| cb.ns(c) != cn.ns(c))
            .map(|c| format!("{} {} vs {} ns", c.key(), cb.ns(c), cn.ns(c)))
            .collect();
        if !costs.is_empty() {
            why.push(format!("the cost models differ ({})", costs.join(", ")));
        }
    }
    // Files of one engine each that differ are told above, cell by cell
    // only where a report mixed engines.
    let single = |engine: &str| engine == "native" || engine == "sim";
    let engines_told = eb.engine != en.engine && single(&eb.engine) && single(&en.engine);
    for (b, n) in pairs.iter().filter(|(b, n)| !engines_told && b.measured != n.measured) {
        why.push(format!(
            "{}/{} was measured {} in base, {} in new",
            b.workload,
            b.policy,
            b.measured.describe(),
            n.measured.describe()
        ));
    }
    let over = oversubscribed(pairs);
    if eb.engine == "native" && en.engine == "native" && eb.cores != en.cores && (over.0 || over.1) {
        let who = match over {
            (true, true) => "both were oversubscribed (their",
            (true, false) => "base was oversubscribed (its",
            _ => "new was oversubscribed (its",
        };
        why.push(format!(
            "base had {} cores, new {}, and {who} hold and wait figures include scheduler delays)",
            eb.cores, en.cores
        ));
    }
    why
}

/// The warning over the comparison of the cells `pairs`, if any.
fn warning_of(base: &Loaded, new: &Loaded, pairs: &[(&Cell, &Cell)]) -> Option<String> {
    let why = mismatches(base, new, pairs);
    (!why.is_empty())
        .then(|| format!("warning: base and new differ, so the figures are not comparable: {}", why.join("; ")))
}

/// The warning `compare` prints under its header, on one line (for
/// stderr), or None when the two files' figures are comparable.
pub fn warning(base: &Loaded, new: &Loaded) -> Option<String> {
    warning_of(base, new, &common(base, new))
}

/// One table per (workload, policy) in both files, `base` on the left,
/// headed by what each side ran on (and a warning where that makes the
/// figures incomparable), then which file, commit and machine it is.
pub fn compare(base: &Loaded, new: &Loaded) -> Result<String, CompareError> {
    let common = common(base, new);
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
    let (ob, on) = oversubscribed(&common);
    let sides = format!("base: {} / new: {}", engine_line(base, ob), engine_line(new, on));
    out.push_str(&wrap(&sides, "", "    "));
    if let Some(w) = warning_of(base, new, &common) {
        out.push_str(&wrap(&w, "", "    "));
    }
    out.push('\n');
    describe(&mut out, &format!("{lb} (base): "), base);
    describe(&mut out, &format!("{ln} (new): "), new);
    let by_policy = by_policy(base, new);
    let only = |side: &Loaded, other: &Loaded| -> Vec<String> {
        side.cells.iter().filter(|c| !other.cells.iter().any(|o| same_cell(by_policy, c, o))).map(cell_name).collect()
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
            c.runs.first().map(|_| {
                let mut p = cell_params(c);
                p.insert(1, ("policy", b.policy.clone()));
                p
            })
        };
        match (side_params(b), side_params(n)) {
            (Some(pb), Some(pn)) if pb == pn => out.push_str(&params(&pb)),
            (Some(pb), Some(pn)) => {
                // The sides differ: one value line each, labelled, under
                // one head where they name the same things.
                let names = |side: &[(&str, String)]| side.iter().map(|p| p.0).collect::<Vec<&str>>().join("/");
                let one_head = names(&pb) == names(&pn);
                if one_head {
                    let _ = writeln!(out, "{}:", names(&pb));
                }
                for (side, label) in [(&pb, &lb), (&pn, &ln)] {
                    if !one_head {
                        let _ = writeln!(out, "{}:", names(side));
                    }
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
