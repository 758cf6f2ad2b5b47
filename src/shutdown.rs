//! Signals that stop the process gracefully, and the hangup that does not.

/// Resolves on SIGINT or SIGTERM: the daemon finishes its cycle, writes its
/// report and closes its state; the stand-in and the demo clean up.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Makes SIGHUP harmless to the daemon: each one is logged and ignored.
///
/// Its default action ends the process at once, with no log line and no
/// final report. A 48 h soak started in a terminal gets one when the
/// terminal (or the SSH session) goes away, and the soak should outlive
/// that; the conventional meaning, "reload the config", is not offered
/// (restart the daemon instead: it resumes the soak). systemd sends SIGHUP
/// only on `systemctl reload` with `ExecReload=` (the shipped unit has
/// none) or to a unit with `SendSIGHUP=yes`. SIGINT and SIGTERM still stop
/// the daemon cleanly. Call it from inside the runtime, before the daemon
/// starts its work.
pub fn log_and_ignore_hangups() {
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hangups) => {
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    tracing::warn!(
                        "SIGHUP received: ignored (soakwatch does not reload its config; the soak goes on; SIGTERM or SIGINT stop it)"
                    );
                }
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGHUP: a hangup would end the daemon")
        }
    }
}
