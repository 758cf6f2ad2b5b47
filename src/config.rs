//! checks.toml: what to watch and the thresholds, for any service's cutover.
//!
//! Loading is two steps (raw syntax, then meaning), and every problem is
//! reported with the file, the line and the dotted key at fault, all at once:
//! 1. the text is parsed with spans kept, so any key path can be mapped to a line;
//! 2. `${VAR:-default}` is expanded in string values (endpoints and secrets
//!    come from the environment), then the typed structure is deserialized
//!    (`deny_unknown_fields` catches typos) and validated. Serde stops at
//!    the first unknown key or wrong type, so `deserialize_collecting`
//!    reports it, takes the key out (or puts a placeholder in for a required
//!    one) and tries again: one run lists every problem of every section.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::secret::{Secret, SecretUrl};
use crate::subjects;

/// One problem in a config file, located for a person to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file as given on the command line.
    pub file: PathBuf,
    /// 1-based line, when the key exists in the file (a missing key has none).
    pub line: Option<usize>,
    /// Dotted key path, e.g. `streams.hot[0].max_age`.
    pub key: String,
    /// One line saying what is wrong.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{line}: {}: {}",
                self.file.display(),
                self.key,
                self.message
            ),
            None => write!(f, "{}: {}: {}", self.file.display(), self.key, self.message),
        }
    }
}

/// Why a config was refused: every problem found, not just the first.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file as given.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but is wrong; each problem is located.
    #[error("{}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// Every problem, in file order where known.
        problems: Vec<ConfigProblem>,
    },
}

/// Validated configuration: the only form the rest of the program sees.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was loaded from (shown in output).
    pub source: PathBuf,
    /// The soak itself: its name and T0.
    pub soak: SoakConfig,
    /// Per-probe timeout.
    pub probe_timeout: Duration,
    /// NATS connection.
    pub nats: NatsConfig,
    /// Expected streams by role.
    pub streams: StreamsConfig,
    /// The durable consumer the service binds.
    pub consumer: ConsumerConfig,
    /// The service's Prometheus endpoint and the series to read.
    pub metrics: MetricsConfig,
    /// The table the service writes.
    pub database: DatabaseConfig,
    /// The service's log and what counts as a fallback there.
    pub log: LogConfig,
    /// The service's env file and the values it must hold.
    pub service_env: ServiceEnvConfig,
    /// Thresholds per criterion.
    pub criteria: CriteriaConfig,
    /// The daemon: interval, state, reports, soak policy.
    pub watch: WatchConfig,
    /// Alert routes and lifecycle.
    pub alerts: std::sync::Arc<crate::alert::routes::AlertsConfig>,
    /// The one-shot rollback and what triggers it; None when not configured.
    pub rollback: Option<RollbackSettings>,
}

/// `[rollback]`: the runbook's steps plus the triggers that fire it.
#[derive(Debug, Clone)]
pub struct RollbackSettings {
    /// Steps and mode.
    pub run: crate::rollback::RollbackConfig,
    /// What fires it, each held for a duration.
    pub triggers: Vec<RollbackTrigger>,
}

/// One trigger: a criterion failing for `hold`, or the DLQ spike rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackTrigger {
    /// Name as configured (a criterion id or `dlq_spike`).
    pub name: String,
    /// The criterion, unless this is the DLQ spike rule.
    pub criterion: Option<crate::verdict::CriterionId>,
    /// How long the failure must have lasted.
    pub hold: Duration,
}

/// Settings of `soakwatch watch`, validated.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Time between sampling rounds.
    pub interval: Duration,
    /// The SQLite state database (history survives restarts).
    pub state: PathBuf,
    /// Where checkpoint reports and charts go.
    pub reports_dir: PathBuf,
    /// Checkpoints after T0 (the seed: 24 h and 48 h).
    pub checkpoints: Vec<Duration>,
    /// Below this share of judged time a criterion's soak verdict is unknown.
    pub min_coverage: f64,
    /// A longer silence between samples is a gap (unknown for its length).
    pub max_gap: Duration,
    /// A failing criterion must pass this long before it recovers.
    pub recover_after: Duration,
    /// A raw failure must hold this long before it counts, per criterion.
    pub fail_for: BTreeMap<crate::verdict::CriterionId, Duration>,
    /// The DLQ spike rate (seed: 10 messages per minute): more than
    /// `dlq_spike_per_min` x `dlq_spike_window` / 1 min messages dead-lettered
    /// within the trailing window is a spike (fails `dlq` at once, and is the
    /// `dlq_spike` rollback trigger).
    pub dlq_spike_per_min: f64,
    /// The trailing window of real time the spike is counted over; a window
    /// that samples do not cover yet can never be a spike.
    pub dlq_spike_window: Duration,
    /// The daemon's own /metrics and /healthz; None = no listener.
    pub listen: Option<std::net::SocketAddr>,
    /// Full snapshots older than this are thinned (cycle records are kept).
    pub keep_full_snapshots: Duration,
    /// Thinned snapshots are kept one per this span.
    pub thin_to: Duration,
}

/// The soak's identity and start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoakConfig {
    /// Human name, shown in reports.
    #[serde(default = "default_soak_name")]
    pub name: String,
    /// T0 of the soak; a service restart after it (plus grace) is reported.
    #[serde(default)]
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Planned length of the soak.
    #[serde(default = "default_soak_duration", with = "humantime_serde")]
    pub duration: Duration,
}

fn default_soak_name() -> String {
    "soak".into()
}
fn default_soak_duration() -> Duration {
    Duration::from_secs(48 * 3600)
}

/// How to reach NATS; secrets are wrapped so they cannot be printed.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// Server URL(s), comma separated as NATS clients accept.
    pub url: SecretUrl,
    /// Token auth.
    pub token: Secret,
    /// User for user/password auth.
    pub user: String,
    /// Password for user/password auth.
    pub password: Secret,
    /// A `.creds` file (JWT + nkey).
    pub creds_file: Option<PathBuf>,
    /// Require TLS even for nats:// URLs.
    pub tls_required: bool,
    /// Extra root CA for the server's certificate.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate for mutual TLS.
    pub tls_cert_file: Option<PathBuf>,
    /// Client key for mutual TLS.
    pub tls_key_file: Option<PathBuf>,
}

/// A stream the topology must contain, as deployed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    /// Stream name.
    pub name: String,
    /// Exactly these subject patterns (order ignored).
    pub subjects: Vec<String>,
    /// `file` or `memory`, when it matters.
    #[serde(default)]
    pub storage: Option<String>,
    /// Replica count, when it matters.
    #[serde(default)]
    pub replicas: Option<usize>,
    /// Max age, when it matters (0 = unlimited).
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Message count recorded at cutover (legacy and DLQ streams).
    #[serde(default)]
    pub baseline_messages: Option<u64>,
    /// Last sequence recorded at cutover; a stream that expires messages by
    /// age keeps its last_seq, so this is the sharper "nothing was written" test.
    #[serde(default)]
    pub baseline_last_seq: Option<u64>,
}

/// The topology: one legacy stream, the hot streams, one DLQ.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamsConfig {
    /// The stream traffic was moved away from; it must stay idle.
    pub legacy: StreamSpec,
    /// The streams traffic now goes to.
    pub hot: Vec<StreamSpec>,
    /// Dead-letter stream; growth means messages failed.
    pub dlq: StreamSpec,
}

impl StreamsConfig {
    /// Every configured stream, legacy first, DLQ last.
    pub fn all(&self) -> Vec<&StreamSpec> {
        let mut v = vec![&self.legacy];
        v.extend(self.hot.iter());
        v.push(&self.dlq);
        v
    }
}

/// The durable consumer and the configuration it must have.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Stream the consumer must live on (one of the hot streams).
    pub stream: String,
    /// Durable name.
    pub durable: String,
    /// Expected filter subject.
    pub filter_subject: String,
    /// Expected ack policy: explicit, all or none.
    #[serde(default = "default_ack_policy")]
    pub ack_policy: String,
    /// Expected ack wait; also what the service's env file must say.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// Expected max deliveries.
    pub max_deliver: i64,
    /// Expected max ack pending.
    #[serde(default)]
    pub max_ack_pending: Option<i64>,
}

fn default_ack_policy() -> String {
    "explicit".into()
}

/// The service's `/metrics` and the names in it.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Where to scrape.
    pub url: SecretUrl,
    /// Counter of processed messages, labelled by result and stream.
    pub messages_counter: String,
    /// Labels every selected series must carry (e.g. the durable).
    pub matchers: Vec<(String, String)>,
    /// Label carrying the outcome.
    pub result_label: String,
    /// Outcome value of a good message.
    pub success_result: String,
    /// Outcome value of a dead-lettered message.
    pub dlq_result: String,
    /// Outcomes that are neither success nor failure (e.g. retry: the message comes back).
    pub uncounted_results: Vec<String>,
    /// Label carrying the stream the message came from.
    pub stream_label: String,
    /// Processing-time histogram; None = not configured.
    pub latency_histogram: Option<String>,
    /// Gauge of the process start time (seconds since epoch).
    pub process_start_metric: Option<String>,
    /// Largest /metrics body read, whatever its framing: a runaway exporter
    /// must not take our memory or our probe budget.
    pub max_body_bytes: u64,
}

/// What the derived-column spot check computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DerivedFunction {
    /// Natural logarithm (lnRmssd = ln(rmssd)).
    Ln,
    /// Base-10 logarithm.
    Log10,
    /// Square root.
    Sqrt,
}

impl DerivedFunction {
    /// The SQL function name; from a closed set, never from user text.
    pub fn sql(self) -> &'static str {
        match self {
            DerivedFunction::Ln => "ln",
            DerivedFunction::Log10 => "log",
            DerivedFunction::Sqrt => "sqrt",
        }
    }
}

/// A column that must equal a function of another.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DerivedCheck {
    /// The derived column (e.g. lnRmssd).
    pub column: String,
    /// The source column (e.g. rmssd).
    pub source: String,
    /// The function applied.
    pub function: DerivedFunction,
    /// Allowed absolute difference.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// How many of the newest rows to check.
    #[serde(default = "default_sample_rows")]
    pub sample_rows: i64,
}

fn default_tolerance() -> f64 {
    1e-9
}
fn default_sample_rows() -> i64 {
    200
}

/// The table the service writes.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Connection URL (credentials hidden in output).
    pub url: SecretUrl,
    /// Schema-qualified or plain table name.
    pub table: String,
    /// Column set when a row is created.
    pub created_column: String,
    /// Column refreshed when an upsert updates a row; None when the table has none.
    pub updated_column: Option<String>,
    /// "Recent" for the writes-are-happening test.
    pub recent_window: Duration,
    /// Optional derived-column spot check.
    pub derived: Option<DerivedCheck>,
}

/// The service's log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Path of the log file.
    pub path: PathBuf,
    /// Lines matching any of these are fallback events.
    pub fallback_patterns: Vec<regex::Regex>,
    /// Lines matching any of these are never fallback events (e.g. the candidates line).
    pub ignore_patterns: Vec<regex::Regex>,
    /// Only the last this-many bytes are scanned (logs grow for 48 h).
    pub max_scan_bytes: u64,
}

/// The service's env file.
#[derive(Debug, Clone)]
pub struct ServiceEnvConfig {
    /// Path of the `.env`.
    pub path: PathBuf,
    /// Key holding the ack wait the service uses.
    pub ack_wait_key: Option<String>,
    /// Unit of that key's value: `ms` or `s`.
    pub ack_wait_unit: String,
    /// Keys that must hold exactly these values (e.g. EVENT_STREAM_MODE=multi).
    pub expect: BTreeMap<String, String>,
}

/// Thresholds per criterion; the defaults are the seed's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriteriaConfig {
    /// Lag (pending + ack pending) at or above which the criterion warns.
    #[serde(default = "default_lag_warn")]
    pub lag_warn: u64,
    /// Lag at or above which it fails (seed: must stay under 10).
    #[serde(default = "default_lag_fail")]
    pub lag_fail: u64,
    /// Redelivered messages at or above which it warns.
    #[serde(default = "default_redeliveries_warn")]
    pub redeliveries_warn: u64,
    /// Redelivered messages at or above which it fails.
    #[serde(default = "default_redeliveries_fail")]
    pub redeliveries_fail: u64,
    /// Minimum success ratio (0..1).
    #[serde(default = "default_success_rate")]
    pub success_rate_min: f64,
    /// Maximum p95 processing time.
    #[serde(default = "default_p95", with = "humantime_serde")]
    pub p95_max: Duration,
    /// Quantile for the latency criterion.
    #[serde(default = "default_quantile")]
    pub latency_quantile: f64,
    /// Rows that may be missing because they are in flight.
    #[serde(default = "default_in_flight")]
    pub db_in_flight_tolerance: u64,
    /// A service restart this long after T0 or more is reported.
    #[serde(default = "default_restart_grace", with = "humantime_serde")]
    pub restart_grace: Duration,
}

fn default_lag_warn() -> u64 {
    5
}
fn default_lag_fail() -> u64 {
    10
}
fn default_redeliveries_warn() -> u64 {
    1
}
fn default_redeliveries_fail() -> u64 {
    10
}
fn default_success_rate() -> f64 {
    0.999
}
fn default_p95() -> Duration {
    Duration::from_millis(500)
}
fn default_quantile() -> f64 {
    0.95
}
fn default_in_flight() -> u64 {
    5
}
fn default_restart_grace() -> Duration {
    Duration::from_secs(300)
}

impl Default for CriteriaConfig {
    fn default() -> Self {
        CriteriaConfig {
            lag_warn: default_lag_warn(),
            lag_fail: default_lag_fail(),
            redeliveries_warn: default_redeliveries_warn(),
            redeliveries_fail: default_redeliveries_fail(),
            success_rate_min: default_success_rate(),
            p95_max: default_p95(),
            latency_quantile: default_quantile(),
            db_in_flight_tolerance: default_in_flight(),
            restart_grace: default_restart_grace(),
        }
    }
}

// ---------------------------------------------------------------------------
// Raw forms: exactly what the file says, before meaning is checked.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_soak")]
    soak: SoakConfig,
    #[serde(default)]
    probes: RawProbes,
    nats: RawNats,
    streams: StreamsConfig,
    consumer: ConsumerConfig,
    metrics: RawMetrics,
    database: RawDatabase,
    log: RawLog,
    service_env: RawServiceEnv,
    #[serde(default)]
    criteria: CriteriaConfig,
    #[serde(default)]
    watch: RawWatch,
    #[serde(default)]
    alerts: RawAlerts,
    #[serde(default)]
    rollback: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    #[serde(default = "default_repeat", with = "humantime_serde")]
    repeat_interval: Duration,
    #[serde(default = "default_unknown_after", with = "humantime_serde")]
    unknown_after: Duration,
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    max_backoff: Duration,
    #[serde(default = "default_severity")]
    severity: BTreeMap<crate::verdict::CriterionId, crate::alert::model::Severity>,
    #[serde(default)]
    routes: Vec<RawRoute>,
}

impl Default for RawAlerts {
    fn default() -> Self {
        RawAlerts {
            repeat_interval: default_repeat(),
            unknown_after: default_unknown_after(),
            max_backoff: default_max_backoff(),
            severity: default_severity(),
            routes: Vec::new(),
        }
    }
}

fn default_repeat() -> Duration {
    Duration::from_secs(4 * 3600)
}
fn default_unknown_after() -> Duration {
    Duration::from_secs(600)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(300)
}
fn default_severity() -> BTreeMap<crate::verdict::CriterionId, crate::alert::model::Severity> {
    use crate::alert::model::Severity::Critical;
    use crate::verdict::CriterionId as C;
    [
        (C::Dlq, Critical),
        (C::ServiceUp, Critical),
        (C::DbWrites, Critical),
        (C::Fallback, Critical),
    ]
    .into_iter()
    .collect()
}
fn default_true() -> bool {
    true
}
fn default_sink_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: String,
    /// email, webhook, slack or alertmanager.
    kind: String,
    #[serde(default = "default_true")]
    enabled: bool,
    #[serde(default)]
    severities: Vec<crate::alert::model::Severity>,
    #[serde(default)]
    criteria: Vec<crate::verdict::CriterionId>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    // email
    #[serde(default)]
    smtp_host: String,
    #[serde(default)]
    smtp_port: Option<u16>,
    #[serde(default)]
    smtp_tls: Option<crate::alert::sink::SmtpTls>,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: Vec<String>,
    // webhook, slack, alertmanager
    #[serde(default)]
    url: String,
    #[serde(default)]
    hmac_secret: String,
    #[serde(default)]
    format: Option<crate::alert::sink::WebhookFormat>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWatch {
    #[serde(default = "default_interval", with = "humantime_serde")]
    interval: Duration,
    #[serde(default = "default_state")]
    state: String,
    #[serde(default = "default_reports_dir")]
    reports_dir: String,
    #[serde(default = "default_checkpoints")]
    checkpoints: Vec<String>,
    #[serde(default = "default_min_coverage")]
    min_coverage: f64,
    #[serde(default, with = "humantime_serde")]
    max_gap: Option<Duration>,
    #[serde(default = "default_recover_after", with = "humantime_serde")]
    recover_after: Duration,
    #[serde(default = "default_fail_for", rename = "for")]
    fail_for: BTreeMap<crate::verdict::CriterionId, String>,
    #[serde(default = "default_dlq_spike")]
    dlq_spike_per_min: f64,
    #[serde(default = "default_dlq_spike_window", with = "humantime_serde")]
    dlq_spike_window: Duration,
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "default_keep_full", with = "humantime_serde")]
    keep_full_snapshots: Duration,
    #[serde(default = "default_thin_to", with = "humantime_serde")]
    thin_to: Duration,
}

impl Default for RawWatch {
    fn default() -> Self {
        RawWatch {
            interval: default_interval(),
            state: default_state(),
            reports_dir: default_reports_dir(),
            checkpoints: default_checkpoints(),
            min_coverage: default_min_coverage(),
            max_gap: None,
            recover_after: default_recover_after(),
            fail_for: default_fail_for(),
            dlq_spike_per_min: default_dlq_spike(),
            dlq_spike_window: default_dlq_spike_window(),
            listen: default_listen(),
            keep_full_snapshots: default_keep_full(),
            thin_to: default_thin_to(),
        }
    }
}

/// The shortest `watch.interval` accepted: each cycle runs every probe, and
/// at 1ns the daemon ran at 97 % CPU and never got round to its SIGTERM.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_state() -> String {
    "reports/soakwatch-state.sqlite".into()
}
fn default_reports_dir() -> String {
    "reports".into()
}
fn default_checkpoints() -> Vec<String> {
    vec!["24h".into(), "48h".into()]
}
fn default_min_coverage() -> f64 {
    0.95
}
fn default_recover_after() -> Duration {
    Duration::from_secs(60)
}
fn default_fail_for() -> BTreeMap<crate::verdict::CriterionId, String> {
    use crate::verdict::CriterionId as C;
    // The seed's DLQ rule; one slow window (a database stall spanning a
    // sample, a burst of slow messages) is not an incident either.
    [(C::Dlq, "5m"), (C::DbWrites, "30s"), (C::P95Latency, "1m")]
        .into_iter()
        .map(|(c, d)| (c, d.to_string()))
        .collect()
}
fn default_dlq_spike() -> f64 {
    10.0
}
fn default_dlq_spike_window() -> Duration {
    Duration::from_secs(60)
}
fn default_listen() -> String {
    "127.0.0.1:9464".into()
}
fn default_keep_full() -> Duration {
    Duration::from_secs(6 * 3600)
}
fn default_thin_to() -> Duration {
    Duration::from_secs(300)
}

fn default_soak() -> SoakConfig {
    SoakConfig {
        name: default_soak_name(),
        started_at: None,
        duration: default_soak_duration(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbes {
    #[serde(default = "default_timeout", with = "humantime_serde")]
    timeout: Duration,
}

impl Default for RawProbes {
    fn default() -> Self {
        RawProbes {
            timeout: default_timeout(),
        }
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNats {
    url: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    creds_file: String,
    #[serde(default)]
    tls_required: bool,
    #[serde(default)]
    tls_ca_file: String,
    #[serde(default)]
    tls_cert_file: String,
    #[serde(default)]
    tls_key_file: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    url: String,
    messages_counter: String,
    #[serde(default, rename = "match")]
    matchers: BTreeMap<String, String>,
    #[serde(default = "default_result_label")]
    result_label: String,
    #[serde(default = "default_success")]
    success_result: String,
    #[serde(default = "default_dlq")]
    dlq_result: String,
    #[serde(default)]
    uncounted_results: Vec<String>,
    #[serde(default = "default_stream_label")]
    stream_label: String,
    #[serde(default)]
    latency_histogram: String,
    #[serde(default)]
    process_start_metric: String,
    #[serde(default = "default_max_body")]
    max_body_bytes: u64,
}

fn default_max_body() -> u64 {
    16 * 1024 * 1024
}

fn default_result_label() -> String {
    "result".into()
}
fn default_success() -> String {
    "success".into()
}
fn default_dlq() -> String {
    "dlq".into()
}
fn default_stream_label() -> String {
    "stream".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: String,
    table: String,
    created_column: String,
    #[serde(default)]
    updated_column: String,
    #[serde(default = "default_recent", with = "humantime_serde")]
    recent_window: Duration,
    #[serde(default)]
    derived: Option<DerivedCheck>,
}

fn default_recent() -> Duration {
    Duration::from_secs(600)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    path: String,
    #[serde(default)]
    fallback_patterns: Vec<String>,
    #[serde(default)]
    ignore_patterns: Vec<String>,
    #[serde(default = "default_max_scan")]
    max_scan_bytes: u64,
}

fn default_max_scan() -> u64 {
    64 * 1024 * 1024
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServiceEnv {
    path: String,
    #[serde(default)]
    ack_wait_key: String,
    #[serde(default = "default_ack_unit")]
    ack_wait_unit: String,
    #[serde(default)]
    expect: BTreeMap<String, String>,
}

fn default_ack_unit() -> String {
    "ms".into()
}

// ---------------------------------------------------------------------------
// Loading.

/// Looks up environment variables; injectable so tests need not touch the process env.
pub trait EnvLookup {
    /// The variable's value, None when unset.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl EnvLookup for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> EnvLookup for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

impl Config {
    /// Reads and validates a config file against the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.display().to_string(),
            source,
        })?;
        Config::from_text(path, &text, &ProcessEnv)
    }

    /// Validates config text; `path` is only used in messages.
    pub fn from_text(path: &Path, text: &str, env: &dyn EnvLookup) -> Result<Config, ConfigError> {
        let locate = LineLocator::new(text);
        let fail = |problems: Vec<(String, String)>, secrets: &BTreeSet<String>| {
            let mut problems: Vec<ConfigProblem> = problems
                .into_iter()
                .map(|(key, message)| ConfigProblem {
                    file: path.to_path_buf(),
                    line: locate.line_of(&key),
                    key,
                    message: hide_values(&message, secrets),
                })
                .collect();
            problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
            ConfigError::Invalid { problems }
        };

        // Syntax first: the parser's own error carries a span.
        if let Err(e) = toml::de::DeTable::parse(text) {
            let line = e.span().map(|s| locate.line_of_offset(s.start));
            return Err(ConfigError::Invalid {
                problems: vec![ConfigProblem {
                    file: path.to_path_buf(),
                    line,
                    key: "(syntax)".into(),
                    message: e.message().trim().replace('\n', " "),
                }],
            });
        }
        let mut table: toml::Table = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                return Err(fail(
                    vec![("(syntax)".into(), e.message().to_string())],
                    &BTreeSet::new(),
                ))
            }
        };

        let mut problems = Vec::new();
        let mut secrets = BTreeSet::new();
        interpolate_table(&mut table, "", env, &mut problems, &mut secrets);

        // Every unknown key and wrong type, then every bad value: all of them
        // in one run (an operator fixing a file should not meet them one by one).
        let mut reported: BTreeSet<String> = problems.iter().map(|(k, _)| k.clone()).collect();
        let Some(raw) = deserialize_collecting::<RawConfig>(
            toml::Value::Table(table),
            "",
            &mut problems,
            &mut reported,
        ) else {
            return Err(fail(problems, &secrets));
        };
        let mut semantic = Vec::new();
        let config = validate(path, raw, &mut semantic);
        // A value already reported (or replaced by a placeholder) is not
        // judged again: its "problem" would be the placeholder's.
        problems.extend(semantic.into_iter().filter(|(k, _)| {
            !reported.iter().any(|r| {
                k == r || k.starts_with(&format!("{r}.")) || k.starts_with(&format!("{r}["))
            })
        }));
        if problems.is_empty() {
            // From here on, text from elsewhere (restart output, receivers'
            // errors) is scrubbed of this config's credentials everywhere.
            crate::secret::register(&config.scrubber());
            Ok(config)
        } else {
            Err(fail(problems, &secrets))
        }
    }
}

/// Most problems one section can report before giving up (a file of
/// garbage must not loop for long).
const MAX_PASSES: usize = 200;

/// Deserializes `value` as a `T`, collecting every unknown key and wrong
/// type instead of stopping at the first (serde does): each offending key
/// is reported as `(prefix + path, message)` and removed, a removed required
/// key is replaced by a placeholder of a type that gets past it, and
/// deserialization is retried. `reported` receives every key so handled
/// (validation must not judge the placeholders). None when it still fails.
fn deserialize_collecting<T: serde::de::DeserializeOwned>(
    mut value: toml::Value,
    prefix: &str,
    problems: &mut Vec<(String, String)>,
    reported: &mut BTreeSet<String>,
) -> Option<T> {
    let join = |p: &str| match (prefix.is_empty(), p.is_empty()) {
        (true, _) => p.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}.{p}"),
    };
    let mut placeholders: BTreeSet<String> = BTreeSet::new();
    for _ in 0..MAX_PASSES {
        let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(t) => return Some(t),
            Err(e) => e,
        };
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = err.inner().message().to_string();
        if let Some(field) = quoted_after(&message, "unknown field `") {
            let key = child_path(&path, &field);
            problems.push((join(&key), message.clone()));
            reported.insert(join(&key));
            if !remove_at(&mut value, &key) {
                return None;
            }
            continue;
        }
        if let Some(field) = quoted_after(&message, "missing field `") {
            let key = child_path(&path, &field);
            if !reported.contains(&join(&key)) {
                problems.push((join(&key), message.clone()));
                reported.insert(join(&key));
            }
            // Try placeholders of each type until this field is past.
            let tried = placeholders.len();
            if !place_holder(&mut value, &key, &mut placeholders) || placeholders.len() == tried {
                return None;
            }
            continue;
        }
        // A wrong type or value at `path`: report, drop it, retry (a
        // placeholder goes in if the field turns out to be required).
        if path.is_empty() || reported.contains(&join(&path)) && !placeholders.contains(&path) {
            if !reported.contains(&join(&path)) {
                problems.push((join(&path), message));
            }
            return None;
        }
        if placeholders.contains(&path) {
            // The placeholder itself was the wrong type: try the next one.
            if !place_holder(&mut value, &path, &mut placeholders) {
                return None;
            }
            continue;
        }
        problems.push((join(&path), message));
        reported.insert(join(&path));
        if !remove_at(&mut value, &path) {
            return None;
        }
    }
    None
}

/// The text between `start` and the next backtick in `message`.
fn quoted_after(message: &str, start: &str) -> Option<String> {
    let rest = &message[message.find(start)? + start.len()..];
    Some(rest[..rest.find('`')?].to_string())
}

/// `path.field`, unless serde already pointed at the field itself.
fn child_path(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else if path == field || path.ends_with(&format!(".{field}")) {
        path.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// The table holding the last segment of `path`, and that segment.
fn parent_of<'v>(value: &'v mut toml::Value, path: &str) -> Option<(&'v mut toml::Value, String)> {
    let segs: Vec<String> = parse_key_path(path)
        .into_iter()
        .map(|s| match s {
            Seg::Key(k) => k.to_string(),
            Seg::Index(i) => format!("[{i}]"),
        })
        .collect();
    let (last, init) = segs.split_last()?;
    let mut cur = value;
    for seg in init {
        cur = match seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(i) => cur.as_array_mut()?.get_mut(i.parse::<usize>().ok()?)?,
            None => cur.as_table_mut()?.get_mut(seg)?,
        };
    }
    Some((cur, last.clone()))
}

/// Removes the value at `path` (a key, or an array element); false when absent.
fn remove_at(value: &mut toml::Value, path: &str) -> bool {
    let Some((parent, last)) = parent_of(value, path) else {
        return false;
    };
    match last.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        Some(i) => match (parent.as_array_mut(), i.parse::<usize>()) {
            (Some(a), Ok(i)) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        None => parent
            .as_table_mut()
            .is_some_and(|t| t.remove(&last).is_some()),
    }
}

/// Puts the next untried placeholder type at `path`; false when all were tried.
fn place_holder(value: &mut toml::Value, path: &str, tried: &mut BTreeSet<String>) -> bool {
    let candidates = [
        toml::Value::String(String::new()),
        toml::Value::Integer(1),
        toml::Value::Float(1.0),
        toml::Value::Boolean(false),
        toml::Value::Array(Vec::new()),
        toml::Value::Table(toml::Table::new()),
    ];
    let Some((parent, last)) = parent_of(value, path) else {
        return false;
    };
    let Some(t) = parent.as_table_mut() else {
        return false;
    };
    for (i, c) in candidates.into_iter().enumerate() {
        let tag = format!("{path}#{i}");
        if tried.insert(tag) {
            tried.insert(path.to_string());
            t.insert(last, c);
            return true;
        }
    }
    false
}

/// Replaces any substituted environment value in a message, so a type error on
/// `url = "${DATABASE_URL}"` cannot print the URL.
fn hide_values(message: &str, secrets: &BTreeSet<String>) -> String {
    let mut out = message.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        out = out.replace(s.as_str(), "***");
    }
    out
}

fn interpolate_table(
    table: &mut toml::Table,
    prefix: &str,
    env: &dyn EnvLookup,
    problems: &mut Vec<(String, String)>,
    secrets: &mut BTreeSet<String>,
) {
    for (k, v) in table.iter_mut() {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        interpolate_value(v, &key, env, problems, secrets);
    }
}

fn interpolate_value(
    value: &mut toml::Value,
    key: &str,
    env: &dyn EnvLookup,
    problems: &mut Vec<(String, String)>,
    secrets: &mut BTreeSet<String>,
) {
    match value {
        toml::Value::String(s) => match expand_env(s, env) {
            Ok((expanded, used)) => {
                secrets.extend(used);
                *s = expanded;
            }
            Err(msg) => problems.push((key.to_string(), msg)),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_value(item, &format!("{key}[{i}]"), env, problems, secrets);
            }
        }
        toml::Value::Table(t) => interpolate_table(t, key, env, problems, secrets),
        _ => {}
    }
}

/// Expands `${VAR}`, `${VAR:-default}` and `$${` (a literal `${`). Returns the
/// text and the substituted environment values (to hide them in messages).
/// An unset `${VAR}` without default is an error: silently empty endpoints
/// would make probes fail later with a worse message.
pub fn expand_env(s: &str, env: &dyn EnvLookup) -> Result<(String, Vec<String>), String> {
    let mut out = String::with_capacity(s.len());
    let mut used = Vec::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
            continue;
        }
        let Some(body_start) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err("unterminated ${...} in value".into());
        };
        let body = &body_start[..end];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        let valid_name = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid_name {
            return Err(format!(
                "bad environment variable name `{name}` in ${{...}}"
            ));
        }
        match (env.var(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => {
                out.push_str(&v);
                used.push(v);
            }
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                "environment variable {name} is not set (write ${{{name}:-default}} for a default)"
            ))
            }
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok((out, used))
}

fn non_empty_path(s: &str) -> Option<PathBuf> {
    (!s.trim().is_empty()).then(|| PathBuf::from(s))
}

fn validate(path: &Path, raw: RawConfig, problems: &mut Vec<(String, String)>) -> Config {
    let mut p = |key: &str, msg: String| problems.push((key.to_string(), msg));

    if raw.probes.timeout.is_zero() {
        p("probes.timeout", "must be greater than 0".into());
    }

    // NATS
    for (i, part) in raw.nats.url.split(',').enumerate() {
        match url::Url::parse(part.trim()) {
            Ok(u) if matches!(u.scheme(), "nats" | "tls" | "ws" | "wss") => {}
            Ok(u) => p(
                "nats.url",
                format!(
                    "server {} has scheme `{}`; expected nats, tls, ws or wss",
                    i + 1,
                    u.scheme()
                ),
            ),
            Err(e) => p("nats.url", format!("server {} is not a URL: {e}", i + 1)),
        }
    }
    if raw.nats.user.is_empty() != raw.nats.password.is_empty() {
        p(
            "nats.password",
            "user and password must be set together".into(),
        );
    }
    let auth_kinds = [
        !raw.nats.token.is_empty(),
        !raw.nats.user.is_empty(),
        !raw.nats.creds_file.trim().is_empty(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if auth_kinds > 1 {
        p(
            "nats.token",
            "choose one of token, user/password or creds_file".into(),
        );
    }
    if raw.nats.tls_cert_file.is_empty() != raw.nats.tls_key_file.is_empty() {
        p(
            "nats.tls_key_file",
            "tls_cert_file and tls_key_file must be set together".into(),
        );
    }

    // Streams
    let mut names = BTreeSet::new();
    let roles: Vec<(String, &StreamSpec)> =
        std::iter::once(("streams.legacy".to_string(), &raw.streams.legacy))
            .chain(
                raw.streams
                    .hot
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (format!("streams.hot[{i}]"), s)),
            )
            .chain(std::iter::once((
                "streams.dlq".to_string(),
                &raw.streams.dlq,
            )))
            .collect();
    if raw.streams.hot.is_empty() {
        p("streams.hot", "at least one hot stream is required".into());
    }
    for (key, spec) in &roles {
        if spec.name.trim().is_empty() || spec.name.contains(['.', '*', '>', ' ']) {
            p(
                &format!("{key}.name"),
                format!("`{}` is not a valid stream name", spec.name),
            );
        }
        if !names.insert(spec.name.clone()) {
            p(
                &format!("{key}.name"),
                format!("stream `{}` is configured twice", spec.name),
            );
        }
        if spec.subjects.is_empty() {
            p(
                &format!("{key}.subjects"),
                "at least one subject is required".into(),
            );
        }
        for (i, s) in spec.subjects.iter().enumerate() {
            if let Err(e) = subjects::validate_pattern(s) {
                p(&format!("{key}.subjects[{i}]"), e.to_string());
            }
        }
        if let Some(st) = &spec.storage {
            if st != "file" && st != "memory" {
                p(
                    &format!("{key}.storage"),
                    format!("`{st}`: expected file or memory"),
                );
            }
        }
    }

    // Consumer
    if !raw
        .streams
        .hot
        .iter()
        .any(|s| s.name == raw.consumer.stream)
    {
        p(
            "consumer.stream",
            format!("`{}` is not one of the hot streams", raw.consumer.stream),
        );
    } else if let Some(hot) = raw
        .streams
        .hot
        .iter()
        .find(|s| s.name == raw.consumer.stream)
    {
        if !hot
            .subjects
            .iter()
            .any(|pat| subjects::pattern_covers(pat, &raw.consumer.filter_subject))
        {
            p(
                "consumer.filter_subject",
                format!(
                    "`{}` is not within the subjects of stream {}",
                    raw.consumer.filter_subject, hot.name
                ),
            );
        }
    }
    if raw.consumer.durable.trim().is_empty() {
        p("consumer.durable", "must not be empty".into());
    }
    if !matches!(
        raw.consumer.ack_policy.as_str(),
        "explicit" | "all" | "none"
    ) {
        p(
            "consumer.ack_policy",
            format!(
                "`{}`: expected explicit, all or none",
                raw.consumer.ack_policy
            ),
        );
    }

    // Metrics
    match url::Url::parse(&raw.metrics.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        Ok(u) => p(
            "metrics.url",
            format!("scheme `{}`: expected http or https", u.scheme()),
        ),
        Err(e) => p("metrics.url", format!("not a URL: {e}")),
    }
    if raw.metrics.max_body_bytes == 0 {
        p("metrics.max_body_bytes", "must be greater than 0".into());
    }
    if !is_metric_name(&raw.metrics.messages_counter) {
        p("metrics.messages_counter", "not a valid metric name".into());
    }
    for (key, name) in [
        ("metrics.latency_histogram", &raw.metrics.latency_histogram),
        (
            "metrics.process_start_metric",
            &raw.metrics.process_start_metric,
        ),
    ] {
        if !name.is_empty() && !is_metric_name(name) {
            p(key, format!("`{name}` is not a valid metric name"));
        }
    }

    // Database
    match url::Url::parse(&raw.database.url) {
        Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {}
        Ok(u) => p(
            "database.url",
            format!("scheme `{}`: expected postgres", u.scheme()),
        ),
        Err(e) => p("database.url", format!("not a URL: {e}")),
    }
    for (key, v) in [
        ("database.table", &raw.database.table),
        ("database.created_column", &raw.database.created_column),
    ] {
        if v.trim().is_empty() {
            p(key, "must not be empty".into());
        }
    }
    if let Some(d) = &raw.database.derived {
        if !(d.tolerance >= 0.0 && d.tolerance.is_finite()) {
            p(
                "database.derived.tolerance",
                "must be a finite number >= 0".into(),
            );
        }
        if d.sample_rows <= 0 {
            p("database.derived.sample_rows", "must be > 0".into());
        }
    }

    // Log
    let compile =
        |key: &str, pats: &[String], p: &mut dyn FnMut(&str, String)| -> Vec<regex::Regex> {
            pats.iter()
                .enumerate()
                .filter_map(|(i, s)| match regex::Regex::new(s) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        let first = e
                            .to_string()
                            .lines()
                            .last()
                            .unwrap_or("invalid")
                            .trim()
                            .to_string();
                        p(
                            &format!("{key}[{i}]"),
                            format!("bad regular expression: {first}"),
                        );
                        None
                    }
                })
                .collect()
        };
    let fallback_patterns = compile("log.fallback_patterns", &raw.log.fallback_patterns, &mut p);
    let ignore_patterns = compile("log.ignore_patterns", &raw.log.ignore_patterns, &mut p);
    if raw.log.max_scan_bytes == 0 {
        p(
            "log.max_scan_bytes",
            "must be greater than 0 (0 would scan nothing and never see a fallback)".into(),
        );
    }
    if raw.log.fallback_patterns.is_empty() {
        p(
            "log.fallback_patterns",
            "at least one pattern is required".into(),
        );
    }

    // Service env
    if !matches!(raw.service_env.ack_wait_unit.as_str(), "ms" | "s") {
        p(
            "service_env.ack_wait_unit",
            format!("`{}`: expected ms or s", raw.service_env.ack_wait_unit),
        );
    }

    // Criteria
    let c = &raw.criteria;
    if c.lag_warn > c.lag_fail {
        p(
            "criteria.lag_warn",
            "must not exceed criteria.lag_fail".into(),
        );
    }
    if c.redeliveries_warn > c.redeliveries_fail {
        p(
            "criteria.redeliveries_warn",
            "must not exceed criteria.redeliveries_fail".into(),
        );
    }
    if !(c.success_rate_min > 0.0 && c.success_rate_min <= 1.0) {
        p("criteria.success_rate_min", "must be in (0, 1]".into());
    }
    if !(c.latency_quantile > 0.0 && c.latency_quantile < 1.0) {
        p("criteria.latency_quantile", "must be in (0, 1)".into());
    }

    // Watch
    let w = &raw.watch;
    if w.interval < MIN_INTERVAL {
        p(
            "watch.interval",
            format!(
                "`{}`: must be at least {} (a shorter one spins the CPU and starves signal handling)",
                humantime::format_duration(w.interval),
                humantime::format_duration(MIN_INTERVAL)
            ),
        );
    }
    let mut checkpoints = Vec::new();
    for (i, c) in w.checkpoints.iter().enumerate() {
        match humantime::parse_duration(c) {
            Ok(d) if d.is_zero() => p(
                &format!("watch.checkpoints[{i}]"),
                format!("`{c}`: must be after T0 (greater than 0)"),
            ),
            Ok(d) if d > raw.soak.duration => p(
                &format!("watch.checkpoints[{i}]"),
                format!(
                    "`{c}`: past the end of the soak (soak.duration = {}); it would never be written",
                    humantime::format_duration(raw.soak.duration)
                ),
            ),
            Ok(d) => checkpoints.push(d),
            Err(e) => p(&format!("watch.checkpoints[{i}]"), format!("`{c}`: {e}")),
        }
    }
    let mut fail_for = BTreeMap::new();
    for (id, d) in &w.fail_for {
        match humantime::parse_duration(d) {
            Ok(d) => {
                fail_for.insert(*id, d);
            }
            Err(e) => p(&format!("watch.for.{}", id.as_str()), format!("`{d}`: {e}")),
        }
    }
    if !(w.min_coverage > 0.0 && w.min_coverage <= 1.0) {
        p("watch.min_coverage", "must be in (0, 1]".into());
    }
    let listen = if w.listen.trim().is_empty() {
        None
    } else {
        match w.listen.parse::<std::net::SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                p(
                    "watch.listen",
                    format!("`{}`: {e} (use host:port, or \"\" for none)", w.listen),
                );
                None
            }
        }
    };
    // A negative, zero or non-finite rate would make every cycle a spike (a
    // negative one fired a real rollback on a healthy system).
    if !(w.dlq_spike_per_min.is_finite() && w.dlq_spike_per_min > 0.0) {
        p(
            "watch.dlq_spike_per_min",
            format!(
                "`{}`: must be a finite number of messages per minute greater than 0 (seed: 10)",
                w.dlq_spike_per_min
            ),
        );
    }
    if w.dlq_spike_window < w.interval || w.dlq_spike_window.is_zero() {
        p(
            "watch.dlq_spike_window",
            format!(
                "`{}`: must be at least watch.interval ({}): a shorter window is never covered by two samples",
                humantime::format_duration(w.dlq_spike_window),
                humantime::format_duration(w.interval)
            ),
        );
    }
    let max_gap = w.max_gap.unwrap_or(w.interval * 3);
    if max_gap < w.interval {
        p("watch.max_gap", "must be at least watch.interval".into());
    }
    let watch = WatchConfig {
        interval: w.interval,
        state: PathBuf::from(&w.state),
        reports_dir: PathBuf::from(&w.reports_dir),
        checkpoints,
        min_coverage: w.min_coverage,
        max_gap,
        recover_after: w.recover_after,
        fail_for,
        dlq_spike_per_min: w.dlq_spike_per_min,
        dlq_spike_window: w.dlq_spike_window,
        listen,
        keep_full_snapshots: w.keep_full_snapshots,
        thin_to: w.thin_to,
    };

    // Alerts
    let mut routes = Vec::new();
    let mut route_names = BTreeSet::new();
    for (i, r) in raw.alerts.routes.iter().enumerate() {
        let key = |f: &str| format!("alerts.routes[{i}].{f}");
        if r.name.trim().is_empty() {
            p(&key("name"), "must not be empty".into());
        }
        if !route_names.insert(r.name.clone()) {
            p(
                &key("name"),
                format!("route `{}` is configured twice", r.name),
            );
        }
        if !r.enabled {
            // A disabled route is still checked where it can be: enabling it
            // later must not be the moment a `file://` URL is discovered.
            if !r.url.trim().is_empty() {
                match url::Url::parse(&r.url) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                    Ok(u) => p(
                        &key("url"),
                        format!("scheme `{}`: expected http or https", u.scheme()),
                    ),
                    Err(e) => p(&key("url"), format!("not a URL: {e}")),
                }
            }
            continue;
        }
        let timeout = r.timeout.unwrap_or_else(default_sink_timeout);
        let http_url = |p: &mut dyn FnMut(&str, String)| match url::Url::parse(&r.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => true,
            Ok(u) => {
                p(
                    &key("url"),
                    format!("scheme `{}`: expected http or https", u.scheme()),
                );
                false
            }
            Err(e) => {
                p(&key("url"), format!("not a URL: {e}"));
                false
            }
        };
        use crate::alert::sink::{
            AlertmanagerSink, EmailSink, Sink, SmtpTls, WebhookFormat, WebhookSink,
        };
        let sink = match r.kind.as_str() {
            "email" => {
                if r.smtp_host.trim().is_empty() {
                    p(&key("smtp_host"), "required for an email route".into());
                }
                if r.from.trim().is_empty() {
                    p(&key("from"), "required for an email route".into());
                }
                if r.to.is_empty() {
                    p(&key("to"), "at least one recipient is required".into());
                }
                let tls = r.smtp_tls.unwrap_or(SmtpTls::Starttls);
                let port = r.smtp_port.unwrap_or(match tls {
                    SmtpTls::Starttls => 587,
                    SmtpTls::Tls => 465,
                    SmtpTls::None => 25,
                });
                Some(Sink::Email(EmailSink {
                    host: r.smtp_host.clone(),
                    port,
                    tls,
                    username: r.username.clone(),
                    password: Secret::new(r.password.clone()),
                    from: r.from.clone(),
                    to: r.to.clone(),
                    timeout,
                }))
            }
            "webhook" | "slack" => http_url(&mut p).then(|| {
                let format = if r.kind == "slack" {
                    WebhookFormat::Slack
                } else {
                    r.format.unwrap_or(WebhookFormat::Soakwatch)
                };
                Sink::Webhook(WebhookSink {
                    url: SecretUrl::with_secret_path(r.url.clone()),
                    hmac_secret: Secret::new(r.hmac_secret.clone()),
                    format,
                    timeout,
                })
            }),
            "alertmanager" => http_url(&mut p).then(|| {
                Sink::Alertmanager(AlertmanagerSink {
                    base_url: SecretUrl::new(r.url.clone()),
                    timeout,
                })
            }),
            other => {
                p(
                    &key("kind"),
                    format!("`{other}`: expected email, webhook, slack or alertmanager"),
                );
                None
            }
        };
        if let Some(sink) = sink {
            routes.push(crate::alert::routes::Route {
                name: r.name.clone(),
                severities: r.severities.clone(),
                criteria: r.criteria.clone(),
                sink,
            });
        }
    }
    let has_am = routes
        .iter()
        .any(|r| matches!(r.sink, crate::alert::sink::Sink::Alertmanager(_)));
    if has_am && raw.alerts.repeat_interval >= crate::alert::sink::AM_RESEND_HORIZON {
        p(
            "alerts.repeat_interval",
            format!(
                "must be shorter than {} with an alertmanager route (Alertmanager ends alerts not re-sent in time)",
                humantime::format_duration(crate::alert::sink::AM_RESEND_HORIZON)
            ),
        );
    }
    let alerts = std::sync::Arc::new(crate::alert::routes::AlertsConfig {
        repeat_interval: raw.alerts.repeat_interval,
        unknown_after: raw.alerts.unknown_after,
        severity: raw.alerts.severity.clone(),
        max_backoff: raw.alerts.max_backoff,
        routes,
    });

    // Rollback: `triggers` is ours; the rest is the runbook's config.
    let rollback = match raw.rollback.clone() {
        None => None,
        Some(mut t) => {
            let raw_triggers = t.remove("triggers");
            let mut triggers = Vec::new();
            match raw_triggers {
                None => {
                    for (name, secs) in [("service_up", 120), ("db_writes", 120), ("dlq_spike", 0)]
                    {
                        triggers.push(RollbackTrigger {
                            name: name.into(),
                            criterion: crate::verdict::CriterionId::parse(name),
                            hold: Duration::from_secs(secs),
                        });
                    }
                }
                Some(toml::Value::Table(tt)) => {
                    for (name, v) in tt {
                        let key = format!("rollback.triggers.{name}");
                        let criterion = crate::verdict::CriterionId::parse(&name);
                        if criterion.is_none() && name != "dlq_spike" {
                            p(
                                &key,
                                format!("`{name}`: expected a criterion id or dlq_spike"),
                            );
                        }
                        match v.as_str().map(humantime::parse_duration) {
                            Some(Ok(hold)) => triggers.push(RollbackTrigger {
                                name,
                                criterion,
                                hold,
                            }),
                            Some(Err(e)) => p(&key, format!("bad duration: {e}")),
                            None => p(&key, "expected a duration string like \"2m\"".into()),
                        }
                    }
                }
                Some(_) => p(
                    "rollback.triggers",
                    "expected a table of trigger = \"duration\"".into(),
                ),
            }
            // Every unknown key and wrong type of the section, like the rest.
            let (mut found, mut handled) = (Vec::new(), BTreeSet::new());
            let run = deserialize_collecting::<crate::rollback::RollbackConfig>(
                toml::Value::Table(t),
                "rollback",
                &mut found,
                &mut handled,
            );
            for (k, m) in found {
                p(&k, m);
            }
            run.map(|run| {
                for problem in run.validate() {
                    let (k, m) = problem.split_once(':').unwrap_or(("", problem.as_str()));
                    let key = format!("rollback.{}", k.trim());
                    if !handled.contains(&key) {
                        p(&key, m.trim().to_string());
                    }
                }
                RollbackSettings { run, triggers }
            })
        }
    };

    let opt = |s: String| (!s.trim().is_empty()).then_some(s);
    Config {
        source: path.to_path_buf(),
        soak: raw.soak,
        probe_timeout: raw.probes.timeout,
        nats: NatsConfig {
            url: SecretUrl::new(raw.nats.url),
            token: Secret::new(raw.nats.token),
            user: raw.nats.user,
            password: Secret::new(raw.nats.password),
            creds_file: non_empty_path(&raw.nats.creds_file),
            tls_required: raw.nats.tls_required,
            tls_ca_file: non_empty_path(&raw.nats.tls_ca_file),
            tls_cert_file: non_empty_path(&raw.nats.tls_cert_file),
            tls_key_file: non_empty_path(&raw.nats.tls_key_file),
        },
        streams: raw.streams,
        consumer: raw.consumer,
        metrics: MetricsConfig {
            url: SecretUrl::new(raw.metrics.url),
            messages_counter: raw.metrics.messages_counter,
            matchers: raw.metrics.matchers.into_iter().collect(),
            result_label: raw.metrics.result_label,
            success_result: raw.metrics.success_result,
            dlq_result: raw.metrics.dlq_result,
            uncounted_results: raw.metrics.uncounted_results,
            stream_label: raw.metrics.stream_label,
            latency_histogram: opt(raw.metrics.latency_histogram),
            process_start_metric: opt(raw.metrics.process_start_metric),
            max_body_bytes: raw.metrics.max_body_bytes,
        },
        database: DatabaseConfig {
            url: SecretUrl::new(raw.database.url),
            table: raw.database.table,
            created_column: raw.database.created_column,
            updated_column: opt(raw.database.updated_column),
            recent_window: raw.database.recent_window,
            derived: raw.database.derived,
        },
        log: LogConfig {
            path: PathBuf::from(raw.log.path),
            fallback_patterns,
            ignore_patterns,
            max_scan_bytes: raw.log.max_scan_bytes,
        },
        service_env: ServiceEnvConfig {
            path: PathBuf::from(raw.service_env.path),
            ack_wait_key: opt(raw.service_env.ack_wait_key),
            ack_wait_unit: raw.service_env.ack_wait_unit,
            expect: raw.service_env.expect,
        },
        criteria: raw.criteria,
        watch,
        alerts,
        rollback,
    }
}

impl Config {
    /// Every credential this config names (NATS token and password, the
    /// URLs' passwords and secret query values, SMTP passwords, webhook
    /// secrets and secret URL paths, the rollback's URLs and secret-named
    /// `restart_env` values), for cutting out of text from elsewhere.
    pub fn scrubber(&self) -> crate::secret::Scrubber {
        use crate::alert::sink::Sink;
        let mut s = crate::secret::Scrubber::default();
        s.add(self.nats.token.expose());
        s.add_credentials(&self.nats.user, self.nats.password.expose());
        for part in self.nats.url.expose().split(',') {
            s.add_url(part, false);
        }
        s.add_url(self.metrics.url.expose(), false);
        s.add_url(self.database.url.expose(), false);
        for r in &self.alerts.routes {
            match &r.sink {
                Sink::Email(e) => s.add_credentials(&e.username, e.password.expose()),
                Sink::Webhook(w) => {
                    s.add_url(w.url.expose(), true);
                    s.add(w.hmac_secret.expose());
                }
                Sink::Alertmanager(a) => s.add_url(a.base_url.expose(), false),
            }
        }
        if let Some(r) = &self.rollback {
            if let Some(e) = &r.run.e2e {
                s.add_url(&e.nats_url, false);
                s.add_url(&e.database_url, false);
            }
            for (k, v) in &r.run.restart_env {
                if crate::rollback::is_secret_name(k) {
                    s.add(v);
                }
            }
        }
        s
    }
}

/// 1-based line of a dotted key path (`streams.hot[1].name`) in config text,
/// for commands that report against a loaded config (`validate --live`).
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    LineLocator::new(text).line_of(key)
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Maps dotted key paths (`a.b[2].c`) to 1-based lines using the parser's spans.
struct LineLocator<'t> {
    text: &'t str,
    doc: Option<toml::Spanned<toml::de::DeTable<'t>>>,
}

impl<'t> LineLocator<'t> {
    fn new(text: &'t str) -> Self {
        LineLocator {
            text,
            doc: toml::de::DeTable::parse(text).ok(),
        }
    }

    fn line_of_offset(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// Line of the deepest existing part of the key path (so a missing
    /// `streams.hot[0].name` points at the `[[streams.hot]]` table).
    fn line_of(&self, key: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut best: Option<usize> = None;
        let mut table: Option<&toml::de::DeTable<'_>> = Some(doc.get_ref());
        let mut value: Option<&toml::de::DeValue<'_>> = None;
        for seg in parse_key_path(key) {
            match seg {
                Seg::Key(k) => {
                    let t = match (table, value) {
                        (Some(t), None) => t,
                        (_, Some(v)) => match v.as_table() {
                            Some(t) => t,
                            None => break,
                        },
                        (None, None) => break,
                    };
                    let Some((kspan, v)) = t.get_key_value(k) else {
                        break;
                    };
                    best = Some(self.line_of_offset(kspan.span().start));
                    value = Some(v.get_ref());
                    table = None;
                }
                Seg::Index(i) => {
                    let Some(arr) = value.and_then(|v| v.as_array()) else {
                        break;
                    };
                    let Some(item) = arr.get(i) else { break };
                    best = Some(self.line_of_offset(item.span().start));
                    value = Some(item.get_ref());
                }
            }
        }
        best
    }
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Splits `a.b[2].c` (also serde_path_to_error's form) into segments.
fn parse_key_path(key: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Seg::Key(name));
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            let Some(end) = stripped.find(']') else { break };
            if let Ok(i) = stripped[..end].parse() {
                out.push(Seg::Index(i));
            }
            rest = &stripped[end + 1..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/checks.toml"))
            .unwrap_or_default()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn shipped_config_is_valid_and_has_seed_defaults() {
        let c = Config::from_text(Path::new("checks.toml"), &shipped(), &no_env).expect("valid");
        assert_eq!(c.streams.legacy.name, "ATHLETE_ALLY_EVENTS");
        assert_eq!(c.streams.legacy.baseline_messages, Some(55));
        assert_eq!(c.streams.dlq.baseline_messages, Some(1));
        assert_eq!(c.consumer.durable, "normalize-hrv-durable");
        assert_eq!(c.consumer.ack_wait, Duration::from_secs(60));
        assert_eq!(c.nats.url.expose(), "nats://127.0.0.1:4222");
        assert_eq!(c.metrics.url.expose(), "http://127.0.0.1:4102/metrics");
        assert_eq!(c.criteria.lag_fail, 10);
        assert_eq!(c.criteria.p95_max, Duration::from_millis(500));
    }

    #[test]
    fn env_overrides_defaults_and_secrets_are_hidden() {
        let env = |k: &str| match k {
            "DATABASE_URL" => Some("postgres://u:topsecret@db/x".to_string()),
            _ => None,
        };
        let c = Config::from_text(Path::new("c.toml"), &shipped(), &env).expect("valid");
        assert_eq!(c.database.url.expose(), "postgres://u:topsecret@db/x");
        assert!(!format!("{c:?}").contains("topsecret"));
    }

    #[test]
    fn expand_env_forms() {
        let env = |k: &str| (k == "A").then(|| "x".to_string());
        assert_eq!(
            expand_env("${A}-${B:-d}", &env).map(|r| r.0),
            Ok("x-d".into())
        );
        assert_eq!(
            expand_env("$${A} $5", &env).map(|r| r.0),
            Ok("${A} $5".into())
        );
        assert!(expand_env("${B}", &env)
            .unwrap_err()
            .contains("B is not set"));
        assert!(expand_env("${A", &env).is_err());
        assert!(expand_env("${1X}", &env).is_err());
    }

    #[test]
    fn typo_is_located_by_line_and_key() {
        let text = shipped().replace("max_deliver = 5", "max_delivr = 5");
        let err = Config::from_text(Path::new("bad.toml"), &text, &no_env).unwrap_err();
        let ConfigError::Invalid { problems } = err else {
            panic!("expected Invalid")
        };
        let line = text
            .lines()
            .position(|l| l.starts_with("max_delivr"))
            .map(|i| i + 1);
        // The typo itself, at its own line, and the required key it leaves missing.
        assert_eq!(problems.len(), 2, "{problems:?}");
        let typo = problems
            .iter()
            .find(|p| p.key == "consumer.max_delivr")
            .expect("the unknown key");
        assert!(
            typo.message.contains("unknown field `max_delivr`"),
            "{typo:?}"
        );
        assert_eq!(typo.line, line);
        assert!(problems
            .iter()
            .any(|p| p.key == "consumer.max_deliver" && p.message.contains("missing field")));
    }

    #[test]
    fn unknown_keys_wrong_types_and_bad_values_are_all_reported_at_once() {
        let text = shipped()
            .replace("lag_fail = 10", "lag_fial = 10")
            .replace("max_deliver = 5", "max_deliver = \"five\"")
            .replace("recent_window = \"10m\"", "recent_window = 10")
            .replace("[probes]", "[probe]")
            .replace("ack_policy = \"explicit\"", "ack_policy = \"sometimes\"")
            .replace(
                "restart_timeout = \"60s\"",
                "restart_timeout = \"60s\"\nrestart_timout = \"1s\"",
            )
            .replace("verify_timeout = \"60s\"", "verify_timeout = true")
            .replace("interval = \"10s\"", "interval = \"1ns\"");
        let err = Config::from_text(Path::new("bad.toml"), &text, &no_env).unwrap_err();
        let ConfigError::Invalid { problems } = err else {
            panic!("expected Invalid")
        };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for want in [
            "criteria.lag_fial",
            "consumer.max_deliver",
            "database.recent_window",
            "probe",
            "consumer.ack_policy",
            "rollback.restart_timout",
            "rollback.verify_timeout",
            "watch.interval",
        ] {
            assert!(keys.contains(&want), "{want} missing from {keys:?}");
        }
        assert_eq!(keys.len(), 8, "nothing judged twice: {problems:#?}");
        assert!(problems.iter().all(|p| p.line.is_some()), "{problems:#?}");
    }

    #[test]
    fn semantic_problems_are_all_reported_with_lines() {
        let text = shipped()
            .replace("lag_fail = 10", "lag_fail = 2")
            .replace("ack_policy = \"explicit\"", "ack_policy = \"sometimes\"");
        let err = Config::from_text(Path::new("bad.toml"), &text, &no_env).unwrap_err();
        let s = err.to_string();
        assert!(s.contains("criteria.lag_warn"), "{s}");
        assert!(s.contains("consumer.ack_policy"), "{s}");
        let ack_line = text
            .lines()
            .position(|l| l.starts_with("ack_policy"))
            .map(|i| i + 1);
        assert!(
            s.contains(&format!(
                "bad.toml:{}: consumer.ack_policy",
                ack_line.unwrap_or(0)
            )),
            "{s}"
        );
    }

    #[test]
    fn bad_subject_and_regex_are_refused() {
        let text = shipped()
            .replace("subjects = [\"vendor.>\"]", "subjects = [\"vendor.>.x\"]")
            .replace("'Stream mode: single'", "'(unclosed'");
        let s = Config::from_text(Path::new("b.toml"), &text, &no_env)
            .unwrap_err()
            .to_string();
        assert!(s.contains("streams.hot[1].subjects[0]"), "{s}");
        assert!(s.contains("log.fallback_patterns"), "{s}");
    }

    #[test]
    fn syntax_error_has_line() {
        let text = "[soak]\nname = \"x\"\nbroken = \n";
        let s = Config::from_text(Path::new("s.toml"), text, &no_env)
            .unwrap_err()
            .to_string();
        assert!(s.starts_with("s.toml:3:"), "{s}");
    }

    #[test]
    fn type_error_does_not_leak_env_value() {
        let text = shipped().replace("max_deliver = 5", "max_deliver = \"${SECRETISH}\"");
        let env = |k: &str| (k == "SECRETISH").then(|| "hunter2hunter2".to_string());
        let s = Config::from_text(Path::new("t.toml"), &text, &env)
            .unwrap_err()
            .to_string();
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("consumer.max_deliver"), "{s}");
    }
}
