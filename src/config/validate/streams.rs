//! `[streams]`: the topology's names, subjects and storage kinds.

use super::*;

/// Streams: valid, distinct names with subjects and a storage kind.
pub(super) fn check_streams(raw: &RawConfig, p: Problems<'_>) {
    let mut names = BTreeSet::new();
    let roles = raw.streams.keyed();
    if raw.streams.hot.is_empty() {
        p("streams.hot", "at least one hot stream is required".into());
    }
    for (key, spec) in &roles {
        if spec.name.trim().is_empty() || spec.name.contains(['.', '*', '>', ' ']) {
            p(
                &format!("{key}.name"),
                format!("`{}` is not a valid stream name", spec.name),
            );
        }
        if !names.insert(spec.name.clone()) {
            p(
                &format!("{key}.name"),
                format!("stream `{}` is configured twice", spec.name),
            );
        }
        if spec.subjects.is_empty() {
            p(
                &format!("{key}.subjects"),
                "at least one subject is required".into(),
            );
        }
        for (i, s) in spec.subjects.iter().enumerate() {
            if let Err(e) = subjects::validate_pattern(s) {
                p(&format!("{key}.subjects[{i}]"), e.to_string());
            }
        }
        if let Some(st) = &spec.storage {
            if st != "file" && st != "memory" {
                p(
                    &format!("{key}.storage"),
                    format!("`{st}`: expected file or memory"),
                );
            }
        }
    }
}
