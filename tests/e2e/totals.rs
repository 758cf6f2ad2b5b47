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
