//! `--format debezium`: the envelope checked field by field, as a
//! Debezium consumer reads it, from the jsonl target (a file) and the
//! HTTP target (a real server in this process).

use serde_json::Value as Json;

use crate::replicator::http_server_on;
use crate::support::{TempDb, run_bin, sqlite3};

const SCHEMA: &str = "CREATE TABLE item(id INTEGER PRIMARY KEY, n INTEGER, r REAL, t TEXT, b BLOB);
     INSERT INTO item VALUES(1, 1, 1.0, 'one', x'00ff'), (2, -9223372036854775808, 9e999, NULL, NULL), (3, 3, -0.5, '', x'');";

fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The `source` block every envelope carries.
fn check_source(e: &Json, snapshot: &str, seq: Option<i64>, (from, to): (i64, i64)) {
    let s = &e["source"];
    assert_eq!(s["connector"], "sqlite", "{e}");
    assert_eq!(s["name"], "source", "the database file's stem: {e}");
    assert_eq!(s["db"], "source", "{e}");
    assert_eq!(s["table"], "item", "{e}");
    assert_eq!(s["snapshot"], snapshot, "{e}");
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"), "{e}");
    let ts = s["ts_ms"].as_i64().unwrap();
    assert!(from - 1000 <= ts && ts <= to + 1000, "source.ts_ms {ts} outside [{from}, {to}]: {e}");
    match seq {
        Some(seq) => {
            assert_eq!(s["seq"], seq, "{e}");
            assert_eq!(s["sequence"], seq.to_string(), "{e}");
        }
        None => assert!(s.get("seq").is_none() && s.get("sequence").is_none(), "{e}"),
    }
    let top = e["ts_ms"].as_i64().unwrap();
    assert!(top >= ts - 1000 && top <= to + 1000, "{e}");
    assert!(e["transaction"].is_null(), "{e}");
}

#[test]
fn envelopes_carry_op_images_source_and_exact_values_field_by_field() {
    let db = TempDb::with_schema(SCHEMA);
    db.install(&["item"]);
    let out = db.dir.path().join("events.jsonl");
    let target = format!("jsonl:{}", out.display());
    let src = db.path.to_str().unwrap();
    let args = ["--db", src, "--target", &target, "--once", "--format", "debezium", "--tombstones"];
    let t0 = wall_ms();
    let (code, _, err) = run_bin("replicator", &args);
    assert_eq!(code, 0, "{err}");
    sqlite3(
        &db.path,
        "INSERT INTO item VALUES(4, 4, 4.0, 'four', x'04');
         UPDATE item SET n = 10, r = 2, t = 'ONE' WHERE id = 1;
         DELETE FROM item WHERE id = 3;",
    );
    let (code, _, err) = run_bin("replicator", &args);
    assert_eq!(code, 0, "{err}");
    let t1 = wall_ms();
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let events: Vec<Json> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 3 + 3 + 1, "three snapshot rows, three changes, one tombstone:\n{text}");

    // The bootstrap: op r, no before, snapshot true... and last on the last row.
    for (i, e) in events[..3].iter().enumerate() {
        assert_eq!(e["op"], "r", "{e}");
        assert!(e["before"].is_null(), "{e}");
        check_source(e, if i == 2 { "last" } else { "true" }, None, (t0, t1));
    }
    // Storage classes: INTEGER a JSON integer, REAL always with a point or
    // an exponent, TEXT a string, BLOB base64, NULL null, infinity a string.
    assert!(lines[0].contains(r#""after":{"id":1,"n":1,"r":1.0,"t":"one","b":"AP8="}"#), "{}", lines[0]);
    assert_eq!(events[1]["after"]["n"], i64::MIN, "{}", lines[1]);
    assert_eq!(events[1]["after"]["r"], "Infinity", "{}", lines[1]);
    assert!(events[1]["after"]["t"].is_null() && events[1]["after"]["b"].is_null(), "{}", lines[1]);
    assert!(lines[2].contains(r#""r":-0.5,"t":"","b":"""#), "{}", lines[2]);

    // The changes, in log order, with seq and the application's write time.
    let seqs: Vec<i64> =
        events[3..].iter().filter(|e| !e.is_null()).map(|e| e["source"]["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let (c, u, d) = (&events[3], &events[4], &events[5]);
    assert_eq!(c["op"], "c");
    assert!(c["before"].is_null());
    assert!(lines[3].contains(r#""after":{"id":4,"n":4,"r":4.0,"t":"four","b":"BA=="}"#), "{}", lines[3]);
    check_source(c, "false", Some(seqs[0]), (t0, t1));
    assert_eq!(u["op"], "u");
    assert!(lines[4].contains(r#""before":{"id":1,"n":1,"r":1.0,"t":"one","b":"AP8="}"#), "{}", lines[4]);
    // REAL stays REAL (2.0, not 2) although the application wrote 2.
    assert!(lines[4].contains(r#""after":{"id":1,"n":10,"r":2.0,"t":"ONE","b":"AP8="}"#), "{}", lines[4]);
    check_source(u, "false", Some(seqs[1]), (t0, t1));
    assert_eq!(d["op"], "d");
    assert!(d["after"].is_null());
    assert_eq!(d["before"]["id"], 3);
    check_source(d, "false", Some(seqs[2]), (t0, t1));
    assert_eq!(lines[6], "null", "a tombstone after the delete");
}

#[test]
fn the_http_target_posts_arrays_of_envelopes() {
    let db = TempDb::with_schema("CREATE TABLE item(id INTEGER PRIMARY KEY, t TEXT);");
    db.install(&["item"]);
    sqlite3(&db.path, "INSERT INTO item VALUES(1, 'a'); DELETE FROM item; INSERT INTO item VALUES(2, 'stop');");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let server = http_server_on(listener, usize::MAX, |_| "200 OK");
    let src = db.path.to_str().unwrap();
    let (code, _, err) = run_bin(
        "replicator",
        &["--db", src, "--target", &url, "--once", "--bootstrap", "never", "--format", "debezium"],
    );
    assert_eq!(code, 0, "{err}");
    let (_, accepted) = server.join().unwrap();
    let body: Json = serde_json::from_str(&accepted.concat()).unwrap();
    let ops: Vec<&str> = body.as_array().unwrap().iter().map(|e| e["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["c", "d", "c"], "no tombstones unless asked: {body}");
    assert_eq!(body[2]["after"], serde_json::json!({"id": 2, "t": "stop"}));
}

#[test]
fn bad_format_options_are_refused_with_one_line_and_no_change() {
    let db = TempDb::with_schema(SCHEMA);
    db.install(&["item"]);
    let src = db.path.to_str().unwrap();
    let replica = format!("sqlite:{}", db.dir.path().join("replica.db").display());
    let jsonl = format!("jsonl:{}", db.dir.path().join("out.jsonl").display());
    let before = std::fs::read(&db.path).unwrap();
    for (args, expected, code) in [
        (vec!["--target", &replica, "--format", "debezium"], "--format debezium is for the jsonl and http targets", 2),
        (vec!["--target", &jsonl, "--tombstones"], "--tombstones needs --format debezium", 2),
        (vec!["--target", &jsonl, "--format", "avro"], "invalid value 'avro' for '--format <FORMAT>'", 2),
    ] {
        let (got, _, err) = run_bin("replicator", &[&["--db", src, "--once"][..], &args].concat());
        assert_eq!(got, code, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert_eq!(std::fs::read(&db.path).unwrap(), before, "{args:?}");
        assert!(!db.dir.path().join("replica.db").exists() && !db.dir.path().join("out.jsonl").exists(), "{args:?}");
    }
}
