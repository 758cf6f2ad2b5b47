//! The raw forms of checks.toml: exactly what the file says, with serde
//! defaults, before meaning is checked (see [`super::validate`]).

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default = "default_soak")]
    pub(super) soak: SoakConfig,
    #[serde(default)]
    pub(super) probes: RawProbes,
    pub(super) nats: RawNats,
    pub(super) streams: StreamsConfig,
    #[serde(default)]
    pub(super) consumer: Option<ConsumerConfig>,
    #[serde(default)]
    pub(super) consumers: Vec<RawConsumerEntry>,
    pub(super) metrics: RawMetrics,
    #[serde(default)]
    pub(super) database: Option<RawDatabase>,
    #[serde(default)]
    pub(super) log: Option<RawLog>,
    #[serde(default)]
    pub(super) service_env: Option<RawServiceEnv>,
    #[serde(default)]
    pub(super) criteria: CriteriaConfig,
    #[serde(default)]
    pub(super) watch: RawWatch,
    #[serde(default)]
    pub(super) alerts: RawAlerts,
    #[serde(default)]
    pub(super) rollback: Option<crate::rollback::RollbackConfig>,
    #[serde(default)]
    pub(super) state: RawState,
    #[serde(default)]
    pub(super) heartbeat: RawHeartbeat,
    #[serde(default)]
    pub(super) ledger: Option<super::ledger::RawLedger>,
}

/// `[heartbeat]`: the dead-man's switch pings (healthchecks.io-compatible).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeartbeat {
    #[serde(default)]
    pub(super) url: String,
    #[serde(default)]
    pub(super) standby_url: String,
    #[serde(default = "default_heartbeat_every", with = "humantime_serde")]
    pub(super) every: Duration,
    #[serde(default = "default_heartbeat_timeout", with = "humantime_serde")]
    pub(super) timeout: Duration,
}

impl Default for RawHeartbeat {
    fn default() -> Self {
        RawHeartbeat {
            url: String::new(),
            standby_url: String::new(),
            every: default_heartbeat_every(),
            timeout: default_heartbeat_timeout(),
        }
    }
}

/// A success ping at most once a minute: healthchecks.io's shortest period.
pub(super) fn default_heartbeat_every() -> Duration {
    Duration::from_secs(60)
}

/// One `[[consumers]]` entry: a named durable (`durable` set) or a
/// selector (`streams` set). One struct, not an untagged enum, so that a
/// typo is still reported at its key. The expectation keys are written out
/// here and again in [`RawExpect`]: serde's `flatten` cannot be combined
/// with `deny_unknown_fields`, which is what reports typos.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsumerEntry {
    #[serde(default)]
    pub(super) stream: String,
    #[serde(default)]
    pub(super) durable: String,
    #[serde(default)]
    pub(super) streams: Vec<String>,
    #[serde(default)]
    pub(super) durable_prefix: String,
    #[serde(default)]
    pub(super) exclude: Vec<String>,
    #[serde(default)]
    pub(super) min_count: Option<usize>,
    #[serde(default)]
    pub(super) filter_subject: Option<String>,
    #[serde(default)]
    pub(super) ack_policy: Option<String>,
    #[serde(default, with = "crate::duration::bounded")]
    pub(super) ack_wait: Option<Duration>,
    #[serde(default)]
    pub(super) max_deliver: Option<i64>,
    #[serde(default)]
    pub(super) max_ack_pending: Option<i64>,
    #[serde(default)]
    pub(super) lag_warn: Option<u64>,
    #[serde(default)]
    pub(super) lag_fail: Option<u64>,
    #[serde(default)]
    pub(super) overrides: BTreeMap<String, RawExpect>,
}

impl RawConsumerEntry {
    pub(super) fn expectation(&self) -> ConsumerExpect {
        ConsumerExpect {
            filter_subject: self.filter_subject.clone(),
            ack_policy: self.ack_policy.clone(),
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver,
            max_ack_pending: self.max_ack_pending,
            lag_warn: self.lag_warn,
            lag_fail: self.lag_fail,
        }
    }
}

/// `[consumers.overrides.<durable>]`: what one selected durable has of its own.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpect {
    #[serde(default)]
    pub(super) filter_subject: Option<String>,
    #[serde(default)]
    pub(super) ack_policy: Option<String>,
    #[serde(default, with = "crate::duration::bounded")]
    pub(super) ack_wait: Option<Duration>,
    #[serde(default)]
    pub(super) max_deliver: Option<i64>,
    #[serde(default)]
    pub(super) max_ack_pending: Option<i64>,
    #[serde(default)]
    pub(super) lag_warn: Option<u64>,
    #[serde(default)]
    pub(super) lag_fail: Option<u64>,
}

impl RawExpect {
    pub(super) fn to_expect(&self) -> ConsumerExpect {
        ConsumerExpect {
            filter_subject: self.filter_subject.clone(),
            ack_policy: self.ack_policy.clone(),
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver,
            max_ack_pending: self.max_ack_pending,
            lag_warn: self.lag_warn,
            lag_fail: self.lag_fail,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    #[serde(default = "default_backend")]
    pub(super) backend: String,
    #[serde(default)]
    pub(super) nats_url: String,
    #[serde(default)]
    pub(super) token: String,
    #[serde(default)]
    pub(super) user: String,
    #[serde(default)]
    pub(super) password: String,
    #[serde(default)]
    pub(super) creds_file: String,
    #[serde(default)]
    pub(super) tls_required: bool,
    #[serde(default)]
    pub(super) tls_ca_file: String,
    #[serde(default)]
    pub(super) tls_cert_file: String,
    #[serde(default)]
    pub(super) tls_key_file: String,
    #[serde(default)]
    pub(super) bucket: String,
    #[serde(default = "default_replicas")]
    pub(super) replicas: usize,
    #[serde(default = "default_lease_intervals")]
    pub(super) lease_intervals: u32,
    #[serde(default, with = "crate::duration::bounded")]
    pub(super) max_age: Option<Duration>,
    #[serde(default = "default_state_request_timeout", with = "humantime_serde")]
    pub(super) request_timeout: Duration,
    #[serde(default = "default_max_clock_skew", with = "humantime_serde")]
    pub(super) max_clock_skew: Duration,
}

pub(super) fn default_state_request_timeout() -> Duration {
    Duration::from_secs(5)
}
pub(super) fn default_max_clock_skew() -> Duration {
    Duration::from_secs(2)
}

impl Default for RawState {
    fn default() -> Self {
        RawState {
            backend: default_backend(),
            nats_url: String::new(),
            token: String::new(),
            user: String::new(),
            password: String::new(),
            creds_file: String::new(),
            tls_required: false,
            tls_ca_file: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            bucket: String::new(),
            replicas: default_replicas(),
            lease_intervals: default_lease_intervals(),
            max_age: None,
            request_timeout: default_state_request_timeout(),
            max_clock_skew: default_max_clock_skew(),
        }
    }
}

pub(super) fn default_backend() -> String {
    "sqlite".into()
}
pub(super) fn default_replicas() -> usize {
    1
}
pub(super) fn default_lease_intervals() -> u32 {
    3
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    #[serde(default = "default_repeat", with = "crate::duration::bounded")]
    pub(super) repeat_interval: Duration,
    #[serde(default = "default_unknown_after", with = "crate::duration::bounded")]
    pub(super) unknown_after: Duration,
    #[serde(default = "default_max_backoff", with = "crate::duration::bounded")]
    pub(super) max_backoff: Duration,
    #[serde(default = "default_severity")]
    pub(super) severity: BTreeMap<crate::verdict::CriterionId, crate::alert::model::Severity>,
    #[serde(default)]
    pub(super) routes: Vec<RawRoute>,
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

pub(super) fn default_repeat() -> Duration {
    Duration::from_secs(4 * 3600)
}
pub(super) fn default_unknown_after() -> Duration {
    Duration::from_secs(600)
}
pub(super) fn default_max_backoff() -> Duration {
    Duration::from_secs(300)
}
pub(super) fn default_severity(
) -> BTreeMap<crate::verdict::CriterionId, crate::alert::model::Severity> {
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
pub(super) fn default_true() -> bool {
    true
}
/// A heartbeat ping is bounded like an alert delivery: 10 s.
pub(super) fn default_heartbeat_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) name: String,
    /// email, webhook, slack or alertmanager.
    pub(super) kind: String,
    #[serde(default = "default_true")]
    pub(super) enabled: bool,
    #[serde(default)]
    pub(super) severities: Vec<crate::alert::model::Severity>,
    #[serde(default)]
    pub(super) criteria: Vec<crate::verdict::CriterionId>,
    #[serde(default, with = "crate::duration::bounded")]
    pub(super) timeout: Option<Duration>,
    // email
    #[serde(default)]
    pub(super) smtp_host: String,
    #[serde(default)]
    pub(super) smtp_port: Option<u16>,
    #[serde(default)]
    pub(super) smtp_tls: Option<crate::alert::sink::SmtpTls>,
    #[serde(default)]
    pub(super) username: String,
    #[serde(default)]
    pub(super) password: String,
    #[serde(default)]
    pub(super) from: String,
    #[serde(default)]
    pub(super) to: Vec<String>,
    // webhook, slack, alertmanager
    #[serde(default)]
    pub(super) url: String,
    #[serde(default)]
    pub(super) hmac_secret: String,
    #[serde(default)]
    pub(super) format: Option<crate::alert::sink::WebhookFormat>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWatch {
    #[serde(default = "default_interval", with = "crate::duration::bounded")]
    pub(super) interval: Duration,
    #[serde(default = "default_state")]
    pub(super) state: String,
    #[serde(default = "default_reports_dir")]
    pub(super) reports_dir: String,
    #[serde(default = "default_checkpoints")]
    pub(super) checkpoints: Vec<String>,
    #[serde(default = "default_min_coverage")]
    pub(super) min_coverage: f64,
    #[serde(default, with = "crate::duration::bounded")]
    pub(super) max_gap: Option<Duration>,
    #[serde(default = "default_recover_after", with = "crate::duration::bounded")]
    pub(super) recover_after: Duration,
    #[serde(default = "default_fail_for", rename = "for")]
    pub(super) fail_for: BTreeMap<crate::verdict::CriterionId, String>,
    #[serde(default = "default_dlq_spike")]
    pub(super) dlq_spike_per_min: f64,
    #[serde(
        default = "default_dlq_spike_window",
        with = "crate::duration::bounded"
    )]
    pub(super) dlq_spike_window: Duration,
    #[serde(default = "default_listen")]
    pub(super) listen: String,
    #[serde(default = "default_keep_full", with = "crate::duration::bounded")]
    pub(super) keep_full_snapshots: Duration,
    #[serde(default = "default_thin_to", with = "crate::duration::bounded")]
    pub(super) thin_to: Duration,
    #[serde(default)]
    pub(super) at_end: super::AtEnd,
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
            at_end: super::AtEnd::default(),
        }
    }
}

/// The shortest `watch.interval` accepted: each cycle runs every probe, and
/// at 1ns the daemon ran at 97 % CPU and never got round to its SIGTERM.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

pub(super) fn default_interval() -> Duration {
    Duration::from_secs(10)
}
pub(super) fn default_state() -> String {
    "reports/soakwatch-state.sqlite".into()
}
pub(super) fn default_reports_dir() -> String {
    "reports".into()
}
pub(super) fn default_checkpoints() -> Vec<String> {
    vec!["24h".into(), "48h".into()]
}
pub(super) fn default_min_coverage() -> f64 {
    0.95
}
pub(super) fn default_recover_after() -> Duration {
    Duration::from_secs(60)
}
pub(super) fn default_fail_for() -> BTreeMap<crate::verdict::CriterionId, String> {
    use crate::verdict::CriterionId as C;
    // The seed's DLQ rule; one slow window (a database stall spanning a
    // sample, a burst of slow messages) is not an incident either.
    [(C::Dlq, "5m"), (C::DbWrites, "30s"), (C::P95Latency, "1m")]
        .into_iter()
        .map(|(c, d)| (c, d.to_string()))
        .collect()
}
pub(super) fn default_dlq_spike() -> f64 {
    10.0
}
pub(super) fn default_dlq_spike_window() -> Duration {
    Duration::from_secs(60)
}
pub(super) fn default_listen() -> String {
    "127.0.0.1:9464".into()
}
pub(super) fn default_keep_full() -> Duration {
    Duration::from_secs(6 * 3600)
}
pub(super) fn default_thin_to() -> Duration {
    Duration::from_secs(300)
}

pub(super) fn default_soak() -> SoakConfig {
    SoakConfig {
        name: default_soak_name(),
        started_at: None,
        duration: default_soak_duration(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbes {
    #[serde(default = "default_timeout", with = "crate::duration::bounded")]
    pub(super) timeout: Duration,
}

impl Default for RawProbes {
    fn default() -> Self {
        RawProbes {
            timeout: default_timeout(),
        }
    }
}

pub(super) fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNats {
    pub(super) url: String,
    #[serde(default)]
    pub(super) token: String,
    #[serde(default)]
    pub(super) user: String,
    #[serde(default)]
    pub(super) password: String,
    #[serde(default)]
    pub(super) creds_file: String,
    #[serde(default)]
    pub(super) tls_required: bool,
    #[serde(default)]
    pub(super) tls_ca_file: String,
    #[serde(default)]
    pub(super) tls_cert_file: String,
    #[serde(default)]
    pub(super) tls_key_file: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) url: String,
    pub(super) messages_counter: String,
    #[serde(default, rename = "match")]
    pub(super) matchers: BTreeMap<String, String>,
    #[serde(default = "default_result_label")]
    pub(super) result_label: String,
    #[serde(default = "default_success")]
    pub(super) success_result: String,
    #[serde(default = "default_dlq")]
    pub(super) dlq_result: String,
    #[serde(default)]
    pub(super) uncounted_results: Vec<String>,
    #[serde(default = "default_stream_label")]
    pub(super) stream_label: String,
    #[serde(default)]
    pub(super) latency_histogram: String,
    #[serde(default)]
    pub(super) process_start_metric: String,
    #[serde(default = "default_max_body")]
    pub(super) max_body_bytes: u64,
}

pub(super) fn default_max_body() -> u64 {
    16 * 1024 * 1024
}

pub(super) fn default_result_label() -> String {
    "result".into()
}
pub(super) fn default_success() -> String {
    "success".into()
}
pub(super) fn default_dlq() -> String {
    "dlq".into()
}
pub(super) fn default_stream_label() -> String {
    "stream".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub(super) url: String,
    pub(super) table: String,
    pub(super) created_column: String,
    #[serde(default)]
    pub(super) updated_column: String,
    #[serde(default = "default_recent", with = "crate::duration::bounded")]
    pub(super) recent_window: Duration,
    #[serde(default)]
    pub(super) derived: Option<DerivedCheck>,
}

pub(super) fn default_recent() -> Duration {
    Duration::from_secs(600)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) path: String,
    #[serde(default)]
    pub(super) fallback_patterns: Vec<String>,
    #[serde(default)]
    pub(super) ignore_patterns: Vec<String>,
    #[serde(default = "default_max_scan")]
    pub(super) max_scan_bytes: u64,
}

pub(super) fn default_max_scan() -> u64 {
    64 * 1024 * 1024
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServiceEnv {
    pub(super) path: String,
    #[serde(default)]
    pub(super) ack_wait_key: String,
    #[serde(default = "default_ack_unit")]
    pub(super) ack_wait_unit: String,
    #[serde(default)]
    pub(super) expect: BTreeMap<String, String>,
}

pub(super) fn default_ack_unit() -> String {
    "ms".into()
}
