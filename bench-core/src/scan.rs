//! The kernel's `enum scan_result`: what a collapse returns.

use enum_map::Enum;
use serde::{Deserialize, Serialize};

/// The kernel's `enum scan_result` (the values a collapse can return).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Enum)]
pub enum ScanResult {
    /// `SCAN_FAIL`: an entry maps something other than `hpage + i`, or a
    /// lock-protected recheck failed.
    Fail,
    /// `SCAN_SUCCEED`.
    Succeed,
    /// `SCAN_PMD_NULL`: no PMD for the address.
    PmdNull,
    /// `SCAN_PMD_NONE`: the PMD is empty (table already retracted).
    PmdNone,
    /// `SCAN_PMD_MAPPED`: already mapped by a huge PMD.
    PmdMapped,
    /// `SCAN_PTE_NON_PRESENT`: a swap or migration entry or marker in the range.
    PteNonPresent,
    /// `SCAN_PTE_UFFD_WP`: the VMA has uffd-wp; the table must stay.
    PteUffdWp,
    /// `SCAN_PAGE_NULL`: no page in the page cache.
    PageNull,
    /// `SCAN_PAGE_COMPOUND`: the page is not PMD-order.
    PageCompound,
    /// `SCAN_VMA_CHECK`: no VMA, not file-backed, or range not inside it.
    VmaCheck,
}

impl ScanResult {
    /// The kernel's name (`SCAN_SUCCEED`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ScanResult::Fail => "SCAN_FAIL",
            ScanResult::Succeed => "SCAN_SUCCEED",
            ScanResult::PmdNull => "SCAN_PMD_NULL",
            ScanResult::PmdNone => "SCAN_PMD_NONE",
            ScanResult::PmdMapped => "SCAN_PMD_MAPPED",
            ScanResult::PteNonPresent => "SCAN_PTE_NON_PRESENT",
            ScanResult::PteUffdWp => "SCAN_PTE_UFFD_WP",
            ScanResult::PageNull => "SCAN_PAGE_NULL",
            ScanResult::PageCompound => "SCAN_PAGE_COMPOUND",
            ScanResult::VmaCheck => "SCAN_VMA_CHECK",
        }
    }

    /// The result the kernel calls `name` (`"SCAN_PMD_NONE"`), if the
    /// model has it.
    pub fn from_name(name: &str) -> Option<ScanResult> {
        (0..<ScanResult as Enum>::LENGTH).map(<ScanResult as Enum>::from_usize).find(|r| r.name() == name)
    }
}

impl std::fmt::Display for ScanResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
