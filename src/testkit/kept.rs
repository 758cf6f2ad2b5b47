//! A replica kept by `demo --keep`, and `soakwatch-testkit teardown` that
//! removes it again.
//!
//! What `--keep` promises: the stand-in keeps running (detached with
//! `setsid`, its pid in the kept folder), `checks.toml` in the folder passes
//! `soakwatch check` and has a `[rollback]` section whose restart command
//! restarts that stand-in (the same script shape as the end-to-end rollback
//! tests use), and one printed command removes everything the demo created:
//! the stand-in process, the streams with their consumer, the database and
//! the folder. A manifest in the folder records what belongs to the replica,
//! so the teardown needs nothing but the folder's path.
//!
//! CLI glue like [`super::demo`]: errors are `anyhow`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::atomic_file;
use crate::testkit::replica::{self, ReplicaNames};

/// The manifest: marks a folder as a kept demo replica and says what is in it.
pub const MANIFEST: &str = "soakwatch-demo.json";
/// Pid of the running stand-in (written by the restart script).
pub const PID_FILE: &str = "normalize-service.pid";
/// Address the stand-in listens on (written by the stand-in; a restart reuses it).
pub const ADDR_FILE: &str = "normalize-service.addr";
/// Starts or restarts the kept stand-in (`[rollback] restart_command`).
pub const RESTART_SCRIPT: &str = "restart-normalize-service.sh";
/// The stand-in's stdout and stderr.
pub const STANDIN_OUT: &str = "normalize-service.out";
/// State database of a `soakwatch watch` run on the kept config.
pub const WATCH_STATE: &str = "watch-state.sqlite";
/// Reports of a `soakwatch watch` run on the kept config.
pub const WATCH_REPORTS: &str = "reports";

/// Files and folders the demo may write into its folder; a teardown of a
/// folder the demo did not create removes these and nothing else.
const DEMO_FILES: &[&str] = &[
    "checks.toml",
    "checks-soak.toml",
    "normalize-service.env",
    "normalize-service.env.soakwatch-bak",
    "normalize-service.log",
    "standin.addr",
    "soak-state.sqlite",
    "soak-state.sqlite-wal",
    "soak-state.sqlite-shm",
    "soak-state.sqlite.lock",
    PID_FILE,
    ADDR_FILE,
    RESTART_SCRIPT,
    STANDIN_OUT,
    WATCH_STATE,
    "watch-state.sqlite-wal",
    "watch-state.sqlite-shm",
    "watch-state.sqlite.lock",
    WATCH_REPORTS,
];

/// What the teardown needs to know, written to [`MANIFEST`] when the
/// replica is provisioned (so even a demo that failed halfway can be removed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Replica tag: every stream, subject and the database derive from it.
    pub tag: String,
    /// NATS server the streams live on.
    pub nats_url: String,
    /// PostgreSQL URL allowed to DROP the replica's database.
    pub admin_database_url: String,
    /// The demo created the folder: the teardown removes it whole. Otherwise
    /// only the demo's own files in it go.
    pub owns_dir: bool,
    /// Where the compressed soak's reports went (left in place: they are the
    /// demo's output, not part of the replica).
    pub reports_dir: PathBuf,
}

impl Manifest {
    /// Writes the manifest into `dir`, readable by the owner only (it holds
    /// the admin database URL).
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(MANIFEST);
        atomic_file::write_atomic(&path, &serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {}", path.display()))?;
        }
        Ok(())
    }

    /// Reads the manifest of a kept replica folder; a folder without one is
    /// not a kept demo replica and is refused.
    pub fn read(dir: &Path) -> anyhow::Result<Manifest> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} is not a kept demo replica (no readable {MANIFEST})",
                dir.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// A TOML basic string for the generated replica configs (the demo's and
/// the kept one); `$` is escaped so paths are not read as `${VAR}`.
pub fn toml_string(s: &str) -> String {
    let escaped: String = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace("${", "$${");
    format!("\"{escaped}\"")
}

/// The stand-in's own files, as the demo lays them out.
#[derive(Debug, Clone, Copy)]
pub struct ServiceFiles<'a> {
    /// The service's .env (the rollback edits it).
    pub env_file: &'a Path,
    /// The service's log (the rollback reads it after the restart).
    pub log_file: &'a Path,
}

/// A word to paste into a shell: as is when it is plain, else quoted.
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:=@+,".contains(c));
    if plain {
        s.to_string()
    } else {
        sh_quote(s)
    }
}

/// A POSIX shell word: single-quoted, inner quotes escaped.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The restart script: stops the stand-in whose pid is in [`PID_FILE`]
/// (TERM, then KILL after 10 s; only if that pid still runs a stand-in),
/// starts a new one detached with `setsid` on the address in [`ADDR_FILE`]
/// (port 0 the first time), records its pid.
pub fn restart_script(
    exe: &Path,
    names: &ReplicaNames,
    nats_url: &str,
    db_url: &str,
    files: ServiceFiles<'_>,
    dir: &Path,
) -> String {
    let q = |p: &Path| sh_quote(&p.display().to_string());
    format!(
        r#"#!/bin/sh
# Restarts the kept demo replica's stand-in normalize-service (tag {tag}).
pidfile={pidfile}
addrfile={addrfile}
if [ -s "$pidfile" ]; then
  pid=$(cat "$pidfile")
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q ' standin --tag {tag} '; then
    kill -TERM "$pid" 2>/dev/null
    i=0
    while [ -r "/proc/$pid/stat" ] && [ "$(cut -d' ' -f3 "/proc/$pid/stat")" != Z ]; do
      i=$((i+1))
      [ "$i" -eq 100 ] && kill -KILL "$pid" 2>/dev/null
      sleep 0.1
    done
    echo "stopped normalize-service (pid $pid)"
  fi
fi
listen=127.0.0.1:0
[ -s "$addrfile" ] && listen=$(cat "$addrfile")
setsid {exe} standin --tag {tag} --nats-url {nats} --database-url {db} --env-file {env} --log-file {log} --listen "$listen" --addr-file "$addrfile" </dev/null >>{out} 2>&1 &
echo $! > "$pidfile"
echo "started normalize-service (pid $!)"
"#,
        tag = names.tag,
        pidfile = q(&dir.join(PID_FILE)),
        addrfile = q(&dir.join(ADDR_FILE)),
        exe = q(exe),
        nats = sh_quote(nats_url),
        db = sh_quote(db_url),
        env = q(files.env_file),
        log = q(files.log_file),
        out = q(&dir.join(STANDIN_OUT)),
    )
}

/// The kept replica's checks.toml: the demo's replica checks with the DLQ
/// baseline the demo's faults left, a `[rollback]` section that edits the
/// replica's .env and restarts the kept stand-in, and `[watch]` files inside
/// the folder.
pub fn kept_config(
    base: &str,
    names: &ReplicaNames,
    files: ServiceFiles<'_>,
    dir: &Path,
    dlq: (u64, u64),
) -> String {
    let (messages, last_seq) = dlq;
    let base = base.replacen(
        "[streams.dlq]\n",
        "[streams.dlq]\n# What the demo's injected faults left in the DLQ when it kept the replica.\n",
        1,
    );
    let base = match base.find("[streams.dlq]") {
        Some(at) => {
            let (head, tail) = base.split_at(at);
            format!(
                "{head}{}",
                tail.replacen(
                    "baseline_messages = 1\n",
                    &format!("baseline_messages = {messages}\nbaseline_last_seq = {last_seq}\n"),
                    1
                )
            )
        }
        None => base,
    };
    let script = dir.join(RESTART_SCRIPT);
    format!(
        r#"{base}
[watch]
state = {state}
reports_dir = {reports}

# `soakwatch rollback --execute --config <this file>` (or a daemon with mode = "armed")
# edits the replica's .env and restarts the kept stand-in with the script beside this file.
[rollback]
mode = "dry_run"
env_file = {env}
restart_command = ["sh", {script}]
restart_timeout = "30s"
log_file = {log}
expect_log_lines = [{single}, {candidates}]
verify_timeout = "20s"
"#,
        state = toml_string(&dir.join(WATCH_STATE).display().to_string()),
        reports = toml_string(&dir.join(WATCH_REPORTS).display().to_string()),
        env = toml_string(&files.env_file.display().to_string()),
        script = toml_string(&script.display().to_string()),
        log = toml_string(&files.log_file.display().to_string()),
        single = toml_string("Stream mode: single"),
        candidates = toml_string(&format!(
            "Stream candidates: {}",
            regex::escape(&names.legacy_stream)
        )),
    )
}

/// The running kept stand-in.
#[derive(Debug, Clone)]
pub struct KeptStandin {
    /// Its pid (as recorded in [`PID_FILE`]).
    pub pid: u32,
    /// Where it listens (`127.0.0.1:port`).
    pub addr: String,
}

/// Writes the restart script and runs it once: the stand-in starts detached
/// and outlives the demo. Waits up to 10 s for it to listen.
pub async fn start_kept_standin(
    names: &ReplicaNames,
    nats_url: &str,
    db_url: &str,
    files: ServiceFiles<'_>,
    dir: &Path,
) -> anyhow::Result<KeptStandin> {
    let exe = std::env::current_exe().context("locating the soakwatch-testkit binary")?;
    let script = dir.join(RESTART_SCRIPT);
    atomic_file::write_atomic(
        &script,
        &restart_script(&exe, names, nats_url, db_url, files, dir),
    )?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700))?;
    }
    let addr_file = dir.join(ADDR_FILE);
    let _ = std::fs::remove_file(&addr_file);
    let status = tokio::process::Command::new("sh")
        .arg(&script)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .context("running the restart script")?;
    if !status.success() {
        bail!("{} failed: {status}", script.display());
    }
    let pid = read_pid(dir).context("the restart script recorded no pid")?;
    for _ in 0..100 {
        if let Ok(addr) = std::fs::read_to_string(&addr_file) {
            if !addr.trim().is_empty() {
                return Ok(KeptStandin {
                    pid,
                    addr: addr.trim().to_string(),
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "the kept stand-in did not start listening within 10 s (see {})",
        dir.join(STANDIN_OUT).display()
    )
}

/// Messages and last sequence of the replica's DLQ now.
pub async fn dlq_state(
    nats: &async_nats::Client,
    names: &ReplicaNames,
) -> anyhow::Result<(u64, u64)> {
    let js = async_nats::jetstream::new(nats.clone());
    let mut stream = js
        .get_stream(&names.dlq_stream)
        .await
        .with_context(|| format!("looking up {}", names.dlq_stream))?;
    let info = stream
        .info()
        .await
        .with_context(|| format!("reading {}", names.dlq_stream))?;
    Ok((info.state.messages, info.state.last_sequence))
}

fn read_pid(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The process `pid` is this replica's stand-in (its command line says so),
/// not whatever process got the pid after the stand-in died.
fn is_kept_standin(pid: u32, tag: &str) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
    args.windows(3)
        .any(|w| w[0] == b"standin" && w[1] == b"--tag" && w[2] == tag.as_bytes())
}

/// Running (and not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Stops the kept stand-in: TERM, then KILL after 10 s. Returns what was done.
async fn stop_standin(dir: &Path, tag: &str) -> anyhow::Result<String> {
    let Some(pid) = read_pid(dir) else {
        return Ok("no stand-in pid recorded".into());
    };
    if !is_kept_standin(pid, tag) {
        return Ok(format!("stand-in (pid {pid}) was not running"));
    }
    signal(pid, "TERM");
    for i in 0..150 {
        if !alive(pid) {
            return Ok(format!("stopped the stand-in (pid {pid})"));
        }
        if i == 100 {
            signal(pid, "KILL");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the stand-in (pid {pid}) is still running after TERM and KILL")
}

/// Removes the folder (whole if the demo created it, else only the demo's files).
fn remove_files(dir: &Path, owns_dir: bool) -> anyhow::Result<String> {
    if owns_dir {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        return Ok(format!("removed {}", dir.display()));
    }
    for name in DEMO_FILES.iter().chain(std::iter::once(&MANIFEST)) {
        let p = dir.join(name);
        let r = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
        }
    }
    // Left in place if something else lives there too.
    let _ = std::fs::remove_dir(dir);
    Ok(format!("removed the demo's files from {}", dir.display()))
}

/// `soakwatch-testkit teardown <dir>`: the stand-in process, the streams
/// (with the consumer), the database and the folder. Every step is tried;
/// the first failure is returned after all ran.
pub async fn teardown(dir: &Path) -> anyhow::Result<()> {
    let m = Manifest::read(dir)?;
    let names = ReplicaNames::new(&m.tag)?;
    let mut first_err: Option<anyhow::Error> = None;
    let mut note = |r: anyhow::Result<String>| match r {
        Ok(done) => println!("   {done}"),
        Err(e) => {
            eprintln!("   {e:#}");
            first_err.get_or_insert(e);
        }
    };
    println!(
        "== Tearing down the demo replica {} ({})",
        m.tag,
        dir.display()
    );
    note(stop_standin(dir, &m.tag).await);
    let streams = async {
        let nats = async_nats::connect(&m.nats_url).await.with_context(|| {
            format!(
                "connecting to NATS at {}",
                crate::secret::redact_url(&m.nats_url)
            )
        })?;
        replica::teardown(&nats, &m.admin_database_url, &names).await?;
        Ok(format!(
            "removed streams {} (with consumer {}) and database {}",
            names.streams().join(", "),
            names.durable,
            names.database
        ))
    }
    .await;
    note(streams);
    note(remove_files(dir, m.owns_dir));
    if m.reports_dir.join(format!("demo-{}", m.tag)).exists() {
        println!(
            "   the compressed soak's reports stay in {}",
            m.reports_dir.join(format!("demo-{}", m.tag)).display()
        );
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::demo::{replica_config, ReplicaFiles};

    fn service(files: &ReplicaFiles) -> ServiceFiles<'_> {
        ServiceFiles {
            env_file: &files.env_file,
            log_file: &files.log_file,
        }
    }

    fn names() -> ReplicaNames {
        ReplicaNames::new("ab12cd34").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_kept_config_has_the_dlq_baseline_a_rollback_and_watch_files() {
        let dir = Path::new("/tmp/kept it");
        let files = ReplicaFiles::in_dir(dir);
        let base = replica_config(
            &names(),
            "nats://127.0.0.1:4222",
            "postgres://postgres@127.0.0.1:5432/soakwatch_ab12cd34",
            "http://127.0.0.1:4102/metrics",
            &files,
            chrono::Utc::now(),
        );
        let text = kept_config(&base, &names(), service(&files), dir, (3, 4));
        let path = std::env::temp_dir().join(format!("kept-{}.toml", std::process::id()));
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        let cfg = crate::config::Config::load(&path);
        let _ = std::fs::remove_file(&path);
        let cfg = cfg.unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(cfg.streams.dlq.baseline_messages, Some(3));
        assert_eq!(cfg.streams.dlq.baseline_last_seq, Some(4));
        // The legacy stream keeps the seed's baseline.
        assert_eq!(cfg.streams.legacy.baseline_messages, Some(55));
        let rb = cfg
            .rollback
            .unwrap_or_else(|| panic!("no [rollback]\n{text}"));
        assert_eq!(
            rb.run.restart_command,
            ["sh", "/tmp/kept it/restart-normalize-service.sh"]
        );
        assert_eq!(rb.run.env_file, files.env_file);
        assert_eq!(rb.run.log_file, files.log_file);
        assert!(rb.run.expect_log_lines[1].contains("SW_AB12CD34_ATHLETE_ALLY_EVENTS"));
        assert_eq!(cfg.watch.state, dir.join(WATCH_STATE));
    }

    #[test]
    fn the_restart_script_quotes_and_reuses_its_address() {
        let dir = Path::new("/tmp/it's here");
        let files = ReplicaFiles::in_dir(dir);
        let s = restart_script(
            Path::new("/bin/soakwatch-testkit"),
            &names(),
            "nats://127.0.0.1:4222",
            "postgres://u:p@h/db",
            service(&files),
            dir,
        );
        assert!(
            s.contains("pidfile='/tmp/it'\\''s here/normalize-service.pid'"),
            "{s}"
        );
        assert!(s.contains("setsid '/bin/soakwatch-testkit' standin --tag ab12cd34 "));
        assert!(s.contains("--listen \"$listen\" --addr-file \"$addrfile\""));
        assert!(s.contains("[ -s \"$addrfile\" ] && listen=$(cat \"$addrfile\")"));
        assert_eq!(sh_quote("a'b"), "'a'\\''b'");
        assert_eq!(toml_string("a\"b${X}"), "\"a\\\"b$${X}\"");
    }

    #[test]
    fn a_folder_without_a_manifest_is_not_torn_down() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("precious"), "x").unwrap_or_else(|e| panic!("{e}"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let err = rt.block_on(teardown(dir.path())).err();
        assert!(
            err.is_some_and(|e| e.to_string().contains("not a kept demo replica")),
            "refused"
        );
        assert!(dir.path().join("precious").exists());
    }

    #[test]
    fn a_borrowed_folder_loses_only_the_demo_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for f in ["checks.toml", MANIFEST, PID_FILE, "mine.txt"] {
            std::fs::write(dir.path().join(f), "x").unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::create_dir(dir.path().join(WATCH_REPORTS)).unwrap_or_else(|e| panic!("{e}"));
        let done = remove_files(dir.path(), false).unwrap_or_else(|e| panic!("{e}"));
        assert!(done.contains("removed the demo's files"));
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert_eq!(left, ["mine.txt"]);
    }
}
