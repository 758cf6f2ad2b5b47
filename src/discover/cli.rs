//! The two commands' edges: arguments, look-ups, printing, exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{Config, NatsConfig};
use crate::discover::choose::{self, Hints};
use crate::discover::{checks_toml, live_check, lookup, LookupTargets, StreamSelection};
use crate::secret::{Secret, SecretUrl};

/// `soakwatch discover`: writes a commented checks.toml from the live system to stdout.
///
/// Exit codes: 0 written, nothing to flag; 1 written, with conflicts flagged
/// (listed at the top of the file and on stderr); 3 a look-up failed (the
/// file is still written, with placeholders where nothing could be seen).
#[derive(Debug, Clone, clap::Args)]
pub struct DiscoverArgs {
    /// NATS server URL (credentials in it are used, never written out).
    #[arg(long, env = "NATS_URL", hide_env_values = true)]
    pub nats: String,
    /// A NATS `.creds` file.
    #[arg(long)]
    pub nats_creds: Option<PathBuf>,
    /// The service's Prometheus endpoint, e.g. http://127.0.0.1:4102/metrics.
    #[arg(long, env = "METRICS_URL", hide_env_values = true)]
    pub metrics: String,
    /// The service's PostgreSQL URL; without it the config has no
    /// `[database]` (its criteria are not_configured).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
    /// The table the service writes (`schema.table` allowed); without it,
    /// the only table of the database's schema, else none (a conflict
    /// listing the tables there).
    #[arg(long)]
    pub table: Option<String>,
    /// Only streams whose names match this regular expression (a shared server holds others').
    #[arg(long)]
    pub streams: Option<String>,
    /// The legacy stream (default: subjects under `legacy.>`, else the idle one).
    #[arg(long)]
    pub legacy: Option<String>,
    /// The service's durable consumer (default: the first durable pull consumer on the hot streams).
    #[arg(long)]
    pub durable: Option<String>,
    /// A label every selected series must carry, LABEL=VALUE (repeatable).
    #[arg(long = "match", value_name = "LABEL=VALUE", value_parser = parse_matcher)]
    pub matchers: Vec<(String, String)>,
    /// The service's `.env` (the ack wait key and modes are read from it).
    #[arg(long)]
    pub env_file: Option<PathBuf>,
    /// The service's log file.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Name of the soak (`[soak] name`).
    #[arg(long, default_value = "soak")]
    pub name: String,
    /// Timeout of each look-up.
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,
}

/// `--timeout`: a humantime duration, at most [`crate::duration::MAX`].
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| e.to_string())?;
    crate::duration::check(d).map_err(|e| e.to_string())?;
    Ok(d)
}

fn parse_matcher(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{s}`: expected LABEL=VALUE")),
    }
}

fn nats_config(url: &str, creds: Option<PathBuf>) -> NatsConfig {
    NatsConfig {
        url: SecretUrl::new(url),
        token: Secret::default(),
        user: String::new(),
        password: Secret::default(),
        creds_file: creds,
        tls_required: false,
        tls_ca_file: None,
        tls_cert_file: None,
        tls_key_file: None,
    }
}

/// Runs `soakwatch discover`.
pub async fn run_discover(mut args: DiscoverArgs) -> anyhow::Result<ExitCode> {
    // The written config may be saved anywhere and its relative paths mean
    // its own folder: write the files given here as absolute paths.
    for p in [&mut args.nats_creds, &mut args.env_file, &mut args.log]
        .into_iter()
        .flatten()
    {
        if let Ok(abs) = std::path::absolute(&*p) {
            *p = abs;
        }
    }
    let filter = match &args.streams {
        Some(re) => Some(
            regex::Regex::new(re)
                .map_err(|e| anyhow::anyhow!("--streams {re:?}: bad regular expression: {e}"))?,
        ),
        None => None,
    };
    let targets = LookupTargets {
        nats: nats_config(&args.nats, args.nats_creds.clone()),
        streams: StreamSelection::Matching(filter),
        metrics_url: SecretUrl::new(args.metrics.clone()),
        database_url: args.database.clone().map(SecretUrl::new),
        table: args.table.clone().unwrap_or_default(),
        env_file: args.env_file.clone(),
        files: args.log.iter().cloned().collect(),
        timeout: args.timeout,
    };
    let mut observed = lookup(&targets).await;
    if args.table.is_none() {
        guess_table(&targets, &mut observed).await;
    }
    let table = match &observed.table {
        Some(Ok(t)) if !t.table.is_empty() => t.table.clone(),
        _ => args
            .table
            .clone()
            .unwrap_or_else(|| "CHANGE_ME_table".into()),
    };
    let hints = Hints {
        legacy: args.legacy.clone(),
        durable: args.durable.clone(),
        matchers: args.matchers.clone(),
    };
    let plan = choose::plan(&observed, &hints);
    let opts = checks_toml::RenderOptions {
        soak_name: args.name.clone(),
        nats_url: args.nats.clone(),
        metrics_url: args.metrics.clone(),
        database_url: args.database.clone(),
        table,
        env_file: args.env_file.clone(),
        log: args.log.clone(),
        generated_at: chrono::Utc::now(),
    };
    let text = checks_toml::render(&plan, &observed, &opts);
    print!("{text}");
    if let Some(w) = plan
        .legacy
        .as_ref()
        .and_then(|l| checks_toml::log_fallback_warning(&observed, &opts, &l.name))
    {
        eprintln!("warning: {w}");
    }
    let failures = observed.failures();
    for f in &failures {
        eprintln!("could not look: {f}");
    }
    let conflicts = plan.conflicts();
    for c in &conflicts {
        eprintln!("conflict: {}", c.text);
    }
    Ok(ExitCode::from(if !failures.is_empty() {
        3
    } else if !conflicts.is_empty() {
        1
    } else {
        0
    }))
}

/// No `--table`: a database whose schema holds exactly one table is that
/// table's (looked up and marked guessed); with more, none is assumed and
/// the conflict lists them.
async fn guess_table(targets: &LookupTargets, observed: &mut crate::discover::Observed) {
    let (Some(url), Some(Ok(t))) = (&targets.database_url, &observed.table) else {
        return;
    };
    let [only] = t.other_tables.as_slice() else {
        return;
    };
    let mut facts = crate::discover::lookup_table(url, only, targets.timeout).await;
    if let Ok(f) = &mut facts {
        f.guessed = true;
    }
    observed.table = Some(facts);
}

/// Runs `soakwatch validate --live` on a loaded config: prints one line per
/// finding (`problem:`/`warning:` `file:line: key: message`) and returns the
/// exit code (0 all there, 1 warnings, 2 a configured name does not exist,
/// 3 a look-up failed).
pub async fn run_validate_live(cfg: &Config, path: &Path) -> ExitCode {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut files: Vec<PathBuf> = cfg.log.iter().map(|l| l.path.clone()).collect();
    if let Some(r) = &cfg.rollback {
        files.push(r.run.env_file.clone());
        files.push(r.run.log_file.clone());
    }
    let targets = LookupTargets {
        nats: cfg.nats.clone(),
        streams: StreamSelection::Named(cfg.streams.all().iter().map(|s| s.name.clone()).collect()),
        metrics_url: cfg.metrics.url.clone(),
        database_url: cfg.database.as_ref().map(|d| d.url.clone()),
        table: cfg
            .database
            .as_ref()
            .map(|d| d.table.clone())
            .unwrap_or_default(),
        env_file: cfg.service_env.as_ref().map(|e| e.path.clone()),
        files,
        timeout: cfg.probe_timeout,
    };
    let observed = lookup(&targets).await;
    let findings = live_check::check(cfg, &text, &observed);
    for f in &findings {
        println!("{}", f.display(path));
    }
    // A missing env file is a finding (service_env.path), not a failed look-up.
    let env_missing = cfg
        .service_env
        .as_ref()
        .and_then(|e| observed.file(&e.path))
        .is_some_and(|f| f.size.is_none());
    let mut failures = observed.failures();
    if env_missing {
        // The missing env file is already reported as a missing file.
        if let Some(Err(e)) = &observed.env {
            failures.retain(|f| !std::ptr::eq(*f, e));
        }
    }
    for f in &failures {
        println!("could not look: {f}");
    }
    let count = |s: live_check::Severity| findings.iter().filter(|f| f.severity == s).count();
    let notes = count(live_check::Severity::Note);
    println!(
        "{}: {} problem(s), {} warning(s), {} look-up(s) failed{}",
        path.display(),
        count(live_check::Severity::Problem),
        count(live_check::Severity::Warning),
        failures.len(),
        if notes > 0 {
            format!(", {notes} note(s)")
        } else {
            String::new()
        }
    );
    ExitCode::from(live_check::exit_code(&findings, failures.len()))
}
