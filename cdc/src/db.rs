//! Opening a source database safely: never create it, recognise what is
//! not SQLite, wait for locks with a busy timeout, notice read-only files.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use rusqlite::Connection;
use rusqlite::{ErrorCode, OpenFlags};

use crate::error::{Error, Result};

/// How long a connection waits for another writer before failing.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Access a caller needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reading only (status, inspection): works on a file that cannot be written.
    ReadOnly,
    /// Installing capture or consuming (positions and pruning write to
    /// the file): a file that cannot be written is refused up front.
    ReadWrite,
}

/// Opens an existing SQLite file. A missing file is an error and is not
/// created; a non-SQLite file is reported as such; with
/// [`Access::ReadWrite`], a file that cannot be written is refused up front.
pub fn open(path: &Path, access: Access) -> Result<Connection> {
    if !path.is_file() {
        return Err(if path.exists() { Error::NotADatabase(path.into()) } else { Error::MissingFile(path.into()) });
    }
    if access == Access::ReadWrite && !writable(path) {
        return Err(Error::ReadOnly(path.into()));
    }
    // A look at a WAL file through a read-only connection leaves a `-wal`
    // and `-shm` behind (only a connection that may write removes them
    // as the last one out): where this user may write, a read-write
    // connection that refuses every change (`query_only`) reads instead.
    let query_only = access == Access::ReadOnly && writable(path);
    let mut flags = OpenFlags::SQLITE_OPEN_NO_MUTEX;
    flags |= match access {
        Access::ReadOnly if !query_only => OpenFlags::SQLITE_OPEN_READ_ONLY,
        _ => OpenFlags::SQLITE_OPEN_READ_WRITE,
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|e| classify(e, path))?;
    if query_only {
        conn.pragma_update(None, "query_only", true).map_err(|e| classify(e, path))?;
    }
    conn.busy_timeout(DEFAULT_BUSY_TIMEOUT)?;
    // Reading the schema is what fails on a file that is not SQLite.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)).map_err(|e| classify(e, path))?;
    if access == Access::ReadWrite && conn.is_readonly(rusqlite::MAIN_DB)? {
        return Err(Error::ReadOnly(path.into()));
    }
    Ok(conn)
}

/// Whether this process may write the existing file at `path`, asked
/// with access(2) before SQLite opens it (which would leave a `-wal` and
/// `-shm` beside a file it then cannot write). Never by opening the file:
/// closing any descriptor of a database file drops every POSIX lock this
/// process holds on it, SQLite's included.
pub(crate) fn writable(path: &Path) -> bool {
    !matches!(rustix::fs::access(path, rustix::fs::Access::WRITE_OK), Err(e) if e == rustix::io::Errno::ACCESS || e == rustix::io::Errno::ROFS)
}

/// Whether SQLite refused for a lock another connection holds.
pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked))
}

/// Turns SQLite's error codes into errors that name the file.
pub fn classify(err: rusqlite::Error, path: &Path) -> Error {
    match err.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => Error::NotADatabase(path.into()),
        Some(ErrorCode::DatabaseCorrupt) => Error::Corrupt(path.into()),
        _ if is_busy(&err) => Error::Locked { path: path.into(), waited_ms: DEFAULT_BUSY_TIMEOUT.as_millis() as u64 },
        Some(ErrorCode::ReadOnly) | Some(ErrorCode::CannotOpen) if path.exists() => Error::ReadOnly(path.into()),
        _ => Error::SqliteAt { path: path.into(), source: err },
    }
}

/// An error about the database at `path`: SQLite's own errors named and
/// classified ([`classify`]), others as they are.
pub fn named(e: Error, path: &Path) -> Error {
    match e {
        Error::Sqlite(e) => classify(e, path),
        other => other,
    }
}

/// The WAL file of the database at `path` (SQLite names it by appending
/// `-wal`).
pub fn wal_path(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    wal.into()
}

/// Whether the WAL of the database at `path` holds nothing: missing (no
/// connection open, or not in WAL mode) or empty (checkpointed away).
pub fn wal_is_empty(path: &Path) -> bool {
    std::fs::metadata(wal_path(path)).map_or(true, |m| m.len() == 0)
}

/// The file a connection has open, for error messages (`:memory:` when none).
pub fn path_of(conn: &Connection) -> PathBuf {
    conn.path().filter(|p| !p.is_empty()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(":memory:"))
}

/// A `file:` URI opening the database at `path` read only (`ATTACH`
/// takes a URI only on a connection opened with `SQLITE_OPEN_URI`). Every
/// byte but unreserved ones and `/` is percent-encoded, so a `?`, `#` or
/// `%` in a name stays part of it.
pub fn read_only_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    // `file:` then the path; an absolute one after an empty authority
    // (`file:///a`), so a path starting `//` is never taken for a host.
    const KEPT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    let encoded = percent_encoding::percent_encode(path.as_os_str().as_bytes(), KEPT);
    format!("{}{encoded}?mode=ro", if path.is_absolute() { "file://" } else { "file:" })
}

/// `path` as a file name that a connection opened with `SQLITE_OPEN_URI`
/// never takes for a URI (a relative name starting with `file:`).
pub fn not_a_uri(path: &Path) -> PathBuf {
    if path.as_os_str().as_encoded_bytes().starts_with(b"file:") { Path::new(".").join(path) } else { path.into() }
}

/// Whether the database is in WAL mode (recommended: readers never block
/// the application's writers).
pub fn is_wal(conn: &Connection) -> Result<bool> {
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    Ok(mode.eq_ignore_ascii_case("wal"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    #[test]
    fn read_only_uris_keep_every_byte_of_the_name() {
        let odd = Path::new(std::ffi::OsStr::from_bytes(b"/a b/?#%/\xff\xc3\xbc.db"));
        assert_eq!(super::read_only_uri(odd), "file:///a%20b/%3F%23%25/%FF%C3%BC.db?mode=ro");
        assert_eq!(super::read_only_uri(Path::new("//host/x.db")), "file:////host/x.db?mode=ro");
        assert_eq!(super::read_only_uri(Path::new("rel/x.db")), "file:rel/x.db?mode=ro");
        assert_eq!(super::not_a_uri(Path::new("file:x.db")), Path::new("./file:x.db"));
        assert_eq!(super::not_a_uri(Path::new("/file:x.db")), Path::new("/file:x.db"));
    }
}
