//! `${VAR}` and `${VAR:-default}` in string values, and hiding the values
//! substituted from error messages.

use super::*;

/// Looks up environment variables; injectable so tests need not touch the process env.
pub trait EnvLookup {
    /// The variable's value, None when unset.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl EnvLookup for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> EnvLookup for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Replaces any substituted environment value in a message, so a type error on
/// `url = "${DATABASE_URL}"` cannot print the URL.
pub(super) fn hide_values(message: &str, secrets: &BTreeSet<String>) -> String {
    let mut out = message.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        out = out.replace(s.as_str(), "***");
    }
    out
}

pub(super) fn interpolate_table(
    table: &mut toml::Table,
    prefix: &str,
    env: &dyn EnvLookup,
    problems: &mut Vec<(String, String)>,
    secrets: &mut BTreeSet<String>,
) {
    for (k, v) in table.iter_mut() {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        interpolate_value(v, &key, env, problems, secrets);
    }
}

pub(super) fn interpolate_value(
    value: &mut toml::Value,
    key: &str,
    env: &dyn EnvLookup,
    problems: &mut Vec<(String, String)>,
    secrets: &mut BTreeSet<String>,
) {
    match value {
        toml::Value::String(s) => match expand_env(s, env) {
            Ok((expanded, used)) => {
                secrets.extend(used);
                *s = expanded;
            }
            Err(msg) => problems.push((key.to_string(), msg)),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_value(item, &format!("{key}[{i}]"), env, problems, secrets);
            }
        }
        toml::Value::Table(t) => interpolate_table(t, key, env, problems, secrets),
        _ => {}
    }
}

/// Expands `${VAR}`, `${VAR:-default}` and `$${` (a literal `${`). Returns the
/// text and the substituted environment values (to hide them in messages).
/// An unset `${VAR}` without default is an error: silently empty endpoints
/// would make probes fail later with a worse message.
pub fn expand_env(s: &str, env: &dyn EnvLookup) -> Result<(String, Vec<String>), String> {
    let mut out = String::with_capacity(s.len());
    let mut used = Vec::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
            continue;
        }
        let Some(body_start) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err("unterminated ${...} in value".into());
        };
        let body = &body_start[..end];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        let valid_name = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid_name {
            return Err(format!(
                "bad environment variable name `{name}` in ${{...}}"
            ));
        }
        match (env.var(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => {
                out.push_str(&v);
                used.push(v);
            }
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                "environment variable {name} is not set (write ${{{name}:-default}} for a default)"
            ))
            }
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok((out, used))
}
