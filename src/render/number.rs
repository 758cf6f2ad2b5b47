//! Numbers and durations as people read them in reports, chart labels and
//! the demo's output: a ratio computed from counters (`99.18032786885246`)
//! is shown as `99.18`, and every elapsed or planned span uses one format
//! (`42s`, `3h 12m`). Machine fields (JSON values, Prometheus samples) keep
//! full precision and do not go through here.

/// At most three decimals, trailing zeros dropped; integers have no decimal
/// point; non-finite values as Rust prints them (`NaN`, `inf`).
pub fn human_number(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// A span of time in the two largest of hours, minutes and seconds,
/// truncated so that a soak 59.9 s in never reads "1m": `42s`, `1m`,
/// `12m 5s`, `3h 12m`, `48h`. Negative and non-finite spans read `0s`.
pub fn human_duration(secs: f64) -> String {
    let total = if secs.is_finite() && secs > 0.0 {
        secs.min(1e15).floor() as u64
    } else {
        0
    };
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_have_at_most_three_decimals() {
        assert_eq!(human_number(99.18032786885246), "99.18");
        assert_eq!(human_number(97.67441860465115), "97.674");
        assert_eq!(human_number(2.5), "2.5");
        assert_eq!(human_number(3.0), "3");
        assert_eq!(human_number(-0.0001), "0");
        assert_eq!(human_number(0.999 * 100.0), "99.9");
        assert_eq!(human_number(f64::NAN), "NaN");
    }

    #[test]
    fn durations_use_two_units_and_never_round_up() {
        assert_eq!(human_duration(42.9), "42s");
        assert_eq!(human_duration(59.99), "59s");
        assert_eq!(human_duration(60.0), "1m");
        assert_eq!(human_duration(725.0), "12m 5s");
        assert_eq!(human_duration(3.0 * 3600.0 + 12.0 * 60.0 + 59.0), "3h 12m");
        assert_eq!(human_duration(48.0 * 3600.0), "48h");
        assert_eq!(human_duration(23.99 * 3600.0), "23h 59m");
        assert_eq!(human_duration(-5.0), "0s");
        assert_eq!(human_duration(f64::NAN), "0s");
    }
}
