//! The log: reading it back as changes ([`LogReader`]), its water marks,
//! consumer positions, and pruning.

mod read;

use rusqlite::{Connection, OptionalExtension, params};

use cdc_schema::legacy;
use cdc_schema::log::{CHUNK_WIDTH, CONSUMERS_TABLE, IS_CHANGE, LOG_TABLE, TID_OF_KIND};
use cdc_schema::quote_ident;

pub use read::{Batch, Layout, LogReader, julian_to_unix_ms, now_ms};

use crate::error::Result;
use crate::state::DeliveryState;

/// The highest `seq` of the format 1 rows an upgraded log still keeps
/// (`None`: there are none, or the log was never upgraded).
pub fn legacy_high_water(conn: &Connection) -> Result<Option<i64>> {
    if !has_legacy(conn)? {
        return Ok(None);
    }
    let sql = format!("SELECT max(seq) FROM {}", quote_ident(legacy::LOG_TABLE));
    Ok(conn.query_row(&sql, [], |r| r.get(0))?)
}

/// Whether the file keeps a format 1 log from before an upgrade.
pub fn has_legacy(conn: &Connection) -> Result<bool> {
    let sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1";
    Ok(conn.query_row(sql, [legacy::LOG_TABLE], |_| Ok(())).optional()?.is_some())
}

/// What a consumer lacks of the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// Changes after its position, up to the high-water mark read.
    pub changes: u64,
    /// The `seq` of the oldest of them.
    pub oldest_seq: Option<i64>,
    /// Its write time (Unix milliseconds), where the log recorded one
    /// (format 1 rows).
    pub oldest_written_ms: Option<i64>,
}

/// What a consumer at `seq` lacks of the log up to `high_water` in the
/// tables captured as `tids`.
pub fn pending(conn: &Connection, seq: i64, high_water: i64, tids: &[i64]) -> Result<Pending> {
    let list = tids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    let log = quote_ident(LOG_TABLE);
    let current = format!("{IS_CHANGE} AND {TID_OF_KIND} IN ({list})");
    let count: i64 = conn.query_row(
        &format!("SELECT count(*) FROM {log} WHERE seq > ?1 AND seq <= ?2 AND {current}"),
        [seq, high_water],
        |r| r.get(0),
    )?;
    let oldest: Option<i64> = conn
        .query_row(&format!("SELECT seq FROM {log} WHERE seq > ?1 AND {current} ORDER BY seq LIMIT 1"), [seq], |r| {
            r.get(0)
        })
        .optional()?;
    let mut pending = Pending { changes: count as u64, oldest_seq: oldest, oldest_written_ms: None };
    if has_legacy(conn)? {
        let old = quote_ident(legacy::LOG_TABLE);
        let condition = format!("{} AND tid IN ({list})", legacy::IS_CHANGE);
        let (count, first): (i64, Option<i64>) = conn.query_row(
            &format!("SELECT count(*), min(seq) FROM {old} WHERE seq > ?1 AND seq <= ?2 AND {condition}"),
            [seq, high_water],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        pending.changes += count as u64;
        if let Some(first) = first {
            let ts: Option<f64> =
                conn.query_row(&format!("SELECT ts FROM {old} WHERE seq = ?1"), [first], |r| r.get(0))?;
            pending.oldest_seq = Some(first);
            pending.oldest_written_ms = ts.map(julian_to_unix_ms);
        }
    }
    Ok(pending)
}

/// The highest `seq` in the log (0 when empty). Read inside a transaction
/// it is a commit point: the log only ever shows whole source transactions.
pub fn high_water(conn: &Connection) -> Result<i64> {
    let sql = format!("SELECT coalesce(max(seq), 0) FROM {}", quote_ident(LOG_TABLE));
    Ok(conn.query_row(&sql, [], |r| r.get(0))?)
}

/// The lowest `seq` still in the log (format 1 rows of an upgraded log
/// included), if any.
pub fn low_water(conn: &Connection) -> Result<Option<i64>> {
    if has_legacy(conn)? {
        let sql = format!("SELECT min(seq) FROM {}", quote_ident(legacy::LOG_TABLE));
        if let Some(low) = conn.query_row(&sql, [], |r| r.get::<_, Option<i64>>(0))? {
            return Ok(Some(low));
        }
    }
    let sql = format!("SELECT min(seq) FROM {}", quote_ident(LOG_TABLE));
    Ok(conn.query_row(&sql, [], |r| r.get(0))?)
}

/// A checksum of the log row at `seq` (`None` when there is no such row):
/// its kind (capture id and operation) and values; for a format 1 row, its
/// capture id, operation, write time and values, as format 1 computed it.
/// Stored beside a target's position, it tells the log the target followed
/// from one that was rewound (a restored backup) and has grown past that
/// position again.
pub fn anchor(conn: &Connection, seq: i64) -> Result<Option<u64>> {
    if seq <= 0 {
        return Ok(None);
    }
    let values: Vec<String> = (0..CHUNK_WIDTH).map(cdc_schema::log::value_column).collect();
    let sql = format!("SELECT kind, {} FROM {} WHERE seq = ?1", values.join(", "), quote_ident(LOG_TABLE));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([seq])?;
    if let Some(row) = rows.next()? {
        return Ok(Some(read::checksum(row, 0, 1 + CHUNK_WIDTH)?));
    }
    if !has_legacy(conn)? {
        return Ok(None);
    }
    let sql = format!("SELECT {} FROM {} WHERE seq = ?1", legacy::columns(), quote_ident(legacy::LOG_TABLE));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([seq])?;
    let Some(row) = rows.next()? else { return Ok(None) };
    Ok(Some(read::checksum(row, 0, 3 + legacy::CHUNK_WIDTH)?))
}

/// A consumer's retention pin (the `seq` up to which it acknowledged).
pub fn position(conn: &Connection, consumer: &str) -> Result<Option<i64>> {
    let sql = format!("SELECT position FROM {} WHERE name = ?1", quote_ident(CONSUMERS_TABLE));
    Ok(conn.query_row(&sql, [consumer], |r| r.get(0)).optional()?)
}

/// Whether the consumer table has the `state` column (logs made by older
/// versions do not; it is added on first use).
fn has_state_column(conn: &Connection) -> Result<bool> {
    let sql =
        format!("SELECT 1 FROM pragma_table_info({}) WHERE name = 'state'", cdc_schema::quote_literal(CONSUMERS_TABLE));
    Ok(conn.query_row(&sql, [], |_| Ok(())).optional()?.is_some())
}

/// The delivery state the source keeps for a consumer whose target cannot
/// keep its own (`None`: no consumer, or no state stored).
pub fn consumer_state(conn: &Connection, consumer: &str) -> Result<Option<DeliveryState>> {
    if !has_state_column(conn)? {
        return Ok(None);
    }
    let sql = format!("SELECT state FROM {} WHERE name = ?1", quote_ident(CONSUMERS_TABLE));
    let text: Option<Option<String>> = conn.query_row(&sql, [consumer], |r| r.get(0)).optional()?;
    text.flatten().map(|t| DeliveryState::from_json(&t)).transpose()
}

/// Records a consumer's retention pin: the lowest position its target
/// still needs the log after. It follows the target's state, so it moves
/// back after a re-bootstrap of a rewound source (the positions it mirrors
/// never move back otherwise).
pub fn set_position(conn: &Connection, consumer: &str, seq: i64) -> Result<()> {
    let sql = format!(
        "INSERT INTO {}(name, position) VALUES(?1, ?2) ON CONFLICT(name) DO UPDATE SET \
         position = excluded.position, updated_at = CURRENT_TIMESTAMP",
        quote_ident(CONSUMERS_TABLE)
    );
    conn.execute(&sql, params![consumer, seq])?;
    Ok(())
}

/// Stores the delivery state the source keeps for `consumer` (which must
/// be registered).
pub fn set_consumer_state(conn: &Connection, consumer: &str, state: &DeliveryState) -> Result<()> {
    let table = quote_ident(CONSUMERS_TABLE);
    // Files installed before the column was part of the table get it here
    // (a schema change, once).
    if !has_state_column(conn)? {
        conn.execute(&format!("ALTER TABLE {table} ADD COLUMN state TEXT"), [])?;
    }
    conn.execute(&format!("UPDATE {table} SET state = ?2 WHERE name = ?1"), params![consumer, state.to_json()])?;
    Ok(())
}

/// Drops a consumer: its pin no longer holds the log back. Returns whether
/// it existed.
pub fn remove_consumer(conn: &Connection, consumer: &str) -> Result<bool> {
    let sql = format!("DELETE FROM {} WHERE name = ?1", quote_ident(CONSUMERS_TABLE));
    Ok(conn.execute(&sql, [consumer])? > 0)
}

/// Renames consumer `from` to `to` unless `to` exists; `true` when renamed.
/// (The HTTP target's consumer name used to hold the URL's credentials.)
pub fn rename_consumer(conn: &Connection, from: &str, to: &str) -> Result<bool> {
    let sql = format!(
        "UPDATE {0} SET name = ?2 WHERE name = ?1 AND NOT EXISTS (SELECT 1 FROM {0} WHERE name = ?2)",
        quote_ident(CONSUMERS_TABLE)
    );
    Ok(conn.execute(&sql, [from, to])? > 0)
}

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

/// Deletes the log rows from `?1` to `?2` of `table`: one rowid range, so
/// SQLite visits only the rows it deletes.
fn prune_sql(table: &str) -> String {
    format!("DELETE FROM {} WHERE seq BETWEEN ?1 AND ?2", quote_ident(table))
}

/// [`prune`], deleting at most about `rows` rows (the oldest): a sidecar
/// prunes a large backlog over several short write transactions, so it
/// never holds the source's write lock for long. Call it inside a write
/// transaction (its bounds are read by separate statements); it leaves
/// layouts no longer used to [`forget_unused_layouts`]. The format 1 rows
/// of an upgraded log go first, and their table once it is empty.
pub fn prune_at_most(conn: &Connection, rows: i64) -> Result<usize> {
    let min: Option<i64> =
        conn.query_row(&format!("SELECT min(position) FROM {}", quote_ident(CONSUMERS_TABLE)), [], |r| r.get(0))?;
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
        deleted += conn.prepare_cached(&prune_sql(legacy::LOG_TABLE))?.execute(params![low, last])?;
        if legacy_high_water(conn)?.is_none() {
            let cookie = crate::capture::schema_cookie(conn)?;
            conn.execute(&format!("DROP TABLE {}", quote_ident(legacy::LOG_TABLE)), [])?;
            crate::capture::record_own_ddl(conn, cookie)?;
        }
    }
    deleted += conn.prepare_cached(&prune_sql(LOG_TABLE))?.execute(params![low, last])?;
    Ok(deleted)
}

/// Drops the registry rows of layouts no longer active that no log row
/// refers to any more. Each one costs a walk of the log up to its first
/// remaining row (the capture id has no index: every capture write would
/// pay for one), so callers run it once per pruning pass, not per chunk.
pub fn forget_unused_layouts(conn: &Connection) -> Result<usize> {
    let registry = quote_ident(cdc_schema::log::TABLES_TABLE);
    let mut used = format!("SELECT 1 FROM {} WHERE {TID_OF_KIND} = {registry}.tid", quote_ident(LOG_TABLE));
    if has_legacy(conn)? {
        used = format!("{used} UNION ALL SELECT 1 FROM {} WHERE tid = {registry}.tid", quote_ident(legacy::LOG_TABLE));
    }
    let sql = format!("DELETE FROM {registry} WHERE active = 0 AND NOT EXISTS ({used})");
    Ok(conn.execute(&sql, [])?)
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
            .query_row(&format!("EXPLAIN QUERY PLAN {}", super::prune_sql("_cdc_log")), [1, 2], |r| r.get(3))
            .unwrap();
        assert!(plan.contains("rowid>? AND rowid<?"), "{plan}");
    }
}
