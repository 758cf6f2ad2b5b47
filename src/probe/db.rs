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
use crate::sample::{DbState, ProbeError, ProbeFailure, ProbeKind, Probed};
use crate::sql::{quote_ident, quote_table};

fn fail(error: ProbeError) -> ProbeFailure {
    ProbeFailure::new(ProbeKind::Database, error)
}

/// No connection to the database (refused, auth, TLS, server down).
fn connect_failed(cfg: &DatabaseConfig, e: &sqlx::Error) -> ProbeFailure {
    fail(ProbeError::Connect {
        what: format!("database {}", cfg.url.shown()),
        detail: describe(e),
    })
}

/// Connection options, parsed once. Each probe round opens one connection
/// and closes it: a pool would retry a refused connection until its timeout
/// and hide the real reason; one connection every poll interval is cheap.
pub fn connect_options(
    cfg: &DatabaseConfig,
    timeout: Duration,
) -> Result<PgConnectOptions, ProbeFailure> {
    let opts = PgConnectOptions::from_str(cfg.url.expose()).map_err(|e| {
        fail(ProbeError::failed(
            format!("database url {}", cfg.url.shown()),
            e,
        ))
    })?;
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
        .map_err(|e| connect_failed(cfg, &e))?;
    let res = match table_columns(&mut conn, cfg).await {
        Ok(cols) => query_state(&mut conn, &cols, cfg, now, since).await,
        Err(e) => Err(e),
    };
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
        let prepared = self.prepare(cfg).await?;
        self.finish(prepared, cfg, now, since).await
    }

    /// The first half of a round: the connection (kept or new) and the
    /// table's catalog. It needs no instant, so it can run while the
    /// metrics probe finds the service's start time.
    pub async fn prepare(&mut self, cfg: &DatabaseConfig) -> Result<Prepared, ProbeFailure> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => PgConnection::connect_with(&self.opts)
                .await
                .map_err(|e| connect_failed(cfg, &e))?,
        };
        let cols = table_columns(&mut conn, cfg).await?;
        Ok(Prepared { conn, cols })
    }

    /// The second half: the figures after each instant of `since` (and the
    /// recent window). The connection is kept only when the round succeeds.
    pub async fn finish(
        &mut self,
        prepared: Prepared,
        cfg: &DatabaseConfig,
        now: DateTime<Utc>,
        since: &[DateTime<Utc>],
    ) -> Probed<DbState> {
        let Prepared { mut conn, cols } = prepared;
        let res = query_state(&mut conn, &cols, cfg, now, since).await;
        if res.is_ok() {
            self.conn = Some(conn);
        }
        res
    }
}

/// A round between its halves: the connection and the table's columns.
pub struct Prepared {
    conn: PgConnection,
    cols: Vec<Column>,
}

/// The figures of one round, given the catalog ([`table_columns`], the
/// round's first statement): every figure of the table in one statement of
/// independent sub-selects (each keeps its own index), so a fresh
/// connection pays for two round trips of planning, not five.
async fn query_state(
    conn: &mut PgConnection,
    cols: &[Column],
    d: &DatabaseConfig,
    now: DateTime<Utc>,
    since: &[DateTime<Utc>],
) -> Probed<DbState> {
    let write_cols = write_columns(cols, d)?;
    let window_start = crate::duration::before(now, d.recent_window);
    let mut instants = vec![window_start];
    instants.extend_from_slice(since);
    let figures = table_figures(conn, d, &write_cols, &instants).await?;
    let mut state = DbState {
        recent_window_secs: d.recent_window.as_secs_f64(),
        write_columns: write_cols.iter().map(|(c, _)| c.clone()).collect(),
        notes: unindexed_notes(d, cols, &write_cols),
        ..Default::default()
    };
    for (i, (at, n)) in instants.iter().zip(figures.counts).enumerate() {
        if i == 0 {
            state.rows_recent = n;
        } else {
            state.written_since.push((*at, n));
        }
    }
    state.newest_write = figures
        .newest
        .and_then(|s| DateTime::from_timestamp_micros((s * 1e6) as i64));
    if let Some((checked, bad, max_error)) = figures.derived {
        state.derived_checked = Some(checked);
        state.derived_bad = Some(bad);
        state.derived_max_error = max_error;
    }
    Ok(state)
}

/// A column of the table as the catalog describes it.
struct Column {
    name: String,
    /// The type's SQL name without modifiers (a domain: its base type), as
    /// `information_schema.columns.data_type` spells it.
    data_type: String,
    /// Whether some index has this column as its first key.
    leads_index: bool,
}

/// The table's columns from `pg_catalog` (the `information_schema` views
/// cost a fresh backend ~15 ms of catalog loading to plan); none when the
/// table does not exist.
async fn table_columns(
    conn: &mut PgConnection,
    d: &DatabaseConfig,
) -> Result<Vec<Column>, ProbeFailure> {
    let rows = sqlx::query(
        "SELECT a.attname::text, \
                format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END, NULL), \
                EXISTS (SELECT 1 FROM pg_catalog.pg_index i \
                        WHERE i.indrelid = a.attrelid AND i.indkey[0] = a.attnum) \
         FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .bind(quote_table(&d.table))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| fail(ProbeError::failed(format!("table {}", d.table), describe(&e))))?;
    rows.iter()
        .map(|r| {
            Ok(Column {
                name: r.try_get(0)?,
                data_type: r.try_get(1)?,
                leads_index: r.try_get(2)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| {
            fail(ProbeError::failed(
                format!("table {}", d.table),
                describe(&e),
            ))
        })
}

/// The table's write columns (created, and updated when set) with their
/// timestamp kinds; a missing table or column, or one that is not a
/// timestamp, is the probe's failure. The derived check's columns must exist too.
fn write_columns(
    cols: &[Column],
    d: &DatabaseConfig,
) -> Result<Vec<(String, TsKind)>, ProbeFailure> {
    if cols.is_empty() {
        return Err(fail(ProbeError::MissingTable {
            table: d.table.clone(),
        }));
    }
    let kind_of = |col: &str| -> Result<TsKind, ProbeFailure> {
        match cols
            .iter()
            .find(|c| c.name == col)
            .map(|c| c.data_type.as_str())
        {
            None => Err(missing_column(d, col)),
            Some("timestamp with time zone") => Ok(TsKind::WithTz),
            Some("timestamp without time zone") => Ok(TsKind::NoTz),
            Some(t) => Err(fail(ProbeError::NotTimestamp {
                table: d.table.clone(),
                column: col.to_string(),
                found: t.to_string(),
            })),
        }
    };
    let mut write_cols = vec![(d.created_column.clone(), kind_of(&d.created_column)?)];
    if let Some(u) = &d.updated_column {
        write_cols.push((u.clone(), kind_of(u)?));
    }
    if let Some(der) = &d.derived {
        for c in [&der.column, &der.source] {
            if !cols.iter().any(|col| col.name == *c) {
                return Err(missing_column(d, c));
            }
        }
    }
    Ok(write_cols)
}

/// A configured column that is not in the table.
fn missing_column(d: &DatabaseConfig, column: &str) -> ProbeFailure {
    fail(ProbeError::MissingColumn {
        table: d.table.clone(),
        column: column.to_string(),
    })
}

/// A note for each write column that leads no index: counting writes by it
/// scans the table.
fn unindexed_notes(
    d: &DatabaseConfig,
    cols: &[Column],
    write_cols: &[(String, TsKind)],
) -> Vec<String> {
    write_cols
        .iter()
        .filter(|(c, _)| !cols.iter().any(|col| col.name == *c && col.leads_index))
        .map(|(c, _)| {
            format!(
                "no index leads with {}.{c}: write counts scan the table (create one for a long soak)",
                d.table
            )
        })
        .collect()
}

/// What the table's one statement of figures returns.
struct Figures {
    /// Rows written (by any write column) after each instant, in order.
    counts: Vec<i64>,
    /// The newest write, epoch seconds.
    newest: Option<f64>,
    /// The derived check: (rows checked, rows off by more than the
    /// tolerance, largest error), when configured.
    derived: Option<(i64, i64, Option<f64>)>,
}

/// The write counts after each instant, the newest write and (when
/// configured) the derived check, in one statement: each figure is its own
/// sub-select, planned as before (an index scan per count and per max()).
async fn table_figures(
    conn: &mut PgConnection,
    d: &DatabaseConfig,
    write_cols: &[(String, TsKind)],
    instants: &[DateTime<Utc>],
) -> Result<Figures, ProbeFailure> {
    let t = quote_table(&d.table);
    let mut parts: Vec<String> = (1..=instants.len())
        .map(|n| {
            let pred = write_cols
                .iter()
                .map(|(c, k)| format!("{} > {}", quote_ident(c), k.instant_param(n)))
                .collect::<Vec<_>>()
                .join(" OR ");
            format!("(SELECT count(*) FROM {t} WHERE {pred})")
        })
        .collect();
    parts.push(newest_write_expr(write_cols, &t));
    let mut sql = format!("SELECT {}", parts.join(", "));
    if let Some(der) = &d.derived {
        sql.push_str(", x.* FROM ");
        sql.push_str(&derived_sql(d, der, instants.len() + 1));
    }
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for at in instants {
        q = q.bind(at.timestamp_micros() as f64 / 1e6);
    }
    if let Some(der) = &d.derived {
        q = q.bind(der.tolerance).bind(der.sample_rows);
    }
    let row = q.fetch_one(&mut *conn).await.map_err(|e| {
        fail(ProbeError::failed(
            format!("querying {}", d.table),
            describe(&e),
        ))
    })?;
    let read = || -> Result<Figures, sqlx::Error> {
        let k = instants.len();
        let counts = (0..k).map(|i| row.try_get(i)).collect::<Result<_, _>>()?;
        let derived = match d.derived {
            Some(_) => Some((
                row.try_get(k + 1)?,
                row.try_get(k + 2)?,
                row.try_get(k + 3)?,
            )),
            None => None,
        };
        Ok(Figures {
            counts,
            newest: row.try_get(k)?,
            derived,
        })
    };
    read().map_err(|e| {
        fail(ProbeError::failed(
            format!("reading the figures of {}", d.table),
            describe(&e),
        ))
    })
}

/// The derived column against its function of the source on the newest rows,
/// as a one-row sub-select `x` (checked, bad, max_error); the tolerance is
/// parameter `$p`, the number of rows `$p+1`.
fn derived_sql(d: &DatabaseConfig, der: &DerivedCheck, p: usize) -> String {
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
    format!(
        "(SELECT count(*) AS checked, \
                count(*) FILTER (WHERE d IS NULL OR e IS NULL OR abs(d::float8 - e) > ${p}) AS bad, \
                max(abs(d::float8 - e)) AS max_error \
         FROM (SELECT d, {expected} AS e FROM \
                 (SELECT {dc} AS d, {sc} AS s FROM {} ORDER BY {} DESC LIMIT ${}) raw) y) x",
        quote_table(&d.table),
        quote_ident(&d.created_column),
        p + 1
    )
}

/// `greatest((SELECT extract(epoch FROM max(c)) FROM t), ...)::float8`:
/// each max() is its own sub-select so each can use its column's index.
fn newest_write_expr(write_cols: &[(String, TsKind)], t: &str) -> String {
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
    format!("greatest({})::float8", parts.join(", "))
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
