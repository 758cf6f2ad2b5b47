//! JetStream stream and consumer info: read-only requests, never creates anything.

use std::time::Duration;

use async_nats::jetstream;
use chrono::{DateTime, Utc};

use crate::config::NatsConfig;
use crate::sample::{
    ConsumerListing, ConsumerState, ProbeError, ProbeFailure, ProbeKind, Probed, StreamState,
};

/// Why a NATS connection could not be made (one line, URL redacted); the
/// probes fail with the [`ProbeError`] inside.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct NatsConnectError(pub ProbeError);

/// Connects with the configured auth and TLS. Fails fast (within `timeout`)
/// when the server is down, so `check` reports instead of hanging.
pub async fn connect(
    cfg: &NatsConfig,
    timeout: Duration,
) -> Result<async_nats::Client, NatsConnectError> {
    let shown = cfg.url.shown().to_string();
    let mut opts = async_nats::ConnectOptions::new()
        .connection_timeout(timeout)
        .request_timeout(Some(timeout))
        .name("soakwatch");
    if !cfg.token.is_empty() {
        opts = opts.token(cfg.token.expose().to_string());
    }
    if !cfg.user.is_empty() {
        opts = opts.user_and_password(cfg.user.clone(), cfg.password.expose().to_string());
    }
    if let Some(creds) = &cfg.creds_file {
        opts = opts.credentials_file(creds).await.map_err(|e| {
            NatsConnectError(ProbeError::failed(
                format!("cannot read NATS creds file {}", creds.display()),
                e,
            ))
        })?;
    }
    if cfg.tls_required {
        opts = opts.require_tls(true);
    }
    if let Some(ca) = &cfg.tls_ca_file {
        opts = opts.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&cfg.tls_cert_file, &cfg.tls_key_file) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    let addrs: Vec<async_nats::ServerAddr> = cfg
        .url
        .expose()
        .split(',')
        .map(|s| s.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<_, _>>()
        .map_err(|_| {
            NatsConnectError(ProbeError::BadUrl {
                service: "NATS".into(),
                url: shown.clone(),
            })
        })?;
    match tokio::time::timeout(timeout, opts.connect(addrs)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(NatsConnectError(ProbeError::Connect {
            what: format!("cannot connect to NATS at {shown}"),
            detail: one_line(&e.to_string()),
        })),
        Err(_) => Err(NatsConnectError(ProbeError::timeout(
            format!("cannot connect to NATS at {shown}"),
            timeout,
        ))),
    }
}

fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// async-nats reports times as `time::OffsetDateTime`; the rest of soakwatch uses chrono.
fn to_chrono(t: time::OffsetDateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond())
}

fn enum_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| j.as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// Info of one stream; `Ok(None)` when the server says it does not exist.
pub async fn stream_state(
    js: &jetstream::Context,
    name: &str,
    timeout: Duration,
) -> Probed<Option<StreamState>> {
    let fail = |error| ProbeFailure::new(ProbeKind::Stream, error);
    let res = tokio::time::timeout(timeout, js.get_stream(name)).await;
    let stream = match res {
        Err(_) => return Err(fail(ProbeError::timeout(format!("stream {name}"), timeout))),
        Ok(Err(e)) => {
            if let jetstream::context::GetStreamErrorKind::JetStream(js_err) = e.kind() {
                if js_err.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                    || js_err.code() == 404
                {
                    return Ok(None);
                }
            }
            return Err(fail(ProbeError::failed(
                format!("stream {name}"),
                one_line(&e.to_string()),
            )));
        }
        Ok(Ok(s)) => s,
    };
    let info = stream.cached_info();
    Ok(Some(StreamState {
        name: name.to_string(),
        subjects: info.config.subjects.clone(),
        messages: info.state.messages,
        bytes: info.state.bytes,
        first_seq: info.state.first_sequence,
        last_seq: info.state.last_sequence,
        last_ts: (info.state.last_sequence > 0)
            .then(|| to_chrono(info.state.last_timestamp))
            .flatten(),
        storage: enum_name(&info.config.storage),
        replicas: info.config.num_replicas,
        max_age_secs: info.config.max_age.as_secs_f64(),
        consumer_count: info.state.consumer_count,
    }))
}

/// Every consumer on `stream_name`, read with the paged `CONSUMER.LIST`
/// API (256 per page): one request per page for a whole fleet, not one per
/// consumer. `Ok(None)` when the stream does not exist. The pages are not
/// one atomic view: a consumer created or deleted between two pages may be
/// missed or seen once too often, so names are deduplicated and the next
/// cycle sees it right.
pub async fn consumer_listing(
    js: &jetstream::Context,
    stream_name: &str,
    timeout: Duration,
) -> ConsumerListing {
    use futures::TryStreamExt;
    let what = format!("consumers of {stream_name}");
    let fail = |error| ProbeFailure::new(ProbeKind::Consumer, error);
    let stream = js
        .get_stream_no_info(stream_name)
        .await
        .map_err(|e| fail(ProbeError::failed(what.clone(), e)))?;
    let listing = async {
        let mut pages = stream.consumers();
        let mut out: Vec<ConsumerState> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(info) = pages.try_next().await? {
            if seen.insert(info.name.clone()) {
                out.push(consumer_state_of(&info));
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok::<_, jetstream::stream::ConsumersError>(out)
    };
    match tokio::time::timeout(timeout, listing).await {
        Err(_) => Err(fail(ProbeError::timeout(what, timeout))),
        Ok(Ok(list)) => Ok(Some(list)),
        Ok(Err(e)) => {
            if is_stream_not_found(&e) {
                return Ok(None);
            }
            let text = one_line(&error_chain(&e));
            if text.contains("no responders") {
                return Err(fail(ProbeError::failed(
                    what,
                    "JetStream is not available on the server (no responders)",
                )));
            }
            Err(fail(ProbeError::failed(what, text)))
        }
    }
}

/// The listing's error wraps the server's: its code says "stream not found".
fn is_stream_not_found(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(js) = err.downcast_ref::<jetstream::Error>() {
            if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// The error and its sources in one line (the listing's own says only "other").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(err) = cur {
        let t = err.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = err.source();
    }
    parts.join(": ")
}

fn consumer_state_of(info: &jetstream::consumer::Info) -> ConsumerState {
    ConsumerState {
        stream: info.stream_name.clone(),
        name: info.name.clone(),
        num_pending: info.num_pending,
        num_ack_pending: info.num_ack_pending as u64,
        num_redelivered: info.num_redelivered as u64,
        num_waiting: info.num_waiting as u64,
        delivered_consumer_seq: info.delivered.consumer_sequence,
        delivered_stream_seq: info.delivered.stream_sequence,
        delivered_last_active: info.delivered.last_active.and_then(to_chrono),
        ack_floor_consumer_seq: info.ack_floor.consumer_sequence,
        ack_floor_stream_seq: info.ack_floor.stream_sequence,
        ack_floor_last_active: info.ack_floor.last_active.and_then(to_chrono),
        filter_subject: info.config.filter_subject.clone(),
        ack_policy: enum_name(&info.config.ack_policy),
        ack_wait_secs: info.config.ack_wait.as_secs_f64(),
        max_deliver: info.config.max_deliver,
        max_ack_pending: info.config.max_ack_pending,
        durable_name: info.config.durable_name.clone(),
        deliver_subject: info.config.deliver_subject.clone(),
    }
}
