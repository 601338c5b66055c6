//! The policy trait, its registry entry, and how a run reaches a
//! policy held as `dyn DynPolicy` on each engine.

use super::primitives::Cx;
use crate::engine::{Controlled, CpuEngine, Native};
use crate::scan::ScanResult;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::sync::Arc;

/// A collapse policy plugin: one form of `collapse_pte_mapped_thp()`.
///
/// Implement it for a type that holds the policy's parameters, then
/// register it with [`entry`]. Contract (see the [module docs](crate::kernel)):
/// called with `mmap_lock` held as [`CollapsePolicy::MMAP_LOCK`] says
/// (for read, since v6.6; the harness takes it), for a
/// 2 MiB-aligned `haddr` whose file already has a PMD-order page in the
/// page cache; it must return with no spinlock held, the page lock
/// dropped and the reference put, every started mmu-notifier range ended,
/// and the TLB flushed for every entry it cleared. The checker's oracles
/// enforce this.
///
/// A policy must be deterministic given what it reads from the model (no
/// clocks, no randomness of its own): the race checker replays a
/// counterexample by replaying the scheduling choices alone.
///
/// # Example
///
/// A policy with one parameter, that gives up after the kernel's early
/// checks (a real one goes on with steps 1 to 5: see the crate-level
/// example, or `policies::v1`):
///
/// ```
/// use bench_core::kernel::*;
/// use serde::{Deserialize, Serialize};
///
/// /// Parameters: `#[serde(default, deny_unknown_fields)]` makes a typo an error.
/// #[derive(Clone, Debug, Default, Serialize, Deserialize)]
/// #[serde(default, deny_unknown_fields)]
/// struct GiveUpParams {
///     /// Report SCAN_PMD_NULL instead of SCAN_FAIL.
///     pmd_null: bool,
/// }
///
/// struct GiveUp(GiveUpParams);
///
/// impl CollapsePolicy for GiveUp {
///     type Params = GiveUpParams;
///     const NAME: &'static str = "give-up";
///     const SUMMARY: &'static str = "the early checks, then SCAN_FAIL";
///
///     fn new(params: GiveUpParams) -> Self {
///         GiveUp(params)
///     }
///
///     fn params(&self) -> &GiveUpParams {
///         &self.0
///     }
///
///     fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, _install_pmd: bool) -> ScanResult {
///         cx.step(Step::Prologue);
///         let Some(vma) = cx.vma_lookup(haddr) else { return ScanResult::VmaCheck };
///         if !range_in_vma(vma, haddr, haddr + HPAGE_PMD_SIZE) {
///             return ScanResult::VmaCheck;
///         }
///         if userfaultfd_wp(vma) {
///             return ScanResult::PteUffdWp;
///         }
///         if self.0.pmd_null { ScanResult::PmdNull } else { ScanResult::Fail }
///     }
/// }
///
/// // Registered, listed and built from JSON parameters like any other.
/// let e = entry::<GiveUp>();
/// assert_eq!((e.name, e.summary), ("give-up", "the early checks, then SCAN_FAIL"));
/// assert_eq!((e.default_params)(), serde_json::json!({"pmd_null": false}));
/// let p = (e.build)(&serde_json::json!({"pmd_null": true})).unwrap();
/// assert_eq!(p.label(), "give-up:pmd_null=true");
/// assert!((e.build)(&serde_json::json!({"pmd_nul": true})).is_err());
/// ```
pub trait CollapsePolicy: Send + Sync + 'static {
    /// Typed parameters, read from the command line
    /// (`-p name:key=value`) or a scenario file, as a JSON object. Use
    /// `#[serde(default, deny_unknown_fields)]` so a missing key takes its
    /// default and a typo is an error; [`NoParams`] for a policy that
    /// takes none. Every parameter that differs from its default shows in
    /// the policy's [label](DynPolicy::label).
    type Params: Serialize + DeserializeOwned + Default + Clone + Debug + Send + Sync;
    /// Name used on the command line and in reports (`v1`,
    /// `v2-flush-bool`): unique among registered policies, no spaces, no
    /// `:` or `,` (they separate parameters and policies on the command
    /// line).
    const NAME: &'static str;
    /// One line for `collapse-bench list`: what the form is, and its
    /// expected verdict if it is a control.
    const SUMMARY: &'static str;
    /// How the caller holds `mmap_lock` around the collapse: for read from
    /// v6.6 on (khugepaged and MADV_COLLAPSE), for write before v6.6
    /// (`mmap_assert_write_locked()` in v6.1's function). The harness
    /// takes it before the call and drops it after.
    const MMAP_LOCK: MmapLock = MmapLock::Read;

    /// Build with these parameters.
    fn new(params: Self::Params) -> Self;

    /// The parameters it was built with.
    fn params(&self) -> &Self::Params;

    /// `collapse_pte_mapped_thp(mm, haddr, install_pmd)`: collapse the
    /// PTE-mapped huge page at `haddr` (2 MiB-aligned) on the CPU of `cx`.
    /// `install_pmd` is true for MADV_COLLAPSE (map the huge page by PMD,
    /// step 5), false for khugepaged (retract the table and leave the PMD
    /// none). Returns the kernel's result: [`ScanResult::Succeed`], or why
    /// it gave up (every abort must leave the model consistent: see the
    /// trait docs).
    ///
    /// Runners call it through [`crate::harness::Harness::run_collapse`], which times it, counts
    /// the result and checks the clean return; call it directly only from
    /// a policy that wraps another.
    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult;
}

/// Object-safe view of a [`CollapsePolicy`], one method per engine, so
/// registries and runners can hold `Arc<dyn DynPolicy>` without knowing
/// the type. Every `CollapsePolicy` gets it for free (blanket impl); do
/// not implement it by hand. Built from a [`PolicyEntry`]'s `build`.
///
/// ```
/// use bench_core::kernel::{entry, CollapsePolicy, DynPolicy, NoParams};
/// # use bench_core::kernel::{Cx, Engine, ScanResult};
/// # struct Noop(NoParams);
/// # impl CollapsePolicy for Noop {
/// #     type Params = NoParams;
/// #     const NAME: &'static str = "noop";
/// #     const SUMMARY: &'static str = "does nothing";
/// #     fn new(p: NoParams) -> Self { Noop(p) }
/// #     fn params(&self) -> &NoParams { &self.0 }
/// #     fn collapse<E: Engine>(&self, _: &mut Cx<'_, E>, _: u64, _: bool) -> ScanResult { ScanResult::Fail }
/// # }
/// let p: std::sync::Arc<dyn DynPolicy> = (entry::<Noop>().build)(&serde_json::Value::Null).unwrap();
/// assert_eq!((p.name(), p.label(), p.params_json()), ("noop", "noop".to_owned(), serde_json::json!({})));
/// ```
pub trait DynPolicy: Sealed + Send + Sync {
    /// [`CollapsePolicy::NAME`].
    fn name(&self) -> &'static str;
    /// [`CollapsePolicy::SUMMARY`].
    fn summary(&self) -> &'static str;
    /// [`CollapsePolicy::MMAP_LOCK`].
    fn mmap_lock(&self) -> MmapLock;
    /// The parameters as JSON.
    fn params_json(&self) -> serde_json::Value;
    /// Name plus every parameter that differs from its default
    /// (`v2-flush-bool:recheck_always=true`).
    fn label(&self) -> String;
    /// Run on the native engine (real threads, real spinlocks): what
    /// `run` and `cargo bench` time. Called through [`Engine`].
    #[doc(hidden)]
    fn collapse_native(&self, cx: &mut Cx<'_, Native>, haddr: u64, install_pmd: bool) -> ScanResult;
    /// Run on the controlled engine (one model CPU at a time, chosen by the
    /// checker's schedule, or by virtual time): what `check` searches and
    /// `--sim` measures. Called through [`Engine`].
    #[doc(hidden)]
    fn collapse_controlled(&self, cx: &mut Cx<'_, Controlled<'_>>, haddr: u64, install_pmd: bool) -> ScanResult;
}

mod sealed {
    /// Implemented for every [`super::CollapsePolicy`], and nothing else.
    pub trait Sealed {}
}
use sealed::Sealed;

impl<P: CollapsePolicy> Sealed for P {}
impl<P: RuntimePolicy> Sealed for Runtime<P> {}

impl<P: CollapsePolicy> DynPolicy for P {
    fn name(&self) -> &'static str {
        P::NAME
    }
    fn summary(&self) -> &'static str {
        P::SUMMARY
    }
    fn mmap_lock(&self) -> MmapLock {
        P::MMAP_LOCK
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

/// A policy made while the program runs, as a value rather than a type:
/// the kernel's own C, compiled from the tree the user names and named by
/// it (`linux-6.12.118`). It takes no parameters. Wrapped in [`Runtime`]
/// it is a [`DynPolicy`]; [`runtime_entry`] registers it.
pub trait RuntimePolicy: Send + Sync + 'static {
    /// Its name, as [`CollapsePolicy::NAME`].
    fn name(&self) -> &'static str;
    /// Its line for `list`, as [`CollapsePolicy::SUMMARY`].
    fn summary(&self) -> &'static str;
    /// As [`CollapsePolicy::MMAP_LOCK`].
    fn mmap_lock(&self) -> MmapLock;
    /// As [`CollapsePolicy::collapse`].
    fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult;
}

/// A [`RuntimePolicy`] as a [`DynPolicy`].
pub struct Runtime<P>(pub P);

impl<P: RuntimePolicy> DynPolicy for Runtime<P> {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn summary(&self) -> &'static str {
        self.0.summary()
    }
    fn mmap_lock(&self) -> MmapLock {
        self.0.mmap_lock()
    }
    fn params_json(&self) -> serde_json::Value {
        serde_json::json!({})
    }
    fn label(&self) -> String {
        self.0.name().to_owned()
    }
    fn collapse_native(&self, cx: &mut Cx<'_, Native>, haddr: u64, install_pmd: bool) -> ScanResult {
        self.0.collapse(cx, haddr, install_pmd)
    }
    fn collapse_controlled(&self, cx: &mut Cx<'_, Controlled<'_>>, haddr: u64, install_pmd: bool) -> ScanResult {
        self.0.collapse(cx, haddr, install_pmd)
    }
}

/// The registry entry for a [`RuntimePolicy`]: every build gives the one
/// policy; any parameter is an error naming it.
pub fn runtime_entry<P: RuntimePolicy>(policy: P) -> PolicyEntry {
    let policy: Arc<Runtime<P>> = Arc::new(Runtime(policy));
    let (name, summary) = (policy.0.name(), policy.0.summary());
    PolicyEntry {
        name,
        summary,
        build: Arc::new(move |v| match v.as_object().and_then(|m| m.keys().next()) {
            Some(key) => Err(format!("parameters of policy {name}: unknown field `{key}`: it takes no parameters")),
            None => Ok(policy.clone() as Arc<dyn DynPolicy>),
        }),
        default_params: || serde_json::json!({}),
    }
}

/// What a policy is generic over: the engine its model CPU runs on. Only
/// the crate's two engines implement it, [`Native`] and [`Controlled`];
/// each hands a policy held as `dyn DynPolicy` its own monomorphic copy of
/// [`CollapsePolicy::collapse`], so the native engine runs straight-line
/// code and the controlled engine the same code with its scheduling
/// points.
pub trait Engine: CpuEngine {
    /// Run `policy` on `cx`.
    #[doc(hidden)]
    fn collapse(policy: &dyn DynPolicy, cx: &mut Cx<'_, Self>, haddr: u64, install_pmd: bool) -> ScanResult;
}

impl Engine for Native {
    fn collapse(policy: &dyn DynPolicy, cx: &mut Cx<'_, Self>, haddr: u64, install_pmd: bool) -> ScanResult {
        policy.collapse_native(cx, haddr, install_pmd)
    }
}

impl Engine for Controlled<'_> {
    fn collapse(policy: &dyn DynPolicy, cx: &mut Cx<'_, Self>, haddr: u64, install_pmd: bool) -> ScanResult {
        policy.collapse_controlled(cx, haddr, install_pmd)
    }
}

/// A registered policy: how to list it and how to build it from
/// parameters. Made by [`entry`]; a registry is a `Vec<PolicyEntry>`
/// (`policies::registry()` for the shipped ones), and a plugin crate adds
/// its own entries to it. Cheap to clone. A policy made at run time (the
/// kernel's own C, compiled from a tree) is an entry whose `build` holds
/// what it was made from.
#[derive(Clone)]
pub struct PolicyEntry {
    /// [`CollapsePolicy::NAME`].
    pub name: &'static str,
    /// [`CollapsePolicy::SUMMARY`].
    pub summary: &'static str,
    /// Build from a JSON object of parameters (`{}` or `null` for the
    /// defaults); the error names the policy and the bad or unknown key.
    pub build: BuildPolicy,
    /// The default parameters as JSON (for `list`).
    pub default_params: fn() -> serde_json::Value,
}

/// [`PolicyEntry::build`]: JSON parameters to a policy, or why not.
pub type BuildPolicy = Arc<dyn Fn(&serde_json::Value) -> Result<Arc<dyn DynPolicy>, String> + Send + Sync>;

/// The registry entry for `P`: its name and summary, a builder that
/// deserializes [`CollapsePolicy::Params`] from JSON, and its default
/// parameters.
///
/// ```
/// # use bench_core::kernel::{entry, CollapsePolicy, Cx, Engine, NoParams, ScanResult};
/// # struct Noop(NoParams);
/// # impl CollapsePolicy for Noop {
/// #     type Params = NoParams;
/// #     const NAME: &'static str = "noop";
/// #     const SUMMARY: &'static str = "does nothing";
/// #     fn new(p: NoParams) -> Self { Noop(p) }
/// #     fn params(&self) -> &NoParams { &self.0 }
/// #     fn collapse<E: Engine>(&self, _: &mut Cx<'_, E>, _: u64, _: bool) -> ScanResult { ScanResult::Fail }
/// # }
/// let e = entry::<Noop>();
/// assert_eq!(e.name, "noop");
/// let err = (e.build)(&serde_json::json!({"x": 1})).err().unwrap();
/// assert!(err.starts_with("parameters of policy noop: unknown field `x`"), "{err}");
/// ```
pub fn entry<P: CollapsePolicy>() -> PolicyEntry {
    PolicyEntry {
        name: P::NAME,
        summary: P::SUMMARY,
        build: Arc::new(|v| {
            let v = if v.is_null() { serde_json::json!({}) } else { v.clone() };
            let params: P::Params =
                serde_json::from_value(v).map_err(|e| format!("parameters of policy {}: {e}", P::NAME))?;
            Ok(Arc::new(P::new(params)) as Arc<dyn DynPolicy>)
        }),
        default_params: || serde_json::to_value(P::Params::default()).unwrap_or_default(),
    }
}

/// How a collapse's caller holds `mmap_lock`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MmapLock {
    /// `mmap_read_lock()`: faults, uffd ioctls and madvise run beside it.
    Read,
    /// `mmap_write_lock()`: every other `mmap_lock` taker waits.
    Write,
}

/// Parameters of a policy that takes none.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}
