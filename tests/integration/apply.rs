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
