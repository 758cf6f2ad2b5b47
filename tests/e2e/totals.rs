//! Issue 19, the totals: a dead-lettered message counts once everywhere,
//! whole-soak totals across service restarts, and a stalled consumer is
//! "database writes stop".

use std::time::Duration;

use crate::common::*;

/// Three poison messages: the DLQ stream grows by 3 and the service's
/// counter reads 3. They are three messages, not six, in every output.
#[tokio::test(flavor = "multi_thread")]
async fn three_dead_lettered_messages_read_three_in_every_output() {
    let mut r = Replica::healthy(3).await;
    for _ in 0..3 {
        r.publish_poison().await;
    }
    r.wait_for("dlq", 3.0).await;
    let run = run_check(&r.config, "json", "0s").await;
    let j = run.json();
    let dlq = j["criteria"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == "dlq"))
        .cloned()
        .expect("dlq criterion");
    assert_eq!(dlq["status"], "fail", "{dlq}");
    assert_eq!(dlq["value"], 3.0, "{dlq}");
    // Both sources are in the evidence.
    let ev = dlq["evidence"].as_str().unwrap_or_default();
    assert!(ev.contains("holds 4 messages (baseline 1: +3)"), "{ev}");
    assert!(ev.contains("3 message(s) dead-lettered"), "{ev}");
    assert!(ev.contains("counted once"), "{ev}");

    let cfg = r.config.display().to_string();
    let nagios = run_bin(
        &["check", "-c", &cfg, "--format", "nagios", "--window", "0s"],
        &[],
    )
    .await;
    assert!(nagios.stdout.contains("'dlq'=3;"), "{}", nagios.stdout);

    let prom = run_bin(
        &[
            "check",
            "-c",
            &cfg,
            "--format",
            "prometheus",
            "--window",
            "0s",
        ],
        &[],
    )
    .await;
    let value = soakwatch::promtext::parse(&prom.stdout).sum(
        "soakwatch_criterion_value",
        &[("criterion".to_string(), "dlq".to_string())],
    );
    assert_eq!(value, Some(3.0), "{}", prom.stdout);
    let _ = Duration::ZERO;
}

/// A consumer that hangs with messages waiting is "database writes stop":
/// pending while the stall seen is shorter than `watch.for.db_writes`,
/// failing once it covers it; an idle service (nothing waiting) never fails
/// `db_writes`.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_consumer_with_work_waiting_fails_db_writes_an_idle_one_never() {
    let mut r = Replica::healthy(3).await;
    r.edit_config(|t| t + "\n[watch.for]\ndb_writes = \"3s\"\n");
    // Idle: nothing waits, nothing is written: pass.
    r.admin("pause").await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let idle = run_check(&r.config, "json", "1s").await;
    assert_eq!(idle.status("db_writes"), "pass", "{}", idle.stdout);

    // Work arrives and waits: pending within the hold…
    r.publish(3).await;
    let early = run_check(&r.config, "json", "1s").await;
    let ev = early.evidence("db_writes");
    assert_eq!(early.status("db_writes"), "pending", "{ev}");
    assert!(ev.contains("3 message(s) waiting"), "{ev}");

    // …and a failure once no row has landed for the hold, as a crash would be
    // (check proves it over its window; the daemon holds it over its cycles).
    let run = run_check(&r.config, "json", "4s").await;
    let ev = run.evidence("db_writes");
    assert_eq!(run.status("db_writes"), "fail", "{}", run.stdout);
    assert!(ev.contains("none acknowledged"), "{ev}");
    assert!(ev.contains("database writes stopped"), "{ev}");
    assert_eq!(run.code, 2);

    // It resumes: rows land again and db_writes passes.
    r.admin("resume").await;
    r.wait_for("success", 6.0).await;
    let back = run_check(&r.config, "json", "1s").await;
    assert_eq!(back.status("db_writes"), "pass", "{}", back.stdout);
}

/// The soak's totals count what happened before a service restart (its
/// counters start again from zero) and after it, in every output.
#[tokio::test(flavor = "multi_thread")]
async fn whole_soak_totals_span_a_service_restart() {
    // Three messages before T0 are not the soak's.
    let mut r = Replica::healthy(3).await;
    let w = r.add_watch_section("");
    let mut d = r.start_daemon("totals");
    d.wait_cycles(2, Duration::from_secs(30)).await;
    r.publish(5).await;
    r.wait_for("success", 8.0).await;
    d.wait_metrics(
        "the five before the restart",
        Duration::from_secs(30),
        |m| {
            m.sum(
                "soakwatch_soak_processed_messages",
                &[("result".to_string(), "success".to_string())],
            ) == Some(5.0)
        },
    )
    .await;

    // The service restarts: its counters begin again at zero.
    r.kill_standin().await;
    r.start_standin().await;
    r.publish(4).await;
    r.publish_poison().await;
    r.wait_for("success", 4.0).await;
    r.wait_for("dlq", 1.0).await;
    let body = d
        .wait_metrics(
            "the totals after the restart",
            Duration::from_secs(30),
            |m| {
                m.sum("soakwatch_soak_service_restarts", &[]) == Some(1.0)
                    && m.sum(
                        "soakwatch_soak_processed_messages",
                        &[("result".to_string(), "dlq".to_string())],
                    ) == Some(1.0)
                    && m.sum(
                        "soakwatch_soak_processed_messages",
                        &[("result".to_string(), "success".to_string())],
                    ) == Some(9.0)
            },
        )
        .await;
    assert_eq!(
        metric_in(&body, "soakwatch_soak_dead_lettered_messages", &[]),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        metric_in(&body, "soakwatch_soak_success_ratio", &[]),
        Some(0.9),
        "{body}"
    );
    assert!(
        metric_in(&body, "soakwatch_soak_delivered_messages", &[]).unwrap_or(0.0) >= 10.0,
        "{body}"
    );
    assert!(
        metric_in(&body, "soakwatch_soak_rows_written", &[]).unwrap_or(0.0) >= 9.0,
        "{body}"
    );
    assert_eq!(
        metric_in(&body, "soakwatch_soak_legacy_appends", &[]),
        Some(0.0),
        "{body}"
    );

    let (code, page) = d.get("/").await.expect("the status page");
    assert_eq!(code, 200);
    assert!(page.contains("9 of 10 succeeded (90 %)"), "{page}");

    let soak = check_soak(&r.config).await;
    let t = &soak.json()["soak_totals"];
    assert_eq!(t["processed"]["success"], 9.0, "{t}");
    assert_eq!(t["processed"]["dlq"], 1.0, "{t}");
    assert_eq!(t["succeeded"], 9.0, "{t}");
    assert_eq!(t["counted"], 10.0, "{t}");
    assert_eq!(t["dead_lettered"], 1, "{t}");
    assert_eq!(t["service_restarts"], 1, "{t}");

    d.signal("TERM");
    assert_eq!(
        d.wait_exit(Duration::from_secs(30)).await,
        0,
        "{}",
        d.stderr()
    );
    let latest = std::fs::read_dir(&w.reports)
        .expect("reports")
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().ends_with("-latest.md"))
        .expect("latest report");
    let md = read(&latest.path());
    assert!(md.contains("## Totals"), "{md}");
    assert!(md.contains("9 of 10 succeeded (90 %)"), "{md}");
    assert!(md.contains("| Service restarts | 1 |"), "{md}");

    // A restarted watcher folds the stored history again: the same totals.
    let mut d = r.start_daemon("totals-again");
    d.wait_metrics(
        "the totals after a watcher restart",
        Duration::from_secs(30),
        |m| {
            m.sum(
                "soakwatch_soak_processed_messages",
                &[("result".to_string(), "success".to_string())],
            ) == Some(9.0)
                && m.sum("soakwatch_soak_service_restarts", &[]) == Some(1.0)
        },
    )
    .await;
    d.signal("TERM");
    assert_eq!(
        d.wait_exit(Duration::from_secs(30)).await,
        0,
        "{}",
        d.stderr()
    );
}
