//! The alerting stage: the alert lifecycle (pure, [`AlertEngine`]) stepped
//! once a cycle, and what it says queued in the state's outbox, in order.
//! Delivery is another task's job ([`crate::alert::delivery`]): this stage
//! only makes sure every notification is in the outbox once, and wakes the
//! delivery when something new is there.
//!
//! Why it keeps a queue of its own: the outbox lives in the state, which can
//! refuse writes (a full disk, a JetStream re-electing). An alert step that
//! could not be written is kept (bounded) and written before any later one,
//! so a notification is neither lost nor sent out of order.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::alert::engine::AlertTrack;
use crate::alert::engine::{self as alert_engine, AlertEngine, NamedAlert, StepOutput};
use crate::alert::routes::AlertsConfig;
use crate::soak::model::SoakSummary;
use crate::state::store::{OutboxTally, Store, StoreError};

/// Alert steps kept while the outbox refuses writes.
const MAX_PENDING_ALERTS: usize = 1000;

/// The outbox refused a queued step; kept for the next cycle.
#[derive(Debug, thiserror::Error)]
#[error("queueing alert steps: {0}")]
pub struct OutboxRefused(#[from] StoreError);

/// The daemon's alerting, as one stage.
pub struct Alerting {
    engine: AlertEngine,
    pending: VecDeque<StepOutput>,
    tally: OutboxTally,
    store: Arc<Store>,
    cfg: Arc<AlertsConfig>,
    /// Woken when something new is in the outbox.
    wake: Arc<tokio::sync::Notify>,
}

impl Alerting {
    /// A stage with no alert tracked yet.
    pub fn new(
        store: Arc<Store>,
        cfg: Arc<AlertsConfig>,
        wake: Arc<tokio::sync::Notify>,
    ) -> Alerting {
        Alerting {
            engine: AlertEngine::default(),
            pending: VecDeque::new(),
            tally: OutboxTally::default(),
            store,
            cfg,
            wake,
        }
    }

    /// Resumes the tracks a previous run (or leader) saved.
    pub fn resume(&mut self, tracks: Vec<AlertTrack>) {
        self.engine = AlertEngine::from_tracks(tracks);
    }

    /// Steps every criterion alert on this cycle's summary and queues what
    /// changed.
    pub fn step(&mut self, summary: &SoakSummary, tick: DateTime<Utc>) {
        let out = self.engine.step(&self.cfg, summary, tick);
        for n in &out.notifications {
            tracing::warn!(id = %n.id, subject = %n.subject(), "alert");
        }
        self.queue(out);
    }

    /// Steps one alert the daemon raises about itself (`soakwatch_self`,
    /// `soakwatch_e2e`) and queues what changed.
    pub fn step_named(&mut self, alert: &NamedAlert<'_>, soak: (&str, &str), now: DateTime<Utc>) {
        let out = self.engine.step_named(alert, soak, now);
        self.queue(out);
    }

    fn queue(&mut self, out: StepOutput) {
        if !out.notifications.is_empty() || !out.changed.is_empty() {
            self.pending.push_back(out);
            while self.pending.len() > MAX_PENDING_ALERTS {
                self.pending.pop_front();
                tracing::error!("alert outbox unwritable for too long: oldest alert dropped");
            }
        }
    }

    /// Writes queued steps to the outbox of soak `soak_id`, oldest first;
    /// stops at the first refusal (kept for the next try).
    pub async fn flush(&mut self, soak_id: &str, now: DateTime<Utc>) -> Result<(), OutboxRefused> {
        while let Some(out) = self.pending.front() {
            let queued = alert_engine::enqueue(&self.store, &self.cfg, soak_id, out, now).await?;
            self.pending.pop_front();
            if queued > 0 {
                // Deliver now rather than at the next delivery tick.
                self.wake.notify_one();
            }
        }
        Ok(())
    }

    /// Counts the outbox again (for `/metrics`); a failed count keeps the last.
    pub async fn count_outbox(&mut self) {
        match self.store.outbox_counts().await {
            Ok(t) => self.tally = t,
            Err(e) => tracing::debug!(error = %e, "outbox counts unavailable"),
        }
    }

    /// The outbox as last counted.
    pub fn tally(&self) -> OutboxTally {
        self.tally
    }

    /// The alerts firing now.
    pub fn firing(&self) -> impl Iterator<Item = &AlertTrack> {
        self.engine.firing()
    }
}
