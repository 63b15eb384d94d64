//! The target trait: the minimal surface a destination needs.

use cdc_schema::TableDesc;

use crate::error::Result;
use crate::event::Event;
use crate::signal::StopHandle;
use crate::state::DeliveryState;

/// What a target learns about the source when the engine opens it. It
/// serialises (the NATS target sends it to followers on other hosts).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Source {
    /// Random id of the source's log; a position is only meaningful
    /// together with it.
    pub log_id: String,
    /// The source file, for messages and loop checks.
    pub path: std::path::PathBuf,
    /// The logs the source is itself a replica of (chained replication);
    /// a target whose own captured log is among them would close a loop.
    pub upstream_log_ids: Vec<String>,
    /// The tables this consumer follows.
    pub tables: Vec<SourceTable>,
    /// Tables this consumer followed that the source has dropped (schema
    /// following on): a target that keeps a copy of them drops it.
    pub dropped: Vec<String>,
    /// The source's views (name, `CREATE VIEW` as stored): a replica
    /// keeps the same, so queries written for the source run on it.
    #[serde(default)]
    pub views: Vec<(String, String)>,
}

/// One followed table, with the SQL that created it (replicas create
/// missing tables from it).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SourceTable {
    /// The table as captured: the columns the events carry.
    pub desc: TableDesc,
    /// `CREATE TABLE` as stored in the source's `sqlite_master`.
    pub create_sql: String,
    /// The table's explicit indexes (`CREATE INDEX`).
    pub indexes: Vec<crate::schema::IndexSql>,
    /// Where capture's INSERT trigger takes the row from: with
    /// [`cdc_schema::InsertImage::New`], a TEMP trigger of the writing
    /// connection can make a logged insert stale, which a replica can put
    /// right (it sees the rows the log is about).
    #[serde(default)]
    pub inserts: cdc_schema::InsertImage,
    /// The table's unique keys in the source ([`crate::schema::unique_keys`]):
    /// a replica table of the user's own must have each of them, and no
    /// other unless it contains one of them, or `OR REPLACE` would evict
    /// rows there that the source keeps, or keep rows the source evicted.
    /// `None` from a publisher that did not say (a NATS stream written by
    /// an earlier version): then not checked.
    #[serde(default)]
    pub unique_keys: Option<Vec<crate::schema::UniqueKey>>,
}

/// A destination for events.
///
/// The engine calls [`Target::apply`] with events in log order, then
/// [`Target::commit`] only at source commit points, so a target that
/// commits never has to commit inside a source transaction, however large.
/// An error from `apply` or `commit` makes the engine call
/// [`Target::rollback`], wait (exponential backoff) and deliver again from
/// the last commit.
///
/// What a target holds is described by a [`DeliveryState`]: per followed
/// table, nothing, seeding, or live from a log position. A target that can
/// store that state durably together with its data (the SQLite replica)
/// returns it from `open` and writes the state handed to `commit` in the
/// same transaction as the data: it is then the one truth about the
/// target, and delivery is exactly once. A target that cannot returns
/// `None` from `open`; the engine then keeps the state in the source's
/// consumer record, updated after `commit` returned (at least once).
///
/// Any `FnMut(&[Event]) -> cdc::Result<()>` closure is a target of the
/// second kind: it receives every batch, and an event counts as delivered
/// once the closure has returned `Ok` for the commit point that covers it.
pub trait Target {
    /// Called before any event, with the source's description (and again
    /// when the set of followed tables changes). A target that stores its
    /// own delivery state returns it (an empty state when it holds
    /// nothing yet); others return `None`.
    fn open(&mut self, source: &Source) -> Result<Option<DeliveryState>> {
        let _ = source;
        Ok(None)
    }

    /// For a target that keeps no state of its own (`open` returned
    /// `None`): the tables it found it no longer holds since it was last
    /// asked (a Kafka topic deleted, a broker that lost its data),
    /// whatever the consumer's record says. The engine bootstraps them
    /// again. Asked after each `open` and before each delivery.
    fn lost(&mut self) -> Vec<String> {
        Vec::new()
    }

    /// Applies events in order.
    fn apply(&mut self, events: &[Event]) -> Result<()>;

    /// Makes everything applied so far one atomic, visible unit, together
    /// with `state` (whose `position` is always a source commit point). It
    /// must be durable once [`Target::sync`] returns, if not before.
    fn commit(&mut self, state: &DeliveryState) -> Result<()> {
        let _ = state;
        Ok(())
    }

    /// Makes every commit so far durable. The engine calls it before it
    /// tells the source what the target holds (after which the source may
    /// prune those changes), at most once per acknowledgement interval, so
    /// a target can commit often and pay for durability rarely (the
    /// SQLite replica fsyncs its WAL here, not at every commit). A target
    /// whose commits are durable by themselves leaves it as is.
    fn sync(&mut self) -> Result<()> {
        Ok(())
    }

    /// Discards what was applied since the last commit.
    fn rollback(&mut self) -> Result<()> {
        Ok(())
    }

    /// A target that can copy a table's rows straight from the source
    /// file returns its [`BulkCopy`]: bootstraps then skip the `Bootstrap`
    /// events (still `BootstrapBegin` and `BootstrapEnd`). Only the SQLite
    /// replica can (SQLite copies the rows itself, several times faster
    /// than decoding and binding each one); others keep the default.
    fn bulk_copy(&mut self) -> Option<&mut dyn BulkCopy> {
        None
    }
}

/// What a target's own read of the source sees ([`BulkCopy::read_source`]):
/// the engine copies through it only when it is exactly the engine's cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceCut {
    /// The log's high-water `seq`. Every committed change of a captured
    /// table appends a log row, so two reads that see the same high-water
    /// mark (and schema) see the same captured rows.
    pub high_water: i64,
    /// The source's schema cookie (`PRAGMA schema_version`).
    pub schema_version: i64,
}

/// Where a [`BulkCopy`] batch starts.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum CopyFrom {
    /// At the table's first row.
    Start,
    /// At the row with this rowid, or the next one.
    Rowid(i64),
    /// At the row with this primary key (values exactly as the source
    /// stores them, in key order), or the next one in the key's order.
    Key(Vec<crate::Value>),
}

/// One batch of a [`BulkCopy`].
#[derive(Clone, Debug, PartialEq)]
pub struct CopyBatch {
    /// Rows copied.
    pub rows: u64,
    /// Where the next batch starts, `None` when the table is done.
    pub next: Option<CopyFrom>,
}

/// Bootstrap rows copied by the target itself from the source file,
/// inside the same transaction as the `BootstrapBegin` and `BootstrapEnd`
/// events around them (so a reader still never sees half a table).
///
/// The engine calls [`BulkCopy::open_source`] with no target transaction
/// open, then [`BulkCopy::read_source`] right after its own read of the
/// source started and while it holds back the source's writers (when it
/// can), compares the two cuts, and copies only when they are the same;
/// otherwise it rolls the target back and sends rows as events. The
/// target lets go of the source when it commits or rolls back.
pub trait BulkCopy {
    /// Opens the source at `source` for reading only (outside any
    /// transaction: the engine holds the source's writers back only
    /// for the read itself).
    fn open_source(&mut self, source: &std::path::Path) -> Result<()>;

    /// Starts the target's transaction and its read of the source opened
    /// by [`BulkCopy::open_source`], and says what that read sees. It
    /// must not wait for any lock: the source's writers wait meanwhile.
    fn read_source(&mut self) -> Result<SourceCut>;

    /// Copies about `limit` rows of `table` starting at `from`
    /// ([`CopyFrom::Start`] first, then each batch's `next`). A target may
    /// copy more at once (every row, when it finds no order to batch by,
    /// or when copying the whole table in one statement is much faster);
    /// a copy that takes long polls `stop` and, once it is stopped, may
    /// end with any error (the engine then rolls back, as for any stop).
    fn copy_rows(&mut self, table: &TableDesc, from: &CopyFrom, limit: usize, stop: &StopHandle) -> Result<CopyBatch>;
}

impl<F> Target for F
where
    F: FnMut(&[Event]) -> Result<()>,
{
    fn apply(&mut self, events: &[Event]) -> Result<()> {
        self(events)
    }
}
