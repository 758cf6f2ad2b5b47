//! The HTTP sinks: webhooks (three JSON dialects, optional HMAC signature)
//! and Alertmanager's API v2. Both share status classification and error
//! scrubbing: a URL's credentials, path and query and the HMAC key never
//! reach an error string, even when the receiver echoes them back.

use std::time::Duration;

use reqwest::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use reqwest::StatusCode;

use super::{
    alertmanager_api_alerts, alertmanager_webhook_json, error_chain, one_line, scrub, signature,
    slack_json, soakwatch_json, truncate_chars, webhook_shown, AlertmanagerSink, SinkError,
    WebhookFormat, WebhookSink, ID_HEADER, SIGNATURE_HEADER,
};
use crate::alert::model::Notification;
use crate::secret::SecretUrl;

/// How much of an error response body goes into the reason (Slack says `invalid_token`, Alertmanager why it refused).
const SNIPPET_CHARS: usize = 200;

const UA: &str = concat!("soakwatch/", env!("CARGO_PKG_VERSION"));

/// Whether an HTTP failure status may pass on a later attempt: 5xx, 408
/// (request timeout) and 429 (rate limited) may; other 4xx (bad payload,
/// bad token, gone) and 3xx (never followed) repeat until someone changes something.
pub(super) fn status_retryable(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

/// Parts of a URL that must not appear in errors: the whole URL, userinfo,
/// path (a Slack token), query.
fn url_secrets(url: &SecretUrl) -> Vec<String> {
    let raw = url.expose();
    let mut out = vec![raw.to_string()];
    if let Ok(u) = url::Url::parse(raw) {
        out.push(u.as_str().to_string());
        if u.path().len() > 1 {
            out.push(u.path().to_string());
            // A receiver may echo the path decoded.
            if let Ok(decoded) = urlencoding_decode(u.path()) {
                out.push(decoded);
            }
        }
        if let Some(q) = u.query() {
            out.push(q.to_string());
        }
        if let Some(p) = u.password() {
            out.push(p.to_string());
        }
        if !u.username().is_empty() {
            out.push(u.username().to_string());
        }
    }
    out
}

/// Percent-decoding of a URL path (the url crate only decodes query pairs).
fn urlencoding_decode(s: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out)
}

/// Parses an http(s) URL; anything else is a configuration error (permanent).
fn http_url(url: &SecretUrl, ctx: &str) -> Result<url::Url, SinkError> {
    let u = url::Url::parse(url.expose())
        .map_err(|e| SinkError::permanent(format!("{ctx}: invalid URL: {e}")))?;
    match u.scheme() {
        "http" | "https" => Ok(u),
        other => Err(SinkError::permanent(format!(
            "{ctx}: unsupported URL scheme {other:?}"
        ))),
    }
}

/// A notification id as a header value: visible ASCII kept, other bytes percent-encoded.
fn id_header(id: &str) -> HeaderValue {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Maps a transport-level reqwest error. The URL is stripped first (reqwest
/// puts it in its messages); redirect errors drop their sources, which may
/// name the redirect target.
fn map_reqwest(ctx: &str, e: reqwest::Error, timeout: Duration, secrets: &[&str]) -> SinkError {
    let e = e.without_url();
    if e.is_timeout() {
        return SinkError::retryable(format!("{ctx}: timed out after {timeout:?}"));
    }
    if e.is_redirect() {
        return SinkError::permanent(format!(
            "{ctx}: redirect error (too many or refused redirects)"
        ));
    }
    let what = scrub(&error_chain(&e), secrets);
    if e.is_builder() {
        SinkError::permanent(format!("{ctx}: invalid request: {what}"))
    } else {
        SinkError::retryable(format!("{ctx}: {what}"))
    }
}

/// POSTs `body` and classifies the outcome.
async fn post(
    http: &reqwest::Client,
    url: url::Url,
    body: Vec<u8>,
    extra: Vec<(&'static str, HeaderValue)>,
    timeout: Duration,
    ctx: &str,
    secrets: &[&str],
) -> Result<(), SinkError> {
    let mut req = http
        .post(url)
        .timeout(timeout)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(USER_AGENT, HeaderValue::from_static(UA));
    for (name, value) in extra {
        req = req.header(name, value);
    }
    let resp = req
        .body(body)
        .send()
        .await
        .map_err(|e| map_reqwest(ctx, e, timeout, secrets))?;
    let status = resp.status();
    if status.is_redirection() {
        // Never followed: a 302/303 turns the POST into a body-less GET that
        // the target may answer 200 (an alert "delivered" that never
        // arrived), and the target would learn the route's secret URL.
        // A webhook's path is a secret (its secrets list it): only the
        // Location's origin is shown then.
        let hide_path = secrets.iter().any(|s| s.starts_with('/'));
        let location = crate::http_client::location_shown(resp.url(), resp.headers(), hide_path)
            .map(|l| format!("; Location: {}", scrub(&l, secrets)))
            .unwrap_or_else(|| "; no Location".to_string());
        return Err(SinkError::permanent(format!(
            "{ctx}: HTTP {}: redirect not followed (notifications never follow redirects: point the route at the final URL){location}",
            status_text(status)
        )));
    }
    // Read the body in both cases: on success it lets the connection be reused,
    // on failure it usually says why. A body that fails to arrive after a 2xx
    // does not undo the delivery.
    let text = resp
        .bytes()
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    if status.is_success() {
        return Ok(());
    }
    let snippet = match text {
        Ok(t) if !t.trim().is_empty() => {
            format!(
                ": {}",
                truncate_chars(&scrub(&one_line(&t), secrets), SNIPPET_CHARS)
            )
        }
        _ => String::new(),
    };
    let reason = format!("{ctx}: HTTP {}{snippet}", status_text(status));
    if status_retryable(status.as_u16()) {
        Err(SinkError::retryable(reason))
    } else {
        Err(SinkError::permanent(reason))
    }
}

fn status_text(s: StatusCode) -> String {
    match s.canonical_reason() {
        Some(r) => format!("{} {r}", s.as_u16()),
        None => s.as_u16().to_string(),
    }
}

/// Delivers to a webhook: body per format, `X-Soakwatch-Id`, and the signature when a key is set.
pub(super) async fn send_webhook(
    s: &WebhookSink,
    n: &Notification,
    http: &reqwest::Client,
) -> Result<(), SinkError> {
    let ctx = format!("webhook {}", webhook_shown(&s.url));
    let owned = url_secrets(&s.url);
    let mut secrets: Vec<&str> = owned.iter().map(String::as_str).collect();
    secrets.push(s.hmac_secret.expose());
    let url = http_url(&s.url, &ctx).map_err(|e| SinkError {
        reason: scrub(&e.reason, &secrets),
        ..e
    })?;
    let value = match s.format {
        WebhookFormat::Soakwatch => soakwatch_json(n),
        WebhookFormat::Alertmanager => alertmanager_webhook_json(n),
        WebhookFormat::Slack => slack_json(n),
    };
    let body = serde_json::to_vec(&value)
        .map_err(|e| SinkError::permanent(format!("{ctx}: cannot encode body: {e}")))?;
    let mut extra = vec![(ID_HEADER, id_header(&n.id))];
    if !s.hmac_secret.is_empty() {
        let sig = format!("sha256={}", signature(s.hmac_secret.expose(), &body));
        if let Ok(v) = HeaderValue::from_str(&sig) {
            extra.push((SIGNATURE_HEADER, v));
        }
    }
    post(http, url, body, extra, s.timeout, &ctx, &secrets).await
}

/// `POST {base}/api/v2/alerts`, keeping any route prefix in the base path.
fn alerts_endpoint(base: url::Url) -> url::Url {
    let mut u = base;
    u.set_query(None);
    u.set_fragment(None);
    if let Ok(mut segs) = u.path_segments_mut() {
        segs.pop_if_empty().extend(["api", "v2", "alerts"]);
    }
    u
}

/// Pushes the notification's alerts to Alertmanager's API v2.
pub(super) async fn send_alertmanager(
    s: &AlertmanagerSink,
    n: &Notification,
    http: &reqwest::Client,
) -> Result<(), SinkError> {
    let ctx = format!("alertmanager {}", s.base_url.shown().trim_end_matches('/'));
    let owned = url_secrets(&s.base_url);
    // The base path is not secret for Alertmanager; only credentials and query are.
    let secrets: Vec<&str> = owned
        .iter()
        .map(String::as_str)
        .filter(|p| !p.starts_with('/'))
        .collect();
    let url = alerts_endpoint(http_url(&s.base_url, &ctx)?);
    if n.alerts.is_empty() {
        return Ok(());
    }
    let body = serde_json::to_vec(&alertmanager_api_alerts(n))
        .map_err(|e| SinkError::permanent(format!("{ctx}: cannot encode body: {e}")))?;
    post(
        http,
        url,
        body,
        vec![(ID_HEADER, id_header(&n.id))],
        s.timeout,
        &ctx,
        &secrets,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        for s in [500, 502, 503, 504, 408, 429] {
            assert!(status_retryable(s), "{s}");
        }
        for s in [400, 401, 403, 404, 410, 413, 422, 301, 302] {
            assert!(!status_retryable(s), "{s}");
        }
    }

    #[test]
    fn endpoint_keeps_prefix() {
        let u = |s: &str| alerts_endpoint(url::Url::parse(s).expect("url")).to_string();
        assert_eq!(
            u("http://127.0.0.1:9093"),
            "http://127.0.0.1:9093/api/v2/alerts"
        );
        assert_eq!(u("http://h:9093/am/"), "http://h:9093/am/api/v2/alerts");
        assert_eq!(u("http://h/am?x=1"), "http://h/am/api/v2/alerts");
    }

    #[test]
    fn url_secret_parts() {
        let s = url_secrets(&SecretUrl::new(
            "https://user:pw9@h/services/T0/B%2F1/tok?token=abc",
        ));
        for part in [
            "/services/T0/B%2F1/tok",
            "/services/T0/B/1/tok",
            "token=abc",
            "pw9",
            "user",
        ] {
            assert!(s.iter().any(|x| x == part), "{part} missing in {s:?}");
        }
    }

    #[test]
    fn id_header_is_always_valid() {
        assert_eq!(id_header("n-1"), "n-1");
        assert_eq!(id_header("a b\r\n%é"), "a%20b%0D%0A%25%C3%A9");
    }

    #[test]
    fn scheme_is_checked() {
        let e = http_url(&SecretUrl::new("ftp://h/x"), "ctx").expect_err("ftp");
        assert!(!e.retryable);
    }
}
