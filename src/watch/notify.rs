//! The systemd notification protocol (sd_notify(3)) for `Type=notify`:
//! `READY=1` once the daemon serves, `STATUS=` lines with the soak or
//! preflight state, `WATCHDOG=1` while the cycle loop makes progress and
//! `STOPPING=1` on shutdown, each one datagram to `$NOTIFY_SOCKET`.
//!
//! Written by hand (about 40 lines of protocol) rather than with the
//! `sd-notify` crate: its 0.5 `notify()` connects to `$NOTIFY_SOCKET` as a
//! file path, so an abstract `@name` socket (what systemd in a container or
//! a test harness may hand out) is not reached, and it reads the environment
//! again on every call.
//!
//! The loop proves it is alive through a [`Heartbeat`]: before each wait it
//! says by when it will be back, and the watchdog task pings only until
//! then. A cycle stuck on a hung call stops the pings, so systemd restarts
//! the daemon after `WatchdogSec=`, instead of it answering pings forever.

use std::ffi::OsStr;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Why `$NOTIFY_SOCKET` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Not an absolute path nor an `@` abstract name (e.g. `vsock:`).
    #[error("NOTIFY_SOCKET={0:?} is neither an absolute path nor an @abstract name")]
    Unsupported(String),
    /// The socket could not be made or the address is invalid.
    #[error("NOTIFY_SOCKET {addr:?}: {source}")]
    Socket {
        /// The variable's value.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Where notifications go: a socket bound to nothing, and the manager's address.
#[derive(Debug)]
pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
}

/// The manager's address from the value of `$NOTIFY_SOCKET`: an absolute
/// path, or a Linux abstract name written with a leading `@`.
pub fn parse_address(value: &OsStr) -> Result<SocketAddr, NotifyError> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = value.as_bytes();
    let shown = || value.to_string_lossy().into_owned();
    let invalid = |source| NotifyError::Socket {
        addr: shown(),
        source,
    };
    match bytes.first() {
        Some(b'/') => SocketAddr::from_pathname(value).map_err(invalid),
        #[cfg(target_os = "linux")]
        Some(b'@') if bytes.len() > 1 => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(&bytes[1..]).map_err(invalid)
        }
        _ => Err(NotifyError::Unsupported(shown())),
    }
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for; `None` when it is unset (not
    /// started by systemd with `Type=notify`).
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(v) if !v.is_empty() => Notifier::to(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier for the address `value` (as `$NOTIFY_SOCKET` writes it).
    pub fn to(value: &OsStr) -> Result<Notifier, NotifyError> {
        let addr = parse_address(value)?;
        let socket_error = |source| NotifyError::Socket {
            addr: value.to_string_lossy().into_owned(),
            source,
        };
        let sock = UnixDatagram::unbound().map_err(socket_error)?;
        // A full receive queue drops a ping instead of blocking the runtime.
        sock.set_nonblocking(true).map_err(socket_error)?;
        Ok(Notifier { sock, addr })
    }

    /// Sends one datagram of newline-separated `KEY=VALUE` assignments.
    pub fn send(&self, message: &str) -> std::io::Result<()> {
        let sent = self.sock.send_to_addr(message.as_bytes(), &self.addr)?;
        if sent != message.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "notification cut short",
            ));
        }
        Ok(())
    }

    /// Sends `message`, logging (not returning) a failure: the daemon's work
    /// does not depend on the manager hearing it.
    pub fn send_logged(&self, message: &str) {
        if let Err(e) = self.send(message) {
            tracing::warn!(error = %e, message = %message.replace('\n', " "), "systemd notification not sent");
        }
    }
}

/// The watchdog period systemd asked for (`WATCHDOG_USEC`, only when
/// `WATCHDOG_PID` is unset or this process): pings go at half of it, as
/// sd_watchdog_enabled(3) advises.
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if pid.is_some_and(|p| p.trim().parse::<u32>().ok() != Some(own_pid)) {
        return None;
    }
    let usec = usec?.trim().parse::<u64>().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec) / 2)
}

/// [`watchdog_interval`] from this process's environment.
pub fn watchdog_interval_from_env() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// The cycle loop's proof of life, and its one-line state for `STATUS=`.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    inner: Arc<Mutex<Beat>>,
}

#[derive(Debug)]
struct Beat {
    /// The loop promised to be back (beat again) by then.
    deadline: Instant,
    /// What the loop is doing, for `systemctl status`.
    status: String,
}

impl Heartbeat {
    /// A heartbeat alive for `startup` (opening state, resuming the soak)
    /// before the loop's first promise.
    pub fn new(startup: Duration) -> Heartbeat {
        Heartbeat {
            inner: Arc::new(Mutex::new(Beat {
                deadline: Instant::now() + startup,
                status: "starting".into(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Beat> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The loop promises to beat again within `within`: until then it counts as alive.
    pub fn expect_within(&self, within: Duration) {
        self.lock().deadline = Instant::now() + within;
    }

    /// Whether the loop's last promise still holds.
    pub fn alive(&self) -> bool {
        Instant::now() <= self.lock().deadline
    }

    /// Sets the one-line state sent as `STATUS=`.
    pub fn set_status(&self, status: impl Into<String>) {
        self.lock().status = status.into();
    }

    /// The one-line state last set.
    pub fn status(&self) -> String {
        self.lock().status.clone()
    }
}

impl Default for Heartbeat {
    /// Alive for a minute before the loop's first promise.
    fn default() -> Self {
        Heartbeat::new(Duration::from_secs(60))
    }
}

/// A `STATUS=` value on one line (the protocol separates assignments by newlines).
fn status_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Until `stop`: sends `STATUS=` whenever the heartbeat's state changes and,
/// when `watchdog` is set, `WATCHDOG=1` every `watchdog` while the heartbeat
/// is alive. Once it is not, pings stop (and it says so once), so the
/// manager's watchdog fires; they resume if the loop beats again.
pub fn spawn_watchdog(
    notifier: Arc<Notifier>,
    heartbeat: Heartbeat,
    watchdog: Option<Duration>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let period = watchdog.unwrap_or(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut sent_status = String::new();
        let mut stalled = false;
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let status = heartbeat.status();
            if status != sent_status {
                notifier.send_logged(&format!("STATUS={}", status_line(&status)));
                sent_status = status;
            }
            if watchdog.is_none() {
                continue;
            }
            if heartbeat.alive() {
                if stalled {
                    tracing::warn!("the cycle loop is back: systemd watchdog pings resume");
                    stalled = false;
                }
                notifier.send_logged("WATCHDOG=1");
            } else if !stalled {
                tracing::error!(
                    "the cycle loop is overdue: systemd watchdog pings stop (systemd restarts the daemon after WatchdogSec)"
                );
                stalled = true;
            }
        }
    })
}

/// The daemon's side of the protocol for one run: nothing at all when
/// systemd did not ask for notifications. Clones share one state.
#[derive(Debug, Clone, Default)]
pub struct SystemdLink {
    notifier: Option<Arc<Notifier>>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
    watchdog_stop: CancellationToken,
}

impl SystemdLink {
    /// The link `$NOTIFY_SOCKET` asks for; a value that cannot be used is
    /// logged and the daemon runs without notifications.
    pub fn from_env() -> SystemdLink {
        let notifier = match Notifier::from_env() {
            Ok(n) => n.map(Arc::new),
            Err(e) => {
                tracing::warn!(error = %e, "systemd notifications off");
                None
            }
        };
        SystemdLink {
            notifier,
            ..Default::default()
        }
    }

    /// `READY=1` (the listener is bound, the state open), then the watchdog
    /// task on `heartbeat` when `$WATCHDOG_USEC` asks for one.
    pub fn ready(&self, heartbeat: Heartbeat) {
        let Some(n) = &self.notifier else {
            return;
        };
        let watchdog = watchdog_interval_from_env();
        n.send_logged("READY=1\nSTATUS=started: state open, listener bound");
        tracing::info!(watchdog_ping = ?watchdog, "told systemd the daemon is ready");
        spawn_watchdog(n.clone(), heartbeat, watchdog, self.watchdog_stop.clone());
    }

    /// `STOPPING=1`, once, and no more pings: shutdown has begun.
    pub fn stopping(&self) {
        self.watchdog_stop.cancel();
        let first = !self.stopped.swap(true, std::sync::atomic::Ordering::SeqCst);
        if let (Some(n), true) = (&self.notifier, first) {
            n.send_logged("STOPPING=1");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_paths_or_abstract_names() {
        assert!(parse_address(OsStr::new("/run/systemd/notify"))
            .unwrap()
            .as_pathname()
            .is_some());
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let a = parse_address(OsStr::new("@sd-notify-test")).unwrap();
            assert_eq!(a.as_abstract_name(), Some(&b"sd-notify-test"[..]));
        }
        for bad in ["relative/path", "@", "", "vsock:2:1234"] {
            assert!(
                matches!(
                    parse_address(OsStr::new(bad)),
                    Err(NotifyError::Unsupported(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn watchdog_pings_at_half_the_period_for_this_process_only() {
        let me = 4242;
        assert_eq!(
            watchdog_interval(Some("1000000"), None, me),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            watchdog_interval(Some("1000000"), Some("4242"), me),
            Some(Duration::from_millis(500))
        );
        assert_eq!(watchdog_interval(Some("1000000"), Some("1"), me), None);
        assert_eq!(watchdog_interval(None, None, me), None);
        assert_eq!(watchdog_interval(Some("0"), None, me), None);
        assert_eq!(watchdog_interval(Some("soon"), None, me), None);
    }

    fn receiver() -> (tempfile::TempDir, UnixDatagram, Notifier) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&path).expect("bind");
        rx.set_nonblocking(true).expect("nonblocking");
        let n = Notifier::to(path.as_os_str()).expect("notifier");
        (dir, rx, n)
    }

    fn drain(rx: &UnixDatagram) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = rx.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    #[test]
    fn a_datagram_reaches_a_path_socket() {
        let (_dir, rx, n) = receiver();
        n.send("READY=1\nSTATUS=up").expect("send");
        assert_eq!(drain(&rx), vec!["READY=1\nSTATUS=up".to_string()]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_datagram_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("soakwatch-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let rx = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        rx.set_nonblocking(true).expect("nonblocking");
        let n = Notifier::to(OsStr::new(&format!("@{name}"))).expect("notifier");
        n.send("STOPPING=1").expect("send");
        assert_eq!(drain(&rx), vec!["STOPPING=1".to_string()]);
    }

    #[tokio::test(start_paused = true)]
    async fn pings_stop_when_the_loop_misses_its_promise_and_resume_when_it_beats() {
        let (_dir, rx, n) = receiver();
        let hb = Heartbeat::new(Duration::from_secs(3));
        hb.set_status("preflight: 1 problem");
        let stop = CancellationToken::new();
        let task = spawn_watchdog(
            Arc::new(n),
            hb.clone(),
            Some(Duration::from_millis(500)),
            stop.clone(),
        );
        tokio::time::sleep(Duration::from_millis(2900)).await;
        let got = drain(&rx);
        assert_eq!(got[0], "STATUS=preflight: 1 problem");
        let pings = got.iter().filter(|m| *m == "WATCHDOG=1").count();
        assert!(pings >= 5, "{got:?}");
        // No beat: past the deadline the pings stop.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let got = drain(&rx);
        assert!(got.len() <= 1, "pings after the deadline: {got:?}");
        // A beat brings them back, with the new state.
        hb.set_status("soak x: pass\nsecond line");
        hb.expect_within(Duration::from_secs(10));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let got = drain(&rx);
        assert_eq!(got[0], "STATUS=soak x: pass second line");
        assert!(
            got[1..].iter().all(|m| m == "WATCHDOG=1") && got.len() >= 4,
            "{got:?}"
        );
        stop.cancel();
        task.await.expect("task ends");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_watchdog_only_status_changes_are_sent() {
        let (_dir, rx, n) = receiver();
        let hb = Heartbeat::default();
        let stop = CancellationToken::new();
        let task = spawn_watchdog(Arc::new(n), hb.clone(), None, stop.clone());
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(drain(&rx), vec!["STATUS=starting".to_string()]);
        stop.cancel();
        task.await.expect("task ends");
    }
}
