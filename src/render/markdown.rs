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
                md_cell(&f.to_string())
            )),
        }
    }
    out.push_str("\n## Consumer health\n\n");
    out.push_str(&consumer_table(snap));
    out
}

fn t(t: chrono::DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// Most consumers listed in the health table; the rest are counted (a
/// fleet of 1,000 is read in the JSON, not in a Markdown table).
const CONSUMER_ROWS: usize = 25;

/// One row per consumer on the listed streams, the most lagging first.
fn consumer_table(snap: &Snapshot) -> String {
    let mut out = String::new();
    let mut rows: Vec<&crate::sample::ConsumerState> = Vec::new();
    for (stream, listing) in &snap.consumers {
        match listing {
            Ok(Some(list)) => rows.extend(list.iter()),
            Ok(None) => out.push_str(&format!(
                "Stream {} does not exist: no consumers.\n\n",
                md_cell(stream)
            )),
            Err(f) => out.push_str(&format!("Unknown: {}\n\n", md_cell(&f.to_string()))),
        }
    }
    if rows.is_empty() {
        if out.is_empty() {
            out.push_str("The durable consumer does not exist.\n\n");
        }
        return out;
    }
    rows.sort_by_key(|c| std::cmp::Reverse(c.num_pending + c.num_ack_pending));
    out.push_str("| Consumer | Stream | Pending | Delivered | Ack Floor | Num Ack Pending | Num Redelivered | Num Waiting | Last delivery |\n|---|---|---|---|---|---|---|---|---|\n");
    for c in rows.iter().take(CONSUMER_ROWS) {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            md_cell(&c.name),
            md_cell(&c.stream),
            c.num_pending,
            c.delivered_stream_seq,
            c.ack_floor_stream_seq,
            c.num_ack_pending,
            c.num_redelivered,
            c.num_waiting,
            c.delivered_last_active
                .map(t)
                .unwrap_or_else(|| "never".into())
        ));
    }
    if rows.len() > CONSUMER_ROWS {
        out.push_str(&format!(
            "\n{} more consumers, each lagging no more than those above.\n",
            rows.len() - CONSUMER_ROWS
        ));
    }
    out.push('\n');
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
