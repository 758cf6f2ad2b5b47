//! The service's env file: only the configured keys are kept (others may be secrets).

use crate::config::ServiceEnvConfig;
use crate::envfile::EnvFile;
use crate::sample::{EnvState, ProbeFailure, ProbeKind, Probed};

/// Largest env file read: a real one is a few KiB.
const MAX_ENV_BYTES: u64 = 4 * 1024 * 1024;

/// Reads the env file (never blocking on a FIFO, on a blocking thread) and
/// keeps the ack-wait key and the expected keys.
pub async fn probe(cfg: &ServiceEnvConfig) -> Probed<EnvState> {
    let fail = |reason: String| ProbeFailure {
        probe: ProbeKind::ServiceEnv,
        reason,
    };
    let path = cfg.path.clone();
    let bytes = tokio::task::spawn_blocking(move || {
        super::file::read_regular(&path, "env file", MAX_ENV_BYTES)
    })
    .await
    .map_err(|e| fail(format!("env file read task failed: {e}")))?
    .map_err(fail)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| fail(format!("env file {}: not valid UTF-8", cfg.path.display())))?;
    Ok(extract(&EnvFile::parse(&text), cfg))
}

/// The pure part: pick the configured keys.
pub fn extract(env: &EnvFile, cfg: &ServiceEnvConfig) -> EnvState {
    let mut state = EnvState::default();
    let keys = cfg.ack_wait_key.iter().chain(cfg.expect.keys());
    for key in keys {
        if let (Some(v), Some(line)) = (env.get(key), env.line_of(key)) {
            state.values.insert(key.clone(), (v.to_string(), line));
        }
    }
    state
}
