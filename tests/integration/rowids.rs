//! A replica keeps the source's rowids: users and tools that read `rowid`
//! (or join on it) see the same rows in both. Tables whose rowid no
//! `INTEGER PRIMARY KEY` holds (a TEXT key, no key at all) through the
//! bulk bootstrap, `INSERT OR REPLACE`, UPSERT, key changes and deletes
//! from the `sqlite3` shell and Python, then a `VACUUM` that renumbers
//! them (followed by a reseed of what it renumbered); and a replica made
//! before rowids were kept is reseeded once.

use std::path::Path;

use crate::support::{Seed, Sidecar, TempDb, lines_with, python, sqlite3, wait_equal};

const DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);
const TABLES: [&str; 3] = ["k", "u", "n"];

/// Every table's `rowid` with its row, in rowid order, as the shell prints it.
fn rowids(db: &Path) -> String {
    sqlite3(
        db,
        "SELECT 'k', rowid, * FROM k ORDER BY rowid; SELECT 'u', rowid, * FROM u ORDER BY rowid; SELECT 'n', rowid, * FROM n ORDER BY rowid;",
    )
}

fn source() -> TempDb {
    // Rowids with gaps (rows deleted before the replica existed), so a
    // replica that numbered its rows itself would differ.
    let db = TempDb::with_schema(
        "CREATE TABLE k(name TEXT PRIMARY KEY, v);
         CREATE TABLE u(a INTEGER, b TEXT UNIQUE, c);
         CREATE TABLE n(x, y);
         WITH RECURSIVE i(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM i WHERE j < 300)
         INSERT INTO k SELECT 'k' || j, j FROM i;
         WITH RECURSIVE i(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM i WHERE j < 300)
         INSERT INTO u SELECT j, 'b' || j, j * 2 FROM i;
         WITH RECURSIVE i(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM i WHERE j < 300)
         INSERT INTO n SELECT j % 7, 'same' FROM i;
         DELETE FROM k WHERE v % 3 = 0; DELETE FROM u WHERE a % 4 = 0; DELETE FROM n WHERE rowid % 5 = 0;",
    );
    db.install(&TABLES);
    db
}

/// Random changes of every kind, from Python, with the seed.
fn python_writes(db: &Path, seed: u64) {
    python(
        db,
        &format!(
            r#"
import random, sqlite3, sys
random.seed({seed})
c = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
for i in range(400):
    r = random.random()
    c.execute("BEGIN IMMEDIATE")
    if r < 0.2:
        c.execute("INSERT OR REPLACE INTO k VALUES(?, ?)", ("k%d" % random.randint(1, 400), i))
    elif r < 0.35:
        c.execute("INSERT INTO k VALUES(?, ?) ON CONFLICT(name) DO UPDATE SET v = excluded.v", ("k%d" % random.randint(1, 400), -i))
    elif r < 0.45:
        c.execute("UPDATE k SET name = ? WHERE name = ?", ("r{seed}_%d" % i, "k%d" % random.randint(1, 400)))
    elif r < 0.55:
        c.execute("DELETE FROM k WHERE name = ?", ("k%d" % random.randint(1, 400),))
    elif r < 0.7:
        c.execute("REPLACE INTO u VALUES(?, ?, ?)", (i, "b%d" % random.randint(1, 400), i))
    elif r < 0.8:
        c.execute("DELETE FROM u WHERE b = ?", ("b%d" % random.randint(1, 400),))
    elif r < 0.9:
        c.execute("INSERT INTO n VALUES(?, 'same')", (i % 7,))
    else:
        c.execute("DELETE FROM n WHERE rowid = (SELECT rowid FROM n ORDER BY random() LIMIT 1)")
    c.execute("COMMIT")
"#
        ),
    );
}

fn equal_with_rowids(db: &TempDb, replica: &Path) {
    wait_equal(&db.path, replica, &TABLES, DEADLINE);
    assert_eq!(rowids(&db.path), rowids(replica), "rowids differ");
}

#[test]
fn a_replica_keeps_the_sources_rowids_through_replace_upsert_and_vacuum() {
    let seed = Seed::new("rowids::a_replica_keeps_the_sources_rowids_through_replace_upsert_and_vacuum", 27);
    let db = source();
    let replica = db.dir.path().join("replica.db");
    let target = format!("sqlite:{}", replica.display());
    let mut sidecar =
        Sidecar::start(&["--db", db.path.to_str().unwrap(), "--target", &target], &db.dir.path().join("sidecar.log"));
    // The bulk bootstrap copies rowids.
    equal_with_rowids(&db, &replica);
    // The shell: every way SQLite hands out or moves a rowid.
    sqlite3(
        &db.path,
        "INSERT OR REPLACE INTO k VALUES('k1', 'replaced');
         INSERT INTO k VALUES('k2', 'upsert') ON CONFLICT(name) DO UPDATE SET v = excluded.v;
         INSERT INTO k VALUES('new', 1);
         UPDATE k SET name = 'renamed' WHERE name = 'k4';
         UPDATE k SET rowid = 100000 WHERE name = 'k5';
         REPLACE INTO u VALUES(7, 'b1', 'evicts by the unique index');
         INSERT INTO n VALUES(1, 'same'); DELETE FROM n WHERE rowid = 2;",
    );
    equal_with_rowids(&db, &replica);
    python_writes(&db.path, seed.value);
    equal_with_rowids(&db, &replica);
    // VACUUM may renumber rowids no INTEGER PRIMARY KEY holds (SQLite
    // says so; today's keeps them when it can): the tables it may have
    // renumbered are reseeded, then changes go on.
    sqlite3(&db.path, "DELETE FROM k WHERE rowid < 50; VACUUM;");
    equal_with_rowids(&db, &replica);
    python_writes(&db.path, seed.value + 1);
    equal_with_rowids(&db, &replica);
    assert!(sidecar.running(), "{}", sidecar.log());
    let log = sidecar.log();
    let reseeded = lines_with(&log, "a VACUUM, which renumbers rowids");
    for table in TABLES {
        assert!(reseeded.iter().any(|l| l.contains(&format!("table={table}"))), "{table} reseeded: {log}");
    }
    assert!(lines_with(&log, "WARN").is_empty() && lines_with(&log, "ERROR").is_empty(), "{log}");
}

#[test]
fn a_replica_made_before_rowids_were_kept_is_reseeded_once() {
    let db = source();
    let replica = db.dir.path().join("replica.db");
    let target = format!("sqlite:{}", replica.display());
    let once =
        || crate::support::run_bin("replicator", &["--db", db.path.to_str().unwrap(), "--target", &target, "--once"]);
    let (code, _, err) = once();
    assert_eq!(code, 0, "{err}");
    // As an older replica left it: its own rowids for the table with a
    // TEXT key (tables without a key kept the source's already), and no
    // record of having kept the source's.
    sqlite3(&replica, "UPDATE k SET rowid = rowid + 1000; DROP TABLE _cdc_replica_rowids;");
    sqlite3(&db.path, "INSERT INTO k VALUES('after', 1); INSERT OR REPLACE INTO u VALUES(1, 'b1', 'x');");
    let (code, _, err) = once();
    assert_eq!(code, 0, "{err}");
    let said = lines_with(&err, "written before the replica kept the source's rowids");
    assert!(said.len() == 1 && said[0].contains("table=k"), "{err}");
    equal_with_rowids(&db, &replica);
    // Once: the next run carries on.
    sqlite3(&db.path, "INSERT INTO k VALUES('later', 2);");
    let (code, _, err) = once();
    assert_eq!(code, 0, "{err}");
    assert!(lines_with(&err, "bootstrapping").is_empty(), "{err}");
    equal_with_rowids(&db, &replica);
}
