//! What the daemon publishes about itself each cycle, for its listener.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

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
    /// State database size, bytes.
    pub state_bytes: u64,
    /// Expected interval, seconds (health: is the last sample fresh?).
    pub interval_secs: f64,
    /// The soak's id (name and T0): published in `soakwatch_soak_info` only.
    pub soak_id: String,
    /// The soak's name from the config: the `soak` label of every series.
    pub soak_name: String,
    /// Outbox rows: (pending, delivered, given up).
    pub outbox: (i64, i64, i64),
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
}

/// Shared, read-mostly daemon status.
pub type SharedStatus = Arc<RwLock<DaemonStatus>>;
