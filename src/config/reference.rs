//! Keeps docs/CONFIG.md true: the keys it documents are read from the config
//! types themselves, through the loader's own "unknown field `x`, expected
//! one of ..." message, so a key added, renamed or removed in a type fails
//! this test until the reference says so too. The same holds for every
//! `${VAR}` the shipped checks.toml reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::{Config, ConfigError};

/// The reference under test.
const REFERENCE: &str = include_str!("../../docs/CONFIG.md");
/// The shipped config: every section is present in it, so an injected key
/// meets no other problem than itself.
const SHIPPED: &str = include_str!("../../checks.toml");
/// A key no section has.
const PROBE: &str = "zz_reference_probe";

/// What a key holds, as far as the reference's structure goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A value: string, number, list of values, duration...
    Value,
    /// A table with fixed keys (`[a.b]`).
    Table,
    /// An array of tables with fixed keys (`[[a.b]]`).
    TableArray,
    /// A table whose keys are chosen by the user (names, criterion ids).
    Map,
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn shipped() -> toml::Table {
    toml::from_str(SHIPPED).expect("checks.toml parses")
}

/// The table at dotted `path` (an array of tables: its first element),
/// created empty where absent; a missing last section is made an array of
/// tables when `array` (a `[[section]]` the shipped file does not use).
fn table_at<'t>(root: &'t mut toml::Table, path: &str, array: bool) -> &'t mut toml::Table {
    let mut cur = root;
    let segs: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        let entry = cur.entry(seg.to_string()).or_insert_with(|| {
            if last && array {
                toml::Value::Array(Vec::new())
            } else {
                toml::Value::Table(toml::Table::new())
            }
        });
        if let toml::Value::Array(items) = entry {
            if items.is_empty() {
                items.push(toml::Value::Table(toml::Table::new()));
            }
            cur = items[0].as_table_mut().expect("an array of tables");
        } else {
            cur = entry.as_table_mut().expect("a table");
        }
    }
    cur
}

/// Every problem message the loader reports for `table`.
fn problems_of(table: &toml::Table) -> Vec<(String, String)> {
    let text = toml::to_string(table).expect("serializes");
    match Config::from_text(Path::new("reference.toml"), &text, &no_env) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid { problems }) => {
            problems.into_iter().map(|p| (p.key, p.message)).collect()
        }
        Err(e) => panic!("{e}"),
    }
}

/// The names serde lists after "expected" in an unknown-field or
/// unknown-variant message: "one of `a`, `b`", "`a` or `b`", "`a`".
fn expected_names(message: &str) -> BTreeSet<String> {
    let rest = message
        .split_once("expected")
        .map(|(_, r)| r)
        .unwrap_or_default();
    rest.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Every key of the section at `path`, from the loader's refusal of a probe key.
fn keys_of(path: &str, shape: Shape) -> BTreeSet<String> {
    let mut t = shipped();
    table_at(&mut t, path, shape == Shape::TableArray)
        .insert(PROBE.into(), toml::Value::Integer(1));
    let wanted = format!("unknown field `{PROBE}`");
    let problems = problems_of(&t);
    let (_, message) = problems
        .iter()
        .find(|(_, m)| m.contains(&wanted))
        .unwrap_or_else(|| panic!("[{path}] accepted an unknown key: {problems:?}"));
    if message.contains("there are no fields") {
        return BTreeSet::new();
    }
    expected_names(message)
}

/// The loader's messages about `key` of the section at `path` when it
/// holds `value` instead.
fn refusal_of(path: &str, array: bool, key: &str, value: toml::Value) -> String {
    let mut t = shipped();
    table_at(&mut t, path, array).insert(key.into(), value);
    let full = if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    };
    // Inside an array of tables the loader names the element: `a[0].key`.
    let element = format!("{path}[0].{key}");
    problems_of(&t)
        .into_iter()
        .filter(|(k, _)| {
            *k == full || k.starts_with(&format!("{full}[")) || (array && *k == element)
        })
        .map(|(_, m)| m)
        .collect::<Vec<_>>()
        .join("\n")
}

/// What `key` of the section at `path` holds, from the loader's refusal of
/// an integer there (a struct or a map says so), and for a sequence of an
/// array holding an integer (an array of structs says so of its element).
fn shape_of(path: &str, array: bool, key: &str) -> Shape {
    let message = refusal_of(path, array, key, toml::Value::Integer(1));
    if message.contains("expected struct") {
        return Shape::Table;
    }
    if message.contains("expected a map") {
        return Shape::Map;
    }
    if message.contains("expected a sequence") {
        let element = refusal_of(
            path,
            array,
            key,
            toml::Value::Array(vec![toml::Value::Integer(1)]),
        );
        if element.contains("integer `1`, expected struct") {
            return Shape::TableArray;
        }
    }
    Shape::Value
}

/// Every section reachable from the top, with its shape and (fixed-key
/// sections only) its keys; the top level is "".
fn sections_from_types() -> BTreeMap<String, (Shape, BTreeSet<String>)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![(String::new(), Shape::Table)];
    while let Some((path, shape)) = todo.pop() {
        if shape == Shape::Map {
            out.insert(path, (shape, BTreeSet::new()));
            continue;
        }
        let keys = keys_of(&path, shape);
        for key in &keys {
            let sub = shape_of(&path, shape == Shape::TableArray, key);
            if sub != Shape::Value {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                todo.push((child, sub));
            }
        }
        out.insert(path, (shape, keys));
    }
    out
}

/// One section of the reference: its heading and what is under it.
#[derive(Debug, Default)]
struct DocSection {
    /// Written `[[a.b]]` rather than `[a.b]`.
    array: bool,
    /// The first column of its table rows, when written as `` `key` ``.
    keys: BTreeSet<String>,
    /// It says what its free keys are (a line starting with `Keys:`).
    free_keys: bool,
}

/// The sections of the reference: a heading naming `[a.b]` or `[[a.b]]`
/// (several, comma separated, when they share their keys) opens them;
/// `## Top level` is the file's top; any other heading closes.
fn sections_from_doc() -> BTreeMap<String, DocSection> {
    let mut out: BTreeMap<String, DocSection> = BTreeMap::new();
    let mut current: Vec<String> = Vec::new();
    for line in REFERENCE.lines() {
        if let Some(heading) = line.strip_prefix('#') {
            let heading = heading.trim_start_matches('#').trim();
            current.clear();
            if heading.starts_with("Top level") {
                current.push(String::new());
            }
            for name in heading.split([',', ' ']).filter(|n| n.starts_with('[')) {
                let path = name.trim_matches(|c| c == '[' || c == ']').to_string();
                let section = DocSection {
                    array: name.starts_with("[["),
                    ..DocSection::default()
                };
                assert!(
                    out.insert(path.clone(), section).is_none(),
                    "{name} is documented twice"
                );
                current.push(path);
            }
            for path in &current {
                out.entry(path.clone()).or_default();
            }
            continue;
        }
        let key = line
            .strip_prefix("| `")
            .and_then(|c| c.split_once('`'))
            .map(|(k, _)| k.to_string());
        for path in &current {
            let Some(section) = out.get_mut(path) else {
                continue;
            };
            section.free_keys |= line.starts_with("Keys:");
            section.keys.extend(key.clone());
        }
    }
    out
}

#[test]
fn every_section_and_key_of_the_types_is_documented_and_nothing_else() {
    let types = sections_from_types();
    let doc = sections_from_doc();
    let mut wrong = Vec::new();
    for (path, (shape, keys)) in &types {
        let shown = if path.is_empty() { "top level" } else { path };
        let Some(d) = doc.get(path) else {
            wrong.push(format!("[{shown}] is not documented"));
            continue;
        };
        if d.array != (*shape == Shape::TableArray) {
            wrong.push(format!(
                "[{shown}]: heading brackets do not match {shape:?}"
            ));
        }
        if *shape == Shape::Map {
            if !d.free_keys || !d.keys.is_empty() {
                wrong.push(format!(
                    "[{shown}] has free keys: document it with a `Keys:` line, not a key table"
                ));
            }
            continue;
        }
        for k in keys.difference(&d.keys) {
            wrong.push(format!("[{shown}] {k}: accepted but not documented"));
        }
        for k in d.keys.difference(keys) {
            wrong.push(format!("[{shown}] {k}: documented but not accepted"));
        }
    }
    for path in doc.keys().filter(|p| !types.contains_key(*p)) {
        wrong.push(format!("[{path}] is documented but is no section"));
    }
    assert!(
        wrong.is_empty(),
        "docs/CONFIG.md drifted:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_probes_see_nested_tables_and_maps() {
    // The discovery above must itself work: spot checks of each shape.
    let types = sections_from_types();
    for (path, shape) in [
        ("streams.legacy", Shape::Table),
        ("streams.hot", Shape::TableArray),
        ("alerts.routes", Shape::TableArray),
        ("rollback.e2e", Shape::Table),
        ("database.derived", Shape::Table),
        ("metrics.match", Shape::Map),
        ("service_env.expect", Shape::Map),
        ("rollback.triggers", Shape::Map),
        ("rollback.set", Shape::Map),
        ("rollback.restart_env", Shape::Map),
        ("watch.for", Shape::Map),
        ("alerts.severity", Shape::Map),
    ] {
        assert_eq!(types.get(path).map(|t| t.0), Some(shape), "{path}");
    }
    assert!(types[""].1.contains("rollback"), "{:?}", types[""]);
    assert!(types["streams.hot"].1.contains("max_age"));
}

/// The names of an environment-variable table: rows `` | `NAME` | `` under
/// the heading that starts with `heading`.
fn env_table(heading: &str) -> BTreeSet<String> {
    let mut inside = false;
    let mut out = BTreeSet::new();
    for line in REFERENCE.lines() {
        if let Some(h) = line.strip_prefix('#') {
            inside = h.trim_start_matches('#').trim().starts_with(heading);
            continue;
        }
        if let Some(cell) = line.strip_prefix("| `").filter(|_| inside) {
            if let Some((name, _)) = cell.split_once('`') {
                out.insert(name.to_string());
            }
        }
    }
    out
}

#[test]
fn every_variable_the_shipped_config_reads_is_documented_and_nothing_else() {
    let mut read = BTreeSet::new();
    let mut strings = Vec::new();
    collect_strings(&toml::Value::Table(shipped()), &mut strings);
    for s in strings {
        for (i, _) in s.match_indices("${") {
            if s[..i].ends_with('$') {
                continue; // `$${` is a literal
            }
            let name: String = s[i + 2..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            read.insert(name);
        }
    }
    assert!(read.contains("NATS_URL"), "{read:?}");
    let documented = env_table("Environment variables of the shipped checks.toml");
    assert_eq!(
        read, documented,
        "docs/CONFIG.md's variable table and checks.toml's ${{VAR}}s differ"
    );
}

/// Every string value in `v`, however deep (comments are not values).
fn collect_strings(v: &toml::Value, out: &mut Vec<String>) {
    match v {
        toml::Value::String(s) => out.push(s.clone()),
        toml::Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        toml::Value::Table(t) => t.values().for_each(|i| collect_strings(i, out)),
        _ => {}
    }
}
