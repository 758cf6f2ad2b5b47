//! Log set-up shared by the `soakwatch` and `soakwatch-testkit` binaries,
//! and the one sink every log event goes through.

use std::io::Write;

/// Logs to stderr (scrubbed of secrets, one line per event: see
/// [`log_writer`]), filtered by `SOAKWATCH_LOG` (else `default_level`), as
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
        .with_writer(log_writer);
    if json {
        fmt.json().init();
    } else {
        fmt.init();
    }
}

/// The daemon's log sink: stderr, one event per write, with configured
/// credentials scrubbed and any line break or control character inside an
/// event made visible, so a logged error that echoes a receiver's body
/// cannot forge log lines. ESC is left alone: tracing-subscriber already
/// escapes it in field values, and its own colours use it.
pub fn log_writer() -> LogWriter {
    LogWriter
}

/// See [`log_writer`].
#[derive(Debug, Clone, Copy)]
pub struct LogWriter;

/// One formatted log event made safe: scrubbed, inner breaks and control
/// characters (but ESC and tab) escaped, the final newline kept.
fn safe_log_event(text: &str) -> String {
    let (body, end) = match text.strip_suffix('\n') {
        Some(b) => (b, "\n"),
        None => (text, ""),
    };
    let scrubbed = crate::secret::scrub(body);
    let mut out = String::with_capacity(scrubbed.len() + 1);
    for c in scrubbed.chars() {
        match c {
            '\u{1b}' | '\t' => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if crate::untrusted::needs_escape(c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push_str(end);
    out
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let out = safe_log_event(&String::from_utf8_lossy(buf));
        std::io::stderr().lock().write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_event_stays_one_line() {
        assert_eq!(
            safe_log_event("WARN x error=a\nERROR forged\r\u{7}\n"),
            "WARN x error=a\\nERROR forged\\r\\u{7}\n"
        );
        // tracing's own colours (ESC) are kept; it escapes ESC in fields itself.
        assert_eq!(
            safe_log_event("\u{1b}[2mt\u{1b}[0m\n"),
            "\u{1b}[2mt\u{1b}[0m\n"
        );
    }
}
