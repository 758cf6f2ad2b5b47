//! Leader election between watchers sharing a JetStream state: one KV key,
//! `lease`, taken with `create` and renewed with `update` on its last
//! revision (compare-and-set). Nothing but the server's revision decides.
//!
//! Timing rests on each process's monotonic clock, never on wall clocks
//! agreeing: the leader counts its lease from the moment it *sent* a
//! renewal and stops acting one interval before the lease ends (its
//! [`Fence`] closes); a standby takes over only once it has seen the same
//! revision for a whole lease. The standby saw that revision after the
//! leader sent it, so the old leader's fence is closed before the takeover.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

const KEY: &str = "lease";

/// The gate every write of a leader passes: open while its lease is held.
#[derive(Debug)]
pub struct Fence {
    enforced: bool,
    until: Mutex<Option<Instant>>,
}

impl Fence {
    /// A fence; one not enforced is always open (a manual write beside the daemon).
    pub fn new(enforced: bool) -> Fence {
        Fence {
            enforced,
            until: Mutex::new(None),
        }
    }

    /// Whether this process may write and act now.
    pub fn is_open(&self) -> bool {
        if !self.enforced {
            return true;
        }
        self.until
            .lock()
            .map(|u| u.is_some_and(|u| Instant::now() < u))
            .unwrap_or(false)
    }

    fn open_until(&self, t: Instant) {
        if let Ok(mut u) = self.until.lock() {
            *u = Some(t);
        }
    }

    fn close(&self) {
        if let Ok(mut u) = self.until.lock() {
            *u = None;
        }
    }
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

impl Lease {
    /// Starts campaigning: polls (standby) or renews (leader) every half
    /// interval; `lease` is how long an unrenewed lease stands.
    pub fn start(kv: kv::Store, fence: Arc<Fence>, interval: Duration, lease: Duration) -> Lease {
        let holder = format!("{}-{}-{:08x}", hostname(), std::process::id(), rand_u32());
        let (tx, rx) = watch::channel(Role::default());
        let stop = tokio_util::sync::CancellationToken::new();
        let mut c = Campaign {
            kv,
            fence,
            holder: holder.clone(),
            margin: interval,
            lease,
            mine: None,
            seen: None,
            role: tx,
        };
        let s = stop.clone();
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
    /// The revision of our own last write, while leading.
    mine: Option<u64>,
    /// A standby's view: the lease's revision and when it was first seen.
    seen: Option<(u64, Instant)>,
    role: watch::Sender<Role>,
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

    fn won(&mut self, sent: Instant, revision: u64) {
        self.mine = Some(revision);
        self.seen = None;
        self.fence
            .open_until(sent + self.lease.saturating_sub(self.margin));
        self.set_leader(true);
    }

    async fn step(&mut self) {
        if let Some(rev) = self.mine {
            if !self.fence.is_open() {
                // Could not renew in time: the fence closed by itself.
                self.mine = None;
                self.set_leader(false);
            } else {
                let sent = Instant::now();
                match self.kv.update(KEY, self.value().into(), rev).await {
                    Ok(r) => self.won(sent, r),
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
        self.campaign().await;
    }

    async fn campaign(&mut self) {
        let sent = Instant::now();
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
                Ok(r) => self.won(sent, r),
                Err(e) => tracing::debug!(error = %e, "lease taken by another watcher"),
            }
            return;
        }
        let Some(e) = entry else { return };
        match self.seen {
            Some((rev, since)) if rev == e.revision => {
                if since.elapsed() >= self.lease {
                    let sent = Instant::now();
                    if let Ok(r) = self.kv.update(KEY, self.value().into(), rev).await {
                        tracing::warn!(
                            revision = rev,
                            "the leader's lease expired unrenewed: taking over"
                        );
                        self.won(sent, r);
                    }
                }
            }
            _ => self.seen = Some((e.revision, Instant::now())),
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
        let f = Fence::new(true);
        assert!(!f.is_open(), "closed before any lease");
        f.open_until(Instant::now() + Duration::from_secs(60));
        assert!(f.is_open());
        f.open_until(Instant::now());
        assert!(!f.is_open(), "closed once the deadline is reached");
        f.open_until(Instant::now() + Duration::from_secs(60));
        f.close();
        assert!(!f.is_open(), "closed when the lease is lost");
        assert!(Fence::new(false).is_open());
    }
}
