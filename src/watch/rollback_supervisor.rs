//! The rollback supervisor: the daemon's stage that owns the soak's one
//! rollback. It decides from each cycle's summary whether a trigger holds,
//! takes the latch, runs the rollback on its own task beside the cycles,
//! and, after a failover, judges a latch the previous leader left `started`
//! once that leader can no longer act. The loop only asks it, once a cycle,
//! and reads its view for the summary and the page.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::clock::Clock;
use super::rollback::{self, StartedLatch};
use crate::alert::routes::AlertsConfig;
use crate::config::RollbackSettings;
use crate::soak::dlq_spike::SpikeRule;
use crate::soak::model::{RollbackState, RollbackView, SoakSummary};
use crate::soak::record::{CycleRecord, SoakMeta};
use crate::state::store::{Store, StoreError};

/// Why the latch could not be written, for the `soakwatch_self` alert
/// (the write-health of the state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatchWriteFailure(pub String);

/// The soak's rollback as this watcher handles it.
pub struct RollbackSupervisor {
    store: Arc<Store>,
    alerts: Arc<AlertsConfig>,
    settings: Option<RollbackSettings>,
    /// Woken when a rollback ends, so its outcome is delivered at once.
    wake: Arc<tokio::sync::Notify>,
    /// The latch is taken (by anyone): nothing fires again this soak.
    latched: bool,
    task: Option<tokio::task::JoinHandle<()>>,
    view: Option<RollbackView>,
    /// When (boot clock) to judge a latch a previous leader left `started`:
    /// after its lease could no longer act.
    judge_started_at: Option<Duration>,
}

impl RollbackSupervisor {
    /// A supervisor with nothing latched yet.
    pub fn new(
        store: Arc<Store>,
        alerts: Arc<AlertsConfig>,
        settings: Option<RollbackSettings>,
        wake: Arc<tokio::sync::Notify>,
    ) -> RollbackSupervisor {
        RollbackSupervisor {
            store,
            alerts,
            settings,
            wake,
            latched: false,
            task: None,
            view: None,
            judge_started_at: None,
        }
    }

    /// Reads the latch of a resumed soak. On a shared state a `started`
    /// latch may still be running on the previous leader until its lease
    /// could no longer act: it is judged only `previous_lease_ends` later.
    /// With SQLite (one writer by lock file) a `started` latch is the dead
    /// process's own and is reported interrupted now.
    pub async fn resume(
        &mut self,
        soak: &SoakMeta,
        previous_lease_ends: Duration,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if self.store.fence().is_some() {
            let v = rollback::view(&self.store, &soak.id).await?;
            self.latched = v.is_some();
            if v.is_some_and(|v| v.state == RollbackState::Started) {
                tracing::warn!(
                    wait_ms = previous_lease_ends.as_millis() as u64,
                    "a rollback started by the previous leader: its journal is read again once that leader's lease can no longer act"
                );
                self.judge_started_at = Some(crate::state::lease::boot_now() + previous_lease_ends);
            }
        } else {
            self.latched =
                rollback::resolve_started(&self.store, &self.alerts, &soak.id, &soak.name, now)
                    .await?
                    != StartedLatch::Free;
        }
        self.view = rollback::view(&self.store, &soak.id).await?;
        Ok(())
    }

    /// Fires the rollback when a trigger holds and the latch is free: takes
    /// the latch, then runs it on its own task. A latch that could not be
    /// written is returned for the write-health.
    pub async fn maybe_fire(
        &mut self,
        soak: &SoakMeta,
        summary: &SoakSummary,
        recent: &[CycleRecord],
        spike: &SpikeRule,
        clock: &dyn Clock,
    ) -> Option<LatchWriteFailure> {
        let now = clock.now();
        let settings = self.settings.clone()?;
        if self.latched || !rollback::enabled(&self.settings) || !self.store.may_act() {
            return None;
        }
        let trigger = rollback::fired_trigger(&settings.triggers, summary, recent, spike)?;
        self.latched = true;
        let mut failure = None;
        match self
            .store
            .take_rollback_latch(&soak.id, &trigger, now)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(
                    "rollback trigger holds but the latch was already taken: not firing again"
                );
                return None;
            }
            // Not the leader (any more): the leader decides, never this one.
            Err(StoreError::NotLeader) => {
                self.latched = false;
                return None;
            }
            // Shared state: never act without a latch that names this
            // watcher, or a later leader could take the free latch and run
            // the rollback a second time. The trigger is looked at again
            // next cycle; a create that landed after all is then found to
            // be this watcher's and runs once.
            Err(e) if self.store.fence().is_some() => {
                self.latched = false;
                tracing::error!(trigger = %trigger, error = %e, "rollback latch not taken: NOT firing without it; retrying next cycle");
                return Some(LatchWriteFailure(format!("taking the rollback latch: {e}")));
            }
            // The trigger is the critical condition the rollback exists for:
            // it fires, latched in this process; a restart could fire it once
            // more (the runbook's steps are idempotent), which is better than
            // leaving a failing cutover in place because a disk is full.
            Err(e) => {
                tracing::error!(trigger = %trigger, "rollback latch not recorded: firing once in this process");
                failure = Some(LatchWriteFailure(format!(
                    "recording the rollback latch: {e}"
                )));
            }
        }
        self.spawn(soak, settings, trigger, now, clock.handle());
        failure
    }

    /// Runs the rollback whose latch this watcher holds, beside the cycles.
    fn spawn(
        &mut self,
        soak: &SoakMeta,
        settings: RollbackSettings,
        trigger: String,
        now: DateTime<Utc>,
        clock: Arc<dyn Clock>,
    ) {
        let target = rollback::RollbackTarget {
            store: self.store.clone(),
            alerts: self.alerts.clone(),
            soak_id: soak.id.clone(),
            soak_name: soak.name.clone(),
        };
        let wake = self.wake.clone();
        self.task = Some(tokio::spawn(async move {
            if let Err(e) = rollback::run_latched(target, settings, trigger, now, clock).await {
                tracing::error!(error = %e, "rollback journal failed");
            }
            // Deliver the outcome now, not at the next cycle.
            wake.notify_one();
        }));
    }

    /// A previous leader's rollback left `started`: once that leader can
    /// no longer act, this leader takes the latch over and the journal
    /// decides: never acted on, this leader runs it (exactly once); acted
    /// on, it was interrupted (reported, never re-run); finished, it stands.
    pub async fn judge_started_when_due(&mut self, soak: &SoakMeta, clock: &dyn Clock) {
        let now = clock.now();
        let Some(at) = self.judge_started_at else {
            return;
        };
        if crate::state::lease::boot_now() < at || !self.store.may_act() {
            return;
        }
        match rollback::resolve_started(&self.store, &self.alerts, &soak.id, &soak.name, now).await
        {
            Ok(StartedLatch::Retaken { trigger }) => {
                self.judge_started_at = None;
                match self.settings.clone() {
                    Some(settings) => self.spawn(soak, settings, trigger, now, clock.handle()),
                    None => tracing::error!(
                        "this leader took over a rollback latch but has no [rollback] section to run it with"
                    ),
                }
            }
            Ok(_) => {
                self.judge_started_at = None;
                self.refresh(&soak.id).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the previous leader's rollback journal is unreadable; retrying")
            }
        }
    }

    /// Re-reads the journal of a taken latch; a failed read keeps the last view.
    pub async fn refresh_if_latched(&mut self, soak_id: &str) {
        if self.latched {
            self.refresh(soak_id).await;
        }
    }

    async fn refresh(&mut self, soak_id: &str) {
        match rollback::view(&self.store, soak_id).await {
            Ok(v) => self.view = v,
            Err(e) => tracing::debug!(error = %e, "rollback journal unreadable this cycle"),
        }
    }

    /// Whether the latch is taken (by anyone).
    pub fn latched(&self) -> bool {
        self.latched
    }

    /// Whether a rollback runs in this process now (the periodic E2E probe
    /// waits for it: it would publish into a service being restarted).
    pub fn running(&self) -> bool {
        self.task.is_some()
    }

    /// The journal as last read.
    pub fn view(&self) -> Option<&RollbackView> {
        self.view.as_ref()
    }

    /// At shutdown: a rollback in flight finishes (its steps have their own
    /// timeouts); returns the journal then.
    pub async fn finish(&mut self, soak_id: &str) -> Option<Option<RollbackView>> {
        let task = self.task.take()?;
        tracing::info!("waiting for the rollback in flight to finish");
        let _ = task.await;
        self.refresh(soak_id).await;
        Some(self.view.clone())
    }
}
