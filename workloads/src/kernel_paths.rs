//! The kernel paths that run beside a collapse, each written once.
//!
//! One function per operation of another kernel path that touches the page
//! tables `collapse_pte_mapped_thp()` works on: a page-cache fault,
//! UFFDIO_COPY, a COW fault, reclaim and swap-in of an anonymous page,
//! migration, a `pml` neighbour, guard markers, and the harness's restore
//! of a range between collapses. Each takes its choices (the address, the
//! entry to start a walk from, a hold time) as arguments: the actors
//! ([`crate::actors`]) draw them from their random streams, and the
//! conformance suite's functional cases ([`crate::conformance`]) and the
//! policy crates' tests pass fixed ones, so what a checker run races
//! against a collapse is exactly what a functional case sets up. Each
//! returns what it did, so a fixed caller can tell a setup that did not
//! happen from one that did.
//!
//! Every path reaches the model through the kernel-named primitives on
//! [`Cx`] only, and updates PTEs, rmaps, mm counters and references in the
//! order of the v6.6 function it models; its doc says where the model
//! departs from the kernel and why.

use bench_core::harness::{Harness, MmuGather};
use bench_core::kernel::{
    linear_page_index, pmd_pgtable, userfaultfd_wp, Cx, Engine, MmCounter, Pfn, Pmd, PmdKind, PmdRef, Pte, PteMap,
    PteMarker, ScanResult, Vma, SINGLE_DEPTH_NESTING,
};
use bench_core::mm::{vpn, NEIGHBOUR_SLOT};
use bench_core::pte::{HPAGE_PMD_MASK, HPAGE_PMD_NR, HPAGE_PMD_SIZE, PAGE_SIZE, PTRS_PER_PTE};

/// Index of `addr`'s entry in its PTE table.
fn pte_index(addr: u64) -> usize {
    (vpn(addr) % PTRS_PER_PTE as u64) as usize
}

/// Address of entry `i` of the table that maps `addr`.
fn entry_addr(addr: u64, i: usize) -> u64 {
    (addr & HPAGE_PMD_MASK) + i as u64 * PAGE_SIZE
}

/// The first entry of a mapped table, walking from `start` and wrapping,
/// that `want` accepts (as reclaim or migration takes a page off a list).
fn find_entry<E: Engine>(
    cx: &mut Cx<'_, E>,
    map: PteMap,
    start: usize,
    want: impl Fn(&Cx<'_, E>, Pte) -> bool,
) -> Option<(usize, Pte)> {
    for i in (0..PTRS_PER_PTE).map(|k| (start + k) % PTRS_PER_PTE) {
        let pte = cx.ptep_get(map.at(i));
        if want(cx, pte) {
            return Some((i, pte));
        }
    }
    None
}

/// The first entry from `start` on that maps an anonymous page, and that page.
fn find_anon_page<E: Engine>(cx: &mut Cx<'_, E>, map: PteMap, start: usize) -> Option<(usize, Pfn)> {
    let anon = |cx: &Cx<'_, E>, pte: Pte| pte.pfn().is_some_and(|p| cx.page_anon(p));
    find_entry(cx, map, start, anon).and_then(|(i, pte)| Some((i, pte.pfn()?)))
}

/// What a page-cache fault mapped.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FaultMapped {
    /// The subpage, by a PTE in a none slot.
    Subpage,
    /// The whole huge page, by the PMD.
    HugePage,
    /// Nothing: the huge page was locked, the slot was not none, the PMD
    /// was already huge (or went huge meanwhile), or a none PMD got a
    /// table before `do_set_pmd()` took `pml`.
    Nothing,
}

/// A read fault on a file VMA, as `filemap_map_pages()` (mm/filemap.c,
/// v6.6) handles it for the one address `addr`: trylock the huge page (a
/// locked page, one being collapsed for instance, is skipped: that is what
/// keeps faults out of a collapse); a none PMD gets the whole page by PMD
/// (`filemap_map_pmd()` -> `do_set_pmd()`); a PTE table gets the subpage
/// in a none slot under `ptl` (`set_pte_range()`).
///
/// The subpage is mapped by bench-core's `do_set_pte`, which takes the
/// reference before the PTE store where v6.6's
/// `filemap_map_folio_range()` adds it just after `set_pte_range()`; both
/// happen under `ptl`, so nothing can see the difference.
pub fn page_cache_fault<E: Engine>(cx: &mut Cx<'_, E>, addr: u64) -> FaultMapped {
    let (Some(vma), Some(pmd)) = (cx.vma_lookup(addr), cx.pmd_offset(addr)) else {
        return FaultMapped::Nothing;
    };
    let index = linear_page_index(vma, addr);
    let hpage = cx.file_hpage((index / HPAGE_PMD_NR as u64) as u32);
    let subpage = hpage.nth((index % HPAGE_PMD_NR as u64) as usize);
    if !cx.trylock_page(hpage) {
        return FaultMapped::Nothing;
    }
    let mapped = match cx.pmdp_get_lockless(pmd).kind() {
        // Someone installed a table meanwhile: do_set_pmd() backs off.
        PmdKind::None => match cx.set_huge_pmd(vma, addr & HPAGE_PMD_MASK, pmd, hpage) {
            ScanResult::Succeed => FaultMapped::HugePage,
            _ => FaultMapped::Nothing,
        },
        PmdKind::Table(_) => match cx.pte_offset_map_lock(pmd, addr) {
            None => FaultMapped::Nothing,
            Some((map, ptl)) => {
                let pte = map.at(pte_index(addr));
                let none = cx.ptep_get(pte).is_none();
                if none {
                    cx.do_set_pte(addr, pte, subpage);
                }
                cx.pte_unmap_unlock(map, ptl);
                if none {
                    FaultMapped::Subpage
                } else {
                    FaultMapped::Nothing
                }
            }
        },
        PmdKind::Huge(_) => FaultMapped::Nothing,
    };
    cx.unlock_page(hpage);
    mapped
}

/// What UFFDIO_COPY of one page did: the ioctl's result.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum UffdCopy {
    /// The page is mapped (0).
    Installed,
    /// The slot was not none or the PMD is huge (-EEXIST).
    Exists,
    /// The table went away before `ptl` was taken (-EAGAIN): user space
    /// is to retry.
    Again,
    /// The anonymous pool is exhausted (-ENOMEM).
    NoMemory,
}

/// UFFDIO_COPY of one page to `addr` in a private uffd-armed VMA:
/// `mfill_atomic()` -> `mfill_atomic_pte_copy()` ->
/// `mfill_atomic_install_pte()` (mm/userfaultfd.c, v6.6). A huge PMD is
/// -EEXIST; a none PMD gets a table first (`__pte_alloc()`). Then the
/// anonymous page is allocated and filled from user memory with no lock
/// held, and installed under `ptl` alone, into a none slot only: its rmap,
/// the anon counter, then the PTE. An occupied slot is -EEXIST and a
/// table gone meanwhile -EAGAIN; either way the page is freed. It never
/// looks at the page cache nor takes the page lock: the race of the 2023
/// report.
pub fn uffdio_copy<E: Engine>(cx: &mut Cx<'_, E>, addr: u64) -> UffdCopy {
    let pmd = cx.pmd_offset(addr).expect("UFFDIO_COPY to an address inside the model");
    if matches!(cx.pmdp_get_lockless(pmd).kind(), PmdKind::Huge(_)) {
        return UffdCopy::Exists;
    }
    cx.pte_alloc(pmd);
    let Some(page) = cx.alloc_anon_page(addr) else {
        return UffdCopy::NoMemory;
    };
    // mfill_atomic_pte_copy() -> the anon_vma the page's rmap needs,
    // prepared before the install (anon_vma_prepare()).
    if let Some(vma) = cx.vma_lookup(addr) {
        cx.anon_vma_prepare(vma);
    }
    let copied = match cx.pte_offset_map_lock(pmd, addr) {
        None => UffdCopy::Again,
        Some((map, ptl)) => {
            let pte = map.at(pte_index(addr));
            let none = cx.ptep_get(pte).is_none();
            if none {
                cx.page_add_new_anon_rmap(page);
                cx.add_mm_counter(MmCounter::AnonPages, 1);
                cx.set_pte_at(addr, pte, Pte::present(page));
            }
            cx.pte_unmap_unlock(map, ptl);
            if none {
                UffdCopy::Installed
            } else {
                UffdCopy::Exists
            }
        }
    };
    if copied != UffdCopy::Installed {
        cx.free_anon_page(page);
    }
    copied
}

/// A write fault on a private VMA that copies the file subpage mapped at
/// `addr` into an anonymous page: `do_wp_page()` -> `wp_page_copy()`
/// (mm/memory.c, v6.6). The entry is read without the lock (as
/// `handle_pte_fault()` reads `vmf->orig_pte`); if it maps a file subpage,
/// the copy is allocated and filled with no lock held; then under `ptl`,
/// only if the entry is unchanged (`pte_same`): the file counter down and
/// the anon counter up, `ptep_clear_flush`, the copy's rmap, its PTE, the
/// file subpage's rmap dropped. Otherwise the copy is freed. Returns
/// whether it copied.
///
/// Departures: the kernel enters `do_wp_page()` with `ptl` already taken
/// once by `handle_pte_fault()` and wraps the update in an mmu-notifier
/// range; the model reads the entry locklessly and starts no range (it has
/// no secondary MMU to tell). The kernel puts the file subpage's reference
/// after the unlock; the model puts it under `ptl`, because the accounting
/// oracle reads the refcount under `ptl` and takes it to be exactly what
/// the mappings imply.
pub fn cow_fault<E: Engine>(cx: &mut Cx<'_, E>, addr: u64) -> bool {
    let (Some(vma), Some(pmd)) = (cx.vma_lookup(addr), cx.pmd_offset(addr)) else {
        return false;
    };
    let Some((map, _ptl)) = cx.pte_offset_map_nolock(pmd, addr) else {
        return false;
    };
    let orig = cx.ptep_get(map.at(pte_index(addr)));
    cx.pte_unmap(map);
    let Some(file_page) = orig.pfn().filter(|&p| !cx.page_anon(p)) else {
        return false;
    };
    // The copy's data is the file page's: data of this address.
    let Some(copy) = cx.alloc_anon_page(addr) else {
        return false;
    };
    // wp_page_copy() -> vmf_anon_prepare(): the VMA gets its anon_vma.
    cx.anon_vma_prepare(vma);
    let Some((map, ptl)) = cx.pte_offset_map_lock(pmd, addr) else {
        cx.free_anon_page(copy);
        return false;
    };
    let pte = map.at(pte_index(addr));
    let same = cx.ptep_get(pte) == orig;
    if same {
        let counter = cx.mm_counter_file(file_page);
        cx.add_mm_counter(counter, -1);
        cx.add_mm_counter(MmCounter::AnonPages, 1);
        cx.ptep_clear_flush(addr, pte);
        cx.page_add_new_anon_rmap(copy);
        cx.set_pte_at(addr, pte, Pte::present(copy));
        cx.page_remove_rmap(file_page, vma, false);
        cx.put_page(file_page);
    }
    cx.pte_unmap_unlock(map, ptl);
    if !same {
        cx.free_anon_page(copy);
    }
    same
}

/// Reclaim of one anonymous page: `try_to_unmap_one()` (mm/rmap.c, v6.6)
/// as `shrink_folio_list()` calls it, then the free. Under `ptl`, for the
/// first entry from `addr`'s on (wrapping within its table) that maps an
/// anonymous page: clear and flush, the anon counter down and the swap
/// counter up, the swap entry, the rmap dropped, the mapping's reference
/// put; the page is freed after the unlock. Returns the address it swapped
/// out.
///
/// Departures: the page is found by walking the table under `ptl`, as a
/// stand-in for reclaim taking it off the LRU and finding its PTE through
/// the rmap; so its swap slot is allocated once the page is chosen, where
/// the kernel's `add_to_swap()` allocated it before the unmap.
pub fn swap_out<E: Engine>(cx: &mut Cx<'_, E>, addr: u64) -> Option<u64> {
    let vma = cx.vma_lookup(addr)?;
    let pmd = cx.pmd_offset(addr)?;
    let (map, ptl) = cx.pte_offset_map_lock(pmd, addr)?;
    let found = find_anon_page(cx, map, pte_index(addr));
    if let Some((i, page)) = found {
        let (addr, pte) = (entry_addr(addr, i), map.at(i));
        let entry = Pte::swap(cx.get_swap_page());
        cx.ptep_clear_flush(addr, pte);
        cx.add_mm_counter(MmCounter::AnonPages, -1);
        cx.add_mm_counter(MmCounter::SwapEnts, 1);
        cx.set_pte_at(addr, pte, entry);
        cx.page_remove_rmap(page, vma, false);
        cx.put_page(page);
    }
    cx.pte_unmap_unlock(map, ptl);
    let (i, page) = found?;
    cx.free_anon_page(page);
    Some(entry_addr(addr, i))
}

/// A fault on a swap entry: `do_swap_page()` (mm/memory.c, v6.6), for the
/// first swap entry from `addr`'s on (wrapping within its table), found
/// without the lock. A page is allocated and read in with no lock held,
/// then installed under `ptl` only if the entry is unchanged (`pte_same`):
/// the anon counter up and the swap counter down, the rmap, the PTE;
/// otherwise the page is freed. Returns the address it swapped in.
///
/// Departure: the kernel faults on one address; the model walks for a swap
/// entry, because there are few and a random address would rarely hit one.
pub fn swap_in<E: Engine>(cx: &mut Cx<'_, E>, addr: u64) -> Option<u64> {
    let pmd = cx.pmd_offset(addr)?;
    let (map, _ptl) = cx.pte_offset_map_nolock(pmd, addr)?;
    let found = find_entry(cx, map, pte_index(addr), |_, pte| pte.is_swap());
    cx.pte_unmap(map);
    let (i, orig) = found?;
    let addr = entry_addr(addr, i);
    let page = cx.alloc_anon_page(addr)?;
    let Some((map, ptl)) = cx.pte_offset_map_lock(pmd, addr) else {
        cx.free_anon_page(page);
        return None;
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
    same.then_some(addr)
}

/// `migrate_pages()` of one anonymous page (mm/migrate.c, v6.6), the first
/// from `addr`'s entry on (wrapping within its table), in the kernel's two
/// critical sections. The destination is allocated first
/// (`migrate_folio_unmap()`). (A) `try_to_migrate_one()` (mm/rmap.c),
/// under `ptl`: clear and flush, the migration entry, the source's rmap
/// dropped. The copy (`move_to_new_folio()`, here `copy_highpage`) runs
/// with no lock. (B) `remove_migration_pte()`, under `ptl` again: if the
/// table and our entry are still there, the destination's rmap and PTE.
/// Either way the source's last reference goes; if the entry was gone
/// (zapped by a restore, or freed with its table by a broken collapse) the
/// destination is freed too. Migration does not move the anon counter: a
/// migration entry still counts as the page. Returns the address whose
/// page moved.
///
/// Departures: the page is found by walking the table under `ptl` (the
/// kernel takes it from a list and finds its PTE through the rmap), and
/// the references are not counted one by one as the kernel's
/// `folio_put()`/`folio_get()` in (A) and (B) do: the source's go with its
/// free, and the destination's mapping holds its allocation's.
pub fn migrate_one<E: Engine>(cx: &mut Cx<'_, E>, addr: u64) -> Option<u64> {
    let vma = cx.vma_lookup(addr)?;
    let pmd = cx.pmd_offset(addr)?;
    let new = cx.alloc_anon_page(addr & HPAGE_PMD_MASK)?;
    let unmapped = cx.pte_offset_map_lock(pmd, addr).and_then(|(map, ptl)| {
        let found = find_anon_page(cx, map, pte_index(addr));
        if let Some((i, old)) = found {
            let (addr, pte) = (entry_addr(addr, i), map.at(i));
            cx.ptep_clear_flush(addr, pte);
            cx.set_pte_at(addr, pte, Pte::migration(old));
            cx.page_remove_rmap(old, vma, false);
        }
        cx.pte_unmap_unlock(map, ptl);
        found.map(|(i, old)| (map, i, old))
    });
    let Some((unmapped_from, i, old)) = unmapped else {
        cx.free_anon_page(new);
        return None;
    };
    cx.copy_highpage(new, old);
    let addr = entry_addr(addr, i);
    let moved = match cx.pte_offset_map_lock(pmd, addr) {
        None => false,
        Some((map, ptl)) => {
            let ours = map == unmapped_from && cx.ptep_get(map.at(i)) == Pte::migration(old);
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
    moved.then_some(addr)
}

/// A `pml` neighbour: a fault on the huge PMD at [`NEIGHBOUR_SLOT`] of PMD
/// table `table`, as `huge_pmd_set_accessed()` (mm/huge_memory.c, v6.6)
/// handles it: `pmd_lock`, `touch_pmd`, unlock; with `hold_ns` of work
/// under the lock, standing for the THP faults, splits, zaps and mprotects
/// of that PMD that hold the same lock longer. Its contended waits are the
/// report's "neighbour wait".
pub fn hold_neighbour_pml<E: Engine>(cx: &mut Cx<'_, E>, table: u32, hold_ns: u64) {
    let pmd = PmdRef { table, idx: NEIGHBOUR_SLOT };
    let pml = cx.pmd_lock(pmd);
    cx.touch_pmd(pmd);
    cx.ndelay(hold_ns);
    cx.spin_unlock(pml);
}

/// MADV_GUARD_INSTALL / MADV_GUARD_REMOVE on the one page at `addr`, any
/// VMA (mm/madvise.c, `guard_install_pte_entry()` and
/// `guard_remove_pte_entry()`: Linux 6.13, not in v6.6; this is the
/// "future ptl-only inserter" of DESIGN §2). Under `ptl` alone, a none
/// slot gets a guard marker and a guard marker goes back to none
/// (non-present either way, so no flush). A PMD that is none or huge is
/// left alone. Anything that inserts under `ptl` alone reopens the
/// collapse race on every VMA v1 does not special-case. Returns the entry
/// written, None if it changed nothing.
///
/// Departure: one call installs or removes, whichever applies, where the
/// kernel's caller says which; a random actor then needs no second choice.
pub fn toggle_guard_marker<E: Engine>(cx: &mut Cx<'_, E>, addr: u64) -> Option<Pte> {
    let pmd = cx.pmd_offset(addr)?;
    let (map, ptl) = cx.pte_offset_map_lock(pmd, addr)?;
    let pte = map.at(pte_index(addr));
    let cur = cx.ptep_get(pte);
    let new = if cur.is_none() {
        Some(Pte::marker(PteMarker::Guard))
    } else if cur.marker_kind() == Some(PteMarker::Guard) {
        Some(Pte::NONE)
    } else {
        None
    };
    if let Some(new) = new {
        cx.set_pte_at(addr, pte, new);
    }
    cx.pte_unmap_unlock(map, ptl);
    new
}

/// What `madvise(MADV_DONTNEED)` of a range did to its PTE table.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Dontneed {
    /// Zapped, and the emptied table freed (after the flush, by RCU).
    TableFreed,
    /// Zapped; the table stays (a guard marker kept, or an entry mapped
    /// again before the table could be freed).
    Zapped,
    /// No table to zap (the PMD was none or huge).
    NoTable,
}

/// `madvise(MADV_DONTNEED)` of the whole 2 MiB range at `haddr` with
/// empty page-table reclaim (`CONFIG_PT_RECLAIM`, x86-64; mm/memory.c and
/// mm/pt_reclaim.c of v6.14): `zap_pte_range()` zaps every entry under
/// `ptl` into an mmu_gather, keeping guard markers. If it kept none, the
/// table is empty: still under `ptl`, `try_get_and_clear_pmd()` trylocks
/// `pml` (it nests outside `ptl`) and clears the PMD; else, after `ptl` is
/// dropped, `try_to_free_pte()` takes `pml` then `ptl`, checks the table
/// is still the PMD's (`pte_offset_map_rw_nolock()` under `pml`) and
/// still empty, and clears the PMD. The table goes to the gather
/// (`free_pte()` -> `pte_free_tlb()`), and `tlb_finish_mmu()` flushes the
/// gathered range -- the pages zapped and the table's first page, not the
/// whole 2 MiB -- after every lock is dropped, then frees the table after
/// a grace period. The caller holds `mmap_lock` for read.
///
/// Departures: one call zaps one whole range (the kernel walks whatever
/// range user space passes, one PMD at a time); file pages are not freed
/// by a zap in the model (the page cache keeps them), anonymous ones are
/// freed after the flush as the kernel's batched free does.
pub fn madv_dontneed<E: Engine>(cx: &mut Cx<'_, E>, haddr: u64) -> Dontneed {
    let Some(pmd) = cx.pmd_offset(haddr) else { return Dontneed::NoTable };
    if !matches!(cx.pmdp_get_lockless(pmd).kind(), PmdKind::Table(_)) {
        // A huge PMD is split and zapped by zap_huge_pmd(), not modelled
        // here: MADV_DONTNEED of a PMD-mapped range leaves no PTE table.
        return Dontneed::NoTable;
    }
    let mut tlb = MmuGather::default();
    let Some((map, ptl)) = cx.pte_offset_map_lock(pmd, haddr) else { return Dontneed::NoTable };
    let kept = cx.zap_pte_range_gather(haddr, map, &mut tlb);
    // try_get_and_clear_pmd(): pml may only be trylocked under ptl (and
    // the trylock fails where pml is ptl, held already: then
    // try_to_free_pte() below does it).
    let mut cleared = None;
    if !kept {
        let pml = cx.pmd_lockptr(pmd);
        if cx.spin_trylock(pml) {
            cleared = Some(clear_pmd(cx, pmd));
            cx.spin_unlock(pml);
        }
    }
    cx.pte_unmap_unlock(map, ptl);
    let freed = match (kept, cleared) {
        (true, _) => false,
        (false, Some(pmdval)) => {
            free_pte(cx, haddr, &mut tlb, pmdval);
            true
        }
        (false, None) => try_to_free_pte(cx, pmd, haddr, &mut tlb),
    };
    cx.tlb_finish_mmu(tlb);
    if freed {
        Dontneed::TableFreed
    } else {
        Dontneed::Zapped
    }
}

/// Read and clear a PMD whose lock this CPU holds; returns what it held.
fn clear_pmd<E: Engine>(cx: &mut Cx<'_, E>, pmd: PmdRef) -> Pmd {
    let pmdval = cx.pmdp_get_lockless(pmd);
    cx.pmd_clear(pmd);
    pmdval
}

/// `free_pte()`: the detached table to the gather, one table fewer.
fn free_pte<E: Engine>(cx: &mut Cx<'_, E>, addr: u64, tlb: &mut MmuGather, pmdval: Pmd) {
    tlb.pte_free_tlb(pmd_pgtable(pmdval), addr);
    cx.mm_dec_nr_ptes();
}

/// `try_to_free_pte()` (mm/pt_reclaim.c, v6.14): `pml`, then the table
/// mapped from the PMD under it and its `ptl` nested; if every entry is
/// still none, detach it and hand it to the gather. Returns whether it did.
fn try_to_free_pte<E: Engine>(cx: &mut Cx<'_, E>, pmd: PmdRef, addr: u64, tlb: &mut MmuGather) -> bool {
    let pml = cx.pmd_lock(pmd);
    let Some((map, pmdval, ptl)) = cx.pte_offset_map_rw_nolock(pmd, addr) else {
        cx.spin_unlock(pml);
        return false;
    };
    if ptl != pml {
        cx.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING);
    }
    if !(0..PTRS_PER_PTE).all(|i| cx.ptep_get(map.at(i)).is_none()) {
        // out_ptl: an entry came back; the table stays.
        if ptl != pml {
            cx.pte_unmap_unlock(map, ptl);
        } else {
            cx.pte_unmap(map);
        }
        cx.spin_unlock(pml);
        return false;
    }
    cx.pte_unmap(map);
    cx.pmd_clear(pmd);
    if ptl != pml {
        cx.spin_unlock(ptl);
    }
    cx.spin_unlock(pml);
    free_pte(cx, addr, tlb, pmdval);
    true
}

/// What `retract_page_tables()` did with a range's table.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Retracted {
    /// The PMD cleared and the table freed by RCU.
    TableFreed,
    /// Skipped: the VMA has an `anon_vma` or is uffd-wp (seen before or
    /// under `ptl`), or the PMD holds no table.
    Skipped,
}

/// `collapse_file()`'s end for the file range behind range `r`, reached
/// through another VMA: with its new huge page locked (so page-cache
/// faults and `collapse_pte_mapped_thp()` of this range wait), the old
/// pages are unmapped from this VMA (`try_to_unmap()`, under `ptl`, each
/// entry cleared and flushed), then `retract_page_tables()`
/// (mm/khugepaged.c, v6.13 form) removes the emptied table: under
/// `i_mmap_rwsem` for read and no `mmap_lock` of this mm, a VMA with an
/// `anon_vma` (a private mapping written to) or uffd-wp is skipped; both
/// are checked again under `ptl`, since a UFFDIO_COPY (under `mmap_lock`
/// only) may have prepared an `anon_vma` and filled an entry meanwhile.
/// The PMD's state is checked again under `pml` (v6.13: an empty-table
/// reclaim may have freed the table and a fault put a new, empty one
/// there: that one is retracted instead). Then `pmdp_collapse_flush()`
/// and `pte_free_defer()`.
///
/// Departures: the model's page cache already holds the huge page, so its
/// subpages stand for the old small pages and it for the new page; they
/// are unmapped one entry at a time with a flush each, where the kernel
/// batches the flush (`TTU_BATCH_FLUSH`) and flushes before the old pages
/// go; the model does not put them back in the page cache afterwards (the
/// collapser's restore maps the range again).
pub fn retract_page_tables<E: Engine>(cx: &mut Cx<'_, E>, r: u32) -> Retracted {
    let haddr = cx.range_addr(r);
    let hpage = cx.file_hpage(r);
    let vma = cx.vma_lookup(haddr).expect("range is in the model");
    cx.lock_page(hpage);
    unmap_file_pages(cx, vma, haddr, hpage);
    cx.i_mmap_lock_read();
    let retracted = 'skip: {
        if cx.vma_has_anon_vma(vma) || userfaultfd_wp(vma) {
            break 'skip Retracted::Skipped;
        }
        let (ScanResult::Succeed, Some(pmd)) = cx.find_pmd_or_thp_or_none(haddr) else {
            break 'skip Retracted::Skipped;
        };
        let range = cx.mmu_notifier_invalidate_range_start(haddr, haddr + HPAGE_PMD_SIZE);
        let pml = cx.pmd_lock(pmd);
        // check_pmd_state() under pml, then pte_lockptr() of what it holds.
        let pgt_pmd = match cx.table_under_pml(pmd) {
            None => None,
            Some((_, ptl)) => {
                if ptl != pml {
                    cx.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING);
                }
                let flushed = (!cx.vma_has_anon_vma(vma) && !userfaultfd_wp(vma))
                    .then(|| cx.pmdp_collapse_flush(vma, haddr, pmd));
                if ptl != pml {
                    cx.spin_unlock(ptl);
                }
                flushed
            }
        };
        cx.spin_unlock(pml);
        cx.mmu_notifier_invalidate_range_end(range);
        match pgt_pmd {
            Some(pgt_pmd) => {
                cx.mm_dec_nr_ptes();
                cx.pte_free_defer(pmd_pgtable(pgt_pmd));
                Retracted::TableFreed
            }
            None => Retracted::Skipped,
        }
    };
    cx.i_mmap_unlock_read();
    cx.unlock_page(hpage);
    retracted
}

/// `try_to_unmap()` of every subpage of `hpage` mapped in the table at
/// `haddr`: under `ptl`, each entry cleared and flushed, its rmap, mm
/// counter and reference dropped.
fn unmap_file_pages<E: Engine>(cx: &mut Cx<'_, E>, vma: &Vma, haddr: u64, hpage: Pfn) {
    let Some(pmd) = cx.pmd_offset(haddr) else { return };
    let Some((map, ptl)) = cx.pte_offset_map_lock(pmd, haddr) else { return };
    for i in 0..PTRS_PER_PTE {
        let pte = map.at(i);
        let Some(page) = cx.ptep_get(pte).pfn().filter(|&p| cx.compound_head(p) == hpage) else { continue };
        let addr = entry_addr(haddr, i);
        cx.ptep_clear_flush(addr, pte);
        let counter = cx.mm_counter_file(page);
        cx.add_mm_counter(counter, -1);
        cx.page_remove_rmap(page, vma, false);
        cx.put_page(page);
    }
    cx.pte_unmap_unlock(map, ptl);
}

/// The harness's restore of range `r` between collapses (no single kernel
/// function): put it back as collapse finds it, a PTE table mapping the
/// density pattern of its huge page and nothing else. What the real system
/// gets from splits, unmaps and refaults over time, done at once and in
/// one `pml` hold (with `ptl` nested for a table), so no other actor sees
/// the range half rebuilt and every collapse starts from the same state.
/// Under the huge page's lock, which keeps page-cache faulters (who
/// trylock it) away; uffd, COW, swap, migration and markers still run
/// before and after. A huge PMD is zapped as `zap_huge_pmd()` would; a
/// table is emptied as `zap_pte_range()` would, then refilled.
pub fn restore_range<E: Engine>(cx: &mut Cx<'_, E>, r: u32) {
    let haddr = cx.range_addr(r);
    let (hpage, pmd) = (cx.file_hpage(r), cx.pmd_offset(haddr).expect("range is in the model"));
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
            cx.ptep_clear(entry_addr(haddr, i), map.at(i));
            cx.add_mm_counter(MmCounter::AnonPages, -1);
        }
    }
    cx.zap_pte_range(haddr, map);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bench_core::mm::MAP_BASE;
    use bench_core::{Mm, MmConfig, Native, Role};
    use std::time::Instant;

    /// One private range whose density leaves two none slots.
    fn model() -> Mm {
        Mm::new(MmConfig { density: 510, anon_pages: 16, spare_tables: 4, ..MmConfig::one_range(1) })
            .expect("a valid one-range model")
    }

    fn addr(i: usize) -> u64 {
        MAP_BASE + i as u64 * PAGE_SIZE
    }

    #[test]
    fn each_path_reports_what_it_did_and_restore_puts_the_range_back() {
        let mm = model();
        let holes: Vec<usize> = (0..PTRS_PER_PTE).filter(|&i| !mm.density_maps(i)).collect();
        let [hole, other_hole] = holes[..] else { panic!("two none slots expected, found {holes:?}") };
        let mut cx = bench_core::harness::new_cpu(&mm, 0, Role::Faulter, Native::new(Instant::now(), None, false));
        let anon = |mm: &Mm| mm.counter(MmCounter::AnonPages);

        assert_eq!(page_cache_fault(&mut cx, addr(hole)), FaultMapped::Subpage);
        assert_eq!(page_cache_fault(&mut cx, addr(hole)), FaultMapped::Nothing, "the slot is taken");

        assert!(cow_fault(&mut cx, addr(5)));
        assert!(!cow_fault(&mut cx, addr(5)), "an anonymous page is not COWed again");
        assert_eq!(uffdio_copy(&mut cx, addr(5)), UffdCopy::Exists, "UFFDIO_COPY into a taken slot");
        assert_eq!(anon(&mm), 1);

        assert_eq!(swap_out(&mut cx, addr(0)), Some(addr(5)), "reclaim walks to the anonymous page");
        assert_eq!(swap_out(&mut cx, addr(0)), None, "no anonymous page left");
        assert_eq!((anon(&mm), mm.counter(MmCounter::SwapEnts)), (0, 1));
        assert_eq!(swap_in(&mut cx, addr(9)), Some(addr(5)), "swap-in walks (wrapping) to the swap entry");
        assert_eq!((anon(&mm), mm.counter(MmCounter::SwapEnts)), (1, 0));

        let before = cx.touch(addr(5)).expect("swapped-in page mapped");
        assert_eq!(migrate_one(&mut cx, addr(6)), Some(addr(5)), "migration walks (wrapping) to the page");
        let after = cx.touch(addr(5)).expect("migrated page mapped");
        assert_ne!(before, after, "the destination is mapped, with the source's data (touch checks it)");
        assert_eq!(anon(&mm), 1, "migration leaves the anon counter alone");

        assert_eq!(toggle_guard_marker(&mut cx, addr(other_hole)), Some(Pte::marker(PteMarker::Guard)));
        assert_eq!(toggle_guard_marker(&mut cx, addr(other_hole)), Some(Pte::NONE));
        assert_eq!(toggle_guard_marker(&mut cx, addr(5)), None, "a mapped entry is left alone");
        assert_eq!(uffdio_copy(&mut cx, addr(other_hole)), UffdCopy::Installed);
        assert_eq!(anon(&mm), 2);

        let neighbour = mm.pmds.get(0, NEIGHBOUR_SLOT);
        hold_neighbour_pml(&mut cx, 0, 0);
        assert_ne!(mm.pmds.get(0, NEIGHBOUR_SLOT), neighbour, "the neighbour's PMD was touched");
        assert_eq!(mm.pmds.get(0, NEIGHBOUR_SLOT).kind(), neighbour.kind(), "and still maps the same");

        restore_range(&mut cx, 0);
        assert_eq!(anon(&mm), 0, "restore zapped the anonymous pages");
        let hpage = mm.file_hpage(0);
        let PmdKind::Table(slot) = mm.pmds.get(0, 0).kind() else { panic!("restore leaves a table") };
        for i in 0..PTRS_PER_PTE {
            let want = mm.density_maps(i).then(|| hpage.nth(i));
            assert_eq!(mm.tables.get(slot, i).pfn(), want, "entry {i} after the restore");
        }
        cx.check_range_accounting(0);
        let (violations, count) = mm.violations.snapshot();
        assert_eq!(count, 0, "no oracle fired: {violations:?}");
        assert!(mm.exit_mmap().is_empty(), "clean teardown");
    }
}
