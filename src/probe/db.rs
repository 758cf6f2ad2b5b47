//! The service's table: are rows being written, are they complete and correct.
//!
//! Every query is bounded by `statement_timeout` and filters on the write
//! timestamp columns, so an index on them keeps it cheap; when one is missing
//! the sample says so instead of silently scanning forever.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection, Row};

use crate::config::{DatabaseConfig, DerivedCheck};
use crate::sample::{DbState, ProbeFailure, ProbeKind, Probed};
use crate::sql::{quote_ident, quote_table};

fn fail(reason: String) -> ProbeFailure {
    ProbeFailure {
        probe: ProbeKind::Database,
        reason,
    }
}

/// Connection options, parsed once. Each probe round opens one connection
/// and closes it: a pool would retry a refused connection until its timeout
/// and hide the real reason; one connection every poll interval is cheap.
pub fn connect_options(
    cfg: &DatabaseConfig,
    timeout: Duration,
) -> Result<PgConnectOptions, ProbeFailure> {
    let opts = PgConnectOptions::from_str(cfg.url.expose())
        .map_err(|e| fail(format!("database url {}: {e}", cfg.url.shown())))?;
    Ok(opts.application_name("soakwatch").options([
        ("statement_timeout", timeout.as_millis().to_string()),
        ("TimeZone", "UTC".to_string()),
    ]))
}

/// Describes a sqlx error in one line without the connection URL.
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => {
            format!("{} ({})", db.message(), db.code().unwrap_or_default())
        }
        sqlx::Error::PoolTimedOut => {
            "no connection within the probe timeout (server down or unreachable?)".into()
        }
        sqlx::Error::Io(io) => format!("connection failed: {io}"),
        other => other.to_string().lines().next().unwrap_or("").to_string(),
    }
}

/// Type of a timestamp column, which decides how an instant is compared to it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TsKind {
    /// `timestamp with time zone`.
    WithTz,
    /// `timestamp without time zone`, holding UTC (Prisma's default).
    NoTz,
}

impl TsKind {
    /// SQL for "the instant given as epoch seconds in parameter $n", comparable to the column.
    fn instant_param(self, n: usize) -> String {
        match self {
            TsKind::WithTz => format!("to_timestamp(${n})"),
            TsKind::NoTz => format!("(to_timestamp(${n}) AT TIME ZONE 'UTC')"),
        }
    }
}

/// Runs the database probe. `since` lists instants (service start, window
/// start) for which the number of rows written after them is wanted.
pub async fn probe(
    opts: &PgConnectOptions,
    cfg: &DatabaseConfig,
    now: DateTime<Utc>,
    since: &[DateTime<Utc>],
) -> Probed<DbState> {
    let mut conn = PgConnection::connect_with(opts)
        .await
        .map_err(|e| fail(format!("database {}: {}", cfg.url.shown(), describe(&e))))?;
    let res = query_state(&mut conn, cfg, now, since).await;
    let _ = conn.close().await;
    res
}

/// A connection kept between rounds (TLS set-up costs ~90 ms on a local
/// server). It is taken out for each round and put back only after success,
/// so an error or a cancelled (timed-out) round always reconnects cleanly.
pub struct DbSession {
    opts: PgConnectOptions,
    conn: Option<PgConnection>,
}

impl DbSession {
    /// No connection is made until the first round.
    pub fn new(opts: PgConnectOptions) -> Self {
        DbSession { opts, conn: None }
    }

    /// One round of the database probe on the kept (or a new) connection.
    pub async fn probe(
        &mut self,
        cfg: &DatabaseConfig,
        now: DateTime<Utc>,
        since: &[DateTime<Utc>],
    ) -> Probed<DbState> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => PgConnection::connect_with(&self.opts)
                .await
                .map_err(|e| fail(format!("database {}: {}", cfg.url.shown(), describe(&e))))?,
        };
        let res = query_state(&mut conn, cfg, now, since).await;
        if res.is_ok() {
            self.conn = Some(conn);
        }
        res
    }
}

/// One round of queries: the write columns, their indexes, write counts, the
/// newest write and, when configured, the derived-column check.
async fn query_state(
    conn: &mut PgConnection,
    d: &DatabaseConfig,
    now: DateTime<Utc>,
    since: &[DateTime<Utc>],
) -> Probed<DbState> {
    let write_cols = write_columns(conn, d).await?;
    let mut state = DbState {
        recent_window_secs: d.recent_window.as_secs_f64(),
        write_columns: write_cols.iter().map(|(c, _)| c.clone()).collect(),
        notes: unindexed_notes(conn, d, &write_cols).await?,
        ..Default::default()
    };
    let t = quote_table(&d.table);
    let window_start = now
        - chrono::Duration::from_std(d.recent_window).unwrap_or_else(|_| chrono::Duration::zero());
    let mut instants = vec![window_start];
    instants.extend_from_slice(since);
    let counts = count_writes_since(conn, d, &write_cols, &instants).await?;
    for (i, (at, n)) in instants.iter().zip(counts).enumerate() {
        if i == 0 {
            state.rows_recent = n;
        } else {
            state.written_since.push((*at, n));
        }
    }

    let newest: Option<f64> = sqlx::query_scalar(AssertSqlSafe(newest_write_sql(&write_cols, &t)))
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| fail(format!("newest write in {}: {}", d.table, describe(&e))))?;
    state.newest_write = newest.and_then(|s| DateTime::from_timestamp_micros((s * 1e6) as i64));

    if let Some(der) = &d.derived {
        let (checked, bad, max_error) = check_derived(conn, d, der).await?;
        state.derived_checked = Some(checked);
        state.derived_bad = Some(bad);
        state.derived_max_error = max_error;
    }
    Ok(state)
}

/// The table's write columns (created, and updated when set) with their
/// timestamp kinds; a missing table or column, or one that is not a
/// timestamp, is the probe's failure. The derived check's columns must exist too.
async fn write_columns(
    conn: &mut PgConnection,
    d: &DatabaseConfig,
) -> Result<Vec<(String, TsKind)>, ProbeFailure> {
    let (schema, table) = match d.table.split_once('.') {
        Some((s, t)) => (Some(s.to_string()), t.to_string()),
        None => (None, d.table.clone()),
    };
    let cols: Vec<(String, String)> = sqlx::query(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = coalesce($1, current_schema()) AND table_name = $2",
    )
    .bind(&schema)
    .bind(&table)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| fail(format!("table {}: {}", d.table, describe(&e))))?
    .into_iter()
    .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
    .collect();
    if cols.is_empty() {
        return Err(fail(format!(
            "table {} does not exist in the database",
            d.table
        )));
    }
    let kind_of = |col: &str| -> Result<TsKind, ProbeFailure> {
        match cols.iter().find(|(c, _)| c == col) {
            None => Err(fail(format!("table {} has no column {col}", d.table))),
            Some((_, t)) if t == "timestamp with time zone" => Ok(TsKind::WithTz),
            Some((_, t)) if t == "timestamp without time zone" => Ok(TsKind::NoTz),
            Some((_, t)) => Err(fail(format!(
                "column {}.{col} is {t}, not a timestamp",
                d.table
            ))),
        }
    };
    let mut write_cols = vec![(d.created_column.clone(), kind_of(&d.created_column)?)];
    if let Some(u) = &d.updated_column {
        write_cols.push((u.clone(), kind_of(u)?));
    }
    if let Some(der) = &d.derived {
        for c in [&der.column, &der.source] {
            if !cols.iter().any(|(name, _)| name == c) {
                return Err(fail(format!("table {} has no column {c}", d.table)));
            }
        }
    }
    Ok(write_cols)
}

/// A note for each write column that leads no index: counting writes by it
/// scans the table.
async fn unindexed_notes(
    conn: &mut PgConnection,
    d: &DatabaseConfig,
    write_cols: &[(String, TsKind)],
) -> Result<Vec<String>, ProbeFailure> {
    let indexed: Vec<String> = sqlx::query(
        "SELECT a.attname::text FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
         WHERE i.indrelid = to_regclass($1)",
    )
    .bind(quote_table(&d.table))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| fail(format!("index lookup on {}: {}", d.table, describe(&e))))?
    .into_iter()
    .map(|r| r.get::<String, _>(0))
    .collect();
    Ok(write_cols
        .iter()
        .filter(|(c, _)| !indexed.iter().any(|i| i == c))
        .map(|(c, _)| {
            format!(
                "no index leads with {}.{c}: write counts scan the table (create one for a long soak)",
                d.table
            )
        })
        .collect())
}

/// Rows written (by any write column) after each instant, in order.
async fn count_writes_since(
    conn: &mut PgConnection,
    d: &DatabaseConfig,
    write_cols: &[(String, TsKind)],
    instants: &[DateTime<Utc>],
) -> Result<Vec<i64>, ProbeFailure> {
    let pred = write_cols
        .iter()
        .map(|(c, k)| format!("{} > {}", quote_ident(c), k.instant_param(1)))
        .collect::<Vec<_>>()
        .join(" OR ");
    let count_sql = format!(
        "SELECT count(*) FROM {} WHERE {pred}",
        quote_table(&d.table)
    );
    let mut counts = Vec::with_capacity(instants.len());
    for at in instants {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(count_sql.clone()))
            .bind(at.timestamp_micros() as f64 / 1e6)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| fail(format!("counting writes in {}: {}", d.table, describe(&e))))?;
        counts.push(n);
    }
    Ok(counts)
}

/// The derived column against its function of the source on the newest rows:
/// (rows checked, rows off by more than the tolerance, largest error).
async fn check_derived(
    conn: &mut PgConnection,
    d: &DatabaseConfig,
    der: &DerivedCheck,
) -> Result<(i64, i64, Option<f64>), ProbeFailure> {
    let (dc, sc) = (quote_ident(&der.column), quote_ident(&der.source));
    let f = der.function.sql();
    let expected = match der.function {
        crate::config::DerivedFunction::Ln | crate::config::DerivedFunction::Log10 => {
            format!("CASE WHEN s > 0 THEN {f}(s::float8) END")
        }
        crate::config::DerivedFunction::Sqrt => {
            format!("CASE WHEN s >= 0 THEN {f}(s::float8) END")
        }
    };
    let sql = format!(
        "SELECT count(*), \
                count(*) FILTER (WHERE d IS NULL OR e IS NULL OR abs(d::float8 - e) > $1), \
                max(abs(d::float8 - e)) \
         FROM (SELECT d, {expected} AS e FROM \
                 (SELECT {dc} AS d, {sc} AS s FROM {} ORDER BY {} DESC LIMIT $2) raw) x",
        quote_table(&d.table),
        quote_ident(&d.created_column)
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(der.tolerance)
        .bind(der.sample_rows)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| {
            fail(format!(
                "derived-column check on {}: {}",
                d.table,
                describe(&e)
            ))
        })?;
    Ok((
        row.get::<i64, _>(0),
        row.get::<i64, _>(1),
        row.get::<Option<f64>, _>(2),
    ))
}

/// `SELECT extract(epoch FROM greatest((SELECT max(c) FROM t), ...))::float8`:
/// each max() is its own sub-select so each can use its column's index.
fn newest_write_sql(write_cols: &[(String, TsKind)], t: &str) -> String {
    let parts: Vec<String> = write_cols
        .iter()
        .map(|(c, k)| {
            let col = quote_ident(c);
            match k {
                TsKind::WithTz => format!("(SELECT extract(epoch FROM max({col})) FROM {t})"),
                // A UTC-holding timestamp: interpret it as UTC explicitly.
                TsKind::NoTz => {
                    format!("(SELECT extract(epoch FROM max({col}) AT TIME ZONE 'UTC') FROM {t})")
                }
            }
        })
        .collect();
    format!("SELECT greatest({})::float8", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("createdAt"), "\"createdAt\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_table("public.hrv_data"), "\"public\".\"hrv_data\"");
    }
}
