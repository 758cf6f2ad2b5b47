//! Chart series of bounded size, however long the soak.
//!
//! A 48 h soak at 10 s is 17,280 samples per series, and a report chart is
//! at most a thousand pixels wide. The daemon keeps each series as at most
//! [`MAX_BUCKETS`] time buckets, each holding its first, lowest, highest and
//! last sample (M4, the reduction the chart renderer applies anyway), so
//! peaks survive (a one-sample DLQ spike is still drawn) while memory stays
//! flat. Until the cap is reached every sample is its own bucket: short
//! soaks are drawn from every sample, as before.

use chrono::{DateTime, Utc};

/// Buckets kept per series; on overflow the bucket width doubles and
/// neighbours merge, so a series never holds more.
pub const MAX_BUCKETS: usize = 1024;

/// One sample: when, and its value.
type Point = (DateTime<Utc>, f64);

/// First, lowest, highest and last sample within one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bucket {
    index: i64,
    first: Point,
    low: Point,
    high: Point,
    last: Point,
}

impl Bucket {
    fn single(index: i64, p: Point) -> Bucket {
        Bucket {
            index,
            first: p,
            low: p,
            high: p,
            last: p,
        }
    }

    fn absorb(&mut self, other: &Bucket) {
        if other.first.0 < self.first.0 {
            self.first = other.first;
        }
        if other.last.0 >= self.last.0 {
            self.last = other.last;
        }
        if other.low.1 < self.low.1 {
            self.low = other.low;
        }
        if other.high.1 > self.high.1 {
            self.high = other.high;
        }
    }

    /// Its distinct samples in time order (one to four).
    fn points(&self, out: &mut Vec<Point>) {
        let mut pts = [self.first, self.low, self.high, self.last];
        pts.sort_by_key(|p| p.0);
        let start = out.len();
        for p in pts {
            if out[start..].last().is_none_or(|q| q.0 != p.0) {
                out.push(p);
            }
        }
    }
}

/// A time series reduced to at most [`MAX_BUCKETS`] M4 buckets.
#[derive(Debug, Clone, Default)]
pub struct BoundedSeries {
    origin: Option<DateTime<Utc>>,
    /// Bucket width in milliseconds; 0 while every sample is its own bucket.
    width_ms: i64,
    buckets: Vec<Bucket>,
    /// Samples seen (also those merged away).
    seen: u64,
}

impl BoundedSeries {
    /// Adds a sample (samples arrive oldest first; a non-finite one is kept
    /// as the renderer skips it, but never becomes a bucket's low or high).
    pub fn push(&mut self, at: DateTime<Utc>, value: f64) {
        self.seen += 1;
        if !value.is_finite() {
            return;
        }
        let origin = *self.origin.get_or_insert(at);
        let index = if self.width_ms == 0 {
            // Raw: one bucket per sample.
            self.buckets.last().map_or(0, |b| b.index + 1)
        } else {
            (at - origin).num_milliseconds().max(0) / self.width_ms
        };
        match self.buckets.last_mut() {
            Some(b) if self.width_ms > 0 && b.index == index => {
                b.absorb(&Bucket::single(index, (at, value)))
            }
            _ => self.buckets.push(Bucket::single(index, (at, value))),
        }
        if self.buckets.len() > MAX_BUCKETS {
            self.compact(at);
        }
    }

    /// Doubles the bucket width (or leaves raw mode) and merges neighbours.
    fn compact(&mut self, newest: DateTime<Utc>) {
        let Some(origin) = self.origin else {
            return;
        };
        let span_ms = (newest - origin).num_milliseconds().max(1);
        // Raw mode ends with buckets that fill half the cap.
        let half = (MAX_BUCKETS / 2) as i64;
        let mut width = if self.width_ms == 0 {
            (span_ms + half - 1) / half
        } else {
            self.width_ms * 2
        };
        loop {
            let mut merged: Vec<Bucket> = Vec::with_capacity(MAX_BUCKETS);
            for b in &self.buckets {
                let index = (b.first.0 - origin).num_milliseconds().max(0) / width;
                match merged.last_mut() {
                    Some(m) if m.index == index => m.absorb(b),
                    _ => merged.push(Bucket { index, ..*b }),
                }
            }
            if merged.len() <= MAX_BUCKETS {
                self.buckets = merged;
                self.width_ms = width;
                return;
            }
            width *= 2;
        }
    }

    /// The samples to draw, oldest first: every sample while under the cap,
    /// else up to four per bucket.
    pub fn points(&self) -> Vec<(DateTime<Utc>, f64)> {
        let mut out =
            Vec::with_capacity(self.buckets.len() * if self.width_ms > 0 { 4 } else { 1 });
        for b in &self.buckets {
            b.points(&mut out);
        }
        out
    }

    /// Bucket width (zero while every sample is kept).
    pub fn resolution(&self) -> chrono::Duration {
        chrono::Duration::milliseconds(self.width_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 2, 0, 0, 0)
            .single()
            .expect("valid")
            + chrono::Duration::seconds(secs)
    }

    #[test]
    fn short_series_keep_every_sample() {
        let mut s = BoundedSeries::default();
        for k in 0..500 {
            s.push(t(k * 10), k as f64);
        }
        let pts = s.points();
        assert_eq!(pts.len(), 500);
        assert_eq!(pts[499], (t(4990), 499.0));
        assert_eq!(s.resolution(), chrono::Duration::zero());
    }

    #[test]
    fn a_48h_series_stays_bounded_and_keeps_its_one_sample_peak() {
        let mut s = BoundedSeries::default();
        let n = 17_280;
        for k in 0..n {
            let v = if k == 12_345 { 500.0 } else { (k % 7) as f64 };
            s.push(t(k * 10), v);
        }
        let pts = s.points();
        assert!(pts.len() <= 4 * MAX_BUCKETS, "{}", pts.len());
        assert!(pts.len() > MAX_BUCKETS, "{}", pts.len());
        assert!(pts.contains(&(t(12_345 * 10), 500.0)));
        // Time order, first and last samples kept.
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(pts[0], (t(0), 0.0));
        assert_eq!(
            pts.last().copied(),
            Some((t((n - 1) * 10), ((n - 1) % 7) as f64))
        );
        assert!(s.resolution() > chrono::Duration::zero());
        assert!(s.resolution() < chrono::Duration::minutes(10));
    }

    #[test]
    fn non_finite_samples_are_not_drawn() {
        let mut s = BoundedSeries::default();
        s.push(t(0), f64::NAN);
        s.push(t(10), 1.0);
        assert_eq!(s.points(), vec![(t(10), 1.0)]);
    }
}
