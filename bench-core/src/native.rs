//! The native engine's runner: one OS thread per model CPU.
//!
//! Threads are pinned one per core when they fit; when there are more
//! threads than cores the run is marked oversubscribed (a preempted lock
//! holder stalls every spinning waiter, which distorts hold and wait
//! figures) and spinning waiters yield now and then so it can finish.
//!
//! A run survives its policy. A CPU that panics is caught on its own
//! thread and reported with its message, location, role, collapse step
//! and the locks it held; a CPU that finishes nothing for the watchdog's
//! timeout is reported like the hung-task detector would
//! ([`crate::watchdog`]). Either way the run is abandoned: every other CPU
//! unwinds out of its next wait, trylock or pause, and [`run_native`]
//! returns with [`NativeRun::failure`] set. The one thing that cannot be
//! survived is a CPU that loops forever in code that never waits, tries a
//! lock or pauses: no thread can be stopped from outside, so after a
//! further timeout the runner prints the report and ends the process.

use crate::actor::{Actor, Limit};
use crate::engine::{Native, StepHook};
use crate::harness::Harness;
use crate::kernel::Cx;
use crate::machine::available_cores;
use crate::metrics::Metrics;
use crate::mm::Mm;
use crate::oops::{catch_unwound, on_panic, Unwound};
use crate::results::RunFailure;
use crate::role::Role;
use crate::watch::Watch;
use crate::watchdog::Monitor;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How to run.
#[derive(Clone)]
pub struct NativeOptions {
    /// When to stop.
    pub limit: Limit,
    /// Pin threads to cores when they fit (default true).
    pub pin: bool,
    /// Test hook called at every collapse step.
    pub hook: Option<StepHook>,
    /// Abandon the run when a CPU finishes no operation for this long
    /// ([`crate::watchdog::DEFAULT_TIMEOUT`] unless told otherwise).
    pub watchdog: Duration,
}

/// What a native run measured.
pub struct NativeRun {
    /// All CPUs' measurements, merged.
    pub metrics: Metrics,
    /// Wall time from the start to the last thread's exit.
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
    /// Why the run was abandoned, if it was. The metrics then hold what
    /// the CPUs measured until then, and the model is left mid-operation
    /// (locks held, tables half cleared): do not tear it down.
    pub failure: Option<RunFailure>,
}

/// Run `actors` (actor `i` on model CPU `i`) until `opts.limit`, or until
/// a CPU panics or the watchdog sees no progress (see the module docs).
pub fn run_native<A: Actor>(mm: &Mm, actors: Vec<A>, opts: &NativeOptions) -> NativeRun {
    let threads = actors.len();
    assert!(threads as u32 <= mm.config.cpus, "{threads} actors but the model has {} CPUs", mm.config.cpus);
    let cores = available_cores();
    let oversubscribed = threads > cores;
    let core_ids = if opts.pin && !oversubscribed { core_affinity::get_core_ids() } else { None };
    let pinned = core_ids.as_ref().is_some_and(|ids| ids.len() >= threads);
    let roles: Vec<Role> = actors.iter().map(|a| a.role()).collect();
    let watch = Arc::new(Watch::new(threads));
    let failure: Mutex<Option<RunFailure>> = Mutex::new(None);
    let stop = AtomicBool::new(false);
    let done_ops = AtomicU64::new(0);
    let gate = StartGate::default();
    let base = Instant::now();
    let (target_ops, time_limit) = match opts.limit {
        Limit::Duration(d) => (u64::MAX, d),
        Limit::Ops { ops, cap } => (ops, cap),
    };
    let mut merged = Metrics::default();
    let mut wall = Duration::ZERO;
    std::thread::scope(|s| {
        let handles: Vec<_> = actors
            .into_iter()
            .enumerate()
            .map(|(cpu, mut actor)| {
                let (stop, done_ops, gate, failure) = (&stop, &done_ops, &gate, &failure);
                let core = if pinned { core_ids.as_ref().map(|ids| ids[cpu]) } else { None };
                let hook = opts.hook.clone();
                let watch = watch.clone();
                s.spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    let engine = Native::new(base, hook, oversubscribed).watched(watch.clone(), cpu as u32);
                    let marks = watch.clone();
                    on_panic(move || marks.panicking(cpu));
                    let mut cx = Cx::new(mm, cpu as u32, actor.role(), engine);
                    // Every CPU keeps the time limit itself: with many more
                    // threads than cores the thread that started the run
                    // may not be scheduled for a long time.
                    let end = gate.arrive() + time_limit;
                    let ended = catch_unwound(|| {
                        while !stop.load(Ordering::Relaxed) {
                            if Instant::now() >= end {
                                stop.store(true, Ordering::Relaxed);
                                break;
                            }
                            let counted = actor.op(&mut cx);
                            watch.op_done(cpu);
                            if counted && done_ops.fetch_add(1, Ordering::Relaxed) + 1 >= target_ops {
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                    });
                    if let Err(Unwound::Panic(panic)) = ended {
                        let role = cx.role();
                        let oops = RunFailure::Panic {
                            cpu: Some(cpu as u32),
                            role: Some(role.to_string()),
                            step: (role == Role::Collapse).then(|| cx.current_step().label().to_owned()),
                            message: panic.message,
                            location: panic.location,
                            held_locks: cx.held_locks().into_iter().map(|id| mm.lock_name(id)).collect(),
                        };
                        failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(oops);
                        watch.abort();
                        stop.store(true, Ordering::Relaxed);
                    }
                    watch.exited(cpu);
                    cx.metrics
                })
            })
            .collect();
        let start = gate.open(threads);
        let mut monitor = Monitor::new(threads, opts.watchdog);
        let mut next_tick = start + monitor.period();
        let mut abandoned_at = None;
        loop {
            if stop.load(Ordering::Relaxed) && watch.all_exited() {
                break;
            }
            let now = Instant::now();
            if watch.aborted() {
                let since = *abandoned_at.get_or_insert(now);
                if now.duration_since(since) >= opts.watchdog.max(Duration::from_secs(1)) {
                    unstoppable(&watch, &failure, mm, &roles, &monitor);
                }
            } else if now >= next_tick {
                next_tick = now + monitor.period();
                let hung = monitor.tick(&watch);
                if !hung.is_empty() {
                    let report = monitor.report(&watch, mm, &roles, &hung);
                    let hang = RunFailure::Hung {
                        watchdog_s: opts.watchdog.as_secs_f64(),
                        cpus: hung.iter().map(|&c| c as u32).collect(),
                        report,
                    };
                    failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(hang);
                    watch.abort();
                    stop.store(true, Ordering::Relaxed);
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        for h in handles {
            match h.join() {
                Ok(m) => merged.merge(m),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        wall = start.elapsed();
    });
    NativeRun {
        metrics: merged,
        wall,
        threads,
        cores,
        pinned,
        oversubscribed,
        ops: done_ops.load(Ordering::Relaxed),
        failure: failure.into_inner().unwrap_or_else(|p| p.into_inner()),
    }
}

/// Where the CPUs wait until all are ready, and learn when the run
/// started. The starting thread takes the time as it opens the gate, so
/// the run's limit counts from the moment the CPUs are released, however
/// late any thread (the starter included) is scheduled afterwards.
#[derive(Default)]
struct StartGate {
    /// CPUs arrived, and the start once the gate is open.
    state: Mutex<(usize, Option<Instant>)>,
    /// The starter waits here for the CPUs...
    arrived: Condvar,
    /// ...and the CPUs wait here for the start.
    opened: Condvar,
}

impl StartGate {
    /// A CPU is ready: wait for the gate to open and return the start.
    fn arrive(&self) -> Instant {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0 += 1;
        self.arrived.notify_one();
        loop {
            if let Some(start) = state.1 {
                return start;
            }
            state = self.opened.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Wait until `cpus` CPUs have arrived, then open the gate: returns
    /// the start.
    fn open(&self, cpus: usize) -> Instant {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while state.0 < cpus {
            state = self.arrived.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        let start = Instant::now();
        state.1 = Some(start);
        self.opened.notify_all();
        start
    }
}

/// Some CPU did not return long after its run was abandoned: it loops in
/// code that never waits, tries a lock or pauses, and a thread cannot be
/// stopped from outside. Print what is known and end the process.
#[cold]
fn unstoppable(watch: &Watch, failure: &Mutex<Option<RunFailure>>, mm: &Mm, roles: &[Role], monitor: &Monitor) -> ! {
    use std::io::Write as _;
    let stuck = watch.still_running();
    // Written whether or not stderr is still open: the process ends next.
    let mut stderr = std::io::stderr().lock();
    if let Some(f) = &*failure.lock().unwrap_or_else(|p| p.into_inner()) {
        for line in f.lines() {
            let _ = writeln!(stderr, "{line}");
        }
    }
    for line in monitor.report(watch, mm, roles, &stuck) {
        let _ = writeln!(stderr, "{line}");
    }
    let cpus: Vec<String> = stuck.iter().map(|c| format!("CPU {c}")).collect();
    let _ = writeln!(
        stderr,
        "error: {} did not return after the run was abandoned: it loops in code that never waits for a lock, \
         tries one or pauses, and a thread cannot be stopped from outside; exiting (results of this command \
         are lost: run the misbehaving policy on its own)",
        cpus.join(", ")
    );
    std::process::exit(1)
}
