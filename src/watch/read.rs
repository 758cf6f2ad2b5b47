//! The soak as the state database holds it, without a running daemon
//! (`report`, `check --soak`), and the Markdown report writer both share.

use super::*;

/// Writes a Markdown report with its charts beside it (atomically).
pub fn write_summary_report(
    cfg: &Config,
    summary: &SoakSummary,
    title: &str,
    path: &std::path::Path,
) -> Result<(), WatchError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| WatchError::Report {
        path: path.to_path_buf(),
        source,
    })?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("report")
        .to_string();
    let charts = chart::write_charts(summary, &chart_thresholds(cfg), dir, &stem, chart_gap(cfg))
        .map_err(|e| WatchError::Chart(e.to_string()))?;
    let text = report::render_markdown(summary, title, &charts);
    write_atomic(path, &text).map_err(|source| WatchError::Report {
        path: path.to_path_buf(),
        source,
    })
}

/// The thresholds and baseline the charts draw, from the config with the
/// soak's baselines in force: the same lines in reports and on the status page.
pub(crate) fn chart_thresholds(cfg: &Config) -> ChartThresholds {
    ChartThresholds {
        lag_fail: cfg.criteria.lag_fail as f64,
        success_min_pct: cfg.criteria.success_rate_min * 100.0,
        p95_max_ms: cfg.criteria.p95_max.as_secs_f64() * 1000.0,
        dlq_baseline: cfg.streams.dlq.baseline_messages.map(|b| b as f64),
    }
}

/// Samples further apart than this are not joined in a chart.
pub(crate) fn chart_gap(cfg: &Config) -> chrono::Duration {
    crate::duration::delta(cfg.watch.max_gap)
}

/// The soak in a state database as it stands, without a running daemon:
/// for `report` and `check --soak` (read-only; a daemon may be writing).
pub async fn load_summary(cfg: &Config) -> Result<(Config, SoakSummary), WatchError> {
    let store = Store::open_config(cfg, &cfg.watch.state, Access::ReadOnly).await?;
    let Some(soak) = store.active_soak().await? else {
        return Err(WatchError::Store(StoreError::Open {
            path: store.describe().into(),
            reason: "no soak recorded yet".into(),
        }));
    };
    let eff = for_soak(cfg, &soak);
    let policy = policy(cfg);
    let mut running = crate::soak::running::RunningSummary::new(&policy, Duration::ZERO);
    store
        .for_each_cycle(&soak.meta.id, |c| running.push(c))
        .await?;
    let last = store.last_snapshots(&soak.meta.id, 2).await?;
    let verdicts = match last.as_slice() {
        [prev, snap] => CycleRecord::evaluate(&eff, Some(prev), snap, policy.max_gap).1,
        [snap] => CycleRecord::evaluate(&eff, None, snap, policy.max_gap).1,
        _ => Vec::new(),
    };
    let mut summary = running.summary(&soak.meta, &verdicts, last.last().cloned());
    // The rollback's journal and outcome belong in every report, also
    // `soakwatch report` and `check --soak`, as in the checkpoint reports.
    summary.rollback = super::rollback::view(&store, &soak.meta.id).await?;
    // A signed-off soak is read as it was frozen, never judged again.
    if let Some(end) = store.soak_end(&soak.meta.id).await? {
        summary.freeze(&end);
    }
    store.close().await;
    Ok((eff, summary))
}

/// A soak summary as a one-shot report: each criterion's status is its
/// status over the whole soak, so every output format of `check` works.
pub fn summary_as_check(
    cfg: &Config,
    s: &SoakSummary,
) -> Option<crate::render::check::CheckReport> {
    let last = s.last_snapshot.clone()?;
    let verdicts = s
        .criteria
        .iter()
        .map(|c| {
            let mut v = c.last.clone();
            v.status = c.soak;
            let fails = s.incidents.iter().filter(|i| i.criterion == c.id).count();
            // The whole soak's ratio, across service restarts.
            let whole = match s.totals.success_line() {
                Some(l) if c.id == crate::verdict::CriterionId::SuccessRate => {
                    format!("; whole soak: {l}")
                }
                _ => String::new(),
            };
            v.evidence = format!(
                "soak: {} fail span(s), {:.0}s failing, coverage {:.1}%{whole}; now: {}",
                fails,
                c.fail_secs,
                c.coverage * 100.0,
                v.evidence
            );
            v
        })
        .collect();
    let mut soak = format!(
        "{} (soak {}, {:.1}h of {:.0}h)",
        cfg.soak.name,
        s.soak_id,
        s.elapsed_hours(),
        s.planned_secs / 3600.0
    );
    if let Some(end) = &s.edges.ended {
        soak.push_str(&format!(
            "; signed off {}: {}",
            end.at.format("%Y-%m-%d %H:%M UTC"),
            super::signoff::verdict_words(end.verdict)
        ));
    }
    if let Some(head) = s.head_note() {
        soak.push_str(&format!("; {head}"));
    }
    Some(crate::render::check::CheckReport {
        soak,
        name: cfg.soak.name.clone(),
        recorded: Some((s.soak_id.clone(), s.t0)),
        config: cfg.source.display().to_string(),
        generated_at: s.now,
        window_secs: (s.now - s.t0).num_milliseconds() as f64 / 1000.0,
        verdicts,
        last,
        edges: Some(s.edges.clone()),
        totals: Some(s.totals.clone()),
    })
}
