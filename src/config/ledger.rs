//! `[ledger]`: the per-message ledger from the stream to the table (issue
//! 23). Its raw form (what the file says) and its validated form, in a file
//! of their own so the section stays one unit. Absent section: no ledger.
//!
//! The defaults are the seed's: the normalize service's events carry
//! `payload.userId` and `payload.date`, the table `hrv_data` is unique on
//! ("userId", date), the DLQ message keeps the original payload and the
//! stand-in records the original sequence in `X-DLQ-Stream-Seq`.

use std::time::Duration;

use serde::Deserialize;

use super::ConsumersConfig;

/// Largest `batch_size`: one row lookup binds one array per key column of
/// this many values, and a reader batch is held in memory.
pub const MAX_LEDGER_BATCH: usize = 10_000;

/// `[ledger]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLedger {
    /// The watched durable (default: the first named consumer).
    #[serde(default)]
    durable: String,
    /// Its stream (default: the named consumer's).
    #[serde(default)]
    stream: String,
    /// The first sequence the ledger accounts for (default: the stream's
    /// first sequence when the soak starts).
    #[serde(default)]
    start_seq: Option<u64>,
    /// How the row's key is taken from a message (default: the seed's).
    #[serde(default = "default_key")]
    key: Vec<RawKeyField>,
    /// The column saying when a row was last written (default: `[database]
    /// updated_column`, else `created_column`).
    #[serde(default)]
    write_time_column: String,
    /// Clock difference allowed between NATS and PostgreSQL.
    #[serde(default = "default_tolerance", with = "crate::duration::bounded")]
    tolerance: Duration,
    /// What the service ignores by design.
    #[serde(default)]
    skip: RawSkip,
    /// How a DLQ entry names its original message.
    #[serde(default)]
    dlq: RawLedgerDlq,
    /// Opt-in: the stream capturing the consumer's advisories.
    #[serde(default)]
    advisories_stream: String,
    /// Messages read and rows looked up per batch.
    #[serde(default = "default_batch_size")]
    batch_size: usize,
    /// Most time one reconcile spends catching up; the rest waits a cycle.
    #[serde(default = "default_cycle_budget", with = "crate::duration::bounded")]
    cycle_budget: Duration,
    /// How many unexplained messages are listed by name.
    #[serde(default = "default_show_unexplained")]
    show_unexplained: usize,
}

/// One `[[ledger.key]]` entry as written.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeyField {
    #[serde(default)]
    column: String,
    #[serde(default)]
    pointer: Option<String>,
    #[serde(default)]
    header: Option<String>,
}

/// `[ledger.skip]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSkip {
    #[serde(default)]
    subjects: Vec<String>,
    #[serde(default)]
    key_prefix: Vec<RawKeyPrefix>,
}

/// One `[[ledger.skip.key_prefix]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeyPrefix {
    #[serde(default)]
    column: String,
    #[serde(default)]
    prefix: String,
}

/// `[ledger.dlq]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLedgerDlq {
    /// DLQ stream (default `[streams] dlq`).
    #[serde(default)]
    stream: String,
    /// Only DLQ messages on this subject are the service's.
    #[serde(default)]
    subject: String,
    /// Header carrying the original stream sequence ("" = none).
    #[serde(default = "default_original_seq_header")]
    original_seq_header: String,
    /// How the key is taken from a DLQ message (default: as `[[ledger.key]]`).
    #[serde(default)]
    key: Option<Vec<RawKeyField>>,
}

impl Default for RawLedgerDlq {
    fn default() -> Self {
        RawLedgerDlq {
            stream: String::new(),
            subject: String::new(),
            original_seq_header: default_original_seq_header(),
            key: None,
        }
    }
}

fn default_key() -> Vec<RawKeyField> {
    [("userId", "/payload/userId"), ("date", "/payload/date")]
        .into_iter()
        .map(|(c, p)| RawKeyField {
            column: c.into(),
            pointer: Some(p.into()),
            header: None,
        })
        .collect()
}
fn default_tolerance() -> Duration {
    Duration::from_secs(2)
}
fn default_batch_size() -> usize {
    1000
}
fn default_cycle_budget() -> Duration {
    Duration::from_secs(10)
}
fn default_show_unexplained() -> usize {
    10
}
fn default_original_seq_header() -> String {
    "X-DLQ-Stream-Seq".into()
}

/// Where one key column's value comes from in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JSON pointer (RFC 6901) into the payload, e.g. `/payload/userId`.
    Pointer(String),
    /// A message header: read with a headers-only consumer, no payloads.
    Header(String),
}

/// One column of the row's key and where its value is in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyField {
    /// The table column.
    pub column: String,
    /// Where the value is.
    pub source: KeySource,
}

/// A key column whose value starting with `prefix` means "ignored by design".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrefixSkip {
    /// Index into [`LedgerConfig::key`].
    pub column: usize,
    /// The prefix (e.g. a test user's).
    pub prefix: String,
}

/// How a DLQ entry is tied to its original message.
#[derive(Debug, Clone)]
pub struct LedgerDlqConfig {
    /// The DLQ stream.
    pub stream: String,
    /// Only its messages on this subject count (None: all).
    pub subject: Option<String>,
    /// Header with the original stream sequence (None: match by key only).
    pub original_seq_header: Option<String>,
    /// How the key is read from a DLQ message, same columns as the ledger's.
    pub key: Vec<KeyField>,
}

/// `[ledger]`, validated: every message of one consumer accounted for.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// The stream the consumer reads.
    pub stream: String,
    /// The durable whose ack floor bounds what is judged.
    pub durable: String,
    /// Its filter subject: only these messages are the service's.
    pub filter_subject: Option<String>,
    /// First sequence accounted for (None: the stream's first at the start).
    pub start_seq: Option<u64>,
    /// The table (from `[database]`).
    pub table: String,
    /// The key columns and their sources, in order.
    pub key: Vec<KeyField>,
    /// When the row was last written: an upsert refreshes it.
    pub write_time_column: String,
    /// A row counts when written no earlier than publish time minus this.
    pub tolerance: Duration,
    /// Subject patterns the service does not write.
    pub skip_subjects: Vec<String>,
    /// Key prefixes the service ignores.
    pub skip_key_prefixes: Vec<KeyPrefixSkip>,
    /// How DLQ entries are matched.
    pub dlq: LedgerDlqConfig,
    /// Opt-in advisory capture stream (None: soakwatch creates nothing).
    pub advisories_stream: Option<String>,
    /// Messages per read and rows per lookup.
    pub batch_size: usize,
    /// Most time one reconcile spends.
    pub cycle_budget: Duration,
    /// A message missing its row is in flight this long after the ack
    /// floor passed it: the consumer's ack_wait plus two intervals.
    pub in_flight_grace: Duration,
    /// Unexplained messages listed by name (the rest are counted).
    pub show_unexplained: usize,
}

type Problems<'a> = &'a mut dyn FnMut(&str, String);

fn key_fields(raw: &[RawKeyField], at: &str, p: Problems<'_>) -> Vec<KeyField> {
    let mut out = Vec::new();
    if raw.is_empty() {
        p(at, "at least one key column is required".into());
    }
    for (i, k) in raw.iter().enumerate() {
        let key = format!("{at}[{i}]");
        if k.column.trim().is_empty() {
            p(&format!("{key}.column"), "must not be empty".into());
        }
        if raw[..i].iter().any(|o| o.column == k.column) {
            p(
                &format!("{key}.column"),
                format!("column `{}` is listed twice", k.column),
            );
        }
        let source = match (&k.pointer, &k.header) {
            (Some(ptr), None) if ptr.is_empty() || ptr.starts_with('/') => {
                KeySource::Pointer(ptr.clone())
            }
            (Some(ptr), None) => {
                p(
                    &format!("{key}.pointer"),
                    format!(
                        "`{ptr}` is not a JSON pointer: it starts with `/` (e.g. /payload/userId)"
                    ),
                );
                continue;
            }
            (None, Some(h)) if !h.trim().is_empty() && !h.contains([':', ' ', '\r', '\n']) => {
                KeySource::Header(h.clone())
            }
            (None, Some(h)) => {
                p(
                    &format!("{key}.header"),
                    format!("`{h}` is not a header name"),
                );
                continue;
            }
            _ => {
                p(
                    &key,
                    "set exactly one of `pointer` (into the JSON payload) or `header`".into(),
                );
                continue;
            }
        };
        out.push(KeyField {
            column: k.column.clone(),
            source,
        });
    }
    out
}

fn valid_stream_name(s: &str) -> bool {
    !s.trim().is_empty() && !s.contains(['.', '*', '>', ' ', '\t'])
}

/// The consumer the ledger follows: `[ledger] durable`/`stream` or the
/// first named consumer; its ack wait sets the in-flight grace.
fn ledger_consumer(
    l: &RawLedger,
    consumers: &ConsumersConfig,
    p: Problems<'_>,
) -> Option<(String, String, String, Duration)> {
    let named = if l.durable.is_empty() {
        consumers.primary()
    } else {
        consumers
            .named
            .iter()
            .find(|c| c.durable == l.durable && (l.stream.is_empty() || c.stream == l.stream))
    };
    match named {
        Some(c) => Some((
            c.stream.clone(),
            c.durable.clone(),
            c.filter_subject.clone(),
            c.ack_wait,
        )),
        None if l.durable.is_empty() => {
            p(
                "ledger.durable",
                "no named consumer to follow: set `durable` to one of `[[consumers]]`".into(),
            );
            None
        }
        None => {
            p(
                "ledger.durable",
                format!("`{}` is not a named consumer of this config", l.durable),
            );
            None
        }
    }
}

/// What `[ledger]` takes from the rest of the file.
pub(super) struct LedgerContext<'a> {
    /// `[database]`: table, created_column, updated_column (None: absent).
    pub(super) database: Option<(&'a str, &'a str, &'a str)>,
    /// `[streams.dlq] name`.
    pub(super) dlq_stream: &'a str,
    /// `[watch] interval`.
    pub(super) interval: Duration,
}

fn skip_prefixes(l: &RawLedger, key: &[KeyField], p: Problems<'_>) -> Vec<KeyPrefixSkip> {
    l.skip
        .key_prefix
        .iter()
        .enumerate()
        .filter_map(
            |(i, s)| match key.iter().position(|k| k.column == s.column) {
                Some(column) if !s.prefix.is_empty() => Some(KeyPrefixSkip {
                    column,
                    prefix: s.prefix.clone(),
                }),
                Some(_) => {
                    p(
                        &format!("ledger.skip.key_prefix[{i}].prefix"),
                        "must not be empty".into(),
                    );
                    None
                }
                None => {
                    p(
                        &format!("ledger.skip.key_prefix[{i}].column"),
                        format!("`{}` is not a column of `ledger.key`", s.column),
                    );
                    None
                }
            },
        )
        .collect()
}

/// Subjects, stream names and sizes: the checks that build nothing.
fn check_values(l: &RawLedger, dlq_stream: &str, p: Problems<'_>) {
    for (i, s) in l.skip.subjects.iter().enumerate() {
        if let Err(e) = crate::subjects::validate_pattern(s) {
            p(&format!("ledger.skip.subjects[{i}]"), e.to_string());
        }
    }
    if !l.dlq.subject.is_empty() {
        if let Err(e) = crate::subjects::validate_pattern(&l.dlq.subject) {
            p("ledger.dlq.subject", e.to_string());
        }
    }
    for (k, v) in [
        ("ledger.dlq.stream", dlq_stream),
        ("ledger.advisories_stream", l.advisories_stream.as_str()),
    ] {
        if !v.is_empty() && !valid_stream_name(v) {
            p(k, format!("`{v}` is not a valid stream name"));
        }
    }
    if l.batch_size == 0 || l.batch_size > MAX_LEDGER_BATCH {
        p(
            "ledger.batch_size",
            format!("must be 1..={MAX_LEDGER_BATCH}"),
        );
    }
    if l.cycle_budget.is_zero() {
        p("ledger.cycle_budget", "must be greater than 0".into());
    }
    if l.start_seq == Some(0) {
        p("ledger.start_seq", "stream sequences start at 1".into());
    }
}

/// Validates `[ledger]` against the rest of the file (it needs the table
/// of `[database]` and a named consumer); None when absent or refused.
pub(super) fn validate_ledger(
    l: &RawLedger,
    ctx: &LedgerContext<'_>,
    consumers: &ConsumersConfig,
    p: Problems<'_>,
) -> Option<LedgerConfig> {
    let Some((table, created, updated)) = ctx.database else {
        p(
            "ledger",
            "needs `[database]`: the table the messages are written to".into(),
        );
        return None;
    };
    let consumer = ledger_consumer(l, consumers, p);
    let key = key_fields(&l.key, "ledger.key", p);
    let dlq_key = match &l.dlq.key {
        Some(k) => key_fields(k, "ledger.dlq.key", p),
        None => key.clone(),
    };
    if dlq_key.len() != key.len() || dlq_key.iter().zip(&key).any(|(a, b)| a.column != b.column) {
        p(
            "ledger.dlq.key",
            "must list the same columns, in the same order, as `ledger.key`".into(),
        );
    }
    let skip_key_prefixes = skip_prefixes(l, &key, p);
    let dlq_stream = if l.dlq.stream.is_empty() {
        ctx.dlq_stream.to_string()
    } else {
        l.dlq.stream.clone()
    };
    check_values(l, &dlq_stream, p);
    let write_time_column = match (l.write_time_column.trim(), updated.trim()) {
        ("", "") => created.to_string(),
        ("", u) => u.to_string(),
        (w, _) => w.to_string(),
    };
    let (stream, durable, filter, ack_wait) = consumer?;
    let opt = |s: &str| (!s.trim().is_empty()).then(|| s.to_string());
    Some(LedgerConfig {
        stream,
        durable,
        filter_subject: opt(&filter),
        start_seq: l.start_seq,
        table: table.to_string(),
        key,
        write_time_column,
        tolerance: l.tolerance,
        skip_subjects: l.skip.subjects.clone(),
        skip_key_prefixes,
        dlq: LedgerDlqConfig {
            stream: dlq_stream,
            subject: opt(&l.dlq.subject),
            original_seq_header: opt(&l.dlq.original_seq_header),
            key: dlq_key,
        },
        advisories_stream: opt(&l.advisories_stream),
        batch_size: l.batch_size,
        cycle_budget: l.cycle_budget,
        in_flight_grace: ack_wait
            .saturating_add(ctx.interval.saturating_mul(2))
            .min(crate::duration::MAX),
        show_unexplained: l.show_unexplained,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Config, ConfigError};
    use super::*;

    fn shipped() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/checks.toml"))
            .unwrap_or_default()
    }

    fn load(extra: &str) -> Result<Config, ConfigError> {
        let text = format!("{}\n{extra}", shipped());
        Config::from_text(Path::new("c.toml"), &text, &|_: &str| None)
    }

    fn problems(extra: &str) -> Vec<(String, Option<usize>, String)> {
        match load(extra) {
            Err(ConfigError::Invalid { problems }) => problems
                .into_iter()
                .map(|p| (p.key, p.line, p.message))
                .collect(),
            Ok(_) => Vec::new(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn absent_means_no_ledger() {
        assert!(load("").expect("valid").ledger.is_none());
    }

    #[test]
    fn an_empty_section_takes_the_seeds_defaults() {
        let c = load("[ledger]\n").expect("valid");
        let l = c.ledger.expect("on");
        assert_eq!(
            (l.stream.as_str(), l.durable.as_str()),
            ("AA_CORE_HOT", "normalize-hrv-durable")
        );
        assert_eq!(
            l.filter_subject.as_deref(),
            Some("athlete-ally.hrv.raw-received")
        );
        assert_eq!(l.table, "hrv_data");
        let cols: Vec<&str> = l.key.iter().map(|k| k.column.as_str()).collect();
        assert_eq!(cols, ["userId", "date"]);
        assert_eq!(
            l.key[0].source,
            KeySource::Pointer("/payload/userId".into())
        );
        // The shipped [database] names updatedAt: an upsert refreshes it.
        assert_eq!(l.write_time_column, "updatedAt");
        assert_eq!(l.dlq.stream, "AA_DLQ");
        assert_eq!(
            l.dlq.original_seq_header.as_deref(),
            Some("X-DLQ-Stream-Seq")
        );
        assert_eq!(l.dlq.key, l.key);
        assert!(
            l.advisories_stream.is_none(),
            "nothing is created unless asked"
        );
        // ack_wait 60 s + two intervals of the shipped [watch].
        assert_eq!(
            l.in_flight_grace,
            Duration::from_secs(60) + c.watch.interval * 2
        );
        assert_eq!(l.batch_size, 1000);
    }

    #[test]
    fn a_full_section_is_read() {
        let l = load(
            r#"[ledger]
tolerance = "5s"
advisories_stream = "SOAKWATCH_ADV"
batch_size = 500
[[ledger.key]]
column = "userId"
header = "X-User"
[[ledger.key]]
column = "date"
pointer = "/payload/date"
[ledger.skip]
subjects = ["athlete-ally.hrv.test.>"]
[[ledger.skip.key_prefix]]
column = "userId"
prefix = "synthetic-"
[ledger.dlq]
subject = "dlq.normalize.hrv.raw-received"
original_seq_header = ""
"#,
        )
        .expect("valid")
        .ledger
        .expect("on");
        assert_eq!(l.key[0].source, KeySource::Header("X-User".into()));
        assert_eq!(l.tolerance, Duration::from_secs(5));
        assert_eq!(l.advisories_stream.as_deref(), Some("SOAKWATCH_ADV"));
        assert_eq!(
            l.skip_key_prefixes,
            vec![KeyPrefixSkip {
                column: 0,
                prefix: "synthetic-".into()
            }]
        );
        assert_eq!(l.dlq.original_seq_header, None);
        assert_eq!(
            l.dlq.subject.as_deref(),
            Some("dlq.normalize.hrv.raw-received")
        );
    }

    #[test]
    fn bad_values_are_refused_with_their_line_and_key() {
        let p = problems(
            r#"[ledger]
durable = "nobody"
batch_size = 0
advisories_stream = "a.b"
[[ledger.key]]
column = "userId"
pointer = "payload/userId"
[[ledger.key]]
column = "date"
[ledger.skip]
subjects = ["a..b"]
[[ledger.skip.key_prefix]]
column = "nope"
prefix = "x"
"#,
        );
        let keys: Vec<&str> = p.iter().map(|(k, _, _)| k.as_str()).collect();
        for want in [
            "ledger.durable",
            "ledger.batch_size",
            "ledger.advisories_stream",
            "ledger.key[0].pointer",
            "ledger.key[1]",
            "ledger.skip.subjects[0]",
            "ledger.skip.key_prefix[0].column",
        ] {
            assert!(keys.contains(&want), "{want} not in {p:?}");
        }
        let (_, line, msg) = p
            .iter()
            .find(|(k, _, _)| k == "ledger.key[0].pointer")
            .expect("pointer");
        assert!(line.is_some(), "located");
        assert!(msg.contains("JSON pointer"), "{msg}");
        let unknown = problems("[ledger]\nbatch = 3\n");
        assert!(
            unknown
                .iter()
                .any(|(k, l, _)| k == "ledger.batch" && l.is_some()),
            "{unknown:?}"
        );
    }

    #[test]
    fn it_needs_a_database() {
        let text = shipped();
        let start = text.find("[database]").expect("database");
        let end = text[start..]
            .find("\n[log]")
            .map(|e| start + e)
            .expect("log");
        let without = format!("{}{}\n[ledger]\n", &text[..start], &text[end..]);
        let p = match Config::from_text(Path::new("c.toml"), &without, &|_: &str| None) {
            Err(ConfigError::Invalid { problems }) => problems,
            other => panic!("{:?}", other.map(|c| c.ledger)),
        };
        assert!(
            p.iter()
                .any(|p| p.key == "ledger" && p.message.contains("[database]")),
            "{p:?}"
        );
    }
}
