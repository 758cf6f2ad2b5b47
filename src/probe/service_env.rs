//! The service's env file: only the configured keys are kept (others may be secrets).

use std::time::Duration;

use crate::config::ServiceEnvConfig;
use crate::envfile::EnvFile;
use crate::sample::{EnvState, ProbeError, ProbeFailure, ProbeKind, Probed};

/// Largest env file read: a real one is a few KiB.
const MAX_ENV_BYTES: u64 = 4 * 1024 * 1024;

/// Reads and parses the env file on a blocking thread (never blocking on a
/// FIFO) and keeps the ack-wait key and the expected keys. The probe has its
/// own deadline: a file that takes longer fails this probe alone, with its
/// own reason, and never holds the runtime (or another probe) meanwhile.
pub async fn probe(cfg: &ServiceEnvConfig, timeout: Duration) -> Probed<EnvState> {
    let owned = cfg.clone();
    let task = tokio::task::spawn_blocking(move || read_and_extract(&owned));
    match tokio::time::timeout(timeout, task).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(fail(ProbeError::failed("env file read task failed", e))),
        Err(_) => Err(fail(ProbeError::NotReadInTime {
            what: format!("env file {}", cfg.path.display()),
            after: timeout,
        })),
    }
}

fn fail(error: ProbeError) -> ProbeFailure {
    ProbeFailure::new(ProbeKind::ServiceEnv, error)
}

/// The blocking part: read (bounded), decode, parse, pick.
fn read_and_extract(cfg: &ServiceEnvConfig) -> Probed<EnvState> {
    let bytes = super::file::read_regular(&cfg.path, "env file", MAX_ENV_BYTES)
        .map_err(|e| fail(e.into()))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        fail(ProbeError::failed(
            format!("env file {}", cfg.path.display()),
            "not valid UTF-8",
        ))
    })?;
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
