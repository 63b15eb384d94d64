//! The Kafka target against a real Kafka-protocol broker (tansu, on
//! loopback), read back by kafka-python, a client this project did not
//! write: every table rebuilt from its topic as a sink keyed by the record
//! key would, and compared with the source value by value (int and real
//! kept apart). Faults: the replicator SIGKILLed mid-stream (with and
//! without transactions), a broker that stops answering, bad addresses.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value as Json;

use crate::replicator::{APP_TABLES, app_db, looping_workload, python_workload};
use crate::support::{
    KafkaBroker, Seed, Sidecar, Xorshift, kill_at_random_moments, lines_with, run_bin, spawn_python_until, sqlite3,
    wait_until,
};

const LONG: Duration = Duration::from_secs(180);

/// A table whose name a topic cannot hold as it is.
const WEIRD: &str = "we.ird ünï*";

const REBUILD: &str = include_str!("rebuild.py");

/// What the topics rebuild to (see `rebuild.py`).
struct Rebuilt {
    tables: BTreeMap<String, Vec<Json>>,
    records: u64,
    schema_records: u64,
    problems: Vec<String>,
}

fn rebuild(broker: &KafkaBroker, prefix: &str, isolation: &str) -> Rebuilt {
    rebuild_from(&broker.servers(), None, prefix, isolation)
}

/// [`rebuild`] from `servers`, over TLS trusting `ca` when given.
fn rebuild_from(servers: &str, ca: Option<&Path>, prefix: &str, isolation: &str) -> Rebuilt {
    let mut command = Command::new("python3");
    if let Some(ca) = ca {
        command.env("CDC_KAFKA_CA", ca);
    }
    let mut child = command
        .args(["-", servers, prefix, isolation])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), REBUILD.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "rebuild.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let json: Json = serde_json::from_slice(&out.stdout).unwrap();
    let tables = json["tables"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(t, rows)| (t.clone(), rows.as_array().unwrap().clone()))
        .collect();
    Rebuilt {
        tables,
        records: json["records"].as_u64().unwrap(),
        schema_records: json["schema_records"].as_u64().unwrap(),
        problems: json["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect(),
    }
}

/// `table`'s rows in the source as Debezium's `after` images: every
/// captured (not generated) column, values as the envelope writes them.
fn source_images(db: &Path, table: &str) -> Vec<Json> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let quoted = cdc::sql::quote_ident(table);
    let columns: Vec<String> = conn
        .prepare(&format!(
            "SELECT name FROM pragma_table_xinfo({}) WHERE hidden NOT IN (2, 3)",
            cdc::sql::quote_literal(table)
        ))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let list = columns.iter().map(|c| cdc::sql::quote_ident(c)).collect::<Vec<_>>().join(", ");
    let mut stmt = conn.prepare(&format!("SELECT {list} FROM {quoted}")).unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut images = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        let mut image = serde_json::Map::new();
        for (i, c) in columns.iter().enumerate() {
            let value = cdc::Value::from_ref(row.get_ref(i).unwrap()).unwrap();
            image.insert(c.clone(), cdc::debezium::value(&value));
        }
        images.push(Json::Object(image));
    }
    images
}

/// The first table whose rebuilt rows differ from the source's (as
/// multisets), or a problem `rebuild.py` saw; `None` when all are equal.
fn difference(db: &Path, rebuilt: &Rebuilt, tables: &[&str]) -> Option<String> {
    if let Some(p) = rebuilt.problems.first() {
        return Some(format!("{} problems, the first: {p}", rebuilt.problems.len()));
    }
    let sorted = |rows: &[Json]| {
        let mut v: Vec<String> = rows.iter().map(Json::to_string).collect();
        v.sort();
        v
    };
    for table in tables {
        let want = sorted(&source_images(db, table));
        let got = sorted(rebuilt.tables.get(*table).map_or(&[][..], Vec::as_slice));
        if want != got {
            let missing: Vec<_> = want.iter().filter(|r| !got.contains(r)).take(2).collect();
            let extra: Vec<_> = got.iter().filter(|r| !want.contains(r)).take(2).collect();
            return Some(format!(
                "{table}: source {} rows, topics {}; missing {missing:?}, extra {extra:?}",
                want.len(),
                got.len()
            ));
        }
    }
    None
}

fn wait_rebuilt(broker: &KafkaBroker, prefix: &str, isolation: &str, db: &Path, tables: &[&str]) -> Rebuilt {
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let rebuilt = rebuild(broker, prefix, isolation);
        match difference(db, &rebuilt, tables) {
            None => return rebuilt,
            Some(diff) if std::time::Instant::now() > deadline => panic!("the topics never rebuilt the source: {diff}"),
            Some(_) => {}
        }
    }
}

fn all_tables() -> Vec<&'static str> {
    let mut t = APP_TABLES.to_vec();
    t.extend([WEIRD, "nk"]);
    t
}

/// With a table whose name a topic cannot hold, and one whose TEXT
/// primary key takes NULLs (a rowid table: SQLite lets any number of rows
/// have a NULL key; they are keyed by rowid).
fn app_with_weird_table() -> crate::support::TempDb {
    let db = app_db();
    sqlite3(
        &db.path,
        &format!("CREATE TABLE \"{WEIRD}\"(id INTEGER PRIMARY KEY, v); CREATE TABLE nk(k TEXT PRIMARY KEY, v);"),
    );
    let path = db.path.to_str().unwrap();
    let (code, _, err) = run_bin("cdc-setup", &["install", "--db", path, "--table", WEIRD, "--table", "nk"]);
    assert_eq!(code, 0, "{err}");
    db
}

fn weird_sql(n: u64) -> String {
    format!(
        "INSERT INTO \"{WEIRD}\"(v) VALUES({n}), ('t{n}'), (x'00ff'), ({n}.5), ({n}.0); \
         UPDATE OR IGNORE \"{WEIRD}\" SET id = id + 100000 WHERE id % 5 = {}; DELETE FROM \"{WEIRD}\" WHERE id % 7 = {}; \
         INSERT INTO nk VALUES (NULL, 'a{n}'), (NULL, 'b{n}'), ('k{n}', 'c{n}'); \
         UPDATE nk SET v = v || '!' WHERE k IS NULL AND rowid % 2 = 0; UPDATE nk SET k = 'from null ' || rowid WHERE rowid % 5 = 1; \
         UPDATE nk SET k = NULL WHERE k = 'k{n}'; DELETE FROM nk WHERE k IS NULL AND rowid % 3 = 0;",
        n % 5,
        n % 7
    )
}

fn once(db: &Path, url: &str) -> (i32, String) {
    let (code, _, err) = run_bin("replicator", &["--db", db.to_str().unwrap(), "--target", url, "--once"]);
    (code, err)
}

#[test]
fn topics_rebuild_every_table_value_for_value() {
    let seed = Seed::new("kafka::topics_rebuild_every_table_value_for_value", 71);
    let broker = KafkaBroker::start();
    let db = app_with_weird_table();
    let url = broker.url("app", "compression=gzip&client_id=cdc-test");
    python_workload(&db.path, seed.value, 200);
    sqlite3(&db.path, &weird_sql(seed.value));
    // The first run bootstraps every table (op r), the second sends changes.
    for round in 0..2 {
        let (code, err) = once(&db.path, &url);
        assert_eq!(code, 0, "{err}");
        // users.email is UNIQUE: said once a run.
        let warnings = lines_with(&err, "WARN");
        assert!(!err.contains("ERROR"), "{err}");
        assert_eq!(warnings.len(), 1, "{err}");
        assert!(
            warnings.iter().all(|w| w.contains("unique key besides its primary key") && w.contains("table=users")),
            "{err}"
        );
        let rebuilt = wait_rebuilt(&broker, "app", "read_uncommitted", &db.path, &all_tables());
        assert!(rebuilt.schema_records >= all_tables().len() as u64, "a schema change record per table");
        python_workload(&db.path, seed.value + round + 1, 200);
        sqlite3(&db.path, &weird_sql(seed.value + round + 1));
    }
    // Bootstrap rows, changes, tombstones: more records than rows.
    let (code, err) = once(&db.path, &url);
    assert_eq!(code, 0, "{err}");
    let rebuilt = wait_rebuilt(&broker, "app", "read_uncommitted", &db.path, &all_tables());
    let rows: usize = rebuilt.tables.values().map(Vec::len).sum();
    assert!(rebuilt.records as usize > rows, "{} records for {rows} rows", rebuilt.records);
}

/// Writers never stop while the replicator is SIGKILLed at random
/// moments; a last run catches up, and the topics rebuild the source:
/// nothing was lost (what was sent twice carries the same `cdc-seq`).
fn killed_mid_stream(test: &'static str, options: &str, isolation: &str) {
    let seed = Seed::new(test, 72);
    let broker = KafkaBroker::start();
    let db = app_db();
    let url = broker.url("app", options);
    let stop = db.dir.path().join("stop");
    let mut writer = spawn_python_until(&db.path, &stop, &looping_workload(seed.value));
    let mut rng = Xorshift::seeded(seed.value);
    let bin = crate::support::bin("replicator");
    let db_path = db.path.to_str().unwrap().to_string();
    kill_at_random_moments(
        5,
        &mut rng,
        (300, 1200),
        || {
            Command::new(&bin)
                .args(["--db", &db_path, "--target", &url, "--poll-interval", "20ms", "--batch-size", "50"])
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        },
        || {},
    );
    std::fs::write(&stop, b"").unwrap();
    assert!(writer.wait().unwrap().success(), "the Python writer failed");
    let (code, err) = once(&db.path, &url);
    assert_eq!(code, 0, "{err}");
    wait_rebuilt(&broker, "app", isolation, &db.path, &APP_TABLES);
}

#[test]
fn a_replicator_killed_mid_stream_loses_nothing() {
    killed_mid_stream("kafka::a_replicator_killed_mid_stream_loses_nothing", "", "read_uncommitted");
}

#[test]
fn with_transactions_a_killed_replicator_loses_nothing() {
    killed_mid_stream(
        "kafka::with_transactions_a_killed_replicator_loses_nothing",
        "transactional_id=cdc-test",
        "read_committed",
    );
}

/// A broker that stops answering (SIGSTOP: connections open, nothing
/// comes back) is waited for, said once, and followed again once it
/// answers; the sidecar never exits.
#[test]
fn a_broker_that_stops_answering_is_waited_for() {
    let seed = Seed::new("kafka::a_broker_that_stops_answering_is_waited_for", 73);
    let broker = KafkaBroker::start();
    let db = app_db();
    let url = broker.url("app", "timeout=2s");
    python_workload(&db.path, seed.value, 100);
    let mut sidecar = Sidecar::start(
        &["--db", db.path.to_str().unwrap(), "--target", &url, "--poll-interval", "20ms"],
        &db.dir.path().join("sidecar.log"),
    );
    wait_rebuilt(&broker, "app", "read_uncommitted", &db.path, &APP_TABLES);
    broker.pause(true);
    python_workload(&db.path, seed.value + 1, 100);
    wait_until("the outage is said", LONG, || sidecar.log().contains("transient failure"));
    assert!(sidecar.running(), "{}", sidecar.log());
    broker.pause(false);
    python_workload(&db.path, seed.value + 2, 100);
    wait_rebuilt(&broker, "app", "read_uncommitted", &db.path, &APP_TABLES);
    wait_until("the recovery is said", LONG, || sidecar.log().contains("recovered"));
    assert!(sidecar.running(), "{}", sidecar.log());
    assert_eq!(lines_with(&sidecar.log(), "transient failure").len(), 1, "said once: {}", sidecar.log());
}

/// A broker that comes back without the topics (its data lost, or the
/// topics deleted while no replicator ran): the consumer's record says
/// the tables are live, the target finds their topics gone, and every
/// table is bootstrapped again, said in one line each.
#[test]
fn topics_gone_while_no_replicator_ran_are_bootstrapped_again() {
    let broker = KafkaBroker::start();
    let db = app_db();
    python_workload(&db.path, 74, 150);
    let url = broker.url("app", "");
    assert_eq!(once(&db.path, &url).0, 0);
    wait_rebuilt(&broker, "app", "read_uncommitted", &db.path, &APP_TABLES);
    let port = broker.port;
    drop(broker);
    let broker = KafkaBroker::start_on(port);
    python_workload(&db.path, 75, 50);
    // Told not to bootstrap: it stops in one line rather than follow the
    // tables on from changes alone.
    let (code, _, err) =
        run_bin("replicator", &["--db", db.path.to_str().unwrap(), "--target", &url, "--once", "--bootstrap", "never"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("topic is gone"), "{err}");
    let (code, err) = once(&db.path, &url);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines_with(&err, "no longer holds this table").len(), APP_TABLES.len(), "{err}");
    wait_rebuilt(&broker, "app", "read_uncommitted", &db.path, &APP_TABLES);
}

/// A table bootstrapped again (VACUUM renumbers a keyless table's rowids,
/// the keys of its records): the truncate record before the snapshot lets
/// a consumer drop the keys the snapshot no longer has.
#[test]
fn a_table_bootstrapped_again_drops_the_keys_it_no_longer_has() {
    let broker = KafkaBroker::start();
    let db = app_db();
    python_workload(&db.path, 76, 150);
    sqlite3(&db.path, "INSERT INTO nokey VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd');");
    let url = broker.url("app", "");
    assert_eq!(once(&db.path, &url).0, 0);
    wait_rebuilt(&broker, "app", "read_uncommitted", &db.path, &APP_TABLES);
    sqlite3(&db.path, "DELETE FROM nokey WHERE rowid % 2 = 1; VACUUM;");
    let (code, err) = once(&db.path, &url);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("bootstrapped table=nokey"), "{err}");
    wait_rebuilt(&broker, "app", "read_uncommitted", &db.path, &APP_TABLES);
}

/// The broker freezes in the middle of a bootstrap, then, once followed
/// again, is replaced by an empty one while the sidecar runs (a broker
/// that lost its data): the bootstrap is sent again once the broker
/// answers, and the lost topics are made again and bootstrapped. The
/// sidecar never exits.
#[test]
fn a_broker_frozen_mid_bootstrap_or_emptied_while_running_is_followed_again() {
    let broker = KafkaBroker::start();
    let db = app_db();
    sqlite3(
        &db.path,
        "CREATE TABLE big(id INTEGER PRIMARY KEY, v TEXT);          WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000)          INSERT INTO big SELECT i, printf('row %d', i) FROM n;",
    );
    let (code, _, err) = run_bin("cdc-setup", &["install", "--db", db.path.to_str().unwrap(), "--table", "big"]);
    assert_eq!(code, 0, "{err}");
    python_workload(&db.path, 77, 100);
    let url = broker.url("app", "timeout=2s");
    let mut sidecar = Sidecar::start(
        &["--db", db.path.to_str().unwrap(), "--target", &url, "--poll-interval", "20ms"],
        &db.dir.path().join("sidecar.log"),
    );
    let mut tables = APP_TABLES.to_vec();
    tables.push("big");
    wait_until("the bootstrap starts", LONG, || sidecar.log().contains("bootstrapping it table=big"));
    broker.pause(true);
    wait_until("the outage is said", LONG, || sidecar.log().contains("transient failure"));
    broker.pause(false);
    wait_rebuilt(&broker, "app", "read_uncommitted", &db.path, &tables);
    assert!(sidecar.running(), "{}", sidecar.log());
    // An empty broker where the old one was.
    let port = broker.port;
    drop(broker);
    let broker = KafkaBroker::start_on(port);
    python_workload(&db.path, 78, 100);
    wait_rebuilt(&broker, "app", "read_uncommitted", &db.path, &tables);
    assert!(sidecar.running(), "{}", sidecar.log());
    assert!(sidecar.log().contains("no longer holds this table"), "{}", sidecar.log());
}

/// TLS for real: a broker reached only through a TLS front (Python's ssl
/// module) with a self-signed certificate. Not trusted, it is refused in
/// one line; trusted with `?ca=`, every table arrives, and kafka-python
/// reads it back over TLS.
#[test]
fn tls_to_the_broker_is_encrypted_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, both) = (dir.path().join("cert.pem"), dir.path().join("key.pem"), dir.path().join("both.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(made.success());
    std::fs::write(&both, [std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap()].concat()).unwrap();
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (plain, tls) = (free(), free());
    let broker = KafkaBroker::start_advertising(plain, tls);
    let mut proxy = Command::new("python3");
    proxy.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/integration/kafka/tls_proxy.py"));
    let _proxy = crate::support::Writer(
        proxy.args([&tls.to_string(), &plain.to_string()]).arg(&both).stdout(Stdio::null()).spawn().unwrap(),
    );
    wait_until("the TLS front listens", LONG, || std::net::TcpStream::connect(("127.0.0.1", tls)).is_ok());
    let db = app_db();
    python_workload(&db.path, 79, 120);
    let (code, err) = once(&db.path, &format!("kafka://127.0.0.1:{tls}/app?tls=true&timeout=5s"));
    assert_eq!(code, 1, "an untrusted certificate was accepted: {err}");
    assert!(err.contains("cannot reach"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (code, err) = once(&db.path, &format!("kafka://127.0.0.1:{tls}/app?ca={}", cert.display()));
    assert_eq!(code, 0, "{err}");
    let servers = format!("127.0.0.1:{tls}");
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let rebuilt = rebuild_from(&servers, Some(&cert), "app", "read_uncommitted");
        match difference(&db.path, &rebuilt, &APP_TABLES) {
            None => break,
            Some(diff) if std::time::Instant::now() > deadline => panic!("never rebuilt over TLS: {diff}"),
            Some(_) => {}
        }
    }
    drop(broker);
}

/// Every file in `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect()
}

#[test]
fn bad_addresses_and_unreachable_brokers_are_one_line_and_never_show_credentials() {
    let db = app_db();
    let before = files(db.dir.path());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for bad in [
        "kafka://127.0.0.1/app".to_string(),
        format!("kafka://u:hunter2@127.0.0.1:{closed}/"),
        format!("kafka://u:hunter2@127.0.0.1:{closed}/app?acks=2"),
        format!("kafka://127.0.0.1:{closed}/a%20b"),
        format!("kafka://u:hunter2@127.0.0.1:{closed}/app?sasl=GSSAPI"),
        format!("kafka://127.0.0.1:{closed}/app?linger=5"),
    ] {
        let (code, err) = once(&db.path, &bad);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains("bad Kafka address"), "{bad}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert_eq!(files(db.dir.path()), before, "{bad}: a file changed");
    }
    // Nothing listens: the run ends in one line, the password nowhere.
    let (code, err) = once(&db.path, &format!("kafka://u:hunter2@127.0.0.1:{closed}/app"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot reach kafka://u:***@127.0.0.1"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    for (name, bytes) in files(db.dir.path()) {
        assert!(!String::from_utf8_lossy(&bytes).contains("hunter2"), "{name} holds the password");
    }
    // Two tables whose names make the same topic: refused, not mixed.
    let broker = KafkaBroker::start();
    sqlite3(&db.path, "CREATE TABLE \"a b\"(x); CREATE TABLE a_b(x);");
    let (code, _, err) = run_bin("cdc-setup", &["install", "--db", db.path.to_str().unwrap(), "--all"]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = once(&db.path, &broker.url("app", ""));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("would share the topic app.a_b"), "{err}");
    // A row larger than a record may be: the run stops in one line (sent
    // again, it would be refused again), the position not advanced.
    let big = app_db();
    sqlite3(&big.path, "INSERT INTO users(id, avatar) VALUES (1, zeroblob(2000000));");
    let (code, err) = once(&big.path, &broker.url("big", ""));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("too large"), "{err}");
    assert_eq!(lines_with(&err, "bootstrapped table=users").len(), 0, "{err}");
    let (code, err) = once(&big.path, &broker.url("big", ""));
    assert_eq!(code, 1, "refused again, never passed over: {err}");
}
