//! Messages take the new path only: no fallback to the legacy stream in the
//! log or in /metrics (`fallback`), and every processed message came from the
//! expected stream (`stream_purity`).

use super::{combine, filter_note, part, pct, Ctx, NO_TRAFFIC};
use crate::verdict::{CriterionId as C, Status, Verdict};

impl Ctx<'_> {
    pub(super) fn fallback(&self) -> Verdict {
        let legacy = &self.cfg.streams.legacy.name;
        let target = "0 fallback events".to_string();
        let mut parts = Vec::new();
        let mut events = 0.0;
        // No [log]: /metrics' legacy series are the whole criterion.
        let log_path = self
            .cfg
            .log
            .as_ref()
            .map(|l| l.path.display().to_string())
            .unwrap_or_default();
        match &self.last.log {
            _ if self.cfg.log.is_none() => {}
            Err(f) => parts.push(part(Status::Unknown, f.to_string())),
            // Counted since the tail started: a fallback seen stays failing for
            // the soak, through rotations and while the log is unreadable.
            Ok(l) if l.fallback_total.max(l.fallback_count) > 0 => {
                let n = l.fallback_total.max(l.fallback_count);
                events += n as f64;
                parts.push(part(
                    Status::Fail,
                    format!(
                        "{n} fallback line(s) in {}; last: {}{}",
                        log_path,
                        l.last_fallback.as_deref().unwrap_or(""),
                        l.unreadable
                            .as_deref()
                            .map(|r| format!(" (now: {r})"))
                            .unwrap_or_default()
                    ),
                ));
            }
            Ok(l) if l.unreadable.is_some() => parts.push(part(
                Status::Unknown,
                l.unreadable.clone().unwrap_or_default(),
            )),
            // Behind after a burst: what is not read yet is not known clean.
            // Unknown rather than pass, so the verdict never claims unread lines.
            Ok(l) if l.backlog_bytes > 0 => parts.push(part(
                Status::Unknown,
                format!(
                    "catching up: {:.1} MiB of {} behind, no fallback line in the {} line(s) read so far",
                    l.backlog_bytes as f64 / (1024.0 * 1024.0),
                    log_path,
                    l.lines_total.max(l.lines_scanned)
                ),
            )),
            Ok(l) => parts.push(part(
                Status::Pass,
                format!(
                    "no fallback line in {} ({} lines scanned{})",
                    log_path,
                    l.lines_total.max(l.lines_scanned),
                    if l.ignored_total.max(l.ignored_count) > 0 {
                        format!(
                            ", {} candidate line(s) ignored",
                            l.ignored_total.max(l.ignored_count)
                        )
                    } else {
                        String::new()
                    }
                ),
            )),
        }
        match self.metrics(self.last) {
            Err(r) => parts.push(part(Status::Unknown, r.to_string())),
            Ok(ms) => {
                let active: Vec<&(String, f64)> =
                    ms.legacy_series.iter().filter(|(_, v)| *v > 0.0).collect();
                if let Some((series, v)) = active.first() {
                    events += active.iter().map(|(_, v)| v).sum::<f64>();
                    parts.push(part(
                        Status::Fail,
                        format!(
                            "{} series labelled with {legacy}, e.g. {series} = {v}",
                            active.len()
                        ),
                    ));
                } else if let Some((series, _)) = ms.legacy_series.first() {
                    parts.push(part(
                        Status::Warn,
                        format!("series labelled with {legacy} exists (value 0): {series}"),
                    ));
                } else {
                    parts.push(part(
                        Status::Pass,
                        format!("no /metrics series labelled with {legacy}"),
                    ));
                }
            }
        }
        let (status, evidence) = combine(parts);
        let observed = if status == Status::Unknown {
            "unknown".into()
        } else {
            format!("{events}")
        };
        Verdict::new(C::Fallback, status, observed, target, evidence).with_value(
            events,
            None,
            Some(1.0),
        )
    }

    pub(super) fn stream_purity(&self) -> Verdict {
        // Every stream a watched consumer lives on is a right one: a fleet
        // on AA_CORE_HOT and AA_VENDOR_HOT processes messages from both.
        let expected = self.cfg.consumers.streams();
        let shown = expected.join("\", \"");
        let target = format!(
            "100% of processed messages labelled {}=\"{shown}\"",
            self.cfg.metrics.stream_label
        );
        let ms = match self.counter() {
            Err(r) => return Verdict::unknown(C::StreamPurity, target, r.to_string()),
            Ok(ms) => ms,
        };
        let total: f64 = ms.by_stream.values().sum();
        if total <= 0.0 {
            // Zero events is not a wrong stream: nothing to judge, nothing wrong.
            return Verdict::new(
                C::StreamPurity,
                Status::Pass,
                "0 messages",
                target,
                format!("{NO_TRAFFIC}{}", filter_note(ms.counter.as_ref())),
            );
        }
        let is_expected = |k: &str| expected.contains(&k);
        let on: f64 = ms
            .by_stream
            .iter()
            .filter(|(k, _)| is_expected(k))
            .map(|(_, v)| *v)
            .sum();
        let ratio = on / total;
        let others: Vec<String> = ms
            .by_stream
            .iter()
            .filter(|(k, v)| !is_expected(k) && **v > 0.0)
            .map(|(k, v)| format!("{}={v}", if k.is_empty() { "(no label)" } else { k }))
            .collect();
        let status = if others.is_empty() {
            Status::Pass
        } else {
            Status::Fail
        };
        let on_text = expected.join(" or ");
        let evidence = if others.is_empty() {
            format!(
                "{on} of {total} messages on {on_text}{}",
                filter_note(ms.counter.as_ref())
            )
        } else {
            format!(
                "{on} of {total} on {on_text}; elsewhere: {}",
                others.join(", ")
            )
        };
        Verdict::new(C::StreamPurity, status, pct(ratio), target, evidence).with_value(
            ratio * 100.0,
            None,
            Some(100.0),
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::evaluate::evaluate;
    use crate::evaluate::fixtures::*;
    use crate::sample::LogState;
    use crate::verdict::{CriterionId as C, Status};

    #[test]
    fn fallback_from_log_or_metrics() {
        let c = cfg();
        let mut h = healthy_window(&c);
        h[1].log = Ok(LogState {
            fallback_count: 1,
            last_fallback: Some("falling back to ATHLETE_ALLY_EVENTS".into()),
            ..Default::default()
        });
        assert_eq!(
            not_passing(&evaluate(&c, &h)),
            vec![("fallback", Status::Fail)]
        );

        let mut h = healthy_window(&c);
        if let Ok(m) = &mut h[1].metrics {
            m.legacy_series.push((
                "normalize_hrv_messages_total{stream=\"ATHLETE_ALLY_EVENTS\"}".into(),
                3.0,
            ));
            m.by_stream.insert("ATHLETE_ALLY_EVENTS".into(), 3.0);
        }
        let v = evaluate(&c, &h);
        assert_eq!(
            not_passing(&v),
            vec![("fallback", Status::Fail), ("stream_purity", Status::Fail)]
        );
    }

    #[test]
    fn a_fallback_seen_earlier_stays_failing_and_a_backlog_is_unknown() {
        let c = cfg();
        // Nothing new this cycle, but one seen before (another file, before a restart).
        let mut h = healthy_window(&c);
        h[1].log = Ok(LogState {
            fallback_total: 1,
            last_fallback: Some("falling back to ATHLETE_ALLY_EVENTS".into()),
            unreadable: Some("log file x does not exist".into()),
            ..Default::default()
        });
        let v = evaluate(&c, &h);
        assert_eq!(not_passing(&v), vec![("fallback", Status::Fail)]);
        let f = v.iter().find(|v| v.id == C::Fallback).expect("fallback");
        assert!(f.evidence.contains("does not exist"), "{}", f.evidence);

        // Behind after a burst, nothing seen yet: unknown, with how far behind.
        let mut h = healthy_window(&c);
        h[1].log = Ok(LogState {
            lines_scanned: 10,
            backlog_bytes: 3 << 20,
            ..Default::default()
        });
        let v = evaluate(&c, &h);
        assert_eq!(not_passing(&v), vec![("fallback", Status::Unknown)]);
        let f = v.iter().find(|v| v.id == C::Fallback).expect("fallback");
        assert!(
            f.evidence.contains("catching up: 3.0 MiB"),
            "{}",
            f.evidence
        );
    }
}
