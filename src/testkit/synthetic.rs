//! Synthetic soak histories: a Phase B-shaped service sampled every interval,
//! with scripted faults. For replay tests and the evaluation benchmark, where
//! 48 h must pass in milliseconds; never used against a real deployment.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::sample::{
    ConsumerState, DbState, EnvState, FamilyFacts, FamilyPresence, LogState, MetricsState,
    ProbeFailure, ProbeKind, Snapshot, StreamState,
};

/// A scripted fault, active over `[from, to)` seconds after T0.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// The service restarts at `at` (process start moves, counters reset).
    Restart {
        /// Seconds after T0.
        at: f64,
    },
    /// NATS is unreachable: stream and consumer probes fail.
    NatsDown {
        /// Start, seconds after T0.
        from: f64,
        /// End, seconds after T0.
        to: f64,
    },
    /// `count` messages are dead-lettered at `at`.
    DlqBurst {
        /// Seconds after T0.
        at: f64,
        /// Messages.
        count: u64,
    },
    /// soakwatch itself is down: no samples at all.
    Gap {
        /// Start, seconds after T0.
        from: f64,
        /// End, seconds after T0.
        to: f64,
    },
    /// The consumer stops pulling over `[from, to)`: messages published
    /// meanwhile wait (pending), nothing is delivered and no pull waits; at
    /// `to` it catches up.
    Stall {
        /// Start, seconds after T0.
        from: f64,
        /// End, seconds after T0.
        to: f64,
    },
    /// The consumer backs up to `lag` messages.
    Backlog {
        /// Start, seconds after T0.
        from: f64,
        /// End, seconds after T0.
        to: f64,
        /// pending + ack pending meanwhile.
        lag: u64,
    },
}

/// A history generator.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// T0.
    pub t0: DateTime<Utc>,
    /// Seconds between samples.
    pub interval_secs: f64,
    /// Successful messages per sample interval; may be fractional (0.05 at a
    /// 60 s interval is 3 per hour): counts are whole messages, the n-th
    /// arriving in the interval where the running total passes n.
    pub per_interval: f64,
    /// Scripted faults.
    pub faults: Vec<Fault>,
}

impl Scenario {
    /// The benchmarks' 48 h at 10 s: a restart at 10 h, a 30 min NATS outage
    /// at 20 h and a DLQ burst of 15 at 30 h, 2 messages per interval.
    pub fn phase_b_benchmark(t0: DateTime<Utc>) -> Scenario {
        let h = 3600.0;
        Scenario {
            t0,
            interval_secs: 10.0,
            per_interval: 2.0,
            faults: vec![
                Fault::Restart { at: 10.0 * h },
                Fault::NatsDown {
                    from: 20.0 * h,
                    to: 20.5 * h,
                },
                Fault::DlqBurst {
                    at: 30.0 * h,
                    count: 15,
                },
            ],
        }
    }

    /// Snapshots for `[0, hours)`, skipping gaps, oldest first.
    pub fn history(&self, cfg: &Config, hours: f64) -> Vec<Snapshot> {
        let n = (hours * 3600.0 / self.interval_secs).round() as u64;
        (0..=n)
            .filter_map(|k| self.snapshot(cfg, k as f64 * self.interval_secs))
            .collect()
    }

    /// Messages published by `secs` after T0 (whole messages).
    fn events_by(&self, secs: f64) -> u64 {
        if secs < 0.0 {
            return 0;
        }
        // The small epsilon keeps 0.05 * 20 from landing just under 1.
        ((secs / self.interval_secs).floor() * self.per_interval + 1e-9).floor() as u64
    }

    /// Messages processed by `secs`: all published ones, except that a
    /// stalled consumer processes nothing after its stall began.
    fn processed_by(&self, secs: f64) -> u64 {
        let stalled_from = self
            .faults
            .iter()
            .filter_map(|f| match *f {
                Fault::Stall { from, to } if secs >= from && secs < to => Some(from),
                _ => None,
            })
            .reduce(f64::min);
        self.events_by(stalled_from.unwrap_or(secs))
    }

    /// When (seconds after T0) the `n`-th message arrived: the first sample
    /// whose running total reaches `n`; None for n = 0.
    fn arrival(&self, n: u64) -> Option<f64> {
        if n == 0 || self.per_interval <= 0.0 {
            return None;
        }
        let k = ((n as f64 - 1e-9) / self.per_interval).ceil();
        Some(k * self.interval_secs)
    }

    /// The sample at `secs` after T0, None inside a gap.
    pub fn snapshot(&self, cfg: &Config, secs: f64) -> Option<Snapshot> {
        let at = self.t0 + chrono::Duration::milliseconds((secs * 1000.0) as i64);
        let mut restart_at = 0.0_f64;
        let mut nats_down = false;
        let mut dlq_extra = 0u64;
        let mut lag = 0u64;
        let mut stalled = false;
        for f in &self.faults {
            match *f {
                Fault::Restart { at } if secs >= at => restart_at = restart_at.max(at),
                Fault::NatsDown { from, to } if secs >= from && secs < to => nats_down = true,
                Fault::DlqBurst { at, count } if secs >= at => dlq_extra += count,
                Fault::Gap { from, to } if secs >= from && secs < to => return None,
                Fault::Backlog { from, to, lag: l } if secs >= from && secs < to => lag = l,
                Fault::Stall { from, to } if secs >= from && secs < to => stalled = true,
                _ => {}
            }
        }
        let published = self.events_by(secs);
        let processed_total = self.processed_by(secs);
        let waiting = published - processed_total;
        lag += waiting;
        let processed_total = processed_total as f64;
        // Counters count since the (last) process start.
        let since_start = processed_total - self.events_by(restart_at) as f64;
        let dlq_since_start: u64 = self
            .faults
            .iter()
            .filter_map(|f| match *f {
                Fault::DlqBurst { at, count } if secs >= at && at >= restart_at => Some(count),
                _ => None,
            })
            .sum();
        let process_start =
            self.t0 + chrono::Duration::milliseconds((restart_at * 1000.0) as i64 - 60_000);
        let down = |probe| {
            ProbeFailure::new(
                probe,
                crate::sample::ProbeError::Connect {
                    what: "cannot connect to NATS at nats://127.0.0.1:4222".into(),
                    detail: "Connection refused".into(),
                },
            )
        };
        let stream = |name: &str, subjects: &[String], messages: u64| StreamState {
            name: name.to_string(),
            subjects: subjects.to_vec(),
            messages,
            bytes: messages * 220,
            first_seq: 1,
            last_seq: messages,
            last_ts: Some(at),
            storage: "file".into(),
            replicas: 1,
            max_age_secs: 0.0,
            consumer_count: 1,
        };
        let mut streams = BTreeMap::new();
        let specs = cfg.streams.all();
        for spec in specs {
            let messages = if spec.name == cfg.streams.legacy.name {
                spec.baseline_messages.unwrap_or(55)
            } else if spec.name == cfg.streams.dlq.name {
                spec.baseline_messages.unwrap_or(1) + dlq_extra
            } else if Some(spec.name.as_str()) == cfg.consumers.primary().map(|c| c.stream.as_str())
            {
                published + dlq_extra + lag - waiting
            } else {
                0
            };
            let mut st = stream(&spec.name, &spec.subjects, messages);
            st.storage = spec.storage.clone().unwrap_or_else(|| "file".into());
            st.replicas = spec.replicas.unwrap_or(1);
            st.max_age_secs = spec.max_age.map(|d| d.as_secs_f64()).unwrap_or(0.0);
            if spec.name == cfg.streams.legacy.name {
                st.last_seq = spec.baseline_last_seq.unwrap_or(messages);
            }
            streams.insert(
                spec.name.clone(),
                if nats_down {
                    Err(down(ProbeKind::Stream))
                } else {
                    Ok(Some(st))
                },
            );
        }
        // The last delivery is when the newest processed message arrived.
        let last_delivery = self
            .arrival(processed_total as u64)
            .map(|s| self.t0 + chrono::Duration::milliseconds((s * 1000.0) as i64));
        // The scenario plays the service's own (first named) durable.
        let c = cfg.consumers.primary()?;
        let consumer = ConsumerState {
            stream: c.stream.clone(),
            name: c.durable.clone(),
            num_pending: lag,
            num_ack_pending: 0,
            num_redelivered: 0,
            num_waiting: if stalled { 0 } else { 1 },
            delivered_consumer_seq: processed_total as u64,
            delivered_stream_seq: processed_total as u64,
            delivered_last_active: last_delivery,
            ack_floor_consumer_seq: processed_total as u64,
            ack_floor_stream_seq: processed_total as u64,
            ack_floor_last_active: last_delivery,
            filter_subject: c.filter_subject.clone(),
            ack_policy: c.ack_policy.clone(),
            ack_wait_secs: c.ack_wait.as_secs_f64(),
            max_deliver: c.max_deliver,
            max_ack_pending: c.max_ack_pending.unwrap_or(1000),
            durable_name: Some(c.durable.clone()),
            deliver_subject: None,
        };
        let m = &cfg.metrics;
        let mut by_result = BTreeMap::new();
        by_result.insert(m.success_result.clone(), since_start);
        by_result.insert(m.dlq_result.clone(), dlq_since_start as f64);
        let mut by_stream = BTreeMap::new();
        by_stream.insert(c.stream.clone(), since_start + dlq_since_start as f64);
        // Before the first event since (re)start, prom-client declares the
        // labelled counter and histogram with no samples.
        let fresh = since_start <= 0.0 && dlq_since_start == 0;
        let declared = |name: &str| FamilyFacts {
            name: name.to_string(),
            presence: FamilyPresence::Declared,
            ..Default::default()
        };
        let selected = |name: &str| FamilyFacts {
            name: name.to_string(),
            presence: FamilyPresence::Selected,
            series: 2,
            ..Default::default()
        };
        let family = |name: &str| {
            if fresh {
                declared(name)
            } else {
                selected(name)
            }
        };
        let metrics = MetricsState {
            body_bytes: 4096,
            counter_found: true,
            by_result: if fresh { BTreeMap::new() } else { by_result },
            by_stream: if fresh { BTreeMap::new() } else { by_stream },
            histogram: m.latency_histogram.as_ref().filter(|_| !fresh).map(|_| {
                vec![
                    (0.01, since_start * 0.5),
                    (0.05, since_start * 0.97),
                    (0.25, since_start),
                    (f64::INFINITY, since_start),
                ]
            }),
            process_start: Some(process_start.timestamp_millis() as f64 / 1000.0),
            counter: Some(family(&m.messages_counter)),
            latency: m.latency_histogram.as_deref().map(family),
            ..Default::default()
        };
        let window_start =
            at - chrono::Duration::milliseconds((self.interval_secs * 1000.0) as i64);
        let in_window =
            (processed_total as u64).saturating_sub(self.processed_by(secs - self.interval_secs));
        let db = DbState {
            rows_recent: since_start as i64,
            recent_window_secs: cfg
                .database
                .as_ref()
                .map_or(600.0, |d| d.recent_window.as_secs_f64()),
            newest_write: Some(at),
            written_since: vec![
                (process_start, since_start as i64),
                (window_start, in_window as i64),
            ],
            write_columns: cfg
                .database
                .iter()
                .map(|d| d.created_column.clone())
                .collect(),
            derived_checked: Some(200),
            derived_bad: Some(0),
            derived_max_error: Some(0.0),
            notes: vec![],
        };
        let mut env = EnvState::default();
        let env_cfg = cfg.service_env.as_ref();
        if let Some((k, unit)) =
            env_cfg.and_then(|e| Some((e.ack_wait_key.as_ref()?, &e.ack_wait_unit)))
        {
            let scale = if unit == "ms" { 1000.0 } else { 1.0 };
            env.values.insert(
                k.clone(),
                (format!("{}", c.ack_wait.as_secs_f64() * scale), 1),
            );
        }
        for (k, v) in env_cfg.iter().flat_map(|e| &e.expect) {
            env.values.insert(k.clone(), (v.clone(), 2));
        }
        Some(Snapshot {
            taken_at: at,
            streams,
            consumers: [(
                c.stream.clone(),
                if nats_down {
                    Err(down(ProbeKind::Consumer))
                } else {
                    Ok(Some(vec![consumer]))
                },
            )]
            .into(),
            metrics: Ok(metrics),
            db: Ok(db),
            log: Ok(LogState {
                lines_scanned: 100,
                ..Default::default()
            }),
            env: Ok(env),
            probe_ms: BTreeMap::new(),
            consumers_elided: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::soak::timeline::{replay, SoakMeta};
    use crate::verdict::{CriterionId as C, Status};

    const H: f64 = 3600.0;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 2, 17, 8, 59)
            .single()
            .expect("valid")
    }

    fn cfg() -> Config {
        let text = include_str!("../../checks.toml");
        let mut c = Config::from_text(std::path::Path::new("checks.toml"), text, &|_: &str| None)
            .expect("shipped config");
        c.soak.started_at = Some(t0());
        c
    }

    fn meta(hours: f64) -> SoakMeta {
        SoakMeta {
            id: "quiet".into(),
            name: "quiet".into(),
            t0: t0(),
            planned_secs: hours * H,
        }
    }

    /// HRV events a few per hour: 3 an hour, sampled every 10 s (the clock is the
    /// snapshots' own `taken_at`, so 24 h replay in milliseconds).
    fn quiet(faults: Vec<Fault>) -> Scenario {
        Scenario {
            t0: t0(),
            interval_secs: 10.0,
            per_interval: 3.0 / 360.0,
            faults,
        }
    }

    #[test]
    fn quiet_counts_are_whole_messages_a_few_per_hour() {
        let s = quiet(vec![]);
        assert_eq!(s.events_by(0.0), 0);
        assert_eq!(s.events_by(1190.0), 0);
        assert_eq!(s.events_by(1200.0), 1);
        assert_eq!(s.events_by(H), 3);
        assert_eq!(s.events_by(24.0 * H), 72);
        assert_eq!(s.arrival(1), Some(1200.0));
        assert_eq!(s.arrival(3), Some(H));
        // The healthy scenario's shape is unchanged: 2 per 10 s.
        let busy = Scenario {
            per_interval: 2.0,
            ..s
        };
        assert_eq!(busy.events_by(25.0), 4);
        assert_eq!(busy.arrival(4), Some(20.0));
    }

    #[test]
    fn a_quiet_soak_neither_fires_nor_goes_unknown_for_lack_of_traffic() {
        let c = cfg();
        let history = quiet(vec![]).history(&c, 24.0);
        // The first 20 minutes have no event at all: the families are declared, empty.
        let first = history[0].metrics.as_ref().expect("metrics");
        assert_eq!(
            first.counter.as_ref().map(|f| f.presence),
            Some(FamilyPresence::Declared)
        );
        let s = replay(&c, &meta(24.0), &history, &crate::watch::policy(&c));
        assert_eq!(s.verdict, Status::Pass, "{}", s.verdict_reason);
        assert!(s.incidents.is_empty(), "{:?}", s.incidents);
        let not_passing: Vec<_> = s
            .criteria
            .iter()
            .filter(|c| c.soak != Status::Pass)
            .map(|c| (c.id, c.soak))
            .collect();
        assert!(not_passing.is_empty(), "{not_passing:?}");
    }

    #[test]
    fn a_quiet_soak_still_catches_a_consumer_that_stops_while_messages_wait() {
        let c = cfg();
        let history = quiet(vec![Fault::Stall {
            from: 6.0 * H,
            to: 9.0 * H,
        }])
        .history(&c, 12.0);
        let s = replay(&c, &meta(12.0), &history, &crate::watch::policy(&c));
        assert_eq!(s.verdict, Status::Fail, "{}", s.verdict_reason);
        let stalls: Vec<_> = s
            .incidents
            .iter()
            .filter(|i| i.criterion == C::ConsumerLag)
            .collect();
        assert_eq!(stalls.len(), 1, "{:?}", s.incidents);
        // The first message after the stall began arrives at 6h20m, 20 minutes after the
        // last delivery (more than ack_wait) with no pull waiting: stalled from then on.
        let start = stalls[0].start;
        assert!(
            start >= t0() + chrono::Duration::minutes(6 * 60 + 20),
            "{start}"
        );
        assert!(
            start < t0() + chrono::Duration::minutes(6 * 60 + 30),
            "{start}"
        );
        assert!(stalls[0].end <= t0() + chrono::Duration::minutes(9 * 60 + 5));
        // Data stopped landing while work waited: `db_writes` fails too (a
        // stalled consumer is "database writes stop"), within the stall.
        let writes: Vec<_> = s
            .incidents
            .iter()
            .filter(|i| i.criterion == C::DbWrites)
            .collect();
        assert_eq!(writes.len(), 1, "{:?}", s.incidents);
        assert!(writes[0].start >= t0() + chrono::Duration::minutes(6 * 60 + 20));
        assert!(writes[0].end <= t0() + chrono::Duration::minutes(9 * 60 + 5));
        // Nothing else is blamed on the quiet hours.
        let others: Vec<_> = s
            .incidents
            .iter()
            .filter(|i| !matches!(i.criterion, C::ConsumerLag | C::DbWrites))
            .map(|i| i.criterion)
            .collect();
        assert!(others.is_empty(), "{others:?}");
    }
}
