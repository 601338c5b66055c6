//! Schedulers: who runs next in the controlled run loop
//! ([`crate::controlled`]).
//!
//! Whenever the running CPU stops, the loop hands a [`Scheduler`] the
//! set of CPUs that can run and the number of choices made so far, and
//! resumes the CPU it names until that one stops in turn. A scheduler sees nothing
//! else of the run: what each CPU waits for, and when a waiter can go on,
//! is the loop's business. The shape is shuttle's (awslabs), kept small:
//! one method that picks, and one that says which clock the CPUs keep.
//!
//! # The contract
//!
//! - [`Scheduler::next`] is called once per step, with `step` counting
//!   from 0 and `runnable` never empty. It returns one of the CPUs in
//!   `runnable`; `None`, or a CPU that is not in it, ends the run as
//!   [`crate::controlled::End::Diverged`] (a replayed schedule that does
//!   not fit the run).
//! - Each entry carries the CPU's clock as it was when the CPU last
//!   stopped. Clocks never go backwards.
//! - The order of `runnable` is the clock's. Under a step clock (the
//!   default) it is ascending CPU numbers. Under a cost clock
//!   ([`Scheduler::costs`] returns a table) it is earliest clock first,
//!   ties broken by the lower CPU number.
//! - A scheduler is a pure function of how it was built and the calls it
//!   got: same calls, same answers. That is what makes a run replayable.
//!
//! # The clocks
//!
//! Under a step clock a CPU stops at every scheduling point and its clock
//! moves 1 ns per point (plus the busy and idle time the actors ask for);
//! every blocked CPU is asked whether it can go on before each choice,
//! and the choices are kept as the run's schedule. Under a cost clock
//! (the simulation) every primitive charges its cost from the table, a CPU
//! runs on until its clock passes the earliest clock of the other runnable
//! CPUs, and a waiter is asked only when what it waits for is released,
//! waking at the time of the release. No schedule is kept: the run is a
//! function of the configuration and the table.
//!
//! # The schedulers
//!
//! One file each: [`Random`], [`Pct`], [`Replay`] and [`Guided`] are the
//! sampling checker's, on a step clock, and [`Explorer`] the exhaustive
//! checker's, which also sees what each step touched
//! ([`Scheduler::stepped`]); [`TimeOrdered`] is the simulation's, on a
//! cost clock.

mod explore;
mod guided;
mod pct;
mod random;
mod replay;
mod time_ordered;

pub use explore::{Exploration, Explorer};
pub use guided::Guided;
pub use pct::Pct;
pub use random::Random;
pub use replay::Replay;
pub use time_ordered::TimeOrdered;

use crate::cost::CostTable;
use crate::footprint::Footprint;

/// A CPU that can run, as a scheduler sees it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Runnable {
    /// The model CPU.
    pub cpu: u32,
    /// Its clock when it last stopped, ps.
    pub clock_ps: u64,
}

/// Picks the CPU that runs next (see the module documentation for the
/// contract).
pub trait Scheduler {
    /// The CPU to run at step `step`, among `runnable` (never empty, in
    /// the clock's order); `None` ends the run.
    fn next(&mut self, runnable: &[Runnable], step: u64) -> Option<u32>;

    /// The table a cost clock charges, for a scheduler whose CPUs keep
    /// one; `None` (the default): a step clock.
    fn costs(&self) -> Option<&CostTable> {
        None
    }

    /// Whether the loop should record what each step touches and hand it
    /// to [`Scheduler::stepped`] (the [`Explorer`]'s need; on a step
    /// clock only). Default: no.
    fn wants_footprints(&self) -> bool {
        false
    }

    /// Whether step `step` (just chosen by [`Scheduler::next`]) is to be
    /// recorded, when the scheduler wants footprints at all. Default: every
    /// step. The [`Explorer`] already knows the steps of the prefix it
    /// replays (a run is a function of its schedule), and recording costs
    /// more than the step itself.
    fn records_step(&self, _step: u64) -> bool {
        true
    }

    /// What the step just taken by `cpu` (the last one [`Scheduler::next`]
    /// chose) touched, with the probes that followed it: called before
    /// the next call to `next`, and once after the run's last step, for
    /// each step [`Scheduler::records_step`] asked for.
    fn stepped(&mut self, _cpu: u32, _footprint: Footprint) {}
}
