//! Benchmark: a 48 h soak at 10 s (17,280 cycles) in a JetStream state.
//!
//! `cargo bench --features testkit --bench state_jetstream` (NATS with
//! JetStream at NATS_URL, default nats://127.0.0.1:4222) prints: time per
//! appended cycle (cycle record + snapshot, each acknowledged), the bytes the
//! streams hold after 48 h, and the time to load every cycle record (what a
//! new leader, `report` and `check --soak` do). The bucket and streams are
//! named for this run and removed at the end.

use std::path::Path;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use soakwatch::config::{Config, StateBackend};
use soakwatch::soak::timeline::{CycleRecord, SoakMeta};
use soakwatch::state::jetstream::{Access, JetStreamStore};
use soakwatch::state::store::{Baselines, SoakRecord};
use soakwatch::testkit::synthetic::Scenario;
use soakwatch::watch;

fn main() {
    soakwatch::install_crypto_provider();
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let bucket = format!("swbench_{}", std::process::id());
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/checks.toml"))
        .expect("checks.toml")
        + &format!(
            "\n[state]\nbackend = \"jetstream\"\nnats_url = \"{url}\"\nbucket = \"{bucket}\"\n"
        );
    let cfg = Config::from_text(Path::new("checks.toml"), &text, &|_: &str| None).expect("config");
    assert_eq!(cfg.state.backend, StateBackend::JetStream);
    let t0 = Utc
        .with_ymd_and_hms(2026, 10, 2, 17, 8, 59)
        .single()
        .expect("t0");
    let scenario = Scenario {
        t0,
        interval_secs: 10.0,
        per_interval: 2.0,
        faults: vec![],
    };
    let history = scenario.history(&cfg, 48.0);
    let policy = watch::policy(&cfg);
    let meta = SoakMeta {
        id: "bench".into(),
        name: "bench".into(),
        t0,
        planned_secs: 48.0 * 3600.0,
    };
    let cycles: Vec<CycleRecord> = history
        .iter()
        .enumerate()
        .map(|(k, s)| {
            CycleRecord::evaluate(
                &cfg,
                k.checked_sub(1).map(|p| &history[p]),
                s,
                policy.max_gap,
            )
            .0
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        // Shared: the benchmark writes without a lease (no watcher runs).
        drop(JetStreamStore::open(&cfg.state, Access::Leader).await.expect("create"));
        let store = JetStreamStore::open(&cfg.state, Access::Shared).await.expect("open");
        store
            .start_soak(&SoakRecord { meta: meta.clone(), baselines: Baselines::default() }, t0)
            .await
            .expect("soak");
        let t = Instant::now();
        for (rec, snap) in cycles.iter().zip(history.iter()) {
            store.append(&meta.id, rec, snap).await.expect("append");
        }
        let per = t.elapsed().as_secs_f64() * 1e6 / cycles.len() as f64;
        println!("jetstream state: {per:.0} us per appended cycle (cycle + snapshot, both acknowledged, R1)");
        let client = async_nats::connect(&url).await.expect("nats");
        let js = async_nats::jetstream::new(client);
        for name in [format!("{bucket}_cycles"), format!("{bucket}_snapshots")] {
            let mut s = js.get_stream(&name).await.expect("stream");
            let st = s.info().await.expect("info").state.clone();
            println!("  {name}: {} messages, {:.1} MB after 48 h", st.messages, st.bytes as f64 / 1e6);
        }
        let t = Instant::now();
        let loaded = store.cycles(&meta.id).await.expect("cycles");
        println!(
            "resume / report: load {} cycle records in {:.0} ms",
            loaded.len(),
            t.elapsed().as_secs_f64() * 1e3
        );
        let _ = js.delete_key_value(&bucket).await;
        let _ = js.delete_stream(format!("{bucket}_cycles")).await;
        let _ = js.delete_stream(format!("{bucket}_snapshots")).await;
    });
}
