//! The evaluator: snapshots in, verdicts out. No I/O and no clock of its own.
//!
//! "Now" is the newest snapshot's `taken_at`, and the window is the span from
//! the oldest to the newest, so recorded history replays exactly. A probe that
//! failed makes the criteria that need it `unknown` with its reason; a fact
//! that is bad (a missing stream, a grown DLQ) is a `fail` even when another
//! part of the same criterion could not be checked.

use chrono::{DateTime, Utc};

use crate::config::{Config, StreamSpec};
use crate::histogram;
use crate::sample::{ConsumerState, MetricsState, Probed, Snapshot, StreamState};
use crate::subjects;
use crate::verdict::{CriterionId as C, Status, Verdict};

/// One piece of evidence inside a criterion; the criterion takes the worst.
struct Part {
    status: Status,
    text: String,
}

fn part(status: Status, text: impl Into<String>) -> Part {
    Part {
        status,
        text: text.into(),
    }
}

/// Worst status of the parts; evidence lists the worst parts first.
fn combine(mut parts: Vec<Part>) -> (Status, String) {
    if parts.is_empty() {
        return (Status::Unknown, "nothing to evaluate".into());
    }
    parts.sort_by_key(|p| std::cmp::Reverse(p.status));
    // One dead server explains many parts: say it once.
    let mut seen = std::collections::HashSet::new();
    parts.retain(|p| seen.insert(p.text.clone()));
    let worst = parts[0].status;
    let shown: Vec<&str> = if worst == Status::Pass {
        parts.iter().map(|p| p.text.as_str()).collect()
    } else {
        parts
            .iter()
            .filter(|p| p.status != Status::Pass)
            .map(|p| p.text.as_str())
            .collect()
    };
    (worst, shown.join("; "))
}

fn secs(d: std::time::Duration) -> String {
    humantime::format_duration(std::time::Duration::from_secs(d.as_secs().max(1))).to_string()
}

fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let d = (now - t).to_std().unwrap_or_default();
    format!(
        "{} ago",
        humantime::format_duration(std::time::Duration::from_secs(d.as_secs()))
    )
}

fn pct(x: f64) -> String {
    let s = format!("{:.3}", x * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// Fewest observations in a window for its own latency quantile.
const MIN_WINDOW_OBSERVATIONS: f64 = 20.0;

/// Evidence of zero events. A family declared with no samples (or with
/// series all at zero) after a restart or in quiet hours means nothing was
/// processed, not that something is unknown: `dlq`, `success_rate`,
/// `stream_purity` and `p95_latency` pass with this text, so a freshly
/// restarted or idle service does not block sign-off on its own. (A service
/// that stopped consuming is caught by `consumer_lag`'s stalled rule and by
/// `db_writes`, not here.)
pub const NO_TRAFFIC: &str = "no messages processed since the service started";

/// Messages counted by the counter, all results.
fn processed(ms: &MetricsState) -> f64 {
    ms.by_result.values().sum()
}

/// " (family: filtered by ...)" for evidence, empty when no matcher applies.
fn filter_note(f: Option<&crate::sample::FamilyFacts>) -> String {
    match f.map(|f| f.filter_note()) {
        Some(n) if !n.is_empty() => format!(" ({n})"),
        _ => String::new(),
    }
}

/// Evaluates every criterion over `history` (oldest first; at least one snapshot).
pub fn evaluate(cfg: &Config, history: &[Snapshot]) -> Vec<Verdict> {
    let Some(last) = history.last() else {
        return C::ALL
            .iter()
            .map(|id| Verdict::unknown(*id, "", "no samples taken"))
            .collect();
    };
    let first = history.first().unwrap_or(last);
    let ctx = Ctx { cfg, first, last };
    vec![
        ctx.topology(),
        ctx.consumer_config(),
        ctx.consumer_lag(),
        ctx.redeliveries(),
        ctx.legacy_idle(),
        ctx.dlq(),
        ctx.fallback(),
        ctx.stream_purity(),
        ctx.success_rate(history),
        ctx.p95_latency(),
        ctx.db_writes(history),
        ctx.db_integrity(),
        ctx.service_up(history),
    ]
}

struct Ctx<'a> {
    cfg: &'a Config,
    first: &'a Snapshot,
    last: &'a Snapshot,
}

impl Ctx<'_> {
    fn window_secs(&self) -> f64 {
        (self.last.taken_at - self.first.taken_at).num_milliseconds() as f64 / 1000.0
    }

    fn stream<'s>(&self, snap: &'s Snapshot, name: &str) -> &'s Probed<Option<StreamState>> {
        static MISSING: std::sync::OnceLock<Probed<Option<StreamState>>> =
            std::sync::OnceLock::new();
        snap.streams.get(name).unwrap_or_else(|| {
            MISSING.get_or_init(|| {
                Err(crate::sample::ProbeFailure {
                    probe: crate::sample::ProbeKind::Stream,
                    reason: "stream was not probed".into(),
                })
            })
        })
    }

    fn topology(&self) -> Verdict {
        let target =
            "expected streams, subjects and settings; no subject overlap; DLQ present".to_string();
        let mut parts = Vec::new();
        let mut seen: Vec<(String, Vec<String>)> = Vec::new();
        let specs = self.cfg.streams.all();
        for spec in &specs {
            let is_dlq = spec.name == self.cfg.streams.dlq.name;
            match self.stream(self.last, &spec.name) {
                Err(f) => parts.push(part(Status::Unknown, f.reason.clone())),
                Ok(None) => parts.push(part(
                    Status::Fail,
                    format!(
                        "{}stream {} does not exist",
                        if is_dlq { "DLQ " } else { "" },
                        spec.name
                    ),
                )),
                Ok(Some(s)) => {
                    parts.extend(stream_drift(spec, s));
                    seen.push((s.name.clone(), s.subjects.clone()));
                }
            }
        }
        for o in subjects::find_overlaps(&seen) {
            parts.push(part(
                Status::Fail,
                format!(
                    "subjects overlap: {} `{}` and {} `{}`",
                    o.stream_a, o.subject_a, o.stream_b, o.subject_b
                ),
            ));
        }
        let problems = parts.iter().filter(|p| p.status != Status::Pass).count();
        if problems == 0 {
            parts.push(part(
                Status::Pass,
                format!(
                    "{} streams as expected, no overlapping subjects",
                    specs.len()
                ),
            ));
        }
        let ok = seen.len();
        let (status, evidence) = combine(parts);
        Verdict::new(
            C::Topology,
            status,
            format!(
                "{ok}/{} streams present, {problems} problem(s)",
                specs.len()
            ),
            target,
            evidence,
        )
        .with_value(problems as f64, None, Some(1.0))
    }

    fn consumer_config(&self) -> Verdict {
        let cc = &self.cfg.consumer;
        let target = format!(
            "{} on {}: filter {}, ack {}, ack_wait {}, max_deliver {}",
            cc.durable,
            cc.stream,
            cc.filter_subject,
            cc.ack_policy,
            secs(cc.ack_wait),
            cc.max_deliver
        );
        let mut parts = Vec::new();
        let mut actual_ack_wait = None;
        match &self.last.consumer {
            Err(f) => parts.push(part(Status::Unknown, f.reason.clone())),
            Ok(None) => parts.push(part(
                Status::Fail,
                format!(
                    "durable {} does not exist on stream {}",
                    cc.durable, cc.stream
                ),
            )),
            Ok(Some(c)) => {
                actual_ack_wait = Some(c.ack_wait_secs);
                let mut diffs = Vec::new();
                if c.durable_name.as_deref() != Some(cc.durable.as_str()) {
                    diffs.push("not durable".to_string());
                }
                if let Some(ds) = &c.deliver_subject {
                    diffs.push(format!(
                        "push consumer (deliver subject {ds}), expected pull"
                    ));
                }
                if c.filter_subject != cc.filter_subject {
                    diffs.push(format!(
                        "filter `{}` (expected `{}`)",
                        c.filter_subject, cc.filter_subject
                    ));
                }
                if c.ack_policy != cc.ack_policy {
                    diffs.push(format!(
                        "ack policy {} (expected {})",
                        c.ack_policy, cc.ack_policy
                    ));
                }
                if (c.ack_wait_secs - cc.ack_wait.as_secs_f64()).abs() > 0.001 {
                    diffs.push(format!(
                        "ack_wait {}s (expected {})",
                        c.ack_wait_secs,
                        secs(cc.ack_wait)
                    ));
                }
                if c.max_deliver != cc.max_deliver {
                    diffs.push(format!(
                        "max_deliver {} (expected {})",
                        c.max_deliver, cc.max_deliver
                    ));
                }
                if let Some(m) = cc.max_ack_pending {
                    if c.max_ack_pending != m {
                        diffs.push(format!(
                            "max_ack_pending {} (expected {m})",
                            c.max_ack_pending
                        ));
                    }
                }
                if diffs.is_empty() {
                    parts.push(part(
                        Status::Pass,
                        format!("{} on {} as expected", cc.durable, cc.stream),
                    ));
                } else {
                    parts.push(part(
                        Status::Fail,
                        format!("consumer drift: {}", diffs.join(", ")),
                    ));
                }
            }
        }
        let env_cfg = &self.cfg.service_env;
        match &self.last.env {
            Err(f) => parts.push(part(Status::Unknown, f.reason.clone())),
            Ok(env) => {
                let path = env_cfg.path.display();
                if let Some(key) = &env_cfg.ack_wait_key {
                    match env.values.get(key) {
                        None => {
                            parts.push(part(Status::Fail, format!("{key} is not set in {path}")))
                        }
                        Some((v, line)) => {
                            let num = v.trim().parse::<f64>();
                            let scale = if env_cfg.ack_wait_unit == "ms" {
                                0.001
                            } else {
                                1.0
                            };
                            let consumer_secs =
                                actual_ack_wait.unwrap_or(cc.ack_wait.as_secs_f64());
                            match num {
                                Err(_) => parts.push(part(
                                    Status::Fail,
                                    format!("{path}:{line}: {key}={v} is not a number"),
                                )),
                                Ok(n) if (n * scale - consumer_secs).abs() > 0.001 => parts.push(part(
                                    Status::Fail,
                                    format!(
                                        "{path}:{line}: {key}={v} ({}s) but the consumer's ack_wait is {consumer_secs}s",
                                        n * scale
                                    ),
                                )),
                                Ok(_) => parts.push(part(
                                    Status::Pass,
                                    format!("service ack wait {key}={v} matches the consumer"),
                                )),
                            }
                        }
                    }
                }
                for (key, want) in &env_cfg.expect {
                    match env.values.get(key) {
                        None => parts.push(part(
                            Status::Fail,
                            format!("{key} is not set in {path} (expected {want})"),
                        )),
                        Some((v, line)) if v != want => parts.push(part(
                            Status::Fail,
                            format!("{path}:{line}: {key}={v} (expected {want})"),
                        )),
                        Some(_) => parts.push(part(Status::Pass, format!("{key}={want}"))),
                    }
                }
            }
        }
        let (status, evidence) = combine(parts);
        let observed = match status {
            Status::Pass => "as expected".to_string(),
            Status::Unknown => "unknown".to_string(),
            _ => "drift".to_string(),
        };
        Verdict::new(C::ConsumerConfig, status, observed, target, evidence)
    }

    fn consumer(&self) -> Result<&ConsumerState, String> {
        match &self.last.consumer {
            Err(f) => Err(f.reason.clone()),
            Ok(None) => Err(format!(
                "durable {} does not exist on stream {}",
                self.cfg.consumer.durable, self.cfg.consumer.stream
            )),
            Ok(Some(c)) => Ok(c),
        }
    }

    fn consumer_lag(&self) -> Verdict {
        let cr = &self.cfg.criteria;
        let target = format!("pending + ack pending < {}; not stalled", cr.lag_fail);
        let c = match self.consumer() {
            Err(r) => return Verdict::unknown(C::ConsumerLag, target, r),
            Ok(c) => c,
        };
        let lag = c.num_pending + c.num_ack_pending;
        let observed = format!(
            "{lag} (pending {} + ack pending {})",
            c.num_pending, c.num_ack_pending
        );
        let mut parts = Vec::new();
        if lag >= cr.lag_fail {
            parts.push(part(Status::Fail, format!("lag {lag} >= {}", cr.lag_fail)));
        } else if lag >= cr.lag_warn {
            parts.push(part(
                Status::Warn,
                format!("lag {lag} >= warning level {}", cr.lag_warn),
            ));
        } else {
            parts.push(part(Status::Pass, format!("lag {lag}")));
        }
        // Stalled: work is waiting, nobody pulls, and nothing was delivered for
        // longer than ack_wait (redelivery only happens on a pull).
        let ack_wait = chrono::Duration::milliseconds((c.ack_wait_secs * 1000.0) as i64);
        let now = self.last.taken_at;
        let idle_since = c.delivered_last_active;
        let idle_too_long = match idle_since {
            Some(t) => now - t > ack_wait,
            None => true,
        };
        if c.num_pending > 0 && c.num_waiting == 0 && idle_too_long {
            let last = idle_since
                .map(|t| format!("last delivery {}", ago(now, t)))
                .unwrap_or_else(|| "never delivered".into());
            parts.push(part(
                Status::Fail,
                format!(
                    "stalled: {} pending, {last} (> ack_wait {}s), no pull waiting",
                    c.num_pending, c.ack_wait_secs
                ),
            ));
        }
        let (status, evidence) = combine(parts);
        Verdict::new(C::ConsumerLag, status, observed, target, evidence).with_value(
            lag as f64,
            Some(cr.lag_warn as f64),
            Some(cr.lag_fail as f64),
        )
    }

    fn redeliveries(&self) -> Verdict {
        let cr = &self.cfg.criteria;
        let target = format!(
            "< {} redelivered (warn at {})",
            cr.redeliveries_fail, cr.redeliveries_warn
        );
        let c = match self.consumer() {
            Err(r) => return Verdict::unknown(C::Redeliveries, target, r),
            Ok(c) => c,
        };
        let n = c.num_redelivered;
        let status = if n >= cr.redeliveries_fail {
            Status::Fail
        } else if n >= cr.redeliveries_warn {
            Status::Warn
        } else {
            Status::Pass
        };
        Verdict::new(
            C::Redeliveries,
            status,
            n.to_string(),
            target,
            format!(
                "{n} message(s) being redelivered (ack_wait {}s, max_deliver {})",
                c.ack_wait_secs, c.max_deliver
            ),
        )
        .with_value(
            n as f64,
            Some(cr.redeliveries_warn as f64),
            Some(cr.redeliveries_fail as f64),
        )
    }

    /// Growth of a baselined stream: (status part, messages now).
    fn baseline_growth(&self, spec: &StreamSpec, what: &str) -> (Vec<Part>, Option<u64>) {
        let mut parts = Vec::new();
        let s = match self.stream(self.last, &spec.name) {
            Err(f) => return (vec![part(Status::Unknown, f.reason.clone())], None),
            Ok(None) => {
                return (
                    vec![part(
                        Status::Unknown,
                        format!("{what} stream {} does not exist", spec.name),
                    )],
                    None,
                )
            }
            Ok(Some(s)) => s,
        };
        let mut judged = false;
        if let Some(b) = spec.baseline_last_seq {
            judged = true;
            if s.last_seq > b {
                parts.push(part(
                    Status::Fail,
                    format!(
                        "{} written to {} since cutover (last_seq {} > baseline {b})",
                        s.last_seq - b,
                        spec.name,
                        s.last_seq
                    ),
                ));
            }
        }
        if let Some(b) = spec.baseline_messages {
            judged = true;
            if s.messages > b {
                parts.push(part(
                    Status::Fail,
                    format!(
                        "{} holds {} messages (baseline {b}: +{})",
                        spec.name,
                        s.messages,
                        s.messages - b
                    ),
                ));
            } else if s.messages < b {
                parts.push(part(
                    Status::Pass,
                    format!(
                        "{} holds {} messages, fewer than the baseline {b} (expired or purged)",
                        spec.name, s.messages
                    ),
                ));
            }
        }
        if let Ok(Some(f)) = self.stream(self.first, &spec.name) {
            if s.last_seq > f.last_seq {
                let per_min =
                    (s.last_seq - f.last_seq) as f64 / (self.window_secs() / 60.0).max(1.0 / 60.0);
                parts.push(part(
                    Status::Fail,
                    format!(
                        "{} new message(s) on {} during the {:.1}s window ({per_min:.1}/min)",
                        s.last_seq - f.last_seq,
                        spec.name,
                        self.window_secs()
                    ),
                ));
            }
        }
        if !judged && self.window_secs() <= 0.0 {
            parts.push(part(
                Status::Unknown,
                format!(
                    "no baseline configured for {} and no window to compare",
                    spec.name
                ),
            ));
        }
        if parts.iter().all(|p| p.status == Status::Pass) {
            parts.push(part(
                Status::Pass,
                format!(
                    "{} unchanged: {} messages, last_seq {}",
                    spec.name, s.messages, s.last_seq
                ),
            ));
        }
        (parts, Some(s.messages))
    }

    fn legacy_idle(&self) -> Verdict {
        let spec = &self.cfg.streams.legacy;
        let target = match (spec.baseline_messages, spec.baseline_last_seq) {
            (_, Some(seq)) => format!("last_seq stays {seq}"),
            (Some(m), None) => format!("messages stay {m}"),
            (None, None) => "no new messages".into(),
        };
        let (parts, messages) = self.baseline_growth(spec, "legacy");
        let (status, evidence) = combine(parts);
        let v = Verdict::new(
            C::LegacyIdle,
            status,
            messages
                .map(|m| format!("{m} messages"))
                .unwrap_or_else(|| "unknown".into()),
            target,
            evidence,
        );
        match (messages, spec.baseline_messages) {
            (Some(m), b) => v.with_value(m as f64, None, b.map(|b| b as f64 + 1.0)),
            _ => v,
        }
    }

    fn metrics<'s>(&self, snap: &'s Snapshot) -> Result<&'s MetricsState, String> {
        snap.metrics.as_ref().map_err(|f| f.reason.clone())
    }

    /// The newest sample's message counter, when it can be read. A family
    /// declared with no samples reads as zero events (prom-client and
    /// prometheus_client print a labelled counter that way until its first
    /// event); an absent or unmatched family, NaN/infinite/negative values or
    /// duplicate series are the reason it cannot be read.
    fn counter(&self) -> Result<&MetricsState, String> {
        let ms = self.metrics(self.last)?;
        match &ms.counter {
            Some(f) => match f.unusable() {
                Some(reason) => Err(reason),
                None => Ok(ms),
            },
            // A record from before the family facts were kept.
            None if ms.counter_found => Ok(ms),
            None => Err(format!(
                "counter {} not found in /metrics",
                self.cfg.metrics.messages_counter
            )),
        }
    }

    fn dlq(&self) -> Verdict {
        let spec = &self.cfg.streams.dlq;
        let m = &self.cfg.metrics;
        let target = format!(
            "{} stays at {} message(s); {}{{{}=\"{}\"}} = 0",
            spec.name,
            spec.baseline_messages
                .map(|b| b.to_string())
                .unwrap_or_else(|| "its baseline".into()),
            m.messages_counter,
            m.result_label,
            m.dlq_result
        );
        let (mut parts, messages) = self.baseline_growth(spec, "DLQ");
        let mut dlq_count = None;
        match self.counter() {
            Err(r) => parts.push(part(Status::Unknown, r)),
            Ok(ms) => {
                let n = ms.by_result.get(&m.dlq_result).copied().unwrap_or(0.0);
                dlq_count = Some(n);
                if n > 0.0 {
                    parts.push(part(
                        Status::Fail,
                        format!(
                            "{n} message(s) dead-lettered since the service started ({}=\"{}\")",
                            m.result_label, m.dlq_result
                        ),
                    ));
                } else if processed(ms) <= 0.0 {
                    parts.push(part(
                        Status::Pass,
                        format!("{NO_TRAFFIC}{}", filter_note(ms.counter.as_ref())),
                    ));
                } else {
                    parts.push(part(
                        Status::Pass,
                        format!(
                            "{}=\"{}\" count 0{}",
                            m.result_label,
                            m.dlq_result,
                            filter_note(ms.counter.as_ref())
                        ),
                    ));
                }
            }
        }
        let (status, evidence) = combine(parts);
        let observed = format!(
            "{} in {}, {} by counter",
            messages
                .map(|m| m.to_string())
                .unwrap_or_else(|| "?".into()),
            spec.name,
            dlq_count
                .map(|n| n.to_string())
                .unwrap_or_else(|| "?".into())
        );
        let growth = match (messages, spec.baseline_messages) {
            (Some(m), Some(b)) => m.saturating_sub(b) as f64,
            _ => 0.0,
        } + dlq_count.unwrap_or(0.0);
        Verdict::new(C::Dlq, status, observed, target, evidence).with_value(growth, None, Some(1.0))
    }

    fn fallback(&self) -> Verdict {
        let legacy = &self.cfg.streams.legacy.name;
        let target = "0 fallback events".to_string();
        let mut parts = Vec::new();
        let mut events = 0.0;
        match &self.last.log {
            Err(f) => parts.push(part(Status::Unknown, f.reason.clone())),
            // Counted since the tail started: a fallback seen stays failing for
            // the soak, through rotations and while the log is unreadable.
            Ok(l) if l.fallback_total.max(l.fallback_count) > 0 => {
                let n = l.fallback_total.max(l.fallback_count);
                events += n as f64;
                parts.push(part(
                    Status::Fail,
                    format!(
                        "{n} fallback line(s) in {}; last: {}{}",
                        self.cfg.log.path.display(),
                        l.last_fallback.as_deref().unwrap_or(""),
                        l.unreadable
                            .as_deref()
                            .map(|r| format!(" (now: {r})"))
                            .unwrap_or_default()
                    ),
                ));
            }
            Ok(l) if l.unreadable.is_some() => parts.push(part(
                Status::Unknown,
                l.unreadable.clone().unwrap_or_default(),
            )),
            // Behind after a burst: what is not read yet is not known clean.
            // Unknown rather than pass, so the verdict never claims unread lines.
            Ok(l) if l.backlog_bytes > 0 => parts.push(part(
                Status::Unknown,
                format!(
                    "catching up: {:.1} MiB of {} behind, no fallback line in the {} line(s) read so far",
                    l.backlog_bytes as f64 / (1024.0 * 1024.0),
                    self.cfg.log.path.display(),
                    l.lines_total.max(l.lines_scanned)
                ),
            )),
            Ok(l) => parts.push(part(
                Status::Pass,
                format!(
                    "no fallback line in {} ({} lines scanned{})",
                    self.cfg.log.path.display(),
                    l.lines_total.max(l.lines_scanned),
                    if l.ignored_total.max(l.ignored_count) > 0 {
                        format!(
                            ", {} candidate line(s) ignored",
                            l.ignored_total.max(l.ignored_count)
                        )
                    } else {
                        String::new()
                    }
                ),
            )),
        }
        match self.metrics(self.last) {
            Err(r) => parts.push(part(Status::Unknown, r)),
            Ok(ms) => {
                let active: Vec<&(String, f64)> =
                    ms.legacy_series.iter().filter(|(_, v)| *v > 0.0).collect();
                if let Some((series, v)) = active.first() {
                    events += active.iter().map(|(_, v)| v).sum::<f64>();
                    parts.push(part(
                        Status::Fail,
                        format!(
                            "{} series labelled with {legacy}, e.g. {series} = {v}",
                            active.len()
                        ),
                    ));
                } else if let Some((series, _)) = ms.legacy_series.first() {
                    parts.push(part(
                        Status::Warn,
                        format!("series labelled with {legacy} exists (value 0): {series}"),
                    ));
                } else {
                    parts.push(part(
                        Status::Pass,
                        format!("no /metrics series labelled with {legacy}"),
                    ));
                }
            }
        }
        let (status, evidence) = combine(parts);
        let observed = if status == Status::Unknown {
            "unknown".into()
        } else {
            format!("{events}")
        };
        Verdict::new(C::Fallback, status, observed, target, evidence).with_value(
            events,
            None,
            Some(1.0),
        )
    }

    fn stream_purity(&self) -> Verdict {
        let expected = &self.cfg.consumer.stream;
        let target = format!(
            "100% of processed messages labelled {}=\"{expected}\"",
            self.cfg.metrics.stream_label
        );
        let ms = match self.counter() {
            Err(r) => return Verdict::unknown(C::StreamPurity, target, r),
            Ok(ms) => ms,
        };
        let total: f64 = ms.by_stream.values().sum();
        if total <= 0.0 {
            // Zero events is not a wrong stream: nothing to judge, nothing wrong.
            return Verdict::new(
                C::StreamPurity,
                Status::Pass,
                "0 messages",
                target,
                format!("{NO_TRAFFIC}{}", filter_note(ms.counter.as_ref())),
            );
        }
        let on = ms.by_stream.get(expected).copied().unwrap_or(0.0);
        let ratio = on / total;
        let others: Vec<String> = ms
            .by_stream
            .iter()
            .filter(|(k, v)| *k != expected && **v > 0.0)
            .map(|(k, v)| format!("{}={v}", if k.is_empty() { "(no label)" } else { k }))
            .collect();
        let status = if others.is_empty() {
            Status::Pass
        } else {
            Status::Fail
        };
        let evidence = if others.is_empty() {
            format!(
                "{on} of {total} messages on {expected}{}",
                filter_note(ms.counter.as_ref())
            )
        } else {
            format!(
                "{on} of {total} on {expected}; elsewhere: {}",
                others.join(", ")
            )
        };
        Verdict::new(C::StreamPurity, status, pct(ratio), target, evidence).with_value(
            ratio * 100.0,
            None,
            Some(100.0),
        )
    }

    /// (success, counted) totals from one metrics sample.
    fn success_counts(&self, ms: &MetricsState) -> (f64, f64) {
        let m = &self.cfg.metrics;
        let success = ms.by_result.get(&m.success_result).copied().unwrap_or(0.0);
        let counted: f64 = ms
            .by_result
            .iter()
            .filter(|(k, _)| !m.uncounted_results.contains(k))
            .map(|(_, v)| v)
            .sum();
        (success, counted)
    }

    fn success_rate(&self, history: &[Snapshot]) -> Verdict {
        let min = self.cfg.criteria.success_rate_min;
        let target = format!(">= {}", pct(min));
        let ms = match self.counter() {
            Err(r) => return Verdict::unknown(C::SuccessRate, target, r),
            Ok(ms) => ms,
        };
        let (success, counted) = self.success_counts(ms);
        if counted <= 0.0 {
            // Zero events (a fresh restart, quiet hours): no failure to count.
            return Verdict::new(
                C::SuccessRate,
                Status::Pass,
                "n/a (0 messages)",
                target,
                format!("{NO_TRAFFIC}{}", filter_note(ms.counter.as_ref())),
            );
        }
        let rate = success / counted;
        let mut evidence = format!(
            "{success}/{counted} since the service started{}",
            filter_note(ms.counter.as_ref())
        );
        // Over a window, the same ratio from increases (across counter resets).
        let series: Vec<(f64, f64)> = history
            .iter()
            .filter_map(|s| s.metrics.as_ref().ok().map(|m| self.success_counts(m)))
            .collect();
        if series.len() >= 2 {
            let (ds, _) =
                histogram::counter_increase(&series.iter().map(|x| x.0).collect::<Vec<_>>());
            let (dc, _) =
                histogram::counter_increase(&series.iter().map(|x| x.1).collect::<Vec<_>>());
            if dc > 0.0 {
                evidence.push_str(&format!("; {ds}/{dc} in the window"));
            }
        }
        let status = if rate >= min {
            Status::Pass
        } else {
            Status::Fail
        };
        Verdict::new(C::SuccessRate, status, pct(rate), target, evidence).with_value(
            rate * 100.0,
            None,
            Some(min * 100.0),
        )
    }

    fn p95_latency(&self) -> Verdict {
        let cr = &self.cfg.criteria;
        let q = cr.latency_quantile;
        let max_s = cr.p95_max.as_secs_f64();
        let target = format!(
            "p{} < {}",
            (q * 100.0).round(),
            humantime::format_duration(cr.p95_max)
        );
        let Some(name) = &self.cfg.metrics.latency_histogram else {
            return Verdict::new(
                C::P95Latency,
                Status::NotConfigured,
                "n/a",
                target,
                "no latency histogram configured (metrics.latency_histogram)",
            );
        };
        let ms = match self.metrics(self.last) {
            Err(r) => return Verdict::unknown(C::P95Latency, target, r),
            Ok(ms) => ms,
        };
        if let Some(f) = &ms.latency {
            if let Some(reason) = f.unusable() {
                return Verdict::unknown(C::P95Latency, target, reason);
            }
            if f.declared_empty() {
                return Verdict::new(
                    C::P95Latency,
                    Status::Pass,
                    "n/a (0 observations)",
                    target,
                    NO_TRAFFIC,
                );
            }
        }
        let Some(buckets) = &ms.histogram else {
            return Verdict::unknown(
                C::P95Latency,
                target,
                format!("histogram {name} not found in /metrics"),
            );
        };
        // Prefer the window's own observations; with no traffic in the window
        // (or a reset), the cumulative histogram since start still tells.
        let mut scope = "since the service started";
        let mut use_buckets = buckets.clone();
        if let Ok(first) = self.metrics(self.first) {
            if let Some(fb) = &first.histogram {
                if let Some(d) = histogram::delta(fb, buckets) {
                    // A quantile of a handful of observations is noise: one slow
                    // message is "p95". Below that, judge the cumulative histogram.
                    if d.last().is_some_and(|(_, c)| *c >= MIN_WINDOW_OBSERVATIONS) {
                        use_buckets = d;
                        scope = "in the window";
                    }
                }
            }
        }
        let count = use_buckets.last().map(|(_, c)| *c).unwrap_or(0.0);
        let Some(v) = histogram::quantile(q, &use_buckets) else {
            if count == 0.0 {
                // Series exist with zero observations: zero events, as above.
                return Verdict::new(
                    C::P95Latency,
                    Status::Pass,
                    "n/a (0 observations)",
                    target,
                    format!("{NO_TRAFFIC}{}", filter_note(ms.latency.as_ref())),
                );
            }
            return Verdict::unknown(
                C::P95Latency,
                target,
                format!("histogram {name} has no +Inf bucket or no finite bucket to interpolate"),
            );
        };
        // Too few observations to speak of a p95: over target is a warning.
        let few = count < MIN_WINDOW_OBSERVATIONS;
        let status = if v < max_s {
            Status::Pass
        } else if few {
            Status::Warn
        } else {
            Status::Fail
        };
        Verdict::new(
            C::P95Latency,
            status,
            format!("{:.1} ms", v * 1000.0),
            target,
            format!(
                "p{} from {count} observations {scope} (bucket interpolation){}{}",
                (q * 100.0).round(),
                if few { "; too few to judge a tail" } else { "" },
                filter_note(ms.latency.as_ref())
            ),
        )
        .with_value(v * 1000.0, None, Some(max_s * 1000.0))
    }

    fn db_writes(&self, history: &[Snapshot]) -> Verdict {
        let target = "rows written while messages succeed".to_string();
        if history.len() < 2 || self.window_secs() <= 0.0 {
            return Verdict::unknown(
                C::DbWrites,
                target,
                "needs two samples: run check with --window (e.g. --window 30s)",
            );
        }
        let db = match &self.last.db {
            Err(f) => return Verdict::unknown(C::DbWrites, target, f.reason.clone()),
            Ok(d) => d,
        };
        let successes: Vec<f64> = history
            .iter()
            .filter_map(|s| s.metrics.as_ref().ok())
            .map(|m| {
                m.by_result
                    .get(&self.cfg.metrics.success_result)
                    .copied()
                    .unwrap_or(0.0)
            })
            .collect();
        if self.metrics(self.first).is_err() || self.metrics(self.last).is_err() {
            let reason = self
                .metrics(self.last)
                .err()
                .or_else(|| self.metrics(self.first).err())
                .unwrap_or_default();
            return Verdict::unknown(C::DbWrites, target, reason);
        }
        let (delta, _) = histogram::counter_increase(&successes);
        let Some(rows) = db.written_since(self.first.taken_at) else {
            return Verdict::unknown(
                C::DbWrites,
                target,
                "rows written in the window were not counted",
            );
        };
        let newest = db
            .newest_write
            .map(|t| format!("newest row {}", ago(self.last.taken_at, t)))
            .unwrap_or_else(|| "table empty".into());
        let w = self.window_secs();
        let (status, evidence) = if delta > 0.0 && rows == 0 {
            (
                Status::Fail,
                format!("{delta} message(s) succeeded in the last {w:.1}s but no row was written ({newest})"),
            )
        } else if delta > 0.0 {
            (
                Status::Pass,
                format!("{delta} success(es) and {rows} row(s) written in {w:.1}s ({newest})"),
            )
        } else {
            (
                Status::Pass,
                format!(
                    "no successful message in the {w:.1}s window, nothing to write ({newest}; {} row(s) in the last {})",
                    db.rows_recent,
                    humantime::format_duration(std::time::Duration::from_secs(db.recent_window_secs as u64))
                ),
            )
        };
        Verdict::new(
            C::DbWrites,
            status,
            format!("{rows} rows / {delta} successes in {w:.1}s"),
            target,
            evidence,
        )
        .with_value(rows as f64, None, None)
    }

    fn db_integrity(&self) -> Verdict {
        let tol = self.cfg.criteria.db_in_flight_tolerance;
        let target = format!("rows written >= successes - {tol} (in flight) since service start; derived column exact");
        let db = match &self.last.db {
            Err(f) => return Verdict::unknown(C::DbIntegrity, target, f.reason.clone()),
            Ok(d) => d,
        };
        let mut parts = Vec::new();
        let mut missing_val = None;
        match self.metrics(self.last) {
            Err(r) => parts.push(part(Status::Unknown, r)),
            Ok(ms) => match ms.process_start.and_then(|s| DateTime::from_timestamp_micros((s * 1e6) as i64)) {
                None => parts.push(part(
                    Status::Unknown,
                    "no process start time in /metrics: cannot align rows with the service's counters",
                )),
                Some(ps) => match db.written_since(ps) {
                    None => parts.push(part(Status::Unknown, "rows since the service started were not counted")),
                    Some(rows) => {
                        let success = ms.by_result.get(&self.cfg.metrics.success_result).copied().unwrap_or(0.0);
                        let missing = success - rows as f64;
                        missing_val = Some(missing.max(0.0));
                        let cols = db.write_columns.join("/");
                        if missing > tol as f64 {
                            parts.push(part(
                                Status::Fail,
                                format!(
                                    "{missing} record(s) missing: {success} successes but {rows} rows written (by {cols}) since the service started at {}",
                                    ps.format("%Y-%m-%d %H:%M:%SZ")
                                ),
                            ));
                        } else if -missing > tol as f64 {
                            parts.push(part(
                                Status::Warn,
                                format!("{rows} rows written (by {cols}) but only {success} successes since the service started: another writer?"),
                            ));
                        } else {
                            parts.push(part(
                                Status::Pass,
                                format!("{rows} rows written (by {cols}) for {success} successes since the service started (an upsert of an existing user/date counts once)"),
                            ));
                        }
                    }
                },
            },
        }
        if let Some(der) = &self.cfg.database.derived {
            match (db.derived_checked, db.derived_bad) {
                (Some(n), Some(bad)) if bad > 0 => parts.push(part(
                    Status::Fail,
                    format!(
                        "{bad} of the {n} newest rows have {} != {}({}) (max error {})",
                        der.column,
                        der.function.sql(),
                        der.source,
                        db.derived_max_error
                            .map(|e| format!("{e:e}"))
                            .unwrap_or_else(|| "n/a".into())
                    ),
                )),
                (Some(n), Some(_)) => parts.push(part(
                    Status::Pass,
                    format!(
                        "{} = {}({}) within {:e} on the {n} newest rows",
                        der.column,
                        der.function.sql(),
                        der.source,
                        der.tolerance
                    ),
                )),
                _ => parts.push(part(Status::Unknown, "derived-column check did not run")),
            }
        }
        let notes = db.notes.join("; ");
        let (status, mut evidence) = combine(parts);
        if !notes.is_empty() {
            evidence.push_str(&format!(" [note: {notes}]"));
        }
        let observed = match missing_val {
            Some(m) => format!("{m} missing"),
            None => "unknown".into(),
        };
        let v = Verdict::new(C::DbIntegrity, status, observed, target, evidence);
        match missing_val {
            Some(m) => v.with_value(m, None, Some(tol as f64 + 1.0)),
            None => v,
        }
    }

    fn service_up(&self, history: &[Snapshot]) -> Verdict {
        let target = "metrics endpoint answers; no restart".to_string();
        let ms = match self.metrics(self.last) {
            // It answered, but more than we agreed to read: not known to be down.
            Err(r) if r.contains(crate::probe::metrics::OVER_CAP_MARK) => {
                return Verdict::unknown(C::ServiceUp, target, r)
            }
            Err(r) => {
                return Verdict::new(C::ServiceUp, Status::Fail, "down", target, r).with_value(
                    0.0,
                    None,
                    Some(0.0),
                )
            }
            Ok(ms) => ms,
        };
        let mut parts = Vec::new();
        if ms.parse_error_count > 0 {
            parts.push(part(
                Status::Warn,
                format!(
                    "{} bad line(s) in /metrics, first: {}",
                    ms.parse_error_count,
                    ms.parse_errors.first().cloned().unwrap_or_default()
                ),
            ));
        }
        let starts: Vec<f64> = history
            .iter()
            .filter_map(|s| s.metrics.as_ref().ok().and_then(|m| m.process_start))
            .collect();
        if starts.windows(2).any(|w| (w[1] - w[0]).abs() > 0.5) {
            parts.push(part(
                Status::Fail,
                "the service restarted during the window (process start time changed)",
            ));
        }
        let totals: Vec<f64> = history
            .iter()
            .filter_map(|s| {
                s.metrics
                    .as_ref()
                    .ok()
                    .map(|m| m.by_result.values().sum::<f64>())
            })
            .collect();
        let (_, resets) = histogram::counter_increase(&totals);
        if resets > 0 {
            parts.push(part(
                Status::Fail,
                format!("counter reset seen {resets} time(s): the service restarted"),
            ));
        }
        let now = self.last.taken_at;
        let mut uptime = None;
        if let Some(ps) = ms
            .process_start
            .and_then(|s| DateTime::from_timestamp_micros((s * 1e6) as i64))
        {
            uptime = Some((now - ps).num_seconds().max(0) as f64);
            if let Some(t0) = self.cfg.soak.started_at {
                let grace =
                    chrono::Duration::from_std(self.cfg.criteria.restart_grace).unwrap_or_default();
                if ps > t0 + grace {
                    parts.push(part(
                        Status::Warn,
                        format!(
                            "the service (re)started at {}, after the soak began at {}",
                            ps.format("%Y-%m-%d %H:%M:%SZ"),
                            t0.format("%Y-%m-%d %H:%M:%SZ")
                        ),
                    ));
                }
            }
        }
        parts.push(part(
            Status::Pass,
            format!(
                "metrics answered ({} bytes){}",
                ms.body_bytes,
                uptime
                    .map(|u| format!(
                        ", up {}",
                        humantime::format_duration(std::time::Duration::from_secs(u as u64))
                    ))
                    .unwrap_or_default()
            ),
        ));
        let (status, evidence) = combine(parts);
        let observed = match uptime {
            Some(u) => format!(
                "up {}",
                humantime::format_duration(std::time::Duration::from_secs(u as u64))
            ),
            None => "up".into(),
        };
        let v = Verdict::new(C::ServiceUp, status, observed, target, evidence);
        v.with_value(1.0, None, Some(0.0))
    }
}

/// Differences between a stream's expected and actual settings.
fn stream_drift(spec: &StreamSpec, s: &StreamState) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut want: Vec<&String> = spec.subjects.iter().collect();
    let mut have: Vec<&String> = s.subjects.iter().collect();
    want.sort();
    have.sort();
    if want != have {
        parts.push(part(
            Status::Fail,
            format!(
                "{} subjects {:?} (expected {:?})",
                s.name, s.subjects, spec.subjects
            ),
        ));
    }
    if let Some(st) = &spec.storage {
        if &s.storage != st {
            parts.push(part(
                Status::Fail,
                format!("{} storage {} (expected {st})", s.name, s.storage),
            ));
        }
    }
    if let Some(r) = spec.replicas {
        if s.replicas != r {
            parts.push(part(
                Status::Fail,
                format!("{} replicas {} (expected {r})", s.name, s.replicas),
            ));
        }
    }
    if let Some(age) = spec.max_age {
        if (s.max_age_secs - age.as_secs_f64()).abs() > 0.5 {
            parts.push(part(
                Status::Fail,
                format!(
                    "{} max_age {}s (expected {})",
                    s.name,
                    s.max_age_secs,
                    secs(age)
                ),
            ));
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeZone;

    use super::*;
    use crate::sample::*;

    fn cfg() -> Config {
        let text = include_str!("../checks.toml");
        let mut c = Config::from_text(std::path::Path::new("checks.toml"), text, &|_: &str| None)
            .expect("shipped config");
        // The soak began shortly before the service started in these histories.
        c.soak.started_at = Some(t(-200));
        c
    }

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0)
            .single()
            .expect("valid time")
    }

    fn stream(spec: &StreamSpec, messages: u64) -> StreamState {
        StreamState {
            name: spec.name.clone(),
            subjects: spec.subjects.clone(),
            messages,
            bytes: messages * 200,
            first_seq: 1,
            last_seq: messages,
            last_ts: None,
            storage: "file".into(),
            replicas: 1,
            max_age_secs: spec.max_age.map(|d| d.as_secs_f64()).unwrap_or(0.0),
            consumer_count: 0,
        }
    }

    /// A healthy Phase B state at time `at` with `ok` successes so far.
    fn healthy(c: &Config, at: i64, ok: f64) -> Snapshot {
        let mut streams = BTreeMap::new();
        streams.insert(
            c.streams.legacy.name.clone(),
            Ok(Some(stream(&c.streams.legacy, 55))),
        );
        for h in &c.streams.hot {
            streams.insert(h.name.clone(), Ok(Some(stream(h, ok as u64))));
        }
        streams.insert(
            c.streams.dlq.name.clone(),
            Ok(Some(stream(&c.streams.dlq, 1))),
        );
        let consumer = ConsumerState {
            stream: c.consumer.stream.clone(),
            name: c.consumer.durable.clone(),
            num_pending: 0,
            num_ack_pending: 0,
            num_redelivered: 0,
            num_waiting: 1,
            delivered_consumer_seq: ok as u64,
            delivered_stream_seq: ok as u64,
            delivered_last_active: Some(t(at - 1)),
            ack_floor_consumer_seq: ok as u64,
            ack_floor_stream_seq: ok as u64,
            ack_floor_last_active: Some(t(at - 1)),
            filter_subject: c.consumer.filter_subject.clone(),
            ack_policy: "explicit".into(),
            ack_wait_secs: 60.0,
            max_deliver: 5,
            max_ack_pending: 1000,
            durable_name: Some(c.consumer.durable.clone()),
            deliver_subject: None,
        };
        let process_start = t(-100);
        let metrics = MetricsState {
            body_bytes: 1000,
            counter_found: true,
            by_result: [("success".to_string(), ok)].into_iter().collect(),
            by_stream: [(c.consumer.stream.clone(), ok)].into_iter().collect(),
            histogram: Some(vec![
                (0.05, ok * 0.9),
                (0.1, ok),
                (0.5, ok),
                (f64::INFINITY, ok),
            ]),
            process_start: Some(process_start.timestamp() as f64),
            ..Default::default()
        };
        let db = DbState {
            rows_recent: ok as i64,
            recent_window_secs: 600.0,
            newest_write: Some(t(at - 1)),
            written_since: vec![(process_start, ok as i64)],
            write_columns: vec!["createdAt".into(), "updatedAt".into()],
            derived_checked: Some(ok as i64),
            derived_bad: Some(0),
            derived_max_error: Some(0.0),
            notes: vec![],
        };
        let env = EnvState {
            values: [
                (
                    "NORMALIZE_HRV_ACK_WAIT_MS".to_string(),
                    ("60000".to_string(), 7),
                ),
                ("EVENT_STREAM_MODE".to_string(), ("multi".to_string(), 2)),
            ]
            .into_iter()
            .collect(),
        };
        Snapshot {
            taken_at: t(at),
            streams,
            consumer: Ok(Some(consumer)),
            metrics: Ok(metrics),
            db: Ok(db),
            log: Ok(LogState {
                lines_scanned: 6,
                ignored_count: 1,
                ..Default::default()
            }),
            env: Ok(env),
            probe_ms: BTreeMap::new(),
        }
    }

    /// Two healthy snapshots 10 s apart with 10 more successes and rows in between.
    fn healthy_window(c: &Config) -> Vec<Snapshot> {
        let a = healthy(c, 0, 100.0);
        let mut b = healthy(c, 10, 110.0);
        if let Ok(db) = &mut b.db {
            db.written_since.push((t(0), 10));
        }
        vec![a, b]
    }

    fn statuses(v: &[Verdict]) -> BTreeMap<&'static str, Status> {
        v.iter().map(|v| (v.id.as_str(), v.status)).collect()
    }

    /// Ids whose status is not pass.
    fn not_passing(v: &[Verdict]) -> Vec<(&'static str, Status)> {
        v.iter()
            .filter(|v| v.status != Status::Pass)
            .map(|v| (v.id.as_str(), v.status))
            .collect()
    }

    #[test]
    fn healthy_history_passes_everything() {
        let c = cfg();
        let v = evaluate(&c, &healthy_window(&c));
        assert_eq!(not_passing(&v), vec![], "{v:#?}");
        assert_eq!(v.len(), 13);
    }

    #[test]
    fn no_history_is_unknown_not_pass() {
        let v = evaluate(&cfg(), &[]);
        assert!(v.iter().all(|v| v.status == Status::Unknown));
    }

    #[test]
    fn single_sample_leaves_db_writes_unknown_only() {
        let c = cfg();
        let v = evaluate(&c, &[healthy(&c, 0, 100.0)]);
        assert_eq!(not_passing(&v), vec![("db_writes", Status::Unknown)]);
    }

    #[test]
    fn dlq_growth_fails_dlq_even_with_metrics_down() {
        let c = cfg();
        let mut h = healthy_window(&c);
        if let Some(Ok(Some(s))) = h[1].streams.get_mut(&c.streams.dlq.name) {
            s.messages = 2;
            s.last_seq = 2;
        }
        h[1].metrics = Err(ProbeFailure {
            probe: ProbeKind::Metrics,
            reason: "GET http://x/metrics: HTTP 500".into(),
        });
        let s = statuses(&evaluate(&c, &h));
        assert_eq!(s["dlq"], Status::Fail);
        assert_eq!(s["service_up"], Status::Fail);
        assert_eq!(s["success_rate"], Status::Unknown);
        assert_eq!(s["legacy_idle"], Status::Pass);
    }

    #[test]
    fn dlq_counter_alone_fails_dlq_and_success_rate() {
        let c = cfg();
        let mut h = healthy_window(&c);
        for snap in &mut h {
            if let Ok(m) = &mut snap.metrics {
                m.by_result.insert("dlq".into(), 1.0);
            }
        }
        let v = evaluate(&c, &h);
        assert_eq!(
            not_passing(&v),
            vec![("dlq", Status::Fail), ("success_rate", Status::Fail)]
        );
    }

    #[test]
    fn lag_thresholds_and_stall() {
        let c = cfg();
        let mut h = healthy_window(&c);
        let set = |h: &mut Vec<Snapshot>, pending: u64, waiting: u64, last: i64| {
            if let Ok(Some(cs)) = &mut h[1].consumer {
                cs.num_pending = pending;
                cs.num_waiting = waiting;
                cs.delivered_last_active = Some(t(last));
            }
        };
        set(&mut h, 9, 1, 9);
        assert_eq!(statuses(&evaluate(&c, &h))["consumer_lag"], Status::Warn);
        set(&mut h, 10, 1, 9);
        assert_eq!(statuses(&evaluate(&c, &h))["consumer_lag"], Status::Fail);
        // 2 pending, no puller, last delivery 61 s ago (> ack_wait 60 s): stalled.
        set(&mut h, 2, 0, 10 - 61);
        let v = evaluate(&c, &h);
        assert_eq!(not_passing(&v), vec![("consumer_lag", Status::Fail)]);
        assert!(v[2].evidence.contains("stalled"), "{}", v[2].evidence);
        // Same, but a pull is waiting: not stalled.
        set(&mut h, 2, 1, 10 - 61);
        assert_eq!(statuses(&evaluate(&c, &h))["consumer_lag"], Status::Pass);
    }

    #[test]
    fn legacy_write_fails_only_legacy_idle() {
        let c = cfg();
        let mut h = healthy_window(&c);
        if let Some(Ok(Some(s))) = h[1].streams.get_mut(&c.streams.legacy.name) {
            s.messages = 56;
            s.last_seq = 56;
        }
        assert_eq!(
            not_passing(&evaluate(&c, &h)),
            vec![("legacy_idle", Status::Fail)]
        );
    }

    #[test]
    fn legacy_expiry_is_not_a_write() {
        let c = cfg();
        let mut h = healthy_window(&c);
        for snap in &mut h {
            if let Some(Ok(Some(s))) = snap.streams.get_mut(&c.streams.legacy.name) {
                s.messages = 40;
            }
        }
        assert_eq!(statuses(&evaluate(&c, &h))["legacy_idle"], Status::Pass);
    }

    #[test]
    fn fallback_from_log_or_metrics() {
        let c = cfg();
        let mut h = healthy_window(&c);
        h[1].log = Ok(LogState {
            fallback_count: 1,
            last_fallback: Some("falling back to ATHLETE_ALLY_EVENTS".into()),
            ..Default::default()
        });
        assert_eq!(
            not_passing(&evaluate(&c, &h)),
            vec![("fallback", Status::Fail)]
        );

        let mut h = healthy_window(&c);
        if let Ok(m) = &mut h[1].metrics {
            m.legacy_series.push((
                "normalize_hrv_messages_total{stream=\"ATHLETE_ALLY_EVENTS\"}".into(),
                3.0,
            ));
            m.by_stream.insert("ATHLETE_ALLY_EVENTS".into(), 3.0);
        }
        let v = evaluate(&c, &h);
        assert_eq!(
            not_passing(&v),
            vec![("fallback", Status::Fail), ("stream_purity", Status::Fail)]
        );
    }

    #[test]
    fn a_fallback_seen_earlier_stays_failing_and_a_backlog_is_unknown() {
        let c = cfg();
        // Nothing new this cycle, but one seen before (another file, before a restart).
        let mut h = healthy_window(&c);
        h[1].log = Ok(LogState {
            fallback_total: 1,
            last_fallback: Some("falling back to ATHLETE_ALLY_EVENTS".into()),
            unreadable: Some("log file x does not exist".into()),
            ..Default::default()
        });
        let v = evaluate(&c, &h);
        assert_eq!(not_passing(&v), vec![("fallback", Status::Fail)]);
        let f = v.iter().find(|v| v.id == C::Fallback).expect("fallback");
        assert!(f.evidence.contains("does not exist"), "{}", f.evidence);

        // Behind after a burst, nothing seen yet: unknown, with how far behind.
        let mut h = healthy_window(&c);
        h[1].log = Ok(LogState {
            lines_scanned: 10,
            backlog_bytes: 3 << 20,
            ..Default::default()
        });
        let v = evaluate(&c, &h);
        assert_eq!(not_passing(&v), vec![("fallback", Status::Unknown)]);
        let f = v.iter().find(|v| v.id == C::Fallback).expect("fallback");
        assert!(
            f.evidence.contains("catching up: 3.0 MiB"),
            "{}",
            f.evidence
        );
    }

    #[test]
    fn a_metrics_body_over_the_cap_is_unknown_not_down() {
        let c = cfg();
        let mut h = healthy_window(&c);
        h[1].metrics = Err(crate::sample::ProbeFailure {
            probe: crate::sample::ProbeKind::Metrics,
            reason: format!(
                "GET x: body of 9 bytes (Content-Length) is over the cap of 1 bytes ({})",
                crate::probe::metrics::OVER_CAP_MARK
            ),
        });
        let v = evaluate(&c, &h);
        let up = v.iter().find(|v| v.id == C::ServiceUp).expect("service_up");
        assert_eq!(up.status, Status::Unknown);
    }

    #[test]
    fn writes_stopped_fails_db_writes_and_integrity() {
        let c = cfg();
        let mut h = healthy_window(&c);
        if let Ok(db) = &mut h[1].db {
            db.written_since = vec![(t(-100), 100), (t(0), 0)];
        }
        let v = evaluate(&c, &h);
        assert_eq!(
            not_passing(&v),
            vec![("db_writes", Status::Fail), ("db_integrity", Status::Fail)]
        );
    }

    #[test]
    fn derived_column_error_fails_integrity() {
        let c = cfg();
        let mut h = healthy_window(&c);
        if let Ok(db) = &mut h[1].db {
            db.derived_bad = Some(3);
            db.derived_max_error = Some(0.5);
        }
        assert_eq!(
            not_passing(&evaluate(&c, &h)),
            vec![("db_integrity", Status::Fail)]
        );
    }

    #[test]
    fn restart_in_window_and_after_t0() {
        let c = cfg();
        let mut h = healthy_window(&c);
        if let Ok(m) = &mut h[1].metrics {
            m.process_start = Some(t(5).timestamp() as f64);
            m.by_result.insert("success".into(), 3.0);
            m.by_stream.insert(c.consumer.stream.clone(), 3.0);
        }
        let s = statuses(&evaluate(&c, &h));
        assert_eq!(s["service_up"], Status::Fail);

        // One sample, but the service started well after T0 (+ 5 min grace): a warning.
        let mut c = cfg();
        c.soak.started_at = Some(t(-1000));
        let v = evaluate(&c, &[healthy(&c, 0, 10.0)]);
        assert_eq!(statuses(&v)["service_up"], Status::Warn);
        assert!(
            v[12].evidence.contains("after the soak began"),
            "{}",
            v[12].evidence
        );
    }

    #[test]
    fn slow_processing_fails_p95_from_window_delta() {
        let c = cfg();
        let mut h = healthy_window(&c);
        // The window's 30 new observations all took more than 0.5 s.
        if let Ok(m) = &mut h[1].metrics {
            m.histogram = Some(vec![
                (0.05, 90.0),
                (0.1, 100.0),
                (0.5, 100.0),
                (f64::INFINITY, 130.0),
            ]);
        }
        let v = evaluate(&c, &h);
        assert_eq!(not_passing(&v), vec![("p95_latency", Status::Fail)]);
        assert!(v[9].evidence.contains("in the window"), "{}", v[9].evidence);
    }

    #[test]
    fn a_slow_tail_of_a_few_messages_only_warns() {
        let c = cfg();
        let mut snap = healthy(&c, 0, 3.0);
        if let Ok(m) = &mut snap.metrics {
            m.histogram = Some(vec![
                (0.05, 2.0),
                (0.5, 2.0),
                (1.0, 3.0),
                (f64::INFINITY, 3.0),
            ]);
        }
        let v = evaluate(&c, &[snap]);
        assert_eq!(v[9].status, Status::Warn, "{:?}", v[9]);
        assert!(v[9].evidence.contains("too few"), "{}", v[9].evidence);
    }

    #[test]
    fn histogram_not_configured_is_reported_as_such() {
        let mut c = cfg();
        c.metrics.latency_histogram = None;
        let v = evaluate(&c, &healthy_window(&c));
        assert_eq!(
            not_passing(&v),
            vec![("p95_latency", Status::NotConfigured)]
        );
        assert_eq!(crate::verdict::overall(&v), Status::Pass);
    }

    #[test]
    fn ack_wait_drift_in_env_file() {
        let c = cfg();
        let mut h = healthy_window(&c);
        if let Ok(env) = &mut h[1].env {
            env.values
                .insert("NORMALIZE_HRV_ACK_WAIT_MS".into(), ("30000".into(), 7));
        }
        let v = evaluate(&c, &h);
        assert_eq!(not_passing(&v), vec![("consumer_config", Status::Fail)]);
        assert!(
            v[1].evidence
                .contains(":7: NORMALIZE_HRV_ACK_WAIT_MS=30000"),
            "{}",
            v[1].evidence
        );
    }

    #[test]
    fn overlapping_and_missing_streams_fail_topology() {
        let c = cfg();
        let mut h = healthy_window(&c);
        if let Some(Ok(Some(s))) = h[1].streams.get_mut(&c.streams.legacy.name) {
            s.subjects = vec!["athlete-ally.>".into()];
        }
        h[1].streams.insert(c.streams.dlq.name.clone(), Ok(None));
        let v = evaluate(&c, &h);
        assert_eq!(v[0].status, Status::Fail);
        assert!(v[0].evidence.contains("overlap"), "{}", v[0].evidence);
        assert!(
            v[0].evidence.contains("DLQ stream AA_DLQ does not exist"),
            "{}",
            v[0].evidence
        );
        // The DLQ's own criterion cannot judge a stream that is not there.
        assert_eq!(v[5].status, Status::Unknown);
    }

    #[test]
    fn probe_failures_make_dependents_unknown_never_pass() {
        let c = cfg();
        let mut h = healthy_window(&c);
        let f = |probe| ProbeFailure {
            probe,
            reason: "down".into(),
        };
        h[1].consumer = Err(f(ProbeKind::Consumer));
        h[1].db = Err(f(ProbeKind::Database));
        h[1].log = Err(f(ProbeKind::Log));
        h[1].env = Err(f(ProbeKind::ServiceEnv));
        let s = statuses(&evaluate(&c, &h));
        for id in [
            "consumer_config",
            "consumer_lag",
            "redeliveries",
            "fallback",
            "db_writes",
            "db_integrity",
        ] {
            assert_eq!(s[id], Status::Unknown, "{id}");
        }
        for id in [
            "topology",
            "legacy_idle",
            "dlq",
            "stream_purity",
            "success_rate",
            "service_up",
        ] {
            assert_eq!(s[id], Status::Pass, "{id}");
        }
    }

    // -----------------------------------------------------------------------------------------
    // Metric criteria on real client-library output (tests/fixtures/promtext).

    fn fixture_metrics(c: &Config, name: &str) -> MetricsState {
        let path = format!(
            "{}/tests/fixtures/promtext/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        crate::probe::metrics::extract(&crate::promtext::parse(&text), c, text.len() as u64)
    }

    /// Two snapshots 10 s apart of an idle service whose /metrics is `name`.
    fn idle_window(c: &Config, name: &str) -> Vec<Snapshot> {
        let mut a = healthy(c, 0, 0.0);
        let mut b = healthy(c, 10, 0.0);
        for snap in [&mut a, &mut b] {
            let mut m = fixture_metrics(c, name);
            // The fixtures' start time is fixed; align it with these histories' rows.
            m.process_start = Some(t(-100).timestamp() as f64);
            snap.metrics = Ok(m);
        }
        if let Ok(db) = &mut b.db {
            db.written_since.push((t(0), 0));
        }
        vec![a, b]
    }

    fn get(v: &[Verdict], id: C) -> &Verdict {
        v.iter().find(|v| v.id == id).expect("criterion evaluated")
    }

    const METRIC_CRITERIA: [C; 4] = [C::Dlq, C::SuccessRate, C::StreamPurity, C::P95Latency];

    #[test]
    fn a_freshly_started_service_with_declared_empty_families_passes() {
        let c = cfg();
        for name in [
            "nodejs_service_fresh.prom",
            "nodejs_service_fresh.openmetrics",
            "python_service_fresh.prom",
            "python_service_fresh.openmetrics",
        ] {
            let v = evaluate(&c, &idle_window(&c, name));
            assert!(not_passing(&v).is_empty(), "{name}: {:?}", not_passing(&v));
            for id in METRIC_CRITERIA {
                let e = &get(&v, id).evidence;
                assert!(e.contains(NO_TRAFFIC), "{name} {id:?}: {e}");
            }
            // One sample (check without --window): the metric criteria still pass.
            let one = evaluate(&c, &idle_window(&c, name)[1..]);
            for id in METRIC_CRITERIA {
                assert_eq!(get(&one, id).status, Status::Pass, "{name} {id:?}");
            }
        }
    }

    #[test]
    fn zero_valued_series_are_zero_events_too() {
        let c = cfg();
        let mut h = healthy_window(&c);
        for snap in &mut h {
            if let Ok(m) = &mut snap.metrics {
                m.by_result = [("success".to_string(), 0.0), ("dlq".to_string(), 0.0)]
                    .into_iter()
                    .collect();
                m.by_stream = [(c.consumer.stream.clone(), 0.0)].into_iter().collect();
                m.histogram = Some(vec![(0.1, 0.0), (f64::INFINITY, 0.0)]);
            }
        }
        let v = evaluate(&c, &h);
        for id in METRIC_CRITERIA {
            let got = get(&v, id);
            assert_eq!(got.status, Status::Pass, "{id:?}: {}", got.evidence);
            assert!(
                got.evidence.contains(NO_TRAFFIC),
                "{id:?}: {}",
                got.evidence
            );
        }
    }

    #[test]
    fn an_absent_family_is_unknown_with_did_you_mean() {
        let mut c = cfg();
        c.metrics.messages_counter = "normalize_hrv_message_total".into();
        let v = evaluate(&c, &idle_window(&c, "nodejs_service_fresh.prom"));
        for id in [C::Dlq, C::SuccessRate, C::StreamPurity] {
            let got = get(&v, id);
            assert_eq!(got.status, Status::Unknown, "{id:?}");
            assert!(
                got.evidence
                    .contains("did you mean normalize_hrv_messages_total,"),
                "{id:?}: {}",
                got.evidence
            );
        }
        // client_golang leaves an empty vector out entirely: absent, so unknown.
        let c = cfg();
        let v = evaluate(&c, &idle_window(&c, "go_service_fresh.prom"));
        for id in METRIC_CRITERIA {
            assert_eq!(get(&v, id).status, Status::Unknown, "{id:?}");
        }
    }

    #[test]
    fn nan_negative_and_duplicate_counters_are_unknown_never_pass() {
        let c = cfg();
        let v = evaluate(&c, &idle_window(&c, "python_service_broken.prom"));
        for id in METRIC_CRITERIA {
            let got = get(&v, id);
            assert_eq!(got.status, Status::Unknown, "{id:?}: {}", got.evidence);
            assert!(
                got.evidence.contains("cannot be trusted"),
                "{id:?}: {}",
                got.evidence
            );
        }
        assert!(get(&v, C::StreamPurity).evidence.contains("NaN"));
        assert!(get(&v, C::P95Latency).evidence.contains("buckets decrease"));
        assert!(get(&v, C::SuccessRate)
            .evidence
            .contains("duplicate series"));
    }

    #[test]
    fn traffic_from_the_libraries_passes_and_says_how_families_were_filtered() {
        let c = cfg();
        for name in [
            "nodejs_service_traffic.prom",
            "python_service_traffic.openmetrics",
            "go_service_traffic.prom",
        ] {
            let v = evaluate(&c, &idle_window(&c, name));
            let dlq = get(&v, C::Dlq);
            assert_eq!(
                dlq.status,
                Status::Fail,
                "{name}: one message was dead-lettered"
            );
            let purity = get(&v, C::StreamPurity);
            assert_eq!(purity.status, Status::Pass, "{name}: {}", purity.evidence);
            assert!(
                purity
                    .evidence
                    .contains("filtered by durable=\"normalize-hrv-durable\""),
                "{}",
                purity.evidence
            );
            // 41 observations since start, 3 of them slow: p95 lands in (0.25, 0.5].
            let p95 = get(&v, C::P95Latency);
            assert_eq!(p95.status, Status::Pass, "{name}: {}", p95.evidence);
            assert!(
                p95.evidence.contains("from 41 observations"),
                "{}",
                p95.evidence
            );
            assert!(
                p95.evidence
                    .contains("not by durable (the family has no such label)"),
                "{}",
                p95.evidence
            );
            let sr = get(&v, C::SuccessRate);
            assert!(sr.evidence.starts_with("40/41"), "{name}: {}", sr.evidence);
        }
    }

    #[test]
    fn unmatched_match_labels_are_unknown_and_list_what_exists() {
        let mut c = cfg();
        c.metrics.matchers = vec![("durable".into(), "normalize-hrv-durable-v2".into())];
        let v = evaluate(&c, &idle_window(&c, "nodejs_service_traffic.prom"));
        let sr = get(&v, C::SuccessRate);
        assert_eq!(sr.status, Status::Unknown);
        assert!(
            sr.evidence.contains("series that exist:")
                && sr.evidence.contains("durable=\"other-durable\""),
            "{}",
            sr.evidence
        );
        // The histogram carries no durable label, so it is still read.
        assert_eq!(get(&v, C::P95Latency).status, Status::Pass);
    }
}
