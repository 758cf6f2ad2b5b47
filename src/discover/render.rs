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
    pub database_url: String,
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

/// Query keys that carry credentials (kept in line with `secret::redact_url`).
const SECRET_QUERY_KEYS: &[&str] = &[
    "password",
    "pass",
    "pwd",
    "token",
    "auth_token",
    "access_token",
    "secret",
    "key",
    "api_key",
    "apikey",
    "sslpassword",
];

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
            if url.password().is_some() {
                let _ = url.set_password(None);
                removed = true;
            } else if !url.username().is_empty() && url.scheme().starts_with("nats") {
                // nats://TOKEN@host: a lone user part is the token.
                let _ = url.set_username("");
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

fn duration(d: Duration) -> String {
    toml_str(&humantime::format_duration(d).to_string())
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
        let _ = writeln!(out, "baseline_messages = {}", s.messages);
        let _ = writeln!(out, "baseline_last_seq = {}", s.last_seq);
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

/// The whole checks.toml.
pub fn render(plan: &Plan, observed: &Observed, opts: &RenderOptions) -> String {
    let mut out = String::with_capacity(8192);
    let (nats_url, nats_note) = env_url("NATS_URL", &opts.nats_url);
    let (metrics_url, metrics_note) = env_url("METRICS_URL", &opts.metrics_url);
    let (db_url, db_note) = env_url("DATABASE_URL", &opts.database_url);

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
        crate::secret::redact_url(&opts.database_url),
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

    // Streams.
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
    notes(&mut out, plan, "streams");
    let legacy = plan
        .legacy
        .clone()
        .unwrap_or_else(|| placeholder_stream("CHANGE_ME_LEGACY", "legacy.>"));
    stream_block(&mut out, "[streams.legacy]", &legacy, true);
    let hot = if plan.hot.is_empty() {
        vec![placeholder_stream("CHANGE_ME_HOT", "change-me.>")]
    } else {
        plan.hot.clone()
    };
    for s in &hot {
        stream_block(&mut out, "[[streams.hot]]", s, false);
    }
    let dlq = plan
        .dlq
        .clone()
        .unwrap_or_else(|| placeholder_stream("CHANGE_ME_DLQ", "dlq.>"));
    stream_block(&mut out, "[streams.dlq]", &dlq, true);

    // Consumer.
    out.push_str("[consumer]\n");
    notes(&mut out, plan, "consumer");
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

    // Metrics.
    out.push_str("[metrics]\n");
    if let Some(n) = metrics_note {
        let _ = writeln!(out, "{n}");
    }
    let _ = writeln!(out, "url = {metrics_url}");
    notes(&mut out, plan, "metrics");
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
            let _ = writeln!(out, "{} = {}", toml_str(k), toml_str(v));
        }
    }
    out.push('\n');

    // Database.
    out.push_str("[database]\n");
    if let Some(n) = db_note {
        let _ = writeln!(out, "{n}");
    }
    let _ = writeln!(out, "url = {db_url}");
    let _ = writeln!(out, "table = {}", toml_str(&opts.table));
    notes(&mut out, plan, "database");
    if let Ok(t) = &observed.table {
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

    // Log.
    out.push_str("[log]\n");
    notes(&mut out, plan, "log");
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
    let legacy_re = regex::escape(&legacy.name);
    out.push_str(
        "# A fallback: the service fell back to, bound, or even mentions the legacy stream.\n\
         fallback_patterns = [\n",
    );
    for p in [
        format!("\\b{legacy_re}\\b"),
        "(?i)\\bfall(ing|s)?[ -]?back\\b".to_string(),
        format!("(?i)consumer on {legacy_re}\\b"),
        format!("(?i)bound (to|on) {legacy_re}\\b"),
        "Stream mode: single".to_string(),
    ] {
        let _ = writeln!(out, "  {},", toml_str(&p));
    }
    out.push_str(
        "]\n# The normal start-up line lists the legacy stream as a candidate: not a fallback.\n\
         ignore_patterns = [\"Stream candidates:\"]\n\n",
    );

    // Service env.
    out.push_str("[service_env]\n");
    notes(&mut out, plan, "service_env");
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
                    let _ = writeln!(out, "{} = {}", toml_str(k), toml_str(v));
                }
            }
        }
        None => out.push_str("ack_wait_key = \"\"\nack_wait_unit = \"ms\"\n"),
    }
    out.push_str(
        "\n# Thresholds: the Phase B seed's, not observed; tune them.\n[criteria]\n\
         lag_warn = 5\nlag_fail = 10\nredeliveries_warn = 1\nredeliveries_fail = 10\n\
         success_rate_min = 0.999\np95_max = \"500ms\"\nlatency_quantile = 0.95\n\
         db_in_flight_tolerance = 5\nrestart_grace = \"5m\"\n",
    );
    out
}
