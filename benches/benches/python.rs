//! What capture costs an application that writes through Python's
//! `sqlite3` module (the system's SQLite, as an application links it), in
//! wall time: the `capture` bench's workload, each variant's database
//! prepared here and its statements timed by Python itself in a child
//! process (`time.perf_counter` around the loop), in rounds that visit
//! every variant in turn so that the machine's noise falls on all of them
//! alike; the fastest round is kept (noise only ever adds time). Python
//! runs pinned to one CPU (`taskset -c 1`) where it can.
//!
//! Run: `cargo bench -p cdc-benches --bench python` (a few minutes), then
//! `cargo run -p cdc-benches --bin report`. Under `cargo test --benches`
//! it runs each workload once with few statements, untimed.

use std::path::Path;
use std::process::Command;

use cdc::Op;
use cdc_benches::shapes::{Shape, Variant, prepare};
use cdc_benches::{save_figures, scratch_dir};

/// Opens the prepared database and times its statements: one transaction
/// around them all, or one each; prints seconds per statement.
const PYTHON: &str = r#"
import json, sqlite3, sys, time
plan = json.load(open(sys.argv[2]))
rows = [[bytes.fromhex(v["blob"]) if isinstance(v, dict) else v for v in r] for r in plan["params"]]
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA wal_autocheckpoint=0")
sql, one = plan["sql"], plan["one_transaction"]
start = time.perf_counter()
if one:
    conn.execute("BEGIN")
for p in rows:
    if not one:
        conn.execute("BEGIN")
    conn.execute(sql, p)
    if not one:
        conn.execute("COMMIT")
if one:
    conn.execute("COMMIT")
print((time.perf_counter() - start) / len(rows))
"#;

fn subsec(python: &str) -> bool {
    Command::new(python)
        .args(["-c", "import sqlite3; print(sqlite3.sqlite_version_info >= (3, 42, 0))"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "True")
}

/// Seconds per statement of one timed run.
fn time_once(
    dir: &Path,
    shape: &Shape,
    op: Op,
    variant: Variant,
    rows: i64,
    one_transaction: bool,
    subsec: bool,
) -> f64 {
    let db = dir.join("python.db");
    cdc_benches::remove_db(&db);
    drop(prepare(&db, shape, variant, op, subsec));
    let params: Vec<serde_json::Value> = (1..=rows)
        .map(|i| serde_json::Value::Array(shape.params(op, i).iter().map(cdc_benches::shapes::plan_value).collect()))
        .collect();
    let plan = dir.join("plan.json");
    let plan_json =
        serde_json::json!({ "sql": shape.statement(op), "params": params, "one_transaction": one_transaction });
    std::fs::write(&plan, plan_json.to_string()).unwrap();
    let script = dir.join("time.py");
    std::fs::write(&script, PYTHON).unwrap();
    let out = python_command().arg(&script).arg(&db).arg(&plan).output().expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    cdc_benches::remove_db(&db);
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("seconds")
}

/// `python3`, pinned to one CPU where `taskset` exists: moved between
/// this machine's vCPUs, the same run took 1x or 2x its time.
fn python_command() -> Command {
    if Command::new("taskset").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let mut c = Command::new("taskset");
        c.args(["-c", "1", "python3"]);
        c
    } else {
        Command::new("python3")
    }
}

fn main() {
    let timing = std::env::args().any(|a| a == "--bench");
    // `--bench narrow/insert`: only the groups whose name contains it.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--")).unwrap_or_default();
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("python: python3 is not installed; nothing timed");
        return;
    }
    let subsec = subsec("python3");
    let (rounds, rows_one, rows_each) = if timing { (15, 2000, 200) } else { (1, 10, 5) };
    let dir = scratch_dir();
    let mut figures = serde_json::Map::new();
    for shape in Shape::all() {
        for op in Op::ALL {
            for (mode, rows, one) in [("one-txn", rows_one, true), ("txn-per-stmt", rows_each, false)] {
                let key = format!("{}/{}/{mode}", shape.name, op.keyword().to_lowercase());
                if !key.contains(&filter) {
                    continue;
                }
                let mut samples: Vec<Vec<f64>> = vec![Vec::new(); Variant::ALL.len()];
                for _ in 0..rounds {
                    for (i, variant) in Variant::ALL.into_iter().enumerate() {
                        samples[i].push(time_once(dir.path(), &shape, op, variant, rows, one, subsec));
                    }
                }
                let mut fastest = serde_json::Map::new();
                if !filter.is_empty() {
                    for (variant, s) in Variant::ALL.into_iter().zip(&samples) {
                        let us: Vec<String> = s.iter().map(|t| format!("{:.2}", t * 1e6)).collect();
                        println!("{key} {:34} {}", variant.label(), us.join(" "));
                    }
                }
                for (variant, s) in Variant::ALL.into_iter().zip(samples) {
                    let min = s.into_iter().min_by(f64::total_cmp).unwrap_or(f64::NAN);
                    fastest.insert(variant.label().into(), (min * 1e6).into());
                }
                if timing {
                    println!("{key:28} {}", serde_json::Value::Object(fastest.clone()));
                }
                figures.insert(key, fastest.into());
            }
        }
    }
    if timing && filter.is_empty() {
        save_figures("capture-python-us.json", &figures);
    }
}
