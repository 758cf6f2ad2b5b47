//! A route's sink as the user configured it, and the [`Sink`] built from it.
//!
//! The config checks what was written (required fields, URL schemes) and
//! hands over a [`SinkSpec`] with nothing filled in; the defaults are the
//! sinks' business and live here: the delivery timeout, STARTTLS, the SMTP
//! port of each TLS mode, the webhook body.

use std::time::Duration;

use super::{AlertmanagerSink, EmailSink, Sink, SmtpTls, WebhookFormat, WebhookSink};
use crate::secret::{Secret, SecretUrl};

/// Bound of one delivery attempt when a route sets no `timeout`: long
/// enough for a slow SMTP handshake, short enough that one dead receiver
/// does not hold its route's queue for long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One `[[alerts.routes]]` entry's sink, as written and checked: `None`
/// means the key was left out and the sink's default applies.
#[derive(Debug, Clone)]
pub enum SinkSpec {
    /// `kind = "email"`.
    Email {
        /// `smtp_host`.
        host: String,
        /// `smtp_port`; default by `tls` ([`SmtpTls::default_port`]).
        port: Option<u16>,
        /// `smtp_tls`; default STARTTLS.
        tls: Option<SmtpTls>,
        /// `username`; empty: no AUTH.
        username: String,
        /// `password`.
        password: Secret,
        /// `from`.
        from: String,
        /// `to`.
        to: Vec<String>,
        /// `timeout`; default [`DEFAULT_TIMEOUT`].
        timeout: Option<Duration>,
    },
    /// `kind = "webhook"`.
    Webhook {
        /// `url` (its path may be the token, so it is shown without it).
        url: SecretUrl,
        /// `hmac_secret`; empty: unsigned.
        hmac_secret: Secret,
        /// `format`; default [`WebhookFormat::Soakwatch`].
        format: Option<WebhookFormat>,
        /// `timeout`; default [`DEFAULT_TIMEOUT`].
        timeout: Option<Duration>,
    },
    /// `kind = "slack"`: a webhook that always sends Slack's body.
    Slack {
        /// `url` (Slack puts the token in its path).
        url: SecretUrl,
        /// `hmac_secret`; empty: unsigned.
        hmac_secret: Secret,
        /// `timeout`; default [`DEFAULT_TIMEOUT`].
        timeout: Option<Duration>,
    },
    /// `kind = "alertmanager"`.
    Alertmanager {
        /// `url`: Alertmanager's base URL.
        url: SecretUrl,
        /// `timeout`; default [`DEFAULT_TIMEOUT`].
        timeout: Option<Duration>,
    },
}

impl SmtpTls {
    /// The port a server of this mode listens on by convention: what an
    /// email route without `smtp_port` connects to.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }
    }
}

impl Sink {
    /// The sink a route's settings describe, every default filled in.
    pub fn from_spec(spec: SinkSpec) -> Sink {
        match spec {
            SinkSpec::Email {
                host,
                port,
                tls,
                username,
                password,
                from,
                to,
                timeout,
            } => {
                let tls = tls.unwrap_or(SmtpTls::Starttls);
                Sink::Email(EmailSink {
                    host,
                    port: port.unwrap_or(tls.default_port()),
                    tls,
                    username,
                    password,
                    from,
                    to,
                    timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
                })
            }
            SinkSpec::Webhook {
                url,
                hmac_secret,
                format,
                timeout,
            } => Sink::Webhook(WebhookSink {
                url,
                hmac_secret,
                format: format.unwrap_or(WebhookFormat::Soakwatch),
                timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
            }),
            SinkSpec::Slack {
                url,
                hmac_secret,
                timeout,
            } => Sink::Webhook(WebhookSink {
                url,
                hmac_secret,
                format: WebhookFormat::Slack,
                timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
            }),
            SinkSpec::Alertmanager { url, timeout } => Sink::Alertmanager(AlertmanagerSink {
                base_url: url,
                timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
            }),
        }
    }

    /// Adds this sink's credentials (SMTP login, webhook secret path and
    /// HMAC key, Alertmanager URL password) to `s`, so that text from
    /// elsewhere is scrubbed of them.
    pub fn add_secrets_to(&self, s: &mut crate::secret::Scrubber) {
        match self {
            Sink::Email(e) => s.add_credentials(&e.username, e.password.expose()),
            Sink::Webhook(w) => {
                s.add_url(w.url.expose(), true);
                s.add(w.hmac_secret.expose());
            }
            Sink::Alertmanager(a) => s.add_url(a.base_url.expose(), false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(port: Option<u16>, tls: Option<SmtpTls>) -> Sink {
        Sink::from_spec(SinkSpec::Email {
            host: "smtp.example".into(),
            port,
            tls,
            username: String::new(),
            password: Secret::default(),
            from: "a@example".into(),
            to: vec!["b@example".into()],
            timeout: None,
        })
    }

    #[test]
    fn smtp_port_follows_the_tls_mode_unless_given() {
        for (tls, want) in [
            (None, (587, SmtpTls::Starttls)),
            (Some(SmtpTls::Starttls), (587, SmtpTls::Starttls)),
            (Some(SmtpTls::Tls), (465, SmtpTls::Tls)),
            (Some(SmtpTls::None), (25, SmtpTls::None)),
        ] {
            let Sink::Email(e) = email(None, tls) else {
                panic!("an email sink")
            };
            assert_eq!((e.port, e.tls), want, "{tls:?}");
            assert_eq!(e.timeout, DEFAULT_TIMEOUT);
        }
        let Sink::Email(e) = email(Some(2525), Some(SmtpTls::Tls)) else {
            panic!("an email sink")
        };
        assert_eq!(e.port, 2525);
    }

    #[test]
    fn webhook_body_defaults_to_soakwatch_and_slack_always_sends_slack() {
        let url = || SecretUrl::with_secret_path("https://hooks.example/T0/B0/x");
        let hook = Sink::from_spec(SinkSpec::Webhook {
            url: url(),
            hmac_secret: Secret::default(),
            format: None,
            timeout: Some(Duration::from_secs(3)),
        });
        let Sink::Webhook(w) = hook else {
            panic!("a webhook")
        };
        assert_eq!(
            (w.format, w.timeout),
            (WebhookFormat::Soakwatch, Duration::from_secs(3))
        );
        let slack = Sink::from_spec(SinkSpec::Slack {
            url: url(),
            hmac_secret: Secret::default(),
            timeout: None,
        });
        let Sink::Webhook(w) = slack else {
            panic!("a webhook")
        };
        assert_eq!(w.format, WebhookFormat::Slack);
    }
}
