//! The native engine's watchdog: the hung-task detector of a run, and the
//! "who waits for what, who holds it" description it shares with the
//! controlled engine's deadlock report.
//!
//! Every model CPU thread of a native run publishes, on a cache line of
//! its own ([`Watch`], in [`crate::watch`]), how many operations it has finished, the collapse
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

use crate::event::Event;
use crate::mm::Mm;
use crate::role::Role;
use crate::watch::Watch;
use std::time::{Duration, Instant};

/// The watchdog timeout when none is given: long enough that a preempted
/// lock holder on an oversubscribed machine, or an actor pausing for its
/// longest allowed pace (1 s), never looks hung.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest timeout accepted.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// The longest timeout accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

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
        if watch.any_panicking() {
            let since = *self.panicking_since.get_or_insert(now);
            if now.duration_since(since) < self.panic_grace {
                return vec![];
            }
        }
        let mut hung = vec![];
        for (cpu, seen) in self.seen.iter_mut().enumerate() {
            let ops = watch.ops(cpu);
            if ops != seen.ops || watch.has_exited(cpu) {
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
            let step = watch.step_of(cpu);
            if let (Some(step), Some(Role::Collapse)) = (step, roles.get(cpu)) {
                lines.push(format!("      at {}", step.label()));
            }
            match watch.waiting_for(cpu) {
                Some(on) => lines.push(format!("      waiting for {}", describe_wait(mm, on, roles))),
                None => lines.push("      not waiting for a lock: looping or stuck in its own code".to_owned()),
            }
        }
        // CPUs that wait too, but not yet for the whole timeout (they
        // blocked later, behind a hung one): the other half of the picture.
        let waiting: Vec<(usize, Event)> = (0..self.seen.len())
            .filter(|cpu| !hung.contains(cpu))
            .filter_map(|cpu| watch.waiting_for(cpu).map(|on| (cpu, on)))
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
