//! Delivery of [`Notification`]s to the outside world: email (SMTP via
//! lettre), generic webhooks (soakwatch JSON, Alertmanager-compatible JSON,
//! Slack), and Alertmanager's own API.
//!
//! A sink either delivers or returns a [`SinkError`] that says, in one line
//! without secrets, what went wrong and whether a retry can help. The outbox
//! decides what to do with it; sinks never retry on their own, so the outbox
//! stays the only place that knows how often a notification was attempted.
//!
//! Secrets (SMTP passwords, HMAC keys, webhook URLs whose path is the token,
//! as with Slack) live in [`Secret`]/[`SecretUrl`] and are scrubbed from every
//! error string, including text a remote server sent back.
//!
//! The bodies are built by pure functions ([`soakwatch_json`],
//! [`alertmanager_webhook_json`], [`alertmanager_api_alerts_at`],
//! [`slack_json`], [`signature`]) so they can be tested and documented without
//! a network. A route's settings become a sink in [`Sink::from_spec`], which
//! owns the defaults (SMTP port by TLS mode, STARTTLS, the webhook body).

mod body;
mod email;
mod http;
mod spec;

use std::fmt;
use std::time::Duration;

use crate::alert::model::Notification;
use crate::secret::{Secret, SecretUrl};

pub use body::{
    alertmanager_api_alerts, alertmanager_api_alerts_at, alertmanager_fingerprint,
    alertmanager_labels, alertmanager_webhook_json, signature, slack_json, soakwatch_json,
    AM_RESEND_HORIZON, SOAKWATCH_SCHEMA,
};
pub use spec::{SinkSpec, DEFAULT_TIMEOUT};

/// Header carrying `sha256=<hex HMAC of the body>` so receivers can check origin and integrity.
pub const SIGNATURE_HEADER: &str = "X-Soakwatch-Signature";
/// Header carrying the notification id so receivers can drop duplicates of a retried delivery.
pub const ID_HEADER: &str = "X-Soakwatch-Id";

/// A delivery failure, one line, no secrets.
///
/// `retryable` is false for permanent errors (HTTP 4xx except 408/429, SMTP
/// 5xx rejections, bad addresses or URLs, configuration mismatches such as a
/// server without STARTTLS), so the outbox can give up at once instead of
/// hammering a receiver that will never accept the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct SinkError {
    /// What failed, prefixed with the sink's [`Sink::describe`] text.
    pub reason: String,
    /// Whether trying again later may succeed.
    pub retryable: bool,
}

impl SinkError {
    /// A failure that a later attempt may not see (network, 5xx, timeout).
    pub fn retryable(reason: impl Into<String>) -> Self {
        SinkError {
            reason: one_line(&reason.into()),
            retryable: true,
        }
    }

    /// A failure that repeats until someone changes the configuration or the receiver.
    pub fn permanent(reason: impl Into<String>) -> Self {
        SinkError {
            reason: one_line(&reason.into()),
            retryable: false,
        }
    }
}

/// SMTP transport security, as configured per email sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (usually port 587); refuses servers without it.
    Starttls,
    /// Implicit TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// No encryption: only for a local relay or tests.
    None,
}

impl SmtpTls {
    /// Short name for descriptions.
    fn label(self) -> &'static str {
        match self {
            SmtpTls::Starttls => "starttls",
            SmtpTls::Tls => "tls",
            SmtpTls::None => "plain",
        }
    }
}

/// Email through an SMTP server: one text/plain message per notification to every address.
#[derive(Clone)]
pub struct EmailSink {
    /// SMTP server host name (also the TLS server name).
    pub host: String,
    /// SMTP server port.
    pub port: u16,
    /// Transport security.
    pub tls: SmtpTls,
    /// Login; empty means no authentication.
    pub username: String,
    /// Password for `username`.
    pub password: Secret,
    /// Sender mailbox (`a@x` or `Name <a@x>`); its domain also names the Message-ID.
    pub from: String,
    /// Recipient mailboxes.
    pub to: Vec<String>,
    /// Bound on the whole delivery (connect, TLS, AUTH, DATA).
    pub timeout: Duration,
}

/// An HTTP POST of the notification as JSON to any URL, optionally HMAC-signed.
#[derive(Clone)]
pub struct WebhookSink {
    /// Target URL; its path and query are treated as secret (Slack puts the token there).
    pub url: SecretUrl,
    /// HMAC-SHA256 key for [`SIGNATURE_HEADER`]; empty means unsigned.
    pub hmac_secret: Secret,
    /// Which JSON body to send.
    pub format: WebhookFormat,
    /// Bound on the whole request including the response body.
    pub timeout: Duration,
}

/// The JSON dialect a webhook receiver understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// [`soakwatch_json`]: everything soakwatch knows, schema `soakwatch.alert/v1`.
    Soakwatch,
    /// [`alertmanager_webhook_json`]: for receivers written for Alertmanager's webhook.
    Alertmanager,
    /// [`slack_json`]: Slack (and Mattermost/Rocket.Chat) incoming webhooks.
    Slack,
}

impl WebhookFormat {
    /// Short name for descriptions.
    fn label(self) -> &'static str {
        match self {
            WebhookFormat::Soakwatch => "soakwatch",
            WebhookFormat::Alertmanager => "alertmanager",
            WebhookFormat::Slack => "slack",
        }
    }
}

/// Alerts pushed into a real Alertmanager (API v2), which then does its own routing, silencing and de-duplication.
#[derive(Clone)]
pub struct AlertmanagerSink {
    /// Alertmanager's base URL, e.g. `http://127.0.0.1:9093` (a route prefix path is kept).
    pub base_url: SecretUrl,
    /// Bound on the whole request.
    pub timeout: Duration,
}

/// One sink behind a route: the unit the outbox delivers to.
#[derive(Clone)]
pub enum Sink {
    /// SMTP email.
    Email(EmailSink),
    /// HTTP webhook.
    Webhook(WebhookSink),
    /// Alertmanager API v2.
    Alertmanager(AlertmanagerSink),
}

impl Sink {
    /// Delivers one notification once. `http` is shared so connection pools
    /// and the TLS setup are reused; each request gets the sink's own timeout.
    pub async fn send(&self, n: &Notification, http: &reqwest::Client) -> Result<(), SinkError> {
        let result = match self {
            Sink::Email(s) => email::send(s, n).await,
            Sink::Webhook(s) => http::send_webhook(s, n, http).await,
            Sink::Alertmanager(s) => http::send_alertmanager(s, n, http).await,
        };
        // A receiver's answer may echo any configured credential (another
        // route's, or an Authorization header): the reason is logged and
        // stored in the outbox, so it is scrubbed with all of them here.
        let result = result.map_err(|e| SinkError {
            reason: crate::untrusted::escape_untrusted(&crate::secret::scrub(&e.reason)),
            ..e
        });
        match &result {
            Ok(()) => {
                tracing::debug!(sink = %self.describe(), id = %n.id, "notification delivered")
            }
            Err(e) => {
                tracing::debug!(sink = %self.describe(), id = %n.id, retryable = e.retryable, error = %e.reason, "notification not delivered")
            }
        }
        result
    }

    /// A one-line description for logs, `soakwatch alert test` and errors, without secrets:
    /// `email to a@x via smtp 127.0.0.1:2525 (starttls)`, `webhook https://hooks.slack.com/*** (slack)`.
    pub fn describe(&self) -> String {
        match self {
            Sink::Email(s) => email::describe(s),
            Sink::Webhook(s) => {
                let signed = if s.hmac_secret.is_empty() {
                    ""
                } else {
                    ", signed"
                };
                format!(
                    "webhook {} ({}{signed})",
                    webhook_shown(&s.url),
                    s.format.label()
                )
            }
            Sink::Alertmanager(s) => {
                format!("alertmanager {}", s.base_url.shown().trim_end_matches('/'))
            }
        }
    }
}

impl fmt::Debug for Sink {
    /// Debug is the description: derived Debug would print a webhook URL's secret path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sink({})", self.describe())
    }
}

impl fmt::Debug for EmailSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailSink")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl fmt::Debug for WebhookSink {
    /// Shows only scheme, host and port of the URL: the path may be the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSink")
            .field("url", &webhook_shown(&self.url))
            .field("hmac_secret", &self.hmac_secret)
            .field("format", &self.format)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl fmt::Debug for AlertmanagerSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertmanagerSink")
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Printable form of a webhook URL: scheme, host and port only, `/***` for
/// any path or query (a Slack URL's path is its credential), never userinfo.
fn webhook_shown(url: &SecretUrl) -> String {
    let Ok(u) = url::Url::parse(url.expose()) else {
        return "<unparsable url hidden>".to_string();
    };
    let mut out = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
    if let Some(port) = u.port() {
        out.push_str(&format!(":{port}"));
    }
    if (u.path().is_empty() || u.path() == "/") && u.query().is_none() {
        out.push('/');
    } else {
        out.push_str("/***");
    }
    out
}

/// Collapses a text to one line (servers answer with multi-line bodies).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Replaces every secret (longest first) in `text` with `***`. Secrets shorter
/// than 3 characters are skipped: they would shred ordinary words and protect nothing.
fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut secrets: Vec<&str> = secrets.iter().copied().filter(|s| s.len() >= 3).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for s in secrets {
        if out.contains(s) {
            out = out.replace(s, "***");
        }
    }
    out
}

/// Cuts a text to at most `max` characters on a char boundary, marking the cut.
fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

/// An error and its sources joined by `: ` (lettre and reqwest keep the useful part in the sources).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    // Nested errors of the same kind repeat their prefix ("Connection error: Connection error: …").
    let mut parts: Vec<&str> = Vec::new();
    for p in out.split(": ") {
        if parts.last() != Some(&p) {
            parts.push(p);
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_url_path_and_credentials_are_hidden() {
        let u = SecretUrl::new("https://u:pw@hooks.slack.com/services/T0/B0/XYZsecret?token=abc");
        let shown = webhook_shown(&u);
        assert_eq!(shown, "https://hooks.slack.com/***");
        let u = SecretUrl::new("http://127.0.0.1:8080");
        assert_eq!(webhook_shown(&u), "http://127.0.0.1:8080/");
        assert_eq!(
            webhook_shown(&SecretUrl::new("not a url XYZsecret")),
            "<unparsable url hidden>"
        );
    }

    #[test]
    fn describe_has_no_secrets() {
        let w = Sink::Webhook(WebhookSink {
            url: SecretUrl::new("https://hooks.slack.com/services/T0/B0/XYZsecret"),
            hmac_secret: Secret::new("hmackey"),
            format: WebhookFormat::Slack,
            timeout: Duration::from_secs(5),
        });
        let d = w.describe();
        assert_eq!(d, "webhook https://hooks.slack.com/*** (slack, signed)");
        let dbg = format!("{w:?}");
        assert!(
            !dbg.contains("XYZsecret") && !dbg.contains("hmackey"),
            "{dbg}"
        );
        if let Sink::Webhook(inner) = &w {
            let dbg = format!("{inner:?}");
            assert!(
                !dbg.contains("XYZsecret") && !dbg.contains("hmackey"),
                "{dbg}"
            );
        }
        let e = Sink::Email(EmailSink {
            host: "127.0.0.1".into(),
            port: 2525,
            tls: SmtpTls::Starttls,
            username: "u".into(),
            password: Secret::new("pw-secret"),
            from: "sw@example.org".into(),
            to: vec!["a@x".into(), "b@y".into()],
            timeout: Duration::from_secs(5),
        });
        assert_eq!(
            e.describe(),
            "email to a@x, b@y via smtp 127.0.0.1:2525 (starttls)"
        );
        assert!(!format!("{e:?}").contains("pw-secret"));
        let a = Sink::Alertmanager(AlertmanagerSink {
            base_url: SecretUrl::new("http://admin:pw-secret@127.0.0.1:9093"),
            timeout: Duration::from_secs(5),
        });
        assert!(!a.describe().contains("pw-secret"), "{}", a.describe());
        assert!(!format!("{a:?}").contains("pw-secret"));
    }

    #[test]
    fn scrub_replaces_longest_first_and_skips_tiny() {
        assert_eq!(
            scrub("a /p/secret9 b secret9", &["/p/secret9", "secret9", "a"]),
            "a *** b ***"
        );
    }

    #[test]
    fn error_chain_drops_repeated_prefixes() {
        let inner = std::io::Error::other("Connection error: refused");
        assert_eq!(error_chain(&inner), "Connection error: refused");
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "Connection error: {}", self.0)
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        assert_eq!(error_chain(&Outer(inner)), "Connection error: refused");
    }

    #[test]
    fn errors_are_one_line() {
        let e = SinkError::retryable("smtp: 451 try\n later\r\n");
        assert_eq!(e.to_string(), "smtp: 451 try later");
        assert!(e.retryable);
        assert!(!SinkError::permanent("x").retryable);
    }

    #[test]
    fn smtp_tls_and_format_deserialize_lowercase() {
        #[derive(serde::Deserialize)]
        struct T {
            tls: SmtpTls,
            format: WebhookFormat,
        }
        let t: T =
            serde_json::from_str(r#"{"tls":"starttls","format":"alertmanager"}"#).expect("parses");
        assert_eq!(t.tls, SmtpTls::Starttls);
        assert_eq!(t.format, WebhookFormat::Alertmanager);
        assert!(serde_json::from_str::<SmtpTls>(r#""none""#).is_ok());
        assert!(serde_json::from_str::<SmtpTls>(r#""ssl""#).is_err());
    }
}
