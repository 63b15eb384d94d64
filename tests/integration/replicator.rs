//! The `replicator` binary end to end: convergence under foreign writers,
//! SIGKILL, atomic reseeds, every target kind, and bad input.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cdc::compare::table as compare_table;

use crate::support::{Seed, TempDb, lines_with, python, run_bin, sqlite3, wait_until};

/// The tricky schemas of the capture tests, as a replicated application.
pub const APP_SCHEMA: &str = r#"
CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT UNIQUE, name TEXT, score REAL, avatar BLOB);
CREATE TABLE orders(id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id) ON DELETE CASCADE ON UPDATE CASCADE,
                    amount, note TEXT);
CREATE INDEX orders_user ON orders(user_id);
CREATE TABLE kv(a TEXT, b INT, v, PRIMARY KEY(b, a)) WITHOUT ROWID;
CREATE TABLE nokey(x, y);
CREATE TABLE "select"("from" INTEGER PRIMARY KEY, "a""b" TEXT, "ünï cødé" BLOB);
CREATE TABLE st(id INTEGER PRIMARY KEY, a ANY, b TEXT) STRICT;
CREATE TABLE gen(id INTEGER PRIMARY KEY, a INT, t TEXT, b INT GENERATED ALWAYS AS (a * 2) VIRTUAL,
                 c TEXT GENERATED ALWAYS AS (upper(t)) STORED);
"#;

pub const APP_TABLES: [&str; 7] = ["users", "orders", "kv", "nokey", "select", "st", "gen"];

/// A seeded random workload from Python's sqlite3 module: inserts,
/// updates with key changes, deletes, INSERT OR REPLACE evicting by a
/// UNIQUE column, UPSERT, cascading deletes, rolled-back transactions.
/// It behaves as an application does: when SQLite refuses a statement
/// (a constraint, or a lock held past the busy timeout), that transaction
/// is rolled back and the workload goes on. Any other error (a capture
/// trigger breaking the application, say) ends it with a non-zero exit.
const PY_WORKLOAD: &str = r#"
import random, sqlite3, sys
db, seed, ops = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
c = sqlite3.connect(db, timeout=30, isolation_level=None)
c.execute("PRAGMA foreign_keys=ON")
pool = [None, 0, -1, 2**63 - 1, -2**63, 0.1, 5e-324, 1.7976931348623157e308, float("inf"), -0.0,
        "héllo 🌍", "it's \"q\"", "a\nb", "", b"", b"\x00\xff", bytes(range(40))]
def v(): return rnd.choice(pool)
def k(): return rnd.randint(1, 60)
def refused(e):
    return isinstance(e, sqlite3.IntegrityError) or any(w in str(e) for w in ("locked", "busy"))
for _ in range(ops // 8):
    try:
        c.execute("BEGIN")
        for _ in range(rnd.randint(1, 12)):
            op = rnd.randint(0, 15)
            if op == 0: c.execute("INSERT OR IGNORE INTO users VALUES(?, ?, ?, ?, ?)", (k(), "u%d@x" % k(), v(), v(), v()))
            elif op == 1: c.execute("INSERT OR REPLACE INTO users(id, email, name) VALUES(?, ?, ?)", (k() + 100, "u%d@x" % k(), v()))
            elif op == 2: c.execute("UPDATE OR REPLACE users SET id = id + 1000 WHERE id = ?", (k(),))
            elif op == 3: c.execute("UPDATE users SET score = ?, avatar = ? WHERE id % 5 = ?", (v(), v(), rnd.randint(0, 4)))
            elif op == 4: c.execute("DELETE FROM users WHERE id = ?", (k(),))
            elif op == 5: c.execute("INSERT INTO orders(user_id, amount, note) SELECT id, ?, ? FROM users ORDER BY random() LIMIT 1", (v(), v() if rnd.random() < 0.5 else "n"))
            elif op == 6: c.execute("INSERT INTO kv VALUES(?, ?, ?) ON CONFLICT(b, a) DO UPDATE SET v = excluded.v", ("k%d" % (k() % 5), k(), v()))
            elif op == 7: c.execute("UPDATE kv SET b = b + 100 WHERE b = ?", (k(),))
            elif op == 8: c.execute("DELETE FROM kv WHERE a = ?", ("k%d" % (k() % 5),))
            elif op == 9: c.execute("INSERT INTO nokey VALUES(?, ?)", (k() % 3, v()))
            elif op == 10: c.execute("DELETE FROM nokey WHERE rowid IN (SELECT rowid FROM nokey ORDER BY random() LIMIT 1)")
            elif op == 11: c.execute('INSERT OR REPLACE INTO "select" VALUES(?, ?, ?)', (k(), v(), v()))
            elif op == 12: c.execute("INSERT OR REPLACE INTO st VALUES(?, ?, ?)", (k(), v(), "t%d" % k()))
            elif op == 13: c.execute("INSERT OR REPLACE INTO gen(id, a, t) VALUES(?, ?, ?)", (k(), k(), "t%d" % k()))
            elif op == 14: c.execute("UPDATE OR REPLACE gen SET a = a + 1, id = id + 500 WHERE id = ?", (k(),))
            else: c.execute("DELETE FROM st WHERE id > ?", (k() + 30,))
        c.execute("ROLLBACK" if rnd.random() < 0.15 else "COMMIT")
    except sqlite3.Error as e:
        if not refused(e):
            raise
        if c.in_transaction:
            c.execute("ROLLBACK")
"#;

/// A seeded SQL script for the sqlite3 shell.
fn shell_workload(seed: u64) -> String {
    let mut rng = crate::support::Xorshift::seeded(seed);
    let mut next = |n: u64| rng.below(n);
    let mut sql = String::from("PRAGMA foreign_keys=ON;\n");
    for _ in 0..20 {
        let k = 1 + next(60);
        let stmt = match next(8) {
            0 => format!(
                "INSERT OR REPLACE INTO users(id, email, name, score) VALUES({}, 'u{k}@x', 'shell', {}.5);",
                k + 200,
                next(100)
            ),
            1 => format!("UPDATE OR REPLACE users SET id = -id WHERE id = {k};"),
            2 => format!("DELETE FROM users WHERE id % 13 = {};", next(13)),
            3 => format!("INSERT INTO kv VALUES('s{k}', {k}, x'{:04x}') ON CONFLICT DO NOTHING;", next(65536)),
            4 => "BEGIN; DELETE FROM orders; UPDATE kv SET v = NULL; ROLLBACK;".to_string(),
            5 => format!(
                "UPDATE orders SET amount = amount * 2, note = 'line1' || char(10) || 'line2' WHERE id % 3 = {};",
                next(3)
            ),
            6 => format!(
                "INSERT INTO st VALUES({}, 9223372036854775807, 'max') ON CONFLICT(id) DO UPDATE SET a = -0.0;",
                k + 500
            ),
            _ => format!("UPDATE OR IGNORE \"select\" SET \"from\" = \"from\" + 1000 WHERE \"from\" = {k};"),
        };
        sql.push_str(&stmt);
        sql.push('\n');
    }
    sql
}

pub fn app_db() -> TempDb {
    let db = TempDb::with_schema(APP_SCHEMA);
    db.install(&APP_TABLES);
    db
}

fn replicator(args: &[&str]) -> (i32, String, String) {
    run_bin("replicator", args)
}

pub fn assert_replica_equals(source: &Path, replica: &Path) {
    let (s, r) = (rusqlite::Connection::open(source).unwrap(), rusqlite::Connection::open(replica).unwrap());
    for table in APP_TABLES {
        if let Some(diff) = compare_table(&s, &r, table).unwrap() {
            panic!("replica differs: {diff}");
        }
    }
}

fn converge(seed: u64, rounds: u64) {
    let db = app_db();
    let replica = db.dir.path().join("replica.db");
    let target = format!("sqlite:{}", replica.display());
    for round in 0..rounds {
        python_workload(&db.path, seed * 100 + round, 160);
        sqlite3(&db.path, &shell_workload(seed * 100 + round));
        let (code, _, err) =
            replicator(&["--db", db.path.to_str().unwrap(), "--target", &target, "--once", "--batch-size", "37"]);
        assert_eq!(code, 0, "{err}");
        assert_replica_equals(&db.path, &replica);
    }
}

/// [`PY_WORKLOAD`] in rounds of 40 operations seeded `seed * 1000 + 1`,
/// `+ 2`, ... until the stop file (`sys.argv[2]`) appears; for
/// [`crate::support::spawn_python_until`].
pub fn looping_workload(seed: u64) -> String {
    format!(
        "import sys, os\nsys.argv = [sys.argv[0], sys.argv[1], '0', '40'] + sys.argv[2:]\nstop = sys.argv[4]\nseed = {}\n\
         src = {PY_WORKLOAD:?}\nwhile not os.path.exists(stop):\n    seed += 1\n    sys.argv[2] = str(seed)\n    exec(src, {{'__name__': 'w'}})\n",
        seed.wrapping_mul(1000)
    )
}

pub fn python_workload(db: &Path, seed: u64, ops: u64) {
    let mut cmd = Command::new("python3");
    cmd.args(["-", db.to_str().unwrap(), &seed.to_string(), &ops.to_string()]).stdin(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(PY_WORKLOAD.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "python workload failed");
}

#[test]
fn replica_converges_with_foreign_writers_fixed_seed() {
    let seed = Seed::new("replicator::replica_converges_with_foreign_writers_fixed_seed", 42);
    converge(seed.value, 4);
}

mod prop {
    use proptest::prelude::*;

    proptest! {
        // More cases with CDC_PROPTEST_CASES=N (default 2: CI stays fast).
        // A failure prints the seed; replay it with CDC_SEED=<seed> and
        // the fixed-seed test above (its first rounds are these).
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("CDC_PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2)
        ))]

        #[test]
        fn replica_converges_for_any_seed(seed in 1u64..1_000_000) {
            super::converge(seed, 2);
        }
    }
}

#[test]
fn sigkill_at_random_moments_while_a_writer_runs() {
    let db = app_db();
    let replica = db.dir.path().join("replica.db");
    let target = format!("sqlite:{}", replica.display());
    let seed = Seed::new("replicator::sigkill_at_random_moments_while_a_writer_runs", 1092);
    let stop_file = db.dir.path().join("stop");
    let mut writer = crate::support::spawn_python_until(&db.path, &stop_file, &looping_workload(seed.value));
    let spawn = || {
        Command::new(crate::support::bin("replicator"))
            .args([
                "--db",
                db.path.to_str().unwrap(),
                "--target",
                &target,
                "--poll-interval",
                "20ms",
                "--batch-size",
                "50",
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // The fault: SIGKILL after a random 100-600 ms of work, ten times.
    let mut rng = crate::support::Xorshift::seeded(seed.value);
    crate::support::kill_at_random_moments(10, &mut rng, (100, 500), spawn, || {});
    std::fs::write(&stop_file, b"").unwrap();
    // The workload rolls back what SQLite refuses; a failure here is an
    // error it did not expect (printed above), such as a broken trigger.
    assert!(writer.wait().unwrap().success(), "the Python writer failed");
    let (code, _, err) = replicator(&["--db", db.path.to_str().unwrap(), "--target", &target, "--once"]);
    assert_eq!(code, 0, "{err}");
    assert_replica_equals(&db.path, &replica);
}

#[test]
fn a_replica_reader_never_sees_a_partial_table_during_bootstrap() {
    let db = TempDb::with_schema(
        "CREATE TABLE big(id INTEGER PRIMARY KEY, v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
         INSERT INTO big SELECT i, 'old' FROM n;",
    );
    db.install(&["big"]);
    let replica = db.dir.path().join("replica.db");
    let target = format!("sqlite:{}", replica.display());
    let (code, _, err) = replicator(&["--db", db.path.to_str().unwrap(), "--target", &target, "--once"]);
    assert_eq!(code, 0, "{err}");
    // Change the source so the reseed has something new, then reseed while
    // a reader polls the replica.
    sqlite3(&db.path, "UPDATE big SET v = 'new'; DELETE FROM big WHERE id > 90000;");
    let reader_replica = replica.clone();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader_done = done.clone();
    let reader = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&reader_replica).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        while !reader_done.load(std::sync::atomic::Ordering::SeqCst) {
            let state: (i64, i64) = conn
                .query_row("SELECT count(*), sum(v = 'new') FROM big", [], |r| {
                    Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or(0)))
                })
                .unwrap();
            seen.insert(state);
        }
        seen
    });
    let (code, _, err) = replicator(&[
        "--db",
        db.path.to_str().unwrap(),
        "--target",
        &target,
        "--once",
        "--bootstrap",
        "always",
        "--batch-size",
        "1000",
    ]);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(code, 0, "{err}");
    let seen = reader.join().unwrap();
    for state in &seen {
        assert!(*state == (100_000, 0) || *state == (90_000, 90_000), "a reader saw a partial table: {state:?}");
    }
    assert!(seen.contains(&(90_000, 90_000)));
}

#[test]
fn jsonl_is_lossless() {
    let db = app_db();
    python_workload(&db.path, 7, 200);
    let out = db.dir.path().join("events.jsonl");
    let (code, _, err) =
        replicator(&["--db", db.path.to_str().unwrap(), "--target", &format!("jsonl:{}", out.display()), "--once"]);
    assert_eq!(code, 0, "{err}");
    python_workload(&db.path, 8, 200);
    let (code, _, err) =
        replicator(&["--db", db.path.to_str().unwrap(), "--target", &format!("jsonl:{}", out.display()), "--once"]);
    assert_eq!(code, 0, "{err}");
    let events: Vec<cdc::Event> =
        std::fs::read_to_string(&out).unwrap().lines().map(|l| cdc::json::event_from_json(l).unwrap()).collect();
    assert!(events.iter().any(|e| matches!(e, cdc::Event::Change(_))));
    // Applying the events read back from JSON to a fresh replica gives the
    // source, value for value and type for type.
    let replica = db.dir.path().join("from-json.db");
    let mut target = cdc::targets::SqliteTarget::open(&replica).unwrap();
    let mut engine =
        cdc::Engine::builder(&db.path).consumer("json-check").bootstrap(cdc::BootstrapMode::Never).open().unwrap();
    cdc::Target::open(&mut target, &source_of(&mut engine)).unwrap();
    cdc::Target::apply(&mut target, &events).unwrap();
    cdc::Target::commit(&mut target, &cdc::DeliveryState::empty("from-json")).unwrap();
    assert_replica_equals(&db.path, &replica);
}

/// The source description an engine hands its target.
fn source_of(engine: &mut cdc::Engine) -> cdc::Source {
    struct Grab(Option<cdc::Source>);
    impl cdc::Target for Grab {
        fn open(&mut self, source: &cdc::Source) -> cdc::Result<Option<cdc::DeliveryState>> {
            self.0 = Some(source.clone());
            Ok(None)
        }
        fn apply(&mut self, _: &[cdc::Event]) -> cdc::Result<()> {
            Ok(())
        }
    }
    let mut grab = Grab(None);
    engine.connect(&mut grab).unwrap();
    grab.0.unwrap()
}

#[test]
fn jsonl_to_stdout_and_the_documented_value_forms() {
    let db = TempDb::with_schema("CREATE TABLE t(id INTEGER PRIMARY KEY, v);");
    db.install(&["t"]);
    // Named, stdout is a durable consumer like any other (unnamed, a peek).
    let (code, _, err) = replicator(&[
        "--db",
        db.path.to_str().unwrap(),
        "--target",
        "jsonl:-",
        "--consumer",
        "stdout",
        "--once",
        "--bootstrap",
        "never",
    ]);
    assert_eq!(code, 0, "{err}");
    sqlite3(
        &db.path,
        "INSERT INTO t VALUES(1, 9e999), (2, x'00ff'), (3, 1.0), (4, -9223372036854775808 - 0), (5, NULL);",
    );
    let (code, out, err) =
        replicator(&["--db", db.path.to_str().unwrap(), "--target", "jsonl:-", "--consumer", "stdout", "--once"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(lines[0].contains(r#""values":{"id":1,"v":{"real":"inf"}}"#), "{}", lines[0]);
    assert!(lines[1].contains(r#""v":{"blob":"AP8="}"#), "{}", lines[1]);
    assert!(lines[2].contains(r#""v":1.0}"#), "{}", lines[2]);
    assert!(lines[3].contains(r#""v":-9223372036854775808}"#), "{}", lines[3]);
    assert!(
        lines[4].contains(r#""v":null}"#)
            && lines[4].starts_with(r#"{"kind":"change","seq":6,"table":"t","op":"insert""#),
        "{}",
        lines[4]
    );
}

#[test]
fn bincode_frames_read_back_exactly() {
    let db = app_db();
    python_workload(&db.path, 3, 200);
    let out = db.dir.path().join("events.bin");
    let (code, _, err) =
        replicator(&["--db", db.path.to_str().unwrap(), "--target", &format!("bincode:{}", out.display()), "--once"]);
    assert_eq!(code, 0, "{err}");
    let read: Vec<cdc::Event> =
        cdc::targets::BincodeReader::new(std::fs::File::open(&out).unwrap()).collect::<cdc::Result<_>>().unwrap();
    // The same events, taken by a closure consumer of the same log.
    let mut expected = Vec::new();
    let mut engine = cdc::Engine::builder(&db.path).consumer("check").open().unwrap();
    engine
        .drain(&mut |e: &[cdc::Event]| {
            expected.extend_from_slice(e);
            Ok(())
        })
        .unwrap();
    assert_eq!(read, expected);
    // A frame cut short is reported, not misread.
    let bytes = std::fs::read(&out).unwrap();
    let cut = &bytes[..bytes.len() - 3];
    let err = cdc::targets::BincodeReader::new(cut).find_map(Result::err).unwrap().to_string();
    assert!(err.contains("truncated"), "{err}");
}

/// A real HTTP server on `listener` that answers `answer(n)` to the n-th
/// request (from 0), recording the bodies it answered 200 to; it stops
/// after accepting a body that contains `"stop"`, or after answering
/// `limit` requests.
pub(crate) fn http_server_on(
    listener: std::net::TcpListener,
    limit: usize,
    answer: fn(usize) -> &'static str,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        let mut accepted = Vec::new();
        let mut answered = 0;
        for (n, stream) in listener.incoming().enumerate() {
            let mut stream = stream.unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let got = stream.read(&mut chunk).unwrap();
                buf.extend_from_slice(&chunk[..got]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse().unwrap())
                        .unwrap_or(0);
                    while buf.len() < end + 4 + len {
                        let got = stream.read(&mut chunk).unwrap();
                        buf.extend_from_slice(&chunk[..got]);
                    }
                    break String::from_utf8(buf[end + 4..end + 4 + len].to_vec()).unwrap();
                }
                assert!(got > 0, "connection closed before the headers ended");
            };
            let status = answer(n);
            stream
                .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())
                .unwrap();
            answered += 1;
            if status.starts_with("200") {
                let stop = body.contains("\"stop\"");
                accepted.push(body);
                if stop {
                    break;
                }
            }
            if answered >= limit {
                break;
            }
        }
        (answered, accepted)
    })
}

#[test]
fn http_target_retries_then_delivers() {
    let db = TempDb::with_schema("CREATE TABLE t(id INTEGER PRIMARY KEY, v);");
    db.install(&["t"]);
    sqlite3(&db.path, "INSERT INTO t VALUES(1, 'a'), (2, x'01'); INSERT INTO t VALUES(3, 'stop');");
    // Two 503s, then 200.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let server = http_server_on(listener, usize::MAX, |n| if n < 2 { "503 Service Unavailable" } else { "200 OK" });
    let (code, _, err) =
        replicator(&["--db", db.path.to_str().unwrap(), "--target", &url, "--once", "--bootstrap", "never"]);
    assert_eq!(code, 0, "{err}");
    let (answered, accepted) = server.join().unwrap();
    assert_eq!((answered, accepted.len()), (3, 1), "one retry layer: two 503s, then the 200");
    let body: serde_json::Value = serde_json::from_str(&accepted[0]).unwrap();
    assert_eq!(body["events"].as_array().unwrap().len(), 3);
    assert_eq!(body["events"][1]["after"]["values"]["v"]["blob"], "AQ==");
    assert_eq!(lines_with(&err, "is unavailable: HTTP 503").len(), 1, "said once when it starts: {err}");
    assert_eq!(lines_with(&err, "recovered").len(), 1, "and once when it ends: {err}");
    // Acknowledged only after the 2xx: the consumer's position moved.
    let status = cdc::capture::status(&db.conn()).unwrap();
    assert_eq!(status.consumers[0].pending, 0);
}

/// A server that is down (connections refused) is waited for without
/// limit, said once; one that refuses the requests themselves (404) is a
/// configuration to fix: the sidecar stops at once, naming the URL without
/// its credentials, and nothing is acknowledged.
#[test]
fn http_outage_is_waited_out_and_a_refusal_stops_at_once() {
    let db = TempDb::with_schema("CREATE TABLE t(id INTEGER PRIMARY KEY, v);");
    db.install(&["t"]);
    sqlite3(&db.path, "INSERT INTO t VALUES(1, 'a'); INSERT INTO t VALUES(2, 'stop');");
    // A free port nobody listens on yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://user:s3cret@127.0.0.1:{port}/events");
    let log = db.dir.path().join("sidecar.log");
    let mut sidecar = crate::support::Sidecar::start(
        &["--db", db.path.to_str().unwrap(), "--target", &url, "--once", "--bootstrap", "never"],
        &log,
    );
    wait_until("the outage is reported", Duration::from_secs(60), || sidecar.log().contains("is unavailable"));
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let server = http_server_on(listener, usize::MAX, |_| "200 OK");
    let end = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = sidecar.child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < end, "still waiting after the server came up: {}", sidecar.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = sidecar.log();
    assert!(status.success(), "{text}");
    assert_eq!(server.join().unwrap().1.len(), 1);
    assert_eq!(lines_with(&text, "is unavailable").len(), 1, "one warning for the whole outage: {text}");
    assert_eq!(lines_with(&text, "recovered").len(), 1, "{text}");
    assert!(!text.contains("s3cret"), "credentials never logged: {text}");
    assert!(!text.contains("ERROR"), "{text}");

    // A 404: permanent.
    sqlite3(&db.path, "INSERT INTO t VALUES(3, 'b');");
    let before = cdc::capture::status(&db.conn()).unwrap().consumers;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://user:s3cret@{}/nowhere", listener.local_addr().unwrap());
    let server = http_server_on(listener, 1, |_| "404 Not Found");
    let (code, _, err) =
        replicator(&["--db", db.path.to_str().unwrap(), "--target", &url, "--once", "--bootstrap", "never"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(server.join().unwrap().0, 1, "a refusal is not retried");
    assert!(err.contains("answered HTTP 404") && err.contains("user:***@127.0.0.1"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    assert_eq!(err.trim().lines().filter(|l| l.contains("ERROR") || l.starts_with("replicator:")).count(), 1, "{err}");
    let after = cdc::capture::status(&db.conn()).unwrap().consumers;
    let (refused, others): (Vec<_>, Vec<_>) = after.into_iter().partition(|c| c.name.contains("nowhere"));
    assert!(refused.iter().all(|c| c.pending >= 1), "nothing acknowledged for the refused target: {refused:?}");
    assert_eq!(
        others.iter().map(|c| (&c.name, c.position)).collect::<Vec<_>>(),
        before.iter().map(|c| (&c.name, c.position)).collect::<Vec<_>>()
    );
}

/// A redirect is a URL to fix, not a delivery: a POST turned into a GET
/// would be answered 200 with the batch lost.
#[test]
fn http_redirect_is_refused_not_followed() {
    let db = TempDb::with_schema("CREATE TABLE t(id INTEGER PRIMARY KEY, v);");
    db.install(&["t"]);
    sqlite3(&db.path, "INSERT INTO t VALUES(1, 'a');");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let server = http_server_on(listener, 1, |_| "302 Found\r\nlocation: http://127.0.0.1:9/elsewhere");
    let (code, _, err) =
        replicator(&["--db", db.path.to_str().unwrap(), "--target", &url, "--once", "--bootstrap", "never"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(server.join().unwrap().0, 1);
    assert!(err.contains("answered HTTP 302"), "{err}");
}

/// A consumer an earlier version registered under the URL with its
/// password keeps its position under the redacted name, and the password
/// leaves the source file.
#[test]
fn an_http_consumer_named_with_credentials_is_renamed() {
    let db = TempDb::with_schema("CREATE TABLE t(id INTEGER PRIMARY KEY, v);");
    db.install(&["t"]);
    sqlite3(&db.path, "INSERT INTO t VALUES(1, 'old');");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("http://user:s3cret@{addr}/events");
    let server = http_server_on(listener, usize::MAX, |_| "200 OK");
    // What an earlier version did: the URL itself as the consumer name.
    let (code, _, err) =
        replicator(&["--db", db.path.to_str().unwrap(), "--target", &url, "--consumer", &url, "--once"]);
    assert_eq!(code, 0, "{err}");
    sqlite3(&db.path, "INSERT INTO t VALUES(2, 'stop');");
    let (code, _, err) = replicator(&["--db", db.path.to_str().unwrap(), "--target", &url, "--once"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("renamed this target's consumer record"), "{err}");
    let (_, accepted) = server.join().unwrap();
    assert_eq!(accepted.len(), 2, "the bootstrap, then only the new change: {accepted:?}");
    let accepted = &accepted[1..];
    assert!(!accepted[0].contains("\"old\""), "{}", accepted[0]);
    let names: Vec<String> = cdc::capture::status(&db.conn()).unwrap().consumers.into_iter().map(|c| c.name).collect();
    assert_eq!(names, vec![format!("http://user:***@{addr}/events")]);
    // Nor does any file beside it (the consumer records) hold the secret.
    for (path, bytes) in dir_state(db.dir.path()) {
        let name = path.to_string_lossy();
        if name.ends_with(".json") {
            assert!(!String::from_utf8_lossy(&bytes).contains("s3cret"), "{name}");
        }
    }
}

fn dir_state(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.to_string_lossy().ends_with("-shm"))
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn bad_input_is_refused_with_one_line_and_no_change() {
    let db = app_db();
    let replica = db.dir.path().join("replica.db");
    sqlite3(&replica, "CREATE TABLE users(id INTEGER PRIMARY KEY, email INTEGER, other TEXT);");
    sqlite3(
        &db.path,
        "CREATE VIRTUAL TABLE docs USING fts5(body); CREATE TABLE plain(a); PRAGMA wal_checkpoint(TRUNCATE);",
    );
    sqlite3(&replica, "PRAGMA wal_checkpoint(TRUNCATE);");
    let src = db.path.to_str().unwrap();
    let good = format!("sqlite:{}", db.dir.path().join("fresh.db").display());
    let cases: Vec<(Vec<String>, &str, i32)> = vec![
        (
            vec![
                "--db".into(),
                db.dir.path().join("missing.db").display().to_string(),
                "--target".into(),
                good.clone(),
            ],
            "missing.db: no such file",
            1,
        ),
        (vec!["--db".into(), src.into(), "--target".into(), "ftp://x".into()], "bad target \"ftp://x\"", 2),
        (
            vec!["--db".into(), src.into(), "--target".into(), "http://u:pw@h:port/x".into()],
            "bad target URL \"http://u:***@h:port/x\"",
            2,
        ),
        (vec!["--db".into(), src.into(), "--target".into(), "sqlite:".into()], "the path is empty", 2),
        (
            vec!["--db".into(), src.into(), "--target".into(), good.clone(), "--batch-size".into(), "0".into()],
            "invalid value '0' for '--batch-size <N>'",
            2,
        ),
        (
            vec!["--db".into(), src.into(), "--target".into(), good.clone(), "--table".into(), "nope".into()],
            "no table named \"nope\"",
            1,
        ),
        (
            vec!["--db".into(), src.into(), "--target".into(), good.clone(), "--table".into(), "plain".into()],
            "table \"plain\" is not captured",
            1,
        ),
        (
            vec!["--db".into(), src.into(), "--target".into(), good.clone(), "--table".into(), "docs".into()],
            "\"docs\" is a virtual table",
            1,
        ),
        (
            vec!["--db".into(), src.into(), "--target".into(), good.clone(), "--signal".into(), "inotify".into()],
            "invalid value 'inotify' for '--signal <KIND>'",
            2,
        ),
        (
            vec!["--db".into(), src.into(), "--target".into(), good.clone(), "--bootstrap".into(), "sometimes".into()],
            "invalid value 'sometimes' for '--bootstrap <MODE>'",
            2,
        ),
        (
            vec!["--db".into(), src.into(), "--target".into(), good.clone(), "--poll-interval".into(), "soon".into()],
            "invalid value 'soon' for '--poll-interval <DURATION>'",
            2,
        ),
        (
            vec!["--db".into(), src.into(), "--target".into(), format!("sqlite:{}", replica.display())],
            "table \"users\" is incompatible with the source: column \"email\" is declared \"INTEGER\"",
            1,
        ),
        (
            vec!["--db".into(), src.into(), "--target".into(), "sqlite:/nonexistent/dir/r.db".into()],
            "target folder /nonexistent/dir does not exist",
            1,
        ),
        (vec!["--db".into(), src.into()], "--target <TARGET>", 2),
    ];
    for (args, expected, code) in cases {
        let before = dir_state(db.dir.path());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (got, out, err) = replicator(&[&args[..], &["--once"]].concat());
        assert_eq!(got, code, "{args:?}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line expected: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("panicked"));
        assert_eq!(dir_state(db.dir.path()), before, "{args:?} changed a file");
    }
}

#[test]
fn ctrl_c_and_sigterm_stop_cleanly_with_exit_zero() {
    let db = app_db();
    let target = format!("sqlite:{}", db.dir.path().join("replica.db").display());
    for signal in ["INT", "TERM"] {
        let mut child = Command::new(crate::support::bin("replicator"))
            .args(["--db", db.path.to_str().unwrap(), "--target", &target])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for a row this very process delivered: by then its signal
        // handlers are installed.
        let replica = db.dir.path().join("replica.db");
        let count = || {
            rusqlite::Connection::open(&replica)
                .and_then(|c| c.query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0)))
                .unwrap_or(0)
        };
        let before = count();
        sqlite3(&db.path, "INSERT INTO users(email) VALUES('x' || random());");
        wait_until("the replica to get the row", Duration::from_secs(30), || count() > before);
        let status = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let status = child.wait().unwrap();
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(status.code(), Some(0), "SIG{signal}: {err}");
        assert!(err.contains("stopped cleanly"), "{err}");
    }
}

#[test]
fn the_demo_runs_and_checks_itself() {
    let (code, out, err) = run_bin("replicator", &["demo", "--duration", "1s"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("the replica equals the source, value for value and type for type"), "{out}");
    // Its numbered steps alone (no log lines between them), and no
    // folder named that is gone when it ends.
    assert!(!err.contains("INFO") && !out.contains("/tmp"), "{out}{err}");
}

/// The README a newcomer opens: short, with the two fresh-machine
/// commands CI runs.
#[test]
fn the_readme_is_short_and_starts_with_the_two_commands() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    assert!(readme.lines().count() <= 300, "{} lines", readme.lines().count());
    let quick = "cargo run --release --bin replicator -- demo\ncargo test --workspace --all-targets && cargo test --workspace --doc\n";
    assert!(readme.contains(quick));
}

/// The capture triggers run inside whatever SQLite the writer links:
/// here Python's own (Debian's 3.40), older than the bundled one. Every
/// statement they hold must exist there, and what they log must be exact.
#[test]
fn capture_runs_inside_an_older_sqlite_that_writes() {
    let db = app_db();
    let version = python(&db.path, "import sqlite3\nprint(sqlite3.sqlite_version)\n");
    let version = version.trim();
    assert_ne!(version, cdc::rusqlite::version(), "Python's writer links a SQLite of its own");
    // Its triggers fire in that SQLite: an error in their SQL fails the
    // workload (python_workload asserts it succeeded).
    python_workload(&db.path, 3, 200);
    let replica = db.dir.path().join("replica.db");
    let target = format!("sqlite:{}", replica.display());
    let (code, _, err) = replicator(&["--db", db.path.to_str().unwrap(), "--target", &target, "--once"]);
    assert_eq!(code, 0, "{err}");
    assert!(cdc::log::high_water(&db.conn()).unwrap() > 1, "the writer's changes were logged");
    assert_replica_equals(&db.path, &replica);
}

#[test]
fn a_locked_source_is_waited_for_then_refused_without_change() {
    let db = app_db();
    sqlite3(&db.path, "PRAGMA journal_mode=DELETE;");
    let fresh = db.dir.path().join("fresh.db");
    // Another process holds an exclusive lock for longer than the busy timeout.
    let mut holder = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(30)\n",
            db.path.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    let before = std::fs::read(&db.path).unwrap();
    let started = std::time::Instant::now();
    let target = format!("sqlite:{}", fresh.display());
    let (code, _, err) = replicator(&["--db", db.path.to_str().unwrap(), "--target", &target, "--once"]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("database is locked"), "{err}");
    assert!(started.elapsed() >= Duration::from_secs(4), "waited with a busy timeout first");
    assert_eq!(std::fs::read(&db.path).unwrap(), before);
    assert!(!fresh.exists(), "no replica was created for a source that could not be read");
}
