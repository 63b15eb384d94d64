//! What capture costs per write, in instructions: the `capture` bench's
//! workload (single-row statements in one transaction) counted by
//! callgrind, which gives the same count on every run however loaded the
//! machine is. Counted through two SQLites: this build's (bundled, what a
//! Rust application links) and the system's, as an application links it
//! (Python's `sqlite3` module, in a child process).
//!
//! Only SQLite's own work is counted (`--toggle-collect=sqlite3_step`),
//! for two runs of 200 and 1200 statements; their difference over 1000 is
//! the cost of one statement, setup and teardown cancelling out.
//!
//! Run: `cargo bench -p cdc-benches --bench instructions` (needs valgrind;
//! about 15 minutes), then `cargo run -p cdc-benches --bin report`.
//! Under `cargo test --benches` it runs each workload once, uncounted.

use std::path::{Path, PathBuf};
use std::process::Command;

use cdc::Op;
use cdc_benches::shapes::{Shape, Variant, prepare, write};
use cdc_benches::{save_figures, scratch_dir};

/// Statements of the two counted runs.
const SHORT: i64 = 200;
const LONG: i64 = 1200;

/// Set in a child process: `shape|op|rows|database` to run once.
const CHILD: &str = "CDC_INSTRUCTIONS_CHILD";

/// The system SQLite's side: opens the database the bench prepared and
/// runs the statements in one transaction.
const PYTHON: &str = r#"
import json, sqlite3, sys
plan = json.load(open(sys.argv[2]))
rows = [[bytes.fromhex(v["blob"]) if isinstance(v, dict) else v for v in r] for r in plan["params"]]
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA wal_autocheckpoint=0")
conn.execute("BEGIN")
for p in rows:
    conn.execute(plan["sql"], p)
conn.execute("COMMIT")
"#;

fn parse_op(name: &str) -> Op {
    Op::ALL.into_iter().find(|op| op.keyword().eq_ignore_ascii_case(name)).expect("an operation")
}

/// In the child: runs one workload, on the database the parent
/// prepared, through this build's SQLite.
fn child(spec: &str) {
    let parts: Vec<&str> = spec.splitn(4, '|').collect();
    let (shape, op, rows) = (Shape::by_name(parts[0]).unwrap(), parse_op(parts[1]), parts[2].parse().unwrap());
    let conn = cdc_benches::open_scratch(Path::new(parts[3]));
    write(&conn, &shape, op, rows, true);
}

/// Instructions SQLite executed in `command` (callgrind, inside
/// `sqlite3_step` only).
fn count(mut command: Command, out: &Path) -> u64 {
    let status = command.status().expect("valgrind runs");
    assert!(status.success(), "{command:?} failed");
    let text = std::fs::read_to_string(out).unwrap();
    let _ = std::fs::remove_file(out);
    text.lines()
        .find_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("callgrind's totals")
}

fn callgrind(out: &Path) -> Command {
    let mut c = Command::new("valgrind");
    c.arg("--tool=callgrind")
        .arg("--toggle-collect=sqlite3_step")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c
}

/// Per-statement instructions through this build's SQLite (the database
/// prepared here, outside callgrind, which runs programs ~50x slower).
fn bundled(shape: &Shape, op: Op, variant: Variant, dir: &Path) -> f64 {
    let exe = std::env::current_exe().unwrap();
    let run = |rows: i64| {
        let db = dir.join(format!("bundled-{rows}.db"));
        cdc_benches::remove_db(&db);
        drop(prepare(&db, shape, variant, op, true));
        let out = dir.join("bundled.out");
        let mut c = callgrind(&out);
        c.arg(&exe).env(CHILD, format!("{}|{}|{rows}|{}", shape.name, op.keyword(), db.display()));
        let n = count(c, &out);
        cdc_benches::remove_db(&db);
        n
    };
    (run(LONG) as f64 - run(SHORT) as f64) / (LONG - SHORT) as f64
}

/// The system's Python, resolved (a shim script would be what callgrind
/// counts), and its SQLite version; `None` without one.
fn system_python() -> Option<(PathBuf, String)> {
    let out = Command::new("python3")
        .args(["-c", "import sqlite3, sys; print(sys.executable); print(sqlite3.sqlite_version)"])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut lines = text.lines();
    Some((PathBuf::from(lines.next()?), lines.next()?.to_string()))
}

fn version_at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

/// Per-statement instructions through the system's SQLite: the database
/// prepared here, the statements run by Python.
fn system(shape: &Shape, op: Op, variant: Variant, dir: &Path, python: &Path, version: &str) -> f64 {
    let script = dir.join("run.py");
    std::fs::write(&script, PYTHON).unwrap();
    let run = |rows: i64| {
        let db = dir.join(format!("system-{rows}.db"));
        cdc_benches::remove_db(&db);
        drop(prepare(&db, shape, variant, op, version_at_least(version, 3, 42)));
        let params: Vec<serde_json::Value> = (1..=rows)
            .map(|i| {
                serde_json::Value::Array(shape.params(op, i).iter().map(cdc_benches::shapes::plan_value).collect())
            })
            .collect();
        let plan = dir.join("plan.json");
        std::fs::write(&plan, serde_json::json!({ "sql": shape.statement(op), "params": params }).to_string()).unwrap();
        let out = dir.join("system.out");
        let mut c = callgrind(&out);
        c.arg(python).arg(&script).arg(&db).arg(&plan);
        let n = count(c, &out);
        cdc_benches::remove_db(&db);
        n
    };
    (run(LONG) as f64 - run(SHORT) as f64) / (LONG - SHORT) as f64
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        return child(&spec);
    }
    let counting = std::env::args().any(|a| a == "--bench");
    if !counting {
        // `cargo test --benches`: every workload once, uncounted.
        for shape in Shape::all() {
            for op in Op::ALL {
                for variant in Variant::ALL {
                    let dir = scratch_dir();
                    let conn = prepare(&dir.path().join("test.db"), &shape, variant, op, true);
                    write(&conn, &shape, op, 20, true);
                }
            }
        }
        return;
    }
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("instructions: valgrind is not installed; nothing counted");
        return;
    }
    let python = system_python();
    let bundled_version = cdc::rusqlite::version().to_string();
    let dir = scratch_dir();
    let mut figures = serde_json::Map::new();
    for shape in Shape::all() {
        for op in Op::ALL {
            let key = format!("{}/{}", shape.name, op.keyword().to_lowercase());
            let mut ours = serde_json::Map::new();
            let mut theirs = serde_json::Map::new();
            for variant in Variant::ALL {
                let n = bundled(&shape, op, variant, dir.path());
                ours.insert(variant.label().into(), n.round().into());
                let mut line = format!("{key:16} {:34} bundled {bundled_version}: {n:>9.0}", variant.label());
                if let Some((exe, version)) = &python {
                    let n = system(&shape, op, variant, dir.path(), exe, version);
                    theirs.insert(variant.label().into(), n.round().into());
                    line.push_str(&format!("   system {version}: {n:>9.0}"));
                }
                println!("{line}");
            }
            let entry = |m| serde_json::Value::Object(m);
            let mut both = serde_json::Map::new();
            both.insert(format!("bundled {bundled_version}"), entry(ours));
            if let Some((_, version)) = &python {
                both.insert(format!("system {version}"), entry(theirs));
            }
            figures.insert(key, both.into());
        }
    }
    save_figures("capture-instructions.json", &figures);
}
