//! The DLQ spike rule, counted over real time.
//!
//! The seed's rollback trigger is "DLQ spike > 10 msg/min": more than ten
//! messages dead-lettered within one minute. The first version scaled the
//! growth between two consecutive cycles to a minute, so at a 10 s interval
//! two poison messages read as 12/min and fired the production rollback (at
//! 1 s, one message read as 60/min). Here the rule counts messages in a
//! trailing window of real time, from samples only:
//!
//! - The window at cycle `k` is `(t_k - window, t_k]`. It is *covered* only
//!   when a sample exists at or before its start and no gap (longer than
//!   `max_gap`) lies inside it; an uncovered window is never a spike (the
//!   first minute of a soak, the minute after soakwatch itself was down).
//! - The count is the growth between the earliest sample inside the window
//!   and the newest one, so it never spans more than the window: a count
//!   above the limit proves more than that many messages in one window. It
//!   is never extrapolated from a shorter span.
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
    /// A longer silence between samples breaks coverage.
    pub max_gap: Duration,
}

impl SpikeRule {
    /// Messages the window may hold without being a spike (10 for the seed).
    pub fn limit(&self) -> f64 {
        self.per_min * self.window.as_secs_f64() / 60.0
    }
}

/// Messages dead-lettered within one covered window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowCount {
    /// Messages counted (the larger of the two sources).
    pub count: u64,
    /// Which source gave the count: the stream's `last_seq` or the counter.
    pub source: &'static str,
    /// The sample the count starts from (inside the window).
    pub from: DateTime<Utc>,
    /// The newest sample.
    pub to: DateTime<Utc>,
}

/// Why a window cannot be judged (and so can never be a spike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotCovered {
    /// No sample at or before the window's start yet.
    TooEarly,
    /// A gap in sampling inside the window.
    Gap,
    /// Neither source was seen at both ends of the window.
    NoDlqSample,
}

impl std::fmt::Display for NotCovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotCovered::TooEarly => "the window is not covered by samples yet",
            NotCovered::Gap => "a sampling gap lies inside the window",
            NotCovered::NoDlqSample => "the DLQ was not seen at both ends of the window",
        })
    }
}

/// Growth of a cumulative value over `vals` (oldest first, gaps skipped): a
/// value lower than the one before is a reset (a service restart, a stream
/// recreated), after which everything counted is new.
fn growth(vals: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut prev: Option<f64> = None;
    let mut first = true;
    let mut total = 0.0;
    for v in vals {
        match (first, v) {
            (true, None) => return None,
            (_, None) => continue,
            (_, Some(y)) if !y.is_finite() || y < 0.0 => return None,
            (_, Some(y)) => {
                if let Some(x) = prev {
                    total += if y >= x { y - x } else { y };
                }
                prev = Some(y);
            }
        }
        first = false;
    }
    prev.map(|_| total)
}

/// Messages dead-lettered within the window ending at cycle `k` (`cycles`
/// oldest first), or why that window cannot be judged.
pub fn window_count(
    cycles: &[CycleRecord],
    k: usize,
    rule: &SpikeRule,
) -> Result<WindowCount, NotCovered> {
    let Some(now) = cycles.get(k) else {
        return Err(NotCovered::TooEarly);
    };
    let max_gap = crate::duration::delta(rule.max_gap);
    let start = crate::duration::before(now.at, rule.window);
    let head = &cycles[..=k];
    // Earliest sample inside the window, and the one that covers its start.
    let b = head.partition_point(|c| c.at < start);
    let cover = if head.get(b).is_some_and(|c| c.at == start) {
        b
    } else if b > 0 {
        b - 1
    } else {
        return Err(NotCovered::TooEarly);
    };
    if head[cover..]
        .windows(2)
        .any(|pair| pair[1].at - pair[0].at > max_gap)
    {
        return Err(NotCovered::Gap);
    }
    if b >= k {
        // Only the newest sample lies inside: nothing can have been counted.
        return Err(NotCovered::TooEarly);
    }
    let inside = &head[b..];
    let by_seq = growth(inside.iter().map(|c| c.dlq_last_seq.map(|v| v as f64)))
        .filter(|_| inside.last().is_some_and(|c| c.dlq_last_seq.is_some()));
    let by_counter = growth(inside.iter().map(|c| c.dlq_counter))
        .filter(|_| inside.last().is_some_and(|c| c.dlq_counter.is_some()));
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
    fn eleven_within_a_minute_is_a_spike_once_the_window_is_covered() {
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
            // Also in the very first minute, once a full minute is sampled.
            let early = history(interval, 120, &[(0, 11)]);
            let s = spikes(&early, &r);
            assert_eq!(
                (early[s[0]].at - t0()).num_seconds(),
                60,
                "interval {interval}s: not before the window is covered"
            );
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
    fn a_gap_or_missing_dlq_samples_leave_the_window_uncovered() {
        let r = rule(10);
        let mut h = history(10, 300, &[(200, 50)]);
        // soakwatch was down from 150 s to 210 s.
        h.retain(|c| {
            let s = (c.at - t0()).num_seconds();
            !(150..210).contains(&s)
        });
        let k = h.len() - 1;
        assert!(h.iter().enumerate().all(|(i, _)| !is_spike(&h, i, &r)));
        assert_eq!(
            window_count(
                &h,
                h.iter()
                    .position(|c| (c.at - t0()).num_seconds() == 210)
                    .expect("210"),
                &r
            ),
            Err(NotCovered::Gap)
        );
        assert!(window_count(&h, k, &r).is_ok());
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
