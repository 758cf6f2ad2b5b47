//! The email sink: one text/plain message per notification over SMTP (lettre).
//!
//! Each delivery opens its own connection and closes it (QUIT) afterwards:
//! alerts are rare, and a fresh connection never meets a relay that dropped
//! an idle pooled one.

use std::time::SystemTime;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{error_chain, scrub, EmailSink, SinkError, SmtpTls};
use crate::alert::model::Notification;

/// `email to a@x, b@y via smtp host:port (starttls)`.
pub(super) fn describe(s: &EmailSink) -> String {
    format!(
        "email to {} via smtp {}:{} ({})",
        s.to.join(", "),
        s.host,
        s.port,
        s.tls.label()
    )
}

/// The Message-ID of a notification's email: `<soakwatch.{id}@{domain}>`.
///
/// Derived from the notification id only, so a retried delivery carries the
/// same Message-ID and mail clients or archives recognise the duplicate.
/// Characters outside `[A-Za-z0-9_-]` are written as `=XX` per UTF-8 byte,
/// which keeps the id a valid RFC 5322 dot-atom and distinct ids distinct.
pub(super) fn message_id(notification_id: &str, domain: &str) -> String {
    let mut left = String::from("soakwatch.");
    for b in notification_id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            left.push(char::from(b));
        } else {
            left.push_str(&format!("={b:02X}"));
        }
    }
    if notification_id.is_empty() {
        left.push_str("none");
    }
    let domain_ok = !domain.is_empty()
        && domain
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    let right = if domain_ok {
        domain
    } else {
        "soakwatch.invalid"
    };
    format!("<{left}@{right}>")
}

fn parse_mailbox(what: &str, raw: &str, ctx: &str) -> Result<Mailbox, SinkError> {
    raw.trim()
        .parse::<Mailbox>()
        .map_err(|e| SinkError::permanent(format!("{ctx}: bad {what} address {raw:?}: {e}")))
}

/// Builds the message: subject, body, Message-ID, Date = the notification's creation time.
pub(super) fn build_message(s: &EmailSink, n: &Notification) -> Result<Message, SinkError> {
    let ctx = describe(s);
    let from = parse_mailbox("from", &s.from, &ctx)?;
    if s.to.is_empty() {
        return Err(SinkError::permanent(format!(
            "{ctx}: no recipient configured"
        )));
    }
    let domain = from.email.domain().to_string();
    let mut builder = Message::builder()
        .from(from)
        .subject(n.subject())
        .message_id(Some(message_id(&n.id, &domain)))
        .date(SystemTime::from(n.created_at))
        .header(ContentType::TEXT_PLAIN)
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Soakwatch-Id"),
            n.id.clone(),
        ));
    for to in &s.to {
        builder = builder.to(parse_mailbox("to", to, &ctx)?);
    }
    builder
        .body(n.text())
        .map_err(|e| SinkError::permanent(format!("{ctx}: cannot build message: {e}")))
}

fn transport(
    s: &EmailSink,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, lettre::transport::smtp::Error> {
    let builder = match s.tls {
        SmtpTls::Tls => {
            crate::install_crypto_provider();
            AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host)?
        }
        SmtpTls::Starttls => {
            crate::install_crypto_provider();
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)?
        }
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host),
    };
    let mut builder = builder.port(s.port).timeout(Some(s.timeout));
    if !s.username.is_empty() {
        builder = builder.credentials(Credentials::new(
            s.username.clone(),
            s.password.expose().to_string(),
        ));
    }
    Ok(builder.build())
}

/// Maps a lettre error: 5xx replies and client-side mismatches (no STARTTLS
/// offered, no usable AUTH mechanism) are permanent; 4xx, network, TLS and
/// timeouts may pass.
fn map_error(s: &EmailSink, e: &lettre::transport::smtp::Error) -> SinkError {
    let retryable = !(e.is_permanent() || e.is_client());
    let what = if e.is_timeout() {
        format!("timed out: {}", error_chain(e))
    } else {
        error_chain(e)
    };
    let reason = format!("{}: {}", describe(s), scrub(&what, &[s.password.expose()]));
    if retryable {
        SinkError::retryable(reason)
    } else {
        SinkError::permanent(reason)
    }
}

/// Sends one notification; the whole exchange is bounded by `s.timeout`.
pub(super) async fn send(s: &EmailSink, n: &Notification) -> Result<(), SinkError> {
    let message = build_message(s, n)?;
    let transport = transport(s).map_err(|e| map_error(s, &e))?;
    let result = tokio::time::timeout(s.timeout, async {
        let r = transport.send(message).await;
        transport.shutdown().await;
        r
    })
    .await;
    match result {
        Ok(Ok(_response)) => Ok(()),
        Ok(Err(e)) => Err(map_error(s, &e)),
        Err(_elapsed) => Err(SinkError::retryable(format!(
            "{}: timed out after {:?}",
            describe(s),
            s.timeout
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::model::{AlertItem, AlertState, NotificationKind, Severity};
    use crate::secret::Secret;
    use std::time::Duration;

    fn sink() -> EmailSink {
        EmailSink {
            host: "127.0.0.1".into(),
            port: 25,
            tls: SmtpTls::None,
            username: String::new(),
            password: Secret::new("pw-secret"),
            from: "Soakwatch <sw@example.org>".into(),
            to: vec!["ops@example.org".into(), "b@example.net".into()],
            timeout: Duration::from_secs(2),
        }
    }

    fn note() -> Notification {
        Notification {
            id: "n 1/é".into(),
            soak_id: "s".into(),
            soak_name: "phase-b".into(),
            created_at: chrono::Utc::now(),
            kind: NotificationKind::Test,
            alerts: vec![AlertItem {
                name: "soakwatch_test".into(),
                criterion: None,
                severity: Severity::Warning,
                state: AlertState::Firing,
                starts_at: chrono::Utc::now(),
                ends_at: None,
                summary: "test".into(),
                evidence: "e".into(),
                value: None,
                target: "t".into(),
            }],
        }
    }

    #[test]
    fn message_id_is_stable_valid_and_injective() {
        assert_eq!(
            message_id("n-42_x", "example.org"),
            "<soakwatch.n-42_x@example.org>"
        );
        assert_eq!(
            message_id("a b", "example.org"),
            "<soakwatch.a=20b@example.org>"
        );
        assert_ne!(message_id("a b", "x.org"), message_id("a_b", "x.org"));
        assert_ne!(message_id("a=20b", "x.org"), message_id("a b", "x.org"));
        assert_eq!(
            message_id("x", "[127.0.0.1]"),
            "<soakwatch.x@soakwatch.invalid>"
        );
    }

    #[test]
    fn message_has_headers_and_body() {
        let m = build_message(&sink(), &note()).expect("builds");
        let raw = String::from_utf8_lossy(&m.formatted()).to_string();
        assert!(
            raw.contains("Message-ID: <soakwatch.n=201=2F=C3=A9@example.org>"),
            "{raw}"
        );
        assert!(raw.contains("To: ops@example.org, b@example.net"), "{raw}");
        assert!(
            raw.contains("Content-Type: text/plain; charset=utf-8"),
            "{raw}"
        );
        assert!(raw.contains("X-Soakwatch-Id: "), "{raw}");
        assert!(
            raw.contains("[soakwatch] TEST notification (phase-b)"),
            "{raw}"
        );
        assert_eq!(m.envelope().to().len(), 2);
    }

    #[test]
    fn bad_addresses_are_permanent() {
        let mut s = sink();
        s.to = vec!["not an address".into()];
        let e = build_message(&s, &note()).expect_err("bad to");
        assert!(!e.retryable);
        assert!(e.reason.contains("bad to address"), "{}", e.reason);
        s.to.clear();
        assert!(!build_message(&s, &note()).expect_err("no to").retryable);
        let mut s = sink();
        s.from = "@@".into();
        assert!(!build_message(&s, &note()).expect_err("bad from").retryable);
    }

    #[test]
    fn newline_in_id_cannot_inject_headers() {
        let mut n = note();
        n.id = "x\r\nBcc: evil@example.org".into();
        let m = build_message(&sink(), &n).expect("builds");
        let raw = String::from_utf8_lossy(&m.formatted()).to_string();
        assert!(!raw.contains("\r\nBcc: evil"), "{raw}");
        assert_eq!(m.envelope().to().len(), 2);
    }
}
