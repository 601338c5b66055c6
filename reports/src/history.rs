//! The report's kernel history section: the exhaustive checker's verdict
//! of each kernel version's form of `collapse_pte_mapped_thp()` on each
//! preset's scope, one line per failure with the command that replays
//! it, then what `mmap_lock` cost the faults beside the collapse in each
//! version.
//!
//! ```text
//! version   uffd-private  pml-contended  pt-reclaim*  retract*  guard-file
//! v6.1      not registered in this build
//! pre-fix   FAIL [1]      FAIL [2]       FAIL [3]     FAIL [4]  FAIL [5]
//! v1 (6.6)  verified      verified       FAIL [6]     bounded   FAIL [7]
//! ```
//!
//! A cell names its failure by a note number rather than by the rule:
//! five columns of `FAIL table-freed-live` do not fit in 72. The note
//! under the table gives the gravest rule broken, how often, and the
//! replay command.

use crate::figures::Figure;
use crate::robot::{fit_line, fmt_stddev, fmt_value, measured_heading, rule, shell_lines, WIDTH};
use crate::schema::{Cell, HistoryCell, HistoryVersion, KernelHistory, Measured, PolicyCheck, ReportResults};
use crate::verdicts::wrap;
use bench_core::results::PolicyRun;
use bench_core::Oracle;
use std::fmt::Write as _;

/// Head of the version column.
const VERSION: &str = "version";
/// Blanks between columns.
const GAP: usize = 2;
/// Width of ` +-NNN%` ([`fmt_stddev`]).
const STDDEV: usize = 7;
/// A value and its `+-N%`: the narrowest a figure's column is.
const SIDE: usize = 8 + STDDEV;
/// What a row of a version this build does not register says.
pub const NOT_REGISTERED: &str = "not registered in this build";

/// What the section says above its table.
const LEGEND: &str = "Each version's form of the function as a policy (v6.1: the caller holds \
    mmap_lock for write, as before 6.6; pre-fix: 6.6 before the August 2023 fix; v1: 6.6 as merged; \
    v6.13: with the pmd_same() rechecks), checked on every interleaving of each preset's scope \
    (collapse-bench check --exhaustive). verified: none broke a rule. FAIL [n]: note n below names the \
    gravest rule broken and replays it.";

/// Why the `mmap_lock` figures matter, under their heading.
const MMAP_LOCK_WHY: &str = "Why it matters: before 6.6 the collapse's caller held mmap_lock for \
    write, so every fault of the process (a reader of mmap_lock) waited for the whole collapse; 6.6 \
    stopped taking it for write for that latency, which is what let a uffd copy into the table the \
    collapse was emptying (the 2023 race).";

/// What the `mmap_lock` table's columns are.
const MMAP_LOCK_LEGEND: &str = "faults waited: the share of the faulters' mmap_lock acquisitions \
    that had to wait; fault wait p99: of those that waited (0 where none did); collapse hold p99: how \
    long the collapse held mmap_lock (for write in v6.1, for read after). Medians over the runs, +-N% \
    as in the tables above.";

/// The gravest rule `check` found broken.
pub fn gravest(check: &PolicyCheck) -> Option<Oracle> {
    Oracle::by_gravity().into_iter().find(|o| check.by_oracle.contains_key(o.name()))
}

/// A cell's word: `verified`, `bounded`, `FAIL [n]` (n its note), or
/// `error [n]`.
fn cell_word(cell: &HistoryCell, note: Option<usize>) -> String {
    let n = note.map_or_else(String::new, |n| format!(" [{n}]"));
    match &cell.check {
        Some(c) if c.verdict == "FAIL" => format!("FAIL{n}"),
        Some(c) => c.verdict.clone(),
        None => format!("error{n}"),
    }
}

/// Whether a cell gets a note: a failure or an error.
fn noted(cell: &HistoryCell) -> bool {
    cell.check.as_ref().is_none_or(|c| c.verdict == "FAIL")
}

/// The preemption bound `preset`'s scope was explored under, where one was.
fn bound_of(h: &KernelHistory, preset: &str) -> Option<u32> {
    h.versions
        .iter()
        .flat_map(|v| &v.cells)
        .filter(|c| c.workload == preset)
        .find_map(|c| c.check.as_ref()?.exhaustive.as_ref()?.bound)
}

/// The note of a noted cell: what broke (the gravest rule, in how many
/// interleavings, the first) and the replay command; or the error.
fn note(n: usize, version: &HistoryVersion, cell: &HistoryCell) -> String {
    let head = format!("[{n}] {} on {}:", version.label, cell.workload);
    let Some(check) = &cell.check else {
        let error = cell.error.as_deref().unwrap_or("no check recorded");
        return wrap(&format!("{head} not checked: {error}"), "", "    ");
    };
    let what = match gravest(check) {
        Some(o) => {
            let count = &check.by_oracle[o.name()];
            let within = match check.exhaustive.as_ref().and_then(|e| e.bound) {
                Some(k) => format!(" within {k} preemptions"),
                None => String::new(),
            };
            format!(
                "{head} FAIL {o} in {} of {} interleavings{within} (first #{})",
                count.schedules, check.schedules, count.first
            )
        }
        None => format!("{head} FAIL"),
    };
    let mut out = wrap(&what, "", "    ");
    if let Some(doc) = &check.first {
        out.push_str(&shell_lines(&doc.replay, "    ", "        "));
    }
    out
}

/// The verdict table and its notes.
fn verdict_table(r: &ReportResults, h: &KernelHistory) -> String {
    // Number the notes row by row, left to right.
    let mut notes: Vec<(&HistoryVersion, &HistoryCell)> = vec![];
    let mut words: Vec<Vec<String>> = vec![];
    for v in &h.versions {
        let row = h
            .presets
            .iter()
            .map(|p| match v.cells.iter().find(|c| c.workload == *p) {
                Some(cell) if noted(cell) => {
                    notes.push((v, cell));
                    cell_word(cell, Some(notes.len()))
                }
                Some(cell) => cell_word(cell, None),
                None => "-".to_owned(),
            })
            .collect();
        words.push(row);
    }
    let heads: Vec<String> =
        h.presets.iter().map(|p| if bound_of(h, p).is_some() { format!("{p}*") } else { p.clone() }).collect();
    let label_w = h.versions.iter().map(|v| v.label.len()).fold(VERSION.len(), usize::max);
    let widths: Vec<usize> = heads
        .iter()
        .enumerate()
        .map(|(i, head)| {
            let registered = h.versions.iter().zip(&words).filter(|(v, _)| v.registered);
            registered.map(|(_, row)| row[i].len()).fold(head.len(), usize::max)
        })
        .collect();
    // Two blanks between columns, one where two do not fit (notes past
    // [9] widen a column).
    let gap = if label_w + widths.iter().map(|w| GAP + w).sum::<usize>() <= WIDTH { GAP } else { 1 };
    let mut out = String::new();
    let mut line = format!("{VERSION:<label_w$}");
    for (head, w) in heads.iter().zip(&widths) {
        let _ = write!(line, "{:gap$}{head:<w$}", "");
    }
    out.push_str(&fit_line(&line));
    for (v, row) in h.versions.iter().zip(&words) {
        let mut line = format!("{:<label_w$}", v.label);
        if !v.registered {
            let _ = write!(line, "{:gap$}{NOT_REGISTERED}", "");
        } else {
            for (word, w) in row.iter().zip(&widths) {
                let _ = write!(line, "{:gap$}{word:<w$}", "");
            }
        }
        out.push_str(&fit_line(&line));
    }
    let bounded: Vec<(&str, u32)> = h.presets.iter().filter_map(|p| bound_of(h, p).map(|k| (p.as_str(), k))).collect();
    if !bounded.is_empty() {
        let which: Vec<String> = bounded.iter().map(|(p, k)| format!("{p} within {k}")).collect();
        let why = if r.quick { " (--quick; the full report explores every interleaving)" } else { "" };
        out.push_str(&wrap(
            &format!(
                "* explored under a preemption bound{why}: {}. bounded: no rule broken within the bound, which \
                 is not verified.",
                which.join(", ")
            ),
            "",
            "  ",
        ));
    }
    let missing: Vec<&str> = h.versions.iter().filter(|v| !v.registered).map(|v| v.policy.as_str()).collect();
    if !missing.is_empty() {
        out.push_str(&wrap(
            &format!(
                "{NOT_REGISTERED}: this build has no policy {} (collapse-bench list); a row fills in once its \
                 policy is registered.",
                missing.join(" or ")
            ),
            "",
            "  ",
        ));
    }
    for (k, (v, cell)) in notes.iter().enumerate() {
        out.push('\n');
        out.push_str(&note(k + 1, v, cell));
    }
    out
}

/// The share, in %, of the faulters' `mmap_lock` acquisitions that waited.
fn faults_waited_percent(run: &PolicyRun) -> Option<f64> {
    let faults = *run.metrics.counters.ops.get("faulter")?;
    let waited = run.metrics.lock_wait_ns.get("faulter/mmap_lock").map_or(0, |h| h.count);
    (faults > 0).then(|| waited as f64 * 100.0 / faults as f64)
}

/// The faulters' `mmap_lock` wait, p99, µs, of the acquisitions that
/// waited; 0 where faults ran and none waited.
fn fault_wait_p99_us(run: &PolicyRun) -> Option<f64> {
    match run.metrics.lock_wait_ns.get("faulter/mmap_lock") {
        Some(h) => Some(h.p99 as f64 / 1e3),
        None => run.metrics.counters.ops.get("faulter").map(|_| 0.0),
    }
}

/// The collapse's `mmap_lock` hold, p99, µs.
fn collapse_hold_p99_us(run: &PolicyRun) -> Option<f64> {
    run.metrics.lock_hold_ns.get("collapse/mmap_lock").map(|h| h.p99 as f64 / 1e3)
}

/// The `mmap_lock` figures of the section, in column order.
pub fn mmap_lock_figures() -> Vec<Figure> {
    let figure = |name: &str, extract: fn(&PolicyRun) -> Option<f64>| Figure {
        name: name.to_owned(),
        headline: true,
        percent: name.ends_with('%'),
        extract: Box::new(extract),
    };
    vec![
        figure("faulter.mmap_lock.waited%", faults_waited_percent),
        figure("faulter.mmap_lock.wait.p99_us", fault_wait_p99_us),
        figure("collapse.mmap_lock.hold.p99_us", collapse_hold_p99_us),
    ]
}

/// Heads of the `mmap_lock` table's columns, over the figures of
/// [`mmap_lock_figures`].
const MMAP_HEADS: [&str; 3] = ["faults waited", "fault wait p99_us", "collapse hold p99_us"];

/// One way of measuring's `mmap_lock` table: a row per version, a
/// column per figure of [`mmap_lock_figures`], each value right-aligned
/// with its `+-N%` after it (blank under 1%), as in the comparison tables.
fn mmap_lock_table(h: &KernelHistory, cells: &[&Cell]) -> String {
    let label_w = h.versions.iter().map(|v| v.label.len()).fold(VERSION.len(), usize::max);
    let figures = mmap_lock_figures();
    let widths: Vec<usize> = MMAP_HEADS.iter().map(|head| head.len().max(SIDE)).collect();
    let mut out = format!("{VERSION:<label_w$}");
    for (head, w) in MMAP_HEADS.iter().zip(&widths) {
        let _ = write!(out, "{:GAP$}{head:>w$}", "");
    }
    out.push('\n');
    for v in &h.versions {
        let mut line = format!("{:<label_w$}", v.label);
        match cells.iter().find(|c| c.policy == v.policy) {
            _ if !v.registered => {
                let _ = write!(line, "{:GAP$}{NOT_REGISTERED}", "");
            }
            None => {
                let _ = write!(line, "{:GAP$}no runs (see the failures below)", "");
            }
            Some(cell) => {
                for (figure, w) in figures.iter().zip(&widths) {
                    // A share under its head's end; a time with its
                    // `+-N%` after it, as the comparison tables print them.
                    let _ = match figure.stat(&cell.runs) {
                        None => write!(line, "{:GAP$}{:>v$}{:STDDEV$}", "", "-", "", v = w - STDDEV),
                        Some(s) if figure.percent => write!(line, "{:GAP$}{:>w$}", "", format!("{:.1}%", s.median)),
                        Some(s) => {
                            write!(line, "{:GAP$}{:>v$}{}", "", fmt_value(s.median), fmt_stddev(&s), v = w - STDDEV)
                        }
                    };
                }
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// The `mmap_lock` part: per way of measuring, its heading and table,
/// then why it matters.
fn mmap_lock_part(r: &ReportResults, h: &KernelHistory) -> String {
    let Some(cost) = &h.mmap_lock else { return String::new() };
    let mut out = wrap(&format!("mmap_lock: page-cache faults beside the collapse ({})", cost.workload), "", "  ");
    out.push('\n');
    out.push_str(&wrap(MMAP_LOCK_WHY, "", ""));
    out.push('\n');
    out.push_str(&wrap(MMAP_LOCK_LEGEND, "", ""));
    let mut ways: Vec<&Measured> = vec![];
    for c in &cost.cells {
        if !ways.contains(&&c.measured) {
            ways.push(&c.measured);
        }
    }
    if ways.is_empty() {
        out.push_str("\nno version was measured\n");
    }
    for measured in ways {
        let cells: Vec<&Cell> = cost.cells.iter().filter(|c| c.measured == *measured).collect();
        let runs = cells.iter().map(|c| c.runs.len()).min().unwrap_or(0);
        out.push('\n');
        let heading = measured_heading(r, &cost.workload, measured);
        let heading = heading.trim_end().trim_end_matches(':');
        out.push_str(&wrap(&format!("{heading}; {runs} runs a version:"), "", "  "));
        out.push_str(&mmap_lock_table(h, &cells));
    }
    out
}

/// The kernel history section of `r`, or None where `r` has none (files
/// before schema 4). Every line at most [`WIDTH`] wide.
pub fn history_section(r: &ReportResults) -> Option<String> {
    let h = r.kernel_history.as_ref()?;
    let mut out = rule();
    out.push_str("kernel history: the checker on each version's collapse\n");
    out.push_str(&wrap(LEGEND, "", ""));
    out.push('\n');
    out.push_str(&verdict_table(r, h));
    let mmap = mmap_lock_part(r, h);
    if !mmap.is_empty() {
        out.push('\n');
        out.push_str(&mmap);
    }
    debug_assert!(out.lines().all(|l| l.len() <= WIDTH), "{out}");
    Some(out)
}
