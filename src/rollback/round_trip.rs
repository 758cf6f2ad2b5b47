//! The round-trip probe (the product's "E2E probe" in its output and
//! config): one synthetic HRV event in, one database row out. Named for
//! what it does, so it is never confused with the test suite (`tests/e2e`).
//!
//! The seed's last rollback step ("E2E test: POST /ingest/hrv → DB row
//! appears") proves the service really consumes and writes after a restart,
//! which log lines alone cannot. [`run_round_trip`] publishes an event shaped like
//! [`HrvEvent`] to the service's subject through JetStream
//! (waiting for the stream's ack, so "not stored" and "not processed" are told
//! apart), then polls the service's table for the row and checks the derived
//! column (`lnRmssd = ln(rmssd)`). The user id carries a fixed prefix
//! (`soakwatch-e2e-`), so test rows are recognisable and [`cleanup_round_trip_rows`]
//! can delete exactly them. `soakwatch e2e` runs it alone.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection};

use crate::secret::redact_url;

/// An HRV event as the ingest service publishes it (the E2E probe's payload) on `athlete-ally.hrv.raw-received`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HrvEvent {
    /// Unique event id.
    #[serde(rename = "eventId")]
    pub event_id: String,
    /// The HRV reading.
    pub payload: HrvPayload,
}

/// The HRV reading inside an [`HrvEvent`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HrvPayload {
    /// User the reading belongs to.
    #[serde(rename = "userId")]
    pub user_id: String,
    /// Day of the reading, `YYYY-MM-DD`.
    pub date: String,
    /// RMSSD in milliseconds; must be finite and > 0.
    #[serde(rename = "rMSSD")]
    pub rmssd: f64,
    /// When the reading was captured (RFC 3339).
    #[serde(rename = "capturedAt")]
    pub captured_at: String,
}

/// The rMSSD of the synthetic event (ms); any positive value works, this one is typical.
pub const E2E_RMSSD: f64 = 62.0;
/// How often the table is polled for the row.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// How close the derived column must be to ln(value).
const DERIVED_TOLERANCE: f64 = 1e-9;

/// Where the probe publishes and where it expects the row.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundTripConfig {
    /// NATS server (a token or password in it is never shown).
    pub nats_url: String,
    /// Subject the service consumes (through a stream, since the publish waits for its ack).
    pub subject: String,
    /// The service's database (never shown unredacted).
    pub database_url: String,
    /// The service's table (`schema.table` allowed; each part is quoted).
    pub table: String,
    /// Column holding the user id (default `userId`).
    #[serde(default = "default_user_column")]
    pub user_column: String,
    /// Column holding rMSSD (default `rmssd`).
    #[serde(default = "default_value_column")]
    pub value_column: String,
    /// Column holding ln(value) (default `lnRmssd`); empty: the service
    /// derives nothing and only the value is checked.
    #[serde(default = "default_derived_column")]
    pub derived_column: String,
    /// The message to publish, as a JSON template for a service that does
    /// not take the HRV event: `{event_id}`, `{user_id}`, `{date}`,
    /// `{captured_at}` and `{value}` are replaced (each JSON-escaped), and
    /// the result must be JSON. Absent: the HRV event of the ingest service.
    #[serde(default)]
    pub payload: Option<String>,
    /// Longest to wait for the row after the publish (default 30s); also bounds each connect.
    #[serde(default = "default_timeout", with = "crate::duration::bounded")]
    pub timeout: Duration,
    /// Prefix of the synthetic user ids (default `soakwatch-e2e-`), so test rows can be found and removed.
    #[serde(default = "default_user_prefix")]
    pub user_prefix: String,
    /// Run the probe this often from `watch` as well (None: only in the
    /// rollback and `soakwatch e2e`). Each periodic run removes its rows.
    #[serde(default, with = "crate::duration::bounded")]
    pub every: Option<Duration>,
}

fn default_user_column() -> String {
    "userId".to_string()
}
fn default_value_column() -> String {
    "rmssd".to_string()
}
fn default_derived_column() -> String {
    "lnRmssd".to_string()
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_user_prefix() -> String {
    "soakwatch-e2e-".to_string()
}

impl std::fmt::Debug for RoundTripConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoundTripConfig")
            .field("nats_url", &redact_url(&self.nats_url))
            .field("subject", &self.subject)
            .field("database_url", &redact_url(&self.database_url))
            .field("table", &self.table)
            .field("user_column", &self.user_column)
            .field("value_column", &self.value_column)
            .field("derived_column", &self.derived_column)
            .field("timeout", &self.timeout)
            .field("user_prefix", &self.user_prefix)
            .finish()
    }
}

impl RoundTripConfig {
    /// A config with the default columns, prefix and a 30 s timeout.
    pub fn new(nats_url: &str, subject: &str, database_url: &str, table: &str) -> Self {
        RoundTripConfig {
            nats_url: nats_url.to_string(),
            subject: subject.to_string(),
            database_url: database_url.to_string(),
            table: table.to_string(),
            user_column: default_user_column(),
            value_column: default_value_column(),
            derived_column: default_derived_column(),
            payload: None,
            timeout: default_timeout(),
            user_prefix: default_user_prefix(),
            every: None,
        }
    }

    /// Problems known without connecting, one line each (`field: message`).
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (field, v) in [
            ("nats_url", &self.nats_url),
            ("subject", &self.subject),
            ("database_url", &self.database_url),
            ("table", &self.table),
            ("user_column", &self.user_column),
            ("value_column", &self.value_column),
        ] {
            if v.trim().is_empty() {
                p.push(format!("{field}: must not be empty"));
            }
        }
        if self.subject.contains(['*', '>', ' ']) {
            p.push("subject: must be a concrete subject (no wildcards or spaces)".to_string());
        }
        if self.table.split('.').any(str::is_empty) {
            p.push("table: empty name part".to_string());
        }
        if self.user_prefix.is_empty() {
            p.push(
                "user_prefix: must not be empty (it is what makes test rows removable)".to_string(),
            );
        }
        if self.user_prefix.contains(['%', '_', '\\']) {
            p.push("user_prefix: must not contain LIKE wildcards (%, _, \\)".to_string());
        }
        if self.timeout.is_zero() {
            p.push("timeout: must be > 0".to_string());
        }
        if let Some(t) = &self.payload {
            let sample =
                fill_template(t, "e", "u", "2026-01-01", "2026-01-01T00:00:00Z", E2E_RMSSD);
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&sample) {
                p.push(format!("payload: not JSON once filled in: {e}"));
            }
            if !t.contains("{user_id}") {
                p.push("payload: must contain {user_id} (the row is found by it)".to_string());
            }
        }
        if PgConnectOptions::from_str(&self.database_url).is_err() {
            p.push(format!(
                "database_url: {} is not a PostgreSQL URL",
                redact_url(&self.database_url)
            ));
        }
        p
    }

    /// The plan line of the probe (URLs redacted).
    pub fn describe(&self) -> String {
        let derived = if self.derived_column.is_empty() {
            format!(" = {E2E_RMSSD}")
        } else {
            format!(
                " and {} = ln(it) within {DERIVED_TOLERANCE:e}",
                quote_ident(&self.derived_column)
            )
        };
        format!(
            "publish one {} (value {E2E_RMSSD}, user {}<ts>-<pid>-<n>) to {} on {} and wait for the JetStream ack; \
             then expect a row in {} ({} = that user) on {} within {}, with {}{derived}",
            if self.payload.is_some() { "message from the payload template" } else { "HRV event (the default payload)" },
            self.user_prefix,
            self.subject,
            redact_url(&self.nats_url),
            quote_table(&self.table),
            quote_ident(&self.user_column),
            redact_url(&self.database_url),
            humantime::format_duration(self.timeout),
            quote_ident(&self.value_column),
        )
    }

    /// Removes the URLs and the database password from a message, in case a
    /// client library ever echoes them.
    fn scrub(&self, msg: &str) -> String {
        let mut s = msg.to_string();
        for url in [&self.database_url, &self.nats_url] {
            if !url.is_empty() && s.contains(url.as_str()) {
                s = s.replace(url.as_str(), &redact_url(url));
            }
            if let Ok(u) = url::Url::parse(url) {
                if let Some(pw) = u.password().filter(|p| p.len() >= 4) {
                    s = s.replace(pw, "***");
                }
            }
        }
        super::redact_urls(&s)
    }
}

/// Errors of [`cleanup_round_trip_rows`] (and the probe's own steps); messages never hold the URL.
#[derive(Debug, thiserror::Error)]
pub enum RoundTripError {
    /// The database URL does not parse.
    #[error("database URL {0} is not a PostgreSQL URL")]
    DatabaseUrl(String),
    /// The prefix is empty or has LIKE wildcards, which could delete real rows.
    #[error("refusing user prefix {0:?}: it must be non-empty and free of %, _ and \\")]
    Prefix(String),
    /// A database operation failed.
    #[error("database {op}: {message}")]
    Database {
        /// What was being done.
        op: &'static str,
        /// The error, without the URL.
        message: String,
    },
    /// A database operation took too long.
    #[error("database {op}: no answer within {after}")]
    Timeout {
        /// What was being done.
        op: &'static str,
        /// The timeout.
        after: String,
    },
}

/// What the probe saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundTripResult {
    /// Id of the published event.
    pub event_id: String,
    /// The synthetic user (prefix + unique part).
    pub user_id: String,
    /// rMSSD published.
    pub rmssd: f64,
    /// From the publish until the row was seen (or the time spent, when it was not).
    pub latency_ms: u64,
    /// The derived column as stored (None: no row, or NULL).
    pub ln_rmssd: Option<f64>,
    /// Row seen with the right value and derived value.
    pub ok: bool,
    /// Why not ok, or what was verified.
    pub reason: String,
    /// The configured user, value and derived columns, so the result speaks
    /// of the service's own names (empty in records made before they were kept).
    #[serde(default)]
    pub columns: RoundTripColumns,
}

/// The column names a result is told in (`[rollback.e2e]` user_column,
/// value_column, derived_column).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundTripColumns {
    /// Column of the synthetic user.
    pub user: String,
    /// Column of the published value.
    pub value: String,
    /// Column derived from the value ("" when none is checked).
    pub derived: String,
}

impl RoundTripColumns {
    fn of(cfg: &RoundTripConfig) -> RoundTripColumns {
        RoundTripColumns {
            user: cfg.user_column.clone(),
            value: cfg.value_column.clone(),
            derived: cfg.derived_column.clone(),
        }
    }
}

impl RoundTripResult {
    /// One line for a step record.
    pub fn summary(&self) -> String {
        let named = |c: &str, fallback: &'static str| {
            if c.is_empty() {
                fallback.to_string()
            } else {
                c.to_string()
            }
        };
        let c = &self.columns;
        format!(
            "{}: message {} ({} {}, {} {}), latency {} ms{}",
            self.reason,
            self.event_id,
            named(&c.user, "user"),
            self.user_id,
            named(&c.value, "value"),
            self.rmssd,
            self.latency_ms,
            match self.ln_rmssd {
                Some(v) => format!(", {} {v}", named(&c.derived, "derived")),
                None => String::new(),
            }
        )
    }
}

/// Process-wide counter for unique ids.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique suffix from the clock, the process id and a counter (no uuid crate here).
fn unique_suffix() -> String {
    let ms = Utc::now().timestamp_millis();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{ms}-{}-{n}", std::process::id())
}

use crate::sql::{quote_ident, quote_table};

/// Describes a sqlx error in one line, without connection details.
fn describe_db(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} ({code})", db.message()),
            None => db.message().to_string(),
        },
        other => other.to_string(),
    }
}

async fn connect_db(url: &str, timeout: Duration) -> Result<PgConnection, RoundTripError> {
    let opts = PgConnectOptions::from_str(url)
        .map_err(|_| RoundTripError::DatabaseUrl(redact_url(url)))?
        .application_name("soakwatch-e2e")
        .options([("statement_timeout", timeout.as_millis().max(1).to_string())]);
    match tokio::time::timeout(timeout, PgConnection::connect_with(&opts)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(RoundTripError::Database {
            op: "connect",
            message: describe_db(&e),
        }),
        Err(_) => Err(RoundTripError::Timeout {
            op: "connect",
            after: humantime::format_duration(timeout).to_string(),
        }),
    }
}

/// Publishes a synthetic HRV event and waits for its row; never panics and
/// never returns an error: every failure is an `ok: false` result with a
/// one-line reason (connecting to NATS with the URL alone; see
/// [`run_round_trip_with`] for a caller-built client with auth/TLS).
pub async fn run_round_trip(cfg: &RoundTripConfig) -> RoundTripResult {
    let suffix = unique_suffix();
    let connect = async_nats::ConnectOptions::new()
        .name("soakwatch-e2e")
        .connection_timeout(cfg.timeout)
        .connect(cfg.nats_url.as_str());
    let client = match tokio::time::timeout(cfg.timeout + Duration::from_secs(1), connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return not_run(
                cfg,
                &suffix,
                format!("cannot connect to NATS {}: {e}", redact_url(&cfg.nats_url)),
            )
        }
        Err(_) => {
            return not_run(
                cfg,
                &suffix,
                format!(
                    "cannot connect to NATS {}: no answer within {}",
                    redact_url(&cfg.nats_url),
                    humantime::format_duration(cfg.timeout)
                ),
            )
        }
    };
    let js = jetstream::new(client.clone());
    let result = probe(&js, cfg, &suffix).await;
    let _ = client.drain().await;
    result
}

/// Like [`run_round_trip`], on a JetStream context the caller connected (so the
/// config's NATS auth, TLS and credentials files apply); `cfg.nats_url` is
/// then only shown.
pub async fn run_round_trip_with(
    js: &jetstream::Context,
    cfg: &RoundTripConfig,
) -> RoundTripResult {
    probe(js, cfg, &unique_suffix()).await
}

/// A result for a probe that published nothing.
fn not_run(cfg: &RoundTripConfig, suffix: &str, reason: String) -> RoundTripResult {
    RoundTripResult {
        event_id: format!("soakwatch-e2e-{suffix}"),
        user_id: format!("{}{suffix}", cfg.user_prefix),
        rmssd: E2E_RMSSD,
        latency_ms: 0,
        ln_rmssd: None,
        ok: false,
        reason: cfg.scrub(&reason),
        columns: RoundTripColumns::of(cfg),
    }
}

async fn probe(js: &jetstream::Context, cfg: &RoundTripConfig, suffix: &str) -> RoundTripResult {
    let problems = cfg.validate();
    if !problems.is_empty() {
        return not_run(
            cfg,
            suffix,
            format!("invalid e2e config: {}", problems.join("; ")),
        );
    }
    // The database first: publishing an event nobody can check would only leave a stray row.
    let mut db = match connect_db(&cfg.database_url, cfg.timeout).await {
        Ok(c) => c,
        Err(e) => return not_run(cfg, suffix, format!("nothing published: {e}")),
    };
    let result = publish_and_wait(js, &mut db, cfg, suffix).await;
    let _ = db.close().await;
    result
}

/// Publishes one event and waits until its row is in the table, judging it.
async fn publish_and_wait(
    js: &jetstream::Context,
    db: &mut PgConnection,
    cfg: &RoundTripConfig,
    suffix: &str,
) -> RoundTripResult {
    let now = Utc::now();
    let event = HrvEvent {
        event_id: format!("soakwatch-e2e-{suffix}"),
        payload: HrvPayload {
            user_id: format!("{}{suffix}", cfg.user_prefix),
            date: now.date_naive().format("%Y-%m-%d").to_string(),
            rmssd: E2E_RMSSD,
            captured_at: now.to_rfc3339_opts(SecondsFormat::Millis, true),
        },
    };
    let mut res = RoundTripResult {
        event_id: event.event_id.clone(),
        user_id: event.payload.user_id.clone(),
        rmssd: E2E_RMSSD,
        latency_ms: 0,
        ln_rmssd: None,
        ok: false,
        reason: String::new(),
        columns: RoundTripColumns::of(cfg),
    };
    let body = match &cfg.payload {
        Some(t) => fill_template(
            t,
            &event.event_id,
            &event.payload.user_id,
            &event.payload.date,
            &event.payload.captured_at,
            E2E_RMSSD,
        )
        .into_bytes(),
        None => match serde_json::to_vec(&event) {
            Ok(b) => b,
            Err(e) => return failed(cfg, res, format!("cannot serialize the event: {e}")),
        },
    };
    let t0 = Instant::now();
    let elapsed_ms = |t0: Instant| u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
    let stream = match publish_event(js, cfg, body).await {
        Ok(stream) => stream,
        Err(e) => return failed(cfg, res, e.to_string()),
    };
    let row = wait_for_row(db, cfg, &res.user_id, t0 + cfg.timeout).await;
    res.latency_ms = elapsed_ms(t0);
    match row {
        Ok(Some((value, derived))) => judge_row(cfg, res, value, derived, &stream),
        Ok(None) => failed(
            cfg,
            res,
            format!(
                "no row within {} (event stored by stream {stream}, not processed into {})",
                humantime::format_duration(cfg.timeout),
                cfg.table
            ),
        ),
        Err(e) => failed(cfg, res, e.to_string()),
    }
}

/// Why the round trip broke off before judging a row (one line, shown in
/// the step's output and the probe's evidence after scrubbing).
#[derive(Debug, thiserror::Error)]
enum TripBroken {
    #[error("publish to {subject} was not stored by JetStream: {detail}")]
    NotStored { subject: String, detail: String },
    #[error("publish to {subject}: no JetStream ack within {after}")]
    NoAck { subject: String, after: String },
    #[error("query of {table}: {detail}")]
    Query { table: String, detail: String },
}

/// `res` failed for `reason` (scrubbed of the config's secrets).
fn failed(cfg: &RoundTripConfig, mut res: RoundTripResult, reason: String) -> RoundTripResult {
    res.reason = cfg.scrub(&reason);
    res
}

/// Publishes `body` to the e2e subject; the stream that stored it, once
/// JetStream acknowledged it within the timeout.
async fn publish_event(
    js: &jetstream::Context,
    cfg: &RoundTripConfig,
    body: Vec<u8>,
) -> Result<String, TripBroken> {
    let publish = async {
        let ack = js
            .publish(cfg.subject.clone(), body.into())
            .await
            .map_err(|e| e.to_string())?;
        ack.await.map(|a| a.stream).map_err(|e| e.to_string())
    };
    match tokio::time::timeout(cfg.timeout, publish).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(detail)) => Err(TripBroken::NotStored {
            subject: cfg.subject.clone(),
            detail,
        }),
        Err(_) => Err(TripBroken::NoAck {
            subject: cfg.subject.clone(),
            after: humantime::format_duration(cfg.timeout).to_string(),
        }),
    }
}

/// Polls the table for the user's row until `deadline`: its (value, derived)
/// columns, `None` when it did not appear in time.
async fn wait_for_row(
    db: &mut PgConnection,
    cfg: &RoundTripConfig,
    user_id: &str,
    deadline: Instant,
) -> Result<Option<(Option<f64>, Option<f64>)>, TripBroken> {
    let derived = if cfg.derived_column.is_empty() {
        "NULL".to_string()
    } else {
        quote_ident(&cfg.derived_column)
    };
    let sql = format!(
        "SELECT {v}::float8, {d}::float8 FROM {t} WHERE {u} = $1 LIMIT 1",
        v = quote_ident(&cfg.value_column),
        d = derived,
        t = quote_table(&cfg.table),
        u = quote_ident(&cfg.user_column),
    );
    loop {
        let q = sqlx::query_as::<_, (Option<f64>, Option<f64>)>(AssertSqlSafe(sql.clone()))
            .bind(user_id)
            .fetch_optional(&mut *db);
        let remaining = deadline.saturating_duration_since(Instant::now());
        let row = match tokio::time::timeout(remaining.max(POLL_EVERY), q).await {
            Ok(Ok(row)) => row,
            Ok(Err(e)) => {
                return Err(TripBroken::Query {
                    table: quote_table(&cfg.table),
                    detail: describe_db(&e),
                })
            }
            Err(_) => None,
        };
        if row.is_some() {
            return Ok(row);
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(POLL_EVERY.min(deadline.saturating_duration_since(Instant::now())))
            .await;
    }
}

/// The row's value must be what was published and its derived column ln(value).
fn judge_row(
    cfg: &RoundTripConfig,
    mut res: RoundTripResult,
    value: Option<f64>,
    derived: Option<f64>,
    stream: &str,
) -> RoundTripResult {
    res.ln_rmssd = derived;
    let want = E2E_RMSSD.ln();
    match (value, derived) {
        (Some(v), _) if (v - E2E_RMSSD).abs() > DERIVED_TOLERANCE => failed(
            cfg,
            res,
            format!(
                "row seen but {} = {v}, published {E2E_RMSSD}",
                cfg.value_column
            ),
        ),
        (None, _) => failed(
            cfg,
            res,
            format!("row seen but {} is NULL", cfg.value_column),
        ),
        (Some(_), _) if cfg.derived_column.is_empty() => {
            res.ok = true;
            res.reason = format!(
                "row seen in {} (stored by stream {stream}) with {} = {E2E_RMSSD}",
                cfg.table, cfg.value_column
            );
            res
        }
        (_, None) => failed(
            cfg,
            res,
            format!("row seen but {} is NULL", cfg.derived_column),
        ),
        (Some(_), Some(d)) if (d - want).abs() > DERIVED_TOLERANCE => failed(
            cfg,
            res,
            format!(
                "row seen but {} = {d}, expected ln({E2E_RMSSD}) = {want} (off by {:e})",
                cfg.derived_column,
                (d - want).abs()
            ),
        ),
        (Some(_), Some(_)) => {
            res.ok = true;
            res.reason = format!(
                "row seen in {} (stored by stream {stream}); {} = ln({}) within {DERIVED_TOLERANCE:e}",
                cfg.table, cfg.derived_column, cfg.value_column
            );
            res
        }
    }
}

/// The payload template with its placeholders replaced; each value is
/// JSON-escaped (without quotes: the template puts `"{user_id}"` in quotes
/// itself, `{value}` is a number).
fn fill_template(
    t: &str,
    event_id: &str,
    user_id: &str,
    date: &str,
    captured_at: &str,
    value: f64,
) -> String {
    let esc = |v: &str| {
        let q = serde_json::Value::String(v.to_string()).to_string();
        q[1..q.len() - 1].to_string()
    };
    t.replace("{event_id}", &esc(event_id))
        .replace("{user_id}", &esc(user_id))
        .replace("{date}", &esc(date))
        .replace("{captured_at}", &esc(captured_at))
        .replace("{value}", &value.to_string())
}

/// Deletes the probe's rows (user id starting with `user_prefix`), so
/// repeated probes leave no trace; returns how many were deleted. The prefix
/// must be non-empty and free of LIKE wildcards, so this can never match
/// real users wholesale.
pub async fn cleanup_round_trip_rows(
    database_url: &str,
    table: &str,
    user_column: &str,
    user_prefix: &str,
) -> Result<u64, RoundTripError> {
    if user_prefix.is_empty() || user_prefix.contains(['%', '_', '\\']) {
        return Err(RoundTripError::Prefix(user_prefix.to_string()));
    }
    let timeout = Duration::from_secs(30);
    let mut db = connect_db(database_url, timeout).await?;
    let sql = format!(
        "DELETE FROM {} WHERE {} LIKE $1",
        quote_table(table),
        quote_ident(user_column)
    );
    let r = tokio::time::timeout(
        timeout,
        sqlx::query(AssertSqlSafe(sql))
            .bind(format!("{user_prefix}%"))
            .execute(&mut db),
    )
    .await;
    let _ = db.close().await;
    match r {
        Ok(Ok(done)) => Ok(done.rows_affected()),
        Ok(Err(e)) => Err(RoundTripError::Database {
            op: "delete",
            message: describe_db(&e),
        }),
        Err(_) => Err(RoundTripError::Timeout {
            op: "delete",
            after: humantime::format_duration(timeout).to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_ids_unique() {
        assert_eq!(quote_table("public.hrv_data"), "\"public\".\"hrv_data\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_ne!(unique_suffix(), unique_suffix());
    }

    #[test]
    fn config_is_checked_and_never_shows_secrets() {
        let mut c = RoundTripConfig::new(
            "nats://tok3nvalue@127.0.0.1:4222",
            "a.b",
            "postgres://u:hunter2pw@h/db",
            "hrv_data",
        );
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        let shown = format!("{c:?} {}", c.describe());
        assert!(
            !shown.contains("hunter2pw") && !shown.contains("tok3nvalue"),
            "{shown}"
        );
        assert_eq!(
            c.scrub("failed postgres://u:hunter2pw@h/db with hunter2pw"),
            "failed postgres://u:***@h/db with ***"
        );
        c.user_prefix = "%".into();
        c.subject = "a.>".into();
        assert_eq!(c.validate().len(), 2, "{:?}", c.validate());
    }
}
