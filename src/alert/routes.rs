//! Where alerts go: the routes of `[[alerts.route]]` and the alerting
//! policy of `[alerts]`, as validated data (each route's sink built by
//! [`crate::alert::sink::Sink::from_spec`]). Kept apart from the engine so
//! that the config can hold them without depending on the lifecycle and the
//! outbox above it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::alert::model::{AlertItem, Notification, Severity};
use crate::alert::sink::Sink;
use crate::verdict::CriterionId;

/// One route: which alerts go to which sink.
#[derive(Debug)]
pub struct Route {
    /// Name (the outbox key with the notification id).
    pub name: String,
    /// Severities accepted; empty = all.
    pub severities: Vec<Severity>,
    /// Criteria accepted; empty = all.
    pub criteria: Vec<CriterionId>,
    /// Where it goes.
    pub sink: Sink,
}

impl Route {
    /// Whether this route takes the alert.
    pub fn accepts(&self, a: &AlertItem) -> bool {
        let sev = self.severities.is_empty() || self.severities.contains(&a.severity);
        let crit = self.criteria.is_empty()
            || a.criterion
                .as_ref()
                .is_none_or(|c| self.criteria.contains(&c.criterion()));
        sev && crit
    }

    /// The notification as this route sees it (only the alerts it takes), or None.
    pub fn filter(&self, n: &Notification) -> Option<Notification> {
        let alerts: Vec<AlertItem> = n
            .alerts
            .iter()
            .filter(|a| self.accepts(a))
            .cloned()
            .collect();
        (!alerts.is_empty()).then(|| Notification {
            alerts,
            ..n.clone()
        })
    }
}

/// Alerting policy from `[alerts]`.
#[derive(Debug)]
pub struct AlertsConfig {
    /// Re-notify a firing alert this often.
    pub repeat_interval: Duration,
    /// A criterion unknown this long raises a warning (nobody can see it).
    pub unknown_after: Duration,
    /// Severity per criterion (default warning).
    pub severity: BTreeMap<CriterionId, Severity>,
    /// Longest wait between delivery retries.
    pub max_backoff: Duration,
    /// The routes.
    pub routes: Vec<Route>,
}

impl AlertsConfig {
    /// Severity of a failing criterion.
    pub fn severity_of(&self, id: CriterionId) -> Severity {
        self.severity.get(&id).copied().unwrap_or(Severity::Warning)
    }
}
