//! Running as a systemd service, without systemd: the daemon against a
//! notify socket this test binds (`NOTIFY_SOCKET`, a path or an `@abstract`
//! name), and the shipped unit, sysusers and tmpfiles files checked by
//! systemd's own tools when the machine has them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UnixDatagram;

use crate::common::*;

/// Every datagram received on the notify socket, in order, with when it came.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(Instant, String)>>>);

impl Received {
    /// Collects datagrams from `sock` until the test ends.
    fn collect(sock: UnixDatagram) -> Received {
        let got = Received::default();
        let g = got.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf).await {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                g.0.lock().expect("lock").push((Instant::now(), text));
            }
        });
        got
    }

    fn messages(&self) -> Vec<String> {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Index of the first datagram holding the assignment `line`.
    fn position(&self, line: &str) -> Option<usize> {
        self.messages()
            .iter()
            .position(|m| m.lines().any(|l| l == line))
    }

    /// When each datagram holding `line` came.
    fn times_of(&self, line: &str) -> Vec<Instant> {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, m)| m.lines().any(|l| l == line))
            .map(|(t, _)| *t)
            .collect()
    }

    fn count(&self, line: &str) -> usize {
        self.messages()
            .iter()
            .filter(|m| m.lines().any(|l| l == line))
            .count()
    }

    /// Waits until `done` holds for the messages, or panics with them and stderr.
    async fn wait(
        &self,
        d: &mut Daemon,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Self) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            if Instant::now() > deadline {
                panic!(
                    "no {what} within {timeout:?}; received {:?}\n--- stderr ---\n{}",
                    self.messages(),
                    d.stderr()
                );
            }
            d.assert_running(&format!("while waiting for {what}"));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn notify_socket_gets_ready_watchdog_pings_and_stopping() {
    let mut r = Replica::healthy(5).await;
    r.add_watch_section("");
    let _feed = Trickle::start(&mut r, Duration::from_millis(400));
    let sock_dir = tempfile::tempdir().expect("tempdir");
    let path = sock_dir.path().join("notify");
    let got = Received::collect(UnixDatagram::bind(&path).expect("bind the notify socket"));
    let mut d = Daemon::start_with_env(
        &r.config,
        &[],
        &[
            ("NOTIFY_SOCKET", &path.display().to_string()),
            ("WATCHDOG_USEC", "1000000"),
        ],
        r.dir.path(),
        "notify",
    );

    got.wait(&mut d, "READY=1", Duration::from_secs(30), |g| {
        g.position("READY=1").is_some()
    })
    .await;
    // READY means serving: the listener's address is written before it.
    assert!(d.port().is_some(), "READY=1 before the listener was bound");
    let ready = got.position("READY=1").expect("ready");
    assert_eq!(
        ready,
        0,
        "READY=1 is the first message: {:?}",
        got.messages()
    );

    // Pings every WATCHDOG_USEC/2 (0.5 s) while the loop runs.
    got.wait(&mut d, "6 WATCHDOG=1", Duration::from_secs(15), |g| {
        g.count("WATCHDOG=1") >= 6
    })
    .await;
    let pings = got.times_of("WATCHDOG=1");
    let span = pings[5] - pings[0];
    assert!(
        span >= Duration::from_millis(2000) && span <= Duration::from_secs(10),
        "6 pings in {span:?}, not about every 0.5 s: {:?}",
        got.messages()
    );
    // The soak's state reaches `systemctl status`.
    got.wait(
        &mut d,
        "a STATUS= line about the soak",
        Duration::from_secs(20),
        |g| {
            g.messages()
                .iter()
                .any(|m| m.starts_with("STATUS=soak ") && m.contains("cycle(s)"))
        },
    )
    .await;
    assert_eq!(got.count("STOPPING=1"), 0, "{:?}", got.messages());

    d.signal("TERM");
    got.wait(&mut d, "STOPPING=1", Duration::from_secs(10), |g| {
        g.position("STOPPING=1").is_some()
    })
    .await;
    let code = d.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(code, 0, "exit code after SIGTERM\n{}", d.stderr());
    assert_eq!(got.count("READY=1"), 1, "{:?}", got.messages());
    assert_eq!(got.count("STOPPING=1"), 1, "{:?}", got.messages());
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread")]
async fn an_abstract_notify_socket_is_reached_and_no_watchdog_means_no_pings() {
    use std::os::linux::net::SocketAddrExt;
    let mut r = Replica::healthy(5).await;
    r.add_watch_section("");
    let _feed = Trickle::start(&mut r, Duration::from_millis(400));
    let name = format!(
        "soakwatch-e2e-notify-{}-{}",
        std::process::id(),
        r.names.tag
    );
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("name");
    let std_sock = std::os::unix::net::UnixDatagram::bind_addr(&addr).expect("bind abstract");
    std_sock.set_nonblocking(true).expect("nonblocking");
    let got = Received::collect(UnixDatagram::from_std(std_sock).expect("tokio socket"));
    let mut d = Daemon::start_with_env(
        &r.config,
        &[],
        &[("NOTIFY_SOCKET", &format!("@{name}"))],
        r.dir.path(),
        "abstract",
    );
    got.wait(&mut d, "READY=1", Duration::from_secs(30), |g| {
        g.position("READY=1").is_some()
    })
    .await;
    d.wait_cycles(3, Duration::from_secs(20)).await;
    assert_eq!(
        got.count("WATCHDOG=1"),
        0,
        "pings without WATCHDOG_USEC: {:?}",
        got.messages()
    );
    d.signal("TERM");
    got.wait(&mut d, "STOPPING=1", Duration::from_secs(10), |g| {
        g.position("STOPPING=1").is_some()
    })
    .await;
    assert_eq!(
        d.wait_exit(Duration::from_secs(15)).await,
        0,
        "{}",
        d.stderr()
    );
}

fn deploy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(name)
}

/// Whether `tool` runs here (`systemd-analyze` and friends are optional).
fn have(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_unit_is_notify_hardened_and_passes_systemd_analyze_verify() {
    let unit = read(&deploy("soakwatch.service"));
    for key in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=",
        "User=soakwatch",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/soakwatch",
        "StateDirectory=soakwatch",
        "ExecStart=/usr/local/bin/soakwatch watch ",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(key)),
            "{key} missing from the unit"
        );
    }
    if !have("systemd-analyze") {
        eprintln!("systemd-analyze not installed: the unit is not verified");
        return;
    }
    // Verified as installed, with the binary just built in place of
    // /usr/local/bin/soakwatch (verify checks that ExecStart= exists).
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("soakwatch.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/soakwatch", BIN)).expect("write unit");
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    // Unknown keys and bad values are only warnings: none may name the unit.
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("soakwatch.service"))
        .collect();
    assert!(about_unit.is_empty(), "systemd-analyze verify: {stderr}");
}

#[test]
fn sysusers_and_tmpfiles_make_the_user_and_the_reports_folder() {
    if !have("systemd-sysusers") || !have("systemd-tmpfiles") {
        eprintln!("systemd-sysusers or systemd-tmpfiles not installed: not checked");
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(root.path().join("etc")).expect("etc");
    let run = |tool: &str, args: &[&str], file: &str| {
        let out = std::process::Command::new(tool)
            .arg(format!("--root={}", root.path().display()))
            .args(args)
            .arg(deploy(file))
            .output()
            .expect("tool runs");
        assert!(
            out.status.success(),
            "{tool} {file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run("systemd-sysusers", &[], "soakwatch.sysusers.conf");
    let passwd = read(&root.path().join("etc/passwd"));
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("soakwatch:") && l.contains(":/var/lib/soakwatch:")),
        "{passwd}"
    );
    run("systemd-tmpfiles", &["--create"], "soakwatch.tmpfiles.conf");
    assert!(root.path().join("var/lib/soakwatch/reports").is_dir());
}
