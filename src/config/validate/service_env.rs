//! `[service_env]`: the service's env file and the values it must hold.

use super::*;

/// The env file (relative to the config's folder) and its ack-wait unit;
/// None without `[service_env]`.
pub(super) fn validate_service_env(
    raw: &RawConfig,
    base: &Path,
    p: Problems<'_>,
) -> Option<ServiceEnvConfig> {
    let env = raw.service_env.as_ref()?;
    if !matches!(env.ack_wait_unit.as_str(), "ms" | "s") {
        p(
            "service_env.ack_wait_unit",
            format!("`{}`: expected ms or s", env.ack_wait_unit),
        );
    }
    Some(ServiceEnvConfig {
        path: resolve_path(base, &env.path),
        ack_wait_key: non_empty(&env.ack_wait_key),
        ack_wait_unit: env.ack_wait_unit.clone(),
        expect: env.expect.clone(),
    })
}
