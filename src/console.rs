//! Printing to stdout and stderr without panicking when either is gone.
//!
//! `std`'s `print!` panics when stdout is a closed pipe (`run ... | head`),
//! which would lose the results file the command was about to write. The
//! tool prints through [`say!`](crate::say) and [`tell!`](crate::tell)
//! instead: a write that fails marks the stream closed and is dropped, so
//! the work and its files go on. Once the files are safe, the command
//! calls [`end_if_stdout_closed`], which ends the process the way a
//! closed pipe ends any Unix filter: by the default action of `SIGPIPE`
//! (the shell sees 128 + 13). A command with no file left to write calls
//! it between its parts too, so `check | head` and `soak | head` stop at
//! their next run once `head` has gone.

use std::fmt::Arguments;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// Print to stdout, like `print!`, but never panic (see the module docs).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::console::out(format_args!($($arg)*)) };
}

/// Print a line to stdout, like `println!`, but never panic.
#[macro_export]
macro_rules! sayln {
    () => { $crate::console::out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Print a line to stderr, like `eprintln!`, but never panic.
#[macro_export]
macro_rules! tell {
    ($($arg:tt)*) => { $crate::console::err(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Write to stdout; a failure marks it closed and later writes are dropped.
pub fn out(args: Arguments<'_>) {
    write_to(&mut std::io::stdout().lock(), &STDOUT_CLOSED, args);
}

/// Write to stderr; a failure marks it closed and later writes are dropped.
pub fn err(args: Arguments<'_>) {
    write_to(&mut std::io::stderr().lock(), &STDERR_CLOSED, args);
}

fn write_to(stream: &mut dyn std::io::Write, closed: &AtomicBool, args: Arguments<'_>) {
    if closed.load(Ordering::Relaxed) {
        return;
    }
    if stream.write_fmt(args).and_then(|()| stream.flush()).is_err() {
        closed.store(true, Ordering::Relaxed);
    }
}

/// Whether stdout has gone: a write to it failed, or it is a pipe whose
/// reader has closed it (`poll` reports an error on the write end), which
/// a command that prints nothing for a while would not notice otherwise.
pub fn stdout_closed() -> bool {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return true;
    }
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(&stdout, PollFlags::OUT)];
    let ready = poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 }));
    let gone = matches!(ready, Ok(1)) && fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP);
    if gone {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
    gone
}

/// If stdout has gone, end the process as `SIGPIPE` ends a filter whose
/// reader left. Call it only where every file the command writes is safe.
pub fn end_if_stdout_closed() {
    if !stdout_closed() {
        return;
    }
    // SAFETY: restoring the default action and raising the signal; Rust
    // set SIGPIPE to be ignored at start-up, nothing else handles it.
    // (libc, not rustix: rustix sets a signal's action only through its
    // `runtime` feature, meant for implementing a libc, and unsafe too.)
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
}
