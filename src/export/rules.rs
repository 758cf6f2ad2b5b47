//! `soakwatch export prometheus-rules`: Prometheus alerting rules equivalent
//! to the soak criteria, for a Prometheus that scrapes the service and
//! soakwatch's own /metrics.
//!
//! Every rule is named and labelled like soakwatch's own alert for the same
//! thing (`alertname="soakwatch_<criterion>"`, `criterion`, `severity` from
//! `[alerts.severity]`, `soak` = the soak's name), so Alertmanager routes and
//! silences written for one fit the other. One more label, `condition`
//! (`failing`, `spike` or `unknown`), tells apart rules that soakwatch raises
//! as one alert (a warning criterion failing or unknown; the DLQ's hold and
//! its spike): rules with equal labels are what promtool's lint refuses, and
//! a matcher written for soakwatch's labels still matches every one of them.
//! Where the criterion reads:
//!
//! - the service's /metrics (`dlq`, `success_rate`, `stream_purity`,
//!   `p95_latency`), Prometheus computes it from the service's series with
//!   the configured names and matchers, the thresholds of `[criteria]` and
//!   the `for` of `[watch.for]`;
//! - JetStream's consumer state (`consumer_lag`, `redeliveries`), which the
//!   service does not export, Prometheus compares soakwatch's
//!   `soakwatch_criterion_value` (the raw observation of each cycle) with the
//!   thresholds, with the same `for`;
//! - anything else Prometheus cannot see (stream settings, the log, the
//!   database), the rule relays soakwatch's debounced
//!   `soakwatch_criterion_status` (2 = fail, its `for` already applied).
//!
//! A second group raises what soakwatch raises when a criterion cannot be
//! determined for `[alerts] unknown_after`, and `soakwatch_stale` when
//! soakwatch itself stops sampling (its rules would otherwise go quiet).
//!
//! Not exported: `recover_after` (Prometheus' `keep_firing_for` would
//! express it, but only Prometheus 2.42 and later read that key and the file
//! must load everywhere).

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::promql::{self, Queries};
use super::ExportError;
use crate::config::Config;
use crate::verdict::CriterionId as C;

/// The window of the latency quantile's own observations. soakwatch judges
/// the observations since its previous cycle; a Prometheus rate needs a few
/// scrapes, and 5 minutes holds several at any usual scrape interval.
pub const LATENCY_WINDOW: Duration = Duration::from_secs(300);

/// Fewest observations in the window for its own quantile; below it the
/// quantile since the service started is judged, and below it again the
/// tail is only a warning (the same number as `p95_latency` in soakwatch).
pub const MIN_WINDOW_OBSERVATIONS: f64 = 20.0;

/// One alerting rule, before it is written.
struct Rule {
    alert: String,
    expr: String,
    hold: Duration,
    labels: Vec<(&'static str, String)>,
    annotations: Vec<(&'static str, String)>,
}

impl Rule {
    /// The same rule with another `condition` label.
    fn condition(mut self, condition: &str) -> Rule {
        for (k, v) in &mut self.labels {
            if *k == "condition" {
                *v = condition.to_string();
            }
        }
        self
    }

    fn to_json(&self) -> Value {
        let text = |pairs: &[(&'static str, String)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(promql::template_literal(v))))
                .collect::<Map<String, Value>>()
        };
        json!({
            "alert": self.alert,
            "expr": self.expr,
            "for": promql::duration(self.hold),
            "labels": text(&self.labels),
            "annotations": text(&self.annotations),
        })
    }
}

/// What the rules file holds beyond the criteria and visibility rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct RulesOptions {
    /// The conventional always-firing `Watchdog` alert (severity `none`),
    /// which Alertmanager routes to a dead-man's switch: when it stops
    /// arriving, Prometheus or Alertmanager is down. Off unless asked for.
    pub watchdog_alert: bool,
}

/// The rules file (JSON, which Prometheus reads as YAML), ending in a newline.
pub fn prometheus_rules(cfg: &Config) -> Result<String, ExportError> {
    prometheus_rules_with(cfg, &RulesOptions::default())
}

/// [`prometheus_rules`] with options (the opt-in `Watchdog` alert).
pub fn prometheus_rules_with(cfg: &Config, opts: &RulesOptions) -> Result<String, ExportError> {
    let groups = rule_groups_with(cfg, opts)?;
    let mut text = serde_json::to_string_pretty(&groups).unwrap_or_default();
    text.push('\n');
    Ok(text)
}

/// The rule groups as a JSON value: `{"groups": [criteria, visibility]}`.
pub fn rule_groups(cfg: &Config) -> Result<Value, ExportError> {
    rule_groups_with(cfg, &RulesOptions::default())
}

/// [`rule_groups`] with options.
pub fn rule_groups_with(cfg: &Config, opts: &RulesOptions) -> Result<Value, ExportError> {
    let q = Queries::new(cfg)?;
    let criteria: Vec<Value> = criterion_rules(cfg, &q).iter().map(Rule::to_json).collect();
    let mut visibility: Vec<Value> = visibility_rules(cfg, &q)
        .iter()
        .map(Rule::to_json)
        .collect();
    if opts.watchdog_alert {
        visibility.push(watchdog_alert(&q).to_json());
    }
    Ok(json!({
        "groups": [
            {"name": format!("soakwatch {}: criteria", q.soak()), "rules": criteria},
            {"name": format!("soakwatch {}: visibility", q.soak()), "rules": visibility},
        ]
    }))
}

/// A rule for criterion `id` with soakwatch's alert labels.
fn rule(
    cfg: &Config,
    q: &Queries,
    id: C,
    expr: String,
    hold: Duration,
    description: String,
) -> Rule {
    Rule {
        alert: format!("soakwatch_{}", id.as_str()),
        expr,
        hold,
        labels: vec![
            ("condition", "failing".to_string()),
            ("criterion", id.as_str().to_string()),
            ("severity", cfg.alerts.severity_of(id).as_str().to_string()),
            ("soak", q.soak().to_string()),
        ],
        annotations: vec![
            ("summary", format!("{} failing", id.title())),
            ("description", description),
        ],
    }
}

fn hold(cfg: &Config, id: C) -> Duration {
    cfg.watch
        .fail_for
        .get(&id)
        .copied()
        .unwrap_or(Duration::ZERO)
}

/// One rule per criterion (two for `dlq`: its hold and its spike), in report order.
fn criterion_rules(cfg: &Config, q: &Queries) -> Vec<Rule> {
    let mut out = Vec::new();
    for id in C::ALL {
        match id {
            C::ConsumerLag => out.push(lag_rule(cfg, q, id)),
            C::Redeliveries => out.push(redeliveries_rule(cfg, q, id)),
            C::Dlq => out.extend(dlq_rules(cfg, q, id)),
            C::SuccessRate => out.push(success_rate_rule(cfg, q, id)),
            C::StreamPurity => out.push(stream_purity_rule(cfg, q, id)),
            C::P95Latency => out.extend(latency_rule(cfg, q, id)),
            C::Topology
            | C::ConsumerConfig
            | C::LegacyIdle
            | C::Fallback
            | C::DbWrites
            | C::DbIntegrity
            | C::ServiceUp => out.push(relayed_rule(cfg, q, id)),
        }
    }
    out
}

/// `consumer_lag`, from soakwatch's value (JetStream state is not in the service's metrics).
fn lag_rule(cfg: &Config, q: &Queries, id: C) -> Rule {
    let cr = &cfg.criteria;
    rule(
        cfg,
        q,
        id,
        format!(
            "max({}) >= {}",
            q.soakwatch("soakwatch_criterion_value", Some(id.as_str())),
            cr.lag_fail
        ),
        hold(cfg, id),
        format!(
            "Consumer lag (pending + ack pending of the most lagging of {}) at or above \
             {}. JetStream consumer lag is not in the service's metrics: this reads \
             soakwatch's soakwatch_criterion_value{{criterion=\"consumer_lag\"}} (per \
             consumer: soakwatch_consumer_criterion_value). A stalled consumer (work \
             pending, no pull for longer than ack_wait) and per-consumer lag limits are \
             judged by soakwatch alone (soakwatch_criterion_status).",
            cfg.consumers.describe(),
            cr.lag_fail
        ),
    )
}

/// `redeliveries`, from soakwatch's value.
fn redeliveries_rule(cfg: &Config, q: &Queries, id: C) -> Rule {
    let cr = &cfg.criteria;
    rule(
        cfg,
        q,
        id,
        format!(
            "max({}) >= {}",
            q.soakwatch("soakwatch_criterion_value", Some(id.as_str())),
            cr.redeliveries_fail
        ),
        hold(cfg, id),
        format!(
            "{} or more messages redelivered to {}. Redeliveries are JetStream consumer \
             state, not in the service's metrics: this reads soakwatch's \
             soakwatch_criterion_value{{criterion=\"redeliveries\"}}.",
            cr.redeliveries_fail,
            cfg.consumers.describe()
        ),
    )
}

/// `dlq`: its hold rule and its spike rule.
fn dlq_rules(cfg: &Config, q: &Queries, id: C) -> Vec<Rule> {
    let m = &cfg.metrics;
    let mut v = Vec::new();
    v.push(rule(
        cfg,
        q,
        id,
        format!(
            "({} > 0) or (max({}) >= 1)",
            q.dlq_total(),
            q.soakwatch("soakwatch_criterion_value", Some(id.as_str()))
        ),
        hold(cfg, id),
        format!(
            "Messages dead-lettered: the service's {}{{{}=\"{}\"}} is above 0 since \
             it started, or soakwatch counts messages in {} beyond its baseline \
             (soakwatch_criterion_value{{criterion=\"dlq\"}}; the stream is not in \
             the service's metrics). Any dead-lettered message fails dlq.",
            m.messages_counter, m.result_label, m.dlq_result, cfg.streams.dlq.name
        ),
    ));
    let window = promql::duration(cfg.watch.dlq_spike_window);
    let limit = cfg.watch.dlq_spike_per_min * cfg.watch.dlq_spike_window.as_secs_f64() / 60.0;
    v.push(
        rule(
            cfg,
            q,
            id,
            format!("{} > {}", q.dlq_increase(&window), promql::number(limit)),
            Duration::ZERO,
            format!(
                "DLQ spike: more than {} message(s) dead-lettered within {window} \
             (dlq_spike_per_min = {}); a spike fails dlq at once, with no `for`. \
             Counted from the service's counter only (soakwatch also counts the \
             DLQ stream's last sequence); Prometheus' increase() extrapolates to \
             the window's edges.",
                promql::number(limit),
                promql::number(cfg.watch.dlq_spike_per_min)
            ),
        )
        .condition("spike"),
    );
    v
}

/// `success_rate`, from the service's counter.
fn success_rate_rule(cfg: &Config, q: &Queries, id: C) -> Rule {
    let (cr, m) = (&cfg.criteria, &cfg.metrics);
    rule(
        cfg,
        q,
        id,
        format!(
            "({}) < {}",
            q.success_ratio(),
            promql::number(cr.success_rate_min)
        ),
        hold(cfg, id),
        format!(
            "Share of {}=\"{}\" among counted messages of {} since the service started \
             below {}{}.",
            m.result_label,
            m.success_result,
            m.messages_counter,
            promql::number(cr.success_rate_min),
            if m.uncounted_results.is_empty() {
                String::new()
            } else {
                format!(" (not counted: {})", m.uncounted_results.join(", "))
            }
        ),
    )
}

/// `stream_purity`, from the service's counter.
fn stream_purity_rule(cfg: &Config, q: &Queries, id: C) -> Rule {
    let m = &cfg.metrics;
    rule(
        cfg,
        q,
        id,
        format!("{} > 0", q.off_stream_total(&cfg.consumers.streams())),
        hold(cfg, id),
        format!(
            "Messages of {} counted with {} other than \"{}\" (or without it) since the \
             service started.",
            m.messages_counter,
            m.stream_label,
            cfg.consumers.streams().join("\" or \"")
        ),
    )
}

/// `p95_latency`, when a latency histogram is configured.
fn latency_rule(cfg: &Config, q: &Queries, id: C) -> Option<Rule> {
    let (cr, m) = (&cfg.criteria, &cfg.metrics);
    let expr = latency_expr(cfg, q)?;
    Some(rule(
        cfg,
        q,
        id,
        expr,
        hold(cfg, id),
        format!(
            "p{} processing time at or above {} ({} bucket interpolation): over \
                 the last {} when it holds at least {MIN_WINDOW_OBSERVATIONS} \
                 observations, else since the service started when that holds as \
                 many (fewer are too few to judge a tail).",
            (cr.latency_quantile * 100.0).round(),
            humantime::format_duration(cr.p95_max),
            m.latency_histogram.as_deref().unwrap_or_default(),
            promql::duration(LATENCY_WINDOW)
        ),
    ))
}

/// A criterion Prometheus cannot compute: soakwatch's debounced status relayed.
fn relayed_rule(cfg: &Config, q: &Queries, id: C) -> Rule {
    rule(
        cfg,
        q,
        id,
        format!(
            "{} == 2",
            q.soakwatch("soakwatch_criterion_status", Some(id.as_str()))
        ),
        Duration::ZERO,
        format!(
            "soakwatch judges this from {}, which Prometheus does not see: the rule \
             relays soakwatch's debounced status (2 = fail, the `for` of checks.toml \
             already applied), so it holds no `for` of its own.",
            relayed_source(id)
        ),
    )
}

/// What soakwatch reads for a criterion Prometheus cannot compute.
fn relayed_source(id: C) -> &'static str {
    match id {
        C::Topology => "the JetStream streams' configuration",
        C::ConsumerConfig => "the JetStream consumer's configuration and the service's env file",
        C::LegacyIdle => "the legacy stream's message count and last sequence in JetStream",
        C::Fallback => "the service's log and /metrics series labelled with the legacy stream",
        C::DbWrites | C::DbIntegrity => "the service's database table",
        C::ServiceUp => "the metrics endpoint's answers and the service's start time against T0",
        _ => "its probes",
    }
}

/// `p95_latency` as soakwatch judges it: the window's own quantile when the
/// window holds enough observations, else the cumulative one when that
/// holds enough; at or above the maximum fails. None without a histogram.
fn latency_expr(cfg: &Config, q: &Queries) -> Option<String> {
    let cr = &cfg.criteria;
    let w = promql::duration(LATENCY_WINDOW);
    let min = promql::number(MIN_WINDOW_OBSERVATIONS);
    let windowed = q.latency_quantile_rate(cr.latency_quantile, &w)?;
    let cumulative = q.latency_quantile_total(cr.latency_quantile)?;
    let in_window = q.latency_observations_increase(&w)?;
    let total = q.latency_observations_total()?;
    Some(format!(
        "(({windowed} and on() {in_window} >= {min}) or ({cumulative} unless on() \
         {in_window} >= {min} and on() {total} >= {min})) >= {}",
        promql::number(cr.p95_max.as_secs_f64())
    ))
}

/// Unknown criteria (soakwatch's warning after `unknown_after`) and a
/// soakwatch that stopped sampling.
fn visibility_rules(cfg: &Config, q: &Queries) -> Vec<Rule> {
    let mut out: Vec<Rule> = C::ALL
        .into_iter()
        .filter(|id| *id != C::P95Latency || q.has_histogram())
        .map(|id| Rule {
            alert: format!("soakwatch_{}", id.as_str()),
            expr: format!(
                "{} == 3",
                q.soakwatch("soakwatch_criterion_status", Some(id.as_str()))
            ),
            hold: cfg.alerts.unknown_after,
            labels: vec![
                ("condition", "unknown".to_string()),
                ("criterion", id.as_str().to_string()),
                ("severity", "warning".to_string()),
                ("soak", q.soak().to_string()),
            ],
            annotations: vec![
                ("summary", format!("{} cannot be determined", id.title())),
                (
                    "description",
                    format!(
                        "soakwatch could not judge {} for {} (alerts.unknown_after): a probe \
                         fails; nobody can see this criterion.",
                        id.as_str(),
                        humantime::format_duration(cfg.alerts.unknown_after)
                    ),
                ),
            ],
        })
        .collect();
    out.push(watchdog_rule(cfg, q));
    out
}

/// soakwatch's own watchdog: the daemon of this soak completed no cycle for
/// three intervals (its listener answers, its loop does not), or it is
/// absent (no series of this soak: killed, frozen, unreachable; Prometheus
/// ends a target's series at its first failed scrape).
fn watchdog_rule(cfg: &Config, q: &Queries) -> Rule {
    let stale_after = cfg.watch.interval * 3;
    let info = q.soakwatch("soakwatch_soak_info", None);
    // A soak signed off at its end samples nothing more, by design.
    let ended = q.soakwatch("soakwatch_soak_ended", None);
    Rule {
        alert: "soakwatch_stale".into(),
        expr: format!(
            "((time() - max(soakwatch_last_sample_timestamp_seconds and on(instance, job) {info}) > {}) \
             unless on() (max({ended}) == 1)) or absent({info})",
            promql::number(stale_after.as_secs_f64()),
        ),
        hold: Duration::from_secs(60),
        labels: vec![
            ("severity", "warning".to_string()),
            ("soak", q.soak().to_string()),
        ],
        annotations: vec![
            ("summary", "soakwatch is not sampling".to_string()),
            (
                "description",
                format!(
                    "soakwatch's watchdog: no completed cycle for more than {} (3 intervals, as \
                     its /healthz), or no soakwatch series for this soak (the daemon is down, \
                     frozen or unreachable): nothing watches the soak, and the rules that read \
                     soakwatch's /metrics cannot fire.",
                    humantime::format_duration(stale_after)
                ),
            ),
        ],
    }
}

/// The conventional always-firing `Watchdog` (kube-prometheus): routed by
/// Alertmanager to a dead-man's switch, its silence says the alerting
/// pipeline itself is down.
fn watchdog_alert(q: &Queries) -> Rule {
    Rule {
        alert: "Watchdog".into(),
        expr: "vector(1)".into(),
        hold: Duration::ZERO,
        labels: vec![
            ("severity", "none".to_string()),
            ("soak", q.soak().to_string()),
        ],
        annotations: vec![
            (
                "summary",
                "An alert that always fires: the alerting pipeline works".to_string(),
            ),
            (
                "description",
                "Always firing, on purpose. Route it in Alertmanager to a dead-man's switch \
                 (a healthchecks.io check, PagerDuty's or Opsgenie's heartbeat): when it stops \
                 arriving there, Prometheus or Alertmanager is down and no soak alert can reach \
                 anyone."
                    .to_string(),
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Config {
        crate::config::shipped_for_tests()
    }

    fn rules(v: &Value) -> Vec<&Value> {
        v["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect()
    }

    fn find<'a>(v: &'a Value, alert: &str, expr_has: &str) -> &'a Value {
        rules(v)
            .into_iter()
            .find(|r| {
                r["alert"] == alert && r["expr"].as_str().is_some_and(|e| e.contains(expr_has))
            })
            .unwrap_or_else(|| panic!("no rule {alert} with {expr_has} in {v:#}"))
    }

    #[test]
    fn dlq_rule_uses_the_counter_hold_and_soakwatch_labels() {
        let v = rule_groups(&shipped()).expect("exports");
        let r = find(&v, "soakwatch_dlq", "> 0");
        assert_eq!(
            r["expr"],
            "(sum(normalize_hrv_messages_total{durable=\"normalize-hrv-durable\",result=\"dlq\"}) > 0) \
             or (max(soakwatch_criterion_value{soak=\"phase-b-staging\",criterion=\"dlq\"}) >= 1)"
        );
        assert_eq!(r["for"], "5m");
        assert_eq!(
            r["labels"],
            json!({"condition": "failing", "criterion": "dlq", "severity": "critical", "soak": "phase-b-staging"})
        );
        assert_eq!(r["annotations"]["summary"], "DLQ stable failing");
        let spike = find(&v, "soakwatch_dlq", "increase(");
        assert_eq!(
            spike["expr"],
            "sum(increase(normalize_hrv_messages_total{durable=\"normalize-hrv-durable\",result=\"dlq\"}[1m])) > 10"
        );
        assert_eq!(spike["for"], "0s");
        assert_eq!(spike["labels"]["condition"], "spike");
    }

    #[test]
    fn lag_reads_soakwatch_with_the_configured_threshold_and_hold() {
        let mut cfg = shipped();
        cfg.watch
            .fail_for
            .insert(C::ConsumerLag, Duration::from_secs(120));
        let v = rule_groups(&cfg).expect("exports");
        let r = find(&v, "soakwatch_consumer_lag", ">= 10");
        assert_eq!(
            r["expr"],
            "max(soakwatch_criterion_value{soak=\"phase-b-staging\",criterion=\"consumer_lag\"}) >= 10"
        );
        assert_eq!(r["for"], "2m");
        assert_eq!(r["labels"]["severity"], "warning");
        assert!(r["annotations"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("soakwatch_criterion_value{criterion=\"consumer_lag\"}")));
    }

    #[test]
    fn success_rate_excludes_uncounted_results() {
        let v = rule_groups(&shipped()).expect("exports");
        let r = find(&v, "soakwatch_success_rate", "< 0.999");
        assert_eq!(
            r["expr"],
            "((sum(normalize_hrv_messages_total{durable=\"normalize-hrv-durable\",result=\"success\"}) or vector(0)) \
             / sum(normalize_hrv_messages_total{durable=\"normalize-hrv-durable\",result!~\"retry\"})) < 0.999"
        );
    }

    #[test]
    fn every_criterion_has_a_rule_and_an_unknown_rule() {
        let v = rule_groups(&shipped()).expect("exports");
        for id in C::ALL {
            let name = format!("soakwatch_{}", id.as_str());
            let n = rules(&v)
                .iter()
                .filter(|r| r["alert"] == name.as_str())
                .count();
            let want = if id == C::Dlq { 3 } else { 2 };
            assert_eq!(n, want, "{name}");
        }
        let stale = find(&v, "soakwatch_stale", "time()");
        assert!(stale["expr"].as_str().is_some_and(|e| e.contains("> 30")));
    }

    #[test]
    fn p95_rule_only_with_a_histogram() {
        let mut cfg = shipped();
        let v = rule_groups(&cfg).expect("exports");
        let r = find(&v, "soakwatch_p95_latency", "histogram_quantile");
        let e = r["expr"].as_str().unwrap_or_default();
        assert!(e.contains("[5m]") && e.ends_with(">= 0.5"), "{e}");
        assert_eq!(r["for"], "1m");
        cfg.metrics.latency_histogram = None;
        let v = rule_groups(&cfg).expect("exports");
        assert!(!rules(&v)
            .iter()
            .any(|r| r["alert"] == "soakwatch_p95_latency"));
    }

    #[test]
    fn names_from_the_config_are_escaped_or_refused() {
        let mut cfg = shipped();
        cfg.soak.name = "a \"b\" {{c}}".into();
        cfg.metrics.matchers = vec![("durable".into(), "x\\y".into())];
        let v = rule_groups(&cfg).expect("exports");
        let r = find(&v, "soakwatch_dlq", "> 0");
        let e = r["expr"].as_str().unwrap_or_default();
        assert!(e.contains(r#"durable="x\\y""#), "{e}");
        assert!(e.contains(r#"soak="a \"b\" {{c}}""#), "{e}");
        assert_eq!(r["labels"]["soak"], "a \"b\" {{ \"{{\" }}c}}");
        cfg.metrics.result_label = "re-sult".into();
        assert_eq!(
            rule_groups(&cfg).unwrap_err(),
            ExportError::InvalidName {
                key: "metrics.result_label".into(),
                name: "re-sult".into(),
                kind: "label"
            }
        );
    }

    #[test]
    fn the_file_is_json_with_two_groups() {
        let text = prometheus_rules(&shipped()).expect("exports");
        let v: Value = serde_json::from_str(&text).expect("JSON");
        let names: Vec<&str> = v["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "soakwatch phase-b-staging: criteria",
                "soakwatch phase-b-staging: visibility"
            ]
        );
    }
}
