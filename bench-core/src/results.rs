//! What runs and checks produce for result files (JSON via serde): the
//! machine, one policy's run, why a run was abandoned, and a
//! counterexample's timeline. The documents that hold them, and their
//! layout version, are the reports crate's (`reports::schema`).

use crate::event::Step;
use crate::locks::{LockClass, LockStats};
use crate::metrics::MetricsSummary;
use crate::oracle::Violation;
use crate::pte::{Pfn, Pte};
use crate::scan::ScanResult;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The machine and build a result came from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// CPU model name (`/proc/cpuinfo`).
    pub cpu_model: String,
    /// Cores available to the process.
    pub cores: usize,
    /// Operating system.
    pub os: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Git revision of collapse-bench that produced the result.
    pub git_revision: String,
    /// Engine ("native" or "sim").
    pub engine: String,
    /// Seed every random choice came from.
    pub seed: u64,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix_s: u64,
}

impl Environment {
    /// Read the machine's facts.
    pub fn capture(engine: &str, seed: u64, git_revision: &str) -> Environment {
        let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_owned()).unwrap_or_default();
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
        let os = match read("/proc/sys/kernel/ostype") {
            s if s.is_empty() => std::env::consts::OS.to_owned(),
            s => s,
        };
        Environment {
            cpu_model,
            cores: crate::machine::available_cores(),
            os,
            kernel: read("/proc/sys/kernel/osrelease"),
            git_revision: git_revision.to_owned(),
            engine: engine.to_owned(),
            seed,
            started_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

/// One policy's run of one workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyRun {
    /// Name with non-default parameters (`v2-flush-bool:recheck_always=true`).
    pub policy: String,
    /// The policy's parameters.
    pub params: serde_json::Value,
    /// Workload preset or scenario name.
    pub workload: String,
    /// Seed.
    pub seed: u64,
    /// Wall time of the measured part, s.
    pub wall_s: f64,
    /// Model CPUs (threads).
    pub threads: usize,
    /// Cores available.
    pub cores: usize,
    /// Threads pinned one per core.
    pub pinned: bool,
    /// More threads than cores.
    pub oversubscribed: bool,
    /// Collapses run.
    pub collapses: u64,
    /// Collapses per second of wall time.
    pub collapses_per_s: f64,
    /// Histograms and counters.
    pub metrics: MetricsSummary,
    /// Lock totals per class ("pml", "ptl", "page_table_lock").
    pub locks: BTreeMap<String, LockStats>,
    /// Violations found (the first [`crate::oracle::Violations::KEEP`], and the first of each other oracle).
    pub violations: Vec<Violation>,
    /// All violations found, kept or not.
    pub violations_total: u64,
    /// Which limit ended the run (absent in files of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<EndedBy>,
}

/// Which limit ended a run.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndedBy {
    /// Its duration (wall or virtual time) ran out.
    Duration,
    /// It made the collapses `--ops` asked for.
    Ops,
    /// `--ops` asked for more collapses than it made before the time cap.
    TimeCap,
}

/// Why a policy's run was abandoned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RunFailure {
    /// A CPU panicked: in the policy's code, or in the framework under it.
    Panic {
        /// The CPU (None when the checker's controlled engine ran it).
        cpu: Option<u32>,
        /// What the CPU was doing ("collapse").
        role: Option<String>,
        /// The collapse step it was in (`cx.current_step()`), when it was collapsing.
        step: Option<String>,
        /// The panic message.
        message: String,
        /// `file:line:column` of the panic.
        location: Option<String>,
        /// The spinlocks the CPU held when it panicked.
        held_locks: Vec<String>,
    },
    /// The watchdog saw CPUs finish nothing for its whole timeout.
    Hung {
        /// The timeout, s.
        watchdog_s: f64,
        /// The CPUs that made no progress.
        cpus: Vec<u32>,
        /// The hung-task report: who waits for which lock, who holds it.
        report: Vec<String>,
    },
    /// The simulation gave the run up: a CPU's virtual clock stood still
    /// in a loop that costs nothing under the cost model.
    Stalled {
        /// The CPU.
        cpu: u32,
        /// The engine's report: the CPU's last scheduling point, the locks
        /// it held, the model's zero costs.
        report: String,
    },
    /// The run ended without one finished collapse: nothing was measured.
    NoCollapse {
        /// How long it ran, s.
        seconds: f64,
        /// Why, and what to change.
        why: String,
    },
}

impl RunFailure {
    /// One line: `panic on CPU 0 (collapse) at step 2 (clear) holding ptl
    /// (PTE table 0): boom (at src/lib.rs:12:9)`, or `hung: CPU 0, CPU 1
    /// finished nothing for 5 s (watchdog)`.
    pub fn summary(&self) -> String {
        match self {
            RunFailure::Panic { cpu, role, step, message, location, held_locks } => {
                let mut s = "panic".to_owned();
                if let Some(cpu) = cpu {
                    s += &format!(" on CPU {cpu}");
                }
                if let Some(role) = role {
                    s += &format!(" ({role})");
                }
                if let Some(step) = step {
                    s += &format!(" at {step}");
                }
                if !held_locks.is_empty() {
                    s += &format!(" holding {}", held_locks.join(", "));
                }
                s += &format!(": {message}");
                if let Some(location) = location {
                    s += &format!(" (at {location})");
                }
                s
            }
            RunFailure::Hung { watchdog_s, cpus, .. } => {
                let cpus: Vec<String> = cpus.iter().map(|c| format!("CPU {c}")).collect();
                format!("hung: {} finished nothing for {watchdog_s} s (watchdog)", cpus.join(", "))
            }
            RunFailure::Stalled { report, .. } => format!("stalled: {report}"),
            RunFailure::NoCollapse { seconds, why } => {
                format!("no collapse finished in {seconds:.2} s: {why}")
            }
        }
    }

    /// The whole description, one line each: for a panic an oops-like
    /// block (message, where, step, locks held), for a hang the hung-task
    /// report.
    pub fn lines(&self) -> Vec<String> {
        match self {
            RunFailure::Panic { cpu, role, step, message, location, held_locks } => {
                let on = match (cpu, role) {
                    (Some(cpu), Some(role)) => format!(" on CPU {cpu} ({role})"),
                    (Some(cpu), None) => format!(" on CPU {cpu}"),
                    _ => String::new(),
                };
                let mut lines = vec![format!("panic{on}: {message}")];
                if let Some(location) = location {
                    lines.push(format!("  at {location}"));
                }
                if let Some(step) = step {
                    lines.push(format!("  in {step}"));
                }
                if !held_locks.is_empty() {
                    lines.push(format!("  holding {}", held_locks.join(", ")));
                }
                lines
            }
            RunFailure::Hung { report, .. } => report.clone(),
            RunFailure::Stalled { .. } | RunFailure::NoCollapse { .. } => vec![self.summary()],
        }
    }
}

/// One event of a counterexample's timeline: when, on which CPU, what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// Scheduling step it happened in.
    pub step: u64,
    /// The CPU.
    pub cpu: u32,
    /// What the CPU did.
    pub event: TimelineEvent,
}

/// What a CPU did, as a timeline shows it: the engine's trace event with
/// every lock resolved to its class and name, so that it can be drawn
/// without the model that ran it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimelineEvent {
    /// A collapse step began.
    Step {
        /// Which.
        step: Step,
    },
    /// About to wait for a spinlock.
    Lock {
        /// The lock.
        lock: TimelineLock,
    },
    /// Tried a spinlock.
    Trylock {
        /// The lock.
        lock: TimelineLock,
        /// Whether it was taken.
        ok: bool,
    },
    /// Released a spinlock.
    Unlock {
        /// The lock.
        lock: TimelineLock,
    },
    /// `ptep_clear` of an entry.
    PteClear {
        /// The entry's index in its table.
        idx: u16,
    },
    /// `set_pte_at` of an entry.
    PteSet {
        /// The entry's index in its table.
        idx: u16,
        /// The value set.
        pte: Pte,
    },
    /// `set_pte_at` by a uffd CPU installing an anonymous page
    /// (UFFDIO_COPY): the entry the bug is about.
    InstallAnon {
        /// The entry's index in its table.
        idx: u16,
        /// The value set (present).
        pte: Pte,
    },
    /// The PMD cleared by `pmdp_collapse_flush` (or a zap).
    PmdClear,
    /// The PMD emptied by `pmd_clear()`, with no flush (empty-table
    /// reclaim; the flush comes with its mmu_gather).
    PmdClearOnly,
    /// A huge PMD installed.
    PmdHuge,
    /// `flush_tlb_mm`.
    FlushMm,
    /// A range flush.
    FlushRange,
    /// `pte_free_defer` of a page table.
    TableFree {
        /// The model's table slot.
        table: u32,
    },
    /// `pte_free` of a page table (at once, no grace period).
    TableFreeNow {
        /// The model's table slot.
        table: u32,
    },
    /// The collapse returned.
    Returned {
        /// Its result.
        result: ScanResult,
    },
    /// A lockless read of a PMD or PTE.
    LocklessRead,
    /// A TLB lookup or fill.
    TlbAccess {
        /// The virtual page number.
        vpn: u64,
    },
    /// A TLB miss walked the tables and cached a translation.
    TlbFill {
        /// The virtual page number.
        vpn: u64,
        /// The frame it now translates to.
        pfn: Pfn,
    },
    /// A page lock, reference or flag change on a frame.
    PageOp {
        /// The frame.
        pfn: Pfn,
    },
    /// Waiting for a page table to come back from a grace period.
    TableAlloc,
    /// Waiting for the page lock of a frame.
    PageLock {
        /// The frame.
        pfn: Pfn,
    },
}

/// A spinlock as a timeline names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimelineLock {
    /// Its lockdep class.
    pub class: LockClass,
    /// Which lock of the class ("pml (PMD table 0)", "ptl (PTE table 3)",
    /// "mm->page_table_lock"): distinct locks have distinct names.
    pub name: String,
}
