//! Keeping credentials out of logs, reports and alerts.
//!
//! Endpoints come from the environment and routinely carry a password
//! (`postgres://user:pw@host/db`). Everything printable goes through
//! [`redact_url`] or lives in a [`Secret`], whose `Debug`/`Display` never show
//! the value.

use std::fmt;

/// A value that must never be printed: tokens, passwords, whole URLs with credentials.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value; the empty string means "not set".
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The real value, for handing to a client library. Never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when nothing was configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "" } else { "***" })
    }
}

/// A URL that may carry credentials: the real value for clients, a redacted one for people.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl {
    raw: Secret,
    shown: String,
}

impl SecretUrl {
    /// Wraps a URL and computes its printable form once.
    pub fn new(raw: impl Into<String>) -> Self {
        let raw = raw.into();
        let shown = redact_url(&raw);
        SecretUrl {
            raw: Secret(raw),
            shown,
        }
    }

    /// A URL whose path is itself a credential (Slack-style webhooks put the
    /// token there): shown as `scheme://host:port/***`.
    pub fn with_secret_path(raw: impl Into<String>) -> Self {
        let raw = raw.into();
        let shown = match url::Url::parse(&raw) {
            Ok(u) => format!(
                "{}://{}{}/***",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            ),
            Err(_) => "<unparsable url hidden>".into(),
        };
        SecretUrl {
            raw: Secret(raw),
            shown,
        }
    }

    /// The real URL, for handing to a client library.
    pub fn expose(&self) -> &str {
        self.raw.expose()
    }

    /// The URL without password, token or secret-looking query values.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.shown)
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Query keys whose values are credentials in the URLs we meet (libpq, NATS,
/// HTTP APIs); one list for redaction and for `discover`'s written URLs.
pub const SECRET_QUERY_KEYS: &[&str] = &[
    "password",
    "pass",
    "pwd",
    "token",
    "auth_token",
    "access_token",
    "secret",
    "key",
    "api_key",
    "apikey",
    "sslpassword",
];

/// Printable form of a URL: the password (and a lone user that may be a token)
/// becomes `***`, credential query values become `***`. Unparsable input is
/// fully hidden rather than risk showing a secret.
pub fn redact_url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return if raw.is_empty() {
            String::new()
        } else {
            "<unparsable url hidden>".to_string()
        };
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    } else if !url.username().is_empty() && url.scheme().starts_with("nats") {
        // nats://TOKEN@host: a lone user part is the token.
        let _ = url.set_username("***");
    }
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let secret = SECRET_QUERY_KEYS.contains(&k.to_ascii_lowercase().as_str());
            (
                k.into_owned(),
                if secret { "***".into() } else { v.into_owned() },
            )
        })
        .collect();
    if !pairs.is_empty() {
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_hidden() {
        let shown = redact_url("postgres://athlete:hunter2@db:5432/athlete_normalize");
        assert_eq!(shown, "postgres://athlete:***@db:5432/athlete_normalize");
        assert!(!shown.contains("hunter2"));
    }

    #[test]
    fn nats_token_user_is_hidden() {
        let shown = redact_url("nats://s3cr3t@127.0.0.1:4222");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn query_secrets_are_hidden() {
        let shown = redact_url("postgres://h/db?sslmode=require&password=pw123");
        assert!(shown.contains("sslmode=require"));
        assert!(!shown.contains("pw123"), "{shown}");
    }

    #[test]
    fn plain_url_unchanged_and_garbage_hidden() {
        assert_eq!(
            redact_url("http://127.0.0.1:4102/metrics"),
            "http://127.0.0.1:4102/metrics"
        );
        assert_eq!(redact_url("not a url pw"), "<unparsable url hidden>");
    }

    #[test]
    fn secret_paths_are_hidden() {
        let u = SecretUrl::with_secret_path(
            "https://hooks.example.com:8443/services/T0/B0/XYZsecret?x=1",
        );
        assert_eq!(u.shown(), "https://hooks.example.com:8443/***");
        assert!(!format!("{u} {u:?}").contains("XYZsecret"));
    }

    #[test]
    fn secret_never_formats() {
        let s = Secret::new("tok");
        assert_eq!(format!("{s} {s:?}"), "*** \"***\"");
        let u = SecretUrl::new("nats://u:p@h:4222");
        assert!(!format!("{u} {u:?}").contains(":p@"));
        assert_eq!(u.expose(), "nats://u:p@h:4222");
    }
}
