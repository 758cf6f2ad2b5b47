//! From per-cycle verdicts to a soak: debouncing (`for` durations and
//! recovery hysteresis), gaps, spans, incidents, coverage and the verdict.
//!
//! Pure: cycles in, a [`SoakSummary`] out. Each cycle is compact (statuses
//! and numbers, evidence only when not passing), so 48 h at 10 s (17,280
//! cycles) stays small in memory and summarises in milliseconds.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::evaluate::evaluate;
use crate::histogram;
use crate::sample::Snapshot;
use crate::soak::dlq_spike::{is_spike, SpikeRule};
use crate::soak::model::{ChartSeries, CriterionSummary, ProbeCoverage, SoakSummary, Span};
pub use crate::soak::record::{CycleRecord, SoakMeta};
use crate::verdict::{CriterionId, Status, Verdict};

/// How history is judged; from `[watch]` in checks.toml.
#[derive(Debug, Clone)]
pub struct SoakPolicy {
    /// Expected time between samples.
    pub interval: Duration,
    /// A longer gap between samples is a gap: unknown for its length.
    pub max_gap: Duration,
    /// A raw failure must hold this long before it counts, per criterion.
    pub fail_for: BTreeMap<CriterionId, Duration>,
    /// A failing criterion must pass this long before it recovers.
    pub recover_after: Duration,
    /// Below this share of judged time a criterion (and the soak) is unknown.
    pub min_coverage: f64,
    /// More than this many messages dead-lettered within the trailing window
    /// fails `dlq` at once (no `for`).
    pub dlq_spike: SpikeRule,
    /// Every probe label, so coverage lists probes that never failed too.
    pub probe_labels: Vec<String>,
}

impl SoakPolicy {
    /// The `for` duration of a criterion (zero when none is set).
    pub fn fail_for(&self, id: CriterionId) -> Duration {
        self.fail_for.get(&id).copied().unwrap_or(Duration::ZERO)
    }
}

impl CycleRecord {
    /// Evaluates one cycle against the previous snapshot (the window) and
    /// keeps the compact result (with the DLQ facts the spike rule counts).
    pub fn evaluate(
        cfg: &Config,
        prev: Option<&Snapshot>,
        snap: &Snapshot,
        max_gap: Duration,
    ) -> (CycleRecord, Vec<Verdict>) {
        let usable_prev = prev.filter(|p| {
            let gap = (snap.taken_at - p.taken_at)
                .to_std()
                .unwrap_or(Duration::MAX);
            gap <= max_gap && p.taken_at < snap.taken_at
        });
        let verdicts = match usable_prev {
            Some(p) => evaluate(cfg, &[p.clone(), snap.clone()]),
            None => evaluate(cfg, std::slice::from_ref(snap)),
        };
        (CycleRecord::from_verdicts(cfg, snap, &verdicts), verdicts)
    }

    /// Compacts verdicts and the snapshot's chart facts.
    pub fn from_verdicts(cfg: &Config, snap: &Snapshot, verdicts: &[Verdict]) -> CycleRecord {
        let by_id: BTreeMap<CriterionId, &Verdict> = verdicts.iter().map(|v| (v.id, v)).collect();
        let mut status = Vec::with_capacity(CriterionId::ALL.len());
        let mut value = Vec::with_capacity(CriterionId::ALL.len());
        let mut evidence = Vec::with_capacity(CriterionId::ALL.len());
        for id in CriterionId::ALL {
            match by_id.get(&id) {
                Some(v) => {
                    status.push(v.status);
                    value.push(v.value);
                    evidence.push((v.status != Status::Pass).then(|| v.evidence.clone()));
                }
                None => {
                    status.push(Status::Unknown);
                    value.push(None);
                    evidence.push(Some("not evaluated".into()));
                }
            }
        }
        let mut probe_errors = BTreeMap::new();
        for (label, err) in snap.probe_outcomes() {
            if let Some(e) = err {
                probe_errors.insert(label, e.reason.clone());
            }
        }
        let metrics = snap.metrics.as_ref().ok();
        let dlq_stream = snap
            .streams
            .get(&cfg.streams.dlq.name)
            .and_then(|r| r.as_ref().ok())
            .and_then(|s| s.as_ref());
        CycleRecord {
            at: snap.taken_at,
            status,
            value,
            evidence,
            probe_errors,
            process_start: metrics.and_then(|m| m.process_start),
            processed_total: metrics
                .filter(|m| m.counter_found)
                .map(|m| m.by_result.values().sum()),
            dlq_messages: dlq_stream.map(|s| s.messages),
            dlq_last_seq: dlq_stream.map(|s| s.last_seq),
            dlq_counter: metrics.filter(|m| m.counter_found).map(|m| {
                m.by_result
                    .get(&cfg.metrics.dlq_result)
                    .copied()
                    .unwrap_or(0.0)
            }),
            lag: snap
                .consumer
                .as_ref()
                .ok()
                .and_then(|c| c.as_ref())
                .map(|c| c.num_pending + c.num_ack_pending),
        }
    }
}

/// Drops evidence that repeats the previous cycle's (same status, same
/// text): 48 h of an unchanged failure then costs one string, not 17,280.
/// A dropped evidence means "as in the previous cycle".
#[derive(Debug, Default)]
pub struct EvidenceDeduper {
    last: Vec<(Status, Option<String>)>,
}

impl EvidenceDeduper {
    /// State after a stored history (to resume deduplication after a restart).
    pub fn from_history(cycles: &[CycleRecord]) -> Self {
        let mut d = EvidenceDeduper::default();
        for c in cycles {
            d.remember(c);
        }
        d
    }

    fn remember(&mut self, rec: &CycleRecord) {
        self.last.resize(rec.status.len(), (Status::Unknown, None));
        for (i, st) in rec.status.iter().enumerate() {
            let ev = rec.evidence.get(i).cloned().flatten();
            if ev.is_some() || *st != self.last[i].0 || *st == Status::Pass {
                self.last[i] = (*st, ev);
            }
        }
    }

    /// Deduplicates `rec` in place and remembers it.
    pub fn apply(&mut self, rec: &mut CycleRecord) {
        let full = rec.clone();
        for i in 0..rec.evidence.len() {
            if let (Some((st, Some(prev))), Some(Some(cur))) =
                (self.last.get(i), rec.evidence.get(i))
            {
                if rec.status.get(i) == Some(st) && prev == cur {
                    rec.evidence[i] = None;
                }
            }
        }
        // Remember the full evidence, not the deduplicated one.
        self.remember(&full);
    }
}

/// Probe labels a config produces (for coverage of probes that never failed).
pub fn probe_labels(cfg: &Config) -> Vec<String> {
    let mut v: Vec<String> = cfg
        .streams
        .all()
        .iter()
        .map(|s| format!("stream {}", s.name))
        .collect();
    v.extend(["consumer", "metrics"].map(String::from));
    for (label, configured) in [
        ("database", cfg.database.is_some()),
        ("log", cfg.log.is_some()),
        ("service_env", cfg.service_env.is_some()),
    ] {
        if configured {
            v.push(label.into());
        }
    }
    v
}

fn idx(id: CriterionId) -> usize {
    CriterionId::ALL.iter().position(|c| *c == id).unwrap_or(0)
}

/// Debounced status per cycle for one criterion.
fn debounce(cycles: &[CycleRecord], id: CriterionId, policy: &SoakPolicy) -> Vec<Status> {
    let i = idx(id);
    let fail_for = chrono::Duration::from_std(policy.fail_for(id)).unwrap_or_default();
    let recover = chrono::Duration::from_std(policy.recover_after).unwrap_or_default();
    let max_gap = chrono::Duration::from_std(policy.max_gap).unwrap_or_default();
    let mut out: Vec<Status> = Vec::with_capacity(cycles.len());
    let mut current = Status::Unknown;
    let mut pending_since: Option<usize> = None;
    let mut recovering_since: Option<usize> = None;
    for (k, c) in cycles.iter().enumerate() {
        let raw = c.status.get(i).copied().unwrap_or(Status::Unknown);
        let gap_before = k > 0 && c.at - cycles[k - 1].at > max_gap;
        if gap_before {
            // A gap breaks every running `for` and recovery clock.
            pending_since = None;
            recovering_since = None;
        }
        let spike = id == CriterionId::Dlq && is_spike(cycles, k, &policy.dlq_spike);
        // What this cycle shows; a failure inside its hold is pending (its
        // own state: neither the status before it nor an unknown).
        let mut shown = None;
        match raw {
            Status::Fail | Status::Pending => {
                recovering_since = None;
                if current == Status::Fail {
                    // still failing
                } else {
                    let start = *pending_since.get_or_insert(k);
                    if spike || c.at - cycles[start].at >= fail_for {
                        // Confirmed: the incident began when the condition did.
                        for s in out.iter_mut().skip(start) {
                            *s = Status::Fail;
                        }
                        current = Status::Fail;
                        pending_since = None;
                    } else {
                        shown = Some(Status::Pending);
                    }
                }
            }
            Status::Unknown | Status::NotConfigured => {
                pending_since = None;
                recovering_since = None;
                current = raw;
            }
            Status::Pass | Status::Warn => {
                pending_since = None;
                if current == Status::Fail {
                    let start = *recovering_since.get_or_insert(k);
                    if c.at - cycles[start].at >= recover {
                        current = raw;
                        recovering_since = None;
                    }
                } else {
                    current = raw;
                }
            }
        }
        out.push(shown.unwrap_or(current));
    }
    out
}

/// Whether a value is worse when higher (for span peaks).
fn higher_is_worse(id: CriterionId) -> bool {
    !matches!(
        id,
        CriterionId::SuccessRate | CriterionId::StreamPurity | CriterionId::ServiceUp
    )
}

/// Summarises a soak from its cycles (oldest first). `last_verdicts` are the
/// newest cycle's full verdicts (targets, observed text) and `last_snapshot`
/// its samples, for the tables.
pub fn summarize(
    meta: &SoakMeta,
    cycles: &[CycleRecord],
    last_verdicts: &[Verdict],
    last_snapshot: Option<Snapshot>,
    policy: &SoakPolicy,
) -> SoakSummary {
    let now = cycles.last().map(|c| c.at).unwrap_or(meta.t0);
    let window_secs = ((now - meta.t0).num_milliseconds() as f64 / 1000.0).max(0.0);
    let max_gap = chrono::Duration::from_std(policy.max_gap).unwrap_or_default();

    let weight = cycle_weights(cycles, now, max_gap);

    let mut spans = Vec::new();
    let mut criteria = Vec::new();
    for id in CriterionId::ALL {
        let (summary, criterion_spans) =
            criterion_summary(id, cycles, &weight, last_verdicts, policy, now, window_secs);
        criteria.push(summary);
        spans.extend(criterion_spans);
    }

    let coverage = probe_coverage(cycles, &weight, policy, window_secs);

    let restarts = restarts(cycles);

    let series = chart_series(cycles);
    let incidents: Vec<Span> = spans
        .iter()
        .filter(|s| s.status == Status::Fail)
        .cloned()
        .collect();
    let (verdict, mut verdict_reason) = soak_verdict(&criteria, policy, cycles.is_empty());
    if verdict == Status::Fail {
        if let Some(hint) = start_over_hint(cycles, &incidents) {
            verdict_reason.push_str(hint);
        }
    }
    SoakSummary {
        soak_id: meta.id.clone(),
        name: meta.name.clone(),
        t0: meta.t0,
        now,
        planned_secs: meta.planned_secs,
        samples: cycles.len(),
        criteria,
        incidents,
        spans,
        coverage,
        min_coverage: policy.min_coverage,
        restarts,
        series,
        verdict,
        verdict_reason,
        last_snapshot,
        rollback: None,
    }
}

/// When every incident began at the soak's first cycle, the failure may be
/// the monitor's own configuration (a wrong URL, path or name) rather than
/// the system: say how to start over without losing this record.
fn start_over_hint(cycles: &[CycleRecord], incidents: &[Span]) -> Option<&'static str> {
    let first = cycles.first()?.at;
    (!incidents.is_empty() && incidents.iter().all(|i| i.start <= first)).then_some(
        " (every failure began at the first cycle: if it was soakwatch's own \
         configuration, fix it and start a fresh soak with `soakwatch watch --new-soak`; \
         this one is kept)",
    )
}

/// Time each cycle stands for: until the next cycle, capped by `max_gap`.
fn cycle_weights(
    cycles: &[CycleRecord],
    now: DateTime<Utc>,
    max_gap: chrono::Duration,
) -> Vec<f64> {
    let mut weight = Vec::with_capacity(cycles.len());
    for (k, c) in cycles.iter().enumerate() {
        let next = cycles.get(k + 1).map(|n| n.at).unwrap_or(now);
        let d = (next - c.at).min(max_gap).max(chrono::Duration::zero());
        weight.push(d.num_milliseconds() as f64 / 1000.0);
    }

    weight
}

/// One criterion over the soak: its debounced status per cycle turned into
/// spans (a sampling gap is an unknown span of its own), coverage, fail time,
/// worst value and the soak status.
fn criterion_summary(
    id: CriterionId,
    cycles: &[CycleRecord],
    weight: &[f64],
    last_verdicts: &[Verdict],
    policy: &SoakPolicy,
    now: DateTime<Utc>,
    window_secs: f64,
) -> (CriterionSummary, Vec<Span>) {
    let statuses = debounce(cycles, id, policy);
    let t = tally(id, cycles, weight, &statuses);
    let max_gap = chrono::Duration::from_std(policy.max_gap).unwrap_or_default();
    let criterion_spans = spans(id, cycles, &statuses, last_verdicts, max_gap, now);
    let coverage = if window_secs > 0.0 {
        (t.judged / window_secs).clamp(0.0, 1.0)
    } else if cycles.is_empty() {
        0.0
    } else {
        1.0
    };
    let soak = if cycles.is_empty() {
        Status::Unknown
    } else if t.all_not_configured {
        Status::NotConfigured
    } else if t.fail_secs > 0.0 || statuses.contains(&Status::Fail) {
        Status::Fail
    } else if coverage < policy.min_coverage {
        Status::Unknown
    } else if statuses.last() == Some(&Status::Pending) {
        // Failing now, not yet for its hold: no sign-off on it.
        Status::Pending
    } else if t.saw_warn {
        Status::Warn
    } else {
        Status::Pass
    };
    let last = last_verdicts
        .iter()
        .find(|v| v.id == id)
        .cloned()
        .unwrap_or_else(|| Verdict::unknown(id, "", "no samples"));
    let summary = CriterionSummary {
        id,
        now: statuses.last().copied().unwrap_or(Status::Unknown),
        soak,
        fail_secs: t.fail_secs,
        unknown_secs: (window_secs - t.judged).max(0.0),
        coverage,
        worst_value: t.worst_value,
        last,
    };
    (summary, criterion_spans)
}

/// One criterion's time-weighted totals over the soak.
struct Tally {
    /// Seconds with a judged status (pass, warn, pending, fail).
    judged: f64,
    /// Seconds of confirmed failure.
    fail_secs: f64,
    /// The worst finite value seen (highest or lowest, by criterion).
    worst_value: Option<f64>,
    saw_warn: bool,
    /// Every cycle was `not_configured` (and there was at least one).
    all_not_configured: bool,
}

/// The totals of one criterion from its debounced `statuses`, cycle by cycle.
fn tally(id: CriterionId, cycles: &[CycleRecord], weight: &[f64], statuses: &[Status]) -> Tally {
    let i = idx(id);
    let mut t = Tally {
        judged: 0.0,
        fail_secs: 0.0,
        worst_value: None,
        saw_warn: false,
        all_not_configured: !cycles.is_empty(),
    };
    for (k, c) in cycles.iter().enumerate() {
        let s = statuses[k];
        let w = weight[k];
        if s != Status::NotConfigured {
            t.all_not_configured = false;
        }
        if matches!(
            s,
            Status::Pass | Status::Warn | Status::Pending | Status::Fail
        ) {
            t.judged += w;
        }
        if s == Status::Fail {
            t.fail_secs += w;
        }
        if s == Status::Warn {
            t.saw_warn = true;
        }
        if let Some(v) = c.value.get(i).copied().flatten().filter(|v| v.is_finite()) {
            t.worst_value = Some(match t.worst_value {
                None => v,
                Some(w0) if higher_is_worse(id) => w0.max(v),
                Some(w0) => w0.min(v),
            });
        }
    }
    t
}

/// One criterion's spans: runs of one debounced status, with an unknown span
/// for each sampling gap longer than `max_gap`; the last runs until `now`.
fn spans(
    id: CriterionId,
    cycles: &[CycleRecord],
    statuses: &[Status],
    last_verdicts: &[Verdict],
    max_gap: chrono::Duration,
    now: DateTime<Utc>,
) -> Vec<Span> {
    let i = idx(id);
    let mut criterion_spans: Vec<Span> = Vec::new();
    for (k, c) in cycles.iter().enumerate() {
        let s = statuses[k];
        let v = c.value.get(i).copied().flatten().filter(|v| v.is_finite());
        let gap_before = k > 0 && c.at - cycles[k - 1].at > max_gap;
        if gap_before {
            let prev_end = cycles[k - 1].at + max_gap;
            if let Some(last) = criterion_spans.last_mut() {
                last.end = prev_end;
            }
            criterion_spans.push(Span {
                criterion: id,
                status: Status::Unknown,
                start: prev_end,
                end: c.at,
                peak: None,
                evidence: format!(
                    "no samples for {}s (sampling gap)",
                    (c.at - cycles[k - 1].at).num_seconds()
                ),
            });
        }
        let continues = criterion_spans
            .last()
            .is_some_and(|sp| sp.status == s && !gap_before);
        if continues {
            if let Some(sp) = criterion_spans.last_mut() {
                sp.end = c.at;
                if let Some(v) = v {
                    sp.peak = Some(match sp.peak {
                        None => v,
                        Some(p) if higher_is_worse(id) => p.max(v),
                        Some(p) => p.min(v),
                    });
                }
            }
        } else {
            if let Some(last) = criterion_spans.last_mut() {
                if !gap_before {
                    last.end = c.at;
                }
            }
            criterion_spans.push(Span {
                criterion: id,
                status: s,
                start: c.at,
                end: c.at,
                peak: v,
                evidence: span_evidence(id, cycles, k, last_verdicts),
            });
        }
    }
    if let Some(last) = criterion_spans.last_mut() {
        last.end = now.max(last.end);
    }
    criterion_spans
}

/// Evidence for a span starting at cycle `k`: the newest kept evidence of the
/// run of the same raw status ending there, else the last verdict's.
fn span_evidence(
    id: CriterionId,
    cycles: &[CycleRecord],
    k: usize,
    last_verdicts: &[Verdict],
) -> String {
    let i = idx(id);
    let c = &cycles[k];
    (0..=k)
        .rev()
        .take_while(|&j| j == k || cycles[j].status.get(i) == c.status.get(i))
        .find_map(|j| cycles[j].evidence.get(i).cloned().flatten())
        .or_else(|| {
            // A confirmed failure starts at a raw-fail cycle; its evidence is there.
            last_verdicts
                .iter()
                .find(|v| v.id == id)
                .map(|v| v.evidence.clone())
        })
        .unwrap_or_default()
}

/// Probe coverage: a probe is good in a cycle unless it failed there.
fn probe_coverage(
    cycles: &[CycleRecord],
    weight: &[f64],
    policy: &SoakPolicy,
    window_secs: f64,
) -> Vec<ProbeCoverage> {
    let mut labels: Vec<String> = policy.probe_labels.clone();
    for c in cycles {
        for p in c.probe_errors.keys() {
            if !labels.contains(p) {
                labels.push(p.clone());
            }
        }
    }
    labels
        .into_iter()
        .map(|probe| {
            let mut good = 0.0;
            let mut last_error = None;
            for (k, c) in cycles.iter().enumerate() {
                match c.probe_errors.get(&probe) {
                    None => good += weight[k],
                    Some(e) => last_error = Some(e.clone()),
                }
            }
            ProbeCoverage {
                probe,
                good_secs: good,
                total_secs: window_secs,
                last_error,
            }
        })
        .collect()
}

/// Service restarts: the process start moved, or the counter went down,
/// compared with the last known values (a crash leaves cycles without
/// metrics in between).
fn restarts(cycles: &[CycleRecord]) -> Vec<DateTime<Utc>> {
    let mut restarts = Vec::new();
    let (mut last_start, mut last_total): (Option<f64>, Option<f64>) = (None, None);
    let mut restarted_since_total = false;
    for c in cycles {
        let moved =
            matches!((last_start, c.process_start), (Some(a), Some(b)) if (a - b).abs() > 0.5);
        let reset = matches!((last_total, c.processed_total), (Some(a), Some(b)) if b < a);
        // A reset seen after the start time already moved is the same
        // restart (the counter's first event after it), not another one.
        let reset = reset && !restarted_since_total;
        if moved || reset {
            restarts.push(c.at);
        }
        if moved {
            restarted_since_total = true;
        }
        if c.processed_total.is_some() {
            restarted_since_total = false;
        }
        last_start = c.process_start.or(last_start);
        last_total = c.processed_total.or(last_total);
    }

    restarts
}

fn soak_verdict(
    criteria: &[CriterionSummary],
    policy: &SoakPolicy,
    empty: bool,
) -> (Status, String) {
    if empty {
        return (Status::Unknown, "no samples yet".into());
    }
    let with = |s: Status| {
        criteria
            .iter()
            .filter(|c| c.soak == s)
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>()
    };
    let failed = with(Status::Fail);
    if !failed.is_empty() {
        return (
            Status::Fail,
            format!("failed during the soak: {}", failed.join(", ")),
        );
    }
    let unknown = with(Status::Unknown);
    if !unknown.is_empty() {
        return (
            Status::Unknown,
            format!(
                "coverage below {:.0}% for: {}",
                policy.min_coverage * 100.0,
                unknown.join(", ")
            ),
        );
    }
    let pending = with(Status::Pending);
    if !pending.is_empty() {
        return (
            Status::Pending,
            format!(
                "failing now, not yet for its `for` hold: {}",
                pending.join(", ")
            ),
        );
    }
    let warned = with(Status::Warn);
    if !warned.is_empty() {
        return (
            Status::Warn,
            format!("warnings during the soak: {}", warned.join(", ")),
        );
    }
    (
        Status::Pass,
        "every criterion held with sufficient coverage".into(),
    )
}

fn chart_series(cycles: &[CycleRecord]) -> ChartSeries {
    let mut s = ChartSeries::default();
    let sr = idx(CriterionId::SuccessRate);
    let p95 = idx(CriterionId::P95Latency);
    for (k, c) in cycles.iter().enumerate() {
        if let Some(l) = c.lag {
            s.lag.push((c.at, l as f64));
        }
        if let Some(d) = c.dlq_messages {
            s.dlq.push((c.at, d as f64));
        }
        if let Some(v) = c.value.get(sr).copied().flatten() {
            s.success_rate.push((c.at, v));
        }
        if let Some(v) = c.value.get(p95).copied().flatten() {
            s.p95_ms.push((c.at, v));
        }
        if k > 0 {
            let p = &cycles[k - 1];
            if let (Some(a), Some(b)) = (p.processed_total, c.processed_total) {
                let minutes = (c.at - p.at).num_milliseconds() as f64 / 60_000.0;
                if minutes > 0.0 {
                    let (inc, _) = histogram::counter_increase(&[a, b]);
                    s.throughput.push((c.at, inc / minutes));
                }
            }
        }
    }
    s
}

/// Replays recorded snapshots (oldest first) into a summary: what `watch`
/// computes incrementally, in one call. Used by tests and `report --replay`.
pub fn replay(
    cfg: &Config,
    meta: &SoakMeta,
    snapshots: &[Snapshot],
    policy: &SoakPolicy,
) -> SoakSummary {
    let mut cycles = Vec::with_capacity(snapshots.len());
    let mut last_verdicts = Vec::new();
    let mut dedupe = EvidenceDeduper::default();
    for (k, snap) in snapshots.iter().enumerate() {
        let prev = k.checked_sub(1).map(|p| &snapshots[p]);
        let (mut rec, verdicts) = CycleRecord::evaluate(cfg, prev, snap, policy.max_gap);
        dedupe.apply(&mut rec);
        cycles.push(rec);
        last_verdicts = verdicts;
    }
    summarize(
        meta,
        &cycles,
        &last_verdicts,
        snapshots.last().cloned(),
        policy,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 2, 17, 8, 59)
            .single()
            .expect("valid")
    }

    fn policy() -> SoakPolicy {
        SoakPolicy {
            interval: Duration::from_secs(10),
            max_gap: Duration::from_secs(30),
            fail_for: [(CriterionId::Dlq, Duration::from_secs(300))]
                .into_iter()
                .collect(),
            recover_after: Duration::from_secs(60),
            min_coverage: 0.95,
            dlq_spike: SpikeRule {
                window: Duration::from_secs(60),
                per_min: 10.0,
                max_gap: Duration::from_secs(30),
            },
            probe_labels: vec![],
        }
    }

    fn meta() -> SoakMeta {
        SoakMeta {
            id: "t".into(),
            name: "t".into(),
            t0: t0(),
            planned_secs: 3600.0,
        }
    }

    /// A cycle at `secs` with every criterion passing but `dlq` as given.
    fn cycle(secs: i64, dlq: Status) -> CycleRecord {
        let status = CriterionId::ALL
            .iter()
            .map(|id| {
                if *id == CriterionId::Dlq {
                    dlq
                } else {
                    Status::Pass
                }
            })
            .collect();
        CycleRecord {
            at: t0() + chrono::Duration::seconds(secs),
            status,
            value: vec![None; CriterionId::ALL.len()],
            evidence: vec![None; CriterionId::ALL.len()],
            probe_errors: BTreeMap::new(),
            process_start: Some(1000.0),
            processed_total: Some(100.0),
            dlq_messages: Some(1),
            lag: Some(0),
            dlq_last_seq: Some(1),
            dlq_counter: Some(0.0),
        }
    }

    #[test]
    fn a_soak_failing_from_its_first_cycle_says_how_to_start_over() {
        let p = policy();
        let from_start: Vec<CycleRecord> = (0..45).map(|k| cycle(k * 10, Status::Fail)).collect();
        let s = summarize(&meta(), &from_start, &[], None, &p);
        assert_eq!(s.verdict, Status::Fail);
        assert!(
            s.verdict_reason.contains("--new-soak"),
            "{}",
            s.verdict_reason
        );
        // A failure that began later is the system's: no such hint.
        let mut later: Vec<CycleRecord> = (0..10).map(|k| cycle(k * 10, Status::Pass)).collect();
        later.extend((10..45).map(|k| cycle(k * 10, Status::Fail)));
        let s = summarize(&meta(), &later, &[], None, &p);
        assert_eq!(s.verdict, Status::Fail);
        assert!(
            !s.verdict_reason.contains("--new-soak"),
            "{}",
            s.verdict_reason
        );
    }

    #[test]
    fn a_failure_inside_its_hold_is_pending_then_fail_from_its_start() {
        let p = policy();
        let mut cycles: Vec<CycleRecord> = (0..10).map(|k| cycle(k * 10, Status::Pass)).collect();
        cycles.extend((10..20).map(|k| cycle(k * 10, Status::Fail)));
        let s = summarize(&meta(), &cycles, &[], None, &p);
        let dlq = s.criterion(CriterionId::Dlq).expect("dlq");
        assert_eq!(dlq.now, Status::Pending);
        assert_eq!(dlq.soak, Status::Pending);
        assert_eq!(s.verdict, Status::Pending, "{}", s.verdict_reason);
        assert!(s.incidents.is_empty());
        assert!(s
            .spans
            .iter()
            .any(|sp| sp.criterion == CriterionId::Dlq && sp.status == Status::Pending));
        // Pending is a judgement: it costs no coverage.
        assert!(dlq.coverage > 0.99, "{}", dlq.coverage);
        // Past the 5 min hold: an incident from the first failing sample.
        cycles.extend((20..45).map(|k| cycle(k * 10, Status::Fail)));
        let s = summarize(&meta(), &cycles, &[], None, &p);
        let dlq = s.criterion(CriterionId::Dlq).expect("dlq");
        assert_eq!(dlq.now, Status::Fail);
        assert_eq!(s.incidents.len(), 1);
        assert_eq!((s.incidents[0].start - t0()).num_seconds(), 100);
        assert!(!s
            .spans
            .iter()
            .any(|sp| sp.criterion == CriterionId::Dlq && sp.status == Status::Pending));
    }

    #[test]
    fn a_restart_is_counted_once_when_the_counter_reappears_after_it() {
        let p = policy();
        let mut cycles: Vec<CycleRecord> = (0..10).map(|k| cycle(k * 10, Status::Pass)).collect();
        // Restart at 100 s: new start time; the labelled counter has no
        // series until its first event (declared, no samples).
        for k in 10..15 {
            let mut c = cycle(k * 10, Status::Pass);
            c.process_start = Some(2000.0);
            c.processed_total = None;
            cycles.push(c);
        }
        // The first event after the restart: the counter reappears at 1.
        for k in 15..20 {
            let mut c = cycle(k * 10, Status::Pass);
            c.process_start = Some(2000.0);
            c.processed_total = Some(1.0);
            cycles.push(c);
        }
        let s = summarize(&meta(), &cycles, &[], None, &p);
        assert_eq!(s.restarts.len(), 1, "{:?}", s.restarts);
        assert_eq!((s.restarts[0] - t0()).num_seconds(), 100);
        // Without a start-time metric the counter reset alone is one restart.
        for c in cycles.iter_mut() {
            c.process_start = None;
        }
        let s = summarize(&meta(), &cycles, &[], None, &p);
        assert_eq!(s.restarts.len(), 1, "{:?}", s.restarts);
        assert_eq!((s.restarts[0] - t0()).num_seconds(), 150);
    }
}
