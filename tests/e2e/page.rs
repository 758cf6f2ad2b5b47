//! The daemon's status page (`/`) in a real headless Chromium (Debian's
//! `chromium`, installed by scripts/ensure-test-tools.sh; the test fails,
//! never skips, without it).
//!
//! The browser is driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: JSON messages ending in NUL on fds 3 and 4),
//! not by scraping its log: console errors, uncaught exceptions and failed
//! loads (a CSP violation, a 404 image) arrive as structured events
//! (`Runtime.consoleAPICalled`, `Runtime.exceptionThrown`, `Log.entryAdded`),
//! the DOM is read with `Runtime.evaluate`, and the screenshots come from
//! `Page.captureScreenshot`, all in one session.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

const FAIL: f64 = 2.0;

/// A pipe whose ends are both close-on-exec and above the standard fds, so
/// the child's `dup2` onto 3 and 4 can never clobber one of them.
fn pipe_above_10() -> (OwnedFd, OwnedFd) {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two fds into the array; checked below.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let moved: Vec<OwnedFd> = fds
        .iter()
        .map(|&fd| {
            // SAFETY: fd is open (just created); the duplicate is owned below.
            let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
            assert!(high >= 10, "fcntl F_DUPFD_CLOEXEC");
            // SAFETY: fd came from pipe2 above and is closed exactly once.
            unsafe { libc::close(fd) };
            // SAFETY: high is a fresh fd owned by nobody else.
            unsafe { OwnedFd::from_raw_fd(high) }
        })
        .collect();
    let mut it = moved.into_iter();
    let (r, w) = (it.next(), it.next());
    (r.expect("read end"), w.expect("write end"))
}

/// Headless Chromium with one DevTools session on a pipe; killed on drop.
struct Browser {
    child: Child,
    to_browser: std::fs::File,
    from_browser: Receiver<Value>,
    next_id: u64,
    /// Every event seen so far (console, exceptions, log entries, loads).
    events: Vec<Value>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `chromium --headless=new --remote-debugging-pipe`.
    fn launch() -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        // Chromium reads commands on fd 3 and writes on fd 4.
        let (cmd_read, cmd_write) = pipe_above_10();
        let (out_read, out_write) = pipe_above_10();
        let (child_in, child_out): (RawFd, RawFd) = (
            std::os::fd::AsRawFd::as_raw_fd(&cmd_read),
            std::os::fd::AsRawFd::as_raw_fd(&out_write),
        );
        let mut cmd = Command::new("chromium");
        cmd.args([
            "--headless=new",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--remote-debugging-pipe",
            "about:blank",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only dup2 (async-signal-safe) runs between fork and exec;
        // dup2 clears close-on-exec on the new fds 3 and 4.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(child_in, 3) < 0 || libc::dup2(child_out, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start chromium ({e}): the status page test needs Debian's `chromium`; \
                 run scripts/ensure-test-tools.sh"
            )
        });
        drop(cmd_read);
        drop(out_write);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut reader = std::fs::File::from(out_read);
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 64 * 1024];
            while let Ok(n) = reader.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|&b| b == 0) {
                    let msg: Vec<u8> = buf.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg[..msg.len() - 1]) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Browser {
            child,
            to_browser: std::fs::File::from(cmd_write),
            from_browser: rx,
            next_id: 1,
            events: Vec::new(),
            _profile: profile,
        }
    }

    /// Next message, or panics after `timeout`.
    fn recv(&mut self, timeout: Duration, what: &str) -> Value {
        match self.from_browser.recv_timeout(timeout) {
            Ok(v) => v,
            Err(RecvTimeoutError::Timeout) => {
                panic!("chromium: no answer within {timeout:?} to {what}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("chromium closed its DevTools pipe while waiting for {what}")
            }
        }
    }

    /// Sends a command (to the page's session when given) and waits for its result.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).expect("json");
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .expect("write to chromium");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.recv(left, method);
            if v["id"] == json!(id) {
                if let Some(e) = v.get("error") {
                    panic!("chromium {method}: {e}");
                }
                return v["result"].clone();
            }
            self.events.push(v);
        }
    }

    /// Waits for the `n`-th event `method` of the session (counting those seen already).
    fn wait_event(&mut self, session: &str, method: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let seen = |events: &[Value]| {
            events
                .iter()
                .filter(|e| e["method"] == json!(method) && e["sessionId"] == json!(session))
                .count()
        };
        while seen(&self.events) < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.recv(left, &format!("{method} #{n}"));
            self.events.push(v);
        }
    }

    /// Evaluates a JavaScript expression in the page; its value.
    fn eval(&mut self, session: &str, expr: &str) -> Value {
        let r = self.call(
            Some(session),
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("evaluating {expr}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Sets the viewport (CSS pixels).
    fn viewport(&mut self, session: &str, width: u32, height: u32, mobile: bool) {
        self.call(
            Some(session),
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// A PNG of the whole page (beyond the viewport) written to `path`.
    fn screenshot(&mut self, session: &str, path: &Path) {
        let m = self.call(Some(session), "Page.getLayoutMetrics", json!({}));
        let size = &m["cssContentSize"];
        let clip = json!({
            "x": 0, "y": 0,
            "width": size["width"].as_f64().unwrap_or(1280.0),
            "height": size["height"].as_f64().unwrap_or(900.0).min(16000.0),
            "scale": 1
        });
        let shot = self.call(
            Some(session),
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true, "clip": clip}),
        );
        let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Console errors, uncaught exceptions and error log entries (failed
    /// loads, CSP violations) seen so far.
    fn errors(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e["method"].as_str()? {
                "Runtime.exceptionThrown" => Some(format!("exception: {}", e["params"])),
                "Runtime.consoleAPICalled"
                    if matches!(e["params"]["type"].as_str(), Some("error" | "assert")) =>
                {
                    Some(format!("console.error: {}", e["params"]["args"]))
                }
                "Log.entryAdded" if e["params"]["entry"]["level"] == json!("error") => {
                    Some(format!(
                        "log: {} ({})",
                        e["params"]["entry"]["text"], e["params"]["entry"]["url"]
                    ))
                }
                _ => None,
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (the screenshot's encoding).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Where the screenshots go: under the target directory, kept after the run.
fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// What the test reads from the loaded page.
const DOM_FACTS: &str = r#"JSON.stringify((() => {
  const row = document.querySelector('tr[data-criterion="dlq"]');
  const fb = document.querySelector('tr[data-criterion="fallback"]');
  return {
    verdict: document.getElementById('verdict')?.dataset.verdict ?? null,
    dlqNow: row?.dataset.now ?? null,
    dlqText: row?.innerText ?? '',
    fallbackText: fb?.innerText ?? '',
    scripts: document.scripts.length,
    tables: document.querySelectorAll('table > caption').length,
    images: [...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]),
    reports: [...document.querySelectorAll('a[href^="reports/"]')].map(a => a.getAttribute('href')),
    refresh: document.querySelector('meta[http-equiv="refresh"]')?.content ?? null,
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    bodyText: document.body.innerText,
  };
})())"#;

/// The browser session: load, see the page refresh itself, read the DOM,
/// screenshot at laptop and phone width. Returns (laptop facts, phone
/// facts, errors, screenshot paths).
fn browse(url: &str) -> (Value, Value, Vec<String>, Vec<PathBuf>) {
    let mut b = Browser::launch();
    let target = b.call(None, "Target.createTarget", json!({"url": "about:blank"}));
    let attached = b.call(
        None,
        "Target.attachToTarget",
        json!({"targetId": target["targetId"], "flatten": true}),
    );
    let s = attached["sessionId"].as_str().expect("session").to_string();
    for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
        b.call(Some(&s), domain, json!({}));
    }
    let dir = screenshot_dir();
    b.viewport(&s, 1280, 900, false);
    b.call(Some(&s), "Page.navigate", json!({"url": url}));
    b.wait_event(&s, "Page.loadEventFired", 1, Duration::from_secs(30));
    // The meta refresh reloads it (every 5 s at a 1 s interval).
    b.wait_event(&s, "Page.loadEventFired", 2, Duration::from_secs(20));
    let laptop: Value =
        serde_json::from_str(b.eval(&s, DOM_FACTS).as_str().expect("facts")).expect("facts json");
    let laptop_png = dir.join("status-page-laptop.png");
    b.screenshot(&s, &laptop_png);

    b.viewport(&s, 390, 844, true);
    b.call(Some(&s), "Page.navigate", json!({"url": url}));
    b.wait_event(&s, "Page.loadEventFired", 3, Duration::from_secs(30));
    let phone: Value =
        serde_json::from_str(b.eval(&s, DOM_FACTS).as_str().expect("facts")).expect("facts json");
    let phone_png = dir.join("status-page-phone.png");
    b.screenshot(&s, &phone_png);
    // Late events (a slow image) are in by now.
    let _ = b.eval(&s, "1");
    let errors = b.errors();
    let _ = b.call(None, "Browser.close", json!({}));
    (laptop, phone, errors, vec![laptop_png, phone_png])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_shows_a_failing_criterion_in_a_real_browser() {
    let mut r = Replica::healthy(5).await;
    // No hold on the DLQ: one dead-lettered message fails it at once.
    let w = r.add_watch_section("for = { dlq = \"0s\" }");
    let _feed = Trickle::start(&mut r, Duration::from_millis(400));
    let mut d = Daemon::start(&r.config, &[], r.dir.path(), "page");
    d.wait_cycles(2, Duration::from_secs(30)).await;

    // The faults: a poison message, and a fallback log line carrying markup.
    r.publish_poison().await;
    let legacy = r.names.legacy_stream.clone();
    r.append_log(&format!(
        "2026-11-27T00:00:01Z [normalize] Found existing HRV consumer on {legacy}: <script>alert(1)</script><img src=x onerror=alert(2)>"
    ));
    d.wait_status("dlq", "fail", Duration::from_secs(30), |v| v == FAIL)
        .await;
    d.wait_status("fallback", "fail", Duration::from_secs(30), |v| v == FAIL)
        .await;
    // The 5 s checkpoint report is written, so the page links it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_dir(&w.reports)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with("-5s.md"))
        })
        .unwrap_or(false)
    {
        d.assert_running("while waiting for the 5s checkpoint");
        assert!(
            Instant::now() < deadline,
            "no 5s checkpoint\n{}",
            d.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let port = d.port().expect("listener port");
    let url = format!("http://127.0.0.1:{port}/");
    let (laptop, phone, errors, shots) = tokio::task::spawn_blocking(move || browse(&url))
        .await
        .expect("browser session");
    for p in &shots {
        println!("status page screenshot: {}", p.display());
    }

    assert!(
        errors.is_empty(),
        "console errors on the status page:\n{}",
        errors.join("\n")
    );
    assert_eq!(laptop["dlqNow"], json!("fail"), "{laptop:#}");
    let dlq_text = laptop["dlqText"].as_str().unwrap_or("");
    assert!(dlq_text.contains("DLQ stable"), "{dlq_text}");
    assert!(
        dlq_text.contains("✗ fail"),
        "status as symbol and word: {dlq_text}"
    );
    assert_eq!(laptop["verdict"], json!("fail"), "{laptop:#}");
    // The markup in the log line is text on the page, never an element.
    assert_eq!(laptop["scripts"], json!(0), "{laptop:#}");
    let fallback = laptop["fallbackText"].as_str().unwrap_or("");
    assert!(fallback.contains("fail"), "{fallback}");
    assert!(
        fallback.contains("<script>alert(1)</script><img src=x onerror=alert(2)>"),
        "the log line is shown as text: {fallback}"
    );
    let body = laptop["bodyText"].as_str().unwrap_or("");
    assert!(body.contains("Open incidents"), "{body}");
    assert!(body.contains("Remaining"), "{body}");
    assert!(body.contains("Last sample age"), "{body}");
    assert!(body.contains("Latch"), "{body}");
    assert_eq!(laptop["refresh"], json!("5"), "{laptop:#}");
    assert!(laptop["tables"].as_u64().unwrap_or(0) >= 3, "{laptop:#}");
    let images = laptop["images"].as_array().cloned().unwrap_or_default();
    assert_eq!(images.len(), 5, "{laptop:#}");
    for img in &images {
        assert_eq!(img[1], json!(true), "chart not loaded: {img}");
    }
    let reports = laptop["reports"].as_array().cloned().unwrap_or_default();
    let link = reports
        .iter()
        .filter_map(Value::as_str)
        .find(|h| h.ends_with("-5s.md"))
        .unwrap_or_else(|| panic!("no 5s report link: {laptop:#}"));
    let (code, md) = d.get(&format!("/{link}")).await.expect("report");
    assert_eq!(code, 200);
    assert!(md.contains("5s checkpoint"), "{md}");
    // A phone: nothing wider than the screen (tables scroll in their boxes).
    assert!(
        phone["overflow"].as_i64().unwrap_or(i64::MAX) <= 0,
        "the page is wider than a phone: {phone:#}"
    );
    assert_eq!(phone["dlqNow"], json!("fail"), "{phone:#}");
    for p in &shots {
        assert!(
            std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) > 10_000,
            "{}",
            p.display()
        );
    }
    d.assert_running("after the browser session");
}
