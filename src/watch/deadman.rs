//! The dead-man's switch: pings to a healthchecks.io-compatible URL
//! (`[heartbeat] url`), so that a watcher that dies, hangs or goes blind is
//! noticed by someone else. Not to be confused with [`super::notify::Heartbeat`],
//! the systemd watchdog's proof of life on the same machine.
//!
//! The protocol is healthchecks.io's (self-hosted or not):
//! - `<url>/start?rid=<run id>` when the leader begins watching a soak (T0,
//!   or a restart resuming it); the run id is a UUID derived from the soak
//!   id (healthchecks.io accepts only UUIDs there), the soak id is in the body;
//! - `<url>?rid=<run id>` after a completed cycle, at most once per
//!   `[heartbeat] every` (1 min), the verdict in the body;
//! - `<url>/fail?rid=<run id>` when the watcher is blind: no fresh sample
//!   for two intervals (the cycle loop is stuck while the process lives),
//!   every probe of a kind failing (NATS unreachable: every stream probe),
//!   or the verdict unknown with a probe failing; the reason in the body,
//!   sent at once and again at most once per `every` while it lasts;
//! - a final success ping with the summary in the body when the daemon
//!   stops ([`Deadman::final_ping`]).
//!
//! A daemon that is killed or frozen (SIGSTOP) sends nothing more: the
//! receiver's own period and grace are the switch. Only the leader pings
//! `url`; a standby pings `[heartbeat] standby_url` if one is set.
//!
//! What to send is decided by the pure [`Decider`]; a sender task sends
//! the pings in order, each bounded by `[heartbeat] timeout`, so a receiver
//! that hangs never delays a cycle.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::config::HeartbeatConfig;
use crate::sample::Snapshot;
use crate::secret::SecretUrl;
use crate::soak::model::SoakSummary;
use crate::verdict::Status;

/// Which of healthchecks.io's signals a ping is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `/start`: a run begins.
    Start,
    /// The plain URL: alive and seeing.
    Success,
    /// `/fail`: alive but blind.
    Fail,
}

impl Signal {
    /// The path suffix healthchecks.io reads.
    fn suffix(self) -> &'static str {
        match self {
            Signal::Start => "/start",
            Signal::Success => "",
            Signal::Fail => "/fail",
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Signal::Start => "start",
            Signal::Success => "success",
            Signal::Fail => "fail",
        }
    }
}

/// One ping to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// What it signals.
    pub signal: Signal,
    /// The run id (`?rid=`), when the soak is known.
    pub rid: Option<String>,
    /// The body (plain text, logged by the receiver).
    pub body: String,
}

/// The URL a ping goes to: the configured one with the signal's suffix and
/// the run id.
pub fn ping_url(base: &str, ping: &Ping) -> String {
    let mut url = format!("{}{}", base.trim_end_matches('/'), ping.signal.suffix());
    if let Some(rid) = &ping.rid {
        url.push_str("?rid=");
        url.push_str(rid);
    }
    url
}

/// A run id for a soak: a UUID (version 8, from SHA-256 of the soak id), the
/// same for every restart of the soak, as healthchecks.io wants a UUID.
pub fn run_id(soak_id: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(soak_id.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Why the watcher is blind after this cycle, if it is: every probe of a
/// kind failed, or the verdict is unknown while a probe failed.
pub fn blindness(snap: &Snapshot, verdict: Status) -> Option<String> {
    let outcomes = snap.probe_outcomes();
    let kind =
        |label: &str| -> String { label.split_once(' ').map_or(label, |(k, _)| k).to_string() };
    let mut kinds: std::collections::BTreeMap<String, (usize, usize, Option<String>)> =
        Default::default();
    for (label, failure) in &outcomes {
        let e = kinds.entry(kind(label)).or_default();
        e.0 += 1;
        if let Some(f) = failure {
            e.1 += 1;
            e.2.get_or_insert_with(|| f.to_string());
        }
    }
    let blind: Vec<String> = kinds
        .iter()
        .filter(|(_, (n, failed, _))| *n > 0 && failed == n)
        .map(|(k, (n, _, reason))| {
            let what = if *n == 1 {
                format!("the {k} probe failed")
            } else {
                format!("all {n} {k} probes failed")
            };
            format!("{what}: {}", reason.clone().unwrap_or_default())
        })
        .collect();
    if !blind.is_empty() {
        return Some(blind.join("; "));
    }
    if verdict == Status::Unknown {
        if let Some((label, Some(f))) = outcomes.iter().find(|(_, f)| f.is_some()) {
            return Some(format!("the verdict is unknown; probe {label} failed: {f}"));
        }
    }
    None
}

/// What the leader saw at the end of one cycle.
#[derive(Debug, Clone)]
pub struct CycleView {
    /// The soak.
    pub soak_id: String,
    /// Its T0.
    pub t0: DateTime<Utc>,
    /// The verdict so far, as a line for the body.
    pub verdict_line: String,
    /// Why it is blind, if it is ([`blindness`]).
    pub blind: Option<String>,
}

/// The pure decision of what to ping, given what happened and when.
#[derive(Debug)]
pub struct Decider {
    every: chrono::Duration,
    interval: chrono::Duration,
    /// The soak a `/start` was sent for.
    started: Option<String>,
    /// The run id of the soak being watched.
    rid: Option<String>,
    last_success: Option<DateTime<Utc>>,
    last_fail: Option<DateTime<Utc>>,
    /// The current blindness (None: seeing).
    blind: Option<String>,
    /// When the last cycle completed (wall time).
    last_cycle: Option<DateTime<Utc>>,
}

impl Decider {
    /// A decider pinging successes at most once per `every`, and calling a
    /// silence of two `interval`s a stall.
    pub fn new(every: Duration, interval: Duration) -> Decider {
        Decider {
            every: chrono::Duration::from_std(every).unwrap_or(chrono::Duration::minutes(1)),
            interval: chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::seconds(10)),
            started: None,
            rid: None,
            last_success: None,
            last_fail: None,
            blind: None,
            last_cycle: None,
        }
    }

    /// After a completed cycle at `now`: a `/start` for a soak not yet
    /// announced, then a `/fail` on a new or lasting blindness, or a success
    /// on a recovery or when one is due.
    pub fn on_cycle(&mut self, now: DateTime<Utc>, view: &CycleView) -> Vec<Ping> {
        let mut out = Vec::new();
        self.last_cycle = Some(now);
        if self.started.as_deref() != Some(view.soak_id.as_str()) {
            let rid = run_id(&view.soak_id);
            out.push(Ping {
                signal: Signal::Start,
                rid: Some(rid.clone()),
                body: format!(
                    "soakwatch watches soak {} (T0 {})",
                    view.soak_id,
                    view.t0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            });
            self.started = Some(view.soak_id.clone());
            self.rid = Some(rid);
            self.last_success = None;
        }
        out.extend(self.judge(now, view.blind.clone(), &view.verdict_line));
        out
    }

    /// A standby's round: the same rules without a soak or a `/start`.
    pub fn on_standby_round(&mut self, now: DateTime<Utc>, failing: &[String]) -> Option<Ping> {
        self.last_cycle = Some(now);
        let blind = (!failing.is_empty())
            .then(|| format!("standby: failing probes: {}", failing.join(", ")));
        self.judge(
            now,
            blind,
            "standby: another watcher leads; every probe answers",
        )
    }

    /// `/fail` on a new or lasting blindness, else a success on recovery or when due.
    fn judge(&mut self, now: DateTime<Utc>, blind: Option<String>, seeing: &str) -> Option<Ping> {
        match blind {
            Some(reason) => {
                let new = self.blind.as_deref() != Some(reason.as_str());
                let due = self.last_fail.is_none_or(|t| now - t >= self.every);
                self.blind = Some(reason.clone());
                (new || due).then(|| {
                    self.last_fail = Some(now);
                    self.ping(Signal::Fail, format!("soakwatch is blind: {reason}"))
                })
            }
            None => {
                let recovered = self.blind.take().is_some();
                let due = self.last_success.is_none_or(|t| now - t >= self.every);
                (recovered || due).then(|| {
                    self.last_success = Some(now);
                    self.ping(Signal::Success, seeing.to_string())
                })
            }
        }
    }

    /// Between cycles: a `/fail` when no cycle completed for two intervals
    /// (the loop is stuck on something while the process lives).
    pub fn on_tick(&mut self, now: DateTime<Utc>) -> Option<Ping> {
        let last = self.last_cycle?;
        let silent = now - last;
        if silent <= self.interval * 2 {
            return None;
        }
        let reason = format!(
            "no fresh sample for two intervals: the last cycle completed at {}",
            last.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let new = self
            .blind
            .as_deref()
            .is_none_or(|b| !b.starts_with("no fresh sample"));
        let due = self.last_fail.is_none_or(|t| now - t >= self.every);
        if !(new || due) {
            return None;
        }
        self.blind = Some(reason.clone());
        self.last_fail = Some(now);
        Some(self.ping(Signal::Fail, format!("soakwatch is blind: {reason}")))
    }

    /// The last ping of a run: a success with the summary.
    pub fn final_ping(&mut self, summary: &str) -> Ping {
        self.ping(Signal::Success, summary.to_string())
    }

    fn ping(&self, signal: Signal, body: String) -> Ping {
        Ping {
            signal,
            rid: self.rid.clone(),
            body,
        }
    }
}

/// A ping on its way, and who waits for it.
struct Outgoing {
    url: SecretUrl,
    ping: Ping,
    done: Option<oneshot::Sender<()>>,
}

/// Pings queued but not yet sent; more are dropped (a receiver that hangs
/// must not grow memory).
const QUEUE: usize = 16;

/// The dead-man's switch of one watcher; cheap to clone. A disabled one
/// (no `[heartbeat]`) does nothing.
#[derive(Clone, Default)]
pub struct Deadman {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    cfg: HeartbeatConfig,
    leader: Mutex<Decider>,
    standby: Mutex<Decider>,
    tx: mpsc::Sender<Outgoing>,
}

impl Deadman {
    /// The switch for `cfg` (a disabled one when None); starts its sender
    /// task, so it must be made inside the runtime.
    pub fn new(cfg: Option<&HeartbeatConfig>, interval: Duration) -> Deadman {
        let Some(cfg) = cfg else {
            return Deadman::default();
        };
        let http = match crate::http_client::notify_client(cfg.timeout) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "dead-man's switch: cannot build the HTTP client; no pings");
                return Deadman::default();
            }
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(send_loop(http, rx));
        Deadman {
            inner: Some(Arc::new(Inner {
                cfg: cfg.clone(),
                leader: Mutex::new(Decider::new(cfg.every, interval)),
                standby: Mutex::new(Decider::new(cfg.every, interval)),
                tx,
            })),
        }
    }

    /// After each completed cycle of the leader.
    pub fn cycle_done(&self, summary: &SoakSummary, snap: Option<&Snapshot>) {
        let Some(inner) = &self.inner else { return };
        let Some(url) = inner.cfg.url.clone() else {
            return;
        };
        let view = CycleView {
            soak_id: summary.soak_id.clone(),
            t0: summary.t0,
            verdict_line: format!(
                "soak {}: {} ({}), {} samples, last at {}",
                summary.soak_id,
                summary.verdict.as_str(),
                summary.verdict_reason,
                summary.samples,
                summary
                    .now
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            blind: snap.and_then(|s| blindness(s, summary.verdict)),
        };
        let pings = lock(&inner.leader).on_cycle(Utc::now(), &view);
        for p in pings {
            inner.queue(&url, p, None);
        }
    }

    /// After each round of a standby; `failing` are its failing probes.
    pub fn standby_round(&self, failing: &[String]) {
        let Some(inner) = &self.inner else { return };
        let Some(url) = inner.cfg.standby_url.clone() else {
            return;
        };
        if let Some(p) = lock(&inner.standby).on_standby_round(Utc::now(), failing) {
            inner.queue(&url, p, None);
        }
    }

    /// Watches for a stuck cycle loop until the guard is dropped: a `/fail`
    /// when no cycle completed for two intervals.
    pub fn watch_stalls(&self) -> Option<DropGuard> {
        let inner = self.inner.clone()?;
        let url = inner.cfg.url.clone()?;
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = s.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                let ping = lock(&inner.leader).on_tick(Utc::now());
                if let Some(p) = ping {
                    inner.queue(&url, p, None);
                }
            }
        });
        Some(stop.drop_guard())
    }

    /// The last ping of the leader: a success with `summary` in the body (the
    /// sign-off), sent after whatever is queued and waited for, bounded by
    /// twice `[heartbeat] timeout`.
    pub async fn final_ping(&self, summary: &str) {
        let Some(inner) = &self.inner else { return };
        let Some(url) = inner.cfg.url.clone() else {
            return;
        };
        let ping = lock(&inner.leader).final_ping(summary);
        let (done, wait) = oneshot::channel();
        inner.queue(&url, ping, Some(done));
        let _ = tokio::time::timeout(inner.cfg.timeout * 2, wait).await;
    }
}

impl Inner {
    fn queue(&self, url: &SecretUrl, ping: Ping, done: Option<oneshot::Sender<()>>) {
        let out = Outgoing {
            url: url.clone(),
            ping,
            done,
        };
        if let Err(e) = self.tx.try_send(out) {
            tracing::warn!(
                url = %url.shown(),
                "dead-man's switch: ping dropped, {QUEUE} already waiting ({e})"
            );
        }
    }
}

/// A poisoned decider is still a decider (its state is plain data).
fn lock(m: &Mutex<Decider>) -> std::sync::MutexGuard<'_, Decider> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Sends queued pings in order; a failure is logged when the state changes.
async fn send_loop(http: reqwest::Client, mut rx: mpsc::Receiver<Outgoing>) {
    let mut failing: Option<String> = None;
    while let Some(out) = rx.recv().await {
        let url = ping_url(out.url.expose(), &out.ping);
        let body = crate::secret::scrub(&out.ping.body);
        let result = http.post(&url).body(body).send().await;
        let error = match result {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("HTTP {}", r.status())),
            Err(e) => Some(crate::secret::scrub(&e.without_url().to_string())),
        };
        match error {
            None => {
                if failing.take().is_some() {
                    tracing::info!(url = %out.url.shown(), "dead-man's switch: pings get through again");
                }
                tracing::debug!(url = %out.url.shown(), signal = out.ping.signal.as_str(), "dead-man's switch: ping sent");
                if out.ping.signal == Signal::Fail {
                    tracing::warn!(reason = %out.ping.body, "dead-man's switch: /fail sent");
                }
            }
            Some(e) => {
                if failing.as_deref() != Some(e.as_str()) {
                    tracing::warn!(url = %out.url.shown(), signal = out.ping.signal.as_str(), error = %e, "dead-man's switch: ping not delivered");
                    failing = Some(e);
                }
            }
        }
        if let Some(done) = out.done {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0)
            .single()
            .expect("time")
    }

    fn view(blind: Option<&str>) -> CycleView {
        CycleView {
            soak_id: "phase-b-20261203T140000Z".into(),
            t0: t(0),
            verdict_line: "soak phase-b: pass".into(),
            blind: blind.map(str::to_string),
        }
    }

    fn signals(p: &[Ping]) -> Vec<Signal> {
        p.iter().map(|p| p.signal).collect()
    }

    #[test]
    fn start_then_success_at_most_once_per_period() {
        let mut d = Decider::new(Duration::from_secs(60), Duration::from_secs(10));
        let first = d.on_cycle(t(0), &view(None));
        assert_eq!(signals(&first), [Signal::Start, Signal::Success]);
        let rid = run_id("phase-b-20261203T140000Z");
        assert!(first.iter().all(|p| p.rid.as_deref() == Some(rid.as_str())));
        assert!(first[0].body.contains("phase-b-20261203T140000Z"));
        for s in (10..60).step_by(10) {
            assert!(d.on_cycle(t(s), &view(None)).is_empty(), "{s}");
        }
        assert_eq!(signals(&d.on_cycle(t(60), &view(None))), [Signal::Success]);
        // A new soak is announced again.
        let mut other = view(None);
        other.soak_id = "phase-b-20261204T140000Z".into();
        assert_eq!(
            signals(&d.on_cycle(t(70), &other)),
            [Signal::Start, Signal::Success]
        );
    }

    #[test]
    fn blindness_fails_at_once_repeats_per_period_and_recovery_is_a_success() {
        let mut d = Decider::new(Duration::from_secs(60), Duration::from_secs(10));
        d.on_cycle(t(0), &view(None));
        let p = d.on_cycle(t(10), &view(Some("all 3 stream probes failed: refused")));
        assert_eq!(signals(&p), [Signal::Fail]);
        assert!(p[0].body.contains("all 3 stream probes failed"));
        assert!(d
            .on_cycle(t(20), &view(Some("all 3 stream probes failed: refused")))
            .is_empty());
        // Another reason is news.
        assert_eq!(
            signals(&d.on_cycle(t(30), &view(Some("the metrics probe failed: x")))),
            [Signal::Fail]
        );
        assert_eq!(
            signals(&d.on_cycle(t(90), &view(Some("the metrics probe failed: x")))),
            [Signal::Fail]
        );
        // Seeing again: a success at once, though one was sent under a minute ago.
        assert_eq!(signals(&d.on_cycle(t(95), &view(None))), [Signal::Success]);
        assert!(d.on_cycle(t(100), &view(None)).is_empty());
    }

    #[test]
    fn a_stalled_loop_fails_after_two_intervals_and_a_cycle_recovers() {
        let mut d = Decider::new(Duration::from_secs(60), Duration::from_secs(10));
        assert_eq!(d.on_tick(t(100)), None, "nothing before the first cycle");
        d.on_cycle(t(0), &view(None));
        assert_eq!(d.on_tick(t(20)), None);
        let p = d.on_tick(t(21)).expect("a stall");
        assert_eq!(p.signal, Signal::Fail);
        assert!(
            p.body.contains("no fresh sample for two intervals"),
            "{}",
            p.body
        );
        assert_eq!(d.on_tick(t(22)), None, "once, then per period");
        assert_eq!(d.on_tick(t(81)).map(|p| p.signal), Some(Signal::Fail));
        assert_eq!(signals(&d.on_cycle(t(85), &view(None))), [Signal::Success]);
    }

    #[test]
    fn a_standby_pings_without_a_run_and_fails_on_failing_probes() {
        let mut d = Decider::new(Duration::from_secs(60), Duration::from_secs(10));
        let p = d.on_standby_round(t(0), &[]).expect("first");
        assert_eq!((p.signal, p.rid.clone()), (Signal::Success, None));
        assert_eq!(d.on_standby_round(t(10), &[]), None);
        let p = d
            .on_standby_round(t(20), &["metrics".to_string()])
            .expect("fail");
        assert_eq!(p.signal, Signal::Fail);
        assert!(p.body.contains("metrics"));
    }

    #[test]
    fn urls_and_run_ids() {
        let p = Ping {
            signal: Signal::Fail,
            rid: Some("abc".into()),
            body: String::new(),
        };
        assert_eq!(
            ping_url("https://hc-ping.com/uuid/", &p),
            "https://hc-ping.com/uuid/fail?rid=abc"
        );
        let p = Ping {
            signal: Signal::Success,
            rid: None,
            body: String::new(),
        };
        assert_eq!(ping_url("http://h/ping/k", &p), "http://h/ping/k");
        let rid = run_id("soak-1");
        assert_eq!(rid, run_id("soak-1"));
        assert_ne!(rid, run_id("soak-2"));
        let parts: Vec<usize> = rid.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{rid}");
        assert_eq!(&rid[14..15], "8", "version 8: {rid}");
        assert!(
            matches!(&rid[19..20], "8" | "9" | "a" | "b"),
            "variant: {rid}"
        );
    }

    /// A snapshot of streams answering (true) or refused (false); the other
    /// probes not configured.
    fn snap(streams: &[(&str, bool)]) -> Snapshot {
        use crate::sample::{ProbeFailure, ProbeKind};
        Snapshot {
            streams: streams
                .iter()
                .map(|(n, ok)| {
                    let r = if *ok {
                        Ok(None)
                    } else {
                        Err(ProbeFailure::new(
                            ProbeKind::Stream,
                            crate::sample::ProbeError::Other("connection refused".into()),
                        ))
                    };
                    (n.to_string(), r)
                })
                .collect(),
            ..Snapshot::nothing_configured(t(0))
        }
    }

    #[test]
    fn blind_when_a_kind_fails_whole_or_the_verdict_is_unknown_for_a_probe() {
        assert_eq!(
            blindness(&snap(&[("A", true), ("B", true)]), Status::Pass),
            None
        );
        // One stream of several failing: not blind (the others answer)...
        let one = snap(&[("A", false), ("B", true)]);
        assert_eq!(blindness(&one, Status::Pass), None);
        // ... but the verdict unknown while a probe fails is.
        let b = blindness(&one, Status::Unknown).expect("blind");
        assert!(b.contains("verdict is unknown"), "{b}");
        let b = blindness(&snap(&[("A", false), ("B", false)]), Status::Fail).expect("blind");
        assert!(
            b.contains("all 2 stream probes failed: connection refused"),
            "{b}"
        );
        // Not configured is not blind.
        assert_eq!(blindness(&snap(&[]), Status::Pass), None);
    }
}
