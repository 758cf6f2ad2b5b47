//! The `soakwatch` binary: parses arguments and hands over to the library.
//!
//! Exit codes of `check` (Nagios convention): 0 all pass, 1 a warning,
//! 2 a failure, 3 unknown (nothing failed but something could not be
//! determined). Usage errors and a refused config exit 3 as well.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use soakwatch::config::{Config, ConfigError};
use soakwatch::output::{self, Format};
use soakwatch::verdict::exit_code;

/// Exit code for a refused config or a usage error (Nagios "unknown").
const EXIT_CONFIG: u8 = 3;

#[derive(Parser)]
#[command(
    name = "soakwatch",
    version,
    about = "Soak-test monitor for NATS JetStream cutovers"
)]
struct Cli {
    /// Log format on stderr (the daemon's structured logs).
    #[arg(long, global = true, value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// One-shot verdict per criterion plus an overall one (exit 0/1/2/3).
    Check {
        /// The checks file.
        #[arg(long, short, default_value = "checks.toml")]
        config: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Time between the two samples rate criteria need; 0s = a single sample.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        window: Duration,
        /// Write the output here (atomically) instead of stdout.
        #[arg(long)]
        outfile: Option<PathBuf>,
        /// Judge the whole soak so far from the state database of `watch`
        /// instead of sampling now.
        #[arg(long)]
        soak: bool,
        /// State database (default: watch.state in the config).
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// The 48-hour daemon: samples every interval, keeps history, writes
    /// checkpoint reports, serves its own /metrics and /healthz.
    Watch {
        /// The checks file.
        #[arg(long, short, default_value = "checks.toml")]
        config: PathBuf,
        /// State database (default: watch.state in the config).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Start a new soak even if one is in progress (the old one is kept).
        #[arg(long)]
        new_soak: bool,
        /// T0 of a new soak, RFC 3339 (default: now).
        #[arg(long)]
        t0: Option<chrono::DateTime<chrono::Utc>>,
        /// Stop after this many cycles.
        #[arg(long)]
        max_cycles: Option<u64>,
        /// Write the status listener's bound address (`host:port`) to this
        /// file once it listens: with `listen = "127.0.0.1:0"` the kernel
        /// picks a free port, and a supervisor or test reads it here.
        #[arg(long)]
        addr_file: Option<PathBuf>,
    },
    /// Renders the soak's current state as a Markdown report with charts.
    Report {
        /// The checks file.
        #[arg(long, short, default_value = "checks.toml")]
        config: PathBuf,
        /// State database (default: watch.state in the config).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Report file (default: <reports_dir>/<soak id>-report.md).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Checks a config file alone: every problem with file, line and key.
    /// With --live, also every configured name that does not exist live
    /// (exit 0 all there, 1 warnings, 2 problems, 3 could not look).
    Validate {
        /// The checks file.
        #[arg(long, short, default_value = "checks.toml")]
        config: PathBuf,
        /// Look up every configured stream, consumer, metric, label, table,
        /// column, log and env file on the live system.
        #[arg(long)]
        live: bool,
    },
    /// Writes a commented checks.toml from the live system to stdout
    /// (exit 0 written, 1 conflicts flagged, 3 a look-up failed).
    Discover(soakwatch::discover::cli::DiscoverArgs),
    /// The one-shot rollback: `--dry-run` prints the plan, `--execute` runs it
    /// by hand (taking the soak's latch, so it never runs twice).
    Rollback {
        /// The checks file.
        #[arg(long, short, default_value = "checks.toml")]
        config: PathBuf,
        /// State database (default: watch.state in the config).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Print the plan, the triggers and the latch; change nothing.
        #[arg(long, conflicts_with = "execute")]
        dry_run: bool,
        /// Run the rollback now (armed, whatever the configured mode).
        #[arg(long)]
        execute: bool,
    },
    /// The end-to-end probe alone: an HRV event in, its row out (exit 0 ok, 2 failed).
    E2e {
        /// The checks file.
        #[arg(long, short, default_value = "checks.toml")]
        config: PathBuf,
    },
    /// Alert routes: `soakwatch alert test` sends a test notification to every route.
    Alert {
        #[command(subcommand)]
        command: AlertCommand,
    },
}

#[derive(Subcommand)]
enum AlertCommand {
    /// Sends one test notification to every enabled route, directly (not via
    /// the outbox), and reports each route's result. Exit 0 when all succeed.
    Test {
        /// The checks file.
        #[arg(long, short, default_value = "checks.toml")]
        config: PathBuf,
    },
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        match &e {
            ConfigError::Invalid { problems } => {
                eprintln!("config refused ({} problem(s)):", problems.len());
                eprintln!("{e}");
            }
            ConfigError::Read { .. } => eprintln!("{e}"),
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

fn main() -> ExitCode {
    soakwatch::install_crypto_provider();
    let cli = Cli::parse();
    // The daemon logs its cycles; one-shot commands only warnings.
    let default_level = if matches!(cli.command, Command::Watch { .. }) {
        "info"
    } else {
        "warn"
    };
    soakwatch::logging::init(default_level, cli.log_format == "json");
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let code = match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("soakwatch: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    };
    // A probe thread stuck in a read the timeout gave up on (a hung network
    // file system) must not keep the process from exiting.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check {
            config,
            format,
            window,
            outfile,
            soak,
            state,
        } => {
            let cfg = match load_with_state(&config, state) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let report = if soak {
                let (eff, summary) = soakwatch::watch::load_summary(&cfg).await?;
                soakwatch::watch::summary_as_check(&eff, &summary)
                    .context("the soak has no samples yet")?
            } else {
                soakwatch::check::run(cfg, window).await?
            };
            let text = output::render(&report, format);
            match outfile {
                Some(path) => output::write_atomic(&path, &text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(ExitCode::from(exit_code(report.overall())))
        }
        Command::Validate { config, live } => match load(&config) {
            Ok(cfg) if live => Ok(soakwatch::discover::cli::run_validate_live(&cfg, &config).await),
            Ok(cfg) => {
                println!(
                    "{}: valid ({} streams, consumer {} on {})",
                    config.display(),
                    cfg.streams.all().len(),
                    cfg.consumer.durable,
                    cfg.consumer.stream
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(code) => Ok(code),
        },
        Command::Watch {
            config,
            state,
            new_soak,
            t0,
            max_cycles,
            addr_file,
        } => {
            let cfg = match load_with_state(&config, state) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            run_watch(
                cfg,
                soakwatch::watch::StartOptions {
                    new_soak,
                    t0,
                    max_cycles,
                },
                addr_file,
            )
            .await
        }
        Command::Report { config, state, out } => {
            let cfg = match load_with_state(&config, state) {
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
        Command::E2e { config } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let e2e = cfg
                .rollback
                .as_ref()
                .and_then(|r| r.run.e2e.clone())
                .context("no [rollback.e2e] section in the config")?;
            let r = soakwatch::rollback::run_e2e(&e2e).await;
            println!("{}", r.summary());
            Ok(if r.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::Alert {
            command: AlertCommand::Test { config },
        } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            alert_test(&cfg).await
        }
        Command::Discover(args) => soakwatch::discover::cli::run_discover(args).await,
    }
}

/// Runs the daemon until SIGINT/SIGTERM: the current cycle finishes, a final
/// report is written and the state database is closed.
async fn run_watch(
    cfg: Config,
    start: soakwatch::watch::StartOptions,
    addr_file: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    use soakwatch::watch::{SharedStatus, SystemClock, Watch};
    let status = SharedStatus::default();
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        soakwatch::shutdown::shutdown_signal().await;
        tracing::info!("shutdown requested: finishing the cycle");
        t.cancel();
    });
    let watch = match Watch::open(cfg.clone(), status.clone()).await {
        Ok(w) => w,
        Err(e) => {
            eprintln!("soakwatch watch: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let server = match cfg.watch.listen {
        Some(addr) => {
            let listener = soakwatch::watch::http::bind(addr)
                .await
                .with_context(|| format!("binding the status listener on {addr}"))?;
            let local = listener.local_addr()?;
            tracing::info!(addr = %local, "serving /metrics and /healthz");
            if let Some(f) = &addr_file {
                output::write_atomic(f, &format!("{local}\n"))
                    .with_context(|| format!("writing the listener address to {}", f.display()))?;
            }
            Some(tokio::spawn(soakwatch::watch::http::serve(
                listener,
                status.clone(),
                token.clone(),
            )))
        }
        None => None,
    };
    let prober = soakwatch::probe::Prober::new(cfg)?;
    let result = watch.run(&prober, &SystemClock, start, token.clone()).await;
    token.cancel();
    if let Some(s) = server {
        let _ = s.await;
    }
    let summary = result?;
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
async fn alert_test(cfg: &Config) -> anyhow::Result<ExitCode> {
    use soakwatch::alert::model::{
        AlertItem, AlertState, Notification, NotificationKind, Severity,
    };
    if cfg.alerts.routes.is_empty() {
        println!("no enabled alert routes in {}", cfg.source.display());
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let now = chrono::Utc::now();
    let n = Notification {
        id: format!("test-{}-{}", now.timestamp_millis(), std::process::id()),
        soak_id: "test".into(),
        soak_name: cfg.soak.name.clone(),
        created_at: now,
        kind: NotificationKind::Test,
        alerts: vec![AlertItem {
            name: "soakwatch_test".into(),
            criterion: None,
            severity: Severity::Warning,
            state: AlertState::Firing,
            starts_at: now,
            ends_at: None,
            summary: "Test notification from soakwatch: this route works".into(),
            evidence: format!(
                "sent by `soakwatch alert test` with {}",
                cfg.source.display()
            ),
            value: None,
            target: "delivered".into(),
        }],
    };
    let http = soakwatch::probe::metrics::http_client(std::time::Duration::from_secs(10))?;
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

/// `soakwatch rollback --dry-run | --execute`.
async fn rollback_command(cfg: &Config, dry_run: bool) -> anyhow::Result<ExitCode> {
    use soakwatch::soak::store::Store;
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
        match Store::open_read_only(&cfg.watch.state).await {
            Ok(store) => {
                if let Some(soak) = store.active_soak().await? {
                    match soakwatch::watch::rollback::view(&store, &soak.meta.id).await? {
                        Some(v) => println!(
                            "latch: TAKEN for soak {} ({}, trigger: {})",
                            soak.meta.id, v.state, v.trigger
                        ),
                        None => println!("latch: free for soak {}", soak.meta.id),
                    }
                }
                store.close().await;
            }
            Err(e) => println!("latch: unknown ({e})"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let store = std::sync::Arc::new(Store::open_shared(&cfg.watch.state).await?);
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
    let http = soakwatch::probe::metrics::http_client(std::time::Duration::from_secs(10))?;
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
