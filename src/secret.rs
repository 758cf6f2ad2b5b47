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

// ---------------------------------------------------------------------------------------------
// Scrubbing text that came from elsewhere.

/// Shortest secret value that is cut out of text: shorter ones would shred
/// ordinary words and protect nothing.
const MIN_SCRUB_LEN: usize = 3;

/// Every credential the config names, cut out of text that soakwatch did not
/// write itself (a restart command's output, a receiver's error body, a
/// server's error message) before that text is stored, logged or sent.
/// A restart command that runs `env`, or a receiver that echoes the
/// `Authorization` header, once put `SMTP_PASSWORD`, a webhook secret and a
/// Slack URL path into the state database and the outbox.
///
/// Besides the exact values (and their percent-decoded and Basic-auth
/// forms), [`Scrubber::scrub`] hides what looks like a credential whatever
/// its value: `Authorization:` header values, `Bearer`/`Basic` tokens, and
/// passwords in URLs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Scrubber {
    /// Values to cut out, longest first (so a secret containing another goes whole).
    values: Vec<String>,
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scrubber({} values)", self.values.len())
    }
}

impl Scrubber {
    /// Adds one secret value (ignored when shorter than 3 characters).
    pub fn add(&mut self, value: &str) {
        let v = value.trim();
        if v.len() >= MIN_SCRUB_LEN && !self.values.iter().any(|x| x == v) {
            self.values.push(v.to_string());
            self.values
                .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        }
    }

    /// Adds the credentials of a URL: password, a lone user of a NATS URL (a token),
    /// credential query values, the Basic-auth header value the HTTP client
    /// sends for its userinfo, and, when `secret_path` (Slack-style webhooks),
    /// its path and query too.
    pub fn add_url(&mut self, raw: &str, secret_path: bool) {
        let Ok(u) = url::Url::parse(raw.trim()) else {
            return;
        };
        let user = percent_decode(u.username());
        let pass = u.password().map(percent_decode);
        if let Some(p) = &pass {
            self.add_credentials(&user, p);
            self.add(u.password().unwrap_or_default());
        } else if !user.is_empty() && u.scheme().starts_with("nats") {
            // nats://TOKEN@host: a lone user part is the token (elsewhere a
            // lone user is a name, and cutting it would shred output).
            self.add(&user);
        }
        for (k, v) in u.query_pairs() {
            if SECRET_QUERY_KEYS.contains(&k.to_ascii_lowercase().as_str()) {
                self.add(&v);
            }
        }
        if secret_path {
            if u.path().len() > 1 {
                self.add(u.path());
                self.add(u.path().trim_start_matches('/'));
                self.add(&percent_decode(u.path()));
            }
            if let Some(q) = u.query() {
                self.add(q);
            }
        }
    }

    /// Adds a user's password and the encodings it travels in: HTTP Basic
    /// (`user:pass`), SMTP AUTH PLAIN (`\0user\0pass`) and LOGIN (the
    /// password alone), each base64, so an echo of the header is cut too.
    pub fn add_credentials(&mut self, user: &str, password: &str) {
        if password.len() < MIN_SCRUB_LEN {
            return;
        }
        self.add(password);
        self.add(&base64(format!("{user}:{password}").as_bytes()));
        self.add(&base64(format!("\0{user}\0{password}").as_bytes()));
        self.add(&base64(password.as_bytes()));
    }

    /// Adds every value of another scrubber.
    pub fn extend(&mut self, other: &Scrubber) {
        for v in &other.values {
            self.add(v);
        }
    }

    /// How many values are known (for logs: never the values).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when no value is known.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every known value and every credential-looking token
    /// replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), "***");
            }
        }
        scrub_patterns(&out)
    }
}

/// Credential-looking tokens, whatever their value: header values of
/// `Authorization`, `Proxy-Authorization`, `X-Api-Key` and the like,
/// `Bearer`/`Basic` tokens, and URL userinfo passwords.
fn scrub_patterns(text: &str) -> String {
    use std::sync::OnceLock;
    static RES: OnceLock<Vec<(regex::Regex, &'static str)>> = OnceLock::new();
    let res = RES.get_or_init(|| {
        [
            (
                r#"(?i)\b((?:proxy-)?authorization|x-api-key|api-key|x-auth-token|cookie|set-cookie)(["']?\s*[:=]\s*["']?)(?:(basic|bearer|token|digest|negotiate)\s+)?[^\s"',;}]+"#,
                "$1$2$3 ***",
            ),
            (r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@", "$1***@"),
        ]
        .into_iter()
        .filter_map(|(re, with)| regex::Regex::new(re).ok().map(|r| (r, with)))
        .collect()
    });
    let mut out = text.to_string();
    for (re, with) in res {
        if re.is_match(&out) {
            out = re.replace_all(&out, *with).into_owned();
        }
    }
    // `Bearer <token>` / `Basic <base64>` anywhere: only tokens that look
    // like one (a digit or a base64 sign), so "basic configuration" stays.
    static TOKEN: OnceLock<Option<regex::Regex>> = OnceLock::new();
    if let Some(re) = TOKEN
        .get_or_init(|| regex::Regex::new(r"(?i)\b(bearer|basic)\s+([A-Za-z0-9._~+/=-]{8,})").ok())
    {
        out = re
            .replace_all(&out, |c: &regex::Captures<'_>| {
                let tok = &c[2];
                if tok
                    .chars()
                    .any(|ch| ch.is_ascii_digit() || "+/=".contains(ch))
                {
                    format!("{} ***", &c[1])
                } else {
                    c[0].to_string()
                }
            })
            .into_owned();
    }
    out.replace("   ***", " ***").replace("  ***", " ***")
}

/// Percent-decoding (lossy) of a URL component.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Standard base64 with padding (what HTTP Basic auth sends).
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The process-wide scrubber: the config registers its secrets once loaded,
/// and every boundary where outside text is stored, logged or sent applies it.
static GLOBAL: std::sync::RwLock<Scrubber> =
    std::sync::RwLock::new(Scrubber { values: Vec::new() });

/// Adds the secrets of a loaded config to the process-wide scrubber (a union:
/// a second config can only hide more).
pub fn register(s: &Scrubber) {
    match GLOBAL.write() {
        Ok(mut g) => g.extend(s),
        Err(p) => p.into_inner().extend(s),
    }
}

/// `text` scrubbed with the process-wide scrubber (see [`Scrubber::scrub`]).
pub fn scrub(text: &str) -> String {
    match GLOBAL.read() {
        Ok(g) => g.scrub(text),
        Err(p) => p.into_inner().scrub(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubber_hides_values_basic_auth_and_header_values() {
        let mut s = Scrubber::default();
        s.add("smtp-pw-123");
        s.add("ab");
        s.add_url(
            "https://hook:h00kpw@hooks.example.com/services/T0/B0/XYZsecret?x=1",
            true,
        );
        assert_eq!(base64(b"hook:h00kpw"), "aG9vazpoMDBrcHc=");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        let text = "SMTP_PASSWORD=smtp-pw-123 ab\nAuthorization: Basic aG9vazpoMDBrcHc=\n\
                    url /services/T0/B0/XYZsecret and services/T0/B0/XYZsecret\n\
                    authorization=\"Bearer abc.def.ghi\" x-api-key: k-999 \
                    postgres://u:other@db/x token Bearer Zm9vYmFyYmF6";
        let out = s.scrub(text);
        for leak in [
            "smtp-pw-123",
            "aG9vazpoMDBrcHc",
            "XYZsecret",
            "abc.def",
            "k-999",
            "other@",
            "Zm9vYmFyYmF6",
            "h00kpw",
        ] {
            assert!(!out.contains(leak), "{leak} in {out}");
        }
        assert!(out.contains(" ab\n"), "short values are kept: {out}");
        assert_eq!(
            s.scrub("basic configuration, Bearer of news"),
            "basic configuration, Bearer of news"
        );
        assert!(out.contains("Authorization: Basic ***"), "{out}");
        assert!(!format!("{s:?}").contains("smtp"));
    }

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
