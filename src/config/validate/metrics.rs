//! `[metrics]`: the service's /metrics endpoint and the series read there.

use super::*;

/// The metrics endpoint and metric names, checked and resolved.
pub(super) fn validate_metrics(raw: &RawConfig, p: Problems<'_>) -> MetricsConfig {
    let m = &raw.metrics;
    check_http_url("metrics.url", &m.url, p);
    if m.max_body_bytes == 0 {
        p("metrics.max_body_bytes", "must be greater than 0".into());
    }
    if !is_metric_name(&m.messages_counter) {
        p("metrics.messages_counter", "not a valid metric name".into());
    }
    for (key, name) in [
        ("metrics.latency_histogram", &m.latency_histogram),
        ("metrics.process_start_metric", &m.process_start_metric),
    ] {
        if !name.is_empty() && !is_metric_name(name) {
            p(key, format!("`{name}` is not a valid metric name"));
        }
    }
    MetricsConfig {
        url: SecretUrl::new(m.url.clone()),
        messages_counter: m.messages_counter.clone(),
        matchers: m.matchers.clone().into_iter().collect(),
        result_label: m.result_label.clone(),
        success_result: m.success_result.clone(),
        dlq_result: m.dlq_result.clone(),
        uncounted_results: m.uncounted_results.clone(),
        stream_label: m.stream_label.clone(),
        latency_histogram: non_empty(&m.latency_histogram),
        process_start_metric: non_empty(&m.process_start_metric),
        max_body_bytes: m.max_body_bytes,
    }
}
