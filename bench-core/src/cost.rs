//! The simulation engine's cost model: how much virtual time each
//! primitive takes.
//!
//! Under the simulation engine every kernel-named primitive on
//! [`crate::kernel::Cx`] charges its [`Cost`] to the CPU's virtual clock; the
//! other engines ignore the charges. A [`CostModel`] is read from a TOML
//! file (every key optional, unknown keys rejected; values in ns) or
//! measured by `collapse-bench calibrate`. The defaults below are the
//! documented reference: each says where its number comes from. They are
//! order-of-magnitude figures for a current x86-64 server core at about
//! 3 GHz; what matters for a comparison of policies is their ratios (a
//! lock hand-off costs tens of entry reads; an IPI costs hundreds).

use enum_map::{Enum, EnumMap};
use serde::{Deserialize, Serialize};
use std::path::Path;
use strum::{EnumIter, IntoEnumIterator, IntoStaticStr};

/// A primitive the simulation engine charges virtual time for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Enum, EnumIter, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Cost {
    /// `spin_lock` or `spin_trylock` on a free lock whose line is local.
    LockUncontended,
    /// A queued waiter taking over a lock its holder just released.
    LockHandoff,
    /// Pulling a cache line another CPU wrote last (a lock last held elsewhere).
    CacheLineTransfer,
    /// One PTE or PMD read (`ptep_get`, `pmdp_get_lockless`).
    EntryRead,
    /// One PTE or PMD store (`set_pte_at`, `pmd_populate`).
    EntryWrite,
    /// One atomic clear (`ptep_clear`, `pmdp_collapse_flush`'s clear).
    EntryClear,
    /// One rmap change (`page_remove_rmap`, `page_add_*_rmap`).
    RmapUpdate,
    /// One page reference change (`get_page`, `page_ref_sub`).
    PageRef,
    /// The local part of a range flush (`flush_tlb_range`).
    RangeFlush,
    /// The local part of `flush_tlb_mm`.
    MmFlushBase,
    /// One TLB-shootdown IPI, sent and acknowledged, per other CPU in `mm_cpumask`.
    Ipi,
    /// `mmu_notifier_invalidate_range_start` or `_end` with no subscriber.
    Notifier,
    /// An order-0 page from the allocator (`pte_alloc_one`, an anonymous page).
    PageAlloc,
    /// `pte_free_defer`: queueing the table for a grace period.
    TableFree,
    /// A user access that hits the TLB.
    TlbHit,
    /// A TLB miss: the hardware page walk.
    TlbWalk,
    /// Waking a sleeper (page lock) and switching to it.
    Wakeup,
    /// Entering and leaving the kernel for one actor operation (fault, ioctl, syscall).
    KernelEntry,
}

impl Cost {
    /// The key in a cost file.
    pub fn key(self) -> &'static str {
        self.into()
    }
    /// The least a cost file may give this cost, ns: [`MIN_COST_NS`] for
    /// the costs that keep virtual time moving, 0 for the rest.
    ///
    /// Under the simulation a CPU runs until its clock passes the next
    /// CPU's, so a loop whose every pass costs nothing never gives the CPU
    /// up, and the others (say, the holder of the lock it polls) never
    /// run. A loop that waits for another CPU must pass a scheduling
    /// point (that is where it can see the other's work), and every way
    /// through each kind of them charges one of these, which must
    /// therefore be positive (a `spin_unlock` charges nothing, but comes
    /// after a lock that did; a `spin_trylock` of a lock the CPU holds
    /// itself charges nothing either, and is left to the engine's stall
    /// guard, `controlled::STALL_CALLS`):
    ///
    /// * `kernel_entry`: the only cost of an operation that finds nothing
    ///   to do (a COW writer on a shared mapping, with no pace); the
    ///   actors' loop ends only when their clocks reach the duration.
    /// * `lock_uncontended`: what `spin_lock` on a free lock and every
    ///   `spin_trylock`, won or lost, charge (`cache_line_transfer` comes
    ///   on top only when the line was last another CPU's): a trylock
    ///   retried until the holder lets go pays this on every try.
    /// * `lock_handoff`: all a waiter in `spin_lock` pays once its clock
    ///   has jumped to the release; two CPUs passing a lock back and forth
    ///   would otherwise do it forever at one instant.
    /// * `entry_read`: every lockless PMD or PTE read
    ///   (`pmdp_get_lockless`, `ptep_get` without `ptl`), which is what a
    ///   retry loop rereads: `pte_offset_map_lock()` after the PMD changed
    ///   under it, a recheck waiting for another CPU's store.
    /// * `page_ref`: `trylock_page`, `lock_page` and `unlock_page` (a
    ///   `trylock_page` retried until the collapse unlocks the page).
    /// * `tlb_hit`, `tlb_walk`: a user access pays one or the other (a
    ///   reader polling memory).
    ///
    /// The others may be 0, which leaves them out of the model: each is
    /// charged only beside one of those, or for bounded work under a lock
    /// (entry writes and clears, rmap, flushes, notifiers, the allocator,
    /// `pte_free_defer`, a sleeper's wake-up after its `page_ref`). A zero
    /// `ipi`, for one, models arm64, which invalidates TLBs by broadcast
    /// (`__flush_tlb_range` issues TLBI instructions, no shootdown IPIs).
    pub fn min_ns(self) -> f64 {
        match self {
            Cost::KernelEntry
            | Cost::LockUncontended
            | Cost::LockHandoff
            | Cost::EntryRead
            | Cost::PageRef
            | Cost::TlbHit
            | Cost::TlbWalk => MIN_COST_NS,
            Cost::CacheLineTransfer
            | Cost::EntryWrite
            | Cost::EntryClear
            | Cost::RmapUpdate
            | Cost::RangeFlush
            | Cost::MmFlushBase
            | Cost::Ipi
            | Cost::Notifier
            | Cost::PageAlloc
            | Cost::TableFree
            | Cost::Wakeup => 0.0,
        }
    }

    /// Where the default comes from (written into cost files as a comment).
    pub fn source(self) -> &'static str {
        match self {
            Cost::LockUncontended => {
                "qspinlock fast path: one `lock cmpxchg` on an L1-resident line (~20 cycles, Agner Fog's \
                 instruction tables) plus the releasing store"
            }
            Cost::LockHandoff => {
                "MCS hand-off: the releasing store reaches the next waiter's core and the waiter claims the \
                 lock word: about two core-to-core line transfers"
            }
            Cost::CacheLineTransfer => {
                "core-to-core cache-line latency within a socket, 40-100 ns on current x86 servers \
                 (e.g. the core-to-core-latency measurements published for Xeon and EPYC parts)"
            }
            Cost::EntryRead => {
                "step 1's per-entry work: a prefetched 8-byte load plus the checks on it (a 512-entry scan is \
                 about 1 us)"
            }
            Cost::EntryWrite => "a plain 8-byte store to a line already owned",
            Cost::EntryClear => "ptep_get_and_clear is an `xchg`, implicitly locked: ~20 cycles",
            Cost::RmapUpdate => "an atomic on _mapcount plus a per-CPU lruvec statistic",
            Cost::PageRef => "one atomic add on the page's refcount line",
            Cost::RangeFlush => {
                "a 2 MiB range is past tlb_single_page_flush_ceiling (33 pages), so x86 flushes the whole \
                 local TLB (a CR3 write or INVPCID, 100-200 ns) and pays the refill later"
            }
            Cost::MmFlushBase => "flush_tlb_mm's local part: the same whole local flush",
            Cost::Ipi => {
                "per other CPU in mm_cpumask: the initiator sends the shootdown and waits for every \
                 acknowledgement; published shootdown measurements grow about linearly with the CPUs \
                 targeted, from a few us for a handful to tens of us for 100+ (Amit, USENIX ATC 2017; \
                 Kumar et al., LATR, ASPLOS 2018). Not measurable from user space"
            }
            Cost::Notifier => "no subscriber: a check of mm->notifier_subscriptions and an SRCU-free return",
            Cost::PageAlloc => "page-allocator fast path for an order-0 page (plus ptlock init for a table)",
            Cost::TableFree => "pte_free_defer queues an RCU callback (call_rcu)",
            Cost::TlbHit => "the user load itself, L1 hit",
            Cost::TlbWalk => "a dTLB miss walked with the page-walk caches warm",
            Cost::Wakeup => "folio_wake_bit: try_to_wake_up, then a context switch on the woken CPU",
            Cost::KernelEntry => "a page fault or syscall entry and exit, mitigations off",
        }
    }
}

/// Virtual time per primitive, ns. Every key of a cost file is optional
/// (a missing one keeps its default) and an unknown key is an error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CostModel {
    /// [`Cost::LockUncontended`].
    pub lock_uncontended: f64,
    /// [`Cost::LockHandoff`].
    pub lock_handoff: f64,
    /// [`Cost::CacheLineTransfer`].
    pub cache_line_transfer: f64,
    /// [`Cost::EntryRead`].
    pub entry_read: f64,
    /// [`Cost::EntryWrite`].
    pub entry_write: f64,
    /// [`Cost::EntryClear`].
    pub entry_clear: f64,
    /// [`Cost::RmapUpdate`].
    pub rmap_update: f64,
    /// [`Cost::PageRef`].
    pub page_ref: f64,
    /// [`Cost::RangeFlush`].
    pub range_flush: f64,
    /// [`Cost::MmFlushBase`].
    pub mm_flush_base: f64,
    /// [`Cost::Ipi`].
    pub ipi: f64,
    /// [`Cost::Notifier`].
    pub notifier: f64,
    /// [`Cost::PageAlloc`].
    pub page_alloc: f64,
    /// [`Cost::TableFree`].
    pub table_free: f64,
    /// [`Cost::TlbHit`].
    pub tlb_hit: f64,
    /// [`Cost::TlbWalk`].
    pub tlb_walk: f64,
    /// [`Cost::Wakeup`].
    pub wakeup: f64,
    /// [`Cost::KernelEntry`].
    pub kernel_entry: f64,
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            lock_uncontended: 10.0,
            lock_handoff: 120.0,
            cache_line_transfer: 60.0,
            entry_read: 2.0,
            entry_write: 2.0,
            entry_clear: 8.0,
            rmap_update: 15.0,
            page_ref: 10.0,
            range_flush: 150.0,
            mm_flush_base: 150.0,
            ipi: 300.0,
            notifier: 20.0,
            page_alloc: 100.0,
            table_free: 50.0,
            tlb_hit: 1.0,
            tlb_walk: 30.0,
            wakeup: 3000.0,
            kernel_entry: 100.0,
        }
    }
}

/// Largest cost a file may give one primitive, ns (1 ms).
pub const MAX_COST_NS: f64 = 1_000_000.0;

/// Least positive cost, ns: the engine's clock counts picoseconds, and a
/// cost below half of one rounds to nothing ([`Cost::min_ns`] says which
/// costs must be at least this).
pub const MIN_COST_NS: f64 = 0.001;

/// Why a cost file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct CostError {
    /// The file (and line) at fault.
    pub origin: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl CostModel {
    /// The cost of `c`, ns.
    pub fn ns(&self, c: Cost) -> f64 {
        match c {
            Cost::LockUncontended => self.lock_uncontended,
            Cost::LockHandoff => self.lock_handoff,
            Cost::CacheLineTransfer => self.cache_line_transfer,
            Cost::EntryRead => self.entry_read,
            Cost::EntryWrite => self.entry_write,
            Cost::EntryClear => self.entry_clear,
            Cost::RmapUpdate => self.rmap_update,
            Cost::PageRef => self.page_ref,
            Cost::RangeFlush => self.range_flush,
            Cost::MmFlushBase => self.mm_flush_base,
            Cost::Ipi => self.ipi,
            Cost::Notifier => self.notifier,
            Cost::PageAlloc => self.page_alloc,
            Cost::TableFree => self.table_free,
            Cost::TlbHit => self.tlb_hit,
            Cost::TlbWalk => self.tlb_walk,
            Cost::Wakeup => self.wakeup,
            Cost::KernelEntry => self.kernel_entry,
        }
    }

    /// Set the cost of `c`, ns.
    pub fn set(&mut self, c: Cost, ns: f64) {
        *match c {
            Cost::LockUncontended => &mut self.lock_uncontended,
            Cost::LockHandoff => &mut self.lock_handoff,
            Cost::CacheLineTransfer => &mut self.cache_line_transfer,
            Cost::EntryRead => &mut self.entry_read,
            Cost::EntryWrite => &mut self.entry_write,
            Cost::EntryClear => &mut self.entry_clear,
            Cost::RmapUpdate => &mut self.rmap_update,
            Cost::PageRef => &mut self.page_ref,
            Cost::RangeFlush => &mut self.range_flush,
            Cost::MmFlushBase => &mut self.mm_flush_base,
            Cost::Ipi => &mut self.ipi,
            Cost::Notifier => &mut self.notifier,
            Cost::PageAlloc => &mut self.page_alloc,
            Cost::TableFree => &mut self.table_free,
            Cost::TlbHit => &mut self.tlb_hit,
            Cost::TlbWalk => &mut self.tlb_walk,
            Cost::Wakeup => &mut self.wakeup,
            Cost::KernelEntry => &mut self.kernel_entry,
        } = ns;
    }

    /// Every cost must be finite and in `c.min_ns()..=MAX_COST_NS`
    /// ([`Cost::min_ns`]: the costs without which virtual time could
    /// stand still must be positive). The costs that are zero but must
    /// not be are named together.
    pub fn validate(&self) -> Result<(), String> {
        let mut stuck = vec![];
        for c in Cost::iter() {
            let (ns, min) = (self.ns(c), c.min_ns());
            if (min..=MAX_COST_NS).contains(&ns) {
                continue;
            }
            if (0.0..min).contains(&ns) {
                stuck.push(format!("{} = {ns}", c.key()));
            } else {
                return Err(format!("{}: {ns} ns; allowed {min} to {MAX_COST_NS} ns", c.key()));
            }
        }
        if stuck.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{}: each must be at least {MIN_COST_NS} ns (allowed {MIN_COST_NS} to {MAX_COST_NS} ns): some step a CPU \
             can repeat while it waits costs only that, so at 0 the simulated clock could stand still (the \
             others may be 0)",
            stuck.join(", ")
        ))
    }

    /// Parse a cost file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<CostModel, CostError> {
        let model: CostModel = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text.as_bytes()[..s.start.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1);
            let keys: Vec<&str> = Cost::iter().map(|c| c.key()).collect();
            let mut message = e.message().trim_end().to_owned();
            if message.starts_with("unknown field") {
                message = format!(
                    "{}; allowed keys: {}",
                    message.split(", expected").next().unwrap_or(&message),
                    keys.join(", ")
                );
            }
            CostError { origin: line.map_or(origin.to_owned(), |l| format!("{origin}:{l}")), message }
        })?;
        model.validate().map_err(|message| CostError { origin: origin.to_owned(), message })?;
        Ok(model)
    }

    /// Read a cost file.
    pub fn load(path: &Path) -> Result<CostModel, CostError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| CostError { origin: origin.clone(), message: format!("cannot read the cost file: {e}") })?;
        Self::parse(&text, &origin)
    }

    /// The model as a cost file: every key with its value and, as a
    /// comment, where the number comes from (`notes` replaces the default
    /// source for the keys it names, e.g. "measured: ...").
    pub fn to_toml(&self, header: &str, notes: &[(Cost, String)]) -> String {
        let mut out = String::new();
        for line in header.lines() {
            out += &format!("# {line}\n");
        }
        for c in Cost::iter() {
            let note =
                notes.iter().find(|(k, _)| *k == c).map_or_else(|| format!("default: {}", c.source()), |n| n.1.clone());
            out += &format!("\n# {note}\n{} = {:?}\n", c.key(), self.ns(c));
        }
        out
    }

    /// The model in picoseconds, for the engine's clock.
    pub fn table(&self) -> CostTable {
        let mut ps = EnumMap::default();
        for c in Cost::iter() {
            ps[c] = (self.ns(c) * 1000.0).round() as u64;
        }
        CostTable { ps }
    }
}

/// A [`CostModel`] in picoseconds, indexed by [`Cost`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CostTable {
    ps: EnumMap<Cost, u64>,
}

impl CostTable {
    /// `n` times the cost of `c`, ps.
    #[inline]
    pub fn ps(&self, c: Cost, n: u64) -> u64 {
        self.ps[c] * n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_serde_fields_in_order() {
        let defaults = CostModel::default();
        let text = defaults.to_toml("header", &[(Cost::Ipi, "measured: nothing".to_owned())]);
        assert!(text.starts_with("# header\n"));
        assert!(text.contains("# measured: nothing\nipi = 300.0\n"), "{text}");
        assert_eq!(CostModel::parse(&text, "f").unwrap(), defaults);
    }

    #[test]
    fn a_missing_key_keeps_its_default_and_bad_keys_are_named() {
        let m = CostModel::parse("ipi = 1000\n", "c.toml").unwrap();
        assert_eq!(m.ipi, 1000.0);
        assert_eq!(m.entry_read, CostModel::default().entry_read);
        assert_eq!(m.table().ps(Cost::Ipi, 3), 3_000_000);
        let e = CostModel::parse("entry_read = 1\nipis = 3\n", "c.toml").unwrap_err().to_string();
        assert!(e.starts_with("c.toml:2: unknown field `ipis`; allowed keys: lock_uncontended,"), "{e}");
        let e = CostModel::parse("wakeup = -1\n", "c.toml").unwrap_err().to_string();
        assert_eq!(e, "c.toml: wakeup: -1 ns; allowed 0 to 1000000 ns");
        let e = CostModel::parse("wakeup = \"x\"\n", "c.toml").unwrap_err().to_string();
        assert!(e.starts_with("c.toml:1: invalid type"), "{e}");
        let e = CostModel::parse("entry_read = -1\n", "c.toml").unwrap_err().to_string();
        assert_eq!(e, "c.toml: entry_read: -1 ns; allowed 0.001 to 1000000 ns");
    }

    /// A file giving every key `value`.
    fn every_key(value: &str) -> String {
        Cost::iter().map(|c| format!("{} = {value}\n", c.key())).collect()
    }

    #[test]
    fn an_all_zero_model_is_refused_naming_the_costs_that_keep_time_moving() {
        let e = CostModel::parse(&every_key("0"), "zero.toml").unwrap_err().to_string();
        assert_eq!(
            e,
            "zero.toml: lock_uncontended = 0, lock_handoff = 0, entry_read = 0, page_ref = 0, tlb_hit = 0, \
             tlb_walk = 0, kernel_entry = 0: each must be at least 0.001 ns (allowed 0.001 to 1000000 ns): some \
             step a CPU can repeat while it waits costs only that, so at 0 the simulated clock could stand still \
             (the others may be 0)"
        );
        // Below a picosecond is zero to the engine's clock.
        let e = CostModel::parse("kernel_entry = 0.0004\n", "c.toml").unwrap_err().to_string();
        assert!(e.starts_with("c.toml: kernel_entry = 0.0004: each must be at least 0.001 ns"), "{e}");
        let m = CostModel::parse(&every_key("0.001"), "tiny.toml").unwrap();
        assert_eq!(m.table().ps(Cost::KernelEntry, 1), 1);
    }

    #[test]
    fn zero_is_allowed_where_time_moves_anyway() {
        // arm64: broadcast TLB invalidation, no shootdown IPIs.
        let m = CostModel::parse("ipi = 0\n", "arm64.toml").unwrap();
        assert_eq!((m.ipi, m.table().ps(Cost::Ipi, 8)), (0.0, 0));
        let mut all = CostModel::default();
        for c in Cost::iter().filter(|c| c.min_ns() == 0.0) {
            all.set(c, 0.0);
        }
        assert_eq!(all.validate(), Ok(()));
        assert_eq!(CostModel::parse(&all.to_toml("", &[]), "f").unwrap(), all);
    }
}
