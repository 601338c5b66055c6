//! Grace periods for page-table freeing (`pte_free_defer`).
//!
//! Lockless walkers (GUP-fast, the hardware walker, `pte_offset_map`) read a
//! table with no lock; the kernel frees a detached table only after an RCU
//! grace period. This is the smallest epoch scheme that gives the same
//! guarantee per *model CPU* (not per OS thread, which is why crossbeam-epoch
//! does not fit: the controlled engine runs many model CPUs on one thread and
//! must reclaim deterministically). The RCU machinery itself is not a
//! modelled lock and takes no part in the lock statistics.

use crate::footprint::AtomicU64;
use crossbeam::utils::CachePadded;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

/// Per-CPU read-side announcements and the queue of deferred frees.
pub struct Rcu {
    epoch: AtomicU64,
    /// Epoch each CPU entered its read-side section at; 0 when outside.
    readers: Box<[CachePadded<AtomicU64>]>,
    pending: Mutex<VecDeque<(u64, u32)>>,
}

impl Rcu {
    /// Grace-period tracking for `cpus` CPUs.
    pub fn new(cpus: usize) -> Self {
        Rcu {
            epoch: AtomicU64::new(1),
            readers: (0..cpus).map(|_| CachePadded::new(AtomicU64::new(0))).collect(),
            pending: Mutex::new(VecDeque::new()),
        }
    }

    /// Outermost `rcu_read_lock()` on `cpu`.
    pub(crate) fn enter(&self, cpu: u32) {
        let e = self.epoch.load(Ordering::SeqCst);
        self.readers[cpu as usize].store(e, Ordering::SeqCst);
    }

    /// Outermost `rcu_read_unlock()` on `cpu`.
    pub(crate) fn exit(&self, cpu: u32) {
        self.readers[cpu as usize].store(0, Ordering::SeqCst);
    }

    /// Queue table `slot` (already unlinked from its PMD) and hand back every
    /// queued slot whose grace period has ended.
    pub(crate) fn defer(&self, slot: u32, mut reclaim: impl FnMut(u32)) {
        let e = self.close_epoch();
        crate::footprint::note(&self.pending as *const _ as *const (), true);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.push_back((e, slot));
        self.reclaim_locked(&mut pending, &mut reclaim);
    }

    /// Reclaim whatever is past its grace period (`rcu_barrier`-lite).
    pub(crate) fn reclaim(&self, mut reclaim: impl FnMut(u32)) {
        crate::footprint::note(&self.pending as *const _ as *const (), true);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        self.reclaim_locked(&mut pending, &mut reclaim);
    }

    fn reclaim_locked(&self, pending: &mut VecDeque<(u64, u32)>, reclaim: &mut impl FnMut(u32)) {
        // A reader that entered at epoch r <= e may still see what was freed at e.
        let oldest_reader = self.oldest_reader(None);
        while let Some(&(e, slot)) = pending.front() {
            if e >= oldest_reader {
                break;
            }
            pending.pop_front();
            reclaim(slot);
        }
    }

    /// Whether the grace period of `slot`'s deferred free has ended: every
    /// reader that could still see the table has left. A slot not waiting
    /// has no grace period to end (false).
    pub(crate) fn grace_period_over(&self, slot: u32) -> bool {
        crate::footprint::note(&self.pending as *const _ as *const (), false);
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let Some(&(e, _)) = pending.iter().find(|&&(_, s)| s == slot) else { return false };
        drop(pending);
        e < self.oldest_reader(None)
    }

    /// Close the current epoch: returns it. Every reader inside now
    /// entered at or before it; every later one enters after it.
    pub(crate) fn close_epoch(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::SeqCst)
    }

    /// The earliest epoch a reader inside its read side entered at, `cpu`
    /// left out if given (u64::MAX: none inside).
    fn oldest_reader(&self, except: Option<u32>) -> u64 {
        let inside = self.readers.iter().enumerate().filter(|&(cpu, _)| Some(cpu as u32) != except);
        inside.map(|(_, r)| r.load(Ordering::SeqCst)).filter(|&r| r != 0).min().unwrap_or(u64::MAX)
    }

    /// Whether every reader but `me` that entered at or before `epoch` has
    /// left its read side.
    pub(crate) fn readers_before_gone(&self, epoch: u64, me: u32) -> bool {
        epoch < self.oldest_reader(Some(me))
    }

    /// The readers' allocation ([`crate::footprint::Regions`]).
    pub(crate) fn footprint_regions(&self, out: &mut Vec<(usize, usize)>) {
        out.push(crate::footprint::region_of(&self.readers));
    }

    /// Tables still waiting for a grace period.
    pub fn pending(&self) -> usize {
        crate::footprint::note(&self.pending as *const _ as *const (), false);
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_holds_back_reclaim() {
        let rcu = Rcu::new(2);
        let mut freed = vec![];
        rcu.enter(1);
        rcu.defer(7, |s| freed.push(s));
        assert!(freed.is_empty());
        rcu.exit(1);
        rcu.reclaim(|s| freed.push(s));
        assert_eq!(freed, vec![7]);
        rcu.enter(0);
        rcu.defer(8, |s| freed.push(s));
        assert_eq!(freed, vec![7]);
        rcu.exit(0);
        rcu.enter(0); // a reader that entered after the free does not block it
        rcu.reclaim(|s| freed.push(s));
        assert_eq!(freed, vec![7, 8]);
    }
}
