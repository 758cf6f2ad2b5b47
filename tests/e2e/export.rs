//! `soakwatch export` end to end: the rules file passes `promtool check rules`
//! and `promtool test rules` (the DLQ hold, the DLQ spike and the lag rule
//! with the thresholds and `for` of the config), and a real Prometheus
//! (Debian's package) scraping a replica's stand-in service and a soakwatch
//! daemon on loopback loads every rule without an error, fires the DLQ rule
//! after a poison message, and parses every query of the Grafana dashboard.
//!
//! promtool and prometheus are required, never skipped:
//! `scripts/ensure-test-tools.sh` installs them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

/// The Prometheus server binary of Debian's `prometheus` package.
const PROMETHEUS: &str = "/usr/bin/prometheus";

const HOW_TO_INSTALL: &str =
    "install it with scripts/ensure-test-tools.sh (Debian package prometheus)";

/// `soakwatch export <what> --config <config> --out <out>`, which must succeed.
async fn export(config: &Path, what: &str, out: &Path) -> Value {
    let (config, out_s) = (config.display().to_string(), out.display().to_string());
    let run = run_bin(&["export", what, "--config", &config, "--out", &out_s], &[]).await;
    assert_eq!(run.code, 0, "export {what}: {}", run.stderr);
    serde_json::from_str(&read(out)).unwrap_or_else(|e| panic!("export {what} is not JSON: {e}"))
}

/// Runs promtool with `args` in `dir`: (success, stdout + stderr).
pub(crate) async fn promtool(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("promtool cannot run ({e}): {HOW_TO_INSTALL}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every rule of a rules file.
fn rules(v: &Value) -> Vec<&Value> {
    v["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect()
}

/// The rule named `alert` whose `condition` label is `condition`.
fn rule<'a>(v: &'a Value, alert: &str, condition: &str) -> &'a Value {
    rules(v)
        .into_iter()
        .find(|r| r["alert"] == alert && r["labels"]["condition"] == condition)
        .unwrap_or_else(|| panic!("no rule {alert} ({condition}) in {v:#}"))
}

/// What promtool expects of one firing alert of `r`: its labels and annotations.
fn expected_alert(r: &Value) -> Value {
    json!({"exp_labels": r["labels"], "exp_annotations": r["annotations"]})
}

#[tokio::test]
async fn rules_pass_promtool_check_and_unit_tests() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The shipped checks with a 2 m hold on the lag: thresholds and `for`
    // must come from the config.
    let shipped = read(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("checks.toml"));
    assert!(shipped.contains("[watch.for]\n"));
    let config = dir.path().join("checks.toml");
    std::fs::write(
        &config,
        shipped.replace("[watch.for]\n", "[watch.for]\nconsumer_lag = \"2m\"\n"),
    )
    .expect("write config");
    let rules_file = dir.path().join("rules.json");
    let v = export(&config, "prometheus-rules", &rules_file).await;

    let (ok, out) = promtool(dir.path(), &["check", "rules", "rules.json"]).await;
    assert!(ok, "promtool check rules:\n{out}");

    let dlq = rule(&v, "soakwatch_dlq", "failing");
    let spike = rule(&v, "soakwatch_dlq", "spike");
    let lag = rule(&v, "soakwatch_consumer_lag", "failing");
    assert_eq!(dlq["for"], "5m");
    assert_eq!(lag["for"], "2m");
    let series = |result: &str| {
        format!(
            "normalize_hrv_messages_total{{durable=\"normalize-hrv-durable\",result=\"{result}\",stream=\"AA_CORE_HOT\"}}"
        )
    };
    let lag_series =
        "soakwatch_criterion_value{soak=\"phase-b-staging\",criterion=\"consumer_lag\"}";
    let tests = json!({
        "rule_files": ["rules.json"],
        "evaluation_interval": "1m",
        "tests": [
            {
                // One message dead-lettered at 10 m: failing for 5 m, then it fires.
                "name": "dlq: any increase of the DLQ counter fires after the hold",
                "interval": "1m",
                "input_series": [
                    {"series": series("success"), "values": "0+10x30"},
                    {"series": series("dlq"), "values": "0x9 1x20"},
                ],
                "alert_rule_test": [
                    {"eval_time": "9m", "alertname": "soakwatch_dlq", "exp_alerts": []},
                    {"eval_time": "14m", "alertname": "soakwatch_dlq", "exp_alerts": []},
                    {"eval_time": "15m", "alertname": "soakwatch_dlq",
                     "exp_alerts": [expected_alert(dlq)]},
                    {"eval_time": "25m", "alertname": "soakwatch_dlq",
                     "exp_alerts": [expected_alert(dlq)]},
                ],
            },
            {
                // 25 messages within a minute: more than 10 per minute fires at once.
                "name": "dlq: a spike fires without the hold",
                "interval": "1m",
                "input_series": [
                    {"series": series("dlq"), "values": "0x5 25x10"},
                ],
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "soakwatch_dlq", "exp_alerts": []},
                    {"eval_time": "6m", "alertname": "soakwatch_dlq",
                     "exp_alerts": [expected_alert(spike)]},
                ],
            },
            {
                // Lag 9 stays quiet; 10 (= lag_fail) from 10 m fires after the 2 m hold.
                "name": "consumer_lag: at or above lag_fail for the configured hold",
                "interval": "1m",
                "input_series": [
                    {"series": lag_series, "values": "3x4 9x4 10x10"},
                ],
                "alert_rule_test": [
                    {"eval_time": "9m", "alertname": "soakwatch_consumer_lag", "exp_alerts": []},
                    {"eval_time": "11m", "alertname": "soakwatch_consumer_lag", "exp_alerts": []},
                    {"eval_time": "12m", "alertname": "soakwatch_consumer_lag",
                     "exp_alerts": [expected_alert(lag)]},
                ],
            },
        ],
    });
    std::fs::write(
        dir.path().join("tests.json"),
        serde_json::to_string_pretty(&tests).expect("json"),
    )
    .expect("write tests");
    let (ok, out) = promtool(dir.path(), &["test", "rules", "tests.json"]).await;
    assert!(ok, "promtool test rules:\n{out}");
}

/// A Prometheus server on a reserved loopback port with its own storage; killed on drop.
struct Prometheus {
    child: std::process::Child,
    url: String,
    log: PathBuf,
    http: reqwest::Client,
    _port: ReservedPort,
}

impl Prometheus {
    /// Starts Prometheus on `config` with storage and log under `dir`.
    fn start(dir: &Path, config: &Path) -> Prometheus {
        let port = ReservedPort::new();
        let log = dir.join("prometheus.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = std::process::Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", port.port()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file.try_clone().expect("log file")))
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap_or_else(|e| panic!("{PROMETHEUS} cannot run ({e}): {HOW_TO_INSTALL}"));
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{}", port.port()),
            log,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("http client"),
            _port: port,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET an API path as JSON (any status: a bad query answers 400 with a body).
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Option<Value> {
        let url = url::Url::parse_with_params(&format!("{}{path}", self.url), query).ok()?;
        let resp = self.http.get(url).send().await.ok()?;
        resp.json().await.ok()
    }

    /// Polls `probe` every 250 ms until it gives a value; panics after
    /// `timeout` (or when Prometheus exits) with `what`, the last answer and the log.
    async fn wait<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut probe: impl AsyncFnMut(&Prometheus) -> Result<T, String>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "prometheus exited ({st}) while waiting for {what}\n{}",
                    self.log()
                );
            }
            let last = match probe(self).await {
                Ok(v) => return v,
                Err(last) => last,
            };
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n--- last answer ---\n{last}\n--- prometheus log ---\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every query of a dashboard: (panel title, expr).
fn dashboard_queries(d: &Value) -> Vec<(String, String)> {
    d["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |t| t["expr"].as_str().map(|e| (title.clone(), e.to_string())))
        })
        .collect()
}

/// The dashboard's structure: the data source variable, panels with unique
/// ids on the 24-column grid, each with queries on that data source.
fn assert_dashboard_structure(d: &Value) {
    assert!(d["title"].is_string() && d["uid"].is_string(), "{d:#}");
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    assert!(
        vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "no Prometheus data source variable: {vars:?}"
    );
    let panels = d["panels"].as_array().expect("panels");
    assert!(
        panels.len() >= 6,
        "the reports' charts and the status: {panels:?}"
    );
    let mut ids = std::collections::BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id"
        );
        assert!(p["type"].is_string() && p["title"].is_string(), "{p}");
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().expect("x"), g["w"].as_u64().expect("w"));
        assert!(
            x + w <= 24 && g["h"].as_u64().is_some() && g["y"].as_u64().is_some(),
            "{p}"
        );
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{p}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{p}");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{t}");
            assert!(t["refId"].is_string() && t["expr"].is_string(), "{t}");
        }
    }
}

/// A query as Grafana sends it: its built-in interval variables replaced.
fn as_grafana_sends(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1s")
        .replace("$__range", "1h")
}

#[tokio::test]
async fn prometheus_fires_the_dlq_rule_after_a_fault_and_parses_every_dashboard_query() {
    let mut r = Replica::healthy(5).await;
    r.add_watch_section("[watch.for]\ndlq = \"2s\"\n");
    let rules_file = r.path("rules.json");
    let rules_json = export(&r.config, "prometheus-rules", &rules_file).await;
    let dashboard = export(&r.config, "grafana", &r.path("dashboard.json")).await;
    let (ok, out) = promtool(r.dir.path(), &["check", "rules", "rules.json"]).await;
    assert!(ok, "promtool check rules:\n{out}");
    let soak = rule(&rules_json, "soakwatch_dlq", "failing")["labels"]["soak"]
        .as_str()
        .expect("soak label")
        .to_string();
    assert!(soak.starts_with("demo-replica-"), "{soak}");

    let mut d = Daemon::start(&r.config, &[], r.dir.path(), "export");
    d.wait_cycles(1, Duration::from_secs(30)).await;
    let daemon_port = d.port().expect("the daemon's port");
    let service = r
        .metrics_url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();

    let prom_dir = r.path("prometheus");
    std::fs::create_dir_all(&prom_dir).expect("prometheus dir");
    let prom_config = prom_dir.join("prometheus.yml");
    let config = json!({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [rules_file.display().to_string()],
        "scrape_configs": [
            {"job_name": "service", "static_configs": [{"targets": [service]}]},
            {"job_name": "soakwatch", "static_configs": [{"targets": [format!("127.0.0.1:{daemon_port}")]}]},
        ],
    });
    std::fs::write(
        &prom_config,
        serde_json::to_string_pretty(&config).expect("json"),
    )
    .expect("write prometheus config");
    let mut prom = Prometheus::start(&prom_dir, &prom_config);

    prom.wait(
        "both targets up",
        Duration::from_secs(60),
        async |p: &Prometheus| {
            let v = p.get("/api/v1/targets", &[]).await.ok_or("no answer")?;
            let active = v["data"]["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let up = active.iter().filter(|t| t["health"] == "up").count();
            if active.len() == 2 && up == 2 {
                Ok(())
            } else {
                Err(format!("{v:#}"))
            }
        },
    )
    .await;

    // Every rule evaluates in a real Prometheus: none in error, all evaluated.
    prom.wait(
        "every rule evaluated without error",
        Duration::from_secs(60),
        async |p: &Prometheus| {
            let v = p.get("/api/v1/rules", &[]).await.ok_or("no answer")?;
            let rules: Vec<&Value> = v["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().into_iter().flatten())
                .collect();
            if let Some(bad) = rules.iter().find(|r| r["health"] == "err") {
                panic!(
                    "rule {} fails in Prometheus: {}",
                    bad["name"], bad["lastError"]
                );
            }
            if !rules.is_empty() && rules.iter().all(|r| r["health"] == "ok") {
                Ok(rules.len())
            } else {
                Err(format!("{v:#}"))
            }
        },
    )
    .await;

    let dlq_alert = async |p: &Prometheus| -> Result<Value, String> {
        let v = p.get("/api/v1/alerts", &[]).await.ok_or("no answer")?;
        v["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| {
                a["labels"]["alertname"] == "soakwatch_dlq"
                    && a["labels"]["condition"] == "failing"
                    && a["state"] == "firing"
            })
            .cloned()
            .ok_or_else(|| format!("{v:#}"))
    };
    assert!(
        dlq_alert(&prom).await.is_err(),
        "soakwatch_dlq fires before any fault"
    );

    r.publish_poison().await;
    r.wait_for("dlq", 1.0).await;
    let alert = prom
        .wait("soakwatch_dlq firing", Duration::from_secs(90), dlq_alert)
        .await;
    assert_eq!(
        alert["labels"],
        json!({"alertname": "soakwatch_dlq", "condition": "failing", "criterion": "dlq",
               "severity": "critical", "soak": soak}),
        "{alert:#}"
    );

    // The dashboard: its structure, and every query parses and runs in this
    // Prometheus (a parse error answers errorType bad_data).
    assert_dashboard_structure(&dashboard);
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 7, "{queries:?}");
    for (title, expr) in &queries {
        let q = as_grafana_sends(expr);
        assert!(!q.contains('$'), "a variable Grafana does not fill: {q}");
        let v = prom
            .get("/api/v1/query", &[("query", q.as_str())])
            .await
            .unwrap_or_else(|| panic!("no answer to {q}"));
        assert_eq!(v["status"], "success", "panel {title}: {q}\n{v:#}");
    }
    // And they name the series that exist: the lag chart has soakwatch's
    // value, the throughput chart the service's counter.
    for (title, want) in [
        ("Consumer lag (pending + ack pending)", "soakwatch"),
        ("Throughput", "service"),
    ] {
        let expr = queries
            .iter()
            .find(|(t, _)| t == title)
            .map(|(_, e)| as_grafana_sends(e))
            .unwrap_or_else(|| panic!("no panel {title}"));
        prom.wait(
            &format!("data for {title} ({want})"),
            Duration::from_secs(30),
            async |p: &Prometheus| {
                let v = p
                    .get("/api/v1/query", &[("query", expr.as_str())])
                    .await
                    .ok_or("no answer")?;
                if v["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
                {
                    Ok(())
                } else {
                    Err(format!("{v:#}"))
                }
            },
        )
        .await;
    }
    d.assert_running("at the end");
}
