//! What the workloads do to the model besides a collapse: the other
//! actors' kernel paths (fault-in, zap, swap-out, TLB accesses), putting a
//! range back, the checks run around a collapse, and running one. The
//! [`Harness`] trait is the workloads crate's interface to a model CPU;
//! a policy has no use for it and imports only [`crate::kernel`].

use crate::cost::Cost;
use crate::event::{Event, Step};
use crate::kernel::{pmd_offset, Cx, DynPolicy, Engine, MmapLock, PgTable, PmdRef, PteMap, SINGLE_DEPTH_NESTING};
use crate::locks::{LockClass, LockId};
use crate::metrics::Metrics;
use crate::mm::{vpn, Mm};
use crate::oracle::{CachedTranslation, Oracle};
use crate::pgtable::TableState;
use crate::pte::{
    Pfn, Pmd, PmdKind, HPAGE_PMD_MASK, HPAGE_PMD_NR, HPAGE_PMD_SIZE, PAGE_SHIFT, PAGE_SIZE, PTRS_PER_PTE,
};
use crate::role::{installer_code, Role};
use crate::scan::ScanResult;
use std::sync::atomic::Ordering;

/// A model CPU for `role` on `mm` (CPU `cpu`, below `mm.config.cpus`),
/// running on `engine`.
pub fn new_cpu<E: Engine>(mm: &Mm, cpu: u32, role: Role, engine: E) -> Cx<'_, E> {
    Cx::new(mm, cpu, role, engine)
}

/// The harness's operations on a model CPU of an mm that lives for `'a`.
pub trait Harness<'a> {
    /// This CPU's measurements.
    fn metrics(&self) -> &Metrics;

    /// Time `ns` of an operation of `role` (an actor's own timing).
    fn record_op(&mut self, role: Role, ns: u64);

    /// The CPU's measurements, when it is done.
    fn into_metrics(self) -> Metrics;

    /// The huge page in the page cache for range `r`.
    fn file_hpage(&self, r: u32) -> Pfn;

    /// Whether the model runs its oracles.
    fn oracles_enabled(&self) -> bool;

    /// The PTE table PMD `pmd` holds, and its `ptl`, read under `pml`
    /// (held by the caller, so the table cannot go away: no RCU section
    /// and no scheduling point). None if the PMD holds no table.
    fn table_under_pml(&mut self, pmd: PmdRef) -> Option<(PteMap<'a>, LockId)>;

    /// `touch_pmd()`: update the huge PMD `pmd` in place (the model flips
    /// its touch bit), as a fault on it does. Caller holds `pml`.
    fn touch_pmd(&mut self, pmd: PmdRef);

    /// What the CPU is doing now.
    fn role(&self) -> Role;

    /// Attribute what follows to `role`.
    fn set_role(&mut self, role: Role);

    /// Time now from the engine, ns.
    fn now_ns(&mut self) -> u64;

    /// Think time between an actor's operations: the CPU is given away.
    fn pause(&mut self, ns: u64);

    /// Locks held now, innermost last.
    fn held_locks(&self) -> Vec<LockId>;

    /// The step last marked.
    fn current_step(&self) -> Step;

    /// `__pte_alloc()`: if the PMD is none, install a fresh empty table
    /// under `pml` (another CPU may have installed one meanwhile).
    fn pte_alloc(&mut self, pmd: PmdRef);

    /// Install, under `pml` (held by the caller) into a none PMD, a table
    /// already filled with range `r`'s density pattern: a fault-around that
    /// maps the whole pattern at once, so no other CPU sees it half built.
    /// The workloads use it to put a range back between collapses.
    fn pmd_populate_range(&mut self, pmd: PmdRef, r: u32);

    /// Allocate an anonymous page whose content belongs to `addr`.
    fn alloc_anon_page(&mut self, addr: u64) -> Option<Pfn>;

    /// Free an anonymous page (its last reference is gone).
    fn free_anon_page(&mut self, page: Pfn);

    /// A fresh swap entry's offset.
    fn get_swap_page(&mut self) -> u32;

    /// Fill the none slots of a locked table with the density pattern of
    /// range `r`'s huge page, as page-cache faults would. Caller holds the
    /// table's `ptl` and the huge page's lock.
    fn populate_range(&mut self, r: u32, pte: PteMap<'_>) -> usize;

    /// `zap_pte_range()` over a whole locked table, flushing before the
    /// anonymous pages are freed (as `tlb_finish_mmu()` does).
    fn zap_pte_range(&mut self, haddr: u64, pte: PteMap<'_>);

    /// `zap_pte_range()` for `madvise(MADV_DONTNEED)`: every entry of the
    /// locked table zapped into `tlb` (the flush owed and the anonymous
    /// pages to free after it), but guard markers, which MADV_DONTNEED
    /// keeps. Returns whether it kept any (`any_skipped`: the table is not
    /// empty and is not reclaimed).
    fn zap_pte_range_gather(&mut self, haddr: u64, pte: PteMap<'_>, tlb: &mut MmuGather) -> bool;

    /// `tlb_finish_mmu()`: flush what `tlb` gathered from every TLB, then
    /// free its anonymous pages, and its page tables after a grace period
    /// (the RCU table free of x86-64's mmu_gather).
    fn tlb_finish_mmu(&mut self, tlb: MmuGather);

    /// `zap_huge_pmd()` for a file huge page: clear, flush, drop the
    /// mapping's counter, rmap and reference. Caller holds `pml`.
    fn zap_huge_pmd(&mut self, haddr: u64, pmd: PmdRef);

    /// `switch_mm()`: this CPU runs a thread of the mm, so it joins
    /// `mm_cpumask` and every flush of the mm must reach it (and, under
    /// the simulation, costs an IPI). Every actor but khugepaged (a
    /// kernel thread, which borrows no user mm) runs the mm.
    fn switch_mm(&mut self);

    /// Touch `addr` through this CPU's TLB (filling it by a lockless walk
    /// under RCU on a miss) and check the data is the right page's. Returns
    /// the frame read, or None on a fault (nothing mapped). The walk, as
    /// GUP-fast's and the hardware walker's, reads the PMD, may be
    /// interleaved (a scheduling point), then reads the PTE from the table
    /// the PMD gave: a table freed in between is `use-after-free`. One
    /// detached but waiting for its grace period is still legal to read.
    fn touch(&mut self, addr: u64) -> Option<Pfn>;

    /// After a policy returns: no spinlock held, RCU and notifier balanced.
    /// Anything left held is reported and released so the run can go on.
    fn check_clean_return(&mut self, policy: &str);

    /// The accounting oracle for range `r`, after a collapse: with the page
    /// lock, `pml` and `ptl` held (so nothing can change it), `hpage`'s
    /// refcount and every subpage's mapcount must equal what the PMD and
    /// the PTEs imply.
    fn check_range_accounting(&mut self, r: u32);

    /// Run `policy` on this CPU as a collapse, timed, with its result
    /// counted and the clean-return checks applied.
    fn run_collapse(&mut self, policy: &dyn DynPolicy, haddr: u64, install_pmd: bool) -> ScanResult;
}

impl<'a, E: Engine> Harness<'a> for Cx<'a, E> {
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn record_op(&mut self, role: Role, ns: u64) {
        self.metrics.record_op(role, ns);
    }

    fn into_metrics(self) -> Metrics {
        self.metrics
    }

    fn file_hpage(&self, r: u32) -> Pfn {
        self.mm.file_hpage(r)
    }

    fn oracles_enabled(&self) -> bool {
        self.mm.config.oracles
    }

    fn table_under_pml(&mut self, pmd: PmdRef) -> Option<(PteMap<'a>, LockId)> {
        self.assert_held(self.pmd_lockptr(pmd), "reading a PMD under pml");
        match self.mm.pmds.get(pmd.table, pmd.idx).kind() {
            PmdKind::Table(slot) => {
                let ptl = self.mm.pte_lock_id(slot);
                Some((PteMap { slot, ptl, entries: self.mm.tables.table(slot) }, ptl))
            }
            _ => None,
        }
    }

    fn touch_pmd(&mut self, pmd: PmdRef) {
        self.assert_held(self.pmd_lockptr(pmd), "touch_pmd");
        let entry = self.mm.pmds.entry(pmd.table, pmd.idx);
        let old = Pmd(entry.load(Ordering::Acquire));
        entry.store(old.touched().0, Ordering::Release);
    }

    fn role(&self) -> Role {
        self.role
    }

    fn set_role(&mut self, role: Role) {
        self.role = role;
    }

    fn now_ns(&mut self) -> u64 {
        self.engine.now_ns()
    }

    fn pause(&mut self, ns: u64) {
        self.engine.idle(ns);
    }

    fn held_locks(&self) -> Vec<LockId> {
        self.held.iter().map(|h| h.id).collect()
    }

    fn current_step(&self) -> Step {
        self.step
    }

    fn pte_alloc(&mut self, pmd: PmdRef) {
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

    fn pmd_populate_range(&mut self, pmd: PmdRef, r: u32) {
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

    fn alloc_anon_page(&mut self, addr: u64) -> Option<Pfn> {
        self.charge(Cost::PageAlloc, 1);
        self.mm.pages.alloc_anon(vpn(addr), installer_code(self.role, self.cpu))
    }

    fn free_anon_page(&mut self, page: Pfn) {
        if let Err(e) = self.mm.pages.free_anon(page) {
            self.violation(Oracle::UseAfterFree, format!("free_page: {e:?}"));
        }
    }

    fn get_swap_page(&mut self) -> u32 {
        self.mm.alloc_swap_slot()
    }

    fn populate_range(&mut self, r: u32, pte: PteMap<'_>) -> usize {
        self.assert_held(pte.ptl, "populate");
        self.populate_table(r, pte.slot)
    }

    fn zap_pte_range(&mut self, haddr: u64, pte: PteMap<'_>) {
        let mut tlb = MmuGather::default();
        self.zap_entries(haddr, pte, false, &mut tlb);
        // exit_mmap()'s and the restore's gather covers the whole range.
        tlb.adjust_range(haddr, HPAGE_PMD_SIZE);
        self.tlb_finish_mmu(tlb);
    }

    fn zap_pte_range_gather(&mut self, haddr: u64, pte: PteMap<'_>, tlb: &mut MmuGather) -> bool {
        self.zap_entries(haddr, pte, true, tlb)
    }

    fn tlb_finish_mmu(&mut self, tlb: MmuGather) {
        if let Some((start, end)) = tlb.range {
            self.flush_tlb_range(start, end);
        }
        for p in tlb.pages {
            self.free_anon_page(p);
        }
        for t in tlb.tables {
            self.pte_free_defer(t);
        }
    }

    fn zap_huge_pmd(&mut self, haddr: u64, pmd: PmdRef) {
        let pml = self.pmd_lockptr(pmd);
        self.assert_held(pml, "zap_huge_pmd");
        self.charge(Cost::EntryClear, 1);
        let old = Pmd(self.mm.pmds.entry(pmd.table, pmd.idx).swap(0, Ordering::AcqRel));
        self.flush_tlb_range(haddr, haddr + HPAGE_PMD_SIZE);
        if let PmdKind::Huge(head) = old.kind() {
            let counter = self.mm_counter_file(head);
            self.add_mm_counter(counter, -(HPAGE_PMD_NR as i64));
            let vma = &self.mm.vmas[self.mm.addr_range(haddr).expect("range") as usize];
            self.page_remove_rmap(head, vma, true);
            self.put_page(head);
        }
    }

    fn switch_mm(&mut self) {
        if !self.in_cpumask {
            self.mm.tlbs.cpumask_set(self.cpu);
            self.in_cpumask = true;
        }
    }

    fn touch(&mut self, addr: u64) -> Option<Pfn> {
        self.switch_mm();
        self.engine.sched_point(self.cpu, Event::TlbAccess(vpn(addr)));
        let vpn = vpn(addr);
        let (mm, cpu, role) = (self.mm, self.cpu, self.role);
        let pmd = pmd_offset(mm, addr)?;
        self.rcu_read_lock();
        let mut walk_violation = None;
        let mut walked = false;
        let engine = &mut self.engine;
        let result = mm.tlbs.access(
            cpu,
            vpn,
            mm.config.oracles,
            || {
                walked = true;
                // pmdp_get_lockless().
                match mm.pmds.get(pmd.table, pmd.idx).kind() {
                    PmdKind::None => None,
                    PmdKind::Huge(head) => Some(head.nth((vpn % HPAGE_PMD_NR as u64) as usize)),
                    PmdKind::Table(slot) => {
                        let releases = mm.tables.releases(slot);
                        // Between the PMD and the PTE another CPU may clear
                        // the PMD and free the table: only the grace period
                        // the walk's RCU section holds up keeps it readable.
                        engine.sched_point(cpu, Event::LocklessRead);
                        let pte = mm.tables.get(slot, (vpn % PTRS_PER_PTE as u64) as usize);
                        // A release since the PMD read, or (native engine,
                        // where the two loads race) a table already free.
                        if mm.tables.releases(slot) != releases || mm.tables.state(slot) == TableState::Free {
                            walk_violation = Some(format!(
                                "lockless walk (GUP-fast / hardware walker) of {addr:#x} on CPU {cpu} ({role}) read \
                                 PTE table {slot} of the PMD of {:#x} after the table was freed under it: it read \
                                 the PMD inside rcu_read_lock(), and the table was freed without waiting for that \
                                 grace period (pte_free() where pte_free_defer() is needed)",
                                addr & HPAGE_PMD_MASK
                            ));
                            return None;
                        }
                        pte.pfn()
                    }
                }
            },
            |pfn| check_read(mm, cpu, addr, pfn),
        );
        self.rcu_read_unlock();
        self.charge(if walked { Cost::TlbWalk } else { Cost::TlbHit }, 1);
        // A walk whose translation stayed cached (a flush during the walk
        // withdraws it) is what a stale-TLB finding later names.
        if let (true, Some(Ok(pfn))) = (walked, &result) {
            if mm.tlbs.lookup(cpu, vpn) == Some(*pfn) {
                self.engine.trace(cpu, Event::TlbFill(vpn, *pfn));
            }
        }
        if let Some(m) = walk_violation {
            self.violation(Oracle::UseAfterFree, m);
        }
        match result? {
            Ok(pfn) => Some(pfn),
            Err(bad) => {
                self.violation_cached(bad.oracle, bad.message, bad.cached);
                None
            }
        }
    }

    fn check_clean_return(&mut self, policy: &str) {
        while let Some(h) = self.held.last().copied() {
            self.violation(Oracle::LockOrder, format!("{policy} returned holding {}", self.mm.lock_name(h.id)));
            self.spin_unlock(h.id);
        }
        if let Some(h) = self.rwsems.iter().find(|h| h.class == LockClass::IMmapRwsem).copied() {
            self.violation(Oracle::LockOrder, format!("{policy} returned holding {}", h.class.name()));
            self.up(h.class, h.write);
        }
        if !self.pte_maps.is_empty() {
            let tables: Vec<String> = self.pte_maps.iter().map(u32::to_string).collect();
            self.violation(
                Oracle::ApiContract,
                format!(
                    "{policy} returned with PTE table(s) {} still mapped: pte_offset_map() without pte_unmap(), \
                     so the kernel would return inside rcu_read_lock()",
                    tables.join(", ")
                ),
            );
            for _ in 0..self.pte_maps.len() {
                self.rcu_read_unlock();
            }
            self.pte_maps.clear();
        }
        if !self.notifier_ranges.is_empty() {
            self.violation(
                Oracle::ApiContract,
                format!(
                    "{policy} returned with {} mmu-notifier range(s) started and never ended: a secondary MMU \
                     (KVM) would keep the range invalidated for good",
                    self.notifier_ranges.len()
                ),
            );
            self.notifier_ranges.clear();
        }
        if let Some(page) = self.clear_log.hpage.take() {
            self.violation(Oracle::LockOrder, format!("{policy} returned holding the page lock of {page}"));
            self.mm.pages.get(page).unlock();
        }
    }

    fn check_range_accounting(&mut self, r: u32) {
        let role = self.role;
        self.set_role(Role::Oracle);
        let hpage = self.mm.file_hpage(r);
        let haddr = self.mm.range_addr(r);
        let pmd = pmd_offset(self.mm, haddr).expect("range is in the model");
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

    fn run_collapse(&mut self, policy: &dyn DynPolicy, haddr: u64, install_pmd: bool) -> ScanResult {
        let role = self.role;
        self.set_role(Role::Collapse);
        self.step = Step::Prologue;
        // The caller's mmap_lock (khugepaged's, or madvise_collapse()'s),
        // timed as the collapse's: the wait and hold a writer imposes on
        // every fault are what v6.6 removed.
        let write = policy.mmap_lock() == MmapLock::Write;
        let t0 = self.engine.now_ns();
        if write {
            self.mmap_write_lock();
        } else {
            self.mmap_read_lock();
        }
        let result = E::collapse(policy, self, haddr, install_pmd);
        self.engine.trace(self.cpu, Event::Returned(result));
        self.check_clean_return(policy.name());
        if write {
            self.mmap_write_unlock();
        } else {
            self.mmap_read_unlock();
        }
        let ns = self.engine.now_ns() - t0;
        self.metrics.record_collapse(result, ns);
        self.set_role(role);
        result
    }
}

/// An mmu_gather (`struct mmu_gather`): what a zap owes before the memory
/// it unmapped may be reused. The TLB flush covers the gathered range (as
/// x86-64's `tlb_flush()` does: the pages zapped, and the first page of
/// each table freed, not the whole 2 MiB).
#[derive(Default)]
pub struct MmuGather {
    range: Option<(u64, u64)>,
    pages: Vec<Pfn>,
    tables: Vec<PgTable>,
}

impl MmuGather {
    /// Widen the range to flush to cover `addr..addr + len`
    /// (`__tlb_adjust_range()`).
    pub fn adjust_range(&mut self, addr: u64, len: u64) {
        let (start, end) = self.range.unwrap_or((addr, addr + len));
        self.range = Some((start.min(addr), end.max(addr + len)));
    }

    /// `pte_free_tlb()`: free `table` once the gather is finished; its
    /// first page joins the range to flush (`tlb_flush_pmd_range()`).
    pub fn pte_free_tlb(&mut self, table: PgTable, addr: u64) {
        self.adjust_range(addr, PAGE_SIZE);
        self.tables.push(table);
    }
}

impl<E: Engine> Cx<'_, E> {
    /// `zap_pte_range()`'s loop over a whole locked table into `tlb`;
    /// guard markers are kept when `keep_guards` (MADV_DONTNEED) and
    /// zapped otherwise (teardown, the restore). Returns whether any entry
    /// was kept.
    fn zap_entries(&mut self, haddr: u64, pte: PteMap<'_>, keep_guards: bool, tlb: &mut MmuGather) -> bool {
        self.assert_held(pte.ptl, "zap_pte_range");
        self.charge(Cost::EntryClear, PTRS_PER_PTE as u64);
        let mut kept = false;
        for i in 0..PTRS_PER_PTE {
            let entry = self.mm.tables.get(pte.slot, i);
            if entry.is_none() {
                continue;
            }
            if keep_guards && entry.marker_kind() == Some(crate::pte::PteMarker::Guard) {
                kept = true;
                continue;
            }
            let cpu = self.cpu;
            let mut report = |o, m| self.mm.report(o, Some(cpu), Some("zap_pte_range"), m);
            if let Some(p) = self.mm.zap_pte(cpu, pte.slot, i, &mut report) {
                tlb.pages.push(p);
            }
            if entry.is_present() {
                tlb.adjust_range(haddr + i as u64 * PAGE_SIZE, PAGE_SIZE);
            }
        }
        kept
    }
}

/// A read through a TLB that broke a rule.
struct BadRead {
    oracle: Oracle,
    message: String,
    /// The translation read through, for a stale-translation finding.
    cached: Vec<CachedTranslation>,
}

/// The data CPU `cpu` reads at `addr` through a translation to `pfn`
/// (cached, or filled by this access's walk) must be live, be data of
/// `addr`, and be what the page table maps at `addr` now. Runs inside
/// the access, so a flush that reaches `cpu` meanwhile makes
/// [`crate::tlb::Tlbs::access`] retry and drops the verdict; and under the
/// reader's RCU section, so the table it looks at cannot be freed.
///
/// * A freed frame, or one holding data of another address (a frame
///   freed and reused), is `use-after-free`.
/// * A present PTE mapping a frame of other content is
///   `stale-translation` ([`Mm::stale_translation`]).
///
/// A none or non-present entry is not judged here: the reader is in the
/// owed-flush window of whoever cleared it.
fn check_read(mm: &Mm, cpu: u32, addr: u64, pfn: Pfn) -> Result<Pfn, BadRead> {
    let (vpn, page) = (vpn(addr), mm.pages.get(pfn));
    let bad = |oracle, message| BadRead { oracle, message, cached: vec![] };
    if page.is_free() {
        return Err(bad(Oracle::UseAfterFree, format!("read of {addr:#x} through the TLB reached freed {pfn}")));
    }
    let tag = page.tag.load(Ordering::Acquire);
    if tag != vpn {
        return Err(bad(
            Oracle::UseAfterFree,
            format!("read of {addr:#x} through the TLB found {pfn} holding data of {:#x}", tag << PAGE_SHIFT),
        ));
    }
    if !mm.config.oracles {
        return Ok(pfn);
    }
    let Some(pmd) = pmd_offset(mm, addr) else { return Ok(pfn) };
    let mapped = match mm.pmds.get(pmd.table, pmd.idx).kind() {
        PmdKind::None => None,
        PmdKind::Huge(head) => Some(head.nth((vpn % HPAGE_PMD_NR as u64) as usize)),
        // A freed table is the walk's finding (use-after-free), not this one.
        PmdKind::Table(slot) if mm.tables.state(slot) == TableState::Free => None,
        PmdKind::Table(slot) => mm.tables.get(slot, (vpn % PTRS_PER_PTE as u64) as usize).pfn(),
    };
    match mapped.and_then(|now| mm.stale_translation(cpu, addr, pfn, now, "read")) {
        Some((message, cached)) => Err(BadRead { oracle: Oracle::StaleTranslation, message, cached: vec![cached] }),
        None => Ok(pfn),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Native;
    use crate::kernel::Pte;
    use crate::mm::{FileKind, MmConfig, MAP_BASE, VM_UFFD_MISSING};
    use crate::oracle::Violation;
    use crate::pte::PAGE_SIZE;
    use std::time::Instant;

    const IDX: usize = 5;

    fn mm() -> Mm {
        Mm::new(MmConfig {
            ranges: vec![VM_UFFD_MISSING],
            file: FileKind::Shmem,
            split_pmd_ptlocks: true,
            split_pte_ptlocks: true,
            cpus: 3,
            density: 512,
            anon_pages: 8,
            spare_tables: 2,
            oracles: true,
            ranges_per_pmd_table: crate::mm::RANGES_PER_PMD_TABLE,
        })
        .unwrap()
    }

    fn cx(mm: &Mm, cpu: u32, role: Role) -> Cx<'_, Native> {
        new_cpu(mm, cpu, role, Native::new(Instant::now(), None, false))
    }

    fn addr() -> u64 {
        MAP_BASE + IDX as u64 * PAGE_SIZE
    }

    /// CPU 1 caches entry [`IDX`]; CPU 0 clears it under `ptl` without a
    /// flush; then `fill` runs on CPU 2 with the table locked; then CPU 1
    /// reads again. Returns what CPU 1 read and the violations.
    fn read_after(fill: impl FnOnce(&mut Cx<'_, Native>, PteMap<'_>, Pfn)) -> (Option<Pfn>, Vec<Violation>) {
        let mm = mm();
        let file = mm.file_hpage(0).nth(IDX);
        let mut reader = cx(&mm, 1, Role::Reader);
        assert_eq!(reader.touch(addr()), Some(file));
        let pmd = pmd_offset(&mm, addr()).unwrap();
        let mut clearer = cx(&mm, 0, Role::Restore);
        let (map, ptl) = clearer.pte_offset_map_lock(pmd, addr()).unwrap();
        clearer.ptep_clear(addr(), map.at(IDX));
        clearer.pte_unmap_unlock(map, ptl);
        let mut other = cx(&mm, 2, Role::Uffd);
        other.switch_mm();
        let (map, ptl) = other.pte_offset_map_lock(pmd, addr()).unwrap();
        fill(&mut other, map, file);
        other.pte_unmap_unlock(map, ptl);
        let read = reader.touch(addr());
        (read, mm.violations.snapshot().0)
    }

    /// What UFFDIO_COPY does under `ptl`: a fresh anonymous page into the
    /// none slot, with the data of `copy_of` if given (as a migration's
    /// destination holds its source's).
    fn install_anon(cx: &mut Cx<'_, Native>, map: PteMap<'_>, copy_of: Option<Pfn>) -> Pfn {
        let page = cx.alloc_anon_page(addr()).unwrap();
        if let Some(src) = copy_of {
            cx.copy_highpage(page, src);
        }
        cx.page_add_new_anon_rmap(page);
        cx.set_pte_at(addr(), map.at(IDX), Pte::present(page));
        page
    }

    #[test]
    fn an_entry_refilled_while_another_cpu_caches_it_is_a_stale_translation_at_the_install_and_the_read() {
        let mut anon = None;
        let (read, violations) = read_after(|cx, map, _| anon = Some(install_anon(cx, map, None)));
        let (anon, file) = (anon.unwrap(), Pfn(512 + IDX as u32));
        assert_eq!(read, None, "the bad read is reported, not returned");
        let stale = vec![CachedTranslation { cpu: 1, vpn: vpn(addr()), pfn: file }];
        let found: Vec<_> = violations.iter().map(|v| (v.oracle, v.cpu, v.step.as_deref(), &v.cached)).collect();
        assert_eq!(
            found,
            [
                (Oracle::StaleTranslation, Some(2), Some("UFFDIO_COPY"), &stale),
                (Oracle::StaleTranslation, Some(1), Some("a read through the TLB"), &stale)
            ]
        );
        let message = |verb| {
            format!(
                "CPU 1 {verb} {:#x} through its TLB entry to {file}, but the PTE maps {anon} now (an anonymous page \
                 installed by uffd on CPU 2): the entry was changed under ptl while this translation was cached, \
                 and no flush reached CPU 1 since",
                addr()
            )
        };
        assert_eq!(violations[0].message, message("still caches"));
        assert_eq!(violations[1].message, message("read"));
    }

    #[test]
    fn none_a_copy_of_the_same_data_or_a_flush_before_the_fill_is_not_a_finding() {
        let file = Pfn(512 + IDX as u32);
        // Still none: the clearer's owed-flush window (stale-tlb's business).
        let (read, violations) = read_after(|_, _, _| {});
        assert_eq!((read, violations), (Some(file), vec![]));
        // The new frame holds the old one's data (as a migration's copy does).
        let (read, violations) = read_after(|cx, map, file| {
            install_anon(cx, map, Some(file));
        });
        assert_eq!((read, violations), (Some(file), vec![]));
        // A flush before the fill: CPU 1 walks again and reads the new page.
        let mut anon = None;
        let (read, violations) = read_after(|cx, map, _| {
            cx.flush_tlb_range(addr(), addr() + PAGE_SIZE);
            anon = Some(install_anon(cx, map, None));
        });
        assert_eq!((read, violations), (anon, vec![]));
    }
}
