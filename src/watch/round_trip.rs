//! The periodic round-trip stage (the "E2E probe" of the output and
//! config): every `[rollback.e2e] every` it publishes one synthetic event
//! and waits for its row, on its own task beside the cycles, one run at a
//! time, never while a rollback is in flight (it would publish into a
//! service being restarted). A finished run becomes the `soakwatch_e2e`
//! alert's state; the loop asks it once a cycle.

use chrono::{DateTime, Utc};

use crate::rollback::{RoundTripConfig, RoundTripResult};

/// The periodic round trip's runs.
#[derive(Default)]
pub struct PeriodicRoundTrip {
    last_started: Option<std::time::Instant>,
    task: Option<tokio::task::JoinHandle<RoundTripResult>>,
    last: Option<(DateTime<Utc>, RoundTripResult)>,
}

impl PeriodicRoundTrip {
    /// The run that finished since the last call, if any (recorded as the
    /// latest at `now`).
    pub async fn take_finished(&mut self, now: DateTime<Utc>) -> Option<&RoundTripResult> {
        if !self.task.as_ref().is_some_and(|t| t.is_finished()) {
            return None;
        }
        let res = self.task.take()?.await.ok()?;
        tracing::info!(
            ok = res.ok,
            latency_ms = res.latency_ms,
            "periodic e2e: {}",
            res.summary()
        );
        self.last = Some((now, res));
        self.last.as_ref().map(|(_, r)| r)
    }

    /// Starts a run when `every` has passed since the last one and none is
    /// in flight; `rollback_running` holds it back.
    pub fn start_if_due(&mut self, cfg: &RoundTripConfig, rollback_running: bool) {
        let Some(every) = cfg.every else {
            return;
        };
        let due = self.last_started.is_none_or(|t| t.elapsed() >= every);
        if !due || self.task.is_some() || rollback_running {
            return;
        }
        self.last_started = Some(std::time::Instant::now());
        let cfg = cfg.clone();
        self.task = Some(tokio::spawn(async move {
            let res = crate::rollback::run_round_trip(&cfg).await;
            if let Err(e) = crate::rollback::cleanup_round_trip_rows(
                &cfg.database_url,
                &cfg.table,
                &cfg.user_column,
                &cfg.user_prefix,
            )
            .await
            {
                tracing::warn!(error = %e, "could not remove the E2E probe's rows");
            }
            res
        }));
    }

    /// The latest run: when it ended, whether it passed, its latency.
    pub fn latest(&self) -> Option<(DateTime<Utc>, bool, u64)> {
        self.last.as_ref().map(|(at, r)| (*at, r.ok, r.latency_ms))
    }

    /// At shutdown: a run in flight finishes (bounded by its timeout) and
    /// removes its rows.
    pub async fn finish(&mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}
