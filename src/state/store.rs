//! The soak's state behind one interface, whichever engine holds it: the
//! embedded SQLite file (default) or JetStream (watchers as replicas). An
//! enum rather than a trait object: the methods are generic over the
//! records they store, which `dyn` cannot carry.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{Config, StateBackend};
use crate::sample::Snapshot;
use crate::soak::record::CycleRecord;
use crate::state::jetstream::{Access, JetStreamStore};
use crate::state::lease::Fence;
pub use crate::state::sqlite::SqliteStore;
pub use crate::state::types::*;

/// The T0 of the soak in progress in the configured state (one that has
/// not ended), so a one-shot `check` judges a restart against the same T0
/// as the daemon, also when `[soak] started_at` is absent or was
/// overridden (`--t0`, `--new-soak`). `None` when no daemon ever wrote the
/// state, on any error, or after `timeout`: `check` then uses `started_at`.
pub async fn soak_in_progress_t0(cfg: &Config, timeout: Duration) -> Option<DateTime<Utc>> {
    if cfg.state.backend == StateBackend::Sqlite && !cfg.watch.state.exists() {
        return None;
    }
    let look = async {
        let store = Store::open_config(cfg, &cfg.watch.state, Access::ReadOnly)
            .await
            .ok()?;
        let soak = store.active_soak().await.ok().flatten();
        let ended = match &soak {
            Some(s) => !matches!(store.soak_end(&s.meta.id).await, Ok(None)),
            None => true,
        };
        store.close().await;
        soak.filter(|_| !ended).map(|s| s.meta.t0)
    };
    tokio::time::timeout(timeout, look).await.ok().flatten()
}

/// The soak's state, on either backend.
pub enum Store {
    /// `[watch] state`, a local SQLite file.
    Sqlite(SqliteStore),
    /// `[state] backend = "jetstream"`.
    JetStream(Box<JetStreamStore>),
}

macro_rules! both {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Sqlite($s) => $e,
            Store::JetStream($s) => $e,
        }
    };
}

impl Store {
    /// Opens a SQLite file for the daemon (exclusive lock).
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        SqliteStore::open(path).await.map(Store::Sqlite)
    }

    /// Opens a SQLite file for a small write beside a running daemon.
    pub async fn open_shared(path: &Path) -> Result<Store, StoreError> {
        SqliteStore::open_shared(path).await.map(Store::Sqlite)
    }

    /// Opens a SQLite file for reading.
    pub async fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        SqliteStore::open_read_only(path).await.map(Store::Sqlite)
    }

    /// Opens the backend the config names: `state` is the SQLite path
    /// (`--state` or `[watch] state`).
    pub async fn open_config(
        cfg: &Config,
        state: &Path,
        access: Access,
    ) -> Result<Store, StoreError> {
        match (cfg.state.backend, access) {
            (StateBackend::JetStream, a) => JetStreamStore::open(&cfg.state, a)
                .await
                .map(|j| Store::JetStream(Box::new(j))),
            (StateBackend::Sqlite, Access::Leader) => Self::open(state).await,
            (StateBackend::Sqlite, Access::Shared) => Self::open_shared(state).await,
            (StateBackend::Sqlite, Access::ReadOnly) => Self::open_read_only(state).await,
        }
    }

    /// The leader fence of a JetStream state (None for SQLite: one writer by its file lock).
    pub fn fence(&self) -> Option<Arc<Fence>> {
        match self {
            Store::Sqlite(_) => None,
            Store::JetStream(j) => Some(j.fence()),
        }
    }

    /// Whether this process may act now (SQLite: always; JetStream: while it leads).
    pub fn may_act(&self) -> bool {
        self.fence().is_none_or(|f| f.is_open())
    }

    /// Immediately before an outside effect: `Ok` with the lease revision
    /// this process acts under (None for SQLite: one writer by lock file),
    /// or why it may no longer act (JetStream: the lease, read now from the
    /// server, must still name this watcher).
    /// `term_id` is the term the rollback began in (see [`Store::term_id`]):
    /// a task left from an earlier term of this process is refused too.
    pub async fn confirm_acting(&self, term_id: Option<&str>) -> Result<Option<u64>, String> {
        match self {
            Store::Sqlite(_) => Ok(None),
            // A manual `rollback --execute` beside the daemon holds no lease.
            Store::JetStream(j) if !j.fence().is_enforced() => Ok(None),
            Store::JetStream(j) => crate::state::lease::confirm(j.kv(), &j.fence(), term_id)
                .await
                .map(Some),
        }
    }

    /// This watcher's term while it leads (JetStream state): its holder id
    /// and term number, what a latch and its marks carry.
    pub fn term_id(&self) -> Option<String> {
        self.fence().and_then(|f| f.held()).map(|h| h.term_id())
    }

    /// Where the state is, for messages (no credentials).
    pub fn describe(&self) -> String {
        match self {
            Store::Sqlite(s) => s.path().display().to_string(),
            Store::JetStream(j) => format!("JetStream bucket {}", j.bucket()),
        }
    }

    /// The soak in progress, if any.
    pub async fn active_soak(&self) -> Result<Option<SoakRecord>, StoreError> {
        both!(self, s => s.active_soak().await)
    }

    /// Records a new soak and makes it the active one.
    pub async fn start_soak(&self, rec: &SoakRecord, now: DateTime<Utc>) -> Result<(), StoreError> {
        both!(self, s => s.start_soak(rec, now).await)
    }

    /// Freezes a soak's verdict at its end (the sign-off).
    pub async fn end_soak(&self, soak_id: &str, end: &SoakEnd) -> Result<(), StoreError> {
        both!(self, s => s.end_soak(soak_id, end).await)
    }

    /// The sign-off of a soak, once it ended: what every reader shows
    /// instead of judging the history again.
    pub async fn soak_end(&self, soak_id: &str) -> Result<Option<SoakEnd>, StoreError> {
        both!(self, s => s.soak_end(soak_id).await)
    }

    /// Starts this leader's term on a soak's record (JetStream: a marker
    /// after which a deposed leader's late cycle append is refused by the
    /// server; nothing with SQLite's single writer).
    pub async fn begin_term(&self, soak_id: &str) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(_) => Ok(()),
            Store::JetStream(j) => j.begin_term(soak_id).await,
        }
    }

    /// Appends one cycle and its snapshot.
    pub async fn append(
        &self,
        soak_id: &str,
        rec: &CycleRecord,
        snap: &Snapshot,
    ) -> Result<(), StoreError> {
        both!(self, s => s.append(soak_id, rec, snap).await)
    }

    /// Every cycle of a soak, oldest first.
    pub async fn cycles(&self, soak_id: &str) -> Result<Vec<CycleRecord>, StoreError> {
        both!(self, s => s.cycles(soak_id).await)
    }

    /// Hands every cycle of a soak to `f`, oldest first: SQLite streams
    /// them as it reads (a 48 h history is never held whole); JetStream
    /// reads them all first (its records arrive unordered and duplicated
    /// across failovers, and are sorted and de-duplicated by time).
    pub async fn for_each_cycle(
        &self,
        soak_id: &str,
        mut f: impl FnMut(CycleRecord),
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.for_each_cycle(soak_id, f).await,
            Store::JetStream(j) => {
                for c in j.cycles(soak_id).await? {
                    f(c);
                }
                Ok(())
            }
        }
    }

    /// The newest snapshot of a soak.
    pub async fn last_snapshot(&self, soak_id: &str) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.last_snapshots(soak_id, 1).await?.pop())
    }

    /// The newest `n` snapshots, oldest first.
    pub async fn last_snapshots(&self, soak_id: &str, n: i64) -> Result<Vec<Snapshot>, StoreError> {
        both!(self, s => s.last_snapshots(soak_id, n).await)
    }

    /// Every kept snapshot, oldest first.
    pub async fn snapshots(&self, soak_id: &str) -> Result<Vec<Snapshot>, StoreError> {
        both!(self, s => s.snapshots(soak_id).await)
    }

    /// Labels of checkpoints already written.
    pub async fn checkpoints_done(&self, soak_id: &str) -> Result<Vec<String>, StoreError> {
        both!(self, s => s.checkpoints_done(soak_id).await)
    }

    /// Records a written checkpoint so a restart does not write it again.
    pub async fn mark_checkpoint(
        &self,
        soak_id: &str,
        label: &str,
        path: &Path,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.mark_checkpoint(soak_id, label, path, now).await,
            Store::JetStream(j) => j.mark_checkpoint(soak_id, label, path).await,
        }
    }

    /// Thins old snapshots (JetStream keeps only the newest few anyway).
    pub async fn thin(
        &self,
        soak_id: &str,
        before: DateTime<Utc>,
        keep_every: Duration,
    ) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.thin(soak_id, before, keep_every).await,
            Store::JetStream(_) => Ok(0),
        }
    }

    /// Alert tracking states of a soak.
    pub async fn alert_states<T: serde::de::DeserializeOwned>(
        &self,
        soak_id: &str,
    ) -> Result<Vec<T>, StoreError> {
        both!(self, s => s.alert_states(soak_id).await)
    }

    /// Saves alert states and enqueues notifications.
    pub async fn commit_alerts<S: Serialize, N: Serialize>(
        &self,
        soak_id: &str,
        states: &[(String, S)],
        outbox: &[(String, String, N)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        both!(self, s => s.commit_alerts(soak_id, states, outbox, now).await)
    }

    /// Undelivered notifications due at `now`; refused to a watcher that
    /// does not lead (only the leader delivers).
    pub async fn due_outbox<N: serde::de::DeserializeOwned>(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxItem<N>>, StoreError> {
        if !self.may_act() {
            return Err(StoreError::NotLeader);
        }
        both!(self, s => s.due_outbox(now, limit).await)
    }

    /// Undelivered notifications of one route due at `now`: each route
    /// delivers on its own, so one slow receiver never waits for another.
    pub async fn due_outbox_route<N: serde::de::DeserializeOwned>(
        &self,
        route: &str,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxItem<N>>, StoreError> {
        if !self.may_act() {
            return Err(StoreError::NotLeader);
        }
        both!(self, s => s.due_outbox_route(route, now, limit).await)
    }

    /// Records a delivery outcome.
    pub async fn outbox_result(
        &self,
        id: &str,
        route: &str,
        outcome: OutboxOutcome,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        both!(self, s => s.outbox_result(id, route, outcome, now).await)
    }

    /// (pending, delivered, dead) counts of the outbox.
    pub async fn outbox_counts(&self) -> Result<OutboxTally, StoreError> {
        both!(self, s => s.outbox_counts().await)
    }

    /// Takes the one-shot rollback latch; false when already taken.
    pub async fn take_rollback_latch(
        &self,
        soak_id: &str,
        trigger: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        both!(self, s => s.take_rollback_latch(soak_id, trigger, now).await)
    }

    /// Marks that this holder is about to run rollback step `step` under
    /// lease revision `rev` (JetStream; a no-op with SQLite).
    pub async fn mark_acting(
        &self,
        soak_id: &str,
        step: usize,
        rev: u64,
        term_id: &str,
    ) -> Result<(), StoreError> {
        both!(self, s => s.mark_acting(soak_id, step, rev, term_id).await)
    }

    /// Saves the rollback's progress or its end; with `term_id` (a daemon's
    /// rollback on JetStream) only while the latch still names that term.
    pub async fn save_rollback<T: Serialize>(
        &self,
        soak_id: &str,
        state: RollbackState,
        steps: &T,
        finished: Option<DateTime<Utc>>,
        term_id: Option<&str>,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.save_rollback(soak_id, state, steps, finished).await,
            Store::JetStream(j) => {
                j.save_rollback(soak_id, state, steps, finished, term_id)
                    .await
            }
        }
    }

    /// Takes over a `started` latch of an earlier holder for this leader
    /// (JetStream). SQLite has one writer by lock file: a latch left
    /// `started` there is the dead process's own, and is reported as acted
    /// on (its steps are journaled after they run, never marked before).
    pub async fn claim_rollback_latch(
        &self,
        soak_id: &str,
    ) -> Result<Option<LatchClaim>, StoreError> {
        match self {
            Store::Sqlite(s) => Ok(s
                .rollback_record::<serde::de::IgnoredAny>(soak_id)
                .await?
                .filter(|r| r.state == RollbackState::Started)
                .map(|_| LatchClaim {
                    acted_step: Some(usize::MAX),
                    previous_holder: None,
                })),
            Store::JetStream(j) => j.claim_rollback_latch(soak_id).await,
        }
    }

    /// The rollback record of a soak.
    pub async fn rollback_record<T: serde::de::DeserializeOwned>(
        &self,
        soak_id: &str,
    ) -> Result<Option<RollbackRow<T>>, StoreError> {
        both!(self, s => s.rollback_record(soak_id).await)
    }

    /// Size of the SQLite file and its WAL (0 on JetStream: the server's).
    pub fn size_bytes(&self) -> u64 {
        match self {
            Store::Sqlite(s) => s.size_bytes(),
            Store::JetStream(_) => 0,
        }
    }

    /// Moves the WAL into the database file and truncates it, so space
    /// freed on a full disk goes to the cycles waiting to be written, not
    /// to a WAL that auto-checkpoints only at ~4 MB (on a small filesystem:
    /// never). Best effort, for when writes fail; JetStream has no WAL.
    pub async fn checkpoint_wal(&self) {
        match self {
            Store::Sqlite(s) => s.checkpoint_wal().await,
            Store::JetStream(_) => {}
        }
    }

    /// A clean close.
    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
            Store::JetStream(_) => {}
        }
    }
}
