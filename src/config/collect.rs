//! Deserializing while collecting every problem: serde stops at the first
//! unknown key or wrong type; this reports it, takes the key out (or puts a
//! placeholder in) and tries again, so one run lists every problem.

use super::*;

/// Most problems one section can report before giving up (a file of
/// garbage must not loop for long).
pub(super) const MAX_PASSES: usize = 200;

/// Deserializes `value` as a `T`, collecting every unknown key and wrong
/// type instead of stopping at the first (serde does): each offending key
/// is reported as `(prefix + path, message)` and removed, a removed required
/// key is replaced by a placeholder of a type that gets past it, and
/// deserialization is retried. `reported` receives every key so handled
/// (validation must not judge the placeholders). None when it still fails.
pub(super) fn deserialize_collecting<T: serde::de::DeserializeOwned>(
    mut value: toml::Value,
    prefix: &str,
    problems: &mut Vec<(String, String)>,
    reported: &mut BTreeSet<String>,
) -> Option<T> {
    let join = |p: &str| match (prefix.is_empty(), p.is_empty()) {
        (true, _) => p.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}.{p}"),
    };
    let mut placeholders: BTreeSet<String> = BTreeSet::new();
    for _ in 0..MAX_PASSES {
        let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(t) => return Some(t),
            Err(e) => e,
        };
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = err.inner().message().to_string();
        if let Some(field) = quoted_after(&message, "unknown field `") {
            let key = child_path(&path, &field);
            problems.push((join(&key), message.clone()));
            reported.insert(join(&key));
            if !remove_at(&mut value, &key) {
                return None;
            }
            continue;
        }
        if let Some(field) = quoted_after(&message, "missing field `") {
            let key = child_path(&path, &field);
            if !reported.contains(&join(&key)) {
                problems.push((join(&key), message.clone()));
                reported.insert(join(&key));
            }
            // Try placeholders of each type until this field is past.
            let tried = placeholders.len();
            if !place_holder(&mut value, &key, &mut placeholders) || placeholders.len() == tried {
                return None;
            }
            continue;
        }
        // A wrong type or value at `path`: report, drop it, retry (a
        // placeholder goes in if the field turns out to be required).
        if path.is_empty() || reported.contains(&join(&path)) && !placeholders.contains(&path) {
            if !reported.contains(&join(&path)) {
                problems.push((join(&path), message));
            }
            return None;
        }
        if placeholders.contains(&path) {
            // The placeholder itself was the wrong type: try the next one.
            if !place_holder(&mut value, &path, &mut placeholders) {
                return None;
            }
            continue;
        }
        problems.push((join(&path), message));
        reported.insert(join(&path));
        if !remove_at(&mut value, &path) {
            return None;
        }
    }
    None
}

/// The text between `start` and the next backtick in `message`.
pub(super) fn quoted_after(message: &str, start: &str) -> Option<String> {
    let rest = &message[message.find(start)? + start.len()..];
    Some(rest[..rest.find('`')?].to_string())
}

/// `path.field`, unless serde already pointed at the field itself.
pub(super) fn child_path(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else if path == field || path.ends_with(&format!(".{field}")) {
        path.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// The table holding the last segment of `path`, and that segment.
pub(super) fn parent_of<'v>(
    value: &'v mut toml::Value,
    path: &str,
) -> Option<(&'v mut toml::Value, String)> {
    let segs: Vec<String> = parse_key_path(path)
        .into_iter()
        .map(|s| match s {
            Seg::Key(k) => k.to_string(),
            Seg::Index(i) => format!("[{i}]"),
        })
        .collect();
    let (last, init) = segs.split_last()?;
    let mut cur = value;
    for seg in init {
        cur = match seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(i) => cur.as_array_mut()?.get_mut(i.parse::<usize>().ok()?)?,
            None => cur.as_table_mut()?.get_mut(seg)?,
        };
    }
    Some((cur, last.clone()))
}

/// Removes the value at `path` (a key, or an array element); false when absent.
pub(super) fn remove_at(value: &mut toml::Value, path: &str) -> bool {
    let Some((parent, last)) = parent_of(value, path) else {
        return false;
    };
    match last.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        Some(i) => match (parent.as_array_mut(), i.parse::<usize>()) {
            (Some(a), Ok(i)) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        None => parent
            .as_table_mut()
            .is_some_and(|t| t.remove(&last).is_some()),
    }
}

/// Puts the next untried placeholder type at `path`; false when all were tried.
pub(super) fn place_holder(
    value: &mut toml::Value,
    path: &str,
    tried: &mut BTreeSet<String>,
) -> bool {
    let candidates = [
        toml::Value::String(String::new()),
        toml::Value::Integer(1),
        toml::Value::Float(1.0),
        toml::Value::Boolean(false),
        toml::Value::Array(Vec::new()),
        toml::Value::Table(toml::Table::new()),
    ];
    let Some((parent, last)) = parent_of(value, path) else {
        return false;
    };
    let Some(t) = parent.as_table_mut() else {
        return false;
    };
    for (i, c) in candidates.into_iter().enumerate() {
        let tag = format!("{path}#{i}");
        if tried.insert(tag) {
            tried.insert(path.to_string());
            t.insert(last, c);
            return true;
        }
    }
    false
}
