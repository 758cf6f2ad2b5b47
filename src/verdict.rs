//! Verdicts: the judgement on each criterion, in a stable, documented shape.

use serde::{Deserialize, Serialize};

/// Outcome of one criterion. Order matters: a worse status sorts later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not set up in checks.toml: neither pass nor a problem, and shown as such.
    NotConfigured,
    /// Meets the target.
    Pass,
    /// Off target but not yet a failure.
    Warn,
    /// Failing, but still inside its `for` hold (soak history only, never a
    /// one-shot verdict): not an incident yet, and not an unknown either.
    Pending,
    /// Could not be determined (a probe failed): never read as pass.
    Unknown,
    /// Misses the target.
    Fail,
}

impl Status {
    /// Lowercase name used in every output format.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::NotConfigured => "not_configured",
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Pending => "pending",
            Status::Unknown => "unknown",
            Status::Fail => "fail",
        }
    }

    /// Nagios-style upper-case label.
    pub fn label(self) -> &'static str {
        match self {
            Status::NotConfigured => "N/A",
            Status::Pass => "OK",
            Status::Warn => "WARNING",
            Status::Pending => "PENDING",
            Status::Unknown => "UNKNOWN",
            Status::Fail => "CRITICAL",
        }
    }

    /// Numeric form for Prometheus: 0 pass, 1 warn, 2 fail, 3 unknown, 4
    /// pending (failing inside its `for` hold), -1 not configured.
    pub fn code(self) -> i32 {
        match self {
            Status::NotConfigured => -1,
            Status::Pass => 0,
            Status::Warn => 1,
            Status::Fail => 2,
            Status::Unknown => 3,
            Status::Pending => 4,
        }
    }
}

/// Stable criterion ids: they appear in JSON, reports and alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CriterionId {
    /// Expected streams with expected settings, no overlapping subjects, DLQ present.
    Topology,
    /// The durable exists on the right stream with the right settings; the service's env agrees.
    ConsumerConfig,
    /// pending + ack pending under the limit, and the consumer is not stalled.
    ConsumerLag,
    /// Messages being redelivered.
    Redeliveries,
    /// Nothing written to the legacy stream since the cutover baseline.
    LegacyIdle,
    /// Nothing dead-lettered since the baseline.
    Dlq,
    /// Zero fallback events (log and metrics).
    Fallback,
    /// Every processed message labelled with the new stream.
    StreamPurity,
    /// Success ratio at or above the target.
    SuccessRate,
    /// Processing-time quantile under the target.
    P95Latency,
    /// Rows are being written while messages are processed.
    DbWrites,
    /// Rows match successful messages; the derived column is right.
    DbIntegrity,
    /// The metrics endpoint answers and the service has not restarted.
    ServiceUp,
}

impl CriterionId {
    /// All criteria in report order.
    pub const ALL: [CriterionId; 13] = [
        CriterionId::Topology,
        CriterionId::ConsumerConfig,
        CriterionId::ConsumerLag,
        CriterionId::Redeliveries,
        CriterionId::LegacyIdle,
        CriterionId::Dlq,
        CriterionId::Fallback,
        CriterionId::StreamPurity,
        CriterionId::SuccessRate,
        CriterionId::P95Latency,
        CriterionId::DbWrites,
        CriterionId::DbIntegrity,
        CriterionId::ServiceUp,
    ];

    /// The id as written in outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            CriterionId::Topology => "topology",
            CriterionId::ConsumerConfig => "consumer_config",
            CriterionId::ConsumerLag => "consumer_lag",
            CriterionId::Redeliveries => "redeliveries",
            CriterionId::LegacyIdle => "legacy_idle",
            CriterionId::Dlq => "dlq",
            CriterionId::Fallback => "fallback",
            CriterionId::StreamPurity => "stream_purity",
            CriterionId::SuccessRate => "success_rate",
            CriterionId::P95Latency => "p95_latency",
            CriterionId::DbWrites => "db_writes",
            CriterionId::DbIntegrity => "db_integrity",
            CriterionId::ServiceUp => "service_up",
        }
    }

    /// The criterion with this stable id, if any.
    pub fn parse(id: &str) -> Option<CriterionId> {
        CriterionId::ALL.into_iter().find(|c| c.as_str() == id)
    }

    /// A short title for tables.
    pub fn title(self) -> &'static str {
        match self {
            CriterionId::Topology => "Stream topology",
            CriterionId::ConsumerConfig => "Consumer configuration",
            CriterionId::ConsumerLag => "Consumer lag",
            CriterionId::Redeliveries => "Redeliveries",
            CriterionId::LegacyIdle => "Legacy stream idle",
            CriterionId::Dlq => "DLQ stable",
            CriterionId::Fallback => "No fallback to legacy stream",
            CriterionId::StreamPurity => "Stream purity",
            CriterionId::SuccessRate => "Success rate",
            CriterionId::P95Latency => "Processing latency",
            CriterionId::DbWrites => "Database writes",
            CriterionId::DbIntegrity => "Database integrity",
            CriterionId::ServiceUp => "Service up",
        }
    }
}

/// Judgement on one criterion with what was seen and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Stable id.
    pub id: CriterionId,
    /// Outcome.
    pub status: Status,
    /// What was observed, for people (e.g. "3 (pending 2 + ack pending 1)").
    pub observed: String,
    /// The target, for people (e.g. "< 10").
    pub target: String,
    /// One line of evidence or, for unknown, the reason.
    pub evidence: String,
    /// The main observed number, for perfdata and Prometheus (None when there is none).
    pub value: Option<f64>,
    /// Warning threshold for that number, if any.
    pub warn_at: Option<f64>,
    /// Critical threshold for that number, if any.
    pub fail_at: Option<f64>,
    /// For a per-consumer criterion (`consumer_config`, `consumer_lag`,
    /// `redeliveries`), one judgement per watched consumer; this verdict
    /// is their worst. Empty for the others (and, in a stored record, the
    /// passing consumers are left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceVerdict>,
}

/// Which watched consumer a per-consumer judgement is about: its durable,
/// and its stream when the same durable name is watched on two streams
/// (then the one name is two consumers). Shown as `<durable>` or
/// `<durable>@<stream>`, the text stored history, alert labels, JSON,
/// perfdata and `/metrics` carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConsumerKey {
    /// The durable name.
    pub durable: String,
    /// The stream, only when the durable alone is ambiguous.
    pub stream: Option<String>,
}

impl ConsumerKey {
    /// A consumer known by its durable name alone.
    pub fn durable(durable: impl Into<String>) -> ConsumerKey {
        ConsumerKey {
            durable: durable.into(),
            stream: None,
        }
    }

    /// A durable named on more than one watched stream: this stream's.
    pub fn on_stream(durable: impl Into<String>, stream: impl Into<String>) -> ConsumerKey {
        ConsumerKey {
            durable: durable.into(),
            stream: Some(stream.into()),
        }
    }

    /// Reads a shown key back. Stream names cannot hold `@`, so the last
    /// `@` splits; whatever the split, the key shows as the text it was
    /// read from.
    pub fn parse(text: &str) -> ConsumerKey {
        match text.rsplit_once('@') {
            Some((durable, stream)) if !durable.is_empty() && !stream.is_empty() => {
                ConsumerKey::on_stream(durable, stream)
            }
            _ => ConsumerKey::durable(text),
        }
    }
}

impl std::fmt::Display for ConsumerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.stream {
            Some(stream) => write!(f, "{}@{stream}", self.durable),
            None => f.write_str(&self.durable),
        }
    }
}

/// The stable id of one consumer's part of a per-consumer criterion,
/// shown (and stored) as `<criterion>/<consumer key>`
/// (`consumer_lag/normalize-hrv-durable`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceId {
    /// The per-consumer criterion.
    pub criterion: CriterionId,
    /// The consumer.
    pub consumer: ConsumerKey,
}

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.criterion.as_str(), self.consumer)
    }
}

/// What an id names: a whole criterion, or one consumer's part of one.
/// The id alerts, alert state and the outbox carry; shown and stored as
/// `<criterion>` or `<criterion>/<consumer key>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JudgedId {
    /// A criterion as a whole.
    Criterion(CriterionId),
    /// One consumer of a per-consumer criterion.
    Instance(InstanceId),
}

impl JudgedId {
    /// The criterion judged, whole or in part.
    pub fn criterion(&self) -> CriterionId {
        match self {
            JudgedId::Criterion(c) => *c,
            JudgedId::Instance(i) => i.criterion,
        }
    }

    /// The consumer, when the id is one consumer's.
    pub fn consumer(&self) -> Option<&ConsumerKey> {
        match self {
            JudgedId::Criterion(_) => None,
            JudgedId::Instance(i) => Some(&i.consumer),
        }
    }
}

impl std::fmt::Display for JudgedId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JudgedId::Criterion(c) => f.write_str(c.as_str()),
            JudgedId::Instance(i) => i.fmt(f),
        }
    }
}

/// An id that names no criterion (text from elsewhere, or a criterion this
/// build does not know).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` names no criterion")]
pub struct UnknownId(pub String);

impl std::str::FromStr for InstanceId {
    type Err = UnknownId;

    fn from_str(text: &str) -> Result<InstanceId, UnknownId> {
        let unknown = || UnknownId(text.to_string());
        let (criterion, key) = text.split_once('/').ok_or_else(unknown)?;
        let criterion = CriterionId::parse(criterion).ok_or_else(unknown)?;
        if key.is_empty() {
            return Err(unknown());
        }
        Ok(InstanceId {
            criterion,
            consumer: ConsumerKey::parse(key),
        })
    }
}

impl std::str::FromStr for JudgedId {
    type Err = UnknownId;

    fn from_str(text: &str) -> Result<JudgedId, UnknownId> {
        if text.contains('/') {
            return text.parse().map(JudgedId::Instance);
        }
        CriterionId::parse(text)
            .map(JudgedId::Criterion)
            .ok_or_else(|| UnknownId(text.to_string()))
    }
}

/// Ordered as the shown text, the order lists and maps keyed by the old
/// string ids had.
macro_rules! ord_as_text {
    ($t:ty) => {
        impl Ord for $t {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.to_string().cmp(&other.to_string())
            }
        }

        impl PartialOrd for $t {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
    };
}

ord_as_text!(ConsumerKey);
ord_as_text!(InstanceId);
ord_as_text!(JudgedId);

/// Serde as the shown text, so stored records and JSON keep their strings.
macro_rules! serde_as_text {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_as_text!(InstanceId);
serde_as_text!(JudgedId);

/// One consumer's part of a per-consumer criterion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceVerdict {
    /// Stable id, `<criterion>/<durable>` (`consumer_lag/normalize-hrv-durable`);
    /// a durable name found on two watched streams is `<durable>@<stream>`.
    pub id: InstanceId,
    /// The durable.
    pub consumer: String,
    /// The stream it lives on.
    pub stream: String,
    /// Outcome.
    pub status: Status,
    /// What was observed.
    pub observed: String,
    /// The target (overrides may give consumers their own).
    pub target: String,
    /// One line of evidence or, for unknown, the reason.
    pub evidence: String,
    /// The main number.
    pub value: Option<f64>,
    /// Warning threshold.
    pub warn_at: Option<f64>,
    /// Critical threshold.
    pub fail_at: Option<f64>,
}

impl InstanceVerdict {
    /// This consumer's judgement as a verdict of criterion `id` (texts,
    /// number and thresholds), for what reads verdicts: perfdata, a
    /// one-consumer soak's criterion.
    pub fn to_verdict(&self, id: CriterionId) -> Verdict {
        let mut v = Verdict::new(
            id,
            self.status,
            &self.observed,
            &self.target,
            &self.evidence,
        );
        v.value = self.value;
        v.warn_at = self.warn_at;
        v.fail_at = self.fail_at;
        v
    }
}

impl CriterionId {
    /// Whether this criterion is judged per watched consumer.
    pub fn per_consumer(self) -> bool {
        matches!(
            self,
            CriterionId::ConsumerConfig | CriterionId::ConsumerLag | CriterionId::Redeliveries
        )
    }
}

impl Verdict {
    /// A verdict with no number.
    pub fn new(
        id: CriterionId,
        status: Status,
        observed: impl Into<String>,
        target: impl Into<String>,
        evidence: impl Into<String>,
    ) -> Self {
        Verdict {
            id,
            status,
            observed: observed.into(),
            target: target.into(),
            evidence: evidence.into(),
            value: None,
            warn_at: None,
            fail_at: None,
            instances: Vec::new(),
        }
    }

    /// An unknown verdict: the reason is the evidence.
    pub fn unknown(id: CriterionId, target: impl Into<String>, reason: impl Into<String>) -> Self {
        Verdict::new(id, Status::Unknown, "unknown", target, reason)
    }

    /// Attaches the number and thresholds.
    pub fn with_value(mut self, value: f64, warn_at: Option<f64>, fail_at: Option<f64>) -> Self {
        self.value = Some(value);
        self.warn_at = warn_at;
        self.fail_at = fail_at;
        self
    }
}

/// Overall status: fail beats unknown beats warn beats pass.
pub fn overall(verdicts: &[Verdict]) -> Status {
    verdicts
        .iter()
        .map(|v| v.status)
        .filter(|s| *s != Status::NotConfigured)
        .max()
        .unwrap_or(Status::Unknown)
}

/// Exit code of `check`: 0 pass, 1 warn (or pending: a failure not yet
/// confirmed by its hold, `check --soak` only), 2 fail, 3 unknown.
pub fn exit_code(status: Status) -> u8 {
    match status {
        Status::Pass | Status::NotConfigured => 0,
        Status::Warn | Status::Pending => 1,
        Status::Fail => 2,
        Status::Unknown => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: Status) -> Verdict {
        Verdict::new(CriterionId::Dlq, s, "", "", "")
    }

    #[test]
    fn overall_precedence() {
        assert_eq!(
            overall(&[v(Status::Pass), v(Status::NotConfigured)]),
            Status::Pass
        );
        assert_eq!(overall(&[v(Status::Pass), v(Status::Warn)]), Status::Warn);
        assert_eq!(
            overall(&[v(Status::Warn), v(Status::Unknown)]),
            Status::Unknown
        );
        assert_eq!(
            overall(&[v(Status::Unknown), v(Status::Fail)]),
            Status::Fail
        );
        assert_eq!(overall(&[]), Status::Unknown);
        assert_eq!(exit_code(Status::Pass), 0);
        assert_eq!(exit_code(Status::Warn), 1);
        assert_eq!(exit_code(Status::Fail), 2);
        assert_eq!(exit_code(Status::Unknown), 3);
    }

    #[test]
    fn ids_are_stable_and_unique() {
        let ids: std::collections::BTreeSet<_> =
            CriterionId::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(ids.len(), 13);
        assert_eq!(
            serde_json::to_string(&CriterionId::P95Latency)
                .ok()
                .as_deref(),
            Some("\"p95_latency\"")
        );
    }

    /// The typed ids show, serialize and sort as the strings stored history,
    /// alert names and labels, JSON, perfdata and `/metrics` carried.
    #[test]
    fn consumer_ids_show_as_the_old_strings() {
        let lag = InstanceId {
            criterion: CriterionId::ConsumerLag,
            consumer: ConsumerKey::durable("normalize-hrv-durable"),
        };
        assert_eq!(lag.to_string(), "consumer_lag/normalize-hrv-durable");
        let twice = InstanceId {
            criterion: CriterionId::Redeliveries,
            consumer: ConsumerKey::on_stream("shared", "AA_CORE_HOT"),
        };
        assert_eq!(twice.to_string(), "redeliveries/shared@AA_CORE_HOT");
        assert_eq!(twice.consumer.to_string(), "shared@AA_CORE_HOT");
        assert_eq!(
            serde_json::to_value(&lag).expect("json"),
            serde_json::json!("consumer_lag/normalize-hrv-durable")
        );
        let whole = JudgedId::Criterion(CriterionId::Dlq);
        assert_eq!(whole.to_string(), "dlq");
        assert_eq!(
            serde_json::to_value(JudgedId::Instance(twice.clone())).expect("json"),
            serde_json::json!("redeliveries/shared@AA_CORE_HOT")
        );
        // Ordered as the text: `a-b` before `a@S` (the fields would say otherwise).
        let mut keys = [
            ConsumerKey::on_stream("a", "S"),
            ConsumerKey::durable("a-b"),
        ];
        keys.sort();
        let shown: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        assert_eq!(shown, vec!["a-b", "a@S"]);
    }

    /// The old strings read back as the typed ids; a text naming no
    /// criterion is refused, not guessed.
    #[test]
    fn consumer_ids_read_back_from_the_old_strings() {
        for text in [
            "consumer_lag/vendor-a",
            "consumer_config/shared@AA_VENDOR_HOT",
            "redeliveries/core-x",
        ] {
            let id: InstanceId = text.parse().expect("an instance id");
            assert_eq!(id.to_string(), text);
            let judged: JudgedId = text.parse().expect("a judged id");
            assert_eq!(judged, JudgedId::Instance(id.clone()));
            assert_eq!(judged.criterion(), id.criterion);
            assert_eq!(judged.consumer(), Some(&id.consumer));
            let back: InstanceId =
                serde_json::from_value(serde_json::json!(text)).expect("from json");
            assert_eq!(back, id);
        }
        let id: InstanceId = "consumer_config/shared@AA_VENDOR_HOT".parse().expect("id");
        assert_eq!(
            id.consumer,
            ConsumerKey::on_stream("shared", "AA_VENDOR_HOT")
        );
        assert_eq!(
            "consumer_lag".parse::<JudgedId>(),
            Ok(JudgedId::Criterion(CriterionId::ConsumerLag))
        );
        assert!("retired/x".parse::<JudgedId>().is_err());
        assert!("consumer_lag/".parse::<InstanceId>().is_err());
        assert!("soakwatch_rollback".parse::<JudgedId>().is_err());
        assert!(serde_json::from_value::<JudgedId>(serde_json::json!("nope")).is_err());
    }
}
