//! `_cdc_meta`: the log's id, where capture of each table last started,
//! and the schema changes capture itself made.

use rusqlite::{Connection, OptionalExtension, params};

use cdc_schema::bookkeeping as sql;

/// The `_cdc_meta` key of the log's id (set by the internal DDL).
const LOG_ID_KEY: &str = "log_id";

use crate::error::{Error, Result};

/// The log's id: every log gets one at install, so a target tells a log
/// it followed from another (a restored file, another database).
pub fn log_id(conn: &Connection) -> Result<String> {
    let id: Option<String> = conn.query_row(&sql::meta_sql(), [LOG_ID_KEY], |r| r.get(0)).optional()?;
    id.ok_or_else(|| Error::CorruptLog { seq: 0, problem: "the log has no id (_cdc_meta was edited?)".into() })
}

pub(crate) fn since_key(table: &str) -> String {
    format!("captured_since:{table}")
}

/// The log position at which capture of `table` was last attached (0 when
/// unknown). Changes of the table before it may be missing from the log
/// (capture was removed and reinstalled, or re-attached after a schema
/// change), so a target live from an earlier position must reseed it.
pub fn captured_since(conn: &Connection, table: &str) -> Result<i64> {
    Ok(conn.query_row(&sql::meta_sql(), [since_key(table)], |r| r.get::<_, i64>(0)).optional()?.unwrap_or(0))
}

/// The `_cdc_meta` key of the schema changes capture itself made: pairs
/// of schema cookies `[before, after]`, the latest last.
const OWN_DDL_KEY: &str = "own_schema_changes";

/// How many of capture's own schema changes are remembered.
const OWN_DDL_KEPT: usize = 64;

/// `PRAGMA schema_version` as `conn` sees it.
pub(crate) fn schema_cookie(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?)
}

/// Records, at the end of one of capture's write transactions, that it
/// moved the schema cookie from `before` to where it is now: its own DDL
/// (triggers, the log), never a `VACUUM` or a reload. A replicator that
/// sees the cookie moved only by such changes knows that no rowid was
/// renumbered.
pub(crate) fn record_own_ddl(conn: &Connection, before: i64) -> Result<()> {
    let after = schema_cookie(conn)?;
    if after == before || !crate::log::is_initialised(conn)? {
        return Ok(());
    }
    let mut steps = own_ddl(conn)?;
    steps.push((before, after));
    let excess = steps.len().saturating_sub(OWN_DDL_KEPT);
    steps.drain(..excess);
    conn.execute(&sql::set_meta_sql(), params![OWN_DDL_KEY, serde_json::to_string(&steps)?])?;
    Ok(())
}

fn own_ddl(conn: &Connection) -> Result<Vec<(i64, i64)>> {
    let text: Option<String> = conn.query_row(&sql::meta_sql(), [OWN_DDL_KEY], |r| r.get(0)).optional()?;
    Ok(text.map(|t| serde_json::from_str(&t)).transpose()?.unwrap_or_default())
}

/// Whether the schema cookie went from `from` to `to` through capture's
/// own changes alone ([`record_own_ddl`]).
pub fn only_own_ddl(conn: &Connection, from: i64, to: i64) -> Result<bool> {
    let steps = own_ddl(conn)?;
    let mut at = from;
    while at != to {
        match steps.iter().find(|(before, _)| *before == at) {
            Some((_, after)) if *after > at => at = *after,
            _ => return Ok(false),
        }
    }
    Ok(true)
}
