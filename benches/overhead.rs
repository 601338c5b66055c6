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
//! A second pair, `uncontended_collapse/kernel_c_ratio`, times the
//! kernel's own `collapse_pte_mapped_thp()` (compiled by the kernel-C
//! front end from the tree `COLLAPSE_BENCH_KERNEL_SOURCE` names, default
//! Debian's `/usr/src/linux-source-6.12.tar.xz`) against the Rust `v1`
//! port, the same way, on one model, and prints how long compiling and
//! loading took. Without a tree it says so and measures nothing.
//!
//! Under `cargo test --benches` (no `--bench` argument) it runs a few
//! pairs as a smoke test. Positional arguments are criterion-style
//! filters: the bench runs when one of them is part of its name
//! (`uncontended_collapse/overhead_ratio`) or when there are none.

mod common;

use bench_core::harness::Harness;
use bench_core::kernel::Cx;
use bench_core::mm::MAP_BASE;
use bench_core::{Mm, Native};
use common::{assert_clean, cpu, framework_round, model, policy, Reference};
use std::cell::RefCell;
use std::time::{Duration, Instant};

/// The benches' names, as `--list` shows them and filters match them.
const NAME: &str = "uncontended_collapse/overhead_ratio";
const KERNEL_C_NAME: &str = "uncontended_collapse/kernel_c_ratio";
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
    let selected = |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f));
    if args.iter().any(|a| a == "--list") {
        for name in [NAME, KERNEL_C_NAME].into_iter().filter(|n| selected(n)) {
            println!("{name}: benchmark");
        }
        return;
    }
    // cargo test (no --bench): the rounds run and check themselves;
    // nothing is timed worth printing (and a test build is unoptimised).
    let (samples, warm_up) =
        if args.iter().any(|a| a == "--bench") { (SAMPLES, WARM_UP) } else { (SMOKE_SAMPLES, Duration::ZERO) };
    let smoke = samples == SMOKE_SAMPLES;
    if selected(NAME) {
        let pairs = measure_overhead(samples, warm_up);
        if smoke {
            println!("Testing {NAME}\nSuccess");
        } else {
            print_summary(NAME, &pairs, ["v1_framework", "reference_loop"], "(target <= 1.25)");
        }
    }
    if selected(KERNEL_C_NAME) {
        match measure_kernel_c(samples, warm_up) {
            None => println!("{KERNEL_C_NAME}: skipped (no kernel tree: set COLLAPSE_BENCH_KERNEL_SOURCE)"),
            Some(_) if smoke => println!("Testing {KERNEL_C_NAME}\nSuccess"),
            Some(pairs) => print_summary(
                KERNEL_C_NAME,
                &pairs,
                ["kernel_c", "v1_rust"],
                "(the C crosses into the model at every primitive)",
            ),
        }
    }
}

/// One sample: nanoseconds per collapse on each side.
struct Pair {
    first: f64,
    second: f64,
}

/// `samples` interleaved pairs of batches of `first` and `second` after
/// `warm_up` of untimed pairs.
fn measure(
    samples: usize,
    warm_up: Duration,
    mut first: impl FnMut() -> Duration,
    mut second: impl FnMut() -> Duration,
) -> Vec<Pair> {
    let start = Instant::now();
    while start.elapsed() < warm_up {
        batch(&mut first);
        batch(&mut second);
    }
    (0..samples)
        .map(|s| {
            // Alternate which side runs first, so neither always follows
            // the other's restore.
            if s % 2 == 0 {
                let a = batch(&mut first);
                Pair { first: a, second: batch(&mut second) }
            } else {
                let b = batch(&mut second);
                Pair { first: batch(&mut first), second: b }
            }
        })
        .collect()
}

/// CPU 0 of `mm`, as the criterion group has it: in mm_cpumask with one
/// cached translation, so the collapse's flush walks this CPU's TLB.
fn collapsing_cpu(mm: &Mm) -> RefCell<Cx<'_, Native>> {
    let mut cx = cpu(mm, 0);
    assert!(cx.touch(MAP_BASE).is_some());
    RefCell::new(cx)
}

/// The framework's `v1` against the reference loop.
fn measure_overhead(samples: usize, warm_up: Duration) -> Vec<Pair> {
    let mm = model(1);
    let v1 = policy("v1");
    let haddr = MAP_BASE;
    let cx = collapsing_cpu(&mm);
    let reference = Reference::new();
    let pairs = measure(samples, warm_up, || framework_round(&mut cx.borrow_mut(), &*v1, haddr), || reference.round());
    drop(cx);
    assert_clean(&mm, NAME);
    pairs
}

/// The kernel's own C against the Rust `v1`, both through the framework
/// on one model; None without a tree.
fn measure_kernel_c(samples: usize, warm_up: Duration) -> Option<Vec<Pair>> {
    let source = std::env::var_os("COLLAPSE_BENCH_KERNEL_SOURCE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/usr/src/linux-source-6.12.tar.xz".into());
    if !source.exists() {
        return None;
    }
    let tree = kernel_c::source::open(&source).expect("the kernel tree reads");
    let started = Instant::now();
    let function = kernel_c::KernelFunction::from_tree(tree, &[]).expect("the kernel's function compiles");
    println!(
        "{KERNEL_C_NAME}: {} extracted, compiled and loaded in {:.3} s (compile and load alone: {:.3} s)",
        bench_core::kernel::RuntimePolicy::name(&function),
        started.elapsed().as_secs_f64(),
        function.compile_time().as_secs_f64()
    );
    let kernel = (function.entry().build)(&serde_json::Value::Null).expect("builds");
    let v1 = policy("v1");
    let mm = model(1);
    let haddr = MAP_BASE;
    let cx = collapsing_cpu(&mm);
    let pairs = measure(
        samples,
        warm_up,
        || framework_round(&mut cx.borrow_mut(), &*kernel, haddr),
        || framework_round(&mut cx.borrow_mut(), &*v1, haddr),
    );
    drop(cx);
    assert_clean(&mm, KERNEL_C_NAME);
    Some(pairs)
}

/// Nanoseconds per collapse over one side's batch: [`BATCH_WARM_UP`]
/// untimed rounds, then [`BATCH`] timed ones.
fn batch(round: &mut impl FnMut() -> Duration) -> f64 {
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

fn print_summary(name: &str, pairs: &[Pair], sides: [&str; 2], note: &str) {
    let column = |f: fn(&Pair) -> f64| -> [f64; 3] {
        let mut v: Vec<f64> = pairs.iter().map(f).collect();
        [quantile(&mut v, 0.25), quantile(&mut v, 0.5), quantile(&mut v, 0.75)]
    };
    let first = column(|p| p.first);
    let second = column(|p| p.second);
    let ratio = column(|p| p.first / p.second);
    println!("{name}");
    println!("  {} interleaved samples of {BATCH} collapses per side, one thread; medians [quartiles]", pairs.len());
    let us = |v: [f64; 3]| format!("{:.3} µs  [{:.3} {:.3}]", v[1] / 1e3, v[0] / 1e3, v[2] / 1e3);
    println!("  {:<15} {}", sides[0], us(first));
    println!("  {:<15} {}", sides[1], us(second));
    println!("  ratio           {:.3}     [{:.3} {:.3}]   {note}", ratio[1], ratio[0], ratio[2]);
}
