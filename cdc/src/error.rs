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
    /// SQLite reported an error about a known file.
    #[error("{}: {source}", .path.display())]
    SqliteAt {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// An I/O error outside SQLite (target files, sockets).
    #[error("{context}: {source}")]
    Io {
        /// The file or the operation that failed, as the message starts.
        context: String,
        /// The operating system's error; its kind decides whether
        /// [`Error::is_transient`].
        source: std::io::Error,
    },
    /// The database file does not exist (it is never created).
    #[error("{}: no such file (it is not created; check the path)", .0.display())]
    MissingFile(PathBuf),
    /// The source file vanished from its path while the replicator ran
    /// (deleted, or moved away in the middle of a replacement):
    /// transient, waited for, and reopened when a file is back.
    #[error("{}: the source file is gone from its path; waiting for it to come back", .0.display())]
    SourceGone(PathBuf),
    /// The file moved into place under the source's path lacks capture of
    /// the followed tables (restored, and not yet `cdc-setup install`ed):
    /// transient, waited for. The message says what is missing and the
    /// command that attaches it.
    #[error("the file now at the source's path is not ready: {0}; waiting")]
    NotReady(Box<Error>),
    /// The file exists but is not a SQLite database.
    #[error("{}: not a SQLite database", .0.display())]
    NotADatabase(PathBuf),
    /// The database (or its directory) cannot be written.
    #[error("{}: read-only (capture and replication need write access)", .0.display())]
    ReadOnly(PathBuf),
    /// The database stayed locked by another connection past the busy timeout.
    #[error("{}: database is locked by another connection (waited {waited_ms} ms)", .path.display())]
    Locked {
        /// The locked database.
        path: PathBuf,
        /// How long the busy timeout waited before giving up.
        waited_ms: u64,
    },
    /// No table of that name in the main schema.
    #[error("no table named {0:?}")]
    UnknownTable(String),
    /// Several names that are not tables of the database, listed together.
    #[error("{}: no table{} named {}", .db.display(), if .tables.len() == 1 { "" } else { "s" }, quoted(.tables))]
    UnknownTables {
        /// The database that was searched.
        db: PathBuf,
        /// The names that matched no table, as given.
        tables: Vec<String>,
    },
    /// SQLite forbids triggers on virtual tables.
    #[error(
        "table {0:?} is a virtual table; SQLite does not allow triggers on virtual tables, so it cannot be captured"
    )]
    VirtualTable(String),
    /// A view, a shadow table of a virtual table, or another non-table.
    #[error("{name:?} is a {kind}, not an ordinary table, and cannot be captured")]
    NotATable {
        /// The object's name.
        name: String,
        /// What it is instead (`view`, `shadow table of a virtual table`, ...).
        kind: String,
    },
    /// The table exists but capture is not installed on it.
    #[error("table {0:?} is not captured")]
    NotCaptured(String),
    /// Tables of a database that exist but are not captured, with the
    /// command that attaches them.
    #[error(
        "{}: {} not captured (attach {} with: cdc-setup install --db {}{})",
        .db.display(),
        if .tables.len() == 1 { format!("table {:?} is", .tables[0]) } else { format!("tables {} are", quoted(.tables)) },
        if .tables.len() == 1 { "it" } else { "them" },
        shell_word(&.db.display().to_string()),
        .tables.iter().map(|t| format!(" --table {}", shell_word(t))).collect::<String>()
    )]
    NotCapturedIn {
        /// The database, as the command to paste names it.
        db: PathBuf,
        /// The tables that need capture attached.
        tables: Vec<String>,
    },
    /// The file's log was written by an older version (format 1), which
    /// this version reads only once upgraded, in place.
    #[error(
        "{}: capture was installed by an older version (log format 1); upgrade it in place (nothing is lost, no consumer starts over) with: cdc-setup install --db {}",
        .0.display(),
        shell_word(&.0.display().to_string())
    )]
    OldLogFormat(PathBuf),
    /// The database has no captured table at all.
    #[error("{}: no table is captured (attach capture with: cdc-setup install --db {} --all)", .0.display(), shell_word(&.0.display().to_string()))]
    NothingCaptured(PathBuf),
    /// Another live process already replicates this consumer or target.
    #[error(
        "{what} is already in use by {} (lock {}); stop that process first",
        .pid.map_or("another process".to_string(), |p| format!("process {p}")),
        .lock.display()
    )]
    AlreadyRunning {
        /// What is in use: the consumer or the target, as the message names it.
        what: String,
        /// The process holding the lock, when its lock file names it.
        pid: Option<u32>,
        /// The lock file; the kernel frees the lock when its holder dies, so
        /// it is never stale and must not be deleted to get past this.
        lock: PathBuf,
    },
    /// The source's log is not the one the target followed (a restored
    /// backup, another database) and the policy is to stop.
    #[error(
        "{what}; stopped as asked (--on-rewind stop): to reseed the target from this source, run again with --on-rewind reseed"
    )]
    Rewound {
        /// The source database.
        db: PathBuf,
        /// How the log differs from the one the target followed.
        what: String,
    },
    /// Uninstalling would drop the log while consumers still wait for changes.
    #[error(
        "{}: {} unacknowledged changes ({}); uninstalling drops the log: let them catch up, remove them with cdc-setup consumers --db {} --remove NAME, or pass --force",
        .db.display(),
        if .consumers.len() == 1 { "1 consumer has".to_string() } else { format!("{} consumers have", .consumers.len()) },
        .consumers.iter().map(|(n, k)| format!("{n:?}: {k}")).collect::<Vec<_>>().join(", "),
        shell_word(&.db.display().to_string())
    )]
    ConsumersWaiting {
        /// The database that was to be uninstalled.
        db: PathBuf,
        /// Each waiting consumer's name and its number of unacknowledged changes.
        consumers: Vec<(String, i64)>,
    },
    /// SQLite found the file damaged.
    #[error("{}: the database file is damaged (SQLite: database disk image is malformed); restore it from a backup", .0.display())]
    Corrupt(PathBuf),
    /// A table description that cannot be captured (see the message).
    #[error("{0}")]
    Schema(#[from] cdc_schema::SchemaError),
    /// A `#[derive(Cdc)]` struct does not match the live table.
    #[error("table {table:?} does not match struct {rust_type}: {}", .problems.join("; "))]
    StructMismatch {
        /// The live table.
        table: String,
        /// The struct's name ([`Cdc::RUST_TYPE`](crate::Cdc::RUST_TYPE)).
        rust_type: &'static str,
        /// One line per difference, each saying how to fix it.
        problems: Vec<String>,
    },
    /// A replica table that does not match its source table.
    #[error("replica {}: table {table:?} is incompatible with the source: {}", .path.display(), .problems.join("; "))]
    ReplicaMismatch {
        /// The replica file.
        path: PathBuf,
        /// The table that does not match.
        table: String,
        /// One line per difference.
        problems: Vec<String>,
    },
    /// A replica refused to apply a change or a snapshot row of one table
    /// (a constraint the source did not enforce when it stored the row, a
    /// schema the replica cannot hold): that table is reseeded.
    #[error("replica {}: table {table:?} refused a change: {message}", .path.display())]
    ReplicaRefused {
        /// The replica file.
        path: PathBuf,
        /// The table that is reseeded.
        table: String,
        /// SQLite's reason.
        message: String,
    },
    /// A captured table was altered, renamed or dropped after install.
    #[error(
        "table {table:?} changed since capture was installed: {what}; re-attach it with: cdc-setup install --db {} --table {}",
        shell_word(.db),
        shell_word(.table)
    )]
    SchemaDrift {
        /// The captured table.
        table: String,
        /// What changed (columns added, types changed, the table dropped, ...).
        what: String,
        /// The database, as the `cdc-setup install` command in the message names it.
        db: String,
    },
    /// A TEXT value in the log is not valid UTF-8. It is refused rather
    /// than mangled.
    #[error("log row {seq} of table {table:?}: column {column:?} holds TEXT that is not valid UTF-8")]
    InvalidUtf8 {
        /// The table the change is about.
        table: String,
        /// The log row (the change's position).
        seq: i64,
        /// The column holding the value.
        column: String,
    },
    /// The log holds something this version cannot decode.
    #[error("log row {seq}: {problem}")]
    CorruptLog {
        /// The log row that cannot be decoded.
        seq: i64,
        /// What is wrong with it.
        problem: String,
    },
    /// A value could not be converted to or from a Rust type.
    #[error("column {column:?}: {problem}")]
    Convert {
        /// The column (or struct field's column) being converted.
        column: String,
        /// Why the value does not fit (its storage class, its range, ...).
        problem: String,
    },
    /// An invalid setting (signal, target string, batch size, ...).
    #[error("{0}")]
    Config(String),
    /// A target failed to apply or commit (after retries, when retried).
    #[error("target {target}: {message}")]
    Target {
        /// The target, as it may be shown (credentials redacted).
        target: String,
        /// What went wrong.
        message: String,
    },
    /// A target that cannot be reached for now (a timeout, a refused
    /// connection, a 5xx answer): transient, retried without limit.
    #[error("target {target} is unavailable: {message}")]
    Unavailable {
        /// The target, as it may be shown (credentials redacted).
        target: String,
        /// Why it could not be reached (the timeout, the HTTP status, ...).
        message: String,
    },
    /// A JSON (de)serialisation error in the registry or a target.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// Whether waiting helps, so the engine retries without limit: another
    /// connection holds a database's lock (busy, locked), a short I/O
    /// error or a full disk, a target that cannot be reached for now.
    pub fn is_transient(&self) -> bool {
        use rusqlite::ErrorCode::{DiskFull, SystemIoFailure};
        self.is_locked()
            || match self {
                Error::Unavailable { .. } | Error::SourceGone(_) | Error::NotReady(_) => true,
                Error::Sqlite(e) | Error::SqliteAt { source: e, .. } => {
                    matches!(e.sqlite_error_code(), Some(SystemIoFailure | DiskFull))
                }
                Error::Io { source, .. } => io_is_transient(source),
                _ => false,
            }
    }

    /// Whether this is the source's lock held by another connection (the
    /// application's long transaction, a checkpoint), as opposed to a
    /// target's outage: said differently in the log.
    pub(crate) fn is_locked(&self) -> bool {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
        match self {
            Error::Locked { .. } => true,
            Error::Sqlite(e) | Error::SqliteAt { source: e, .. } => {
                matches!(e.sqlite_error_code(), Some(DatabaseBusy | DatabaseLocked))
            }
            _ => false,
        }
    }

    /// Whether retrying cannot help (bad configuration, a replica that
    /// cannot follow): the engine stops at once instead of retrying.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Error::Config(_)
                | Error::ReplicaMismatch { .. }
                | Error::ReplicaRefused { .. }
                | Error::Schema(_)
                | Error::AlreadyRunning { .. }
                | Error::NotADatabase(_)
                | Error::Corrupt(_)
                | Error::ReadOnly(_)
                | Error::OldLogFormat(_)
        )
    }
}

/// I/O errors that waiting can cure (a full disk being freed, a peer
/// restarting); a missing folder, a denied permission or a closed pipe
/// (`jsonl:-` into a reader that exited) cannot.
pub(crate) fn io_is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        Interrupted
            | TimedOut
            | WouldBlock
            | ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | NotConnected
            | UnexpectedEof
            | StorageFull
            | ResourceBusy
            | HostUnreachable
            | NetworkUnreachable
            | NetworkDown
    )
}

/// Names joined for a message: `"a", "b"`.
fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
}

/// `text` as one shell word, quoted only when it must be, so that a fix
/// printed in a message works when pasted into a shell.
pub fn shell_word(text: &str) -> String {
    let plain = !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./:@%+=,".contains(&b));
    if plain { text.to_string() } else { format!("'{}'", text.replace('\'', "'\\''")) }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
