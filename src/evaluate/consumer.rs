//! The durable consumer: its settings against the config and the service's
//! env file (`consumer_config`), its backlog (`consumer_lag`) and redeliveries.

use super::{ago, combine, part, secs, Ctx, Part};
use crate::config::{ConsumerConfig, ServiceEnvConfig};
use crate::sample::{ConsumerState, EnvState};
use crate::verdict::{CriterionId as C, Status, Verdict};

impl Ctx<'_> {
    pub(super) fn consumer_config(&self) -> Verdict {
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
                let diffs = consumer_drift(cc, c);
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
        // No [service_env]: the consumer's own config is the whole criterion.
        match (&self.cfg.service_env, &self.last.env) {
            (None, _) => {}
            (Some(_), Err(f)) => parts.push(part(Status::Unknown, f.reason.clone())),
            (Some(env_cfg), Ok(env)) => {
                if let Some(key) = &env_cfg.ack_wait_key {
                    let consumer_secs = actual_ack_wait.unwrap_or(cc.ack_wait.as_secs_f64());
                    parts.push(env_ack_wait(env_cfg, env, key, consumer_secs));
                }
                parts.extend(env_expected(env_cfg, env));
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

    pub(super) fn consumer_lag(&self) -> Verdict {
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

    pub(super) fn redeliveries(&self) -> Verdict {
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
}

/// Differences between the durable's expected and actual settings.
fn consumer_drift(cc: &ConsumerConfig, c: &ConsumerState) -> Vec<String> {
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
}
