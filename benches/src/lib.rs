//! Shared fixtures for the benches: source databases with capture and a
//! backlog, built with plain SQL so the fixture itself is not what is
//! measured.
#![forbid(unsafe_code)]

pub mod report;
pub mod shapes;

use std::path::{Path, PathBuf};

use rusqlite::Connection;

/// A narrow table of mixed types (6 columns), the benches' common shape.
pub const NARROW: &str = "CREATE TABLE narrow(id INTEGER PRIMARY KEY, a INTEGER, b TEXT, c REAL, d BLOB, e INTEGER)";

/// Opens (creating) a WAL database at `path` with `synchronous=NORMAL`.
pub fn open(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;").unwrap();
    conn
}

/// A scratch folder for the capture bench: in memory (`/dev/shm`) when
/// the machine has it, so disk flushes do not blur a CPU-bound comparison.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() { tempfile::tempdir_in(shm).unwrap() } else { tempfile::tempdir().unwrap() }
}

/// Opens a capture-bench database: WAL, `synchronous=NORMAL`, and no
/// automatic checkpoint, which would otherwise fire inside the measured
/// loop at points that differ from variant to variant. (Checkpointing
/// later copies each written byte once more; capture writes about twice
/// the bytes of no capture, so it pays that in proportion.)
pub fn open_scratch(path: &Path) -> Connection {
    let conn = open(path);
    conn.execute_batch("PRAGMA wal_autocheckpoint=0;").unwrap();
    conn
}

/// Inserts `rows` rows into `narrow` in one transaction.
pub fn fill_narrow(conn: &Connection, rows: usize) {
    conn.execute_batch(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO narrow(a, b, c, d, e) SELECT i, 'name ' || i, i * 0.5, x'0102030405', i * 3 FROM n;"
    ))
    .unwrap();
}

/// A source with `narrow` captured and a backlog of `rows` inserts,
/// written once into `dir` and copied per iteration by [`copy_of`].
pub fn backlog_source(dir: &Path, rows: usize) -> PathBuf {
    let path = dir.join("backlog.db");
    let mut conn = open(&path);
    conn.execute_batch(NARROW).unwrap();
    cdc::capture::install(&mut conn, &["narrow".into()]).unwrap();
    fill_narrow(&conn, rows);
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    path
}

/// Saves figures a bench computes beside criterion's timings (percentiles,
/// peak memory) as `target/criterion/<name>`, where the report reads them.
pub fn save_figures(name: &str, figures: &serde_json::Map<String, serde_json::Value>) {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion").join(name);
    if let Some(parent) = out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::write(out, serde_json::to_string_pretty(figures).unwrap());
}

/// A fresh replica at `dir/name` holding an empty `narrow` table.
pub fn empty_narrow_replica(dir: &Path, name: &str) -> Connection {
    let replica = dir.join(name);
    remove_db(&replica);
    let conn = open(&replica);
    conn.execute_batch(NARROW).unwrap();
    conn
}

/// Removes a database file and its `-wal` and `-shm`, if present (a
/// fresh target for the next iteration).
pub fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// A fresh copy of `template` (each iteration consumes its backlog):
/// the records of the previous copy's consumers go with it.
pub fn copy_of(template: &Path, name: &str) -> PathBuf {
    let path = template.with_file_name(name);
    let _ = std::fs::remove_file(path.with_extension("db-wal"));
    for record in cdc::source::ConsumerRecord::all(&path).unwrap_or_default() {
        let _ = cdc::source::ConsumerRecord::remove(&path, &record.consumer);
    }
    std::fs::copy(template, &path).unwrap();
    path
}

/// The `p` quantile (0 to 1) of `sorted` durations.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A fresh copy of the captured, empty `narrow` table at `template`, its
/// (empty) bootstrap already delivered to `target` by the returned engine.
pub fn ready(template: &Path, name: &str, target: &mut dyn cdc::Target) -> (PathBuf, cdc::Engine) {
    let source = copy_of(template, name);
    let mut e = cdc::Engine::builder(&source).open().unwrap();
    e.drain(target).unwrap();
    (source, e)
}
