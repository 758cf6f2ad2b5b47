//! The `soakwatch` binary: parses arguments and hands over to the library.
//!
//! Exit codes of `check` (Nagios convention): 0 all pass, 1 a warning,
//! 2 a failure, 3 unknown (nothing failed but something could not be
//! determined). Usage errors of every subcommand (an unknown option or value,
//! a missing subcommand) and a refused config exit 3 as well, never clap's 2,
//! which Nagios would read as CRITICAL; `--help` and `--version` exit 0.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use soakwatch::render::check::Format;

// `println!`, `print!`, `eprintln!` and `eprint!` in this binary: std's
// panic when the write fails (a closed stdout under `check | head -1`);
// these never do (`soakwatch::stdio`). Defined before `mod cli`, so they
// shadow std's there too.
macro_rules! println {
    () => { soakwatch::stdio::out(format_args!(""), true) };
    ($($t:tt)*) => { soakwatch::stdio::out(format_args!($($t)*), true) };
}
macro_rules! print {
    ($($t:tt)*) => { soakwatch::stdio::out(format_args!($($t)*), false) };
}
macro_rules! eprintln {
    () => { soakwatch::stdio::err(format_args!(""), true) };
    ($($t:tt)*) => { soakwatch::stdio::err(format_args!($($t)*), true) };
}

mod cli;

/// Exit code for a refused config or a usage error (Nagios "unknown").
const EXIT_CONFIG: u8 = 3;

/// Parses the command line; a usage error is printed and exits 3 (UNKNOWN),
/// help and version are printed and exit 0.
fn parse_cli() -> Result<Cli, ExitCode> {
    Cli::try_parse().map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            ExitCode::from(EXIT_CONFIG)
        } else {
            ExitCode::SUCCESS
        }
    })
}

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
        /// Time between the two samples rate criteria need (e.g. 90s, 5m); 0s = a single sample.
        #[arg(long, default_value = "2s", value_parser = cli::parse_window)]
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
        /// T0 of a new soak, RFC 3339 like 2026-12-03T14:00:00Z (default: now).
        #[arg(long, value_parser = cli::parse_t0)]
        t0: Option<chrono::DateTime<chrono::Utc>>,
        /// Stop after this many cycles.
        #[arg(long)]
        max_cycles: Option<u64>,
        /// Write the status listener's bound address (`host:port`) to this
        /// file once it listens: with `listen = "127.0.0.1:0"` the kernel
        /// picks a free port, and a supervisor or test reads it here.
        #[arg(long)]
        addr_file: Option<PathBuf>,
        /// Start a new soak even when the preflight fails (a probe does not
        /// answer, a stream or file is missing). Without it, T0 waits until
        /// the preflight passes, retried every interval.
        #[arg(long)]
        force: bool,
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
    /// The soak's state: `soakwatch state migrate` copies a SQLite soak into JetStream.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
    /// The end-to-end probe alone: the [rollback.e2e] message in, its row out (exit 0 ok, 2 failed).
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
    /// The per-message ledger (`[ledger]`): `soakwatch ledger explain <seq|key>`.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Writes the soak's criteria for other tools: Prometheus alerting rules
    /// or a Grafana dashboard (JSON, which Prometheus reads as YAML).
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
}

/// What `soakwatch export` writes.
#[derive(Subcommand)]
enum ExportCommand {
    /// Alerting rules equivalent to the criteria (thresholds and `for` from
    /// the config, labels as soakwatch's alerts), for `rule_files`.
    PrometheusRules(RulesArgs),
    /// A dashboard with the reports' charts on Prometheus queries.
    Grafana(ExportArgs),
}

/// Where `soakwatch export` reads and writes.
#[derive(clap::Args)]
struct ExportArgs {
    /// The checks file.
    #[arg(long, short, default_value = "checks.toml")]
    config: PathBuf,
    /// Write here (atomically) instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `soakwatch export prometheus-rules`: where, and whether the
/// always-firing `Watchdog` alert is in.
#[derive(clap::Args)]
struct RulesArgs {
    #[command(flatten)]
    common: ExportArgs,
    /// Add the conventional always-firing `Watchdog` alert (severity
    /// `none`), for Alertmanager's dead-man's-switch routing: its silence
    /// says Prometheus or Alertmanager is down.
    #[arg(long)]
    watchdog_alert: bool,
}

/// What `soakwatch state` does.
#[derive(Subcommand)]
enum StateCommand {
    /// Copies the active soak of the SQLite state (`--state` or `[watch]
    /// state`) into the JetStream `[state]` names (exit 0 copied, 2 refused).
    Migrate {
        /// The checks file (its `[state]` says where JetStream is).
        #[arg(long, short, default_value = "checks.toml")]
        config: PathBuf,
        /// The SQLite state to copy (default: watch.state in the config).
        #[arg(long)]
        state: Option<PathBuf>,
    },
}

/// What `soakwatch ledger` does.
#[derive(Subcommand)]
enum LedgerCommand {
    /// Prints one message's fate: the stream message (subject, time, key),
    /// whether the durable acked it, its advisories, its DLQ entry, its row
    /// (exit 0 answered, 3 config, 2 NATS or the database failed).
    Explain {
        /// The checks file (its `[ledger]`).
        #[arg(long, short, default_value = "checks.toml")]
        config: PathBuf,
        /// A stream sequence (42) or the key's values separated by `,`
        /// (`userId=u1,date=2025-10-02` or `u1,2025-10-02`).
        target: String,
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

/// The async runtime for one subcommand. `check` runs on the main thread
/// alone: its probes are I/O that `join!` already overlaps, and worker
/// threads (with their own allocator arenas) cost it start-up time and
/// resident memory for nothing; blocking work (a big /metrics parse, file
/// reads) still goes to tokio's blocking pool. The other commands keep the
/// multi-threaded runtime (the daemon's listener, delivery and rollback
/// tasks run beside its cycle).
fn runtime_for(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    match command {
        Command::Check { .. } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Runtime::new(),
    }
}

fn main() -> ExitCode {
    soakwatch::install_crypto_provider();
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // The daemon logs its cycles; one-shot commands only warnings.
    let default_level = if matches!(cli.command, Command::Watch { .. }) {
        "info"
    } else {
        "warn"
    };
    soakwatch::logging::init(default_level, cli.log_format == "json");
    let rt = match runtime_for(&cli.command) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let code = match rt.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("soakwatch: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    };
    // A probe thread stuck in a read the timeout gave up on (a hung network
    // file system) must not keep the process from exiting.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    soakwatch::stdio::flush_out();
    code
}
