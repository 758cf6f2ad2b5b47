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

/// One consumer's part of a per-consumer criterion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceVerdict {
    /// Stable id, `<criterion>/<durable>` (`consumer_lag/normalize-hrv-durable`);
    /// a durable name found on two watched streams is `<durable>@<stream>`.
    pub id: String,
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
}
