//! Scale-out through NATS JetStream, against a real `nats-server -js`: a
//! publisher beside the source, followers applying the stream to their own
//! replicas, and the faults of a network in production (the server killed
//! and restarted, the publisher and followers SIGKILLed, a follower that
//! joins late, retention removing what a follower still needed). Every
//! test ends with each follower's replica equal to the source value by
//! value and `typeof()` by `typeof()`, or with a loud stop.

use std::path::Path;
use std::time::Duration;

use crate::replicator::{APP_TABLES, app_db, looping_workload, python_workload};
use crate::support::{
    NatsServer, Seed, Sidecar, Xorshift, lines_with, run_bin, spawn_python_until, sqlite3, wait_equal,
};

const LONG: Duration = Duration::from_secs(180);

/// A table whose name needs escaping as a subject token.
const WEIRD: &str = "we.ird ünï*";

fn weird_sql(n: u64) -> String {
    format!(
        "INSERT INTO \"{WEIRD}\"(v) VALUES({n}), ('t{n}'), (x'00ff'), ({n}.5); \
         DELETE FROM \"{WEIRD}\" WHERE id % 7 = {};",
        n % 7
    )
}

fn app_with_weird_table() -> crate::support::TempDb {
    let db = app_db();
    sqlite3(&db.path, &format!("CREATE TABLE \"{WEIRD}\"(id INTEGER PRIMARY KEY, v);"));
    let (code, _, err) = run_bin("cdc-setup", &["install", "--db", db.path.to_str().unwrap(), "--table", WEIRD]);
    assert_eq!(code, 0, "{err}");
    db
}

fn all_tables() -> Vec<&'static str> {
    let mut t = APP_TABLES.to_vec();
    t.push(WEIRD);
    t
}

fn publisher(db: &Path, url: &str, log: &Path) -> Sidecar {
    Sidecar::start(
        &["--db", db.to_str().unwrap(), "--target", url, "--poll-interval", "20ms", "--status-interval", "0"],
        log,
    )
}

fn follower(url: &str, replica: &Path, extra: &[&str], log: &Path) -> Sidecar {
    let target = format!("sqlite:{}", replica.display());
    let mut args = vec!["--from", url, "--target", &target];
    args.extend_from_slice(extra);
    Sidecar::start(&args, log)
}

fn replicator(args: &[&str]) -> (i32, String, String) {
    run_bin("replicator", args)
}

fn publish_once(db: &Path, url: &str, extra: &[&str]) {
    let mut args = vec!["--db", db.to_str().unwrap(), "--target", url, "--once"];
    args.extend_from_slice(extra);
    let (code, _, err) = replicator(&args);
    assert_eq!(code, 0, "publisher: {err}");
}

fn follow_once(url: &str, replica: &Path) -> (i32, String) {
    let target = format!("sqlite:{}", replica.display());
    let (code, _, err) = replicator(&["--from", url, "--target", &target, "--once"]);
    (code, err)
}

fn no_errors(log: &str, who: &str) {
    let bad: Vec<&str> = log.lines().filter(|l| l.contains("ERROR") || l.contains("panicked")).collect();
    assert!(bad.is_empty(), "{who} logged errors:\n{}", bad.join("\n"));
}

#[test]
fn followers_on_their_own_replicas_equal_the_source_under_foreign_writers() {
    let seed = Seed::new("nats::followers_on_their_own_replicas_equal_the_source_under_foreign_writers", 14);
    let server = NatsServer::start();
    let db = app_with_weird_table();
    let dir = db.dir.path();
    let url = server.url("APP");
    python_workload(&db.path, seed.value, 200);
    let publisher = publisher(&db.path, &url, &dir.join("publisher.log"));
    let (all, some) = (dir.join("all.db"), dir.join("some.db"));
    let follower_all = follower(&url, &all, &[], &dir.join("all.log"));
    // A second host's follower of two tables, one of them with a name
    // that must be escaped as a subject token.
    let follower_some = follower(&url, &some, &["--table", "users", "--table", WEIRD], &dir.join("some.log"));
    let stop = dir.join("stop");
    let mut writer = spawn_python_until(&db.path, &stop, &looping_workload(seed.value));
    for n in 0..40 {
        sqlite3(&db.path, &weird_sql(seed.value + n));
    }
    std::fs::write(&stop, b"").unwrap();
    assert!(writer.wait().unwrap().success(), "the Python writer failed");
    wait_equal(&db.path, &all, &all_tables(), LONG);
    wait_equal(&db.path, &some, &["users", WEIRD], LONG);
    // The filtered follower holds only what it follows.
    let tables = sqlite3(&some, "SELECT group_concat(name) FROM sqlite_master WHERE name IN ('orders', 'kv');");
    assert_eq!(tables.trim(), "", "a filtered follower made tables it does not follow");
    for (s, who) in [(&publisher, "publisher"), (&follower_all, "follower"), (&follower_some, "filtered follower")] {
        no_errors(&s.log(), who);
        // Started before the publisher made the stream, a follower says
        // once that it waits for it; nothing else.
        let log = s.log();
        let warnings: Vec<&str> =
            lines_with(&log, "WARN").into_iter().filter(|l| !l.contains("waiting for a publisher")).collect();
        assert!(warnings.is_empty(), "{who} warned:\n{log}");
    }
}

#[test]
fn the_server_killed_and_restarted_mid_stream_is_waited_out() {
    let seed = Seed::new("nats::the_server_killed_and_restarted_mid_stream_is_waited_out", 7);
    let mut server = NatsServer::start();
    let db = app_db();
    let dir = db.dir.path();
    let url = server.url("APP");
    let publisher = publisher(&db.path, &url, &dir.join("publisher.log"));
    let replica = dir.join("replica.db");
    let follower = follower(&url, &replica, &[], &dir.join("follower.log"));
    let stop = dir.join("stop");
    let mut writer = spawn_python_until(&db.path, &stop, &looping_workload(seed.value));
    let mut rng = Xorshift::seeded(seed.value);
    let outages = 3;
    for _ in 0..outages {
        std::thread::sleep(Duration::from_millis(300 + rng.below(700)));
        server.kill(); // SIGKILL, mid-stream
        std::thread::sleep(Duration::from_millis(200 + rng.below(800)));
        server.restart();
    }
    std::fs::write(&stop, b"").unwrap();
    assert!(writer.wait().unwrap().success(), "the Python writer failed");
    wait_equal(&db.path, &replica, &APP_TABLES, LONG);
    for (s, who) in [(&publisher, "publisher"), (&follower, "follower")] {
        let log = s.log();
        no_errors(&log, who);
        // Said once per outage, not once per retry.
        let warnings = lines_with(&log, "WARN").iter().filter(|l| !l.contains("waiting for a publisher")).count();
        assert!(warnings <= outages, "{who} warned {warnings} times for {outages} outages:\n{log}");
    }
}

#[test]
fn publisher_and_follower_sigkilled_at_random_moments_converge() {
    let seed = Seed::new("nats::publisher_and_follower_sigkilled_at_random_moments_converge", 1404);
    let server = NatsServer::start();
    let db = app_db();
    let dir = db.dir.path();
    // Enough rows that a bootstrap (and so a follower's transaction) is
    // under way when a kill comes.
    sqlite3(
        &db.path,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
         INSERT INTO nokey SELECT i % 17, randomblob(i % 50) FROM n;",
    );
    let url = server.url("APP");
    let replica = dir.join("replica.db");
    let stop = dir.join("stop");
    let mut writer = spawn_python_until(&db.path, &stop, &looping_workload(seed.value));
    let mut rng = Xorshift::seeded(seed.value);
    let db_path = db.path.to_str().unwrap().to_string();
    let target = format!("sqlite:{}", replica.display());
    let bin = crate::support::bin("replicator");
    // Publisher and follower both killed, each at its own random moments.
    for _ in 0..6 {
        let mut p = std::process::Command::new(&bin)
            .args(["--db", &db_path, "--target", &url, "--poll-interval", "20ms", "--batch-size", "300"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut f = std::process::Command::new(&bin)
            .args(["--from", &url, "--target", &target])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150 + rng.below(600)));
        if rng.below(2) == 0 {
            p.kill().unwrap();
            std::thread::sleep(Duration::from_millis(rng.below(300)));
            f.kill().unwrap();
        } else {
            f.kill().unwrap();
            std::thread::sleep(Duration::from_millis(rng.below(300)));
            p.kill().unwrap();
        }
        p.wait().unwrap();
        f.wait().unwrap();
    }
    std::fs::write(&stop, b"").unwrap();
    assert!(writer.wait().unwrap().success(), "the Python writer failed");
    publish_once(&db.path, &url, &[]);
    let (code, err) = follow_once(&url, &replica);
    assert_eq!(code, 0, "{err}");
    crate::support::assert_equal(&db.path, &replica, &APP_TABLES);
    // And a follower that starts now replays the whole stream to the same.
    let late = dir.join("late.db");
    let (code, err) = follow_once(&url, &late);
    assert_eq!(code, 0, "{err}");
    crate::support::assert_equal(&db.path, &late, &APP_TABLES);
}

#[test]
fn a_follower_started_long_after_the_publisher_replays_the_stream() {
    let seed = Seed::new("nats::a_follower_started_long_after_the_publisher_replays_the_stream", 3);
    let server = NatsServer::start();
    let db = app_db();
    let url = server.url("APP");
    for round in 0..5 {
        python_workload(&db.path, seed.value * 10 + round, 120);
        publish_once(&db.path, &url, &["--batch-size", "17"]);
    }
    let replica = db.dir.path().join("late.db");
    let (code, err) = follow_once(&url, &replica);
    assert_eq!(code, 0, "{err}");
    crate::support::assert_equal(&db.path, &replica, &APP_TABLES);
    // Following on from where it stopped: only what is new is applied.
    python_workload(&db.path, seed.value * 10 + 99, 120);
    publish_once(&db.path, &url, &[]);
    let (code, err) = follow_once(&url, &replica);
    assert_eq!(code, 0, "{err}");
    crate::support::assert_equal(&db.path, &replica, &APP_TABLES);
    assert!(!err.contains("WARN"), "{err}");
}

/// A stream made by an operator with a small message limit: retention
/// removes what a follower that is behind still needs.
#[test]
fn a_hole_left_by_retention_stops_the_follower_loudly_and_a_new_bootstrap_recovers() {
    let server = NatsServer::start();
    let db = crate::support::TempDb::with_schema("CREATE TABLE t(id INTEGER PRIMARY KEY, v);");
    db.install(&["t"]);
    sqlite3(&db.path, "INSERT INTO t(v) VALUES(1), ('two'), (x'03'), (4.5);");
    let created = server.request(
        "$JS.API.STREAM.CREATE.SMALL",
        r#"{"name":"SMALL","subjects":["SMALL.>"],"max_msgs":50,"retention":"limits","storage":"file","duplicate_window":120000000000}"#,
    );
    assert!(created.is_some_and(|r| !r.contains("\"error\"")), "creating the stream failed");
    let url = server.url("SMALL");
    publish_once(&db.path, &url, &[]);
    let replica = db.dir.path().join("behind.db");
    let (code, err) = follow_once(&url, &replica);
    assert_eq!(code, 0, "{err}");
    crate::support::assert_equal(&db.path, &replica, &["t"]);
    let before =
        crate::support::schema_dump(&replica) + &sqlite3(&replica, "SELECT * FROM t; SELECT * FROM _cdc_follow;");
    // Far more messages than the stream keeps.
    for n in 0..30 {
        sqlite3(&db.path, &format!("INSERT INTO t(v) VALUES({n}); UPDATE t SET v = v || 'x' WHERE id = 2;"));
        publish_once(&db.path, &url, &[]);
    }
    let (code, err) = follow_once(&url, &replica);
    assert_eq!(code, 1, "a follower behind a hole must stop: {err}");
    let line = err.lines().last().unwrap_or_default();
    assert!(line.contains("no longer holds messages") && line.contains("--bootstrap always"), "{err}");
    let after =
        crate::support::schema_dump(&replica) + &sqlite3(&replica, "SELECT * FROM t; SELECT * FROM _cdc_follow;");
    assert_eq!(before, after, "the replica changed although the follower could not follow");
    // A new follower on the cut stream is told why it has nothing.
    let fresh = db.dir.path().join("fresh.db");
    let (code, err) = follow_once(&url, &fresh);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("retention removed the start"), "{err}");
    // The remedy the message names: a new bootstrap into the stream, and
    // followers from it (the one behind after deleting its replica).
    publish_once(&db.path, &url, &["--bootstrap", "always"]);
    let (code, err) = follow_once(&url, &fresh);
    assert_eq!(code, 0, "{err}");
    crate::support::assert_equal(&db.path, &fresh, &["t"]);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", replica.display()));
    }
    let (code, err) = follow_once(&url, &replica);
    assert_eq!(code, 0, "{err}");
    crate::support::assert_equal(&db.path, &replica, &["t"]);
}

#[test]
fn a_restored_replica_reads_again_what_it_lacks() {
    let server = NatsServer::start();
    let db = app_db();
    let url = server.url("APP");
    python_workload(&db.path, 5, 100);
    publish_once(&db.path, &url, &[]);
    let replica = db.dir.path().join("replica.db");
    let (code, err) = follow_once(&url, &replica);
    assert_eq!(code, 0, "{err}");
    let backup = db.dir.path().join("backup.db");
    sqlite3(&replica, &format!("VACUUM INTO '{}';", backup.display()));
    python_workload(&db.path, 6, 100);
    publish_once(&db.path, &url, &[]);
    let (code, err) = follow_once(&url, &replica);
    assert_eq!(code, 0, "{err}");
    // The replica goes back to the backup: its durable consumer is ahead,
    // the replica's own stream position decides.
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", replica.display()));
    }
    std::fs::rename(&backup, &replica).unwrap();
    let (code, err) = follow_once(&url, &replica);
    assert_eq!(code, 0, "{err}");
    crate::support::assert_equal(&db.path, &replica, &APP_TABLES);
}

#[test]
fn bad_nats_input_is_one_line_and_changes_nothing() {
    let server = NatsServer::start();
    let db = crate::support::TempDb::with_schema("CREATE TABLE t(id INTEGER PRIMARY KEY, v);");
    db.install(&["t"]);
    let dir = db.dir.path();
    let src = db.path.to_str().unwrap();
    let dead = {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        format!("nats://me:s3cret@127.0.0.1:{port}/S")
    };
    let replica = dir.join("r.db");
    let target = format!("sqlite:{}", replica.display());
    let source_before = std::fs::read(&db.path).unwrap();
    // A stream of the wrong shape, made by an operator.
    for (name, config) in [
        ("WQ", r#"{"name":"WQ","subjects":["WQ.>"],"retention":"workqueue"}"#),
        ("OTHER", r#"{"name":"OTHER","subjects":["elsewhere.>"]}"#),
        ("PERSUBJ", r#"{"name":"PERSUBJ","subjects":["PERSUBJ.>"],"max_msgs_per_subject":1}"#),
    ] {
        let made = server.request(&format!("$JS.API.STREAM.CREATE.{name}"), config);
        assert!(made.is_some_and(|r| !r.contains("\"error\"")), "creating {name}");
    }
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (vec!["--db".into(), src.into(), "--target".into(), dead.clone()], 1, "cannot reach the NATS server"),
        (vec!["--from".into(), dead.clone(), "--target".into(), target.clone()], 1, "cannot reach the NATS server"),
        (vec!["--db".into(), src.into(), "--target".into(), server.url("WQ")], 1, "retention workqueue"),
        (vec!["--db".into(), src.into(), "--target".into(), server.url("OTHER")], 1, "subjects"),
        (vec!["--db".into(), src.into(), "--target".into(), server.url("PERSUBJ")], 1, "max_msgs_per_subject 1"),
        (vec!["--from".into(), server.url("WQ"), "--target".into(), target.clone()], 1, "retention workqueue"),
        (
            vec!["--from".into(), server.url("NOPE"), "--target".into(), target.clone(), "--once".into()],
            1,
            "does not exist",
        ),
        (vec!["--from".into(), server.url("WQ"), "--target".into(), "jsonl:-".into()], 2, "needs a sqlite:PATH target"),
        (
            vec!["--from".into(), server.url("WQ"), "--db".into(), src.into(), "--target".into(), target.clone()],
            2,
            "unexpected argument '--db'",
        ),
        (vec!["--db".into(), src.into(), "--target".into(), "nats://me:s3cret@h:4222".into()], 2, "no stream"),
        (vec!["--db".into(), src.into(), "--target".into(), "nats://h/S?format=xml".into()], 2, "format must be"),
        (vec!["--db".into(), src.into(), "--target".into(), "nats://h/a.b".into()], 2, "stream name"),
        (vec!["--from".into(), server.url("S?format=debezium"), "--target".into(), target.clone()], 2, "debezium"),
    ];
    for (args, want, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = replicator(&args);
        assert_eq!(code, want, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: expected {needle:?} in: {err}");
        assert!(!err.contains("s3cret") && !out.contains("s3cret"), "credentials shown: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: not one line: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!replica.exists(), "{args:?} created the replica");
        assert_eq!(std::fs::read(&db.path).unwrap(), source_before, "{args:?} changed the source");
    }
    // A replica that follows one stream is refused another.
    publish_once(&db.path, &server.url("ONE"), &[]);
    publish_once(&db.path, &server.url("TWO"), &[]);
    let (code, err) = follow_once(&server.url("ONE"), &replica);
    assert_eq!(code, 0, "{err}");
    let (code, err) = follow_once(&server.url("TWO"), &replica);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("follows stream \"ONE\""), "{err}");
}

/// The stream a publisher made has the documented defaults, and messages
/// carry the documented headers (read back by the test's own client).
#[test]
fn the_stream_and_its_messages_are_as_documented() {
    let server = NatsServer::start();
    let db = crate::support::TempDb::with_schema("CREATE TABLE \"a.b\"(id INTEGER PRIMARY KEY, v);");
    db.install(&["a.b"]);
    sqlite3(&db.path, "INSERT INTO \"a.b\"(v) VALUES('x');");
    let url = server.url("DOC");
    publish_once(&db.path, &url, &[]);
    sqlite3(&db.path, "UPDATE \"a.b\" SET v = 'y';");
    publish_once(&db.path, &url, &[]);
    let info: serde_json::Value =
        serde_json::from_str(&server.request("$JS.API.STREAM.INFO.DOC", "").unwrap()).unwrap();
    let config = &info["config"];
    assert_eq!(config["subjects"], serde_json::json!(["DOC.>"]));
    assert_eq!(config["retention"], "limits");
    assert_eq!(config["storage"], "file");
    assert_eq!(config["max_age"], 7 * 24 * 3600 * 1_000_000_000u64);
    assert_eq!(config["duplicate_window"], 120 * 1_000_000_000u64);
    // The last message on the table's subject is the update, with its headers.
    let last = server
        .request("$JS.API.STREAM.MSG.GET.DOC", r#"{"last_by_subj":"DOC.a%2Eb"}"#)
        .expect("the table's last message");
    let last: serde_json::Value = serde_json::from_str(&last).unwrap();
    let headers = String::from_utf8(base64_decode(last["message"]["hdrs"].as_str().unwrap())).unwrap();
    for h in ["Cdc-Kind: change", "Cdc-Format: bincode", "Nats-Msg-Id: ", "Cdc-Log-Id: ", "Cdc-Seq: ", "Cdc-Time-Ms: "]
    {
        assert!(headers.contains(h), "{h:?} not in {headers}");
    }
    let commit = server.request("$JS.API.STREAM.MSG.GET.DOC", r#"{"last_by_subj":"DOC.$commit"}"#).unwrap();
    assert!(commit.contains("\"message\""), "{commit}");
    assert!(server.stream_state("DOC")["messages"].as_u64().unwrap() > 0);
    // The table's first message is its definition, before its bootstrap.
    let first = server.request("$JS.API.STREAM.MSG.GET.DOC", r#"{"seq":1,"next_by_subj":"DOC.a%2Eb"}"#).unwrap();
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    let headers = String::from_utf8(base64_decode(first["message"]["hdrs"].as_str().unwrap())).unwrap();
    assert!(headers.contains("Cdc-Kind: ddl"), "{headers}");
    let (event, _): (cdc::Event, usize) = bincode::serde::decode_from_slice(
        &base64_decode(first["message"]["data"].as_str().unwrap()),
        bincode::config::standard(),
    )
    .unwrap();
    assert!(
        matches!(&event, cdc::Event::Schema(s) if s.sql.as_deref() == Some("CREATE TABLE \"a.b\"(id INTEGER PRIMARY KEY, v)")),
        "{event:?}"
    );
    // With Debezium's envelope, the schema change record is on `$ddl`.
    publish_once(&db.path, &server.url("DBZ?format=debezium"), &[]);
    let ddl = server.request("$JS.API.STREAM.MSG.GET.DBZ", r#"{"last_by_subj":"DBZ.$ddl"}"#).unwrap();
    let ddl: serde_json::Value = serde_json::from_str(&ddl).unwrap();
    let record: serde_json::Value =
        serde_json::from_slice(&base64_decode(ddl["message"]["data"].as_str().unwrap())).unwrap();
    assert_eq!(record["ddl"], "CREATE TABLE \"a.b\"(id INTEGER PRIMARY KEY, v)");
    assert_eq!(record["tableChanges"][0]["type"], "CREATE");
    assert_eq!(record["tableChanges"][0]["table"]["primaryKeyColumnNames"], serde_json::json!(["id"]));
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

/// The stream no longer holds the commit point the replica applied last
/// (as after a server that lost acknowledged messages, or a stream
/// restored from an older backup; here the message is deleted): the
/// follower stops in one line and changes nothing.
#[test]
fn a_stream_whose_history_changed_under_the_replica_stops_the_follower() {
    let server = NatsServer::start();
    let db = crate::support::TempDb::with_schema("CREATE TABLE t(id INTEGER PRIMARY KEY, v);");
    db.install(&["t"]);
    sqlite3(&db.path, "INSERT INTO t(v) VALUES(1), ('two');");
    let url = server.url("H");
    publish_once(&db.path, &url, &[]);
    let replica = db.dir.path().join("r.db");
    let (code, err) = follow_once(&url, &replica);
    assert_eq!(code, 0, "{err}");
    let at: u64 = sqlite3(&replica, "SELECT stream_seq FROM _cdc_follow;").trim().parse().unwrap();
    let deleted = server.request("$JS.API.STREAM.MSG.DELETE.H", &format!(r#"{{"seq":{at}}}"#)).unwrap();
    assert!(deleted.contains("\"success\":true"), "{deleted}");
    sqlite3(&db.path, "INSERT INTO t(v) VALUES(3);");
    publish_once(&db.path, &url, &[]);
    let before = sqlite3(&replica, "SELECT * FROM t; SELECT stream_seq FROM _cdc_follow;");
    let (code, err) = follow_once(&url, &replica);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("no longer holds, at sequence {at}")), "{err}");
    assert_eq!(sqlite3(&replica, "SELECT * FROM t; SELECT stream_seq FROM _cdc_follow;"), before);
}

/// The publisher SIGKILLed in the middle of a large source transaction
/// (published in batches, no commit point yet) and started again at once:
/// the resent changes are dropped by the server as duplicates, so the
/// follower must keep what it held across the new `$schema` message.
#[test]
fn a_publisher_killed_mid_transaction_and_restarted_at_once_loses_nothing() {
    let server = NatsServer::start();
    let db = crate::support::TempDb::with_schema("CREATE TABLE t(id INTEGER PRIMARY KEY, v);");
    db.install(&["t"]);
    let url = server.url("MID");
    publish_once(&db.path, &url, &[]);
    let replica = db.dir.path().join("r.db");
    let follower = follower(&url, &replica, &[], &db.dir.path().join("follower.log"));
    sqlite3(
        &db.path,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
         INSERT INTO t(v) SELECT 'v' || i FROM n;",
    );
    let before = server.stream_state("MID")["messages"].as_u64().unwrap();
    let publisher = Sidecar::start(
        &["--db", db.path.to_str().unwrap(), "--target", &url, "--batch-size", "100", "--status-interval", "0"],
        &db.dir.path().join("publisher.log"),
    );
    crate::support::wait_until("part of the transaction is in the stream", LONG, || {
        server.stream_state("MID")["messages"].as_u64().unwrap() > before + 300
    });
    publisher.kill();
    publish_once(&db.path, &url, &["--batch-size", "100"]);
    wait_equal(&db.path, &replica, &["t"], LONG);
    no_errors(&follower.log(), "follower");
}
