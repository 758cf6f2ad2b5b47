//! `soakwatch-testkit`: the demo, the stand-in service and the replica
//! provisioning, kept out of the shipped `soakwatch` binary (built only with
//! the `testkit` feature; `scripts/demo.sh` and `scripts/test.sh` pass it).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code when the run could not start or failed outright.
const EXIT_ERROR: u8 = 3;

#[derive(Parser)]
#[command(
    name = "soakwatch-testkit",
    version,
    about = "Demo, stand-in service and disposable replicas for soakwatch's demo and tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Provisions a disposable replica of the Phase B topology, runs a stand-in
    /// service, checks it healthy, injects a DLQ'd message, checks again
    /// (`--keep` leaves it running; `teardown` removes it).
    Demo(soakwatch::testkit::demo::DemoArgs),
    /// Removes a replica kept by `demo --keep`: its stand-in process,
    /// streams, consumer, database and folder.
    Teardown(soakwatch::testkit::demo::TeardownArgs),
    /// Stand-in for normalize-service (used by the demo and the tests).
    Standin(soakwatch::testkit::demo::StandinArgs),
    /// Creates or removes a replica topology (used by the tests).
    Replica(soakwatch::testkit::demo::ReplicaArgs),
}

fn main() -> ExitCode {
    soakwatch::install_crypto_provider();
    let cli = Cli::parse();
    soakwatch::logging::init("warn", false);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Demo(args) => soakwatch::testkit::demo::run_demo(args).await,
            Command::Teardown(args) => soakwatch::testkit::demo::run_teardown(args).await,
            Command::Standin(args) => soakwatch::testkit::demo::run_standin(args).await,
            Command::Replica(args) => soakwatch::testkit::demo::run_replica(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("soakwatch-testkit: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
