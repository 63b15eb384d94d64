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
    pub rowid: Option<i64>,
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
    pub op: Op,
    /// When the write happened, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Before image: UPDATE and DELETE.
    pub before: Option<Row>,
    /// After image: INSERT and UPDATE.
    pub after: Option<Row>,
}

/// What a target receives: a change, or one of the three bootstrap events
/// that purge and reseed a table from a consistent snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    Change(Change),
    /// Purge what you hold for `table`; its rows follow.
    BootstrapBegin {
        table: Arc<str>,
        columns: Arc<[String]>,
    },
    /// One row of the snapshot.
    Bootstrap {
        table: Arc<str>,
        columns: Arc<[String]>,
        row: Row,
    },
    /// The snapshot of `table` is complete with `rows` rows.
    BootstrapEnd {
        table: Arc<str>,
        rows: u64,
        /// The table's `AUTOINCREMENT` counter (its `sqlite_sequence` entry)
        /// at the snapshot, when it has one: it may be above every id the
        /// table still holds, and a replica promoted to primary must never
        /// hand out an id the source already gave.
        sequence: Option<i64>,
    },
}

impl Event {
    /// The table the event is about.
    pub fn table(&self) -> &str {
        match self {
            Event::Change(c) => &c.table,
            Event::BootstrapBegin { table, .. }
            | Event::Bootstrap { table, .. }
            | Event::BootstrapEnd { table, .. } => table,
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TypedChange<T> {
    Insert { seq: i64, time_ms: i64, row: T },
    Update { seq: i64, time_ms: i64, before: T, after: T },
    Delete { seq: i64, time_ms: i64, row: T },
    BootstrapBegin,
    Bootstrap { row: T },
    BootstrapEnd { rows: u64 },
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
        })
    }
}
