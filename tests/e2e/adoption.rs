//! A team adopting soakwatch on its own service: configs that say only what
//! the service has, paths that mean the config's folder, a preflight that
//! keeps a monitoring typo out of the soak's record.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

/// `soakwatch` run from `cwd` (not the repo root).
async fn run_in(cwd: &std::path::Path, args: &[&str]) -> Run {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(BIN)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("soakwatch finished within 60 s")
    .expect("soakwatch ran");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn relative_paths_in_the_config_mean_its_folder_from_any_cwd() {
    let mut r = Replica::healthy(3).await;
    let (log, env) = (r.files.log_file.clone(), r.files.env_file.clone());
    r.edit_config(|t| {
        t.replace(&toml_path(&log), "\"normalize-service.log\"")
            .replace(&toml_path(&env), "\"./sub/../normalize-service.env\"")
    });
    let text = read(&r.config);
    assert!(text.contains("\"normalize-service.log\""), "{text}");
    assert!(!text.contains(&log.display().to_string()), "{text}");
    r.publish(2).await;
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let config = r.config.display().to_string();
    let run = run_in(
        elsewhere.path(),
        &[
            "check", "--config", &config, "--format", "json", "--window", "0s",
        ],
    )
    .await;
    // The log and env probes found their files next to the config, not in the cwd.
    let j = run.json();
    for id in ["fallback", "consumer_config"] {
        let c = j["criteria"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["id"] == id))
            .unwrap_or_else(|| panic!("{id} in {}", run.stdout));
        assert_ne!(c["status"], "unknown", "{id}: {c}");
    }
    // A missing relative file is reported with the absolute path it was looked for at.
    r.edit_config(|t| t.replace("\"normalize-service.log\"", "\"logs/missing.log\""));
    let run = run_in(
        elsewhere.path(),
        &[
            "check", "--config", &config, "--format", "text", "--window", "0s",
        ],
    )
    .await;
    let want = r.dir.path().join("logs/missing.log").display().to_string();
    assert!(
        run.stdout.contains(&want) || run.stderr.contains(&want),
        "{want} not named:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    // `validate` names the config file by its absolute path.
    r.edit_config(|t| t.replace("[soak]", "[soak]\nbogus_key = 1"));
    let rel = run_in(r.dir.path(), &["validate", "--config", "checks.toml"]).await;
    let abs = format!("{}:", r.config.display());
    assert!(
        rel.stdout.contains(&abs) || rel.stderr.contains(&abs),
        "{}{}",
        rel.stdout,
        rel.stderr
    );
}

/// Polls `f` until it holds or `timeout` passes.
async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_soak_waits_for_its_preflight_and_a_dead_service_at_start_is_not_a_failed_soak() {
    // The service is not up yet (no /metrics, no log file): the daemon says
    // what is wrong and records nothing.
    let mut r = Replica::provisioned().await;
    r.add_watch_section("");
    // No [soak] started_at: T0 is "now", i.e. when the preflight passes
    // (with a started_at, T0 stays the cutover's and only recording waits).
    r.edit_config(|t| {
        t.lines()
            .filter(|l| !l.starts_with("started_at"))
            .collect::<Vec<_>>()
            .join("\n")
    });
    let config = r.config.display().to_string();
    let mut d = Daemon::start(&r.config, &[], r.dir.path(), "preflight");
    assert!(
        eventually(Duration::from_secs(20), || d
            .stderr()
            .contains("preflight failed"))
        .await,
        "{}",
        d.stderr()
    );
    let err = d.stderr();
    assert!(
        err.contains("problem=metrics: GET http://127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("problem=log: "), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert!(!err.contains("new soak"), "{err}");
    d.assert_running("preflight failing");
    let before = run_bin(
        &["check", "--soak", "--config", &config, "--format", "json"],
        &[],
    )
    .await;
    assert_ne!(before.code, 0, "no soak yet: {}", before.stdout);

    // The service comes up: the preflight passes, T0 is then, and
    // service_up never failed (no incident, no rollback trigger).
    let up_at = chrono::Utc::now();
    r.start_standin().await;
    r.publish(3).await;
    d.wait_cycles(3, Duration::from_secs(30)).await;
    let err = d.stderr();
    assert!(err.contains("preflight passed"), "{err}");
    d.signal("TERM");
    assert_eq!(
        d.wait_exit(Duration::from_secs(20)).await,
        0,
        "{}",
        d.stderr()
    );
    let run = run_bin(
        &["check", "--soak", "--config", &config, "--format", "json"],
        &[],
    )
    .await;
    let j = run.json();
    let service_up = j["criteria"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == "service_up"))
        .cloned()
        .unwrap_or_default();
    // A few seconds of soak are too little coverage for a pass; what matters
    // is that the outage before T0 left no failure in the record.
    assert_ne!(service_up["status"], "fail", "{}", run.stdout);
    let evidence = service_up["evidence"].as_str().unwrap_or_default();
    assert!(evidence.contains("soak: 0 fail span(s)"), "{}", run.stdout);
    let soak = j["soak"].as_str().unwrap_or_default().to_string();
    // "name (soak <id>, ...)": the id ends with T0 as YYYYMMDDTHHMMSSZ.
    let id = soak
        .split("(soak ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or_default();
    let t0 = id.rsplit('-').next().unwrap_or_default();
    let t0 = chrono::NaiveDateTime::parse_from_str(t0, "%Y%m%dT%H%M%SZ")
        .unwrap_or_else(|e| panic!("T0 in soak id {soak}: {e}"))
        .and_utc();
    assert!(
        // The id keeps whole seconds of T0.
        t0 + chrono::Duration::seconds(1) > up_at,
        "T0 {t0} is before the service came up at {up_at}\n{}",
        d.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_dry_run_checks_the_files_and_the_restart_command_exist() {
    let r = Replica::healthy(1).await;
    r.edit_config(|t| {
        t + &format!(
            "\n[rollback]\nmode = \"dry_run\"\nenv_file = {env}\nrestart_command = [\"true\"]\n\
             log_file = {log}\n",
            env = toml_path(&r.files.env_file),
            log = toml_path(&r.files.log_file),
        )
    });
    let config = r.config.display().to_string();
    let ok = run_bin(&["rollback", "--dry-run", "--config", &config], &[]).await;
    assert_eq!(ok.code, 0, "{}\n{}", ok.stdout, ok.stderr);
    let env = r.files.env_file.clone();
    r.edit_config(|t| {
        t.replacen(&toml_path(&env), "\"missing.env\"", usize::MAX)
            .replace(
                "restart_command = [\"true\"]",
                "restart_command = [\"/no/such/restart\"]",
            )
    });
    let bad = run_bin(&["rollback", "--dry-run", "--config", &config], &[]).await;
    assert_ne!(bad.code, 0, "{}\n{}", bad.stdout, bad.stderr);
    let out = format!("{}{}", bad.stdout, bad.stderr);
    let missing = r.dir.path().join("missing.env").display().to_string();
    assert!(out.contains(&missing), "{out}");
    assert!(out.contains("/no/such/restart"), "{out}");
}

/// `text` without the `[name]` table (and its sub-tables such as `[name.expect]`).
fn without_section(text: &str, name: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            let header = t.trim_matches(|c| c == '[' || c == ']');
            skipping = header == name || header.starts_with(&format!("{name}."));
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_with_only_nats_and_metrics_gets_a_verdict_with_the_rest_not_configured() {
    let mut r = Replica::healthy(3).await;
    r.edit_config(|t| {
        let t = without_section(&t, "database");
        let t = without_section(&t, "log");
        without_section(&t, "service_env")
    });
    let text = read(&r.config);
    assert!(
        !text.contains("[database]") && !text.contains("[log]"),
        "{text}"
    );
    let run = r.check("2s", true).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let j = run.json();
    assert_eq!(j["overall"], "pass", "{}", run.stdout);
    let status = |id: &str| {
        j["criteria"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["id"] == id))
            .map(|c| c["status"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    assert_eq!(status("db_writes"), "not_configured", "{}", run.stdout);
    assert_eq!(status("db_integrity"), "not_configured", "{}", run.stdout);
    // fallback and consumer_config still judge what they can: /metrics and NATS.
    assert_eq!(status("fallback"), "pass", "{}", run.stdout);
    assert_eq!(status("consumer_config"), "pass", "{}", run.stdout);
    // The probes that did not run are not listed as failed.
    let probes = j["probes"].as_object().cloned().unwrap_or_default();
    assert!(
        !probes.contains_key("database") && !probes.contains_key("log"),
        "{probes:?}"
    );
    assert!(probes.values().all(|p| p["ok"] == true), "{probes:?}");

    // The daemon's preflight passes without them, and the soak is recorded.
    r.add_watch_section("");
    let config = r.config.display().to_string();
    let mut d = Daemon::start(&r.config, &["--max-cycles", "3"], r.dir.path(), "minimal");
    assert_eq!(
        d.wait_exit(Duration::from_secs(30)).await,
        0,
        "{}",
        d.stderr()
    );
    assert!(d.stderr().contains("preflight passed"), "{}", d.stderr());
    let soak = run_bin(
        &["check", "--soak", "--config", &config, "--format", "text"],
        &[],
    )
    .await;
    let db_line = soak
        .stdout
        .lines()
        .find(|l| l.contains(" db_writes "))
        .unwrap_or_default();
    assert!(
        db_line.starts_with("N/A") || db_line.starts_with("NOT_CONFIGURED"),
        "{}",
        soak.stdout
    );
    // Nagios output leaves out what is not configured instead of calling it 0.
    let nagios = run_bin(
        &[
            "check", "--config", &config, "--format", "nagios", "--window", "0s",
        ],
        &[],
    )
    .await;
    assert!(!nagios.stdout.contains("'db_writes'="), "{}", nagios.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_e2e_probe_publishes_the_configured_payload_and_checks_only_what_is_configured() {
    use soakwatch::rollback::{run_round_trip, RoundTripConfig};
    let r = Replica::healthy(1).await;
    let mut cfg =
        RoundTripConfig::new(&nats_url(), &r.names.hrv_subject, &r.db_url, &r.names.table);
    cfg.timeout = Duration::from_secs(10);
    // Another service's message shape (here the same fields, written by hand),
    // and no derived column to check.
    cfg.payload = Some(
        r#"{"payload": {"capturedAt": "{captured_at}", "rMSSD": {value}, "date": "{date}", "userId": "{user_id}"}, "eventId": "{event_id}"}"#
            .into(),
    );
    cfg.derived_column = String::new();
    assert_eq!(cfg.validate(), Vec::<String>::new());
    let res = run_round_trip(&cfg).await;
    assert!(res.ok, "{res:?}");
    assert!(res.reason.contains("rmssd = 62"), "{}", res.reason);
    assert!(!res.reason.contains("ln("), "{}", res.reason);
    // A template that is not JSON, or cannot be found by its user, is refused up front.
    cfg.payload = Some(r#"{"user": {user_id}"#.into());
    let problems = cfg.validate();
    assert!(
        problems.iter().any(|p| p.starts_with("payload: not JSON")),
        "{problems:?}"
    );
    cfg.payload = Some(r#"{"n": {value}}"#.into());
    let problems = cfg.validate();
    assert!(
        problems.iter().any(|p| p.contains("{user_id}")),
        "{problems:?}"
    );
}
