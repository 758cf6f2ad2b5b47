//! Benchmark: `check` wall time on a local replica beside each probe alone.
//!
//! Run with `cargo bench --features testkit --bench check`. Needs the machine's NATS and
//! PostgreSQL (scripts/ensure-services.sh). Provisions its own replica,
//! runs the stand-in in-process, and tears everything down at the end.

use std::time::{Duration, Instant};

use chrono::Utc;
use soakwatch::config::Config;
use soakwatch::probe::{self, Prober};
use soakwatch::testkit::demo::{replica_config, ReplicaFiles};
use soakwatch::testkit::replica::{self, HrvEvent, ReplicaNames};
use soakwatch::testkit::standin::{self, StandinOptions};

const ROUNDS: usize = 40;

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (pick(0.5), pick(0.95), v[v.len() - 1])
}

fn row(name: &str, samples: Vec<f64>) {
    let (p50, p95, max) = stats(samples);
    println!("| {name:<34} | {p50:>8.2} | {p95:>8.2} | {max:>8.2} |");
}

async fn time_it<F, Fut, T>(mut f: F) -> Vec<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut out = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        std::hint::black_box(f().await);
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    out
}

fn main() {
    soakwatch::install_crypto_provider();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let admin = std::env::var("DATABASE_ADMIN_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let names = ReplicaNames::random();
        let nats = async_nats::connect(&nats_url).await.expect("NATS running");
        replica::provision(&nats, &admin, &names)
            .await
            .expect("provision");
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ReplicaFiles::in_dir(dir.path());
        standin::write_default_env_file(&files.env_file).expect("env");
        let db_url = replica::replica_database_url(&admin, &names).expect("db url");
        let bound = standin::bind(StandinOptions {
            nats_url: nats_url.clone(),
            database_url: db_url.clone(),
            names: names.clone(),
            env_file: files.env_file.clone(),
            log_file: files.log_file.clone(),
            listen: "127.0.0.1:0".parse().expect("addr"),
        })
        .await
        .expect("stand-in");
        let metrics_url = format!("http://{}/metrics", bound.local_addr());
        let token = tokio_util::sync::CancellationToken::new();
        let service = tokio::spawn(bound.run(token.clone()));

        let js = async_nats::jetstream::new(nats.clone());
        let events = 500;
        for n in 0..events {
            replica::publish_hrv(&js, &names.hrv_subject, &HrvEvent::synthetic(n, &names.tag))
                .await
                .expect("publish");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;

        std::fs::write(
            &files.config,
            replica_config(&names, &nats_url, &db_url, &metrics_url, &files, Utc::now()),
        )
        .expect("config");
        let cfg = Config::load(&files.config).expect("config valid");
        let timeout = cfg.probe_timeout;

        println!("check on a local replica ({events} rows, {ROUNDS} rounds each), milliseconds\n");
        println!("| what                               |      p50 |      p95 |      max |");
        println!("|------------------------------------|----------|----------|----------|");
        row(
            "check (window 0s: connect + probes)",
            time_it(|| soakwatch::check::run(cfg.clone(), Duration::ZERO)).await,
        );
        let prober = Prober::new(cfg.clone()).expect("prober");
        let _ = prober.snapshot(Utc::now(), &[]).await;
        row(
            "snapshot, clients reused (daemon)",
            time_it(|| prober.snapshot(Utc::now(), &[])).await,
        );

        let client = probe::nats::connect(&cfg.nats, timeout)
            .await
            .expect("nats");
        let js = async_nats::jetstream::new(client);
        row(
            "  NATS connect",
            time_it(|| probe::nats::connect(&cfg.nats, timeout)).await,
        );
        row(
            "  stream info (1 stream)",
            time_it(|| probe::nats::stream_state(&js, &names.core_stream, timeout)).await,
        );
        row(
            "  consumer listing (1 stream)",
            time_it(|| probe::nats::consumer_listing(&js, &names.core_stream, timeout)).await,
        );
        let http = probe::metrics::http_client(timeout).expect("http");
        row(
            "  /metrics scrape + parse",
            time_it(|| probe::metrics::probe(&http, &cfg)).await,
        );
        let db_cfg = cfg
            .database
            .clone()
            .expect("the replica config has [database]");
        let log_cfg = cfg.log.clone().expect("the replica config has [log]");
        let env_cfg = cfg
            .service_env
            .clone()
            .expect("the replica config has [service_env]");
        let opts = probe::db::connect_options(&db_cfg, timeout).expect("pg opts");
        let since = [Utc::now() - chrono::Duration::minutes(5)];
        row(
            "  database (connect + 5 queries)",
            time_it(|| probe::db::probe(&opts, &db_cfg, Utc::now(), &since)).await,
        );
        let plain = opts.clone().ssl_mode(sqlx::postgres::PgSslMode::Disable);
        row(
            "  database, sslmode=disable",
            time_it(|| probe::db::probe(&plain, &db_cfg, Utc::now(), &since)).await,
        );
        let session = tokio::sync::Mutex::new(probe::db::DbSession::new(opts.clone()));
        row(
            "  database, connection kept",
            time_it(|| async {
                session
                    .lock()
                    .await
                    .probe(&db_cfg, Utc::now(), &since)
                    .await
            })
            .await,
        );
        // A fresh tail each round: the first cycle's scan of the recent tail.
        row(
            "  log scan",
            time_it(|| probe::log::probe(Default::default(), &log_cfg, timeout)).await,
        );
        row(
            "  env file",
            time_it(|| probe::service_env::probe(&env_cfg, std::time::Duration::from_secs(5)))
                .await,
        );

        token.cancel();
        let _ = service.await;
        replica::teardown(&nats, &admin, &names)
            .await
            .expect("teardown");
    });
}
