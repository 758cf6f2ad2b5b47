//! What the daemon failed to do for itself (write a report, append a cycle,
//! queue an alert), per target.
//!
//! A 48 h soak must not end, or go quiet, because a disk filled or a
//! directory was replaced: every I/O error inside a cycle is recorded here
//! instead of ending the loop. The record turns a stream of identical errors
//! into state changes (logged once each), counts every failure for
//! `/metrics`, and says whether the `soakwatch_self` alert should fire.

use std::collections::BTreeMap;

/// Something the daemon writes every cycle or when due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WriteTarget {
    /// The state database: cycles, snapshots, soak record, thinning.
    State,
    /// Markdown reports and their charts (checkpoints, latest).
    Report,
    /// The alert outbox and alert tracks (in the state database).
    Outbox,
}

impl WriteTarget {
    /// Every target, in a stable order (for `/metrics`).
    pub const ALL: [WriteTarget; 3] =
        [WriteTarget::State, WriteTarget::Report, WriteTarget::Outbox];

    /// The label used in logs and `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteTarget::State => "state",
            WriteTarget::Report => "report",
            WriteTarget::Outbox => "outbox",
        }
    }
}

/// What changed when an outcome was recorded: the caller logs only changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Same state as before: nothing to log.
    Unchanged,
    /// Started failing, or failing for a different reason: log an error.
    Failing(String),
    /// Worked again after failing: log that it recovered.
    Recovered,
}

/// Failures per target: which are failing now, and how many there were.
#[derive(Debug, Clone, Default)]
pub struct SelfHealth {
    failing: BTreeMap<WriteTarget, String>,
    failures: BTreeMap<WriteTarget, u64>,
}

impl SelfHealth {
    /// Records a failure of `target`.
    pub fn failed(&mut self, target: WriteTarget, reason: impl Into<String>) -> Change {
        let reason = reason.into();
        *self.failures.entry(target).or_default() += 1;
        match self.failing.insert(target, reason.clone()) {
            Some(old) if old == reason => Change::Unchanged,
            _ => Change::Failing(reason),
        }
    }

    /// Records a success of `target`.
    pub fn succeeded(&mut self, target: WriteTarget) -> Change {
        match self.failing.remove(&target) {
            Some(_) => Change::Recovered,
            None => Change::Unchanged,
        }
    }

    /// Whether anything is failing now (the `soakwatch_self` alert).
    pub fn is_failing(&self) -> bool {
        !self.failing.is_empty()
    }

    /// Failures of `target` since the process started.
    pub fn failures(&self, target: WriteTarget) -> u64 {
        self.failures.get(&target).copied().unwrap_or(0)
    }

    /// Whether `target` is failing now.
    pub fn target_failing(&self, target: WriteTarget) -> bool {
        self.failing.contains_key(&target)
    }

    /// One line naming every failing target and its reason.
    pub fn evidence(&self) -> String {
        if self.failing.is_empty() {
            return "every write succeeds".into();
        }
        self.failing
            .iter()
            .map(|(t, r)| format!("{}: {r}", t.as_str()))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_failures_change_state_once_and_count_every_time() {
        let mut h = SelfHealth::default();
        assert_eq!(
            h.failed(WriteTarget::Report, "not a directory"),
            Change::Failing("not a directory".into())
        );
        assert_eq!(
            h.failed(WriteTarget::Report, "not a directory"),
            Change::Unchanged
        );
        assert_eq!(
            h.failed(WriteTarget::Report, "disk full"),
            Change::Failing("disk full".into())
        );
        assert_eq!(h.failures(WriteTarget::Report), 3);
        assert!(h.is_failing());
        assert!(
            h.evidence().contains("report: disk full"),
            "{}",
            h.evidence()
        );
        assert_eq!(h.succeeded(WriteTarget::Report), Change::Recovered);
        assert_eq!(h.succeeded(WriteTarget::Report), Change::Unchanged);
        assert!(!h.is_failing());
        assert_eq!(h.failures(WriteTarget::Report), 3, "the count is kept");
    }

    #[test]
    fn targets_fail_and_recover_independently() {
        let mut h = SelfHealth::default();
        h.failed(WriteTarget::State, "database is locked");
        h.failed(WriteTarget::Outbox, "database is locked");
        assert_eq!(h.succeeded(WriteTarget::State), Change::Recovered);
        assert!(h.is_failing());
        assert!(h.target_failing(WriteTarget::Outbox));
        assert!(!h.target_failing(WriteTarget::State));
    }
}
