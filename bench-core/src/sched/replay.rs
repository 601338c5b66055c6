//! Following a recorded schedule exactly.

use super::{Runnable, Scheduler};

/// Step `i` runs the `i`-th CPU of the schedule; the run stops (diverged)
/// where that CPU cannot run or the schedule has ended.
pub struct Replay {
    schedule: Vec<u32>,
}

impl Replay {
    /// Replay `schedule` (a run's [`crate::controlled::ControlledRun::schedule`]).
    pub fn new(schedule: Vec<u32>) -> Replay {
        Replay { schedule }
    }
}

impl Scheduler for Replay {
    fn next(&mut self, _runnable: &[Runnable], step: u64) -> Option<u32> {
        // A CPU that cannot run ends the run in the loop, as diverged.
        self.schedule.get(step as usize).copied()
    }
}
