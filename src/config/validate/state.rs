//! `[state]`: the backend, its connection (the watched `[nats]` unless
//! `nats_url` is given, checked by the same rules) and the lease.

use super::*;

/// `[state]`, checked and resolved.
pub(super) fn validate_state(raw: &RawConfig, base: &Path, p: Problems<'_>) -> StateConfig {
    let s = &raw.state;
    let backend = match s.backend.as_str() {
        "sqlite" => StateBackend::Sqlite,
        "jetstream" => StateBackend::JetStream,
        other => {
            p(
                "state.backend",
                format!("`{other}`: expected `sqlite` or `jetstream`"),
            );
            StateBackend::Sqlite
        }
    };
    if !(1..=5).contains(&s.replicas) {
        p("state.replicas", "must be 1 to 5".into());
    }
    validate_state_timing(raw, backend, p);
    if !s.bucket.is_empty()
        && !s
            .bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        p(
            "state.bucket",
            format!("`{}`: only letters, digits, `_` and `-`", s.bucket),
        );
    }
    StateConfig {
        backend,
        nats: state_connection(raw, base, p),
        bucket: state_bucket(raw),
        replicas: s.replicas,
        lease_intervals: s.lease_intervals,
        request_timeout: s.request_timeout,
        max_clock_skew: s.max_clock_skew,
        max_age: s.max_age.unwrap_or(
            raw.soak
                .duration
                .saturating_add(Duration::from_secs(7 * 24 * 3600)),
        ),
    }
}

/// The state's JetStream: `state.nats_url` with its own auth and TLS,
/// checked as `[nats]` is; without it, the watched `[nats]` connection
/// (already checked there), and TLS keys of `[state]` are a mistake.
fn state_connection(raw: &RawConfig, base: &Path, p: Problems<'_>) -> NatsConfig {
    let own = raw.state.settings();
    if !raw.state.nats_url.trim().is_empty() {
        own.check(p);
        return own.resolve(base);
    }
    own.check_credentials(p);
    if own.sets_tls() {
        p(
            "state.tls_ca_file",
            "TLS settings of [state] apply to `state.nats_url`; without it the [nats] connection (and its TLS) is used".into(),
        );
    }
    raw.nats.settings().resolve(base)
}

/// The bucket's name: as given, else one per soak name.
fn state_bucket(raw: &RawConfig) -> String {
    if !raw.state.bucket.is_empty() {
        return raw.state.bucket.clone();
    }
    let clean: String = raw
        .soak
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("soakwatch_{clean}")
}

/// `[state]` timing: the lease's length and the request timeout the
/// fencing proof needs (docs/HA.md, "The fencing rule").
fn validate_state_timing(raw: &RawConfig, backend: StateBackend, p: Problems<'_>) {
    let s = &raw.state;
    if s.lease_intervals < 2 {
        p(
            "state.lease_intervals",
            "must be at least 2 (the leader steps down one interval before its lease expires)"
                .into(),
        );
    }
    // The fencing proof (docs/HA.md): the leader's fence closes one interval
    // before its lease could expire, and a standby takes over only after the
    // whole lease. A write started just before the fence closes must end
    // (land or time out) inside that interval.
    if backend == StateBackend::JetStream && s.request_timeout >= raw.watch.interval {
        p(
            "state.request_timeout",
            format!(
                "`{}`: must be shorter than watch.interval ({}): the fence closes one interval before the lease could expire, and a state write started just before it closes must end within that interval, or a deposed leader's write could land in the next leader's term",
                humantime::format_duration(s.request_timeout),
                humantime::format_duration(raw.watch.interval)
            ),
        );
    }
    if s.request_timeout.is_zero() {
        p("state.request_timeout", "must be greater than 0".into());
    }
    let lease = raw.watch.interval.checked_mul(s.lease_intervals);
    if lease.is_none_or(|d| d > crate::duration::MAX) {
        p(
            "state.lease_intervals",
            format!(
                "{} x watch.interval is a lease over the longest duration soakwatch accepts, {}",
                s.lease_intervals,
                crate::duration::MAX_SHOWN
            ),
        );
    }
}
