//! bench-core: the model of page tables that `collapse_pte_mapped_thp()`
//! policies run against, the kernel-named primitives they are written in,
//! the engines that run them, and the oracles that judge them.
//!
//! A policy implements [`kernel::CollapsePolicy`] with calls on
//! [`kernel::Cx`]: the [`kernel`] module is all a plugin sees. The run
//! loops ([`native`], [`controlled`]: one loop, whose [`sched`]uler picks
//! the next CPU; with the time-ordered scheduler and a [`cost`] model's
//! clock it is the simulation) run it beside other actors, which reach
//! the model through [`harness`], on an [`Mm`];
//! the oracles ([`Oracle`]) report what broke; [`metrics`] and [`results`]
//! say how fast.
//!
//! # Layers
//!
//! Modules import only from their own layer or those below it, never in a
//! cycle (`tests/layers.rs` checks it against the sources):
//!
//! 1. the model's parts: [`pte`], [`page`], [`pgtable`] (their memory
//!    from `recycle`, their free lists from `pool`, their words
//!    [`footprint`]'s noted atomics), [`locks`], [`tlb`], [`rcu`], [`rwsem`]; and
//!    the value types [`cost`], [`oracle`], [`role`], [`scan`],
//!    [`machine`];
//! 2. [`lockdep`]'s dependency graph; then [`mm`], the address space;
//! 3. what a CPU passes and measures: [`event`], [`metrics`], [`watch`];
//! 4. the engines a CPU runs on: [`engine`]; the schedulers that pick
//!    which CPU runs: [`sched`];
//! 5. the policy context: [`kernel`];
//! 6. around it: [`harness`], [`oops`], [`results`], [`actor`],
//!    [`watchdog`];
//! 7. the run loops: [`native`], [`controlled`].
//!
//! # Example: a policy, run once
//!
//! The simplest correct form: hold `pml`, with `ptl` nested inside it,
//! from step 1 to the removal of the table, so nothing can insert into the
//! table while it is checked, emptied and freed (the cost: every other
//! user of `pml` waits for the whole scan). Run once, as MADV_COLLAPSE, on
//! a one-range model with a full table, on the native engine:
//!
//! ```
//! use bench_core::harness::{new_cpu, Harness};
//! use bench_core::kernel::*;
//! use bench_core::mm::MAP_BASE;
//! use bench_core::{FileKind, Mm, MmConfig, Native, Role};
//! use std::time::Instant;
//!
//! /// `pml` held from step 1 to step 4.
//! struct BigLock(NoParams);
//!
//! impl CollapsePolicy for BigLock {
//!     type Params = NoParams;
//!     const NAME: &'static str = "big-lock";
//!     const SUMMARY: &'static str = "pml (and ptl nested) held from step 1 to step 4";
//!
//!     fn new(params: NoParams) -> Self {
//!         BigLock(params)
//!     }
//!
//!     fn params(&self) -> &NoParams {
//!         &self.0
//!     }
//!
//!     fn collapse<E: Engine>(&self, cx: &mut Cx<'_, E>, haddr: u64, install_pmd: bool) -> ScanResult {
//!         cx.step(Step::Prologue);
//!         let Some(vma) = cx.vma_lookup(haddr) else { return ScanResult::VmaCheck };
//!         if !range_in_vma(vma, haddr, haddr + HPAGE_PMD_SIZE) {
//!             return ScanResult::VmaCheck;
//!         }
//!         /* Keep pmd pgtable for uffd-wp */
//!         if userfaultfd_wp(vma) {
//!             return ScanResult::PteUffdWp;
//!         }
//!         let Some(hpage) = cx.find_lock_page(vma, haddr) else { return ScanResult::PageNull };
//!         let result = match cx.find_pmd_or_thp_or_none(haddr) {
//!             (ScanResult::Succeed, Some(pmd)) => 'abort: {
//!                 // It may sleep: before any spinlock.
//!                 cx.step(Step::Notify);
//!                 let range = cx.mmu_notifier_invalidate_range_start(haddr, haddr + HPAGE_PMD_SIZE);
//!                 let pml = cx.pmd_lock(pmd);
//!                 let (start_pte, ptl) = cx.pte_offset_map_nolock(pmd, haddr).expect("mmap_lock + page lock");
//!                 if ptl != pml {
//!                     cx.spin_lock_nested(ptl, SINGLE_DEPTH_NESTING);
//!                 }
//!                 let unlock = |cx: &mut Cx<'_, E>| {
//!                     cx.pte_unmap(start_pte);
//!                     if ptl != pml {
//!                         cx.spin_unlock(ptl);
//!                     }
//!                     cx.spin_unlock(pml);
//!                 };
//!                 /* step 1: every entry is none or maps hpage + i */
//!                 cx.step(Step::Check);
//!                 for i in 0..HPAGE_PMD_NR {
//!                     let addr = haddr + i as u64 * PAGE_SIZE;
//!                     let pte = cx.ptep_get(start_pte.at(i));
//!                     let bad = if pte.is_none() {
//!                         None
//!                     } else if !pte.is_present() {
//!                         Some(ScanResult::PteNonPresent)
//!                     } else if cx.vm_normal_page(vma, addr, pte) != Some(hpage.nth(i)) {
//!                         Some(ScanResult::Fail)
//!                     } else {
//!                         None
//!                     };
//!                     if let Some(result) = bad {
//!                         // Nothing cleared yet: no flush owed.
//!                         cx.step(Step::Abort);
//!                         unlock(cx);
//!                         cx.mmu_notifier_invalidate_range_end(range);
//!                         break 'abort result;
//!                     }
//!                 }
//!                 /* step 2: clear; the flush is owed to pmdp_collapse_flush */
//!                 cx.step(Step::Clear);
//!                 let mut nr_ptes = 0;
//!                 for i in 0..HPAGE_PMD_NR {
//!                     let pte = start_pte.at(i);
//!                     if !cx.ptep_get(pte).is_none() {
//!                         cx.ptep_clear(haddr + i as u64 * PAGE_SIZE, pte);
//!                         cx.page_remove_rmap(hpage.nth(i), vma, false);
//!                         nr_ptes += 1;
//!                     }
//!                 }
//!                 /* step 3: refcount and mm counter */
//!                 cx.step(Step::Account);
//!                 if nr_ptes != 0 {
//!                     cx.page_ref_sub(hpage, nr_ptes);
//!                     let counter = cx.mm_counter_file(hpage);
//!                     cx.add_mm_counter(counter, -(nr_ptes as i64));
//!                 }
//!                 /* step 4: remove the table, free it after a grace period */
//!                 cx.step(Step::RemoveTable);
//!                 let pgt_pmd = cx.pmdp_collapse_flush(vma, haddr, pmd);
//!                 unlock(cx);
//!                 cx.mmu_notifier_invalidate_range_end(range);
//!                 cx.mm_dec_nr_ptes();
//!                 cx.pte_free_defer(pmd_pgtable(pgt_pmd));
//!                 /* step 5 */
//!                 cx.step(Step::Install);
//!                 if install_pmd { cx.set_huge_pmd(vma, haddr, pmd, hpage) } else { ScanResult::Succeed }
//!             }
//!             // Table already retracted: straight to step 5.
//!             (ScanResult::PmdNone, Some(pmd)) if install_pmd => cx.set_huge_pmd(vma, haddr, pmd, hpage),
//!             (ScanResult::PmdNone, Some(_)) => ScanResult::Succeed,
//!             (result, _) => result,
//!         };
//!         cx.unlock_page(hpage);
//!         cx.put_page(hpage);
//!         result
//!     }
//! }
//!
//! // One shmem range, private, every PTE mapping its huge page; one CPU.
//! let mm = Mm::new(MmConfig { anon_pages: 16, spare_tables: 4, ..MmConfig::one_range(1) }).unwrap();
//! let policy = BigLock::new(NoParams::default());
//! let mut cx = new_cpu(&mm, 0, Role::Collapse, Native::new(Instant::now(), None, false));
//! assert_eq!(cx.run_collapse(&policy, MAP_BASE, true), ScanResult::Succeed);
//! assert_eq!(mm.pmds.get(0, 0).kind(), PmdKind::Huge(mm.file_hpage(0)));
//!
//! // The accounting oracle, then every oracle's verdict and a clean teardown.
//! cx.check_range_accounting(0);
//! assert!(mm.violations.snapshot().0.is_empty());
//! assert!(mm.exit_mmap().is_empty());
//!
//! // Registered like this, it runs in `collapse-bench` and in the
//! // conformance suite (`workloads::conformance::assert_conforms`).
//! assert_eq!(entry::<BigLock>().name, "big-lock");
//! ```

#![warn(missing_docs)]

pub mod actor;
pub mod controlled;
pub mod cost;
pub mod engine;
pub mod event;
pub mod footprint;
pub mod harness;
pub mod kernel;
pub mod lockdep;
pub mod locks;
pub mod machine;
pub mod metrics;
pub mod mm;
pub mod native;
pub mod oops;
pub mod oracle;
pub mod page;
pub mod pgtable;
mod pool;
pub mod pte;
pub mod rcu;
mod recycle;
pub mod results;
pub mod role;
pub mod rwsem;
pub mod scan;
pub mod sched;
pub mod tlb;
pub mod watch;
pub mod watchdog;

pub use cost::{Cost, CostModel};
pub use engine::{Native, StepHook};
pub use event::Event;
pub use locks::LockClass;
pub use metrics::Metrics;
pub use mm::{FileKind, Mm, MmConfig};
pub use oracle::{CachedTranslation, Oracle, Violation};
pub use role::Role;
/// Every variant of an enum-indexed type ([`Role`], [`Cost`], [`Oracle`], [`LockClass`]), in order.
pub use strum::IntoEnumIterator;
