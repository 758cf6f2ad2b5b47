//! Issue 20 §4: no panic, ever. Exit 101 is outside every contract the tool
//! promises (Nagios 0-3, the daemon's clean stop); these tests run the real
//! binary on what a new user's environment produces and fail on 101.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::{read, run_bin, ReservedPort, Run, BIN};

/// The shipped checks.toml as a TOML table, to edit key by key.
pub fn shipped() -> toml::Table {
    toml::from_str(&read(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/checks.toml"
    ))))
    .expect("checks.toml parses")
}

/// Writes `t` as `dir/name` and returns the path.
pub fn write_config(dir: &Path, name: &str, t: &toml::Table) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, toml::to_string(t).expect("serializes")).expect("write config");
    path
}

/// Whether a run panicked: exit 101 or Rust's panic message on stderr.
fn panicked(run: &Run) -> bool {
    run.code == 101 || run.stderr.contains("panicked at")
}

/// Runs the binary with its stdout the write end of a pipe whose read end is
/// already closed: every write to stdout fails with EPIPE (SIGPIPE is
/// ignored by Rust programs), as under `soakwatch check | head -1` once
/// `head` has exited.
async fn run_closed_stdout(args: &[&str], envs: &[(&str, &str)]) -> Run {
    use std::os::fd::FromRawFd;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe(2) writes two descriptors into the array it is given.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are fresh and owned from here on.
    let (read_end, write_end) = unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    drop(read_end);
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    // Not `output()`: it would replace the stdout given here with a pipe.
    let child = cmd.spawn().expect("soakwatch starts");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("soakwatch finished within 60 s")
        .expect("soakwatch ran");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_is_a_quiet_exit_in_every_format_and_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "checks.toml", &shipped());
    let c = config.display().to_string();
    // Nothing listens on a reserved port: the metrics probe fails at once.
    let refused = ReservedPort::new();
    let metrics = format!("http://127.0.0.1:{}/metrics", refused.port());
    let envs = [("METRICS_URL", metrics.as_str())];
    let mut commands: Vec<Vec<&str>> = ["text", "markdown", "json", "nagios", "prometheus"]
        .iter()
        .map(|f| vec!["check", "-c", &c, "--window", "0s", "--format", f])
        .collect();
    commands.extend([
        vec!["validate", "-c", &c],
        vec!["export", "prometheus-rules", "-c", &c],
        vec!["export", "grafana", "-c", &c],
        vec!["rollback", "--dry-run", "-c", &c],
        vec!["alert", "test", "-c", &c],
        vec!["--help"],
        vec!["--version"],
        vec!["check", "--help"],
    ]);
    for args in &commands {
        let open = run_bin(args, &envs).await;
        let closed = run_closed_stdout(args, &envs).await;
        eprintln!(
            "{args:?}: {} / {}: {}",
            open.code, closed.code, closed.stderr
        );
        assert!(!open.stdout.is_empty(), "{args:?} printed nothing");
        assert!(!panicked(&closed), "{args:?} panicked:\n{}", closed.stderr);
        assert_eq!(
            closed.code, open.code,
            "{args:?}: the exit code is the command's, stdout or not"
        );
        assert!(
            !closed.stderr.contains("Broken pipe"),
            "{args:?} complained:\n{}",
            closed.stderr
        );
    }
}
