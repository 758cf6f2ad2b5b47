//! `soakwatch check` end to end: the real binary against a replica of the
//! Phase B topology on the machine's NATS and PostgreSQL, with a stand-in
//! service process. Each fault fails exactly the criteria it should.

use std::time::{Duration, Instant};

use crate::common::*;

const ALL_IDS: [&str; 13] = [
    "topology",
    "consumer_config",
    "consumer_lag",
    "redeliveries",
    "legacy_idle",
    "dlq",
    "fallback",
    "stream_purity",
    "success_rate",
    "p95_latency",
    "db_writes",
    "db_integrity",
    "service_up",
];

#[tokio::test(flavor = "multi_thread")]
async fn healthy_replica_passes_every_criterion() {
    let mut r = Replica::healthy(10).await;
    // The stand-in's start-up lines include "Stream candidates: <core>, <legacy>": a decoy.
    let log = read(&r.files.log_file);
    assert!(log.contains("Stream candidates:"), "{log}");
    let run = r.check("2s", true).await;
    assert_eq!(run.not_passing(), vec![], "{}", run.stdout);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let j = run.json();
    assert_eq!(j["schema"], "soakwatch.check/v1");
    assert_eq!(j["overall"], "pass");
    assert_eq!(j["exit_code"], 0);
    let ids: Vec<&str> = j["criteria"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ALL_IDS);
    assert!(j["window_seconds"].as_f64().unwrap_or(0.0) >= 2.0);
    assert!(
        run.evidence("db_writes").contains("row(s) written"),
        "{}",
        run.evidence("db_writes")
    );
    assert!(
        run.evidence("fallback")
            .contains("candidate line(s) ignored"),
        "{}",
        run.evidence("fallback")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dlq_message_fails_dlq_and_success_rate() {
    let mut r = Replica::healthy(5).await;
    r.publish_poison().await;
    r.wait_for("dlq", 1.0).await;
    let run = r.check("1s", true).await;
    assert_eq!(
        run.not_passing(),
        pairs(&[("dlq", "fail"), ("success_rate", "fail")]),
        "{}",
        run.stdout
    );
    assert_eq!(run.code, 2);
    let ev = run.evidence("dlq");
    assert!(ev.contains("holds 2 messages (baseline 1"), "{ev}");
    assert!(ev.contains("dead-lettered"), "{ev}");
}

#[tokio::test(flavor = "multi_thread")]
async fn backlog_fails_consumer_lag_only() {
    let mut r = Replica::healthy(3).await;
    r.admin("pause").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    r.publish(12).await;
    let run = r.check("0s", false).await;
    // A single sample: db_writes cannot be judged and says so.
    assert_eq!(
        run.not_passing(),
        pairs(&[("consumer_lag", "fail"), ("db_writes", "unknown")]),
        "{}",
        run.stdout
    );
    assert_eq!(run.code, 2);
    assert!(
        run.evidence("consumer_lag").contains("lag 12 >= 10"),
        "{}",
        run.evidence("consumer_lag")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_consumer_is_detected() {
    let mut r = Replica::provisioned().await;
    // Re-create the durable with a 1 s ack wait (and say so in config and env) so
    // "no delivery for longer than ack_wait" happens within the test.
    let stream =
        r.js.get_stream(&r.names.core_stream)
            .await
            .expect("core stream");
    stream
        .delete_consumer(&r.names.durable)
        .await
        .expect("delete consumer");
    let mut cc = soakwatch::testkit::replica::consumer_config(&r.names);
    cc.ack_wait = Duration::from_secs(1);
    stream
        .create_consumer(cc)
        .await
        .expect("re-create consumer");
    r.edit_config(|t| t.replace("ack_wait = \"60s\"", "ack_wait = \"1s\""));
    let env = read(&r.files.env_file).replace(
        "NORMALIZE_HRV_ACK_WAIT_MS=60000",
        "NORMALIZE_HRV_ACK_WAIT_MS=1000",
    );
    std::fs::write(&r.files.env_file, env).expect("env");
    r.start_standin().await;
    r.publish(2).await;
    r.wait_for("success", 2.0).await;
    r.admin("pause").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    r.publish(2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let run = r.check("0s", false).await;
    assert_eq!(
        run.not_passing(),
        pairs(&[("consumer_lag", "fail"), ("db_writes", "unknown")]),
        "{}",
        run.stdout
    );
    let ev = run.evidence("consumer_lag");
    assert!(ev.contains("stalled: 2 pending"), "{ev}");
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_write_fails_legacy_idle_only() {
    let mut r = Replica::healthy(3).await;
    let subject = format!("sw.{}.legacy.athlete-ally.hrv.raw-received", r.names.tag);
    r.js.publish(subject, "{}".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let run = r.check("1s", true).await;
    assert_eq!(
        run.not_passing(),
        pairs(&[("legacy_idle", "fail")]),
        "{}",
        run.stdout
    );
    assert!(
        run.evidence("legacy_idle")
            .contains("last_seq 56 > baseline 55"),
        "{}",
        run.evidence("legacy_idle")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fallback_log_line_fails_fallback_but_candidates_line_does_not() {
    let mut r = Replica::healthy(3).await;
    let (core, legacy) = (r.names.core_stream.clone(), r.names.legacy_stream.clone());
    r.append_log(&format!(
        "2026-11-27T00:00:00Z [normalize-service] Stream candidates: {core}, {legacy}"
    ));
    let run = r.check("1s", true).await;
    assert_eq!(
        run.not_passing(),
        vec![],
        "decoy line must not count: {}",
        run.stdout
    );

    r.append_log(&format!(
        "2026-11-27T00:00:01Z [normalize] Found existing HRV consumer on {legacy}: normalize-hrv-durable"
    ));
    let run = r.check("1s", true).await;
    assert_eq!(
        run.not_passing(),
        pairs(&[("fallback", "fail")]),
        "{}",
        run.stdout
    );
    assert!(
        run.evidence("fallback")
            .contains(&format!("consumer on {legacy}")),
        "{}",
        run.evidence("fallback")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stopped_writes_fail_db_writes_and_db_integrity() {
    let mut r = Replica::healthy(5).await;
    r.admin("skip-db").await;
    let run = r.check("2s", true).await;
    assert_eq!(
        run.not_passing(),
        pairs(&[("db_writes", "fail"), ("db_integrity", "fail")]),
        "{}",
        run.stdout
    );
    assert!(
        run.evidence("db_writes").contains("no row was written"),
        "{}",
        run.evidence("db_writes")
    );
    assert!(
        run.evidence("db_integrity").contains("missing"),
        "{}",
        run.evidence("db_integrity")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn service_down_fails_service_up_and_leaves_metric_criteria_unknown() {
    let mut r = Replica::healthy(3).await;
    r.kill_standin().await;
    let started = Instant::now();
    let run = r.check("0s", false).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(run.code, 2);
    assert_eq!(
        run.not_passing(),
        pairs(&[
            ("dlq", "unknown"),
            ("fallback", "unknown"),
            ("stream_purity", "unknown"),
            ("success_rate", "unknown"),
            ("p95_latency", "unknown"),
            ("db_writes", "unknown"),
            ("db_integrity", "unknown"),
            ("service_up", "fail"),
        ]),
        "{}",
        run.stdout
    );
    assert!(
        run.evidence("success_rate").contains("Connection refused"),
        "{}",
        run.evidence("success_rate")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn env_file_drift_fails_consumer_config_only() {
    let mut r = Replica::healthy(3).await;
    // The seed's known issue 3: the service's ack wait left at 30 s.
    let env = read(&r.files.env_file).replace(
        "NORMALIZE_HRV_ACK_WAIT_MS=60000",
        "NORMALIZE_HRV_ACK_WAIT_MS=30000",
    );
    std::fs::write(&r.files.env_file, env).expect("env");
    let run = r.check("1s", true).await;
    assert_eq!(
        run.not_passing(),
        pairs(&[("consumer_config", "fail")]),
        "{}",
        run.stdout
    );
    assert!(
        run.evidence("consumer_config")
            .contains("NORMALIZE_HRV_ACK_WAIT_MS=30000"),
        "{}",
        run.evidence("consumer_config")
    );

    let env =
        read(&r.files.env_file).replace("EVENT_STREAM_MODE=multi", "EVENT_STREAM_MODE=single");
    std::fs::write(&r.files.env_file, env).expect("env");
    let run = r.check("0s", false).await;
    assert!(
        run.evidence("consumer_config")
            .contains("EVENT_STREAM_MODE=single (expected multi)"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_drift_and_missing_stream_fail_their_criteria() {
    let mut r = Replica::healthy(2).await;
    let stream =
        r.js.get_stream(&r.names.core_stream)
            .await
            .expect("core stream");
    stream
        .delete_consumer(&r.names.durable)
        .await
        .expect("delete consumer");
    r.js.delete_stream(&r.names.vendor_stream)
        .await
        .expect("delete vendor");
    let run = r.check("0s", false).await;
    let np = run.not_passing();
    assert!(np.contains(&("topology".into(), "fail".into())), "{np:?}");
    assert!(
        np.contains(&("consumer_config".into(), "fail".into())),
        "{np:?}"
    );
    assert!(
        np.contains(&("consumer_lag".into(), "unknown".into())),
        "{np:?}"
    );
    assert!(run
        .evidence("topology")
        .contains(&format!("stream {} does not exist", r.names.vendor_stream)));
    assert!(run.evidence("consumer_config").contains("does not exist"));
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_table_and_log_are_unknown_with_reasons() {
    let mut r = Replica::healthy(2).await;
    r.edit_config(|t| t.replace("table = \"hrv_data\"", "table = \"hrv_data_missing\""));
    std::fs::remove_file(&r.files.log_file).expect("rm log");
    let run = r.check("0s", false).await;
    let np = run.not_passing();
    assert!(
        np.contains(&("db_integrity".into(), "unknown".into())),
        "{np:?}"
    );
    assert!(
        np.contains(&("fallback".into(), "unknown".into())),
        "{np:?}"
    );
    assert!(
        run.evidence("db_integrity")
            .contains("table hrv_data_missing does not exist"),
        "{}",
        run.stdout
    );
    assert!(
        run.evidence("fallback").contains("does not exist"),
        "{}",
        run.stdout
    );
    assert_eq!(run.code, 3, "nothing failed, something unknown");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_servers_give_reasons_within_the_timeout() {
    let r = Replica::provisioned().await;
    let closed = ReservedPort::new();
    let dead_nats = format!("nats://127.0.0.1:{}", closed.port());
    let dead_pg = format!("postgres://postgres@127.0.0.1:{}/x", closed.port());
    r.edit_config(|t| {
        t.replace(
            &format!("url = \"{}\"", nats_url()),
            &format!("url = \"{dead_nats}\""),
        )
        .replace(
            &format!("url = \"{}\"", r.db_url),
            &format!("url = \"{dead_pg}\""),
        )
        .replace("timeout = \"5s\"", "timeout = \"2s\"")
    });
    let started = Instant::now();
    let run = run_check(&r.config, "json", "0s").await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    let j = run.json();
    assert_eq!(
        j["overall"], "fail",
        "service_up fails: nothing answers on the metrics port"
    );
    assert!(
        run.evidence("consumer_lag")
            .contains("cannot connect to NATS"),
        "{}",
        run.stdout
    );
    assert!(
        run.evidence("db_integrity")
            .contains("database postgres://postgres@127.0.0.1"),
        "{}",
        run.stdout
    );
    assert_eq!(j["probes"]["database"]["ok"], false);
}

/// A loopback HTTP server answering every request with `response`.
async fn serve_raw(response: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(response.as_bytes()).await;
            let _ = s.shutdown().await;
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn http_500_and_garbage_metrics_are_reported() {
    let r = Replica::healthy(2).await;
    let p500 = serve_raw(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\noops",
    )
    .await;
    let original = read(&r.config);
    r.edit_config(|t| t.replace(&r.metrics_url, &format!("http://127.0.0.1:{p500}/metrics")));
    let run = run_check(&r.config, "json", "0s").await;
    assert!(
        run.evidence("service_up").contains("HTTP 500"),
        "{}",
        run.stdout
    );
    assert!(
        run.evidence("stream_purity").contains("HTTP 500"),
        "{}",
        run.stdout
    );

    let garbage = serve_raw("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\nconnection: close\r\n\r\n<html><body>Login</body></html>\n").await;
    std::fs::write(
        &r.config,
        original.replace(
            &r.metrics_url,
            &format!("http://127.0.0.1:{garbage}/metrics"),
        ),
    )
    .expect("cfg");
    let run = run_check(&r.config, "json", "0s").await;
    assert!(
        run.evidence("service_up")
            .contains("not a Prometheus exposition"),
        "{}",
        run.stdout
    );

    // Declared length longer than the body: the body is cut off.
    let cut = serve_raw("HTTP/1.1 200 OK\r\ncontent-length: 500\r\nconnection: close\r\n\r\nnormalize_hrv_messages_total{result=\"succ").await;
    std::fs::write(
        &r.config,
        original.replace(&r.metrics_url, &format!("http://127.0.0.1:{cut}/metrics")),
    )
    .expect("cfg");
    let run = run_check(&r.config, "json", "0s").await;
    assert_eq!(
        run.json()["criteria"][12]["status"],
        "fail",
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn config_typo_is_refused_with_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = read(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/checks.toml"
    )));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text.replace("lag_fail = 10", "lag_fial = 10")).expect("write");
    let line = text
        .lines()
        .position(|l| l.starts_with("lag_fail"))
        .map(|i| i + 1)
        .unwrap_or(0);
    for cmd in ["validate", "check"] {
        let run = run_bin(&[cmd, "--config", &bad.display().to_string()], &[]).await;
        assert_eq!(run.code, 3, "{cmd}: {}", run.stderr);
        assert!(run.stderr.contains("bad.toml:"), "{}", run.stderr);
        assert!(run.stderr.contains("criteria"), "{}", run.stderr);
        assert!(run.stderr.contains("lag_fial"), "{}", run.stderr);
        assert!(run.stdout.is_empty());
        let _ = line;
    }
    let run = run_bin(
        &[
            "validate",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/checks.toml"),
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn output_formats_and_secret_hygiene() {
    let r = Replica::healthy(3).await;
    // Credentials in the database URL (trust auth ignores the password).
    let secret_url = r.db_url.replace("postgres@", "postgres:Sup3rS3cretPw@");
    r.edit_config(|t| {
        t.replace(
            &format!("url = \"{}\"", r.db_url),
            "url = \"${TEST_DB_URL}\"",
        )
    });
    let envs = [("TEST_DB_URL", secret_url.as_str())];
    let mut outputs = String::new();
    for format in ["text", "markdown", "json", "nagios"] {
        let run = run_check_with(&r.config, format, "0s", &[], &envs).await;
        assert!(
            !run.stdout.contains("Sup3rS3cretPw"),
            "{format} leaks the password"
        );
        assert!(
            !run.stderr.contains("Sup3rS3cretPw"),
            "{format} stderr leaks the password"
        );
        outputs.push_str(&run.stdout);
        if format == "nagios" {
            let line = run.stdout.trim_end();
            assert!(
                line.starts_with("SOAKWATCH UNKNOWN - 1 unknown (db_writes), 12 pass |"),
                "{line}"
            );
            assert!(line.contains("'consumer_lag'=0;4;9;0"), "{line}");
            assert_eq!(run.code, 3);
        }
        if format == "markdown" {
            assert!(run
                .stdout
                .contains("| Criteria | Target | Actual | Status | Evidence |"));
            assert!(run.stdout.contains("## Stream state"));
            assert!(run.stdout.contains(&r.names.dlq_stream));
        }
    }
    // The node_exporter textfile: written atomically, parses cleanly.
    let out = r.path("soakwatch.prom");
    let out_arg = out.display().to_string();
    let run = run_check_with(
        &r.config,
        "prometheus",
        "0s",
        &["--outfile", &out_arg],
        &envs,
    )
    .await;
    assert_eq!(run.code, 3);
    assert!(run.stdout.is_empty());
    let prom = read(&out);
    assert!(!prom.contains("Sup3rS3cretPw"));
    let expo = soakwatch::promtext::parse(&prom);
    assert!(expo.errors.is_empty(), "{:?}", expo.errors);
    assert!(!expo.truncated);
    let dlq = [("criterion".to_string(), "dlq".to_string())];
    assert_eq!(expo.sum("soakwatch_criterion_status", &dlq), Some(0.0));
    assert_eq!(expo.sum("soakwatch_overall_status", &[]), Some(3.0));
    let leftovers: Vec<_> = std::fs::read_dir(r.dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
    assert!(outputs.contains("OVERALL") && outputs.contains("\"schema\""));

    // Where a URL must be shown (an error), it is shown redacted.
    let missing_db = secret_url.replace(&r.names.database, "soakwatch_no_such_db");
    let run = run_check_with(
        &r.config,
        "json",
        "0s",
        &[],
        &[("TEST_DB_URL", missing_db.as_str())],
    )
    .await;
    let ev = run.evidence("db_integrity");
    assert!(ev.contains("postgres:***@127.0.0.1"), "{ev}");
    assert!(ev.contains("does not exist"), "{ev}");
    assert!(!run.stdout.contains("Sup3rS3cretPw"));
}

// ---------------------------------------------------------------------------------------------
// `soakwatch discover` and `soakwatch validate --live` against the replica.

/// `discover` on the replica's streams (the shared server holds other tests' streams too).
async fn discover(r: &Replica, extra: &[&str]) -> Run {
    let filter = format!("^SW_{}_", r.names.tag.to_ascii_uppercase());
    let env_file = r.files.env_file.display().to_string();
    let log = r.files.log_file.display().to_string();
    // Trust auth ignores the password: it is there to prove it is never written.
    let db = r.db_url.replace("postgres@", "postgres:D1sc0verPw@");
    let nats = nats_url();
    let mut args = vec![
        "discover",
        "--nats",
        &nats,
        "--metrics",
        &r.metrics_url,
        "--database",
        &db,
        "--table",
        "hrv_data",
        "--streams",
        &filter,
        "--env-file",
        &env_file,
        "--log",
        &log,
        "--name",
        "discovered",
    ];
    args.extend_from_slice(extra);
    let run = run_bin(&args, &[]).await;
    assert!(!run.stdout.contains("D1sc0verPw"), "password written");
    assert!(!run.stderr.contains("D1sc0verPw"), "password on stderr");
    run
}

#[tokio::test(flavor = "multi_thread")]
async fn discover_writes_a_config_that_check_passes() {
    let mut r = Replica::healthy(5).await;
    let run = discover(&r, &[]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    let out = &run.stdout;
    for name in [
        &r.names.legacy_stream,
        &r.names.core_stream,
        &r.names.vendor_stream,
        &r.names.dlq_stream,
        &r.names.hrv_subject,
    ] {
        assert!(
            out.contains(&format!("\"{name}\"")),
            "{name} missing:\n{out}"
        );
    }
    for line in [
        "durable = \"normalize-hrv-durable\"",
        "messages_counter = \"normalize_hrv_messages_total\"",
        "latency_histogram = \"normalize_hrv_processing_duration_seconds\"",
        "process_start_metric = \"process_start_time_seconds\"",
        "durable = \"normalize-hrv-durable\"\n\n[database]",
        "baseline_messages = 55",
        "ack_wait = \"1m\"",
        "max_age = \"48h\"",
        "created_column = \"createdAt\"",
        "updated_column = \"updatedAt\"",
        "column = \"lnRmssd\"",
        "ack_wait_key = \"NORMALIZE_HRV_ACK_WAIT_MS\"",
        "EVENT_STREAM_MODE = \"multi\"",
        "# seen: an index leads with createdAt",
        "# index hrv_data_createdAt_idx on (createdAt)",
        "# guessed: legacy stream",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    assert!(
        out.contains(
            "# columns: id (bigint), userId (text), date (date), rmssd (double precision)"
        ),
        "{out}"
    );
    assert!(
        out.contains("url = \"${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/"),
        "{out}"
    );
    assert!(
        !out.contains("# CONFLICT") && !out.contains("conflict(s)"),
        "{out}"
    );

    // The output is the config: validate accepts it, validate --live finds all of it,
    // and check with it judges the replica healthy.
    let path = r.path("discovered.toml");
    std::fs::write(&path, out).expect("write");
    let p = path.display().to_string();
    let v = run_bin(&["validate", "-c", &p], &[]).await;
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    let live = run_bin(&["validate", "--live", "-c", &p], &[]).await;
    assert_eq!(live.code, 0, "{}{}", live.stdout, live.stderr);
    assert!(
        live.stdout
            .contains("0 problem(s), 0 warning(s), 0 look-up(s) failed"),
        "{}",
        live.stdout
    );
    r.config = path;
    let check = r.check("2s", true).await;
    // The stand-in's processing time is real (receipt to ack, a database
    // insert included): on a loaded machine one slow insert among a dozen
    // messages is a p95 warning ("too few to judge a tail"), never a fail.
    // Everything discover configured must pass.
    let judged: Vec<(String, String)> = check
        .not_passing()
        .into_iter()
        .filter(|(id, status)| !(id == "p95_latency" && status == "warn"))
        .collect();
    assert_eq!(judged, vec![], "{}", check.stdout);
    assert!(check.code <= 1, "{}", check.stderr);
    if check.code == 1 {
        assert!(
            check.stdout.contains("too few to judge a tail"),
            "{}",
            check.stdout
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn discover_flags_missing_index_bogus_match_label_and_ack_wait_drift() {
    use sqlx::Connection;
    let r = Replica::healthy(2).await;
    let mut conn = sqlx::PgConnection::connect(&r.db_url)
        .await
        .expect("replica db");
    sqlx::query(r#"DROP INDEX "hrv_data_createdAt_idx""#)
        .execute(&mut conn)
        .await
        .expect("drop index");
    let _ = conn.close().await;
    let env = read(&r.files.env_file).replace(
        "NORMALIZE_HRV_ACK_WAIT_MS=60000",
        "NORMALIZE_HRV_ACK_WAIT_MS=30000",
    );
    std::fs::write(&r.files.env_file, env).expect("env");

    let run = discover(&r, &["--match", "bogus=x"]).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stderr, run.stdout);
    for conflict in [
        "no index of hrv_data leads with createdAt",
        "match label bogus is missing on the counter normalize_hrv_messages_total",
        "match label bogus is missing on the histogram normalize_hrv_processing_duration_seconds",
        "NORMALIZE_HRV_ACK_WAIT_MS=30000 (30s) differs from consumer normalize-hrv-durable's ack_wait 1m",
    ] {
        assert!(
            run.stdout.contains(&format!("# CONFLICT: {conflict}")),
            "{conflict:?} not flagged:\n{}",
            run.stdout
        );
        assert!(
            run.stderr.contains(&format!("conflict: {conflict}")),
            "{conflict:?} not on stderr:\n{}",
            run.stderr
        );
    }
    assert!(run.stdout.contains("# 4 conflict(s):"), "{}", run.stdout);
    // The updatedAt index is still there, and said so.
    assert!(
        run.stdout.contains("# seen: an index leads with updatedAt"),
        "{}",
        run.stdout
    );
    // Even with conflicts the output is a valid config.
    let path = r.path("conflicts.toml");
    std::fs::write(&path, &run.stdout).expect("write");
    let v = run_bin(&["validate", "-c", &path.display().to_string()], &[]).await;
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_live_names_every_wrong_name_with_its_line() {
    let r = Replica::healthy(1).await;
    let cfg = r.config.display().to_string();
    let ok = run_bin(&["validate", "--live", "-c", &cfg], &[]).await;
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);

    r.edit_config(|t| {
        t.replace(
            "durable = \"normalize-hrv-durable\"\nfilter_subject",
            "durable = \"wrong-durable\"\nfilter_subject",
        )
        .replace(
            "messages_counter = \"normalize_hrv_messages_total\"",
            "messages_counter = \"wrong_messages_total\"",
        )
        .replace("table = \"hrv_data\"", "table = \"wrong_table\"")
        .replace(
            "[metrics.match]\n",
            "[metrics.match]\nbogus_label = \"x\"\n",
        )
    });
    let text = read(&r.config);
    let line = |prefix: &str| {
        text.lines()
            .position(|l| l.starts_with(prefix))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("{prefix} not in config"))
    };
    let run = run_bin(&["validate", "--live", "-c", &cfg], &[]).await;
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    for (key, prefix, says) in [
        (
            "consumer.durable",
            "durable = \"wrong-durable\"",
            "no consumer wrong-durable on stream",
        ),
        (
            "metrics.messages_counter",
            "messages_counter",
            "no metric wrong_messages_total",
        ),
        (
            "database.table",
            "table = \"wrong_table\"",
            "table wrong_table does not exist",
        ),
        (
            "metrics.match.bogus_label",
            "bogus_label",
            "has no label bogus_label",
        ),
    ] {
        let want = format!("problem: {cfg}:{}: {key}: ", line(prefix));
        let found = run
            .stdout
            .lines()
            .find(|l| l.starts_with(&want))
            .unwrap_or_else(|| panic!("no {want:?} line:\n{}", run.stdout));
        assert!(found.contains(says), "{found}");
    }
    assert!(run.stdout.contains("look-up(s) failed"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_live_that_cannot_look_exits_3_with_reasons() {
    let r = Replica::provisioned().await;
    r.append_log("service started");
    let closed = ReservedPort::new();
    let dead = closed.port();
    r.edit_config(|t| {
        t.replace(&nats_url(), &format!("nats://127.0.0.1:{dead}"))
            .replace(&r.metrics_url, &format!("http://127.0.0.1:{dead}/metrics"))
    });
    let cfg = r.config.display().to_string();
    let run = run_bin(&["validate", "--live", "-c", &cfg], &[]).await;
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(&format!(
            "could not look: cannot connect to NATS at nats://127.0.0.1:{dead}"
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "could not look: GET http://127.0.0.1:{dead}/metrics"
        )),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("2 look-up(s) failed"), "{}", run.stdout);
}

// The Node.js stand-in (prom-client, nats, pg): verdicts on what a service in the seed's stack
// really emits.

/// The evidence soakwatch gives for zero events (src/evaluate.rs `NO_TRAFFIC`).
const NO_TRAFFIC: &str = "no messages processed since the service started";

#[tokio::test(flavor = "multi_thread")]
async fn node_standin_freshly_started_with_zero_messages_passes() {
    let mut r = Replica::provisioned().await;
    r.start_node_standin().await;
    let body = r.metrics_body().await;
    // prom-client declares the labelled counter and histogram but has no sample yet.
    assert!(
        body.contains("# TYPE normalize_hrv_messages_total counter"),
        "{body}"
    );
    assert!(!body.contains("normalize_hrv_messages_total{"), "{body}");
    assert!(
        !body.contains("normalize_hrv_processing_duration_seconds_bucket"),
        "{body}"
    );
    let run = r.check("1s", false).await;
    assert_eq!(run.not_passing(), vec![], "{}", run.stdout);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for id in ["dlq", "success_rate", "stream_purity", "p95_latency"] {
        let ev = run.evidence(id);
        assert!(ev.contains(NO_TRAFFIC), "{id}: {ev}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn node_standin_after_events_passes_and_p95_reads_the_stream_only_histogram() {
    let mut r = Replica::provisioned().await;
    r.start_node_standin().await;
    r.publish(10).await;
    r.wait_for("success", 10.0).await;
    let body = r.metrics_body().await;
    let bucket = body
        .lines()
        .find(|l| l.starts_with("normalize_hrv_processing_duration_seconds_bucket{"))
        .unwrap_or_default()
        .to_string();
    assert!(
        bucket.contains("stream=\"") && !bucket.contains("durable="),
        "{bucket}"
    );
    let run = r.check("2s", true).await;
    assert_eq!(run.not_passing(), vec![], "{}", run.stdout);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let p95 = run.evidence("p95_latency");
    assert!(p95.contains("observations"), "{p95}");
    assert!(
        p95.contains("not by durable (the family has no such label)"),
        "{p95}"
    );
    let purity = run.evidence("stream_purity");
    assert!(purity.contains("filtered by durable="), "{purity}");
    assert!(!purity.contains(NO_TRAFFIC), "{purity}");
}

#[tokio::test(flavor = "multi_thread")]
async fn node_standin_poison_message_fails_dlq() {
    let mut r = Replica::provisioned().await;
    r.start_node_standin().await;
    r.publish(5).await;
    r.wait_for("success", 5.0).await;
    r.publish_poison().await;
    r.wait_for("dlq", 1.0).await;
    let run = r.check("1s", true).await;
    assert_eq!(
        run.not_passing(),
        pairs(&[("dlq", "fail"), ("success_rate", "fail")]),
        "{}",
        run.stdout
    );
    assert_eq!(run.code, 2);
    let ev = run.evidence("dlq");
    assert!(ev.contains("holds 2 messages (baseline 1"), "{ev}");
    assert!(ev.contains("dead-lettered"), "{ev}");
    let log = read(&r.files.log_file);
    assert!(
        log.contains("[normalize-hrv] Message sent to DLQ: rMSSD must be a positive number"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exposition_of_declared_families_only_is_zero_events_not_garbage() {
    // prometheus_client with no default collectors, before the first event: # HELP and
    // # TYPE lines only (tests/fixtures/promtext/python_service_fresh.prom).
    let body = read(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/promtext/python_service_fresh.prom"),
    );
    assert!(!body.lines().any(|l| !l.starts_with('#')), "{body}");
    let response: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_boxed_str(),
    );
    let port = serve_raw(response).await;
    let mut r = Replica::provisioned().await;
    let url = r.metrics_url.clone();
    r.edit_config(|t| t.replace(&url, &format!("http://127.0.0.1:{port}/metrics")));
    let run = r.check("0s", false).await;
    assert_eq!(run.status("service_up"), "pass", "{}", run.stdout);
    for id in ["dlq", "success_rate", "stream_purity", "p95_latency"] {
        assert_eq!(run.status(id), "pass", "{id}: {}", run.stdout);
        assert!(
            run.evidence(id).contains(NO_TRAFFIC),
            "{id}: {}",
            run.evidence(id)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 8, items 7 and 8: values that cannot be meant, every problem at once.

/// The shipped config with each `(from, to)` replaced once (each `from` must exist).
fn shipped_with(edits: &[(&str, &str)]) -> String {
    let mut text = read(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/checks.toml"
    )));
    for (from, to) in edits {
        assert!(text.contains(from), "shipped checks.toml lacks {from:?}");
        text = text.replacen(from, to, 1);
    }
    text
}

/// 1-based line of the first line containing `needle`.
fn line_with(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no line with {needle:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_refuses_values_that_cannot_be_meant_each_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = shipped_with(&[
        ("dlq_spike_per_min = 10.0", "dlq_spike_per_min = -1.0"),
        ("interval = \"10s\"", "interval = \"1ns\""),
        (
            "checkpoints = [\"24h\", \"48h\"]",
            "checkpoints = [\"24h\", \"49h\"]",
        ),
        ("max_scan_bytes = 67108864", "max_scan_bytes = 0"),
        (
            "url = \"${ALERT_WEBHOOK_URL:-http://127.0.0.1:9000/hooks/soakwatch}\"",
            "url = \"file:///etc/passwd\"",
        ),
        (
            "restart_command = [\"systemctl\", \"restart\", \"normalize-service\"]",
            "restart_command = []",
        ),
        ("mode = \"disarmed\"", "mode = \"dry_run\""),
    ]);
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, &text).expect("write");
    let run = run_bin(&["validate", "--config", &bad.display().to_string()], &[]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    let expect = [
        (
            "dlq_spike_per_min = -1",
            "watch.dlq_spike_per_min",
            "greater than 0",
        ),
        ("interval = \"1ns\"", "watch.interval", "at least 100ms"),
        (
            "checkpoints = [",
            "watch.checkpoints[1]",
            "past the end of the soak",
        ),
        ("max_scan_bytes", "log.max_scan_bytes", "greater than 0"),
        (
            "file:///etc/passwd",
            "alerts.routes[1].url",
            "expected http or https",
        ),
        ("restart_command = []", "rollback.restart_command", "empty"),
    ];
    for (needle, key, msg) in expect {
        let want = format!("{}:{}:", bad.display(), line_with(&text, needle));
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains(&format!(": {key}: ")))
            .unwrap_or_else(|| panic!("no problem for {key}:\n{}", run.stderr));
        assert!(line.starts_with(&want), "{key}: want {want}: {line}");
        assert!(line.contains(msg), "{key}: {line}");
    }
    assert!(
        run.stderr.contains("config refused (6 problem(s))"),
        "{}",
        run.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// Issue 8, item 10: outside text cannot forge output lines or drive a terminal.

#[tokio::test(flavor = "multi_thread")]
async fn a_crafted_label_value_cannot_forge_an_overall_line_in_any_output() {
    let r = Replica::healthy(2).await;
    let body = r
        .http
        .get(&r.metrics_url)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    // One more series of the counter, on a "stream" whose label value holds an
    // escaped newline, a forged verdict line, ANSI escapes and a BEL.
    let real = body
        .lines()
        .find(|l| {
            l.starts_with("normalize_hrv_messages_total{") && l.contains("result=\"success\"")
        })
        .unwrap_or_else(|| panic!("no success series in\n{body}"));
    let start = real.find("stream=\"").expect("stream label") + "stream=\"".len();
    let end = start + real[start..].find('"').expect("end of label");
    let crafted = format!(
        "{}EVIL\\nOVERALL: PASS (exit 0)\u{1b}[2J\u{1b}]0;owned\u{7}{} 3",
        &real[..start],
        &real[end..real.rfind(' ').expect("value")]
    );
    let exposition = format!("{body}{crafted}\n");
    let response: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{exposition}",
            exposition.len()
        )
        .into_boxed_str(),
    );
    let port = serve_raw(response).await;
    let url = r.metrics_url.clone();
    r.edit_config(|t| t.replace(&url, &format!("http://127.0.0.1:{port}/metrics")));
    let run = |format| run_check(&r.config, format, "0s");

    let text = run("text").await;
    assert_eq!(text.code, 2, "stream_purity fails: {}", text.stdout);
    assert!(
        text.stdout
            .contains("EVIL\\nOVERALL: PASS (exit 0)\\u{1b}[2J"),
        "{}",
        text.stdout
    );
    let overall: Vec<&str> = text
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("OVERALL"))
        .collect();
    assert_eq!(overall, vec!["OVERALL: FAIL (exit 2)"], "{}", text.stdout);
    let md = run("markdown").await;
    for (what, out) in [("text", &text.stdout), ("markdown", &md.stdout)] {
        assert!(!out.contains('\u{1b}'), "{what}: ESC byte:\n{out}");
        assert!(!out.contains('\u{7}'), "{what}: BEL byte:\n{out}");
        assert!(
            !out.lines()
                .any(|l| l.trim_start().starts_with("OVERALL: PASS")),
            "{what}:\n{out}"
        );
    }
    // A Markdown cell is one line: the break is flattened, the rest made visible.
    assert!(
        md.stdout.contains("EVIL OVERALL: PASS (exit 0)\\u{1b}[2J"),
        "{}",
        md.stdout
    );
    // JSON stays valid and carries the value as it was (serde escapes it).
    let json = run("json").await;
    let ev = json.evidence("stream_purity");
    assert!(ev.contains("EVIL\nOVERALL: PASS (exit 0)\u{1b}[2J"), "{ev}");
    assert_eq!(json.json()["overall"], "fail");
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_lists_an_unknown_key_a_wrong_type_and_a_bad_value_in_one_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = shipped_with(&[
        ("lag_fail = 10", "lag_fial = 10"),
        ("max_ack_pending = 1000", "max_ack_pending = \"lots\""),
        ("min_coverage = 0.95", "min_coverage = 7.0"),
    ]);
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, &text).expect("write");
    for cmd in ["validate", "check"] {
        let run = run_bin(&[cmd, "--config", &bad.display().to_string()], &[]).await;
        assert_eq!(run.code, 3, "{cmd}: {}", run.stderr);
        assert!(
            run.stderr.contains("config refused (3 problem(s))"),
            "{cmd}: {}",
            run.stderr
        );
        for (needle, key, msg) in [
            ("lag_fial", "criteria.lag_fial", "unknown field `lag_fial`"),
            (
                "max_ack_pending",
                "consumer.max_ack_pending",
                "invalid type",
            ),
            (
                "min_coverage = 7.0",
                "watch.min_coverage",
                "must be in (0, 1]",
            ),
        ] {
            let want = format!("{}:{}: {key}: ", bad.display(), line_with(&text, needle));
            let line = run
                .stderr
                .lines()
                .find(|l| l.starts_with(&want))
                .unwrap_or_else(|| panic!("{cmd}: no {want:?} in\n{}", run.stderr));
            assert!(line.contains(msg), "{cmd}: {line}");
        }
    }
}

/// A loopback HTTP server that accepts and reads requests but never answers.
async fn serve_hanging() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_metrics_endpoint_does_not_time_the_database_probe_out() {
    let mut r = Replica::healthy(2).await;
    let port = serve_hanging().await;
    let url = r.metrics_url.clone();
    r.edit_config(|t| {
        t.replace(&url, &format!("http://127.0.0.1:{port}/metrics"))
            .replace("timeout = \"5s\"", "timeout = \"1s\"")
    });
    let run = r.check("0s", false).await;
    let j = run.json();
    assert_eq!(j["probes"]["database"]["ok"], true, "{}", run.stdout);
    assert_eq!(j["probes"]["metrics"]["ok"], false, "{}", run.stdout);
    let reason = j["probes"]["metrics"]["error"].as_str().unwrap_or("");
    assert!(
        reason.contains(&format!("127.0.0.1:{port}/metrics")),
        "{reason}"
    );
    let db_integrity = run.evidence("db_integrity");
    assert!(!db_integrity.contains("database"), "{db_integrity}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_bodies_over_the_cap_are_unknown_with_the_cap_whatever_the_framing() {
    let mut r = Replica::provisioned().await;
    let url = r.metrics_url.clone();
    let original = read(&r.config);
    // 300 MB chunked (no Content-Length to refuse early) and 20 MB with Content-Length,
    // both over the 16 MiB default; then 3 MB chunked under a 1 MiB configured cap.
    for (total, content_length, cap) in [
        (300_000_000, false, None),
        (20_000_000, true, None),
        (3_000_000, false, Some(1 << 20)),
    ] {
        let port = soakwatch::testkit::standin::serve_big_metrics(total, content_length).await;
        let mut text = original.replace(&url, &format!("http://127.0.0.1:{port}/metrics"));
        if let Some(cap) = cap {
            text = text.replace(
                "[metrics]\n",
                &format!("[metrics]\nmax_body_bytes = {cap}\n"),
            );
        }
        std::fs::write(&r.config, text).expect("cfg");
        let run = r.check("0s", false).await;
        let j = run.json();
        for id in ["service_up", "stream_purity", "success_rate"] {
            assert_eq!(run.status(id), "unknown", "{id} {total}: {}", run.stdout);
        }
        let reason = j["probes"]["metrics"]["error"].as_str().unwrap_or("");
        assert!(
            reason.contains("max_body_bytes")
                && reason.contains(&cap.unwrap_or(16 << 20).to_string()),
            "{total}: {reason}"
        );
    }
}

/// Makes a FIFO at `p` with mkfifo(1).
fn mkfifo(p: &std::path::Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(p)
        .status()
        .expect("mkfifo runs");
    assert!(st.success(), "mkfifo {}", p.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_log_or_env_file_is_refused_without_hanging() {
    let mut r = Replica::healthy(2).await;
    let log_fifo = r.path("log.fifo");
    let env_fifo = r.path("env.fifo");
    mkfifo(&log_fifo);
    mkfifo(&env_fifo);
    let log = r.files.log_file.display().to_string();
    let env = r.files.env_file.display().to_string();
    r.edit_config(|t| {
        t.replace(&log, &log_fifo.display().to_string())
            .replace(&env, &env_fifo.display().to_string())
    });
    // Before: `check` printed its report and then never exited (run_bin gives up at 60 s).
    let run = r.check("0s", false).await;
    let j = run.json();
    let log_err = j["probes"]["log"]["error"].as_str().unwrap_or("");
    assert!(
        log_err.contains("is a FIFO, not a regular file") && log_err.contains("log.fifo"),
        "{}",
        run.stdout
    );
    let env_err = j["probes"]["service_env"]["error"].as_str().unwrap_or("");
    assert!(
        env_err.contains("is a FIFO, not a regular file") && env_err.contains("env.fifo"),
        "{}",
        run.stdout
    );
    assert!(
        run.evidence("fallback").contains("is a FIFO"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zero_metrics_body_cap_is_refused_with_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = read(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/checks.toml"
    )));
    assert!(
        text.contains("max_body_bytes = 16777216"),
        "documented in checks.toml"
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        text.replace("max_body_bytes = 16777216", "max_body_bytes = 0"),
    )
    .expect("write");
    let run = run_bin(&["validate", "--config", &bad.display().to_string()], &[]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("metrics.max_body_bytes") && run.stderr.contains("greater than 0"),
        "{}",
        run.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// Output conventions of the ops tools: Nagios perfdata and exit codes, one mention of a dead
// probe in text output.

/// A Nagios range (plugin guidelines, THRESHOLDFORMAT): `[@][start:][end]`, `~` = -inf.
/// Returns whether a plugin runner alerts on `v`.
fn range_alerts(range: &str, v: f64) -> bool {
    let (inside, r) = match range.strip_prefix('@') {
        Some(r) => (true, r),
        None => (false, range),
    };
    let (start, end) = match r.split_once(':') {
        Some((s, e)) => (s, e),
        None => ("0", r),
    };
    let start = match start {
        "~" => f64::NEG_INFINITY,
        "" => 0.0,
        s => s
            .parse()
            .unwrap_or_else(|_| panic!("bad range start in {range}")),
    };
    let end = match end {
        "" => f64::INFINITY,
        e => e
            .parse()
            .unwrap_or_else(|_| panic!("bad range end in {range}")),
    };
    let within = start <= v && v <= end;
    if inside {
        within
    } else {
        !within
    }
}

/// One perfdata item: (label, value or None for `U`, uom, warn, crit).
fn perf_items(perf: &str) -> Vec<(String, Option<f64>, String, String, String)> {
    perf.split_whitespace()
        .map(|item| {
            let (label, rest) = item
                .split_once('=')
                .unwrap_or_else(|| panic!("no = in {item}"));
            let label = label.trim_matches('\'').to_string();
            let fields: Vec<&str> = rest.split(';').collect();
            let raw = fields[0];
            let (value, uom) = if raw == "U" {
                (None, String::new())
            } else {
                let n = raw
                    .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
                    .unwrap_or(raw.len());
                let uom = &raw[n..];
                assert!(
                    ["", "%", "s", "ms", "us", "B", "KB", "MB", "TB", "c"].contains(&uom),
                    "bad UOM in {item}"
                );
                let v: f64 = raw[..n]
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {item}"));
                (Some(v), uom.to_string())
            };
            let field = |i: usize| fields.get(i).copied().unwrap_or("").to_string();
            (label, value, uom, field(1), field(2))
        })
        .collect()
}

/// Checks a `--format nagios` line as a plugin runner reads it: every criterion's
/// status (from the summary) matches what its perfdata ranges say of its value, an
/// unknown criterion's value is `U`, and the exit code is the overall status.
/// Returns the items for further checks.
fn assert_nagios_consistent(
    run: &Run,
    want: &[(&str, &str)],
) -> Vec<(String, Option<f64>, String, String, String)> {
    let line = run.stdout.trim_end();
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    let (head, perf) = line.split_once(" | ").unwrap_or_else(|| panic!("{line}"));
    let (state, summary) = head
        .strip_prefix("SOAKWATCH ")
        .and_then(|h| h.split_once(" - "))
        .unwrap_or_else(|| panic!("{line}"));
    let code = match state {
        "OK" => 0,
        "WARNING" => 1,
        "CRITICAL" => 2,
        "UNKNOWN" => 3,
        other => panic!("not a Nagios state: {other}"),
    };
    assert_eq!(run.code, code, "{line}\n{}", run.stderr);
    // "2 fail (dlq,success_rate), 1 unknown (db_writes), 10 pass"
    let mut status: std::collections::BTreeMap<String, String> = ALL_IDS
        .iter()
        .map(|id| (id.to_string(), "pass".to_string()))
        .collect();
    for group in summary.split("), ") {
        if let Some((what, names)) = group.split_once(" (") {
            let st = what.split_whitespace().nth(1).unwrap_or("").to_string();
            for n in names.trim_end_matches(')').split(',') {
                status.insert(n.to_string(), st.clone());
            }
        }
    }
    let not_passing: Vec<(String, String)> = status
        .iter()
        .filter(|(_, s)| *s != "pass")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut want: Vec<(String, String)> = pairs(want);
    want.sort();
    assert_eq!(not_passing, want, "{line}");
    let items = perf_items(perf);
    for (label, value, _, warn, crit) in &items {
        // A consumer's item (`consumer_lag/<durable>`): with the replica's
        // one durable, its status is its criterion's.
        let criterion = label.split('/').next().unwrap_or(label);
        let st = status
            .get(criterion)
            .unwrap_or_else(|| panic!("perfdata for an unknown criterion {label}: {line}"));
        match value {
            None => assert_eq!(st, "unknown", "{label} is U but {st}: {line}"),
            Some(v) => {
                assert_ne!(
                    st, "unknown",
                    "{label} is unknown but has value {v}: {line}"
                );
                let derived = if !crit.is_empty() && range_alerts(crit, *v) {
                    "fail"
                } else if !warn.is_empty() && range_alerts(warn, *v) {
                    "warn"
                } else {
                    "pass"
                };
                if !crit.is_empty() || !warn.is_empty() {
                    assert_eq!(
                        derived, st,
                        "{label}: a plugin runner reads {derived}: {line}"
                    );
                }
            }
        }
    }
    // Every criterion with a number is in the perfdata (consumer_config has none).
    let labels: std::collections::BTreeSet<&str> = items.iter().map(|i| i.0.as_str()).collect();
    for id in ALL_IDS.iter().filter(|id| **id != "consumer_config") {
        assert!(labels.contains(id), "no perfdata for {id}: {line}");
    }
    items
}

async fn nagios(r: &Replica, window: &str) -> Run {
    let cfg = r.config.display().to_string();
    run_bin(
        &[
            "check", "-c", &cfg, "--format", "nagios", "--window", window,
        ],
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn nagios_perfdata_ranges_agree_with_every_criterion_healthy_or_failing() {
    let mut r = Replica::healthy(5).await;
    let items = assert_nagios_consistent(&nagios(&r, "1s").await, &[]);
    let find = |id: &str| {
        items
            .iter()
            .find(|i| i.0 == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id}"))
    };
    let (_, v, uom, _, crit) = find("success_rate");
    assert_eq!(
        (v, uom.as_str(), crit.as_str()),
        (Some(100.0), "%", "99.9:")
    );
    let (_, v, uom, _, crit) = find("service_up");
    assert_eq!((v, uom.as_str(), crit.as_str()), (Some(1.0), "", "1:"));
    let (_, _, _, warn, crit) = find("consumer_lag");
    assert_eq!((warn.as_str(), crit.as_str()), ("4", "9"));
    let (_, v, uom, _, crit) = find("p95_latency");
    assert!(
        v.is_some() && uom == "ms" && crit == "@500:",
        "{:?}",
        find("p95_latency")
    );

    // A dead-lettered message fails dlq and success_rate, and the ranges say so.
    r.publish_poison().await;
    r.wait_for("dlq", 1.0).await;
    assert_nagios_consistent(
        &nagios(&r, "1s").await,
        &[("dlq", "fail"), ("success_rate", "fail")],
    );

    // A backlog fails consumer_lag by its range.
    r.admin("pause").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    r.publish(12).await;
    let run = nagios(&r, "0s").await;
    let items = assert_nagios_consistent(
        &run,
        &[
            ("consumer_lag", "fail"),
            ("dlq", "fail"),
            ("success_rate", "fail"),
            ("db_writes", "unknown"),
        ],
    );
    assert!(
        items.iter().any(|i| i.0 == "db_writes" && i.1.is_none()),
        "{}",
        run.stdout
    );

    // The service down: metric criteria unknown, as U, never 0.
    r.kill_standin().await;
    let run = nagios(&r, "0s").await;
    let items = assert_nagios_consistent(
        &run,
        &[
            ("consumer_lag", "fail"),
            ("dlq", "fail"),
            ("fallback", "unknown"),
            ("stream_purity", "unknown"),
            ("success_rate", "unknown"),
            ("p95_latency", "unknown"),
            ("db_writes", "unknown"),
            ("db_integrity", "unknown"),
            ("service_up", "fail"),
        ],
    );
    for id in ["success_rate", "stream_purity", "fallback", "db_integrity"] {
        assert!(
            items.iter().any(|i| i.0 == id && i.1.is_none()),
            "{id}: {}",
            run.stdout
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_exit_unknown_with_an_example_and_help_exits_0() {
    let cases: [(&[&str], &str); 7] = [
        (&[], "Usage"),
        (&["check", "--format", "xml"], "nagios"),
        (&["check", "--window", "soon"], "90s"),
        (&["watch", "--t0", "yesterday"], "2026-12-03T14:00:00Z"),
        (&["report", "--bogus"], "--bogus"),
        (&["rollback", "--dry-run", "--execute"], "--execute"),
        (&["no-such-command"], "no-such-command"),
    ];
    for (args, shown) in cases {
        let run = run_bin(args, &[]).await;
        assert_eq!(run.code, 3, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(shown), "{args:?}: {}", run.stderr);
    }
    let run = run_bin(&["check", "--window", "soon"], &[]).await;
    assert!(run.stderr.contains("5m"), "{}", run.stderr);
    for args in [&["--help"][..], &["--version"], &["check", "--help"]] {
        let run = run_bin(args, &[]).await;
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert!(!run.stdout.is_empty(), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_metrics_probe_is_explained_once_in_text_output() {
    let r = Replica::healthy(3).await;
    // Held, so nothing else takes it: connections are refused.
    let reserved = ReservedPort::new();
    let closed = format!("http://127.0.0.1:{}/metrics", reserved.port());
    r.edit_config(|t| t.replace(&r.metrics_url, &closed));
    let cfg = r.config.display().to_string();
    let run = run_bin(
        &["check", "-c", &cfg, "--format", "text", "--window", "0s"],
        &[],
    )
    .await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let out = &run.stdout;
    assert_eq!(
        out.to_lowercase().matches("connection refused").count(),
        1,
        "{out}"
    );
    assert!(
        out.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("probe metrics: FAILED (")),
        "{out}"
    );
    assert!(out.contains("metrics probe failed, see above"), "{out}");
    let refs = out.matches("metrics probe failed, see above").count();
    assert!(refs >= 5, "{refs} references: {out}");
    // Markdown says it once too, in its own list above the criteria.
    let md = run_bin(
        &[
            "check", "-c", &cfg, "--format", "markdown", "--window", "0s",
        ],
        &[],
    )
    .await;
    let out = &md.stdout;
    assert_eq!(
        out.to_lowercase().matches("connection refused").count(),
        1,
        "{out}"
    );
    assert!(out.contains("## Probes that failed"), "{out}");
}
