//! Bootstraps copied inside SQLite (the SQLite replica attaches the source
//! read only and copies with `INSERT … SELECT`): exact whatever the
//! table's shape and values, consistent with the log under a writer at
//! full speed, and the replica lets go of the source afterwards.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cdc::targets::SqliteTarget;
use cdc::{BootstrapMode, Engine};

use crate::support::{Seed, TempDb, assert_equal, spawn_python_until, sqlite3, wait_until};

const DEADLINE: Duration = Duration::from_secs(60);

/// Tables of every shape the copy has to get right, with values that a
/// conversion anywhere would change: REAL bits (`-0.0`, subnormals, the
/// extremes), integers at both ends, text that looks like numbers in
/// columns without affinity, empty and binary BLOBs, text with a NUL and
/// invalid UTF-8, rowids at both ends and with gaps, duplicate rows in a
/// table without any key.
const SHAPES: &str = r#"
CREATE TABLE ipk(id INTEGER PRIMARY KEY, r REAL, i INTEGER, t TEXT, b BLOB, any);
INSERT INTO ipk VALUES
  (-9223372036854775808, -0.0, 9223372036854775807, 'x' || char(0) || 'y', x'', '12'),
  (-1, 4.9e-324, -9223372036854775808, '', x'00ff', 12),
  (0, 1.7976931348623157e308, 0, 'ünï', zeroblob(3), 1.5),
  (9223372036854775807, 2.5, NULL, CAST(x'c328ff' AS TEXT), NULL, x'01');
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40000)
INSERT INTO ipk(id, r, i, t, b, any) SELECT i * 3, i / 7.0, i * i, 'row ' || i, randomblob(i % 17), CASE i % 3 WHEN 0 THEN i WHEN 1 THEN 'v' || i ELSE i * 0.5 END FROM n;
CREATE TABLE nokey(a, b TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000)
INSERT INTO nokey SELECT i % 5, 'same' FROM n;
DELETE FROM nokey WHERE rowid % 7 = 0;
CREATE TABLE wr(k1 TEXT, k2 INTEGER, v, PRIMARY KEY(k1, k2)) WITHOUT ROWID;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
INSERT INTO wr SELECT 'k' || (i % 100), i, i * 1.5 FROM n;
CREATE TABLE shadow(rowid TEXT, _rowid_ INTEGER, c BLOB);
INSERT INTO shadow VALUES('a', 1, x'01'), ('b', 2, NULL);
CREATE TABLE gen(id INTEGER PRIMARY KEY, a INTEGER, twice INTEGER GENERATED ALWAYS AS (a * 2) STORED, lower TEXT AS (lower('X' || a)));
INSERT INTO gen(id, a) VALUES(1, 10), (2, 20);
CREATE TABLE auto(id INTEGER PRIMARY KEY AUTOINCREMENT, v);
INSERT INTO auto(v) VALUES('a'), ('b'), ('c');
DELETE FROM auto WHERE id = 3;
CREATE TABLE textpk(k TEXT PRIMARY KEY, v);
CREATE UNIQUE INDEX textpk_v ON textpk(v);
INSERT INTO textpk VALUES('a', 1), ('b', '1'), ('c', 1.5), ('d', NULL), ('e', NULL);
CREATE TABLE checked(id INTEGER PRIMARY KEY, v INTEGER CHECK (v >= 0), w TEXT NOT NULL DEFAULT 'd');
INSERT INTO checked VALUES(5, 1, 'a'), (9, 0, 'b'), (-3, 7, '');
CREATE TABLE ipk_desc(id INTEGER PRIMARY KEY DESC, v);
INSERT INTO ipk_desc(rowid, id, v) VALUES(100, 1, 'x'), (7, 2, 'y'), (-5, 3, 'z');
"#;

const TABLES: [&str; 9] = ["ipk", "nokey", "wr", "shadow", "gen", "auto", "textpk", "checked", "ipk_desc"];

#[test]
fn a_bootstrap_copied_inside_sqlite_is_exact_for_every_table_shape() {
    let db = TempDb::with_schema(SHAPES);
    db.install(&TABLES);
    let replica = db.dir.path().join("replica.db");
    // A table the user made in the replica beforehand, columns in another
    // order: compatible, so it is filled (by name), never dropped.
    sqlite3(&replica, "CREATE TABLE wr(v, k2 INTEGER, k1 TEXT, PRIMARY KEY(k1, k2)) WITHOUT ROWID;");

    let direct = Arc::new(Mutex::new(Vec::new()));
    let seen = direct.clone();
    let mut engine = Engine::builder(&db.path)
        .batch_size(1000)
        .on_progress(move |p| seen.lock().unwrap().push((p.table.to_string(), p.rows, p.done, p.direct)))
        .open()
        .unwrap();
    let mut target = SqliteTarget::open(&replica).unwrap();
    let drained = engine.drain(&mut target).unwrap();
    assert_eq!(drained.bootstrapped_rows, 4 + 40_000 + 25_715 + 20_000 + 2 + 2 + 2 + 5 + 3 + 3);
    let progress = direct.lock().unwrap().clone();
    assert!(progress.iter().all(|p| p.3), "every table was copied inside SQLite: {progress:?}");
    let of = |t: &str| progress.iter().filter(|p| p.0 == t).map(|p| (p.1, p.2)).collect::<Vec<_>>();
    // Same definition on both sides and an INTEGER PRIMARY KEY: one
    // statement, which SQLite runs as a transfer of raw records.
    assert_eq!(of("ipk"), [(0, false), (40_004, true)], "copied whole");
    assert_eq!(of("auto"), [(0, false), (2, true)], "copied whole");
    // The user's own table (columns in another order): batch by batch.
    let wr = of("wr");
    assert_eq!(wr, [(0, false), (16_384, false), (20_000, true)], "batches along the key");
    // A CHECK constraint: one statement (SQLite copies it row by row).
    assert_eq!(of("checked"), [(0, false), (3, true)]);
    // `INTEGER PRIMARY KEY DESC` is no rowid alias: batches of rowids,
    // which keep them. Keyless, shadowed rowid names, generated columns,
    // a TEXT key likewise: never
    // in one `SELECT *`, whose row-by-row fallback would renumber rowids.
    assert!(of("nokey").len() >= 3, "batches of rowids: {:?}", of("nokey"));
    assert_equal(&db.path, &replica, &TABLES);

    // The replica holds nothing of the source once the copy committed.
    let attached: Vec<String> = target
        .connection()
        .prepare("SELECT name FROM pragma_database_list")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(attached, ["main"]);

    // Rowids came across exactly: changes that find rows by rowid (the
    // table without any key) or by key land on the right rows.
    let seq = |p: &std::path::Path| sqlite3(p, "SELECT seq FROM sqlite_sequence WHERE name = 'auto';");
    assert_eq!(seq(&replica), seq(&db.path), "the AUTOINCREMENT counter came along");
    sqlite3(
        &db.path,
        "UPDATE nokey SET b = 'changed ' || rowid WHERE rowid % 11 = 0;
         DELETE FROM nokey WHERE rowid % 13 = 0;
         UPDATE ipk SET r = -r, t = t || '!' WHERE id % 5 = 0;
         DELETE FROM ipk WHERE id = -9223372036854775808;
         UPDATE wr SET v = 'w' WHERE k2 % 9 = 0;
         INSERT INTO auto(v) VALUES('d');
         UPDATE textpk SET v = 2 WHERE k = 'b';",
    );
    engine.drain(&mut target).unwrap();
    assert_equal(&db.path, &replica, &TABLES);
    assert_eq!(seq(&replica), seq(&db.path));
}

/// `WITHOUT ROWID` tables are copied batch by batch along their primary
/// key, storage classes mixed in one key column, a NOCASE key, a
/// descending one. A key SQLite cannot walk in batches (its `COLLATE`
/// not the column's, so `key1` and `KEY1` are two keys that the column's
/// comparison takes for one; directions mixed) and a batch bound whose
/// text is not UTF-8 are copied whole instead. Every table exact.
#[test]
fn tables_without_rowid_are_copied_in_batches_along_their_key() {
    const KEYED: &str = r#"
CREATE TABLE mixed(k TEXT, n, v, PRIMARY KEY(k, n)) WITHOUT ROWID;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40000)
INSERT INTO mixed SELECT 'k' || (i % 50),
  CASE i % 4 WHEN 0 THEN i WHEN 1 THEN i + 0.5 WHEN 2 THEN 'n' || i ELSE CAST(i AS BLOB) END,
  randomblob(i % 9) FROM n;
CREATE TABLE nocase(k TEXT COLLATE NOCASE PRIMARY KEY, v) WITHOUT ROWID;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
INSERT INTO nocase SELECT CASE i % 2 WHEN 0 THEN 'key' ELSE 'KEY' END || i, i FROM n;
CREATE TABLE real_key(r REAL PRIMARY KEY, v) WITHOUT ROWID;
INSERT INTO real_key VALUES(4.9e-324, 'tiny'), (-1.7976931348623157e308, 'min'), (-0.0, 'zero');
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
INSERT INTO real_key SELECT i / 3.0, i FROM n;
CREATE TABLE desc_key(k INTEGER, v, PRIMARY KEY(k DESC)) WITHOUT ROWID;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
INSERT INTO desc_key SELECT i, 'd' || i FROM n;
CREATE TABLE ci(k TEXT COLLATE NOCASE, n, v, PRIMARY KEY(k COLLATE BINARY, n)) WITHOUT ROWID;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
INSERT INTO ci SELECT CASE i % 2 WHEN 0 THEN 'key' ELSE 'KEY' END || (i % 500), i, i FROM n;
CREATE TABLE two_ways(a, b, v, PRIMARY KEY(a, b DESC)) WITHOUT ROWID;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
INSERT INTO two_ways SELECT i % 10, i, i FROM n;
CREATE TABLE bad_utf8(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
INSERT INTO bad_utf8 SELECT CAST(x'ff' || CAST(printf('%06d', i) AS BLOB) AS TEXT), i FROM n;
CREATE TABLE late_bad(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40000)
INSERT INTO late_bad SELECT CASE WHEN i <= 20000 THEN printf('k%06d', i)
  ELSE CAST(x'ff' || CAST(printf('%06d', i) AS BLOB) AS TEXT) END, i FROM n;
CREATE TABLE int_text(k INTEGER PRIMARY KEY, v) WITHOUT ROWID;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
INSERT INTO int_text SELECT CASE i % 5 WHEN 0 THEN i WHEN 1 THEN i + 0.25 WHEN 2 THEN 'abc' || i
  WHEN 3 THEN '0x' || i ELSE CAST(i AS BLOB) END, i FROM n;
"#;
    const KEYED_TABLES: [&str; 9] =
        ["mixed", "nocase", "real_key", "desc_key", "ci", "two_ways", "bad_utf8", "late_bad", "int_text"];
    let db = TempDb::with_schema(KEYED);
    db.install(&KEYED_TABLES);
    let replica = db.dir.path().join("replica.db");
    // Each table made in the replica beforehand with its definition
    // written otherwise (a space): compatible, so filled, but not the
    // source's very text, so copied in batches (the same text is copied
    // whole, tested above).
    let written_otherwise: String = KEYED
        .split(';')
        .filter_map(|s| s.trim().strip_prefix("CREATE TABLE "))
        .map(|rest| format!("CREATE TABLE {};\n", rest.replacen('(', " (", 1)))
        .collect();
    sqlite3(&replica, &written_otherwise);
    let reports = Arc::new(Mutex::new(Vec::new()));
    let seen = reports.clone();
    let mut engine = Engine::builder(&db.path)
        .on_progress(move |p| seen.lock().unwrap().push((p.table.to_string(), p.rows, p.done, p.direct)))
        .open()
        .unwrap();
    let mut target = SqliteTarget::open(&replica).unwrap();
    let drained = engine.drain(&mut target).unwrap();
    assert_eq!(drained.bootstrapped_rows, 40_000 + 20_000 + 20_003 + 20_000 * 4 + 40_000 + 20_000);
    let reports = reports.lock().unwrap().clone();
    assert!(reports.iter().all(|p| p.3), "every table was copied inside SQLite: {reports:?}");
    let of = |t: &str| reports.iter().filter(|p| p.0 == t).map(|p| p.1).collect::<Vec<_>>();
    assert_eq!(of("mixed"), [0, 16_384, 32_768, 40_000], "batches along the key");
    assert_eq!(of("nocase"), [0, 16_384, 20_000]);
    assert_eq!(of("real_key"), [0, 16_384, 20_003]);
    assert_eq!(of("desc_key"), [0, 16_384, 20_000]);
    assert_eq!(of("ci"), [0, 20_000], "a key collated unlike its column: one statement");
    assert_eq!(of("two_ways"), [0, 20_000], "a key in two directions: one statement");
    assert_eq!(of("bad_utf8"), [0, 20_000], "a bound that is not UTF-8: the rest at once");
    assert_eq!(of("late_bad"), [0, 16_384, 40_000], "the rest at once from the last good bound");
    assert_eq!(of("int_text"), [0, 16_384, 20_000], "text and blobs in an INTEGER key");
    let classes =
        sqlite3(&replica, "SELECT group_concat(t) FROM (SELECT DISTINCT typeof(k) AS t FROM int_text ORDER BY 1);");
    assert_eq!(classes.trim(), "blob,integer,real,text");
    assert_equal(&db.path, &replica, &KEYED_TABLES);

    // Keys came across exactly: changes found by key land on their rows.
    sqlite3(
        &db.path,
        "UPDATE mixed SET v = 'changed' WHERE k = 'k7' OR typeof(n) = 'real';
         DELETE FROM mixed WHERE typeof(n) = 'blob' AND length(n) = 4;
         UPDATE nocase SET v = -v WHERE k = 'key10' OR k = 'KEY11';
         UPDATE ci SET v = 'changed' WHERE k = 'key7' COLLATE BINARY OR k = 'KEY9' COLLATE BINARY;
         DELETE FROM two_ways WHERE b % 3 = 0;
         UPDATE real_key SET v = 'hit' WHERE r IN (4.9e-324, 0.0, 100.0 / 3.0);
         DELETE FROM real_key WHERE r < 0;
         UPDATE desc_key SET v = NULL WHERE k % 7 = 0;
         UPDATE int_text SET v = -v WHERE typeof(k) IN ('text', 'real');
         DELETE FROM int_text WHERE typeof(k) = 'blob' AND v % 2 = 0;",
    );
    engine.drain(&mut target).unwrap();
    assert_equal(&db.path, &replica, &KEYED_TABLES);
}

/// A captured source with `t(id INTEGER PRIMARY KEY, v TEXT)` holding rows
/// 1 to `rows`, and where its replica goes.
fn numbered(rows: usize) -> (TempDb, std::path::PathBuf) {
    let db = TempDb::with_schema(&format!(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO t SELECT i, 'v' || i FROM n;"
    ));
    db.install(&["t"]);
    let replica = db.dir.path().join("replica.db");
    (db, replica)
}

/// A table copied whole in one statement still stops when asked: the stop
/// interrupts SQLite's copy, nothing of the reseed is committed, the
/// replica keeps what it had, and the next run copies the table exactly.
#[test]
fn a_copy_in_one_statement_stops_when_asked() {
    let (db, replica) = numbered(300_000);
    Engine::builder(&db.path).open().unwrap().drain(&mut SqliteTarget::open(&replica).unwrap()).unwrap();
    sqlite3(&db.path, "DELETE FROM t WHERE id % 2 = 0;");

    // Reseeded, and stopped as its copy starts.
    let handle: Arc<Mutex<Option<cdc::signal::StopHandle>>> = Arc::default();
    let to_stop = handle.clone();
    let mut engine = Engine::builder(&db.path)
        .bootstrap(BootstrapMode::Always)
        .on_progress(move |p| {
            if !p.done
                && let Some(stop) = to_stop.lock().unwrap().as_ref()
            {
                stop.stop();
            }
        })
        .open()
        .unwrap();
    *handle.lock().unwrap() = Some(engine.stop_handle());
    let mut target = SqliteTarget::open(&replica).unwrap();
    let drained = engine.drain(&mut target).unwrap();
    assert!(drained.stopped && drained.bootstrapped_rows == 0, "{drained:?}");
    drop((engine, target));
    assert_eq!(sqlite3(&replica, "SELECT count(*) FROM t;").trim(), "300000", "the replica kept what it had");

    let mut engine = Engine::builder(&db.path).bootstrap(BootstrapMode::Always).open().unwrap();
    assert_eq!(engine.drain(&mut SqliteTarget::open(&replica).unwrap()).unwrap().bootstrapped_rows, 150_000);
    assert_equal(&db.path, &replica, &["t"]);
}

/// A replica table of the user's own must have the source's unique keys
/// and no other (one that holds a source key, with more columns, cannot
/// evict): `OR REPLACE` evicts through every unique key without a trace,
/// so a key the source lacks drops rows the source holds, and a source key
/// missing here keeps rows the source evicted. Refused in one line, the
/// replica untouched; the same keys written otherwise are used, and the
/// replica equals the source through evictions by the source's own key.
#[test]
fn a_users_table_with_a_unique_key_the_source_lacks_is_refused() {
    let db = TempDb::with_schema(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v, e TEXT UNIQUE);
         INSERT INTO t VALUES(1, 'a', 'x'), (2, 'a', 'y'), (3, 'b', 'X');",
    );
    db.install(&["t"]);
    for (i, (replica_sql, refused)) in [
        (
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v UNIQUE, e TEXT);",
            Some("a unique key on (v) that the source does not have"),
        ),
        (
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v, e TEXT COLLATE NOCASE UNIQUE);",
            Some("a unique key on (e COLLATE nocase)"),
        ),
        (
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v, e TEXT); CREATE UNIQUE INDEX p ON t(v) WHERE id > 1;",
            Some("the unique index \"CREATE UNIQUE INDEX p ON t(v) WHERE id > 1\" that the source does not have"),
        ),
        (
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v, e TEXT, UNIQUE(e, v));",
            Some("the source has a unique key on (e)"),
        ),
        (
            "CREATE TABLE t(id INT PRIMARY KEY, v, e TEXT UNIQUE);",
            Some("(id INTEGER PRIMARY KEY) and this table has not"),
        ),
        ("CREATE TABLE t(id INTEGER PRIMARY KEY, v, e TEXT, UNIQUE(e)); CREATE UNIQUE INDEX k ON t(v, id);", None),
    ]
    .into_iter()
    .enumerate()
    {
        let replica = db.dir.path().join(format!("replica{i}.db"));
        sqlite3(&replica, replica_sql);
        let before = sqlite3(&replica, "SELECT group_concat(name) FROM sqlite_master;");
        let mut engine = Engine::builder(&db.path).open().unwrap();
        let mut target = SqliteTarget::open(&replica).unwrap();
        let drained = engine.drain(&mut target);
        match refused {
            Some(why) => {
                let err = drained.unwrap_err().to_string();
                assert!(err.contains(why) && !err.contains('\n'), "{replica_sql}: {err}");
                drop(target);
                assert_eq!(sqlite3(&replica, "SELECT group_concat(name) FROM sqlite_master;"), before);
                assert_eq!(sqlite3(&replica, "SELECT count(*) FROM t;").trim(), "0");
            }
            None => {
                drained.unwrap();
                sqlite3(
                    &db.path,
                    "INSERT INTO t(v, e) VALUES('a', 'w'); UPDATE t SET v = 'b' WHERE id = 1;
                     INSERT OR REPLACE INTO t(id, v, e) VALUES(9, 'c', 'x');",
                );
                engine.drain(&mut target).unwrap();
                assert_equal(&db.path, &replica, &["t"]);
            }
        }
    }
}

/// A copy that does not land every row of the cut (here a user's own
/// replica table whose trigger skips some rows) is never committed: the
/// replicator stops, saying so in one line, and the replica keeps what it
/// had.
#[test]
fn a_copy_that_does_not_land_every_row_is_refused() {
    let (db, replica) = numbered(1000);
    sqlite3(
        &replica,
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO t VALUES(-1, 'kept');
         CREATE TRIGGER skip BEFORE INSERT ON t WHEN NEW.id % 100 = 0 BEGIN SELECT RAISE(IGNORE); END;",
    );
    let mut engine = Engine::builder(&db.path).open().unwrap();
    let mut target = SqliteTarget::open(&replica).unwrap();
    let err = engine.drain(&mut target).unwrap_err().to_string();
    assert!(err.contains("wrote 990 rows") && err.contains("has 1000") && !err.contains('\n'), "{err}");
    drop(target);
    assert_eq!(sqlite3(&replica, "SELECT group_concat(id || '=' || v) FROM t;").trim(), "-1=kept");
}

/// Rows changed by a writer at full speed while a table is copied: the
/// copy and the log are one cut, so the replica converges exactly.
#[test]
fn a_copy_under_a_writer_at_full_speed_converges() {
    let db = TempDb::with_schema(
        "CREATE TABLE big(id INTEGER PRIMARY KEY, v, w TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
         INSERT INTO big SELECT i, i * 3, 'row ' || i FROM n;
         CREATE TABLE small(id INTEGER PRIMARY KEY, v);",
    );
    db.install(&["big", "small"]);
    let replica = db.dir.path().join("replica.db");
    // `small` is live before `big` is reseeded, so the bootstrap also
    // brings a live table to the cut with its changes.
    {
        let mut engine = Engine::builder(&db.path).tables(["small"]).open().unwrap();
        engine.drain(&mut SqliteTarget::open(&replica).unwrap()).unwrap();
    }
    let seed = Seed::new("bulk::a_copy_under_a_writer_at_full_speed_converges", 11);
    let stop_file = db.dir.path().join("stop");
    let churn = r#"
import sqlite3, sys, os, random
c = sqlite3.connect(sys.argv[1], timeout=30)
random.seed(SEED)
i = 0
while not os.path.exists(sys.argv[2]):
    i += 1
    try:
        c.execute("UPDATE big SET v = v + 1, w = ? WHERE id = ?", ("u%d" % i, random.randint(1, 200000)))
        c.execute("DELETE FROM big WHERE id = ?", (random.randint(1, 200000),))
        c.execute("INSERT INTO big(v, w) VALUES(?, ?)", (i, "new"))
        c.execute("INSERT OR REPLACE INTO small VALUES(?, ?)", (i % 50, i))
        c.commit()
    except sqlite3.OperationalError as e:
        if not any(w in str(e) for w in ("locked", "busy")):
            raise
        c.rollback()
"#
    .replace("SEED", &seed.value.to_string());
    let mut writer = spawn_python_until(&db.path, &stop_file, &churn);
    let watcher = db.conn();
    let start = cdc::log::high_water(&watcher).unwrap();
    wait_until("the writer to start", DEADLINE, || cdc::log::high_water(&watcher).unwrap() > start + 30);
    let mut waited = false;
    let direct = Arc::new(Mutex::new(false));
    let seen = direct.clone();
    let mut engine = Engine::builder(&db.path)
        .bootstrap(BootstrapMode::Auto)
        .on_progress(move |p| {
            *seen.lock().unwrap() |= p.direct;
            // Writers commit in the middle of the copy.
            if !waited && !p.done {
                waited = true;
                let now = cdc::log::high_water(&watcher).unwrap();
                wait_until("writes during the copy", DEADLINE, || cdc::log::high_water(&watcher).unwrap() > now + 30);
            }
        })
        .open()
        .unwrap();
    let mut target = SqliteTarget::open(&replica).unwrap();
    let first = engine.drain(&mut target).unwrap();
    assert!(first.bootstrapped_rows > 0);
    engine.drain(&mut target).unwrap();
    std::fs::write(&stop_file, b"").unwrap();
    assert!(writer.wait().unwrap().success());
    engine.drain(&mut target).unwrap();
    eprintln!("copied inside SQLite: {}", direct.lock().unwrap());
    assert_equal(&db.path, &replica, &["big", "small"]);
}

/// A source whose path has characters a `file:` URI gives meaning to
/// (`?`, `#`, `%`), spaces and bytes that are not UTF-8: still attached
/// (read only) and copied inside SQLite, not silently sent row by row.
#[test]
fn a_source_at_an_odd_path_is_copied_inside_sqlite_too() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join(std::ffi::OsStr::from_bytes(b"we ird ?#%25&=; \xc3\xbc\xff"));
    std::fs::create_dir(&odd).unwrap();
    let path = odd.join("app #1?.db");
    sqlite3(
        &path,
        "PRAGMA journal_mode=WAL;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000)
         INSERT INTO t SELECT i, 'v' || i FROM n;",
    );
    let db = TempDb { dir, path };
    db.install(&["t"]);
    let replica = db.dir.path().join("replica.db");
    let direct = Arc::new(Mutex::new(Vec::new()));
    let seen = direct.clone();
    let mut engine =
        Engine::builder(&db.path).on_progress(move |p| seen.lock().unwrap().push(p.direct)).open().unwrap();
    let mut target = SqliteTarget::open(&replica).unwrap();
    assert_eq!(engine.drain(&mut target).unwrap().bootstrapped_rows, 30_000);
    let direct = direct.lock().unwrap().clone();
    assert!(!direct.is_empty() && direct.iter().all(|d| *d), "copied inside SQLite: {direct:?}");
    assert_equal(&db.path, &replica, &["t"]);
}
