//! JetStream advisories for the followed consumer, captured and counted
//! right (opt-in, `[ledger] advisories_stream`).
//!
//! Advisories are core-NATS messages the server drops when nobody listens,
//! so a watcher that restarts or reconnects would lose them: a stream
//! capturing the consumer's `MAX_DELIVERIES`, `MSG_TERMINATED` and
//! `MSG_NAKED` subjects keeps them (its own subscription is the interest
//! that makes the server publish). Counted by message, not by delivery: a
//! poison message with max_deliver 5 is one message (nats-surveyor adds
//! `deliveries` and counts it 5). A termination the server makes itself
//! when an unacknowledged message leaves the stream (deliveries 0 on 2.9;
//! a reason saying it was deleted on 2.10.4+) is a removal, not a DLQ event.
//! On nats-server 2.9.x a pull consumer's MAX_DELIVERIES is only sent when
//! a later pull arrives after ack_wait (fixed in 2.10.22): the consumer's
//! own info is the cross-check.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use serde::Deserialize;

use super::account::AdvisoryKind;
use super::LedgerError;

/// How long captured advisories are kept: longer than any soak (a 48 h
/// soak, restarts, a report written days later), bounded so an opt-in
/// stream cannot grow for ever.
pub const CAPTURE_MAX_AGE: Duration = Duration::from_secs(14 * 24 * 3600);

/// The three advisory subjects of one durable.
pub fn capture_subjects(stream: &str, durable: &str) -> Vec<String> {
    ["MAX_DELIVERIES", "MSG_TERMINATED", "MSG_NAKED"]
        .iter()
        .map(|k| format!("$JS.EVENT.ADVISORY.CONSUMER.{k}.{stream}.{durable}"))
        .collect()
}

/// Creates the capture stream, or adds the subjects to it when it exists
/// (idempotent: a second watcher, or a restart, changes nothing).
pub async fn ensure_capture_stream(
    js: &jetstream::Context,
    name: &str,
    subjects: &[String],
    timeout: Duration,
) -> Result<(), LedgerError> {
    let op = format!("create advisory stream {name}");
    let err = |e: &dyn std::fmt::Display| LedgerError::Nats {
        op: op.clone(),
        detail: e.to_string().lines().next().unwrap_or_default().to_string(),
    };
    let cfg = stream::Config {
        name: name.to_string(),
        subjects: subjects.to_vec(),
        max_age: CAPTURE_MAX_AGE,
        storage: stream::StorageType::File,
        num_replicas: 1,
        ..Default::default()
    };
    let got = tokio::time::timeout(timeout, js.get_or_create_stream(cfg))
        .await
        .map_err(|_| LedgerError::Timeout { op: op.clone() })?
        .map_err(|e| err(&e))?;
    let mut existing = got.cached_info().config.clone();
    let missing: Vec<String> = subjects
        .iter()
        .filter(|s| !existing.subjects.contains(s))
        .cloned()
        .collect();
    if !missing.is_empty() {
        existing.subjects.extend(missing);
        tokio::time::timeout(timeout, js.update_stream(existing))
            .await
            .map_err(|_| LedgerError::Timeout { op: op.clone() })?
            .map_err(|e| err(&e))?;
    }
    Ok(())
}

#[derive(Deserialize)]
struct RawAdvisory {
    #[serde(rename = "type")]
    kind: String,
    stream_seq: u64,
    #[serde(default)]
    deliveries: u64,
    #[serde(default)]
    reason: Option<String>,
}

/// What one advisory says, by its JSON `type`; None for anything else.
pub fn parse_advisory(payload: &[u8]) -> Option<(AdvisoryKind, u64)> {
    let a: RawAdvisory = serde_json::from_slice(payload).ok()?;
    let kind = match a.kind.as_str() {
        "io.nats.jetstream.advisory.v1.max_deliver" => AdvisoryKind::MaxDeliveries,
        "io.nats.jetstream.advisory.v1.nak" => AdvisoryKind::Naked,
        "io.nats.jetstream.advisory.v1.terminated" => {
            let by_server = a.deliveries == 0
                || a.reason
                    .as_deref()
                    .is_some_and(|r| r.to_ascii_lowercase().contains("deleted"));
            if by_server {
                AdvisoryKind::RemovedByServer
            } else {
                AdvisoryKind::Terminated
            }
        }
        _ => return None,
    };
    Some((kind, a.stream_seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_read_from_the_type_and_the_server_termination_is_a_removal() {
        let md = br#"{"type":"io.nats.jetstream.advisory.v1.max_deliver","id":"x","timestamp":"2026-01-01T00:00:00Z","stream":"S","consumer":"C","stream_seq":7,"deliveries":5}"#;
        assert_eq!(parse_advisory(md), Some((AdvisoryKind::MaxDeliveries, 7)));
        let term = |d: u64, reason: &str| {
            format!(
                r#"{{"type":"io.nats.jetstream.advisory.v1.terminated","stream":"S","consumer":"C","consumer_seq":3,"stream_seq":9,"deliveries":{d}{reason}}}"#
            )
        };
        assert_eq!(
            parse_advisory(term(0, "").as_bytes()),
            Some((AdvisoryKind::RemovedByServer, 9))
        );
        assert_eq!(
            parse_advisory(term(2, r#","reason":"Message deleted by stream limits""#).as_bytes()),
            Some((AdvisoryKind::RemovedByServer, 9))
        );
        assert_eq!(
            parse_advisory(term(1, "").as_bytes()),
            Some((AdvisoryKind::Terminated, 9))
        );
        let nak = br#"{"type":"io.nats.jetstream.advisory.v1.nak","stream_seq":4,"deliveries":1}"#;
        assert_eq!(parse_advisory(nak), Some((AdvisoryKind::Naked, 4)));
        assert_eq!(parse_advisory(b"{}"), None);
        assert_eq!(parse_advisory(br#"{"type":"other","stream_seq":1}"#), None);
    }

    #[test]
    fn subjects_name_the_durable() {
        let s = capture_subjects("AA_CORE_HOT", "normalize-hrv-durable");
        assert_eq!(
            s[0],
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.AA_CORE_HOT.normalize-hrv-durable"
        );
        assert_eq!(s.len(), 3);
    }
}
