//! The three steps on a real kernel source: read Debian's tarball (and its
//! cache), apply a patch, extract `collapse_pte_mapped_thp()`.
//!
//! The kernel text comes from the installed tarball only; the patch below
//! is made here, from that text, so no kernel code is part of the tests.

mod common;

use std::time::Instant;

use kernel_c::extract::extract;
use kernel_c::patch::{apply, KernelPatch};
use kernel_c::source;

const TARGET: &str = "mm/khugepaged.c";
const ENTRY: &str = "collapse_pte_mapped_thp";

/// The helpers the compat headers do not provide, as for 6.12.
fn provided(name: &str) -> bool {
    !matches!(name, "find_pmd_or_thp_or_none" | "set_huge_pmd")
}

#[test]
fn debian_6_12_read_cached_patched_and_extracted() {
    let Some(tarball) = common::kernel_source("6.12") else { return };
    let cache = tempfile::tempdir().unwrap();

    // A miss: decodes the tarball and fills the cache.
    let first = source::open_with_cache(&tarball, Some(cache.path())).unwrap();
    assert_eq!((first.version.version, first.version.patchlevel), (6, 12));
    assert_eq!(first.origin, std::fs::canonicalize(&tarball).unwrap());
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1);
    // A hit: the same result, without decoding.
    let cached = source::open_with_cache(&tarball, Some(cache.path())).unwrap();
    assert_eq!(cached, first);

    let out = extract(&first.khugepaged_c, TARGET, ENTRY, &provided).unwrap();
    assert_eq!(out.functions, ["find_pmd_or_thp_or_none", "set_huge_pmd", ENTRY]);
    assert_eq!(out.steps, [1, 2, 3, 4, 5]);
    assert_eq!(out.scan_results[..2], ["SCAN_FAIL", "SCAN_SUCCEED"]);
    assert_eq!(out.c.matches("KC_STEP_ABORT();").count(), 1);
    // Each function's text follows its #line directive exactly.
    let lines: Vec<&str> = first.khugepaged_c.lines().collect();
    for chunk in out.c.split("#line ").skip(1) {
        let (n, rest) = chunk.split_once(" \"mm/khugepaged.c\"\n").unwrap();
        let n: usize = n.parse().unwrap();
        let first_line = rest.lines().next().unwrap();
        assert_eq!(first_line, lines[n - 1]);
    }

    // A patch made from the file itself, as a two-file mail, applied to the
    // file with lines removed near its top: the hunk applies at an offset.
    let marker = "\t/* step 3: ";
    let at = first.khugepaged_c.find(marker).expect("a step 3 comment");
    let mut modified = first.khugepaged_c.clone();
    modified.insert_str(at, "\tpatched_in_by_the_test();\n");
    let diff = diffy::create_patch(&first.khugepaged_c, &modified).to_string();
    let diff =
        diff.replacen("--- original", "--- a/mm/khugepaged.c", 1).replacen("+++ modified", "+++ b/mm/khugepaged.c", 1);
    let mail = format!(
        "From: Test <test@example.org>\nSubject: [PATCH] test\n\nMessage.\n---\n\
         diff --git a/mm/other.c b/mm/other.c\n--- a/mm/other.c\n+++ b/mm/other.c\n@@ -1 +1 @@\n-x\n+y\n\
         diff --git a/mm/khugepaged.c b/mm/khugepaged.c\nindex 1..2 100644\n{diff}-- \n2.45.0\n"
    );
    let patch = KernelPatch::new(std::path::Path::new("0001-test.patch"), mail);
    let cut = first.khugepaged_c.splitn(4, '\n').nth(3).unwrap();
    let applied = apply(cut, TARGET, &[patch]).unwrap();
    assert_eq!(applied.ignored_files, [("0001-test".to_owned(), "mm/other.c".to_owned())]);
    assert_eq!(applied.text, modified.splitn(4, '\n').nth(3).unwrap());
    let out = extract(&applied.text, TARGET, ENTRY, &provided).unwrap();
    assert!(out.c.contains("\tpatched_in_by_the_test();\n\t/* step 3: "));
    assert_eq!(out.steps, [1, 2, 3, 4, 5]);
}

/// What the installed 6.12 and 6.1 tarballs give, with timings: run with
/// `cargo test --release -p kernel-c --test source_patch_extract -- --ignored --nocapture`.
/// It decodes each tarball in full once (seconds each), so it is not run
/// by default.
#[test]
#[ignore]
fn report_real_sources() {
    for version in ["6.12", "6.1"] {
        let Some(tarball) = common::kernel_source(version) else { continue };
        let cache = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let uncached = source::open_with_cache(&tarball, Some(cache.path())).unwrap();
        let first = t.elapsed();
        let t = Instant::now();
        let cached = source::open_with_cache(&tarball, Some(cache.path())).unwrap();
        let second = t.elapsed();
        assert_eq!(cached, uncached);
        println!("{version}: {} first open {first:.2?}, cached open {second:.2?}", uncached.version);
        let all_static = |_: &str| false;
        for (label, filter) in
            [("provided as 6.12", &provided as &dyn Fn(&str) -> bool), ("nothing provided", &all_static)]
        {
            match extract(&uncached.khugepaged_c, TARGET, ENTRY, filter) {
                Ok(out) => println!(
                    "  {label}: functions {:?}, steps {:?}, {} scan results from {} to {}",
                    out.functions,
                    out.steps,
                    out.scan_results.len(),
                    out.scan_results[0],
                    out.scan_results.last().unwrap()
                ),
                Err(e) => println!("  {label}: {e}"),
            }
        }
    }
}
