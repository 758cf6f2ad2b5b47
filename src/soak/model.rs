//! What a soak's history boils down to: spans per criterion, incidents,
//! coverage per probe, chart series and the soak verdict. Plain data, built by
//! [`super::timeline`] and read by reports, charts and the daemon's /metrics.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::rollback::StepRecord;
use crate::sample::Snapshot;
use crate::verdict::{CriterionId, InstanceId, Status, Verdict};

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
    /// The soak's totals so far (across service and watcher restarts).
    #[serde(default)]
    pub totals: SoakTotals,
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

/// What happened over the whole soak, across service restarts (whose
/// counters begin again at zero) and watcher restarts: the numbers a team
/// signs off with ("89,955 of 90,000 succeeded"). `None`: never seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SoakTotals {
    /// Deliveries to the service's durables (JetStream's consumer
    /// sequences; redeliveries included).
    pub delivered: Option<u64>,
    /// Messages processed, by the counter's result label value.
    pub processed: std::collections::BTreeMap<String, f64>,
    /// Messages that succeeded.
    pub succeeded: Option<f64>,
    /// Messages counted for the success rate (every result but `uncounted_results`).
    pub counted: Option<f64>,
    /// Messages dead-lettered, counted once: the larger of the DLQ stream's
    /// growth and the service's dead-letter counter.
    pub dead_lettered: Option<u64>,
    /// The DLQ stream's growth over the soak.
    pub dead_lettered_stream: Option<u64>,
    /// The service's dead-letter counter over the soak.
    pub dead_lettered_counter: Option<f64>,
    /// Rows written (created or updated) to the service's table.
    pub rows_written: Option<i64>,
    /// Messages appended to the legacy stream.
    pub legacy_appends: Option<u64>,
    /// Service restarts seen.
    pub service_restarts: usize,
}

impl SoakTotals {
    /// Succeeded / counted over the whole soak; `None` before a message was counted.
    pub fn success_ratio(&self) -> Option<f64> {
        match (self.succeeded, self.counted) {
            (Some(s), Some(c)) if c > 0.0 => Some(s / c),
            _ => None,
        }
    }

    /// "89,955 of 90,000 succeeded (99.95 %)", or `None` before any message was counted.
    pub fn success_line(&self) -> Option<String> {
        let ratio = self.success_ratio()?;
        Some(format!(
            "{} of {} succeeded ({} %)",
            grouped(self.succeeded.unwrap_or(0.0)),
            grouped(self.counted.unwrap_or(0.0)),
            percent(ratio)
        ))
    }
}

impl SoakTotals {
    /// The totals as (what, how many) rows for a person, in the order every
    /// output shows them (report, status page, `check --soak`).
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let count =
            |x: Option<u64>| x.map_or_else(|| "not seen".to_string(), |n| grouped(n as f64));
        let processed = if self.processed.is_empty() {
            "not seen".to_string()
        } else {
            let parts: Vec<String> = self
                .processed
                .iter()
                .map(|(k, v)| format!("{k} {}", grouped(*v)))
                .collect();
            format!(
                "{} ({})",
                grouped(self.processed.values().sum()),
                parts.join(", ")
            )
        };
        let dead = match (
            self.dead_lettered,
            self.dead_lettered_stream,
            self.dead_lettered_counter,
        ) {
            (Some(n), Some(s), Some(c)) => format!(
                "{} (DLQ stream +{}, counter {}: counted once)",
                grouped(n as f64),
                grouped(s as f64),
                grouped(c)
            ),
            (n, _, _) => count(n),
        };
        vec![
            ("Delivered to the consumer", count(self.delivered)),
            ("Processed", processed),
            (
                "Succeeded",
                self.success_line()
                    .unwrap_or_else(|| "no message counted".into()),
            ),
            ("Dead-lettered", dead),
            (
                "Rows written",
                self.rows_written
                    .map_or_else(|| "not seen".to_string(), |n| grouped(n as f64)),
            ),
            ("Legacy appends", count(self.legacy_appends)),
            ("Service restarts", self.service_restarts.to_string()),
        ]
    }
}

/// A count with thousands separators (`89,955`; a fraction kept as is).
pub fn grouped(x: f64) -> String {
    if x.fract() != 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let digits = format!("{}", x.abs() as u64);
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if x < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

/// A ratio as a percentage with two decimals, rounded down so a ratio
/// below a threshold never reads as it (`99.95`, `90`), trailing zeros dropped.
fn percent(ratio: f64) -> String {
    let s = format!("{:.2}", (ratio * 10_000.0).floor() / 100.0);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One consumer's part of one per-consumer criterion over the soak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumerSummary {
    /// Stable id, stored as `consumer_lag/<durable>`.
    pub id: InstanceId,
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

/// Where the one-shot rollback of a soak stands: the latch's state, stored
/// in the state database and shown in reports. Its stored and shown
/// spelling is the snake_case name (`started`, `done`, `failed`, `dry_run`,
/// `interrupted`), the strings written before this type existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackState {
    /// The latch is taken and the steps run (or a previous process stopped
    /// while they ran: found at start-up, it becomes `Interrupted`).
    Started,
    /// Every step succeeded.
    Done,
    /// A step failed.
    Failed,
    /// Dry run: nothing was changed.
    DryRun,
    /// The process stopped while the steps ran; never re-run.
    Interrupted,
}

impl RollbackState {
    /// Every state, for parsing.
    pub const ALL: [RollbackState; 5] = [
        RollbackState::Started,
        RollbackState::Done,
        RollbackState::Failed,
        RollbackState::DryRun,
        RollbackState::Interrupted,
    ];

    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            RollbackState::Started => "started",
            RollbackState::Done => "done",
            RollbackState::Failed => "failed",
            RollbackState::DryRun => "dry_run",
            RollbackState::Interrupted => "interrupted",
        }
    }

    /// The state stored as `s` (a SQLite column), None when unknown.
    pub fn parse(s: &str) -> Option<RollbackState> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for RollbackState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rollback as shown in reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackView {
    /// Where the rollback stands.
    pub state: RollbackState,
    /// What fired it.
    pub trigger: String,
    /// When the latch was taken.
    pub started: DateTime<Utc>,
    /// When it ended.
    pub finished: Option<DateTime<Utc>>,
    /// Steps recorded.
    pub steps: Vec<StepRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_state_keeps_the_strings_stored_before_it_was_typed() {
        for st in RollbackState::ALL {
            let json = serde_json::to_string(&st).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", st.as_str()));
            assert_eq!(RollbackState::parse(st.as_str()), Some(st));
            assert_eq!(st.to_string(), st.as_str());
        }
        assert_eq!(
            ["started", "done", "failed", "dry_run", "interrupted"].map(RollbackState::parse),
            RollbackState::ALL.map(Some)
        );
        assert_eq!(RollbackState::parse("running"), None);
    }

    #[test]
    fn totals_read_as_a_team_signs_off_with_them() {
        let t = SoakTotals {
            delivered: Some(90_012),
            processed: [("success".to_string(), 89_955.0), ("dlq".to_string(), 45.0)]
                .into_iter()
                .collect(),
            succeeded: Some(89_955.0),
            counted: Some(90_000.0),
            dead_lettered: Some(45),
            dead_lettered_stream: Some(45),
            dead_lettered_counter: Some(45.0),
            rows_written: Some(89_955),
            legacy_appends: Some(0),
            service_restarts: 2,
        };
        assert_eq!(
            t.success_line().as_deref(),
            Some("89,955 of 90,000 succeeded (99.95 %)")
        );
        let rows = t.rows();
        assert_eq!(rows[0], ("Delivered to the consumer", "90,012".to_string()));
        assert_eq!(rows[1].1, "90,000 (dlq 45, success 89,955)");
        assert_eq!(rows[3].1, "45 (DLQ stream +45, counter 45: counted once)");
        assert_eq!(rows[6], ("Service restarts", "2".to_string()));
        // A ratio just below a threshold never reads as it.
        let below = SoakTotals {
            succeeded: Some(99_899.0),
            counted: Some(100_000.0),
            ..Default::default()
        };
        assert!(below
            .success_line()
            .unwrap_or_default()
            .contains("(99.89 %)"));
        assert_eq!(SoakTotals::default().rows()[2].1, "no message counted");
    }
}
