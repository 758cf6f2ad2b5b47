//! The soak's edges through the real daemon against a replica on real NATS and
//! PostgreSQL: its first minute after T0 (coverage, a DLQ burst, the log's
//! pre-cutover lines, a watcher started late) and its end (the sign-off at
//! T0 + duration, a frozen verdict that a restart does not reopen).
//!
//! Waits poll with generous deadlines; what is asserted is an outcome or an
//! order of events, never a duration.

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use soakwatch::verdict::{CriterionId, Status};

const PASS: f64 = 0.0;
const FAIL: f64 = 2.0;
const UNKNOWN: f64 = 3.0;
/// A criterion still waiting for its evidence (`Status::Pending`).
const PENDING: f64 = 4.0;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// T0 is when the daemon starts: the replica's `started_at` is dropped.
fn t0_at_start(r: &Replica) {
    r.edit_config(|t| {
        t.lines()
            .filter(|l| !l.starts_with("started_at = "))
            .map(|l| format!("{l}\n"))
            .collect()
    });
}

/// The shipped coverage rule (95 %) instead of the fast daemon's 0.5.
fn shipped_coverage(r: &Replica) {
    r.edit_config(|t| t.replace("min_coverage = 0.5\n", "min_coverage = 0.95\n"));
}

fn soak_duration(r: &Replica, d: &str) {
    r.edit_config(|t| t.replace("duration = \"48h\"\n", &format!("duration = \"{d}\"\n")));
}

/// Every criterion's whole-soak status in a /metrics body.
fn soak_statuses(body: &str) -> Vec<(String, f64)> {
    let expo = soakwatch::promtext::parse(body);
    expo.select("soakwatch_criterion_soak_status", &[])
        .map(|s| (s.label("criterion").unwrap_or("").to_string(), s.value))
        .collect()
}

async fn stop(d: &mut Daemon) {
    d.signal("TERM");
    assert_eq!(d.wait_exit(secs(60)).await, 0, "{}", d.stderr());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_soak_watched_from_t0_is_covered_from_its_first_cycle() {
    let mut r = Replica::healthy(3).await;
    let _feed = Trickle::start(&mut r, Duration::from_millis(300));
    t0_at_start(&r);
    r.add_watch_section("");
    shipped_coverage(&r);
    // A cycle made late by a loaded test machine is not a sampling gap here:
    // what is judged is the first minute's coverage, not the machine.
    r.edit_config(|t| t.replace("max_gap = \"3s\"\n", "max_gap = \"10s\"\n"));
    let mut d = r.start_daemon("t0");
    // Cycle 1 is the preflight's sample at T0; at every age after it, no
    // criterion is unknown for coverage and the verdict so far holds.
    for n in 1..=6u64 {
        let body = d.wait_cycles(n, secs(60)).await;
        let unknown: Vec<String> = soak_statuses(&body)
            .into_iter()
            .filter(|(_, v)| *v == UNKNOWN)
            .map(|(c, _)| c)
            .collect();
        assert!(unknown.is_empty(), "cycle {n}: unknown {unknown:?}\n{body}");
        // Pass, or still waiting for evidence: on a loaded machine the
        // stand-in may write no row between two samples (`db_writes`
        // pending), which is no coverage gap and no failure.
        let verdict = metric_in(&body, "soakwatch_soak_verdict", &[]);
        assert!(
            verdict == Some(PASS) || verdict == Some(PENDING),
            "cycle {n}: verdict {verdict:?}\n{body}"
        );
        assert_eq!(
            metric_in(&body, "soakwatch_soak_unobserved_head_seconds", &[]),
            Some(0.0)
        );
    }
    let run = check_soak(&r.config).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    stop(&mut d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_watcher_names_the_head_it_did_not_see() {
    let r = Replica::healthy(3).await;
    let t0 = chrono::Utc::now() - chrono::Duration::minutes(10);
    r.edit_config(|t| {
        t.lines()
            .map(|l| {
                if l.starts_with("started_at = ") {
                    format!(
                        "started_at = \"{}\"\n",
                        t0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )
                } else {
                    format!("{l}\n")
                }
            })
            .collect()
    });
    r.add_watch_section("");
    let mut d = r.start_daemon("late");
    let body = d.wait_cycles(2, secs(60)).await;
    let head = metric_in(&body, "soakwatch_soak_unobserved_head_seconds", &[]).unwrap_or(0.0);
    assert!((590.0..700.0).contains(&head), "head {head}\n{body}");
    let (_, page) = d.get("/").await.expect("the page answers");
    assert!(page.contains("Watched from"), "{page}");
    assert!(
        page.contains("after T0: the head was not observed"),
        "{page}"
    );
    let run = check_soak(&r.config).await;
    let json = run.json();
    assert!(
        json["soak"].as_str().unwrap_or("").contains("watched from"),
        "{json}"
    );
    let secs_in_json = json["soak_edges"]["unobserved_head_secs"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(secs_in_json >= 590.0, "{json}");
    stop(&mut d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dlq_burst_right_after_t0_fails_dlq_at_the_first_cycle_that_sees_it() {
    let mut r = Replica::healthy(3).await;
    t0_at_start(&r);
    let w = r.add_watch_section("");
    let mut d = r.start_daemon("burst");
    d.wait_cycles(1, secs(60)).await;
    for _ in 0..15 {
        r.publish_poison().await;
    }
    d.wait_status("dlq", "fail", secs(60), |s| s == FAIL).await;
    stop(&mut d).await;
    // From the stored history: the first cycle whose DLQ growth since T0
    // exceeds the limit (10 a minute) is where `dlq` failed, with no hold.
    let store = soakwatch::state::store::Store::open_read_only(&w.state)
        .await
        .expect("state");
    let soak = store.active_soak().await.expect("read").expect("a soak");
    let cycles = store.cycles(&soak.meta.id).await.expect("cycles");
    store.close().await;
    let first = &cycles[0];
    let grown = |c: &soakwatch::soak::record::CycleRecord| {
        let by_seq = c.dlq_last_seq.unwrap_or(0) as f64 - first.dlq_last_seq.unwrap_or(0) as f64;
        let by_counter = c.dlq_counter.unwrap_or(0.0) - first.dlq_counter.unwrap_or(0.0);
        by_seq.max(by_counter)
    };
    let seen = cycles
        .iter()
        .find(|c| grown(c) > 10.0)
        .expect("a cycle saw the burst");
    assert!(
        seen.at - first.at <= chrono::Duration::seconds(60),
        "the burst landed within the first minute"
    );
    let cfg = soakwatch::config::Config::load(&r.config).expect("config");
    let (_, summary) = soakwatch::watch::load_summary(&cfg).await.expect("summary");
    let fail = summary
        .spans
        .iter()
        .find(|s| s.criterion == CriterionId::Dlq && s.status == Status::Fail)
        .expect("a dlq fail span");
    assert_eq!(
        fail.start, seen.at,
        "dlq failed at the first cycle that saw the burst"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn log_lines_from_before_t0_never_count() {
    let r = Replica::healthy(3).await;
    let fallback = format!(
        "2026-11-27T06:00:00.000Z [normalize] Found existing HRV consumer on {}: normalize-hrv-durable",
        r.names.legacy_stream
    );
    // The pre-cutover log already says it bound the legacy stream.
    r.append_log(&fallback);
    t0_at_start(&r);
    r.add_watch_section("");
    let mut d = r.start_daemon("log-1");
    let body = d.wait_cycles(3, secs(60)).await;
    assert_eq!(criterion_status(&body, "fallback"), Some(PASS), "{body}");
    // A fallback after T0 fails at once, and stays counted across a restart.
    r.append_log(&fallback);
    d.wait_status("fallback", "fail", secs(30), |s| s == FAIL)
        .await;
    stop(&mut d).await;
    let mut d = r.start_daemon("log-2");
    d.wait_cycles(1, secs(60)).await;
    assert_eq!(d.status("fallback").await, Some(FAIL));
    stop(&mut d).await;
}

/// A webhook receiver that records each notification's `kind`.
async fn kinds_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let g = g.clone();
            async move {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                if let Ok(mut k) = g.lock() {
                    k.push(v["kind"].as_str().unwrap_or("").to_string());
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let addr = serve_loopback(app).await;
    (format!("http://{addr}/hook"), got)
}

fn sign_offs(got: &std::sync::Mutex<Vec<String>>) -> usize {
    got.lock()
        .map(|k| k.iter().filter(|k| *k == "sign_off").count())
        .unwrap_or(0)
}

fn final_report(reports: &Path) -> String {
    let f = std::fs::read_dir(reports)
        .expect("reports")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-final.md"))
        .expect("a final report");
    read(&f)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_soak_signs_off_at_its_end_and_a_restart_does_not_reopen_it() {
    let mut r = Replica::healthy(3).await;
    let _feed = Trickle::start(&mut r, Duration::from_millis(300));
    t0_at_start(&r);
    soak_duration(&r, "6s");
    // This test is about the end, not the lag: on a loaded 2-core machine
    // running the whole suite, the stand-in service fell 14 messages
    // behind for 2 s, a real (and correct) consumer_lag failure.
    r.edit_config(|t| {
        assert!(t.contains("lag_fail = 10\n"), "the replica's lag threshold");
        t.replace("lag_warn = 5\n", "lag_warn = 500\n")
            .replace("lag_fail = 10\n", "lag_fail = 1000\n")
    });
    let (url, got) = kinds_receiver().await;
    let w = r.add_watch_section(&format!(
        "at_end = \"exit\"\n\n[[alerts.routes]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{url}\"\nseverities = [\"critical\"]\n"
    ));
    let mut d = r.start_daemon("end-1");
    // The daemon ends the soak by itself, exit 0.
    assert_eq!(d.wait_exit(secs(90)).await, 0, "{}", d.stderr());
    assert!(d.stderr().contains("soak signed off"), "{}", d.stderr());
    let report = final_report(&w.reports);
    assert!(report.contains("**Signed off:**"), "{report}");
    assert!(report.contains("APPROVED FOR PRODUCTION"), "{report}");
    // One sign-off, even to a route that takes only critical alerts.
    assert_eq!(sign_offs(&got), 1);
    let first = check_soak(&r.config).await;
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let ended = first.json()["soak_edges"]["ended"].clone();
    assert_eq!(ended["verdict"], "pass", "{}", first.stdout);
    // Minutes later in a real soak, seconds here: a restarted watcher says
    // the soak ended and how to start the next one; nothing is reopened.
    tokio::time::sleep(secs(3)).await;
    let mut d = r.start_daemon("end-2");
    assert_eq!(d.wait_exit(secs(60)).await, 0, "{}", d.stderr());
    assert!(d.stderr().contains("has ended"), "{}", d.stderr());
    assert!(d.stderr().contains("--new-soak"), "{}", d.stderr());
    let again = check_soak(&r.config).await;
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert_eq!(again.json()["soak_edges"]["ended"], ended);
    assert_eq!(sign_offs(&got), 1, "the sign-off is sent once");
    let report = run_bin(
        &["report", "--config", &r.config.display().to_string()],
        &[],
    )
    .await;
    assert_eq!(report.code, 0, "{}", report.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_the_end_the_daemon_serves_the_frozen_verdict_until_sigterm() {
    let mut r = Replica::healthy(3).await;
    let _feed = Trickle::start(&mut r, Duration::from_millis(300));
    t0_at_start(&r);
    soak_duration(&r, "5s");
    r.add_watch_section("");
    let mut d = r.start_daemon("serve");
    let body = d
        .wait_metrics("the sign-off", secs(90), |m| {
            m.sum("soakwatch_soak_ended", &[]) == Some(1.0)
        })
        .await;
    let cycles = metric_in(&body, "soakwatch_cycles_total", &[]).unwrap_or(0.0);
    // Still up, and no more cycles are taken.
    tokio::time::sleep(secs(3)).await;
    d.assert_running("after the sign-off");
    let later = d.metrics().await.expect("still serving");
    assert_eq!(
        metric_in(&later, "soakwatch_cycles_total", &[]),
        Some(cycles)
    );
    let (_, page) = d.get("/").await.expect("the page answers");
    assert!(page.contains("signed off"), "{page}");
    stop(&mut d).await;
}
