//! The mailing-list report (`report.txt`), in the layout of the kernel
//! test robot's performance mails: a short header, then per workload one
//! table per patch against the base, then the checker's verdicts. Plain
//! ASCII, no line longer than 72 columns.
//!
//! ```text
//!              v1           v2-flush-bool
//! --------------- -----------------------
//!         %stddev %change         %stddev
//!             \      |                \
//!     5200 +-  2%   +1.2%     5262 +-  2%  collapses_per_s
//!    70.10 +-  2%  -40.0%*   42.06 +-  2%  pml.hold.p99_us
//!    0.260           0.0%    0.260         uffd.latency.p99_us
//!     0.00         +26.1 *   26.09         aborts.SCAN_FAIL%
//! ```
//!
//! With a CPU sweep of the simulation engine, a section after the
//! workloads gives, per figure, a table of CPU counts by policy:
//!
//! ```text
//! pml.hold.p99_us
//! cpus        v1  v2-flush-bool  v2-step3-down
//! ----  --------  -------------  -------------
//!    1      3.00           1.80           1.50
//!   64     116.4          35.82          29.85
//! ```
//!
//! Columns: the base's mean and `+-` its sample standard deviation in %
//! of the mean (blank under 1 %), the change, the patch's mean and
//! deviation, the figure. The change is (patch - base) / base in %, or,
//! for figures that are themselves percentages (names ending in `%`),
//! the difference in percentage points (no `%` sign, as the robot prints
//! its perf-profile rows). A `*` marks a change beyond noise: the
//! difference of the means exceeds twice its standard error
//! (`2 * sqrt(sb^2/nb + sp^2/np)`), or, when either side has a single
//! run, 10 % of the base value.

use crate::figures::{cpu_sweep_figures, figures, Figure, Stat};
use crate::schema::{Cell, CpuSweep, PolicyCheck, PolicyFailure, ReportResults};
use crate::verdicts::{counterexample_head, print_counterexample, shown_counterexamples, verdict_table, wrap};
use bench_core::results::PolicyRun;
use std::fmt::Write as _;

/// Widest line.
pub const WIDTH: usize = 72;
/// Width of a mean.
const VALUE: usize = 8;
/// Width of ` +-NNN%`.
const STDDEV: usize = 7;
/// One side: mean and deviation.
const SIDE: usize = VALUE + STDDEV;
/// The change: right-aligned text, then the significance flag.
const CHANGE: usize = 9;
/// A change needs more than this relative size to count when a side has
/// a single run.
const SINGLE_RUN_THRESHOLD: f64 = 0.10;

/// What the table's columns and marks mean, for the report's header.
pub const LEGEND: &str = "Each table compares the mean over the runs of the base (left) with \
    the patch (right). +-N% is the sample standard deviation in % of the mean, shown where it \
    is at least 1%. %change is (patch - base) / base; for figures ending in % (shares of all \
    collapses) it is the difference in percentage points, printed without a % sign. * marks a \
    change beyond noise: larger than twice its standard error (taken as at least 1% of the \
    base, the histograms' resolution), or, with a single run on either side, larger than 10% \
    of the base. Latencies (_us) are in microseconds. Headline figures \
    come first.";

/// A mean, robot style: integers for large values, 2 or 3 significant
/// decimals for small ones.
pub fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0.00".into()
    } else if !v.is_finite() {
        format!("{v}")
    } else if a >= 9_999_999.5 {
        format!("{v:.1e}")
    } else if a >= 999.95 {
        format!("{v:.0}")
    } else if a >= 99.995 {
        format!("{v:.1}")
    } else if a >= 0.9995 {
        format!("{v:.2}")
    } else if a >= 0.00995 {
        format!("{v:.3}")
    } else {
        format!("{v:.1e}")
    }
}

/// ` +-NNN%` where the deviation is at least 1 % of the mean, else blank
/// (always 7 columns wide).
pub fn fmt_stddev(s: &Stat) -> String {
    match s.relative_stddev() {
        Some(r) if r >= 0.01 => format!(" +-{:>3}%", ((r * 100.0).round() as u64).min(999)),
        _ => " ".repeat(STDDEV),
    }
}

/// A change: `+1.5%` (relative, in %) or `+2.1` (percentage points).
pub fn fmt_change(change: f64, percent_points: bool) -> String {
    let unit = if percent_points { "" } else { "%" };
    let a = change.abs();
    let num = if change.is_infinite() {
        format!("{}Inf", if change > 0.0 { '+' } else { '-' })
    } else if change.is_nan() {
        "?".into()
    } else if change == 0.0 {
        "0.0".into()
    } else if a < 999.95 {
        format!("{change:+.1}")
    } else if a < 99_999.5 {
        format!("{change:+.0}")
    } else {
        format!("{change:+.0e}")
    };
    format!("{num}{unit}")
}

/// Whether the change from `base` to `patch` is beyond noise: the
/// difference of the means is more than twice its standard error; with a
/// single run on either side (no deviation to go by), more than 10 % of
/// the base (any change from a base of 0).
pub fn significant(base: &Stat, patch: &Stat) -> bool {
    let delta = (patch.mean - base.mean).abs();
    if delta == 0.0 || !delta.is_finite() {
        return delta.is_infinite();
    }
    if base.n < 2 || patch.n < 2 {
        return base.mean == 0.0 || delta / base.mean.abs() > SINGLE_RUN_THRESHOLD;
    }
    let se = (base.stddev.powi(2) / base.n as f64 + patch.stddev.powi(2) / patch.n as f64).sqrt();
    // Histogram quantiles have 1% resolution: a figure that is identical in
    // every run still has that much error, so a smaller change is not flagged.
    delta > 2.0 * se.max(HISTOGRAM_RESOLUTION * base.mean.abs())
}

/// Relative resolution of the histograms the latency figures come from.
const HISTOGRAM_RESOLUTION: f64 = 0.01;

/// One row of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The figure's name.
    pub name: String,
    /// Already a percentage: the change is in percentage points.
    pub percent: bool,
    /// The base's mean and deviation (`None`: no run has the figure).
    pub base: Option<Stat>,
    /// The patch's.
    pub patch: Option<Stat>,
    /// The change (in % or percentage points), where both sides have it.
    pub change: Option<f64>,
    /// Beyond noise (see [`significant`]).
    pub significant: bool,
}

impl Row {
    fn of(fig: &Figure, base: &[PolicyRun], patch: &[PolicyRun]) -> Option<Row> {
        let (b, p) = (fig.stat(base), fig.stat(patch));
        if b.is_none() && p.is_none() {
            return None;
        }
        let change = match (b, p) {
            (Some(b), Some(p)) if fig.percent => Some(p.mean - b.mean),
            (Some(b), Some(p)) if b.mean == 0.0 => {
                Some(if p.mean == 0.0 { 0.0 } else { f64::INFINITY.copysign(p.mean) })
            }
            (Some(b), Some(p)) => Some((p.mean - b.mean) / b.mean.abs() * 100.0),
            _ => None,
        };
        let significant = matches!((b, p), (Some(b), Some(p)) if significant(&b, &p));
        Some(Row { name: fig.name.clone(), percent: fig.percent, base: b, patch: p, change, significant })
    }

    /// The row as printed.
    pub fn line(&self) -> String {
        let side = |s: &Option<Stat>| match s {
            None => format!("{:>VALUE$}{:STDDEV$}", "-", ""),
            Some(s) => format!("{:>VALUE$}{}", fmt_value(s.mean), fmt_stddev(s)),
        };
        let change = self.change.map(|c| fmt_change(c, self.percent)).unwrap_or_default();
        // Percentage points leave the `%` column blank, as the robot does.
        let change = if self.percent && self.change.is_some() { format!("{change} ") } else { change };
        let flag = if self.significant { '*' } else { ' ' };
        let line =
            format!("{}{change:>w$}{flag}{}  {}", side(&self.base), side(&self.patch), self.name, w = CHANGE - 1);
        truncate(&line, WIDTH)
    }
}

/// Every row of a comparison of `base` with `patch` (runs of one policy on
/// one workload each): headline figures first; figures neither side has
/// are left out.
pub fn rows(base: &[PolicyRun], patch: &[PolicyRun]) -> Vec<Row> {
    figures(base.iter().chain(patch)).iter().filter_map(|f| Row::of(f, base, patch)).collect()
}

fn truncate(s: &str, width: usize) -> String {
    s.chars().take(width).collect()
}

/// The table's head: the two labels, the dashes, `%stddev %change %stddev`.
fn head(base: &str, patch: &str) -> String {
    let right = CHANGE + SIDE - 1;
    let mut out = String::new();
    if base.len() <= SIDE {
        out.push_str(&truncate(&format!("{base:>SIDE$} {patch:>right$}"), WIDTH));
    } else {
        out.push_str(&truncate(base, WIDTH));
        out.push('\n');
        out.push_str(&truncate(&format!("{:SIDE$} {patch:>right$}", ""), WIDTH));
    }
    out.push('\n');
    let _ = writeln!(out, "{} {}", "-".repeat(SIDE), "-".repeat(right));
    let _ = writeln!(out, "{:>SIDE$}{:>w$} {:>SIDE$}", "%stddev", "%change", "%stddev", w = CHANGE - 1);
    // The marks point at the columns they head, as the robot's do.
    let mut marks = vec![b' '; SIDE + CHANGE + SIDE];
    marks[SIDE - 3] = b'\\';
    marks[SIDE + CHANGE - 5] = b'|';
    marks[SIDE + CHANGE + SIDE - 3] = b'\\';
    let _ = writeln!(out, "{}", String::from_utf8(marks).expect("ASCII").trim_end());
    out
}

/// One comparison table of two sets of runs, headed by their labels.
pub fn comparison_of(base_label: &str, base: &[PolicyRun], patch_label: &str, patch: &[PolicyRun]) -> String {
    let mut out = head(base_label, patch_label);
    for row in rows(base, patch) {
        out.push_str(&row.line());
        out.push('\n');
    }
    out
}

/// One comparison table: `base`'s runs against `patch`'s, headed by their
/// policies.
pub fn comparison(base: &Cell, patch: &Cell) -> String {
    comparison_of(&base.policy, &base.runs, &patch.policy, &patch.runs)
}

/// `name/name/...:` over `  value/value/...`, split into several such
/// pairs where one would be wider than [`WIDTH`].
pub fn params(pairs: &[(&str, String)]) -> String {
    let mut out = String::new();
    let mut start = 0;
    while start < pairs.len() {
        let mut end = start + 1;
        let fits = |e: usize| {
            let names: Vec<&str> = pairs[start..e].iter().map(|p| p.0).collect();
            let values: Vec<&str> = pairs[start..e].iter().map(|p| p.1.as_str()).collect();
            names.join("/").len() < WIDTH && values.join("/").len() + 2 <= WIDTH
        };
        while end < pairs.len() && fits(end + 1) {
            end += 1;
        }
        let names: Vec<&str> = pairs[start..end].iter().map(|p| p.0).collect();
        let values: Vec<&str> = pairs[start..end].iter().map(|p| p.1.as_str()).collect();
        let _ = writeln!(out, "{}:", truncate(&names.join("/"), WIDTH - 1));
        out.push_str(&fit_line(&format!("  {}", values.join("/"))));
        start = end;
    }
    out
}

/// A shell command over several lines, each at most [`WIDTH`] wide: the
/// first after `first`, the rest after `rest`, joined by ` \`. A word too
/// long for a line is split with a backslash-newline (which the shell
/// removes, so the word stays whole) and goes on at column 0.
pub fn shell_lines(cmd: &str, first: &str, rest: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_owned();
    let mut empty = true;
    for word in cmd.split_whitespace() {
        if !empty && line.len() + 1 + word.len() + 2 > WIDTH {
            out.push_str(&line);
            out.push_str(" \\\n");
            line = rest.to_owned();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        let mut word = word;
        while line.len() + word.len() > WIDTH {
            let room = WIDTH.saturating_sub(line.len() + 1).max(1);
            let cut = word.char_indices().nth(room).map_or(word.len(), |(i, _)| i);
            line.push_str(&word[..cut]);
            out.push_str(&line);
            out.push_str("\\\n");
            line = String::new();
            word = &word[cut..];
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// `line` as lines of at most [`WIDTH`]: broken at spaces, continued with
/// its own indentation plus four; a word wider than a line is cut.
pub fn fit_line(line: &str) -> String {
    let line = line.trim_end();
    if line.chars().count() <= WIDTH {
        return format!("{line}\n");
    }
    let indent = line.len() - line.trim_start().len();
    let cont = " ".repeat((indent + 4).min(WIDTH / 2));
    let mut out = String::new();
    let mut rest: String = line.to_owned();
    let mut first = true;
    loop {
        let cur = if first { rest.clone() } else { format!("{cont}{}", rest.trim_start()) };
        if cur.chars().count() <= WIDTH {
            out.push_str(&cur);
            out.push('\n');
            return out;
        }
        let lead = if first { indent } else { cont.len() };
        let limit = cur.char_indices().nth(WIDTH).map_or(cur.len(), |(i, _)| i);
        let cut = cur[..limit].rfind(' ').filter(|&i| i > lead).unwrap_or(limit);
        out.push_str(cur[..cut].trim_end());
        out.push('\n');
        rest = cur[cut..].to_owned();
        first = false;
    }
}

/// Every line of `text` at most [`WIDTH`] wide (see [`fit_line`]).
pub fn fit(text: &str) -> String {
    text.lines().map(fit_line).collect()
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// The scenario parameters of a set of runs as printed over a table.
pub fn run_params<'a>(name: &'a str, value: String, run: &PolicyRun) -> Vec<(&'a str, String)> {
    vec![
        (name, value),
        ("threads", run.threads.to_string()),
        ("pinned", yes_no(run.pinned)),
        ("oversubscribed", yes_no(run.oversubscribed)),
    ]
}

/// A separator line between sections.
pub fn rule() -> String {
    format!("{}\n", "=".repeat(WIDTH))
}

fn distinct<'a>(items: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen: Vec<&str> = vec![];
    for i in items {
        if !seen.contains(&i) {
            seen.push(i);
        }
    }
    seen
}

fn header(r: &ReportResults) -> String {
    let env = &r.environment;
    let patches = distinct(r.cells.iter().map(|c| c.policy.as_str()).filter(|p| *p != r.base));
    let workloads = distinct(r.cells.iter().map(|c| c.workload.as_str()));
    let mut out = String::new();
    out.push_str(&wrap(&format!("{} report: collapse_pte_mapped_thp() locking policies", r.tool), "", "  "));
    out.push('\n');
    out.push_str(&wrap(&r.base, "base:         ", "              "));
    out.push_str(&wrap(&patches.join(", "), "patches:      ", "              "));
    out.push_str(&wrap(&workloads.join(", "), "workloads:    ", "              "));
    // A simulated matrix ran on virtual CPUs: the host only ran the simulator.
    let machine = match env.engine.as_str() {
        "sim" => format!("simulated (virtual time), on a host of {} cores, {}", env.cores, env.cpu_model),
        _ => format!("{} cores, {}", env.cores, env.cpu_model),
    };
    out.push_str(&wrap(&machine, "test machine: ", "              "));
    out.push_str(&wrap(&format!("{} ({})", env.kernel, env.os), "kernel:       ", "              "));
    out.push('\n');
    out.push_str(&params(&[
        ("engine", env.engine.clone()),
        ("repetitions", r.repetitions.to_string()),
        ("run_seconds", format!("{}", r.run_seconds)),
        ("seed", env.seed.to_string()),
        ("git_revision", env.git_revision.clone()),
    ]));
    out.push_str("\nTo reproduce:\n\n");
    out.push_str(&shell_lines(&r.command, "        ", "            "));
    out.push('\n');
    out.push_str(&wrap(LEGEND, "", ""));
    out
}

fn workload_section(r: &ReportResults, workload: &str) -> String {
    let cells: Vec<&Cell> = r.cells.iter().filter(|c| c.workload == workload).collect();
    let base = cells.iter().find(|c| c.policy == r.base);
    let mut out = rule();
    let first = base.or(cells.first()).and_then(|c| c.runs.first());
    if let Some(run) = first {
        out.push_str(&params(&run_params("workload", workload.to_owned(), run)));
    } else {
        let _ = writeln!(out, "workload: {workload}");
    }
    let Some(base) = base else {
        out.push('\n');
        out.push_str(&wrap(&format!("no runs of the base {} on {workload}: nothing to compare", r.base), "", ""));
        return out;
    };
    for patch in cells.iter().filter(|c| c.policy != r.base) {
        out.push('\n');
        out.push_str(&comparison(base, patch));
    }
    if cells.len() == 1 {
        out.push('\n');
        out.push_str(&wrap(&format!("only the base ran on {workload}: nothing to compare"), "", ""));
    }
    out
}

/// Head of the CPU column of the sweep tables.
const CPUS: &str = "cpus";
/// Blanks before each policy column of the sweep tables.
const GAP: usize = 2;

/// What the sweep's section says about its numbers, after its parameters.
const CPU_SWEEP_LEGEND: &str = "Each point is one run of the simulation engine: the workload scaled to \
    that many CPUs (one actor thread each) for virtual_seconds of virtual time, the primitives' costs \
    taken from the cost model recorded in results.json (cpu_sweep.costs). Latencies (_us) are virtual \
    microseconds; flushes and IPIs are the collapses' own, per collapse. The base is the first column \
    of every table.";

/// The policy columns of the sweep tables, split into tables that fit
/// [`WIDTH`] after a CPU column `cpus_width` wide: every table starts with
/// `policies[0]` (the base) and takes as many of the others, in order, as
/// fit. A column is as wide as its policy's name, at least [`VALUE`];
/// where the base and a single other do not fit side by side, the widest
/// column is narrowed (its name cut), one column at a time, until they do.
fn sweep_tables<'a>(policies: &[&'a str], cpus_width: usize) -> Vec<Vec<(&'a str, usize)>> {
    let width = |cols: &[(&str, usize)]| cpus_width + cols.iter().map(|c| GAP + c.1).sum::<usize>();
    let Some((&base, others)) = policies.split_first() else { return vec![] };
    let column = |name: &'a str| (name, name.len().max(VALUE));
    let mut tables = vec![];
    let mut table = vec![column(base)];
    for &name in others {
        table.push(column(name));
        if table.len() > 2 && width(&table) > WIDTH {
            let next = table.pop().expect("just pushed");
            tables.push(std::mem::replace(&mut table, vec![column(base), next]));
        }
    }
    tables.push(table);
    for table in &mut tables {
        while width(table) > WIDTH {
            let widest = table.iter_mut().max_by_key(|c| c.1).expect("a table has its base");
            widest.1 -= 1;
        }
    }
    tables
}

/// One sweep table: a row per CPU count, a column per policy, `-` where a
/// point lacks the figure.
fn sweep_table(
    sweep: &CpuSweep,
    figure: &Figure,
    cpus: &[u32],
    columns: &[(&str, usize)],
    cpus_width: usize,
) -> String {
    let mut out = format!("{CPUS:>cpus_width$}");
    for (name, w) in columns {
        let _ = write!(out, "{:GAP$}{:>w$}", "", truncate(name, *w));
    }
    let _ = write!(out, "\n{}", "-".repeat(cpus_width));
    for (_, w) in columns {
        let _ = write!(out, "{:GAP$}{}", "", "-".repeat(*w));
    }
    out.push('\n');
    for &n in cpus {
        let _ = write!(out, "{n:>cpus_width$}");
        for (name, w) in columns {
            let point = sweep.points.iter().find(|p| p.policy == *name && p.value == n);
            let value = point.and_then(|p| figure.value(&p.run)).map_or_else(|| "-".to_owned(), fmt_value);
            let _ = write!(out, "{:GAP$}{value:>w$}", "");
        }
        out.push('\n');
    }
    out
}

/// The CPU sweep's section: what the simulation ran, then per figure of
/// [`cpu_sweep_figures`] its tables (see [`sweep_tables`]); a figure no
/// point has is left out, as in the comparison tables.
fn cpu_sweep_section(base: &str, sweep: &CpuSweep) -> String {
    let mut out = rule();
    out.push_str("cpu sweep (simulated: virtual time, not measured on this machine)\n\n");
    out.push_str(&params(&[
        ("engine", "sim".to_owned()),
        ("workload", sweep.workload.clone()),
        ("virtual_seconds", format!("{}", sweep.virtual_seconds)),
    ]));
    out.push('\n');
    out.push_str(&wrap(CPU_SWEEP_LEGEND, "", ""));
    let in_sweep = distinct(sweep.points.iter().map(|p| p.policy.as_str()));
    let policies = distinct(std::iter::once(base).filter(|b| in_sweep.contains(b)).chain(in_sweep.iter().copied()));
    let mut cpus: Vec<u32> = sweep.points.iter().map(|p| p.value).collect();
    cpus.sort_unstable();
    cpus.dedup();
    let cpus_width = cpus.iter().map(|n| n.to_string().len()).fold(CPUS.len(), usize::max);
    let tables = sweep_tables(&policies, cpus_width);
    let mut shown = 0;
    for figure in cpu_sweep_figures() {
        if !sweep.points.iter().any(|p| figure.value(&p.run).is_some()) {
            continue;
        }
        shown += 1;
        let _ = write!(out, "\n{}\n", figure.name);
        for (i, columns) in tables.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&sweep_table(sweep, &figure, &cpus, columns, cpus_width));
        }
    }
    if shown == 0 {
        out.push_str("\nno point of the sweep has any of its figures\n");
    }
    out
}

/// The counterexample of one verdict, as `check` prints it, every line at
/// most [`WIDTH`] wide (the replay command continued with `\`).
fn counterexample(workload: &str, c: &PolicyCheck) -> Option<String> {
    let doc = c.first.as_ref()?;
    let mut body = String::new();
    print_counterexample(&mut body, doc);
    let mut out = wrap(&counterexample_head(c, workload)?, "", "");
    for line in body.lines() {
        match line.strip_prefix("replay: ") {
            Some(cmd) if line.len() > WIDTH => out.push_str(&shell_lines(cmd, "replay: ", "    ")),
            _ => out.push_str(&fit_line(line)),
        }
    }
    Some(out)
}

fn verdict_section(r: &ReportResults) -> String {
    let mut out = rule();
    out.push_str("verdicts (collapse-bench check, every oracle)\n");
    if r.verdicts.is_empty() {
        out.push_str("\nnone in this result\n");
        return out;
    }
    out.push_str(&wrap(VERDICT_LEGEND, "", ""));
    for workload in distinct(r.verdicts.iter().map(|v| v.workload.as_str())) {
        for exhaustive in [true, false] {
            let checks: Vec<PolicyCheck> = r
                .verdicts
                .iter()
                .filter(|v| v.workload == workload && v.check.exhaustive.is_some() == exhaustive)
                .map(|v| v.check.clone())
                .collect();
            let Some(first) = checks.first() else { continue };
            let heading = match &first.exhaustive {
                Some(e) => format!("{workload}, every interleaving of its scope ({}):", e.scope),
                None => format!("{workload}, {} sampled schedules:", first.schedules),
            };
            out.push('\n');
            out.push_str(&wrap(&heading, "", "  "));
            out.push_str(&fit(&verdict_table(&checks)));
        }
    }
    for v in shown_counterexamples(&r.verdicts) {
        if let Some(text) = counterexample(&v.workload, &v.check) {
            out.push('\n');
            out.push_str(&text);
        }
    }
    out
}

/// What the verdict words mean, above the tables.
const VERDICT_LEGEND: &str = "\nverified: every interleaving of the scope was explored and none broke a \
    rule (a bounded exploration says bounded). ok: no rule broken in the sampled schedules, which is not \
    a proof. FAIL: the gravest rule broken, with its counterexample below.";

/// The whole `report.txt`: header, one section per workload with a table
/// per patch against `r.base`, the CPU sweep's tables where `r` has one,
/// the verdicts and their counterexamples.
pub fn report_text(r: &ReportResults) -> String {
    let mut out = header(r);
    for workload in distinct(r.cells.iter().map(|c| c.workload.as_str())) {
        out.push('\n');
        out.push_str(&workload_section(r, workload));
    }
    if let Some(sweep) = &r.cpu_sweep {
        out.push('\n');
        out.push_str(&cpu_sweep_section(&r.base, sweep));
    }
    out.push('\n');
    out.push_str(&verdict_section(r));
    if !r.failures.is_empty() {
        out.push('\n');
        out.push_str(&failure_section(&r.failures));
    }
    fit(&out)
}

/// The runs and checks that were abandoned: one paragraph each, the
/// summary and then the oops or hung-task lines, wrapped to [`WIDTH`].
fn failure_section(failures: &[PolicyFailure]) -> String {
    let mut out = rule();
    out.push_str("failed (abandoned: a panic, or no progress within the watchdog;\nleft out of the tables above)\n");
    for f in failures {
        out.push('\n');
        out.push_str(&wrap(&ascii(&f.summary()), "", "  "));
        for line in f.failure.lines() {
            out.push_str(&wrap(&ascii(&line), "  ", "    "));
        }
    }
    out
}

/// `s` with every character outside printable ASCII escaped (a panic
/// message can hold anything; the report is plain ASCII).
fn ascii(s: &str) -> String {
    s.chars()
        .flat_map(|c| if c == ' ' || c.is_ascii_graphic() { vec![c] } else { c.escape_default().collect() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_robot_style() {
        assert_eq!(fmt_value(65599.4), "65599");
        assert_eq!(fmt_value(7.421), "7.42");
        assert_eq!(fmt_value(128.34), "128.3");
        assert_eq!(fmt_value(0.1234), "0.123");
        assert_eq!(fmt_value(0.0), "0.00");
        assert_eq!(fmt_value(12_345_678.0), "1.2e7");
        assert_eq!(fmt_change(1.5, false), "+1.5%");
        assert_eq!(fmt_change(-0.4, false), "-0.4%");
        assert_eq!(fmt_change(2.1, true), "+2.1");
        assert_eq!(fmt_change(12345.0, false), "+12345%");
        assert_eq!(fmt_change(f64::INFINITY, false), "+Inf%");
        assert_eq!(fmt_change(0.0, false), "0.0%");
        assert_eq!(fmt_change(-0.0, true), "0.0");
    }

    #[test]
    fn head_is_aligned() {
        let h = head("v1", "v2-flush-bool");
        let lines: Vec<&str> = h.lines().collect();
        assert_eq!(lines[0], "             v1           v2-flush-bool");
        assert_eq!(lines[1], "--------------- -----------------------");
        assert_eq!(lines[2], "        %stddev %change         %stddev");
        assert_eq!(lines[3], format!("{}\\{}|{}\\", " ".repeat(12), " ".repeat(6), " ".repeat(16)));
    }

    #[test]
    fn long_lines_are_wrapped() {
        let cmd =
            format!("collapse-bench check -p pre-fix -w pml-contended --seed 1 --replay s1-{}", "0x13.".repeat(30));
        let text = shell_lines(&cmd, "replay: ", "    ");
        assert!(text.lines().all(|l| l.len() <= WIDTH), "{text}");
        let joined = text.replace(" \\\n    ", " ").replace("\\\n", "");
        assert_eq!(joined.trim_end(), format!("replay: {cmd}"));
        let long = format!("  {}", "word ".repeat(40));
        assert!(fit_line(&long).lines().all(|l| l.len() <= WIDTH));
        let unbroken = "x".repeat(200);
        let f = fit_line(&unbroken);
        assert!(f.lines().all(|l| l.len() <= WIDTH), "{f}");
        assert_eq!(f.replace(['\n', ' '], ""), unbroken);
    }

    #[test]
    fn params_split() {
        let pairs: Vec<(&str, String)> = (0..12).map(|_| ("parameter", "value-value".to_owned())).collect();
        let p = params(&pairs);
        assert!(p.lines().all(|l| l.len() <= WIDTH), "{p}");
        assert_eq!(p.matches("parameter").count(), 12);
    }
}
