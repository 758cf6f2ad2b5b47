//! How well messages are processed, from the service's /metrics: the share that
//! succeed (`success_rate`) and the latency quantile (`p95_latency`).

use super::{filter_note, pct, Ctx, NO_TRAFFIC};
use crate::histogram;
use crate::sample::{MetricsState, Snapshot};
use crate::verdict::{CriterionId as C, Status, Verdict};

/// Fewest observations in a window for its own latency quantile.
const MIN_WINDOW_OBSERVATIONS: f64 = 20.0;

impl Ctx<'_> {
    /// (success, counted) totals from one metrics sample.
    fn success_counts(&self, ms: &MetricsState) -> (f64, f64) {
        let m = &self.cfg.metrics;
        let success = ms.by_result.get(&m.success_result).copied().unwrap_or(0.0);
        let counted: f64 = ms
            .by_result
            .iter()
            .filter(|(k, _)| !m.uncounted_results.contains(k))
            .map(|(_, v)| v)
            .sum();
        (success, counted)
    }

    pub(super) fn success_rate(&self, history: &[Snapshot]) -> Verdict {
        let min = self.cfg.criteria.success_rate_min;
        let target = format!(">= {}", pct(min));
        let ms = match self.counter() {
            Err(r) => return Verdict::unknown(C::SuccessRate, target, r.to_string()),
            Ok(ms) => ms,
        };
        let (success, counted) = self.success_counts(ms);
        if counted <= 0.0 {
            // Zero events (a fresh restart, quiet hours): no failure to count.
            return Verdict::new(
                C::SuccessRate,
                Status::Pass,
                "n/a (0 messages)",
                target,
                format!("{NO_TRAFFIC}{}", filter_note(ms.counter.as_ref())),
            );
        }
        let rate = success / counted;
        let mut evidence = format!(
            "{success}/{counted} since the service started{}",
            filter_note(ms.counter.as_ref())
        );
        // Over a window, the same ratio from increases (across counter resets).
        let series: Vec<(f64, f64)> = history
            .iter()
            .filter_map(|s| s.metrics.as_ref().ok().map(|m| self.success_counts(m)))
            .collect();
        if series.len() >= 2 {
            let (ds, _) =
                histogram::counter_increase(&series.iter().map(|x| x.0).collect::<Vec<_>>());
            let (dc, _) =
                histogram::counter_increase(&series.iter().map(|x| x.1).collect::<Vec<_>>());
            if dc > 0.0 {
                evidence.push_str(&format!("; {ds}/{dc} in the window"));
            }
        }
        let status = if rate >= min {
            Status::Pass
        } else {
            Status::Fail
        };
        Verdict::new(C::SuccessRate, status, pct(rate), target, evidence).with_value(
            rate * 100.0,
            None,
            Some(min * 100.0),
        )
    }

    pub(super) fn p95_latency(&self) -> Verdict {
        let cr = &self.cfg.criteria;
        let q = cr.latency_quantile;
        let max_s = cr.p95_max.as_secs_f64();
        let target = format!(
            "p{} < {}",
            (q * 100.0).round(),
            humantime::format_duration(cr.p95_max)
        );
        let Some(name) = &self.cfg.metrics.latency_histogram else {
            return Verdict::new(
                C::P95Latency,
                Status::NotConfigured,
                "n/a",
                target,
                "no latency histogram configured (metrics.latency_histogram)",
            );
        };
        let ms = match self.metrics(self.last) {
            Err(r) => return Verdict::unknown(C::P95Latency, target, r.to_string()),
            Ok(ms) => ms,
        };
        if let Some(f) = &ms.latency {
            if let Some(reason) = f.unusable() {
                return Verdict::unknown(C::P95Latency, target, reason);
            }
            if f.declared_empty() {
                return Verdict::new(
                    C::P95Latency,
                    Status::Pass,
                    "n/a (0 observations)",
                    target,
                    NO_TRAFFIC,
                );
            }
        }
        let Some(buckets) = &ms.histogram else {
            return Verdict::unknown(
                C::P95Latency,
                target,
                format!("histogram {name} not found in /metrics"),
            );
        };
        // Prefer the window's own observations; with no traffic in the window
        // (or a reset), the cumulative histogram since start still tells.
        let mut scope = "since the service started";
        let mut use_buckets = buckets.clone();
        if let Ok(first) = self.metrics(self.first) {
            if let Some(fb) = &first.histogram {
                if let Some(d) = histogram::delta(fb, buckets) {
                    // A quantile of a handful of observations is noise: one slow
                    // message is "p95". Below that, judge the cumulative histogram.
                    if d.last().is_some_and(|(_, c)| *c >= MIN_WINDOW_OBSERVATIONS) {
                        use_buckets = d;
                        scope = "in the window";
                    }
                }
            }
        }
        let count = use_buckets.last().map(|(_, c)| *c).unwrap_or(0.0);
        let Some(v) = histogram::quantile(q, &use_buckets) else {
            if count == 0.0 {
                // Series exist with zero observations: zero events, as above.
                return Verdict::new(
                    C::P95Latency,
                    Status::Pass,
                    "n/a (0 observations)",
                    target,
                    format!("{NO_TRAFFIC}{}", filter_note(ms.latency.as_ref())),
                );
            }
            return Verdict::unknown(
                C::P95Latency,
                target,
                format!("histogram {name} has no +Inf bucket or no finite bucket to interpolate"),
            );
        };
        // Too few observations to speak of a p95: over target is a warning.
        let few = count < MIN_WINDOW_OBSERVATIONS;
        let status = if v < max_s {
            Status::Pass
        } else if few {
            Status::Warn
        } else {
            Status::Fail
        };
        Verdict::new(
            C::P95Latency,
            status,
            format!("{:.1} ms", v * 1000.0),
            target,
            format!(
                "p{} from {count} observations {scope} (bucket interpolation){}{}",
                (q * 100.0).round(),
                if few { "; too few to judge a tail" } else { "" },
                filter_note(ms.latency.as_ref())
            ),
        )
        .with_value(v * 1000.0, None, Some(max_s * 1000.0))
    }
}

#[cfg(test)]
mod tests {
    use crate::evaluate::evaluate;
    use crate::evaluate::fixtures::*;
    use crate::verdict::Status;

    #[test]
    fn slow_processing_fails_p95_from_window_delta() {
        let c = cfg();
        let mut h = healthy_window(&c);
        // The window's 30 new observations all took more than 0.5 s.
        if let Ok(m) = &mut h[1].metrics {
            m.histogram = Some(vec![
                (0.05, 90.0),
                (0.1, 100.0),
                (0.5, 100.0),
                (f64::INFINITY, 130.0),
            ]);
        }
        let v = evaluate(&c, &h);
        assert_eq!(not_passing(&v), vec![("p95_latency", Status::Fail)]);
        assert!(v[9].evidence.contains("in the window"), "{}", v[9].evidence);
    }

    #[test]
    fn a_slow_tail_of_a_few_messages_only_warns() {
        let c = cfg();
        let mut snap = healthy(&c, 0, 3.0);
        if let Ok(m) = &mut snap.metrics {
            m.histogram = Some(vec![
                (0.05, 2.0),
                (0.5, 2.0),
                (1.0, 3.0),
                (f64::INFINITY, 3.0),
            ]);
        }
        let v = evaluate(&c, &[snap]);
        assert_eq!(v[9].status, Status::Warn, "{:?}", v[9]);
        assert!(v[9].evidence.contains("too few"), "{}", v[9].evidence);
    }

    #[test]
    fn histogram_not_configured_is_reported_as_such() {
        let mut c = cfg();
        c.metrics.latency_histogram = None;
        let v = evaluate(&c, &healthy_window(&c));
        assert_eq!(
            not_passing(&v),
            vec![("p95_latency", Status::NotConfigured)]
        );
        assert_eq!(crate::verdict::overall(&v), Status::Pass);
    }
}
