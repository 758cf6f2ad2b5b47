//! `soakwatch export grafana`: a Grafana dashboard with the charts of the
//! soak reports (consumer lag, DLQ, throughput, success rate, latency
//! quantile, each with its threshold from checks.toml), drawn from
//! Prometheus queries over the service's and soakwatch's series, plus the
//! status of every criterion over time and the soak's verdict.
//!
//! The Prometheus data source is a dashboard variable (`$datasource`), so
//! the file imports into any Grafana unchanged. Rates use Grafana's
//! `$__rate_interval`; every other part of a query is plain PromQL.

use serde_json::{json, Value};

use super::promql::{self, Queries};
use super::ExportError;
use crate::config::Config;
use crate::verdict::CriterionId as C;

/// Dashboard JSON schema version written (Grafana 10/11 read it).
const SCHEMA_VERSION: u32 = 39;

/// What every panel and query names as its data source.
fn datasource() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

/// The dashboard as JSON text, ending in a newline.
pub fn grafana_dashboard(cfg: &Config) -> Result<String, ExportError> {
    let v = dashboard(cfg)?;
    let mut text = serde_json::to_string_pretty(&v).unwrap_or_default();
    text.push('\n');
    Ok(text)
}

/// One query of a panel.
struct Target {
    expr: String,
    legend: String,
}

fn target(expr: String, legend: &str) -> Target {
    Target {
        expr,
        legend: legend.to_string(),
    }
}

/// Threshold steps: `base` colour below the first value, then each (value, colour).
fn thresholds(base: &str, steps: &[(f64, &str)]) -> Value {
    let mut list = vec![json!({"color": base, "value": null})];
    list.extend(
        steps
            .iter()
            .filter(|(v, _)| v.is_finite())
            .map(|(v, c)| json!({"color": c, "value": v})),
    );
    json!({"mode": "absolute", "steps": list})
}

/// A time-series panel with its threshold drawn as a dashed line.
fn timeseries(
    title: &str,
    description: &str,
    unit: &str,
    targets: Vec<Target>,
    thresholds: Value,
    decimals: Option<u32>,
) -> Value {
    let mut defaults = json!({
        "unit": unit,
        "thresholds": thresholds,
        "custom": {"thresholdsStyle": {"mode": "dashed"}, "spanNulls": false},
    });
    if let Some(d) = decimals {
        defaults["decimals"] = json!(d);
    }
    json!({
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": datasource(),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": targets_json(targets),
    })
}

fn targets_json(targets: Vec<Target>) -> Value {
    Value::Array(
        targets
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                json!({
                    "refId": ((b'A' + (i % 26) as u8) as char).to_string(),
                    "datasource": datasource(),
                    "expr": t.expr,
                    "legendFormat": t.legend,
                    "range": true,
                })
            })
            .collect(),
    )
}

/// soakwatch's status codes as Grafana value mappings (text and colour).
fn status_mappings() -> Value {
    let m = |code: i32, text: &str, color: &str| {
        (
            code.to_string(),
            json!({"text": text, "color": color, "index": code.max(0)}),
        )
    };
    let options: serde_json::Map<String, Value> = [
        m(-1, "not configured", "text"),
        m(0, "pass", "green"),
        m(1, "warn", "yellow"),
        m(2, "fail", "red"),
        m(3, "unknown", "purple"),
        m(4, "pending", "orange"),
    ]
    .into_iter()
    .collect();
    json!([{"type": "value", "options": options}])
}

/// The dashboard as a JSON value.
pub fn dashboard(cfg: &Config) -> Result<Value, ExportError> {
    let q = Queries::new(cfg)?;
    let cr = &cfg.criteria;
    let m = &cfg.metrics;
    let rate = "$__rate_interval";
    let lag = q.soakwatch("soakwatch_criterion_value", Some(C::ConsumerLag.as_str()));
    let dlq_growth = q.soakwatch("soakwatch_criterion_value", Some(C::Dlq.as_str()));
    let pct = promql::number(cr.latency_quantile * 100.0);

    // (panel, width, height): laid out left to right, wrapping at 24 columns.
    let mut panels: Vec<(Value, u32, u32)> = vec![
        (
            json!({
                "type": "state-timeline",
                "title": "Criteria",
                "description": "Debounced status of every criterion (soakwatch_criterion_status).",
                "datasource": datasource(),
                "fieldConfig": {
                    "defaults": {"mappings": status_mappings(), "color": {"mode": "thresholds"},
                                 "thresholds": thresholds("green", &[])},
                    "overrides": [],
                },
                "options": {"showValue": "never", "mergeValues": true},
                "targets": targets_json(vec![target(
                    q.soakwatch("soakwatch_criterion_status", None), "{{criterion}}")]),
            }),
            18,
            10,
        ),
        (
            json!({
                "type": "stat",
                "title": "Soak verdict",
                "description": "The soak's verdict so far (soakwatch_soak_verdict).",
                "datasource": datasource(),
                "fieldConfig": {
                    "defaults": {"mappings": status_mappings(), "color": {"mode": "thresholds"},
                                 "thresholds": thresholds("green", &[])},
                    "overrides": [],
                },
                "options": {"colorMode": "background", "reduceOptions": {"calcs": ["lastNotNull"]}},
                "targets": targets_json(vec![target(
                    q.soakwatch("soakwatch_soak_verdict", None), "verdict")]),
            }),
            6,
            10,
        ),
        (
            timeseries(
                "Consumer lag (pending + ack pending)",
                "JetStream consumer lag is not in the service's metrics: soakwatch's observation each cycle.",
                "short",
                vec![target(lag, "lag")],
                thresholds(
                    "green",
                    &[(cr.lag_warn as f64, "yellow"), (cr.lag_fail as f64, "red")],
                ),
                Some(0),
            ),
            12,
            8,
        ),
        (
            timeseries(
                "DLQ messages",
                "Messages dead-lettered since the baseline (soakwatch: DLQ stream growth and the service's counter) and the service's dead-letter counter; dlq fails at 1.",
                "short",
                vec![
                    target(dlq_growth, "beyond baseline (soakwatch)"),
                    target(
                        q.dlq_total(),
                        &format!("{}=\"{}\" (service)", m.result_label, m.dlq_result),
                    ),
                ],
                thresholds("green", &[(1.0, "red")]),
                Some(0),
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Throughput",
                "Messages processed per minute, every result.",
                "short",
                vec![target(format!("{} * 60", q.processed_rate(rate)), "msgs/min")],
                thresholds("green", &[]),
                None,
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Success rate",
                "Successes among counted messages since the service started, in percent.",
                "percent",
                vec![target(format!("100 * ({})", q.success_ratio()), "success %")],
                thresholds("red", &[(cr.success_rate_min * 100.0, "green")]),
                None,
            ),
            12,
            8,
        ),
    ];
    if let Some(quantile) = q.latency_quantile_rate(cr.latency_quantile, rate) {
        panels.push((
            timeseries(
                &format!("p{pct} processing time"),
                "Processing-time quantile from the service's histogram (bucket interpolation).",
                "ms",
                vec![target(format!("1000 * {quantile}"), &format!("p{pct}"))],
                thresholds("green", &[(cr.p95_max.as_secs_f64() * 1000.0, "red")]),
                None,
            ),
            12,
            8,
        ));
    }

    let (mut x, mut y, mut row_h) = (0u32, 0u32, 0u32);
    let mut laid = Vec::with_capacity(panels.len());
    for (i, (mut p, w, h)) in panels.into_iter().enumerate() {
        if x + w > 24 {
            x = 0;
            y += row_h;
            row_h = 0;
        }
        p["id"] = json!(i + 1);
        p["gridPos"] = json!({"x": x, "y": y, "w": w, "h": h});
        x += w;
        row_h = row_h.max(h);
        laid.push(p);
    }

    let hours = cfg.soak.duration.as_secs().div_ceil(3600).max(1);
    Ok(json!({
        "title": format!("soakwatch: {}", q.soak()),
        "uid": uid(q.soak()),
        "description": format!("Soak {} as soakwatch judges it; generated by `soakwatch export grafana`.", q.soak()),
        "tags": ["soakwatch"],
        "timezone": "utc",
        "editable": true,
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": format!("now-{hours}h"), "to": "now"},
        "refresh": "30s",
        "annotations": {"list": []},
        "templating": {"list": [{
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
        }]},
        "panels": laid,
    }))
}

/// A stable dashboard uid from the soak's name (Grafana: at most 40
/// characters of letters, digits, `-` and `_`), so a re-import replaces.
fn uid(soak: &str) -> String {
    let slug: String = soak
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut uid = format!("soakwatch-{slug}");
    uid.truncate(40);
    uid
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn shipped() -> Config {
        let text = include_str!("../../checks.toml");
        Config::from_text(Path::new("checks.toml"), text, &|_: &str| None).expect("valid")
    }

    fn exprs(v: &Value) -> Vec<String> {
        v["panels"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|p| p["targets"].as_array().into_iter().flatten())
            .filter_map(|t| t["expr"].as_str().map(String::from))
            .collect()
    }

    #[test]
    fn structure_panels_targets_and_datasource_variable() {
        let v = dashboard(&shipped()).expect("exports");
        let vars = v["templating"]["list"].as_array().expect("variables");
        assert!(vars.iter().any(|t| t["name"] == "datasource"
            && t["type"] == "datasource"
            && t["query"] == "prometheus"));
        let panels = v["panels"].as_array().expect("panels");
        assert_eq!(panels.len(), 7);
        let mut ids = std::collections::BTreeSet::new();
        for p in panels {
            assert!(ids.insert(p["id"].as_u64().expect("id")), "unique ids");
            assert_eq!(p["datasource"]["uid"], "${datasource}");
            let g = &p["gridPos"];
            assert!(g["x"].as_u64().unwrap_or(99) + g["w"].as_u64().unwrap_or(99) <= 24);
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{p}");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}");
                assert!(t["refId"].is_string());
            }
        }
        assert_eq!(v["uid"], "soakwatch-phase-b-staging");
        assert_eq!(v["time"]["from"], "now-48h");
    }

    #[test]
    fn charts_carry_the_configured_thresholds() {
        let v = dashboard(&shipped()).expect("exports");
        let panel = |title: &str| {
            v["panels"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["title"] == title)
                .cloned()
                .unwrap_or_else(|| panic!("no panel {title}"))
        };
        let steps = |p: &Value| p["fieldConfig"]["defaults"]["thresholds"]["steps"].clone();
        let lag = panel("Consumer lag (pending + ack pending)");
        assert_eq!(steps(&lag)[2]["value"], 10.0);
        assert_eq!(steps(&lag)[1]["value"], 5.0);
        let p95 = panel("p95 processing time");
        assert_eq!(steps(&p95)[1]["value"], 500.0);
        let success = panel("Success rate");
        assert_eq!(steps(&success)[1]["value"], 99.9);
        assert!(success["targets"][0]["expr"]
            .as_str()
            .is_some_and(|e| e.contains("result!~\"retry\"")));
    }

    #[test]
    fn no_histogram_no_latency_panel_and_every_expr_names_its_series() {
        let mut cfg = shipped();
        cfg.metrics.latency_histogram = None;
        let v = dashboard(&cfg).expect("exports");
        assert_eq!(v["panels"].as_array().map(Vec::len), Some(6));
        for e in exprs(&v) {
            assert!(
                e.contains("normalize_hrv_messages_total")
                    || e.contains("soak=\"phase-b-staging\""),
                "{e}"
            );
        }
    }

    #[test]
    fn uid_is_a_bounded_slug() {
        assert_eq!(uid("a b/c"), "soakwatch-a-b-c");
        assert_eq!(uid(&"x".repeat(60)).len(), 40);
    }
}
