//! Helpers shared by the library's tests and the cross-process tests
//! (`tests/integration`, which includes this file): temporary databases,
//! foreign writers (the `sqlite3` shell, Python), a reference replay of
//! the log to compare with the source value by value, seeds, waits.
#![allow(dead_code)] // each test binary uses its own share

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

    /// Capture on every table, as `cdc-setup install --all` (tables made
    /// later are captured by replicators that follow the schema).
    pub fn install_all(&self) {
        cdc::capture::install_every_table(&mut self.conn(), None).unwrap();
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
            cdc::Event::BootstrapEnd { .. } | cdc::Event::Schema(_) => {}
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
                "{} failed with seed {}; replay it with: CDC_SEED={} cargo test -p {} --test {} -- --exact {}",
                self.test,
                self.value,
                self.value,
                env!("CARGO_PKG_NAME"),
                env!("CARGO_CRATE_NAME"),
                self.test
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
pub fn spawn_python_until(db: &Path, stop: &Path, program: &str) -> Writer {
    let mut child = Command::new("python3")
        .args(["-", db.to_str().unwrap(), stop.to_str().unwrap()])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(program.as_bytes()).unwrap();
    Writer(child)
}

/// A writer process, killed when dropped: a test that fails before it
/// writes the stop file must not leave it running (and holding the test
/// harness's output open).
pub struct Writer(pub std::process::Child);

impl std::ops::Deref for Writer {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Writer {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Checkpoints `db`'s WAL until it prints `0|0|0`: nothing left in it.
pub fn checkpoint_away(db: &Path) {
    wait_until("the WAL checkpointed away", std::time::Duration::from_secs(60), || {
        sqlite3(db, "PRAGMA wal_checkpoint(TRUNCATE);").trim() == "0|0|0"
    });
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
