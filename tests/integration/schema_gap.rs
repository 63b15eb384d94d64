//! Schema changes with default flags, and the values written in the gap
//! between a change and the moment capture follows it: in the very
//! transaction of the `ALTER` and in the ones right after it, by Python
//! while sidecars run, and by the `sqlite3` shell while none does. A
//! SQLite replica must end equal to the source in `sqlite_master`
//! (tables, indexes, views by their SQL), rowids, values and `typeof`; a
//! JSON-lines consumer must see each change as a schema event and, from
//! its events alone, rebuild every table exactly.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::support::{Sidecar, TempDb, lines_with, python, run_bin, sqlite3};

const DEADLINE: Duration = Duration::from_secs(120);

/// The application's tables, indexes and views with their SQL, as the
/// shell prints them (no `_cdc` objects, no `sqlite_` ones).
fn objects(db: &Path) -> String {
    sqlite3(
        db,
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE type IN ('table', 'index', 'view') \
         AND name NOT LIKE '\\_cdc%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY type, name;",
    )
}

fn tables(db: &Path) -> Vec<String> {
    sqlite3(
        db,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_cdc%' ESCAPE '\\' \
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name;",
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// Waits until the replica has the source's objects, and every table's
/// rows with their rowids, values and storage classes.
fn wait_same_file(source: &Path, replica: &Path, step: &str) {
    let mut last = String::new();
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        let names = tables(source);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let (a, b) = (objects(source), objects(replica));
        let rows = crate::support::difference(source, replica, &names);
        if a == b && rows.is_none() {
            return;
        }
        if a != b {
            last = format!("sqlite_master differs:\nsource:\n{a}\nreplica:\n{b}");
        } else if let Some(rows) = rows {
            last = rows;
        }
        assert!(std::time::Instant::now() < end, "{step}: not equal within {DEADLINE:?}: {last}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The events of a JSON-lines file.
fn events(path: &Path) -> Vec<cdc::Event> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // A line being written is not complete yet.
    let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
    complete.lines().map(|l| cdc::json::event_from_json(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// A row's identity as a consumer keys it: its declared primary key, or
/// its rowid for a table without one. (An insert may replace a row with
/// another rowid but the same key, `INSERT OR REPLACE`, without a delete.)
fn identity(key: &[String], columns: &[String], row: &cdc::Row) -> String {
    if key.is_empty() {
        return format!("rowid {}", row.rowid.expect("a rowid table's image has its rowid"));
    }
    let values: Vec<String> = key
        .iter()
        .map(|k| format!("{:?}", row.values[columns.iter().position(|c| c == k).expect("key column in the image")]))
        .collect();
    values.join(",")
}

fn key_of(columns: &[cdc::ColumnDesc]) -> Vec<String> {
    let mut key: Vec<&cdc::ColumnDesc> = columns.iter().filter(|c| c.primary_key > 0).collect();
    key.sort_by_key(|c| c.primary_key);
    key.iter().map(|c| c.name.to_string()).collect()
}

type Tables = BTreeMap<String, BTreeMap<String, BTreeMap<String, cdc::Value>>>;

/// Every table as a consumer of `events` alone would hold it, keyed as
/// the schema events say: per table, rows by identity, each a map of
/// column to value (with the rowid); dropped tables are gone.
fn rebuilt(events: &[cdc::Event]) -> Tables {
    let mut held = Tables::new();
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let named = |columns: &[String], row: &cdc::Row| {
        let mut m: BTreeMap<String, cdc::Value> = columns.iter().cloned().zip(row.values.iter().cloned()).collect();
        m.insert("rowid".into(), row.rowid.map_or(cdc::Value::Null, cdc::Value::Integer));
        m
    };
    for e in events {
        match e {
            cdc::Event::Schema(s) if s.object == cdc::SchemaObject::Table => {
                assert_eq!(
                    s.sql.is_some(),
                    !s.columns.is_empty(),
                    "a table's definition comes with its columns: {s:?}"
                );
                if s.sql.is_some() {
                    keys.insert(s.name.to_string(), key_of(&s.columns));
                } else {
                    held.remove(&*s.name);
                }
            }
            cdc::Event::BootstrapBegin { table, .. } => {
                held.insert(table.to_string(), BTreeMap::new());
            }
            cdc::Event::Bootstrap { table, columns, row } => {
                let id = identity(&keys[&**table], columns, row);
                held.get_mut(&**table).unwrap().insert(id, named(columns, row));
            }
            cdc::Event::Change(c) => {
                let key = &keys[&*c.table];
                let rows = held.get_mut(&*c.table).unwrap();
                if let Some(before) = &c.before {
                    rows.remove(&identity(key, &c.columns, before));
                }
                if let Some(after) = &c.after {
                    rows.insert(identity(key, &c.columns, after), named(&c.columns, after));
                }
            }
            _ => {}
        }
    }
    held
}

/// What `rebuilt` should hold: every table of the source.
fn source_tables(db: &Path) -> Tables {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut out = BTreeMap::new();
    for table in tables(db) {
        let desc = cdc::schema::describe(&conn, &table).unwrap();
        let columns: Vec<String> = desc.captured().map(|c| c.name.to_string()).collect();
        let list = columns.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
        let mut stmt = conn.prepare(&format!("SELECT rowid, {list} FROM \"{table}\"")).unwrap();
        let rows = stmt
            .query_map([], |r| {
                let row = cdc::Row {
                    rowid: Some(r.get(0)?),
                    values: (0..columns.len())
                        .map(|i| cdc::Value::from_ref(r.get_ref(i + 1).unwrap()).unwrap())
                        .collect(),
                };
                let mut values: BTreeMap<String, cdc::Value> =
                    columns.iter().cloned().zip(row.values.iter().cloned()).collect();
                values.insert("rowid".into(), cdc::Value::Integer(row.rowid.unwrap()));
                Ok((identity(&key_of(&desc.columns), &columns, &row), values))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        out.insert(table, rows);
    }
    out
}

/// Waits until the events in `stream` rebuild every table of `source`.
fn wait_rebuilt(source: &Path, stream: &Path) {
    let expected = source_tables(source);
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        let held = rebuilt(&events(stream));
        if held == expected {
            return;
        }
        if std::time::Instant::now() > end {
            let names: Vec<_> = held.keys().chain(expected.keys()).collect();
            let first = names.into_iter().find_map(|t| {
                let (a, b) = (held.get(t), expected.get(t));
                let row = a.zip(b).and_then(|(a, b)| {
                    a.keys()
                        .chain(b.keys())
                        .find(|k| a.get(*k) != b.get(*k))
                        .map(|k| (k.clone(), a.get(k).cloned(), b.get(k).cloned()))
                });
                (a != b).then(|| {
                    format!(
                        "{t}: {} rows held, {} in the source; first differing: {row:?}",
                        a.map_or(0, |a| a.len()),
                        b.map_or(0, |b| b.len())
                    )
                })
            });
            panic!("the stream does not rebuild the source within {DEADLINE:?}: {first:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The schema events of `events` as `(name, object, sql present, bootstrap)`.
fn schema_events(events: &[cdc::Event]) -> Vec<(String, cdc::SchemaObject, bool, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            cdc::Event::Schema(s) => Some((s.name.to_string(), s.object, s.sql.is_some(), s.bootstrap)),
            _ => None,
        })
        .collect()
}

/// The `--target` strings of a replica file and a JSON-lines file.
fn targets(replica: &Path, stream: &Path) -> (String, String) {
    (format!("sqlite:{}", replica.display()), format!("jsonl:{}", stream.display()))
}

fn shop() -> TempDb {
    let db = TempDb::with_schema(
        "CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER);
         CREATE TABLE bag(x, y);
         CREATE TABLE tag(label TEXT PRIMARY KEY, n);
         CREATE TABLE scratch(a, b);
         CREATE INDEX item_name ON item(name);
         CREATE VIEW stock AS SELECT name, qty FROM item WHERE qty > 0;
         WITH RECURSIVE i(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM i WHERE j < 200)
         INSERT INTO item SELECT j, 'item ' || j, j % 9 FROM i;
         WITH RECURSIVE i(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM i WHERE j < 200)
         INSERT INTO bag SELECT j % 5, x'00ff' FROM i;
         INSERT INTO tag VALUES('a', 1), ('b', 2.5), ('c', NULL);
         INSERT INTO scratch VALUES(1, 2);
         DELETE FROM bag WHERE rowid % 7 = 0;",
    );
    db.install_all();
    db
}

/// Python, in its own process, runs DDL and writes on right after each
/// statement, without waiting for capture: the first writes of each new
/// shape are in the DDL's own transaction, the next ones in the gap
/// before capture follows. It writes a few hundred transactions a second
/// (a writer that never pauses is drained only when it does), and creates
/// the plain index once the stream has item's new definition, so that
/// the index arrives as a change of its own.
const APP: &str = r#"
import random, sqlite3, sys, time
random.seed(7)
c = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
def wait_for(needle):
    end = time.time() + 120
    while needle not in open(STREAM).read():
        assert time.time() < end, "the stream never had " + needle
        time.sleep(0.01)
def tx(*statements):
    c.execute("BEGIN IMMEDIATE")
    for s in statements:
        if isinstance(s, tuple):
            c.execute(*s)
        else:
            c.execute(s)
    c.execute("COMMIT")
numbers = iter(range(1000, 100000))
def burst(n, price=True):
    for i in range(n):
        r = random.random()
        if r < 0.3 and price:
            tx(("UPDATE item SET price = ? WHERE id = ?", (random.choice([1.5, 2, "3", None, b"\x01"]), random.randint(1, 260))))
        elif r < 0.5:
            tx(("INSERT INTO item(name, qty) VALUES(?, ?)", ("new %d" % i, random.randint(-2, 9))))
        elif r < 0.7:
            tx(("INSERT INTO bag(x, y) VALUES(?, ?)", (random.randint(0, 4), random.random())), ("DELETE FROM bag WHERE rowid = ?", (random.randint(1, 260),)))
        else:
            # Distinct numbers: an eviction through the UNIQUE index on
            # them would need the stream consumer to keep that index.
            tx(("INSERT OR REPLACE INTO tag VALUES(?, ?)", (random.choice("abcdef"), next(numbers))))
        time.sleep(0.002)
burst(30, price=False)
tx("ALTER TABLE item ADD COLUMN price REAL DEFAULT 0.25",
   "UPDATE item SET price = id * 0.5 WHERE id % 3 = 0",
   ("INSERT INTO item(name, qty, price) VALUES(?, ?, ?)", ("in the alter's transaction", 1, 9.75)))
burst(150)
tx("ALTER TABLE bag ADD COLUMN z TEXT DEFAULT 'dflt'", "UPDATE bag SET z = 'set ' || rowid WHERE x = 1")
tx("UPDATE bag SET z = NULL WHERE x = 2")
burst(50)
wait_for('{"name":"qty","decl_type":"INTEGER","primary_key":0,"not_null":false,"generated":false},{"name":"price","decl_type":"REAL"')
tx("CREATE INDEX item_qty ON item(qty) WHERE qty > 3")
tx("CREATE UNIQUE INDEX tag_n ON tag(n)")
tx("CREATE VIEW cheap AS SELECT name FROM item WHERE price < 1")
burst(50)
tx("ALTER TABLE tag RENAME COLUMN n TO amount", "UPDATE tag SET amount = 100 WHERE label = 'a'")
tx("DROP TABLE scratch")
tx("DROP VIEW stock")
burst(50)
"#;

#[test]
fn values_written_before_capture_follows_a_schema_change_reach_a_replica_and_a_stream() {
    let db = shop();
    let dir = db.dir.path();
    let (src, replica, stream) = (db.path.to_str().unwrap(), dir.join("replica.db"), dir.join("events.jsonl"));
    let (to_replica, to_stream) = targets(&replica, &stream);
    let mut sidecar = Sidecar::start(&["--db", src, "--target", &to_replica], &dir.join("replica.log"));
    let mut streamer = Sidecar::start(&["--db", src, "--target", &to_stream], &dir.join("stream.log"));
    wait_same_file(&db.path, &replica, "first bootstrap");
    python(&db.path, &format!("STREAM = {:?}\n{APP}", stream.to_str().unwrap()));
    wait_same_file(&db.path, &replica, "after the application's migrations");
    wait_rebuilt(&db.path, &stream);
    let seen = schema_events(&events(&stream));
    use cdc::SchemaObject::{Table, View};
    for wanted in [
        ("item", Table, true, true),      // before each bootstrap, the first included
        ("item", Table, true, false),     // a plain index created: no reseed
        ("scratch", Table, false, false), // dropped
        ("cheap", View, true, false),
        ("stock", View, false, false),
    ] {
        let wanted = (wanted.0.to_string(), wanted.1, wanted.2, wanted.3);
        assert!(seen.contains(&wanted), "no {wanted:?} in {seen:?}\n{}\n{}", sidecar.log(), streamer.log());
    }
    // The new column's definition reached the stream before rows of it.
    let stream_events = events(&stream);
    let first_price = stream_events
        .iter()
        .position(|e| matches!(e, cdc::Event::Bootstrap { columns, .. } | cdc::Event::Change(cdc::Change { columns, .. }) if columns.iter().any(|c| c == "price")))
        .expect("rows with the new column");
    assert!(
        stream_events[..first_price]
            .iter()
            .any(|e| matches!(e, cdc::Event::Schema(s) if s.columns.iter().any(|c| c.name == "price"))),
        "the schema event comes first"
    );
    for (name, log) in [("replica", sidecar.log()), ("stream", streamer.log())] {
        assert!(lines_with(&log, "ERROR").is_empty(), "{name}: {log}");
        assert!(lines_with(&log, "stopped").is_empty(), "{name}: {log}");
    }
    assert!(sidecar.running() && streamer.running());
}

#[test]
fn values_written_while_no_sidecar_runs_after_a_schema_change_are_not_lost() {
    let db = shop();
    let dir = db.dir.path();
    let (src, replica, stream) = (db.path.to_str().unwrap(), dir.join("replica.db"), dir.join("events.jsonl"));
    let (to_replica, to_stream) = targets(&replica, &stream);
    let sidecar = Sidecar::start(&["--db", src, "--target", &to_replica], &dir.join("replica.log"));
    wait_same_file(&db.path, &replica, "first bootstrap");
    let (code, _, err) = run_bin("replicator", &["--db", src, "--target", &to_stream, "--once"]);
    assert_eq!(code, 0, "{err}");
    sidecar.kill();
    // The shell, with nobody following: each change with writes in its
    // own transaction and after it.
    sqlite3(
        &db.path,
        "BEGIN; ALTER TABLE item ADD COLUMN price REAL; UPDATE item SET price = id / 4.0 WHERE id % 2 = 0;
         INSERT INTO item(name, qty, price) VALUES('alter tx', 3, -0.0); COMMIT;
         UPDATE item SET price = 'text now' WHERE id = 5; INSERT INTO item(name, price) VALUES('after', x'beef');
         ALTER TABLE tag RENAME COLUMN n TO amount; UPDATE tag SET amount = 7 WHERE label = 'b';
         ALTER TABLE bag RENAME TO sack; INSERT INTO sack VALUES(9, 9);
         CREATE INDEX sack_x ON sack(x); CREATE VIEW named AS SELECT label FROM tag;
         DROP TABLE scratch; DELETE FROM item WHERE id % 10 = 1; VACUUM;",
    );
    let mut sidecar = Sidecar::start(&["--db", src, "--target", &to_replica], &dir.join("replica.log"));
    wait_same_file(&db.path, &replica, "after the restart");
    let (code, _, err) = run_bin("replicator", &["--db", src, "--target", &to_stream, "--once"]);
    assert_eq!(code, 0, "{err}");
    wait_rebuilt(&db.path, &stream);
    let seen = schema_events(&events(&stream));
    for gone in ["scratch", "bag"] {
        assert!(seen.contains(&(gone.to_string(), cdc::SchemaObject::Table, false, false)), "{gone} dropped: {seen:?}");
    }
    assert!(lines_with(&sidecar.log(), "ERROR").is_empty(), "{}", sidecar.log());
    assert!(sidecar.running());
}
