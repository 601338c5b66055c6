//! Engines: who decides when a model CPU runs, and what time it is.
//!
//! The same policy and actor code runs on every engine; an engine only
//! supplies waiting (a spinning waiter, a sleeping waiter), the clock, and
//! the points where another CPU may be scheduled. This module holds what
//! a CPU sees of its engine: the [`CpuEngine`] trait and its two
//! implementations, [`Native`] (an OS thread per model CPU, whose
//! scheduling points compile to nothing) and [`Controlled`] (a coroutine
//! whose every scheduling point may hand the CPU to another). The loops
//! that drive them are above the policy context: [`crate::native`] and
//! [`crate::controlled`].

mod controlled;
mod native;

pub(crate) use controlled::{Clock, CostClock, Resume, Shared, StallGuard, Suspend};
pub use controlled::{Controlled, STALL_CALLS, STALL_WATCH};
pub use native::Native;

use crate::cost::Cost;
use crate::event::{Event, Step};
use std::sync::Arc;

mod sealed {
    /// Only this crate's engines implement [`super::CpuEngine`] (and
    /// [`crate::kernel::Engine`], which dispatches a policy to each by name).
    pub trait Sealed {}
}
pub(crate) use sealed::Sealed;

/// What a model CPU runs on.
pub trait CpuEngine: Sealed + Sized {
    /// Recorded in results ("native").
    const NAME: &'static str;
    /// Whether [`CpuEngine::sched_point`] does anything (lets the native engine
    /// skip building events at compile time).
    const PREEMPTS: bool;

    /// Time now, ns (wall clock or virtual).
    fn now_ns(&mut self) -> u64;
    /// Busy-wait until `ready` (a spinlock waiter: burns its CPU); `on` says
    /// what for. `ready` may take what it waits for (a hand-off) and is not
    /// called again once it returned true. When it returns false it must
    /// leave the model as it found it: the exhaustive checker forgets what
    /// a failed look touched ([`crate::footprint::Recording::end_probe`]).
    fn spin_until(&mut self, on: Event, ready: impl FnMut() -> bool);
    /// Block until `ready` (a sleeping lock: gives its CPU away).
    fn sleep_until(&mut self, on: Event, ready: impl FnMut() -> bool);
    /// Keep the CPU busy for `ns` (work done while holding a lock, say).
    fn busy_wait(&mut self, ns: u64);
    /// Give the CPU away for `ns` (an actor's think time between operations).
    fn idle(&mut self, ns: u64);
    /// Charge `n` times the cost of `cost` to this CPU's clock. Only the
    /// simulation engine keeps such a clock; the others ignore it.
    #[inline(always)]
    fn charge(&mut self, cost: Cost, n: u64) {
        let _ = (cost, n);
    }
    /// Another CPU may run here.
    fn sched_point(&mut self, cpu: u32, ev: Event);
    /// Record `ev` for a timeline (engines that keep none ignore it).
    fn trace(&mut self, cpu: u32, ev: Event);
    /// The CPU reached a named step of a collapse.
    fn step(&mut self, cpu: u32, step: Step);
}

/// A test hook: called on the collapsing CPU at every step; may block to
/// force an interleaving.
pub type StepHook = Arc<dyn Fn(u32, Step) + Send + Sync>;
