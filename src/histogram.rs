//! Quantiles from cumulative Prometheus histogram buckets, windowed bucket
//! deltas, and counter increases across restarts.
//!
//! Soak verdicts such as "p95 handler latency stays under 500ms" are computed
//! from scraped `_bucket` / `_total` series without a Prometheus server, and
//! must be reproducible when recorded samples are replayed. So the PromQL
//! semantics we rely on (`histogram_quantile`, `increase`) are reimplemented
//! here as pure functions that never panic, whatever the scrape contained.
//!
//! Buckets are `(le upper bound, cumulative count)` pairs, ascending by `le`,
//! with the `+Inf` bucket last.

/// Relative tolerance under which neighbouring cumulative counts are treated
/// as equal (Prometheus `smallDeltaTolerance`): float noise from summing
/// series must not create phantom observations.
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

/// Prometheus `almostEqual`.
fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < epsilon * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// Prometheus `histogram_quantile` semantics, so soak thresholds mean the same
/// as the dashboards': linear interpolation inside the bucket; the lowest
/// bucket interpolates from 0 (if its bound > 0, else its bound is returned);
/// if the quantile falls in the `+Inf` bucket, the highest finite bound is
/// returned.
///
/// Returns `None` when there are no buckets, no `+Inf` bucket, only the `+Inf`
/// bucket, or the total count (the `+Inf` count) is 0, negative, NaN or
/// infinite. Like Prometheus, `q < 0` gives `-Inf`, `q > 1` gives `+Inf`, and
/// `q` NaN gives `None`.
///
/// Input fixes, as Prometheus does: buckets are sorted by bound (NaN bounds
/// dropped), buckets with equal bounds are merged by summing, and cumulative
/// counts are clamped to be monotonic (a count below its predecessor, or NaN,
/// takes the predecessor's value; counts start from 0, so negatives become 0).
/// One deviation: where Prometheus would compute 0/0 (`q = 0` with an empty
/// lowest bucket) this returns `None`.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let mut bs: Vec<(f64, f64)> = buckets
        .iter()
        .copied()
        .filter(|(le, _)| !le.is_nan())
        .collect();
    bs.sort_by(|x, y| x.0.total_cmp(&y.0));

    // Coalesce equal bounds (e.g. `le="1"` and `le="1.0"` series).
    let mut co: Vec<(f64, f64)> = Vec::with_capacity(bs.len());
    for (le, c) in bs {
        match co.last_mut() {
            Some(last) if last.0 == le => last.1 += c,
            _ => co.push((le, c)),
        }
    }

    let &(last_le, raw_total) = co.last()?;
    if last_le != f64::INFINITY || co.len() < 2 {
        return None;
    }
    if !raw_total.is_finite() {
        return None;
    }

    // Make cumulative counts monotonic.
    let mut prev = 0.0_f64;
    for b in co.iter_mut() {
        let curr = b.1;
        if curr.is_nan() || curr < prev || almost_equal(prev, curr, SMALL_DELTA_TOLERANCE) {
            b.1 = prev;
        } else {
            prev = curr;
        }
    }

    let total = co[co.len() - 1].1;
    // `total > 0.0` is false for NaN too.
    let positive = total > 0.0;
    if !positive || !total.is_finite() {
        return None;
    }

    if q.is_nan() {
        return None;
    }
    if q < 0.0 {
        return Some(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return Some(f64::INFINITY);
    }

    let mut rank = q * total;
    let last = co.len() - 1;
    let b = co[..last]
        .iter()
        .position(|&(_, c)| c >= rank)
        .unwrap_or(last);

    if b == last {
        return Some(co[last - 1].0);
    }
    if b == 0 && co[0].0 <= 0.0 {
        return Some(co[0].0);
    }
    let bucket_end = co[b].0;
    let mut count = co[b].1;
    let mut bucket_start = 0.0;
    if b > 0 {
        bucket_start = co[b - 1].0;
        count -= co[b - 1].1;
        rank -= co[b - 1].1;
    }
    let non_empty = count > 0.0;
    if !non_empty {
        return None;
    }
    Some(bucket_start + (bucket_end - bucket_start) * (rank / count))
}

/// Bucket-wise difference `later - earlier`, so quantiles can be computed over
/// a soak window instead of since process start.
///
/// Returns `None` when the bucket layouts differ (length or any bound, NaN
/// bounds never equal), any count is non-finite, or any bucket decreased (a
/// counter reset: the caller then falls back to `later` alone, and reports the
/// reset).
pub fn delta(earlier: &[(f64, f64)], later: &[(f64, f64)]) -> Option<Vec<(f64, f64)>> {
    if earlier.len() != later.len() {
        return None;
    }
    earlier
        .iter()
        .zip(later)
        .map(|(&(le_e, c_e), &(le_l, c_l))| {
            if le_e != le_l || !c_e.is_finite() || !c_l.is_finite() || c_l < c_e {
                None
            } else {
                Some((le_l, c_l - c_e))
            }
        })
        .collect()
}

/// Increase of a counter across a series of samples, Prometheus `increase()`
/// style without extrapolation, so rates survive service restarts during a
/// soak: sums positive steps; a decrease is a reset, after which the new value
/// counts from zero. Returns `(increase, resets_seen)`.
///
/// Non-finite samples (NaN, ±Inf) are skipped; a negative value after a reset
/// contributes nothing (counters are never negative).
pub fn counter_increase(values: &[f64]) -> (f64, usize) {
    let mut increase = 0.0;
    let mut resets = 0;
    let mut prev: Option<f64> = None;
    for &v in values.iter().filter(|v| v.is_finite()) {
        if let Some(p) = prev {
            if v >= p {
                increase += v - p;
            } else {
                resets += 1;
                increase += v.max(0.0);
            }
        }
        prev = Some(v);
    }
    (increase, resets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const INF: f64 = f64::INFINITY;

    fn example() -> Vec<(f64, f64)> {
        vec![(0.1, 10.0), (0.5, 90.0), (1.0, 100.0), (INF, 100.0)]
    }

    fn approx(a: Option<f64>, b: f64) -> bool {
        matches!(a, Some(x) if (x - b).abs() < 1e-9)
    }

    #[test]
    fn hand_computed_quantiles() {
        let b = example();
        // p95: rank 95 in (0.5,1.0] holding 90..100 -> 0.5 + 5/10 * 0.5
        assert!(approx(quantile(0.95, &b), 0.75), "{:?}", quantile(0.95, &b));
        // p50: rank 50 in (0.1,0.5] holding 10..90 -> 0.1 + 40/80 * 0.4
        assert!(approx(quantile(0.5, &b), 0.3), "{:?}", quantile(0.5, &b));
        // p5: rank 5 in the lowest bucket, interpolated from 0 -> 5/10 * 0.1
        assert!(approx(quantile(0.05, &b), 0.05));
        // p100: rank 100 reaches the 1.0 bucket's upper edge
        assert!(approx(quantile(1.0, &b), 1.0));
        // p0: start of lowest bucket
        assert!(approx(quantile(0.0, &b), 0.0));
        // exactly on a bucket edge: rank 90 -> upper bound of (0.1,0.5]
        assert!(approx(quantile(0.9, &b), 0.5));
    }

    #[test]
    fn quantile_in_inf_bucket_returns_highest_finite_bound() {
        let b = vec![(0.1, 10.0), (0.5, 50.0), (INF, 100.0)];
        assert_eq!(quantile(0.99, &b), Some(0.5));
        assert_eq!(quantile(0.51, &b), Some(0.5));
        assert!(approx(quantile(0.5, &b), 0.5));
    }

    #[test]
    fn lowest_bucket_with_nonpositive_bound() {
        let b = vec![(0.0, 10.0), (1.0, 20.0), (INF, 20.0)];
        assert_eq!(quantile(0.25, &b), Some(0.0));
        assert!(approx(quantile(0.75, &b), 0.5));
        let neg = vec![(-1.0, 10.0), (1.0, 20.0), (INF, 20.0)];
        assert_eq!(quantile(0.1, &neg), Some(-1.0));
        assert!(approx(quantile(0.75, &neg), 0.0));
    }

    #[test]
    fn quantile_none_cases() {
        assert_eq!(quantile(0.5, &[]), None);
        // no +Inf bucket
        assert_eq!(quantile(0.5, &[(0.1, 1.0), (1.0, 2.0)]), None);
        // only +Inf: no finite bound to report
        assert_eq!(quantile(0.5, &[(INF, 10.0)]), None);
        // zero observations
        assert_eq!(quantile(0.5, &[(0.1, 0.0), (1.0, 0.0), (INF, 0.0)]), None);
        // NaN / infinite total
        assert_eq!(quantile(0.5, &[(0.1, 1.0), (INF, f64::NAN)]), None);
        assert_eq!(quantile(0.5, &[(0.1, 1.0), (INF, INF)]), None);
        // negative total clamps to zero
        assert_eq!(quantile(0.5, &[(0.1, -3.0), (INF, -1.0)]), None);
        // q NaN
        assert_eq!(quantile(f64::NAN, &example()), None);
        // q = 0 with an empty lowest bucket: Prometheus would compute 0/0
        assert_eq!(quantile(0.0, &[(0.1, 0.0), (1.0, 5.0), (INF, 5.0)]), None);
    }

    #[test]
    fn quantile_out_of_range_q_like_prometheus() {
        assert_eq!(quantile(-0.1, &example()), Some(f64::NEG_INFINITY));
        assert_eq!(quantile(1.1, &example()), Some(INF));
        // ... but only when the buckets themselves are usable.
        assert_eq!(quantile(1.1, &[]), None);
    }

    #[test]
    fn non_monotonic_counts_are_clamped() {
        // The 0.5 bucket dips below the 0.1 bucket: treated as 10 (empty).
        let b = vec![(0.1, 10.0), (0.5, 5.0), (1.0, 20.0), (INF, 20.0)];
        // rank 15: first bucket with count >= 15 is the 1.0 one (20),
        // previous cumulative is 10 (clamped) -> 0.5 + 5/10 * 0.5
        assert!(approx(quantile(0.75, &b), 0.75));
        // +Inf below a finite bucket: total clamps up to 20.
        let b = vec![(0.1, 10.0), (1.0, 20.0), (INF, 15.0)];
        assert!(approx(quantile(0.5, &b), 0.1));
        assert!(approx(quantile(0.99, &b), 0.1 + 0.9 * (19.8 - 10.0) / 10.0));
        // NaN in the middle takes the predecessor's value.
        let b = vec![(0.1, 10.0), (0.5, f64::NAN), (1.0, 20.0), (INF, 20.0)];
        assert!(approx(quantile(0.75, &b), 0.75));
    }

    #[test]
    fn unsorted_and_duplicate_bounds_are_fixed() {
        let shuffled = vec![(1.0, 100.0), (INF, 100.0), (0.1, 10.0), (0.5, 90.0)];
        assert!(approx(quantile(0.95, &shuffled), 0.75));
        // le="0.5" split across two series: summed.
        let dup = vec![
            (0.1, 10.0),
            (0.5, 40.0),
            (0.5, 50.0),
            (1.0, 100.0),
            (INF, 100.0),
        ];
        assert!(approx(quantile(0.5, &dup), 0.3));
        // NaN bound is ignored.
        let nan_le = vec![
            (0.1, 10.0),
            (f64::NAN, 3.0),
            (0.5, 90.0),
            (1.0, 100.0),
            (INF, 100.0),
        ];
        assert!(approx(quantile(0.5, &nan_le), 0.3));
    }

    #[test]
    fn tiny_float_noise_is_ignored() {
        // 10 vs 10 + 1e-15: same count, not a phantom observation.
        let b = vec![(0.1, 10.0), (0.5, 10.0 + 1e-15), (1.0, 20.0), (INF, 20.0)];
        assert!(approx(quantile(0.5, &b), 0.1));
        assert!(approx(quantile(0.75, &b), 0.75));
    }

    #[test]
    fn delta_of_window() {
        let earlier = vec![(0.1, 5.0), (0.5, 40.0), (1.0, 50.0), (INF, 50.0)];
        let later = vec![(0.1, 15.0), (0.5, 130.0), (1.0, 150.0), (INF, 150.0)];
        let d = delta(&earlier, &later);
        assert_eq!(d, Some(example()));
        assert!(approx(quantile(0.95, &example()), 0.75));
        assert_eq!(delta(&[], &[]), Some(vec![]));
        // unchanged -> all zero, which quantile() rejects as "no data"
        let z = delta(&later, &later);
        assert_eq!(
            z,
            Some(vec![(0.1, 0.0), (0.5, 0.0), (1.0, 0.0), (INF, 0.0)])
        );
        assert_eq!(quantile(0.5, &z.unwrap_or_default()), None);
    }

    #[test]
    fn delta_rejects_layout_change_and_resets() {
        let a = vec![(0.1, 5.0), (INF, 10.0)];
        assert_eq!(delta(&a, &[(0.1, 6.0)]), None); // length
        assert_eq!(delta(&a, &[(0.2, 6.0), (INF, 12.0)]), None); // bound
        assert_eq!(delta(&a, &[(0.1, 4.0), (INF, 12.0)]), None); // reset
        assert_eq!(delta(&a, &[(0.1, 6.0), (INF, 9.0)]), None); // reset
        assert_eq!(delta(&a, &[(0.1, f64::NAN), (INF, 12.0)]), None);
        assert_eq!(delta(&[(f64::NAN, 1.0)], &[(f64::NAN, 2.0)]), None);
        assert_eq!(delta(&[(INF, INF)], &[(INF, INF)]), None);
        assert_eq!(
            delta(&a, &[(0.1, 6.0), (INF, 12.0)]),
            Some(vec![(0.1, 1.0), (INF, 2.0)])
        );
    }

    #[test]
    fn counter_increase_cases() {
        assert_eq!(counter_increase(&[]), (0.0, 0));
        assert_eq!(counter_increase(&[42.0]), (0.0, 0));
        assert_eq!(counter_increase(&[1.0, 3.0, 3.0, 10.0]), (9.0, 0));
        // restart: 10 -> 2 counts 2 (from zero), then +3
        assert_eq!(
            counter_increase(&[5.0, 10.0, 2.0, 5.0]),
            (5.0 + 2.0 + 3.0, 1)
        );
        // two resets, one straight to zero
        assert_eq!(
            counter_increase(&[100.0, 0.0, 7.0, 3.0, 4.0]),
            (7.0 + 3.0 + 1.0, 2)
        );
        // non-finite samples are skipped
        assert_eq!(counter_increase(&[1.0, f64::NAN, 4.0, INF, 6.0]), (5.0, 0));
        // negative garbage after a "reset" adds nothing
        assert_eq!(counter_increase(&[5.0, -1.0, 2.0]), (3.0, 1));
    }

    proptest! {
        #[test]
        fn quantile_is_total_and_bounded(
            q in 0.0f64..=1.0,
            mut bounds in prop::collection::vec(0.001f64..100.0, 1..8),
            counts in prop::collection::vec(0.0f64..1000.0, 9),
        ) {
            bounds.sort_by(f64::total_cmp);
            let mut acc = 0.0;
            let mut b: Vec<(f64, f64)> = bounds.iter().zip(&counts).map(|(&le, &c)| { acc += c; (le, acc) }).collect();
            b.push((INF, acc + counts[8]));
            if let Some(v) = quantile(q, &b) {
                let lo = 0.0;
                let hi = bounds[bounds.len() - 1];
                prop_assert!(v >= lo - 1e-9 && v <= hi + 1e-9, "{} not in [{}, {}]", v, lo, hi);
            }
        }

        #[test]
        fn quantile_is_monotonic_in_q(
            q1 in 0.0f64..=1.0, q2 in 0.0f64..=1.0,
            counts in prop::collection::vec(0.0f64..1000.0, 4),
        ) {
            let b = vec![(0.1, counts[0]), (0.5, counts[0] + counts[1]), (2.0, counts[0] + counts[1] + counts[2]), (INF, counts.iter().sum())];
            let (lo, hi) = if q1 <= q2 { (q1, q2) } else { (q2, q1) };
            if let (Some(a), Some(z)) = (quantile(lo, &b), quantile(hi, &b)) {
                prop_assert!(a <= z + 1e-9, "q {} -> {}, q {} -> {}", lo, a, hi, z);
            }
        }

        #[test]
        fn never_panics_on_garbage(
            q in any::<f64>(),
            b in prop::collection::vec((any::<f64>(), any::<f64>()), 0..6),
            c in prop::collection::vec((any::<f64>(), any::<f64>()), 0..6),
            v in prop::collection::vec(any::<f64>(), 0..10),
        ) {
            let _ = quantile(q, &b);
            let _ = delta(&b, &c);
            let (inc, resets) = counter_increase(&v);
            prop_assert!(resets < v.len().max(1));
            prop_assert!(inc >= 0.0, "increase {} is negative or NaN", inc);
        }

        #[test]
        fn counter_increase_without_reset_is_last_minus_first(
            steps in prop::collection::vec(0u32..1000, 1..20),
        ) {
            let mut acc = 0.0;
            let vals: Vec<f64> = steps.iter().map(|&s| { acc += f64::from(s); acc }).collect();
            let (inc, resets) = counter_increase(&vals);
            prop_assert_eq!(resets, 0);
            prop_assert_eq!(inc, vals[vals.len() - 1] - vals[0]);
        }
    }
}
