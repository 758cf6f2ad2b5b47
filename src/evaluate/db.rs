//! The service's database: rows are written while messages succeed
//! (`db_writes`), every success has its row and the derived column is exact
//! (`db_integrity`).

use chrono::DateTime;

use super::{ago, combine, part, Ctx};
use crate::histogram;
use crate::sample::Snapshot;
use crate::verdict::{CriterionId as C, Status, Verdict};

/// The service has no table in the config: nothing to judge, and nothing
/// that blocks a verdict.
fn not_configured(id: C, target: String) -> Verdict {
    Verdict::new(
        id,
        Status::NotConfigured,
        "n/a",
        target,
        "no [database] section in the config",
    )
}

impl Ctx<'_> {
    pub(super) fn db_writes(&self, history: &[Snapshot]) -> Verdict {
        let target = "rows written while messages succeed".to_string();
        if self.cfg.database.is_none() {
            return not_configured(C::DbWrites, target);
        }
        if history.len() < 2 || self.window_secs() <= 0.0 {
            return Verdict::unknown(
                C::DbWrites,
                target,
                "needs two samples: run check with --window (e.g. --window 30s)",
            );
        }
        let db = match &self.last.db {
            Err(f) => return Verdict::unknown(C::DbWrites, target, f.to_string()),
            Ok(d) => d,
        };
        // Work waiting with nothing acknowledged and no row landing is
        // "database writes stop", whether the service answers or not.
        if let Some(rows) = db.written_since(self.first.taken_at) {
            if let Some((status, evidence)) = self.stalled_writes(rows, db) {
                return Verdict::new(C::DbWrites, status, "stalled", target, evidence).with_value(
                    rows as f64,
                    None,
                    None,
                );
            }
        }
        let successes: Vec<f64> = history
            .iter()
            .filter_map(|s| s.metrics.as_ref().ok())
            .map(|m| {
                m.by_result
                    .get(&self.cfg.metrics.success_result)
                    .copied()
                    .unwrap_or(0.0)
            })
            .collect();
        if self.metrics(self.first).is_err() || self.metrics(self.last).is_err() {
            let reason = self
                .metrics(self.last)
                .err()
                .or_else(|| self.metrics(self.first).err())
                .map(ToString::to_string)
                .unwrap_or_default();
            return Verdict::unknown(C::DbWrites, target, reason);
        }
        let (delta, _) = histogram::counter_increase(&successes);
        let Some(rows) = db.written_since(self.first.taken_at) else {
            return Verdict::unknown(
                C::DbWrites,
                target,
                "rows written in the window were not counted",
            );
        };
        let newest = db
            .newest_write
            .map(|t| format!("newest row {}", ago(self.last.taken_at, t)))
            .unwrap_or_else(|| "table empty".into());
        let w = self.window_secs();
        let (status, evidence) = if delta > 0.0 && rows == 0 {
            (
                Status::Fail,
                format!("{delta} message(s) succeeded in the last {w:.1}s but no row was written ({newest})"),
            )
        } else if delta > 0.0 {
            (
                Status::Pass,
                format!("{delta} success(es) and {rows} row(s) written in {w:.1}s ({newest})"),
            )
        } else {
            (
                Status::Pass,
                format!(
                    "no successful message in the {w:.1}s window, nothing to write ({newest}; {} row(s) in the last {})",
                    db.rows_recent,
                    humantime::format_duration(std::time::Duration::from_secs(db.recent_window_secs as u64))
                ),
            )
        };
        Verdict::new(
            C::DbWrites,
            status,
            format!("{rows} rows / {delta} successes in {w:.1}s"),
            target,
            evidence,
        )
        .with_value(rows as f64, None, None)
    }

    /// A stalled consumer: the service's named durables held messages at
    /// both ends of the window (pending or delivered, not acknowledged), no
    /// ack floor moved and no row was written. Pending while the window is
    /// shorter than `watch.for.db_writes` (the daemon's debounce holds it
    /// over the following cycles), a failure once the window alone covers
    /// it. `None` when nothing waits (an idle service), a consumer
    /// acknowledged, a row landed, or a listing is unknown.
    fn stalled_writes(&self, rows: i64, db: &crate::sample::DbState) -> Option<(Status, String)> {
        if rows > 0 || self.window_secs() <= 0.0 {
            return None;
        }
        let mut waiting = 0u64;
        let mut durables = Vec::new();
        for n in &self.cfg.consumers.named {
            let (crate::sample::ConsumerLookup::Found(a), crate::sample::ConsumerLookup::Found(b)) = (
                self.first.consumer(&n.stream, &n.durable),
                self.last.consumer(&n.stream, &n.durable),
            ) else {
                return None;
            };
            let held = |c: &crate::sample::ConsumerState| c.num_pending + c.num_ack_pending;
            if b.ack_floor_stream_seq > a.ack_floor_stream_seq
                || b.ack_floor_consumer_seq > a.ack_floor_consumer_seq
            {
                return None;
            }
            if held(a) > 0 && held(b) > 0 {
                waiting += held(b);
                durables.push(n.durable.as_str());
            }
        }
        if waiting == 0 {
            return None;
        }
        let w = self.window_secs();
        let hold = self
            .cfg
            .watch
            .fail_for
            .get(&C::DbWrites)
            .copied()
            .unwrap_or_default();
        let newest = db
            .newest_write
            .map(|t| format!("newest row {}", ago(self.last.taken_at, t)))
            .unwrap_or_else(|| "table empty".into());
        let text = format!(
            "{waiting} message(s) waiting on {}, none acknowledged and no row written in the {w:.1}s window ({newest})",
            durables.join(", ")
        );
        Some(if w >= hold.as_secs_f64() {
            (Status::Fail, format!("{text}: database writes stopped"))
        } else {
            (
                Status::Pending,
                format!(
                    "{text}: database writes stopped if it lasts {} (watch.for.db_writes)",
                    humantime::format_duration(hold)
                ),
            )
        })
    }

    pub(super) fn db_integrity(&self) -> Verdict {
        let tol = self.cfg.criteria.db_in_flight_tolerance;
        let target = format!("rows written >= successes - {tol} (in flight) since service start; derived column exact");
        if self.cfg.database.is_none() {
            return not_configured(C::DbIntegrity, target);
        }
        let db = match &self.last.db {
            Err(f) => return Verdict::unknown(C::DbIntegrity, target, f.to_string()),
            Ok(d) => d,
        };
        let mut parts = Vec::new();
        let mut missing_val = None;
        match self.metrics(self.last) {
            Err(r) => parts.push(part(Status::Unknown, r.to_string())),
            Ok(ms) => match ms.process_start.and_then(|s| DateTime::from_timestamp_micros((s * 1e6) as i64)) {
                None => parts.push(part(
                    Status::Unknown,
                    "no process start time in /metrics: cannot align rows with the service's counters",
                )),
                Some(ps) => match db.written_since(ps) {
                    None => parts.push(part(Status::Unknown, "rows since the service started were not counted")),
                    Some(rows) => {
                        let success = ms.by_result.get(&self.cfg.metrics.success_result).copied().unwrap_or(0.0);
                        let missing = success - rows as f64;
                        missing_val = Some(missing.max(0.0));
                        let cols = db.write_columns.join("/");
                        if missing > tol as f64 {
                            parts.push(part(
                                Status::Fail,
                                format!(
                                    "{missing} record(s) missing: {success} successes but {rows} rows written (by {cols}) since the service started at {}",
                                    ps.format("%Y-%m-%d %H:%M:%SZ")
                                ),
                            ));
                        } else if -missing > tol as f64 {
                            parts.push(part(
                                Status::Warn,
                                format!("{rows} rows written (by {cols}) but only {success} successes since the service started: another writer?"),
                            ));
                        } else {
                            parts.push(part(
                                Status::Pass,
                                format!("{rows} rows written (by {cols}) for {success} successes since the service started (a row written twice counts once)"),
                            ));
                        }
                    }
                },
            },
        }
        if let Some(der) = self.cfg.database.as_ref().and_then(|d| d.derived.as_ref()) {
            match (db.derived_checked, db.derived_bad) {
                (Some(n), Some(bad)) if bad > 0 => parts.push(part(
                    Status::Fail,
                    format!(
                        "{bad} of the {n} newest rows have {} != {}({}) (max error {})",
                        der.column,
                        der.function.sql(),
                        der.source,
                        db.derived_max_error
                            .map(|e| format!("{e:e}"))
                            .unwrap_or_else(|| "n/a".into())
                    ),
                )),
                (Some(n), Some(_)) => parts.push(part(
                    Status::Pass,
                    format!(
                        "{} = {}({}) within {:e} on the {n} newest rows",
                        der.column,
                        der.function.sql(),
                        der.source,
                        der.tolerance
                    ),
                )),
                _ => parts.push(part(Status::Unknown, "derived-column check did not run")),
            }
        }
        let notes = db.notes.join("; ");
        let (status, mut evidence) = combine(parts);
        if !notes.is_empty() {
            evidence.push_str(&format!(" [note: {notes}]"));
        }
        let observed = match missing_val {
            Some(m) => format!("{m} missing"),
            None => "unknown".into(),
        };
        let v = Verdict::new(C::DbIntegrity, status, observed, target, evidence);
        match missing_val {
            Some(m) => v.with_value(m, None, Some(tol as f64 + 1.0)),
            None => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::evaluate::evaluate;
    use crate::evaluate::fixtures::*;
    use crate::verdict::Status;

    #[test]
    fn writes_stopped_fails_db_writes_and_integrity() {
        let c = cfg();
        let mut h = healthy_window(&c);
        if let Ok(db) = &mut h[1].db {
            db.written_since = vec![(t(-100), 100), (t(0), 0)];
        }
        let v = evaluate(&c, &h);
        assert_eq!(
            not_passing(&v),
            vec![("db_writes", Status::Fail), ("db_integrity", Status::Fail)]
        );
    }

    /// A window in which the service's durable holds `pending` messages at
    /// both ends, nothing succeeds, no ack floor moves and no row is written.
    fn stalled_window(
        c: &crate::config::Config,
        secs: i64,
        pending: u64,
    ) -> Vec<crate::sample::Snapshot> {
        let mut h = vec![healthy(c, 0, 100.0), healthy(c, secs, 100.0)];
        for snap in &mut h {
            if let Some(cs) = first_consumer(snap) {
                cs.num_pending = pending;
            }
        }
        if let Ok(db) = &mut h[1].db {
            db.written_since.push((t(0), 0));
        }
        h
    }

    fn db_writes(v: &[crate::verdict::Verdict]) -> &crate::verdict::Verdict {
        get(v, crate::verdict::CriterionId::DbWrites)
    }

    #[test]
    fn a_stalled_consumer_is_pending_then_failing_database_writes() {
        let c = cfg();
        // The shipped hold is 30 s: a 10 s window of stall is pending…
        let v = evaluate(&c, &stalled_window(&c, 10, 4));
        let w = db_writes(&v);
        assert_eq!(w.status, Status::Pending, "{}", w.evidence);
        assert!(w
            .evidence
            .contains("4 message(s) waiting on normalize-hrv-durable"));
        assert!(w.evidence.contains("if it lasts 30s"), "{}", w.evidence);
        // …a window that covers the hold fails, as a crash would.
        let v = evaluate(&c, &stalled_window(&c, 30, 4));
        let w = db_writes(&v);
        assert_eq!(w.status, Status::Fail, "{}", w.evidence);
        assert!(w.evidence.contains("database writes stopped"));
        // The service is down too: still judged from NATS and the table.
        let mut h = stalled_window(&c, 30, 4);
        h[1].metrics = Err(crate::sample::ProbeFailure::new(
            crate::sample::ProbeKind::Metrics,
            crate::sample::ProbeError::Other("down".into()),
        ));
        assert_eq!(db_writes(&evaluate(&c, &h)).status, Status::Fail);
    }

    #[test]
    fn an_idle_or_progressing_consumer_never_fails_database_writes() {
        let c = cfg();
        // Idle: nothing waits, nothing is written.
        let v = evaluate(&c, &stalled_window(&c, 60, 0));
        assert_eq!(
            db_writes(&v).status,
            Status::Pass,
            "{}",
            db_writes(&v).evidence
        );
        // Work waits but the ack floor moved (slow, not stalled).
        let mut h = stalled_window(&c, 60, 4);
        if let Some(cs) = first_consumer(&mut h[1]) {
            cs.ack_floor_stream_seq += 1;
            cs.ack_floor_consumer_seq += 1;
        }
        assert_eq!(db_writes(&evaluate(&c, &h)).status, Status::Pass);
        // Work arrived within the window only (nothing waited at its start).
        let mut h = stalled_window(&c, 60, 4);
        if let Some(cs) = first_consumer(&mut h[0]) {
            cs.num_pending = 0;
        }
        assert_eq!(db_writes(&evaluate(&c, &h)).status, Status::Pass);
        // A row landed: not stalled.
        let mut h = stalled_window(&c, 60, 4);
        if let Ok(db) = &mut h[1].db {
            db.written_since.retain(|(at, _)| *at != t(0));
            db.written_since.push((t(0), 1));
        }
        assert_eq!(db_writes(&evaluate(&c, &h)).status, Status::Pass);
    }

    #[test]
    fn derived_column_error_fails_integrity() {
        let c = cfg();
        let mut h = healthy_window(&c);
        if let Ok(db) = &mut h[1].db {
            db.derived_bad = Some(3);
            db.derived_max_error = Some(0.5);
        }
        assert_eq!(
            not_passing(&evaluate(&c, &h)),
            vec![("db_integrity", Status::Fail)]
        );
    }
}
