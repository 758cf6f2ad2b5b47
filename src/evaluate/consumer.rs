//! The watched consumers: their settings against the config and the
//! service's env file (`consumer_config`), their backlog (`consumer_lag`) and
//! redeliveries. Each is judged per consumer (an [`InstanceVerdict`] with the
//! id `<criterion>/<durable>`); the criterion is the worst of them, so the
//! overall and the soak verdicts cover every consumer.
//!
//! Which consumers: the named durables, then every durable a selector finds
//! in this snapshot's listings (so one added mid-soak is watched from its
//! first cycle).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{ago, combine, part, secs, Ctx, Part};
use crate::config::{Config, ConsumerExpect, ServiceEnvConfig};
use crate::sample::{ConsumerLookup, ConsumerState, EnvState, Snapshot};
use crate::verdict::{ConsumerKey, CriterionId as C, InstanceId, InstanceVerdict, Status, Verdict};

/// Most consumers named in one criterion's evidence; the rest are counted.
const SHOWN: usize = 5;

/// One consumer the soak watches in this snapshot.
pub(super) struct Watched {
    /// The id's consumer part: the durable, with its stream when the name
    /// is on two watched streams.
    key: ConsumerKey,
    durable: String,
    stream: String,
    expect: ConsumerExpect,
    /// Its position in its stream's listing, when listed: each lookup is
    /// then O(1), and a 2,000-durable cycle costs what 2,000 durables do,
    /// not their square.
    at: Option<usize>,
}

/// The consumers watched in this snapshot, and what the selectors say of
/// themselves (a failed listing, too few durables).
pub(super) struct Fleet {
    watched: Vec<Watched>,
    selector_parts: Vec<Part>,
}

impl Fleet {
    /// Named durables first (their expectations win), then each selector's
    /// finds in file order.
    pub(super) fn resolve(cfg: &Config, snap: &Snapshot) -> Fleet {
        let cc = &cfg.consumers;
        // Each listing's names, indexed once.
        let positions: HashMap<&str, HashMap<&str, usize>> = snap
            .consumers
            .iter()
            .filter_map(|(s, l)| Some((s.as_str(), l.as_ref().ok()?.as_ref()?)))
            .map(|(s, list)| {
                let names = list
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name.as_str(), i))
                    .collect();
                (s, names)
            })
            .collect();
        let at = |stream: &str, name: &str| positions.get(stream)?.get(name).copied();
        let mut watched: Vec<Watched> = cc
            .named
            .iter()
            .map(|c| Watched {
                key: ConsumerKey::durable(&c.durable),
                durable: c.durable.clone(),
                stream: c.stream.clone(),
                expect: c.expectation(),
                at: at(&c.stream, &c.durable),
            })
            .collect();
        let mut taken: HashSet<(String, String)> = watched
            .iter()
            .map(|w| (w.stream.clone(), w.durable.clone()))
            .collect();
        let mut selector_parts = Vec::new();
        for sel in &cc.selectors {
            let mut count = 0usize;
            let mut blind = false;
            for stream in &sel.streams {
                match snap.consumers.get(stream) {
                    Some(Err(f)) => {
                        blind = true;
                        selector_parts.push(part(
                            Status::Unknown,
                            format!("{}: cannot list {stream}: {f}", sel.key),
                        ));
                    }
                    Some(Ok(Some(list))) => {
                        for (i, c) in list.iter().enumerate() {
                            if c.durable_name.is_none() || !sel.selects(stream, &c.name) {
                                continue;
                            }
                            count += 1;
                            if taken.insert((stream.clone(), c.name.clone())) {
                                watched.push(Watched {
                                    key: ConsumerKey::durable(&c.name),
                                    durable: c.name.clone(),
                                    stream: stream.clone(),
                                    expect: sel.expectation_of(&c.name),
                                    at: Some(i),
                                });
                            }
                        }
                    }
                    Some(Ok(None)) | None => {}
                }
            }
            if !blind && count < sel.min_count {
                selector_parts.push(part(
                    Status::Fail,
                    format!(
                        "{} selects {count} durable(s) on {} (at least {} expected)",
                        sel.key,
                        sel.streams.join(", "),
                        sel.min_count
                    ),
                ));
            }
        }
        // A durable name on two streams is two consumers: say which.
        let mut per_name: BTreeMap<&str, usize> = BTreeMap::new();
        for w in &watched {
            *per_name.entry(w.durable.as_str()).or_default() += 1;
        }
        let twice: HashSet<String> = per_name
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(k, _)| k.to_string())
            .collect();
        for w in &mut watched {
            if twice.contains(&w.durable) {
                w.key = ConsumerKey::on_stream(&w.durable, &w.stream);
            }
        }
        Fleet {
            watched,
            selector_parts,
        }
    }
}

fn instance(
    id: C,
    w: &Watched,
    status: Status,
    observed: impl Into<String>,
    target: impl Into<String>,
    evidence: impl Into<String>,
) -> InstanceVerdict {
    InstanceVerdict {
        id: InstanceId {
            criterion: id,
            consumer: w.key.clone(),
        },
        consumer: w.durable.clone(),
        stream: w.stream.clone(),
        status,
        observed: observed.into(),
        target: target.into(),
        evidence: evidence.into(),
        value: None,
        warn_at: None,
        fail_at: None,
    }
}

/// The fleet as parts of one criterion: each consumer's own evidence when
/// there is one; beyond that the not-passing ones (worst first, at most
/// [`SHOWN`] named) or, when all pass, one line for all.
fn fleet_parts(instances: &[InstanceVerdict], all_pass: &str) -> Vec<Part> {
    if instances.len() <= 1 {
        return instances
            .iter()
            .map(|i| part(i.status, i.evidence.clone()))
            .collect();
    }
    let mut bad: Vec<&InstanceVerdict> = instances
        .iter()
        .filter(|i| i.status != Status::Pass && i.status != Status::NotConfigured)
        .collect();
    if bad.is_empty() {
        return vec![part(
            Status::Pass,
            format!("{} consumers {all_pass}", instances.len()),
        )];
    }
    bad.sort_by_key(|i| std::cmp::Reverse(i.status));
    let mut parts: Vec<Part> = bad
        .iter()
        .take(SHOWN)
        .map(|i| part(i.status, format!("{}: {}", i.id, i.evidence)))
        .collect();
    if bad.len() > SHOWN {
        parts.push(part(
            bad[SHOWN].status,
            format!(
                "and {} more of {} consumers not passing",
                bad.len() - SHOWN,
                instances.len()
            ),
        ));
    }
    parts
}

/// A numeric per-consumer criterion: one consumer's verdict is the
/// criterion's (the texts stay those of a one-durable soak); a fleet's is
/// its worst, valued at the largest number.
fn numeric_aggregate(
    id: C,
    target: String,
    instances: Vec<InstanceVerdict>,
    extra: Vec<Part>,
    all_pass: &str,
    thresholds: (Option<f64>, Option<f64>),
) -> Verdict {
    if let ([one], true) = (instances.as_slice(), extra.is_empty()) {
        // The criterion's target is the fleet's, not the consumer's own.
        let v = Verdict {
            target,
            ..one.to_verdict(id)
        };
        return Verdict { instances, ..v };
    }
    let mut parts = fleet_parts(&instances, all_pass);
    parts.extend(extra);
    let (status, evidence) = combine(parts);
    let max = instances
        .iter()
        .filter_map(|i| i.value)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let not_passing = instances
        .iter()
        .filter(|i| i.status != Status::Pass)
        .count();
    let observed = match max {
        Some(m) => format!(
            "max {m} over {} consumers ({not_passing} not passing)",
            instances.len()
        ),
        None => "unknown".to_string(),
    };
    let mut v = Verdict::new(id, status, observed, target, evidence);
    if let Some(m) = max {
        v = v.with_value(m, thresholds.0, thresholds.1);
    }
    v.instances = instances;
    v
}

impl Ctx<'_> {
    fn lookup(&self, w: &Watched) -> Result<&ConsumerState, (Status, String)> {
        if let (Some(i), Some(Ok(Some(list))), false) = (
            w.at,
            self.last.consumers.get(&w.stream),
            self.last.consumers_elided,
        ) {
            if let Some(c) = list.get(i) {
                return Ok(c);
            }
        }
        match self.last.consumer(&w.stream, &w.durable) {
            ConsumerLookup::Found(c) => Ok(c),
            ConsumerLookup::Unknown(f) => Err((Status::Unknown, f.to_string())),
            ConsumerLookup::Missing => Err((
                Status::Fail,
                format!(
                    "durable {} does not exist on stream {}",
                    w.durable, w.stream
                ),
            )),
        }
    }

    pub(super) fn consumer_config(&self) -> Verdict {
        let cc = &self.cfg.consumers;
        let single = match (cc.named.as_slice(), cc.selectors.is_empty()) {
            ([one], true) => Some(one),
            _ => None,
        };
        let target = match single {
            Some(c) => format!(
                "{} on {}: filter {}, ack {}, ack_wait {}, max_deliver {}",
                c.durable,
                c.stream,
                c.filter_subject,
                c.ack_policy,
                secs(c.ack_wait),
                c.max_deliver
            ),
            None => format!("every watched consumer as configured ({})", cc.describe()),
        };
        let instances: Vec<InstanceVerdict> = self
            .fleet
            .watched
            .iter()
            .map(|w| self.config_instance(w))
            .collect();
        let mut parts = fleet_parts(&instances, "as configured");
        parts.extend(
            self.fleet
                .selector_parts
                .iter()
                .map(|p| part(p.status, p.text.clone())),
        );
        parts.extend(self.env_parts());
        let (status, evidence) = combine(parts);
        let observed = match status {
            Status::Pass => "as expected".to_string(),
            Status::Unknown => "unknown".to_string(),
            _ => "drift".to_string(),
        };
        let mut v = Verdict::new(C::ConsumerConfig, status, observed, target, evidence);
        v.instances = instances;
        v
    }

    fn config_instance(&self, w: &Watched) -> InstanceVerdict {
        let target = expect_text(&w.expect);
        match self.lookup(w) {
            Err((status, reason)) => {
                let observed = if status == Status::Unknown {
                    "unknown"
                } else {
                    "missing"
                };
                instance(C::ConsumerConfig, w, status, observed, target, reason)
            }
            Ok(c) => {
                let diffs = consumer_drift(&w.durable, &w.expect, c);
                if diffs.is_empty() {
                    let evidence = format!("{} on {} as expected", w.durable, w.stream);
                    instance(
                        C::ConsumerConfig,
                        w,
                        Status::Pass,
                        "as expected",
                        target,
                        evidence,
                    )
                } else {
                    let evidence = format!("consumer drift: {}", diffs.join(", "));
                    instance(
                        C::ConsumerConfig,
                        w,
                        Status::Fail,
                        "drift",
                        target,
                        evidence,
                    )
                }
            }
        }
    }

    /// The service's env file against the service's own (primary) durable.
    /// No `[service_env]`: the consumers' own config is the whole criterion.
    fn env_parts(&self) -> Vec<Part> {
        let mut parts = Vec::new();
        match (&self.cfg.service_env, &self.last.env) {
            (None, _) => {}
            (Some(_), Err(f)) => parts.push(part(Status::Unknown, f.to_string())),
            (Some(env_cfg), Ok(env)) => {
                if let (Some(key), Some(primary)) =
                    (&env_cfg.ack_wait_key, self.cfg.consumers.primary())
                {
                    let actual = match self.last.consumer(&primary.stream, &primary.durable) {
                        ConsumerLookup::Found(c) => c.ack_wait_secs,
                        _ => primary.ack_wait.as_secs_f64(),
                    };
                    parts.push(env_ack_wait(env_cfg, env, key, actual));
                }
                parts.extend(env_expected(env_cfg, env));
            }
        }
        parts
    }

    fn lag_levels(&self, w: &Watched) -> (u64, u64) {
        let cr = &self.cfg.criteria;
        (
            w.expect.lag_warn.unwrap_or(cr.lag_warn),
            w.expect.lag_fail.unwrap_or(cr.lag_fail),
        )
    }

    pub(super) fn consumer_lag(&self) -> Verdict {
        let cr = &self.cfg.criteria;
        let target = format!("pending + ack pending < {}; not stalled", cr.lag_fail);
        let instances: Vec<InstanceVerdict> = self
            .fleet
            .watched
            .iter()
            .map(|w| self.lag_instance(w))
            .collect();
        numeric_aggregate(
            C::ConsumerLag,
            target,
            instances,
            self.selector_unknowns(),
            "under their lag limits, none stalled",
            (Some(cr.lag_warn as f64), Some(cr.lag_fail as f64)),
        )
    }

    /// A selector that could not list its streams leaves the numeric
    /// criteria blind to consumers it would have found: unknown, not pass.
    fn selector_unknowns(&self) -> Vec<Part> {
        self.fleet
            .selector_parts
            .iter()
            .filter(|p| p.status == Status::Unknown)
            .map(|p| part(p.status, p.text.clone()))
            .collect()
    }

    fn lag_instance(&self, w: &Watched) -> InstanceVerdict {
        let (lag_warn, lag_fail) = self.lag_levels(w);
        let target = format!("pending + ack pending < {lag_fail}; not stalled");
        let c = match self.lookup(w) {
            Err((_, r)) => {
                return instance(C::ConsumerLag, w, Status::Unknown, "unknown", target, r)
            }
            Ok(c) => c,
        };
        let lag = c.num_pending + c.num_ack_pending;
        let observed = format!(
            "{lag} (pending {} + ack pending {})",
            c.num_pending, c.num_ack_pending
        );
        let mut parts = Vec::new();
        if lag >= lag_fail {
            parts.push(part(Status::Fail, format!("lag {lag} >= {lag_fail}")));
        } else if lag >= lag_warn {
            parts.push(part(
                Status::Warn,
                format!("lag {lag} >= warning level {lag_warn}"),
            ));
        } else {
            parts.push(part(Status::Pass, format!("lag {lag}")));
        }
        if let Some(stall) = stalled(c, self.last.taken_at) {
            parts.push(part(Status::Fail, stall));
        }
        let (status, evidence) = combine(parts);
        let mut i = instance(C::ConsumerLag, w, status, observed, target, evidence);
        i.value = Some(lag as f64);
        i.warn_at = Some(lag_warn as f64);
        i.fail_at = Some(lag_fail as f64);
        i
    }

    pub(super) fn redeliveries(&self) -> Verdict {
        let cr = &self.cfg.criteria;
        let target = format!(
            "< {} redelivered (warn at {})",
            cr.redeliveries_fail, cr.redeliveries_warn
        );
        let instances: Vec<InstanceVerdict> = self
            .fleet
            .watched
            .iter()
            .map(|w| self.redeliveries_instance(w, &target))
            .collect();
        numeric_aggregate(
            C::Redeliveries,
            target,
            instances,
            self.selector_unknowns(),
            "with redeliveries under the limit",
            (
                Some(cr.redeliveries_warn as f64),
                Some(cr.redeliveries_fail as f64),
            ),
        )
    }

    fn redeliveries_instance(&self, w: &Watched, target: &str) -> InstanceVerdict {
        let cr = &self.cfg.criteria;
        let c = match self.lookup(w) {
            Err((_, r)) => {
                return instance(C::Redeliveries, w, Status::Unknown, "unknown", target, r)
            }
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
        let evidence = format!(
            "{n} message(s) being redelivered (ack_wait {}s, max_deliver {})",
            c.ack_wait_secs, c.max_deliver
        );
        let mut i = instance(C::Redeliveries, w, status, n.to_string(), target, evidence);
        i.value = Some(n as f64);
        i.warn_at = Some(cr.redeliveries_warn as f64);
        i.fail_at = Some(cr.redeliveries_fail as f64);
        i
    }
}

/// Stalled: work is waiting, nobody pulls, and nothing was delivered for
/// longer than ack_wait (redelivery only happens on a pull).
fn stalled(c: &ConsumerState, now: chrono::DateTime<chrono::Utc>) -> Option<String> {
    let ack_wait = chrono::Duration::milliseconds((c.ack_wait_secs * 1000.0) as i64);
    let idle_since = c.delivered_last_active;
    let idle_too_long = match idle_since {
        Some(t) => now - t > ack_wait,
        None => true,
    };
    if c.num_pending > 0 && c.num_waiting == 0 && idle_too_long {
        let last = idle_since
            .map(|t| format!("last delivery {}", ago(now, t)))
            .unwrap_or_else(|| "never delivered".into());
        Some(format!(
            "stalled: {} pending, {last} (> ack_wait {}s), no pull waiting",
            c.num_pending, c.ack_wait_secs
        ))
    } else {
        None
    }
}

/// The expectation as a target line (only what is checked).
fn expect_text(e: &ConsumerExpect) -> String {
    let mut v = vec!["durable, pull".to_string()];
    if let Some(f) = &e.filter_subject {
        v.push(format!("filter {f}"));
    }
    if let Some(a) = &e.ack_policy {
        v.push(format!("ack {a}"));
    }
    if let Some(w) = e.ack_wait {
        v.push(format!("ack_wait {}", secs(w)));
    }
    if let Some(m) = e.max_deliver {
        v.push(format!("max_deliver {m}"));
    }
    if let Some(m) = e.max_ack_pending {
        v.push(format!("max_ack_pending {m}"));
    }
    v.join(", ")
}

/// Differences between the durable's expected and actual settings.
fn consumer_drift(durable: &str, e: &ConsumerExpect, c: &ConsumerState) -> Vec<String> {
    let mut diffs = Vec::new();
    if c.durable_name.as_deref() != Some(durable) {
        diffs.push("not durable".to_string());
    }
    if let Some(ds) = &c.deliver_subject {
        diffs.push(format!(
            "push consumer (deliver subject {ds}), expected pull"
        ));
    }
    if let Some(f) = e
        .filter_subject
        .as_ref()
        .filter(|f| **f != c.filter_subject)
    {
        diffs.push(format!("filter `{}` (expected `{f}`)", c.filter_subject));
    }
    if let Some(a) = e.ack_policy.as_ref().filter(|a| **a != c.ack_policy) {
        diffs.push(format!("ack policy {} (expected {a})", c.ack_policy));
    }
    if let Some(w) = e
        .ack_wait
        .filter(|w| (c.ack_wait_secs - w.as_secs_f64()).abs() > 0.001)
    {
        diffs.push(format!(
            "ack_wait {}s (expected {})",
            c.ack_wait_secs,
            secs(w)
        ));
    }
    if let Some(m) = e.max_deliver.filter(|m| *m != c.max_deliver) {
        diffs.push(format!("max_deliver {} (expected {m})", c.max_deliver));
    }
    if let Some(m) = e.max_ack_pending.filter(|m| *m != c.max_ack_pending) {
        diffs.push(format!(
            "max_ack_pending {} (expected {m})",
            c.max_ack_pending
        ));
    }
    diffs
}

/// The service's own ack wait (`key` in its env file) against the consumer's.
fn env_ack_wait(env_cfg: &ServiceEnvConfig, env: &EnvState, key: &str, consumer_secs: f64) -> Part {
    let path = env_cfg.path.display();
    let Some((v, line)) = env.values.get(key) else {
        return part(Status::Fail, format!("{key} is not set in {path}"));
    };
    let scale = if env_cfg.ack_wait_unit == "ms" {
        0.001
    } else {
        1.0
    };
    match v.trim().parse::<f64>() {
        Err(_) => part(
            Status::Fail,
            format!("{path}:{line}: {key}={v} is not a number"),
        ),
        Ok(n) if (n * scale - consumer_secs).abs() > 0.001 => part(
            Status::Fail,
            format!(
                "{path}:{line}: {key}={v} ({}s) but the consumer's ack_wait is {consumer_secs}s",
                n * scale
            ),
        ),
        Ok(_) => part(
            Status::Pass,
            format!("service ack wait {key}={v} matches the consumer"),
        ),
    }
}

/// The env file's keys with an expected value (`service_env.expect`).
fn env_expected(env_cfg: &ServiceEnvConfig, env: &EnvState) -> Vec<Part> {
    let path = env_cfg.path.display();
    env_cfg
        .expect
        .iter()
        .map(|(key, want)| match env.values.get(key) {
            None => part(
                Status::Fail,
                format!("{key} is not set in {path} (expected {want})"),
            ),
            Some((v, line)) if v != want => part(
                Status::Fail,
                format!("{path}:{line}: {key}={v} (expected {want})"),
            ),
            Some(_) => part(Status::Pass, format!("{key}={want}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::evaluate::evaluate;
    use crate::evaluate::fixtures::*;
    use crate::sample::Snapshot;
    use crate::verdict::Status;

    #[test]
    fn lag_thresholds_and_stall() {
        let c = cfg();
        let mut h = healthy_window(&c);
        let set = |h: &mut Vec<Snapshot>, pending: u64, waiting: u64, last: i64| {
            if let Some(cs) = first_consumer(&mut h[1]) {
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

    use crate::config::{Config, ConsumerExpect, ConsumerSelector};
    use crate::sample::{ConsumerState, ProbeFailure, ProbeKind};
    use crate::verdict::{CriterionId as C, Verdict};

    /// The shipped config plus "every durable on both hot streams".
    fn fleet_cfg(min_count: usize) -> Config {
        let mut c = cfg();
        c.consumers.selectors.push(ConsumerSelector {
            key: "consumers[1]".into(),
            streams: vec!["AA_CORE_HOT".into(), "AA_VENDOR_HOT".into()],
            durable_prefix: String::new(),
            exclude: vec!["ops-tool".into()],
            min_count,
            expect: ConsumerExpect {
                max_deliver: Some(5),
                ..Default::default()
            },
            overrides: [(
                "vendor-slow".to_string(),
                ConsumerExpect {
                    lag_fail: Some(100),
                    lag_warn: Some(50),
                    ..Default::default()
                },
            )]
            .into(),
        });
        c
    }

    /// A copy of the fixture's durable under another name and stream.
    fn durable(template: &ConsumerState, stream: &str, name: &str, pending: u64) -> ConsumerState {
        ConsumerState {
            stream: stream.into(),
            name: name.into(),
            durable_name: Some(name.into()),
            num_pending: pending,
            ..template.clone()
        }
    }

    /// The fixture's history with the vendor stream's listing added and
    /// the core stream's extended.
    fn fleet_history(c: &Config, vendor: &[(&str, u64)], core: &[(&str, u64)]) -> Vec<Snapshot> {
        let mut h = healthy_window(c);
        let template = first_consumer(&mut h[1]).cloned().expect("fixture durable");
        let mut ephemeral = durable(&template, "AA_VENDOR_HOT", "eph-1", 500);
        ephemeral.durable_name = None;
        let mut v: Vec<ConsumerState> = vendor
            .iter()
            .map(|(n, p)| durable(&template, "AA_VENDOR_HOT", n, *p))
            .collect();
        v.push(ephemeral);
        v.push(durable(&template, "AA_VENDOR_HOT", "ops-tool", 500));
        let mut core_list = vec![template.clone()];
        core_list.extend(
            core.iter()
                .map(|(n, p)| durable(&template, "AA_CORE_HOT", n, *p)),
        );
        for snap in &mut h {
            snap.consumers
                .insert("AA_VENDOR_HOT".into(), Ok(Some(v.clone())));
            snap.consumers
                .insert("AA_CORE_HOT".into(), Ok(Some(core_list.clone())));
        }
        h
    }

    fn instance<'v>(v: &'v Verdict, id: &str) -> &'v crate::verdict::InstanceVerdict {
        v.instances
            .iter()
            .find(|i| i.id.to_string() == id)
            .unwrap_or_else(|| panic!("no {id} in {:?}", v.instances))
    }

    #[test]
    fn a_selector_watches_every_durable_and_one_lagging_consumer_fails_the_criterion() {
        let c = fleet_cfg(1);
        let h = fleet_history(&c, &[("vendor-a", 0), ("vendor-b", 12)], &[("core-x", 1)]);
        let v = evaluate(&c, &h);
        let lag = get(&v, C::ConsumerLag);
        // The named durable, core-x, vendor-a, vendor-b: not the ephemeral
        // consumer, not the excluded one.
        let ids: Vec<String> = lag.instances.iter().map(|i| i.id.to_string()).collect();
        assert_eq!(
            ids,
            vec![
                "consumer_lag/normalize-hrv-durable",
                "consumer_lag/core-x",
                "consumer_lag/vendor-a",
                "consumer_lag/vendor-b"
            ]
        );
        assert_eq!(lag.status, Status::Fail);
        assert_eq!(lag.value, Some(12.0));
        assert!(
            lag.evidence.contains("consumer_lag/vendor-b: lag 12 >= 10"),
            "{}",
            lag.evidence
        );
        assert_eq!(instance(lag, "consumer_lag/vendor-b").status, Status::Fail);
        assert_eq!(instance(lag, "consumer_lag/vendor-a").status, Status::Pass);
        assert_eq!(
            instance(lag, "consumer_lag/vendor-b").stream,
            "AA_VENDOR_HOT"
        );
        assert_eq!(not_passing(&v), vec![("consumer_lag", Status::Fail)]);
        assert_eq!(crate::verdict::overall(&v), Status::Fail);
        // Each consumer's config is judged against the selector's expectation.
        let cfgv = get(&v, C::ConsumerConfig);
        assert_eq!(cfgv.status, Status::Pass, "{}", cfgv.evidence);
        assert_eq!(cfgv.instances.len(), 4);
    }

    #[test]
    fn an_override_gives_one_durable_its_own_limits() {
        let c = fleet_cfg(1);
        let h = fleet_history(&c, &[("vendor-slow", 60)], &[]);
        let v = evaluate(&c, &h);
        let lag = get(&v, C::ConsumerLag);
        let slow = instance(lag, "consumer_lag/vendor-slow");
        assert_eq!(slow.status, Status::Warn, "{}", slow.evidence);
        assert_eq!(slow.fail_at, Some(100.0));
        assert_eq!(lag.status, Status::Warn);
    }

    #[test]
    fn drift_of_a_selected_durable_fails_consumer_config_by_its_id() {
        let c = fleet_cfg(1);
        let mut h = fleet_history(&c, &[("vendor-a", 0)], &[]);
        for snap in &mut h {
            if let Some(Ok(Some(list))) = snap.consumers.get_mut("AA_VENDOR_HOT") {
                list[0].max_deliver = 1;
            }
        }
        let v = evaluate(&c, &h);
        let cv = get(&v, C::ConsumerConfig);
        assert_eq!(cv.status, Status::Fail);
        assert!(
            cv.evidence
                .contains("consumer_config/vendor-a: consumer drift: max_deliver 1 (expected 5)"),
            "{}",
            cv.evidence
        );
    }

    #[test]
    fn a_selector_finding_too_few_durables_fails_and_a_failed_listing_is_unknown() {
        let c = fleet_cfg(2);
        let h = fleet_history(&c, &[], &[]);
        // Only the named durable is on the streams: fewer than 2 selected.
        let v = evaluate(&c, &h);
        let cv = get(&v, C::ConsumerConfig);
        assert_eq!(cv.status, Status::Fail);
        assert!(
            cv.evidence.contains("consumers[1] selects 1 durable(s)"),
            "{}",
            cv.evidence
        );

        let mut h = fleet_history(&fleet_cfg(1), &[("vendor-a", 0)], &[]);
        h[1].consumers.insert(
            "AA_VENDOR_HOT".into(),
            Err(ProbeFailure::new(
                ProbeKind::Consumer,
                crate::sample::ProbeError::timeout(
                    "consumers of AA_VENDOR_HOT",
                    std::time::Duration::from_secs(5),
                ),
            )),
        );
        let v = evaluate(&fleet_cfg(1), &h);
        // The vendor fleet cannot be seen: never a silent pass.
        for id in [C::ConsumerConfig, C::ConsumerLag, C::Redeliveries] {
            let x = get(&v, id);
            assert_eq!(x.status, Status::Unknown, "{id:?}: {}", x.evidence);
            assert!(
                x.evidence.contains("cannot list AA_VENDOR_HOT"),
                "{}",
                x.evidence
            );
        }
    }

    #[test]
    fn one_name_on_two_streams_is_two_consumers_with_distinct_ids() {
        let c = fleet_cfg(1);
        let h = fleet_history(&c, &[("shared", 0)], &[("shared", 11)]);
        let v = evaluate(&c, &h);
        let lag = get(&v, C::ConsumerLag);
        assert_eq!(
            instance(lag, "consumer_lag/shared@AA_CORE_HOT").status,
            Status::Fail
        );
        assert_eq!(
            instance(lag, "consumer_lag/shared@AA_VENDOR_HOT").status,
            Status::Pass
        );
    }

    #[test]
    fn a_whole_fleet_failing_names_a_few_and_counts_the_rest() {
        let c = fleet_cfg(1);
        let names: Vec<String> = (0..40).map(|i| format!("v{i:02}")).collect();
        let vendor: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 20)).collect();
        let h = fleet_history(&c, &vendor, &[]);
        let v = evaluate(&c, &h);
        let lag = get(&v, C::ConsumerLag);
        assert_eq!(lag.instances.len(), 41);
        assert!(
            lag.evidence
                .contains("and 35 more of 41 consumers not passing"),
            "{}",
            lag.evidence
        );
        assert!(lag.evidence.len() < 600, "{}", lag.evidence.len());
    }
}
