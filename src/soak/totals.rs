//! The soak's totals: what happened over the whole soak, across service
//! restarts (its counters begin again at zero) and watcher restarts (the
//! fold is recomputed from the stored cycles, as the rest of the summary).
//!
//! Each cycle records the counts as their sources report them
//! ([`CycleCounts`]: the service's counters since it started, JetStream's
//! sequences, the rows written since the previous cycle); [`TotalsRun`]
//! adds their increases, counting a value after a restart from zero. Pure:
//! cycles in, [`SoakTotals`] out.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::sample::Snapshot;
use crate::soak::model::SoakTotals;
use crate::soak::record::{CycleCounts, CycleRecord};

/// The counts one snapshot shows (the rows written since the previous
/// cycle are set by [`CycleRecord::evaluate`], which knows that cycle).
pub fn counts_of(cfg: &Config, snap: &Snapshot) -> CycleCounts {
    let m = &cfg.metrics;
    let metrics = snap.metrics.as_ref().ok().filter(|ms| ms.counter_found);
    let (success, counted) = match metrics {
        Some(ms) => (
            Some(ms.by_result.get(&m.success_result).copied().unwrap_or(0.0)),
            Some(
                ms.by_result
                    .iter()
                    .filter(|(k, _)| !m.uncounted_results.contains(k))
                    .map(|(_, v)| v)
                    .sum(),
            ),
        ),
        None => (None, None),
    };
    let mut delivered = Some(0u64);
    for n in &cfg.consumers.named {
        delivered = match (delivered, snap.consumer(&n.stream, &n.durable)) {
            (Some(d), crate::sample::ConsumerLookup::Found(c)) => {
                Some(d.saturating_add(c.delivered_consumer_seq))
            }
            _ => None,
        };
    }
    if cfg.consumers.named.is_empty() {
        delivered = None;
    }
    let legacy_last_seq = snap
        .streams
        .get(&cfg.streams.legacy.name)
        .and_then(|r| r.as_ref().ok())
        .and_then(|s| s.as_ref())
        .map(|s| s.last_seq);
    CycleCounts {
        results: metrics.map(|ms| ms.by_result.clone()).unwrap_or_default(),
        success,
        counted,
        delivered_seq: delivered,
        rows: None,
        legacy_last_seq,
    }
}

/// A counter's running increase: positive steps add, and after a reset (it
/// went down, or the service restarted) its new value counts from zero.
#[derive(Debug, Clone, Copy, Default)]
struct Increase {
    total: f64,
    last: Option<f64>,
}

impl Increase {
    fn push(&mut self, v: Option<f64>, restarted: bool) {
        let Some(v) = v.filter(|v| v.is_finite() && *v >= 0.0) else {
            return;
        };
        match self.last {
            Some(p) if !restarted && v >= p => self.total += v - p,
            Some(_) => self.total += v,
            // The soak's first sight of it: what came before is not the soak's.
            None => {}
        }
        self.last = Some(v);
    }

    fn seen(&self) -> bool {
        self.last.is_some()
    }
}

/// A sequence's growth from its first sight (JetStream sequences never go
/// back unless the stream or consumer is re-created, which counts from zero).
#[derive(Debug, Clone, Copy, Default)]
struct Growth(Increase);

impl Growth {
    fn push(&mut self, v: Option<u64>) {
        self.0.push(v.map(|v| v as f64), false);
    }

    fn get(&self) -> Option<u64> {
        self.0.seen().then_some(self.0.total as u64)
    }
}

/// The soak's totals, folded one cycle at a time.
#[derive(Debug, Clone, Default)]
pub struct TotalsRun {
    results: BTreeMap<String, Increase>,
    success: Increase,
    counted: Increase,
    dlq_counter: Increase,
    delivered: Growth,
    dlq_stream: Growth,
    legacy: Growth,
    rows: Option<i64>,
    last_start: Option<f64>,
}

impl TotalsRun {
    /// Folds in the next cycle (oldest first).
    pub fn push(&mut self, c: &CycleRecord) {
        let n = &c.counts;
        // The service restarted since its counters were last seen: its
        // process start moved, or a counter went down.
        let moved =
            matches!((self.last_start, c.process_start), (Some(a), Some(b)) if (a - b).abs() > 0.5);
        let went_down = n.results.iter().any(|(k, v)| {
            self.results
                .get(k)
                .and_then(|i| i.last)
                .is_some_and(|p| *v < p)
        }) || matches!((self.counted.last, n.counted), (Some(p), Some(v)) if v < p);
        // The counter was read this cycle (declared with no sample counts too).
        let seen_now = n.counted.is_some();
        let restarted = seen_now && (moved || went_down);
        if seen_now {
            // A result absent after a restart is at zero.
            for (k, inc) in &mut self.results {
                if restarted && !n.results.contains_key(k) {
                    inc.last = Some(0.0);
                }
            }
            for (k, v) in &n.results {
                let inc = self.results.entry(k.clone()).or_default();
                if inc.last.is_none() && self.success.seen() {
                    // A result first seen mid-soak began at zero.
                    inc.last = Some(0.0);
                }
                inc.push(Some(*v), restarted);
            }
        }
        self.success.push(n.success, restarted);
        self.counted.push(n.counted, restarted);
        self.dlq_counter.push(c.dlq_counter, restarted);
        self.delivered.push(n.delivered_seq);
        self.dlq_stream.push(c.dlq_last_seq);
        self.legacy.push(n.legacy_last_seq);
        if let Some(r) = n.rows {
            *self.rows.get_or_insert(0) += r.max(0);
        }
        if c.process_start.is_some() {
            self.last_start = c.process_start;
        }
    }

    /// The totals so far; `restarts` is the summary's count of service restarts.
    pub fn totals(&self, restarts: usize) -> SoakTotals {
        let processed: BTreeMap<String, f64> = self
            .results
            .iter()
            .map(|(k, i)| (k.clone(), i.total))
            .collect();
        let counter = self.dlq_counter.seen().then_some(self.dlq_counter.total);
        let stream = self.dlq_stream.get();
        let dead_lettered = match (stream, counter) {
            (Some(s), Some(n)) => Some(s.max(n as u64)),
            (s, n) => s.or(n.map(|n| n as u64)),
        };
        let counted = self.counted.seen().then_some(self.counted.total);
        SoakTotals {
            delivered: self.delivered.get(),
            processed,
            succeeded: self.success.seen().then_some(self.success.total),
            counted,
            dead_lettered,
            dead_lettered_stream: stream,
            dead_lettered_counter: counter,
            rows_written: self.rows,
            legacy_appends: self.legacy.get(),
            service_restarts: restarts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{CriterionId, Status};
    use chrono::TimeZone;

    /// A cycle `k` (10 s apart) of a service started at `start` whose
    /// counter reads `success`/`dlq` and whose streams read `dlq_seq`.
    fn cycle(k: i64, start: f64, success: f64, dlq: f64, dlq_seq: u64) -> CycleRecord {
        let n = CriterionId::ALL.len();
        CycleRecord {
            at: chrono::Utc
                .with_ymd_and_hms(2026, 10, 2, 0, 0, 0)
                .single()
                .expect("t0")
                + chrono::Duration::seconds(10 * k),
            status: vec![Status::Pass; n],
            value: vec![None; n],
            evidence: vec![None; n],
            probe_errors: Default::default(),
            process_start: Some(start),
            processed_total: Some(success + dlq),
            dlq_messages: Some(dlq_seq),
            lag: Some(0),
            dlq_last_seq: Some(dlq_seq),
            dlq_counter: Some(dlq),
            consumers: vec![],
            counts: CycleCounts {
                results: [("success".to_string(), success), ("dlq".to_string(), dlq)]
                    .into_iter()
                    .filter(|(_, v)| *v > 0.0)
                    .collect(),
                success: Some(success),
                counted: Some(success + dlq),
                delivered_seq: Some(100 + 10 * k as u64),
                rows: (k > 0).then_some(1),
                legacy_last_seq: Some(55),
            },
        }
    }

    #[test]
    fn totals_count_from_t0_and_across_a_restart() {
        let mut t = TotalsRun::default();
        // 40 before T0 are not the soak's; 60 more, then a restart (counters from zero).
        t.push(&cycle(0, 1.0, 40.0, 0.0, 1));
        t.push(&cycle(1, 1.0, 100.0, 0.0, 1));
        t.push(&cycle(2, 500.0, 10.0, 1.0, 2));
        t.push(&cycle(3, 500.0, 30.0, 1.0, 2));
        let s = t.totals(1);
        assert_eq!(s.processed.get("success"), Some(&90.0));
        assert_eq!(s.processed.get("dlq"), Some(&1.0));
        assert_eq!((s.succeeded, s.counted), (Some(90.0), Some(91.0)));
        // One dead-lettered message in the stream and the counter: counted once.
        assert_eq!(s.dead_lettered, Some(1));
        assert_eq!(s.rows_written, Some(3));
        assert_eq!(s.legacy_appends, Some(0));
        assert_eq!(s.service_restarts, 1);
        // Deliveries are JetStream's: the consumer sequence does not reset.
        assert_eq!(s.delivered, Some(30));
    }

    #[test]
    fn a_restart_caught_only_by_the_start_time_still_counts_from_zero() {
        // The new process counted past the old values before it was seen.
        let mut t = TotalsRun::default();
        t.push(&cycle(0, 1.0, 10.0, 0.0, 1));
        t.push(&cycle(1, 1.0, 20.0, 0.0, 1));
        t.push(&cycle(2, 900.0, 25.0, 0.0, 1));
        assert_eq!(t.totals(1).succeeded, Some(35.0));
    }

    #[test]
    fn no_cycle_no_total_rather_than_zero() {
        let s = TotalsRun::default().totals(0);
        assert_eq!(
            (s.succeeded, s.delivered, s.rows_written),
            (None, None, None)
        );
        assert_eq!(s.success_ratio(), None);
    }
}
