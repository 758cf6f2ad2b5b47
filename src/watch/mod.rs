//! `soakwatch watch`: the long-running daemon. The loop lives here; its
//! clock (`clock`), the status it publishes (`status`) and serves
//! (`http`), the rollback it fires (`rollback`) and the read side used by
//! `report` and `check --soak` (`read`) beside it.
//!
//! Every `interval` (on a jitter-free grid anchored at T0) it takes one
//! snapshot, evaluates it against the previous one, appends the cycle to the
//! state database, refreshes the soak summary, writes due checkpoint reports
//! and publishes its own status. Time comes from a [`Clock`] and samples from
//! a [`SampleSource`], so tests drive 48 h of soak with scripted samples.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::alert::delivery::{Delivery, SHUTDOWN_GRACE};
use crate::alert::engine as alert_engine;
use crate::atomic_file::write_atomic;
use crate::config::{AtEnd, Config};
use crate::probe::Prober;
use crate::render::chart::{self, ChartThresholds};
use crate::render::report;
use crate::sample::Snapshot;
use crate::self_health::{Change, SelfHealth, WriteTarget};
use crate::soak::model::{SoakEnd, SoakSummary};
use crate::soak::running::RunningSummary;
use crate::soak::timeline::{CycleRecord, EvidenceDeduper, SoakMeta, SoakPolicy};
use crate::state::jetstream::Access;
use crate::state::lease::Lease;
use crate::state::store::{Baselines, SoakRecord, Store, StoreError};
use crate::verdict::Verdict;

pub mod alerting;
mod clock;
pub mod deadman;
pub mod http;
pub mod notify;
pub mod preflight;
mod read;
pub mod recorder;
pub mod rollback;
pub mod rollback_supervisor;
pub mod round_trip;
pub mod signoff;
mod status;
pub mod supervisor;

pub use clock::{BoxFuture, Clock, ManualClock, SystemClock};
pub use read::{load_summary, summary_as_check, write_summary_report};
pub use status::{DaemonStatus, PageInputs, Role, SharedStatus};

/// Produces one snapshot per cycle; the real one is [`Prober`].
pub trait SampleSource: Send + Sync {
    /// Samples everything at `at`; `since` as in [`Prober::snapshot`].
    fn snapshot<'a>(
        &'a self,
        at: DateTime<Utc>,
        since: &'a [DateTime<Utc>],
    ) -> BoxFuture<'a, Snapshot>;

    /// Picks up from the last stored snapshot of a resumed soak (the log
    /// tail's position and counts); nothing by default.
    fn resume(&self, _prev: &Snapshot) {}

    /// Forgets the preflight's rounds, so the soak's first cycle reads as
    /// the first; nothing by default.
    fn forget_rounds(&self) {}
}

impl SampleSource for Prober {
    fn snapshot<'a>(
        &'a self,
        at: DateTime<Utc>,
        since: &'a [DateTime<Utc>],
    ) -> BoxFuture<'a, Snapshot> {
        Box::pin(Prober::snapshot(self, at, since))
    }

    fn resume(&self, prev: &Snapshot) {
        if let Ok(l) = &prev.log {
            self.resume_log(l);
        }
    }

    fn forget_rounds(&self) {
        Prober::forget_rounds(self)
    }
}

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The state database could not be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A report could not be written.
    #[error("writing report {path}: {source}")]
    Report {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Charts could not be rendered.
    #[error("rendering charts: {0}")]
    Chart(String),
    /// Shutdown came while the preflight still failed: no soak was recorded.
    #[error("no soak started: the preflight did not pass ({})", problems.join("; "))]
    NotStarted {
        /// The preflight's last problems.
        problems: Vec<String>,
    },
    /// This watcher lost the leader lease (JetStream state): it stopped
    /// acting; the caller opens a new [`Watch`] that waits as a standby.
    #[error("stepped down: the leader lease is no longer held")]
    SteppedDown,
    /// T0 (from `--t0` or `[soak] started_at`) plus the soak's duration is past.
    #[error("the soak starting at {t0} ended at {end} ([soak] started_at + duration): set [soak] started_at to this cutover's T0, remove it to start now, or pass --t0")]
    SoakOver {
        /// The T0 asked for.
        t0: DateTime<Utc>,
        /// When that soak ended.
        end: DateTime<Utc>,
    },
}

/// How `watch` begins.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Start a new soak even if one is in progress (the old one is kept).
    pub new_soak: bool,
    /// T0 of a new soak (default: now).
    pub t0: Option<DateTime<Utc>>,
    /// Stop after this many cycles (tests, compressed demos).
    pub max_cycles: Option<u64>,
    /// Hold a new soak's T0 until the [`preflight`] passes (the CLI's
    /// default; `--force` turns it off). Off in the library's default so a
    /// replay of a history that starts broken records it as it was.
    pub preflight: bool,
}

/// The policy part of the config.
pub fn policy(cfg: &Config) -> SoakPolicy {
    SoakPolicy {
        interval: cfg.watch.interval,
        max_gap: cfg.watch.max_gap,
        fail_for: cfg.watch.fail_for.clone(),
        recover_after: cfg.watch.recover_after,
        min_coverage: cfg.watch.min_coverage,
        dlq_spike: crate::soak::dlq_spike::SpikeRule {
            window: cfg.watch.dlq_spike_window,
            per_min: cfg.watch.dlq_spike_per_min,
            max_gap: cfg.watch.max_gap,
        },
        probe_labels: crate::soak::timeline::probe_labels(cfg),
        success_rate_min: cfg.criteria.success_rate_min,
    }
}

/// How far back the rollback's triggers look beyond the DLQ spike window:
/// the longest hold (the spike must hold for every cycle of it).
fn rollback_reach(cfg: &Config) -> Duration {
    cfg.rollback
        .as_ref()
        .and_then(|r| r.triggers.iter().map(|t| t.hold).max())
        .unwrap_or_default()
}

/// The config the recorded soak is judged by: its baselines and its T0 in
/// force (`[soak] started_at` may be absent, or differ after `--t0` or
/// `--new-soak`), so a restart is judged against the soak's own T0 as
/// `check` judges it.
pub fn for_soak(cfg: &Config, rec: &SoakRecord) -> Config {
    let mut c = with_baselines(cfg, &rec.baselines);
    c.soak.started_at = Some(rec.meta.t0);
    c
}

/// The config with the soak's recorded baselines in force (no re-baselining on restart).
pub fn with_baselines(cfg: &Config, b: &Baselines) -> Config {
    let mut c = cfg.clone();
    c.streams.legacy.baseline_messages = b.legacy_messages.or(c.streams.legacy.baseline_messages);
    c.streams.legacy.baseline_last_seq = b.legacy_last_seq.or(c.streams.legacy.baseline_last_seq);
    c.streams.dlq.baseline_messages = b.dlq_messages.or(c.streams.dlq.baseline_messages);
    c.streams.dlq.baseline_last_seq = b.dlq_last_seq.or(c.streams.dlq.baseline_last_seq);
    c
}

/// Baselines for a new soak: the config's numbers where given, else what the
/// first snapshot shows.
fn baselines_from(cfg: &Config, first: &Snapshot) -> Baselines {
    let seen = |name: &str| {
        first
            .streams
            .get(name)
            .and_then(|r| r.as_ref().ok())
            .and_then(|s| s.as_ref())
            .map(|s| (s.messages, s.last_seq))
    };
    let legacy = seen(&cfg.streams.legacy.name);
    let dlq = seen(&cfg.streams.dlq.name);
    Baselines {
        legacy_messages: cfg.streams.legacy.baseline_messages.or(legacy.map(|l| l.0)),
        legacy_last_seq: cfg.streams.legacy.baseline_last_seq.or(legacy.map(|l| l.1)),
        dlq_messages: cfg.streams.dlq.baseline_messages.or(dlq.map(|d| d.0)),
        dlq_last_seq: cfg.streams.dlq.baseline_last_seq.or(dlq.map(|d| d.1)),
    }
}

/// The first tick of the jitter-free grid (tick k is at T0 + k * interval)
/// that is not in the past: a resumed soak continues on its grid.
fn first_tick(t0: DateTime<Utc>, interval: chrono::Duration, now: DateTime<Utc>) -> i64 {
    if now <= t0 {
        return 0;
    }
    ((now - t0).num_milliseconds() + interval.num_milliseconds() - 1)
        / interval.num_milliseconds().max(1)
}

/// Tick `k` of the grid, `t0 + k * interval`; the latest representable time
/// when that overflows (never a panic, never a wrapped `k`).
fn tick_at(t0: DateTime<Utc>, interval: chrono::Duration, k: i64) -> DateTime<Utc> {
    interval
        .num_nanoseconds()
        .and_then(|n| n.checked_mul(k))
        .map(chrono::Duration::nanoseconds)
        .and_then(|d| t0.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A soak id: the name and T0, readable and unique per start.
fn soak_id(name: &str, t0: DateTime<Utc>) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{clean}-{}", t0.format("%Y%m%dT%H%M%SZ"))
}

/// Label of a checkpoint offset: "24h", "48h", "90s".
pub fn checkpoint_label(d: Duration) -> String {
    humantime::format_duration(d).to_string().replace(' ', "")
}

/// The running daemon's state between cycles.
pub struct Watch {
    /// The config as loaded.
    cfg: Config,
    /// The config as this soak judges by: `cfg` with the soak's observed
    /// baselines (and T0) applied.
    soak_cfg: Config,
    policy: SoakPolicy,
    store: Arc<Store>,
    soak: SoakRecord,
    /// The stage that steps the alerts and queues them in the outbox.
    alerting: alerting::Alerting,
    /// The soak so far, folded cycle by cycle: memory and per-cycle cost
    /// stay flat however old the soak is.
    running: RunningSummary,
    prev: Option<Snapshot>,
    last_verdicts: Vec<Verdict>,
    status: SharedStatus,
    dedupe: EvidenceDeduper,
    /// The stage that owns the soak's one rollback.
    rollback: rollback_supervisor::RollbackSupervisor,
    wake: Arc<tokio::sync::Notify>,
    /// The stage that runs the periodic E2E (round-trip) probe.
    round_trip: round_trip::PeriodicRoundTrip,
    /// Write failures of this process, per target (the `soakwatch_self` alert).
    health: SelfHealth,
    /// The stage that writes the soak's record (its own task).
    recorder: recorder::Recorder,
    /// Proof of life for the systemd watchdog, and the state for `STATUS=`.
    heartbeat: notify::Heartbeat,
    /// The dead-man's switch (`[heartbeat]` pings to a healthchecks.io URL),
    /// which someone else watches: not the systemd watchdog above.
    deadman: deadman::Deadman,
    /// The leader election of a JetStream state (None with SQLite).
    lease: Option<Lease>,
    /// The sign-off, once the soak reached its end: the soak is then
    /// never sampled or judged again.
    ended: Option<SoakEnd>,
}

impl Watch {
    /// Opens the state and resumes the active soak, or prepares a new one
    /// (recorded at the first cycle, when baselines can be observed).
    pub async fn open(cfg: Config, status: SharedStatus) -> Result<Watch, WatchError> {
        let store = Arc::new(Store::open_config(&cfg, &cfg.watch.state, Access::Leader).await?);
        let lease = match (&*store, store.fence()) {
            (Store::JetStream(j), Some(fence)) => Some(Lease::start(
                j.kv().clone(),
                fence,
                crate::state::lease::LeaseTiming {
                    interval: cfg.watch.interval,
                    lease: cfg.state.lease(cfg.watch.interval),
                    max_clock_skew: cfg.state.max_clock_skew,
                },
            )),
            _ => None,
        };
        if let (Some(l), Some(fence)) = (&lease, store.fence()) {
            let st = status.clone();
            // The lease going away shows at once; "leader" is published by
            // the loop itself once it has resumed the soak and acts (a lease
            // re-taken on a state that cannot be read is not leading).
            l.publish_role(fence, move |leader, term| {
                if let Ok(mut s) = st.write() {
                    if !leader {
                        s.role = Some(Role::Standby);
                    }
                    s.leader_terms = term;
                }
            });
        }
        let policy = policy(&cfg);
        let (cfg_heartbeat, cfg_interval) = (cfg.heartbeat.clone(), cfg.watch.interval);
        let running = RunningSummary::new(&policy, rollback_reach(&cfg));
        let placeholder = SoakRecord {
            meta: SoakMeta {
                id: String::new(),
                name: cfg.soak.name.clone(),
                t0: Utc::now(),
                planned_secs: cfg.soak.duration.as_secs_f64(),
            },
            baselines: Baselines::default(),
        };
        let recorder = recorder::Recorder::start(store.clone());
        let wake = Arc::new(tokio::sync::Notify::new());
        let alerting = alerting::Alerting::new(store.clone(), cfg.alerts.clone(), wake.clone());
        let rollback = rollback_supervisor::RollbackSupervisor::new(
            store.clone(),
            cfg.alerts.clone(),
            cfg.rollback.clone(),
            wake.clone(),
        );
        Ok(Watch {
            soak_cfg: cfg.clone(),
            cfg,
            policy,
            store,
            soak: placeholder,
            alerting,
            running,
            prev: None,
            last_verdicts: Vec::new(),
            status,
            dedupe: EvidenceDeduper::default(),
            rollback,
            wake,
            round_trip: Default::default(),
            health: SelfHealth::default(),
            recorder,
            heartbeat: notify::Heartbeat::default(),
            deadman: deadman::Deadman::new(cfg_heartbeat.as_ref(), cfg_interval),
            lease,
            ended: None,
        })
    }

    /// With a JetStream state: waits as a standby until this watcher takes
    /// the lease, role published. Each interval it samples and discards
    /// (records nothing, sends nothing), so its connections to NATS, the
    /// service and the database are open and proven when it takes over, and
    /// /healthz says which probes fail. Taking over resumes the log tail
    /// from the state, so the standby's reading loses no line. False on
    /// shutdown.
    async fn await_leadership(
        &mut self,
        source: &dyn SampleSource,
        clock: &dyn Clock,
        shutdown: &CancellationToken,
    ) -> bool {
        let Some(lease) = self.lease.as_mut() else {
            return true;
        };
        if let Ok(mut st) = self.status.write() {
            st.role = Some(Role::Standby);
            st.interval_secs = self.cfg.watch.interval.as_secs_f64();
        }
        if !lease.role().leader {
            tracing::info!(holder = %lease.holder(), "standby: waiting for the leader lease");
            self.heartbeat.set_status("standby: another watcher leads");
        }
        // The systemd watchdog is fed while campaigning, not only while sampling.
        let interval = self.cfg.watch.interval;
        let heartbeat = self.heartbeat.clone();
        let deadman = self.deadman.clone();
        let status = self.status.clone();
        let leads = loop {
            heartbeat
                .expect_within(interval * 4 + self.cfg.probe_timeout + Duration::from_secs(60));
            let warm = async {
                let snap = source.snapshot(clock.now(), &[]).await;
                let failing: Vec<String> = snap
                    .probe_outcomes()
                    .into_iter()
                    .filter(|(_, f)| f.is_some())
                    .map(|(label, _)| label)
                    .collect();
                heartbeat.set_status(if failing.is_empty() {
                    "standby: another watcher leads; every probe answers".to_string()
                } else {
                    format!(
                        "standby: another watcher leads; failing probes: {}",
                        failing.join(", ")
                    )
                });
                deadman.standby_round(&failing);
                if let Ok(mut st) = status.write() {
                    st.standby_failing = Some(failing);
                }
                tokio::time::sleep(interval).await;
            };
            tokio::select! {
                r = lease.wait_leader(shutdown) => break r,
                _ = warm => {}
            }
        };
        if leads {
            let term = lease.role().term;
            if let Ok(mut st) = self.status.write() {
                st.standby_failing = None;
                st.leader_terms = term;
            }
        }
        leads
    }

    /// Beats `heartbeat` while the loop makes progress (the systemd watchdog
    /// pings only while it does) and publishes the loop's state on it.
    pub fn with_heartbeat(mut self, heartbeat: notify::Heartbeat) -> Watch {
        self.heartbeat = heartbeat;
        self
    }

    /// Promises the next beat by `until` plus the time a cycle may take (its
    /// probes' timeout and a minute for writes and reports).
    fn promise_beat(&self, clock: &dyn Clock, until: DateTime<Utc>) {
        let wait = (until - clock.now()).to_std().unwrap_or_default();
        self.heartbeat
            .expect_within(wait + self.cfg.probe_timeout + Duration::from_secs(60));
    }

    /// The soak being watched.
    pub fn soak(&self) -> &SoakRecord {
        &self.soak
    }

    /// Runs cycles until `shutdown` (or `max_cycles`); then writes a final
    /// report and closes the state database cleanly.
    pub async fn run(
        mut self,
        source: &dyn SampleSource,
        clock: &dyn Clock,
        start: StartOptions,
        shutdown: CancellationToken,
    ) -> Result<SoakSummary, WatchError> {
        let Some(begun) = self
            .lead_and_begin(source, clock, &start, &shutdown)
            .await?
        else {
            self.store.close().await;
            return Ok(self.summary());
        };
        if let Some(end) = self.ended.clone() {
            return self.after_end(end, clock, &shutdown).await;
        }
        let interval = crate::duration::delta(self.cfg.watch.interval);
        let (mut first, mut pending_new) = match begun {
            Some(new) => {
                self.first_sample(source, clock, &start, &shutdown, new)
                    .await?
            }
            None => (None, None),
        };
        let t0 = pending_new.unwrap_or(self.soak.meta.t0);
        let end = signoff::end_of(t0, self.cfg.soak.duration);
        let reached = |at: DateTime<Utc>| end.is_some_and(|e| at >= e);
        let mut done_cycles = 0u64;
        let mut summary = self.summary();
        // Delivery runs beside the cycles, one task per route: a slow or
        // dead receiver never delays sampling, nor another route.
        let delivery = Delivery::spawn(
            self.store.clone(),
            self.cfg.alerts.clone(),
            self.wake.clone(),
        );
        // Stops watching for a stuck loop whichever way this returns.
        let stalls = self.deadman.watch_stalls();
        // A resumed soak whose end passed while no watcher ran is signed off
        // from its history: nothing sampled after the end belongs to it.
        let mut ended = first.is_none() && reached(clock.now());
        let mut last_at = None;
        if let Some((at, snap)) = first.take() {
            summary = self.cycle(source, clock, at, snap, &mut pending_new).await;
            self.deadman.cycle_done(&summary, self.prev.as_ref());
            done_cycles += 1;
            last_at = Some(at);
            ended = reached(at);
        }
        let mut k = first_tick(t0, interval, clock.now());
        while last_at.is_some_and(|l| tick_at(t0, interval, k) <= l) {
            k += 1;
        }
        while !ended && start.max_cycles.is_none_or(|m| done_cycles < m) {
            // The grid ends at T0 + duration exactly: the final cycle is there.
            let grid = tick_at(t0, interval, k);
            let tick = end.map_or(grid, |e| grid.min(e));
            self.promise_beat(clock, tick);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = clock.sleep_until(tick) => {}
            }
            if !self.store.may_act() {
                // Fenced: another watcher may lead by now. Nothing more is
                // sampled, recorded, delivered or fired by this one.
                delivery.abort();
                tracing::warn!(soak = %self.soak.meta.id, "leader lease lost: stepping down");
                if let Ok(mut st) = self.status.write() {
                    st.role = Some(Role::Standby);
                }
                return Err(WatchError::SteppedDown);
            }
            summary = self
                .cycle(source, clock, tick, None, &mut pending_new)
                .await;
            self.deadman.cycle_done(&summary, self.prev.as_ref());
            done_cycles += 1;
            self.heartbeat.set_status(format!(
                "soak {}: {} ({}), {} cycle(s)",
                self.soak.meta.id,
                summary.verdict.as_str(),
                summary.verdict_reason,
                done_cycles
            ));
            ended = reached(tick);
            // Next tick on the grid after now (a slow cycle skips, never bunches).
            let now = clock.now();
            k += 1;
            while tick_at(t0, interval, k) <= crate::duration::before(now, self.cfg.watch.interval)
            {
                k += 1;
            }
        }
        // Stopping (or the sign-off) is not a stall.
        drop(stalls);
        if let (true, Some(end)) = (ended, end) {
            summary = self.sign_off(summary, end, clock).await;
        }
        let serve = ended && self.cfg.watch.at_end == AtEnd::Serve;
        let summary = self.finish(summary, clock, delivery).await?;
        if serve {
            serve_until_shutdown(&shutdown).await;
        }
        Ok(summary)
    }

    /// Waits to lead (JetStream state), then resumes or prepares the soak
    /// (see [`Watch::begin`]). `None` when shutdown came first.
    async fn lead_and_begin(
        &mut self,
        source: &dyn SampleSource,
        clock: &dyn Clock,
        start: &StartOptions,
        shutdown: &CancellationToken,
    ) -> Result<Option<Option<(DateTime<Utc>, bool)>>, WatchError> {
        if !self.await_leadership(source, clock, shutdown).await {
            return Ok(None);
        }
        let begun = match self.begin(source, start, clock).await {
            Ok(b) => b,
            // A new leader that cannot read the shared state yet (a cluster
            // still electing) gives the lease back and campaigns again.
            Err(WatchError::Store(e @ StoreError::Nats(_))) if self.lease.is_some() => {
                tracing::warn!(error = %e, "cannot resume the soak from the state: stepping down");
                if let Ok(mut st) = self.status.write() {
                    st.role = Some(Role::Standby);
                }
                return Err(WatchError::SteppedDown);
            }
            Err(e) => return Err(e),
        };
        if self.lease.is_some() && self.store.may_act() {
            // Leading in fact: the soak is resumed and this loop acts.
            if let Ok(mut st) = self.status.write() {
                st.role = Some(Role::Leader);
            }
        }
        Ok(Some(begun))
    }

    /// A new soak's first sample, taken at once (the preflight's passing
    /// round is that sample): a soak watched from its T0 is covered from
    /// its T0, never "unknown: coverage below 95 %" in its first minutes.
    /// Returns the first cycle (its time and the sample, if taken) and the
    /// soak's T0.
    #[allow(clippy::type_complexity)]
    async fn first_sample(
        &mut self,
        source: &dyn SampleSource,
        clock: &dyn Clock,
        start: &StartOptions,
        shutdown: &CancellationToken,
        (asked_t0, t0_is_now): (DateTime<Utc>, bool),
    ) -> Result<
        (
            Option<(DateTime<Utc>, Option<Snapshot>)>,
            Option<DateTime<Utc>>,
        ),
        WatchError,
    > {
        // Only what happens from T0 on is judged: the log is read from
        // where it ends now, never its pre-cutover tail.
        source.forget_rounds();
        let snap = if start.preflight {
            Some(self.preflight(source, clock, shutdown).await?)
        } else {
            None
        };
        let at = snap.as_ref().map_or_else(|| clock.now(), |s| s.taken_at);
        let t0 = if t0_is_now { at } else { asked_t0 };
        Ok((Some((at, snap)), Some(t0)))
    }

    /// Resumes the active soak (history, alert states, rollback latch, last
    /// snapshot) or, for a new one, returns its T0 (and whether that is
    /// "now" rather than a T0 asked for): it is recorded at the first cycle,
    /// when its baselines can be observed.
    async fn begin(
        &mut self,
        source: &dyn SampleSource,
        start: &StartOptions,
        clock: &dyn Clock,
    ) -> Result<Option<(DateTime<Utc>, bool)>, WatchError> {
        let resumed = if start.new_soak {
            None
        } else {
            self.store.active_soak().await?
        };
        if let Some(rec) = resumed {
            tracing::info!(soak = %rec.meta.id, t0 = %rec.meta.t0, "resuming soak");
            self.soak_cfg = for_soak(&self.cfg, &rec);
            // The history is folded as it is read, never held whole.
            let mut running = RunningSummary::new(&self.policy, rollback_reach(&self.cfg));
            let mut dedupe = EvidenceDeduper::default();
            self.store
                .for_each_cycle(&rec.meta.id, |c| {
                    dedupe.remember(&c);
                    running.push(c);
                })
                .await?;
            self.running = running;
            self.dedupe = dedupe;
            self.alerting
                .resume(self.store.alert_states(&rec.meta.id).await?);
            let previous_lease_ends =
                self.cfg.state.lease(self.cfg.watch.interval) + self.cfg.watch.interval;
            self.rollback
                .resume(&rec.meta, previous_lease_ends, clock.now())
                .await?;
            self.prev = self.store.last_snapshot(&rec.meta.id).await?;
            // The log tail goes on from the stored cursor: lines written while
            // the daemon was down are read, none twice.
            if let Some(prev) = &self.prev {
                source.resume(prev);
            }
            self.ended = self.store.soak_end(&rec.meta.id).await?;
            self.soak = rec;
            return Ok(None);
        }
        // T0: --t0, else `[soak] started_at` (the cutover the soak
        // follows), else now. A soak that is over already is refused.
        let asked = start.t0.or(self.cfg.soak.started_at);
        let mut t0 = asked.unwrap_or_else(|| clock.now());
        let mut is_now = asked.is_none();
        if start.new_soak && start.t0.is_none() {
            // `--new-soak` after a soak from the same started_at: that
            // T0 is taken (its soak is kept); the new one starts now.
            if let Some(old) = self.store.active_soak().await? {
                if old.meta.t0 == t0 {
                    t0 = clock.now();
                    is_now = true;
                }
            }
        }
        let end = crate::duration::after(t0, self.cfg.soak.duration);
        if end <= clock.now() {
            return Err(WatchError::SoakOver { t0, end });
        }
        Ok(Some((t0, is_now)))
    }

    /// Probes once per interval until [`preflight`] finds nothing wrong;
    /// each new set of problems is logged (with how to start anyway), and
    /// nothing is recorded meanwhile. The passing round is returned: it is
    /// the soak's first sample. Each round reads as the first (the log from
    /// where it ends then), so lines written during a failed preflight,
    /// before T0, are never judged.
    async fn preflight(
        &mut self,
        source: &dyn SampleSource,
        clock: &dyn Clock,
        shutdown: &CancellationToken,
    ) -> Result<Snapshot, WatchError> {
        let mut last: Vec<String> = Vec::new();
        loop {
            self.promise_beat(clock, clock.now());
            source.forget_rounds();
            let snap = source.snapshot(clock.now(), &[]).await;
            let mut problems = preflight::snapshot_problems(&self.cfg, &snap);
            problems.extend(preflight::local_problems(&self.cfg));
            if problems.is_empty() {
                tracing::info!("preflight passed: every probe answered, every file is there");
                self.heartbeat
                    .set_status("preflight passed: the soak starts");
                return Ok(snap);
            }
            self.heartbeat.set_status(format!(
                "preflight: {} problem(s), T0 not recorded (first: {})",
                problems.len(),
                problems[0]
            ));
            if problems != last {
                for p in &problems {
                    tracing::warn!(problem = %p, "preflight: T0 not recorded yet");
                }
                tracing::warn!(
                    count = problems.len(),
                    "preflight failed: fix the config (soakwatch validate --live) or start anyway with --force; retrying every interval"
                );
                last = problems;
            }
            let next = crate::duration::after(clock.now(), self.cfg.watch.interval);
            self.promise_beat(clock, next);
            tokio::select! {
                _ = shutdown.cancelled() => return Err(WatchError::NotStarted { problems: last }),
                _ = clock.sleep_until(next) => {}
            }
        }
    }

    /// One cycle at `tick`: sample (or take the sample `taken`, the
    /// preflight's), judge, record, alert, checkpoints, rollback, E2E,
    /// thinning, status. Never fails: what cannot be written is recorded in
    /// [`SelfHealth`] and retried.
    async fn cycle(
        &mut self,
        source: &dyn SampleSource,
        clock: &dyn Clock,
        tick: DateTime<Utc>,
        taken: Option<Snapshot>,
        pending_new: &mut Option<DateTime<Utc>>,
    ) -> SoakSummary {
        let started = std::time::Instant::now();
        let since: Vec<DateTime<Utc>> = self.prev.iter().map(|p| p.taken_at).collect();
        // A cycle's probes are bounded by the probe timeout, so a cycle
        // that has started is finished even when shutdown is requested;
        // a cycle that runs long makes the next tick late, never two at once.
        let snap = match taken {
            Some(s) => s,
            None => source.snapshot(tick, &since).await,
        };
        if let Some(t0_new) = pending_new.take() {
            self.new_soak(t0_new, &snap, clock.now());
        }
        let (mut rec, verdicts) = CycleRecord::evaluate(
            &self.soak_cfg,
            self.prev.as_ref(),
            &snap,
            self.policy.max_gap,
        );
        self.dedupe.apply(&mut rec);
        // Every write below may fail (disk full, directory replaced, the
        // database locked): the failure is recorded and retried on later
        // cycles, and the soak goes on from what is in memory.
        self.recorder.cycle(&self.soak.meta.id, &rec, &snap);
        self.record_within_budget().await;
        let errors: Vec<String> = rec.probe_errors.keys().cloned().collect();
        for (p, e) in &rec.probe_errors {
            tracing::warn!(probe = %p, reason = %e, "probe failed");
        }
        self.running.push(rec);
        self.last_verdicts = verdicts;
        self.prev = Some(snap);
        let summary = self.summary();
        self.alerting.step(&summary, tick);
        self.flush_alerts(clock.now()).await;
        self.write_due_checkpoints(&summary, clock.now()).await;
        self.alerting.count_outbox().await;
        if let Some(f) = self
            .rollback
            .maybe_fire(
                &self.soak.meta,
                &summary,
                self.running.recent(),
                &self.policy.dlq_spike,
                clock,
            )
            .await
        {
            self.note(WriteTarget::State, f.0);
        }
        self.rollback
            .judge_started_when_due(&self.soak.meta, clock)
            .await;
        self.periodic_round_trip(clock.now()).await;
        self.rollback.refresh_if_latched(&self.soak.meta.id).await;
        if self.running.samples().is_multiple_of(360) && self.recorder.progress().unsaved == 0 {
            self.thin(tick).await;
        }
        self.self_alert(tick).await;
        self.publish_status(started, tick, errors, &summary);
        tracing::info!(
            soak = %self.soak.meta.id,
            cycle = self.running.samples(),
            verdict = summary.verdict.as_str(),
            took_ms = started.elapsed().as_millis() as u64,
            "cycle done"
        );
        summary
    }

    /// Starts the new soak at `t0` with baselines observed in its first snapshot.
    fn new_soak(&mut self, t0: DateTime<Utc>, first: &Snapshot, now: DateTime<Utc>) {
        let rec = SoakRecord {
            meta: SoakMeta {
                id: soak_id(&self.cfg.soak.name, t0),
                name: self.cfg.soak.name.clone(),
                t0,
                planned_secs: self.cfg.soak.duration.as_secs_f64(),
            },
            baselines: baselines_from(&self.cfg, first),
        };
        tracing::info!(
            soak = %rec.meta.id,
            t0 = %rec.meta.t0,
            legacy_messages = rec.baselines.legacy_messages,
            legacy_last_seq = rec.baselines.legacy_last_seq,
            dlq_messages = rec.baselines.dlq_messages,
            dlq_last_seq = rec.baselines.dlq_last_seq,
            "new soak"
        );
        self.soak_cfg = for_soak(&self.cfg, &rec);
        self.recorder.new_soak(&rec, now);
        self.soak = rec;
        self.running = RunningSummary::new(&self.policy, rollback_reach(&self.cfg));
    }

    /// Thins full snapshots older than `keep_full_snapshots`.
    async fn thin(&mut self, tick: DateTime<Utc>) {
        let before = crate::duration::before(tick, self.cfg.watch.keep_full_snapshots);
        match self
            .store
            .thin(&self.soak.meta.id, before, self.cfg.watch.thin_to)
            .await
        {
            Ok(thinned) => tracing::debug!(thinned, "old snapshots thinned"),
            Err(e) => self.note(WriteTarget::State, format!("thinning snapshots: {e}")),
        }
    }

    /// Publishes this cycle to the status the HTTP listener serves.
    fn publish_status(
        &self,
        started: std::time::Instant,
        tick: DateTime<Utc>,
        probe_errors: Vec<String>,
        summary: &SoakSummary,
    ) {
        let Ok(mut st) = self.status.write() else {
            return;
        };
        st.cycles += 1;
        st.last_cycle_secs = started.elapsed().as_secs_f64();
        st.last_sample_at = Some(tick);
        for e in probe_errors {
            *st.probe_errors.entry(e).or_default() += 1;
        }
        st.state_bytes = self.store.size_bytes();
        st.interval_secs = self.cfg.watch.interval.as_secs_f64();
        st.soak_id = self.soak.meta.id.clone();
        st.soak_name = self.soak.meta.name.clone();
        st.outbox = self.alerting.tally();
        self.write_health_into(&mut st);
        let recorded = self.recorder.progress();
        st.unsaved_cycles = recorded.unsaved as u64;
        st.lost_cycles = recorded.lost;
        st.firing = self
            .alerting
            .firing()
            .map(|t| (t.criterion.clone(), t.severity.as_str().to_string()))
            .collect();
        st.summary = Some(summary.clone());
        st.page =
            status::PageInputs::of(&self.soak_cfg, &self.soak.meta.id, self.rollback.latched());
    }

    /// After the last cycle: let a rollback and an E2E run in flight finish,
    /// a last try at unsaved cycles and alerts, the final report, then a
    /// last delivery round bounded by [`SHUTDOWN_GRACE`], and a clean close
    /// of the state database.
    async fn finish(
        mut self,
        mut summary: SoakSummary,
        clock: &dyn Clock,
        delivery: Delivery,
    ) -> Result<SoakSummary, WatchError> {
        // A rollback in flight finishes (its steps have their own timeouts).
        if let Some(view) = self.rollback.finish(&self.soak.meta.id).await {
            summary.rollback = view;
        }
        // A periodic E2E probe in flight finishes (bounded by its timeout) and removes its rows.
        self.round_trip.finish().await;
        // A last try at what the state database refused during the soak.
        self.recorder.flush(SHUTDOWN_GRACE).await;
        self.noted_recorder();
        self.flush_alerts(clock.now()).await;
        if !self.soak.meta.id.is_empty() {
            let path = self
                .cfg
                .watch
                .reports_dir
                .join(format!("{}-latest.md", self.soak.meta.id));
            match self.write_report(&summary, "latest", &path).await {
                Ok(()) => tracing::info!(report = %path.display(), "final report written"),
                // Stopping is not a failure of the soak: the state database
                // holds the history, and `soakwatch report` renders it later.
                Err(e) => tracing::error!(
                    error = %e,
                    "final report not written; `soakwatch report` renders it from the state database"
                ),
            }
        }
        // The dead-man's switch hears the end (bounded by its timeout).
        if !self.soak.meta.id.is_empty() {
            self.deadman.final_ping(&stopped_text(&summary)).await;
        }
        // The report is out: deliveries get a bounded grace, the rest waits
        // in the outbox for the next start.
        finish_delivery(&self.store, delivery).await;
        let recorded = self.recorder.progress();
        if recorded.unsaved > 0 || recorded.lost > 0 {
            tracing::error!(
                unsaved = recorded.unsaved,
                lost = recorded.lost,
                "stopping with cycles the state database refused"
            );
        }
        self.store.close().await;
        // Hands the lease over at once rather than after it expires.
        if let Some(l) = self.lease.take() {
            l.release().await;
        }
        Ok(summary)
    }

    /// Records a write failure, logging it when the state changes.
    fn note(&mut self, target: WriteTarget, reason: String) {
        if let Change::Failing(r) = self.health.failed(target, reason) {
            tracing::error!(
                target_kind = target.as_str(),
                reason = %r,
                "write failed; retrying on later cycles"
            );
            self.publish_write_health();
        }
    }

    /// Records a write success, logging a recovery.
    fn noted_ok(&mut self, target: WriteTarget) {
        if self.health.succeeded(target) == Change::Recovered {
            tracing::info!(target_kind = target.as_str(), "writes work again");
            self.publish_write_health();
        }
    }

    /// Shows a change of write health on /metrics and /healthz at once,
    /// not at the end of a cycle that may itself be waiting on a write.
    fn publish_write_health(&self) {
        if let Ok(mut st) = self.status.write() {
            self.write_health_into(&mut st);
        }
    }

    fn write_health_into(&self, st: &mut status::DaemonStatus) {
        st.write_failures = WriteTarget::ALL
            .iter()
            .map(|t| (t.as_str().to_string(), self.health.failures(*t)))
            .collect();
        st.write_failing = WriteTarget::ALL
            .iter()
            .filter(|t| self.health.target_failing(**t))
            .map(|t| t.as_str().to_string())
            .collect();
    }

    /// Waits for the recorder to write what this cycle handed over, at
    /// most a budget: half an interval on a shared state (a JetStream slow
    /// to answer, its stream leader being re-elected, must not make the
    /// next sample late), an interval on the local SQLite. What did not land
    /// stays queued in the recorder, which goes on writing it. Only a lost
    /// lease makes this watcher step down.
    async fn record_within_budget(&mut self) {
        if self.soak.meta.id.is_empty() {
            return;
        }
        let budget = match self.store.fence() {
            Some(_) => self.cfg.watch.interval / 2,
            None => self.cfg.watch.interval,
        };
        if !self.recorder.flush(budget).await {
            let waiting = self.recorder.progress().unsaved;
            self.note(
                WriteTarget::State,
                "the state did not take the cycle within its budget; it stays queued".into(),
            );
            tracing::debug!(waiting, "state writes go on after the cycle");
            return;
        }
        self.noted_recorder();
    }

    /// Carries the recorder's last outcome into this process's write health.
    fn noted_recorder(&mut self) {
        match self.recorder.progress().failing {
            Some(reason) => self.note(WriteTarget::State, reason),
            None => self.noted_ok(WriteTarget::State),
        }
    }

    /// Writes the alerting stage's queued steps to the outbox once the
    /// soak is recorded (an outbox row names its soak).
    async fn flush_alerts(&mut self, now: DateTime<Utc>) {
        if self.soak.meta.id.is_empty() || !self.recorder.progress().soak_saved {
            return;
        }
        match self.alerting.flush(&self.soak.meta.id, now).await {
            Ok(()) => self.noted_ok(WriteTarget::Outbox),
            Err(e) => self.note(WriteTarget::Outbox, e.to_string()),
        }
    }

    /// The `soakwatch_self` alert: fires while any write fails, resolves
    /// when all work again.
    async fn self_alert(&mut self, now: DateTime<Utc>) {
        let evidence = self.health.evidence();
        self.alerting.step_named(
            &alert_engine::NamedAlert {
                name: "soakwatch_self",
                failing: self.health.is_failing(),
                severity: crate::alert::model::Severity::Warning,
                summary: if self.health.is_failing() {
                    "soakwatch cannot write part of its own output"
                } else {
                    "soakwatch writes its output again"
                },
                evidence: &evidence,
            },
            (&self.soak.meta.id, &self.soak.meta.name),
            now,
        );
        self.flush_alerts(now).await;
    }

    fn summary(&self) -> SoakSummary {
        let mut s = self
            .running
            .summary(&self.soak.meta, &self.last_verdicts, self.prev.clone());
        s.rollback = self.rollback.view().cloned();
        if let Some(end) = &self.ended {
            s.freeze(end);
        }
        s
    }

    /// The end of the soak: the verdict is frozen and stored, the final
    /// report written, one sign-off sent to every route. A write that fails
    /// is retried by the next start (the soak is still open in the state,
    /// its end has passed, so that start signs off again from the same
    /// history; the notification id is the same, so it is delivered once).
    async fn sign_off(
        &mut self,
        mut summary: SoakSummary,
        end_at: DateTime<Utc>,
        clock: &dyn Clock,
    ) -> SoakSummary {
        // The last cycles go into the record before the end that closes it.
        self.recorder.flush(SHUTDOWN_GRACE).await;
        self.noted_recorder();
        let now = clock.now();
        let end = signoff::freeze(&summary, end_at, now);
        summary.freeze(&end);
        self.ended = Some(end.clone());
        match self.store.end_soak(&self.soak.meta.id, &end).await {
            Ok(()) => self.noted_ok(WriteTarget::State),
            Err(e) => self.note(WriteTarget::State, format!("recording the sign-off: {e}")),
        }
        let path = self
            .cfg
            .watch
            .reports_dir
            .join(format!("{}-final.md", self.soak.meta.id));
        match self.write_report(&summary, "final", &path).await {
            Ok(()) => self.noted_ok(WriteTarget::Report),
            Err(e) => self.note(WriteTarget::Report, format!("the final report: {e}")),
        }
        let n = signoff::notification(&summary, &end, &path.display().to_string());
        match crate::alert::engine::enqueue_notifications(
            &self.store,
            &self.cfg.alerts,
            &self.soak.meta.id,
            std::slice::from_ref(&n),
            &[],
            now,
        )
        .await
        {
            Ok(queued) if queued > 0 => self.wake.notify_one(),
            Ok(_) => {}
            Err(e) => self.note(WriteTarget::Outbox, format!("queueing the sign-off: {e}")),
        }
        tracing::info!(
            soak = %self.soak.meta.id,
            verdict = signoff::verdict_words(end.verdict),
            reason = %end.reason,
            report = %path.display(),
            "soak signed off at T0 + duration: the verdict is frozen"
        );
        self.heartbeat.set_status(format!(
            "soak {} signed off: {} ({})",
            self.soak.meta.id,
            signoff::verdict_words(end.verdict),
            end.reason
        ));
        if let Ok(mut st) = self.status.write() {
            st.summary = Some(summary.clone());
        }
        summary
    }

    /// A restarted `watch` on a soak that was signed off: nothing is
    /// sampled or judged; it says so (and how to start the next soak),
    /// serves the frozen verdict when `at_end = "serve"`, and exits 0.
    async fn after_end(
        mut self,
        end: SoakEnd,
        clock: &dyn Clock,
        shutdown: &CancellationToken,
    ) -> Result<SoakSummary, WatchError> {
        tracing::warn!(
            soak = %self.soak.meta.id,
            ended_at = %end.at,
            verdict = signoff::verdict_words(end.verdict),
            "this soak has ended and its verdict is frozen; to start a new soak: soakwatch watch --new-soak (this one is kept)"
        );
        let summary = self.summary();
        self.publish_status(std::time::Instant::now(), clock.now(), Vec::new(), &summary);
        self.heartbeat.set_status(format!(
            "soak {} ended: {}; start a new one with --new-soak",
            self.soak.meta.id,
            signoff::verdict_words(end.verdict)
        ));
        let serve = self.cfg.watch.at_end == AtEnd::Serve;
        self.store.close().await;
        if let Some(l) = self.lease.take() {
            l.release().await;
        }
        if serve {
            serve_until_shutdown(shutdown).await;
        }
        Ok(summary)
    }

    /// Asks the periodic round-trip stage: a finished run becomes the
    /// `soakwatch_e2e` alert's state; a due one starts.
    async fn periodic_round_trip(&mut self, now: DateTime<Utc>) {
        let Some(cfg) = self.cfg.rollback.as_ref().and_then(|r| r.run.e2e.clone()) else {
            return;
        };
        if let Some(res) = self.round_trip.take_finished(now).await {
            let (ok, summary_line) = (res.ok, res.summary());
            self.alerting.step_named(
                &alert_engine::NamedAlert {
                    name: "soakwatch_e2e",
                    failing: !ok,
                    severity: crate::alert::model::Severity::Critical,
                    summary: if ok {
                        "E2E probe passes again"
                    } else {
                        "E2E probe failed: no row for the synthetic message"
                    },
                    evidence: &summary_line,
                },
                (&self.soak.meta.id, &self.soak.meta.name),
                now,
            );
            self.flush_alerts(now).await;
        }
        self.round_trip.start_if_due(&cfg, self.rollback.running());
        if let (Some(latest), Ok(mut st)) = (self.round_trip.latest(), self.status.write()) {
            st.e2e = Some(latest);
        }
    }

    /// Writes each due checkpoint not yet written. One that cannot be
    /// written stays due and is tried again every cycle until it is written,
    /// once.
    async fn write_due_checkpoints(&mut self, summary: &SoakSummary, now: DateTime<Utc>) {
        if self.soak.meta.id.is_empty() {
            return;
        }
        let mut done = match self.store.checkpoints_done(&self.soak.meta.id).await {
            Ok(d) => d,
            Err(e) => {
                self.note(WriteTarget::State, format!("reading checkpoints: {e}"));
                return;
            }
        };
        done.extend(self.recorder.progress().unmarked);
        // One reason per cycle for all that failed, so a lasting failure is
        // one state (logged once), not a flip between checkpoints.
        let mut failed: Vec<String> = Vec::new();
        let mut first_error = String::new();
        for d in self.cfg.watch.checkpoints.clone() {
            let label = checkpoint_label(d);
            let due = crate::duration::after(self.soak.meta.t0, d);
            if summary.now < due || done.contains(&label) {
                continue;
            }
            let path = self
                .cfg
                .watch
                .reports_dir
                .join(format!("{}-{label}.md", self.soak.meta.id));
            if let Err(e) = self
                .write_report(summary, &format!("{label} checkpoint"), &path)
                .await
            {
                if failed.is_empty() {
                    first_error = e.to_string();
                }
                failed.push(label);
                continue;
            }
            tracing::info!(report = %path.display(), "checkpoint written");
            self.recorder
                .checkpoint(&self.soak.meta.id, &label, path, now);
        }
        if failed.is_empty() {
            self.noted_ok(WriteTarget::Report);
        } else {
            let labels = failed.join(", ");
            self.note(
                WriteTarget::Report,
                format!("checkpoint {labels}: {first_error}"),
            );
        }
    }

    async fn write_report(
        &self,
        summary: &SoakSummary,
        title: &str,
        path: &std::path::Path,
    ) -> Result<(), WatchError> {
        write_summary_report(&self.soak_cfg, summary, title, path)
    }
}

/// After the sign-off: the status page and /metrics keep serving the
/// frozen verdict until SIGTERM (the listener is the caller's).
async fn serve_until_shutdown(shutdown: &CancellationToken) {
    tracing::info!(
        "the soak has ended: serving its frozen verdict until SIGTERM ([watch] at_end = \"serve\")"
    );
    shutdown.cancelled().await;
}

/// The body of the dead-man's switch's last ping: the soak's verdict as the
/// daemon stops.
fn stopped_text(summary: &SoakSummary) -> String {
    if let Some(end) = &summary.edges.ended {
        return format!(
            "soak {} signed off at {}: {} ({}) after {} samples, T0 {}",
            summary.soak_id,
            end.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            signoff::verdict_words(end.verdict),
            end.reason,
            summary.samples,
            summary
                .t0
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
    }
    format!(
        "soakwatch stopped: soak {}: {} ({}) after {} samples, T0 {}, last sample {}",
        summary.soak_id,
        summary.verdict.as_str(),
        summary.verdict_reason,
        summary.samples,
        summary
            .t0
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        summary
            .now
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// The last delivery round of a stopping daemon, bounded by
/// [`SHUTDOWN_GRACE`]; says what stays in the outbox.
async fn finish_delivery(store: &Store, delivery: Delivery) {
    tracing::info!(
        grace_secs = SHUTDOWN_GRACE.as_secs(),
        "delivery grace: a last round for every route"
    );
    let done = delivery.finish(SHUTDOWN_GRACE).await;
    let pending = store.outbox_counts().await.map(|c| c.pending).unwrap_or(0);
    if !done.cut.is_empty() {
        tracing::warn!(
            routes = %done.cut.join(", "),
            pending,
            "delivery grace over: routes still sending were stopped; their notifications stay in the outbox for the next start"
        );
    } else if pending > 0 {
        tracing::warn!(
            pending,
            "notifications stay in the outbox for the next start"
        );
    }
}

#[cfg(test)]
mod grid_tests {
    use super::*;

    #[test]
    fn ticks_saturate_instead_of_wrapping_or_panicking() {
        let t0 = Utc::now();
        let second = chrono::Duration::seconds(1);
        assert_eq!(tick_at(t0, second, 90), t0 + chrono::Duration::seconds(90));
        // Past i32: the old `k as i32` wrapped to a tick in the past.
        let k = i64::from(i32::MAX) + 10;
        assert_eq!(tick_at(t0, second, k), t0 + chrono::Duration::seconds(k));
        assert_eq!(tick_at(t0, second, i64::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(
            tick_at(t0, crate::duration::delta(crate::duration::MAX), 1_000_000),
            DateTime::<Utc>::MAX_UTC
        );
    }
}
