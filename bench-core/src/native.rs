//! The native engine's runner: one OS thread per model CPU.
//!
//! Threads are pinned one per core when they fit; when there are more
//! threads than cores the run is marked oversubscribed (a preempted lock
//! holder stalls every spinning waiter, which distorts hold and wait
//! figures) and spinning waiters yield now and then so it can finish.

use crate::engine::{Native, StepHook};
use crate::metrics::{Metrics, Role};
use crate::mm::Mm;
use crate::primitives::Cx;
use crate::Engine;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// A workload actor: one model CPU's loop body.
pub trait Actor: Send {
    /// What it does (for attribution).
    fn role(&self) -> Role;
    /// One operation. Returns true if it counts toward an operation limit
    /// (collapses do; background actors' operations do not).
    fn op<E: Engine>(&mut self, cx: &mut Cx<'_, E>) -> bool;
}

/// When a run stops.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Limit {
    /// After this much wall time.
    Duration(Duration),
    /// After this many counted operations (collapses), or the time cap.
    Ops {
        /// Counted operations.
        ops: u64,
        /// Give up after this long even if fewer were done.
        cap: Duration,
    },
}

/// How to run.
#[derive(Clone)]
pub struct NativeOptions {
    /// When to stop.
    pub limit: Limit,
    /// Pin threads to cores when they fit (default true).
    pub pin: bool,
    /// Test hook called at every collapse step.
    pub hook: Option<StepHook>,
}

/// What a native run measured.
pub struct NativeRun {
    /// All CPUs' measurements, merged.
    pub metrics: Metrics,
    /// Wall time from start barrier to the last thread's exit.
    pub wall: Duration,
    /// Threads run (model CPUs).
    pub threads: usize,
    /// Cores available to this process.
    pub cores: usize,
    /// Whether threads were pinned one per core.
    pub pinned: bool,
    /// More threads than cores.
    pub oversubscribed: bool,
    /// Counted operations done.
    pub ops: u64,
}

/// Cores this process may run on.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Run `actors` (actor `i` on model CPU `i`) until `opts.limit`.
pub fn run_native<A: Actor>(mm: &Mm, actors: Vec<A>, opts: &NativeOptions) -> NativeRun {
    let threads = actors.len();
    assert!(threads as u32 <= mm.config.cpus, "{threads} actors but the model has {} CPUs", mm.config.cpus);
    let cores = available_cores();
    let oversubscribed = threads > cores;
    let core_ids = if opts.pin && !oversubscribed { core_affinity::get_core_ids() } else { None };
    let pinned = core_ids.as_ref().is_some_and(|ids| ids.len() >= threads);
    let stop = AtomicBool::new(false);
    let done_ops = AtomicU64::new(0);
    let barrier = Barrier::new(threads + 1);
    let base = Instant::now();
    let (target_ops, deadline) = match opts.limit {
        Limit::Duration(d) => (u64::MAX, d),
        Limit::Ops { ops, cap } => (ops, cap),
    };
    let mut merged = Metrics::default();
    let mut wall = Duration::ZERO;
    crossbeam::thread::scope(|s| {
        let handles: Vec<_> = actors
            .into_iter()
            .enumerate()
            .map(|(cpu, mut actor)| {
                let (stop, done_ops, barrier) = (&stop, &done_ops, &barrier);
                let core = if pinned { core_ids.as_ref().map(|ids| ids[cpu]) } else { None };
                let hook = opts.hook.clone();
                s.spawn(move |_| {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    let engine = Native::new(base, hook, oversubscribed);
                    let mut cx = Cx::new(mm, cpu as u32, actor.role(), engine);
                    barrier.wait();
                    while !stop.load(Ordering::Relaxed) {
                        if actor.op(&mut cx) && done_ops.fetch_add(1, Ordering::Relaxed) + 1 >= target_ops {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    cx.metrics
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        while !stop.load(Ordering::Relaxed) && start.elapsed() < deadline {
            std::thread::sleep(Duration::from_millis(1).min(deadline.saturating_sub(start.elapsed())));
        }
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            match h.join() {
                Ok(m) => merged.merge(&m),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        wall = start.elapsed();
    })
    .unwrap_or_else(|p| std::panic::resume_unwind(p));
    NativeRun { metrics: merged, wall, threads, cores, pinned, oversubscribed, ops: done_ops.load(Ordering::Relaxed) }
}
