//! Exact apply whatever the application does: its own triggers (created
//! before or after capture, TEMP ones, BEFORE and AFTER, with and without
//! `recursive_triggers`), constraints the source did not enforce, and
//! AUTOINCREMENT counters. Writers are the sqlite3 shell and Python, each
//! in its own process; every test ends in an exact comparison.

use std::path::Path;

use crate::support::{TempDb, assert_equal, python, run_bin, sqlite3};

fn target(replica: &Path) -> String {
    format!("sqlite:{}", replica.display())
}

/// `replicator --db SRC --target sqlite:REPLICA --once [extra]`, asserted to succeed.
fn once(db: &TempDb, replica: &Path, extra: &[&str]) -> String {
    let t = target(replica);
    let args = [&["--db", db.path.to_str().unwrap(), "--target", &t, "--once"][..], extra].concat();
    let (code, _, err) = run_bin("replicator", &args);
    assert_eq!(code, 0, "replicator failed: {err}");
    err
}

const BLOG: [&str; 3] = ["post", "counter", "audit"];

#[test]
fn application_triggers_in_any_order_leave_the_replica_equal() {
    // One application trigger exists before capture is installed (it fires
    // after the capture triggers); a migration adds the others later (they
    // fire before them): a slug filled into the row just inserted, a touch
    // of the row just updated, a delete of the row just inserted, a key
    // change of the row just updated, counters in another captured table,
    // an audit trail into a table without any key, a BEFORE trigger.
    let db = TempDb::with_schema(
        "CREATE TABLE post(id INTEGER PRIMARY KEY, title TEXT, slug TEXT, updated INTEGER DEFAULT 0, rev INTEGER DEFAULT 0);
         CREATE UNIQUE INDEX post_title ON post(title);
         CREATE TABLE counter(name TEXT PRIMARY KEY, n INTEGER) WITHOUT ROWID;
         CREATE TABLE audit(post_id, what);
         INSERT INTO counter VALUES('posts', 0), ('updates', 0);
         CREATE TRIGGER count_posts AFTER INSERT ON post BEGIN
           UPDATE counter SET n = n + 1 WHERE name = 'posts'; END;
         INSERT INTO post(id, title) VALUES(1, 'first post'), (2, 'second post');",
    );
    db.install(&BLOG);
    let replica = db.dir.path().join("replica.db");
    once(&db, &replica, &[]);
    assert_equal(&db.path, &replica, &BLOG);

    sqlite3(
        &db.path,
        "CREATE TRIGGER slug AFTER INSERT ON post BEGIN
           UPDATE post SET slug = lower(replace(NEW.title, ' ', '-')) WHERE id = NEW.id; END;
         CREATE TRIGGER touch AFTER UPDATE OF title ON post BEGIN
           UPDATE post SET updated = updated + 1, rev = rev + 1 WHERE id = NEW.id;
           UPDATE counter SET n = n + 1 WHERE name = 'updates'; END;
         CREATE TRIGGER spam AFTER INSERT ON post WHEN NEW.title LIKE 'spam%' BEGIN
           DELETE FROM post WHERE id = NEW.id; END;
         CREATE TRIGGER rekey AFTER UPDATE OF title ON post WHEN NEW.title LIKE 'move%' BEGIN
           UPDATE post SET id = id + 1000 WHERE id = NEW.id; END;
         CREATE TRIGGER vanish AFTER UPDATE OF title ON post WHEN NEW.title LIKE 'gone%' BEGIN
           DELETE FROM post WHERE id = NEW.id; END;
         CREATE TRIGGER uncount AFTER DELETE ON post BEGIN
           UPDATE counter SET n = n - 1 WHERE name = 'posts'; END;
         CREATE TRIGGER trail BEFORE DELETE ON post BEGIN
           INSERT INTO audit VALUES(OLD.id, 'deleting ' || OLD.title); END;",
    );
    // The shell, recursive_triggers off (the default).
    sqlite3(
        &db.path,
        "BEGIN;
         INSERT INTO post(id, title) VALUES(3, 'Hello World'), (4, 'spam offer'), (5, 'Another One');
         UPDATE post SET title = 'Hello Again' WHERE id = 3;
         UPDATE post SET title = 'move me' WHERE id = 5;
         UPDATE post SET title = 'gone now' WHERE id = 2;
         INSERT OR REPLACE INTO post(id, title) VALUES(6, 'first post');
         INSERT INTO post(id, title) VALUES(3, 'Upserted') ON CONFLICT(id) DO UPDATE SET title = excluded.title;
         INSERT INTO post(id, title) VALUES(7, 'spam upsert') ON CONFLICT(id) DO UPDATE SET title = excluded.title;
         COMMIT;",
    );
    once(&db, &replica, &[]);
    assert_equal(&db.path, &replica, &BLOG);

    // Python, recursive_triggers on, with a TEMP trigger of its own.
    python(
        &db.path,
        r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA recursive_triggers = ON")
c.execute("""CREATE TEMP TRIGGER bang AFTER UPDATE OF title ON main.post BEGIN
               UPDATE post SET slug = coalesce(slug, '') || '!' WHERE id = NEW.id; END""")
c.execute("BEGIN")
for i in range(10, 40):
    c.execute("INSERT INTO post(id, title) VALUES(?, ?)", (i, "Post %d" % i))
for i in range(10, 40, 3):
    c.execute("UPDATE post SET title = ? WHERE id = ?", ("Edited %d" % i, i))
c.execute("UPDATE post SET title = 'move again' WHERE id = 11")
c.execute("UPDATE post SET title = 'gone again' WHERE id = 12")
c.execute("INSERT OR REPLACE INTO post(id, title) VALUES(500, 'Post 14')")
c.execute("INSERT INTO post(id, title) VALUES(15, 'spam late') ON CONFLICT(id) DO UPDATE SET title = excluded.title")
c.execute("DELETE FROM post WHERE id % 5 = 0")
c.execute("COMMIT")
"#,
    );
    once(&db, &replica, &[]);
    assert_equal(&db.path, &replica, &BLOG);
    // The replica holds the application's rows, not its triggers.
    let triggers: i64 = rusqlite::Connection::open(&replica)
        .unwrap()
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(triggers, 0);
}

#[test]
fn rows_the_source_stored_without_its_checks_reach_the_replica() {
    let db = TempDb::with_schema(
        "CREATE TABLE account(id INTEGER PRIMARY KEY, balance INTEGER CHECK (balance >= 0), owner INTEGER REFERENCES person(id));
         CREATE TABLE person(id INTEGER PRIMARY KEY, name TEXT);",
    );
    db.install(&["account", "person"]);
    let replica = db.dir.path().join("replica.db");
    once(&db, &replica, &[]);
    // An import that turned the checks off, as SQLite documents for bulk loads,
    // and a row pointing at a person that does not exist (foreign keys off).
    python(
        &db.path,
        r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA ignore_check_constraints = ON")
c.execute("INSERT INTO account VALUES(1, -50, 99)")
c.execute("INSERT INTO account VALUES(2, 10, NULL)")
c.execute("UPDATE account SET balance = -1 WHERE id = 2")
"#,
    );
    once(&db, &replica, &[]);
    assert_equal(&db.path, &replica, &["account", "person"]);
}

#[test]
fn a_change_the_replica_refuses_reseeds_just_that_table_with_one_line() {
    let db = TempDb::with_schema(
        "CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE b(id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO a VALUES(1, 'one'); INSERT INTO b VALUES(1, 'one');",
    );
    db.install(&["a", "b"]);
    let replica = db.dir.path().join("replica.db");
    once(&db, &replica, &[]);
    // Someone adds a trigger to the replica that refuses updates of a:
    // a change can no longer be applied there, a snapshot still can.
    sqlite3(
        &replica,
        "CREATE TRIGGER no_updates BEFORE UPDATE ON a BEGIN SELECT RAISE(ABORT, 'no updates here'); END;",
    );
    sqlite3(&db.path, "UPDATE a SET v = 'uno' WHERE id = 1; INSERT INTO b VALUES(2, 'two');");
    let err = once(&db, &replica, &[]);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("refused a change")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("no updates here") && lines[0].contains("the other tables go on; bootstrapping it"),
        "{err}"
    );
    assert_equal(&db.path, &replica, &["a", "b"]);
}

#[test]
fn autoincrement_counters_reach_the_replica_so_a_promoted_one_never_reuses_an_id() {
    let db = TempDb::with_schema(
        "CREATE TABLE ticket(id INTEGER PRIMARY KEY AUTOINCREMENT, what TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10)
         INSERT INTO ticket(what) SELECT 'ticket ' || i FROM n;
         DELETE FROM ticket WHERE id > 7;",
    );
    db.install(&["ticket"]);
    let replica = db.dir.path().join("replica.db");
    let sequence = |p: &Path| -> i64 {
        rusqlite::Connection::open(p)
            .unwrap()
            .query_row("SELECT seq FROM sqlite_sequence WHERE name = 'ticket'", [], |r| r.get(0))
            .unwrap()
    };
    // A bootstrap: the ids 8..=10 were handed out and deleted before it.
    once(&db, &replica, &[]);
    assert_eq!(sequence(&replica), 10);
    // Streamed: an id handed out and deleted again.
    sqlite3(&db.path, "INSERT INTO ticket(what) VALUES('eleven'); DELETE FROM ticket WHERE id = 11;");
    once(&db, &replica, &[]);
    assert_equal(&db.path, &replica, &["ticket"]);
    assert_eq!(sequence(&replica), sequence(&db.path));
    // Promoted: the replica hands out 12, as the source would.
    sqlite3(&replica, "INSERT INTO ticket(what) VALUES('on the replica');");
    let id: i64 = rusqlite::Connection::open(&replica)
        .unwrap()
        .query_row("SELECT max(id) FROM ticket", [], |r| r.get(0))
        .unwrap();
    assert_eq!(id, 12);
}
