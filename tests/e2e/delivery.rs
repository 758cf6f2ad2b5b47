//! Alert delivery of the real daemon when one receiver misbehaves: every
//! route delivers on its own (a webhook that accepts and never answers does
//! not hold back email), and a stop writes the final report first, gives
//! deliveries a bounded grace and leaves what is undelivered in the outbox
//! for the next start. The peers are real: aiosmtpd writing a Maildir, a
//! loopback socket that accepts and never answers, and a loopback proxy in
//! front of the stand-in's /metrics that makes `service_up` flap.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::alert_sinks::{maildir_messages, start_smtp_maildir};
use crate::common::*;

/// A loopback webhook that accepts connections, reads what is sent and never
/// answers. Counts connections accepted and connections the client closed.
struct HangingHook {
    port: u16,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

impl HangingHook {
    async fn start() -> HangingHook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (a, c) = (accepted.clone(), closed.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let c = c.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut buf = [0u8; 4096];
                    // Read until the client gives up; never write a byte.
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        HangingHook {
            port,
            accepted,
            closed,
        }
    }
}

/// A loopback /metrics in front of the stand-in's: passes its body through
/// while `up`, answers 503 otherwise (the service "goes down").
async fn flapping_metrics(upstream: String, up: Arc<AtomicBool>) -> u16 {
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move || {
        let (http, upstream, up) = (http.clone(), upstream.clone(), up.clone());
        async move {
            if !up.load(Ordering::SeqCst) {
                return (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new());
            }
            match http.get(&upstream).send().await {
                Ok(r) => (
                    axum::http::StatusCode::OK,
                    r.text().await.unwrap_or_default(),
                ),
                Err(_) => (axum::http::StatusCode::BAD_GATEWAY, String::new()),
            }
        }
    });
    serve_loopback(app).await.port()
}

/// Rows of the outbox for `route`: (undelivered and not given up, delivered).
fn outbox_rows(state: &Path, route: &str) -> (u64, u64) {
    let q = format!(
        "SELECT count(*) FILTER (WHERE delivered_ms IS NULL AND dead = 0), \
         count(*) FILTER (WHERE delivered_ms IS NOT NULL) FROM outbox WHERE route = '{route}'"
    );
    let out = std::process::Command::new("sqlite3")
        .arg(state)
        .arg(q)
        .output()
        .expect("sqlite3 runs");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut parts = text.split('|').map(|p| p.parse::<u64>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// The line number of the first log line containing `needle`.
fn line_of(log: &str, needle: &str) -> Option<usize> {
    log.lines().position(|l| l.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hanging_webhook_does_not_hold_back_email_and_a_stop_keeps_its_entries() {
    let r = Replica::healthy(2).await;
    let (_smtp, smtp_port, maildir) = start_smtp_maildir(r.dir.path()).await;
    let hook = HangingHook::start().await;
    let up = Arc::new(AtomicBool::new(true));
    let proxy = flapping_metrics(r.metrics_url.clone(), up.clone()).await;
    let url = r.metrics_url.clone();
    r.edit_config(|t| t.replace(&url, &format!("http://127.0.0.1:{proxy}/metrics")));
    // The webhook's own timeout is long: before each route delivered on its
    // own, one attempt held every email back for all of it.
    let routes = format!(
        "[[alerts.routes]]\nname = \"hook\"\nkind = \"webhook\"\n\
         url = \"http://127.0.0.1:{}/hook\"\ntimeout = \"120s\"\n\n\
         [[alerts.routes]]\nname = \"mail\"\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\n\
         smtp_port = {smtp_port}\nsmtp_tls = \"none\"\nfrom = \"soakwatch@localhost\"\n\
         to = [\"oncall@localhost\"]\n",
        hook.port
    );
    let w = r.add_watch_section(&format!("\n{routes}"));
    let mut d = r.start_daemon("delivery");
    d.wait_cycles(2, Duration::from_secs(60)).await;

    // service_up flaps: down 3 s, up 3 s, ... (each change is a notification).
    let flapper = {
        let up = up.clone();
        tokio::spawn(async move {
            loop {
                up.store(false, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(3)).await;
                up.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
        })
    };

    // Emails arrive while the webhook's first request is still held open.
    // (The bound is a hang guard, well under the webhook's 120 s timeout.)
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        d.assert_running("while the webhook hangs");
        let mails = maildir_messages(&maildir).len();
        if mails >= 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {mails} email(s) while the webhook hangs (accepted {}, closed {})\n{}",
            hook.accepted.load(Ordering::SeqCst),
            hook.closed.load(Ordering::SeqCst),
            d.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        hook.accepted.load(Ordering::SeqCst) >= 1,
        "the webhook was tried"
    );
    assert_eq!(
        hook.closed.load(Ordering::SeqCst),
        0,
        "the emails went out while the webhook's first request was still open"
    );
    flapper.abort();

    // Stop: the final report is written first, deliveries get their grace,
    // the process exits (hang guard far above the grace), and the webhook's
    // entries stay in the outbox.
    d.signal("INT");
    let code = d.wait_exit(Duration::from_secs(90)).await;
    let log = d.stderr();
    assert_eq!(code, 0, "{log}");
    for l in log.lines().filter(|l| {
        l.contains("shutdown requested") || l.contains("final report") || l.contains("grace")
    }) {
        eprintln!("{l}");
    }
    let latest: Vec<_> = std::fs::read_dir(&w.reports)
        .expect("reports dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with("-latest.md"))
        .collect();
    assert_eq!(latest.len(), 1, "one final report");
    let report = line_of(&log, "final report written").expect("final report logged");
    let grace = line_of(&log, "delivery grace").expect("the delivery grace is logged");
    assert!(report < grace, "the report before the grace:\n{log}");
    let (hook_pending, hook_delivered) = outbox_rows(&w.state, "hook");
    let (_, mail_delivered) = outbox_rows(&w.state, "mail");
    assert!(hook_pending >= 1, "the webhook's entries stay queued");
    assert_eq!(hook_delivered, 0);
    assert!(mail_delivered >= 3, "mail delivered {mail_delivered}");

    // The next start delivers them to a webhook that answers again.
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    let app = axum::Router::new().fallback(move || {
        let g = g.clone();
        async move {
            g.fetch_add(1, Ordering::SeqCst);
            "ok"
        }
    });
    let fixed = serve_loopback(app).await.port();
    r.edit_config(|t| {
        t.replace(
            &format!("127.0.0.1:{}/hook", hook.port),
            &format!("127.0.0.1:{fixed}/hook"),
        )
    });
    let mut d2 = r.start_daemon("delivery-restart");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while got.load(Ordering::SeqCst) < hook_pending as usize {
        d2.assert_running("while delivering the kept entries");
        assert!(
            std::time::Instant::now() < deadline,
            "kept webhook entries not delivered after a restart ({} of {hook_pending})\n{}",
            got.load(Ordering::SeqCst),
            d2.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d2.signal("INT");
    assert_eq!(d2.wait_exit(Duration::from_secs(90)).await, 0);
}

#[tokio::test]
async fn validate_warns_about_an_interval_shorter_than_the_probe_timeout() {
    let r = Replica::provisioned().await;
    r.add_watch_section("");
    let config = r.config.display().to_string();
    let run = run_bin(&["validate", "--config", &config], &[]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("watch.interval"))
        .unwrap_or_else(|| panic!("no warning about watch.interval:\n{}", run.stderr));
    assert!(
        line.contains("warning")
            && line.contains("probes.timeout")
            && line.contains(&config)
            && line.contains(":"),
        "{line}"
    );
    // An interval at least the timeout is not warned about.
    r.edit_config(|t| t.replace("timeout = \"5s\"", "timeout = \"1s\""));
    let run = run_bin(&["validate", "--config", &config], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("watch.interval"), "{}", run.stderr);
}
