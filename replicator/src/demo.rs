//! `replicator demo`: everything in one command, no setup. A sample
//! database in a temporary folder, capture attached, a writer running a
//! mixed workload while the engine replicates to a replica file, then a
//! check that the replica equals the source value for value and type for
//! type.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

use cdc::Engine;
use cdc::signal::SignalKind;
use cdc::targets::SqliteTarget;

use crate::{Error, Result};

const SCHEMA: &str = "
PRAGMA journal_mode=WAL;
CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, email TEXT, balance REAL, avatar BLOB);
CREATE TABLE orders(id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE ON UPDATE CASCADE,
                    total REAL NOT NULL, note TEXT);
CREATE INDEX orders_by_customer ON orders(customer_id);
CREATE TABLE \"tag cloud\"(tag TEXT, item INTEGER, weight, PRIMARY KEY(tag, item)) WITHOUT ROWID;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
INSERT INTO customers SELECT i, 'customer ' || i, 'c' || i || '@example.com', i * 1.25, randomblob(16) FROM n;
";

const TABLES: [&str; 3] = ["customers", "orders", "tag cloud"];

/// A small deterministic generator (no dependency needed for a demo).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn sql(e: rusqlite::Error) -> Error {
    Error::Cdc(cdc::Error::Sqlite(e))
}

/// One transaction of the demo workload; returns the rows it changed.
fn write_once(conn: &mut Connection, rng: &mut Rng, step: u64) -> Result<usize> {
    let tx = conn.transaction().map_err(sql)?;
    let id = 1 + rng.below(4000) as i64;
    let changed = match rng.below(9) {
        0 => tx.execute(
            "INSERT OR IGNORE INTO customers(id, name, email, balance, avatar) VALUES(?1, ?2, NULL, ?3, x'')",
            params![id, format!("customer {id}"), step as f64 / 3.0],
        ),
        1 => tx.execute("UPDATE customers SET balance = balance + ?2, email = NULL WHERE id = ?1", params![id, 0.1]),
        2 => tx.execute("UPDATE customers SET id = id + 10000 WHERE id = ?1", params![id]),
        // Evicts whichever row already has that name: no delete trigger fires.
        3 => tx.execute(
            "INSERT OR REPLACE INTO customers(id, name, balance) VALUES(?1, ?2, ?3)",
            params![20000 + step as i64, format!("customer {id}"), -1.5],
        ),
        // Cascades to the customer's orders.
        4 => tx.execute("DELETE FROM customers WHERE id = ?1", params![id]),
        5 => tx.execute(
            "INSERT INTO orders(customer_id, total, note) SELECT id, ?2, ?3 FROM customers WHERE id = ?1",
            params![id, step as f64 * 0.01, "ünïcode ✓ 'quoted'"],
        ),
        6 => tx.execute(
            "INSERT INTO \"tag cloud\" VALUES(?1, ?2, ?3) ON CONFLICT(tag, item) DO UPDATE SET weight = excluded.weight",
            params![format!("tag{}", id % 7), id % 50, rng.below(3) as i64],
        ),
        7 => tx.execute("DELETE FROM \"tag cloud\" WHERE item = ?1", params![id % 50]),
        _ => {
            // A transaction that is rolled back leaves no trace.
            tx.execute("DELETE FROM orders", []).map_err(sql)?;
            return Ok(0);
        }
    }
    .map_err(sql)?;
    tx.commit().map_err(sql)?;
    Ok(changed)
}

/// The replica's stored position (`None` until its first commit).
fn position(replica: &Path) -> Option<i64> {
    let conn = Connection::open_with_flags(replica, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    let sql = format!(
        "SELECT json_extract(state, '$.position') FROM {} WHERE id = 1",
        cdc::sql::quote_ident(cdc::targets::sqlite::STATE_TABLE)
    );
    conn.query_row(&sql, [], |r| r.get(0)).ok().flatten()
}

/// Runs the demo for `duration` of writes in a temporary folder (kept and
/// named at the end with `keep`), then checks the replica value by value.
pub fn run(duration: Duration, keep: bool) -> Result<()> {
    let dir = tempfile::tempdir().map_err(Error::io("creating a temporary folder"))?;
    let (source, replica) = (dir.path().join("source.db"), dir.path().join("replica.db"));
    if keep {
        println!("demo folder: {} (kept afterwards)", dir.path().display());
    } else {
        println!("demo in a temporary folder, removed at the end (--keep keeps it)");
    }

    let mut conn = Connection::open(&source).map_err(sql)?;
    conn.execute_batch(SCHEMA).map_err(sql)?;
    conn.execute_batch("PRAGMA foreign_keys=ON;").map_err(sql)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
    let tables: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    cdc::capture::install(&mut conn, &tables)?;
    println!("1. created source.db (2000 customers) and attached capture to {}", TABLES.join(", "));

    let mut engine = Engine::builder(&source).consumer("demo").batch_size(500).open()?;
    let stop = engine.stop_handle();
    let (replica_path, source_path) = (replica.clone(), source.clone());
    let replicator = std::thread::spawn(move || -> cdc::Result<cdc::Drained> {
        let mut target = SqliteTarget::open(&replica_path)?;
        let mut signal = SignalKind::FsAndTimer.build(&source_path, Duration::from_millis(100));
        engine.run(&mut target, signal.as_mut())
    });
    println!("2. replicating to replica.db (signal fs+timer) while a writer runs for {duration:?}:");

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    let (mut transactions, mut changed, mut reported) = (0u64, 0usize, started);
    while started.elapsed() < duration && !replicator.is_finished() {
        changed += write_once(&mut conn, &mut rng, transactions)?;
        transactions += 1;
        if reported.elapsed() >= Duration::from_secs(1) {
            reported = Instant::now();
            let at = position(&replica).map_or("replica: starting".into(), |p| format!("replica at seq {p}"));
            println!("   wrote {transactions} transactions ({changed} rows changed); {at}");
        }
    }
    let high_water = cdc::log::high_water(&conn)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while position(&replica) < Some(high_water) && !replicator.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.stop();
    let drained = replicator.join().map_err(|_| cdc::Error::Panicked("the demo's replicator thread".into()))??;
    println!(
        "3. writer done after {transactions} transactions; the replicator delivered {} bootstrap rows and {} changes up to seq {}",
        drained.bootstrapped_rows, drained.changes, drained.position
    );

    let replica_conn = Connection::open(&replica).map_err(sql)?;
    let mut differences = Vec::new();
    for table in TABLES {
        let rows: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {}", cdc::sql::quote_ident(table)), [], |r| r.get(0))
            .map_err(sql)?;
        match cdc::compare::table(&conn, &replica_conn, table)? {
            None => println!("   {table:<10} {rows:>6} rows: identical"),
            Some(difference) => {
                println!("   {table:<10} DIFFERENT: {difference}");
                differences.push(difference);
            }
        }
    }
    if keep {
        let kept = dir.keep();
        println!("files kept in {}", kept.display());
    }
    if !differences.is_empty() {
        return Err(Error::Differs(differences.join("; ")));
    }
    println!("4. the replica equals the source, value for value and type for type");
    Ok(())
}
