//! The records and errors every state backend shares.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::soak::model::{RollbackState, SoakEnd};
use crate::soak::record::SoakMeta;

/// Why the state database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the lock (a second `watch` on the same state).
    #[error("state database {0} is locked by another soakwatch process (it holds the lock on the file {1}, whatever path or link names it)")]
    Locked(PathBuf, PathBuf),
    /// The file exists but is not a soakwatch database (or is corrupt).
    #[error("state database {path} is not a usable soakwatch database: {reason}; refusing to start a new soak over it (move it away or pass another --state)")]
    NotSoakwatch {
        /// The file.
        path: PathBuf,
        /// What SQLite or the schema check said.
        reason: String,
    },
    /// Opening or creating the file failed.
    #[error("cannot open state database {path}: {reason}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A query failed.
    #[error("state database: {0}")]
    Sql(#[from] sqlx::Error),
    /// A stored record does not decode.
    #[error("state database holds a record that does not decode: {0}")]
    Decode(String),
    /// The JetStream holding the state refused or did not answer.
    #[error("state on JetStream: {0}")]
    Nats(String),
    /// This watcher does not hold the leader lease: it may not write.
    #[error("not the leader: this watcher's lease is not held (another watcher acts)")]
    NotLeader,
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Decode(e.to_string())
    }
}

impl From<rmp_serde::decode::Error> for StoreError {
    fn from(e: rmp_serde::decode::Error) -> Self {
        StoreError::Decode(e.to_string())
    }
}

impl From<rmp_serde::encode::Error> for StoreError {
    fn from(e: rmp_serde::encode::Error) -> Self {
        StoreError::Decode(e.to_string())
    }
}

/// Baselines recorded once at soak start (from the config, or observed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baselines {
    /// Legacy stream messages at T0.
    pub legacy_messages: Option<u64>,
    /// Legacy stream last sequence at T0.
    pub legacy_last_seq: Option<u64>,
    /// DLQ stream messages at T0.
    pub dlq_messages: Option<u64>,
    /// DLQ stream last sequence at T0.
    pub dlq_last_seq: Option<u64>,
}

/// A soak as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SoakRecord {
    /// Identity and T0.
    pub meta: SoakMeta,
    /// Baselines recorded at start.
    pub baselines: Baselines,
}

/// A notification waiting in the outbox for one route.
#[derive(Debug, Clone)]
pub struct OutboxItem<N> {
    /// Notification id.
    pub id: String,
    /// Route name.
    pub route: String,
    /// The notification.
    pub body: N,
    /// Attempts so far.
    pub attempts: i64,
}

/// An outbox row as stored, body still encoded (copied between backends).
#[derive(Debug, Clone)]
pub struct OutboxCopy {
    /// Notification id.
    pub id: String,
    /// Route name.
    pub route: String,
    /// The notification, MessagePack.
    pub body: Vec<u8>,
    /// Queued at, ms.
    pub created_ms: i64,
    /// Attempts so far.
    pub attempts: i64,
    /// Next attempt, ms.
    pub next_ms: i64,
    /// Delivered at, ms.
    pub delivered_ms: Option<i64>,
    /// Given up.
    pub dead: bool,
    /// The last failure.
    pub last_error: Option<String>,
}

/// What happened to one delivery attempt.
#[derive(Debug, Clone)]
pub enum OutboxOutcome {
    /// The receiver accepted it; never sent again.
    Delivered,
    /// A transient failure: try again at `next`.
    Retry {
        /// When to try again.
        next: DateTime<Utc>,
        /// The reason, one line.
        error: String,
    },
    /// A permanent failure: give up (kept for the report).
    Dead {
        /// The reason, one line.
        error: String,
    },
}

/// The rollback latch and journal of a soak.
#[derive(Debug, Clone)]
pub struct RollbackRow<T> {
    /// Where the rollback stands.
    pub state: RollbackState,
    /// What triggered it.
    pub trigger: String,
    /// When the latch was taken.
    pub started: DateTime<Utc>,
    /// When it ended (None while running, or if interrupted).
    pub finished: Option<DateTime<Utc>>,
    /// The steps recorded so far.
    pub steps: Option<T>,
    /// The watcher whose latch this is and the lease revision it was taken
    /// under (JetStream state; None with SQLite, which has one writer).
    pub holder: Option<(String, u64)>,
    /// The step the holder was about to run and the lease revision it
    /// confirmed, written before the step (JetStream state): a journal
    /// with no steps and no such mark was never acted on.
    pub acting: Option<(usize, u64)>,
}

/// The outbox's notifications by where they stand (`/metrics`, and what a
/// stop leaves for the next start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxTally {
    /// Not delivered yet, still being tried.
    pub pending: i64,
    /// Delivered (never sent again).
    pub delivered: i64,
    /// Given up after the route's attempts.
    pub given_up: i64,
}

/// What a new leader found when it took over a `started` latch of an
/// earlier term: whether that holder may have acted, which decides between
/// running the rollback (never acted) and reporting it interrupted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatchClaim {
    /// The last step the earlier holder marked before acting on it (None:
    /// it never marked one).
    pub acted_step: Option<usize>,
    /// The earlier holder's term id, for the log.
    pub previous_holder: Option<String>,
}

impl LatchClaim {
    /// Whether the earlier holder did nothing that running the rollback
    /// again could repeat: no step marked, or only the env edit (step 1),
    /// which sets fixed keys to fixed values.
    pub fn never_acted(&self) -> bool {
        self.acted_step.is_none_or(|s| s <= 1)
    }
}
