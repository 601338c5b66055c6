//! What the checker enforces, and how a broken rule is reported.
//!
//! Each oracle is a named rule from DESIGN §4; a [`Violation`] carries the
//! rule, the CPU and step where it was seen, and a message in kernel terms.

use crate::pte::Pfn;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Mutex;
use strum::{EnumIter, IntoStaticStr};

/// The rules, each with the name it is reported under.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, EnumIter, IntoStaticStr)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum Oracle {
    /// A PTE table freed while an entry is not none.
    TableFreedLive,
    /// A collapse acted on a PTE table that is no longer the one its PMD
    /// points to: it cleared entries in a table already detached (by a
    /// concurrent page-table freer: empty-table reclaim, retraction), or
    /// its `pmdp_collapse_flush()` cleared a PMD that held another table
    /// (one a fault allocated after the first was freed) or none at all,
    /// and so went on to free what it never checked. In kernel terms: the
    /// v6.6 function looked the table up once and did not check
    /// `pmd_same()` under its locks, which was safe only while nothing
    /// else freed PTE tables under `mmap_lock` for read (v6.13's
    /// `pte_offset_map_rw_nolock()` rechecks).
    StaleTable,
    /// A collapse dropped its page lock while another CPU still cached a
    /// translation it cleared and never flushed.
    StaleTlb,
    /// A CPU's TLB translates an address to a frame whose data is not
    /// what the page table maps there now: the PTE holds a present entry
    /// of other content (another frame, not a copy of this one), put
    /// there under `ptl` while this translation was still cached. Checked
    /// when the entry is installed (`set_pte_at()`, against every CPU's
    /// TLB) and when a CPU reads through its TLB (`Harness::touch`).
    ///
    /// In kernel terms: `set_pte_at()` into a none entry flushes nothing
    /// (`mfill_atomic_install_pte()`, `do_set_pte()`), which is right
    /// only if no TLB caches the address. Whoever clears a present entry
    /// and drops `ptl` before flushing it (a collapse's step 2; a zap's
    /// mmu_gather) leaves a none entry that is still cached, and a
    /// ptl-only inserter coming in then makes two translations live: one
    /// thread reads the old subpage while another reads and writes the new
    /// page. After a zap the user raced its own munmap or MADV_DONTNEED
    /// and the kernel accepts that (the model has no such actor); a
    /// collapse must not change what user space sees, so there it is a
    /// bug. Not counted: an entry still none (the clearer's owed flush,
    /// which `stale-tlb` checks is paid), swap and migration entries
    /// (installed only after `ptep_clear_flush()` of the old frame), a
    /// frame holding the same data (a migration's copy), and guard markers
    /// (no data to compare: a read past one is the guard-marker race,
    /// left to `table-freed-live`).
    StaleTranslation,
    /// Refcount, mapcount, mm counters or page-table count disagree with the
    /// tables (including the teardown's "Bad rss-counter state").
    Accounting,
    /// A page installed by another actor is neither mapped nor freed.
    LostPage,
    /// Lock order pml -> ptl broken other than by trylock, a lock held at
    /// return, released by a non-holder, or a sleeping call under a spinlock.
    LockOrder,
    /// Every CPU blocked.
    Deadlock,
    /// Freed memory used: a page read through a TLB after it was freed, a
    /// double free, or a lockless walker (GUP-fast, the hardware walker)
    /// reading a PTE table that was freed while it was inside its walk:
    /// freed with `pte_free()`, not after a grace period.
    UseAfterFree,
    /// A kernel primitive called against its contract, where the kernel
    /// would misbehave silently or hit a VM_BUG_ON/WARN:
    /// `vm_normal_page()` of an entry that is not present (the kernel
    /// reads a swap, migration or marker entry's bits as a pfn);
    /// `pte_unmap()` of a table this CPU has not mapped, or a
    /// `pte_offset_map*()` still mapped when the policy returns;
    /// `mmu_notifier_invalidate_range_end()` without a started range, or
    /// a range not ended at return; `pte_free()`/`pte_free_defer()` of a
    /// table still installed in a PMD. A refcount or mapcount going below
    /// zero stays [`Oracle::Accounting`], and a PTE written without its
    /// `ptl` stays [`Oracle::LockOrder`] (lockdep_assert_held).
    ApiContract,
}

impl Oracle {
    /// The rule's name, as the command line and reports spell it.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// How grave breaking the rule is, 0 the gravest: a run that broke
    /// several rules is judged by its gravest, since one bug often breaks
    /// milder rules on the way (pre-fix's table freed live also leaves the
    /// rss counters wrong, and the window it opens lets a reader see a
    /// stale translation). In kernel terms, in order: freed memory read;
    /// every CPU stuck; a page table acted on after it was replaced (what
    /// comes next is freeing memory nobody checked); a mapped page freed with its table or leaked; a
    /// TLB still translating to a page whose mapping (and reference) was
    /// dropped, one free away from a use-after-free; a primitive used
    /// against its contract (a VM_BUG_ON, or silent corruption); a lock
    /// order that lockdep would report; counters that disagree with the
    /// tables; two live translations of one address, where user space
    /// reads data the page table no longer maps though no page is freed
    /// or leaked.
    pub fn gravity(self) -> u8 {
        match self {
            Oracle::UseAfterFree => 0,
            Oracle::Deadlock => 1,
            Oracle::StaleTable => 2,
            Oracle::TableFreedLive => 3,
            Oracle::LostPage => 4,
            Oracle::StaleTlb => 5,
            Oracle::ApiContract => 6,
            Oracle::LockOrder => 7,
            Oracle::Accounting => 8,
            Oracle::StaleTranslation => 9,
        }
    }

    /// Every rule, gravest first ([`Oracle::gravity`]): the order verdicts
    /// list what a search found.
    pub fn by_gravity() -> Vec<Oracle> {
        let mut all: Vec<Oracle> = <Oracle as strum::IntoEnumIterator>::iter().collect();
        all.sort_by_key(|o| o.gravity());
        all
    }
}

impl fmt::Display for Oracle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Which rule.
    pub oracle: Oracle,
    /// The CPU that observed it (None: found at teardown).
    pub cpu: Option<u32>,
    /// The step the observing CPU was at.
    pub step: Option<String>,
    /// What happened, in kernel terms.
    pub message: String,
    /// Translations other CPUs still cache that the finding is about (a
    /// stale-TLB finding's holders), so a timeline can show where each was
    /// filled. Empty for most rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cached: Vec<CachedTranslation>,
    /// The non-none entries a PTE table was freed with, as (index, entry):
    /// a table-freed-live finding's evidence, so a reader can tell what
    /// was left in it (an inserted page, a guard marker) without parsing
    /// the message. Empty for every other rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freed_live: Vec<(usize, crate::pte::Pte)>,
}

impl Violation {
    /// Whether this is a table freed live with only guard markers left in
    /// it: the race with a future ptl-only inserter (MADV_GUARD_INSTALL,
    /// v6.13, installs its markers under `ptl` alone) that a collapse not
    /// rechecking under `pml` loses.
    pub fn freed_with_guard_markers_only(&self) -> bool {
        self.oracle == Oracle::TableFreedLive
            && !self.freed_live.is_empty()
            && self.freed_live.iter().all(|(_, pte)| pte.marker_kind() == Some(crate::pte::PteMarker::Guard))
    }

    /// Where this finding ranks in a run's verdict, gravest first: by
    /// [`Oracle::gravity`], with the guard-marker race (reported apart)
    /// after every other finding.
    pub fn verdict_rank(&self) -> (bool, u8) {
        (self.freed_with_guard_markers_only(), self.oracle.gravity())
    }
}

/// A translation a CPU's TLB holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedTranslation {
    /// The CPU whose TLB holds it.
    pub cpu: u32,
    /// Virtual page number.
    pub vpn: u64,
    /// The frame it translates to.
    pub pfn: Pfn,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.oracle)?;
        if let Some(cpu) = self.cpu {
            write!(f, " CPU {cpu}")?;
        }
        if let Some(step) = &self.step {
            write!(f, " at {step}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Violations seen during a run. Rare, so a mutex is fine; the first
/// [`Violations::KEEP`] are kept, and beyond them the first of each
/// oracle not yet kept (so a flood of one rule does not hide another);
/// the rest are only counted.
#[derive(Default)]
pub struct Violations {
    inner: Mutex<(Vec<Violation>, u64)>,
}

impl Violations {
    /// How many violations are kept with their messages.
    pub const KEEP: usize = 64;

    /// Record one.
    pub fn push(&self, v: Violation) {
        crate::footprint::note(&self.inner as *const _ as *const (), true);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.1 += 1;
        if g.0.len() < Self::KEEP || !g.0.iter().any(|k| k.oracle == v.oracle) {
            g.0.push(v);
        }
    }

    /// The kept violations and the total count.
    pub fn snapshot(&self) -> (Vec<Violation>, u64) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether any violation of `oracle` was recorded (among the kept ones).
    pub fn any(&self, oracle: Oracle) -> bool {
        self.snapshot().0.iter().any(|v| v.oracle == oracle)
    }
}
