//! Shared helpers for the integration tests: a replica of the Phase B topology
//! on the machine's real NATS and PostgreSQL, a real stand-in service process,
//! and the real `soakwatch` binary.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use soakwatch::testkit::demo::{replica_config, ReplicaFiles};
use soakwatch::testkit::replica::{self, HrvEvent, ReplicaNames};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_soakwatch");
/// The test-only binary: stand-in service and replica provisioning.
pub const TESTKIT: &str = env!("CARGO_BIN_EXE_soakwatch-testkit");

/// NATS of the machine (or NATS_URL).
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Admin PostgreSQL URL (or DATABASE_ADMIN_URL).
pub fn admin_url() -> String {
    std::env::var("DATABASE_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A loopback TCP port the kernel picked (bind to port 0, read it back), held
/// by this test until drop with a socket that is bound but never listens.
///
/// A port bound then released (the old `free_port()`) could be taken in
/// between by another test's listener or outgoing connection. Held like this:
/// - a connection to it is refused at once, as to a stopped server, so it
///   stands for a service that is down or a server that is not there;
/// - no `bind(…:0)` and no outgoing connection elsewhere is given this port;
/// - a server that sets SO_REUSEADDR (tokio, Rust std, Node, Go, Python's
///   asyncio all do) may bind it explicitly, as often as it is restarted,
///   and it is refused again the moment that server exits. So a test can
///   write the port into a config, start a daemon, and only then start (or
///   restart) the service on it, without a window in which the port is free.
pub struct ReservedPort {
    /// Never read: holding it is the reservation.
    _socket: std::os::fd::OwnedFd,
    port: u16,
}

impl ReservedPort {
    /// Reserves a port on 127.0.0.1.
    pub fn new() -> ReservedPort {
        use std::os::fd::{AsRawFd, FromRawFd};
        let last_error = std::io::Error::last_os_error;
        // SAFETY: plain socket(2); the descriptor is owned by `fd` from here on.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        assert!(raw >= 0, "socket: {}", last_error());
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        // SAFETY: a valid socket and a c_int option value of the size given.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_REUSEADDR: {}", last_error());
        let mut addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `addr` is a sockaddr_in of `len` bytes, for bind(2) and getsockname(2).
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_in).cast(),
                len,
            )
        };
        assert_eq!(rc, 0, "bind 127.0.0.1:0: {}", last_error());
        // SAFETY: as above; the kernel writes at most `len` bytes into `addr`.
        let rc = unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                (&mut addr as *mut libc::sockaddr_in).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "getsockname: {}", last_error());
        let port = u16::from_be(addr.sin_port);
        assert_ne!(port, 0, "the kernel picked no port");
        ReservedPort { _socket: fd, port }
    }

    /// The port number.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Output of one `soakwatch` run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }

    /// (id, status) of every criterion whose status is not pass.
    pub fn not_passing(&self) -> Vec<(String, String)> {
        let j = self.json();
        j["criteria"]
            .as_array()
            .expect("criteria array")
            .iter()
            .filter(|c| c["status"] != "pass")
            .map(|c| {
                (
                    c["id"].as_str().unwrap_or("").to_string(),
                    c["status"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// The status of one criterion ("" if the report has no such criterion).
    pub fn status(&self, id: &str) -> String {
        let j = self.json();
        j["criteria"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["id"] == id))
            .and_then(|c| c["status"].as_str())
            .unwrap_or("")
            .to_string()
    }

    /// The evidence of one criterion.
    pub fn evidence(&self, id: &str) -> String {
        let j = self.json();
        j["criteria"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["id"] == id))
            .and_then(|c| c["evidence"].as_str())
            .unwrap_or("")
            .to_string()
    }
}

/// `soakwatch check --config <config> --format <format> --window <window>`: the
/// usual one-shot check.
pub async fn run_check(config: &Path, format: &str, window: &str) -> Run {
    run_check_with(config, format, window, &[], &[]).await
}

/// [`run_check`] with more arguments (`extra`) and environment (`envs`).
pub async fn run_check_with(
    config: &Path,
    format: &str,
    window: &str,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Run {
    let config = config.display().to_string();
    let mut args = vec![
        "check", "--config", &config, "--format", format, "--window", window,
    ];
    args.extend_from_slice(extra);
    run_bin(&args, envs).await
}

/// `soakwatch check --soak --format json`: the verdict of the soak recorded in
/// the config's state database.
pub async fn check_soak(config: &Path) -> Run {
    let config = config.display().to_string();
    run_bin(
        &["check", "--soak", "--config", &config, "--format", "json"],
        &[],
    )
    .await
}

/// Opens the daemon loop on `cfg` (its state database, as a starting or
/// restarted daemon does) and runs it on `source` and `clock` with `start`.
pub async fn run_watch(
    cfg: &soakwatch::config::Config,
    source: &dyn soakwatch::watch::SampleSource,
    clock: &dyn soakwatch::watch::Clock,
    start: soakwatch::watch::StartOptions,
) -> soakwatch::soak::model::SoakSummary {
    let w = soakwatch::watch::Watch::open(cfg.clone(), soakwatch::watch::SharedStatus::default())
        .await
        .expect("the daemon loop opens its state");
    w.run(
        source,
        clock,
        start,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("the daemon loop runs")
}

/// [`run_watch`] for `cycles` cycles of the current soak (or a new one if
/// there is none).
pub async fn run_watch_cycles(
    cfg: &soakwatch::config::Config,
    source: &dyn soakwatch::watch::SampleSource,
    clock: &dyn soakwatch::watch::Clock,
    cycles: u64,
) -> soakwatch::soak::model::SoakSummary {
    let start = soakwatch::watch::StartOptions {
        max_cycles: Some(cycles),
        ..Default::default()
    };
    run_watch(cfg, source, clock, start).await
}

/// Runs the binary with args, with a hard timeout.
pub async fn run_bin(args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("soakwatch finished within 60 s")
        .expect("soakwatch ran");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A provisioned replica with its stand-in service; removed on drop.
///
/// The stand-in's port is a [`ReservedPort`] taken when the replica is
/// provisioned, so the config names it from the start: until a stand-in runs
/// (and after it is killed) the metrics are refused, as for a service that is
/// down; every start, the first or a restart, binds that same port. A daemon
/// may therefore be started before the service without any port race.
pub struct Replica {
    pub names: ReplicaNames,
    pub dir: tempfile::TempDir,
    pub files: ReplicaFiles,
    pub config: PathBuf,
    pub metrics_url: String,
    /// The stand-in's port (`/metrics`, `/admin/*`).
    pub port: u16,
    /// Holds `port` for the replica's life.
    _port_reservation: ReservedPort,
    pub db_url: String,
    /// JetStream on the replica's NATS (it holds the connection).
    pub js: async_nats::jetstream::Context,
    pub http: reqwest::Client,
    standin: Option<tokio::process::Child>,
    next_event: u64,
}

impl Replica {
    /// Provisions the seed's state and writes the replica's files; no service yet.
    pub async fn provisioned() -> Replica {
        Replica::provisioned_on(&nats_url()).await
    }

    /// Provisioned and with the stand-in running and `events` processed.
    pub async fn healthy(events: u64) -> Replica {
        let mut r = Replica::provisioned().await;
        r.start_standin().await;
        r.publish(events).await;
        r.wait_for("success", events as f64).await;
        r
    }

    /// Starts the stand-in service process on the replica's port.
    pub async fn start_standin(&mut self) {
        self.start_standin_on(&nats_url()).await;
    }

    /// Kills the stand-in (the service crashes).
    pub async fn kill_standin(&mut self) {
        if let Some(mut c) = self.standin.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// Publishes `n` fresh valid events.
    pub async fn publish(&mut self, n: u64) {
        for _ in 0..n {
            let ev = HrvEvent::synthetic(self.next_event, &self.names.tag);
            self.next_event += 1;
            replica::publish_hrv(&self.js, &self.names.hrv_subject, &ev)
                .await
                .expect("publish");
        }
    }

    /// Publishes one event that the service dead-letters.
    pub async fn publish_poison(&mut self) {
        let ev = HrvEvent::poison(self.next_event, &self.names.tag);
        self.next_event += 1;
        replica::publish_hrv(&self.js, &self.names.hrv_subject, &ev)
            .await
            .expect("publish poison");
    }

    /// Current value of the stand-in's counter for `result`.
    pub async fn count(&self, result: &str) -> f64 {
        let Ok(resp) = self.http.get(&self.metrics_url).send().await else {
            return -1.0;
        };
        let body = resp.text().await.unwrap_or_default();
        soakwatch::promtext::parse(&body)
            .sum(
                "normalize_hrv_messages_total",
                &[("result".to_string(), result.to_string())],
            )
            .unwrap_or(0.0)
    }

    /// Waits until the counter for `result` reaches `want`.
    pub async fn wait_for(&self, result: &str, want: f64) {
        for _ in 0..200 {
            if self.count(result).await >= want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "counter result={result} did not reach {want} (now {})",
            self.count(result).await
        );
    }

    /// POSTs to the stand-in's fault-injection endpoint.
    pub async fn admin(&self, path: &str) {
        let url = format!("http://127.0.0.1:{}/admin/{path}", self.port);
        let resp = self.http.post(&url).send().await.expect("admin call");
        assert!(
            resp.status().is_success(),
            "admin {path}: {}",
            resp.status()
        );
    }

    /// Appends a line to the service log.
    pub fn append_log(&self, line: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.files.log_file)
            .expect("open log");
        writeln!(f, "{line}").expect("append log");
    }

    /// Runs `check --format json` on the replica with the given window, while
    /// `trickle` events per 250 ms keep arriving (a live service).
    pub async fn check(&mut self, window: &str, trickle: bool) -> Run {
        let config = self.config.clone();
        let js = self.js.clone();
        let subject = self.names.hrv_subject.clone();
        let tag = self.names.tag.clone();
        let start = self.next_event;
        self.next_event += 1000;
        let feeder = trickle.then(|| {
            tokio::spawn(async move {
                for n in start..start + 12 {
                    let _ =
                        replica::publish_hrv(&js, &subject, &HrvEvent::synthetic(n, &tag)).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        });
        let run = run_check(&config, "json", window).await;
        if let Some(f) = feeder {
            f.abort();
        }
        run
    }

    /// Rewrites the replica's config text.
    pub fn edit_config(&self, f: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        std::fs::write(&self.config, f(text)).expect("write config");
    }

    /// Path helper.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(c) = self.standin.as_mut() {
            let _ = c.start_kill();
        }
        // Blocking is fine here: a plain process, no runtime needed.
        let _ = std::process::Command::new(TESTKIT)
            .args([
                "replica",
                "down",
                "--tag",
                &self.names.tag,
                "--nats-url",
                &nats_url(),
            ])
            .arg("--admin-database-url")
            .arg(admin_url())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Sorted list of (id, status) pairs for comparisons.
pub fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Reads a file or panics with its path.
pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

// ---------------------------------------------------------------------------------------------
// Helpers of the watch module: a replica on a given NATS server, a private nats-server that a
// test may stop and restart, and the `soakwatch watch` daemon as a child process.

impl Replica {
    /// Like [`Replica::provisioned`], but on the NATS server at `url` (not NATS_URL, so
    /// tests running in parallel threads need no process environment). The config points
    /// at `url`; Drop still drops the replica's database (the streams live in that
    /// server's store).
    pub async fn provisioned_on(url: &str) -> Replica {
        soakwatch::install_crypto_provider();
        let names = ReplicaNames::random();
        let nats = async_nats::connect(url)
            .await
            .unwrap_or_else(|e| panic!("NATS at {url}: {e}"));
        replica::provision(&nats, &admin_url(), &names)
            .await
            .expect("provision");
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ReplicaFiles::in_dir(dir.path());
        soakwatch::testkit::standin::write_default_env_file(&files.env_file).expect("env file");
        let reservation = ReservedPort::new();
        let port = reservation.port();
        let metrics_url = format!("http://127.0.0.1:{port}/metrics");
        let db_url = replica::replica_database_url(&admin_url(), &names).expect("db url");
        let config = files.config.clone();
        let text = replica_config(
            &names,
            url,
            &db_url,
            &metrics_url,
            &files,
            chrono::Utc::now(),
        );
        std::fs::write(&config, text).expect("write config");
        let js = async_nats::jetstream::new(nats);
        Replica {
            names,
            dir,
            files,
            config,
            metrics_url,
            port,
            _port_reservation: reservation,
            db_url,
            js,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("http client"),
            standin: None,
            next_event: 0,
        }
    }

    /// Like [`Replica::start_standin`], with the stand-in bound to the NATS server at `url`.
    /// It binds the replica's reserved port and writes what it bound to an address file;
    /// this waits for that file (the listener is up once it exists).
    pub async fn start_standin_on(&mut self, url: &str) {
        let addr_file = self.path("standin.addr");
        let _ = std::fs::remove_file(&addr_file);
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("standin.stderr"))
            .expect("stand-in stderr file");
        let mut child = tokio::process::Command::new(TESTKIT)
            .args(["standin", "--tag", &self.names.tag, "--nats-url", url])
            .arg("--database-url")
            .arg(&self.db_url)
            .arg("--env-file")
            .arg(&self.files.env_file)
            .arg("--log-file")
            .arg(&self.files.log_file)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--addr-file")
            .arg(&addr_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .expect("stand-in starts");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let bound = loop {
            // Written whole (temporary name, then rename) once the listener is bound.
            if let Ok(text) = std::fs::read_to_string(&addr_file) {
                break text;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "stand-in exited ({status}) before listening on port {}: {}",
                    self.port,
                    read(&self.path("standin.stderr"))
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "stand-in wrote no address file within 10 s: {}",
                read(&self.path("standin.stderr"))
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            bound.trim(),
            format!("127.0.0.1:{}", self.port),
            "the stand-in bound another address than the reserved port"
        );
        self.standin = Some(child);
    }

    /// Appends a `[watch]` section for a fast daemon: 1 s interval, 3 s max gap, 2 s
    /// recovery, a `5s` checkpoint, state and reports in the replica's tempdir, the status
    /// listener on port 0 (the daemon picks it: [`Daemon::port`]). `extra` lines go at the
    /// end of the section.
    ///
    /// `min_coverage` is 0.5: the first cycle of a soak has no previous sample, so
    /// `db_writes` is unknown for one interval, which is more than 5 % of a soak of a
    /// few seconds (at 48 h it is nothing).
    pub fn add_watch_section(&self, extra: &str) -> WatchFiles {
        let files = WatchFiles {
            state: self.path("state/soakwatch-state.sqlite"),
            reports: self.path("reports"),
        };
        let text = format!(
            "\n[watch]\ninterval = \"1s\"\nmax_gap = \"3s\"\nrecover_after = \"2s\"\n\
             min_coverage = 0.5\ncheckpoints = [\"5s\"]\nstate = {}\nreports_dir = {}\n\
             listen = \"127.0.0.1:0\"\n{extra}\n",
            toml_path(&files.state),
            toml_path(&files.reports),
        );
        self.edit_config(|t| t + &text);
        files
    }

    /// Starts `soakwatch watch` on the replica's config, its output in the replica's
    /// tempdir as `<name>.stdout|stderr`.
    pub fn start_daemon(&self, name: &str) -> Daemon {
        Daemon::start(&self.config, &[], self.dir.path(), name)
    }
}

/// Serves `app` on a free loopback port for the rest of the test: the
/// real HTTP peer (receiver, endpoint) a test talks to.
pub async fn serve_loopback(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// A path as a TOML string (`$` escaped so it is not read as `${VAR}`).
pub fn toml_path(p: &Path) -> String {
    let s = p.display().to_string();
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace("${", "$${")
    )
}

/// Where a daemon configured by [`Replica::add_watch_section`] keeps things.
#[derive(Debug, Clone)]
pub struct WatchFiles {
    /// The state database.
    pub state: PathBuf,
    /// The reports directory.
    pub reports: PathBuf,
}

/// Sends a signal (`TERM`, `KILL`, …) to a process with kill(1).
pub fn send_signal(pid: u32, sig: &str) {
    let st = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill(1) runs");
    assert!(st.success(), "kill -{sig} {pid} failed");
}

/// A private `nats-server -js` on a free port with its own store directory, so a test
/// can stop and restart it (streams persist across restarts). Killed on drop.
pub struct NatsServer {
    pub port: u16,
    pub url: String,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
    starts: u32,
}

impl NatsServer {
    fn binary() -> &'static str {
        if Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        }
    }

    /// Starts a new server and waits until JetStream answers.
    pub async fn start() -> NatsServer {
        // Port 0 until the first start: the server picks one (`-p -1`) and
        // writes it to its ports file; restarts reuse it.
        let mut s = NatsServer {
            port: 0,
            url: String::new(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
            starts: 0,
        };
        s.spawn().await;
        s
    }

    /// The client port from the ports file the server writes at start
    /// (`<exe>_<pid>.ports`: `{"nats": ["nats://127.0.0.1:PORT"], …}`).
    pub async fn read_port(dir: &Path, pid: u32) -> u16 {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let found = std::fs::read_dir(dir)
                .ok()
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .ends_with(&format!("_{pid}.ports"))
                })
                .find_map(|e| std::fs::read_to_string(e.path()).ok())
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .and_then(|v| {
                    v["nats"][0]
                        .as_str()
                        .and_then(|u| u.rsplit(':').next())
                        .and_then(|p| p.parse::<u16>().ok())
                });
            if let Some(port) = found {
                return port;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server wrote no ports file in {} within 15 s",
                dir.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's own log of the n-th start (1-based).
    pub fn log(&self, n: u32) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("nats-{n}.log"))).unwrap_or_default()
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.path().join(format!("nats-{}.log", self.starts)))
            .expect("nats log");
        let store = self.dir.path().join("store");
        let ports_dir = self.dir.path().join("ports");
        std::fs::create_dir_all(&ports_dir).expect("ports dir");
        let port_arg = if self.port == 0 {
            "-1".to_string()
        } else {
            self.port.to_string()
        };
        let child = std::process::Command::new(Self::binary())
            .args(["-js", "-a", "127.0.0.1", "-p", &port_arg, "-sd"])
            .arg(&store)
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("nats-server starts");
        let pid = child.id();
        self.child = Some(child);
        if self.port == 0 {
            self.port = Self::read_port(&ports_dir, pid).await;
            self.url = format!("nats://127.0.0.1:{}", self.port);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let mut last_error: String;
        loop {
            match tokio::time::timeout(Duration::from_secs(2), async_nats::connect(&self.url)).await
            {
                Ok(Ok(c)) => {
                    // Any answer on the JetStream API (async-nats 0.51 cannot decode 2.9's
                    // account info, so the raw request it is).
                    let info = c.request("$JS.API.INFO", "".into());
                    match tokio::time::timeout(Duration::from_secs(2), info).await {
                        Ok(Ok(_)) => return,
                        Ok(Err(e)) => last_error = format!("JetStream: {e}"),
                        Err(_) => last_error = "JetStream: no answer within 2 s".into(),
                    }
                }
                Ok(Err(e)) => last_error = format!("connect: {e}"),
                Err(_) => last_error = "connect: no answer within 2 s".into(),
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "nats-server on port {} exited ({st}): {}",
                    self.port,
                    self.log(self.starts)
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server on port {} not ready within 15 s ({last_error}): {}",
                self.port,
                self.log(self.starts)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server (SIGTERM, SIGKILL after 10 s) and waits for it to exit.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        send_signal(child.id(), "TERM");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts it again on the same port and store directory.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server before restarting it");
        self.spawn().await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A running `soakwatch watch` with stdout and stderr captured to files; killed on drop.
pub struct Daemon {
    pub pid: u32,
    /// Where the daemon writes the address its listener bound (configs in
    /// these tests listen on port 0).
    addr_file: PathBuf,
    child: Option<std::process::Child>,
    stdout: PathBuf,
    stderr: PathBuf,
    http: reqwest::Client,
}

impl Daemon {
    /// Starts `soakwatch watch --config <config> <args>`; its output goes to
    /// `<log_dir>/<name>.stdout|stderr`.
    pub fn start(config: &Path, args: &[&str], log_dir: &Path, name: &str) -> Daemon {
        Daemon::start_with_env(config, args, &[], log_dir, name)
    }

    /// [`Daemon::start`] with extra environment variables (`NOTIFY_SOCKET`, …).
    pub fn start_with_env(
        config: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        log_dir: &Path,
        name: &str,
    ) -> Daemon {
        soakwatch::install_crypto_provider();
        let stdout = log_dir.join(format!("{name}.stdout"));
        let stderr = log_dir.join(format!("{name}.stderr"));
        let addr_file = log_dir.join(format!("{name}.addr"));
        let _ = std::fs::remove_file(&addr_file);
        let child = std::process::Command::new(BIN)
            .arg("watch")
            .arg("--config")
            .arg(config)
            .arg("--addr-file")
            .arg(&addr_file)
            .args(args)
            .env("SOAKWATCH_LOG", "soakwatch=info,warn")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::File::create(&stdout).expect("stdout file"),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(&stderr).expect("stderr file"),
            ))
            .spawn()
            .expect("soakwatch watch starts");
        Daemon {
            pid: child.id(),
            addr_file,
            child: Some(child),
            stdout,
            stderr,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .expect("http client"),
        }
    }

    /// What the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// What the daemon wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// The exit status if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Panics (with stderr) if the daemon is no longer running.
    pub fn assert_running(&mut self, during: &str) {
        if let Some(st) = self.exited() {
            panic!(
                "the daemon exited ({st}) {during}\n--- stderr ---\n{}",
                self.stderr()
            );
        }
    }

    /// The listener's port as bound, once the daemon has written its address file.
    pub fn port(&self) -> Option<u16> {
        std::fs::read_to_string(&self.addr_file)
            .ok()?
            .trim()
            .rsplit(':')
            .next()?
            .parse()
            .ok()
    }

    /// GET a path of the daemon's listener: (status code, body).
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let url = format!("http://127.0.0.1:{}{path}", self.port()?);
        let resp = self.http.get(&url).send().await.ok()?;
        let code = resp.status().as_u16();
        Some((code, resp.text().await.ok()?))
    }

    /// The daemon's /metrics body.
    pub async fn metrics(&self) -> Option<String> {
        match self.get("/metrics").await {
            Some((200, body)) => Some(body),
            _ => None,
        }
    }

    /// `soakwatch_criterion_status{criterion}` now (None before the first cycle).
    pub async fn status(&self, criterion: &str) -> Option<f64> {
        let body = self.metrics().await?;
        criterion_status(&body, criterion)
    }

    /// Polls /metrics until `pred` holds, up to `timeout`; returns that body. Panics with
    /// the last body and the daemon's stderr otherwise, or as soon as the daemon exits.
    pub async fn wait_metrics(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&soakwatch::promtext::Exposition) -> bool,
    ) -> String {
        let deadline = std::time::Instant::now() + timeout;
        let mut last = String::new();
        loop {
            self.assert_running(&format!("while waiting for {what}"));
            if let Some(body) = self.metrics().await {
                if pred(&soakwatch::promtext::parse(&body)) {
                    return body;
                }
                last = body;
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n--- last /metrics ---\n{last}\n--- stderr ---\n{}",
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until this process has completed at least `n` cycles.
    pub async fn wait_cycles(&mut self, n: u64, timeout: Duration) -> String {
        self.wait_metrics(&format!("{n} cycles"), timeout, |m| {
            m.sum("soakwatch_cycles_total", &[]).unwrap_or(0.0) >= n as f64
        })
        .await
    }

    /// Waits until a criterion's status (debounced, now) satisfies `ok`.
    pub async fn wait_status(
        &mut self,
        criterion: &str,
        what: &str,
        timeout: Duration,
        ok: impl Fn(f64) -> bool,
    ) -> String {
        self.wait_metrics(
            &format!("criterion {criterion} to be {what}"),
            timeout,
            |m| {
                m.sum(
                    "soakwatch_criterion_status",
                    &[("criterion".into(), criterion.into())],
                )
                .is_some_and(&ok)
            },
        )
        .await
    }

    /// Sends a signal to the daemon.
    pub fn signal(&self, sig: &str) {
        send_signal(self.pid, sig);
    }

    /// Waits for the exit code (panics with stderr after `timeout`).
    pub async fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(st) = self.exited() {
                self.child = None;
                return st.code().unwrap_or(-1);
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "the daemon did not exit within {timeout:?}\n--- stderr ---\n{}",
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `soakwatch_criterion_status{criterion=…}` in a /metrics body.
pub fn criterion_status(body: &str, criterion: &str) -> Option<f64> {
    soakwatch::promtext::parse(body).sum(
        "soakwatch_criterion_status",
        &[("criterion".to_string(), criterion.to_string())],
    )
}

/// Keeps publishing one fresh valid event every `every` until dropped (a live service).
pub struct Trickle(tokio::task::JoinHandle<()>);

impl Trickle {
    pub fn start(r: &mut Replica, every: Duration) -> Trickle {
        let js = r.js.clone();
        let subject = r.names.hrv_subject.clone();
        let tag = r.names.tag.clone();
        let start = r.next_event;
        r.next_event += 1_000_000;
        Trickle(tokio::spawn(async move {
            for n in start.. {
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    replica::publish_hrv(&js, &subject, &HrvEvent::synthetic(n, &tag)),
                )
                .await;
                tokio::time::sleep(every).await;
            }
        }))
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// BEGIN Node.js stand-in (tests/node-standin): the service in the seed's own stack (npm
// packages nats, pg, prom-client), so verdicts are checked on what such a service emits.
// Its packages are installed by scripts/ensure-test-tools.sh (`npm ci`).

/// Directory of the Node.js stand-in.
pub fn node_standin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node-standin")
}

impl Replica {
    /// Starts the Node.js stand-in on the replica's port and waits until it has bound the
    /// durable (its `/admin/state` names the stream), so a check sees a running service.
    pub async fn start_node_standin(&mut self) {
        let dir = node_standin_dir();
        assert!(
            dir.join("node_modules/prom-client").is_dir()
                && dir.join("node_modules/nats").is_dir()
                && dir.join("node_modules/pg").is_dir(),
            "{}/node_modules is missing: run scripts/ensure-test-tools.sh (npm ci)",
            dir.display()
        );
        let child = tokio::process::Command::new("node")
            .arg(dir.join("index.js"))
            .env("NATS_URL", nats_url())
            .env("DATABASE_URL", &self.db_url)
            .env("HRV_CORE_STREAM", &self.names.core_stream)
            .env("HRV_LEGACY_STREAM", &self.names.legacy_stream)
            .env("HRV_DURABLE", &self.names.durable)
            .env("HRV_TABLE", &self.names.table)
            .env("HRV_SUBJECT", &self.names.hrv_subject)
            .env("HRV_DLQ_SUBJECT", &self.names.dlq_subject)
            .env("SERVICE_ENV_FILE", &self.files.env_file)
            .env("SERVICE_LOG", &self.files.log_file)
            .env("LISTEN", format!("127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node stand-in starts (is node installed?)");
        self.standin = Some(child);
        let state_url = format!("http://127.0.0.1:{}/admin/state", self.port);
        for _ in 0..150 {
            if let Ok(resp) = self.http.get(&state_url).send().await {
                let state: Value = resp.json().await.unwrap_or(Value::Null);
                if state["bound_stream"].is_string() {
                    // prom-client rounds process_start_time_seconds to whole seconds (up to
                    // 0.5 s late): rows written before that instant would not count as
                    // "since the service started" in db_integrity. Let it pass first.
                    tokio::time::sleep(Duration::from_millis(1100)).await;
                    return;
                }
            }
            if let Some(status) = self
                .standin
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let mut err = String::new();
                if let Some(mut e) = self.standin.as_mut().and_then(|c| c.stderr.take()) {
                    use tokio::io::AsyncReadExt;
                    let _ = e.read_to_string(&mut err).await;
                }
                panic!("node stand-in exited ({status}): {err}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "node stand-in did not bind {} within 15 s (log: {})",
            self.names.durable,
            std::fs::read_to_string(&self.files.log_file).unwrap_or_default()
        );
    }

    /// The stand-in's `/metrics` body as served.
    pub async fn metrics_body(&self) -> String {
        let resp = self
            .http
            .get(&self.metrics_url)
            .send()
            .await
            .expect("GET /metrics");
        resp.text().await.expect("metrics body")
    }
}

// END Node.js stand-in
// ---------------------------------------------------------------------------------------------

/// The sum of a family's samples with these labels in a /metrics body.
pub fn metric_in(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let m: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    soakwatch::promtext::parse(body).sum(name, &m)
}
