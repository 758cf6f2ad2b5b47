//! `soakwatch state migrate`: copies the active soak of a SQLite state into
//! JetStream (soak record, cycles, kept snapshots, alert tracks, outbox,
//! rollback latch and journal, checkpoints), so a soak begun on one host
//! continues under replicated watchers.

use crate::state::jetstream::JetStreamStore;
use crate::state::sqlite::SqliteStore;
use crate::state::types::StoreError;

/// What was copied.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The soak's id.
    pub soak_id: String,
    /// Cycle records copied.
    pub cycles: usize,
    /// Snapshots copied (JetStream keeps the newest few).
    pub snapshots: usize,
    /// Alert tracks copied.
    pub alerts: usize,
    /// Outbox rows copied (delivered ones stay delivered).
    pub outbox: usize,
    /// Whether a rollback latch was copied.
    pub rollback: bool,
}

/// Why a migration stopped.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Either side failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The SQLite file holds no soak.
    #[error("the SQLite state holds no active soak")]
    NoSoak,
    /// The target already holds this soak: copying twice would mix records.
    #[error("JetStream already holds soak {0}: not copied again")]
    Exists(String),
    /// A watcher leads on the target: a copy beside it would mix two soaks'
    /// writers. Stop the watchers first.
    #[error("watcher {holder} holds the lease of this JetStream state (renewed {renewed}): stop the watchers, then migrate")]
    Leader {
        /// The leading watcher's name (host-pid-random).
        holder: String,
        /// Its last renewal.
        renewed: chrono::DateTime<chrono::Utc>,
    },
}

/// Refuses while a watcher holds the lease of `to` (an unreadable lease is
/// refused too: "free" must be known, not assumed).
pub async fn refuse_beside_leader(
    to: &JetStreamStore,
    lease: std::time::Duration,
) -> Result<(), MigrateError> {
    match crate::state::lease::current_holder(to.kv(), lease).await {
        Ok(Some((holder, renewed))) => Err(MigrateError::Leader { holder, renewed }),
        Ok(None) => Ok(()),
        Err(e) => Err(MigrateError::Store(StoreError::Open {
            path: to.bucket().into(),
            reason: format!("reading the lease: {e}"),
        })),
    }
}

/// Copies the active soak; refuses when JetStream holds it already, or
/// while a watcher holds the lease (`lease`: how long an unrenewed lease stands).
pub async fn migrate(
    from: &SqliteStore,
    to: &JetStreamStore,
    lease: std::time::Duration,
) -> Result<Migrated, MigrateError> {
    refuse_beside_leader(to, lease).await?;
    let soak = from.active_soak().await?.ok_or(MigrateError::NoSoak)?;
    let id = soak.meta.id.clone();
    if to.active_soak().await?.is_some_and(|s| s.meta.id == id) {
        return Err(MigrateError::Exists(id));
    }
    let mut m = Migrated {
        soak_id: id.clone(),
        ..Default::default()
    };
    let cycles = from.cycles(&id).await?;
    let snaps = from.snapshots(&id).await?;
    // A cycle's snapshot goes with it while kept; older cycles alone.
    let mut by_at: std::collections::BTreeMap<i64, crate::sample::Snapshot> = snaps
        .into_iter()
        .map(|s| (s.taken_at.timestamp_millis(), s))
        .collect();
    for c in &cycles {
        match by_at.remove(&c.at.timestamp_millis()) {
            Some(s) => {
                to.append(&id, c, &s).await?;
                m.snapshots += 1;
            }
            None => to.append_cycle(&id, c).await?,
        }
        m.cycles += 1;
    }
    let tracks: Vec<rmpv_value::Raw> = from.alert_states(&id).await?;
    m.alerts = tracks.len();
    let named: Vec<(String, rmpv_value::Raw)> = tracks
        .into_iter()
        .map(|t| (t.name().unwrap_or_default(), t))
        .collect();
    to.commit_alerts::<_, ()>(&id, &named, &[], chrono::Utc::now())
        .await?;
    m.outbox = to.copy_outbox(&id, &from.outbox_rows(&id).await?).await?;
    if let Some(r) = from.rollback_record::<rmpv_value::Raw>(&id).await? {
        to.copy_rollback(&id, &r).await?;
        m.rollback = true;
    }
    for (label, path) in from.checkpoint_rows(&id).await? {
        to.mark_checkpoint(&id, &label, std::path::Path::new(&path))
            .await?;
    }
    // Last: the soak becomes active only once everything is there.
    to.start_soak(&soak, chrono::Utc::now()).await?;
    Ok(m)
}

/// Records copied as they are: MessagePack in, MessagePack out.
pub mod rmpv_value {
    use serde::{Deserialize, Serialize};

    /// Any MessagePack value, kept as is.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(transparent)]
    pub struct Raw(pub serde_json::Value);

    impl Raw {
        /// The `name` field of a map (alert tracks are keyed by it).
        pub fn name(&self) -> Option<String> {
            self.0
                .get("name")
                .and_then(|v| v.as_str())
                .map(String::from)
        }
    }
}
