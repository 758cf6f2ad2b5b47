//! Leader election between watchers sharing a JetStream state: one KV key,
//! `lease`, taken with `create` and renewed with `update` on its last
//! revision (compare-and-set). Nothing but the server's revision decides.
//!
//! Timing rests on each process's boot-time clock (`CLOCK_BOOTTIME`, which
//! keeps counting through a host suspend, unlike `CLOCK_MONOTONIC`), never
//! on wall clocks agreeing: the leader counts its lease from the moment it
//! *sent* a renewal and stops acting one interval before the lease ends (its
//! [`Fence`] closes); a standby takes over only once it has seen the same
//! revision for a whole lease. The standby saw that revision after the
//! leader sent it, so the old leader's fence is closed before the takeover.
//! A suspended leader wakes with its fence closed: the suspend counted.
//!
//! Two more guards make the rollback exactly-once rather than at most once
//! per fence: every step with an outside effect first re-reads the lease
//! and acts only while the key still names this holder ([`confirm`]), and a
//! watcher whose wall clock differs from the NATS server's by more than the
//! allowed skew refuses to lead (the soak's time would otherwise jump).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Time since boot, suspend included: the clock every lease deadline is on.
pub fn boot_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the pointer it is
    // given, which points to a live, properly aligned local.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        // CLOCK_BOOTTIME exists on every Linux since 2.6.39; should it not,
        // the monotonic clock is the best left (it misses suspends).
        return monotonic_fallback();
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

fn monotonic_fallback() -> Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

const KEY: &str = "lease";

/// The gate every write of a leader passes: open while its lease is held.
#[derive(Debug)]
pub struct Fence {
    enforced: bool,
    /// Boot-clock deadline.
    until: Mutex<Option<Duration>>,
    /// Who holds the lease in this process and on which revision (set when
    /// the lease is won or renewed): the latch and the journal name it.
    held: Mutex<Option<Held>>,
}

/// This process's hold on the lease: its holder id, the key's revision and
/// which of this process's terms it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The holder id written in the lease key.
    pub holder: String,
    /// The lease key's revision of the last renewal.
    pub revision: u64,
    /// This process's term as leader (1, 2, … each time it wins the lease).
    pub term: u64,
}

impl Held {
    /// The identity a latch and its marks carry: holder and term, so a
    /// rollback task left over from an earlier term of the same process
    /// (it lost the lease and won it again) is not taken for this term's.
    pub fn term_id(&self) -> String {
        format!("{}#{}", self.holder, self.term)
    }
}

impl Fence {
    /// A fence; one not enforced is always open (a manual write beside the daemon).
    pub fn new(enforced: bool) -> Fence {
        Fence {
            enforced,
            until: Mutex::new(None),
            held: Mutex::new(None),
        }
    }

    /// Whether this process may write and act now.
    pub fn is_open(&self) -> bool {
        if !self.enforced {
            return true;
        }
        let now = boot_now();
        self.until
            .lock()
            .map(|u| u.is_some_and(|u| now < u))
            .unwrap_or(false)
    }

    /// Whether this fence is a leader's (a JetStream state's daemon).
    pub fn is_enforced(&self) -> bool {
        self.enforced
    }

    /// The lease as this process last held it (None when not leading).
    pub fn held(&self) -> Option<Held> {
        self.held.lock().ok().and_then(|h| h.clone())
    }

    fn open_until(&self, t: Duration, held: Held) {
        if let Ok(mut u) = self.until.lock() {
            *u = Some(t);
        }
        if let Ok(mut h) = self.held.lock() {
            *h = Some(held);
        }
    }

    /// Opens the fence for `for_how_long` as term `held` (tests of what a
    /// store does with a term, without a lease campaign's timing).
    #[cfg(test)]
    pub(crate) fn open_for_test(&self, for_how_long: Duration, held: Held) {
        self.open_until(boot_now() + for_how_long, held);
    }

    /// Closes the fence because the server refused a write of this term
    /// (a newer term wrote since): nothing more is written or done.
    pub fn close_for_write(&self) {
        if self.enforced {
            self.close();
        }
    }

    fn close(&self) {
        if let Ok(mut u) = self.until.lock() {
            *u = None;
        }
        if let Ok(mut h) = self.held.lock() {
            *h = None;
        }
    }
}

/// Checks, immediately before an outside effect (the env edit, the restart,
/// the E2E publish), that this process still leads: its fence is open and
/// the lease key, read now from the server, names this holder. Returns the
/// lease revision it acts under (for the journal), or why it may not act.
/// A deposed leader that resumes after a freeze, a partition or a suspend
/// is refused here even if its own clock says its lease stands.
pub async fn confirm(kv: &kv::Store, fence: &Fence, term_id: Option<&str>) -> Result<u64, String> {
    if !fence.is_enforced() {
        return Ok(0);
    }
    if !fence.is_open() {
        return Err("this watcher's lease is no longer held (fence closed)".into());
    }
    let Some(held) = fence.held() else {
        return Err("this watcher holds no lease".into());
    };
    if let Some(want) = term_id.filter(|t| *t != held.term_id()) {
        return Err(format!(
            "the rollback began in term {want}; this process leads in term {} now",
            held.term_id()
        ));
    }
    let entry = tokio::time::timeout(Duration::from_secs(5), kv.entry(KEY))
        .await
        .map_err(|_| "the lease could not be read within 5s".to_string())?
        .map_err(|e| format!("the lease could not be read: {e}"))?;
    let Some(e) = entry.filter(|e| e.operation == kv::Operation::Put) else {
        return Err("the lease key is empty: no watcher leads".into());
    };
    let who = serde_json::from_slice::<Holder>(&e.value)
        .map(|h| h.holder)
        .unwrap_or_default();
    if who != held.holder {
        return Err(format!(
            "the lease is held by {who} now (revision {})",
            e.revision
        ));
    }
    // Checked after the read: a fence that closed meanwhile still refuses.
    if !fence.is_open() {
        return Err("this watcher's lease expired while it was checked".into());
    }
    Ok(e.revision)
}

/// What the lease key holds (for people reading the bucket).
#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    holder: String,
    renewed_at: chrono::DateTime<chrono::Utc>,
}

/// This watcher's role, and how many times it became leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Role {
    /// Holds the lease now.
    pub leader: bool,
    /// Terms as leader so far (a new term means: reload the state).
    pub term: u64,
}

/// The running election of one watcher; dropping it stops campaigning.
pub struct Lease {
    role: watch::Receiver<Role>,
    task: tokio::task::JoinHandle<()>,
    stop: tokio_util::sync::CancellationToken,
    holder: String,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// How a lease is run: its length, the fence's margin and the wall-clock
/// skew tolerated against the NATS server.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    /// The cycle interval: the fence closes this long before the lease ends.
    pub interval: Duration,
    /// How long an unrenewed lease stands.
    pub lease: Duration,
    /// A leader whose wall clock differs from the server's by more than
    /// this steps down (and a standby does not take over).
    pub max_clock_skew: Duration,
}

impl Lease {
    /// Starts campaigning: polls (standby) or renews (leader) every half
    /// interval.
    pub fn start(kv: kv::Store, fence: Arc<Fence>, timing: LeaseTiming) -> Lease {
        let holder = format!("{}-{}-{:08x}", hostname(), std::process::id(), rand_u32());
        let (tx, rx) = watch::channel(Role::default());
        let stop = tokio_util::sync::CancellationToken::new();
        let mut c = Campaign {
            kv,
            fence,
            holder: holder.clone(),
            margin: timing.interval,
            lease: timing.lease,
            max_skew: timing.max_clock_skew,
            mine: None,
            seen: None,
            skewed_until: None,
            role: tx,
            term: 0,
        };
        let s = stop.clone();
        let interval = timing.interval;
        let task = tokio::spawn(async move {
            let tick = (interval / 2).max(Duration::from_millis(50));
            loop {
                c.step().await;
                tokio::select! {
                    _ = s.cancelled() => break,
                    _ = tokio::time::sleep(tick) => {}
                }
            }
            c.release().await;
        });
        Lease {
            role: rx,
            task,
            stop,
            holder,
        }
    }

    /// The role now.
    pub fn role(&self) -> Role {
        *self.role.borrow()
    }

    /// Keeps `publish(leader, term)` current until the election stops:
    /// leader means the lease is held *and* the fence is open, checked
    /// every 100 ms, so a leader stuck in a write reports standby on time.
    pub fn publish_role(&self, fence: Arc<Fence>, publish: impl Fn(bool, u64) + Send + 'static) {
        let rx = self.role.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                let r = *rx.borrow();
                publish(r.leader && fence.is_open(), r.term);
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        });
    }

    /// This watcher's holder id (host, pid and a random part).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Waits until this watcher leads, or `stop` is cancelled (false).
    pub async fn wait_leader(&mut self, stop: &tokio_util::sync::CancellationToken) -> bool {
        loop {
            if self.role.borrow().leader {
                return true;
            }
            tokio::select! {
                _ = stop.cancelled() => return false,
                r = self.role.changed() => if r.is_err() { return false },
            }
        }
    }

    /// Stops campaigning and hands the lease over at once (a clean stop).
    pub async fn release(mut self) {
        self.stop.cancel();
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
}

struct Campaign {
    kv: kv::Store,
    fence: Arc<Fence>,
    holder: String,
    margin: Duration,
    lease: Duration,
    max_skew: Duration,
    /// The revision of our own last write, while leading.
    mine: Option<u64>,
    /// A standby's view: the lease's revision and when (boot clock) it was first seen.
    seen: Option<(u64, Duration)>,
    /// After stepping down for clock skew: no campaign before this (boot clock).
    skewed_until: Option<Duration>,
    role: watch::Sender<Role>,
    /// Terms won so far (the current one while leading).
    term: u64,
}

impl Campaign {
    fn value(&self) -> Vec<u8> {
        serde_json::to_vec(&Holder {
            holder: self.holder.clone(),
            renewed_at: chrono::Utc::now(),
        })
        .unwrap_or_default()
    }

    fn set_leader(&mut self, leader: bool) {
        let now = self.role.borrow().leader;
        if now == leader {
            return;
        }
        self.role.send_modify(|r| {
            r.leader = leader;
            if leader {
                r.term += 1;
            }
        });
        if leader {
            tracing::warn!(holder = %self.holder, "leader lease taken: this watcher leads");
        } else {
            tracing::warn!(holder = %self.holder, "leader lease lost: stepping down to standby");
        }
    }

    /// A write of ours landed at `revision`: the fence stands until the
    /// lease counted from `sent` ends, less the margin, unless this
    /// watcher's clock disagrees with the server's.
    async fn won(
        &mut self,
        sent: Duration,
        sent_wall: chrono::DateTime<chrono::Utc>,
        revision: u64,
    ) {
        self.mine = Some(revision);
        self.seen = None;
        if let Some(skew) = self.skew(sent_wall, revision).await {
            tracing::error!(
                holder = %self.holder,
                skew_ms = skew.num_milliseconds(),
                max_ms = self.max_skew.as_millis() as u64,
                "refusing to lead: this host's wall clock differs from the NATS server's by more than [state] max_clock_skew; the soak's time would jump (fix NTP on this host)"
            );
            self.release().await;
            self.skewed_until = Some(boot_now() + self.lease);
            return;
        }
        if !self.role.borrow().leader {
            self.term += 1;
        }
        self.fence.open_until(
            sent + self.lease.saturating_sub(self.margin),
            Held {
                holder: self.holder.clone(),
                revision,
                term: self.term,
            },
        );
        self.set_leader(true);
    }

    /// The server's time of our write `revision` against our wall clock
    /// around it; Some(skew) when it is beyond the allowed skew.
    async fn skew(
        &self,
        sent_wall: chrono::DateTime<chrono::Utc>,
        revision: u64,
    ) -> Option<chrono::Duration> {
        let e = self.kv.entry(KEY).await.ok().flatten()?;
        if e.revision != revision {
            return None;
        }
        let back = chrono::Utc::now();
        let server =
            chrono::DateTime::from_timestamp(e.created.unix_timestamp(), e.created.nanosecond())?;
        // Our clock's best estimate of the write's moment: the middle of the round trip.
        let local = sent_wall + (back - sent_wall) / 2;
        let skew = server - local;
        let max = chrono::Duration::from_std(self.max_skew).unwrap_or(chrono::Duration::MAX);
        let slack = (back - sent_wall) / 2;
        (skew.abs() > max + slack).then_some(skew)
    }

    async fn step(&mut self) {
        if let Some(rev) = self.mine {
            if !self.fence.is_open() {
                // Could not renew in time: the fence closed by itself.
                self.mine = None;
                self.fence.close();
                self.set_leader(false);
            } else {
                let (sent, wall) = (boot_now(), chrono::Utc::now());
                match self.kv.update(KEY, self.value().into(), rev).await {
                    Ok(r) => self.won(sent, wall, r).await,
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                        self.fence.close();
                        self.mine = None;
                        self.set_leader(false);
                    }
                    Err(e) => tracing::warn!(error = %e, "leader lease not renewed; retrying"),
                }
                return;
            }
        }
        if self.skewed_until.is_some_and(|t| boot_now() < t) {
            return;
        }
        self.campaign().await;
    }

    async fn campaign(&mut self) {
        let (sent, wall) = (boot_now(), chrono::Utc::now());
        let entry = match self.kv.entry(KEY).await {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "lease unreadable");
                return;
            }
        };
        let free = entry
            .as_ref()
            .is_none_or(|e| e.operation != kv::Operation::Put);
        if free {
            match self.kv.create(KEY, self.value().into()).await {
                Ok(r) => self.won(sent, wall, r).await,
                Err(e) => tracing::debug!(error = %e, "lease taken by another watcher"),
            }
            return;
        }
        let Some(e) = entry else { return };
        match self.seen {
            Some((rev, since)) if rev == e.revision => {
                if boot_now().saturating_sub(since) >= self.lease {
                    let (sent, wall) = (boot_now(), chrono::Utc::now());
                    if let Ok(r) = self.kv.update(KEY, self.value().into(), rev).await {
                        tracing::warn!(
                            revision = rev,
                            "the leader's lease expired unrenewed: taking over"
                        );
                        self.won(sent, wall, r).await;
                    }
                }
            }
            _ => self.seen = Some((e.revision, boot_now())),
        }
    }

    /// Deletes our lease on a clean stop, so a standby takes over at once.
    async fn release(&mut self) {
        self.fence.close();
        if let Some(rev) = self.mine.take() {
            let _ = self.kv.delete_expect_revision(KEY, Some(rev)).await;
        }
        self.set_leader(false);
    }
}

/// The watcher holding the lease in `kv` now: its holder name and when it
/// last renewed, if that was less than `lease` ago (an unrenewed lease is
/// nobody's). For tools that must not write beside a leader (`state
/// migrate`); a read error is reported, not taken for "free".
pub async fn current_holder(
    kv: &kv::Store,
    lease: Duration,
) -> Result<Option<(String, chrono::DateTime<chrono::Utc>)>, kv::EntryError> {
    let Some(bytes) = kv.get(KEY).await? else {
        return Ok(None);
    };
    let Ok(h) = serde_json::from_slice::<Holder>(&bytes) else {
        return Ok(None);
    };
    let age = chrono::Utc::now() - h.renewed_at;
    let stands = age < crate::duration::delta(lease);
    Ok(stands.then_some((h.holder, h.renewed_at)))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_is_open_only_until_its_deadline_and_an_unenforced_one_always() {
        let held = || Held {
            holder: "h".into(),
            revision: 7,
            term: 2,
        };
        assert_eq!(held().term_id(), "h#2");
        let f = Fence::new(true);
        assert!(!f.is_open(), "closed before any lease");
        f.open_until(boot_now() + Duration::from_secs(60), held());
        assert!(f.is_open());
        assert_eq!(f.held(), Some(held()));
        f.open_until(boot_now(), held());
        assert!(!f.is_open(), "closed once the deadline is reached");
        f.open_until(boot_now() + Duration::from_secs(60), held());
        f.close();
        assert!(!f.is_open(), "closed when the lease is lost");
        assert_eq!(f.held(), None);
        assert!(Fence::new(false).is_open());
    }

    #[test]
    fn the_boot_clock_moves_forward() {
        let a = boot_now();
        std::thread::sleep(Duration::from_millis(5));
        assert!(boot_now() > a);
    }
}
