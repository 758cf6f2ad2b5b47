//! The per-message ledger (issue 23): every message of the followed
//! consumer, from the start sequence up to its ack floor, accounted for
//! from the stream to the table by its stream sequence, the one key every
//! message keeps for life.
//!
//! A self-contained stage: [`Ledger::new`] from `[ledger]`,
//! [`Ledger::reconcile`] once per cycle with the consumer's ack floor, a
//! [`LedgerReport`] out and a [`LedgerProgress`] to store, so a restart (or
//! a standby) resumes with [`Ledger::resume`]. The accounting itself is
//! pure ([`account`]); the readers are read-only and leave nothing behind,
//! except the advisory capture stream when `advisories_stream` opts in.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnection;

use crate::config::LedgerConfig;

pub mod account;
pub mod advisories;
pub mod explain;
pub mod key;
pub mod read_stream;
pub mod read_table;

pub use account::{
    AdvisoryCounts, Fate, FateCounts, Key, KeyError, LedgerProgress, Rules, StreamEntry,
    Unexplained,
};
pub use read_table::IndexEvidence;

use account::{CycleInput, DlqEntry};
use read_stream::{RangeRead, RangeReader, RangeRequest};
use read_table::TableLookup;

/// Why a reconcile could not finish; the progress made before is kept.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// A NATS request failed.
    #[error("NATS: {op}: {detail}")]
    Nats {
        /// What was being done.
        op: String,
        /// The client's error, one line.
        detail: String,
    },
    /// A PostgreSQL query failed.
    #[error("PostgreSQL: {op}: {detail}")]
    Db {
        /// What was being done.
        op: String,
        /// The driver's error, one line, without the URL.
        detail: String,
    },
    /// No answer within the probe timeout.
    #[error("{op}: no answer in time")]
    Timeout {
        /// What was being done.
        op: String,
    },
    /// A configured column is not in the table.
    #[error("table {table} has no column {column}")]
    NoColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
}

/// One cycle's account, for the criterion and every output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerReport {
    /// Final fates since the ledger's start.
    pub counts: FateCounts,
    /// Messages judged but in flight (row missing, grace running).
    pub in_flight: u64,
    /// The first unexplained messages, by sequence, key and publish time.
    pub unexplained: Vec<Unexplained>,
    /// Unexplained messages beyond those listed.
    pub unexplained_more: u64,
    /// Every sequence up to here is judged.
    pub reconciled_up_to: u64,
    /// The consumer's ack floor this cycle (the bound of what is judged).
    pub ack_floor: u64,
    /// Whether the reconcile reached the ack floor within its budget.
    pub caught_up: bool,
    /// Messages read this cycle.
    pub read: u64,
    /// Whether an index serves the key lookup (None before the first lookup).
    pub index: Option<IndexEvidence>,
    /// Messages named by advisories (None when not captured).
    pub advisories: Option<AdvisoryCounts>,
}

impl LedgerReport {
    /// Whether the ledger proves every judged message: no unexplained one.
    pub fn passes(&self) -> bool {
        self.counts.unexplained == 0
    }
}

/// The ledger of one consumer: its config, its progress and the prepared
/// table lookup.
#[derive(Debug)]
pub struct Ledger {
    cfg: LedgerConfig,
    rules: Rules,
    progress: Option<LedgerProgress>,
    lookup: Option<TableLookup>,
    capture_ready: bool,
}

/// The accounting rules of a config.
pub fn rules_of(cfg: &LedgerConfig) -> Rules {
    Rules {
        tolerance: crate::duration::delta(cfg.tolerance),
        grace: crate::duration::delta(cfg.in_flight_grace),
        skip_subjects: cfg.skip_subjects.clone(),
        skip_key_prefixes: cfg
            .skip_key_prefixes
            .iter()
            .map(|s| (s.column, s.prefix.clone()))
            .collect(),
        show_unexplained: cfg.show_unexplained,
    }
}

impl Ledger {
    /// A ledger that starts at `[ledger] start_seq`, or at the stream's
    /// first sequence on its first reconcile.
    pub fn new(cfg: LedgerConfig) -> Ledger {
        Ledger {
            rules: rules_of(&cfg),
            progress: cfg.start_seq.map(LedgerProgress::starting_at),
            cfg,
            lookup: None,
            capture_ready: false,
        }
    }

    /// A ledger whose first judged sequence is `first_seq`: the daemon
    /// passes the stream's last sequence at T0 plus one, so messages from
    /// before the soak are not judged (`[ledger] start_seq` overrides it).
    pub fn starting_at(cfg: LedgerConfig, first_seq: u64) -> Ledger {
        let start = cfg.start_seq.unwrap_or(first_seq.max(1));
        Ledger::resume(cfg, LedgerProgress::starting_at(start))
    }

    /// A ledger that goes on from stored progress.
    pub fn resume(cfg: LedgerConfig, progress: LedgerProgress) -> Ledger {
        let mut l = Ledger::new(cfg);
        l.progress = Some(progress);
        l
    }

    /// What to store after a cycle (None before the first reconcile).
    pub fn progress(&self) -> Option<&LedgerProgress> {
        self.progress.as_ref()
    }

    /// The config it follows.
    pub fn config(&self) -> &LedgerConfig {
        &self.cfg
    }

    /// One cycle: reads the advisories and the DLQ since last time, then
    /// the stream's new messages up to `ack_floor` (within the cycle
    /// budget), looks their rows up and judges them and those in flight.
    /// `timeout` bounds each request.
    pub async fn reconcile(
        &mut self,
        nats: &async_nats::Client,
        pg: &mut PgConnection,
        ack_floor: u64,
        now: DateTime<Utc>,
        timeout: Duration,
    ) -> Result<LedgerReport, LedgerError> {
        let started = Instant::now();
        let js = jetstream::new(nats.clone());
        if self.progress.is_none() {
            let first = stream_first_seq(&js, &self.cfg.stream, timeout).await?;
            self.progress = Some(LedgerProgress::starting_at(first.max(1)));
        }
        if self.lookup.is_none() {
            let cols: Vec<String> = self.cfg.key.iter().map(|k| k.column.clone()).collect();
            self.lookup = Some(
                TableLookup::prepare(pg, &self.cfg.table, &cols, &self.cfg.write_time_column)
                    .await?,
            );
        }
        self.read_advisories(&js, timeout).await?;
        self.read_dlq(&js, timeout).await?;
        let from = self.progress_ref().reconciled_up_to;
        let mut reader = if from < ack_floor {
            Some(self.open_reader(&js, from, ack_floor, timeout).await?)
        } else {
            None
        };
        let judged = self
            .judge_range(&js, pg, reader.as_mut(), ack_floor, started, now, timeout)
            .await;
        if let Some(r) = reader {
            r.close().await;
        }
        let read = judged?;
        let p = self.progress_ref();
        Ok(LedgerReport {
            counts: p.counts,
            in_flight: p.in_flight(),
            unexplained: p.unexplained_first.clone(),
            unexplained_more: p.unexplained_more(),
            reconciled_up_to: p.reconciled_up_to,
            ack_floor,
            caught_up: p.reconciled_up_to >= ack_floor,
            read,
            index: self.lookup.as_ref().map(|l| l.index.clone()),
            advisories: self.cfg.advisories_stream.as_ref().map(|_| p.advisories),
        })
    }

    fn progress_ref(&self) -> &LedgerProgress {
        static EMPTY: std::sync::OnceLock<LedgerProgress> = std::sync::OnceLock::new();
        self.progress
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(LedgerProgress::default))
    }

    async fn open_reader(
        &self,
        js: &jetstream::Context,
        from: u64,
        ack_floor: u64,
        timeout: Duration,
    ) -> Result<RangeReader, LedgerError> {
        RangeReader::open(
            js,
            &RangeRequest {
                stream: &self.cfg.stream,
                filter: self.cfg.filter_subject.as_deref(),
                after: from,
                up_to: ack_floor,
                max: self.cfg.batch_size,
                batch: self.cfg.batch_size,
                headers_only: key::headers_only(&self.cfg.key),
                timeout,
            },
        )
        .await
    }

    /// Reads and judges batches until the ack floor or the budget; once
    /// at least, so messages in flight are judged again even when nothing
    /// is new. Returns how many messages were read.
    #[allow(clippy::too_many_arguments)]
    async fn judge_range(
        &mut self,
        js: &jetstream::Context,
        pg: &mut PgConnection,
        mut reader: Option<&mut RangeReader>,
        ack_floor: u64,
        started: Instant,
        now: DateTime<Utc>,
        timeout: Duration,
    ) -> Result<u64, LedgerError> {
        let mut read = 0u64;
        loop {
            let from = self.progress_ref().reconciled_up_to;
            let range = match reader.as_deref_mut() {
                Some(r) if from < ack_floor => r.next_batch(self.cfg.batch_size).await?,
                _ => RangeRead {
                    covered_to: from,
                    ..Default::default()
                },
            };
            read += range.messages.len() as u64;
            self.judge_batch(js, pg, range, from, now, timeout).await?;
            let to = self.progress_ref().reconciled_up_to;
            if to >= ack_floor || to == from || started.elapsed() >= self.cfg.cycle_budget {
                return Ok(read);
            }
        }
    }

    /// Judges one read: rows looked up in batches, gaps checked against
    /// the stream's deletes when it has any.
    async fn judge_batch(
        &mut self,
        js: &jetstream::Context,
        pg: &mut PgConnection,
        range: RangeRead,
        from: u64,
        now: DateTime<Utc>,
        timeout: Duration,
    ) -> Result<(), LedgerError> {
        let entries: Vec<StreamEntry> = range
            .messages
            .iter()
            .map(|m| StreamEntry {
                seq: m.seq,
                published: m.published,
                subject: m.subject.clone(),
                key: key::extract_key(&self.cfg.key, &m.payload, m.headers.as_ref()),
            })
            .collect();
        let has_gap = (range.covered_to - from) > entries.len() as u64;
        let deleted = if has_gap && range.deleted_count > 0 {
            read_stream::deleted_in(js, &self.cfg.stream, from, range.covered_to, timeout).await?
        } else {
            BTreeSet::new()
        };
        let (Some(progress), Some(lookup)) = (self.progress.as_mut(), self.lookup.as_ref()) else {
            return Ok(());
        };
        let keys = progress.keys_to_look_up(&entries, &self.rules);
        let mut rows = std::collections::HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(self.cfg.batch_size.max(1)) {
            rows.extend(lookup.rows(pg, chunk).await?);
        }
        progress.apply(
            CycleInput {
                covered_to: range.covered_to,
                messages: &entries,
                stream_first_seq: range.first_seq,
                deleted: &deleted,
                rows: &rows,
            },
            &self.rules,
            now,
        );
        Ok(())
    }

    /// New DLQ messages: each names its original by sequence (header)
    /// or by key.
    async fn read_dlq(
        &mut self,
        js: &jetstream::Context,
        timeout: Duration,
    ) -> Result<(), LedgerError> {
        let dlq = self.cfg.dlq.clone();
        let headers_only = key::headers_only(&dlq.key);
        loop {
            let after = self.progress_ref().dlq_cursor;
            let range = read_stream::read_range(
                js,
                &RangeRequest {
                    stream: &dlq.stream,
                    filter: dlq.subject.as_deref(),
                    after,
                    up_to: u64::MAX,
                    max: self.cfg.batch_size,
                    batch: self.cfg.batch_size,
                    headers_only,
                    timeout,
                },
            )
            .await?;
            let Some(p) = self.progress.as_mut() else {
                return Ok(());
            };
            for m in &range.messages {
                p.add_dlq(m.seq, dlq_entry(&self.cfg, m));
            }
            p.dlq_cursor = p.dlq_cursor.max(range.covered_to);
            if range.messages.is_empty() || p.dlq_cursor >= range.last_seq {
                return Ok(());
            }
        }
    }

    /// New advisories from the capture stream (created on first use).
    async fn read_advisories(
        &mut self,
        js: &jetstream::Context,
        timeout: Duration,
    ) -> Result<(), LedgerError> {
        let Some(name) = self.cfg.advisories_stream.clone() else {
            return Ok(());
        };
        if !self.capture_ready {
            let subjects = advisories::capture_subjects(&self.cfg.stream, &self.cfg.durable);
            advisories::ensure_capture_stream(js, &name, &subjects, timeout).await?;
            self.capture_ready = true;
        }
        loop {
            let after = self.progress_ref().advisory_cursor;
            let range = read_stream::read_range(
                js,
                &RangeRequest {
                    stream: &name,
                    filter: None,
                    after,
                    up_to: u64::MAX,
                    max: self.cfg.batch_size,
                    batch: self.cfg.batch_size,
                    headers_only: false,
                    timeout,
                },
            )
            .await?;
            let Some(p) = self.progress.as_mut() else {
                return Ok(());
            };
            for m in &range.messages {
                match advisories::parse_advisory(&m.payload) {
                    Some((kind, seq)) => p.add_advisory(m.seq, kind, seq),
                    None => p.advisory_cursor = p.advisory_cursor.max(m.seq),
                }
            }
            p.advisory_cursor = p.advisory_cursor.max(range.covered_to);
            if range.messages.is_empty() || p.advisory_cursor >= range.last_seq {
                return Ok(());
            }
        }
    }
}

/// What a DLQ message says about its original.
pub fn dlq_entry(cfg: &LedgerConfig, m: &read_stream::RawMessage) -> DlqEntry {
    let original_seq = cfg.dlq.original_seq_header.as_ref().and_then(|h| {
        m.headers
            .as_ref()
            .and_then(|hs| hs.get(h.as_str()))
            .and_then(|v| v.as_str().trim().parse::<u64>().ok())
    });
    DlqEntry {
        original_seq,
        key: key::extract_key(&cfg.dlq.key, &m.payload, m.headers.as_ref()).ok(),
    }
}

/// The stream's first sequence now: where a ledger without `start_seq` begins.
pub async fn stream_first_seq(
    js: &jetstream::Context,
    stream: &str,
    timeout: Duration,
) -> Result<u64, LedgerError> {
    let op = format!("info of stream {stream}");
    let fail = |e: &dyn std::fmt::Display| LedgerError::Nats {
        op: op.clone(),
        detail: e.to_string(),
    };
    let mut s = tokio::time::timeout(timeout, js.get_stream(stream))
        .await
        .map_err(|_| LedgerError::Timeout { op: op.clone() })?
        .map_err(|e| fail(&e))?;
    let info = tokio::time::timeout(timeout, s.info())
        .await
        .map_err(|_| LedgerError::Timeout { op: op.clone() })?
        .map_err(|e| fail(&e))?;
    Ok(info.state.first_sequence)
}

/// The durable's ack floor (stream sequence): the bound of what a
/// reconcile judges. The daemon reads it from the consumer info it already
/// has; this is for the CLI and the tests.
pub async fn ack_floor(
    js: &jetstream::Context,
    stream: &str,
    durable: &str,
    timeout: Duration,
) -> Result<u64, LedgerError> {
    let op = format!("info of consumer {durable} on {stream}");
    let fail = |e: &dyn std::fmt::Display| LedgerError::Nats {
        op: op.clone(),
        detail: e.to_string(),
    };
    let s = tokio::time::timeout(timeout, js.get_stream(stream))
        .await
        .map_err(|_| LedgerError::Timeout { op: op.clone() })?
        .map_err(|e| fail(&e))?;
    let info = tokio::time::timeout(timeout, s.consumer_info(durable))
        .await
        .map_err(|_| LedgerError::Timeout { op: op.clone() })?
        .map_err(|e| fail(&e))?;
    Ok(info.ack_floor.stream_sequence)
}
