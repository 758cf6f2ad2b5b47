//! soakwatch: soak-test monitor for NATS JetStream cutovers.
//!
//! Probes (I/O) gather timestamped [`sample::Snapshot`]s; [`evaluate`] turns
//! them into [`verdict::Verdict`]s without any I/O or clock of its own, so
//! recorded history can be replayed; [`output`] renders them.

pub mod alert;
pub mod check;
pub mod config;
pub mod demo;
pub mod discover;
pub mod envfile;
pub mod evaluate;
pub mod histogram;
pub mod output;
pub mod probe;
pub mod promtext;
pub mod replica;
pub mod rollback;
pub mod rollback_run;
pub mod sample;
pub mod secret;
pub mod self_health;
pub mod soak;
pub mod standin;
pub mod subjects;
pub mod verdict;
pub mod watch;
pub mod watch_http;

/// Installs the one rustls crypto provider (ring). Must run before any TLS
/// use: with none installed, the first TLS connection panics. A second call
/// is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
