//! Reads a range of a stream, read-only: an ephemeral pull consumer (no
//! acks, memory storage, deleted at the end and by the server after a few
//! idle seconds anyway) from a start sequence, fetched in batches with
//! `no_wait`, so a range that ends before the stream does returns at once.
//! Works on nats-server 2.9 (Debian's); headers only when the key is in a
//! header. Also the stream's view of its gaps: its first sequence and the
//! interior deletes.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::LedgerError;

/// How long an idle reader consumer lives on the server if soakwatch dies
/// before deleting it.
const READER_INACTIVE: Duration = Duration::from_secs(10);

/// One message as read.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// Stream sequence.
    pub seq: u64,
    /// When the server stored it.
    pub published: DateTime<Utc>,
    /// Its subject.
    pub subject: String,
    /// Its headers, if any.
    pub headers: Option<async_nats::HeaderMap>,
    /// Its payload (empty when read headers-only).
    pub payload: bytes::Bytes,
}

/// A range read: the messages, and how far the range is covered.
#[derive(Debug, Clone, Default)]
pub struct RangeRead {
    /// Messages on the filter, ascending.
    pub messages: Vec<RawMessage>,
    /// Every message on the filter up to here has been returned.
    pub covered_to: u64,
    /// The stream's first sequence when read (below: gone).
    pub first_seq: u64,
    /// The stream's last sequence when read.
    pub last_seq: u64,
    /// How many interior deletes the stream reports (0: no gap is a delete
    /// above `first_seq`, so no list is asked for).
    pub deleted_count: u64,
}

/// What to read.
#[derive(Debug, Clone)]
pub struct RangeRequest<'a> {
    /// Stream name.
    pub stream: &'a str,
    /// Only this subject (None: all).
    pub filter: Option<&'a str>,
    /// Read sequences after this one...
    pub after: u64,
    /// ...up to this one (u64::MAX: the stream's end).
    pub up_to: u64,
    /// At most this many messages.
    pub max: usize,
    /// Per fetch.
    pub batch: usize,
    /// Headers only, no payloads.
    pub headers_only: bool,
    /// Bound of each request.
    pub timeout: Duration,
}

fn nats_err(op: &str, e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Nats {
        op: op.to_string(),
        detail: e.to_string().lines().next().unwrap_or("").to_string(),
    }
}

async fn timed<T, E: std::fmt::Display>(
    op: &str,
    t: Duration,
    f: impl std::future::IntoFuture<Output = Result<T, E>>,
) -> Result<T, LedgerError> {
    match tokio::time::timeout(t, f.into_future()).await {
        Ok(r) => r.map_err(|e| nats_err(op, e)),
        Err(_) => Err(LedgerError::Timeout { op: op.to_string() }),
    }
}

/// Reads `(after, up_to]` of a stream on its filter (see module doc), at
/// most `max` messages, with a reader of its own.
pub async fn read_range(
    js: &jetstream::Context,
    req: &RangeRequest<'_>,
) -> Result<RangeRead, LedgerError> {
    let mut reader = RangeReader::open(js, req).await?;
    let read = reader.next_batch(req.max).await;
    reader.close().await;
    read
}

/// One reader consumer kept over the batches of a range: a catch-up pays
/// for creating and deleting it once, not per batch.
pub struct RangeReader {
    stream: jetstream::stream::Stream,
    consumer: Option<consumer::PullConsumer>,
    op: String,
    batch: usize,
    timeout: Duration,
    up_to: u64,
    covered: u64,
    first_fetch: bool,
    first_seq: u64,
    last_seq: u64,
    deleted_count: u64,
}

impl RangeReader {
    /// Opens a reader of `(req.after, req.up_to]` (no consumer at all when
    /// the stream has nothing there).
    pub async fn open(
        js: &jetstream::Context,
        req: &RangeRequest<'_>,
    ) -> Result<RangeReader, LedgerError> {
        let op = format!("read stream {}", req.stream);
        let mut stream = timed(&op, req.timeout, js.get_stream(req.stream)).await?;
        let state = timed(&op, req.timeout, stream.info()).await?.state.clone();
        let up_to = req.up_to.min(state.last_sequence);
        let start = (req.after + 1).max(state.first_sequence);
        let mut reader = RangeReader {
            stream,
            consumer: None,
            op,
            batch: req.batch,
            timeout: req.timeout,
            up_to: req.after.max(up_to),
            covered: req.after,
            first_fetch: true,
            first_seq: state.first_sequence,
            last_seq: state.last_sequence,
            deleted_count: state.deleted_count.unwrap_or(0),
        };
        if start > up_to {
            reader.covered = reader.up_to;
            return Ok(reader);
        }
        let cfg = consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ack_policy: consumer::AckPolicy::None,
            filter_subject: req.filter.unwrap_or_default().to_string(),
            headers_only: req.headers_only,
            inactive_threshold: READER_INACTIVE,
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        };
        reader.consumer =
            Some(timed(&reader.op, req.timeout, reader.stream.create_consumer(cfg)).await?);
        Ok(reader)
    }

    /// The next at most `max` messages; `covered_to` says how far the
    /// range is read (the whole range once it equals the bound).
    pub async fn next_batch(&mut self, max: usize) -> Result<RangeRead, LedgerError> {
        let mut out = RangeRead {
            messages: Vec::new(),
            covered_to: self.covered,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            deleted_count: self.deleted_count,
        };
        let Some(c) = self
            .consumer
            .as_ref()
            .filter(|_| self.covered < self.up_to && max > 0)
        else {
            return Ok(out);
        };
        if self.first_fetch && c.cached_info().num_pending == 0 {
            self.covered = self.up_to;
        } else {
            let got = fetch_range(
                c,
                self.batch,
                max,
                self.timeout,
                self.up_to,
                &mut out.messages,
                &self.op,
            )
            .await?;
            self.covered = got.max(self.covered);
        }
        self.first_fetch = false;
        out.covered_to = self.covered;
        Ok(out)
    }

    /// Deletes the reader consumer (the inactive threshold covers a
    /// failed delete, or a reader never closed).
    pub async fn close(self) {
        if let Some(c) = self.consumer {
            let name = c.cached_info().name.clone();
            let _ = tokio::time::timeout(self.timeout, self.stream.delete_consumer(&name)).await;
        }
    }
}

/// Fetches until `up_to`, the end of the filter's messages, or `max`;
/// returns how far the range is covered.
async fn fetch_range(
    reader: &consumer::PullConsumer,
    batch_size: usize,
    max: usize,
    timeout: Duration,
    up_to: u64,
    into: &mut Vec<RawMessage>,
    op: &str,
) -> Result<u64, LedgerError> {
    loop {
        let want = batch_size.min(max - into.len()).max(1);
        let mut batch = timed(op, timeout, reader.fetch().max_messages(want).messages()).await?;
        let mut got = 0usize;
        while let Some(m) = timed(op, timeout, async {
            Ok::<_, LedgerError>(batch.next().await)
        })
        .await?
        {
            let m = m.map_err(|e| nats_err(op, e))?;
            let info = m.info().map_err(|e| nats_err(op, e))?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            let published = DateTime::<Utc>::from_timestamp(
                info.published.unix_timestamp(),
                info.published.nanosecond(),
            )
            .unwrap_or_default();
            if seq > up_to {
                return Ok(up_to);
            }
            got += 1;
            into.push(RawMessage {
                seq,
                published,
                subject: m.subject.to_string(),
                headers: m.headers.clone(),
                payload: m.payload.clone(),
            });
            if seq == up_to || pending == 0 {
                return Ok(up_to);
            }
            if into.len() >= max {
                return Ok(seq);
            }
        }
        if got == 0 {
            // Nothing more on the filter right now: nothing up to `up_to`
            // (which is at most the last sequence when we started).
            return Ok(up_to);
        }
    }
}

/// The stream's interior deletes in `(after, up_to]` (purges by subject,
/// deleted messages): asked only when a read left gaps.
pub async fn deleted_in(
    js: &jetstream::Context,
    stream: &str,
    after: u64,
    up_to: u64,
    timeout: Duration,
) -> Result<BTreeSet<u64>, LedgerError> {
    let op = format!("deleted sequences of {stream}");
    let s = timed(&op, timeout, js.get_stream(stream)).await?;
    let info = timed(&op, timeout, s.info_builder().with_deleted(true).fetch()).await?;
    Ok(info
        .info
        .state
        .deleted
        .unwrap_or_default()
        .into_iter()
        .filter(|q| *q > after && *q <= up_to)
        .collect())
}
