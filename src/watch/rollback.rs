//! Firing the rollback: triggers, the one-shot latch, the journal and the
//! outcome notification. The steps themselves are [`crate::rollback`].
//!
//! The latch is a row in the state database taken before anything runs, so
//! the rollback fires at most once per soak, across restarts and crashes. A
//! rollback found `started` by a later holder was either never acted on
//! (run once, by the new holder) or interrupted half-way (reported, never
//! re-run blindly): see [`resolve_started`].

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::clock::Clock;

use crate::alert::engine::enqueue_notifications;
use crate::alert::model::{AlertItem, AlertState, Notification, NotificationKind, Severity};
use crate::alert::routes::AlertsConfig;
use crate::config::{RollbackSettings, RollbackTrigger};
use crate::rollback::{execute_gated, RollbackMode, RollbackOutcome, StepRecord, StepStatus};
use crate::soak::dlq_spike::{describe_spike, is_spike, SpikeRule};
use crate::soak::model::{RollbackState, RollbackView, SoakSummary};
use crate::soak::record::CycleRecord;
use crate::state::store::{Store, StoreError};
use crate::untrusted::untrusted;
use crate::verdict::Status;

/// The rollback record of a soak, if the latch was ever taken.
pub async fn view(store: &Store, soak_id: &str) -> Result<Option<RollbackView>, StoreError> {
    Ok(store
        .rollback_record::<Vec<StepRecord>>(soak_id)
        .await?
        .map(|r| RollbackView {
            state: r.state,
            trigger: r.trigger,
            started: r.started,
            finished: r.finished,
            steps: r.steps.unwrap_or_default(),
        }))
}

/// The first trigger that holds now, described for the latch and the alert.
pub fn fired_trigger(
    triggers: &[RollbackTrigger],
    summary: &SoakSummary,
    cycles: &[CycleRecord],
    dlq_spike: &SpikeRule,
) -> Option<String> {
    for t in triggers {
        match t.criterion {
            Some(id) => {
                let Some(c) = summary.criterion(id) else {
                    continue;
                };
                if c.now != Status::Fail {
                    continue;
                }
                let since = summary
                    .spans
                    .iter()
                    .rev()
                    .find(|sp| sp.criterion == id)
                    .map(|sp| sp.start)
                    .unwrap_or(summary.now);
                let held = (summary.now - since).to_std().unwrap_or_default();
                if held >= t.hold {
                    return Some(format!(
                        "{} failing for {} (trigger after {}): {}",
                        id.as_str(),
                        humantime::format_duration(std::time::Duration::from_secs(held.as_secs())),
                        humantime::format_duration(t.hold),
                        c.last.evidence
                    ));
                }
            }
            None => {
                // The spike must be real (counted over a covered window of
                // real time) now, and for every cycle of the trigger's hold.
                let Some(text) = describe_spike(cycles, dlq_spike) else {
                    continue;
                };
                let hold = crate::duration::delta(t.hold);
                let Some(now) = cycles.last().map(|c| c.at) else {
                    continue;
                };
                let held = cycles
                    .iter()
                    .enumerate()
                    .rev()
                    .take_while(|(_, c)| now - c.at <= hold)
                    .all(|(k, _)| is_spike(cycles, k, dlq_spike));
                if held {
                    return Some(format!("dlq_spike: {text}"));
                }
            }
        }
    }
    None
}

/// The CLI's lines: one per step, each followed by its output's first and
/// last lines, indented ([`crate::rollback::output_view`]); outside text
/// made safe for a terminal.
pub fn step_lines(steps: &[StepRecord]) -> Vec<String> {
    let mut out = Vec::new();
    for s in steps {
        let v = crate::rollback::output_view(&s.output);
        out.push(format!("{}{}", step_head(s), shown(&v.headline, ": ")));
        out.extend(v.lines.iter().map(|l| format!("     {}", untrusted(l))));
    }
    out
}

/// One line per step with its output's head and tail (` ⏎ ` between
/// lines), for an alert's evidence.
pub fn step_summaries(steps: &[StepRecord]) -> Vec<String> {
    steps
        .iter()
        .map(|s| {
            let v = crate::rollback::output_view(&s.output);
            format!("{}{}", step_head(s), shown(&v.one_line(), ": "))
        })
        .collect()
}

/// `2. restart failed (12 ms)`.
fn step_head(s: &StepRecord) -> String {
    format!(
        "{}. {} {} ({} ms)",
        s.n,
        s.name,
        s.status.as_str(),
        s.duration_ms
    )
}

/// `prefix` and the text made safe, or nothing for an empty text.
fn shown(text: &str, prefix: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!("{prefix}{}", untrusted(text))
    }
}

/// The notification every route gets about a rollback.
pub fn outcome_notification(
    soak_id: &str,
    soak_name: &str,
    trigger: &str,
    started: DateTime<Utc>,
    outcome: Option<&RollbackOutcome>,
    interrupted: bool,
    now: DateTime<Utc>,
) -> Notification {
    let summary = match (outcome, interrupted) {
        (_, true) => "rollback was interrupted half-way (soakwatch restarted): NOT re-run; check the service by hand".to_string(),
        (Some(o), _) if o.dry_run => "rollback triggered (dry run): nothing was changed".to_string(),
        (Some(o), _) if o.success => "rollback completed successfully".to_string(),
        (Some(o), _) => match o.failed_step.and_then(|n| o.steps.iter().find(|s| s.n == n)) {
            Some(s) => format!(
                "rollback FAILED at step {} ({}): {}",
                s.n,
                s.name,
                untrusted(&crate::rollback::output_view(&s.output).one_line())
            ),
            None => "rollback did not run (disarmed or refused)".to_string(),
        },
        (None, false) => "rollback started".to_string(),
    };
    let evidence = outcome
        .map(|o| step_summaries(&o.steps).join(" | "))
        .unwrap_or_default();
    Notification {
        id: format!("{soak_id}-rollback-{}", now.timestamp_millis()),
        soak_id: soak_id.to_string(),
        soak_name: soak_name.to_string(),
        created_at: now,
        kind: NotificationKind::Rollback,
        alerts: vec![AlertItem {
            name: "soakwatch_rollback".into(),
            criterion: None,
            severity: Severity::Critical,
            state: AlertState::Firing,
            starts_at: started,
            ends_at: None,
            summary,
            evidence: if evidence.is_empty() {
                format!("trigger: {trigger}")
            } else {
                format!("trigger: {trigger}; steps: {evidence}")
            },
            value: None,
            target: "rollback completes every step".into(),
        }],
    }
}

/// The soak a rollback belongs to, and where it reports.
#[derive(Clone)]
pub struct RollbackTarget {
    /// The state database (latch, journal, outbox).
    pub store: Arc<Store>,
    /// Where the outcome notification goes.
    pub alerts: Arc<AlertsConfig>,
    /// The soak's id.
    pub soak_id: String,
    /// The soak's name.
    pub soak_name: String,
}

/// What [`fire`] did.
#[derive(Debug)]
pub enum Fired {
    /// The latch was free: the rollback ran.
    Ran(RollbackOutcome),
    /// The latch was taken already (by the daemon or by hand): nothing ran.
    AlreadyFired(Option<RollbackView>),
}

/// Takes the soak's one-shot latch and, if it was free, runs the rollback:
/// the one way in for `rollback --execute` and the daemon alike.
pub async fn fire(
    target: RollbackTarget,
    settings: RollbackSettings,
    trigger: String,
    clock: Arc<dyn Clock>,
) -> Result<Fired, StoreError> {
    let started = clock.now();
    if !target
        .store
        .take_rollback_latch(&target.soak_id, &trigger, started)
        .await?
    {
        return Ok(Fired::AlreadyFired(
            view(&target.store, &target.soak_id).await?,
        ));
    }
    run_latched(target, settings, trigger, started, clock)
        .await
        .map(Fired::Ran)
}

/// Runs the rollback, journaling each step, then records the outcome and
/// notifies every route. Only for a latch already taken by [`fire`], or
/// one the daemon could not record (a full disk must not stop the
/// rollback a critical trigger asks for).
pub(super) async fn run_latched(
    target: RollbackTarget,
    settings: RollbackSettings,
    trigger: String,
    started: DateTime<Utc>,
    clock: Arc<dyn Clock>,
) -> Result<RollbackOutcome, StoreError> {
    let RollbackTarget {
        store,
        alerts,
        soak_id,
        soak_name,
    } = target;
    tracing::error!(soak = %soak_id, trigger = %trigger, mode = settings.run.mode.as_str(), "ROLLBACK triggered");
    // The term this rollback began in: a task that outlives its term (the
    // process lost the lease and won it again) is refused like another
    // watcher would be, and its journal never overwrites a latch another
    // term took over.
    let term = store.term_id();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<StepRecord>();
    let journal = {
        let store = store.clone();
        let soak_id = soak_id.clone();
        let term = term.clone();
        tokio::spawn(async move {
            let mut steps = Vec::new();
            while let Some(rec) = rx.recv().await {
                tracing::warn!(step = rec.n, name = %rec.name, status = rec.status.as_str(), "rollback step");
                steps.push(rec);
                if let Err(e) = store
                    .save_rollback(
                        &soak_id,
                        RollbackState::Started,
                        &steps,
                        None,
                        term.as_deref(),
                    )
                    .await
                {
                    tracing::error!(error = %e, "cannot journal the rollback step");
                }
            }
        })
    };
    // Every step with an outside effect asks the state first: a leader
    // deposed while this task ran (frozen, partitioned, suspended) is
    // refused before it touches anything.
    // The mark written before each step lets a later leader tell a latch
    // never acted on (it runs the rollback) from one interrupted half-way
    // (reported, never re-run).
    let gate_store = store.clone();
    let gate_soak = soak_id.clone();
    let gate_term = term.clone();
    let gate = move |step: usize| {
        let (s, id, term) = (gate_store.clone(), gate_soak.clone(), gate_term.clone());
        Box::pin(async move {
            let rev = s.confirm_acting(term.as_deref()).await?;
            match (rev, term.as_deref()) {
                (Some(r), Some(t)) => s
                    .mark_acting(&id, step, r, t)
                    .await
                    .map_err(|e| format!("the step could not be marked in the journal: {e}"))?,
                // A leader's rollback with no term would act unmarked, and a
                // later leader could not tell it from one never acted on.
                (Some(_), None) => {
                    return Err(
                        "this rollback began with no lease term to mark its steps under"
                            .to_string(),
                    )
                }
                (None, _) => {}
            }
            Ok(rev)
        }) as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
    };
    let outcome = execute_gated(
        &settings.run,
        &mut |rec: &StepRecord| {
            let _ = tx.send(rec.clone());
        },
        &gate,
    )
    .await;
    drop(tx);
    let _ = journal.await;
    let state = if outcome.dry_run {
        RollbackState::DryRun
    } else if outcome.success {
        RollbackState::Done
    } else {
        RollbackState::Failed
    };
    let now = clock.now();
    store
        .save_rollback(&soak_id, state, &outcome.steps, Some(now), term.as_deref())
        .await?;
    let n = outcome_notification(
        &soak_id,
        &soak_name,
        &trigger,
        started,
        Some(&outcome),
        false,
        now,
    );
    enqueue_notifications(&store, &alerts, &soak_id, &[n], &[], now).await?;
    tracing::error!(soak = %soak_id, state = state.as_str(), "ROLLBACK finished");
    Ok(outcome)
}

/// What became of a latch a previous holder left `started`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartedLatch {
    /// No latch was taken: the rollback may still fire.
    Free,
    /// The rollback ended (done, failed, dry run, interrupted): it stands.
    Finished,
    /// The previous holder may have acted: reported interrupted, never
    /// re-run.
    Interrupted,
    /// The previous holder never acted beyond the idempotent env edit and
    /// can no longer act: this leader now holds the latch and runs it.
    Retaken {
        /// The previous holder's trigger.
        trigger: String,
    },
}

/// A previous holder's latch left `started`, judged once that holder can no
/// longer act (a lease and the fence margin after the takeover on
/// JetStream; at start-up with SQLite, whose one writer is dead). The latch
/// is first taken over by this term (compare-and-set), so the previous
/// holder's marks and journal are refused from then on; then the journal
/// as it stood at the takeover decides: no step marked beyond the env edit,
/// this leader runs the rollback (exactly once); a restart or E2E step
/// marked, it may have run: reported interrupted to every route.
pub async fn resolve_started(
    store: &Store,
    alerts: &AlertsConfig,
    soak_id: &str,
    soak_name: &str,
    now: DateTime<Utc>,
) -> Result<StartedLatch, StoreError> {
    let Some(v) = view(store, soak_id).await? else {
        return Ok(StartedLatch::Free);
    };
    if v.state != RollbackState::Started {
        return Ok(StartedLatch::Finished);
    }
    let Some(claim) = store.claim_rollback_latch(soak_id).await? else {
        return Ok(StartedLatch::Finished);
    };
    if claim.never_acted() {
        tracing::warn!(
            previous = claim.previous_holder.as_deref().unwrap_or("unknown"),
            marked = ?claim.acted_step,
            "the previous leader took the rollback latch but never acted: this leader runs the rollback"
        );
        return Ok(StartedLatch::Retaken { trigger: v.trigger });
    }
    tracing::error!(soak = %soak_id, steps = v.steps.len(), "an interrupted rollback was found: it is NOT re-run");
    let term = store.term_id();
    store
        .save_rollback(
            soak_id,
            RollbackState::Interrupted,
            &v.steps,
            None,
            term.as_deref(),
        )
        .await?;
    let o = RollbackOutcome {
        success: false,
        failed_step: v
            .steps
            .iter()
            .find(|s| s.status == StepStatus::Failed)
            .map(|s| s.n),
        dry_run: false,
        steps: v.steps.clone(),
    };
    let n = outcome_notification(
        soak_id,
        soak_name,
        &v.trigger,
        v.started,
        Some(&o),
        true,
        now,
    );
    enqueue_notifications(store, alerts, soak_id, &[n], &[], now).await?;
    Ok(StartedLatch::Interrupted)
}

/// Whether the rollback can fire at all.
pub fn enabled(settings: &Option<RollbackSettings>) -> bool {
    settings
        .as_ref()
        .is_some_and(|s| s.run.mode != RollbackMode::Disarmed)
}
