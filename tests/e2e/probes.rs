//! Probes stay independent of each other, through the real binary: a huge
//! env file, a huge log line and a database held by a lock at once leave
//! the NATS and metrics probes answering; and a /metrics that answers with
//! something else than an exposition (gzip, an HTML login page, an empty
//! 200) is `unknown` for the metrics criteria and never "down" for
//! `service_up`. Every peer is real: the replica's NATS and PostgreSQL, the
//! stand-in service, a loopback HTTP server serving each body.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Connection;

use crate::common::*;

/// Appends `n` distinct assignments to the replica's env file (~9 bytes each).
fn grow_env_file(r: &Replica, n: usize) -> u64 {
    use std::fmt::Write;
    let mut text = read(&r.files.env_file);
    for i in 0..n {
        let _ = writeln!(text, "V{i}=1");
    }
    std::fs::write(&r.files.env_file, &text).expect("env file");
    text.len() as u64
}

/// A loopback /metrics in front of the stand-in's that answers after `delay`.
async fn slow_metrics(upstream: String, delay: Duration) -> u16 {
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move || {
        let (http, upstream) = (http.clone(), upstream.clone());
        async move {
            tokio::time::sleep(delay).await;
            match http.get(&upstream).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(e) => format!("upstream: {e}"),
            }
        }
    });
    serve_loopback(app).await.port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_huge_env_file_a_huge_log_line_and_a_locked_table_leave_nats_and_metrics_answering() {
    let r = Replica::healthy(2).await;
    // 90k lines, about 0.8 MB: the parse was quadratic and ran inside the
    // combined probe future, so every probe "timed out" behind it.
    let bytes = grow_env_file(&r, 90_000);
    assert!(bytes > 700_000, "{bytes}");
    // One 24 MB log line, no newline in it.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&r.files.log_file)
            .expect("log");
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..24 {
            f.write_all(&chunk).expect("write");
        }
        f.write_all(b"\n").expect("newline");
    }
    // The database is slow: its table is locked by this test's transaction.
    let mut lock = sqlx::PgConnection::connect(&r.db_url)
        .await
        .expect("database");
    sqlx::query("BEGIN")
        .execute(&mut lock)
        .await
        .expect("begin");
    let stmt = format!("LOCK TABLE \"{}\" IN ACCESS EXCLUSIVE MODE", r.names.table);
    sqlx::query(sqlx::AssertSqlSafe(stmt))
        .execute(&mut lock)
        .await
        .expect("lock");
    // The service answers /metrics in a second: its probe is still waiting
    // when the env file has been read (in a millisecond) and is parsed.
    let slow = slow_metrics(r.metrics_url.clone(), Duration::from_secs(1)).await;
    let url = r.metrics_url.clone();
    r.edit_config(|t| {
        t.replace("timeout = \"5s\"", "timeout = \"3s\"")
            .replace(&url, &format!("http://127.0.0.1:{slow}/metrics"))
    });

    let run = run_check(&r.config, "json", "0s").await;
    let j = run.json();
    let probes = &j["probes"];
    for (name, p) in probes.as_object().expect("probes") {
        if name.starts_with("stream ") || name == "consumer" || name == "metrics" {
            assert_eq!(p["ok"], true, "{name}: {p}\n{}", run.stderr);
        }
    }
    assert_eq!(probes["metrics"]["ok"], true, "{}", run.stdout);
    assert_eq!(probes["consumer"]["ok"], true, "{}", run.stdout);
    assert_eq!(probes["service_env"]["ok"], true, "{}", run.stdout);
    assert_eq!(probes["log"]["ok"], true, "{}", run.stdout);
    // Only the database is slow, and only it says so.
    assert_eq!(probes["database"]["ok"], false, "{}", run.stdout);
    let db = probes["database"]["error"].as_str().unwrap_or("");
    assert!(db.starts_with("database"), "{db}");
    for id in ["service_up", "topology", "consumer_config"] {
        assert_eq!(run.status(id), "pass", "{id}: {}", run.stdout);
    }
    sqlx::query("ROLLBACK")
        .execute(&mut lock)
        .await
        .expect("rollback");
}

/// What the loopback /metrics serves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Body {
    /// The stand-in's exposition, gzipped, with `Content-Encoding: gzip`.
    Gzip,
    /// A login page, 200, text/html.
    LoginPage,
    /// 200 and nothing.
    Empty,
}

/// The body gzipped by gzip(1).
fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("to gzip");
    let out = child.wait_with_output().expect("gzip output");
    assert!(out.status.success());
    out.stdout
}

/// Serves `body` as /metrics; records each request's Accept-Encoding.
async fn serve_body(mode: Arc<Mutex<(Body, Vec<u8>)>>, seen: Arc<Mutex<Vec<String>>>) -> u16 {
    use axum::http::{header, HeaderMap, StatusCode};
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let (mode, seen) = (mode.clone(), seen.clone());
        async move {
            let ae = headers
                .get(header::ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            seen.lock().expect("lock").push(ae);
            let (body, plain) = mode.lock().expect("lock").clone();
            match body {
                Body::Gzip => (
                    StatusCode::OK,
                    [
                        (header::CONTENT_TYPE, "text/plain; version=0.0.4"),
                        (header::CONTENT_ENCODING, "gzip"),
                    ],
                    gzip(&plain),
                ),
                Body::LoginPage => (
                    StatusCode::OK,
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    b"<!doctype html><html><head><title>Sign in</title></head><body>\
                      <form method=\"post\" action=\"/login\"><input name=\"user\">\
                      <input type=\"password\" name=\"password\"></form></body></html>\n"
                        .to_vec(),
                ),
                Body::Empty => (
                    StatusCode::OK,
                    [
                        (header::CONTENT_TYPE, "text/plain"),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    Vec::new(),
                ),
            }
        }
    });
    serve_loopback(app).await.port()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_metrics_answer_that_is_not_an_exposition_is_unknown_never_down() {
    let r = Replica::healthy(2).await;
    let plain = r.metrics_body().await.into_bytes();
    let mode = Arc::new(Mutex::new((Body::Gzip, plain)));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let port = serve_body(mode.clone(), seen.clone()).await;
    let url = r.metrics_url.clone();
    r.edit_config(|t| t.replace(&url, &format!("http://127.0.0.1:{port}/metrics")));

    // gzip: asked for, decoded, judged as the plain body.
    let run = run_check(&r.config, "json", "0s").await;
    let j = run.json();
    assert_eq!(j["probes"]["metrics"]["ok"], true, "{}", run.stdout);
    assert_eq!(run.status("service_up"), "pass", "{}", run.stdout);
    assert_eq!(run.status("stream_purity"), "pass", "{}", run.stdout);
    let asked = seen.lock().expect("lock").clone();
    assert!(
        asked.iter().all(|a| a.contains("gzip")),
        "Accept-Encoding sent: {asked:?}"
    );

    for body in [Body::LoginPage, Body::Empty] {
        mode.lock().expect("lock").0 = body;
        let run = run_check(&r.config, "json", "0s").await;
        let j = run.json();
        // The metrics criteria cannot be judged, with the reason.
        for id in ["stream_purity", "success_rate", "dlq"] {
            assert_eq!(run.status(id), "unknown", "{body:?} {id}: {}", run.stdout);
        }
        let reason = j["probes"]["metrics"]["error"].as_str().unwrap_or("");
        assert!(
            reason.contains("not a Prometheus exposition") && reason.contains("200"),
            "{body:?}: {reason}"
        );
        // service_up: the endpoint answers, with something else; never down.
        assert_eq!(
            run.status("service_up"),
            "unknown",
            "{body:?}: {}",
            run.stdout
        );
        let up = run.evidence("service_up");
        assert!(
            up.contains("answers") && up.contains("not a Prometheus exposition"),
            "{body:?}: {up}"
        );
        let observed = j["criteria"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["id"] == "service_up"))
            .map(|c| c["observed"].to_string())
            .unwrap_or_default();
        assert!(!observed.contains("down"), "{body:?}: {observed}");
    }
}
