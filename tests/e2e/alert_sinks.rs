//! The alert sinks against real receivers on loopback: an SMTP server
//! (Debian's python3-aiosmtpd, writing a Maildir), HTTP receivers served by
//! axum or a raw socket in this process, and a real Alertmanager
//! (Debian's prometheus-alertmanager). Nothing is mocked.
//!
//! Needs `/usr/bin/python3` with aiosmtpd and `prometheus-alertmanager`:
//! `scripts/ensure-test-tools.sh` installs both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use soakwatch::alert::model::{AlertItem, AlertState, Notification, NotificationKind, Severity};
use soakwatch::alert::sink::{
    alertmanager_fingerprint, AlertmanagerSink, EmailSink, Sink, SinkError, SmtpTls, WebhookFormat,
    WebhookSink,
};
use soakwatch::secret::{Secret, SecretUrl};

use crate::common::{serve_loopback, ReservedPort};

const PYTHON: &str = "/usr/bin/python3";
const HOW_TO_INSTALL: &str =
    "run scripts/ensure-test-tools.sh (installs python3-aiosmtpd and prometheus-alertmanager)";

// Secrets used below: none of them may ever appear in an error string.
const SMTP_PASSWORD: &str = "smtp-pw-Zq81x";
const HMAC_SECRET: &str = "hmac-key-Lk29v";
const URL_PATH_SECRET: &str = "T0PSECRETPATH77";
const URL_QUERY_SECRET: &str = "QUERYTOKEN55";

// ---------------------------------------------------------------- helpers

fn http_client() -> reqwest::Client {
    soakwatch::install_crypto_provider();
    reqwest::Client::builder().build().expect("reqwest client")
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn alert(
    criterion: &str,
    severity: Severity,
    state: AlertState,
    starts_at: DateTime<Utc>,
) -> AlertItem {
    AlertItem {
        name: format!("soakwatch_{criterion}"),
        criterion: Some(criterion.parse().expect("a criterion id")),
        severity,
        state,
        starts_at,
        ends_at: (state == AlertState::Resolved).then(Utc::now),
        summary: format!("{criterion} is out of bounds"),
        evidence: format!("{criterion}: observed 2, baseline 1"),
        value: Some(2.0),
        target: format!("{criterion} stays at 1"),
    }
}

fn notification(soak: &str, alerts: Vec<AlertItem>) -> Notification {
    Notification {
        id: unique("n"),
        soak_id: format!("{soak}-id"),
        soak_name: soak.to_string(),
        created_at: Utc::now(),
        kind: NotificationKind::Change,
        alerts,
    }
}

fn sample(soak: &str) -> Notification {
    let t0 = Utc::now() - chrono::Duration::minutes(5);
    notification(
        soak,
        vec![
            alert("dlq", Severity::Critical, AlertState::Firing, t0),
            alert("consumer_lag", Severity::Warning, AlertState::Resolved, t0),
        ],
    )
}

/// Asserts that an error string carries none of the test's secrets.
fn assert_no_secrets(e: &SinkError) {
    eprintln!("sink error (retryable {}): {}", e.retryable, e.reason);
    for s in [
        SMTP_PASSWORD,
        HMAC_SECRET,
        URL_PATH_SECRET,
        URL_QUERY_SECRET,
    ] {
        assert!(
            !e.reason.contains(s),
            "secret {s:?} leaked into: {}",
            e.reason
        );
    }
    assert!(!e.reason.contains('\n'), "not one line: {:?}", e.reason);
}

/// A server process killed when the test ends, whatever the outcome, on a
/// port reserved for it (it binds that port explicitly; the reservation
/// outlives it, so nothing else can take the port in the meantime).
pub(crate) struct Proc {
    child: Child,
    log: PathBuf,
    port: ReservedPort,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: PathBuf, port: ReservedPort) -> Proc {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file clone");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}; {HOW_TO_INSTALL}"));
        Proc { child, log, port }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the server accepts connections on its port; panics with the
    /// process log otherwise.
    async fn wait_listening(&mut self) {
        let port = self.port.port();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "server exited ({status}) before listening on {port}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "server not listening on {port} after 20 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- SMTP

fn require_aiosmtpd() {
    let ok = Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{PYTHON} cannot import aiosmtpd (Debian package python3-aiosmtpd); {HOW_TO_INSTALL}"
    );
}

/// aiosmtpd's own command line, writing every message to a Maildir.
pub(crate) async fn start_smtp_maildir(dir: &Path) -> (Proc, u16, PathBuf) {
    require_aiosmtpd();
    let reserved = ReservedPort::new();
    let port = reserved.port();
    let maildir = dir.join("maildir");
    let mut p = Proc::spawn(
        Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir),
        dir.join("smtpd.log"),
        reserved,
    );
    p.wait_listening().await;
    (p, port, maildir)
}

/// aiosmtpd with AUTH required (PLAIN/LOGIN over the plain connection, as a local relay would).
const SMTP_AUTH_SERVER: &str = r#"
import sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword
port, maildir, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
def check(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login.decode() == user and data.password.decode() == password
    return AuthResult(success=ok, handled=False)
c = Controller(Mailbox(maildir), hostname="127.0.0.1", port=port, authenticator=check,
               auth_required=True, auth_require_tls=False)
c.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

async fn start_smtp_auth(dir: &Path, user: &str, password: &str) -> (Proc, u16, PathBuf) {
    require_aiosmtpd();
    let reserved = ReservedPort::new();
    let port = reserved.port();
    let maildir = dir.join("maildir-auth");
    let mut p = Proc::spawn(
        Command::new(PYTHON)
            .args(["-c", SMTP_AUTH_SERVER])
            .arg(port.to_string())
            .arg(&maildir)
            .arg(user)
            .arg(password),
        dir.join("smtpd-auth.log"),
        reserved,
    );
    p.wait_listening().await;
    (p, port, maildir)
}

fn email_sink(port: u16, tls: SmtpTls) -> EmailSink {
    EmailSink {
        host: "127.0.0.1".into(),
        port,
        tls,
        username: String::new(),
        password: Secret::new(SMTP_PASSWORD),
        from: "Soakwatch <soakwatch@example.org>".into(),
        to: vec!["ops@example.org".into(), "Lead <lead@example.net>".into()],
        timeout: Duration::from_secs(5),
    }
}

/// Messages in a Maildir's `new/`, oldest first by name.
pub(crate) fn maildir_messages(maildir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(maildir.join("new"))
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect()
}

/// Headers (unfolded, names lowercased) and body of a stored message.
fn parse_mail(raw: &str) -> (BTreeMap<String, Vec<String>>, String) {
    let raw = raw.replace("\r\n", "\n");
    let (head, body) = raw.split_once("\n\n").unwrap_or((raw.as_str(), ""));
    let mut unfolded: Vec<String> = Vec::new();
    for line in head.lines() {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(last) = unfolded.last_mut() {
                last.push(' ');
                last.push_str(line.trim_start());
                continue;
            }
        }
        unfolded.push(line.to_string());
    }
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in unfolded {
        if let Some((k, v)) = line.split_once(':') {
            headers
                .entry(k.trim().to_ascii_lowercase())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    (headers, body.to_string())
}

/// The body as a mail client shows it: quoted-printable decoded when the
/// message says so (lettre picks it for lines over 76 characters).
fn decoded_body(h: &BTreeMap<String, Vec<String>>, body: &str) -> String {
    let cte = h
        .get("content-transfer-encoding")
        .and_then(|v| v.first())
        .map(|v| v.to_ascii_lowercase());
    if cte.as_deref() != Some("quoted-printable") {
        return body.to_string();
    }
    let joined = body.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn header<'a>(h: &'a BTreeMap<String, Vec<String>>, name: &str) -> &'a str {
    h.get(name)
        .and_then(|v| v.first())
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no {name} header in {h:?}"))
}

/// Whitespace-normalised, so folding by either side does not matter.
fn norm(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_delivers_subject_recipients_body_and_message_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_smtpd, port, maildir) = start_smtp_maildir(dir.path()).await;
    let sink = Sink::Email(email_sink(port, SmtpTls::None));
    assert_eq!(
        sink.describe(),
        format!(
            "email to ops@example.org, Lead <lead@example.net> via smtp 127.0.0.1:{port} (plain)"
        )
    );
    let n = sample("phase-b-staging");
    let http = http_client();
    sink.send(&n, &http).await.expect("delivered");

    let mails = maildir_messages(&maildir);
    assert_eq!(mails.len(), 1, "{mails:?}");
    let (h, raw_body) = parse_mail(&mails[0]);
    let body = decoded_body(&h, &raw_body);
    assert_eq!(norm(header(&h, "subject")), n.subject());
    assert_eq!(
        n.subject(),
        "[soakwatch] FIRING critical: dlq; RESOLVED: consumer_lag (phase-b-staging)"
    );
    assert_eq!(
        norm(header(&h, "to")),
        "ops@example.org, Lead <lead@example.net>"
    );
    assert_eq!(
        norm(header(&h, "from")),
        "Soakwatch <soakwatch@example.org>"
    );
    // The id is made of Message-ID-safe characters, so it appears verbatim.
    let expected_id = format!("<soakwatch.{}@example.org>", n.id);
    assert_eq!(header(&h, "message-id"), expected_id);
    assert_eq!(header(&h, "x-soakwatch-id"), n.id);
    assert!(
        header(&h, "content-type").starts_with("text/plain"),
        "{h:?}"
    );
    // aiosmtpd records the envelope: both recipients got it.
    let rcpt = header(&h, "x-rcptto");
    assert!(
        rcpt.contains("ops@example.org") && rcpt.contains("lead@example.net"),
        "{rcpt}"
    );
    for line in n.text().lines().filter(|l| !l.is_empty()) {
        assert!(
            body.lines().any(|b| b.trim_end() == line),
            "body lacks {line:?}:\n{body}"
        );
    }
    assert!(
        body.contains("- [FIRING] soakwatch_dlq (critical): dlq is out of bounds"),
        "{body}"
    );
    assert!(
        body.contains("evidence: dlq: observed 2, baseline 1"),
        "{body}"
    );

    // A retry of the same notification is recognisable as a duplicate.
    sink.send(&n, &http).await.expect("delivered again");
    let mails = maildir_messages(&maildir);
    assert_eq!(mails.len(), 2);
    let ids: Vec<String> = mails
        .iter()
        .map(|m| header(&parse_mail(m).0, "message-id").to_string())
        .collect();
    assert_eq!(ids[0], ids[1]);
    let other = sample("phase-b-staging");
    sink.send(&other, &http).await.expect("delivered");
    let third: Vec<String> = maildir_messages(&maildir)
        .iter()
        .map(|m| header(&parse_mail(m).0, "message-id").to_string())
        .collect();
    assert!(
        third.iter().any(|id| id != &ids[0]),
        "another notification gets another Message-ID"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_auth_uses_credentials_and_a_rejected_password_is_permanent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_smtpd, port, maildir) = start_smtp_auth(dir.path(), "alerts", SMTP_PASSWORD).await;
    let http = http_client();
    let n = sample("auth-soak");

    // Without credentials the server refuses MAIL FROM with 530: permanent.
    let anonymous = Sink::Email(email_sink(port, SmtpTls::None));
    let e = anonymous.send(&n, &http).await.expect_err("auth required");
    assert!(!e.retryable, "{e:?}");
    assert_no_secrets(&e);

    let mut good = email_sink(port, SmtpTls::None);
    good.username = "alerts".into();
    Sink::Email(good.clone())
        .send(&n, &http)
        .await
        .expect("delivered with credentials");
    assert_eq!(maildir_messages(&maildir).len(), 1);

    let mut bad = good;
    bad.password = Secret::new("wrong-pw-Zq81x-and-more");
    let e = Sink::Email(bad).send(&n, &http).await.expect_err("535");
    assert!(!e.retryable, "{e:?}");
    assert!(e.reason.contains("535"), "{}", e.reason);
    assert!(!e.reason.contains("wrong-pw"), "{}", e.reason);
    assert_no_secrets(&e);
    assert_eq!(
        maildir_messages(&maildir).len(),
        1,
        "nothing delivered on a rejected login"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_tls_modes_never_fall_back_to_plain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_smtpd, port, maildir) = start_smtp_maildir(dir.path()).await;
    let http = http_client();
    let n = sample("tls-soak");

    // The server offers no STARTTLS: refuse rather than send credentials or mail in clear.
    let mut starttls = email_sink(port, SmtpTls::Starttls);
    starttls.username = "alerts".into();
    let e = Sink::Email(starttls)
        .send(&n, &http)
        .await
        .expect_err("no STARTTLS offered");
    assert!(!e.retryable, "a configuration mismatch: {e:?}");
    assert!(
        e.reason.to_ascii_lowercase().contains("starttls"),
        "{}",
        e.reason
    );
    assert_no_secrets(&e);

    // Implicit TLS against a plain server fails the handshake.
    let started = Instant::now();
    let e = Sink::Email(email_sink(port, SmtpTls::Tls))
        .send(&n, &http)
        .await
        .expect_err("not TLS");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_no_secrets(&e);
    assert!(
        maildir_messages(&maildir).is_empty(),
        "nothing may be delivered without TLS"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_down_or_silent_is_retryable_and_bounded() {
    let http = http_client();
    let n = sample("down-soak");

    // Nothing listens: connection refused at once.
    let closed = ReservedPort::new();
    let port = closed.port();
    let started = Instant::now();
    let e = Sink::Email(email_sink(port, SmtpTls::None))
        .send(&n, &http)
        .await
        .expect_err("down");
    assert!(e.retryable, "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        e.reason.contains(&format!("127.0.0.1:{port}")),
        "{}",
        e.reason
    );
    assert_no_secrets(&e);

    // A server that accepts but never greets: the timeout bounds the attempt.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_port = listener.local_addr().expect("addr").port();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = listener.accept().await {
            conns.push(c);
        }
    });
    let mut sink = email_sink(silent_port, SmtpTls::None);
    sink.timeout = Duration::from_millis(700);
    let started = Instant::now();
    let e = Sink::Email(sink).send(&n, &http).await.expect_err("silent");
    let took = started.elapsed();
    held.abort();
    assert!(e.retryable, "{e:?}");
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(e.reason.contains("timed out"), "{}", e.reason);
    assert_no_secrets(&e);
}

// ---------------------------------------------------------------- webhooks

#[derive(Clone, Debug)]
struct Captured {
    method: Method,
    path_and_query: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone)]
struct Receiver {
    seen: Arc<Mutex<Vec<Captured>>>,
    status: Arc<Mutex<StatusCode>>,
}

/// An HTTP receiver on 127.0.0.1 that records every request and answers with
/// the configured status; error answers echo the request path and query, as
/// careless receivers do, so the scrubbing is put to the test.
async fn start_receiver() -> (Receiver, u16) {
    let r = Receiver {
        seen: Arc::default(),
        status: Arc::new(Mutex::new(StatusCode::OK)),
    };
    async fn handle(
        State(r): State<Receiver>,
        method: Method,
        OriginalUri(uri): OriginalUri,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, String) {
        let pq = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        r.seen.lock().expect("lock").push(Captured {
            method,
            path_and_query: pq.clone(),
            headers,
            body,
        });
        let status = *r.status.lock().expect("lock");
        if status.is_success() {
            (status, "ok".into())
        } else {
            (status, format!("no such hook\n{pq}\n"))
        }
    }
    let app = Router::new().fallback(handle).with_state(r.clone());
    let port = serve_loopback(app).await.port();
    (r, port)
}

fn secret_url(port: u16) -> SecretUrl {
    SecretUrl::new(format!(
        "http://127.0.0.1:{port}/services/{URL_PATH_SECRET}?token={URL_QUERY_SECRET}"
    ))
}

fn webhook(port: u16, format: WebhookFormat, signed: bool) -> Sink {
    Sink::Webhook(WebhookSink {
        url: secret_url(port),
        hmac_secret: Secret::new(if signed { HMAC_SECRET } else { "" }),
        format,
        timeout: Duration::from_secs(5),
    })
}

fn last(r: &Receiver) -> Captured {
    r.seen
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a request arrived")
}

fn hv<'a>(c: &'a Captured, name: &str) -> Option<&'a str> {
    c.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_soakwatch_body_is_signed_and_carries_the_id() {
    let (r, port) = start_receiver().await;
    let http = http_client();
    let sink = webhook(port, WebhookFormat::Soakwatch, true);
    assert_eq!(
        sink.describe(),
        format!("webhook http://127.0.0.1:{port}/*** (soakwatch, signed)")
    );
    let n = sample("phase-b-staging");
    sink.send(&n, &http).await.expect("delivered");

    let c = last(&r);
    assert_eq!(c.method, Method::POST);
    assert_eq!(
        c.path_and_query,
        format!("/services/{URL_PATH_SECRET}?token={URL_QUERY_SECRET}")
    );
    assert_eq!(hv(&c, "content-type"), Some("application/json"));
    assert_eq!(hv(&c, "x-soakwatch-id"), Some(n.id.as_str()));
    // The signature verifies with the shared secret over the exact bytes received.
    let sig = hv(&c, "x-soakwatch-signature").expect("signed");
    let hex_sig = sig.strip_prefix("sha256=").expect("sha256= prefix");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(HMAC_SECRET.as_bytes()).expect("key");
    mac.update(&c.body);
    mac.verify_slice(&hex::decode(hex_sig).expect("hex"))
        .expect("signature verifies");
    let mut wrong = <Hmac<Sha256> as Mac>::new_from_slice(b"other").expect("key");
    wrong.update(&c.body);
    assert!(wrong
        .verify_slice(&hex::decode(hex_sig).expect("hex"))
        .is_err());

    let v: Value = serde_json::from_slice(&c.body).expect("JSON body");
    assert_eq!(v["schema"], "soakwatch.alert/v1");
    assert_eq!(v["id"], n.id.as_str());
    assert_eq!(v["soak_id"], "phase-b-staging-id");
    assert_eq!(v["soak_name"], "phase-b-staging");
    assert_eq!(v["kind"], "change");
    assert_eq!(v["severity"], "critical");
    assert_eq!(v["subject"], n.subject().as_str());
    let created = v["created_at"].as_str().expect("created_at");
    assert!(DateTime::parse_from_rfc3339(created).is_ok(), "{created}");
    let alerts = v["alerts"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0]["name"], "soakwatch_dlq");
    assert_eq!(alerts[0]["criterion"], "dlq");
    assert_eq!(alerts[0]["severity"], "critical");
    assert_eq!(alerts[0]["state"], "firing");
    assert_eq!(alerts[0]["ends_at"], Value::Null);
    assert_eq!(alerts[0]["value"], 2.0);
    assert_eq!(alerts[0]["target"], "dlq stays at 1");
    assert_eq!(alerts[0]["evidence"], "dlq: observed 2, baseline 1");
    assert_eq!(alerts[0]["summary"], "dlq is out of bounds");
    assert_eq!(alerts[1]["state"], "resolved");
    assert!(alerts[1]["ends_at"].is_string());
    assert!(alerts[1]["starts_at"].is_string());

    // Unsigned when no key is configured.
    webhook(port, WebhookFormat::Soakwatch, false)
        .send(&n, &http)
        .await
        .expect("delivered");
    let c = last(&r);
    assert!(hv(&c, "x-soakwatch-signature").is_none());
    assert_eq!(hv(&c, "x-soakwatch-id"), Some(n.id.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_alertmanager_and_slack_bodies() {
    let (r, port) = start_receiver().await;
    let http = http_client();
    let n = sample("phase-b-staging");

    webhook(port, WebhookFormat::Alertmanager, true)
        .send(&n, &http)
        .await
        .expect("delivered");
    let v: Value = serde_json::from_slice(&last(&r).body).expect("JSON");
    assert_eq!(v["version"], "4");
    assert_eq!(v["status"], "firing");
    assert_eq!(v["receiver"], "soakwatch");
    assert_eq!(v["truncatedAlerts"], 0);
    assert_eq!(v["externalURL"], "");
    assert!(
        v["groupKey"]
            .as_str()
            .is_some_and(|k| k.contains("soak=\"phase-b-staging\"")),
        "{v}"
    );
    assert_eq!(v["groupLabels"]["soak"], "phase-b-staging");
    assert_eq!(v["commonLabels"]["soak"], "phase-b-staging");
    assert!(v["commonAnnotations"].is_object());
    let a = &v["alerts"][0];
    assert_eq!(a["status"], "firing");
    assert_eq!(a["labels"]["alertname"], "soakwatch_dlq");
    assert_eq!(a["labels"]["criterion"], "dlq");
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(a["labels"]["soak"], "phase-b-staging");
    assert_eq!(a["annotations"]["summary"], "dlq is out of bounds");
    assert!(a["annotations"]["description"]
        .as_str()
        .is_some_and(|d| d.contains("observed 2")));
    assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(a["generatorURL"], "");
    assert_eq!(a["fingerprint"].as_str().map(str::len), Some(16));
    assert_eq!(v["alerts"][1]["status"], "resolved");
    assert!(
        DateTime::parse_from_rfc3339(v["alerts"][1]["endsAt"].as_str().expect("endsAt")).is_ok()
    );

    webhook(port, WebhookFormat::Slack, false)
        .send(&n, &http)
        .await
        .expect("delivered");
    let c = last(&r);
    let v: Value = serde_json::from_slice(&c.body).expect("JSON");
    let obj = v.as_object().expect("object");
    assert_eq!(obj.len(), 1, "Slack gets only text: {v}");
    let text = v["text"].as_str().expect("text");
    assert!(text.starts_with(&format!("*{}*", n.subject())), "{text}");
    assert!(text.contains("*FIRING* `soakwatch_dlq`"), "{text}");
    assert!(
        text.contains("*RESOLVED* `soakwatch_consumer_lag`"),
        "{text}"
    );
    assert_eq!(hv(&c, "x-soakwatch-id"), Some(n.id.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_status_classes_and_no_secret_in_errors() {
    let (r, port) = start_receiver().await;
    let http = http_client();
    let n = sample("status-soak");
    let sink = webhook(port, WebhookFormat::Soakwatch, true);

    for (status, retryable) in [
        (StatusCode::INTERNAL_SERVER_ERROR, true),
        (StatusCode::SERVICE_UNAVAILABLE, true),
        (StatusCode::TOO_MANY_REQUESTS, true),
        (StatusCode::REQUEST_TIMEOUT, true),
        (StatusCode::BAD_REQUEST, false),
        (StatusCode::FORBIDDEN, false),
        (StatusCode::NOT_FOUND, false),
    ] {
        *r.status.lock().expect("lock") = status;
        let e = sink.send(&n, &http).await.expect_err("error status");
        assert_eq!(e.retryable, retryable, "{status}: {e:?}");
        assert!(
            e.reason.contains(&format!("HTTP {}", status.as_u16())),
            "{}",
            e.reason
        );
        assert!(
            e.reason
                .starts_with(&format!("webhook http://127.0.0.1:{port}/***")),
            "{}",
            e.reason
        );
        // The receiver echoed the secret path and query; they are scrubbed.
        assert!(e.reason.contains("no such hook"), "{}", e.reason);
        assert_no_secrets(&e);
        assert!(!format!("{e:?} {e}").contains(URL_PATH_SECRET));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_timeout_and_refused_are_retryable() {
    let http = http_client();
    let n = sample("timeout-soak");

    // Accepts connections, reads nothing, answers nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = listener.accept().await {
            conns.push(c);
        }
    });
    let sink = Sink::Webhook(WebhookSink {
        url: secret_url(port),
        hmac_secret: Secret::new(HMAC_SECRET),
        format: WebhookFormat::Slack,
        timeout: Duration::from_millis(600),
    });
    let started = Instant::now();
    let e = sink.send(&n, &http).await.expect_err("timeout");
    let took = started.elapsed();
    held.abort();
    assert!(e.retryable, "{e:?}");
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(e.reason.contains("timed out"), "{}", e.reason);
    assert_no_secrets(&e);

    let closed = ReservedPort::new();
    let e = webhook(closed.port(), WebhookFormat::Soakwatch, true)
        .send(&n, &http)
        .await
        .expect_err("refused");
    assert!(e.retryable, "{e:?}");
    assert_no_secrets(&e);

    // A malformed URL is a configuration error and is not shown either.
    let bad = Sink::Webhook(WebhookSink {
        url: SecretUrl::new(format!("http//{URL_PATH_SECRET}")),
        hmac_secret: Secret::new(HMAC_SECRET),
        format: WebhookFormat::Soakwatch,
        timeout: Duration::from_secs(1),
    });
    let e = bad.send(&n, &http).await.expect_err("bad url");
    assert!(!e.retryable, "{e:?}");
    assert_no_secrets(&e);
    assert!(!bad.describe().contains(URL_PATH_SECRET));
}

// ---------------------------------------------------------------- Alertmanager

fn alertmanager_binary() -> PathBuf {
    let candidates = [PathBuf::from("/usr/bin/prometheus-alertmanager")];
    for c in &candidates {
        if c.exists() {
            return c.clone();
        }
    }
    panic!(
        "prometheus-alertmanager not found at /usr/bin/prometheus-alertmanager \
         (Debian package prometheus-alertmanager); {HOW_TO_INSTALL}"
    );
}

/// A real Alertmanager on loopback, clustering off, routing everything to a receiver that does nothing.
async fn start_alertmanager(dir: &Path) -> (Proc, String) {
    let bin = alertmanager_binary();
    let reserved = ReservedPort::new();
    let port = reserved.port();
    let config = dir.join("am.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
    )
    .expect("write am.yml");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let mut p = Proc::spawn(
        Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address="),
        dir.join("alertmanager.log"),
        reserved,
    );
    p.wait_listening().await;
    let base = format!("http://127.0.0.1:{port}");
    let http = http_client();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = http
            .get(format!("{base}/-/ready"))
            .send()
            .await
            .map(|r| r.status().is_success());
        if matches!(ready, Ok(true)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alertmanager not ready:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (p, base)
}

/// `GET /api/v2/alerts` with query parameters, encoded.
fn alerts_url(base: &str, pairs: &[(&str, &str)]) -> url::Url {
    let mut u = url::Url::parse(&format!("{base}/api/v2/alerts")).expect("url");
    u.query_pairs_mut().extend_pairs(pairs);
    u
}

/// Our soak's alerts as Alertmanager lists them (it hides ones whose endsAt passed).
async fn listed(http: &reqwest::Client, base: &str, soak: &str) -> Vec<Value> {
    let v: Value = http
        .get(alerts_url(base, &[("filter", &format!("soak=\"{soak}\""))]))
        .send()
        .await
        .expect("GET /api/v2/alerts")
        .json()
        .await
        .expect("JSON alerts");
    v.as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn alertmanager_receives_firing_then_resolved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (am, base) = start_alertmanager(dir.path()).await;
    let http = http_client();
    let soak = unique("sinktest");
    let sink = Sink::Alertmanager(AlertmanagerSink {
        base_url: SecretUrl::new(base.clone()),
        timeout: Duration::from_secs(5),
    });
    assert_eq!(sink.describe(), format!("alertmanager {base}"));

    let t0 = Utc::now() - chrono::Duration::minutes(3);
    let firing = notification(
        &soak,
        vec![alert("dlq", Severity::Critical, AlertState::Firing, t0)],
    );
    let sent_at = Utc::now();
    sink.send(&firing, &http)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", am.log()));

    let alerts = listed(&http, &base, &soak).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}\n{}", am.log());
    let a = &alerts[0];
    let labels: BTreeMap<String, String> =
        serde_json::from_value(a["labels"].clone()).expect("labels");
    let expected: BTreeMap<String, String> = [
        ("alertname", "soakwatch_dlq"),
        ("criterion", "dlq"),
        ("severity", "critical"),
        ("soak", soak.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(labels, expected);
    assert_eq!(a["status"]["state"], "active", "{a}");
    assert_eq!(a["annotations"]["summary"], "dlq is out of bounds");
    // Our fingerprint is Alertmanager's.
    assert_eq!(
        a["fingerprint"].as_str(),
        Some(alertmanager_fingerprint(&labels).as_str()),
        "{a}"
    );
    let starts =
        DateTime::parse_from_rfc3339(a["startsAt"].as_str().expect("startsAt")).expect("time");
    assert_eq!(
        starts
            .with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Millis, true),
        t0.to_rfc3339_opts(SecondsFormat::Millis, true)
    );
    let ends = DateTime::parse_from_rfc3339(a["endsAt"].as_str().expect("endsAt"))
        .expect("time")
        .with_timezone(&Utc);
    let horizon = ends - sent_at;
    assert!(
        horizon > chrono::Duration::minutes(359) && horizon < chrono::Duration::minutes(361),
        "firing alerts are held for AM_RESEND_HORIZON (6 h): {horizon}"
    );
    assert_eq!(
        soakwatch::alert::sink::AM_RESEND_HORIZON,
        Duration::from_secs(6 * 3600)
    );

    // The resolved version ends it: Alertmanager no longer lists it as active.
    let mut resolved_alert = alert("dlq", Severity::Critical, AlertState::Resolved, t0);
    resolved_alert.ends_at = Some(Utc::now());
    let resolved = notification(&soak, vec![resolved_alert]);
    sink.send(&resolved, &http)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", am.log()));
    let now = Utc::now();
    let after = listed(&http, &base, &soak).await;
    eprintln!("after resolve, Alertmanager lists: {after:?}");
    for a in after {
        let ends = DateTime::parse_from_rfc3339(a["endsAt"].as_str().unwrap_or(""))
            .map(|t| t.with_timezone(&Utc));
        assert!(
            a["status"]["state"] != "active" || matches!(ends, Ok(e) if e <= now),
            "still active after resolve: {a}"
        );
    }
    let active: Vec<Value> = http
        .get(alerts_url(
            &base,
            &[("active", "true"), ("filter", &format!("soak=\"{soak}\""))],
        ))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert!(
        active.iter().all(|a| a["endsAt"]
            .as_str()
            .and_then(|e| DateTime::parse_from_rfc3339(e).ok())
            .is_some_and(|e| e.with_timezone(&Utc) <= now)),
        "{active:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn alertmanager_errors_are_classified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_am, base) = start_alertmanager(dir.path()).await;
    let http = http_client();

    // A wrong route prefix: Alertmanager answers 404, which a retry cannot fix.
    let n = notification(
        &unique("prefix"),
        vec![alert(
            "dlq",
            Severity::Warning,
            AlertState::Firing,
            Utc::now(),
        )],
    );
    let wrong = Sink::Alertmanager(AlertmanagerSink {
        base_url: SecretUrl::new(format!("{base}/no-such-prefix?token={URL_QUERY_SECRET}")),
        timeout: Duration::from_secs(5),
    });
    let e = wrong.send(&n, &http).await.expect_err("404");
    assert!(!e.retryable, "{e:?}");
    assert!(e.reason.contains("HTTP 404"), "{}", e.reason);
    assert_no_secrets(&e);

    // Down: retryable, and the credential of the URL is not shown.
    let closed = ReservedPort::new();
    let down = Sink::Alertmanager(AlertmanagerSink {
        base_url: SecretUrl::new(format!(
            "http://admin:{URL_QUERY_SECRET}@127.0.0.1:{}",
            closed.port()
        )),
        timeout: Duration::from_secs(2),
    });
    assert!(
        !down.describe().contains(URL_QUERY_SECRET),
        "{}",
        down.describe()
    );
    let e = down.send(&n, &http).await.expect_err("down");
    assert!(e.retryable, "{e:?}");
    assert_no_secrets(&e);
}
