//! From the raw forms to a [`Config`]: every value that cannot be meant is
//! a problem with its dotted key, all collected in one pass. Each section
//! is checked and resolved in one place, its own module here; `[nats]` and
//! `[state]` share the connection rules of [`nats`].

use super::*;

mod alerts;
mod consumers;
mod criteria;
mod database;
mod heartbeat;
mod log;
mod metrics;
mod nats;
mod rollback;
mod service_env;
mod state;
mod streams;
mod watch;

use alerts::validate_alerts;
use consumers::validate_consumers;
use criteria::check_criteria;
use database::validate_database;
use heartbeat::validate_heartbeat;
use log::validate_log;
use metrics::validate_metrics;
use nats::validate_nats;
use rollback::validate_rollback;
use service_env::validate_service_env;
use state::validate_state;
use streams::check_streams;
use watch::validate_watch;

/// Where relative paths in a config file point: the file's own directory,
/// made absolute, so a config means the same from any working directory
/// (a systemd unit, a cron job and a shell in another folder) and every
/// message can print the path it actually used.
pub(super) fn config_dir(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new(""));
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(dir)
    };
    normalize(&dir)
}

/// `p` against `base` when relative; `.` and `..` folded lexically (the
/// file need not exist yet: a state file or a reports folder is created later).
pub fn resolve_path(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        normalize(p)
    } else {
        normalize(&base.join(p))
    }
}

fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    out
}

pub(super) fn non_empty_path(base: &Path, s: &str) -> Option<PathBuf> {
    (!s.trim().is_empty()).then(|| resolve_path(base, s))
}

/// Where a section reports its problems: (dotted key, message).
type Problems<'a> = &'a mut dyn FnMut(&str, String);

/// An http(s) URL, else a problem at `key`: whether it is one. Messages
/// never quote the URL (its path or query may be a credential).
fn check_http_url(key: &str, value: &str, p: Problems<'_>) -> bool {
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => true,
        Ok(u) => {
            p(
                key,
                format!("scheme `{}`: expected http or https", u.scheme()),
            );
            false
        }
        // The parser's message never repeats the input.
        Err(e) => {
            p(key, format!("not a URL: {e}"));
            false
        }
    }
}

/// `""` (or blanks) as None: an optional name left empty.
fn non_empty(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.to_string())
}

/// Checks every section and builds the [`Config`]; problems go to `problems`.
/// Each section is checked and resolved in its own module, in file order.
pub(super) fn validate(
    path: &Path,
    raw: RawConfig,
    problems: &mut Vec<(String, String)>,
) -> Config {
    let mut p = |key: &str, msg: String| problems.push((key.to_string(), msg));
    let base = config_dir(path);
    check_soak(&raw, &mut p);
    check_probes(&raw, &mut p);
    let nats = validate_nats(&raw, &base, &mut p);
    check_streams(&raw, &mut p);
    let consumers = validate_consumers(&raw, &mut p);
    let metrics = validate_metrics(&raw, &mut p);
    let database = validate_database(&raw, &mut p);
    let log = validate_log(&raw, &base, &mut p);
    let service_env = validate_service_env(&raw, &base, &mut p);
    check_criteria(&raw, &mut p);
    let watch = validate_watch(&raw, &base, &mut p);
    let alerts = validate_alerts(&raw, &mut p);
    let rollback = validate_rollback(&raw, &base, &mut p);
    let state = validate_state(&raw, &base, &mut p);
    let heartbeat = validate_heartbeat(&raw, &mut p);
    let ledger = validate_ledger_section(&raw, &consumers, &mut p);
    Config {
        source: base.join(path.file_name().unwrap_or_default()),
        soak: raw.soak,
        probe_timeout: raw.probes.timeout,
        nats,
        streams: raw.streams,
        consumers,
        metrics,
        database,
        log,
        service_env,
        criteria: raw.criteria,
        watch,
        alerts,
        rollback,
        state,
        heartbeat,
        ledger,
        warnings: Vec::new(),
    }
}

/// `[ledger]`: its rules live with its types (`config/ledger.rs`); it
/// needs the table, the DLQ stream and the interval it is judged beside.
fn validate_ledger_section(
    raw: &RawConfig,
    consumers: &super::ConsumersConfig,
    p: Problems<'_>,
) -> Option<super::ledger::LedgerConfig> {
    let l = raw.ledger.as_ref()?;
    let ctx = super::ledger::LedgerContext {
        database: raw.database.as_ref().map(|d| {
            (
                d.table.as_str(),
                d.created_column.as_str(),
                d.updated_column.as_str(),
            )
        }),
        dlq_stream: &raw.streams.dlq.name,
        interval: raw.watch.interval,
    };
    super::ledger::validate_ledger(l, &ctx, consumers, p)
}

/// `[soak]`: a T0 not ahead of this clock (beyond the skew allowed).
fn check_soak(raw: &RawConfig, p: Problems<'_>) {
    if let Some(e) = raw
        .soak
        .started_at
        .and_then(|t0| super::t0_in_future(t0, chrono::Utc::now()))
    {
        p("soak.started_at", e);
    }
}

/// `[probes]`: a timeout that lets a probe run at all.
fn check_probes(raw: &RawConfig, p: Problems<'_>) {
    if raw.probes.timeout.is_zero() {
        p("probes.timeout", "must be greater than 0".into());
    }
}

/// What a valid config allows but probably does not mean, as (dotted key,
/// message): nothing is refused for it, but a person should hear it.
pub(super) fn advisories(cfg: &Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    // A cycle waits for its slowest probe: an interval shorter than the
    // timeout stretches every cycle with a hanging probe to the timeout.
    if cfg.watch.interval < cfg.probe_timeout {
        out.push((
            "watch.interval".to_string(),
            format!(
                "`{}` is shorter than probes.timeout ({}): a cycle waits for its slowest probe, so while one hangs every cycle takes {} and samples come that far apart; set probes.timeout below the interval",
                humantime::format_duration(cfg.watch.interval),
                humantime::format_duration(cfg.probe_timeout),
                humantime::format_duration(cfg.probe_timeout),
            ),
        ));
    }
    out
}
