//! The state database: one SQLite file holding the soak's identity,
//! baselines, every cycle and the (thinned) snapshots.
//!
//! Each cycle is one transaction in WAL mode, so a SIGKILL loses at most the
//! cycle in flight. One daemon per file: an exclusive lock on the database
//! file itself refuses a second writer, by whatever path or link it comes. A file that is not a
//! soakwatch database is refused, never silently replaced by a new soak.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Row;

use crate::sample::Snapshot;
use crate::soak::record::{CycleRecord, SoakMeta};

use crate::state::types::*;

/// Schema version written in `meta`; bumped on incompatible changes.
const SCHEMA_VERSION: &str = "1";

/// Records are MessagePack: compact, and unlike JSON it keeps +Inf/NaN
/// (histogram buckets end at +Inf).
fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    Ok(rmp_serde::to_vec_named(v)?)
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    Ok(rmp_serde::from_slice(b)?)
}

/// An open SQLite state database (the embedded backend).
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
    /// Held for the store's life; released by [`SqliteStore::close`].
    lock: std::sync::Mutex<Option<std::fs::File>>,
    /// The newest appended snapshot's time and its body without consumer
    /// listings, when it had a fleet's: the next append writes that body
    /// over it, so only the newest snapshot keeps a 1,000-durable listing
    /// (see [`Snapshot::elide_consumers`]).
    slim_prev: std::sync::Mutex<Option<(i64, Vec<u8>)>>,
}

/// The file a path names once every symlink (also a last component that
/// is a link to a file not created yet) and `.`/`..` are resolved.
fn canonical_file(path: &Path) -> std::io::Result<PathBuf> {
    let mut path = std::path::absolute(path)?;
    // A chain of links is followed a bounded number of times (a loop errs).
    for _ in 0..40 {
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&path)?;
                let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                path = dir.join(target);
            }
            Ok(_) => return std::fs::canonicalize(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Not created yet: the directory is resolved, the name kept.
                let name = path.file_name().map(|n| n.to_os_string());
                let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                let dir = std::fs::canonicalize(&dir)?;
                return Ok(match name {
                    Some(n) => dir.join(n),
                    None => dir,
                });
            }
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "{}: too many levels of symbolic links",
        path.display()
    )))
}

/// Takes the one-writer lock on the database file itself (`flock`, created
/// empty if missing: SQLite takes an empty file as a new database). The lock
/// belongs to the file, not to a name: a symlink, a `../` spelling or a hard
/// link of the state meets it, where a `<path>.lock` beside a name did not
/// (two daemons once wrote one state through a hard link, each to its own
/// WAL, and cycles were lost). `flock` and SQLite's own `fcntl` locks do not
/// interact; readers (`report`, `check --soak`) take no flock. The
/// descriptor is held until [`SqliteStore::close`] has closed the pool:
/// closing any descriptor of the file drops this process's `fcntl` locks.
fn lock_database_file(given: &Path, path: &Path) -> Result<std::fs::File, StoreError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(StoreError::Locked(given.to_path_buf(), path.to_path_buf()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Open {
            path: path.to_path_buf(),
            reason: format!("cannot lock the state file: {e}"),
        }),
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

impl SqliteStore {
    /// Opens (creating if missing) for writing, taking the exclusive lock.
    pub async fn open(given: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = given.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                path: given.to_path_buf(),
                reason: e.to_string(),
            })?;
        }
        // The database is opened by its canonical path, so a symlink or
        // `../` spelling reaches the same file and its WAL.
        let canonical = canonical_file(given).map_err(|e| StoreError::Open {
            path: given.to_path_buf(),
            reason: e.to_string(),
        })?;
        let path = canonical.as_path();
        let existed = path.exists();
        let lock = lock_database_file(given, path)?;
        let result = async {
            let store = Self::connect(path, false, Some(lock)).await?;
            store.init_schema().await?;
            // Ours (or new): now WAL, so a SIGKILL loses at most the cycle in flight.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&store.pool)
                .await?;
            Ok::<_, StoreError>(store)
        }
        .await;
        // A file this call created and nothing wrote is not left behind.
        if result.is_err() && !existed && std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
            let _ = std::fs::remove_file(path);
        }
        result
    }

    /// Opens an existing database for a small write beside a running daemon
    /// (the manual rollback takes the latch): no lock file, SQLite's own
    /// locking serialises the writes.
    pub async fn open_shared(path: &Path) -> Result<SqliteStore, StoreError> {
        if !path.exists() {
            return Err(StoreError::Open {
                path: path.to_path_buf(),
                reason: "no such file (has `soakwatch watch` run with this state path?)".into(),
            });
        }
        let store = Self::connect(path, false, None).await?;
        store.check_schema().await?;
        Ok(store)
    }

    /// Opens an existing database for reading while a daemon may be writing it.
    pub async fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        if !path.exists() {
            return Err(StoreError::Open {
                path: path.to_path_buf(),
                reason: "no such file (has `soakwatch watch` run with this state path?)".into(),
            });
        }
        let store = Self::connect(path, true, None).await?;
        store.check_schema().await?;
        Ok(store)
    }

    async fn connect(
        path: &Path,
        read_only: bool,
        lock: Option<std::fs::File>,
    ) -> Result<SqliteStore, StoreError> {
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| StoreError::Open {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?
            .filename(path)
            .create_if_missing(!read_only)
            .read_only(read_only)
            // No journal_mode here: setting it rewrites the file header, and a
            // file that turns out not to be ours must be left untouched.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::NotSoakwatch {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok(SqliteStore {
            pool,
            path: path.to_path_buf(),
            lock: std::sync::Mutex::new(lock),
            slim_prev: std::sync::Mutex::new(None),
        })
    }

    fn not_ours(&self, reason: impl Into<String>) -> StoreError {
        StoreError::NotSoakwatch {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// Tables of a fresh file; a file with other tables is refused.
    async fn init_schema(&self) -> Result<(), StoreError> {
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.not_ours(e.to_string()))?;
        if tables.is_empty() {
            let mut tx = self.pool.begin().await?;
            for stmt in [
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
                "CREATE TABLE soak (id TEXT PRIMARY KEY, name TEXT NOT NULL, t0_ms INTEGER NOT NULL, \
                 planned_secs REAL NOT NULL, baselines TEXT NOT NULL, created_ms INTEGER NOT NULL, active INTEGER NOT NULL)",
                "CREATE TABLE cycle (soak_id TEXT NOT NULL, at_ms INTEGER NOT NULL, record BLOB NOT NULL, \
                 PRIMARY KEY (soak_id, at_ms))",
                "CREATE TABLE snapshot (soak_id TEXT NOT NULL, at_ms INTEGER NOT NULL, body BLOB NOT NULL, \
                 PRIMARY KEY (soak_id, at_ms))",
                "CREATE TABLE checkpoint (soak_id TEXT NOT NULL, label TEXT NOT NULL, written_ms INTEGER NOT NULL, \
                 path TEXT NOT NULL, PRIMARY KEY (soak_id, label))",
                "CREATE TABLE alert_state (soak_id TEXT NOT NULL, name TEXT NOT NULL, body BLOB NOT NULL, \
                 PRIMARY KEY (soak_id, name))",
                "CREATE TABLE outbox (id TEXT NOT NULL, route TEXT NOT NULL, soak_id TEXT NOT NULL, body BLOB NOT NULL, \
                 created_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_ms INTEGER NOT NULL, \
                 delivered_ms INTEGER, dead INTEGER NOT NULL DEFAULT 0, last_error TEXT, PRIMARY KEY (id, route))",
                "CREATE TABLE rollback (soak_id TEXT PRIMARY KEY, state TEXT NOT NULL, trigger TEXT NOT NULL, \
                 started_ms INTEGER NOT NULL, finished_ms INTEGER, steps BLOB, outcome BLOB)",
            ] {
                sqlx::query(stmt).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO meta (key, value) VALUES ('schema', ?), ('app', 'soakwatch')")
                .bind(SCHEMA_VERSION)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(());
        }
        self.check_schema().await
    }

    async fn check_schema(&self) -> Result<(), StoreError> {
        let row: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'schema'")
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.not_ours(e.to_string()))?;
        match row.as_deref() {
            Some(SCHEMA_VERSION) => Ok(()),
            Some(v) => Err(self.not_ours(format!(
                "schema version {v}, this soakwatch reads {SCHEMA_VERSION}"
            ))),
            None => Err(self.not_ours("no soakwatch schema marker")),
        }
    }

    /// The soak in progress, if any.
    pub async fn active_soak(&self) -> Result<Option<SoakRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, t0_ms, planned_secs, baselines FROM soak WHERE active = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let t0_ms: i64 = row.get(2);
        Ok(Some(SoakRecord {
            meta: SoakMeta {
                id: row.get(0),
                name: row.get(1),
                t0: DateTime::from_timestamp_millis(t0_ms).unwrap_or_default(),
                planned_secs: row.get(3),
            },
            baselines: serde_json::from_str(row.get::<&str, _>(4))?,
        }))
    }

    /// Records a new soak (once) and makes it the active one.
    pub async fn start_soak(&self, rec: &SoakRecord, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE soak SET active = 0")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO soak (id, name, t0_ms, planned_secs, baselines, created_ms, active) VALUES (?, ?, ?, ?, ?, ?, 1)",
        )
        .bind(&rec.meta.id)
        .bind(&rec.meta.name)
        .bind(ms(rec.meta.t0))
        .bind(rec.meta.planned_secs)
        .bind(serde_json::to_string(&rec.baselines)?)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Freezes a soak's verdict at its end. Kept in `meta` (key
    /// `end:<soak id>`), so the schema and older readers stay as they are.
    pub async fn end_soak(&self, soak_id: &str, end: &SoakEnd) -> Result<(), StoreError> {
        sqlx::query("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)")
            .bind(format!("end:{soak_id}"))
            .bind(serde_json::to_string(end)?)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The sign-off of a soak, once it ended.
    pub async fn soak_end(&self, soak_id: &str) -> Result<Option<SoakEnd>, StoreError> {
        let v: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(format!("end:{soak_id}"))
            .fetch_optional(&self.pool)
            .await?;
        Ok(match v {
            Some(v) => Some(serde_json::from_str(&v)?),
            None => None,
        })
    }

    /// Appends one cycle and its snapshot atomically.
    pub async fn append(
        &self,
        soak_id: &str,
        rec: &CycleRecord,
        snap: &Snapshot,
    ) -> Result<(), StoreError> {
        let record = encode(rec)?;
        let body = encode(snap)?;
        let slim = match snap.elide_consumers() {
            Some(slim) => Some((ms(snap.taken_at), encode(&slim)?)),
            None => None,
        };
        let prev = self
            .slim_prev
            .lock()
            .map(|mut p| std::mem::replace(&mut *p, slim.clone()))
            .unwrap_or(None);
        let mut tx = self.pool.begin().await?;
        if let Some((at, slim_body)) = prev.filter(|(at, _)| *at != ms(snap.taken_at)) {
            sqlx::query("UPDATE snapshot SET body = ? WHERE soak_id = ? AND at_ms = ?")
                .bind(slim_body)
                .bind(soak_id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT OR REPLACE INTO cycle (soak_id, at_ms, record) VALUES (?, ?, ?)")
            .bind(soak_id)
            .bind(ms(rec.at))
            .bind(record)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT OR REPLACE INTO snapshot (soak_id, at_ms, body) VALUES (?, ?, ?)")
            .bind(soak_id)
            .bind(ms(snap.taken_at))
            .bind(body)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every cycle of a soak, oldest first.
    pub async fn cycles(&self, soak_id: &str) -> Result<Vec<CycleRecord>, StoreError> {
        let rows: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT record FROM cycle WHERE soak_id = ? ORDER BY at_ms")
                .bind(soak_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| decode(r)).collect()
    }

    /// Hands every cycle of a soak to `f`, oldest first, as it is read: a
    /// 48 h history is folded without being held whole.
    pub async fn for_each_cycle(
        &self,
        soak_id: &str,
        mut f: impl FnMut(CycleRecord),
    ) -> Result<(), StoreError> {
        use futures::TryStreamExt;
        let mut rows = sqlx::query_scalar::<_, Vec<u8>>(
            "SELECT record FROM cycle WHERE soak_id = ? ORDER BY at_ms",
        )
        .bind(soak_id)
        .fetch(&self.pool);
        while let Some(r) = rows.try_next().await? {
            f(decode(&r)?);
        }
        Ok(())
    }

    /// The newest snapshot of a soak.
    pub async fn last_snapshot(&self, soak_id: &str) -> Result<Option<Snapshot>, StoreError> {
        let row: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT body FROM snapshot WHERE soak_id = ? ORDER BY at_ms DESC LIMIT 1",
        )
        .bind(soak_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|b| decode(&b)).transpose()
    }

    /// The newest `n` snapshots, oldest first.
    pub async fn last_snapshots(&self, soak_id: &str, n: i64) -> Result<Vec<Snapshot>, StoreError> {
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT body FROM snapshot WHERE soak_id = ? ORDER BY at_ms DESC LIMIT ?",
        )
        .bind(soak_id)
        .bind(n)
        .fetch_all(&self.pool)
        .await?;
        let mut v: Vec<Snapshot> = rows.iter().map(|r| decode(r)).collect::<Result<_, _>>()?;
        v.reverse();
        Ok(v)
    }

    /// Every kept snapshot, oldest first (for replay).
    pub async fn snapshots(&self, soak_id: &str) -> Result<Vec<Snapshot>, StoreError> {
        let rows: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT body FROM snapshot WHERE soak_id = ? ORDER BY at_ms")
                .bind(soak_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| decode(r)).collect()
    }

    /// Labels of checkpoints already written.
    pub async fn checkpoints_done(&self, soak_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT label FROM checkpoint WHERE soak_id = ?")
                .bind(soak_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Records a written checkpoint so a restart does not write it again.
    pub async fn mark_checkpoint(
        &self,
        soak_id: &str,
        label: &str,
        path: &Path,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT OR REPLACE INTO checkpoint (soak_id, label, written_ms, path) VALUES (?, ?, ?, ?)")
            .bind(soak_id)
            .bind(label)
            .bind(ms(now))
            .bind(path.display().to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Bounds the database: snapshots older than `before` are kept one per
    /// `keep_every` (cycle records, which the soak verdict needs, are all kept).
    pub async fn thin(
        &self,
        soak_id: &str,
        before: DateTime<Utc>,
        keep_every: Duration,
    ) -> Result<u64, StoreError> {
        let bucket = (keep_every.as_millis() as i64).max(1);
        let res = sqlx::query(
            "DELETE FROM snapshot WHERE soak_id = ?1 AND at_ms < ?2 AND at_ms NOT IN \
             (SELECT min(at_ms) FROM snapshot WHERE soak_id = ?1 AND at_ms < ?2 GROUP BY at_ms / ?3)",
        )
        .bind(soak_id)
        .bind(ms(before))
        .bind(bucket)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected())
    }

    /// Alert tracking states of a soak (opaque to the store).
    pub async fn alert_states<T: serde::de::DeserializeOwned>(
        &self,
        soak_id: &str,
    ) -> Result<Vec<T>, StoreError> {
        let rows: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT body FROM alert_state WHERE soak_id = ?")
                .bind(soak_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| decode(r)).collect()
    }

    /// Saves alert states and enqueues notifications in one transaction, so a
    /// crash never records a state change without its notification (or the reverse).
    pub async fn commit_alerts<S: Serialize, N: Serialize>(
        &self,
        soak_id: &str,
        states: &[(String, S)],
        outbox: &[(String, String, N)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for (name, st) in states {
            sqlx::query(
                "INSERT OR REPLACE INTO alert_state (soak_id, name, body) VALUES (?, ?, ?)",
            )
            .bind(soak_id)
            .bind(name)
            .bind(encode(st)?)
            .execute(&mut *tx)
            .await?;
        }
        for (id, route, n) in outbox {
            sqlx::query(
                "INSERT OR IGNORE INTO outbox (id, route, soak_id, body, created_ms, next_ms) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(route)
            .bind(soak_id)
            .bind(encode(n)?)
            .bind(ms(now))
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Undelivered notifications due at `now`, oldest first.
    pub async fn due_outbox<N: serde::de::DeserializeOwned>(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxItem<N>>, StoreError> {
        self.due(None, now, limit).await
    }

    /// Undelivered notifications of `route` due at `now`, oldest first.
    pub async fn due_outbox_route<N: serde::de::DeserializeOwned>(
        &self,
        route: &str,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxItem<N>>, StoreError> {
        self.due(Some(route), now, limit).await
    }

    /// Undelivered notifications due at `now` (of one route, or all).
    async fn due<N: serde::de::DeserializeOwned>(
        &self,
        route: Option<&str>,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxItem<N>>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, route, body, attempts FROM outbox WHERE (? IS NULL OR route = ?) \
             AND delivered_ms IS NULL AND dead = 0 AND next_ms <= ? ORDER BY created_ms, id LIMIT ?",
        )
        .bind(route)
        .bind(route)
        .bind(ms(now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(OutboxItem {
                    id: r.get(0),
                    route: r.get(1),
                    body: decode(r.get::<&[u8], _>(2))?,
                    attempts: r.get(3),
                })
            })
            .collect()
    }

    /// Records a delivery outcome: delivered, retry later, or given up.
    pub async fn outbox_result(
        &self,
        id: &str,
        route: &str,
        outcome: OutboxOutcome,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let q = match &outcome {
            OutboxOutcome::Delivered => sqlx::query(
                "UPDATE outbox SET delivered_ms = ?3, attempts = attempts + 1, last_error = NULL WHERE id = ?1 AND route = ?2",
            )
            .bind(id)
            .bind(route)
            .bind(ms(now)),
            OutboxOutcome::Retry { next, error } => sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, next_ms = ?3, last_error = ?4 WHERE id = ?1 AND route = ?2",
            )
            .bind(id)
            .bind(route)
            .bind(ms(*next))
            .bind(error.clone()),
            OutboxOutcome::Dead { error } => sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, dead = 1, last_error = ?3 WHERE id = ?1 AND route = ?2",
            )
            .bind(id)
            .bind(route)
            .bind(error.clone()),
        };
        q.execute(&self.pool).await?;
        Ok(())
    }

    /// The outbox's notifications by where they stand.
    pub async fn outbox_counts(&self) -> Result<OutboxTally, StoreError> {
        let row = sqlx::query(
            "SELECT count(*) FILTER (WHERE delivered_ms IS NULL AND dead = 0), \
                    count(*) FILTER (WHERE delivered_ms IS NOT NULL), count(*) FILTER (WHERE dead = 1) FROM outbox",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(OutboxTally {
            pending: row.get(0),
            delivered: row.get(1),
            given_up: row.get(2),
        })
    }

    /// Takes the one-shot rollback latch of a soak. False when it was already
    /// taken (by this or an earlier process): the rollback never runs twice.
    pub async fn take_rollback_latch(
        &self,
        soak_id: &str,
        trigger: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "INSERT OR IGNORE INTO rollback (soak_id, state, trigger, started_ms) VALUES (?, 'started', ?, ?)",
        )
        .bind(soak_id)
        .bind(trigger)
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Saves the rollback's progress (steps so far) or its end.
    pub async fn save_rollback<T: Serialize>(
        &self,
        soak_id: &str,
        state: RollbackState,
        steps: &T,
        finished: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE rollback SET state = ?, steps = ?, finished_ms = ? WHERE soak_id = ?")
            .bind(state.as_str())
            .bind(encode(steps)?)
            .bind(finished.map(ms))
            .bind(soak_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The rollback record of a soak: (state, trigger, started, finished, steps).
    pub async fn rollback_record<T: serde::de::DeserializeOwned>(
        &self,
        soak_id: &str,
    ) -> Result<Option<RollbackRow<T>>, StoreError> {
        let row = sqlx::query(
            "SELECT state, trigger, started_ms, finished_ms, steps FROM rollback WHERE soak_id = ?",
        )
        .bind(soak_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let steps: Option<Vec<u8>> = r.get(4);
        let state: String = r.get(0);
        let state = RollbackState::parse(&state)
            .ok_or_else(|| StoreError::Decode(format!("unknown rollback state {state:?}")))?;
        Ok(Some(RollbackRow {
            state,
            trigger: r.get(1),
            started: DateTime::from_timestamp_millis(r.get(2)).unwrap_or_default(),
            finished: r
                .get::<Option<i64>, _>(3)
                .and_then(DateTime::from_timestamp_millis),
            steps: steps.map(|b| decode(&b)).transpose()?,
            holder: None,
            acting: None,
        }))
    }

    /// One writer by lock file: nothing to mark.
    pub async fn mark_acting(
        &self,
        _soak_id: &str,
        _step: usize,
        _rev: u64,
        _term_id: &str,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// Every outbox row of a soak as stored (for the migration).
    pub async fn outbox_rows(&self, soak_id: &str) -> Result<Vec<OutboxCopy>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, route, body, created_ms, attempts, next_ms, delivered_ms, dead, last_error \
             FROM outbox WHERE soak_id = ? ORDER BY created_ms, id",
        )
        .bind(soak_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| OutboxCopy {
                id: r.get(0),
                route: r.get(1),
                body: r.get(2),
                created_ms: r.get(3),
                attempts: r.get(4),
                next_ms: r.get(5),
                delivered_ms: r.get(6),
                dead: r.get::<i64, _>(7) != 0,
                last_error: r.get(8),
            })
            .collect())
    }

    /// (label, path) of every checkpoint written (for the migration).
    pub async fn checkpoint_rows(
        &self,
        soak_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query("SELECT label, path FROM checkpoint WHERE soak_id = ?")
            .bind(soak_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the database file and its WAL, bytes.
    pub fn size_bytes(&self) -> u64 {
        let main = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        let wal = std::fs::metadata(format!("{}-wal", self.path.display()))
            .map(|m| m.len())
            .unwrap_or(0);
        main + wal
    }

    /// `PRAGMA wal_checkpoint(TRUNCATE)`: the WAL into the database file and
    /// the WAL cut to zero bytes (see [`crate::state::store::Store::checkpoint_wal`]).
    /// Best effort: on a full disk it may not complete, and is tried again.
    /// It does not wait for a lock another process holds (the cycle must
    /// not stall behind it): busy is a failed attempt, retried next time.
    pub async fn checkpoint_wal(&self) {
        let result = async {
            let mut conn = self.pool.acquire().await?;
            sqlx::query("PRAGMA busy_timeout = 0")
                .execute(&mut *conn)
                .await?;
            let done = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut *conn)
                .await;
            sqlx::query("PRAGMA busy_timeout = 5000")
                .execute(&mut *conn)
                .await?;
            done.map(|_| ())
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "WAL checkpoint failed");
        }
    }

    /// Checkpoints the WAL into the main file and closes: a clean shutdown.
    pub async fn close(&self) {
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await;
        self.pool.close().await;
        if let Ok(mut l) = self.lock.lock() {
            l.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_rollback_state_stored_as_the_old_strings_still_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("state.db"))
            .await
            .expect("open");
        let now = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap_or_default();
        // The latch is written by SQL with the literal 'started'.
        assert!(store
            .take_rollback_latch("s1", "manual", now)
            .await
            .expect("latch"));
        let row = store
            .rollback_record::<Vec<u8>>("s1")
            .await
            .expect("read")
            .expect("a row");
        assert_eq!(row.state, RollbackState::Started);
        for (old, new) in [
            ("done", RollbackState::Done),
            ("failed", RollbackState::Failed),
            ("dry_run", RollbackState::DryRun),
            ("interrupted", RollbackState::Interrupted),
        ] {
            sqlx::query("UPDATE rollback SET state = ? WHERE soak_id = 's1'")
                .bind(old)
                .execute(&store.pool)
                .await
                .expect("update");
            let row = store
                .rollback_record::<Vec<u8>>("s1")
                .await
                .expect("read")
                .expect("a row");
            assert_eq!(row.state, new);
            // Written back as the same string.
            store
                .save_rollback("s1", new, &Vec::<u8>::new(), None)
                .await
                .expect("save");
            let (stored,): (String,) =
                sqlx::query_as("SELECT state FROM rollback WHERE soak_id = 's1'")
                    .fetch_one(&store.pool)
                    .await
                    .expect("select");
            assert_eq!(stored, old);
        }
        sqlx::query("UPDATE rollback SET state = 'running' WHERE soak_id = 's1'")
            .execute(&store.pool)
            .await
            .expect("update");
        assert!(store.rollback_record::<Vec<u8>>("s1").await.is_err());
        store.close().await;
    }
}
