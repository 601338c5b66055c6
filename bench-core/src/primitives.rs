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
use crate::engine::{Engine, Event, Step};
use crate::metrics::{installer_code, installer_name, Metrics, Role};
use crate::mm::{
    addr_range, pmd_slot_of, pmd_table_of, vpn, LockClass, LockId, Mm, MmCounter, Vma, VM_UFFD_MINOR, VM_UFFD_MISSING,
    VM_UFFD_WP,
};
use crate::oracle::Oracle;
use crate::pgtable::TableState;
use crate::policy::{DynPolicy, ScanResult};
use crate::pte::{
    Pfn, Pmd, PmdKind, Pte, HPAGE_PMD_MASK, HPAGE_PMD_NR, HPAGE_PMD_SIZE, PAGE_SHIFT, PAGE_SIZE, PTRS_PER_PTE,
};
use std::sync::atomic::Ordering;

/// `SINGLE_DEPTH_NESTING` for [`Cx::spin_lock_nested`].
pub const SINGLE_DEPTH_NESTING: u32 = 1;

/// A PMD slot (`pmd_t *`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PmdRef {
    /// PMD table.
    pub table: u32,
    /// Slot in it.
    pub idx: u32,
}

/// A mapped PTE table (`pte_t *start_pte` from `pte_offset_map*`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PteMap {
    /// Table slot in the pool.
    pub slot: u32,
}

impl PteMap {
    /// `start_pte + i`.
    pub fn at(self, i: usize) -> PteRef {
        PteRef { slot: self.slot, idx: i }
    }
}

/// One PTE (`pte_t *`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PteRef {
    /// Table slot.
    pub slot: u32,
    /// Index 0..512.
    pub idx: usize,
}

/// A detached page table (`pgtable_t`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PgTable(pub u32);

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
struct Held {
    id: LockId,
    since: u64,
    subclass: u32,
}

/// Entries a collapse cleared, for the stale-TLB oracle.
#[derive(Default)]
struct ClearLog {
    hpage: Option<Pfn>,
    /// (virtual page, frame it mapped, oracle clock tick at the clear)
    cleared: Vec<(u64, Pfn, u64)>,
}

/// A model CPU: the engine it runs on, the mm, and its own measurements.
pub struct Cx<'a, E: Engine> {
    /// The address space.
    pub mm: &'a Mm,
    /// The engine.
    pub engine: E,
    /// This CPU's measurements.
    pub metrics: Metrics,
    cpu: u32,
    role: Role,
    held: Vec<Held>,
    rcu_depth: u32,
    notifier_depth: u32,
    step: Step,
    in_cpumask: bool,
    clear_log: ClearLog,
}

impl<'a, E: Engine> Cx<'a, E> {
    /// Context for model CPU `cpu` acting as `role`.
    pub fn new(mm: &'a Mm, cpu: u32, role: Role, engine: E) -> Self {
        assert!(cpu < mm.config.cpus, "CPU {cpu} beyond the model's {} CPUs", mm.config.cpus);
        Cx {
            mm,
            engine,
            metrics: Metrics::default(),
            cpu,
            role,
            held: Vec::with_capacity(4),
            rcu_depth: 0,
            notifier_depth: 0,
            step: Step::Prologue,
            in_cpumask: false,
            clear_log: ClearLog::default(),
        }
    }

    /// `smp_processor_id()`.
    pub fn cpu(&self) -> u32 {
        self.cpu
    }

    /// What the CPU is doing now.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Attribute what follows to `role`.
    pub fn set_role(&mut self, role: Role) {
        self.role = role;
    }

    /// Time now from the engine, ns.
    pub fn now_ns(&mut self) -> u64 {
        self.engine.now_ns()
    }

    /// `ndelay()`: keep this CPU busy for `ns` (on the engine's clock).
    pub fn ndelay(&mut self, ns: u64) {
        self.engine.busy_wait(ns);
    }

    /// Think time between an actor's operations: the CPU is given away.
    pub fn pause(&mut self, ns: u64) {
        self.engine.idle(ns);
    }

    /// Charge the simulation engine `n` times `cost` (other engines
    /// ignore it). The primitives charge for themselves; an actor or a
    /// policy calls this only for work done outside them. The oracles'
    /// work and the workload's restore of a collapsed range are free in
    /// virtual time: they are the harness's, not the kernel's, and would
    /// otherwise hold `pml` against the neighbours being measured.
    #[inline(always)]
    pub fn charge(&mut self, cost: Cost, n: u64) {
        if E::PREEMPTS && !matches!(self.role, Role::Oracle | Role::Restore) {
            self.engine.charge(cost, n);
        }
    }

    /// Locks held now, innermost last.
    pub fn held_locks(&self) -> Vec<LockId> {
        self.held.iter().map(|h| h.id).collect()
    }

    /// Mark a step of the collapse (hooks, timelines, recheck counting).
    pub fn step(&mut self, step: Step) {
        self.step = step;
        if step == Step::Recheck {
            self.metrics.counters.recheck_passes += 1;
        }
        self.engine.trace(self.cpu, Event::Step(step));
        self.engine.step(self.cpu, step);
    }

    /// The step last marked.
    pub fn current_step(&self) -> Step {
        self.step
    }

    fn violation(&self, oracle: Oracle, message: String) {
        self.mm.report(oracle, Some(self.cpu), Some(self.step.label()), message);
    }

    // ---------------------------------------------------------------
    // VMAs and the page cache
    // ---------------------------------------------------------------

    /// `vma_lookup()`.
    pub fn vma_lookup(&self, addr: u64) -> Option<&'a Vma> {
        let vma = &self.mm.vmas[addr_range(addr)? as usize];
        (vma.start..vma.end).contains(&addr).then_some(vma)
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
        let page = self.page_cache_lookup(Self::linear_page_index(vma, addr))?;
        self.get_page(page);
        self.lock_page(page);
        if self.role == Role::Collapse {
            self.clear_log.hpage = Some(page);
            self.clear_log.cleared.clear();
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
            self.violation(
                Oracle::StaleTlb,
                format!(
                    "collapse dropped the page lock with {} translation(s) it cleared still cached: CPU {cpu} maps {:#x} -> {pfn}, \
                     whose PTE was cleared ({} entries cleared, none flushed from that TLB)",
                    stale.len(),
                    vpn << PAGE_SHIFT,
                    self.clear_log.cleared.len()
                ),
            );
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
            let class = self.mm.lock_class(id).name().to_owned();
            *self.metrics.counters.trylock_failures.entry(class).or_default() += 1;
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
    fn assert_held(&self, id: LockId, what: &str) {
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
    fn might_sleep(&self, what: &str) {
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

    /// `pmd_offset()` for an address inside the model (None outside it).
    pub fn pmd_offset(addr: u64) -> Option<PmdRef> {
        let r = addr_range(addr)?;
        Some(PmdRef { table: pmd_table_of(r), idx: pmd_slot_of(r) })
    }

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
        let Some(pmd) = Self::pmd_offset(addr) else {
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
    fn holds(&self, id: LockId) -> bool {
        self.held.iter().any(|h| h.id == id)
    }

    fn rcu_read_lock(&mut self) {
        if self.rcu_depth == 0 {
            self.mm.rcu.enter(self.cpu);
        }
        self.rcu_depth += 1;
    }

    fn rcu_read_unlock(&mut self) {
        self.rcu_depth -= 1;
        if self.rcu_depth == 0 {
            self.mm.rcu.exit(self.cpu);
        }
    }

    /// `pte_offset_map_nolock()`: map the table under RCU without locking
    /// it; also returns its `ptl`. None if the PMD no longer holds a table.
    pub fn pte_offset_map_nolock(&mut self, pmd: PmdRef, _addr: u64) -> Option<(PteMap, LockId)> {
        self.rcu_read_lock();
        match self.pmdp_get_lockless(pmd).kind() {
            PmdKind::Table(slot) => Some((PteMap { slot }, self.mm.pte_lock_id(slot))),
            _ => {
                self.rcu_read_unlock();
                None
            }
        }
    }

    /// `pte_offset_map_lock()`: map and lock, rechecking after the lock
    /// that the PMD still points to the same table (else retry).
    pub fn pte_offset_map_lock(&mut self, pmd: PmdRef, addr: u64) -> Option<(PteMap, LockId)> {
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

    /// `pte_unmap()`: leave the RCU read side entered by `pte_offset_map*`.
    pub fn pte_unmap(&mut self, _pte: PteMap) {
        self.rcu_read_unlock();
    }

    /// `pte_unmap_unlock()`.
    pub fn pte_unmap_unlock(&mut self, pte: PteMap, ptl: LockId) {
        self.spin_unlock(ptl);
        self.pte_unmap(pte);
    }

    /// `ptep_get()`.
    #[inline]
    pub fn ptep_get(&mut self, pte: PteRef) -> Pte {
        if E::PREEMPTS && !self.holds(self.mm.pte_lock_id(pte.slot)) {
            self.engine.sched_point(self.cpu, Event::LocklessRead);
        }
        self.charge(Cost::EntryRead, 1);
        self.mm.tables.get(pte.slot, pte.idx)
    }

    /// `ptep_clear()`: clear without flushing. The flush is owed; the caller
    /// pays it (`pmdp_collapse_flush`, or `flush_tlb_mm` on abort).
    #[inline]
    pub fn ptep_clear(&mut self, addr: u64, pte: PteRef) {
        self.assert_held(self.mm.pte_lock_id(pte.slot), "ptep_clear");
        self.charge(Cost::EntryClear, 1);
        let old = Pte(self.mm.tables.entry(pte.slot, pte.idx).swap(0, Ordering::AcqRel));
        self.engine.trace(self.cpu, Event::PteClear(pte.idx as u16));
        // The log feeds only the stale-TLB oracle: skip it when oracles are off.
        if let (true, Some(pfn), Some(_)) = (self.mm.config.oracles, old.pfn(), self.clear_log.hpage) {
            // Stamped with the oracle clock at the next unlock or flush (see
            // `stamp_clears`): one clock tick per batch, not per entry.
            self.clear_log.cleared.push((vpn(addr), pfn, 0));
        }
    }

    /// Give the clears not yet stamped one oracle clock tick. Sound because
    /// it runs before anything could map `hpage + i` at a cleared address
    /// again (the page lock keeps faults out; the PMD is installed only
    /// after `pml`/`ptl` are dropped): any TLB fill of a cleared (address,
    /// frame) pair began its walk before the clear, so before this tick.
    fn stamp_clears(&mut self) {
        if !self.mm.config.oracles || self.clear_log.cleared.last().is_none_or(|c| c.2 != 0) {
            return;
        }
        let tick = self.mm.tlbs.tick();
        for c in self.clear_log.cleared.iter_mut().rev().take_while(|c| c.2 == 0) {
            c.2 = tick;
        }
    }

    /// `set_pte_at()`.
    pub fn set_pte_at(&mut self, _addr: u64, pte: PteRef, val: Pte) {
        self.assert_held(self.mm.pte_lock_id(pte.slot), "set_pte_at");
        self.charge(Cost::EntryWrite, 1);
        self.mm.tables.entry(pte.slot, pte.idx).store(val.0, Ordering::Release);
        self.engine.trace(self.cpu, Event::PteSet(pte.idx as u16, val));
    }

    /// `ptep_clear_flush()`: clear and flush this page from every TLB.
    pub fn ptep_clear_flush(&mut self, addr: u64, pte: PteRef) -> Pte {
        self.assert_held(self.mm.pte_lock_id(pte.slot), "ptep_clear_flush");
        self.charge(Cost::EntryClear, 1);
        let old = Pte(self.mm.tables.entry(pte.slot, pte.idx).swap(0, Ordering::AcqRel));
        self.flush_tlb_range(addr, addr + PAGE_SIZE);
        old
    }

    /// `vm_normal_page()`: the page a present entry maps (no special pages in the model).
    pub fn vm_normal_page(&self, _vma: &Vma, _addr: u64, pte: Pte) -> Option<Pfn> {
        pte.pfn()
    }

    /// `page_remove_rmap()`.
    #[inline]
    pub fn page_remove_rmap(&mut self, page: Pfn, _vma: &Vma, compound: bool) {
        self.charge(Cost::RmapUpdate, 1);
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
    pub fn do_set_pte(&mut self, addr: u64, pte: PteRef, page: Pfn) {
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
    /// from every TLB. Caller holds `pml`.
    pub fn pmdp_collapse_flush(&mut self, _vma: &Vma, haddr: u64, pmd: PmdRef) -> Pmd {
        self.assert_held(self.pmd_lockptr(pmd), "pmdp_collapse_flush");
        self.charge(Cost::EntryClear, 1);
        let old = Pmd(self.mm.pmds.entry(pmd.table, pmd.idx).swap(0, Ordering::AcqRel));
        self.engine.trace(self.cpu, Event::PmdClear);
        self.flush_tlb_range(haddr, haddr + HPAGE_PMD_SIZE);
        old
    }

    /// `flush_tlb_range()`.
    pub fn flush_tlb_range(&mut self, start: u64, end: u64) {
        self.stamp_clears();
        let ipis = self.mm.tlbs.flush_range(self.cpu, vpn(start), (end - start) >> PAGE_SHIFT);
        self.charge(Cost::RangeFlush, 1);
        self.charge(Cost::Ipi, ipis);
        self.engine.trace(self.cpu, Event::FlushRange);
        self.metrics.counters.flush_range += 1;
        self.metrics.counters.ipis += ipis;
        if self.role == Role::Collapse {
            self.metrics.counters.collapse_flushes += 1;
            self.metrics.counters.collapse_ipis += ipis;
        }
    }

    /// `flush_tlb_mm()`: every TLB entry of the mm on every CPU.
    pub fn flush_tlb_mm(&mut self) {
        self.stamp_clears();
        let ipis = self.mm.tlbs.flush_all(self.cpu);
        self.charge(Cost::MmFlushBase, 1);
        self.charge(Cost::Ipi, ipis);
        self.engine.trace(self.cpu, Event::FlushMm);
        self.metrics.counters.flush_mm += 1;
        self.metrics.counters.ipis += ipis;
        if self.role == Role::Collapse {
            self.metrics.counters.collapse_flushes += 1;
            self.metrics.counters.collapse_ipis += ipis;
        }
    }

    /// `mmu_notifier_invalidate_range_start()`: may sleep.
    pub fn mmu_notifier_invalidate_range_start(&mut self, start: u64, end: u64) -> NotifierRange {
        self.might_sleep("mmu_notifier_invalidate_range_start");
        self.charge(Cost::Notifier, 1);
        self.notifier_depth += 1;
        self.mm.note_notifier(self.cpu, true);
        self.metrics.counters.notifier_ranges += 1;
        NotifierRange { start, end }
    }

    /// `mmu_notifier_invalidate_range_end()`.
    pub fn mmu_notifier_invalidate_range_end(&mut self, range: NotifierRange) {
        let _ = (range.start, range.end);
        self.charge(Cost::Notifier, 1);
        self.notifier_depth -= 1;
        self.mm.note_notifier(self.cpu, false);
    }

    /// `mm_dec_nr_ptes()`.
    pub fn mm_dec_nr_ptes(&mut self) {
        self.mm.add_nr_ptes(self.cpu, -1);
    }

    /// `pmd_pgtable()`: the table a PMD value points to.
    pub fn pmd_pgtable(pmd: Pmd) -> PgTable {
        match pmd.kind() {
            PmdKind::Table(slot) => PgTable(slot),
            other => panic!("pmd_pgtable() of a PMD that holds no table: {other:?}"),
        }
    }

    /// `pte_free_defer()`: free after a grace period. Runs the kernel's
    /// page_table_check first: a table freed with a non-none entry is the
    /// bug this project exists to show.
    pub fn pte_free_defer(&mut self, table: PgTable) {
        let slot = table.0;
        let state = self.mm.tables.state(slot);
        if state != TableState::Live {
            self.violation(
                Oracle::UseAfterFree,
                format!("pte_free_defer of PTE table {slot} in state {state:?} (double free)"),
            );
            return;
        }
        // page_table_check: one pass of loads; the report is built only on failure.
        if self.mm.tables.table(slot).iter().any(|e| e.load(Ordering::Acquire) != 0) {
            let live: Vec<(usize, Pte)> =
                (0..PTRS_PER_PTE).map(|i| (i, self.mm.tables.get(slot, i))).filter(|(_, p)| !p.is_none()).collect();
            let (idx, pte) = live[0];
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
            self.violation(
                Oracle::TableFreedLive,
                format!(
                    "pte_free_defer: PTE table {slot} freed with {} live entr{}: idx {idx} = {pte}{who}",
                    live.len(),
                    if live.len() == 1 { "y" } else { "ies" }
                ),
            );
        }
        self.engine.trace(self.cpu, Event::TableFree(slot));
        self.charge(Cost::TableFree, 1);
        self.mm.tables.mark_deferred(slot);
        self.metrics.counters.tables_freed += 1;
        let tables = &self.mm.tables;
        self.mm.rcu.defer(slot, |s| tables.release(s));
    }

    /// `set_huge_pmd()` (via `do_set_pmd()`): map `hpage` by PMD if the PMD
    /// is still none, and take a reference for the mapping.
    pub fn set_huge_pmd(&mut self, _vma: &Vma, _haddr: u64, pmd: PmdRef, hpage: Pfn) -> ScanResult {
        let pml = self.pmd_lock(pmd);
        if !self.mm.pmds.get(pmd.table, pmd.idx).is_none() {
            self.spin_unlock(pml);
            return ScanResult::Fail;
        }
        self.charge(Cost::RmapUpdate, 1);
        self.charge(Cost::EntryWrite, 1);
        self.mm.pages.get(hpage).entire_mapcount.fetch_add(1, Ordering::AcqRel);
        let counter = self.mm_counter_file(hpage);
        self.add_mm_counter(counter, HPAGE_PMD_NR as i64);
        self.mm.pmds.entry(pmd.table, pmd.idx).store(Pmd::huge(hpage).0, Ordering::Release);
        self.engine.trace(self.cpu, Event::PmdHuge);
        self.spin_unlock(pml);
        self.get_page(hpage);
        ScanResult::Succeed
    }

    // ---------------------------------------------------------------
    // What the other actors need
    // ---------------------------------------------------------------

    /// `pte_alloc_one()`: a zeroed table. When every spare table is waiting
    /// for a grace period, reclaim and, if need be, wait for one (as the
    /// kernel's allocator would reclaim rather than fail).
    fn pte_alloc_one(&mut self) -> u32 {
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

    /// `__pte_alloc()`: if the PMD is none, install a fresh empty table
    /// under `pml` (another CPU may have installed one meanwhile).
    pub fn pte_alloc(&mut self, pmd: PmdRef) {
        if !self.pmdp_get_lockless(pmd).is_none() {
            return;
        }
        let slot = self.pte_alloc_one();
        let pml = self.pmd_lock(pmd);
        let entry = self.mm.pmds.entry(pmd.table, pmd.idx);
        let installed = entry.load(Ordering::Acquire) == 0;
        if installed {
            self.charge(Cost::EntryWrite, 1);
            self.mm.add_nr_ptes(self.cpu, 1);
            entry.store(Pmd::table(slot).0, Ordering::Release);
        }
        self.spin_unlock(pml);
        if !installed {
            self.mm.tables.release(slot);
        }
    }

    /// Install, under `pml` (held by the caller) into a none PMD, a table
    /// already filled with range `r`'s density pattern: a fault-around that
    /// maps the whole pattern at once, so no other CPU sees it half built.
    /// The workloads use it to put a range back between collapses.
    pub fn pmd_populate_range(&mut self, pmd: PmdRef, r: u32) {
        self.assert_held(self.pmd_lockptr(pmd), "pmd_populate");
        let slot = self.pte_alloc_one();
        self.populate_table(r, slot);
        // The PMD's store.
        self.charge(Cost::EntryWrite, 1);
        self.mm.add_nr_ptes(self.cpu, 1);
        let entry = self.mm.pmds.entry(pmd.table, pmd.idx);
        let old = entry.swap(Pmd::table(slot).0, Ordering::AcqRel);
        assert_eq!(old, 0, "pmd_populate_range into a PMD that is not none");
    }

    /// Allocate an anonymous page whose content belongs to `addr`.
    pub fn alloc_anon_page(&mut self, addr: u64) -> Option<Pfn> {
        self.charge(Cost::PageAlloc, 1);
        self.mm.pages.alloc_anon(vpn(addr), installer_code(self.role, self.cpu))
    }

    /// Free an anonymous page (its last reference is gone).
    pub fn free_anon_page(&mut self, page: Pfn) {
        if let Err(e) = self.mm.pages.free_anon(page) {
            self.violation(Oracle::UseAfterFree, format!("free_page: {e:?}"));
        }
    }

    /// A fresh swap entry's offset.
    pub fn get_swap_page(&mut self) -> u32 {
        self.mm.alloc_swap_slot()
    }

    /// Fill the none slots of a locked table with the density pattern of
    /// range `r`'s huge page, as page-cache faults would. Caller holds the
    /// table's `ptl` and the huge page's lock.
    pub fn populate_range(&mut self, r: u32, pte: PteMap) -> usize {
        self.assert_held(self.mm.pte_lock_id(pte.slot), "populate");
        self.populate_table(r, pte.slot)
    }

    /// Fill table `slot` with range `r`'s pattern, charging each entry
    /// mapped its store, rmap and reference. Returns the entries mapped.
    fn populate_table(&mut self, r: u32, slot: u32) -> usize {
        let mapped = self.mm.populate_table(self.cpu, r, slot);
        self.charge(Cost::EntryWrite, mapped as u64);
        self.charge(Cost::RmapUpdate, mapped as u64);
        self.charge(Cost::PageRef, mapped as u64);
        mapped
    }

    /// `zap_pte_range()` over a whole locked table, flushing before the
    /// anonymous pages are freed (as `tlb_finish_mmu()` does).
    pub fn zap_pte_range(&mut self, haddr: u64, pte: PteMap) {
        self.assert_held(self.mm.pte_lock_id(pte.slot), "zap_pte_range");
        self.charge(Cost::EntryClear, PTRS_PER_PTE as u64);
        let mut to_free = vec![];
        for i in 0..PTRS_PER_PTE {
            let cpu = self.cpu;
            let mut report = |o, m| self.mm.report(o, Some(cpu), Some("zap_pte_range"), m);
            if let Some(p) = self.mm.zap_pte(cpu, pte.slot, i, &mut report) {
                to_free.push(p);
            }
        }
        self.flush_tlb_range(haddr, haddr + HPAGE_PMD_SIZE);
        for p in to_free {
            self.free_anon_page(p);
        }
    }

    /// `zap_huge_pmd()` for a file huge page: clear, flush, drop the
    /// mapping's counter, rmap and reference. Caller holds `pml`.
    pub fn zap_huge_pmd(&mut self, haddr: u64, pmd: PmdRef) {
        let pml = self.pmd_lockptr(pmd);
        self.assert_held(pml, "zap_huge_pmd");
        self.charge(Cost::EntryClear, 1);
        let old = Pmd(self.mm.pmds.entry(pmd.table, pmd.idx).swap(0, Ordering::AcqRel));
        self.flush_tlb_range(haddr, haddr + HPAGE_PMD_SIZE);
        if let PmdKind::Huge(head) = old.kind() {
            let counter = self.mm_counter_file(head);
            self.add_mm_counter(counter, -(HPAGE_PMD_NR as i64));
            let vma = &self.mm.vmas[addr_range(haddr).expect("range") as usize];
            self.page_remove_rmap(head, vma, true);
            self.put_page(head);
        }
    }

    /// `switch_mm()`: this CPU runs a thread of the mm, so it joins
    /// `mm_cpumask` and every flush of the mm must reach it (and, under
    /// the simulation, costs an IPI). Every actor but khugepaged (a
    /// kernel thread, which borrows no user mm) runs the mm.
    pub fn switch_mm(&mut self) {
        if !self.in_cpumask {
            self.mm.tlbs.cpumask_set(self.cpu);
            self.in_cpumask = true;
        }
    }

    /// Touch `addr` through this CPU's TLB (filling it by a lockless walk
    /// under RCU on a miss) and check the data is the right page's. Returns
    /// the frame read, or None on a fault (nothing mapped).
    pub fn touch(&mut self, addr: u64) -> Option<Pfn> {
        self.switch_mm();
        self.engine.sched_point(self.cpu, Event::TlbAccess(vpn(addr)));
        let vpn = vpn(addr);
        let (mm, cpu) = (self.mm, self.cpu);
        let pmd = Self::pmd_offset(addr)?;
        self.rcu_read_lock();
        let mut walk_violation = None;
        let mut walked = false;
        let result = mm.tlbs.access(
            cpu,
            vpn,
            mm.config.oracles,
            || {
                walked = true;
                match mm.pmds.get(pmd.table, pmd.idx).kind() {
                    PmdKind::None => None,
                    PmdKind::Huge(head) => Some(head.nth((vpn % HPAGE_PMD_NR as u64) as usize)),
                    PmdKind::Table(slot) => {
                        if mm.tables.state(slot) == TableState::Free {
                            walk_violation = Some(format!(
                                "lockless walk of {:#x} reached freed PTE table {slot}",
                                addr & HPAGE_PMD_MASK
                            ));
                            return None;
                        }
                        mm.tables.get(slot, (vpn % PTRS_PER_PTE as u64) as usize).pfn()
                    }
                }
            },
            |pfn| {
                let page = mm.pages.get(pfn);
                if page.is_free() {
                    Err(format!("read of {:#x} through the TLB reached freed {pfn}", addr))
                } else if page.tag.load(Ordering::Acquire) != vpn {
                    Err(format!(
                        "read of {:#x} through the TLB found {pfn} holding data of {:#x}",
                        addr,
                        page.tag.load(Ordering::Acquire) << PAGE_SHIFT
                    ))
                } else {
                    Ok(pfn)
                }
            },
        );
        self.rcu_read_unlock();
        self.charge(if walked { Cost::TlbWalk } else { Cost::TlbHit }, 1);
        if let Some(m) = walk_violation {
            self.violation(Oracle::UseAfterFree, m);
        }
        match result? {
            Ok(pfn) => Some(pfn),
            Err(m) => {
                self.violation(Oracle::UseAfterFree, m);
                None
            }
        }
    }

    // ---------------------------------------------------------------
    // Checks run around a collapse
    // ---------------------------------------------------------------

    /// After a policy returns: no spinlock held, RCU and notifier balanced.
    /// Anything left held is reported and released so the run can go on.
    pub fn check_clean_return(&mut self, policy: &str) {
        while let Some(h) = self.held.last().copied() {
            self.violation(Oracle::LockOrder, format!("{policy} returned holding {}", self.mm.lock_name(h.id)));
            self.spin_unlock(h.id);
        }
        if self.rcu_depth != 0 {
            self.violation(
                Oracle::LockOrder,
                format!("{policy} returned inside {} pte_offset_map without pte_unmap", self.rcu_depth),
            );
            self.rcu_depth = 1;
            self.rcu_read_unlock();
        }
        if self.notifier_depth != 0 {
            self.violation(
                Oracle::Accounting,
                format!("{policy} returned with {} mmu-notifier range(s) not ended", self.notifier_depth),
            );
            self.notifier_depth = 0;
        }
        if let Some(page) = self.clear_log.hpage.take() {
            self.violation(Oracle::LockOrder, format!("{policy} returned holding the page lock of {page}"));
            self.mm.pages.get(page).unlock();
        }
    }

    /// The accounting oracle for range `r`, after a collapse: with the page
    /// lock, `pml` and `ptl` held (so nothing can change it), `hpage`'s
    /// refcount and every subpage's mapcount must equal what the PMD and
    /// the PTEs imply.
    pub fn check_range_accounting(&mut self, r: u32) {
        let role = self.role;
        self.set_role(Role::Oracle);
        let hpage = self.mm.file_hpage(r);
        let haddr = crate::mm::range_addr(r);
        let pmd = Self::pmd_offset(haddr).expect("range is in the model");
        self.lock_page(hpage);
        let pml = self.pmd_lock(pmd);
        let mut ptes = vec![0i32; HPAGE_PMD_NR];
        let mut huge = 0;
        let mut ptl_taken = None;
        match self.mm.pmds.get(pmd.table, pmd.idx).kind() {
            PmdKind::None => {}
            PmdKind::Huge(h) => huge = i32::from(h == hpage),
            PmdKind::Table(slot) => {
                let ptl = self.mm.pte_lock_id(slot);
                if ptl != pml {
                    self.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING);
                    ptl_taken = Some(ptl);
                }
                for (i, mapped) in ptes.iter_mut().enumerate() {
                    if self.mm.tables.get(slot, i).pfn() == Some(hpage.nth(i)) {
                        *mapped += 1;
                    }
                }
            }
        }
        let refs = self.mm.pages.get(hpage).refcount.load(Ordering::Acquire);
        let want_refs = HPAGE_PMD_NR as i32 + ptes.iter().sum::<i32>() + huge;
        let entire = self.mm.pages.get(hpage).entire_mapcount.load(Ordering::Acquire);
        let bad_map =
            (0..HPAGE_PMD_NR).find(|&i| self.mm.pages.get(hpage.nth(i)).mapcount.load(Ordering::Acquire) != ptes[i]);
        if let Some(ptl) = ptl_taken {
            self.spin_unlock(ptl);
        }
        self.spin_unlock(pml);
        self.mm.pages.get(hpage).unlock();
        self.set_role(role);
        if refs != want_refs {
            self.violation(
                Oracle::Accounting,
                format!(
                    "hpage {hpage} refcount {refs}, but page cache + {} PTEs + {huge} PMD imply {want_refs}",
                    want_refs - HPAGE_PMD_NR as i32 - huge
                ),
            );
        }
        if entire != huge {
            self.violation(Oracle::Accounting, format!("hpage {hpage} entire_mapcount {entire}, PMD mappings {huge}"));
        }
        if let Some(i) = bad_map {
            let m = self.mm.pages.get(hpage.nth(i)).mapcount.load(Ordering::Acquire);
            self.violation(
                Oracle::Accounting,
                format!("subpage {i} of hpage {hpage} mapcount {m}, mapped by {} PTEs", ptes[i]),
            );
        }
    }

    /// Run `policy` on this CPU as a collapse, timed, with its result
    /// counted and the clean-return checks applied.
    pub fn run_collapse(&mut self, policy: &dyn DynPolicy, haddr: u64, install_pmd: bool) -> ScanResult {
        let role = self.role;
        self.set_role(Role::Collapse);
        self.step = Step::Prologue;
        let t0 = self.engine.now_ns();
        let result = E::collapse(policy, self, haddr, install_pmd);
        self.engine.trace(self.cpu, Event::Returned(result));
        let ns = self.engine.now_ns() - t0;
        self.metrics.record_collapse(result, ns);
        self.check_clean_return(policy.name());
        self.set_role(role);
        result
    }
}

// Added for the kernel paths (workloads::kernel_paths).
impl<'a, E: Engine> Cx<'a, E> {
    /// `PageAnon()`.
    pub fn page_anon(&self, page: Pfn) -> bool {
        self.mm.pages.get(page).is_anon()
    }

    /// `copy_highpage()`: the data of `from` into `to` (the model's data
    /// is the content tag).
    pub fn copy_highpage(&mut self, to: Pfn, from: Pfn) {
        let tag = self.mm.pages.get(from).tag.load(Ordering::Acquire);
        self.mm.pages.get(to).tag.store(tag, Ordering::Release);
    }

    /// `touch_pmd()`: update the huge PMD `pmd` in place (the model flips
    /// its touch bit). Caller holds `pml`.
    pub fn touch_pmd(&mut self, pmd: PmdRef) {
        self.assert_held(self.pmd_lockptr(pmd), "touch_pmd");
        let entry = self.mm.pmds.entry(pmd.table, pmd.idx);
        let old = Pmd(entry.load(Ordering::Acquire));
        entry.store(old.touched().0, Ordering::Release);
    }

    /// `ptlock_ptr()`: the `ptl` of page table `table`.
    pub fn ptlock_ptr(&self, table: PgTable) -> LockId {
        self.mm.pte_lock_id(table.0)
    }

    /// The file's huge page that range `r` maps (head, no reference taken).
    pub fn file_hpage(&self, r: u32) -> Pfn {
        self.mm.file_hpage(r)
    }

    /// Whether the model runs its oracles.
    pub fn oracles_enabled(&self) -> bool {
        self.mm.config.oracles
    }

    /// Time one operation of `role` into this CPU's measurements.
    pub fn record_op(&mut self, role: Role, ns: u64) {
        self.metrics.record_op(role, ns);
    }
}
