//! Printing that cannot panic. std's `println!` panics when the write fails,
//! and a closed stdout is ordinary: `soakwatch check | head -1` closes it
//! once `head` has its line (Rust programs ignore SIGPIPE, so the write
//! fails with EPIPE instead of the process being killed). Exit 101 is in no
//! contract the tool promises (Nagios 0-3), so every print of the crate and
//! the binary goes through here: `println!`, `print!` and `eprintln!`
//! are shadowed by macros calling these functions (see `lib.rs`
//! and `main.rs`).
//!
//! A closed stdout is a quiet exit: what is left to print is dropped, the
//! command finishes and exits with its own code. Any other write error
//! (a full disk behind `> file`) is said once on stderr.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout failed: later prints are dropped.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Writes to stdout; a failure ends stdout for the rest of the process.
pub fn out(args: fmt::Arguments<'_>, newline: bool) {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut o = std::io::stdout().lock();
    let written = o
        .write_fmt(args)
        .and_then(|()| if newline { o.write_all(b"\n") } else { Ok(()) });
    if let Err(e) = written {
        gone(&e);
    }
}

/// Writes what stdout still buffers (a last line without a newline); called
/// before the process exits.
pub fn flush_out() {
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = std::io::stdout().lock().flush() {
        gone(&e);
    }
}

fn gone(e: &std::io::Error) {
    if !STDOUT_GONE.swap(true, Ordering::Relaxed) && e.kind() != std::io::ErrorKind::BrokenPipe {
        err(format_args!("soakwatch: cannot write to stdout: {e}"), true);
    }
}

/// Writes to stderr; a failure is ignored (there is nowhere left to say it).
pub fn err(args: fmt::Arguments<'_>, newline: bool) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_fmt(args);
    if newline {
        let _ = e.write_all(b"\n");
    }
}

/// Whether a write to stdout has failed (tests).
pub fn stdout_gone() -> bool {
    STDOUT_GONE.load(Ordering::Relaxed)
}
