//! Helpers shared by the integration tests.

use std::path::PathBuf;

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
