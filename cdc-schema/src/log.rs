//! The log's layout and the DDL of the internal `_cdc_` tables.
//!
//! One log row holds a header (`seq`, and `kind`: the capture id and the
//! operation in one integer) and up to [`CHUNK_WIDTH`] values in untyped
//! columns `v0..v11`. Untyped columns have no affinity, so every value
//! keeps its storage class bit for bit (INTEGER, REAL, TEXT, BLOB, NULL).
//! A change whose values do not fit continues in the following rows,
//! written by the same trigger and so given the next `seq`s; continuation
//! rows have `kind = 0`.
//!
//! Why so narrow, and no write time: a trigger's cost follows the number
//! of columns of the table it inserts into (SQLite sets a register for
//! every column and sizes the trigger's frame by them), and any function
//! call in a trigger (`julianday('now')`) makes every statement of the
//! application that fires it open a statement journal inside a
//! transaction. Measured with callgrind (the capture bench's instruction
//! counts): the 36-column format 1 cost 1.2-1.6x kevinconway/sqlite-cdc's
//! JSON triggers per narrow row, this one 0.5-0.75x (ARCHITECTURE.md).

use crate::ident::quote_ident;

/// Values per log row. 12 fits an UPDATE of a table of up to five
/// columns (and its rowid) in one row; wider ones spill. Past about 12
/// the trigger's frame no longer fits SQLite's lookaside slot (1200 bytes)
/// and every statement pays a `malloc` for it.
pub const CHUNK_WIDTH: usize = 12;

/// Changes to the log format change every capture id, so old and new
/// triggers can never be confused.
pub const FORMAT_VERSION: &str = "cdc-log-2";

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
    /// The operation's code in a row's `kind`.
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

/// The operation code of a marker row that `cdc-setup install` writes when
/// it attaches (or re-attaches) capture to a table: changes of that table
/// before it may be missing from the log. Readers skip markers.
pub const MARKER_OP: i64 = 4;

/// Bits of `kind` that hold the operation code.
const OP_BITS: u32 = 3;

/// A row's `kind`: capture id `tid` and operation code `op` in one
/// integer (`tid * 8 + op`), one column fewer for every captured write.
/// Capture ids have 44 bits, so a kind is a 6-byte integer on disk.
pub const fn kind(tid: i64, op: i64) -> i64 {
    (tid << OP_BITS) | op
}

/// The capture id and the operation code of a row's `kind`.
pub const fn split_kind(kind: i64) -> (i64, i64) {
    (kind >> OP_BITS, kind & ((1 << OP_BITS) - 1))
}

/// SQL condition on the `kind` column that selects the rows starting a
/// change (neither continuations nor markers).
pub const IS_CHANGE: &str = "(kind & 7) BETWEEN 1 AND 3";

/// SQL expression: the capture id of a row (0 for continuation rows).
pub const TID_OF_KIND: &str = "(kind >> 3)";

/// Name of value column `i` of the log.
pub fn value_column(i: usize) -> String {
    format!("v{i}")
}

/// `CREATE TABLE` of the log. No constraint and no declared type on the
/// values: a NOT NULL (or any function in a trigger) would make SQLite
/// open a statement journal for every application statement that logs.
pub fn create_log_sql() -> String {
    let values: Vec<String> = (0..CHUNK_WIDTH).map(value_column).collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {}(seq INTEGER PRIMARY KEY, kind INTEGER, {})",
        quote_ident(LOG_TABLE),
        values.join(", ")
    )
}

/// DDL for the internal tables, each `IF NOT EXISTS` so install is idempotent.
///
/// `seq` is an `INTEGER PRIMARY KEY` without `AUTOINCREMENT` (which cost
/// about 20% per write). SQLite hands out `max(seq) + 1`, so `seq` is never
/// reused as long as the newest row is never deleted: pruning always keeps
/// it (see `cdc::log::prune`).
pub fn internal_ddl() -> Vec<String> {
    vec![
        create_log_sql(),
        format!(
            "CREATE TABLE IF NOT EXISTS {}(tid INTEGER PRIMARY KEY, name TEXT NOT NULL, fingerprint TEXT NOT NULL, description TEXT NOT NULL, active INTEGER NOT NULL, installed_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, reread INTEGER NOT NULL DEFAULT 0)",
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

/// DDL that removes the internal tables, the log's sealed segments
/// (`segments`, their names) included.
pub fn drop_internal_ddl(segments: &[String]) -> Vec<String> {
    [LOG_TABLE, crate::legacy::LOG_TABLE, TABLES_TABLE, CONSUMERS_TABLE, META_TABLE]
        .iter()
        .copied()
        .chain(segments.iter().map(String::as_str))
        .map(|t| format!("DROP TABLE IF EXISTS {}", quote_ident(t)))
        .collect()
}

/// The prefix of a sealed segment's name: `_cdc_log_seg_` and its first
/// `seq`, zero-padded, so names sort as the segments do. A segment is the
/// log table as it was when sealed (renamed whole, no row copied); the
/// triggers go on writing into a new `_cdc_log`. Dropping a segment every
/// consumer is past frees its rows at once, in one short transaction.
pub const SEGMENT_PREFIX: &str = "_cdc_log_seg_";

/// The name a segment whose first row is `first` is sealed under.
pub fn segment_table(first: i64) -> String {
    format!("{SEGMENT_PREFIX}{:020}", first.max(0))
}

/// Whether `name` is a sealed segment's.
pub fn is_segment(name: &str) -> bool {
    name.strip_prefix(SEGMENT_PREFIX).is_some_and(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Reads the rows of log table `table` (the current one or a sealed
/// segment) after position `?1` up to `?2` inclusive, in `seq` order.
/// Callers stream the rows and stop when their batch is full.
pub fn read_sql(table: &str) -> String {
    let values: Vec<String> = (0..CHUNK_WIDTH).map(value_column).collect();
    format!(
        "SELECT seq, kind, {} FROM {} WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
        values.join(", "),
        quote_ident(table)
    )
}

/// Seals the current log: renames it to `segment` (run with `PRAGMA
/// legacy_alter_table=ON`, so the triggers' bodies keep naming `_cdc_log`
/// and write into the one created next, [`create_log_sql`]).
pub fn seal_sql(segment: &str) -> String {
    format!("ALTER TABLE {} RENAME TO {}", quote_ident(LOG_TABLE), quote_ident(segment))
}

/// `INSERT` of a marker row for capture id `?1` (see [`MARKER_OP`]).
pub fn insert_marker_sql() -> String {
    format!("INSERT INTO {}(kind) VALUES((?1 << 3) | {MARKER_OP})", quote_ident(LOG_TABLE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_as_their_rows() {
        let (a, b) = (segment_table(9), segment_table(10));
        assert!(a < b && is_segment(&a) && is_segment(&b));
        assert!(!is_segment(LOG_TABLE) && !is_segment(crate::legacy::LOG_TABLE) && !is_segment("_cdc_log_seg_1"));
    }

    #[test]
    fn kinds_hold_the_capture_id_and_the_operation() {
        let tid = (1 << 44) - 1;
        for op in 0..=MARKER_OP {
            assert_eq!(split_kind(kind(tid, op)), (tid, op));
        }
        // A 6-byte integer on disk: below 2^47.
        assert!(kind(tid, MARKER_OP) < 1 << 47);
        assert_eq!(split_kind(0), (0, 0));
    }
}
