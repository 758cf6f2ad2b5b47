//! The Phase B rollback runbook (its staging record's "Rollback
//! Readiness"), as code that can be planned, dry-run and executed:
//!
//! 1. `edit_env`: revert the service's `.env` (`EVENT_STREAM_MODE=single`),
//!    losslessly, with a backup and an atomic replace;
//! 2. `restart`: restart normalize-service with a configured argv (no shell),
//!    bounded by a timeout that kills the whole process group;
//! 3. `verify_logs`: lines written to the service log *after* the restart must
//!    match every expected pattern (`Stream mode: single`, `Stream candidates:
//!    ATHLETE_ALLY_EVENTS`);
//! 4. `e2e`: one synthetic HRV event in, one database row out ([`e2e`]).
//!
//! [`plan`] describes the steps with their concrete arguments; [`execute`]
//! runs them in order and stops at the first failure, reporting every step to
//! a callback so the caller can journal progress (the latch that decides
//! *whether* to roll back lives with the caller, not here). Step outputs are
//! trimmed, bounded and have URLs redacted, so they can be stored and shown.

pub mod round_trip;
pub mod steps;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use round_trip::{
    cleanup_round_trip_rows, run_round_trip, run_round_trip_with, RoundTripConfig, RoundTripError,
    RoundTripResult,
};
pub use steps::{LogMark, StepError};

/// Largest step output kept, in bytes: enough for a command's error tail,
/// small enough to journal every step of every attempt.
pub const MAX_OUTPUT_BYTES: usize = 4096;

/// Whether a rollback may touch anything. Disarmed by default so a config
/// that merely mentions `[rollback]` can never restart a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackMode {
    /// Nothing is done; [`execute`] records every step as skipped.
    #[default]
    Disarmed,
    /// [`execute`] records every step as planned, with its arguments, and changes nothing.
    DryRun,
    /// [`execute`] really edits, restarts and verifies.
    Armed,
}

impl RollbackMode {
    /// The config spelling, for plans and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RollbackMode::Disarmed => "disarmed",
            RollbackMode::DryRun => "dry_run",
            RollbackMode::Armed => "armed",
        }
    }
}

/// Config of the rollback (`[rollback]` in checks.toml). Every default is
/// the seed's runbook; the paths and the restart command have none, because
/// guessing them could edit or restart the wrong thing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackConfig {
    /// disarmed (default), dry_run or armed.
    #[serde(default)]
    pub mode: RollbackMode,
    /// The service's `.env`.
    pub env_file: PathBuf,
    /// Whether a symlinked `env_file` may be edited (its target is then
    /// rewritten). Off by default: an edit through a link once appended
    /// `EVENT_STREAM_MODE=single` to a passwd-format file.
    #[serde(default)]
    pub follow_env_symlink: bool,
    /// Keys to set in the `.env` (default `EVENT_STREAM_MODE = "single"`).
    #[serde(default = "default_set")]
    pub set: BTreeMap<String, String>,
    /// Suffix of the backup of the original `.env` (default `.soakwatch-bak`).
    #[serde(default = "default_backup_suffix")]
    pub backup_suffix: String,
    /// argv of the restart, run without a shell; empty skips the step (recorded as skipped).
    /// Required, so skipping the restart is always a written decision.
    pub restart_command: Vec<String>,
    /// Environment of the restart command beyond PATH: it does not inherit
    /// soakwatch's (which holds SMTP passwords, webhook secrets, database
    /// URLs). Values set here win over inherited ones.
    #[serde(default)]
    pub restart_env: BTreeMap<String, String>,
    /// Names of soakwatch's own environment variables the restart command
    /// gets (e.g. `["HOME", "XDG_RUNTIME_DIR"]` for `systemctl --user`);
    /// `["*"]` passes the whole environment (secrets included).
    #[serde(default)]
    pub inherit_env: Vec<String>,
    /// Longest the restart command may run before its process group is killed (default 60s).
    #[serde(default = "default_step_timeout", with = "crate::duration::bounded")]
    pub restart_timeout: Duration,
    /// The service's log, read from where it ended before the restart.
    pub log_file: PathBuf,
    /// Regexes that must each match a log line written after the restart.
    #[serde(default = "default_expect_log_lines")]
    pub expect_log_lines: Vec<String>,
    /// Longest to wait for the expected log lines (default 60s).
    #[serde(default = "default_step_timeout", with = "crate::duration::bounded")]
    pub verify_timeout: Duration,
    /// The end-to-end probe; absent skips the step.
    #[serde(default)]
    pub e2e: Option<RoundTripConfig>,
    /// `[rollback.triggers]`: criterion id (or `dlq_spike`) = how long it
    /// must hold before the rollback fires. The runbook never reads it; it
    /// lives here so the whole section is one typed, collected parse (the
    /// daemon's [`crate::config::RollbackSettings`] turns it into triggers).
    /// Absent: the runbook's defaults, see `config::validate`.
    #[serde(default)]
    pub triggers: Option<BTreeMap<String, humantime_serde::Serde<Duration>>>,
}

fn default_set() -> BTreeMap<String, String> {
    BTreeMap::from([("EVENT_STREAM_MODE".to_string(), "single".to_string())])
}

fn default_backup_suffix() -> String {
    ".soakwatch-bak".to_string()
}

fn default_step_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_expect_log_lines() -> Vec<String> {
    vec![
        "Stream mode: single".to_string(),
        "Stream candidates: ATHLETE_ALLY_EVENTS".to_string(),
    ]
}

impl RollbackConfig {
    /// A config with the runbook's defaults for everything but the paths and
    /// the restart argv, for callers that build one in code (tests, the CLI).
    pub fn new(env_file: PathBuf, restart_command: Vec<String>, log_file: PathBuf) -> Self {
        RollbackConfig {
            mode: RollbackMode::default(),
            env_file,
            follow_env_symlink: false,
            set: default_set(),
            backup_suffix: default_backup_suffix(),
            restart_command,
            restart_env: BTreeMap::new(),
            inherit_env: Vec::new(),
            restart_timeout: default_step_timeout(),
            log_file,
            expect_log_lines: default_expect_log_lines(),
            verify_timeout: default_step_timeout(),
            e2e: None,
            triggers: None,
        }
    }

    /// Problems that would make a step fail for a reason known before
    /// anything is touched (bad key, bad regex, zero timeout, ...), one line
    /// each; [`execute`] refuses to start while there are any, so a typo
    /// cannot leave the service half rolled back.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.env_file.as_os_str().is_empty() {
            problems.push("env_file: must not be empty".to_string());
        }
        if self.set.is_empty() {
            problems.push("set: no keys to set".to_string());
        }
        for key in self.set.keys() {
            if !steps::is_valid_env_key(key) {
                problems.push(format!(
                    "set: {key:?} is not a valid .env key ([A-Za-z_][A-Za-z0-9_.]*)"
                ));
            }
        }
        if self.backup_suffix.is_empty() || self.backup_suffix.contains('/') {
            problems.push(
                "backup_suffix: must be non-empty and must not contain '/' (the backup sits beside the .env)"
                    .to_string(),
            );
        }
        match self.restart_command.first() {
            Some(first) if first.trim().is_empty() => {
                problems.push("restart_command: the program (first element) is empty".to_string());
            }
            Some(_) => {}
            // Nothing would restart the service, so verify_logs could only
            // fail, and only after the .env was edited. A disarmed config
            // (e.g. only for the periodic e2e probe) never runs the steps;
            // `rollback --execute` arms it, and then this refuses it.
            None if !self.expect_log_lines.is_empty() && self.mode != RollbackMode::Disarmed => problems.push(
                "restart_command: empty, but expect_log_lines waits for the restarted service; \
                 name the restart argv, or set expect_log_lines = [] too to edit the .env only"
                    .to_string(),
            ),
            None => {}
        }
        for key in self.restart_env.keys().chain(self.inherit_env.iter()) {
            if key != "*" && (key.is_empty() || key.contains(['=', '\0'])) {
                problems.push(format!(
                    "restart_env: {key:?} is not an environment variable name"
                ));
            }
        }
        if self.restart_timeout.is_zero() {
            problems.push("restart_timeout: must be > 0".to_string());
        }
        if self.log_file.as_os_str().is_empty() && !self.expect_log_lines.is_empty() {
            problems.push("log_file: must not be empty".to_string());
        }
        for p in &self.expect_log_lines {
            if let Err(e) = regex::Regex::new(p) {
                let first = e.to_string().lines().last().unwrap_or_default().to_string();
                problems.push(format!(
                    "expect_log_lines: {p:?} is not a valid regex: {first}"
                ));
            }
        }
        if self.verify_timeout.is_zero() {
            problems.push("verify_timeout: must be > 0".to_string());
        }
        if let Some(e) = &self.e2e {
            problems.extend(e.validate().into_iter().map(|p| format!("e2e.{p}")));
        }
        problems
    }

    /// The restart command's whole environment, from soakwatch's own
    /// (`lookup` of one name, `all` of every pair, both injectable): PATH,
    /// the `inherit_env` names that are set, then `restart_env`.
    pub fn restart_environment(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
        all: &dyn Fn() -> Vec<(String, String)>,
    ) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        if self.inherit_env.iter().any(|n| n == "*") {
            env.extend(all());
        }
        for name in std::iter::once("PATH").chain(self.inherit_env.iter().map(String::as_str)) {
            if let Some(v) = lookup(name) {
                env.insert(name.to_string(), v);
            }
        }
        env.extend(self.restart_env.clone());
        env
    }

    /// [`RollbackConfig::restart_environment`] of this process.
    pub fn restart_environment_of_process(&self) -> BTreeMap<String, String> {
        self.restart_environment(&|n| std::env::var(n).ok(), &|| std::env::vars().collect())
    }

    /// Where [`steps::edit_env`] keeps the original `.env`.
    pub fn backup_path(&self) -> PathBuf {
        steps::backup_path(&self.env_file, &self.backup_suffix)
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Done and verified.
    Ok,
    /// Failed; the rollback stopped here.
    Failed,
    /// Not run: not configured, disarmed, or an earlier step failed (see the output).
    Skipped,
    /// Dry run: what would be done.
    Planned,
}

impl StepStatus {
    /// The serialized spelling, for text output.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Ok => "ok",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Planned => "planned",
        }
    }
}

/// One step's record, handed to the caller after each step so an
/// interrupted rollback leaves a journal of how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// 1 edit_env, 2 restart, 3 verify_logs, 4 e2e; 0 is the preflight check,
    /// recorded only when it refuses to start.
    pub n: usize,
    /// Step name (`edit_env`, `restart`, `verify_logs`, `e2e`, `preflight`).
    pub name: String,
    /// How it ended.
    pub status: StepStatus,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it took.
    pub duration_ms: u64,
    /// What it did or why it failed: trimmed, at most [`MAX_OUTPUT_BYTES`], URLs redacted.
    pub output: String,
    /// The leader lease revision this step acted under (JetStream state):
    /// the journal says which watcher's term did what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_revision: Option<u64>,
}

/// Asked with the step's number immediately before each step with an
/// outside effect (the env edit, the restart, the E2E publish): `Ok` with
/// the leader lease revision
/// this process acts under (`None` without a lease), or why it may no
/// longer act. A deposed leader that resumes mid-rollback is stopped here.
pub type ActGate<'a> = &'a (dyn Fn(
    usize,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Option<u64>, String>> + Send>,
> + Send
         + Sync);
/// Lines of a step's captured output shown from its start, wherever the
/// step is shown (CLI, report, page, alert); as many from its end
/// ([`SHOWN_TAIL_LINES`]). The whole bounded output stays in the journal.
pub const SHOWN_HEAD_LINES: usize = 5;
/// Lines shown from the end of a step's output (where a failing command
/// usually says why).
pub const SHOWN_TAIL_LINES: usize = 5;
/// Longest line of a step's output shown, in characters.
pub const SHOWN_LINE_CHARS: usize = 200;

/// A step's output as people are shown it: the line saying what the step
/// did or why it failed, then the captured output's first and last lines.
/// Before, only the first line was shown, so a failed restart read
/// "exited with code 3; output:" and nothing after it. The text is as
/// stored (already scrubbed and bounded, see [`clean_output`]); each
/// renderer escapes it for its format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputView {
    /// The first line: `systemctl exited with code 3; output:`.
    pub headline: String,
    /// Up to [`SHOWN_HEAD_LINES`] first and [`SHOWN_TAIL_LINES`] last lines
    /// of the rest, each at most [`SHOWN_LINE_CHARS`], blank lines dropped,
    /// with `… N more lines …` between them when lines were left out.
    pub lines: Vec<String>,
}

impl OutputView {
    /// Everything on one line (alerts, one-line logs): the headline, then
    /// the lines joined with ` ⏎ `.
    pub fn one_line(&self) -> String {
        if self.lines.is_empty() {
            return self.headline.clone();
        }
        format!("{} {}", self.headline, self.lines.join(" ⏎ "))
    }
}

/// Splits a stored step output into what is shown ([`OutputView`]).
pub fn output_view(output: &str) -> OutputView {
    let mut all = output.lines();
    let headline = all.next().unwrap_or("").trim_end().to_string();
    let rest: Vec<&str> = all
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let bound = |l: &str| match l.char_indices().nth(SHOWN_LINE_CHARS) {
        Some((at, _)) => format!("{}…", &l[..at]),
        None => l.to_string(),
    };
    let lines = if rest.len() <= SHOWN_HEAD_LINES + SHOWN_TAIL_LINES {
        rest.iter().map(|l| bound(l)).collect()
    } else {
        let left_out = rest.len() - SHOWN_HEAD_LINES - SHOWN_TAIL_LINES;
        rest[..SHOWN_HEAD_LINES]
            .iter()
            .map(|l| bound(l))
            .chain(std::iter::once(format!("… {left_out} more lines …")))
            .chain(
                rest[rest.len() - SHOWN_TAIL_LINES..]
                    .iter()
                    .map(|l| bound(l)),
            )
            .collect()
    };
    OutputView { headline, lines }
}

/// The result of [`execute`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackOutcome {
    /// Every step, in order (steps after a failure are recorded as skipped).
    pub steps: Vec<StepRecord>,
    /// True when every step is ok or skipped by configuration (armed), or
    /// planned (dry run); false when disarmed or a step failed.
    pub success: bool,
    /// `n` of the step that failed (0 = preflight).
    pub failed_step: Option<usize>,
    /// The run only planned (mode dry_run).
    pub dry_run: bool,
}

/// Names of the steps, by number.
const STEP_NAMES: [&str; 4] = ["edit_env", "restart", "verify_logs", "e2e"];

/// The plan as text lines (for `soakwatch rollback --dry-run`): each step
/// with its concrete arguments, argv shown exactly as configured (never built
/// from observed data), URLs redacted.
pub fn plan(cfg: &RollbackConfig) -> Vec<String> {
    let mut lines = vec![format!("rollback plan (mode: {})", cfg.mode.as_str())];
    for n in 1..=STEP_NAMES.len() {
        lines.push(format!(
            "{n}. {}: {}",
            STEP_NAMES[n - 1],
            describe_step(cfg, n)
        ));
    }
    let problems = cfg.validate();
    if !problems.is_empty() {
        lines.push(format!(
            "refused: the config has {} problem(s); execute would do nothing:",
            problems.len()
        ));
        lines.extend(problems.into_iter().map(|p| format!("  - {p}")));
    }
    lines
}

/// One step's concrete description (the plan line without its number).
fn describe_step(cfg: &RollbackConfig, n: usize) -> String {
    match n {
        1 => {
            let sets: Vec<String> = cfg
                .set
                .iter()
                .map(|(k, v)| format!("{k}={}", shown_value(k, v)))
                .collect();
            format!(
                "in {} set {} (original kept as {}; atomic replace, other lines untouched)",
                cfg.env_file.display(),
                sets.join(", "),
                cfg.backup_path().display()
            )
        }
        2 if cfg.restart_command.is_empty() => "skipped (restart_command is empty)".to_string(),
        2 => format!(
            "run {:?} (no shell), timeout {}; its process group is killed on timeout",
            cfg.restart_command,
            humantime::format_duration(cfg.restart_timeout)
        ),
        3 if cfg.expect_log_lines.is_empty() => "skipped (expect_log_lines is empty)".to_string(),
        3 => format!(
            "in {}, lines written after the restart must match each of {:?} within {}",
            cfg.log_file.display(),
            cfg.expect_log_lines,
            humantime::format_duration(cfg.verify_timeout)
        ),
        4 => match &cfg.e2e {
            None => "skipped (no [rollback.e2e])".to_string(),
            Some(e) => e.describe(),
        },
        _ => String::new(),
    }
}

/// Whether an environment or `.env` key names a credential (its value is
/// then never shown, and is scrubbed from the restart command's output).
pub fn is_secret_name(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    [
        "PASSWORD",
        "PASSWD",
        "SECRET",
        "TOKEN",
        "CREDENTIAL",
        "PRIVATE",
        "API_KEY",
        "APIKEY",
        "AUTH",
        "WEBHOOK",
        "DATABASE_URL",
        "DSN",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// A value as it may be shown: hidden for keys that look like credentials.
pub(crate) fn shown_value(key: &str, value: &str) -> String {
    if is_secret_name(key) {
        "***".to_string()
    } else if value.contains("://") {
        redact_urls(value)
    } else {
        value.to_string()
    }
}

/// Runs the steps in order, stopping at the first failure; `on_step` is
/// called after each step (so the caller can persist progress). A config
/// with [`RollbackConfig::validate`] problems is refused before anything is
/// touched (failed step 0, `preflight`). Disarmed: nothing runs; dry run:
/// every step is recorded as planned.
pub async fn execute(
    cfg: &RollbackConfig,
    on_step: &mut (dyn FnMut(&StepRecord) + Send),
) -> RollbackOutcome {
    execute_gated(cfg, on_step, &|_| Box::pin(async { Ok(None) })).await
}

/// [`execute`], asking `gate` before every step with an outside effect: a
/// refusal fails that step ("not run: …") and skips the rest.
pub async fn execute_gated(
    cfg: &RollbackConfig,
    on_step: &mut (dyn FnMut(&StepRecord) + Send),
    gate: ActGate<'_>,
) -> RollbackOutcome {
    let mut out = RollbackOutcome {
        steps: Vec::new(),
        success: false,
        failed_step: None,
        dry_run: cfg.mode == RollbackMode::DryRun,
    };
    let mut push = |out: &mut RollbackOutcome, rec: StepRecord| {
        on_step(&rec);
        out.steps.push(rec);
    };

    match cfg.mode {
        RollbackMode::Disarmed => {
            for n in 1..=STEP_NAMES.len() {
                push(
                    &mut out,
                    instant_record(
                        n,
                        StepStatus::Skipped,
                        "not run: rollback mode is disarmed".to_string(),
                    ),
                );
            }
            return out;
        }
        RollbackMode::DryRun => {
            for n in 1..=STEP_NAMES.len() {
                push(
                    &mut out,
                    instant_record(n, StepStatus::Planned, describe_step(cfg, n)),
                );
            }
            let mut problems = cfg.validate();
            if problems.is_empty() {
                problems = readiness_problems(cfg);
            }
            if problems.is_empty() {
                out.success = true;
            } else {
                out.failed_step = Some(0);
                push(&mut out, preflight_failure(&problems));
            }
            return out;
        }
        RollbackMode::Armed => {}
    }

    let mut problems = cfg.validate();
    if problems.is_empty() {
        problems = preflight_io(cfg);
    }
    if !problems.is_empty() {
        out.failed_step = Some(0);
        push(&mut out, preflight_failure(&problems));
        for n in 1..=STEP_NAMES.len() {
            push(
                &mut out,
                instant_record(
                    n,
                    StepStatus::Skipped,
                    "not run: preflight failed".to_string(),
                ),
            );
        }
        return out;
    }
    run_steps(cfg, out, &mut push, gate).await
}

/// The four steps of an armed rollback, in order, stopping at the first failure.
async fn run_steps(
    cfg: &RollbackConfig,
    mut out: RollbackOutcome,
    push: &mut (impl FnMut(&mut RollbackOutcome, StepRecord) + Send),
    gate: ActGate<'_>,
) -> RollbackOutcome {
    let rev = match gate(1).await {
        Ok(rev) => rev,
        Err(why) => return refused(out, 1, why, push),
    };
    if record_step(&mut out, with_revision(edit_env_step(cfg), rev), push) {
        return stop_after(out, 1, push);
    }
    // The log position before the restart: only lines written after it count.
    let mark = LogMark::of(&cfg.log_file);
    let rev = match gate(2).await {
        Ok(rev) => rev,
        Err(why) => return refused(out, 2, why, push),
    };
    if record_step(&mut out, with_revision(restart_step(cfg).await, rev), push) {
        return stop_after(out, 2, push);
    }
    if record_step(&mut out, verify_logs_step(cfg, &mark).await, push) {
        return stop_after(out, 3, push);
    }
    let rev = match gate(4).await {
        Ok(rev) => rev,
        Err(why) => return refused(out, 4, why, push),
    };
    if record_step(
        &mut out,
        with_revision(round_trip_step(cfg).await, rev),
        push,
    ) {
        return stop_after(out, 4, push);
    }
    out.success = true;
    out
}

fn with_revision(mut rec: StepRecord, rev: Option<u64>) -> StepRecord {
    rec.lease_revision = rev;
    rec
}

/// Step `n` was not run because this process may no longer act.
fn refused(
    mut out: RollbackOutcome,
    n: usize,
    why: String,
    push: &mut impl FnMut(&mut RollbackOutcome, StepRecord),
) -> RollbackOutcome {
    tracing::error!(step = n, reason = %why, "rollback step NOT run: this watcher no longer leads");
    push(
        &mut out,
        instant_record(
            n,
            StepStatus::Failed,
            format!("not run: this watcher may no longer act ({why})"),
        ),
    );
    stop_after(out, n, push)
}

/// Records a step's outcome; true when it failed.
fn record_step(
    out: &mut RollbackOutcome,
    rec: StepRecord,
    push: &mut impl FnMut(&mut RollbackOutcome, StepRecord),
) -> bool {
    let failed = rec.status == StepStatus::Failed;
    push(out, rec);
    failed
}

/// Step 1: the `.env` edit (with its backup).
fn edit_env_step(cfg: &RollbackConfig) -> StepRecord {
    let t = Timer::start();
    let r = steps::edit_env_with(
        &cfg.env_file,
        &cfg.set,
        &cfg.backup_suffix,
        cfg.follow_env_symlink,
    );
    t.record(1, r.map(Some))
}

/// Step 2: the restart command, skipped when there is none.
async fn restart_step(cfg: &RollbackConfig) -> StepRecord {
    let t = Timer::start();
    let r = if cfg.restart_command.is_empty() {
        Ok(None)
    } else {
        steps::restart_with_env(
            &cfg.restart_command,
            cfg.restart_timeout,
            &cfg.restart_environment_of_process(),
        )
        .await
        .map(Some)
    };
    t.record_or_skip(2, r, "restart_command is empty")
}

/// Step 3: the expected log lines after `mark`, skipped when none are expected.
async fn verify_logs_step(cfg: &RollbackConfig, mark: &LogMark) -> StepRecord {
    let t = Timer::start();
    let r = if cfg.expect_log_lines.is_empty() {
        Ok(None)
    } else {
        steps::verify_logs(
            &cfg.log_file,
            mark,
            &cfg.expect_log_lines,
            cfg.verify_timeout,
        )
        .await
        .map(Some)
    };
    t.record_or_skip(3, r, "expect_log_lines is empty")
}

/// Step 4: the end-to-end message check, skipped when not configured.
async fn round_trip_step(cfg: &RollbackConfig) -> StepRecord {
    let t = Timer::start();
    let r = match &cfg.e2e {
        None => Ok(None),
        Some(e) => {
            let res = run_round_trip(e).await;
            if res.ok {
                Ok(Some(res.summary()))
            } else {
                Err(res.summary())
            }
        }
    };
    t.record_or_skip(4, r, "no [rollback.e2e] configured")
}

/// Marks step `n` failed and records the remaining steps as skipped.
fn stop_after(
    mut out: RollbackOutcome,
    n: usize,
    push: &mut impl FnMut(&mut RollbackOutcome, StepRecord),
) -> RollbackOutcome {
    out.failed_step = Some(n);
    for later in n + 1..=STEP_NAMES.len() {
        push(
            &mut out,
            instant_record(
                later,
                StepStatus::Skipped,
                format!("not run: step {n} ({}) failed", STEP_NAMES[n - 1]),
            ),
        );
    }
    out
}

/// The checks that look at the machine (the restart program exists), run
/// before the `.env` is touched: each of them would otherwise fail only after
/// the edit, leaving the service configured for single mode but not restarted.
/// What blocks an armed rollback before any step runs: the restart program
/// is not found (editing the env file without a restart to follow would
/// leave the service half rolled back).
fn preflight_io(cfg: &RollbackConfig) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(program) = cfg.restart_command.first() {
        let env = cfg.restart_environment_of_process();
        if let Err(e) = steps::find_program(program, env.get("PATH").map(String::as_str)) {
            problems.push(format!("restart_command: {e}"));
        }
    }
    problems
}

/// Everything a rollback will need, checked ahead (by `rollback --dry-run`
/// and by the daemon's preflight): the env file and the log are there, the
/// restart program is found. A typo in a path would otherwise surface in
/// the middle of a rollback. An armed run is stricter only about what
/// blocks it ([`preflight_io`]): a log rotated away must not stop it.
pub fn readiness_problems(cfg: &RollbackConfig) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, path) in [("env_file", &cfg.env_file), ("log_file", &cfg.log_file)] {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                problems.push(format!("{key}: {} is a directory", path.display()))
            }
            Ok(_) => {}
            Err(e) => problems.push(format!("{key}: {}: {e}", path.display())),
        }
    }
    problems.extend(preflight_io(cfg));
    problems
}

fn preflight_failure(problems: &[String]) -> StepRecord {
    StepRecord {
        n: 0,
        name: "preflight".to_string(),
        status: StepStatus::Failed,
        started_at: Utc::now(),
        duration_ms: 0,
        output: clean_output(&format!(
            "refused, nothing was changed: {}",
            problems.join("; ")
        )),
        lease_revision: None,
    }
}

fn instant_record(n: usize, status: StepStatus, output: String) -> StepRecord {
    StepRecord {
        n,
        name: STEP_NAMES[n - 1].to_string(),
        status,
        started_at: Utc::now(),
        duration_ms: 0,
        output: clean_output(&output),
        lease_revision: None,
    }
}

/// Start time of a step, turned into its record.
struct Timer {
    started_at: DateTime<Utc>,
    t0: Instant,
}

impl Timer {
    fn start() -> Self {
        Timer {
            started_at: Utc::now(),
            t0: Instant::now(),
        }
    }

    /// `Ok(Some(output))` is ok, `Ok(None)` is skipped with `why`, `Err` failed.
    fn record_or_skip<E: std::fmt::Display>(
        self,
        n: usize,
        r: Result<Option<String>, E>,
        why: &str,
    ) -> StepRecord {
        let (status, output) = match r {
            Ok(Some(o)) => (StepStatus::Ok, o),
            Ok(None) => (StepStatus::Skipped, format!("skipped: {why}")),
            Err(e) => (StepStatus::Failed, e.to_string()),
        };
        StepRecord {
            n,
            name: STEP_NAMES[n - 1].to_string(),
            status,
            started_at: self.started_at,
            duration_ms: u64::try_from(self.t0.elapsed().as_millis()).unwrap_or(u64::MAX),
            output: clean_output(&output),
            lease_revision: None,
        }
    }

    fn record<E: std::fmt::Display>(self, n: usize, r: Result<Option<String>, E>) -> StepRecord {
        self.record_or_skip(n, r, "not configured")
    }
}

/// Trimmed, URL-redacted, scrubbed of every configured credential
/// ([`crate::secret::scrub`]) and bounded to [`MAX_OUTPUT_BYTES`] (the tail
/// is kept, since that is where a failing command says why).
pub fn clean_output(s: &str) -> String {
    bound_tail(
        crate::secret::scrub(&redact_urls(s.trim())).trim(),
        MAX_OUTPUT_BYTES,
    )
}

/// Replaces every URL-looking token with its [`crate::secret::redact_url`] form.
pub(crate) fn redact_urls(s: &str) -> String {
    static URL: OnceLock<Option<regex::Regex>> = OnceLock::new();
    let re = URL.get_or_init(|| regex::Regex::new(r#"[A-Za-z][A-Za-z0-9+.\-]*://[^\s"'<>]+"#).ok());
    match re {
        Some(re) => re
            .replace_all(s, |c: &regex::Captures<'_>| {
                crate::secret::redact_url(&c[0])
            })
            .into_owned(),
        None => s.to_string(),
    }
}

/// At most `max` bytes of `s`, keeping the end and saying how much was cut.
pub(crate) fn bound_tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let marker_room = 40;
    let keep = max.saturating_sub(marker_room);
    let mut start = s.len() - keep;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("[{} bytes cut] …{}", start, &s[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_keys() {
        let cfg: RollbackConfig = toml::from_str(
            r#"
            env_file = "/srv/normalize/.env"
            restart_command = ["systemctl", "restart", "normalize-service"]
            log_file = "/var/log/normalize.log"
            restart_timeout = "90s"
            "#,
        )
        .expect("parses");
        assert_eq!(cfg.mode, RollbackMode::Disarmed);
        assert_eq!(
            cfg.set.get("EVENT_STREAM_MODE").map(String::as_str),
            Some("single")
        );
        assert_eq!(cfg.backup_suffix, ".soakwatch-bak");
        assert_eq!(cfg.restart_timeout, Duration::from_secs(90));
        assert_eq!(cfg.verify_timeout, Duration::from_secs(60));
        assert_eq!(cfg.expect_log_lines.len(), 2);
        assert!(cfg.e2e.is_none());
        assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());

        let bad = toml::from_str::<RollbackConfig>(
            "env_file = \"a\"\nrestart_command = []\nlog_file = \"b\"\nrestart_timout = \"1s\"\n",
        );
        assert!(bad.is_err());
        let missing = toml::from_str::<RollbackConfig>("env_file = \"a\"\nlog_file = \"b\"\n");
        assert!(missing.is_err(), "restart_command is required");

        let armed: RollbackConfig = toml::from_str(
            "mode = \"dry_run\"\nenv_file = \"a\"\nrestart_command = []\nlog_file = \"b\"\n\
             [e2e]\nnats_url = \"nats://127.0.0.1:4222\"\nsubject = \"s\"\n\
             database_url = \"postgres://u:pw@h/db\"\ntable = \"hrv_data\"\ntimeout = \"5s\"\n",
        )
        .expect("parses");
        assert_eq!(armed.mode, RollbackMode::DryRun);
        let e = armed.e2e.as_ref().expect("e2e");
        assert_eq!(e.user_column, "userId");
        assert_eq!(e.value_column, "rmssd");
        assert_eq!(e.derived_column, "lnRmssd");
        assert_eq!(e.user_prefix, "soakwatch-e2e-");
        assert_eq!(e.timeout, Duration::from_secs(5));
        assert!(!format!("{armed:?}").contains("pw@"), "{armed:?}");
    }

    #[test]
    fn validate_lists_every_problem() {
        let mut cfg = RollbackConfig::new("/x/.env".into(), vec![String::new()], "/x/log".into());
        cfg.set.insert("BAD KEY".into(), "v".into());
        cfg.expect_log_lines.push("(unclosed".into());
        cfg.restart_timeout = Duration::ZERO;
        cfg.backup_suffix = "/evil".into();
        let p = cfg.validate();
        assert_eq!(p.len(), 5, "{p:?}");
    }

    #[test]
    fn a_step_output_shows_its_head_and_tail() {
        let short = output_view("sh exited with code 3; output:\nboom\n\nbye");
        assert_eq!(short.headline, "sh exited with code 3; output:");
        assert_eq!(short.lines, vec!["boom", "bye"]);
        assert_eq!(
            short.one_line(),
            "sh exited with code 3; output: boom ⏎ bye"
        );
        let mut long = String::from("sh exited with code 3; output:");
        for i in 1..=30 {
            long.push_str(&format!("\nline {i}"));
        }
        let v = output_view(&long);
        assert_eq!(v.lines.len(), SHOWN_HEAD_LINES + 1 + SHOWN_TAIL_LINES);
        assert_eq!(v.lines[0], "line 1");
        assert_eq!(v.lines[4], "line 5");
        assert_eq!(v.lines[5], "… 20 more lines …");
        assert_eq!(v.lines[10], "line 30");
        let wide = output_view(&format!("x\n{}", "é".repeat(500)));
        assert_eq!(wide.lines[0].chars().count(), SHOWN_LINE_CHARS + 1);
        let plain = output_view("set EVENT_STREAM_MODE=single");
        assert!(plain.lines.is_empty());
        assert_eq!(plain.one_line(), "set EVENT_STREAM_MODE=single");
        assert_eq!(output_view("").headline, "");
    }

    #[test]
    fn outputs_are_bounded_and_redacted() {
        let s = format!(
            "connect postgres://u:hunter2@h/db failed {}",
            "x".repeat(10_000)
        );
        let c = clean_output(&s);
        assert!(c.len() <= MAX_OUTPUT_BYTES, "{}", c.len());
        assert!(c.ends_with("xxx"));
        let c = clean_output("  connect postgres://u:hunter2@h/db failed  ");
        assert_eq!(c, "connect postgres://u:***@h/db failed");
        let multi = "é".repeat(5000);
        assert!(bound_tail(&multi, 100).len() <= 100);
        assert_eq!(shown_value("DB_PASSWORD", "x"), "***");
        assert_eq!(shown_value("EVENT_STREAM_MODE", "single"), "single");
    }
}
