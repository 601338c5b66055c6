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
//! Columns: the base's median over its runs and `+-` half the width of
//! the median's 95% confidence interval in % of it (blank under 1 %), the
//! change, the patch's median and interval, the figure. The change is
//! (patch - base) / base in %, or, for figures that are themselves
//! percentages (names ending in `%`), the difference in percentage
//! points (no `%` sign, as the robot prints its perf-profile rows). A `*`
//! marks a change a second run reproduces ([`crate::stats::reproduced`]:
//! significant by Mann and Whitney's test in each half of the runs, the
//! same way); `~` a figure whose interval is wider than 10 % of its
//! median, named again in a sentence under the table. Medians rather
//! than the robot's means: see [`crate::stats`].

use crate::figures::{cpu_sweep_figures, figures, Figure};
use crate::schema::{Cell, CpuSweep, Measured, PolicyCheck, PolicyFailure, ReportResults};
use crate::stats::{reproduced, MedianCi, MIN_RUNS_PER_HALF};
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

/// What the table's columns and marks mean, for the report's header.
pub const LEGEND: &str = "Each table compares the base (left) with the patch (right): the median \
    over the runs of each, and +-N%, half the width of the 95% confidence interval of that median in % \
    of it (from the runs' order statistics; shown where it is at least 1%). %change is (patch - base) \
    / base of the medians; for figures ending in % (shares of all collapses) it is the difference in \
    percentage points, printed without a % sign. * marks a change a second run reproduces: the runs \
    of each side are split into two halves (every other run; policies took turns, run by run), and in \
    each half on its own the Mann-Whitney rank test finds the change (p < 0.05) in the same direction. \
    ~ marks a figure too noisy to quote: its interval is wider than +-10% of its median on either \
    side, and the table says so under it. Latencies (_us) are in microseconds; _per_1k is per 1000 \
    collapses; collapse.* figures count the collapses' own events, all_actors.* every actor's. \
    Headline figures come first.";

/// A figure whose interval is wider than this share of its median, on
/// either side, is marked noisy (`~`).
pub const NOISY: f64 = 0.10;

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

/// ` +-NNN%`, half the interval's width in % of the median, where it is
/// at least 1 %, else blank (always 7 columns wide).
pub fn fmt_stddev(s: &MedianCi) -> String {
    match s.relative_half_width() {
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

/// Whether a change of the medians is as large as the histograms the
/// latency figures come from can resolve (1 %, or a tenth of a
/// percentage point for a share); a reproduced change smaller than that
/// is not flagged.
fn resolvable(base: f64, patch: f64, percent_points: bool) -> bool {
    let delta = (patch - base).abs();
    match percent_points {
        true => delta >= 0.1,
        false => base == 0.0 && delta > 0.0 || delta >= HISTOGRAM_RESOLUTION * base.abs(),
    }
}

/// Relative resolution of the histograms the latency figures come from.
const HISTOGRAM_RESOLUTION: f64 = 0.01;

/// One row of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The figure's name.
    pub name: String,
    /// A headline figure.
    pub headline: bool,
    /// Already a percentage: the change is in percentage points.
    pub percent: bool,
    /// The base's median and interval (`None`: no run has the figure).
    pub base: Option<MedianCi>,
    /// The patch's.
    pub patch: Option<MedianCi>,
    /// The change of the medians (in % or percentage points), where both
    /// sides have the figure.
    pub change: Option<f64>,
    /// A change a second run reproduces ([`reproduced`]), large enough to
    /// resolve.
    pub significant: bool,
    /// Either side's interval is wider than [`NOISY`] of its median.
    pub noisy: bool,
}

impl Row {
    fn of(fig: &Figure, base: &[PolicyRun], patch: &[PolicyRun]) -> Option<Row> {
        let (bx, px) = (fig.values(base), fig.values(patch));
        let (b, p) = (MedianCi::of(&bx), MedianCi::of(&px));
        if b.is_none() && p.is_none() {
            return None;
        }
        let change = match (b, p) {
            (Some(b), Some(p)) if fig.percent => Some(p.median - b.median),
            (Some(b), Some(p)) if b.median == 0.0 => {
                Some(if p.median == 0.0 { 0.0 } else { f64::INFINITY.copysign(p.median) })
            }
            (Some(b), Some(p)) => Some((p.median - b.median) / b.median.abs() * 100.0),
            _ => None,
        };
        let significant = matches!((b, p), (Some(b), Some(p))
            if resolvable(b.median, p.median, fig.percent) && reproduced(&bx, &px));
        let wide = |s: &Option<MedianCi>| s.and_then(|s| s.relative_half_width()).is_some_and(|r| r > NOISY);
        let noisy = !fig.percent && (wide(&b) || wide(&p));
        Some(Row {
            name: fig.name.clone(),
            headline: fig.headline,
            percent: fig.percent,
            base: b,
            patch: p,
            change,
            significant,
            noisy,
        })
    }

    /// The row as printed.
    pub fn line(&self) -> String {
        let side = |s: &Option<MedianCi>| match s {
            None => format!("{:>VALUE$}{:STDDEV$}", "-", ""),
            Some(s) => format!("{:>VALUE$}{}", fmt_value(s.median), fmt_stddev(s)),
        };
        let change = self.change.map(|c| fmt_change(c, self.percent)).unwrap_or_default();
        // Percentage points leave the `%` column blank, as the robot does.
        let change = if self.percent && self.change.is_some() { format!("{change} ") } else { change };
        let flag = match (self.significant, self.noisy) {
            (true, _) => '*',
            (false, true) => '~',
            (false, false) => ' ',
        };
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

/// One comparison table of two sets of runs, headed by their labels,
/// with a sentence under it naming the figures too noisy to quote, and
/// one when the runs are too few for any change to be called reproduced.
pub fn comparison_of(base_label: &str, base: &[PolicyRun], patch_label: &str, patch: &[PolicyRun]) -> String {
    let mut out = head(base_label, patch_label);
    let rows = rows(base, patch);
    for row in &rows {
        out.push_str(&row.line());
        out.push('\n');
    }
    let noisy: Vec<&str> = rows.iter().filter(|r| r.noisy && !r.significant).map(|r| r.name.as_str()).collect();
    if !noisy.is_empty() {
        let runs = base.len().min(patch.len());
        out.push_str(&wrap(
            &format!(
                "~ too noisy here to quote (95% interval wider than +-{:.0}% after {runs} runs): {}.",
                NOISY * 100.0,
                noisy.join(", ")
            ),
            "",
            "  ",
        ));
    }
    if base.len().min(patch.len()) < 2 * MIN_RUNS_PER_HALF {
        out.push_str(&wrap(
            &format!(
                "Too few runs ({} and {}) for a change to be called reproduced: {} a side are needed.",
                base.len(),
                patch.len(),
                2 * MIN_RUNS_PER_HALF
            ),
            "",
            "  ",
        ));
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

/// How a cell's runs were made, as printed over its tables: the
/// workload, the engine, the threads (pinned or not, more than the cores
/// or not) or, simulated, the virtual CPUs, and the number of runs.
pub fn cell_params(cell: &Cell) -> Vec<(&'static str, String)> {
    let mut out = vec![("workload", cell.workload.clone()), ("engine", cell.measured.tag().to_owned())];
    if let Some(run) = cell.runs.first() {
        match cell.measured {
            Measured::Simulated => out.push(("cpus", run.threads.to_string())),
            _ => out.extend([
                ("threads", run.threads.to_string()),
                ("pinned", yes_no(run.pinned)),
                ("oversubscribed", yes_no(run.oversubscribed)),
            ]),
        }
    }
    out.push(("runs", cell.runs.len().to_string()));
    out
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
    let engines = distinct(r.cells.iter().map(|c| c.measured.tag()));
    let mut header_params = vec![
        ("engine", if engines.is_empty() { env.engine.clone() } else { engines.join("+") }),
        ("repetitions", r.repetitions.to_string()),
        ("run_seconds", format!("{}", r.run_seconds)),
    ];
    if let Some(s) = r.sim_seconds {
        header_params.push(("sim_seconds", format!("{s}")));
    }
    header_params.extend([("seed", env.seed.to_string()), ("git_revision", env.git_revision.clone())]);
    out.push_str(&params(&header_params));
    out.push_str("\nTo reproduce:\n\n");
    out.push_str(&shell_lines(&r.command, "        ", "            "));
    out.push('\n');
    out.push_str(&wrap(LEGEND, "", ""));
    out
}

/// What a section measured one way says of it, under the rule.
pub fn measured_heading(r: &ReportResults, workload: &str, measured: &Measured) -> String {
    let how = match measured {
        Measured::Native => "native, pinned one thread per core".to_owned(),
        Measured::Fitted { actors } => format!(
            "native, fitted to this machine's {} cores: {actors}, pinned one thread per core (the other actors \
             are in the simulated section)",
            r.environment.cores
        ),
        Measured::Simulated => {
            let costs = match &r.sim_costs {
                Some(c) if c.calibrated => "costs calibrated on this machine",
                Some(_) => "costs as given, not calibrated here",
                None => "cost model not recorded",
            };
            let seconds = r.sim_seconds.map_or_else(String::new, |s| format!(", {s} s of virtual time a run"));
            format!("simulated: every actor on a virtual CPU, virtual time{seconds}, {costs}")
        }
    };
    wrap(&format!("{workload}, {how}:"), "", "  ")
}

fn workload_section(r: &ReportResults, workload: &str, measured: &Measured) -> String {
    let cells: Vec<&Cell> = r.cells.iter().filter(|c| c.workload == workload && c.measured == *measured).collect();
    let base = cells.iter().find(|c| c.policy == r.base);
    let mut out = rule();
    out.push_str(&measured_heading(r, workload, measured));
    match base.or(cells.first()) {
        Some(cell) => out.push_str(&params(&cell_params(cell))),
        None => {
            let _ = writeln!(out, "workload: {workload}");
        }
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
const CPU_SWEEP_LEGEND: &str = "Each point is the median of runs of the simulation engine, each with \
    its own seed: the workload scaled to that many CPUs (its actors and its ranges grown together, one \
    actor thread a CPU) for virtual_seconds of virtual time (halved for each doubling of the CPUs past \
    16, so that every point costs about as much to simulate), the primitives' costs taken from the \
    cost model recorded in results.json (cpu_sweep.costs). Latencies (_us) are virtual \
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
            let value =
                point.and_then(|p| figure.stat(&p.runs)).map_or_else(|| "-".to_owned(), |s| fmt_value(s.median));
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
        if !sweep.points.iter().any(|p| figure.stat(&p.runs).is_some()) {
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

/// The report in a few lines, for the terminal it ran in (the whole text
/// is in report.txt): each policy's verdicts, the headline changes a
/// second run reproduces, and how many headline figures were too noisy
/// to quote.
pub fn terminal_summary(r: &ReportResults) -> String {
    let mut out = String::new();
    if !r.verdicts.is_empty() {
        out.push_str("verdicts (every interleaving of the scope; sampled schedules):\n");
        let policies = distinct(r.verdicts.iter().map(|v| v.check.policy.as_str()));
        let width = policies.iter().map(|p| p.len()).max().unwrap_or(0);
        for policy in policies {
            let mut per_workload = vec![];
            for workload in distinct(r.verdicts.iter().map(|v| v.workload.as_str())) {
                let words: Vec<String> = r
                    .verdicts
                    .iter()
                    .filter(|v| v.workload == workload && v.check.policy == policy)
                    .map(|v| match v.check.first.as_ref().and_then(|cx| cx.violations.first()) {
                        Some(first) => format!("{} {}", v.check.verdict, first.oracle),
                        None => v.check.verdict.clone(),
                    })
                    .collect();
                if !words.is_empty() {
                    per_workload.push(format!("{workload} {}", words.join(", ")));
                }
            }
            let _ = writeln!(out, "  {policy:<width$}  {}", per_workload.join("; "));
        }
    }
    let mut starred = vec![];
    let (mut noisy, mut headline) = (0, 0);
    for base in r.cells.iter().filter(|c| c.policy == r.base) {
        let patches = r.cells.iter().filter(|c| c.policy != r.base && c.workload == base.workload);
        for patch in patches.filter(|c| c.measured == base.measured) {
            for row in rows(&base.runs, &patch.runs).into_iter().filter(|row| row.headline) {
                headline += 1;
                noisy += usize::from(row.noisy && !row.significant);
                if let (true, Some(change)) = (row.significant, row.change) {
                    starred.push(format!(
                        "  {} ({})  {}  {}  {}",
                        base.workload,
                        base.measured.tag(),
                        patch.policy,
                        row.name,
                        fmt_change(change, row.percent)
                    ));
                }
            }
        }
    }
    if headline > 0 {
        let _ = writeln!(out, "headline changes against {} that a second run reproduces (*):", r.base);
        if starred.is_empty() {
            out.push_str("  none\n");
        }
        for line in starred {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out, "headline figures too noisy here to quote (~): {noisy} of {headline}");
    }
    for f in &r.failures {
        let _ = writeln!(out, "{}", f.summary());
    }
    out
}

/// The whole `report.txt`: header, one section per workload with a table
/// per patch against `r.base`, the CPU sweep's tables where `r` has one,
/// the verdicts and their counterexamples, and the kernel history where
/// `r` has one ([`crate::history`]).
pub fn report_text(r: &ReportResults) -> String {
    let mut out = header(r);
    let mut sections: Vec<(&str, &Measured)> = vec![];
    for c in &r.cells {
        if !sections.contains(&(c.workload.as_str(), &c.measured)) {
            sections.push((c.workload.as_str(), &c.measured));
        }
    }
    for (workload, measured) in sections {
        out.push('\n');
        out.push_str(&workload_section(r, workload, measured));
    }
    if let Some(sweep) = &r.cpu_sweep {
        out.push('\n');
        out.push_str(&cpu_sweep_section(&r.base, sweep));
    }
    out.push('\n');
    out.push_str(&verdict_section(r));
    if let Some(history) = crate::history::history_section(r) {
        out.push('\n');
        out.push_str(&history);
    }
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
