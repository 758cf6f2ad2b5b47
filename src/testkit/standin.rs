//! A stand-in for the seed's `normalize-service`, so soakwatch can be tested end to end
//! against a [`crate::testkit::replica`] without the real Node.js service.
//!
//! It reads the service's `.env` at start (`EVENT_STREAM_MODE`, `NORMALIZE_HRV_ACK_WAIT_MS`),
//! writes the seed's log lines (with the replica's names) to a log file, binds the existing
//! `normalize-hrv-durable` pull consumer (never creates it), and processes HRV events the way
//! the seed describes: valid events are upserted into `hrv_data` and acked, invalid ones go to
//! the DLQ subject, database errors are nak'ed with a delay. It serves hand-written Prometheus
//! metrics with the seed's label set on `/metrics`, and fault-injection switches on `/admin/*`
//! (pause consuming, stop database writes, add latency).

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, AckKind};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{NaiveDate, SecondsFormat, Utc};
use futures::StreamExt;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::AssertSqlSafe;
use tokio_util::sync::CancellationToken;

use crate::testkit::replica::{quote_ident, ReplicaNames};

/// Messages requested per pull.
const FETCH_BATCH: usize = 50;
/// How long a pull request waits on the server for messages.
const FETCH_EXPIRES: Duration = Duration::from_secs(1);
/// Delay the server waits before redelivering a message nak'ed after a database error.
const NAK_DELAY: Duration = Duration::from_secs(2);
/// Pause after a failed pull before trying again.
const FETCH_ERROR_BACKOFF: Duration = Duration::from_secs(1);
/// Retry interval while the consumer to bind does not exist (multi mode).
const BIND_RETRY_MULTI: Duration = Duration::from_secs(1);
/// Retry interval while the consumer to bind does not exist (single mode).
const BIND_RETRY_SINGLE: Duration = Duration::from_secs(2);
/// Longest a database connection may be waited for before the message is nak'ed.
const DB_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the HTTP server may take to close connections after shutdown.
const HTTP_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The seed's previous `NORMALIZE_HRV_ACK_WAIT_MS`, used when the env file does not set it.
const DEFAULT_ACK_WAIT_MS: u64 = 30_000;
/// Upper bounds of the processing-duration histogram (prom-client's defaults).
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Header carrying the reason a message was sent to the DLQ.
pub const DLQ_REASON_HEADER: &str = "X-DLQ-Reason";

/// How the stand-in is started; mirrors the service's configuration plus test plumbing.
#[derive(Debug, Clone)]
pub struct StandinOptions {
    /// NATS server URL.
    pub nats_url: String,
    /// URL of the replica database (never written to logs).
    pub database_url: String,
    /// Names of the replica the stand-in serves.
    pub names: ReplicaNames,
    /// The service's `.env`, read once at start (restart to apply changes, like the seed).
    pub env_file: PathBuf,
    /// Service log, appended to; soakwatch's log probes read it.
    pub log_file: PathBuf,
    /// Address of the `/metrics` and `/admin` HTTP listener (port 0 picks a free port).
    pub listen: SocketAddr,
}

/// Why the stand-in could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum StandinError {
    /// The env file could not be read.
    #[error("reading env file {path}: {source}")]
    EnvFile {
        /// The env file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The env file has an unusable value.
    #[error("env file {path}: {message}")]
    Config {
        /// The env file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The log file could not be opened for appending.
    #[error("opening log file {path}: {source}")]
    LogFile {
        /// The log file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP listener could not be bound.
    #[error("binding HTTP listener on {addr}: {source}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The database URL is unusable (not echoed: it may hold credentials).
    #[error("invalid database URL (not shown, it may hold credentials)")]
    DatabaseUrl,
    /// The NATS URL is unusable.
    #[error("connecting to NATS: {0}")]
    Nats(#[source] async_nats::ConnectError),
    /// The HTTP server failed.
    #[error("HTTP server: {0}")]
    Serve(#[source] std::io::Error),
    /// The processing task panicked.
    #[error("processing task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// Writes a seed-like .env (EVENT_STREAM_MODE=multi, FEATURE_* lines,
/// NORMALIZE_HRV_ACK_WAIT_MS=60000  # Changed from 30000) for the replica.
pub fn write_default_env_file(path: &Path) -> std::io::Result<()> {
    std::fs::write(
        path,
        "# Event Bus Configuration - Phase B Multi-Stream Mode\n\
         EVENT_STREAM_MODE=multi\n\
         FEATURE_SERVICE_MANAGES_STREAMS=false\n\
         FEATURE_SERVICE_MANAGES_CONSUMERS=false\n\
         \n\
         # Consumer configuration (updated ack_wait)\n\
         NORMALIZE_HRV_ACK_WAIT_MS=60000  # Changed from 30000\n",
    )
}

// ---------------------------------------------------------------------------------------------
// Env file

/// Stream topology the service runs in, from `EVENT_STREAM_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamMode {
    Multi,
    Single,
}

impl StreamMode {
    fn as_str(self) -> &'static str {
        match self {
            StreamMode::Multi => "multi",
            StreamMode::Single => "single",
        }
    }
}

/// The parts of the `.env` the stand-in acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EnvConfig {
    mode: StreamMode,
    /// `EVENT_STREAM_MODE` as written (None when absent), for the startup log line.
    mode_raw: Option<String>,
    ack_wait_ms: u64,
    manages_consumers: bool,
}

/// The stand-in's view of its env file: the same parser the service-env
/// probe and the rollback's edit use, so all three read a file alike.
fn parse_env(text: &str) -> HashMap<String, String> {
    let file = crate::envfile::EnvFile::parse(text);
    file.keys()
        .into_iter()
        .filter_map(|k| file.get(k).map(|v| (k.to_string(), v.to_string())))
        .collect()
}

fn env_config(vars: &HashMap<String, String>, path: &Path) -> Result<EnvConfig, StandinError> {
    let config_err = |message: String| StandinError::Config {
        path: path.to_path_buf(),
        message,
    };
    let mode_raw = vars.get("EVENT_STREAM_MODE").cloned();
    let mode = match mode_raw.as_deref().map(|m| m.trim().to_ascii_lowercase()) {
        None => StreamMode::Single,
        Some(m) if m == "multi" => StreamMode::Multi,
        Some(m) if m == "single" || m.is_empty() => StreamMode::Single,
        Some(m) => {
            return Err(config_err(format!(
                "EVENT_STREAM_MODE={m:?}: expected multi or single"
            )))
        }
    };
    let ack_wait_ms = match vars.get("NORMALIZE_HRV_ACK_WAIT_MS") {
        None => DEFAULT_ACK_WAIT_MS,
        Some(v) => v.trim().parse::<u64>().map_err(|_| {
            config_err(format!(
                "NORMALIZE_HRV_ACK_WAIT_MS={v:?}: expected milliseconds"
            ))
        })?,
    };
    let manages_consumers = vars
        .get("FEATURE_SERVICE_MANAGES_CONSUMERS")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    Ok(EnvConfig {
        mode,
        mode_raw,
        ack_wait_ms,
        manages_consumers,
    })
}

fn read_env_config(path: &Path) -> Result<EnvConfig, StandinError> {
    let text = std::fs::read_to_string(path).map_err(|source| StandinError::EnvFile {
        path: path.to_path_buf(),
        source,
    })?;
    env_config(&parse_env(&text), path)
}

// ---------------------------------------------------------------------------------------------
// Log file

/// Appends timestamped lines to the service log, with secrets (the database URL and its
/// password) redacted.
#[derive(Clone)]
struct LogSink {
    file: Arc<Mutex<std::fs::File>>,
    secrets: Arc<Vec<String>>,
}

impl LogSink {
    fn open(path: &Path, secrets: Vec<String>) -> Result<Self, StandinError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| StandinError::LogFile {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(LogSink {
            file: Arc::new(Mutex::new(file)),
            secrets: Arc::new(secrets),
        })
    }

    fn line(&self, message: &str) {
        let mut message = message.replace(['\r', '\n'], " ");
        for secret in self.secrets.iter() {
            if message.contains(secret.as_str()) {
                message = message.replace(secret.as_str(), "***");
            }
        }
        let ts = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let line = format!("{ts} {message}\n");
        let mut file = match self.file.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(e) = file.write_all(line.as_bytes()) {
            tracing::warn!(error = %e, "standin: cannot append to log file");
        }
        tracing::debug!(target: "soakwatch::testkit::standin", "{message}");
    }
}

/// Strings that must never reach the log: the database URL, and its password (raw and
/// percent-decoded) when long enough not to garble unrelated text.
fn secrets_of(database_url: &str) -> Vec<String> {
    let mut secrets = vec![database_url.to_string()];
    if let Ok(url) = url::Url::parse(database_url) {
        if let Some(pw) = url.password() {
            let mut candidates = vec![pw.to_string()];
            if let Ok(decoded) = percent_decode(pw) {
                candidates.push(decoded);
            }
            for c in candidates {
                if c.len() >= 4 && !secrets.contains(&c) {
                    secrets.push(c);
                }
            }
        }
    }
    secrets
}

fn percent_decode(s: &str) -> Result<String, ()> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).map_err(|_| ())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// Outcome label of `normalize_hrv_messages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Dlq,
    Retry,
}

/// Counters and histogram, rendered by hand in Prometheus text format 0.0.4.
#[derive(Debug, Default)]
struct Metrics {
    /// Stream the consumer is bound to; no samples are exported before binding.
    bound_stream: Option<String>,
    success: u64,
    dlq: u64,
    retry: u64,
    /// Non-cumulative observation counts per bucket of [`BUCKETS`] (values above the last bound
    /// only count towards `count`).
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Metrics {
    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Success => self.success += 1,
            Outcome::Dlq => self.dlq += 1,
            Outcome::Retry => self.retry += 1,
        }
    }

    fn observe(&mut self, seconds: f64) {
        if let Some(i) = BUCKETS.iter().position(|le| seconds <= *le) {
            self.buckets[i] += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, subject: &str, durable: &str, start_time: f64) -> String {
        let mut out = String::with_capacity(2048);
        out.push_str(
            "# HELP normalize_hrv_messages_total Total number of HRV messages processed by normalize service\n\
             # TYPE normalize_hrv_messages_total counter\n",
        );
        let subject = crate::promtext::escape_label_value(subject);
        let durable = crate::promtext::escape_label_value(durable);
        if let Some(stream) = &self.bound_stream {
            let stream = crate::promtext::escape_label_value(stream);
            for (result, value) in [
                ("success", self.success),
                ("dlq", self.dlq),
                ("retry", self.retry),
            ] {
                out.push_str(&format!(
                    "normalize_hrv_messages_total{{result=\"{result}\",subject=\"{subject}\",stream=\"{stream}\",durable=\"{durable}\"}} {value}\n"
                ));
            }
        }
        out.push_str(
            "# HELP normalize_hrv_processing_duration_seconds Time from HRV message receipt to acknowledgement\n\
             # TYPE normalize_hrv_processing_duration_seconds histogram\n",
        );
        if let Some(stream) = &self.bound_stream {
            let stream = crate::promtext::escape_label_value(stream);
            let labels = format!("stream=\"{stream}\",durable=\"{durable}\"");
            let mut cumulative = 0u64;
            for (le, n) in BUCKETS.iter().zip(self.buckets.iter()) {
                cumulative += n;
                out.push_str(&format!(
                    "normalize_hrv_processing_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}\n"
                ));
            }
            out.push_str(&format!(
                "normalize_hrv_processing_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n",
                self.count
            ));
            out.push_str(&format!(
                "normalize_hrv_processing_duration_seconds_sum{{{labels}}} {}\n",
                self.sum
            ));
            out.push_str(&format!(
                "normalize_hrv_processing_duration_seconds_count{{{labels}}} {}\n",
                self.count
            ));
        }
        out.push_str(
            "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n\
             # TYPE process_start_time_seconds gauge\n",
        );
        out.push_str(&format!("process_start_time_seconds {start_time}\n"));
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Shared state, HTTP

/// State shared by the processing loop and the HTTP handlers.
struct Shared {
    paused: AtomicBool,
    skip_db: AtomicBool,
    slow_ms: AtomicU64,
    /// Wakes the processing loop when it is resumed.
    resumed: tokio::sync::Notify,
    metrics: Mutex<Metrics>,
    hrv_subject: String,
    durable: String,
    mode: StreamMode,
    start_time: f64,
}

impl Shared {
    fn metrics(&self) -> std::sync::MutexGuard<'_, Metrics> {
        match self.metrics.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn state_json(&self) -> serde_json::Value {
        let bound = self.metrics().bound_stream.clone();
        serde_json::json!({
            "paused": self.paused.load(Ordering::SeqCst),
            "skip_db": self.skip_db.load(Ordering::SeqCst),
            "slow_ms": self.slow_ms.load(Ordering::SeqCst),
            "mode": self.mode.as_str(),
            "bound_stream": bound,
            "durable": self.durable,
        })
    }
}

#[derive(Clone)]
struct HttpState {
    shared: Arc<Shared>,
    log: LogSink,
}

async fn metrics_handler(State(st): State<HttpState>) -> Response {
    let body = st.shared.metrics().render(
        &st.shared.hrv_subject,
        &st.shared.durable,
        st.shared.start_time,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

fn admin_ok(st: &HttpState, action: &str) -> Response {
    st.log.line(&format!("[standin] admin: {action}"));
    let mut state = st.shared.state_json();
    state["ok"] = serde_json::Value::Bool(true);
    state["action"] = serde_json::Value::String(action.to_string());
    (StatusCode::OK, Json(state)).into_response()
}

async fn pause_handler(State(st): State<HttpState>) -> Response {
    st.shared.paused.store(true, Ordering::SeqCst);
    admin_ok(&st, "pause (consuming stops)")
}

async fn resume_handler(State(st): State<HttpState>) -> Response {
    st.shared.paused.store(false, Ordering::SeqCst);
    st.shared.resumed.notify_waiters();
    admin_ok(&st, "resume")
}

async fn skip_db_handler(State(st): State<HttpState>) -> Response {
    st.shared.skip_db.store(true, Ordering::SeqCst);
    admin_ok(&st, "skip-db (database writes stop)")
}

async fn normal_handler(State(st): State<HttpState>) -> Response {
    st.shared.skip_db.store(false, Ordering::SeqCst);
    admin_ok(&st, "normal (database writes resume)")
}

async fn slow_handler(
    State(st): State<HttpState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(ms) = params.get("ms").and_then(|v| v.trim().parse::<u64>().ok()) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"ok": false, "error": "expected ?ms=<milliseconds>"})),
        )
            .into_response();
    };
    st.shared.slow_ms.store(ms, Ordering::SeqCst);
    admin_ok(&st, &format!("slow {ms}ms per message"))
}

async fn state_handler(State(st): State<HttpState>) -> Response {
    (StatusCode::OK, Json(st.shared.state_json())).into_response()
}

fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/admin/pause", post(pause_handler))
        .route("/admin/resume", post(resume_handler))
        .route("/admin/skip-db", post(skip_db_handler))
        .route("/admin/normal", post(normal_handler))
        .route("/admin/slow", post(slow_handler))
        .route("/admin/state", get(state_handler))
        .with_state(state)
}

// ---------------------------------------------------------------------------------------------
// Validation

/// A validated HRV reading, ready to upsert.
#[derive(Debug, Clone, PartialEq)]
struct ValidHrv {
    user_id: String,
    date: NaiveDate,
    rmssd: f64,
    ln_rmssd: f64,
    captured_at: Option<chrono::NaiveDateTime>,
}

/// Parses and validates an event; the error is the reason sent along to the DLQ.
fn validate(payload: &[u8]) -> Result<ValidHrv, String> {
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| format!("invalid JSON: {e}"))?;
    let p = value
        .get("payload")
        .filter(|p| p.is_object())
        .ok_or_else(|| "payload missing".to_string())?;
    let user_id = p
        .get("userId")
        .and_then(|v| v.as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| "userId missing or empty".to_string())?;
    let date_str = p
        .get("date")
        .and_then(|v| v.as_str())
        .ok_or_else(|| "date missing".to_string())?;
    let date = (date_str.len() == 10)
        .then(|| NaiveDate::parse_from_str(date_str, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| format!("date {date_str:?} is not YYYY-MM-DD"))?;
    let rmssd = p
        .get("rMSSD")
        .and_then(|v| v.as_f64())
        .ok_or_else(|| "rMSSD missing or not a number".to_string())?;
    if !(rmssd.is_finite() && rmssd > 0.0) {
        return Err(format!("rMSSD must be a positive number, got {rmssd}"));
    }
    let captured_at = p
        .get("capturedAt")
        .and_then(|v| v.as_str())
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.naive_utc());
    Ok(ValidHrv {
        user_id: user_id.to_string(),
        date,
        rmssd,
        ln_rmssd: rmssd.ln(),
        captured_at,
    })
}

/// The upsert statement for `table` (identifiers quoted).
fn upsert_sql(table: &str) -> String {
    format!(
        r#"INSERT INTO {t} ("userId", date, rmssd, "lnRmssd", "capturedAt") VALUES ($1, $2, $3, $4, $5)
ON CONFLICT ("userId", date) DO UPDATE SET rmssd = EXCLUDED.rmssd, "lnRmssd" = EXCLUDED."lnRmssd", "capturedAt" = EXCLUDED."capturedAt", "updatedAt" = (now() AT TIME ZONE 'utc')"#,
        t = quote_ident(table)
    )
}

// ---------------------------------------------------------------------------------------------
// Processing

/// Everything the processing loop needs.
struct Processor {
    js: jetstream::Context,
    pool: PgPool,
    upsert_sql: String,
    names: ReplicaNames,
    config: EnvConfig,
    shared: Arc<Shared>,
    log: LogSink,
}

/// Sleeps for `d`; returns true when shutdown was requested meanwhile.
async fn sleep_or_cancelled(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

impl Processor {
    /// Binds the existing durable (never creates it), retrying until it exists.
    async fn bind(
        &self,
        shutdown: &CancellationToken,
    ) -> Option<(consumer::PullConsumer, consumer::Info)> {
        let (stream, retry) = match self.config.mode {
            StreamMode::Multi => (&self.names.core_stream, BIND_RETRY_MULTI),
            StreamMode::Single => (&self.names.legacy_stream, BIND_RETRY_SINGLE),
        };
        let durable = &self.names.durable;
        loop {
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => return None,
                r = self.js.get_consumer_from_stream::<consumer::pull::Config, _, _>(
                    durable.as_str(),
                    stream.as_str(),
                ) => r,
            };
            match attempt {
                Ok(c) => {
                    let info = c.cached_info().clone();
                    return Some((c, info));
                }
                Err(e) => self.log.line(&format!(
                    "[normalize] Failed to bind HRV consumer {durable} on {stream}: {e} (retrying in {}s)",
                    retry.as_secs()
                )),
            }
            if sleep_or_cancelled(retry, shutdown).await {
                return None;
            }
        }
    }

    async fn run(self, shutdown: CancellationToken) {
        let Some((consumer, info)) = self.bind(&shutdown).await else {
            self.log
                .line("[normalize] Shutdown before the HRV consumer was bound");
            return;
        };
        let stream = info.stream_name.clone();
        let durable = &self.names.durable;
        self.shared.metrics().bound_stream = Some(stream.clone());
        let filter = if info.config.filter_subject.is_empty() {
            "(none)".to_string()
        } else {
            info.config.filter_subject.clone()
        };
        self.log.line(&format!(
            "[normalize] Found existing HRV consumer on {stream}: {durable}"
        ));
        self.log.line(&format!(
            "[normalize] HRV durable pull consumer bound: {durable}, subject: {filter}, ackWait: {}ms, maxDeliver: {}",
            self.config.ack_wait_ms, info.config.max_deliver
        ));
        self.log.line(&format!(
            "[normalize-hrv] DLQ subject prefix: {}",
            self.names.dlq_subject
        ));
        self.log.line(&format!(
            "[normalize-hrv] Consumer: {durable}, maxDeliver: {}, ackWait: {}ms",
            info.config.max_deliver,
            info.config.ack_wait.as_millis()
        ));
        self.log
            .line("[normalize] Starting HRV message processing loop...");

        let mut was_paused = false;
        while !shutdown.is_cancelled() {
            if self.shared.paused.load(Ordering::SeqCst) {
                if !was_paused {
                    self.log.line("[normalize] HRV message processing paused");
                    was_paused = true;
                }
                let resumed = self.shared.resumed.notified();
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = resumed => {},
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {},
                }
                continue;
            }
            if was_paused {
                self.log.line("[normalize] HRV message processing resumed");
                was_paused = false;
            }
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
                b = consumer.batch().max_messages(FETCH_BATCH).expires(FETCH_EXPIRES).messages() => b,
            };
            let mut batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    self.log
                        .line(&format!("[normalize] Error fetching HRV messages: {e}"));
                    if sleep_or_cancelled(FETCH_ERROR_BACKOFF, &shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            // Drain the whole batch even on shutdown: these messages are already delivered to
            // us, and the pull expires within FETCH_EXPIRES.
            while let Some(item) = batch.next().await {
                match item {
                    Ok(msg) => self.handle(msg, &shutdown).await,
                    Err(e) => {
                        self.log
                            .line(&format!("[normalize] Error fetching HRV messages: {e}"));
                        let _ = sleep_or_cancelled(FETCH_ERROR_BACKOFF, &shutdown).await;
                        break;
                    }
                }
            }
        }
        self.log
            .line("[normalize] HRV message processing loop stopped");
    }

    async fn handle(&self, msg: jetstream::Message, shutdown: &CancellationToken) {
        let received = Instant::now();
        let (stream_seq, delivery_seq, delivered) = match msg.info() {
            Ok(i) => (i.stream_sequence, i.consumer_sequence, i.delivered),
            Err(_) => (0, 0, 0),
        };
        let subject = msg.subject.to_string();
        // Key order as in the seed's log (serde_json's map would sort the keys).
        let subject_json = serde_json::to_string(&subject).unwrap_or_else(|_| "\"\"".to_string());
        self.log.line(&format!(
            "[normalize] Processing HRV message: {{\"streamSeq\":{stream_seq},\"deliverySeq\":{delivery_seq},\"redeliveries\":{delivered},\"subject\":{subject_json}}}"
        ));

        let slow = self.shared.slow_ms.load(Ordering::SeqCst);
        if slow > 0 {
            let _ = sleep_or_cancelled(Duration::from_millis(slow), shutdown).await;
        }

        let outcome = match validate(&msg.payload) {
            Ok(valid) => {
                self.log
                    .line("[normalize] HRV validation passed, processing data...");
                let write = if self.shared.skip_db.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    sqlx::query(AssertSqlSafe(self.upsert_sql.clone()))
                        .bind(&valid.user_id)
                        .bind(valid.date)
                        .bind(valid.rmssd)
                        .bind(valid.ln_rmssd)
                        .bind(valid.captured_at)
                        .execute(&self.pool)
                        .await
                        .map(|_| ())
                };
                match write {
                    Ok(()) => match msg.ack().await {
                        Ok(()) => {
                            self.log.line(&format!(
                                "[normalize] HRV data upserted for date {}",
                                valid.date
                            ));
                            self.log.line("[normalize] HRV data processed successfully");
                            Some(Outcome::Success)
                        }
                        Err(e) => {
                            self.log.line(&format!(
                                "[normalize] Failed to ack HRV message (streamSeq {stream_seq}): {e}"
                            ));
                            None
                        }
                    },
                    Err(e) => {
                        self.log.line(&format!(
                            "[normalize] Database error processing HRV message (streamSeq {stream_seq}), will retry in {}s: {e}",
                            NAK_DELAY.as_secs()
                        ));
                        self.nak(&msg, stream_seq).await
                    }
                }
            }
            Err(reason) => self.dead_letter(&msg, &reason, stream_seq, delivered).await,
        };

        let seconds = received.elapsed().as_secs_f64();
        let mut m = self.shared.metrics();
        m.observe(seconds);
        if let Some(outcome) = outcome {
            m.count(outcome);
        }
    }

    async fn nak(&self, msg: &jetstream::Message, stream_seq: u64) -> Option<Outcome> {
        match msg.ack_with(AckKind::Nak(Some(NAK_DELAY))).await {
            Ok(()) => Some(Outcome::Retry),
            Err(e) => {
                self.log.line(&format!(
                    "[normalize] Failed to nak HRV message (streamSeq {stream_seq}): {e}"
                ));
                // The message is redelivered after ack_wait anyway.
                Some(Outcome::Retry)
            }
        }
    }

    /// Publishes the original payload to the DLQ subject (with the reason in a header) and
    /// acks the original; if the DLQ publish fails the message is nak'ed instead.
    async fn dead_letter(
        &self,
        msg: &jetstream::Message,
        reason: &str,
        stream_seq: u64,
        delivered: i64,
    ) -> Option<Outcome> {
        let clean = |s: &str| s.replace(['\r', '\n'], " ");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(DLQ_REASON_HEADER, clean(reason).as_str());
        headers.insert(
            "X-DLQ-Original-Subject",
            clean(msg.subject.as_str()).as_str(),
        );
        headers.insert("X-DLQ-Stream-Seq", stream_seq.to_string().as_str());
        headers.insert("X-DLQ-Deliveries", delivered.to_string().as_str());
        let published = match self
            .js
            .publish_with_headers(self.names.dlq_subject.clone(), headers, msg.payload.clone())
            .await
        {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match published {
            Ok(()) => match msg.ack().await {
                Ok(()) => {
                    self.log
                        .line(&format!("[normalize-hrv] Message sent to DLQ: {reason}"));
                    Some(Outcome::Dlq)
                }
                Err(e) => {
                    self.log.line(&format!(
                        "[normalize-hrv] Message sent to DLQ but ack failed (streamSeq {stream_seq}): {e}"
                    ));
                    None
                }
            },
            Err(e) => {
                self.log.line(&format!(
                    "[normalize-hrv] Failed to publish to DLQ {} ({reason}), will retry: {e}",
                    self.names.dlq_subject
                ));
                self.nak(msg, stream_seq).await
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Entry points

/// A stand-in whose configuration is read and whose HTTP listener is bound, so callers (and
/// tests using port 0) learn the real address before it runs.
pub struct BoundStandin {
    opts: StandinOptions,
    config: EnvConfig,
    log: LogSink,
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    pool: PgPool,
}

impl std::fmt::Debug for BoundStandin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundStandin")
            .field("tag", &self.opts.names.tag)
            .field("local_addr", &self.local_addr)
            .field("mode", &self.config.mode)
            .finish_non_exhaustive()
    }
}

/// Reads the env file, opens the log file, binds the HTTP listener and prepares the (lazy)
/// database pool; nothing is consumed until [`BoundStandin::run`].
pub async fn bind(opts: StandinOptions) -> Result<BoundStandin, StandinError> {
    let config = read_env_config(&opts.env_file)?;
    let log = LogSink::open(&opts.log_file, secrets_of(&opts.database_url))?;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(DB_ACQUIRE_TIMEOUT)
        .connect_lazy(&opts.database_url)
        .map_err(|_| StandinError::DatabaseUrl)?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| StandinError::Bind {
            addr: opts.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StandinError::Bind {
        addr: opts.listen,
        source,
    })?;
    Ok(BoundStandin {
        opts,
        config,
        log,
        listener,
        local_addr,
        pool,
    })
}

impl BoundStandin {
    /// The address `/metrics` and `/admin` are served on (the real port when 0 was requested).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Runs until `shutdown` is cancelled: logs the startup lines, binds the consumer,
    /// processes messages and serves HTTP. On shutdown it stops pulling, finishes the
    /// messages already received, flushes acks and stops the HTTP server.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StandinError> {
        let BoundStandin {
            opts,
            config,
            log,
            listener,
            local_addr,
            pool,
        } = self;
        // Like a real service, connect to the database at start-up, so the
        // first message does not pay for the connection (a failure here is
        // retried by the pool when messages come).
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), pool.acquire()).await;
        let names = opts.names.clone();
        let start_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);

        let mode_raw = match &config.mode_raw {
            Some(v) => format!("{v:?}"),
            None => "undefined".to_string(),
        };
        log.line(&format!(
            "[event-bus] Stream mode: {} (EVENT_STREAM_MODE={mode_raw})",
            config.mode.as_str()
        ));
        let candidates = match config.mode {
            StreamMode::Multi => format!("{}, {}", names.core_stream, names.legacy_stream),
            StreamMode::Single => names.legacy_stream.clone(),
        };
        log.line(&format!(
            "[normalize-service] Stream candidates: {candidates}"
        ));
        if config.manages_consumers {
            log.line(
                "[normalize-service] FEATURE_SERVICE_MANAGES_CONSUMERS=true is ignored: the stand-in only binds existing consumers",
            );
        }
        log.line(&format!(
            "[normalize-service] Metrics server listening on http://{local_addr}/metrics"
        ));

        let event_log = log.clone();
        let nats = async_nats::ConnectOptions::new()
            .name(format!("soakwatch-standin-{}", names.tag))
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let log = event_log.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => log.line("[nats] Connected to NATS"),
                        async_nats::Event::Disconnected => {
                            log.line("[nats] Disconnected from NATS, reconnecting...")
                        }
                        other => log.line(&format!("[nats] {other}")),
                    }
                }
            })
            .connect(opts.nats_url.as_str())
            .await
            .map_err(StandinError::Nats)?;

        let shared = Arc::new(Shared {
            paused: AtomicBool::new(false),
            skip_db: AtomicBool::new(false),
            slow_ms: AtomicU64::new(0),
            resumed: tokio::sync::Notify::new(),
            metrics: Mutex::new(Metrics::default()),
            hrv_subject: names.hrv_subject.clone(),
            durable: names.durable.clone(),
            mode: config.mode,
            start_time,
        });

        let stop = shutdown.child_token();
        let app = router(HttpState {
            shared: shared.clone(),
            log: log.clone(),
        });
        let server_stop = stop.clone();
        let mut server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(server_stop.cancelled_owned())
                .await
        });

        let processor = Processor {
            js: jetstream::new(nats.clone()),
            pool: pool.clone(),
            upsert_sql: upsert_sql(&names.table),
            names,
            config,
            shared,
            log: log.clone(),
        };
        let mut processing = tokio::spawn(processor.run(stop.clone()));

        // Run until shutdown, or until either task ends on its own (which is a failure).
        let mut server_done = None;
        let mut processing_done = None;
        tokio::select! {
            _ = stop.cancelled() => {}
            r = &mut server => { server_done = Some(r); }
            r = &mut processing => { processing_done = Some(r); }
        }
        stop.cancel();

        let processing_result = match processing_done {
            Some(r) => r,
            None => processing.await,
        };
        let server_result = match server_done {
            Some(r) => Some(r),
            None => match tokio::time::timeout(HTTP_SHUTDOWN_GRACE, &mut server).await {
                Ok(r) => Some(r),
                Err(_) => {
                    server.abort();
                    None
                }
            },
        };

        if tokio::time::timeout(Duration::from_secs(2), nats.flush())
            .await
            .is_err()
        {
            log.line("[nats] Timed out flushing pending acks on shutdown");
        }
        pool.close().await;
        log.line("[normalize-service] Shutdown complete");

        processing_result.map_err(StandinError::Task)?;
        match server_result {
            Some(Ok(Ok(()))) | None => Ok(()),
            Some(Ok(Err(e))) => Err(StandinError::Serve(e)),
            Some(Err(e)) => Err(StandinError::Task(e)),
        }
    }
}

/// Runs the stand-in until `shutdown` is cancelled; thin wrapper over [`bind`] and
/// [`BoundStandin::run`].
pub async fn run(opts: StandinOptions, shutdown: CancellationToken) -> Result<(), StandinError> {
    bind(opts).await?.run(shutdown).await
}

/// A loopback HTTP server sending `total` bytes of valid exposition text, chunked
/// (`content_length == false`) or with a Content-Length header, in 1 MiB writes:
/// the hostile /metrics of the body-cap tests and the probes bench.
pub async fn serve_big_metrics(total: usize, content_length: bool) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let port = listener.local_addr().expect("bound address").port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let line = "normalize_hrv_messages_total{result=\"success\",stream=\"AA_CORE_HOT\",durable=\"normalize-hrv-durable\",pad=\"xxxxxxxxxxxxxxxxxxxxxxxx\"} 1\n";
                let piece: String = line.repeat((1 << 20) / line.len());
                let head = if content_length {
                    format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {total}\r\nconnection: close\r\n\r\n")
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_string()
                };
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let mut sent = 0;
                while sent < total {
                    let n = piece.len().min(total - sent);
                    let data = &piece.as_bytes()[..n];
                    let ok = if content_length {
                        s.write_all(data).await.is_ok()
                    } else {
                        s.write_all(format!("{n:x}\r\n").as_bytes()).await.is_ok()
                            && s.write_all(data).await.is_ok()
                            && s.write_all(b"\r\n").await.is_ok()
                    };
                    if !ok {
                        return;
                    }
                    sent += n;
                }
                if !content_length {
                    let _ = s.write_all(b"0\r\n\r\n").await;
                }
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

#[cfg(test)]
mod tests {
    //! Pure unit tests; the ones against real NATS and PostgreSQL are in
    //! `tests/e2e/testkit.rs`, so `cargo test --lib` needs no server.
    use super::*;
    use crate::testkit::replica::HrvEvent;

    #[test]
    fn env_file_parsing_handles_comments_quotes_and_export() {
        let vars = parse_env(
            "# comment\n\
             EVENT_STREAM_MODE=multi\n\
             \n\
             NORMALIZE_HRV_ACK_WAIT_MS=60000  # Changed from 30000\n\
             export A='x # y'\n\
             B=\"q\"\n\
             C=a#b\n\
             no equals sign\n\
             =novalue\n",
        );
        assert_eq!(
            vars.get("EVENT_STREAM_MODE").map(String::as_str),
            Some("multi")
        );
        assert_eq!(
            vars.get("NORMALIZE_HRV_ACK_WAIT_MS").map(String::as_str),
            Some("60000")
        );
        assert_eq!(vars.get("A").map(String::as_str), Some("x # y"));
        assert_eq!(vars.get("B").map(String::as_str), Some("q"));
        assert_eq!(vars.get("C").map(String::as_str), Some("a#b"));
        assert_eq!(vars.len(), 5);
    }

    #[test]
    fn default_env_file_is_the_seed_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".env");
        write_default_env_file(&path).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("NORMALIZE_HRV_ACK_WAIT_MS=60000  # Changed from 30000\n"));
        assert!(text.contains("FEATURE_SERVICE_MANAGES_CONSUMERS=false\n"));
        let c = read_env_config(&path).expect("config");
        assert_eq!(c.mode, StreamMode::Multi);
        assert_eq!(c.mode_raw.as_deref(), Some("multi"));
        assert_eq!(c.ack_wait_ms, 60_000);
        assert!(!c.manages_consumers);
    }

    #[test]
    fn env_config_defaults_and_errors() {
        let p = Path::new("x.env");
        let c = env_config(&parse_env(""), p).expect("empty");
        assert_eq!((c.mode, c.ack_wait_ms), (StreamMode::Single, 30_000));
        let c = env_config(&parse_env("EVENT_STREAM_MODE=single"), p).expect("single");
        assert_eq!(c.mode, StreamMode::Single);
        assert!(env_config(&parse_env("EVENT_STREAM_MODE=dual"), p).is_err());
        assert!(env_config(&parse_env("NORMALIZE_HRV_ACK_WAIT_MS=60s"), p).is_err());
        assert!(matches!(
            read_env_config(Path::new("/nonexistent/soakwatch/.env")),
            Err(StandinError::EnvFile { .. })
        ));
    }

    #[test]
    fn validation_matches_the_seed_rules() {
        let ok = br#"{"eventId":"e","payload":{"userId":"u","date":"2025-10-02","rMSSD":62,"capturedAt":"2025-10-01T17:06:24.028Z"}}"#;
        let v = validate(ok).expect("valid");
        assert_eq!(v.user_id, "u");
        assert_eq!(v.rmssd, 62.0);
        assert_eq!(v.ln_rmssd, 62f64.ln());
        assert!((v.ln_rmssd - 4.127134385045092).abs() < 1e-15);
        assert_eq!(
            v.captured_at.map(|t| t.to_string()),
            Some("2025-10-01 17:06:24.028".to_string())
        );
        for bad in [
            &br#"not json"#[..],
            br#"{"eventId":"e"}"#,
            br#"{"payload":{"userId":"","date":"2025-10-02","rMSSD":62}}"#,
            br#"{"payload":{"userId":"u","date":"2025-13-02","rMSSD":62}}"#,
            br#"{"payload":{"userId":"u","date":"2025-1-2","rMSSD":62}}"#,
            br#"{"payload":{"userId":"u","date":"2025-10-02","rMSSD":-1}}"#,
            br#"{"payload":{"userId":"u","date":"2025-10-02","rMSSD":0}}"#,
            br#"{"payload":{"userId":"u","date":"2025-10-02","rMSSD":"62"}}"#,
            br#"{"payload":{"userId":"u","date":"2025-10-02"}}"#,
        ] {
            assert!(validate(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let poison = serde_json::to_vec(&HrvEvent::poison(1, "t")).expect("json");
        assert!(validate(&poison).expect_err("poison").contains("rMSSD"));
        let good = serde_json::to_vec(&HrvEvent::synthetic(1, "t")).expect("json");
        assert!(validate(&good).is_ok());
    }

    #[test]
    fn metrics_render_with_the_seed_labels() {
        let mut m = Metrics::default();
        let unbound = m.render("s", "d", 1.5);
        assert!(!unbound.contains("normalize_hrv_messages_total{"));
        assert!(unbound.contains("process_start_time_seconds 1.5\n"));
        m.bound_stream = Some("AA_CORE_HOT".into());
        m.count(Outcome::Success);
        m.count(Outcome::Dlq);
        m.observe(0.003);
        m.observe(0.2);
        m.observe(42.0);
        let text = m.render(
            "athlete-ally.hrv.raw-received",
            "normalize-hrv-durable",
            1759338384.028,
        );
        assert!(text.contains(
            "normalize_hrv_messages_total{result=\"success\",subject=\"athlete-ally.hrv.raw-received\",stream=\"AA_CORE_HOT\",durable=\"normalize-hrv-durable\"} 1\n"
        ));
        assert!(text.contains("normalize_hrv_messages_total{result=\"dlq\",subject=\"athlete-ally.hrv.raw-received\",stream=\"AA_CORE_HOT\",durable=\"normalize-hrv-durable\"} 1\n"));
        assert!(text.contains("normalize_hrv_messages_total{result=\"retry\","));
        let b = |le: &str, n: u64| {
            format!("normalize_hrv_processing_duration_seconds_bucket{{stream=\"AA_CORE_HOT\",durable=\"normalize-hrv-durable\",le=\"{le}\"}} {n}\n")
        };
        for (le, n) in [
            ("0.005", 1),
            ("0.1", 1),
            ("0.25", 2),
            ("1", 2),
            ("10", 2),
            ("+Inf", 3),
        ] {
            assert!(text.contains(&b(le, n)), "missing {}", b(le, n));
        }
        assert!(text.contains("normalize_hrv_processing_duration_seconds_count{stream=\"AA_CORE_HOT\",durable=\"normalize-hrv-durable\"} 3\n"));
        assert!(text.contains("normalize_hrv_processing_duration_seconds_sum{stream=\"AA_CORE_HOT\",durable=\"normalize-hrv-durable\"} 42.203"));
        assert!(text.contains("# TYPE normalize_hrv_processing_duration_seconds histogram\n"));
        assert!(text.contains(
            "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds 1759338384.028\n"
        ));
        // Every line is a comment or `name{labels} value` / `name value`.
        for line in text.lines() {
            assert!(
                line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line
                        .rsplit_once(' ')
                        .is_some_and(|(_, v)| v.parse::<f64>().is_ok()),
                "{line}"
            );
        }
        assert_eq!(
            crate::promtext::escape_label_value("a\"b\\c\nd"),
            "a\\\"b\\\\c\\nd"
        );
    }

    #[test]
    fn secrets_are_redacted_from_log_lines() {
        let s = secrets_of("postgres://user:s3cr%40t@db:5432/x");
        assert!(s.contains(&"s3cr%40t".to_string()));
        assert!(s.contains(&"s3cr@t".to_string()));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let log = LogSink::open(&path, s).expect("open");
        log.line("failed: postgres://user:s3cr%40t@db:5432/x and s3cr@t");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("s3cr"), "{text}");
        let (ts, rest) = text.trim_end().split_once(' ').expect("timestamp");
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
        assert!(ts.ends_with('Z'));
        assert_eq!(rest, "failed: *** and ***");
    }
}
