//! The native engine: one OS thread per model CPU, wall-clock time, real
//! spinning. Its scheduling points compile to nothing but the checks that
//! let a watched run be abandoned.

use super::{CpuEngine, Sealed, StepHook};
use crate::event::{Event, Step};
use crate::watch::Watch;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Native engine: one OS thread per model CPU, wall-clock time.
pub struct Native {
    base: Instant,
    hook: Option<StepHook>,
    yield_while_spinning: bool,
    watch: Option<(Arc<Watch>, usize)>,
    /// Where this CPU's events go, when someone reads them back
    /// ([`Native::recorded`]).
    record: Option<Arc<Mutex<Vec<Event>>>>,
}

impl Native {
    /// A native engine whose clock starts at `base`. With
    /// `oversubscribed`, spinning waiters yield their OS CPU now and then so
    /// a preempted lock holder can run (the kernel would not; see the
    /// README on oversubscription).
    pub fn new(base: Instant, hook: Option<StepHook>, oversubscribed: bool) -> Self {
        Native { base, hook, yield_while_spinning: oversubscribed, watch: None, record: None }
    }

    /// Run as CPU `cpu` under `watch`: publish the collapse step and what
    /// the CPU waits for, and unwind (with the watchdog's private payload)
    /// at the next wait, trylock or pause once the run is abandoned.
    pub fn watched(mut self, watch: Arc<Watch>, cpu: u32) -> Self {
        self.watch = Some((watch, cpu as usize));
        self
    }

    /// This CPU with its events (the locks it takes and drops, the page
    /// operations, the entries and PMDs it clears and sets, its flushes
    /// and frees and the collapse's steps, in order) appended to `log`:
    /// the sequence of primitive calls two policies are compared by. Not
    /// the lockless reads: natively they are no events.
    pub fn recorded(mut self, log: Arc<Mutex<Vec<Event>>>) -> Self {
        self.record = Some(log);
        self
    }

    #[inline(always)]
    fn note(&self, ev: Event) {
        if let Some(log) = &self.record {
            append(log, ev);
        }
    }

    /// Unwind if the watched run was abandoned.
    #[inline]
    fn check_abort(&self) {
        if let Some((watch, _)) = &self.watch {
            watch.check_abort();
        }
    }
}

impl CpuEngine for Native {
    const NAME: &'static str = "native";
    const PREEMPTS: bool = false;

    #[inline]
    fn now_ns(&mut self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    #[inline]
    fn spin_until(&mut self, on: Event, mut ready: impl FnMut() -> bool) {
        if ready() {
            return;
        }
        let _waiting = self.watch.as_ref().map(|(watch, cpu)| watch.wait(*cpu, on));
        let mut spins = 0u32;
        while !ready() {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(128) {
                if self.yield_while_spinning {
                    std::thread::yield_now();
                }
                self.check_abort();
            }
        }
    }

    fn sleep_until(&mut self, on: Event, mut ready: impl FnMut() -> bool) {
        if ready() {
            return;
        }
        let _waiting = self.watch.as_ref().map(|(watch, cpu)| watch.wait(*cpu, on));
        let mut spins = 0u32;
        while !ready() {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                self.check_abort();
                std::thread::yield_now();
            }
        }
    }

    fn busy_wait(&mut self, ns: u64) {
        let end = self.now_ns().saturating_add(ns);
        let mut spins = 0u32;
        while self.now_ns() < end {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                self.check_abort();
            }
        }
    }

    fn idle(&mut self, ns: u64) {
        // Sleeping has ~50 us granularity: spin through short pauses.
        if ns < 20_000 {
            self.busy_wait(ns);
        } else {
            self.check_abort();
            std::thread::sleep(std::time::Duration::from_nanos(ns));
            self.check_abort();
        }
    }

    /// Nothing to schedule; a trylock (which a policy may retry in a loop
    /// that never waits) is where an abandoned run is noticed.
    #[inline(always)]
    fn sched_point(&mut self, _cpu: u32, ev: Event) {
        match ev {
            Event::Trylock(..) => self.check_abort(),
            Event::PageOp(_) => self.note(ev),
            _ => {}
        }
    }

    #[inline(always)]
    fn trace(&mut self, _cpu: u32, ev: Event) {
        self.note(ev);
    }

    #[inline]
    fn step(&mut self, cpu: u32, step: Step) {
        if let Some((watch, me)) = &self.watch {
            watch.step(*me, step);
        }
        if let Some(hook) = &self.hook {
            hook(cpu, step);
        }
    }
}

impl Sealed for Native {}

/// Out of line, so that a CPU that records nothing pays a test and a
/// branch per event in its hot loops, not the code of a lock and a push.
#[cold]
#[inline(never)]
fn append(log: &Mutex<Vec<Event>>, ev: Event) {
    log.lock().unwrap_or_else(|e| e.into_inner()).push(ev);
}
