//! The one error type of the `cdc` crate, and how each error is recovered
//! from ([`Recovery`], in [`recovery`]): decided by what the variant means,
//! never by its text.

mod recovery;

pub use recovery::Recovery;
pub(crate) use recovery::io_is_transient;

use std::path::PathBuf;

use crate::fix::{Fix, names};

/// Everything that can go wrong in capture, delivery and targets. Every
/// message is one line that names the thing that is wrong; what to do
/// about it, where the library knows, is [`Error::fix`].
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
        /// The operating system's error; its kind decides the [`Recovery`].
        source: std::io::Error,
    },
    /// The database file does not exist (it is never created).
    #[error("{}: no such file (it is not created; check the path)", .0.display())]
    MissingFile(PathBuf),
    /// A target's folder does not exist (a target file is created, its
    /// folder never is).
    #[error("target folder {} does not exist", .0.display())]
    MissingFolder(PathBuf),
    /// The source file vanished from its path while the replicator ran
    /// (deleted, or moved away in the middle of a replacement):
    /// transient, waited for, and reopened when a file is back.
    #[error("{}: the source file is gone from its path; waiting for it to come back", .0.display())]
    SourceGone(PathBuf),
    /// The file moved into place under the source's path lacks capture of
    /// the followed tables (restored, and not yet attached): transient,
    /// waited for. It says what is missing.
    #[error("the file now at the source's path is not ready ({0}); waiting")]
    NotReady(Box<Error>),
    /// The source or the replica cannot be used (not a database,
    /// read-only, damaged): the error says which of the two it is.
    #[error("the {role} {inner}")]
    Unusable {
        /// `source` or `replica`.
        role: &'static str,
        /// What is wrong with it.
        inner: Box<Error>,
    },
    /// The file exists but is not a SQLite database.
    #[error("{}: not a SQLite database", .0.display())]
    NotADatabase(PathBuf),
    /// The database (or its directory) cannot be written.
    #[error("{}: read-only for this user (capture and replication need write access to it and its folder)", .0.display())]
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
    #[error("{}: no table{} named {}", .db.display(), if .tables.len() == 1 { "" } else { "s" }, names(.tables))]
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
    /// Tables of a database that exist but are not captured.
    #[error(
        "{}: {} not captured",
        .db.display(),
        if .tables.len() == 1 { format!("table {:?} is", .tables[0]) } else { format!("tables {} are", names(.tables)) }
    )]
    NotCapturedIn {
        /// The database.
        db: PathBuf,
        /// The tables that need capture attached.
        tables: Vec<String>,
    },
    /// The file's log was written by an older version (format 1), which
    /// this version reads only once upgraded, in place.
    #[error("{}: capture was installed by an older version (log format 1)", .0.display())]
    OldLogFormat(PathBuf),
    /// The database has no captured table at all.
    #[error("{}: no table is captured", .0.display())]
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
    /// A target file that is the source database itself.
    #[error(
        "target {} is the source database {} itself{}; a replica must be another file",
        .target.display(),
        .db.display(),
        if crate::lock::resolved(.target) == crate::lock::resolved(.db) { "" } else { " (through another path)" }
    )]
    SourceIsTarget {
        /// The source database.
        db: PathBuf,
        /// The target, as given.
        target: PathBuf,
    },
    /// A replica that is captured itself, fed by a source that is a
    /// replica of it: replicating back would loop.
    #[error(
        "replica {} is captured, and the source {} is itself a replica of it: replicating back would loop",
        .replica.display(),
        .from.display()
    )]
    ReplicationLoop {
        /// The replica.
        replica: PathBuf,
        /// The source.
        from: PathBuf,
    },
    /// The source's log is not the one the target followed (a restored
    /// backup, another database) and the policy is to stop.
    #[error("{what}; stopped as asked (rewind policy: stop)")]
    Rewound {
        /// The source database.
        db: PathBuf,
        /// How the log differs from the one the target followed.
        what: String,
    },
    /// A table needs a bootstrap and bootstrapping is off.
    #[error("{}{why}, and bootstrap is off (never)", .table.as_ref().map_or(String::new(), |t| format!("table {t:?}: ")))]
    BootstrapNeeded {
        /// The table, when one table needs it.
        table: Option<String>,
        /// Why it needs one.
        why: String,
    },
    /// A bootstrap copied by the target wrote another number of rows than
    /// the snapshot holds (a trigger on the replica's table skipping rows?):
    /// nothing was committed.
    #[error(
        "bootstrap of table {table:?} wrote {copied} rows into the replica where the source has {expected} \
         (a trigger on the replica's table skipping rows?); nothing was committed"
    )]
    BootstrapMiscount {
        /// The table.
        table: String,
        /// Rows the target copied.
        copied: u64,
        /// Rows in the snapshot.
        expected: u64,
    },
    /// The source's schema kept changing under the engine.
    #[error("{}: {what}, {tries} times in a row; stopping", .db.display())]
    SchemaUnsettled {
        /// The source database.
        db: PathBuf,
        /// What moved.
        what: String,
        /// How many times in a row.
        tries: u32,
    },
    /// Uninstalling would drop the log while consumers still wait for changes.
    #[error(
        "{}: {} unacknowledged changes ({}); uninstalling drops the log",
        .db.display(),
        if .consumers.len() == 1 { "1 consumer has".to_string() } else { format!("{} consumers have", .consumers.len()) },
        .consumers.iter().map(|(n, k)| format!("{n:?}: {k}")).collect::<Vec<_>>().join(", ")
    )]
    ConsumersWaiting {
        /// The database that was to be uninstalled.
        db: PathBuf,
        /// Each waiting consumer's name and its number of unacknowledged changes.
        consumers: Vec<(String, i64)>,
    },
    /// No consumer of that name.
    #[error("{}: no consumer named {name:?}", .db.display())]
    NoSuchConsumer {
        /// The database.
        db: PathBuf,
        /// The name asked for.
        name: String,
    },
    /// A migration window is open already.
    #[error("{}: a migration window is already open (since {since})", .db.display())]
    MigrationOpen {
        /// The database.
        db: PathBuf,
        /// When it opened.
        since: String,
    },
    /// No migration window is open.
    #[error("{}: no migration window is open", .0.display())]
    NoMigration(PathBuf),
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
    /// The replica file was deleted or replaced while in use.
    #[error("replica {} was deleted or replaced while in use; it is rebuilt when replication starts again", .0.display())]
    ReplicaReplaced(PathBuf),
    /// A commit would move a table's position back (never done but by a
    /// reseed of that table).
    #[error("replica {}: refusing to move table {table:?} back from seq {from} to seq {to}", .path.display())]
    PositionBackwards {
        /// The replica file.
        path: PathBuf,
        /// The table.
        table: String,
        /// The position it holds.
        from: i64,
        /// The position it was to be given.
        to: i64,
    },
    /// An event for a table the target was not opened with.
    #[error("{target}: event for unknown table {table:?}")]
    UnexpectedTable {
        /// The target.
        target: String,
        /// The table the event names.
        table: String,
    },
    /// A captured table was altered, renamed or dropped after install.
    #[error("table {table:?} changed since capture was installed: {what}")]
    SchemaDrift {
        /// The captured table.
        table: String,
        /// What changed (columns added, types changed, the table dropped, ...).
        what: String,
        /// The database.
        db: PathBuf,
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
    /// A setting given by the caller is invalid (a target string, a mode
    /// name, a batch size, an address): the message says which and why.
    #[error("{0}")]
    InvalidSetting(String),
    /// An event could not be encoded (bincode), or is too large for its frame.
    #[error("encoding an event: {0}")]
    Encode(String),
    /// Stored events (a bincode frame, JSON) that cannot be decoded.
    #[error("{what}: {message}")]
    Decode {
        /// What was read (`bincode frame at byte 40`, `event JSON`).
        what: String,
        /// What is wrong with it.
        message: String,
    },
    /// The file watcher could not start.
    #[error("file watcher on {}: {message}", .path.display())]
    Watcher {
        /// The folder watched.
        path: PathBuf,
        /// What the watcher said.
        message: String,
    },
    /// A target failed to apply or commit, in its own words (a custom
    /// target's error): retried a bounded number of times.
    #[error("target {target}: {message}")]
    Target {
        /// The target, as it may be shown (credentials redacted).
        target: String,
        /// What went wrong.
        message: String,
    },
    /// A target refused what it was sent, and sending it again cannot help
    /// (an HTTP 4xx answer, a TLS failure, a host that does not exist).
    #[error("target {target}: {message}")]
    Rejected {
        /// The target, as it may be shown (credentials redacted).
        target: String,
        /// Why, with what to check.
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
    /// A server that could not be reached when starting (once started,
    /// an outage is [`Error::Unavailable`]).
    #[error("cannot reach {server}: {message}")]
    Unreachable {
        /// The server, as it may be shown (credentials redacted).
        server: String,
        /// What the client said.
        message: String,
    },
    /// A stream that does not exist (yet).
    #[error("stream {stream:?} does not exist on {server}")]
    StreamMissing {
        /// The stream.
        stream: String,
        /// The server, credentials redacted.
        server: String,
    },
    /// A stream that cannot be followed or published to as it is: unfit
    /// settings, messages lost by the server or removed by retention, a
    /// stream deleted and made again, foreign messages.
    #[error("stream {stream:?}: {problem}")]
    Stream {
        /// The stream.
        stream: String,
        /// What is wrong, in one line.
        problem: String,
        /// What to do about it, where known.
        fix: Option<Fix>,
    },
    /// A flush of the target failed: the engine stops without
    /// acknowledging what may not be on disk (after a failed fsync the
    /// next one may report success with the data lost).
    #[error("flushing the target: {0}; stopping without acknowledging what may not be on disk")]
    Unflushed(Box<Error>),
    /// A target failure retried as often as [`crate::Retry::attempts`] allows.
    #[error("{last} (gave up after {attempts} attempts; nothing undelivered was acknowledged)")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: Box<Error>,
    },
    /// A thread of the library panicked.
    #[error("{0} panicked")]
    Panicked(String),
    /// Something this library relies on did not hold (a bug): the message
    /// says what.
    #[error("internal error: {0}")]
    Internal(String),
    /// A JSON (de)serialisation error in the registry or a target.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// What to do about it, where the library knows.
    pub fn fix(&self) -> Option<Fix> {
        match self {
            Error::NotCapturedIn { db, tables } => Some(Fix::Attach { db: db.clone(), tables: tables.clone() }),
            Error::NothingCaptured(db) => Some(Fix::Attach { db: db.clone(), tables: Vec::new() }),
            Error::OldLogFormat(db) => Some(Fix::Upgrade { db: db.clone() }),
            Error::SchemaDrift { table, db, .. } => Some(Fix::Reattach { db: db.clone(), table: table.clone() }),
            Error::Rewound { .. } => Some(Fix::Reseed),
            Error::BootstrapNeeded { .. } => Some(Fix::AllowBootstrap),
            Error::ConsumersWaiting { db, .. } => Some(Fix::RemoveConsumers { db: db.clone() }),
            Error::MigrationOpen { db, .. } => Some(Fix::FinishMigration { db: db.clone() }),
            Error::Stream { fix, .. } => fix.clone(),
            Error::ReplicaReplaced(_) => Some(Fix::Restart),
            Error::NotReady(inner) => inner.fix(),
            Error::GaveUp { last, .. } | Error::Unusable { inner: last, .. } => last.fix(),
            _ => None,
        }
    }

    /// The message and, where the library knows one, the fix: one line.
    pub fn with_fix(&self) -> String {
        match self.fix() {
            Some(fix) => format!("{self}; {fix}"),
            None => self.to_string(),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
