//! soakwatch: soak-test monitor for NATS JetStream cutovers.
//!
//! Probes (I/O) gather timestamped [`sample::Snapshot`]s; [`evaluate`] turns
//! them into [`verdict::Verdict`]s without any I/O or clock of its own, so
//! recorded history can be replayed; [`render`] renders them.
//!
//! The `testkit` feature adds what the demo, the tests and the benchmarks
//! need and the product must not ship (`testkit`: a disposable replica of
//! the Phase B topology, a stand-in service, the demo, synthetic soak
//! histories) and the `soakwatch-testkit` binary that runs them.

// `println!`, `print!` and `eprintln!` in this crate: std's
// panic when the write fails (a closed stdout under `| head -1`); these
// never do ([`stdio`]). Defined before every module, so they shadow std's
// everywhere in the crate; the binary defines the same in main.rs.
macro_rules! println {
    () => { $crate::stdio::out(format_args!(""), true) };
    ($($t:tt)*) => { $crate::stdio::out(format_args!($($t)*), true) };
}
macro_rules! print {
    ($($t:tt)*) => { $crate::stdio::out(format_args!($($t)*), false) };
}
macro_rules! eprintln {
    () => { $crate::stdio::err(format_args!(""), true) };
    ($($t:tt)*) => { $crate::stdio::err(format_args!($($t)*), true) };
}

pub mod alert;
pub mod atomic_file;
pub mod check;
pub mod config;
pub mod discover;
pub mod duration;
pub mod envfile;
pub mod evaluate;
pub mod export;
pub mod histogram;
pub mod http_client;
pub mod ledger;
pub mod logging;
pub mod probe;
pub mod probe_error;
pub mod promtext;
pub mod render;
pub mod rollback;
pub mod sample;
pub mod secret;
pub mod self_health;
pub mod shutdown;
pub mod soak;
pub mod sql;
pub mod state;
pub mod stdio;
pub mod subjects;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod untrusted;
pub mod verdict;
pub mod watch;

/// Installs the one rustls crypto provider (ring). Must run before any TLS
/// use: with none installed, the first TLS connection panics. A second call
/// is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
