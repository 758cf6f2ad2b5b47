//! Benchmark: the per-message ledger (issue 23).
//!
//! `cargo bench --features testkit --bench ledger` prints:
//! 1. the pure accounting over a 48 h soak at 100 msg/s (17.28 M
//!    sequences, cycles of 1,000 new sequences, one row dropped in 10,000,
//!    one DLQ entry in 5,000, 5 % other subjects): time per cycle (p50, p99,
//!    max), the stored progress size, and the resident memory (VmHWM);
//! 2. with `LEDGER_BENCH_CATCHUP=N` (default 100000; 0 skips it): a
//!    restarted watcher's catch-up against the machine's NATS
//!    (NATS_URL) and PostgreSQL (DATABASE_ADMIN_URL): N messages in a
//!    stream, N rows in a table, one reconcile from nothing: messages per
//!    second. The stream and the table are named for this run and removed.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use soakwatch::ledger::account::{CycleInput, DlqEntry, LedgerProgress, Rules, StreamEntry};

const SEQS: u64 = 17_280_000;
const PER_CYCLE: u64 = 1_000;

fn vm(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string() + " kB")
        .unwrap_or_else(|| "?".into())
}

fn pure() {
    let t0: DateTime<Utc> = Utc
        .with_ymd_and_hms(2026, 10, 2, 17, 8, 59)
        .single()
        .expect("t0");
    let rules = Rules {
        tolerance: TimeDelta::seconds(2),
        grace: TimeDelta::seconds(80),
        skip_subjects: vec!["test.>".into()],
        skip_key_prefixes: vec![(0, "synthetic-".into())],
        show_unexplained: 10,
    };
    println!("ledger accounting, 48 h at 100 msg/s ({SEQS} sequences, {PER_CYCLE} per cycle):");
    println!("  resident before: {} (VmRSS)", vm("VmRSS:"));
    let mut p = LedgerProgress::starting_at(1);
    let deleted = BTreeSet::new();
    let mut times = Vec::with_capacity((SEQS / PER_CYCLE) as usize);
    let mut seq = 0u64;
    let mut build = Duration::ZERO;
    while seq < SEQS {
        let b = Instant::now();
        let now = t0 + TimeDelta::milliseconds((seq * 10) as i64);
        let mut msgs = Vec::with_capacity(PER_CYCLE as usize);
        let mut rows = HashMap::with_capacity(PER_CYCLE as usize);
        for s in seq + 1..=seq + PER_CYCLE {
            if s % 20 == 0 {
                continue; // another subject: a gap in the filtered read
            }
            let key = vec![
                format!("user-{}", s % 50_000),
                format!("2025-10-{:02}", 1 + s % 28),
            ];
            let published = t0 + TimeDelta::milliseconds((s * 10) as i64);
            if s % 5_000 == 7 {
                p.add_dlq(
                    s,
                    DlqEntry {
                        original_seq: Some(s),
                        key: None,
                    },
                );
            } else if s % 10_000 != 3 {
                rows.insert(key.clone(), published + TimeDelta::milliseconds(40));
            }
            msgs.push(StreamEntry {
                seq: s,
                published,
                subject: "athlete-ally.hrv.raw-received".into(),
                key: Ok(key),
            });
        }
        build += b.elapsed();
        let t = Instant::now();
        let keys = p.keys_to_look_up(&msgs, &rules);
        std::hint::black_box(keys.len());
        p.apply(
            CycleInput {
                covered_to: seq + PER_CYCLE,
                messages: &msgs,
                stream_first_seq: 1,
                deleted: &deleted,
                rows: &rows,
            },
            &rules,
            now,
        );
        times.push(t.elapsed());
        seq += PER_CYCLE;
    }
    times.sort();
    let pct = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    println!(
        "  per cycle (keys to look up + judge {PER_CYCLE} sequences): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; {} cycles",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        times.len()
    );
    println!(
        "  building the synthetic batches (not the ledger): {:.1} s",
        build.as_secs_f64()
    );
    let c = p.counts;
    println!(
        "  fates: written {} dead_lettered {} removed {} skipped {} in_flight {} unexplained {}",
        c.written,
        c.dead_lettered,
        c.removed,
        c.skipped,
        p.in_flight(),
        c.unexplained
    );
    let json = serde_json::to_vec(&p).expect("json").len();
    let mp = rmp_serde::to_vec_named(&p).expect("msgpack").len();
    println!("  stored progress: {json} bytes JSON, {mp} bytes MessagePack");
    println!(
        "  resident after: {} (VmRSS), peak {} (VmHWM)",
        vm("VmRSS:"),
        vm("VmHWM:")
    );
}

fn catchup(n: u64) {
    use async_nats::jetstream::{self, stream};
    use soakwatch::config::{KeyField, KeySource, LedgerConfig, LedgerDlqConfig};
    use sqlx::{AssertSqlSafe, Connection};

    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let db = std::env::var("DATABASE_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let tag = std::process::id();
    let (name, dlq, table) = (
        format!("LGBENCH_{tag}"),
        format!("LGBENCHDLQ_{tag}"),
        format!("lgbench_{tag}"),
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = async_nats::connect(&url).await.expect("nats");
        let js = jetstream::new(client.clone());
        for (s, subj) in [(&name, format!("lgb{tag}.>")), (&dlq, format!("lgbdlq{tag}.>"))] {
            js.create_stream(stream::Config {
                name: s.clone(),
                subjects: vec![subj],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .expect("stream");
        }
        let mut pg = sqlx::PgConnection::connect(&db).await.expect("pg");
        for stmt in soakwatch::testkit::replica::table_ddl(&table) {
            sqlx::query(AssertSqlSafe(stmt)).execute(&mut pg).await.expect("ddl");
        }
        let t = Instant::now();
        let subject = format!("lgb{tag}.hrv");
        let mut acks = Vec::new();
        for i in 0..n {
            let body = format!(r#"{{"eventId":"e{i}","payload":{{"userId":"u{i}","date":"2025-10-02","rMSSD":62}}}}"#);
            acks.push(js.publish(subject.clone(), body.into()).await.expect("publish"));
            if acks.len() >= 2_000 {
                for a in acks.drain(..) {
                    a.await.expect("ack");
                }
            }
        }
        for a in acks.drain(..) {
            a.await.expect("ack");
        }
        let sql = format!(
            r#"INSERT INTO {t} ("userId", date, rmssd) SELECT 'u' || g, DATE '2025-10-02', 62 FROM generate_series(0, {last}) g"#,
            t = soakwatch::sql::quote_ident(&table),
            last = n - 1
        );
        sqlx::query(AssertSqlSafe(sql)).execute(&mut pg).await.expect("rows");
        sqlx::query(AssertSqlSafe(format!("ANALYZE {}", soakwatch::sql::quote_ident(&table))))
            .execute(&mut pg)
            .await
            .expect("analyze");
        println!("catch-up setup: {n} messages + rows in {:.1} s", t.elapsed().as_secs_f64());
        let key = vec![
            KeyField { column: "userId".into(), source: KeySource::Pointer("/payload/userId".into()) },
            KeyField { column: "date".into(), source: KeySource::Pointer("/payload/date".into()) },
        ];
        let mut ledgers = Vec::new();
        for batch in [1_000usize, 5_000] {
            let cfg = LedgerConfig {
                stream: name.clone(),
                durable: "none".into(),
                filter_subject: Some(subject.clone()),
                start_seq: None,
                table: table.clone(),
                key: key.clone(),
                write_time_column: "updatedAt".into(),
                tolerance: Duration::from_secs(3600),
                skip_subjects: Vec::new(),
                skip_key_prefixes: Vec::new(),
                dlq: LedgerDlqConfig { stream: dlq.clone(), subject: None, original_seq_header: None, key: key.clone() },
                advisories_stream: None,
                batch_size: batch,
                cycle_budget: Duration::from_secs(3600),
                in_flight_grace: Duration::from_secs(80),
                show_unexplained: 10,
            };
            let mut ledger = soakwatch::ledger::Ledger::new(cfg);
            let t = Instant::now();
            let r = ledger
                .reconcile(&client, &mut pg, n, Utc::now(), Duration::from_secs(30))
                .await
                .expect("reconcile");
            let s = t.elapsed().as_secs_f64();
            println!(
                "catch-up, batch {batch}: {} messages judged in {s:.2} s = {:.0} msg/s (written {}, unexplained {}, index: {})",
                r.read,
                r.read as f64 / s,
                r.counts.written,
                r.counts.unexplained,
                r.index.map(|i| i.supported).unwrap_or(false)
            );
            ledgers.push(ledger);
        }
        // Steady state: cycles of 1,000 new messages (100 msg/s, 10 s
        // interval), each a whole reconcile with its I/O.
        let mut ledger = ledgers.remove(0);
        let mut times = Vec::new();
        let mut top = n;
        for _ in 0..10 {
            let mut acks = Vec::new();
            for i in top..top + 1_000 {
                let body = format!(r#"{{"eventId":"e{i}","payload":{{"userId":"u{i}","date":"2025-10-02","rMSSD":62}}}}"#);
                acks.push(js.publish(subject.clone(), body.into()).await.expect("publish"));
            }
            for a in acks {
                a.await.expect("ack");
            }
            let sql = format!(
                r#"INSERT INTO {t} ("userId", date, rmssd) SELECT 'u' || g, DATE '2025-10-02', 62 FROM generate_series({top}, {last}) g"#,
                t = soakwatch::sql::quote_ident(&table),
                last = top + 999
            );
            sqlx::query(AssertSqlSafe(sql)).execute(&mut pg).await.expect("rows");
            top += 1_000;
            let t = Instant::now();
            let r = ledger
                .reconcile(&client, &mut pg, top, Utc::now(), Duration::from_secs(30))
                .await
                .expect("reconcile");
            times.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(r.read, 1_000);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "one cycle of 1,000 new messages with its I/O (stream read, DLQ check, row lookup): median {:.1} ms, max {:.1} ms over {} cycles",
            times[times.len() / 2],
            times[times.len() - 1],
            times.len()
        );
        let _ = js.delete_stream(&name).await;
        let _ = js.delete_stream(&dlq).await;
        let _ = sqlx::query(AssertSqlSafe(format!("DROP TABLE {}", soakwatch::sql::quote_ident(&table))))
            .execute(&mut pg)
            .await;
    });
}

fn main() {
    soakwatch::install_crypto_provider();
    pure();
    let n: u64 = std::env::var("LEDGER_BENCH_CATCHUP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    if n > 0 {
        catchup(n);
    }
}
