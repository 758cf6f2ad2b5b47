//! The daemon's live status page (`/` on its listener): the soak at a
//! glance for a team watching a screen. Server-rendered HTML with no
//! external assets (an air-gapped box has no CDN), one inline stylesheet
//! (its hash goes into the listener's Content-Security-Policy), no script,
//! and a meta refresh. Tables are real tables with captions and header
//! cells; every status is a word and a symbol, colour only adds to them.
//!
//! Pure: a function of a [`PageView`] (what the daemon published plus the
//! request's time), so the same view always gives the same bytes. Every
//! value that comes from the watched system (evidence, label values, probe
//! errors, step output) goes through [`text`]: credentials scrubbed, control
//! characters made visible, then HTML-escaped.

use chrono::{DateTime, Utc};

use crate::render::chart::STANDARD_CHARTS;
use crate::render::number::{human_duration, human_number};
use crate::soak::model::{RollbackView, SoakSummary, Span};
use crate::verdict::Status;

/// The page's stylesheet: inlined, so the page is one self-contained
/// document; the listener allows exactly this text by its hash.
pub const PAGE_CSS: &str = "\
:root{--fg:#1b1b1b;--muted:#555;--bg:#fff;--line:#ccc;--pass:#1a7f37;--warn:#9a6700;--fail:#c62828;--unknown:#6e40c9;--pending:#0b5cad}\
*{box-sizing:border-box}\
body{margin:0 auto;max-width:72rem;padding:.75rem;font:16px/1.45 system-ui,-apple-system,'DejaVu Sans',sans-serif;color:var(--fg);background:var(--bg)}\
h1{font-size:1.4rem;margin:.2rem 0}h2{font-size:1.15rem;margin:1.4rem 0 .4rem;border-bottom:1px solid var(--line)}\
code{font-size:.85em;overflow-wrap:anywhere}\
.verdict{border:3px solid var(--line);border-radius:.4rem;padding:.5rem .75rem;margin:.5rem 0;font-size:1.15rem}\
.verdict.s-pass{border-color:var(--pass)}.verdict.s-warn{border-color:var(--warn)}.verdict.s-fail{border-color:var(--fail)}\
.verdict.s-unknown{border-color:var(--unknown)}.verdict.s-pending{border-color:var(--pending)}\
.glance{display:grid;grid-template-columns:repeat(auto-fit,minmax(13rem,1fr));gap:.4rem .9rem;margin:.5rem 0}\
.glance div{border-left:3px solid var(--line);padding-left:.5rem}.glance dt{color:var(--muted);font-size:.85rem}.glance dd{margin:0;font-weight:600}\
progress{width:100%}\
.scroll{overflow-x:auto;max-width:100%}\
table{border-collapse:collapse;width:100%;font-size:.92rem}\
caption{text-align:left;color:var(--muted);padding:.2rem 0}\
th,td{border:1px solid var(--line);padding:.25rem .45rem;text-align:left;vertical-align:top}\
thead th{background:#f3f3f3}\
td.evidence{min-width:14rem;overflow-wrap:anywhere}\
td.evidence pre{white-space:pre-wrap;margin:.3rem 0 0;font-size:.85rem}\
.status{font-weight:700;white-space:nowrap}\
.status.s-pass{color:var(--pass)}.status.s-warn{color:var(--warn)}.status.s-fail{color:var(--fail)}\
.status.s-unknown{color:var(--unknown)}.status.s-pending{color:var(--pending)}.status.s-not_configured{color:var(--muted)}\
tr.s-fail{background:#fdecea}tr.s-warn{background:#fff8e1}\
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,30rem),1fr));gap:.5rem .9rem}figure{margin:.5rem 0}figure img{width:100%;height:auto;border:1px solid var(--line)}\
.note{color:var(--muted);font-size:.9rem}\
footer{margin-top:1.5rem;color:var(--muted);font-size:.85rem}\
@media (max-width:40rem){body{font-size:15px;padding:.5rem}h1{font-size:1.2rem}}\
";

/// A checkpoint report the page links to (`reports/<file>`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportLink {
    /// Its checkpoint label (`24h`).
    pub label: String,
    /// Its file name in the reports directory.
    pub file: String,
}

/// Everything the page shows: what the daemon published in its last cycle
/// and the time of the request.
#[derive(Debug, Clone, Copy)]
pub struct PageView<'a> {
    /// The latest soak summary (None before the first cycle).
    pub summary: Option<&'a SoakSummary>,
    /// The soak's name from the config.
    pub soak_name: &'a str,
    /// When the page is rendered (the last sample's age is measured to it).
    pub now: DateTime<Utc>,
    /// When the last cycle's samples were taken.
    pub last_sample_at: Option<DateTime<Utc>>,
    /// The sampling interval, seconds.
    pub interval_secs: f64,
    /// Cycles this process has completed.
    pub cycles: u64,
    /// Alerts firing now: (criterion, severity).
    pub firing: &'a [(String, String)],
    /// `[rollback] mode`; None without a `[rollback]` section.
    pub rollback_mode: Option<&'a str>,
    /// Whether the once-per-soak rollback latch is taken.
    pub rollback_latched: bool,
    /// Targets whose last write failed (state, report, outbox).
    pub write_failing: &'a [String],
    /// Cycles waiting for the state database.
    pub unsaved_cycles: u64,
    /// Checkpoint reports written so far, in checkpoint order.
    pub reports: &'a [ReportLink],
    /// Checkpoints configured but not written yet (labels).
    pub reports_due: &'a [String],
}

/// Seconds between the page's refreshes: the sampling interval, at least 5 s
/// (a faster reload only redraws the same numbers).
pub fn refresh_secs(interval_secs: f64) -> u64 {
    if interval_secs.is_finite() && interval_secs > 5.0 {
        interval_secs.min(3600.0).ceil() as u64
    } else {
        5
    }
}

/// HTML-escapes text for element content and quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Outside text for the page: credentials scrubbed, control characters
/// made visible ([`crate::untrusted::untrusted`]), then HTML-escaped.
pub fn text(s: &str) -> String {
    escape_html(&crate::untrusted::untrusted(s))
}

/// A path segment of a link: everything but unreserved characters
/// percent-encoded.
fn url_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The symbol shown before a status word (the word carries the meaning;
/// symbols from fonts every desktop and phone has, not emoji).
fn symbol(s: Status) -> &'static str {
    match s {
        Status::Pass => "✓",
        Status::Warn => "!",
        Status::Pending => "…",
        Status::Fail => "✗",
        Status::Unknown => "?",
        Status::NotConfigured => "–",
    }
}

/// The word for a status, as people read it.
fn word(s: Status) -> &'static str {
    match s {
        Status::NotConfigured => "not configured",
        other => other.as_str(),
    }
}

/// A state as a symbol and a word, coloured like status `s` (the symbol
/// hidden from screen readers: the word says it).
fn chip(s: Status, word: &str) -> String {
    format!(
        "<span class=\"status s-{}\"><span aria-hidden=\"true\">{}</span> {word}</span>",
        s.as_str(),
        symbol(s),
    )
}

/// A status as a symbol and its word.
fn status_cell(s: Status) -> String {
    chip(s, word(s))
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn secs_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_milliseconds() as f64 / 1000.0
}

/// A share 0..1 as a percentage, truncated so 99.96 % is not "100.0 %".
fn pct(share: f64) -> String {
    if !share.is_finite() {
        return "-".into();
    }
    format!("{:.1} %", (share.clamp(0.0, 1.0) * 1000.0).floor() / 10.0)
}

/// The whole page.
pub fn render_page(v: &PageView) -> String {
    let mut out = String::with_capacity(16 * 1024);
    head(v, &mut out);
    match v.summary {
        None => starting(v, &mut out),
        Some(s) => {
            verdict_banner(s, &mut out);
            glance(v, s, &mut out);
            totals_table(s, &mut out);
            criteria_table(s, &mut out);
            incidents_table(s, &mut out);
            consumers_table(s, &mut out);
            alerts_and_health(v, &mut out);
            rollback_section(v, s.rollback.as_ref(), &mut out);
            coverage_table(s, &mut out);
            charts(&mut out);
            reports(v, &mut out);
        }
    }
    footer(v, &mut out);
    out
}

fn head(v: &PageView, out: &mut String) {
    let name = text(v.soak_name);
    let verdict = v
        .summary
        .map(|s| format!("{} {} — ", symbol(s.verdict), word(s.verdict)))
        .unwrap_or_default();
    out.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"refresh\" content=\"{}\">\n\
         <title>{verdict}soak {name} — soakwatch</title>\n<link rel=\"icon\" href=\"favicon.svg\" type=\"image/svg+xml\">\n<style>{PAGE_CSS}</style>\n</head>\n<body>\n\
         <header><h1>Soak <code>{name}</code></h1></header>\n<main>\n",
        refresh_secs(v.interval_secs),
    ));
}

fn starting(v: &PageView, out: &mut String) {
    out.push_str(&format!(
        "<p class=\"verdict s-pending\" id=\"verdict\"><span class=\"status s-pending\"><span aria-hidden=\"true\">…</span> starting</span> — \
         no cycle yet ({} done): the preflight may be holding T0 until every probe answers.</p>\n",
        v.cycles
    ));
}

fn verdict_banner(s: &SoakSummary, out: &mut String) {
    let finished = secs_between(s.t0, s.now) >= s.planned_secs;
    let phase = match &s.edges.ended {
        Some(end) => format!("signed off {} (frozen)", ts(end.at)),
        None if finished => "soak finished".to_string(),
        None => "so far".to_string(),
    };
    out.push_str(&format!(
        "<p class=\"verdict s-{}\" id=\"verdict\" data-verdict=\"{}\">Verdict {phase}: {} — {}</p>\n",
        s.verdict.as_str(),
        s.verdict.as_str(),
        status_cell(s.verdict),
        text(&s.verdict_reason),
    ));
}

/// One term and value of the at-a-glance list (the value is HTML already).
fn fact(out: &mut String, term: &str, value: &str) {
    out.push_str(&format!("<div><dt>{term}</dt><dd>{value}</dd></div>\n"));
}

fn glance(v: &PageView, s: &SoakSummary, out: &mut String) {
    let end = s.edges.ended.as_ref().map(|e| e.at);
    let elapsed = secs_between(s.t0, end.unwrap_or(v.now)).max(0.0);
    let remaining = (s.planned_secs - elapsed).max(0.0);
    out.push_str("<h2 id=\"glance\">At a glance</h2>\n<dl class=\"glance\">\n");
    fact(
        out,
        "Soak id",
        &format!("<code>{}</code>", text(&s.soak_id)),
    );
    fact(out, "T0", &ts(s.t0));
    fact(
        out,
        "Elapsed",
        &format!(
            "{} of {}",
            human_duration(elapsed),
            human_duration(s.planned_secs)
        ),
    );
    fact(out, "Remaining", &human_duration(remaining));
    if let Some(head) = s.head_note() {
        fact(out, "Watched from", &text(&head));
    }
    let age = match v.last_sample_at {
        _ if end.is_some() => "the soak has ended: nothing is sampled any more".to_string(),
        None => "no sample yet".to_string(),
        Some(t) => {
            let age = secs_between(t, v.now).max(0.0);
            if age > 3.0 * v.interval_secs.max(1.0) {
                format!(
                    "{} — {}",
                    human_duration(age),
                    chip(Status::Unknown, "stale")
                )
            } else {
                human_duration(age)
            }
        }
    };
    fact(out, "Last sample age", &age);
    fact(out, "Samples", &s.samples.to_string());
    let lowest = s
        .coverage
        .iter()
        .min_by(|a, b| a.share().total_cmp(&b.share()));
    let coverage = match lowest {
        None => "no probe has run yet".to_string(),
        Some(p) => format!(
            "{} lowest ({}); {} needed",
            pct(p.share()),
            text(&p.probe),
            pct(s.min_coverage)
        ),
    };
    fact(out, "Probe coverage", &coverage);
    let open = open_incidents(s).count();
    fact(
        out,
        "Open incidents",
        &format!("{open} (of {} recorded)", s.incidents.len()),
    );
    out.push_str("</dl>\n");
    if s.planned_secs > 0.0 {
        out.push_str(&format!(
            "<progress max=\"{}\" value=\"{}\" aria-label=\"soak progress\">{}</progress>\n",
            s.planned_secs.round(),
            elapsed.min(s.planned_secs).round(),
            pct(elapsed / s.planned_secs)
        ));
    }
}

/// Fail spans still going on at the newest sample.
fn open_incidents(s: &SoakSummary) -> impl Iterator<Item = &Span> {
    s.incidents.iter().filter(|i| {
        i.end >= s.now
            && s.criterion(i.criterion)
                .is_some_and(|c| c.now == Status::Fail)
    })
}

fn criteria_table(s: &SoakSummary, out: &mut String) {
    out.push_str(
        "<h2 id=\"criteria\">Criteria</h2>\n<div class=\"scroll\">\n<table id=\"criteria-table\">\n\
         <caption>Each criterion now (debounced) and over the whole soak</caption>\n\
         <thead><tr><th scope=\"col\">Criterion</th><th scope=\"col\">Now</th><th scope=\"col\">Over the soak</th>\
         <th scope=\"col\">Coverage</th><th scope=\"col\">Actual</th><th scope=\"col\">Target</th><th scope=\"col\">Evidence</th></tr></thead>\n<tbody>\n",
    );
    for c in &s.criteria {
        let coverage = if c.soak == Status::NotConfigured {
            "-".to_string()
        } else {
            pct(c.coverage)
        };
        out.push_str(&format!(
            "<tr class=\"s-{now}\" data-criterion=\"{id}\" data-now=\"{now}\" data-soak=\"{soak}\">\
             <th scope=\"row\">{title} <code>{id}</code></th><td>{}</td><td>{}</td><td>{coverage}</td>\
             <td>{}</td><td>{}</td><td class=\"evidence\">{}</td></tr>\n",
            status_cell(c.now),
            status_cell(c.soak),
            text(&c.last.observed),
            text(&c.last.target),
            text(&c.last.evidence),
            now = c.now.as_str(),
            soak = c.soak.as_str(),
            id = c.id.as_str(),
            title = c.id.title(),
        ));
    }
    if s.criteria.is_empty() {
        out.push_str("<tr><td colspan=\"7\">No criterion judged yet.</td></tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
}

/// At most this many incidents are listed (newest first); the reports have all.
const MAX_INCIDENTS_SHOWN: usize = 50;

fn incidents_table(s: &SoakSummary, out: &mut String) {
    out.push_str("<h2 id=\"incidents\">Incidents</h2>\n");
    if s.incidents.is_empty() {
        out.push_str("<p>None: no criterion has failed in this soak.</p>\n");
        return;
    }
    out.push_str(
        "<div class=\"scroll\">\n<table id=\"incidents-table\">\n<caption>Fail spans, open ones first, then newest first</caption>\n\
         <thead><tr><th scope=\"col\">Criterion</th><th scope=\"col\">State</th><th scope=\"col\">Start</th>\
         <th scope=\"col\">Duration</th><th scope=\"col\">Peak</th><th scope=\"col\">Evidence</th></tr></thead>\n<tbody>\n",
    );
    let open: Vec<&Span> = open_incidents(s).collect();
    let is_open = |i: &Span| open.iter().any(|o| std::ptr::eq(*o, i));
    let mut listed: Vec<&Span> = s.incidents.iter().collect();
    listed.sort_by_key(|i| (!is_open(i), std::cmp::Reverse(i.start)));
    for i in listed.iter().take(MAX_INCIDENTS_SHOWN) {
        let state = if is_open(i) {
            chip(Status::Fail, "open")
        } else {
            chip(Status::NotConfigured, "closed")
        };
        out.push_str(&format!(
            "<tr><th scope=\"row\">{} <code>{}</code></th><td>{state}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"evidence\">{}</td></tr>\n",
            i.criterion.title(),
            i.criterion.as_str(),
            ts(i.start),
            human_duration(i.secs()),
            i.peak.map(human_number).unwrap_or_else(|| "-".into()),
            text(&i.evidence),
        ));
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
    if s.incidents.len() > MAX_INCIDENTS_SHOWN {
        out.push_str(&format!(
            "<p class=\"note\">{} older incidents are in the reports.</p>\n",
            s.incidents.len() - MAX_INCIDENTS_SHOWN
        ));
    }
}

/// Most consumers on the page; the rest are in the reports.
const MAX_CONSUMERS_SHOWN: usize = 30;

/// The consumers that did not pass at some point, worst first (a fleet
/// that always passed shows no table: the criteria say so).
fn consumers_table(s: &SoakSummary, out: &mut String) {
    if s.consumers.is_empty() {
        return;
    }
    out.push_str(
        "<h2 id=\"consumers\">Consumers</h2>\n<div class=\"scroll\">\n<table id=\"consumers-table\">\n\
         <caption>Consumers that did not pass a per-consumer criterion during the soak, worst first</caption>\n\
         <thead><tr><th scope=\"col\">Consumer criterion</th><th scope=\"col\">Stream</th><th scope=\"col\">Now</th>\
         <th scope=\"col\">Worst</th><th scope=\"col\">Time not passing</th><th scope=\"col\">Worst value</th>\
         <th scope=\"col\">Evidence</th></tr></thead>\n<tbody>\n",
    );
    for c in s.consumers.iter().take(MAX_CONSUMERS_SHOWN) {
        out.push_str(&format!(
            "<tr><th scope=\"row\"><code>{}</code></th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"evidence\">{}</td></tr>\n",
            text(&c.id.to_string()),
            text(&c.stream),
            status_cell(c.now),
            status_cell(c.worst),
            human_duration(c.bad_secs),
            c.worst_value.map(human_number).unwrap_or_else(|| "-".into()),
            text(&c.evidence),
        ));
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
    if s.consumers.len() > MAX_CONSUMERS_SHOWN {
        out.push_str(&format!(
            "<p class=\"note\">{} more consumers are in the reports.</p>\n",
            s.consumers.len() - MAX_CONSUMERS_SHOWN
        ));
    }
}

fn alerts_and_health(v: &PageView, out: &mut String) {
    out.push_str("<h2 id=\"alerts\">Alerts firing</h2>\n");
    if v.firing.is_empty() {
        out.push_str("<p>None.</p>\n");
    } else {
        out.push_str("<ul>\n");
        for (c, sev) in v.firing {
            out.push_str(&format!(
                "<li>{} <code>{}</code> ({})</li>\n",
                chip(Status::Fail, "firing"),
                text(c),
                text(sev)
            ));
        }
        out.push_str("</ul>\n");
    }
    if !v.write_failing.is_empty() || v.unsaved_cycles > 0 {
        out.push_str(&format!(
            "<p>{} soakwatch cannot write: {} ({} cycle(s) held in memory).</p>\n",
            status_cell(Status::Warn),
            text(&v.write_failing.join(", ")),
            v.unsaved_cycles
        ));
    }
}

fn rollback_section(v: &PageView, r: Option<&RollbackView>, out: &mut String) {
    out.push_str("<h2 id=\"rollback\">Rollback</h2>\n<dl class=\"glance\">\n");
    let mode = match v.rollback_mode {
        None => "not configured".to_string(),
        Some(m) => text(m),
    };
    fact(out, "Mode", &mode);
    fact(
        out,
        "Latch",
        if v.rollback_latched {
            "taken (fires once per soak)"
        } else {
            "not taken"
        },
    );
    let Some(r) = r else {
        fact(out, "State", "not fired");
        out.push_str("</dl>\n");
        return;
    };
    fact(out, "State", &text(r.state.as_str()));
    fact(out, "Trigger", &text(&r.trigger));
    fact(out, "Started", &ts(r.started));
    fact(
        out,
        "Finished",
        &r.finished.map(ts).unwrap_or_else(|| "-".into()),
    );
    out.push_str("</dl>\n");
    if r.steps.is_empty() {
        return;
    }
    out.push_str(
        "<div class=\"scroll\">\n<table id=\"rollback-steps\">\n<caption>Rollback steps</caption>\n\
         <thead><tr><th scope=\"col\">Step</th><th scope=\"col\">Name</th><th scope=\"col\">Status</th>\
         <th scope=\"col\">Duration</th><th scope=\"col\">Output</th></tr></thead>\n<tbody>\n",
    );
    for st in &r.steps {
        out.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{} ms</td><td class=\"evidence\">{}</td></tr>\n",
            st.n,
            text(&st.name),
            text(st.status.as_str()),
            st.duration_ms,
            step_output(&st.output),
        ));
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
}

/// A step's output cell: the headline, then the output's first and last
/// lines in a `<pre>` when it captured any.
fn step_output(output: &str) -> String {
    let v = crate::rollback::output_view(output);
    if v.lines.is_empty() {
        return text(&v.headline);
    }
    let lines: Vec<String> = v.lines.iter().map(|l| text(l)).collect();
    format!("{}<pre>{}</pre>", text(&v.headline), lines.join("\n"))
}

/// The soak's totals, across service restarts.
fn totals_table(s: &SoakSummary, out: &mut String) {
    out.push_str(
        "<h2 id=\"totals\">Totals</h2>\n<div class=\"scroll\">\n<table id=\"totals-table\">\n\
         <caption>Over the soak so far, across service restarts</caption>\n<tbody>\n",
    );
    for (what, value) in s.totals.rows() {
        out.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td>{}</td></tr>\n",
            text(what),
            text(&value)
        ));
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
}

fn coverage_table(s: &SoakSummary, out: &mut String) {
    out.push_str("<h2 id=\"coverage\">Probe coverage</h2>\n");
    if s.coverage.is_empty() {
        out.push_str("<p>No probe has run yet.</p>\n");
        return;
    }
    out.push_str(&format!(
        "<div class=\"scroll\">\n<table id=\"coverage-table\">\n<caption>Share of the soak with good samples per probe ({} needed for a pass)</caption>\n\
         <thead><tr><th scope=\"col\">Probe</th><th scope=\"col\">Coverage</th><th scope=\"col\">Last error</th></tr></thead>\n<tbody>\n",
        pct(s.min_coverage)
    ));
    for p in &s.coverage {
        let share = p.share();
        let cov = if share < s.min_coverage {
            format!("{} {}", pct(share), chip(Status::Warn, "below"))
        } else {
            pct(share)
        };
        out.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td>{cov}</td><td class=\"evidence\">{}</td></tr>\n",
            text(&p.probe),
            p.last_error
                .as_deref()
                .map(text)
                .unwrap_or_else(|| "-".into()),
        ));
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
}

fn charts(out: &mut String) {
    out.push_str("<h2 id=\"charts\">Charts</h2>\n<div class=\"charts\">\n");
    for (name, title) in STANDARD_CHARTS {
        out.push_str(&format!(
            "<figure><img src=\"charts/{name}.svg\" width=\"900\" height=\"300\" alt=\"{title} since T0 (chart)\"><figcaption>{title}</figcaption></figure>\n",
            title = escape_html(title),
        ));
    }
    out.push_str("</div>\n");
}

/// The tab's icon: a disc in the verdict's colour with its symbol, so a
/// background tab still says how the soak goes (None: starting).
pub fn favicon_svg(verdict: Option<Status>) -> String {
    let (fill, sym) = match verdict {
        Some(Status::Pass) => ("#1a7f37", symbol(Status::Pass)),
        Some(Status::Warn) => ("#9a6700", symbol(Status::Warn)),
        Some(Status::Fail) => ("#c62828", symbol(Status::Fail)),
        Some(Status::Unknown) => ("#6e40c9", symbol(Status::Unknown)),
        Some(s) => ("#0b5cad", symbol(s)),
        None => ("#0b5cad", symbol(Status::Pending)),
    };
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 32 32\"><circle cx=\"16\" cy=\"16\" r=\"15\" fill=\"{fill}\"/>\
         <text x=\"16\" y=\"23\" font-family=\"sans-serif\" font-size=\"20\" font-weight=\"bold\" text-anchor=\"middle\" fill=\"#fff\">{sym}</text></svg>\n"
    )
}

fn reports(v: &PageView, out: &mut String) {
    out.push_str("<h2 id=\"reports\">Checkpoint reports</h2>\n");
    if v.reports.is_empty() {
        out.push_str("<p>None written yet.</p>\n");
    } else {
        out.push_str("<ul>\n");
        for r in v.reports {
            out.push_str(&format!(
                "<li><a href=\"reports/{}\">{} checkpoint</a> <code>{}</code></li>\n",
                url_segment(&r.file),
                text(&r.label),
                text(&r.file)
            ));
        }
        out.push_str("</ul>\n");
    }
    if !v.reports_due.is_empty() {
        out.push_str(&format!(
            "<p class=\"note\">Still to come: {}.</p>\n",
            text(&v.reports_due.join(", "))
        ));
    }
}

fn footer(v: &PageView, out: &mut String) {
    out.push_str(&format!(
        "</main>\n<footer><p>Read-only view of the daemon; refreshes every {} s. Rendered {} after {} cycle(s) of this process. \
         Machine-readable: <a href=\"metrics\">/metrics</a>, <a href=\"healthz\">/healthz</a>.</p></footer>\n</body>\n</html>\n",
        refresh_secs(v.interval_secs),
        ts(v.now),
        v.cycles
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::model::{ChartSeries, CriterionSummary, ProbeCoverage};
    use crate::verdict::{CriterionId, Verdict};
    use chrono::{Duration, TimeZone};

    const HOSTILE: &str = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>&amp;'";

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 10, 2, 17, 8, 59)
            .single()
            .unwrap_or_default()
    }

    fn crit(id: CriterionId, now: Status, evidence: &str) -> CriterionSummary {
        CriterionSummary {
            id,
            now,
            soak: now,
            fail_secs: 0.0,
            unknown_secs: 0.0,
            coverage: 0.999,
            worst_value: None,
            last: Verdict::new(id, now, "2 messages", "<= baseline 1", evidence),
        }
    }

    /// Two hours into a 48 h soak; the DLQ fails with hostile evidence.
    fn summary() -> SoakSummary {
        let t0 = t0();
        let now = t0 + Duration::hours(2);
        let incident = Span {
            criterion: CriterionId::Dlq,
            status: Status::Fail,
            start: now - Duration::minutes(10),
            end: now,
            peak: Some(2.0),
            evidence: HOSTILE.into(),
        };
        SoakSummary {
            soak_id: "demo-20251002T170859Z".into(),
            name: "demo".into(),
            t0,
            now,
            planned_secs: 48.0 * 3600.0,
            samples: 720,
            criteria: vec![
                crit(CriterionId::ConsumerLag, Status::Pass, "lag 0"),
                crit(CriterionId::Dlq, Status::Fail, HOSTILE),
            ],
            incidents: vec![incident.clone()],
            spans: vec![incident],
            coverage: vec![ProbeCoverage {
                probe: "stream <b>".into(),
                good_secs: 3600.0,
                total_secs: 7200.0,
                last_error: Some(HOSTILE.into()),
            }],
            min_coverage: 0.95,
            restarts: vec![],
            series: ChartSeries::default(),
            verdict: Status::Fail,
            verdict_reason: format!("dlq failed: {HOSTILE}"),
            last_snapshot: None,
            rollback: Some(RollbackView {
                state: crate::soak::model::RollbackState::Done,
                trigger: format!("dlq for 5m: {HOSTILE}"),
                started: now - Duration::minutes(1),
                finished: Some(now),
                steps: vec![],
            }),
            consumers: vec![],
            edges: Default::default(),
            totals: Default::default(),
        }
    }

    fn view<'a>(s: Option<&'a SoakSummary>, reports: &'a [ReportLink]) -> PageView<'a> {
        PageView {
            summary: s,
            soak_name: "demo",
            now: t0() + Duration::hours(2) + Duration::seconds(3),
            last_sample_at: Some(t0() + Duration::hours(2)),
            interval_secs: 10.0,
            cycles: 720,
            firing: &[],
            rollback_mode: Some("dry_run"),
            rollback_latched: true,
            write_failing: &[],
            unsaved_cycles: 0,
            reports,
            reports_due: &[],
        }
    }

    #[test]
    fn hostile_outside_text_is_escaped_everywhere() {
        let s = summary();
        let html = render_page(&view(Some(&s), &[]));
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(2)&gt;&amp;amp;&#39;"),
            "{html}"
        );
        // Evidence, incident, probe error, verdict reason, rollback trigger: each escaped.
        assert!(html.matches("&lt;script&gt;").count() >= 5, "{html}");
        // The page itself carries no script at all.
        assert!(!html.to_lowercase().contains("<script"));
        assert!(!html.contains("onerror=alert(2)>"));
    }

    #[test]
    fn control_characters_and_credentials_do_not_reach_the_page() {
        let mut s = summary();
        s.criteria[1].last.evidence =
            "line\nforged\u{1b}[2J postgres://u:hunter2@db/x Authorization: Bearer abc".into();
        let html = render_page(&view(Some(&s), &[]));
        assert!(html.contains("line\\nforged\\u{1b}[2J"), "{html}");
        assert!(!html.contains("hunter2"), "{html}");
        assert!(!html.contains("Bearer abc"), "{html}");
    }

    #[test]
    fn criteria_are_a_real_table_with_status_as_word_and_symbol() {
        let s = summary();
        let html = render_page(&view(Some(&s), &[]));
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(html.contains("<table id=\"criteria-table\">\n<caption>"));
        assert!(html.contains("<th scope=\"col\">Criterion</th>"));
        assert!(html.contains("<th scope=\"row\">DLQ stable <code>dlq</code></th>"));
        assert!(html.contains(
            "<tr class=\"s-fail\" data-criterion=\"dlq\" data-now=\"fail\" data-soak=\"fail\">"
        ));
        assert!(html.contains(
            "<span class=\"status s-fail\"><span aria-hidden=\"true\">✗</span> fail</span>"
        ));
        assert!(html.contains(
            "<span class=\"status s-pass\"><span aria-hidden=\"true\">✓</span> pass</span>"
        ));
        // Balanced table markup.
        for tag in ["table", "thead", "tbody", "tr", "caption"] {
            assert_eq!(
                html.matches(&format!("<{tag}>")).count()
                    + html.matches(&format!("<{tag} ")).count(),
                html.matches(&format!("</{tag}>")).count(),
                "<{tag}> unbalanced"
            );
        }
    }

    #[test]
    fn glance_shows_time_coverage_incidents_rollback_and_age() {
        let s = summary();
        let html = render_page(&view(Some(&s), &[]));
        assert!(html.contains("data-verdict=\"fail\""));
        assert!(html.contains("<dd>2h of 48h</dd>"), "{html}");
        assert!(
            html.contains("<dt>Remaining</dt><dd>45h 59m</dd>"),
            "{html}"
        );
        assert!(
            html.contains("<dt>Last sample age</dt><dd>3s</dd>"),
            "{html}"
        );
        assert!(html.contains("50.0 % lowest (stream &lt;b&gt;); 95.0 % needed"));
        assert!(html.contains("<dt>Open incidents</dt><dd>1 (of 1 recorded)</dd>"));
        assert!(html.contains("<dt>Mode</dt><dd>dry_run</dd>"));
        assert!(html.contains("<dt>Latch</dt><dd>taken (fires once per soak)</dd>"));
        assert!(html.contains("<dt>State</dt><dd>done</dd>"));
        assert!(html.contains("> open</span>"));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
        for (name, _) in STANDARD_CHARTS {
            assert!(
                html.contains(&format!("src=\"charts/{name}.svg\"")),
                "{name}"
            );
        }
    }

    #[test]
    fn the_totals_are_a_table_on_the_page() {
        let mut s = summary();
        s.totals.succeeded = Some(9.0);
        s.totals.counted = Some(10.0);
        s.totals.service_restarts = 1;
        let html = render_page(&view(Some(&s), &[]));
        assert!(html.contains("<table id=\"totals-table\">"), "{html}");
        assert!(
            html.contains("<th scope=\"row\">Succeeded</th><td>9 of 10 succeeded (90 %)</td>"),
            "{html}"
        );
    }

    #[test]
    fn a_stale_sample_says_so_in_words() {
        let s = summary();
        let mut v = view(Some(&s), &[]);
        v.now += Duration::seconds(60);
        let html = render_page(&v);
        assert!(html.contains("1m 3s — <span class=\"status s-unknown\"><span aria-hidden=\"true\">?</span> stale</span>"), "{html}");
    }

    #[test]
    fn reports_are_linked_by_encoded_name() {
        let s = summary();
        let links = [ReportLink {
            label: "5s".into(),
            file: "demo-x-5s&.md".into(),
        }];
        let html = render_page(&view(Some(&s), &links));
        assert!(html.contains("<a href=\"reports/demo-x-5s%26.md\">5s checkpoint</a> <code>demo-x-5s&amp;.md</code>"), "{html}");
    }

    #[test]
    fn before_the_first_cycle_the_page_says_it_is_starting() {
        let mut v = view(None, &[]);
        v.last_sample_at = None;
        v.interval_secs = 1.0;
        let html = render_page(&v);
        assert!(html.contains("> starting</span>"), "{html}");
        assert!(html.contains("content=\"5\""), "{html}");
        assert!(html.ends_with("</html>\n"));
    }

    #[test]
    fn refresh_is_the_interval_at_least_five_seconds() {
        assert_eq!(refresh_secs(1.0), 5);
        assert_eq!(refresh_secs(10.0), 10);
        assert_eq!(refresh_secs(7.5), 8);
        assert_eq!(refresh_secs(f64::NAN), 5);
        assert_eq!(refresh_secs(1e9), 3600);
    }
}
