//! `soakwatch ledger explain <seq|key>`: one message's fate, with the
//! evidence a person checks by hand: the stream message (subject, time,
//! key), whether the durable acked it, its advisories (deliveries), its DLQ
//! entry and its row. Read-only, like the ledger.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::postgres::PgConnection;

use super::account::{fate_of, AdvisoryKind, Fate, Key, KeyError, LedgerProgress, StreamEntry};
use super::read_stream::{read_range, RangeRequest, RawMessage};
use super::read_table::TableLookup;
use super::{ack_floor, advisories, dlq_entry, key, rules_of, LedgerError};
use crate::config::LedgerConfig;

/// Most time spent scanning a stream for a key (a key names no sequence,
/// so the stream is read on its filter until then).
pub const KEY_SCAN_BUDGET: Duration = Duration::from_secs(60);
/// At most this many messages of one key are explained.
const MAX_MATCHES: usize = 10;

/// What is asked about: a stream sequence or a row key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A stream sequence.
    Seq(u64),
    /// Key values in `[[ledger.key]]` order.
    Key(Key),
}

/// Why the argument names no message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}`: give a stream sequence (e.g. 42) or the key's {columns} value(s) separated by `,` (e.g. {example})")]
pub struct BadTarget {
    /// The argument.
    pub given: String,
    /// How many key columns there are.
    pub columns: usize,
    /// An example key.
    pub example: String,
}

/// Reads the argument: all digits is a sequence, else the key's values
/// separated by `,` (each optionally `column=value`).
pub fn parse_target(s: &str, cfg: &LedgerConfig) -> Result<Target, BadTarget> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = s.parse::<u64>() {
            return Ok(Target::Seq(n));
        }
    }
    let parts: Vec<String> = s
        .split(',')
        .zip(&cfg.key)
        .map(|(p, k)| {
            let p = p.trim();
            p.strip_prefix(&format!("{}=", k.column))
                .unwrap_or(p)
                .to_string()
        })
        .collect();
    if s.is_empty() || s.split(',').count() != cfg.key.len() {
        return Err(BadTarget {
            given: s.to_string(),
            columns: cfg.key.len(),
            example: cfg
                .key
                .iter()
                .map(|k| format!("{}=…", k.column))
                .collect::<Vec<_>>()
                .join(","),
        });
    }
    Ok(Target::Key(parts))
}

/// One message explained.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The stream message, when the stream still has it.
    pub message: Option<StreamEntry>,
    /// The sequence asked about (or found for a key).
    pub seq: Option<u64>,
    /// The key looked up (from the message, or as given).
    pub key: Option<Key>,
    /// The durable's ack floor now.
    pub ack_floor: u64,
    /// Advisories naming this sequence: (kind, deliveries) in order
    /// (None: no capture stream configured).
    pub advisories: Option<Vec<(AdvisoryKind, u64)>>,
    /// DLQ messages naming it: (DLQ sequence, subject).
    pub dlq: Vec<(u64, String)>,
    /// The row's write time.
    pub row: Option<DateTime<Utc>>,
    /// Its fate now.
    pub fate: Fate,
}

/// Explains a sequence, or every message of a key (the last
/// [`MAX_MATCHES`] found within [`KEY_SCAN_BUDGET`]).
pub async fn explain(
    nats: &async_nats::Client,
    pg: &mut PgConnection,
    cfg: &LedgerConfig,
    target: &Target,
    timeout: Duration,
) -> Result<Vec<Explanation>, LedgerError> {
    let js = jetstream::new(nats.clone());
    let floor = ack_floor(&js, &cfg.stream, &cfg.durable, timeout).await?;
    let cols: Vec<String> = cfg.key.iter().map(|k| k.column.clone()).collect();
    let lookup = TableLookup::prepare(pg, &cfg.table, &cols, &cfg.write_time_column).await?;
    let messages: Vec<(u64, Option<StreamEntry>)> = match target {
        Target::Seq(seq) => vec![(*seq, get_message(&js, cfg, *seq, timeout).await?)],
        Target::Key(k) => scan_for_key(&js, cfg, k, timeout)
            .await?
            .into_iter()
            .map(|e| (e.seq, Some(e)))
            .collect(),
    };
    let dlq = read_all(&js, &cfg.dlq.stream, cfg.dlq.subject.as_deref(), timeout).await?;
    let adv = match &cfg.advisories_stream {
        Some(s) => Some(read_all(&js, s, None, timeout).await?),
        None => None,
    };
    let rules = rules_of(cfg);
    let mut out = Vec::new();
    let keyless = match target {
        Target::Key(k) if messages.is_empty() => vec![(None, Some(k.clone()))],
        _ => Vec::new(),
    };
    let asked = messages
        .iter()
        .map(|(seq, m)| (Some(*seq), m.as_ref().and_then(|m| m.key.clone().ok())))
        .chain(keyless);
    for (i, (seq, key)) in asked.enumerate() {
        let message = seq.and_then(|_| messages.get(i).and_then(|(_, m)| m.clone()));
        let row = match &key {
            Some(k) => lookup
                .rows(pg, std::slice::from_ref(k))
                .await?
                .get(k)
                .copied(),
            None => None,
        };
        let dlq_hits: Vec<(u64, String)> = dlq
            .iter()
            .filter(|m| {
                let e = dlq_entry(cfg, m);
                let same_key = e.key.is_none() || key.is_none() || e.key == key;
                (seq.is_some() && e.original_seq == seq && same_key)
                    || (e.original_seq.is_none() && key.is_some() && e.key == key)
            })
            .map(|m| (m.seq, m.subject.clone()))
            .collect();
        let advisories: Option<Vec<(AdvisoryKind, u64)>> = adv.as_ref().map(|a| {
            a.iter()
                .filter_map(|m| {
                    let (kind, s) = advisories::parse_advisory(&m.payload)?;
                    let d = serde_json::from_slice::<serde_json::Value>(&m.payload)
                        .ok()
                        .and_then(|v| v.get("deliveries").and_then(|d| d.as_u64()))
                        .unwrap_or(0);
                    (Some(s) == seq).then_some((kind, d))
                })
                .collect()
        });
        let mut progress = LedgerProgress::starting_at(floor + 1);
        if advisories
            .iter()
            .flatten()
            .any(|(k, _)| *k == AdvisoryKind::RemovedByServer)
        {
            if let Some(s) = seq {
                progress.removed_seqs.insert(s);
            }
        }
        let fate = match &message {
            Some(m) => fate_of(&progress, m, row, !dlq_hits.is_empty(), &rules),
            None if !dlq_hits.is_empty() => Fate::DeadLettered,
            None if row.is_some() => Fate::Written,
            None if seq.is_some() => Fate::Removed,
            None => Fate::Unexplained,
        };
        out.push(Explanation {
            message,
            seq,
            key,
            ack_floor: floor,
            advisories,
            dlq: dlq_hits,
            row,
            fate,
        });
    }
    Ok(out)
}

async fn get_message(
    js: &jetstream::Context,
    cfg: &LedgerConfig,
    seq: u64,
    timeout: Duration,
) -> Result<Option<StreamEntry>, LedgerError> {
    let op = format!("get message {seq} of {}", cfg.stream);
    let nats = |e: &dyn std::fmt::Display| LedgerError::Nats {
        op: op.clone(),
        detail: e.to_string(),
    };
    let stream = tokio::time::timeout(timeout, js.get_stream(&cfg.stream))
        .await
        .map_err(|_| LedgerError::Timeout { op: op.clone() })?
        .map_err(|e| nats(&e))?;
    let got = tokio::time::timeout(timeout, stream.get_raw_message(seq))
        .await
        .map_err(|_| LedgerError::Timeout { op: op.clone() })?;
    let m = match got {
        Ok(m) => m,
        Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {
            return Ok(None)
        }
        Err(e) => return Err(nats(&e)),
    };
    let published = DateTime::<Utc>::from_timestamp(m.time.unix_timestamp(), m.time.nanosecond())
        .unwrap_or_default();
    Ok(Some(StreamEntry {
        seq,
        published,
        subject: m.subject.to_string(),
        key: key::extract_key(&cfg.key, &m.payload, Some(&m.headers)),
    }))
}

/// Every message of a stream (DLQ and advisory streams are small).
async fn read_all(
    js: &jetstream::Context,
    stream: &str,
    filter: Option<&str>,
    timeout: Duration,
) -> Result<Vec<RawMessage>, LedgerError> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let r = read_range(
            js,
            &RangeRequest {
                stream,
                filter,
                after,
                up_to: u64::MAX,
                max: 1000,
                batch: 1000,
                headers_only: false,
                timeout,
            },
        )
        .await?;
        let done = r.messages.is_empty() || r.covered_to >= r.last_seq;
        after = r.covered_to;
        out.extend(r.messages);
        if done {
            return Ok(out);
        }
    }
}

async fn scan_for_key(
    js: &jetstream::Context,
    cfg: &LedgerConfig,
    wanted: &Key,
    timeout: Duration,
) -> Result<Vec<StreamEntry>, LedgerError> {
    let started = Instant::now();
    let mut found: Vec<StreamEntry> = Vec::new();
    let mut after = 0;
    while started.elapsed() < KEY_SCAN_BUDGET {
        let r = read_range(
            js,
            &RangeRequest {
                stream: &cfg.stream,
                filter: cfg.filter_subject.as_deref(),
                after,
                up_to: u64::MAX,
                max: cfg.batch_size,
                batch: cfg.batch_size,
                headers_only: key::headers_only(&cfg.key),
                timeout,
            },
        )
        .await?;
        for m in &r.messages {
            let k = key::extract_key(&cfg.key, &m.payload, m.headers.as_ref());
            if k.as_ref().is_ok_and(|k| k == wanted) {
                found.push(StreamEntry {
                    seq: m.seq,
                    published: m.published,
                    subject: m.subject.clone(),
                    key: k,
                });
            }
        }
        if found.len() > MAX_MATCHES {
            found.drain(..found.len() - MAX_MATCHES);
        }
        if r.messages.is_empty() || r.covered_to >= r.last_seq {
            break;
        }
        after = r.covered_to;
    }
    Ok(found)
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn show_key(cfg: &LedgerConfig, k: &Result<Key, KeyError>) -> String {
    match k {
        Ok(k) => cfg
            .key
            .iter()
            .zip(k)
            .map(|(f, v)| format!("{}={v}", f.column))
            .collect::<Vec<_>>()
            .join(", "),
        Err(e) => format!("unreadable ({e})"),
    }
}

/// The text `soakwatch ledger explain` prints for one message.
pub fn render(cfg: &LedgerConfig, e: &Explanation) -> String {
    let mut s = String::new();
    let seq = e.seq.map(|q| q.to_string()).unwrap_or_else(|| "?".into());
    match &e.message {
        Some(m) => {
            let _ = writeln!(
                s,
                "message {seq} of {} on {}, published {}",
                cfg.stream,
                m.subject,
                time(m.published)
            );
            let _ = writeln!(s, "  key: {}", show_key(cfg, &m.key));
        }
        None if e.seq.is_some() => {
            let _ = writeln!(
                s,
                "message {seq} of {}: not in the stream (removed, or never stored)",
                cfg.stream
            );
        }
        None => {
            let key = e
                .key
                .clone()
                .map(Ok)
                .unwrap_or(Err(KeyError::Missing(String::new())));
            let _ = writeln!(
                s,
                "no message of {} with key {} (read on its filter)",
                cfg.stream,
                show_key(cfg, &key)
            );
        }
    }
    if let Some(q) = e.seq {
        let acked = if q <= e.ack_floor { "yes" } else { "not yet" };
        let _ = writeln!(
            s,
            "  acked by {}: {acked} (ack floor {})",
            cfg.durable, e.ack_floor
        );
    }
    let _ = match &e.advisories {
        None => writeln!(
            s,
            "  deliveries: not captured (set [ledger] advisories_stream)"
        ),
        Some(a) if a.is_empty() => writeln!(
            s,
            "  deliveries: no advisory (no nak, no termination, max_deliver not reached)"
        ),
        Some(a) => writeln!(
            s,
            "  deliveries: {}",
            a.iter()
                .map(|(k, d)| format!("{} after {d} deliveries", advisory_name(*k)))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    };
    let _ = if e.dlq.is_empty() {
        writeln!(s, "  DLQ: no entry in {}", cfg.dlq.stream)
    } else {
        writeln!(
            s,
            "  DLQ: {}",
            e.dlq
                .iter()
                .map(|(q, subj)| format!("{} seq {q} ({subj})", cfg.dlq.stream))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let _ = match e.row {
        Some(t) => writeln!(
            s,
            "  row: {} {} = {}",
            cfg.table,
            cfg.write_time_column,
            time(t)
        ),
        None => writeln!(s, "  row: none in {}", cfg.table),
    };
    let _ = writeln!(s, "  fate: {}", e.fate.as_str());
    s
}

fn advisory_name(k: AdvisoryKind) -> &'static str {
    match k {
        AdvisoryKind::MaxDeliveries => "max_deliveries",
        AdvisoryKind::RemovedByServer => "terminated by the server (removed)",
        AdvisoryKind::Terminated => "terminated by the service",
        AdvisoryKind::Naked => "nak",
    }
}

/// Why `soakwatch ledger explain` could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The config has no `[ledger]` (or no `[database]`).
    #[error("no [ledger] section in {0}: the ledger is not configured")]
    NotConfigured(String),
    /// The argument names no message.
    #[error(transparent)]
    Target(#[from] BadTarget),
    /// NATS could not be reached.
    #[error("{0}")]
    Connect(String),
    /// A read failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// `soakwatch ledger explain <seq|key>`: connects as the config says and
/// returns the text to print (one block per message).
pub async fn explain_command(
    cfg: &crate::config::Config,
    arg: &str,
) -> Result<String, ExplainError> {
    let (Some(l), Some(db)) = (&cfg.ledger, &cfg.database) else {
        return Err(ExplainError::NotConfigured(
            cfg.source.display().to_string(),
        ));
    };
    let target = parse_target(arg, l)?;
    let timeout = cfg.probe_timeout;
    let nats = crate::probe::nats::connect(&cfg.nats, timeout)
        .await
        .map_err(|e| ExplainError::Connect(e.to_string()))?;
    let opts = crate::probe::db::connect_options(db, timeout)
        .map_err(|e| ExplainError::Connect(e.error.to_string()))?;
    let mut pg = tokio::time::timeout(
        timeout,
        <PgConnection as sqlx::Connection>::connect_with(&opts),
    )
    .await
    .map_err(|_| ExplainError::Connect("database: no connection within the probe timeout".into()))?
    .map_err(|e: sqlx::Error| {
        ExplainError::Connect(format!(
            "database: {}",
            e.to_string().lines().next().unwrap_or_default()
        ))
    })?;
    let found = explain(&nats, &mut pg, l, &target, timeout).await?;
    let _ = sqlx::Connection::close(pg).await;
    Ok(found
        .iter()
        .map(|e| render(l, e))
        .collect::<Vec<_>>()
        .join("\n"))
}
