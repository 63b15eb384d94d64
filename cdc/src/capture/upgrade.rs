//! Upgrading a log written by an older version (format 1) in place.
//!
//! Format 1 (`_cdc_log(seq, tid, op, ts, v0..v31)`) cost every captured
//! write more than the JSON triggers it replaced (see
//! `cdc_schema::log`). Installing this version over it, in the install's
//! one transaction: the old log is renamed `_cdc_log_v1` (its rows stay
//! readable: consumers deliver them, pruning empties it and then drops
//! it), the new `_cdc_log` starts after its last `seq` (a marker row holds
//! the place), and every captured table's triggers are replaced by
//! current ones under a new layout, with no gap: nothing written before
//! or after is lost, and no consumer has to reseed anything.

use rusqlite::Connection;

use cdc_schema::bookkeeping as sql;
use cdc_schema::legacy;
use cdc_schema::log::{LOG_TABLE, MARKER_OP, create_log_sql, kind};

use crate::error::Result;
use crate::log::{LogFormat, log_format, registry_has_reread};

/// Moves a format 1 log aside and starts the current one after it (see
/// the module docs); `false` when the log was not format 1. Run inside the
/// install's write transaction, before any table is (re)attached: the
/// caller then attaches every captured table again, without a marker.
pub(crate) fn upgrade(conn: &Connection) -> Result<bool> {
    if log_format(conn)? != LogFormat::Format1 {
        return Ok(false);
    }
    let last: i64 = conn.query_row(&sql::max_seq_sql(LOG_TABLE, false), [], |r| r.get(0))?;
    // The triggers name the old log; they are replaced below, and the
    // rename must not fail on them.
    for (name,) in triggers_naming_the_log(conn)? {
        conn.execute(&sql::drop_trigger_sql(&name), [])?;
    }
    conn.execute(&sql::log_aside_sql(), [])?;
    conn.execute(&create_log_sql(), [])?;
    if last > 0 {
        // The new log's `seq`s go on after the old ones: SQLite hands out
        // max + 1, and pruning never deletes the newest row.
        conn.execute(&sql::log_row_at_sql(), [last + 1, kind(0, MARKER_OP)])?;
    }
    if !registry_has_reread(conn)? {
        conn.execute(&sql::add_reread_sql(), [])?;
    }
    // No consumer needs the old rows: nothing to keep.
    let consumers: i64 = conn.query_row(&sql::consumer_count_sql(), [], |r| r.get(0))?;
    if consumers == 0 {
        conn.execute(&sql::drop_table_sql(legacy::LOG_TABLE), [])?;
    }
    Ok(true)
}

/// Capture triggers (`_cdc_…`) of the file.
fn triggers_naming_the_log(conn: &Connection) -> Result<Vec<(String,)>> {
    let mut stmt = conn.prepare(sql::CAPTURE_TRIGGERS)?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?,)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
