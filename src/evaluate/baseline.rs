//! Streams that must not grow past their baseline: the legacy stream after the
//! cutover (`legacy_idle`) and the dead-letter queue (`dlq`, which also reads
//! the service's own dead-letter counter).

use super::{combine, filter_note, part, Ctx, Part, NO_TRAFFIC};
use crate::config::StreamSpec;
use crate::sample::MetricsState;
use crate::verdict::{CriterionId as C, Status, Verdict};

/// Messages counted by the counter, all results.
fn processed(ms: &MetricsState) -> f64 {
    ms.by_result.values().sum()
}

impl Ctx<'_> {
    /// Growth of a baselined stream: (status part, messages now).
    fn baseline_growth(&self, spec: &StreamSpec, what: &str) -> (Vec<Part>, Option<u64>) {
        let mut parts = Vec::new();
        let s = match self.stream(self.last, &spec.name) {
            Err(f) => return (vec![part(Status::Unknown, f.to_string())], None),
            Ok(None) => {
                return (
                    vec![part(
                        Status::Unknown,
                        format!("{what} stream {} does not exist", spec.name),
                    )],
                    None,
                )
            }
            Ok(Some(s)) => s,
        };
        let mut judged = false;
        if let Some(b) = spec.baseline_last_seq {
            judged = true;
            if s.last_seq > b {
                parts.push(part(
                    Status::Fail,
                    format!(
                        "{} written to {} since cutover (last_seq {} > baseline {b})",
                        s.last_seq - b,
                        spec.name,
                        s.last_seq
                    ),
                ));
            }
        }
        if let Some(b) = spec.baseline_messages {
            judged = true;
            if s.messages > b {
                parts.push(part(
                    Status::Fail,
                    format!(
                        "{} holds {} messages (baseline {b}: +{})",
                        spec.name,
                        s.messages,
                        s.messages - b
                    ),
                ));
            } else if s.messages < b {
                parts.push(part(
                    Status::Pass,
                    format!(
                        "{} holds {} messages, fewer than the baseline {b} (expired or purged)",
                        spec.name, s.messages
                    ),
                ));
            }
        }
        if let Ok(Some(f)) = self.stream(self.first, &spec.name) {
            if s.last_seq > f.last_seq {
                let per_min =
                    (s.last_seq - f.last_seq) as f64 / (self.window_secs() / 60.0).max(1.0 / 60.0);
                parts.push(part(
                    Status::Fail,
                    format!(
                        "{} new message(s) on {} during the {:.1}s window ({per_min:.1}/min)",
                        s.last_seq - f.last_seq,
                        spec.name,
                        self.window_secs()
                    ),
                ));
            }
        }
        if !judged && self.window_secs() <= 0.0 {
            parts.push(part(
                Status::Unknown,
                format!(
                    "no baseline configured for {} and no window to compare",
                    spec.name
                ),
            ));
        }
        if parts.iter().all(|p| p.status == Status::Pass) {
            parts.push(part(
                Status::Pass,
                format!(
                    "{} unchanged: {} messages, last_seq {}",
                    spec.name, s.messages, s.last_seq
                ),
            ));
        }
        (parts, Some(s.messages))
    }

    pub(super) fn legacy_idle(&self) -> Verdict {
        let spec = &self.cfg.streams.legacy;
        let target = match (spec.baseline_messages, spec.baseline_last_seq) {
            (_, Some(seq)) => format!("last_seq stays {seq}"),
            (Some(m), None) => format!("messages stay {m}"),
            (None, None) => "no new messages".into(),
        };
        let (parts, messages) = self.baseline_growth(spec, "legacy");
        let (status, evidence) = combine(parts);
        let v = Verdict::new(
            C::LegacyIdle,
            status,
            messages
                .map(|m| format!("{m} messages"))
                .unwrap_or_else(|| "unknown".into()),
            target,
            evidence,
        );
        match (messages, spec.baseline_messages) {
            (Some(m), b) => v.with_value(m as f64, None, b.map(|b| b as f64 + 1.0)),
            _ => v,
        }
    }

    pub(super) fn dlq(&self) -> Verdict {
        let spec = &self.cfg.streams.dlq;
        let m = &self.cfg.metrics;
        let target = format!(
            "{} stays at {} message(s); {}{{{}=\"{}\"}} = 0",
            spec.name,
            spec.baseline_messages
                .map(|b| b.to_string())
                .unwrap_or_else(|| "its baseline".into()),
            m.messages_counter,
            m.result_label,
            m.dlq_result
        );
        let (mut parts, messages) = self.baseline_growth(spec, "DLQ");
        let mut dlq_count = None;
        match self.counter() {
            Err(r) => parts.push(part(Status::Unknown, r.to_string())),
            Ok(ms) => {
                let n = ms.by_result.get(&m.dlq_result).copied().unwrap_or(0.0);
                dlq_count = Some(n);
                if n > 0.0 {
                    parts.push(part(
                        Status::Fail,
                        format!(
                            "{n} message(s) dead-lettered since the service started ({}=\"{}\")",
                            m.result_label, m.dlq_result
                        ),
                    ));
                } else if processed(ms) <= 0.0 {
                    parts.push(part(
                        Status::Pass,
                        format!("{NO_TRAFFIC}{}", filter_note(ms.counter.as_ref())),
                    ));
                } else {
                    parts.push(part(
                        Status::Pass,
                        format!(
                            "{}=\"{}\" count 0{}",
                            m.result_label,
                            m.dlq_result,
                            filter_note(ms.counter.as_ref())
                        ),
                    ));
                }
            }
        }
        let (status, mut evidence) = combine(parts);
        let grown = self.dlq_stream_growth();
        // One dead-lettered message lands in the stream and in the counter:
        // counted once, the larger of the two, as the DLQ spike counts it.
        let value = match (grown, dlq_count) {
            (Some(g), Some(n)) => Some((g as f64).max(n)),
            (g, n) => g.map(|g| g as f64).or(n),
        };
        if let (Some(g), Some(n), Some(v)) = (grown, dlq_count, value) {
            if g > 0 && n > 0.0 {
                evidence.push_str(&format!(
                    "; counted once: {v} dead-lettered (the larger of {} +{g} and the counter's {n}, never their sum)",
                    spec.name
                ));
            }
        }
        let observed = format!(
            "{} in {}, {} by counter",
            messages
                .map(|m| m.to_string())
                .unwrap_or_else(|| "?".into()),
            spec.name,
            dlq_count
                .map(|n| n.to_string())
                .unwrap_or_else(|| "?".into())
        );
        let v = Verdict::new(C::Dlq, status, observed, target, evidence);
        match value {
            Some(x) => v.with_value(x, None, Some(1.0)),
            None => v,
        }
    }

    /// Messages the DLQ stream gained past its baseline: by held messages
    /// and by sequence, the larger (expiry lowers the first, not the
    /// second). `None` when the stream was not seen or has no baseline.
    fn dlq_stream_growth(&self) -> Option<u64> {
        let spec = &self.cfg.streams.dlq;
        let Ok(Some(s)) = self.stream(self.last, &spec.name) else {
            return None;
        };
        let by_messages = spec.baseline_messages.map(|b| s.messages.saturating_sub(b));
        let by_seq = spec.baseline_last_seq.map(|b| s.last_seq.saturating_sub(b));
        match (by_messages, by_seq) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::evaluate::evaluate;
    use crate::evaluate::fixtures::*;
    use crate::sample::{ProbeFailure, ProbeKind};
    use crate::verdict::Status;

    #[test]
    fn dlq_growth_fails_dlq_even_with_metrics_down() {
        let c = cfg();
        let mut h = healthy_window(&c);
        if let Some(Ok(Some(s))) = h[1].streams.get_mut(&c.streams.dlq.name) {
            s.messages = 2;
            s.last_seq = 2;
        }
        h[1].metrics = Err(ProbeFailure::new(
            ProbeKind::Metrics,
            crate::sample::ProbeError::HttpStatus {
                url: "http://x/metrics".into(),
                status: "500".into(),
            },
        ));
        let s = statuses(&evaluate(&c, &h));
        assert_eq!(s["dlq"], Status::Fail);
        assert_eq!(s["service_up"], Status::Fail);
        assert_eq!(s["success_rate"], Status::Unknown);
        assert_eq!(s["legacy_idle"], Status::Pass);
    }

    #[test]
    fn dlq_counter_alone_fails_dlq_and_success_rate() {
        let c = cfg();
        let mut h = healthy_window(&c);
        for snap in &mut h {
            if let Ok(m) = &mut snap.metrics {
                m.by_result.insert("dlq".into(), 1.0);
            }
        }
        let v = evaluate(&c, &h);
        assert_eq!(
            not_passing(&v),
            vec![("dlq", Status::Fail), ("success_rate", Status::Fail)]
        );
    }

    #[test]
    fn a_dead_lettered_message_counts_once_the_larger_of_stream_and_counter() {
        let c = cfg();
        let base = c.streams.dlq.baseline_messages.unwrap_or(0);
        let dlq_value = |grown: u64, counted: f64| {
            let mut h = healthy_window(&c);
            for snap in &mut h {
                if let Some(Ok(Some(s))) = snap.streams.get_mut(&c.streams.dlq.name) {
                    s.messages = base + grown;
                    s.last_seq = base + grown;
                }
                if let Ok(m) = &mut snap.metrics {
                    m.by_result.insert("dlq".into(), counted);
                }
            }
            let v = evaluate(&c, &h);
            let d = v.iter().find(|v| v.id == crate::verdict::CriterionId::Dlq);
            d.map(|d| (d.value, d.evidence.clone())).expect("dlq")
        };
        let (value, evidence) = dlq_value(3, 3.0);
        assert_eq!(value, Some(3.0), "{evidence}");
        assert!(evidence.contains("counted once: 3"), "{evidence}");
        assert_eq!(dlq_value(1, 0.0).0, Some(1.0));
        assert_eq!(dlq_value(0, 2.0).0, Some(2.0));
        assert_eq!(dlq_value(49, 46.0).0, Some(49.0));
    }

    #[test]
    fn legacy_write_fails_only_legacy_idle() {
        let c = cfg();
        let mut h = healthy_window(&c);
        if let Some(Ok(Some(s))) = h[1].streams.get_mut(&c.streams.legacy.name) {
            s.messages = 56;
            s.last_seq = 56;
        }
        assert_eq!(
            not_passing(&evaluate(&c, &h)),
            vec![("legacy_idle", Status::Fail)]
        );
    }

    #[test]
    fn legacy_expiry_is_not_a_write() {
        let c = cfg();
        let mut h = healthy_window(&c);
        for snap in &mut h {
            if let Some(Ok(Some(s))) = snap.streams.get_mut(&c.streams.legacy.name) {
                s.messages = 40;
            }
        }
        assert_eq!(statuses(&evaluate(&c, &h))["legacy_idle"], Status::Pass);
    }
}
