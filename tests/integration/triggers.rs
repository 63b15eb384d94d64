//! Capture among the application's own triggers, with inserts logged from
//! `NEW` (the default): triggers stored in the file created after capture
//! (capture is attached again in front of them, the table reseeded, even
//! while writers write), TEMP triggers of the writing connection (which
//! no other process can see: the replica follows them and says so once;
//! `--inserts reread` makes events exact too), and rows such triggers
//! delete under an UPDATE (a wide one spilling over log rows). Writers are
//! Python and the shell, in their own processes; every test ends in an
//! exact comparison.

use std::path::Path;
use std::time::Duration;

use crate::support::{
    Sidecar, TempDb, apply_events, assert_equal, lines_with, python, run_bin, snapshot, spawn_python_until, sqlite3,
    wait_equal, wait_until,
};

/// `replicator --once` into `target`; returns its stderr.
fn once(db: &TempDb, target: &str, consumer: &str) -> (String, String) {
    let src = db.path.to_str().unwrap();
    let (code, out, err) = run_bin("replicator", &["--db", src, "--target", target, "--consumer", consumer, "--once"]);
    assert_eq!(code, 0, "{err}");
    (out, err)
}

/// The JSON-lines events replayed on empty tables give the source.
fn assert_events_reproduce(db: &Path, events: &str, tables: &[&str]) {
    let events: Vec<cdc::Event> = events.lines().map(|l| cdc::json::event_from_json(l).unwrap()).collect();
    let conn = rusqlite::Connection::open(db).unwrap();
    for table in tables {
        let desc = cdc::schema::describe(&conn, table).unwrap();
        let mut model = Default::default();
        apply_events(&desc, &events, &mut model);
        assert_eq!(model, snapshot(&conn, &desc), "{table}");
    }
}

const POSTS: &str = "CREATE TABLE post(id INTEGER PRIMARY KEY, title TEXT, slug TEXT);
     CREATE TABLE note(name TEXT PRIMARY KEY, body TEXT);
     CREATE TABLE bag(x, y);";

/// Python, with TEMP triggers of its own that rewrite and delete rows as
/// they are inserted, in every kind of table (INTEGER key, TEXT key, none).
const TEMP_WRITER: &str = r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA busy_timeout = 10000")
c.executescript("""
CREATE TEMP TRIGGER slug AFTER INSERT ON main.post BEGIN
  UPDATE post SET slug = lower(replace(NEW.title, ' ', '-')) WHERE id = NEW.id; END;
CREATE TEMP TRIGGER spam AFTER INSERT ON main.post WHEN NEW.title LIKE 'spam%' BEGIN
  DELETE FROM post WHERE id = NEW.id; END;
CREATE TEMP TRIGGER stamp AFTER INSERT ON main.note BEGIN
  UPDATE note SET body = body || ' (seen)' WHERE name = NEW.name; END;
CREATE TEMP TRIGGER drop_empty AFTER INSERT ON main.bag WHEN NEW.y IS NULL BEGIN
  DELETE FROM bag WHERE rowid = NEW.rowid; END;
CREATE TEMP TRIGGER twice AFTER INSERT ON main.bag WHEN NEW.y = 'twice' BEGIN
  UPDATE bag SET y = 'once' WHERE rowid = NEW.rowid;
  UPDATE bag SET y = 'done' WHERE rowid = NEW.rowid; END;
""")
base = int(sys.argv[2])
c.execute("BEGIN")
for i in range(base, base + 20):
    c.execute("INSERT INTO post(id, title) VALUES(?, ?)", (i, ("spam %d" if i % 4 == 0 else "Post %d") % i))
    c.execute("INSERT INTO note VALUES(?, ?)", ("n%d" % i, "body %d" % i))
    c.execute("INSERT INTO bag VALUES(?, ?)", (i, None if i % 3 == 0 else ("twice" if i % 3 == 1 else "plain")))
c.execute("UPDATE post SET title = title || '!' WHERE id = ?", (base + 1,))
c.execute("DELETE FROM note WHERE name = ?", ("n%d" % (base + 2),))
c.execute("COMMIT")
"#;

fn temp_writer(db: &Path, base: i64) {
    let program = TEMP_WRITER.replace("int(sys.argv[2])", &base.to_string());
    python(db, &program);
}

#[test]
fn temp_triggers_that_rewrite_inserted_rows_are_followed_and_said_once() {
    let tables = ["post", "note", "bag"];
    let db = TempDb::with_schema(POSTS);
    db.install(&tables);
    let replica = db.dir.path().join("replica.db");
    let target = format!("sqlite:{}", replica.display());
    once(&db, &target, "replica");
    once(&db, "jsonl:-", "events");

    // Inserts logged from NEW: the TEMP triggers fire first, unseen. The
    // replica sees the rows they changed were not there yet and keeps what
    // they made of them, saying so once per table.
    temp_writer(&db.path, 100);
    let (_, err) = once(&db, &target, "replica");
    assert_equal(&db.path, &replica, &tables);
    for table in tables {
        let said: Vec<&str> = lines_with(&err, "rewrote or deleted rows")
            .into_iter()
            .filter(|l| l.contains(&format!("table={table}")))
            .collect();
        assert_eq!(said.len(), 1, "{table}: {err}");
        assert!(said[0].contains(&format!("--table {table} --inserts reread")), "{err}");
    }

    // With inserts read back, every event is exact too, and nothing is said.
    let src = db.path.to_str().unwrap();
    let (code, out, err) = run_bin(
        "cdc-setup",
        &["install", "--db", src, "--table", "post", "--table", "note", "--table", "bag", "--inserts", "reread"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("re-attached").count(), 3, "{out}");
    let (_, out, _) = run_bin("cdc-setup", &["status", "--db", src]);
    assert_eq!(out.matches("(inserts read back from the table)").count(), 3, "{out}");
    let (out, _) = once(&db, "jsonl:-", "events");
    assert!(out.contains(r#""kind":"bootstrap_begin""#), "re-attached capture reseeds: {out}");
    temp_writer(&db.path, 200);
    let (out, _) = once(&db, "jsonl:-", "events");
    assert!(!out.contains("bootstrap"), "{out}");
    let (_, replica_err) = once(&db, &target, "replica");
    assert_equal(&db.path, &replica, &tables);
    assert!(lines_with(&replica_err, "rewrote or deleted rows").is_empty(), "{replica_err}");
    // The events after the reseed, replayed on its rows: the source.
    let jsonl = db.dir.path().join("all.jsonl");
    let full = format!("jsonl:{}", jsonl.display());
    let (code, _, e) = run_bin("replicator", &["--db", src, "--target", &full, "--consumer", "fresh", "--once"]);
    assert_eq!(code, 0, "{e}");
    temp_writer(&db.path, 300);
    let (code, _, e) = run_bin("replicator", &["--db", src, "--target", &full, "--consumer", "fresh", "--once"]);
    assert_eq!(code, 0, "{e}");
    assert_events_reproduce(&db.path, &std::fs::read_to_string(&jsonl).unwrap(), &tables);
    // Installing again without --inserts keeps what each table has.
    let (code, out, _) = run_bin("cdc-setup", &["install", "--db", src, "--table", "post"]);
    assert_eq!(code, 0);
    assert!(out.contains("already installed, nothing changed"), "{out}");
}

#[test]
fn a_trigger_created_while_writers_write_is_overtaken_and_nothing_stale_reaches_the_replica() {
    let tables = ["post"];
    let db =
        TempDb::with_schema("CREATE TABLE post(id INTEGER PRIMARY KEY, title TEXT, slug TEXT, rev INTEGER DEFAULT 0);");
    db.install(&tables);
    let replica = db.dir.path().join("replica.db");
    let (src, rep) = (db.path.to_str().unwrap(), replica.to_str().unwrap());
    let target = format!("sqlite:{rep}");
    let log = db.dir.path().join("sidecar.log");
    let sidecar = Sidecar::start(&["--db", src, "--target", &target, "--poll-interval", "50ms"], &log);
    let stop = db.dir.path().join("stop");
    // A writer at full speed, handling SQLite's refusals as an application would.
    let mut writer = spawn_python_until(
        &db.path,
        &stop,
        r#"
import os, sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
i, after = 0, 0
# Writes on for 200 rows after the stop file appears (made once the
# triggers exist), so some rows meet them whatever the machine's load.
while after < 200 or i < 300:
    i += 1
    after += os.path.exists(sys.argv[2])
    try:
        c.execute("INSERT INTO post(title) VALUES(?)", ("Title %d" % i,))
        if i % 7 == 0:
            c.execute("DELETE FROM post WHERE id = (SELECT max(id) FROM post)")
        if i % 5 == 0:
            c.execute("UPDATE post SET title = title || '.' WHERE id = (SELECT min(id) FROM post)")
    except sqlite3.OperationalError:
        pass
"#,
    );
    wait_until("the writer's first rows on the replica", Duration::from_secs(60), || {
        rusqlite::Connection::open(&replica)
            .and_then(|c| c.query_row("SELECT count(*) FROM post", [], |r| r.get::<_, i64>(0)))
            .is_ok_and(|n| n > 20)
    });
    // A migration adds triggers while the writer writes: they fire before
    // capture's own, and rewrite (or put back) the very rows capture logs.
    sqlite3(
        &db.path,
        "CREATE TRIGGER slug AFTER INSERT ON post BEGIN
           UPDATE post SET slug = lower(replace(NEW.title, ' ', '-')), rev = rev + 1 WHERE id = NEW.id; END;
         CREATE TRIGGER keep AFTER DELETE ON post WHEN OLD.id % 2 = 0 BEGIN
           INSERT INTO post(id, title, slug, rev) VALUES(OLD.id, OLD.title, 'kept', OLD.rev + 100); END;",
    );
    std::fs::write(&stop, "").unwrap();
    assert!(writer.wait().unwrap().success());
    wait_equal(&db.path, &replica, &tables, Duration::from_secs(60));
    let sidecar_log = sidecar.log();
    assert!(!lines_with(&sidecar_log, "attached again in front").is_empty(), "{sidecar_log}");
    // The replica holds the triggers' work, not the rows as inserted.
    let kept: i64 = rusqlite::Connection::open(&replica)
        .unwrap()
        .query_row("SELECT count(*) FROM post WHERE slug IS NOT NULL", [], |r| r.get(0))
        .unwrap();
    assert!(kept > 0);
    let (code, out, _) = run_bin("cdc-setup", &["status", "--db", src]);
    assert_eq!(code, 0);
    assert!(out.contains("  post: captured\n"), "capture is in front again: {out}");
    assert_eq!(sidecar.terminate(), Some(0));
    assert_equal(&db.path, &replica, &tables);
}

#[test]
fn rows_a_trigger_deletes_under_an_update_are_logged_as_deleted() {
    // Narrow (both images in one log row: a LEFT JOIN finds the row gone)
    // and wide (the before image's rows, then none of the after image).
    let wide: Vec<String> = (0..15).map(|i| format!("c{i}")).collect();
    let db = TempDb::with_schema(&format!(
        "CREATE TABLE narrow(id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE wide(id INTEGER PRIMARY KEY, {});",
        wide.join(", ")
    ));
    let tables = ["narrow", "wide"];
    db.install(&tables);
    let replica = db.dir.path().join("replica.db");
    let target = format!("sqlite:{}", replica.display());
    let fill: Vec<String> = (0..15).map(|i| format!("'w{i}'")).collect();
    sqlite3(
        &db.path,
        &format!(
            "INSERT INTO narrow VALUES(1, 'a'), (2, 'b'), (3, 'c');
             INSERT INTO wide VALUES(1, {0}), (2, {0}), (3, {0});",
            fill.join(", ")
        ),
    );
    once(&db, &target, "replica");
    once(&db, "jsonl:-", "events");
    python(
        &db.path,
        r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.executescript("""
CREATE TEMP TRIGGER gone_n AFTER UPDATE ON main.narrow WHEN NEW.v = 'gone' BEGIN DELETE FROM narrow WHERE id = NEW.id; END;
CREATE TEMP TRIGGER gone_w AFTER UPDATE ON main.wide WHEN NEW.c7 = 'gone' BEGIN DELETE FROM wide WHERE id = NEW.id; END;
CREATE TEMP TRIGGER touch_w AFTER UPDATE OF c0 ON main.wide BEGIN UPDATE wide SET c14 = 'touched' WHERE id = NEW.id; END;
BEGIN;
UPDATE narrow SET v = 'gone' WHERE id = 1;
UPDATE narrow SET v = 'kept' WHERE id = 2;
UPDATE wide SET c7 = 'gone' WHERE id = 1;
UPDATE wide SET c0 = 'new' WHERE id = 2;
COMMIT;
""")
"#,
    );
    let (_, err) = once(&db, &target, "replica");
    assert_equal(&db.path, &replica, &tables);
    assert!(lines_with(&err, "rewrote").is_empty(), "{err}");
    // The events, replayed on the rows the consumer started with.
    let (out, _) = once(&db, "jsonl:-", "events");
    let events: Vec<cdc::Event> = out.lines().map(|l| cdc::json::event_from_json(l).unwrap()).collect();
    let ops: Vec<(String, cdc::Op)> = events
        .iter()
        .filter_map(|e| match e {
            cdc::Event::Change(c) => Some((c.table.to_string(), c.op)),
            _ => None,
        })
        .collect();
    assert!(
        ops.contains(&("narrow".into(), cdc::Op::Delete)) && ops.contains(&("wide".into(), cdc::Op::Delete)),
        "{ops:?}"
    );
    let conn = rusqlite::Connection::open(&replica).unwrap();
    assert_eq!(
        conn.query_row("SELECT count(*) FROM wide WHERE c14 = 'touched'", [], |r| r.get::<_, i64>(0)).unwrap(),
        1
    );
}

#[test]
fn bad_inserts_option_is_one_line_and_changes_nothing() {
    let db = TempDb::with_schema("CREATE TABLE t(id INTEGER PRIMARY KEY);");
    let src = db.path.to_str().unwrap();
    let before = crate::support::schema_dump(&db.path);
    let (code, out, err) = run_bin("cdc-setup", &["install", "--db", src, "--table", "t", "--inserts", "old"]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("'old'") && err.contains("possible values: new, reread"), "{err}");
    assert_eq!(crate::support::schema_dump(&db.path), before);
}
