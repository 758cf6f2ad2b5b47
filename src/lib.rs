//! soakwatch: soak-test monitor for NATS JetStream cutovers.
//!
//! Probes (I/O) gather timestamped [`sample::Snapshot`]s; [`evaluate`] turns
//! them into [`verdict::Verdict`]s without any I/O or clock of its own, so
//! recorded history can be replayed; [`output`] renders them.
//!
//! The `testkit` feature adds what the demo, the tests and the benchmarks
//! need and the product must not ship: a disposable replica of the Phase B
//! topology (`replica`), a stand-in service (`standin`), the demo (`demo`),
//! synthetic soak histories (`soak::synthetic`) and the `soakwatch-testkit`
//! binary that runs them.

pub mod alert;
pub mod check;
pub mod config;
#[cfg(feature = "testkit")]
pub mod demo;
pub mod discover;
pub mod envfile;
pub mod evaluate;
pub mod histogram;
pub mod logging;
pub mod output;
pub mod probe;
pub mod promtext;
#[cfg(feature = "testkit")]
pub mod replica;
pub mod rollback;

pub mod sample;
pub mod secret;
pub mod self_health;
pub mod shutdown;
pub mod soak;
pub mod sql;
#[cfg(feature = "testkit")]
pub mod standin;
pub mod subjects;
pub mod verdict;
pub mod watch;

/// Installs the one rustls crypto provider (ring). Must run before any TLS
/// use: with none installed, the first TLS connection panics. A second call
/// is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
