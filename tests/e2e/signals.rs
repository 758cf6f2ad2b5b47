//! Issue 20 §5: signals and the state lock, through the real daemon on a
//! replica: SIGHUP is logged and ignored, the state lock follows the file
//! (a hard link meets it), and a state that cannot be written is logged once
//! per change, its WAL checkpointed so freed space is not eaten again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{Daemon, Replica};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `soakwatch_cycles_total` in a /metrics body.
fn cycles(body: &str) -> f64 {
    soakwatch::promtext::parse(body)
        .sum("soakwatch_cycles_total", &[])
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_is_logged_and_ignored_and_the_soak_goes_on() {
    let r = Replica::healthy(2).await;
    let w = r.add_watch_section("");
    let mut d = r.start_daemon("watch");
    let body = d.wait_cycles(2, secs(30)).await;
    let before = cycles(&body);
    d.signal("HUP");
    // Still sampling after the hangup: two more cycles.
    d.wait_cycles(before as u64 + 2, secs(30)).await;
    d.assert_running("after SIGHUP");
    let stderr = d.stderr();
    let line = stderr
        .lines()
        .find(|l| l.contains("SIGHUP"))
        .unwrap_or_else(|| panic!("no log line for SIGHUP:\n{stderr}"));
    assert!(line.contains("ignored"), "{line}");
    // SIGTERM still stops it cleanly, with its final report.
    d.signal("TERM");
    assert_eq!(d.wait_exit(secs(20)).await, 0, "{}", d.stderr());
    let stdout = d.stdout();
    assert!(stdout.contains("soak "), "{stdout}");
    let latest: Vec<_> = std::fs::read_dir(&w.reports)
        .expect("reports")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with("-latest.md"))
        .collect();
    assert_eq!(latest.len(), 1, "one final report");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_watch_through_a_hard_link_is_refused() {
    let r = Replica::healthy(2).await;
    let w = r.add_watch_section("");
    let mut first = r.start_daemon("first");
    first.wait_cycles(1, secs(30)).await;
    // The same file under another name, in another folder.
    let other = r.path("elsewhere");
    std::fs::create_dir_all(&other).expect("mkdir");
    let link = other.join("linked.sqlite");
    std::fs::hard_link(&w.state, &link).expect("hard link");
    let link_arg = link.display().to_string();
    let mut second = Daemon::start(&r.config, &["--state", &link_arg], r.dir.path(), "second");
    let code = second.wait_exit(secs(30)).await;
    let err = second.stderr();
    assert_eq!(code, 3, "the second daemon ran:\n{err}");
    assert!(err.contains("locked by another soakwatch process"), "{err}");
    first.assert_running("after the second daemon was refused");
    // The first one goes on recording.
    let body = first.wait_cycles(3, secs(30)).await;
    assert!(cycles(&body) >= 3.0);
    first.signal("TERM");
    assert_eq!(first.wait_exit(secs(20)).await, 0, "{}", first.stderr());
}

/// A tmpfs of `size` mounted at a path, unmounted on drop (even when the
/// test panics). Needs root (CAP_SYS_ADMIN), as the tests' machine has.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "this test mounts a {size} tmpfs as a small disk and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Bytes free on the filesystem holding `p`.
fn free_bytes(p: &Path) -> u64 {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid C string and a zeroed statvfs for the kernel to fill.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    assert_eq!(rc, 0, "statvfs: {}", std::io::Error::last_os_error());
    st.f_bavail as u64 * st.f_frsize as u64
}

/// Size of a file, 0 when it does not exist.
fn size_of(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn metric(body: &str, name: &str, target: Option<&str>) -> Option<f64> {
    let labels: Vec<(String, String)> = target
        .map(|t| vec![("target".to_string(), t.to_string())])
        .unwrap_or_default();
    soakwatch::promtext::parse(body).sum(name, &labels)
}

/// The state on a 2 MiB filesystem that its WAL fills (SQLite checkpoints
/// the WAL at ~4 MB, so on a disk this small it only grows): the write error
/// is logged once, not once per cycle; the cycles wait in memory; and once
/// some space is freed the WAL is checkpointed and truncated before the
/// waiting cycles are written, so the space comes back instead of the WAL
/// eating what was freed and failing again.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_state_disk_is_logged_once_and_freed_space_is_not_eaten_by_the_wal() {
    let r = Replica::healthy(2).await;
    r.add_watch_section("");
    // Fast cycles: the WAL fills the disk in seconds.
    r.edit_config(|t| t.replace("interval = \"1s\"", "interval = \"200ms\""));
    let small = r.path("small");
    let _mount = Tmpfs::mount(&small, "2m");
    let state = small.join("state.sqlite");
    let wal = small.join("state.sqlite-wal");
    // Something else on that disk, removed later to free 512 KiB.
    let other = small.join("other-file");
    std::fs::write(&other, vec![0u8; 512 * 1024]).expect("other file");
    let state_arg = state.display().to_string();
    let mut d = Daemon::start(&r.config, &["--state", &state_arg], r.dir.path(), "full");
    let failing = |m: &soakwatch::promtext::Exposition| {
        m.sum(
            "soakwatch_write_failing",
            &[("target".into(), "state".into())],
        )
    };
    let body = d
        .wait_metrics("the state writes to fail", secs(120), |m| {
            failing(m) == Some(1.0)
        })
        .await;
    let failed_at = metric(&body, "soakwatch_write_errors_total", Some("state")).unwrap_or(0.0);
    let wal_when_full = size_of(&wal);
    eprintln!(
        "full after {} cycles: state {} B, WAL {} B, free {} B",
        cycles(&body),
        size_of(&state),
        wal_when_full,
        free_bytes(&small)
    );
    // Failing for a few more cycles.
    let body = d
        .wait_metrics("three more failed writes", secs(30), |m| {
            m.sum(
                "soakwatch_write_errors_total",
                &[("target".into(), "state".into())],
            )
            .unwrap_or(0.0)
                >= failed_at + 3.0
        })
        .await;
    assert!(
        metric(&body, "soakwatch_unsaved_cycles", None).unwrap_or(0.0) >= 3.0,
        "{body}"
    );
    std::fs::remove_file(&other).expect("free some space");
    let body = d
        .wait_metrics("the waiting cycles to be written", secs(60), |m| {
            failing(m) == Some(0.0) && m.sum("soakwatch_unsaved_cycles", &[]) == Some(0.0)
        })
        .await;
    let (wal_after, free_after) = (size_of(&wal), free_bytes(&small));
    eprintln!(
        "recovered: state {} B, WAL {wal_after} B, free {free_after} B",
        size_of(&state)
    );
    assert_eq!(
        metric(&body, "soakwatch_lost_cycles_total", None),
        Some(0.0),
        "{body}"
    );
    // The WAL gave its space back: more is free than was freed.
    assert!(
        free_after > 1024 * 1024 && wal_after < wal_when_full / 2,
        "the WAL was not checkpointed: {wal_after} B after recovery ({wal_when_full} B when full), {free_after} B free"
    );
    let stderr = d.stderr();
    let failing_lines = stderr
        .lines()
        .filter(|l| l.contains("write failed") && l.contains("state"))
        .count();
    let failures = metric(&body, "soakwatch_write_errors_total", Some("state")).unwrap_or(0.0);
    assert!(failures >= 4.0, "{body}");
    assert_eq!(
        failing_lines, 1,
        "{failures} failed writes, logged {failing_lines} times:\n{stderr}"
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(secs(30)).await, 0, "{}", d.stderr());
}
