//! The demo and the test harness commands: a disposable replica, a stand-in
//! service, and `check` run against them.
//!
//! Everything here is CLI glue (it returns `anyhow` errors); the replica and
//! the stand-in themselves live in [`crate::testkit::replica`] and [`crate::testkit::standin`].

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};

use crate::atomic_file;
use crate::config::Config;
use crate::render::{self, check::Format};
use crate::testkit::kept::{self, toml_string};
use crate::testkit::replica::{self, HrvEvent, ReplicaNames};
use crate::testkit::standin::{self, StandinOptions};
use crate::verdict::{exit_code, CriterionId, Status};

/// Arguments of `soakwatch demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// NATS server with JetStream.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// A PostgreSQL URL allowed to CREATE DATABASE (the replica gets its own database).
    #[arg(
        long,
        env = "DATABASE_ADMIN_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub admin_database_url: String,
    /// Where the replica's config, env file and log go (default: a new temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Synthetic HRV events to process before the first check.
    #[arg(long, default_value_t = 20)]
    pub events: u64,
    /// Keep the replica afterwards: streams, database, files and a stand-in
    /// left running, with a checks.toml (including `[rollback]`) that passes
    /// `soakwatch check`; the demo prints the `teardown` command that
    /// removes it all.
    #[arg(long)]
    pub keep: bool,
    /// Output format of the two checks.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Length of the compressed soak that follows the checks (48 h scaled
    /// down; checkpoints at half and at the end); 0s skips it.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub soak: Duration,
    /// Where the compressed soak's reports and charts go.
    #[arg(long, default_value = "reports")]
    pub reports_dir: PathBuf,
}

/// Arguments of the hidden `soakwatch standin`.
#[derive(Debug, clap::Args)]
pub struct StandinArgs {
    /// Replica tag: the names of streams, subjects and database derive from it.
    #[arg(long)]
    pub tag: String,
    /// NATS server.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// The replica's database (not the admin one).
    #[arg(long)]
    pub database_url: String,
    /// The service's .env.
    #[arg(long)]
    pub env_file: PathBuf,
    /// The service's log (appended).
    #[arg(long)]
    pub log_file: PathBuf,
    /// Listen address for /metrics and /admin.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// Write the bound address here once listening (lets callers use port 0).
    #[arg(long)]
    pub addr_file: Option<PathBuf>,
}

/// Arguments of `soakwatch-testkit teardown`.
#[derive(Debug, clap::Args)]
pub struct TeardownArgs {
    /// The folder `demo --keep` printed (it holds the replica's manifest).
    pub dir: PathBuf,
}

/// Arguments of the hidden `soakwatch replica`.
#[derive(Debug, clap::Args)]
pub struct ReplicaArgs {
    /// up: provision and write the files; down: remove everything.
    #[arg(value_parser = ["up", "down"])]
    pub action: String,
    /// Replica tag.
    #[arg(long)]
    pub tag: String,
    /// NATS server.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Admin PostgreSQL URL.
    #[arg(
        long,
        env = "DATABASE_ADMIN_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub admin_database_url: String,
    /// Directory for checks.toml, .env and the log (up only).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Metrics URL the stand-in will answer on (written into checks.toml).
    #[arg(long, default_value = "http://127.0.0.1:4102/metrics")]
    pub metrics_url: String,
}

/// Files of a replica on disk.
pub struct ReplicaFiles {
    /// The replica's checks.toml.
    pub config: PathBuf,
    /// The stand-in's .env.
    pub env_file: PathBuf,
    /// The stand-in's log.
    pub log_file: PathBuf,
}

impl ReplicaFiles {
    /// Standard file names inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        ReplicaFiles {
            config: dir.join("checks.toml"),
            env_file: dir.join("normalize-service.env"),
            log_file: dir.join("normalize-service.log"),
        }
    }
}

/// checks.toml for a replica: the shipped Phase B checks with the replica's
/// names, so the demo exercises exactly the shipped criteria.
pub fn replica_config(
    names: &ReplicaNames,
    nats_url: &str,
    database_url: &str,
    metrics_url: &str,
    files: &ReplicaFiles,
    started_at: DateTime<Utc>,
) -> String {
    let q = |s: &str| toml_string(s);
    let list = |v: &[String]| {
        format!(
            "[{}]",
            v.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
        )
    };
    let legacy = &names.legacy_stream;
    let legacy_re = regex::escape(legacy);
    format!(
        r#"# Generated for replica {tag}: the shipped Phase B checks with replica names.
[soak]
name = "demo-replica-{tag}"
started_at = "{started}"
duration = "48h"

[probes]
timeout = "5s"

[nats]
url = {nats}

[streams.legacy]
name = {legacy_q}
subjects = {legacy_subjects}
baseline_messages = 55
baseline_last_seq = 55

[[streams.hot]]
name = {core}
subjects = {core_subjects}
storage = "file"
replicas = 1
max_age = "48h"

[[streams.hot]]
name = {vendor}
subjects = {vendor_subjects}
storage = "file"
replicas = 1
max_age = "48h"

[streams.dlq]
name = {dlq}
subjects = {dlq_subjects}
baseline_messages = 1

[consumer]
stream = {core}
durable = {durable}
filter_subject = {hrv}
ack_policy = "explicit"
ack_wait = "60s"
max_deliver = 5
max_ack_pending = 1000

[metrics]
url = {metrics}
messages_counter = "normalize_hrv_messages_total"
result_label = "result"
success_result = "success"
dlq_result = "dlq"
uncounted_results = ["retry"]
stream_label = "stream"
latency_histogram = "normalize_hrv_processing_duration_seconds"
process_start_metric = "process_start_time_seconds"

[metrics.match]
durable = {durable}

[database]
url = {db}
table = "hrv_data"
created_column = "createdAt"
updated_column = "updatedAt"
recent_window = "10m"

[database.derived]
column = "lnRmssd"
source = "rmssd"
function = "ln"
tolerance = 1e-9
sample_rows = 200

[log]
path = {log}
fallback_patterns = [
  '\b{legacy_re}\b',
  '(?i)\bfall(ing|s)?[ -]?back\b',
  '(?i)consumer on {legacy_re}\b',
  '(?i)bound (to|on) {legacy_re}\b',
  'Stream mode: single',
]
ignore_patterns = ['Stream candidates:']

[service_env]
path = {env}
ack_wait_key = "NORMALIZE_HRV_ACK_WAIT_MS"
ack_wait_unit = "ms"

[service_env.expect]
EVENT_STREAM_MODE = "multi"

[criteria]
lag_warn = 5
lag_fail = 10
redeliveries_warn = 1
redeliveries_fail = 10
success_rate_min = 0.999
p95_max = "500ms"
db_in_flight_tolerance = 5
restart_grace = "5m"
"#,
        tag = names.tag,
        started = started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        nats = q(nats_url),
        legacy_q = q(legacy),
        legacy_subjects = list(&names.legacy_subjects),
        core = q(&names.core_stream),
        core_subjects = list(&names.core_subjects),
        vendor = q(&names.vendor_stream),
        vendor_subjects = list(&names.vendor_subjects),
        dlq = q(&names.dlq_stream),
        dlq_subjects = list(&names.dlq_subjects),
        durable = q(&names.durable),
        hrv = q(&names.hrv_subject),
        metrics = q(metrics_url),
        db = q(database_url),
        log = q(&files.log_file.display().to_string()),
        env = q(&files.env_file.display().to_string()),
    )
}

/// `soakwatch replica up|down`.
pub async fn run_replica(args: ReplicaArgs) -> anyhow::Result<ExitCode> {
    let names = ReplicaNames::new(&args.tag)?;
    let nats = async_nats::connect(&args.nats_url).await.with_context(|| {
        format!(
            "connecting to NATS at {}",
            crate::secret::redact_url(&args.nats_url)
        )
    })?;
    if args.action == "down" {
        replica::teardown(&nats, &args.admin_database_url, &names).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let dir = args.dir.context("--dir is required for `replica up`")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    replica::provision(&nats, &args.admin_database_url, &names).await?;
    let files = ReplicaFiles::in_dir(&dir);
    standin::write_default_env_file(&files.env_file)?;
    let db_url = replica::replica_database_url(&args.admin_database_url, &names)?;
    let text = replica_config(
        &names,
        &args.nats_url,
        &db_url,
        &args.metrics_url,
        &files,
        Utc::now(),
    );
    atomic_file::write_atomic(&files.config, &text)?;
    println!("{}", files.config.display());
    Ok(ExitCode::SUCCESS)
}

/// `soakwatch standin`: runs until SIGINT/SIGTERM.
pub async fn run_standin(args: StandinArgs) -> anyhow::Result<ExitCode> {
    let names = ReplicaNames::new(&args.tag)?;
    let opts = StandinOptions {
        nats_url: args.nats_url,
        database_url: args.database_url,
        names,
        env_file: args.env_file,
        log_file: args.log_file,
        listen: args.listen,
    };
    let bound = standin::bind(opts).await?;
    let addr = bound.local_addr();
    if let Some(f) = &args.addr_file {
        atomic_file::write_atomic(f, &addr.to_string())?;
    }
    eprintln!("stand-in listening on http://{addr}");
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        crate::shutdown::shutdown_signal().await;
        t.cancel();
    });
    bound.run(token).await?;
    Ok(ExitCode::SUCCESS)
}

/// A stand-in child process, killed on drop.
struct StandinChild {
    child: tokio::process::Child,
    addr: String,
}

async fn spawn_standin(
    names: &ReplicaNames,
    nats_url: &str,
    db_url: &str,
    files: &ReplicaFiles,
    dir: &Path,
) -> anyhow::Result<StandinChild> {
    let exe = std::env::current_exe().context("locating the soakwatch binary")?;
    let addr_file = dir.join("standin.addr");
    let _ = std::fs::remove_file(&addr_file);
    let child = tokio::process::Command::new(exe)
        .arg("standin")
        .arg("--tag")
        .arg(&names.tag)
        .arg("--nats-url")
        .arg(nats_url)
        .arg("--database-url")
        .arg(db_url)
        .arg("--env-file")
        .arg(&files.env_file)
        .arg("--log-file")
        .arg(&files.log_file)
        .arg("--addr-file")
        .arg(&addr_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting the stand-in service")?;
    for _ in 0..100 {
        if let Ok(a) = std::fs::read_to_string(&addr_file) {
            if !a.is_empty() {
                return Ok(StandinChild { child, addr: a });
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the stand-in did not start listening within 10 s")
}

async fn success_count(http: &reqwest::Client, metrics_url: &str, result: &str) -> f64 {
    let Ok(resp) = http.get(metrics_url).send().await else {
        return -1.0;
    };
    let Ok(body) = resp.text().await else {
        return -1.0;
    };
    let expo = crate::promtext::parse(&body);
    expo.sum(
        "normalize_hrv_messages_total",
        &[("result".to_string(), result.to_string())],
    )
    .unwrap_or(0.0)
}

async fn wait_for_count(
    http: &reqwest::Client,
    url: &str,
    result: &str,
    want: f64,
) -> anyhow::Result<()> {
    for _ in 0..200 {
        if success_count(http, url, result).await >= want {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the stand-in did not process the events within 10 s")
}

/// `soakwatch-testkit teardown <dir>`.
pub async fn run_teardown(args: TeardownArgs) -> anyhow::Result<ExitCode> {
    kept::teardown(&args.dir).await?;
    println!("== Demo replica removed");
    Ok(ExitCode::SUCCESS)
}

/// `soakwatch demo`.
pub async fn run_demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let names = ReplicaNames::random();
    let (dir, owns_dir) = match &args.dir {
        Some(d) => (d.clone(), !d.exists()),
        None => (
            std::env::temp_dir().join(format!("soakwatch-demo-{}", names.tag)),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let nats = async_nats::connect(&args.nats_url).await.with_context(|| {
        format!(
            "connecting to NATS at {}",
            crate::secret::redact_url(&args.nats_url)
        )
    })?;
    println!(
        "== Provisioning a replica of the Phase B topology (tag {})",
        names.tag
    );
    println!(
        "   streams {}, {}, {}, {}; database {}; files in {}",
        names.legacy_stream,
        names.core_stream,
        names.vendor_stream,
        names.dlq_stream,
        names.database,
        dir.display()
    );
    if args.keep {
        // Before anything exists, so even a demo that fails halfway can be torn down.
        kept::Manifest {
            tag: names.tag.clone(),
            nats_url: args.nats_url.clone(),
            admin_database_url: args.admin_database_url.clone(),
            owns_dir,
            reports_dir: args.reports_dir.clone(),
        }
        .write(&dir)?;
    }
    replica::provision(&nats, &args.admin_database_url, &names).await?;
    let result = demo_body(&args, &names, &nats, &dir).await;
    if args.keep {
        if let Err(e) = keep_replica(&args, &names, &nats, &dir).await {
            eprintln!("keeping the replica: {e:#}");
        }
        print_kept(&dir);
        return result;
    }
    if let Err(e) = replica::teardown(&nats, &args.admin_database_url, &names).await {
        eprintln!("teardown failed: {e}");
    } else {
        println!("== Replica removed (use --keep to keep it)");
    }
    if owns_dir {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// What `--keep` leaves: the stand-in running detached (started by the
/// restart script the `[rollback]` section names), and checks.toml for it.
async fn keep_replica(
    args: &DemoArgs,
    names: &ReplicaNames,
    nats: &async_nats::Client,
    dir: &Path,
) -> anyhow::Result<()> {
    let files = ReplicaFiles::in_dir(dir);
    if !files.env_file.exists() {
        standin::write_default_env_file(&files.env_file)?;
    }
    let service = kept::ServiceFiles {
        env_file: &files.env_file,
        log_file: &files.log_file,
    };
    let db_url = replica::replica_database_url(&args.admin_database_url, names)?;
    let standin = kept::start_kept_standin(names, &args.nats_url, &db_url, service, dir).await?;
    let metrics_url = format!("http://{}/metrics", standin.addr);
    // T0 after the kept stand-in started: its start is no restart during the soak.
    let base = replica_config(
        names,
        &args.nats_url,
        &db_url,
        &metrics_url,
        &files,
        Utc::now(),
    );
    let dlq = kept::dlq_state(nats, names).await?;
    let text = kept::kept_config(&base, names, service, dir, dlq);
    atomic_file::write_atomic(&files.config, &text)?;
    Config::load(&files.config)
        .with_context(|| format!("the kept config {} does not load", files.config.display()))?;
    println!(
        "\n== Replica kept in {}\n   stand-in normalize-service running detached: pid {} (in {}), {metrics_url}",
        dir.display(),
        standin.pid,
        dir.join(kept::PID_FILE).display()
    );
    Ok(())
}

/// The commands for a kept replica, with the binaries' real paths.
fn print_kept(dir: &Path) {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("soakwatch-testkit"));
    let soakwatch = Some(exe.with_file_name("soakwatch"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("soakwatch"));
    let w = |p: &Path| kept::shell_word(&p.display().to_string());
    let config = w(&dir.join("checks.toml"));
    println!(
        "   check it:       {} check --config {config}\n   rollback plan:  {} rollback --dry-run --config {config}\n   restart it:     sh {}\n   remove it all (stand-in, streams, consumer, database, this folder):\n     {} teardown {}",
        w(&soakwatch),
        w(&soakwatch),
        w(&dir.join(kept::RESTART_SCRIPT)),
        w(&exe),
        w(dir),
    );
}

async fn demo_body(
    args: &DemoArgs,
    names: &ReplicaNames,
    nats: &async_nats::Client,
    dir: &Path,
) -> anyhow::Result<ExitCode> {
    let files = ReplicaFiles::in_dir(dir);
    standin::write_default_env_file(&files.env_file)?;
    let db_url = replica::replica_database_url(&args.admin_database_url, names)?;
    let mut standin = spawn_standin(names, &args.nats_url, &db_url, &files, dir).await?;
    let metrics_url = format!("http://{}/metrics", standin.addr.trim());
    let text = replica_config(
        names,
        &args.nats_url,
        &db_url,
        &metrics_url,
        &files,
        Utc::now(),
    );
    atomic_file::write_atomic(&files.config, &text)?;
    let cfg = Config::load(&files.config)?;

    let js = async_nats::jetstream::new(nats.clone());
    let http = crate::probe::metrics::http_client(Duration::from_secs(5))?;
    println!(
        "== Publishing {} synthetic HRV events to {}",
        args.events, names.hrv_subject
    );
    for n in 0..args.events {
        replica::publish_hrv(&js, &names.hrv_subject, &HrvEvent::synthetic(n, &names.tag)).await?;
    }
    wait_for_count(&http, &metrics_url, "success", args.events as f64).await?;

    // A trickle of traffic during each check's window, like a live service.
    let trickle = |start: u64| {
        let js = js.clone();
        let subject = names.hrv_subject.clone();
        let tag = names.tag.clone();
        tokio::spawn(async move {
            for n in start..start + 8 {
                let _ = replica::publish_hrv(&js, &subject, &HrvEvent::synthetic(n, &tag)).await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    println!("\n== Check 1: the healthy replica");
    let t = trickle(1_000);
    let healthy = crate::check::run(cfg.clone(), Duration::from_secs(2)).await?;
    let _ = t.await;
    print!("{}", render::check::render(&healthy, args.format));

    println!("\n== Injecting a poison HRV event (rMSSD = -1): the service dead-letters it");
    replica::publish_hrv(
        &js,
        &names.hrv_subject,
        &HrvEvent::poison(9_999, &names.tag),
    )
    .await?;
    wait_for_count(&http, &metrics_url, "dlq", 1.0).await?;

    println!("\n== Check 2: after the DLQ'd message");
    let t = trickle(2_000);
    let faulty = crate::check::run(cfg, Duration::from_secs(2)).await?;
    let _ = t.await;
    print!("{}", render::check::render(&faulty, args.format));

    let _ = standin.child.start_kill();
    let _ = standin.child.wait().await;

    if !args.soak.is_zero() {
        // A fresh service process (counters from zero) for the soak.
        let standin = spawn_standin(names, &args.nats_url, &db_url, &files, dir).await?;
        let soak_url = format!("http://{}/metrics", standin.addr.trim());
        let result = compressed_soak(args, names, &js, &db_url, &soak_url, &files, dir).await;
        drop(standin);
        result?;
    }

    let dlq_failed = faulty
        .verdicts
        .iter()
        .any(|v| v.id == CriterionId::Dlq && v.status == Status::Fail);
    println!(
        "\n== Demo result: healthy check {} (exit {}), after the fault {} (exit {}), dlq {}",
        healthy.overall().as_str(),
        exit_code(healthy.overall()),
        faulty.overall().as_str(),
        exit_code(faulty.overall()),
        if dlq_failed {
            "failed as it should"
        } else {
            "DID NOT FAIL"
        }
    );
    Ok(if healthy.overall() == Status::Pass && dlq_failed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The soak, compressed: the replica's checks with 48 h scaled down to
/// `args.soak`, sampled every half second, a DLQ'd message at 60 %, and the
/// two checkpoint reports (with charts) written to `args.reports_dir`.
async fn compressed_soak(
    args: &DemoArgs,
    names: &ReplicaNames,
    js: &async_nats::jetstream::Context,
    db_url: &str,
    metrics_url: &str,
    files: &ReplicaFiles,
    dir: &Path,
) -> anyhow::Result<()> {
    let soak = args.soak;
    let interval = Duration::from_millis(500);
    // Relative to where the demo runs (the config lives in the replica's
    // temporary folder, which the teardown removes).
    let reports = std::env::current_dir()
        .map(|d| d.join(&args.reports_dir))
        .unwrap_or_else(|_| args.reports_dir.clone())
        .join(format!("demo-{}", names.tag));
    let state = dir.join("soak-state.sqlite");
    // The DLQ already holds the checks' poison message: let the soak record
    // its own DLQ baseline at T0 instead of the seed's 1.
    let mut base = replica_config(
        names,
        &args.nats_url,
        db_url,
        metrics_url,
        files,
        Utc::now(),
    )
    .replace(
        "duration = \"48h\"",
        &format!("duration = \"{}\"", humantime::format_duration(soak)),
    );
    if let Some(dlq_at) = base.find("[streams.dlq]") {
        if let Some(rel) = base[dlq_at..].find("baseline_messages = 1\n") {
            base.replace_range(
                dlq_at + rel..dlq_at + rel + "baseline_messages = 1\n".len(),
                "",
            );
        }
    }
    let text = format!(
        "{base}\n[watch]\ninterval = \"500ms\"\nmax_gap = \"2s\"\nrecover_after = \"2s\"\nstate = {}\nreports_dir = {}\ncheckpoints = [\"{}\", \"{}\"]\nlisten = \"\"\nat_end = \"exit\"\n\n[watch.for]\ndlq = \"3s\"\ndb_writes = \"5s\"\n",
        toml_string(&state.display().to_string()),
        toml_string(&reports.display().to_string()),
        humantime::format_duration(soak / 2),
        humantime::format_duration(soak),
    );
    let path = dir.join("checks-soak.toml");
    atomic_file::write_atomic(&path, &text)?;
    let cfg = Config::load(&path)?;
    println!(
        "\n== Compressed soak: 48 h scaled to {}, a sample every {:?}, checkpoints at {} and {}; a poison event at 60 %",
        humantime::format_duration(soak),
        interval,
        humantime::format_duration(soak / 2),
        humantime::format_duration(soak)
    );
    let feeder = {
        let js = js.clone();
        let subject = names.hrv_subject.clone();
        let tag = names.tag.clone();
        tokio::spawn(async move {
            let start = std::time::Instant::now();
            let mut n = 50_000;
            let mut poisoned = false;
            while start.elapsed() < soak {
                let _ = replica::publish_hrv(&js, &subject, &HrvEvent::synthetic(n, &tag)).await;
                n += 1;
                if !poisoned && start.elapsed() >= soak.mul_f64(0.6) {
                    let _ = replica::publish_hrv(&js, &subject, &HrvEvent::poison(n, &tag)).await;
                    poisoned = true;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let prober = crate::probe::Prober::new(cfg.clone())?;
    let watch = crate::watch::Watch::open(cfg, crate::watch::SharedStatus::default()).await?;
    let summary = watch
        .run(
            &prober,
            &crate::watch::SystemClock,
            // The daemon ends the soak itself at T0 + duration: the final
            // cycle, the frozen verdict, the sign-off report.
            crate::watch::StartOptions::default(),
            tokio_util::sync::CancellationToken::new(),
        )
        .await?;
    feeder.abort();
    println!(
        "   {} samples; verdict {} ({}); {} incident(s)",
        summary.samples,
        summary.verdict.as_str().to_uppercase(),
        summary.verdict_reason,
        summary.incidents.len()
    );
    match &summary.edges.ended {
        Some(end) => println!(
            "   signed off at {} (T0 + {}): {} — the verdict is frozen",
            end.at.format("%H:%M:%S"),
            humantime::format_duration(soak),
            crate::watch::signoff::verdict_words(end.verdict)
        ),
        None => println!("   the soak did not reach its end"),
    }
    for i in &summary.incidents {
        println!(
            "   incident {}: {} .. {} peak {}",
            i.criterion.as_str(),
            i.start.format("%H:%M:%S"),
            i.end.format("%H:%M:%S"),
            i.peak
                .map(crate::render::number::human_number)
                .unwrap_or_else(|| "-".into())
        );
    }
    println!("   reports and charts in {}:", reports.display());
    let mut listing: Vec<String> = std::fs::read_dir(&reports)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    listing.sort();
    for f in listing.iter().filter(|f| f.ends_with(".md")) {
        println!("     {f}");
    }
    Ok(())
}
