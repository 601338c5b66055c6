//! The `CollapsePolicy` trait: what a plugin implements.
//!
//! A policy is one function, `collapse`, with the signature and result of
//! the kernel's `collapse_pte_mapped_thp(mm, addr, install_pmd)`, written
//! against the kernel-named primitives on [`Cx`]. It is generic over the
//! [`Engine`], so the native engine compiles it to straight-line code with
//! no dynamic dispatch per primitive.

use crate::controlled::Controlled;
use crate::engine::{Engine, Native};
use crate::primitives::Cx;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::sync::Arc;

/// The kernel's `enum scan_result` (the values a collapse can return).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
}

impl std::fmt::Display for ScanResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A collapse policy plugin.
///
/// Contract, as for the kernel function it replaces: called with
/// `mmap_lock` held for read (implicit in the model), for a 2 MiB-aligned
/// `haddr` whose file already has a PMD-order page in the page cache. It
/// must return with no spinlock held, the page lock dropped and the
/// reference put, every started mmu-notifier range ended, and the TLB
/// flushed for every entry it cleared; the checker's oracles enforce this.
pub trait CollapsePolicy: Send + Sync + 'static {
    /// Typed parameters, read from the command line or a scenario file.
    /// Use `#[serde(default, deny_unknown_fields)]` so a typo is an error.
    type Params: Serialize + DeserializeOwned + Default + Clone + Debug + Send + Sync;
    /// Name used on the command line and in reports (`v1`, `v2-flush-bool`).
    const NAME: &'static str;
    /// One line for `collapse-bench list`.
    const SUMMARY: &'static str;

    /// Build with these parameters.
    fn new(params: Self::Params) -> Self;

    /// The parameters it was built with.
    fn params(&self) -> &Self::Params;

    /// `collapse_pte_mapped_thp(mm, haddr, install_pmd)`: `install_pmd` is
    /// true for MADV_COLLAPSE (map the huge page by PMD), false for
    /// khugepaged (retract the table and leave the PMD none).
    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult;
}

/// Object-safe view of a [`CollapsePolicy`], one method per engine. Every
/// `CollapsePolicy` gets it for free.
pub trait DynPolicy: Send + Sync {
    /// [`CollapsePolicy::NAME`].
    fn name(&self) -> &'static str;
    /// [`CollapsePolicy::SUMMARY`].
    fn summary(&self) -> &'static str;
    /// The parameters as JSON.
    fn params_json(&self) -> serde_json::Value;
    /// Name plus every parameter that differs from its default
    /// (`v2-flush-bool:recheck_always=true`).
    fn label(&self) -> String;
    /// Run on the native engine.
    fn collapse_native(&self, cx: &mut Cx<'_, Native>, haddr: u64, install_pmd: bool) -> ScanResult;
    /// Run on the controlled engine.
    fn collapse_controlled(&self, cx: &mut Cx<'_, Controlled<'_>>, haddr: u64, install_pmd: bool) -> ScanResult;
}

impl<P: CollapsePolicy> DynPolicy for P {
    fn name(&self) -> &'static str {
        P::NAME
    }
    fn summary(&self) -> &'static str {
        P::SUMMARY
    }
    fn params_json(&self) -> serde_json::Value {
        serde_json::to_value(self.params()).unwrap_or(serde_json::Value::Null)
    }
    fn label(&self) -> String {
        let defaults = serde_json::to_value(P::Params::default()).unwrap_or_default();
        let mut label = P::NAME.to_owned();
        if let serde_json::Value::Object(map) = self.params_json() {
            for (k, v) in map {
                if defaults.get(&k) != Some(&v) {
                    label.push_str(&format!(":{k}={v}"));
                }
            }
        }
        label
    }
    fn collapse_native(&self, cx: &mut Cx<'_, Native>, haddr: u64, install_pmd: bool) -> ScanResult {
        self.collapse(cx, haddr, install_pmd)
    }
    fn collapse_controlled(&self, cx: &mut Cx<'_, Controlled<'_>>, haddr: u64, install_pmd: bool) -> ScanResult {
        self.collapse(cx, haddr, install_pmd)
    }
}

/// A registered policy: how to list it and how to build it from parameters.
#[derive(Clone, Copy)]
pub struct PolicyEntry {
    /// [`CollapsePolicy::NAME`].
    pub name: &'static str,
    /// [`CollapsePolicy::SUMMARY`].
    pub summary: &'static str,
    /// Build from a JSON object of parameters (`{}` for the defaults).
    pub build: fn(&serde_json::Value) -> Result<Arc<dyn DynPolicy>, String>,
    /// The default parameters as JSON (for `list`).
    pub default_params: fn() -> serde_json::Value,
}

/// The registry entry for `P`.
pub fn entry<P: CollapsePolicy>() -> PolicyEntry {
    PolicyEntry {
        name: P::NAME,
        summary: P::SUMMARY,
        build: |v| {
            let v = if v.is_null() { serde_json::json!({}) } else { v.clone() };
            let params: P::Params =
                serde_json::from_value(v).map_err(|e| format!("parameters of policy {}: {e}", P::NAME))?;
            Ok(Arc::new(P::new(params)) as Arc<dyn DynPolicy>)
        },
        default_params: || serde_json::to_value(P::Params::default()).unwrap_or_default(),
    }
}

/// Parameters of a policy that takes none.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}
