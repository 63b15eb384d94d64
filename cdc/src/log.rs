//! Reading the log back as changes, consumer positions, and pruning.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use cdc_schema::log::{CHUNK_WIDTH, CONSUMERS_TABLE, LOG_TABLE, MARKER_OP, read_sql};
use cdc_schema::{Op, TableDesc, quote_ident};

use crate::capture::registry;
use crate::error::{Error, Result};
use crate::event::{Change, Row};
use crate::state::DeliveryState;
use crate::value::Value;

/// A registered layout, ready for decoding.
#[derive(Debug)]
pub struct Layout {
    /// The table's name, shared by every change decoded with this layout.
    pub table: Arc<str>,
    /// The captured columns in image order, shared likewise.
    pub columns: Arc<[String]>,
    /// The description the triggers were generated from.
    pub desc: TableDesc,
    /// Whether each image starts with the rowid.
    pub has_rowid: bool,
    /// Values per image ([`TableDesc::image_len`]): where an UPDATE's after
    /// image starts.
    pub image_len: usize,
}

impl Layout {
    fn new(desc: TableDesc) -> Layout {
        Layout {
            table: desc.name.as_ref().into(),
            columns: desc.captured().map(|c| c.name.to_string()).collect(),
            has_rowid: !desc.without_rowid,
            image_len: desc.image_len(),
            desc,
        }
    }
}

/// Changes read in one go, and the last log `seq` they cover (which can be
/// past the last change when rows were skipped).
#[derive(Debug, Default)]
pub struct Batch {
    /// Whole changes, in `seq` order.
    pub changes: Vec<Change>,
    /// Where the next read starts (its `after`).
    pub end_seq: i64,
}

/// Decodes log rows into [`Change`]s, caching registered layouts.
#[derive(Debug, Default)]
pub struct LogReader {
    layouts: HashMap<i64, Arc<Layout>>,
}

/// Julian day (as written by `julianday('now')`) to Unix milliseconds.
pub fn julian_to_unix_ms(jd: f64) -> i64 {
    ((jd - 2_440_587.5) * 86_400_000.0).round() as i64
}

/// What a consumer at `seq` lacks of the log up to `high_water` in the
/// tables captured as `tids`: how many changes, and the write time (Unix
/// milliseconds) of the oldest of them.
pub fn pending(conn: &Connection, seq: i64, high_water: i64, tids: &[i64]) -> Result<(u64, Option<i64>)> {
    let log = quote_ident(LOG_TABLE);
    let tids = tids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    let is_change = format!("{} AND tid IN ({tids})", cdc_schema::log::IS_CHANGE);
    let count: i64 = conn.query_row(
        &format!("SELECT count(*) FROM {log} WHERE seq > ?1 AND seq <= ?2 AND {is_change}"),
        [seq, high_water],
        |r| r.get(0),
    )?;
    let ts: Option<f64> = conn
        .query_row(&format!("SELECT ts FROM {log} WHERE seq > ?1 AND {is_change} ORDER BY seq LIMIT 1"), [seq], |r| {
            r.get(0)
        })
        .optional()?;
    Ok((count as u64, ts.map(julian_to_unix_ms)))
}

impl LogReader {
    /// A reader with no layout cached yet: the registry is read on first
    /// use and again whenever a log row names a capture id not seen before.
    pub fn new() -> Self {
        Self::default()
    }

    fn layout(&mut self, conn: &Connection, tid: i64, seq: i64) -> Result<Arc<Layout>> {
        if let Some(l) = self.layouts.get(&tid) {
            return Ok(l.clone());
        }
        for r in registry(conn)? {
            self.layouts.entry(r.tid).or_insert_with(|| Arc::new(Layout::new(r.desc)));
        }
        self.layouts.get(&tid).cloned().ok_or_else(|| Error::CorruptLog {
            seq,
            problem: format!("unknown capture id {tid} (was the registry edited?)"),
        })
    }

    /// Reads up to `max_changes` whole changes after `after`, in `seq`
    /// order, never more than `up_to` (inclusive). Rows are streamed from
    /// SQLite, so memory is bounded by `max_changes`, not by the backlog.
    pub fn read(&mut self, conn: &Connection, after: i64, up_to: i64, max_changes: usize) -> Result<Batch> {
        let mut stmt = conn.prepare_cached(&read_sql())?;
        let mut rows = stmt.query(params![after, up_to])?;
        let mut batch = Batch { changes: Vec::new(), end_seq: after };
        // The change being assembled, and how many of its values are in.
        let mut pending: Option<(Change, Arc<Layout>, usize)> = None;
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            let op_code: i64 = r.get(2)?;
            if (op_code == 0 || op_code == MARKER_OP) && pending.is_none() {
                // A continuation whose head was pruned or read before, or
                // a marker of capture being attached: skip.
                batch.end_seq = seq;
                continue;
            }
            if op_code != 0 {
                if pending.is_some() {
                    return Err(Error::CorruptLog {
                        seq,
                        problem: "change ends early (missing continuation rows)".into(),
                    });
                }
                if batch.changes.len() >= max_changes {
                    break;
                }
                let tid: i64 = r.get(1)?;
                let op = Op::from_code(op_code)
                    .ok_or_else(|| Error::CorruptLog { seq, problem: format!("unknown operation code {op_code}") })?;
                let layout = self.layout(conn, tid, seq)?;
                let ts: f64 = r.get::<_, Option<f64>>(3)?.unwrap_or(2_440_587.5);
                let image = || Some(Row { rowid: None, values: Vec::with_capacity(layout.columns.len()) });
                let change = Change {
                    seq,
                    table: layout.table.clone(),
                    columns: layout.columns.clone(),
                    op,
                    time_ms: julian_to_unix_ms(ts),
                    before: if op == Op::Insert { None } else { image() },
                    after: if op == Op::Delete { None } else { image() },
                };
                pending = Some((change, layout, 0));
            }
            let (change, layout, filled) = pending.as_mut().expect("set above");
            let total = layout.image_len * if change.op == Op::Update { 2 } else { 1 };
            let here = (total - *filled).min(CHUNK_WIDTH);
            for i in 0..here {
                let v = Value::from_ref(r.get_ref(4 + i)?).map_err(|_| Error::InvalidUtf8 {
                    table: change.table.to_string(),
                    seq: change.seq,
                    column: column_name(layout, *filled),
                })?;
                // Values go straight into their image: the first image is
                // the before image except for INSERT.
                let first = *filled < layout.image_len;
                let row = if first && change.op != Op::Insert { &mut change.before } else { &mut change.after };
                let row = row.as_mut().expect("allocated for this op");
                match (layout.has_rowid, *filled % layout.image_len, v) {
                    (true, 0, Value::Integer(rowid)) => row.rowid = Some(rowid),
                    (true, 0, other) => {
                        return Err(Error::CorruptLog {
                            seq: change.seq,
                            problem: format!("rowid is {}", other.type_name()),
                        });
                    }
                    (_, _, v) => row.values.push(v),
                }
                *filled += 1;
            }
            batch.end_seq = seq;
            if *filled == total {
                let (change, ..) = pending.take().expect("set above");
                batch.changes.push(change);
            }
        }
        if let Some((change, ..)) = pending {
            // Only possible when `up_to` cut a change: never at a commit point.
            return Err(Error::CorruptLog {
                seq: change.seq,
                problem: "change is incomplete at the end of the read".into(),
            });
        }
        Ok(batch)
    }
}

/// The column that value `index` of a change belongs to.
fn column_name(layout: &Layout, index: usize) -> String {
    let i = index % layout.image_len;
    match (layout.has_rowid, i) {
        (true, 0) => "rowid".into(),
        (true, i) => layout.columns[i - 1].clone(),
        (false, i) => layout.columns[i].clone(),
    }
}

/// The highest `seq` in the log (0 when empty). Read inside a transaction
/// it is a commit point: the log only ever shows whole source transactions.
pub fn high_water(conn: &Connection) -> Result<i64> {
    let sql = format!("SELECT coalesce(max(seq), 0) FROM {}", quote_ident(LOG_TABLE));
    Ok(conn.query_row(&sql, [], |r| r.get(0))?)
}

/// The lowest `seq` still in the log, if any.
pub fn low_water(conn: &Connection) -> Result<Option<i64>> {
    let sql = format!("SELECT min(seq) FROM {}", quote_ident(LOG_TABLE));
    Ok(conn.query_row(&sql, [], |r| r.get(0))?)
}

/// A checksum of the log row at `seq` (`None` when there is no such row):
/// its capture id, operation, write time and values. Stored beside a
/// target's position, it tells the log the target followed from one that
/// was rewound (a restored backup) and has grown past that position again.
pub fn anchor(conn: &Connection, seq: i64) -> Result<Option<u64>> {
    if seq <= 0 {
        return Ok(None);
    }
    let values: Vec<String> = (0..CHUNK_WIDTH).map(cdc_schema::log::value_column).collect();
    let sql = format!("SELECT tid, op, ts, {} FROM {} WHERE seq = ?1", values.join(", "), quote_ident(LOG_TABLE));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([seq])?;
    let Some(row) = rows.next()? else { return Ok(None) };
    let mut parts: Vec<Vec<u8>> = Vec::with_capacity(3 + CHUNK_WIDTH);
    for i in 0..3 + CHUNK_WIDTH {
        use rusqlite::types::ValueRef;
        let mut part = Vec::new();
        match row.get_ref(i)? {
            ValueRef::Null => part.push(0),
            ValueRef::Integer(v) => {
                part.push(1);
                part.extend_from_slice(&v.to_le_bytes());
            }
            ValueRef::Real(v) => {
                part.push(2);
                part.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            ValueRef::Text(v) => {
                part.push(3);
                part.extend_from_slice(v);
            }
            ValueRef::Blob(v) => {
                part.push(4);
                part.extend_from_slice(v);
            }
        }
        parts.push(part);
    }
    Ok(Some(cdc_schema::fnv1a64(parts.iter().map(Vec::as_slice))))
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

/// Deletes the log rows from `?1` to `?2`: one rowid range, so SQLite
/// visits only the rows it deletes.
fn prune_sql() -> String {
    format!("DELETE FROM {} WHERE seq BETWEEN ?1 AND ?2", quote_ident(LOG_TABLE))
}

/// [`prune`], deleting at most about `rows` rows (the oldest): a sidecar
/// prunes a large backlog over several short write transactions, so it
/// never holds the source's write lock for long. Call it inside a write
/// transaction (its bounds are read by separate statements); it leaves
/// layouts no longer used to [`forget_unused_layouts`].
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
    Ok(conn.prepare_cached(&prune_sql())?.execute(params![low, last])?)
}

/// Drops the registry rows of layouts no longer active that no log row
/// refers to any more. Each one costs a walk of the log up to its first
/// remaining row (`tid` has no index: every capture write would pay for
/// one), so callers run it once per pruning pass, not per chunk.
pub fn forget_unused_layouts(conn: &Connection) -> Result<usize> {
    let sql = format!(
        "DELETE FROM {} WHERE active = 0 AND NOT EXISTS (SELECT 1 FROM {} WHERE tid = {0}.tid)",
        quote_ident(cdc_schema::log::TABLES_TABLE),
        quote_ident(LOG_TABLE)
    );
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
        let plan: String =
            conn.query_row(&format!("EXPLAIN QUERY PLAN {}", super::prune_sql()), [1, 2], |r| r.get(3)).unwrap();
        assert!(plan.contains("rowid>? AND rowid<?"), "{plan}");
    }
}
