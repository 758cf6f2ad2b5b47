//! Benchmark: the soak over 48 h at a 10 s interval (17,280 samples).
//!
//! `cargo bench --features testkit --bench soak` prints: replaying the whole history (evaluate
//! every cycle + summarise), summarising alone (what the daemon does after
//! each cycle), rendering a checkpoint report with its charts, and the state
//! database: time per appended cycle and its size after 48 h with thinning.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use soakwatch::config::Config;
use soakwatch::soak::running::RunningSummary;
use soakwatch::soak::timeline::{replay, summarize, CycleRecord, SoakMeta};
use soakwatch::state::store::{Baselines, SoakRecord, Store};
use soakwatch::testkit::synthetic::Scenario;
use soakwatch::watch;

fn main() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/checks.toml"))
        .expect("checks.toml");
    let cfg = Config::from_text(Path::new("checks.toml"), &text, &|_: &str| None).expect("config");
    let t0 = Utc
        .with_ymd_and_hms(2026, 10, 2, 17, 8, 59)
        .single()
        .expect("t0");
    let h = 3600.0;
    let scenario = Scenario::phase_b_benchmark(t0);
    let meta = SoakMeta {
        id: "bench".into(),
        name: "bench".into(),
        t0,
        planned_secs: 48.0 * h,
    };
    let policy = watch::policy(&cfg);
    let history = scenario.history(&cfg, 48.0);
    println!("history: {} snapshots (48 h at 10 s)", history.len());

    let mut best = Duration::MAX;
    let mut summary = None;
    for _ in 0..5 {
        let t = Instant::now();
        let s = replay(&cfg, &meta, &history, &policy);
        best = best.min(t.elapsed());
        summary = Some(s);
    }
    println!(
        "replay 48 h (evaluate every cycle + summarise): {:.1} ms (best of 5)",
        best.as_secs_f64() * 1e3
    );

    let mut cycles = Vec::with_capacity(history.len());
    let mut last = Vec::new();
    for (k, s) in history.iter().enumerate() {
        let (rec, v) = CycleRecord::evaluate(
            &cfg,
            k.checked_sub(1).map(|p| &history[p]),
            s,
            policy.max_gap,
        );
        cycles.push(rec);
        last = v;
    }
    let mut best = Duration::MAX;
    for _ in 0..10 {
        let t = Instant::now();
        std::hint::black_box(summarize(
            &meta,
            &cycles,
            &last,
            history.last().cloned(),
            &policy,
        ));
        best = best.min(t.elapsed());
    }
    println!(
        "summarise 17,280 cycles from scratch (report, check --soak): {:.2} ms (best of 10)",
        best.as_secs_f64() * 1e3
    );

    // What the daemon does per cycle: fold the new cycle into the running
    // summary and draw the summary, at the start and at the end of 48 h.
    for (label, upto) in [("at 1 h", 360usize), ("at 48 h", cycles.len() - 100)] {
        let mut running = RunningSummary::new(&policy, Duration::from_secs(600));
        for c in &cycles[..upto] {
            running.push(c.clone());
        }
        let mut times = Vec::with_capacity(100);
        for c in &cycles[upto..upto + 100] {
            let t = Instant::now();
            running.push(c.clone());
            std::hint::black_box(running.summary(&meta, &last, history.last().cloned()));
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "daemon cycle {label}: fold one cycle + summary {:.3} ms (median of 100)",
            times[50].as_secs_f64() * 1e3
        );
    }

    let dir = tempfile::tempdir().expect("tmp");
    if let Some(s) = &summary {
        let t = Instant::now();
        watch::write_summary_report(&cfg, s, "48h checkpoint", &dir.path().join("bench-48h.md"))
            .expect("report");
        let bytes: u64 = std::fs::read_dir(dir.path())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        println!(
            "checkpoint report + 5 charts: {:.1} ms, {} KB on disk",
            t.elapsed().as_secs_f64() * 1e3,
            bytes / 1024
        );
    }

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let path = dir.path().join("state.sqlite");
        let store = Store::open(&path).await.expect("store");
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
        let t = Instant::now();
        for (k, (rec, snap)) in cycles.iter().zip(history.iter()).enumerate() {
            store.append(&meta.id, rec, snap).await.expect("append");
            if (k + 1) % 360 == 0 {
                let before = snap.taken_at - chrono::Duration::hours(6);
                store.thin(&meta.id, before, Duration::from_secs(300)).await.expect("thin");
            }
        }
        let per = t.elapsed().as_secs_f64() * 1e6 / cycles.len() as f64;
        println!("state db: {per:.0} us per appended cycle (cycle + snapshot, one transaction, WAL)");
        store.close().await;
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!(
            "state db after 48 h: {:.1} MB ({} cycle records kept, full snapshots for the last 6 h, 1 per 5 min before)",
            size as f64 / 1e6,
            cycles.len()
        );
        let store = Store::open(&path).await.expect("reopen");
        let t = Instant::now();
        let mut running = RunningSummary::new(&policy, Duration::from_secs(600));
        store
            .for_each_cycle(&meta.id, |c| running.push(c))
            .await
            .expect("cycles");
        println!(
            "resume: read and fold {} cycle records in {:.0} ms",
            running.samples(),
            t.elapsed().as_secs_f64() * 1e3
        );
        store.close().await;
    });
}
