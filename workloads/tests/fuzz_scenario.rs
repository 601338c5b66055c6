//! The scenario loader and `--set` fed arbitrary and mutated input: no
//! panic, and every error names the file (with the line) or the field,
//! and what is allowed.

use proptest::prelude::*;
use workloads::{preset, Scenario, PRESETS};

const ORIGIN: &str = "dir/fuzz.toml";

/// Every preset as the TOML a user would write.
fn valid_files() -> Vec<String> {
    PRESETS.iter().map(|(name, _)| toml::to_string(&preset(name).unwrap()).unwrap()).collect()
}

/// Parse, and for what parses, validate and size it: nothing may panic.
fn load(text: &str) {
    match Scenario::from_toml_str(text, ORIGIN) {
        Ok(s) => {
            if s.validate().is_ok() {
                let need = s.memory_need();
                assert!(need.total() > 0);
                let _ = s.check_memory(Some(1 << 20));
            }
        }
        Err(e) => {
            let origin = e.origin.as_deref().expect("a file error names the file");
            assert!(origin.starts_with(ORIGIN), "{e}");
            assert!(!e.message.is_empty(), "{e}");
        }
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, u8),
    Delete(usize),
    Replace(usize, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Replace(i, b)),
    ]
}

fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for e in edits {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match *e {
            Edit::Insert(i, b) => {
                let i = at(i, bytes.len() + 1);
                bytes.insert(i, b);
            }
            Edit::Delete(i) if !bytes.is_empty() => {
                let i = at(i, bytes.len());
                bytes.remove(i);
            }
            Edit::Replace(i, b) if !bytes.is_empty() => {
                let i = at(i, bytes.len());
                bytes[i] = b;
            }
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        load(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutated_valid_files_never_panic(which in 0..PRESETS.len(), edits in proptest::collection::vec(edit(), 1..8)) {
        load(&mutate(&valid_files()[which], &edits));
    }

    #[test]
    fn arbitrary_overrides_never_panic_and_name_the_key(key in "[a-z_.]{0,24}", value in ".{0,24}") {
        let mut s = preset("mixed").unwrap();
        match s.set(&key, &value) {
            Ok(()) => {
                let _ = s.validate();
            }
            Err(e) => prop_assert_eq!(e.field.as_deref(), Some(key.as_str()), "{}", e),
        }
    }
}

#[test]
fn huge_and_odd_values_are_refused_with_line_and_allowed_values() {
    for (text, line, needle) in [
        ("ranges = 99999999999999999999999\n", 1, ""),
        ("\nranges = 4294967296\n", 2, "u32"),
        ("density = -1\n", 1, "u32"),
        ("[threads]\nuffd = 1e400\n", 2, ""),
        ("share = \"public\"\n", 1, "`private`"),
        ("collapse_mode = 3\n", 1, ""),
        ("[threads]\n[threads]\n", 2, ""),
        ("[threads\n", 1, ""),
    ] {
        let e = Scenario::from_toml_str(text, ORIGIN).expect_err(text);
        assert_eq!(e.origin.as_deref(), Some(format!("{ORIGIN}:{line}").as_str()), "{text:?}: {e}");
        assert!(e.to_string().contains(needle), "{text:?}: {e}");
    }
    // Parses, but validation names the field and the range.
    for (text, field, allowed) in [
        ("uffd_fraction = nan\n", "uffd_fraction", "0.0..=1.0"),
        ("ranges = 4294967295\n", "ranges", "1..=4096"),
        ("seed = 9223372036854775807\n[threads]\nreaders = 4294967295\n", "threads", "1..=1024"),
        ("[pace]\nreaders = 18446744073709551615\n", "pace.readers", "0..=1000000000"),
    ] {
        match Scenario::from_toml_str(text, ORIGIN) {
            Ok(s) => {
                let e = s.validate().expect_err(text);
                assert_eq!(e.field.as_deref(), Some(field), "{text:?}: {e}");
                assert!(e.message.contains(allowed), "{text:?}: {e}");
            }
            Err(e) => assert!(field.is_empty() && e.origin.is_some(), "{text:?}: {e}"),
        }
    }
}

#[test]
fn deeply_nested_input_is_an_error_not_a_stack_overflow() {
    let deep = format!("a = {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let e = Scenario::from_toml_str(&deep, ORIGIN).unwrap_err();
    assert!(e.origin.unwrap().starts_with(ORIGIN));
    let tables = "[a]\n".to_owned() + &"b.".repeat(50_000) + "c = 1\n";
    assert!(Scenario::from_toml_str(&tables, ORIGIN).is_err());
}
