//! The soak summary kept up to date one cycle at a time.
//!
//! The daemon used to hold every cycle of the soak and re-summarise all of
//! them each cycle: memory grew by about 1.5 KB a cycle and the cost of a
//! cycle with the soak's age. [`RunningSummary`] folds each cycle into
//! running totals instead (debounce state, time-weighted tallies, spans,
//! probe coverage, restarts, bounded chart series) and keeps only the
//! cycles the DLQ spike rule and the rollback's hold look back over. What it
//! holds grows with what happened (spans, restarts), not with the number of
//! cycles, and [`super::timeline::summarize`] is this fold over a history,
//! so the daemon, `report` and replays agree by construction.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::histogram;
use crate::sample::Snapshot;
use crate::soak::dlq_spike::is_spike;
use crate::soak::model::{
    ChartSeries, ConsumerSummary, CriterionSummary, ProbeCoverage, SoakSummary, Span,
};
use crate::soak::policy::SoakPolicy;
use crate::soak::record::{CycleRecord, SoakMeta};
use crate::soak::series::BoundedSeries;
use crate::verdict::{CriterionId, Status, Verdict};

/// One criterion's running state: its debounce clocks, totals and spans.
#[derive(Debug, Clone)]
struct CriterionRun {
    id: CriterionId,
    /// Debounced status (what a confirmed failure or recovery left).
    current: Status,
    /// Start of a failure not yet held for its `for`.
    pending_since: Option<DateTime<Utc>>,
    /// Start of a pass run while failing, not yet held for recovery.
    recovering_since: Option<DateTime<Utc>>,
    /// Status shown at the previous cycle (its weight is known one cycle later).
    shown_prev: Option<Status>,
    /// Weight of the pending run so far: fail time once it is confirmed.
    pending_weight: f64,
    judged: f64,
    fail_secs: f64,
    worst_value: Option<f64>,
    saw_warn: bool,
    all_not_configured: bool,
    ever_failed: bool,
    /// Spans so far; evidence `None` means "the newest verdict's".
    spans: Vec<(Span, Option<String>)>,
    /// The raw status of the current run of equal raw statuses, and the
    /// newest evidence kept within it (evidence is deduplicated).
    raw_run: Option<(Status, Option<String>)>,
    /// The soak's first interval, when the first cycle could not judge this
    /// criterion: credited with the second cycle's status.
    backfill: Option<f64>,
}

impl CriterionRun {
    fn new(id: CriterionId) -> Self {
        CriterionRun {
            id,
            current: Status::Unknown,
            pending_since: None,
            recovering_since: None,
            shown_prev: None,
            pending_weight: 0.0,
            judged: 0.0,
            fail_secs: 0.0,
            worst_value: None,
            saw_warn: false,
            all_not_configured: true,
            ever_failed: false,
            spans: Vec::new(),
            raw_run: None,
            backfill: None,
        }
    }

    /// Credits the previous cycle's shown status with its weight.
    fn credit(&mut self, w: f64) {
        match self.shown_prev {
            Some(Status::Fail) => {
                self.judged += w;
                self.fail_secs += w;
            }
            Some(Status::Pending) => {
                self.judged += w;
                self.pending_weight += w;
            }
            Some(Status::Pass | Status::Warn) => self.judged += w,
            _ => {}
        }
    }

    /// Debounces this cycle's raw status: what the cycle shows.
    fn debounce(
        &mut self,
        c: &CycleRecord,
        raw: Status,
        gap_before: bool,
        spike: bool,
        policy: &SoakPolicy,
    ) -> Status {
        let fail_for = crate::duration::delta(policy.fail_for(self.id));
        let recover = crate::duration::delta(policy.recover_after);
        if gap_before {
            // A gap breaks every running `for` and recovery clock.
            self.pending_since = None;
            self.recovering_since = None;
            self.pending_weight = 0.0;
        }
        match raw {
            Status::Fail | Status::Pending => {
                self.recovering_since = None;
                if self.current == Status::Fail {
                    return Status::Fail;
                }
                let start = *self.pending_since.get_or_insert(c.at);
                if spike || c.at - start >= fail_for {
                    // Confirmed: the incident began when the condition did.
                    self.confirm();
                    Status::Fail
                } else {
                    Status::Pending
                }
            }
            Status::Unknown | Status::NotConfigured => {
                self.pending_since = None;
                self.recovering_since = None;
                self.pending_weight = 0.0;
                self.current = raw;
                raw
            }
            Status::Pass | Status::Warn => {
                self.pending_since = None;
                self.pending_weight = 0.0;
                if self.current == Status::Fail {
                    let start = *self.recovering_since.get_or_insert(c.at);
                    if c.at - start >= recover {
                        self.current = raw;
                        self.recovering_since = None;
                    }
                } else {
                    self.current = raw;
                }
                self.current
            }
        }
    }

    /// A pending run held for its `for`: it was a failure all along.
    fn confirm(&mut self) {
        self.fail_secs += self.pending_weight;
        self.pending_weight = 0.0;
        if let Some((sp, _)) = self.spans.last_mut() {
            if sp.status == Status::Pending && Some(sp.start) == self.pending_since {
                sp.status = Status::Fail;
            }
        }
        self.current = Status::Fail;
        self.pending_since = None;
    }

    /// Extends the spans with this cycle, shown as `s`.
    fn extend_spans(
        &mut self,
        c: &CycleRecord,
        prev_at: Option<DateTime<Utc>>,
        s: Status,
        v: Option<f64>,
        evidence: Option<String>,
        max_gap: chrono::Duration,
    ) {
        let gap_before = prev_at.is_some_and(|p| c.at - p > max_gap);
        if let (true, Some(p)) = (gap_before, prev_at) {
            let prev_end = p + max_gap;
            if let Some((last, _)) = self.spans.last_mut() {
                last.end = prev_end;
            }
            let gap = Span {
                criterion: self.id,
                status: Status::Unknown,
                start: prev_end,
                end: c.at,
                peak: None,
                evidence: format!(
                    "no samples for {}s (sampling gap)",
                    (c.at - p).num_seconds()
                ),
            };
            self.spans.push((gap, Some(String::new())));
        }
        let worse = higher_is_worse(self.id);
        match self.spans.last_mut() {
            Some((sp, _)) if sp.status == s && !gap_before => {
                sp.end = c.at;
                if let Some(v) = v {
                    sp.peak = Some(match sp.peak {
                        None => v,
                        Some(p) if worse => p.max(v),
                        Some(p) => p.min(v),
                    });
                }
            }
            last => {
                if let (Some((sp, _)), false) = (last, gap_before) {
                    sp.end = c.at;
                }
                let span = Span {
                    criterion: self.id,
                    status: s,
                    start: c.at,
                    end: c.at,
                    peak: v,
                    evidence: String::new(),
                };
                self.spans.push((span, evidence));
            }
        }
    }

    fn tally(&mut self, s: Status, v: Option<f64>) {
        if s != Status::NotConfigured {
            self.all_not_configured = false;
        }
        if s == Status::Warn {
            self.saw_warn = true;
        }
        if s == Status::Fail {
            self.ever_failed = true;
        }
        if let Some(v) = v {
            self.worst_value = Some(match self.worst_value {
                None => v,
                Some(w0) if higher_is_worse(self.id) => w0.max(v),
                Some(w0) => w0.min(v),
            });
        }
    }

    /// The newest kept evidence of the run of equal raw statuses ending at
    /// this cycle (a deduplicated evidence means "as before").
    fn run_evidence(&mut self, raw: Status, ev: Option<&String>) -> Option<String> {
        match &mut self.raw_run {
            Some((st, kept)) if *st == raw => {
                if let Some(e) = ev {
                    *kept = Some(e.clone());
                }
                kept.clone()
            }
            _ => {
                self.raw_run = Some((raw, ev.cloned()));
                ev.cloned()
            }
        }
    }
}

/// Whether a value is worse when higher (for span peaks).
pub(crate) fn higher_is_worse(id: CriterionId) -> bool {
    !matches!(
        id,
        CriterionId::SuccessRate | CriterionId::StreamPurity | CriterionId::ServiceUp
    )
}

/// One probe's coverage so far.
#[derive(Debug, Clone)]
struct ProbeRun {
    good_secs: f64,
    last_error: Option<String>,
}

/// Service restarts: the process start moved, or the counter went down.
#[derive(Debug, Clone, Default)]
struct RestartRun {
    at: Vec<DateTime<Utc>>,
    last_start: Option<f64>,
    last_total: Option<f64>,
    restarted_since_total: bool,
}

impl RestartRun {
    fn push(&mut self, c: &CycleRecord) {
        let moved =
            matches!((self.last_start, c.process_start), (Some(a), Some(b)) if (a - b).abs() > 0.5);
        let reset = matches!((self.last_total, c.processed_total), (Some(a), Some(b)) if b < a);
        // A reset seen after the start time already moved is the same
        // restart (the counter's first event after it), not another one.
        let reset = reset && !self.restarted_since_total;
        if moved || reset {
            self.at.push(c.at);
        }
        if moved {
            self.restarted_since_total = true;
        }
        if c.processed_total.is_some() {
            self.restarted_since_total = false;
        }
        self.last_start = c.process_start.or(self.last_start);
        self.last_total = c.processed_total.or(self.last_total);
    }
}

/// The chart series, bounded.
#[derive(Debug, Clone, Default)]
struct SeriesRun {
    lag: BoundedSeries,
    dlq: BoundedSeries,
    throughput: BoundedSeries,
    success_rate: BoundedSeries,
    p95_ms: BoundedSeries,
}

/// A soak's summary, folded one cycle at a time (see the module docs).
#[derive(Debug, Clone)]
pub struct RunningSummary {
    policy: SoakPolicy,
    /// How far back [`RunningSummary::recent`] reaches beyond the spike window.
    keep_recent: Duration,
    samples: usize,
    first_at: Option<DateTime<Utc>>,
    /// The newest cycles: the DLQ spike window and `keep_recent`, plus the
    /// one sample before them that covers the window's start.
    recent: Vec<CycleRecord>,
    /// Sum of all cycle weights so far (a probe first failing late was
    /// good before).
    total_weight: f64,
    criteria: Vec<CriterionRun>,
    probes: Vec<(String, ProbeRun)>,
    restarts: RestartRun,
    /// The soak's totals (reset-aware counts over the whole soak).
    totals: crate::soak::totals::TotalsRun,
    series: SeriesRun,
    /// Consumers ever marked not passing, by id (bounded by the fleet).
    consumers: std::collections::BTreeMap<crate::verdict::InstanceId, ConsumerSummary>,
}

impl RunningSummary {
    /// An empty soak judged by `policy`; the newest `keep_recent` of cycles
    /// (beyond the spike window) stay readable through [`Self::recent`].
    pub fn new(policy: &SoakPolicy, keep_recent: Duration) -> Self {
        RunningSummary {
            policy: policy.clone(),
            keep_recent,
            samples: 0,
            first_at: None,
            recent: Vec::new(),
            total_weight: 0.0,
            criteria: CriterionId::ALL
                .iter()
                .map(|id| CriterionRun::new(*id))
                .collect(),
            probes: policy
                .probe_labels
                .iter()
                .map(|l| {
                    (
                        l.clone(),
                        ProbeRun {
                            good_secs: 0.0,
                            last_error: None,
                        },
                    )
                })
                .collect(),
            restarts: RestartRun::default(),
            totals: Default::default(),
            series: SeriesRun::default(),
            consumers: Default::default(),
        }
    }

    /// Cycles folded in so far.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The newest cycles (oldest first): at least the spike window and
    /// `keep_recent`, for the rollback's trigger and hold.
    pub fn recent(&self) -> &[CycleRecord] {
        &self.recent
    }

    /// Folds in the next cycle (cycles arrive oldest first).
    pub fn push(&mut self, c: CycleRecord) {
        let max_gap = crate::duration::delta(self.policy.max_gap);
        let prev_at = self.recent.last().map(|p| p.at);
        // The previous cycle stands for the time until this one (capped).
        if let Some(p) = prev_at {
            let w = (c.at - p).min(max_gap).max(chrono::Duration::zero());
            let w = w.num_milliseconds() as f64 / 1000.0;
            self.total_weight += w;
            // The soak's first cycle has no sample before it, so a
            // criterion judged from the change between two samples (rows
            // written, rates) is unknown there. The second cycle's
            // judgement covers exactly that first interval: it stands for
            // it, so a soak watched from T0 is never short of coverage.
            let first_interval = self.samples == 1;
            for run in &mut self.criteria {
                if first_interval && run.shown_prev == Some(Status::Unknown) {
                    run.backfill = Some(w);
                } else {
                    run.credit(w);
                }
            }
            if let Some(prev) = self.recent.last() {
                for (label, probe) in &mut self.probes {
                    if !prev.probe_errors.contains_key(label) {
                        probe.good_secs += w;
                    }
                }
                for m in &prev.consumers {
                    if let Some(run) = self.consumers.get_mut(&m.id) {
                        run.bad_secs += w;
                    }
                }
            }
        }
        let gap_before = prev_at.is_some_and(|p| c.at - p > max_gap);
        self.note_consumers(&c);
        self.restarts.push(&c);
        self.totals.push(&c);
        self.push_series(&c);
        self.note_probes(&c);
        self.first_at.get_or_insert(c.at);
        self.samples += 1;
        self.recent.push(c);
        let spike = is_spike(&self.recent, self.recent.len() - 1, &self.policy.dlq_spike);
        let Some(c) = self.recent.last() else {
            return;
        };
        for (i, run) in self.criteria.iter_mut().enumerate() {
            let raw = c.status.get(i).copied().unwrap_or(Status::Unknown);
            let spike = spike && run.id == CriterionId::Dlq;
            let shown = run.debounce(c, raw, gap_before, spike, &self.policy);
            let v = c.value.get(i).copied().flatten().filter(|v| v.is_finite());
            let ev = run.run_evidence(raw, c.evidence.get(i).and_then(|e| e.as_ref()));
            run.extend_spans(c, prev_at, shown, v, ev, max_gap);
            run.tally(shown, v);
            run.shown_prev = Some(shown);
            if let Some(w) = run.backfill.take() {
                run.credit(w);
            }
        }
        self.trim_recent();
    }

    /// Each consumer's part this cycle: marked ones are not passing, the
    /// others (already known) pass now.
    fn note_consumers(&mut self, c: &CycleRecord) {
        for run in self.consumers.values_mut() {
            run.now = Status::Pass;
        }
        for m in &c.consumers {
            let run = self
                .consumers
                .entry(m.id.clone())
                .or_insert_with(|| ConsumerSummary {
                    id: m.id.clone(),
                    stream: m.stream.clone(),
                    now: m.status,
                    worst: m.status,
                    bad_secs: 0.0,
                    bad_cycles: 0,
                    first_bad: c.at,
                    last_bad: c.at,
                    worst_value: None,
                    evidence: String::new(),
                });
            run.now = m.status;
            run.worst = run.worst.max(m.status);
            run.bad_cycles += 1;
            run.last_bad = c.at;
            run.evidence = m.evidence.clone();
            if let Some(v) = m.value.filter(|v| v.is_finite()) {
                run.worst_value = Some(run.worst_value.map_or(v, |w| w.max(v)));
            }
        }
    }

    fn note_probes(&mut self, c: &CycleRecord) {
        for (label, reason) in &c.probe_errors {
            match self.probes.iter_mut().find(|(l, _)| l == label) {
                Some((_, p)) => p.last_error = Some(reason.clone()),
                None => self.probes.push((
                    label.clone(),
                    ProbeRun {
                        // Good in every earlier cycle: it did not fail there.
                        good_secs: self.total_weight,
                        last_error: Some(reason.clone()),
                    },
                )),
            }
        }
    }

    fn push_series(&mut self, c: &CycleRecord) {
        let s = &mut self.series;
        if let Some(l) = c.lag {
            s.lag.push(c.at, l as f64);
        }
        if let Some(d) = c.dlq_messages {
            s.dlq.push(c.at, d as f64);
        }
        let value = |id: CriterionId| {
            let i = CriterionId::ALL.iter().position(|x| *x == id)?;
            c.value.get(i).copied().flatten()
        };
        if let Some(v) = value(CriterionId::SuccessRate) {
            s.success_rate.push(c.at, v);
        }
        if let Some(v) = value(CriterionId::P95Latency) {
            s.p95_ms.push(c.at, v);
        }
        if let Some(p) = self.recent.last() {
            if let (Some(a), Some(b)) = (p.processed_total, c.processed_total) {
                let minutes = (c.at - p.at).num_milliseconds() as f64 / 60_000.0;
                if minutes > 0.0 {
                    let (inc, _) = histogram::counter_increase(&[a, b]);
                    s.throughput.push(c.at, inc / minutes);
                }
            }
        }
    }

    /// Drops cycles no window reaches any more (keeping the one that covers
    /// the oldest window's start).
    fn trim_recent(&mut self) {
        let Some(newest) = self.recent.last().map(|c| c.at) else {
            return;
        };
        let reach = self
            .policy
            .dlq_spike
            .window
            .saturating_add(self.keep_recent);
        let start = crate::duration::before(newest, reach);
        let drop = self
            .recent
            .partition_point(|c| c.at <= start)
            .saturating_sub(1);
        // Drained in batches: the vector is not shifted every cycle.
        if drop > 0 && (drop >= 64 || drop * 2 >= self.recent.len()) {
            self.recent.drain(..drop);
        }
    }

    /// The summary as of the newest cycle. `last_verdicts` are its full
    /// verdicts (targets, observed text) and `last_snapshot` its samples.
    pub fn summary(
        &self,
        meta: &SoakMeta,
        last_verdicts: &[Verdict],
        last_snapshot: Option<Snapshot>,
    ) -> SoakSummary {
        let policy = &self.policy;
        let empty = self.samples == 0;
        let now = self.recent.last().map(|c| c.at).unwrap_or(meta.t0);
        let window_secs = self.judged_window(meta, now);
        let mut spans = Vec::new();
        let mut criteria = Vec::with_capacity(self.criteria.len());
        for run in &self.criteria {
            let last = last_verdicts.iter().find(|v| v.id == run.id);
            criteria.push(criterion_summary(run, last, policy, window_secs, empty));
            let fallback = last.map(|v| v.evidence.clone()).unwrap_or_default();
            let n = run.spans.len();
            for (k, (sp, ev)) in run.spans.iter().enumerate() {
                let mut sp = sp.clone();
                if sp.evidence.is_empty() {
                    sp.evidence = ev.clone().unwrap_or_else(|| fallback.clone());
                }
                if k + 1 == n {
                    sp.end = now.max(sp.end);
                }
                spans.push(sp);
            }
        }
        let coverage = self
            .probes
            .iter()
            .map(|(probe, p)| ProbeCoverage {
                probe: probe.clone(),
                good_secs: p.good_secs,
                total_secs: window_secs,
                last_error: p.last_error.clone(),
            })
            .collect();
        let incidents: Vec<Span> = spans
            .iter()
            .filter(|s| s.status == Status::Fail)
            .cloned()
            .collect();
        let totals = self.totals.totals(self.restarts.at.len());
        let whole = whole_soak_success(&mut criteria, &totals, policy.success_rate_min);
        let (verdict, mut verdict_reason) = soak_verdict(&criteria, policy, empty);
        if let Some(w) = whole {
            verdict_reason.push_str(&w);
        }
        if verdict == Status::Fail {
            if let Some(hint) = start_over_hint(self.first_at, &incidents) {
                verdict_reason.push_str(hint);
            }
        }
        SoakSummary {
            soak_id: meta.id.clone(),
            name: meta.name.clone(),
            t0: meta.t0,
            now,
            planned_secs: meta.planned_secs,
            samples: self.samples,
            criteria,
            incidents,
            spans,
            coverage,
            min_coverage: policy.min_coverage,
            restarts: self.restarts.at.clone(),
            series: self.chart_series(),
            verdict,
            verdict_reason,
            last_snapshot,
            rollback: None,
            consumers: self.consumer_summaries(),
            edges: crate::soak::model::SoakEdges {
                observed_from: self.first_at,
                unobserved_head_secs: self.unobserved_head_secs(meta.t0),
                ended: None,
            },
            totals,
        }
    }

    /// T0 to the first cycle, when a watcher began more than two intervals
    /// late (a cycle's own lateness is not a head); 0 otherwise.
    fn unobserved_head_secs(&self, t0: DateTime<Utc>) -> f64 {
        let Some(first) = self.first_at else {
            return 0.0;
        };
        let head = (first - t0).num_milliseconds() as f64 / 1000.0;
        if head > 2.0 * self.policy.interval.as_secs_f64() {
            head
        } else {
            0.0
        }
    }

    /// Seconds coverage is judged over. Before the end: what was observed,
    /// from the first cycle on (T0 itself for a soak watched from T0, so a
    /// healthy soak is never short of coverage in its first minutes; a
    /// watcher started late names the head it did not see instead). From
    /// T0 + duration on: the whole soak, T0 to its end, as the sign-off
    /// rule requires.
    fn judged_window(&self, meta: &SoakMeta, now: DateTime<Utc>) -> f64 {
        let planned = chrono::Duration::milliseconds((meta.planned_secs * 1000.0) as i64);
        let end = meta.t0.checked_add_signed(planned);
        let secs = |d: chrono::Duration| (d.num_milliseconds() as f64 / 1000.0).max(0.0);
        match end {
            Some(end) if now >= end => secs(end - meta.t0),
            _ => secs(now - self.first_at.unwrap_or(meta.t0).max(meta.t0)),
        }
    }

    fn consumer_summaries(&self) -> Vec<ConsumerSummary> {
        let mut v: Vec<ConsumerSummary> = self.consumers.values().cloned().collect();
        v.sort_by(|a, b| {
            b.worst
                .cmp(&a.worst)
                .then(b.bad_secs.total_cmp(&a.bad_secs))
                .then(a.id.cmp(&b.id))
        });
        v
    }

    fn chart_series(&self) -> ChartSeries {
        let s = &self.series;
        let resolution = [&s.lag, &s.dlq, &s.throughput, &s.success_rate, &s.p95_ms]
            .iter()
            .map(|x| x.resolution())
            .max()
            .unwrap_or_default();
        ChartSeries {
            lag: s.lag.points(),
            dlq: s.dlq.points(),
            throughput: s.throughput.points(),
            success_rate: s.success_rate.points(),
            p95_ms: s.p95_ms.points(),
            resolution_ms: resolution.num_milliseconds(),
        }
    }
}

/// One criterion over the soak from its running state.
fn criterion_summary(
    run: &CriterionRun,
    last: Option<&Verdict>,
    policy: &SoakPolicy,
    window_secs: f64,
    empty: bool,
) -> CriterionSummary {
    let coverage = if window_secs > 0.0 {
        (run.judged / window_secs).clamp(0.0, 1.0)
    } else if empty {
        0.0
    } else {
        1.0
    };
    let now = run.shown_prev.unwrap_or(Status::Unknown);
    let soak = if empty {
        Status::Unknown
    } else if run.all_not_configured {
        Status::NotConfigured
    } else if run.fail_secs > 0.0 || run.ever_failed {
        Status::Fail
    } else if coverage < policy.min_coverage {
        Status::Unknown
    } else if now == Status::Pending {
        // Failing now, not yet for its hold: no sign-off on it.
        Status::Pending
    } else if run.saw_warn {
        Status::Warn
    } else {
        Status::Pass
    };
    CriterionSummary {
        id: run.id,
        now,
        soak,
        fail_secs: run.fail_secs,
        unknown_secs: (window_secs - run.judged).max(0.0),
        coverage,
        worst_value: run.worst_value,
        last: last
            .cloned()
            .unwrap_or_else(|| Verdict::unknown(run.id, "", "no samples")),
    }
}

/// `success_rate` over the whole soak: the ratio of the totals must meet
/// the threshold as well as every span (the live criterion reads the
/// counters since the service started, so a failing stretch before a
/// restart would be forgotten). Fails the criterion's soak status when it
/// does not, and says so for the verdict's reason.
fn whole_soak_success(
    criteria: &mut [CriterionSummary],
    totals: &crate::soak::model::SoakTotals,
    min: f64,
) -> Option<String> {
    let ratio = totals.success_ratio()?;
    if min <= 0.0 || ratio >= min {
        return None;
    }
    let c = criteria
        .iter_mut()
        .find(|c| c.id == CriterionId::SuccessRate)?;
    if c.soak == Status::NotConfigured {
        return None;
    }
    c.soak = Status::Fail;
    Some(format!(
        " (success_rate over the whole soak: {}, below {} %)",
        totals.success_line().unwrap_or_default(),
        min * 100.0
    ))
}

/// When every incident began at the soak's first cycle, the failure may be
/// the monitor's own configuration (a wrong URL, path or name) rather than
/// the system: say how to start over without losing this record.
fn start_over_hint(first: Option<DateTime<Utc>>, incidents: &[Span]) -> Option<&'static str> {
    let first = first?;
    (!incidents.is_empty() && incidents.iter().all(|i| i.start <= first)).then_some(
        " (every failure began at the first cycle: if it was soakwatch's own \
         configuration, fix it and start a fresh soak with `soakwatch watch --new-soak`; \
         this one is kept)",
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::dlq_spike::SpikeRule;
    use chrono::TimeZone;
    use std::collections::BTreeMap;

    fn policy() -> SoakPolicy {
        SoakPolicy {
            interval: Duration::from_secs(10),
            max_gap: Duration::from_secs(30),
            fail_for: BTreeMap::new(),
            recover_after: Duration::from_secs(60),
            min_coverage: 0.95,
            dlq_spike: SpikeRule {
                window: Duration::from_secs(60),
                per_min: 10.0,
                max_gap: Duration::from_secs(30),
            },
            probe_labels: vec!["metrics".into()],
            success_rate_min: 0.999,
        }
    }

    fn cycle(k: i64, lag: u64, dlq_seq: u64) -> CycleRecord {
        let n = CriterionId::ALL.len();
        CycleRecord {
            at: Utc
                .with_ymd_and_hms(2026, 10, 2, 0, 0, 0)
                .single()
                .expect("t0")
                + chrono::Duration::seconds(10 * k),
            status: vec![Status::Pass; n],
            value: vec![Some(1.0); n],
            evidence: vec![None; n],
            probe_errors: BTreeMap::new(),
            process_start: Some(1.0),
            processed_total: Some(k as f64),
            dlq_messages: Some(dlq_seq),
            dlq_last_seq: Some(dlq_seq),
            dlq_counter: None,
            consumers: vec![],
            lag: Some(lag),
            counts: Default::default(),
        }
    }

    fn meta_at(t0: DateTime<Utc>, planned_secs: f64) -> SoakMeta {
        SoakMeta {
            id: "t".into(),
            name: "t".into(),
            t0,
            planned_secs,
        }
    }

    #[test]
    fn a_soak_watched_from_t0_is_never_short_of_coverage_at_any_age() {
        let t0 = cycle(0, 0, 0).at;
        let db = CriterionId::ALL
            .iter()
            .position(|c| *c == CriterionId::DbWrites)
            .expect("db_writes");
        let mut r = RunningSummary::new(&policy(), Duration::ZERO);
        for k in 0..40 {
            let mut c = cycle(k, 0, 0);
            if k == 0 {
                // No sample before the first: rows written cannot be judged.
                c.status[db] = Status::Unknown;
            }
            r.push(c);
            let s = r.summary(&meta_at(t0, 48.0 * 3600.0), &[], None);
            assert_eq!(s.verdict, Status::Pass, "cycle {k}: {}", s.verdict_reason);
            assert!(s.criteria.iter().all(|c| c.coverage >= 0.999), "cycle {k}");
            assert_eq!(s.edges.unobserved_head_secs, 0.0);
        }
    }

    #[test]
    fn a_late_watcher_is_judged_on_what_it_saw_until_the_end_then_on_the_whole_soak() {
        // T0 was 200 s before the first cycle; the soak lasts 600 s.
        let t0 = cycle(0, 0, 0).at - chrono::Duration::seconds(200);
        let meta = meta_at(t0, 600.0);
        let mut r = RunningSummary::new(&policy(), Duration::ZERO);
        for k in 0..=20 {
            r.push(cycle(k, 0, 0));
        }
        let s = r.summary(&meta, &[], None);
        assert_eq!(s.verdict, Status::Pass, "{}", s.verdict_reason);
        assert_eq!(s.edges.unobserved_head_secs, 200.0);
        let note = s.head_note().expect("a head was missed");
        assert!(note.contains("3m 20s after T0"), "{note}");
        // At the end (T0 + 600 s) coverage is over the whole soak: 400 of
        // 600 s observed is below 95 %, so the sign-off cannot approve.
        for k in 21..=40 {
            r.push(cycle(k, 0, 0));
        }
        let s = r.summary(&meta, &[], None);
        assert_eq!(s.verdict, Status::Unknown, "{}", s.verdict_reason);
        let cov = s.criteria[0].coverage;
        assert!((cov - 400.0 / 600.0).abs() < 0.02, "{cov}");
    }

    #[test]
    fn the_whole_soaks_success_ratio_fails_success_rate_though_no_span_failed() {
        // 100 failures before a restart (the live criterion forgets them
        // when the counters begin again at zero), then 1,000 successes.
        let mut r = RunningSummary::new(&policy(), Duration::ZERO);
        let counts = |success: f64, failed: f64| crate::soak::record::CycleCounts {
            results: [
                ("success".to_string(), success),
                ("failed".to_string(), failed),
            ]
            .into_iter()
            .collect(),
            success: Some(success),
            counted: Some(success + failed),
            ..Default::default()
        };
        for (k, (start, ok, bad)) in [
            (1.0, 0.0, 0.0),
            (1.0, 0.0, 100.0),
            (900.0, 500.0, 0.0),
            (900.0, 1000.0, 0.0),
        ]
        .into_iter()
        .enumerate()
        {
            let mut c = cycle(k as i64, 0, 0);
            c.process_start = Some(start);
            c.counts = counts(ok, bad);
            r.push(c);
        }
        let meta = SoakMeta {
            id: "t".into(),
            name: "t".into(),
            t0: cycle(0, 0, 0).at,
            planned_secs: 40.0,
        };
        let s = r.summary(&meta, &[], None);
        assert_eq!(s.totals.succeeded, Some(1000.0));
        assert_eq!(s.totals.counted, Some(1100.0));
        assert_eq!(s.totals.service_restarts, 1);
        assert_eq!(
            s.criterion(CriterionId::SuccessRate).map(|c| c.soak),
            Some(Status::Fail)
        );
        assert_eq!(s.verdict, Status::Fail);
        assert!(
            s.verdict_reason
                .contains("whole soak: 1,000 of 1,100 succeeded (90.9 %)"),
            "{}",
            s.verdict_reason
        );
    }

    #[test]
    fn consumers_that_did_not_pass_are_tallied_by_id_and_the_rest_cost_nothing() {
        use crate::soak::record::ConsumerMark;
        let mark = |id: &str, status, lag| ConsumerMark {
            id: id.parse().expect("an instance id"),
            stream: "AA_VENDOR_HOT".into(),
            status,
            value: Some(lag),
            evidence: format!("lag {lag}"),
        };
        let mut r = RunningSummary::new(&policy(), Duration::ZERO);
        for k in 0..10 {
            let mut c = cycle(k, 0, 0);
            if (3..6).contains(&k) {
                c.consumers = vec![
                    mark("consumer_lag/vendor-a", Status::Fail, 12.0 + k as f64),
                    mark("consumer_lag/vendor-b", Status::Warn, 6.0),
                ];
            }
            r.push(c);
        }
        let meta = SoakMeta {
            id: "t".into(),
            name: "t".into(),
            t0: cycle(0, 0, 0).at,
            planned_secs: 3600.0,
        };
        let s = r.summary(&meta, &[], None);
        let ids: Vec<String> = s.consumers.iter().map(|c| c.id.to_string()).collect();
        assert_eq!(ids, vec!["consumer_lag/vendor-a", "consumer_lag/vendor-b"]);
        let a = &s.consumers[0];
        assert_eq!((a.worst, a.now), (Status::Fail, Status::Pass));
        assert_eq!(a.bad_cycles, 3);
        // Cycles 3, 4 and 5 each stand for the 10 s until the next one.
        assert!((a.bad_secs - 30.0).abs() < 1e-9, "{}", a.bad_secs);
        assert_eq!(a.worst_value, Some(17.0));
        assert_eq!(a.first_bad, cycle(3, 0, 0).at);
        assert_eq!(a.last_bad, cycle(5, 0, 0).at);
        assert_eq!(s.consumers[1].worst, Status::Warn);
    }

    #[test]
    fn a_48h_soak_keeps_only_the_windows_it_needs() {
        let mut r = RunningSummary::new(&policy(), Duration::from_secs(120));
        for k in 0..17_280 {
            r.push(cycle(k, (k % 5) as u64, 0));
            // The spike window (60 s) + the hold (120 s) at 10 s, plus the
            // covering sample and the batch the trim waits for.
            assert!(r.recent().len() <= 19 + 64, "{}", r.recent().len());
        }
        assert_eq!(r.samples(), 17_280);
        let first = r.recent().first().map(|c| c.at).expect("kept");
        let last = r.recent().last().map(|c| c.at).expect("kept");
        assert!(last - first >= chrono::Duration::seconds(180));
        let meta = SoakMeta {
            id: "t".into(),
            name: "t".into(),
            t0: cycle(0, 0, 0).at,
            planned_secs: 48.0 * 3600.0,
        };
        let s = r.summary(&meta, &[], None);
        assert!(s.series.lag.len() <= 4 * crate::soak::series::MAX_BUCKETS);
        assert!(s.series.resolution_ms > 0);
        assert_eq!(s.verdict, Status::Pass, "{}", s.verdict_reason);
        // One span per criterion: an unchanged soak costs no memory per cycle.
        assert_eq!(s.spans.len(), CriterionId::ALL.len());
    }

    #[test]
    fn a_dlq_spike_is_seen_through_the_trimmed_window() {
        let mut p = policy();
        p.fail_for
            .insert(CriterionId::Dlq, Duration::from_secs(300));
        let mut r = RunningSummary::new(&p, Duration::ZERO);
        for k in 0..200 {
            r.push(cycle(k, 0, 0));
        }
        // Twelve messages within 40 s: more than ten in a minute.
        for (k, seq) in [(200, 4), (201, 8), (202, 12)] {
            let mut c = cycle(k, 0, seq);
            c.status[CriterionId::ALL
                .iter()
                .position(|i| *i == CriterionId::Dlq)
                .expect("dlq")] = Status::Fail;
            r.push(c);
        }
        assert!(is_spike(
            r.recent(),
            r.recent().len() - 1,
            &policy().dlq_spike
        ));
        let meta = SoakMeta {
            id: "t".into(),
            name: "t".into(),
            t0: cycle(0, 0, 0).at,
            planned_secs: 3600.0,
        };
        let s = r.summary(&meta, &[], None);
        // A spike confirms at once, not after the 5 min `for`.
        assert_eq!(
            s.criterion(CriterionId::Dlq).map(|c| c.now),
            Some(Status::Fail)
        );
    }
}
