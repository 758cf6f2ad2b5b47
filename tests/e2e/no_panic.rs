//! Issue 20 §4: no panic, ever. Exit 101 is outside every contract the tool
//! promises (Nagios 0-3, the daemon's clean stop); these tests run the real
//! binary on what a new user's environment produces and fail on 101.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::common::{read, run_bin, Replica, ReservedPort, Run, BIN};

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

// ---------------------------------------------------------------------------------------------
// Every documented duration, number and time key at its edges, through every subcommand.

/// What a documented key holds, as far as edge values go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Duration,
    Durations,
    Integer,
    Float,
    Time,
}

/// One documented key: its section's dotted path, whether that section is
/// an array of tables (the key goes into its first element), the key.
#[derive(Debug, Clone)]
struct Key {
    section: String,
    array: bool,
    name: String,
    kind: Kind,
}

/// Every duration, number and time key docs/CONFIG.md documents, read from
/// its tables (`## [section]` headings, `| \`key\` | type | ...` rows), plus
/// the duration maps whose keys are criterion ids.
fn documented_keys() -> Vec<Key> {
    let doc = read(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/CONFIG.md"
    )));
    let heading = regex::Regex::new(r"(\[\[?)([a-z_.]+)\]").expect("regex");
    let row = regex::Regex::new(r"^\| `([a-z_0-9]+)` \| ([^|]+) \|").expect("regex");
    let mut sections: Vec<(String, bool)> = Vec::new();
    let mut keys = Vec::new();
    for line in doc.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            sections = heading
                .captures_iter(h)
                .map(|c| (c[2].to_string(), &c[1] == "[["))
                .collect();
            continue;
        }
        let Some(c) = row.captures(line) else {
            continue;
        };
        let ty = c[2].to_ascii_lowercase();
        let kind = if ty.contains("list of durations") {
            Kind::Durations
        } else if ty.contains("duration") {
            Kind::Duration
        } else if ty.contains("integer") {
            Kind::Integer
        } else if ty.contains("float") {
            Kind::Float
        } else if ty.contains("rfc 3339") {
            Kind::Time
        } else {
            continue;
        };
        for (section, array) in &sections {
            keys.push(Key {
                section: section.clone(),
                array: *array,
                name: c[1].to_string(),
                kind,
            });
        }
    }
    for (section, name) in [
        ("watch.for", "dlq"),
        ("rollback.triggers", "service_up"),
        ("rollback.triggers", "dlq_spike"),
    ] {
        keys.push(Key {
            section: section.into(),
            array: false,
            name: name.into(),
            kind: Kind::Duration,
        });
    }
    keys
}

/// The values a key of `kind` is tried with: zero, negative, the largest
/// accepted, just over it, absurd.
fn edge_values(kind: Kind) -> Vec<toml::Value> {
    let s = |v: &str| toml::Value::String(v.to_string());
    let now = chrono::Utc::now();
    let time = |d: chrono::TimeDelta| s(&(now + d).to_rfc3339());
    match kind {
        Kind::Duration => [
            "0s",
            "-1s",
            "3650d",
            "3651d",
            "1000000000d",
            "99999999999999999999s",
        ]
        .iter()
        .map(|v| s(v))
        .collect(),
        Kind::Durations => ["0s", "3650d", "1000000000d"]
            .iter()
            .map(|v| toml::Value::Array(vec![s(v)]))
            .collect(),
        Kind::Integer => [0, -1, i64::MAX]
            .into_iter()
            .map(toml::Value::Integer)
            .collect(),
        Kind::Float => [0.0, -1.0, 1e308, f64::NAN, f64::INFINITY]
            .into_iter()
            .map(toml::Value::Float)
            .collect(),
        // (A T0 within the clock-skew allowance is accepted and waited
        // for: `a_future_t0_is_refused_beyond_the_clock_skew` covers it.)
        Kind::Time => vec![
            time(chrono::TimeDelta::days(3650)),
            time(chrono::TimeDelta::hours(1)),
            time(-chrono::TimeDelta::hours(1)),
            s("0001-01-01T00:00:00Z"),
            s("9999-12-31T23:59:59Z"),
        ],
    }
}

/// The table at dotted `path` (an array's first element), created where absent.
fn table_at<'t>(root: &'t mut toml::Table, path: &str) -> &'t mut toml::Table {
    let mut cur = root;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let entry = cur
            .entry(seg.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Array(items) => {
                if items.is_empty() {
                    items.push(toml::Value::Table(toml::Table::new()));
                }
                items[0].as_table_mut().expect("an array of tables")
            }
            other => other.as_table_mut().expect("a table"),
        };
    }
    cur
}

/// The replica's config with every section of the shipped one: a fast
/// `[watch]` in `dir`, the shipped alerts (routes disabled) and a disarmed
/// rollback on the replica's files with its end-to-end probe.
fn scan_base(r: &Replica) -> toml::Table {
    let mut t: toml::Table = toml::from_str(&read(&r.config)).expect("replica config");
    let shipped = shipped();
    t.insert("alerts".into(), shipped["alerts"].clone());
    let mut rollback = shipped["rollback"].as_table().expect("[rollback]").clone();
    let path = |p: &Path| toml::Value::String(p.display().to_string());
    rollback.insert("env_file".into(), path(&r.files.env_file));
    rollback.insert("log_file".into(), path(&r.files.log_file));
    rollback.insert(
        "restart_command".into(),
        toml::Value::Array(vec!["true".into()]),
    );
    let e2e = rollback
        .get_mut("e2e")
        .and_then(toml::Value::as_table_mut)
        .expect("[rollback.e2e]");
    e2e.insert("nats_url".into(), crate::common::nats_url().into());
    e2e.insert("subject".into(), r.names.hrv_subject.clone().into());
    e2e.insert("database_url".into(), r.db_url.clone().into());
    e2e.insert("table".into(), r.names.table.clone().into());
    e2e.insert("timeout".into(), "10s".into());
    t.insert("rollback".into(), toml::Value::Table(rollback));
    let mut watch = shipped["watch"].as_table().expect("[watch]").clone();
    watch.insert("interval".into(), "200ms".into());
    watch.insert("max_gap".into(), "3s".into());
    watch.insert("listen".into(), "127.0.0.1:0".into());
    watch.insert("for".into(), shipped["watch"]["for"].clone());
    t.insert("watch".into(), toml::Value::Table(watch));
    t
}

/// `base` with `value` at `key`, its state and reports in `dir`; the
/// `[[consumers]]` keys apply to the `[consumer]` moved there, and a
/// `[state]` key puts the state on JetStream in its own bucket.
fn variant(
    base: &toml::Table,
    key: &Key,
    value: &toml::Value,
    dir: &Path,
    tag: &str,
) -> toml::Table {
    let mut t = base.clone();
    let watch = table_at(&mut t, "watch");
    watch.insert(
        "state".into(),
        dir.join("state.sqlite").display().to_string().into(),
    );
    watch.insert(
        "reports_dir".into(),
        dir.join("reports").display().to_string().into(),
    );
    if key.section == "consumers" {
        let consumer = t.remove("consumer").expect("[consumer]");
        t.insert("consumers".into(), toml::Value::Array(vec![consumer]));
    }
    if key.section == "state" {
        let state = table_at(&mut t, "state");
        state.insert("backend".into(), "jetstream".into());
        state.insert("bucket".into(), format!("sw_np_{tag}").into());
    }
    let _ = key.array;
    table_at(&mut t, &key.section).insert(key.name.clone(), value.clone());
    t
}

/// The subcommands a config that `validate` accepts goes through.
fn subcommands(c: &str, key: &Key) -> Vec<Vec<String>> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    // An interval of years: the first cycle only.
    let cycles = if key.name == "interval" { "1" } else { "2" };
    let mut out = vec![
        v(&["check", "-c", c, "--window", "0s", "--format", "json"]),
        v(&["check", "-c", c, "--window", "1s", "--format", "nagios"]),
        v(&["validate", "--live", "-c", c]),
        v(&[
            "watch",
            "-c",
            c,
            "--force",
            "--new-soak",
            "--max-cycles",
            cycles,
        ]),
        v(&["check", "--soak", "-c", c, "--format", "prometheus"]),
        v(&["report", "-c", c]),
        v(&["rollback", "--dry-run", "-c", c]),
        v(&["export", "prometheus-rules", "-c", c]),
        v(&["export", "grafana", "-c", c]),
        v(&["alert", "test", "-c", c]),
    ];
    if key.section == "rollback.e2e" {
        out.push(v(&["e2e", "-c", c]));
    }
    out
}

/// Runs `validate` on one variant and, when it is accepted, every
/// subcommand; returns what panicked (or hung), one line each.
async fn try_variant(
    key: Key,
    value: toml::Value,
    base: Arc<toml::Table>,
    dir: PathBuf,
    n: usize,
) -> Vec<String> {
    let vdir = dir.join(format!("v{n}"));
    std::fs::create_dir_all(&vdir).expect("variant dir");
    let tag = format!("{}_{n}", std::process::id());
    let t = variant(&base, &key, &value, &vdir, &tag);
    let path = write_config(&vdir, "checks.toml", &t);
    let c = path.display().to_string();
    let what = format!("{}.{} = {value}", key.section, key.name);
    let mut bad = Vec::new();
    let Some(validated) = run_bounded(&["validate", "-c", &c]).await else {
        return vec![format!("{what}: validate: no exit within {BOUND:?}")];
    };
    if panicked(&validated) {
        bad.push(format!(
            "{what}: validate: {}",
            last_lines(&validated.stderr)
        ));
    }
    if validated.code != 0 {
        return bad;
    }
    for args in subcommands(&c, &key) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let Some(run) = run_bounded(&args).await else {
            bad.push(format!("{what}: {}: no exit within {BOUND:?}", args[0]));
            continue;
        };
        if panicked(&run) {
            bad.push(format!("{what}: {}: {}", args[0], last_lines(&run.stderr)));
        }
    }
    if key.section == "state" {
        drop_bucket(&format!("sw_np_{tag}")).await;
    }
    bad
}

/// Longest a subcommand of the scan may run: its probes answer at once.
const BOUND: Duration = Duration::from_secs(30);

/// Runs the binary; `None` when it has not exited within [`BOUND`] (it is killed).
async fn run_bounded(args: &[&str]) -> Option<Run> {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(BOUND, cmd.output()).await.ok()?;
    let out = out.expect("soakwatch ran");
    Some(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// The panic message of a stderr (its first `panicked at` line and the next).
fn last_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    match lines.iter().position(|l| l.contains("panicked at")) {
        Some(i) => lines[i..(i + 2).min(lines.len())].join(" "),
        None => lines
            .iter()
            .rev()
            .take(2)
            .copied()
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Removes a JetStream state bucket and its streams (a `[state]` variant's).
async fn drop_bucket(bucket: &str) {
    let Ok(nats) = async_nats::connect(crate::common::nats_url()).await else {
        return;
    };
    let js = async_nats::jetstream::new(nats);
    let _ = js.delete_key_value(bucket).await;
    for suffix in ["cycles", "snapshots"] {
        let _ = js.delete_stream(format!("{bucket}_{suffix}")).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_key_at_its_edges_never_panics_any_subcommand() {
    let r = Replica::healthy(3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let base = Arc::new(scan_base(&r));
    // The base itself is accepted and runs: the variants differ in one key.
    let base_path = write_config(dir.path(), "base.toml", &base);
    let ok = run_bin(&["validate", "-c", &base_path.display().to_string()], &[]).await;
    assert_eq!(ok.code, 0, "the scan's base config: {}", ok.stderr);
    let keys = documented_keys();
    for kind in [
        Kind::Duration,
        Kind::Durations,
        Kind::Integer,
        Kind::Float,
        Kind::Time,
    ] {
        assert!(
            keys.iter().any(|k| k.kind == kind),
            "no {kind:?} key found in docs/CONFIG.md"
        );
    }
    let mut jobs = Vec::new();
    for key in &keys {
        for value in edge_values(key.kind) {
            jobs.push((key.clone(), value));
        }
    }
    eprintln!("{} keys, {} variants", keys.len(), jobs.len());
    let results: Vec<Vec<String>> =
        futures::stream::iter(jobs.into_iter().enumerate().map(|(n, (key, value))| {
            try_variant(key, value, base.clone(), dir.path().to_path_buf(), n)
        }))
        .buffer_unordered(3)
        .collect()
        .await;
    let bad: Vec<String> = results.into_iter().flatten().collect();
    assert!(
        bad.is_empty(),
        "{} panic(s):\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no line with {needle:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn durations_that_overflow_are_refused_naming_the_maximum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = shipped();
    for (section, key) in [
        ("soak", "duration"),
        ("database", "recent_window"),
        ("watch", "interval"),
        ("watch", "dlq_spike_window"),
        ("rollback.triggers", "service_up"),
    ] {
        table_at(&mut t, section).insert(key.into(), "1000000000d".into());
    }
    let path = write_config(dir.path(), "checks.toml", &t);
    let text = read(&path);
    let run = run_bin(&["validate", "-c", &path.display().to_string()], &[]).await;
    eprintln!("{}", run.stderr);
    assert_eq!(run.code, 3, "refused: {}", run.stderr);
    for key in [
        "soak.duration",
        "database.recent_window",
        "watch.interval",
        "watch.dlq_spike_window",
        "rollback.triggers.service_up",
    ] {
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains(&format!(": {key}: ")))
            .unwrap_or_else(|| panic!("no problem for {key}:\n{}", run.stderr));
        let name = key.rsplit('.').next().expect("name");
        let at = format!(
            "{}:{}:",
            path.display(),
            line_of(&text, &format!("{name} = \"1000000000d\""))
        );
        assert!(line.starts_with(&at), "{key}: want {at}: {line}");
        assert!(line.contains("3650d (10 years)"), "{key}: {line}");
    }
    // The largest accepted value is accepted.
    let mut t = shipped();
    table_at(&mut t, "database").insert("recent_window".into(), "3650d".into());
    let ok = write_config(dir.path(), "max.toml", &t);
    let run = run_bin(&["validate", "-c", &ok.display().to_string()], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The command line's durations too.
    let run = run_bin(
        &[
            "check",
            "-c",
            &ok.display().to_string(),
            "--window",
            "1000000000d",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("3650d (10 years)"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_future_t0_is_refused_beyond_the_clock_skew() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = chrono::Utc::now();
    let at = |d: chrono::TimeDelta| (now + d).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let config = |name: &str, started: &str| {
        let mut t = shipped();
        table_at(&mut t, "soak").insert("started_at".into(), started.into());
        write_config(dir.path(), name, &t).display().to_string()
    };
    let far = config("far.toml", &at(chrono::TimeDelta::days(3650)));
    for args in [
        vec!["validate", "-c", &far],
        vec!["watch", "-c", &far, "--max-cycles", "1"],
    ] {
        let run = run_bin(&args, &[]).await;
        eprintln!("{args:?}: {}", run.stderr);
        assert_eq!(run.code, 3, "{args:?}: {}", run.stderr);
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains(": soak.started_at: "))
            .unwrap_or_else(|| panic!("no problem for soak.started_at:\n{}", run.stderr));
        assert!(line.contains("in the future"), "{line}");
        assert!(line.contains("at most 5m ahead"), "{line}");
    }
    // Within the allowance: a clock a minute behind the cutover's host.
    let near = config("near.toml", &at(chrono::TimeDelta::minutes(1)));
    let run = run_bin(&["validate", "-c", &near], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    // `watch --t0` is held to the same rule.
    let ok = config("ok.toml", &at(-chrono::TimeDelta::hours(1)));
    let t0 = at(chrono::TimeDelta::hours(1));
    let run = run_bin(&["watch", "-c", &ok, "--t0", &t0, "--max-cycles", "1"], &[]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("in the future"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_over_1_mib_is_refused_before_parsing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shipped_text = read(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/checks.toml"
    )));
    // Valid TOML all along (comments): only its size is wrong.
    let mut big = shipped_text.clone();
    while big.len() <= 1024 * 1024 {
        big.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    let path = dir.path().join("big.toml");
    std::fs::write(&path, &big).expect("write");
    let p = path.display().to_string();
    for args in [vec!["validate", "-c", &p], vec!["check", "-c", &p]] {
        let run = run_bin(&args, &[]).await;
        assert_eq!(run.code, 3, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "{} bytes is over the largest config soakwatch reads, 1 MiB",
                big.len()
            )),
            "{args:?}: {}",
            run.stderr
        );
    }
    // Just under the limit is read as usual.
    big.truncate(shipped_text.len());
    while big.len() + 70 < 1024 * 1024 {
        big.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&path, &big).expect("write");
    let run = run_bin(&["validate", "-c", &p], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
}
