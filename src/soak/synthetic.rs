//! Synthetic soak histories: a Phase B-shaped service sampled every interval,
//! with scripted faults. For replay tests and the evaluation benchmark, where
//! 48 h must pass in milliseconds; never used against a real deployment.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::sample::{
    ConsumerState, DbState, EnvState, LogState, MetricsState, ProbeFailure, ProbeKind, Snapshot,
    StreamState,
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
    /// Successful messages per sample interval.
    pub per_interval: f64,
    /// Scripted faults.
    pub faults: Vec<Fault>,
}

impl Scenario {
    /// Snapshots for `[0, hours)`, skipping gaps, oldest first.
    pub fn history(&self, cfg: &Config, hours: f64) -> Vec<Snapshot> {
        let n = (hours * 3600.0 / self.interval_secs).round() as u64;
        (0..=n)
            .filter_map(|k| self.snapshot(cfg, k as f64 * self.interval_secs))
            .collect()
    }

    /// The sample at `secs` after T0, None inside a gap.
    pub fn snapshot(&self, cfg: &Config, secs: f64) -> Option<Snapshot> {
        let at = self.t0 + chrono::Duration::milliseconds((secs * 1000.0) as i64);
        let mut restart_at = 0.0_f64;
        let mut nats_down = false;
        let mut dlq_extra = 0u64;
        let mut lag = 0u64;
        for f in &self.faults {
            match *f {
                Fault::Restart { at } if secs >= at => restart_at = restart_at.max(at),
                Fault::NatsDown { from, to } if secs >= from && secs < to => nats_down = true,
                Fault::DlqBurst { at, count } if secs >= at => dlq_extra += count,
                Fault::Gap { from, to } if secs >= from && secs < to => return None,
                Fault::Backlog { from, to, lag: l } if secs >= from && secs < to => lag = l,
                _ => {}
            }
        }
        let processed_total = (secs / self.interval_secs).floor() * self.per_interval;
        // Counters count since the (last) process start.
        let since_start =
            processed_total - (restart_at / self.interval_secs).floor() * self.per_interval;
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
        let down = |probe| ProbeFailure {
            probe,
            reason: "cannot connect to NATS at nats://127.0.0.1:4222: Connection refused".into(),
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
            } else if spec.name == cfg.consumer.stream {
                processed_total as u64 + dlq_extra + lag
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
        let c = &cfg.consumer;
        let consumer = ConsumerState {
            stream: c.stream.clone(),
            name: c.durable.clone(),
            num_pending: lag,
            num_ack_pending: 0,
            num_redelivered: 0,
            num_waiting: 1,
            delivered_consumer_seq: processed_total as u64,
            delivered_stream_seq: processed_total as u64,
            delivered_last_active: Some(at),
            ack_floor_consumer_seq: processed_total as u64,
            ack_floor_stream_seq: processed_total as u64,
            ack_floor_last_active: Some(at),
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
        let metrics = MetricsState {
            body_bytes: 4096,
            counter_found: true,
            by_result,
            by_stream,
            histogram: m.latency_histogram.as_ref().map(|_| {
                vec![
                    (0.01, since_start * 0.5),
                    (0.05, since_start * 0.97),
                    (0.25, since_start),
                    (f64::INFINITY, since_start),
                ]
            }),
            process_start: Some(process_start.timestamp_millis() as f64 / 1000.0),
            ..Default::default()
        };
        let window_start =
            at - chrono::Duration::milliseconds((self.interval_secs * 1000.0) as i64);
        let db = DbState {
            rows_recent: since_start as i64,
            recent_window_secs: cfg.database.recent_window.as_secs_f64(),
            newest_write: Some(at),
            written_since: vec![
                (process_start, since_start as i64),
                (window_start, self.per_interval as i64),
            ],
            write_columns: vec![cfg.database.created_column.clone()],
            derived_checked: Some(200),
            derived_bad: Some(0),
            derived_max_error: Some(0.0),
            notes: vec![],
        };
        let mut env = EnvState::default();
        if let Some(k) = &cfg.service_env.ack_wait_key {
            let scale = if cfg.service_env.ack_wait_unit == "ms" {
                1000.0
            } else {
                1.0
            };
            env.values.insert(
                k.clone(),
                (format!("{}", c.ack_wait.as_secs_f64() * scale), 1),
            );
        }
        for (k, v) in &cfg.service_env.expect {
            env.values.insert(k.clone(), (v.clone(), 2));
        }
        Some(Snapshot {
            taken_at: at,
            streams,
            consumer: if nats_down {
                Err(down(ProbeKind::Consumer))
            } else {
                Ok(Some(consumer))
            },
            metrics: Ok(metrics),
            db: Ok(db),
            log: Ok(LogState {
                lines_scanned: 100,
                ..Default::default()
            }),
            env: Ok(env),
            probe_ms: BTreeMap::new(),
        })
    }
}
