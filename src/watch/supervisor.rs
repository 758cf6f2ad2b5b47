//! The daemon as a whole, as `soakwatch watch` runs it: open the state
//! (retrying a JetStream state that does not answer yet), serve the status
//! listener, tell systemd, and lead the soak, stepping down to a standby
//! and campaigning again when the leader lease is lost (HA on JetStream).
//! The binary only parses arguments and hands a shutdown future in.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{notify, SharedStatus, StartOptions, SystemClock, Watch, WatchError};
use crate::config::Config;
use crate::probe::{Prober, ProberError};
use crate::soak::model::SoakSummary;
use crate::state::store::StoreError;

/// How long a JetStream state that does not answer at start is retried.
const OPEN_RETRY_FOR: Duration = Duration::from_secs(30);

/// How the daemon ended without an error.
#[derive(Debug)]
pub enum DaemonEnd {
    /// This watcher led the soak to its end (or to shutdown): its summary.
    Finished(Box<SoakSummary>),
    /// Shutdown came while this watcher was a standby: nothing to summarise.
    StandbyStopped,
}

/// Why the daemon could not run (or stopped on an error).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The state could not be opened at start (bad state, or a JetStream
    /// state that kept not answering): the start is refused.
    #[error("{0}")]
    Open(WatchError),
    /// The status listener could not be bound.
    #[error("binding the status listener on {addr}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The bound listener's address could not be read.
    #[error(transparent)]
    LocalAddr(std::io::Error),
    /// The listener's address could not be written to `--addr-file`.
    #[error("writing the listener address to {}", path.display())]
    AddrFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The probes could not be set up.
    #[error(transparent)]
    Prober(#[from] ProberError),
    /// The soak stopped on an error.
    #[error(transparent)]
    Run(WatchError),
}

/// Runs the daemon until `shutdown` resolves (SIGINT/SIGTERM in the
/// binary): the current cycle finishes, a final report is written and the
/// state is closed. `addr_file` receives the status listener's address
/// once it is bound (for a port chosen by the system).
pub async fn run_daemon(
    cfg: Config,
    start: StartOptions,
    addr_file: Option<PathBuf>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<DaemonEnd, DaemonError> {
    let status = SharedStatus::default();
    let token = CancellationToken::new();
    // systemd (`Type=notify`): READY once serving, STOPPING on shutdown,
    // watchdog pings while the cycle loop beats.
    let systemd = notify::SystemdLink::from_env();
    let t = token.clone();
    let on_signal = systemd.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested: finishing the cycle");
        on_signal.stopping();
        t.cancel();
    });
    let watch = open_with_retry(&cfg, &status, &token)
        .await
        .map_err(DaemonError::Open)?;
    let server = serve_status(&cfg, &status, &token, addr_file.as_ref()).await?;
    let prober = Prober::new(cfg.clone())?;
    let heartbeat = notify::Heartbeat::default();
    let watch = watch.with_heartbeat(heartbeat.clone());
    systemd.ready(heartbeat.clone());
    let result = lead_or_stand_by(&cfg, &status, &token, watch, &prober, start, &heartbeat).await;
    systemd.stopping();
    token.cancel();
    if let Some(s) = server {
        let _ = s.await;
    }
    match result {
        Ok(summary) => Ok(DaemonEnd::Finished(Box::new(summary))),
        Err(WatchError::SteppedDown) => Ok(DaemonEnd::StandbyStopped),
        Err(e) => Err(DaemonError::Run(e)),
    }
}

/// Opens the daemon's state. A JetStream state that does not answer at
/// once (a cluster still electing, a loaded node) is retried for half a
/// minute before the start is refused; anything else is refused at once.
pub async fn open_with_retry(
    cfg: &Config,
    status: &SharedStatus,
    token: &CancellationToken,
) -> Result<Watch, WatchError> {
    let deadline = tokio::time::Instant::now() + OPEN_RETRY_FOR;
    loop {
        match Watch::open(cfg.clone(), status.clone()).await {
            Ok(w) => return Ok(w),
            Err(WatchError::Store(StoreError::Nats(e)))
                if tokio::time::Instant::now() < deadline && !token.is_cancelled() =>
            {
                tracing::warn!(error = %e, "the state on JetStream does not answer yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Binds and serves the status page, `/metrics` and `/healthz` when
/// `[watch] listen` is set, writing the bound address to `addr_file`.
async fn serve_status(
    cfg: &Config,
    status: &SharedStatus,
    token: &CancellationToken,
    addr_file: Option<&PathBuf>,
) -> Result<Option<JoinHandle<std::io::Result<()>>>, DaemonError> {
    let Some(addr) = cfg.watch.listen else {
        return Ok(None);
    };
    let listener = super::http::bind(addr)
        .await
        .map_err(|source| DaemonError::Listen { addr, source })?;
    let local = listener.local_addr().map_err(DaemonError::LocalAddr)?;
    tracing::info!(addr = %local, "serving the status page /, /metrics and /healthz");
    if let Some(f) = addr_file {
        crate::atomic_file::write_atomic(f, &format!("{local}\n")).map_err(|source| {
            DaemonError::AddrFile {
                path: f.clone(),
                source,
            }
        })?;
    }
    Ok(Some(tokio::spawn(super::http::serve(
        listener,
        status.clone(),
        token.clone(),
    ))))
}

/// Leads the soak; a leader that loses its lease (JetStream state) steps
/// down and campaigns again as a standby, on a fresh view of the shared
/// state. `Err(SteppedDown)` when shutdown came while a standby.
async fn lead_or_stand_by(
    cfg: &Config,
    status: &SharedStatus,
    token: &CancellationToken,
    mut watch: Watch,
    prober: &Prober,
    mut start: StartOptions,
    heartbeat: &notify::Heartbeat,
) -> Result<SoakSummary, WatchError> {
    loop {
        match watch
            .run(prober, &SystemClock, start.clone(), token.clone())
            .await
        {
            Err(WatchError::SteppedDown) if !token.is_cancelled() => {
                // The soak goes on: a later term resumes it, never starts one.
                start.new_soak = false;
                start.t0 = None;
                match reopen_as_standby(cfg, status, token).await {
                    Some(w) => watch = w.with_heartbeat(heartbeat.clone()),
                    None => return Err(WatchError::SteppedDown),
                }
            }
            r => return r,
        }
    }
}

/// A new view of the state for a watcher that stepped down. The state's
/// NATS may be out of reach (that is often why the lease was lost): a
/// standby keeps trying until shutdown (`None`).
async fn reopen_as_standby(
    cfg: &Config,
    status: &SharedStatus,
    token: &CancellationToken,
) -> Option<Watch> {
    loop {
        match Watch::open(cfg.clone(), status.clone()).await {
            Ok(w) => return Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "standby: the state is out of reach; retrying");
                tokio::select! {
                    _ = token.cancelled() => return None,
                    _ = tokio::time::sleep(cfg.watch.interval.max(Duration::from_secs(1))) => {}
                }
            }
        }
    }
}
