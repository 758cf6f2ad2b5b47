//! Alert lifecycle per criterion, and delivery through the outbox.
//!
//! The lifecycle is pure: each cycle, [`AlertEngine::step`] compares what
//! should be firing (a criterion's debounced status is fail, or it has been
//! unknown for `unknown_after`) with what was firing, and returns one grouped
//! notification for the changes plus one for alerts that have fired longer
//! than `repeat_interval` since their last notification. The `for` duration
//! (pending) lives in the timeline's debouncing, so an alert fires exactly
//! when the criterion's failure is confirmed.
//!
//! Notifications are written to the outbox together with the new states in
//! one transaction; [`deliver_route_due`] sends them, each route on its own
//! (see [`crate::alert::delivery`]), with backoff, so a receiver
//! that is down gets the alert when it is back, also after a restart, and a
//! delivered notification is never sent again.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::model::{AlertItem, AlertState, Notification, NotificationKind, Severity};
use crate::alert::routes::AlertsConfig;
use crate::soak::model::SoakSummary;
use crate::state::store::{OutboxItem, OutboxOutcome, Store, StoreError};
use crate::verdict::{ConsumerKey, InstanceId, JudgedId, Status};

/// What is known about one alert between cycles (persisted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertTrack {
    /// Alert name (`soakwatch_<criterion>`).
    pub name: String,
    /// What the alert is about, as shown: a [`JudgedId`]'s text, or the
    /// alert's name for an alert about no criterion. Text, so the stored
    /// state reads the same in every version.
    pub criterion: String,
    /// Currently firing.
    pub firing: bool,
    /// Severity while firing.
    pub severity: Severity,
    /// When it began firing.
    pub since: DateTime<Utc>,
    /// When a notification about it was last created.
    pub last_sent: DateTime<Utc>,
}

/// The lifecycle state of every criterion's alert.
#[derive(Debug, Default)]
pub struct AlertEngine {
    tracks: BTreeMap<String, AlertTrack>,
}

/// What one cycle produced.
#[derive(Debug, Default)]
pub struct StepOutput {
    /// Notifications to enqueue (changes first, then repeats).
    pub notifications: Vec<Notification>,
    /// Tracks that changed (to persist).
    pub changed: Vec<AlertTrack>,
}

impl AlertEngine {
    /// Resumes from persisted tracks (so a restart does not re-send what fired).
    pub fn from_tracks(tracks: Vec<AlertTrack>) -> Self {
        AlertEngine {
            tracks: tracks.into_iter().map(|t| (t.name.clone(), t)).collect(),
        }
    }

    /// Alerts firing now.
    pub fn firing(&self) -> impl Iterator<Item = &AlertTrack> {
        self.tracks.values().filter(|t| t.firing)
    }

    /// One cycle of the lifecycle over the soak summary at `now`.
    pub fn step(&mut self, cfg: &AlertsConfig, s: &SoakSummary, now: DateTime<Utc>) -> StepOutput {
        let mut changes = Vec::new();
        let mut repeats = Vec::new();
        let mut changed = Vec::new();
        let repeat = crate::duration::delta(cfg.repeat_interval);
        for cand in candidates(cfg, s, now, &self.tracks) {
            let track = self.tracks.get(&cand.key).cloned();
            let item = |state: AlertState,
                        severity: Severity,
                        since: DateTime<Utc>,
                        summary: String| AlertItem {
                name: cand.name.clone(),
                criterion: Some(cand.criterion.clone()),
                severity,
                state,
                starts_at: since,
                ends_at: (state == AlertState::Resolved).then_some(now),
                summary,
                evidence: cand.evidence.clone(),
                value: cand.value,
                target: cand.target.clone(),
            };
            match (cand.desired.clone(), track) {
                (Some((sev, summary)), Some(t)) if t.firing && now - t.last_sent >= repeat => {
                    repeats.push(item(AlertState::Firing, sev, t.since, summary));
                    let t2 = AlertTrack {
                        last_sent: now,
                        ..t
                    };
                    changed.push(t2.clone());
                    self.tracks.insert(cand.key.clone(), t2);
                }
                // Still firing, repeat not due: nothing to say.
                (Some(_), Some(t)) if t.firing => {}
                (Some((sev, summary)), _) => {
                    changes.push(item(AlertState::Firing, sev, cand.since, summary));
                    let t = AlertTrack {
                        name: cand.key.clone(),
                        criterion: cand.criterion.to_string(),
                        firing: true,
                        severity: sev,
                        since: cand.since,
                        last_sent: now,
                    };
                    changed.push(t.clone());
                    self.tracks.insert(cand.key.clone(), t);
                }
                (None, Some(t)) if t.firing => {
                    changes.push(item(
                        AlertState::Resolved,
                        t.severity,
                        t.since,
                        cand.recovered.clone(),
                    ));
                    let t2 = AlertTrack {
                        firing: false,
                        last_sent: now,
                        ..t
                    };
                    changed.push(t2.clone());
                    self.tracks.insert(cand.key.clone(), t2);
                }
                _ => {}
            }
        }
        let mut notifications = Vec::new();
        let mk = |kind: NotificationKind, alerts: Vec<AlertItem>| Notification {
            id: notification_id(&s.soak_id, kind, &alerts, now),
            soak_id: s.soak_id.clone(),
            soak_name: s.name.clone(),
            created_at: now,
            kind,
            alerts,
        };
        if !changes.is_empty() {
            notifications.push(mk(NotificationKind::Change, changes));
        }
        if !repeats.is_empty() {
            notifications.push(mk(NotificationKind::Repeat, repeats));
        }
        StepOutput {
            notifications,
            changed,
        }
    }
}

/// A notification's id. A change is named by what it says (each alert's
/// name, criterion, state and start), not by when it was made: a step
/// redone after a crash between queueing it and saving the alert tracks
/// (two writes on a JetStream state) queues the same id again, which the
/// outbox ignores, so the receiver gets it once. A repeat is named by its
/// time (a repeat sent twice says nothing new).
fn notification_id(
    soak_id: &str,
    kind: NotificationKind,
    alerts: &[AlertItem],
    now: DateTime<Utc>,
) -> String {
    use sha2::Digest;
    if kind != NotificationKind::Change {
        return format!("{soak_id}-{}-{}", kind.as_str(), now.timestamp_millis());
    }
    let mut h = sha2::Sha256::new();
    for a in alerts {
        let criterion = a.criterion.as_ref().map(|c| c.to_string());
        for part in [
            a.name.as_str(),
            criterion.as_deref().unwrap_or(""),
            a.state.as_str(),
            &a.starts_at.timestamp_millis().to_string(),
        ] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        h.update([0xffu8]);
    }
    let digest = h.finalize();
    format!("{soak_id}-{}-{}", kind.as_str(), hex::encode(&digest[..8]))
}

/// One alert the lifecycle judges this cycle: a criterion's, or one
/// consumer's part of a per-consumer criterion.
struct Candidate {
    /// Track key: the alert name, plus `/<consumer>` for a consumer's alert.
    key: String,
    /// Alert name (`soakwatch_<criterion>`), the same for every consumer.
    name: String,
    /// The criterion, or one consumer's part of it (`consumer_lag/<durable>`).
    criterion: JudgedId,
    /// Severity and summary when it should fire now.
    desired: Option<(Severity, String)>,
    since: DateTime<Utc>,
    recovered: String,
    evidence: String,
    value: Option<f64>,
    target: String,
}

/// Every alert to judge: each criterion, and for a failing per-consumer
/// criterion over a fleet (more than one consumer) one alert per failing consumer (so a second consumer that
/// fails while the first still does is news, not hidden in a firing
/// alert). The `for` and recovery holds are the criterion's, across the
/// fleet: once its failure is confirmed, every consumer failing in the
/// newest cycle alerts, and a consumer's alert resolves when the criterion
/// recovers or the consumer is no longer listed. A per-consumer
/// criterion's own alert is its "cannot be determined", or a confirmed
/// failure that no consumer carries.
fn candidates(
    cfg: &AlertsConfig,
    s: &SoakSummary,
    now: DateTime<Utc>,
    tracks: &BTreeMap<String, AlertTrack>,
) -> Vec<Candidate> {
    let unknown_after = crate::duration::delta(cfg.unknown_after);
    let mut out = Vec::new();
    for c in &s.criteria {
        let since = s
            .spans
            .iter()
            .rev()
            .find(|sp| sp.criterion == c.id)
            .map(|sp| sp.start)
            .unwrap_or(s.now);
        let unknown = (c.now == Status::Unknown && now - since >= unknown_after).then(|| {
            (
                Severity::Warning,
                format!("{} cannot be determined", c.id.title()),
            )
        });
        let failing = (c.now == Status::Fail)
            .then(|| (cfg.severity_of(c.id), format!("{} failing", c.id.title())));
        let name = format!("soakwatch_{}", c.id.as_str());
        // One consumer is the criterion: its alert stays the criterion's
        // (the labels Prometheus rules and receivers already match). A
        // fleet that shrank to one keeps its consumer alerts until they
        // resolve.
        let prefix = format!("{name}/");
        let consumer_firing = tracks
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .any(|(_, t)| t.firing);
        let per_consumer = c.id.per_consumer() && (c.last.instances.len() > 1 || consumer_firing);
        let mut listed = std::collections::BTreeSet::new();
        let mut consumer_alerts = Vec::new();
        for i in c.last.instances.iter().filter(|_| per_consumer) {
            let key = format!("{prefix}{}", i.id.consumer);
            listed.insert(key.clone());
            // Fires with the criterion's confirmed failure; once firing it
            // holds until the criterion recovers (its recovery hold is the
            // criterion's, as its `for` is), or the consumer is gone.
            let firing = tracks.get(&key).is_some_and(|t| t.firing);
            let desired =
                (c.now == Status::Fail && (i.status == Status::Fail || firing)).then(|| {
                    (
                        cfg.severity_of(c.id),
                        format!("{} failing: {}", c.id.title(), i.consumer),
                    )
                });
            consumer_alerts.push(Candidate {
                key,
                name: name.clone(),
                criterion: JudgedId::Instance(i.id.clone()),
                desired,
                // The criterion's span: stable across a redone step.
                since,
                recovered: format!("{} recovered: {}", c.id.title(), i.consumer),
                evidence: i.evidence.clone(),
                value: i.value,
                target: i.target.clone(),
            });
        }
        // A confirmed failure that is no one consumer's (too few durables
        // selected, the env file) is the criterion's own alert.
        let carried = consumer_alerts.iter().any(|a| a.desired.is_some());
        out.push(Candidate {
            key: name.clone(),
            name: name.clone(),
            criterion: JudgedId::Criterion(c.id),
            desired: if carried {
                unknown
            } else {
                failing.or(unknown)
            },
            since,
            recovered: format!("{} recovered", c.id.title()),
            evidence: c.last.evidence.clone(),
            value: c.last.value,
            target: c.last.target.clone(),
        });
        out.append(&mut consumer_alerts);
        if !per_consumer {
            continue;
        }
        for (key, t) in tracks.range(prefix.clone()..) {
            if !key.starts_with(&prefix) {
                break;
            }
            if t.firing && !listed.contains(key) {
                let consumer = ConsumerKey::parse(&key[prefix.len()..]);
                out.push(Candidate {
                    key: key.clone(),
                    name: name.clone(),
                    criterion: JudgedId::Instance(InstanceId {
                        criterion: c.id,
                        consumer,
                    }),
                    desired: None,
                    since: t.since,
                    recovered: format!("{} recovered: no longer failing", c.id.title()),
                    evidence: String::new(),
                    value: None,
                    target: c.last.target.clone(),
                });
            }
        }
    }
    out
}

/// An alert that is not a criterion, as observed now.
#[derive(Debug, Clone, Copy)]
pub struct NamedAlert<'a> {
    /// Alert name, e.g. `soakwatch_e2e`.
    pub name: &'a str,
    /// Whether its condition holds now.
    pub failing: bool,
    /// Severity while firing.
    pub severity: Severity,
    /// One line for a person.
    pub summary: &'a str,
    /// The evidence line.
    pub evidence: &'a str,
}

impl AlertEngine {
    /// The lifecycle of an alert that is not a criterion (the periodic E2E
    /// probe): a notification when `failing` changes, none otherwise.
    pub fn step_named(
        &mut self,
        a: &NamedAlert<'_>,
        soak: (&str, &str),
        now: DateTime<Utc>,
    ) -> StepOutput {
        let NamedAlert {
            name,
            failing,
            severity,
            summary,
            evidence,
        } = *a;
        let was = self.tracks.get(name).cloned();
        let firing_before = was.as_ref().is_some_and(|t| t.firing);
        if failing == firing_before {
            return StepOutput::default();
        }
        let since = if failing {
            now
        } else {
            was.as_ref().map(|t| t.since).unwrap_or(now)
        };
        let track = AlertTrack {
            name: name.to_string(),
            criterion: name.to_string(),
            firing: failing,
            severity,
            since,
            last_sent: now,
        };
        self.tracks.insert(name.to_string(), track.clone());
        let item = AlertItem {
            name: name.to_string(),
            criterion: None,
            severity,
            state: if failing {
                AlertState::Firing
            } else {
                AlertState::Resolved
            },
            starts_at: since,
            ends_at: (!failing).then_some(now),
            summary: summary.to_string(),
            evidence: evidence.to_string(),
            value: None,
            target: "an event in, its row out".into(),
        };
        StepOutput {
            notifications: vec![Notification {
                id: format!("{}-{name}-{}", soak.0, now.timestamp_millis()),
                soak_id: soak.0.to_string(),
                soak_name: soak.1.to_string(),
                created_at: now,
                kind: NotificationKind::Change,
                alerts: vec![item],
            }],
            changed: vec![track],
        }
    }
}

/// Writes a step's notifications (one outbox row per accepting route) and
/// the changed tracks in one transaction.
pub async fn enqueue(
    store: &Store,
    cfg: &AlertsConfig,
    soak_id: &str,
    out: &StepOutput,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    enqueue_notifications(store, cfg, soak_id, &out.notifications, &out.changed, now).await
}

/// Enqueues notifications for every route that takes them (and saves tracks).
pub async fn enqueue_notifications(
    store: &Store,
    cfg: &AlertsConfig,
    soak_id: &str,
    notifications: &[Notification],
    tracks: &[AlertTrack],
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut rows = Vec::new();
    for n in notifications {
        for r in &cfg.routes {
            // The sign-off goes to every route: a route that takes only
            // critical alerts still wants to hear the soak ended.
            let taken = match n.kind {
                NotificationKind::SignOff => Some(n.clone()),
                _ => r.filter(n),
            };
            if let Some(f) = taken {
                rows.push((n.id.clone(), r.name.clone(), f));
            }
        }
    }
    let states: Vec<(String, AlertTrack)> =
        tracks.iter().map(|t| (t.name.clone(), t.clone())).collect();
    if rows.is_empty() && states.is_empty() {
        return Ok(0);
    }
    store.commit_alerts(soak_id, &states, &rows, now).await?;
    Ok(rows.len())
}

/// Backoff after `attempts` failed tries: 1 s, 2 s, 4 s, … capped.
pub fn backoff(attempts: i64, max: Duration) -> Duration {
    let secs = 1u64
        .checked_shl(attempts.clamp(0, 30) as u32)
        .unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(max)
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver took it; never sent again.
    Delivered,
    /// A failure a later attempt may not see: due again after its backoff.
    Retry,
    /// A permanent failure (or a route no longer configured): given up.
    GaveUp,
}

/// One delivery attempt per due outbox row, every route in turn (the
/// one-shot `rollback` command). Returns (delivered, failed).
pub async fn deliver_due(
    store: &Store,
    cfg: &AlertsConfig,
    http: &reqwest::Client,
    now: DateTime<Utc>,
) -> Result<(usize, usize), StoreError> {
    let due = store.due_outbox::<Notification>(now, 50).await?;
    let (mut ok, mut failed) = (0, 0);
    for item in due {
        // A watcher that lost the leader lease mid-round sends nothing more.
        if !store.may_act() {
            break;
        }
        match deliver_one(store, cfg, item, http, now).await? {
            Attempt::Delivered => ok += 1,
            Attempt::Retry | Attempt::GaveUp => failed += 1,
        }
    }
    Ok((ok, failed))
}

/// What one round of a route's deliveries did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteRound {
    /// Notifications the receiver took.
    pub delivered: usize,
    /// Attempts that failed (retryable or not).
    pub failed: usize,
    /// The round ended at a retryable failure: the receiver is down or
    /// slow, so the route backs off before its next round.
    pub backing_off: bool,
}

/// One round of route `route`'s due outbox rows, oldest first. It ends at
/// the first retryable failure: a receiver that is down or hangs costs
/// its own route one timeout per round, and no other route anything.
pub async fn deliver_route_due(
    store: &Store,
    cfg: &AlertsConfig,
    route: &str,
    http: &reqwest::Client,
    now: DateTime<Utc>,
) -> Result<RouteRound, StoreError> {
    let due = store
        .due_outbox_route::<Notification>(route, now, 50)
        .await?;
    let mut round = RouteRound::default();
    for item in due {
        if !store.may_act() {
            break;
        }
        match deliver_one(store, cfg, item, http, now).await? {
            Attempt::Delivered => round.delivered += 1,
            Attempt::GaveUp => round.failed += 1,
            Attempt::Retry => {
                round.failed += 1;
                round.backing_off = true;
                break;
            }
        }
    }
    Ok(round)
}

/// One attempt at one outbox row, its outcome recorded (at the time the
/// attempt ended, so a slow receiver's backoff starts when it gave up).
async fn deliver_one(
    store: &Store,
    cfg: &AlertsConfig,
    item: OutboxItem<Notification>,
    http: &reqwest::Client,
    now: DateTime<Utc>,
) -> Result<Attempt, StoreError> {
    let Some(route) = cfg.routes.iter().find(|r| r.name == item.route) else {
        let error = format!("route {} is no longer configured", item.route);
        store
            .outbox_result(&item.id, &item.route, OutboxOutcome::Dead { error }, now)
            .await?;
        return Ok(Attempt::GaveUp);
    };
    let sent = route.sink.send(&item.body, http).await;
    let at = Utc::now().max(now);
    let (outcome, attempt) = match sent {
        Ok(()) => {
            tracing::info!(route = %route.name, id = %item.id, "notification delivered");
            (OutboxOutcome::Delivered, Attempt::Delivered)
        }
        Err(e) if e.retryable => {
            let wait = backoff(item.attempts, cfg.max_backoff);
            tracing::warn!(route = %route.name, id = %item.id, error = %e.reason, retry_in_secs = wait.as_secs_f64(), "delivery failed");
            let next = crate::duration::after(at, wait);
            let outcome = OutboxOutcome::Retry {
                next,
                error: e.reason,
            };
            (outcome, Attempt::Retry)
        }
        Err(e) => {
            tracing::error!(route = %route.name, id = %item.id, error = %e.reason, "delivery failed permanently");
            (OutboxOutcome::Dead { error: e.reason }, Attempt::GaveUp)
        }
    };
    store
        .outbox_result(&item.id, &item.route, outcome, at)
        .await?;
    Ok(attempt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::model::{CriterionSummary, Span};
    use crate::verdict::{CriterionId, Verdict};
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0)
            .single()
            .expect("time")
    }

    fn cfg() -> AlertsConfig {
        AlertsConfig {
            repeat_interval: Duration::from_secs(3600),
            unknown_after: Duration::from_secs(600),
            severity: [(CriterionId::Dlq, Severity::Critical)]
                .into_iter()
                .collect(),
            max_backoff: Duration::from_secs(300),
            routes: Vec::new(),
        }
    }

    fn summary(now: i64, statuses: &[(CriterionId, Status, i64)]) -> SoakSummary {
        let criteria = statuses
            .iter()
            .map(|(id, st, _)| CriterionSummary {
                id: *id,
                now: *st,
                soak: *st,
                fail_secs: 0.0,
                unknown_secs: 0.0,
                coverage: 1.0,
                worst_value: None,
                last: Verdict::new(*id, *st, "x", "target", "evidence"),
            })
            .collect();
        let spans = statuses
            .iter()
            .map(|(id, st, since)| Span {
                criterion: *id,
                status: *st,
                start: t(*since),
                end: t(now),
                peak: None,
                evidence: String::new(),
            })
            .collect();
        SoakSummary {
            soak_id: "s".into(),
            name: "soak".into(),
            t0: t(0),
            now: t(now),
            planned_secs: 172_800.0,
            samples: 1,
            criteria,
            incidents: vec![],
            spans,
            coverage: vec![],
            min_coverage: 0.95,
            restarts: vec![],
            series: Default::default(),
            verdict: Status::Pass,
            verdict_reason: String::new(),
            last_snapshot: None,
            rollback: None,
            consumers: vec![],
            edges: Default::default(),
            totals: Default::default(),
        }
    }

    /// `consumer_lag` confirmed failing with these consumers' raw statuses.
    fn fleet_summary(now: i64, lag: Status, consumers: &[(&str, Status)]) -> SoakSummary {
        let mut s = summary(now, &[(CriterionId::ConsumerLag, lag, 0)]);
        s.criteria[0].last.instances = consumers
            .iter()
            .map(|(name, st)| crate::verdict::InstanceVerdict {
                id: crate::verdict::InstanceId {
                    criterion: CriterionId::ConsumerLag,
                    consumer: crate::verdict::ConsumerKey::durable(*name),
                },
                consumer: name.to_string(),
                stream: "AA_VENDOR_HOT".into(),
                status: *st,
                observed: "12".into(),
                target: "< 10".into(),
                evidence: format!("{name}: lag 12 >= 10"),
                value: Some(12.0),
                warn_at: Some(5.0),
                fail_at: Some(10.0),
            })
            .collect();
        s
    }

    fn firing_ids(out: &StepOutput, state: AlertState) -> Vec<String> {
        out.notifications
            .iter()
            .flat_map(|n| &n.alerts)
            .filter(|a| a.state == state)
            .filter_map(|a| a.criterion.as_ref().map(|c| c.to_string()))
            .collect()
    }

    #[test]
    fn a_failing_fleet_alerts_per_consumer_and_a_second_consumer_is_news() {
        let c = cfg();
        let mut e = AlertEngine::default();
        let out = e.step(
            &c,
            &fleet_summary(
                10,
                Status::Fail,
                &[("a", Status::Fail), ("b", Status::Pass)],
            ),
            t(10),
        );
        assert_eq!(firing_ids(&out, AlertState::Firing), vec!["consumer_lag/a"]);
        assert!(out.notifications[0].alerts[0].name == "soakwatch_consumer_lag");
        // b fails too while a still does: a new alert for b, none again for a.
        let out = e.step(
            &c,
            &fleet_summary(
                20,
                Status::Fail,
                &[("a", Status::Fail), ("b", Status::Fail)],
            ),
            t(20),
        );
        assert_eq!(firing_ids(&out, AlertState::Firing), vec!["consumer_lag/b"]);
        // a passes while the criterion still fails: a's alert holds (the
        // recovery hold is the criterion's); b is deleted: its alert resolves.
        let out = e.step(
            &c,
            &fleet_summary(30, Status::Fail, &[("a", Status::Pass)]),
            t(30),
        );
        assert_eq!(
            firing_ids(&out, AlertState::Resolved),
            vec!["consumer_lag/b"]
        );
        assert!(firing_ids(&out, AlertState::Firing).is_empty());
        // The criterion recovers: a's alert resolves, and nothing else fires.
        let out = e.step(
            &c,
            &fleet_summary(40, Status::Pass, &[("a", Status::Pass)]),
            t(40),
        );
        assert_eq!(
            firing_ids(&out, AlertState::Resolved),
            vec!["consumer_lag/a"]
        );
        assert!(firing_ids(&out, AlertState::Firing).is_empty());
        assert_eq!(e.firing().count(), 0);
        // One watched consumer: the criterion's own alert, as always.
        let mut one = AlertEngine::default();
        let out = one.step(
            &c,
            &fleet_summary(10, Status::Fail, &[("a", Status::Fail)]),
            t(10),
        );
        assert_eq!(firing_ids(&out, AlertState::Firing), vec!["consumer_lag"]);
        // A confirmed failure no consumer carries alerts as the criterion.
        let out = e.step(
            &c,
            &fleet_summary(
                50,
                Status::Fail,
                &[("a", Status::Pass), ("b", Status::Pass)],
            ),
            t(50),
        );
        assert_eq!(firing_ids(&out, AlertState::Firing), vec!["consumer_lag"]);
    }

    #[test]
    fn a_step_redone_after_a_crash_queues_the_same_notification_id() {
        let c = cfg();
        let s = summary(100, &[(CriterionId::Dlq, Status::Fail, 40)]);
        // The tracks were not saved: the next step (later) says it again.
        let first = AlertEngine::default().step(&c, &s, t(100));
        let redone = AlertEngine::default().step(&c, &s, t(110));
        assert_eq!(first.notifications[0].id, redone.notifications[0].id);
        // What a change says makes its id: firing and resolving differ.
        let mut e = AlertEngine::default();
        let fired = e.step(&c, &s, t(100));
        let resolved = e.step(
            &c,
            &summary(200, &[(CriterionId::Dlq, Status::Pass, 150)]),
            t(200),
        );
        assert_ne!(fired.notifications[0].id, resolved.notifications[0].id);
        // A new incident of the same criterion is a new notification.
        let again = e.step(
            &c,
            &summary(300, &[(CriterionId::Dlq, Status::Fail, 290)]),
            t(300),
        );
        assert_ne!(fired.notifications[0].id, again.notifications[0].id);
    }

    #[test]
    fn fires_once_repeats_after_interval_and_resolves() {
        let c = cfg();
        let mut e = AlertEngine::default();
        let out = e.step(
            &c,
            &summary(100, &[(CriterionId::Dlq, Status::Fail, 40)]),
            t(100),
        );
        assert_eq!(out.notifications.len(), 1);
        let a = &out.notifications[0].alerts[0];
        assert_eq!(
            (a.state, a.severity, a.starts_at),
            (AlertState::Firing, Severity::Critical, t(40))
        );
        // Still failing: nothing new.
        let out = e.step(
            &c,
            &summary(110, &[(CriterionId::Dlq, Status::Fail, 40)]),
            t(110),
        );
        assert!(out.notifications.is_empty());
        // An hour later: one repeat.
        let out = e.step(
            &c,
            &summary(3700, &[(CriterionId::Dlq, Status::Fail, 40)]),
            t(3700),
        );
        assert_eq!(out.notifications.len(), 1);
        assert_eq!(out.notifications[0].kind, NotificationKind::Repeat);
        // Recovered.
        let out = e.step(
            &c,
            &summary(3710, &[(CriterionId::Dlq, Status::Pass, 3705)]),
            t(3710),
        );
        assert_eq!(out.notifications[0].alerts[0].state, AlertState::Resolved);
        assert_eq!(out.notifications[0].alerts[0].ends_at, Some(t(3710)));
        // A restart resumes the tracks: no second firing notification.
        let tracks: Vec<AlertTrack> = e.tracks.values().cloned().collect();
        let mut e2 = AlertEngine::from_tracks(tracks);
        let out = e2.step(
            &c,
            &summary(3720, &[(CriterionId::Dlq, Status::Pass, 3705)]),
            t(3720),
        );
        assert!(out.notifications.is_empty());
    }

    #[test]
    fn long_unknown_warns_short_unknown_does_not() {
        let c = cfg();
        let mut e = AlertEngine::default();
        let out = e.step(
            &c,
            &summary(500, &[(CriterionId::ConsumerLag, Status::Unknown, 0)]),
            t(500),
        );
        assert!(out.notifications.is_empty());
        let out = e.step(
            &c,
            &summary(700, &[(CriterionId::ConsumerLag, Status::Unknown, 0)]),
            t(700),
        );
        assert_eq!(out.notifications[0].alerts[0].severity, Severity::Warning);
        assert!(out.notifications[0].alerts[0]
            .summary
            .contains("cannot be determined"));
    }

    #[test]
    fn changes_in_one_cycle_are_grouped() {
        let c = cfg();
        let mut e = AlertEngine::default();
        let out = e.step(
            &c,
            &summary(
                100,
                &[
                    (CriterionId::Dlq, Status::Fail, 90),
                    (CriterionId::SuccessRate, Status::Fail, 90),
                ],
            ),
            t(100),
        );
        assert_eq!(out.notifications.len(), 1);
        assert_eq!(out.notifications[0].alerts.len(), 2);
        assert_eq!(out.changed.len(), 2);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let max = Duration::from_secs(60);
        assert_eq!(backoff(0, max), Duration::from_secs(1));
        assert_eq!(backoff(3, max), Duration::from_secs(8));
        assert_eq!(backoff(40, max), max);
    }
}
