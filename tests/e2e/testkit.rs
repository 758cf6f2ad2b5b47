//! The test kit itself against the machine's real NATS and PostgreSQL: a
//! replica is provisioned and torn down as the seed describes, and the
//! stand-in service (run in this process, on a port the kernel picks)
//! processes, dead-letters and nak's events and obeys its fault switches.
//! (Moved out of `src/testkit/`, so `cargo test --lib` needs no server.)

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures::FutureExt;
use sqlx::{Connection, PgConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::common::{admin_url, nats_url};
use soakwatch::testkit::replica::{
    consumer_config, provision, publish_hrv, replica_database_url, teardown, HrvEvent,
    ReplicaError, ReplicaNames, DLQ_MESSAGE_COUNT, HOT_STREAM_MAX_AGE, LEGACY_MESSAGE_COUNT,
};
use soakwatch::testkit::standin::{
    bind, write_default_env_file, StandinError, StandinOptions, DLQ_REASON_HEADER,
};

// ----- the replica: provisioning and teardown -----

/// Whether JetStream knows the stream `name` (any other lookup error fails the test).
async fn stream_exists(js: &jetstream::Context, name: &str) -> bool {
    match js.get_stream(name).await {
        Ok(_) => true,
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            false
        }
        Err(e) => panic!("look up stream {name}: {e}"),
    }
}

/// Runs `body`, then tears the replica down even if `body` panicked or failed.
async fn with_replica<F, Fut>(names: &ReplicaNames, body: F)
where
    F: FnOnce(async_nats::Client) -> Fut,
    Fut: Future<Output = ()>,
{
    let nats = async_nats::connect(nats_url())
        .await
        .expect("connect to NATS");
    let outcome = AssertUnwindSafe(async {
        provision(&nats, &admin_url(), names)
            .await
            .expect("provision");
        body(nats.clone()).await;
    })
    .catch_unwind()
    .await;
    let td = teardown(&nats, &admin_url(), names).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    td.expect("teardown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provision_replays_the_seed_and_teardown_removes_it() {
    let names = ReplicaNames::random();
    let nats = async_nats::connect(nats_url())
        .await
        .expect("connect to NATS");
    let js = jetstream::new(nats.clone());
    with_replica(&names, |_nats| async {
        let mut legacy = js.get_stream(&names.legacy_stream).await.expect("legacy");
        let info = legacy.info().await.expect("legacy info");
        assert_eq!(info.state.messages, LEGACY_MESSAGE_COUNT);
        assert_eq!(info.config.subjects, names.legacy_subjects);
        // Payloads are ~220 bytes; the stored size adds subject and per-message overhead.
        let per_message = info.state.bytes / LEGACY_MESSAGE_COUNT;
        assert!((220..330).contains(&per_message), "{}", info.state.bytes);

        for (name, subjects) in [
            (&names.core_stream, &names.core_subjects),
            (&names.vendor_stream, &names.vendor_subjects),
        ] {
            let mut s = js.get_stream(name).await.expect("hot stream");
            let info = s.info().await.expect("hot info");
            assert_eq!(info.state.messages, 0, "{name}");
            assert_eq!(&info.config.subjects, subjects);
            assert_eq!(info.config.max_age, HOT_STREAM_MAX_AGE);
            assert_eq!(info.config.num_replicas, 1);
            assert_eq!(info.config.storage, stream::StorageType::File);
        }

        let mut dlq = js.get_stream(&names.dlq_stream).await.expect("dlq");
        let info = dlq.info().await.expect("dlq info");
        assert_eq!(info.state.messages, DLQ_MESSAGE_COUNT);
        assert_eq!(info.config.subjects, names.dlq_subjects);
        assert_eq!(info.config.max_age, Duration::ZERO);
        assert_eq!(info.config.storage, stream::StorageType::File);

        let core = js.get_stream(&names.core_stream).await.expect("core");
        let ci = core.consumer_info(&names.durable).await.expect("consumer");
        assert_eq!(
            ci.config.durable_name.as_deref(),
            Some("normalize-hrv-durable")
        );
        assert_eq!(ci.config.filter_subject, names.hrv_subject);
        assert_eq!(ci.config.ack_policy, consumer::AckPolicy::Explicit);
        assert_eq!(ci.config.max_deliver, 5);
        assert_eq!(ci.config.ack_wait, Duration::from_secs(60));
        assert_eq!(ci.config.max_ack_pending, 1000);
        assert!(
            ci.config.deliver_subject.is_none(),
            "must be a pull consumer"
        );
        assert_eq!(ci.num_pending, 0);
        assert_eq!(ci.delivered.stream_sequence, 0);
        assert_eq!(ci.ack_floor.stream_sequence, 0);

        let url = replica_database_url(&admin_url(), &names).expect("url");
        let mut conn = PgConnection::connect(&url).await.expect("replica db");
        let mut indexes: Vec<String> = sqlx::query_scalar(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'hrv_data' ORDER BY indexname",
        )
        .fetch_all(&mut conn)
        .await
        .expect("indexes");
        indexes.sort();
        assert_eq!(indexes.len(), 4, "{indexes:?}");
        assert!(indexes.iter().any(|d| d.contains("(\"createdAt\")")));
        assert!(indexes.iter().any(|d| d.contains("(\"updatedAt\")")));
        assert!(indexes
            .iter()
            .any(|d| d.contains("UNIQUE") && d.contains("(\"userId\", date)")));
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM hrv_data")
            .fetch_one(&mut conn)
            .await
            .expect("count");
        assert_eq!(rows, 0);
        let _ = conn.close().await;

        // Provisioning twice must not replay the seed on top of itself.
        let again = provision(&nats, &admin_url(), &names).await;
        assert!(
            matches!(again, Err(ReplicaError::AlreadyProvisioned { .. })),
            "{again:?}"
        );
    })
    .await;

    // with_replica tore everything down; check, then tear down again (idempotent).
    for name in names.streams() {
        assert!(!stream_exists(&js, name).await, "{name} survived");
    }
    let mut admin = PgConnection::connect(&admin_url()).await.expect("admin db");
    let db: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&names.database)
        .fetch_optional(&mut admin)
        .await
        .expect("pg_database");
    assert!(db.is_none(), "database survived teardown");
    let _ = admin.close().await;
    teardown(&nats, &admin_url(), &names)
        .await
        .expect("second teardown is a no-op");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_hrv_returns_the_stream_sequence() {
    let names = ReplicaNames::random();
    let n = &names;
    with_replica(&names, |nats| async move {
        let names = n;
        let js = jetstream::new(nats);
        let s1 = publish_hrv(&js, &names.hrv_subject, &HrvEvent::synthetic(1, &names.tag))
            .await
            .expect("publish 1");
        let s2 = publish_hrv(&js, &names.hrv_subject, &HrvEvent::synthetic(2, &names.tag))
            .await
            .expect("publish 2");
        assert_eq!((s1, s2), (1, 2));
        let core = js.get_stream(&names.core_stream).await.expect("core");
        let ci = core.consumer_info(&names.durable).await.expect("consumer");
        assert_eq!(ci.num_pending, 2);
        let msg = core.get_raw_message(1).await.expect("raw message");
        let back: HrvEvent = serde_json::from_slice(&msg.payload).expect("event json");
        assert_eq!(back.payload.user_id, format!("sw-{}-user-1", names.tag));
    })
    .await;
}

// ----- the stand-in: helpers -----

/// Minimal HTTP/1.1 client (one request per connection); returns (status, head, body).
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect http");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write http");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read http");
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (status, head.to_string(), body.to_string())
}

/// Value of `normalize_hrv_messages_total{result=...}` (0 if absent).
fn counter(text: &str, result: &str) -> u64 {
    let prefix = format!("normalize_hrv_messages_total{{result=\"{result}\",");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn histogram_sum(text: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with("normalize_hrv_processing_duration_seconds_sum{"))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

async fn metrics(addr: SocketAddr) -> String {
    let (status, _, body) = http(addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    body
}

/// Polls `/metrics` until counter `result` reaches `want`.
async fn wait_counter(addr: SocketAddr, result: &str, want: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics(addr).await;
        if counter(&text, result) >= want {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "counter {result} did not reach {want}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_log(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "log never contained {needle:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn row_count(conn: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM hrv_data")
        .fetch_one(conn)
        .await
        .expect("count rows")
}

/// A running stand-in plus what the tests need to drive and stop it.
struct Running {
    addr: SocketAddr,
    log_file: PathBuf,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), StandinError>>,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Stops the stand-in and returns the final log (the temp dir goes away with `self`).
    async fn stop(self) -> String {
        self.stop.cancel();
        let r = tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("stand-in stops within 15s")
            .expect("stand-in task");
        r.expect("stand-in result");
        std::fs::read_to_string(&self.log_file).expect("read log")
    }
}

async fn start_standin(names: &ReplicaNames, env: Option<&str>, database_url: String) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let env_file = dir.path().join(".env");
    match env {
        Some(text) => std::fs::write(&env_file, text).expect("write env"),
        None => write_default_env_file(&env_file).expect("write env"),
    }
    let log_file = dir.path().join("normalize.log");
    let opts = StandinOptions {
        nats_url: nats_url(),
        database_url,
        names: names.clone(),
        env_file,
        log_file: log_file.clone(),
        listen: "127.0.0.1:0".parse().expect("addr"),
    };
    let bound = bind(opts).await.expect("bind stand-in");
    let addr = bound.local_addr();
    assert_ne!(addr.port(), 0);
    let stop = CancellationToken::new();
    let task = tokio::spawn(bound.run(stop.clone()));
    Running {
        addr,
        log_file,
        stop,
        task,
        _dir: dir,
    }
}

// ----- the stand-in: tests -----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standin_processes_dead_letters_and_obeys_fault_switches() {
    let names = ReplicaNames::random();
    let n = &names;
    with_replica(&names, |nats| async move {
        let names = n;
        let js = jetstream::new(nats);
        let db_url = replica_database_url(&admin_url(), names).expect("db url");
        let mut db = PgConnection::connect(&db_url).await.expect("replica db");
        let run = start_standin(names, None, db_url.clone()).await;
        let addr = run.addr;

        // Startup log: the seed's lines with the replica's names, each timestamped.
        let log = wait_log(&run.log_file, "Starting HRV message processing loop...").await;
        for expected in [
            "[event-bus] Stream mode: multi (EVENT_STREAM_MODE=\"multi\")".to_string(),
            format!("[normalize-service] Stream candidates: {}, {}", names.core_stream, names.legacy_stream),
            format!("[normalize] Found existing HRV consumer on {}: normalize-hrv-durable", names.core_stream),
            format!("[normalize] HRV durable pull consumer bound: normalize-hrv-durable, subject: {}, ackWait: 60000ms, maxDeliver: 5", names.hrv_subject),
            format!("[normalize-hrv] DLQ subject prefix: {}", names.dlq_subject),
            "[normalize] Starting HRV message processing loop...".to_string(),
        ] {
            let line = log
                .lines()
                .find(|l| l.ends_with(expected.as_str()))
                .unwrap_or_else(|| panic!("log lacks {expected:?}:\n{log}"));
            let ts = line.split(' ').next().expect("timestamp");
            assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{line}");
            assert_eq!(line.len(), ts.len() + 1 + expected.len(), "{line}");
        }

        let (status, head, _) = http(addr, "GET", "/metrics").await;
        assert_eq!(status, 200);
        assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");

        // 5 valid events -> 5 rows, success 5.
        let mut events = Vec::new();
        for i in 1..=5 {
            let e = HrvEvent::synthetic(i, &names.tag);
            publish_hrv(&js, &names.hrv_subject, &e).await.expect("publish");
            events.push(e);
        }
        let text = wait_counter(addr, "success", 5).await;
        assert_eq!(counter(&text, "dlq"), 0);
        assert_eq!(counter(&text, "retry"), 0);
        let labels = format!(
            "normalize_hrv_messages_total{{result=\"success\",subject=\"{}\",stream=\"{}\",durable=\"normalize-hrv-durable\"}} 5",
            names.hrv_subject, names.core_stream
        );
        assert!(text.contains(&labels), "{text}");
        assert!(text.contains(&format!(
            "normalize_hrv_processing_duration_seconds_count{{stream=\"{}\",durable=\"normalize-hrv-durable\"}} 5",
            names.core_stream
        )), "{text}");
        assert_eq!(row_count(&mut db).await, 5);
        for e in &events {
            let (rmssd, ln, captured): (f64, Option<f64>, Option<chrono::NaiveDateTime>) = sqlx::query_as(
                "SELECT rmssd, \"lnRmssd\", \"capturedAt\" FROM hrv_data WHERE \"userId\" = $1",
            )
            .bind(&e.payload.user_id)
            .fetch_one(&mut db)
            .await
            .expect("row");
            assert_eq!(rmssd, e.payload.rmssd);
            assert_eq!(ln, Some(e.payload.rmssd.ln()));
            let want = chrono::DateTime::parse_from_rfc3339(&e.payload.captured_at).expect("ts").naive_utc();
            assert_eq!(captured, Some(want));
        }
        let core = js.get_stream(&names.core_stream).await.expect("core");
        let ci = core.consumer_info(&names.durable).await.expect("consumer");
        assert_eq!((ci.num_pending, ci.num_ack_pending), (0, 0));

        // A poison event goes to the DLQ stream (1 + 1 messages) and is acked.
        publish_hrv(&js, &names.hrv_subject, &HrvEvent::poison(1, &names.tag)).await.expect("publish poison");
        let text = wait_counter(addr, "dlq", 1).await;
        assert_eq!(counter(&text, "success"), 5);
        let dlq = js.get_stream(&names.dlq_stream).await.expect("dlq");
        let info = dlq.get_info().await.expect("dlq info");
        assert_eq!(info.state.messages, 2);
        let dead = dlq.get_raw_message(info.state.last_sequence).await.expect("dlq msg");
        assert_eq!(dead.subject.as_str(), names.dlq_subject);
        let reason = dead.headers.get(DLQ_REASON_HEADER).map(|v| v.as_str().to_string()).unwrap_or_default();
        assert!(reason.contains("rMSSD"), "{reason:?}");
        let back: HrvEvent = serde_json::from_slice(&dead.payload).expect("original payload");
        assert_eq!(back.payload.rmssd, -1.0);
        wait_log(&run.log_file, "[normalize-hrv] Message sent to DLQ: rMSSD").await;
        assert_eq!(row_count(&mut db).await, 5);

        // skip-db: still acked and counted as success, but no rows are written.
        let (status, _, body) = http(addr, "POST", "/admin/skip-db").await;
        assert_eq!(status, 200, "{body}");
        let state: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(state["skip_db"], true);
        for i in 6..=8 {
            publish_hrv(&js, &names.hrv_subject, &HrvEvent::synthetic(i, &names.tag)).await.expect("publish");
        }
        wait_counter(addr, "success", 8).await;
        assert_eq!(row_count(&mut db).await, 5, "skip-db must stop row writes");
        let ci = core.consumer_info(&names.durable).await.expect("consumer");
        assert_eq!((ci.num_pending, ci.num_ack_pending), (0, 0));
        let (status, _, _) = http(addr, "POST", "/admin/normal").await;
        assert_eq!(status, 200);
        publish_hrv(&js, &names.hrv_subject, &HrvEvent::synthetic(9, &names.tag)).await.expect("publish");
        wait_counter(addr, "success", 9).await;
        assert_eq!(row_count(&mut db).await, 6);

        // pause: nothing is pulled, pending builds up; resume drains it.
        let (status, _, body) = http(addr, "POST", "/admin/pause").await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(1500)).await; // let an in-flight pull expire
        for i in 10..=11 {
            publish_hrv(&js, &names.hrv_subject, &HrvEvent::synthetic(i, &names.tag)).await.expect("publish");
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(counter(&metrics(addr).await, "success"), 9);
        let ci = core.consumer_info(&names.durable).await.expect("consumer");
        assert_eq!(ci.num_pending, 2, "paused stand-in must not pull");
        let (_, _, body) = http(addr, "GET", "/admin/state").await;
        let state: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(state["paused"], true);
        assert_eq!(state["bound_stream"], names.core_stream.as_str());
        let (status, _, _) = http(addr, "POST", "/admin/resume").await;
        assert_eq!(status, 200);
        wait_counter(addr, "success", 11).await;
        assert_eq!(row_count(&mut db).await, 8);

        // slow: latency shows up in the histogram.
        let before = histogram_sum(&metrics(addr).await);
        let (status, _, _) = http(addr, "POST", "/admin/slow?ms=300").await;
        assert_eq!(status, 200);
        let (status, _, _) = http(addr, "POST", "/admin/slow?ms=abc").await;
        assert_eq!(status, 400);
        publish_hrv(&js, &names.hrv_subject, &HrvEvent::synthetic(12, &names.tag)).await.expect("publish");
        let text = wait_counter(addr, "success", 12).await;
        assert!(histogram_sum(&text) - before >= 0.3, "{text}");
        let (_, _, body) = http(addr, "POST", "/admin/slow?ms=0").await;
        let state: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(state["slow_ms"], 0);

        let log = run.stop().await;
        assert!(log.contains("[normalize-service] Shutdown complete"));
        assert!(log.contains("[normalize] Processing HRV message: {\"streamSeq\":1,\"deliverySeq\":1,\"redeliveries\":1,\"subject\":"), "{log}");
        let _ = db.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standin_waits_for_the_consumer_and_never_creates_it() {
    let names = ReplicaNames::random();
    let n = &names;
    with_replica(&names, |nats| async move {
        let names = n;
        let js = jetstream::new(nats);
        let core = js.get_stream(&names.core_stream).await.expect("core");
        core.delete_consumer(&names.durable)
            .await
            .expect("delete consumer");
        let db_url = replica_database_url(&admin_url(), names).expect("db url");
        let run = start_standin(names, None, db_url).await;
        wait_log(
            &run.log_file,
            "[normalize] Failed to bind HRV consumer normalize-hrv-durable",
        )
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let err = core.consumer_info(&names.durable).await;
        assert!(err.is_err(), "the stand-in must not create the consumer");
        let text = metrics(run.addr).await;
        assert!(!text.contains("normalize_hrv_messages_total{"), "{text}");

        js.create_consumer_on_stream(consumer_config(names), names.core_stream.as_str())
            .await
            .expect("create consumer");
        wait_log(&run.log_file, "Starting HRV message processing loop...").await;
        publish_hrv(&js, &names.hrv_subject, &HrvEvent::synthetic(1, &names.tag))
            .await
            .expect("publish");
        wait_counter(run.addr, "success", 1).await;
        run.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standin_single_mode_binds_the_legacy_stream() {
    let names = ReplicaNames::random();
    let n = &names;
    with_replica(&names, |nats| async move {
        let names = n;
        let js = jetstream::new(nats);
        let db_url = replica_database_url(&admin_url(), names).expect("db url");
        let env = "EVENT_STREAM_MODE=single\nNORMALIZE_HRV_ACK_WAIT_MS=30000\n";
        let run = start_standin(names, Some(env), db_url).await;
        let log = wait_log(&run.log_file, "[normalize] Failed to bind HRV consumer").await;
        assert!(
            log.contains("[event-bus] Stream mode: single (EVENT_STREAM_MODE=\"single\")"),
            "{log}"
        );
        assert!(
            log.contains(&format!(
                "[normalize-service] Stream candidates: {}\n",
                names.legacy_stream
            )),
            "{log}"
        );

        let legacy_subject = format!("sw.{}.legacy.athlete-ally.hrv.raw-received", names.tag);
        let mut cfg = consumer_config(names);
        cfg.filter_subject = legacy_subject.clone();
        cfg.deliver_policy = consumer::DeliverPolicy::New;
        js.create_consumer_on_stream(cfg, names.legacy_stream.as_str())
            .await
            .expect("create legacy consumer");
        let log = wait_log(&run.log_file, "Starting HRV message processing loop...").await;
        assert!(
            log.contains(&format!(
                "[normalize] Found existing HRV consumer on {}: normalize-hrv-durable",
                names.legacy_stream
            )),
            "{log}"
        );
        assert!(
            log.contains(&format!(
                "subject: {legacy_subject}, ackWait: 30000ms, maxDeliver: 5"
            )),
            "{log}"
        );
        publish_hrv(&js, &legacy_subject, &HrvEvent::synthetic(1, &names.tag))
            .await
            .expect("publish");
        let text = wait_counter(run.addr, "success", 1).await;
        assert!(
            text.contains(&format!("stream=\"{}\"", names.legacy_stream)),
            "{text}"
        );
        assert!(
            !text.contains(&format!("stream=\"{}\"", names.core_stream)),
            "{text}"
        );
        run.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standin_naks_on_database_errors_without_leaking_the_url() {
    let names = ReplicaNames::random();
    let n = &names;
    with_replica(&names, |nats| async move {
        let names = n;
        let js = jetstream::new(nats);
        // Trust auth ignores the password; the database does not exist, so every write fails.
        let bad_url = format!(
            "postgres://postgres:hunter2secret@127.0.0.1:5432/{}_missing",
            names.database
        );
        let run = start_standin(names, None, bad_url).await;
        wait_log(&run.log_file, "Starting HRV message processing loop...").await;
        publish_hrv(&js, &names.hrv_subject, &HrvEvent::synthetic(1, &names.tag))
            .await
            .expect("publish");
        let text = wait_counter(run.addr, "retry", 2).await;
        assert_eq!(counter(&text, "success"), 0);
        let core = js.get_stream(&names.core_stream).await.expect("core");
        let ci = core.consumer_info(&names.durable).await.expect("consumer");
        assert!(ci.delivered.stream_sequence >= 1);
        assert_eq!(
            ci.ack_floor.stream_sequence, 0,
            "a failed write must not be acked"
        );
        let log = std::fs::read_to_string(&run.log_file).expect("log");
        assert!(
            log.contains("[normalize] Database error processing HRV message"),
            "{log}"
        );
        assert!(!log.contains("hunter2secret"), "{log}");
        run.stop().await;
    })
    .await;
}
