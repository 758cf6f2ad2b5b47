//! The soak's state on JetStream, for watchers that run as replicas: one KV
//! bucket (soak record, alert tracks, outbox, rollback latch and journal,
//! checkpoints, the leader lease) and two streams (cycle records; the newest
//! snapshots, a few per soak). Every record is MessagePack or small JSON,
//! and every bucket and stream has a `max_age`, so a 48 h soak at 10 s stays
//! bounded.
//!
//! There are no multi-key transactions: where SQLite writes two rows at
//! once, the one whose loss is worse is written first (outbox before alert
//! tracks; cycle before its snapshot). Writes of a watcher that is not the
//! leader are refused by its [`Fence`] before they reach the server, and the
//! latch and outbox changes are compare-and-set on the key's revision.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::config::StateConfig;
use crate::sample::Snapshot;
use crate::soak::record::{CycleRecord, SoakMeta};
use crate::state::lease::Fence;
use crate::state::types::{
    Baselines, LatchClaim, OutboxCopy, OutboxItem, OutboxOutcome, OutboxTally, RollbackRow,
    RollbackState, SoakEnd, SoakRecord, StoreError,
};

/// Largest snapshot published whole: below NATS' default 1 MB max_payload
/// with room for headers.
const MAX_SNAPSHOT_BYTES: usize = 900 * 1024;

/// Snapshots kept per soak: enough for the read side (the last two) and a
/// restart's log cursor; replay of old snapshots needs the SQLite backend.
const SNAPSHOTS_KEPT: i64 = 16;

/// Bound of the reads that list or scan (writes use `[state] request_timeout`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

fn nats_err(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Nats(format!("{what}: {e}"))
}

/// Key-safe spelling of a user-chosen name (route, alert, label, id).
fn part(s: &str) -> String {
    hex::encode(s.as_bytes())
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    Ok(rmp_serde::to_vec_named(v)?)
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    Ok(rmp_serde::from_slice(b)?)
}

#[derive(Serialize, Deserialize)]
struct SoakRow {
    id: String,
    name: String,
    t0_ms: i64,
    planned_secs: f64,
    baselines: Baselines,
    created_ms: i64,
}

#[derive(Serialize, Deserialize, Clone)]
struct OutboxRow {
    id: String,
    route: String,
    soak_id: String,
    body: Vec<u8>,
    created_ms: i64,
    attempts: i64,
    next_ms: i64,
    delivered_ms: Option<i64>,
    dead: bool,
    last_error: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct RollbackRec {
    state: RollbackState,
    trigger: String,
    started_ms: i64,
    finished_ms: Option<i64>,
    steps: Option<Vec<u8>>,
    /// Who took the latch, so a create that timed out but landed is
    /// recognised as this watcher's own, never another's.
    #[serde(default)]
    holder: Option<String>,
    /// The lease revision the latch was taken under.
    #[serde(default)]
    lease_revision: Option<u64>,
    /// The step about to run and the lease revision confirmed for it.
    #[serde(default)]
    acting: Option<(usize, u64)>,
}

/// How the store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The daemon: creates what is missing; writes only while it leads.
    Leader,
    /// A small write beside the daemon (the manual rollback's latch).
    Shared,
    /// `report`, `check --soak`, `rollback --dry-run`: nothing is written.
    ReadOnly,
}

/// An open JetStream state.
pub struct JetStreamStore {
    js: jetstream::Context,
    kv: kv::Store,
    cycles_stream: String,
    snaps_stream: String,
    prefix: String,
    fence: Arc<Fence>,
    read_only: bool,
    /// The cycle subject's last stream sequence this writer knows (set by
    /// [`JetStreamStore::begin_term`]): every cycle append expects it, so a
    /// deposed leader's late append is refused by the server.
    cycle_seq: std::sync::Mutex<Option<u64>>,
    /// Held across every read-and-compare-and-set of the rollback latch key
    /// (the latch, the step marks, the journal, a takeover), so this process
    /// never sends two of them at once. nats-server before 2.9.21 checks
    /// `Nats-Expected-Last-Subject-Sequence` of a clustered stream before the
    /// Raft proposal, not in it: two concurrent updates expecting the same
    /// revision may both be accepted (nats-io/nats-server#4320; Debian ships
    /// 2.9.10). A journal save racing a step mark then erased the mark, and a
    /// later leader took a rollback whose restart had run for one never
    /// acted on. Writes of two processes are apart by the fence margin.
    rollback_writes: tokio::sync::Mutex<()>,
    /// The revision this term last wrote to each state key (alert tracks,
    /// checkpoints, the soak's record and end), cleared when a term begins:
    /// every later write of the key expects it, so a key another term wrote
    /// since is never overwritten, and this writer learns it was deposed.
    written: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

/// Header naming the lease revision of a term marker on the cycle subject.
const TERM_HEADER: &str = "Soakwatch-Term";

/// Connects to the state's JetStream (connect errors never show secrets).
/// The leader's requests are bounded by `[state] request_timeout`, which the
/// fencing rule keeps below the interval; readers and tools beside the
/// daemon (`report`, `check --soak`, `state migrate`) write nothing a fence
/// guards, so they wait at least the usual 5 s.
pub async fn connect(cfg: &StateConfig) -> Result<async_nats::Client, StoreError> {
    connect_for(cfg, Access::Leader).await
}

async fn connect_for(cfg: &StateConfig, access: Access) -> Result<async_nats::Client, StoreError> {
    let timeout = match access {
        Access::Leader => cfg.request_timeout,
        Access::Shared | Access::ReadOnly => cfg.request_timeout.max(REQUEST_TIMEOUT),
    };
    crate::probe::nats::connect(&cfg.nats, timeout)
        .await
        .map_err(|e| StoreError::Nats(e.to_string()))
}

impl JetStreamStore {
    /// Opens the state; the daemon creates the bucket and streams.
    pub async fn open(cfg: &StateConfig, access: Access) -> Result<JetStreamStore, StoreError> {
        let client = connect_for(cfg, access).await?;
        Self::with_client(client, cfg, access).await
    }

    /// Opens on a connection already made.
    pub async fn with_client(
        client: async_nats::Client,
        cfg: &StateConfig,
        access: Access,
    ) -> Result<JetStreamStore, StoreError> {
        let js = jetstream::new(client);
        let bucket = cfg.bucket.clone();
        let cycles_stream = format!("{bucket}_cycles");
        let snaps_stream = format!("{bucket}_snapshots");
        let kv = if access == Access::Leader {
            // The bucket's stream as `create_key_value` makes it, made
            // directly: that call first reads the account info, which this
            // client cannot decode from a 2.9 server.
            js.get_or_create_stream(stream::Config {
                name: format!("KV_{bucket}"),
                description: Some("soakwatch soak state".into()),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                max_age: cfg.max_age,
                storage: stream::StorageType::File,
                allow_rollup: true,
                deny_delete: true,
                // Reads go to the stream leader: a direct get is answered by
                // any replica, and a frozen one (still subscribed) never answers.
                allow_direct: false,
                num_replicas: cfg.replicas,
                discard: stream::DiscardPolicy::New,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(|e| nats_err(&format!("creating KV bucket {bucket}"), e))?;
            let kv = js
                .get_key_value(&bucket)
                .await
                .map_err(|e| nats_err(&format!("opening KV bucket {bucket}"), e))?;
            for (name, subject, per_subject) in [
                (&cycles_stream, format!("{bucket}.cycle.>"), -1),
                (&snaps_stream, format!("{bucket}.snap.>"), SNAPSHOTS_KEPT),
            ] {
                js.get_or_create_stream(stream::Config {
                    name: name.clone(),
                    subjects: vec![subject],
                    max_age: cfg.max_age,
                    max_messages_per_subject: per_subject,
                    num_replicas: cfg.replicas,
                    storage: stream::StorageType::File,
                    duplicate_window: Duration::from_secs(120),
                    ..Default::default()
                })
                .await
                .map_err(|e| nats_err(&format!("creating stream {name}"), e))?;
            }
            kv
        } else {
            js.get_key_value(&bucket).await.map_err(|e| {
                nats_err(
                    &format!("no soak state in KV bucket {bucket} (has `soakwatch watch` run with [state] backend = \"jetstream\"?)"),
                    e,
                )
            })?
        };
        Ok(JetStreamStore {
            js,
            kv,
            cycles_stream,
            snaps_stream,
            prefix: bucket,
            fence: Arc::new(Fence::new(access == Access::Leader)),
            read_only: access == Access::ReadOnly,
            cycle_seq: std::sync::Mutex::new(None),
            rollback_writes: tokio::sync::Mutex::new(()),
            written: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// The bucket's name (also the prefix of the streams).
    pub fn bucket(&self) -> &str {
        &self.prefix
    }

    /// The KV bucket (the lease lives there too).
    pub fn kv(&self) -> &kv::Store {
        &self.kv
    }

    /// The fence every write passes; the lease keeps it open while this
    /// watcher leads.
    pub fn fence(&self) -> Arc<Fence> {
        self.fence.clone()
    }

    fn may_write(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::Nats("state opened read-only".into()));
        }
        if self.fence.is_open() {
            Ok(())
        } else {
            Err(StoreError::NotLeader)
        }
    }

    async fn get(&self, key: &str) -> Result<Option<kv::Entry>, StoreError> {
        let e = self
            .kv
            .entry(key)
            .await
            .map_err(|e| nats_err(&format!("reading {key}"), e))?;
        Ok(e.filter(|e| e.operation == kv::Operation::Put))
    }

    /// Writes a state key as this term's leader (compare-and-set). The
    /// first write of a key in a term expects the revision read just before
    /// (read again if another write slips in); every later one expects the
    /// revision this term wrote last. A mismatch then means another term
    /// wrote the key meanwhile: this watcher was deposed, its fence closes
    /// and the write is refused, so a deposed leader's late write never
    /// overwrites the new leader's state. Without an enforced fence (a tool
    /// beside the daemon) it is a plain put.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64, StoreError> {
        self.may_write()?;
        if !self.fence.is_enforced() {
            return self
                .kv
                .put(key, value.into())
                .await
                .map_err(|e| nats_err(&format!("writing {key}"), e));
        }
        let known = self.written.lock().ok().and_then(|w| w.get(key).copied());
        let mut expect = match known {
            Some(rev) => rev,
            None => self.current_revision(key).await?,
        };
        for _ in 0..3 {
            self.may_write()?;
            match self.kv.update(key, value.clone().into(), expect).await {
                Ok(rev) => {
                    if let Ok(mut w) = self.written.lock() {
                        w.insert(key.to_string(), rev);
                    }
                    return Ok(rev);
                }
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    if known.is_some() {
                        tracing::error!(key, "a state key was written by another term since this one wrote it: this watcher no longer leads");
                        self.fence.close_for_write();
                        return Err(StoreError::NotLeader);
                    }
                    // This term never wrote it: the revision read was
                    // stale (a follower's answer) or a write slipped in.
                    expect = self.current_revision(key).await?;
                }
                Err(e) => {
                    // The write may have landed with its answer lost (a
                    // request timeout): the next write reads the revision
                    // again rather than take its own landed write for
                    // another term's.
                    if let Ok(mut w) = self.written.lock() {
                        w.remove(key);
                    }
                    return Err(nats_err(&format!("writing {key}"), e));
                }
            }
        }
        Err(nats_err(&format!("writing {key}"), "the key kept changing"))
    }

    /// The key's last revision on the server, deleted or not (0 when never
    /// written): what a first compare-and-set of this term expects.
    async fn current_revision(&self, key: &str) -> Result<u64, StoreError> {
        let e = self
            .kv
            .entry(key)
            .await
            .map_err(|e| nats_err(&format!("reading {key}"), e))?;
        Ok(e.map(|e| e.revision).unwrap_or(0))
    }

    /// Keys starting with `prefix` (which ends in `.`), from the bucket
    /// stream's subject list: one request, no consumer (an ephemeral
    /// consumer placed on a dead peer of a cluster would never answer).
    async fn keys_with(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let head = format!("$KV.{}.", self.prefix);
        let list = async {
            let stream = self
                .js
                .get_stream(format!("KV_{}", self.prefix))
                .await
                .map_err(|e| nats_err("opening the bucket", e))?;
            let mut subjects = stream
                .info_with_subjects(format!("{head}{prefix}>"))
                .await
                .map_err(|e| nats_err("listing keys", e))?;
            let mut out = Vec::new();
            while let Some(s) = subjects.next().await {
                let (subject, _) = s.map_err(|e| nats_err("listing keys", e))?;
                if let Some(k) = subject.strip_prefix(&head) {
                    out.push(k.to_string());
                }
            }
            out.sort();
            Ok::<_, StoreError>(out)
        };
        tokio::time::timeout(REQUEST_TIMEOUT * 2, list)
            .await
            .map_err(|_| nats_err("listing keys", "no answer"))?
    }

    /// The soak in progress, if any.
    pub async fn active_soak(&self) -> Result<Option<SoakRecord>, StoreError> {
        let Some(active) = self.get("active").await? else {
            return Ok(None);
        };
        let id = String::from_utf8_lossy(&active.value).to_string();
        let Some(row) = self.get(&format!("soak.{id}")).await? else {
            return Ok(None);
        };
        let row: SoakRow = serde_json::from_slice(&row.value)?;
        Ok(Some(SoakRecord {
            meta: SoakMeta {
                id: row.id,
                name: row.name,
                t0: at(row.t0_ms),
                planned_secs: row.planned_secs,
            },
            baselines: row.baselines,
        }))
    }

    /// Records a new soak and makes it the active one.
    pub async fn start_soak(&self, rec: &SoakRecord, now: DateTime<Utc>) -> Result<(), StoreError> {
        let row = SoakRow {
            id: rec.meta.id.clone(),
            name: rec.meta.name.clone(),
            t0_ms: ms(rec.meta.t0),
            planned_secs: rec.meta.planned_secs,
            baselines: rec.baselines.clone(),
            created_ms: ms(now),
        };
        self.put(&format!("soak.{}", rec.meta.id), serde_json::to_vec(&row)?)
            .await?;
        self.put("active", rec.meta.id.clone().into_bytes()).await?;
        Ok(())
    }

    /// Freezes a soak's verdict at its end.
    pub async fn end_soak(&self, soak_id: &str, end: &SoakEnd) -> Result<(), StoreError> {
        self.put(&format!("end.{}", part(soak_id)), serde_json::to_vec(end)?)
            .await?;
        Ok(())
    }

    /// The sign-off of a soak, once it ended.
    pub async fn soak_end(&self, soak_id: &str) -> Result<Option<SoakEnd>, StoreError> {
        match self.get(&format!("end.{}", part(soak_id))).await? {
            Some(e) => Ok(Some(serde_json::from_slice(&e.value)?)),
            None => Ok(None),
        }
    }

    async fn publish(
        &self,
        subject: String,
        msg_id: String,
        body: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.publish_expecting(subject, msg_id, body, None, None)
            .await
            .map(|_| ())
    }

    /// Publishes with `Nats-Msg-Id` (a retry is a duplicate, never a second
    /// record) and, with `expect`, `Nats-Expected-Last-Subject-Sequence`: the
    /// server refuses the message when anything else was appended to the
    /// subject since (a newer term's marker). Returns the stream sequence.
    async fn publish_expecting(
        &self,
        subject: String,
        msg_id: String,
        body: Vec<u8>,
        expect: Option<u64>,
        term: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.may_write()?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id.as_str());
        if let Some(seq) = expect {
            headers.insert(
                "Nats-Expected-Last-Subject-Sequence",
                seq.to_string().as_str(),
            );
        }
        if let Some(t) = term {
            headers.insert(TERM_HEADER, t.to_string().as_str());
        }
        let ack = self
            .js
            .publish_with_headers(subject.clone(), headers, body.into())
            .await
            .map_err(|e| nats_err(&format!("publishing to {subject}"), e))?
            .await;
        match ack {
            Ok(a) => Ok(a.sequence),
            Err(e)
                if e.kind()
                    == async_nats::jetstream::context::PublishErrorKind::WrongLastSequence =>
            {
                // Another term wrote on this soak's record since: this
                // writer's term has ended.
                self.fence.close_for_write();
                Err(StoreError::NotLeader)
            }
            Err(e) => Err(nats_err(&format!("publishing to {subject}"), e)),
        }
    }

    /// Starts this leader's term on a soak's record: a marker appended on
    /// the cycle subject, after whatever is there now. From then on every
    /// cycle this leader appends expects the sequence it last wrote, so a
    /// cycle a deposed leader sent late (a frozen node, a partition) can no
    /// longer land inside this term: the server refuses it.
    pub async fn begin_term(&self, soak_id: &str) -> Result<(), StoreError> {
        let subject = format!("{}.cycle.{soak_id}", self.prefix);
        let stream = self
            .js
            .get_stream(&self.cycles_stream)
            .await
            .map_err(|e| nats_err(&format!("opening stream {}", self.cycles_stream), e))?;
        let last = match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => m.sequence,
            Err(e)
                if e.kind()
                    == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
            {
                0
            }
            Err(e) => return Err(nats_err(&format!("reading {subject}"), e)),
        };
        let rev = self.fence.held().map(|h| h.revision).unwrap_or(0);
        if let Ok(mut w) = self.written.lock() {
            w.clear();
        }
        let seq = self
            .publish_expecting(
                subject,
                format!("t.{soak_id}.{rev}"),
                Vec::new(),
                Some(last),
                Some(rev),
            )
            .await?;
        if let Ok(mut c) = self.cycle_seq.lock() {
            *c = Some(seq);
        }
        Ok(())
    }

    /// Appends one cycle, then its snapshot (a cycle without its snapshot
    /// only costs a restart its log cursor; the reverse would lose history).
    pub async fn append(
        &self,
        soak_id: &str,
        rec: &CycleRecord,
        snap: &Snapshot,
    ) -> Result<(), StoreError> {
        let at_ms = ms(rec.at);
        let expect = self.cycle_seq.lock().ok().and_then(|c| *c);
        let seq = self
            .publish_expecting(
                format!("{}.cycle.{soak_id}", self.prefix),
                format!("c.{soak_id}.{at_ms}"),
                encode(rec)?,
                expect,
                None,
            )
            .await?;
        if expect.is_some() {
            if let Ok(mut c) = self.cycle_seq.lock() {
                *c = Some(seq);
            }
        }
        // A message must fit the server's max_payload (1 MB by default): a
        // fleet's listing too large for it is left out of the snapshot (its
        // consumers' verdicts are in the cycle record just written).
        let mut body = encode(snap)?;
        if body.len() > MAX_SNAPSHOT_BYTES {
            if let Some(slim) = snap.elide_consumers() {
                body = encode(&slim)?;
            }
        }
        self.publish(
            format!("{}.snap.{soak_id}", self.prefix),
            format!("s.{soak_id}.{}", ms(snap.taken_at)),
            body,
        )
        .await
    }

    /// Appends a cycle whose snapshot is gone (the migration of a thinned soak).
    pub async fn append_cycle(&self, soak_id: &str, rec: &CycleRecord) -> Result<(), StoreError> {
        self.publish(
            format!("{}.cycle.{soak_id}", self.prefix),
            format!("c.{soak_id}.{}", ms(rec.at)),
            encode(rec)?,
        )
        .await
    }

    /// Copies outbox rows as they stand (delivered stays delivered).
    pub async fn copy_outbox(
        &self,
        soak_id: &str,
        rows: &[OutboxCopy],
    ) -> Result<usize, StoreError> {
        let mut n = 0;
        for r in rows {
            let row = OutboxRow {
                id: r.id.clone(),
                route: r.route.clone(),
                soak_id: soak_id.to_string(),
                body: r.body.clone(),
                created_ms: r.created_ms,
                attempts: r.attempts,
                next_ms: r.next_ms,
                delivered_ms: r.delivered_ms,
                dead: r.dead,
                last_error: r.last_error.clone(),
            };
            self.put(
                &format!("outbox.{soak_id}.{}.{}", part(&r.id), part(&r.route)),
                encode(&row)?,
            )
            .await?;
            n += 1;
        }
        Ok(n)
    }

    /// Copies a rollback latch and journal (taken stays taken).
    pub async fn copy_rollback<T: Serialize>(
        &self,
        soak_id: &str,
        r: &RollbackRow<T>,
    ) -> Result<(), StoreError> {
        let rec = RollbackRec {
            state: r.state,
            trigger: r.trigger.clone(),
            started_ms: ms(r.started),
            finished_ms: r.finished.map(ms),
            steps: r.steps.as_ref().map(encode).transpose()?,
            holder: r.holder.as_ref().map(|h| h.0.clone()),
            lease_revision: r.holder.as_ref().map(|h| h.1),
            acting: r.acting,
        };
        self.put(&format!("rollback.{soak_id}"), encode(&rec)?)
            .await?;
        Ok(())
    }

    /// Every message on `subject` of `stream_name`, oldest first; tried
    /// three times (a consumer the cluster placed on a peer that just died
    /// never answers; the next one lands elsewhere).
    async fn read_all(
        &self,
        stream_name: &str,
        subject: String,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut last = None;
        for _ in 0..3 {
            let once = self.read_all_once(stream_name, subject.clone());
            match tokio::time::timeout(REQUEST_TIMEOUT * 6, once).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => last = Some(e),
                Err(_) => last = Some(nats_err(&format!("reading {subject}"), "no answer")),
            }
        }
        Err(last.unwrap_or_else(|| nats_err(&format!("reading {subject}"), "no answer")))
    }

    async fn read_all_once(
        &self,
        stream_name: &str,
        subject: String,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let stream = self
            .js
            .get_stream(stream_name)
            .await
            .map_err(|e| nats_err(&format!("opening stream {stream_name}"), e))?;
        // An empty subject: the consumer would wait for a first message forever.
        if stream
            .get_last_raw_message_by_subject(&subject)
            .await
            .is_err()
        {
            return Ok(Vec::new());
        }
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: subject.clone(),
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| nats_err(&format!("reading {subject}"), e))?;
        let mut msgs = consumer
            .messages()
            .await
            .map_err(|e| nats_err(&format!("reading {subject}"), e))?;
        let mut out = Vec::new();
        loop {
            let next = tokio::time::timeout(REQUEST_TIMEOUT, msgs.next())
                .await
                .map_err(|_| nats_err(&format!("reading {subject}"), "no answer"))?;
            let Some(m) = next else { break };
            let m = m.map_err(|e| nats_err(&format!("reading {subject}"), e))?;
            let pending = m.info().map(|i| i.pending).unwrap_or(0);
            out.push(m.payload.to_vec());
            if pending == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// Every cycle of a soak, oldest first (one per sampling time).
    pub async fn cycles(&self, soak_id: &str) -> Result<Vec<CycleRecord>, StoreError> {
        let raw = self
            .read_all(
                &self.cycles_stream,
                format!("{}.cycle.{soak_id}", self.prefix),
            )
            .await?;
        let mut by_at = BTreeMap::new();
        // Term markers are empty: they only order the terms.
        for b in raw.into_iter().filter(|b| !b.is_empty()) {
            let rec: CycleRecord = decode(&b)?;
            by_at.insert(ms(rec.at), rec);
        }
        Ok(by_at.into_values().collect())
    }

    /// The kept snapshots, oldest first.
    pub async fn snapshots(&self, soak_id: &str) -> Result<Vec<Snapshot>, StoreError> {
        let raw = self
            .read_all(
                &self.snaps_stream,
                format!("{}.snap.{soak_id}", self.prefix),
            )
            .await?;
        let mut by_at = BTreeMap::new();
        for b in raw {
            let s: Snapshot = decode(&b)?;
            by_at.insert(ms(s.taken_at), s);
        }
        Ok(by_at.into_values().collect())
    }

    /// The newest `n` snapshots, oldest first.
    pub async fn last_snapshots(&self, soak_id: &str, n: i64) -> Result<Vec<Snapshot>, StoreError> {
        let mut all = self.snapshots(soak_id).await?;
        let skip = all.len().saturating_sub(n.max(0) as usize);
        Ok(all.split_off(skip))
    }

    /// Labels of checkpoints already written.
    pub async fn checkpoints_done(&self, soak_id: &str) -> Result<Vec<String>, StoreError> {
        let prefix = format!("ckpt.{soak_id}.");
        let keys = self.keys_with(&prefix).await?;
        Ok(keys
            .iter()
            .filter_map(|k| hex::decode(&k[prefix.len()..]).ok())
            .map(|b| String::from_utf8_lossy(&b).to_string())
            .collect())
    }

    /// Records a written checkpoint.
    pub async fn mark_checkpoint(
        &self,
        soak_id: &str,
        label: &str,
        path: &std::path::Path,
    ) -> Result<(), StoreError> {
        self.put(
            &format!("ckpt.{soak_id}.{}", part(label)),
            path.display().to_string().into_bytes(),
        )
        .await?;
        Ok(())
    }

    /// Alert tracking states of a soak.
    pub async fn alert_states<T: serde::de::DeserializeOwned>(
        &self,
        soak_id: &str,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for k in self.keys_with(&format!("alert.{soak_id}.")).await? {
            if let Some(e) = self.get(&k).await? {
                out.push(decode(&e.value)?);
            }
        }
        Ok(out)
    }

    /// Enqueues notifications (each once: `create`), then saves the tracks.
    pub async fn commit_alerts<S: Serialize, N: Serialize>(
        &self,
        soak_id: &str,
        states: &[(String, S)],
        outbox: &[(String, String, N)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for (id, route, n) in outbox {
            self.may_write()?;
            let row = OutboxRow {
                id: id.clone(),
                route: route.clone(),
                soak_id: soak_id.to_string(),
                body: encode(n)?,
                created_ms: ms(now),
                attempts: 0,
                next_ms: ms(now),
                delivered_ms: None,
                dead: false,
                last_error: None,
            };
            let key = format!("outbox.{soak_id}.{}.{}", part(id), part(route));
            match self.kv.create(&key, encode(&row)?.into()).await {
                Ok(_) => {}
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(nats_err(&format!("queueing {key}"), e)),
            }
        }
        for (name, st) in states {
            self.put(&format!("alert.{soak_id}.{}", part(name)), encode(st)?)
                .await?;
        }
        Ok(())
    }

    async fn outbox_rows(&self) -> Result<Vec<(String, u64, OutboxRow)>, StoreError> {
        let mut out = Vec::new();
        for k in self.keys_with("outbox.").await? {
            if let Some(e) = self.get(&k).await? {
                out.push((k, e.revision, decode::<OutboxRow>(&e.value)?));
            }
        }
        Ok(out)
    }

    /// Undelivered notifications due at `now`, oldest first.
    pub async fn due_outbox<N: serde::de::DeserializeOwned>(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxItem<N>>, StoreError> {
        self.due(None, now, limit).await
    }

    /// Undelivered notifications of `route` due at `now`, oldest first.
    pub async fn due_outbox_route<N: serde::de::DeserializeOwned>(
        &self,
        route: &str,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxItem<N>>, StoreError> {
        self.due(Some(route), now, limit).await
    }

    /// Undelivered notifications due at `now` (of one route, or all).
    async fn due<N: serde::de::DeserializeOwned>(
        &self,
        route: Option<&str>,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxItem<N>>, StoreError> {
        let mut rows: Vec<OutboxRow> = self
            .outbox_rows()
            .await?
            .into_iter()
            .map(|(_, _, r)| r)
            .filter(|r| {
                route.is_none_or(|x| r.route == x)
                    && r.delivered_ms.is_none()
                    && !r.dead
                    && r.next_ms <= ms(now)
            })
            .collect();
        rows.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        rows.truncate(limit.max(0) as usize);
        rows.into_iter()
            .map(|r| {
                Ok(OutboxItem {
                    body: decode(&r.body)?,
                    id: r.id,
                    route: r.route,
                    attempts: r.attempts,
                })
            })
            .collect()
    }

    /// Records a delivery outcome, compare-and-set on the entry's revision.
    pub async fn outbox_result(
        &self,
        id: &str,
        route: &str,
        outcome: OutboxOutcome,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.may_write()?;
        let suffix = format!(".{}.{}", part(id), part(route));
        for k in self.keys_with("outbox.").await? {
            if !k.ends_with(&suffix) {
                continue;
            }
            let Some(e) = self.get(&k).await? else {
                continue;
            };
            let mut row: OutboxRow = decode(&e.value)?;
            row.attempts += 1;
            match &outcome {
                OutboxOutcome::Delivered => {
                    row.delivered_ms = Some(ms(now));
                    row.last_error = None;
                }
                OutboxOutcome::Retry { next, error } => {
                    row.next_ms = ms(*next);
                    row.last_error = Some(error.clone());
                }
                OutboxOutcome::Dead { error } => {
                    row.dead = true;
                    row.last_error = Some(error.clone());
                }
            }
            self.may_write()?;
            self.kv
                .update(&k, encode(&row)?.into(), e.revision)
                .await
                .map_err(|e| nats_err(&format!("recording delivery of {k}"), e))?;
        }
        Ok(())
    }

    /// The outbox's notifications by where they stand.
    pub async fn outbox_counts(&self) -> Result<OutboxTally, StoreError> {
        let mut t = OutboxTally::default();
        for (_, _, r) in self.outbox_rows().await? {
            if r.delivered_ms.is_some() {
                t.delivered += 1;
            } else if r.dead {
                t.given_up += 1;
            } else {
                t.pending += 1;
            }
        }
        Ok(t)
    }

    /// Takes the one-shot latch with an atomic create: across every watcher
    /// and failover, only one caller ever gets `true`.
    pub async fn take_rollback_latch(
        &self,
        soak_id: &str,
        trigger: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let _one_writer = self.rollback_writes.lock().await;
        self.may_write()?;
        // A latch names a term: without a held lease there is none to name,
        // and a latch naming nobody could be taken over by nobody's check.
        let held = match self.fence.held() {
            Some(h) => Some(h),
            None if self.fence.is_enforced() => return Err(StoreError::NotLeader),
            None => None,
        };
        let rec = RollbackRec {
            state: RollbackState::Started,
            trigger: trigger.to_string(),
            started_ms: ms(now),
            finished_ms: None,
            steps: None,
            holder: held.as_ref().map(|h| h.term_id()),
            lease_revision: held.as_ref().map(|h| h.revision),
            acting: None,
        };
        let key = format!("rollback.{soak_id}");
        match self.kv.create(&key, encode(&rec)?.into()).await {
            Ok(_) => Ok(true),
            // async-nats reads the key after any failed create and reports
            // "already exists" when it is there, also when it is there
            // because this very create landed before its answer was lost.
            // What the latch says decides, not the error.
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let Some(entry) = self.get(&key).await? else {
                    return Err(nats_err("taking the rollback latch", "the latch vanished"));
                };
                let stored: RollbackRec = decode(&entry.value)?;
                // The holder id names this watcher and its term, and only
                // this term's loop takes latches: a latch naming it is its
                // own, whichever attempt's write landed.
                let mine = held.is_some() && stored.holder == rec.holder;
                if mine {
                    tracing::warn!(
                        "the rollback latch write timed out but landed: it is this watcher's"
                    );
                }
                Ok(mine)
            }
            Err(e) => Err(nats_err("taking the rollback latch", e)),
        }
    }

    /// Marks, before step `step` runs, that this holder acts on it under
    /// lease revision `rev`: a compare-and-set on the journal, refused when
    /// the latch is not this watcher's (another leader took it over).
    pub async fn mark_acting(
        &self,
        soak_id: &str,
        step: usize,
        rev: u64,
        term_id: &str,
    ) -> Result<(), StoreError> {
        let _one_writer = self.rollback_writes.lock().await;
        self.may_write()?;
        let key = format!("rollback.{soak_id}");
        let Some(e) = self.get(&key).await? else {
            return Err(nats_err("marking the rollback step", "no latch"));
        };
        let mut e = e;
        // The journal of the previous step may be written at the same
        // moment (its own task): a lost compare-and-set is read again.
        for _ in 0..5 {
            let mut rec: RollbackRec = decode(&e.value)?;
            if rec.holder.as_deref().is_some_and(|h| h != term_id) {
                // Taken over by another term (another watcher, or this
                // process after it lost and won the lease again).
                return Err(StoreError::NotLeader);
            }
            rec.acting = Some((step, rev));
            self.may_write()?;
            match self.kv.update(&key, encode(&rec)?.into(), e.revision).await {
                Ok(_) => return Ok(()),
                Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    let Some(next) = self.get(&key).await? else {
                        return Err(nats_err("marking the rollback step", "no latch"));
                    };
                    e = next;
                }
                Err(err) => return Err(nats_err("marking the rollback step", err)),
            }
        }
        Err(nats_err(
            "marking the rollback step",
            "the journal kept changing",
        ))
    }

    /// Saves the rollback's progress or its end (on the latch's revision).
    /// With `term_id`, only while the latch still names that term: a
    /// deposed holder's journal never overwrites the one of the leader that
    /// took its latch over.
    pub async fn save_rollback<T: Serialize>(
        &self,
        soak_id: &str,
        state: RollbackState,
        steps: &T,
        finished: Option<DateTime<Utc>>,
        term_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let _one_writer = self.rollback_writes.lock().await;
        let key = format!("rollback.{soak_id}");
        let body = encode(steps)?;
        // Another process's write may land meanwhile: a lost
        // compare-and-set is read again and retried.
        for _ in 0..5 {
            let Some(e) = self.get(&key).await? else {
                return Ok(());
            };
            let mut rec: RollbackRec = decode(&e.value)?;
            if let (Some(want), Some(h)) = (term_id, rec.holder.as_deref()) {
                if h != want {
                    return Err(StoreError::NotLeader);
                }
            }
            rec.state = state;
            rec.steps = Some(body.clone());
            rec.finished_ms = finished.map(ms);
            self.may_write()?;
            match self.kv.update(&key, encode(&rec)?.into(), e.revision).await {
                Ok(_) => return Ok(()),
                Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(err) => return Err(nats_err("journaling the rollback", err)),
            }
        }
        Err(nats_err(
            "journaling the rollback",
            "the journal kept changing",
        ))
    }

    /// Makes a `started` latch of an earlier term this leader's (a
    /// compare-and-set of its holder), so the earlier holder's marks and
    /// journal are refused from now on whatever it does when it wakes.
    /// Called only once that holder's lease could no longer act. Returns
    /// what the journal said at the takeover, or None when the latch is
    /// not `started` (finished, or absent).
    pub async fn claim_rollback_latch(
        &self,
        soak_id: &str,
    ) -> Result<Option<LatchClaim>, StoreError> {
        let _one_writer = self.rollback_writes.lock().await;
        let key = format!("rollback.{soak_id}");
        let Some(held) = self.fence.held() else {
            return Err(StoreError::NotLeader);
        };
        for _ in 0..5 {
            let Some(e) = self.get(&key).await? else {
                return Ok(None);
            };
            let mut rec: RollbackRec = decode(&e.value)?;
            if rec.state != RollbackState::Started {
                return Ok(None);
            }
            let claim = LatchClaim {
                acted_step: rec.acting.map(|(step, _)| step),
                previous_holder: rec.holder.clone(),
            };
            if rec.holder.as_deref() == Some(held.term_id().as_str()) {
                return Ok(Some(claim));
            }
            rec.holder = Some(held.term_id());
            rec.lease_revision = Some(held.revision);
            self.may_write()?;
            match self.kv.update(&key, encode(&rec)?.into(), e.revision).await {
                Ok(_) => return Ok(Some(claim)),
                Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(err) => return Err(nats_err("taking over the rollback latch", err)),
            }
        }
        Err(nats_err(
            "taking over the rollback latch",
            "the journal kept changing",
        ))
    }

    /// The rollback record of a soak.
    pub async fn rollback_record<T: serde::de::DeserializeOwned>(
        &self,
        soak_id: &str,
    ) -> Result<Option<RollbackRow<T>>, StoreError> {
        let Some(e) = self.get(&format!("rollback.{soak_id}")).await? else {
            return Ok(None);
        };
        let rec: RollbackRec = decode(&e.value)?;
        Ok(Some(RollbackRow {
            state: rec.state,
            trigger: rec.trigger,
            started: at(rec.started_ms),
            finished: rec.finished_ms.and_then(DateTime::from_timestamp_millis),
            steps: rec.steps.map(|b| decode(&b)).transpose()?,
            holder: rec.holder.map(|h| (h, rec.lease_revision.unwrap_or(0))),
            acting: rec.acting,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_chosen_names_become_key_safe_and_stay_distinct() {
        for name in ["hook", "a.b", "a b", "ümlaut", "*", ">"] {
            let k = part(name);
            assert!(k.chars().all(|c| c.is_ascii_hexdigit()), "{k}");
            assert_eq!(hex::decode(&k).ok().as_deref(), Some(name.as_bytes()));
        }
        assert_ne!(part("a.b"), part("a_b"));
    }

    /// The rollback record as written before its state was typed.
    #[derive(Serialize)]
    struct OldRollbackRec {
        state: String,
        trigger: String,
        started_ms: i64,
        finished_ms: Option<i64>,
        steps: Option<Vec<u8>>,
        holder: Option<String>,
        lease_revision: Option<u64>,
        acting: Option<(usize, u64)>,
    }

    #[test]
    fn a_rollback_record_written_with_the_old_strings_still_reads() {
        for (old, new) in [
            ("started", RollbackState::Started),
            ("done", RollbackState::Done),
            ("failed", RollbackState::Failed),
            ("dry_run", RollbackState::DryRun),
            ("interrupted", RollbackState::Interrupted),
        ] {
            let bytes = encode(&OldRollbackRec {
                state: old.into(),
                trigger: "dlq for 5m".into(),
                started_ms: 1_700_000_000_000,
                finished_ms: None,
                steps: None,
                holder: Some("w1".into()),
                lease_revision: Some(7),
                acting: Some((2, 7)),
            })
            .expect("encode");
            let rec: RollbackRec = decode(&bytes).expect("an old record decodes");
            assert_eq!(rec.state, new);
            assert_eq!(rec.acting, Some((2, 7)));
            // And it is written back with the same string.
            let again = encode(&rec).expect("encode");
            let raw: serde_json::Value = decode(&again).expect("raw");
            assert_eq!(raw.get("state").and_then(|v| v.as_str()), Some(old));
        }
    }

    /// Two terms' stores on one real bucket (the shared NATS, R1).
    async fn two_terms(bucket: &str) -> Option<(JetStreamStore, JetStreamStore)> {
        let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/checks.toml"))
            .expect("checks.toml");
        let text = format!("{shipped}\n[state]\nbackend = \"jetstream\"\nbucket = \"{bucket}\"\n");
        let cfg =
            crate::config::Config::from_text(std::path::Path::new("t.toml"), &text, &|_: &str| {
                None::<String>
            })
            .expect("config");
        let open = || JetStreamStore::open(&cfg.state, Access::Leader);
        let a = open()
            .await
            .expect("NATS at 127.0.0.1:4222 (scripts/ensure-services.sh)");
        let b = open().await.expect("second store");
        Some((a, b))
    }

    async fn drop_bucket(s: &JetStreamStore) {
        for name in [
            format!("KV_{}", s.prefix),
            s.cycles_stream.clone(),
            s.snaps_stream.clone(),
        ] {
            let _ = s.js.delete_stream(&name).await;
        }
    }

    #[tokio::test]
    async fn a_deposed_terms_late_state_write_is_refused_and_closes_its_fence() {
        let bucket = format!("swtest_fenced_{}", std::process::id());
        let (a, b) = two_terms(&bucket).await.expect("stores");
        let held = |holder: &str, term| crate::state::lease::Held {
            holder: holder.into(),
            revision: term,
            term,
        };
        a.fence()
            .open_for_test(Duration::from_secs(60), held("a", 1));
        let key = "alert.s1.x";
        a.put(key, b"a1".to_vec()).await.expect("a's first write");
        a.put(key, b"a2".to_vec()).await.expect("a's second write");
        // B wins the lease while A still believes its fence is open (a
        // write A sent before it closed, applied late).
        b.fence()
            .open_for_test(Duration::from_secs(60), held("b", 2));
        b.put(key, b"b1".to_vec())
            .await
            .expect("b's first write in its term");
        let late = a.put(key, b"a3".to_vec()).await;
        assert!(matches!(late, Err(StoreError::NotLeader)), "{late:?}");
        assert!(!a.fence().is_open(), "a deposed writer's fence closes");
        let now = b.get(key).await.expect("read").expect("key");
        assert_eq!(&now.value[..], b"b1", "the new term's value stands");
        // The new term goes on writing; a key it never wrote is written
        // whatever revision it has.
        b.put(key, b"b2".to_vec()).await.expect("b again");
        b.put("ckpt.s1.x", b"p".to_vec())
            .await
            .expect("a fresh key");
        drop_bucket(&b).await;
    }
}
