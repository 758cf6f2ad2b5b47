//! Dotted key paths (`streams.hot[1].name`) to lines of the config text.

/// 1-based line of a dotted key path (`streams.hot[1].name`) in config text,
/// for commands that report against a loaded config (`validate --live`).
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    LineLocator::new(text).line_of(key)
}

pub(super) fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Maps dotted key paths (`a.b[2].c`) to 1-based lines using the parser's spans.
pub(super) struct LineLocator<'t> {
    text: &'t str,
    doc: Option<toml::Spanned<toml::de::DeTable<'t>>>,
}

impl<'t> LineLocator<'t> {
    pub(super) fn new(text: &'t str) -> Self {
        LineLocator {
            text,
            doc: toml::de::DeTable::parse(text).ok(),
        }
    }

    pub(super) fn line_of_offset(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// Line of the deepest existing part of the key path (so a missing
    /// `streams.hot[0].name` points at the `[[streams.hot]]` table).
    pub(super) fn line_of(&self, key: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut best: Option<usize> = None;
        let mut table: Option<&toml::de::DeTable<'_>> = Some(doc.get_ref());
        let mut value: Option<&toml::de::DeValue<'_>> = None;
        for seg in parse_key_path(key) {
            match seg {
                Seg::Key(k) => {
                    let t = match (table, value) {
                        (Some(t), None) => t,
                        (_, Some(v)) => match v.as_table() {
                            Some(t) => t,
                            None => break,
                        },
                        (None, None) => break,
                    };
                    let Some((kspan, v)) = t.get_key_value(k) else {
                        break;
                    };
                    best = Some(self.line_of_offset(kspan.span().start));
                    value = Some(v.get_ref());
                    table = None;
                }
                Seg::Index(i) => {
                    let Some(arr) = value.and_then(|v| v.as_array()) else {
                        break;
                    };
                    let Some(item) = arr.get(i) else { break };
                    best = Some(self.line_of_offset(item.span().start));
                    value = Some(item.get_ref());
                }
            }
        }
        best
    }
}

pub(super) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Splits `a.b[2].c` (also serde_path_to_error's form) into segments.
pub(super) fn parse_key_path(key: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Seg::Key(name));
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            let Some(end) = stripped.find(']') else { break };
            if let Ok(i) = stripped[..end].parse() {
                out.push(Seg::Index(i));
            }
            rest = &stripped[end + 1..];
        }
    }
    out
}
