//! The daemon's alert delivery: one task per route, so a receiver that is
//! down, slow or accepts and never answers holds back only its own route.
//!
//! Each route task wakes when the cycle queues something (and every second),
//! delivers its due outbox rows oldest first, and after a retryable failure
//! backs off on its own (1 s, 2 s, 4 s, ... up to `[alerts] max_backoff`)
//! while the other routes go on. The outbox stays the only record of what
//! was attempted: a task stopped mid-send leaves its row pending, and the
//! next start delivers it (receivers drop a repeat by `X-Soakwatch-Id`).
//!
//! On shutdown, after the final report is written, [`Delivery::finish`] asks
//! every route for one last round and waits at most [`SHUTDOWN_GRACE`]; what
//! is still in flight then is abandoned and stays in the outbox.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::alert::engine::{self, backoff, RouteRound};
use crate::alert::routes::AlertsConfig;
use crate::state::store::Store;

/// How long a stopping daemon waits for deliveries after its final report:
/// well under systemd's `TimeoutStopSec=180s` (deploy/soakwatch.service),
/// which also has to cover the last cycle and a rollback in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How often an idle route looks at the outbox without being woken.
const POLL: Duration = Duration::from_secs(1);

/// The running route tasks.
pub struct Delivery {
    stop: CancellationToken,
    routes: Vec<(String, JoinHandle<()>)>,
    fanout: Option<JoinHandle<()>>,
}

/// How a stop went: the routes still sending when the grace ran out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Finished {
    /// Routes whose last round did not end within the grace.
    pub cut: Vec<String>,
}

impl Delivery {
    /// Starts one task per configured route. `wake` is notified by the
    /// daemon when it queued notifications; every route hears it.
    pub fn spawn(store: Arc<Store>, cfg: Arc<AlertsConfig>, wake: Arc<Notify>) -> Delivery {
        let stop = CancellationToken::new();
        let mut delivery = Delivery {
            stop: stop.clone(),
            routes: Vec::new(),
            fanout: None,
        };
        if cfg.routes.is_empty() {
            return delivery;
        }
        let http = match crate::http_client::notify_client(Duration::from_secs(10)) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the HTTP client: alerts are queued, not delivered");
                return delivery;
            }
        };
        let mut wakes = Vec::new();
        for r in &cfg.routes {
            let own = Arc::new(Notify::new());
            wakes.push(own.clone());
            let task = RouteTask {
                route: r.name.clone(),
                store: store.clone(),
                cfg: cfg.clone(),
                http: http.clone(),
                wake: own,
                stop: stop.clone(),
            };
            delivery
                .routes
                .push((r.name.clone(), tokio::spawn(task.run())));
        }
        let s = stop.clone();
        delivery.fanout = Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = s.cancelled() => break,
                    _ = wake.notified() => wakes.iter().for_each(|w| w.notify_one()),
                }
            }
        }));
        delivery
    }

    /// Stops every route at once, mid-send or not (a watcher that lost the
    /// leader lease sends nothing more).
    pub fn abort(&self) {
        self.stop.cancel();
        for (_, t) in &self.routes {
            t.abort();
        }
        if let Some(f) = &self.fanout {
            f.abort();
        }
    }

    /// Asks every route for a last round and waits for them up to `grace`;
    /// a route still sending then is stopped, its entries kept.
    pub async fn finish(self, grace: Duration) -> Finished {
        self.stop.cancel();
        if let Some(f) = self.fanout {
            f.abort();
        }
        let deadline = tokio::time::Instant::now() + grace;
        let mut cut = Vec::new();
        for (name, mut task) in self.routes {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                cut.push(name);
            }
        }
        Finished { cut }
    }
}

/// One route's delivery loop.
struct RouteTask {
    route: String,
    store: Arc<Store>,
    cfg: Arc<AlertsConfig>,
    http: reqwest::Client,
    wake: Arc<Notify>,
    stop: CancellationToken,
}

impl RouteTask {
    /// Rounds until stopped, then one last round unless the route is
    /// backing off (its receiver failed just now; the entries wait for the
    /// next start rather than the stop waiting for that receiver).
    async fn run(self) {
        let mut failing: Option<String> = None;
        let mut failures: i64 = 0;
        let mut resume_at: Option<tokio::time::Instant> = None;
        loop {
            let wait_until = resume_at.unwrap_or_else(|| tokio::time::Instant::now() + POLL);
            let stopping = tokio::select! {
                _ = self.stop.cancelled() => true,
                _ = self.wake.notified(), if resume_at.is_none() => false,
                _ = tokio::time::sleep_until(wait_until) => false,
            };
            if stopping && resume_at.is_some_and(|t| t > tokio::time::Instant::now()) {
                break;
            }
            resume_at = None;
            let round = engine::deliver_route_due(
                &self.store,
                &self.cfg,
                &self.route,
                &self.http,
                Utc::now(),
            )
            .await;
            match round {
                Ok(r) => {
                    if failing.take().is_some() {
                        tracing::info!(route = %self.route, "outbox delivery works again");
                    }
                    failures = next_failures(failures, &r);
                    if r.backing_off {
                        let wait = backoff(failures - 1, self.cfg.max_backoff);
                        resume_at = Some(tokio::time::Instant::now() + wait);
                    }
                }
                // Logged when it starts failing or changes reason: a locked
                // database must not write a line every second.
                Err(e) => {
                    let reason = e.to_string();
                    if failing.as_deref() != Some(reason.as_str()) {
                        tracing::error!(route = %self.route, error = %reason, "outbox delivery failed; retrying every second");
                        failing = Some(reason);
                    }
                }
            }
            if stopping {
                break;
            }
        }
    }
}

/// Consecutive rounds of a route that ended in a retryable failure: reset
/// by a round that delivered and did not back off.
fn next_failures(before: i64, r: &RouteRound) -> i64 {
    if r.backing_off {
        before.saturating_add(1)
    } else if r.delivered > 0 {
        0
    } else {
        before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_backs_off_while_it_fails_and_resets_when_it_delivers() {
        let failed = RouteRound {
            delivered: 0,
            failed: 1,
            backing_off: true,
        };
        let ok = RouteRound {
            delivered: 2,
            failed: 0,
            backing_off: false,
        };
        let idle = RouteRound::default();
        let mut n = 0;
        n = next_failures(n, &failed);
        n = next_failures(n, &failed);
        assert_eq!(n, 2);
        assert_eq!(next_failures(n, &idle), 2, "an idle round changes nothing");
        // Delivered some, then failed: still failing.
        let partial = RouteRound {
            delivered: 1,
            failed: 1,
            backing_off: true,
        };
        assert_eq!(next_failures(n, &partial), 3);
        assert_eq!(next_failures(n, &ok), 0);
    }

    #[test]
    fn the_grace_is_well_under_the_units_stop_timeout() {
        let unit = include_str!("../../deploy/soakwatch.service");
        let stop = unit
            .lines()
            .find_map(|l| l.strip_prefix("TimeoutStopSec="))
            .and_then(|v| humantime::parse_duration(v.trim()).ok())
            .expect("the unit sets TimeoutStopSec");
        assert!(SHUTDOWN_GRACE * 6 <= stop, "{SHUTDOWN_GRACE:?} vs {stop:?}");
    }
}
