//! The rollback executor and the E2E probe against real files, real
//! processes, and the machine's real NATS and PostgreSQL (a disposable
//! replica per test). Every test cleans up what it started.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::{nats_url, serve_loopback, Replica, TESTKIT};
use soakwatch::rollback::{
    self, cleanup_round_trip_rows, run_round_trip, steps, LogMark, RollbackConfig, RollbackMode,
    RoundTripConfig, StepRecord, StepStatus,
};
use soakwatch::verdict::{CriterionId, Status};

// ---------------------------------------------------------------------------------------------
// helpers

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A string no other process on the machine has in its command line.
fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{what}-{nanos}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// PIDs whose full command line contains `pattern` (pgrep -f).
fn pgrep(pattern: &str) -> Vec<u32> {
    let out = std::process::Command::new("pgrep")
        .arg("-f")
        .arg(pattern)
        .output()
        .expect("pgrep runs");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Waits up to `within` for no process to match `pattern`; returns the survivors.
async fn gone(pattern: &str, within: Duration) -> Vec<u32> {
    let deadline = Instant::now() + within;
    loop {
        let left = pgrep(pattern);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[cfg(unix)]
fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o7777
}

#[cfg(unix)]
fn ino_of(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).expect("metadata").ino()
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    f.write_all(text.as_bytes()).expect("append");
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn default_set() -> BTreeMap<String, String> {
    BTreeMap::from([("EVENT_STREAM_MODE".to_string(), "single".to_string())])
}

const ENV_TEXT: &str = "# Event Bus Configuration - Phase B Multi-Stream Mode\n\
EVENT_STREAM_MODE=multi  # flipped by the Phase B cutover\n\
FEATURE_SERVICE_MANAGES_STREAMS=false\n\
\n\
# Consumer configuration (updated ack_wait)\n\
export DATABASE_URL=\"postgres://svc:s3cretpw@db:5432/app\"\r\n\
NORMALIZE_HRV_ACK_WAIT_MS=60000  # Changed from 30000\n\
   # an indented comment\n\
QUOTED='single # not a comment'";

// ---------------------------------------------------------------------------------------------
// 1. edit_env

#[cfg(unix)]
#[test]
fn edit_env_changes_one_value_keeps_every_other_byte_backs_up_and_is_idempotent() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let env = dir.path().join(".env");
    std::fs::write(&env, ENV_TEXT).expect("write env");
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let ino_before = ino_of(&env);

    let out = steps::edit_env(&env, &default_set(), ".soakwatch-bak").expect("edit ok");
    assert!(out.contains("EVENT_STREAM_MODE: multi -> single"), "{out}");
    assert!(!out.contains("s3cretpw"), "{out}");

    // Byte for byte: only the value on the one line changed (comment, CRLF line,
    // indented comment and the missing final newline all survive).
    let new = std::fs::read(&env).expect("read env");
    let want = ENV_TEXT.replace(
        "EVENT_STREAM_MODE=multi  # flipped",
        "EVENT_STREAM_MODE=single  # flipped",
    );
    assert_eq!(String::from_utf8_lossy(&new), want);
    let (old_lines, new_lines): (Vec<&[u8]>, Vec<&[u8]>) = (
        ENV_TEXT.as_bytes().split(|b| *b == b'\n').collect(),
        new.split(|b| *b == b'\n').collect(),
    );
    assert_eq!(old_lines.len(), new_lines.len());
    let changed: Vec<usize> = (0..old_lines.len())
        .filter(|i| old_lines[*i] != new_lines[*i])
        .collect();
    assert_eq!(changed, vec![1], "only line 2 may change");

    // Backup = the original, same mode; the new file keeps the mode; the
    // replace was a rename (new inode), and no temp file is left behind.
    let backup = dir.path().join(".env.soakwatch-bak");
    assert_eq!(std::fs::read_to_string(&backup).expect("backup"), ENV_TEXT);
    assert_eq!(mode_of(&backup), 0o640);
    assert_eq!(mode_of(&env), 0o640);
    assert_ne!(ino_of(&env), ino_before, "written via temp file + rename");
    assert_eq!(names_in(dir.path()), vec![".env", ".env.soakwatch-bak"]);

    // Idempotent: a second run touches nothing, not even the backup.
    let ino_after = ino_of(&env);
    let again = steps::edit_env(&env, &default_set(), ".soakwatch-bak").expect("second run ok");
    assert!(
        again.starts_with("already set: EVENT_STREAM_MODE=single"),
        "{again}"
    );
    assert_eq!(ino_of(&env), ino_after);
    assert_eq!(std::fs::read(&env).expect("read"), new);
    assert_eq!(std::fs::read_to_string(&backup).expect("backup"), ENV_TEXT);

    // An absent key is appended, in the file's style, nothing else changes.
    let extra = BTreeMap::from([("ROLLED_BACK_BY".to_string(), "soakwatch".to_string())]);
    let out = steps::edit_env(&env, &extra, ".soakwatch-bak").expect("append ok");
    assert!(out.contains("(absent) -> soakwatch (appended)"), "{out}");
    let text = std::fs::read_to_string(&env).expect("read");
    assert_eq!(text, format!("{want}\nROLLED_BACK_BY=soakwatch"));
    assert_eq!(names_in(dir.path()), vec![".env", ".env.soakwatch-bak"]);
}

#[cfg(unix)]
#[test]
fn edit_env_follows_a_symlink_and_keeps_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let real = dir.path().join("normalize.env");
    std::fs::write(&real, "EVENT_STREAM_MODE=multi\n").expect("write");
    let link = dir.path().join(".env");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    // Only when the config opts in (follow_env_symlink = true).
    steps::edit_env_with(&link, &default_set(), ".bak", true).expect("edit ok");
    assert!(std::fs::symlink_metadata(&link)
        .expect("lstat")
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_to_string(&real).expect("read"),
        "EVENT_STREAM_MODE=single\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".env.bak")).expect("backup"),
        "EVENT_STREAM_MODE=multi\n"
    );
}

/// A tmpfs mounted here, unmounted on drop (even when the test panics).
struct TmpfsMount(PathBuf);

impl TmpfsMount {
    /// None when this process may not mount (not root / no CAP_SYS_ADMIN).
    fn new(at: &Path) -> Option<TmpfsMount> {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| TmpfsMount(at.to_path_buf()))
    }

    fn remount_ro(&self) {
        let st = std::process::Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .expect("mount runs");
        assert!(st.success(), "remount read-only failed");
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[cfg(unix)]
#[test]
fn edit_env_fails_with_a_reason_and_changes_nothing_when_it_cannot_read_or_write() {
    let dir = tempfile::tempdir().expect("tempdir");

    // Missing file, and a file under a directory that does not exist.
    for missing in [dir.path().join(".env"), dir.path().join("no/such/dir/.env")] {
        let err = steps::edit_env(&missing, &default_set(), ".bak").expect_err("must fail");
        let msg = err.to_string();
        assert!(
            msg.contains("does not exist") && msg.contains("nothing was changed"),
            "{msg}"
        );
    }

    // The env path is a directory: unreadable as a file.
    let as_dir = dir.path().join("env-dir");
    std::fs::create_dir(&as_dir).expect("mkdir");
    let msg = steps::edit_env(&as_dir, &default_set(), ".bak")
        .expect_err("must fail")
        .to_string();
    assert!(msg.contains("cannot read env file"), "{msg}");

    // The backup cannot be written (its path is a non-empty directory): the
    // .env stays as it was and no temp file is left. This is an unwritable
    // target that blocks root too, unlike chmod.
    let env = dir.path().join("svc.env");
    std::fs::write(&env, ENV_TEXT).expect("write");
    let blocker = dir.path().join("svc.env.bak");
    std::fs::create_dir(&blocker).expect("mkdir");
    std::fs::write(blocker.join("keep"), "x").expect("write");
    let msg = steps::edit_env(&env, &default_set(), ".bak")
        .expect_err("must fail")
        .to_string();
    assert!(
        msg.contains("cannot write backup") && msg.contains("not changed"),
        "{msg}"
    );
    assert_eq!(std::fs::read_to_string(&env).expect("read"), ENV_TEXT);
    assert_eq!(
        names_in(dir.path()),
        vec!["env-dir", "svc.env", "svc.env.bak"]
    );

    // A read-only file system (EROFS stops root as well): a tmpfs remounted ro.
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).expect("mkdir");
    match TmpfsMount::new(&ro) {
        None => eprintln!("note: cannot mount a tmpfs here (not root?); read-only fs case skipped"),
        Some(mount) => {
            let env = ro.join(".env");
            std::fs::write(&env, ENV_TEXT).expect("write");
            mount.remount_ro();
            let msg = steps::edit_env(&env, &default_set(), ".soakwatch-bak")
                .expect_err("must fail")
                .to_string();
            assert!(msg.to_ascii_lowercase().contains("read-only"), "{msg}");
            assert_eq!(std::fs::read_to_string(&env).expect("read"), ENV_TEXT);
            assert_eq!(names_in(&ro), vec![".env"]);
            drop(mount);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. restart

#[tokio::test]
async fn restart_reports_success_exit_codes_and_missing_programs() {
    let ok = steps::restart(&strings(&["true"]), Duration::from_secs(10))
        .await
        .expect("true succeeds");
    assert!(ok.contains("exited with code 0"), "{ok}");

    let err = steps::restart(
        &strings(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
        Duration::from_secs(10),
    )
    .await
    .expect_err("exit 3 fails")
    .to_string();
    assert!(err.contains("exited with code 3"), "{err}");
    assert!(err.contains("out") && err.contains("err"), "{err}");

    let err = steps::restart(&strings(&["/nonexistent/cmd"]), Duration::from_secs(10))
        .await
        .expect_err("missing binary fails")
        .to_string();
    assert_eq!(err, "command not found: /nonexistent/cmd");

    // Arguments are passed as they are: no shell expansion.
    let ok = steps::restart(&strings(&["echo", "$HOME", "a;b"]), Duration::from_secs(10))
        .await
        .expect("echo succeeds");
    assert!(ok.ends_with("$HOME a;b"), "{ok}");

    // A flood of output is bounded (head and tail kept).
    let ok = steps::restart(
        &strings(&[
            "sh",
            "-c",
            "echo FIRST; head -c 200000 /dev/zero | tr '\\0' x; echo; echo LAST",
        ]),
        Duration::from_secs(10),
    )
    .await
    .expect("flood succeeds");
    assert!(ok.len() < 5000, "{}", ok.len());
    assert!(
        ok.contains("FIRST") && ok.ends_with("LAST") && ok.contains("bytes cut"),
        "{ok}"
    );
}

#[tokio::test]
async fn restart_timeout_kills_the_whole_process_group() {
    let marker = unique("marker");
    // A distinct sleep length, so the grandchildren (whose command lines do not
    // carry the marker) can be found too.
    let secs = format!("30.{}", std::process::id());
    let script = format!("sleep {secs} & sleep {secs}; wait # {marker}");
    let t0 = Instant::now();
    let err = steps::restart(&strings(&["sh", "-c", &script]), Duration::from_secs(1))
        .await
        .expect_err("must time out")
        .to_string();
    let took = t0.elapsed();
    assert!(err.contains("timed out after 1s"), "{err}");
    assert!(
        took < Duration::from_millis(2500),
        "returned after {took:?}"
    );
    assert_eq!(
        gone(&marker, Duration::from_secs(2)).await,
        Vec::<u32>::new(),
        "the shell survived"
    );
    assert_eq!(
        gone(&format!("sleep {secs}"), Duration::from_secs(2)).await,
        Vec::<u32>::new(),
        "a child in the group survived"
    );
}

#[tokio::test]
async fn restart_does_not_hang_on_a_daemon_that_keeps_the_output_pipe() {
    // Like an init script that starts the service in the background without
    // redirecting its output: the step ends when the command exits.
    let secs = format!(
        "20.{}{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let script = format!("sleep {secs} & echo started");
    let t0 = Instant::now();
    let ok = steps::restart(&strings(&["sh", "-c", &script]), Duration::from_secs(10))
        .await
        .expect("the command exits 0");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(ok.contains("started"), "{ok}");
    // The daemon is left alone on success; this test started it, so it ends it.
    for pid in pgrep(&format!("sleep {secs}")) {
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status();
    }
}

// ---------------------------------------------------------------------------------------------
// 3. verify_logs

#[tokio::test]
async fn verify_logs_waits_for_new_lines_and_ignores_old_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("service.log");
    // Old lines (a previous single-mode start) must not count.
    append(
        &log,
        "2025-10-01T00:00:00Z [event-bus] Stream mode: single\n",
    );
    append(
        &log,
        "2025-10-01T00:00:00Z [normalize-service] Stream candidates: ATHLETE_ALLY_EVENTS\n",
    );
    let patterns = strings(&[
        "Stream mode: single",
        "Stream candidates: ATHLETE_ALLY_EVENTS",
    ]);

    let mark = LogMark::of(&log);
    let err = steps::verify_logs(&log, &mark, &patterns, Duration::from_millis(700))
        .await
        .expect_err("old lines do not count")
        .to_string();
    assert!(
        err.contains("after 700ms")
            && err.contains("\"Stream mode: single\", \"Stream candidates: ATHLETE_ALLY_EVENTS\""),
        "{err}"
    );

    // A writer appends the expected lines (plus noise) after 300 ms.
    let mark = LogMark::of(&log);
    let writer_log = log.clone();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        append(
            &writer_log,
            "2025-10-02T00:00:00Z [event-bus] Stream mode: single (EVENT_STREAM_MODE=\"single\")\n",
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        append(&writer_log, "noise\n2025-10-02T00:00:00Z [normalize-service] Stream candidates: ATHLETE_ALLY_EVENTS\r\n");
    });
    let t0 = Instant::now();
    let ok = steps::verify_logs(&log, &mark, &patterns, Duration::from_secs(10))
        .await
        .expect("new lines match");
    let took = t0.elapsed();
    writer.await.expect("writer");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(ok.contains("all 2 pattern(s) matched"), "{ok}");

    // One pattern present, one missing: the failure names which.
    let mark = LogMark::of(&log);
    append(&log, "[event-bus] Stream mode: single\n");
    let err = steps::verify_logs(&log, &mark, &patterns, Duration::from_millis(500))
        .await
        .expect_err("candidates line missing")
        .to_string();
    assert!(
        err.contains(
            "matched \"Stream candidates: ATHLETE_ALLY_EVENTS\" (matched: \"Stream mode: single\")"
        ),
        "{err}"
    );

    // A log that never appears says so.
    let nowhere = dir.path().join("never.log");
    let err = steps::verify_logs(
        &nowhere,
        &LogMark::of(&nowhere),
        &patterns,
        Duration::from_millis(300),
    )
    .await
    .expect_err("no log")
    .to_string();
    assert!(err.contains("the log file does not exist"), "{err}");

    // A bad regex is refused at once.
    let err = steps::verify_logs(
        &log,
        &mark,
        &strings(&["(unclosed"]),
        Duration::from_secs(5),
    )
    .await
    .expect_err("bad regex")
    .to_string();
    assert!(err.contains("not a valid regex"), "{err}");
}

#[tokio::test]
async fn verify_logs_follows_rotation_and_truncation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("service.log");
    let patterns = strings(&[
        "Stream mode: single",
        "Stream candidates: ATHLETE_ALLY_EVENTS$",
    ]);
    append(&log, &"old line of the multi-mode service\n".repeat(200));

    // Rotation: the log is renamed away and a new, shorter one starts.
    let mark = LogMark::of(&log);
    let (l, rotated) = (log.clone(), dir.path().join("service.log.1"));
    let rot = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::rename(&l, &rotated).expect("rotate");
        append(
            &l,
            "Stream mode: single\nStream candidates: ATHLETE_ALLY_EVENTS\n",
        );
    });
    steps::verify_logs(&log, &mark, &patterns, Duration::from_secs(5))
        .await
        .expect("lines in the new file count");
    rot.await.expect("rotator");

    // copytruncate: the same file shrinks, then gets the lines.
    append(&log, &"more old lines\n".repeat(200));
    let mark = LogMark::of(&log);
    let l = log.clone();
    let tr = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&l)
            .expect("open");
        f.set_len(0).expect("truncate");
        drop(f);
        append(
            &l,
            "Stream mode: single\nStream candidates: ATHLETE_ALLY_EVENTS\n",
        );
    });
    steps::verify_logs(&log, &mark, &patterns, Duration::from_secs(5))
        .await
        .expect("lines after the truncation count");
    tr.await.expect("truncater");

    // The anchored pattern rejects the multi-mode candidates line.
    let mark = LogMark::of(&log);
    append(
        &log,
        "Stream mode: single\nStream candidates: ATHLETE_ALLY_EVENTS, AA_CORE_HOT\n",
    );
    let err = steps::verify_logs(&log, &mark, &patterns, Duration::from_millis(400))
        .await
        .expect_err("anchored pattern")
        .to_string();
    assert!(err.contains("ATHLETE_ALLY_EVENTS$"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// execute without a real service: a fake service script that logs from the .env

/// Writes `service.sh`: "restarts" a fake service that appends the startup
/// lines it would log for the EVENT_STREAM_MODE in the env file (or always
/// multi mode when `broken`).
fn fake_service(dir: &Path, env: &Path, log: &Path, broken: bool) -> PathBuf {
    let script = dir.join("service.sh");
    let mode = if broken {
        "mode=multi".to_string()
    } else {
        format!(
            "mode=$(sed -n 's/^EVENT_STREAM_MODE=\\([a-z]*\\).*/\\1/p' '{}')",
            env.display()
        )
    };
    let text = format!(
        "#!/bin/sh\nset -e\n{mode}\n\
         if [ \"$mode\" = single ]; then c=ATHLETE_ALLY_EVENTS; else c='AA_CORE_HOT, ATHLETE_ALLY_EVENTS'; fi\n\
         (sleep 0.2; echo \"[event-bus] Stream mode: $mode\"; echo \"[normalize-service] Stream candidates: $c\") >> '{}' 2>/dev/null &\n\
         echo \"normalize-service restarted in $mode mode\"\n",
        log.display()
    );
    std::fs::write(&script, text).expect("write script");
    script
}

fn collect() -> (
    std::sync::Arc<std::sync::Mutex<Vec<StepRecord>>>,
    impl FnMut(&StepRecord) + Send,
) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    (seen, move |r: &StepRecord| {
        s.lock().expect("lock").push(r.clone())
    })
}

fn statuses(steps: &[StepRecord]) -> Vec<(usize, &str, StepStatus)> {
    steps
        .iter()
        .map(|s| (s.n, s.name.as_str(), s.status))
        .collect()
}

#[tokio::test]
async fn execute_runs_the_runbook_and_stops_at_the_first_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = dir.path().join(".env");
    let log = dir.path().join("service.log");
    std::fs::write(&env, ENV_TEXT).expect("env");
    append(&log, "[event-bus] Stream mode: multi\n[normalize-service] Stream candidates: AA_CORE_HOT, ATHLETE_ALLY_EVENTS\n");
    let script = fake_service(dir.path(), &env, &log, false);
    let mut cfg = RollbackConfig::new(
        env.clone(),
        vec!["sh".into(), script.display().to_string()],
        log.clone(),
    );
    cfg.verify_timeout = Duration::from_secs(5);
    cfg.expect_log_lines = strings(&[
        "Stream mode: single$",
        "Stream candidates: ATHLETE_ALLY_EVENTS$",
    ]);

    // Disarmed: nothing happens.
    let (seen, mut on_step) = collect();
    let out = rollback::execute(&cfg, &mut on_step).await;
    assert!(!out.success && !out.dry_run && out.failed_step.is_none());
    assert!(out.steps.iter().all(|s| s.status == StepStatus::Skipped));
    assert_eq!(seen.lock().expect("lock").len(), 4);
    assert_eq!(std::fs::read_to_string(&env).expect("env"), ENV_TEXT);

    // Dry run: every step planned with its concrete arguments, nothing changed.
    cfg.mode = RollbackMode::DryRun;
    let (_, mut on_step) = collect();
    let out = rollback::execute(&cfg, &mut on_step).await;
    assert!(out.success && out.dry_run);
    assert_eq!(
        statuses(&out.steps),
        vec![
            (1, "edit_env", StepStatus::Planned),
            (2, "restart", StepStatus::Planned),
            (3, "verify_logs", StepStatus::Planned),
            (4, "e2e", StepStatus::Planned),
        ]
    );
    assert!(
        out.steps[1]
            .output
            .contains(&format!("{:?}", cfg.restart_command)),
        "{}",
        out.steps[1].output
    );
    assert_eq!(std::fs::read_to_string(&env).expect("env"), ENV_TEXT);
    assert!(!cfg.backup_path().exists());
    let plan = rollback::plan(&cfg).join("\n");
    assert!(
        plan.contains("EVENT_STREAM_MODE=single") && plan.contains("4. e2e: skipped"),
        "{plan}"
    );

    // A config problem refuses everything up front.
    cfg.mode = RollbackMode::Armed;
    let mut bad = cfg.clone();
    bad.expect_log_lines.push("(unclosed".into());
    let (_, mut on_step) = collect();
    let out = rollback::execute(&bad, &mut on_step).await;
    assert_eq!(out.failed_step, Some(0));
    assert_eq!(out.steps[0].name, "preflight");
    assert!(
        out.steps[0].output.contains("not a valid regex"),
        "{}",
        out.steps[0].output
    );
    assert_eq!(std::fs::read_to_string(&env).expect("env"), ENV_TEXT);

    // Armed: edit, "restart", verify; e2e not configured -> skipped.
    let (seen, mut on_step) = collect();
    let out = rollback::execute(&cfg, &mut on_step).await;
    assert!(out.success, "{:#?}", out.steps);
    assert_eq!(
        statuses(&out.steps),
        vec![
            (1, "edit_env", StepStatus::Ok),
            (2, "restart", StepStatus::Ok),
            (3, "verify_logs", StepStatus::Ok),
            (4, "e2e", StepStatus::Skipped),
        ]
    );
    assert_eq!(
        *seen.lock().expect("lock"),
        out.steps,
        "on_step saw every step, in order"
    );
    assert!(
        out.steps[1].output.contains("restarted in single mode"),
        "{}",
        out.steps[1].output
    );
    assert!(out.steps[2].duration_ms >= 100, "{:?}", out.steps[2]);
    assert!(std::fs::read_to_string(&env)
        .expect("env")
        .contains("EVENT_STREAM_MODE=single  # flipped"));

    // A service that comes back in the wrong mode fails step 3; step 4 is not run.
    std::fs::write(&env, ENV_TEXT).expect("env");
    fake_service(dir.path(), &env, &log, true);
    cfg.verify_timeout = Duration::from_secs(1);
    let out = rollback::execute(&cfg, &mut |_| {}).await;
    assert!(!out.success);
    assert_eq!(out.failed_step, Some(3));
    assert_eq!(out.steps[2].status, StepStatus::Failed);
    assert!(
        out.steps[2].output.contains("\"Stream mode: single$\""),
        "{}",
        out.steps[2].output
    );
    assert_eq!(out.steps[3].status, StepStatus::Skipped);
    assert!(
        out.steps[3].output.contains("step 3 (verify_logs) failed"),
        "{}",
        out.steps[3].output
    );

    // A failing restart stops at step 2.
    cfg.restart_command = strings(&["sh", "-c", "echo unit failed >&2; exit 7"]);
    let out = rollback::execute(&cfg, &mut |_| {}).await;
    assert_eq!(out.failed_step, Some(2));
    assert!(
        out.steps[1].output.contains("exited with code 7")
            && out.steps[1].output.contains("unit failed")
    );
    assert_eq!(
        statuses(&out.steps)[2..],
        [
            (3, "verify_logs", StepStatus::Skipped),
            (4, "e2e", StepStatus::Skipped)
        ]
    );

    // A missing .env stops at step 1: the restart never runs.
    let flag = dir.path().join("restarted");
    cfg.env_file = dir.path().join("missing.env");
    cfg.restart_command = vec!["touch".into(), flag.display().to_string()];
    let out = rollback::execute(&cfg, &mut |_| {}).await;
    assert_eq!(out.failed_step, Some(1));
    assert!(
        out.steps[0].output.contains("does not exist"),
        "{}",
        out.steps[0].output
    );
    assert!(!flag.exists(), "restart ran after a failed edit");

    // An empty restart command is a recorded skip.
    cfg.env_file = env.clone();
    cfg.restart_command.clear();
    cfg.expect_log_lines.clear();
    let out = rollback::execute(&cfg, &mut |_| {}).await;
    assert!(out.success);
    assert_eq!(out.steps[1].status, StepStatus::Skipped);
    assert!(out.steps[1].output.contains("restart_command is empty"));
}

// ---------------------------------------------------------------------------------------------
// 4. e2e against a real replica

fn e2e_config(r: &Replica, subject: &str, timeout: Duration) -> RoundTripConfig {
    let mut c = RoundTripConfig::new(&nats_url(), subject, &r.db_url, &r.names.table);
    c.timeout = timeout;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_sees_the_row_and_reports_when_it_does_not_come() {
    let r = Replica::healthy(1).await;
    let cfg = e2e_config(&r, &r.names.hrv_subject, Duration::from_secs(10));

    let res = run_round_trip(&cfg).await;
    assert!(res.ok, "{res:?}");
    assert!(
        res.user_id.starts_with("soakwatch-e2e-") && res.event_id.starts_with("soakwatch-e2e-")
    );
    assert_eq!(res.rmssd, 62.0);
    let ln = res.ln_rmssd.expect("lnRmssd");
    assert!((ln - 62f64.ln()).abs() < 1e-12, "{ln}");
    assert!(res.latency_ms < 10_000, "{res:?}");
    let second = run_round_trip(&cfg).await;
    assert!(second.ok && second.user_id != res.user_id, "{second:?}");

    // Paused service: the event is stored but never becomes a row.
    r.admin("pause").await;
    // A pull already waiting on the server (1 s expiry) may still deliver: let it expire.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let slow = e2e_config(&r, &r.names.hrv_subject, Duration::from_secs(2));
    let t0 = Instant::now();
    let res = run_round_trip(&slow).await;
    assert!(!res.ok);
    assert!(res.reason.starts_with("no row within 2s"), "{}", res.reason);
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    r.admin("resume").await;

    // Test rows are removable by their prefix; real rows stay.
    r.wait_for("success", 4.0).await;
    let deleted = cleanup_round_trip_rows(&r.db_url, &r.names.table, "userId", "soakwatch-e2e-")
        .await
        .expect("cleanup");
    assert_eq!(deleted, 3);
    let again = cleanup_round_trip_rows(&r.db_url, &r.names.table, "userId", "soakwatch-e2e-")
        .await
        .expect("cleanup");
    assert_eq!(again, 0);
    let err = cleanup_round_trip_rows(&r.db_url, &r.names.table, "userId", "%").await;
    assert!(err.is_err(), "a wildcard prefix must be refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_failures_say_why_without_leaking_credentials() {
    let r = Replica::provisioned().await;

    // No stream captures the subject: JetStream does not store it.
    let cfg = e2e_config(
        &r,
        &format!("sw.{}.nowhere.hrv", r.names.tag),
        Duration::from_secs(3),
    );
    let res = run_round_trip(&cfg).await;
    assert!(!res.ok);
    assert!(
        res.reason.contains("not stored by JetStream"),
        "{}",
        res.reason
    );

    // Database that cannot be reached: nothing is published, the password is never shown.
    let mut cfg = e2e_config(&r, &r.names.hrv_subject, Duration::from_secs(3));
    cfg.database_url = format!(
        "postgres://postgres:hunter2secret@127.0.0.1:5432/{}_missing",
        r.names.database
    );
    let res = run_round_trip(&cfg).await;
    assert!(!res.ok);
    assert!(
        res.reason.starts_with("nothing published"),
        "{}",
        res.reason
    );
    assert!(!format!("{res:?} {cfg:?}").contains("hunter2secret"));
    let info =
        r.js.get_stream(&r.names.core_stream)
            .await
            .expect("core")
            .get_info()
            .await
            .expect("info");
    assert_eq!(
        info.state.messages, 0,
        "no event may be published when the row cannot be checked"
    );

    // NATS down.
    let mut cfg = e2e_config(&r, &r.names.hrv_subject, Duration::from_secs(2));
    let closed = common::ReservedPort::new();
    cfg.nats_url = format!("nats://s3cretoken@127.0.0.1:{}", closed.port());
    let res = run_round_trip(&cfg).await;
    assert!(
        !res.ok && res.reason.contains("cannot connect to NATS"),
        "{}",
        res.reason
    );
    assert!(!res.reason.contains("s3cretoken"), "{}", res.reason);
}

// ---------------------------------------------------------------------------------------------
// The whole runbook on a real replica: the stand-in really restarts into single mode.

/// Kills the stand-in whose pid the restart script last wrote (the test started it).
struct StandinPid(PathBuf);

impl StandinPid {
    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.0).ok()?.trim().parse().ok()
    }
}

impl Drop for StandinPid {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// The restart script of the replica's service: stop the stand-in whose pid
/// is in the pid file (TERM, then KILL after 10 s), start a new one detached
/// with `setsid` and its output in a file, record its pid.
fn restart_script(r: &Replica, pidfile: &Path) -> PathBuf {
    let script = r.path("restart-normalize.sh");
    let text = format!(
        r#"#!/bin/sh
pidfile='{pidfile}'
if [ -s "$pidfile" ]; then
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null
  i=0
  while [ -r "/proc/$pid/stat" ] && [ "$(cut -d' ' -f3 "/proc/$pid/stat")" != Z ]; do
    i=$((i+1))
    [ "$i" -eq 100 ] && kill -KILL "$pid" 2>/dev/null
    sleep 0.1
  done
  echo "stopped normalize-service (pid $pid)"
fi
setsid '{bin}' standin --tag '{tag}' --nats-url '{nats}' --database-url '{db}' --env-file '{env}' --log-file '{log}' --listen 127.0.0.1:{port} </dev/null >>'{out}' 2>&1 &
echo $! > "$pidfile"
echo "started normalize-service (pid $!)"
"#,
        pidfile = pidfile.display(),
        bin = TESTKIT,
        tag = r.names.tag,
        nats = nats_url(),
        db = r.db_url,
        env = r.files.env_file.display(),
        log = r.files.log_file.display(),
        port = r.port,
        out = r.path("standin.out").display(),
    );
    std::fs::write(&script, text).expect("write script");
    script
}

async fn wait_metrics_up(r: &Replica) {
    for _ in 0..100 {
        if r.http.get(&r.metrics_url).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("stand-in did not answer on {}", r.metrics_url);
}

async fn standin_state(r: &Replica) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{}/admin/state", r.port);
    r.http
        .get(&url)
        .send()
        .await
        .expect("state")
        .json()
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_rollback_restarts_the_standin_into_single_mode_and_sees_a_row() {
    let mut r = Replica::provisioned().await;
    let legacy_subject = format!("sw.{}.legacy.athlete-ally.hrv.raw-received", r.names.tag);

    // What single mode needs: the durable on the legacy stream (the service
    // binds it, never creates it), filtered to a subject the legacy stream holds.
    let mut consumer = soakwatch::testkit::replica::consumer_config(&r.names);
    consumer.filter_subject = legacy_subject.clone();
    consumer.deliver_policy = async_nats::jetstream::consumer::DeliverPolicy::New;
    r.js.create_consumer_on_stream(consumer, r.names.legacy_stream.as_str())
        .await
        .expect("legacy consumer");

    // The service as deployed: multi mode, started by the same script.
    let pidfile = r.path("normalize.pid");
    let _standin = StandinPid(pidfile.clone());
    let script = restart_script(&r, &pidfile);
    let st = std::process::Command::new("sh")
        .arg(&script)
        .status()
        .expect("start");
    assert!(st.success());
    wait_metrics_up(&r).await;
    r.publish(2).await;
    r.wait_for("success", 2.0).await;
    assert_eq!(standin_state(&r).await["mode"], "multi");
    let first_pid = _standin.pid().expect("pid");
    let original_env = std::fs::read_to_string(&r.files.env_file).expect("env");

    let mut cfg = RollbackConfig::new(
        r.files.env_file.clone(),
        vec!["sh".into(), script.display().to_string()],
        r.files.log_file.clone(),
    );
    cfg.mode = RollbackMode::Armed;
    cfg.restart_timeout = Duration::from_secs(30);
    cfg.verify_timeout = Duration::from_secs(20);
    cfg.expect_log_lines = vec![
        "Stream mode: single".to_string(),
        format!("Stream candidates: {}", r.names.legacy_stream),
    ];
    cfg.e2e = Some(e2e_config(&r, &legacy_subject, Duration::from_secs(20)));
    let plan = rollback::plan(&cfg).join("\n");
    assert!(
        plan.contains(&format!("{:?}", cfg.restart_command)),
        "{plan}"
    );

    let (seen, mut on_step) = collect();
    let out = rollback::execute(&cfg, &mut on_step).await;
    assert!(out.success, "{:#?}\nplan:\n{plan}", out.steps);
    assert_eq!(*seen.lock().expect("lock"), out.steps);
    assert!(
        out.steps.iter().all(|s| s.status == StepStatus::Ok),
        "{:#?}",
        out.steps
    );
    assert!(
        out.steps[0]
            .output
            .contains("EVENT_STREAM_MODE: multi -> single"),
        "{}",
        out.steps[0].output
    );
    assert!(out.steps[1]
        .output
        .contains(&format!("stopped normalize-service (pid {first_pid})")));
    assert!(
        out.steps[3].output.contains(&r.names.legacy_stream),
        "{}",
        out.steps[3].output
    );
    assert!(
        !out.steps[3].output.contains("postgres://postgres@"),
        "URLs are not in step output"
    );

    // The .env: one value changed; the original is the backup.
    assert_eq!(
        std::fs::read_to_string(&r.files.env_file).expect("env"),
        original_env.replace("EVENT_STREAM_MODE=multi", "EVENT_STREAM_MODE=single")
    );
    assert_eq!(
        std::fs::read_to_string(cfg.backup_path()).expect("backup"),
        original_env
    );

    // The service really runs in single mode on the legacy stream, and processed the e2e event there.
    let second_pid = _standin.pid().expect("pid");
    assert_ne!(first_pid, second_pid);
    let cmdline =
        std::fs::read_to_string(format!("/proc/{second_pid}/cmdline")).unwrap_or_default();
    assert!(cmdline.contains("standin"), "{cmdline:?}");
    let state = standin_state(&r).await;
    assert_eq!(state["mode"], "single");
    assert_eq!(state["bound_stream"], r.names.legacy_stream.as_str());
    let metrics = r
        .http
        .get(&r.metrics_url)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains(&format!("stream=\"{}\"", r.names.legacy_stream)),
        "{metrics}"
    );

    // Again: the .env is already set, the service restarts, verifies and works.
    let out = rollback::execute(&cfg, &mut |_| {}).await;
    assert!(out.success, "{:#?}", out.steps);
    assert!(
        out.steps[0].output.starts_with("already set"),
        "{}",
        out.steps[0].output
    );
    assert_eq!(
        std::fs::read_to_string(cfg.backup_path()).expect("backup"),
        original_env
    );
    assert_ne!(_standin.pid(), Some(second_pid));

    let e2e = cfg.e2e.as_ref().expect("e2e");
    let deleted = cleanup_round_trip_rows(
        &e2e.database_url,
        &e2e.table,
        &e2e.user_column,
        &e2e.user_prefix,
    )
    .await
    .expect("cleanup");
    assert_eq!(deleted, 2);
}

// ---------------------------------------------------------------------------------------------
// The `dlq_spike` trigger on the real daemon, real NATS and the stand-in, at the shipped
// spike settings (more than 10 messages within a trailing minute of real time).

/// Runs `soakwatch watch` at `interval` with a dry-run rollback on `dlq_spike`:
/// ten poison messages at the start never fire it (nor skip the 5 min `dlq`
/// hold), eleven more within a minute fire it once.
async fn dlq_spike_on_the_real_daemon(interval: &str, interval_secs: u64) {
    let mut r = Replica::healthy(3).await;
    r.add_watch_section("");
    r.edit_config(|t| {
        t.replace(
            "interval = \"1s\"\nmax_gap = \"3s\"",
            &format!(
                "interval = \"{interval}\"\nmax_gap = \"{}s\"",
                interval_secs * 3
            ),
        ) + &format!(
            "\n[rollback]\nmode = \"dry_run\"\nenv_file = {env}\nrestart_command = [\"true\"]\n\
             log_file = {log}\n\n[rollback.triggers]\ndlq_spike = \"0s\"\n",
            env = common::toml_path(&r.files.env_file),
            log = common::toml_path(&r.files.log_file),
        )
    });
    let mut d = r.start_daemon("spike");
    d.wait_metrics("the first cycle", Duration::from_secs(30), |e| {
        e.sum(
            "soakwatch_criterion_status",
            &[("criterion".into(), "dlq".into())],
        )
        .is_some()
    })
    .await;
    let started = Instant::now();
    for _ in 0..10 {
        r.publish_poison().await;
    }
    r.wait_for("dlq", 10.0).await;
    // Every window that holds the ten has been judged once the burst is a
    // window plus two intervals old.
    let judged = Duration::from_secs(60 + 2 * interval_secs + 2);
    tokio::time::sleep(judged.saturating_sub(started.elapsed())).await;
    let cfg = soakwatch::config::Config::load(&r.config).expect("config");
    let (_, s) = soakwatch::watch::load_summary(&cfg).await.expect("state");
    assert!(
        s.rollback.is_none(),
        "10 poison messages fired the rollback at interval {interval}: {:?}\n{}",
        s.rollback,
        d.stderr()
    );
    let dlq = s.criterion(CriterionId::Dlq).expect("dlq");
    assert_ne!(
        dlq.now,
        Status::Fail,
        "10 poison messages skipped the 5 min dlq hold at interval {interval}"
    );
    // Eleven more within a minute: the spike.
    for _ in 0..11 {
        r.publish_poison().await;
    }
    r.wait_for("dlq", 21.0).await;
    let deadline = Instant::now() + Duration::from_secs(3 * interval_secs + 15);
    let rb = loop {
        let (_, s) = soakwatch::watch::load_summary(&cfg).await.expect("state");
        if let Some(rb) = s.rollback.clone() {
            assert_eq!(
                s.criterion(CriterionId::Dlq).map(|c| c.now),
                Some(Status::Fail),
                "the spike skips the hold"
            );
            break rb;
        }
        assert!(
            Instant::now() < deadline,
            "11 poison messages within a minute did not fire the rollback at interval {interval}\n{}",
            d.stderr()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        rb.trigger
            .starts_with("dlq_spike: 11 message(s) dead-lettered within"),
        "{}",
        rb.trigger
    );
    // Once per soak: more poison later never fires it again.
    for _ in 0..15 {
        r.publish_poison().await;
    }
    r.wait_for("dlq", 36.0).await;
    tokio::time::sleep(Duration::from_secs(2 * interval_secs + 1)).await;
    let (_, s) = soakwatch::watch::load_summary(&cfg).await.expect("state");
    assert_eq!(
        s.rollback.map(|x| x.started),
        Some(rb.started),
        "fired once"
    );
    common::send_signal(d.pid, "TERM");
    assert_eq!(
        d.wait_exit(Duration::from_secs(30)).await,
        0,
        "{}",
        d.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dlq_spike_on_the_real_daemon_at_1s() {
    dlq_spike_on_the_real_daemon("1s", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dlq_spike_on_the_real_daemon_at_10s() {
    dlq_spike_on_the_real_daemon("10s", 10).await;
}

// ---------------------------------------------------------------------------------------------
// Issue 8, items 7, 9 and 11: refusals before the edit, env file policy, secrets.

#[tokio::test]
async fn a_restart_program_that_does_not_exist_is_refused_before_the_env_is_edited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = dir.path().join(".env");
    std::fs::write(&env, "EVENT_STREAM_MODE=multi\n").expect("env");
    let mut cfg = RollbackConfig::new(
        env.clone(),
        strings(&["soakwatch-no-such-restart-program", "restart"]),
        dir.path().join("service.log"),
    );
    cfg.mode = RollbackMode::Armed;
    let out = rollback::execute(&cfg, &mut |_| {}).await;
    assert_eq!(out.failed_step, Some(0), "{:#?}", out.steps);
    assert!(
        out.steps[0]
            .output
            .contains("command not found: soakwatch-no-such-restart-program"),
        "{}",
        out.steps[0].output
    );
    assert_eq!(
        std::fs::read_to_string(&env).expect("env"),
        "EVENT_STREAM_MODE=multi\n"
    );
    assert!(!cfg.backup_path().exists());

    // An empty argv while log lines are awaited cannot be meant either.
    cfg.restart_command.clear();
    let out = rollback::execute(&cfg, &mut |_| {}).await;
    assert_eq!(out.failed_step, Some(0));
    assert!(
        out.steps[0].output.contains("restart_command: empty"),
        "{}",
        out.steps[0].output
    );
    assert_eq!(
        std::fs::read_to_string(&env).expect("env"),
        "EVENT_STREAM_MODE=multi\n"
    );
}

/// A passwd-format file, the target a symlinked .env once pointed at.
const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
normalize:x:1001:1001::/srv/normalize:/bin/sh\n";

#[cfg(unix)]
#[tokio::test]
async fn a_symlinked_env_file_is_refused_and_a_non_env_target_is_never_edited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, PASSWD).expect("passwd");
    let link = dir.path().join(".env");
    std::os::unix::fs::symlink(&passwd, &link).expect("symlink");
    let flag = dir.path().join("restarted");
    let mut cfg = RollbackConfig::new(
        link.clone(),
        vec!["touch".into(), flag.display().to_string()],
        dir.path().join("service.log"),
    );
    cfg.mode = RollbackMode::Armed;
    cfg.expect_log_lines.clear();

    // Default policy: the link is refused, whatever it points to.
    let out = rollback::execute(&cfg, &mut |_| {}).await;
    assert_eq!(out.failed_step, Some(1), "{:#?}", out.steps);
    let why = &out.steps[0].output;
    assert!(
        why.contains("is a symlink") && why.contains("follow_env_symlink = true"),
        "{why}"
    );
    assert_eq!(std::fs::read(&passwd).expect("passwd"), PASSWD.as_bytes());
    assert!(!flag.exists(), "the restart ran after a refused edit");

    // Opted in: the target is read, and a passwd file is not an env file.
    cfg.follow_env_symlink = true;
    let out = rollback::execute(&cfg, &mut |_| {}).await;
    assert_eq!(out.failed_step, Some(1), "{:#?}", out.steps);
    let why = &out.steps[0].output;
    assert!(
        why.contains("is not an env file: line 1: not a KEY=value assignment")
            && why.contains("3 such line(s)"),
        "{why}"
    );
    assert!(why.contains("passwd"), "names the target: {why}");
    assert_eq!(std::fs::read(&passwd).expect("passwd"), PASSWD.as_bytes());
    assert!(!cfg.backup_path().exists());
    assert!(!flag.exists());
    assert_eq!(names_in(dir.path()), vec![".env", "passwd"]);

    // A real env file with one bad line in the middle: refused, line named.
    let env = dir.path().join("real.env");
    let text = "EVENT_STREAM_MODE=multi\n# ok\nthis is not an assignment\nA=1\n";
    std::fs::write(&env, text).expect("env");
    let err = steps::edit_env(&env, &default_set(), ".bak").expect_err("refused");
    assert!(err.to_string().contains("line 3"), "{err}");
    assert_eq!(std::fs::read_to_string(&env).expect("env"), text);
}

/// A loopback HTTP receiver: records (path, headers as text, body) of every
/// request; a path containing `echo` answers 500 with the request's
/// Authorization header in the body, as careless receivers do.
async fn echoing_receiver() -> (
    std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>,
    u16,
) {
    use axum::body::Bytes;
    use axum::extract::{OriginalUri, State};
    use axum::http::{HeaderMap, StatusCode};
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>;
    async fn handle(
        State(seen): State<Seen>,
        OriginalUri(uri): OriginalUri,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, String) {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        seen.lock().expect("lock").push((
            uri.path().to_string(),
            format!("{headers:?}"),
            String::from_utf8_lossy(&body).into_owned(),
        ));
        if uri.path().contains("echo") {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("refused request with\nAuthorization: {auth}\n"),
            )
        } else {
            (StatusCode::OK, "ok".into())
        }
    }
    let seen: Seen = Default::default();
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(seen.clone());
    let port = serve_loopback(app).await.port();
    (seen, port)
}

fn toml_str(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restart_gets_only_the_named_environment_and_no_secret_reaches_the_record_logs_or_alerts(
) {
    use soakwatch::state::store::{Baselines, SoakRecord, Store};
    let dir = tempfile::tempdir().expect("tempdir");
    let (seen, port) = echoing_receiver().await;
    // The mail route's server is not there: its delivery fails, nothing else.
    let no_smtp = common::ReservedPort::new();
    let smtp_pw = "Smtp-Pa55-never-shown";
    let hook_secret = "hmac-key-never-shown";
    let slack_path = "T0AAA/B0BBB/XyZslackPathSecret";
    let basic = ("hookuser", "B4sic-pw-never-shown");
    let unrelated = "Unrelated-daemon-token-77";

    let env = dir.path().join(".env");
    std::fs::write(&env, "EVENT_STREAM_MODE=multi\n").expect("env");
    // What a careless restart script prints: everything it can see, plus a
    // file that happens to hold the secrets and an echoed header.
    let leak = dir.path().join("leak.txt");
    std::fs::write(
        &leak,
        format!(
            "hmac={hook_secret}\nurl=http://127.0.0.1:{port}/services/{slack_path}\n\
             Authorization: Basic aG9va3VzZXI6QjRzaWMtcHctbmV2ZXItc2hvd24=\n"
        ),
    )
    .expect("leak");
    let state = dir.path().join("state.sqlite");
    let base = read_shipped();
    let base = &base[..base.find("[[alerts.routes]]").expect("routes")];
    let text = format!(
        "{base}\n\
         [[alerts.routes]]\nname = \"mail\"\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\n\
         smtp_port = {smtp_port}\nsmtp_tls = \"none\"\nusername = \"soak\"\npassword = \"${{SMTP_PASSWORD}}\"\n\
         from = \"soakwatch@localhost\"\nto = [\"oncall@localhost\"]\n\n\
         [[alerts.routes]]\nname = \"slack-like\"\nkind = \"webhook\"\n\
         url = \"http://127.0.0.1:{port}/services/{slack_path}\"\nhmac_secret = \"${{ALERT_WEBHOOK_SECRET}}\"\n\n\
         [[alerts.routes]]\nname = \"echoing\"\nkind = \"webhook\"\n\
         url = \"http://{}:{}@127.0.0.1:{port}/echo\"\n\n\
         [rollback]\nmode = \"disarmed\"\nenv_file = {}\nlog_file = {}\n\
         restart_command = [\"sh\", \"-c\", \"env; echo pw=$SMTP_PASSWORD; cat {}\"]\n\
         restart_env = {{ GIVEN_TO_RESTART = \"yes-given\", SMTP_PASSWORD = \"${{SMTP_PASSWORD}}\" }}\n\
         inherit_env = [\"HOME\"]\nexpect_log_lines = []\n",
        basic.0,
        basic.1,
        toml_str(&env),
        toml_str(&dir.path().join("service.log")),
        leak.display(),
        smtp_port = no_smtp.port(),
    )
    .replace(
        "state = \"${SOAKWATCH_STATE:-reports/soakwatch-state.sqlite}\"",
        &format!("state = {}", toml_str(&state)),
    );
    let cfg = dir.path().join("checks.toml");
    std::fs::write(&cfg, &text).expect("config");

    let store = Store::open(&state).await.expect("state");
    store
        .start_soak(
            &SoakRecord {
                meta: soakwatch::soak::timeline::SoakMeta {
                    id: "soak-secrets".into(),
                    name: "secrets".into(),
                    t0: chrono::Utc::now(),
                    planned_secs: 3600.0,
                },
                baselines: Baselines::default(),
            },
            chrono::Utc::now(),
        )
        .await
        .expect("soak");
    store.close().await;

    let run = common::run_bin(
        &[
            "rollback",
            "--execute",
            "--config",
            &cfg.display().to_string(),
        ],
        &[
            ("SMTP_PASSWORD", smtp_pw),
            ("ALERT_WEBHOOK_SECRET", hook_secret),
            ("UNRELATED_DAEMON_TOKEN", unrelated),
            ("SOAKWATCH_LOG", "debug"),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);

    let store = Store::open_read_only(&state).await.expect("state");
    let rec = store
        .rollback_record::<serde_json::Value>("soak-secrets")
        .await
        .expect("record")
        .expect("a rollback record");
    store.close().await;
    let record = serde_json::to_string(&rec.steps).expect("json");
    let outbox = std::process::Command::new("sqlite3")
        .arg(&state)
        .arg("SELECT route, attempts, last_error FROM outbox")
        .output()
        .expect("sqlite3");
    let outbox = String::from_utf8_lossy(&outbox.stdout).into_owned();
    let received: Vec<(String, String, String)> = seen.lock().expect("lock").clone();
    // Bodies only: the request path of the slack-like route is its secret.
    let bodies: String = received.iter().map(|(_, _, b)| format!("{b}\n")).collect();

    // The restart saw PATH, HOME and what restart_env names, nothing else.
    assert!(record.contains("GIVEN_TO_RESTART=yes-given"), "{record}");
    assert!(record.contains("PATH="), "{record}");
    assert!(record.contains("HOME="), "{record}");
    assert!(!record.contains("UNRELATED_DAEMON_TOKEN"), "{record}");
    // What it printed of the secrets it was given or found is cut out.
    assert!(record.contains("pw=***"), "{record}");
    assert!(record.contains("hmac=***"), "{record}");
    assert!(record.contains("Authorization: Basic ***"), "{record}");
    assert!(!record.contains("ALERT_WEBHOOK_SECRET"), "{record}");
    // The rollback alert reached the webhook; the echoing one refused it.
    assert!(
        received
            .iter()
            .any(|(p, _, b)| p.starts_with("/services/") && b.contains("rollback")),
        "{bodies}"
    );
    assert!(outbox.contains("echoing|1|"), "{outbox}");
    assert!(outbox.contains("HTTP 500"), "{outbox}");
    assert!(outbox.contains("Authorization: Basic ***"), "{outbox}");
    for (what, text) in [
        ("record", &record),
        ("outbox", &outbox),
        ("alert bodies", &bodies),
        ("stdout", &run.stdout),
        ("logs", &run.stderr),
    ] {
        for secret in [
            smtp_pw,
            hook_secret,
            "XyZslackPathSecret",
            basic.1,
            "aG9va3VzZXI6QjRzaWMtcHctbmV2ZXItc2hvd24",
            unrelated,
        ] {
            assert!(!text.contains(secret), "{secret} in the {what}:\n{text}");
        }
    }
}

fn read_shipped() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/checks.toml"))
        .expect("shipped checks.toml")
}

// ---------------------------------------------------------------------------------------------
// Issue 20 §6: what the rollback did must be readable.

/// A restart that fails noisily: its output's head and tail (scrubbed,
/// bounded) are shown by `rollback --execute`, `rollback --dry-run` (the
/// latch's journal), the report and the rollback alert, not just
/// "exited with code 3; output:".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_restart_shows_the_head_and_tail_of_its_output_everywhere() {
    use soakwatch::state::store::{Baselines, SoakRecord, Store};
    let dir = tempfile::tempdir().expect("tempdir");
    let (seen, port) = echoing_receiver().await;
    let token = "Rst-T0ken-never-shown-81";
    let env = dir.path().join(".env");
    std::fs::write(&env, "EVENT_STREAM_MODE=multi\n").expect("env");
    // First the reason, then 200 lines of noise, then the real error.
    let script = "echo 'Job for normalize-service.service failed: first line'; \
                  echo \"using token $RESTART_TOKEN\"; \
                  for i in $(seq 1 200); do echo \"noise line $i\"; done; \
                  echo 'ERROR: unit normalize-service not found (last line)' >&2; exit 3";
    let state = dir.path().join("state.sqlite");
    let reports = dir.path().join("reports");
    let base = read_shipped();
    let base = &base[..base.find("[[alerts.routes]]").expect("routes")];
    let text = format!(
        "{base}\n\
         [[alerts.routes]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\n\n\
         [rollback]\nmode = \"disarmed\"\nenv_file = {}\nlog_file = {}\n\
         restart_command = [\"sh\", \"-c\", {script:?}]\n\
         restart_env = {{ RESTART_TOKEN = \"{token}\" }}\nexpect_log_lines = []\n",
        toml_str(&env),
        toml_str(&dir.path().join("service.log")),
    )
    .replace(
        "state = \"${SOAKWATCH_STATE:-reports/soakwatch-state.sqlite}\"",
        &format!("state = {}", toml_str(&state)),
    )
    .replace(
        "reports_dir = \"${SOAKWATCH_REPORTS:-reports}\"",
        &format!("reports_dir = {}", toml_str(&reports)),
    );
    let cfg = dir.path().join("checks.toml");
    std::fs::write(&cfg, &text).expect("config");
    let store = Store::open(&state).await.expect("state");
    store
        .start_soak(
            &SoakRecord {
                meta: soakwatch::soak::timeline::SoakMeta {
                    id: "soak-noisy".into(),
                    name: "noisy".into(),
                    t0: chrono::Utc::now(),
                    planned_secs: 3600.0,
                },
                baselines: Baselines::default(),
            },
            chrono::Utc::now(),
        )
        .await
        .expect("soak");
    store.close().await;
    let c = cfg.display().to_string();

    let head = "Job for normalize-service.service failed: first line";
    let tail = "ERROR: unit normalize-service not found (last line)";
    let assert_readable = |what: &str, text: &str| {
        assert!(text.contains("exited with code 3"), "{what}:\n{text}");
        assert!(
            text.contains(head),
            "{what} lacks the output's head:\n{text}"
        );
        assert!(
            text.contains(tail),
            "{what} lacks the output's tail:\n{text}"
        );
        assert!(
            text.contains("more lines"),
            "{what} is not bounded:\n{text}"
        );
        assert!(
            !text.contains("noise line 100"),
            "{what} is not bounded:\n{text}"
        );
        assert!(!text.contains(token), "{what} shows the token:\n{text}");
    };

    let run = common::run_bin(&["rollback", "--execute", "--config", &c], &[]).await;
    assert_eq!(
        run.code, 2,
        "the restart failed: {}\n{}",
        run.stdout, run.stderr
    );
    assert_readable("rollback --execute", &run.stdout);
    assert!(run.stdout.contains("using token ***"), "{}", run.stdout);

    let run = common::run_bin(&["rollback", "--dry-run", "--config", &c], &[]).await;
    assert_readable("rollback --dry-run", &run.stdout);

    let run = common::run_bin(&["report", "--config", &c], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = std::fs::read_to_string(run.stdout.trim()).expect("report");
    let section = &report[report.find("## Rollback").expect("a rollback section")..];
    assert_readable("the report", section);

    let bodies: Vec<String> = seen
        .lock()
        .expect("lock")
        .iter()
        .filter(|(p, _, _)| p == "/hook")
        .map(|(_, _, b)| b.clone())
        .collect();
    let alert = bodies
        .iter()
        .find(|b| b.contains("rollback FAILED"))
        .unwrap_or_else(|| panic!("no rollback alert: {bodies:?}"));
    let v: serde_json::Value = serde_json::from_str(alert).expect("json");
    let item = &v["alerts"][0];
    let shown = format!("{}\n{}", item["summary"], item["evidence"]);
    assert_readable("the alert", &shown);
}
