//! Rendering a check: text, Markdown, JSON, Nagios and node_exporter textfile.
//!
//! Renderers are pure functions of a [`CheckReport`]; writing the result is
//! the caller's ([`crate::atomic_file::write_atomic`] for a textfile).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::render::markdown::{md_cell, state_tables_markdown};
use crate::sample::Snapshot;
use crate::untrusted::untrusted;
use crate::verdict::{exit_code, overall, Status, Verdict};

/// Version of the JSON document; bumped only on incompatible changes.
pub const JSON_SCHEMA: &str = "soakwatch.check/v1";

/// Everything a renderer needs about one check.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// Soak name from the config.
    pub soak: String,
    /// Config file used.
    pub config: String,
    /// When the (last) snapshot was taken.
    pub generated_at: DateTime<Utc>,
    /// Seconds between the two samples (0 = one sample).
    pub window_secs: f64,
    /// Verdicts in report order.
    pub verdicts: Vec<Verdict>,
    /// The last snapshot, for the state tables.
    pub last: Snapshot,
}

impl CheckReport {
    /// Worst status over all criteria.
    pub fn overall(&self) -> Status {
        overall(&self.verdicts)
    }
}

/// Output formats of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned table for a terminal.
    Text,
    /// Tables like the deployment record's.
    Markdown,
    /// Stable machine-readable document (schema soakwatch.check/v1).
    Json,
    /// One line plus perfdata, for Nagios/Icinga.
    Nagios,
    /// node_exporter textfile collector format.
    Prometheus,
}

/// Renders in the chosen format.
pub fn render(report: &CheckReport, format: Format) -> String {
    match format {
        Format::Text => text(report),
        Format::Markdown => markdown(report),
        Format::Json => json(report),
        Format::Nagios => nagios(report),
        Format::Prometheus => prometheus(report),
    }
}

fn window_label(w: f64) -> String {
    if w <= 0.0 {
        "single sample".into()
    } else {
        format!("{w:.1}s between two samples")
    }
}

/// The status as an icon, beside its name in every human output (status is
/// never shown by colour or icon alone).
pub fn icon(s: Status) -> &'static str {
    match s {
        Status::Pass => "✅",
        Status::Warn => "⚠️",
        Status::Pending => "⏳",
        Status::Fail => "❌",
        Status::Unknown => "❓",
        Status::NotConfigured => "➖",
    }
}

/// Terminal table.
pub fn text(r: &CheckReport) -> String {
    let mut out = format!(
        "soakwatch check: {} ({}) at {}; window: {}\n",
        untrusted(&r.soak),
        untrusted(&r.config),
        r.generated_at.format("%Y-%m-%d %H:%M:%SZ"),
        window_label(r.window_secs)
    );
    let w = r
        .verdicts
        .iter()
        .map(|v| v.id.as_str().len())
        .max()
        .unwrap_or(10);
    for v in &r.verdicts {
        out.push_str(&format!(
            "{:<8} {:<w$}  {}  [target {}]\n         {:<w$}  {}\n",
            v.status.as_str().to_uppercase(),
            v.id.as_str(),
            untrusted(&v.observed),
            untrusted(&v.target),
            "",
            untrusted(&v.evidence),
        ));
    }
    let o = r.overall();
    out.push_str(&format!(
        "OVERALL: {} (exit {})\n",
        o.as_str().to_uppercase(),
        exit_code(o)
    ));
    out
}

/// Markdown in the shape of the deployment record.
pub fn markdown(r: &CheckReport) -> String {
    let mut out = format!(
        "# Soak check: {}\n\n**Checked:** {}  \n**Config:** `{}`  \n**Window:** {}  \n**Overall:** {} {}\n\n",
        md_cell(&r.soak),
        r.generated_at.format("%Y-%m-%d %H:%M:%S UTC"),
        md_cell(&r.config),
        window_label(r.window_secs),
        icon(r.overall()),
        r.overall().as_str().to_uppercase()
    );
    out.push_str(&state_tables_markdown(&r.last));
    out.push_str("## Success criteria\n\n| Criteria | Target | Actual | Status | Evidence |\n|----------|--------|--------|--------|----------|\n");
    for v in &r.verdicts {
        out.push_str(&format!(
            "| {} (`{}`) | {} | {} | {} | {} |\n",
            v.id.title(),
            v.id.as_str(),
            md_cell(&v.target),
            md_cell(&v.observed),
            icon(v.status),
            md_cell(&v.evidence)
        ));
    }
    out
}

#[derive(Serialize)]
struct JsonProbe {
    ok: bool,
    ms: Option<u64>,
    error: Option<String>,
}

/// Outside text in JSON: scrubbed of credentials; serde escapes control characters.
#[derive(Serialize)]
struct JsonCriterion<'a> {
    id: &'a str,
    status: &'a str,
    observed: String,
    target: String,
    evidence: String,
    value: Option<f64>,
}

#[derive(Serialize)]
struct JsonDoc<'a> {
    schema: &'a str,
    soak: &'a str,
    config: &'a str,
    generated_at: String,
    window_seconds: f64,
    overall: &'a str,
    exit_code: u8,
    criteria: Vec<JsonCriterion<'a>>,
    probes: std::collections::BTreeMap<String, JsonProbe>,
}

/// Probe outcomes keyed by the label used for timings.
fn probe_outcomes(s: &Snapshot) -> Vec<(String, Option<&str>)> {
    let mut v: Vec<(String, Option<&str>)> = s
        .streams
        .iter()
        .map(|(n, r)| {
            (
                format!("stream {n}"),
                r.as_ref().err().map(|f| f.reason.as_str()),
            )
        })
        .collect();
    fn err(r: Option<&crate::sample::ProbeFailure>) -> Option<&str> {
        r.map(|f| f.reason.as_str())
    }
    v.push((
        s.probe_ms
            .keys()
            .find(|k| k.starts_with("consumer"))
            .cloned()
            .unwrap_or_else(|| "consumer".into()),
        err(s.consumer.as_ref().err()),
    ));
    v.push(("metrics".into(), err(s.metrics.as_ref().err())));
    v.push(("database".into(), err(s.db.as_ref().err())));
    v.push(("log".into(), err(s.log.as_ref().err())));
    v.push(("service_env".into(), err(s.env.as_ref().err())));
    v
}

/// The documented JSON document (see README, "JSON output").
pub fn json(r: &CheckReport) -> String {
    let o = r.overall();
    let doc = JsonDoc {
        schema: JSON_SCHEMA,
        soak: &r.soak,
        config: &r.config,
        generated_at: r
            .generated_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        window_seconds: r.window_secs,
        overall: o.as_str(),
        exit_code: exit_code(o),
        criteria: r
            .verdicts
            .iter()
            .map(|v| JsonCriterion {
                id: v.id.as_str(),
                status: v.status.as_str(),
                observed: crate::secret::scrub(&v.observed),
                target: crate::secret::scrub(&v.target),
                evidence: crate::secret::scrub(&v.evidence),
                value: v.value.filter(|x| x.is_finite()),
            })
            .collect(),
        probes: probe_outcomes(&r.last)
            .into_iter()
            .map(|(k, e)| {
                let ms = r.last.probe_ms.get(&k).copied();
                (
                    k,
                    JsonProbe {
                        ok: e.is_none(),
                        ms,
                        error: e.map(crate::secret::scrub),
                    },
                )
            })
            .collect(),
    };
    let mut s =
        serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

fn perf_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x:.3}")
    }
}

/// `STATUS summary | 'label'=value;warn;crit;min;max ...`
pub fn nagios(r: &CheckReport) -> String {
    let o = r.overall();
    let count = |s: Status| r.verdicts.iter().filter(|v| v.status == s).count();
    let names = |s: Status| {
        r.verdicts
            .iter()
            .filter(|v| v.status == s)
            .map(|v| v.id.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut summary = Vec::new();
    for s in [Status::Fail, Status::Unknown, Status::Warn] {
        if count(s) > 0 {
            summary.push(format!("{} {} ({})", count(s), s.as_str(), names(s)));
        }
    }
    summary.push(format!("{} pass", count(Status::Pass)));
    let perf: Vec<String> = r
        .verdicts
        .iter()
        .filter_map(|v| {
            let val = v.value.filter(|x| x.is_finite())?;
            Some(format!(
                "'{}'={};{};{};0;",
                v.id.as_str(),
                perf_num(val),
                v.warn_at.map(perf_num).unwrap_or_default(),
                v.fail_at.map(perf_num).unwrap_or_default()
            ))
        })
        .collect();
    format!(
        "SOAKWATCH {} - {} | {}\n",
        o.label(),
        summary.join(", "),
        perf.join(" ")
    )
}

/// A label value for the textfile: escaped for the format, then made safe
/// (secrets scrubbed, control characters visible).
fn prom_escape(s: &str) -> String {
    untrusted(&crate::promtext::escape_label_value(s))
}

/// node_exporter textfile: per-criterion status and value, probe health.
pub fn prometheus(r: &CheckReport) -> String {
    let mut w = crate::promtext::ExpositionWriter::new(prom_escape);
    let soak = r.soak.as_str();
    w.family(
        "soakwatch_criterion_status",
        "gauge",
        "Criterion status: 0 pass, 1 warn, 2 fail, 3 unknown, -1 not configured.",
    );
    for v in &r.verdicts {
        w.sample(
            &[("soak", soak), ("criterion", v.id.as_str())],
            v.status.code(),
        );
    }
    w.family(
        "soakwatch_criterion_value",
        "gauge",
        "Main observed value of the criterion.",
    );
    for v in &r.verdicts {
        if let Some(x) = v.value.filter(|x| x.is_finite()) {
            w.sample(&[("soak", soak), ("criterion", v.id.as_str())], x);
        }
    }
    w.family(
        "soakwatch_overall_status",
        "gauge",
        "Overall status: 0 pass, 1 warn, 2 fail, 3 unknown.",
    )
    .sample(&[("soak", soak)], r.overall().code());
    w.family(
        "soakwatch_probe_up",
        "gauge",
        "Whether the probe produced a sample (1) or failed (0).",
    );
    for (k, e) in &probe_outcomes(&r.last) {
        w.sample(&[("soak", soak), ("probe", k)], u8::from(e.is_none()));
    }
    w.family(
        "soakwatch_probe_duration_seconds",
        "gauge",
        "Wall time of the probe.",
    );
    for (k, ms) in &r.last.probe_ms {
        w.sample(&[("soak", soak), ("probe", k)], *ms as f64 / 1000.0);
    }
    w.family(
        "soakwatch_check_timestamp_seconds",
        "gauge",
        "When the check ran.",
    )
    .sample(
        &[("soak", soak)],
        r.generated_at.timestamp_millis() as f64 / 1000.0,
    );
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_stay_in_their_quotes() {
        assert_eq!(prom_escape("s\"\n\u{1b}"), "s\\\"\\n\\u{1b}");
    }
}
