//! Many consumers per soak: `[[consumers]]` with a named durable and a
//! selector over both hot streams, against real durables on the machine's
//! NATS. Each consumer has its own id (`consumer_lag/<durable>`) in JSON,
//! Nagios perfdata and Prometheus output, and the overall verdict covers all.

use async_nats::jetstream::consumer;

use crate::common::*;

/// A pull durable on `stream` filtering `subject`, as the selector expects.
async fn add_durable(r: &Replica, stream: &str, name: &str, subject: &str) {
    let s = r.js.get_stream(stream).await.expect("stream");
    s.create_consumer(consumer::pull::Config {
        durable_name: Some(name.to_string()),
        filter_subject: subject.to_string(),
        ack_policy: consumer::AckPolicy::Explicit,
        max_deliver: 5,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("create {name}: {e}"));
}

/// The config's `[consumer]` table replaced by the service's durable as a
/// named entry plus "every fleet-* durable on both hot streams".
fn fleet_config(text: String, r: &Replica, min_count: usize) -> String {
    let start = text.find("[consumer]\n").expect("[consumer]");
    let end = start
        + text[start..]
            .find("\n[metrics]")
            .expect("[metrics] after it");
    let named = text[start..end].replacen("[consumer]", "[[consumers]]", 1);
    format!(
        "{}{named}\n\n[[consumers]]\nstreams = [\"{}\", \"{}\"]\ndurable_prefix = \"fleet-\"\nmax_deliver = 5\nmin_count = {min_count}\n\n[consumers.overrides.fleet-core-b]\nlag_fail = 1000\nlag_warn = 900\n{}",
        &text[..start],
        r.names.core_stream,
        r.names.vendor_stream,
        &text[end..]
    )
}

fn instance<'j>(run: &'j serde_json::Value, criterion: &str, id: &str) -> &'j serde_json::Value {
    run["criteria"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == criterion))
        .and_then(|c| c["consumers"].as_array())
        .and_then(|a| a.iter().find(|i| i["id"] == id))
        .unwrap_or_else(|| panic!("no {id} under {criterion}: {run}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_is_judged_per_consumer_with_stable_ids_in_every_format() {
    let mut r = Replica::healthy(3).await;
    let tag = r.names.tag.clone();
    let (core, vendor) = (r.names.core_stream.clone(), r.names.vendor_stream.clone());
    add_durable(&r, &core, "fleet-core-a", &format!("sw.{tag}.sleep.a")).await;
    add_durable(&r, &core, "fleet-core-b", &format!("sw.{tag}.sleep.b")).await;
    add_durable(&r, &vendor, "fleet-vendor-a", &format!("sw.{tag}.vendor.a")).await;
    add_durable(&r, &vendor, "fleet-vendor-b", &format!("sw.{tag}.vendor.b")).await;
    // An operator's durable that the prefix leaves out, with a backlog.
    add_durable(&r, &vendor, "ops-replay", &format!("sw.{tag}.vendor.a")).await;
    r.edit_config(|t| fleet_config(t, &r, 4));

    let run = r.check("0s", false).await;
    assert_eq!(
        run.not_passing(),
        pairs(&[("db_writes", "unknown")]),
        "{}",
        run.stdout
    );
    let j = run.json();
    let ids: Vec<&str> = j["criteria"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == "consumer_lag"))
        .and_then(|c| c["consumers"].as_array())
        .expect("consumer_lag consumers")
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        vec![
            "consumer_lag/normalize-hrv-durable",
            "consumer_lag/fleet-core-a",
            "consumer_lag/fleet-core-b",
            "consumer_lag/fleet-vendor-a",
            "consumer_lag/fleet-vendor-b"
        ],
        "{j}"
    );

    // 12 messages wait for fleet-vendor-a (and the excluded ops-replay),
    // 12 for fleet-core-b, whose own lag limit is 1000.
    for n in 0..12 {
        r.js.publish(format!("sw.{tag}.vendor.a"), format!("{n}").into())
            .await
            .expect("publish")
            .await
            .expect("ack");
        r.js.publish(format!("sw.{tag}.sleep.b"), format!("{n}").into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    let run = r.check("0s", false).await;
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert_eq!(run.status("consumer_lag"), "fail");
    let j = run.json();
    let a = instance(&j, "consumer_lag", "consumer_lag/fleet-vendor-a");
    assert_eq!(a["status"], "fail", "{a}");
    assert_eq!(a["stream"], vendor.as_str());
    assert_eq!(a["value"], 12.0);
    // Nobody pulls for fleet-core-b: under its own limit of 1000, but stalled.
    let b = instance(&j, "consumer_lag", "consumer_lag/fleet-core-b");
    let b_evidence = b["evidence"].as_str().unwrap_or_default();
    assert_eq!(b["status"], "fail", "{b}");
    assert!(
        b_evidence.starts_with("stalled: 12 pending") && !b_evidence.contains(">="),
        "{b}"
    );
    assert_eq!(
        instance(&j, "consumer_lag", "consumer_lag/fleet-vendor-b")["status"],
        "pass"
    );
    let evidence = run.evidence("consumer_lag");
    assert!(
        evidence.contains("consumer_lag/fleet-vendor-a: lag 12 >= 10")
            && !evidence.contains("ops-replay"),
        "{evidence}"
    );

    let nagios = run_check(&r.config, "nagios", "0s").await;
    assert!(
        nagios.stdout.starts_with("SOAKWATCH CRITICAL"),
        "{}",
        nagios.stdout
    );
    assert!(
        nagios
            .stdout
            .contains("'consumer_lag/fleet-vendor-a'=12;4;9;0")
            && nagios
                .stdout
                .contains("'consumer_lag/fleet-core-b'=12;899;999;0"),
        "{}",
        nagios.stdout
    );
    let prom = run_check(&r.config, "prometheus", "0s").await;
    let line = format!(
        "soakwatch_consumer_criterion_value{{soak=\"{}\",criterion=\"consumer_lag/fleet-vendor-a\",consumer=\"fleet-vendor-a\",stream=\"{vendor}\"}} 12",
        j["soak"].as_str().unwrap_or_default()
    );
    assert!(
        prom.stdout.contains(&line),
        "{line} not in\n{}",
        prom.stdout
    );
    assert!(
        prom.stdout
            .contains("criterion=\"consumer_lag/fleet-vendor-a\",consumer=\"fleet-vendor-a\""),
        "{}",
        prom.stdout
    );

    // A durable of the fleet vanishes: fewer than min_count, a failure.
    let s = r.js.get_stream(&core).await.expect("core");
    s.delete_consumer("fleet-core-a").await.expect("delete");
    let run = r.check("0s", false).await;
    assert_eq!(run.status("consumer_config"), "fail", "{}", run.stdout);
    assert!(
        run.evidence("consumer_config")
            .contains("selects 3 durable(s)"),
        "{}",
        run.evidence("consumer_config")
    );
}

/// Every JSON body POSTed to it, in arrival order.
type Bodies = std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>;

/// A webhook receiver on loopback that records each JSON body.
async fn start_receiver() -> (Bodies, u16) {
    use axum::{extract::State, routing::post, Router};
    let seen: Bodies = Default::default();
    async fn hook(State(seen): State<Bodies>, body: axum::body::Bytes) -> &'static str {
        if let Ok(v) = serde_json::from_slice(&body) {
            seen.lock().expect("lock").push(v);
        }
        "ok"
    }
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(seen.clone());
    let port = serve_loopback(app).await.port();
    (seen, port)
}

/// (state, criterion) of every alert the receiver got.
fn received(seen: &Bodies) -> Vec<(String, String)> {
    seen.lock()
        .expect("lock")
        .iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                a["state"].as_str().unwrap_or_default().to_string(),
                a["criterion"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn wait_received(seen: &Bodies, want: (&str, &str), d: &mut Daemon) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if received(seen)
            .iter()
            .any(|(s, c)| s == want.0 && c == want.1)
        {
            return;
        }
        d.assert_running("waiting for an alert");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!(
        "no {want:?} alert; got {:?}\n{}",
        received(seen),
        d.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_alerts_once_per_failing_consumer_and_exports_each_on_metrics() {
    let r = Replica::healthy(3).await;
    let tag = r.names.tag.clone();
    let vendor = r.names.vendor_stream.clone();
    add_durable(&r, &vendor, "fleet-vendor-a", &format!("sw.{tag}.vendor.a")).await;
    add_durable(&r, &vendor, "fleet-vendor-b", &format!("sw.{tag}.vendor.b")).await;
    r.edit_config(|t| fleet_config(t, &r, 2));
    let (seen, port) = start_receiver().await;
    r.add_watch_section(&format!(
        "[watch.for]\nconsumer_lag = \"1s\"\n\n[[alerts.routes]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\n"
    ));
    let mut d = r.start_daemon("fleet");
    d.wait_status(
        "consumer_lag",
        "pass",
        std::time::Duration::from_secs(30),
        |s| s == 0.0,
    )
    .await;

    let publish = |subject: String| {
        let js = r.js.clone();
        async move {
            for n in 0..12 {
                js.publish(subject.clone(), format!("{n}").into())
                    .await
                    .expect("publish")
                    .await
                    .expect("ack");
            }
        }
    };
    publish(format!("sw.{tag}.vendor.a")).await;
    wait_received(&seen, ("firing", "consumer_lag/fleet-vendor-a"), &mut d).await;
    let body = d
        .wait_metrics(
            "fleet-vendor-a's lag on /metrics",
            std::time::Duration::from_secs(10),
            |m| {
                m.sum(
                    "soakwatch_consumer_criterion_value",
                    &[("criterion".into(), "consumer_lag/fleet-vendor-a".into())],
                ) == Some(12.0)
            },
        )
        .await;
    assert!(body.contains("consumer=\"fleet-vendor-a\""), "{body}");

    // The second consumer failing while the first still does is news.
    publish(format!("sw.{tag}.vendor.b")).await;
    wait_received(&seen, ("firing", "consumer_lag/fleet-vendor-b"), &mut d).await;
    let firing_a = received(&seen)
        .iter()
        .filter(|(s, c)| s == "firing" && c == "consumer_lag/fleet-vendor-a")
        .count();
    assert_eq!(firing_a, 1, "{:?}", received(&seen));
    assert!(
        !received(&seen).iter().any(|(_, c)| c == "consumer_lag"),
        "the criterion's own alert stays quiet while consumers carry it: {:?}",
        received(&seen)
    );

    // fleet-vendor-a is deleted: it drops out of the fleet and its alert resolves.
    let s = r.js.get_stream(&vendor).await.expect("vendor");
    s.delete_consumer("fleet-vendor-a").await.expect("delete");
    wait_received(&seen, ("resolved", "consumer_lag/fleet-vendor-a"), &mut d).await;
    d.assert_running("after the alerts");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_newest_stored_snapshot_keeps_a_fleets_listing() {
    use soakwatch::config::Config;
    use soakwatch::sample::ConsumerLookup;
    use soakwatch::soak::timeline::{CycleRecord, SoakMeta};
    use soakwatch::state::store::{Baselines, SoakRecord, Store};
    use soakwatch::testkit::synthetic::Scenario;

    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/checks.toml"))
        .expect("checks.toml");
    let cfg = Config::from_text(std::path::Path::new("checks.toml"), &text, &|_: &str| None)
        .expect("config");
    let t0 = chrono::Utc::now() - chrono::Duration::minutes(5);
    let scenario = Scenario {
        t0,
        interval_secs: 10.0,
        per_interval: 2.0,
        faults: vec![],
    };
    let mut history = scenario.history(&cfg, 0.02);
    assert!(history.len() >= 4, "{}", history.len());
    // 40 more durables beside the service's own on its stream.
    for snap in &mut history {
        if let Some(Ok(Some(list))) = snap.consumers.get_mut("AA_CORE_HOT") {
            let own = list[0].clone();
            list.extend((0..40).map(|i| soakwatch::sample::ConsumerState {
                name: format!("fleet-{i:02}"),
                durable_name: Some(format!("fleet-{i:02}")),
                ..own.clone()
            }));
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("state.sqlite"))
        .await
        .expect("open");
    let meta = SoakMeta {
        id: "fleet".into(),
        name: "fleet".into(),
        t0,
        planned_secs: 3600.0,
    };
    store
        .start_soak(
            &SoakRecord {
                meta: meta.clone(),
                baselines: Baselines::default(),
            },
            t0,
        )
        .await
        .expect("soak");
    let max_gap = std::time::Duration::from_secs(30);
    for (k, snap) in history.iter().enumerate() {
        let prev = k.checked_sub(1).map(|p| &history[p]);
        let (rec, _) = CycleRecord::evaluate(&cfg, prev, snap, max_gap);
        store.append(&meta.id, &rec, snap).await.expect("append");
    }
    let kept = store.last_snapshots(&meta.id, 3).await.expect("snapshots");
    assert_eq!(kept.len(), 3);
    let newest = &kept[2];
    assert!(!newest.consumers_elided);
    assert!(matches!(
        newest.consumer("AA_CORE_HOT", "fleet-39"),
        ConsumerLookup::Found(_)
    ));
    for older in &kept[..2] {
        assert!(older.consumers_elided);
        // Left out is not missing: a replay of it reads unknown, never a failure.
        assert!(matches!(
            older.consumer("AA_CORE_HOT", "fleet-39"),
            ConsumerLookup::Unknown(_)
        ));
    }
    store.close().await;
}
