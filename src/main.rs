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
    #[command(subcommand)]
    command: Command,
}

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
    },
    /// Checks a config file alone: every problem with file, line and key.
    Validate {
        /// The checks file.
        #[arg(long, short, default_value = "checks.toml")]
        config: PathBuf,
    },
    /// Provisions a disposable replica of the Phase B topology, runs a stand-in
    /// service, checks it healthy, injects a DLQ'd message, checks again.
    Demo(soakwatch_demo::DemoArgs),
    /// Stand-in for normalize-service (used by the demo and the tests).
    #[command(hide = true)]
    Standin(soakwatch_demo::StandinArgs),
    /// Creates or removes a replica topology (used by the tests).
    #[command(hide = true)]
    Replica(soakwatch_demo::ReplicaArgs),
}

mod soakwatch_demo {
    pub use soakwatch::demo::{DemoArgs, ReplicaArgs, StandinArgs};
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

fn main() -> ExitCode {
    soakwatch::install_crypto_provider();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SOAKWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("soakwatch: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check {
            config,
            format,
            window,
            outfile,
        } => {
            let cfg = match load(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let report = soakwatch::check::run(cfg, window).await?;
            let text = output::render(&report, format);
            match outfile {
                Some(path) => output::write_atomic(&path, &text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(ExitCode::from(exit_code(report.overall())))
        }
        Command::Validate { config } => match load(&config) {
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
        Command::Demo(args) => soakwatch::demo::run_demo(args).await,
        Command::Standin(args) => soakwatch::demo::run_standin(args).await,
        Command::Replica(args) => soakwatch::demo::run_replica(args).await,
    }
}
