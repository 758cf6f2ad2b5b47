//! The rollback's local steps: edit the `.env`, restart the service, verify
//! its log. Each returns the text to record on success or a [`StepError`]
//! whose message says why it failed; [`super::execute`] turns both into
//! [`super::StepRecord`]s.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::envfile::EnvFile;

/// Bytes of command output kept from the start (the rest is the tail).
const OUTPUT_HEAD: usize = 1024;
/// Bytes of command output kept from the end.
const OUTPUT_TAIL: usize = 2560;
/// After the restart command exits, how long its output pipes may stay open
/// (a daemon it started may hold them) before reading stops.
const PIPE_DRAIN_GRACE: Duration = Duration::from_millis(500);
/// Longest the pipes are read after the command exited, however much still
/// arrives (a daemon the command started writing to them).
const PIPE_DRAIN_CAP: Duration = Duration::from_secs(5);
/// How often the log is polled for new lines.
const LOG_POLL: Duration = Duration::from_millis(150);
/// Most bytes read from the log per poll, so a flood cannot exhaust memory.
const LOG_READ_CHUNK: u64 = 4 * 1024 * 1024;
/// Longest single log line kept while looking for its end.
const MAX_LINE: usize = 64 * 1024;

/// Why a step failed; the message is what the step record shows.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The env file does not exist.
    #[error("env file {0} does not exist; nothing was changed")]
    EnvMissing(PathBuf),
    /// The env file could not be read.
    #[error("cannot read env file {path}: {source}; nothing was changed")]
    EnvRead {
        /// The env file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The env file is not UTF-8 text.
    #[error("env file {0} is not UTF-8 text; nothing was changed")]
    EnvNotText(PathBuf),
    /// The env file is a symlink and the config does not allow following it.
    #[error("env file {path} is a symlink (to {target}); refused, since editing it would rewrite whatever it points to (set [rollback] follow_env_symlink = true if the target is the service's env file); nothing was changed")]
    EnvSymlink {
        /// The env file as configured.
        path: PathBuf,
        /// Where the link points.
        target: PathBuf,
    },
    /// The file does not parse as an env file, so it is not edited.
    #[error("{path} is not an env file: line {line}: {reason} ({count} such line(s)); refused, nothing was changed")]
    EnvNotEnvFile {
        /// The env file (the target, when reached through a symlink).
        path: PathBuf,
        /// 1-based line of the first line at fault.
        line: usize,
        /// Why that line is not `KEY=value`, a comment or blank.
        reason: String,
        /// How many lines are at fault.
        count: usize,
    },
    /// A key could not be set (invalid name or unrepresentable value).
    #[error("cannot set {key} in {path} (invalid key name or value); nothing was changed")]
    EnvSet {
        /// The env file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// Writing the backup failed; the env file is untouched.
    #[error("cannot write backup {path}: {source}; the env file was not changed")]
    Backup {
        /// The backup path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the new env file failed; the original is still in place.
    #[error("cannot write env file {path}: {source}; the original is unchanged")]
    EnvWrite {
        /// The env file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The restart argv is empty.
    #[error("restart command is empty")]
    EmptyCommand,
    /// The restart program does not exist.
    #[error("command not found: {0}")]
    CommandNotFound(String),
    /// The restart program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the restart command failed.
    #[error("waiting for {program}: {source}")]
    Wait {
        /// The program.
        program: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The restart command failed.
    #[error("{program} {how}{}", tail_suffix(.output))]
    Exit {
        /// The program.
        program: String,
        /// "exited with code 3" / "was killed by signal 9".
        how: String,
        /// Its output (bounded).
        output: String,
    },
    /// The restart command ran out of time and was killed.
    #[error("{program} timed out after {after}; killed{}", tail_suffix(.output))]
    TimedOut {
        /// The program.
        program: String,
        /// The timeout, humanly formatted.
        after: String,
        /// Its output so far (bounded).
        output: String,
    },
    /// An expected log pattern is not a valid regex.
    #[error("expected log line {pattern:?} is not a valid regex: {message}")]
    InvalidPattern {
        /// The pattern.
        pattern: String,
        /// The regex error, first line.
        message: String,
    },
    /// Not every expected pattern matched a new log line in time.
    #[error("after {after}, no new line in {path} matched {}{}{}", quoted(.missing), matched_suffix(.matched), .note)]
    LogsMissing {
        /// The log file.
        path: PathBuf,
        /// The timeout, humanly formatted.
        after: String,
        /// Patterns without a match.
        missing: Vec<String>,
        /// Patterns that matched.
        matched: Vec<String>,
        /// Extra context (e.g. the log file never appeared).
        note: String,
    },
}

fn tail_suffix(output: &str) -> String {
    if output.is_empty() {
        "; no output".to_string()
    } else {
        format!("; output:\n{output}")
    }
}

fn quoted(v: &[String]) -> String {
    v.iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn matched_suffix(v: &[String]) -> String {
    if v.is_empty() {
        String::new()
    } else {
        format!(" (matched: {})", quoted(v))
    }
}

// ---------------------------------------------------------------------------------------------
// 1. edit_env

/// Whether `key` can be written to a `.env` (`[A-Za-z_][A-Za-z0-9_.]*`), the
/// rule [`EnvFile::set`] enforces, checked up front so a bad key is a config
/// error rather than a half-applied edit.
pub fn is_valid_env_key(key: &str) -> bool {
    let mut chars = key.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// `<env_file><suffix>`: the backup sits beside the `.env` it saves.
pub fn backup_path(env_file: &Path, suffix: &str) -> PathBuf {
    let mut s = env_file.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// [`edit_env_with`] under the default policy: a symlinked env file is refused.
pub fn edit_env(
    env_file: &Path,
    set: &BTreeMap<String, String>,
    backup_suffix: &str,
) -> Result<String, StepError> {
    edit_env_with(env_file, set, backup_suffix, false)
}

/// Sets each key in the `.env`, keeping every other byte; the original is
/// first saved to `<env_file><backup_suffix>`, then the new text replaces the
/// file atomically (temp file in the same directory, fsync, rename), with the
/// original's permissions and owner. Already-set values change nothing (not
/// even the backup, which keeps the pre-rollback file of an earlier run).
///
/// Refused before anything is written: a symlinked `env_file` unless
/// `follow_symlink` (an edit through a link rewrites its target, which once
/// was a passwd-format file), and a file with any line that is neither
/// `KEY=value`, a comment nor blank (the first such line is named).
pub fn edit_env_with(
    env_file: &Path,
    set: &BTreeMap<String, String>,
    backup_suffix: &str,
    follow_symlink: bool,
) -> Result<String, StepError> {
    match std::fs::symlink_metadata(env_file) {
        Ok(m) if m.file_type().is_symlink() && !follow_symlink => {
            let target = std::fs::read_link(env_file).unwrap_or_default();
            return Err(StepError::EnvSymlink {
                path: env_file.to_path_buf(),
                target,
            });
        }
        _ => {}
    }
    let bytes = match std::fs::read(env_file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StepError::EnvMissing(env_file.to_path_buf()))
        }
        Err(source) => {
            return Err(StepError::EnvRead {
                path: env_file.to_path_buf(),
                source,
            })
        }
    };
    let original =
        String::from_utf8(bytes).map_err(|_| StepError::EnvNotText(env_file.to_path_buf()))?;
    let mut env = EnvFile::parse(&original);
    if let Some((line, reason)) = env.invalid_lines().first() {
        return Err(StepError::EnvNotEnvFile {
            path: std::fs::canonicalize(env_file).unwrap_or_else(|_| env_file.to_path_buf()),
            line: *line,
            reason: reason.clone(),
            count: env.invalid_lines().len(),
        });
    }

    let mut changes = Vec::new();
    for (key, value) in set {
        if env.get(key) == Some(value.as_str()) {
            continue;
        }
        let before = env.get(key).map(|v| super::shown_value(key, v));
        let set_err = || StepError::EnvSet {
            path: env_file.to_path_buf(),
            key: key.clone(),
        };
        if !is_valid_env_key(key) {
            return Err(set_err());
        }
        env.set(key, value);
        if env.get(key) != Some(value.as_str()) {
            return Err(set_err());
        }
        let after = super::shown_value(key, value);
        changes.push(match before {
            Some(b) => format!("{key}: {b} -> {after}"),
            None => format!("{key}: (absent) -> {after} (appended)"),
        });
    }
    if changes.is_empty() {
        let all: Vec<String> = set
            .iter()
            .map(|(k, v)| format!("{k}={}", super::shown_value(k, v)))
            .collect();
        return Ok(format!(
            "already set: {} in {}; file not touched",
            all.join(", "),
            env_file.display()
        ));
    }
    let new_text = env.render();

    // Write through a symlink to its target, so the link survives.
    let target = std::fs::canonicalize(env_file).map_err(|source| StepError::EnvRead {
        path: env_file.to_path_buf(),
        source,
    })?;
    let meta = std::fs::metadata(&target).map_err(|source| StepError::EnvRead {
        path: env_file.to_path_buf(),
        source,
    })?;

    let backup = backup_path(env_file, backup_suffix);
    replace_atomically(&backup, original.as_bytes(), &meta).map_err(|source| {
        StepError::Backup {
            path: backup.clone(),
            source,
        }
    })?;
    replace_atomically(&target, new_text.as_bytes(), &meta).map_err(|source| {
        StepError::EnvWrite {
            path: env_file.to_path_buf(),
            source,
        }
    })?;

    let mut out = format!(
        "{} in {}; original saved to {}",
        changes.join(", "),
        env_file.display(),
        backup.display()
    );
    if !env.warnings().is_empty() {
        out.push_str(&format!(
            "; {} repeated key(s) kept verbatim, the last assignment was set (first: line {})",
            env.warnings().len(),
            env.warnings()[0].0
        ));
    }
    Ok(out)
}

/// Counter for temp file names, so concurrent writers in one process differ.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `content` to `path` via a temp file in the same directory and a
/// rename, giving it `like`'s permissions (and owner, on unix), so readers
/// see either the old or the new file, never a partial one.
fn replace_atomically(
    path: &Path,
    content: &[u8],
    like: &std::fs::Metadata,
) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "env".to_string());
    let tmp = dir.join(format!(
        ".{name}.soakwatch-tmp.{}.{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let res = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // Owner-only until the final mode is set: the .env may hold secrets.
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(content)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let now = f.metadata()?;
            if now.uid() != like.uid() || now.gid() != like.gid() {
                std::os::unix::fs::fchown(&f, Some(like.uid()), Some(like.gid()))?;
            }
        }
        f.set_permissions(like.permissions())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

// ---------------------------------------------------------------------------------------------
// 2. restart

/// Command output kept within bounds: the first and the last bytes.
#[derive(Default)]
struct Captured {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    cut: usize,
    /// Bytes received in all (the drain watches it move).
    received: usize,
}

impl Captured {
    fn push(&mut self, mut data: &[u8]) {
        self.received += data.len();
        if self.head.len() < OUTPUT_HEAD {
            let n = (OUTPUT_HEAD - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        self.tail.extend(data.iter().copied());
        while self.tail.len() > OUTPUT_TAIL {
            self.tail.pop_front();
            self.cut += 1;
        }
    }

    fn text(&self) -> String {
        let head = String::from_utf8_lossy(&self.head);
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        let tail = String::from_utf8_lossy(&tail);
        let text = if self.cut > 0 {
            format!("{head}\n[… {} bytes cut …]\n{tail}", self.cut)
        } else {
            format!("{head}{tail}")
        };
        text.trim().to_string()
    }
}

/// Copies a pipe into the shared buffer until EOF.
/// Waits for the output pumps after the command exited: until both pipes
/// are at their end, or no byte arrived for [`PIPE_DRAIN_GRACE`], or
/// [`PIPE_DRAIN_CAP`] passed (a daemon holding the pipes open).
async fn drain(
    pumps: Vec<tokio::task::JoinHandle<()>>,
    buf: &Arc<Mutex<Captured>>,
    pgid: Option<u32>,
) {
    let cap = tokio::time::Instant::now() + PIPE_DRAIN_CAP;
    let seen = |b: &Arc<Mutex<Captured>>| match b.lock() {
        Ok(c) => c.received,
        Err(p) => p.into_inner().received,
    };
    let mut last = (seen(buf), tokio::time::Instant::now());
    loop {
        if pumps.iter().all(|p| p.is_finished()) {
            return;
        }
        let now = tokio::time::Instant::now();
        let got = seen(buf);
        if got != last.0 {
            last = (got, now);
        }
        // With nothing left in the command's process group, the pipes are
        // bound to end: wait for that (up to the cap) however slowly a
        // loaded machine delivers it. Something left (a daemon it started)
        // may hold them open: stop once they were quiet for the grace.
        let quiet = now.duration_since(last.1) >= PIPE_DRAIN_GRACE && group_alive(pgid);
        if now >= cap || quiet {
            for p in &pumps {
                p.abort();
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The two ends of the restart command's output: one pipe written by both
/// its stdout and its stderr, and the reading end.
struct MergedOutput {
    stdout: Stdio,
    stderr: Stdio,
    reader: tokio::net::unix::pipe::Receiver,
}

/// An anonymous pipe (close-on-exec in this process) whose write end is
/// given to the child twice. Written with libc because std makes a pipe
/// only per stream; the reading end is tokio's non-blocking pipe.
fn merged_output() -> std::io::Result<MergedOutput> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds` on success; each
    // is owned exactly once below.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here only.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let write2 = write.try_clone()?;
    Ok(MergedOutput {
        stdout: Stdio::from(write),
        stderr: Stdio::from(write2),
        reader: tokio::net::unix::pipe::Receiver::from_owned_fd(read)?,
    })
}

async fn pump<R: tokio::io::AsyncRead + Unpin>(mut r: R, buf: Arc<Mutex<Captured>>) {
    let mut chunk = [0u8; 4096];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => match buf.lock() {
                Ok(mut b) => b.push(&chunk[..n]),
                Err(p) => p.into_inner().push(&chunk[..n]),
            },
        }
    }
}

/// [`restart_with_env`] with only soakwatch's PATH in the environment.
pub async fn restart(argv: &[String], timeout: Duration) -> Result<String, StepError> {
    let env: BTreeMap<String, String> = std::env::var("PATH")
        .ok()
        .map(|p| ("PATH".to_string(), p))
        .into_iter()
        .collect();
    restart_with_env(argv, timeout, &env).await
}

/// Runs `argv` (no shell) in its own process group, with stdin closed,
/// exactly `env` as its environment (nothing inherited: soakwatch's holds
/// credentials) and stdout+stderr captured (bounded, the values of
/// secret-named `env` entries cut out). Non-zero exit, a missing program or
/// the timeout fail the step; on timeout the whole process group is killed,
/// so a hung `systemctl` or script leaves nothing behind.
pub async fn restart_with_env(
    argv: &[String],
    timeout: Duration,
    env: &BTreeMap<String, String>,
) -> Result<String, StepError> {
    let (program, args) = argv.split_first().ok_or(StepError::EmptyCommand)?;
    let mut scrub = crate::secret::Scrubber::default();
    for (k, v) in env {
        if super::is_secret_name(k) {
            scrub.add(v);
        }
    }
    let mut cmd = tokio::process::Command::new(program);
    cmd.env_clear().envs(env);
    let spawn_error = |source: std::io::Error| StepError::Spawn {
        program: program.clone(),
        source,
    };
    // One pipe for stdout and stderr, as a terminal shows them: with two,
    // a loaded machine may hand the reader the last stderr line before the
    // last stdout lines, and the kept tail would lose it.
    let merged = merged_output().map_err(spawn_error)?;
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(merged.stdout)
        .stderr(merged.stderr)
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    let spawned = cmd.spawn();
    // The command's copies of the write end go now, or the pipe never ends.
    drop(cmd);
    let child = spawned.map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            StepError::CommandNotFound(program.clone())
        } else {
            spawn_error(source)
        }
    })?;
    let mut child = child;
    let pgid = child.id();
    let buf = Arc::new(Mutex::new(Captured::default()));
    let pumps = vec![tokio::spawn(pump(merged.reader, buf.clone()))];
    let started = Instant::now();
    let waited = tokio::time::timeout(timeout, child.wait()).await;
    let timed_out = waited.is_err();
    if timed_out {
        kill_group(pgid).await;
        let _ = child.kill().await;
    }
    // Output written before the exit is in the pipes; a daemon the command
    // started may keep them open. Reading goes on while output still
    // arrives (a loaded machine may deliver the last lines late) and stops
    // once the pipes were quiet for a short grace, or at a hard cap.
    drain(pumps, &buf, pgid).await;
    let output = match buf.lock() {
        Ok(b) => b.text(),
        Err(p) => p.into_inner().text(),
    };
    let output = crate::secret::scrub(&scrub.scrub(&output));
    let took = started.elapsed();
    match waited {
        Err(_) => Err(StepError::TimedOut {
            program: program.clone(),
            after: humantime::format_duration(timeout).to_string(),
            output,
        }),
        Ok(Err(source)) => Err(StepError::Wait {
            program: program.clone(),
            source,
        }),
        Ok(Ok(status)) if status.success() => {
            let mut s = format!("{program} exited with code 0 after {} ms", took.as_millis());
            if !output.is_empty() {
                s.push_str(&format!("; output:\n{output}"));
            }
            Ok(s)
        }
        Ok(Ok(status)) => {
            let how = match status.code() {
                Some(code) => format!("exited with code {code}"),
                None => {
                    #[cfg(unix)]
                    {
                        use std::os::unix::process::ExitStatusExt;
                        match status.signal() {
                            Some(sig) => format!("was killed by signal {sig}"),
                            None => format!("failed ({status})"),
                        }
                    }
                    #[cfg(not(unix))]
                    {
                        format!("failed ({status})")
                    }
                }
            };
            Err(StepError::Exit {
                program: program.clone(),
                how,
                output,
            })
        }
    }
}

/// Where `program` would be found by the restart: as given when it names a
/// path, else in the directories of `path_var` (the PATH the command gets).
/// Checked before the `.env` is edited, so a typo in the program cannot
/// leave the service half rolled back.
pub fn find_program(program: &str, path_var: Option<&str>) -> Result<PathBuf, StepError> {
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![PathBuf::from(program)]
    } else {
        path_var
            .unwrap_or_default()
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(program))
            .collect()
    };
    candidates
        .into_iter()
        .find(|c| is_executable_file(c))
        .ok_or_else(|| StepError::CommandNotFound(program.to_string()))
}

fn is_executable_file(p: &Path) -> bool {
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                m.permissions().mode() & 0o111 != 0
            }
            #[cfg(not(unix))]
            {
                true
            }
        }
        _ => false,
    }
}

/// SIGKILLs the process group `pgid` (the restart command and everything it
/// started in its group) with kill(1), since the crate has no libc binding.
/// Whether any process of the command's process group is still alive.
fn group_alive(pgid: Option<u32>) -> bool {
    #[cfg(unix)]
    {
        let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 1) else {
            return true;
        };
        // SAFETY: kill(2) with signal 0 only checks that the group exists
        // and may be signalled; it sends nothing.
        unsafe { libc::kill(-pgid, 0) == 0 }
    }
    #[cfg(not(unix))]
    {
        let _ = pgid;
        true
    }
}

async fn kill_group(pgid: Option<u32>) {
    #[cfg(unix)]
    if let Some(pgid) = pgid.filter(|p| *p > 1) {
        let _ = tokio::process::Command::new("kill")
            .arg("-KILL")
            .arg("--")
            .arg(format!("-{pgid}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
    #[cfg(not(unix))]
    let _ = pgid;
}

// ---------------------------------------------------------------------------------------------
// 3. verify_logs

/// Where the log ended at some moment (size and file identity), so that only
/// lines written later are judged, and a rotated or truncated log is read
/// from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogMark {
    /// Size in bytes (0 when the file did not exist).
    pub len: u64,
    /// Inode (unix), to notice a log replaced by rotation.
    pub ino: Option<u64>,
}

impl LogMark {
    /// The current end of `path` (a missing file is an empty one).
    pub fn of(path: &Path) -> LogMark {
        match std::fs::metadata(path) {
            Ok(m) => LogMark {
                len: m.len(),
                ino: inode(&m),
            },
            Err(_) => LogMark { len: 0, ino: None },
        }
    }
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    Some(m.ino())
}

#[cfg(not(unix))]
fn inode(_m: &std::fs::Metadata) -> Option<u64> {
    None
}

/// Reads lines appended after a mark, following truncation and rotation.
struct LogFollower {
    path: PathBuf,
    pos: u64,
    ino: Option<u64>,
    partial: Vec<u8>,
    seen_file: bool,
}

impl LogFollower {
    fn new(path: &Path, mark: &LogMark) -> Self {
        LogFollower {
            path: path.to_path_buf(),
            pos: mark.len,
            ino: mark.ino,
            partial: Vec::new(),
            seen_file: mark.ino.is_some() || mark.len > 0,
        }
    }

    /// Complete new lines since the last call (without terminators). A file
    /// that shrank or was replaced is read again from 0.
    fn poll(&mut self) -> Vec<String> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let Ok(meta) = f.metadata() else {
            return Vec::new();
        };
        self.seen_file = true;
        let ino = inode(&meta);
        let replaced = matches!((self.ino, ino), (Some(a), Some(b)) if a != b);
        if replaced || meta.len() < self.pos {
            self.pos = 0;
            self.partial.clear();
        }
        self.ino = ino;
        if meta.len() == self.pos || f.seek(SeekFrom::Start(self.pos)).is_err() {
            return Vec::new();
        }
        let mut data = Vec::new();
        let Ok(n) = (&mut f).take(LOG_READ_CHUNK).read_to_end(&mut data) else {
            return Vec::new();
        };
        self.pos += n as u64;
        let mut lines = Vec::new();
        for piece in data.split_inclusive(|b| *b == b'\n') {
            if piece.ends_with(b"\n") {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&piece[..piece.len() - 1]);
                lines.push(line_text(&line));
            } else if self.partial.len() < MAX_LINE {
                let room = MAX_LINE - self.partial.len();
                self.partial
                    .extend_from_slice(&piece[..piece.len().min(room)]);
            }
        }
        lines
    }

    /// The unterminated last line, judged once the time is up.
    fn pending(&self) -> Option<String> {
        (!self.partial.is_empty()).then(|| line_text(&self.partial))
    }
}

fn line_text(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    s.strip_suffix('\r').unwrap_or(&s).to_string()
}

/// Polls the log from `mark` until every pattern has matched a line written
/// after it (each pattern is matched against single lines, so `$` is the end
/// of a line), or `timeout` passes; the failure lists the missing patterns.
pub async fn verify_logs(
    path: &Path,
    mark: &LogMark,
    patterns: &[String],
    timeout: Duration,
) -> Result<String, StepError> {
    let mut regexes = Vec::with_capacity(patterns.len());
    for p in patterns {
        let re = regex::Regex::new(p).map_err(|e| StepError::InvalidPattern {
            pattern: p.clone(),
            message: e.to_string().lines().last().unwrap_or_default().to_string(),
        })?;
        regexes.push(re);
    }
    let mut found: Vec<Option<String>> = vec![None; patterns.len()];
    let mut follower = LogFollower::new(path, mark);
    let started = Instant::now();
    let deadline = started + timeout;
    let judge = |found: &mut Vec<Option<String>>, line: &str| {
        for (i, re) in regexes.iter().enumerate() {
            if found[i].is_none() && re.is_match(line) {
                found[i] = Some(super::bound_tail(line.trim(), 300));
            }
        }
    };
    loop {
        for line in follower.poll() {
            judge(&mut found, &line);
        }
        let now = Instant::now();
        if now >= deadline {
            if let Some(last) = follower.pending() {
                judge(&mut found, &last);
            }
        }
        if found.iter().all(Option::is_some) {
            let lines: Vec<String> = patterns
                .iter()
                .zip(&found)
                .map(|(p, l)| format!("{p:?} matched: {}", l.as_deref().unwrap_or_default()))
                .collect();
            return Ok(format!(
                "all {} pattern(s) matched new lines in {} after {} ms:\n{}",
                patterns.len(),
                path.display(),
                started.elapsed().as_millis(),
                lines.join("\n")
            ));
        }
        if now >= deadline {
            let (mut missing, mut matched) = (Vec::new(), Vec::new());
            for (p, f) in patterns.iter().zip(&found) {
                if f.is_some() {
                    matched.push(p.clone());
                } else {
                    missing.push(p.clone());
                }
            }
            let note = if follower.seen_file {
                String::new()
            } else {
                " (the log file does not exist)".to_string()
            };
            return Err(StepError::LogsMissing {
                path: path.to_path_buf(),
                after: humantime::format_duration(timeout).to_string(),
                missing,
                matched,
                note,
            });
        }
        tokio::time::sleep(LOG_POLL.min(deadline - now)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert!(is_valid_env_key("EVENT_STREAM_MODE"));
        assert!(is_valid_env_key("_a.b1"));
        assert!(!is_valid_env_key(""));
        assert!(!is_valid_env_key("1A"));
        assert!(!is_valid_env_key("A B"));
        assert!(!is_valid_env_key("A=B"));
    }

    #[test]
    fn captured_output_keeps_head_and_tail() {
        let mut c = Captured::default();
        c.push(b"first line\n");
        c.push(&vec![b'x'; 20_000]);
        c.push(b"\nlast line");
        let t = c.text();
        assert!(t.starts_with("first line"));
        assert!(t.ends_with("last line"));
        assert!(t.contains("bytes cut"));
        assert!(t.len() < OUTPUT_HEAD + OUTPUT_TAIL + 100);
    }

    #[test]
    fn backup_path_appends_the_suffix() {
        assert_eq!(
            backup_path(Path::new("/srv/app/.env"), ".soakwatch-bak"),
            PathBuf::from("/srv/app/.env.soakwatch-bak")
        );
    }

    #[tokio::test]
    async fn stdout_and_stderr_are_kept_in_the_order_they_were_written() {
        // Many stdout lines, then the one stderr line that says why: it is
        // the output's last line whatever the machine's load.
        let argv: Vec<String> = [
            "sh",
            "-c",
            "i=0; while [ $i -lt 300 ]; do echo noise $i; i=$((i+1)); done; echo 'the reason (last line)' >&2; exit 3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let err = restart(&argv, Duration::from_secs(20))
            .await
            .expect_err("exit 3 fails the step");
        let text = err.to_string();
        let last = text.trim_end().lines().last().unwrap_or_default();
        assert!(last.contains("the reason (last line)"), "{text}");
        assert!(text.contains("noise 0"), "{text}");
    }
}
