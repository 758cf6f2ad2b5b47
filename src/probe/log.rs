//! The service's log: count lines that say it fell back to the legacy stream.

use std::io::{Read, Seek, SeekFrom};
use std::sync::OnceLock;

use crate::config::LogConfig;
use crate::sample::{LogState, ProbeFailure, ProbeKind, Probed};

/// Longest evidence line kept: enough to recognise it, short enough for a report.
const MAX_EVIDENCE_CHARS: usize = 200;

fn fail(reason: String) -> ProbeFailure {
    ProbeFailure {
        probe: ProbeKind::Log,
        reason,
    }
}

/// Reads the tail of the log (bounded by `max_scan_bytes`) on a blocking thread.
pub async fn probe(cfg: &LogConfig) -> Probed<LogState> {
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || scan_file(&cfg))
        .await
        .map_err(|e| fail(format!("log scan task failed: {e}")))?
}

fn scan_file(cfg: &LogConfig) -> Probed<LogState> {
    let path = cfg.path.display();
    let (mut file, meta) = super::file::open_regular(&cfg.path, "log file").map_err(fail)?;
    let size = meta.len();
    let start = size.saturating_sub(cfg.max_scan_bytes);
    file.seek(SeekFrom::Start(start))
        .map_err(|e| fail(format!("log file {path}: {e}")))?;
    let mut buf = Vec::with_capacity((size - start) as usize);
    file.take(cfg.max_scan_bytes)
        .read_to_end(&mut buf)
        .map_err(|e| fail(format!("log file {path}: {e}")))?;
    // When starting mid-file, the first partial line is not a line.
    let body: &[u8] = if start > 0 {
        match buf.iter().position(|b| *b == b'\n') {
            Some(i) => &buf[i + 1..],
            None => &[],
        }
    } else {
        &buf
    };
    let mut state = scan_text(&String::from_utf8_lossy(body), cfg);
    state.size = size;
    state.scanned_bytes = buf.len() as u64;
    Ok(state)
}

/// The pure part: classify lines.
pub fn scan_text(text: &str, cfg: &LogConfig) -> LogState {
    let mut state = LogState::default();
    for line in text.lines() {
        state.lines_scanned += 1;
        if !cfg.fallback_patterns.iter().any(|r| r.is_match(line)) {
            continue;
        }
        if cfg.ignore_patterns.iter().any(|r| r.is_match(line)) {
            state.ignored_count += 1;
            continue;
        }
        state.fallback_count += 1;
        let shown = evidence_line(line);
        if state.first_fallback.is_none() {
            state.first_fallback = Some(shown.clone());
        }
        state.last_fallback = Some(shown);
    }
    state
}

/// Trims a log line for evidence and hides credentials in any URL in it.
pub fn evidence_line(line: &str) -> String {
    static CREDS: OnceLock<Option<regex::Regex>> = OnceLock::new();
    let re = CREDS
        .get_or_init(|| regex::Regex::new(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@").ok());
    let line = line.trim();
    let line = match re {
        Some(re) => re.replace_all(line, "${1}***:***@").into_owned(),
        None => line.to_string(),
    };
    if line.chars().count() > MAX_EVIDENCE_CHARS {
        let cut: String = line.chars().take(MAX_EVIDENCE_CHARS).collect();
        format!("{cut}…")
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LogConfig {
        let re = |s: &str| regex::Regex::new(s).expect("test regex");
        LogConfig {
            path: "x".into(),
            fallback_patterns: vec![
                re(r"(?i)\bfall(ing|s)?[ -]?back\b"),
                re(r"(?i)consumer on ATHLETE_ALLY_EVENTS\b"),
                re("Stream mode: single"),
            ],
            ignore_patterns: vec![re("Stream candidates:")],
            max_scan_bytes: 1 << 20,
        }
    }

    #[test]
    fn candidates_line_is_not_a_fallback() {
        let log = "[event-bus] Stream mode: multi (EVENT_STREAM_MODE=\"multi\")\n\
                   [normalize-service] Stream candidates: AA_CORE_HOT, ATHLETE_ALLY_EVENTS\n\
                   [normalize] Found existing HRV consumer on AA_CORE_HOT: normalize-hrv-durable\n";
        let s = scan_text(log, &cfg());
        assert_eq!(s.fallback_count, 0);
        assert_eq!(s.lines_scanned, 3);
    }

    #[test]
    fn fallback_lines_are_counted_with_evidence() {
        let log = "ok\n[normalize] Found existing HRV consumer on ATHLETE_ALLY_EVENTS: normalize-hrv-durable\n\
                   [event-bus] AA_CORE_HOT unavailable, falling back to ATHLETE_ALLY_EVENTS\n";
        let s = scan_text(log, &cfg());
        assert_eq!(s.fallback_count, 2);
        assert!(s
            .first_fallback
            .as_deref()
            .unwrap_or("")
            .contains("consumer on ATHLETE_ALLY_EVENTS"));
        assert!(s
            .last_fallback
            .as_deref()
            .unwrap_or("")
            .contains("falling back"));
    }

    #[test]
    fn evidence_hides_credentials_and_is_bounded() {
        let e = evidence_line("connect postgres://athlete:hunter2@db/x failed");
        assert!(!e.contains("hunter2"), "{e}");
        let long = "x".repeat(1000);
        assert!(evidence_line(&long).chars().count() <= MAX_EVIDENCE_CHARS + 1);
    }

    #[test]
    fn tail_scan_skips_partial_first_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("svc.log");
        let mut text = String::new();
        text.push_str("falling back at the very start\n");
        for i in 0..100 {
            text.push_str(&format!("line {i}\n"));
        }
        std::fs::write(&path, &text).expect("write");
        let mut c = cfg();
        c.path = path;
        c.max_scan_bytes = 300;
        let s = scan_file(&c).expect("scan");
        assert_eq!(
            s.fallback_count, 0,
            "the early fallback line is outside the scanned tail"
        );
        assert_eq!(s.size, text.len() as u64);
        assert!(s.lines_scanned < 100);
    }
}
