//! `mmap_lock` and `i_mmap_rwsem` as the primitives take them: sleeping
//! reader-writer locks ([`crate::rwsem`]) with the kernel's names, timed
//! into the CPU's role under their own lock classes
//! ([`LockClass::MmapLock`], [`LockClass::IMmapRwsem`]), so that a run
//! reports how long faults waited for a collapse that held `mmap_lock`
//! for write (the latency v6.6 removed).

use super::primitives::{Cx, RwsemHeld};
use crate::engine::CpuEngine;
use crate::event::Event;
use crate::locks::LockClass;
use crate::oracle::Oracle;
use crate::rwsem::RwSem;

impl<'a, E: CpuEngine> Cx<'a, E> {
    fn rwsem(&self, class: LockClass) -> &'a RwSem {
        match class {
            LockClass::MmapLock => &self.mm.mmap_lock,
            LockClass::IMmapRwsem => &self.mm.i_mmap_rwsem,
            spin => unreachable!("{} is a spinlock class", spin.name()),
        }
    }

    /// `down_read()` / `down_write()` of `class`'s semaphore: may sleep.
    fn down(&mut self, class: LockClass, write: bool) {
        let what = if write { "down_write" } else { "down_read" };
        self.might_sleep(what);
        if self.rwsems.iter().any(|h| h.class == class) {
            // Recursive read or write of one rwsem: the kernel deadlocks
            // (read) or may deadlock behind a queued writer (write).
            self.violation(Oracle::LockOrder, format!("{what}({}) by a CPU that already holds it", class.name()));
        }
        let (sem, cpu) = (self.rwsem(class), self.cpu);
        self.engine.sched_point(cpu, Event::Down(class, write));
        let t0 = self.engine.now_ns();
        let mut waited = false;
        if write {
            if !sem.try_claim_write(cpu) {
                waited = true;
                self.engine.sleep_until(Event::Down(class, true), || sem.try_claim_write(cpu));
            }
            if !sem.readers_gone(cpu) {
                waited = true;
                self.engine.sleep_until(Event::Down(class, true), || sem.readers_gone(cpu));
            }
        } else if !sem.try_read(cpu) {
            waited = true;
            sem.queue_reader();
            self.engine.sleep_until(Event::Down(class, false), || sem.no_writer() && sem.try_read(cpu));
            sem.dequeue_reader();
        }
        let now = self.engine.now_ns();
        if waited {
            self.metrics.record_wait(self.role, class, now - t0);
        }
        self.rwsems.push(RwsemHeld { class, write, since: now });
        self.engine.trace(cpu, Event::Down(class, write));
    }

    /// `up_read()` / `up_write()`.
    pub(crate) fn up(&mut self, class: LockClass, write: bool) {
        let Some(i) = self.rwsems.iter().rposition(|h| h.class == class && h.write == write) else {
            let how = if write { "write" } else { "read" };
            self.violation(
                Oracle::LockOrder,
                format!("up_{how}({}) by a CPU that does not hold it for {how}", class.name()),
            );
            return;
        };
        let h = self.rwsems.remove(i);
        let sem = self.rwsem(class);
        if write {
            sem.write_unlock();
        } else {
            sem.read_unlock(self.cpu);
        }
        let held = self.engine.now_ns() - h.since;
        self.metrics.record_hold(self.role, class, held);
        self.engine.trace(self.cpu, Event::Up(class, write));
        self.engine.sched_point(self.cpu, Event::Up(class, write));
    }

    /// `mmap_read_lock()`.
    pub fn mmap_read_lock(&mut self) {
        self.down(LockClass::MmapLock, false);
    }

    /// `mmap_read_unlock()`.
    pub fn mmap_read_unlock(&mut self) {
        self.up(LockClass::MmapLock, false);
    }

    /// `mmap_write_lock()`.
    pub fn mmap_write_lock(&mut self) {
        self.down(LockClass::MmapLock, true);
    }

    /// `mmap_write_unlock()`.
    pub fn mmap_write_unlock(&mut self) {
        self.up(LockClass::MmapLock, true);
    }

    /// `mmap_assert_write_locked()`: a `lock-order` violation if this CPU
    /// does not hold `mmap_lock` for write.
    pub fn mmap_assert_write_locked(&self) {
        if !self.holds_for_write(LockClass::MmapLock) {
            self.violation(
                Oracle::LockOrder,
                "mmap_assert_write_locked(): the caller holds mmap_lock for read or not at all".into(),
            );
        }
    }

    /// Whether this CPU holds the reader-writer lock of `class` for write.
    pub(crate) fn holds_for_write(&self, class: LockClass) -> bool {
        self.rwsems.iter().any(|h| h.class == class && h.write)
    }

    /// `i_mmap_lock_read()` of the file's mapping.
    pub fn i_mmap_lock_read(&mut self) {
        self.down(LockClass::IMmapRwsem, false);
    }

    /// `i_mmap_unlock_read()`.
    pub fn i_mmap_unlock_read(&mut self) {
        self.up(LockClass::IMmapRwsem, false);
    }

    /// `i_mmap_lock_write()` of the file's mapping.
    pub fn i_mmap_lock_write(&mut self) {
        self.down(LockClass::IMmapRwsem, true);
    }

    /// `i_mmap_unlock_write()`.
    pub fn i_mmap_unlock_write(&mut self) {
        self.up(LockClass::IMmapRwsem, true);
    }
}
