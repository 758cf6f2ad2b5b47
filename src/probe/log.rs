//! The service's log: count lines that say it fell back to the legacy stream.

use std::io::{Read, Seek, SeekFrom};
use std::sync::OnceLock;

use crate::config::LogConfig;
use crate::probe::file::FileError;
use crate::sample::{LogState, ProbeError, ProbeFailure, ProbeKind, Probed};

/// Longest evidence line kept: enough to recognise it, short enough for a report.
const MAX_EVIDENCE_CHARS: usize = 200;

fn fail(error: ProbeError) -> ProbeFailure {
    ProbeFailure::new(ProbeKind::Log, error)
}

/// Reads on from where the previous cycle stopped, on a blocking thread that
/// stops reading at three quarters of `timeout` (the rest is read next cycle).
pub async fn probe(
    tail: std::sync::Arc<std::sync::Mutex<LogTail>>,
    cfg: &LogConfig,
    timeout: std::time::Duration,
) -> Probed<LogState> {
    let cfg = cfg.clone();
    let deadline = std::time::Instant::now() + timeout.mul_f64(0.75);
    tokio::task::spawn_blocking(move || {
        let mut guard = match tail.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                return Err(fail(ProbeError::failed(
                    format!("log file {}", cfg.path.display()),
                    "the previous cycle's read is still running",
                )))
            }
        };
        guard.poll(&cfg, deadline)
    })
    .await
    .map_err(|e| fail(ProbeError::failed("log scan task failed", e)))?
}

/// Bytes read per `read(2)`; lines are classified a block at a time.
const CHUNK: usize = 1 << 20;
/// An unterminated line longer than this is searched in pieces...
const MAX_CARRY: usize = 1 << 20;
/// ...each piece overlapping the next by this much, so a match that crosses
/// a piece boundary (any pattern shorter than this) is still found.
const OVERLAP: usize = 64 * 1024;

/// One file being read: its handle (kept open, so the rest of a renamed file
/// is read through it), identity, position and its unfinished last line.
struct Reader {
    file: std::fs::File,
    dev: u64,
    ino: u64,
    /// Offset of the next byte to read.
    offset: u64,
    /// The unterminated line so far (at most `MAX_CARRY + CHUNK` bytes).
    carry: Vec<u8>,
    /// Bytes of the current line dropped after their piece was searched.
    carry_dropped: u64,
    /// What the already-searched pieces of the current line matched.
    carry_hit: PieceHits,
    /// Skip up to the first newline (a start in the middle of the file).
    skip_partial: bool,
}

#[derive(Default, Clone)]
struct PieceHits {
    fallback: Option<String>,
    ignored: bool,
}

/// Counts kept across cycles (and restored on resume).
#[derive(Default)]
struct Totals {
    fallback: u64,
    ignored: u64,
    lines: u64,
    first: Option<String>,
    last: Option<String>,
}

/// The log tail kept by the prober across cycles: everything written since
/// the last cycle is read (a bounded amount per cycle, the rest later; never
/// skipped), through renames (the old handle is drained) and copy-truncate
/// (restart at 0). Fallbacks seen stay counted.
#[derive(Default)]
pub struct LogTail {
    cur: Option<Reader>,
    /// A file renamed away, still drained through its handle.
    old: Option<Reader>,
    /// A cursor from a stored snapshot, applied on the next poll.
    resume: Option<crate::sample::LogCursor>,
    /// Whether a first file was ever opened (later files are read from 0).
    started: bool,
    /// Start the first file where it ends now (a soak's T0: lines written
    /// before it are never judged), rather than at its recent tail.
    from_end: bool,
    totals: Totals,
}

/// Per-poll counters.
#[derive(Default)]
struct Cycle {
    lines: u64,
    fallback: u64,
    ignored: u64,
    bytes: u64,
}

impl LogTail {
    /// A tail for a soak starting now: the first file is read from where
    /// it ends at the first poll, so a pre-cutover line ("bound durable …
    /// on stream <legacy>") can never fail `fallback` for the whole soak.
    /// The position taken is stored with each cycle (file identity and
    /// offset), and a restarted watcher resumes from it.
    pub fn from_now() -> LogTail {
        LogTail {
            from_end: true,
            ..LogTail::default()
        }
    }

    /// Continues from a stored snapshot's log state (a restarted `watch`):
    /// the same file is read on from the stored offset, and the counts go on.
    pub fn resume(&mut self, prev: &LogState) {
        self.totals = Totals {
            fallback: prev.fallback_total.max(prev.fallback_count),
            ignored: prev.ignored_total,
            lines: prev.lines_total,
            first: prev.first_fallback.clone(),
            last: prev.last_fallback.clone(),
        };
        self.resume = prev.cursor.clone();
        self.started = prev.cursor.is_some();
    }

    /// One cycle: reads what was written since the last one, at most
    /// `cfg.max_scan_bytes` and not past `deadline`; the rest is the backlog.
    pub fn poll(&mut self, cfg: &LogConfig, deadline: std::time::Instant) -> Probed<LogState> {
        let mut cyc = Cycle::default();
        let mut budget = cfg.max_scan_bytes.max(1);
        let opened = self.follow(cfg);
        let size = match &opened {
            Ok(size) => *size,
            Err(_) => 0,
        };
        // The rest of a renamed file first, so lines stay in order.
        if let Some(mut old) = self.old.take() {
            let before = old.offset;
            let eof = drain(
                &mut old,
                cfg,
                &mut self.totals,
                &mut cyc,
                &mut budget,
                deadline,
            );
            if eof && old.offset == before {
                // At its end and not written to since the last cycle: done.
                finish_line(&mut old, cfg, &mut self.totals, &mut cyc);
            } else {
                self.old = Some(old);
            }
        }
        if let Some(cur) = self.cur.as_mut() {
            drain(cur, cfg, &mut self.totals, &mut cyc, &mut budget, deadline);
        }
        let backlog = self
            .cur
            .as_ref()
            .map_or(0, |c| size.saturating_sub(c.offset))
            + self.old.as_ref().map_or(0, |o| {
                o.file
                    .metadata()
                    .map_or(0, |m| m.len().saturating_sub(o.offset))
            });
        let state = LogState {
            size,
            scanned_bytes: cyc.bytes,
            lines_scanned: cyc.lines,
            fallback_count: cyc.fallback,
            first_fallback: self.totals.first.clone(),
            last_fallback: self.totals.last.clone(),
            ignored_count: cyc.ignored,
            fallback_total: self.totals.fallback,
            ignored_total: self.totals.ignored,
            lines_total: self.totals.lines,
            backlog_bytes: backlog,
            unreadable: None,
            cursor: self.cur.as_ref().map(|c| crate::sample::LogCursor {
                dev: c.dev,
                ino: c.ino,
                offset: c
                    .offset
                    .saturating_sub(c.carry.len() as u64 + c.carry_dropped),
            }),
        };
        match opened {
            Ok(_) => Ok(state),
            // Fallbacks seen before stay failing while the log is unreadable.
            Err(e) if self.totals.fallback > 0 => Ok(LogState {
                unreadable: Some(e.to_string()),
                ..state
            }),
            Err(e) => Err(fail(e.into())),
        }
    }

    /// Checks the path: same file (maybe truncated), a new file (rotation),
    /// or none. Returns the current size of the file at the path.
    fn follow(&mut self, cfg: &LogConfig) -> Result<u64, FileError> {
        use std::os::unix::fs::MetadataExt;
        let meta = match std::fs::metadata(&cfg.path) {
            Ok(m) => m,
            Err(e) => {
                // Renamed away (or deleted): drain the rest through the handle.
                if let Some(cur) = self.cur.take() {
                    self.retire(cur);
                }
                return Err(FileError::io("log file", &cfg.path, e));
            }
        };
        super::file::check_regular(&meta)
            .map_err(|kind| FileError::not_regular("log file", &cfg.path, kind))?;
        let (dev, ino, size) = (meta.dev(), meta.ino(), meta.len());
        if let Some(cur) = self.cur.as_mut() {
            if (cur.dev, cur.ino) == (dev, ino) {
                if size < cur.offset {
                    // Copy-truncate: the same file starts over.
                    cur.offset = 0;
                    cur.carry.clear();
                    cur.carry_dropped = 0;
                    cur.carry_hit = PieceHits::default();
                    cur.skip_partial = false;
                }
                return Ok(size);
            }
            if let Some(cur) = self.cur.take() {
                self.retire(cur);
            }
        }
        let (file, meta) = super::file::open_regular(&cfg.path, "log file")?;
        let (dev, ino, size) = (meta.dev(), meta.ino(), meta.len());
        let resume = self.resume.take();
        let (offset, skip_partial) = match resume {
            Some(c) if (c.dev, c.ino) == (dev, ino) && c.offset <= size => (c.offset, false),
            // Rotated while we were away, or a later file: from its start.
            Some(_) => (0, false),
            None if self.started => (0, false),
            // A soak's T0: from here on; a line being written is finished
            // before anything is judged.
            None if self.from_end => (size, size > 0 && !ends_line(&file, size)),
            // The first file of a process: its recent tail, as `check` shows.
            None => {
                let start = size.saturating_sub(cfg.max_scan_bytes);
                (start, start > 0)
            }
        };
        self.started = true;
        self.cur = Some(Reader {
            file,
            dev,
            ino,
            offset,
            carry: Vec::new(),
            carry_dropped: 0,
            carry_hit: PieceHits::default(),
            skip_partial,
        });
        Ok(size)
    }

    /// A file no longer at the path: kept to be drained (one at a time; an
    /// older one still pending is finished as far as it was read).
    fn retire(&mut self, r: Reader) {
        self.old = Some(r);
    }
}

/// Whether the byte before `size` is a newline (a file read from its end
/// then starts on a whole line).
fn ends_line(file: &std::fs::File, size: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 1];
    matches!(file.read_at(&mut b, size - 1), Ok(1) if b[0] == b'\n')
}

/// Reads `r` from its offset to its end or until the budget or the deadline
/// runs out; returns whether it reached the end.
fn drain(
    r: &mut Reader,
    cfg: &LogConfig,
    totals: &mut Totals,
    cyc: &mut Cycle,
    budget: &mut u64,
    deadline: std::time::Instant,
) -> bool {
    let mut buf = vec![0u8; CHUNK];
    if r.file.seek(SeekFrom::Start(r.offset)).is_err() {
        return true;
    }
    loop {
        if *budget == 0 || std::time::Instant::now() >= deadline {
            return false;
        }
        let want = (*budget).min(CHUNK as u64) as usize;
        let n = match r.file.read(&mut buf[..want]) {
            Ok(0) => return true,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        };
        r.offset += n as u64;
        *budget -= n as u64;
        cyc.bytes += n as u64;
        feed(r, &buf[..n], cfg, totals, cyc);
    }
}

/// Classifies the complete lines in `data` (with the carried start of the
/// first one) and carries the unfinished last line.
fn feed(r: &mut Reader, data: &[u8], cfg: &LogConfig, totals: &mut Totals, cyc: &mut Cycle) {
    let Some(first_nl) = data.iter().position(|b| *b == b'\n') else {
        r.carry.extend_from_slice(data);
        search_long_carry(r, cfg);
        return;
    };
    if r.skip_partial {
        r.skip_partial = false;
        r.carry.clear();
    } else {
        r.carry.extend_from_slice(&data[..first_nl]);
        finish_line(r, cfg, totals, cyc);
    }
    let last_nl = data.iter().rposition(|b| *b == b'\n').unwrap_or(first_nl);
    if last_nl > first_nl {
        let block = String::from_utf8_lossy(&data[first_nl + 1..last_nl]);
        let s = scan_text(&block, cfg);
        add(totals, cyc, &s);
    }
    r.carry.extend_from_slice(&data[last_nl + 1..]);
    search_long_carry(r, cfg);
}

/// A line longer than `MAX_CARRY`: searches what is carried and keeps only
/// the overlap, so memory stays bounded and the line is still searched.
fn search_long_carry(r: &mut Reader, cfg: &LogConfig) {
    if r.carry.len() <= MAX_CARRY || r.skip_partial {
        if r.skip_partial && r.carry.len() > MAX_CARRY {
            r.carry.clear();
        }
        return;
    }
    let text = String::from_utf8_lossy(&r.carry);
    if r.carry_hit.fallback.is_none() {
        r.carry_hit.fallback = piece_evidence(&text, cfg);
    }
    if cfg.ignore_patterns.iter().any(|p| p.is_match(&text)) {
        r.carry_hit.ignored = true;
    }
    let cut = r.carry.len() - OVERLAP;
    r.carry.drain(..cut);
    r.carry_dropped += cut as u64;
}

/// Evidence from a piece of a long line: the text from just before the
/// first fallback match (the line's start may be megabytes away).
fn piece_evidence(text: &str, cfg: &LogConfig) -> Option<String> {
    let at = cfg
        .fallback_patterns
        .iter()
        .filter_map(|p| p.find(text).map(|m| m.start()))
        .min()?;
    let mut from = at.saturating_sub(40);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    Some(if from == 0 {
        evidence_line(text)
    } else {
        format!("…{}", evidence_line(&text[from..]))
    })
}

/// The carried line is complete (a newline, or the end of a rotated file).
fn finish_line(r: &mut Reader, cfg: &LogConfig, totals: &mut Totals, cyc: &mut Cycle) {
    if r.carry.is_empty() && r.carry_dropped == 0 {
        return;
    }
    let text = String::from_utf8_lossy(&r.carry);
    let mut s = scan_text(&text, cfg);
    let hits = std::mem::take(&mut r.carry_hit);
    if r.carry_dropped > 0 {
        // One long line searched in pieces: one line, at most one event.
        let fallback = hits.fallback.or_else(|| piece_evidence(&text, cfg));
        let ignored = hits.ignored || cfg.ignore_patterns.iter().any(|p| p.is_match(&text));
        s = LogState {
            lines_scanned: 1,
            ..Default::default()
        };
        match fallback {
            Some(_) if ignored => s.ignored_count = 1,
            Some(ev) => {
                s.fallback_count = 1;
                s.first_fallback = Some(ev.clone());
                s.last_fallback = Some(ev);
            }
            None => {}
        }
    }
    add(totals, cyc, &s);
    r.carry.clear();
    r.carry_dropped = 0;
}

fn add(totals: &mut Totals, cyc: &mut Cycle, s: &LogState) {
    cyc.lines += s.lines_scanned;
    cyc.fallback += s.fallback_count;
    cyc.ignored += s.ignored_count;
    totals.fallback += s.fallback_count;
    totals.ignored += s.ignored_count;
    totals.lines += s.lines_scanned;
    if totals.first.is_none() {
        totals.first.clone_from(&s.first_fallback);
    }
    if s.last_fallback.is_some() {
        totals.last.clone_from(&s.last_fallback);
    }
}

/// A one-off scan (a fresh tail): the recent `max_scan_bytes` of the log.
pub fn scan_file(cfg: &LogConfig) -> Probed<LogState> {
    LogTail::default().poll(
        cfg,
        std::time::Instant::now() + std::time::Duration::from_secs(3600),
    )
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

    fn far() -> std::time::Instant {
        std::time::Instant::now() + std::time::Duration::from_secs(600)
    }

    fn append(p: &std::path::Path, text: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(p)
            .expect("open");
        f.write_all(text.as_bytes()).expect("append");
    }

    fn tail_cfg(path: &std::path::Path, budget: u64) -> LogConfig {
        let mut c = cfg();
        c.path = path.to_path_buf();
        c.max_scan_bytes = budget;
        c
    }

    #[test]
    fn lines_are_read_once_and_a_fallback_stays_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("svc.log");
        append(&p, "a\nfalling back now\n");
        let c = tail_cfg(&p, 1 << 20);
        let mut t = LogTail::default();
        let s = t.poll(&c, far()).expect("poll");
        assert_eq!(
            (s.fallback_count, s.fallback_total, s.lines_scanned),
            (1, 1, 2)
        );
        append(&p, "b\nc");
        let s = t.poll(&c, far()).expect("poll");
        assert_eq!(
            (s.fallback_count, s.fallback_total, s.lines_scanned),
            (0, 1, 1)
        );
        // The unterminated "c" is finished by its newline, not counted twice.
        append(&p, "\n");
        let s = t.poll(&c, far()).expect("poll");
        assert_eq!((s.lines_scanned, s.backlog_bytes), (1, 0));
    }

    #[test]
    fn a_soak_tail_never_judges_lines_from_before_its_t0() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("svc.log");
        // A pre-cutover fallback, and a line still being written at T0.
        append(&p, "falling back before T0\nhalf a line, falling back");
        let c = tail_cfg(&p, 1 << 20);
        let mut t = LogTail::from_now();
        let s = t.poll(&c, far()).expect("poll at T0");
        assert_eq!((s.fallback_total, s.lines_scanned), (0, 0));
        let cursor = s.cursor.clone().expect("position recorded at T0");
        assert_eq!(cursor.offset, std::fs::metadata(&p).expect("meta").len());
        // The rest of the unfinished line belongs to before T0 as well.
        append(&p, " still\nok\n");
        let s = t.poll(&c, far()).expect("poll");
        assert_eq!((s.fallback_total, s.lines_scanned), (0, 1));
        append(&p, "falling back after T0\n");
        let s = t.poll(&c, far()).expect("poll");
        assert_eq!((s.fallback_count, s.fallback_total), (1, 1));
        // A `check` (the default tail) still shows the recent tail.
        let s = LogTail::default().poll(&c, far()).expect("check's tail");
        assert_eq!(s.fallback_total, 3);
    }

    #[test]
    fn a_burst_larger_than_the_budget_is_read_over_cycles_without_skipping() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("svc.log");
        append(&p, "start\n");
        let c = tail_cfg(&p, 64 * 1024);
        let mut t = LogTail::default();
        t.poll(&c, far()).expect("first poll");
        let mut burst = String::new();
        for i in 0..20_000 {
            burst.push_str(&format!("line {i} ok\n"));
            if i == 10_000 {
                burst.push_str("AA_CORE_HOT unavailable, falling back to ATHLETE_ALLY_EVENTS\n");
            }
        }
        append(&p, &burst);
        let mut polls = 0;
        let mut lines = 0;
        let mut saw_backlog = false;
        loop {
            let s = t.poll(&c, far()).expect("poll");
            polls += 1;
            lines += s.lines_scanned;
            saw_backlog |= s.backlog_bytes > 0;
            if s.backlog_bytes == 0 {
                assert_eq!(s.fallback_total, 1);
                break;
            }
            assert!(polls < 100);
        }
        assert!(saw_backlog && polls > 2, "{polls}");
        assert_eq!(lines, 20_001);
    }

    #[test]
    fn mv_rotation_reads_the_rest_of_the_old_file_and_keeps_the_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("svc.log");
        append(&p, "ok\n");
        let c = tail_cfg(&p, 1 << 20);
        let mut t = LogTail::default();
        t.poll(&c, far()).expect("poll");
        // The service writes a fallback, then the file is renamed before the next
        // cycle; the service's handle still writes to it, then a new file appears.
        append(&p, "falling back once\n");
        let rotated = dir.path().join("svc.log.1");
        std::fs::rename(&p, &rotated).expect("mv");
        let s = t
            .poll(&c, far())
            .expect("fallback seen before: still answers");
        assert_eq!(s.fallback_total, 1);
        assert!(s
            .unreadable
            .as_deref()
            .unwrap_or("")
            .contains("does not exist"));
        append(&rotated, "falling back twice, after the rename\n");
        append(&p, "new file\n");
        let s = t.poll(&c, far()).expect("poll");
        assert_eq!(s.fallback_total, 2, "{s:?}");
        assert!(s.unreadable.is_none());
        let s = t.poll(&c, far()).expect("poll");
        assert_eq!(s.fallback_total, 2);
    }

    #[test]
    fn copy_truncate_restarts_at_the_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("svc.log");
        append(&p, "ok one\nok two\nok three\n");
        let c = tail_cfg(&p, 1 << 20);
        let mut t = LogTail::default();
        t.poll(&c, far()).expect("poll");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .expect("open")
            .set_len(0)
            .expect("truncate");
        append(&p, "fall back\n");
        let s = t.poll(&c, far()).expect("poll");
        assert_eq!((s.fallback_total, s.lines_scanned), (1, 1));
    }

    #[test]
    fn a_line_longer_than_the_chunk_is_searched_in_pieces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("svc.log");
        std::fs::write(&p, "").expect("create");
        let c = tail_cfg(&p, 64 << 20);
        let mut t = LogTail::default();
        t.poll(&c, far()).expect("poll");
        // 10 MB in one line, the pattern in the middle straddling a 1 MiB boundary.
        let mut line = "x".repeat(5 * (1 << 20) - 5);
        line.push_str(" falling back to ATHLETE_ALLY_EVENTS ");
        line.push_str(&"y".repeat(5_000_000));
        line.push('\n');
        append(&p, &line);
        append(&p, "ok\n");
        let s = t.poll(&c, far()).expect("poll");
        assert_eq!((s.fallback_count, s.lines_scanned), (1, 2), "{s:?}");
        assert!(s
            .last_fallback
            .as_deref()
            .unwrap_or("")
            .contains("falling back"));
    }

    #[test]
    fn a_resumed_tail_goes_on_from_the_stored_cursor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("svc.log");
        append(&p, "falling back\nok\n");
        let c = tail_cfg(&p, 1 << 20);
        let mut t = LogTail::default();
        let stored = t.poll(&c, far()).expect("poll");
        append(&p, "ok again\n");
        let mut t2 = LogTail::default();
        t2.resume(&stored);
        let s = t2.poll(&c, far()).expect("poll");
        assert_eq!((s.lines_scanned, s.fallback_total), (1, 1), "{s:?}");
    }
}
