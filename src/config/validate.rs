//! From the raw forms to a [`Config`]: every value that cannot be meant is
//! a problem with its dotted key, all collected in one pass.

use super::*;

/// Where relative paths in a config file point: the file's own directory,
/// made absolute, so a config means the same from any working directory
/// (a systemd unit, a cron job and a shell in another folder) and every
/// message can print the path it actually used.
pub(super) fn config_dir(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new(""));
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(dir)
    };
    normalize(&dir)
}

/// `p` against `base` when relative; `.` and `..` folded lexically (the
/// file need not exist yet: a state file or a reports folder is created later).
pub fn resolve_path(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        normalize(p)
    } else {
        normalize(&base.join(p))
    }
}

fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn non_empty_path(base: &Path, s: &str) -> Option<PathBuf> {
    (!s.trim().is_empty()).then(|| resolve_path(base, s))
}

/// Where a section reports its problems: (dotted key, message).
type Problems<'a> = &'a mut dyn FnMut(&str, String);

/// Checks every section and builds the [`Config`]; problems go to `problems`.
pub(super) fn validate(
    path: &Path,
    raw: RawConfig,
    problems: &mut Vec<(String, String)>,
) -> Config {
    let mut p = |key: &str, msg: String| problems.push((key.to_string(), msg));
    let base = config_dir(path);

    if raw.probes.timeout.is_zero() {
        p("probes.timeout", "must be greater than 0".into());
    }
    if let Some(e) = raw
        .soak
        .started_at
        .and_then(|t0| super::t0_in_future(t0, chrono::Utc::now()))
    {
        p("soak.started_at", e);
    }

    check_nats(&raw, &mut p);
    check_streams(&raw, &mut p);
    let consumers = validate_consumers(&raw, &mut p);
    check_metrics(&raw, &mut p);
    check_database(&raw, &mut p);
    let (fallback_patterns, ignore_patterns) = check_log(&raw, &mut p);
    check_service_env(&raw, &mut p);
    check_criteria(&raw, &mut p);
    let watch = validate_watch(&raw, &base, &mut p);
    let alerts = validate_alerts(&raw, &mut p);
    let rollback = validate_rollback(&raw, &base, &mut p);
    let state = validate_state(&raw, &base, &mut p);
    let heartbeat = validate_heartbeat(&raw, &mut p);
    let ledger = raw.ledger.as_ref().and_then(|l| {
        let ctx = super::ledger::LedgerContext {
            database: raw.database.as_ref().map(|d| {
                (
                    d.table.as_str(),
                    d.created_column.as_str(),
                    d.updated_column.as_str(),
                )
            }),
            dlq_stream: &raw.streams.dlq.name,
            interval: raw.watch.interval,
        };
        super::ledger::validate_ledger(l, &ctx, &consumers, &mut p)
    });

    let opt = |s: String| (!s.trim().is_empty()).then_some(s);
    Config {
        source: base.join(path.file_name().unwrap_or_default()),
        soak: raw.soak,
        probe_timeout: raw.probes.timeout,
        nats: NatsConfig {
            url: SecretUrl::new(raw.nats.url),
            token: Secret::new(raw.nats.token),
            user: raw.nats.user,
            password: Secret::new(raw.nats.password),
            creds_file: non_empty_path(&base, &raw.nats.creds_file),
            tls_required: raw.nats.tls_required,
            tls_ca_file: non_empty_path(&base, &raw.nats.tls_ca_file),
            tls_cert_file: non_empty_path(&base, &raw.nats.tls_cert_file),
            tls_key_file: non_empty_path(&base, &raw.nats.tls_key_file),
        },
        streams: raw.streams,
        consumers,
        metrics: MetricsConfig {
            url: SecretUrl::new(raw.metrics.url),
            messages_counter: raw.metrics.messages_counter,
            matchers: raw.metrics.matchers.into_iter().collect(),
            result_label: raw.metrics.result_label,
            success_result: raw.metrics.success_result,
            dlq_result: raw.metrics.dlq_result,
            uncounted_results: raw.metrics.uncounted_results,
            stream_label: raw.metrics.stream_label,
            latency_histogram: opt(raw.metrics.latency_histogram),
            process_start_metric: opt(raw.metrics.process_start_metric),
            max_body_bytes: raw.metrics.max_body_bytes,
        },
        database: raw.database.map(|d| DatabaseConfig {
            url: SecretUrl::new(d.url),
            table: d.table,
            created_column: d.created_column,
            updated_column: opt(d.updated_column),
            recent_window: d.recent_window,
            derived: d.derived,
        }),
        log: raw.log.map(|l| LogConfig {
            path: resolve_path(&base, &l.path),
            fallback_patterns,
            ignore_patterns,
            max_scan_bytes: l.max_scan_bytes,
        }),
        service_env: raw.service_env.map(|e| ServiceEnvConfig {
            path: resolve_path(&base, &e.path),
            ack_wait_key: opt(e.ack_wait_key),
            ack_wait_unit: e.ack_wait_unit,
            expect: e.expect,
        }),
        criteria: raw.criteria,
        watch,
        alerts,
        rollback,
        state,
        heartbeat,
        ledger,
        warnings: Vec::new(),
    }
}

/// `[heartbeat]`: http(s) URLs without query or fragment (the pings append
/// `/start`, `/fail` and `?rid=`), a period of at least a second and a
/// timeout. Messages never quote a URL: its path is the check's token.
fn validate_heartbeat(raw: &RawConfig, p: Problems<'_>) -> Option<HeartbeatConfig> {
    let h = &raw.heartbeat;
    let mut url_of = |key: &str, value: &str| -> Option<SecretUrl> {
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        match url::Url::parse(value) {
            Ok(u) if !matches!(u.scheme(), "http" | "https") => p(
                key,
                format!("scheme `{}`: expected http or https", u.scheme()),
            ),
            Ok(u) if u.host_str().is_none_or(str::is_empty) => p(key, "has no host".into()),
            Ok(u) if u.query().is_some() || u.fragment().is_some() => p(
                key,
                "must not have a query or fragment: the pings append /start, /fail and ?rid= to it"
                    .into(),
            ),
            Ok(_) => return Some(SecretUrl::with_secret_path(value)),
            // The parser's message never repeats the input.
            Err(e) => p(key, format!("not a URL: {e}")),
        }
        None
    };
    let url = url_of("heartbeat.url", &h.url);
    let standby_url = url_of("heartbeat.standby_url", &h.standby_url);
    if h.every < Duration::from_secs(1) {
        p(
            "heartbeat.every",
            format!(
                "`{}`: must be at least 1s",
                humantime::format_duration(h.every)
            ),
        );
    }
    if h.timeout.is_zero() {
        p("heartbeat.timeout", "must be greater than 0".into());
    }
    let on = url.is_some() || standby_url.is_some();
    on.then_some(HeartbeatConfig {
        url,
        standby_url,
        every: h.every,
        timeout: h.timeout,
    })
}

/// What a valid config allows but probably does not mean, as (dotted key,
/// message): nothing is refused for it, but a person should hear it.
pub(super) fn advisories(cfg: &Config) -> Vec<(String, String)> {
    let mut out = Vec::new();
    // A cycle waits for its slowest probe: an interval shorter than the
    // timeout stretches every cycle with a hanging probe to the timeout.
    if cfg.watch.interval < cfg.probe_timeout {
        out.push((
            "watch.interval".to_string(),
            format!(
                "`{}` is shorter than probes.timeout ({}): a cycle waits for its slowest probe, so while one hangs every cycle takes {} and samples come that far apart; set probes.timeout below the interval",
                humantime::format_duration(cfg.watch.interval),
                humantime::format_duration(cfg.probe_timeout),
                humantime::format_duration(cfg.probe_timeout),
            ),
        ));
    }
    out
}

/// NATS: URLs, one kind of auth, TLS files in pairs.
fn check_nats(raw: &RawConfig, p: Problems<'_>) {
    for (i, part) in raw.nats.url.split(',').enumerate() {
        match url::Url::parse(part.trim()) {
            Ok(u) if matches!(u.scheme(), "nats" | "tls" | "ws" | "wss") => {}
            Ok(u) => p(
                "nats.url",
                format!(
                    "server {} has scheme `{}`; expected nats, tls, ws or wss",
                    i + 1,
                    u.scheme()
                ),
            ),
            Err(e) => p("nats.url", format!("server {} is not a URL: {e}", i + 1)),
        }
    }
    if raw.nats.user.is_empty() != raw.nats.password.is_empty() {
        p(
            "nats.password",
            "user and password must be set together".into(),
        );
    }
    let auth_kinds = [
        !raw.nats.token.is_empty(),
        !raw.nats.user.is_empty(),
        !raw.nats.creds_file.trim().is_empty(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if auth_kinds > 1 {
        p(
            "nats.token",
            "choose one of token, user/password or creds_file".into(),
        );
    }
    if raw.nats.tls_cert_file.is_empty() != raw.nats.tls_key_file.is_empty() {
        p(
            "nats.tls_key_file",
            "tls_cert_file and tls_key_file must be set together".into(),
        );
    }
}

/// Streams: valid, distinct names with subjects and a storage kind.
fn check_streams(raw: &RawConfig, p: Problems<'_>) {
    let mut names = BTreeSet::new();
    let roles = raw.streams.keyed();
    if raw.streams.hot.is_empty() {
        p("streams.hot", "at least one hot stream is required".into());
    }
    for (key, spec) in &roles {
        if spec.name.trim().is_empty() || spec.name.contains(['.', '*', '>', ' ']) {
            p(
                &format!("{key}.name"),
                format!("`{}` is not a valid stream name", spec.name),
            );
        }
        if !names.insert(spec.name.clone()) {
            p(
                &format!("{key}.name"),
                format!("stream `{}` is configured twice", spec.name),
            );
        }
        if spec.subjects.is_empty() {
            p(
                &format!("{key}.subjects"),
                "at least one subject is required".into(),
            );
        }
        for (i, s) in spec.subjects.iter().enumerate() {
            if let Err(e) = subjects::validate_pattern(s) {
                p(&format!("{key}.subjects[{i}]"), e.to_string());
            }
        }
        if let Some(st) = &spec.storage {
            if st != "file" && st != "memory" {
                p(
                    &format!("{key}.storage"),
                    format!("`{st}`: expected file or memory"),
                );
            }
        }
    }
}

/// `[consumer]` or `[[consumers]]`: named durables (on a hot stream, filter
/// within its subjects, an ack policy) and selectors (hot streams only).
fn validate_consumers(raw: &RawConfig, p: Problems<'_>) -> ConsumersConfig {
    let mut out = ConsumersConfig {
        named: Vec::new(),
        selectors: Vec::new(),
    };
    match (&raw.consumer, raw.consumers.is_empty()) {
        (Some(_), false) => p(
            "consumers",
            "set either [consumer] (one durable) or [[consumers]], not both".into(),
        ),
        (None, true) => p(
            "consumer",
            "missing: set [consumer] (one durable) or [[consumers]] (durables and selectors)"
                .into(),
        ),
        _ => {}
    }
    if let Some(c) = &raw.consumer {
        check_named(raw, "consumer", c, p);
        let mut c = c.clone();
        c.key = "consumer".into();
        out.named.push(c);
    }
    for (i, e) in raw.consumers.iter().enumerate() {
        let key = format!("consumers[{i}]");
        match (e.durable.trim().is_empty(), e.streams.is_empty()) {
            (false, true) => {
                if let Some(c) = named_entry(&key, e, p) {
                    check_named(raw, &key, &c, p);
                    out.named.push(c);
                }
            }
            (true, false) => out.selectors.push(selector_entry(raw, &key, e, p)),
            (false, false) => p(
                &format!("{key}.streams"),
                "a named durable (durable) or a selector (streams), not both".into(),
            ),
            (true, true) => p(
                &key,
                "set durable (one consumer) or streams (every durable on them)".into(),
            ),
        }
    }
    let mut seen = BTreeSet::new();
    for c in &out.named {
        if !seen.insert((c.stream.as_str(), c.durable.as_str())) {
            p(
                "consumers",
                format!("durable {} on {} is listed twice", c.durable, c.stream),
            );
        }
    }
    out
}

/// A `[[consumers]]` entry with `durable`: the fields `[consumer]` requires.
fn named_entry(key: &str, e: &RawConsumerEntry, p: Problems<'_>) -> Option<ConsumerConfig> {
    let mut missing = |field: &str| {
        p(
            &format!("{key}.{field}"),
            format!("missing field `{field}`"),
        )
    };
    if e.stream.trim().is_empty() {
        missing("stream");
    }
    if e.filter_subject.is_none() {
        missing("filter_subject");
    }
    if e.ack_wait.is_none() {
        missing("ack_wait");
    }
    if e.max_deliver.is_none() {
        missing("max_deliver");
    }
    for (field, set) in [
        ("durable_prefix", !e.durable_prefix.is_empty()),
        ("exclude", !e.exclude.is_empty()),
        ("min_count", e.min_count.is_some()),
        ("overrides", !e.overrides.is_empty()),
    ] {
        if set {
            p(
                &format!("{key}.{field}"),
                "only a selector (streams = [...]) takes this".into(),
            );
        }
    }
    Some(ConsumerConfig {
        stream: e.stream.clone(),
        durable: e.durable.clone(),
        filter_subject: e.filter_subject.clone()?,
        ack_policy: e.ack_policy.clone().unwrap_or_else(default_ack_policy),
        ack_wait: e.ack_wait?,
        max_deliver: e.max_deliver?,
        max_ack_pending: e.max_ack_pending,
        lag_warn: e.lag_warn,
        lag_fail: e.lag_fail,
        key: key.to_string(),
    })
}

/// A `[[consumers]]` entry with `streams`: hot streams, sane expectations.
fn selector_entry(
    raw: &RawConfig,
    key: &str,
    e: &RawConsumerEntry,
    p: Problems<'_>,
) -> ConsumerSelector {
    if !e.stream.is_empty() {
        p(
            &format!("{key}.stream"),
            "a selector names its streams in `streams`".into(),
        );
    }
    for (i, s) in e.streams.iter().enumerate() {
        if !raw.streams.hot.iter().any(|h| &h.name == s) {
            p(
                &format!("{key}.streams[{i}]"),
                format!("`{s}` is not one of the hot streams"),
            );
        }
    }
    let expect = e.expectation();
    check_expect(raw, key, &expect, &e.streams, p);
    let mut overrides = BTreeMap::new();
    for (name, o) in &e.overrides {
        let okey = format!("{key}.overrides.{name}");
        let o = o.to_expect();
        check_expect(raw, &okey, &expect.overlaid(&o), &e.streams, p);
        overrides.insert(name.clone(), o);
    }
    ConsumerSelector {
        key: key.to_string(),
        streams: e.streams.clone(),
        durable_prefix: e.durable_prefix.clone(),
        exclude: e.exclude.clone(),
        min_count: e.min_count.unwrap_or(1),
        expect,
        overrides,
    }
}

/// A named durable: on a hot stream, filter within its subjects, a name.
fn check_named(raw: &RawConfig, key: &str, c: &ConsumerConfig, p: Problems<'_>) {
    if !raw.streams.hot.iter().any(|s| s.name == c.stream) {
        p(
            &format!("{key}.stream"),
            format!("`{}` is not one of the hot streams", c.stream),
        );
    }
    if c.durable.trim().is_empty() {
        p(&format!("{key}.durable"), "must not be empty".into());
    }
    check_expect(
        raw,
        key,
        &c.expectation(),
        std::slice::from_ref(&c.stream),
        p,
    );
}

/// Expected settings: a known ack policy, a filter within one of the
/// streams' subjects, lag levels in order.
fn check_expect(
    raw: &RawConfig,
    key: &str,
    e: &ConsumerExpect,
    streams: &[String],
    p: Problems<'_>,
) {
    if let Some(policy) = &e.ack_policy {
        if !matches!(policy.as_str(), "explicit" | "all" | "none") {
            p(
                &format!("{key}.ack_policy"),
                format!("`{policy}`: expected explicit, all or none"),
            );
        }
    }
    if let Some(filter) = &e.filter_subject {
        let hot: Vec<&StreamSpec> = raw
            .streams
            .hot
            .iter()
            .filter(|h| streams.contains(&h.name))
            .collect();
        let covered = hot.iter().any(|h| {
            h.subjects
                .iter()
                .any(|pat| subjects::pattern_covers(pat, filter))
        });
        if !hot.is_empty() && !covered {
            let names: Vec<&str> = hot.iter().map(|h| h.name.as_str()).collect();
            p(
                &format!("{key}.filter_subject"),
                format!(
                    "`{filter}` is not within the subjects of stream {}",
                    names.join(", ")
                ),
            );
        }
    }
    let warn = e.lag_warn.unwrap_or(raw.criteria.lag_warn);
    let fail = e.lag_fail.unwrap_or(raw.criteria.lag_fail);
    if (e.lag_warn.is_some() || e.lag_fail.is_some()) && warn > fail {
        p(
            &format!("{key}.lag_warn"),
            format!("{warn} is above lag_fail {fail}"),
        );
    }
}

/// The metrics endpoint and metric names.
fn check_metrics(raw: &RawConfig, p: Problems<'_>) {
    match url::Url::parse(&raw.metrics.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        Ok(u) => p(
            "metrics.url",
            format!("scheme `{}`: expected http or https", u.scheme()),
        ),
        Err(e) => p("metrics.url", format!("not a URL: {e}")),
    }
    if raw.metrics.max_body_bytes == 0 {
        p("metrics.max_body_bytes", "must be greater than 0".into());
    }
    if !is_metric_name(&raw.metrics.messages_counter) {
        p("metrics.messages_counter", "not a valid metric name".into());
    }
    for (key, name) in [
        ("metrics.latency_histogram", &raw.metrics.latency_histogram),
        (
            "metrics.process_start_metric",
            &raw.metrics.process_start_metric,
        ),
    ] {
        if !name.is_empty() && !is_metric_name(name) {
            p(key, format!("`{name}` is not a valid metric name"));
        }
    }
}

/// The database URL, table and derived-column check.
fn check_database(raw: &RawConfig, p: Problems<'_>) {
    let Some(db) = &raw.database else { return };
    match url::Url::parse(&db.url) {
        Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {}
        Ok(u) => p(
            "database.url",
            format!("scheme `{}`: expected postgres", u.scheme()),
        ),
        Err(e) => p("database.url", format!("not a URL: {e}")),
    }
    for (key, v) in [
        ("database.table", &db.table),
        ("database.created_column", &db.created_column),
    ] {
        if v.trim().is_empty() {
            p(key, "must not be empty".into());
        }
    }
    if let Some(d) = &db.derived {
        if !(d.tolerance >= 0.0 && d.tolerance.is_finite()) {
            p(
                "database.derived.tolerance",
                "must be a finite number >= 0".into(),
            );
        }
        if d.sample_rows <= 0 {
            p("database.derived.sample_rows", "must be > 0".into());
        }
    }
}

/// Log patterns (compiled) and the scan budget.
fn check_log(raw: &RawConfig, p: Problems<'_>) -> (Vec<regex::Regex>, Vec<regex::Regex>) {
    let compile =
        |key: &str, pats: &[String], p: &mut dyn FnMut(&str, String)| -> Vec<regex::Regex> {
            pats.iter()
                .enumerate()
                .filter_map(|(i, s)| match regex::Regex::new(s) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        let first = e
                            .to_string()
                            .lines()
                            .last()
                            .unwrap_or("invalid")
                            .trim()
                            .to_string();
                        p(
                            &format!("{key}[{i}]"),
                            format!("bad regular expression: {first}"),
                        );
                        None
                    }
                })
                .collect()
        };
    let Some(log) = &raw.log else {
        return (Vec::new(), Vec::new());
    };
    let fallback_patterns = compile("log.fallback_patterns", &log.fallback_patterns, p);
    let ignore_patterns = compile("log.ignore_patterns", &log.ignore_patterns, p);
    if log.max_scan_bytes == 0 {
        p(
            "log.max_scan_bytes",
            "must be greater than 0 (0 would scan nothing and never see a fallback)".into(),
        );
    }
    if log.fallback_patterns.is_empty() {
        p(
            "log.fallback_patterns",
            "at least one pattern is required".into(),
        );
    }
    (fallback_patterns, ignore_patterns)
}

/// The service env's ack-wait unit.
fn check_service_env(raw: &RawConfig, p: Problems<'_>) {
    let Some(env) = &raw.service_env else { return };
    if !matches!(env.ack_wait_unit.as_str(), "ms" | "s") {
        p(
            "service_env.ack_wait_unit",
            format!("`{}`: expected ms or s", env.ack_wait_unit),
        );
    }
}

/// Thresholds that contradict each other or cannot be met.
fn check_criteria(raw: &RawConfig, p: Problems<'_>) {
    let c = &raw.criteria;
    if c.lag_warn > c.lag_fail {
        p(
            "criteria.lag_warn",
            "must not exceed criteria.lag_fail".into(),
        );
    }
    if c.redeliveries_warn > c.redeliveries_fail {
        p(
            "criteria.redeliveries_warn",
            "must not exceed criteria.redeliveries_fail".into(),
        );
    }
    if !(c.success_rate_min > 0.0 && c.success_rate_min <= 1.0) {
        p("criteria.success_rate_min", "must be in (0, 1]".into());
    }
    if !(c.latency_quantile > 0.0 && c.latency_quantile < 1.0) {
        p("criteria.latency_quantile", "must be in (0, 1)".into());
    }
}

/// The daemon's schedule, checkpoints, holds, spike rule and listener.
fn validate_watch(raw: &RawConfig, base: &Path, p: Problems<'_>) -> WatchConfig {
    let w = &raw.watch;
    if w.interval < MIN_INTERVAL {
        p(
            "watch.interval",
            format!(
                "`{}`: must be at least {} (a shorter one spins the CPU and starves signal handling)",
                humantime::format_duration(w.interval),
                humantime::format_duration(MIN_INTERVAL)
            ),
        );
    }
    let mut checkpoints = Vec::new();
    for (i, c) in w.checkpoints.iter().enumerate() {
        match humantime::parse_duration(c) {
            Ok(d) if d.is_zero() => p(
                &format!("watch.checkpoints[{i}]"),
                format!("`{c}`: must be after T0 (greater than 0)"),
            ),
            Ok(d) if d > crate::duration::MAX => p(
                &format!("watch.checkpoints[{i}]"),
                format!("`{c}`: {}", crate::duration::TooLong),
            ),
            Ok(d) if d > raw.soak.duration => p(
                &format!("watch.checkpoints[{i}]"),
                format!(
                    "`{c}`: past the end of the soak (soak.duration = {}); it would never be written",
                    humantime::format_duration(raw.soak.duration)
                ),
            ),
            Ok(d) => checkpoints.push(d),
            Err(e) => p(&format!("watch.checkpoints[{i}]"), format!("`{c}`: {e}")),
        }
    }
    let mut fail_for = BTreeMap::new();
    for (id, d) in &w.fail_for {
        match humantime::parse_duration(d).map(|d| (d, crate::duration::check(d))) {
            Ok((_, Err(e))) => p(&format!("watch.for.{}", id.as_str()), format!("`{d}`: {e}")),
            Ok((d, Ok(()))) => {
                fail_for.insert(*id, d);
            }
            Err(e) => p(&format!("watch.for.{}", id.as_str()), format!("`{d}`: {e}")),
        }
    }
    if !(w.min_coverage > 0.0 && w.min_coverage <= 1.0) {
        p("watch.min_coverage", "must be in (0, 1]".into());
    }
    let listen = if w.listen.trim().is_empty() {
        None
    } else {
        match w.listen.parse::<std::net::SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                p(
                    "watch.listen",
                    format!("`{}`: {e} (use host:port, or \"\" for none)", w.listen),
                );
                None
            }
        }
    };
    // A negative, zero or non-finite rate would make every cycle a spike (a
    // negative one fired a real rollback on a healthy system).
    if !(w.dlq_spike_per_min.is_finite() && w.dlq_spike_per_min > 0.0) {
        p(
            "watch.dlq_spike_per_min",
            format!(
                "`{}`: must be a finite number of messages per minute greater than 0 (seed: 10)",
                w.dlq_spike_per_min
            ),
        );
    }
    if w.dlq_spike_window < w.interval || w.dlq_spike_window.is_zero() {
        p(
            "watch.dlq_spike_window",
            format!(
                "`{}`: must be at least watch.interval ({}): a shorter window is never covered by two samples",
                humantime::format_duration(w.dlq_spike_window),
                humantime::format_duration(w.interval)
            ),
        );
    }
    let max_gap = w.max_gap.unwrap_or(w.interval * 3);
    if max_gap < w.interval {
        p("watch.max_gap", "must be at least watch.interval".into());
    }
    WatchConfig {
        interval: w.interval,
        state: resolve_path(base, &w.state),
        reports_dir: resolve_path(base, &w.reports_dir),
        checkpoints,
        min_coverage: w.min_coverage,
        max_gap,
        recover_after: w.recover_after,
        fail_for,
        dlq_spike_per_min: w.dlq_spike_per_min,
        dlq_spike_window: w.dlq_spike_window,
        listen,
        keep_full_snapshots: w.keep_full_snapshots,
        thin_to: w.thin_to,
        at_end: w.at_end,
    }
}

/// An enabled route's sink, from its kind; `None` when it cannot be built
/// (what is wrong is reported, under `key(field)`).
fn route_sink(
    r: &RawRoute,
    key: &dyn Fn(&str) -> String,
    p: Problems<'_>,
) -> Option<crate::alert::sink::Sink> {
    use crate::alert::sink::{
        AlertmanagerSink, EmailSink, Sink, SmtpTls, WebhookFormat, WebhookSink,
    };
    let timeout = r.timeout.unwrap_or_else(default_sink_timeout);
    let http_url = |p: &mut dyn FnMut(&str, String)| match url::Url::parse(&r.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => true,
        Ok(u) => {
            p(
                &key("url"),
                format!("scheme `{}`: expected http or https", u.scheme()),
            );
            false
        }
        Err(e) => {
            p(&key("url"), format!("not a URL: {e}"));
            false
        }
    };
    match r.kind.as_str() {
        "email" => {
            if r.smtp_host.trim().is_empty() {
                p(&key("smtp_host"), "required for an email route".into());
            }
            if r.from.trim().is_empty() {
                p(&key("from"), "required for an email route".into());
            }
            if r.to.is_empty() {
                p(&key("to"), "at least one recipient is required".into());
            }
            let tls = r.smtp_tls.unwrap_or(SmtpTls::Starttls);
            let port = r.smtp_port.unwrap_or(match tls {
                SmtpTls::Starttls => 587,
                SmtpTls::Tls => 465,
                SmtpTls::None => 25,
            });
            Some(Sink::Email(EmailSink {
                host: r.smtp_host.clone(),
                port,
                tls,
                username: r.username.clone(),
                password: Secret::new(r.password.clone()),
                from: r.from.clone(),
                to: r.to.clone(),
                timeout,
            }))
        }
        "webhook" | "slack" => http_url(&mut *p).then(|| {
            let format = if r.kind == "slack" {
                WebhookFormat::Slack
            } else {
                r.format.unwrap_or(WebhookFormat::Soakwatch)
            };
            Sink::Webhook(WebhookSink {
                url: SecretUrl::with_secret_path(r.url.clone()),
                hmac_secret: Secret::new(r.hmac_secret.clone()),
                format,
                timeout,
            })
        }),
        "alertmanager" => http_url(&mut *p).then(|| {
            Sink::Alertmanager(AlertmanagerSink {
                base_url: SecretUrl::new(r.url.clone()),
                timeout,
            })
        }),
        other => {
            p(
                &key("kind"),
                format!("`{other}`: expected email, webhook, slack or alertmanager"),
            );
            None
        }
    }
}

/// Routes (every one checked, enabled or not) and the alert policy.
fn validate_alerts(
    raw: &RawConfig,
    p: Problems<'_>,
) -> std::sync::Arc<crate::alert::routes::AlertsConfig> {
    let mut routes = Vec::new();
    let mut route_names = BTreeSet::new();
    for (i, r) in raw.alerts.routes.iter().enumerate() {
        let key = |f: &str| format!("alerts.routes[{i}].{f}");
        if r.name.trim().is_empty() {
            p(&key("name"), "must not be empty".into());
        }
        if !route_names.insert(r.name.clone()) {
            p(
                &key("name"),
                format!("route `{}` is configured twice", r.name),
            );
        }
        if !r.enabled {
            // A disabled route is still checked where it can be: enabling it
            // later must not be the moment a `file://` URL is discovered.
            if !r.url.trim().is_empty() {
                match url::Url::parse(&r.url) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                    Ok(u) => p(
                        &key("url"),
                        format!("scheme `{}`: expected http or https", u.scheme()),
                    ),
                    Err(e) => p(&key("url"), format!("not a URL: {e}")),
                }
            }
            continue;
        }
        let sink = route_sink(r, &key, &mut *p);
        if let Some(sink) = sink {
            routes.push(crate::alert::routes::Route {
                name: r.name.clone(),
                severities: r.severities.clone(),
                criteria: r.criteria.clone(),
                sink,
            });
        }
    }
    let has_am = routes
        .iter()
        .any(|r| matches!(r.sink, crate::alert::sink::Sink::Alertmanager(_)));
    if has_am && raw.alerts.repeat_interval >= crate::alert::sink::AM_RESEND_HORIZON {
        p(
            "alerts.repeat_interval",
            format!(
                "must be shorter than {} with an alertmanager route (Alertmanager ends alerts not re-sent in time)",
                humantime::format_duration(crate::alert::sink::AM_RESEND_HORIZON)
            ),
        );
    }
    std::sync::Arc::new(crate::alert::routes::AlertsConfig {
        repeat_interval: raw.alerts.repeat_interval,
        unknown_after: raw.alerts.unknown_after,
        severity: raw.alerts.severity.clone(),
        max_backoff: raw.alerts.max_backoff,
        routes,
    })
}

/// `[rollback]`: the triggers that fire it, then the runbook's own checks.
/// Unknown keys and wrong types were collected with the rest of the file.
fn validate_rollback(raw: &RawConfig, base: &Path, p: Problems<'_>) -> Option<RollbackSettings> {
    let mut run = raw.rollback.clone()?;
    run.env_file = resolve_path(base, &run.env_file.to_string_lossy());
    run.log_file = resolve_path(base, &run.log_file.to_string_lossy());
    // `./restart.sh` next to the config; a bare name (`systemctl`) is looked
    // up on PATH as always.
    if let Some(cmd) = run.restart_command.first_mut() {
        if cmd.contains('/') {
            *cmd = resolve_path(base, cmd).to_string_lossy().into_owned();
        }
    }
    let triggers = match run.triggers.take() {
        None => [("service_up", 120), ("db_writes", 120), ("dlq_spike", 0)]
            .into_iter()
            .map(|(name, secs)| RollbackTrigger {
                name: name.into(),
                criterion: crate::verdict::CriterionId::parse(name),
                hold: Duration::from_secs(secs),
            })
            .collect(),
        Some(given) => given
            .into_iter()
            .filter_map(|(name, hold)| {
                let criterion = crate::verdict::CriterionId::parse(&name);
                if criterion.is_none() && name != "dlq_spike" {
                    p(
                        &format!("rollback.triggers.{name}"),
                        format!("`{name}`: expected a criterion id or dlq_spike"),
                    );
                    return None;
                }
                let hold = hold.into_inner();
                if let Err(e) = crate::duration::check(hold) {
                    p(&format!("rollback.triggers.{name}"), e.to_string());
                    return None;
                }
                Some(RollbackTrigger {
                    name,
                    criterion,
                    hold,
                })
            })
            .collect(),
    };
    for problem in run.validate() {
        let (k, m) = problem.split_once(':').unwrap_or(("", problem.as_str()));
        p(&format!("rollback.{}", k.trim()), m.trim().to_string());
    }
    Some(RollbackSettings { run, triggers })
}

/// `[state]`: the backend, its connection (the watched NATS unless
/// `nats_url` is given) and the lease.
/// `[state]` timing: the lease's length and the request timeout the
/// fencing proof needs (docs/HA.md, "The fencing rule").
fn validate_state_timing(raw: &RawConfig, backend: StateBackend, p: Problems<'_>) {
    let s = &raw.state;
    if s.lease_intervals < 2 {
        p(
            "state.lease_intervals",
            "must be at least 2 (the leader steps down one interval before its lease expires)"
                .into(),
        );
    }
    // The fencing proof (docs/HA.md): the leader's fence closes one interval
    // before its lease could expire, and a standby takes over only after the
    // whole lease. A write started just before the fence closes must end
    // (land or time out) inside that interval.
    if backend == StateBackend::JetStream && s.request_timeout >= raw.watch.interval {
        p(
            "state.request_timeout",
            format!(
                "`{}`: must be shorter than watch.interval ({}): the fence closes one interval before the lease could expire, and a state write started just before it closes must end within that interval, or a deposed leader's write could land in the next leader's term",
                humantime::format_duration(s.request_timeout),
                humantime::format_duration(raw.watch.interval)
            ),
        );
    }
    if s.request_timeout.is_zero() {
        p("state.request_timeout", "must be greater than 0".into());
    }
    let lease = raw.watch.interval.checked_mul(s.lease_intervals);
    if lease.is_none_or(|d| d > crate::duration::MAX) {
        p(
            "state.lease_intervals",
            format!(
                "{} x watch.interval is a lease over the longest duration soakwatch accepts, {}",
                s.lease_intervals,
                crate::duration::MAX_SHOWN
            ),
        );
    }
}

fn validate_state(raw: &RawConfig, base: &Path, p: Problems<'_>) -> StateConfig {
    let s = &raw.state;
    let backend = match s.backend.as_str() {
        "sqlite" => StateBackend::Sqlite,
        "jetstream" => StateBackend::JetStream,
        other => {
            p(
                "state.backend",
                format!("`{other}`: expected `sqlite` or `jetstream`"),
            );
            StateBackend::Sqlite
        }
    };
    if !(1..=5).contains(&s.replicas) {
        p("state.replicas", "must be 1 to 5".into());
    }
    validate_state_timing(raw, backend, p);
    if !s.bucket.is_empty()
        && !s
            .bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        p(
            "state.bucket",
            format!("`{}`: only letters, digits, `_` and `-`", s.bucket),
        );
    }
    if s.user.is_empty() != s.password.is_empty() {
        p(
            "state.password",
            "set `state.user` and `state.password` together".into(),
        );
    }
    let nats = if s.nats_url.trim().is_empty() {
        NatsConfig {
            url: SecretUrl::new(raw.nats.url.clone()),
            token: Secret::new(raw.nats.token.clone()),
            user: raw.nats.user.clone(),
            password: Secret::new(raw.nats.password.clone()),
            creds_file: non_empty_path(base, &raw.nats.creds_file),
            tls_required: raw.nats.tls_required,
            tls_ca_file: non_empty_path(base, &raw.nats.tls_ca_file),
            tls_cert_file: non_empty_path(base, &raw.nats.tls_cert_file),
            tls_key_file: non_empty_path(base, &raw.nats.tls_key_file),
        }
    } else {
        NatsConfig {
            url: SecretUrl::new(s.nats_url.clone()),
            token: Secret::new(s.token.clone()),
            user: s.user.clone(),
            password: Secret::new(s.password.clone()),
            creds_file: non_empty_path(base, &s.creds_file),
            tls_required: s.tls_required,
            tls_ca_file: non_empty_path(base, &s.tls_ca_file),
            tls_cert_file: non_empty_path(base, &s.tls_cert_file),
            tls_key_file: non_empty_path(base, &s.tls_key_file),
        }
    };
    if s.tls_cert_file.is_empty() != s.tls_key_file.is_empty() {
        p(
            "state.tls_key_file",
            "set `state.tls_cert_file` and `state.tls_key_file` together".into(),
        );
    }
    if s.nats_url.trim().is_empty()
        && (s.tls_required || !s.tls_ca_file.is_empty() || !s.tls_cert_file.is_empty())
    {
        p(
            "state.tls_ca_file",
            "TLS settings of [state] apply to `state.nats_url`; without it the [nats] connection (and its TLS) is used".into(),
        );
    }
    let bucket = if s.bucket.is_empty() {
        let clean: String = raw
            .soak
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("soakwatch_{clean}")
    } else {
        s.bucket.clone()
    };
    StateConfig {
        backend,
        nats,
        bucket,
        replicas: s.replicas,
        lease_intervals: s.lease_intervals,
        request_timeout: s.request_timeout,
        max_clock_skew: s.max_clock_skew,
        max_age: s.max_age.unwrap_or(
            raw.soak
                .duration
                .saturating_add(Duration::from_secs(7 * 24 * 3600)),
        ),
    }
}
