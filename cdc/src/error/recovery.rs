//! How each error is recovered from, by what its variant means: waited
//! for, retried a few times, or the end of the run.

use super::Error;

/// What retrying can do about an error ([`Error::recovery`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Waiting helps (a lock, an outage, a full disk): retried without
    /// limit, said once when it starts and once when it ends.
    Wait,
    /// Not known either way (a custom target's own error, an SQLite error
    /// of no known kind): retried a bounded number of times.
    Retry,
    /// Retrying cannot help (a setting, a file, a schema, a refusal): the
    /// engine stops at once.
    Stop,
}

impl Error {
    /// How the engine recovers from this error, by what the variant means.
    pub fn recovery(&self) -> Recovery {
        use Recovery::{Retry, Stop, Wait};
        match self {
            Error::Sqlite(e) | Error::SqliteAt { source: e, .. } => sqlite_recovery(e),
            Error::Io { source, .. } => io_recovery(source),
            Error::SourceGone(_) | Error::NotReady(_) | Error::Locked { .. } | Error::Unavailable { .. } => Wait,
            Error::Target { .. } => Retry,
            Error::MissingFile(_)
            | Error::MissingFolder(_)
            | Error::NotADatabase(_)
            | Error::ReadOnly(_)
            | Error::UnknownTable(_)
            | Error::UnknownTables { .. }
            | Error::VirtualTable(_)
            | Error::NotATable { .. }
            | Error::NotCaptured(_)
            | Error::NotCapturedIn { .. }
            | Error::OldLogFormat(_)
            | Error::NothingCaptured(_)
            | Error::AlreadyRunning { .. }
            | Error::SourceIsTarget { .. }
            | Error::ReplicationLoop { .. }
            | Error::Rewound { .. }
            | Error::BootstrapNeeded { .. }
            | Error::BootstrapMiscount { .. }
            | Error::SchemaUnsettled { .. }
            | Error::ConsumersWaiting { .. }
            | Error::NoSuchConsumer { .. }
            | Error::MigrationOpen { .. }
            | Error::NoMigration(_)
            | Error::Corrupt(_)
            | Error::Schema(_)
            | Error::StructMismatch { .. }
            | Error::ReplicaMismatch { .. }
            | Error::ReplicaRefused { .. }
            | Error::ReplicaReplaced(_)
            | Error::PositionBackwards { .. }
            | Error::UnexpectedTable { .. }
            | Error::SchemaDrift { .. }
            | Error::InvalidUtf8 { .. }
            | Error::CorruptLog { .. }
            | Error::Convert { .. }
            | Error::InvalidSetting(_)
            | Error::Encode(_)
            | Error::Decode { .. }
            | Error::Watcher { .. }
            | Error::Rejected { .. }
            | Error::Unreachable { .. }
            | Error::StreamMissing { .. }
            | Error::Stream { .. }
            | Error::Unflushed(_)
            | Error::GaveUp { .. }
            | Error::Unusable { .. }
            | Error::Panicked(_)
            | Error::Internal(_)
            | Error::Json(_) => Stop,
        }
    }

    /// Whether waiting helps, so the engine retries without limit:
    /// [`Recovery::Wait`].
    pub fn is_transient(&self) -> bool {
        self.recovery() == Recovery::Wait
    }

    /// Whether retrying cannot help: [`Recovery::Stop`].
    pub fn is_permanent(&self) -> bool {
        self.recovery() == Recovery::Stop
    }

    /// Whether this is a database's lock held by another connection (the
    /// application's long transaction, a checkpoint), as opposed to a
    /// target's outage: said differently in the log, waited for longer.
    pub fn is_locked(&self) -> bool {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
        match self {
            Error::Locked { .. } => true,
            Error::Sqlite(e) | Error::SqliteAt { source: e, .. } => {
                matches!(e.sqlite_error_code(), Some(DatabaseBusy | DatabaseLocked))
            }
            _ => false,
        }
    }
}

fn sqlite_recovery(e: &rusqlite::Error) -> Recovery {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked, DiskFull, SystemIoFailure};
    match e.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked | SystemIoFailure | DiskFull) => Recovery::Wait,
        _ => Recovery::Retry,
    }
}

/// I/O errors that waiting can cure (a full disk being freed, a peer
/// restarting); a missing file or folder, a denied permission or a closed
/// pipe (`jsonl:-` into a reader that exited) cannot.
fn io_recovery(e: &std::io::Error) -> Recovery {
    use std::io::ErrorKind::*;
    if io_is_transient(e) {
        return Recovery::Wait;
    }
    match e.kind() {
        BrokenPipe | NotFound | PermissionDenied | ReadOnlyFilesystem | IsADirectory | NotADirectory | InvalidInput
        | Unsupported => Recovery::Stop,
        _ => Recovery::Retry,
    }
}

/// Whether waiting can cure an I/O error.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fix::Fix;
    use std::io::ErrorKind;

    fn io(kind: ErrorKind) -> Error {
        Error::Io { context: "x".into(), source: std::io::Error::from(kind) }
    }

    fn sqlite(code: i32) -> Error {
        Error::Sqlite(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None))
    }

    #[test]
    fn waiting_helps_with_locks_outages_and_full_disks() {
        for e in [
            Error::Locked { path: "a".into(), waited_ms: 5 },
            Error::SourceGone("a".into()),
            Error::NotReady(Box::new(Error::NothingCaptured("a".into()))),
            Error::Unavailable { target: "t".into(), message: "503".into() },
            io(ErrorKind::ConnectionRefused),
            io(ErrorKind::StorageFull),
            sqlite(rusqlite::ffi::SQLITE_BUSY),
            sqlite(rusqlite::ffi::SQLITE_FULL),
        ] {
            assert_eq!(e.recovery(), Recovery::Wait, "{e}");
            assert!(e.is_transient() && !e.is_permanent(), "{e}");
        }
        assert!(sqlite(rusqlite::ffi::SQLITE_LOCKED).is_locked());
        assert!(!Error::Unavailable { target: "t".into(), message: "m".into() }.is_locked());
    }

    #[test]
    fn what_no_retry_can_mend_stops_at_once() {
        for e in [
            Error::InvalidSetting("batch size must be at least 1".into()),
            Error::BootstrapMiscount { table: "t".into(), copied: 1, expected: 2 },
            Error::ReplicaReplaced("r".into()),
            Error::Encode("too large".into()),
            Error::Panicked("the replicator thread".into()),
            Error::Rejected { target: "t".into(), message: "HTTP 404".into() },
            Error::StreamMissing { stream: "s".into(), server: "n".into() },
            Error::Unflushed(Box::new(io(ErrorKind::Other))),
            io(ErrorKind::BrokenPipe),
            io(ErrorKind::PermissionDenied),
            Error::Corrupt("a".into()),
        ] {
            assert_eq!(e.recovery(), Recovery::Stop, "{e}");
            assert!(e.is_permanent() && !e.is_transient(), "{e}");
        }
    }

    #[test]
    fn errors_of_unknown_kind_are_retried_a_few_times() {
        for e in [
            Error::Target { target: "custom".into(), message: "injected".into() },
            sqlite(rusqlite::ffi::SQLITE_ERROR),
            io(ErrorKind::Other),
        ] {
            assert_eq!(e.recovery(), Recovery::Retry, "{e}");
            assert!(!e.is_permanent() && !e.is_transient(), "{e}");
        }
    }

    #[test]
    fn fixes_are_not_in_the_message() {
        let e = Error::NotCapturedIn { db: "app.db".into(), tables: vec!["t".into()] };
        assert_eq!(e.to_string(), "app.db: table \"t\" is not captured");
        assert_eq!(e.fix(), Some(Fix::Attach { db: "app.db".into(), tables: vec!["t".into()] }));
        assert!(e.with_fix().starts_with("app.db: table \"t\" is not captured; "));
        let gave_up = Error::GaveUp { attempts: 3, last: Box::new(Error::NothingCaptured("a".into())) };
        assert!(gave_up.fix().is_some());
    }
}
