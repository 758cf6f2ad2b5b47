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
