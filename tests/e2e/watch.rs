//! `soakwatch watch` end to end: the real daemon (1 s interval) against a replica of the
//! Phase B topology on real NATS and PostgreSQL with a stand-in service process, through
//! signals, restarts, outages of each dependency, log rotation and a bad state file.
//!
//! Every wait is a polling loop with a deadline whose panic message carries the daemon's
//! last /metrics and its stderr; no timing is asserted beyond generous upper bounds.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use soakwatch::soak::model::SoakSummary;
use soakwatch::verdict::{CriterionId, Status};

const PASS: f64 = 0.0;
const WARN: f64 = 1.0;
const FAIL: f64 = 2.0;
const UNKNOWN: f64 = 3.0;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The soak id the daemon publishes (`id` label of `soakwatch_soak_info`; the
/// `soak` label of every series is the soak's name, stable across soaks).
fn soak_label(body: &str) -> String {
    let expo = soakwatch::promtext::parse(body);
    let id = expo
        .select("soakwatch_soak_info", &[])
        .find_map(|s| s.label("id").map(str::to_string))
        .unwrap_or_default();
    assert!(!id.is_empty(), "no soak id in /metrics:\n{body}");
    id
}

/// Soak ids that have files in the reports directory (`<id>-<label>.md`, `<id>-<label>-<chart>.svg`).
fn soak_ids_in(reports: &Path, tag: &str) -> BTreeSet<String> {
    let prefix = format!("demo-replica-{tag}-");
    std::fs::read_dir(reports)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter_map(|n| {
                    // The id ends with T0 as YYYYMMDDTHHMMSSZ (16 characters).
                    n.strip_prefix(&prefix)
                        .and_then(|rest| rest.get(..16))
                        .map(|t0| format!("{prefix}{t0}"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `**Samples:** N` line of a report.
fn samples_in(report: &str) -> usize {
    report
        .lines()
        .find_map(|l| l.strip_prefix("**Samples:** "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no samples line in the report:\n{report}"))
}

/// The coverage percentage of one probe in a report's probe coverage table.
fn probe_coverage_in(report: &str, probe: &str) -> f64 {
    let row = format!("| {probe} | ");
    report
        .lines()
        .find_map(|l| l.strip_prefix(&row))
        .and_then(|rest| rest.split(" %").next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no coverage row for {probe} in the report:\n{report}"))
}

/// The soak as recorded in the state database (read-only, like `report`).
async fn recorded(config: &Path) -> SoakSummary {
    let cfg = soakwatch::config::Config::load(config).expect("config loads");
    soakwatch::watch::load_summary(&cfg)
        .await
        .expect("state database readable")
        .1
}

/// Number of soaks ever recorded in a state database.
async fn soaks_recorded(state: &Path) -> i64 {
    use sqlx::ConnectOptions;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(state)
        .read_only(true)
        .connect()
        .await
        .expect("open state read-only");
    sqlx::query_scalar("SELECT COUNT(*) FROM soak")
        .fetch_one(&mut conn)
        .await
        .expect("count soaks")
}

/// `promtool check metrics` on a body: (ok, promtool's output).
async fn promtool_check(body: &str) -> (bool, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("promtool is installed (Debian package prometheus)");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(body.as_bytes()).await.expect("write body");
    drop(stdin);
    let out = tokio::time::timeout(secs(20), child.wait_with_output())
        .await
        .expect("promtool finished")
        .expect("promtool ran");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Waits for a file to appear while the daemon runs.
async fn wait_file(d: &mut Daemon, path: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        d.assert_running(&format!("while waiting for {}", path.display()));
        assert!(
            Instant::now() < deadline,
            "{} not written within {timeout:?}\n--- stderr ---\n{}",
            path.display(),
            d.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SIGTERM, then exit 0 within 15 s; returns the daemon's stdout.
async fn stop_cleanly(d: &mut Daemon) -> String {
    d.signal("TERM");
    let code = d.wait_exit(secs(15)).await;
    assert_eq!(code, 0, "exit code after SIGTERM\n{}", d.stderr());
    assert!(!d.stderr().contains("panicked"), "{}", d.stderr());
    d.stdout()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_the_cycle_writes_a_report_and_closes_the_state() {
    let mut r = Replica::healthy(5).await;
    let w = r.add_watch_section("");
    let _feed = Trickle::start(&mut r, Duration::from_millis(400));
    let mut d = r.start_daemon("watch");

    let body = d.wait_cycles(3, secs(20)).await;
    let (ok, lint) = promtool_check(&body).await;
    assert!(ok, "promtool check metrics:\n{lint}\n--- body ---\n{body}");
    assert_eq!(criterion_status(&body, "dlq"), Some(PASS), "{body}");
    assert_eq!(criterion_status(&body, "topology"), Some(PASS), "{body}");
    let id = soak_label(&body);
    assert!(
        id.starts_with(&format!("demo-replica-{}-", r.names.tag)),
        "{id}"
    );
    let (code, text) = d.get("/healthz").await.expect("/healthz answers");
    assert_eq!(code, 200, "{text}");
    assert!(text.starts_with("ok"), "{text}");

    // The state is readable while the daemon writes it.
    let config = r.config.display().to_string();
    let live = check_soak(&r.config).await;
    assert!(
        live.json()["soak"].as_str().unwrap_or("").contains(&id),
        "{}{}",
        live.stdout,
        live.stderr
    );
    d.assert_running("after a concurrent check --soak");

    let checkpoint = w.reports.join(format!("{id}-5s.md"));
    wait_file(&mut d, &checkpoint, secs(20)).await;
    assert!(read(&checkpoint).contains("5s checkpoint"));
    // Five cycles done (a loaded machine may skip a tick, so the checkpoint
    // alone does not prove five samples).
    d.wait_cycles(5, secs(30)).await;

    let stdout = stop_cleanly(&mut d).await;
    assert!(stdout.contains(&format!("soak {id}: ")), "{stdout}");

    // The final report, with its five charts beside it.
    let latest = w.reports.join(format!("{id}-latest.md"));
    let md = read(&latest);
    assert!(md.contains(&format!("**Soak id:** `{id}`")), "{md}");
    assert!(samples_in(&md) >= 5, "{md}");
    for chart in ["lag", "dlq", "throughput", "success", "p95"] {
        let file = format!("{id}-latest-{chart}.svg");
        assert!(md.contains(&file), "{file} not linked:\n{md}");
        let svg = read(&w.reports.join(&file));
        resvg::usvg::Tree::from_str(&svg, &resvg::usvg::Options::default())
            .unwrap_or_else(|e| panic!("{file} is not valid SVG: {e}"));
    }
    // Closed cleanly: the WAL was checkpointed into the main file.
    let wal = std::path::PathBuf::from(format!("{}-wal", w.state.display()));
    assert!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) == 0,
        "{} left behind with data",
        wal.display()
    );

    // The state opens read-only afterwards: an on-demand report and the soak check.
    let run = run_bin(&["report", "--config", &config], &[]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let report = std::path::PathBuf::from(run.stdout.trim());
    assert_eq!(report, w.reports.join(format!("{id}-report.md")));
    assert!(read(&report).contains("on-demand report"));

    let run = check_soak(&r.config).await;
    let j = run.json();
    let bad: Vec<String> = run
        .not_passing()
        .into_iter()
        .map(|(id, st)| format!("{id} {st}: {}", run.evidence(&id)))
        .collect();
    assert!(
        j["overall"] == "pass" || j["overall"] == "warn",
        "overall {} (exit {}):\n{}\n--- daemon stderr ---\n{}",
        j["overall"],
        run.code,
        bad.join("\n"),
        d.stderr()
    );
    assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
    assert!(
        j["soak"].as_str().unwrap_or("").contains(&id),
        "{}",
        j["soak"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_then_restart_resumes_the_same_soak() {
    let mut r = Replica::healthy(3).await;
    let w = r.add_watch_section("");
    let _feed = Trickle::start(&mut r, Duration::from_millis(400));

    let mut d = r.start_daemon("watch-1");
    let body = d.wait_cycles(3, secs(20)).await;
    let id = soak_label(&body);
    let before_kill = d.metrics().await.unwrap_or(body);
    let first_cycles = metric_in(&before_kill, "soakwatch_cycles_total", &[]).unwrap_or(0.0);
    d.signal("KILL");
    let code = d.wait_exit(secs(5)).await;
    assert_eq!(code, -1, "killed by a signal");
    assert!(!w.reports.join(format!("{id}-latest.md")).exists());

    // Silence longer than max_gap (3 s): the restart leaves a sampling gap.
    tokio::time::sleep(Duration::from_millis(4500)).await;

    let mut d = r.start_daemon("watch-2");
    let body = d.wait_cycles(3, secs(20)).await;
    assert_eq!(soak_label(&body), id, "a restart resumes the same soak");
    assert!(d.stderr().contains("resuming soak"), "{}", d.stderr());
    let stdout = stop_cleanly(&mut d).await;
    assert!(stdout.contains(&format!("soak {id}: ")), "{stdout}");
    let second_cycles = metric_in(&body, "soakwatch_cycles_total", &[]).unwrap_or(0.0);

    // One soak, whose history kept growing across the kill.
    assert_eq!(soaks_recorded(&w.state).await, 1);
    assert_eq!(
        soak_ids_in(&w.reports, &r.names.tag),
        BTreeSet::from([id.clone()])
    );
    let md = read(&w.reports.join(format!("{id}-latest.md")));
    assert!(
        samples_in(&md) as f64 >= first_cycles + second_cycles,
        "samples {} < {first_cycles} + {second_cycles}:\n{md}",
        samples_in(&md)
    );
    let run = check_soak(&r.config).await;
    assert!(
        run.json()["soak"].as_str().unwrap_or("").contains(&id),
        "{}",
        run.stdout
    );

    // The kill is a gap: unknown for its length, never pass.
    let s = recorded(&r.config).await;
    assert_eq!(s.soak_id, id);
    let gaps: Vec<_> = s
        .spans
        .iter()
        .filter(|sp| sp.criterion == CriterionId::Topology && sp.evidence.contains("sampling gap"))
        .collect();
    assert_eq!(gaps.len(), 1, "{:#?}", s.spans);
    assert_eq!(gaps[0].status, Status::Unknown);
    assert!(gaps[0].secs() >= 1.0, "{:?}", gaps[0]);
    let topology = s.criterion(CriterionId::Topology).expect("topology");
    assert!(topology.coverage < 1.0, "coverage {}", topology.coverage);
    assert!(topology.unknown_secs >= 1.0, "{}", topology.unknown_secs);
    assert!(probe_coverage_in(&md, "metrics") < 100.0, "{md}");

    // --new-soak starts another soak and keeps the first.
    tokio::time::sleep(Duration::from_millis(1100)).await; // a new T0 second, so a new id
    let mut d = Daemon::start(
        &r.config,
        &["--new-soak", "--max-cycles", "2"],
        r.dir.path(),
        "watch-3",
    );
    assert_eq!(d.wait_exit(secs(20)).await, 0, "{}", d.stderr());
    assert_eq!(soaks_recorded(&w.state).await, 2);
    let ids = soak_ids_in(&w.reports, &r.names.tag);
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&id));
    let s = recorded(&r.config).await;
    assert_ne!(s.soak_id, id, "the new soak is the active one");
    assert_eq!(s.samples, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_outage_is_unknown_then_recovers() {
    let mut nats = NatsServer::start().await;
    let mut r = Replica::provisioned_on(&nats.url).await;
    r.start_standin_on(&nats.url).await;
    r.publish(3).await;
    r.wait_for("success", 3.0).await;
    let w = r.add_watch_section("");
    let mut d = r.start_daemon("watch");
    d.wait_status("consumer_lag", "pass", secs(20), |s| s == PASS)
        .await;
    let id = soak_label(&d.metrics().await.unwrap_or_default());

    nats.stop().await;
    let down = Instant::now();
    let body = d
        .wait_status("consumer_lag", "unknown", secs(10), |s| s == UNKNOWN)
        .await;
    assert_eq!(criterion_status(&body, "topology"), Some(UNKNOWN), "{body}");
    // Criteria that do not need NATS are still judged.
    assert_eq!(criterion_status(&body, "fallback"), Some(PASS), "{body}");
    let (code, _) = d.get("/healthz").await.expect("/healthz answers");
    assert_eq!(code, 200, "the daemon keeps sampling during the outage");
    if let Some(left) = secs(4).checked_sub(down.elapsed()) {
        tokio::time::sleep(left).await;
    }
    d.assert_running("during the NATS outage");

    nats.restart().await;
    // async-nats reconnects with a backoff.
    d.wait_status("consumer_lag", "pass again", secs(30), |s| s == PASS)
        .await;
    d.wait_status("topology", "pass again", secs(10), |s| s == PASS)
        .await;
    let body = d.metrics().await.unwrap_or_default();
    assert!(
        metric_in(
            &body,
            "soakwatch_probe_errors_total",
            &[("probe", "consumer")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{body}"
    );
    stop_cleanly(&mut d).await;

    let md = read(&w.reports.join(format!("{id}-latest.md")));
    let consumer = probe_coverage_in(&md, "consumer");
    assert!(consumer < 100.0, "consumer coverage {consumer}:\n{md}");
    assert!(probe_coverage_in(&md, "metrics") > consumer, "{md}");
    let s = recorded(&r.config).await;
    assert!(
        s.spans
            .iter()
            .any(|sp| sp.criterion == CriterionId::ConsumerLag
                && sp.status == Status::Unknown
                && (sp.evidence.contains("disconnected")
                    || sp.evidence.contains("cannot connect"))),
        "no unknown consumer_lag span for the outage: {:#?}",
        s.spans
            .iter()
            .filter(|sp| sp.criterion == CriterionId::ConsumerLag)
            .collect::<Vec<_>>()
    );
    assert!(
        !s.incidents.iter().any(
            |i| i.criterion == CriterionId::ConsumerLag || i.criterion == CriterionId::Topology
        ),
        "an outage is unknown, not a failure: {:#?}",
        s.incidents
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_down_and_back() {
    let mut r = Replica::healthy(3).await;
    let w = r.add_watch_section("");
    let mut d = r.start_daemon("watch");
    d.wait_status("service_up", "pass", secs(20), |s| s == PASS)
        .await;
    let id = soak_label(&d.metrics().await.unwrap_or_default());

    r.kill_standin().await;
    let down = Instant::now();
    let body = d
        .wait_status("service_up", "fail", secs(10), |s| s == FAIL)
        .await;
    // What only the metrics tell is unknown, not pass; NATS-side criteria are still judged.
    assert_eq!(
        criterion_status(&body, "success_rate"),
        Some(UNKNOWN),
        "{body}"
    );
    assert_eq!(criterion_status(&body, "topology"), Some(PASS), "{body}");
    if let Some(left) = secs(3).checked_sub(down.elapsed()) {
        tokio::time::sleep(left).await;
    }
    d.assert_running("while the service was down");

    r.start_standin().await;
    // Back to pass (or warn: a restart after T0); recovery needs 2 s of passing.
    d.wait_status("service_up", "pass or warn again", secs(20), |s| {
        s == PASS || s == WARN
    })
    .await;
    let (code, text) = d.get("/healthz").await.expect("/healthz answers");
    assert_eq!(code, 200, "{text}");
    let body = d.metrics().await.unwrap_or_default();
    assert!(
        metric_in(
            &body,
            "soakwatch_probe_errors_total",
            &[("probe", "metrics")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{body}"
    );
    assert!(
        metric_in(&body, "soakwatch_incidents", &[]).unwrap_or(0.0) >= 1.0,
        "{body}"
    );
    stop_cleanly(&mut d).await;

    let md = read(&w.reports.join(format!("{id}-latest.md")));
    assert!(md.contains("| Service up (`service_up`) |"), "{md}");
    let s = recorded(&r.config).await;
    let up: Vec<_> = s
        .incidents
        .iter()
        .filter(|i| i.criterion == CriterionId::ServiceUp)
        .collect();
    assert_eq!(up.len(), 1, "{:#?}", s.incidents);
}

/// The daemon's report lists service restarts (process start moved, or counters reset).
/// A crash whose downtime spans at least one cycle is not listed: the restart detector
/// only compares two consecutive cycles that both saw the metrics.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_and_restart_across_cycles_is_listed_as_a_restart() {
    let mut r = Replica::healthy(3).await;
    let w = r.add_watch_section("");
    let mut d = r.start_daemon("watch");
    d.wait_status("service_up", "pass", secs(20), |s| s == PASS)
        .await;
    let id = soak_label(&d.metrics().await.unwrap_or_default());
    r.kill_standin().await;
    d.wait_status("service_up", "fail", secs(10), |s| s == FAIL)
        .await;
    r.start_standin().await;
    d.wait_status("service_up", "pass or warn again", secs(20), |s| {
        s == PASS || s == WARN
    })
    .await;
    stop_cleanly(&mut d).await;
    let s = recorded(&r.config).await;
    assert_eq!(s.restarts.len(), 1, "restarts {:?}", s.restarts);
    let md = read(&w.reports.join(format!("{id}-latest.md")));
    assert!(md.contains("**Service restarts:** 1"), "{md}");
}

#[tokio::test(flavor = "multi_thread")]
async fn database_refused_leaves_db_criteria_unknown() {
    let mut r = Replica::healthy(3).await;
    let closed_port = ReservedPort::new();
    let closed = closed_port.port();
    let db_url = r.db_url.clone();
    r.edit_config(|t| {
        let bad = format!("url = \"postgres://postgres@127.0.0.1:{closed}/nothing\"");
        let out = t.replace(&format!("url = \"{db_url}\""), &bad);
        assert_ne!(out, t, "database url line not found");
        out
    });
    r.add_watch_section("");
    let _feed = Trickle::start(&mut r, Duration::from_millis(400));
    let mut d = Daemon::start(&r.config, &["--force"], r.dir.path(), "watch");
    let body = d.wait_cycles(4, secs(20)).await;
    assert_eq!(
        criterion_status(&body, "db_integrity"),
        Some(UNKNOWN),
        "{body}"
    );
    assert_eq!(
        criterion_status(&body, "db_writes"),
        Some(UNKNOWN),
        "{body}"
    );
    for id in [
        "topology",
        "consumer_config",
        "dlq",
        "fallback",
        "service_up",
    ] {
        assert_eq!(criterion_status(&body, id), Some(PASS), "{id}:\n{body}");
    }
    assert!(
        metric_in(
            &body,
            "soakwatch_probe_errors_total",
            &[("probe", "database")]
        )
        .unwrap_or(0.0)
            >= 3.0,
        "{body}"
    );
    assert_eq!(
        metric_in(
            &body,
            "soakwatch_probe_coverage_ratio",
            &[("probe", "database")]
        ),
        Some(0.0),
        "{body}"
    );
    let (code, text) = d.get("/healthz").await.expect("/healthz answers");
    assert_eq!(code, 200, "{text}");
    stop_cleanly(&mut d).await;
    let s = recorded(&r.config).await;
    let db = s.criterion(CriterionId::DbIntegrity).expect("db_integrity");
    assert_eq!(db.soak, Status::Unknown);
    assert!(
        db.last.evidence.contains(&format!("127.0.0.1:{closed}")),
        "the reason names the database: {}",
        db.last.evidence
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn log_truncated_and_rotated() {
    let r = Replica::healthy(3).await;
    let w = r.add_watch_section("");
    let mut d = r.start_daemon("watch");
    d.wait_status("fallback", "pass", secs(20), |s| s == PASS)
        .await;
    let log = r.files.log_file.clone();

    // Truncated in place (copytruncate): still a readable log without fallback lines.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .expect("open log")
        .set_len(0)
        .expect("truncate");
    let before = d
        .metrics()
        .await
        .and_then(|b| metric_in(&b, "soakwatch_cycles_total", &[]))
        .unwrap_or(0.0);
    d.wait_cycles(before as u64 + 2, secs(10)).await;
    assert_eq!(d.status("fallback").await, Some(PASS));

    // Rotated: renamed away. Missing, the log is unknown, not pass.
    std::fs::rename(&log, r.path("normalize-service.log.1")).expect("rotate");
    d.wait_status("fallback", "unknown (log missing)", secs(10), |s| {
        s == UNKNOWN
    })
    .await;
    // A new, empty log: judged again.
    std::fs::File::create(&log).expect("new log");
    d.wait_status("fallback", "pass on the new log", secs(10), |s| s == PASS)
        .await;
    // A fallback line in the new file fails at once.
    r.append_log(&format!(
        "2026-11-27T06:00:00.000Z [normalize] Found existing HRV consumer on {}: normalize-hrv-durable",
        r.names.legacy_stream
    ));
    d.wait_status("fallback", "fail", secs(10), |s| s == FAIL)
        .await;
    let (code, _) = d.get("/healthz").await.expect("/healthz answers");
    assert_eq!(code, 200);
    let body = d.metrics().await.unwrap_or_default();
    let id = soak_label(&body);
    stop_cleanly(&mut d).await;
    let md = read(&w.reports.join(format!("{id}-latest.md")));
    assert!(md.contains("Found existing HRV consumer on"), "{md}");
}

/// A daemon config (see [`dead_config`]) with the port its servers point at, held
/// as long as this lives, so nothing else can start listening there.
struct DeadConfig {
    path: std::path::PathBuf,
    _closed: ReservedPort,
}

/// A replica config whose servers are all on a port where nothing listens (nothing is
/// provisioned: the state is opened before any probe runs), with a `[watch]` section
/// using `state` and a listener on port 0.
fn dead_config(dir: &Path, name: &str, state: &Path) -> DeadConfig {
    dead_config_with_metrics(dir, name, state, None)
}

/// [`dead_config`] with the service's /metrics at `metrics_url` (None: the dead port too).
fn dead_config_with_metrics(
    dir: &Path,
    name: &str,
    state: &Path,
    metrics_url: Option<&str>,
) -> DeadConfig {
    let names = soakwatch::testkit::replica::ReplicaNames::random();
    let files = soakwatch::testkit::demo::ReplicaFiles::in_dir(dir);
    let closed_port = ReservedPort::new();
    let closed = closed_port.port();
    let metrics_url = metrics_url.map_or_else(
        || format!("http://127.0.0.1:{closed}/metrics"),
        str::to_string,
    );
    let text = soakwatch::testkit::demo::replica_config(
        &names,
        &format!("nats://127.0.0.1:{closed}"),
        &format!("postgres://postgres@127.0.0.1:{closed}/nothing"),
        &metrics_url,
        &files,
        chrono::Utc::now(),
    );
    let watch = format!(
        "\n[watch]\ninterval = \"1s\"\nstate = {}\nreports_dir = {}\nlisten = \"127.0.0.1:0\"\n",
        toml_path(state),
        toml_path(&dir.join("reports"))
    );
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, text + &watch).expect("config");
    DeadConfig {
        path: config,
        _closed: closed_port,
    }
}

/// Runs `watch` on a config whose state must be refused: exit 3 within 10 s; returns stderr.
async fn refused(config: &DeadConfig, dir: &Path, name: &str) -> String {
    let mut d = Daemon::start(&config.path, &[], dir, name);
    let code = d.wait_exit(secs(10)).await;
    let err = d.stderr();
    assert_eq!(code, 3, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_state_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corrupt = dir.path().join("corrupt.sqlite");
    let garbage = b"this is not a database, it is a text file that someone put here\n".repeat(100);
    std::fs::write(&corrupt, &garbage).expect("write garbage");
    let config = dead_config(dir.path(), "corrupt", &corrupt);
    let err = refused(&config, dir.path(), "corrupt").await;
    assert!(err.contains("not a usable soakwatch database"), "{err}");
    assert!(err.contains(&corrupt.display().to_string()), "{err}");
    assert!(
        std::fs::read(&corrupt).expect("read") == garbage,
        "the garbage file was modified"
    );

    // A second daemon on a state that a running one holds is refused too.
    let state = dir.path().join("state.sqlite");
    let config = dead_config(dir.path(), "first", &state);
    let mut first = Daemon::start(&config.path, &["--force"], dir.path(), "first");
    first.wait_cycles(1, secs(20)).await;
    let second_config = dead_config(dir.path(), "second", &state);
    let err = refused(&second_config, dir.path(), "second").await;
    assert!(err.contains("locked"), "{err}");
    assert!(err.contains(&state.display().to_string()), "{err}");
    // The same state through a symlink is the same file: refused too.
    let link = dir.path().join("linked-state.sqlite");
    std::os::unix::fs::symlink(&state, &link).expect("symlink");
    let link_config = dead_config(dir.path(), "via-link", &link);
    let err = refused(&link_config, dir.path(), "via-link").await;
    assert!(err.contains("locked"), "{err}");
    assert!(err.contains(&link.display().to_string()), "{err}");
    first.assert_running("after the second daemon was refused");
    stop_cleanly(&mut first).await;

    // Released on exit: the next daemon takes the state over (and --max-cycles stops it).
    let mut third = Daemon::start(
        &config.path,
        &["--force", "--max-cycles", "1"],
        dir.path(),
        "third",
    );
    let code = third.wait_exit(secs(20)).await;
    assert_eq!(code, 0, "{}", third.stderr());
    assert!(third.stdout().contains(" after "), "{}", third.stdout());
}

/// Another program's SQLite database given as the state must be refused and left as it
/// was. It is refused, but only after the connection options have switched it to WAL
/// journal mode (a persistent change to its header) and left an empty `-wal` beside it.
#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_sqlite_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let foreign = dir.path().join("foreign.sqlite");
    {
        use sqlx::{ConnectOptions, Connection};
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&foreign)
            .create_if_missing(true)
            .connect()
            .await
            .expect("create foreign db");
        sqlx::query("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
            .execute(&mut conn)
            .await
            .expect("create table");
        conn.close().await.expect("close");
    }
    let before = std::fs::read(&foreign).expect("read");
    let config = dead_config(dir.path(), "foreign", &foreign);
    let err = refused(&config, dir.path(), "foreign").await;
    assert!(err.contains("not a usable soakwatch database"), "{err}");
    assert!(err.contains(&foreign.display().to_string()), "{err}");
    let after = std::fs::read(&foreign).expect("read");
    // Header bytes 18 and 19 are the file format versions: 1 = rollback journal, 2 = WAL.
    assert!(
        after == before,
        "the foreign database was modified: {} -> {} bytes, format versions {:?} -> {:?}",
        before.len(),
        after.len(),
        before.get(18..20),
        after.get(18..20)
    );
    let wal = dir.path().join("foreign.sqlite-wal");
    assert!(!wal.exists(), "{} left behind", wal.display());
}

/// A /metrics endpoint that answers each request after `delay`, reporting each request's
/// arrival on the returned channel. Returns (port, arrivals).
async fn slow_metrics(delay: Duration) -> (u16, tokio::sync::mpsc::UnboundedReceiver<Instant>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = tx.send(Instant::now());
                tokio::time::sleep(delay).await;
                let body =
                    "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds 1\n";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (port, rx)
}

/// `soakwatch watch` documents that on SIGTERM "the current cycle finishes, a final report
/// is written" (and logs "shutdown requested: finishing the cycle"). A cycle whose probes
/// are still running when the signal arrives is dropped instead: the loop selects on the
/// shutdown token around `source.snapshot(..)` and breaks out of it.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_slow_cycle_finishes_that_cycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (metrics_port, mut arrivals) = slow_metrics(Duration::from_millis(2500)).await;
    let state = dir.path().join("state.sqlite");
    let config = dead_config_with_metrics(
        dir.path(),
        "slow",
        &state,
        Some(&format!("http://127.0.0.1:{metrics_port}/metrics")),
    );
    let mut d = Daemon::start(&config.path, &["--force"], dir.path(), "slow");
    // The second scrape starts the second cycle; the first one is then complete.
    for n in 1..=2 {
        tokio::time::timeout(secs(20), arrivals.recv())
            .await
            .unwrap_or_else(|_| panic!("scrape {n} within 20 s\n{}", d.stderr()))
            .expect("server running");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.signal("TERM");
    let code = d.wait_exit(secs(15)).await;
    assert_eq!(code, 0, "{}", d.stderr());
    let mut scrapes = 2;
    while arrivals.try_recv().is_ok() {
        scrapes += 1;
    }
    let body = d.stdout();
    let samples: usize = body
        .rsplit("after ")
        .next()
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary line: {body}"));
    assert_eq!(
        samples,
        scrapes,
        "cycles recorded vs cycles started (a scrape each) at SIGTERM\n{}",
        d.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_per_line_and_secrets_stay_hidden() {
    let dir = tempfile::tempdir().expect("tmp");
    let closed_port = ReservedPort::new();
    let closed = closed_port.port();
    let state = dir.path().join("state.sqlite");
    let reports = dir.path().join("reports");
    let db = format!("postgres://athlete:Hunter2Secret@127.0.0.1:{closed}/athlete_normalize");
    let nats = format!("nats://127.0.0.1:{closed}");
    let metrics = format!("http://127.0.0.1:{closed}/metrics");
    // The alert receivers are not there either (not whatever listens on the
    // shipped defaults' ports on this machine).
    let webhook = format!("http://127.0.0.1:{closed}/hooks/soakwatch");
    let alertmanager = format!("http://127.0.0.1:{closed}");
    let state_s = state.display().to_string();
    let reports_s = reports.display().to_string();
    let t0_now = chrono::Utc::now().to_rfc3339();
    let run = run_bin(
        &[
            "--log-format",
            "json",
            "watch",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/checks.toml"),
            // The shipped started_at is the seed's (a soak long over).
            "--t0",
            &t0_now,
            // Nothing it watches exists: the soak starts anyway.
            "--force",
            "--max-cycles",
            "1",
        ],
        &[
            ("NATS_URL", nats.as_str()),
            ("DATABASE_URL", db.as_str()),
            ("METRICS_URL", metrics.as_str()),
            ("SOAKWATCH_STATE", state_s.as_str()),
            ("SOAKWATCH_REPORTS", reports_s.as_str()),
            ("ALERT_WEBHOOK_URL", webhook.as_str()),
            ("ALERTMANAGER_URL", alertmanager.as_str()),
            // Not the shipped 127.0.0.1:9464 (an empty value means the default):
            // port 0, so suites running side by side never collide.
            ("SOAKWATCH_LISTEN", "127.0.0.1:0"),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(!lines.is_empty());
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{l}");
    }
    assert!(run.stderr.contains("\"cycle done\""), "{}", run.stderr);
    assert!(run.stderr.contains("probe failed"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("Hunter2Secret"),
        "a password leaked into the logs"
    );
    assert!(!run.stdout.contains("Hunter2Secret"));
    let report = std::fs::read_dir(&reports)
        .expect("reports dir")
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().ends_with("-latest.md"))
        .expect("latest report");
    let text = std::fs::read_to_string(report.path()).expect("report");
    assert!(
        !text.contains("Hunter2Secret"),
        "a password leaked into the report"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn periodic_e2e_probe_reports_and_its_rows_are_removed() {
    let r = Replica::healthy(2).await;
    // The E2E probe runs every second through the stand-in, disarmed rollback.
    let section = format!(
        "\n[rollback]\nmode = \"disarmed\"\nenv_file = {env}\nrestart_command = []\nlog_file = {log}\n\n\
         [rollback.e2e]\nnats_url = \"{nats}\"\nsubject = \"{subject}\"\ndatabase_url = \"{db}\"\ntable = \"hrv_data\"\ntimeout = \"2s\"\nevery = \"1s\"\n",
        env = toml_path(&r.files.env_file),
        log = toml_path(&r.files.log_file),
        nats = nats_url(),
        subject = r.names.hrv_subject,
        db = r.db_url,
    );
    r.edit_config(|t| t + &section);
    r.add_watch_section("");
    let mut d = r.start_daemon("watch");
    let body = d
        .wait_metrics("a passing periodic e2e", secs(30), |m| {
            m.sum("soakwatch_e2e_ok", &[]) == Some(1.0)
        })
        .await;
    let latency = metric_in(&body, "soakwatch_e2e_latency_seconds", &[]).unwrap_or(-1.0);
    assert!((0.0..2.0).contains(&latency), "{body}");

    // The service stops consuming: the probe fails and says so.
    r.admin("pause").await;
    d.wait_metrics("a failing periodic e2e", secs(30), |m| {
        m.sum("soakwatch_e2e_ok", &[]) == Some(0.0)
    })
    .await;
    d.signal("TERM");
    assert_eq!(d.wait_exit(secs(20)).await, 0, "{}", d.stderr());
    assert!(d.stderr().contains("periodic e2e"), "{}", d.stderr());

    // Each run removes the probe's rows (its own and any that arrived late from
    // an earlier failed run); with the service still paused nothing can be
    // written afterwards, so none are left.
    let pool = sqlx::PgPool::connect(&r.db_url).await.expect("db");
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM hrv_data WHERE \"userId\" LIKE 'soakwatch-e2e-%'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(left, 0, "e2e rows left behind");
    pool.close().await;
}

/// `soakwatch_write_failing{target}` in a /metrics body.
fn write_failing(m: &soakwatch::promtext::Exposition, target: &str) -> Option<f64> {
    m.sum(
        "soakwatch_write_failing",
        &[("target".into(), target.into())],
    )
}

/// The reports directory replaced by a file: the checkpoints cannot be
/// written. The daemon must keep sampling, say so once in its log, count it on
/// /metrics, fire `soakwatch_self`, write each checkpoint once when the
/// directory is back, and still stop with 0 when the final report fails.
#[tokio::test(flavor = "multi_thread")]
async fn a_report_write_error_never_ends_the_soak() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.sqlite");
    let config = dead_config(dir.path(), "write-errors", &state);
    let mut text = std::fs::read_to_string(&config.path).expect("config");
    text.push_str("checkpoints = [\"2s\", \"3s\"]\n");
    std::fs::write(&config.path, text).expect("config");
    let reports = dir.path().join("reports");
    std::fs::write(&reports, "a file where the reports directory should be\n").expect("file");

    let mut d = Daemon::start(&config.path, &["--force"], dir.path(), "write-errors");
    let body = d
        .wait_metrics("the report writes to fail", secs(30), |m| {
            m.sum(
                "soakwatch_write_errors_total",
                &[("target".into(), "report".into())],
            )
            .unwrap_or(0.0)
                >= 3.0
                && m.sum("soakwatch_cycles_total", &[]).unwrap_or(0.0) >= 5.0
        })
        .await;
    let m = soakwatch::promtext::parse(&body);
    assert_eq!(write_failing(&m, "report"), Some(1.0), "{body}");
    assert_eq!(write_failing(&m, "state"), Some(0.0), "{body}");
    assert_eq!(
        m.sum(
            "soakwatch_alert_firing",
            &[("criterion".into(), "soakwatch_self".into())]
        ),
        Some(1.0),
        "{body}"
    );
    let (ok, lint) = promtool_check(&body).await;
    assert!(ok, "promtool check metrics:\n{lint}\n--- body ---\n{body}");
    let err = d.stderr();
    let logged = err
        .matches("write failed; retrying on later cycles")
        .count();
    // One line per state change: the 2s checkpoint failing, then 2s and 3s.
    assert!(
        (1..=2).contains(&logged),
        "logged {logged} times, not once per state change:\n{err}"
    );

    // The directory comes back: each checkpoint is written, once.
    std::fs::remove_file(&reports).expect("rm");
    std::fs::create_dir(&reports).expect("mkdir");
    d.wait_metrics("the report writes to work again", secs(20), |m| {
        write_failing(m, "report") == Some(0.0)
            && m.sum(
                "soakwatch_alert_firing",
                &[("criterion".into(), "soakwatch_self".into())],
            )
            .is_none()
    })
    .await;
    let cycles_then = d.wait_cycles(1, secs(5)).await;
    let n = soakwatch::promtext::parse(&cycles_then)
        .sum("soakwatch_cycles_total", &[])
        .unwrap_or(0.0);
    d.wait_cycles(n as u64 + 3, secs(20)).await;
    let names = |suffix: &str| -> usize {
        std::fs::read_dir(&reports)
            .expect("reports")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
            .count()
    };
    assert_eq!(names("-2s.md"), 1, "the 2s checkpoint, once");
    assert_eq!(names("-3s.md"), 1, "the 3s checkpoint, once");
    let mtime = || {
        std::fs::read_dir(&reports)
            .expect("reports")
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().ends_with("-2s.md"))
            .and_then(|e| e.metadata().ok())
            .and_then(|m| m.modified().ok())
    };
    let written = mtime();
    assert!(written.is_some());
    d.wait_cycles(n as u64 + 6, secs(20)).await;
    assert_eq!(mtime(), written, "the checkpoint was written again");
    assert!(d.stderr().contains("writes work again"), "{}", d.stderr());

    // Broken again at shutdown: the final report fails, the exit is still clean.
    std::fs::remove_dir_all(&reports).expect("rm -r");
    std::fs::write(&reports, "a file again\n").expect("file");
    stop_cleanly(&mut d).await;
    assert!(
        d.stderr().contains("final report not written"),
        "{}",
        d.stderr()
    );
    assert!(!d.stderr().contains("panicked"));
}

/// The state database locked by another process (SQLITE_BUSY on every
/// write) for a while: cycles are kept in memory, the daemon keeps going,
/// and once the lock is gone every cycle is in the database.
#[tokio::test(flavor = "multi_thread")]
async fn a_locked_state_database_loses_no_cycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.sqlite");
    let config = dead_config(dir.path(), "busy", &state);
    let mut d = Daemon::start(&config.path, &["--force"], dir.path(), "busy");
    d.wait_cycles(2, secs(20)).await;

    // Another process holds SQLite's write lock for 12 s.
    let script = format!(
        "import sqlite3, sys, time\n\
         c = sqlite3.connect({:?}, isolation_level=None, timeout=10)\n\
         c.execute('BEGIN EXCLUSIVE')\n\
         print('locked', flush=True)\n\
         time.sleep(12)\n\
         c.execute('ROLLBACK')\n",
        state.display().to_string()
    );
    let mut locker = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut out = tokio::io::BufReader::new(locker.stdout.take().expect("stdout"));
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line)
        .await
        .expect("locker output");
    assert_eq!(line.trim(), "locked");
    let body = d
        .wait_metrics("the state writes to fail", secs(30), |m| {
            write_failing(m, "state") == Some(1.0)
        })
        .await;
    assert!(body.contains("soakwatch_unsaved_cycles"), "{body}");
    let status = locker.wait().await.expect("locker exits");
    assert!(status.success());
    let body = d
        .wait_metrics("the unsaved cycles to be saved", secs(40), |m| {
            write_failing(m, "state") == Some(0.0)
                && m.sum("soakwatch_unsaved_cycles", &[]) == Some(0.0)
        })
        .await;
    assert!(body.contains("soakwatch_lost_cycles_total 0"), "{body}");
    stop_cleanly(&mut d).await;
    let cycles_done = soakwatch::promtext::parse(&body)
        .sum("soakwatch_cycles_total", &[])
        .unwrap_or(0.0) as i64;
    let count = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3; print(sqlite3.connect({:?}).execute('SELECT COUNT(*) FROM cycle').fetchone()[0])",
            state.display().to_string()
        ))
        .output()
        .expect("python3 runs");
    let stored: i64 = String::from_utf8_lossy(&count.stdout)
        .trim()
        .parse()
        .expect("a count");
    assert!(
        stored >= cycles_done,
        "{stored} cycles stored, {cycles_done} done before the last /metrics read\n{}",
        d.stderr()
    );
    assert!(
        d.stderr()
            .contains("write failed; retrying on later cycles"),
        "{}",
        d.stderr()
    );
}

/// Reads until the peer closes; false if it is still open after `within`.
async fn closed_by_peer(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// The status listener closes connections that send nothing, stall inside
/// their headers, or sit idle after a request; it keeps answering; and the
/// daemon's log, written to a file, carries no ANSI colour codes.
#[tokio::test(flavor = "multi_thread")]
async fn idle_http_connections_are_closed_and_logs_have_no_colour() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.sqlite");
    let config = dead_config(dir.path(), "idle-http", &state);
    let mut d = Daemon::start(&config.path, &["--force"], dir.path(), "idle-http");
    d.wait_cycles(1, secs(20)).await;
    let addr = format!("127.0.0.1:{}", d.port().expect("bound port"));
    let connect = || tokio::net::TcpStream::connect(addr.clone());
    let mut silent = connect().await.expect("connect");
    let mut stalled = connect().await.expect("connect");
    stalled
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("partial header");
    let mut idle = connect().await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let (a, b, c) = tokio::join!(
        closed_by_peer(&mut silent, secs(20)),
        closed_by_peer(&mut stalled, secs(20)),
        closed_by_peer(&mut idle, secs(20)),
    );
    assert!(a, "a connection that sent nothing is still open");
    assert!(b, "a connection stalled inside its headers is still open");
    assert!(c, "an idle keep-alive connection is still open");
    d.assert_running("after the idle connections");
    assert!(d.metrics().await.is_some(), "the listener still answers");
    stop_cleanly(&mut d).await;
    let err = d.stderr();
    assert!(err.contains("cycle done"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escapes in a log file:\n{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_log_is_unknown_every_cycle_and_sigterm_still_stops_the_daemon() {
    let r = Replica::healthy(2).await;
    let fifo = r.path("log.fifo");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(st.success());
    let log = r.files.log_file.display().to_string();
    r.edit_config(|t| t.replace(&log, &fifo.display().to_string()));
    r.add_watch_section("");
    let mut d = Daemon::start(&r.config, &["--force"], r.dir.path(), "watch-fifo");
    d.wait_cycles(3, secs(30)).await;
    assert_eq!(d.status("fallback").await, Some(UNKNOWN));
    // Before: each cycle left a thread blocked in open(2) and SIGTERM never finished.
    stop_cleanly(&mut d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fallback_inside_a_100_mb_burst_is_caught_and_rotation_never_resolves_it() {
    let r = Replica::healthy(3).await;
    // 16 MiB read per cycle: the 100 MB burst takes several cycles to catch up on.
    r.edit_config(|t| {
        t.replace(
            "ignore_patterns = ['Stream candidates:']",
            "ignore_patterns = ['Stream candidates:']\nmax_scan_bytes = 16777216",
        )
    });
    r.add_watch_section("");
    let mut d = Daemon::start(&r.config, &["--force"], r.dir.path(), "watch-burst");
    d.wait_status("fallback", "pass", secs(20), |s| s == PASS)
        .await;
    let log = r.files.log_file.clone();

    // One write of ~100 MB whose fallback line is 10 MB in: far outside the last
    // max_scan_bytes of the file once written (what was scanned before).
    let filler = "2026-11-27T06:00:00.000Z [normalize] processed HRV event ok\n";
    let mut burst = filler.repeat(10_000_000 / filler.len());
    burst.push_str(&format!(
        "2026-11-27T06:00:01.000Z [normalize] Found existing HRV consumer on {}: normalize-hrv-durable\n",
        r.names.legacy_stream
    ));
    burst.push_str(&filler.repeat(90_000_000 / filler.len()));
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("open log");
        f.write_all(burst.as_bytes()).expect("burst");
    }
    drop(burst);
    d.wait_status("fallback", "fail once the burst is read", secs(120), |s| {
        s == FAIL
    })
    .await;

    // mv rotation plus a new, clean file: the fallback stays counted.
    std::fs::rename(&log, r.path("normalize-service.log.1")).expect("rotate");
    std::fs::File::create(&log).expect("new log");
    r.append_log("2026-11-27T06:10:00.000Z [normalize] all good");
    let cycles = |b: &str| metric_in(b, "soakwatch_cycles_total", &[]).unwrap_or(0.0) as u64;
    let now = cycles(&d.metrics().await.unwrap_or_default());
    d.wait_cycles(now + 3, secs(20)).await;
    assert_eq!(d.status("fallback").await, Some(FAIL), "{}", d.stderr());

    // Copy-truncate of the new file: still failing.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .expect("open log")
        .set_len(0)
        .expect("truncate");
    let now = cycles(&d.metrics().await.unwrap_or_default());
    d.wait_cycles(now + 2, secs(20)).await;
    assert_eq!(d.status("fallback").await, Some(FAIL), "{}", d.stderr());

    // A restarted daemon resumes the soak and its log tail: still failing.
    d.signal("KILL");
    d.wait_exit(secs(5)).await;
    let mut d = r.start_daemon("watch-burst-2");
    d.wait_cycles(2, secs(30)).await;
    assert_eq!(d.status("fallback").await, Some(FAIL), "{}", d.stderr());
    stop_cleanly(&mut d).await;
}

// ---------------------------------------------------------------------------------------------
// Output conventions: labels stable across soaks, the same names as `check`, logs without
// Debug structures.

/// Every series of a /metrics body as (name, sorted labels), the info metric left out.
fn series_label_sets(body: &str) -> BTreeSet<(String, Vec<(String, String)>)> {
    soakwatch::promtext::parse(body)
        .samples
        .into_iter()
        .filter(|s| s.family != "soakwatch_soak_info")
        .map(|s| {
            let mut labels: Vec<(String, String)> = s
                .labels
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            labels.sort();
            (s.name.into_owned(), labels)
        })
        .collect()
}

/// Family -> the label names its series use.
fn label_names_by_family(body: &str) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let mut out: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for s in soakwatch::promtext::parse(body).samples {
        out.entry(s.family.into_owned())
            .or_default()
            .extend(s.labels.into_iter().map(|(k, _)| k.into_owned()));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn series_keep_their_labels_across_soaks_and_match_check_and_json_logs_hold_no_debug() {
    let mut r = Replica::healthy(3).await;
    r.add_watch_section("");
    let _feed = Trickle::start(&mut r, Duration::from_millis(400));
    let name = soakwatch::config::Config::load(&r.config)
        .expect("config")
        .soak
        .name;

    let mut bodies = Vec::new();
    let mut ids = Vec::new();
    for n in 0..2 {
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(1100)).await; // a new T0 second
        }
        let mut d = Daemon::start(
            &r.config,
            &["--new-soak", "--log-format", "json"],
            r.dir.path(),
            &format!("soak-{n}"),
        );
        let body = d.wait_cycles(3, secs(20)).await;
        ids.push(soak_label(&body));
        stop_cleanly(&mut d).await;
        // JSON logs: one object per line, numbers as fields, no Debug structure.
        let stderr = d.stderr();
        let mut new_soak_logged = false;
        for l in stderr.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            assert!(
                !l.contains("{ ") && !l.contains("Some("),
                "Debug in a log line: {l}"
            );
            if v["fields"]["message"] == "new soak" {
                new_soak_logged = true;
                assert!(v["fields"]["legacy_messages"].is_u64(), "{l}");
                assert!(v["fields"]["dlq_messages"].is_u64(), "{l}");
            }
        }
        assert!(new_soak_logged, "{stderr}");
        bodies.push(body);
    }
    assert_ne!(ids[0], ids[1], "two soaks");
    for (body, id) in bodies.iter().zip(&ids) {
        let expo = soakwatch::promtext::parse(body);
        let info: Vec<_> = expo.select("soakwatch_soak_info", &[]).collect();
        assert_eq!(info.len(), 1, "{body}");
        assert_eq!(info[0].label("soak"), Some(name.as_str()), "{body}");
        assert!(
            metric_in(
                body,
                "soakwatch_soak_start_timestamp_seconds",
                &[("soak", &name)]
            )
            .is_some_and(|t| t > 1.7e9),
            "{body}"
        );
        // The id is in the info metric only.
        let in_other_labels = expo
            .samples
            .iter()
            .filter(|s| s.family != "soakwatch_soak_info")
            .any(|s| s.labels.iter().any(|(_, v)| v == id));
        assert!(!in_other_labels, "the soak id in a label:\n{body}");
    }
    let (a, b) = (series_label_sets(&bodies[0]), series_label_sets(&bodies[1]));
    assert_eq!(
        a.symmetric_difference(&b).collect::<Vec<_>>(),
        Vec::<&(String, Vec<(String, String)>)>::new(),
        "label sets differ between soaks"
    );

    // `check --format prometheus` on the same config: the families both write carry
    // the same label names (and the same probe names).
    let config = r.config.display().to_string();
    let run = run_bin(
        &[
            "check",
            "--config",
            &config,
            "--format",
            "prometheus",
            "--window",
            "0s",
        ],
        &[],
    )
    .await;
    let check = label_names_by_family(&run.stdout);
    let daemon = label_names_by_family(&bodies[1]);
    let common: Vec<&String> = check.keys().filter(|k| daemon.contains_key(*k)).collect();
    for family in [
        "soakwatch_criterion_status",
        "soakwatch_criterion_value",
        "soakwatch_probe_up",
    ] {
        assert!(
            common.iter().any(|c| c.as_str() == family),
            "{family} missing from one side:\ncheck:\n{}\ndaemon:\n{}",
            run.stdout,
            bodies[1]
        );
    }
    for family in common {
        assert_eq!(check[family], daemon[family], "labels of {family}");
    }
    let probes = |body: &str| -> BTreeSet<(String, String)> {
        soakwatch::promtext::parse(body)
            .select("soakwatch_probe_up", &[])
            .map(|s| {
                (
                    s.label("soak").unwrap_or_default().to_string(),
                    s.label("probe").unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(probes(&run.stdout), probes(&bodies[1]));
}

/// Numeric tick labels of a report chart as plotters writes them: X ticks
/// centred under the plot (`dy="0.76em"`), Y ticks right-aligned (`dy="0.5ex"`).
fn svg_ticks(svg: &str) -> (Vec<f64>, Vec<f64>) {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for part in svg.split("<text").skip(1) {
        let Some((attrs, rest)) = part.split_once('>') else {
            continue;
        };
        let Some((text, _)) = rest.split_once("</text>") else {
            continue;
        };
        let Ok(v) = text.trim().parse::<f64>() else {
            continue;
        };
        if attrs.contains("dy=\"0.76em\"") && attrs.contains("text-anchor=\"middle\"") {
            xs.push(v);
        } else if attrs.contains("dy=\"0.5ex\"") && attrs.contains("text-anchor=\"end\"") {
            ys.push(v);
        }
    }
    (xs, ys)
}

/// Seconds in the report's "**Elapsed:** 8s of 48h planned" line.
fn elapsed_secs_in(md: &str) -> f64 {
    let line = md
        .lines()
        .find_map(|l| l.strip_prefix("**Elapsed:** "))
        .unwrap_or_else(|| panic!("no elapsed line:\n{md}"));
    let (elapsed, rest) = line.split_once(" of ").unwrap_or(("", ""));
    assert!(rest.starts_with("48h planned"), "{line}");
    elapsed
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a few seconds in seconds: {line}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_early_report_charts_the_elapsed_seconds_with_baselines_and_round_numbers() {
    let mut r = Replica::healthy(5).await;
    let w = r.add_watch_section("");
    let _feed = Trickle::start(&mut r, Duration::from_millis(400));
    let mut d = Daemon::start(&r.config, &[], r.dir.path(), "watch-early");
    let body = d.wait_cycles(6, secs(30)).await;
    let id = soak_label(&body);
    stop_cleanly(&mut d).await;

    let md = read(&w.reports.join(format!("{id}-latest.md")));
    let elapsed = elapsed_secs_in(&md);
    assert!((4.0..60.0).contains(&elapsed), "{md}");
    // No float with more than three decimals anywhere in the report.
    let long = regex::Regex::new(r"\d\.\d{4,}").expect("regex");
    assert!(!long.is_match(&md), "{:?}\n{md}", long.find(&md));

    for chart in ["lag", "dlq", "throughput", "success", "p95"] {
        let file = format!("{id}-latest-{chart}.svg");
        let svg = read(&w.reports.join(&file));
        assert!(
            svg.contains("seconds since T0"),
            "{file}: X axis not in seconds"
        );
        let (xs, ys) = svg_ticks(&svg);
        let last = xs.last().copied().unwrap_or(f64::NAN);
        // The axis ends at "now": its last tick is within one tick step of
        // the elapsed seconds, never at 48 (hours) of the plan.
        let step = xs.windows(2).map(|w| w[1] - w[0]).next().unwrap_or(1.0);
        assert!(
            last <= elapsed + 1.0 && last >= elapsed - step - 1.0,
            "{file}: X ticks {xs:?}, elapsed {elapsed}s"
        );
        assert!(!ys.is_empty(), "{file}: no Y ticks");
        if chart == "lag" || chart == "dlq" {
            assert!(
                ys.iter().all(|y| y.fract() == 0.0),
                "{file}: counts with fractional ticks {ys:?}"
            );
            let distinct: BTreeSet<i64> = ys.iter().map(|y| *y as i64).collect();
            assert_eq!(distinct.len(), ys.len(), "{file}: repeated ticks {ys:?}");
        }
    }
    // The DLQ chart draws its baseline (the config's 1 message) and where it fails.
    let dlq = read(&w.reports.join(format!("{id}-latest-dlq.svg")));
    assert!(dlq.contains("baseline 1 at T0"), "{dlq}");
    assert!(dlq.contains("fail &gt;= 2"), "{dlq}");
    assert!(
        dlq.matches("stroke=\"#555555\"").count() > 5,
        "the dashed baseline line"
    );
}
