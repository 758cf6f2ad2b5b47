//! Log set-up shared by the `soakwatch` and `soakwatch-testkit` binaries.

/// Logs to stderr (scrubbed of secrets, one line per event: see
/// [`crate::output::log_writer`]), filtered by `SOAKWATCH_LOG` (else `default_level`), as
/// text or one JSON object per line. Colour only for a person at a
/// terminal: a journal, a file or a pipe gets plain text, and `NO_COLOR`
/// is honoured.
pub fn init(default_level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SOAKWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(crate::output::log_writer);
    if json {
        fmt.json().init();
    } else {
        fmt.init();
    }
}
