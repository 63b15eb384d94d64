//! The target trait: the minimal surface a destination needs.

use cdc_schema::TableDesc;

use crate::error::Result;
use crate::event::Event;

/// What a target learns about the source when the engine opens it.
#[derive(Clone, Debug)]
pub struct Source {
    /// Random id of the source's log; a position is only meaningful
    /// together with it.
    pub log_id: String,
    /// The tables this consumer follows.
    pub tables: Vec<SourceTable>,
}

/// One followed table, with the SQL that created it (replicas create
/// missing tables from it).
#[derive(Clone, Debug)]
pub struct SourceTable {
    pub desc: TableDesc,
    /// `CREATE TABLE` as stored in the source's `sqlite_master`.
    pub create_sql: String,
    /// `CREATE INDEX` statements of the table's explicit indexes.
    pub index_sql: Vec<String>,
}

/// A destination for events.
///
/// The engine calls [`Target::apply`] with events in log order, then
/// [`Target::commit`] only at source commit points, so a target that
/// commits never has to commit inside a source transaction, however large.
/// An error from `apply` or `commit` makes the engine call
/// [`Target::rollback`], wait (exponential backoff) and deliver again from
/// the last commit; after the last retry it stops with the error. The
/// consumer's position in the source advances only after `commit` returns.
///
/// Any `FnMut(&[Event]) -> cdc::Result<()>` closure is a target: it
/// receives every batch, and an event counts as delivered once the closure
/// has returned `Ok` for the commit point that covers it (at-least-once:
/// after a crash or a retry it may see events again).
pub trait Target {
    /// Called once before any event, with the source's description.
    /// Exactly-once targets return the position they stored durably
    /// themselves for `source.log_id` (the engine then resumes from it).
    fn open(&mut self, source: &Source) -> Result<Option<i64>> {
        let _ = source;
        Ok(None)
    }

    /// Applies events in order.
    fn apply(&mut self, events: &[Event]) -> Result<()>;

    /// Makes everything applied so far durable, as of log position
    /// `position` (always a source commit point).
    fn commit(&mut self, position: i64) -> Result<()> {
        let _ = position;
        Ok(())
    }

    /// Discards what was applied since the last commit.
    fn rollback(&mut self) -> Result<()> {
        Ok(())
    }
}

impl<F> Target for F
where
    F: FnMut(&[Event]) -> Result<()>,
{
    fn apply(&mut self, events: &[Event]) -> Result<()> {
        self(events)
    }
}
