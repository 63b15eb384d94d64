//! Pruning: deleting the log rows every consumer has acknowledged, and
//! the layouts no log row refers to any more.

use rusqlite::{Connection, params};

use cdc_schema::bookkeeping as sql;
use cdc_schema::legacy;
use cdc_schema::log::LOG_TABLE;

use super::meta::{record_own_ddl, schema_cookie};
use crate::error::Result;
use crate::log::{has_legacy, high_water, legacy_high_water, low_water};

/// Deletes log rows every consumer has acknowledged, keeping the row at
/// the lowest position (the anchor a consumer's target checks) and always
/// the newest row: `seq` is an `INTEGER PRIMARY KEY` without
/// `AUTOINCREMENT`, and SQLite would hand out `max + 1` again if the top
/// rows were deleted. Does nothing while there is no consumer. Returns the
/// rows deleted.
pub fn prune(conn: &Connection) -> Result<usize> {
    let deleted = prune_at_most(conn, i64::MAX)?;
    if deleted > 0 {
        forget_unused_layouts(conn)?;
    }
    Ok(deleted)
}

/// [`prune`], deleting at most about `rows` rows (the oldest): a sidecar
/// prunes a large backlog over several short write transactions, so it
/// never holds the source's write lock for long. Call it inside a write
/// transaction (its bounds are read by separate statements); it leaves
/// layouts no longer used to [`forget_unused_layouts`]. The format 1 rows
/// of an upgraded log go first, and their table once it is empty.
pub fn prune_at_most(conn: &Connection, rows: i64) -> Result<usize> {
    let min: Option<i64> = conn.query_row(&sql::lowest_position_sql(), [], |r| r.get(0))?;
    let Some(min) = min else { return Ok(0) };
    let (Some(low), Some(high)) = (low_water(conn)?, Some(high_water(conn)?).filter(|h| *h > 0)) else { return Ok(0) };
    // One upper bound, computed here: SQLite scans a rowid range up to
    // the bound it picks and only filters by the others, so several bounds
    // in the statement made each chunk walk every row below the lowest
    // pin (a 1M-row backlog took minutes to prune, each chunk holding the
    // write lock for tens of milliseconds).
    let last = min.saturating_sub(1).min(high - 1).min(low.saturating_add(rows.saturating_sub(1)));
    if last < low {
        return Ok(0);
    }
    let mut deleted = 0;
    if has_legacy(conn)? {
        deleted += conn.prepare_cached(&sql::prune_sql(legacy::LOG_TABLE))?.execute(params![low, last])?;
        if legacy_high_water(conn)?.is_none() {
            let cookie = schema_cookie(conn)?;
            conn.execute(&sql::drop_table_sql(legacy::LOG_TABLE), [])?;
            record_own_ddl(conn, cookie)?;
        }
    }
    deleted += conn.prepare_cached(&sql::prune_sql(LOG_TABLE))?.execute(params![low, last])?;
    Ok(deleted)
}

/// Drops the registry rows of layouts no longer active that no log row
/// refers to any more. Each one costs a walk of the log up to its first
/// remaining row (the capture id has no index: every capture write would
/// pay for one), so callers run it once per pruning pass, not per chunk.
pub fn forget_unused_layouts(conn: &Connection) -> Result<usize> {
    Ok(conn.execute(&sql::forget_layouts_sql(has_legacy(conn)?), [])?)
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    /// Pruning a chunk visits only that chunk: the delete is one rowid
    /// range with both ends (an earlier form bounded it from above only
    /// and walked every row below the lowest pin for each 500-row chunk).
    #[test]
    fn a_prune_chunk_searches_one_rowid_range() {
        let conn = Connection::open_in_memory().unwrap();
        for sql in cdc_schema::log::internal_ddl() {
            conn.execute_batch(&sql).unwrap();
        }
        let plan: String = conn
            .query_row(&format!("EXPLAIN QUERY PLAN {}", cdc_schema::bookkeeping::prune_sql("_cdc_log")), [1, 2], |r| {
                r.get(3)
            })
            .unwrap();
        assert!(plan.contains("rowid>? AND rowid<?"), "{plan}");
    }
}
