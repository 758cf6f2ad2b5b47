//! The bytes each sink sends: pure functions of a [`Notification`] (and, for
//! Alertmanager's API, of "now"), so formats are testable without a network.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use crate::alert::model::{AlertItem, AlertState, Notification};

/// Schema id of [`soakwatch_json`]; bumped on incompatible changes.
pub const SOAKWATCH_SCHEMA: &str = "soakwatch.alert/v1";

/// How far ahead a firing alert's `endsAt` is set when pushed to Alertmanager's API (6 h).
///
/// Alertmanager resolves an alert by itself once `endsAt` passes; Prometheus
/// relies on this and sends `endsAt = now + 4 × its resend interval`.
/// Omitting `endsAt` would be worse: Alertmanager then uses its
/// `resolve_timeout` (5 min by default) and would resolve a soak alert
/// between two of our notifications. soakwatch refreshes a firing alert with
/// every change and every repeat notification, and `alerts.repeat_interval`
/// defaults to 4 h (outbox retries back off to at most 5 min), so 6 h keeps
/// a still-firing alert active in Alertmanager with 2 h to spare. A false
/// "resolved" is the dangerous failure during a soak; the price is that the
/// alerts of a soakwatch that died stay active for up to 6 h (its liveness
/// must be watched separately anyway). Routes to Alertmanager need a repeat
/// interval below this horizon.
pub const AM_RESEND_HORIZON: Duration = Duration::from_secs(6 * 3600);

/// What Alertmanager uses for "no end": the zero `time.Time` of Go.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Receiver name in the Alertmanager-compatible webhook body.
const RECEIVER: &str = "soakwatch";

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A JSON number, or null for NaN/infinity (JSON has no such numbers).
fn number(v: Option<f64>) -> Value {
    v.and_then(serde_json::Number::from_f64)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// The generic JSON body (schema `soakwatch.alert/v1`), for receivers written for soakwatch.
///
/// ```json
/// {
///   "schema": "soakwatch.alert/v1",
///   "id": "n-…",                    // notification id: stable across retries, de-duplicate on it
///   "soak_id": "…", "soak_name": "phase-b-staging",
///   "kind": "change",               // change | repeat | rollback | test
///   "created_at": "2026-11-27T05:37:33.120Z",
///   "severity": "critical",         // highest among the alerts
///   "subject": "[soakwatch] FIRING critical: dlq (phase-b-staging)",
///   "alerts": [{
///     "name": "soakwatch_dlq", "criterion": "dlq",      // criterion may be null
///     "severity": "critical", "state": "firing",         // firing | resolved
///     "starts_at": "…", "ends_at": null,                 // ends_at set when resolved
///     "summary": "…", "evidence": "…",
///     "value": 2.0,                                      // null when not numeric
///     "target": "…"
///   }]
/// }
/// ```
/// Times are RFC 3339 UTC with milliseconds.
pub fn soakwatch_json(n: &Notification) -> Value {
    let alerts: Vec<Value> = n
        .alerts
        .iter()
        .map(|a| {
            json!({
                "name": a.name,
                "criterion": a.criterion,
                "severity": a.severity.as_str(),
                "state": a.state.as_str(),
                "starts_at": ts(a.starts_at),
                "ends_at": a.ends_at.map(ts),
                "summary": a.summary,
                "evidence": a.evidence,
                "value": number(a.value),
                "target": a.target,
            })
        })
        .collect();
    json!({
        "schema": SOAKWATCH_SCHEMA,
        "id": n.id,
        "soak_id": n.soak_id,
        "soak_name": n.soak_name,
        "kind": n.kind.as_str(),
        "created_at": ts(n.created_at),
        "severity": n.severity().as_str(),
        "subject": n.subject(),
        "alerts": alerts,
    })
}

/// The Alertmanager labels of one alert: `alertname`, `criterion` (when the
/// alert is about one), `consumer` (when it is about one consumer:
/// `criterion` is then `consumer_lag/<durable>`), `severity`, `soak` (the
/// soak's name). Labels are an
/// alert's identity in Alertmanager, so nothing that changes between cycles
/// (values, evidence) is a label.
pub fn alertmanager_labels(n: &Notification, a: &AlertItem) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert("alertname".to_string(), a.name.clone());
    if let Some(c) = &a.criterion {
        l.insert("criterion".to_string(), c.to_string());
        if let Some(consumer) = c.consumer() {
            l.insert("consumer".to_string(), consumer.to_string());
        }
    }
    l.insert("severity".to_string(), a.severity.as_str().to_string());
    l.insert("soak".to_string(), n.soak_name.clone());
    l
}

fn annotations(a: &AlertItem) -> BTreeMap<String, String> {
    let mut description = a.evidence.clone();
    if !a.target.is_empty() {
        if !description.is_empty() {
            description.push(' ');
        }
        description.push_str(&format!("(target: {})", a.target));
    }
    let mut m = BTreeMap::new();
    m.insert("summary".to_string(), a.summary.clone());
    m.insert("description".to_string(), description);
    m
}

/// Alertmanager's fingerprint of a label set (FNV-1a 64 over the sorted
/// names and values, each followed by 0xff), as 16 hex digits: the same value
/// Alertmanager shows for the alert, so receivers can correlate both.
pub fn alertmanager_fingerprint(labels: &BTreeMap<String, String>) -> String {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    // BTreeMap iterates in byte order of the names, as Go's sort.Strings does.
    for (k, v) in labels {
        add(k.as_bytes());
        add(&[0xff]);
        add(v.as_bytes());
        add(&[0xff]);
    }
    format!("{h:016x}")
}

/// Entries every map shares with the same value.
fn common(maps: &[BTreeMap<String, String>]) -> BTreeMap<String, String> {
    let Some((first, rest)) = maps.split_first() else {
        return BTreeMap::new();
    };
    first
        .iter()
        .filter(|(k, v)| rest.iter().all(|m| m.get(*k) == Some(*v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn to_object(m: &BTreeMap<String, String>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

/// The end of a resolved alert: never before its start (Alertmanager rejects that).
fn resolved_end(n: &Notification, a: &AlertItem) -> DateTime<Utc> {
    a.ends_at.unwrap_or(n.created_at).max(a.starts_at)
}

/// The body Alertmanager itself POSTs to webhook receivers (version 4), so
/// receivers written for Alertmanager accept soakwatch directly.
///
/// The notification is one group: `groupLabels` holds `soak` and, when all
/// alerts share it, `alertname` (what Alertmanager would send with
/// `group_by: [alertname, soak]`); `groupKey` is `{}:{<groupLabels>}` as
/// Alertmanager formats it for its root route, and thus stable across
/// notifications of the same group. `status` is `firing` while any alert
/// fires. Firing alerts carry `endsAt` `0001-01-01T00:00:00Z`; `fingerprint`
/// is [`alertmanager_fingerprint`] of the labels.
pub fn alertmanager_webhook_json(n: &Notification) -> Value {
    let labels: Vec<BTreeMap<String, String>> =
        n.alerts.iter().map(|a| alertmanager_labels(n, a)).collect();
    let annots: Vec<BTreeMap<String, String>> = n.alerts.iter().map(annotations).collect();
    let common_labels = common(&labels);
    let mut group_labels = BTreeMap::new();
    for key in ["alertname", "soak"] {
        if let Some(v) = common_labels.get(key) {
            group_labels.insert(key.to_string(), v.clone());
        }
    }
    if !group_labels.contains_key("soak") {
        group_labels.insert("soak".to_string(), n.soak_name.clone());
    }
    let group_key = format!(
        "{{}}:{{{}}}",
        group_labels
            .iter()
            .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let any_firing = n.alerts.iter().any(|a| a.state == AlertState::Firing);
    let alerts: Vec<Value> = n
        .alerts
        .iter()
        .zip(labels.iter().zip(annots.iter()))
        .map(|(a, (l, an))| {
            let ends = match a.state {
                AlertState::Firing => GO_ZERO_TIME.to_string(),
                AlertState::Resolved => ts(resolved_end(n, a)),
            };
            json!({
                "status": a.state.as_str(),
                "labels": to_object(l),
                "annotations": to_object(an),
                "startsAt": ts(a.starts_at),
                "endsAt": ends,
                "generatorURL": "",
                "fingerprint": alertmanager_fingerprint(l),
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": if any_firing { "firing" } else { "resolved" },
        "receiver": RECEIVER,
        "groupLabels": to_object(&group_labels),
        "commonLabels": to_object(&common_labels),
        "commonAnnotations": to_object(&common(&annots)),
        "externalURL": "",
        "alerts": alerts,
    })
}

/// [`alertmanager_api_alerts_at`] at the current time.
pub fn alertmanager_api_alerts(n: &Notification) -> Value {
    alertmanager_api_alerts_at(n, Utc::now())
}

/// Alerts for Alertmanager's API v2 (`POST /api/v2/alerts`):
/// `[{labels, annotations, startsAt, endsAt, generatorURL}]`.
///
/// A resolved alert carries `endsAt` = its end (not before its start), which
/// Alertmanager takes as "resolved now". A firing one carries `endsAt` =
/// `now` plus [`AM_RESEND_HORIZON`] (see there why), computed at send time rather than
/// from `created_at`, so a notification retried late from the outbox is not
/// already expired on arrival. `generatorURL` is left out: soakwatch has no
/// page per alert and Alertmanager validates it as a URI.
pub fn alertmanager_api_alerts_at(n: &Notification, now: DateTime<Utc>) -> Value {
    let horizon =
        chrono::Duration::from_std(AM_RESEND_HORIZON).unwrap_or(chrono::Duration::hours(6));
    Value::Array(
        n.alerts
            .iter()
            .map(|a| {
                let ends = match a.state {
                    AlertState::Firing => (now + horizon).max(a.starts_at),
                    AlertState::Resolved => resolved_end(n, a),
                };
                json!({
                    "labels": to_object(&alertmanager_labels(n, a)),
                    "annotations": to_object(&annotations(a)),
                    "startsAt": ts(a.starts_at),
                    "endsAt": ts(ends),
                })
            })
            .collect(),
    )
}

/// Escapes the three characters Slack's mrkdwn treats as markup, after
/// making control characters visible (a line break would start a new bullet).
fn slack_escape(s: &str) -> String {
    crate::untrusted::untrusted(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Slack's limit for `text` is 40 000 characters; stay well below.
const SLACK_MAX_CHARS: usize = 35_000;

/// Slack-compatible incoming-webhook body `{"text": …}` in mrkdwn: the
/// subject in bold, then one bullet per alert with target, evidence and times.
/// Dynamic text is escaped so evidence such as `x < 5` cannot turn into links.
pub fn slack_json(n: &Notification) -> Value {
    let mut text = format!("*{}*\n", slack_escape(&n.subject()));
    text.push_str(&format!(
        "soak {} at {}\n",
        slack_escape(&n.soak_id),
        n.created_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    ));
    for a in &n.alerts {
        let mark = match a.state {
            AlertState::Firing => ":red_circle: *FIRING*",
            AlertState::Resolved => ":large_green_circle: *RESOLVED*",
        };
        text.push_str(&format!(
            "• {mark} `{}` ({}): {}\n",
            slack_escape(&a.name).replace('`', "'"),
            a.severity.as_str(),
            slack_escape(&a.summary)
        ));
        if !a.target.is_empty() {
            text.push_str(&format!("    target: {}\n", slack_escape(&a.target)));
        }
        if !a.evidence.is_empty() {
            text.push_str(&format!("    evidence: {}\n", slack_escape(&a.evidence)));
        }
        let ended = a
            .ends_at
            .map(|e| format!(", ended {}", e.to_rfc3339_opts(SecondsFormat::Secs, true)))
            .unwrap_or_default();
        text.push_str(&format!(
            "    since {}{ended}\n",
            a.starts_at.to_rfc3339_opts(SecondsFormat::Secs, true)
        ));
    }
    json!({ "text": super::truncate_chars(text.trim_end(), SLACK_MAX_CHARS) })
}

/// HMAC-SHA256 of the exact body bytes with `secret`, lowercase hex. Sent as
/// `X-Soakwatch-Signature: sha256=<hex>` so a receiver can verify that the
/// body came from a holder of the shared secret and was not altered.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::model::{NotificationKind, Severity};
    use crate::verdict::{CriterionId, JudgedId};
    use chrono::TimeZone;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn sample() -> Notification {
        Notification {
            id: "n-42".into(),
            soak_id: "soak-1".into(),
            soak_name: "phase-b-staging".into(),
            created_at: t("2026-11-27T05:37:33.120Z"),
            kind: NotificationKind::Change,
            alerts: vec![
                AlertItem {
                    name: "soakwatch_dlq".into(),
                    criterion: Some(JudgedId::Criterion(CriterionId::Dlq)),
                    severity: Severity::Critical,
                    state: AlertState::Firing,
                    starts_at: t("2026-11-27T05:30:00Z"),
                    ends_at: None,
                    summary: "DLQ grew".into(),
                    evidence: "AA_DLQ holds 2 messages (baseline 1: +1) & <rising>".into(),
                    value: Some(2.0),
                    target: "AA_DLQ stays at 1".into(),
                },
                AlertItem {
                    name: "soakwatch_consumer_lag".into(),
                    criterion: Some(JudgedId::Criterion(CriterionId::ConsumerLag)),
                    severity: Severity::Warning,
                    state: AlertState::Resolved,
                    starts_at: t("2026-11-27T05:00:00Z"),
                    ends_at: Some(t("2026-11-27T05:37:00Z")),
                    summary: "lag back to normal".into(),
                    evidence: "lag 0".into(),
                    value: Some(f64::NAN),
                    target: "< 10".into(),
                },
            ],
        }
    }

    /// A consumer's alert is labelled with the same strings as before the
    /// typed id: `criterion` the full id, `consumer` its consumer part.
    #[test]
    fn a_consumer_alerts_labels_keep_their_strings() {
        let mut n = sample();
        let id: JudgedId = "consumer_lag/shared@AA_CORE_HOT".parse().expect("id");
        n.alerts[1].criterion = Some(id);
        let l = alertmanager_labels(&n, &n.alerts[1]);
        assert_eq!(l["criterion"], "consumer_lag/shared@AA_CORE_HOT");
        assert_eq!(l["consumer"], "shared@AA_CORE_HOT");
        let whole = alertmanager_labels(&n, &n.alerts[0]);
        assert_eq!(whole["criterion"], "dlq");
        assert!(!whole.contains_key("consumer"));
        let v = soakwatch_json(&n);
        assert_eq!(
            v["alerts"][1]["criterion"],
            "consumer_lag/shared@AA_CORE_HOT"
        );
    }

    #[test]
    fn soakwatch_body_has_every_documented_field() {
        let v = soakwatch_json(&sample());
        assert_eq!(v["schema"], "soakwatch.alert/v1");
        assert_eq!(v["id"], "n-42");
        assert_eq!(v["soak_id"], "soak-1");
        assert_eq!(v["soak_name"], "phase-b-staging");
        assert_eq!(v["kind"], "change");
        assert_eq!(v["created_at"], "2026-11-27T05:37:33.120Z");
        assert_eq!(v["severity"], "critical");
        assert_eq!(v["subject"], sample().subject());
        let a = &v["alerts"][0];
        for key in [
            "name",
            "criterion",
            "severity",
            "state",
            "starts_at",
            "ends_at",
            "summary",
            "evidence",
            "value",
            "target",
        ] {
            assert!(a.get(key).is_some(), "missing {key}");
        }
        assert_eq!(a["state"], "firing");
        assert_eq!(a["ends_at"], Value::Null);
        assert_eq!(a["value"], 2.0);
        assert_eq!(v["alerts"][1]["value"], Value::Null, "NaN becomes null");
        assert_eq!(v["alerts"][1]["ends_at"], "2026-11-27T05:37:00.000Z");
        // Kind names match the model's serde names.
        assert_eq!(
            json!(NotificationKind::Rollback),
            json!(NotificationKind::Rollback.as_str())
        );
        assert_eq!(
            json!(NotificationKind::Test),
            json!(NotificationKind::Test.as_str())
        );
    }

    #[test]
    fn alertmanager_webhook_shape() {
        let v = alertmanager_webhook_json(&sample());
        assert_eq!(v["version"], "4");
        assert_eq!(v["status"], "firing");
        assert_eq!(v["receiver"], "soakwatch");
        assert_eq!(v["truncatedAlerts"], 0);
        assert_eq!(v["externalURL"], "");
        assert_eq!(v["groupLabels"], json!({"soak": "phase-b-staging"}));
        assert_eq!(v["groupKey"], r#"{}:{soak="phase-b-staging"}"#);
        assert_eq!(v["commonLabels"], json!({"soak": "phase-b-staging"}));
        let a = &v["alerts"][0];
        assert_eq!(a["status"], "firing");
        assert_eq!(
            a["labels"],
            json!({"alertname": "soakwatch_dlq", "criterion": "dlq", "severity": "critical", "soak": "phase-b-staging"})
        );
        assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(a["startsAt"], "2026-11-27T05:30:00.000Z");
        assert_eq!(a["annotations"]["summary"], "DLQ grew");
        assert_eq!(a["fingerprint"].as_str().map(str::len), Some(16));
        assert_eq!(v["alerts"][1]["status"], "resolved");
        assert_eq!(v["alerts"][1]["endsAt"], "2026-11-27T05:37:00.000Z");

        let mut one = sample();
        one.alerts.truncate(1);
        let v = alertmanager_webhook_json(&one);
        assert_eq!(
            v["groupLabels"],
            json!({"alertname": "soakwatch_dlq", "soak": "phase-b-staging"})
        );
        assert_eq!(
            v["groupKey"],
            r#"{}:{alertname="soakwatch_dlq", soak="phase-b-staging"}"#
        );
        assert_eq!(v["commonAnnotations"]["summary"], "DLQ grew");
        one.alerts[0].state = AlertState::Resolved;
        assert_eq!(alertmanager_webhook_json(&one)["status"], "resolved");
    }

    #[test]
    fn fingerprint_matches_alertmanager() {
        // Prometheus' model.LabelSet{"a": "b"}.Fingerprint() == 0x...; computed independently:
        // FNV-1a 64 of "a\xffb\xff".
        let mut l = BTreeMap::new();
        assert_eq!(
            alertmanager_fingerprint(&l),
            "cbf29ce484222325",
            "empty set is the FNV offset"
        );
        l.insert("a".to_string(), "b".to_string());
        let mut h: u64 = 0xcbf29ce484222325;
        for b in b"a\xffb\xff" {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
        assert_eq!(alertmanager_fingerprint(&l), format!("{h:016x}"));
    }

    #[test]
    fn api_alerts_end_times() {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 27, 6, 0, 0)
            .single()
            .expect("time");
        let v = alertmanager_api_alerts_at(&sample(), now);
        assert_eq!(
            v[0]["endsAt"], "2026-11-27T12:00:00.000Z",
            "firing: now + horizon"
        );
        assert_eq!(
            v[1]["endsAt"], "2026-11-27T05:37:00.000Z",
            "resolved: its end"
        );
        assert!(v[0].get("generatorURL").is_none());
        assert_eq!(v[0]["labels"]["criterion"], "dlq");

        let mut bad = sample();
        bad.alerts[1].ends_at = Some(t("2026-11-27T04:00:00Z"));
        let v = alertmanager_api_alerts_at(&bad, now);
        assert_eq!(
            v[1]["endsAt"], v[1]["startsAt"],
            "an end before the start is clamped"
        );
        bad.alerts[1].ends_at = None;
        let v = alertmanager_api_alerts_at(&bad, now);
        assert_eq!(
            v[1]["endsAt"], "2026-11-27T05:37:33.120Z",
            "resolved without end: created_at"
        );
    }

    #[test]
    fn slack_text_is_escaped_mrkdwn() {
        let v = slack_json(&sample());
        let text = v["text"].as_str().expect("text");
        assert!(
            text.starts_with(
                "*[soakwatch] FIRING critical: dlq; RESOLVED: consumer_lag (phase-b-staging)*\n"
            ),
            "{text}"
        );
        assert!(text.contains("&amp; &lt;rising&gt;"), "{text}");
        assert!(
            text.contains(":red_circle: *FIRING* `soakwatch_dlq` (critical): DLQ grew"),
            "{text}"
        );
        assert!(
            text.contains("*RESOLVED* `soakwatch_consumer_lag`"),
            "{text}"
        );
        assert!(text.contains("target: &lt; 10"), "{text}");
        assert_eq!(v.as_object().map(|o| o.len()), Some(1));
    }

    #[test]
    fn signature_is_rfc4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(signature("k", b"body"), signature("k", b"body "));
    }
}
