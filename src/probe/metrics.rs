//! The service's Prometheus `/metrics`: scrape, parse, keep only the facts the criteria need.

use std::time::Duration;

use crate::config::Config;
use crate::promtext::{self, Exposition};
use crate::sample::{MetricsState, ProbeFailure, ProbeKind, Probed};

/// Largest body accepted: a runaway exporter must not exhaust our memory.
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;
/// How many bad lines are kept verbatim as evidence.
const KEPT_ERRORS: usize = 5;

/// Builds the HTTP client once (TLS via rustls; the provider is installed in main).
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("soakwatch/", env!("CARGO_PKG_VERSION")))
        .build()
}

fn fail(reason: String) -> ProbeFailure {
    ProbeFailure {
        probe: ProbeKind::Metrics,
        reason,
    }
}

/// Scrapes and extracts. A body with no valid sample at all is a failure
/// (garbage or an HTML error page); a body with some bad lines is kept and the
/// bad lines are reported.
pub async fn probe(http: &reqwest::Client, cfg: &Config) -> Probed<MetricsState> {
    let shown = cfg.metrics.url.shown();
    let resp = http
        .get(cfg.metrics.url.expose())
        .header(
            reqwest::header::ACCEPT,
            "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1",
        )
        .send()
        .await
        .map_err(|e| fail(format!("GET {shown}: {}", describe_reqwest(&e))))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(fail(format!("GET {shown}: HTTP {status}")));
    }
    if resp
        .content_length()
        .is_some_and(|n| n as usize > MAX_BODY_BYTES)
    {
        return Err(fail(format!(
            "GET {shown}: body larger than {MAX_BODY_BYTES} bytes"
        )));
    }
    let body = resp.bytes().await.map_err(|e| {
        fail(format!(
            "GET {shown}: body cut off: {}",
            describe_reqwest(&e)
        ))
    })?;
    let text = String::from_utf8_lossy(&body);
    let expo = promtext::parse(&text);
    if expo.samples.is_empty() {
        let first = expo
            .errors
            .first()
            .map(|e| format!("; line {}: {}", e.line, e.message))
            .unwrap_or_default();
        return Err(fail(format!(
            "GET {shown}: not a Prometheus exposition ({} bytes, {} bad lines{first})",
            body.len(),
            expo.errors.len()
        )));
    }
    Ok(extract(&expo, cfg, body.len() as u64))
}

/// reqwest's Display nests causes; a person needs the innermost one.
fn describe_reqwest(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    let detail = inner.to_string();
    let detail = detail.lines().next().unwrap_or("");
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

/// The pure part: from a parsed exposition to the facts the criteria read.
pub fn extract(expo: &Exposition, cfg: &Config, body_bytes: u64) -> MetricsState {
    let m = &cfg.metrics;
    let mut state = MetricsState {
        body_bytes,
        parse_error_count: expo.errors.len(),
        parse_errors: expo
            .errors
            .iter()
            .take(KEPT_ERRORS)
            .map(|e| format!("line {}: {}", e.line, e.message))
            .collect(),
        ..Default::default()
    };
    if expo.truncated {
        state.parse_error_count += 1;
        state
            .parse_errors
            .push("body ends mid-line (truncated exposition)".into());
    }
    for s in expo.select(&m.messages_counter, &m.matchers) {
        state.counter_found = true;
        let result = s.label(&m.result_label).unwrap_or("").to_string();
        *state.by_result.entry(result).or_default() += s.value;
        let stream = s.label(&m.stream_label).unwrap_or("").to_string();
        *state.by_stream.entry(stream).or_default() += s.value;
    }
    let legacy = &cfg.streams.legacy.name;
    for s in &expo.samples {
        if s.label(&m.stream_label) == Some(legacy.as_str()) {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            state
                .legacy_series
                .push((format!("{}{{{}}}", s.name, labels.join(",")), s.value));
        }
    }
    if let Some(h) = &m.latency_histogram {
        let buckets = expo.histogram_buckets(h, &m.matchers);
        state.histogram = (!buckets.is_empty()).then_some(buckets);
    }
    if let Some(p) = &m.process_start_metric {
        state.process_start = expo.select(p, &[]).next().map(|s| s.value);
    }
    state
}
