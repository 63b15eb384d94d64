//! The log: reading it back as changes ([`LogReader`]), the layouts its
//! rows were written with ([`registry`]), its water marks and anchors.
//! Consumers and pruning are the source's bookkeeping: [`crate::source`].

mod read;
mod registry;

use rusqlite::{Connection, OptionalExtension};

use cdc_schema::bookkeeping as sql;
use cdc_schema::legacy;
use cdc_schema::log::{CHUNK_WIDTH, LOG_TABLE};

pub use read::{Batch, Layout, LogReader, julian_to_unix_ms, now_ms};
pub(crate) use registry::registry_has_reread;
pub use registry::{Registered, is_initialised, registry, select};

use crate::db::path_of;
use crate::error::{Error, Result};

/// One table of the log, in `seq` order with the others: format 1's rows
/// kept by an upgrade (`_cdc_log_v1`), the sealed segments
/// (`_cdc_log_seg_…`, see [`cdc_schema::log::SEGMENT_PREFIX`]), then the
/// current table the triggers write into (`_cdc_log`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The table.
    pub table: String,
    /// It holds format 1's rows.
    pub legacy: bool,
    /// The current table (the others are sealed: no row is added to them).
    pub current: bool,
}

impl Segment {
    fn sealed(table: String) -> Segment {
        Segment { table, legacy: false, current: false }
    }

    /// Its first `seq` (`None` when empty).
    pub fn first(&self, conn: &Connection) -> Result<Option<i64>> {
        Ok(conn.query_row(&sql::min_seq_sql(&self.table), [], |r| r.get(0))?)
    }

    /// Its last `seq` (`None` when empty).
    pub fn last(&self, conn: &Connection) -> Result<Option<i64>> {
        Ok(conn.query_row(&sql::max_seq_sql(&self.table, true), [], |r| r.get(0))?)
    }

    /// Its first and last `seq` (`None` when empty). Two statements: one
    /// asking for both scans the whole table, each alone is one lookup.
    pub fn bounds(&self, conn: &Connection) -> Result<Option<(i64, i64)>> {
        let Some(first) = self.first(conn)? else { return Ok(None) };
        Ok(self.last(conn)?.map(|last| (first, last)))
    }
}

/// The log's tables, in `seq` order (the current one last; none when
/// capture is not installed).
pub fn segments(conn: &Connection) -> Result<Vec<Segment>> {
    let mut out = Vec::new();
    if has_legacy(conn)? {
        out.push(Segment { table: legacy::LOG_TABLE.into(), legacy: true, current: false });
    }
    let mut stmt = conn.prepare_cached(&sql::segments_sql())?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
    for name in names {
        let name = name?;
        if cdc_schema::log::is_segment(&name) {
            out.push(Segment::sealed(name));
        }
    }
    if is_initialised(conn)? {
        out.push(Segment { table: LOG_TABLE.into(), legacy: false, current: true });
    }
    Ok(out)
}

/// The tables of `segments` as the bookkeeping statements take them.
pub(crate) fn tables_of(segments: &[Segment]) -> Vec<(&str, bool)> {
    segments.iter().map(|s| (s.table.as_str(), s.legacy)).collect()
}

/// Whether the file keeps a format 1 log from before an upgrade.
pub fn has_legacy(conn: &Connection) -> Result<bool> {
    Ok(conn.query_row(sql::TABLE_EXISTS, [legacy::LOG_TABLE], |_| Ok(())).optional()?.is_some())
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
    let mut pending = Pending::default();
    for segment in segments(conn)? {
        let sql = sql::pending_sql(tids, &segment.table, segment.legacy);
        let (changes, first): (i64, Option<i64>) =
            conn.query_row(&sql, [seq, high_water], |r| Ok((r.get(0)?, r.get(1)?)))?;
        pending.changes += changes as u64;
        if pending.oldest_seq.is_none()
            && let Some(first) = first
        {
            pending.oldest_seq = Some(first);
            if segment.legacy {
                let ts: Option<f64> = conn.query_row(&sql::legacy_write_time_sql(), [first], |r| r.get(0))?;
                pending.oldest_written_ms = ts.map(julian_to_unix_ms);
            }
        }
    }
    Ok(pending)
}

/// The highest `seq` in the log (0 when empty). Read inside a transaction
/// it is a commit point: the log only ever shows whole source
/// transactions. The current table always holds the newest row (sealing
/// starts the new one with a marker after the old one's last).
pub fn high_water(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row(&sql::max_seq_sql(LOG_TABLE, false), [], |r| r.get(0))?)
}

/// The lowest `seq` still in the log (format 1 rows of an upgraded log
/// and sealed segments included), if any.
pub fn low_water(conn: &Connection) -> Result<Option<i64>> {
    for segment in segments(conn)? {
        if let Some(first) = segment.first(conn)? {
            return Ok(Some(first));
        }
    }
    Ok(None)
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
    // The current table first: the anchor is most often a recent row.
    for segment in segments(conn)?.iter().rev() {
        let (sql, width) = if segment.legacy {
            (sql::legacy_anchor_sql(), 3 + legacy::CHUNK_WIDTH)
        } else {
            (sql::anchor_sql(&segment.table), 1 + CHUNK_WIDTH)
        };
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([seq])?;
        if let Some(row) = rows.next()? {
            return Ok(Some(read::checksum(row, 0, width)?));
        }
    }
    Ok(None)
}

/// How the file's log is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// No log: capture was never installed (or was removed).
    None,
    /// Written by a version before the current format (`tid`, `op`,
    /// `ts` and 32 values a row): `cdc-setup install` upgrades it.
    Format1,
    /// The current format.
    Current,
}

/// The format of the file's `_cdc_log`.
pub fn log_format(conn: &Connection) -> Result<LogFormat> {
    let column: Option<String> = conn
        .query_row("SELECT name FROM pragma_table_info(?1) WHERE name IN ('kind', 'tid')", [LOG_TABLE], |r| r.get(0))
        .optional()?;
    Ok(match column.as_deref() {
        None => LogFormat::None,
        Some("tid") => LogFormat::Format1,
        Some(_) => LogFormat::Current,
    })
}

/// Refuses a log of an older format ([`Error::OldLogFormat`]): read only
/// once `cdc-setup install` upgraded it.
pub fn ensure_current(conn: &Connection) -> Result<()> {
    match log_format(conn)? {
        LogFormat::Format1 => Err(Error::OldLogFormat(path_of(conn))),
        LogFormat::None | LogFormat::Current => Ok(()),
    }
}
