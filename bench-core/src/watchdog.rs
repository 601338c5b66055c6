//! The native engine's watchdog: the hung-task detector of a run, and the
//! "who waits for what, who holds it" description it shares with the
//! controlled engine's deadlock report.
//!
//! Every model CPU thread of a native run publishes, on a cache line of
//! its own ([`Watch`]), how many operations it has finished, the collapse
//! step it is at, and — only while it waits, which is already the slow
//! path — what it waits for (a contended spinlock, the page lock, a page
//! table). The thread that started the run reads every CPU's line a few
//! times per timeout period: O(CPUs) relaxed loads per tick, nothing
//! written by anyone but the line's own CPU, so it works the same on 100
//! cores. A CPU that has finished no operation for the whole timeout is
//! hung: the monitor describes every such CPU as the kernel's hung-task
//! detector does (`INFO: task ... blocked for more than N seconds`, then
//! `Showing all locks held in the system`), raises the abort flag, and
//! every CPU that waits, tries a lock or pauses notices it and unwinds
//! with a private payload (`Abandoned`) that its thread catches, so the
//! run ends and the process goes on with the next one.
//!
//! A CPU that loops in a policy's own code without ever waiting, trying a
//! lock or pausing cannot be reached from outside its thread; the native
//! runner reports it and ends the process (see [`crate::native`]).

use crate::engine::{Event, Step};
use crate::metrics::Role;
use crate::mm::{LockId, Mm};
use crate::pte::Pfn;
use crossbeam::utils::CachePadded;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// The watchdog timeout when none is given: long enough that a preempted
/// lock holder on an oversubscribed machine, or an actor pausing for its
/// longest allowed pace (1 s), never looks hung.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest timeout accepted.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// The longest timeout accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

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

/// "CPU 1 (collapse)", or "CPU 1" when the role is not known.
fn cpu_name(cpu: u32, roles: &[Role]) -> String {
    match roles.get(cpu as usize) {
        Some(role) => format!("CPU {cpu} ({role})"),
        None => format!("CPU {cpu}"),
    }
}

/// What a blocked CPU waits for, and who holds it: `pml (PMD table 0)
/// held by CPU 1 (collapse)`. The page lock and page tables do not record
/// a holder. Shared by the controlled engine's deadlock report and the
/// native watchdog.
pub fn describe_wait(mm: &Mm, on: Event, roles: &[Role]) -> String {
    match on {
        Event::Lock(id) => {
            let holder = mm.lock(id).holder().map_or("nobody".to_owned(), |h| cpu_name(h, roles));
            format!("{} held by {holder}", mm.lock_name(id))
        }
        Event::PageLock(pfn) => format!("page lock of {pfn}"),
        Event::TableAlloc => "a free page table".to_owned(),
        other => format!("{other:?}"),
    }
}

/// The locks CPU `cpu` holds now, by name (a scan of every lock: for
/// reports only).
pub fn locks_held_by(mm: &Mm, cpu: u32) -> Vec<String> {
    mm.lock_stats().filter(|&(id, _, _)| mm.lock(id).holder() == Some(cpu)).map(|(id, _, _)| mm.lock_name(id)).collect()
}

/// What the monitor remembers of one CPU between ticks.
#[derive(Clone, Copy)]
struct Seen {
    ops: u64,
    since: Instant,
}

/// The monitor: call [`Monitor::tick`] every [`Monitor::period`] from the
/// thread that runs the CPUs.
pub struct Monitor {
    timeout: Duration,
    seen: Vec<Seen>,
    /// How long a panicking CPU holds off the hang reports ([`PANIC_GRACE`]).
    panic_grace: Duration,
    /// When a CPU was first seen panicking.
    panicking_since: Option<Instant>,
}

/// How long a panic may take to be reported (a backtrace symbolised on a
/// loaded machine) before the monitor looks for hangs again: a CPU whose
/// unwinding blocks, say in a drop waiting for another CPU's lock, is
/// then reported like any other.
pub const PANIC_GRACE: Duration = Duration::from_secs(30);

impl Monitor {
    /// A monitor of `cpus` CPUs that calls a CPU hung after `timeout`
    /// without finishing an operation.
    pub fn new(cpus: usize, timeout: Duration) -> Monitor {
        Monitor {
            timeout,
            seen: vec![Seen { ops: 0, since: Instant::now() }; cpus],
            panic_grace: PANIC_GRACE,
            panicking_since: None,
        }
    }

    /// How often to tick: ten times per timeout, at most every 100 ms.
    pub fn period(&self) -> Duration {
        (self.timeout / 10).min(Duration::from_millis(100))
    }

    /// Look at every CPU whose thread has not exited; return the hung
    /// ones (none finished an operation for the timeout), or an empty list.
    /// While a CPU is panicking nobody is called hung: whatever waits
    /// waits behind the panicking CPU's locks, and the panic ends the run
    /// (for up to [`PANIC_GRACE`]).
    pub fn tick(&mut self, watch: &Watch) -> Vec<usize> {
        let now = Instant::now();
        if watch.cpus.iter().any(|line| line.panicking.load(Ordering::Relaxed)) {
            let since = *self.panicking_since.get_or_insert(now);
            if now.duration_since(since) < self.panic_grace {
                return vec![];
            }
        }
        let mut hung = vec![];
        for (cpu, seen) in self.seen.iter_mut().enumerate() {
            let line = &watch.cpus[cpu];
            let ops = line.ops.load(Ordering::Relaxed);
            if ops != seen.ops || line.exited.load(Ordering::Relaxed) {
                *seen = Seen { ops, since: now };
            } else if now.duration_since(seen.since) >= self.timeout {
                hung.push(cpu);
            }
        }
        hung
    }

    /// The hung-task report of `hung` CPUs: for each, that it finished
    /// nothing for the timeout, at which collapse step it is, and what it waits for and who holds
    /// that (or that it waits for nothing: looping in its own code); then
    /// the other CPUs waiting now (blocked later, behind a hung one); then
    /// every lock held, by CPU. One line per item, the kernel's wording.
    pub fn report(&self, watch: &Watch, mm: &Mm, roles: &[Role], hung: &[usize]) -> Vec<String> {
        let mut lines = vec![];
        for &cpu in hung {
            let role = roles.get(cpu).map_or("cpu", |r| r.name());
            lines.push(format!(
                "INFO: task {role}:CPU{cpu} blocked for more than {} seconds.",
                self.timeout.as_secs_f64()
            ));
            let line = &watch.cpus[cpu];
            let step = line.step.load(Ordering::Relaxed).checked_sub(1).and_then(|s| STEPS.get(s as usize));
            if let (Some(step), Some(Role::Collapse)) = (step, roles.get(cpu)) {
                lines.push(format!("      at {}", step.label()));
            }
            match decode(line.waiting.load(Ordering::Relaxed)) {
                Some(on) => lines.push(format!("      waiting for {}", describe_wait(mm, on, roles))),
                None => lines.push("      not waiting for a lock: looping or stuck in its own code".to_owned()),
            }
        }
        // CPUs that wait too, but not yet for the whole timeout (they
        // blocked later, behind a hung one): the other half of the picture.
        let waiting: Vec<(usize, Event)> = (0..self.seen.len())
            .filter(|cpu| !hung.contains(cpu))
            .filter_map(|cpu| decode(watch.cpus[cpu].waiting.load(Ordering::Relaxed)).map(|on| (cpu, on)))
            .collect();
        if !waiting.is_empty() {
            lines.push("Other CPUs waiting:".to_owned());
            for (cpu, on) in waiting {
                let role = roles.get(cpu).map_or("cpu", |r| r.name());
                lines.push(format!("{role}/CPU{cpu} waiting for {}", describe_wait(mm, on, roles)));
            }
        }
        lines.push("Showing all locks held in the system:".to_owned());
        let mut any = false;
        for cpu in 0..self.seen.len() as u32 {
            let held = locks_held_by(mm, cpu);
            if held.is_empty() {
                continue;
            }
            any = true;
            let role = roles.get(cpu as usize).map_or("cpu", |r| r.name());
            let n = held.len();
            lines.push(format!("{n} lock{} held by {role}/CPU{cpu}:", if n == 1 { "" } else { "s" }));
            for (i, name) in held.iter().enumerate() {
                lines.push(format!(" #{i}: {name}"));
            }
        }
        if !any {
            lines.push("no spinlock held".to_owned());
        }
        lines
    }
}

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

    #[test]
    fn a_cpu_that_finishes_nothing_for_the_timeout_is_hung() {
        let watch = Watch::new(2);
        let mut monitor = Monitor::new(2, Duration::from_millis(30));
        assert!(monitor.tick(&watch).is_empty());
        std::thread::sleep(Duration::from_millis(40));
        watch.op_done(1);
        assert_eq!(monitor.tick(&watch), [0], "CPU 1 finished an operation");
        watch.exited(0);
        assert!(monitor.tick(&watch).is_empty(), "an exited CPU is not hung");
        assert_eq!(watch.still_running(), [1]);
    }

    #[test]
    fn a_panicking_cpu_holds_off_hang_reports_for_the_grace_only() {
        let watch = Watch::new(2);
        let mut monitor = Monitor::new(2, Duration::from_millis(30));
        monitor.panic_grace = Duration::from_millis(200);
        watch.panicking(0);
        std::thread::sleep(Duration::from_millis(40));
        assert!(monitor.tick(&watch).is_empty(), "CPU 0 is panicking: its report is coming");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(monitor.tick(&watch), [0, 1], "a panic stuck past the grace is a hang");
    }
}
