//! The one error type of the `cdc` crate.

use std::path::PathBuf;

/// Everything that can go wrong in capture, delivery and targets. Every
/// message is one line that names the thing that is wrong.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite reported an error.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// An I/O error outside SQLite (target files, sockets).
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    /// The database file does not exist (it is never created).
    #[error("{}: no such file (it is not created; check the path)", .0.display())]
    MissingFile(PathBuf),
    /// The file exists but is not a SQLite database.
    #[error("{}: not a SQLite database", .0.display())]
    NotADatabase(PathBuf),
    /// The database (or its directory) cannot be written.
    #[error("{}: read-only (capture and replication need write access)", .0.display())]
    ReadOnly(PathBuf),
    /// The database stayed locked by another connection past the busy timeout.
    #[error("{}: database is locked by another connection (waited {waited_ms} ms)", .path.display())]
    Locked { path: PathBuf, waited_ms: u64 },
    /// No table of that name in the main schema.
    #[error("no table named {0:?}")]
    UnknownTable(String),
    /// SQLite forbids triggers on virtual tables.
    #[error(
        "table {0:?} is a virtual table; SQLite does not allow triggers on virtual tables, so it cannot be captured"
    )]
    VirtualTable(String),
    /// A view, a shadow table of a virtual table, or another non-table.
    #[error("{name:?} is a {kind}, not an ordinary table, and cannot be captured")]
    NotATable { name: String, kind: String },
    /// The table exists but capture is not installed on it.
    #[error("table {0:?} is not captured (attach it with: cdc-setup install --db PATH --table {0})")]
    NotCaptured(String),
    /// A table description that cannot be captured (see the message).
    #[error("{0}")]
    Schema(#[from] cdc_schema::SchemaError),
    /// A `#[derive(Cdc)]` struct does not match the live table.
    #[error("table {table:?} does not match struct {rust_type}: {}", .problems.join("; "))]
    StructMismatch { table: String, rust_type: &'static str, problems: Vec<String> },
    /// A replica table that does not match its source table.
    #[error("replica {}: table {table:?} is incompatible with the source: {}", .path.display(), .problems.join("; "))]
    ReplicaMismatch { path: PathBuf, table: String, problems: Vec<String> },
    /// A captured table was altered, renamed or dropped after install.
    #[error(
        "table {table:?} changed since capture was installed: {what}; re-attach it with: cdc-setup install --db {db} --table {table}"
    )]
    SchemaDrift { table: String, what: String, db: String },
    /// A TEXT value in the log is not valid UTF-8. It is refused rather
    /// than mangled.
    #[error("log row {seq} of table {table:?}: column {column:?} holds TEXT that is not valid UTF-8")]
    InvalidUtf8 { table: String, seq: i64, column: String },
    /// The log holds something this version cannot decode.
    #[error("log row {seq}: {problem}")]
    CorruptLog { seq: i64, problem: String },
    /// A value could not be converted to or from a Rust type.
    #[error("column {column:?}: {problem}")]
    Convert { column: String, problem: String },
    /// An invalid setting (signal, target string, batch size, ...).
    #[error("{0}")]
    Config(String),
    /// A target failed to apply or commit (after retries, when retried).
    #[error("target {target}: {message}")]
    Target { target: String, message: String },
    /// A JSON (de)serialisation error in the registry or a target.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
