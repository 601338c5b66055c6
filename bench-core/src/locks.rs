//! The model's spinlocks: a fair FIFO lock on two atomics, the ids the
//! model names them by, and their lockdep classes.
//!
//! The kernel's `spinlock_t` is a queued spinlock (qspinlock): FIFO hand-off,
//! waiters spin on their own MCS node. This model uses a ticket lock: the same
//! FIFO hand-off order, so hold and wait figures have the kernel's shape, but
//! waiters spin on one shared line. That is a simplification of cache traffic
//! under heavy contention only; who gets the lock next is the same.
//!
//! The lock itself only knows tickets. Waiting is done by the engine
//! ([`crate::engine::CpuEngine::spin_until`]) so a controlled or simulated engine can
//! decide who runs while a CPU spins. Statistics live on the lock's own cache
//! line and are written only by the holder.

use crate::footprint::{AtomicU32, AtomicU64};
use enum_map::Enum;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use strum::{EnumCount, EnumIter, IntoStaticStr};

/// Identifies a model spinlock.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockId(pub u32);

/// Lock classes, as lockdep sees them.
#[derive(
    Copy,
    Clone,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    Enum,
    EnumCount,
    EnumIter,
    IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
pub enum LockClass {
    /// `mm->page_table_lock` (pml and/or ptl when locks are not split).
    #[strum(serialize = "page_table_lock")]
    PageTableLock = 0,
    /// Split PMD lock (`pml`), one per PMD table.
    #[strum(serialize = "pml")]
    PmdLock = 1,
    /// Split PTE lock (`ptl`), one per PTE table.
    #[strum(serialize = "ptl")]
    PteLock = 2,
    /// `mm->mmap_lock`, a sleeping reader-writer lock ([`crate::rwsem`]):
    /// no spinlock id is of this class; it names its wait and hold figures.
    #[strum(serialize = "mmap_lock")]
    MmapLock = 3,
    /// The file's `i_mmap_rwsem`, likewise.
    #[strum(serialize = "i_mmap_rwsem")]
    IMmapRwsem = 4,
}

impl LockClass {
    /// Short name.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// A ticket spinlock with per-lock statistics.
#[repr(align(64))]
#[derive(Default)]
pub struct SpinLock {
    next: AtomicU32,
    owner: AtomicU32,
    /// CPU number + 1 of the holder, 0 when free (for "unlock by non-holder").
    holder: AtomicU32,
    /// CPU number + 1 of the last CPU to take it, kept after release (the
    /// simulation charges a cache-line transfer when it changes).
    last: AtomicU32,
    acquisitions: AtomicU64,
    contended: AtomicU64,
    wait_ns: AtomicU64,
    hold_ns: AtomicU64,
}

/// Totals a lock has recorded since creation.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockStats {
    /// Successful acquisitions (plain, nested or trylock).
    pub acquisitions: u64,
    /// Acquisitions that had to wait.
    pub contended: u64,
    /// Total time spent waiting, ns.
    pub wait_ns: u64,
    /// Total time held, ns.
    pub hold_ns: u64,
}

impl SpinLock {
    /// Take a ticket; the caller then waits until [`SpinLock::is_turn`].
    pub(crate) fn take_ticket(&self) -> u32 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether `ticket` now owns the lock (Acquire: the holder's writes are visible).
    pub(crate) fn is_turn(&self, ticket: u32) -> bool {
        self.owner.load(Ordering::Acquire) == ticket
    }

    /// Take the lock only if it is free right now.
    pub(crate) fn try_acquire(&self) -> bool {
        let owner = self.owner.load(Ordering::Relaxed);
        self.next.compare_exchange(owner, owner.wrapping_add(1), Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    /// Record the new holder and its wait; called by the holder just after acquiring.
    pub(crate) fn note_acquired(&self, cpu: u32, waited_ns: Option<u64>) {
        self.holder.store(cpu + 1, Ordering::Relaxed);
        self.last.store(cpu + 1, Ordering::Relaxed);
        bump(&self.acquisitions, 1);
        if let Some(w) = waited_ns {
            bump(&self.contended, 1);
            bump(&self.wait_ns, w);
        }
    }

    /// Release; called by the holder. `held_ns` is added to the statistics first.
    pub(crate) fn release(&self, held_ns: u64) {
        bump(&self.hold_ns, held_ns);
        self.holder.store(0, Ordering::Relaxed);
        let owner = self.owner.load(Ordering::Relaxed);
        self.owner.store(owner.wrapping_add(1), Ordering::Release);
    }

    /// Whether some CPU holds the lock.
    pub fn is_locked(&self) -> bool {
        self.next.load(Ordering::Relaxed) != self.owner.load(Ordering::Relaxed)
    }

    /// CPUs queued behind the holder.
    pub fn waiters(&self) -> u32 {
        let next = self.next.load(Ordering::Relaxed);
        let owner = self.owner.load(Ordering::Relaxed);
        next.wrapping_sub(owner).saturating_sub(1)
    }

    /// The holding CPU, if any.
    pub fn holder(&self) -> Option<u32> {
        self.holder.load(Ordering::Relaxed).checked_sub(1)
    }

    /// The CPU that took the lock last (held now or not).
    pub fn previous_holder(&self) -> Option<u32> {
        self.last.load(Ordering::Relaxed).checked_sub(1)
    }

    /// Totals so far.
    pub fn stats(&self) -> LockStats {
        LockStats {
            acquisitions: self.acquisitions.load(Ordering::Relaxed),
            contended: self.contended.load(Ordering::Relaxed),
            wait_ns: self.wait_ns.load(Ordering::Relaxed),
            hold_ns: self.hold_ns.load(Ordering::Relaxed),
        }
    }
}

/// Add to a counter only the lock holder writes: a plain load and store, no locked RMW.
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Ordering::Relaxed) + by, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_hand_over_in_order() {
        let l = SpinLock::default();
        let a = l.take_ticket();
        assert!(l.is_turn(a));
        let b = l.take_ticket();
        assert!(!l.is_turn(b));
        assert_eq!(l.waiters(), 1);
        assert!(!l.try_acquire());
        l.release(5);
        assert!(l.is_turn(b));
        l.release(5);
        assert!(!l.is_locked());
        assert!(l.try_acquire());
        assert!(l.is_locked());
        assert_eq!(l.stats().hold_ns, 10);
    }
}
