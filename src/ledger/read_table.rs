//! Rows by key, in batches: one query per batch binds one text array per
//! key column (`unnest(...) WITH ORDINALITY`), each value cast to its
//! column's type, so the table's own index on the key serves the join.
//! Whether an index does is looked up once (pg_index) and said in the
//! evidence: without one, every batch scans the table. The write time is
//! read as `extract(epoch from column)`: a `timestamp without time zone`
//! (Prisma's columns) is taken as UTC, a `timestamptz` as the instant it is.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row};

use super::account::Key;
use super::LedgerError;
use crate::sql::{quote_ident, quote_table};

/// Whether the key lookup is served by an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEvidence {
    /// An index leads with exactly the key columns.
    pub supported: bool,
    /// Its name.
    pub index: Option<String>,
    /// It is unique (the upsert's conflict target).
    pub unique: bool,
}

impl IndexEvidence {
    /// One line for the evidence.
    pub fn describe(&self, table: &str, columns: &[String]) -> String {
        match (&self.index, self.supported) {
            (Some(i), true) => format!(
                "{}index {i} on {table} ({}) serves the key lookup",
                if self.unique { "unique " } else { "" },
                columns.join(", ")
            ),
            _ => format!(
                "no index of {table} leads with ({}): each lookup batch scans the table",
                columns.join(", ")
            ),
        }
    }
}

/// The prepared lookup of one table.
#[derive(Debug, Clone)]
pub struct TableLookup {
    sql: String,
    columns: usize,
    /// The index evidence found when prepared.
    pub index: IndexEvidence,
}

fn db_err(op: &str, e: sqlx::Error) -> LedgerError {
    LedgerError::Db {
        op: op.to_string(),
        detail: e.to_string().lines().next().unwrap_or_default().to_string(),
    }
}

impl TableLookup {
    /// Reads the key columns' types and the table's indexes, and builds the query.
    pub async fn prepare(
        conn: &mut PgConnection,
        table: &str,
        key_columns: &[String],
        write_time_column: &str,
    ) -> Result<TableLookup, LedgerError> {
        let op = format!("read the columns of {table}");
        let rows = sqlx::query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped",
        )
        .bind(quote_table(table))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| db_err(&op, e))?;
        let types: HashMap<String, String> = rows
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
            .collect();
        let mut on = Vec::new();
        let mut arrays = Vec::new();
        let mut names = Vec::new();
        for (i, c) in key_columns
            .iter()
            .chain([&write_time_column.to_string()])
            .enumerate()
        {
            if !types.contains_key(c) {
                return Err(LedgerError::NoColumn {
                    table: table.to_string(),
                    column: c.clone(),
                });
            }
            if i < key_columns.len() {
                on.push(format!("t.{} = u.k{i}::{}", quote_ident(c), types[c]));
                arrays.push(format!("${}::text[]", i + 1));
                names.push(format!("k{i}"));
            }
        }
        let sql = format!(
            "SELECT u.n, max(extract(epoch from t.{wt}))::float8 FROM {t} t \
             JOIN unnest({arrays}) WITH ORDINALITY AS u({names}, n) ON {on} GROUP BY u.n",
            wt = quote_ident(write_time_column),
            t = quote_table(table),
            arrays = arrays.join(", "),
            names = names.join(", "),
            on = on.join(" AND "),
        );
        let index = index_evidence(conn, table, key_columns).await?;
        Ok(TableLookup {
            sql,
            columns: key_columns.len(),
            index,
        })
    }

    /// The write time of each key's row; a key without a row is absent.
    /// A value its column cannot hold (a date that is no date) finds no
    /// row: the batch is retried key by key, skipping those.
    pub async fn rows(
        &self,
        conn: &mut PgConnection,
        keys: &[Key],
    ) -> Result<HashMap<Key, DateTime<Utc>>, LedgerError> {
        match self.query(conn, keys).await {
            Err(sqlx::Error::Database(d)) if d.code().is_some_and(|c| c.starts_with("22")) => {
                let mut out = HashMap::new();
                for k in keys {
                    match self.query(conn, std::slice::from_ref(k)).await {
                        Ok(m) => out.extend(m),
                        Err(sqlx::Error::Database(d))
                            if d.code().is_some_and(|c| c.starts_with("22")) => {}
                        Err(e) => return Err(db_err("look up rows", e)),
                    }
                }
                Ok(out)
            }
            r => r.map_err(|e| db_err("look up rows", e)),
        }
    }

    async fn query(
        &self,
        conn: &mut PgConnection,
        keys: &[Key],
    ) -> Result<HashMap<Key, DateTime<Utc>>, sqlx::Error> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let mut q = sqlx::query(AssertSqlSafe(self.sql.clone()));
        for i in 0..self.columns {
            let col: Vec<&str> = keys
                .iter()
                .map(|k| k.get(i).map(String::as_str).unwrap_or_default())
                .collect();
            q = q.bind(col);
        }
        let rows = q.fetch_all(&mut *conn).await?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in rows {
            let n: i64 = r.try_get(0)?;
            let epoch: Option<f64> = r.try_get(1)?;
            let (Some(k), Some(e)) = (usize::try_from(n - 1).ok().and_then(|i| keys.get(i)), epoch)
            else {
                continue;
            };
            let t = DateTime::<Utc>::from_timestamp_micros((e * 1e6).round() as i64);
            if let Some(t) = t {
                out.insert(k.clone(), t);
            }
        }
        Ok(out)
    }
}

/// Whether an index of `table` leads with exactly the key columns (in
/// any order): then `(k0, k1) = (...)` is an index lookup.
async fn index_evidence(
    conn: &mut PgConnection,
    table: &str,
    key_columns: &[String],
) -> Result<IndexEvidence, LedgerError> {
    let rows = sqlx::query(
        "SELECT ic.relname::text, i.indisunique, \
           array_agg(a.attname::text ORDER BY k.n) \
         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
         WHERE i.indrelid = $1::regclass GROUP BY ic.relname, i.indisunique \
         ORDER BY i.indisunique DESC, ic.relname",
    )
    .bind(quote_table(table))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| db_err(&format!("read the indexes of {table}"), e))?;
    let mut want: Vec<&str> = key_columns.iter().map(String::as_str).collect();
    want.sort_unstable();
    for r in rows {
        let cols: Vec<String> = r.get(2);
        if cols.len() < want.len() {
            continue;
        }
        let mut lead: Vec<&str> = cols[..want.len()].iter().map(String::as_str).collect();
        lead.sort_unstable();
        if lead == want {
            return Ok(IndexEvidence {
                supported: true,
                index: Some(r.get(0)),
                unique: r.get(1),
            });
        }
    }
    Ok(IndexEvidence {
        supported: false,
        index: None,
        unique: false,
    })
}
