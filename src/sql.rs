//! SQL text built from config names: identifiers quoted so that a table or
//! column name from checks.toml can never inject SQL.

/// Quotes an identifier for PostgreSQL (`"` doubled), so config names cannot inject SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `schema.table` or `table`, each part quoted.
pub fn quote_table(name: &str) -> String {
    name.split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}
