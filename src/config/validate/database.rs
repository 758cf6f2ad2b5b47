//! `[database]`: the table the service writes and the derived-column check.

use super::*;

/// The database URL, table and derived-column check; None without `[database]`.
pub(super) fn validate_database(raw: &RawConfig, p: Problems<'_>) -> Option<DatabaseConfig> {
    let db = raw.database.as_ref()?;
    match url::Url::parse(&db.url) {
        Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {}
        Ok(u) => p(
            "database.url",
            format!("scheme `{}`: expected postgres", u.scheme()),
        ),
        Err(e) => p("database.url", format!("not a URL: {e}")),
    }
    for (key, v) in [
        ("database.table", &db.table),
        ("database.created_column", &db.created_column),
    ] {
        if v.trim().is_empty() {
            p(key, "must not be empty".into());
        }
    }
    if let Some(d) = &db.derived {
        if !(d.tolerance >= 0.0 && d.tolerance.is_finite()) {
            p(
                "database.derived.tolerance",
                "must be a finite number >= 0".into(),
            );
        }
        if d.sample_rows <= 0 {
            p("database.derived.sample_rows", "must be > 0".into());
        }
    }
    Some(DatabaseConfig {
        url: SecretUrl::new(db.url.clone()),
        table: db.table.clone(),
        created_column: db.created_column.clone(),
        updated_column: non_empty(&db.updated_column),
        recent_window: db.recent_window,
        derived: db.derived.clone(),
    })
}
