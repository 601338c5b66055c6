//! The free list of a pool of numbered things, the anonymous frames and
//! the PTE-table slots: first every number never handed out, in order,
//! then the numbers given back, in the order given back (one FIFO).
//!
//! The never-handed-out part is a counter, not a queue: a model of
//! thousands of frames is built without queueing each, and what lies past
//! the counter has never been touched, so a reused mapping needs zeroing
//! only below it ([`crate::recycle::AnonMap::written_below`]).

use crossbeam::queue::SegQueue;
use std::sync::atomic::{AtomicU32, Ordering};

/// The free list of the numbers `first..end`.
pub(crate) struct FreeNumbers {
    /// The lowest number never handed out.
    fresh: AtomicU32,
    end: u32,
    /// The numbers given back, oldest first.
    returned: SegQueue<u32>,
}

impl FreeNumbers {
    /// Every number of `first..end` free.
    pub(crate) fn new(first: u32, end: u32) -> FreeNumbers {
        FreeNumbers { fresh: AtomicU32::new(first), end, returned: SegQueue::new() }
    }

    /// The head of the list: a number never handed out while any is left,
    /// then the one given back longest ago; None when all are out.
    pub(crate) fn take(&self) -> Option<u32> {
        let mut next = self.fresh.load(Ordering::Relaxed);
        while next < self.end {
            match self.fresh.compare_exchange_weak(next, next + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(next),
                Err(now) => next = now,
            }
        }
        self.returned.pop()
    }

    /// Give `n` back (the caller has checked that it was out).
    pub(crate) fn give_back(&self, n: u32) {
        self.returned.push(n);
    }

    /// The numbers handed out at least once end below this.
    pub(crate) fn touched_below(&self) -> u32 {
        self.fresh.load(Ordering::Relaxed)
    }

    /// Numbers out now, of those from `first`.
    pub(crate) fn out(&self, first: u32) -> usize {
        (self.touched_below() - first) as usize - self.returned.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_never_handed_out_come_first_then_those_given_back_in_order() {
        let free = FreeNumbers::new(10, 13);
        assert_eq!([free.take(), free.take()], [Some(10), Some(11)]);
        free.give_back(11);
        free.give_back(10);
        assert_eq!((free.out(10), free.touched_below()), (0, 12));
        assert_eq!([free.take(), free.take(), free.take(), free.take()], [Some(12), Some(11), Some(10), None]);
        assert_eq!((free.out(10), free.touched_below()), (3, 13));
    }
}
