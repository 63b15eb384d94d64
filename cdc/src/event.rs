//! Events: what the log and bootstrap deliver, dynamic and typed.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use cdc_schema::Op;

use crate::error::{Error, Result};
use crate::value::Value;

/// One row image: the rowid (rowid tables only) and the captured columns'
/// values in the table's column order (see [`Change::columns`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The rowid, `None` for a `WITHOUT ROWID` table. It is part of the
    /// image because a table without a declared key is only identified by it.
    pub rowid: Option<i64>,
    /// One value per captured column, exactly as stored.
    pub values: Vec<Value>,
}

/// One captured row change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Position in the global log order (the `seq` of its first log row).
    pub seq: i64,
    /// Table name.
    pub table: Arc<str>,
    /// Names of the captured columns, the order of [`Row::values`].
    pub columns: Arc<[String]>,
    /// Insert, update or delete: which of the images below are present.
    pub op: Op,
    /// When the change was first seen in the log, milliseconds since the
    /// Unix epoch: within milliseconds of its commit while a replicator
    /// follows the file, else when it was read. The log records no write
    /// time (a time function in a trigger would cost every application
    /// statement a statement journal); changes kept from log format 1
    /// carry their write time. See [`crate::log::LogReader`].
    pub time_ms: i64,
    /// Before image: UPDATE and DELETE.
    pub before: Option<Row>,
    /// After image: INSERT and UPDATE.
    pub after: Option<Row>,
}

/// What a target receives: a change, or one of the three bootstrap events
/// that purge and reseed a table from a consistent snapshot.
///
/// More kinds of event may be added in a minor release, so a match needs
/// a wildcard arm.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// A row change from the log, in commit order.
    Change(Change),
    /// Purge what you hold for `table`; its rows follow.
    BootstrapBegin {
        /// The table being reseeded.
        table: Arc<str>,
        /// Its captured columns, the order of the rows' values.
        columns: Arc<[String]>,
    },
    /// One row of the snapshot.
    Bootstrap {
        /// The table being reseeded.
        table: Arc<str>,
        /// The order of [`Row::values`], as in `BootstrapBegin`.
        columns: Arc<[String]>,
        /// The row as it was at the snapshot.
        row: Row,
    },
    /// The snapshot of `table` is complete with `rows` rows.
    BootstrapEnd {
        /// The table that was reseeded.
        table: Arc<str>,
        /// How many `Bootstrap` events were sent for it.
        rows: u64,
        /// The table's `AUTOINCREMENT` counter (its `sqlite_sequence` entry)
        /// at the snapshot, when it has one: it may be above every id the
        /// table still holds, and a replica promoted to primary must never
        /// hand out an id the source already gave.
        sequence: Option<i64>,
    },
    /// The schema of a table or view of the source, as of this point of
    /// the stream: before each table's bootstrap (so a reseed after
    /// `ADD COLUMN`, a rename or an ORM's remake starts with the new
    /// `CREATE TABLE`), and when a followed table is dropped, a table's
    /// explicit indexes change without a reseed, or a view is created,
    /// changed or dropped. A SQLite replica takes schema from the source's
    /// description instead ([`crate::Target::open`]) and ignores these.
    Schema(Schema),
}

/// What an [`Event::Schema`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaObject {
    /// A table.
    Table,
    /// A view.
    View,
}

/// A table's or view's definition on the source ([`Event::Schema`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    /// The table or view.
    pub name: Arc<str>,
    /// Which of the two it is.
    pub object: SchemaObject,
    /// `CREATE TABLE` or `CREATE VIEW` exactly as the source stores it;
    /// `None` once it was dropped.
    pub sql: Option<String>,
    /// A table's explicit indexes (`CREATE [UNIQUE] INDEX` as stored), by
    /// name; partial and expression indexes included.
    pub indexes: Vec<String>,
    /// A table's columns in declaration order (names, declared types, key
    /// positions, `NOT NULL`, generated ones flagged: events leave those
    /// out); empty for a view or a dropped table.
    pub columns: Vec<cdc_schema::ColumnDesc>,
    /// A `WITHOUT ROWID` table: its images carry no rowid, rows are
    /// identified by the key alone.
    pub without_rowid: bool,
    /// The table's bootstrap follows: its rows in this shape, which
    /// replace what a consumer holds. `false` when only its indexes
    /// changed (rows unchanged), for views and for drops.
    pub bootstrap: bool,
}

impl Event {
    /// The table the event is about.
    pub fn table(&self) -> &str {
        match self {
            Event::Change(c) => &c.table,
            Event::BootstrapBegin { table, .. }
            | Event::Bootstrap { table, .. }
            | Event::BootstrapEnd { table, .. } => table,
            Event::Schema(s) => &s.name,
        }
    }

    /// The typed form of this event when it is about `T`'s table, `None`
    /// when it is about another table. This is how one handler takes typed
    /// changes for some tables and dynamic ones for the rest.
    pub fn typed<T: Cdc>(&self) -> Option<Result<TypedChange<T>>> {
        (self.table() == T::TABLE.name).then(|| TypedChange::try_from(self))
    }
}

/// A struct mapped to a captured table, implemented by `#[derive(Cdc)]`.
pub trait Cdc: Sized {
    /// The table as the struct describes it (same model the runtime
    /// introspects, so the same generator makes the same SQL).
    const TABLE: cdc_schema::TableDesc;
    /// `CREATE TRIGGER` statements for INSERT, UPDATE, DELETE, generated at
    /// compile time.
    const CREATE_TRIGGERS: [&'static str; 3];
    /// The Rust type's name, for error messages.
    const RUST_TYPE: &'static str;

    /// The struct's captured columns as values, in `TABLE` column order.
    fn to_row(&self) -> Result<Vec<Value>>;

    /// Builds the struct from values in `TABLE` column order.
    fn from_row(values: &[Value]) -> Result<Self>;

    /// Builds the struct from values in another column order (the live
    /// table's), matching columns by name.
    fn from_named(columns: &[String], values: &[Value]) -> Result<Self> {
        let ordered: Result<Vec<Value>> = Self::TABLE
            .captured()
            .map(|c| {
                columns.iter().position(|name| *name == c.name).map(|i| values[i].clone()).ok_or_else(|| {
                    Error::Convert {
                        column: c.name.to_string(),
                        problem: format!("the event of table {:?} has no such column", Self::TABLE.name),
                    }
                })
            })
            .collect();
        Self::from_row(&ordered?)
    }
}

/// The typed change for a `#[derive(Cdc)]` struct: `#[derive(Cdc)] struct
/// User` defines `type UserChange = TypedChange<User>`. It is
/// serde-serializable whenever the struct is.
///
/// It grows with [`Event`], so a match needs a wildcard arm.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TypedChange<T> {
    /// A row was inserted.
    Insert {
        /// Position in the log ([`Change::seq`]).
        seq: i64,
        /// When, in milliseconds since the Unix epoch.
        time_ms: i64,
        /// The row as the table holds it after the insert.
        row: T,
    },
    /// A row was updated.
    Update {
        /// Position in the log ([`Change::seq`]).
        seq: i64,
        /// When, in milliseconds since the Unix epoch.
        time_ms: i64,
        /// The row before the update.
        before: T,
        /// The row after it.
        after: T,
    },
    /// A row was deleted.
    Delete {
        /// Position in the log ([`Change::seq`]).
        seq: i64,
        /// When, in milliseconds since the Unix epoch.
        time_ms: i64,
        /// The row as it was before the delete.
        row: T,
    },
    /// Purge what you hold of this table: a snapshot of it follows.
    BootstrapBegin,
    /// One row of the snapshot.
    Bootstrap {
        /// The row as it was at the snapshot.
        row: T,
    },
    /// The snapshot is complete.
    BootstrapEnd {
        /// How many `Bootstrap` events it had.
        rows: u64,
    },
    /// The table's definition on the source ([`Event::Schema`]): a
    /// bootstrap follows when its columns changed, and rows of the new
    /// shape that `T` cannot take fail to convert, naming the column.
    Schema {
        /// `CREATE TABLE` as the source stores it; `None`: dropped.
        sql: Option<String>,
    },
}

fn image<T: Cdc>(columns: &[String], row: Option<&Row>, seq: i64, what: &str) -> Result<T> {
    let row = row.ok_or_else(|| Error::CorruptLog { seq, problem: format!("change has no {what} image") })?;
    T::from_named(columns, &row.values)
}

impl<T: Cdc> TryFrom<&Change> for TypedChange<T> {
    type Error = Error;

    fn try_from(c: &Change) -> Result<Self> {
        let (seq, time_ms) = (c.seq, c.time_ms);
        Ok(match c.op {
            Op::Insert => TypedChange::Insert { seq, time_ms, row: image(&c.columns, c.after.as_ref(), seq, "after")? },
            Op::Delete => {
                TypedChange::Delete { seq, time_ms, row: image(&c.columns, c.before.as_ref(), seq, "before")? }
            }
            Op::Update => TypedChange::Update {
                seq,
                time_ms,
                before: image(&c.columns, c.before.as_ref(), seq, "before")?,
                after: image(&c.columns, c.after.as_ref(), seq, "after")?,
            },
        })
    }
}

impl<T: Cdc> TryFrom<&Event> for TypedChange<T> {
    type Error = Error;

    fn try_from(e: &Event) -> Result<Self> {
        Ok(match e {
            Event::Change(c) => TypedChange::try_from(c)?,
            Event::BootstrapBegin { .. } => TypedChange::BootstrapBegin,
            Event::Bootstrap { columns, row, .. } => {
                TypedChange::Bootstrap { row: T::from_named(columns, &row.values)? }
            }
            Event::BootstrapEnd { rows, .. } => TypedChange::BootstrapEnd { rows: *rows },
            Event::Schema(s) => TypedChange::Schema { sql: s.sql.clone() },
        })
    }
}
