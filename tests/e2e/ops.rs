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

// `check`'s TLS set-up: the system's roots are read only for a certificate to
// verify, and every mode that verifies still does.

/// A self-signed certificate for `localhost` made by openssl(1) (its own
/// subject: Debian's snakeoil one, also `CN=localhost`, sits among the roots), and an
/// https server (Python's) presenting it: `None` without openssl.
struct SelfSignedHttps {
    _dir: tempfile::TempDir,
    child: std::process::Child,
    port: u16,
}

impl SelfSignedHttps {
    fn start() -> Option<SelfSignedHttps> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let made = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=soakwatch e2e untrusted",
                "-addext",
                "subjectAltName=DNS:localhost",
            ])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .ok()?;
        if !made.status.success() {
            return None;
        }
        let port_file = dir.path().join("port");
        let script = "import http.server, ssl, sys\n\
            s = http.server.HTTPServer(('127.0.0.1', 0), http.server.SimpleHTTPRequestHandler)\n\
            c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain(sys.argv[1], sys.argv[2])\n\
            s.socket = c.wrap_socket(s.socket, server_side=True)\n\
            open(sys.argv[3], 'w').write(str(s.server_address[1]))\n\
            s.serve_forever()\n";
        let child = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&cert)
            .arg(&key)
            .arg(&port_file)
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 https server");
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                break p;
            }
            assert!(Instant::now() < deadline, "the https server did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        Some(SelfSignedHttps {
            _dir: dir,
            child,
            port,
        })
    }
}

impl Drop for SelfSignedHttps {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One plain-http answer on a loopback port.
async fn plain_http_once() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        if let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn http_roots_are_read_on_the_first_https_certificate_and_it_is_still_verified() {
    soakwatch::install_crypto_provider();
    use soakwatch::probe::lazy_roots;
    let (tls, verifier) = lazy_roots::client_config().expect("tls config");
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    assert!(!verifier.loaded(), "roots read when the client was built");
    let port = plain_http_once().await;
    let body = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("plain http answers")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "ok");
    assert!(!verifier.loaded(), "roots read for a plain-http request");

    let Some(https) = SelfSignedHttps::start() else {
        eprintln!("openssl not installed: the https half is not checked");
        return;
    };
    let url = format!("https://localhost:{}/", https.port);
    let err = client
        .get(&url)
        .send()
        .await
        .expect_err("an untrusted certificate is refused");
    assert!(
        verifier.loaded(),
        "the certificate was checked without roots"
    );
    let chain = format!("{:?}", anyhow::Error::from(err));
    assert!(
        chain.contains("invalid peer certificate: UnknownIssuer"),
        "{chain}"
    );
    // The product's client refuses it the same way.
    let product = soakwatch::probe::metrics::http_client(Duration::from_secs(5)).expect("client");
    let err = product.get(&url).send().await.expect_err("refused");
    let chain = format!("{:?}", anyhow::Error::from(err));
    assert!(
        chain.contains("invalid peer certificate: UnknownIssuer"),
        "{chain}"
    );
}

/// The local PostgreSQL's certificate file when it has `ssl = on`.
async fn pg_ssl_cert() -> Option<PathBuf> {
    use sqlx::{Connection, Row};
    let mut c = sqlx::PgConnection::connect(&admin_url())
        .await
        .expect("postgres");
    let ssl: String = sqlx::query("show ssl").fetch_one(&mut c).await.ok()?.get(0);
    let cert: String = sqlx::query("show ssl_cert_file")
        .fetch_one(&mut c)
        .await
        .ok()?
        .get(0);
    let _ = c.close().await;
    (ssl == "on")
        .then(|| PathBuf::from(cert))
        .filter(|p| p.is_file())
}

/// Connects with `sslmode` (and `extra` URL parameters) to `host`; whether TLS is in use.
async fn pg_tls(host: &str, query: &str) -> Result<bool, String> {
    use sqlx::{Connection, Row};
    let base = admin_url().replace("127.0.0.1", host);
    let sep = if base.contains('?') { '&' } else { '?' };
    let mut c = sqlx::PgConnection::connect(&format!("{base}{sep}{query}"))
        .await
        .map_err(|e| e.to_string())?;
    let ssl: bool = sqlx::query("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
        .fetch_one(&mut c)
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    let _ = c.close().await;
    Ok(ssl)
}

#[tokio::test(flavor = "multi_thread")]
async fn database_tls_prefer_encrypts_and_verify_modes_still_verify() {
    soakwatch::install_crypto_provider();
    let Some(cert) = pg_ssl_cert().await else {
        eprintln!("the local PostgreSQL has ssl off: TLS modes not checked");
        return;
    };
    let root = format!("sslrootcert={}", cert.display());
    // prefer: TLS without verification (as libpq), the default URL's mode.
    assert_eq!(pg_tls("127.0.0.1", "sslmode=prefer").await, Ok(true));
    // The self-signed server certificate is not trusted by the built-in roots.
    let e = pg_tls("localhost", "sslmode=verify-full")
        .await
        .expect_err("untrusted");
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let e = pg_tls("localhost", "sslmode=verify-ca")
        .await
        .expect_err("untrusted");
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // Trusted through sslrootcert, it verifies; verify-full also checks the name.
    assert_eq!(
        pg_tls("localhost", &format!("sslmode=verify-full&{root}")).await,
        Ok(true)
    );
    let e = pg_tls("127.0.0.1", &format!("sslmode=verify-full&{root}"))
        .await
        .expect_err("a certificate for localhost is not one for 127.0.0.1");
    assert!(
        e.to_lowercase().contains("certificate") || e.contains("name"),
        "{e}"
    );
    assert_eq!(
        pg_tls("127.0.0.1", &format!("sslmode=verify-ca&{root}")).await,
        Ok(true)
    );
}
