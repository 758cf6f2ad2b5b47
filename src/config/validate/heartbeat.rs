//! `[heartbeat]`: the dead-man's switch's URLs and timing.

use super::*;

/// `[heartbeat]`: http(s) URLs without query or fragment (the pings append
/// `/start`, `/fail` and `?rid=`), a period of at least a second and a
/// timeout. Messages never quote a URL: its path is the check's token.
pub(super) fn validate_heartbeat(raw: &RawConfig, p: Problems<'_>) -> Option<HeartbeatConfig> {
    let h = &raw.heartbeat;
    let mut url_of = |key: &str, value: &str| -> Option<SecretUrl> {
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        match url::Url::parse(value) {
            Ok(u) if !matches!(u.scheme(), "http" | "https") => p(
                key,
                format!("scheme `{}`: expected http or https", u.scheme()),
            ),
            Ok(u) if u.host_str().is_none_or(str::is_empty) => p(key, "has no host".into()),
            Ok(u) if u.query().is_some() || u.fragment().is_some() => p(
                key,
                "must not have a query or fragment: the pings append /start, /fail and ?rid= to it"
                    .into(),
            ),
            Ok(_) => return Some(SecretUrl::with_secret_path(value)),
            // The parser's message never repeats the input.
            Err(e) => p(key, format!("not a URL: {e}")),
        }
        None
    };
    let url = url_of("heartbeat.url", &h.url);
    let standby_url = url_of("heartbeat.standby_url", &h.standby_url);
    if h.every < Duration::from_secs(1) {
        p(
            "heartbeat.every",
            format!(
                "`{}`: must be at least 1s",
                humantime::format_duration(h.every)
            ),
        );
    }
    if h.timeout.is_zero() {
        p("heartbeat.timeout", "must be greater than 0".into());
    }
    let on = url.is_some() || standby_url.is_some();
    on.then_some(HeartbeatConfig {
        url,
        standby_url,
        every: h.every,
        timeout: h.timeout,
    })
}
