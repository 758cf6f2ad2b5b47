//! Benchmark: peak memory of the /metrics probe for the largest bodies (at the
//! cap and over it, chunked and with Content-Length) and the time the log tail
//! takes to catch up after a 500 MB burst.
//!
//! Run with `cargo bench --features testkit --bench probes`. Needs nothing but loopback: each case
//! runs in a child process of this binary (peak RSS is a per-process
//! high-water mark), serving /metrics from an in-process loopback server.

use std::io::Write;
use std::time::{Duration, Instant};

use chrono::Utc;
use soakwatch::config::Config;
use soakwatch::testkit::demo::{replica_config, ReplicaFiles};
use soakwatch::testkit::replica::ReplicaNames;

const CASE_VAR: &str = "SOAKWATCH_PROBES_BENCH_CASE";
const CAP: usize = 16 * 1024 * 1024;

/// Peak resident set size of this process (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(-1.0, |kb| kb / 1024.0)
}

fn config(dir: &std::path::Path, metrics_url: &str) -> Config {
    let names = ReplicaNames::random();
    let files = ReplicaFiles::in_dir(dir);
    std::fs::write(
        &files.config,
        replica_config(
            &names,
            "nats://127.0.0.1:1",
            "postgres://postgres@127.0.0.1:1/x",
            metrics_url,
            &files,
            Utc::now(),
        ),
    )
    .expect("config");
    Config::load(&files.config).expect("config valid")
}

fn metrics_case(total: usize, content_length: bool) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let port = soakwatch::testkit::standin::serve_big_metrics(total, content_length).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), &format!("http://127.0.0.1:{port}/metrics"));
        let http = soakwatch::probe::metrics::http_client(cfg.probe_timeout).expect("http");
        let t = Instant::now();
        let r = tokio::time::timeout(
            cfg.probe_timeout,
            soakwatch::probe::metrics::probe(&http, &cfg),
        )
        .await;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let outcome = match r {
            Err(_) => "probe timeout".to_string(),
            Ok(Ok(m)) => format!("ok, {} bytes parsed", m.body_bytes),
            Ok(Err(soakwatch::sample::ProbeFailure {
                error: soakwatch::sample::ProbeError::OverCap { .. },
                ..
            })) => "refused over the cap".into(),
            Ok(Err(f)) => format!("error: {f}"),
        };
        println!(
            "| {:>9} MB | {:<14} | {:>8.0} | {:>13.1} | {outcome} |",
            total / 1_000_000,
            if content_length {
                "Content-Length"
            } else {
                "chunked"
            },
            ms,
            peak_rss_mib()
        );
    });
}

fn log_case() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), "http://127.0.0.1:1/metrics");
    let log_cfg = cfg.log.clone().expect("the bench config has [log]");
    let log = log_cfg.path.clone();
    std::fs::write(&log, "start\n").expect("log");
    let mut tail = soakwatch::probe::log::LogTail::default();
    let far = || Instant::now() + Duration::from_secs(3600);
    tail.poll(&log_cfg, far()).expect("first poll");
    let total: usize = 500_000_000;
    let filler = "2026-11-27T06:00:00.000Z [normalize] processed HRV event for user 0000 ok\n";
    let block = filler.repeat((1 << 20) / filler.len());
    {
        let mut f = std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .append(true)
                .open(&log)
                .expect("open"),
        );
        let mut written = 0;
        while written < total {
            if written / block.len() == total / block.len() / 2 {
                f.write_all(
                    b"[event-bus] AA_CORE_HOT unavailable, falling back to ATHLETE_ALLY_EVENTS\n",
                )
                .expect("write");
            }
            f.write_all(block.as_bytes()).expect("write");
            written += block.len();
        }
    }
    let t = Instant::now();
    let mut polls = 0;
    let mut worst = 0.0f64;
    loop {
        let p = Instant::now();
        let s = tail.poll(&log_cfg, far()).expect("poll");
        worst = worst.max(p.elapsed().as_secs_f64());
        polls += 1;
        if s.backlog_bytes == 0 {
            println!(
                "| 500 MB burst, {} MiB per cycle | {polls} cycles | {:.2} s reading | {:.2} s worst cycle | {} fallback | {:.1} MiB peak RSS |",
                log_cfg.max_scan_bytes >> 20,
                t.elapsed().as_secs_f64(),
                worst,
                s.fallback_total,
                peak_rss_mib()
            );
            break;
        }
    }
}

fn main() {
    soakwatch::install_crypto_provider();
    match std::env::var(CASE_VAR).as_deref() {
        Ok("log") => return log_case(),
        Ok(case) => {
            let (total, cl) = case.split_once(':').expect("case total:framing");
            return metrics_case(total.parse().expect("total"), cl == "length");
        }
        Err(_) => {}
    }
    let me = std::env::current_exe().expect("own path");
    let run = |case: String| {
        let out = std::process::Command::new(&me)
            .env(CASE_VAR, &case)
            .output()
            .expect("child runs");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            eprintln!("case {case}: {}", String::from_utf8_lossy(&out.stderr));
        }
    };
    println!("/metrics probe, default cap {CAP} bytes (16 MiB), one process per row\n");
    println!("|          body | framing        | wall ms | peak RSS MiB | outcome |");
    println!("|---------------|----------------|---------|--------------|---------|");
    for (total, framing) in [
        (CAP - 1024, "chunked"),
        (CAP - 1024, "length"),
        (CAP + (1 << 20), "chunked"),
        (CAP + (1 << 20), "length"),
        (300_000_000, "chunked"),
        (300_000_000, "length"),
    ] {
        run(format!("{total}:{framing}"));
    }
    println!("\nlog tail catching up after a burst (fallback line in the middle)\n");
    run("log".into());
}
