//! The result-file loader (`compare`'s) fed arbitrary bytes, mutated
//! result files, deep nesting and huge numbers: no panic, and every error
//! starts with the file's path.

use proptest::prelude::*;
use reports::compare::load;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

/// A scratch file per test thread.
fn scratch() -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cb-fuzz-results-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{:?}.json", std::thread::current().id()).replace(['(', ')'], ""))
}

/// Load `bytes` from a file: either it loads or the error names the file.
fn load_bytes(bytes: &[u8]) {
    let path = scratch();
    std::fs::write(&path, bytes).unwrap();
    if let Err(e) = load(&path) {
        assert!(e.0.starts_with(&format!("{}: ", path.display())), "{e}");
    }
}

fn mutate(text: &str, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for &(at, byte, how) in edits {
        let i = at % (bytes.len() + 1);
        match how % 3 {
            0 => bytes.insert(i, byte),
            1 if i < bytes.len() => {
                bytes.remove(i);
            }
            _ if i < bytes.len() => bytes[i] = byte,
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        load_bytes(&bytes);
    }

    #[test]
    fn mutated_result_files_never_panic(
        which in 0..3usize,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        let text = fixture(["run-base.json", "run-new.json", "report.json"][which]);
        load_bytes(&mutate(&text, &edits));
    }
}

#[test]
fn deep_nesting_and_huge_numbers_are_errors() {
    let path = scratch();
    for (text, needle) in [
        (format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)), "recursion limit"),
        (format!("{{\"schema\": 1, \"runs\": {}{}}}", "{\"a\":".repeat(50_000), "}".repeat(50_000)), "recursion limit"),
        ("{\"schema\": 1e999999, \"runs\": []}".to_owned(), "not JSON"),
        ("{\"schema\": 18446744073709551616, \"runs\": []}".to_owned(), "schema version"),
        ("{\"schema\": 1, \"runs\": [], \"tool\": 99999999999999999999999}".to_owned(), "not a valid `run` result"),
    ] {
        std::fs::write(&path, &text).unwrap();
        let e = load(&path).unwrap_err().0;
        assert!(e.starts_with(&format!("{}: ", path.display())) && e.contains(needle), "{needle}: {e}");
    }
}

#[test]
fn files_from_before_failures_were_recorded_still_load() {
    for name in ["run-base.json", "report.json"] {
        let mut value: serde_json::Value = serde_json::from_str(&fixture(name)).unwrap();
        let obj = value.as_object_mut().unwrap();
        obj.remove("failures");
        obj.remove("watchdog_s");
        let path = scratch();
        std::fs::write(&path, serde_json::to_vec(&value).unwrap()).unwrap();
        load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
