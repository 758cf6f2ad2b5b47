//! Test histories shared by the criteria's unit tests: the shipped config and
//! healthy snapshots to spoil one fact at a time.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};

use crate::config::{Config, StreamSpec};
use crate::sample::*;
use crate::verdict::{CriterionId as C, Status, Verdict};

pub(super) fn cfg() -> Config {
    let text = include_str!("../../checks.toml");
    let mut c = Config::from_text(std::path::Path::new("checks.toml"), text, &|_: &str| None)
        .expect("shipped config");
    // The soak began shortly before the service started in these histories.
    c.soak.started_at = Some(t(-200));
    c
}

pub(super) fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + s, 0)
        .single()
        .expect("valid time")
}

pub(super) fn stream(spec: &StreamSpec, messages: u64) -> StreamState {
    StreamState {
        name: spec.name.clone(),
        subjects: spec.subjects.clone(),
        messages,
        bytes: messages * 200,
        first_seq: 1,
        last_seq: messages,
        last_ts: None,
        storage: "file".into(),
        replicas: 1,
        max_age_secs: spec.max_age.map(|d| d.as_secs_f64()).unwrap_or(0.0),
        consumer_count: 0,
    }
}

/// A healthy Phase B state at time `at` with `ok` successes so far.
pub(super) fn healthy(c: &Config, at: i64, ok: f64) -> Snapshot {
    let mut streams = BTreeMap::new();
    streams.insert(
        c.streams.legacy.name.clone(),
        Ok(Some(stream(&c.streams.legacy, 55))),
    );
    for h in &c.streams.hot {
        streams.insert(h.name.clone(), Ok(Some(stream(h, ok as u64))));
    }
    streams.insert(
        c.streams.dlq.name.clone(),
        Ok(Some(stream(&c.streams.dlq, 1))),
    );
    let consumer = ConsumerState {
        stream: c.consumers.named[0].stream.clone(),
        name: c.consumers.named[0].durable.clone(),
        num_pending: 0,
        num_ack_pending: 0,
        num_redelivered: 0,
        num_waiting: 1,
        delivered_consumer_seq: ok as u64,
        delivered_stream_seq: ok as u64,
        delivered_last_active: Some(t(at - 1)),
        ack_floor_consumer_seq: ok as u64,
        ack_floor_stream_seq: ok as u64,
        ack_floor_last_active: Some(t(at - 1)),
        filter_subject: c.consumers.named[0].filter_subject.clone(),
        ack_policy: "explicit".into(),
        ack_wait_secs: 60.0,
        max_deliver: 5,
        max_ack_pending: 1000,
        durable_name: Some(c.consumers.named[0].durable.clone()),
        deliver_subject: None,
    };
    let process_start = t(-100);
    let metrics = MetricsState {
        body_bytes: 1000,
        counter_found: true,
        by_result: [("success".to_string(), ok)].into_iter().collect(),
        by_stream: [(c.consumers.named[0].stream.clone(), ok)]
            .into_iter()
            .collect(),
        histogram: Some(vec![
            (0.05, ok * 0.9),
            (0.1, ok),
            (0.5, ok),
            (f64::INFINITY, ok),
        ]),
        process_start: Some(process_start.timestamp() as f64),
        ..Default::default()
    };
    let db = DbState {
        rows_recent: ok as i64,
        recent_window_secs: 600.0,
        newest_write: Some(t(at - 1)),
        written_since: vec![(process_start, ok as i64)],
        write_columns: vec!["createdAt".into(), "updatedAt".into()],
        derived_checked: Some(ok as i64),
        derived_bad: Some(0),
        derived_max_error: Some(0.0),
        notes: vec![],
    };
    let env = EnvState {
        values: [
            (
                "NORMALIZE_HRV_ACK_WAIT_MS".to_string(),
                ("60000".to_string(), 7),
            ),
            ("EVENT_STREAM_MODE".to_string(), ("multi".to_string(), 2)),
        ]
        .into_iter()
        .collect(),
    };
    Snapshot {
        taken_at: t(at),
        streams,
        consumers: [(consumer.stream.clone(), Ok(Some(vec![consumer])))].into(),
        metrics: Ok(metrics),
        db: Ok(db),
        log: Ok(LogState {
            lines_scanned: 6,
            ignored_count: 1,
            ..Default::default()
        }),
        env: Ok(env),
        probe_ms: BTreeMap::new(),
        consumers_elided: false,
    }
}

/// Two healthy snapshots 10 s apart with 10 more successes and rows in between.
pub(super) fn healthy_window(c: &Config) -> Vec<Snapshot> {
    let a = healthy(c, 0, 100.0);
    let mut b = healthy(c, 10, 110.0);
    if let Ok(db) = &mut b.db {
        db.written_since.push((t(0), 10));
    }
    vec![a, b]
}

pub(super) fn statuses(v: &[Verdict]) -> BTreeMap<&'static str, Status> {
    v.iter().map(|v| (v.id.as_str(), v.status)).collect()
}

/// Ids whose status is not pass.
pub(super) fn not_passing(v: &[Verdict]) -> Vec<(&'static str, Status)> {
    v.iter()
        .filter(|v| v.status != Status::Pass)
        .map(|v| (v.id.as_str(), v.status))
        .collect()
}

pub(super) fn fixture_metrics(c: &Config, name: &str) -> MetricsState {
    let path = format!(
        "{}/tests/fixtures/promtext/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    crate::probe::metrics::extract(&crate::promtext::parse(&text), c, text.len() as u64)
}

/// Two snapshots 10 s apart of an idle service whose /metrics is `name`.
pub(super) fn idle_window(c: &Config, name: &str) -> Vec<Snapshot> {
    let mut a = healthy(c, 0, 0.0);
    let mut b = healthy(c, 10, 0.0);
    for snap in [&mut a, &mut b] {
        let mut m = fixture_metrics(c, name);
        // The fixtures' start time is fixed; align it with these histories' rows.
        m.process_start = Some(t(-100).timestamp() as f64);
        snap.metrics = Ok(m);
    }
    if let Ok(db) = &mut b.db {
        db.written_since.push((t(0), 0));
    }
    vec![a, b]
}

pub(super) fn get(v: &[Verdict], id: C) -> &Verdict {
    v.iter().find(|v| v.id == id).expect("criterion evaluated")
}

pub(super) const METRIC_CRITERIA: [C; 4] = [C::Dlq, C::SuccessRate, C::StreamPurity, C::P95Latency];

/// The first listed consumer of a snapshot (the fixtures' one durable).
pub(super) fn first_consumer(s: &mut Snapshot) -> Option<&mut ConsumerState> {
    s.consumers
        .values_mut()
        .find_map(|l| l.as_mut().ok().and_then(|l| l.as_mut()?.first_mut()))
}
