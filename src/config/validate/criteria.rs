//! `[criteria]`: thresholds that must agree with each other.

use super::*;

/// Thresholds that contradict each other or cannot be met.
pub(super) fn check_criteria(raw: &RawConfig, p: Problems<'_>) {
    let c = &raw.criteria;
    if c.lag_warn > c.lag_fail {
        p(
            "criteria.lag_warn",
            "must not exceed criteria.lag_fail".into(),
        );
    }
    if c.redeliveries_warn > c.redeliveries_fail {
        p(
            "criteria.redeliveries_warn",
            "must not exceed criteria.redeliveries_fail".into(),
        );
    }
    if !(c.success_rate_min > 0.0 && c.success_rate_min <= 1.0) {
        p("criteria.success_rate_min", "must be in (0, 1]".into());
    }
    if !(c.latency_quantile > 0.0 && c.latency_quantile < 1.0) {
        p("criteria.latency_quantile", "must be in (0, 1)".into());
    }
}
