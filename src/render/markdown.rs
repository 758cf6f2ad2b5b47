//! Markdown helpers shared by `check --format markdown` and the soak
//! reports: cells that stay in their cell, and the deployment record's
//! state tables.

use chrono::Utc;

use crate::sample::Snapshot;
use crate::untrusted::untrusted;

/// A table cell: pipes escaped (they would split the cell), `*` escaped
/// (subject wildcards would turn into emphasis), `<` escaped where it could
/// open an HTML tag (`<none>`), line breaks flattened, other control
/// characters made visible and credentials scrubbed ([`untrusted`]).
pub fn md_cell(s: &str) -> String {
    // Line breaks flattened first (a cell is one line), then every other
    // control character made visible.
    let s = &untrusted(&s.replace("\r\n", " ").replace(['\n', '\r'], " "));
    let mut out = String::with_capacity(s.len() + 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '|' => out.push_str("\\|"),
            '*' => out.push_str("\\*"),
            '<' if chars
                .peek()
                .is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?')) =>
            {
                out.push_str("\\<")
            }
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push(' ');
            }
            '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The deployment record's "stream state" and "consumer health" tables for a
/// snapshot; shared by `check --format markdown` and the soak reports.
pub fn state_tables_markdown(snap: &Snapshot) -> String {
    let t = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%SZ").to_string();
    let mut out = String::from(
        "## Stream state\n\n| Stream | Subjects | Messages | Bytes | First Seq | Last Seq | Last message |\n|---|---|---|---|---|---|---|\n",
    );
    for (name, s) in &snap.streams {
        match s {
            Ok(Some(s)) => out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                md_cell(name),
                md_cell(&s.subjects.join(", ")),
                s.messages,
                s.bytes,
                s.first_seq,
                s.last_seq,
                s.last_ts.map(t).unwrap_or_else(|| "-".into())
            )),
            Ok(None) => out.push_str(&format!("| {} | missing | | | | | |\n", md_cell(name))),
            Err(f) => out.push_str(&format!(
                "| {} | unknown: {} | | | | | |\n",
                md_cell(name),
                md_cell(&f.reason)
            )),
        }
    }
    out.push_str("\n## Consumer health\n\n");
    match &snap.consumer {
        Ok(Some(c)) => out.push_str(&format!(
            "**Consumer: {} on {}**\n\n| Pending | Delivered | Ack Floor | Num Ack Pending | Num Redelivered | Num Waiting | Last delivery |\n|---|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {} | {} |\n\n",
            md_cell(&c.name),
            md_cell(&c.stream),
            c.num_pending,
            c.delivered_stream_seq,
            c.ack_floor_stream_seq,
            c.num_ack_pending,
            c.num_redelivered,
            c.num_waiting,
            c.delivered_last_active.map(t).unwrap_or_else(|| "never".into())
        )),
        Ok(None) => out.push_str("The durable consumer does not exist.\n\n"),
        Err(f) => out.push_str(&format!("Unknown: {}\n\n", md_cell(&f.reason))),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_stays_in_its_cell() {
        assert_eq!(md_cell("x\r\ny|\u{1b}"), "x y\\|\\u{1b}");
    }
}
