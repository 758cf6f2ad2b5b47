//! What an alert notification carries, independent of how it is delivered.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::verdict::JudgedId;

/// How bad: decides routes and whether the rollback may fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Someone should look.
    Warning,
    /// Someone must act (rollback trigger class).
    Critical,
}

impl Severity {
    /// Lowercase name (also the Alertmanager `severity` label).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Lifecycle state of one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds.
    Firing,
    /// The condition cleared.
    Resolved,
}

impl AlertState {
    /// Lowercase name (Alertmanager's `status`).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One alert inside a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertItem {
    /// Stable name: `soakwatch_<criterion>` or `soakwatch_rollback`, `soakwatch_test`.
    pub name: String,
    /// The criterion (or one consumer's part of one), when the alert is
    /// about one.
    pub criterion: Option<JudgedId>,
    /// Severity.
    pub severity: Severity,
    /// Firing or resolved.
    pub state: AlertState,
    /// When the condition began.
    pub starts_at: DateTime<Utc>,
    /// When it ended (resolved only).
    pub ends_at: Option<DateTime<Utc>>,
    /// One line for a person (subject line material).
    pub summary: String,
    /// The evidence line (no secrets: it comes from the evaluator).
    pub evidence: String,
    /// Observed value, if numeric.
    pub value: Option<f64>,
    /// Target text.
    pub target: String,
}

/// What kind of message a notification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// State changes in one cycle (firing and/or resolved), grouped.
    Change,
    /// Still firing after the repeat interval.
    Repeat,
    /// The rollback's outcome.
    Rollback,
    /// `soakwatch alert test`.
    Test,
    /// The soak reached T0 + duration: its frozen verdict, once, to every
    /// route whatever its filters (the one message a team waits 48 h for).
    SignOff,
}

impl NotificationKind {
    /// Lowercase name (the `kind` field of webhook bodies, outbox ids).
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Change => "change",
            NotificationKind::Repeat => "repeat",
            NotificationKind::Rollback => "rollback",
            NotificationKind::Test => "test",
            NotificationKind::SignOff => "sign_off",
        }
    }
}

/// One message to every matching route: the unit of the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Unique and stable (the outbox key; receivers can de-duplicate on it).
    pub id: String,
    /// Soak id.
    pub soak_id: String,
    /// Soak name.
    pub soak_name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Kind.
    pub kind: NotificationKind,
    /// The alerts it reports.
    pub alerts: Vec<AlertItem>,
}

impl Notification {
    /// The notification `soakwatch alert test` sends down every route: one
    /// firing warning, `soakwatch_test`, about no criterion, naming the
    /// config file (`source`) it was sent with.
    pub fn test(soak_name: &str, source: &std::path::Path, now: DateTime<Utc>) -> Notification {
        Notification {
            id: format!("test-{}-{}", now.timestamp_millis(), std::process::id()),
            soak_id: "test".into(),
            soak_name: soak_name.to_string(),
            created_at: now,
            kind: NotificationKind::Test,
            alerts: vec![AlertItem {
                name: "soakwatch_test".into(),
                criterion: None,
                severity: Severity::Warning,
                state: AlertState::Firing,
                starts_at: now,
                ends_at: None,
                summary: "Test notification from soakwatch: this route works".into(),
                evidence: format!("sent by `soakwatch alert test` with {}", source.display()),
                value: None,
                target: "delivered".into(),
            }],
        }
    }

    /// Highest severity among its firing alerts (among all when none fires).
    pub fn severity(&self) -> Severity {
        // What is firing sets the severity: a critical that resolved in the
        // same group must not make a warning read as critical.
        let firing = self
            .alerts
            .iter()
            .filter(|a| a.state == AlertState::Firing)
            .map(|a| a.severity)
            .max();
        firing
            .or_else(|| self.alerts.iter().map(|a| a.severity).max())
            .unwrap_or(Severity::Warning)
    }

    /// A subject line: "[soakwatch] FIRING critical: dlq, success_rate (phase-b-staging)".
    pub fn subject(&self) -> String {
        let shown = |a: &AlertItem| match &a.criterion {
            Some(c) => c.to_string(),
            None => a.name.clone(),
        };
        let firing: Vec<String> = self
            .alerts
            .iter()
            .filter(|a| a.state == AlertState::Firing)
            .map(shown)
            .collect();
        let resolved: Vec<String> = self
            .alerts
            .iter()
            .filter(|a| a.state == AlertState::Resolved)
            .map(shown)
            .collect();
        let mut parts = Vec::new();
        if !firing.is_empty() {
            parts.push(format!(
                "FIRING {}: {}",
                self.severity().as_str(),
                firing.join(", ")
            ));
        }
        if !resolved.is_empty() {
            parts.push(format!("RESOLVED: {}", resolved.join(", ")));
        }
        let what = match self.kind {
            NotificationKind::Test => "TEST notification".to_string(),
            NotificationKind::Rollback => format!("ROLLBACK {}", parts.join("; ")),
            NotificationKind::Repeat => format!("still {}", parts.join("; ")),
            NotificationKind::Change => parts.join("; "),
            NotificationKind::SignOff => format!(
                "SIGN-OFF {}",
                self.alerts
                    .first()
                    .map(|a| a.summary.as_str())
                    .unwrap_or("")
            ),
        };
        format!(
            "[soakwatch] {what} ({})",
            crate::untrusted::untrusted(&self.soak_name)
        )
    }

    /// Plain-text body for email and chat; text from outside (evidence
    /// quoting labels and log lines, rollback output) is scrubbed and has its
    /// control characters made visible, so it cannot forge body lines.
    pub fn text(&self) -> String {
        use crate::untrusted::untrusted as u;
        let mut out = format!(
            "{}\nsoak {} at {}\n\n",
            self.subject(),
            u(&self.soak_id),
            self.created_at.to_rfc3339()
        );
        for a in &self.alerts {
            out.push_str(&format!(
                "- [{}] {} ({}): {}\n  target: {}\n  evidence: {}\n  since {}{}\n",
                a.state.as_str().to_uppercase(),
                u(&a.name),
                a.severity.as_str(),
                u(&a.summary),
                u(&a.target),
                u(&a.evidence),
                a.starts_at.to_rfc3339(),
                a.ends_at
                    .map(|e| format!(", ended {}", e.to_rfc3339()))
                    .unwrap_or_default()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `alert test`'s notification: one firing warning about no criterion,
    /// saying which config sent it.
    #[test]
    fn the_test_notification_is_one_firing_warning_naming_its_config() {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let n = Notification::test("phase-b", std::path::Path::new("/etc/checks.toml"), now);
        assert_eq!(n.kind, NotificationKind::Test);
        assert_eq!(n.soak_id, "test");
        assert_eq!(n.soak_name, "phase-b");
        assert!(n.id.starts_with("test-0-"), "{}", n.id);
        let [a] = n.alerts.as_slice() else {
            panic!("one alert: {:?}", n.alerts);
        };
        assert_eq!(a.name, "soakwatch_test");
        assert_eq!(a.criterion, None);
        assert_eq!(
            (a.severity, a.state),
            (Severity::Warning, AlertState::Firing)
        );
        assert_eq!(
            a.evidence,
            "sent by `soakwatch alert test` with /etc/checks.toml"
        );
        assert_eq!(
            n.subject(),
            Notification::test("phase-b", std::path::Path::new("x"), now).subject()
        );
    }

    fn item(criterion: &str, severity: Severity, state: AlertState) -> AlertItem {
        AlertItem {
            name: format!("soakwatch_{criterion}"),
            criterion: Some(criterion.parse().expect("a criterion id")),
            severity,
            state,
            starts_at: DateTime::<Utc>::UNIX_EPOCH,
            ends_at: None,
            summary: String::new(),
            evidence: String::new(),
            value: None,
            target: String::new(),
        }
    }

    #[test]
    fn the_subject_names_the_severity_of_what_is_firing() {
        let n = Notification {
            id: "x".into(),
            soak_id: "s".into(),
            soak_name: "phase-b".into(),
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            kind: NotificationKind::Change,
            alerts: vec![
                item("dlq", Severity::Critical, AlertState::Resolved),
                item("consumer_lag", Severity::Warning, AlertState::Firing),
            ],
        };
        assert_eq!(n.severity(), Severity::Warning);
        assert_eq!(
            n.subject(),
            "[soakwatch] FIRING warning: consumer_lag; RESOLVED: dlq (phase-b)"
        );
        let resolved_only = Notification {
            alerts: vec![item("dlq", Severity::Critical, AlertState::Resolved)],
            ..n
        };
        assert_eq!(resolved_only.severity(), Severity::Critical);
    }
}
