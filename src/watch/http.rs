//! The daemon's own HTTP listener: `/metrics` (its state, for Prometheus),
//! `/healthz` (is it still sampling?) and the status page for people: `/`
//! ([`crate::render::page`]), its charts (`/charts/<name>.svg`, drawn from
//! the published summary) and the checkpoint reports (`/reports/<file>`,
//! only files the daemon itself named). Read-only: every route is a GET
//! that reads what the daemon published.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::promtext::ExpositionWriter;
use crate::render::chart::{self, STANDARD_CHARTS};
use crate::render::check;
use crate::render::page::{self, PageView, ReportLink};
use crate::self_health::WriteTarget;
use crate::soak::model::SoakSummary;
use crate::watch::{DaemonStatus, Role, SharedStatus};

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
        .route("/", get(status_page))
        .route("/favicon.svg", get(favicon))
        .route("/charts/{file}", get(chart_svg))
        .route("/reports/{file}", get(report_file))
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

/// The page's Content-Security-Policy: nothing but its own inline
/// stylesheet (by hash) and same-origin images; no script, no frames, no
/// forms. A value from the watched system that escaped escaping still could
/// not run or load anything.
fn page_csp() -> &'static str {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        use sha2::Digest;
        let hash = base64(&sha2::Sha256::digest(page::PAGE_CSS.as_bytes()));
        format!(
            "default-src 'none'; img-src 'self'; style-src 'sha256-{hash}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
    })
}

/// For the charts and the report files: nothing at all may load or run.
const FILE_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Standard base64 with padding (for the CSP hash).
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A response with the headers every page-side response carries.
fn with_headers(
    content_type: &'static str,
    csp: &str,
    cache: &'static str,
    body: impl IntoResponse,
) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

fn plain(code: StatusCode, what: &str) -> Response {
    with_headers(
        "text/plain; charset=utf-8",
        FILE_CSP,
        "no-store",
        (code, format!("{what}\n")),
    )
}

fn not_found(what: &str) -> Response {
    plain(StatusCode::NOT_FOUND, what)
}

/// The status lock was poisoned (a publisher panicked): nothing to show.
fn unavailable() -> Response {
    plain(StatusCode::SERVICE_UNAVAILABLE, "status unavailable")
}

/// `/`: the status page.
async fn status_page(State(status): State<SharedStatus>) -> Response {
    // Which checkpoint reports are written: the file is there (checked
    // outside the lock; only names the daemon published).
    let named = match status.read() {
        Ok(s) => s.page.reports.clone(),
        Err(_) => return unavailable(),
    };
    let mut links = Vec::new();
    let mut due = Vec::new();
    for (label, path) in named {
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .map(str::to_string);
        match file {
            Some(file) if tokio::fs::try_exists(&path).await.unwrap_or(false) => {
                links.push(ReportLink { label, file })
            }
            _ => due.push(label),
        }
    }
    let html = match status.read() {
        Ok(s) => page::render_page(&page_view(&s, &links, &due, Utc::now())),
        Err(_) => return unavailable(),
    };
    with_headers("text/html; charset=utf-8", page_csp(), "no-store", html)
}

/// `/favicon.svg`: the verdict's colour in the browser tab.
async fn favicon(State(status): State<SharedStatus>) -> Response {
    let verdict = status
        .read()
        .ok()
        .and_then(|s| s.summary.as_ref().map(|x| x.verdict));
    with_headers(
        "image/svg+xml",
        FILE_CSP,
        "no-store",
        page::favicon_svg(verdict),
    )
}

/// The page's view of what the daemon published.
fn page_view<'a>(
    s: &'a DaemonStatus,
    reports: &'a [ReportLink],
    reports_due: &'a [String],
    now: chrono::DateTime<Utc>,
) -> PageView<'a> {
    PageView {
        summary: s.summary.as_ref(),
        soak_name: &s.soak_name,
        now,
        last_sample_at: s.last_sample_at,
        interval_secs: s.interval_secs,
        cycles: s.cycles,
        firing: &s.firing,
        rollback_mode: s
            .page
            .rollback_mode
            .map(crate::rollback::RollbackMode::as_str),
        rollback_latched: s.page.rollback_latched,
        write_failing: &s.write_failing,
        unsaved_cycles: s.unsaved_cycles,
        reports,
        reports_due,
    }
}

/// `/charts/<name>.svg`: one standard chart of the latest summary, drawn
/// off the lock and off the runtime's worker threads.
async fn chart_svg(State(status): State<SharedStatus>, Path(file): Path<String>) -> Response {
    let Some(name) = file
        .strip_suffix(".svg")
        .and_then(|n| STANDARD_CHARTS.iter().find(|(c, _)| *c == n))
        .map(|(c, _)| *c)
    else {
        return not_found("no such chart");
    };
    let inputs = match status.read() {
        Ok(s) => s
            .summary
            .clone()
            .zip(s.page.chart_thresholds)
            .map(|(sum, th)| (sum, th, s.page.chart_gap)),
        Err(_) => None,
    };
    let Some((summary, thresholds, gap)) = inputs else {
        return not_found("no cycle yet");
    };
    let drawn = tokio::task::spawn_blocking(move || {
        chart::render_standard(&summary, &thresholds, gap, |n| n == name)
    })
    .await;
    match drawn {
        Ok(Ok(mut charts)) if !charts.is_empty() => with_headers(
            "image/svg+xml",
            FILE_CSP,
            "no-store",
            charts.swap_remove(0).svg,
        ),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "status page chart not drawn");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "chart not drawn")
        }
        _ => not_found("no such chart"),
    }
}

/// `/reports/<file>`: a checkpoint report or one of its charts, found by
/// exact name among the files the daemon named; the request never makes a
/// path.
async fn report_file(State(status): State<SharedStatus>, Path(file): Path<String>) -> Response {
    let path = match status.read() {
        Ok(s) => report_path(&s.page.reports, &file),
        Err(_) => None,
    };
    let Some(path) = path else {
        return not_found("no such report");
    };
    let content_type = if file.ends_with(".svg") {
        "image/svg+xml"
    } else {
        // Markdown, shown as text (browsers download text/markdown).
        "text/plain; charset=utf-8"
    };
    match tokio::fs::read(&path).await {
        Ok(body) => with_headers(content_type, FILE_CSP, "no-cache", body),
        Err(_) => not_found("report not written yet"),
    }
}

/// The file a report name stands for: a checkpoint report the daemon named
/// (`<soak id>-<label>.md`) or one of the charts written beside it
/// (`<soak id>-<label>-<chart>.svg`); anything else is None.
pub fn report_path(
    reports: &[(String, std::path::PathBuf)],
    file: &str,
) -> Option<std::path::PathBuf> {
    reports.iter().find_map(|(_, path)| {
        let md = path.file_name()?.to_str()?;
        if file == md {
            return Some(path.clone());
        }
        let stem = md.strip_suffix(".md")?;
        STANDARD_CHARTS
            .iter()
            .map(|(c, _)| format!("{stem}-{c}.svg"))
            .find(|svg| svg == file)
            .map(|svg| path.with_file_name(svg))
    })
}

/// Healthy while samples are fresh (younger than three intervals).
pub fn health(s: &DaemonStatus, now: chrono::DateTime<Utc>) -> (StatusCode, String) {
    // A standby is healthy while it keeps its connections and campaigns;
    // it samples nothing, so the sample age says nothing about it.
    if s.role == Some(Role::Standby) {
        let probes = match s.standby_failing.as_deref() {
            None => String::new(),
            Some([]) => "; every probe answers".to_string(),
            Some(failing) => format!("; failing probes: {}", failing.join(", ")),
        };
        return (
            StatusCode::OK,
            format!("standby: another watcher leads; taking over when its lease expires{probes}\n"),
        );
    }
    // A signed-off soak samples nothing more, by design: healthy, and says so.
    if let Some(end) = s.summary.as_ref().and_then(|x| x.edges.ended.as_ref()) {
        return (
            StatusCode::OK,
            format!(
                "ended: the soak was signed off at {} ({}); serving its frozen verdict\n",
                end.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                crate::watch::signoff::verdict_words(end.verdict)
            ),
        );
    }
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
    if let Some(role) = s.role {
        w.family(
            "soakwatch_leader",
            "gauge",
            "1 while this watcher holds the leader lease of a JetStream state, 0 on standby.",
        )
        .sample(&[], u64::from(role == Role::Leader));
        w.family(
            "soakwatch_leader_terms_total",
            "counter",
            "Times this watcher became leader since it started.",
        )
        .sample(&[], s.leader_terms);
    }
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
    let crate::state::store::OutboxTally {
        pending,
        delivered,
        given_up: dead,
    } = s.outbox;
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
    check::consumer_families(w, soak, sum.criteria.iter().map(|c| &c.last));
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
        "soakwatch_soak_ended",
        "gauge",
        "1 once the soak is signed off at T0 + duration (its verdict frozen; no more cycles: a stale last cycle is then expected).",
    );
    w.sample(&[("soak", soak)], if sum.is_ended() { 1.0 } else { 0.0 });
    w.family(
        "soakwatch_soak_unobserved_head_seconds",
        "gauge",
        "T0 to the first recorded cycle when the watcher started late (0 for a soak watched from T0).",
    );
    w.sample(&[("soak", soak)], sum.edges.unobserved_head_secs);
    w.family(
        "soakwatch_soak_verdict",
        "gauge",
        "Soak verdict so far: 0 pass, 1 warn, 2 fail, 3 unknown.",
    )
    .sample(&[("soak", soak)], sum.verdict.code());
    check::soak_totals_families(w, soak, &sum.totals);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::model::ChartSeries;
    use std::path::PathBuf;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc, "{raw}");
        }
        assert!(page_csp().contains("style-src 'sha256-"));
        assert!(page_csp().starts_with("default-src 'none';"));
    }

    #[test]
    fn only_files_the_daemon_named_are_served() {
        let reports = vec![("5s".to_string(), PathBuf::from("/r/demo-1-5s.md"))];
        assert_eq!(
            report_path(&reports, "demo-1-5s.md"),
            Some(PathBuf::from("/r/demo-1-5s.md"))
        );
        assert_eq!(
            report_path(&reports, "demo-1-5s-dlq.svg"),
            Some(PathBuf::from("/r/demo-1-5s-dlq.svg"))
        );
        for bad in [
            "../demo-1-5s.md",
            "demo-1-5s-evil.svg",
            "demo-1-24h.md",
            "/etc/passwd",
            "demo-1-5s.md/..",
            "",
        ] {
            assert_eq!(report_path(&reports, bad), None, "{bad}");
        }
    }

    fn summary() -> SoakSummary {
        let t0 = Utc::now() - chrono::Duration::seconds(60);
        SoakSummary {
            soak_id: "demo-1".into(),
            name: "demo".into(),
            t0,
            now: t0 + chrono::Duration::seconds(50),
            planned_secs: 3600.0,
            samples: 2,
            criteria: vec![],
            incidents: vec![],
            spans: vec![],
            coverage: vec![],
            min_coverage: 0.5,
            restarts: vec![],
            series: ChartSeries {
                lag: vec![(t0, 0.0), (t0 + chrono::Duration::seconds(50), 3.0)],
                ..ChartSeries::default()
            },
            verdict: crate::verdict::Status::Pass,
            verdict_reason: "so far so good".into(),
            last_snapshot: None,
            rollback: None,
            consumers: vec![],
            edges: Default::default(),
            totals: Default::default(),
        }
    }

    /// The role reads as before it was typed: `soakwatch_leader` 1 or 0,
    /// a standby healthy with its own line, nothing of either with SQLite.
    #[test]
    fn the_role_shows_as_the_leader_gauge_and_the_standby_health_line() {
        let now = Utc::now();
        let mut s = DaemonStatus {
            role: Some(Role::Leader),
            leader_terms: 2,
            ..DaemonStatus::default()
        };
        let m = render_metrics(&s, now);
        assert!(m.contains("\nsoakwatch_leader 1\n"), "{m}");
        assert!(m.contains("\nsoakwatch_leader_terms_total 2\n"), "{m}");
        s.role = Some(Role::Standby);
        let m = render_metrics(&s, now);
        assert!(m.contains("\nsoakwatch_leader 0\n"), "{m}");
        let (code, body) = health(&s, now);
        assert_eq!(code, StatusCode::OK);
        assert!(body.starts_with("standby: another watcher leads"), "{body}");
        s.role = None;
        assert!(!render_metrics(&s, now).contains("soakwatch_leader"));
        assert_eq!(Role::Leader.as_str(), "leader");
        assert_eq!(Role::Standby.as_str(), "standby");
    }

    /// The listener on loopback with a published status and one written report.
    #[tokio::test]
    async fn the_page_its_charts_and_reports_are_served_read_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let md = dir.path().join("demo-1-5s.md");
        std::fs::write(&md, "# report <x>").expect("report");
        let status = SharedStatus::default();
        if let Ok(mut s) = status.write() {
            s.summary = Some(summary());
            s.soak_name = "demo".into();
            s.interval_secs = 1.0;
            s.last_sample_at = Some(Utc::now());
            s.page.chart_thresholds = Some(chart::ChartThresholds {
                lag_fail: 10.0,
                success_min_pct: 99.0,
                p95_max_ms: 500.0,
                dlq_baseline: Some(1.0),
            });
            s.page.chart_gap = chrono::Duration::seconds(3);
            s.page.reports = vec![
                ("5s".into(), md.clone()),
                ("24h".into(), dir.path().join("demo-1-24h.md")),
            ];
        }
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, status, stop.clone()));
        crate::install_crypto_provider();
        let http = reqwest::Client::new();
        let get = |path: &str| http.get(format!("{base}{path}")).send();

        let r = get("/").await.expect("GET /");
        assert_eq!(r.status(), 200);
        let h = r.headers().clone();
        assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], page_csp());
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let html = r.text().await.expect("body");
        assert!(
            html.contains("<a href=\"reports/demo-1-5s.md\">5s checkpoint</a>"),
            "{html}"
        );
        assert!(html.contains("Still to come: 24h."), "{html}");

        let r = get("/charts/lag.svg").await.expect("chart");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "image/svg+xml");
        assert!(r.text().await.expect("svg").starts_with("<svg"));
        assert_eq!(get("/charts/nope.svg").await.expect("chart").status(), 404);
        let r = get("/favicon.svg").await.expect("favicon");
        assert_eq!(r.status(), 200);
        assert!(r.text().await.expect("icon").contains("#1a7f37"));

        let r = get("/reports/demo-1-5s.md").await.expect("report");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert_eq!(r.text().await.expect("md"), "# report <x>");
        for bad in [
            "/reports/demo-1-24h.md",
            "/reports/..%2F..%2Fetc%2Fpasswd",
            "/reports/x.md",
        ] {
            assert_eq!(get(bad).await.expect(bad).status(), 404, "{bad}");
        }
        // Nothing on it changes state.
        let r = http.post(format!("{base}/")).send().await.expect("POST /");
        assert_eq!(r.status(), 405);

        stop.cancel();
        let _ = server.await;
    }
}
