//! The model's reader-writer semaphores: `mm->mmap_lock` and the file's
//! `mapping->i_mmap_rwsem`.
//!
//! Both are sleeping locks (`struct rw_semaphore`): a waiter gives its CPU
//! away ([`crate::engine::CpuEngine::sleep_until`]) instead of spinning.
//! The model keeps one reader flag per CPU and one writer word, so that
//! two readers write no common word and the exhaustive checker does not
//! order them against each other (they do not exclude each other in the
//! kernel either). A reader raises its own flag and then looks for a
//! writer; a writer claims the writer word and then waits for every
//! reader flag to drop. Both sides store before they load (sequentially
//! consistent), so one of any racing pair sees the other and backs off.
//!
//! Waiting is first come, first served between the two sides, as the
//! kernel's queue hands the lock over: a writer claiming the lock holds
//! back readers that come after it, and readers that went to sleep
//! behind a writer get in before the next writer may claim it (else a
//! collapser taking it for write in a loop would starve every fault).
//!
//! Simplification, in DESIGN terms: the kernel's rwsem queues waiters in
//! one FIFO with optimistic spinning and reader batching; the model does
//! not order waiting writers among themselves, nor readers among
//! themselves. Who may hold the lock together with whom is the kernel's;
//! only the order within one side differs.

use crate::footprint::AtomicU32;
use crossbeam::utils::CachePadded;
use std::sync::atomic::Ordering;

/// One reader-writer semaphore over a model's CPUs.
pub struct RwSem {
    /// CPU number + 1 of the writer holding or claiming it, 0 if none.
    writer: CachePadded<AtomicU32>,
    /// 1 while the CPU holds it for read (or is about to look).
    readers: Box<[CachePadded<AtomicU32>]>,
    /// Readers asleep behind a writer: the next writer waits for them.
    queued_readers: CachePadded<AtomicU32>,
}

impl RwSem {
    /// A free semaphore for `cpus` CPUs.
    pub fn new(cpus: usize) -> RwSem {
        RwSem {
            writer: CachePadded::new(AtomicU32::new(0)),
            readers: (0..cpus).map(|_| CachePadded::new(AtomicU32::new(0))).collect(),
            queued_readers: CachePadded::new(AtomicU32::new(0)),
        }
    }

    /// One try at the read side: raise this CPU's flag, then look for a
    /// writer; with one there, drop the flag again and fail.
    pub(crate) fn try_read(&self, cpu: u32) -> bool {
        self.readers[cpu as usize].store(1, Ordering::SeqCst);
        if self.writer.load(Ordering::SeqCst) == 0 {
            return true;
        }
        self.readers[cpu as usize].store(0, Ordering::SeqCst);
        false
    }

    /// Whether no writer holds or claims it (a sleeping reader's wake-up).
    pub(crate) fn no_writer(&self) -> bool {
        self.writer.load(Ordering::SeqCst) == 0
    }

    /// A reader goes to sleep behind a writer ([`RwSem::dequeue_reader`]
    /// when it gets in).
    pub(crate) fn queue_reader(&self) {
        self.queued_readers.fetch_add(1, Ordering::SeqCst);
    }

    /// A reader that slept got in.
    pub(crate) fn dequeue_reader(&self) {
        self.queued_readers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Drop this CPU's read hold.
    pub(crate) fn read_unlock(&self, cpu: u32) {
        self.readers[cpu as usize].store(0, Ordering::SeqCst);
    }

    /// Claim the writer word if free: the first half of a write lock.
    /// Readers that come later back off; those inside are waited for with
    /// [`RwSem::readers_gone`].
    pub(crate) fn try_claim_write(&self, cpu: u32) -> bool {
        self.queued_readers.load(Ordering::SeqCst) == 0
            && self.writer.compare_exchange(0, cpu + 1, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }

    /// Whether every CPU but `cpu` has left the read side.
    pub(crate) fn readers_gone(&self, cpu: u32) -> bool {
        self.readers.iter().enumerate().all(|(c, r)| c == cpu as usize || r.load(Ordering::SeqCst) == 0)
    }

    /// Drop the write hold.
    pub(crate) fn write_unlock(&self) {
        self.writer.store(0, Ordering::SeqCst);
    }

    /// The reader flags' allocation ([`crate::footprint::Regions`]; the
    /// writer word lies inline in its owner, the model mm).
    pub(crate) fn footprint_regions(&self, out: &mut Vec<(usize, usize)>) {
        out.push(crate::footprint::region_of(&self.readers));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_share_and_a_writer_excludes_both_ways() {
        let sem = RwSem::new(3);
        assert!(sem.try_read(0) && sem.try_read(1), "two readers at once");
        assert!(sem.try_claim_write(2), "the writer word is free");
        assert!(!sem.readers_gone(2), "but readers are inside");
        assert!(!sem.try_read(0), "a later reader backs off");
        sem.read_unlock(0);
        sem.read_unlock(1);
        assert!(sem.readers_gone(2));
        assert!(!sem.try_read(1), "no reader while the writer holds it");
        assert!(!sem.try_claim_write(0), "nor a second writer");
        sem.write_unlock();
        assert!(sem.try_read(1) && sem.no_writer());
        sem.read_unlock(1);
        // A reader asleep behind a writer gets in before the next writer.
        assert!(sem.try_claim_write(2));
        sem.queue_reader();
        sem.write_unlock();
        assert!(!sem.try_claim_write(2), "the queued reader goes first");
        assert!(sem.try_read(0));
        sem.dequeue_reader();
        sem.read_unlock(0);
        assert!(sem.try_claim_write(2));
    }
}
