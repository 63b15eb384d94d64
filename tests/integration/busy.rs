//! Beside a busy application: the sidecar never exits because the
//! application holds the source's write lock, and it never makes the
//! application wait long for it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::{Sidecar, TempDb, lines_with, wait_equal};

const DEADLINE: Duration = Duration::from_secs(120);

/// A source with table `t` captured (after `prepare` runs on it), and a
/// sidecar replicating it into `replica.db` beside it: the source, the
/// replica's path, the source's path as text, the sidecar.
fn replicated_t(prepare: &str) -> (TempDb, PathBuf, String, Sidecar) {
    let db = TempDb::with_schema("CREATE TABLE t(id INTEGER PRIMARY KEY, v);");
    if !prepare.is_empty() {
        crate::support::sqlite3(&db.path, prepare);
    }
    db.install(&["t"]);
    let replica = db.dir.path().join("replica.db");
    let src = db.path.to_str().unwrap().to_string();
    let target = format!("sqlite:{}", replica.display());
    let sidecar = Sidecar::start(&["--db", &src, "--target", &target], &db.dir.path().join("sidecar.log"));
    (db, replica, src, sidecar)
}

/// Back-to-back small write transactions, `BEGIN IMMEDIATE`, with the
/// given busy timeout; a refused `BEGIN` is counted and retried, as an
/// application would. Then one transaction held open for a while (a long
/// import). Prints the number of refusals.
const WRITER: &str = r#"
import sqlite3, sys, time
db, busy_ms, n, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
c = sqlite3.connect(db, timeout=busy_ms / 1000.0, isolation_level=None)
refused = 0
i = 0
while i < n:
    try:
        c.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as e:
        if "locked" not in str(e) and "busy" not in str(e):
            raise
        refused += 1
        continue
    c.execute("INSERT INTO t(v) VALUES(?)", (i,))
    c.execute("UPDATE t SET v = v + 1 WHERE id = (SELECT max(id) FROM t)")
    c.execute("COMMIT")
    i += 1
c.execute("BEGIN IMMEDIATE")
c.execute("INSERT INTO t(v) VALUES('held')")
time.sleep(hold)  # the application's own long transaction
c.execute("COMMIT")
print(refused)
"#;

#[test]
fn a_writer_holding_the_lock_never_makes_the_sidecar_exit() {
    let (db, replica, src, mut sidecar) = replicated_t("");
    // busy_timeout 0, then 100 ms and a transaction held for 6 s (longer
    // than the sidecar's own busy timeout).
    for (busy_ms, hold) in [("0", "0"), ("100", "6")] {
        let out = Command::new("python3").args(["-c", WRITER, &src, busy_ms, "3000", hold]).output().unwrap();
        assert!(out.status.success(), "writer: {}", String::from_utf8_lossy(&out.stderr));
        let refused = String::from_utf8_lossy(&out.stdout).trim().to_string();
        println!("busy_timeout {busy_ms} ms: the application's BEGIN was refused {refused} times");
        assert!(sidecar.running(), "the sidecar exited:\n{}", sidecar.log());
        wait_equal(&db.path, &replica, &["t"], DEADLINE);
    }
    let log = sidecar.log();
    assert!(lines_with(&log, "ERROR").is_empty(), "{log}");
}

/// Starts `python3 -c program args…` in the background.
fn spawn_python(program: &str, args: &[&str]) -> std::process::Child {
    Command::new("python3").args(["-c", program]).args(args).spawn().unwrap()
}

/// Waits for a background writer; it must succeed.
fn finish(child: std::process::Child, what: &str) {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{what} failed");
}

/// Small transactions for `secs` seconds, as an application with a 5 s
/// busy timeout writes them (refusals past it are rolled back and retried).
const STEADY: &str = r#"
import sqlite3, sys, time
db, secs = sys.argv[1], float(sys.argv[2])
c = sqlite3.connect(db, timeout=5, isolation_level=None)
end = time.monotonic() + secs
i = 0
while time.monotonic() < end:
    try:
        c.execute("BEGIN IMMEDIATE")
        c.execute("INSERT INTO t(v) VALUES(?)", (i,))
        c.execute("UPDATE t SET v = v || '+' WHERE id = (SELECT max(id) FROM t)")
        c.execute("COMMIT")
        i += 1
    except sqlite3.OperationalError as e:
        if "locked" not in str(e) and "busy" not in str(e):
            raise
        if c.in_transaction:
            c.execute("ROLLBACK")
    time.sleep(0.002)
"#;

/// A source in rollback-journal mode, where the application's
/// `BEGIN EXCLUSIVE` held for 60 s locks the sidecar out of reading too:
/// it waits, says so once when it starts and once when it ends, never
/// exits, and loses nothing written before, during or after.
#[test]
fn an_exclusive_transaction_held_a_minute_is_waited_out() {
    let (db, replica, src, mut sidecar) = replicated_t("PRAGMA journal_mode=DELETE;");
    crate::support::sqlite3(&db.path, "INSERT INTO t(v) VALUES('before');");
    wait_equal(&db.path, &replica, &["t"], DEADLINE);
    let held = spawn_python(
        r#"
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
c.execute("BEGIN EXCLUSIVE")
c.execute("INSERT INTO t(v) VALUES('during')")
print("held", flush=True)
time.sleep(60)
c.execute("COMMIT")
"#,
        &[&src],
    );
    wait_until_logged(&mut sidecar, "is locked by another connection");
    finish(held, "the long transaction");
    crate::support::sqlite3(&db.path, "INSERT INTO t(v) VALUES('after');");
    wait_equal(&db.path, &replica, &["t"], DEADLINE);
    // Said right after the commit that ended the wait.
    wait_until_logged(&mut sidecar, "free again");
    let log = sidecar.log();
    assert_eq!(lines_with(&log, "is locked by another connection").len(), 1, "said once: {log}");
    assert_eq!(lines_with(&log, "free again").len(), 1, "{log}");
    assert!(lines_with(&log, "ERROR").is_empty(), "{log}");
}

/// In WAL mode a write transaction held for 20 s, right after enough
/// changes to be worth freeing, delays nothing: the changes before it
/// reach the replica meanwhile, the sidecar neither waits for the lock
/// nor says anything about it (maintaining the log gives up on a taken
/// lock within milliseconds), and the log is freed once the transaction
/// has committed and the application pauses.
#[test]
fn a_write_transaction_held_long_delays_nothing() {
    let (db, replica, src, mut sidecar) = replicated_t("");
    let held = spawn_python(
        r#"
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
c.execute("BEGIN")
c.executemany("INSERT INTO t(v) VALUES(?)", [(i,) for i in range(12000)])
c.execute("COMMIT")
c.execute("BEGIN IMMEDIATE")
c.execute("INSERT INTO t(v) VALUES('during')")
time.sleep(20)
c.execute("COMMIT")
"#,
        &[&src],
    );
    let replicated = || {
        rusqlite::Connection::open(&replica)
            .and_then(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)))
            .unwrap_or(0)
    };
    crate::support::wait_until("the changes before the held transaction replicated", DEADLINE, || {
        replicated() == 12000
    });
    finish(held, "the long transaction");
    wait_equal(&db.path, &replica, &["t"], DEADLINE);
    crate::support::wait_until("the log freed once the lock is free", DEADLINE, || {
        cdc::capture::status(&db.conn()).unwrap().log_rows < 10
    });
    assert!(sidecar.running(), "{}", sidecar.log());
    let log = sidecar.log();
    assert!(lines_with(&log, "WARN").is_empty() && lines_with(&log, "ERROR").is_empty(), "{log}");
}

/// Another process checkpoints the source in a loop (`TRUNCATE`, which
/// waits for readers and blocks writers) while the application writes:
/// the sidecar neither exits nor loses a change.
#[test]
fn a_checkpoint_storm_is_ridden_out() {
    let (db, replica, src, mut sidecar) = replicated_t("");
    let storm = spawn_python(
        r#"
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], timeout=5, isolation_level=None)
end = time.monotonic() + float(sys.argv[2])
n = 0
while time.monotonic() < end:
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    n += 1
print(n, "checkpoints")
"#,
        &[&src, "20"],
    );
    let writer = spawn_python(STEADY, &[&src, "20"]);
    finish(writer, "the writer");
    finish(storm, "the checkpoint storm");
    wait_equal(&db.path, &replica, &["t"], DEADLINE);
    assert!(sidecar.running(), "{}", sidecar.log());
    let log = sidecar.log();
    assert!(lines_with(&log, "ERROR").is_empty(), "{log}");
}

/// A reader of the replica holds one snapshot for 20 s while the
/// application writes: the sidecar keeps applying (readers of a WAL
/// replica never block it), the reader's snapshot stays unchanged, and
/// the replica's `-wal` is checkpointed back once the reader is gone.
#[test]
fn a_long_reader_on_the_replica_does_not_stop_delivery() {
    let (db, replica, src, mut sidecar) = replicated_t("");
    crate::support::sqlite3(&db.path, "INSERT INTO t(v) VALUES('seed');");
    wait_equal(&db.path, &replica, &["t"], DEADLINE);
    let mut reader = Command::new("python3")
        .args([
            "-c",
            r#"
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN")
first = c.execute("SELECT count(*) FROM t").fetchone()[0]
print("snapshot", flush=True)
time.sleep(20)
assert c.execute("SELECT count(*) FROM t").fetchone()[0] == first, "the snapshot moved"
c.execute("COMMIT")
"#,
            replica.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = std::io::BufReader::new(reader.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "snapshot");
    let writer = spawn_python(STEADY, &[&src, "5"]);
    finish(writer, "the writer");
    // Delivered while the reader still holds its snapshot.
    wait_equal(&db.path, &replica, &["t"], DEADLINE);
    assert!(reader.wait().unwrap().success(), "the replica's reader failed");
    crate::support::sqlite3(&db.path, "INSERT INTO t(v) VALUES('after the reader');");
    wait_equal(&db.path, &replica, &["t"], DEADLINE);
    assert!(sidecar.running(), "{}", sidecar.log());
    let log = sidecar.log();
    assert!(lines_with(&log, "ERROR").is_empty(), "{log}");
}

/// Waits until the sidecar's log says `needle`.
fn wait_until_logged(sidecar: &mut Sidecar, needle: &str) {
    crate::support::wait_until(&format!("the sidecar logs {needle:?}"), DEADLINE, || sidecar.log().contains(needle));
    assert!(sidecar.running(), "{}", sidecar.log());
}
