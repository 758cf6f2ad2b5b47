//! What a soak's history boils down to: spans per criterion, incidents,
//! coverage per probe, chart series and the soak verdict. Plain data, built by
//! [`super::timeline`] and read by reports, charts and the daemon's /metrics.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::rollback::StepRecord;
use crate::sample::Snapshot;
use crate::verdict::{CriterionId, Status, Verdict};

/// A stretch of time during which a criterion held one (debounced) status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// The criterion.
    pub criterion: CriterionId,
    /// Its status over the span.
    pub status: Status,
    /// First sample of the span.
    pub start: DateTime<Utc>,
    /// Last instant covered (the next span's start, or "now").
    pub end: DateTime<Utc>,
    /// Worst value seen in the span (highest for "more is worse" numbers).
    pub peak: Option<f64>,
    /// Evidence of the first sample that opened the span.
    pub evidence: String,
}

impl Span {
    /// Length in seconds.
    pub fn secs(&self) -> f64 {
        (self.end - self.start).num_milliseconds() as f64 / 1000.0
    }
}

/// Share of the soak window with good samples from one probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeCoverage {
    /// Probe label (stream, consumer, metrics, database, log, service_env).
    pub probe: String,
    /// Seconds covered by successful samples.
    pub good_secs: f64,
    /// Seconds of the soak window so far.
    pub total_secs: f64,
    /// The last failure reason, if the probe ever failed.
    pub last_error: Option<String>,
}

impl ProbeCoverage {
    /// Fraction 0..1 (1 when the window is empty).
    pub fn share(&self) -> f64 {
        if self.total_secs <= 0.0 {
            1.0
        } else {
            (self.good_secs / self.total_secs).clamp(0.0, 1.0)
        }
    }
}

/// One criterion over the whole soak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriterionSummary {
    /// The criterion.
    pub id: CriterionId,
    /// Debounced status at the newest sample.
    pub now: Status,
    /// Verdict over the soak: fail if any fail span, unknown if coverage is
    /// below the threshold, else the worst of pass/warn.
    pub soak: Status,
    /// Seconds spent failing.
    pub fail_secs: f64,
    /// Seconds with no judgement (probe down, gap in sampling).
    pub unknown_secs: f64,
    /// Share of the soak with a pass/warn/fail judgement.
    pub coverage: f64,
    /// Worst value seen over the soak.
    pub worst_value: Option<f64>,
    /// The newest raw verdict (target, observed, evidence).
    pub last: Verdict,
}

/// Time series drawn in the report's charts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChartSeries {
    /// Consumer lag (pending + ack pending).
    pub lag: Vec<(DateTime<Utc>, f64)>,
    /// Messages in the DLQ stream.
    pub dlq: Vec<(DateTime<Utc>, f64)>,
    /// Processed messages per minute.
    pub throughput: Vec<(DateTime<Utc>, f64)>,
    /// Success rate in percent (cumulative since service start).
    pub success_rate: Vec<(DateTime<Utc>, f64)>,
    /// Processing-time quantile in milliseconds.
    pub p95_ms: Vec<(DateTime<Utc>, f64)>,
    /// Width of the time buckets the series were reduced to (0: every
    /// sample kept); a chart joins samples up to a few buckets apart.
    #[serde(default)]
    pub resolution_ms: i64,
}

/// Everything known about a soak at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoakSummary {
    /// Soak id (stable across restarts).
    pub soak_id: String,
    /// Soak name from the config.
    pub name: String,
    /// T0.
    pub t0: DateTime<Utc>,
    /// The instant summarised (newest sample).
    pub now: DateTime<Utc>,
    /// Planned length in seconds.
    pub planned_secs: f64,
    /// Samples considered.
    pub samples: usize,
    /// Per criterion, in report order.
    pub criteria: Vec<CriterionSummary>,
    /// Fail spans, oldest first.
    pub incidents: Vec<Span>,
    /// All spans (for timelines), oldest first per criterion.
    pub spans: Vec<Span>,
    /// Per probe.
    pub coverage: Vec<ProbeCoverage>,
    /// Minimum coverage for a pass verdict.
    pub min_coverage: f64,
    /// Service restarts detected (process start changed or counters reset).
    pub restarts: Vec<DateTime<Utc>>,
    /// Chart data.
    pub series: ChartSeries,
    /// Overall soak verdict.
    pub verdict: Status,
    /// Why, in one line.
    pub verdict_reason: String,
    /// Newest snapshot, for the state tables.
    pub last_snapshot: Option<Snapshot>,
    /// The rollback, if it fired (filled by the daemon, not by the timeline).
    #[serde(default)]
    pub rollback: Option<RollbackView>,
    /// Each consumer that did not pass a per-consumer criterion at some
    /// point of the soak, most time not passing first (a consumer that
    /// always passed is not listed).
    #[serde(default)]
    pub consumers: Vec<ConsumerSummary>,
    /// The soak's edges: when watching began and, once signed off, the
    /// frozen end (a signed-off soak is never judged again).
    #[serde(default)]
    pub edges: SoakEdges,
}

/// Where a soak's record begins and ends, as opposed to where the soak
/// does: a watcher started after T0 did not see the head, and a soak is
/// judged over what was observed until it is signed off.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SoakEdges {
    /// The first recorded cycle (T0 itself for a soak watched from T0).
    pub observed_from: Option<DateTime<Utc>>,
    /// Seconds from T0 to the first recorded cycle when that is more than
    /// two intervals (a watcher started late); 0 otherwise.
    #[serde(default)]
    pub unobserved_head_secs: f64,
    /// The sign-off, once T0 + duration was reached.
    pub ended: Option<SoakEnd>,
}

/// The sign-off of a soak: its verdict frozen at T0 + duration. Stored with
/// the soak; `check --soak`, `report`, the page and a restarted `watch`
/// read it instead of judging again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoakEnd {
    /// T0 + duration: where the soak's window ends.
    pub at: DateTime<Utc>,
    /// When the verdict was frozen (later than `at` when no watcher ran at
    /// the end and the next start signed it off).
    pub signed_at: DateTime<Utc>,
    /// The soak verdict at the end.
    pub verdict: Status,
    /// Why, in one line.
    pub reason: String,
}

/// One consumer's part of one per-consumer criterion over the soak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumerSummary {
    /// Stable id, `consumer_lag/<durable>`.
    pub id: String,
    /// The stream it lives on.
    pub stream: String,
    /// Its raw status in the newest cycle (pass when it is not marked).
    pub now: Status,
    /// Its worst raw status over the soak.
    pub worst: Status,
    /// Time it was not passing (each cycle stands until the next, capped by the gap limit).
    pub bad_secs: f64,
    /// Cycles it was not passing.
    pub bad_cycles: usize,
    /// First and newest cycle it was not passing.
    pub first_bad: DateTime<Utc>,
    /// See `first_bad`.
    pub last_bad: DateTime<Utc>,
    /// Its worst number (highest lag, most redeliveries).
    pub worst_value: Option<f64>,
    /// Its newest evidence while not passing.
    pub evidence: String,
}

impl SoakSummary {
    /// Hours since T0 at `now`.
    pub fn elapsed_hours(&self) -> f64 {
        (self.now - self.t0).num_seconds() as f64 / 3600.0
    }

    /// Puts the frozen sign-off in force: the verdict is the one recorded
    /// at the end, whatever a later config would judge.
    pub fn freeze(&mut self, end: &SoakEnd) {
        self.verdict = end.verdict;
        self.verdict_reason = end.reason.clone();
        self.edges.ended = Some(end.clone());
    }

    /// Whether the soak is signed off (its verdict frozen).
    pub fn is_ended(&self) -> bool {
        self.edges.ended.is_some()
    }

    /// The unobserved head in words ("watched from 17:02:00 UTC, 31m after
    /// T0"), when the watcher began more than two intervals after T0.
    pub fn head_note(&self) -> Option<String> {
        let from = self.edges.observed_from?;
        (self.edges.unobserved_head_secs > 0.0).then(|| {
            format!(
                "watched from {} UTC, {} after T0: the head was not observed",
                from.format("%Y-%m-%d %H:%M:%S"),
                humantime::format_duration(std::time::Duration::from_secs(
                    self.edges.unobserved_head_secs as u64
                ))
            )
        })
    }

    /// The summary of one criterion.
    pub fn criterion(&self, id: CriterionId) -> Option<&CriterionSummary> {
        self.criteria.iter().find(|c| c.id == id)
    }
}

/// The rollback as shown in reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackView {
    /// started (running or interrupted), done, failed, interrupted.
    pub state: String,
    /// What fired it.
    pub trigger: String,
    /// When the latch was taken.
    pub started: DateTime<Utc>,
    /// When it ended.
    pub finished: Option<DateTime<Utc>>,
    /// Steps recorded.
    pub steps: Vec<StepRecord>,
}
