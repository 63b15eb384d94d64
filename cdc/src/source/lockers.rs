//! Whether another process is inside a transaction on the source, read
//! from the kernel's table of file locks (`/proc/locks`, Linux).
//!
//! Why: SQLite refuses an application's deferred transaction at once,
//! whatever its busy timeout, when it tries to write while another
//! connection holds the write lock, or after another connection committed
//! since it read (`SQLITE_BUSY_SNAPSHOT`). So the sidecar's maintenance
//! commit must fall between the application's transactions, not inside
//! one. SQLite cannot tell one connection about another's transaction, but
//! its locks can: in WAL mode a transaction holds one of the WAL index's
//! read locks (bytes 123 to 127 of the `-shm` file) and a writer its write
//! lock (byte 120); in rollback-journal mode a reader holds a shared lock
//! on the database file's lock bytes (from 2^30). Those are POSIX locks,
//! listed with the holder's pid: the sidecar's own are left out.
//!
//! Best effort: `None` where the table cannot be read (not Linux, a
//! restricted `/proc`), and an application in the sidecar's own process
//! (the library embedded) is not seen.

use std::path::Path;

/// Bytes of the `-shm` file locked by a WAL transaction: the write lock
/// (120) and the five read locks (123 to 127).
const WAL_WRITE: u64 = 120;
const WAL_READ: (u64, u64) = (123, 127);
/// The database file's lock bytes in rollback-journal mode: pending,
/// reserved and the shared range (SQLite's `PENDING_BYTE` and after).
const DB_LOCKS: (u64, u64) = (0x4000_0000, 0x4000_0000 + 511);

/// Whether another process holds a lock showing a transaction on the
/// database at `db` (`wal`: the database is in WAL mode). `None`: cannot
/// tell.
pub(crate) fn others_in_transaction(db: &Path, wal: bool) -> Option<bool> {
    let table = std::fs::read_to_string("/proc/locks").ok()?;
    let (file, ranges): (_, &[(u64, u64)]) = if wal {
        let mut shm = db.as_os_str().to_owned();
        shm.push("-shm");
        (std::path::PathBuf::from(shm), &[(WAL_WRITE, WAL_WRITE), WAL_READ])
    } else {
        (db.to_path_buf(), &[DB_LOCKS])
    };
    let id = FileKey::of(&file)?;
    let me = std::process::id() as i64;
    Some(
        table
            .lines()
            .filter_map(Lock::parse)
            .any(|l| l.pid != me && l.file.is(&id) && ranges.iter().any(|r| l.overlaps(*r))),
    )
}

/// A file as `/proc/locks` names it: device (major, minor) and inode.
#[derive(Debug, PartialEq, Eq)]
struct FileKey {
    device: Option<(u64, u64)>,
    inode: u64,
}

impl FileKey {
    #[cfg(unix)]
    fn of(path: &Path) -> Option<FileKey> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        let dev = meta.dev();
        // glibc's encoding of a device number (`gnu_dev_major`/`minor`).
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
        let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
        Some(FileKey { device: Some((major, minor)), inode: meta.ino() })
    }

    #[cfg(not(unix))]
    fn of(_: &Path) -> Option<FileKey> {
        None
    }

    /// The same file (a device the kernel prints in a way not parsed
    /// matches by inode alone: a false match only defers maintenance).
    fn is(&self, other: &FileKey) -> bool {
        self.inode == other.inode && (self.device.is_none() || other.device.is_none() || self.device == other.device)
    }
}

/// One line of `/proc/locks`: `1: POSIX  ADVISORY  READ 4242 fe:00:1234 123 123`
/// (`->` after the number marks a waiter, which holds nothing).
#[derive(Debug, PartialEq, Eq)]
struct Lock {
    pid: i64,
    file: FileKey,
    start: u64,
    end: u64,
}

impl Lock {
    fn parse(line: &str) -> Option<Lock> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&"->") || fields.len() < 8 {
            return None;
        }
        if !matches!(fields[1], "POSIX" | "OFDLCK") {
            return None;
        }
        let mut id = fields[5].rsplitn(2, ':');
        let inode = id.next()?.parse().ok()?;
        let device = id.next().and_then(|d| {
            let (major, minor) = d.split_once(':')?;
            Some((u64::from_str_radix(major, 16).ok()?, u64::from_str_radix(minor, 16).ok()?))
        });
        let end = if fields[7] == "EOF" { u64::MAX } else { fields[7].parse().ok()? };
        Some(Lock {
            pid: fields[4].parse().ok()?,
            file: FileKey { device, inode },
            start: fields[6].parse().ok()?,
            end,
        })
    }

    fn overlaps(&self, (first, last): (u64, u64)) -> bool {
        self.start <= last && first <= self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_the_kernel_table_are_read() {
        let l = Lock::parse("3: POSIX  ADVISORY  READ 18429 fe:00:10010678 123 123").unwrap();
        assert_eq!(
            l,
            Lock { pid: 18429, file: FileKey { device: Some((0xfe, 0)), inode: 10010678 }, start: 123, end: 123 }
        );
        assert!(l.overlaps(WAL_READ) && !l.overlaps((WAL_WRITE, WAL_WRITE)));
        let ofd = Lock::parse("9: OFDLCK ADVISORY  WRITE -1 08:01:77 0 EOF").unwrap();
        assert_eq!((ofd.pid, ofd.end), (-1, u64::MAX));
        assert_eq!(Lock::parse("1: -> POSIX  ADVISORY  WRITE 4242 fe:00:1 120 120"), None, "a waiter holds nothing");
        assert_eq!(Lock::parse("2: FLOCK  ADVISORY  WRITE 4242 fe:00:1 0 EOF"), None, "flock is not SQLite's");
        assert_eq!(Lock::parse("garbage"), None);
    }

    /// Another process (Python's `sqlite3`) inside a transaction is seen;
    /// once it commits, it is not; this process's own is never counted.
    #[cfg(target_os = "linux")]
    #[test]
    fn another_process_in_a_transaction_is_seen() {
        use std::io::{BufRead, BufReader, Write};
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES(1);").unwrap();
        let program = "import sqlite3, sys\n\
            c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
            for line in sys.stdin:\n    c.execute(line.strip()).fetchall()\n    print('ok', flush=True)\n";
        let mut child = std::process::Command::new("python3")
            .args(["-c", program, db.to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut say = |sql: &str| {
            writeln!(stdin, "{sql}").unwrap();
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            assert_eq!(line.trim(), "ok", "{sql}");
        };
        say("SELECT count(*) FROM t");
        assert_eq!(others_in_transaction(&db, true), Some(false), "connected, between transactions");
        say("BEGIN");
        say("SELECT count(*) FROM t");
        assert_eq!(others_in_transaction(&db, true), Some(true), "reading");
        say("INSERT INTO t VALUES(2)");
        assert_eq!(others_in_transaction(&db, true), Some(true), "writing");
        say("COMMIT");
        assert_eq!(others_in_transaction(&db, true), Some(false), "committed");
        // This process's own transaction is not another's.
        conn.execute_batch("BEGIN").unwrap();
        conn.query_row("SELECT count(*) FROM t", [], |_| Ok(())).unwrap();
        assert_eq!(others_in_transaction(&db, true), Some(false));
        conn.execute_batch("COMMIT").unwrap();
        drop(stdin);
        child.wait().unwrap();
    }
}
