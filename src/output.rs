//! Rendering a check: text, Markdown, JSON, Nagios and node_exporter textfile.
//!
//! Renderers are pure functions of a [`CheckReport`]; only [`write_atomic`]
//! touches the disk, so a scraper never reads a half-written textfile.

use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::sample::Snapshot;
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

/// Text from outside (label values, log lines, evidence quoting them,
/// servers' and receivers' errors, a restart command's output) made safe for
/// a line-oriented human output: every control character becomes a visible
/// escape (`\n`, `\r`, `\t`, else `\u{1b}` style), as do the Unicode bidi
/// overrides and line separators, so a crafted label cannot forge a line
/// (`OVERALL: PASS (exit 0)`) or drive the terminal. JSON needs none of this
/// (serde escapes control characters).
pub fn escape_untrusted(s: &str) -> String {
    if !s.chars().any(needs_escape) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

/// [`escape_untrusted`] after scrubbing every configured credential: the
/// one call for outside text on its way into any human output.
pub fn untrusted(s: &str) -> String {
    escape_untrusted(&crate::secret::scrub(s))
}

/// The daemon's log sink: stderr, one event per write, with configured
/// credentials scrubbed and any line break or control character inside an
/// event made visible, so a logged error that echoes a receiver's body
/// cannot forge log lines. ESC is left alone: tracing-subscriber already
/// escapes it in field values, and its own colours use it.
pub fn log_writer() -> LogWriter {
    LogWriter
}

/// See [`log_writer`].
#[derive(Debug, Clone, Copy)]
pub struct LogWriter;

/// One formatted log event made safe: scrubbed, inner breaks and control
/// characters (but ESC and tab) escaped, the final newline kept.
fn safe_log_event(text: &str) -> String {
    let (body, end) = match text.strip_suffix('\n') {
        Some(b) => (b, "\n"),
        None => (text, ""),
    };
    let scrubbed = crate::secret::scrub(body);
    let mut out = String::with_capacity(scrubbed.len() + 1);
    for c in scrubbed.chars() {
        match c {
            '\u{1b}' | '\t' => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push_str(end);
    out
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let out = safe_log_event(&String::from_utf8_lossy(buf));
        std::io::stderr().lock().write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
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

/// A table cell: pipes escaped (they would split the cell), `*` escaped
/// (subject wildcards would turn into emphasis), `<` escaped where it could
/// open an HTML tag (`<none>`), line breaks flattened, other control
/// characters made visible and credentials scrubbed ([`untrusted`]).
pub fn md_cell(s: &str) -> String {
    // Line breaks flattened first (a cell is one line), then every other
    // control character made visible.
    let s = &untrusted(&s.replace("\r\n", " ").replace(['\n', '\r'], " "));
    let mut out = String::with_capacity(s.len() + 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '|' => out.push_str("\\|"),
            '*' => out.push_str("\\*"),
            '<' if chars
                .peek()
                .is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?')) =>
            {
                out.push_str("\\<")
            }
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push(' ');
            }
            '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The deployment record's "stream state" and "consumer health" tables for a
/// snapshot; shared by `check --format markdown` and the soak reports.
pub fn state_tables_markdown(snap: &Snapshot) -> String {
    let t = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%SZ").to_string();
    let mut out = String::from(
        "## Stream state\n\n| Stream | Subjects | Messages | Bytes | First Seq | Last Seq | Last message |\n|---|---|---|---|---|---|---|\n",
    );
    for (name, s) in &snap.streams {
        match s {
            Ok(Some(s)) => out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                md_cell(name),
                md_cell(&s.subjects.join(", ")),
                s.messages,
                s.bytes,
                s.first_seq,
                s.last_seq,
                s.last_ts.map(t).unwrap_or_else(|| "-".into())
            )),
            Ok(None) => out.push_str(&format!("| {} | missing | | | | | |\n", md_cell(name))),
            Err(f) => out.push_str(&format!(
                "| {} | unknown: {} | | | | | |\n",
                md_cell(name),
                md_cell(&f.reason)
            )),
        }
    }
    out.push_str("\n## Consumer health\n\n");
    match &snap.consumer {
        Ok(Some(c)) => out.push_str(&format!(
            "**Consumer: {} on {}**\n\n| Pending | Delivered | Ack Floor | Num Ack Pending | Num Redelivered | Num Waiting | Last delivery |\n|---|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {} | {} |\n\n",
            md_cell(&c.name),
            md_cell(&c.stream),
            c.num_pending,
            c.delivered_stream_seq,
            c.ack_floor_stream_seq,
            c.num_ack_pending,
            c.num_redelivered,
            c.num_waiting,
            c.delivered_last_active.map(t).unwrap_or_else(|| "never".into())
        )),
        Ok(None) => out.push_str("The durable consumer does not exist.\n\n"),
        Err(f) => out.push_str(&format!("Unknown: {}\n\n", md_cell(&f.reason))),
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

/// Writes via a temporary file in the same directory and a rename, so readers
/// (node_exporter, a report viewer) see the old or the new file, never half.
pub fn write_atomic(path: &Path, content: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_has_every_control_character_made_visible() {
        assert_eq!(escape_untrusted("plain é ✅ C:\\x"), "plain é ✅ C:\\x");
        assert_eq!(
            escape_untrusted("a\nOVERALL: PASS\r\t\u{1b}[2J\u{7}\u{7f}\u{9b}\u{202e}"),
            "a\\nOVERALL: PASS\\r\\t\\u{1b}[2J\\u{7}\\u{7f}\\u{9b}\\u{202e}"
        );
        assert_eq!(md_cell("x\r\ny|\u{1b}"), "x y\\|\\u{1b}");
        assert_eq!(prom_escape("s\"\n\u{1b}"), "s\\\"\\n\\u{1b}");
    }

    #[test]
    fn a_log_event_stays_one_line() {
        assert_eq!(
            safe_log_event("WARN x error=a\nERROR forged\r\u{7}\n"),
            "WARN x error=a\\nERROR forged\\r\\u{7}\n"
        );
        // tracing's own colours (ESC) are kept; it escapes ESC in fields itself.
        assert_eq!(
            safe_log_event("\u{1b}[2mt\u{1b}[0m\n"),
            "\u{1b}[2mt\u{1b}[0m\n"
        );
    }
}
