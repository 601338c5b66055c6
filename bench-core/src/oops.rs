//! A panic in a policy (or anywhere on a model CPU), caught and kept for
//! the report, the way the kernel survives a bad driver with an oops.
//!
//! Policies are experimental code: one that panics must not take the
//! process, and the other policies' results, with it. [`catch`] runs a
//! closure and turns a panic into a [`PanicReport`]: the message and
//! where it happened (`file:line:column`). Only the panic hook sees the
//! location, so a hook is installed once per process; it records the
//! panic for a thread inside [`catch`] instead of printing it (the caller
//! prints the report), and leaves every other thread's panic to the hook
//! that was there before. With `RUST_BACKTRACE` set it lets the previous
//! hook print too, backtrace and all.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

/// A caught panic: what it said and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PanicReport {
    /// The panic message (`"index out of bounds: ..."`).
    pub message: String,
    /// `file:line:column` of the `panic!` (or the failed operation).
    pub location: Option<String>,
}

/// How a closure run by [`catch_unwound`] ended, when it did not return.
pub(crate) enum Unwound {
    /// The watchdog abandoned the run ([`crate::watch::abandon`]).
    Abandoned,
    /// It panicked.
    Panic(PanicReport),
}

thread_local! {
    /// Whether this thread is inside [`catch`] (the hook records, not prints).
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    /// The last panic the hook recorded on this thread.
    static LAST: RefCell<Option<PanicReport>> = const { RefCell::new(None) };
    /// What the hook tells first when a caught panic starts on this thread.
    static ON_PANIC: RefCell<Option<Box<dyn Fn()>>> = const { RefCell::new(None) };
}

/// Have the panic hook call `notice` first when a panic starts on this
/// thread inside [`catch_unwound`] — before anything slow, such as taking
/// a backtrace under `RUST_BACKTRACE=1`, which can take longer than a
/// watchdog's timeout on a loaded machine. The native runner uses it to
/// mark the CPU as panicking, not hung.
pub(crate) fn on_panic(notice: impl Fn() + 'static) {
    ON_PANIC.with(|n| *n.borrow_mut() = Some(Box::new(notice)));
}

static HOOK: Once = Once::new();

fn install_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CAPTURING.with(Cell::get) {
                return previous(info);
            }
            ON_PANIC.with(|n| {
                if let Some(notice) = &*n.borrow() {
                    notice();
                }
            });
            let report = PanicReport {
                message: message_of(info.payload()),
                location: info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())),
            };
            LAST.with(|last| *last.borrow_mut() = Some(report));
            if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
                previous(info);
            }
        }));
    });
}

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
fn message_of(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked with a payload that is not a string".to_owned()
    }
}

/// Run `f`; if it unwinds, say whether the watchdog abandoned it or it
/// panicked (and with what, where).
pub(crate) fn catch_unwound<R>(f: impl FnOnce() -> R) -> Result<R, Unwound> {
    install_hook();
    let outer = CAPTURING.with(|c| c.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    CAPTURING.with(|c| c.set(outer));
    result.map_err(|payload| {
        if payload.is::<crate::watch::Abandoned>() {
            return Unwound::Abandoned;
        }
        let recorded = LAST.with(|last| last.borrow_mut().take());
        // A payload raised by resume_unwind bypasses the hook: no location.
        Unwound::Panic(recorded.unwrap_or_else(|| PanicReport { message: message_of(&*payload), location: None }))
    })
}

/// Run `f` and catch a panic in it as a [`PanicReport`] (printed by
/// nobody: the caller reports it). What `f` touched may be left half
/// changed: use this only where that state is thrown away after a panic.
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, PanicReport> {
    catch_unwound(f).map_err(|unwound| match unwound {
        Unwound::Panic(report) => report,
        Unwound::Abandoned => PanicReport { message: "abandoned by the watchdog".to_owned(), location: None },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_caught_with_its_message_and_location() {
        let line = line!() + 1;
        let e = catch(|| panic!("boom {}", 42)).unwrap_err();
        assert_eq!(e.message, "boom 42");
        let location = e.location.expect("the hook saw the location");
        assert!(location.starts_with(&format!("bench-core/src/oops.rs:{line}:")), "{location}");
        assert_eq!(catch(|| 7).unwrap(), 7);
    }

    #[test]
    fn nested_catches_each_see_their_own_panic() {
        let outer = catch(|| {
            let inner = catch(|| panic!("inner")).unwrap_err();
            assert_eq!(inner.message, "inner");
            panic!("outer");
        })
        .unwrap_err();
        assert_eq!(outer.message, "outer");
    }
}
