//! The actors: what runs beside the collapse, each the model of a kernel
//! path that touches the same page tables.
//!
//! Every actor runs on its own model CPU, makes every random choice from
//! its own ChaCha8 stream (seeded from the scenario's seed and its CPU
//! number), reaches the page tables only through the kernel-named
//! primitives on [`Cx`], and holds no lock between operations. Each
//! operation is timed into the actor's role, then the actor waits out its
//! pace.

use crate::scenario::{Scenario, VmaShare, ACTOR_ROLES};
use bench_core::harness::Harness;
use bench_core::kernel::{
    Cx, DynPolicy, Engine, MmCounter, PmdKind, PmdRef, Pte, PteMap, PteMarker, SINGLE_DEPTH_NESTING,
};
use bench_core::mm::{pmd_slot_of, pmd_table_of, range_addr, NEIGHBOUR_SLOT};
use bench_core::pte::{PAGE_SIZE, PTRS_PER_PTE};
use bench_core::Role;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::sync::Arc;

/// What every actor has: its random stream, the ranges it works on, and
/// its think time.
pub struct ActorState {
    rng: ChaCha8Rng,
    ranges: Vec<u32>,
    pace_ns: u64,
}

impl ActorState {
    /// The stream of actor `index` (its CPU number) under `seed`.
    fn new(seed: u64, index: u32, ranges: Vec<u32>, pace_ns: u64) -> Self {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..12].copy_from_slice(&index.to_le_bytes());
        ActorState { rng: ChaCha8Rng::from_seed(key), ranges, pace_ns }
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; `n` > 0).
    fn below(&mut self, n: usize) -> usize {
        ((self.rng.next_u32() as u64 * n as u64) >> 32) as usize
    }

    /// One of this actor's ranges (None if it has none).
    fn pick_range(&mut self) -> Option<u32> {
        if self.ranges.is_empty() {
            return None;
        }
        let k = self.below(self.ranges.len());
        Some(self.ranges[k])
    }

    /// A PTE index in a table.
    fn pick_index(&mut self) -> usize {
        self.below(PTRS_PER_PTE)
    }

    /// Wait out the think time (the engine decides how).
    fn pace<E: Engine>(&self, cx: &mut Cx<'_, E>) {
        if self.pace_ns > 0 {
            cx.pause(self.pace_ns);
        }
    }
}

/// The PMD slot of range `r`.
fn pmd_of(r: u32) -> PmdRef {
    PmdRef { table: pmd_table_of(r), idx: pmd_slot_of(r) }
}

/// Address of entry `i` of range `r`.
fn addr_of(r: u32, i: usize) -> u64 {
    range_addr(r) + i as u64 * PAGE_SIZE
}

/// Read entry `i` of the table under `pmd` with no lock, as the fault
/// path reads `vmf->orig_pte` (`pte_offset_map_nolock` + `ptep_get`).
fn peek<E: Engine>(cx: &mut Cx<'_, E>, pmd: PmdRef, addr: u64, i: usize) -> Option<Pte> {
    let (map, _ptl) = cx.pte_offset_map_nolock(pmd, addr)?;
    let pte = cx.ptep_get(map.at(i));
    cx.pte_unmap(map);
    Some(pte)
}

/// The first entry of a mapped table, walking from `start` and wrapping,
/// that `want` accepts (as reclaim or migration picks a page off a list).
fn scan<E: Engine>(
    cx: &mut Cx<'_, E>,
    map: PteMap,
    start: usize,
    want: impl Fn(&Cx<'_, E>, Pte) -> bool,
) -> Option<(usize, Pte)> {
    for k in 0..PTRS_PER_PTE {
        let i = (start + k) % PTRS_PER_PTE;
        let pte = cx.ptep_get(map.at(i));
        if want(cx, pte) {
            return Some((i, pte));
        }
    }
    None
}

/// A collapser: khugepaged or MADV_COLLAPSE calling
/// `collapse_pte_mapped_thp()` on its own ranges (range `r` belongs to
/// collapser `r % collapsers`), round-robin, then putting the range back.
pub struct Collapser {
    state: ActorState,
    policy: Arc<dyn DynPolicy>,
    install_pmd: bool,
    next: usize,
}

impl Collapser {
    /// One collapse, its accounting check, and the restore.
    fn round<E: Engine>(&mut self, cx: &mut Cx<'_, E>) {
        let ranges = &self.state.ranges;
        let r = *ranges.get(self.next).expect("a validated scenario gives every collapser a range");
        self.next = (self.next + 1) % ranges.len();
        cx.run_collapse(&*self.policy, range_addr(r), self.install_pmd);
        if cx.oracles_enabled() {
            cx.check_range_accounting(r);
        }
        cx.set_role(Role::Restore);
        let t0 = cx.now_ns();
        restore(cx, r);
        let ns = cx.now_ns() - t0;
        cx.record_op(Role::Restore, ns);
        cx.set_role(Role::Collapse);
    }
}

/// Put range `r` back as collapse finds it: a PTE table mapping the
/// density pattern of its huge page, nothing else. What the real system
/// gets from splits, unmaps and refaults over time, done at once and in
/// one `pml` hold (with `ptl` nested for a table), so no other actor sees
/// the range half rebuilt and every collapse starts from the same state.
/// Under the huge page's lock, which keeps page-cache faulters (who
/// trylock it) away; uffd, COW, swap, migration and markers still run
/// before and after.
pub fn restore<E: Engine>(cx: &mut Cx<'_, E>, r: u32) {
    let (haddr, hpage, pmd) = (range_addr(r), cx.file_hpage(r), pmd_of(r));
    cx.lock_page(hpage);
    let pml = cx.pmd_lock(pmd);
    match cx.pmdp_get_lockless(pmd).kind() {
        // MADV_COLLAPSE installed it, or a faulter mapped it after a
        // khugepaged collapse: zap it (as a split and unmap would), then
        // refault by PTEs.
        PmdKind::Huge(_) => {
            cx.zap_huge_pmd(haddr, pmd);
            cx.pmd_populate_range(pmd, r);
        }
        // Retracted by khugepaged.
        PmdKind::None => cx.pmd_populate_range(pmd, r),
        // The collapse aborted (or never started): zap what the other
        // actors left in the table and refault the pattern.
        PmdKind::Table(_) => {
            let (map, ptl) = cx.table_under_pml(pmd).expect("pml held: the table stays");
            if ptl != pml {
                cx.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING);
            }
            zap_table(cx, haddr, map);
            cx.populate_range(r, map);
            if ptl != pml {
                cx.spin_unlock(ptl);
            }
        }
    }
    cx.spin_unlock(pml);
    cx.unlock_page(hpage);
}

/// `zap_pte_range()` of the whole locked table: uffd and COW pages freed
/// after the flush, file subpages, swap entries and markers dropped.
///
/// A migration entry is dropped with the anon count it stands for, as the
/// kernel's `zap_pte_range()` does; the migrator's second section then
/// finds its entry gone and frees both pages. (bench-core's
/// `zap_pte_range` is written for `exit_mmap`, where a migration entry is
/// a bug, so they are cleared here first.)
fn zap_table<E: Engine>(cx: &mut Cx<'_, E>, haddr: u64, map: PteMap) {
    for i in 0..PTRS_PER_PTE {
        if cx.ptep_get(map.at(i)).migration_pfn().is_some() {
            cx.ptep_clear(haddr + i as u64 * PAGE_SIZE, map.at(i));
            cx.add_mm_counter(MmCounter::AnonPages, -1);
        }
    }
    cx.zap_pte_range(haddr, map);
}

/// A swapper: reclaim's `try_to_unmap_one()` and the `do_swap_page()`
/// fault, alternately.
pub struct Swapper {
    state: ActorState,
    swap_in: bool,
}

/// A `pml` neighbour: a THP fault, split, zap or mprotect of another huge
/// PMD in the same PMD table, which takes the same `pml`.
pub struct Neighbour {
    state: ActorState,
    hold_ns: u64,
}

/// A workload actor: one model CPU's loop.
pub enum Actor {
    /// `collapse_pte_mapped_thp()` plus the restore of its range.
    Collapser(Collapser),
    /// `filemap_map_pages()`: page-cache faults that trylock the huge page
    /// and skip it while it is locked.
    Faulter(ActorState),
    /// `UFFDIO_COPY` into private uffd-armed VMAs: an anonymous page
    /// installed under `ptl` alone, without the page lock (the bug).
    Uffd(ActorState),
    /// `wp_page_copy()`: a write fault COWing a file subpage into an
    /// anonymous copy under `ptl`.
    Cow(ActorState),
    /// Swap-out and swap-in of anonymous pages under `ptl`.
    Swap(Swapper),
    /// Migration of anonymous pages: two `ptl` sections around the copy.
    Migrate(ActorState),
    /// Holds `pml` for another huge PMD of the same PMD table.
    Neighbour(Neighbour),
    /// Reads memory through its TLB and checks it reads the right data.
    Reader(ActorState),
    /// Installs and removes guard PTE markers under `ptl` alone.
    Marker(ActorState),
}

impl Actor {
    /// The scenario's actors in CPU order (collapsers, faulters, uffd,
    /// cow, swap, migrate, neighbours, readers, markers): actor `i` runs
    /// on model CPU `i` and draws from stream `(seed, i)`. `scenario`
    /// must pass [`Scenario::validate`] (as `run_policy` checks).
    pub fn for_scenario(scenario: &Scenario, policy: &Arc<dyn DynPolicy>) -> Vec<Actor> {
        let all: Vec<u32> = (0..scenario.ranges).collect();
        let private = match scenario.share {
            VmaShare::Private => all.clone(),
            VmaShare::Shared => vec![],
        };
        let uffd = scenario.private_uffd_ranges();
        let collapsers = scenario.threads.collapsers;
        let mut actors = vec![];
        for role in ACTOR_ROLES {
            for k in 0..scenario.threads.of(role) {
                let index = actors.len() as u32;
                let state =
                    |ranges: &[u32]| ActorState::new(scenario.seed, index, ranges.to_vec(), scenario.pace.of(role));
                actors.push(match role {
                    Role::Collapse => {
                        let own: Vec<u32> = all.iter().copied().filter(|r| r % collapsers == k).collect();
                        Actor::Collapser(Collapser {
                            state: state(&own),
                            policy: policy.clone(),
                            install_pmd: scenario.collapse_mode.install_pmd(),
                            next: 0,
                        })
                    }
                    Role::Faulter => Actor::Faulter(state(&all)),
                    Role::Uffd => Actor::Uffd(state(&uffd)),
                    Role::Cow => Actor::Cow(state(&private)),
                    Role::Swap => Actor::Swap(Swapper { state: state(&private), swap_in: false }),
                    Role::Migrate => Actor::Migrate(state(&private)),
                    Role::Neighbour => {
                        Actor::Neighbour(Neighbour { state: state(&all), hold_ns: scenario.neighbour_hold_ns })
                    }
                    Role::Reader => Actor::Reader(state(&all)),
                    Role::Marker => Actor::Marker(state(&all)),
                    Role::Restore | Role::Oracle => unreachable!("{role} is not an actor kind"),
                });
            }
        }
        actors
    }

    fn state(&self) -> &ActorState {
        match self {
            Actor::Collapser(c) => &c.state,
            Actor::Swap(s) => &s.state,
            Actor::Neighbour(n) => &n.state,
            Actor::Faulter(s)
            | Actor::Uffd(s)
            | Actor::Cow(s)
            | Actor::Migrate(s)
            | Actor::Reader(s)
            | Actor::Marker(s) => s,
        }
    }
}

impl bench_core::actor::Actor for Actor {
    fn role(&self) -> Role {
        match self {
            Actor::Collapser(_) => Role::Collapse,
            Actor::Faulter(_) => Role::Faulter,
            Actor::Uffd(_) => Role::Uffd,
            Actor::Cow(_) => Role::Cow,
            Actor::Swap(_) => Role::Swap,
            Actor::Migrate(_) => Role::Migrate,
            Actor::Neighbour(_) => Role::Neighbour,
            Actor::Reader(_) => Role::Reader,
            Actor::Marker(_) => Role::Marker,
        }
    }

    /// One operation; true only for a collapse (collapses are what an
    /// operation limit counts). A collapse is timed by `run_collapse`,
    /// its restore as a `restore` operation; every other operation,
    /// skipped or not, is timed into the actor's role.
    fn op<E: Engine>(&mut self, cx: &mut Cx<'_, E>) -> bool {
        if !matches!(self, Actor::Collapser(c) if !c.install_pmd) {
            cx.switch_mm();
        }
        let t0 = cx.now_ns();
        match self {
            Actor::Collapser(c) => c.round(cx),
            Actor::Faulter(s) => fault(s, cx),
            Actor::Uffd(s) => uffd_copy(s, cx),
            Actor::Cow(s) => cow(s, cx),
            Actor::Swap(s) => {
                if s.swap_in {
                    swap_in(&mut s.state, cx);
                } else {
                    swap_out(&mut s.state, cx);
                }
                s.swap_in = !s.swap_in;
            }
            Actor::Migrate(s) => migrate(s, cx),
            Actor::Neighbour(n) => hold_pml(n, cx),
            Actor::Reader(s) => read(s, cx),
            Actor::Marker(s) => mark(s, cx),
        }
        let collapse = matches!(self, Actor::Collapser(_));
        if !collapse {
            let ns = cx.now_ns() - t0;
            cx.record_op(self.role(), ns);
        }
        self.state().pace(cx);
        collapse
    }
}

/// `filemap_map_pages()` for one address: trylock the huge page (a locked
/// page, e.g. one being collapsed, is skipped: that is what keeps faults
/// out of a collapse); a none PMD gets the whole page by PMD
/// (`do_set_pmd`), a table gets the subpage in a none slot
/// (`set_pte_range`: counter, rmap, reference, PTE).
fn fault<E: Engine>(s: &mut ActorState, cx: &mut Cx<'_, E>) {
    let Some(r) = s.pick_range() else { return };
    let i = s.pick_index();
    let (addr, hpage, pmd) = (addr_of(r, i), cx.file_hpage(r), pmd_of(r));
    if !cx.trylock_page(hpage) {
        return;
    }
    match cx.pmdp_get_lockless(pmd).kind() {
        PmdKind::None => {
            // A lost race (someone installed a table) is SCAN_FAIL: no-op.
            let vma = cx.vma_lookup(range_addr(r)).expect("every range has its VMA");
            cx.set_huge_pmd(vma, range_addr(r), pmd, hpage);
        }
        PmdKind::Table(_) => {
            if let Some((map, ptl)) = cx.pte_offset_map_lock(pmd, addr) {
                let pte = map.at(i);
                if cx.ptep_get(pte).is_none() {
                    cx.do_set_pte(addr, pte, hpage.nth(i));
                }
                cx.pte_unmap_unlock(map, ptl);
            }
        }
        PmdKind::Huge(_) => {}
    }
    cx.unlock_page(hpage);
}

/// `UFFDIO_COPY` (`mfill_atomic_copy`) into a private uffd-armed VMA. The
/// page is allocated and filled from user memory before any lock; a none
/// PMD gets a table (`__pte_alloc`); a huge PMD or an occupied slot is
/// -EEXIST and the page is freed. Installs under `ptl` alone and never
/// looks at the page cache or takes the page lock: the race of the 2023
/// report.
fn uffd_copy<E: Engine>(s: &mut ActorState, cx: &mut Cx<'_, E>) {
    let Some(r) = s.pick_range() else { return };
    let i = s.pick_index();
    let (addr, pmd) = (addr_of(r, i), pmd_of(r));
    let Some(page) = cx.alloc_anon_page(addr) else {
        return;
    };
    // A huge PMD is -EEXIST; a none PMD gets a table first.
    let installed = !matches!(cx.pmdp_get_lockless(pmd).kind(), PmdKind::Huge(_)) && {
        cx.pte_alloc(pmd);
        match cx.pte_offset_map_lock(pmd, addr) {
            // The PMD went huge meanwhile: -EEXIST.
            None => false,
            Some((map, ptl)) => {
                let pte = map.at(i);
                let empty = cx.ptep_get(pte).is_none();
                if empty {
                    cx.page_add_new_anon_rmap(page);
                    cx.add_mm_counter(MmCounter::AnonPages, 1);
                    cx.set_pte_at(addr, pte, Pte::present(page));
                }
                cx.pte_unmap_unlock(map, ptl);
                empty
            }
        }
    };
    if !installed {
        cx.free_anon_page(page);
    }
}

/// `do_wp_page()` -> `wp_page_copy()` on a private VMA: the entry is read
/// without the lock; if it maps a file subpage, a copy is allocated with
/// no lock held, then under `ptl`, only if the entry is unchanged
/// (`pte_same`): counters, `ptep_clear_flush`, the copy's rmap and PTE,
/// the file subpage's rmap and reference.
fn cow<E: Engine>(s: &mut ActorState, cx: &mut Cx<'_, E>) {
    let Some(r) = s.pick_range() else { return };
    let i = s.pick_index();
    let (addr, pmd) = (addr_of(r, i), pmd_of(r));
    let vma = cx.vma_lookup(addr).expect("every range has its VMA");
    let Some(orig) = peek(cx, pmd, addr, i) else {
        return;
    };
    let Some(file_page) = orig.pfn().filter(|&p| !cx.page_anon(p)) else {
        return;
    };
    // The copy's content is the file page's: data of this address.
    let Some(copy) = cx.alloc_anon_page(addr) else {
        return;
    };
    let Some((map, ptl)) = cx.pte_offset_map_lock(pmd, addr) else {
        cx.free_anon_page(copy);
        return;
    };
    let pte = map.at(i);
    let same = cx.ptep_get(pte) == orig;
    if same {
        let counter = cx.mm_counter_file(file_page);
        cx.add_mm_counter(counter, -1);
        cx.add_mm_counter(MmCounter::AnonPages, 1);
        cx.ptep_clear_flush(addr, pte);
        cx.page_add_new_anon_rmap(copy);
        cx.set_pte_at(addr, pte, Pte::present(copy));
        cx.page_remove_rmap(file_page, vma, false);
        // The kernel puts this reference after the unlock; the model puts
        // it under ptl, because the accounting oracle reads the refcount
        // under ptl and takes it to be exactly what the mappings imply.
        cx.put_page(file_page);
    }
    cx.pte_unmap_unlock(map, ptl);
    if !same {
        cx.free_anon_page(copy);
    }
}

/// `try_to_unmap_one()` for an anonymous page of a random range, under
/// `ptl`: clear and flush, counters, the swap entry, the rmap; the page is
/// freed after the flush and the unlock.
fn swap_out<E: Engine>(s: &mut ActorState, cx: &mut Cx<'_, E>) {
    let Some(r) = s.pick_range() else { return };
    let start = s.pick_index();
    let pmd = pmd_of(r);
    let vma = cx.vma_lookup(range_addr(r)).expect("every range has its VMA");
    let Some((map, ptl)) = cx.pte_offset_map_lock(pmd, range_addr(r)) else {
        return;
    };
    let found = scan(cx, map, start, |cx, pte| pte.pfn().is_some_and(|p| cx.page_anon(p)))
        .and_then(|(i, pte)| Some((i, pte.pfn()?)));
    if let Some((i, page)) = found {
        let (addr, pte) = (addr_of(r, i), map.at(i));
        cx.ptep_clear_flush(addr, pte);
        let entry = Pte::swap(cx.get_swap_page());
        cx.add_mm_counter(MmCounter::AnonPages, -1);
        cx.add_mm_counter(MmCounter::SwapEnts, 1);
        cx.set_pte_at(addr, pte, entry);
        cx.page_remove_rmap(page, vma, false);
    }
    cx.pte_unmap_unlock(map, ptl);
    if let Some((_, page)) = found {
        cx.free_anon_page(page);
    }
}

/// `do_swap_page()` for a swap entry of a random range: found without the
/// lock, a page allocated and read in with no lock held, then installed
/// under `ptl` only if the entry is unchanged (`pte_same`).
fn swap_in<E: Engine>(s: &mut ActorState, cx: &mut Cx<'_, E>) {
    let Some(r) = s.pick_range() else { return };
    let start = s.pick_index();
    let pmd = pmd_of(r);
    let Some((map, _ptl)) = cx.pte_offset_map_nolock(pmd, range_addr(r)) else {
        return;
    };
    let found = scan(cx, map, start, |_, pte| pte.is_swap());
    cx.pte_unmap(map);
    let Some((i, orig)) = found else { return };
    let addr = addr_of(r, i);
    let Some(page) = cx.alloc_anon_page(addr) else {
        return;
    };
    let Some((map, ptl)) = cx.pte_offset_map_lock(pmd, addr) else {
        cx.free_anon_page(page);
        return;
    };
    let pte = map.at(i);
    let same = cx.ptep_get(pte) == orig;
    if same {
        cx.add_mm_counter(MmCounter::AnonPages, 1);
        cx.add_mm_counter(MmCounter::SwapEnts, -1);
        cx.page_add_new_anon_rmap(page);
        cx.set_pte_at(addr, pte, Pte::present(page));
    }
    cx.pte_unmap_unlock(map, ptl);
    if !same {
        cx.free_anon_page(page);
    }
}

/// `migrate_pages()` of one anonymous page, in the kernel's two critical
/// sections. The destination is allocated first (`migrate_folio_unmap`).
/// (A) `try_to_migrate_one()`, under `ptl`: clear and flush, install a
/// migration entry, drop the source's rmap. The copy (`move_to_new_folio`)
/// runs with no lock. (B) `remove_migration_pte()`, under `ptl` again: if
/// the table and our entry are still there, install the destination.
/// Either way the source's last reference goes; if the entry was gone
/// (zapped by a restore, or freed with its table by a broken collapse)
/// the destination is freed too. Migration itself does not move the anon
/// counter: a migration entry still counts as the page.
fn migrate<E: Engine>(s: &mut ActorState, cx: &mut Cx<'_, E>) {
    let Some(r) = s.pick_range() else { return };
    let start = s.pick_index();
    let (haddr, pmd) = (range_addr(r), pmd_of(r));
    let vma = cx.vma_lookup(haddr).expect("every range has its VMA");
    let Some(new) = cx.alloc_anon_page(haddr) else {
        return;
    };
    let unmapped = match cx.pte_offset_map_lock(pmd, haddr) {
        None => None,
        Some((map, ptl)) => {
            let found = scan(cx, map, start, |cx, pte| pte.pfn().is_some_and(|p| cx.page_anon(p)))
                .and_then(|(i, pte)| Some((i, pte.pfn()?)));
            if let Some((i, old)) = found {
                let (addr, pte) = (addr_of(r, i), map.at(i));
                cx.ptep_clear_flush(addr, pte);
                cx.set_pte_at(addr, pte, Pte::migration(old));
                cx.page_remove_rmap(old, vma, false);
            }
            cx.pte_unmap_unlock(map, ptl);
            found.map(|(i, old)| (map.slot, i, old))
        }
    };
    let Some((slot, i, old)) = unmapped else {
        cx.free_anon_page(new);
        return;
    };
    cx.copy_highpage(new, old);
    let addr = addr_of(r, i);
    let moved = match cx.pte_offset_map_lock(pmd, addr) {
        None => false,
        Some((map, ptl)) => {
            let ours = map.slot == slot && cx.ptep_get(map.at(i)) == Pte::migration(old);
            if ours {
                cx.page_add_new_anon_rmap(new);
                cx.set_pte_at(addr, map.at(i), Pte::present(new));
            }
            cx.pte_unmap_unlock(map, ptl);
            ours
        }
    };
    cx.free_anon_page(old);
    if !moved {
        cx.free_anon_page(new);
    }
}

/// A `pml` neighbour's operation: take `pml` for the huge PMD at
/// [`NEIGHBOUR_SLOT`] of a random range's PMD table (as a THP fault,
/// split, zap or mprotect of that PMD would), update it, keep working for
/// `hold_ns` under the lock, unlock. Its contended waits are the report's
/// "neighbour wait".
fn hold_pml<E: Engine>(n: &mut Neighbour, cx: &mut Cx<'_, E>) {
    let Some(r) = n.state.pick_range() else {
        return;
    };
    let table = pmd_table_of(r);
    let pml = cx.pmd_lock(PmdRef { table, idx: NEIGHBOUR_SLOT });
    cx.touch_neighbour_pmd(table);
    cx.ndelay(n.hold_ns);
    cx.spin_unlock(pml);
}

/// A user access: read a random address through this CPU's TLB (a
/// lockless walk on a miss); `touch` reports data of the wrong page or of
/// a freed one.
fn read<E: Engine>(s: &mut ActorState, cx: &mut Cx<'_, E>) {
    let Some(r) = s.pick_range() else { return };
    let i = s.pick_index();
    cx.touch(addr_of(r, i));
}

/// `MADV_GUARD_INSTALL` / `MADV_GUARD_REMOVE` on one page, any VMA:
/// under `ptl` alone, a none slot gets a guard marker and a guard marker
/// goes back to none (non-present either way, so no flush). A PMD that is
/// none or huge is left alone. Anything that inserts under `ptl` alone
/// reopens the collapse race on every VMA v1 does not special-case.
fn mark<E: Engine>(s: &mut ActorState, cx: &mut Cx<'_, E>) {
    let Some(r) = s.pick_range() else { return };
    let i = s.pick_index();
    let addr = addr_of(r, i);
    let Some((map, ptl)) = cx.pte_offset_map_lock(pmd_of(r), addr) else {
        return;
    };
    let pte = map.at(i);
    let cur = cx.ptep_get(pte);
    if cur.is_none() {
        cx.set_pte_at(addr, pte, Pte::marker(PteMarker::Guard));
    } else if cur.marker_kind() == Some(PteMarker::Guard) {
        cx.set_pte_at(addr, pte, Pte::NONE);
    }
    cx.pte_unmap_unlock(map, ptl);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presets::preset;
    use bench_core::kernel::{CollapsePolicy, NoParams, ScanResult};

    /// A policy that is never run: the streams are drawn before any op.
    struct Idle(NoParams);

    impl CollapsePolicy for Idle {
        type Params = NoParams;
        const NAME: &'static str = "idle";
        const SUMMARY: &'static str = "does nothing";
        fn new(params: NoParams) -> Self {
            Idle(params)
        }
        fn params(&self) -> &NoParams {
            &self.0
        }
        fn collapse<E: Engine>(&self, _: &mut Cx<'_, E>, _: u64, _: bool) -> ScanResult {
            ScanResult::Fail
        }
    }

    /// The first draws of every actor's stream.
    fn draws(scenario: &Scenario) -> Vec<Vec<u64>> {
        let policy: Arc<dyn DynPolicy> = Arc::new(Idle(NoParams {}));
        Actor::for_scenario(scenario, &policy)
            .into_iter()
            .map(|mut a| {
                let s = match &mut a {
                    Actor::Collapser(c) => &mut c.state,
                    Actor::Swap(s) => &mut s.state,
                    Actor::Neighbour(n) => &mut n.state,
                    Actor::Faulter(s)
                    | Actor::Uffd(s)
                    | Actor::Cow(s)
                    | Actor::Migrate(s)
                    | Actor::Reader(s)
                    | Actor::Marker(s) => s,
                };
                (0..4).map(|_| s.rng.next_u64()).collect()
            })
            .collect()
    }

    #[test]
    fn same_seed_same_choices() {
        let mut s = preset("mixed").unwrap();
        let first = draws(&s);
        assert_eq!(first.len(), 9);
        assert_eq!(draws(&s), first, "same seed, same streams");
        for (a, b) in first.iter().zip(&first[1..]) {
            assert_ne!(a, b, "each actor has its own stream");
        }
        s.seed += 1;
        assert_ne!(draws(&s)[0], first[0], "another seed, other streams");
    }

    #[test]
    fn actors_are_numbered_in_cpu_order_with_their_ranges() {
        let mut s = preset("mixed").unwrap();
        s.threads.collapsers = 3;
        let policy: Arc<dyn DynPolicy> = Arc::new(Idle(NoParams {}));
        let actors = Actor::for_scenario(&s, &policy);
        let roles: Vec<Role> = actors.iter().map(bench_core::actor::Actor::role).collect();
        assert_eq!(roles[..4], [Role::Collapse, Role::Collapse, Role::Collapse, Role::Faulter]);
        assert_eq!(roles[10], Role::Marker);
        assert_eq!(actors[1].state().ranges, vec![1, 4, 7]);
        assert_eq!(roles[4], Role::Uffd);
        assert_eq!(actors[4].state().ranges, vec![0, 1, 2, 3], "uffd: the armed half");
        assert_eq!(actors[5].state().ranges.len(), 8, "cow: every private range");
    }
}
