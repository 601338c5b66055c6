//! The checker's verdicts as text: the policy-by-oracle table and a
//! counterexample with its replay token and timeline.

use crate::schema::{CounterexampleDoc, CounterexampleTimeline, PolicyCheck, Verdict};
use crate::timeline::{self, Timeline, WIDTH};
use bench_core::Oracle;
use std::fmt::Write as _;

/// Violations shown per counterexample.
const SHOW_VIOLATIONS: usize = 3;

/// The verdict table: one row per policy, one more per further oracle.
/// An exhaustive check's table counts interleavings, a sampled one's
/// schedules; the verdict column says `verified` only for a complete
/// exploration.
pub fn verdict_table(checks: &[PolicyCheck]) -> String {
    let name_w = checks.iter().map(|c| c.policy.len()).max().unwrap_or(6).clamp(6, 20);
    let (what, verdict_w) = if checks.iter().any(|c| c.exhaustive.is_some()) {
        ("interleavings", "verified".len())
    } else {
        ("schedules", 7)
    };
    let runs_w = what.len();
    let mut out = format!("{:<name_w$} {what:>runs_w$}  {:<verdict_w$}  oracles\n", "policy", "verdict");
    let column = name_w + 1 + runs_w + 2 + verdict_w + 2;
    let cells_of = |c: &PolicyCheck| -> Vec<String> {
        Oracle::by_gravity()
            .into_iter()
            .filter_map(|o| c.by_oracle.get(o.name()).map(|n| (o, n)))
            .map(|(o, n)| format!("{o} {}/{} (first #{})", n.schedules, c.schedules, n.first))
            .collect()
    };
    // The cells in the oracles column, the first beside the verdict; or,
    // when one of the table's is too wide for that column, every cell on
    // a line of its own, indented 4.
    let widest = checks.iter().flat_map(cells_of).map(|cell| cell.len()).max().unwrap_or(0);
    let indent = if column + widest <= WIDTH { column } else { 4 };
    for c in checks {
        if c.policy.len() > name_w {
            let _ = writeln!(out, "{}", c.policy);
        }
        let name = if c.policy.len() > name_w { "" } else { &c.policy };
        let mut line = format!("{name:<name_w$} {:>runs_w$}  {:<verdict_w$}", c.schedules, c.verdict);
        for (k, cell) in cells_of(c).iter().enumerate() {
            if k == 0 && indent == column {
                line.push_str("  ");
            } else {
                let _ = writeln!(out, "{}", line.trim_end());
                line = " ".repeat(indent);
            }
            line.push_str(cell);
        }
        let _ = writeln!(out, "{}", line.trim_end());
        if c.step_limits > 0 {
            let _ = writeln!(out, "    ({} schedules hit the step budget: possible livelock)", c.step_limits);
        }
    }
    out
}

/// The line that introduces `c`'s counterexample on `workload`,
/// unwrapped: `{policy} on {workload}: {oracle} first in schedule #N`, or
/// for an exhaustive check `{policy} on {workload} scope: ... first in
/// interleaving #N` (the first of its interleavings to break that rule),
/// and how far it was shrunk.
pub fn counterexample_head(c: &PolicyCheck, workload: &str) -> Option<String> {
    let doc = c.first.as_ref()?;
    let oracle = doc.violations.first().map_or_else(|| "a violation".to_owned(), |v| v.oracle.to_string());
    let (place, what, number) = match &c.exhaustive {
        Some(_) => (
            " scope",
            "interleaving",
            doc.violations.first().and_then(|v| c.by_oracle.get(v.oracle.name())).map_or(doc.index, |n| n.first),
        ),
        None => ("", "schedule", doc.index),
    };
    Some(format!(
        "{} on {workload}{place}: {oracle} first in {what} #{number}; shrunk from {} steps ({} runs) to {} steps \
         ({} runs) in {} replays:",
        c.policy, doc.original_steps, doc.original_runs, doc.steps, doc.runs, doc.shrink_replays
    ))
}

/// The verdicts whose counterexample a report shows: every exhaustive
/// one, and a sampled one unless the exhaustive check of the same policy
/// on the same workload already shows a counterexample of the same rule
/// (the scope's is the smaller and the certain one). In `verdicts` order,
/// exhaustive ones first.
pub fn shown_counterexamples(verdicts: &[Verdict]) -> Vec<&Verdict> {
    let oracle = |v: &Verdict| v.check.first.as_ref().and_then(|cx| cx.violations.first()).map(|x| x.oracle);
    let explored = verdicts.iter().filter(|v| v.check.exhaustive.is_some() && v.check.first.is_some());
    let sampled = verdicts.iter().filter(|v| {
        v.check.exhaustive.is_none()
            && v.check.first.is_some()
            && !verdicts.iter().any(|e| {
                e.check.exhaustive.is_some()
                    && e.workload == v.workload
                    && e.check.policy == v.check.policy
                    && oracle(e) == oracle(v)
            })
    });
    explored.chain(sampled).collect()
}

/// The violations (first few, wrapped), the replay command and the timeline.
pub fn print_counterexample(out: &mut String, doc: &CounterexampleDoc) {
    for v in doc.violations.iter().take(SHOW_VIOLATIONS) {
        out.push_str(&wrap(&v.to_string(), "  ", "      "));
    }
    if doc.violations.len() > SHOW_VIOLATIONS {
        let _ = writeln!(out, "  ... and {} more", doc.violations.len() - SHOW_VIOLATIONS);
    }
    let _ = writeln!(out, "replay token: {}", doc.token);
    let _ = writeln!(out, "replay: {}\n", doc.replay);
    for line in timeline_lines(doc) {
        let _ = writeln!(out, "{line}");
    }
}

/// The counterexample's timeline as text ([`timeline::render`]), ending in
/// a row that names the first violation's oracle; an old file's printed
/// lines as they are.
pub fn timeline_lines(doc: &CounterexampleDoc) -> Vec<String> {
    match &doc.timeline {
        CounterexampleTimeline::Events { roles, events } => {
            let first = doc.violations.first();
            let oracle = first.map_or_else(|| "a violation".to_owned(), |v| v.oracle.to_string());
            // A violation found at teardown is on no CPU: say where.
            let marker = match first.and_then(|v| v.step.as_deref().filter(|_| v.cpu.is_none())) {
                Some(step) => format!("*** {oracle} (at {step})"),
                None => format!("*** {oracle}"),
            };
            let cached = first.map_or(&[][..], |v| &v.cached[..]);
            timeline::render(&Timeline { events, roles, cpu: first.and_then(|v| v.cpu), marker, cached })
        }
        CounterexampleTimeline::Lines(lines) => lines.clone(),
    }
}

/// Word-wrap `text` to [`WIDTH`]: the first line after `first`, the rest
/// after `rest`.
pub fn wrap(text: &str, first: &str, rest: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_owned();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.len() + 1 + word.len() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = rest.to_owned();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(&line);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::OracleCount;
    use std::collections::BTreeMap;

    #[test]
    fn every_oracle_gets_its_cell_gravest_first() {
        let by_oracle: BTreeMap<String, OracleCount> = Oracle::by_gravity()
            .into_iter()
            .enumerate()
            .map(|(i, o)| (o.name().to_owned(), OracleCount { schedules: i as u64 + 1, first: 3 }))
            .collect();
        let check = PolicyCheck {
            policy: "broken".into(),
            params: serde_json::json!({}),
            verdict: "FAIL".into(),
            schedules: 100,
            steps: 1000,
            step_limits: 0,
            search_s: 0.1,
            first_found_s: Some(0.01),
            shrink_s: 0.0,
            by_oracle,
            first: None,
            exhaustive: None,
        };
        let table = verdict_table(&[check]);
        let cells: Vec<&str> = table.lines().skip(1).map(|l| l.split("  ").last().unwrap().trim()).collect();
        let want: Vec<String> =
            Oracle::by_gravity().iter().enumerate().map(|(i, o)| format!("{o} {}/100 (first #3)", i + 1)).collect();
        assert_eq!(cells, want, "{table}");
        // The gravest first, the mildest last, whatever lies between.
        let last = format!("stale-translation {}/100", Oracle::by_gravity().len());
        assert!(table.contains("use-after-free 1/100") && table.contains(&last), "{table}");
    }

    #[test]
    fn cells_too_wide_for_the_oracles_column_go_one_a_line_under_the_row() {
        let explored = |policy: &str, by_oracle: &[(&str, u64)]| PolicyCheck {
            policy: policy.into(),
            params: serde_json::json!({}),
            verdict: if by_oracle.is_empty() { "verified" } else { "FAIL" }.into(),
            schedules: 8356,
            steps: 0,
            step_limits: 0,
            search_s: 0.7,
            first_found_s: None,
            shrink_s: 0.0,
            by_oracle: by_oracle
                .iter()
                .map(|&(o, n)| (o.to_owned(), OracleCount { schedules: n, first: 1672 }))
                .collect(),
            first: None,
            exhaustive: Some(crate::schema::ExhaustiveDoc {
                scope: "a scope".into(),
                interleavings: 8356,
                runs: 9000,
                sleep_blocked: 644,
                bound: None,
                bound_hit: false,
                complete: true,
            }),
        };
        let table = verdict_table(&[
            explored("v2-flush-bool", &[]),
            explored("pre-fix", &[("table-freed-live", 978), ("lost-page", 978)]),
        ]);
        assert_eq!(
            table,
            "policy        interleavings  verdict   oracles\n\
             v2-flush-bool          8356  verified\n\
             pre-fix                8356  FAIL\n\
             \x20   table-freed-live 978/8356 (first #1672)\n\
             \x20   lost-page 978/8356 (first #1672)\n"
        );
    }
}
