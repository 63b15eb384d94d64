//! Delivering the log: changes in `(from, to]`, in batches, each change
//! only to a table that does not hold it yet.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::Connection;

use crate::event::Event;
use crate::log::LogReader;
use crate::signal::Waker;
use crate::target::Target;

use super::failure::Failure;

/// Where each table to deliver stands: a change of table `t` at `seq` is
/// delivered when `seq > positions[t]`; other tables' changes are skipped.
pub(crate) type Positions = HashMap<Arc<str>, i64>;

/// Delivers the log's changes in `(from, to]` in batches of at most
/// `batch_size`. Returns the number delivered, or `None` when stopped midway.
/// Inside a transaction `conn` holds (a bootstrap's cut) every batch is
/// read in it; else each batch in a short read of its own, so that no read
/// transaction is held while the target works (it would keep the
/// application's checkpoints from the end of its WAL).
pub(crate) fn log(
    conn: &Connection,
    reader: &mut LogReader,
    positions: &Positions,
    (from, to): (i64, i64),
    batch_size: usize,
    waker: &Waker,
    target: &mut dyn Target,
) -> Result<Option<u64>, Failure> {
    let mut cursor = from;
    let mut delivered = 0u64;
    while cursor < to {
        if waker.is_stopped() {
            return Ok(None);
        }
        // Outside a transaction (a long delivery), each batch is read in
        // one of its own: one start of a read, not one per statement.
        let own = conn.is_autocommit();
        if own {
            conn.execute_batch("BEGIN DEFERRED").map_err(|e| Failure::Source(e.into()))?;
        }
        let batch = reader.read(conn, cursor, to, batch_size);
        if own {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let batch = batch?;
        let events: Vec<Event> = batch
            .changes
            .into_iter()
            .filter(|c| positions.get(&c.table).is_some_and(|p| c.seq > *p))
            .map(Event::Change)
            .collect();
        if !events.is_empty() {
            tracing::debug!(from = cursor, to = batch.end_seq, events = events.len(), "delivering batch");
            target.apply(&events).map_err(Failure::Target)?;
            delivered += events.len() as u64;
        }
        if batch.end_seq == cursor {
            break;
        }
        cursor = batch.end_seq;
    }
    Ok(Some(delivered))
}
