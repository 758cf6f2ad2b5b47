//! `[watch]`: the daemon's schedule, checkpoints, holds, DLQ spike rule
//! and listener.

use super::*;

/// The daemon's schedule, checkpoints, holds, spike rule and listener.
pub(super) fn validate_watch(raw: &RawConfig, base: &Path, p: Problems<'_>) -> WatchConfig {
    let w = &raw.watch;
    if w.interval < MIN_INTERVAL {
        p(
            "watch.interval",
            format!(
                "`{}`: must be at least {} (a shorter one spins the CPU and starves signal handling)",
                humantime::format_duration(w.interval),
                humantime::format_duration(MIN_INTERVAL)
            ),
        );
    }
    let mut checkpoints = Vec::new();
    for (i, c) in w.checkpoints.iter().enumerate() {
        match humantime::parse_duration(c) {
            Ok(d) if d.is_zero() => p(
                &format!("watch.checkpoints[{i}]"),
                format!("`{c}`: must be after T0 (greater than 0)"),
            ),
            Ok(d) if d > crate::duration::MAX => p(
                &format!("watch.checkpoints[{i}]"),
                format!("`{c}`: {}", crate::duration::TooLong),
            ),
            Ok(d) if d > raw.soak.duration => p(
                &format!("watch.checkpoints[{i}]"),
                format!(
                    "`{c}`: past the end of the soak (soak.duration = {}); it would never be written",
                    humantime::format_duration(raw.soak.duration)
                ),
            ),
            Ok(d) => checkpoints.push(d),
            Err(e) => p(&format!("watch.checkpoints[{i}]"), format!("`{c}`: {e}")),
        }
    }
    let mut fail_for = BTreeMap::new();
    for (id, d) in &w.fail_for {
        match humantime::parse_duration(d).map(|d| (d, crate::duration::check(d))) {
            Ok((_, Err(e))) => p(&format!("watch.for.{}", id.as_str()), format!("`{d}`: {e}")),
            Ok((d, Ok(()))) => {
                fail_for.insert(*id, d);
            }
            Err(e) => p(&format!("watch.for.{}", id.as_str()), format!("`{d}`: {e}")),
        }
    }
    if !(w.min_coverage > 0.0 && w.min_coverage <= 1.0) {
        p("watch.min_coverage", "must be in (0, 1]".into());
    }
    let listen = if w.listen.trim().is_empty() {
        None
    } else {
        match w.listen.parse::<std::net::SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                p(
                    "watch.listen",
                    format!("`{}`: {e} (use host:port, or \"\" for none)", w.listen),
                );
                None
            }
        }
    };
    // A negative, zero or non-finite rate would make every cycle a spike (a
    // negative one fired a real rollback on a healthy system).
    if !(w.dlq_spike_per_min.is_finite() && w.dlq_spike_per_min > 0.0) {
        p(
            "watch.dlq_spike_per_min",
            format!(
                "`{}`: must be a finite number of messages per minute greater than 0 (seed: 10)",
                w.dlq_spike_per_min
            ),
        );
    }
    if w.dlq_spike_window < w.interval || w.dlq_spike_window.is_zero() {
        p(
            "watch.dlq_spike_window",
            format!(
                "`{}`: must be at least watch.interval ({}): a shorter window is never covered by two samples",
                humantime::format_duration(w.dlq_spike_window),
                humantime::format_duration(w.interval)
            ),
        );
    }
    let max_gap = w.max_gap.unwrap_or(w.interval * 3);
    if max_gap < w.interval {
        p("watch.max_gap", "must be at least watch.interval".into());
    }
    WatchConfig {
        interval: w.interval,
        state: resolve_path(base, &w.state),
        reports_dir: resolve_path(base, &w.reports_dir),
        checkpoints,
        min_coverage: w.min_coverage,
        max_gap,
        recover_after: w.recover_after,
        fail_for,
        dlq_spike_per_min: w.dlq_spike_per_min,
        dlq_spike_window: w.dlq_spike_window,
        listen,
        keep_full_snapshots: w.keep_full_snapshots,
        thin_to: w.thin_to,
        at_end: w.at_end,
    }
}
