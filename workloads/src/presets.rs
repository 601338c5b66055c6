//! Named workloads: the cases the August 2023 thread talked about.
//!
//! Thread totals are kept small (2 to 9): the development machine has two
//! cores, and a run with more threads than cores is oversubscribed (a
//! preempted lock holder stalls its spinning waiters), which the results
//! record. Scale up with `threads.*` overrides on bigger machines.

use crate::scenario::{CollapseMode, Pace, Scenario, ScenarioError, Threads, VmaShare};
use bench_core::FileKind;

/// Present PTEs per table of the partly-populated presets (`uffd-private`,
/// `shmem-shared`, `cow-swap`, `mixed`): three subpages in four mapped
/// (index `i` is a hole when `i % 4 == 1`), as a file range is after
/// partial faulting or reclaim. The holes are what UFFDIO_COPY fills,
/// page-cache faults map and guard markers land in, so every inserter can
/// race the collapse's step 1 -> step 2 window, not only through COW.
///
/// `pml-contended`, `no-split-locks` and `markers` keep full tables: there
/// one inserter serves several ranges faster than the collapser comes
/// round, so with holes it fills one in nearly every range before each
/// collapse, and nearly every collapse aborts at step 1 (in the simulation
/// at 2 CPUs, 3117 of 3120 on `pml-contended`, 7259 of 7490 on `markers`)
/// -- leaving nothing of the `pml` contention or the guard-marker race
/// those presets exist to measure.
pub const PARTLY_POPULATED: u32 = 384;

/// Think time of `mixed`'s background actors, ns.
const MIXED_PACE_NS: u64 = 20_000;

/// Every preset: (name, one-line summary).
pub const PRESETS: &[(&str, &str)] = &[
    (
        "uffd-private",
        "the original report: 1 shmem range mapped private, 3/4 populated, uffd missing, MADV_COLLAPSE vs UFFDIO_COPY, 3 threads",
    ),
    (
        "shmem-shared",
        "4 shared shmem ranges, 3/4 populated, no uffd, khugepaged vs page-cache faults, 3 threads",
    ),
    (
        "pml-contended",
        "4 uffd-private ranges, MADV_COLLAPSE, 2 neighbours holding pml 2 us; 5 threads (oversubscribed on 2 cores)",
    ),
    (
        "cow-swap",
        "4 private file ranges, 3/4 populated, COW writes, swap and migration of the copies; 5 threads (oversubscribed on 2 cores)",
    ),
    (
        "no-split-locks",
        "pml-contended with mm->page_table_lock for pml and ptl; 5 threads (oversubscribed on 2 cores)",
    ),
    (
        "markers",
        "4 private shmem ranges, no uffd, khugepaged vs guard markers installed under ptl only, a pml neighbour so v2 trylocks fail; 4 threads (oversubscribed on 2 cores)",
    ),
    (
        "pt-reclaim",
        "4 shared shmem ranges, MADV_COLLAPSE vs MADV_DONTNEED freeing the PTE tables it empties (v6.14 CONFIG_PT_RECLAIM), page-cache faults refilling; 4 threads (oversubscribed on 2 cores)",
    ),
    (
        "retract",
        "4 private shmem ranges, half uffd-armed, MADV_COLLAPSE vs retract_page_tables() of another VMA's collapse_file() and UFFDIO_COPY; 3 threads (oversubscribed on 2 cores)",
    ),
    (
        "guard-file",
        "4 shared file ranges, no uffd, MADV_COLLAPSE vs MADV_GUARD_INSTALL on a file VMA (v6.15), guard markers under ptl only; 3 threads (oversubscribed on 2 cores)",
    ),
    (
        "mixed",
        "8 private shmem ranges, 3/4 populated, half uffd-armed, one of every actor, all but collapser and neighbour paced 20 us; 9 threads (oversubscribed on 2 cores)",
    ),
];

/// Presets that run a guard-marker installer (DESIGN §2 "Looking ahead"):
/// reported apart; only their guard-marker race is excused. From v6.15
/// `MADV_GUARD_INSTALL` works on file VMAs, so the race is reachable
/// (`guard-file` asks it of MADV_COLLAPSE on a regular file): the
/// checker shows it on that preset, as a model finding not yet reproduced
/// on a real kernel, and verdicts over every preset show it in brackets.
pub const FUTURE_INSERTER_PRESETS: [&str; 3] = ["markers", "guard-file", "mixed"];

/// Presets of a page-table freer later than v6.6 that needs no lock a
/// collapse holds: empty-table reclaim by MADV_DONTNEED (v6.14,
/// `CONFIG_PT_RECLAIM`), the world the v6.13 rechecks were written for. A
/// policy of the 6.6 line is not expected to survive it: conformance
/// judges these presets for a policy expected correct today
/// (`Expect::CorrectToday`) and reports them apart otherwise.
pub const LATER_KERNEL_PRESETS: [&str; 1] = ["pt-reclaim"];

/// The preset called `name`, validated.
pub fn preset(name: &str) -> Result<Scenario, ScenarioError> {
    let base = Scenario { name: name.to_owned(), ..Scenario::default() };
    let threads = |t: Threads| Threads { collapsers: 1, readers: 1, ..t };
    let pml_contended = Scenario {
        ranges: 4,
        share: VmaShare::Private,
        uffd_fraction: 1.0,
        collapse_mode: CollapseMode::MadvCollapse,
        threads: threads(Threads { uffd: 1, neighbours: 2, ..Threads::default() }),
        neighbour_hold_ns: 2000,
        ..base.clone()
    };
    let scenario = match name {
        "uffd-private" => Scenario {
            ranges: 1,
            density: PARTLY_POPULATED,
            file: FileKind::Shmem,
            share: VmaShare::Private,
            uffd_fraction: 1.0,
            collapse_mode: CollapseMode::MadvCollapse,
            threads: threads(Threads { uffd: 1, ..Threads::default() }),
            ..base
        },
        "shmem-shared" => Scenario {
            ranges: 4,
            density: PARTLY_POPULATED,
            file: FileKind::Shmem,
            share: VmaShare::Shared,
            collapse_mode: CollapseMode::Khugepaged,
            threads: threads(Threads { faulters: 1, ..Threads::default() }),
            ..base
        },
        "pml-contended" => pml_contended,
        "cow-swap" => Scenario {
            ranges: 4,
            density: PARTLY_POPULATED,
            file: FileKind::File,
            share: VmaShare::Private,
            threads: threads(Threads { cow: 1, swap: 1, migrate: 1, ..Threads::default() }),
            ..base
        },
        "no-split-locks" => Scenario { split_pmd_ptlocks: false, split_pte_ptlocks: false, ..pml_contended },
        "markers" => Scenario {
            ranges: 4,
            file: FileKind::Shmem,
            share: VmaShare::Private,
            collapse_mode: CollapseMode::Khugepaged,
            threads: threads(Threads { markers: 1, neighbours: 1, ..Threads::default() }),
            // Contends pml so the v2 forms' trylock fails and ptl is dropped:
            // only recheck_always rechecks then (no VMA here is uffd-armed).
            neighbour_hold_ns: 2000,
            ..base
        },
        // The table can vanish between the collapse's steps: MADV_DONTNEED
        // zaps the range under mmap_lock for read and frees the table it
        // emptied; faulters map the range again (by PMD once the table is
        // gone, or into a new table).
        "pt-reclaim" => Scenario {
            ranges: 4,
            file: FileKind::Shmem,
            share: VmaShare::Shared,
            collapse_mode: CollapseMode::MadvCollapse,
            threads: threads(Threads { reclaimers: 1, faulters: 1, ..Threads::default() }),
            ..base
        },
        // Half the ranges uffd-armed: UFFDIO_COPY gives those VMAs an
        // anon_vma (which makes retraction skip them) and installs under
        // ptl alone; the others are retracted whenever their table is empty.
        // No reader: what is asked here is whether a table goes with an
        // entry in it (the TLB races are pml-contended's and uffd-private's),
        // and a reader multiplies the scope's interleavings by eight.
        "retract" => Scenario {
            ranges: 4,
            density: PARTLY_POPULATED,
            file: FileKind::Shmem,
            share: VmaShare::Private,
            uffd_fraction: 0.5,
            collapse_mode: CollapseMode::MadvCollapse,
            threads: Threads { collapsers: 1, retractors: 1, uffd: 1, readers: 0, ..Threads::default() },
            ..base
        },
        // Full tables (a marker already there makes step 1 abort, as a
        // non-present entry): what is asked is a marker landing in a slot
        // step 2 emptied, before step 4 frees the table.
        "guard-file" => Scenario {
            ranges: 4,
            file: FileKind::File,
            share: VmaShare::Shared,
            collapse_mode: CollapseMode::MadvCollapse,
            threads: threads(Threads { markers: 1, ..Threads::default() }),
            ..base
        },
        "mixed" => Scenario {
            ranges: 8,
            density: PARTLY_POPULATED,
            file: FileKind::Shmem,
            share: VmaShare::Private,
            uffd_fraction: 0.5,
            collapse_mode: CollapseMode::MadvCollapse,
            threads: Threads {
                collapsers: 1,
                faulters: 1,
                uffd: 1,
                cow: 1,
                swap: 1,
                migrate: 1,
                neighbours: 1,
                readers: 1,
                markers: 1,
                reclaimers: 0,
                retractors: 0,
            },
            // Think time (a sleep) for the actors that would otherwise spin
            // back to back: with 9 threads on 2 cores, unpaced faulters
            // hold the page lock through ptl convoys and starve the
            // collapse's lock_page for seconds. Neighbours stay unpaced:
            // their pml pressure is the point.
            pace: Pace {
                faulters: MIXED_PACE_NS,
                uffd: MIXED_PACE_NS,
                cow: MIXED_PACE_NS,
                swap: MIXED_PACE_NS,
                migrate: MIXED_PACE_NS,
                readers: MIXED_PACE_NS,
                markers: MIXED_PACE_NS,
                ..Pace::default()
            },
            neighbour_hold_ns: 1000,
            ..base
        },
        _ => {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
            return Err(ScenarioError::new(format!("unknown preset `{name}`; allowed: {}", names.join(", "))));
        }
    };
    scenario.validate()?;
    Ok(scenario)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bench_core::Mm;

    #[test]
    fn every_preset_validates_and_builds_a_model() {
        for &(name, summary) in PRESETS {
            let s = preset(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(s.name, name);
            assert!(!summary.is_empty());
            let mm = Mm::new(s.mm_config()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(mm.nr_ranges(), s.ranges);
            assert_eq!(mm.config.cpus, s.threads.total());
            assert!(mm.exit_mmap().is_empty(), "{name}: clean teardown");
        }
    }

    #[test]
    fn presets_have_the_shapes_asked_for() {
        let p = preset("uffd-private").unwrap();
        assert_eq!((p.ranges, p.threads.total(), p.uffd_armed_ranges()), (1, 3, 1));
        let p = preset("no-split-locks").unwrap();
        assert!(!p.split_pmd_ptlocks && !p.split_pte_ptlocks);
        assert_eq!(p.threads, preset("pml-contended").unwrap().threads);
        assert_eq!(p.neighbour_hold_ns, 2000);
        let p = preset("mixed").unwrap();
        assert_eq!((p.threads.total(), p.uffd_armed_ranges()), (9, 4));
        let p = preset("markers").unwrap();
        assert_eq!(p.uffd_armed_ranges(), 0);
        assert!(!p.collapse_mode.install_pmd());
        let densities: Vec<u32> = PRESETS.iter().map(|&(name, _)| preset(name).unwrap().density).collect();
        assert_eq!(densities, [384, 384, 512, 384, 512, 512, 512, 384, 512, 384]);
        let p = preset("pt-reclaim").unwrap();
        assert_eq!((p.threads.reclaimers, p.threads.faulters, p.threads.total(), p.uffd_armed_ranges()), (1, 1, 4, 0));
        let p = preset("retract").unwrap();
        assert_eq!((p.threads.retractors, p.threads.uffd, p.threads.total(), p.uffd_armed_ranges()), (1, 1, 3, 2));
        let p = preset("guard-file").unwrap();
        assert_eq!(
            (p.file, p.share, p.threads.markers, p.uffd_armed_ranges()),
            (FileKind::File, VmaShare::Shared, 1, 0)
        );
    }

    #[test]
    fn unknown_preset_lists_the_names() {
        let e = preset("uffd").unwrap_err().to_string();
        assert!(
            e.starts_with("unknown preset `uffd`; allowed: uffd-private, shmem-shared,") && e.ends_with("mixed"),
            "{e}"
        );
    }
}
