//! Pure: a [`Plan`] (and what was seen) -> the text of a commented checks.toml
//! that `Config::from_text` accepts.
//!
//! Every observed string goes through [`toml_str`] (escaped, `${` doubled so
//! it is not read as an environment reference); URLs are written as
//! `${VAR:-url}` with any password or token removed, so no secret is ever
//! written in clear.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::discover::choose::{NoteKind, Plan};
use crate::discover::{Observed, StreamFacts};

/// What the renderer needs besides the plan.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// `[soak] name`.
    pub soak_name: String,
    /// NATS URL as given (may carry credentials: never written as is).
    pub nats_url: String,
    /// `/metrics` URL as given.
    pub metrics_url: String,
    /// PostgreSQL URL as given.
    pub database_url: Option<String>,
    /// The table.
    pub table: String,
    /// The service's env file, when given.
    pub env_file: Option<PathBuf>,
    /// The service's log, when given.
    pub log: Option<PathBuf>,
    /// When the look-ups ran (for the header).
    pub generated_at: chrono::DateTime<chrono::Utc>,
}

/// A TOML basic string of `s`; `${` becomes `$${` so the loader keeps it literal.
pub fn toml_str(s: &str) -> String {
    toml_raw_str(&s.replace("${", "$${"))
}

/// A TOML basic string, without the `${` escape (for deliberate `${VAR:-...}`).
fn toml_raw_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML key: bare when it can be, else quoted.
fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        toml_str(k)
    }
}

/// A regular expression as a TOML literal string when it can be (no escaping
/// of backslashes), else a basic string.
fn toml_pattern(p: &str) -> String {
    let p = p.replace("${", "$${");
    if p.contains('\'') || p.chars().any(char::is_control) {
        toml_raw_str(&p)
    } else {
        format!("'{p}'")
    }
}

fn toml_list(items: &[String]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|s| toml_str(s))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

use crate::secret::SECRET_QUERY_KEYS;

/// A URL without its password, token user part and credential query values.
/// Returns the cleaned URL and whether anything was removed. Unparsable
/// input is dropped entirely.
pub fn strip_credentials(raw: &str) -> (String, bool) {
    let parts: Vec<(String, bool)> = raw
        .split(',')
        .map(|part| {
            let part = part.trim();
            let Ok(mut url) = url::Url::parse(part) else {
                return (String::new(), !part.is_empty());
            };
            let mut removed = false;
            let nats = matches!(url.scheme(), "nats" | "tls" | "ws" | "wss");
            if nats && (!url.username().is_empty() || url.password().is_some()) {
                // nats://TOKEN@host: a lone user part is the token, and a user
                // left without its password would be sent as one.
                let _ = url.set_password(None);
                let _ = url.set_username("");
                removed = true;
            } else if url.password().is_some() {
                let _ = url.set_password(None);
                removed = true;
            }
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| {
                    let secret = SECRET_QUERY_KEYS.contains(&k.to_ascii_lowercase().as_str());
                    removed |= secret;
                    !secret
                })
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if url.query().is_some() {
                if pairs.is_empty() {
                    url.set_query(None);
                } else {
                    url.query_pairs_mut().clear().extend_pairs(pairs);
                }
            }
            (url.to_string(), removed)
        })
        .collect();
    let removed = parts.iter().any(|(_, r)| *r);
    let urls: Vec<String> = parts
        .into_iter()
        .map(|(u, _)| u)
        .filter(|u| !u.is_empty())
        .collect();
    (urls.join(","), removed)
}

/// `"${VAR:-url}"` with credentials removed, plus a comment when some were.
fn env_url(var: &str, raw: &str) -> (String, Option<String>) {
    let (clean, removed) = strip_credentials(raw);
    // `}` would end the default early and `$` would start a reference.
    let clean = clean.replace('}', "%7D").replace('$', "%24");
    let comment = removed.then(|| {
        format!(
            "# credentials were removed from this URL: set {var} (with them) in the environment"
        )
    });
    (toml_raw_str(&format!("${{{var}:-{clean}}}")), comment)
}

/// A duration in the largest whole unit (`48h`, `60s`, `500ms`), as checks.toml writes them.
fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    let s = if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{ms}ms")
    } else {
        humantime::format_duration(d).to_string()
    };
    toml_str(&s)
}

fn notes(out: &mut String, plan: &Plan, section: &str) {
    for n in plan.notes_of(section) {
        let tag = match n.kind {
            NoteKind::Guess => "guessed",
            NoteKind::Conflict => "CONFLICT",
            NoteKind::Info => "seen",
        };
        let _ = writeln!(out, "# {tag}: {}", n.text);
    }
}

fn stream_block(out: &mut String, header: &str, s: &StreamFacts, baseline: bool) {
    let _ = writeln!(out, "{header}");
    let _ = writeln!(out, "name = {}", toml_str(&s.name));
    let _ = writeln!(out, "subjects = {}", toml_list(&s.subjects));
    if baseline {
        let _ = writeln!(
            out,
            "# observed now: {} message(s), last sequence {}{}",
            s.messages,
            s.last_seq,
            s.last_ts
                .map(|t| format!(
                    ", last written {}",
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ))
                .unwrap_or_default()
        );
        // What discover sees may be days before the cutover: the soak
        // takes its own baselines at T0. Pinned here only by hand.
        let _ = writeln!(
            out,
            "# The soak takes its baselines at T0 (its first cycle); uncomment only to pin T0's values by hand."
        );
        let _ = writeln!(out, "# baseline_messages = {}", s.messages);
        let _ = writeln!(out, "# baseline_last_seq = {}", s.last_seq);
    } else {
        let _ = writeln!(out, "storage = {}", toml_str(&s.storage));
        let _ = writeln!(out, "replicas = {}", s.replicas);
        let _ = writeln!(out, "max_age = {}", duration(s.max_age));
    }
    let _ = writeln!(out);
}

fn placeholder_stream(name: &str, subject: &str) -> StreamFacts {
    StreamFacts {
        name: name.into(),
        subjects: vec![subject.into()],
        storage: "file".into(),
        replicas: 1,
        max_age: Duration::ZERO,
        messages: 0,
        last_seq: 0,
        last_ts: None,
        consumers: Vec::new(),
    }
}

/// The whole checks.toml, section by section.
pub fn render(plan: &Plan, observed: &Observed, opts: &RenderOptions) -> String {
    let mut out = String::with_capacity(8192);
    let legacy = plan
        .legacy
        .clone()
        .unwrap_or_else(|| placeholder_stream("CHANGE_ME_LEGACY", "legacy.>"));
    let hot = if plan.hot.is_empty() {
        vec![placeholder_stream("CHANGE_ME_HOT", "change-me.>")]
    } else {
        plan.hot.clone()
    };
    header(&mut out, plan, observed, opts);
    soak_and_nats_sections(&mut out, opts);
    streams_section(&mut out, plan, observed, &legacy, &hot);
    consumer_section(&mut out, plan, &hot);
    metrics_section(&mut out, plan, observed, opts);
    // A probe whose input was not given is left out (its criteria are then
    // not_configured): its section is written commented, ready to fill in.
    let mut section = String::new();
    database_section(&mut section, plan, observed, opts);
    optional(
        &mut out,
        &section,
        opts.database_url.is_some(),
        "--database URL",
    );
    section.clear();
    log_section(&mut section, plan, observed, opts, &legacy.name);
    optional(&mut out, &section, opts.log.is_some(), "--log PATH");
    section.clear();
    service_env_section(&mut section, plan, opts);
    optional(
        &mut out,
        &section,
        opts.env_file.is_some(),
        "--env-file PATH",
    );
    out.push_str(CRITERIA_SECTION);
    out
}

/// `section` as written, or commented out when its input was not given.
fn optional(out: &mut String, section: &str, given: bool, flag: &str) {
    if given {
        out.push_str(section);
        return;
    }
    let _ = writeln!(
        out,
        "# Left out (no {flag} given): its criteria are not_configured, which never\n\
         # blocks a verdict. Uncomment and fill in to watch it."
    );
    for line in section.lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "# {line}");
        }
    }
}

/// Where and when the file was written, what could not be looked at, the conflicts.
fn header(out: &mut String, plan: &Plan, observed: &Observed, opts: &RenderOptions) {
    let _ = writeln!(
        out,
        "# checks.toml written by `soakwatch discover` at {}",
        opts.generated_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let _ = writeln!(
        out,
        "# from NATS {}, metrics {}, database {} (table {}).",
        crate::secret::redact_url(&opts.nats_url),
        crate::secret::redact_url(&opts.metrics_url),
        opts.database_url
            .as_deref()
            .map_or("none".into(), crate::secret::redact_url),
        opts.table
    );
    out.push_str(
        "# Names and values were seen live; \"guessed:\" marks a choice made by a\n\
         # heuristic and \"CONFLICT:\" something to fix in the system or here.\n\
         # Baselines are the counts observed now. Review, then `soakwatch validate --live`.\n",
    );
    for f in observed.failures() {
        let _ = writeln!(out, "# COULD NOT LOOK: {f} (placeholders written)");
    }
    let conflicts = plan.conflicts();
    if !conflicts.is_empty() {
        let _ = writeln!(out, "#\n# {} conflict(s):", conflicts.len());
        for c in conflicts {
            let _ = writeln!(out, "#   - {}", c.text);
        }
    }
    out.push('\n');
}

/// `[soak]`, `[probes]` and `[nats]` (its URL and credentials from the environment).
fn soak_and_nats_sections(out: &mut String, opts: &RenderOptions) {
    let (nats_url, nats_note) = env_url("NATS_URL", &opts.nats_url);
    let _ = writeln!(
        out,
        "[soak]\nname = {}\n# T0 of the soak: set it when the soak starts.\n# started_at = \"2025-01-01T00:00:00Z\"\nduration = \"48h\"\n",
        toml_str(&opts.soak_name)
    );
    out.push_str("[probes]\ntimeout = \"5s\"\n\n");

    out.push_str("[nats]\n");
    if let Some(n) = nats_note {
        let _ = writeln!(out, "{n}");
    }
    let _ = writeln!(out, "url = {nats_url}");
    out.push_str(
        "# One of: token, user + password, creds_file. All empty = no auth.\n\
         token = \"${NATS_TOKEN:-}\"\nuser = \"${NATS_USER:-}\"\npassword = \"${NATS_PASSWORD:-}\"\n\
         creds_file = \"${NATS_CREDS:-}\"\n\n",
    );
}

/// `[streams.*]`: the legacy, hot and DLQ streams, placeholders for those not found.
fn streams_section(
    out: &mut String,
    plan: &Plan,
    observed: &Observed,
    legacy: &StreamFacts,
    hot: &[StreamFacts],
) {
    if let Ok(n) = &observed.nats {
        let _ = writeln!(
            out,
            "# {} stream(s) seen{}.",
            n.streams.len(),
            if n.filtered_out > 0 {
                format!(" ({} more left out by --streams)", n.filtered_out)
            } else {
                String::new()
            }
        );
    }
    notes(out, plan, "streams");
    stream_block(out, "[streams.legacy]", legacy, true);
    for s in hot {
        stream_block(out, "[[streams.hot]]", s, false);
    }
    let dlq = plan
        .dlq
        .clone()
        .unwrap_or_else(|| placeholder_stream("CHANGE_ME_DLQ", "dlq.>"));
    stream_block(out, "[streams.dlq]", &dlq, true);
}

/// `[consumer]`: the chosen durable (or a placeholder on the first hot stream).
fn consumer_section(out: &mut String, plan: &Plan, hot: &[StreamFacts]) {
    out.push_str("[consumer]\n");
    notes(out, plan, "consumer");
    if !plan.other_consumers.is_empty() {
        let _ = writeln!(
            out,
            "# To watch the other durables too: replace [consumer] by [[consumers]] (this\n\
             # one) and a selector, e.g. [[consumers]] streams = [{}] (docs/CONFIG.md).",
            hot.iter()
                .map(|s| toml_str(&s.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for (s, c) in &plan.other_consumers {
        let _ = writeln!(
            out,
            "# also seen on {s}: {} (filter {:?}, ack {} / {}, max_deliver {}, {})",
            c.name,
            c.filter_subject,
            c.ack_policy,
            humantime::format_duration(c.ack_wait),
            c.max_deliver,
            if c.deliver_subject.is_some() {
                "push"
            } else {
                "pull"
            }
        );
    }
    match &plan.consumer {
        Some((stream, c)) => {
            let filter = if c.filter_subject.is_empty() {
                hot.iter()
                    .find(|s| &s.name == stream)
                    .and_then(|s| s.subjects.first().cloned())
                    .unwrap_or_default()
            } else {
                c.filter_subject.clone()
            };
            let _ = writeln!(out, "stream = {}", toml_str(stream));
            let _ = writeln!(out, "durable = {}", toml_str(&c.name));
            let _ = writeln!(out, "filter_subject = {}", toml_str(&filter));
            let ack = match c.ack_policy.as_str() {
                "explicit" | "all" | "none" => c.ack_policy.clone(),
                other => {
                    let _ = writeln!(out, "# ack policy {other:?} seen; explicit written");
                    "explicit".into()
                }
            };
            let _ = writeln!(out, "ack_policy = {}", toml_str(&ack));
            let _ = writeln!(out, "ack_wait = {}", duration(c.ack_wait));
            let _ = writeln!(out, "max_deliver = {}", c.max_deliver);
            let _ = writeln!(out, "max_ack_pending = {}", c.max_ack_pending);
        }
        None => {
            let s = &hot[0];
            let _ = writeln!(out, "stream = {}", toml_str(&s.name));
            out.push_str("durable = \"CHANGE_ME\"\n");
            let _ = writeln!(
                out,
                "filter_subject = {}",
                toml_str(s.subjects.first().map(String::as_str).unwrap_or(">"))
            );
            out.push_str("ack_policy = \"explicit\"\nack_wait = \"30s\"\nmax_deliver = -1\n");
        }
    }
    out.push('\n');
}

/// `[metrics]`: the families seen, the chosen counter, histogram and matchers.
fn metrics_section(out: &mut String, plan: &Plan, observed: &Observed, opts: &RenderOptions) {
    let (metrics_url, metrics_note) = env_url("METRICS_URL", &opts.metrics_url);
    out.push_str("[metrics]\n");
    if let Some(n) = metrics_note {
        let _ = writeln!(out, "{n}");
    }
    let _ = writeln!(out, "url = {metrics_url}");
    notes(out, plan, "metrics");
    if let Ok(m) = &observed.metrics {
        let _ = writeln!(out, "# families seen ({}):", m.families.len());
        for f in &m.families {
            let labels: Vec<String> = f
                .labels
                .iter()
                .map(|(k, vals)| {
                    let vals: Vec<&str> = vals.iter().take(4).map(String::as_str).collect();
                    format!("{k}={}", vals.join("|"))
                })
                .collect();
            let _ = writeln!(
                out,
                "#   {} ({}){}",
                f.name,
                f.kind,
                if f.samples == 0 {
                    " no samples yet".to_string()
                } else if labels.is_empty() {
                    String::new()
                } else {
                    format!(" {{{}}}", labels.join(", "))
                }
            );
        }
        if m.bad_lines > 0 {
            let _ = writeln!(out, "# {} line(s) of the scrape did not parse", m.bad_lines);
        }
    }
    match &plan.counter {
        Some(c) => {
            let _ = writeln!(out, "messages_counter = {}", toml_str(&c.sample_name));
            let _ = writeln!(out, "result_label = {}", toml_str(&c.result_label));
            let _ = writeln!(out, "success_result = {}", toml_str(&c.success_result));
            let _ = writeln!(out, "dlq_result = {}", toml_str(&c.dlq_result));
            let _ = writeln!(out, "uncounted_results = {}", toml_list(&c.uncounted));
            let _ = writeln!(out, "stream_label = {}", toml_str(&c.stream_label));
        }
        None => out.push_str(
            "messages_counter = \"CHANGE_ME_messages_total\"\nresult_label = \"result\"\n\
             success_result = \"success\"\ndlq_result = \"dlq\"\nstream_label = \"stream\"\n",
        ),
    }
    let _ = writeln!(
        out,
        "latency_histogram = {}",
        toml_str(plan.histogram.as_deref().unwrap_or(""))
    );
    let _ = writeln!(
        out,
        "process_start_metric = {}",
        toml_str(plan.process_start.as_deref().unwrap_or(""))
    );
    if !plan.matchers.is_empty() {
        out.push_str("\n# Only series carrying these labels are counted.\n[metrics.match]\n");
        for (k, v) in &plan.matchers {
            let _ = writeln!(out, "{} = {}", toml_key(k), toml_str(v));
        }
    }
    out.push('\n');
}

/// `[database]`: the table's columns and indexes, the chosen columns.
fn database_section(out: &mut String, plan: &Plan, observed: &Observed, opts: &RenderOptions) {
    let (db_url, db_note) = env_url(
        "DATABASE_URL",
        opts.database_url
            .as_deref()
            .unwrap_or("postgres://localhost/change_me"),
    );
    out.push_str("[database]\n");
    if let Some(n) = db_note {
        let _ = writeln!(out, "{n}");
    }
    let _ = writeln!(out, "url = {db_url}");
    let _ = writeln!(out, "table = {}", toml_str(&opts.table));
    notes(out, plan, "database");
    if let Some(Ok(t)) = &observed.table {
        if t.exists {
            let cols: Vec<String> = t
                .columns
                .iter()
                .map(|(c, ty)| format!("{c} ({ty})"))
                .collect();
            let _ = writeln!(out, "# columns: {}", cols.join(", "));
            for i in &t.indexes {
                let _ = writeln!(out, "# index {} on ({})", i.name, i.columns.join(", "));
            }
            if t.indexes.is_empty() {
                out.push_str("# no indexes\n");
            }
        }
    }
    let _ = writeln!(
        out,
        "created_column = {}",
        toml_str(plan.created_column.as_deref().unwrap_or("createdAt"))
    );
    let _ = writeln!(
        out,
        "updated_column = {}",
        toml_str(plan.updated_column.as_deref().unwrap_or(""))
    );
    out.push_str("recent_window = \"10m\"\n");
    if let Some((col, src)) = &plan.derived {
        let _ = writeln!(
            out,
            "\n[database.derived]\ncolumn = {}\nsource = {}\nfunction = \"ln\"\ntolerance = 1e-9\nsample_rows = 200",
            toml_str(col),
            toml_str(src)
        );
    }
    out.push('\n');
}

/// `[log]`: the service's log and the patterns of a fallback to the `legacy` stream.
fn log_section(
    out: &mut String,
    plan: &Plan,
    observed: &Observed,
    opts: &RenderOptions,
    legacy: &str,
) {
    out.push_str("[log]\n");
    notes(out, plan, "log");
    match &opts.log {
        Some(p) => {
            if let Some(f) = observed.file(p) {
                match (&f.size, &f.error) {
                    (Some(n), _) => {
                        let _ = writeln!(out, "# seen: {n} bytes");
                    }
                    (None, Some(e)) => {
                        let _ = writeln!(out, "# CONFLICT: {e}");
                    }
                    _ => {}
                }
            }
            let _ = writeln!(out, "path = {}", toml_str(&p.display().to_string()));
        }
        None => out.push_str(
            "# not seen: pass --log PATH (the service's log file)\npath = \"${SERVICE_LOG:-service.log}\"\n",
        ),
    }
    let legacy_re = regex::escape(legacy);
    let seen = opts
        .log
        .as_deref()
        .and_then(|p| observed.file(p))
        .map(|f| StartupLines::of(&f.tail))
        .unwrap_or_default();
    out.push_str(
        "# A fallback: the service fell back to, bound, or even mentions the legacy stream.\n",
    );
    if seen.stream_mode {
        out.push_str("# seen: the service logs its stream mode (`Stream mode: ...`); single mode is the fallback.\n");
    }
    if let Some(w) = log_fallback_warning(observed, opts, legacy) {
        let _ = writeln!(out, "# WARNING: {w}");
    }
    out.push_str("fallback_patterns = [\n");
    for p in fallback_patterns(&legacy_re, seen) {
        let _ = writeln!(out, "  {},", toml_pattern(&p));
    }
    out.push_str("]\n");
    if seen.candidates {
        out.push_str(
            "# seen: a start-up line lists the legacy stream as a candidate (`Stream candidates: ...`): not a fallback.\n\
             ignore_patterns = ['(?i)Stream candidates:']\n\n",
        );
    } else {
        out.push_str(
            "# Lines a fallback pattern matches that are not a fallback (a start-up line\n\
             # listing the legacy stream, say): add a pattern for each.\n\
             ignore_patterns = []\n\n",
        );
    }
}

/// The fallback patterns proposed for the legacy stream (regex-escaped).
fn fallback_patterns(legacy_re: &str, seen: StartupLines) -> Vec<String> {
    let mut patterns = vec![
        format!("\\b{legacy_re}\\b"),
        "(?i)\\bfall(ing|s)?[ -]?back\\b".to_string(),
        format!("(?i)consumer on {legacy_re}\\b"),
        format!("(?i)bound (to|on) {legacy_re}\\b"),
    ];
    if seen.stream_mode {
        patterns.push("Stream mode: single".to_string());
    }
    patterns
}

/// When the log's tail already holds lines the proposed fallback patterns
/// match (and no proposed ignore pattern does): what to tell the team. A
/// soak judges only lines written after its T0, so a pre-cutover line never
/// fails it; but a match may also be a fallback happening now. `None`
/// without `--log` or without such a line.
pub fn log_fallback_warning(
    observed: &Observed,
    opts: &RenderOptions,
    legacy: &str,
) -> Option<String> {
    let tail = &observed.file(opts.log.as_deref()?)?.tail;
    let seen = StartupLines::of(tail);
    let compile = |v: Vec<String>| -> Vec<regex::Regex> {
        v.iter().filter_map(|p| regex::Regex::new(p).ok()).collect()
    };
    let fallback = compile(fallback_patterns(&regex::escape(legacy), seen));
    let ignore = compile(if seen.candidates {
        vec!["(?i)Stream candidates:".to_string()]
    } else {
        Vec::new()
    });
    let hits: Vec<&String> = tail
        .iter()
        .filter(|l| fallback.iter().any(|r| r.is_match(l)) && !ignore.iter().any(|r| r.is_match(l)))
        .collect();
    let first = hits.first()?;
    Some(format!(
        "the log already holds {} line(s) a fallback pattern matches; the soak judges only lines written after its T0, but check this is not a fallback now. First: {}",
        hits.len(),
        crate::probe::log::evidence_line(first)
    ))
}

/// Start-up lines of a known shape seen in the service's log: `discover`
/// proposes the patterns that go with them only when the log shows them,
/// never for a service that writes no such line.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct StartupLines {
    /// `Stream mode: multi` (the seed's service): `Stream mode: single` is its fallback.
    stream_mode: bool,
    /// `Stream candidates: HOT, LEGACY`: names the legacy stream, not a fallback.
    candidates: bool,
}

impl StartupLines {
    fn of(lines: &[String]) -> StartupLines {
        let has = |needle: &str| {
            lines
                .iter()
                .any(|l| l.to_ascii_lowercase().contains(needle))
        };
        StartupLines {
            stream_mode: has("stream mode:"),
            candidates: has("stream candidates:"),
        }
    }
}

/// `[service_env]`: the service's env file, its ack-wait key and expected values.
fn service_env_section(out: &mut String, plan: &Plan, opts: &RenderOptions) {
    out.push_str("[service_env]\n");
    notes(out, plan, "service_env");
    match &opts.env_file {
        Some(p) => {
            let _ = writeln!(out, "path = {}", toml_str(&p.display().to_string()));
        }
        None => out.push_str(
            "# not seen: pass --env-file PATH (the service's .env)\npath = \"${SERVICE_ENV_FILE:-.env}\"\n",
        ),
    }
    match &plan.env {
        Some(e) => {
            let _ = writeln!(
                out,
                "ack_wait_key = {}",
                toml_str(e.ack_wait_key.as_deref().unwrap_or(""))
            );
            let _ = writeln!(out, "ack_wait_unit = {}", toml_str(&e.ack_wait_unit));
            if !e.expect.is_empty() {
                out.push_str("\n[service_env.expect]\n");
                for (k, v) in &e.expect {
                    let _ = writeln!(out, "{} = {}", toml_key(k), toml_str(v));
                }
            }
        }
        None => out.push_str("ack_wait_key = \"\"\nack_wait_unit = \"ms\"\n"),
    }
}

/// `[criteria]`: the Phase B cutover's thresholds, not observed.
const CRITERIA_SECTION: &str =
    "\n# Thresholds: the Phase B cutover's, not observed; tune them.\n[criteria]\n\
         lag_warn = 5\nlag_fail = 10\nredeliveries_warn = 1\nredeliveries_fail = 10\n\
         success_rate_min = 0.999\np95_max = \"500ms\"\nlatency_quantile = 0.95\n\
         db_in_flight_tolerance = 5\nrestart_grace = \"5m\"\n";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::discover::choose::{plan, Hints};
    use crate::discover::fixture;
    use std::path::Path;

    fn opts() -> RenderOptions {
        RenderOptions {
            soak_name: "discovered".into(),
            nats_url: "nats://svc:natspw@127.0.0.1:4222".into(),
            metrics_url: "http://127.0.0.1:4102/metrics".into(),
            database_url: Some("postgres://athlete:dbsecret@127.0.0.1:5432/athlete?sslmode=disable&password=qsecret".into()),
            table: "hrv_data".into(),
            env_file: Some(PathBuf::from("/svc/.env")),
            log: Some(PathBuf::from("/svc/log")),
            generated_at: chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default(),
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn seed_log_patterns_are_proposed_only_when_the_log_shows_their_lines() {
        let render_with = |tail: &[&str]| {
            let mut o = fixture::observed();
            o.files.push(crate::discover::FileFacts {
                path: PathBuf::from("/svc/log"),
                size: Some(100),
                error: None,
                tail: tail.iter().map(|l| l.to_string()).collect(),
            });
            render(&plan(&o, &Hints::default()), &o, &opts())
        };
        let own = render_with(&["orders-projector starting", "bound on ORDERS_HOT"]);
        assert!(!own.contains("Stream mode"), "{own}");
        assert!(!own.contains("Stream candidates"), "{own}");
        assert!(own.contains("ignore_patterns = []"), "{own}");
        let seed = render_with(&[
            "[event-bus] Stream mode: multi (EVENT_STREAM_MODE=\"multi\")",
            "[normalize-service] stream candidates: AA_CORE_HOT, ATHLETE_ALLY_EVENTS",
        ]);
        assert!(seed.contains("'Stream mode: single',"), "{seed}");
        assert!(
            seed.contains("ignore_patterns = ['(?i)Stream candidates:']"),
            "{seed}"
        );
        // Both written configs load.
        for text in [own, seed] {
            Config::from_text(Path::new("c.toml"), &text, &no_env).expect("valid");
        }
    }

    #[test]
    fn inputs_not_given_leave_their_sections_out_commented() {
        let mut o = fixture::observed();
        o.table = None;
        o.env = None;
        let opts = RenderOptions {
            database_url: None,
            env_file: None,
            log: None,
            ..opts()
        };
        let text = render(&plan(&o, &Hints::default()), &o, &opts);
        let c = Config::from_text(Path::new("/d/d.toml"), &text, &no_env)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(c.database.is_none() && c.log.is_none() && c.service_env.is_none());
        assert!(text.contains("# [database]"), "{text}");
        assert!(text.contains("Left out (no --log PATH given)"), "{text}");
        assert!(!text.contains("dbsecret"), "{text}");
    }

    #[test]
    fn output_is_a_valid_config_with_the_seen_names() {
        let o = fixture::observed();
        let text = render(&plan(&o, &Hints::default()), &o, &opts());
        let c = Config::from_text(Path::new("d.toml"), &text, &no_env)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(c.streams.legacy.name, "ATHLETE_ALLY_EVENTS");
        // Baselines belong to T0, not to when discover ran: written as comments.
        assert_eq!(c.streams.legacy.baseline_messages, None);
        assert_eq!(c.streams.dlq.baseline_messages, None);
        assert!(text.contains("# baseline_messages = 55"), "{text}");
        assert_eq!(c.streams.hot.len(), 2);
        assert_eq!(
            c.streams.hot[0].max_age,
            Some(Duration::from_secs(48 * 3600))
        );
        assert_eq!(c.consumers.named[0].durable, "normalize-hrv-durable");
        assert_eq!(c.consumers.named[0].ack_wait, Duration::from_secs(60));
        assert_eq!(c.metrics.messages_counter, "normalize_hrv_messages_total");
        assert_eq!(
            c.metrics.matchers,
            [("durable".to_string(), "normalize-hrv-durable".to_string())]
        );
        assert_eq!(
            c.database.as_ref().expect("[database]").created_column,
            "createdAt"
        );
        assert!(c.database.as_ref().expect("[database]").derived.is_some());
        assert_eq!(
            c.service_env
                .as_ref()
                .expect("[service_env]")
                .ack_wait_key
                .as_deref(),
            Some("NORMALIZE_HRV_ACK_WAIT_MS")
        );
        assert!(c.log.as_ref().expect("[log]").fallback_patterns[0]
            .is_match("bound ATHLETE_ALLY_EVENTS now"));
        assert!(text.contains("max_age = \"48h\""), "{text}");
        assert!(
            text.contains("# guessed: legacy stream ATHLETE_ALLY_EVENTS"),
            "{text}"
        );
    }

    #[test]
    fn secrets_are_never_written_and_env_overrides_work() {
        let o = fixture::observed();
        let text = render(&plan(&o, &Hints::default()), &o, &opts());
        for secret in ["natspw", "dbsecret", "qsecret", "hunter2"] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
        assert!(text.contains(
            "url = \"${DATABASE_URL:-postgres://athlete@127.0.0.1:5432/athlete?sslmode=disable}\""
        ), "{text}");
        assert!(
            text.contains("url = \"${NATS_URL:-nats://127.0.0.1:4222}\""),
            "{text}"
        );
        assert!(text.contains("set DATABASE_URL (with them)"), "{text}");
        let env = |k: &str| (k == "DATABASE_URL").then(|| "postgres://u:p@db/x".to_string());
        let c = Config::from_text(Path::new("d.toml"), &text, &env).expect("valid");
        assert_eq!(
            c.database.as_ref().expect("[database]").url.expose(),
            "postgres://u:p@db/x"
        );
    }

    #[test]
    fn nothing_seen_still_renders_a_valid_config() {
        let o = Observed {
            nats: Err(crate::probe_error::ProbeError::Other(
                "cannot connect to NATS at nats://127.0.0.1:1".into(),
            )),
            metrics: Err(crate::probe_error::ProbeError::Other(
                "GET x: connection failed".into(),
            )),
            table: Some(Err(crate::probe_error::ProbeError::Other(
                "database: refused".into(),
            ))),
            env: None,
            files: Vec::new(),
        };
        let mut op = opts();
        op.env_file = None;
        let text = render(&plan(&o, &Hints::default()), &o, &op);
        Config::from_text(Path::new("d.toml"), &text, &no_env)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(
            text.contains("# COULD NOT LOOK: cannot connect to NATS"),
            "{text}"
        );
        assert!(text.contains("durable = \"CHANGE_ME\""), "{text}");
    }

    #[test]
    fn observed_strings_cannot_inject_env_references_or_toml() {
        assert_eq!(toml_str("a${X}b"), "\"a$${X}b\"");
        assert_eq!(toml_str("q\"\\\n"), "\"q\\\"\\\\\\n\"");
        assert_eq!(toml_key("durable"), "durable");
        assert_eq!(toml_key("a.b"), "\"a.b\"");
        assert_eq!(toml_pattern("\\bX\\b"), "'\\bX\\b'");
        assert_eq!(toml_pattern("it's"), "\"it's\"");
    }

    #[test]
    fn credentials_are_stripped_from_urls() {
        assert_eq!(
            strip_credentials("nats://tok@h:4222"),
            ("nats://h:4222".to_string(), true)
        );
        assert_eq!(
            strip_credentials("nats://a:4222, nats://u:p@b:4222"),
            ("nats://a:4222,nats://b:4222".to_string(), true)
        );
        assert_eq!(
            strip_credentials("http://h/metrics?token=x&a=1"),
            ("http://h/metrics?a=1".to_string(), true)
        );
        assert_eq!(
            strip_credentials("postgres://u@h/db"),
            ("postgres://u@h/db".to_string(), false)
        );
        assert_eq!(strip_credentials("not a url"), (String::new(), true));
    }

    #[test]
    fn durations_use_the_largest_whole_unit() {
        assert_eq!(duration(Duration::from_secs(48 * 3600)), "\"48h\"");
        assert_eq!(duration(Duration::from_secs(60)), "\"1m\"");
        assert_eq!(duration(Duration::from_secs(90)), "\"90s\"");
        assert_eq!(duration(Duration::from_millis(1500)), "\"1500ms\"");
        assert_eq!(duration(Duration::ZERO), "\"0s\"");
    }
}
