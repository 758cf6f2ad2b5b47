//! `soakwatch discover` and `soakwatch validate --live`: read-only look-ups
//! of the live system, returned as plain data.
//!
//! This module is the only I/O of both commands: it lists streams and their
//! consumers (never creating anything), scrapes `/metrics` once, reads the
//! table's columns and indexes, and looks at the env and log files. What the
//! data means is decided elsewhere, without I/O: [`choose`] picks the roles
//! and names a checks.toml needs, [`render`] writes it, [`live_check`] compares
//! an existing config with what is there.

pub mod checks_toml;
pub mod choose;
pub mod cli;
pub mod live_check;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream;
use futures::TryStreamExt;
use sqlx::{Connection, Row};

use crate::config::{DatabaseConfig, NatsConfig};
use crate::envfile::EnvFile;
use crate::probe_error::ProbeError;
use crate::promtext::{self, MetricType};
use crate::secret::SecretUrl;

/// How many distinct values of one label are kept (enough to recognise
/// `success`/`dlq`, bounded against high-cardinality labels).
const MAX_LABEL_VALUES: usize = 20;

/// One stream as the server describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamFacts {
    /// Stream name.
    pub name: String,
    /// Subject patterns.
    pub subjects: Vec<String>,
    /// `file` or `memory`.
    pub storage: String,
    /// Replica count.
    pub replicas: usize,
    /// Max age (zero = unlimited).
    pub max_age: Duration,
    /// Messages held now.
    pub messages: u64,
    /// Last sequence written.
    pub last_seq: u64,
    /// Time of the last message, when there is one.
    pub last_ts: Option<chrono::DateTime<chrono::Utc>>,
    /// Its consumers.
    pub consumers: Vec<ConsumerFacts>,
}

/// One consumer of a stream, with the configuration the checks compare.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerFacts {
    /// Consumer name.
    pub name: String,
    /// Durable name; None for an ephemeral consumer.
    pub durable: Option<String>,
    /// Filter subject ("" = none).
    pub filter_subject: String,
    /// explicit, all or none.
    pub ack_policy: String,
    /// Ack wait.
    pub ack_wait: Duration,
    /// Max deliveries (-1 = unlimited).
    pub max_deliver: i64,
    /// Max ack pending.
    pub max_ack_pending: i64,
    /// A push consumer has a deliver subject; a pull consumer none.
    pub deliver_subject: Option<String>,
}

/// What JetStream holds: the selected streams (by filter or by name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NatsFacts {
    /// Streams found, sorted by name.
    pub streams: Vec<StreamFacts>,
    /// Names asked for by name that do not exist.
    pub missing: Vec<String>,
    /// Streams left out by `--streams` (how many).
    pub filtered_out: usize,
}

impl NatsFacts {
    /// The stream called `name`, if it exists.
    pub fn stream(&self, name: &str) -> Option<&StreamFacts> {
        self.streams.iter().find(|s| s.name == name)
    }
}

/// One metric family of the scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyFacts {
    /// Family name (histogram: without `_bucket`).
    pub name: String,
    /// Declared (or inferred) type.
    pub kind: MetricType,
    /// Sample names seen (a counter's is what `messages_counter` names).
    pub sample_names: BTreeSet<String>,
    /// Label name -> up to [`MAX_LABEL_VALUES`] distinct values (`le` and
    /// `quantile` left out: they are the family's shape, not its series).
    pub labels: BTreeMap<String, BTreeSet<String>>,
    /// Number of samples (0: declared by `# TYPE` only, labels unknown).
    pub samples: usize,
    /// `# HELP` text.
    pub help: String,
}

/// What `/metrics` shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsFacts {
    /// Families sorted by name.
    pub families: Vec<FamilyFacts>,
    /// Lines the parser refused.
    pub bad_lines: usize,
}

impl MetricsFacts {
    /// The family called `name`, or the one a sample called `name` belongs to.
    pub fn family(&self, name: &str) -> Option<&FamilyFacts> {
        self.families
            .iter()
            .find(|f| f.name == name)
            .or_else(|| self.families.iter().find(|f| f.sample_names.contains(name)))
    }

    /// The counter a config names by either spelling, its family name or
    /// its `_total` sample name (the probe reads it the same way,
    /// [`crate::promtext::Exposition::counter_sample_name`]): the spelling
    /// as written when it has series, else the other one's counter family.
    pub fn counter_family(&self, name: &str) -> Option<&FamilyFacts> {
        let base = name.strip_suffix("_total").unwrap_or(name);
        let other = if base == name {
            format!("{name}_total")
        } else {
            base.to_string()
        };
        let written = self.family(name);
        let alt = self
            .family(&other)
            .filter(|f| f.kind == MetricType::Counter || other.ends_with("_total"));
        match (written, alt) {
            (Some(w), _) if w.samples > 0 => Some(w),
            (_, Some(a)) if a.samples > 0 => Some(a),
            (w, a) => w.or(a),
        }
    }
}

/// One index of the table: its name and key columns in order.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexFacts {
    /// Index name.
    pub name: String,
    /// Key columns in index order (expression parts left out).
    pub columns: Vec<String>,
}

/// The service's table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableFacts {
    /// Table as asked for.
    pub table: String,
    /// Whether it exists.
    pub exists: bool,
    /// (column, data type) in table order.
    pub columns: Vec<(String, String)>,
    /// Its indexes.
    pub indexes: Vec<IndexFacts>,
    /// When it does not exist: the tables of the current schema (up to 50).
    pub other_tables: Vec<String>,
    /// Chosen by `discover` as the only table there (no `--table` given).
    pub guessed: bool,
}

impl TableFacts {
    /// Data type of a column, if the table has it.
    pub fn column_type(&self, name: &str) -> Option<&str> {
        self.columns
            .iter()
            .find(|(c, _)| c == name)
            .map(|(_, t)| t.as_str())
    }

    /// Whether some index has `column` as its first key column.
    pub fn index_leads_with(&self, column: &str) -> bool {
        self.indexes
            .iter()
            .any(|i| i.columns.first().is_some_and(|c| c == column))
    }
}

/// The service's env file: only keys, and the values of keys that are safe
/// to show (ack waits and modes; anything else may be a secret).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvFacts {
    /// The file.
    pub path: PathBuf,
    /// Every key, in file order.
    pub keys: Vec<String>,
    /// Values of the non-secret keys of interest (`*ACK_WAIT*`, `*_MODE`).
    pub values: BTreeMap<String, String>,
}

/// Whether a file exists, and for the log the last lines it holds (what
/// start-up lines the service writes, so only patterns seen are proposed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileFacts {
    /// The file.
    pub path: PathBuf,
    /// Its size; None when it does not exist or cannot be read.
    pub size: Option<u64>,
    /// Why not, when it cannot be read.
    pub error: Option<String>,
    /// The last lines of a log asked about (at most [`TAIL_BYTES`]); never
    /// written out, only matched.
    pub tail: Vec<String>,
}

/// How much of the end of a log `discover` reads for the lines it proposes patterns from.
pub const TAIL_BYTES: u64 = 256 * 1024;

/// The complete lines of the last `max` bytes of a regular file (empty
/// when it cannot be read: its facts say why elsewhere).
fn tail_lines(path: &Path, max: u64) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok((mut file, meta)) = crate::probe::file::open_regular(path, "log file") else {
        return Vec::new();
    };
    let start = meta.len().saturating_sub(max);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if file.take(max).read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    // A tail that starts mid-line drops that partial line.
    text.lines()
        .skip(usize::from(start > 0))
        .map(str::to_string)
        .collect()
}

/// Everything looked up; each part is its own result, so one unreachable
/// server still leaves the others' facts.
#[derive(Debug, Clone)]
pub struct Observed {
    /// JetStream; Err = why it could not be looked at.
    pub nats: Result<NatsFacts, ProbeError>,
    /// `/metrics`.
    pub metrics: Result<MetricsFacts, ProbeError>,
    /// The table; None when no database was given.
    pub table: Option<Result<TableFacts, ProbeError>>,
    /// The env file, when one was given.
    pub env: Option<Result<EnvFacts, ProbeError>>,
    /// Files whose existence was asked about (log, env, rollback files).
    pub files: Vec<FileFacts>,
}

impl Observed {
    /// Why each look-up that could not be made failed (its `Display` is
    /// the one line shown).
    pub fn failures(&self) -> Vec<&ProbeError> {
        let mut v = Vec::new();
        if let Err(e) = &self.nats {
            v.push(e);
        }
        if let Err(e) = &self.metrics {
            v.push(e);
        }
        if let Some(Err(e)) = &self.table {
            v.push(e);
        }
        if let Some(Err(e)) = &self.env {
            v.push(e);
        }
        v
    }

    /// Facts of a file asked about.
    pub fn file(&self, path: &Path) -> Option<&FileFacts> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// Which streams to look at.
#[derive(Debug, Clone)]
pub enum StreamSelection {
    /// Every stream whose name matches (all when None).
    Matching(Option<regex::Regex>),
    /// Exactly these (validate --live); missing ones are listed as such.
    Named(Vec<String>),
}

/// What to look at and how to reach it.
#[derive(Debug, Clone)]
pub struct LookupTargets {
    /// NATS connection (URL and auth).
    pub nats: NatsConfig,
    /// Streams to describe.
    pub streams: StreamSelection,
    /// The `/metrics` URL.
    pub metrics_url: SecretUrl,
    /// PostgreSQL URL; None: the service has no table to look at.
    pub database_url: Option<SecretUrl>,
    /// The table (`schema.table` or `table`).
    pub table: String,
    /// The env file, if any.
    pub env_file: Option<PathBuf>,
    /// Other files whose existence matters (the log).
    pub files: Vec<PathBuf>,
    /// Per look-up timeout.
    pub timeout: Duration,
}

/// Runs every look-up concurrently; never fails as a whole.
pub async fn lookup(t: &LookupTargets) -> Observed {
    let (nats, metrics, table) = futures::join!(
        lookup_nats(&t.nats, &t.streams, t.timeout),
        lookup_metrics(&t.metrics_url, t.timeout),
        async {
            match &t.database_url {
                Some(url) => Some(lookup_table(url, &t.table, t.timeout).await),
                None => None,
            }
        }
    );
    let env = match &t.env_file {
        Some(p) => Some(lookup_env(p).await),
        None => None,
    };
    let mut files = Vec::new();
    for p in t.env_file.iter().chain(t.files.iter()) {
        if files.iter().any(|f: &FileFacts| &f.path == p) {
            continue;
        }
        let is_env = t.env_file.as_ref() == Some(p);
        files.push(match tokio::fs::metadata(p).await {
            Ok(m) => FileFacts {
                path: p.clone(),
                size: Some(m.len()),
                error: None,
                tail: if is_env {
                    Vec::new()
                } else {
                    let p = p.clone();
                    tokio::task::spawn_blocking(move || tail_lines(&p, TAIL_BYTES))
                        .await
                        .unwrap_or_default()
                },
            },
            Err(e) => FileFacts {
                path: p.clone(),
                size: None,
                error: Some(match e.kind() {
                    std::io::ErrorKind::NotFound => "does not exist".into(),
                    _ => e.to_string(),
                }),
                tail: Vec::new(),
            },
        });
    }
    Observed {
        nats,
        metrics,
        table,
        env,
        files,
    }
}

fn enum_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| j.as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

async fn within<T, E: std::fmt::Display>(
    what: &str,
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ProbeError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ProbeError::failed(what, one_line(&e.to_string()))),
        Err(_) => Err(ProbeError::timeout(what, timeout)),
    }
}

fn stream_facts(info: jetstream::stream::Info) -> StreamFacts {
    StreamFacts {
        name: info.config.name.clone(),
        subjects: info.config.subjects.clone(),
        storage: enum_name(&info.config.storage),
        replicas: info.config.num_replicas,
        max_age: info.config.max_age,
        messages: info.state.messages,
        last_seq: info.state.last_sequence,
        last_ts: (info.state.last_sequence > 0)
            .then(|| {
                chrono::DateTime::from_timestamp(
                    info.state.last_timestamp.unix_timestamp(),
                    info.state.last_timestamp.nanosecond(),
                )
            })
            .flatten(),
        consumers: Vec::new(),
    }
}

fn consumer_facts(info: jetstream::consumer::Info) -> ConsumerFacts {
    ConsumerFacts {
        name: info.name.clone(),
        durable: info.config.durable_name.clone(),
        filter_subject: info.config.filter_subject.clone(),
        ack_policy: enum_name(&info.config.ack_policy),
        ack_wait: info.config.ack_wait,
        max_deliver: info.config.max_deliver,
        max_ack_pending: info.config.max_ack_pending,
        deliver_subject: info.config.deliver_subject.clone(),
    }
}

/// Lists streams (by filter or by name) and each one's consumers. Read-only:
/// `streams()`, `get_stream()` and `consumers()` are info requests.
pub async fn lookup_nats(
    cfg: &NatsConfig,
    selection: &StreamSelection,
    timeout: Duration,
) -> Result<NatsFacts, ProbeError> {
    let client = crate::probe::nats::connect(cfg, timeout)
        .await
        .map_err(|e| e.0)?;
    let js = jetstream::new(client);
    let mut facts = NatsFacts::default();
    match selection {
        StreamSelection::Matching(filter) => {
            let all: Vec<jetstream::stream::Info> = within(
                "listing JetStream streams",
                timeout * 4,
                js.streams().try_collect(),
            )
            .await?;
            for info in all {
                if filter
                    .as_ref()
                    .is_some_and(|re| !re.is_match(&info.config.name))
                {
                    facts.filtered_out += 1;
                    continue;
                }
                facts.streams.push(stream_facts(info));
            }
        }
        StreamSelection::Named(names) => {
            for name in names {
                match tokio::time::timeout(timeout, js.get_stream(name)).await {
                    Err(_) => return Err(ProbeError::timeout(format!("stream {name}"), timeout)),
                    Ok(Ok(s)) => facts.streams.push(stream_facts(s.cached_info().clone())),
                    Ok(Err(e)) => {
                        use jetstream::context::GetStreamErrorKind as K;
                        match e.kind() {
                            K::JetStream(j)
                                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                                    || j.code() == 404 =>
                            {
                                facts.missing.push(name.clone())
                            }
                            _ => {
                                return Err(ProbeError::failed(
                                    format!("stream {name}"),
                                    one_line(&e.to_string()),
                                ))
                            }
                        }
                    }
                }
            }
        }
    }
    for s in &mut facts.streams {
        let stream = js.get_stream_no_info(&s.name).await.map_err(|e| {
            ProbeError::failed(format!("stream {}", s.name), one_line(&e.to_string()))
        })?;
        let consumers: Vec<jetstream::consumer::Info> = within(
            &format!("consumers of {}", s.name),
            timeout,
            stream.consumers().try_collect(),
        )
        .await?;
        s.consumers = consumers.into_iter().map(consumer_facts).collect();
        s.consumers.sort_by(|a, b| a.name.cmp(&b.name));
    }
    facts.streams.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(facts)
}

/// Scrapes `/metrics` once and groups the samples into families.
pub async fn lookup_metrics(
    url: &SecretUrl,
    timeout: Duration,
) -> Result<MetricsFacts, ProbeError> {
    let shown = url.shown();
    let get = format!("GET {shown}");
    let http = crate::probe::metrics::http_client(timeout)
        .map_err(|e| ProbeError::failed("cannot build the HTTP client", e))?;
    let resp = http
        .get(url.expose())
        .send()
        .await
        .map_err(|e| ProbeError::failed(get.clone(), innermost(&e)))?;
    if !resp.status().is_success() {
        return Err(ProbeError::HttpStatus {
            url: shown.to_string(),
            status: resp.status().to_string(),
        });
    }
    let body = resp.text().await.map_err(|e| {
        ProbeError::failed(get.clone(), format_args!("body cut off: {}", innermost(&e)))
    })?;
    let expo = promtext::parse(&body);
    if expo.samples.is_empty() && expo.types.is_empty() {
        return Err(ProbeError::failed(
            get,
            format_args!(
                "not a Prometheus exposition ({} bytes, {} bad lines)",
                body.len(),
                expo.errors.len()
            ),
        ));
    }
    Ok(families_of(&expo))
}

fn innermost(e: &dyn std::error::Error) -> String {
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    one_line(&inner.to_string())
}

/// The pure part of the metrics look-up: samples grouped by family.
pub fn families_of(expo: &promtext::Exposition<'_>) -> MetricsFacts {
    let mut by_name: BTreeMap<String, FamilyFacts> = BTreeMap::new();
    let new_family = |name: &str, kind: MetricType| FamilyFacts {
        name: name.to_string(),
        kind,
        sample_names: BTreeSet::new(),
        labels: BTreeMap::new(),
        samples: 0,
        help: expo.help.get(name).cloned().unwrap_or_default(),
    };
    for (name, kind) in &expo.types {
        by_name.insert(name.clone(), new_family(name, *kind));
    }
    for s in &expo.samples {
        let f = by_name
            .entry(s.family.to_string())
            .or_insert_with(|| new_family(&s.family, s.kind));
        f.samples += 1;
        f.sample_names.insert(s.name.to_string());
        for (k, v) in &s.labels {
            if k == "le" || k == "quantile" {
                continue;
            }
            let values = f.labels.entry(k.to_string()).or_default();
            if values.len() < MAX_LABEL_VALUES {
                values.insert(v.to_string());
            }
        }
    }
    MetricsFacts {
        families: by_name.into_values().collect(),
        bad_lines: expo.errors.len(),
    }
}

/// Columns and indexes of the table (and, when it is missing, the tables there are).
pub async fn lookup_table(
    url: &SecretUrl,
    table: &str,
    timeout: Duration,
) -> Result<TableFacts, ProbeError> {
    let db = DatabaseConfig {
        url: url.clone(),
        table: table.to_string(),
        created_column: String::new(),
        updated_column: None,
        recent_window: Duration::from_secs(600),
        derived: None,
    };
    let opts = crate::probe::db::connect_options(&db, timeout).map_err(|f| f.error)?;
    let mut conn = within(
        &format!("database {}", url.shown()),
        timeout,
        sqlx::PgConnection::connect_with(&opts),
    )
    .await?;
    let res = query_table(&mut conn, table).await;
    let _ = conn.close().await;
    res.map_err(|e| ProbeError::failed(format!("table {table}"), describe_sqlx(&e)))
}

fn describe_sqlx(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => {
            format!("{} ({})", db.message(), db.code().unwrap_or_default())
        }
        other => one_line(&other.to_string()),
    }
}

async fn query_table(
    conn: &mut sqlx::PgConnection,
    table: &str,
) -> Result<TableFacts, sqlx::Error> {
    let (schema, name) = match table.split_once('.') {
        Some((s, t)) => (Some(s.to_string()), t.to_string()),
        None => (None, table.to_string()),
    };
    let columns: Vec<(String, String)> = sqlx::query(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = coalesce($1, current_schema()) AND table_name = $2 \
         ORDER BY ordinal_position",
    )
    .bind(&schema)
    .bind(&name)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
    .collect();
    let mut facts = TableFacts {
        table: table.to_string(),
        exists: !columns.is_empty(),
        columns,
        ..Default::default()
    };
    if !facts.exists {
        facts.other_tables = sqlx::query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = coalesce($1, current_schema()) ORDER BY 1 LIMIT 50",
        )
        .bind(&schema)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
        return Ok(facts);
    }
    let rows = sqlx::query(
        "SELECT c.relname::text, a.attname::text \
         FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid \
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
         WHERE i.indrelid = to_regclass($1) \
         ORDER BY c.relname, k.ord",
    )
    .bind(crate::sql::quote_table(table))
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let (index, column) = (r.get::<String, _>(0), r.get::<String, _>(1));
        match facts.indexes.last_mut() {
            Some(last) if last.name == index => last.columns.push(column),
            _ => facts.indexes.push(IndexFacts {
                name: index,
                columns: vec![column],
            }),
        }
    }
    Ok(facts)
}

/// Keys whose values are shown (never secrets): ack waits and modes.
pub fn is_safe_env_key(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    k.contains("ACK_WAIT") || k.ends_with("_MODE")
}

async fn lookup_env(path: &Path) -> Result<EnvFacts, ProbeError> {
    let text = tokio::fs::read_to_string(path).await.map_err(|e| {
        ProbeError::failed(
            format!("env file {}", path.display()),
            match e.kind() {
                std::io::ErrorKind::NotFound => "does not exist".to_string(),
                _ => e.to_string(),
            },
        )
    })?;
    Ok(env_facts(path, &EnvFile::parse(&text)))
}

/// The pure part of the env look-up: keys, and the safe values.
pub fn env_facts(path: &Path, env: &EnvFile) -> EnvFacts {
    let keys: Vec<String> = env.keys().into_iter().map(str::to_string).collect();
    let values = keys
        .iter()
        .filter(|k| is_safe_env_key(k))
        .filter_map(|k| env.get(k).map(|v| (k.clone(), v.to_string())))
        .collect();
    EnvFacts {
        path: path.to_path_buf(),
        keys,
        values,
    }
}

/// Plain-data fixtures of a live Phase B system, shared by the unit tests.
#[cfg(test)]
pub(crate) mod fixture {
    use super::*;

    /// A stand-in-like `/metrics` body.
    pub(crate) const METRICS: &str = "\
# HELP normalize_hrv_messages_total Total number of HRV messages processed\n\
# TYPE normalize_hrv_messages_total counter\n\
normalize_hrv_messages_total{result=\"success\",stream=\"AA_CORE_HOT\",durable=\"normalize-hrv-durable\"} 10\n\
normalize_hrv_messages_total{result=\"dlq\",stream=\"AA_CORE_HOT\",durable=\"normalize-hrv-durable\"} 0\n\
normalize_hrv_messages_total{result=\"retry\",stream=\"AA_CORE_HOT\",durable=\"normalize-hrv-durable\"} 0\n\
# TYPE http_requests_total counter\n\
http_requests_total{status=\"200\",path=\"/metrics\"} 3\n\
# TYPE normalize_hrv_processing_duration_seconds histogram\n\
normalize_hrv_processing_duration_seconds_bucket{stream=\"AA_CORE_HOT\",durable=\"normalize-hrv-durable\",le=\"0.1\"} 10\n\
normalize_hrv_processing_duration_seconds_bucket{stream=\"AA_CORE_HOT\",durable=\"normalize-hrv-durable\",le=\"+Inf\"} 10\n\
normalize_hrv_processing_duration_seconds_sum{stream=\"AA_CORE_HOT\",durable=\"normalize-hrv-durable\"} 0.5\n\
normalize_hrv_processing_duration_seconds_count{stream=\"AA_CORE_HOT\",durable=\"normalize-hrv-durable\"} 10\n\
# TYPE process_start_time_seconds gauge\n\
process_start_time_seconds 1759338384\n";

    pub(crate) fn stream(name: &str, subjects: &[&str], messages: u64) -> StreamFacts {
        StreamFacts {
            name: name.into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            storage: "file".into(),
            replicas: 1,
            max_age: Duration::from_secs(48 * 3600),
            messages,
            last_seq: messages,
            last_ts: None,
            consumers: Vec::new(),
        }
    }

    pub(crate) fn durable() -> ConsumerFacts {
        ConsumerFacts {
            name: "normalize-hrv-durable".into(),
            durable: Some("normalize-hrv-durable".into()),
            filter_subject: "athlete-ally.hrv.raw-received".into(),
            ack_policy: "explicit".into(),
            ack_wait: Duration::from_secs(60),
            max_deliver: 5,
            max_ack_pending: 1000,
            deliver_subject: None,
        }
    }

    /// The seed's topology, metrics, table and env, all seen.
    pub(crate) fn observed() -> Observed {
        let mut core = stream("AA_CORE_HOT", &["athlete-ally.>", "sleep.*"], 12);
        core.consumers.push(durable());
        let mut legacy = stream("ATHLETE_ALLY_EVENTS", &["legacy.>"], 55);
        legacy.max_age = Duration::ZERO;
        let streams = vec![
            stream("AA_DLQ", &["dlq.>"], 1),
            core,
            stream("AA_VENDOR_HOT", &["vendor.>"], 0),
            legacy,
        ];
        let col = |c: &str, t: &str| (c.to_string(), t.to_string());
        let env = EnvFile::parse(
            "EVENT_STREAM_MODE=multi\nNATS_PASSWORD=hunter2\nNORMALIZE_HRV_ACK_WAIT_MS=60000\n",
        );
        Observed {
            nats: Ok(NatsFacts {
                streams,
                missing: Vec::new(),
                filtered_out: 0,
            }),
            metrics: Ok(families_of(&promtext::parse(METRICS))),
            table: Some(Ok(TableFacts {
                table: "hrv_data".into(),
                exists: true,
                columns: vec![
                    col("id", "bigint"),
                    col("userId", "text"),
                    col("rmssd", "double precision"),
                    col("lnRmssd", "double precision"),
                    col("createdAt", "timestamp without time zone"),
                    col("updatedAt", "timestamp without time zone"),
                ],
                indexes: vec![
                    IndexFacts {
                        name: "hrv_data_createdAt_idx".into(),
                        columns: vec!["createdAt".into()],
                    },
                    IndexFacts {
                        name: "hrv_data_updatedAt_idx".into(),
                        columns: vec!["updatedAt".into()],
                    },
                ],
                other_tables: Vec::new(),
                guessed: false,
            })),
            env: Some(Ok(env_facts(Path::new("/svc/.env"), &env))),
            files: vec![FileFacts {
                path: PathBuf::from("/svc/.env"),
                size: Some(80),
                error: None,
                tail: Vec::new(),
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_group_samples_and_drop_le() {
        let m = families_of(&promtext::parse(fixture::METRICS));
        let c = m.family("normalize_hrv_messages_total").expect("counter");
        assert_eq!(c.kind, MetricType::Counter);
        assert_eq!(c.samples, 3);
        let results: Vec<&str> = c.labels["result"].iter().map(String::as_str).collect();
        assert_eq!(results, ["dlq", "retry", "success"]);
        let h = m
            .family("normalize_hrv_processing_duration_seconds")
            .expect("histogram");
        assert_eq!(h.kind, MetricType::Histogram);
        assert!(!h.labels.contains_key("le"), "{:?}", h.labels);
        assert!(h
            .sample_names
            .contains("normalize_hrv_processing_duration_seconds_bucket"));
        // A sample name finds its family too.
        assert_eq!(
            m.family("normalize_hrv_processing_duration_seconds_count")
                .map(|f| f.name.as_str()),
            Some("normalize_hrv_processing_duration_seconds")
        );
    }

    #[test]
    fn declared_family_without_samples_is_kept() {
        let m = families_of(&promtext::parse(
            "# HELP jobs_total Jobs\n# TYPE jobs_total counter\nup 1\n",
        ));
        let f = m.family("jobs_total").expect("declared family");
        assert_eq!((f.samples, f.help.as_str()), (0, "Jobs"));
    }

    #[test]
    fn env_facts_keep_keys_but_only_safe_values() {
        let env =
            EnvFile::parse("DB_PASSWORD=hunter2\nX_ACK_WAIT_MS=500\nEVENT_STREAM_MODE=multi\n");
        let f = env_facts(Path::new(".env"), &env);
        assert_eq!(
            f.keys,
            ["DB_PASSWORD", "X_ACK_WAIT_MS", "EVENT_STREAM_MODE"]
        );
        assert!(!format!("{f:?}").contains("hunter2"));
        assert_eq!(
            f.values.get("X_ACK_WAIT_MS").map(String::as_str),
            Some("500")
        );
        assert_eq!(
            f.values.get("EVENT_STREAM_MODE").map(String::as_str),
            Some("multi")
        );
    }

    #[test]
    fn index_lead_is_the_first_key_column_only() {
        let t = TableFacts {
            exists: true,
            indexes: vec![IndexFacts {
                name: "i".into(),
                columns: vec!["userId".into(), "createdAt".into()],
            }],
            ..Default::default()
        };
        assert!(t.index_leads_with("userId"));
        assert!(!t.index_leads_with("createdAt"));
    }
}
