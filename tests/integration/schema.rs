//! Schema evolution end to end, against a running `replicator`: every DDL
//! an application or its ORM runs, with capture installed. With
//! `--follow-schema` the replica follows by itself; without it, the table
//! stops with one line whose printed command, run word for word, resumes
//! it. Each step ends with the replica equal to the source, value by value,
//! and with the same tables and indexes.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{Sidecar, TempDb, bin, lines_with, run_bin, sqlite3, wait_equal, wait_until};

const DEADLINE: Duration = Duration::from_secs(120);

fn target(replica: &Path) -> String {
    format!("sqlite:{}", replica.display())
}

/// The application's tables of a database (no `_cdc_`, no `sqlite_`).
pub fn app_tables(path: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_cdc\\_%' ESCAPE '\\' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        )
        .unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// The schema of the application's tables and their explicit indexes:
/// what a replica must hold to accept exactly the rows the source can.
fn app_schema(path: &Path) -> Vec<(String, String)> {
    let Ok(conn) = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return Vec::new();
    };
    let _ = conn.busy_timeout(Duration::from_secs(10));
    let Ok(mut stmt) = conn.prepare(
        "SELECT name, sql FROM sqlite_master WHERE type IN ('table', 'index') AND sql IS NOT NULL \
             AND name NOT LIKE '\\_cdc\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    ) else {
        return Vec::new();
    };
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_or_else(|_| Vec::new(), |rows| rows.filter_map(Result::ok).collect())
}

/// Waits until the replica has the source's tables, indexes and rows.
pub fn wait_converged(source: &Path, replica: &Path, step: &str) {
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        let (a, b) = (app_schema(source), app_schema(replica));
        let tables = app_tables(source);
        let names: Vec<&str> = tables.iter().map(String::as_str).collect();
        if a == b && crate::support::difference(source, replica, &names).is_none() {
            return;
        }
        assert!(
            std::time::Instant::now() < end,
            "{step}: the replica did not converge within {DEADLINE:?}\nsource:  {a:?}\nreplica: {b:?}\nrows: {:?}",
            crate::support::difference(source, replica, &names)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a command line through `sh` with this package's binaries first on
/// `PATH`, as an operator would paste it; asserts it succeeds.
pub fn run_printed(command: &str) -> String {
    let dir = bin("cdc-setup").parent().unwrap().to_path_buf();
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("sh").args(["-c", command]).env("PATH", path).output().unwrap();
    assert!(out.status.success(), "{command}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn shop() -> TempDb {
    let db = TempDb::with_schema(
        "CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, qty INTEGER);
         CREATE TABLE note(body TEXT, at REAL);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50)
         INSERT INTO item SELECT i, 'item ' || i, i % 7 FROM n;
         INSERT INTO note VALUES('hello', 1.5), ('hello', 1.5), (NULL, x'00');",
    );
    db.install(&["item", "note"]);
    db
}

#[test]
fn every_ddl_is_followed_with_follow_schema() {
    let db = shop();
    let replica = db.dir.path().join("replica.db");
    let (src, t) = (db.path.to_str().unwrap().to_string(), target(&replica));
    let mut sidecar = Sidecar::start(
        &["--db", &src, "--target", &t, "--follow-schema", "--poll-interval", "100ms"],
        &db.dir.path().join("sidecar.log"),
    );
    wait_converged(&db.path, &replica, "first bootstrap");
    let steps: &[(&str, &str)] = &[
        (
            "ADD COLUMN, and writes to it",
            "ALTER TABLE item ADD COLUMN price REAL DEFAULT 0; UPDATE item SET price = id * 1.5 WHERE id % 2 = 0;
             INSERT INTO item VALUES(100, 'new', 1, 2.5);",
        ),
        ("RENAME COLUMN", "ALTER TABLE item RENAME COLUMN qty TO quantity; UPDATE item SET quantity = quantity + 1;"),
        (
            "CREATE UNIQUE INDEX, then INSERT OR REPLACE evicting through it",
            "CREATE UNIQUE INDEX item_name ON item(name); INSERT OR REPLACE INTO item(id, name) VALUES(500, 'new');",
        ),
        ("CREATE INDEX (plain, partial, on an expression)", "CREATE INDEX item_q ON item(quantity) WHERE quantity > 2;
            CREATE INDEX item_lower ON item(lower(name));"),
        ("DROP INDEX, then values it forbade", "DROP INDEX item_name; INSERT INTO item(id, name) VALUES(600, 'dup'), (601, 'dup');"),
        ("CREATE TABLE", "CREATE TABLE tag(id INTEGER PRIMARY KEY, label TEXT UNIQUE); INSERT INTO tag VALUES(1, 'a'), (2, 'b');"),
        ("RENAME TABLE", "ALTER TABLE tag RENAME TO label; INSERT INTO label VALUES(3, 'c'); UPDATE label SET label = 'B' WHERE id = 2;"),
        (
            "a table remade as ORMs do (create, copy, drop, rename)",
            "BEGIN; CREATE TABLE item_new(id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT '', quantity INTEGER CHECK (quantity >= 0), price REAL);
             INSERT INTO item_new SELECT id, coalesce(name, ''), quantity, price FROM item;
             DROP TABLE item; ALTER TABLE item_new RENAME TO item; COMMIT;
             INSERT INTO item VALUES(700, 'after remake', 3, 9.75); DELETE FROM item WHERE id < 5;",
        ),
        ("VACUUM", "VACUUM; UPDATE note SET at = 2.5 WHERE body IS NULL;"),
        ("DROP TABLE", "DROP TABLE note;"),
    ];
    for (step, sql) in steps {
        sqlite3(&db.path, sql);
        wait_converged(&db.path, &replica, step);
        assert!(sidecar.running(), "{step}: the sidecar stopped:\n{}", sidecar.log());
    }
    // DROP COLUMN: refused by SQLite itself while a capture trigger names
    // the column; the documented path pauses capture around it.
    let refused = Command::new("sqlite3").args([&src, "ALTER TABLE item DROP COLUMN price"]).output().unwrap();
    assert!(!refused.status.success());
    let out =
        run_printed(&format!("cdc-setup migrate --db {src} -- sqlite3 {src} 'ALTER TABLE item DROP COLUMN price'"));
    assert!(out.contains("capture attached again to \"item\""), "{out}");
    sqlite3(&db.path, "INSERT INTO item(id, name, quantity) VALUES(800, 'no price', 1);");
    wait_converged(&db.path, &replica, "DROP COLUMN through cdc-setup migrate");
    assert!(sidecar.running(), "{}", sidecar.log());
    let log = sidecar.log();
    assert!(lines_with(&log, "ERROR").is_empty(), "{log}");
}

#[test]
fn without_follow_schema_the_table_stops_and_the_printed_command_resumes_it() {
    let db = shop();
    let replica = db.dir.path().join("replica.db");
    let (src, t) = (db.path.to_str().unwrap().to_string(), target(&replica));
    let log = db.dir.path().join("sidecar.log");
    let mut sidecar = Sidecar::start(&["--db", &src, "--target", &t, "--poll-interval", "100ms"], &log);
    wait_converged(&db.path, &replica, "first bootstrap");
    sqlite3(&db.path, "ALTER TABLE item ADD COLUMN price REAL; UPDATE item SET price = 0.5 WHERE id < 10;");
    // note keeps flowing meanwhile.
    sqlite3(&db.path, "INSERT INTO note VALUES('still flowing', 3);");
    let mut line = String::new();
    wait_until("the halt line", DEADLINE, || {
        line = lines_with(&sidecar.log(), "Resume it").first().map(|l| l.to_string()).unwrap_or_default();
        !line.is_empty()
    });
    assert!(line.contains("column \"price\" was added"), "{line}");
    wait_equal(&db.path, &replica, &["note"], DEADLINE);
    assert!(sidecar.running());
    // `replicator --once` says the same and exits non-zero.
    let (code, _, err) = run_bin("replicator", &["--db", &src, "--target", "jsonl:-", "--once"]);
    assert_eq!(code, 1);
    assert!(err.contains("column \"price\" was added"), "{err}");
    // The printed command, word for word.
    let command = line.split("with: ").nth(1).unwrap().trim();
    run_printed(command);
    wait_converged(&db.path, &replica, "after the printed fix");

    // A table dropped: its line says how to stop capturing it.
    sqlite3(&db.path, "DROP TABLE note; INSERT INTO item(id, name) VALUES(900, 'later');");
    let mut line = String::new();
    wait_until("the gone line", DEADLINE, || {
        line = lines_with(&sidecar.log(), "Stop capturing it").first().map(|l| l.to_string()).unwrap_or_default();
        !line.is_empty()
    });
    wait_equal(&db.path, &replica, &["item"], DEADLINE);
    run_printed(line.split("with: ").nth(1).unwrap().trim());
    sqlite3(&db.path, "INSERT INTO item(id, name) VALUES(901, 'still');");
    wait_equal(&db.path, &replica, &["item"], DEADLINE);
    assert!(sidecar.running(), "{}", sidecar.log());
}
