//! The daemon's own HTTP listener: `/metrics` (its state, for Prometheus)
//! and `/healthz` (is it still sampling?).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::promtext::ExpositionWriter;
use crate::render::check;
use crate::self_health::WriteTarget;
use crate::soak::model::SoakSummary;
use crate::watch::{DaemonStatus, SharedStatus};

/// Binds the listener; the bound address is returned for port 0.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// How long a connection may take to send a request's headers, also while
/// idle between requests: a Prometheus scrape sends at once, and a client
/// that opens a connection and goes quiet must not hold it for 48 h.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest a connection lives, whatever it does (a slow reader of a
/// response included).
const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 64;

/// Serves until `shutdown`.
///
/// A hand-written accept loop rather than `axum::serve`: axum 0.8 offers no
/// header-read or idle timeout, so an idle or slow client would keep its
/// connection (and a task) for the whole soak. hyper's own connection
/// builder has both, and a semaphore bounds how many connections are held.
pub async fn serve(
    listener: tokio::net::TcpListener,
    status: SharedStatus,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(status);
    let conns = tokio_util::task::TaskTracker::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait, never spin.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("too many connections to the status listener: closing one");
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let shutdown = shutdown.clone();
        conns.spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = tokio::time::sleep(MAX_CONNECTION_LIFETIME) => {}
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
                }
            }
        });
    }
    conns.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), conns.wait()).await;
    Ok(())
}

async fn metrics(State(status): State<SharedStatus>) -> impl IntoResponse {
    let body = match status.read() {
        Ok(s) => render_metrics(&s, Utc::now()),
        Err(_) => String::from("# status unavailable\n"),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

async fn healthz(State(status): State<SharedStatus>) -> impl IntoResponse {
    let (code, msg) = match status.read() {
        Ok(s) => health(&s, Utc::now()),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "status unavailable".to_string(),
        ),
    };
    (code, msg)
}

/// Healthy while samples are fresh (younger than three intervals).
pub fn health(s: &DaemonStatus, now: chrono::DateTime<Utc>) -> (StatusCode, String) {
    match s.last_sample_at {
        None => (StatusCode::OK, "starting: no cycle yet\n".into()),
        Some(t) => {
            let age = (now - t).num_milliseconds() as f64 / 1000.0;
            if age <= 3.0 * s.interval_secs.max(1.0) {
                (StatusCode::OK, format!("ok: last sample {age:.1}s ago\n"))
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "stale: last sample {age:.1}s ago (interval {}s)\n",
                        s.interval_secs
                    ),
                )
            }
        }
    }
}

/// The exposition (valid for `promtool check metrics`).
pub fn render_metrics(s: &DaemonStatus, now: chrono::DateTime<Utc>) -> String {
    let mut w = ExpositionWriter::default();
    process_families(&mut w, s, now);
    self_health_families(&mut w, s);
    alert_families(&mut w, s);
    if let Some(sum) = &s.summary {
        soak_families(&mut w, sum);
    }
    w.finish()
}

/// Cycles, sample age, probe errors, state size.
fn process_families(w: &mut ExpositionWriter, s: &DaemonStatus, now: chrono::DateTime<Utc>) {
    w.family(
        "soakwatch_cycles_total",
        "counter",
        "Sampling cycles completed by this process.",
    )
    .sample(&[], s.cycles);
    w.family(
        "soakwatch_cycle_duration_seconds",
        "gauge",
        "Wall time of the last cycle.",
    )
    .sample(&[], s.last_cycle_secs);
    if let Some(t) = s.last_sample_at {
        w.family(
            "soakwatch_last_sample_timestamp_seconds",
            "gauge",
            "When the last cycle's samples were taken.",
        )
        .sample(&[], t.timestamp_millis() as f64 / 1000.0);
        w.family(
            "soakwatch_last_sample_age_seconds",
            "gauge",
            "Seconds since the last cycle's samples.",
        )
        .sample(&[], (now - t).num_milliseconds() as f64 / 1000.0);
    }
    w.family(
        "soakwatch_probe_errors_total",
        "counter",
        "Probe failures seen by this process.",
    );
    for (p, n) in &s.probe_errors {
        w.sample(&[("probe", p)], n);
    }
    w.family(
        "soakwatch_state_db_bytes",
        "gauge",
        "Size of the state database and its WAL.",
    )
    .sample(&[], s.state_bytes);
}

/// What the daemon failed to write, and what waits for the database.
fn self_health_families(w: &mut ExpositionWriter, s: &DaemonStatus) {
    w.family(
        "soakwatch_write_errors_total",
        "counter",
        "Failed writes of this process's own output, per target (state, report, outbox).",
    );
    for t in WriteTarget::ALL {
        let n = s.write_failures.get(t.as_str()).copied().unwrap_or(0);
        w.sample(&[("target", t.as_str())], n);
    }
    w.family(
        "soakwatch_write_failing",
        "gauge",
        "Whether the last write of a target failed (1) or not (0).",
    );
    for t in WriteTarget::ALL {
        let failing = s.write_failing.iter().any(|f| f == t.as_str());
        w.sample(&[("target", t.as_str())], u8::from(failing));
    }
    w.family(
        "soakwatch_unsaved_cycles",
        "gauge",
        "Cycles held in memory because the state database refused them.",
    )
    .sample(&[], s.unsaved_cycles);
    w.family(
        "soakwatch_lost_cycles_total",
        "counter",
        "Cycles dropped because the state database refused them for too long.",
    )
    .sample(&[], s.lost_cycles);
}

/// The outbox, firing alerts and the periodic E2E probe.
fn alert_families(w: &mut ExpositionWriter, s: &DaemonStatus) {
    let soak = s.soak_name.as_str();
    let (pending, delivered, dead) = s.outbox;
    w.family(
        "soakwatch_outbox_notifications",
        "gauge",
        "Notifications in the outbox by delivery state.",
    )
    .sample(&[("state", "pending")], pending)
    .sample(&[("state", "delivered")], delivered)
    .sample(&[("state", "dead")], dead);
    w.family(
        "soakwatch_alert_firing",
        "gauge",
        "Alerts firing now (1 per firing criterion).",
    );
    for (c, sev) in &s.firing {
        w.sample(&[("soak", soak), ("criterion", c), ("severity", sev)], 1);
    }
    if let Some((at, ok, ms)) = s.e2e {
        w.family(
            "soakwatch_e2e_ok",
            "gauge",
            "Whether the last periodic E2E probe saw its row (1) or not (0).",
        )
        .sample(&[("soak", soak)], u8::from(ok));
        w.family(
            "soakwatch_e2e_latency_seconds",
            "gauge",
            "Publish-to-row latency of the last periodic E2E probe.",
        )
        .sample(&[("soak", soak)], ms as f64 / 1000.0);
        w.family(
            "soakwatch_e2e_timestamp_seconds",
            "gauge",
            "When the last periodic E2E probe finished.",
        )
        .sample(&[("soak", soak)], at.timestamp());
    }
}

/// The soak's id and T0 (one info metric), each criterion now and over the
/// soak, coverage, verdict, incidents. The `soak` label is the soak's name
/// from the config, so series keep their labels across `--new-soak`; the
/// families `check --format prometheus` also writes are written by the same
/// code ([`crate::render::check`]).
fn soak_families(w: &mut ExpositionWriter, sum: &SoakSummary) {
    let soak = sum.name.as_str();
    check::soak_info_families(w, soak, &sum.soak_id, sum.t0);
    w.family(
        "soakwatch_criterion_status",
        "gauge",
        "Debounced status now: 0 pass, 1 warn, 2 fail, 3 unknown, 4 pending, -1 not configured.",
    );
    for c in &sum.criteria {
        w.sample(
            &[("soak", soak), ("criterion", c.id.as_str())],
            c.now.code(),
        );
    }
    check::criterion_value_family(w, soak, sum.criteria.iter().map(|c| &c.last));
    if let Some(last) = &sum.last_snapshot {
        check::probe_up_family(w, soak, last);
    }
    w.family(
        "soakwatch_criterion_soak_status",
        "gauge",
        "Status over the whole soak so far (same codes).",
    );
    for c in &sum.criteria {
        w.sample(
            &[("soak", soak), ("criterion", c.id.as_str())],
            c.soak.code(),
        );
    }
    w.family(
        "soakwatch_criterion_coverage_ratio",
        "gauge",
        "Share of the soak with a judgement for the criterion.",
    );
    for c in &sum.criteria {
        w.sample(&[("soak", soak), ("criterion", c.id.as_str())], c.coverage);
    }
    w.family(
        "soakwatch_probe_coverage_ratio",
        "gauge",
        "Share of the soak with good samples from the probe.",
    );
    for c in &sum.coverage {
        w.sample(&[("soak", soak), ("probe", &c.probe)], c.share());
    }
    w.family(
        "soakwatch_soak_verdict",
        "gauge",
        "Soak verdict so far: 0 pass, 1 warn, 2 fail, 3 unknown.",
    )
    .sample(&[("soak", soak)], sum.verdict.code());
    w.family(
        "soakwatch_incidents",
        "gauge",
        "Fail spans recorded in the soak so far.",
    )
    .sample(&[("soak", soak)], sum.incidents.len());
    w.family(
        "soakwatch_soak_elapsed_seconds",
        "gauge",
        "Seconds since T0.",
    )
    .sample(&[("soak", soak)], (sum.now - sum.t0).num_seconds());
}
