//! The replica's record of the stream it follows (`_cdc_follow`), written
//! in the same transaction as the rows it applied.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use cdc_schema::replica::bookkeeping as sql;

use crate::error::Result;

pub use cdc_schema::replica::FOLLOW_TABLE;

/// What the replica stored about the stream.
#[derive(Clone, Debug, Default)]
pub(super) struct Record {
    pub stream: String,
    /// The stream's creation time (nanoseconds): a stream deleted and
    /// made again restarts its sequences.
    pub created: String,
    pub seq: u64,
    pub source: Option<String>,
    /// The `Nats-Msg-Id` of the commit message at `seq`: the stream must
    /// still hold it there, else its history changed under the replica.
    pub commit_id: Option<String>,
}

/// `replica-<hash of host and replica path>`: one durable consumer per
/// replica file and host.
pub(super) fn default_durable(replica: &Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let path = crate::lock::resolved(replica);
    let key = format!("{}\0{}", host.trim(), path.display());
    let hash = cdc_schema::fnv1a(key.as_bytes());
    format!("replica-{hash:016x}")
}

pub(super) fn read_record(conn: &Connection) -> Result<Option<Record>> {
    let exists: bool =
        conn.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [FOLLOW_TABLE], |r| {
            r.get::<_, i64>(0).map(|n| n > 0)
        })?;
    if !exists {
        return Ok(None);
    }
    Ok(conn
        .query_row(&sql::read_follow_sql(), [], |r| {
            Ok(Record {
                stream: r.get(0)?,
                created: r.get(1)?,
                seq: r.get::<_, i64>(2)? as u64,
                source: r.get(3)?,
                commit_id: r.get(4)?,
            })
        })
        .optional()?)
}

pub(super) fn write_record(conn: &Connection, r: &Record) -> Result<()> {
    conn.execute_batch(&sql::create_follow_sql())?;
    conn.prepare_cached(&sql::write_follow_sql())?.execute(params![
        r.stream,
        r.created,
        r.seq as i64,
        r.source,
        r.commit_id
    ])?;
    Ok(())
}
