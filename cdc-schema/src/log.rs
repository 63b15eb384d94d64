//! The log's layout and the DDL of the internal `_cdc_` tables.
//!
//! One log row holds a header (`seq`, capture id `tid`, operation `op`,
//! write time `ts` as a Julian day) and up to [`CHUNK_WIDTH`] values in
//! untyped columns `v0..v31`. Untyped columns have no affinity, so every
//! value keeps its storage class bit for bit (INTEGER, REAL, TEXT, BLOB,
//! NULL). A change whose values do not fit (a wide table's UPDATE carries
//! two full images) continues in the following rows, written by the same
//! trigger and so given the next `seq`s; continuation rows have `op = 0`.
//!
//! Why 32: SQLite stores a byte for every column of a row, NULL or not, so
//! a wide log taxes every narrow change. Measured with the sqlite3 shell,
//! 300 000 captured inserts into a 6-column table: no capture 0.30 s,
//! 16 columns 0.72 s, 32 columns 0.76 s, 64 columns 1.20 s (ARCHITECTURE.md).

use crate::ident::quote_ident;

/// Values per log row.
pub const CHUNK_WIDTH: usize = 32;

/// Changes to the log format change every capture id, so old and new
/// triggers can never be confused.
pub const FORMAT_VERSION: &str = "cdc-log-1";

/// The shared log table.
pub const LOG_TABLE: &str = "_cdc_log";
/// Registry of captured table layouts (one row per capture id).
pub const TABLES_TABLE: &str = "_cdc_tables";
/// Durable consumer positions.
pub const CONSUMERS_TABLE: &str = "_cdc_consumers";
/// Facts about the log itself; `log_id` is a random id made when the log
/// is created, so a position stored elsewhere (in a replica) is never
/// applied to a different log whose `seq` started again.
pub const META_TABLE: &str = "_cdc_meta";

/// What a log row records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// A row was inserted: the change has an after image only.
    Insert,
    /// A row was updated: before and after images.
    Update,
    /// A row was deleted: a before image only.
    Delete,
}

impl Op {
    /// The code stored in the `op` column.
    pub const fn code(self) -> i64 {
        match self {
            Op::Insert => 1,
            Op::Update => 2,
            Op::Delete => 3,
        }
    }

    /// Inverse of [`Op::code`]; `None` for continuation rows (0) and
    /// anything unknown.
    pub const fn from_code(code: i64) -> Option<Op> {
        match code {
            1 => Some(Op::Insert),
            2 => Some(Op::Update),
            3 => Some(Op::Delete),
            _ => None,
        }
    }

    /// `INSERT`, `UPDATE` or `DELETE`.
    pub const fn keyword(self) -> &'static str {
        match self {
            Op::Insert => "INSERT",
            Op::Update => "UPDATE",
            Op::Delete => "DELETE",
        }
    }

    /// All three, in trigger order.
    pub const ALL: [Op; 3] = [Op::Insert, Op::Update, Op::Delete];
}

/// The `op` of a marker row that `cdc-setup install` writes when it
/// attaches (or re-attaches) capture to a table: changes of that table
/// before it may be missing from the log. Readers skip markers.
pub const MARKER_OP: i64 = 4;

/// SQL condition on the `op` column that selects the rows starting a
/// change (neither continuations nor markers).
pub const IS_CHANGE: &str = "op BETWEEN 1 AND 3";

/// Name of value column `i` of the log.
pub fn value_column(i: usize) -> String {
    format!("v{i}")
}

/// DDL for the internal tables, each `IF NOT EXISTS` so install is idempotent.
///
/// `seq` is an `INTEGER PRIMARY KEY` without `AUTOINCREMENT` (which cost
/// about 20% per write). SQLite hands out `max(seq) + 1`, so `seq` is never
/// reused as long as the newest row is never deleted: pruning always keeps
/// it (see `cdc::log::prune`).
pub fn internal_ddl() -> Vec<String> {
    let values: Vec<String> = (0..CHUNK_WIDTH).map(value_column).collect();
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {}(seq INTEGER PRIMARY KEY, tid INTEGER, op INTEGER NOT NULL, ts REAL, {})",
            quote_ident(LOG_TABLE),
            values.join(", ")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {}(tid INTEGER PRIMARY KEY, name TEXT NOT NULL, fingerprint TEXT NOT NULL, description TEXT NOT NULL, active INTEGER NOT NULL, installed_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
            quote_ident(TABLES_TABLE)
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {}(name TEXT PRIMARY KEY, position INTEGER NOT NULL, updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, state TEXT)",
            quote_ident(CONSUMERS_TABLE)
        ),
        format!("CREATE TABLE IF NOT EXISTS {}(key TEXT PRIMARY KEY, value)", quote_ident(META_TABLE)),
        format!(
            "INSERT OR IGNORE INTO {}(key, value) VALUES('log_id', lower(hex(randomblob(16))))",
            quote_ident(META_TABLE)
        ),
    ]
}

/// DDL that removes the internal tables.
pub fn drop_internal_ddl() -> Vec<String> {
    [LOG_TABLE, TABLES_TABLE, CONSUMERS_TABLE, META_TABLE]
        .iter()
        .map(|t| format!("DROP TABLE IF EXISTS {}", quote_ident(t)))
        .collect()
}

/// Reads the log rows after position `?1` up to `?2` inclusive, in `seq`
/// order. Callers stream the rows and stop when their batch is full.
pub fn read_sql() -> String {
    let values: Vec<String> = (0..CHUNK_WIDTH).map(value_column).collect();
    format!(
        "SELECT seq, tid, op, ts, {} FROM {} WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
        values.join(", "),
        quote_ident(LOG_TABLE)
    )
}
