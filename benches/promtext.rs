//! Throughput benchmark for `soakwatch::promtext::parse` on a large, realistic
//! exposition (100,000 series), so parser regressions show up as MB/s.
//!
//! Plain `fn main()` (registered with `harness = false`); run with
//! `cargo bench --bench promtext`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Instant;

use soakwatch::promtext::parse;

const TOTAL_SERIES: usize = 100_000;
/// Histogram label sets: each gives 12 `_bucket` + `_sum` + `_count` = 14
/// series, 2,857 sets = 39,998 series; counters make up the rest (60,002).
const HISTOGRAM_SETS: usize = 2_857;
const ITERATIONS: usize = 20;

const BUCKETS: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];

/// Deterministic PRNG so every run parses the same text.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Builds the exposition and returns it with its number of series.
fn generate() -> (String, usize) {
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let mut out = String::with_capacity(32 << 20);
    let mut series = 0;

    // ~60,000 counter samples with 4 labels, over 6 families.
    let counter_series = TOTAL_SERIES - HISTOGRAM_SETS * (BUCKETS.len() + 2);
    let counters = [
        (
            "normalize_hrv_messages_total",
            "Total number of HRV messages processed by normalize service",
        ),
        (
            "ingest_sleep_messages_total",
            "Total number of sleep messages ingested",
        ),
        (
            "nats_consumer_delivered_total",
            "Messages delivered to the consumer",
        ),
        (
            "nats_consumer_acked_total",
            "Messages acknowledged by the consumer",
        ),
        ("http_requests_total", "HTTP requests by route and status"),
        (
            "outbox_events_published_total",
            "Outbox events published to JetStream",
        ),
    ];
    let results = ["success", "error", "retry", "dropped", "timeout"];
    let streams = ["AA_CORE_HOT", "AA_CORE_COLD", "AA_DLQ", "AA_AUDIT"];
    for (f, (name, help)) in counters.into_iter().enumerate() {
        let per_family =
            counter_series / counters.len() + usize::from(f < counter_series % counters.len());
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for n in 0..per_family {
            let v = rng.next();
            let _ = writeln!(
                out,
                "{name}{{result=\"{}\",subject=\"athlete-ally.hrv.raw-received.{}\",stream=\"{}\",durable=\"normalize-hrv-durable-{}\"}} {}",
                results[n % results.len()],
                n / 20,
                streams[(n / 5) % streams.len()],
                n % 7,
                v % 10_000_000,
            );
            series += 1;
        }
    }

    // ~40,000 histogram series (_bucket, _sum, _count) over 4 families.
    let histograms = [
        "normalize_hrv_processing_duration_seconds",
        "http_request_duration_seconds",
        "nats_publish_latency_seconds",
        "db_query_duration_seconds",
    ];
    let per_set = BUCKETS.len() + 2;
    let routes = [
        "/api/v1/hrv",
        "/api/v1/sleep",
        "/health",
        "/metrics",
        "/api/v1/athletes/{id}",
    ];
    let methods = ["GET", "POST", "PUT"];
    for (f, name) in histograms.into_iter().enumerate() {
        let sets_per_family =
            HISTOGRAM_SETS / histograms.len() + usize::from(f < HISTOGRAM_SETS % histograms.len());
        let _ = writeln!(out, "# HELP {name} Duration histogram of {name}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for n in 0..sets_per_family {
            let labels = format!(
                "method=\"{}\",route=\"{}\",status=\"{}\",pod=\"normalize-7d9f8c6b5-{:05x}\",instance=\"10.42.{}.{}:9464\"",
                methods[n % methods.len()],
                routes[(n / 3) % routes.len()],
                [200, 201, 400, 404, 500][(n / 15) % 5],
                n / 75,
                n / 75 % 256,
                n % 250,
            );
            let mut cumulative = 0u64;
            for le in BUCKETS {
                cumulative += rng.next() % 1000;
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
            }
            let sum = cumulative as f64 * 0.0371;
            let _ = writeln!(out, "{name}_sum{{{labels}}} {sum:e}");
            let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
            series += per_set;
        }
    }
    (out, series)
}

fn main() {
    let (text, series) = generate();
    let mb = text.len() as f64 / 1e6;
    println!(
        "exposition: {series} series, {:.1} MB, {} lines",
        mb,
        text.lines().count()
    );

    // Warm up and check the input parses cleanly.
    let warm = parse(&text);
    assert!(
        warm.errors.is_empty(),
        "generated exposition has errors: {:?}",
        &warm.errors[..warm.errors.len().min(3)]
    );
    assert_eq!(warm.samples.len(), series);
    assert_eq!(series, TOTAL_SERIES);
    drop(warm);

    let start = Instant::now();
    let mut samples = 0;
    for _ in 0..ITERATIONS {
        let e = parse(black_box(&text));
        samples += black_box(e).samples.len();
    }
    let secs = start.elapsed().as_secs_f64();
    let per_iter = secs / ITERATIONS as f64;
    println!(
        "parse: {ITERATIONS} iterations, {:.1} ms each, {:.0} MB/s, {:.0} series/s ({samples} samples total)",
        per_iter * 1e3,
        mb / per_iter,
        series as f64 / per_iter,
    );
}
