//! What `cdc-setup status` reports: captured tables and their drift, the
//! log, consumers, an open migration window.

use rusqlite::Connection;
use serde::Serialize;

use cdc_schema::InsertImage;
use cdc_schema::bookkeeping as sql;

use super::drift::drift;
use super::migration::{Migration, migration};
use crate::error::Result;
use crate::log::{ensure_current, is_initialised, registry};
use crate::source::{ConsumerStatus, consumers};

/// A captured table's health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableStatus {
    /// The table.
    pub name: String,
    /// The id its current triggers write into the log ([`Registered::tid`]).
    pub capture_id: i64,
    /// Recorded at install ([`Registered::fingerprint`]).
    pub fingerprint: String,
    /// `None` when the table matches its fingerprint and has its triggers.
    pub drift: Option<String>,
    /// Where its INSERT trigger takes the row from.
    pub inserts: InsertImage,
}

/// What `cdc-setup status` reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Status {
    /// Whether the database is in WAL mode (recommended: then the
    /// replicator's reads never block the application's writes).
    pub wal: bool,
    /// Every captured table.
    pub tables: Vec<TableStatus>,
    /// Changes in the log (markers and continuation rows not counted).
    pub log_rows: i64,
    /// The oldest change still in the log, `None` when it is empty.
    pub oldest_seq: Option<i64>,
    /// The newest change, `None` when the log is empty.
    pub newest_seq: Option<i64>,
    /// Every registered consumer, with how far behind it is.
    pub consumers: Vec<ConsumerStatus>,
    /// An open migration window (`cdc-setup migrate`), if any.
    pub migration: Option<Migration>,
}

/// Reads the capture status of a database (read-only).
pub fn status(conn: &Connection) -> Result<Status> {
    ensure_current(conn)?;
    let wal = crate::db::is_wal(conn)?;
    if !is_initialised(conn)? {
        return Ok(Status {
            wal,
            tables: vec![],
            log_rows: 0,
            oldest_seq: None,
            newest_seq: None,
            consumers: vec![],
            migration: None,
        });
    }
    let mut tables = Vec::new();
    for r in registry(conn)?.into_iter().filter(|r| r.active) {
        tables.push(TableStatus {
            name: r.desc.name.to_string(),
            capture_id: r.tid,
            fingerprint: r.fingerprint.clone(),
            drift: drift(conn, &r)?,
            inserts: r.inserts,
        });
    }
    let (log_rows, oldest_seq, newest_seq) =
        conn.query_row(&sql::changes_kept_sql(&crate::log::tables_of(&crate::log::segments(conn)?)), [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let consumers = consumers(conn)?;
    Ok(Status { wal, tables, log_rows, oldest_seq, newest_seq, consumers, migration: migration(conn)? })
}
