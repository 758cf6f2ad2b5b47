//! `[log]`: the service's log, its fallback patterns and the scan budget.

use super::*;

/// The log file (relative to the config's folder), its patterns (compiled)
/// and the scan budget; None without `[log]`.
pub(super) fn validate_log(raw: &RawConfig, base: &Path, p: Problems<'_>) -> Option<LogConfig> {
    let compile =
        |key: &str, pats: &[String], p: &mut dyn FnMut(&str, String)| -> Vec<regex::Regex> {
            pats.iter()
                .enumerate()
                .filter_map(|(i, s)| match regex::Regex::new(s) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        let first = e
                            .to_string()
                            .lines()
                            .last()
                            .unwrap_or("invalid")
                            .trim()
                            .to_string();
                        p(
                            &format!("{key}[{i}]"),
                            format!("bad regular expression: {first}"),
                        );
                        None
                    }
                })
                .collect()
        };
    let log = raw.log.as_ref()?;
    let fallback_patterns = compile("log.fallback_patterns", &log.fallback_patterns, p);
    let ignore_patterns = compile("log.ignore_patterns", &log.ignore_patterns, p);
    if log.max_scan_bytes == 0 {
        p(
            "log.max_scan_bytes",
            "must be greater than 0 (0 would scan nothing and never see a fallback)".into(),
        );
    }
    if log.fallback_patterns.is_empty() {
        p(
            "log.fallback_patterns",
            "at least one pattern is required".into(),
        );
    }
    Some(LogConfig {
        path: resolve_path(base, &log.path),
        fallback_patterns,
        ignore_patterns,
        max_scan_bytes: log.max_scan_bytes,
    })
}
