//! A NATS connection's settings, written in `[nats]` (the watched server)
//! and again in `[state]` (the JetStream holding the state): one set of
//! rules for both, each message naming the key of the section at fault.

use super::*;

/// One section's connection keys, borrowed from its raw form.
pub(super) struct NatsSettings<'a> {
    /// The section (`nats`, `state`): the prefix of every key.
    section: &'static str,
    /// The URL's key in that section (`url`, `nats_url`).
    url_key: &'static str,
    url: &'a str,
    token: &'a str,
    user: &'a str,
    password: &'a str,
    creds_file: &'a str,
    tls_required: bool,
    tls_ca_file: &'a str,
    tls_cert_file: &'a str,
    tls_key_file: &'a str,
}

impl RawNats {
    /// `[nats]`'s connection: `url`, its auth and TLS.
    pub(super) fn settings(&self) -> NatsSettings<'_> {
        NatsSettings {
            section: "nats",
            url_key: "url",
            url: &self.url,
            token: &self.token,
            user: &self.user,
            password: &self.password,
            creds_file: &self.creds_file,
            tls_required: self.tls_required,
            tls_ca_file: &self.tls_ca_file,
            tls_cert_file: &self.tls_cert_file,
            tls_key_file: &self.tls_key_file,
        }
    }
}

impl RawState {
    /// `[state]`'s own connection: `nats_url`, its auth and TLS.
    pub(super) fn settings(&self) -> NatsSettings<'_> {
        NatsSettings {
            section: "state",
            url_key: "nats_url",
            url: &self.nats_url,
            token: &self.token,
            user: &self.user,
            password: &self.password,
            creds_file: &self.creds_file,
            tls_required: self.tls_required,
            tls_ca_file: &self.tls_ca_file,
            tls_cert_file: &self.tls_cert_file,
            tls_key_file: &self.tls_key_file,
        }
    }
}

impl NatsSettings<'_> {
    /// The dotted key of `field` in this section.
    fn key(&self, field: &str) -> String {
        format!("{}.{field}", self.section)
    }

    /// Every rule: the URLs, then the credentials and TLS files.
    pub(super) fn check(&self, p: Problems<'_>) {
        self.check_urls(p);
        self.check_credentials(p);
    }

    /// Each comma-separated server is a URL of a scheme the client speaks.
    pub(super) fn check_urls(&self, p: Problems<'_>) {
        let key = self.key(self.url_key);
        for (i, part) in self.url.split(',').enumerate() {
            match url::Url::parse(part.trim()) {
                Ok(u) if matches!(u.scheme(), "nats" | "tls" | "ws" | "wss") => {}
                Ok(u) => p(
                    &key,
                    format!(
                        "server {} has scheme `{}`; expected nats, tls, ws or wss",
                        i + 1,
                        u.scheme()
                    ),
                ),
                Err(e) => p(&key, format!("server {} is not a URL: {e}", i + 1)),
            }
        }
    }

    /// One kind of auth at most, user with password, certificate with key.
    pub(super) fn check_credentials(&self, p: Problems<'_>) {
        if self.user.is_empty() != self.password.is_empty() {
            p(
                &self.key("password"),
                "user and password must be set together".into(),
            );
        }
        let auth_kinds = [
            !self.token.is_empty(),
            !self.user.is_empty(),
            !self.creds_file.trim().is_empty(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if auth_kinds > 1 {
            p(
                &self.key("token"),
                "choose one of token, user/password or creds_file".into(),
            );
        }
        if self.tls_cert_file.is_empty() != self.tls_key_file.is_empty() {
            p(
                &self.key("tls_key_file"),
                "tls_cert_file and tls_key_file must be set together".into(),
            );
        }
    }

    /// Whether any TLS key is set (they mean nothing without a URL).
    pub(super) fn sets_tls(&self) -> bool {
        self.tls_required || !self.tls_ca_file.is_empty() || !self.tls_cert_file.is_empty()
    }

    /// The connection, secrets wrapped and files resolved against `base`.
    pub(super) fn resolve(&self, base: &Path) -> NatsConfig {
        NatsConfig {
            url: SecretUrl::new(self.url),
            token: Secret::new(self.token),
            user: self.user.to_string(),
            password: Secret::new(self.password),
            creds_file: non_empty_path(base, self.creds_file),
            tls_required: self.tls_required,
            tls_ca_file: non_empty_path(base, self.tls_ca_file),
            tls_cert_file: non_empty_path(base, self.tls_cert_file),
            tls_key_file: non_empty_path(base, self.tls_key_file),
        }
    }
}

/// `[nats]`: the watched server.
pub(super) fn validate_nats(raw: &RawConfig, base: &Path, p: Problems<'_>) -> NatsConfig {
    let nats = raw.nats.settings();
    nats.check(p);
    nats.resolve(base)
}
