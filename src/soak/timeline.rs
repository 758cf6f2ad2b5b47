//! From per-cycle verdicts to a soak: each cycle's compact record (statuses
//! and numbers, evidence only when not passing and deduplicated), and the
//! summary of a stored history ([`summarize`], [`replay`]) as the fold of
//! [`RunningSummary`] over it, which the daemon keeps cycle by cycle.
//!
//! Pure: cycles in, a [`SoakSummary`] out.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::Config;
use crate::evaluate::evaluate;
use crate::sample::Snapshot;
use crate::soak::model::SoakSummary;
pub use crate::soak::record::{CycleRecord, SoakMeta};
use crate::soak::running::RunningSummary;
use crate::verdict::{CriterionId, Status, Verdict};

pub use crate::soak::policy::SoakPolicy;

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
        let mut rec = CycleRecord::from_verdicts(cfg, snap, &verdicts);
        // Rows written since the previous sample, also across a gap (the
        // table keeps them), for the soak's totals.
        rec.counts.rows = prev.and_then(|p| snap.db.as_ref().ok()?.written_since(p.taken_at));
        (rec, verdicts)
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
                probe_errors.insert(label, e.to_string());
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
            // The worst consumer's: what the lag chart and the soak's
            // worst value show (per-consumer values are in `consumers`).
            lag: snap
                .consumers
                .values()
                .filter_map(|l| l.as_ref().ok().and_then(|l| l.as_ref()))
                .flatten()
                .map(|c| c.num_pending + c.num_ack_pending)
                .max(),
            consumers: crate::soak::record::consumer_marks(verdicts),
            counts: crate::soak::totals::counts_of(cfg, snap),
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

    /// Notes a stored cycle (to resume after a restart, one at a time).
    pub fn remember(&mut self, rec: &CycleRecord) {
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

/// Summarises a soak from its cycles (oldest first): the fold of
/// [`RunningSummary`] over them. `last_verdicts` are the newest cycle's full
/// verdicts (targets, observed text) and `last_snapshot` its samples.
pub fn summarize(
    meta: &SoakMeta,
    cycles: &[CycleRecord],
    last_verdicts: &[Verdict],
    last_snapshot: Option<Snapshot>,
    policy: &SoakPolicy,
) -> SoakSummary {
    let mut running = RunningSummary::new(policy, Duration::ZERO);
    for c in cycles {
        running.push(c.clone());
    }
    running.summary(meta, last_verdicts, last_snapshot)
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
    use crate::soak::dlq_spike::SpikeRule;
    use chrono::{DateTime, TimeZone, Utc};

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
            success_rate_min: 0.999,
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
            consumers: vec![],
            counts: Default::default(),
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
