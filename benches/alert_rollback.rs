//! Measures, on a local replica, the time from a fault (a burst of 15
//! dead-lettered messages, the seed's "DLQ spike > 10 msg/min") to the alert
//! received by a webhook, and to the rollback completed (env edited, service
//! restarted in single mode, logs verified, E2E row seen).
//!
//! `cargo bench --features testkit --bench alert_rollback` (needs NATS and PostgreSQL; 3 runs).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use soakwatch::config::Config;
use soakwatch::testkit::demo::{replica_config, ReplicaFiles};
use soakwatch::testkit::replica::{self, HrvEvent, ReplicaNames};

const TESTKIT: &str = env!("CARGO_BIN_EXE_soakwatch-testkit");

type Got = Arc<Mutex<Vec<(Instant, serde_json::Value)>>>;

async fn receiver() -> (String, Got) {
    let got: Got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let g = g.clone();
            async move {
                let v = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
                if let Ok(mut l) = g.lock() {
                    l.push((Instant::now(), v));
                }
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", l.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (url, got)
}

/// The port in the stand-in's address file once it has bound one (it
/// starts out as `127.0.0.1:0`, which the first stand-in replaces).
async fn bound_port(addr_file: &std::path::Path) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let port = std::fs::read_to_string(addr_file)
            .ok()
            .and_then(|a| a.trim().rsplit(':').next()?.parse::<u16>().ok())
            .filter(|p| *p != 0);
        if let Some(port) = port {
            return port;
        }
        assert!(
            Instant::now() < deadline,
            "the stand-in bound no port within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for(got: &Got, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(t) = got
            .lock()
            .ok()
            .and_then(|g| g.iter().find(|(_, v)| pred(v)).map(|(t, _)| *t))
        {
            return t;
        }
        assert!(Instant::now() < deadline, "no {what} within 90 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn one_run(nats_url: &str, admin: &str) -> (f64, f64, Vec<String>) {
    let names = ReplicaNames::random();
    let nats = async_nats::connect(nats_url).await.expect("NATS");
    replica::provision(&nats, admin, &names)
        .await
        .expect("provision");
    let js = async_nats::jetstream::new(nats.clone());
    // The legacy stream's consumer, which single mode binds after the rollback.
    let legacy_subject = format!("sw.{}.legacy.athlete-ally.hrv.raw-received", names.tag);
    let mut cc = replica::consumer_config(&names);
    cc.filter_subject = legacy_subject.clone();
    cc.deliver_policy = async_nats::jetstream::consumer::DeliverPolicy::New;
    js.create_consumer_on_stream(cc, names.legacy_stream.as_str())
        .await
        .expect("legacy consumer");

    let dir = tempfile::tempdir().expect("tmp");
    let files = ReplicaFiles::in_dir(dir.path());
    soakwatch::testkit::standin::write_default_env_file(&files.env_file).expect("env");
    let db_url = replica::replica_database_url(admin, &names).expect("db url");
    let pid = dir.path().join("standin.pid");
    let restart = dir.path().join("restart.sh");
    // The address file is the stand-in's listen address and where it writes
    // what it bound: the first start binds port 0 (the kernel picks one), every
    // restart (the rollback's) binds that same port again.
    let addr = dir.path().join("standin.addr");
    std::fs::write(&addr, "127.0.0.1:0").expect("addr file");
    std::fs::write(
        &restart,
        format!(
            "#!/bin/sh\n[ -f {pid} ] && kill $(cat {pid}) 2>/dev/null && sleep 0.2\n{TESTKIT} standin --tag {tag} --nats-url {nats_url} --database-url {db} --env-file {env} --log-file {log} --listen \"$(cat {addr})\" --addr-file {addr} >/dev/null 2>&1 &\necho $! > {pid}\n",
            pid = pid.display(),
            addr = addr.display(),
            tag = names.tag,
            db = db_url,
            env = files.env_file.display(),
            log = files.log_file.display(),
        ),
    )
    .expect("script");
    let status = std::process::Command::new("sh")
        .arg(&restart)
        .status()
        .expect("start stand-in");
    assert!(status.success());
    let port = bound_port(&addr).await;
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    for n in 0..5 {
        replica::publish_hrv(&js, &names.hrv_subject, &HrvEvent::synthetic(n, &names.tag))
            .await
            .expect("publish");
    }

    let (hook, got) = receiver().await;
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let text = format!(
        "{base}\n[watch]\ninterval = \"1s\"\nmax_gap = \"3s\"\nstate = {state}\nreports_dir = {reports}\ncheckpoints = []\nlisten = \"\"\n\n\
         [[alerts.routes]]\nname = \"hook\"\nkind = \"webhook\"\nurl = {hook}\n\n\
         [rollback]\nmode = \"armed\"\nenv_file = {env}\nrestart_command = [\"sh\", {restart}]\nrestart_timeout = \"20s\"\nlog_file = {log}\n\
         expect_log_lines = [\"Stream mode: single\", {cand}]\nverify_timeout = \"20s\"\n\n\
         [rollback.triggers]\ndlq_spike = \"0s\"\n\n\
         [rollback.e2e]\nnats_url = {nats}\nsubject = {legacy}\ndatabase_url = {db}\ntable = \"hrv_data\"\ntimeout = \"20s\"\n",
        base = replica_config(&names, nats_url, &db_url, &metrics_url, &files, Utc::now()),
        state = q(&dir.path().join("state.sqlite").display().to_string()),
        reports = q(&dir.path().join("reports").display().to_string()),
        hook = q(&hook),
        env = q(&files.env_file.display().to_string()),
        restart = q(&restart.display().to_string()),
        log = q(&files.log_file.display().to_string()),
        cand = q(&format!("Stream candidates: {}", names.legacy_stream)),
        nats = q(nats_url),
        legacy = q(&legacy_subject),
        db = q(&db_url),
    );
    let cfg_path = dir.path().join("checks.toml");
    std::fs::write(&cfg_path, text).expect("config");
    let cfg = Config::load(&cfg_path).expect("config valid");
    let prober = soakwatch::probe::Prober::new(cfg.clone()).expect("prober");
    let watch = soakwatch::watch::Watch::open(cfg, soakwatch::watch::SharedStatus::default())
        .await
        .expect("watch");
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    let daemon = tokio::spawn(async move {
        watch
            .run(
                &prober,
                &soakwatch::watch::SystemClock,
                Default::default(),
                t,
            )
            .await
            .map(|s| s.rollback)
    });
    // The spike is counted over a trailing minute of real time, and a window
    // that samples do not cover yet never fires: inject the fault once the
    // soak is a minute (plus two cycles) old.
    tokio::time::sleep(Duration::from_secs(63)).await;

    let injected = Instant::now();
    for n in 0..15 {
        replica::publish_hrv(
            &js,
            &names.hrv_subject,
            &HrvEvent::poison(100 + n, &names.tag),
        )
        .await
        .expect("poison");
    }
    let alert = wait_for(&got, "DLQ alert", |v| {
        v["kind"] == "change"
            && v["alerts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["criterion"] == "dlq"))
    })
    .await;
    let rolled = wait_for(&got, "rollback outcome", |v| v["kind"] == "rollback").await;
    let outcome = got
        .lock()
        .ok()
        .and_then(|g| {
            g.iter()
                .find(|(_, v)| v["kind"] == "rollback")
                .map(|(_, v)| v["alerts"][0]["summary"].to_string())
        })
        .unwrap_or_default();
    token.cancel();
    let rb = daemon.await.ok().and_then(|r| r.ok()).flatten();
    let steps: Vec<String> = rb
        .map(|r| {
            r.steps
                .iter()
                .map(|s| format!("{} {} {} ms", s.name, s.status.as_str(), s.duration_ms))
                .collect()
        })
        .unwrap_or_default();
    if let Ok(p) = std::fs::read_to_string(&pid) {
        let _ = std::process::Command::new("kill").arg(p.trim()).status();
    }
    replica::teardown(&nats, admin, &names)
        .await
        .expect("teardown");
    println!("  outcome: {outcome}");
    (
        (alert - injected).as_secs_f64(),
        (rolled - injected).as_secs_f64(),
        steps,
    )
}

fn main() {
    soakwatch::install_crypto_provider();
    if std::env::var("SOAKWATCH_LOG").is_ok() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("SOAKWATCH_LOG"))
            .with_writer(std::io::stderr)
            .init();
    }
    let runs: u32 = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let admin = std::env::var("DATABASE_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    println!("fault (15 dead-lettered messages) -> alert at a webhook -> rollback completed; interval 1 s, dlq_spike trigger 0 s");
    for run in 1..=runs {
        let (alert, rollback, steps) = rt.block_on(one_run(&nats_url, &admin));
        println!(
            "run {run}: alert {alert:.2} s, rollback completed {rollback:.2} s; steps: {}",
            steps.join(", ")
        );
    }
}
