//! Benchmark: the watch daemon itself over a simulated 48 h at 10 s.
//!
//! `cargo bench --features testkit --bench daemon` runs the real daemon loop
//! ([`soakwatch::watch::Watch`] with its SQLite state, checkpoint reports,
//! alert engine and rollback triggers) on a virtual clock, fed by the
//! synthetic Phase B scenario (a restart, a NATS outage, a DLQ burst), for
//! 17,280 cycles. Every 1,440 cycles (4 h of soak) it prints the soak's age,
//! the process's resident memory and the CPU time per cycle over the last
//! block: flat memory and a per-cycle cost that does not grow with the
//! soak's age are what it shows. No network: the scenario stands in for the
//! probes, so the figures are soakwatch's own cost.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use soakwatch::config::Config;
use soakwatch::sample::Snapshot;
use soakwatch::testkit::synthetic::Scenario;
use soakwatch::watch::{BoxFuture, ManualClock, SampleSource, SharedStatus, StartOptions, Watch};

/// 48 h at 10 s; `SOAKWATCH_BENCH_HOURS` runs longer or shorter soaks.
fn cycles() -> u64 {
    std::env::var("SOAKWATCH_BENCH_HOURS")
        .ok()
        .and_then(|h| h.parse::<u64>().ok())
        .unwrap_or(48)
        * 360
}
const BLOCK: u64 = 1_440;

/// A `/proc/self/status` figure in KiB (`VmRSS`: resident now, `VmHWM`: peak).
fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) of this process.
fn cpu() -> Duration {
    // SAFETY: getrusage only writes into the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// The scenario as the daemon's sample source; prints a row every block.
struct Measured {
    cfg: Config,
    scenario: Scenario,
    n: AtomicU64,
    last: Mutex<Duration>,
}

impl SampleSource for Measured {
    fn snapshot<'a>(
        &'a self,
        at: DateTime<Utc>,
        _since: &'a [DateTime<Utc>],
    ) -> BoxFuture<'a, Snapshot> {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        if n > 0 && n.is_multiple_of(BLOCK) {
            let now = cpu();
            let mut last = self.last.lock().expect("lock");
            let per = (now - *last).as_secs_f64() * 1e6 / BLOCK as f64;
            *last = now;
            println!(
                "| {:>5.0} | {:>6} | {:>8.1} | {:>7.0} |",
                (at - self.scenario.t0).num_seconds() as f64 / 3600.0,
                n,
                status_kib("VmRSS:") as f64 / 1024.0,
                per
            );
        }
        let secs = (at - self.scenario.t0).num_milliseconds() as f64 / 1000.0;
        // The outage in the scenario is NATS down, not a sampling gap: every
        // instant has a snapshot.
        let snap = self
            .scenario
            .snapshot(&self.cfg, secs)
            .expect("no sampling gap in this scenario");
        Box::pin(async move { snap })
    }
}

fn main() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/checks.toml"))
        .expect("checks.toml");
    let mut cfg =
        Config::from_text(Path::new("checks.toml"), &text, &|_: &str| None).expect("config");
    let dir = tempfile::tempdir().expect("tmp");
    cfg.watch.state = dir.path().join("state.sqlite");
    cfg.watch.reports_dir = dir.path().join("reports");
    cfg.watch.listen = None;
    let t0 = Utc
        .with_ymd_and_hms(2026, 10, 2, 17, 8, 59)
        .single()
        .expect("t0");
    let source = Measured {
        cfg: cfg.clone(),
        scenario: Scenario::phase_b_benchmark(t0),
        n: AtomicU64::new(0),
        last: Mutex::new(cpu()),
    };
    println!(
        "the daemon loop over {} h at 10 s ({} cycles, virtual clock, SQLite state)",
        cycles() / 360,
        cycles()
    );
    println!("| soak h | cycles | RSS (MB) | CPU us/cycle |");
    println!("|-------:|-------:|---------:|-------------:|");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let summary = rt.block_on(async {
        let w = Watch::open(cfg.clone(), SharedStatus::default())
            .await
            .expect("open");
        w.run(
            &source,
            &ManualClock::new(t0),
            StartOptions {
                t0: Some(t0),
                max_cycles: Some(cycles()),
                ..Default::default()
            },
            tokio_util::sync::CancellationToken::new(),
        )
        .await
        .expect("run")
    });
    println!(
        "done: {} samples, verdict {} ({} incident(s), {} spans), peak RSS {:.1} MB",
        summary.samples,
        summary.verdict.as_str(),
        summary.incidents.len(),
        summary.spans.len(),
        status_kib("VmHWM:") as f64 / 1024.0
    );
}
