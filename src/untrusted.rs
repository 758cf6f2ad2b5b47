//! Outside text made safe for line-oriented human output: a leaf every
//! renderer, log sink and alert body goes through.

/// Text from outside (label values, log lines, evidence quoting them,
/// servers' and receivers' errors, a restart command's output) made safe for
/// a line-oriented human output: every control character becomes a visible
/// escape (`\n`, `\r`, `\t`, else `\u{1b}` style), as do the Unicode bidi
/// overrides and line separators, so a crafted label cannot forge a line
/// (`OVERALL: PASS (exit 0)`) or drive the terminal. JSON needs none of this
/// (serde escapes control characters).
pub fn escape_untrusted(s: &str) -> String {
    if !s.chars().any(needs_escape) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

/// [`escape_untrusted`] after scrubbing every configured credential: the
/// one call for outside text on its way into any human output.
pub fn untrusted(s: &str) -> String {
    escape_untrusted(&crate::secret::scrub(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_has_every_control_character_made_visible() {
        assert_eq!(escape_untrusted("plain é ✅ C:\\x"), "plain é ✅ C:\\x");
        assert_eq!(
            escape_untrusted("a\nOVERALL: PASS\r\t\u{1b}[2J\u{7}\u{7f}\u{9b}\u{202e}"),
            "a\\nOVERALL: PASS\\r\\t\\u{1b}[2J\\u{7}\\u{7f}\\u{9b}\\u{202e}"
        );
    }
}
