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

/// The highest `seq` of the format 1 rows an upgraded log still keeps
/// (`None`: there are none, or the log was never upgraded).
pub fn legacy_high_water(conn: &Connection) -> Result<Option<i64>> {
    if !has_legacy(conn)? {
        return Ok(None);
    }
    Ok(conn.query_row(&sql::max_seq_sql(legacy::LOG_TABLE, true), [], |r| r.get(0))?)
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
    let count = |legacy_log: bool| -> Result<(i64, Option<i64>)> {
        let sql = sql::pending_sql(tids, legacy_log);
        Ok(conn.query_row(&sql, [seq, high_water], |r| Ok((r.get(0)?, r.get(1)?)))?)
    };
    let (changes, oldest_seq) = count(false)?;
    let mut pending = Pending { changes: changes as u64, oldest_seq, oldest_written_ms: None };
    if has_legacy(conn)? {
        let (changes, first) = count(true)?;
        pending.changes += changes as u64;
        if let Some(first) = first {
            let ts: Option<f64> = conn.query_row(&sql::legacy_write_time_sql(), [first], |r| r.get(0))?;
            pending.oldest_seq = Some(first);
            pending.oldest_written_ms = ts.map(julian_to_unix_ms);
        }
    }
    Ok(pending)
}

/// The highest `seq` in the log (0 when empty). Read inside a transaction
/// it is a commit point: the log only ever shows whole source transactions.
pub fn high_water(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row(&sql::max_seq_sql(LOG_TABLE, false), [], |r| r.get(0))?)
}

/// The lowest `seq` still in the log (format 1 rows of an upgraded log
/// included), if any.
pub fn low_water(conn: &Connection) -> Result<Option<i64>> {
    if has_legacy(conn)?
        && let Some(low) = conn.query_row(&sql::min_seq_sql(legacy::LOG_TABLE), [], |r| r.get::<_, Option<i64>>(0))?
    {
        return Ok(Some(low));
    }
    Ok(conn.query_row(&sql::min_seq_sql(LOG_TABLE), [], |r| r.get(0))?)
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
    let mut stmt = conn.prepare_cached(&sql::anchor_sql())?;
    let mut rows = stmt.query([seq])?;
    if let Some(row) = rows.next()? {
        return Ok(Some(read::checksum(row, 0, 1 + CHUNK_WIDTH)?));
    }
    if !has_legacy(conn)? {
        return Ok(None);
    }
    let mut stmt = conn.prepare_cached(&sql::legacy_anchor_sql())?;
    let mut rows = stmt.query([seq])?;
    let Some(row) = rows.next()? else { return Ok(None) };
    Ok(Some(read::checksum(row, 0, 3 + legacy::CHUNK_WIDTH)?))
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
