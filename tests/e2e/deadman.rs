//! The dead-man's switch through the real daemon: a real loopback HTTP
//! receiver in healthchecks.io's shape records every ping while the daemon
//! runs, is frozen (SIGSTOP), stops, is killed, and goes blind (a test-owned
//! nats-server stopped); `validate` refuses a bad `[heartbeat] url` with
//! file, line and key; and the exported rules carry the watchdog rule and
//! the opt-in always-firing `Watchdog`, checked by promtool.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::export::promtool;

/// The check's token: the path secret that must never be logged.
const TOKEN: &str = "hc-token-3f9a1c7e55";

/// One ping as the receiver saw it.
#[derive(Debug, Clone)]
struct Hit {
    /// `start`, `success`, `fail`, or the path when it is none of them.
    signal: String,
    rid: Option<String>,
    body: String,
}

type Hits = Arc<Mutex<Vec<Hit>>>;

/// A healthchecks.io-shaped receiver on loopback: `/ping/<TOKEN>[/start|/fail]`.
/// The first `refuse_first` requests are answered 500 (still recorded).
async fn receiver(refuse_first: usize) -> (u16, Hits) {
    use axum::extract::{OriginalUri, RawQuery};
    use axum::http::StatusCode;
    let hits: Hits = Default::default();
    let seen = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(
        move |OriginalUri(uri): OriginalUri, RawQuery(q): RawQuery, body: String| {
            let (h, seen) = (h.clone(), seen.clone());
            async move {
                let base = format!("/ping/{TOKEN}");
                let standby = format!("{base}-standby");
                let signal = match (
                    uri.path().strip_prefix(&standby),
                    uri.path().strip_prefix(&base),
                ) {
                    (Some(rest), _) => format!("standby{rest}"),
                    (_, Some("") | Some("/")) => "success".to_string(),
                    (_, Some("/start")) => "start".to_string(),
                    (_, Some("/fail")) => "fail".to_string(),
                    _ => uri.path().to_string(),
                };
                let rid = q.and_then(|q| {
                    q.split('&')
                        .find_map(|kv| kv.strip_prefix("rid=").map(str::to_string))
                });
                h.lock().expect("lock").push(Hit { signal, rid, body });
                if seen.fetch_add(1, Ordering::SeqCst) < refuse_first {
                    (StatusCode::INTERNAL_SERVER_ERROR, "try later")
                } else {
                    (StatusCode::OK, "OK")
                }
            }
        },
    );
    (serve_loopback(app).await.port(), hits)
}

fn hits(h: &Hits) -> Vec<Hit> {
    h.lock().expect("lock").clone()
}

/// Waits until a hit after index `from` satisfies `pred`; returns its index.
async fn wait_hit(
    h: &Hits,
    from: usize,
    d: &mut Daemon,
    what: &str,
    pred: impl Fn(&Hit) -> bool,
) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(i) = hits(h).iter().skip(from).position(&pred) {
            return from + i;
        }
        d.assert_running(&format!("waiting for {what}"));
        assert!(
            std::time::Instant::now() < deadline,
            "no {what}; pings: {:?}\n{}",
            hits(h),
            d.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn heartbeat_section(port: u16) -> String {
    format!("\n[heartbeat]\nurl = \"http://127.0.0.1:{port}/ping/{TOKEN}\"\nevery = \"1s\"\n")
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<usize> = s.split('-').map(str::len).collect();
    parts == [8, 4, 4, 4, 12] && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_deadman_pings_start_and_success_goes_quiet_when_frozen_or_killed_and_signs_off() {
    let r = Replica::healthy(2).await;
    // The first ping is refused: the daemon logs it, without the token.
    let (port, h) = receiver(1).await;
    r.add_watch_section(&heartbeat_section(port));
    let mut d = r.start_daemon("deadman");

    let start = wait_hit(&h, 0, &mut d, "a /start", |x| x.signal == "start").await;
    let first_ok = wait_hit(&h, start, &mut d, "a success ping", |x| {
        x.signal == "success"
    })
    .await;
    let all = hits(&h);
    assert_eq!(start, 0, "/start comes first: {all:?}");
    let rid = all[start].rid.clone().expect("a run id");
    assert!(is_uuid(&rid), "{rid}");
    assert_eq!(all[first_ok].rid.as_deref(), Some(rid.as_str()));
    let soak = all[start]
        .body
        .split_whitespace()
        .nth(3)
        .expect("the soak id in the body")
        .to_string();
    assert!(all[first_ok].body.contains(&soak), "{all:?}");

    // Frozen: the process sends nothing; the receiver's silence is the switch.
    d.wait_cycles(3, Duration::from_secs(30)).await;
    d.signal("STOP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let frozen_at = hits(&h).len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        hits(&h).len(),
        frozen_at,
        "no ping while frozen: {:?}",
        hits(&h)
    );
    d.signal("CONT");
    wait_hit(&h, frozen_at, &mut d, "a success ping after SIGCONT", |x| {
        x.signal == "success"
    })
    .await;

    // A clean stop: the last ping is the sign-off with the summary.
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(60)).await, 0);
    let all = hits(&h);
    let last = all.last().expect("pings");
    assert_eq!(last.signal, "success", "{all:?}");
    assert!(
        last.body.contains("stopped") && last.body.contains(&soak),
        "{}",
        last.body
    );
    let log = d.stderr();
    assert!(
        !log.contains(TOKEN),
        "the token leaked into the log:\n{log}"
    );
    assert!(
        log.contains("ping not delivered") && log.contains("/***"),
        "the refused ping is logged with the URL hidden:\n{log}"
    );

    // Killed: a restart resumes the soak (the same run id), then nothing more.
    let before = hits(&h).len();
    let mut d = r.start_daemon("deadman-2");
    let again = wait_hit(&h, before, &mut d, "a /start on resume", |x| {
        x.signal == "start"
    })
    .await;
    assert_eq!(hits(&h)[again].rid.as_deref(), Some(rid.as_str()));
    wait_hit(&h, again, &mut d, "a success ping", |x| {
        x.signal == "success"
    })
    .await;
    d.signal("KILL");
    d.wait_exit(Duration::from_secs(30)).await;
    let all = hits(&h);
    assert!(
        !all[before..].iter().any(|x| x.body.contains("stopped")),
        "a killed daemon signs nothing off: {all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blinded_daemon_pings_fail_with_the_reason_and_success_once_it_sees_again() {
    let mut nats = NatsServer::start().await;
    let mut r = Replica::provisioned_on(&nats.url).await;
    r.start_standin_on(&nats.url).await;
    r.publish(2).await;
    r.wait_for("success", 2.0).await;
    let (port, h) = receiver(0).await;
    r.add_watch_section(&heartbeat_section(port));
    let mut d = r.start_daemon("deadman-blind");
    let ok = wait_hit(&h, 0, &mut d, "a success ping", |x| x.signal == "success").await;

    // Blind: the watched NATS is gone, every stream probe fails.
    nats.stop().await;
    let fail = wait_hit(&h, ok, &mut d, "a /fail", |x| x.signal == "fail").await;
    let body = hits(&h)[fail].body.clone();
    assert!(
        body.contains("blind") && body.contains("probe"),
        "the reason in the body: {body}"
    );
    assert!(hits(&h)[fail].rid.as_deref().is_some_and(is_uuid));

    // Seeing again: a success ping says so.
    nats.restart().await;
    wait_hit(&h, fail, &mut d, "a success ping after NATS is back", |x| {
        x.signal == "success"
    })
    .await;
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(60)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_leader_pings_its_url_a_standby_pings_its_own_and_a_takeover_starts_again() {
    let r = Replica::healthy(2).await;
    let (port, h) = receiver(0).await;
    let bucket = format!("swdm_{}", r.names.tag);
    r.add_watch_section(&format!(
        "{}standby_url = \"http://127.0.0.1:{port}/ping/{TOKEN}-standby\"\n\n\
         [state]\nbackend = \"jetstream\"\nnats_url = \"{}\"\nbucket = \"{bucket}\"\n\
         replicas = 1\nlease_intervals = 3\nrequest_timeout = \"800ms\"\n",
        heartbeat_section(port),
        nats_url()
    ));
    let mut a = r.start_daemon("lead-a");
    let mut b = r.start_daemon("lead-b");
    let start = wait_hit(&h, 0, &mut a, "the leader's /start", |x| {
        x.signal == "start"
    })
    .await;
    wait_hit(&h, 0, &mut b, "a standby's ping", |x| x.signal == "standby").await;
    wait_hit(&h, start, &mut a, "the leader's success", |x| {
        x.signal == "success"
    })
    .await;
    let all = hits(&h);
    let rid = all[start].rid.clone().expect("run id");
    // The leader's URL hears only the leader (with the run id), the
    // standby's only the standby (no run: it watches no soak).
    for x in &all {
        match x.signal.as_str() {
            "start" | "success" => assert_eq!(x.rid.as_deref(), Some(rid.as_str()), "{all:?}"),
            "standby" => assert_eq!(x.rid, None, "{all:?}"),
            other => panic!("unexpected ping {other}: {all:?}"),
        }
    }

    // The leader is killed: the standby takes over and announces the same soak.
    let a_leads = a
        .metrics()
        .await
        .map(|m| soakwatch::promtext::parse(&m).sum("soakwatch_leader", &[]) == Some(1.0))
        .unwrap_or(false);
    let (mut old, mut new) = if a_leads { (a, b) } else { (b, a) };
    let before = hits(&h).len();
    old.signal("KILL");
    old.wait_exit(Duration::from_secs(10)).await;
    let again = wait_hit(&h, before, &mut new, "the new leader's /start", |x| {
        x.signal == "start"
    })
    .await;
    assert_eq!(hits(&h)[again].rid.as_deref(), Some(rid.as_str()));
    new.signal("TERM");
    assert_eq!(new.wait_exit(Duration::from_secs(60)).await, 0);
    let last = hits(&h).last().cloned().expect("pings");
    assert!(last.body.contains("stopped"), "{last:?}");
    // The test's state is removed from the shared NATS.
    if let Ok(c) = async_nats::connect(nats_url()).await {
        let js = async_nats::jetstream::new(c);
        let _ = js.delete_key_value(&bucket).await;
        let _ = js.delete_stream(format!("{bucket}_cycles")).await;
        let _ = js.delete_stream(format!("{bucket}_snapshots")).await;
    }
}

#[tokio::test]
async fn validate_refuses_a_bad_heartbeat_url_with_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shipped = read(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/checks.toml"
    )));
    assert!(
        shipped.contains("[heartbeat]\n"),
        "documented in checks.toml"
    );
    for (bad, says) in [
        (format!("ftp://hc.example/{TOKEN}"), "scheme `ftp`"),
        (format!("https://hc.example/{TOKEN}?x=1"), "query"),
    ] {
        let cfg = dir.path().join("checks.toml");
        let text = shipped.replace("[heartbeat]\n", &format!("[heartbeat]\nurl = \"{bad}\"\n"));
        let text = text.replacen("url = \"${SOAKWATCH_HEARTBEAT_URL:-}\"\n", "", 1);
        std::fs::write(&cfg, &text).expect("write");
        let line = text
            .lines()
            .position(|l| l.starts_with(&format!("url = \"{bad}\"")))
            .expect("the line")
            + 1;
        let run = run_bin(&["validate", "--config", &cfg.display().to_string()], &[]).await;
        assert_eq!(run.code, 3, "{bad}: {}", run.stderr);
        let want = format!("checks.toml:{line}: heartbeat.url: ");
        assert!(
            run.stderr.contains(&want) && run.stderr.contains(says),
            "{want} {says}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains(TOKEN), "{}", run.stderr);
    }
}

fn rule<'a>(v: &'a Value, alert: &str) -> &'a Value {
    v["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .find(|r| r["alert"] == alert)
        .unwrap_or_else(|| panic!("no rule {alert} in {v:#}"))
}

#[tokio::test]
async fn the_rules_carry_a_watchdog_rule_and_an_opt_in_always_firing_watchdog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/checks.toml"));
    let cfg = config.display().to_string();
    let plain = dir.path().join("plain.json");
    let run = run_bin(
        &[
            "export",
            "prometheus-rules",
            "--config",
            &cfg,
            "--out",
            &plain.display().to_string(),
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: Value = serde_json::from_str(&read(&plain)).expect("json");
    assert!(
        !read(&plain).contains("\"Watchdog\""),
        "the always-firing alert is opt-in"
    );
    let _ = rule(&v, "soakwatch_stale");

    let rules = dir.path().join("rules.json");
    let run = run_bin(
        &[
            "export",
            "prometheus-rules",
            "--config",
            &cfg,
            "--watchdog-alert",
            "--out",
            &rules.display().to_string(),
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: Value = serde_json::from_str(&read(&rules)).expect("json");
    let (ok, out) = promtool(dir.path(), &["check", "rules", "rules.json"]).await;
    assert!(ok, "promtool check rules:\n{out}");
    let stale = rule(&v, "soakwatch_stale");
    let watchdog = rule(&v, "Watchdog");
    let exp = |r: &Value| json!({"exp_labels": r["labels"], "exp_annotations": r["annotations"]});
    // The shipped interval is 10 s: stale after 30 s, held 1 m.
    let info = "soakwatch_soak_info{soak=\"phase-b-staging\",soak_id=\"x\",job=\"soakwatch\",instance=\"w:9464\"}";
    let last = "soakwatch_last_sample_timestamp_seconds{job=\"soakwatch\",instance=\"w:9464\"}";
    let tests = json!({
        "rule_files": ["rules.json"],
        "evaluation_interval": "15s",
        "tests": [
            {
                "name": "the daemon samples, then its cycles stop while it still answers",
                "interval": "15s",
                // A fresh timestamp every 15 s for 5 m, then stuck at 300.
                "input_series": [
                    {"series": info, "values": "1x60"},
                    {"series": last, "values": "0+15x20 300x40"},
                ],
                "alert_rule_test": [
                    {"eval_time": "4m", "alertname": "soakwatch_stale", "exp_alerts": []},
                    {"eval_time": "7m", "alertname": "soakwatch_stale", "exp_alerts": [exp(stale)]},
                    {"eval_time": "4m", "alertname": "Watchdog", "exp_alerts": [exp(watchdog)]},
                ],
            },
            {
                "name": "the soak is signed off: no more cycles, by design",
                "interval": "15s",
                "input_series": [
                    {"series": info, "values": "1x60"},
                    {"series": last, "values": "0+15x20 300x40"},
                    {"series": "soakwatch_soak_ended{soak=\"phase-b-staging\",job=\"soakwatch\",instance=\"w:9464\"}", "values": "0x20 1x40"},
                ],
                "alert_rule_test": [
                    {"eval_time": "7m", "alertname": "soakwatch_stale", "exp_alerts": []},
                    {"eval_time": "14m", "alertname": "soakwatch_stale", "exp_alerts": []},
                ],
            },
            {
                "name": "the daemon is gone: its series end",
                "interval": "15s",
                "input_series": [
                    {"series": info, "values": "1x20"},
                    {"series": last, "values": "0+15x20"},
                ],
                "alert_rule_test": [
                    {"eval_time": "4m", "alertname": "soakwatch_stale", "exp_alerts": []},
                    {"eval_time": "12m", "alertname": "soakwatch_stale", "exp_alerts": [exp(stale)]},
                ],
            },
        ],
    });
    std::fs::write(
        dir.path().join("tests.json"),
        serde_json::to_string_pretty(&tests).expect("json"),
    )
    .expect("write");
    let (ok, out) = promtool(dir.path(), &["test", "rules", "tests.json"]).await;
    assert!(ok, "promtool test rules:\n{out}");
}
