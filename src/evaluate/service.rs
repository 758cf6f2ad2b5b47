//! `service_up`: the service answers on /metrics and did not restart.

use chrono::DateTime;

use super::{combine, part, Ctx};
use crate::histogram;
use crate::sample::{ProbeError, ProbeFailure, Snapshot};
use crate::verdict::{CriterionId as C, Status, Verdict};

impl Ctx<'_> {
    pub(super) fn service_up(&self, history: &[Snapshot]) -> Verdict {
        let target = "metrics endpoint answers; no restart".to_string();
        let ms = match self.metrics(self.last) {
            // It answered, but more than we agreed to read: not known to be down.
            Err(
                f @ ProbeFailure {
                    error: ProbeError::OverCap { .. },
                    ..
                },
            ) => return Verdict::unknown(C::ServiceUp, target, f.to_string()),
            // It answered, with something else (a login page, an empty
            // 200): not down, which would feed the `service_up` rollback
            // trigger, and not up either: nobody can tell.
            Err(
                f @ ProbeFailure {
                    error: ProbeError::NotExposition { .. },
                    ..
                },
            ) => {
                return Verdict::new(
                    C::ServiceUp,
                    Status::Unknown,
                    "answers, not with metrics",
                    target,
                    format!("the endpoint answers, with something else: {f}"),
                )
            }
            Err(f) => {
                return Verdict::new(C::ServiceUp, Status::Fail, "down", target, f.to_string())
                    .with_value(0.0, None, Some(0.0))
            }
            Ok(ms) => ms,
        };
        let mut parts = Vec::new();
        if ms.parse_error_count > 0 {
            parts.push(part(
                Status::Warn,
                format!(
                    "{} bad line(s) in /metrics, first: {}",
                    ms.parse_error_count,
                    ms.parse_errors.first().cloned().unwrap_or_default()
                ),
            ));
        }
        let now = self.last.taken_at;
        let started = ms
            .process_start
            .and_then(|s| DateTime::from_timestamp_micros((s * 1e6) as i64));
        parts.extend(self.restart_parts(history, started));
        let uptime = started.map(|ps| (now - ps).num_seconds().max(0) as f64);
        parts.push(part(
            Status::Pass,
            format!(
                "metrics answered ({} bytes){}",
                ms.body_bytes,
                uptime
                    .map(|u| format!(
                        ", up {}",
                        humantime::format_duration(std::time::Duration::from_secs(u as u64))
                    ))
                    .unwrap_or_default()
            ),
        ));
        let (status, evidence) = combine(parts);
        let observed = match uptime {
            Some(u) => format!(
                "up {}",
                humantime::format_duration(std::time::Duration::from_secs(u as u64))
            ),
            None => "up".into(),
        };
        let v = Verdict::new(C::ServiceUp, status, observed, target, evidence);
        v.with_value(1.0, None, Some(0.0))
    }
}

impl Ctx<'_> {
    /// A restart judged by one rule, seen in the window (the process start
    /// moved, a counter reset) or only from the process start time (one
    /// sample, or a later window): a (re)start within `restart_grace` of
    /// the soak's T0 is the cutover's own and passes; later, seen happening
    /// in the window it fails, and the process it left warns for as long as
    /// it runs. `check` and the daemon judge it alike (both with the soak's
    /// T0: the daemon's recorded one, `check`'s from the same state).
    fn restart_parts(
        &self,
        history: &[Snapshot],
        started: Option<DateTime<chrono::Utc>>,
    ) -> Vec<super::Part> {
        let mut parts = Vec::new();
        let t0 = self.cfg.soak.started_at;
        let in_grace = match (t0, started) {
            (Some(t0), Some(ps)) => {
                ps <= crate::duration::after(t0, self.cfg.criteria.restart_grace)
            }
            _ => false,
        };
        let grace_text = || {
            format!(
                "within restart_grace ({}) of T0: the cutover's own restart",
                humantime::format_duration(self.cfg.criteria.restart_grace)
            )
        };
        let starts: Vec<f64> = history
            .iter()
            .filter_map(|s| s.metrics.as_ref().ok().and_then(|m| m.process_start))
            .collect();
        let totals: Vec<f64> = history
            .iter()
            .filter_map(|s| {
                s.metrics
                    .as_ref()
                    .ok()
                    .map(|m| m.by_result.values().sum::<f64>())
            })
            .collect();
        let (_, resets) = histogram::counter_increase(&totals);
        let moved = starts.windows(2).any(|w| (w[1] - w[0]).abs() > 0.5);
        if moved || resets > 0 {
            let how = if moved {
                "process start time changed".to_string()
            } else {
                format!("counter reset seen {resets} time(s)")
            };
            parts.push(if in_grace {
                part(
                    Status::Pass,
                    format!(
                        "the service restarted during the window ({how}), {}",
                        grace_text()
                    ),
                )
            } else {
                part(
                    Status::Fail,
                    format!("the service restarted during the window ({how})"),
                )
            });
        }
        if let (Some(t0), Some(ps)) = (t0, started) {
            if !in_grace {
                parts.push(part(
                    Status::Warn,
                    format!(
                        "the service (re)started at {}, after the soak began at {} (+ restart_grace {})",
                        ps.format("%Y-%m-%d %H:%M:%SZ"),
                        t0.format("%Y-%m-%d %H:%M:%SZ"),
                        humantime::format_duration(self.cfg.criteria.restart_grace)
                    ),
                ));
            }
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use crate::evaluate::evaluate;
    use crate::evaluate::fixtures::*;
    use crate::sample::{ProbeError, ProbeFailure, ProbeKind};
    use crate::verdict::{CriterionId as C, Status};

    #[test]
    fn a_metrics_body_over_the_cap_is_unknown_not_down() {
        let c = cfg();
        let mut h = healthy_window(&c);
        h[1].metrics = Err(ProbeFailure::new(
            ProbeKind::Metrics,
            ProbeError::OverCap {
                url: "x".into(),
                body: crate::probe_error::OverCapBody::ContentLength(9),
                cap: 1,
            },
        ));
        let v = evaluate(&c, &h);
        let up = v.iter().find(|v| v.id == C::ServiceUp).expect("service_up");
        assert_eq!(up.status, Status::Unknown);
    }

    #[test]
    fn an_answer_that_is_not_an_exposition_is_unknown_never_down() {
        let c = cfg();
        let mut h = healthy_window(&c);
        h[1].metrics = Err(ProbeFailure::new(
            ProbeKind::Metrics,
            ProbeError::NotExposition {
                url: "x".into(),
                status: "200 OK".into(),
                detail: "text/html, 90 bytes, 2 bad lines".into(),
            },
        ));
        let v = evaluate(&c, &h);
        let up = v.iter().find(|v| v.id == C::ServiceUp).expect("service_up");
        assert_eq!(up.status, Status::Unknown);
        assert!(!up.observed.contains("down"), "{}", up.observed);
        assert!(up.evidence.contains("answers, with something else"));
        // A refused connection is still down.
        h[1].metrics = Err(ProbeFailure::new(
            ProbeKind::Metrics,
            ProbeError::Connect {
                what: "GET x".into(),
                detail: "connection failed: refused".into(),
            },
        ));
        let v = evaluate(&c, &h);
        let up = v.iter().find(|v| v.id == C::ServiceUp).expect("service_up");
        assert_eq!(up.status, Status::Fail);
    }

    #[test]
    fn restart_in_window_and_after_t0() {
        let mut c = cfg();
        // T0 well before the restart at t(5), beyond the 5 min grace.
        c.soak.started_at = Some(t(-1000));
        let mut h = healthy_window(&c);
        if let Ok(m) = &mut h[1].metrics {
            m.process_start = Some(t(5).timestamp() as f64);
            m.by_result.insert("success".into(), 3.0);
            m.by_stream.insert(c.consumers.named[0].stream.clone(), 3.0);
        }
        let s = statuses(&evaluate(&c, &h));
        assert_eq!(s["service_up"], Status::Fail);

        // The same restart within restart_grace of T0: the cutover's own, a pass.
        let mut c2 = cfg();
        c2.soak.started_at = Some(t(-200));
        let v = evaluate(&c2, &h);
        let up = v.iter().find(|v| v.id == C::ServiceUp).expect("service_up");
        assert_eq!(up.status, Status::Pass, "{}", up.evidence);
        assert!(
            up.evidence.contains("the cutover's own restart"),
            "{}",
            up.evidence
        );
        // No T0 known at all: a restart in the window still fails.
        c2.soak.started_at = None;
        assert_eq!(statuses(&evaluate(&c2, &h))["service_up"], Status::Fail);

        // One sample, but the service started well after T0 (+ 5 min grace): a warning.
        let mut c = cfg();
        c.soak.started_at = Some(t(-1000));
        let v = evaluate(&c, &[healthy(&c, 0, 10.0)]);
        assert_eq!(statuses(&v)["service_up"], Status::Warn);
        assert!(
            v[12].evidence.contains("after the soak began"),
            "{}",
            v[12].evidence
        );
    }
}
