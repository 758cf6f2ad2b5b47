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

mod collect;
mod env;
mod ledger;
mod locate;
mod raw;
#[cfg(test)]
mod reference;
mod validate;
pub use validate::resolve_path;

pub use env::{expand_env, EnvLookup, ProcessEnv};
pub use ledger::{
    KeyField, KeyPrefixSkip, KeySource, LedgerConfig, LedgerDlqConfig, MAX_LEDGER_BATCH,
};
pub use locate::line_of_key;
pub use raw::MIN_INTERVAL;

/// How far ahead of this machine's clock `[soak] started_at` (and `watch
/// --t0`) may be: clock skew between the host that noted the cutover and
/// this one. A T0 further ahead is refused; accepted, the daemon idled
/// until it, looking like a preflight holding T0.
pub const T0_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// Largest config file read, in bytes: a real checks.toml is a few KiB; a
/// 49 MB one once took 28 s and 2.5 GB to be refused. Checked before parsing.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Why a T0 is refused: it lies more than [`T0_CLOCK_SKEW`] after `now`.
pub fn t0_in_future(
    t0: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    let ahead = t0.signed_duration_since(now);
    (ahead > crate::duration::delta(T0_CLOCK_SKEW)).then(|| {
        let ahead = ahead.to_std().map(|d| Duration::from_secs(d.as_secs())).unwrap_or_default();
        format!(
            "`{}` is {} in the future: T0 is when the cutover happened (at most {} ahead of this clock is allowed, for clock skew); set the cutover's time, or remove it to start the soak at the first cycle",
            t0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            humantime::format_duration(ahead),
            humantime::format_duration(T0_CLOCK_SKEW)
        )
    })
}

use collect::*;
use env::*;
use locate::*;
use raw::*;
use validate::*;

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
    /// The file is larger than [`MAX_CONFIG_BYTES`]: refused unread.
    #[error("{file}: {size} is over the largest config soakwatch reads, 1 MiB ({MAX_CONFIG_BYTES} bytes): refused before parsing")]
    TooLarge {
        /// The file as given.
        file: String,
        /// Its size as far as it was looked at (`1048577 bytes`, `more than ... bytes`).
        size: String,
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
    /// The consumers the soak watches: named durables and selectors
    /// (`[consumer]` is the one-durable shorthand).
    pub consumers: ConsumersConfig,
    /// The service's Prometheus endpoint and the series to read.
    pub metrics: MetricsConfig,
    /// The table the service writes; None when the service has none (its
    /// criteria are then `not_configured`, which never blocks a verdict).
    pub database: Option<DatabaseConfig>,
    /// The service's log and what counts as a fallback there; None: no log
    /// to read (`fallback` is `not_configured`).
    pub log: Option<LogConfig>,
    /// The service's env file and the values it must hold; None: no .env
    /// (its part of `consumer_config` is left out).
    pub service_env: Option<ServiceEnvConfig>,
    /// Thresholds per criterion.
    pub criteria: CriteriaConfig,
    /// The daemon: interval, state, reports, soak policy.
    pub watch: WatchConfig,
    /// Alert routes and lifecycle.
    pub alerts: std::sync::Arc<crate::alert::routes::AlertsConfig>,
    /// The one-shot rollback and what triggers it; None when not configured.
    pub rollback: Option<RollbackSettings>,
    /// Where the soak's state lives (SQLite file or JetStream) and the
    /// leader lease between watchers.
    pub state: StateConfig,
    /// The dead-man's switch: pings to a healthchecks.io-compatible URL so
    /// that a watcher that dies, hangs or goes blind is noticed by someone
    /// else; None when no URL is set.
    pub heartbeat: Option<HeartbeatConfig>,
    /// `[ledger]`: every message of the watched consumer accounted for,
    /// from the stream to the table; None when the section is absent.
    pub ledger: Option<LedgerConfig>,
    /// What is allowed but probably not meant (an interval shorter than the
    /// probe timeout), located like a problem: `validate` prints them and
    /// `watch` logs them at start.
    pub warnings: Vec<ConfigProblem>,
}

/// Which engine holds the soak's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateBackend {
    /// The embedded SQLite file `[watch] state` (one watcher).
    Sqlite,
    /// JetStream KV buckets and streams (any number of watchers, one leader).
    JetStream,
}

/// `[heartbeat]`: where the dead-man's switch pings (see
/// `crate::watch::deadman`). The URLs carry the check's token in their
/// path: they are shown as `scheme://host/***` and scrubbed from logs.
#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    /// Pinged by the leader (the only watcher with a SQLite state); None:
    /// the leader does not ping.
    pub url: Option<SecretUrl>,
    /// Pinged by a standby (JetStream state) instead; None: a standby is quiet.
    pub standby_url: Option<SecretUrl>,
    /// At most one success ping per this (a `/fail` or a recovery is sent at once).
    pub every: Duration,
    /// Bound on each ping.
    pub timeout: Duration,
}

/// `[state]`: the state backend and, for JetStream, its connection,
/// names, replication and the leader lease.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// SQLite (default) or JetStream.
    pub backend: StateBackend,
    /// The JetStream holding the state: `[state] nats_url` and its
    /// credentials, else the watched `[nats]` connection.
    pub nats: NatsConfig,
    /// Prefix of the KV bucket and streams (one family per soak name).
    pub bucket: String,
    /// JetStream replicas of every bucket and stream (3 in a cluster).
    pub replicas: usize,
    /// A lease not renewed for this many intervals expires.
    pub lease_intervals: u32,
    /// Retention of every record (soak duration plus a margin by default).
    pub max_age: Duration,
    /// How long one request to the state's JetStream may take: shorter than
    /// the fence's margin (one interval), so a write a leader starts just
    /// before its fence closes has ended before a standby can take over.
    pub request_timeout: Duration,
    /// A watcher whose wall clock differs from the NATS server's by more
    /// than this refuses to lead.
    pub max_clock_skew: Duration,
}

impl StateConfig {
    /// The leader lease's length: `lease_intervals` x `interval`, at most
    /// [`crate::duration::MAX`] (validation refuses a longer one).
    pub fn lease(&self, interval: Duration) -> Duration {
        interval
            .checked_mul(self.lease_intervals.max(2))
            .unwrap_or(crate::duration::MAX)
            .min(crate::duration::MAX)
    }
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
    /// What the daemon does once the soak is signed off.
    pub at_end: AtEnd,
}

/// What `watch` does after the sign-off at T0 + duration (and what a
/// restarted `watch` does on a soak that has ended). Either way it exits 0,
/// so a unit with `Restart=on-failure` never restarts it in a loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AtEnd {
    /// Keep serving the status page, /metrics and /healthz (read-only, the
    /// frozen verdict) until SIGTERM: dashboards, the exported rules and a
    /// dead-man's switch do not see the exporter vanish at sign-off.
    #[default]
    Serve,
    /// Exit 0 at once (scripts, the compressed demo).
    Exit,
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
    #[serde(default = "default_soak_duration", with = "crate::duration::bounded")]
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
    #[serde(default, with = "crate::duration::bounded")]
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

    /// Every configured stream with its dotted key (`streams.hot[1]`), in
    /// the order of [`StreamsConfig::all`]: what problems about a stream name.
    pub fn keyed(&self) -> Vec<(String, &StreamSpec)> {
        let mut v = vec![("streams.legacy".to_string(), &self.legacy)];
        v.extend(
            self.hot
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("streams.hot[{i}]"), s)),
        );
        v.push(("streams.dlq".to_string(), &self.dlq));
        v
    }
}

/// A named durable consumer and the configuration it must have.
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
    #[serde(with = "crate::duration::bounded")]
    pub ack_wait: Duration,
    /// Expected max deliveries.
    pub max_deliver: i64,
    /// Expected max ack pending.
    #[serde(default)]
    pub max_ack_pending: Option<i64>,
    /// This consumer's own `consumer_lag` warning level (default `[criteria] lag_warn`).
    #[serde(default)]
    pub lag_warn: Option<u64>,
    /// This consumer's own `consumer_lag` failure level (default `[criteria] lag_fail`).
    #[serde(default)]
    pub lag_fail: Option<u64>,
    /// Where it is written (`consumer` or `consumers[2]`), for messages.
    #[serde(skip)]
    pub key: String,
}

impl ConsumerConfig {
    /// What a named durable must look like, in the form selectors share.
    pub fn expectation(&self) -> ConsumerExpect {
        ConsumerExpect {
            filter_subject: Some(self.filter_subject.clone()),
            ack_policy: Some(self.ack_policy.clone()),
            ack_wait: Some(self.ack_wait),
            max_deliver: Some(self.max_deliver),
            max_ack_pending: self.max_ack_pending,
            lag_warn: self.lag_warn,
            lag_fail: self.lag_fail,
        }
    }
}

/// The settings a watched consumer must have; `None` is not checked. A
/// selector states only what all its durables share, overrides the rest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsumerExpect {
    /// Filter subject.
    pub filter_subject: Option<String>,
    /// Ack policy: explicit, all or none.
    pub ack_policy: Option<String>,
    /// Ack wait.
    pub ack_wait: Option<Duration>,
    /// Max deliveries.
    pub max_deliver: Option<i64>,
    /// Max ack pending.
    pub max_ack_pending: Option<i64>,
    /// `consumer_lag` warning level for this consumer.
    pub lag_warn: Option<u64>,
    /// `consumer_lag` failure level for this consumer.
    pub lag_fail: Option<u64>,
}

impl ConsumerExpect {
    /// `self` with every value `over` sets replaced by it.
    pub fn overlaid(&self, over: &ConsumerExpect) -> ConsumerExpect {
        ConsumerExpect {
            filter_subject: over
                .filter_subject
                .clone()
                .or_else(|| self.filter_subject.clone()),
            ack_policy: over.ack_policy.clone().or_else(|| self.ack_policy.clone()),
            ack_wait: over.ack_wait.or(self.ack_wait),
            max_deliver: over.max_deliver.or(self.max_deliver),
            max_ack_pending: over.max_ack_pending.or(self.max_ack_pending),
            lag_warn: over.lag_warn.or(self.lag_warn),
            lag_fail: over.lag_fail.or(self.lag_fail),
        }
    }
}

/// "Every durable on these streams": a fleet whose members are found on
/// the server each cycle, so a durable added mid-soak is watched too.
#[derive(Debug, Clone)]
pub struct ConsumerSelector {
    /// Where it is written (`consumers[1]`), for messages.
    pub key: String,
    /// Hot streams whose durables are selected.
    pub streams: Vec<String>,
    /// Only durables whose name starts with this ("" = all).
    pub durable_prefix: String,
    /// Durables left out by name.
    pub exclude: Vec<String>,
    /// Fewer durables than this is a failure of `consumer_config` (a fleet
    /// that vanished is not a healthy empty one).
    pub min_count: usize,
    /// What every selected durable must have.
    pub expect: ConsumerExpect,
    /// Per-durable changes to `expect`.
    pub overrides: BTreeMap<String, ConsumerExpect>,
}

impl ConsumerSelector {
    /// Whether the selector takes the durable `name` on `stream`.
    pub fn selects(&self, stream: &str, name: &str) -> bool {
        self.streams.iter().any(|s| s == stream)
            && name.starts_with(&self.durable_prefix)
            && !self.exclude.iter().any(|e| e == name)
    }

    /// What the durable `name` must have: the defaults with its override.
    pub fn expectation_of(&self, name: &str) -> ConsumerExpect {
        match self.overrides.get(name) {
            Some(o) => self.expect.overlaid(o),
            None => self.expect.clone(),
        }
    }
}

/// Every consumer the soak watches.
#[derive(Debug, Clone)]
pub struct ConsumersConfig {
    /// Named durables, in file order; the first is the service's own (the
    /// one its env file's ack wait must match).
    pub named: Vec<ConsumerConfig>,
    /// Selectors, in file order.
    pub selectors: Vec<ConsumerSelector>,
}

impl ConsumersConfig {
    /// The service's own durable: the first named one (None when the soak
    /// watches selectors only).
    pub fn primary(&self) -> Option<&ConsumerConfig> {
        self.named.first()
    }

    /// Every stream a watched consumer lives on, in first-mention order:
    /// the streams listed each cycle, and those the service's messages may
    /// be labelled with (`stream_purity`).
    pub fn streams(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        let named = self.named.iter().map(|c| c.stream.as_str());
        let selected = self
            .selectors
            .iter()
            .flat_map(|s| s.streams.iter().map(String::as_str));
        for s in named.chain(selected) {
            if !v.contains(&s) {
                v.push(s);
            }
        }
        v
    }

    /// A short name of the watched set for texts: the durable when there
    /// is one, else "N consumers".
    pub fn describe(&self) -> String {
        match (self.named.as_slice(), self.selectors.is_empty()) {
            ([one], true) => format!("{} on {}", one.durable, one.stream),
            _ => {
                let mut parts: Vec<String> = self.named.iter().map(|c| c.durable.clone()).collect();
                parts.extend(self.selectors.iter().map(|s| {
                    format!(
                        "every durable{} on {}",
                        if s.durable_prefix.is_empty() {
                            String::new()
                        } else {
                            format!(" named {}*", s.durable_prefix)
                        },
                        s.streams.join(", ")
                    )
                }));
                parts.join("; ")
            }
        }
    }
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
    #[serde(default = "default_p95", with = "crate::duration::bounded")]
    pub p95_max: Duration,
    /// Quantile for the latency criterion.
    #[serde(default = "default_quantile")]
    pub latency_quantile: f64,
    /// Rows that may be missing because they are in flight.
    #[serde(default = "default_in_flight")]
    pub db_in_flight_tolerance: u64,
    /// A service restart this long after T0 or more is reported.
    #[serde(default = "default_restart_grace", with = "crate::duration::bounded")]
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

impl Config {
    /// Reads and validates a config file against the process environment.
    /// A file over [`MAX_CONFIG_BYTES`] is refused before it is parsed (its
    /// size first, then what a read actually returns, for a file that grows
    /// or a pipe).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        use std::io::Read;
        let file_name = || path.display().to_string();
        let read_err = |source| ConfigError::Read {
            file: file_name(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        if let Some(n) = file
            .metadata()
            .ok()
            .map(|m| m.len())
            .filter(|n| *n > MAX_CONFIG_BYTES)
        {
            return Err(ConfigError::TooLarge {
                file: file_name(),
                size: format!("{n} bytes"),
            });
        }
        let mut text = String::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                file: file_name(),
                size: format!("more than {MAX_CONFIG_BYTES} bytes"),
            });
        }
        Config::from_text(path, &text, &ProcessEnv)
    }

    /// Validates config text; `path` is only used in messages.
    pub fn from_text(path: &Path, text: &str, env: &dyn EnvLookup) -> Result<Config, ConfigError> {
        // Messages name the file as an absolute path: the one that was read.
        let path = &validate::config_dir(path).join(path.file_name().unwrap_or_default());
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
        let mut config = validate(path, raw, &mut semantic);
        config.warnings = advisories(&config)
            .into_iter()
            .map(|(key, message)| ConfigProblem {
                file: path.to_path_buf(),
                line: locate.line_of(&key),
                key,
                message,
            })
            .collect();
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

impl Config {
    /// Every credential this config names (the tokens and passwords of
    /// `[nats]` and of `[state]`'s own connection, the URLs' passwords and
    /// secret query values, SMTP passwords, webhook secrets and secret URL
    /// paths, the rollback's URLs and secret-named `restart_env` values),
    /// for cutting out of text from elsewhere.
    pub fn scrubber(&self) -> crate::secret::Scrubber {
        let mut s = crate::secret::Scrubber::default();
        for nats in [&self.nats, &self.state.nats] {
            s.add(nats.token.expose());
            s.add_credentials(&nats.user, nats.password.expose());
            for part in nats.url.expose().split(',') {
                s.add_url(part, false);
            }
        }
        s.add_url(self.metrics.url.expose(), false);
        if let Some(d) = &self.database {
            s.add_url(d.url.expose(), false);
        }
        for r in &self.alerts.routes {
            r.sink.add_secrets_to(&mut s);
        }
        if let Some(h) = &self.heartbeat {
            for u in h.url.iter().chain(h.standby_url.iter()) {
                s.add_url(u.expose(), true);
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

/// The shipped `checks.toml`, validated: the config unit tests across the
/// crate judge by (one loader, not one per test module).
#[cfg(test)]
pub(crate) fn shipped_for_tests() -> Config {
    Config::from_text(
        Path::new("checks.toml"),
        include_str!("../../checks.toml"),
        &|_: &str| None::<String>,
    )
    .expect("the shipped checks.toml is valid")
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
    fn heartbeat_urls_are_checked_hidden_and_scrubbed() {
        let token = "tok3n-77c1d";
        let with = |lines: &str| {
            shipped().replace(
                "url = \"${SOAKWATCH_HEARTBEAT_URL:-}\"\nevery = \"1m\"\n",
                lines,
            )
        };
        // Off by default.
        let c = Config::from_text(Path::new("c.toml"), &shipped(), &no_env).expect("valid");
        assert!(c.heartbeat.is_none());
        let text = with(&format!(
            "url = \"https://hc-ping.com/{token}\"\nevery = \"30s\"\n"
        ));
        let c = Config::from_text(Path::new("c.toml"), &text, &no_env).expect("valid");
        let h = c.heartbeat.clone().expect("on");
        assert_eq!(h.every, Duration::from_secs(30));
        assert!(h.standby_url.is_none());
        let url = h.url.expect("url");
        assert_eq!(url.shown(), "https://hc-ping.com/***");
        assert!(!format!("{c:?}").contains(token));
        let scrubbed = c
            .scrubber()
            .scrub(&format!("GET https://hc-ping.com/{token}/fail"));
        assert!(!scrubbed.contains(token), "{scrubbed}");
        let text = with(&format!(
            "url = \"https://hc-ping.com/{token}?a=1\"\nstandby_url = \"ftp://x/{token}\"\nevery = \"100ms\"\ntimeout = \"0s\"\n"
        ));
        let Err(ConfigError::Invalid { problems }) =
            Config::from_text(Path::new("c.toml"), &text, &no_env)
        else {
            panic!("refused");
        };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "heartbeat.url",
                "heartbeat.standby_url",
                "heartbeat.every",
                "heartbeat.timeout"
            ]
        );
        assert!(problems.iter().all(|p| p.line.is_some()));
        assert!(problems.iter().all(|p| !p.message.contains(token)));
    }

    /// The shipped file with its `[consumer]` table replaced by `entries`.
    fn with_consumers(entries: &str) -> String {
        let text = shipped();
        let start = text
            .find("[consumer]\n")
            .expect("[consumer] in checks.toml");
        let end = text[start + 1..]
            .find("\n[")
            .map(|i| start + 1 + i + 1)
            .unwrap_or(text.len());
        format!("{}{entries}\n{}", &text[..start], &text[end..])
    }

    #[test]
    fn consumers_takes_named_durables_and_selectors_with_overrides() {
        let text = with_consumers(
            r#"[[consumers]]
stream = "AA_CORE_HOT"
durable = "normalize-hrv-durable"
filter_subject = "athlete-ally.hrv.raw-received"
ack_wait = "60s"
max_deliver = 5

[[consumers]]
streams = ["AA_CORE_HOT", "AA_VENDOR_HOT"]
max_deliver = 5
min_count = 3
exclude = ["ops-tool"]

[consumers.overrides.vendor-oura]
lag_fail = 100
"#,
        );
        let c = Config::from_text(Path::new("checks.toml"), &text, &no_env).expect("valid");
        assert_eq!(c.consumers.named.len(), 1);
        assert_eq!(c.consumers.named[0].key, "consumers[0]");
        let sel = &c.consumers.selectors[0];
        assert_eq!(sel.min_count, 3);
        assert!(sel.selects("AA_VENDOR_HOT", "vendor-oura"));
        assert!(!sel.selects("AA_VENDOR_HOT", "ops-tool"));
        assert!(!sel.selects("AA_DLQ", "vendor-oura"));
        assert_eq!(sel.expectation_of("vendor-oura").lag_fail, Some(100));
        assert_eq!(sel.expectation_of("vendor-oura").max_deliver, Some(5));
        assert_eq!(sel.expectation_of("other").lag_fail, None);
        assert_eq!(c.consumers.streams(), vec!["AA_CORE_HOT", "AA_VENDOR_HOT"]);
    }

    #[test]
    fn consumers_problems_are_located_at_their_keys() {
        let text = with_consumers(
            r#"[[consumers]]
stream = "AA_CORE_HOT"
durable = "normalize-hrv-durable"
ack_wait = "60s"

[[consumers]]
streams = ["AA_NOPE"]
ack_policy = "sometimes"
"#,
        );
        let Err(ConfigError::Invalid { problems }) =
            Config::from_text(Path::new("checks.toml"), &text, &no_env)
        else {
            panic!("accepted");
        };
        let keys: Vec<(&str, Option<usize>)> =
            problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
        for want in [
            "consumers[0].filter_subject",
            "consumers[0].max_deliver",
            "consumers[1].streams[0]",
            "consumers[1].ack_policy",
        ] {
            assert!(
                keys.iter().any(|(k, _)| *k == want),
                "{want} not in {keys:?}"
            );
        }
        let line_of = |k: &str| keys.iter().find(|(key, _)| *key == k).and_then(|(_, l)| *l);
        let policy_line = text
            .lines()
            .position(|l| l.starts_with("ack_policy = \"sometimes\""))
            .map(|i| i + 1);
        assert_eq!(line_of("consumers[1].ack_policy"), policy_line);

        // Both forms at once, or neither: refused.
        let both = format!(
            "{}\n[[consumers]]\nstreams = [\"AA_CORE_HOT\"]\n",
            shipped()
        );
        let err = Config::from_text(Path::new("checks.toml"), &both, &no_env)
            .expect_err("both refused")
            .to_string();
        assert!(err.contains("not both"), "{err}");
        let neither = with_consumers("");
        let err = Config::from_text(Path::new("checks.toml"), &neither, &no_env)
            .expect_err("neither refused")
            .to_string();
        assert!(err.contains("consumer: missing"), "{err}");
    }

    #[test]
    fn shipped_config_is_valid_and_has_seed_defaults() {
        let c = Config::from_text(Path::new("checks.toml"), &shipped(), &no_env).expect("valid");
        assert_eq!(c.streams.legacy.name, "ATHLETE_ALLY_EVENTS");
        assert_eq!(c.streams.legacy.baseline_messages, Some(55));
        assert_eq!(c.streams.dlq.baseline_messages, Some(1));
        assert_eq!(c.consumers.named[0].durable, "normalize-hrv-durable");
        assert_eq!(c.consumers.named[0].ack_wait, Duration::from_secs(60));
        assert_eq!(c.nats.url.expose(), "nats://127.0.0.1:4222");
        assert_eq!(c.metrics.url.expose(), "http://127.0.0.1:4102/metrics");
        assert_eq!(c.criteria.lag_fail, 10);
        assert_eq!(c.criteria.p95_max, Duration::from_millis(500));
    }

    #[test]
    fn state_defaults_to_sqlite_and_jetstream_settings_are_checked() {
        let c = Config::from_text(Path::new("checks.toml"), &shipped(), &no_env).expect("valid");
        assert_eq!(c.state.backend, StateBackend::Sqlite);
        assert_eq!(c.state.nats.url.expose(), c.nats.url.expose());
        assert_eq!(
            c.state.lease(Duration::from_secs(10)),
            Duration::from_secs(30)
        );
        let text = shipped()
            + "\n[state]\nbackend = \"jetstream\"\nnats_url = \"nats://u:pw@a:4222,nats://b:4222\"\nreplicas = 3\n";
        let c = Config::from_text(Path::new("c.toml"), &text, &no_env).expect("valid");
        assert_eq!(c.state.backend, StateBackend::JetStream);
        assert_eq!(c.state.replicas, 3);
        assert!(
            c.state.bucket.starts_with("soakwatch_"),
            "{}",
            c.state.bucket
        );
        assert!(
            !format!("{c:?}").contains(":pw@"),
            "the state URL's password is hidden"
        );
        let bad = shipped()
            + "\n[state]\nbackend = \"etcd\"\nreplicas = 0\nlease_intervals = 1\nbucket = \"a.b\"\n";
        let e = Config::from_text(Path::new("c.toml"), &bad, &no_env)
            .expect_err("refused")
            .to_string();
        for key in [
            "state.backend",
            "state.replicas",
            "state.lease_intervals",
            "state.bucket",
        ] {
            assert!(e.contains(key), "{key} not reported: {e}");
        }
    }

    /// The problems of `text` (which must be refused), as checked.
    fn refused(file: &str, text: &str) -> Vec<ConfigProblem> {
        match Config::from_text(Path::new(file), text, &no_env) {
            Err(ConfigError::Invalid { problems }) => problems,
            other => panic!("not refused as invalid: {other:?}"),
        }
    }

    /// 1-based line of the first line starting with `prefix` at or after
    /// the line `section` (a `[state]` appended to the shipped file).
    fn line_in(text: &str, section: &str, prefix: &str) -> Option<usize> {
        let start = text.find(&format!("\n{section}\n"))? + 1;
        let before = text[..start].lines().count();
        text[start..]
            .lines()
            .position(|l| l.starts_with(prefix))
            .map(|i| before + 1 + i)
    }

    #[test]
    fn state_connection_is_held_to_the_nats_rules_at_its_own_keys() {
        // A server of a scheme the client does not speak.
        let text = shipped()
            + "\n[state]\nbackend = \"jetstream\"\nnats_url = \"nats://a:4222,http://b:4222\"\n";
        let problems = refused("ha.toml", &text);
        let [p] = problems.as_slice() else {
            panic!("one problem: {problems:?}")
        };
        assert_eq!(p.key, "state.nats_url");
        assert!(p.file.is_absolute() && p.file.ends_with("ha.toml"), "{p:?}");
        let line = line_in(&text, "[state]", "nats_url =").expect("line");
        assert_eq!(p.line, Some(line));
        assert_eq!(
            p.message,
            "server 2 has scheme `http`; expected nats, tls, ws or wss"
        );
        assert!(
            p.to_string()
                .ends_with(&format!("ha.toml:{line}: state.nats_url: server 2 has scheme `http`; expected nats, tls, ws or wss")),
            "{p}"
        );

        // Two kinds of auth, a user without a password, a certificate
        // without its key: each at the `[state]` key, on its line.
        let text = shipped()
            + "\n[state]\nbackend = \"jetstream\"\nnats_url = \"tls://a:4222\"\ntoken = \"t0k3n-state\"\nuser = \"watcher\"\ntls_cert_file = \"client.pem\"\n";
        let problems = refused("ha.toml", &text);
        let got: Vec<(&str, Option<usize>, &str)> = problems
            .iter()
            .map(|p| (p.key.as_str(), p.line, p.message.as_str()))
            .collect();
        let at = |prefix: &str| line_in(&text, "[state]", prefix);
        assert_eq!(
            got,
            [
                // Keys absent from the file are located at their table.
                (
                    "state.password",
                    at("[state]"),
                    "user and password must be set together"
                ),
                (
                    "state.tls_key_file",
                    at("[state]"),
                    "tls_cert_file and tls_key_file must be set together"
                ),
                (
                    "state.token",
                    at("token ="),
                    "choose one of token, user/password or creds_file"
                ),
            ]
        );
        assert!(problems.iter().all(|p| !p.to_string().contains("t0k3n")));

        // Without `nats_url` the [nats] connection is used: its URL is not
        // judged twice, but the credentials of [state] still must agree.
        let text = shipped() + "\n[state]\ntoken = \"t\"\ncreds_file = \"state.creds\"\n";
        let keys: Vec<String> = refused("ha.toml", &text)
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(keys, ["state.token"]);
    }

    #[test]
    fn nats_connection_rules_name_the_nats_keys() {
        let text = shipped()
            .replace(
                "url = \"${NATS_URL:-nats://127.0.0.1:4222}\"",
                "url = \"ws://a:80, ftp://b\"",
            )
            .replace("token = \"${NATS_TOKEN:-}\"", "token = \"t\"")
            .replace(
                "creds_file = \"${NATS_CREDS:-}\"",
                "creds_file = \"n.creds\"",
            );
        let got: Vec<(String, String)> = refused("c.toml", &text)
            .into_iter()
            .map(|p| (p.key, p.message))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "nats.url".to_string(),
                    "server 2 has scheme `ftp`; expected nats, tls, ws or wss".to_string()
                ),
                (
                    "nats.token".to_string(),
                    "choose one of token, user/password or creds_file".to_string()
                ),
            ]
        );
    }

    #[test]
    fn env_overrides_defaults_and_secrets_are_hidden() {
        let env = |k: &str| match k {
            "DATABASE_URL" => Some("postgres://u:topsecret@db/x".to_string()),
            _ => None,
        };
        let c = Config::from_text(Path::new("c.toml"), &shipped(), &env).expect("valid");
        assert_eq!(
            c.database.as_ref().expect("[database]").url.expose(),
            "postgres://u:topsecret@db/x"
        );
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
        // The file is named as an absolute path, whatever the caller passed.
        assert!(s.starts_with('/') && s.contains("/s.toml:3:"), "{s}");
    }

    #[test]
    fn relative_paths_mean_the_config_files_folder() {
        // The shipped file's defaults are relative (services/normalize-service/...).
        let text = include_str!("../../checks.toml");
        let c = Config::from_text(Path::new("/etc/soak/x/../y/./checks.toml"), text, &no_env)
            .expect("valid");
        assert_eq!(c.source, Path::new("/etc/soak/y/checks.toml"));
        let svc = Path::new("/etc/soak/y/services/normalize-service");
        assert_eq!(
            c.log.as_ref().expect("[log]").path,
            svc.join("logs/normalize-service.log")
        );
        assert_eq!(
            c.service_env.as_ref().expect("[service_env]").path,
            svc.join(".env")
        );
        assert_eq!(
            c.watch.state,
            Path::new("/etc/soak/y/reports/soakwatch-state.sqlite")
        );
        let rb = c.rollback.expect("[rollback] ships in checks.toml");
        assert_eq!(rb.run.env_file, svc.join(".env"));
        assert_eq!(
            resolve_path(Path::new("/a/b"), "/abs/p"),
            Path::new("/abs/p")
        );
        assert_eq!(resolve_path(Path::new("/a/b"), "../c"), Path::new("/a/c"));
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
