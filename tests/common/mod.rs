//! Shared helpers for the integration tests: a replica of the Phase B topology
//! on the machine's real NATS and PostgreSQL, a real stand-in service process,
//! and the real `soakwatch` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use soakwatch::demo::{replica_config, ReplicaFiles};
use soakwatch::replica::{self, HrvEvent, ReplicaNames};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_soakwatch");

/// NATS of the machine (or NATS_URL).
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Admin PostgreSQL URL (or DATABASE_ADMIN_URL).
pub fn admin_url() -> String {
    std::env::var("DATABASE_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
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
pub struct Replica {
    pub names: ReplicaNames,
    pub dir: tempfile::TempDir,
    pub files: ReplicaFiles,
    pub config: PathBuf,
    pub metrics_url: String,
    pub port: u16,
    pub db_url: String,
    pub nats: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub http: reqwest::Client,
    standin: Option<tokio::process::Child>,
    next_event: u64,
}

impl Replica {
    /// Provisions the seed's state and writes the replica's files; no service yet.
    pub async fn provisioned() -> Replica {
        soakwatch::install_crypto_provider();
        let names = ReplicaNames::random();
        let nats = async_nats::connect(nats_url())
            .await
            .expect("NATS is running");
        replica::provision(&nats, &admin_url(), &names)
            .await
            .expect("provision");
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ReplicaFiles::in_dir(dir.path());
        soakwatch::standin::write_default_env_file(&files.env_file).expect("env file");
        let port = free_port();
        let metrics_url = format!("http://127.0.0.1:{port}/metrics");
        let db_url = replica::replica_database_url(&admin_url(), &names).expect("db url");
        let config = files.config.clone();
        let text = replica_config(
            &names,
            &nats_url(),
            &db_url,
            &metrics_url,
            &files,
            chrono::Utc::now(),
        );
        std::fs::write(&config, text).expect("write config");
        let js = async_nats::jetstream::new(nats.clone());
        Replica {
            names,
            dir,
            files,
            config,
            metrics_url,
            port,
            db_url,
            nats,
            js,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("http client"),
            standin: None,
            next_event: 0,
        }
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
        let child = tokio::process::Command::new(BIN)
            .args([
                "standin",
                "--tag",
                &self.names.tag,
                "--nats-url",
                &nats_url(),
            ])
            .arg("--database-url")
            .arg(&self.db_url)
            .arg("--env-file")
            .arg(&self.files.env_file)
            .arg("--log-file")
            .arg(&self.files.log_file)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("stand-in starts");
        self.standin = Some(child);
        for _ in 0..100 {
            if self.http.get(&self.metrics_url).send().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "stand-in did not answer on {} within 10 s",
            self.metrics_url
        );
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
        let config = self.config.display().to_string();
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
        let run = run_bin(
            &[
                "check", "--config", &config, "--format", "json", "--window", window,
            ],
            &[],
        )
        .await;
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
        let _ = std::process::Command::new(BIN)
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
