//! Pure: an existing config + what is live -> every configured name that does
//! not exist live (a problem) and every configured value that differs from
//! what is live (a warning), each with the config key and line.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::discover::{FamilyFacts, Observed};
use crate::promtext::MetricType;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing, and `check` handles it (a `[metrics.match]` label one
    /// family lacks is read without that filter): never changes the exit code.
    Note,
    /// A configured value differs from what is live (the checks would judge it).
    Warning,
    /// A configured name does not exist live (the checks cannot work).
    Problem,
}

/// One finding, located in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Problem or warning.
    pub severity: Severity,
    /// Dotted key, e.g. `consumer.durable`.
    pub key: String,
    /// 1-based line in the config file, where the key is in it.
    pub line: Option<usize>,
    /// One line.
    pub message: String,
}

impl Finding {
    /// `file:line: key: message` (as config errors are printed), prefixed by the severity.
    pub fn display<'a>(&'a self, file: &'a Path) -> impl fmt::Display + 'a {
        struct D<'a>(&'a Finding, &'a Path);
        impl fmt::Display for D<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let sev = match self.0.severity {
                    Severity::Problem => "problem",
                    Severity::Warning => "warning",
                    Severity::Note => "note",
                };
                match self.0.line {
                    Some(l) => write!(
                        f,
                        "{sev}: {}:{l}: {}: {}",
                        self.1.display(),
                        self.0.key,
                        self.0.message
                    ),
                    None => write!(
                        f,
                        "{sev}: {}: {}: {}",
                        self.1.display(),
                        self.0.key,
                        self.0.message
                    ),
                }
            }
        }
        D(self, file)
    }
}

/// Exit code of `validate --live`: 2 a problem, 3 a look-up failed (and no
/// problem), 1 warnings only, 0 all there (notes alone are 0).
pub fn exit_code(findings: &[Finding], lookup_failures: usize) -> u8 {
    if findings.iter().any(|f| f.severity == Severity::Problem) {
        2
    } else if lookup_failures > 0 {
        3
    } else if findings.iter().any(|f| f.severity == Severity::Warning) {
        1
    } else {
        0
    }
}

struct Out<'a> {
    text: &'a str,
    findings: Vec<Finding>,
}

impl Out<'_> {
    fn push(&mut self, severity: Severity, key: &str, message: String) {
        self.findings.push(Finding {
            severity,
            key: key.to_string(),
            line: crate::config::line_of_key(self.text, key),
            message,
        });
    }
    fn problem(&mut self, key: &str, message: String) {
        self.push(Severity::Problem, key, message);
    }
    fn warning(&mut self, key: &str, message: String) {
        self.push(Severity::Warning, key, message);
    }
    fn note(&mut self, key: &str, message: String) {
        self.push(Severity::Note, key, message);
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// Compares `cfg` (loaded from `text`) with `observed`. Parts whose look-up
/// failed are skipped (the caller reports the failure).
pub fn check(cfg: &Config, text: &str, observed: &Observed) -> Vec<Finding> {
    let mut out = Out {
        text,
        findings: Vec::new(),
    };
    check_nats(cfg, observed, &mut out);
    check_metrics(cfg, observed, &mut out);
    check_table(cfg, observed, &mut out);
    check_files(cfg, observed, &mut out);
    out.findings.sort_by_key(|f| f.line.unwrap_or(usize::MAX));
    out.findings
}

fn check_nats(cfg: &Config, observed: &Observed, out: &mut Out<'_>) {
    let Ok(nats) = &observed.nats else { return };
    for (key, spec) in cfg.streams.keyed() {
        let Some(live) = nats.stream(&spec.name) else {
            out.problem(
                &format!("{key}.name"),
                format!("stream {} does not exist", spec.name),
            );
            continue;
        };
        if sorted(&spec.subjects) != sorted(&live.subjects) {
            out.warning(
                &format!("{key}.subjects"),
                format!(
                    "stream {} has subjects {}",
                    spec.name,
                    live.subjects.join(", ")
                ),
            );
        }
        if let Some(st) = &spec.storage {
            if st != &live.storage {
                out.warning(
                    &format!("{key}.storage"),
                    format!("stream {} has {} storage", spec.name, live.storage),
                );
            }
        }
        if let Some(r) = spec.replicas {
            if r != live.replicas {
                out.warning(
                    &format!("{key}.replicas"),
                    format!("stream {} has {} replica(s)", spec.name, live.replicas),
                );
            }
        }
        if let Some(a) = spec.max_age {
            if a != live.max_age {
                out.warning(
                    &format!("{key}.max_age"),
                    format!(
                        "stream {} has max_age {}",
                        spec.name,
                        humantime::format_duration(live.max_age)
                    ),
                );
            }
        }
    }
    for c in &cfg.consumers.named {
        check_named_consumer(c, nats, out);
    }
    for sel in &cfg.consumers.selectors {
        let count: usize = sel
            .streams
            .iter()
            .filter_map(|s| nats.stream(s))
            .map(|st| {
                st.consumers
                    .iter()
                    .filter(|k| sel.selects(&st.name, &k.name))
                    .count()
            })
            .sum();
        if count < sel.min_count {
            out.problem(
                &format!("{}.streams", sel.key),
                format!(
                    "{count} durable(s) on {} match (at least {} expected)",
                    sel.streams.join(", "),
                    sel.min_count
                ),
            );
        }
    }
}

/// One named durable against the live listing of its stream.
fn check_named_consumer(
    c: &crate::config::ConsumerConfig,
    nats: &super::NatsFacts,
    out: &mut Out<'_>,
) {
    let Some(stream) = nats.stream(&c.stream) else {
        // Already reported as a missing hot stream.
        return;
    };
    let Some(live) = stream.consumers.iter().find(|k| k.name == c.durable) else {
        let names: Vec<&str> = stream.consumers.iter().map(|k| k.name.as_str()).collect();
        out.problem(
            &format!("{}.durable", c.key),
            format!(
                "no consumer {} on stream {} (there: {})",
                c.durable,
                c.stream,
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
        );
        return;
    };
    if live.filter_subject != c.filter_subject {
        out.warning(
            &format!("{}.filter_subject", c.key),
            format!("consumer {} filters {:?}", c.durable, live.filter_subject),
        );
    }
    if live.ack_policy != c.ack_policy {
        out.warning(
            &format!("{}.ack_policy", c.key),
            format!("consumer {} has ack policy {}", c.durable, live.ack_policy),
        );
    }
    if live.ack_wait != c.ack_wait {
        out.warning(
            &format!("{}.ack_wait", c.key),
            format!(
                "consumer {} has ack_wait {}",
                c.durable,
                humantime::format_duration(live.ack_wait)
            ),
        );
    }
    if live.max_deliver != c.max_deliver {
        out.warning(
            &format!("{}.max_deliver", c.key),
            format!(
                "consumer {} has max_deliver {}",
                c.durable, live.max_deliver
            ),
        );
    }
    if let Some(m) = c.max_ack_pending {
        if m != live.max_ack_pending {
            out.warning(
                &format!("{}.max_ack_pending", c.key),
                format!(
                    "consumer {} has max_ack_pending {}",
                    c.durable, live.max_ack_pending
                ),
            );
        }
    }
}

fn family_names(families: &[FamilyFacts], kind: MetricType) -> String {
    let v: Vec<&str> = families
        .iter()
        .filter(|f| f.kind == kind)
        .map(|f| f.name.as_str())
        .take(10)
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn label_list(f: &FamilyFacts) -> String {
    if f.labels.is_empty() {
        "none".into()
    } else {
        f.labels.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

fn check_metrics(cfg: &Config, observed: &Observed, out: &mut Out<'_>) {
    let Ok(m) = &observed.metrics else { return };
    let mc = &cfg.metrics;
    match m.counter_family(&mc.messages_counter) {
        None => out.problem(
            "metrics.messages_counter",
            format!(
                "no metric {} at {} (counters there: {})",
                mc.messages_counter,
                mc.url.shown(),
                family_names(&m.families, MetricType::Counter)
            ),
        ),
        // Declared but no series yet (a labelled family before its first event): labels unknown.
        Some(f) if f.samples == 0 => out.warning(
            "metrics.messages_counter",
            format!(
                "{} has no series yet: its labels cannot be checked",
                mc.messages_counter
            ),
        ),
        Some(f) => {
            for (key, label) in [
                ("metrics.result_label", &mc.result_label),
                ("metrics.stream_label", &mc.stream_label),
            ] {
                if !label.is_empty() && !f.labels.contains_key(label) {
                    out.problem(
                        key,
                        format!(
                            "{} has no label {label} (labels: {})",
                            f.name,
                            label_list(f)
                        ),
                    );
                }
            }
            if let Some(values) = f.labels.get(&mc.result_label) {
                for (key, v) in [
                    ("metrics.success_result", &mc.success_result),
                    ("metrics.dlq_result", &mc.dlq_result),
                ] {
                    if !values.contains(v) {
                        out.warning(
                            key,
                            format!(
                                "{}={v:?} not seen on {} (values: {})",
                                mc.result_label,
                                f.name,
                                values.iter().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        );
                    }
                }
            }
            check_matchers(cfg, f, "counter", &read_families(cfg, m), out);
        }
    }
    if let Some(h) = &mc.latency_histogram {
        match m.family(h) {
            None => out.problem(
                "metrics.latency_histogram",
                format!(
                    "no histogram {h} (histograms there: {})",
                    family_names(&m.families, MetricType::Histogram)
                ),
            ),
            Some(f) if f.kind != MetricType::Histogram => out.problem(
                "metrics.latency_histogram",
                format!("{h} is a {}, not a histogram", f.kind),
            ),
            Some(f) if f.samples > 0 => {
                check_matchers(cfg, f, "histogram", &read_families(cfg, m), out)
            }
            Some(_) => {}
        }
    }
    if let Some(p) = &mc.process_start_metric {
        if m.family(p).is_none() {
            out.problem(
                "metrics.process_start_metric",
                format!("no metric {p} (service_up cannot see restarts)"),
            );
        }
    }
}

/// The configured families `check` reads that have series (the counter
/// and the latency histogram): what `[metrics.match]` can filter.
fn read_families<'m>(cfg: &Config, m: &'m crate::discover::MetricsFacts) -> Vec<&'m FamilyFacts> {
    let mc = &cfg.metrics;
    let mut v: Vec<&FamilyFacts> = m.counter_family(&mc.messages_counter).into_iter().collect();
    v.extend(mc.latency_histogram.as_ref().and_then(|h| m.family(h)));
    v.retain(|f| f.samples > 0);
    v
}

/// `[metrics.match]` against one family, as `check` applies it: a label
/// the family carries filters it (a value it never has is a problem); a
/// label it lacks while another read family carries it leaves it unfiltered
/// (a note); a label no read family carries filters nothing (a problem: a
/// typo, most likely).
fn check_matchers(
    cfg: &Config,
    f: &FamilyFacts,
    what: &str,
    read: &[&FamilyFacts],
    out: &mut Out<'_>,
) {
    for (k, v) in &cfg.metrics.matchers {
        let key = format!("metrics.match.{k}");
        let carried_elsewhere = read
            .iter()
            .any(|o| o.name != f.name && o.labels.contains_key(k));
        match f.labels.get(k) {
            None if v.is_empty() => {}
            None if carried_elsewhere => out.note(
                &key,
                format!(
                    "the {what} {} has no label {k} (labels: {}): check reads it without that filter",
                    f.name,
                    label_list(f)
                ),
            ),
            None => out.problem(
                &key,
                format!(
                    "the {what} {} has no label {k} (labels: {}), nor any family read: the match filters nothing",
                    f.name,
                    label_list(f)
                ),
            ),
            Some(vals) if !v.is_empty() && !vals.contains(v) => out.problem(
                &key,
                format!(
                    "the {what} {} has no series with {k}={v:?} (values: {})",
                    f.name,
                    vals.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ),
            Some(_) => {}
        }
    }
}

fn check_table(cfg: &Config, observed: &Observed, out: &mut Out<'_>) {
    let (Some(Ok(t)), Some(d)) = (&observed.table, &cfg.database) else {
        return;
    };
    if !t.exists {
        out.problem(
            "database.table",
            format!(
                "table {} does not exist{}",
                d.table,
                if t.other_tables.is_empty() {
                    String::new()
                } else {
                    format!(" (tables there: {})", t.other_tables.join(", "))
                }
            ),
        );
        return;
    }
    let cols: Vec<&str> = t.columns.iter().map(|(c, _)| c.as_str()).collect();
    let column =
        |key: &str, name: &str, timestamp: bool, out: &mut Out<'_>| match t.column_type(name) {
            None => out.problem(
                key,
                format!(
                    "table {} has no column {name} (columns: {})",
                    d.table,
                    cols.join(", ")
                ),
            ),
            Some(ty) if timestamp && !ty.starts_with("timestamp") => {
                out.problem(key, format!("column {name} is {ty}, not a timestamp"))
            }
            Some(_) if timestamp && !t.index_leads_with(name) => out.warning(
                key,
                format!(
                    "no index of {} leads with {name}: every probe query scans the table",
                    d.table
                ),
            ),
            Some(_) => {}
        };
    column("database.created_column", &d.created_column, true, out);
    if let Some(u) = &d.updated_column {
        column("database.updated_column", u, true, out);
    }
    if let Some(der) = &d.derived {
        column("database.derived.column", &der.column, false, out);
        column("database.derived.source", &der.source, false, out);
    }
}

fn check_files(cfg: &Config, observed: &Observed, out: &mut Out<'_>) {
    let file = |key: &str, path: &Path, out: &mut Out<'_>| {
        if let Some(f) = observed.file(path) {
            if let Some(e) = &f.error {
                out.problem(key, format!("{}: {e}", path.display()));
            }
        }
    };
    if let Some(l) = &cfg.log {
        file("log.path", &l.path, out);
    }
    if let Some(e) = &cfg.service_env {
        file("service_env.path", &e.path, out);
    }
    if let Some(r) = &cfg.rollback {
        file("rollback.env_file", &r.run.env_file, out);
        file("rollback.log_file", &r.run.log_file, out);
    }
    let (Some(Ok(env)), Some(se)) = (&observed.env, &cfg.service_env) else {
        return;
    };
    if let Some(k) = &se.ack_wait_key {
        if !env.keys.contains(k) {
            out.problem(
                "service_env.ack_wait_key",
                format!("{} has no key {k}", env.path.display()),
            );
        } else if let Some(v) = env.values.get(k) {
            let unit = if se.ack_wait_unit == "s" {
                Duration::from_secs
            } else {
                Duration::from_millis
            };
            match v.trim().parse::<u64>().map(unit) {
                Ok(w) if Some(w) != cfg.consumers.primary().map(|c| c.ack_wait) => out.warning(
                    "service_env.ack_wait_key",
                    format!(
                        "{k}={v} ({}) differs from the consumer's ack_wait {}",
                        humantime::format_duration(w),
                        cfg.consumers
                            .primary()
                            .map(|c| humantime::format_duration(c.ack_wait).to_string())
                            .unwrap_or_else(|| "(no named consumer)".into())
                    ),
                ),
                Ok(_) => {}
                Err(_) => out.warning(
                    "service_env.ack_wait_key",
                    format!("{k}={v} is not a whole number of {}", se.ack_wait_unit),
                ),
            }
        }
    }
    for k in se.expect.keys() {
        if !env.keys.contains(k) {
            out.problem(
                &format!("service_env.expect.{k}"),
                format!("{} has no key {k}", env.path.display()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::choose::{plan, Hints};
    use crate::discover::{checks_toml, fixture};
    use std::path::PathBuf;

    fn config_text() -> String {
        let o = fixture::observed();
        checks_toml::render(
            &plan(&o, &Hints::default()),
            &o,
            &checks_toml::RenderOptions {
                soak_name: "t".into(),
                nats_url: "nats://127.0.0.1:4222".into(),
                metrics_url: "http://127.0.0.1:4102/metrics".into(),
                database_url: Some("postgres://u@127.0.0.1/db".into()),
                table: "hrv_data".into(),
                env_file: Some(PathBuf::from("/svc/.env")),
                log: Some(PathBuf::from("/svc/log")),
                generated_at: chrono::Utc::now(),
            },
        )
    }

    fn load(text: &str) -> Config {
        let env = |_: &str| None;
        Config::from_text(Path::new("c.toml"), text, &env).expect("valid")
    }

    fn line_of(text: &str, prefix: &str) -> Option<usize> {
        text.lines()
            .position(|l| l.starts_with(prefix))
            .map(|i| i + 1)
    }

    #[test]
    fn matching_system_has_no_findings() {
        let text = config_text();
        let mut o = fixture::observed();
        o.files.push(crate::discover::FileFacts {
            path: PathBuf::from("/svc/log"),
            size: Some(1),
            error: None,
            tail: Vec::new(),
        });
        let f = check(&load(&text), &text, &o);
        assert_eq!(f, vec![], "{text}");
        assert_eq!(exit_code(&f, 0), 0);
        assert_eq!(exit_code(&f, 1), 3);
    }

    #[test]
    fn every_wrong_name_is_a_located_problem() {
        let text = config_text()
            .replace(
                "durable = \"normalize-hrv-durable\"",
                "durable = \"wrong-durable\"",
            )
            .replace(
                "messages_counter = \"normalize_hrv_messages_total\"",
                "messages_counter = \"wrong_total\"",
            )
            .replace("name = \"AA_VENDOR_HOT\"", "name = \"AA_NOPE\"")
            .replace(
                "created_column = \"createdAt\"",
                "created_column = \"madeAt\"",
            )
            .replace("stream_label = \"stream\"", "stream_label = \"strm\"");
        let cfg = load(&text);
        let mut o = fixture::observed();
        o.files.push(crate::discover::FileFacts {
            path: PathBuf::from("/svc/log"),
            size: None,
            error: Some("does not exist".into()),
            tail: Vec::new(),
        });
        let f = check(&cfg, &text, &o);
        let keys: Vec<&str> = f.iter().map(|x| x.key.as_str()).collect();
        for k in [
            "streams.hot[1].name",
            "consumer.durable",
            "metrics.messages_counter",
            "database.created_column",
            "log.path",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        assert!(f.iter().all(|x| x.severity == Severity::Problem), "{f:?}");
        let durable = f
            .iter()
            .find(|x| x.key == "consumer.durable")
            .expect("durable");
        assert_eq!(durable.line, line_of(&text, "durable = \"wrong-durable\""));
        assert!(
            durable.message.contains("there: normalize-hrv-durable"),
            "{durable:?}"
        );
        let shown = durable.display(Path::new("c.toml")).to_string();
        assert!(
            shown.starts_with(&format!(
                "problem: c.toml:{}: consumer.durable: no consumer wrong-durable",
                durable.line.unwrap_or(0)
            )),
            "{shown}"
        );
        assert_eq!(exit_code(&f, 0), 2);
    }

    #[test]
    fn labels_match_labels_and_env_keys_are_checked() {
        let text = config_text()
            .replace("stream_label = \"stream\"", "stream_label = \"strm\"")
            .replace(
                "durable = \"normalize-hrv-durable\"\n\n[database]",
                "bogus = \"x\"\n\n[database]",
            )
            .replace(
                "ack_wait_key = \"NORMALIZE_HRV_ACK_WAIT_MS\"",
                "ack_wait_key = \"NOPE_ACK_WAIT_MS\"",
            );
        let cfg = load(&text);
        let f = check(&cfg, &text, &fixture::observed());
        let keys: Vec<&str> = f.iter().map(|x| x.key.as_str()).collect();
        assert!(keys.contains(&"metrics.stream_label"), "{f:?}");
        assert!(keys.contains(&"metrics.match.bogus"), "{f:?}\n{text}");
        assert!(keys.contains(&"service_env.ack_wait_key"), "{f:?}");
    }

    #[test]
    fn a_counter_named_by_its_family_is_found_as_check_reads_it() {
        let text = config_text().replace(
            "messages_counter = \"normalize_hrv_messages_total\"",
            "messages_counter = \"normalize_hrv_messages\"",
        );
        assert!(text.contains("messages_counter = \"normalize_hrv_messages\""));
        let f = check(&load(&text), &text, &fixture::observed());
        assert!(f.iter().all(|x| !x.key.starts_with("metrics.")), "{f:?}");
    }

    #[test]
    fn a_match_label_one_family_lacks_is_a_note_and_exits_0() {
        let text = config_text();
        let mut o = fixture::observed();
        o.files.push(crate::discover::FileFacts {
            path: PathBuf::from("/svc/log"),
            size: Some(1),
            ..Default::default()
        });
        if let Ok(m) = &mut o.metrics {
            for f in &mut m.families {
                if f.name == "normalize_hrv_processing_duration_seconds" {
                    f.labels.remove("durable");
                }
            }
        }
        let f = check(&load(&text), &text, &o);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].severity, Severity::Note);
        assert_eq!(f[0].key, "metrics.match.durable");
        assert!(f[0].message.contains("check reads it without that filter"));
        assert_eq!(exit_code(&f, 0), 0);
        // A label no family read carries filters nothing: still a problem.
        if let Ok(m) = &mut o.metrics {
            for f in &mut m.families {
                f.labels.remove("durable");
            }
        }
        let f = check(&load(&text), &text, &o);
        assert!(f.iter().any(|x| x.severity == Severity::Problem), "{f:?}");
    }

    #[test]
    fn drift_is_a_warning() {
        let text = config_text();
        let mut o = fixture::observed();
        if let Ok(n) = &mut o.nats {
            for s in &mut n.streams {
                for c in &mut s.consumers {
                    c.ack_wait = Duration::from_secs(30);
                }
            }
        }
        if let Some(Ok(t)) = &mut o.table {
            t.indexes.clear();
        }
        let f = check(&load(&text), &text, &o);
        let keys: Vec<&str> = f.iter().map(|x| x.key.as_str()).collect();
        assert!(keys.contains(&"consumer.ack_wait"), "{f:?}");
        assert!(keys.contains(&"database.created_column"), "{f:?}");
        assert!(f.iter().all(|x| x.severity == Severity::Warning), "{f:?}");
        assert_eq!(exit_code(&f, 0), 1);
    }
}
