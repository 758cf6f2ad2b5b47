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
    /// The soak as shown to people: its name, and for `check --soak` also its
    /// id and progress.
    pub soak: String,
    /// Soak name from the config: the `soak` label, stable across soaks so
    /// dashboards and alert rules survive `--new-soak`.
    pub name: String,
    /// The recorded soak judged (`check --soak`): its id and T0, published in
    /// one info metric rather than in every label.
    pub recorded: Option<(String, DateTime<Utc>)>,
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
    /// `check --soak`: where the record begins (a late watcher's unobserved
    /// head) and the frozen sign-off once the soak ended.
    pub edges: Option<crate::soak::model::SoakEdges>,
    /// `check --soak`: the soak's totals, across service restarts.
    pub totals: Option<crate::soak::model::SoakTotals>,
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

/// Failed probes of a snapshot grouped by reason (one dead NATS server fails
/// every stream probe with the same words): (labels, reason), in probe order.
fn failed_probes(s: &Snapshot) -> Vec<(Vec<String>, String)> {
    let mut groups: Vec<(Vec<String>, String)> = Vec::new();
    for (label, err) in probe_outcomes(s) {
        let Some(reason) = err.filter(|e| !e.is_empty()) else {
            continue;
        };
        match groups.iter_mut().find(|(_, r)| *r == reason) {
            Some((labels, _)) => labels.push(label),
            None => groups.push((vec![label], reason)),
        }
    }
    groups
}

/// Evidence with each failed probe's reason replaced by a reference to the
/// probes line, so one dead probe is explained once, not on every criterion.
fn refer_to_probes(evidence: &str, failed: &[(Vec<String>, String)]) -> String {
    let mut by_length: Vec<&(Vec<String>, String)> = failed.iter().collect();
    by_length.sort_by_key(|(_, r)| std::cmp::Reverse(r.len()));
    let mut out = evidence.to_string();
    for (labels, reason) in by_length {
        let noun = if labels.len() == 1 { "probe" } else { "probes" };
        out = out.replace(
            reason.as_str(),
            &format!("{} {noun} failed, see above", labels.join(", ")),
        );
    }
    out
}

/// Terminal table: failed probes once at the top, then one row per criterion.
pub fn text(r: &CheckReport) -> String {
    let mut out = format!(
        "soakwatch check: {} ({}) at {}; window: {}\n",
        untrusted(&r.soak),
        untrusted(&r.config),
        r.generated_at.format("%Y-%m-%d %H:%M:%SZ"),
        window_label(r.window_secs)
    );
    if let Some(t) = &r.totals {
        let rows: Vec<String> = t
            .rows()
            .into_iter()
            .map(|(what, v)| format!("{}: {v}", what.to_lowercase()))
            .collect();
        out.push_str(&format!("totals: {}\n", untrusted(&rows.join("; "))));
    }
    let failed = failed_probes(&r.last);
    for (labels, reason) in &failed {
        out.push_str(&format!(
            "probe {}: FAILED ({})\n",
            untrusted(&labels.join(", ")),
            untrusted(reason)
        ));
    }
    let w = r
        .verdicts
        .iter()
        .map(|v| v.id.as_str().len())
        .max()
        .unwrap_or(10);
    for v in &r.verdicts {
        out.push_str(&format!(
            "{:<8} {:<w$}  {}  [target {}]\n         {:<w$}  {}\n",
            // "N/A" keeps the column: not configured is not a state to read out.
            if v.status == Status::NotConfigured {
                "N/A".to_string()
            } else {
                v.status.as_str().to_uppercase()
            },
            v.id.as_str(),
            untrusted(&v.observed),
            untrusted(&v.target),
            "",
            untrusted(&refer_to_probes(&v.evidence, &failed)),
        ));
        out.push_str(&instance_lines(v));
    }
    let o = r.overall();
    out.push_str(&format!(
        "OVERALL: {} (exit {})\n",
        o.as_str().to_uppercase(),
        exit_code(o)
    ));
    out
}

/// Most consumers listed under a criterion in the text output.
const TEXT_INSTANCES: usize = 10;

/// A fleet's consumers that do not pass, worst first, under their
/// criterion (one consumer is the criterion itself: nothing to add).
fn instance_lines(v: &Verdict) -> String {
    if v.instances.len() < 2 {
        return String::new();
    }
    let mut bad: Vec<_> = v
        .instances
        .iter()
        .filter(|i| i.status != Status::Pass)
        .collect();
    bad.sort_by_key(|i| std::cmp::Reverse(i.status));
    let mut out = String::new();
    for i in bad.iter().take(TEXT_INSTANCES) {
        out.push_str(&format!(
            "         - {} {}: {} ({})\n",
            i.status.as_str().to_uppercase(),
            untrusted(&i.id.to_string()),
            untrusted(&i.observed),
            untrusted(&i.evidence)
        ));
    }
    if bad.len() > TEXT_INSTANCES {
        out.push_str(&format!(
            "         - and {} more (see --format json)\n",
            bad.len() - TEXT_INSTANCES
        ));
    }
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
    if let Some(t) = &r.totals {
        out.push_str("## Totals\n\n| Total | Over the soak |\n|-------|---------------|\n");
        for (what, v) in t.rows() {
            out.push_str(&format!("| {what} | {} |\n", md_cell(&v)));
        }
        out.push('\n');
    }
    // A dead probe is said once, above the table; criteria refer to it.
    let failed = failed_probes(&r.last);
    if !failed.is_empty() {
        out.push_str("## Probes that failed\n\n");
        for (labels, reason) in &failed {
            out.push_str(&format!(
                "- **{}**: {}\n",
                md_cell(&labels.join(", ")),
                md_cell(reason)
            ));
        }
        out.push('\n');
    }
    out.push_str("## Success criteria\n\n| Criteria | Target | Actual | Status | Evidence |\n|----------|--------|--------|--------|----------|\n");
    for v in &r.verdicts {
        out.push_str(&format!(
            "| {} (`{}`) | {} | {} | {} | {} |\n",
            v.id.title(),
            v.id.as_str(),
            md_cell(&v.target),
            md_cell(&v.observed),
            icon(v.status),
            md_cell(&refer_to_probes(&v.evidence, &failed))
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
    /// Per-consumer criteria: one entry per watched consumer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    consumers: Vec<JsonInstance<'a>>,
}

#[derive(Serialize)]
struct JsonInstance<'a> {
    id: String,
    consumer: &'a str,
    stream: &'a str,
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
    /// `check --soak` only: `observed_from` (the first recorded cycle) and
    /// `ended` (the frozen sign-off: at, signed_at, verdict, reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    soak_edges: Option<&'a crate::soak::model::SoakEdges>,
    /// `check --soak` only: the soak's totals across service restarts.
    #[serde(skip_serializing_if = "Option::is_none")]
    soak_totals: Option<JsonTotals<'a>>,
}

/// The soak's totals with the whole-soak success ratio (0..1, null before
/// a message was counted).
#[derive(Serialize)]
struct JsonTotals<'a> {
    #[serde(flatten)]
    totals: &'a crate::soak::model::SoakTotals,
    success_ratio: Option<f64>,
}

/// The probes that ran, labelled as in the JSON document (the consumer
/// with its durable, as timed), each with its failure reason if any.
fn probe_outcomes(s: &Snapshot) -> Vec<(String, Option<String>)> {
    let consumer = s
        .probe_ms
        .keys()
        .find(|k| k.starts_with("consumer"))
        .cloned()
        .unwrap_or_else(|| "consumer".into());
    s.probe_outcomes()
        .into_iter()
        .map(|(label, f)| {
            let label = if label == "consumer" {
                consumer.clone()
            } else {
                label
            };
            (label, f.map(ToString::to_string))
        })
        .collect()
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
        soak_edges: r.edges.as_ref(),
        soak_totals: r.totals.as_ref().map(|t| JsonTotals {
            totals: t,
            success_ratio: t.success_ratio(),
        }),
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
                consumers: v
                    .instances
                    .iter()
                    .map(|i| JsonInstance {
                        id: i.id.to_string(),
                        consumer: &i.consumer,
                        stream: &i.stream,
                        status: i.status.as_str(),
                        observed: crate::secret::scrub(&i.observed),
                        target: crate::secret::scrub(&i.target),
                        evidence: crate::secret::scrub(&i.evidence),
                        value: i.value.filter(|x| x.is_finite()),
                    })
                    .collect(),
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
                        error: e.as_deref().map(crate::secret::scrub),
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

/// A threshold range of the Nagios plugin guidelines
/// (<https://nagios-plugins.org/doc/guidelines.html#THRESHOLDFORMAT>): the
/// runner alerts when the value is outside `start..end` (inclusive), or
/// inside it with a leading `@`. Only the shapes our criteria need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range {
    /// `x`: alert outside 0..x, i.e. above x (values are never negative).
    AtMost(f64),
    /// `x:`: alert below x ("higher is better").
    AtLeast(f64),
    /// `@x:`: alert inside x..∞, i.e. at or above x (a strict "< x" target).
    Under(f64),
}

impl Range {
    /// Whether a plugin runner alerts on `v` under this range.
    pub fn alerts(self, v: f64) -> bool {
        match self {
            Range::AtMost(x) => v < 0.0 || v > x,
            Range::AtLeast(x) => v < x,
            Range::Under(x) => v >= x,
        }
    }

    /// The range as written in perfdata.
    pub fn render(self) -> String {
        match self {
            Range::AtMost(x) => perf_number(x, 6),
            Range::AtLeast(x) => format!("{}:", perf_number(x, 6)),
            Range::Under(x) => format!("@{}:", perf_number(x, 6)),
        }
    }

    /// "Fails at or above `t`" for a count: `t-1` when `t` is a whole number
    /// (lag < 10 passes on 0..9, so `9`), else the exact `@t:`.
    fn fails_from(t: f64) -> Range {
        if t.fract() == 0.0 && t >= 1.0 {
            Range::AtMost(t - 1.0)
        } else {
            Range::Under(t)
        }
    }
}

/// How one criterion's number reads in perfdata: unit, thresholds, bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct PerfRule {
    /// Unit of measurement (`%`, `ms`, or empty for a plain count).
    pub uom: &'static str,
    /// Warning range, if the number has one.
    pub warn: Option<Range>,
    /// Critical range, if the number has one.
    pub crit: Option<Range>,
    /// Smallest possible value.
    pub min: Option<f64>,
    /// Largest possible value.
    pub max: Option<f64>,
}

/// The perfdata rule of a verdict's number, from the criterion's direction
/// and the thresholds on the verdict. None for a criterion with no number
/// (`consumer_config`, or one not configured).
///
/// Each range alerts exactly where the criterion's number fails it; a
/// criterion may also fail for a reason that is not its number (a stalled
/// consumer with little lag, a service restart while it is up), which the
/// exit code and the summary carry.
pub fn perf_rule(v: &Verdict) -> Option<PerfRule> {
    use crate::verdict::CriterionId as C;
    if v.status == Status::NotConfigured {
        return None;
    }
    let count = |warn: Option<Range>, crit: Option<Range>| PerfRule {
        uom: "",
        warn,
        crit,
        min: Some(0.0),
        max: None,
    };
    let fails_from = |t: Option<f64>| t.map(Range::fails_from);
    Some(match v.id {
        C::ConsumerConfig => return None,
        // Counts that fail at or above their threshold.
        C::Topology | C::LegacyIdle | C::Dlq | C::Fallback | C::DbIntegrity => {
            count(None, fails_from(v.fail_at))
        }
        C::ConsumerLag | C::Redeliveries => count(fails_from(v.warn_at), fails_from(v.fail_at)),
        C::DbWrites => count(None, None),
        // Percentages that fail below their threshold.
        C::StreamPurity | C::SuccessRate => PerfRule {
            uom: "%",
            warn: None,
            crit: v.fail_at.map(Range::AtLeast),
            min: Some(0.0),
            max: Some(100.0),
        },
        // Over target is a warning at least; with too few observations to
        // judge a tail (the evaluator's warn), the critical range is not in force.
        C::P95Latency => PerfRule {
            uom: "ms",
            warn: v.fail_at.map(Range::Under),
            crit: v
                .fail_at
                .filter(|_| v.status != Status::Warn)
                .map(Range::Under),
            min: Some(0.0),
            max: None,
        },
        // Up must be 1.
        C::ServiceUp => PerfRule {
            uom: "",
            warn: None,
            crit: Some(Range::AtLeast(1.0)),
            min: Some(0.0),
            max: Some(1.0),
        },
    })
}

/// The status a plugin runner derives from a value and its ranges.
pub fn perf_status(value: f64, warn: Option<Range>, crit: Option<Range>) -> Status {
    if crit.is_some_and(|r| r.alerts(value)) {
        Status::Fail
    } else if warn.is_some_and(|r| r.alerts(value)) {
        Status::Warn
    } else {
        Status::Pass
    }
}

/// A number with at most `decimals` decimals, trailing zeros trimmed.
fn perf_number(x: f64, decimals: usize) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        return format!("{}", x as i64);
    }
    let s = format!("{x:.decimals$}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// The value as printed: three decimals, or more when rounding would move it
/// across a threshold (99.9996 % must not read as a passing 100).
fn perf_value(x: f64, rule: &PerfRule, status: Status) -> String {
    let printed = |s: &str| s.parse::<f64>().unwrap_or(x);
    let shown = |s: &str| perf_status(printed(s), rule.warn, rule.crit);
    // What the thresholds say of the exact number, unless the criterion's own
    // status is one they can express and the number sits at the boundary.
    let want = match status {
        Status::Pass | Status::Warn | Status::Fail => status,
        _ => perf_status(x, rule.warn, rule.crit),
    };
    let candidates = [perf_number(x, 3), perf_number(x, 6), format!("{x}")];
    candidates
        .iter()
        .find(|s| shown(s) == want)
        .unwrap_or(&candidates[0])
        .clone()
}

/// One perfdata item, `'label'=value[UOM];[warn];[crit];[min];[max]`, with
/// `U` for a number that could not be determined (never 0). None for a
/// criterion that has no number.
pub fn perf_item(v: &Verdict) -> Option<String> {
    perf_item_labelled(v, v.id.as_str())
}

/// Every perfdata item of a verdict: its own, then one per consumer
/// (`'consumer_lag/<durable>'`) for a per-consumer criterion.
pub fn perf_items(v: &Verdict) -> Vec<String> {
    let mut out: Vec<String> = perf_item(v).into_iter().collect();
    for i in &v.instances {
        out.extend(perf_item_labelled(&i.to_verdict(v.id), &i.id.to_string()));
    }
    out
}

/// [`perf_item`] under another label (a consumer's id). A label with a
/// quote would end the item: quotes are doubled, as the guidelines say.
fn perf_item_labelled(v: &Verdict, label: &str) -> Option<String> {
    let rule = perf_rule(v)?;
    let label = label.replace('\'', "''");
    let value = match v.value.filter(|x| x.is_finite()) {
        Some(x) if v.status != Status::Unknown => {
            format!("{}{}", perf_value(x, &rule, v.status), rule.uom)
        }
        _ => "U".to_string(),
    };
    let opt = |r: Option<Range>| r.map(Range::render).unwrap_or_default();
    let num = |x: Option<f64>| x.map(|x| perf_number(x, 6)).unwrap_or_default();
    let item = format!(
        "'{}'={value};{};{};{};{}",
        label,
        opt(rule.warn),
        opt(rule.crit),
        num(rule.min),
        num(rule.max)
    );
    Some(item.trim_end_matches(';').to_string())
}

/// `STATUS summary | 'label'=value[UOM];warn;crit;min;max ...` (Nagios
/// plugin guidelines: thresholds are ranges that alert outside themselves).
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
    for s in [Status::Fail, Status::Unknown, Status::Pending, Status::Warn] {
        if count(s) > 0 {
            summary.push(format!("{} {} ({})", count(s), s.as_str(), names(s)));
        }
    }
    summary.push(format!("{} pass", count(Status::Pass)));
    let perf: Vec<String> = r.verdicts.iter().flat_map(perf_items).collect();
    // Nagios knows four states: a failure inside its hold exits 1, so it reads WARNING.
    let label = match o {
        Status::Pending => Status::Warn.label(),
        o => o.label(),
    };
    format!(
        "SOAKWATCH {} - {} | {}\n",
        label,
        summary.join(", "),
        perf.join(" ")
    )
}

/// A label value for the textfile: escaped for the format, then made safe
/// (secrets scrubbed, control characters visible).
fn prom_escape(s: &str) -> String {
    untrusted(&crate::promtext::escape_label_value(s))
}

/// The `probe` label of a probe's timing key: the consumer is `consumer`
/// (as on the daemon's /metrics), whatever its durable is called.
fn probe_label(key: &str) -> &str {
    if key.starts_with("consumer") {
        "consumer"
    } else {
        key
    }
}

/// `soakwatch_soak_info{soak, id} 1` and `soakwatch_soak_start_timestamp_seconds{soak}`:
/// the one place a soak's id and T0 appear, so every other series keeps its
/// labels from one soak to the next. Shared with the daemon's /metrics.
pub fn soak_info_families(
    w: &mut crate::promtext::ExpositionWriter,
    soak: &str,
    id: &str,
    t0: DateTime<Utc>,
) {
    w.family(
        "soakwatch_soak_info",
        "gauge",
        "The soak being judged: its id (name and T0) as a label, value 1.",
    )
    .sample(&[("soak", soak), ("id", id)], 1);
    w.family(
        "soakwatch_soak_start_timestamp_seconds",
        "gauge",
        "T0 of the soak.",
    )
    .sample(&[("soak", soak)], t0.timestamp_millis() as f64 / 1000.0);
}

/// `soakwatch_criterion_value{soak, criterion}`: each criterion's main number
/// (none when it could not be determined). Shared with the daemon's /metrics.
pub fn criterion_value_family<'a>(
    w: &mut crate::promtext::ExpositionWriter,
    soak: &str,
    verdicts: impl Iterator<Item = &'a Verdict>,
) {
    w.family(
        "soakwatch_criterion_value",
        "gauge",
        "Main observed value of the criterion.",
    );
    for v in verdicts {
        if let Some(x) = v.value.filter(|x| x.is_finite()) {
            if v.status != Status::Unknown {
                w.sample(&[("soak", soak), ("criterion", v.id.as_str())], x);
            }
        }
    }
}

/// `soakwatch_consumer_criterion_status` and `_value{soak, criterion,
/// consumer, stream}`: each watched consumer's part of the per-consumer
/// criteria, `criterion` being its stable id (`consumer_lag/<durable>`).
/// Separate families, so that `soakwatch_criterion_*{criterion="consumer_lag"}`
/// stays one series (the worst consumer). Shared with the daemon's /metrics.
pub fn consumer_families<'a>(
    w: &mut crate::promtext::ExpositionWriter,
    soak: &str,
    verdicts: impl Iterator<Item = &'a Verdict> + Clone,
) {
    w.family(
        "soakwatch_consumer_criterion_status",
        "gauge",
        "One consumer's status in a per-consumer criterion (same codes), this cycle.",
    );
    for v in verdicts.clone() {
        for i in &v.instances {
            let labels = [
                ("soak", soak),
                ("criterion", &i.id.to_string()),
                ("consumer", i.consumer.as_str()),
                ("stream", i.stream.as_str()),
            ];
            w.sample(&labels, i.status.code());
        }
    }
    w.family(
        "soakwatch_consumer_criterion_value",
        "gauge",
        "One consumer's observed value in a per-consumer criterion (lag, redeliveries).",
    );
    for v in verdicts {
        for i in &v.instances {
            if let Some(x) = i
                .value
                .filter(|x| x.is_finite() && i.status != Status::Unknown)
            {
                let labels = [
                    ("soak", soak),
                    ("criterion", &i.id.to_string()),
                    ("consumer", i.consumer.as_str()),
                    ("stream", i.stream.as_str()),
                ];
                w.sample(&labels, x);
            }
        }
    }
}

/// `soakwatch_probe_up{soak, probe}` for a snapshot. Shared with the daemon's /metrics.
pub fn probe_up_family(w: &mut crate::promtext::ExpositionWriter, soak: &str, s: &Snapshot) {
    w.family(
        "soakwatch_probe_up",
        "gauge",
        "Whether the probe produced a sample (1) or failed (0).",
    );
    for (k, e) in &probe_outcomes(s) {
        w.sample(
            &[("soak", soak), ("probe", probe_label(k))],
            u8::from(e.is_none()),
        );
    }
}

/// The soak's totals across service restarts, for the daemon's /metrics
/// and `check --soak --format prometheus` alike. Gauges: a new soak starts
/// them again. A total never seen is left out, never written as 0.
pub fn soak_totals_families(
    w: &mut crate::promtext::ExpositionWriter,
    soak: &str,
    t: &crate::soak::model::SoakTotals,
) {
    let one =
        |w: &mut crate::promtext::ExpositionWriter, name: &str, help: &str, v: Option<f64>| {
            if let Some(v) = v {
                w.family(name, "gauge", help).sample(&[("soak", soak)], v);
            }
        };
    one(
        w,
        "soakwatch_soak_delivered_messages",
        "Deliveries to the service's durables over the soak (JetStream consumer sequences, redeliveries included).",
        t.delivered.map(|n| n as f64),
    );
    if !t.processed.is_empty() {
        w.family(
            "soakwatch_soak_processed_messages",
            "gauge",
            "Messages processed over the soak by result, across service restarts.",
        );
        for (result, n) in &t.processed {
            w.sample(&[("soak", soak), ("result", result)], *n);
        }
    }
    one(
        w,
        "soakwatch_soak_success_ratio",
        "Succeeded / counted messages over the whole soak (0..1).",
        t.success_ratio(),
    );
    one(
        w,
        "soakwatch_soak_dead_lettered_messages",
        "Messages dead-lettered over the soak, counted once (the larger of the DLQ stream's growth and the counter).",
        t.dead_lettered.map(|n| n as f64),
    );
    one(
        w,
        "soakwatch_soak_rows_written",
        "Rows written to the service's table over the soak.",
        t.rows_written.map(|n| n as f64),
    );
    one(
        w,
        "soakwatch_soak_legacy_appends",
        "Messages appended to the legacy stream over the soak.",
        t.legacy_appends.map(|n| n as f64),
    );
    one(
        w,
        "soakwatch_soak_service_restarts",
        "Service restarts seen over the soak.",
        Some(t.service_restarts as f64),
    );
}

/// node_exporter textfile: per-criterion status and value, probe health.
/// Labels are those of the daemon's /metrics for the same things: `soak` is
/// the soak's name, `criterion` its id, `probe` the probe.
pub fn prometheus(r: &CheckReport) -> String {
    let mut w = crate::promtext::ExpositionWriter::new(prom_escape);
    let soak = r.name.as_str();
    if let Some((id, t0)) = &r.recorded {
        soak_info_families(&mut w, soak, id, *t0);
    }
    if let Some(t) = &r.totals {
        soak_totals_families(&mut w, soak, t);
    }
    w.family(
        "soakwatch_criterion_status",
        "gauge",
        "Criterion status: 0 pass, 1 warn, 2 fail, 3 unknown, 4 pending, -1 not configured.",
    );
    for v in &r.verdicts {
        w.sample(
            &[("soak", soak), ("criterion", v.id.as_str())],
            v.status.code(),
        );
    }
    criterion_value_family(&mut w, soak, r.verdicts.iter());
    consumer_families(&mut w, soak, r.verdicts.iter());
    w.family(
        "soakwatch_overall_status",
        "gauge",
        "Overall status: 0 pass, 1 warn, 2 fail, 3 unknown, 4 pending.",
    )
    .sample(&[("soak", soak)], r.overall().code());
    probe_up_family(&mut w, soak, &r.last);
    w.family(
        "soakwatch_probe_duration_seconds",
        "gauge",
        "Wall time of the probe.",
    );
    for (k, ms) in &r.last.probe_ms {
        w.sample(
            &[("soak", soak), ("probe", probe_label(k))],
            *ms as f64 / 1000.0,
        );
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

    use crate::sample::{ProbeFailure, ProbeKind};
    use crate::verdict::CriterionId as C;

    fn verdict(
        id: C,
        status: Status,
        value: Option<f64>,
        warn: Option<f64>,
        fail: Option<f64>,
    ) -> Verdict {
        let v = Verdict::new(id, status, "o", "t", "e");
        match value {
            Some(x) => v.with_value(x, warn, fail),
            None => v,
        }
    }

    fn item(
        id: C,
        status: Status,
        value: Option<f64>,
        warn: Option<f64>,
        fail: Option<f64>,
    ) -> String {
        perf_item(&verdict(id, status, value, warn, fail)).unwrap_or_default()
    }

    #[test]
    fn ranges_alert_outside_themselves_like_a_plugin_runner() {
        assert!(Range::AtMost(9.0).alerts(10.0) && !Range::AtMost(9.0).alerts(9.0));
        assert!(Range::AtLeast(99.9).alerts(99.8) && !Range::AtLeast(99.9).alerts(99.9));
        assert!(Range::Under(500.0).alerts(500.0) && !Range::Under(500.0).alerts(499.9));
        assert_eq!(Range::AtMost(9.0).render(), "9");
        assert_eq!(Range::AtLeast(99.9).render(), "99.9:");
        assert_eq!(Range::Under(500.0).render(), "@500:");
        assert_eq!(Range::fails_from(10.0), Range::AtMost(9.0));
        assert_eq!(Range::fails_from(2.5), Range::Under(2.5));
    }

    #[test]
    fn perfdata_thresholds_read_the_right_way_round_with_units() {
        // lag < 10 passes on 0..9; warning from 5.
        assert_eq!(
            item(
                C::ConsumerLag,
                Status::Pass,
                Some(0.0),
                Some(5.0),
                Some(10.0)
            ),
            "'consumer_lag'=0;4;9;0"
        );
        // Higher is better: 99.9 passes, below alerts; a percentage.
        assert_eq!(
            item(C::SuccessRate, Status::Pass, Some(100.0), None, Some(99.9)),
            "'success_rate'=100%;;99.9:;0;100"
        );
        // Up must be 1.
        assert_eq!(
            item(C::ServiceUp, Status::Pass, Some(1.0), None, Some(0.0)),
            "'service_up'=1;;1:;0;1"
        );
        assert_eq!(
            item(C::ServiceUp, Status::Fail, Some(0.0), None, Some(0.0)),
            "'service_up'=0;;1:;0;1"
        );
        // Latency in ms, strict "< 500 ms".
        assert_eq!(
            item(C::P95Latency, Status::Pass, Some(12.5), None, Some(500.0)),
            "'p95_latency'=12.5ms;@500:;@500:;0"
        );
        // Too few observations: over target only warns, and so do the ranges.
        let few = verdict(C::P95Latency, Status::Warn, Some(900.0), None, Some(500.0));
        assert_eq!(
            perf_item(&few).as_deref(),
            Some("'p95_latency'=900ms;@500:;;0")
        );
        assert_eq!(
            item(C::Dlq, Status::Fail, Some(2.0), None, Some(1.0)),
            "'dlq'=2;;0;0"
        );
        assert_eq!(
            item(C::LegacyIdle, Status::Pass, Some(55.0), None, Some(56.0)),
            "'legacy_idle'=55;;55;0"
        );
        assert_eq!(
            item(C::DbWrites, Status::Pass, Some(3.0), None, None),
            "'db_writes'=3;;;0"
        );
        assert_eq!(
            perf_item(&verdict(C::ConsumerConfig, Status::Pass, None, None, None)),
            None
        );
        assert_eq!(
            perf_item(&verdict(
                C::P95Latency,
                Status::NotConfigured,
                None,
                None,
                None
            )),
            None
        );
    }

    #[test]
    fn a_failure_inside_its_hold_reads_warning_as_its_exit_code_does() {
        let r = report(vec![verdict(
            C::Dlq,
            Status::Pending,
            Some(1.0),
            None,
            Some(1.0),
        )]);
        let line = nagios(&r);
        assert!(
            line.starts_with("SOAKWATCH WARNING - 1 pending (dlq), 0 pass | 'dlq'=1;;0;0"),
            "{line}"
        );
        assert_eq!(exit_code(r.overall()), 1);
    }

    #[test]
    fn an_unknown_value_is_u_never_zero() {
        assert_eq!(
            item(C::Dlq, Status::Unknown, Some(0.0), None, Some(1.0)),
            "'dlq'=U;;0;0"
        );
        assert_eq!(
            item(C::ConsumerLag, Status::Unknown, None, None, None),
            "'consumer_lag'=U;;;0"
        );
        assert_eq!(
            item(
                C::SuccessRate,
                Status::Pass,
                Some(f64::NAN),
                None,
                Some(99.9)
            ),
            "'success_rate'=U;;99.9:;0;100"
        );
    }

    #[test]
    fn rounding_never_moves_a_value_across_its_threshold() {
        // 99.9996 % fails a 100 % target: it must not print as 100.
        let v = verdict(
            C::StreamPurity,
            Status::Fail,
            Some(99.9996),
            None,
            Some(100.0),
        );
        assert_eq!(
            perf_item(&v).as_deref(),
            Some("'stream_purity'=99.9996%;;100:;0;100")
        );
        // A rate exactly at a target that is not exact in binary passes as printed.
        let v = verdict(
            C::SuccessRate,
            Status::Pass,
            Some(999.0 / 1000.0 * 100.0),
            None,
            Some(0.999 * 100.0),
        );
        let it = perf_item(&v).unwrap_or_default();
        let fields: Vec<&str> = it
            .split_once('=')
            .map(|(_, f)| f.split(';').collect())
            .unwrap_or_default();
        let value: f64 = fields[0].trim_end_matches('%').parse().unwrap_or(f64::NAN);
        let crit: f64 = fields[2].trim_end_matches(':').parse().unwrap_or(f64::NAN);
        assert!(!Range::AtLeast(crit).alerts(value), "{it}");
    }

    fn failing_snapshot() -> Snapshot {
        let f = |probe, reason: &str| {
            ProbeFailure::new(probe, crate::sample::ProbeError::Other(reason.into()))
        };
        let refused = "GET http://127.0.0.1:9/metrics: connection refused";
        Snapshot {
            taken_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
            streams: Default::default(),
            consumers: [("AA_CORE_HOT".to_string(), Ok(Some(vec![])))].into(),
            metrics: Err(f(ProbeKind::Metrics, refused)),
            db: Err(f(ProbeKind::Database, "relation hrv_data does not exist")),
            log: Err(f(ProbeKind::Log, refused)),
            env: Ok(Default::default()),
            probe_ms: [
                ("consumer normalize".to_string(), 3u64),
                ("metrics".to_string(), 1),
            ]
            .into_iter()
            .collect(),
            consumers_elided: false,
        }
    }

    fn report(verdicts: Vec<Verdict>) -> CheckReport {
        CheckReport {
            soak: "phase-b".into(),
            name: "phase-b".into(),
            recorded: None,
            config: "checks.toml".into(),
            generated_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
            window_secs: 0.0,
            verdicts,
            last: failing_snapshot(),
            edges: None,
            totals: None,
        }
    }

    #[test]
    fn a_dead_probe_is_explained_once_and_referred_to() {
        let refused = "GET http://127.0.0.1:9/metrics: connection refused";
        let r = report(vec![
            Verdict::unknown(C::SuccessRate, ">= 99.9%", refused),
            Verdict::new(C::ServiceUp, Status::Fail, "down", "up", refused),
            Verdict::unknown(
                C::DbIntegrity,
                "x",
                format!("{refused}; relation hrv_data does not exist"),
            ),
        ]);
        let out = text(&r);
        assert_eq!(out.matches("connection refused").count(), 1, "{out}");
        assert!(
            out.contains(
                "probe metrics, log: FAILED (GET http://127.0.0.1:9/metrics: connection refused)"
            ),
            "{out}"
        );
        assert!(
            out.contains("metrics, log probes failed, see above"),
            "{out}"
        );
        assert!(out.contains("database probe failed, see above"), "{out}");
        assert_eq!(out.matches("does not exist").count(), 1, "{out}");
    }

    #[test]
    fn textfile_labels_are_the_soak_name_and_the_daemons_probe_names() {
        let mut r = report(vec![verdict(
            C::Dlq,
            Status::Unknown,
            Some(0.0),
            None,
            Some(1.0),
        )]);
        let t0 = DateTime::from_timestamp(1_799_990_000, 0).unwrap_or_default();
        r.recorded = Some(("phase-b-20270115T080000Z".into(), t0));
        let out = prometheus(&r);
        let expo = crate::promtext::parse(&out);
        assert!(expo.errors.is_empty(), "{:?}", expo.errors);
        assert!(
            out.contains("soakwatch_probe_up{soak=\"phase-b\",probe=\"consumer\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("soakwatch_probe_duration_seconds{soak=\"phase-b\",probe=\"consumer\"}"),
            "{out}"
        );
        // The id appears in the info metric only.
        assert_eq!(out.matches("20270115T080000Z").count(), 1, "{out}");
        assert!(
            out.contains("soakwatch_soak_info{soak=\"phase-b\",id=\"phase-b-20270115T080000Z\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("soakwatch_soak_start_timestamp_seconds{soak=\"phase-b\"} 1799990000"),
            "{out}"
        );
        // An unknown value is absent, never 0.
        assert!(!out.contains("soakwatch_criterion_value{"), "{out}");
    }
}
