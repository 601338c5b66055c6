//! The kernel-named primitive API, as methods on a model CPU's context [`Cx`].
//!
//! Names, arguments and lock rules follow the kernel (v6.6) so a patch hunk
//! ports line by line: `cx.pmd_lock(pmd)`, `cx.spin_trylock(pml)`,
//! `cx.ptep_clear(addr, pte)`. What a kernel function asserts with
//! lockdep (`lockdep_assert_held`, `might_sleep`) is checked here and
//! reported as a `lock-order` violation rather than crashing the run.
//!
//! Every lock operation is timed and attributed to the CPU's current
//! [`Role`]; every PTE a collapse clears is remembered so the stale-TLB
//! oracle can run when the collapse drops its page lock.

use crate::cost::Cost;
use crate::engine::CpuEngine;
use crate::event::{Event, Step};
use crate::footprint::AtomicU64;
use crate::locks::{LockClass, LockId};
use crate::metrics::Metrics;
use crate::mm::{vpn, Mm, MmCounter, Vma, VM_UFFD_MINOR, VM_UFFD_MISSING, VM_UFFD_WP};
use crate::oracle::{CachedTranslation, Oracle, Violation};
use crate::pgtable::TableState;
use crate::pte::{Pfn, Pmd, PmdKind, Pte, HPAGE_PMD_NR, HPAGE_PMD_SIZE, PAGE_SHIFT, PAGE_SIZE, PTRS_PER_PTE};
use crate::role::{installer_name, Role};
use crate::scan::ScanResult;
use std::sync::atomic::Ordering;

/// `SINGLE_DEPTH_NESTING` for [`Cx::spin_lock_nested`].
pub const SINGLE_DEPTH_NESTING: u32 = 1;

/// How many `ptl` lookups a CPU remembers ([`Cx::ptl_lookups`]): a path
/// locks the `ptl` of one of its last few lookups.
const PTL_LOOKUPS_KEPT: usize = 4;

/// A PMD slot (`pmd_t *`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PmdRef {
    /// PMD table.
    pub table: u32,
    /// Slot in it.
    pub idx: u32,
}

/// A mapped PTE table (`pte_t *start_pte` from `pte_offset_map*`). Only
/// the primitives make one: a policy reaches a table through the PMD
/// that holds it. It carries the table's `ptl`, which every write checks
/// is held, and the table's entries, so neither the check nor the access
/// needs a look at the rest of the model.
#[derive(Copy, Clone, Debug)]
pub struct PteMap<'a> {
    pub(crate) slot: u32,
    pub(crate) ptl: LockId,
    pub(crate) entries: &'a [AtomicU64; PTRS_PER_PTE],
}

impl<'a> PteMap<'a> {
    /// `start_pte + i`.
    pub fn at(self, i: usize) -> PteRef<'a> {
        PteRef { slot: self.slot, ptl: self.ptl, idx: i, entry: &self.entries[i] }
    }

    /// Where entry 0 lives in the model's table memory: what a front end
    /// that runs kernel C hands it as `pte_t *`, so that `pte++` walks the
    /// table as in the kernel. Entry `i` is `as_ptr() + i`; only
    /// [`PteMap::at`] reads or writes one (as a primitive's argument).
    pub fn as_ptr(self) -> *const u64 {
        self.entries.as_ptr().cast()
    }
}

/// Two maps are equal when they map the same table.
impl PartialEq for PteMap<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.slot == other.slot
    }
}

impl Eq for PteMap<'_> {}

/// One PTE (`pte_t *`).
#[derive(Copy, Clone, Debug)]
pub struct PteRef<'a> {
    pub(crate) slot: u32,
    pub(crate) ptl: LockId,
    /// Index 0..512.
    pub idx: usize,
    pub(crate) entry: &'a AtomicU64,
}

/// A detached page table (`pgtable_t`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PgTable(pub u32);

impl PgTable {
    /// What `pmd_pgtable()` gives for a PMD value that holds no table (in
    /// the kernel, whatever page the value's bits name): freeing it is a
    /// `stale-table` violation.
    pub const NOT_A_TABLE: PgTable = PgTable(u32::MAX);
}

/// An mmu-notifier range in progress.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an mmu-notifier range must be ended"]
pub struct NotifierRange {
    /// Start address.
    pub start: u64,
    /// End address.
    pub end: u64,
}

#[derive(Copy, Clone, Debug)]
pub(crate) struct Held {
    pub(crate) id: LockId,
    since: u64,
    subclass: u32,
}

/// A reader-writer semaphore a CPU holds ([`crate::rwsem`]).
#[derive(Copy, Clone, Debug)]
pub(crate) struct RwsemHeld {
    pub(crate) class: LockClass,
    pub(crate) write: bool,
    pub(crate) since: u64,
}

/// Entries a collapse cleared, for the stale-TLB oracle.
#[derive(Default)]
pub(crate) struct ClearLog {
    pub(crate) hpage: Option<Pfn>,
    /// (virtual page, frame it mapped, oracle clock tick at the clear)
    pub(crate) cleared: Vec<(u64, Pfn, u64)>,
    /// Subpages of `hpage` the collapse took out of the rmap
    /// (`page_remove_rmap()`), whether or not it cleared their entries:
    /// bit `i` for `hpage + i`.
    pub(crate) unmapped: [u64; HPAGE_PMD_NR / 64],
}

impl ClearLog {
    /// `page`'s index in `hpage`, if it is one of its subpages.
    fn subpage(&self, page: Pfn) -> Option<usize> {
        let i = page.0.checked_sub(self.hpage?.0)? as usize;
        (i < HPAGE_PMD_NR).then_some(i)
    }

    /// `page` was taken out of the rmap.
    fn note_unmapped(&mut self, page: Pfn) {
        if let Some(i) = self.subpage(page) {
            self.unmapped[i / 64] |= 1 << (i % 64);
        }
    }

    /// Whether `page` was taken out of the rmap.
    fn was_unmapped(&self, page: Pfn) -> bool {
        self.subpage(page).is_some_and(|i| self.unmapped[i / 64] & (1 << (i % 64)) != 0)
    }
}

/// A model CPU: the engine it runs on, the mm, and its own measurements.
pub struct Cx<'a, E: CpuEngine> {
    /// The address space.
    pub(crate) mm: &'a Mm,
    /// The engine.
    pub(crate) engine: E,
    /// This CPU's measurements.
    pub(crate) metrics: Metrics,
    pub(crate) cpu: u32,
    pub(crate) role: Role,
    pub(crate) held: Vec<Held>,
    /// The sleeping reader-writer locks it holds, in taking order.
    pub(crate) rwsems: Vec<RwsemHeld>,
    pub(crate) rcu_depth: u32,
    /// The PTE tables this CPU has mapped with `pte_offset_map*()` and not
    /// yet unmapped, in mapping order.
    pub(crate) pte_maps: Vec<u32>,
    /// The mmu-notifier ranges this CPU has started and not yet ended, as
    /// (start, end).
    pub(crate) notifier_ranges: Vec<(u64, u64)>,
    /// The split `ptl`s this CPU looked up lately (`pte_offset_map*()`),
    /// each with its table's release count then: a lock whose table was
    /// freed since is a lock of freed memory. The last few only.
    pub(crate) ptl_lookups: Vec<(LockId, u64)>,
    /// The PTE table the running collapse last looked up, with its release
    /// count then: what its `pmdp_collapse_flush()` must find in the PMD.
    pub(crate) collapse_table: Option<(u32, u64)>,
    /// The table the running collapse last cleared an entry of (checked to
    /// be attached once per table, not once per entry).
    pub(crate) cleared_table: Option<u32>,
    pub(crate) step: Step,
    pub(crate) in_cpumask: bool,
    pub(crate) clear_log: ClearLog,
}

impl<'a, E: CpuEngine> Cx<'a, E> {
    /// Context for model CPU `cpu` acting as `role`.
    pub(crate) fn new(mm: &'a Mm, cpu: u32, role: Role, engine: E) -> Self {
        assert!(cpu < mm.config.cpus, "CPU {cpu} beyond the model's {} CPUs", mm.config.cpus);
        Cx {
            mm,
            engine,
            metrics: Metrics::default(),
            cpu,
            role,
            held: Vec::with_capacity(4),
            rwsems: Vec::with_capacity(2),
            rcu_depth: 0,
            pte_maps: Vec::with_capacity(2),
            notifier_ranges: Vec::with_capacity(1),
            ptl_lookups: Vec::with_capacity(PTL_LOOKUPS_KEPT),
            collapse_table: None,
            cleared_table: None,
            step: Step::Prologue,
            in_cpumask: false,
            clear_log: ClearLog::default(),
        }
    }

    /// `smp_processor_id()`.
    pub fn cpu(&self) -> u32 {
        self.cpu
    }

    /// `ndelay()`: keep this CPU busy for `ns` (on the engine's clock).
    pub fn ndelay(&mut self, ns: u64) {
        self.engine.busy_wait(ns);
    }

    /// Charge the simulation engine `n` times `cost` (other engines
    /// ignore it). The primitives charge for themselves. The oracles'
    /// work and the workload's restore of a collapsed range are free in
    /// virtual time: they are the harness's, not the kernel's, and would
    /// otherwise hold `pml` against the neighbours being measured.
    #[inline(always)]
    pub(crate) fn charge(&mut self, cost: Cost, n: u64) {
        if E::PREEMPTS && !matches!(self.role, Role::Oracle | Role::Restore) {
            self.engine.charge(cost, n);
        }
    }

    /// Mark a step of the collapse (hooks, timelines, recheck counting).
    pub fn step(&mut self, step: Step) {
        self.step = step;
        if step == Step::Recheck {
            self.metrics.counts.recheck_passes += 1;
        }
        self.engine.trace(self.cpu, Event::Step(step));
        self.engine.step(self.cpu, step);
    }

    /// Report a broken rule, placed where this CPU is (see [`Self::place`]).
    pub(crate) fn violation(&self, oracle: Oracle, message: String) {
        self.mm.report(oracle, Some(self.cpu), Some(self.place()), message);
    }

    /// [`Cx::violation`] naming the translations, cached by other CPUs, it
    /// is about (a stale-TLB or stale-translation finding's evidence).
    pub(crate) fn violation_cached(&self, oracle: Oracle, message: String, cached: Vec<CachedTranslation>) {
        self.mm.violations.push(Violation {
            oracle,
            cpu: Some(self.cpu),
            step: Some(self.place().to_owned()),
            message,
            cached,
            freed_live: vec![],
        });
    }

    /// Where this CPU is, for a violation's "at ...": the collapse's step,
    /// or (any other role, the restore between collapses included) the
    /// kernel path the role runs, never a collapse step it is not in.
    pub(crate) fn place(&self) -> &'static str {
        if self.role == Role::Collapse {
            self.step.label()
        } else {
            self.role.activity()
        }
    }

    // ---------------------------------------------------------------
    // VMAs and the page cache
    // ---------------------------------------------------------------

    /// `pmd_offset()` for an address inside the model (None outside it).
    pub fn pmd_offset(&self, addr: u64) -> Option<PmdRef> {
        pmd_offset(self.mm, addr)
    }

    /// Where PMD slot `pmd` lives in the model's PMD tables: what a front
    /// end that runs kernel C hands it as `pmd_t *` (two lookups of one
    /// slot give one pointer, as in the kernel). Read and written only
    /// through the primitives.
    pub fn pmd_ptr(&self, pmd: PmdRef) -> *const u64 {
        (self.mm.pmds.entry(pmd.table, pmd.idx) as *const AtomicU64).cast()
    }

    /// The PMD slot at `ptr`, if it is one [`Cx::pmd_ptr`] gives.
    pub fn pmd_at(&self, ptr: *const u64) -> Option<PmdRef> {
        let base = self.mm.pmds.entry(0, 0) as *const AtomicU64 as usize;
        let offset = (ptr as usize).checked_sub(base)?;
        let (table, idx) = (offset / crate::pgtable::TABLE_BYTES, offset % crate::pgtable::TABLE_BYTES);
        (idx % 8 == 0 && table < self.mm.pmds.len()).then_some(PmdRef { table: table as u32, idx: (idx / 8) as u32 })
    }

    /// Report a call outside a primitive's contract that the primitives
    /// cannot see themselves: a front end that runs kernel C finds some
    /// (an entry pointer into no table this collapse mapped) as it turns
    /// C arguments into primitive arguments. An api-contract violation.
    pub fn api_contract_broken(&self, message: String) {
        self.violation(Oracle::ApiContract, message);
    }

    /// Start address of the model's collapse range `r`.
    pub fn range_addr(&self, r: u32) -> u64 {
        self.mm.range_addr(r)
    }

    /// `vma_lookup()`.
    pub fn vma_lookup(&self, addr: u64) -> Option<&'a Vma> {
        let vma = &self.mm.vmas[self.mm.addr_range(addr)? as usize];
        (vma.start..vma.end).contains(&addr).then_some(vma)
    }

    /// The page-cache page at file index `index` (head of its compound), no
    /// reference taken.
    fn page_cache_lookup(&self, index: u64) -> Option<Pfn> {
        let r = u32::try_from(index / HPAGE_PMD_NR as u64).ok()?;
        (r < self.mm.nr_ranges()).then(|| self.mm.file_hpage(r))
    }

    /// `find_lock_page()`: look up the page cache, take a reference, then the
    /// page lock (sleeping). A collapse's page lock also starts the record of
    /// cleared entries for the stale-TLB oracle.
    pub fn find_lock_page(&mut self, vma: &Vma, addr: u64) -> Option<Pfn> {
        self.filemap_lock_folio(linear_page_index(vma, addr))
    }

    /// `filemap_lock_folio()` (v6.7 on; the kernel's `ERR_PTR(-ENOENT)` is
    /// None): [`Cx::find_lock_page`] by file index, the model's one file.
    pub fn filemap_lock_folio(&mut self, index: u64) -> Option<Pfn> {
        let page = self.page_cache_lookup(index)?;
        self.get_page(page);
        self.lock_page(page);
        if self.role == Role::Collapse {
            self.clear_log.hpage = Some(page);
            self.clear_log.cleared.clear();
            self.clear_log.unmapped = [0; HPAGE_PMD_NR / 64];
        }
        Some(page)
    }

    /// `lock_page()`: may sleep.
    pub fn lock_page(&mut self, page: Pfn) {
        self.might_sleep("lock_page");
        self.engine.sched_point(self.cpu, Event::PageOp(page));
        self.charge(Cost::PageRef, 1);
        let p = self.mm.pages.get(page);
        if !p.trylock() {
            p.add_lock_waiter();
            self.engine.sleep_until(Event::PageLock(page), || p.lock_or_take_handoff());
        }
    }

    /// `trylock_page()`.
    pub fn trylock_page(&mut self, page: Pfn) -> bool {
        self.engine.sched_point(self.cpu, Event::PageOp(page));
        self.charge(Cost::PageRef, 1);
        self.mm.pages.get(page).trylock()
    }

    /// `unlock_page()`. When a collapse drops the page lock of its `hpage`,
    /// every entry it cleared must be gone from every other CPU's TLB.
    pub fn unlock_page(&mut self, page: Pfn) {
        if self.clear_log.hpage == Some(page) {
            self.clear_log.hpage = None;
            if self.mm.config.oracles {
                self.check_cleared_entries_flushed();
            }
        }
        self.mm.pages.get(page).unlock();
        self.charge(Cost::PageRef, 1);
        self.engine.sched_point(self.cpu, Event::PageOp(page));
    }

    fn check_cleared_entries_flushed(&mut self) {
        self.stamp_clears();
        let mut stale = vec![];
        for &(vpn, pfn, tick) in &self.clear_log.cleared {
            for cpu in self.mm.tlbs.stale_holders(self.cpu, vpn, pfn, tick) {
                stale.push((vpn, pfn, cpu));
            }
        }
        if let Some(&(vpn, pfn, cpu)) = stale.first() {
            let message = format!(
                "collapse dropped the page lock with {} translation(s) it cleared still cached: CPU {cpu} maps {:#x} -> {pfn}, \
                 whose PTE was cleared ({} entries cleared, none flushed from that TLB)",
                stale.len(),
                vpn << PAGE_SHIFT,
                self.clear_log.cleared.len()
            );
            let cached = stale.iter().map(|&(vpn, pfn, cpu)| CachedTranslation { cpu, vpn, pfn }).collect();
            self.violation_cached(Oracle::StaleTlb, message, cached);
        }
        self.clear_log.cleared.clear();
    }

    /// `compound_head()`: file huge pages are 512-aligned compounds;
    /// anonymous pages are order 0.
    pub fn compound_head(&self, page: Pfn) -> Pfn {
        if self.mm.pages.get(page).flags() & crate::page::PG_TAIL != 0 {
            Pfn(page.0 & !(HPAGE_PMD_NR as u32 - 1))
        } else {
            page
        }
    }

    /// `get_page()` (on the compound head).
    pub fn get_page(&mut self, page: Pfn) {
        self.charge(Cost::PageRef, 1);
        self.mm.pages.get(self.compound_head(page)).refcount.fetch_add(1, Ordering::AcqRel);
    }

    /// `put_page()`.
    pub fn put_page(&mut self, page: Pfn) {
        self.page_ref_sub(page, 1);
    }

    /// `page_ref_sub()`. The page cache holds references of its own, so a
    /// file page reaching zero here is an accounting bug.
    pub fn page_ref_sub(&mut self, page: Pfn, nr: i32) {
        self.charge(Cost::PageRef, 1);
        let head = self.compound_head(page);
        let after = self.mm.pages.get(head).refcount.fetch_sub(nr, Ordering::AcqRel) - nr;
        if after <= 0 && !self.mm.pages.get(head).is_anon() {
            self.violation(
                Oracle::Accounting,
                format!("page_ref_sub({head}, {nr}) left refcount {after} on a page-cache page"),
            );
        }
    }

    /// `PageHead()`.
    pub fn page_head(&self, page: Pfn) -> bool {
        self.mm.pages.get(page).is_head()
    }

    /// `compound_order()`.
    pub fn compound_order(&self, page: Pfn) -> u32 {
        self.mm.pages.get(page).order()
    }

    /// `PageAnon()`.
    pub fn page_anon(&self, page: Pfn) -> bool {
        self.mm.pages.get(page).is_anon()
    }

    /// `copy_highpage()`: `dst` gets `src`'s data (in the model, the tag of
    /// the address whose data it holds, and its content id: the two frames
    /// now hold the same bytes).
    pub fn copy_highpage(&mut self, dst: Pfn, src: Pfn) {
        let (src, dst) = (self.mm.pages.get(src), self.mm.pages.get(dst));
        dst.tag.store(src.tag.load(Ordering::Acquire), Ordering::Release);
        dst.content.store(src.content.load(Ordering::Acquire), Ordering::Release);
    }

    /// `mm_counter_file()`: MM_SHMEMPAGES for shmem pages, else MM_FILEPAGES.
    pub fn mm_counter_file(&self, page: Pfn) -> MmCounter {
        if self.mm.pages.get(page).flags() & crate::page::PG_SHMEM != 0 {
            MmCounter::ShmemPages
        } else {
            MmCounter::FilePages
        }
    }

    /// `add_mm_counter()`.
    pub fn add_mm_counter(&mut self, counter: MmCounter, delta: i64) {
        self.mm.add_counter(self.cpu, counter, delta);
    }

    // ---------------------------------------------------------------
    // Spinlocks
    // ---------------------------------------------------------------

    /// `pmd_lockptr()`: the lock covering this PMD (split `pml`, or
    /// `mm->page_table_lock`).
    pub fn pmd_lockptr(&self, pmd: PmdRef) -> LockId {
        self.mm.pmd_lock_id(pmd.table)
    }

    /// `pmd_lock()`: `pmd_lockptr()` then `spin_lock()`.
    pub fn pmd_lock(&mut self, pmd: PmdRef) -> LockId {
        let pml = self.pmd_lockptr(pmd);
        self.spin_lock(pml);
        pml
    }

    /// `spin_lock()`.
    pub fn spin_lock(&mut self, lock: LockId) {
        self.acquire(lock, 0);
    }

    /// `spin_lock_nested()`: a second lock of the same class, annotated.
    pub fn spin_lock_nested(&mut self, lock: LockId, subclass: u32) {
        self.acquire(lock, subclass);
    }

    fn acquire(&mut self, id: LockId, subclass: u32) {
        self.check_order(id, subclass);
        self.check_ptl_alive(id, "spin_lock");
        self.engine.sched_point(self.cpu, Event::Lock(id));
        let lock = self.mm.lock(id);
        let waited = if lock.try_acquire() {
            self.charge_line(lock.previous_holder());
            None
        } else {
            let t0 = self.engine.now_ns();
            let ticket = lock.take_ticket();
            self.engine.spin_until(Event::Lock(id), || lock.is_turn(ticket));
            // The queued waiter takes over from the holder that just left.
            self.charge(Cost::LockHandoff, 1);
            Some(t0)
        };
        let now = self.engine.now_ns();
        let waited = waited.map(|t0| now - t0);
        lock.note_acquired(self.cpu, waited);
        if let Some(w) = waited {
            self.metrics.record_wait(self.role, self.mm.lock_class(id), w);
        }
        self.held.push(Held { id, since: now, subclass });
        self.engine.trace(self.cpu, Event::Lock(id));
    }

    /// `spin_trylock()`: never waits, so it adds no ordering constraint.
    pub fn spin_trylock(&mut self, id: LockId) -> bool {
        self.engine.sched_point(self.cpu, Event::Trylock(id, false));
        if self.held.iter().any(|h| h.id == id) {
            return false;
        }
        self.check_ptl_alive(id, "spin_trylock");
        let lock = self.mm.lock(id);
        let ok = lock.try_acquire();
        // A failed trylock read a line another CPU holds.
        self.charge_line(if ok { lock.previous_holder() } else { lock.holder() });
        self.engine.trace(self.cpu, Event::Trylock(id, ok));
        if ok {
            let now = self.engine.now_ns();
            lock.note_acquired(self.cpu, None);
            self.held.push(Held { id, since: now, subclass: 0 });
            true
        } else {
            self.metrics.counts.trylock_failures[self.mm.lock_class(id)] += 1;
            false
        }
    }

    /// The cost of taking a lock word last written by `previous`: an
    /// uncontended acquisition, plus a cache-line transfer if that was
    /// another CPU.
    #[inline(always)]
    fn charge_line(&mut self, previous: Option<u32>) {
        if E::PREEMPTS {
            self.charge(Cost::LockUncontended, 1);
            if previous.is_some_and(|cpu| cpu != self.cpu) {
                self.charge(Cost::CacheLineTransfer, 1);
            }
        }
    }

    /// `spin_unlock()`.
    pub fn spin_unlock(&mut self, id: LockId) {
        let Some(pos) = self.held.iter().rposition(|h| h.id == id) else {
            let holder = self.mm.lock(id).holder().map_or("nobody".to_owned(), |c| format!("CPU {c}"));
            self.violation(
                Oracle::LockOrder,
                format!("spin_unlock({}) by a CPU that does not hold it (held by {holder})", self.mm.lock_name(id)),
            );
            return;
        };
        self.stamp_clears();
        let h = self.held.remove(pos);
        let held_ns = self.engine.now_ns() - h.since;
        self.metrics.record_hold(self.role, self.mm.lock_class(id), held_ns);
        self.mm.lock(id).release(held_ns);
        self.engine.trace(self.cpu, Event::Unlock(id));
        self.engine.sched_point(self.cpu, Event::Unlock(id));
    }

    /// Lockdep's rules for a blocking acquisition, per lock class: the
    /// order rule and the run-wide dependency graph ([`crate::lockdep`]).
    /// With no lock held there is nothing to check; with one held, an edge
    /// already in the graph and allowed costs one relaxed load.
    fn check_order(&self, id: LockId, subclass: u32) {
        use crate::lockdep::{order_rule, Acquisition, Dependency, LockNode, Rule, Site};
        if self.held.is_empty() {
            return;
        }
        let class: LockClass = self.mm.lock_class(id);
        let new = LockNode::new(class, subclass);
        let lockdep = &self.mm.lockdep;
        for h in &self.held {
            if h.id == id {
                self.violation(
                    Oracle::Deadlock,
                    format!(
                        "recursive locking: CPU {} already holds {} and tries to take it again",
                        self.cpu,
                        self.mm.lock_name(id)
                    ),
                );
                panic!("recursive spin_lock({}) would deadlock", self.mm.lock_name(id));
            }
            let prev = LockNode::new(self.mm.lock_class(h.id), h.subclass);
            let rule = order_rule(prev, new);
            // A self-edge is never recorded: recursion is the order rule's.
            let known = prev == new || lockdep.knows(prev, new);
            // Known and allowed, or known and reported already: nothing to do.
            if known && (rule == Rule::Legal || !lockdep.first_report(prev, new)) {
                continue;
            }
            let a = Acquisition {
                dep: Dependency {
                    from: prev,
                    to: new,
                    site: Site {
                        cpu: self.cpu,
                        role: self.role.to_string(),
                        step: (self.role == Role::Collapse).then(|| self.step.label().to_owned()),
                        held: self.mm.lock_name(h.id),
                        taken: self.mm.lock_name(id),
                    },
                },
                held: self
                    .held
                    .iter()
                    .map(|h| (LockNode::new(self.mm.lock_class(h.id), h.subclass), self.mm.lock_name(h.id)))
                    .collect(),
            };
            // A new edge goes into the graph; if it closes a cycle, that is
            // the report (it claims the pair).
            let chain = if known { None } else { lockdep.add(a.dep.clone()) };
            let message = match (chain, &rule) {
                (Some(chain), rule) => a.circular_report(&chain, rule),
                (None, Rule::Legal) => continue,
                (None, _) if !known && !lockdep.first_report(prev, new) => continue,
                (None, Rule::Recursive) => a.recursive_report(),
                (None, Rule::Order(why)) => a.order_report(why, &lockdep.path_to_class(new, prev.class)),
            };
            self.violation(Oracle::LockOrder, message);
        }
    }

    /// `lockdep_assert_held()`.
    #[inline]
    pub(crate) fn assert_held(&self, id: LockId, what: &str) {
        if !self.holds(id) {
            self.not_held(id, what);
        }
    }

    #[cold]
    #[inline(never)]
    fn not_held(&self, id: LockId, what: &str) {
        self.violation(Oracle::LockOrder, format!("{what} without holding {}", self.mm.lock_name(id)));
    }

    /// `might_sleep()`: sleeping with a spinlock held is a bug.
    pub(crate) fn might_sleep(&self, what: &str) {
        if let Some(h) = self.held.last() {
            self.violation(
                Oracle::LockOrder,
                format!(
                    "BUG: sleeping function called from invalid context: {what} while holding {}",
                    self.mm.lock_name(h.id)
                ),
            );
        }
    }

    // ---------------------------------------------------------------
    // Page-table walk
    // ---------------------------------------------------------------

    /// `pmdp_get_lockless()`.
    pub fn pmdp_get_lockless(&mut self, pmd: PmdRef) -> Pmd {
        if E::PREEMPTS && !self.holds(self.pmd_lockptr(pmd)) {
            self.engine.sched_point(self.cpu, Event::LocklessRead);
        }
        self.charge(Cost::EntryRead, 1);
        self.mm.pmds.get(pmd.table, pmd.idx)
    }

    /// `find_pmd_or_thp_or_none()`: `SCAN_SUCCEED` for a PTE table,
    /// `SCAN_PMD_NONE`, `SCAN_PMD_MAPPED`, or `SCAN_PMD_NULL` outside the model.
    pub fn find_pmd_or_thp_or_none(&mut self, addr: u64) -> (ScanResult, Option<PmdRef>) {
        let Some(pmd) = self.pmd_offset(addr) else {
            return (ScanResult::PmdNull, None);
        };
        let result = match self.pmdp_get_lockless(pmd).kind() {
            PmdKind::None => ScanResult::PmdNone,
            PmdKind::Huge(_) => ScanResult::PmdMapped,
            PmdKind::Table(_) => ScanResult::Succeed,
        };
        (result, Some(pmd))
    }

    #[inline]
    pub(crate) fn holds(&self, id: LockId) -> bool {
        self.held.iter().any(|h| h.id == id)
    }

    pub(crate) fn rcu_read_lock(&mut self) {
        if self.rcu_depth == 0 {
            self.mm.rcu.enter(self.cpu);
        }
        self.rcu_depth += 1;
    }

    pub(crate) fn rcu_read_unlock(&mut self) {
        self.rcu_depth -= 1;
        if self.rcu_depth == 0 {
            self.mm.rcu.exit(self.cpu);
        }
    }

    /// `pte_offset_map_nolock()`: map the table under RCU without locking
    /// it; also returns its `ptl`. None if the PMD no longer holds a table.
    pub fn pte_offset_map_nolock(&mut self, pmd: PmdRef, addr: u64) -> Option<(PteMap<'a>, LockId)> {
        self.pte_offset_map_rw_nolock(pmd, addr).map(|(map, _, ptl)| (map, ptl))
    }

    /// `pte_offset_map_rw_nolock()` (v6.13): as `pte_offset_map_nolock()`,
    /// and also the PMD value the table was mapped from, for the caller to
    /// compare (`pmd_same()`) with the PMD once it holds `ptl`: between the
    /// lookup and the lock, a page-table freer may have detached the table.
    pub fn pte_offset_map_rw_nolock(&mut self, pmd: PmdRef, _addr: u64) -> Option<(PteMap<'a>, Pmd, LockId)> {
        self.rcu_read_lock();
        let pmdval = self.pmdp_get_lockless(pmd);
        match pmdval.kind() {
            PmdKind::Table(slot) => {
                let ptl = self.mm.pte_lock_id(slot);
                self.pte_maps.push(slot);
                self.note_lookup(slot, ptl);
                Some((PteMap { slot, ptl, entries: self.mm.tables.table(slot) }, pmdval, ptl))
            }
            _ => {
                self.rcu_read_unlock();
                None
            }
        }
    }

    /// Remember that this CPU looked up table `slot` and its `ptl` now
    /// (for the lifetime checks; only with oracles on).
    fn note_lookup(&mut self, slot: u32, ptl: LockId) {
        if !self.mm.config.oracles {
            return;
        }
        let releases = self.mm.tables.releases(slot);
        if self.role == Role::Collapse {
            self.collapse_table = Some((slot, releases));
        }
        if self.mm.lock_class(ptl) == LockClass::PteLock {
            self.ptl_lookups.retain(|&(id, _)| id != ptl);
            if self.ptl_lookups.len() == PTL_LOOKUPS_KEPT {
                self.ptl_lookups.remove(0);
            }
            self.ptl_lookups.push((ptl, releases));
        }
    }

    /// A split `ptl` lives in its table's page descriptor and dies with
    /// the table: RCU keeps it valid until the grace period of the table's
    /// `pte_free_defer()` ends (from v6.14, with empty-table reclaim, a
    /// separately allocated ptlock is freed by RCU too), and not after.
    /// Taking one whose table was freed since this CPU looked it up, or
    /// whose grace period has ended, is a use-after-free.
    fn check_ptl_alive(&self, id: LockId, what: &str) {
        if !self.mm.config.oracles || self.mm.lock_class(id) != LockClass::PteLock {
            return;
        }
        let slot = self.mm.pte_lock_slot(id);
        let tables = &self.mm.tables;
        let looked_up = self.ptl_lookups.iter().find(|&&(l, _)| l == id).map(|&(_, releases)| releases);
        let why = match tables.state(slot) {
            TableState::Free => Some("was freed after this CPU looked the lock up (its grace period ended)"),
            _ if looked_up.is_some_and(|r| r != tables.releases(slot)) => {
                Some("was freed and handed out again as another table after this CPU looked the lock up")
            }
            TableState::Deferred if self.mm.rcu.grace_period_over(slot) => Some(
                "went to pte_free_defer() after this CPU looked the lock up, and its grace period has ended (no \
                 RCU reader holds it back, this CPU included)",
            ),
            _ => None,
        };
        if let Some(why) = why {
            self.violation(
                Oracle::UseAfterFree,
                format!(
                    "{what}({}): PTE table {slot} {why}; the split ptlock lives in the table's page \
                     descriptor and dies with it",
                    self.mm.lock_name(id)
                ),
            );
        }
    }

    /// `pte_offset_map_lock()`: map and lock, rechecking after the lock
    /// that the PMD still points to the same table (else retry).
    pub fn pte_offset_map_lock(&mut self, pmd: PmdRef, addr: u64) -> Option<(PteMap<'a>, LockId)> {
        loop {
            let pmdval = {
                let (map, ptl) = self.pte_offset_map_nolock(pmd, addr)?;
                self.spin_lock(ptl);
                (map, ptl)
            };
            if self.pmdp_get_lockless(pmd) == Pmd::table(pmdval.0.slot) {
                return Some(pmdval);
            }
            self.pte_unmap_unlock(pmdval.0, pmdval.1);
        }
    }

    /// `pte_unmap()`: leave the RCU read side entered by the
    /// `pte_offset_map*()` that mapped `pte`. Unmapping a table this CPU
    /// has not mapped (again, or never) is an api-contract violation and
    /// leaves the RCU read side alone.
    pub fn pte_unmap(&mut self, pte: PteMap<'_>) {
        match self.pte_maps.iter().rposition(|&slot| slot == pte.slot) {
            Some(i) => {
                self.pte_maps.remove(i);
                self.rcu_read_unlock();
            }
            None => self.violation(
                Oracle::ApiContract,
                format!(
                    "pte_unmap() of PTE table {} with no pte_offset_map() of it outstanding on this CPU: the \
                     kernel would rcu_read_unlock() a read side it never entered (and, with CONFIG_HIGHPTE, \
                     kunmap an address it never mapped)",
                    pte.slot
                ),
            ),
        }
    }

    /// `pte_unmap_unlock()`.
    pub fn pte_unmap_unlock(&mut self, pte: PteMap<'_>, ptl: LockId) {
        self.spin_unlock(ptl);
        self.pte_unmap(pte);
    }

    /// `ptep_get()`.
    #[inline]
    pub fn ptep_get(&mut self, pte: PteRef<'_>) -> Pte {
        if E::PREEMPTS && !self.holds(pte.ptl) {
            self.engine.sched_point(self.cpu, Event::LocklessRead);
        }
        self.charge(Cost::EntryRead, 1);
        Pte(pte.entry.load(Ordering::Acquire))
    }

    /// `ptep_clear()`: clear without flushing. The flush is owed; the caller
    /// pays it (`pmdp_collapse_flush`, or `flush_tlb_mm` on abort).
    #[inline]
    pub fn ptep_clear(&mut self, addr: u64, pte: PteRef<'_>) {
        self.assert_held(pte.ptl, "ptep_clear");
        self.check_table_attached(pte.slot);
        self.charge(Cost::EntryClear, 1);
        let old = Pte(pte.entry.swap(0, Ordering::AcqRel));
        self.engine.trace(self.cpu, Event::PteClear(pte.idx as u16));
        // The log feeds only the stale-TLB oracle: skip it when oracles are off.
        if let (true, Some(pfn), Some(_)) = (self.mm.config.oracles, old.pfn(), self.clear_log.hpage) {
            // Stamped with the oracle clock at the next unlock or flush (see
            // `stamp_clears`): one clock tick per batch, not per entry.
            self.clear_log.cleared.push((vpn(addr), pfn, 0));
        }
    }

    /// The stale-table rule at a collapse's clear: the table it clears
    /// entries of must still be the one its PMD points to. Checked once
    /// per table a collapse clears in.
    fn check_table_attached(&mut self, slot: u32) {
        if self.role != Role::Collapse || !self.mm.config.oracles || self.cleared_table == Some(slot) {
            return;
        }
        self.cleared_table = Some(slot);
        if self.mm.range_mapping_table(slot).is_none() {
            self.violation(
                Oracle::StaleTable,
                format!(
                    "ptep_clear() in PTE table {slot}, which no PMD points to any more: another path detached it \
                     after this collapse looked it up, and the collapse clears and uncounts entries of a table \
                     that is on its way to being freed"
                ),
            );
        }
    }

    /// Give the clears not yet stamped one oracle clock tick. Sound because
    /// it runs before anything could map `hpage + i` at a cleared address
    /// again (the page lock keeps faults out; the PMD is installed only
    /// after `pml`/`ptl` are dropped): any TLB fill of a cleared (address,
    /// frame) pair began its walk before the clear, so before this tick.
    pub(crate) fn stamp_clears(&mut self) {
        if !self.mm.config.oracles || self.clear_log.cleared.last().is_none_or(|c| c.2 != 0) {
            return;
        }
        let tick = self.mm.tlbs.tick();
        for c in self.clear_log.cleared.iter_mut().rev().take_while(|c| c.2 == 0) {
            c.2 = tick;
        }
    }

    /// `set_pte_at()`. Like the kernel's, it flushes nothing: the entry it
    /// replaces must not be cached anywhere (a none entry nobody owes a
    /// flush for, or one cleared by `ptep_clear_flush()`). A present entry
    /// is checked against every CPU's TLB: a CPU still caching the address
    /// with other data breaks stale-translation now, at its next access
    /// (the read check in `Harness::touch` applies the same rule then).
    pub fn set_pte_at(&mut self, addr: u64, pte: PteRef<'_>, val: Pte) {
        self.assert_held(pte.ptl, "set_pte_at");
        self.charge(Cost::EntryWrite, 1);
        pte.entry.store(val.0, Ordering::Release);
        self.engine.trace(self.cpu, Event::PteSet(pte.idx as u16, val));
        if let (true, Some(now)) = (self.mm.config.oracles, val.pfn()) {
            self.check_no_stale_holder(addr, now);
        }
    }

    /// The stale-translation rule at an install of `addr -> now`: no CPU
    /// may still cache `addr` to a frame of other data.
    fn check_no_stale_holder(&mut self, addr: u64, now: Pfn) {
        let mm = self.mm;
        let mut found = (0..mm.tlbs.cpus() as u32).filter_map(|cpu| {
            let cached = mm.tlbs.lookup(cpu, vpn(addr))?;
            mm.stale_translation(cpu, addr, cached, now, "still caches")
        });
        let Some((message, first)) = found.next() else { return };
        let mut cached = vec![first];
        cached.extend(found.map(|(_, c)| c));
        self.violation_cached(Oracle::StaleTranslation, message, cached);
    }

    /// `ptep_clear_flush()`: clear and flush this page from every TLB.
    pub fn ptep_clear_flush(&mut self, addr: u64, pte: PteRef<'_>) -> Pte {
        self.assert_held(pte.ptl, "ptep_clear_flush");
        self.charge(Cost::EntryClear, 1);
        let old = Pte(pte.entry.swap(0, Ordering::AcqRel));
        self.flush_tlb_range(addr, addr + PAGE_SIZE);
        old
    }

    /// `vm_normal_page()`: the page a present entry maps (no special pages
    /// in the model). The kernel takes `pte_pfn()` of whatever it is given,
    /// so its callers test `pte_present()` first; an entry that is not
    /// present is an api-contract violation here, and gets None.
    pub fn vm_normal_page(&self, _vma: &Vma, addr: u64, pte: Pte) -> Option<Pfn> {
        if !pte.is_present() {
            self.normal_page_of_non_present(addr, pte);
        }
        pte.pfn()
    }

    #[cold]
    #[inline(never)]
    fn normal_page_of_non_present(&self, addr: u64, pte: Pte) {
        self.violation(
            Oracle::ApiContract,
            format!(
                "vm_normal_page() of a non-present pte ({pte}) at {addr:#x}: the caller must test pte_present() \
                 first; the kernel would read the entry's bits as a pfn and return some unrelated page"
            ),
        );
    }

    /// `page_remove_rmap()`.
    #[inline]
    pub fn page_remove_rmap(&mut self, page: Pfn, _vma: &Vma, compound: bool) {
        self.charge(Cost::RmapUpdate, 1);
        if self.role == Role::Collapse && self.mm.config.oracles {
            self.clear_log.note_unmapped(page);
        }
        let p = self.mm.pages.get(page);
        let counter = if compound { &p.entire_mapcount } else { &p.mapcount };
        if counter.fetch_sub(1, Ordering::AcqRel) <= 0 {
            self.mapcount_underflow(page);
        }
    }

    #[cold]
    #[inline(never)]
    fn mapcount_underflow(&self, page: Pfn) {
        self.violation(Oracle::Accounting, format!("page_remove_rmap({page}) took mapcount below zero"));
    }

    /// `do_set_pte()` for a page-cache fault: map file subpage `page` into
    /// the entry `pte` (caller holds its `ptl` and has checked it is none),
    /// with the reference, rmap and mm counter the mapping implies.
    pub fn do_set_pte(&mut self, addr: u64, pte: PteRef<'_>, page: Pfn) {
        let counter = self.mm_counter_file(page);
        self.add_mm_counter(counter, 1);
        self.page_add_file_rmap(page);
        self.get_page(page);
        self.set_pte_at(addr, pte, Pte::present(page));
    }

    /// `page_add_file_rmap()` (PTE-mapped).
    pub fn page_add_file_rmap(&mut self, page: Pfn) {
        self.charge(Cost::RmapUpdate, 1);
        self.mm.pages.get(page).mapcount.fetch_add(1, Ordering::AcqRel);
    }

    /// `page_add_new_anon_rmap()`.
    pub fn page_add_new_anon_rmap(&mut self, page: Pfn) {
        self.charge(Cost::RmapUpdate, 1);
        self.mm.pages.get(page).mapcount.fetch_add(1, Ordering::AcqRel);
    }

    /// `pmdp_collapse_flush()`: clear the PMD and flush the 2 MiB range
    /// from every TLB. Caller holds `pml`, or excludes every path that
    /// takes it here as v6.1's `collapse_and_free_pmd()` does, by holding
    /// `mmap_lock` and the file's `i_mmap_rwsem` for write (the model has
    /// no anon_vma lock, the third it takes: see the v6.1 policy).
    pub fn pmdp_collapse_flush(&mut self, _vma: &Vma, haddr: u64, pmd: PmdRef) -> Pmd {
        if !(self.holds_for_write(LockClass::MmapLock) && self.holds_for_write(LockClass::IMmapRwsem)) {
            self.assert_held(self.pmd_lockptr(pmd), "pmdp_collapse_flush");
        }
        self.charge(Cost::EntryClear, 1);
        let old = Pmd(self.mm.pmds.entry(pmd.table, pmd.idx).swap(0, Ordering::AcqRel));
        self.engine.trace(self.cpu, Event::PmdClear);
        self.check_cleared_own_table(old);
        self.flush_tlb_range(haddr, haddr + HPAGE_PMD_SIZE);
        old
    }

    /// The stale-table rule at a collapse's `pmdp_collapse_flush()`: the
    /// PMD it cleared must have held the table the collapse looked up,
    /// the same allocation of it.
    fn check_cleared_own_table(&self, old: Pmd) {
        let Some((slot, releases)) = self.collapse_table.filter(|_| self.role == Role::Collapse) else { return };
        if old == Pmd::table(slot) && self.mm.tables.releases(slot) == releases {
            return;
        }
        let held = match old.kind() {
            PmdKind::None => "nothing (the table was freed and nobody refilled the PMD)".to_owned(),
            PmdKind::Table(s) if s == slot => format!("table {s} again, freed and reallocated meanwhile"),
            PmdKind::Table(s) => format!("PTE table {s}, allocated after table {slot} was freed"),
            PmdKind::Huge(p) => format!("a huge page ({p})"),
        };
        self.violation(
            Oracle::StaleTable,
            format!(
                "pmdp_collapse_flush() cleared a PMD that held {held}, where this collapse had looked up PTE table \
                 {slot}: it never checked what it is about to free (no pmd_same() under its locks)"
            ),
        );
    }

    /// `pmd_clear()`: empty a PMD, flushing nothing (the caller's
    /// mmu_gather owes the flush). Caller holds `pml`.
    pub fn pmd_clear(&mut self, pmd: PmdRef) {
        self.assert_held(self.pmd_lockptr(pmd), "pmd_clear");
        self.charge(Cost::EntryClear, 1);
        self.mm.pmds.entry(pmd.table, pmd.idx).store(0, Ordering::Release);
        self.engine.trace(self.cpu, Event::PmdClearOnly);
    }

    /// `tlb_remove_table_sync_one()`: an IPI to every CPU, waited for, so
    /// that a lockless walker (GUP-fast runs with interrupts off) that read
    /// the PMD before it was cleared has finished with the table. The
    /// model's lockless walkers are the CPUs inside an RCU read side; the
    /// call waits for every one that entered before it.
    pub fn tlb_remove_table_sync_one(&mut self) {
        let rcu = &self.mm.rcu;
        let (cpu, before) = (self.cpu, rcu.close_epoch());
        let ipis = (self.mm.tlbs.cpus() as u64).saturating_sub(1);
        self.charge(Cost::Ipi, ipis);
        self.metrics.counts.ipis += ipis;
        if !rcu.readers_before_gone(before, cpu) {
            self.engine.spin_until(Event::TableAlloc, || rcu.readers_before_gone(before, cpu));
        }
    }

    /// `anon_vma_prepare()`: give a private VMA its `anon_vma` (the first
    /// COW or uffd fill does), before the page that needs it is mapped.
    pub fn anon_vma_prepare(&mut self, vma: &Vma) {
        if !self.mm.has_anon_vma(vma) {
            self.mm.set_anon_vma(vma);
        }
    }

    /// `READ_ONCE(vma->anon_vma) != NULL`.
    pub fn vma_has_anon_vma(&self, vma: &Vma) -> bool {
        self.mm.has_anon_vma(vma)
    }

    /// `flush_tlb_range()`.
    pub fn flush_tlb_range(&mut self, start: u64, end: u64) {
        self.stamp_clears();
        let ipis = self.mm.tlbs.flush_range(self.cpu, vpn(start), (end - start) >> PAGE_SHIFT);
        self.charge(Cost::RangeFlush, 1);
        self.charge(Cost::Ipi, ipis);
        self.engine.trace(self.cpu, Event::FlushRange);
        self.metrics.counts.flush_range += 1;
        self.metrics.counts.ipis += ipis;
        if self.role == Role::Collapse {
            self.metrics.counts.collapse_flushes += 1;
            self.metrics.counts.collapse_ipis += ipis;
        }
    }

    /// `flush_tlb_mm()`: every TLB entry of the mm on every CPU.
    pub fn flush_tlb_mm(&mut self) {
        self.stamp_clears();
        let ipis = self.mm.tlbs.flush_all(self.cpu);
        self.charge(Cost::MmFlushBase, 1);
        self.charge(Cost::Ipi, ipis);
        self.engine.trace(self.cpu, Event::FlushMm);
        self.metrics.counts.flush_mm += 1;
        self.metrics.counts.ipis += ipis;
        if self.role == Role::Collapse {
            self.metrics.counts.collapse_flushes += 1;
            self.metrics.counts.collapse_ipis += ipis;
        }
    }

    /// `mmu_notifier_invalidate_range_start()`: may sleep.
    pub fn mmu_notifier_invalidate_range_start(&mut self, start: u64, end: u64) -> NotifierRange {
        self.might_sleep("mmu_notifier_invalidate_range_start");
        self.charge(Cost::Notifier, 1);
        self.notifier_ranges.push((start, end));
        self.mm.note_notifier(self.cpu, true);
        self.metrics.counts.notifier_ranges += 1;
        NotifierRange { start, end }
    }

    /// `mmu_notifier_invalidate_range_end()`. Ending a range this CPU did
    /// not start (a `NotifierRange` built by hand, or ended twice) is an
    /// api-contract violation, and is not counted as an end.
    pub fn mmu_notifier_invalidate_range_end(&mut self, range: NotifierRange) {
        self.charge(Cost::Notifier, 1);
        let Some(i) = self.notifier_ranges.iter().rposition(|&r| r == (range.start, range.end)) else {
            self.violation(
                Oracle::ApiContract,
                format!(
                    "mmu_notifier_invalidate_range_end() of {:#x}-{:#x} with no such range started on this CPU: \
                     a secondary MMU (KVM) would get an invalidate_range_end it never saw start, and its count \
                     of invalidations in progress would go below zero",
                    range.start, range.end
                ),
            );
            return;
        };
        self.notifier_ranges.remove(i);
        self.mm.note_notifier(self.cpu, false);
    }

    /// `mm_dec_nr_ptes()`.
    pub fn mm_dec_nr_ptes(&mut self) {
        self.mm.add_nr_ptes(self.cpu, -1);
    }

    /// `pte_free_defer()`: free a detached table after an RCU grace period,
    /// so that lockless walkers (GUP-fast, the hardware walker) that read
    /// the PMD before it was cleared can finish reading it. Checks as
    /// [`Self::pte_free`].
    pub fn pte_free_defer(&mut self, table: PgTable) {
        if let Some(slot) = self.free_checks("pte_free_defer", table) {
            self.engine.trace(self.cpu, Event::TableFree(slot));
            self.mm.tables.mark_deferred(slot);
            let tables = &self.mm.tables;
            self.mm.rcu.defer(slot, |s| tables.release(s));
        }
    }

    /// `pte_free()`: free a detached table now. Before v6.6 the collapse
    /// did this, safe only because `mmap_lock` for write kept every other
    /// walker out and `tlb_remove_table_sync_one()` waited for GUP-fast; in
    /// v6.6 a collapse holds `mmap_lock` for read only, so a lockless
    /// walker that read the PMD before `pmdp_collapse_flush()` may still
    /// be reading the table: it reports `use-after-free` when it reads
    /// the freed table. The model's TLB flush does not wait for walkers
    /// (as with broadcast TLB invalidation, which sends no IPI), so only
    /// the grace period of [`Self::pte_free_defer`] protects them. Runs
    /// the same checks first: a double free is `use-after-free`, a table
    /// still installed in a PMD is `api-contract` (and is not freed: the
    /// model leaks it rather than leave a PMD pointing at free memory), a
    /// table with an entry that is not none is `table-freed-live`.
    pub fn pte_free(&mut self, table: PgTable) {
        if let Some(slot) = self.free_checks("pte_free", table) {
            self.engine.trace(self.cpu, Event::TableFreeNow(slot));
            self.mm.tables.release(slot);
        }
    }

    /// What `pte_free()` and `pte_free_defer()` share: the checks (see
    /// [`Self::pte_free`]), the cost and the count. Returns the slot to
    /// free, or None when it must not be freed (not live, or still
    /// installed in a PMD).
    fn free_checks(&mut self, what: &str, table: PgTable) -> Option<u32> {
        let slot = table.0;
        if slot == PgTable::NOT_A_TABLE.0 {
            self.violation(
                Oracle::StaleTable,
                format!(
                    "{what}(pmd_pgtable(pmd)) of a PMD value that held no PTE table: the kernel would free \
                     whatever page the value's bits name"
                ),
            );
            return None;
        }
        let state = self.mm.tables.state(slot);
        if state != TableState::Live {
            self.violation(
                Oracle::UseAfterFree,
                format!("{what} of PTE table {slot} in state {state:?} (double free)"),
            );
            return None;
        }
        if let Some(r) = self.mm.range_mapping_table(slot) {
            self.violation(
                Oracle::ApiContract,
                format!(
                    "{what}() of PTE table {slot}, which the PMD of {:#x} still points to: a table is freed only \
                     after pmdp_collapse_flush() (or pmd_clear()) detached it, else every walker reaches freed \
                     memory",
                    self.mm.range_addr(r)
                ),
            );
            return None;
        }
        // page_table_check: one pass of loads; the report is built only on failure.
        if self.mm.tables.table(slot).iter().any(|e| e.load(Ordering::Acquire) != 0) {
            // An entry whose page this collapse already took out of the
            // rmap (v6.1 frees the table with them, under exclusive locks)
            // is dead, as page_table_check would count it.
            let dead = |p: &Pte| p.pfn().is_some_and(|pfn| self.clear_log.was_unmapped(pfn));
            let live: Vec<(usize, Pte)> = (0..PTRS_PER_PTE)
                .map(|i| (i, self.mm.tables.get(slot, i)))
                .filter(|(_, p)| !p.is_none() && !dead(p))
                .collect();
            if let Some(&(idx, pte)) = live.first() {
                let who = pte
                    .pfn()
                    .filter(|&p| self.mm.pages.get(p).is_anon())
                    .map(|p| {
                        format!(
                            " (anon page installed by {})",
                            installer_name(self.mm.pages.get(p).installer.load(Ordering::Relaxed))
                        )
                    })
                    .unwrap_or_default();
                let message = format!(
                    "{what}: PTE table {slot} freed with {} live entr{}: idx {idx} = {pte}{who}",
                    live.len(),
                    if live.len() == 1 { "y" } else { "ies" }
                );
                self.mm.violations.push(Violation {
                    oracle: Oracle::TableFreedLive,
                    cpu: Some(self.cpu),
                    step: Some(self.place().to_owned()),
                    message,
                    cached: vec![],
                    freed_live: live,
                });
            }
        }
        // The model charges an immediate free as the deferred one's
        // queueing: one page-allocator call either way, near enough.
        self.charge(Cost::TableFree, 1);
        self.metrics.counts.tables_freed += 1;
        Some(slot)
    }

    /// `set_huge_pmd()` in mm/khugepaged.c: `do_set_pmd()`, then a reference
    /// for the mapping.
    pub fn set_huge_pmd(&mut self, _vma: &Vma, _haddr: u64, pmd: PmdRef, hpage: Pfn) -> ScanResult {
        if !self.do_set_pmd(pmd, hpage) {
            return ScanResult::Fail;
        }
        self.get_page(hpage);
        ScanResult::Succeed
    }

    /// `do_set_pmd()` for a file huge page: under `pml`, map `hpage` by PMD
    /// if the PMD is still none, with the rmap and mm counter that implies
    /// (the caller takes the reference). False, mapping nothing, where the
    /// PMD is not none (the kernel's `VM_FAULT_FALLBACK`).
    pub fn do_set_pmd(&mut self, pmd: PmdRef, hpage: Pfn) -> bool {
        let pml = self.pmd_lock(pmd);
        if !self.mm.pmds.get(pmd.table, pmd.idx).is_none() {
            self.spin_unlock(pml);
            return false;
        }
        self.charge(Cost::RmapUpdate, 1);
        self.charge(Cost::EntryWrite, 1);
        self.mm.pages.get(hpage).entire_mapcount.fetch_add(1, Ordering::AcqRel);
        let counter = self.mm_counter_file(hpage);
        self.add_mm_counter(counter, HPAGE_PMD_NR as i64);
        self.mm.pmds.entry(pmd.table, pmd.idx).store(Pmd::huge(hpage).0, Ordering::Release);
        self.engine.trace(self.cpu, Event::PmdHuge);
        self.spin_unlock(pml);
        true
    }

    /// `pte_alloc_one()`: a zeroed table. When every spare table is waiting
    /// for a grace period, reclaim and, if need be, wait for one (as the
    /// kernel's allocator would reclaim rather than fail).
    pub(crate) fn pte_alloc_one(&mut self) -> u32 {
        let mm = self.mm;
        self.charge(Cost::PageAlloc, 1);
        let mut slot = mm.tables.alloc();
        if slot.is_none() {
            self.engine.sleep_until(Event::TableAlloc, || {
                mm.rcu.reclaim(|s| mm.tables.release(s));
                slot = mm.tables.alloc();
                slot.is_some()
            });
        }
        slot.expect("sleep_until returned with a table")
    }

    /// Fill table `slot` with range `r`'s pattern, charging each entry
    /// mapped its store, rmap and reference. Returns the entries mapped.
    pub(crate) fn populate_table(&mut self, r: u32, slot: u32) -> usize {
        let mapped = self.mm.populate_table(self.cpu, r, slot);
        self.charge(Cost::EntryWrite, mapped as u64);
        self.charge(Cost::RmapUpdate, mapped as u64);
        self.charge(Cost::PageRef, mapped as u64);
        mapped
    }
}

/// `range_in_vma()`.
pub fn range_in_vma(vma: &Vma, start: u64, end: u64) -> bool {
    vma.start <= start && end <= vma.end
}

/// `userfaultfd_armed()`: any of missing, wp, minor.
pub fn userfaultfd_armed(vma: &Vma) -> bool {
    vma.flags & (VM_UFFD_MISSING | VM_UFFD_WP | VM_UFFD_MINOR) != 0
}

/// `userfaultfd_wp()`.
pub fn userfaultfd_wp(vma: &Vma) -> bool {
    vma.flags & VM_UFFD_WP != 0
}

/// `linear_page_index()`.
pub fn linear_page_index(vma: &Vma, addr: u64) -> u64 {
    ((addr - vma.start) >> PAGE_SHIFT) + vma.pgoff
}

/// `pmd_offset()` in `mm` for an address inside one of its ranges (None
/// elsewhere); [`Cx::pmd_offset`] where a CPU asks.
pub fn pmd_offset(mm: &Mm, addr: u64) -> Option<PmdRef> {
    let (table, idx) = mm.range_pmd(mm.addr_range(addr)?);
    Some(PmdRef { table, idx })
}

/// `pmd_pgtable()`: the table a PMD value points to.
pub fn pmd_pgtable(pmd: Pmd) -> PgTable {
    match pmd.kind() {
        PmdKind::Table(slot) => PgTable(slot),
        _ => PgTable::NOT_A_TABLE,
    }
}

/// `pmd_same()`.
pub fn pmd_same(a: Pmd, b: Pmd) -> bool {
    a == b
}

/// Lockdep's rules as the primitives apply them ([`Cx::spin_lock`] and
/// [`Cx::spin_trylock`] feeding [`crate::lockdep`]'s graph).
#[cfg(test)]
mod lockdep_checks {
    use super::*;
    use crate::engine::Native;
    use crate::harness::Harness;
    use crate::lockdep::LockNode;
    use crate::mm::{FileKind, MmConfig};
    use std::time::Instant;

    const PML: LockNode = LockNode { class: LockClass::PmdLock, subclass: 0 };
    const PTL: LockNode = LockNode { class: LockClass::PteLock, subclass: 0 };
    const PTL1: LockNode = LockNode { class: LockClass::PteLock, subclass: 1 };

    fn mm(ranges: usize) -> Mm {
        Mm::new(MmConfig {
            ranges: vec![0; ranges],
            file: FileKind::Shmem,
            split_pmd_ptlocks: true,
            split_pte_ptlocks: true,
            cpus: 2,
            density: 0,
            anon_pages: 4,
            spare_tables: 2,
            oracles: true,
            ranges_per_pmd_table: crate::mm::RANGES_PER_PMD_TABLE,
        })
        .unwrap()
    }

    fn cx(mm: &Mm, cpu: u32) -> Cx<'_, Native> {
        Cx::new(mm, cpu, Role::Collapse, Native::new(Instant::now(), None, false))
    }

    fn lock_order(mm: &Mm) -> Vec<String> {
        mm.violations.snapshot().0.into_iter().filter(|v| v.oracle == Oracle::LockOrder).map(|v| v.message).collect()
    }

    #[test]
    fn a_violation_outside_a_collapse_names_the_path_not_the_last_collapse_step() {
        let mm = mm(1);
        let ptl = mm.pte_lock_id(0);
        let mut c = cx(&mm, 0);
        c.step(Step::Install);
        c.spin_unlock(ptl);
        c.set_role(Role::Restore);
        c.spin_unlock(ptl);
        let places: Vec<Option<String>> = mm.violations.snapshot().0.into_iter().map(|v| v.step).collect();
        assert_eq!(places, vec![Some("step 5 (install pmd)".to_owned()), Some("the range restore".to_owned())]);
    }

    #[test]
    fn a_trylock_adds_no_edge_but_serves_as_the_held_lock() {
        let mm = mm(2);
        let (pml, ptl0, ptl1) = (mm.pmd_lock_id(0), mm.pte_lock_id(0), mm.pte_lock_id(1));
        let mut c = cx(&mm, 0);
        c.spin_lock(ptl0);
        assert!(c.spin_trylock(pml), "uncontended");
        assert!(mm.lockdep.dependencies().is_empty(), "a trylock cannot wait");
        // pml, held by trylock, is the outer lock of ptl 1.
        c.spin_lock_nested(ptl1, SINGLE_DEPTH_NESTING);
        let deps: Vec<(LockNode, LockNode)> = mm.lockdep.dependencies().iter().map(|d| (d.from, d.to)).collect();
        assert!(deps.contains(&(PML, PTL1)) && deps.contains(&(PTL, PTL1)), "{deps:?}");
        assert!(!deps.iter().any(|&(_, to)| to == PML), "{deps:?}");
        c.spin_unlock(ptl1);
        c.spin_unlock(pml);
        c.spin_unlock(ptl0);
        assert!(lock_order(&mm).is_empty(), "{:#?}", lock_order(&mm));
    }

    #[test]
    fn abba_on_two_cpus_is_reported_once_without_deadlocking() {
        let mm = mm(2);
        let (pml, ptl) = (mm.pmd_lock_id(0), mm.pte_lock_id(0));
        let (mut a, mut b) = (cx(&mm, 0), cx(&mm, 1));
        // CPU 1, restoring: pml, then ptl without the nesting annotation
        // (legal by the order rule: pml -> ptl).
        b.set_role(Role::Restore);
        b.spin_lock(pml);
        b.spin_lock(ptl);
        b.spin_unlock(ptl);
        b.spin_unlock(pml);
        assert!(lock_order(&mm).is_empty());
        // CPU 0, collapsing, later: ptl then pml, blocking. Never met CPU 1.
        for _ in 0..3 {
            a.spin_lock(ptl);
            a.spin_lock(pml);
            a.spin_unlock(pml);
            a.spin_unlock(ptl);
        }
        let found = lock_order(&mm);
        assert_eq!(found.len(), 1, "{found:#?}");
        let text = &found[0];
        for want in [
            "WARNING: possible circular locking dependency detected\n",
            "CPU 0 (collapse) is trying to acquire lock:\n (pml){+.+.}, pml (PMD table 0), at: prologue\n",
            "but CPU 0 is already holding lock:\n (ptl){+.+.}, ptl (PTE table 0)\n",
            "which lock already depends on the new lock.\n",
            "lock order pml -> ptl",
            "-> #1 (ptl){+.+.}:\n       ptl (PTE table 0), taken while holding pml (PMD table 0)\n       \
             by CPU 1 (restore)\n",
            "  lock(ptl);\n                               lock(pml);\n                               lock(ptl);\n  \
             lock(pml);\n",
            " *** DEADLOCK ***",
            "1 lock held by CPU 0 (collapse):\n #0: (ptl){+.+.}, ptl (PTE table 0)\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn the_order_rule_shows_the_other_half_under_a_nesting_annotation() {
        let mm = mm(2);
        let (pml, ptl) = (mm.pmd_lock_id(0), mm.pte_lock_id(0));
        let (mut a, mut b) = (cx(&mm, 0), cx(&mm, 1));
        // CPU 1 restores as the workloads do: pml, then ptl/1.
        b.set_role(Role::Restore);
        b.spin_lock(pml);
        b.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING);
        b.spin_unlock(ptl);
        b.spin_unlock(pml);
        // CPU 0 at step 4 with ptl held takes pml blocking: ptl/1 is a node
        // of its own, so no cycle; the order rule reports, with the chain.
        a.step(Step::RemoveTable);
        a.spin_lock(ptl);
        a.spin_lock(pml);
        a.spin_unlock(pml);
        a.spin_unlock(ptl);
        let found = lock_order(&mm);
        assert_eq!(found.len(), 1, "{found:#?}");
        let text = &found[0];
        for want in [
            "WARNING: possible circular locking dependency detected\n",
            "CPU 0 (collapse) is trying to acquire lock:\n (pml){+.+.}, pml (PMD table 0), at: step 4 (remove table)\n",
            "which breaks the lock order pml -> ptl",
            "ptl/1 is ptl under a nesting",
            "-> #1 (ptl/1){+.+.}:\n       ptl (PTE table 0), taken while holding pml (PMD table 0)\n       \
             by CPU 1 (restore)\n",
            "  lock(ptl);\n                               lock(pml);\n                               lock(ptl/1);\n  \
             lock(pml);\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn the_order_rule_reports_before_any_cycle_and_recursion_is_named() {
        let mm = mm(2);
        let (pml, ptl0, ptl1) = (mm.pmd_lock_id(0), mm.pte_lock_id(0), mm.pte_lock_id(1));
        let mut c = cx(&mm, 0);
        for _ in 0..2 {
            c.spin_lock(ptl0);
            c.spin_lock(pml);
            c.spin_unlock(pml);
            c.spin_unlock(ptl0);
        }
        c.spin_lock(ptl0);
        c.spin_lock(ptl1);
        c.spin_unlock(ptl1);
        c.spin_unlock(ptl0);
        let found = lock_order(&mm);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].contains("which breaks the lock order pml -> ptl"), "{}", found[0]);
        assert!(found[0].contains("No CPU has taken them the other way round yet"), "{}", found[0]);
        assert!(found[0].contains("Possible unsafe locking scenario"), "{}", found[0]);
        assert!(found[1].starts_with("WARNING: possible recursive locking detected\n"), "{}", found[1]);
        assert!(found[1].contains("May be due to missing lock nesting notation"), "{}", found[1]);
        // Now the other half, legal by the order rule: the graph closes it.
        c.spin_lock(pml);
        c.spin_lock(ptl0);
        c.spin_unlock(ptl0);
        c.spin_unlock(pml);
        let found = lock_order(&mm);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(found[2].contains("is trying to acquire lock:\n (ptl){+.+.}"), "{}", found[2]);
        assert!(found[2].contains("which lock already depends on the new lock."), "{}", found[2]);
    }
}

/// The api-contract checks, and the two ways to free a table.
#[cfg(test)]
mod contract_checks {
    use super::*;
    use crate::engine::Native;
    use crate::harness::Harness;
    use crate::mm::{MmConfig, MAP_BASE};
    use crate::pte::PteMarker;
    use std::time::Instant;

    fn mm(density: u32) -> Mm {
        Mm::new(MmConfig { density, anon_pages: 4, spare_tables: 2, ..MmConfig::one_range(2) }).unwrap()
    }

    fn cx(mm: &Mm, cpu: u32) -> Cx<'_, Native> {
        Cx::new(mm, cpu, Role::Collapse, Native::new(Instant::now(), None, false))
    }

    fn found(mm: &Mm) -> Vec<(Oracle, String)> {
        mm.violations.snapshot().0.into_iter().map(|v| (v.oracle, v.message)).collect()
    }

    /// Range 0's PMD and the table slot it holds.
    fn table_of_range_0(mm: &Mm) -> (PmdRef, u32) {
        let pmd = pmd_offset(mm, MAP_BASE).unwrap();
        let PmdKind::Table(slot) = mm.pmds.get(pmd.table, pmd.idx).kind() else { panic!("range 0 has a table") };
        (pmd, slot)
    }

    /// Clear range 0's PMD as step 4 does; returns the detached table.
    fn detach(c: &mut Cx<'_, Native>, pmd: PmdRef) -> PgTable {
        let vma = c.vma_lookup(MAP_BASE).unwrap();
        let pml = c.pmd_lock(pmd);
        let old = c.pmdp_collapse_flush(vma, MAP_BASE, pmd);
        c.spin_unlock(pml);
        pmd_pgtable(old)
    }

    #[test]
    fn vm_normal_page_of_an_entry_that_is_not_present_breaks_the_contract() {
        let mm = mm(0);
        let c = cx(&mm, 0);
        let (addr, page) = (MAP_BASE, mm.file_hpage(0));
        let vma = c.vma_lookup(addr).unwrap();
        assert_eq!(c.vm_normal_page(vma, addr, Pte::present(page)), Some(page));
        assert!(found(&mm).is_empty());
        for pte in [Pte::swap(5), Pte::migration(page), Pte::marker(PteMarker::Guard), Pte::NONE] {
            assert_eq!(c.vm_normal_page(vma, addr, pte), None, "{pte}");
        }
        let found = found(&mm);
        let kinds = ["swap entry 0x5", "migration entry for pfn 0x200", "guard marker", "none"];
        assert_eq!(found.len(), kinds.len(), "{found:#?}");
        for ((oracle, message), kind) in found.iter().zip(kinds) {
            assert_eq!(*oracle, Oracle::ApiContract);
            let want = format!("vm_normal_page() of a non-present pte ({kind}) at {addr:#x}: the caller must test");
            assert!(message.starts_with(&want), "{message}");
            assert!(message.contains("read the entry's bits as a pfn"), "{message}");
        }
    }

    #[test]
    fn pte_unmap_pairs_with_a_map_and_none_is_left_at_return() {
        let mm = mm(512);
        let (pmd, slot) = table_of_range_0(&mm);
        let mut c = cx(&mm, 0);
        let (map, _) = c.pte_offset_map_nolock(pmd, MAP_BASE).unwrap();
        assert_eq!(c.rcu_depth, 1);
        c.pte_unmap(map);
        assert_eq!(c.rcu_depth, 0);
        assert!(found(&mm).is_empty());
        // Again: nothing is mapped, and the RCU read side is left alone.
        c.pte_unmap(map);
        assert_eq!(c.rcu_depth, 0);
        // Mapped and never unmapped: found, and released, at return.
        let _kept = c.pte_offset_map_nolock(pmd, MAP_BASE).unwrap();
        c.check_clean_return("test-policy");
        assert_eq!((c.rcu_depth, c.pte_maps.len()), (0, 0));
        let found = found(&mm);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert_eq!((found[0].0, found[1].0), (Oracle::ApiContract, Oracle::ApiContract));
        let unmap = format!("pte_unmap() of PTE table {slot} with no pte_offset_map() of it outstanding on this CPU");
        assert!(found[0].1.starts_with(&unmap), "{}", found[0].1);
        let kept = format!("test-policy returned with PTE table(s) {slot} still mapped: pte_offset_map() without");
        assert!(found[1].1.starts_with(&kept), "{}", found[1].1);
    }

    #[test]
    fn a_notifier_range_is_ended_once_and_only_once_started() {
        let mm = mm(0);
        let mut c = cx(&mm, 0);
        let (start, end) = (MAP_BASE, MAP_BASE + HPAGE_PMD_SIZE);
        let range = c.mmu_notifier_invalidate_range_start(start, end);
        c.mmu_notifier_invalidate_range_end(range);
        assert!(found(&mm).is_empty());
        c.mmu_notifier_invalidate_range_end(NotifierRange { start, end });
        assert_eq!(mm.notifier_counts(), (1, 1), "the unmatched end is not counted");
        let _never_ended = c.mmu_notifier_invalidate_range_start(start, end);
        c.check_clean_return("test-policy");
        let found = found(&mm);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert_eq!((found[0].0, found[1].0), (Oracle::ApiContract, Oracle::ApiContract));
        let unmatched =
            format!("mmu_notifier_invalidate_range_end() of {start:#x}-{end:#x} with no such range started");
        assert!(found[0].1.starts_with(&unmatched), "{}", found[0].1);
        assert!(
            found[1].1.starts_with("test-policy returned with 1 mmu-notifier range(s) started and never ended"),
            "{}",
            found[1].1
        );
    }

    #[test]
    fn pte_free_frees_only_a_detached_table_and_does_not_wait_for_readers() {
        let mm = mm(0);
        let (pmd, slot) = table_of_range_0(&mm);
        let mut c = cx(&mm, 0);
        // Still installed: reported and not freed.
        c.pte_free(PgTable(slot));
        assert_eq!(mm.tables.state(slot), TableState::Live);
        let table = detach(&mut c, pmd);
        // CPU 1 is inside rcu_read_lock(), as a walker that read the PMD
        // before the clear would be: pte_free() does not wait for it.
        let mut reader = cx(&mm, 1);
        reader.rcu_read_lock();
        let releases = mm.tables.releases(slot);
        c.pte_free(table);
        assert_eq!((mm.tables.state(slot), mm.tables.releases(slot)), (TableState::Free, releases + 1));
        reader.rcu_read_unlock();
        c.pte_free(table);
        let found = found(&mm);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert_eq!(found[0].0, Oracle::ApiContract);
        let attached = format!("pte_free() of PTE table {slot}, which the PMD of {:#x} still points to", MAP_BASE);
        assert!(found[0].1.starts_with(&attached), "{}", found[0].1);
        assert_eq!(
            found[1],
            (Oracle::UseAfterFree, format!("pte_free of PTE table {slot} in state Free (double free)"))
        );
    }

    #[test]
    fn pte_free_defer_waits_for_every_cpu_inside_rcu_when_it_was_queued() {
        let mm = mm(0);
        let (pmd, slot) = table_of_range_0(&mm);
        let mut c = cx(&mm, 0);
        let table = detach(&mut c, pmd);
        let mut reader = cx(&mm, 1);
        reader.rcu_read_lock();
        let releases = mm.tables.releases(slot);
        c.pte_free_defer(table);
        mm.rcu.reclaim(|s| mm.tables.release(s));
        assert_eq!((mm.tables.state(slot), mm.tables.releases(slot)), (TableState::Deferred, releases));
        // A reader that enters after the free does not hold it back.
        c.rcu_read_lock();
        reader.rcu_read_unlock();
        mm.rcu.reclaim(|s| mm.tables.release(s));
        assert_eq!((mm.tables.state(slot), mm.tables.releases(slot)), (TableState::Free, releases + 1));
        c.rcu_read_unlock();
        assert!(found(&mm).is_empty(), "{:#?}", found(&mm));
    }
}
