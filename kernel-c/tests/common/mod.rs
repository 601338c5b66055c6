//! Helpers shared by the integration tests.
// Each test binary compiles this module and uses what it needs of it.
#![allow(dead_code)]

use bench_core::kernel::DynPolicy;
use bench_core::results::RunFailure;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Debian's kernel source tarball for `version` (`"6.12"`):
/// `/usr/src/linux-source-{version}.tar.xz`, from the package
/// `linux-source-{version}`.
///
/// When it is not installed, a test that needs it is skipped (this returns
/// `None`, after saying so on stderr), except under `CI=true`, where .ci/run
/// installs the package and its absence is a failure.
pub fn kernel_source(version: &str) -> Option<PathBuf> {
    let path = PathBuf::from(format!("/usr/src/linux-source-{version}.tar.xz"));
    if path.exists() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{} not found: under CI=true, .ci/run should have installed Debian's linux-source-{version}",
            path.display()
        );
    }
    eprintln!(
        "skipped: {} not found; install Debian's linux-source-{version} (apt-get install linux-source-{version}) to run this test",
        path.display()
    );
    None
}

/// `policy` run natively on `preset` until it fails, with a watchdog of
/// `watchdog`: how it failed.
pub fn run_natively(policy: Arc<dyn DynPolicy>, preset: &str, watchdog: Duration) -> RunFailure {
    let opts = workloads::RunOptions {
        limit: bench_core::actor::Limit::Duration(Duration::from_secs(20)),
        pin: false,
        hook: None,
        git_revision: String::new(),
        watchdog,
    };
    match workloads::run_policy(policy, &workloads::preset(preset).unwrap(), &opts) {
        Err(workloads::RunError::Failed(failure)) => *failure,
        Err(e) => panic!("{e}"),
        Ok(run) => panic!("the run finished: {} collapses", run.collapses),
    }
}

/// What a caught panic said.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}
