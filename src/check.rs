//! `check`: one verdict now, from one sample or two taken a window apart.

use std::time::Duration;

use chrono::Utc;

use crate::config::Config;
use crate::evaluate::evaluate;
use crate::probe::{Prober, ProberError};
use crate::render::check::CheckReport;

/// Samples (twice when `window` > 0), evaluates and returns the report.
/// The second sample also counts rows written since the first, so
/// `db_writes` compares rows with successes over the same span.
pub async fn run(mut cfg: Config, window: Duration) -> Result<CheckReport, ProberError> {
    // The soak's T0 is the daemon's when one records a soak in this
    // config's state: `check` and the daemon judge a restart alike.
    if let Some(t0) = crate::state::store::soak_in_progress_t0(&cfg, cfg.probe_timeout).await {
        cfg.soak.started_at = Some(t0);
    }
    let prober = Prober::new(cfg)?;
    let t0 = Utc::now();
    let first = prober.snapshot(t0, &[]).await;
    let mut history = vec![first];
    if !window.is_zero() {
        tokio::time::sleep(window).await;
        let t1 = Utc::now();
        history.push(prober.snapshot(t1, &[t0]).await);
    }
    let cfg = prober.config();
    let verdicts = evaluate(cfg, &history);
    let last = history.pop().unwrap_or_else(|| unreachable_snapshot(t0));
    let window_secs = (last.taken_at - t0).num_milliseconds() as f64 / 1000.0;
    Ok(CheckReport {
        soak: cfg.soak.name.clone(),
        name: cfg.soak.name.clone(),
        recorded: None,
        config: cfg.source.display().to_string(),
        generated_at: last.taken_at,
        window_secs: if window.is_zero() { 0.0 } else { window_secs },
        verdicts,
        last,
        edges: None,
        totals: None,
    })
}

/// History always holds at least one snapshot; this only satisfies the types.
fn unreachable_snapshot(t: chrono::DateTime<Utc>) -> crate::sample::Snapshot {
    let f = |probe| crate::sample::ProbeFailure::new(probe, crate::sample::ProbeError::NotSampled);
    use crate::sample::ProbeKind as K;
    crate::sample::Snapshot {
        taken_at: t,
        streams: Default::default(),
        consumers: [(String::new(), Err(f(K::Consumer)))].into(),
        metrics: Err(f(K::Metrics)),
        db: Err(f(K::Database)),
        log: Err(f(K::Log)),
        env: Err(f(K::ServiceEnv)),
        probe_ms: Default::default(),
        consumers_elided: false,
    }
}
