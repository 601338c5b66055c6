//! The exhaustive checker: every interleaving of a preset's bounded
//! scope, up to equivalence, run on the controlled engine with every
//! oracle on ([`bench_core::sched::Explorer`]: DPOR with sleep sets over
//! the footprints the model's words record).
//!
//! A preset's scope ([`scope`]) is the preset with one range and every
//! actor making one operation aimed at one entry of it: one collapse
//! (without the restore a sampled run does after it) beside one fault,
//! copy, read, marker toggle or `pml` hold of each other actor, all on
//! the entry the collapse's window opens. The actors' choices are fixed,
//! so what varies is only the interleaving, and "verified" means: no
//! interleaving of these operations breaks a rule. Races that need an
//! actor to act twice, or on two entries, are outside the scope; the
//! sampling checker ([`crate::check`]) looks for those.

use crate::check::{attach_counterexample, run_under, tally, CheckOptions, CheckReport, ExhaustiveRun, Found};
use crate::scenario::{ExhaustiveScope, Scenario, ScenarioError, Threads};
use bench_core::kernel::DynPolicy;
use bench_core::sched::{Explorer, Runnable, Scheduler};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::Instant;

/// Operations each actor makes in a scope (the collapser's is its collapse).
pub const SCOPE_OPS: u64 = 1;

/// The PTE index every actor of a scope aims at: mapped in every preset's
/// table (the partly-populated ones leave index `i % 4 == 1` empty), so a
/// reader can cache it, and a copy or a marker lands there only inside
/// the collapse's window.
pub const SCOPE_TARGET: u32 = 2;

/// Anonymous pages, and spare PTE tables, of a scope's model.
pub const SCOPE_POOL: u32 = 16;

/// Pages per UFFDIO_COPY in a scope: the one entry aimed at.
pub const SCOPE_UFFD_PAGES: u32 = 1;

/// The exhaustive scope of `scenario`: one range (so every actor works on
/// the collapse's), every actor aimed at [`SCOPE_TARGET`], copies of one
/// page. Its other settings (locks, sharing, uffd, collapse mode, actors)
/// stay as they are.
pub fn scope(scenario: &Scenario) -> Scenario {
    let t = &scenario.threads;
    let one = |n: u32| n.min(1);
    Scenario {
        threads: Threads {
            collapsers: one(t.collapsers),
            faulters: one(t.faulters),
            uffd: one(t.uffd),
            cow: one(t.cow),
            swap: one(t.swap),
            migrate: one(t.migrate),
            neighbours: one(t.neighbours),
            readers: one(t.readers),
            markers: one(t.markers),
            reclaimers: one(t.reclaimers),
            retractors: one(t.retractors),
        },
        ranges: 1,
        // One operation per actor allocates a page or a table or two: a
        // small pool keeps each run's model quick to build.
        anon_pages: Some(SCOPE_POOL),
        spare_tables: Some(SCOPE_POOL),
        uffd_copy_pages: SCOPE_UFFD_PAGES,
        scope: Some(ExhaustiveScope { target: SCOPE_TARGET }),
        ..scenario.clone()
    }
}

/// How far `check --exhaustive` takes a preset's scope by default.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Every interleaving (the scope finishes: from 0.01 s for
    /// `shmem-shared` to about 0.9 s for `pml-contended`, release build).
    Complete,
    /// At most this many preemptions per interleaving: `cow-swap`'s five
    /// actors, unbounded, take longer than a check should (0.1 s a policy
    /// under a bound of 1, 3 to 7 s under 2, a minute under 3).
    Bound(u32),
    /// Not explored when every preset is checked: `mixed`'s nine actors
    /// are beyond reach even under a bound of one, so that check samples
    /// it (`-w mixed --exhaustive` explores it under a bound of one).
    Sampled,
}

/// The default reach of the preset called `name` (any other scenario:
/// complete).
pub fn default_reach(name: &str) -> Reach {
    match name {
        "cow-swap" => Reach::Bound(1),
        "mixed" => Reach::Sampled,
        _ => Reach::Complete,
    }
}

/// The bound an exploration of `name`'s scope takes when none is asked for.
pub fn default_bound(name: &str) -> Option<u32> {
    match default_reach(name) {
        Reach::Complete => None,
        Reach::Bound(k) => Some(k),
        Reach::Sampled => Some(1),
    }
}

/// The scope in words, for headers and result files.
pub fn describe(scenario: &Scenario) -> String {
    format!(
        "{} CPUs, one 2 MiB range, {SCOPE_OPS} operation each aimed at PTE index {SCOPE_TARGET} (the collapse \
         without its restore; UFFDIO_COPY of {SCOPE_UFFD_PAGES} page)",
        scenario.threads.total()
    )
}

/// The run options of an exhaustive check made from `opts`: [`SCOPE_OPS`]
/// per CPU and no collapse quota (the footprints do not name it). Replay a
/// scope's token with these.
pub fn scope_options(opts: &CheckOptions) -> CheckOptions {
    CheckOptions { collapses: u64::MAX, ops_per_cpu: SCOPE_OPS, ..opts.clone() }
}

/// How an exhaustive check explores.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ExhaustiveOptions {
    /// Preemptions a run may make (None: no bound, complete).
    pub bound: Option<u32>,
    /// Partial-order reduction on (off: every interleaving, for comparison).
    pub reduce: bool,
}

impl Default for ExhaustiveOptions {
    fn default() -> Self {
        ExhaustiveOptions { bound: None, reduce: true }
    }
}

/// Explore every interleaving of `scenario` (a [`scope`]) for `policy`.
/// The report's schedules are the runs explored (sleep-set-blocked runs,
/// each equivalent to one explored, are left out), its counterexample the
/// first run of the gravest verdict, shrunk, with a token that replays it
/// on the scope ([`scope_options`]); `opts.stop_at_first` ends the
/// exploration at the first violation, incomplete.
pub fn check_exhaustive(
    policy: &Arc<dyn DynPolicy>,
    scenario: &Scenario,
    opts: &CheckOptions,
    how: &ExhaustiveOptions,
) -> Result<CheckReport, ScenarioError> {
    scenario.validate()?;
    if scenario.scope.is_none() {
        return Err(ScenarioError::new("internal: an exhaustive check runs on a scope (exhaustive::scope)"));
    }
    let opts = scope_options(opts);
    let mut explorer = Explorer::new(how.bound, how.reduce);
    let mut report = CheckReport { policy: policy.label(), ..CheckReport::default() };
    let mut found: Found = None;
    let t0 = Instant::now();
    let mut stopped_at_first = false;
    loop {
        // Numbered among the interleavings explored to their end (a run
        // cut as equivalent to one explored is not counted).
        let run_number = explorer.stats().interleavings();
        let (_, run, violations) = run_under(policy, scenario, 0, &mut explorer, &opts, false)?;
        let violated =
            !explorer.was_sleep_blocked() && tally(&mut report, &mut found, run_number, run, &violations, &t0);
        if !explorer.advance() {
            break;
        }
        if violated && opts.stop_at_first {
            stopped_at_first = true;
            break;
        }
    }
    if let Some(why) = explorer.error() {
        return Err(ScenarioError::new(format!("exhaustive check of {} on {}: {why}", report.policy, scenario.name)));
    }
    report.search_s = t0.elapsed().as_secs_f64();
    report.exhaustive = Some(ExhaustiveRun { stats: explorer.stats(), bound: how.bound, stopped_at_first });
    if let Some((_, _, oracle, schedule)) = found {
        // Every run of a scope draws the streams of schedule 0.
        attach_counterexample(policy, scenario, &opts, &mut report, (0, oracle, schedule))?;
    }
    Ok(report)
}

/// A random descent of the tree of every interleaving, no reduction,
/// that multiplies the choices it passes (Knuth, "Estimating the
/// efficiency of backtrack programs", 1975): the product is an unbiased
/// estimate of the number of interleavings.
struct Descent {
    rng: ChaCha8Rng,
    product: f64,
}

impl Scheduler for Descent {
    fn next(&mut self, runnable: &[Runnable], _step: u64) -> Option<u32> {
        self.product *= runnable.len() as f64;
        let k = (self.rng.next_u32() as u64 * runnable.len() as u64) >> 32;
        Some(runnable[k as usize].cpu)
    }
}

/// About how many interleavings `scenario` (a [`scope`]) has without the
/// partial-order reduction: the mean of `samples` random descents'
/// products ([`Descent`]), seeded from `opts.seed`. For comparison with
/// what the reduction explores: the full enumeration is out of reach.
pub fn estimate_interleavings(
    policy: &Arc<dyn DynPolicy>,
    scenario: &Scenario,
    opts: &CheckOptions,
    samples: u32,
) -> Result<f64, ScenarioError> {
    let opts = scope_options(opts);
    let mut sum = 0.0;
    for i in 0..samples {
        let mut descent =
            Descent { rng: ChaCha8Rng::seed_from_u64(crate::check::schedule_seed(opts.seed, i.into())), product: 1.0 };
        run_under(policy, scenario, 0, &mut descent, &opts, false)?;
        sum += descent.product;
    }
    Ok(sum / f64::from(samples.max(1)))
}
