//! The evaluator: snapshots in, verdicts out. No I/O and no clock of its own.
//!
//! "Now" is the newest snapshot's `taken_at`, and the window is the span from
//! the oldest to the newest, so recorded history replays exactly. A probe that
//! failed makes the criteria that need it `unknown` with its reason; a fact
//! that is bad (a missing stream, a grown DLQ) is a `fail` even when another
//! part of the same criterion could not be checked.
//!
//! Here: the entry point, the shared context and how parts combine. Each
//! group of criteria has its own file: `topology`, `consumer` (config, lag,
//! redeliveries), `baseline` (legacy idle, DLQ), `cutover` (fallback, stream
//! purity), `processing` (success rate, latency), `db` (writes, integrity)
//! and `service` (up, restarts).

mod baseline;
mod consumer;
mod cutover;
mod db;
#[cfg(test)]
mod fixtures;
mod processing;
mod service;
mod topology;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::sample::{
    MetricsState, ProbeError, ProbeFailure, ProbeKind, Probed, Snapshot, StreamState,
};
use crate::verdict::{CriterionId as C, Status, Verdict};

/// One piece of evidence inside a criterion; the criterion takes the worst.
struct Part {
    status: Status,
    text: String,
}

fn part(status: Status, text: impl Into<String>) -> Part {
    Part {
        status,
        text: text.into(),
    }
}

/// Worst status of the parts; evidence lists the worst parts first.
fn combine(mut parts: Vec<Part>) -> (Status, String) {
    if parts.is_empty() {
        return (Status::Unknown, "nothing to evaluate".into());
    }
    parts.sort_by_key(|p| std::cmp::Reverse(p.status));
    // One dead server explains many parts: say it once.
    let mut seen = std::collections::HashSet::new();
    parts.retain(|p| seen.insert(p.text.clone()));
    let worst = parts[0].status;
    let shown: Vec<&str> = if worst == Status::Pass {
        parts.iter().map(|p| p.text.as_str()).collect()
    } else {
        parts
            .iter()
            .filter(|p| p.status != Status::Pass)
            .map(|p| p.text.as_str())
            .collect()
    };
    (worst, shown.join("; "))
}

fn secs(d: std::time::Duration) -> String {
    humantime::format_duration(std::time::Duration::from_secs(d.as_secs().max(1))).to_string()
}

fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let d = (now - t).to_std().unwrap_or_default();
    format!(
        "{} ago",
        humantime::format_duration(std::time::Duration::from_secs(d.as_secs()))
    )
}

fn pct(x: f64) -> String {
    let s = format!("{:.3}", x * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// Evidence of zero events. A family declared with no samples (or with
/// series all at zero) after a restart or in quiet hours means nothing was
/// processed, not that something is unknown: `dlq`, `success_rate`,
/// `stream_purity` and `p95_latency` pass with this text, so a freshly
/// restarted or idle service does not block sign-off on its own. (A service
/// that stopped consuming is caught by `consumer_lag`'s stalled rule and by
/// `db_writes`, not here.)
pub const NO_TRAFFIC: &str = "no messages processed since the service started";

/// " (family: filtered by ...)" for evidence, empty when no matcher applies.
fn filter_note(f: Option<&crate::sample::FamilyFacts>) -> String {
    match f.map(|f| f.filter_note()) {
        Some(n) if !n.is_empty() => format!(" ({n})"),
        _ => String::new(),
    }
}

/// Evaluates every criterion over `history` (oldest first; at least one snapshot).
pub fn evaluate(cfg: &Config, history: &[Snapshot]) -> Vec<Verdict> {
    let Some(last) = history.last() else {
        return C::ALL
            .iter()
            .map(|id| Verdict::unknown(*id, "", "no samples taken"))
            .collect();
    };
    let first = history.first().unwrap_or(last);
    let fleet = consumer::Fleet::resolve(cfg, last);
    let ctx = Ctx {
        cfg,
        first,
        last,
        fleet,
    };
    vec![
        ctx.topology(),
        ctx.consumer_config(),
        ctx.consumer_lag(),
        ctx.redeliveries(),
        ctx.legacy_idle(),
        ctx.dlq(),
        ctx.fallback(),
        ctx.stream_purity(),
        ctx.success_rate(history),
        ctx.p95_latency(),
        ctx.db_writes(history),
        ctx.db_integrity(),
        ctx.service_up(history),
    ]
}

struct Ctx<'a> {
    cfg: &'a Config,
    first: &'a Snapshot,
    last: &'a Snapshot,
    /// The consumers watched in `last` (named and selected).
    fleet: consumer::Fleet,
}

/// Why the newest sample's message counter gives no number; its text is
/// the evidence of the criteria that need the counter.
#[derive(Debug, thiserror::Error)]
enum CounterUnreadable<'s> {
    /// The metrics probe failed.
    #[error("{0}")]
    Probe(&'s ProbeFailure),
    /// The family is absent, unmatched or holds values that cannot be
    /// trusted ([`crate::sample::FamilyFacts::unusable`] says which).
    #[error("{0}")]
    Unusable(String),
    /// A record from before the family facts were kept, without the counter.
    #[error("counter {0} not found in /metrics")]
    NotFound(String),
}

impl Ctx<'_> {
    fn window_secs(&self) -> f64 {
        (self.last.taken_at - self.first.taken_at).num_milliseconds() as f64 / 1000.0
    }

    fn stream<'s>(&self, snap: &'s Snapshot, name: &str) -> &'s Probed<Option<StreamState>> {
        static MISSING: std::sync::OnceLock<Probed<Option<StreamState>>> =
            std::sync::OnceLock::new();
        snap.streams.get(name).unwrap_or_else(|| {
            MISSING.get_or_init(|| {
                Err(ProbeFailure::new(
                    ProbeKind::Stream,
                    ProbeError::NotProbed {
                        what: "stream".into(),
                    },
                ))
            })
        })
    }

    fn metrics<'s>(&self, snap: &'s Snapshot) -> Result<&'s MetricsState, &'s ProbeFailure> {
        snap.metrics.as_ref()
    }

    /// The newest sample's message counter, when it can be read. A family
    /// declared with no samples reads as zero events (prom-client and
    /// prometheus_client print a labelled counter that way until its first
    /// event); an absent or unmatched family, NaN/infinite/negative values or
    /// duplicate series are the reason it cannot be read.
    fn counter(&self) -> Result<&MetricsState, CounterUnreadable<'_>> {
        let ms = self.metrics(self.last).map_err(CounterUnreadable::Probe)?;
        match &ms.counter {
            Some(f) => match f.unusable() {
                Some(reason) => Err(CounterUnreadable::Unusable(reason)),
                None => Ok(ms),
            },
            // A record from before the family facts were kept.
            None if ms.counter_found => Ok(ms),
            None => Err(CounterUnreadable::NotFound(
                self.cfg.metrics.messages_counter.clone(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::sample::*;

    #[test]
    fn healthy_history_passes_everything() {
        let c = cfg();
        let v = evaluate(&c, &healthy_window(&c));
        assert_eq!(not_passing(&v), vec![], "{v:#?}");
        assert_eq!(v.len(), 13);
    }

    #[test]
    fn no_history_is_unknown_not_pass() {
        let v = evaluate(&cfg(), &[]);
        assert!(v.iter().all(|v| v.status == Status::Unknown));
    }

    #[test]
    fn single_sample_leaves_db_writes_unknown_only() {
        let c = cfg();
        let v = evaluate(&c, &[healthy(&c, 0, 100.0)]);
        assert_eq!(not_passing(&v), vec![("db_writes", Status::Unknown)]);
    }

    #[test]
    fn probe_failures_make_dependents_unknown_never_pass() {
        let c = cfg();
        let mut h = healthy_window(&c);
        let f = |probe| ProbeFailure::new(probe, ProbeError::Other("down".into()));
        for l in h[1].consumers.values_mut() {
            *l = Err(f(ProbeKind::Consumer));
        }
        h[1].db = Err(f(ProbeKind::Database));
        h[1].log = Err(f(ProbeKind::Log));
        h[1].env = Err(f(ProbeKind::ServiceEnv));
        let s = statuses(&evaluate(&c, &h));
        for id in [
            "consumer_config",
            "consumer_lag",
            "redeliveries",
            "fallback",
            "db_writes",
            "db_integrity",
        ] {
            assert_eq!(s[id], Status::Unknown, "{id}");
        }
        for id in [
            "topology",
            "legacy_idle",
            "dlq",
            "stream_purity",
            "success_rate",
            "service_up",
        ] {
            assert_eq!(s[id], Status::Pass, "{id}");
        }
    }

    #[test]
    fn a_freshly_started_service_with_declared_empty_families_passes() {
        let c = cfg();
        for name in [
            "nodejs_service_fresh.prom",
            "nodejs_service_fresh.openmetrics",
            "python_service_fresh.prom",
            "python_service_fresh.openmetrics",
        ] {
            let v = evaluate(&c, &idle_window(&c, name));
            assert!(not_passing(&v).is_empty(), "{name}: {:?}", not_passing(&v));
            for id in METRIC_CRITERIA {
                let e = &get(&v, id).evidence;
                assert!(e.contains(NO_TRAFFIC), "{name} {id:?}: {e}");
            }
            // One sample (check without --window): the metric criteria still pass.
            let one = evaluate(&c, &idle_window(&c, name)[1..]);
            for id in METRIC_CRITERIA {
                assert_eq!(get(&one, id).status, Status::Pass, "{name} {id:?}");
            }
        }
    }

    #[test]
    fn zero_valued_series_are_zero_events_too() {
        let c = cfg();
        let mut h = healthy_window(&c);
        for snap in &mut h {
            if let Ok(m) = &mut snap.metrics {
                m.by_result = [("success".to_string(), 0.0), ("dlq".to_string(), 0.0)]
                    .into_iter()
                    .collect();
                m.by_stream = [(c.consumers.named[0].stream.clone(), 0.0)]
                    .into_iter()
                    .collect();
                m.histogram = Some(vec![(0.1, 0.0), (f64::INFINITY, 0.0)]);
            }
        }
        let v = evaluate(&c, &h);
        for id in METRIC_CRITERIA {
            let got = get(&v, id);
            assert_eq!(got.status, Status::Pass, "{id:?}: {}", got.evidence);
            assert!(
                got.evidence.contains(NO_TRAFFIC),
                "{id:?}: {}",
                got.evidence
            );
        }
    }

    #[test]
    fn an_absent_family_is_unknown_with_did_you_mean() {
        let mut c = cfg();
        c.metrics.messages_counter = "normalize_hrv_message_total".into();
        let v = evaluate(&c, &idle_window(&c, "nodejs_service_fresh.prom"));
        for id in [C::Dlq, C::SuccessRate, C::StreamPurity] {
            let got = get(&v, id);
            assert_eq!(got.status, Status::Unknown, "{id:?}");
            assert!(
                got.evidence
                    .contains("did you mean normalize_hrv_messages_total,"),
                "{id:?}: {}",
                got.evidence
            );
        }
        // client_golang leaves an empty vector out entirely: absent, so unknown.
        let c = cfg();
        let v = evaluate(&c, &idle_window(&c, "go_service_fresh.prom"));
        for id in METRIC_CRITERIA {
            assert_eq!(get(&v, id).status, Status::Unknown, "{id:?}");
        }
    }

    #[test]
    fn nan_negative_and_duplicate_counters_are_unknown_never_pass() {
        let c = cfg();
        let v = evaluate(&c, &idle_window(&c, "python_service_broken.prom"));
        for id in METRIC_CRITERIA {
            let got = get(&v, id);
            assert_eq!(got.status, Status::Unknown, "{id:?}: {}", got.evidence);
            assert!(
                got.evidence.contains("cannot be trusted"),
                "{id:?}: {}",
                got.evidence
            );
        }
        assert!(get(&v, C::StreamPurity).evidence.contains("NaN"));
        assert!(get(&v, C::P95Latency).evidence.contains("buckets decrease"));
        assert!(get(&v, C::SuccessRate)
            .evidence
            .contains("duplicate series"));
    }

    #[test]
    fn traffic_from_the_libraries_passes_and_says_how_families_were_filtered() {
        let c = cfg();
        for name in [
            "nodejs_service_traffic.prom",
            "python_service_traffic.openmetrics",
            "go_service_traffic.prom",
        ] {
            let v = evaluate(&c, &idle_window(&c, name));
            let dlq = get(&v, C::Dlq);
            assert_eq!(
                dlq.status,
                Status::Fail,
                "{name}: one message was dead-lettered"
            );
            let purity = get(&v, C::StreamPurity);
            assert_eq!(purity.status, Status::Pass, "{name}: {}", purity.evidence);
            assert!(
                purity
                    .evidence
                    .contains("filtered by durable=\"normalize-hrv-durable\""),
                "{}",
                purity.evidence
            );
            // 41 observations since start, 3 of them slow: p95 lands in (0.25, 0.5].
            let p95 = get(&v, C::P95Latency);
            assert_eq!(p95.status, Status::Pass, "{name}: {}", p95.evidence);
            assert!(
                p95.evidence.contains("from 41 observations"),
                "{}",
                p95.evidence
            );
            assert!(
                p95.evidence
                    .contains("not by durable (the family has no such label)"),
                "{}",
                p95.evidence
            );
            let sr = get(&v, C::SuccessRate);
            assert!(sr.evidence.starts_with("40/41"), "{name}: {}", sr.evidence);
        }
    }

    #[test]
    fn unmatched_match_labels_are_unknown_and_list_what_exists() {
        let mut c = cfg();
        c.metrics.matchers = vec![("durable".into(), "normalize-hrv-durable-v2".into())];
        let v = evaluate(&c, &idle_window(&c, "nodejs_service_traffic.prom"));
        let sr = get(&v, C::SuccessRate);
        assert_eq!(sr.status, Status::Unknown);
        assert!(
            sr.evidence.contains("series that exist:")
                && sr.evidence.contains("durable=\"other-durable\""),
            "{}",
            sr.evidence
        );
        // The histogram carries no durable label, so it is still read.
        assert_eq!(get(&v, C::P95Latency).status, Status::Pass);
    }
}
