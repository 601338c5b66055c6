//! What each CPU of a native run publishes for the watchdog
//! ([`crate::watchdog`]): operations finished, the collapse step, what it
//! waits for, on a cache line of its own; and the abort flag every CPU
//! checks at its waits, trylocks and pauses.

use crate::event::{Event, Step};
use crate::locks::LockId;
use crate::pte::Pfn;
use crossbeam::utils::CachePadded;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// The payload a CPU unwinds with when the watchdog abandons its run.
/// Private to the engine: the CPU's thread catches it, and it is never
/// reported as a panic.
pub(crate) struct Abandoned;

/// Unwind out of the current operation: the run was abandoned.
/// `resume_unwind` does not call the panic hook, so nothing is printed.
#[cold]
pub(crate) fn abandon() -> ! {
    std::panic::resume_unwind(Box::new(Abandoned))
}

/// What one model CPU publishes for the monitor.
#[derive(Default)]
struct CpuLine {
    /// Operations finished.
    ops: AtomicU64,
    /// What it waits for now, [`encode`]d; 0 when not waiting.
    waiting: AtomicU64,
    /// The collapse step last marked, `Step as u8 + 1`; 0 before any.
    step: AtomicU8,
    /// The CPU's thread has returned (or unwound out of its loop).
    exited: AtomicBool,
    /// The CPU is panicking: its report is on its way.
    panicking: AtomicBool,
}

/// The shared state of one watched run: an abort flag and a line per CPU.
pub struct Watch {
    abort: AtomicBool,
    cpus: Box<[CachePadded<CpuLine>]>,
}

impl Watch {
    /// A watch over `cpus` model CPUs.
    pub fn new(cpus: usize) -> Watch {
        Watch { abort: AtomicBool::new(false), cpus: (0..cpus).map(|_| CachePadded::default()).collect() }
    }

    /// Tell every CPU to unwind at its next wait, trylock or pause.
    pub fn abort(&self) {
        self.abort.store(true, Ordering::Relaxed);
    }

    /// Whether the run was abandoned.
    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// CPU `cpu` finished an operation (a relaxed store to its own line).
    #[inline]
    pub fn op_done(&self, cpu: usize) {
        let line = &self.cpus[cpu];
        line.ops.store(line.ops.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// CPU `cpu` has started to panic (called from the panic hook, before
    /// the backtrace): it is not hung, and the CPUs waiting behind it are
    /// not either; the panic's report abandons the run.
    pub fn panicking(&self, cpu: usize) {
        self.cpus[cpu].panicking.store(true, Ordering::Relaxed);
    }

    /// CPU `cpu`'s thread has left its loop: it is not watched any more.
    pub fn exited(&self, cpu: usize) {
        self.cpus[cpu].exited.store(true, Ordering::Relaxed);
    }

    /// Whether every CPU's thread has left its loop.
    pub fn all_exited(&self) -> bool {
        self.cpus.iter().all(|line| line.exited.load(Ordering::Relaxed))
    }

    /// The CPUs whose threads have not left their loop.
    pub fn still_running(&self) -> Vec<usize> {
        (0..self.cpus.len()).filter(|&cpu| !self.cpus[cpu].exited.load(Ordering::Relaxed)).collect()
    }

    /// CPU `cpu` reached collapse step `step`.
    #[inline]
    pub(crate) fn step(&self, cpu: usize, step: Step) {
        self.cpus[cpu].step.store(step as u8 + 1, Ordering::Relaxed);
    }

    /// Unwind if the run was abandoned.
    #[inline]
    pub(crate) fn check_abort(&self) {
        if self.abort.load(Ordering::Relaxed) {
            abandon();
        }
    }

    /// CPU `cpu` starts waiting for `on`; the wait ends when the guard is
    /// dropped (also when the CPU unwinds out of it).
    pub(crate) fn wait(&self, cpu: usize, on: Event) -> WaitGuard<'_> {
        let line = &self.cpus[cpu];
        line.waiting.store(encode(on), Ordering::Relaxed);
        WaitGuard(line)
    }

    /// Whether some CPU is panicking.
    pub(crate) fn any_panicking(&self) -> bool {
        self.cpus.iter().any(|line| line.panicking.load(Ordering::Relaxed))
    }

    /// Operations CPU `cpu` has finished.
    pub(crate) fn ops(&self, cpu: usize) -> u64 {
        self.cpus[cpu].ops.load(Ordering::Relaxed)
    }

    /// Whether CPU `cpu`'s thread has left its loop.
    pub(crate) fn has_exited(&self, cpu: usize) -> bool {
        self.cpus[cpu].exited.load(Ordering::Relaxed)
    }

    /// The collapse step CPU `cpu` last marked.
    pub(crate) fn step_of(&self, cpu: usize) -> Option<Step> {
        self.cpus[cpu].step.load(Ordering::Relaxed).checked_sub(1).and_then(|s| STEPS.get(s as usize)).copied()
    }

    /// What CPU `cpu` waits for now (a lock, the page lock, a page table).
    pub(crate) fn waiting_for(&self, cpu: usize) -> Option<Event> {
        decode(self.cpus[cpu].waiting.load(Ordering::Relaxed))
    }
}

/// Clears a CPU's "waiting for" when the wait ends.
pub(crate) struct WaitGuard<'a>(&'a CpuLine);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.waiting.store(0, Ordering::Relaxed);
    }
}

const WAIT_LOCK: u64 = 1;
const WAIT_PAGE_LOCK: u64 = 2;
const WAIT_TABLE: u64 = 3;
const WAIT_OTHER: u64 = 4;

/// An event a CPU can wait for, as one word: kind above bit 32, id below.
fn encode(on: Event) -> u64 {
    match on {
        Event::Lock(LockId(id)) => WAIT_LOCK << 32 | id as u64,
        Event::PageLock(Pfn(pfn)) => WAIT_PAGE_LOCK << 32 | pfn as u64,
        Event::TableAlloc => WAIT_TABLE << 32,
        _ => WAIT_OTHER << 32,
    }
}

/// The wait [`encode`] stored, or None when the word says "not waiting"
/// or names something other than a lock, the page lock or a page table.
fn decode(word: u64) -> Option<Event> {
    let id = word as u32;
    match word >> 32 {
        WAIT_LOCK => Some(Event::Lock(LockId(id))),
        WAIT_PAGE_LOCK => Some(Event::PageLock(Pfn(id))),
        WAIT_TABLE => Some(Event::TableAlloc),
        _ => None,
    }
}

/// The collapse steps in declaration order (`step as u8` indexes it).
const STEPS: [Step; 9] = [
    Step::Prologue,
    Step::Check,
    Step::Notify,
    Step::Clear,
    Step::Recheck,
    Step::Account,
    Step::RemoveTable,
    Step::Install,
    Step::Abort,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_listed_in_declaration_order() {
        for (i, step) in STEPS.iter().enumerate() {
            assert_eq!(*step as usize, i, "{step:?}");
        }
    }

    #[test]
    fn waits_round_trip() {
        for on in [Event::Lock(LockId(7)), Event::PageLock(Pfn(0x200)), Event::TableAlloc] {
            assert_eq!(decode(encode(on)), Some(on));
        }
        assert_eq!(decode(0), None);
        assert_eq!(decode(encode(Event::LocklessRead)), None);
    }
}
