//! Following a schedule where it can, for shrinking a counterexample.

use super::{Runnable, Scheduler};

/// Step `i` runs the `i`-th CPU of the schedule if it can run; otherwise
/// (or once the schedule has ended) the CPU that ran last, if it can, or
/// else the lowest-numbered runnable CPU. It never stops a run, so any
/// edited schedule gives a run, whose own schedule then replays it.
pub struct Guided {
    schedule: Vec<u32>,
    last: Option<u32>,
}

impl Guided {
    /// Be guided by `schedule`.
    pub fn new(schedule: Vec<u32>) -> Guided {
        Guided { schedule, last: None }
    }
}

impl Scheduler for Guided {
    fn next(&mut self, runnable: &[Runnable], step: u64) -> Option<u32> {
        let cpu = [self.schedule.get(step as usize).copied(), self.last]
            .into_iter()
            .flatten()
            .find(|&c| runnable.iter().any(|r| r.cpu == c))
            .unwrap_or(runnable[0].cpu);
        self.last = Some(cpu);
        Some(cpu)
    }
}
