//! Ctrl-C (SIGINT) and SIGTERM for the long commands (`report`, `soak`):
//! the first asks the command to stop at the next point where it can
//! (between runs), say what it finished, leave its output as it was and
//! exit 130; a second ends the process at once, with the same status.
//!
//! The handler comes from the `ctrlc` crate: it runs the handler on a
//! thread of its own (a signal handler proper may do almost nothing
//! safely), covers SIGTERM and SIGHUP too with its `termination`
//! feature, and is widely used and kept up to date.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// The exit status of a command stopped by Ctrl-C (128 + SIGINT).
pub const EXIT_STATUS: u8 = 130;

/// Catch Ctrl-C and SIGTERM from now on (once per process). When the
/// handler cannot be installed, Ctrl-C keeps its default effect.
pub fn install() {
    INSTALL.call_once(|| {
        let installed = ctrlc::set_handler(|| {
            if REQUESTED.swap(true, Ordering::SeqCst) {
                tell!("\ninterrupted again: exiting now");
                std::process::exit(EXIT_STATUS.into());
            }
            tell!("\ninterrupted: stopping after the current run (Ctrl-C again to exit now)");
        });
        if let Err(e) = installed {
            tell!("warning: Ctrl-C cannot be caught ({e}); it will end the command at once");
        }
    });
}

/// Whether Ctrl-C (or SIGTERM) was pressed since [`install`].
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
