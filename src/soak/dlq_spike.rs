//! The DLQ spike rule, counted over real time.
//!
//! The seed's rollback trigger is "DLQ spike > 10 msg/min": more than ten
//! messages dead-lettered within one minute. The first version scaled the
//! growth between two consecutive cycles to a minute, so at a 10 s interval
//! two poison messages read as 12/min and fired the production rollback (at
//! 1 s, one message read as 60/min). Here the rule counts messages between
//! real samples, never extrapolated:
//!
//! - A spike is proven by two samples at most `window` apart whose count
//!   (the growth from the older to the newer) exceeds the limit. The count
//!   between two samples can only undercount what happened in any window
//!   that holds them both, so it is always safe to act on, from the soak's
//!   first cycle on: a burst in the first seconds after T0 is acted on at
//!   the first cycle that sees it, not one window later.
//! - Whatever lies between the two samples does not matter: a sampling gap
//!   or a failover between them only hides resets and so can only lower the
//!   count. A gap longer than the window simply leaves no pair of samples
//!   to prove anything across it.
//! - At cycle `k` the count starts at the earliest sample within `window`
//!   of it (growth only accumulates, so that pair gives the largest count).
//! - Two sources count the same events: the DLQ stream's `last_seq` (every
//!   message ever written to it, unaffected by expiry) and the service's
//!   dead-letter counter (reset-aware). The larger of the two is taken; they
//!   are never added, so one message seen by both counts once.
//!
//! Pure: cycle records in, a count out, so replays and the daemon agree.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::soak::record::CycleRecord;

/// The rule's settings, from `[watch]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpikeRule {
    /// Trailing window of real time (seed: 1 minute).
    pub window: Duration,
    /// The rate: more than `per_min` x window / 1 min messages is a spike.
    pub per_min: f64,
    /// The daemon's `max_gap`: kept for the record (a gap no longer stops a
    /// spike from being proven, see the module docs).
    pub max_gap: Duration,
}

impl SpikeRule {
    /// Messages the window may hold without being a spike (10 for the seed).
    pub fn limit(&self) -> f64 {
        self.per_min * self.window.as_secs_f64() / 60.0
    }
}

/// Messages dead-lettered between two samples at most one window apart.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowCount {
    /// Messages counted (the larger of the two sources).
    pub count: u64,
    /// Which source gave the count: the stream's `last_seq` or the counter.
    pub source: &'static str,
    /// The sample the count starts from (within one window of `to`).
    pub from: DateTime<Utc>,
    /// The newest sample.
    pub to: DateTime<Utc>,
}

/// Why nothing can be counted at a cycle (and so it can never be a spike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotCovered {
    /// No earlier sample lies within one window of this one (the soak's
    /// first cycle, or the first after a gap longer than the window).
    TooEarly,
    /// Neither source was seen twice within the window.
    NoDlqSample,
}

impl std::fmt::Display for NotCovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotCovered::TooEarly => "no earlier sample lies within the window",
            NotCovered::NoDlqSample => "the DLQ was not seen twice within the window",
        })
    }
}

/// Growth of a cumulative value over `vals` (oldest first; samples without
/// the value are skipped): a value lower than the one before is a reset (a
/// service restart, a stream recreated), after which everything counted is
/// new. `None` unless the value was seen at least twice.
fn growth(vals: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut prev: Option<f64> = None;
    let mut seen = 0u32;
    let mut total = 0.0;
    for y in vals.flatten() {
        if !y.is_finite() || y < 0.0 {
            return None;
        }
        if let Some(x) = prev {
            total += if y >= x { y - x } else { y };
        }
        prev = Some(y);
        seen += 1;
    }
    (seen >= 2).then_some(total)
}

/// Messages dead-lettered between the earliest sample within one window of
/// cycle `k` and cycle `k` (`cycles` oldest first), or why none can be counted.
pub fn window_count(
    cycles: &[CycleRecord],
    k: usize,
    rule: &SpikeRule,
) -> Result<WindowCount, NotCovered> {
    let Some(now) = cycles.get(k) else {
        return Err(NotCovered::TooEarly);
    };
    let window = chrono::Duration::from_std(rule.window).unwrap_or(chrono::Duration::MAX);
    let head = &cycles[..=k];
    // The earliest sample at most one window before this one: every sample
    // from there on lies within one window of `now`.
    let b = head.partition_point(|c| now.at.signed_duration_since(c.at) > window);
    if b >= k {
        // Only this sample lies within the window: nothing can be counted.
        return Err(NotCovered::TooEarly);
    }
    let inside = &head[b..];
    let by_seq = growth(inside.iter().map(|c| c.dlq_last_seq.map(|v| v as f64)))
        .filter(|_| now.dlq_last_seq.is_some());
    let by_counter =
        growth(inside.iter().map(|c| c.dlq_counter)).filter(|_| now.dlq_counter.is_some());
    let (count, source) = match (by_seq, by_counter) {
        (None, None) => return Err(NotCovered::NoDlqSample),
        (Some(s), Some(c)) if c > s => (c, "dead-letter counter"),
        (Some(s), _) => (s, "DLQ stream last_seq"),
        (None, Some(c)) => (c, "dead-letter counter"),
    };
    Ok(WindowCount {
        count: count.round() as u64,
        source,
        from: inside[0].at,
        to: now.at,
    })
}

/// True when the window ending at cycle `k` holds more messages than the rule allows.
pub fn is_spike(cycles: &[CycleRecord], k: usize, rule: &SpikeRule) -> bool {
    window_count(cycles, k, rule).is_ok_and(|w| w.count as f64 > rule.limit())
}

/// The spike at the newest cycle, described for the trigger and alerts.
pub fn describe_spike(cycles: &[CycleRecord], rule: &SpikeRule) -> Option<String> {
    let k = cycles.len().checked_sub(1)?;
    let w = window_count(cycles, k, rule).ok()?;
    (w.count as f64 > rule.limit()).then(|| {
        format!(
            "{} message(s) dead-lettered within {} ({} to {}, by {}); the limit is {} per {}",
            w.count,
            humantime::format_duration(Duration::from_secs(
                (w.to - w.from).num_seconds().max(0) as u64
            )),
            w.from.format("%H:%M:%S"),
            w.to.format("%H:%M:%S"),
            w.source,
            fmt_limit(rule.limit()),
            humantime::format_duration(rule.window),
        )
    })
}

fn fmt_limit(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 2, 17, 8, 59)
            .single()
            .expect("valid")
    }

    fn rule(interval_secs: u64) -> SpikeRule {
        SpikeRule {
            window: Duration::from_secs(60),
            per_min: 10.0,
            max_gap: Duration::from_secs(interval_secs * 3),
        }
    }

    fn cycle(at_ms: i64, seq: Option<u64>, counter: Option<f64>) -> CycleRecord {
        CycleRecord {
            at: t0() + chrono::Duration::milliseconds(at_ms),
            status: vec![],
            value: vec![],
            evidence: vec![],
            probe_errors: Default::default(),
            process_start: None,
            processed_total: None,
            dlq_messages: seq,
            lag: None,
            dlq_last_seq: seq,
            dlq_counter: counter,
            consumers: vec![],
            counts: Default::default(),
        }
    }

    /// Cycles every `interval` s for `secs` s; `burst` messages land just
    /// after `at` s (seen by both sources from the next cycle on).
    fn history(interval: u64, secs: u64, bursts: &[(u64, u64)]) -> Vec<CycleRecord> {
        (0..=secs / interval)
            .map(|i| {
                let t = i * interval;
                let n: u64 = bursts.iter().filter(|(at, _)| *at < t).map(|b| b.1).sum();
                cycle((t * 1000) as i64, Some(1 + n), Some(n as f64))
            })
            .collect()
    }

    fn spikes(cycles: &[CycleRecord], r: &SpikeRule) -> Vec<usize> {
        (0..cycles.len())
            .filter(|&k| is_spike(cycles, k, r))
            .collect()
    }

    #[test]
    fn one_two_or_ten_messages_are_never_a_spike_at_10s_or_1s() {
        for interval in [10, 1] {
            for n in [1, 2, 10] {
                // In one interval, at the start of the soak and later on.
                for at in [0, 300] {
                    let h = history(interval, 900, &[(at, n)]);
                    assert!(
                        spikes(&h, &rule(interval)).is_empty(),
                        "interval {interval}s, {n} messages at {at}s"
                    );
                }
            }
        }
    }

    #[test]
    fn eleven_within_a_minute_is_a_spike_at_the_first_cycle_that_sees_them() {
        for interval in [10, 1] {
            let r = rule(interval);
            let h = history(interval, 900, &[(300, 11)]);
            let s = spikes(&h, &r);
            assert!(!s.is_empty(), "interval {interval}s");
            // Spiking from the first cycle that saw them, for one window.
            let first = h[s[0]].at - t0();
            assert!(first.num_seconds() > 300 && first.num_seconds() <= 300 + interval as i64);
            let last = h[*s.last().expect("some")].at - t0();
            assert!(last.num_seconds() <= 300 + 60, "{last}");
            // Also in the very first seconds of the soak: no history is
            // needed, the first cycle after the burst proves it.
            let early = history(interval, 120, &[(0, 11)]);
            let s = spikes(&early, &r);
            assert_eq!(
                (early[s[0]].at - t0()).num_seconds(),
                interval as i64,
                "interval {interval}s: acted on at the first cycle that sees it"
            );
            // The soak's first cycle alone can never be a spike.
            assert!(!is_spike(&early, 0, &r));
        }
    }

    #[test]
    fn messages_spread_over_more_than_a_minute_are_not_a_spike() {
        for interval in [10, 1] {
            // 6 + 6 seventy seconds apart: never 12 within one minute.
            let h = history(interval, 900, &[(100, 6), (170, 6)]);
            assert!(spikes(&h, &rule(interval)).is_empty(), "{interval}");
            // 6 + 6 forty seconds apart: 12 within one minute.
            let h = history(interval, 900, &[(100, 6), (140, 6)]);
            assert!(!spikes(&h, &rule(interval)).is_empty(), "{interval}");
        }
    }

    #[test]
    fn a_gap_shorter_than_the_window_still_proves_a_spike_longer_does_not() {
        let r = rule(10);
        // soakwatch was down (or failing over) from 150 s to 180 s; 50
        // messages landed at 170 s. The samples at 120 s and 180 s are 60 s
        // apart: the burst is proven at the first cycle after the gap.
        let mut h = history(10, 300, &[(170, 50)]);
        h.retain(|c| !(150..180).contains(&(c.at - t0()).num_seconds()));
        let at = |h: &[CycleRecord], s: i64| {
            h.iter()
                .position(|c| (c.at - t0()).num_seconds() == s)
                .expect("sampled")
        };
        let k = at(&h, 180);
        let w = window_count(&h, k, &r).expect("counted across the gap");
        assert_eq!((w.count, (w.from - t0()).num_seconds()), (50, 120));
        assert!(is_spike(&h, k, &r));
        // Down from 150 s to 230 s: no two samples within a minute hold the
        // burst, so nothing is proven (and nothing is invented).
        let mut h = history(10, 300, &[(200, 50)]);
        h.retain(|c| !(150..230).contains(&(c.at - t0()).num_seconds()));
        assert!(spikes(&h, &r).is_empty());
        assert_eq!(window_count(&h, at(&h, 230), &r), Err(NotCovered::TooEarly));
        let blind: Vec<CycleRecord> = history(10, 300, &[(100, 50)])
            .into_iter()
            .map(|mut c| {
                c.dlq_last_seq = None;
                c.dlq_counter = None;
                c
            })
            .collect();
        assert_eq!(window_count(&blind, 20, &r), Err(NotCovered::NoDlqSample));
    }

    #[test]
    fn a_source_missing_at_the_window_start_counts_from_its_first_sample() {
        let r = rule(10);
        let mut h = history(10, 120, &[(55, 12)]);
        // The stream was unreadable for the first samples of the window.
        for c in h.iter_mut().take(5) {
            c.dlq_last_seq = None;
            c.dlq_counter = None;
        }
        let k = h.len() - 1 - 5; // 70 s: sees the burst, window from 10 s
        let w = window_count(&h, k, &r).expect("counted from 50 s");
        assert_eq!(w.count, 12);
    }

    #[test]
    fn the_two_sources_are_never_added() {
        // The stream sees the messages a cycle before the counter does.
        let r = rule(10);
        let mut h = history(10, 300, &[]);
        for c in h.iter_mut() {
            let s = (c.at - t0()).num_seconds();
            c.dlq_last_seq = Some(1 + if s > 100 { 8 } else { 0 });
            c.dlq_counter = Some(if s > 110 { 8.0 } else { 0.0 });
        }
        let k = h
            .iter()
            .position(|c| (c.at - t0()).num_seconds() == 150)
            .expect("150");
        let w = window_count(&h, k, &r).expect("covered");
        assert_eq!(w.count, 8);
    }

    #[test]
    fn a_counter_reset_counts_what_came_after_it() {
        let r = rule(10);
        let mut h = history(10, 300, &[]);
        for c in h.iter_mut() {
            let s = (c.at - t0()).num_seconds();
            c.dlq_last_seq = None;
            // 40 before the restart at 120 s, then 12 new ones after it.
            c.dlq_counter = Some(if s < 120 {
                40.0
            } else if s < 140 {
                0.0
            } else {
                12.0
            });
        }
        let k = h
            .iter()
            .position(|c| (c.at - t0()).num_seconds() == 150)
            .expect("150");
        assert_eq!(window_count(&h, k, &r).expect("covered").count, 12);
        assert!(is_spike(&h, k, &r));
    }

    #[test]
    fn an_odd_interval_never_counts_more_than_the_window() {
        // At 7 s the earliest sample inside the window is 56 s back.
        let r = SpikeRule {
            max_gap: Duration::from_secs(21),
            ..rule(7)
        };
        let h = history(7, 300, &[(100, 11)]);
        for k in 0..h.len() {
            if let Ok(w) = window_count(&h, k, &r) {
                assert!(w.to - w.from <= chrono::Duration::seconds(60));
            }
        }
        assert!(!spikes(&h, &r).is_empty());
        let text = describe_spike(&h[..16], &r).expect("spike at 105 s");
        assert!(
            text.starts_with("11 message(s) dead-lettered within"),
            "{text}"
        );
        assert!(text.contains("the limit is 10 per 1m"), "{text}");
    }
}
