//! The forms of `collapse_pte_mapped_thp()` from before and after v6.6
//! (`v6.1`, `v6.13`, `v6.13-noflush`) and v2 as posted, on the exhaustive
//! scopes of the presets the 2023 thread is about: every interleaving of
//! one collapse against one uffd copy and one reader (`uffd-private`),
//! and with two `pml` neighbours besides (`pml-contended`).
//!
//! `v6.13-noflush`'s bug needs a page-table freer racing step 4, which
//! neither scope has: there it behaves as `v6.13`. Its catch belongs with
//! the `pt-reclaim` preset.

use bench_core::kernel::{DynPolicy, MmapLock};
use bench_core::Oracle;
use std::collections::BTreeSet;
use std::sync::Arc;
use workloads::check::{CheckOptions, CheckReport};
use workloads::exhaustive::{check_exhaustive, scope, ExhaustiveOptions};
use workloads::preset;

fn policy(name: &str) -> Arc<dyn DynPolicy> {
    let entry = policies::registry().into_iter().find(|e| e.name == name).unwrap_or_else(|| panic!("{name}"));
    (entry.build)(&serde_json::Value::Null).expect("default params")
}

/// Every interleaving of `name` on `preset_name`'s scope: (verdict word,
/// gravest oracle, every oracle found). The exploration must finish.
fn explore(name: &str, preset_name: &str) -> (&'static str, Option<Oracle>, BTreeSet<Oracle>) {
    let p = policy(name);
    let scenario = scope(&preset(preset_name).unwrap());
    let opts = CheckOptions { shrink_budget: 50, ..CheckOptions::default() };
    let report: CheckReport = check_exhaustive(&p, &scenario, &opts, &ExhaustiveOptions::default())
        .unwrap_or_else(|e| panic!("{name} on {preset_name}: {e}"));
    let e = report.exhaustive.as_ref().expect("an exhaustive report");
    assert!(e.complete(), "{name} on {preset_name}: {e:?}");
    (report.verdict_word(), report.gravest_beyond_guard_markers, report.by_oracle.keys().copied().collect())
}

const VERIFIED: (&str, Option<Oracle>, BTreeSet<Oracle>) = ("verified", None, BTreeSet::new());

#[test]
fn v6_13_and_its_noflush_posting_are_verified_on_uffd_private() {
    // pml is taken before step 2 on this uffd-armed private VMA, so the
    // PMD cannot change under either form and both rechecks pass.
    assert_eq!(explore("v6.13", "uffd-private"), VERIFIED);
    assert_eq!(explore("v6.13-noflush", "uffd-private"), VERIFIED);
}

#[test]
fn v6_13_and_its_noflush_posting_are_verified_on_pml_contended() {
    // The neighbours only delay the early pml; no path frees the table.
    assert_eq!(explore("v6.13", "pml-contended"), VERIFIED);
    assert_eq!(explore("v6.13-noflush", "pml-contended"), VERIFIED);
}

#[test]
fn v6_1_is_verified_on_uffd_private_and_pml_contended() {
    // Step 2 clears nothing, so the entry the uffd copy aims at never
    // becomes none before the table is gone.
    assert_eq!(explore("v6.1", "uffd-private"), VERIFIED);
    assert_eq!(explore("v6.1", "pml-contended"), VERIFIED);
}

#[test]
fn v6_1_alone_is_called_with_mmap_lock_held_for_write() {
    for e in policies::registry() {
        let p = (e.build)(&serde_json::Value::Null).unwrap();
        let want = if e.name == "v6.1" { MmapLock::Write } else { MmapLock::Read };
        assert_eq!(p.mmap_lock(), want, "{}", e.name);
    }
}

#[test]
fn v2_as_posted_is_caught_by_stale_tlb_under_pml_contention_only() {
    // The trylock never fails without a neighbour on pml: no recheck
    // pass, so nr_ptes is never reset before an abort.
    assert_eq!(explore("v2-posted", "uffd-private"), VERIFIED);
    // With it, the recheck pass finds uffd's page and aborts with nr_ptes
    // reset: no flush_tlb_mm(), the reader's TLB keeps a cleared entry
    // (stale-tlb), and uffd's copy replaced an entry the reader still
    // caches (stale-translation, which the repairs show too).
    let stale = BTreeSet::from([Oracle::StaleTlb, Oracle::StaleTranslation]);
    assert_eq!(explore("v2-posted", "pml-contended"), ("FAIL", Some(Oracle::StaleTlb), stale.clone()));
    // The same reset on the repairs' skeleton: the same verdicts. Taking
    // step 1's ptl pointer without a fresh lookup changes nothing where no
    // path frees the table.
    assert_eq!(explore("v2-posted-relookup", "uffd-private"), VERIFIED);
    assert_eq!(explore("v2-posted-relookup", "pml-contended"), ("FAIL", Some(Oracle::StaleTlb), stale));
}
