//! The service's env file: only the configured keys are kept (others may be secrets).

use crate::config::ServiceEnvConfig;
use crate::envfile::EnvFile;
use crate::sample::{EnvState, ProbeFailure, ProbeKind, Probed};

/// Reads the env file and keeps the ack-wait key and the expected keys.
pub async fn probe(cfg: &ServiceEnvConfig) -> Probed<EnvState> {
    let path = cfg.path.display();
    let text = tokio::fs::read_to_string(&cfg.path)
        .await
        .map_err(|e| ProbeFailure {
            probe: ProbeKind::ServiceEnv,
            reason: match e.kind() {
                std::io::ErrorKind::NotFound => format!("env file {path} does not exist"),
                _ => format!("env file {path}: {e}"),
            },
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
