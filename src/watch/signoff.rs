//! The soak's end: at T0 + duration the daemon takes its final cycle,
//! freezes the verdict, writes the final report and sends one sign-off
//! notification. Pure parts here (when the end is, what the sign-off says);
//! the daemon in `mod.rs` does the writing.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::alert::model::{AlertItem, AlertState, Notification, NotificationKind, Severity};
use crate::soak::model::{SoakEnd, SoakSummary};
use crate::verdict::Status;

/// T0 + duration, or `None` when that is past what a date can hold (a
/// soak that never ends: `validate` refuses such a duration, this keeps
/// the daemon from panicking on one anyway).
pub fn end_of(t0: DateTime<Utc>, duration: Duration) -> Option<DateTime<Utc>> {
    let d = chrono::Duration::from_std(duration).ok()?;
    t0.checked_add_signed(d)
}

/// The verdict in the words a sign-off uses ("APPROVED", "NOT APPROVED").
pub fn verdict_words(verdict: Status) -> &'static str {
    match verdict {
        Status::Pass => "APPROVED",
        Status::Warn => "APPROVED WITH WARNINGS",
        Status::Fail => "NOT APPROVED (failed)",
        Status::Pending => "NOT APPROVED (failing at the end)",
        Status::Unknown | Status::NotConfigured => "NOT APPROVED (cannot tell)",
    }
}

/// The frozen end of a soak whose window closed at `at`.
pub fn freeze(summary: &SoakSummary, at: DateTime<Utc>, now: DateTime<Utc>) -> SoakEnd {
    SoakEnd {
        at,
        signed_at: now,
        verdict: summary.verdict,
        reason: summary.verdict_reason.clone(),
    }
}

/// The one sign-off notification. Its id is the soak's, so a sign-off
/// redone after a crash queues the same id (delivered once).
pub fn notification(summary: &SoakSummary, end: &SoakEnd, report: &str) -> Notification {
    let severity = match end.verdict {
        Status::Pass | Status::Warn => Severity::Warning,
        _ => Severity::Critical,
    };
    Notification {
        id: format!("{}-sign-off", summary.soak_id),
        soak_id: summary.soak_id.clone(),
        soak_name: summary.name.clone(),
        created_at: end.signed_at,
        kind: NotificationKind::SignOff,
        alerts: vec![AlertItem {
            name: "soakwatch_sign_off".into(),
            criterion: None,
            severity,
            state: AlertState::Firing,
            starts_at: summary.t0,
            ends_at: Some(end.at),
            summary: format!(
                "{} after {}",
                verdict_words(end.verdict),
                humantime::format_duration(Duration::from_secs(
                    (end.at - summary.t0).num_seconds().max(0) as u64
                ))
            ),
            evidence: format!(
                "{}; {} sample(s), {} incident(s), {} service restart(s); report: {report}",
                end.reason,
                summary.samples,
                summary.incidents.len(),
                summary.restarts.len()
            ),
            value: None,
            target: "every criterion holds for the whole soak".into(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_is_t0_plus_duration_and_never_overflows() {
        let t0 = DateTime::from_timestamp(1_790_000_000, 0).expect("valid");
        assert_eq!(
            end_of(t0, Duration::from_secs(48 * 3600)),
            Some(t0 + chrono::Duration::hours(48))
        );
        assert_eq!(end_of(t0, Duration::from_secs(u64::MAX)), None);
        assert_eq!(
            end_of(t0, Duration::from_secs(86_400 * 1_000_000_000)),
            None
        );
    }

    #[test]
    fn only_a_pass_or_a_warning_is_approved() {
        for s in [
            Status::Fail,
            Status::Pending,
            Status::Unknown,
            Status::NotConfigured,
        ] {
            assert!(verdict_words(s).starts_with("NOT APPROVED"), "{s:?}");
        }
        assert_eq!(verdict_words(Status::Pass), "APPROVED");
        assert!(verdict_words(Status::Warn).starts_with("APPROVED"));
    }
}
