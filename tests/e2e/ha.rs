//! The soak's state on JetStream and watchers as replicas: `report`,
//! `check --soak` and `rollback --dry-run` on a JetStream state, the
//! migration of a SQLite soak, and a real 3-node JetStream cluster (R3)
//! holding the state of two watchers: the leader SIGKILLed, a NATS node
//! killed, the leader cut off from the cluster.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn soak_id(body: &str) -> Option<String> {
    soakwatch::promtext::parse(body)
        .select("soakwatch_soak_info", &[])
        .find_map(|s| s.label("id").map(str::to_string))
        .filter(|s| !s.is_empty())
}

fn gauge(body: &str, name: &str) -> Option<f64> {
    soakwatch::promtext::parse(body).sum(name, &[])
}

/// The `[state]` section of a JetStream state in `bucket` at `urls`.
fn state_section(urls: &str, bucket: &str, replicas: usize) -> String {
    format!(
        "\n[state]\nbackend = \"jetstream\"\nnats_url = \"{urls}\"\nbucket = \"{bucket}\"\n\
         replicas = {replicas}\nlease_intervals = 3\nrequest_timeout = \"800ms\"\n"
    )
}

/// Removes a state's bucket and streams (the test's names only).
async fn drop_state(url: &str, bucket: &str) {
    let Ok(Ok(c)) = tokio::time::timeout(secs(5), async_nats::connect(url)).await else {
        return;
    };
    let js = async_nats::jetstream::new(c);
    let _ = js.delete_key_value(bucket).await;
    let _ = js.delete_stream(format!("{bucket}_cycles")).await;
    let _ = js.delete_stream(format!("{bucket}_snapshots")).await;
}

/// (messages, bytes) of the state's cycle stream (duplicates included).
async fn cycles_in_stream(url: &str, bucket: &str) -> (u64, u64) {
    let c = async_nats::connect(url).await.expect("state NATS");
    let js = async_nats::jetstream::new(c);
    let mut s = js
        .get_stream(format!("{bucket}_cycles"))
        .await
        .expect("cycles stream");
    let st = &s.info().await.expect("stream info").state;
    (st.messages, st.bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn jetstream_state_is_read_by_report_check_and_rollback_and_a_sqlite_soak_migrates() {
    let r = Replica::healthy(3).await;
    let w = r.add_watch_section("");
    let bucket = format!("swt_{}", r.names.tag);
    let url = nats_url();

    // A SQLite soak first (the embedded default), stopped cleanly.
    let mut d = r.start_daemon("sqlite");
    let body = d.wait_cycles(3, secs(30)).await;
    let id = soak_id(&body).expect("soak id");
    d.signal("TERM");
    assert_eq!(d.wait_exit(secs(15)).await, 0, "{}", d.stderr());
    let before = check_soak(&r.config).await.json()["soak"].clone();

    // Copied into JetStream, the same soak is what every reader sees.
    r.edit_config(|t| t + &state_section(&url, &bucket, 1));
    let config = r.config.display().to_string();
    let run = run_bin(&["state", "migrate", "--config", &config], &[]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(&format!("copied soak {id}")),
        "{}",
        run.stdout
    );
    let again = run_bin(&["state", "migrate", "--config", &config], &[]).await;
    assert_eq!(again.code, 2, "a second copy is refused: {}", again.stdout);
    let after = check_soak(&r.config).await;
    assert_eq!(
        after.json()["soak"],
        before,
        "{}{}",
        after.stdout,
        after.stderr
    );

    // The daemon on JetStream resumes that soak (not a new one) and records.
    std::fs::remove_file(&w.state).expect("the SQLite file is not needed any more");
    let mut d = r.start_daemon("jetstream");
    let body = d.wait_cycles(3, secs(40)).await;
    assert_eq!(soak_id(&body).as_deref(), Some(id.as_str()), "{body}");
    assert_eq!(gauge(&body, "soakwatch_leader"), Some(1.0), "{body}");
    // A migration beside a leader is refused before it writes anything.
    let beside = run_bin(&["state", "migrate", "--config", &config], &[]).await;
    assert_eq!(beside.code, 2, "{}{}", beside.stdout, beside.stderr);
    assert!(
        beside
            .stderr
            .contains("holds the lease of this JetStream state"),
        "{}",
        beside.stderr
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(secs(15)).await, 0, "{}", d.stderr());
    assert!(!w.state.exists(), "a JetStream state writes no SQLite file");

    let run = check_soak(&r.config).await;
    assert!(
        run.json()["soak"].as_str().unwrap_or("").contains(&id),
        "{}{}",
        run.stdout,
        run.stderr
    );
    let run = run_bin(&["report", "--config", &config], &[]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(read(Path::new(run.stdout.trim())).contains(&id));
    let run = run_bin(&["rollback", "--dry-run", "--config", &config], &[]).await;
    assert!(
        run.stdout.contains(&format!("latch: free for soak {id}"))
            || run.stderr.contains("no [rollback] section"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    let (n, bytes) = cycles_in_stream(&url, &bucket).await;
    assert!(n >= 6, "{n} cycle records");
    eprintln!(
        "cycle records on JetStream: {n}, {} bytes each on average",
        bytes / n
    );
    drop_state(&url, &bucket).await;
}

/// One node of a local JetStream cluster.
struct Node {
    port: u16,
    _port: ReservedPort,
    _cluster_port: ReservedPort,
    cluster_port: u16,
    name: String,
    dir: PathBuf,
    child: Option<std::process::Child>,
}

/// Three `nats-server -js` processes routed to each other on loopback.
struct Cluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut nodes: Vec<Node> = (0..3)
            .map(|i| {
                let (p, c) = (ReservedPort::new(), ReservedPort::new());
                Node {
                    port: p.port(),
                    cluster_port: c.port(),
                    _port: p,
                    _cluster_port: c,
                    name: format!("n{i}"),
                    dir: dir.path().join(format!("n{i}")),
                    child: None,
                }
            })
            .collect();
        let routes: Vec<String> = nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.cluster_port))
            .collect();
        for n in &mut nodes {
            std::fs::create_dir_all(&n.dir).expect("node dir");
            let log = std::fs::File::create(n.dir.join("log")).expect("log");
            let child =
                std::process::Command::new(if Path::new("/usr/sbin/nats-server").exists() {
                    "/usr/sbin/nats-server"
                } else {
                    "nats-server"
                })
                .args([
                    "-js",
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &n.port.to_string(),
                    "-n",
                    &n.name,
                ])
                .arg("-sd")
                .arg(n.dir.join("store"))
                .args(["--cluster_name", "swha"])
                .arg("--cluster")
                .arg(format!("nats://127.0.0.1:{}", n.cluster_port))
                .arg("--routes")
                .arg(routes.join(","))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .expect("nats-server starts");
            n.child = Some(child);
        }
        let c = Cluster { nodes, _dir: dir };
        c.wait_ready().await;
        c
    }

    fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    fn urls(&self) -> String {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].child.is_some())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Until an R3 stream can be created (routes up, a meta leader elected).
    async fn wait_ready(&self) {
        let deadline = Instant::now() + secs(30);
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(Ok(c)) = tokio::time::timeout(secs(2), async_nats::connect(self.url(0))).await
            {
                let js = async_nats::jetstream::new(c);
                let cfg = async_nats::jetstream::stream::Config {
                    name: "ready_probe".into(),
                    subjects: vec!["ready.probe".into()],
                    num_replicas: 3,
                    ..Default::default()
                };
                match tokio::time::timeout(secs(5), js.create_stream(cfg)).await {
                    Ok(Ok(_)) => {
                        let _ = js.delete_stream("ready_probe").await;
                        return;
                    }
                    Ok(Err(e)) => last = e.to_string(),
                    Err(_) => last = "no answer".into(),
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!(
            "JetStream cluster not ready within 30 s ({last}): {}",
            std::fs::read_to_string(self.nodes[0].dir.join("log")).unwrap_or_default()
        );
    }

    fn signal(&self, i: usize, sig: &str) {
        if let Some(c) = &self.nodes[i].child {
            send_signal(c.id(), sig);
        }
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.signal(i, "CONT");
            self.kill(i);
        }
    }
}

/// The index of the node that leads `stream` (its Raft group), if known.
async fn stream_leader(cluster: &Cluster, stream: &str) -> Option<usize> {
    let c = async_nats::connect(cluster.urls()).await.ok()?;
    let js = async_nats::jetstream::new(c);
    let mut st = js.get_stream(stream).await.ok()?;
    let info = st.info().await.ok()?;
    let leader = info.cluster.as_ref()?.leader.clone()?;
    leader.strip_prefix('n')?.parse().ok()
}

/// (leader?, cycles by this process) of a watcher, None while it does not answer.
async fn role(d: &Daemon) -> Option<(bool, f64)> {
    let body = d.metrics().await?;
    Some((
        gauge(&body, "soakwatch_leader")? == 1.0,
        gauge(&body, "soakwatch_cycles_total").unwrap_or(0.0),
    ))
}

/// Waits until exactly one of `ds` leads and has sampled; its index.
async fn one_leader(ds: &mut [&mut Daemon], timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let mut leaders = Vec::new();
        for (i, d) in ds.iter_mut().enumerate() {
            d.assert_running("while electing a leader");
            if let Some((true, cycles)) = role(d).await {
                if cycles >= 1.0 {
                    leaders.push(i);
                }
            }
        }
        if leaders.len() == 1 {
            return leaders[0];
        }
        assert!(leaders.len() < 2, "two leaders at once: {leaders:?}");
        if Instant::now() > deadline {
            let errs: Vec<String> = ds.iter().map(|d| d.stderr()).collect();
            panic!("no leader within {timeout:?}\n{}", errs.join("\n-----\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A 3-node cluster holds the state at R3; two watchers share it.
async fn two_watchers(extra_state: impl Fn(&Cluster) -> String) -> (Cluster, Replica, String) {
    let cluster = Cluster::start().await;
    let r = Replica::healthy(3).await;
    r.add_watch_section("");
    let bucket = format!("swha_{}", r.names.tag);
    let section = extra_state(&cluster);
    r.edit_config(|t| t + &state_section(&cluster.urls(), &bucket, 3) + &section);
    (cluster, r, bucket)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_of_the_leader_hands_over_within_the_lease_and_a_nats_node_may_die() {
    let (mut cluster, r, bucket) = two_watchers(|_| String::new()).await;
    let mut a = r.start_daemon("a");
    let mut b = r.start_daemon("b");
    let leader = one_leader(&mut [&mut a, &mut b], secs(40)).await;
    let (mut old, mut new) = if leader == 0 { (a, b) } else { (b, a) };
    let body = old.wait_cycles(3, secs(30)).await;
    let id = soak_id(&body).expect("soak id");
    // The standby samples (and discards) each interval: its connections to
    // NATS, the service and the database are open and proven.
    let mut health = None;
    for _ in 0..100 {
        health = new.get("/healthz").await;
        if health
            .as_ref()
            .is_some_and(|(_, t)| t.contains("every probe answers"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, text) = health.expect("standby /healthz");
    assert_eq!(code, 200, "{text}");
    assert!(text.starts_with("standby"), "{text}");
    assert!(text.contains("every probe answers"), "{text}");

    // SIGKILL: no clean hand-over; the standby waits the lease out (3 s).
    old.signal("KILL");
    let killed = Instant::now();
    let _ = old.wait_exit(secs(10)).await;
    let body = new.wait_cycles(1, secs(30)).await;
    let took = killed.elapsed();
    eprintln!(
        "takeover after SIGKILL: {:.2} s (lease 3 s, interval 1 s)",
        took.as_secs_f64()
    );
    assert_eq!(gauge(&body, "soakwatch_leader"), Some(1.0), "{body}");
    assert_eq!(
        soak_id(&body).as_deref(),
        Some(id.as_str()),
        "the same soak goes on: {body}"
    );
    // Lease + one interval, plus the first cycle's probes and the poll here.
    assert!(took < secs(3 + 1 + 6), "takeover took {took:?}");

    // The node that leads the state's KV stream dies: the R3 state keeps
    // its quorum and elects another stream leader. Sampling never waits on
    // the state (the recorder queues; a cycle's other state reads are
    // bounded by `request_timeout`), so no cycle is slow; if the election
    // outlasts the fence (2 s here), the leader cannot prove its lease and
    // steps down, as it must, and leads again one lease later.
    let kv_leader = stream_leader(&cluster, &format!("KV_{bucket}")).await;
    let before = gauge(
        &new.metrics().await.expect("metrics"),
        "soakwatch_cycles_total",
    )
    .unwrap_or(0.0);
    let victim = kv_leader.unwrap_or(2);
    let log_before = new.stderr().len();
    cluster.kill(victim);
    let killed = Instant::now();
    let (mut last, mut last_at, mut stall) = (before, Instant::now(), Duration::ZERO);
    while killed.elapsed() < secs(25) {
        if let Some(n) = new
            .metrics()
            .await
            .and_then(|b| gauge(&b, "soakwatch_cycles_total"))
        {
            if n > last {
                stall = stall.max(last_at.elapsed());
                (last, last_at) = (n, Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stall = stall.max(last_at.elapsed());
    let after_kill = new
        .stderr()
        .get(log_before..)
        .unwrap_or_default()
        .to_string();
    let slowest_ms = after_kill
        .lines()
        .filter(|l| l.contains("cycle done"))
        .filter_map(|l| {
            l.split("took_ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    let stepped_down = after_kill.contains("stepping down");
    eprintln!(
        "KV stream leader n{victim} killed: longest time without a cycle {:.2} s, slowest cycle {slowest_ms} ms, {} cycles in 25 s, stepped down: {stepped_down} (interval 1 s, lease 3 s)",
        stall.as_secs_f64(),
        last - before
    );
    assert!(
        slowest_ms < 2_500,
        "a cycle waited {slowest_ms} ms on the state\n{after_kill}"
    );
    let bound = if stepped_down { secs(14) } else { secs(3) };
    assert!(
        stall < bound,
        "sampling stalled {stall:?} (stepped down: {stepped_down})\n{after_kill}"
    );
    assert!(
        last - before >= 12.0,
        "cycles went on: {} in 25 s\n{after_kill}",
        last - before
    );
    let body = new.metrics().await.expect("metrics");
    assert_eq!(gauge(&body, "soakwatch_leader"), Some(1.0), "{body}");
    new.signal("TERM");
    assert_eq!(new.wait_exit(secs(20)).await, 0, "{}", new.stderr());

    // The record: one soak, read from the cluster.
    let mut run = check_soak(&r.config).await;
    for _ in 0..5 {
        if run.code != 3 {
            break;
        }
        eprintln!("check --soak: {}", run.stderr);
        tokio::time::sleep(secs(2)).await;
        run = check_soak(&r.config).await;
    }
    assert!(
        run.json()["soak"].as_str().unwrap_or("").contains(&id),
        "{}{}",
        run.stdout,
        run.stderr
    );
    drop_state(&cluster.url(0), &bucket).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_cut_off_from_the_cluster_steps_down_and_never_acts_beside_the_new_one() {
    let (cluster, r, bucket) = two_watchers(|_| String::new()).await;
    // The leader talks to node 0 only, the standby to nodes 1 and 2.
    let leader_cfg = r.path("leader.toml");
    let standby_cfg = r.path("standby.toml");
    let text = read(&r.config);
    let all = cluster.urls();
    std::fs::write(&leader_cfg, text.replace(&all, &cluster.url(0))).expect("config");
    std::fs::write(
        &standby_cfg,
        text.replace(&all, &format!("{},{}", cluster.url(1), cluster.url(2))),
    )
    .expect("config");
    let mut a = Daemon::start(&leader_cfg, &[], r.dir.path(), "cut-a");
    a.wait_cycles(2, secs(40)).await;
    let mut b = Daemon::start(&standby_cfg, &[], r.dir.path(), "cut-b");
    tokio::time::sleep(secs(2)).await;
    assert_eq!(
        role(&b).await.map(|r| r.0),
        Some(false),
        "b waits as standby"
    );

    // Node 0 frozen: the leader's connection hangs, it cannot renew.
    cluster.signal(0, "STOP");
    let cut = Instant::now();
    let mut stepped_down = None;
    let mut took_over = None;
    while cut.elapsed() < secs(30) && (stepped_down.is_none() || took_over.is_none()) {
        a.assert_running("while cut off");
        let ra = role(&a).await;
        let rb = role(&b).await;
        if stepped_down.is_none() && ra.is_some_and(|r| !r.0) {
            stepped_down = Some(cut.elapsed());
        }
        if took_over.is_none() && rb.is_some_and(|r| r.0) {
            took_over = Some(cut.elapsed());
        }
        // Never both at once, as far as either says.
        assert!(
            !(ra.is_some_and(|r| r.0) && rb.is_some_and(|r| r.0)),
            "two leaders: a {ra:?}, b {rb:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (Some(down), Some(up)) = (stepped_down, took_over) else {
        panic!(
            "stepped down {stepped_down:?}, took over {took_over:?}\n{}\n-----\n{}",
            a.stderr(),
            b.stderr()
        );
    };
    eprintln!("cut off: old leader stepped down after {down:?}, new leader after {up:?}");
    assert!(
        down <= up,
        "the old leader stepped down ({down:?}) before the takeover ({up:?})"
    );
    b.wait_cycles(3, secs(30)).await;
    cluster.signal(0, "CONT");
    // Node 0 rejoins (its streams catch up, leaders may move, a renewal may
    // miss and its leader step down): never two leaders, and one again.
    let rejoin = Instant::now();
    let mut leaders_now = 0;
    while rejoin.elapsed() < secs(30) {
        let ra = role(&a).await.is_some_and(|r| r.0);
        let rb = role(&b).await.is_some_and(|r| r.0);
        assert!(!(ra && rb), "two leaders after the rejoin");
        leaders_now = usize::from(ra) + usize::from(rb);
        if leaders_now == 1 && rejoin.elapsed() > secs(4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(leaders_now, 1, "{}\n-----\n{}", a.stderr(), b.stderr());
    // Node 0 applied whatever it held when it resumed: no cycle the cut-off
    // leader sent before its fence closed landed inside the new term (it
    // would be stored after the new leader's records, stamped before them).
    let times = cycle_times_in_stream_order(&cluster.url(1), &bucket).await;
    assert!(times.len() >= 5, "{times:?}");
    for w in times.windows(2) {
        assert!(
            w[0] <= w[1],
            "a cycle stamped {} was stored after one stamped {}: a deposed leader's write landed in the next term\n{}\n-----\n{}",
            w[1],
            w[0],
            a.stderr(),
            b.stderr()
        );
    }
    drop_state(&cluster.url(1), &bucket).await;
}

/// The times of the cycle records in a state's cycle stream, in the order
/// the server stored them (term markers, which are empty, left out). Read
/// again while the cluster answers "temporarily unavailable" (a stream
/// leader being elected after a node rejoined).
async fn cycle_times_in_stream_order(
    url: &str,
    bucket: &str,
) -> Vec<chrono::DateTime<chrono::Utc>> {
    let c = async_nats::connect(url).await.expect("state NATS");
    let js = async_nats::jetstream::new(c);
    let mut last_error = String::new();
    for _ in 0..30 {
        let Ok(mut s) = js.get_stream(format!("{bucket}_cycles")).await else {
            tokio::time::sleep(secs(1)).await;
            continue;
        };
        let Ok(info) = s.info().await else {
            tokio::time::sleep(secs(1)).await;
            continue;
        };
        let st = info.state.clone();
        let mut out = Vec::new();
        let mut complete = true;
        for seq in st.first_sequence..=st.last_sequence {
            match s.get_raw_message(seq).await {
                Ok(m) if m.payload.is_empty() => {}
                Ok(m) => {
                    let rec: soakwatch::soak::record::CycleRecord =
                        rmp_serde::from_slice(&m.payload).expect("a cycle record");
                    out.push(rec.at);
                }
                Err(e) => {
                    last_error = e.to_string();
                    complete = false;
                    break;
                }
            }
        }
        if complete {
            return out;
        }
        tokio::time::sleep(secs(1)).await;
    }
    panic!("the cycle stream could not be read within 30 s: {last_error}");
}

/// An HTTP receiver that counts every delivery per `X-Soakwatch-Id`.
async fn counting_receiver() -> (
    std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u32>>>,
    u16,
) {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    type Seen = std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u32>>>;
    async fn handle(State(seen): State<Seen>, headers: HeaderMap) -> StatusCode {
        let id = headers
            .get("x-soakwatch-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if let Ok(mut s) = seen.lock() {
            *s.entry(id).or_default() += 1;
        }
        StatusCode::OK
    }
    let seen: Seen = Default::default();
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(seen.clone());
    let port = serve_loopback(app).await.port();
    (seen, port)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_in_flight_at_a_failover_runs_once_and_no_notification_is_sent_twice() {
    let (seen, port) = counting_receiver().await;
    let (cluster, mut r, bucket) = two_watchers(|_| String::new()).await;
    let runs = r.path("rollback-runs");
    let script = r.path("restart.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho run >> {}\nsleep 6\n", runs.display()),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    r.edit_config(|t| {
        t + &format!(
            "\n[[alerts.routes]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\n\
             \n[rollback]\nmode = \"armed\"\nenv_file = {env}\nrestart_command = [{script}]\n\
             log_file = {log}\nexpect_log_lines = []\nrestart_timeout = \"30s\"\n\
             \n[rollback.triggers]\nservice_up = \"0s\"\n",
            env = toml_path(&r.files.env_file),
            script = toml_path(&script),
            log = toml_path(&r.files.log_file),
        )
    });
    let mut a = r.start_daemon("rb-a");
    let mut b = r.start_daemon("rb-b");
    let leader = one_leader(&mut [&mut a, &mut b], secs(40)).await;
    let (mut old, mut new) = if leader == 0 { (a, b) } else { (b, a) };
    old.wait_cycles(3, secs(30)).await;

    // The service dies: the trigger holds, the leader takes the latch and
    // runs the restart; it is SIGKILLed while the restart runs.
    r.kill_standin().await;
    let deadline = Instant::now() + secs(30);
    while !runs.exists() {
        assert!(
            Instant::now() < deadline,
            "no rollback ran\n{}",
            old.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    old.signal("KILL");
    let _ = old.wait_exit(secs(10)).await;
    let old_log = old.stderr();

    // The new leader reports the interrupted rollback and never runs it again.
    new.wait_cycles(5, secs(40)).await;
    tokio::time::sleep(secs(8)).await;
    assert_eq!(
        read(&runs).lines().count(),
        1,
        "the rollback ran more than once\n--- old ---\n{old_log}\n--- new ---\n{}",
        new.stderr()
    );
    let cfg = soakwatch::config::Config::load(&r.config).expect("config");
    let (_, s) = soakwatch::watch::load_summary(&cfg).await.expect("state");
    let rb = s.rollback.expect("the rollback is recorded");
    assert_eq!(rb.state.as_str(), "interrupted", "{rb:?}\n{}", new.stderr());
    assert!(
        new.stderr().contains("interrupted rollback was found"),
        "{}",
        new.stderr()
    );

    // Every notification at most twice; only one in flight at the kill may be.
    let counts = seen.lock().expect("lock").clone();
    assert!(!counts.is_empty(), "no notification arrived");
    assert!(counts.values().all(|n| *n <= 2), "{counts:?}");
    assert!(
        counts.values().filter(|n| **n == 2).count() <= 1,
        "{counts:?}"
    );
    assert!(
        counts.keys().any(|k| k.contains("rollback")),
        "the rollback's notification: {counts:?}"
    );
    eprintln!("deliveries per notification id: {counts:?}");
    if counts.keys().any(|k| k.contains("soakwatch_self")) {
        eprintln!(
            "--- old leader ---\n{old_log}\n--- new leader ---\n{}",
            new.stderr()
        );
    }
    new.signal("TERM");
    let _ = new.wait_exit(secs(20)).await;
    drop_state(&cluster.url(0), &bucket).await;
}

/// A CA and a server certificate for 127.0.0.1, written by openssl(1) into `dir`.
fn tls_files(dir: &Path) {
    let sh = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let subj_ca = "/CN=soakwatch test CA";
    sh(&[
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", subj_ca,
    ]);
    sh(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    sh(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_on_its_own_tls_nats_is_reached_with_its_ca_and_refused_without() {
    let dir = tempfile::tempdir().expect("tempdir");
    tls_files(dir.path());
    let mut server = tokio::process::Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", "-1", "--tls"])
        .arg("--tlscert")
        .arg(dir.path().join("server.pem"))
        .arg("--tlskey")
        .arg(dir.path().join("server.key"))
        .arg("--ports_file_dir")
        .arg(dir.path())
        .arg("-sd")
        .arg(dir.path().join("js"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("nats-server starts");
    let pid = server.id().expect("pid");
    let port = NatsServer::read_port(dir.path(), pid).await;

    let r = Replica::healthy(3).await;
    r.add_watch_section("");
    let ca = dir.path().join("ca.pem");
    let state = format!(
        "\n[state]\nbackend = \"jetstream\"\nnats_url = \"tls://127.0.0.1:{port}\"\ntls_ca_file = {}\nbucket = \"swtls_{}\"\nrequest_timeout = \"800ms\"\n",
        toml_path(&ca),
        r.names.tag
    );
    r.edit_config(|t| t + &state);
    let mut d = r.start_daemon("tls");
    let body = d.wait_cycles(3, secs(40)).await;
    assert_eq!(gauge(&body, "soakwatch_leader"), Some(1.0), "{body}");
    d.signal("TERM");
    assert_eq!(d.wait_exit(secs(15)).await, 0, "{}", d.stderr());
    let config = r.config.display().to_string();
    let run = run_bin(&["report", "--config", &config], &[]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);

    // Without its CA the state's server is not trusted: refused, with why.
    r.edit_config(|t| {
        t.lines()
            .filter(|l| !l.starts_with("tls_ca_file"))
            .collect::<Vec<_>>()
            .join("\n")
    });
    let run = run_bin(&["report", "--config", &config], &[]).await;
    assert_ne!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let said = format!("{}{}", run.stdout, run.stderr).to_lowercase();
    assert!(
        said.contains("certificate") || said.contains("unknownissuer"),
        "{said}"
    );
    let _ = server.start_kill();
}

/// One trial: the leader is frozen (SIGSTOP) the instant its rollback latch
/// lands on the server, the standby takes over, then the old leader wakes.
/// Returns how many times the restart command ran and the journal's state.
async fn frozen_at_latch_trial(cluster: &Cluster, trial: usize) -> (usize, String, String) {
    use futures::StreamExt;
    let mut r = Replica::healthy(3).await;
    r.add_watch_section("");
    let bucket = format!("swhz_{}", r.names.tag);
    r.edit_config(|t| t + &state_section(&cluster.urls(), &bucket, 3));
    let runs = r.path("rollback-runs");
    let script = r.path("restart.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho run >> {}\n", runs.display()),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    r.edit_config(|t| {
        t + &format!(
            "\n[rollback]\nmode = \"armed\"\nenv_file = {env}\nrestart_command = [{script}]\n\
             log_file = {log}\nexpect_log_lines = []\nrestart_timeout = \"30s\"\n\
             \n[rollback.triggers]\nservice_up = \"0s\"\n",
            env = toml_path(&r.files.env_file),
            script = toml_path(&script),
            log = toml_path(&r.files.log_file),
        )
    });
    let mut a = r.start_daemon(&format!("frz-a{trial}"));
    let mut b = r.start_daemon(&format!("frz-b{trial}"));
    let leader = one_leader(&mut [&mut a, &mut b], secs(40)).await;
    let (mut old, mut new) = if leader == 0 { (a, b) } else { (b, a) };
    old.wait_cycles(2, secs(30)).await;
    // Watch the latch's key on the server itself: the leader is frozen the
    // moment its latch write lands, before (or while) it runs a step.
    let nc = async_nats::connect(cluster.url(0)).await.expect("nats");
    let mut latch = nc
        .subscribe(format!("$KV.{bucket}.rollback.>"))
        .await
        .expect("subscribe");
    nc.flush().await.expect("flush");
    r.kill_standin().await;
    let landed = tokio::time::timeout(secs(40), latch.next()).await;
    old.signal("STOP");
    assert!(
        matches!(landed, Ok(Some(_))),
        "no latch was taken\n{}",
        old.stderr()
    );
    // The standby takes over (the frozen leader cannot renew), and has led
    // for longer than the old lease could still act.
    new.wait_metrics("the standby to take over", secs(40), |m| {
        m.sum("soakwatch_leader", &[]) == Some(1.0)
    })
    .await;
    new.wait_cycles(6, secs(40)).await;
    old.signal("CONT");
    // The old leader wakes, with its rollback task mid-way: it must not act.
    tokio::time::sleep(secs(6)).await;
    new.wait_cycles(10, secs(40)).await;
    let n = std::fs::read_to_string(&runs)
        .map(|s| s.lines().count())
        .unwrap_or(0);
    let cfg = soakwatch::config::Config::load(&r.config).expect("config");
    let (_, s) = soakwatch::watch::load_summary(&cfg).await.expect("state");
    let state = s.rollback.map(|v| v.state.to_string()).unwrap_or_default();
    let logs = format!(
        "--- old ---\n{}\n--- new ---\n{}",
        old.stderr(),
        new.stderr()
    );
    old.signal("TERM");
    new.signal("TERM");
    let _ = old.wait_exit(secs(20)).await;
    let _ = new.wait_exit(secs(20)).await;
    drop_state(&cluster.url(0), &bucket).await;
    (n, state, logs)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_frozen_at_its_latch_never_acts_and_the_new_leader_runs_the_rollback_once() {
    let cluster = Cluster::start().await;
    // Timing-sensitive: several trials, each must hold.
    for trial in 0..3 {
        let (runs, state, logs) = frozen_at_latch_trial(&cluster, trial).await;
        assert!(
            runs <= 1,
            "trial {trial}: the restart ran {runs} times\n{logs}"
        );
        // Frozen before it marked its restart, the old leader never runs it
        // when it wakes (the latch and the lease name another term), and
        // the new leader, once that lease could no longer act, takes the
        // latch over and runs the rollback: exactly once, `done`. Frozen
        // after marking the restart (a window of one step), the restart may
        // have run: reported interrupted, never re-run.
        match state.as_str() {
            "done" => {
                assert_eq!(runs, 1, "trial {trial}: done but ran {runs}\n{logs}");
                assert!(
                    logs.contains("never acted: this leader runs the rollback"),
                    "trial {trial}: the new leader took the latch over\n{logs}"
                );
                // The woken leader is refused at its next step ("NOT
                // run") or, when its latch write's answer was lost in the
                // freeze, at the latch itself: the read-back names the new
                // leader's term, not its own.
                assert!(
                    logs.contains("NOT run") || logs.contains("latch was already taken"),
                    "trial {trial}: the woken leader was refused\n{logs}"
                );
            }
            "interrupted" => assert!(
                logs.contains("interrupted rollback was found"),
                "trial {trial}\n{logs}"
            ),
            other => panic!("trial {trial}: journal {other:?}\n{logs}"),
        }
        eprintln!("trial {trial}: restart ran {runs} time(s), journal {state}");
    }
}

/// Debian's libfaketime (package libfaketime, installed by ensure-test-tools.sh).
fn faketime_lib() -> String {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists());
    found
        .expect("libfaketime is installed (scripts/ensure-test-tools.sh installs it)")
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watcher_whose_clock_is_skewed_from_the_server_refuses_to_lead() {
    let lib = faketime_lib();
    let (cluster, r, bucket) = two_watchers(|_| String::new()).await;
    // T0 is when the leader starts (the replica's started_at would be in the
    // skewed watcher's future, which every command refuses).
    r.edit_config(|t| {
        t.lines()
            .filter(|l| !l.starts_with("started_at = "))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    // Ten minutes behind the server (and everyone else), started first: it
    // would win the lease alone.
    let mut skewed = Daemon::start_with_env(
        &r.config,
        &[],
        &[
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME", "-10m"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
        r.dir.path(),
        "skewed",
    );
    let deadline = Instant::now() + secs(30);
    while !skewed.stderr().contains("refusing to lead") {
        skewed.assert_running("while campaigning with a skewed clock");
        assert!(Instant::now() < deadline, "{}", skewed.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut good = r.start_daemon("good");
    let body = good.wait_cycles(3, secs(40)).await;
    assert_eq!(gauge(&body, "soakwatch_leader"), Some(1.0), "{body}");
    // The skewed watcher never acted: no cycle, never reported leading.
    let sk = skewed.metrics().await.unwrap_or_default();
    assert_ne!(gauge(&sk, "soakwatch_leader"), Some(1.0), "{sk}");
    assert_eq!(
        gauge(&sk, "soakwatch_cycles_total").unwrap_or(0.0),
        0.0,
        "{sk}"
    );
    // The record's time is the server's and the good watcher's: its newest
    // cycle is now, not ten minutes ago.
    good.signal("TERM");
    assert_eq!(good.wait_exit(secs(20)).await, 0, "{}", good.stderr());
    let cfg = soakwatch::config::Config::load(&r.config).expect("config");
    let (_, s) = soakwatch::watch::load_summary(&cfg).await.expect("state");
    let age = (chrono::Utc::now() - s.now).num_seconds().abs();
    assert!(age < 60, "newest cycle {} is {age}s from now", s.now);
    skewed.signal("TERM");
    let _ = skewed.wait_exit(secs(20)).await;
    drop_state(&cluster.url(0), &bucket).await;
}
