//! `collapse-bench calibrate`: measure what the simulation's primitives
//! cost on this machine, from user space, and write a cost file.
//!
//! What user space can time is timed with the same operations the kernel
//! does (an atomic exchange for `ptep_get_and_clear`, a cache line handed
//! between two cores, a syscall for a kernel entry, a futex wake-up for a
//! sleeper). What it cannot (TLB flushes, shootdown IPIs, the page
//! allocator, RCU callbacks, mmu notifiers) keeps the documented default,
//! and the file says so beside each value.

use crate::cli::CliError;
use crate::output_file::OutputFile;
use bench_core::IntoEnumIterator;
use bench_core::{Cost, CostModel};
use core_affinity::CoreId;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Arguments of `calibrate`.
#[derive(clap::Args, Debug)]
pub struct CalibrateArgs {
    /// Where to write the cost file (TOML).
    #[arg(long, default_value = "collapse-costs.toml")]
    pub out: PathBuf,
}

/// ns per iteration of `body`, the median of five timed batches of `n`.
fn per_op(n: u64, mut body: impl FnMut(u64)) -> f64 {
    let mut samples: Vec<f64> = (0..5)
        .map(|_| {
            let t0 = Instant::now();
            for i in 0..n {
                body(i);
            }
            t0.elapsed().as_secs_f64() * 1e9 / n as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[2]
}

/// Two threads on two cores (pinned to `cores[0]` and `cores[1]` where
/// given) hand `rounds` turns back and forth through `turn`; returns ns
/// per one-way hand-over. `on_turn` is the work each side does when the
/// turn is its own.
fn ping_pong(cores: &[CoreId], rounds: u64, on_turn: impl Fn() + Sync, wait: impl Fn(&AtomicU64, u64) + Sync) -> f64 {
    let turn = AtomicU64::new(0);
    let ready = AtomicBool::new(false);
    let mut elapsed = 0.0;
    std::thread::scope(|s| {
        let (turn, on_turn, wait, ready) = (&turn, &on_turn, &wait, &ready);
        let core = cores.get(1).copied();
        s.spawn(move || {
            if let Some(core) = core {
                core_affinity::set_for_current(core);
            }
            ready.store(true, Ordering::Release);
            for r in 0..rounds {
                wait(turn, 2 * r + 1);
                on_turn();
                turn.store(2 * r + 2, Ordering::Release);
            }
        });
        if let Some(&core) = cores.first() {
            core_affinity::set_for_current(core);
        }
        while !ready.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        let t0 = Instant::now();
        for r in 0..rounds {
            on_turn();
            turn.store(2 * r + 1, Ordering::Release);
            wait(turn, 2 * r + 2);
        }
        elapsed = t0.elapsed().as_secs_f64();
    });
    elapsed * 1e9 / (2 * rounds) as f64
}

/// Spin until `turn` is `want`; yield now and then, so a busy machine
/// (the other side preempted) slows the measurement rather than hangs it.
fn spin_for(turn: &AtomicU64, want: u64) {
    let mut spins = 0u32;
    while turn.load(Ordering::Acquire) != want {
        std::hint::spin_loop();
        spins += 1;
        if spins.is_multiple_of(1 << 16) {
            std::thread::yield_now();
        }
    }
}

/// `calibrate`: check where the cost file goes (before any work), measure
/// and print, then write the cost file atomically.
pub fn calibrate(args: &CalibrateArgs) -> Result<(), CliError> {
    let out = OutputFile::check("--out", &args.out)?;
    let text = measure(&args.out)?;
    out.write(text.as_bytes())?;
    sayln!("cost file: {}", out.path().display());
    Ok(())
}

/// Measure what can be measured, printing each value, and return the cost
/// file's text (checked to read back), whose header names `out`.
fn measure(out: &Path) -> Result<String, CliError> {
    let cores = bench_core::machine::available_cores();
    let (model, notes) = measure_model(|line| sayln!("{line}"));
    let header = format!(
        "collapse-bench cost model, measured by `collapse-bench calibrate` on {cores} core(s) of\n{}\n\
         Values in ns. Use with: collapse-bench run --engine sim --costs {}",
        bench_core::results::Environment::capture("sim", 0, crate::cli::GIT_REVISION).cpu_model,
        out.display()
    );
    let text = model.to_toml(&header, &notes);
    CostModel::parse(&text, "calibrate output")
        .map_err(|e| CliError::Failed(format!("calibrate wrote an unreadable cost file: {e}")))?;
    Ok(text)
}

/// The cost model measured on this machine (the built-in values where a
/// cost cannot be measured from user space), with a note per measured
/// cost saying how; each step is told to `say` as a line. About a second.
/// The measuring pins threads to cores: it runs on a thread of its own,
/// so the caller's affinity (and the cores its later runs see) stays as
/// it was.
pub fn measure_model(say: impl Fn(&str) + Sync) -> (CostModel, Vec<(Cost, String)>) {
    std::thread::scope(|s| s.spawn(|| measure_pinned(&say)).join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
}

fn measure_pinned(say: &dyn Fn(&str)) -> (CostModel, Vec<(Cost, String)>) {
    let cores = bench_core::machine::available_cores();
    // Before anything is pinned: a pinned thread sees only its own core.
    let core_ids = core_affinity::get_core_ids().unwrap_or_default();
    let mut model = CostModel::default();
    let mut notes: Vec<(Cost, String)> = vec![];
    let mut measured = |model: &mut CostModel, c: Cost, ns: f64, how: &str| {
        // Kept to hundredths of a ns. A cost that must be positive
        // (`Cost::min_ns`: without it virtual time could stand still) but
        // measured below that is written as the least such value.
        let (ns, floor) = match (ns * 100.0).round() / 100.0 {
            ns if ns < 0.01 && c.min_ns() > 0.0 => (0.01, "; measured below 0.01 ns, written as 0.01"),
            ns => (ns, ""),
        };
        model.set(c, ns);
        notes.push((c, format!("measured: {how}{floor}")));
        say(&format!("  {:<20} {ns:>9.2} ns  {how}", c.key()));
    };
    say(&format!("calibrating on {cores} core(s) (median of five batches each):"));

    // A ticket lock's uncontended acquire and release.
    let (next, owner) = (AtomicU32::new(0), AtomicU32::new(0));
    let ns = per_op(2_000_000, |_| {
        let t = owner.load(Ordering::Relaxed);
        let _ = black_box(next.compare_exchange(t, t + 1, Ordering::Acquire, Ordering::Relaxed));
        owner.store(t + 1, Ordering::Release);
    });
    measured(&mut model, Cost::LockUncontended, ns, "cmpxchg and releasing store on a local line");

    // One 4 KiB table of entries.
    let table: Vec<AtomicU64> = (0..512u64).map(|i| AtomicU64::new((i << 12) | 1)).collect();
    let ns = per_op(20_000, |_| {
        let mut mapped = 0u64;
        for e in &table {
            let v = e.load(Ordering::Relaxed);
            mapped += u64::from(v & 1 == 1 && (v >> 12) < 512);
        }
        black_box(mapped);
    }) / 512.0;
    measured(&mut model, Cost::EntryRead, ns, "load and check of each entry of a 512-entry table");
    let ns = per_op(20_000, |i| {
        for e in &table {
            e.store(black_box(i), Ordering::Release);
        }
    }) / 512.0;
    measured(&mut model, Cost::EntryWrite, ns, "release store to each entry of a table");
    let ns = per_op(20_000, |i| {
        for e in &table {
            black_box(e.swap(i, Ordering::AcqRel));
        }
    }) / 512.0;
    measured(&mut model, Cost::EntryClear, ns, "atomic exchange of each entry (ptep_get_and_clear)");

    // struct page-sized records: a refcount, and a mapcount plus a statistic.
    let pages: Vec<[AtomicI32; 16]> = (0..512).map(|_| std::array::from_fn(|_| AtomicI32::new(1))).collect();
    let ns = per_op(20_000, |_| {
        for p in &pages {
            p[1].fetch_sub(1, Ordering::AcqRel);
            p[1].fetch_add(1, Ordering::AcqRel);
            p[2].fetch_add(1, Ordering::Relaxed);
        }
    }) / 512.0;
    measured(&mut model, Cost::RmapUpdate, ns, "mapcount atomic and a statistic on each of 512 struct pages");
    let ns = per_op(2_000_000, |_| {
        black_box(pages[0][0].fetch_add(1, Ordering::AcqRel));
    });
    measured(&mut model, Cost::PageRef, ns, "atomic add on a local refcount");

    // A syscall: entering and leaving the kernel.
    let ns = per_op(200_000, |_| {
        black_box(std::process::id());
    });
    measured(&mut model, Cost::KernelEntry, ns, "getpid() round trip into the kernel");

    if cores >= 2 {
        let ns = ping_pong(&core_ids, 50_000, || {}, spin_for);
        measured(&mut model, Cost::CacheLineTransfer, ns, "line handed between two pinned cores");
        let word = AtomicU64::new(0);
        let ns = ping_pong(
            &core_ids,
            50_000,
            || {
                black_box(word.fetch_add(1, Ordering::AcqRel));
            },
            spin_for,
        );
        measured(&mut model, Cost::LockHandoff, ns, "the waiter sees the release, then writes the lock word");
        let ns = wakeup_round_trip(&core_ids, 5_000);
        measured(&mut model, Cost::Wakeup, ns, "futex wake of a parked thread, until it runs");
    } else {
        say("  (one core: cache-line transfer, hand-off and wake-up keep their defaults)");
    }
    let kept: Vec<&str> = Cost::iter().filter(|c| !notes.iter().any(|n| n.0 == *c)).map(|c| c.key()).collect();
    say(&format!("  kept defaults (not measurable from user space): {}", kept.join(", ")));
    (model, notes)
}

/// ns from `unpark` of a parked thread until it runs, one way.
fn wakeup_round_trip(cores: &[CoreId], rounds: u64) -> f64 {
    let main = std::thread::current();
    let flag = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    std::thread::scope(|s| {
        let flag2 = flag.clone();
        let main = main.clone();
        let core = cores.get(1).copied();
        let other = s.spawn(move || {
            if let Some(core) = core {
                core_affinity::set_for_current(core);
            }
            for r in 0..rounds {
                while flag2.load(Ordering::Acquire) != 2 * r + 1 {
                    std::thread::park();
                }
                flag2.store(2 * r + 2, Ordering::Release);
                main.unpark();
            }
        });
        for r in 0..rounds {
            flag.store(2 * r + 1, Ordering::Release);
            other.thread().unpark();
            while flag.load(Ordering::Acquire) != 2 * r + 2 {
                std::thread::park();
            }
        }
    });
    t0.elapsed().as_secs_f64() * 1e9 / (2 * rounds) as f64
}
