//! The HTTP clients soakwatch builds, and what they do on a redirect.
//!
//! A configured URL often carries a secret: a `/metrics` URL with a query
//! token, a Slack-style webhook whose path is the token, an `?api_key=`.
//! reqwest's defaults send that URL to a redirect target in the `Referer`
//! header, and turn a POST answered by 302 into a body-less GET that the
//! target may answer 200 (a "delivered" alert that never arrived). So:
//!
//! - no client sends a `Referer`, ever;
//! - the metrics probe ([`probe_client`]) follows redirects within its URL's
//!   own origin (scheme, host and port), at most [`MAX_HOPS`]; a redirect to
//!   another origin is not followed and the probe fails naming where it led;
//! - notifications ([`notify_client`]) follow no redirect: a 3xx is a failed
//!   delivery whose reason names the Location ([`location_shown`]).

use std::time::Duration;

/// Most redirects the metrics probe follows within its origin.
pub const MAX_HOPS: usize = 10;

/// The builder every client starts from: timeouts, user agent, no Referer,
/// and TLS whose system roots are read only when a certificate is verified
/// ([`crate::probe::lazy_roots`]).
fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .referer(false)
        .user_agent(concat!("soakwatch/", env!("CARGO_PKG_VERSION")));
    match crate::probe::lazy_roots::client_config() {
        Ok((tls, _)) => builder.tls_backend_preconfigured(tls),
        // Only a provider without TLS 1.2/1.3 gets here: reqwest's own set-up.
        Err(e) => {
            tracing::warn!(error = %e, "lazy TLS set-up unavailable: loading root certificates now");
            builder
        }
    }
}

/// The metrics probe's client (also `discover`'s): gzip asked for and
/// decoded; redirects are followed within the first URL's origin only.
pub fn probe_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    builder(timeout)
        // Asks for gzip (`Accept-Encoding: gzip`, as Prometheus does) and
        // decodes it before anything reads the body, so `[metrics]
        // max_body_bytes` bounds the decoded body.
        .gzip(true)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let follow = attempt.previous().len() <= MAX_HOPS
                && attempt
                    .previous()
                    .first()
                    .is_some_and(|first| same_origin(first, attempt.url()));
            if follow {
                attempt.follow()
            } else {
                // The 3xx itself is the answer: the probe names its Location.
                attempt.stop()
            }
        }))
        .build()
}

/// The notification client (webhooks, Slack, Alertmanager): no redirect is
/// followed; a 3xx comes back as the answer.
pub fn notify_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    builder(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// Whether two URLs share scheme, host and port (the port as the scheme
/// implies it when absent).
pub fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The `Location` of a 3xx answer to a request for `url`, resolved against
/// it and shown without credentials ([`crate::secret::redact_url`]: the
/// password and secret-looking query values become `***`); with
/// `hide_path` (a Slack-style URL whose path is the token) only its origin
/// and `/***`. `None` when the answer has none. Callers cut their own
/// secrets out of it as well.
pub fn location_shown(
    url: &url::Url,
    headers: &reqwest::header::HeaderMap,
    hide_path: bool,
) -> Option<String> {
    let raw = headers.get(reqwest::header::LOCATION)?;
    let raw = String::from_utf8_lossy(raw.as_bytes());
    Some(match url.join(raw.trim()) {
        Ok(resolved) if hide_path => {
            let port = resolved.port().map(|p| format!(":{p}")).unwrap_or_default();
            let host = resolved.host_str().unwrap_or("");
            format!("{}://{host}{port}/***", resolved.scheme())
        }
        Ok(resolved) => crate::secret::redact_url(resolved.as_str()),
        Err(_) => "<unparsable location hidden>".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> url::Url {
        url::Url::parse(s).expect("url")
    }

    #[test]
    fn origins() {
        assert!(same_origin(&u("http://h/a?x"), &u("http://h:80/b")));
        assert!(same_origin(&u("https://h/a"), &u("https://h:443/")));
        assert!(!same_origin(&u("http://h/a"), &u("https://h/a")));
        assert!(!same_origin(&u("http://h:1/a"), &u("http://h:2/a")));
        assert!(!same_origin(&u("http://h/a"), &u("http://g/a")));
    }

    #[test]
    fn locations_are_resolved_and_redacted() {
        let mut h = reqwest::header::HeaderMap::new();
        let base = u("http://h:9/hook/x?token=t1");
        assert_eq!(location_shown(&base, &h, false), None);
        h.insert(
            reqwest::header::LOCATION,
            reqwest::header::HeaderValue::from_static("/moved?api_key=k2&x=1"),
        );
        assert_eq!(
            location_shown(&base, &h, false).as_deref(),
            Some("http://h:9/moved?api_key=***&x=1")
        );
        assert_eq!(
            location_shown(&base, &h, true).as_deref(),
            Some("http://h:9/***")
        );
        h.insert(
            reqwest::header::LOCATION,
            reqwest::header::HeaderValue::from_static("https://u:pw@g/y"),
        );
        assert_eq!(
            location_shown(&base, &h, false).as_deref(),
            Some("https://u:***@g/y")
        );
    }

    #[test]
    fn clients_build() {
        crate::install_crypto_provider();
        assert!(probe_client(Duration::from_secs(1)).is_ok());
        assert!(notify_client(Duration::from_secs(1)).is_ok());
    }
}
