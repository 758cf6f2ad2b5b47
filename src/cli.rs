//! One function per subcommand: what `main` calls once the arguments are
//! parsed. The CLI edge: errors are `anyhow` here and nowhere below.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use soakwatch::atomic_file;
use soakwatch::config::{Config, ConfigError};
use soakwatch::render::{self, check::Format};
use soakwatch::verdict::exit_code;

use crate::{AlertCommand, Cli, Command, LedgerCommand, StateCommand, EXIT_CONFIG};

/// `--window`: a duration like `90s` or `5m`; the error shows one.
pub(crate) fn parse_window(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; expected a duration like 90s, 5m or 0s (a single sample)"))?;
    soakwatch::duration::check(d).map_err(|e| e.to_string())?;
    Ok(d)
}

/// `--t0`: an RFC 3339 instant; the error shows one.
pub(crate) fn parse_t0(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let t0 = chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{e}; expected an RFC 3339 time like 2026-12-03T14:00:00Z"))?;
    match soakwatch::config::t0_in_future(t0, chrono::Utc::now()) {
        Some(e) => Err(e),
        None => Ok(t0),
    }
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        match &e {
            ConfigError::Invalid { problems } => {
                eprintln!("config refused ({} problem(s)):", problems.len());
                eprintln!("{e}");
            }
            ConfigError::Read { .. } | ConfigError::TooLarge { .. } => eprintln!("{e}"),
        }
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Loads the config, with `--state` overriding `watch.state`.
fn load_with_state(path: &std::path::Path, state: Option<PathBuf>) -> Result<Config, ExitCode> {
    let mut cfg = load(path)?;
    if let Some(s) = state {
        cfg.watch.state = s;
    }
    Ok(cfg)
}

/// Runs one subcommand; the exit code says how it went.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check {
            config,
            format,
            window,
            outfile,
            soak,
            state,
        } => check(&config, state, format, window, outfile, soak).await,
        Command::Validate { config, live } => validate(&config, live).await,
        Command::Watch {
            config,
            state,
            new_soak,
            t0,
            max_cycles,
            addr_file,
            force,
        } => {
            let cfg = match load_with_state(&config, state) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let start = soakwatch::watch::StartOptions {
                new_soak,
                t0,
                max_cycles,
                preflight: !force,
            };
            run_watch(cfg, start, addr_file).await
        }
        Command::Report { config, state, out } => report(&config, state, out).await,
        Command::Rollback {
            config,
            state,
            dry_run,
            execute,
        } => {
            let cfg = match load_with_state(&config, state) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            rollback_command(&cfg, dry_run || !execute).await
        }
        Command::State {
            command: StateCommand::Migrate { config, state },
        } => {
            let cfg = match load_with_state(&config, state) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            migrate_command(&cfg).await
        }
        Command::E2e { config } => e2e(&config).await,
        Command::Alert {
            command: AlertCommand::Test { config },
        } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            alert_test(&cfg).await
        }
        Command::Ledger {
            command: LedgerCommand::Explain { config, target },
        } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            ledger_explain(&cfg, &target).await
        }
        Command::Discover(args) => soakwatch::discover::cli::run_discover(args).await,
        Command::Export { command } => export(command),
    }
}

/// `soakwatch export prometheus-rules|grafana`: the file on stdout or `--out`.
fn export(command: crate::ExportCommand) -> anyhow::Result<ExitCode> {
    use soakwatch::export::{grafana, rules};
    let (args, what, watchdog_alert) = match command {
        crate::ExportCommand::PrometheusRules(a) => (a.common, "rules", Some(a.watchdog_alert)),
        crate::ExportCommand::Grafana(a) => (a, "dashboard", None),
    };
    let cfg = match load(&args.config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let text = match watchdog_alert {
        Some(watchdog_alert) => {
            rules::prometheus_rules_with(&cfg, &rules::RulesOptions { watchdog_alert })
        }
        None => grafana::grafana_dashboard(&cfg),
    }
    .with_context(|| format!("exporting the {what}"))?;
    match args.out {
        Some(path) => atomic_file::write_atomic(&path, &text)
            .with_context(|| format!("writing {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `soakwatch check`: a one-shot verdict, or the soak's so far with `--soak`.
async fn check(
    config: &Path,
    state: Option<PathBuf>,
    format: Format,
    window: Duration,
    outfile: Option<PathBuf>,
    soak: bool,
) -> anyhow::Result<ExitCode> {
    let cfg = match load_with_state(config, state) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let report = if soak {
        let (eff, summary) = soakwatch::watch::load_summary(&cfg).await?;
        soakwatch::watch::summary_as_check(&eff, &summary).context("the soak has no samples yet")?
    } else {
        soakwatch::check::run(cfg, window).await?
    };
    let text = render::check::render(&report, format);
    match outfile {
        Some(path) => atomic_file::write_atomic(&path, &text)
            .with_context(|| format!("writing {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::from(exit_code(report.overall())))
}

/// `soakwatch validate [--live]`.
async fn validate(config: &Path, live: bool) -> anyhow::Result<ExitCode> {
    let cfg = match load(config) {
        Ok(cfg) => cfg,
        Err(code) => return Ok(code),
    };
    // Allowed but probably not meant: said on stderr, the exit stays 0.
    for w in &cfg.warnings {
        eprintln!("warning: {w}");
    }
    if live {
        return Ok(soakwatch::discover::cli::run_validate_live(&cfg, config).await);
    }
    println!(
        "{}: valid ({} streams, consumers: {})",
        config.display(),
        cfg.streams.all().len(),
        cfg.consumers.describe()
    );
    Ok(ExitCode::SUCCESS)
}

/// `soakwatch report`: the soak so far as Markdown with charts.
async fn report(
    config: &Path,
    state: Option<PathBuf>,
    out: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let cfg = match load_with_state(config, state) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let (eff, summary) = soakwatch::watch::load_summary(&cfg).await?;
    let path = out.unwrap_or_else(|| {
        cfg.watch
            .reports_dir
            .join(format!("{}-report.md", summary.soak_id))
    });
    soakwatch::watch::write_summary_report(&eff, &summary, "on-demand report", &path)?;
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// `soakwatch e2e`: the end-to-end probe alone.
async fn e2e(config: &Path) -> anyhow::Result<ExitCode> {
    let cfg = match load(config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let e2e = cfg
        .rollback
        .as_ref()
        .and_then(|r| r.run.e2e.clone())
        .context("no [rollback.e2e] section in the config")?;
    let r = soakwatch::rollback::run_round_trip(&e2e).await;
    println!("{}", r.summary());
    Ok(if r.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// `soakwatch watch`: the daemon until SIGINT/SIGTERM (the current cycle
/// finishes, a final report is written and the state is closed).
async fn run_watch(
    cfg: Config,
    start: soakwatch::watch::StartOptions,
    addr_file: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    use soakwatch::watch::supervisor::{run_daemon, DaemonEnd, DaemonError};
    for w in &cfg.warnings {
        tracing::warn!(key = %w.key, "config: {w}");
    }
    // First: a terminal's hangup must not end the soak (logged, ignored).
    soakwatch::shutdown::log_and_ignore_hangups();
    let shutdown = soakwatch::shutdown::shutdown_signal();
    let summary = match run_daemon(cfg, start, addr_file, shutdown).await {
        Ok(DaemonEnd::Finished(summary)) => summary,
        Ok(DaemonEnd::StandbyStopped) => {
            println!("standby stopped: another watcher leads the soak");
            return Ok(ExitCode::SUCCESS);
        }
        Err(DaemonError::Open(e)) => {
            eprintln!("soakwatch watch: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "soak {}: {} ({}) after {} samples",
        summary.soak_id,
        summary.verdict.as_str(),
        summary.verdict_reason,
        summary.samples
    );
    Ok(ExitCode::SUCCESS)
}

/// `soakwatch alert test`.
/// `soakwatch ledger explain`: the text from src/ledger/explain.rs.
async fn ledger_explain(cfg: &Config, target: &str) -> anyhow::Result<ExitCode> {
    use soakwatch::ledger::explain::{explain_command, ExplainError};
    match explain_command(cfg, target).await {
        Ok(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ (ExplainError::NotConfigured(_) | ExplainError::Target(_))) => {
            eprintln!("{e}");
            Ok(ExitCode::from(EXIT_CONFIG))
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(2))
        }
    }
}

async fn alert_test(cfg: &Config) -> anyhow::Result<ExitCode> {
    if cfg.alerts.routes.is_empty() {
        println!("no enabled alert routes in {}", cfg.source.display());
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let n = soakwatch::alert::model::Notification::test(
        &cfg.soak.name,
        &cfg.source,
        chrono::Utc::now(),
    );
    let http = soakwatch::http_client::notify_client(std::time::Duration::from_secs(10))?;
    let mut failed = 0;
    for r in &cfg.alerts.routes {
        match r.sink.send(&n, &http).await {
            Ok(()) => println!("OK      {}: {}", r.name, r.sink.describe()),
            Err(e) => {
                failed += 1;
                println!("FAILED  {}: {}", r.name, e.reason);
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// `soakwatch state migrate`: the SQLite soak into JetStream.
async fn migrate_command(cfg: &Config) -> anyhow::Result<ExitCode> {
    use soakwatch::state::jetstream::{Access, JetStreamStore};
    use soakwatch::state::store::SqliteStore;
    // Shared: the copy is not a leader's write (no watcher runs yet).
    let mut js_cfg = cfg.state.clone();
    js_cfg.backend = soakwatch::config::StateBackend::JetStream;
    // The bucket and streams are created as the daemon would (its settings).
    drop(JetStreamStore::open(&js_cfg, Access::Leader).await?);
    let to = JetStreamStore::open(&js_cfg, Access::Shared).await?;
    let lease = cfg.state.lease(cfg.watch.interval);
    if let Err(e) = soakwatch::state::migrate::refuse_beside_leader(&to, lease).await {
        eprintln!("soakwatch state migrate: {e}");
        return Ok(ExitCode::from(2));
    }
    let from = SqliteStore::open_read_only(&cfg.watch.state).await?;
    let result = soakwatch::state::migrate::migrate(&from, &to, lease).await;
    from.close().await;
    match result {
        Ok(m) => {
            println!(
                "copied soak {} into JetStream bucket {}: {} cycles, {} snapshots, {} alert tracks, {} outbox rows, rollback latch {}",
                m.soak_id,
                to.bucket(),
                m.cycles,
                m.snapshots,
                m.alerts,
                m.outbox,
                if m.rollback { "taken" } else { "free" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("soakwatch state migrate: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

/// `soakwatch rollback --dry-run | --execute`.
async fn rollback_command(cfg: &Config, dry_run: bool) -> anyhow::Result<ExitCode> {
    use soakwatch::state::jetstream::Access;
    use soakwatch::state::store::Store;
    let settings = cfg
        .rollback
        .clone()
        .context("no [rollback] section in the config")?;
    if dry_run {
        for line in soakwatch::rollback::plan(&settings.run) {
            println!("{line}");
        }
        println!("triggers:");
        for t in &settings.triggers {
            println!(
                "  {} held for {}",
                t.name,
                humantime::format_duration(t.hold)
            );
        }
        // What the armed run would trip over, found now: a path typo or a
        // missing restart program must not surface in the middle of a rollback.
        let problems = soakwatch::rollback::readiness_problems(&settings.run);
        if problems.is_empty() {
            println!("ready: the env file, the log and the restart program are there");
        } else {
            println!("NOT READY: the rollback would fail:");
            for p in &problems {
                println!("  rollback.{p}");
            }
        }
        match Store::open_config(cfg, &cfg.watch.state, Access::ReadOnly).await {
            Ok(store) => {
                if let Some(soak) = store.active_soak().await? {
                    match soakwatch::watch::rollback::view(&store, &soak.meta.id).await? {
                        Some(v) => {
                            println!(
                                "latch: TAKEN for soak {} ({}, trigger: {})",
                                soak.meta.id, v.state, v.trigger
                            );
                            for line in soakwatch::watch::rollback::step_lines(&v.steps) {
                                println!("  {line}");
                            }
                        }
                        None => println!("latch: free for soak {}", soak.meta.id),
                    }
                }
                store.close().await;
            }
            Err(e) => println!("latch: unknown ({e})"),
        }
        return Ok(if problems.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        });
    }
    let store =
        std::sync::Arc::new(Store::open_config(cfg, &cfg.watch.state, Access::Shared).await?);
    let soak = store
        .active_soak()
        .await?
        .context("no soak recorded in the state database: the latch belongs to a soak")?;
    let trigger = "manual: soakwatch rollback --execute".to_string();
    let mut settings = settings;
    settings.run.mode = soakwatch::rollback::RollbackMode::Armed;
    let target = soakwatch::watch::rollback::RollbackTarget {
        store: store.clone(),
        alerts: cfg.alerts.clone(),
        soak_id: soak.meta.id.clone(),
        soak_name: soak.meta.name.clone(),
    };
    let clock: std::sync::Arc<dyn soakwatch::watch::Clock> =
        std::sync::Arc::new(soakwatch::watch::SystemClock);
    let outcome = match soakwatch::watch::rollback::fire(target, settings, trigger, clock).await? {
        soakwatch::watch::rollback::Fired::Ran(outcome) => outcome,
        soakwatch::watch::rollback::Fired::AlreadyFired(v) => {
            if let Some(v) = v {
                eprintln!(
                    "the rollback of soak {} already fired at {} ({}; trigger: {}): not running it again",
                    soak.meta.id, v.started, v.state, v.trigger
                );
            }
            return Ok(ExitCode::from(2));
        }
    };
    for line in soakwatch::watch::rollback::step_lines(&outcome.steps) {
        println!("{line}");
    }
    let http = soakwatch::http_client::notify_client(std::time::Duration::from_secs(10))?;
    let (ok, failed) =
        soakwatch::alert::engine::deliver_due(&store, &cfg.alerts, &http, chrono::Utc::now())
            .await?;
    println!("notifications: {ok} delivered, {failed} failed (retried by the daemon's outbox)");
    store.close().await;
    Ok(if outcome.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_say_what_a_good_one_looks_like() {
        assert_eq!(parse_window("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_window("5m"), Ok(Duration::from_secs(300)));
        let e = parse_window("1000000000d").unwrap_err();
        assert!(e.contains("10 years"), "{e}");
        let e = parse_window("soon").unwrap_err();
        assert!(e.contains("90s") && e.contains("5m"), "{e}");
        assert!(parse_t0("2026-12-03T14:00:00Z").is_ok());
        let e = parse_t0("yesterday").unwrap_err();
        assert!(e.contains("2026-12-03T14:00:00Z"), "{e}");
    }
}
