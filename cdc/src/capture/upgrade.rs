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

use cdc_schema::legacy;
use cdc_schema::log::{CONSUMERS_TABLE, LOG_TABLE, MARKER_OP, TABLES_TABLE, create_log_sql, kind};
use cdc_schema::quote_ident;

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
    let (log, old) = (quote_ident(LOG_TABLE), quote_ident(legacy::LOG_TABLE));
    let last: i64 = conn.query_row(&format!("SELECT coalesce(max(seq), 0) FROM {log}"), [], |r| r.get(0))?;
    // The triggers name the old log; they are replaced below, and the
    // rename must not fail on them.
    for (name,) in triggers_naming_the_log(conn)? {
        conn.execute(&format!("DROP TRIGGER {}", quote_ident(&name)), [])?;
    }
    conn.execute(&format!("ALTER TABLE {log} RENAME TO {old}"), [])?;
    conn.execute(&create_log_sql(), [])?;
    if last > 0 {
        // The new log's `seq`s go on after the old ones: SQLite hands out
        // max + 1, and pruning never deletes the newest row.
        conn.execute(&format!("INSERT INTO {log}(seq, kind) VALUES(?1, ?2)"), [last + 1, kind(0, MARKER_OP)])?;
    }
    if !registry_has_reread(conn)? {
        conn.execute(
            &format!("ALTER TABLE {} ADD COLUMN reread INTEGER NOT NULL DEFAULT 0", quote_ident(TABLES_TABLE)),
            [],
        )?;
    }
    // No consumer needs the old rows: nothing to keep.
    let consumers: i64 =
        conn.query_row(&format!("SELECT count(*) FROM {}", quote_ident(CONSUMERS_TABLE)), [], |r| r.get(0))?;
    if consumers == 0 {
        conn.execute(&format!("DROP TABLE {old}"), [])?;
    }
    Ok(true)
}

/// Capture triggers (`_cdc_…`) of the file.
fn triggers_naming_the_log(conn: &Connection) -> Result<Vec<(String,)>> {
    let mut stmt =
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE '\\_cdc\\_%' ESCAPE '\\'")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?,)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
