//! An application that gets no error alone gets none beside the sidecar.
//! Each kind of foreign writer (Python's `sqlite3`, its own process) runs
//! the same workload twice, alone and beside a running `replicator` with
//! default settings, counting the transactions SQLite refused: first a
//! steady paced stream (the sidecar only reads), then bursts of 6 000
//! transactions with pauses, in which the sidecar frees the log (its only
//! writes to the source) and the writer checks that it did.

use std::process::Command;
use std::time::Duration;

use crate::support::{Sidecar, TempDb, lines_with, wait_equal};

const DEADLINE: Duration = Duration::from_secs(120);

/// The writer: `kind` is `immediate` (`BEGIN IMMEDIATE`, INSERT, UPDATE)
/// or `deferred` (`BEGIN`, a SELECT, then the INSERT and an UPDATE of what
/// it read, as ORMs do: refused at once, whatever the busy timeout, when
/// another connection holds the write lock or committed since its read);
/// `busy_ms` its busy timeout. A refused transaction is rolled back,
/// counted and retried. Prints the refusals and the log's lowest `seq`
/// at the end (above 1: the log was freed while it ran).
const WRITER: &str = r#"
import sqlite3, sys, time
db, kind, busy_ms, steady_secs, bursts, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
c = sqlite3.connect(db, timeout=busy_ms / 1000, isolation_level=None)
c.execute(f"PRAGMA busy_timeout={busy_ms}")
refused, i = 0, 0
def one():
    global refused, i
    while True:
        try:
            k = i % 10 + 1
            if kind == "deferred":
                c.execute("BEGIN")
                n = c.execute("SELECT n FROM counters WHERE id = ?", (k,)).fetchone()[0]
                c.execute("INSERT INTO events(payload) VALUES(?)", ("x" * 40,))
                c.execute("UPDATE counters SET n = ? WHERE id = ?", (n + 1, k))
            else:
                c.execute("BEGIN IMMEDIATE")
                c.execute("INSERT INTO events(payload) VALUES(?)", ("x" * 40,))
                c.execute("UPDATE counters SET n = n + 1 WHERE id = ?", (k,))
            c.execute("COMMIT")
            i += 1
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            refused += 1
            if c.in_transaction:
                c.execute("ROLLBACK")
            time.sleep(0.001)
end = time.monotonic() + steady_secs
while time.monotonic() < end:
    one()
    time.sleep(0.001)
for _ in range(bursts):
    for _ in range(6000):
        one()
    time.sleep(pause)
low = c.execute("SELECT min(seq) FROM _cdc_log").fetchone()[0]
print(refused, low)
"#;

/// Runs the writer on a fresh source, beside a sidecar or alone: the
/// refusals it counted and the log's lowest `seq` when it ended.
fn run(kind: &str, busy_ms: &str, beside: bool) -> (u64, i64) {
    let db = TempDb::with_schema(
        "CREATE TABLE events(id INTEGER PRIMARY KEY, payload TEXT);
         CREATE TABLE counters(id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
         WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 10)
         INSERT INTO counters SELECT i, 0 FROM k;",
    );
    db.install(&["events", "counters"]);
    let src = db.path.to_str().unwrap().to_string();
    let replica = db.dir.path().join("replica.db");
    let mut sidecar = beside.then(|| {
        let target = format!("sqlite:{}", replica.display());
        let sidecar = Sidecar::start(&["--db", &src, "--target", &target], &db.dir.path().join("sidecar.log"));
        // Caught up (bootstrapped) before the application starts.
        wait_equal(&db.path, &replica, &["events", "counters"], DEADLINE);
        sidecar
    });
    let out = Command::new("python3").args(["-c", WRITER, &src, kind, busy_ms, "4", "2", "3"]).output().unwrap();
    assert!(out.status.success(), "writer: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace().map(|f| f.parse::<i64>().unwrap());
    let (refused, low) = (fields.next().unwrap() as u64, fields.next().unwrap());
    if let Some(sidecar) = sidecar.as_mut() {
        wait_equal(&db.path, &replica, &["events", "counters"], DEADLINE);
        assert!(sidecar.running(), "{}", sidecar.log());
        let log = sidecar.log();
        assert!(lines_with(&log, "WARN").is_empty() && lines_with(&log, "ERROR").is_empty(), "{log}");
    }
    (refused, low)
}

/// Alone, then beside the sidecar: no more refusals beside it than alone
/// (none: a single writer never conflicts with itself), and the log was
/// freed while it ran.
fn no_refusal_beside_the_sidecar(kind: &str, busy_ms: &str) {
    let (alone, _) = run(kind, busy_ms, false);
    let (beside, low) = run(kind, busy_ms, true);
    println!("{kind}, busy timeout {busy_ms} ms: refused {alone} alone, {beside} beside the sidecar");
    assert_eq!(alone, 0, "{kind}: refused alone");
    assert_eq!(beside, 0, "{kind}, busy timeout {busy_ms} ms: refused beside the sidecar, {alone} alone");
    assert!(low > 1, "{kind}: the sidecar freed the log in the writer's pauses (lowest seq {low})");
}

#[test]
fn an_immediate_writer_with_pythons_default_timeout_is_never_refused() {
    no_refusal_beside_the_sidecar("immediate", "5000");
}

#[test]
fn a_deferred_read_then_write_writer_is_never_refused() {
    no_refusal_beside_the_sidecar("deferred", "5000");
}

#[test]
fn a_writer_without_busy_timeout_is_never_refused() {
    no_refusal_beside_the_sidecar("immediate", "0");
}
