//! A disposable replica of the Phase B staging topology (see
//! `PHASE_B_STAGING_RESULTS.md`), so soakwatch can be exercised end to end
//! against the real NATS JetStream and PostgreSQL servers without touching a
//! real deployment.
//!
//! Every name (streams, subjects, database) is derived from a short `tag`, so
//! replicas never collide with a real deployment or with each other.
//! [`provision`] replays the seed's cutover (legacy stream with 55 messages
//! migrated to `legacy.>`, the hot streams, the DLQ with one message, the
//! `normalize-hrv-durable` pull consumer and the Prisma-style `hrv_data`
//! table); [`teardown`] removes all of it again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// Number of messages the seed's legacy stream held at cutover.
pub const LEGACY_MESSAGE_COUNT: u64 = 55;
/// Approximate size in bytes of each legacy message payload (seed: 55 messages, 12102 bytes).
pub const LEGACY_MESSAGE_BYTES: usize = 220;
/// Number of messages the seed's DLQ stream held at cutover.
pub const DLQ_MESSAGE_COUNT: u64 = 1;
/// Max age of the hot streams, as in the seed (48h).
pub const HOT_STREAM_MAX_AGE: Duration = Duration::from_secs(48 * 3600);
/// Consumer max_deliver from the seed.
pub const CONSUMER_MAX_DELIVER: i64 = 5;
/// Consumer ack_wait from the seed (60s).
pub const CONSUMER_ACK_WAIT: Duration = Duration::from_secs(60);
/// Consumer max_ack_pending from the seed.
pub const CONSUMER_MAX_ACK_PENDING: i64 = 1000;
/// Longest accepted tag, so `soakwatch_<tag>` stays well inside PostgreSQL's 63-byte limit.
pub const MAX_TAG_LEN: usize = 32;

/// How long a single PostgreSQL connect may take during provision/teardown.
const DB_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors from provisioning, tearing down or publishing to a replica.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The tag is not 1..=32 characters of `[a-z0-9]`.
    #[error("invalid replica tag {0:?}: expected 1-{MAX_TAG_LEN} characters of [a-z0-9]")]
    InvalidTag(String),
    /// The admin database URL could not be used (the URL itself is not echoed: it may hold credentials).
    #[error("invalid database URL: {0}")]
    InvalidDatabaseUrl(String),
    /// `provision` found the replica's legacy stream already present; it refuses to replay the seed twice.
    #[error("replica {tag:?} is already provisioned (stream {stream} exists); tear it down first")]
    AlreadyProvisioned {
        /// Tag of the replica.
        tag: String,
        /// The stream that already exists.
        stream: String,
    },
    /// A NATS / JetStream operation failed.
    #[error("NATS: {op}: {source}")]
    Nats {
        /// What was being done.
        op: String,
        /// The underlying async-nats error.
        #[source]
        source: async_nats::Error,
    },
    /// A PostgreSQL operation failed.
    #[error("PostgreSQL: {op}: {source}")]
    Database {
        /// What was being done.
        op: String,
        /// The underlying sqlx error.
        #[source]
        source: sqlx::Error,
    },
    /// Connecting to PostgreSQL took too long.
    #[error("PostgreSQL: {op}: timed out after {timeout:?}")]
    DatabaseTimeout {
        /// What was being done.
        op: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// An event could not be serialized to JSON.
    #[error("serializing event: {0}")]
    Json(#[from] serde_json::Error),
}

impl ReplicaError {
    fn nats(op: impl Into<String>, source: impl Into<async_nats::Error>) -> Self {
        ReplicaError::Nats {
            op: op.into(),
            source: source.into(),
        }
    }

    fn db(op: impl Into<String>, source: sqlx::Error) -> Self {
        ReplicaError::Database {
            op: op.into(),
            source,
        }
    }
}

/// All names of one replica, derived from its tag, so a replica never collides with a
/// real deployment or a concurrently running test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaNames {
    /// The tag everything is derived from (lowercase `[a-z0-9]+`).
    pub tag: String,
    /// Replica of `ATHLETE_ALLY_EVENTS`: `SW_<TAG>_ATHLETE_ALLY_EVENTS`.
    pub legacy_stream: String,
    /// Replica of `AA_CORE_HOT`: `SW_<TAG>_AA_CORE_HOT`.
    pub core_stream: String,
    /// Replica of `AA_VENDOR_HOT`: `SW_<TAG>_AA_VENDOR_HOT`.
    pub vendor_stream: String,
    /// Replica of `AA_DLQ`: `SW_<TAG>_AA_DLQ`.
    pub dlq_stream: String,
    /// Durable consumer name; consumer names are per stream, so the seed's name is kept.
    pub durable: String,
    /// Post-migration subjects of the legacy stream: `sw.<tag>.legacy.>`.
    pub legacy_subjects: Vec<String>,
    /// Subjects of the core stream: `sw.<tag>.athlete-ally.>`, `sw.<tag>.sleep.*`.
    pub core_subjects: Vec<String>,
    /// Subjects of the vendor stream: `sw.<tag>.vendor.>`.
    pub vendor_subjects: Vec<String>,
    /// Subjects of the DLQ stream: `sw.<tag>.dlq.>`.
    pub dlq_subjects: Vec<String>,
    /// Subject HRV events are published on (the consumer's filter subject).
    pub hrv_subject: String,
    /// Subject failed HRV events are sent to.
    pub dlq_subject: String,
    /// PostgreSQL database of the replica: `soakwatch_<tag>`.
    pub database: String,
    /// Table the normalize stand-in upserts into: `hrv_data`.
    pub table: String,
}

/// Process-wide counter so two `ReplicaNames::random()` calls never return the same tag.
static RANDOM_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ReplicaNames {
    /// Derives all names from `tag`, which must be 1..=32 characters of `[a-z0-9]`.
    pub fn new(tag: &str) -> Result<Self, ReplicaError> {
        if tag.is_empty()
            || tag.len() > MAX_TAG_LEN
            || !tag
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(ReplicaError::InvalidTag(tag.to_string()));
        }
        Ok(Self::derive(tag))
    }

    /// Derives the names from an already validated tag.
    fn derive(tag: &str) -> Self {
        let upper = tag.to_ascii_uppercase();
        ReplicaNames {
            tag: tag.to_string(),
            legacy_stream: format!("SW_{upper}_ATHLETE_ALLY_EVENTS"),
            core_stream: format!("SW_{upper}_AA_CORE_HOT"),
            vendor_stream: format!("SW_{upper}_AA_VENDOR_HOT"),
            dlq_stream: format!("SW_{upper}_AA_DLQ"),
            durable: "normalize-hrv-durable".to_string(),
            legacy_subjects: vec![format!("sw.{tag}.legacy.>")],
            core_subjects: vec![
                format!("sw.{tag}.athlete-ally.>"),
                format!("sw.{tag}.sleep.*"),
            ],
            vendor_subjects: vec![format!("sw.{tag}.vendor.>")],
            dlq_subjects: vec![format!("sw.{tag}.dlq.>")],
            hrv_subject: format!("sw.{tag}.athlete-ally.hrv.raw-received"),
            dlq_subject: format!("sw.{tag}.dlq.normalize.hrv.raw-received"),
            database: format!("soakwatch_{tag}"),
            table: "hrv_data".to_string(),
        }
    }

    /// A fresh replica with an 8-character tag mixed from the clock, the process id and a
    /// counter, for tests and throwaway soak runs.
    pub fn random() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let count = RANDOM_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut x = nanos
            ^ (u64::from(std::process::id())).rotate_left(32)
            ^ count.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut tag = String::with_capacity(8);
        for _ in 0..8 {
            x = splitmix64(x);
            let digit = (x % 36) as u32;
            // `from_digit` with radix 36 and digit < 36 always succeeds.
            tag.push(char::from_digit(digit, 36).unwrap_or('x'));
        }
        // An 8-character [a-z0-9] tag is always valid.
        Self::derive(&tag)
    }

    /// Pre-migration subjects of the legacy stream (the seed's `athlete-ally.>, vendor.>, sleep.*`).
    pub fn legacy_premigration_subjects(&self) -> Vec<String> {
        let tag = &self.tag;
        vec![
            format!("sw.{tag}.athlete-ally.>"),
            format!("sw.{tag}.vendor.>"),
            format!("sw.{tag}.sleep.*"),
        ]
    }

    /// The four stream names, in the order they are provisioned.
    pub fn streams(&self) -> [&str; 4] {
        [
            &self.legacy_stream,
            &self.core_stream,
            &self.vendor_stream,
            &self.dlq_stream,
        ]
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub use crate::sql::quote_ident;

/// Database URL of the replica database, derived from an admin URL (replace the path with
/// names.database; keep credentials/host/params).
pub fn replica_database_url(admin_url: &str, names: &ReplicaNames) -> Result<String, ReplicaError> {
    let mut url = url::Url::parse(admin_url)
        .map_err(|e| ReplicaError::InvalidDatabaseUrl(format!("cannot parse: {e}")))?;
    match url.scheme() {
        "postgres" | "postgresql" => {}
        other => {
            return Err(ReplicaError::InvalidDatabaseUrl(format!(
                "scheme {other:?} is not postgres/postgresql"
            )))
        }
    }
    if url.cannot_be_a_base() {
        return Err(ReplicaError::InvalidDatabaseUrl(
            "URL has no path component".to_string(),
        ));
    }
    url.set_path(&format!("/{}", names.database));
    Ok(url.to_string())
}

pub use crate::rollback::round_trip::{HrvEvent, HrvPayload};

impl HrvEvent {
    /// A valid synthetic event: userId `sw-<tag>-user-<n>` is unique per `n`, so each one
    /// creates a new row; rMSSD is deterministic in `n` and lies in 20..120.
    pub fn synthetic(n: u64, tag: &str) -> Self {
        let now = Utc::now();
        let rmssd = 20.0 + (n.wrapping_mul(7919) % 1000) as f64 / 10.0;
        HrvEvent {
            event_id: format!("sw-{tag}-evt-{n}"),
            payload: HrvPayload {
                user_id: format!("sw-{tag}-user-{n}"),
                date: now.date_naive().format("%Y-%m-%d").to_string(),
                rmssd,
                captured_at: now.to_rfc3339_opts(SecondsFormat::Millis, true),
            },
        }
    }

    /// An event that fails validation (rMSSD = -1), so the normalize service sends it to the DLQ.
    pub fn poison(n: u64, tag: &str) -> Self {
        let now = Utc::now();
        HrvEvent {
            event_id: format!("sw-{tag}-poison-{n}"),
            payload: HrvPayload {
                user_id: format!("sw-{tag}-poison-user-{n}"),
                date: now.date_naive().format("%Y-%m-%d").to_string(),
                rmssd: -1.0,
                captured_at: now.to_rfc3339_opts(SecondsFormat::Millis, true),
            },
        }
    }
}

/// Publishes `event` as JSON to `subject` and waits for the JetStream ack; returns the
/// stream sequence it was stored at.
pub async fn publish_hrv(
    js: &jetstream::Context,
    subject: &str,
    event: &HrvEvent,
) -> Result<u64, ReplicaError> {
    let body = serde_json::to_vec(event)?;
    publish_acked(js, subject, body, None).await
}

async fn publish_acked(
    js: &jetstream::Context,
    subject: &str,
    body: Vec<u8>,
    headers: Option<async_nats::HeaderMap>,
) -> Result<u64, ReplicaError> {
    let op = || format!("publish to {subject}");
    let ack_future = match headers {
        Some(h) => js
            .publish_with_headers(subject.to_string(), h, body.into())
            .await
            .map_err(|e| ReplicaError::nats(op(), e))?,
        None => js
            .publish(subject.to_string(), body.into())
            .await
            .map_err(|e| ReplicaError::nats(op(), e))?,
    };
    let ack = ack_future
        .await
        .map_err(|e| ReplicaError::nats(format!("ack of publish to {subject}"), e))?;
    Ok(ack.sequence)
}

/// One legacy (pre-cutover) event, padded to about [`LEGACY_MESSAGE_BYTES`] bytes.
fn legacy_message(names: &ReplicaNames, n: u64) -> Result<(String, Vec<u8>), ReplicaError> {
    let tag = &names.tag;
    let (subject, event_type) = match n % 3 {
        0 => (
            format!("sw.{tag}.athlete-ally.hrv.raw-received"),
            "hrv.raw-received",
        ),
        1 => (
            format!("sw.{tag}.vendor.oura.webhook"),
            "vendor.oura.webhook",
        ),
        _ => (format!("sw.{tag}.sleep.raw-received"), "sleep.raw-received"),
    };
    let event = HrvEvent::synthetic(n, tag);
    let mut value = serde_json::json!({
        "eventId": format!("sw-{tag}-legacy-{n}"),
        "eventType": event_type,
        "payload": event.payload,
        "pad": "",
    });
    let len = serde_json::to_vec(&value)?.len();
    if len < LEGACY_MESSAGE_BYTES {
        value["pad"] = serde_json::Value::String("x".repeat(LEGACY_MESSAGE_BYTES - len));
    }
    Ok((subject, serde_json::to_vec(&value)?))
}

/// Whether a JetStream error is "stream not found" (code 10059).
fn is_stream_not_found(err: &jetstream::context::GetStreamError) -> bool {
    matches!(
        err.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(e)
            if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

async fn stream_exists(js: &jetstream::Context, name: &str) -> Result<bool, ReplicaError> {
    match js.get_stream(name).await {
        Ok(_) => Ok(true),
        Err(e) if is_stream_not_found(&e) => Ok(false),
        Err(e) => Err(ReplicaError::nats(format!("look up stream {name}"), e)),
    }
}

fn stream_config(name: &str, subjects: Vec<String>, max_age: Duration) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects,
        storage: stream::StorageType::File,
        num_replicas: 1,
        max_age,
        ..Default::default()
    }
}

async fn create_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<(), ReplicaError> {
    let name = config.name.clone();
    js.create_stream(config)
        .await
        .map_err(|e| ReplicaError::nats(format!("create stream {name}"), e))?;
    Ok(())
}

/// The consumer configuration of the seed's `normalize-hrv-durable`, for this replica.
pub fn consumer_config(names: &ReplicaNames) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(names.durable.clone()),
        filter_subject: names.hrv_subject.clone(),
        deliver_policy: consumer::DeliverPolicy::All,
        ack_policy: consumer::AckPolicy::Explicit,
        max_deliver: CONSUMER_MAX_DELIVER,
        ack_wait: CONSUMER_ACK_WAIT,
        max_ack_pending: CONSUMER_MAX_ACK_PENDING,
        ..Default::default()
    }
}

async fn connect_db(url: &str, what: &str) -> Result<PgConnection, ReplicaError> {
    let op = format!("connect to {what}");
    match tokio::time::timeout(DB_CONNECT_TIMEOUT, PgConnection::connect(url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(ReplicaError::db(op, e)),
        Err(_) => Err(ReplicaError::DatabaseTimeout {
            op,
            timeout: DB_CONNECT_TIMEOUT,
        }),
    }
}

/// The DDL of the replica table (Prisma-style: timestamps without time zone holding UTC).
pub fn table_ddl(table: &str) -> Vec<String> {
    let t = quote_ident(table);
    let created_idx = quote_ident(&format!("{table}_createdAt_idx"));
    let updated_idx = quote_ident(&format!("{table}_updatedAt_idx"));
    vec![
        format!(
            r#"CREATE TABLE IF NOT EXISTS {t} (
  id BIGSERIAL PRIMARY KEY,
  "userId" TEXT NOT NULL,
  date DATE NOT NULL,
  rmssd DOUBLE PRECISION NOT NULL,
  "lnRmssd" DOUBLE PRECISION,
  "capturedAt" TIMESTAMP(3),
  "createdAt" TIMESTAMP(3) NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
  "updatedAt" TIMESTAMP(3) NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
  UNIQUE ("userId", date))"#
        ),
        format!(r#"CREATE INDEX IF NOT EXISTS {created_idx} ON {t} ("createdAt")"#),
        format!(r#"CREATE INDEX IF NOT EXISTS {updated_idx} ON {t} ("updatedAt")"#),
    ]
}

async fn provision_database(admin_url: &str, names: &ReplicaNames) -> Result<(), ReplicaError> {
    let replica_url = replica_database_url(admin_url, names)?;
    let mut admin = connect_db(admin_url, "admin database").await?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&names.database)
        .fetch_optional(&mut admin)
        .await
        .map_err(|e| ReplicaError::db("look up replica database", e))?;
    if exists.is_none() {
        let sql = format!("CREATE DATABASE {}", quote_ident(&names.database));
        if let Err(e) = sqlx::query(AssertSqlSafe(sql)).execute(&mut admin).await {
            // 42P04 duplicate_database: created concurrently, which is fine.
            let duplicate = e
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|c| c == "42P04");
            if !duplicate {
                return Err(ReplicaError::db(
                    format!("create database {}", names.database),
                    e,
                ));
            }
        }
    }
    let _ = admin.close().await;

    let mut conn = connect_db(&replica_url, "replica database").await?;
    for stmt in table_ddl(&names.table) {
        sqlx::query(AssertSqlSafe(stmt))
            .execute(&mut conn)
            .await
            .map_err(|e| ReplicaError::db(format!("create table {}", names.table), e))?;
    }
    let _ = conn.close().await;
    Ok(())
}

/// Replays the seed's cutover for this replica: legacy stream with 55 messages migrated to
/// `legacy.>`, hot core/vendor streams, the DLQ with one message, the durable pull consumer
/// on the core stream, and the replica database with its `hrv_data` table.
pub async fn provision(
    nats: &async_nats::Client,
    admin_database_url: &str,
    names: &ReplicaNames,
) -> Result<(), ReplicaError> {
    // Validate the URL before touching NATS, so a typo does not leave half a replica behind.
    replica_database_url(admin_database_url, names)?;
    let js = jetstream::new(nats.clone());

    if stream_exists(&js, &names.legacy_stream).await? {
        return Err(ReplicaError::AlreadyProvisioned {
            tag: names.tag.clone(),
            stream: names.legacy_stream.clone(),
        });
    }

    // (1) Legacy stream with its pre-migration subjects, 55 messages, then migrate-subjects.
    let mut legacy = stream_config(
        &names.legacy_stream,
        names.legacy_premigration_subjects(),
        Duration::ZERO,
    );
    create_stream(&js, legacy.clone()).await?;
    for n in 1..=LEGACY_MESSAGE_COUNT {
        let (subject, body) = legacy_message(names, n)?;
        publish_acked(&js, &subject, body, None).await?;
    }
    legacy.subjects = names.legacy_subjects.clone();
    js.update_stream(legacy).await.map_err(|e| {
        ReplicaError::nats(format!("migrate subjects of {}", names.legacy_stream), e)
    })?;

    // (2) Hot streams.
    create_stream(
        &js,
        stream_config(
            &names.core_stream,
            names.core_subjects.clone(),
            HOT_STREAM_MAX_AGE,
        ),
    )
    .await?;
    create_stream(
        &js,
        stream_config(
            &names.vendor_stream,
            names.vendor_subjects.clone(),
            HOT_STREAM_MAX_AGE,
        ),
    )
    .await?;

    // (3) DLQ with the one message left over from Phase 0.
    create_stream(
        &js,
        stream_config(
            &names.dlq_stream,
            names.dlq_subjects.clone(),
            Duration::ZERO,
        ),
    )
    .await?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-DLQ-Reason", "phase-0 leftover: rMSSD must be > 0");
    let leftover = serde_json::to_vec(&HrvEvent::poison(0, &names.tag))?;
    publish_acked(&js, &names.dlq_subject, leftover, Some(headers)).await?;

    // (4) The durable pull consumer on the core stream.
    js.create_consumer_on_stream(consumer_config(names), names.core_stream.as_str())
        .await
        .map_err(|e| {
            ReplicaError::nats(
                format!("create consumer {} on {}", names.durable, names.core_stream),
                e,
            )
        })?;

    // (5) Database and table.
    provision_database(admin_database_url, names).await
}

/// Removes everything [`provision`] created: the four streams (with their consumers) and the
/// replica database. Idempotent: missing pieces are fine.
pub async fn teardown(
    nats: &async_nats::Client,
    admin_database_url: &str,
    names: &ReplicaNames,
) -> Result<(), ReplicaError> {
    let js = jetstream::new(nats.clone());
    let mut first_err: Option<ReplicaError> = None;
    for name in names.streams() {
        match js.delete_stream(name).await {
            Ok(_) => {}
            Err(e) if is_stream_not_found(&e) => {}
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(ReplicaError::nats(format!("delete stream {name}"), e));
                }
            }
        }
    }

    let db_result = async {
        let mut admin = connect_db(admin_database_url, "admin database").await?;
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&names.database)
        );
        sqlx::query(AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .map_err(|e| ReplicaError::db(format!("drop database {}", names.database), e))?;
        let _ = admin.close().await;
        Ok::<(), ReplicaError>(())
    }
    .await;

    match (first_err, db_result) {
        (Some(e), _) => Err(e),
        (None, r) => r,
    }
}

#[cfg(test)]
mod tests {
    //! Pure unit tests; provisioning against real NATS and PostgreSQL is
    //! tested in `tests/e2e/testkit.rs`, so `cargo test --lib` needs no server.
    use super::*;

    #[test]
    fn names_are_derived_from_the_tag() {
        let n = ReplicaNames::new("ab12cd34").expect("valid tag");
        assert_eq!(n.legacy_stream, "SW_AB12CD34_ATHLETE_ALLY_EVENTS");
        assert_eq!(n.core_stream, "SW_AB12CD34_AA_CORE_HOT");
        assert_eq!(n.vendor_stream, "SW_AB12CD34_AA_VENDOR_HOT");
        assert_eq!(n.dlq_stream, "SW_AB12CD34_AA_DLQ");
        assert_eq!(n.durable, "normalize-hrv-durable");
        assert_eq!(n.legacy_subjects, vec!["sw.ab12cd34.legacy.>"]);
        assert_eq!(
            n.core_subjects,
            vec!["sw.ab12cd34.athlete-ally.>", "sw.ab12cd34.sleep.*"]
        );
        assert_eq!(n.vendor_subjects, vec!["sw.ab12cd34.vendor.>"]);
        assert_eq!(n.dlq_subjects, vec!["sw.ab12cd34.dlq.>"]);
        assert_eq!(n.hrv_subject, "sw.ab12cd34.athlete-ally.hrv.raw-received");
        assert_eq!(n.dlq_subject, "sw.ab12cd34.dlq.normalize.hrv.raw-received");
        assert_eq!(n.database, "soakwatch_ab12cd34");
        assert_eq!(n.table, "hrv_data");
        let json = serde_json::to_string(&n).expect("serialize");
        let back: ReplicaNames = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, n);
    }

    #[test]
    fn bad_tags_are_rejected() {
        for bad in [
            "",
            "ABC",
            "a-b",
            "a.b",
            "a b",
            "ä",
            &"a".repeat(MAX_TAG_LEN + 1),
        ] {
            assert!(
                matches!(ReplicaNames::new(bad), Err(ReplicaError::InvalidTag(_))),
                "{bad:?} accepted"
            );
        }
        assert!(ReplicaNames::new(&"a".repeat(MAX_TAG_LEN)).is_ok());
    }

    #[test]
    fn random_tags_are_valid_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let n = ReplicaNames::random();
            assert_eq!(n.tag.len(), 8);
            assert!(ReplicaNames::new(&n.tag).is_ok());
            assert!(seen.insert(n.tag), "duplicate random tag");
        }
    }

    #[test]
    fn replica_url_keeps_credentials_host_and_params() {
        let n = ReplicaNames::new("t1").expect("valid tag");
        assert_eq!(
            replica_database_url("postgres://postgres@127.0.0.1:5432/postgres", &n).expect("url"),
            "postgres://postgres@127.0.0.1:5432/soakwatch_t1"
        );
        assert_eq!(
            replica_database_url(
                "postgresql://u:p%40ss@db.example:6543/admin?sslmode=disable&application_name=x",
                &n
            )
            .expect("url"),
            "postgresql://u:p%40ss@db.example:6543/soakwatch_t1?sslmode=disable&application_name=x"
        );
        assert_eq!(
            replica_database_url("postgres://localhost", &n).expect("url"),
            "postgres://localhost/soakwatch_t1"
        );
        let err = replica_database_url("mysql://u:secret@h/db", &n).expect_err("scheme");
        assert!(!err.to_string().contains("secret"));
        assert!(replica_database_url("not a url", &n).is_err());
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("hrv_data"), "\"hrv_data\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn events_have_the_seed_shape() {
        let e = HrvEvent::synthetic(7, "abc");
        let v: serde_json::Value = serde_json::to_value(&e).expect("json");
        assert_eq!(v["eventId"], "sw-abc-evt-7");
        assert_eq!(v["payload"]["userId"], "sw-abc-user-7");
        let r = v["payload"]["rMSSD"].as_f64().expect("rMSSD");
        assert!((20.0..120.0).contains(&r));
        assert!(chrono::NaiveDate::parse_from_str(&e.payload.date, "%Y-%m-%d").is_ok());
        assert!(chrono::DateTime::parse_from_rfc3339(&e.payload.captured_at).is_ok());
        for n in 0..2000 {
            let r = HrvEvent::synthetic(n, "abc").payload.rmssd;
            assert!((20.0..120.0).contains(&r), "{r}");
        }
        assert_eq!(HrvEvent::poison(1, "abc").payload.rmssd, -1.0);
        let names = ReplicaNames::new("abcdefgh").expect("tag");
        for n in 1..=LEGACY_MESSAGE_COUNT {
            let (subject, body) = legacy_message(&names, n).expect("legacy");
            assert!(subject.starts_with("sw.abcdefgh."));
            assert_eq!(body.len(), LEGACY_MESSAGE_BYTES);
        }
    }
}
