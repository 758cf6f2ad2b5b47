//! Benchmark: one cycle over a fleet of durables on the local NATS.
//!
//! `cargo bench --features testkit --bench fleet` (NATS with JetStream at
//! NATS_URL, default nats://127.0.0.1:4222) creates, for each size, hot
//! streams with pull durables (1 on 1 stream; then 100, 1,000 and 2,000 over
//! 10 streams), a config whose `[[consumers]]` selector takes every durable
//! on them, and times (median of 15 cycles):
//! - the consumer listings alone (one paged `CONSUMER.LIST` per stream),
//! - the whole probe round (`Prober::snapshot`: stream infos, listings, and
//!   the metrics probe against a closed port, which fails at once),
//! - the evaluation (`evaluate` over the last two snapshots),
//! - the compact cycle record, and the encoded sizes of the record and of
//!   the snapshot,
//! - appending each cycle (record + snapshot) to a SQLite state, and the
//!   file's size per cycle (older snapshots lose a fleet's listing),
//! - the real daemon: `soakwatch watch` on that config at a 2 s interval,
//!   its own `soakwatch_cycle_duration_seconds` (probes, evaluation, state,
//!   summary, alerts, status) over 10 cycles, and its resident memory.
//!
//! Everything it creates is named for this run and deleted at the end.

use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use chrono::Utc;
use soakwatch::config::Config;
use soakwatch::evaluate::evaluate;
use soakwatch::probe::{nats as nats_probe, Prober};
use soakwatch::soak::timeline::CycleRecord;

const CYCLES: usize = 15;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn config_text(url: &str, names: &str, prefix: &str, streams: &[String]) -> String {
    let hot: String = streams
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!("[[streams.hot]]\nname = \"{s}\"\nsubjects = [\"{prefix}.s{i}.>\"]\n\n")
        })
        .collect();
    let quoted: Vec<String> = streams.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        r#"[soak]
name = "fleet-bench"

[nats]
url = "{url}"

[streams.legacy]
name = "{names}_LEGACY"
subjects = ["{prefix}.legacy.>"]

{hot}[streams.dlq]
name = "{names}_DLQ"
subjects = ["{prefix}.dlq.>"]

[[consumers]]
streams = [{}]
ack_policy = "explicit"
max_deliver = 5

[metrics]
url = "http://127.0.0.1:1/metrics"
messages_counter = "messages_total"
"#,
        quoted.join(", ")
    )
}

async fn make_stream(js: &jetstream::Context, name: &str, subjects: Vec<String>) {
    js.create_stream(stream::Config {
        name: name.to_string(),
        subjects,
        storage: stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("create stream {name}: {e}"));
}

struct Figures {
    durables: usize,
    streams: usize,
    listing_ms: f64,
    probe_ms: f64,
    evaluate_ms: f64,
    record_ms: f64,
    record_bytes: usize,
    snapshot_bytes: usize,
    append_ms: f64,
    db_bytes_per_cycle: f64,
    daemon_cycle_ms: (f64, f64),
    daemon_rss_mib: f64,
}

/// A sample's value in an exposition (first series of `name`).
fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Runs `soakwatch watch` on `text` for 10 cycles: (median, max) of its
/// cycle duration in ms, and its resident memory at the end (MiB).
async fn daemon_cycles(text: &str) -> ((f64, f64), f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("fleet.toml");
    let state = dir.path().join("state.sqlite");
    let addr = dir.path().join("addr");
    let watch = format!(
        "\n[watch]\ninterval = \"2s\"\nstate = \"{}\"\nreports_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\n",
        state.display(),
        dir.path().join("reports").display()
    );
    std::fs::write(&config, format!("{text}{watch}")).expect("config");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_soakwatch"))
        .arg("watch")
        .arg("--config")
        .arg(&config)
        .arg("--addr-file")
        .arg(&addr)
        // The metrics endpoint is a closed port: start anyway.
        .arg("--force")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr file"))
        .kill_on_drop(true)
        .spawn()
        .expect("start soakwatch watch");
    let http = reqwest::Client::new();
    let (mut seen, mut durations) = (0.0, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(90);
    while durations.len() < 10 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Some(port) = std::fs::read_to_string(&addr)
            .ok()
            .and_then(|a| a.trim().rsplit(':').next()?.parse::<u16>().ok())
        else {
            continue;
        };
        let Ok(resp) = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
        else {
            continue;
        };
        let body = resp.text().await.unwrap_or_default();
        let cycles = metric(&body, "soakwatch_cycles_total").unwrap_or(0.0);
        if cycles > seen {
            seen = cycles;
            // The first cycle opens connections and the state: left out.
            if cycles > 1.0 {
                if let Some(d) = metric(&body, "soakwatch_cycle_duration_seconds") {
                    durations.push(d * 1000.0);
                }
            }
        }
    }
    let rss = child
        .id()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(-1.0, |kb| kb / 1024.0);
    let _ = child.start_kill();
    let _ = child.wait().await;
    assert!(
        !durations.is_empty(),
        "the daemon ran no cycle:\n{}",
        std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default()
    );
    let max = durations.iter().copied().fold(0.0, f64::max);
    ((median(durations), max), rss)
}

/// Appends the cycles to a fresh SQLite state: median ms per append, and
/// the file's bytes per cycle (WAL checkpointed).
async fn sqlite_append(cycles: &[(CycleRecord, soakwatch::sample::Snapshot)]) -> (f64, f64) {
    use soakwatch::soak::timeline::SoakMeta;
    use soakwatch::state::store::{Baselines, SoakRecord, Store};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.sqlite");
    let store = Store::open(&path).await.expect("open state");
    let t0 = cycles[0].0.at;
    let meta = SoakMeta {
        id: "fleet".into(),
        name: "fleet".into(),
        t0,
        planned_secs: 3600.0,
    };
    let rec = SoakRecord {
        meta: meta.clone(),
        baselines: Baselines::default(),
    };
    store.start_soak(&rec, t0).await.expect("soak");
    let mut times = Vec::new();
    for (rec, snap) in cycles {
        let t = Instant::now();
        store.append(&meta.id, rec, snap).await.expect("append");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    store.close().await;
    let bytes: u64 = std::fs::read_dir(dir.path())
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    (median(times), bytes as f64 / cycles.len() as f64)
}

async fn run_size(
    js: &jetstream::Context,
    url: &str,
    n_streams: usize,
    per_stream: usize,
) -> Figures {
    let prefix = format!("SWFB{}N{}", std::process::id(), n_streams * per_stream);
    let subj = prefix.to_lowercase();
    let names: Vec<String> = (0..n_streams).map(|i| format!("{prefix}_HOT{i}")).collect();
    make_stream(
        js,
        &format!("{prefix}_LEGACY"),
        vec![format!("{subj}.legacy.>")],
    )
    .await;
    make_stream(js, &format!("{prefix}_DLQ"), vec![format!("{subj}.dlq.>")]).await;
    for (i, s) in names.iter().enumerate() {
        make_stream(js, s, vec![format!("{subj}.s{i}.>")]).await;
        let st = js.get_stream(s).await.expect("stream");
        for j in 0..per_stream {
            st.create_consumer(consumer::pull::Config {
                durable_name: Some(format!("d{i}-{j:04}")),
                filter_subject: format!("{subj}.s{i}.c{j}"),
                ack_policy: consumer::AckPolicy::Explicit,
                max_deliver: 5,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("create durable: {e}"));
        }
    }
    let text = config_text(url, &prefix, &subj, &names);
    let cfg = Config::from_text(Path::new("fleet.toml"), &text, &|_: &str| None)
        .unwrap_or_else(|e| panic!("config: {e}"));
    let prober = Prober::new(cfg.clone()).expect("prober");
    let (mut listing, mut probe, mut eval, mut record) = (vec![], vec![], vec![], vec![]);
    let mut prev = prober.snapshot(Utc::now(), &[]).await;
    let (mut record_bytes, mut snapshot_bytes) = (0, 0);
    let mut kept = Vec::new();
    for _ in 0..CYCLES {
        let t = Instant::now();
        let listings = futures::future::join_all(
            names
                .iter()
                .map(|s| nats_probe::consumer_listing(js, s, Duration::from_secs(5))),
        )
        .await;
        listing.push(t.elapsed().as_secs_f64() * 1000.0);
        let listed: usize = listings
            .iter()
            .map(|l| l.as_ref().ok().and_then(|l| l.as_ref()).map_or(0, Vec::len))
            .sum();
        assert_eq!(listed, n_streams * per_stream, "listing saw every durable");

        let t = Instant::now();
        let snap = prober.snapshot(Utc::now(), &[]).await;
        probe.push(t.elapsed().as_secs_f64() * 1000.0);

        let t = Instant::now();
        let history = [prev, snap];
        let verdicts = evaluate(&cfg, &history);
        eval.push(t.elapsed().as_secs_f64() * 1000.0);
        let lag = verdicts
            .iter()
            .find(|v| v.id == soakwatch::verdict::CriterionId::ConsumerLag)
            .expect("consumer_lag");
        assert_eq!(
            lag.instances.len(),
            n_streams * per_stream,
            "{}",
            lag.evidence
        );

        let t = Instant::now();
        let rec = CycleRecord::from_verdicts(&cfg, &history[1], &verdicts);
        let rec_bytes = rmp_serde::to_vec_named(&rec).expect("record").len();
        record.push(t.elapsed().as_secs_f64() * 1000.0);
        record_bytes = rec_bytes;
        snapshot_bytes = rmp_serde::to_vec_named(&history[1])
            .expect("snapshot")
            .len();
        let [_, snap] = history;
        kept.push((rec, snap.clone()));
        prev = snap;
    }
    let (append_ms, db_bytes_per_cycle) = sqlite_append(&kept).await;
    let (daemon_cycle_ms, daemon_rss_mib) = daemon_cycles(&text).await;
    for s in names
        .iter()
        .chain([&format!("{prefix}_LEGACY"), &format!("{prefix}_DLQ")])
    {
        let _ = js.delete_stream(s).await;
    }
    Figures {
        durables: n_streams * per_stream,
        streams: n_streams,
        listing_ms: median(listing),
        probe_ms: median(probe),
        evaluate_ms: median(eval),
        record_ms: median(record),
        record_bytes,
        snapshot_bytes,
        append_ms,
        db_bytes_per_cycle,
        daemon_cycle_ms,
        daemon_rss_mib,
    }
}

#[tokio::main]
async fn main() {
    soakwatch::install_crypto_provider();
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let client = async_nats::connect(&url).await.expect("connect to NATS");
    let js = jetstream::new(client);
    println!("durables streams | listings ms | probe round ms | evaluate ms | record ms | append ms | sum ms | record B | snapshot B | state B/cycle | daemon cycle ms (median, max) | daemon RSS MiB");
    for (streams, per) in [(1, 1), (10, 10), (10, 100), (10, 200)] {
        let f = run_size(&js, &url, streams, per).await;
        println!(
            "{:>8} {:>7} | {:>11.2} | {:>14.2} | {:>11.2} | {:>9.3} | {:>9.2} | {:>6.2} | {:>8} | {:>10} | {:>13.0} | {:>8.1}, {:>8.1} | {:>6.1}",
            f.durables,
            f.streams,
            f.listing_ms,
            f.probe_ms,
            f.evaluate_ms,
            f.record_ms,
            f.append_ms,
            f.probe_ms + f.evaluate_ms + f.record_ms + f.append_ms,
            f.record_bytes,
            f.snapshot_bytes,
            f.db_bytes_per_cycle,
            f.daemon_cycle_ms.0,
            f.daemon_cycle_ms.1,
            f.daemon_rss_mib
        );
    }
}
