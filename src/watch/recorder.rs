//! The recorder: the daemon's one stage that writes the soak's record (the
//! soak itself, this leader's term marker, every cycle with its snapshot,
//! checkpoint marks) to the state, in order, on its own task.
//!
//! Why a task: a state that is slow to answer (a JetStream stream leader
//! being re-elected, a node lost, a full disk) must not make sampling and
//! judging late, and a write that takes longer than a cycle's budget must
//! go on rather than be cancelled and started again. The loop hands each
//! cycle over and waits for it at most its budget; what is not written yet
//! stays queued here (bounded: the oldest are dropped and counted) and is
//! retried until it lands or this watcher stops leading (the store's fence
//! then refuses every write).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use crate::sample::Snapshot;
use crate::soak::timeline::CycleRecord;
use crate::state::store::{SoakRecord, Store, StoreError};

/// Cycles kept while the state refuses writes: about 5.5 h at 10 s; older
/// ones are dropped (and counted) rather than letting memory grow for the
/// rest of the soak.
pub const MAX_UNSAVED_CYCLES: usize = 2000;

/// How long the recorder waits before trying a refused write again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What the loop hands the recorder.
enum Job {
    /// A new soak: recorded before any of its cycles.
    NewSoak(Box<SoakRecord>, DateTime<Utc>),
    /// One judged cycle and the snapshot it was judged on.
    Cycle(String, Box<CycleRecord>, Box<Snapshot>),
    /// A checkpoint report written to disk, to mark as written.
    Checkpoint(String, String, PathBuf, DateTime<Utc>),
    /// Answer once everything handed over before is written or was tried.
    Flush(oneshot::Sender<()>),
}

/// How far the recorder is, for the status (`soakwatch_unsaved_cycles`,
/// `soakwatch_lost_cycles_total`) and the `soakwatch_self` alert.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecorderProgress {
    /// Cycles handed over and not yet in the state.
    pub unsaved: usize,
    /// Cycles dropped because the queue overflowed.
    pub lost: u64,
    /// Whether the current soak's record is in the state.
    pub soak_saved: bool,
    /// Checkpoint marks not yet written, by label.
    pub unmarked: Vec<String>,
    /// Why the last attempt failed (None: everything handed over is written).
    pub failing: Option<String>,
}

/// The handle the loop keeps; the task stops when it is dropped.
pub struct Recorder {
    jobs: mpsc::UnboundedSender<Job>,
    progress: Arc<Mutex<RecorderProgress>>,
}

impl Recorder {
    /// Starts the recorder's task on `store`.
    pub fn start(store: Arc<Store>) -> Recorder {
        let (jobs, rx) = mpsc::unbounded_channel();
        let progress = Arc::new(Mutex::new(RecorderProgress {
            soak_saved: true,
            ..Default::default()
        }));
        tokio::spawn(run(store, rx, progress.clone()));
        Recorder { jobs, progress }
    }

    /// Records a new soak (before its cycles).
    pub fn new_soak(&self, rec: &SoakRecord, now: DateTime<Utc>) {
        if let Ok(mut p) = self.progress.lock() {
            p.soak_saved = false;
        }
        let _ = self.jobs.send(Job::NewSoak(Box::new(rec.clone()), now));
    }

    /// Hands over one cycle of soak `soak_id`.
    pub fn cycle(&self, soak_id: &str, rec: &CycleRecord, snap: &Snapshot) {
        if let Ok(mut p) = self.progress.lock() {
            p.unsaved += 1;
        }
        let _ = self.jobs.send(Job::Cycle(
            soak_id.to_string(),
            Box::new(rec.clone()),
            Box::new(snap.clone()),
        ));
    }

    /// Hands over a checkpoint mark.
    pub fn checkpoint(&self, soak_id: &str, label: &str, path: PathBuf, now: DateTime<Utc>) {
        if let Ok(mut p) = self.progress.lock() {
            p.unmarked.push(label.to_string());
        }
        let _ = self.jobs.send(Job::Checkpoint(
            soak_id.to_string(),
            label.to_string(),
            path,
            now,
        ));
    }

    /// Waits until what was handed over so far has been written (or tried
    /// once), at most `budget`; the writes go on after it either way.
    pub async fn flush(&self, budget: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Job::Flush(tx)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(budget, rx).await, Ok(Ok(())))
    }

    /// Where the recorder stands now.
    pub fn progress(&self) -> RecorderProgress {
        self.progress.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

/// A write the state refused, named by what it was.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
struct Refused {
    what: &'static str,
    source: StoreError,
}

impl Refused {
    fn by(what: &'static str) -> impl FnOnce(StoreError) -> Refused {
        move |source| Refused { what, source }
    }
}

/// What the task holds: the soak record to write, whether this term's
/// marker is written, the cycles and marks in order.
#[derive(Default)]
struct Queue {
    soak: Option<(Box<SoakRecord>, DateTime<Utc>)>,
    /// Soak ids whose term marker this process has written.
    term_begun: Option<String>,
    cycles: VecDeque<(String, Box<CycleRecord>, Box<Snapshot>)>,
    marks: VecDeque<(String, String, PathBuf, DateTime<Utc>)>,
    lost: u64,
    failing: Option<String>,
}

impl Queue {
    fn take(&mut self, job: Job, flushes: &mut Vec<oneshot::Sender<()>>) {
        match job {
            Job::NewSoak(rec, now) => self.soak = Some((rec, now)),
            Job::Cycle(id, rec, snap) => {
                self.cycles.push_back((id, rec, snap));
                while self.cycles.len() > MAX_UNSAVED_CYCLES {
                    self.cycles.pop_front();
                    self.lost += 1;
                    if self.lost == 1 || self.lost.is_multiple_of(100) {
                        tracing::error!(
                            lost = self.lost,
                            "state unwritable for too long: oldest unsaved cycles dropped"
                        );
                    }
                }
            }
            Job::Checkpoint(id, label, path, now) => self.marks.push_back((id, label, path, now)),
            Job::Flush(tx) => flushes.push(tx),
        }
    }

    fn is_empty(&self) -> bool {
        self.soak.is_none() && self.cycles.is_empty() && self.marks.is_empty()
    }

    /// Writes what is queued, oldest first, stopping at the first refusal
    /// (kept, with its reason, for the next try).
    async fn write(&mut self, store: &Store) {
        if self.failing.is_some() {
            // Space freed on a full disk is not eaten by the WAL again.
            store.checkpoint_wal().await;
        }
        self.failing = self.try_write(store).await.err().map(|e| e.to_string());
    }

    async fn try_write(&mut self, store: &Store) -> Result<(), Refused> {
        if let Some((rec, now)) = &self.soak {
            store
                .start_soak(rec, *now)
                .await
                .map_err(Refused::by("recording the soak"))?;
            tracing::info!(soak = %rec.meta.id, "new soak recorded");
            self.soak = None;
        }
        while let Some((id, rec, snap)) = self.cycles.front() {
            if self.term_begun.as_deref() != Some(id.as_str()) {
                store
                    .begin_term(id)
                    .await
                    .map_err(Refused::by("starting this leader's term"))?;
                self.term_begun = Some(id.clone());
            }
            // No count in the reason: it is logged once per change
            // (`soakwatch_unsaved_cycles` has the count).
            store
                .append(id, rec, snap)
                .await
                .map_err(Refused::by("appending a cycle"))?;
            self.cycles.pop_front();
        }
        while let Some((id, label, path, now)) = self.marks.front() {
            store
                .mark_checkpoint(id, label, path, *now)
                .await
                .map_err(Refused::by("marking a checkpoint"))?;
            self.marks.pop_front();
        }
        Ok(())
    }

    fn progress(&self) -> RecorderProgress {
        RecorderProgress {
            unsaved: self.cycles.len(),
            lost: self.lost,
            soak_saved: self.soak.is_none(),
            unmarked: self.marks.iter().map(|m| m.1.clone()).collect(),
            failing: self.failing.clone(),
        }
    }
}

/// The task: takes every job handed over, writes, publishes its progress,
/// and retries a refused write after [`RETRY_AFTER`].
async fn run(
    store: Arc<Store>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    progress: Arc<Mutex<RecorderProgress>>,
) {
    let mut q = Queue::default();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let job = if q.is_empty() {
            match jobs.recv().await {
                Some(j) => Some(j),
                None => return,
            }
        } else {
            tokio::select! {
                j = jobs.recv() => match j {
                    Some(j) => Some(j),
                    None => return,
                },
                _ = tokio::time::sleep(RETRY_AFTER) => None,
            }
        };
        if let Some(j) = job {
            q.take(j, &mut flushes);
        }
        while let Ok(j) = jobs.try_recv() {
            q.take(j, &mut flushes);
        }
        if !q.is_empty() {
            q.write(&store).await;
        }
        if let Ok(mut p) = progress.lock() {
            *p = q.progress();
        }
        for tx in flushes.drain(..) {
            let _ = tx.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::timeline::SoakMeta;
    use crate::state::store::Baselines;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default()
    }

    fn snap(s: i64) -> Snapshot {
        Snapshot::nothing_configured(at(s))
    }

    fn soak() -> SoakRecord {
        SoakRecord {
            meta: SoakMeta {
                id: "s1".into(),
                name: "s".into(),
                t0: at(0),
                planned_secs: 3600.0,
            },
            baselines: Baselines::default(),
        }
    }

    fn cycle(cfg: &crate::config::Config, s: i64) -> (CycleRecord, Snapshot) {
        let sn = snap(s);
        let (rec, _) = CycleRecord::evaluate(cfg, None, &sn, Duration::from_secs(60));
        (rec, sn)
    }

    fn shipped() -> crate::config::Config {
        crate::config::shipped_for_tests()
    }

    #[tokio::test]
    async fn cycles_handed_over_land_in_order_after_the_soak_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(
            Store::open(&dir.path().join("s.sqlite"))
                .await
                .expect("open"),
        );
        let cfg = shipped();
        let r = Recorder::start(store.clone());
        r.new_soak(&soak(), at(0));
        assert!(!r.progress().soak_saved, "not saved until written");
        for s in [0, 10, 20] {
            let (rec, sn) = cycle(&cfg, s);
            r.cycle("s1", &rec, &sn);
        }
        r.checkpoint("s1", "24h", dir.path().join("s1-24h.md"), at(20));
        assert!(r.flush(Duration::from_secs(10)).await, "flushed");
        let p = r.progress();
        assert_eq!(
            (p.unsaved, p.lost, p.soak_saved, p.failing.clone()),
            (0, 0, true, None),
            "{p:?}"
        );
        let stored: Vec<_> = store
            .cycles("s1")
            .await
            .expect("read")
            .iter()
            .map(|c| c.at)
            .collect();
        assert_eq!(stored, vec![at(0), at(10), at(20)]);
        assert!(store
            .checkpoints_done("s1")
            .await
            .expect("marks")
            .contains(&"24h".to_string()));
    }

    #[tokio::test]
    async fn a_refused_write_stays_queued_with_its_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.sqlite");
        drop(Store::open(&path).await.expect("create"));
        // Opened read-only: every write is refused.
        let store = Arc::new(Store::open_read_only(&path).await.expect("open"));
        let cfg = shipped();
        let r = Recorder::start(store);
        r.new_soak(&soak(), at(0));
        let (rec, sn) = cycle(&cfg, 0);
        r.cycle("s1", &rec, &sn);
        assert!(r.flush(Duration::from_secs(10)).await, "tried once");
        let p = r.progress();
        assert!(!p.soak_saved, "{p:?}");
        assert_eq!(p.unsaved, 1, "{p:?}");
        let why = p.failing.unwrap_or_default();
        assert!(why.starts_with("recording the soak:"), "{why}");
    }
}
