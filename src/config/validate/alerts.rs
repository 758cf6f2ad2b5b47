//! `[alerts]` and `[[alerts.routes]]`: the policy, and each route's sink
//! checked as written. The sinks themselves, with their defaults, are built
//! by the alert component ([`crate::alert::sink::Sink::from_spec`]).

use super::*;
use crate::alert::routes::{AlertsConfig, Route};
use crate::alert::sink::{Sink, SinkSpec, AM_RESEND_HORIZON};

/// Routes (every one checked, enabled or not) and the alert policy.
pub(super) fn validate_alerts(raw: &RawConfig, p: Problems<'_>) -> std::sync::Arc<AlertsConfig> {
    let mut routes = Vec::new();
    let mut route_names = BTreeSet::new();
    for (i, r) in raw.alerts.routes.iter().enumerate() {
        let key = |f: &str| format!("alerts.routes[{i}].{f}");
        if r.name.trim().is_empty() {
            p(&key("name"), "must not be empty".into());
        }
        if !route_names.insert(r.name.clone()) {
            p(
                &key("name"),
                format!("route `{}` is configured twice", r.name),
            );
        }
        if !r.enabled {
            // A disabled route is still checked where it can be: enabling it
            // later must not be the moment a `file://` URL is discovered.
            if !r.url.trim().is_empty() {
                check_http_url(&key("url"), &r.url, p);
            }
            continue;
        }
        if let Some(spec) = sink_spec(r, &key, p) {
            routes.push(Route {
                name: r.name.clone(),
                severities: r.severities.clone(),
                criteria: r.criteria.clone(),
                sink: Sink::from_spec(spec),
            });
        }
    }
    let has_am = routes
        .iter()
        .any(|r| matches!(r.sink, Sink::Alertmanager(_)));
    if has_am && raw.alerts.repeat_interval >= AM_RESEND_HORIZON {
        p(
            "alerts.repeat_interval",
            format!(
                "must be shorter than {} with an alertmanager route (Alertmanager ends alerts not re-sent in time)",
                humantime::format_duration(AM_RESEND_HORIZON)
            ),
        );
    }
    std::sync::Arc::new(AlertsConfig {
        repeat_interval: raw.alerts.repeat_interval,
        unknown_after: raw.alerts.unknown_after,
        severity: raw.alerts.severity.clone(),
        max_backoff: raw.alerts.max_backoff,
        routes,
    })
}

/// An enabled route's sink as written, by its kind; `None` when it cannot
/// be one (what is wrong is reported, under `key(field)`).
fn sink_spec(r: &RawRoute, key: &dyn Fn(&str) -> String, p: Problems<'_>) -> Option<SinkSpec> {
    let timeout = r.timeout;
    match r.kind.as_str() {
        "email" => {
            if r.smtp_host.trim().is_empty() {
                p(&key("smtp_host"), "required for an email route".into());
            }
            if r.from.trim().is_empty() {
                p(&key("from"), "required for an email route".into());
            }
            if r.to.is_empty() {
                p(&key("to"), "at least one recipient is required".into());
            }
            Some(SinkSpec::Email {
                host: r.smtp_host.clone(),
                port: r.smtp_port,
                tls: r.smtp_tls,
                username: r.username.clone(),
                password: Secret::new(r.password.clone()),
                from: r.from.clone(),
                to: r.to.clone(),
                timeout,
            })
        }
        // The path of a webhook's URL may be its token (Slack's is).
        "webhook" => check_http_url(&key("url"), &r.url, p).then(|| SinkSpec::Webhook {
            url: SecretUrl::with_secret_path(r.url.clone()),
            hmac_secret: Secret::new(r.hmac_secret.clone()),
            format: r.format,
            timeout,
        }),
        "slack" => check_http_url(&key("url"), &r.url, p).then(|| SinkSpec::Slack {
            url: SecretUrl::with_secret_path(r.url.clone()),
            hmac_secret: Secret::new(r.hmac_secret.clone()),
            timeout,
        }),
        "alertmanager" => check_http_url(&key("url"), &r.url, p).then(|| SinkSpec::Alertmanager {
            url: SecretUrl::new(r.url.clone()),
            timeout,
        }),
        other => {
            p(
                &key("kind"),
                format!("`{other}`: expected email, webhook, slack or alertmanager"),
            );
            None
        }
    }
}
