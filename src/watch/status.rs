//! What the daemon publishes about itself each cycle, for its listener.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::render::chart::ChartThresholds;
use crate::rollback::RollbackMode;
use crate::soak::model::SoakSummary;

/// What the daemon publishes about itself (read by its HTTP listener).
#[derive(Debug, Clone, Default)]
pub struct DaemonStatus {
    /// The latest soak summary.
    pub summary: Option<SoakSummary>,
    /// Cycles done since this process started.
    pub cycles: u64,
    /// Wall time of the last cycle, seconds.
    pub last_cycle_secs: f64,
    /// When the last cycle's samples were taken.
    pub last_sample_at: Option<DateTime<Utc>>,
    /// Probe failures since this process started, per probe.
    pub probe_errors: std::collections::BTreeMap<String, u64>,
    /// A standby's last warm-up round: the probes that failed in it (None
    /// before the first round, or while leading).
    pub standby_failing: Option<Vec<String>>,
    /// State database size, bytes.
    pub state_bytes: u64,
    /// Expected interval, seconds (health: is the last sample fresh?).
    pub interval_secs: f64,
    /// The soak's id (name and T0): published in `soakwatch_soak_info` only.
    pub soak_id: String,
    /// The soak's name from the config: the `soak` label of every series.
    pub soak_name: String,
    /// The outbox as last counted.
    pub outbox: crate::state::store::OutboxTally,
    /// Alerts firing now: (criterion, severity).
    pub firing: Vec<(String, String)>,
    /// Last periodic E2E run: (when, ok, latency ms).
    pub e2e: Option<(DateTime<Utc>, bool, u64)>,
    /// Write failures since this process started, per target (state, report, outbox).
    pub write_failures: std::collections::BTreeMap<String, u64>,
    /// Targets whose last write failed.
    pub write_failing: Vec<String>,
    /// Cycles waiting for the state database to take them.
    pub unsaved_cycles: u64,
    /// Cycles dropped because the state database refused them for too long.
    pub lost_cycles: u64,
    /// What the status page shows beyond the summary.
    pub page: PageInputs,
    /// With a JetStream state: leader or standby (None with SQLite,
    /// where the one watcher always acts).
    pub role: Option<Role>,
    /// Times this watcher became leader since it started.
    pub leader_terms: u64,
}

/// What a watcher sharing a JetStream state does now, as published to its
/// listener (`/healthz`, `soakwatch_leader`). The lease's own view, with its
/// term count, is [`crate::state::lease::Role`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Holds the lease and has resumed the soak: samples, records, acts.
    Leader,
    /// Another watcher leads: this one keeps its connections and campaigns.
    Standby,
}

impl Role {
    /// The role's name, as logs and health lines spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Standby => "standby",
        }
    }
}

/// What the status page (`/`) needs beyond the summary, published each
/// cycle so the listener never reads the config or the state database.
#[derive(Debug, Clone, Default)]
pub struct PageInputs {
    /// Lines the charts draw (None before the first cycle).
    pub chart_thresholds: Option<ChartThresholds>,
    /// Samples further apart than this are not joined in a chart.
    pub chart_gap: chrono::Duration,
    /// `[rollback] mode` (`armed`, `dry_run`, `disarmed`); None without a
    /// `[rollback]` section.
    pub rollback_mode: Option<RollbackMode>,
    /// Whether the once-per-soak rollback latch is taken.
    pub rollback_latched: bool,
    /// The soak's checkpoint reports as the daemon names them, in config
    /// order: (label, path). A report is there once its checkpoint is due
    /// and written; the listener serves only these files.
    pub reports: Vec<(String, PathBuf)>,
}

impl PageInputs {
    /// From the config with the soak's baselines in force (`eff`).
    pub(super) fn of(eff: &Config, soak_id: &str, rollback_latched: bool) -> PageInputs {
        let reports = if soak_id.is_empty() {
            Vec::new()
        } else {
            eff.watch
                .checkpoints
                .iter()
                .map(|d| {
                    let label = super::checkpoint_label(*d);
                    // As `Watch::write_due_checkpoints` names them.
                    let path = eff.watch.reports_dir.join(format!("{soak_id}-{label}.md"));
                    (label, path)
                })
                .collect()
        };
        PageInputs {
            chart_thresholds: Some(super::read::chart_thresholds(eff)),
            chart_gap: super::read::chart_gap(eff),
            rollback_mode: eff.rollback.as_ref().map(|r| r.run.mode),
            rollback_latched,
            reports,
        }
    }
}

/// Shared, read-mostly daemon status.
pub type SharedStatus = Arc<RwLock<DaemonStatus>>;
