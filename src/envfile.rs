//! A dotenv (`.env`) file that can be read AND edited losslessly.
//!
//! The soak monitor reads a service's `.env` (e.g. `EVENT_STREAM_MODE`,
//! `NORMALIZE_HRV_ACK_WAIT_MS`) and a rollback step must flip one value while
//! keeping every other line, comment, blank line, inline comment and line
//! ending byte-for-byte. `dotenvy` can read but not round-trip, hence this
//! module: every line is kept verbatim, and only the byte range of one value
//! is ever rewritten.
//!
//! Supported syntax, per line: blank; `# comment`; `[export ]KEY=value` with
//! optional spaces around `=`, where the value is unquoted (ends at a `#`
//! preceded by whitespace, trimmed), `'single quoted'` (literal) or
//! `"double quoted"` (`\n`, `\r`, `\t`, `\"`, `\\` unescaped; other
//! backslashes kept), optionally followed by whitespace and a `# comment`.
//! There is no `${VAR}` expansion and no multi-line values: anything else is
//! kept verbatim and reported by [`EnvFile::warnings`]. Warnings never quote
//! values, since `.env` files hold secrets.

use std::collections::HashMap;

/// A line terminator, kept so CRLF files and a missing final newline survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Eol {
    None,
    Lf,
    CrLf,
}

impl Eol {
    fn as_str(self) -> &'static str {
        match self {
            Eol::None => "",
            Eol::Lf => "\n",
            Eol::CrLf => "\r\n",
        }
    }
}

/// How an assignment's value is written, so `set` can keep the style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// A parsed `KEY=value` line: the key, the decoded value, and the byte range
/// of the raw value (quotes included) inside the line text.
#[derive(Debug, Clone, PartialEq)]
struct Assignment {
    key: String,
    value: String,
    start: usize,
    end: usize,
    quote: Quote,
}

/// One line of the file: its verbatim text (without terminator), terminator,
/// and the assignment it holds, if any.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    text: String,
    eol: Eol,
    assign: Option<Assignment>,
}

/// A parsed `.env` file that renders back to exactly the text it came from,
/// and supports changing one value in place; see the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvFile {
    lines: Vec<Line>,
    warnings: Vec<(usize, String)>,
    invalid: Vec<(usize, String)>,
    /// Each key's last assignment (index into `lines`), so a lookup is one
    /// step and parsing stays linear in the file (a 90k-line file was
    /// quadratic: 35 s).
    last: HashMap<String, usize>,
}

/// Whitespace between tokens on a line (around `=`, after `export`).
fn is_hspace(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Length in bytes of a dotenv key at the start of `s`: `[A-Za-z_][A-Za-z0-9_.]*`.
fn key_len(s: &str) -> usize {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return 0,
    }
    1 + chars
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        .count()
}

/// Whether `key` is something `set` may write (a whole valid key).
fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key_len(key) == key.len()
}

/// At byte `at` of `s`, parse `KEY<hspace>*=`; returns (key end, byte after '=').
fn key_eq(s: &str, at: usize) -> Option<(usize, usize)> {
    let rest = s.get(at..)?;
    let klen = key_len(rest);
    if klen == 0 {
        return None;
    }
    let after_key = &rest[klen..];
    let gap = after_key.len() - after_key.trim_start_matches(is_hspace).len();
    if after_key[gap..].starts_with('=') {
        Some((at + klen, at + klen + gap + 1))
    } else {
        None
    }
}

/// Why a line that is neither blank nor a comment is not an assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum LineError {
    /// An `=` with no valid key before it.
    #[error("invalid key before '=' (expected [export ]KEY=value)")]
    BadKey,
    /// No `=` at all.
    #[error("not a KEY=value assignment (no '=')")]
    NoEquals,
    /// A `"` value never closed.
    #[error("unterminated double-quoted value")]
    UnterminatedDouble,
    /// A `'` value never closed.
    #[error("unterminated single-quoted value")]
    UnterminatedSingle,
    /// Text after a quoted value's closing quote.
    #[error("unexpected text after closing quote")]
    AfterQuote,
}

/// Parse one line's text. `Ok(None)` for blank and comment lines,
/// `Err(reason)` for lines that are neither and not an assignment.
fn parse_line(s: &str, first_line: bool) -> Result<Option<Assignment>, LineError> {
    let trimmed =
        s.trim_start_matches(|c: char| c.is_whitespace() || (first_line && c == '\u{feff}'));
    let body_start = s.len() - trimmed.len();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }

    // `export KEY=...`, falling back to a key literally named `export`.
    let mut found = None;
    if let Some(after) = trimmed.strip_prefix("export") {
        let gap = after.len() - after.trim_start_matches(is_hspace).len();
        if gap > 0 {
            let at = body_start + "export".len() + gap;
            found = key_eq(s, at).map(|(ke, ae)| (at, ke, ae));
        }
    }
    if found.is_none() {
        found = key_eq(s, body_start).map(|(ke, ae)| (body_start, ke, ae));
    }
    let Some((key_start, key_end, after_eq)) = found else {
        return Err(if trimmed.contains('=') {
            LineError::BadKey
        } else {
            LineError::NoEquals
        });
    };
    let key = s[key_start..key_end].to_string();

    let rest = &s[after_eq..];
    let lead = rest.len() - rest.trim_start_matches(is_hspace).len();
    let vstart = after_eq + lead;
    let v = &s[vstart..];

    let (value, end, quote) = if let Some(inner) = v.strip_prefix('"') {
        let mut out = String::new();
        let mut close = None;
        let mut it = inner.char_indices();
        while let Some((i, c)) = it.next() {
            match c {
                '"' => {
                    close = Some(i);
                    break;
                }
                '\\' => match it.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 'r')) => out.push('\r'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, '"')) => out.push('"'),
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, other)) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => break,
                },
                c => out.push(c),
            }
        }
        let Some(i) = close else {
            return Err(LineError::UnterminatedDouble);
        };
        (out, vstart + 1 + i + 1, Quote::Double)
    } else if let Some(inner) = v.strip_prefix('\'') {
        let Some(i) = inner.find('\'') else {
            return Err(LineError::UnterminatedSingle);
        };
        (inner[..i].to_string(), vstart + 1 + i + 1, Quote::Single)
    } else {
        // Unquoted: ends at a '#' preceded by whitespace, then trimmed.
        let mut cut = rest.len();
        let mut prev_ws = false;
        for (i, c) in rest.char_indices() {
            if c == '#' && prev_ws {
                cut = i;
                break;
            }
            prev_ws = c.is_whitespace();
        }
        let part = &rest[..cut];
        let lw = part.len() - part.trim_start().len();
        let tw = part.trim_end().len();
        let (start, end) = if tw > lw {
            (after_eq + lw, after_eq + tw)
        } else if cut < rest.len() {
            // Empty value before a comment: keep the whitespace in the suffix
            // so a later `set` can't glue the '#' onto the value.
            (after_eq, after_eq)
        } else {
            (after_eq + part.len(), after_eq + part.len())
        };
        let assign = Assignment {
            key,
            value: s[start..end].to_string(),
            start,
            end,
            quote: Quote::None,
        };
        return Ok(Some(assign));
    };

    let tail = s[end..].trim_start();
    if !(tail.is_empty() || tail.starts_with('#')) {
        return Err(LineError::AfterQuote);
    }
    Ok(Some(Assignment {
        key,
        value,
        start: vstart,
        end,
        quote,
    }))
}

/// Can `value` be written unquoted and read back unchanged?
fn unquoted_ok(value: &str) -> bool {
    if value.starts_with(['"', '\'', '#']) || value.contains(['\n', '\r']) {
        return false;
    }
    if value.trim() != value {
        return false;
    }
    let mut prev_ws = false;
    for c in value.chars() {
        if c == '#' && prev_ws {
            return false;
        }
        prev_ws = c.is_whitespace();
    }
    true
}

/// Can `value` be written single-quoted and read back unchanged?
fn single_ok(value: &str) -> bool {
    !value.contains(['\'', '\n', '\r'])
}

/// Double-quoted encoding, which can represent any value.
fn double_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Raw text for `value` in the preferred style, or double quotes when the
/// preferred style can't represent it.
fn encode(value: &str, style: Quote) -> String {
    match style {
        Quote::None if unquoted_ok(value) => value.to_string(),
        Quote::Single if single_ok(value) => format!("'{value}'"),
        _ => double_quoted(value),
    }
}

impl EnvFile {
    /// Parse; never fails on odd lines (they are kept verbatim and reported
    /// in [`EnvFile::warnings`] with 1-based line numbers). A repeated key is
    /// also reported, since only its last assignment counts.
    pub fn parse(text: &str) -> EnvFile {
        let mut lines = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let (seg, eol, next) = match rest.find('\n') {
                Some(i) => {
                    let seg = &rest[..i];
                    match seg.strip_suffix('\r') {
                        Some(s) => (s, Eol::CrLf, &rest[i + 1..]),
                        None => (seg, Eol::Lf, &rest[i + 1..]),
                    }
                }
                None => (rest, Eol::None, ""),
            };
            lines.push(Line {
                text: seg.to_string(),
                eol,
                assign: None,
            });
            rest = next;
        }

        let mut warnings = Vec::new();
        let mut invalid = Vec::new();
        let mut last: HashMap<String, usize> = HashMap::new();
        for (idx, line) in lines.iter_mut().enumerate() {
            let n = idx + 1;
            match parse_line(&line.text, idx == 0) {
                Ok(Some(a)) => {
                    if let Some(prev) = last.insert(a.key.clone(), idx) {
                        warnings.push((
                            n,
                            format!(
                                "duplicate key {} (previously assigned on line {}); the last assignment wins",
                                a.key,
                                prev + 1
                            ),
                        ));
                    }
                    line.assign = Some(a);
                }
                Ok(None) => {}
                Err(e) => {
                    invalid.push((n, e.to_string()));
                    warnings.push((n, e.to_string()));
                }
            }
        }
        EnvFile {
            lines,
            warnings,
            invalid,
            last,
        }
    }

    /// Index of the line holding the last assignment of `key`.
    fn last_index(&self, key: &str) -> Option<usize> {
        self.last.get(key).copied()
    }

    /// Value of the LAST assignment of `key`, decoded (double-quoted values
    /// unescaped, single-quoted literal, unquoted trimmed and without inline
    /// comment); what the service itself would see.
    pub fn get(&self, key: &str) -> Option<&str> {
        let i = self.last_index(key)?;
        self.lines[i].assign.as_ref().map(|a| a.value.as_str())
    }

    /// 1-based line of the last assignment of `key`, for error messages that
    /// point the operator at the right place.
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.last_index(key).map(|i| i + 1)
    }

    /// Distinct assigned keys in order of first appearance, for reporting
    /// the configuration a service runs with.
    pub fn keys(&self) -> Vec<&str> {
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<&str> = Vec::new();
        for a in self.lines.iter().filter_map(|l| l.assign.as_ref()) {
            if seen.insert(a.key.as_str()) {
                out.push(&a.key);
            }
        }
        out
    }

    /// Set `key` to `value`, for rollback/cutover edits that must not disturb
    /// the rest of the file: rewrites only the value part of the last
    /// assignment line, preserving `export`, surrounding spaces, the quoting
    /// style if the new value allows it (else double quotes), and any inline
    /// comment. If absent, appends `KEY=value` (quoted if needed) at the end,
    /// in the file's line-ending style. Returns the previous value.
    ///
    /// A `key` that is not a valid name (`[A-Za-z_][A-Za-z0-9_.]*`) would
    /// corrupt the file, so nothing is written and `None` is returned.
    pub fn set(&mut self, key: &str, value: &str) -> Option<String> {
        if !is_valid_key(key) {
            return None;
        }
        if let Some(i) = self.last_index(key) {
            let line = &mut self.lines[i];
            let a = line.assign.as_ref()?;
            let (start, end, style) = (a.start, a.end, a.quote);
            let previous = a.value.clone();
            let prefix = line.text.get(..start)?;
            let suffix = line.text.get(end..)?;
            let first = i == 0;
            let ok = |t: &str| matches!(parse_line(t, first), Ok(Some(n)) if n.key == key && n.value == value);
            let mut text = format!("{prefix}{}{suffix}", encode(value, style));
            if !ok(&text) {
                // Safety net: double quotes represent any value.
                text = format!("{prefix}{}{suffix}", double_quoted(value));
                if !ok(&text) {
                    return None;
                }
            }
            line.text = text;
            self.reparse();
            return Some(previous);
        }

        let eol = self
            .lines
            .iter()
            .map(|l| l.eol)
            .find(|e| *e != Eol::None)
            .unwrap_or(Eol::Lf);
        let new_eol = match self.lines.last_mut() {
            Some(last) if last.eol == Eol::None => {
                // Keep the file's "no final newline" style.
                last.eol = eol;
                Eol::None
            }
            _ => eol,
        };
        self.lines.push(Line {
            text: format!("{key}={}", encode(value, Quote::None)),
            eol: new_eol,
            assign: None,
        });
        self.reparse();
        None
    }

    /// Rebuild the parsed state from the rendered text, so that after an edit
    /// `EnvFile::parse(f.render()) == f` holds by construction.
    fn reparse(&mut self) {
        *self = EnvFile::parse(&self.render());
    }

    /// Odd lines (and repeated keys) as `(1-based line, reason)`, so a caller
    /// can surface a malformed `.env` instead of silently ignoring it.
    pub fn warnings(&self) -> &[(usize, String)] {
        &self.warnings
    }

    /// Lines that are neither blank, a comment nor an assignment, as
    /// `(1-based line, reason)`: a file with any is not an env file (a
    /// passwd-format file reached through a symlink has nothing but), and
    /// the rollback refuses to edit it.
    pub fn invalid_lines(&self) -> &[(usize, String)] {
        &self.invalid
    }

    /// The file text; `EnvFile::parse(t).render() == t` for any input `t`,
    /// including a missing final newline and CRLF line endings, so an edit
    /// can be written back without touching anything else.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            out.push_str(&l.text);
            out.push_str(l.eol.as_str());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn many_keys_parse_and_answer_like_few() {
        // 90k distinct keys (the file that took 35 s): every key found at
        // its line, duplicates still reported with the earlier line.
        let mut text = String::new();
        for i in 0..90_000 {
            text.push_str(&format!("V{i}=x{i}\n"));
        }
        text.push_str("V7=again\n");
        let f = EnvFile::parse(&text);
        assert_eq!(f.get("V89999"), Some("x89999"));
        assert_eq!(f.line_of("V0"), Some(1));
        assert_eq!(f.get("V7"), Some("again"));
        assert_eq!(f.line_of("V7"), Some(90_001));
        assert_eq!(f.keys().len(), 90_000);
        assert_eq!(
            f.warnings(),
            &[(
                90_001,
                "duplicate key V7 (previously assigned on line 8); the last assignment wins"
                    .to_string()
            )]
        );
        assert_eq!(f.render(), text);
    }

    const EXAMPLE: &str = "# Event Bus Configuration - Phase B Multi-Stream Mode
EVENT_STREAM_MODE=multi
FEATURE_SERVICE_MANAGES_STREAMS=false

# Consumer configuration (updated ack_wait)
NORMALIZE_HRV_ACK_WAIT_MS=60000  # Changed from 30000
export DATABASE_URL=\"postgres://user:pw@host/db\"
QUOTED='single # not a comment'
";

    #[test]
    fn example_get_each_key() {
        let f = EnvFile::parse(EXAMPLE);
        assert_eq!(f.get("EVENT_STREAM_MODE"), Some("multi"));
        assert_eq!(f.get("FEATURE_SERVICE_MANAGES_STREAMS"), Some("false"));
        assert_eq!(f.get("NORMALIZE_HRV_ACK_WAIT_MS"), Some("60000"));
        assert_eq!(f.get("DATABASE_URL"), Some("postgres://user:pw@host/db"));
        assert_eq!(f.get("QUOTED"), Some("single # not a comment"));
        assert_eq!(f.get("MISSING"), None);
        assert_eq!(f.get("export"), None);
        assert_eq!(
            f.keys(),
            vec![
                "EVENT_STREAM_MODE",
                "FEATURE_SERVICE_MANAGES_STREAMS",
                "NORMALIZE_HRV_ACK_WAIT_MS",
                "DATABASE_URL",
                "QUOTED"
            ]
        );
        assert_eq!(f.line_of("EVENT_STREAM_MODE"), Some(2));
        assert_eq!(f.line_of("NORMALIZE_HRV_ACK_WAIT_MS"), Some(6));
        assert_eq!(f.line_of("QUOTED"), Some(8));
        assert_eq!(f.line_of("MISSING"), None);
        assert!(f.warnings().is_empty(), "{:?}", f.warnings());
        assert_eq!(f.render(), EXAMPLE);
    }

    #[test]
    fn example_set_changes_exactly_one_line() {
        let mut f = EnvFile::parse(EXAMPLE);
        assert_eq!(
            f.set("EVENT_STREAM_MODE", "single"),
            Some("multi".to_string())
        );
        assert_eq!(f.get("EVENT_STREAM_MODE"), Some("single"));
        let out = f.render();
        assert_eq!(
            out,
            EXAMPLE.replace("EVENT_STREAM_MODE=multi", "EVENT_STREAM_MODE=single")
        );
        let before: Vec<&str> = EXAMPLE.lines().collect();
        let after: Vec<&str> = out.lines().collect();
        assert_eq!(before.len(), after.len());
        let changed: Vec<usize> = (0..before.len())
            .filter(|&i| before[i] != after[i])
            .collect();
        assert_eq!(changed, vec![1]);
        assert_eq!(EnvFile::parse(&out), f);
    }

    #[test]
    fn set_preserves_inline_comment_export_and_quotes() {
        let mut f = EnvFile::parse(EXAMPLE);
        assert_eq!(
            f.set("NORMALIZE_HRV_ACK_WAIT_MS", "30000"),
            Some("60000".into())
        );
        assert_eq!(
            f.set("DATABASE_URL", "postgres://x/y"),
            Some("postgres://user:pw@host/db".into())
        );
        assert_eq!(
            f.set("QUOTED", "still # literal"),
            Some("single # not a comment".into())
        );
        let out = f.render();
        assert!(out.contains("\nNORMALIZE_HRV_ACK_WAIT_MS=30000  # Changed from 30000\n"));
        assert!(out.contains("\nexport DATABASE_URL=\"postgres://x/y\"\n"));
        assert!(out.contains("\nQUOTED='still # literal'\n"));
        assert_eq!(f.get("QUOTED"), Some("still # literal"));
        assert_eq!(EnvFile::parse(&out), f);
    }

    #[test]
    fn set_switches_to_double_quotes_when_needed() {
        let mut f = EnvFile::parse("A=plain # c\nB='single'\n");
        f.set("A", "has # hash");
        f.set("B", "it's");
        assert_eq!(f.render(), "A=\"has # hash\" # c\nB=\"it's\"\n");
        assert_eq!(f.get("A"), Some("has # hash"));
        assert_eq!(f.get("B"), Some("it's"));
        f.set("A", " padded ");
        f.set("B", "two\nlines \"q\" back\\slash");
        assert_eq!(
            f.render(),
            "A=\" padded \" # c\nB=\"two\\nlines \\\"q\\\" back\\\\slash\"\n"
        );
        assert_eq!(f.get("B"), Some("two\nlines \"q\" back\\slash"));
        // Once double-quoted, it stays double-quoted even for plain values.
        f.set("A", "x");
        assert_eq!(f.render().lines().next(), Some("A=\"x\" # c"));
    }

    #[test]
    fn set_new_key_appends() {
        let mut f = EnvFile::parse(EXAMPLE);
        assert_eq!(f.set("NEW_KEY", "v1"), None);
        assert_eq!(f.render(), format!("{EXAMPLE}NEW_KEY=v1\n"));
        assert_eq!(f.get("NEW_KEY"), Some("v1"));
        assert_eq!(f.line_of("NEW_KEY"), Some(9));
        assert_eq!(f.set("SPACED", "a b # c"), None);
        assert_eq!(f.get("SPACED"), Some("a b # c"));
        assert!(f.render().ends_with("NEW_KEY=v1\nSPACED=\"a b # c\"\n"));
    }

    #[test]
    fn set_appends_respecting_line_endings() {
        let mut f = EnvFile::parse("A=1\r\nB=2");
        f.set("C", "3");
        assert_eq!(f.render(), "A=1\r\nB=2\r\nC=3");
        let mut f = EnvFile::parse("A=1\r\n");
        f.set("C", "3");
        assert_eq!(f.render(), "A=1\r\nC=3\r\n");
        let mut f = EnvFile::parse("");
        f.set("C", "3");
        assert_eq!(f.render(), "C=3\n");
        let mut f = EnvFile::parse("# only a comment");
        f.set("C", "3");
        assert_eq!(f.render(), "# only a comment\nC=3");
    }

    #[test]
    fn set_invalid_key_is_a_noop() {
        let mut f = EnvFile::parse("A=1\n");
        for k in ["", "1A", "A B", "A=B", "A\nB", "#A"] {
            assert_eq!(f.set(k, "x"), None);
        }
        assert_eq!(f.render(), "A=1\n");
    }

    #[test]
    fn crlf_file_get_and_set() {
        let t = "A=1\r\nB = two  # c\r\nC=\"q\"\r\n";
        let mut f = EnvFile::parse(t);
        assert_eq!(f.render(), t);
        assert_eq!(f.get("A"), Some("1"));
        assert_eq!(f.get("B"), Some("two"));
        assert_eq!(f.get("C"), Some("q"));
        f.set("B", "three");
        assert_eq!(f.render(), "A=1\r\nB = three  # c\r\nC=\"q\"\r\n");
    }

    #[test]
    fn last_assignment_wins_and_is_the_one_set() {
        let t = "K=first\nOTHER=x\nK=second # c\n";
        let mut f = EnvFile::parse(t);
        assert_eq!(f.get("K"), Some("second"));
        assert_eq!(f.line_of("K"), Some(3));
        assert_eq!(f.keys(), vec!["K", "OTHER"]);
        assert_eq!(f.warnings().len(), 1);
        assert_eq!(f.warnings()[0].0, 3);
        assert!(f.warnings()[0].1.contains("duplicate key K"));
        assert_eq!(f.set("K", "third"), Some("second".into()));
        assert_eq!(f.render(), "K=first\nOTHER=x\nK=third # c\n");
    }

    #[test]
    fn value_parsing_details() {
        let t = "\
A=hello world
B=a#b
C= #just a comment
D=
E=  spaced out  
F=\"esc \\n \\\" \\\\ \\t \\q\"
G='lit \\n'
H=x # y # z
  I = indented
export  J=2
export=3
K.sub_1=ok
L=\"\"
M=''
N=\"a\"# tight comment
";
        let f = EnvFile::parse(t);
        assert!(f.warnings().is_empty(), "{:?}", f.warnings());
        assert_eq!(f.get("A"), Some("hello world"));
        assert_eq!(f.get("B"), Some("a#b"));
        assert_eq!(f.get("C"), Some(""));
        assert_eq!(f.get("D"), Some(""));
        assert_eq!(f.get("E"), Some("spaced out"));
        assert_eq!(f.get("F"), Some("esc \n \" \\ \t \\q"));
        assert_eq!(f.get("G"), Some("lit \\n"));
        assert_eq!(f.get("H"), Some("x"));
        assert_eq!(f.get("I"), Some("indented"));
        assert_eq!(f.get("J"), Some("2"));
        assert_eq!(f.get("export"), Some("3"));
        assert_eq!(f.get("K.sub_1"), Some("ok"));
        assert_eq!(f.get("L"), Some(""));
        assert_eq!(f.get("M"), Some(""));
        assert_eq!(f.get("N"), Some("a"));
        assert_eq!(f.render(), t);
    }

    #[test]
    fn set_on_empty_values_keeps_layout() {
        let mut f = EnvFile::parse("C= # note\nD=\nI = \nM=''\n");
        f.set("C", "x");
        f.set("D", "y");
        f.set("I", "z");
        f.set("M", "w");
        assert_eq!(f.render(), "C=x # note\nD=y\nI = z\nM='w'\n");
        assert_eq!(f.get("C"), Some("x"));
    }

    #[test]
    fn odd_lines_are_kept_and_warned() {
        let t = "GOOD=1\njust words\n1BAD=2\nA B=3\nU=\"open\nS='open\nT=\"x\" trailing\nexport\n";
        let f = EnvFile::parse(t);
        assert_eq!(f.render(), t);
        let lines: Vec<usize> = f.warnings().iter().map(|w| w.0).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6, 7, 8]);
        assert!(f.warnings()[0].1.contains("no '='"));
        assert!(f.warnings()[1].1.contains("invalid key"));
        assert!(f.warnings()[3].1.contains("unterminated double"));
        assert!(f.warnings()[4].1.contains("unterminated single"));
        assert!(f.warnings()[5].1.contains("after closing quote"));
        assert_eq!(f.keys(), vec!["GOOD"]);
        assert_eq!(f.get("U"), None);
        // Warnings never echo values (secrets).
        let f = EnvFile::parse("PW=\"hunter2\n");
        assert!(!f.warnings()[0].1.contains("hunter2"));
    }

    #[test]
    fn invalid_lines_are_parse_errors_only_not_repeated_keys() {
        let f = EnvFile::parse("A=1\nA=2\n# c\n\n");
        assert_eq!(f.warnings().len(), 1, "the repeated key is a warning");
        assert!(f.invalid_lines().is_empty());
        let f = EnvFile::parse("root:x:0:0:root:/root:/bin/bash\nA=1\nB C\n");
        let lines: Vec<usize> = f.invalid_lines().iter().map(|w| w.0).collect();
        assert_eq!(lines, vec![1, 3]);
    }

    #[test]
    fn bom_on_first_line_is_tolerated() {
        let t = "\u{feff}A=1\nB=2\n";
        let mut f = EnvFile::parse(t);
        assert_eq!(f.get("A"), Some("1"));
        assert_eq!(f.render(), t);
        f.set("A", "9");
        assert_eq!(f.render(), "\u{feff}A=9\nB=2\n");
    }

    #[test]
    fn round_trip_edge_cases() {
        for t in [
            "",
            "\n",
            "\r\n",
            "\r",
            "A=1",
            "A=1\r",
            "\n\n",
            "A=1\r\r\n",
            "x\ny\r\nz",
            "\u{feff}",
            "é=ü\n",
        ] {
            assert_eq!(EnvFile::parse(t).render(), t, "{t:?}");
        }
    }

    /// Fragments that exercise the parser's interesting paths.
    fn envish() -> impl Strategy<Value = String> {
        let frag = prop::sample::select(vec![
            "A", "B_2", "export ", "=", " ", "\t", "#", " # c", "\"", "'", "\\", "\\\"", "x", "é",
            "\r", "\n", "\r\n", ".", "\u{feff}",
        ]);
        prop::collection::vec(frag, 0..30).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn round_trip_any_string(t in any::<String>()) {
            prop_assert_eq!(EnvFile::parse(&t).render(), t);
        }

        #[test]
        fn round_trip_envish(t in envish()) {
            let f = EnvFile::parse(&t);
            prop_assert_eq!(f.render(), t);
            for (n, _) in f.warnings() {
                prop_assert!(*n >= 1);
            }
        }

        #[test]
        fn set_then_get_and_reparse(
            t in envish(),
            key in prop::sample::select(vec!["A", "B_2", "NEW"]),
            value in any::<String>(),
        ) {
            let mut f = EnvFile::parse(&t);
            let before = f.get(key).map(str::to_string);
            let n_lines = t.split('\n').count();
            prop_assert_eq!(f.set(key, &value), before.clone());
            prop_assert_eq!(f.get(key), Some(value.as_str()));
            let out = f.render();
            let g = EnvFile::parse(&out);
            prop_assert_eq!(g.get(key), Some(value.as_str()));
            prop_assert_eq!(&g, &f);
            // An existing key rewrites one line; a new key adds at most one.
            if before.is_some() {
                prop_assert_eq!(out.split('\n').count(), n_lines);
            }
        }

        #[test]
        fn set_keeps_other_lines_identical(value in "[ -~]{0,20}") {
            let mut f = EnvFile::parse(EXAMPLE);
            f.set("NORMALIZE_HRV_ACK_WAIT_MS", &value);
            let out = f.render();
            let before: Vec<&str> = EXAMPLE.split('\n').collect();
            let after: Vec<&str> = out.split('\n').collect();
            prop_assert_eq!(before.len(), after.len());
            for i in 0..before.len() {
                if i != 5 {
                    prop_assert_eq!(before[i], after[i]);
                }
            }
            prop_assert!(after[5].starts_with("NORMALIZE_HRV_ACK_WAIT_MS="));
            prop_assert!(after[5].ends_with("  # Changed from 30000"));
            prop_assert_eq!(f.get("NORMALIZE_HRV_ACK_WAIT_MS"), Some(value.as_str()));
        }
    }
}
