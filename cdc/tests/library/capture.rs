//! Capture: triggers written by foreign writers decode to exact changes.

use cdc::{Op, Value};

use crate::support::{TempDb, all_changes, assert_log_reproduces, python, sqlite3};

/// Every value of design section 3, as SQL literals for the shell.
const SQL_VALUES: &[&str] = &[
    "NULL",
    "0",
    "-1",
    "9223372036854775807",
    "(-9223372036854775807 - 1)",
    "0.1",
    "5e-324",
    "1.7976931348623157e308",
    "9e999",
    "-9e999",
    "'héllo wörld 🌍 ✓'",
    "'it''s \"quoted\"'",
    "'line1' || char(10) || 'line2' || char(13) || char(9)",
    "''",
    "x''",
    "x'00ff7f80'",
    "zeroblob(3)",
    "randomblob(16 * 1024 * 1024)",
];

const PY_VALUES: &str = r#"
values = [None, 0, -1, 2**63 - 1, -2**63, 0.1, 5e-324, 1.7976931348623157e308,
          float("inf"), float("-inf"), -0.0, "héllo wörld 🌍 ✓", "it's \"quoted\"",
          "line1\nline2\r\t", "", b"", b"\x00\xff\x7f\x80", bytes(range(256)) * 65536]
"#;

#[test]
fn every_value_survives_from_the_sqlite3_shell() {
    let db = TempDb::with_schema("CREATE TABLE vals(id INTEGER PRIMARY KEY, v, typed REAL, t TEXT);");
    db.install(&["vals"]);
    let mut sql = String::from("BEGIN;\n");
    for (i, v) in SQL_VALUES.iter().enumerate() {
        sql.push_str(&format!("INSERT INTO vals(id, v, typed, t) VALUES({i}, {v}, {v}, {v});\n"));
    }
    // Every row's value moves to the next one, then every other row goes.
    sql.push_str("UPDATE vals SET v = (SELECT v FROM vals AS o WHERE o.id = (vals.id + 1) % 18);\n");
    sql.push_str("DELETE FROM vals WHERE id % 2 = 0;\nCOMMIT;\n");
    sqlite3(&db.path, &sql);
    assert_log_reproduces(&db, "vals");

    let changes = all_changes(&db.conn()).unwrap();
    assert_eq!(changes.len(), 18 + 18 + 9);
    let inserted: Vec<&Value> = changes[..18].iter().map(|c| &c.after.as_ref().unwrap().values[1]).collect();
    assert_eq!(inserted[0], &Value::Null);
    assert_eq!(inserted[3], &Value::Integer(i64::MAX));
    assert_eq!(inserted[4], &Value::Integer(i64::MIN));
    assert_eq!(inserted[5], &Value::Real(0.1));
    assert_eq!(inserted[6], &Value::Real(5e-324));
    assert_eq!(inserted[7], &Value::Real(f64::MAX));
    assert_eq!(inserted[8], &Value::Real(f64::INFINITY));
    assert_eq!(inserted[9], &Value::Real(f64::NEG_INFINITY));
    assert_eq!(inserted[10], &Value::Text("héllo wörld 🌍 ✓".into()));
    assert_eq!(inserted[12], &Value::Text("line1\nline2\r\t".into()));
    assert_eq!(inserted[14], &Value::Blob(vec![]));
    assert!(matches!(inserted[17], Value::Blob(b) if b.len() == 16 * 1024 * 1024));
    // A REAL-affinity column stores the integer 0 as REAL 0.0: the log
    // must carry what was stored, not what was written.
    assert_eq!(changes[1].after.as_ref().unwrap().values[2], Value::Real(0.0));
}

#[test]
fn every_value_survives_from_python() {
    let db = TempDb::with_schema("CREATE TABLE vals(id INTEGER PRIMARY KEY, v);");
    db.install(&["vals"]);
    python(
        &db.path,
        &format!(
            "{PY_VALUES}\nimport sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\n\
             c.executemany('INSERT INTO vals(id, v) VALUES(?, ?)', list(enumerate(values)))\n\
             c.commit()\n\
             c.executemany('UPDATE vals SET v = ? WHERE id = ?', [(v, len(values) - 1 - i) for i, v in enumerate(values)])\n\
             c.commit()\n\
             c.execute('DELETE FROM vals WHERE id < 5')\nc.commit()\n"
        ),
    );
    assert_log_reproduces(&db, "vals");
    let changes = all_changes(&db.conn()).unwrap();
    let after = |i: usize| changes[i].after.as_ref().unwrap().values[1].clone();
    assert_eq!(after(4), Value::Integer(i64::MIN));
    assert_eq!(after(10), Value::Real(-0.0));
    assert_eq!(after(17), Value::Blob((0..=255u8).collect::<Vec<_>>().repeat(65536)));
}

#[test]
fn tricky_schemas_from_two_foreign_writers() {
    let wide_cols: Vec<String> = (0..1000).map(|i| format!("c{i} INTEGER")).collect();
    let schema = format!(
        "CREATE TABLE kv(a TEXT, b INT, v, PRIMARY KEY(b, a)) WITHOUT ROWID;
         CREATE TABLE nokey(x, y);
         CREATE TABLE \"select\"(\"from\" INTEGER PRIMARY KEY, \"a\"\"b\" TEXT, \"ünï cødé\" BLOB, \"order by\" REAL);
         CREATE TABLE \"my \"\"weird\"\" table\"(\"group\" TEXT, \"'\" INT);
         CREATE TABLE wide(id INTEGER PRIMARY KEY, {});
         CREATE TABLE st(id INTEGER PRIMARY KEY, a ANY, b TEXT, c INT) STRICT;
         CREATE TABLE gen(a INT, t TEXT, b INT GENERATED ALWAYS AS (a * 2) VIRTUAL, c TEXT GENERATED ALWAYS AS (upper(t)) STORED);
         CREATE TABLE shadow(rowid TEXT, oid INT, v);",
        wide_cols.join(", ")
    );
    let db = TempDb::with_schema(&schema);
    let tables = ["kv", "nokey", "select", "my \"weird\" table", "wide", "st", "gen", "shadow"];
    db.install(&tables);

    let wide_values: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    sqlite3(
        &db.path,
        &format!(
            "INSERT INTO kv VALUES('x', 1, 1.5), ('y', 1, x'01'), ('x', 2, NULL);
             UPDATE kv SET b = 3 WHERE a = 'x' AND b = 1;
             DELETE FROM kv WHERE b = 2;
             INSERT INTO nokey VALUES(1, 'dup'), (1, 'dup'), (1, 'dup');
             DELETE FROM nokey WHERE rowid = 2;
             UPDATE nokey SET y = 'changed' WHERE rowid = 3;
             INSERT INTO \"select\" VALUES(7, 'q\"uote', x'00', 1e-300);
             UPDATE \"select\" SET \"from\" = 8;
             INSERT INTO \"my \"\"weird\"\" table\" VALUES('g', 1);
             INSERT INTO wide VALUES(1, {});
             UPDATE wide SET c999 = -1, c0 = NULL;
             INSERT INTO wide(id, c500) VALUES(2, 5);
             DELETE FROM wide WHERE id = 2;
             INSERT INTO st VALUES(1, 1.5, 'a', 3), (2, x'ff', 'b', 4);
             UPDATE st SET a = 'text now';
             INSERT INTO gen(a, t) VALUES(2, 'abc'), (3, NULL);
             UPDATE gen SET a = 10;
             INSERT INTO shadow VALUES('r', 1, 2);
             UPDATE shadow SET v = 3;",
            wide_values.join(", ")
        ),
    );
    python(
        &db.path,
        "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\n\
         c.execute('INSERT INTO kv VALUES (?, ?, ?)', ('z', 9, 'py'))\n\
         c.execute('INSERT INTO nokey VALUES (?, ?)', (None, b'\\x00'))\n\
         c.execute('UPDATE \"my \"\"weird\"\" table\" SET \"group\" = ?', ('ü',))\n\
         c.execute('UPDATE wide SET c1 = c1 + 1000')\n\
         c.execute('DELETE FROM st WHERE id = 1')\n\
         c.execute('DELETE FROM gen WHERE a = 3')\n\
         c.commit()\n",
    );
    for t in tables {
        assert_log_reproduces(&db, t);
    }
    let changes = all_changes(&db.conn()).unwrap();
    let gen_change = changes.iter().find(|c| &*c.table == "gen").unwrap();
    assert_eq!(&*gen_change.columns, ["a", "t"], "generated columns are not captured");
    let wide = changes.iter().find(|c| &*c.table == "wide" && c.op == Op::Update).unwrap();
    assert_eq!(wide.before.as_ref().unwrap().values.len(), 1001);
    assert_eq!(wide.after.as_ref().unwrap().values[1000], Value::Integer(-1));
    // The log stays within a stock build's 2000-column limit.
    let log_columns: i64 =
        db.conn().query_row("SELECT count(*) FROM pragma_table_info('_cdc_log')", [], |r| r.get(0)).unwrap();
    assert!(log_columns < 100, "log has {log_columns} columns");
}

#[test]
fn rolled_back_transactions_leave_no_trace() {
    let db = TempDb::with_schema("CREATE TABLE t(id INTEGER PRIMARY KEY, v);");
    db.install(&["t"]);
    sqlite3(
        &db.path,
        "INSERT INTO t VALUES(1, 'kept');\nBEGIN; INSERT INTO t VALUES(2, 'gone'); UPDATE t SET v = 'x'; ROLLBACK;",
    );
    python(
        &db.path,
        "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nc.execute('DELETE FROM t')\nc.rollback()\n",
    );
    let changes = all_changes(&db.conn()).unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].after.as_ref().unwrap().values[1], Value::Text("kept".into()));
}

#[test]
fn seq_is_never_reused_after_pruning_vacuum_and_reopen() {
    let db = TempDb::with_schema("CREATE TABLE t(id INTEGER PRIMARY KEY, v);");
    db.install(&["t"]);
    sqlite3(&db.path, "INSERT INTO t(v) VALUES(1), (2), (3); DELETE FROM t;");
    let top = {
        let mut conn = db.conn();
        let top = cdc::log::high_water(&conn).unwrap();
        cdc::source::set_position(&conn, "c", top).unwrap();
        // Consumed whole: the table is sealed and dropped at once (the
        // install marker and six changes), and the marker that starts the
        // new one keeps seq going up.
        assert_eq!(cdc::source::prune(&mut conn).unwrap(), 7);
        let marker = cdc::log::high_water(&conn).unwrap();
        assert_eq!(marker, top + 1, "the new table starts after the old one's last row");
        assert_eq!(cdc::source::prune(&mut conn).unwrap(), 0, "nothing more to free");
        cdc::source::set_position(&conn, "c", marker).unwrap();
        let status = cdc::capture::status(&conn).unwrap();
        assert_eq!(status.consumers[0].pending, 0, "nothing left to deliver");
        assert_eq!(cdc::log::segments(&conn).unwrap().len(), 1, "only the current table");
        marker
    };
    sqlite3(&db.path, "VACUUM;");
    sqlite3(&db.path, "INSERT INTO t(v) VALUES('after');");
    let conn = db.conn();
    let batch = cdc::log::LogReader::new().read(&conn, top, i64::MAX, 10).unwrap();
    assert_eq!(batch.changes.len(), 1);
    assert!(batch.changes[0].seq > top, "seq {} reused (top was {top})", batch.changes[0].seq);
}

#[test]
fn text_that_is_not_utf8_is_refused_naming_table_and_seq() {
    let db = TempDb::with_schema("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);");
    db.install(&["t"]);
    sqlite3(&db.path, "INSERT INTO t VALUES(1, 'fine'); INSERT INTO t VALUES(2, CAST(x'ff00fe' AS TEXT));");
    let err = all_changes(&db.conn()).unwrap_err().to_string();
    // Log row 1 is the marker install wrote; the changes follow.
    assert_eq!(err, "log row 3 of table \"t\": column \"v\" holds TEXT that is not valid UTF-8");
}

#[test]
fn virtual_tables_and_views_are_refused() {
    let db = TempDb::with_schema(
        "CREATE VIRTUAL TABLE f USING fts5(x); CREATE TABLE t(a); CREATE VIEW w AS SELECT a FROM t;",
    );
    let mut conn = db.conn();
    let err = cdc::capture::install(&mut conn, &["f".into()]).unwrap_err().to_string();
    assert!(err.contains("\"f\" is a virtual table"), "{err}");
    let err = cdc::capture::install(&mut conn, &["w".into()]).unwrap_err().to_string();
    assert!(err.contains("\"w\" is a view"), "{err}");
    let err = cdc::capture::install(&mut conn, &["f_data".into()]).unwrap_err().to_string();
    assert!(err.contains("shadow table"), "{err}");
    assert!(!cdc::log::is_initialised(&conn).unwrap(), "a failed install changes nothing");
}

#[test]
fn schema_drift_is_caught_and_old_rows_still_decode() {
    let db = TempDb::with_schema("CREATE TABLE t(id INTEGER PRIMARY KEY, v);");
    db.install(&["t"]);
    sqlite3(&db.path, "INSERT INTO t VALUES(1, 'before');");
    sqlite3(&db.path, "ALTER TABLE t ADD COLUMN extra TEXT;");
    let conn = db.conn();
    let err = cdc::capture::verify(&conn, &["t".into()]).unwrap_err();
    assert!(err.to_string().contains("column \"extra\" was added"), "{err}");
    assert_eq!(err.fix(), Some(cdc::Fix::Reattach { db: db.path.clone(), table: "t".into() }), "{err}");
    drop(conn);
    let mut conn = db.conn();
    let outcome = cdc::capture::install(&mut conn, &["t".into()]).unwrap();
    assert!(matches!(&outcome[0], cdc::capture::Installed::Reattached { changes, .. } if changes.contains("extra")));
    sqlite3(&db.path, "INSERT INTO t VALUES(2, 'after', 'x');");
    let changes = all_changes(&conn).unwrap();
    assert_eq!(changes[0].after.as_ref().unwrap().values, vec![Value::Integer(1), Value::Text("before".into())]);
    assert_eq!(changes[1].after.as_ref().unwrap().values.len(), 3);
    sqlite3(&db.path, "ALTER TABLE t RENAME TO t2;");
    let err = cdc::capture::verify(&conn, &[]).unwrap_err().to_string();
    assert!(err.contains("dropped or renamed"), "{err}");
}

mod prop {
    use cdc::Value;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::Integer),
            prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0)].prop_map(Value::Integer),
            any::<f64>().prop_filter("SQLite stores NaN as NULL", |f| !f.is_nan()).prop_map(Value::Real),
            prop_oneof![Just(0.1), Just(5e-324), Just(f64::MAX), Just(f64::INFINITY), Just(-0.0)].prop_map(Value::Real),
            any::<String>().prop_map(Value::Text),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(Value::Blob),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any row (40 columns: an UPDATE spills over three log rows)
        /// survives trigger and decode bit for bit.
        #[test]
        fn any_row_survives_capture(a in proptest::collection::vec(value(), 40), b in proptest::collection::vec(value(), 40)) {
            let mut conn = rusqlite::Connection::open_in_memory().unwrap();
            let cols: Vec<String> = (0..40).map(|i| format!("c{i}")).collect();
            conn.execute(&format!("CREATE TABLE t({})", cols.join(", ")), []).unwrap();
            cdc::capture::install(&mut conn, &["t".into()]).unwrap();
            let params: Vec<String> = (1..=40).map(|i| format!("?{i}")).collect();
            conn.execute(&format!("INSERT INTO t VALUES({})", params.join(", ")), rusqlite::params_from_iter(&a)).unwrap();
            let sets: Vec<String> = cols.iter().enumerate().map(|(i, c)| format!("{c} = ?{}", i + 1)).collect();
            conn.execute(&format!("UPDATE t SET {}", sets.join(", ")), rusqlite::params_from_iter(&b)).unwrap();
            conn.execute("DELETE FROM t", []).unwrap();
            let changes = crate::support::all_changes(&conn).unwrap();
            prop_assert_eq!(changes.len(), 3);
            prop_assert_eq!(&changes[0].after.as_ref().unwrap().values, &a);
            prop_assert_eq!(&changes[1].before.as_ref().unwrap().values, &a);
            prop_assert_eq!(&changes[1].after.as_ref().unwrap().values, &b);
            prop_assert_eq!(&changes[2].before.as_ref().unwrap().values, &b);
        }
    }
}
