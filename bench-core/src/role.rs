//! Who a model CPU is: the role its time and locks are attributed to,
//! and the code a page keeps of the actor that installed it.

use enum_map::Enum;
use serde::{Deserialize, Serialize};
use strum::{EnumIter, IntoEnumIterator, IntoStaticStr};

/// What a model CPU is doing, for attributing lock holds and waits.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Enum, EnumIter, IntoStaticStr,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum Role {
    /// `collapse_pte_mapped_thp()` itself (what the policy does).
    Collapse,
    /// The collapser putting a range back (split, re-populate); not timed as collapse.
    Restore,
    /// Page-cache fault (`filemap_map_pages`, trylocks the page).
    Faulter,
    /// `UFFDIO_COPY` on a private VMA.
    Uffd,
    /// Write fault COWing a file page into an anonymous copy.
    Cow,
    /// Swap-out / swap-in of anonymous copies.
    Swap,
    /// Migration of anonymous copies (migration entries).
    Migrate,
    /// THP operations on another huge PMD under the same `pml`.
    Neighbour,
    /// Touches memory through its TLB and checks the content.
    Reader,
    /// Installs and removes PTE markers under `ptl` only (guard regions).
    Marker,
    /// `madvise(MADV_DONTNEED)` with empty page-table reclaim (v6.14,
    /// `CONFIG_PT_RECLAIM`): zaps a range and frees its emptied PTE table.
    PtReclaim,
    /// `retract_page_tables()` from another VMA's `collapse_file()`: frees
    /// an empty PTE table under `i_mmap_rwsem`, without `mmap_lock`.
    Retract,
    /// The oracles' own consistency checks.
    Oracle,
}

impl Role {
    /// Short name.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Where a CPU in this role is, in a violation's "at ...": the kernel
    /// path it runs (a collapse names its step instead).
    pub fn activity(self) -> &'static str {
        match self {
            Role::Collapse => "collapse_pte_mapped_thp()",
            Role::Restore => "the range restore",
            Role::Faulter => "a page-cache fault",
            Role::Uffd => "UFFDIO_COPY",
            Role::Cow => "a COW fault",
            Role::Swap => "swap-out/swap-in",
            Role::Migrate => "migration",
            Role::Neighbour => "a pml neighbour",
            Role::Reader => "a read through the TLB",
            Role::Marker => "a guard-marker change",
            Role::PtReclaim => "MADV_DONTNEED (page-table reclaim)",
            Role::Retract => "retract_page_tables()",
            Role::Oracle => "an oracle check",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Encode who installed a page: role and CPU.
pub fn installer_code(role: Role, cpu: u32) -> u32 {
    ((role as u32) << 16) | (cpu & 0xffff)
}

/// Decode [`installer_code`] as stored in a page (+1; 0 is nobody).
pub fn installer_name(stored: u32) -> String {
    match stored.checked_sub(1) {
        None => "nobody".into(),
        Some(code) => {
            let role = Role::iter().nth((code >> 16) as usize);
            format!("{} on CPU {}", role.map_or("?", Role::name), code & 0xffff)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installer_codes_round_trip() {
        assert_eq!(installer_name(installer_code(Role::Uffd, 3) + 1), "uffd on CPU 3");
        assert_eq!(installer_name(0), "nobody");
    }
}
