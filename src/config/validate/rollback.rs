//! `[rollback]`: the triggers that fire it and the runbook's own checks.

use super::*;

/// `[rollback]`: the triggers that fire it, then the runbook's own checks.
/// Unknown keys and wrong types were collected with the rest of the file.
pub(super) fn validate_rollback(
    raw: &RawConfig,
    base: &Path,
    p: Problems<'_>,
) -> Option<RollbackSettings> {
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
