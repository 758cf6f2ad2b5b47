//! The soak over time: 48 h replayed from synthetic samples (pure, virtual
//! time), the daemon loop on a manual clock with a real SQLite state file,
//! and the state database's refusal of corrupt or locked files.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use soakwatch::config::Config;
use soakwatch::soak::timeline::{replay, SoakMeta};
use soakwatch::state::store::{Store, StoreError};
use soakwatch::testkit::synthetic::{Fault, Scenario};
use soakwatch::verdict::{CriterionId as C, Status};
use soakwatch::watch::{self, BoxFuture, ManualClock, SampleSource, StartOptions};

use crate::common::{run_watch, run_watch_cycles, serve_loopback};

const H: f64 = 3600.0;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 2, 17, 8, 59)
        .single()
        .expect("valid")
}

fn cfg() -> Config {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/checks.toml"))
        .expect("checks.toml");
    let mut c = Config::from_text(Path::new("checks.toml"), &text, &|_: &str| None).expect("valid");
    c.soak.started_at = Some(t0());
    c
}

fn meta() -> SoakMeta {
    SoakMeta {
        id: "phase-b-test".into(),
        name: "phase-b-staging".into(),
        t0: t0(),
        planned_secs: 48.0 * H,
    }
}

fn scenario(faults: Vec<Fault>) -> Scenario {
    Scenario {
        t0: t0(),
        interval_secs: 10.0,
        per_interval: 2.0,
        faults,
    }
}

fn at(hours: f64) -> DateTime<Utc> {
    t0() + chrono::Duration::milliseconds((hours * H * 1000.0) as i64)
}

#[test]
fn healthy_48h_soak_is_approved() {
    let c = cfg();
    let history = scenario(vec![]).history(&c, 48.0);
    assert_eq!(history.len(), 17_281);
    let s = replay(&c, &meta(), &history, &watch::policy(&c));
    assert_eq!(s.verdict, Status::Pass, "{}", s.verdict_reason);
    assert!(s.incidents.is_empty());
    assert!(
        s.criteria.iter().all(|c| c.soak == Status::Pass),
        "{:?}",
        s.criteria
            .iter()
            .map(|c| (c.id, c.soak))
            .collect::<Vec<_>>()
    );
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("soak-48h.md");
    watch::write_summary_report(&c, &s, "48h checkpoint", &path).expect("report");
    let md = std::fs::read_to_string(&path).expect("read");
    assert!(md.contains("APPROVED FOR PRODUCTION"), "{md}");
    assert_eq!(md.matches("- [x]").count(), 5, "{md}");
    for chart in ["lag", "dlq", "throughput", "success", "p95"] {
        let svg = dir.path().join(format!("soak-48h-{chart}.svg"));
        let text = std::fs::read_to_string(&svg).expect("chart written");
        let tree = resvg::usvg::Tree::from_str(&text, &resvg::usvg::Options::default())
            .expect("valid SVG");
        assert!(tree.size().width() > 100.0);
        assert!(md.contains(&format!("soak-48h-{chart}.svg")));
    }
}

#[test]
fn faults_over_48h_become_incidents_gaps_and_a_failed_verdict() {
    let c = cfg();
    let faults = vec![
        Fault::Restart { at: 10.0 * H },
        Fault::NatsDown {
            from: 20.0 * H,
            to: 20.5 * H,
        },
        Fault::DlqBurst {
            at: 30.0 * H,
            count: 15,
        },
        Fault::Gap {
            from: 40.0 * H,
            to: 40.25 * H,
        },
    ];
    let history = scenario(faults).history(&c, 48.0);
    assert_eq!(history.len(), 17_281 - 90);
    let s = replay(&c, &meta(), &history, &watch::policy(&c));

    assert_eq!(s.restarts, vec![at(10.0)]);
    assert_eq!(s.verdict, Status::Fail);
    assert!(s.verdict_reason.contains("dlq"), "{}", s.verdict_reason);

    // The DLQ burst (15 messages in 10 s, above 10/min) fails at once, not after the 5 min `for`.
    // It never recovers (the DLQ stays above its baseline); the sampling gap at 40 h
    // splits it in two fail spans around an unknown one.
    let dlq: Vec<_> = s
        .incidents
        .iter()
        .filter(|i| i.criterion == C::Dlq)
        .collect();
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    assert_eq!(dlq[0].start, at(30.0));
    assert_eq!(dlq[1].start, at(40.25));
    assert_eq!(dlq[1].end, at(48.0));
    assert!(dlq[0].peak.unwrap_or(0.0) >= 15.0, "{dlq:?}");

    // The restart is an incident of service_up at 10 h, which then recovers (a warning remains).
    let up: Vec<_> = s
        .incidents
        .iter()
        .filter(|i| i.criterion == C::ServiceUp)
        .collect();
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0].start, at(10.0));
    assert!(up[0].secs() <= 120.0, "{up:?}");

    // The NATS outage is unknown (never pass, never fail) for the NATS criteria.
    let lag_unknown: Vec<_> = s
        .spans
        .iter()
        .filter(|sp| sp.criterion == C::ConsumerLag && sp.status == Status::Unknown)
        .collect();
    assert!(
        lag_unknown
            .iter()
            .any(|sp| sp.start == at(20.0) && sp.end == at(20.5)),
        "{lag_unknown:?}"
    );
    assert!(
        lag_unknown
            .iter()
            .any(|sp| sp.evidence.contains("sampling gap")),
        "{lag_unknown:?}"
    );
    assert_eq!(
        s.criterion(C::ConsumerLag).map(|c| c.soak),
        Some(Status::Pass)
    );

    // Coverage: the gap costs every probe 15 min, the outage costs NATS another 30.
    let cov = |p: &str| {
        s.coverage
            .iter()
            .find(|c| c.probe == p)
            .map(|c| c.share())
            .unwrap_or(0.0)
    };
    assert!(
        (cov("metrics") - (1.0 - 0.25 / 48.0)).abs() < 0.002,
        "{}",
        cov("metrics")
    );
    assert!(
        (cov("consumer") - (1.0 - 0.75 / 48.0)).abs() < 0.002,
        "{}",
        cov("consumer")
    );

    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("soak-48h.md");
    watch::write_summary_report(&c, &s, "48h checkpoint", &path).expect("report");
    let md = std::fs::read_to_string(&path).expect("read");
    assert!(md.contains("NOT APPROVED"), "{md}");
    assert!(md.contains("dlq"), "{md}");
}

#[test]
fn a_single_dead_letter_counts_only_after_the_for_duration() {
    let c = cfg();
    let history = scenario(vec![Fault::DlqBurst {
        at: 1.0 * H,
        count: 1,
    }])
    .history(&c, 2.0);
    let s = replay(&c, &meta(), &history, &watch::policy(&c));
    let dlq: Vec<_> = s
        .incidents
        .iter()
        .filter(|i| i.criterion == C::Dlq)
        .collect();
    assert_eq!(dlq.len(), 1);
    // Confirmed after 5 min, but the incident starts when the DLQ grew.
    assert_eq!(dlq[0].start, at(1.0));
    // Before the 5 min had passed the failure was pending: not an incident,
    // not an unknown.
    let short = scenario(vec![Fault::DlqBurst {
        at: 1.0 * H,
        count: 1,
    }])
    .history(&c, 1.0 + 240.0 / H);
    let s = replay(&c, &meta(), &short, &watch::policy(&c));
    assert_eq!(s.criterion(C::Dlq).map(|c| c.now), Some(Status::Pending));
    assert_eq!(s.criterion(C::Dlq).map(|c| c.soak), Some(Status::Pending));
    assert!(
        !s.incidents.iter().any(|i| i.criterion == C::Dlq),
        "{:?}",
        s.incidents
    );
}

#[test]
fn a_flapping_backlog_is_one_incident_not_many() {
    let c = cfg();
    // Lag 12 in every other 10 s sample for 10 minutes.
    let faults: Vec<Fault> = (0..30)
        .map(|i| {
            let from = H + i as f64 * 20.0;
            Fault::Backlog {
                from,
                to: from + 10.0,
                lag: 12,
            }
        })
        .collect();
    let history = scenario(faults).history(&c, 2.0);
    let s = replay(&c, &meta(), &history, &watch::policy(&c));
    let lag: Vec<_> = s
        .incidents
        .iter()
        .filter(|i| i.criterion == C::ConsumerLag)
        .collect();
    assert_eq!(lag.len(), 1, "{lag:?}");
    assert_eq!(lag[0].start, at(1.0));
    assert!(lag[0].peak == Some(12.0));
}

#[test]
fn low_coverage_makes_the_soak_unknown_never_pass() {
    let c = cfg();
    let history = scenario(vec![Fault::Gap {
        from: 10.0 * H,
        to: 13.0 * H,
    }])
    .history(&c, 48.0);
    let s = replay(&c, &meta(), &history, &watch::policy(&c));
    assert_eq!(s.verdict, Status::Unknown, "{}", s.verdict_reason);
    assert!(
        s.verdict_reason.contains("coverage below 95%"),
        "{}",
        s.verdict_reason
    );
}

/// Scripted samples for the daemon loop.
struct ScenarioSource {
    cfg: Config,
    scenario: Scenario,
}

impl SampleSource for ScenarioSource {
    fn snapshot<'a>(
        &'a self,
        at: DateTime<Utc>,
        _since: &'a [DateTime<Utc>],
    ) -> BoxFuture<'a, soakwatch::sample::Snapshot> {
        let secs = (at - self.scenario.t0).num_milliseconds() as f64 / 1000.0;
        let snap = self
            .scenario
            .snapshot(&self.cfg, secs)
            .expect("no gaps in this scenario");
        Box::pin(async move { snap })
    }
}

#[tokio::test]
async fn the_daemon_resumes_the_same_soak_after_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = cfg();
    c.watch.state = dir.path().join("state.sqlite");
    c.watch.reports_dir = dir.path().join("reports");
    c.watch.checkpoints = vec![Duration::from_secs(600), Duration::from_secs(1200)];
    let source = ScenarioSource {
        cfg: c.clone(),
        scenario: scenario(vec![]),
    };

    let clock = ManualClock::new(t0());
    let first = run_watch_cycles(&c, &source, &clock, 100).await;
    assert_eq!(first.samples, 100);
    assert_eq!(first.t0, t0());
    let reports = dir.path().join("reports");
    assert!(reports.join(format!("{}-10m.md", first.soak_id)).exists());
    assert!(!reports.join(format!("{}-20m.md", first.soak_id)).exists());

    // "Restart" 5 minutes later: same soak, same T0, no re-baselining; the silence is a gap.
    let clock = ManualClock::new(clock_now_plus(&clock, 300));
    let second = run_watch_cycles(&c, &source, &clock, 100).await;
    assert_eq!(second.soak_id, first.soak_id);
    assert_eq!(second.t0, t0());
    assert_eq!(second.samples, 200);
    assert!(reports.join(format!("{}-20m.md", first.soak_id)).exists());
    assert!(second
        .spans
        .iter()
        .any(|sp| sp.status == Status::Unknown && sp.evidence.contains("sampling gap")));

    // The 10m checkpoint was not written twice: its file is unchanged by the second run.
    let store = Store::open_read_only(&c.watch.state)
        .await
        .expect("read-only");
    let done = store
        .checkpoints_done(&first.soak_id)
        .await
        .expect("checkpoints");
    assert_eq!(done.len(), 2, "{done:?}");

    // --new-soak starts a fresh soak and keeps the old one.
    let clock = ManualClock::new(clock_now_plus(&clock, 60));
    let third = run_watch(
        &c,
        &source,
        &clock,
        StartOptions {
            new_soak: true,
            max_cycles: Some(3),
            ..Default::default()
        },
    )
    .await;
    assert_ne!(third.soak_id, first.soak_id);
    assert_eq!(third.samples, 3);
}

fn clock_now_plus(clock: &ManualClock, secs: i64) -> DateTime<Utc> {
    use soakwatch::watch::Clock;
    clock.now() + chrono::Duration::seconds(secs)
}

#[tokio::test]
async fn a_corrupt_or_locked_state_database_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let corrupt = dir.path().join("corrupt.sqlite");
    std::fs::write(
        &corrupt,
        b"this is not a database, it is a text file that someone put here\n".repeat(100),
    )
    .expect("write");
    match Store::open(&corrupt).await {
        Err(StoreError::NotSoakwatch { reason, .. }) => assert!(!reason.is_empty()),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a corrupt file was accepted"),
    }
    // The file is left as it was: no silent new soak.
    assert!(std::fs::read(&corrupt)
        .expect("read")
        .starts_with(b"this is not a database"));

    let state = dir.path().join("state.sqlite");
    let first = Store::open(&state).await.expect("first opener");
    match Store::open(&state).await {
        Err(StoreError::Locked(p, _)) => assert_eq!(p, state),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("two writers on one state database"),
    }
    // The same file through a symlink, or spelled with `..`, meets the same lock.
    let link = dir.path().join("link.sqlite");
    std::os::unix::fs::symlink(&state, &link).expect("symlink");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    let dotted = dir.path().join("sub/../state.sqlite");
    for other in [&link, &dotted] {
        match Store::open(other).await {
            Err(StoreError::Locked(p, lock)) => {
                assert_eq!(&p, other);
                assert_eq!(
                    lock,
                    dir.path()
                        .canonicalize()
                        .expect("canon")
                        .join("state.sqlite")
                );
            }
            Err(e) => panic!("unexpected error through {}: {e}", other.display()),
            Ok(_) => panic!("a second writer through {}", other.display()),
        }
    }
    first.close().await;
    // A link to a state file not created yet locks the file it will create.
    let fresh = dir.path().join("fresh.sqlite");
    let fresh_link = dir.path().join("fresh-link.sqlite");
    std::os::unix::fs::symlink(&fresh, &fresh_link).expect("symlink");
    let via_link = Store::open(&fresh_link)
        .await
        .expect("opens through the link");
    assert!(matches!(
        Store::open(&fresh).await,
        Err(StoreError::Locked(..))
    ));
    via_link.close().await;
    assert!(
        fresh.exists(),
        "the database was created at the link's target"
    );
    Store::open(&state)
        .await
        .expect("the lock is released on close");
}

/// A real webhook receiver on loopback: records (id header, body) and can be
/// switched to answer 500.
struct Receiver {
    url: String,
    got: std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>,
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    attempts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

async fn receiver() -> Receiver {
    use std::sync::atomic::Ordering;
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (g, f, a) = (got.clone(), failing.clone(), attempts.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let (g, f, a) = (g.clone(), f.clone(), a.clone());
            async move {
                a.fetch_add(1, Ordering::SeqCst);
                if f.load(Ordering::SeqCst) {
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                let id = headers
                    .get("x-soakwatch-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
                if let Ok(mut v) = g.lock() {
                    v.push((id, json));
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let addr = serve_loopback(app).await;
    Receiver {
        url: format!("http://{addr}/hook"),
        got,
        failing,
        attempts,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_fire_resolve_and_survive_a_receiver_outage_and_a_restart() {
    use std::sync::atomic::Ordering;
    soakwatch::install_crypto_provider();
    let rx = receiver().await;
    rx.failing.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = cfg();
    c.watch.state = dir.path().join("state.sqlite");
    c.watch.reports_dir = dir.path().join("reports");
    c.watch.checkpoints = vec![];
    c.alerts = webhook_alerts(&rx.url, soakwatch::secret::Secret::new("s3cret"));
    // Lag 12 from 5 to 6 minutes: consumer_lag fires, then resolves after recover_after (1 min).
    let source = ScenarioSource {
        cfg: c.clone(),
        scenario: scenario(vec![Fault::Backlog {
            from: 300.0,
            to: 360.0,
            lag: 12,
        }]),
    };
    let clock = ManualClock::new(t0());
    run_watch_cycles(&c, &source, &clock, 60).await;
    assert!(
        rx.attempts.load(Ordering::SeqCst) >= 1,
        "the receiver was tried"
    );
    assert!(
        rx.got.lock().map(|g| g.is_empty()).unwrap_or(false),
        "nothing accepted while it answered 500"
    );
    {
        let store = Store::open_read_only(&c.watch.state).await.expect("state");
        let soakwatch::state::store::OutboxTally {
            pending,
            delivered,
            given_up: dead,
        } = store.outbox_counts().await.expect("counts");
        assert_eq!(
            (pending, delivered, dead),
            (2, 0, 0),
            "firing + resolved wait in the outbox"
        );
        store.close().await;
    }

    // The receiver is back; the daemon restarts (after the 1 s backoff): both are delivered, once.
    rx.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let clock = ManualClock::new(clock_now_plus(&clock, 10));
    run_watch_cycles(&c, &source, &clock, 2).await;
    let got = rx.got.lock().map(|g| g.clone()).unwrap_or_default();
    assert_eq!(got.len(), 2, "{got:?}");
    let states: Vec<&str> = got
        .iter()
        .map(|(_, b)| b["alerts"][0]["state"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(states, ["firing", "resolved"]);
    assert_eq!(got[0].1["alerts"][0]["criterion"], "consumer_lag");
    assert_eq!(got[0].1["schema"], "soakwatch.alert/v1");
    assert_ne!(got[0].0, got[1].0, "distinct notification ids");

    // Another restart: nothing is sent again.
    let clock = ManualClock::new(clock_now_plus(&clock, 10));
    run_watch_cycles(&c, &source, &clock, 2).await;
    assert_eq!(
        rx.got.lock().map(|g| g.len()).unwrap_or(0),
        2,
        "delivered notifications are never re-sent"
    );
}

/// Alerts to one webhook route at `url` (signed with `hmac_secret` unless empty),
/// 1 s delivery backoff.
fn webhook_alerts(
    url: &str,
    hmac_secret: soakwatch::secret::Secret,
) -> std::sync::Arc<soakwatch::alert::routes::AlertsConfig> {
    use soakwatch::alert::routes::{AlertsConfig, Route};
    use soakwatch::alert::sink::{Sink, WebhookFormat, WebhookSink};
    std::sync::Arc::new(AlertsConfig {
        repeat_interval: Duration::from_secs(4 * 3600),
        unknown_after: Duration::from_secs(600),
        severity: Default::default(),
        max_backoff: Duration::from_secs(1),
        routes: vec![Route {
            name: "hook".into(),
            severities: vec![],
            criteria: vec![],
            sink: Sink::Webhook(WebhookSink {
                url: soakwatch::secret::SecretUrl::new(url.to_string()),
                hmac_secret,
                format: WebhookFormat::Soakwatch,
                timeout: Duration::from_secs(2),
            }),
        }],
    })
}

/// A daemon config in `dir` with a webhook route and an armed rollback on the DLQ spike.
fn rollback_cfg(dir: &Path, hook: &str, run: soakwatch::rollback::RollbackConfig) -> Config {
    use soakwatch::config::{RollbackSettings, RollbackTrigger};
    let mut c = cfg();
    c.watch.state = dir.join("state.sqlite");
    c.watch.reports_dir = dir.join("reports");
    c.watch.checkpoints = vec![];
    c.alerts = webhook_alerts(hook, soakwatch::secret::Secret::default());
    c.rollback = Some(RollbackSettings {
        run,
        triggers: vec![RollbackTrigger {
            name: "dlq_spike".into(),
            criterion: None,
            hold: Duration::ZERO,
        }],
    });
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dlq_spike_fires_the_rollback_once_and_never_again() {
    use soakwatch::rollback::{RollbackConfig, RollbackMode};
    soakwatch::install_crypto_provider();
    let rx = receiver().await;
    let dir = tempfile::tempdir().expect("tmp");
    let env_file = dir.path().join("normalize.env");
    let original =
        "# Phase B\nEVENT_STREAM_MODE=multi  # cutover\nNORMALIZE_HRV_ACK_WAIT_MS=60000\n";
    std::fs::write(&env_file, original).expect("env");
    let log = dir.path().join("service.log");
    std::fs::write(&log, "old line\n").expect("log");
    let restart = format!(
        "echo \"$(date -u) [event-bus] Stream mode: single\" >> {0}; echo '[normalize-service] Stream candidates: ATHLETE_ALLY_EVENTS' >> {0}",
        log.display()
    );
    let mut run = RollbackConfig::new(
        env_file.clone(),
        vec!["sh".into(), "-c".into(), restart],
        log.clone(),
    );
    run.mode = RollbackMode::Armed;
    run.verify_timeout = Duration::from_secs(5);
    let c = rollback_cfg(dir.path(), &rx.url, run);
    let source = ScenarioSource {
        cfg: c.clone(),
        scenario: scenario(vec![Fault::DlqBurst {
            at: 300.0,
            count: 15,
        }]),
    };
    let clock = ManualClock::new(t0());
    let s = run_watch_cycles(&c, &source, &clock, 40).await;
    let rb = s.rollback.clone().expect("the rollback fired");
    assert_eq!(rb.state.as_str(), "done", "{rb:?}");
    assert!(rb.trigger.starts_with("dlq_spike"), "{}", rb.trigger);
    let names: Vec<(&str, &str)> = rb
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status.as_str()))
        .collect();
    assert_eq!(names[0], ("edit_env", "ok"), "{names:?}");
    assert_eq!(names[1], ("restart", "ok"), "{names:?}");
    assert_eq!(names[2], ("verify_logs", "ok"), "{names:?}");
    let edited = std::fs::read_to_string(&env_file).expect("env");
    assert_eq!(
        edited,
        original.replace("EVENT_STREAM_MODE=multi", "EVENT_STREAM_MODE=single")
    );
    let got = rx.got.lock().map(|g| g.clone()).unwrap_or_default();
    assert!(
        got.iter().any(|(_, b)| b["kind"] == "rollback"
            && b["alerts"][0]["summary"]
                .as_str()
                .unwrap_or("")
                .contains("completed")),
        "{got:?}"
    );
    let report =
        std::fs::read_to_string(c.watch.reports_dir.join(format!("{}-latest.md", s.soak_id)))
            .expect("report");
    assert!(
        report.contains("## Rollback") && report.contains("verify_logs"),
        "{report}"
    );

    // Put the env file back; a restart of the daemon must not roll back again.
    std::fs::write(&env_file, original).expect("env");
    let clock = ManualClock::new(clock_now_plus(&clock, 10));
    let s2 = run_watch_cycles(&c, &source, &clock, 5).await;
    assert_eq!(s2.rollback.map(|r| r.state.as_str()), Some("done"));
    assert_eq!(
        std::fs::read_to_string(&env_file).expect("env"),
        original,
        "the latch held: no second rollback"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_rollback_is_reported_not_rerun() {
    use soakwatch::rollback::{RollbackConfig, RollbackMode};
    soakwatch::install_crypto_provider();
    let rx = receiver().await;
    let dir = tempfile::tempdir().expect("tmp");
    let env_file = dir.path().join("normalize.env");
    std::fs::write(&env_file, "EVENT_STREAM_MODE=multi\n").expect("env");
    let mut run = RollbackConfig::new(
        env_file.clone(),
        vec!["true".into()],
        dir.path().join("log"),
    );
    run.mode = RollbackMode::Armed;
    let c = rollback_cfg(dir.path(), &rx.url, run);
    let source = ScenarioSource {
        cfg: c.clone(),
        scenario: scenario(vec![]),
    };
    let clock = ManualClock::new(t0());
    let s = run_watch_cycles(&c, &source, &clock, 3).await;
    // A crash half-way through a rollback: the latch taken, the journal says "started".
    {
        let store = Store::open(&c.watch.state).await.expect("store");
        assert!(store
            .take_rollback_latch(&s.soak_id, "dlq_spike (test)", t0())
            .await
            .expect("latch"));
        store.close().await;
    }
    let clock = ManualClock::new(clock_now_plus(&clock, 10));
    let s2 = run_watch_cycles(&c, &source, &clock, 2).await;
    assert_eq!(s2.rollback.map(|r| r.state.as_str()), Some("interrupted"));
    assert_eq!(
        std::fs::read_to_string(&env_file).expect("env"),
        "EVENT_STREAM_MODE=multi\n",
        "not re-run"
    );
    let got = rx.got.lock().map(|g| g.clone()).unwrap_or_default();
    assert!(
        got.iter().any(|(_, b)| b["alerts"][0]["summary"]
            .as_str()
            .unwrap_or("")
            .contains("interrupted")),
        "{got:?}"
    );
}

/// Runs the daemon loop on a manual clock over a scenario with one DLQ burst
/// of `count` messages at 300 s, for `secs` of soak time, with the shipped
/// `dlq_spike` trigger in dry-run mode. Returns the summary at the end.
async fn dlq_burst_soak(
    interval_secs: u64,
    count: u64,
    secs: u64,
) -> soakwatch::soak::model::SoakSummary {
    use soakwatch::rollback::{RollbackConfig, RollbackMode};
    let rx = receiver().await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut run = RollbackConfig::new(
        dir.path().join("normalize.env"),
        vec!["true".into()],
        dir.path().join("service.log"),
    );
    run.mode = RollbackMode::DryRun;
    let mut c = rollback_cfg(dir.path(), &rx.url, run);
    c.watch.interval = Duration::from_secs(interval_secs);
    c.watch.max_gap = Duration::from_secs(interval_secs * 3);
    let source = ScenarioSource {
        cfg: c.clone(),
        scenario: Scenario {
            t0: t0(),
            interval_secs: interval_secs as f64,
            per_interval: 1.0,
            faults: vec![Fault::DlqBurst { at: 300.0, count }],
        },
    };
    let clock = ManualClock::new(t0());
    run_watch_cycles(&c, &source, &clock, secs / interval_secs + 1).await
}

fn dlq_fail_start(s: &soakwatch::soak::model::SoakSummary) -> Option<DateTime<Utc>> {
    s.spans
        .iter()
        .find(|sp| sp.criterion == C::Dlq && sp.status == Status::Fail)
        .map(|sp| sp.start)
}

/// The seed's "DLQ spike > 10/min" is more than ten messages within one
/// minute: one, two or ten poison messages never fire the rollback and never
/// skip the 5 min hold of `dlq`, at a 10 s or a 1 s interval.
#[tokio::test(flavor = "multi_thread")]
async fn a_few_poison_messages_never_fire_the_rollback_nor_skip_the_dlq_hold() {
    soakwatch::install_crypto_provider();
    for interval in [10, 1] {
        for count in [1, 2, 10] {
            // 4 min after the burst: still inside the 5 min hold.
            let s = dlq_burst_soak(interval, count, 300 + 240).await;
            assert!(
                s.rollback.is_none(),
                "interval {interval}s, {count} message(s): {:?}",
                s.rollback
            );
            let dlq = s.criterion(C::Dlq).expect("dlq");
            assert_ne!(
                dlq.now,
                Status::Fail,
                "interval {interval}s, {count}: hold skipped"
            );
            assert_eq!(dlq_fail_start(&s), None, "interval {interval}s, {count}");
            // After the hold the DLQ growth is an incident that began at the burst.
            let s = dlq_burst_soak(interval, count, 300 + 330).await;
            assert!(s.rollback.is_none(), "interval {interval}s, {count}");
            assert_eq!(s.criterion(C::Dlq).expect("dlq").now, Status::Fail);
            let start = dlq_fail_start(&s).expect("a dlq incident");
            // (The scenario's burst is visible from the 300 s sample on.)
            assert_eq!(
                (start - t0()).num_seconds(),
                300,
                "interval {interval}s, {count}: the incident starts when the condition began"
            );
        }
    }
}

/// Eleven or more within a minute is the spike: it skips the hold and fires
/// the rollback once.
#[tokio::test(flavor = "multi_thread")]
async fn eleven_poison_messages_within_a_minute_fire_the_rollback_once() {
    soakwatch::install_crypto_provider();
    for interval in [10, 1] {
        for count in [11, 40] {
            let s = dlq_burst_soak(interval, count, 300 + 120).await;
            let rb = s.rollback.clone().expect("the rollback fired");
            assert!(rb.trigger.starts_with("dlq_spike: "), "{}", rb.trigger);
            assert!(
                rb.trigger
                    .contains(&format!("{count} message(s) dead-lettered within")),
                "{}",
                rb.trigger
            );
            assert!(
                (rb.started - t0()).num_seconds() <= 300 + interval as i64,
                "fired at once: {}",
                rb.started
            );
            assert_eq!(s.criterion(C::Dlq).expect("dlq").now, Status::Fail);
        }
    }
}

/// An incident's evidence is what was seen when it began, not the newest
/// cycle's (later growth changes the text).
#[test]
fn incident_evidence_is_from_when_the_incident_began() {
    let c = cfg();
    let history = scenario(vec![
        Fault::DlqBurst {
            at: 3600.0,
            count: 1,
        },
        Fault::DlqBurst {
            at: 7200.0,
            count: 5,
        },
    ])
    .history(&c, 3.0);
    let s = replay(&c, &meta(), &history, &watch::policy(&c));
    let dlq: Vec<_> = s
        .incidents
        .iter()
        .filter(|i| i.criterion == C::Dlq)
        .collect();
    assert_eq!(dlq.len(), 1, "{:?}", s.incidents);
    assert_eq!((dlq[0].start - t0()).num_seconds(), 3600);
    assert!(
        dlq[0]
            .evidence
            .contains("holds 2 messages (baseline 1: +1)"),
        "{}",
        dlq[0].evidence
    );
}

/// Tears a kept demo replica down if the test ends early (a no-op once the
/// folder is gone).
struct KeptGuard(std::path::PathBuf);

impl Drop for KeptGuard {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::process::Command::new(crate::common::TESTKIT)
                .arg("teardown")
                .arg(&self.0)
                .status();
        }
    }
}

/// Runs a command line the demo printed, with sh.
async fn run_printed(line: &str) -> std::process::Output {
    tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("sh")
            .arg("-c")
            .arg(line)
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("finished within 120 s")
    .expect("sh runs")
}

/// Running and not a zombie.
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_keep_leaves_a_working_replica_and_its_teardown_removes_all_of_it() {
    use soakwatch::testkit::kept;
    let base = tempfile::tempdir().expect("tempdir");
    let dir = base.path().join("kept");
    let _guard = KeptGuard(dir.clone());
    let help = std::process::Command::new(crate::common::TESTKIT)
        .arg("--help")
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    assert!(
        help.lines().any(|l| l.trim_start().starts_with("teardown")),
        "{help}"
    );

    let demo = tokio::process::Command::new(crate::common::TESTKIT)
        .args(["demo", "--keep", "--soak", "0s", "--events", "5"])
        .arg("--dir")
        .arg(&dir)
        .arg("--reports-dir")
        .arg(base.path().join("reports"))
        .env("NATS_URL", crate::common::nats_url())
        .env("DATABASE_ADMIN_URL", crate::common::admin_url())
        .stdin(std::process::Stdio::null())
        .output();
    let demo = tokio::time::timeout(Duration::from_secs(180), demo)
        .await
        .expect("demo within 180 s")
        .expect("demo runs");
    let out = String::from_utf8_lossy(&demo.stdout).into_owned();
    let err = String::from_utf8_lossy(&demo.stderr).into_owned();
    assert_eq!(demo.status.code(), Some(0), "{out}\n{err}");
    let printed = |after: &str| -> String {
        let mut lines = out.lines().skip_while(|l| !l.contains(after));
        lines.next();
        lines.next().map(str::trim).unwrap_or_default().to_string()
    };
    let teardown = printed("remove it all");
    assert!(
        teardown.ends_with(&format!("teardown {}", dir.display())),
        "no teardown command:\n{out}"
    );

    // The stand-in outlived the demo, detached, its pid in the folder.
    let manifest = kept::Manifest::read(&dir).expect("manifest");
    let names = soakwatch::testkit::replica::ReplicaNames::new(&manifest.tag).expect("tag");
    let pid: u32 = std::fs::read_to_string(dir.join(kept::PID_FILE))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(
        process_alive(pid),
        "the kept stand-in is not running\n{out}"
    );
    let config = dir.join("checks.toml").display().to_string();

    // The kept config passes check and has a working [rollback].
    let check = crate::common::run_bin(&["check", "--config", &config], &[]).await;
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    let plan = crate::common::run_bin(&["rollback", "--dry-run", "--config", &config], &[]).await;
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    let script = dir.join(kept::RESTART_SCRIPT).display().to_string();
    assert!(plan.stdout.contains(&script), "{}", plan.stdout);
    assert!(
        plan.stdout
            .contains(&format!("Stream candidates: {}", names.legacy_stream)),
        "{}",
        plan.stdout
    );
    // Its restart command restarts the kept stand-in on the same address.
    let addr = std::fs::read_to_string(dir.join(kept::ADDR_FILE)).expect("addr");
    let restart = run_printed(&format!("sh '{script}'")).await;
    assert!(restart.status.success(), "{restart:?}");
    let new_pid: u32 = std::fs::read_to_string(dir.join(kept::PID_FILE))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert_ne!(new_pid, pid);
    assert!(!process_alive(pid), "the old stand-in still runs");
    soakwatch::install_crypto_provider();
    let http = soakwatch::probe::metrics::http_client(Duration::from_secs(2)).expect("client");
    let mut answered = false;
    for _ in 0..100 {
        if http
            .get(format!("http://{}/metrics", addr.trim()))
            .send()
            .await
            .is_ok()
        {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "the restarted stand-in does not answer on {addr}");
    let check = crate::common::run_bin(&["check", "--config", &config], &[]).await;
    assert!(
        check.code == 0 || check.code == 1,
        "after the restart: {}{}",
        check.stdout,
        check.stderr
    );

    // The printed teardown removes everything it created.
    let down = run_printed(&teardown).await;
    assert!(down.status.success(), "{down:?}");
    assert!(!dir.exists(), "{} left behind", dir.display());
    let mut gone = false;
    for _ in 0..50 {
        if !process_alive(new_pid) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the stand-in (pid {new_pid}) survived the teardown");
    let nats = async_nats::connect(crate::common::nats_url())
        .await
        .expect("nats");
    let js = async_nats::jetstream::new(nats);
    for stream in names.streams() {
        assert!(js.get_stream(stream).await.is_err(), "{stream} left behind");
    }
    use sqlx::Connection;
    let mut pg = sqlx::PgConnection::connect(&crate::common::admin_url())
        .await
        .expect("postgres");
    let (dbs,): (i64,) = sqlx::query_as("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&names.database)
        .fetch_one(&mut pg)
        .await
        .expect("query");
    assert_eq!(dbs, 0, "database {} left behind", names.database);
    let _ = pg.close().await;
}
