//! Page-table entry encodings and the x86-64 geometry the model keeps.
//!
//! A PTE is a `u64` as in the kernel: a present bit and a frame number, or a
//! non-present encoding (swap entry, migration entry, PTE marker). The bit
//! positions are the model's own, not x86's; only the distinctions matter.

use std::fmt;

/// Bytes in a base page.
pub const PAGE_SIZE: u64 = 4096;
/// log2(PAGE_SIZE).
pub const PAGE_SHIFT: u32 = 12;
/// Entries in one PTE table (4 KiB / 8 bytes).
pub const PTRS_PER_PTE: usize = 512;
/// Entries in one PMD table.
pub const PTRS_PER_PMD: usize = 512;
/// Subpages of a PMD-sized huge page.
pub const HPAGE_PMD_NR: usize = 512;
/// Order of a PMD-sized huge page.
pub const HPAGE_PMD_ORDER: u32 = 9;
/// Bytes mapped by one PMD entry.
pub const HPAGE_PMD_SIZE: u64 = 2 << 20;
/// Mask that aligns an address down to its PMD.
pub const HPAGE_PMD_MASK: u64 = !(HPAGE_PMD_SIZE - 1);
/// Bytes mapped by one PMD table (512 PMDs): what one split `pml` covers.
pub const PMD_TABLE_SPAN: u64 = 1 << 30;

/// A page frame number: index into the model's `struct page` array.
///
/// `hpage.nth(i)` is the kernel's `hpage + i`.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, serde::Serialize, serde::Deserialize)]
pub struct Pfn(pub u32);

impl Pfn {
    /// The `i`th subpage of a compound page whose head is `self`.
    pub fn nth(self, i: usize) -> Pfn {
        Pfn(self.0 + i as u32)
    }
}

impl fmt::Display for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pfn {:#x}", self.0)
    }
}

const PRESENT: u64 = 1 << 0;
const KIND_SHIFT: u32 = 1;
const KIND_MASK: u64 = 0b11 << KIND_SHIFT;
const KIND_SWAP: u64 = 1 << KIND_SHIFT;
const KIND_MIGRATION: u64 = 2 << KIND_SHIFT;
const KIND_MARKER: u64 = 3 << KIND_SHIFT;
const PAYLOAD_SHIFT: u32 = 12;

/// Kinds of PTE marker (non-present entries that map nothing).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum PteMarker {
    /// `PTE_MARKER_UFFD_WP`: write-protect marker on a none slot.
    UffdWp = 1,
    /// `PTE_MARKER_GUARD`: a guard region installed by madvise.
    Guard = 2,
}

/// A page-table entry (in files: its raw value).
#[derive(Copy, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Pte(pub u64);

impl Pte {
    /// The empty entry.
    pub const NONE: Pte = Pte(0);

    /// A present entry mapping `pfn`.
    pub fn present(pfn: Pfn) -> Pte {
        Pte(((pfn.0 as u64) << PAYLOAD_SHIFT) | PRESENT)
    }
    /// A swap entry at swap offset `offset` (non-present).
    pub fn swap(offset: u32) -> Pte {
        Pte(((offset as u64) << PAYLOAD_SHIFT) | KIND_SWAP)
    }
    /// A migration entry for `pfn` (non-present; the page is being moved).
    pub fn migration(pfn: Pfn) -> Pte {
        Pte(((pfn.0 as u64) << PAYLOAD_SHIFT) | KIND_MIGRATION)
    }
    /// A PTE marker (non-present, maps nothing, but is not none).
    pub fn marker(m: PteMarker) -> Pte {
        Pte(((m as u64) << PAYLOAD_SHIFT) | KIND_MARKER)
    }

    /// `pte_none()`: the slot is empty.
    pub fn is_none(self) -> bool {
        self.0 == 0
    }
    /// `pte_present()`.
    pub fn is_present(self) -> bool {
        self.0 & PRESENT != 0
    }
    /// `pte_pfn()` of a present entry.
    pub fn pfn(self) -> Option<Pfn> {
        self.is_present().then_some(Pfn((self.0 >> PAYLOAD_SHIFT) as u32))
    }
    /// `is_swap_pte()` in the narrow sense: a real swap entry.
    pub fn is_swap(self) -> bool {
        !self.is_present() && self.0 & KIND_MASK == KIND_SWAP
    }
    /// `is_migration_entry()`; returns the page being migrated.
    pub fn migration_pfn(self) -> Option<Pfn> {
        (!self.is_present() && self.0 & KIND_MASK == KIND_MIGRATION).then_some(Pfn((self.0 >> PAYLOAD_SHIFT) as u32))
    }
    /// `is_pte_marker()`; returns which marker.
    pub fn marker_kind(self) -> Option<PteMarker> {
        if self.is_present() || self.0 & KIND_MASK != KIND_MARKER {
            return None;
        }
        match self.0 >> PAYLOAD_SHIFT {
            1 => Some(PteMarker::UffdWp),
            2 => Some(PteMarker::Guard),
            _ => None,
        }
    }
}

impl fmt::Debug for Pte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Pte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            write!(f, "none")
        } else if let Some(pfn) = self.pfn() {
            write!(f, "present {pfn}")
        } else if self.is_swap() {
            write!(f, "swap entry {:#x}", self.0 >> PAYLOAD_SHIFT)
        } else if let Some(pfn) = self.migration_pfn() {
            write!(f, "migration entry for {pfn}")
        } else if let Some(m) = self.marker_kind() {
            match m {
                PteMarker::UffdWp => write!(f, "uffd-wp marker"),
                PteMarker::Guard => write!(f, "guard marker"),
            }
        } else {
            write!(f, "bad pte {:#x}", self.0)
        }
    }
}

const PMD_TABLE: u64 = 1 << 0;
const PMD_HUGE: u64 = 1 << 1;
/// Bit a `pml` neighbour flips on its own huge PMD (soft-dirty-like).
const PMD_TOUCHED: u64 = 1 << 2;

/// What a PMD entry holds.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum PmdKind {
    /// `pmd_none()`.
    None,
    /// Points to a PTE table (the model's table slot number).
    Table(u32),
    /// Maps a PMD-sized huge page whose head is this frame.
    Huge(Pfn),
}

/// A PMD entry.
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
pub struct Pmd(pub u64);

impl Pmd {
    /// The empty entry.
    pub const NONE: Pmd = Pmd(0);

    /// `pmd_populate()`: an entry pointing at PTE table `slot`.
    pub fn table(slot: u32) -> Pmd {
        Pmd(((slot as u64) << PAYLOAD_SHIFT) | PMD_TABLE)
    }
    /// `mk_huge_pmd()`: an entry mapping the huge page at `head`.
    pub fn huge(head: Pfn) -> Pmd {
        Pmd(((head.0 as u64) << PAYLOAD_SHIFT) | PMD_HUGE)
    }
    /// Decode.
    pub fn kind(self) -> PmdKind {
        let payload = (self.0 >> PAYLOAD_SHIFT) as u32;
        if self.0 & PMD_TABLE != 0 {
            PmdKind::Table(payload)
        } else if self.0 & PMD_HUGE != 0 {
            PmdKind::Huge(Pfn(payload))
        } else {
            PmdKind::None
        }
    }
    /// `pmd_none()`.
    pub fn is_none(self) -> bool {
        self.0 == 0
    }
    /// The same mapping with the neighbour's touch bit flipped.
    pub fn touched(self) -> Pmd {
        Pmd(self.0 ^ PMD_TOUCHED)
    }
}

impl fmt::Debug for Pmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_distinct() {
        let p = Pte::present(Pfn(0x1234));
        assert_eq!(p.pfn(), Some(Pfn(0x1234)));
        assert!(!p.is_none() && p.is_present());
        let s = Pte::swap(7);
        assert!(s.is_swap() && s.pfn().is_none() && s.marker_kind().is_none());
        let m = Pte::migration(Pfn(9));
        assert_eq!(m.migration_pfn(), Some(Pfn(9)));
        assert!(!m.is_swap());
        let g = Pte::marker(PteMarker::Guard);
        assert_eq!(g.marker_kind(), Some(PteMarker::Guard));
        assert!(!g.is_none() && !g.is_present());
        assert_eq!(Pmd::table(3).kind(), PmdKind::Table(3));
        assert_eq!(Pmd::huge(Pfn(512)).kind(), PmdKind::Huge(Pfn(512)));
        assert_eq!(Pmd::huge(Pfn(512)).touched().kind(), PmdKind::Huge(Pfn(512)));
        assert_eq!(Pmd::NONE.kind(), PmdKind::None);
    }
}
