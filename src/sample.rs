//! Samples: what the probes saw, timestamped, with no judgement attached.
//!
//! These types are the boundary between I/O and evaluation. They are plain
//! serde data so a soak can be recorded and replayed later; each holds only
//! the facts the criteria need (never whole env files or expositions, which
//! may carry secrets and would bloat history).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::probe_error::ProbeError;

/// Which probe produced a sample or a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// JetStream stream info.
    Stream,
    /// JetStream consumer info.
    Consumer,
    /// The service's `/metrics`.
    Metrics,
    /// The service's table in PostgreSQL.
    Database,
    /// The service's log file.
    Log,
    /// The service's env file.
    ServiceEnv,
}

impl ProbeKind {
    /// Stable short name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Stream => "stream",
            ProbeKind::Consumer => "consumer",
            ProbeKind::Metrics => "metrics",
            ProbeKind::Database => "database",
            ProbeKind::Log => "log",
            ProbeKind::ServiceEnv => "service_env",
        }
    }
}

/// A probe that could not produce its sample, and why.
///
/// Stored in history as `{probe, reason, error}`: `reason` is the error's
/// one-line text (all that records written before [`ProbeError`] existed
/// hold, and what they are read back from), `error` the typed value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredProbeFailure", into = "StoredProbeFailure")]
pub struct ProbeFailure {
    /// The probe that failed.
    pub probe: ProbeKind,
    /// What went wrong; its `Display` is the one line shown to a person.
    pub error: ProbeError,
}

impl ProbeFailure {
    /// `probe` failed with `error`.
    pub fn new(probe: ProbeKind, error: ProbeError) -> Self {
        ProbeFailure { probe, error }
    }

    /// The probe's section is not in the config, so it did not run. Its
    /// criteria are `not_configured` (never blocking a verdict), not
    /// `unknown`, and outputs list the probe as not configured, not failed.
    pub fn not_configured(probe: ProbeKind, section: &str) -> Self {
        ProbeFailure::new(probe, ProbeError::not_configured(section))
    }

    /// Whether this is a [`ProbeFailure::not_configured`] rather than a failure.
    pub fn is_not_configured(&self) -> bool {
        matches!(self.error, ProbeError::NotConfigured { .. })
    }
}

impl std::fmt::Display for ProbeFailure {
    /// The error's one line (the probe is named in it where it matters).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// [`ProbeFailure`] as stored: the text beside the typed value, so history
/// from before [`ProbeError`] (text only) still reads.
#[derive(Serialize, Deserialize)]
struct StoredProbeFailure {
    probe: ProbeKind,
    reason: String,
    #[serde(default)]
    error: Option<ProbeError>,
}

impl From<StoredProbeFailure> for ProbeFailure {
    fn from(s: StoredProbeFailure) -> Self {
        let error = s
            .error
            .unwrap_or_else(|| ProbeError::from_recorded(&s.reason));
        ProbeFailure::new(s.probe, error)
    }
}

impl From<ProbeFailure> for StoredProbeFailure {
    fn from(f: ProbeFailure) -> Self {
        StoredProbeFailure {
            probe: f.probe,
            reason: f.error.to_string(),
            error: Some(f.error),
        }
    }
}

/// A probe outcome: a sample or the reason there is none.
pub type Probed<T> = Result<T, ProbeFailure>;

/// One JetStream stream as seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamState {
    /// Stream name.
    pub name: String,
    /// Subject patterns it captures.
    pub subjects: Vec<String>,
    /// Messages currently held.
    pub messages: u64,
    /// Bytes currently held.
    pub bytes: u64,
    /// First sequence held.
    pub first_seq: u64,
    /// Last sequence ever assigned: grows on every write, even if old messages expire.
    pub last_seq: u64,
    /// Time of the last message, if any.
    pub last_ts: Option<DateTime<Utc>>,
    /// `file` or `memory`.
    pub storage: String,
    /// Replica count.
    pub replicas: usize,
    /// Max age in seconds (0 = unlimited).
    pub max_age_secs: f64,
    /// Consumers defined on it.
    pub consumer_count: usize,
}

/// The durable consumer as seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumerState {
    /// Stream it lives on.
    pub stream: String,
    /// Consumer name.
    pub name: String,
    /// Matching messages never delivered yet.
    pub num_pending: u64,
    /// Delivered, not yet acknowledged.
    pub num_ack_pending: u64,
    /// Messages currently being redelivered.
    pub num_redelivered: u64,
    /// Pull requests waiting (a live puller).
    pub num_waiting: u64,
    /// Last delivered consumer sequence.
    pub delivered_consumer_seq: u64,
    /// Last delivered stream sequence.
    pub delivered_stream_seq: u64,
    /// Time of the last delivery.
    pub delivered_last_active: Option<DateTime<Utc>>,
    /// Ack floor, consumer sequence.
    pub ack_floor_consumer_seq: u64,
    /// Ack floor, stream sequence.
    pub ack_floor_stream_seq: u64,
    /// Time of the last ack.
    pub ack_floor_last_active: Option<DateTime<Utc>>,
    /// Configured filter subject ("" = none).
    pub filter_subject: String,
    /// explicit, all or none.
    pub ack_policy: String,
    /// Ack wait in seconds.
    pub ack_wait_secs: f64,
    /// Max deliveries (-1 = unlimited).
    pub max_deliver: i64,
    /// Max ack pending.
    pub max_ack_pending: i64,
    /// Durable name, None for an ephemeral consumer.
    pub durable_name: Option<String>,
    /// Push consumers have a deliver subject; the service uses pull.
    pub deliver_subject: Option<String>,
}

/// The facts taken from the service's `/metrics`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MetricsState {
    /// Bytes of the exposition.
    pub body_bytes: u64,
    /// Bad lines: count and the first few (line number + message).
    pub parse_errors: Vec<String>,
    /// Count of bad lines.
    pub parse_error_count: usize,
    /// True when the selected counter can be read: series selected, or the
    /// family declared with no samples yet (zero events).
    pub counter_found: bool,
    /// Selected counter summed by result label value.
    pub by_result: BTreeMap<String, f64>,
    /// Selected counter summed by stream label value.
    pub by_stream: BTreeMap<String, f64>,
    /// Any series, of any metric, labelled with the legacy stream: (series, value).
    pub legacy_series: Vec<(String, f64)>,
    /// Latency histogram buckets (upper bound, cumulative count); None when not found.
    pub histogram: Option<Vec<(f64, f64)>>,
    /// Process start time, seconds since epoch.
    pub process_start: Option<f64>,
    /// How the message counter family was found (None in records made before this was kept).
    #[serde(default)]
    pub counter: Option<FamilyFacts>,
    /// How the latency histogram family was found (None when not configured, or in older records).
    #[serde(default)]
    pub latency: Option<FamilyFacts>,
}

/// Whether a configured family was in the scrape, so "zero events" (declared,
/// no samples) is told apart from "misnamed or missing" (absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FamilyPresence {
    /// Neither a `# TYPE` line nor a sample: a wrong name, or not this service.
    #[default]
    Absent,
    /// `# TYPE` present but no sample: how prom-client and prometheus_client
    /// expose a labelled metric before its first event. Zero events.
    Declared,
    /// Samples exist, but none carries the `[metrics.match]` label values.
    Unmatched,
    /// At least one series was selected.
    Selected,
}

/// What selecting one configured family found: the facts behind "zero
/// events", "unknown" and the evidence of which labels filtered it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FamilyFacts {
    /// The configured name (sample name of a counter, family name of a histogram).
    pub name: String,
    /// Found, declared only, unmatched or absent.
    pub presence: FamilyPresence,
    /// `[metrics.match]` pairs applied to this family (`durable="x"`): it carries those labels.
    #[serde(default)]
    pub filtered_by: Vec<String>,
    /// `[metrics.match]` labels this family does not carry, so it was not filtered by them.
    #[serde(default)]
    pub not_filtered_by: Vec<String>,
    /// Series selected (after de-duplication).
    #[serde(default)]
    pub series: usize,
    /// When nothing matched: the label sets that exist (a bounded list).
    #[serde(default)]
    pub label_sets: Vec<String>,
    /// When absent: existing family names that look alike.
    #[serde(default)]
    pub did_you_mean: Vec<String>,
    /// Why the selected values cannot be trusted: NaN, infinite or negative
    /// counts, duplicate series, buckets that decrease. Such series are left
    /// out of the sums and the criteria reading them are unknown.
    #[serde(default)]
    pub invalid: Vec<String>,
    /// The sample name read when it is not the configured one: a counter
    /// configured by its family name (`orders_processed`) is read from its
    /// `orders_processed_total` samples, and the evidence says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_as: Option<String>,
}

impl FamilyFacts {
    /// Why the family gives no usable number (absent, unmatched, invalid
    /// values), as one line for a person; `None` when it is usable, including
    /// declared with no samples (zero events).
    pub fn unusable(&self) -> Option<String> {
        match self.presence {
            FamilyPresence::Absent => Some(if self.did_you_mean.is_empty() {
                format!("{} not found in /metrics", self.name)
            } else {
                format!(
                    "{} not found in /metrics; did you mean {}?",
                    self.name,
                    self.did_you_mean.join(", ")
                )
            }),
            FamilyPresence::Unmatched => Some(format!(
                "no series of {} has {}; series that exist: {}",
                self.name,
                self.filtered_by.join(", "),
                self.label_sets.join(" ")
            )),
            FamilyPresence::Declared | FamilyPresence::Selected if !self.invalid.is_empty() => {
                Some(format!(
                    "{} cannot be trusted: {}",
                    self.name,
                    self.invalid.join("; ")
                ))
            }
            FamilyPresence::Declared | FamilyPresence::Selected => None,
        }
    }

    /// True when the family is declared and has no sample: zero events since start.
    pub fn declared_empty(&self) -> bool {
        self.presence == FamilyPresence::Declared
    }

    /// Which `[metrics.match]` labels filtered this family and under which
    /// sample name it was read, for evidence (empty when neither applies).
    pub fn filter_note(&self) -> String {
        let mut parts = Vec::new();
        if let Some(sample) = &self.read_as {
            parts.push(format!("read as {sample}"));
        }
        if !self.filtered_by.is_empty() {
            parts.push(format!("filtered by {}", self.filtered_by.join(", ")));
        }
        if !self.not_filtered_by.is_empty() {
            parts.push(format!(
                "not by {} (the family has no such label)",
                self.not_filtered_by.join(", ")
            ));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("{}: {}", self.name, parts.join(", "))
        }
    }
}

/// The facts taken from the service's table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DbState {
    /// Rows written (created or updated) within the recent window.
    pub rows_recent: i64,
    /// Length of that window in seconds.
    pub recent_window_secs: f64,
    /// Newest write time.
    pub newest_write: Option<DateTime<Utc>>,
    /// Rows written since each requested instant (e.g. service start).
    pub written_since: Vec<(DateTime<Utc>, i64)>,
    /// Which columns define "written".
    pub write_columns: Vec<String>,
    /// Derived-column spot check: rows checked.
    pub derived_checked: Option<i64>,
    /// Derived-column spot check: rows wrong.
    pub derived_bad: Option<i64>,
    /// Largest absolute error seen in the spot check.
    pub derived_max_error: Option<f64>,
    /// Facts a person should know (e.g. a missing index).
    pub notes: Vec<String>,
}

impl DbState {
    /// Rows written since the given instant, if it was asked for.
    pub fn written_since(&self, at: DateTime<Utc>) -> Option<i64> {
        self.written_since
            .iter()
            .find(|(t, _)| *t == at)
            .map(|(_, n)| *n)
    }
}

/// The facts taken from the service's log.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LogState {
    /// File size in bytes.
    pub size: u64,
    /// Bytes scanned (the tail when the file is large).
    pub scanned_bytes: u64,
    /// Lines scanned.
    pub lines_scanned: u64,
    /// Lines that are fallback events.
    pub fallback_count: u64,
    /// First fallback line (trimmed, credentials hidden).
    pub first_fallback: Option<String>,
    /// Last fallback line.
    pub last_fallback: Option<String>,
    /// Lines that matched a fallback pattern but also an ignore pattern.
    pub ignored_count: u64,
    /// Fallback lines seen since the tail started (across cycles, rotations
    /// and restarts of `watch`): a fallback seen stays counted for the soak.
    #[serde(default)]
    pub fallback_total: u64,
    /// Candidate lines ignored since the tail started.
    #[serde(default)]
    pub ignored_total: u64,
    /// Lines read since the tail started.
    #[serde(default)]
    pub lines_total: u64,
    /// Bytes written but not read yet (the tail reads a bounded amount per
    /// cycle and catches up over the next ones; nothing is skipped).
    #[serde(default)]
    pub backlog_bytes: u64,
    /// Set when the log cannot be read now but fallbacks were seen before:
    /// the probe still answers so the fallback stays failing.
    #[serde(default)]
    pub unreadable: Option<String>,
    /// Where the tail stands, so a restarted `watch` resumes there.
    #[serde(default)]
    pub cursor: Option<LogCursor>,
}

/// The position of the log tail: which file (device, inode) and how far.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LogCursor {
    /// Device of the file read.
    pub dev: u64,
    /// Inode of the file read.
    pub ino: u64,
    /// Offset of the first byte not yet consumed (start of an unfinished line).
    pub offset: u64,
}

/// The values read from the service's env file (only configured keys).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EnvState {
    /// Key -> (value, 1-based line).
    pub values: BTreeMap<String, (String, usize)>,
}

/// The consumers of one stream, read with the paged `CONSUMER.LIST` API:
/// `Ok(None)` means the stream does not exist.
pub type ConsumerListing = Probed<Option<Vec<ConsumerState>>>;

/// Everything one round of probes saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredSnapshot")]
pub struct Snapshot {
    /// When the round started; the evaluator's notion of "now".
    pub taken_at: DateTime<Utc>,
    /// Per configured stream name; `Ok(None)` means the server says it does not exist.
    pub streams: BTreeMap<String, Probed<Option<StreamState>>>,
    /// Every stream a watched consumer lives on -> the consumers on it
    /// (one paged listing per stream, not one request per consumer).
    pub consumers: BTreeMap<String, ConsumerListing>,
    /// The service's metrics.
    pub metrics: Probed<MetricsState>,
    /// The service's table.
    pub db: Probed<DbState>,
    /// The service's log.
    pub log: Probed<LogState>,
    /// The service's env file.
    pub env: Probed<EnvState>,
    /// Wall time each probe took, milliseconds.
    pub probe_ms: BTreeMap<String, u64>,
    /// Set on a stored older snapshot whose consumer listings were left
    /// out (a fleet's listing is kept for the newest snapshot only): its
    /// consumers read as unknown, never as missing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub consumers_elided: bool,
}

/// A snapshot at `taken_at` in which no probe is configured: the base unit
/// tests build theirs on.
#[cfg(test)]
impl Snapshot {
    pub(crate) fn nothing_configured(taken_at: DateTime<Utc>) -> Snapshot {
        let nc = ProbeFailure::not_configured;
        Snapshot {
            taken_at,
            streams: Default::default(),
            consumers: Default::default(),
            metrics: Err(nc(ProbeKind::Metrics, "metrics")),
            db: Err(nc(ProbeKind::Database, "database")),
            log: Err(nc(ProbeKind::Log, "log")),
            env: Err(nc(ProbeKind::ServiceEnv, "service_env")),
            probe_ms: Default::default(),
            consumers_elided: false,
        }
    }
}

/// Listings with more consumers than this are left out of older stored
/// snapshots.
pub const KEEP_LISTINGS_UP_TO: usize = 32;

/// A snapshot as any version stored it: before the consumer listings, a
/// snapshot held one `consumer` (the durable, or `None` when missing).
#[derive(Deserialize)]
struct StoredSnapshot {
    taken_at: DateTime<Utc>,
    streams: BTreeMap<String, Probed<Option<StreamState>>>,
    #[serde(default)]
    consumers: Option<BTreeMap<String, ConsumerListing>>,
    #[serde(default)]
    consumer: Option<Probed<Option<ConsumerState>>>,
    metrics: Probed<MetricsState>,
    db: Probed<DbState>,
    log: Probed<LogState>,
    env: Probed<EnvState>,
    probe_ms: BTreeMap<String, u64>,
    #[serde(default)]
    consumers_elided: bool,
}

impl From<StoredSnapshot> for Snapshot {
    fn from(s: StoredSnapshot) -> Snapshot {
        let consumers = match (s.consumers, s.consumer) {
            (Some(c), _) => c,
            // The one durable of an older record becomes its stream's
            // listing; a missing durable leaves an empty listing (the
            // durable is then judged missing, as it was).
            (None, Some(Ok(Some(c)))) => [(c.stream.clone(), Ok(Some(vec![c])))].into(),
            (None, Some(Ok(None))) | (None, None) => BTreeMap::new(),
            (None, Some(Err(f))) => [(String::new(), Err(f))].into(),
        };
        Snapshot {
            taken_at: s.taken_at,
            streams: s.streams,
            consumers,
            metrics: s.metrics,
            db: s.db,
            log: s.log,
            env: s.env,
            probe_ms: s.probe_ms,
            consumers_elided: s.consumers_elided,
        }
    }
}

/// Where one watched durable stands in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConsumerLookup<'a> {
    /// Listed on its stream.
    Found(&'a ConsumerState),
    /// Its stream's listing answered and it is not in it (or the stream
    /// does not exist).
    Missing,
    /// Its stream's listing failed: nothing can be said.
    Unknown(&'a ProbeFailure),
}

impl Snapshot {
    /// Every probe that ran, by its stable label (`stream <name>`,
    /// `consumer`, `metrics`, `database`, `log`, `service_env`), with its
    /// failure if it failed. The consumer listings of all watched streams
    /// are one probe, `consumer` (failed when one listing failed, with its
    /// reason, which names the stream), so the label stays what it was for
    /// one durable. Probes whose section is not configured did not run and
    /// are left out: they are neither failed nor covered.
    pub fn probe_outcomes(&self) -> Vec<(String, Option<&ProbeFailure>)> {
        let mut v: Vec<(String, Option<&ProbeFailure>)> = self
            .streams
            .iter()
            .map(|(name, r)| (format!("stream {name}"), r.as_ref().err()))
            .collect();
        if !self.consumers.is_empty() {
            let failed = self.consumers.values().find_map(|r| r.as_ref().err());
            v.push((CONSUMER_PROBE.to_string(), failed));
        }
        v.push(("metrics".into(), self.metrics.as_ref().err()));
        v.push(("database".into(), self.db.as_ref().err()));
        v.push(("log".into(), self.log.as_ref().err()));
        v.push(("service_env".into(), self.env.as_ref().err()));
        v.retain(|(_, f)| !f.is_some_and(ProbeFailure::is_not_configured));
        v
    }

    /// This snapshot without its consumer listings, when they hold more
    /// than [`KEEP_LISTINGS_UP_TO`] consumers (None: small enough to keep).
    /// The listings of a 1,000-durable fleet are most of a snapshot; the
    /// cycle record keeps each consumer's verdict, and only the newest
    /// snapshot is evaluated again.
    /// Counted before anything is copied: the store asks every cycle.
    pub fn elide_consumers(&self) -> Option<Snapshot> {
        let listed: usize = self
            .consumers
            .values()
            .filter_map(|l| l.as_ref().ok().and_then(|l| l.as_ref()))
            .map(Vec::len)
            .sum();
        if listed <= KEEP_LISTINGS_UP_TO {
            return None;
        }
        let consumers = self
            .consumers
            .iter()
            .map(|(k, l)| {
                let l = match l {
                    Ok(Some(_)) => Ok(Some(Vec::new())),
                    other => other.clone(),
                };
                (k.clone(), l)
            })
            .collect();
        Some(Snapshot {
            taken_at: self.taken_at,
            streams: self.streams.clone(),
            consumers,
            metrics: self.metrics.clone(),
            db: self.db.clone(),
            log: self.log.clone(),
            env: self.env.clone(),
            probe_ms: self.probe_ms.clone(),
            consumers_elided: true,
        })
    }

    /// The durable `name` on `stream`.
    pub fn consumer(&self, stream: &str, name: &str) -> ConsumerLookup<'_> {
        if self.consumers_elided {
            static ELIDED: std::sync::OnceLock<ProbeFailure> = std::sync::OnceLock::new();
            return ConsumerLookup::Unknown(ELIDED.get_or_init(|| {
                ProbeFailure::new(ProbeKind::Consumer, ProbeError::ListingNotKept)
            }));
        }
        match self.consumers.get(stream) {
            Some(Err(f)) => ConsumerLookup::Unknown(f),
            Some(Ok(Some(list))) => list
                .iter()
                .find(|c| c.name == name)
                .map_or(ConsumerLookup::Missing, ConsumerLookup::Found),
            Some(Ok(None)) => ConsumerLookup::Missing,
            // An older record's failed consumer probe has no stream.
            None => match self.consumers.get("") {
                Some(Err(f)) => ConsumerLookup::Unknown(f),
                _ => ConsumerLookup::Missing,
            },
        }
    }
}

/// The probe label of the consumer listings (all streams: one probe).
pub const CONSUMER_PROBE: &str = "consumer";

#[cfg(test)]
mod tests {
    use super::*;

    /// `MetricsState` as stored before the family facts were kept.
    #[derive(Serialize)]
    struct StoredBefore {
        body_bytes: u64,
        parse_errors: Vec<String>,
        parse_error_count: usize,
        counter_found: bool,
        by_result: BTreeMap<String, f64>,
        by_stream: BTreeMap<String, f64>,
        legacy_series: Vec<(String, f64)>,
        histogram: Option<Vec<(f64, f64)>>,
        process_start: Option<f64>,
    }

    #[test]
    fn a_snapshot_stored_with_one_consumer_loads_as_its_streams_listing() {
        #[derive(Serialize)]
        struct Before<'a> {
            taken_at: DateTime<Utc>,
            streams: BTreeMap<String, Probed<Option<StreamState>>>,
            consumer: Probed<Option<ConsumerState>>,
            metrics: Probed<MetricsState>,
            db: Probed<DbState>,
            log: Probed<LogState>,
            env: Probed<EnvState>,
            probe_ms: BTreeMap<&'a str, u64>,
        }
        let c = ConsumerState {
            stream: "AA_CORE_HOT".into(),
            name: "normalize-hrv-durable".into(),
            num_pending: 3,
            num_ack_pending: 0,
            num_redelivered: 0,
            num_waiting: 1,
            delivered_consumer_seq: 1,
            delivered_stream_seq: 1,
            delivered_last_active: None,
            ack_floor_consumer_seq: 1,
            ack_floor_stream_seq: 1,
            ack_floor_last_active: None,
            filter_subject: "a.b".into(),
            ack_policy: "explicit".into(),
            ack_wait_secs: 60.0,
            max_deliver: 5,
            max_ack_pending: 1000,
            durable_name: Some("normalize-hrv-durable".into()),
            deliver_subject: None,
        };
        let failed = |probe| ProbeFailure::new(probe, ProbeError::Other("down".into()));
        let old = Before {
            taken_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
            streams: BTreeMap::new(),
            consumer: Ok(Some(c)),
            metrics: Err(failed(ProbeKind::Metrics)),
            db: Err(failed(ProbeKind::Database)),
            log: Err(failed(ProbeKind::Log)),
            env: Err(failed(ProbeKind::ServiceEnv)),
            probe_ms: BTreeMap::new(),
        };
        let bytes = rmp_serde::to_vec_named(&old).expect("encode");
        let back: Snapshot = rmp_serde::from_slice(&bytes).expect("old snapshot decodes");
        match back.consumer("AA_CORE_HOT", "normalize-hrv-durable") {
            ConsumerLookup::Found(c) => assert_eq!(c.num_pending, 3),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            back.consumer("AA_CORE_HOT", "other"),
            ConsumerLookup::Missing
        );
        // A failed consumer probe of old stays unknown, not missing.
        let old = Before {
            consumer: Err(failed(ProbeKind::Consumer)),
            ..old
        };
        let json = serde_json::to_string(&old).expect("json");
        let back: Snapshot = serde_json::from_str(&json).expect("old JSON decodes");
        assert!(matches!(
            back.consumer("AA_CORE_HOT", "normalize-hrv-durable"),
            ConsumerLookup::Unknown(_)
        ));
    }

    /// A failure as stored before [`ProbeError`]: the probe and its text.
    #[derive(Serialize)]
    struct OldFailure {
        probe: ProbeKind,
        reason: String,
    }

    #[test]
    fn a_failure_stored_as_text_reads_back_as_its_variant() {
        let over_cap = "GET http://127.0.0.1:9/metrics: body of 9 bytes (Content-Length) is over the cap of 1 bytes ([metrics] max_body_bytes)";
        let cases = [
            (
                ProbeKind::Database,
                "not configured: no [database] section in the config",
                ProbeError::not_configured("database"),
            ),
            (
                ProbeKind::Metrics,
                over_cap,
                ProbeError::OverCap {
                    url: "http://127.0.0.1:9/metrics".into(),
                    body: crate::probe_error::OverCapBody::ContentLength(9),
                    cap: 1,
                },
            ),
            (
                ProbeKind::Stream,
                "stream S: cannot connect",
                ProbeError::Other("stream S: cannot connect".into()),
            ),
        ];
        for (probe, reason, want) in cases {
            let old = OldFailure {
                probe,
                reason: reason.to_string(),
            };
            let bytes = rmp_serde::to_vec_named(&old).expect("encode");
            let back: ProbeFailure = rmp_serde::from_slice(&bytes).expect("old msgpack decodes");
            assert_eq!(back, ProbeFailure::new(probe, want.clone()));
            assert_eq!(back.to_string(), reason);
            let json = serde_json::to_string(&old).expect("json");
            let back: ProbeFailure = serde_json::from_str(&json).expect("old JSON decodes");
            assert_eq!(back, ProbeFailure::new(probe, want));
        }
        assert!(serde_json::from_str::<ProbeFailure>(
            r#"{"probe":"log","reason":"not configured: no [log] section in the config"}"#
        )
        .expect("json")
        .is_not_configured());
    }

    #[test]
    fn a_failure_is_stored_with_its_text_and_its_variant() {
        let f = ProbeFailure::new(
            ProbeKind::Stream,
            ProbeError::timeout("stream S", std::time::Duration::from_secs(5)),
        );
        let raw: serde_json::Value =
            rmp_serde::from_slice(&rmp_serde::to_vec_named(&f).expect("encode")).expect("raw");
        // An older soakwatch reading this record finds the text it knows.
        assert_eq!(raw["reason"], "stream S: no answer within 5s");
        assert_eq!(raw["probe"], "stream");
        let back: ProbeFailure =
            rmp_serde::from_slice(&rmp_serde::to_vec_named(&f).expect("encode")).expect("decode");
        assert_eq!(back, f);
        let back: ProbeFailure =
            serde_json::from_str(&serde_json::to_string(&f).expect("json")).expect("decode");
        assert_eq!(back, f);
    }

    #[test]
    fn metrics_recorded_before_the_family_facts_still_load() {
        let old = StoredBefore {
            body_bytes: 10,
            parse_errors: vec![],
            parse_error_count: 0,
            counter_found: true,
            by_result: [("success".to_string(), 3.0)].into_iter().collect(),
            by_stream: BTreeMap::new(),
            legacy_series: vec![],
            histogram: Some(vec![(0.5, 3.0)]),
            process_start: Some(1.0),
        };
        let bytes = rmp_serde::to_vec_named(&old).expect("encode");
        let back: MetricsState = rmp_serde::from_slice(&bytes).expect("old record decodes");
        assert!(back.counter_found);
        assert_eq!(back.by_result.get("success"), Some(&3.0));
        assert_eq!(back.counter, None);
        assert_eq!(back.latency, None);
        let json = serde_json::to_string(&old).expect("json");
        let back: MetricsState = serde_json::from_str(&json).expect("old JSON decodes");
        assert_eq!(back.latency, None);
    }

    #[test]
    fn family_facts_explain_why_a_family_is_unusable() {
        let mut f = FamilyFacts {
            name: "m_total".into(),
            ..Default::default()
        };
        assert_eq!(
            f.unusable().as_deref(),
            Some("m_total not found in /metrics")
        );
        f.did_you_mean = vec!["m2_total".into()];
        assert!(f
            .unusable()
            .is_some_and(|r| r.ends_with("did you mean m2_total?")));
        f.presence = FamilyPresence::Declared;
        assert!(f.declared_empty() && f.unusable().is_none());
        f.presence = FamilyPresence::Selected;
        f.invalid = vec!["m_total{} = NaN".into()];
        assert!(f
            .unusable()
            .is_some_and(|r| r.contains("cannot be trusted: m_total{} = NaN")));
        f.filtered_by = vec!["durable=\"d\"".into()];
        f.not_filtered_by = vec!["stream".into()];
        assert_eq!(
            f.filter_note(),
            "m_total: filtered by durable=\"d\", not by stream (the family has no such label)"
        );
    }
}
