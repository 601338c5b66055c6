//! What the binary's tests share: running it, and a scratch directory.
// Each test binary compiles this module and uses what it needs of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// Run the built `collapse-bench` with `args`.
pub fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_collapse-bench")).args(args).output().expect("run collapse-bench")
}

/// An empty directory of this test binary's own, under the system's temp dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("collapse-bench-{}-{}-{name}", env!("CARGO_CRATE_NAME"), std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
