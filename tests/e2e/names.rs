//! Issue 19, names and agreement: a counter named by its family or by its
//! `_total` sample name reads the same samples, in both text formats of
//! the real client libraries (Python prometheus_client, Node.js prom-client,
//! Go client_golang); the product speaks of the configured service.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

/// The evidence of zero events (src/evaluate/mod.rs `NO_TRAFFIC`).
const NO_TRAFFIC: &str = "no messages processed since the service started";

/// The Python interpreter that has python3-prometheus-client (Debian's).
const PYTHON: &str = "/usr/bin/python3";

/// A real client library serving one counter on a loopback port; killed on drop.
struct Exporter {
    port: u16,
    _child: tokio::process::Child,
}

impl Exporter {
    /// Starts `cmd` (which writes its bound port to `port_file`) and waits for the port.
    async fn spawn(mut cmd: tokio::process::Command, port_file: &Path) -> Exporter {
        let _ = std::fs::remove_file(port_file);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("exporter starts");
        for _ in 0..200 {
            if let Some(port) = std::fs::read_to_string(port_file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                return Exporter {
                    port,
                    _child: child,
                };
            }
            if let Ok(Some(st)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = e.read_to_string(&mut err).await;
                }
                panic!("exporter exited ({st}): {err}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("exporter wrote no port within 10 s");
    }

    /// Python prometheus_client: `accept` is the format asked for (`text` or `openmetrics`).
    async fn python(r: &Replica, counter: &str, counts: &[(&str, u64)], accept: &str) -> Exporter {
        let ok = std::process::Command::new(PYTHON)
            .args(["-c", "import prometheus_client"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "{PYTHON} lacks prometheus_client: run scripts/ensure-test-tools.sh (python3-prometheus-client)"
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/exporters/prometheus_client_exporter.py");
        let port_file = r.path(&format!("py-{counter}-{accept}.port"));
        let mut cmd = tokio::process::Command::new(PYTHON);
        cmd.arg(script).arg("--port-file").arg(&port_file);
        cmd.args(["--counter", counter, "--accept", accept]);
        add_series(&mut cmd, r, counts);
        Exporter::spawn(cmd, &port_file).await
    }

    /// Node.js prom-client: `format` is the registry's content type (`text` or `openmetrics`).
    async fn node(r: &Replica, counter: &str, counts: &[(&str, u64)], format: &str) -> Exporter {
        let dir = node_standin_dir();
        assert!(
            dir.join("node_modules/prom-client").is_dir(),
            "{}/node_modules is missing: run scripts/ensure-test-tools.sh (npm ci)",
            dir.display()
        );
        let port_file = r.path(&format!("node-{counter}-{format}.port"));
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(dir.join("counter-exporter.js"))
            .arg("--port-file")
            .arg(&port_file);
        cmd.args(["--counter", counter, "--format", format]);
        add_series(&mut cmd, r, counts);
        Exporter::spawn(cmd, &port_file).await
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.port)
    }
}

/// The replica's stream and durable as constant labels, and the counts by result.
fn add_series(cmd: &mut tokio::process::Command, r: &Replica, counts: &[(&str, u64)]) {
    cmd.arg("--label")
        .arg(format!("stream={}", r.names.core_stream))
        .arg("--label")
        .arg(format!("durable={}", r.names.durable));
    for (result, n) in counts {
        cmd.arg("--count").arg(format!("{result}={n}"));
    }
}

/// A copy of the replica's config reading `url` with `messages_counter = counter`
/// (and no latency histogram: these services have none).
fn config_for(r: &Replica, url: &str, counter: &str, name: &str) -> PathBuf {
    let text = read(&r.config)
        .replace(&r.metrics_url, url)
        .replace(
            "messages_counter = \"normalize_hrv_messages_total\"",
            &format!("messages_counter = {counter:?}"),
        )
        .replace(
            "latency_histogram = \"normalize_hrv_processing_duration_seconds\"\n",
            "",
        );
    let path = r.path(&format!("{name}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

/// 743 successes and one dead-lettered message: read, `dlq` and `success_rate`
/// fail on the counter (never "zero events", which would pass both).
fn assert_counted(run: &Run, what: &str) {
    let dlq = run.evidence("dlq");
    assert_eq!(run.status("dlq"), "fail", "{what}: {dlq}");
    assert!(dlq.contains("1 message(s) dead-lettered"), "{what}: {dlq}");
    let sr = run.evidence("success_rate");
    assert_eq!(run.status("success_rate"), "fail", "{what}: {sr}");
    assert!(
        sr.starts_with("743/744 since the service started"),
        "{what}: {sr}"
    );
    let purity = run.evidence("stream_purity");
    assert_eq!(run.status("stream_purity"), "pass", "{what}: {purity}");
    assert!(!purity.contains(NO_TRAFFIC), "{what}: {purity}");
}

/// A freshly started service (the family declared, no sample): zero events, under either spelling.
fn assert_zero_events(run: &Run, what: &str) {
    for id in ["dlq", "success_rate", "stream_purity"] {
        assert_eq!(run.status(id), "pass", "{what} {id}: {}", run.stdout);
        assert!(
            run.evidence(id).contains(NO_TRAFFIC),
            "{what} {id}: {}",
            run.evidence(id)
        );
    }
}

const COUNTS: [(&str, u64); 2] = [("success", 743), ("dlq", 1)];

#[tokio::test(flavor = "multi_thread")]
async fn a_counter_named_by_family_or_sample_name_reads_prometheus_client_in_both_formats() {
    let r = Replica::provisioned().await;
    for accept in ["text", "openmetrics"] {
        let exp = Exporter::python(&r, "orders_processed", &COUNTS, accept).await;
        let fresh = Exporter::python(&r, "orders_fresh", &[], accept).await;
        for spelled in ["orders_processed", "orders_processed_total"] {
            let what = format!("prometheus_client {accept}, {spelled}");
            let cfg = config_for(&r, &exp.url(), spelled, "py");
            assert_counted(&run_check(&cfg, "json", "0s").await, &what);
            let fresh_name = spelled.replace("processed", "fresh");
            let cfg = config_for(&r, &fresh.url(), &fresh_name, "py-fresh");
            assert_zero_events(&run_check(&cfg, "json", "0s").await, &what);
        }
        // A name of neither spelling is unknown, never zero events.
        let cfg = config_for(&r, &exp.url(), "orders_processd", "py-typo");
        let run = run_check(&cfg, "json", "0s").await;
        assert_eq!(run.status("success_rate"), "unknown", "{}", run.stdout);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_counter_named_by_family_or_sample_name_reads_prom_client_in_both_formats() {
    let r = Replica::provisioned().await;
    for format in ["text", "openmetrics"] {
        // prom-client takes the name as written: both are seen in services.
        for defined in ["orders_processed", "orders_processed_total"] {
            let exp = Exporter::node(&r, defined, &COUNTS, format).await;
            for spelled in ["orders_processed", "orders_processed_total"] {
                let what = format!("prom-client {format}, defined {defined}, configured {spelled}");
                let cfg = config_for(&r, &exp.url(), spelled, "node");
                assert_counted(&run_check(&cfg, "json", "0s").await, &what);
            }
        }
        let fresh = Exporter::node(&r, "orders_fresh_total", &[], format).await;
        for spelled in ["orders_fresh", "orders_fresh_total"] {
            let cfg = config_for(&r, &fresh.url(), spelled, "node-fresh");
            let what = format!("prom-client {format} fresh, {spelled}");
            assert_zero_events(&run_check(&cfg, "json", "0s").await, &what);
        }
    }
}

/// Serves `body` with `content_type` on a loopback port (every path, every request).
async fn serve_body(body: String, content_type: &'static str) -> String {
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { ([(axum::http::header::CONTENT_TYPE, content_type)], body) }
    });
    let addr = serve_loopback(app).await;
    format!("http://{addr}/metrics")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_counter_named_by_family_or_sample_name_reads_client_golang_in_both_formats() {
    // No Go toolchain here: the committed real client_golang 1.14 output
    // (tests/fixtures/promtext/README.md), label values renamed to the replica's.
    let r = Replica::provisioned().await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/promtext");
    for (file, content_type) in [
        (
            "go_service_traffic.prom",
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        (
            "go_service_traffic.openmetrics",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    ] {
        let body = read(&dir.join(file))
            .replace("\"AA_CORE_HOT\"", &format!("{:?}", r.names.core_stream))
            .replace(
                "\"normalize-hrv-durable\"",
                &format!("{:?}", r.names.durable),
            );
        let url = serve_body(body, content_type).await;
        for spelled in ["normalize_hrv_messages", "normalize_hrv_messages_total"] {
            let cfg = config_for(&r, &url, spelled, "go");
            let run = run_check(&cfg, "json", "0s").await;
            let what = format!("client_golang {file}, {spelled}");
            // 40 successes and one dead-lettered message.
            assert_eq!(run.status("dlq"), "fail", "{what}: {}", run.stdout);
            let sr = run.evidence("success_rate");
            assert!(
                sr.starts_with("40/41 since the service started"),
                "{what}: {sr}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The product speaks of the configured service, not of the seed's.

/// Runs SQL on the replica's database.
async fn sql(r: &Replica, statements: &[&str]) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&r.db_url)
        .await
        .expect("replica database");
    for s in statements {
        sqlx::query(sqlx::AssertSqlSafe(s.to_string()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    let _ = conn.close().await;
}

/// `discover` on the replica's streams with `extra` arguments.
async fn discover_with(r: &Replica, extra: &[&str]) -> Run {
    let filter = format!("^SW_{}_", r.names.tag.to_ascii_uppercase());
    let nats = nats_url();
    let mut args = vec![
        "discover",
        "--nats",
        &nats,
        "--metrics",
        &r.metrics_url,
        "--database",
        &r.db_url,
        "--streams",
        &filter,
    ];
    args.extend_from_slice(extra);
    run_bin(&args, &[]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn discover_proposes_only_the_table_and_log_patterns_it_sees() {
    let r = Replica::healthy(2).await;
    sql(
        &r,
        &[
            r#"CREATE TABLE orders (id bigserial PRIMARY KEY, customer text, amount double precision, "createdAt" timestamp(3) NOT NULL DEFAULT now())"#,
            r#"CREATE INDEX orders_created ON orders ("createdAt")"#,
        ],
    )
    .await;
    let own_log = r.path("orders-projector.log");
    std::fs::write(
        &own_log,
        format!(
            "orders-projector 1.4 starting\nconsumer bound on {}\n",
            r.names.core_stream
        ),
    )
    .expect("log");
    let own_log = own_log.display().to_string();

    // A service of its own: its table, its log. Nothing of the seed's is proposed.
    let run = discover_with(&r, &["--table", "orders", "--log", &own_log]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    for seed in [
        "hrv_data",
        "Stream mode",
        "Stream candidates",
        "rmssd",
        "lnRmssd",
    ] {
        assert!(
            !run.stdout.contains(seed),
            "{seed} proposed:\n{}",
            run.stdout
        );
    }
    assert!(run.stdout.contains("table = \"orders\""), "{}", run.stdout);
    assert!(
        run.stdout.contains("ignore_patterns = []"),
        "{}",
        run.stdout
    );

    // No --table: no table is assumed; with two tables there, it asks for one.
    let run = discover_with(&r, &["--log", &own_log]).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stderr, run.stdout);
    assert!(
        !run.stdout.contains("table = \"hrv_data\""),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("--table"), "{}", run.stderr);

    // The seed's own service logs its stream mode and candidates: those are proposed,
    // the candidates line ignored whatever its case.
    let seed_log = r.files.log_file.display().to_string();
    let run = discover_with(&r, &["--table", "hrv_data", "--log", &seed_log]).await;
    assert!(
        run.stdout.contains("'Stream mode: single'"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("'(?i)Stream candidates:'"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_e2e_probe_and_the_evidence_speak_of_the_configured_columns() {
    let r = Replica::healthy(2).await;
    // Another service's table: its own column names (a view over the stand-in's rows).
    sql(
        &r,
        &[r#"CREATE VIEW orders AS SELECT "userId" AS customer, rmssd AS amount, "createdAt" FROM hrv_data"#],
    )
    .await;
    let section = format!(
        "\n[rollback]\nmode = \"disarmed\"\nenv_file = {env}\nrestart_command = []\nlog_file = {log}\n\n\
         [rollback.e2e]\nnats_url = \"{nats}\"\nsubject = \"{subject}\"\ndatabase_url = \"{db}\"\n\
         table = \"orders\"\nuser_column = \"customer\"\nvalue_column = \"amount\"\nderived_column = \"\"\n\
         payload = '{payload}'\ntimeout = \"10s\"\n",
        env = toml_path(&r.files.env_file),
        log = toml_path(&r.files.log_file),
        nats = nats_url(),
        subject = r.names.hrv_subject,
        db = r.db_url,
        payload = r#"{"eventId": "{event_id}", "payload": {"userId": "{user_id}", "date": "{date}", "rMSSD": {value}, "capturedAt": "{captured_at}"}}"#,
    );
    r.edit_config(|t| t + &section);
    let config = r.config.display().to_string();
    let run = run_bin(&["e2e", "--config", &config], &[]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let line = run.stdout.trim();
    assert!(line.contains("(customer soakwatch-e2e-"), "{line}");
    assert!(line.contains("amount 62"), "{line}");
    for seed in ["userId", "rMSSD", "lnRmssd", "HRV"] {
        assert!(!line.contains(seed), "{seed} in: {line}");
    }

    let check = run_check(&r.config, "json", "0s").await;
    let ev = check.evidence("db_integrity");
    assert!(!ev.contains("user/date"), "{ev}");
    assert!(ev.contains("counts once"), "{ev}");
}

// ---------------------------------------------------------------------------------------------
// `validate --live` and `check` read `[metrics.match]` the same way.

#[tokio::test(flavor = "multi_thread")]
async fn a_match_label_one_family_lacks_is_a_note_for_validate_as_check_reads_it() {
    let mut r = Replica::provisioned().await;
    // prom-client: the counter carries `durable`, the latency histogram only `stream`.
    r.start_node_standin().await;
    r.publish(3).await;
    r.publish_poison().await;
    r.wait_for("success", 3.0).await;
    r.wait_for("dlq", 1.0).await;
    let check = run_check(&r.config, "json", "0s").await;
    assert_eq!(check.status("p95_latency"), "pass", "{}", check.stdout);
    let cfg = r.config.display().to_string();
    let run = run_bin(&["validate", "--live", "-c", &cfg], &[]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let note = run
        .stdout
        .lines()
        .find(|l| l.starts_with("note: ") && l.contains(": metrics.match.durable: "))
        .unwrap_or_else(|| panic!("no note on metrics.match.durable:\n{}", run.stdout));
    assert!(
        note.contains("normalize_hrv_processing_duration_seconds")
            && note.contains("check reads it without that filter"),
        "{note}"
    );
    assert!(!run.stdout.contains("problem: "), "{}", run.stdout);
    assert!(run.stdout.contains("1 note(s)"), "{}", run.stdout);
}

// ---------------------------------------------------------------------------------------------
// `check` and the daemon: one verdict on one state.

/// `service_up` of one `check --window 1s` and of the daemon's /metrics (now, soak).
async fn service_up_both(r: &Replica, d: &Daemon) -> (String, Option<f64>, Option<f64>) {
    let run = run_check(&r.config, "json", "1s").await;
    let body = d.metrics().await.unwrap_or_default();
    let soak = soakwatch::promtext::parse(&body).sum(
        "soakwatch_criterion_soak_status",
        &[("criterion".to_string(), "service_up".to_string())],
    );
    (
        run.status("service_up"),
        criterion_status(&body, "service_up"),
        soak,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn check_and_the_daemon_judge_a_restart_by_the_soaks_t0_and_restart_grace_alike() {
    let mut r = Replica::healthy(3).await;
    // T0 is when the daemon starts (no started_at): only the state knows it.
    r.edit_config(|t| {
        t.lines()
            .filter(|l| !l.starts_with("started_at = "))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .replace("restart_grace = \"5m\"", "restart_grace = \"15s\"")
    });
    r.add_watch_section("");
    let mut d = r.start_daemon("agree");
    d.wait_cycles(2, Duration::from_secs(30)).await;
    let t0 = std::time::Instant::now();

    // The cutover's own restart, inside restart_grace: no failure anywhere.
    r.kill_standin().await;
    r.start_standin().await;
    r.wait_for("success", 0.0).await;
    d.wait_cycles(8, Duration::from_secs(30)).await;
    let (check, now, soak) = service_up_both(&r, &d).await;
    assert_eq!(check, "pass", "check inside the grace");
    assert_eq!(now, Some(0.0), "the daemon now, inside the grace");
    assert_eq!(soak, Some(0.0), "the daemon's soak, inside the grace");

    // A restart after T0 + restart_grace: a warning in check and in the daemon
    // once the restart's own cycle is behind it.
    if let Some(left) = Duration::from_secs(17).checked_sub(t0.elapsed()) {
        tokio::time::sleep(left).await;
    }
    r.kill_standin().await;
    r.start_standin().await;
    d.wait_status(
        "service_up",
        "warn after the restart",
        Duration::from_secs(30),
        |s| s == 1.0,
    )
    .await;
    let (check, now, _) = service_up_both(&r, &d).await;
    assert_eq!(
        (check.as_str(), now),
        ("warn", Some(1.0)),
        "after the grace"
    );
    d.signal("TERM");
    assert_eq!(
        d.wait_exit(Duration::from_secs(30)).await,
        0,
        "{}",
        d.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn discover_warns_about_fallback_lines_already_in_the_log_and_leaves_baselines_to_t0() {
    let r = Replica::healthy(2).await;
    let log = r.path("pre-cutover.log");
    let line = format!(
        "2026-11-27T05:00:00.000Z [normalize] Found existing HRV consumer on {}: normalize-hrv-durable",
        r.names.legacy_stream
    );
    std::fs::write(&log, format!("starting\n{line}\nready\n")).expect("log");
    let log = log.display().to_string();
    let run = discover_with(&r, &["--table", "hrv_data", "--log", &log]).await;
    assert!(
        run.stderr
            .contains("warning: the log already holds 1 line(s) a fallback pattern matches"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("Found existing HRV consumer"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout
            .contains("# WARNING: the log already holds 1 line(s)"),
        "{}",
        run.stdout
    );
    // Baselines belong to T0: written only as comments.
    assert!(
        run.stdout.contains("# baseline_messages = "),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout
            .lines()
            .any(|l| l.starts_with("baseline_messages")),
        "{}",
        run.stdout
    );
    // A clean log: no warning.
    let clean = r.path("clean.log");
    std::fs::write(&clean, "starting\nready\n").expect("log");
    let run = discover_with(
        &r,
        &["--table", "hrv_data", "--log", &clean.display().to_string()],
    )
    .await;
    assert!(
        !run.stderr.contains("warning: the log already holds"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("# WARNING"), "{}", run.stdout);
}
