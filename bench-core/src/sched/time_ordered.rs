//! The simulation's scheduler: the earliest virtual clock runs.

use super::{Runnable, Scheduler};
use crate::cost::CostTable;

/// On a cost clock charged by its table, the runnable CPU with the
/// earliest clock runs (ties: the lowest CPU number), and the loop lets
/// it go on until its clock passes the next one's. There is no
/// randomness: a run is a function of the configuration, the actors'
/// seeds and the table.
pub struct TimeOrdered {
    costs: CostTable,
}

impl TimeOrdered {
    /// Charge `costs`.
    pub fn new(costs: CostTable) -> TimeOrdered {
        TimeOrdered { costs }
    }
}

impl Scheduler for TimeOrdered {
    fn next(&mut self, runnable: &[Runnable], _step: u64) -> Option<u32> {
        // Under a cost clock the set comes earliest first.
        runnable.first().map(|r| r.cpu)
    }

    fn costs(&self) -> Option<&CostTable> {
        Some(&self.costs)
    }
}
