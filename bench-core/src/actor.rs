//! What a run runs: one actor per model CPU, and when the run stops.
//! Both run loops ([`crate::native`], [`crate::controlled`]) take these.

use crate::kernel::Cx;
use crate::kernel::Engine;
use crate::results::EndedBy;
use crate::role::Role;
use std::time::Duration;

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

impl Limit {
    /// What ended a run under this limit that made `collapses` collapses.
    pub fn ended_by(self, collapses: u64) -> EndedBy {
        match self {
            Limit::Duration(_) => EndedBy::Duration,
            Limit::Ops { ops, .. } if collapses >= ops => EndedBy::Ops,
            Limit::Ops { .. } => EndedBy::TimeCap,
        }
    }
}
