//! Installing this version over capture installed by the previous one
//! (log format 1). The fixture was made by the previous release itself
//! (`tests/fixtures/format1/`, `sqlite3 .dump --preserve-rowids`): five
//! tables captured, a replica and a JSON-lines consumer bootstrapped at
//! seq 5, then 13 changes neither has delivered (a 41-column update that
//! spills over three format 1 rows among them).

use std::path::Path;

use crate::support::{apply_events, assert_equal, lines_with, run_bin, schema_dump, snapshot, sqlite3};

const SOURCE: &str = include_str!("../fixtures/format1/source.sql");
const REPLICA: &str = include_str!("../fixtures/format1/replica.sql");
const TABLES: [&str; 5] = ["bag", "item", "kv", "tag", "wide"];

/// The fixture's source and replica, loaded into `dir`. The replica
/// recorded the layout (file identity and schema cookie) of the file the
/// fixture was dumped from: it is pointed at the file loaded here, as if
/// the dump had never been taken (else the replica rightly reseeds a
/// source it takes for another file).
fn load(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (source, replica) = (dir.join("source.db"), dir.join("replica.db"));
    sqlite3(&source, &format!("{SOURCE}\nPRAGMA journal_mode=WAL;"));
    sqlite3(&replica, REPLICA);
    let cookie = count(&source, "PRAGMA schema_version");
    let layout = format!("{}:{cookie}", cdc::lock::FileId::of(&source).unwrap());
    let conn = rusqlite::Connection::open(&replica).unwrap();
    let state: String = conn.query_row("SELECT state FROM _cdc_replica_state", [], |r| r.get(0)).unwrap();
    let mut state: serde_json::Value = serde_json::from_str(&state).unwrap();
    state["layout"] = layout.clone().into();
    conn.execute("UPDATE _cdc_replica_state SET state = ?1", [state.to_string()]).unwrap();
    // The same for the consumer whose state the source keeps.
    let conn = rusqlite::Connection::open(&source).unwrap();
    let state: String =
        conn.query_row("SELECT state FROM _cdc_consumers WHERE name = 'events'", [], |r| r.get(0)).unwrap();
    let mut state: serde_json::Value = serde_json::from_str(&state).unwrap();
    state["layout"] = layout.into();
    conn.execute("UPDATE _cdc_consumers SET state = ?1 WHERE name = 'events'", [state.to_string()]).unwrap();
    (source, replica)
}

fn count(db: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(db).unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn the_fixture_holds_the_triggers_format_1_generated() {
    // What `cdc_schema::legacy` generates is what the previous release
    // installed (the bench's "format 1" variant relies on it).
    let dir = tempfile::tempdir().unwrap();
    let (source, _) = load(dir.path());
    let conn = rusqlite::Connection::open(&source).unwrap();
    for table in TABLES {
        let desc = cdc::schema::describe(&conn, table).unwrap();
        for (op, expected) in cdc::Op::ALL.iter().zip(cdc::sql::legacy::create_triggers(&desc)) {
            let stored: String = conn
                .query_row("SELECT sql FROM sqlite_master WHERE name = ?1", [desc.trigger_name(*op)], |r| r.get(0))
                .unwrap();
            assert_eq!(stored, expected, "{table}");
        }
    }
}

#[test]
fn an_older_log_is_upgraded_in_place_and_its_consumers_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (source, replica) = load(dir.path());
    let (src, rep) = (source.to_str().unwrap(), replica.to_str().unwrap());
    let target = format!("sqlite:{rep}");
    let replica_model = {
        let conn = rusqlite::Connection::open(&replica).unwrap();
        TABLES.map(|t| snapshot(&conn, &cdc::schema::describe(&conn, t).unwrap()))
    };

    // Before the upgrade, this version refuses the old log in one line
    // naming the fix, and changes nothing.
    let schema = schema_dump(&source);
    let replica_schema = schema_dump(&replica);
    for args in [
        vec!["--db", src, "--target", &target, "--consumer", "replica", "--once"],
        vec!["--db", src, "--target", "jsonl:-", "--consumer", "events", "--once"],
    ] {
        let (code, out, err) = run_bin("replicator", &args);
        assert_ne!(code, 0, "{err}");
        assert!(out.is_empty(), "{out}");
        let said = lines_with(&err, "older version");
        assert_eq!(said.len(), 1, "{err}");
        assert!(said[0].contains(&format!("cdc-setup install --db {src}")), "{err}");
    }
    let (code, _, err) = run_bin("cdc-setup", &["status", "--db", src]);
    assert_ne!(code, 0);
    assert!(err.contains("older version"), "{err}");
    assert_eq!(schema_dump(&source), schema);
    assert_eq!(schema_dump(&replica), replica_schema);

    // The upgrade: one install, nothing else to do.
    let pending_before = count(&source, "SELECT count(*) FROM _cdc_log WHERE op BETWEEN 1 AND 3");
    assert_eq!(pending_before, 13);
    let (code, out, err) = run_bin("cdc-setup", &["install", "--db", src, "--all"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("upgraded the log"), "{out}");
    assert_eq!(count(&source, "SELECT count(*) FROM _cdc_log_v1 WHERE op BETWEEN 1 AND 3"), 13);
    assert_eq!(count(&source, "SELECT count(*) FROM pragma_table_info('_cdc_log') WHERE name = 'kind'"), 1);
    // Installing again is a no-op.
    let upgraded = schema_dump(&source);
    let (code, out, _) = run_bin("cdc-setup", &["install", "--db", src, "--all"]);
    assert_eq!(code, 0);
    assert!(!out.contains("upgraded"), "{out}");
    assert_eq!(schema_dump(&source), upgraded);

    // Writes after it, by the shell: every kind of change again, a wide
    // update spilling over rows of the new format among them.
    sqlite3(
        &source,
        "INSERT INTO item VALUES(4, 'four', 4.0, zeroblob(3)); UPDATE item SET data = x'ff' WHERE id = 3; DELETE FROM item WHERE id = 1;
         INSERT INTO bag VALUES(4, 'd'); UPDATE bag SET x = 10 WHERE rowid = 1; DELETE FROM bag WHERE rowid = 2;
         INSERT INTO kv VALUES('d', 1e308); UPDATE kv SET k = 'cc' WHERE k = 'c'; DELETE FROM kv WHERE k = 'a';
         UPDATE wide SET c0 = 'again', c39 = NULL WHERE id = 2; DELETE FROM wide WHERE id = 1;
         INSERT OR REPLACE INTO tag VALUES('y', -1);",
    );

    // The replica goes on from its own position: no reseed, equal; but
    // for the table with a TEXT key, whose rows an older replica wrote
    // with rowids of its own: reseeded once, with the source's rowids.
    let (code, _, err) = run_bin("replicator", &["--db", src, "--target", &target, "--consumer", "replica", "--once"]);
    assert_eq!(code, 0, "{err}");
    let reseeded = lines_with(&err, "bootstrapping");
    assert!(reseeded.len() == 1 && reseeded[0].contains("table=tag"), "{err}");
    assert_eq!(lines_with(&err, "written before the replica kept the source's rowids").len(), 1, "{err}");
    assert_equal(&source, &replica, &TABLES);

    // So does the JSON-lines consumer: every change once, in order, none
    // of the old ones lost, no bootstrap; replayed on the rows it had, they
    // give the source.
    let (code, out, err) =
        run_bin("replicator", &["--db", src, "--target", "jsonl:-", "--consumer", "events", "--once"]);
    assert_eq!(code, 0, "{err}");
    let events: Vec<cdc::Event> = out.lines().map(|l| cdc::json::event_from_json(l).unwrap()).collect();
    assert_eq!(events.len(), 13 + 12, "{out}");
    let seqs: Vec<i64> = events
        .iter()
        .map(|e| match e {
            cdc::Event::Change(c) => c.seq,
            other => panic!("not a change: {other:?}"),
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let conn = rusqlite::Connection::open(&source).unwrap();
    for (table, mut model) in TABLES.into_iter().zip(replica_model) {
        let desc = cdc::schema::describe(&conn, table).unwrap();
        apply_events(&desc, &events, &mut model);
        // `INSERT OR REPLACE` on a TEXT key evicts the row holding the key
        // (no delete is logged, as SQLite fires no trigger for it): the
        // newest row of each key stays, as in a replica.
        let key = desc.key_positions();
        if !key.is_empty() && desc.integer_primary_key().is_none() {
            let mut newest: std::collections::BTreeMap<Vec<String>, (String, cdc::Row)> = Default::default();
            for (id, row) in std::mem::take(&mut model) {
                let k: Vec<String> = key.iter().map(|&i| format!("{:?}", row.values[i])).collect();
                if newest.get(&k).is_none_or(|(_, kept)| kept.rowid < row.rowid) {
                    newest.insert(k, (id, row));
                }
            }
            model = newest.into_values().collect();
        }
        assert_eq!(model, snapshot(&conn, &desc), "{table}");
    }
    drop(conn);

    // Both consumers are past the old rows: the next acknowledgement
    // prunes them and drops their table.
    sqlite3(&source, "INSERT INTO tag VALUES('z', 0);");
    for args in [
        vec!["--db", src, "--target", &target, "--consumer", "replica", "--once"],
        vec!["--db", src, "--target", "jsonl:/dev/null", "--consumer", "events", "--once"],
    ] {
        let (code, _, err) = run_bin("replicator", &args);
        assert_eq!(code, 0, "{err}");
    }
    assert_eq!(count(&source, "SELECT count(*) FROM sqlite_master WHERE name = '_cdc_log_v1'"), 0);
    assert_equal(&source, &replica, &TABLES);

    // Removing capture leaves the file as before the first install.
    let (code, _, err) = run_bin("cdc-setup", &["uninstall", "--db", src, "--force"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(count(&source, "SELECT count(*) FROM sqlite_master WHERE name LIKE '\\_cdc\\_%' ESCAPE '\\'"), 0);
}
