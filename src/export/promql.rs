//! PromQL text for the series the criteria read: selectors built from the
//! configured names (quoted and escaped, never pasted), and the shared
//! expressions (the success ratio, the latency quantile) that the rules and
//! the dashboard both use, so a chart and its alert never disagree.

use std::time::Duration;

use super::ExportError;
use crate::config::Config;

/// A PromQL string literal: double quotes, with backslash, quote and control
/// characters escaped (the escapes PromQL's lexer reads, as Go's).
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(super) fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub(super) fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A Prometheus duration (`5m`, `1h30m`, `1500ms`; `0s` for zero): whole
/// hours, minutes and seconds, or milliseconds when there is a fraction.
pub(super) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// A number as a PromQL literal (Rust's shortest exact form never uses an
/// exponent; infinities and NaN have PromQL names).
pub(super) fn number(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x == f64::INFINITY {
        "+Inf".into()
    } else if x == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{x}")
    }
}

/// Text for a rule's label or annotation value: Prometheus expands both as
/// Go templates, so a literal `{{` from a configured name is written as a
/// template that prints it.
pub(super) fn template_literal(s: &str) -> String {
    s.replace("{{", "{{ \"{{\" }}")
}

/// One selector: a metric name and label matchers, in the order given.
struct Selector {
    metric: String,
    matchers: Vec<String>,
}

impl Selector {
    fn new(metric: &str, base: &[(String, String)]) -> Selector {
        Selector {
            metric: metric.to_string(),
            matchers: base
                .iter()
                .map(|(k, v)| format!("{k}={}", quote(v)))
                .collect(),
        }
    }

    fn with(mut self, label: &str, op: &str, value: &str) -> Selector {
        self.matchers.push(format!("{label}{op}{}", quote(value)));
        self
    }

    fn render(&self) -> String {
        if self.matchers.is_empty() {
            self.metric.clone()
        } else {
            format!("{}{{{}}}", self.metric, self.matchers.join(","))
        }
    }
}

/// The configured names, checked once for PromQL, and the expressions built
/// from them.
#[derive(Debug, Clone)]
pub(super) struct Queries {
    soak: String,
    counter: String,
    matchers: Vec<(String, String)>,
    result_label: String,
    success: String,
    dlq: String,
    uncounted: Vec<String>,
    stream_label: String,
    histogram: Option<String>,
}

impl Queries {
    /// Checks every name the queries use; all problems are the config's keys.
    pub(super) fn new(cfg: &Config) -> Result<Queries, ExportError> {
        let m = &cfg.metrics;
        let label = |key: &str, name: &str| {
            if is_label_name(name) {
                Ok(())
            } else {
                Err(ExportError::InvalidName {
                    key: key.to_string(),
                    name: name.to_string(),
                    kind: "label",
                })
            }
        };
        let metric = |key: &str, name: &str| {
            if is_metric_name(name) {
                Ok(())
            } else {
                Err(ExportError::InvalidName {
                    key: key.to_string(),
                    name: name.to_string(),
                    kind: "metric",
                })
            }
        };
        metric("metrics.messages_counter", &m.messages_counter)?;
        if let Some(h) = &m.latency_histogram {
            metric("metrics.latency_histogram", h)?;
        }
        label("metrics.result_label", &m.result_label)?;
        label("metrics.stream_label", &m.stream_label)?;
        for (k, _) in &m.matchers {
            label(&format!("metrics.match.{k}"), k)?;
        }
        Ok(Queries {
            soak: cfg.soak.name.clone(),
            counter: m.messages_counter.clone(),
            matchers: m.matchers.clone(),
            result_label: m.result_label.clone(),
            success: m.success_result.clone(),
            dlq: m.dlq_result.clone(),
            uncounted: m.uncounted_results.clone(),
            stream_label: m.stream_label.clone(),
            histogram: m.latency_histogram.clone(),
        })
    }

    /// The soak's name (the `soak` label of soakwatch's series and alerts).
    pub(super) fn soak(&self) -> &str {
        &self.soak
    }

    /// Whether a latency histogram is configured.
    pub(super) fn has_histogram(&self) -> bool {
        self.histogram.is_some()
    }

    /// The message counter. Configured by its family name (`orders_processed`,
    /// no `_total`), it is selected under both spellings, as `check` reads
    /// it: Prometheus stores a counter's samples as `orders_processed_total`
    /// from either text format, so the family name alone selects nothing and
    /// the rules would never fire.
    fn counter(&self) -> Selector {
        if self.counter.ends_with("_total") {
            return Selector::new(&self.counter, &self.matchers);
        }
        let mut sel = Selector::new("", &[]).with(
            "__name__",
            "=~",
            &format!("{}(_total)?", regex::escape(&self.counter)),
        );
        sel.matchers
            .extend(Selector::new("", &self.matchers).matchers);
        sel
    }

    /// The service's dead-letter counter, summed over its series.
    pub(super) fn dlq_total(&self) -> String {
        let sel = self.counter().with(&self.result_label, "=", &self.dlq);
        format!("sum({})", sel.render())
    }

    /// Messages dead-lettered within `window` (reset-aware).
    pub(super) fn dlq_increase(&self, window: &str) -> String {
        let sel = self.counter().with(&self.result_label, "=", &self.dlq);
        format!("sum(increase({}[{window}]))", sel.render())
    }

    /// Every counted message (all results but the uncounted ones): the
    /// success ratio's denominator.
    fn counted(&self) -> Selector {
        if self.uncounted.is_empty() {
            self.counter()
        } else {
            let alternatives: Vec<String> =
                self.uncounted.iter().map(|u| regex::escape(u)).collect();
            self.counter()
                .with(&self.result_label, "!~", &alternatives.join("|"))
        }
    }

    /// Success ratio (0..1) since the service started, as `success_rate`
    /// judges it: successes over counted messages. No success series counts
    /// as zero successes; no counted message at all gives no value (0/0 is
    /// NaN, which no comparison selects: zero traffic is not a failure).
    pub(super) fn success_ratio(&self) -> String {
        let success = self.counter().with(&self.result_label, "=", &self.success);
        format!(
            "(sum({}) or vector(0)) / sum({})",
            success.render(),
            self.counted().render()
        )
    }

    /// Processed messages per second over `window` (every result, as the
    /// reports' throughput chart counts them).
    pub(super) fn processed_rate(&self, window: &str) -> String {
        format!("sum(rate({}[{window}]))", self.counter().render())
    }

    /// Messages counted with a stream label other than `stream` (a series
    /// without the label counts too: `!=` selects it).
    pub(super) fn off_stream_total(&self, streams: &[&str]) -> String {
        let sel = match streams {
            [one] => self.counter().with(&self.stream_label, "!=", one),
            many => {
                let alternatives: Vec<String> = many.iter().map(|s| regex::escape(s)).collect();
                self.counter()
                    .with(&self.stream_label, "!~", &alternatives.join("|"))
            }
        };
        format!("sum({})", sel.render())
    }

    fn bucket(&self) -> Option<Selector> {
        let h = self.histogram.as_ref()?;
        Some(Selector::new(&format!("{h}_bucket"), &self.matchers))
    }

    /// The `q` quantile of the processing time (seconds) over `window`.
    pub(super) fn latency_quantile_rate(&self, q: f64, window: &str) -> Option<String> {
        let b = self.bucket()?.render();
        Some(format!(
            "histogram_quantile({}, sum by (le) (rate({b}[{window}])))",
            number(q)
        ))
    }

    /// The `q` quantile of the processing time (seconds) since the service started.
    pub(super) fn latency_quantile_total(&self, q: f64) -> Option<String> {
        let b = self.bucket()?.render();
        Some(format!(
            "histogram_quantile({}, sum by (le) ({b}))",
            number(q)
        ))
    }

    /// Observations of the histogram within `window`.
    pub(super) fn latency_observations_increase(&self, window: &str) -> Option<String> {
        let b = self.bucket()?.with("le", "=", "+Inf").render();
        Some(format!("sum(increase({b}[{window}]))"))
    }

    /// Observations of the histogram since the service started.
    pub(super) fn latency_observations_total(&self) -> Option<String> {
        let b = self.bucket()?.with("le", "=", "+Inf").render();
        Some(format!("sum({b})"))
    }

    /// A soakwatch series of this soak, for one criterion or all.
    /// Each consumer's series of a per-consumer criterion (`consumer_lag/…`).
    pub(super) fn per_consumer(&self, metric: &str, criterion: &str) -> String {
        Selector::new(metric, &[])
            .with("soak", "=", &self.soak)
            .with(
                "criterion",
                "=~",
                &format!("{}/.+", regex::escape(criterion)),
            )
            .render()
    }

    pub(super) fn soakwatch(&self, metric: &str, criterion: Option<&str>) -> String {
        let sel = Selector::new(metric, &[]).with("soak", "=", &self.soak);
        match criterion {
            Some(c) => sel.with("criterion", "=", c).render(),
            None => sel.render(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_and_escaped() {
        assert_eq!(quote("a"), "\"a\"");
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("x\ny\u{1}"), "\"x\\ny\\u0001\"");
    }

    #[test]
    fn names_are_checked() {
        assert!(is_label_name("result"));
        assert!(is_label_name("_x1"));
        assert!(!is_label_name("1x"));
        assert!(!is_label_name("a-b"));
        assert!(!is_label_name("a:b"));
        assert!(!is_label_name(""));
        assert!(is_metric_name("ns:metric_total"));
        assert!(!is_metric_name("metric-total"));
    }

    #[test]
    fn durations_in_prometheus_form() {
        assert_eq!(duration(Duration::ZERO), "0s");
        assert_eq!(duration(Duration::from_secs(300)), "5m");
        assert_eq!(duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(duration(Duration::from_secs(48 * 3600 + 1)), "48h1s");
        assert_eq!(duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn a_counter_named_by_its_family_selects_both_spellings() {
        let text = include_str!("../../checks.toml");
        let mut cfg = Config::from_text(std::path::Path::new("checks.toml"), text, &|_: &str| None)
            .expect("shipped config");
        let q = Queries::new(&cfg).expect("queries");
        assert!(q
            .dlq_total()
            .starts_with("sum(normalize_hrv_messages_total{"));
        cfg.metrics.messages_counter = "normalize_hrv_messages".into();
        let q = Queries::new(&cfg).expect("queries");
        assert_eq!(
            q.dlq_total(),
            "sum({__name__=~\"normalize_hrv_messages(_total)?\",durable=\"normalize-hrv-durable\",result=\"dlq\"})"
        );
    }

    #[test]
    fn numbers_and_templates() {
        assert_eq!(number(0.999), "0.999");
        assert_eq!(number(10.0), "10");
        assert_eq!(number(1e-7), "0.0000001");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(template_literal("a{{b}}"), "a{{ \"{{\" }}b}}");
    }
}
