//! The conformance suite: what every policy plugin must pass, run by one
//! call.
//!
//! ```no_run
//! use workloads::conformance::{assert_conforms, Expect};
//! # struct MyPolicy;
//! # fn entry() -> bench_core::kernel::PolicyEntry { unimplemented!() }
//! // In a test of the crate that holds the policy:
//! assert_conforms(&entry(), Expect::Correct);
//! ```
//!
//! Two parts:
//!
//! 1. **Functional cases**, after the kernel's khugepaged selftests
//!    (tools/testing/selftests/mm/khugepaged.c): full table, empty table,
//!    single entry, max-none (511 none), one none, swap entry, COWed entry,
//!    uffd-copied entry, forked (another mm maps the subpages too), retracted
//!    table (PMD none: straight to the install), already PMD-mapped, uffd-wp
//!    VMA; each for khugepaged and MADV_COLLAPSE, on a plain private, a
//!    shared and a uffd-armed private VMA (where the case applies), plus the
//!    full table and the COWed entry with `pml` unsplit and with no split
//!    locks at all (`ptl == pml`) and on a regular file. Each case runs on a
//!    fresh small model with one collapsing CPU; another CPU sets the case
//!    up, with the same [`crate::kernel_paths`] the actors run, and
//!    touches every mapped subpage first (so its TLB caches them and a
//!    missing flush is seen). Each asserts the result, `hpage`'s refcount
//!    and mapcounts, the mm's counters, the page-table count, the
//!    mmu-notifier pairing, that no lock is held, that no oracle fired
//!    (including the accounting oracle after each collapse), and that
//!    `exit_mmap()` tears the model down cleanly.
//! 2. **The checker on every preset** ([`crate::PRESETS`]):
//!    [`check_policy`] with PCT, [`ConformanceOptions::schedules`]
//!    schedules per preset; and every interleaving of the exhaustive
//!    scope of the presets in [`ConformanceOptions::exhaustive`]
//!    ([`crate::exhaustive`]), listed as `<preset> scope` and `verified`
//!    when complete and clean. Both count in the verdict below.
//!
//! What passing means depends on [`Expect`]:
//!
//! * [`Expect::Correct`]: every functional case passes and no preset finds
//!   a violation, except the guard-marker race: a schedule whose every
//!   violation is a table freed with only guard markers live in it
//!   ([`bench_core::Violation::freed_with_guard_markers_only`]) does not
//!   fail the verdict (`markers` and `mixed`, which run a marker installer,
//!   are reported separately as "future ptl-only inserters (guard
//!   markers)"). DESIGN §2 "Looking ahead": only a policy that rechecks
//!   always is immune there, and the merged `v1` is not. Any other finding
//!   on those presets fails. The excuse looks at the entries, not at the
//!   VMA: a policy that rechecks a VMA and still frees a guard marker in
//!   it is excused too (the model's table does not name its VMA).
//!   The presets of later kernels' page-table freers
//!   ([`crate::LATER_KERNEL_PRESETS`]: empty-table reclaim, v6.14) are run
//!   and listed apart; they count for [`Expect::CorrectToday`], the
//!   expectation of a policy written for today's kernel.
//! * [`Expect::Caught`]`(oracle)`: every functional case passes (the
//!   shipped controls have races, not functional bugs) and the checker
//!   finds `oracle` on at least one of `uffd-private` and `pml-contended`,
//!   the two presets of the thread's two bugs.
//!
//! The report ([`ConformanceReport`], printed by `Display`) names every
//! failing case with what was expected and what was found, and for every
//! checker finding the oracle, the first violation and the replay token
//! with the `collapse-bench check ... --replay` command that shows its
//! timeline.

use crate::check::{check_policy, CheckOptions, CheckReport, Search};
use crate::kernel_paths::{
    cow_fault, migrate_one, page_cache_fault, swap_out, toggle_guard_marker, uffdio_copy, FaultMapped, UffdCopy,
};
use crate::presets::{preset, FUTURE_INSERTER_PRESETS, LATER_KERNEL_PRESETS, PRESETS};
use bench_core::harness::{new_cpu, Harness};
use bench_core::kernel::{Cx, DynPolicy, MmCounter, MmapLock, PmdKind, PolicyEntry, ScanResult};
use bench_core::kernel::{Pte, PteMarker, Step};
use bench_core::mm::vpn;
use bench_core::mm::{MAP_BASE, VM_SHARED, VM_UFFD_MISSING, VM_UFFD_WP};
use bench_core::pte::{HPAGE_PMD_NR, PAGE_SIZE};
use bench_core::{Event, FileKind, Mm, MmConfig, Native, Oracle, Role, StepHook};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// What a policy is expected to be.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Correct on the kernel of the 2023 thread (v6.6): no functional
    /// failure and no violation on any preset but the guard-marker race;
    /// the presets of later page-table freers
    /// ([`crate::LATER_KERNEL_PRESETS`]) are run and reported apart.
    Correct,
    /// Correct on today's kernel: as [`Expect::Correct`], and the later
    /// page-table freers' presets count too.
    CorrectToday,
    /// A control or a known-buggy form: functional cases pass and the
    /// checker finds this oracle on `uffd-private` or `pml-contended`.
    Caught(Oracle),
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Correct => f.write_str("correct"),
            Expect::CorrectToday => f.write_str("correct on today's kernel"),
            Expect::Caught(o) => write!(f, "caught by {o}"),
        }
    }
}

/// Presets on which [`Expect::Caught`] must find its oracle.
pub const CAUGHT_PRESETS: [&str; 2] = ["uffd-private", "pml-contended"];

/// Default PCT schedules per preset, at the checker's default operations
/// per CPU. The whole suite (functional cases and 7 presets, presets run
/// in parallel) then takes about 2 s per policy in release on two cores,
/// and several times that in a debug build. With 500, `pml-contended`
/// finds the v2 repairs' stale translation at every seed from 1 to 20.
pub const DEFAULT_SCHEDULES: u64 = 500;

/// Environment variable that overrides [`ConformanceOptions::schedules`]
/// in [`assert_conforms`] (e.g. 10000 for a release-mode soak).
pub const SCHEDULES_ENV: &str = "COLLAPSE_BENCH_CONFORMANCE_SCHEDULES";

/// How much of the suite to run, and what to expect.
#[derive(Clone, Debug)]
pub struct ConformanceOptions {
    /// The verdict expected.
    pub expect: Expect,
    /// Run the functional cases.
    pub functional: bool,
    /// Presets to run the checker on (default: every one of
    /// [`crate::PRESETS`]).
    pub presets: Vec<String>,
    /// PCT schedules per preset (0: no checker run).
    pub schedules: u64,
    /// PCT depth.
    pub depth: u32,
    /// Seed of the scenario and of the schedules (as `collapse-bench check
    /// --seed`, so the replay command reproduces a finding exactly).
    pub seed: u64,
    /// Replays the shrinker may spend on each preset's first counterexample.
    pub shrink_budget: u32,
    /// Operations each CPU may do per schedule ([`CheckOptions::ops_per_cpu`]).
    /// A reader that reads more caches more of a table, and only an address
    /// it caches can show a stale translation.
    pub ops_per_cpu: u64,
    /// Presets whose exhaustive scope ([`crate::exhaustive::scope`]) is
    /// explored as well as sampled, every interleaving (default: every
    /// preset whose scope finishes, [`crate::exhaustive::Reach::Complete`]:
    /// about 1.5 s a policy together in a release build); reported as
    /// complete beside the sampled verdicts.
    pub exhaustive: Vec<String>,
}

impl Default for ConformanceOptions {
    fn default() -> Self {
        ConformanceOptions {
            expect: Expect::Correct,
            functional: true,
            presets: PRESETS.iter().map(|p| p.0.to_owned()).collect(),
            schedules: DEFAULT_SCHEDULES,
            depth: 3,
            seed: 1,
            shrink_budget: 100,
            ops_per_cpu: CheckOptions::default().ops_per_cpu,
            exhaustive: PRESETS
                .iter()
                .map(|p| p.0)
                .filter(|name| crate::exhaustive::default_reach(name) == crate::exhaustive::Reach::Complete)
                .map(str::to_owned)
                .collect(),
        }
    }
}

impl ConformanceOptions {
    /// The defaults with `expect`, and [`SCHEDULES_ENV`] if set.
    pub fn expecting(expect: Expect) -> Self {
        let mut opts = ConformanceOptions { expect, ..ConformanceOptions::default() };
        if let Some(n) = std::env::var(SCHEDULES_ENV).ok().and_then(|v| v.trim().parse().ok()) {
            opts.schedules = n;
        }
        opts
    }
}

/// One functional case's outcome.
#[derive(Clone, Debug)]
pub struct CaseOutcome {
    /// `full table / uffd private / MADV_COLLAPSE`.
    pub name: String,
    /// What differed from the expectation, one line each ("refcount of
    /// hpage: expected 513, found 512"); empty when the case passed.
    pub failures: Vec<String>,
    /// What the collapsing CPU did, in order: the events of its primitive
    /// calls ([`Native::recorded`]) and each collapse's result
    /// ([`Event::Returned`]). Two policies that make the same calls in
    /// every case give the same `calls`.
    pub calls: Vec<Event>,
}

impl CaseOutcome {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// One preset's checker run.
#[derive(Clone, Debug)]
pub struct PresetOutcome {
    /// Preset name.
    pub preset: String,
    /// The checker's report (None: the preset could not be run, see `error`).
    pub check: Option<CheckReport>,
    /// Why the preset could not be run.
    pub error: Option<String>,
    /// The command that replays the first counterexample with its timeline.
    pub replay_command: Option<String>,
    /// Wall time, s (search, shrink and replay).
    pub seconds: f64,
}

impl PresetOutcome {
    /// Whether the checker found any violation.
    pub fn failed(&self) -> bool {
        self.check.as_ref().is_some_and(CheckReport::failed)
    }

    /// Whether `oracle` was found (in any violating schedule).
    pub fn found(&self, oracle: Oracle) -> bool {
        self.check.as_ref().is_some_and(|c| c.by_oracle.contains_key(&oracle))
    }

    /// Whether this preset runs the guard-marker installer.
    pub fn future_inserters(&self) -> bool {
        FUTURE_INSERTER_PRESETS.contains(&self.preset.as_str())
    }

    /// Whether this preset runs a page-table freer of a later kernel.
    pub fn later_kernel(&self) -> bool {
        LATER_KERNEL_PRESETS.contains(&self.preset.as_str())
    }

    /// Whether its findings count for `expect`: a later kernel's
    /// page-table freer only for a policy expected correct today.
    fn judged_for(&self, expect: Expect) -> bool {
        expect == Expect::CorrectToday || !self.later_kernel()
    }
}

/// What the suite found for one policy.
#[derive(Clone, Debug)]
pub struct ConformanceReport {
    /// The policy's label (name and non-default parameters).
    pub policy: String,
    /// How its caller holds `mmap_lock` (the window cases are skipped
    /// for a caller that holds it for write).
    pub mmap_lock: MmapLock,
    /// The verdict expected.
    pub expect: Expect,
    /// The functional cases, in order.
    pub cases: Vec<CaseOutcome>,
    /// The checker, per preset, in order.
    pub presets: Vec<PresetOutcome>,
    /// Why the verdict is not the expected one (empty: it conforms).
    pub failures: Vec<String>,
    /// Wall time of the functional cases, s.
    pub functional_s: f64,
    /// Wall time of the checker, s.
    pub checker_s: f64,
    /// PCT schedules per preset.
    pub schedules: u64,
    /// PCT depth.
    pub depth: u32,
    /// Seed.
    pub seed: u64,
}

impl ConformanceReport {
    /// Whether the policy behaved as expected.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

impl fmt::Display for ConformanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "CONFORMS" } else { "DOES NOT CONFORM" };
        writeln!(f, "conformance of {} (expected: {}): {verdict}", self.policy, self.expect)?;
        if !self.cases.is_empty() {
            let passed = self.cases.iter().filter(|c| c.passed()).count();
            writeln!(f, "functional cases: {passed}/{} passed ({:.2} s)", self.cases.len(), self.functional_s)?;
            if self.mmap_lock == MmapLock::Write {
                writeln!(
                    f,
                    "  (the step 1 -> 2 window cases do not apply: the caller holds mmap_lock for write, so no \
                     inserter runs during the collapse)"
                )?;
            }
            for c in self.cases.iter().filter(|c| !c.passed()) {
                writeln!(f, "  FAIL {}", c.name)?;
                for why in &c.failures {
                    writeln!(f, "       {why}")?;
                }
            }
        }
        if !self.presets.is_empty() {
            let scopes: Vec<&str> = self
                .presets
                .iter()
                .filter(|p| p.check.as_ref().is_some_and(|c| c.exhaustive.is_some()))
                .map(|p| p.preset.as_str())
                .collect();
            let scopes = match scopes[..] {
                [] => String::new(),
                _ => format!("; every interleaving of the exhaustive scope of {}", scopes.join(", ")),
            };
            writeln!(
                f,
                "checker: PCT depth {}, {} schedules per preset{scopes}, seed {} ({:.2} s)",
                self.depth, self.schedules, self.seed, self.checker_s
            )?;
            let (future, main): (Vec<&PresetOutcome>, Vec<&PresetOutcome>) =
                self.presets.iter().partition(|p| p.future_inserters());
            let (main, later): (Vec<&PresetOutcome>, Vec<&PresetOutcome>) =
                main.into_iter().partition(|p| p.judged_for(self.expect));
            for p in main {
                write_preset(f, p)?;
            }
            if !later.is_empty() {
                writeln!(f, "later kernels' page-table freers (not counted for a v6.6-line policy):")?;
                for p in later {
                    write_preset(f, p)?;
                }
            }
            if !future.is_empty() {
                writeln!(f, "future ptl-only inserters (guard markers; only an always-rechecking policy is immune):")?;
                for p in future {
                    write_preset(f, p)?;
                }
            }
        }
        if !self.failures.is_empty() {
            writeln!(f, "why it does not conform:")?;
            for why in &self.failures {
                writeln!(f, "  - {why}")?;
            }
        }
        Ok(())
    }
}

fn write_preset(f: &mut fmt::Formatter<'_>, p: &PresetOutcome) -> fmt::Result {
    let Some(check) = &p.check else {
        return writeln!(f, "  {:<15} ERROR {}", p.preset, p.error.as_deref().unwrap_or("?"));
    };
    // An exhaustive scope's line says so, and whether it was complete.
    let (name, what) = match &check.exhaustive {
        Some(_) => (format!("{} scope", p.preset), "interleavings"),
        None => (p.preset.clone(), "schedules"),
    };
    if !check.failed() {
        let limits =
            if check.step_limits > 0 { format!(", {} hit the step limit", check.step_limits) } else { String::new() };
        return match &check.exhaustive {
            Some(e) if e.complete() => {
                writeln!(f, "  {name:<15} verified ({} {what}, complete{limits}, {:.2} s)", check.schedules, p.seconds)
            }
            _ => writeln!(f, "  {name:<15} clean ({} {what}{limits}, {:.2} s)", check.schedules, p.seconds),
        };
    }
    let found: Vec<String> = check
        .by_oracle
        .iter()
        .map(|(o, (n, first))| format!("{o} in {n}/{} (first #{first})", check.schedules))
        .collect();
    writeln!(f, "  {name:<15} FOUND {} ({:.2} s)", found.join(", "), p.seconds)?;
    if let Some(cx) = &check.first {
        let v = &cx.violations[0];
        writeln!(f, "      first violation: {}", first_line(&v.to_string()))?;
        writeln!(f, "      replay token: {}", cx.token())?;
        if let Some(cmd) = &p.replay_command {
            writeln!(f, "      timeline: {cmd}")?;
        }
    }
    Ok(())
}

/// Run the suite on `entry`'s policy with the default options and
/// [`SCHEDULES_ENV`]; panic with the report unless it behaves as
/// `expect`ed. One line in a policy crate's tests:
/// `assert_conforms(&bench_core::kernel::entry::<MyPolicy>(), Expect::Correct)`.
pub fn assert_conforms(entry: &PolicyEntry, expect: Expect) {
    let report = conformance(entry, &serde_json::Value::Null, &ConformanceOptions::expecting(expect));
    if !report.passed() {
        panic!("\n{report}");
    }
}

/// Run the suite on `entry`'s policy built with `params` (`Null` or `{}`
/// for the defaults) and return the report ([`ConformanceReport::passed`]
/// says whether it behaved as `opts.expect`ed).
pub fn conformance(entry: &PolicyEntry, params: &serde_json::Value, opts: &ConformanceOptions) -> ConformanceReport {
    let mut report = ConformanceReport {
        policy: entry.name.to_owned(),
        mmap_lock: MmapLock::Read,
        expect: opts.expect,
        cases: vec![],
        presets: vec![],
        failures: vec![],
        functional_s: 0.0,
        checker_s: 0.0,
        schedules: opts.schedules,
        depth: opts.depth,
        seed: opts.seed,
    };
    let policy = match (entry.build)(params) {
        Ok(p) => p,
        Err(e) => {
            report.failures.push(format!("building {} with {params}: {e}", entry.name));
            return report;
        }
    };
    report.policy = policy.label();
    report.mmap_lock = policy.mmap_lock();
    if opts.functional {
        let t0 = Instant::now();
        report.cases = functional_cases(&*policy);
        report.functional_s = t0.elapsed().as_secs_f64();
        let failed: Vec<&CaseOutcome> = report.cases.iter().filter(|c| !c.passed()).collect();
        if let Some(first) = failed.first() {
            report.failures.push(format!(
                "{} of {} functional cases failed; first: `{}`: {}",
                failed.len(),
                report.cases.len(),
                first.name,
                first.failures[0]
            ));
        }
    }
    if opts.schedules > 0 {
        let t0 = Instant::now();
        report.presets = run_presets(&policy, &report.policy, opts);
        report.checker_s = t0.elapsed().as_secs_f64();
    }
    judge_checker(&mut report, opts);
    report
}

/// The checker on every preset of `opts`, then every interleaving of the
/// scope of each of `opts.exhaustive`, spread over the machine's CPUs
/// (each schedule is deterministic, so the outcome does not depend on how
/// the work is spread); in that order.
fn run_presets(policy: &Arc<dyn DynPolicy>, label: &str, opts: &ConformanceOptions) -> Vec<PresetOutcome> {
    let work: Vec<(&String, bool)> =
        opts.presets.iter().map(|p| (p, false)).chain(opts.exhaustive.iter().map(|p| (p, true))).collect();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(work.len()).max(1);
    let next = AtomicUsize::new(0);
    let done = Mutex::new(Vec::with_capacity(work.len()));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(name, explore)) = work.get(i) else { break };
                let outcome = catch_unwind(AssertUnwindSafe(|| run_preset(policy, label, name, opts, explore)))
                    .unwrap_or_else(|panic| PresetOutcome {
                        preset: name.clone(),
                        check: None,
                        error: Some(format!("the checker panicked: {}", panic_message(&*panic))),
                        replay_command: None,
                        seconds: 0.0,
                    });
                done.lock().unwrap_or_else(|p| p.into_inner()).push((i, outcome));
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, o)| o).collect()
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)")
}

/// The checker on preset `name`: PCT schedules, or with `exhaustive`
/// every interleaving of its scope ([`crate::exhaustive::scope`]).
fn run_preset(
    policy: &Arc<dyn DynPolicy>,
    label: &str,
    name: &str,
    opts: &ConformanceOptions,
    exhaustive: bool,
) -> PresetOutcome {
    let t0 = Instant::now();
    let mut out =
        PresetOutcome { preset: name.to_owned(), check: None, error: None, replay_command: None, seconds: 0.0 };
    let result = preset(name).and_then(|mut scenario| {
        scenario.seed = opts.seed;
        let check = CheckOptions {
            search: Search::Pct { depth: opts.depth },
            schedules: opts.schedules,
            seed: opts.seed,
            shrink_budget: opts.shrink_budget,
            ops_per_cpu: opts.ops_per_cpu,
            ..CheckOptions::default()
        };
        if exhaustive {
            let how = crate::exhaustive::ExhaustiveOptions::default();
            crate::exhaustive::check_exhaustive(policy, &crate::exhaustive::scope(&scenario), &check, &how)
        } else {
            check_policy(policy, &scenario, &check)
        }
    });
    match result {
        Ok(check) => {
            out.replay_command = check.first.as_ref().map(|cx| {
                let how = if exhaustive {
                    " --exhaustive".to_owned()
                } else if opts.ops_per_cpu == CheckOptions::default().ops_per_cpu {
                    String::new()
                } else {
                    format!(" --ops-per-cpu {}", opts.ops_per_cpu)
                };
                format!("collapse-bench check -p '{label}' -w {name}{how} --seed {} --replay {}", opts.seed, cx.token())
            });
            out.check = Some(check);
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    out.seconds = t0.elapsed().as_secs_f64();
    out
}

fn describe_finding(p: &PresetOutcome, oracle: Option<Oracle>) -> String {
    let Some(check) = &p.check else { return String::new() };
    let Some(cx) = &check.first else { return String::new() };
    let v = oracle.and_then(|o| cx.violations.iter().find(|v| v.oracle == o)).unwrap_or(&cx.violations[0]);
    format!("{} (replay {})", first_line(&v.to_string()), cx.token())
}

fn judge_checker(report: &mut ConformanceReport, opts: &ConformanceOptions) {
    for p in &report.presets {
        if let Some(e) = &p.error {
            report.failures.push(format!("preset {}: {e}", p.preset));
        }
    }
    match opts.expect {
        Expect::Correct | Expect::CorrectToday => {
            // Only the guard-marker race is excused (DESIGN §2 "Looking
            // ahead"): a table freed with nothing but guard markers in it.
            // Any other finding fails, on the marker presets too; on the
            // later kernels' presets only when expected correct today.
            for p in report
                .presets
                .iter()
                .filter(|p| p.judged_for(opts.expect))
                .filter(|p| p.check.as_ref().is_some_and(CheckReport::failed_beyond_guard_markers))
            {
                let found: Vec<&str> =
                    p.check.as_ref().map_or(vec![], |c| c.by_oracle.keys().map(|o| o.name()).collect());
                report.failures.push(format!(
                    "expected correct, but the checker found {} on preset {}: {}",
                    found.join(", "),
                    p.preset,
                    describe_finding(p, None)
                ));
            }
        }
        Expect::Caught(oracle) => {
            let ran: Vec<&PresetOutcome> =
                report.presets.iter().filter(|p| CAUGHT_PRESETS.contains(&p.preset.as_str())).collect();
            if ran.is_empty() {
                report.failures.push(format!(
                    "expected caught by {oracle}, but neither of {} was run",
                    CAUGHT_PRESETS.join(" / ")
                ));
            } else if !ran.iter().any(|p| p.found(oracle)) {
                let actual: Vec<String> = ran
                    .iter()
                    .map(|p| match &p.check {
                        Some(c) if c.failed() => {
                            let found: Vec<&str> = c.by_oracle.keys().map(|o| o.name()).collect();
                            format!("{}: {}", p.preset, found.join(", "))
                        }
                        Some(c) => format!("{}: clean in {} schedules", p.preset, c.schedules),
                        None => format!("{}: not run", p.preset),
                    })
                    .collect();
                report.failures.push(format!("expected caught by {oracle}, but found {}", actual.join("; ")));
            }
        }
    }
}

// ---------------------------------------------------------------------
// The functional cases
// ---------------------------------------------------------------------

/// The VMA a functional case runs on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum VmaKind {
    Private,
    Shared,
    UffdPrivate,
    UffdWp,
}

impl VmaKind {
    fn flags(self) -> u32 {
        match self {
            VmaKind::Private => 0,
            VmaKind::Shared => VM_SHARED,
            VmaKind::UffdPrivate => VM_UFFD_MISSING,
            VmaKind::UffdWp => VM_UFFD_WP,
        }
    }

    fn name(self) -> &'static str {
        match self {
            VmaKind::Private => "private",
            VmaKind::Shared => "shared",
            VmaKind::UffdPrivate => "uffd private",
            VmaKind::UffdWp => "uffd-wp private",
        }
    }
}

/// How page-table locks are split.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Locks {
    /// `pml` per PMD table, `ptl` per PTE table.
    Split,
    /// `pml` is `mm->page_table_lock`, `ptl` still split.
    PmlUnsplit,
    /// Both are `mm->page_table_lock` (`ptl == pml`).
    None,
}

/// The model a case starts from.
#[derive(Copy, Clone, Debug)]
struct Setup {
    vma: VmaKind,
    density: u32,
    file: FileKind,
    locks: Locks,
}

impl Setup {
    fn new(vma: VmaKind, density: u32) -> Self {
        Setup { vma, density, file: FileKind::Shmem, locks: Locks::Split }
    }

    fn model(self) -> Mm {
        Mm::new(MmConfig {
            ranges: vec![self.vma.flags()],
            file: self.file,
            split_pmd_ptlocks: self.locks == Locks::Split,
            split_pte_ptlocks: self.locks != Locks::None,
            // CPU 0 collapses, CPU 1 sets up and reads, CPU 2 races the
            // collapse in the step 1 -> step 2 window.
            cpus: 3,
            density: self.density,
            anon_pages: 64,
            spare_tables: 8,
            oracles: true,
            ranges_per_pmd_table: bench_core::mm::RANGES_PER_PMD_TABLE,
        })
        .expect("a valid one-range model")
    }

    fn variant(self) -> String {
        let mut s = self.vma.name().to_owned();
        if self.file == FileKind::File {
            s.push_str(", regular file");
        }
        match self.locks {
            Locks::Split => {}
            Locks::PmlUnsplit => s.push_str(", pml = mm->page_table_lock"),
            Locks::None => s.push_str(", no split locks (ptl == pml)"),
        }
        s
    }
}

/// What the PMD of the range holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum PmdIs {
    None,
    Table,
    Huge,
}

/// What a case checks after the collapse.
#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    pmd: PmdIs,
    refcount: i32,
    mapcount: i32,
    entire_mapcount: i32,
    file_pages: i64,
    anon_pages: i64,
    swap_ents: i64,
    nr_ptes: i64,
}

impl State {
    /// The table still there with `file` file subpages, `anon` anonymous
    /// pages and `swap` swap entries mapped.
    fn untouched(file: i32, anon: i64, swap: i64) -> Self {
        State {
            pmd: PmdIs::Table,
            refcount: HPAGE_PMD_NR as i32 + file,
            mapcount: file,
            entire_mapcount: 0,
            file_pages: file as i64,
            anon_pages: anon,
            swap_ents: swap,
            nr_ptes: 1,
        }
    }

    /// After a successful collapse: the table retracted; with
    /// MADV_COLLAPSE, the huge page mapped by the PMD.
    fn collapsed(install: bool) -> Self {
        let n = HPAGE_PMD_NR as i32;
        State {
            pmd: if install { PmdIs::Huge } else { PmdIs::None },
            refcount: n + i32::from(install),
            mapcount: 0,
            entire_mapcount: i32::from(install),
            file_pages: if install { n as i64 } else { 0 },
            anon_pages: 0,
            swap_ents: 0,
            nr_ptes: 0,
        }
    }

    fn read(mm: &Mm) -> Self {
        let hpage = mm.file_hpage(0);
        let page = |i: usize| mm.pages.get(hpage.nth(i));
        let file_counter = match mm.config.file {
            FileKind::Shmem => MmCounter::ShmemPages,
            FileKind::File => MmCounter::FilePages,
        };
        State {
            pmd: match mm.pmds.get(0, 0).kind() {
                PmdKind::None => PmdIs::None,
                PmdKind::Table(_) => PmdIs::Table,
                PmdKind::Huge(h) if h == hpage => PmdIs::Huge,
                PmdKind::Huge(_) => PmdIs::None, // never: only hpage is PMD-mapped here
            },
            refcount: page(0).refcount.load(Ordering::Acquire),
            mapcount: (0..HPAGE_PMD_NR).map(|i| page(i).mapcount.load(Ordering::Acquire)).sum(),
            entire_mapcount: page(0).entire_mapcount.load(Ordering::Acquire),
            file_pages: mm.counter(file_counter),
            anon_pages: mm.counter(MmCounter::AnonPages),
            swap_ents: mm.counter(MmCounter::SwapEnts),
            nr_ptes: mm.nr_ptes(),
        }
    }

    /// One line per field that differs.
    fn diff(&self, found: &State, out: &mut Vec<String>) {
        let mut field = |what: &str, want: String, got: String| {
            if want != got {
                out.push(format!("{what}: expected {want}, found {got}"));
            }
        };
        field("PMD", format!("{:?}", self.pmd), format!("{:?}", found.pmd));
        field("hpage refcount", self.refcount.to_string(), found.refcount.to_string());
        field("sum of subpage mapcounts", self.mapcount.to_string(), found.mapcount.to_string());
        field("hpage entire_mapcount", self.entire_mapcount.to_string(), found.entire_mapcount.to_string());
        field("file/shmem rss counter", self.file_pages.to_string(), found.file_pages.to_string());
        field("MM_ANONPAGES", self.anon_pages.to_string(), found.anon_pages.to_string());
        field("MM_SWAPENTS", self.swap_ents.to_string(), found.swap_ents.to_string());
        field("page-table count (nr_ptes)", self.nr_ptes.to_string(), found.nr_ptes.to_string());
    }
}

/// A case being run: the model, the policy, and what went wrong so far.
struct Probe<'a> {
    mm: &'a Mm,
    policy: &'a dyn DynPolicy,
    failures: Vec<String>,
    /// The collapsing CPU's events ([`CaseOutcome::calls`]).
    calls: Arc<Mutex<Vec<Event>>>,
}

impl<'a> Probe<'a> {
    /// The setting-up CPU (CPU 1), acting as `role`.
    fn other(&self, role: Role) -> Cx<'a, Native> {
        new_cpu(self.mm, 1, role, Native::new(Instant::now(), None, false))
    }

    /// Subpage `i`'s address.
    fn addr(i: usize) -> u64 {
        MAP_BASE + i as u64 * PAGE_SIZE
    }

    /// CPU 1 reads every mapped subpage, so its TLB caches them all.
    fn touch_all(&self) {
        let mut cx = self.other(Role::Reader);
        for i in 0..HPAGE_PMD_NR {
            cx.touch(Self::addr(i));
        }
    }

    /// One collapse of range 0 on CPU 0, then the lock check and the
    /// accounting oracle.
    fn collapse(&mut self, install: bool, want: ScanResult) {
        self.collapse_hooked(install, want, None);
    }

    /// [`Probe::collapse`], the collapse's steps reported to `hook`.
    fn collapse_hooked(&mut self, install: bool, want: ScanResult, hook: Option<StepHook>) {
        let (mut cx, got) = self.collapse_once(install, hook);
        if got != want {
            let mode = if install { "MADV_COLLAPSE" } else { "khugepaged" };
            self.failures.push(format!("result of {mode}: expected {want}, found {got}"));
        }
        self.check_locks();
        cx.check_range_accounting(0);
    }

    /// One collapse of range 0 on CPU 0, its calls and result recorded
    /// ([`CaseOutcome::calls`]): the CPU and the result.
    fn collapse_once(&self, install: bool, hook: Option<StepHook>) -> (Cx<'a, Native>, ScanResult) {
        let engine = Native::new(Instant::now(), hook, false).recorded(self.calls.clone());
        let mut cx = new_cpu(self.mm, 0, Role::Collapse, engine);
        let got = cx.run_collapse(self.policy, MAP_BASE, install);
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).push(Event::Returned(got));
        (cx, got)
    }

    fn check_locks(&mut self) {
        let held: Vec<String> = self
            .mm
            .lock_stats()
            .filter(|&(id, _, _)| self.mm.lock(id).is_locked())
            .map(|(id, _, _)| self.mm.lock_name(id))
            .collect();
        if !held.is_empty() {
            self.failures.push(format!("locks held after the collapse returned: {}", held.join(", ")));
        }
        if self.mm.pages.get(self.mm.file_hpage(0)).is_locked() {
            self.failures.push("hpage still page-locked after the collapse returned".to_owned());
        }
    }

    fn expect_state(&mut self, want: &State) {
        want.diff(&State::read(self.mm), &mut self.failures);
        let (start, end) = self.mm.notifier_counts();
        if start != end {
            self.failures.push(format!("mmu-notifier ranges: {start} started, {end} ended"));
        }
    }
}

type Body = fn(&mut Probe<'_>, bool);

struct Case {
    name: &'static str,
    setup: Setup,
    /// The modes it runs in (`install_pmd` values).
    modes: &'static [bool],
    body: Body,
}

const BOTH: &[bool] = &[false, true];

fn mode_name(install: bool) -> &'static str {
    if install {
        "MADV_COLLAPSE"
    } else {
        "khugepaged"
    }
}

fn collapses_fully(p: &mut Probe<'_>, install: bool) {
    p.touch_all();
    p.collapse(install, ScanResult::Succeed);
    p.expect_state(&State::collapsed(install));
}

fn max_none(p: &mut Probe<'_>, install: bool) {
    // One entry, the last: every other slot is none.
    if page_cache_fault(&mut p.other(Role::Faulter), Probe::addr(HPAGE_PMD_NR - 1)) != FaultMapped::Subpage {
        p.failures.push("setup: could not fault in subpage 511".to_owned());
    }
    p.expect_state(&State::untouched(1, 0, 0));
    collapses_fully(p, install);
}

fn cowed_entry(p: &mut Probe<'_>, install: bool) {
    if !cow_fault(&mut p.other(Role::Cow), Probe::addr(7)) {
        p.failures.push("setup: the write fault did not COW subpage 7".to_owned());
    }
    p.touch_all();
    // Step 1 finds the anonymous copy: SCAN_FAIL before anything is cleared.
    p.collapse(install, ScanResult::Fail);
    let file = p.mm.config.density as i32 - 1;
    p.expect_state(&State::untouched(file, 1, 0));
}

fn swap_entry(p: &mut Probe<'_>, install: bool) {
    let mut other = p.other(Role::Swap);
    if !cow_fault(&mut other, Probe::addr(3)) {
        p.failures.push("setup: the write fault did not COW subpage 3".to_owned());
    }
    let swapped = swap_out(&mut other, Probe::addr(3));
    if swapped != Some(Probe::addr(3)) {
        p.failures.push(format!("setup: reclaim from subpage 3 swapped out {swapped:x?}, not subpage 3"));
    }
    p.touch_all();
    p.collapse(install, ScanResult::PteNonPresent);
    p.expect_state(&State::untouched(HPAGE_PMD_NR as i32 - 1, 0, 1));
}

fn uffd_copied_entry(p: &mut Probe<'_>, install: bool) {
    let hole = (0..HPAGE_PMD_NR).find(|&i| !p.mm.density_maps(i)).expect("a none slot");
    let copied = uffdio_copy(&mut p.other(Role::Uffd), Probe::addr(hole));
    if copied != UffdCopy::Installed {
        p.failures.push(format!("setup: UFFDIO_COPY into none slot {hole}: {copied:?}, not installed"));
    }
    p.touch_all();
    // Step 1 finds an anonymous page in the none slot: SCAN_FAIL.
    p.collapse(install, ScanResult::Fail);
    p.expect_state(&State::untouched(HPAGE_PMD_NR as i32 - 1, 1, 0));
}

fn forked(p: &mut Probe<'_>, install: bool) {
    // The fork's child maps every subpage through its own page tables: one
    // more reference and mapcount per subpage, which the collapse of the
    // parent's table must leave alone.
    let hpage = p.mm.file_hpage(0);
    let mut child = p.other(Role::Faulter);
    let vma = child.vma_lookup(MAP_BASE).expect("a VMA");
    for i in 0..HPAGE_PMD_NR {
        child.page_add_file_rmap(hpage.nth(i));
        child.get_page(hpage.nth(i));
    }
    p.touch_all();
    let (mut cx, got) = p.collapse_once(install, None);
    if got != ScanResult::Succeed {
        p.failures.push(format!("result of {}: expected SCAN_SUCCEED, found {got}", mode_name(install)));
    }
    p.check_locks();
    let mut want = State::collapsed(install);
    want.refcount += HPAGE_PMD_NR as i32;
    want.mapcount += HPAGE_PMD_NR as i32;
    want.diff(&State::read(p.mm), &mut p.failures);
    // The child exits: its mappings go, then the oracle may count.
    for i in 0..HPAGE_PMD_NR {
        child.page_remove_rmap(hpage.nth(i), vma, false);
        child.put_page(hpage.nth(i));
    }
    cx.check_range_accounting(0);
    p.expect_state(&State::collapsed(install));
}

fn retracted_table(p: &mut Probe<'_>, install: bool) {
    // khugepaged retracts the table; the next collapse finds the PMD none
    // and goes straight to step 5 (MADV_COLLAPSE installs the PMD).
    p.touch_all();
    p.collapse(false, ScanResult::Succeed);
    p.expect_state(&State::collapsed(false));
    let notifiers = p.mm.notifier_counts();
    p.collapse(install, ScanResult::Succeed);
    p.expect_state(&State::collapsed(install));
    let now = p.mm.notifier_counts();
    if now != notifiers {
        p.failures.push(format!(
            "PMD none must skip steps 1 to 4: expected no mmu-notifier range, found {} more",
            now.0 - notifiers.0
        ));
    }
}

fn pmd_mapped(p: &mut Probe<'_>, install: bool) {
    p.touch_all();
    p.collapse(true, ScanResult::Succeed);
    p.expect_state(&State::collapsed(true));
    p.collapse(install, ScanResult::PmdMapped);
    p.expect_state(&State::collapsed(true));
}

fn uffd_wp(p: &mut Probe<'_>, install: bool) {
    // The table must stay for the wp markers: nothing is touched, not even
    // a reference taken.
    p.touch_all();
    p.collapse(install, ScanResult::PteUffdWp);
    p.expect_state(&State::untouched(HPAGE_PMD_NR as i32, 0, 0));
}

/// The window cases' tables: three entries in four mapped, the holes at
/// index 1 mod 4, as a file range partly faulted in.
const WINDOW_DENSITY: u32 = 384;
/// The entries the window cases change: a hole and a mapped entry, each
/// past a couple of hundred mapped entries that step 2 clears first.
const WINDOW_HOLE: usize = 301;
const WINDOW_MAPPED: usize = 300;

/// What changes one entry while the collapse is in the step 1 -> step 2
/// window (`ptl` dropped after step 1 for the mmu-notifier start, the page
/// lock still held: none of these paths needs it).
#[derive(Copy, Clone, Debug)]
enum WindowPath {
    /// UFFDIO_COPY into a hole (a uffd-armed private VMA).
    UffdIntoHole,
    /// A write fault COWs a mapped entry into an anonymous copy.
    Cow,
    /// The copy is then swapped out: a swap entry.
    CowThenSwapOut,
    /// The copy is then migrated: a migration entry, then the new page.
    CowThenMigrate,
    /// MADV_GUARD_INSTALL puts a guard marker into a hole.
    MarkerIntoHole,
}

impl WindowPath {
    /// The entry it changes.
    fn entry(self) -> usize {
        match self {
            WindowPath::UffdIntoHole | WindowPath::MarkerIntoHole => WINDOW_HOLE,
            WindowPath::Cow | WindowPath::CowThenSwapOut | WindowPath::CowThenMigrate => WINDOW_MAPPED,
        }
    }

    /// Run it on CPU 2; what went wrong setting it up, if anything.
    fn run(self, mm: &Mm) -> Result<(), String> {
        let addr = Probe::addr(self.entry());
        let role = match self {
            WindowPath::UffdIntoHole => Role::Uffd,
            WindowPath::Cow => Role::Cow,
            WindowPath::CowThenSwapOut => Role::Swap,
            WindowPath::CowThenMigrate => Role::Migrate,
            WindowPath::MarkerIntoHole => Role::Marker,
        };
        let mut cx = new_cpu(mm, 2, role, Native::new(Instant::now(), None, false));
        let cowed = |cx: &mut Cx<'_, Native>| cow_fault(cx, addr).then_some(()).ok_or("the write fault did not COW");
        match self {
            WindowPath::UffdIntoHole => match uffdio_copy(&mut cx, addr) {
                UffdCopy::Installed => Ok(()),
                other => Err(format!("UFFDIO_COPY into the hole: {other:?}, not installed")),
            },
            WindowPath::Cow => Ok(cowed(&mut cx)?),
            WindowPath::CowThenSwapOut => {
                cowed(&mut cx)?;
                match swap_out(&mut cx, addr) {
                    Some(a) if a == addr => Ok(()),
                    other => Err(format!("reclaim swapped out {other:x?}, not the copy")),
                }
            }
            WindowPath::CowThenMigrate => {
                cowed(&mut cx)?;
                match migrate_one(&mut cx, addr) {
                    Some(a) if a == addr => Ok(()),
                    other => Err(format!("migration moved {other:x?}, not the copy")),
                }
            }
            WindowPath::MarkerIntoHole => match toggle_guard_marker(&mut cx, addr) {
                Some(pte) if pte == Pte::marker(PteMarker::Guard) => Ok(()),
                other => Err(format!("MADV_GUARD_INSTALL wrote {other:?}, not a guard marker")),
            },
        }
    }
}

/// The collapse parked at the mmu-notifier start, `path` run on CPU 2,
/// the collapse resumed. What the kernel gives (collapse_pte_mapped_thp(),
/// v6.6, and every correct policy, whose step 2 pass looks at each entry
/// again under `ptl`): step 2 clears the mapped entries before the changed
/// one, finds it changed and aborts — SCAN_FAIL for a page that is not
/// `hpage + i`, SCAN_PTE_NON_PRESENT for a swap entry or a marker. The
/// abort path gives back the references and the counter of what it
/// cleared, and flushes: no TLB still translates a cleared entry. The
/// rest of the table stays mapped.
fn in_the_window(p: &mut Probe<'_>, install: bool, path: WindowPath) {
    p.touch_all();
    let (paused_tx, paused_rx) = mpsc::channel::<()>();
    let (resume_tx, resume_rx) = mpsc::channel::<()>();
    let (paused_tx, resume_rx, fired) = (Mutex::new(paused_tx), Mutex::new(resume_rx), AtomicBool::new(false));
    let hook: StepHook = Arc::new(move |cpu, step| {
        if cpu == 0 && step == Step::Notify && !fired.swap(true, Ordering::SeqCst) {
            let _ = paused_tx.lock().unwrap_or_else(|e| e.into_inner()).send(());
            let _ = resume_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        }
    });
    let (idx, mm) = (path.entry(), p.mm);
    let mapped = |i: usize| mm.density_maps(i);
    let cleared = (0..idx).filter(|&i| mapped(i)).count();
    let still_mapped = WINDOW_DENSITY as usize - cleared - usize::from(mapped(idx));
    let (want, anon, swap) = match path {
        WindowPath::UffdIntoHole | WindowPath::Cow | WindowPath::CowThenMigrate => (ScanResult::Fail, 1, 0),
        WindowPath::CowThenSwapOut => (ScanResult::PteNonPresent, 0, 1),
        WindowPath::MarkerIntoHole => (ScanResult::PteNonPresent, 0, 0),
    };
    let setup = std::thread::scope(|s| {
        let collapser = s.spawn(|| {
            let mut probe = Probe { mm, policy: p.policy, failures: vec![], calls: p.calls.clone() };
            probe.collapse_hooked(install, want, Some(hook));
            probe.failures
        });
        let setup = match paused_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(()) => path.run(mm),
            Err(_) => Err("the collapse never reached the mmu-notifier start".to_owned()),
        };
        drop(resume_tx);
        let failures = collapser.join().unwrap_or_else(|_| vec!["the collapse panicked".to_owned()]);
        p.failures.extend(failures);
        setup
    });
    if let Err(why) = setup {
        p.failures.push(format!("setup: {path:?} on entry {idx}: {why}"));
    }
    p.expect_state(&State::untouched(still_mapped as i32, anon, swap));
    let hpage = mm.file_hpage(0);
    if let PmdKind::Table(slot) = mm.pmds.get(0, 0).kind() {
        let stale = (0..HPAGE_PMD_NR)
            .filter(|&i| mm.tables.get(slot, i) != Pte::present(hpage.nth(i)))
            .filter(|&i| mm.tlbs.lookup(1, vpn(Probe::addr(i))) == Some(hpage.nth(i)))
            .count();
        if stale != 0 {
            p.failures.push(format!(
                "CPU 1's TLB still translates {stale} entries the collapse cleared: the abort path owes a flush"
            ));
        }
    }
}

fn uffd_into_hole_in_the_window(p: &mut Probe<'_>, install: bool) {
    in_the_window(p, install, WindowPath::UffdIntoHole);
}

fn cow_in_the_window(p: &mut Probe<'_>, install: bool) {
    in_the_window(p, install, WindowPath::Cow);
}

fn cow_then_swap_out_in_the_window(p: &mut Probe<'_>, install: bool) {
    in_the_window(p, install, WindowPath::CowThenSwapOut);
}

fn cow_then_migrate_in_the_window(p: &mut Probe<'_>, install: bool) {
    in_the_window(p, install, WindowPath::CowThenMigrate);
}

fn marker_into_hole_in_the_window(p: &mut Probe<'_>, install: bool) {
    in_the_window(p, install, WindowPath::MarkerIntoHole);
}

/// Every functional case, as (name, setup, modes, body).
fn cases() -> Vec<Case> {
    use VmaKind::*;
    let mut out = vec![];
    let plain = [Private, Shared, UffdPrivate];
    let private = [Private, UffdPrivate];
    let mut add = |name, vmas: &[VmaKind], density, modes, body: Body| {
        for &vma in vmas {
            out.push(Case { name, setup: Setup::new(vma, density), modes, body });
        }
    };
    add("full table", &plain, 512, BOTH, collapses_fully);
    add("empty table", &plain, 0, BOTH, collapses_fully);
    add("single entry", &plain, 1, BOTH, collapses_fully);
    add("max-none (511 none)", &plain, 0, BOTH, max_none);
    add("one none", &plain, 511, BOTH, collapses_fully);
    add("swap entry", &private, 512, BOTH, swap_entry);
    add("COWed entry", &private, 512, BOTH, cowed_entry);
    add("uffd-copied entry", &[UffdPrivate], 511, BOTH, uffd_copied_entry);
    add("forked", &plain, 512, BOTH, forked);
    add("retracted table", &plain, 512, BOTH, retracted_table);
    add("already PMD-mapped", &plain, 512, BOTH, pmd_mapped);
    add("uffd-wp VMA", &[UffdWp], 512, BOTH, uffd_wp);
    // Step 1 -> step 2: an entry changes while ptl is dropped.
    let w = WINDOW_DENSITY;
    add("uffd copy into a hole, step 1 -> 2", &[UffdPrivate], w, BOTH, uffd_into_hole_in_the_window);
    add("COW, step 1 -> 2", &private, w, BOTH, cow_in_the_window);
    add("COW then swap-out, step 1 -> 2", &private, w, BOTH, cow_then_swap_out_in_the_window);
    add("COW then migration, step 1 -> 2", &private, w, BOTH, cow_then_migrate_in_the_window);
    add("guard marker into a hole, step 1 -> 2", &[Private], w, BOTH, marker_into_hole_in_the_window);
    // Lock and file variants: every branch on `ptl == pml`.
    for locks in [Locks::PmlUnsplit, Locks::None] {
        for vma in [Private, UffdPrivate] {
            for (name, body) in [("full table", collapses_fully as Body), ("COWed entry", cowed_entry)] {
                out.push(Case { name, setup: Setup { locks, ..Setup::new(vma, 512) }, modes: BOTH, body });
            }
        }
    }
    for vma in [Private, UffdPrivate] {
        for (name, body) in [("full table", collapses_fully as Body), ("swap entry", swap_entry)] {
            out.push(Case { name, setup: Setup { file: FileKind::File, ..Setup::new(vma, 512) }, modes: BOTH, body });
        }
    }
    out
}

/// Whether a case parks the collapse in the step 1 -> step 2 window
/// (where v6.6 starts the notifier range with `ptl` dropped) to change
/// an entry there. A policy whose caller holds `mmap_lock` for write
/// (v6.1) has no such window (steps 1 and 2 under one `ptl` hold, the
/// notifier started in step 4), and none of those inserters could run
/// during its collapse: the cases do not apply to it and are skipped.
fn parks_in_the_window(case: &Case) -> bool {
    case.name.ends_with(", step 1 -> 2")
}

/// Run every functional case on `policy` (each on a fresh model).
pub fn functional_cases(policy: &dyn DynPolicy) -> Vec<CaseOutcome> {
    let mut out = vec![];
    let no_window = policy.mmap_lock() == MmapLock::Write;
    for case in cases().into_iter().filter(|c| !(no_window && parks_in_the_window(c))) {
        for &install in case.modes {
            let name = format!("{} / {} / {}", case.name, case.setup.variant(), mode_name(install));
            let (failures, calls) = run_case(policy, &case, install);
            out.push(CaseOutcome { failures, calls, name });
        }
    }
    out
}

fn run_case(policy: &dyn DynPolicy, case: &Case, install: bool) -> (Vec<String>, Vec<Event>) {
    let calls = Arc::new(Mutex::new(vec![]));
    let run = || {
        let mm = case.setup.model();
        let mut probe = Probe { mm: &mm, policy, failures: vec![], calls: calls.clone() };
        (case.body)(&mut probe, install);
        let mut failures = probe.failures;
        let (violations, count) = mm.violations.snapshot();
        if let Some(v) = violations.first() {
            failures.push(format!("no violation expected, {count} found; first: {}", first_line(&v.to_string())));
        }
        let teardown = mm.exit_mmap();
        if let Some(v) = teardown.first() {
            failures.push(format!(
                "exit_mmap: clean teardown expected, {} violation(s); first: {}",
                teardown.len(),
                first_line(&v.to_string())
            ));
        }
        failures
    };
    let failures = match catch_unwind(AssertUnwindSafe(run)) {
        Ok(failures) => failures,
        Err(panic) => vec![format!("panicked: {}", panic_message(&*panic))],
    };
    let calls = std::mem::take(&mut *calls.lock().unwrap_or_else(|e| e.into_inner()));
    (failures, calls)
}
