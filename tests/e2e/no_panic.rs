//! Issue 20 §4: no panic, ever. Exit 101 is outside every contract the tool
//! promises (Nagios 0-3, the daemon's clean stop); these tests run the real
//! binary on what a new user's environment produces and fail on 101.

use std::path::{Path, PathBuf};

use crate::common::read;

/// The shipped checks.toml as a TOML table, to edit key by key.
pub fn shipped() -> toml::Table {
    toml::from_str(&read(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/checks.toml"
    ))))
    .expect("checks.toml parses")
}

/// Writes `t` as `dir/name` and returns the path.
pub fn write_config(dir: &Path, name: &str, t: &toml::Table) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, toml::to_string(t).expect("serializes")).expect("write config");
    path
}
