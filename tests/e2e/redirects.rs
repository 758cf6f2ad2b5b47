//! Issue 20 §1: secrets on redirect. Through the real binary against real
//! loopback HTTP servers: a redirecting server on one port and a target on
//! another that records every request and its `Referer`.
//!
//! - `alert test`: a webhook, Slack or Alertmanager route answering 3xx is a
//!   failed delivery naming the Location (its secrets scrubbed); nothing
//!   reaches the redirect target, so no Referer can carry the route's
//!   secret path or query there.
//! - `check`: the metrics probe follows a redirect within its URL's origin
//!   (sending no Referer) and refuses one to another origin, naming it.

use std::sync::{Arc, Mutex};

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::common::{run_bin, serve_loopback};
use crate::no_panic::{shipped, write_config};

/// Secrets of the routes and the metrics URL: never in any output.
const PATH_SECRET: &str = "T0PATHSECRET81";
const SLACK_SECRET: &str = "XSLACKTOKEN62";
const QUERY_SECRET: &str = "QKEYSECRET47";
const METRICS_TOKEN: &str = "MTOKENSECRET93";

/// One request as a server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path_and_query: String,
    referer: Option<String>,
}

/// Every request a server saw.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    fn push(&self, method: Method, uri: &axum::http::Uri, headers: &HeaderMap) {
        let seen = Seen {
            method,
            path_and_query: uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
            referer: headers
                .get("referer")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        };
        self.0.lock().expect("lock").push(seen);
    }

    fn all(&self) -> Vec<Seen> {
        self.0.lock().expect("lock").clone()
    }
}

/// A minimal exposition with the shipped config's counter.
const EXPOSITION: &str = "# TYPE normalize_hrv_messages_total counter\n\
normalize_hrv_messages_total{durable=\"normalize-hrv-durable\",result=\"success\",stream=\"AA_CORE_HOT\"} 3\n";

/// The target: records every request; answers 200 with an exposition.
async fn start_target() -> (Log, u16) {
    async fn handle(
        State(log): State<Log>,
        method: Method,
        OriginalUri(uri): OriginalUri,
        headers: HeaderMap,
    ) -> &'static str {
        log.push(method, &uri, &headers);
        EXPOSITION
    }
    let log = Log::default();
    let app = Router::new().fallback(handle).with_state(log.clone());
    (log.clone(), serve_loopback(app).await.port())
}

/// The redirector: `/r<status>/rest?query` answers `<status>` with
/// `Location: <to>/r<status>/rest?query` (the same secret path and query on
/// another origin, as a moved receiver does); `/same/...` redirects to
/// `/landing` on its own origin, which answers with an exposition.
async fn start_redirector(to: String) -> (Log, u16) {
    #[derive(Clone)]
    struct S {
        log: Log,
        to: String,
    }
    async fn handle(
        State(s): State<S>,
        method: Method,
        OriginalUri(uri): OriginalUri,
        headers: HeaderMap,
    ) -> Response {
        s.log.push(method, &uri, &headers);
        let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        if uri.path() == "/landing" {
            return EXPOSITION.into_response();
        }
        if uri.path().starts_with("/same/") {
            return (StatusCode::FOUND, [("location", "/landing")]).into_response();
        }
        let code = uri
            .path()
            .strip_prefix("/r")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse::<u16>().ok())
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::FOUND);
        (code, [("location", format!("{}{pq}", s.to))]).into_response()
    }
    let log = Log::default();
    let app = Router::new().fallback(handle).with_state(S {
        log: log.clone(),
        to,
    });
    (log.clone(), serve_loopback(app).await.port())
}

fn assert_no_secret(what: &str, text: &str) {
    for s in [PATH_SECRET, SLACK_SECRET, QUERY_SECRET, METRICS_TOKEN] {
        assert!(!text.contains(s), "secret {s} in {what}:\n{text}");
    }
}

fn route(name: &str, kind: &str, url: String) -> toml::Value {
    let mut t = toml::Table::new();
    t.insert("name".into(), name.into());
    t.insert("kind".into(), kind.into());
    t.insert("url".into(), url.into());
    t.insert("timeout".into(), "5s".into());
    toml::Value::Table(t)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirecting_receiver_is_a_failed_delivery_and_sees_no_referer() {
    let (target, tport) = start_target().await;
    let target_origin = format!("http://127.0.0.1:{tport}");
    let (redir, rport) = start_redirector(target_origin.clone()).await;
    let r = format!("http://127.0.0.1:{rport}");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = shipped();
    let routes = vec![
        route(
            "hook-302",
            "webhook",
            format!("{r}/r302/services/{PATH_SECRET}/B0/x?api_key={QUERY_SECRET}"),
        ),
        route(
            "slack-307",
            "slack",
            format!("{r}/r307/services/T1/B1/{SLACK_SECRET}"),
        ),
        route("am-308", "alertmanager", format!("{r}/r308/am")),
        route(
            "hook-301",
            "webhook",
            format!("{r}/r301/hooks/{PATH_SECRET}"),
        ),
        route("direct", "webhook", format!("{target_origin}/ok")),
    ];
    cfg["alerts"]
        .as_table_mut()
        .expect("[alerts]")
        .insert("routes".into(), toml::Value::Array(routes));
    let path = write_config(dir.path(), "checks.toml", &cfg);
    let run = run_bin(&["alert", "test", "-c", &path.display().to_string()], &[]).await;
    eprintln!("stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert_eq!(run.code, 2, "a redirected route is a failure");
    for (name, code) in [
        ("hook-302", "302"),
        ("slack-307", "307"),
        ("am-308", "308"),
        ("hook-301", "301"),
    ] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.contains(&format!(" {name}: ")))
            .unwrap_or_else(|| panic!("no line for {name}"));
        assert!(line.starts_with("FAILED"), "{line}");
        assert!(line.contains(&format!("HTTP {code}")), "{line}");
        assert!(line.contains("not followed"), "{line}");
        assert!(
            line.contains(&format!("Location: {target_origin}/")),
            "{line}"
        );
    }
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("OK") && l.contains(" direct: ")),
        "{}",
        run.stdout
    );
    assert_no_secret("stdout", &run.stdout);
    assert_no_secret("stderr", &run.stderr);
    // The redirector got each POST once; the target only the direct one.
    let at_redirector = redir.all();
    assert_eq!(at_redirector.len(), 4, "{at_redirector:?}");
    assert!(at_redirector.iter().all(|s| s.method == Method::POST));
    let at_target = target.all();
    assert_eq!(at_target.len(), 1, "{at_target:?}");
    assert_eq!(at_target[0].path_and_query, "/ok");
    assert_eq!(at_target[0].referer, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_probe_follows_its_own_origin_only_and_sends_no_referer() {
    let (target, tport) = start_target().await;
    let target_origin = format!("http://127.0.0.1:{tport}");
    let (redir, rport) = start_redirector(target_origin.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(dir.path(), "checks.toml", &shipped());
    let config = path.display().to_string();
    let run_with = |url: String| {
        let config = config.clone();
        async move {
            run_bin(
                &["check", "-c", &config, "--window", "0s", "--format", "text"],
                &[("METRICS_URL", &url)],
            )
            .await
        }
    };

    // Within the origin: followed, no Referer (it would carry the token).
    let same = run_with(format!(
        "http://127.0.0.1:{rport}/same/metrics?token={METRICS_TOKEN}"
    ))
    .await;
    eprintln!("same origin:\n{}\n{}", same.stdout, same.stderr);
    assert_ne!(same.code, 101);
    assert!(
        !same.stdout.contains("probe metrics: FAILED"),
        "{}",
        same.stdout
    );
    let landing: Vec<Seen> = redir
        .all()
        .into_iter()
        .filter(|s| s.path_and_query == "/landing")
        .collect();
    assert_eq!(landing.len(), 1, "{:?}", redir.all());
    assert_eq!(landing[0].referer, None, "a Referer was sent");
    assert_no_secret("stdout", &same.stdout);

    // To another origin: not followed, the probe fails naming where it led.
    let other = run_with(format!(
        "http://127.0.0.1:{rport}/r302/metrics?token={METRICS_TOKEN}"
    ))
    .await;
    eprintln!("other origin:\n{}\n{}", other.stdout, other.stderr);
    assert_ne!(other.code, 101);
    let line = other
        .stdout
        .lines()
        .find(|l| l.starts_with("probe metrics:"))
        .unwrap_or_else(|| panic!("no metrics probe line:\n{}", other.stdout));
    assert!(line.contains("FAILED"), "{line}");
    assert!(line.contains("HTTP 302"), "{line}");
    assert!(line.contains(&target_origin), "{line}");
    assert!(line.contains("another origin"), "{line}");
    assert!(
        target.all().is_empty(),
        "the other origin was asked: {:?}",
        target.all()
    );
    assert_no_secret("stdout", &other.stdout);
    assert_no_secret("stderr", &other.stderr);
}
