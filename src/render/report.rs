//! Checkpoint and on-demand soak reports in Markdown, shaped like the
//! deployment record of the Phase B cutover: a verdict line, the
//! record's Day 1 / Day 2 health-check list ticked from evidence, the stream
//! and consumer tables, the success-criteria table with soak status and
//! coverage, probe coverage, incidents and chart links.
//!
//! Pure: everything comes from the [`SoakSummary`] (its `now` is the report's
//! time), so the same summary always gives the same bytes.

use chrono::{DateTime, Utc};

use crate::soak::model::{CriterionSummary, SoakSummary, Span};
use crate::verdict::{CriterionId, Status};

/// Lag limit the deployment record's checklist names when no verdict says otherwise.
const DEFAULT_LAG_FAIL: f64 = 10.0;

use crate::render::check::icon;

use crate::render::markdown::md_cell as cell;
use crate::render::number::{human_duration as duration, human_number as num};

/// Text on one line (headings, list items).
fn line(s: &str) -> String {
    s.replace("\r\n", " ").replace(['\n', '\r'], " ")
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A share 0..1 as a percentage with one decimal, truncated so that 99.96 %
/// does not show as a complete 100.0 %.
fn pct(share: f64) -> String {
    if !share.is_finite() {
        return "-".into();
    }
    let v = (share.clamp(0.0, 1.0) * 1000.0).floor() / 10.0;
    format!("{v:.1} %")
}

fn elapsed_secs(s: &SoakSummary) -> f64 {
    (s.now - s.t0).num_milliseconds() as f64 / 1000.0
}

fn finished(s: &SoakSummary) -> bool {
    s.is_ended() || elapsed_secs(s) >= s.planned_secs
}

/// Name of the stream messages should be on: the durable's stream in the
/// newest snapshot, else the quoted value in stream_purity's target
/// (`… stream="AA_CORE_HOT"`).
fn core_stream(s: &SoakSummary) -> String {
    if let Some(snap) = &s.last_snapshot {
        let listed: Vec<&str> = snap
            .consumers
            .iter()
            .filter(|(k, l)| !k.is_empty() && matches!(l, Ok(Some(v)) if !v.is_empty()))
            .map(|(k, _)| k.as_str())
            .collect();
        if !listed.is_empty() {
            return listed.join(" and ");
        }
    }
    if let Some(c) = s.criterion(CriterionId::StreamPurity) {
        let t = &c.last.target;
        if let Some(open) = t.rfind("=\"") {
            let rest = &t[open + 2..];
            if let Some(close) = rest.find('"') {
                if close > 0 {
                    return rest[..close].to_string();
                }
            }
        }
    }
    "the new".into()
}

/// Evidence that one criterion held over the soak with enough coverage.
fn held(s: &SoakSummary, id: CriterionId) -> (bool, String) {
    let Some(c) = s.criterion(id) else {
        return (false, format!("no judgement of {} recorded", id.as_str()));
    };
    let covered = c.coverage >= s.min_coverage;
    let ok = c.soak == Status::Pass && covered;
    let mut ev = format!(
        "{} {} over the soak, coverage {}",
        id.as_str(),
        c.soak.as_str(),
        pct(c.coverage)
    );
    if !covered {
        ev.push_str(&format!(" (below {})", pct(s.min_coverage)));
    }
    if c.fail_secs > 0.0 {
        ev.push_str(&format!(", failing for {}", duration(c.fail_secs)));
    }
    ev.push_str(&format!("; now: {}", c.last.observed));
    (ok, ev)
}

fn all_held(s: &SoakSummary) -> (bool, String) {
    if s.criteria.is_empty() {
        return (false, "no criteria judged".into());
    }
    let bad: Vec<String> = s
        .criteria
        .iter()
        .filter(|c| !matches!(c.soak, Status::Pass | Status::NotConfigured))
        .map(|c| format!("{} {}", c.id.as_str(), c.soak.as_str()))
        .collect();
    if bad.is_empty() {
        let nc = s
            .criteria
            .iter()
            .filter(|c| c.soak == Status::NotConfigured)
            .count();
        let pass = s.criteria.len() - nc;
        let mut ev = format!("{pass} criteria pass over the soak");
        if nc > 0 {
            ev.push_str(&format!(", {nc} not configured"));
        }
        (true, ev)
    } else {
        (false, format!("not maintained: {}", bad.join(", ")))
    }
}

/// The deployment record's five Day 1 / Day 2 health checks, each ticked only
/// when the soak has reached that day (Day 1 at half the planned length, Day 2
/// at the planned length) and the evidence over the soak so far supports it;
/// the text carries the evidence in parentheses.
pub fn checklist(summary: &SoakSummary) -> Vec<(bool, String)> {
    let planned = if summary.planned_secs.is_finite() {
        summary.planned_secs.max(0.0)
    } else {
        0.0
    };
    let day1 = planned / 2.0;
    let day2 = planned;
    let elapsed = elapsed_secs(summary);
    let d1 = duration(day1);
    let d2 = duration(day2);
    let lag_fail = summary
        .criterion(CriterionId::ConsumerLag)
        .and_then(|c| c.last.fail_at)
        .filter(|v| v.is_finite())
        .unwrap_or(DEFAULT_LAG_FAIL);
    let stream = core_stream(summary);

    let items: [(f64, String, (bool, String)); 5] = [
        (
            day1,
            format!("Day 1 ({d1}): Zero fallback events in logs"),
            held(summary, CriterionId::Fallback),
        ),
        (
            day1,
            format!("Day 1 ({d1}): 100% of messages on {stream} stream"),
            held(summary, CriterionId::StreamPurity),
        ),
        (
            day1,
            format!("Day 1 ({d1}): Consumer lag < {} messages", num(lag_fail)),
            held(summary, CriterionId::ConsumerLag),
        ),
        (
            day2,
            format!("Day 2 ({d2}): All success criteria maintained"),
            all_held(summary),
        ),
        (
            day2,
            format!("Day 2 ({d2}): Database integrity verified (no missing records)"),
            held(summary, CriterionId::DbIntegrity),
        ),
    ];
    items
        .into_iter()
        .map(|(due, text, (ok, ev))| {
            if elapsed < due {
                (
                    false,
                    format!(
                        "{text} (not reached yet: {} of {})",
                        duration(elapsed),
                        duration(due)
                    ),
                )
            } else {
                (ok, format!("{text} ({})", line(&ev)))
            }
        })
        .collect()
}

fn warnings(s: &SoakSummary) -> String {
    s.criteria
        .iter()
        .filter(|c| c.soak == Status::Warn)
        .map(|c| match c.worst_value {
            Some(v) => format!("{} (`{}`, worst {})", c.id.title(), c.id.as_str(), num(v)),
            None => format!("{} (`{}`)", c.id.title(), c.id.as_str()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The one-line verdict: approval only for a finished soak.
fn verdict_line(s: &SoakSummary) -> String {
    let reason = if s.verdict_reason.trim().is_empty() {
        "no reason recorded".to_string()
    } else {
        line(&s.verdict_reason)
    };
    match (s.verdict, finished(s)) {
        (Status::Pass, true) => "✅ APPROVED FOR PRODUCTION".into(),
        (Status::Pass, false) => "⏳ SOAK IN PROGRESS — no failure so far".into(),
        (Status::Warn, true) => {
            format!("⚠️ APPROVED FOR PRODUCTION WITH WARNINGS — {}", warnings(s))
        }
        (Status::Warn, false) => format!(
            "⏳ SOAK IN PROGRESS — no failure so far (warnings: {})",
            warnings(s)
        ),
        (Status::Fail, _) => format!("❌ NOT APPROVED — {reason}"),
        (Status::Pending, _) => format!("⏳ NOT APPROVED YET — {reason}"),
        (Status::Unknown | Status::NotConfigured, _) => {
            format!("❓ NOT APPROVED — cannot tell: {reason}")
        }
    }
}

fn state_tables(s: &SoakSummary, out: &mut String) {
    let Some(snap) = &s.last_snapshot else {
        out.push_str(
            "## Stream state\n\nNo snapshot yet.\n\n## Consumer health\n\nNo snapshot yet.\n\n",
        );
        return;
    };
    let tables = crate::render::markdown::state_tables_markdown(snap);
    // The report says when the tables were true.
    out.push_str(&tables.replacen(
        "## Stream state\n\n",
        &format!("## Stream state\n\nAs of {}.\n\n", ts(snap.taken_at)),
        1,
    ));
}

fn criteria_table(s: &SoakSummary, out: &mut String) {
    out.push_str("## Success criteria\n\n| Criteria | Target | Actual | Status | Soak | Coverage |\n|----------|--------|--------|--------|------|----------|\n");
    for c in &s.criteria {
        let coverage = if c.soak == Status::NotConfigured {
            "-".to_string()
        } else {
            pct(c.coverage)
        };
        out.push_str(&format!(
            "| {} (`{}`) | {} | {} | {} | {} | {} |\n",
            c.id.title(),
            c.id.as_str(),
            cell(&c.last.target),
            cell(&c.last.observed),
            icon(c.now),
            icon(c.soak),
            coverage
        ));
    }
    if s.criteria.is_empty() {
        out.push_str("| (no criteria judged yet) | | | | | |\n");
    }
    out.push_str(&format!(
        "\nStatus is the debounced status now; Soak is the verdict over the whole soak (a pass needs {} coverage).\n\n",
        pct(s.min_coverage)
    ));
}

fn coverage_table(s: &SoakSummary, out: &mut String) {
    out.push_str("## Probe coverage\n\n");
    if s.coverage.is_empty() {
        out.push_str("No probe has run yet.\n\n");
        return;
    }
    out.push_str("| Probe | Coverage | Last error |\n|---|---|---|\n");
    for p in &s.coverage {
        let share = p.share();
        let mut cov = pct(share);
        if share < s.min_coverage {
            cov.push_str(&format!(" (below {})", pct(s.min_coverage)));
        }
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            cell(&p.probe),
            cov,
            p.last_error
                .as_deref()
                .map(cell)
                .unwrap_or_else(|| "-".into())
        ));
    }
    out.push('\n');
}

fn incident_end(s: &SoakSummary, span: &Span) -> String {
    let still_failing = s
        .criterion(span.criterion)
        .is_some_and(|c: &CriterionSummary| c.now == Status::Fail);
    if span.end >= s.now && still_failing {
        "ongoing".into()
    } else {
        ts(span.end)
    }
}

fn incidents(s: &SoakSummary, out: &mut String) {
    out.push_str("## Incidents\n\n");
    if s.incidents.is_empty() {
        out.push_str("None.\n\n");
    } else {
        out.push_str(
            "| Criterion | Start | End | Duration | Peak | Evidence |\n|---|---|---|---|---|---|\n",
        );
        for i in &s.incidents {
            out.push_str(&format!(
                "| {} (`{}`) | {} | {} | {} | {} | {} |\n",
                i.criterion.title(),
                i.criterion.as_str(),
                ts(i.start),
                incident_end(s, i),
                duration(i.secs()),
                i.peak.map(num).unwrap_or_else(|| "-".into()),
                cell(&i.evidence)
            ));
        }
        out.push('\n');
    }
    if s.restarts.is_empty() {
        out.push_str("**Service restarts:** none.\n\n");
    } else {
        out.push_str(&format!("**Service restarts:** {}\n\n", s.restarts.len()));
        for r in &s.restarts {
            out.push_str(&format!("- {}\n", ts(*r)));
        }
        out.push('\n');
    }
}

/// Most consumers listed in a report; the rest are counted.
const REPORT_CONSUMERS: usize = 50;

/// Each consumer that did not pass a per-consumer criterion during the
/// soak, by its stable id (left out when every consumer always passed).
fn consumers_section(s: &SoakSummary, out: &mut String) {
    if s.consumers.is_empty() {
        return;
    }
    out.push_str("## Consumers not passing during the soak\n\n| Consumer criterion | Stream | Now | Worst | Time not passing | Cycles | First | Last | Worst value | Evidence |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for c in s.consumers.iter().take(REPORT_CONSUMERS) {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            line(&c.id.to_string()).replace('`', "'"),
            cell(&c.stream),
            c.now.as_str(),
            c.worst.as_str(),
            duration(c.bad_secs),
            c.bad_cycles,
            ts(c.first_bad),
            ts(c.last_bad),
            c.worst_value.map(num).unwrap_or_else(|| "-".into()),
            cell(&c.evidence)
        ));
    }
    if s.consumers.len() > REPORT_CONSUMERS {
        out.push_str(&format!(
            "\n{} more consumers did not pass at some point (the state holds them all).\n",
            s.consumers.len() - REPORT_CONSUMERS
        ));
    }
    out.push('\n');
}

/// Link target for a chart file: characters that would end or break a
/// Markdown link destination are percent-encoded.
fn link_target(file: &str) -> String {
    let mut out = String::with_capacity(file.len());
    for c in file.chars() {
        match c {
            ' ' => out.push_str("%20"),
            '(' => out.push_str("%28"),
            ')' => out.push_str("%29"),
            '<' => out.push_str("%3C"),
            '>' => out.push_str("%3E"),
            '\n' | '\r' => {}
            c => out.push(c),
        }
    }
    out
}

fn alt_text(title: &str) -> String {
    line(title).replace('[', "\\[").replace(']', "\\]")
}

/// The rollback, when it fired: trigger, state and every step with timing.
fn rollback_section(s: &SoakSummary, out: &mut String) {
    let Some(r) = &s.rollback else { return };
    out.push_str("## Rollback\n\n");
    out.push_str(&format!(
        "**State:** {}  \n**Trigger:** {}  \n**Started:** {}  \n**Finished:** {}\n\n",
        cell(r.state.as_str()),
        cell(&r.trigger),
        ts(r.started),
        r.finished.map(ts).unwrap_or_else(|| "-".into())
    ));
    if !r.steps.is_empty() {
        out.push_str("| Step | Name | Status | Duration | Output |\n|---|---|---|---|---|\n");
        for st in &r.steps {
            out.push_str(&format!(
                "| {} | {} | {} | {} ms | {} |\n",
                st.n,
                cell(&st.name),
                st.status.as_str(),
                st.duration_ms,
                cell(&crate::rollback::output_view(&st.output).headline)
            ));
        }
        out.push('\n');
        step_outputs(&r.steps, out);
    }
}

/// Under the steps table, the captured output of each step that has one:
/// its first and last lines as an indented code block (literal text, one
/// line each, nothing in it can break out of the block).
fn step_outputs(steps: &[crate::rollback::StepRecord], out: &mut String) {
    for st in steps {
        let v = crate::rollback::output_view(&st.output);
        if v.lines.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "Output of step {} ({}), first and last lines:\n\n",
            st.n,
            cell(&st.name)
        ));
        for l in &v.lines {
            out.push_str(&format!("    {}\n", crate::untrusted::untrusted(l)));
        }
        out.push('\n');
    }
}

/// The soak's totals, across service restarts (not since the last start).
fn totals_table(s: &SoakSummary, out: &mut String) {
    out.push_str(
        "## Totals

Over the soak so far, across service restarts.

| Total | Over the soak |
|-------|---------------|
",
    );
    for (what, value) in s.totals.rows() {
        out.push_str(&format!(
            "| {what} | {} |
",
            line(&value)
        ));
    }
    out.push('\n');
}

/// A checkpoint or on-demand report in Markdown, in the style of the
/// deployment record: header, verdict, health checks, stream and consumer
/// state, criteria, probe coverage, incidents and restarts, chart links
/// (`charts` are (title, file relative to the report) pairs as returned by
/// [`crate::render::chart::write_charts`]). Deterministic: no clock is read.
pub fn render_markdown(summary: &SoakSummary, title: &str, charts: &[(String, String)]) -> String {
    let s = summary;
    let progress = if s.planned_secs > 0.0 {
        format!(" ({})", pct(elapsed_secs(s) / s.planned_secs))
    } else {
        String::new()
    };
    let mut out = format!(
        "# Soak report: {} — {}\n\n**Soak id:** `{}`  \n**T0:** {}  \n**Now:** {}  \n**Elapsed:** {} of {} planned{}  \n**Samples:** {}  \n**Verdict:** {}\n\n",
        line(&s.name),
        line(title),
        line(&s.soak_id).replace('`', "'"),
        ts(s.t0),
        ts(s.now),
        duration(elapsed_secs(s)),
        duration(s.planned_secs),
        progress,
        s.samples,
        verdict_line(s),
    );
    if let Some(end) = &s.edges.ended {
        // Before the verdict line (each header line ends in a Markdown
        // line break; the verdict line closes the block).
        let at = out.find("**Verdict:**").unwrap_or(out.len());
        out.insert_str(
            at,
            &format!(
                "**Signed off:** {} at T0 + {}; the verdict is frozen (a restarted watcher or a later config does not change it)  \n",
                ts(end.at),
                duration((end.at - s.t0).num_milliseconds() as f64 / 1000.0)
            ),
        );
    }
    if let Some(head) = s.head_note() {
        let at = out.find("**Verdict:**").unwrap_or(out.len());
        out.insert_str(at, &format!("**Watched from:** {}  \n", line(&head)));
    }

    out.push_str("## Health checks\n\n");
    for (ok, text) in checklist(s) {
        out.push_str(&format!("- [{}] {}\n", if ok { "x" } else { " " }, text));
    }
    out.push('\n');

    state_tables(s, &mut out);
    totals_table(s, &mut out);
    criteria_table(s, &mut out);
    coverage_table(s, &mut out);
    incidents(s, &mut out);
    consumers_section(s, &mut out);
    rollback_section(s, &mut out);

    if !charts.is_empty() {
        out.push_str("## Charts\n\n");
        for (t, f) in charts {
            out.push_str(&format!("![{}]({})\n\n", alt_text(t), link_target(f)));
        }
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{ConsumerState, ProbeFailure, ProbeKind, Snapshot, StreamState};
    use crate::soak::model::{ChartSeries, ProbeCoverage};
    use crate::verdict::Verdict;
    use chrono::{Duration, TimeZone};
    use std::collections::BTreeMap;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 10, 2, 17, 8, 59)
            .single()
            .unwrap_or_default()
    }

    fn stream(name: &str, subjects: &[&str], messages: u64) -> StreamState {
        StreamState {
            name: name.into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            messages,
            bytes: messages * 150,
            first_seq: 1,
            last_seq: messages,
            last_ts: None,
            storage: "file".into(),
            replicas: 1,
            max_age_secs: 172_800.0,
            consumer_count: 1,
        }
    }

    fn snapshot(at: DateTime<Utc>) -> Snapshot {
        let mut streams = BTreeMap::new();
        streams.insert(
            "AA_CORE_HOT".to_string(),
            Ok(Some(stream(
                "AA_CORE_HOT",
                &["athlete-ally.>", "sleep.*"],
                2,
            ))),
        );
        streams.insert(
            "ATHLETE_ALLY_EVENTS".to_string(),
            Ok(Some(stream("ATHLETE_ALLY_EVENTS", &["legacy.>"], 55))),
        );
        streams.insert("AA_VENDOR_HOT".to_string(), Ok(None));
        streams.insert(
            "AA_DLQ".to_string(),
            Err(ProbeFailure::new(
                ProbeKind::Stream,
                crate::sample::ProbeError::Other("timeout | after 5s <none>\r\nnext".into()),
            )),
        );
        Snapshot {
            taken_at: at,
            streams,
            consumers: [(
                "AA_CORE_HOT".to_string(),
                Ok(Some(vec![ConsumerState {
                    stream: "AA_CORE_HOT".into(),
                    name: "normalize-hrv-durable".into(),
                    num_pending: 0,
                    num_ack_pending: 0,
                    num_redelivered: 0,
                    num_waiting: 1,
                    delivered_consumer_seq: 2,
                    delivered_stream_seq: 2,
                    delivered_last_active: Some(at),
                    ack_floor_consumer_seq: 2,
                    ack_floor_stream_seq: 2,
                    ack_floor_last_active: Some(at),
                    filter_subject: "athlete-ally.hrv.raw-received".into(),
                    ack_policy: "explicit".into(),
                    ack_wait_secs: 60.0,
                    max_deliver: 5,
                    max_ack_pending: 1000,
                    durable_name: Some("normalize-hrv-durable".into()),
                    deliver_subject: None,
                }])),
            )]
            .into(),
            metrics: Err(ProbeFailure::new(
                ProbeKind::Metrics,
                crate::sample::ProbeError::Other("not needed".into()),
            )),
            db: Err(ProbeFailure::new(
                ProbeKind::Database,
                crate::sample::ProbeError::Other("not needed".into()),
            )),
            log: Err(ProbeFailure::new(
                ProbeKind::Log,
                crate::sample::ProbeError::Other("not needed".into()),
            )),
            env: Err(ProbeFailure::new(
                ProbeKind::ServiceEnv,
                crate::sample::ProbeError::Other("not needed".into()),
            )),
            probe_ms: BTreeMap::new(),
            consumers_elided: false,
        }
    }

    fn crit(id: CriterionId, soak: Status) -> CriterionSummary {
        let (target, observed) = match id {
            CriterionId::ConsumerLag => (
                "pending + ack pending < 10; not stalled".to_string(),
                "0 (pending 0 + ack pending 0)".to_string(),
            ),
            CriterionId::StreamPurity => (
                "100% of processed messages labelled stream=\"AA_CORE_HOT\"".to_string(),
                "100%".to_string(),
            ),
            CriterionId::Fallback => ("0 fallback events".into(), "0".into()),
            _ => (format!("target of {}", id.as_str()), "ok".into()),
        };
        let now = if soak == Status::NotConfigured {
            Status::NotConfigured
        } else {
            Status::Pass
        };
        let mut last = Verdict::new(id, now, observed, target, "evidence");
        if id == CriterionId::ConsumerLag {
            last = last.with_value(0.0, Some(5.0), Some(10.0));
        }
        CriterionSummary {
            id,
            now,
            soak,
            fail_secs: 0.0,
            unknown_secs: 0.0,
            coverage: if soak == Status::NotConfigured {
                0.0
            } else {
                0.999
            },
            worst_value: None,
            last,
        }
    }

    /// A clean soak `elapsed_h` hours into a 48 h plan.
    fn summary(elapsed_h: i64) -> SoakSummary {
        let t0 = t0();
        let now = t0 + Duration::hours(elapsed_h);
        let criteria = CriterionId::ALL
            .iter()
            .map(|&id| {
                crit(
                    id,
                    if id == CriterionId::P95Latency {
                        Status::NotConfigured
                    } else {
                        Status::Pass
                    },
                )
            })
            .collect();
        let cov = |probe: &str| ProbeCoverage {
            probe: probe.into(),
            good_secs: elapsed_h as f64 * 3600.0,
            total_secs: elapsed_h as f64 * 3600.0,
            last_error: None,
        };
        SoakSummary {
            soak_id: "7f3a9c".into(),
            name: "phase-b-staging".into(),
            t0,
            now,
            planned_secs: 48.0 * 3600.0,
            samples: (elapsed_h * 360) as usize,
            criteria,
            incidents: vec![],
            spans: vec![],
            coverage: vec![
                cov("stream"),
                cov("consumer"),
                cov("metrics"),
                cov("database"),
            ],
            min_coverage: 0.95,
            restarts: vec![],
            series: ChartSeries::default(),
            verdict: Status::Pass,
            verdict_reason: "every criterion held with sufficient coverage".into(),
            last_snapshot: Some(snapshot(now)),
            rollback: None,
            consumers: vec![],
            edges: Default::default(),
            totals: Default::default(),
        }
    }

    fn set(s: &mut SoakSummary, id: CriterionId, f: impl FnOnce(&mut CriterionSummary)) {
        if let Some(c) = s.criteria.iter_mut().find(|c| c.id == id) {
            f(c);
        }
    }

    fn charts() -> Vec<(String, String)> {
        vec![
            ("Consumer lag".into(), "cp-48h-lag.svg".into()),
            ("DLQ [messages]".into(), "cp 48h-dlq.svg".into()),
        ]
    }

    #[test]
    fn finished_clean_soak_is_approved_with_all_ticks() {
        let s = summary(48);
        let md = render_markdown(&s, "48h final", &charts());
        assert!(md.starts_with("# Soak report: phase-b-staging — 48h final\n"));
        assert!(md.contains("**Verdict:** ✅ APPROVED FOR PRODUCTION\n"));
        assert!(md.contains("**Elapsed:** 48h of 48h planned (100.0 %)"));
        assert!(md.contains("**Soak id:** `7f3a9c`"));
        assert!(md.contains("**T0:** 2025-10-02 17:08:59 UTC"));
        assert!(md.contains("**Now:** 2025-10-04 17:08:59 UTC"));
        assert!(md.contains("**Samples:** 17280"));

        let list = checklist(&s);
        assert_eq!(list.len(), 5);
        assert!(list.iter().all(|(ok, _)| *ok), "{list:?}");
        let texts: Vec<&str> = list.iter().map(|(_, t)| t.as_str()).collect();
        assert!(texts[0].starts_with("Day 1 (24h): Zero fallback events in logs ("));
        assert!(texts[1].starts_with("Day 1 (24h): 100% of messages on AA_CORE_HOT stream ("));
        assert!(texts[2].starts_with("Day 1 (24h): Consumer lag < 10 messages ("));
        assert!(texts[3].starts_with("Day 2 (48h): All success criteria maintained ("));
        assert!(texts[3].contains("12 criteria pass over the soak, 1 not configured"));
        assert!(
            texts[4].starts_with("Day 2 (48h): Database integrity verified (no missing records) (")
        );
        assert_eq!(md.matches("\n- [x] Day ").count(), 5);
        assert!(md.contains("- [x] Day 1 (24h): Zero fallback events in logs (fallback pass over the soak, coverage 99.9 %; now: 0)"));

        // Tables like the deployment record's.
        assert!(md.contains("| AA_CORE_HOT | athlete-ally.>, sleep.\\* | 2 | 300 | 1 | 2 | - |"));
        assert!(md.contains("| AA_VENDOR_HOT | missing | | | | | |"));
        assert!(md.contains("| AA_DLQ | unknown: timeout \\| after 5s \\<none> next | | | | | |"));
        assert!(
            md.contains("| normalize-hrv-durable | AA_CORE_HOT |"),
            "{md}"
        );
        assert!(md.contains("| 0 | 2 | 2 | 0 | 0 | 1 | 2025-10-04 17:08:59Z |"));
        assert!(md.contains("| Criteria | Target | Actual | Status | Soak | Coverage |"));
        assert!(md.contains(
            "| Consumer lag (`consumer_lag`) | pending + ack pending < 10; not stalled | 0 (pending 0 + ack pending 0) | ✅ | ✅ | 99.9 % |"
        ));
        assert!(md.contains(
            "| Processing latency (`p95_latency`) | target of p95_latency | ok | ➖ | ➖ | - |"
        ));
        assert!(md.contains("| metrics | 100.0 % | - |"));
        assert!(md.contains("## Incidents\n\nNone.\n\n**Service restarts:** none."));
        assert!(md.contains("![Consumer lag](cp-48h-lag.svg)"));
        assert!(md.contains("![DLQ \\[messages\\]](cp%2048h-dlq.svg)"));

        // Sections in the documented order.
        let order = [
            "# Soak report",
            "**Verdict:**",
            "## Health checks",
            "## Stream state",
            "## Consumer health",
            "## Success criteria",
            "## Probe coverage",
            "## Incidents",
            "**Service restarts:**",
            "## Charts",
        ];
        let pos: Vec<usize> = order
            .iter()
            .map(|h| md.find(h).unwrap_or(usize::MAX))
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{pos:?}");
        // Deterministic.
        assert_eq!(md, render_markdown(&s, "48h final", &charts()));
        assert!(md.ends_with('\n') && !md.ends_with("\n\n"));
    }

    #[test]
    fn totals_are_a_table_over_the_whole_soak() {
        let mut s = summary(48);
        s.totals.succeeded = Some(89_955.0);
        s.totals.counted = Some(90_000.0);
        s.totals.service_restarts = 2;
        let md = render_markdown(&s, "48h final", &[]);
        assert!(
            md.contains("## Totals\n\nOver the soak so far, across service restarts."),
            "{md}"
        );
        assert!(
            md.contains("| Succeeded | 89,955 of 90,000 succeeded (99.95 %) |"),
            "{md}"
        );
        assert!(md.contains("| Service restarts | 2 |"), "{md}");
        assert!(md.contains("| Rows written | not seen |"), "{md}");
    }

    #[test]
    fn dlq_incident_is_not_approved() {
        let mut s = summary(48);
        set(&mut s, CriterionId::Dlq, |c| {
            c.soak = Status::Fail;
            c.fail_secs = 5400.0;
            c.worst_value = Some(2.0);
        });
        s.verdict = Status::Fail;
        s.verdict_reason = "failed during the soak: dlq".into();
        let start = s.t0 + Duration::hours(30);
        s.incidents.push(Span {
            criterion: CriterionId::Dlq,
            status: Status::Fail,
            start,
            end: start + Duration::minutes(90),
            peak: Some(2.0),
            evidence: "AA_DLQ holds 2 messages (baseline 1: +1) | counter 1".into(),
        });
        s.restarts.push(s.t0 + Duration::hours(31));
        let md = render_markdown(&s, "48h final", &[]);
        assert!(md.contains("**Verdict:** ❌ NOT APPROVED — failed during the soak: dlq\n"));
        assert!(!md.contains("APPROVED FOR PRODUCTION"));
        assert!(md.contains(
            "| DLQ stable (`dlq`) | 2025-10-03 23:08:59 UTC | 2025-10-04 00:38:59 UTC | 1h 30m | 2 | AA_DLQ holds 2 messages (baseline 1: +1) \\| counter 1 |"
        ));
        assert!(md.contains("**Service restarts:** 1\n\n- 2025-10-04 00:08:59 UTC\n"));
        let list = checklist(&s);
        assert!(list[0].0 && list[1].0 && list[2].0 && list[4].0);
        assert!(!list[3].0);
        assert!(md.contains(
            "- [ ] Day 2 (48h): All success criteria maintained (not maintained: dlq fail)"
        ));
        assert!(md.contains("| DLQ stable (`dlq`) | target of dlq | ok | ✅ | ❌ | 99.9 % |"));
        assert!(!md.contains("## Charts"));

        // Still failing now: the incident is ongoing.
        set(&mut s, CriterionId::Dlq, |c| c.now = Status::Fail);
        s.incidents[0].end = s.now;
        let md = render_markdown(&s, "now", &[]);
        assert!(md.contains("| 2025-10-03 23:08:59 UTC | ongoing | 18h |"));
    }

    #[test]
    fn outside_text_cannot_forge_report_lines_or_drive_a_terminal() {
        let mut s = summary(48);
        s.name = "soak\n**Verdict:** ✅ APPROVED FOR PRODUCTION".into();
        let start = s.t0 + Duration::hours(30);
        s.incidents.push(Span {
            criterion: CriterionId::Fallback,
            status: Status::Fail,
            start,
            end: start + Duration::minutes(1),
            peak: Some(1.0),
            evidence: "log line: x\n**Verdict:** ✅ APPROVED FOR PRODUCTION\u{1b}[2J\u{7}".into(),
        });
        let md = render_markdown(&s, "48h final", &[]);
        assert!(!md.contains('\u{1b}') && !md.contains('\u{7}'), "{md}");
        assert_eq!(
            md.lines().filter(|l| l.starts_with("**Verdict:**")).count(),
            1,
            "{md}"
        );
        assert!(md.contains("\\u{1b}[2J\\u{7}"), "{md}");
    }

    #[test]
    fn in_progress_soak_has_days_not_reached() {
        let s = summary(10);
        let md = render_markdown(&s, "on demand", &[]);
        assert!(md.contains("**Verdict:** ⏳ SOAK IN PROGRESS — no failure so far\n"));
        assert!(!md.contains("APPROVED"));
        assert!(md.contains("**Elapsed:** 10h of 48h planned (20.8 %)"));
        let list = checklist(&s);
        assert!(list.iter().all(|(ok, _)| !ok));
        assert_eq!(md.matches("- [ ] ").count(), 5);
        assert!(md.contains(
            "- [ ] Day 1 (24h): Zero fallback events in logs (not reached yet: 10h of 24h)"
        ));
        assert!(md.contains(
            "- [ ] Day 1 (24h): Consumer lag < 10 messages (not reached yet: 10h of 24h)"
        ));
        assert!(md.contains(
            "- [ ] Day 2 (48h): Database integrity verified (no missing records) (not reached yet: 10h of 48h)"
        ));

        // At 30 h Day 1 is ticked, Day 2 not yet.
        let s = summary(30);
        let list = checklist(&s);
        assert_eq!(
            list.iter().map(|(ok, _)| *ok).collect::<Vec<_>>(),
            [true, true, true, false, false]
        );
        assert!(list[3].1.ends_with("(not reached yet: 30h of 48h)"));
    }

    #[test]
    fn low_coverage_cannot_tell() {
        let mut s = summary(48);
        set(&mut s, CriterionId::DbIntegrity, |c| {
            c.soak = Status::Unknown;
            c.coverage = 0.5;
        });
        s.coverage[3].good_secs = s.coverage[3].total_secs / 2.0;
        s.coverage[3].last_error = Some("connection refused".into());
        s.verdict = Status::Unknown;
        s.verdict_reason = "coverage below 95% for: db_integrity".into();
        let md = render_markdown(&s, "48h final", &[]);
        assert!(md.contains(
            "**Verdict:** ❓ NOT APPROVED — cannot tell: coverage below 95% for: db_integrity\n"
        ));
        assert!(md.contains("| database | 50.0 % (below 95.0 %) | connection refused |"));
        assert!(md.contains(
            "- [ ] Day 2 (48h): Database integrity verified (no missing records) (db_integrity unknown over the soak, coverage 50.0 % (below 95.0 %); now: ok)"
        ));
        assert!(md.contains("(not maintained: db_integrity unknown)"));
        // Low coverage alone unticks a Day 1 item even if the status says pass.
        set(&mut s, CriterionId::Fallback, |c| c.coverage = 0.9);
        assert!(!checklist(&s)[0].0);
    }

    #[test]
    fn warnings_approve_only_when_finished() {
        let mut s = summary(48);
        set(&mut s, CriterionId::ConsumerLag, |c| {
            c.soak = Status::Warn;
            c.worst_value = Some(7.0);
        });
        s.verdict = Status::Warn;
        s.verdict_reason = "warnings during the soak: consumer_lag".into();
        let md = render_markdown(&s, "48h final", &[]);
        assert!(md.contains(
            "**Verdict:** ⚠️ APPROVED FOR PRODUCTION WITH WARNINGS — Consumer lag (`consumer_lag`, worst 7)\n"
        ));
        s.now = s.t0 + Duration::hours(47);
        let md = render_markdown(&s, "47h", &[]);
        assert!(md.contains(
            "**Verdict:** ⏳ SOAK IN PROGRESS — no failure so far (warnings: Consumer lag (`consumer_lag`, worst 7))\n"
        ));
    }

    #[test]
    fn names_and_thresholds_come_from_evidence() {
        let mut s = summary(48);
        s.last_snapshot = None;
        s.planned_secs = 10.0 * 3600.0;
        set(&mut s, CriterionId::ConsumerLag, |c| {
            c.last = c.last.clone().with_value(3.0, Some(10.0), Some(20.0));
        });
        let list = checklist(&s);
        assert!(list[0].1.starts_with("Day 1 (5h): "));
        assert!(list[1]
            .1
            .starts_with("Day 1 (5h): 100% of messages on AA_CORE_HOT stream"));
        assert!(list[2]
            .1
            .starts_with("Day 1 (5h): Consumer lag < 20 messages"));
        assert!(list[3].1.starts_with("Day 2 (10h): "));
        let md = render_markdown(&s, "x", &[]);
        assert!(md.contains("## Stream state\n\nNo snapshot yet."));
        assert!(md.contains("## Consumer health\n\nNo snapshot yet."));

        // Nothing known at all: still a well-formed, unticked report.
        s.criteria.clear();
        s.coverage.clear();
        s.verdict = Status::Unknown;
        s.verdict_reason = "no samples yet".into();
        let list = checklist(&s);
        assert!(list.iter().all(|(ok, _)| !ok));
        assert!(list[1].1.contains("on the new stream"));
        assert!(list[2].1.contains("< 10 messages"));
        let md = render_markdown(&s, "x", &[]);
        assert!(md.contains("❓ NOT APPROVED — cannot tell: no samples yet"));
        assert!(md.contains("No probe has run yet."));
    }

    #[test]
    fn a_compressed_soak_reads_in_seconds_with_rounded_numbers() {
        let mut s = summary(0);
        s.planned_secs = 60.0;
        s.now = s.t0 + Duration::seconds(42);
        let start = s.t0 + Duration::seconds(20);
        s.incidents.push(Span {
            criterion: CriterionId::SuccessRate,
            status: Status::Fail,
            start,
            end: start + Duration::seconds(7),
            peak: Some(99.18032786885246),
            evidence: "121/122 since the service started".into(),
        });
        set(&mut s, CriterionId::ConsumerLag, |c| {
            c.soak = Status::Warn;
            c.worst_value = Some(6.333333333333333);
        });
        s.verdict = Status::Warn;
        let md = render_markdown(&s, "30s checkpoint", &[]);
        assert!(
            md.contains("**Elapsed:** 42s of 1m planned (70.0 %)"),
            "{md}"
        );
        assert!(
            md.contains("- [x] Day 1 (30s): Zero fallback events in logs ("),
            "{md}"
        );
        assert!(md.contains("(not reached yet: 42s of 1m)"), "{md}");
        assert!(md.contains("| 7s | 99.18 |"), "{md}");
        assert!(md.contains("worst 6.333"), "{md}");
        let long = regex::Regex::new(r"\d\.\d{4,}").unwrap_or_else(|e| panic!("{e}"));
        assert!(!long.is_match(&md), "{md}");
    }

    #[test]
    fn percentages_never_round_up_to_complete() {
        assert_eq!(pct(0.99999), "99.9 %");
        assert_eq!(pct(1.0), "100.0 %");
        assert_eq!(pct(f64::NAN), "-");
        assert_eq!(num(2.5), "2.5");
        assert_eq!(num(3.0), "3");
    }
}
