//! The preflight before T0: a new soak is not recorded until every
//! configured probe has answered once and every file the soak and its
//! rollback will need is there. A monitoring typo (a wrong metrics URL, a
//! log path that does not exist) is then a message to fix, not a failed
//! soak: with a wrong `METRICS_URL`, the first cycle used to fire
//! `service_up` (a default rollback trigger) and record the soak as failed.

use crate::config::Config;
use crate::rollback::RollbackMode;
use crate::sample::Snapshot;

/// What keeps a new soak from starting, one line each, from one snapshot:
/// probes that failed, and streams or the consumer that do not exist (a
/// name typo looks exactly like this). Pure, so it is tested without servers.
pub fn snapshot_problems(cfg: &Config, snap: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (key, spec) in cfg.streams.keyed() {
        match snap.streams.get(&spec.name) {
            Some(Ok(Some(_))) => {}
            Some(Ok(None)) => out.push(format!(
                "stream {} ({key}.name) does not exist on the server",
                spec.name
            )),
            Some(Err(f)) => out.push(format!("stream {}: {f}", spec.name)),
            None => out.push(format!("stream {}: not probed", spec.name)),
        }
    }
    for (stream, listing) in &snap.consumers {
        if let Err(f) = listing {
            out.push(format!("consumers of {stream}: {f}"));
        }
    }
    for c in &cfg.consumers.named {
        if matches!(
            snap.consumer(&c.stream, &c.durable),
            crate::sample::ConsumerLookup::Missing
        ) {
            out.push(format!(
                "consumer {} does not exist on stream {}",
                c.durable, c.stream
            ));
        }
    }
    let failures = [
        snap.metrics.as_ref().err(),
        snap.db.as_ref().err(),
        snap.log.as_ref().err(),
        snap.env.as_ref().err(),
    ];
    for f in failures
        .into_iter()
        .flatten()
        .filter(|f| !f.is_not_configured())
    {
        out.push(format!("{}: {f}", f.probe.as_str()));
    }
    out
}

/// What keeps a new soak from starting on this host: the reports folder
/// cannot be written, or (with the rollback armed or in dry run) a file or
/// program the rollback needs is missing.
pub fn local_problems(cfg: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let dir = &cfg.watch.reports_dir;
    let probe = dir.join(format!(".soakwatch-preflight.{}", std::process::id()));
    let writable = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b"preflight\n"))
        .and_then(|()| std::fs::remove_file(&probe));
    if let Err(e) = writable {
        out.push(format!(
            "watch.reports_dir: {} cannot be written: {e}",
            dir.display()
        ));
    }
    if let Some(r) = &cfg.rollback {
        if r.run.mode != RollbackMode::Disarmed {
            out.extend(
                crate::rollback::readiness_problems(&r.run)
                    .into_iter()
                    .map(|p| format!("rollback.{p}")),
            );
        }
    }
    out
}

// The healthy snapshot comes from the test kit's synthetic histories.
#[cfg(all(test, feature = "testkit"))]
mod tests {
    use super::*;
    use crate::sample::{ProbeFailure, ProbeKind};
    use crate::testkit::synthetic::Scenario;

    fn cfg() -> Config {
        let text = include_str!("../../checks.toml");
        Config::from_text(
            std::path::Path::new("/tmp/checks.toml"),
            text,
            &|_: &str| None,
        )
        .expect("shipped config is valid")
    }

    #[test]
    fn a_dead_probe_and_a_missing_stream_each_keep_the_soak_from_starting() {
        let cfg = cfg();
        let scenario = Scenario {
            t0: chrono::Utc::now(),
            interval_secs: 10.0,
            per_interval: 5.0,
            faults: Vec::new(),
        };
        let mut snap = scenario.snapshot(&cfg, 0.0).expect("a sample at T0");
        assert_eq!(snapshot_problems(&cfg, &snap), Vec::<String>::new());
        snap.metrics = Err(ProbeFailure::new(
            ProbeKind::Metrics,
            crate::sample::ProbeError::failed(
                "GET http://127.0.0.1:1/metrics",
                "connection refused",
            ),
        ));
        snap.streams.insert(cfg.streams.dlq.name.clone(), Ok(None));
        let p = snapshot_problems(&cfg, &snap);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().any(|l| l.contains("streams.dlq.name")), "{p:?}");
        assert!(p.iter().any(|l| l.starts_with("metrics: GET")), "{p:?}");
    }
}
