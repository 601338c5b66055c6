//! The framework's overhead on one uncontended collapse, as a ratio
//! measured in interleaved pairs.
//!
//! `collapse`'s `uncontended_collapse` group times `v1_framework` and
//! `reference_loop` one after the other, seconds apart, in one process.
//! On a shared machine the speed of the CPU drifts between those two
//! phases (a neighbour's load, frequency), and the ratio of the two
//! figures moves by ±10% from run to run, more than the changes it is
//! meant to show. This bench takes the ratio from pairs instead: each
//! sample runs [`BATCH`] framework collapses and [`BATCH`] reference
//! collapses back to back (alternating which goes first), so both sides of
//! a sample see the same machine, and the figure is the median of the
//! per-sample ratios (each side's batch starts with [`BATCH_WARM_UP`]
//! untimed collapses). What is timed on each side is exactly what the
//! criterion group times (see `common` and `collapse.rs`'s docs): the
//! collapse alone, each one between two clock reads, the restore untimed.
//!
//! ```text
//! cargo bench --bench overhead
//! ```
//!
//! Under `cargo test --benches` (no `--bench` argument) it runs a few
//! pairs as a smoke test. Positional arguments are criterion-style
//! filters: the bench runs when one of them is part of its name
//! (`uncontended_collapse/overhead_ratio`) or when there are none.

mod common;

use bench_core::harness::Harness;
use bench_core::mm::MAP_BASE;
use common::{assert_clean, cpu, framework_round, model, policy, Reference};
use std::time::{Duration, Instant};

/// The bench's name, as `--list` shows it and filters match it.
const NAME: &str = "uncontended_collapse/overhead_ratio";
/// Timed collapses per side in one sample.
const BATCH: u32 = 32;
/// Untimed collapses at the start of each side's batch: the other side
/// has just run, and the first collapses after it find their lines
/// evicted (the framework's footprint is the larger, so this cold start
/// would inflate the reference more and flatter the ratio).
const BATCH_WARM_UP: u32 = 4;
/// Samples in a measuring run, after [`WARM_UP`].
const SAMPLES: usize = 2000;
/// Untimed pairs before the first sample.
const WARM_UP: Duration = Duration::from_secs(1);
/// Samples under `cargo test`.
const SMOKE_SAMPLES: usize = 3;

/// Criterion's options that take a value: their values are not filters.
const VALUED_OPTIONS: &[&str] = &[
    "--save-baseline",
    "--baseline",
    "--baseline-lenient",
    "--load-baseline",
    "--measurement-time",
    "--warm-up-time",
    "--sample-size",
    "--nresamples",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--profile-time",
    "--plotting-backend",
    "--output-format",
    "--format",
    "--color",
    "-c",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut filters = vec![];
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if VALUED_OPTIONS.contains(&arg.as_str()) {
            it.next();
        } else if !arg.starts_with('-') {
            filters.push(arg.as_str());
        }
    }
    if !filters.is_empty() && !filters.iter().any(|f| NAME.contains(f)) {
        return;
    }
    if args.iter().any(|a| a == "--list") {
        println!("{NAME}: benchmark");
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        // cargo test: the rounds run and check themselves; nothing is timed
        // worth printing (and a test build is unoptimised).
        measure(SMOKE_SAMPLES, Duration::ZERO);
        println!("Testing {NAME}\nSuccess");
        return;
    }
    print_summary(&measure(SAMPLES, WARM_UP));
}

/// One sample: nanoseconds per collapse on each side.
struct Pair {
    framework: f64,
    reference: f64,
}

/// `samples` interleaved pairs after `warm_up` of untimed pairs.
fn measure(samples: usize, warm_up: Duration) -> Vec<Pair> {
    let mm = model(1);
    let v1 = policy("v1");
    let haddr = MAP_BASE;
    let mut cx = cpu(&mm, 0);
    // As the criterion group: CPU 0 in mm_cpumask with one cached
    // translation, so the collapse's flush walks this CPU's TLB.
    assert!(cx.touch(haddr).is_some());
    let reference = Reference::new();

    let mut framework_batch = || batch(|| framework_round(&mut cx, &*v1, haddr));
    let reference_batch = || batch(|| reference.round());

    let start = Instant::now();
    while start.elapsed() < warm_up {
        framework_batch();
        reference_batch();
    }
    let pairs = (0..samples)
        .map(|s| {
            // Alternate which side runs first, so neither always follows
            // the other's restore.
            if s % 2 == 0 {
                let framework = framework_batch();
                Pair { framework, reference: reference_batch() }
            } else {
                let reference = reference_batch();
                Pair { framework: framework_batch(), reference }
            }
        })
        .collect();
    drop(cx);
    assert_clean(&mm, NAME);
    pairs
}

/// Nanoseconds per collapse over one side's batch: [`BATCH_WARM_UP`]
/// untimed rounds, then [`BATCH`] timed ones.
fn batch(mut round: impl FnMut() -> Duration) -> f64 {
    for _ in 0..BATCH_WARM_UP {
        round();
    }
    let timed: Duration = (0..BATCH).map(|_| round()).sum();
    timed.as_nanos() as f64 / f64::from(BATCH)
}

/// The `q`-quantile of `values` (nearest rank).
fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}

fn print_summary(pairs: &[Pair]) {
    let column = |f: fn(&Pair) -> f64| -> [f64; 3] {
        let mut v: Vec<f64> = pairs.iter().map(f).collect();
        [quantile(&mut v, 0.25), quantile(&mut v, 0.5), quantile(&mut v, 0.75)]
    };
    let framework = column(|p| p.framework);
    let reference = column(|p| p.reference);
    let ratio = column(|p| p.framework / p.reference);
    println!("{NAME}");
    println!("  {} interleaved samples of {BATCH} collapses per side, one thread; medians [quartiles]", pairs.len());
    let us = |v: [f64; 3]| format!("{:.3} µs  [{:.3} {:.3}]", v[1] / 1e3, v[0] / 1e3, v[2] / 1e3);
    println!("  v1_framework    {}", us(framework));
    println!("  reference_loop  {}", us(reference));
    println!("  ratio           {:.3}     [{:.3} {:.3}]   (target <= 1.25)", ratio[1], ratio[0], ratio[2]);
}
