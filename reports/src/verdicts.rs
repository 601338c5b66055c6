//! The checker's verdicts as text: the policy-by-oracle table and a
//! counterexample with its replay token and timeline.

use crate::schema::{CounterexampleDoc, CounterexampleTimeline, PolicyCheck};
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
    let indent = name_w + 1 + runs_w + 2 + verdict_w + 2;
    for c in checks {
        let cells: Vec<String> = Oracle::by_gravity()
            .into_iter()
            .filter_map(|o| c.by_oracle.get(o.name()).map(|n| (o, n)))
            .map(|(o, n)| format!("{o} {}/{} (first #{})", n.schedules, c.schedules, n.first))
            .collect();
        if c.policy.len() > name_w {
            let _ = writeln!(out, "{}", c.policy);
        }
        let name = if c.policy.len() > name_w { "" } else { &c.policy };
        let mut line = format!("{name:<name_w$} {:>runs_w$}  {:<verdict_w$}", c.schedules, c.verdict);
        for (k, cell) in cells.iter().enumerate() {
            if k > 0 {
                out.push_str(line.trim_end());
                out.push('\n');
                line = " ".repeat(indent - 2);
            }
            if line.len() + 2 + cell.len() > WIDTH {
                out.push_str(line.trim_end());
                out.push('\n');
                line = " ".repeat(4);
            } else {
                line.push_str("  ");
            }
            line.push_str(cell);
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if c.step_limits > 0 {
            let _ = writeln!(out, "    ({} schedules hit the step budget: possible livelock)", c.step_limits);
        }
    }
    out
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
        assert!(table.contains("use-after-free 1/100") && table.contains("stale-translation 9/100"), "{table}");
    }
}
