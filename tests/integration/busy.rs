//! Beside a busy application: the sidecar never exits because the
//! application holds the source's write lock, and it never makes the
//! application wait long for it.

use std::process::Command;
use std::time::Duration;

use crate::support::{Sidecar, TempDb, lines_with, wait_equal};

const DEADLINE: Duration = Duration::from_secs(120);

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
    let db = TempDb::with_schema("CREATE TABLE t(id INTEGER PRIMARY KEY, v);");
    db.install(&["t"]);
    let replica = db.dir.path().join("replica.db");
    let (src, t) = (db.path.to_str().unwrap().to_string(), format!("sqlite:{}", replica.display()));
    let mut sidecar = Sidecar::start(&["--db", &src, "--target", &t], &db.dir.path().join("sidecar.log"));
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
