//! The sidecar beside a busy application. A Python writer in its own
//! process commits small transactions, at full single-thread speed or
//! paced (1 ms between commits), of one of two kinds: `BEGIN IMMEDIATE`,
//! one INSERT, one UPDATE, `COMMIT`, with `busy_timeout` 0 or 100 ms; or
//! as ORMs and hand-written code do, a deferred `BEGIN`, a `SELECT`, then
//! the INSERT and an UPDATE of what it read, `COMMIT`, with Python's
//! default 5 s timeout (such a transaction is refused at once, whatever
//! its timeout, when another connection commits between its read and its
//! write: `SQLITE_BUSY_SNAPSHOT`). Each scenario runs once without the
//! sidecar (the baseline) and once with it, in the same run.
//! Reported per scenario:
//!
//! - (a) the application's commit latency p50/p99 with the sidecar divided
//!   by without (a transaction refused with `SQLITE_BUSY` is retried after
//!   1 ms, as an application would, and its latency includes the retries);
//! - (b) application transactions refused with `SQLITE_BUSY` per minute;
//! - (c) replica lag (commit in the writer to commit in the replica) p50
//!   and p99, and p99 per quarter of the run (bounded: not growing);
//! - (d) the source's `-wal` size, largest and at the end.
//!
//! Not a criterion bench: one run is minutes of wall time. Run:
//! `cargo bench -p cdc-benches --bench load` (`LOAD_SECS=60` by default;
//! the table is printed and saved to `target/criterion/load.md`). Under
//! `cargo test --benches` it runs one scenario for two seconds as a smoke
//! test.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cdc::signal::SignalKind;
use cdc::targets::SqliteTarget;
use cdc::{Engine, Event, Source, Target, Value};

/// The application: `events` grows, `counters` is updated in place.
const SCHEMA: &str = "CREATE TABLE events(id INTEGER PRIMARY KEY, ts REAL NOT NULL, payload TEXT);
CREATE TABLE counters(id INTEGER PRIMARY KEY, n INTEGER NOT NULL, ts REAL);
WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 100)
INSERT INTO counters SELECT i, 0, 0 FROM k;";

/// The writer. Writes one JSON object to the file named last: commit latencies (µs), refused
/// transactions and refusals.
const WRITER: &str = r#"
import json, random, sqlite3, sys, time
db, paced, busy_ms, secs, out = sys.argv[1], sys.argv[2] == "paced", int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
deferred = sys.argv[6] == "deferred"
c = sqlite3.connect(db, timeout=busy_ms / 1000, isolation_level=None)
c.execute(f"PRAGMA busy_timeout={busy_ms}")
c.execute("PRAGMA synchronous=NORMAL")
rnd = random.Random(7)
lat, refused_txns, refusals = [], 0, 0
end = time.monotonic() + secs
while time.monotonic() < end:
    start, refused = time.perf_counter(), False
    while True:
        try:
            k = rnd.randint(1, 100)
            if deferred:
                c.execute("BEGIN")
                n = c.execute("SELECT n FROM counters WHERE id = ?", (k,)).fetchone()[0]
                c.execute("INSERT INTO events(ts, payload) VALUES(?, ?)", (time.time(), "x" * 40))
                c.execute("UPDATE counters SET n = ?, ts = ? WHERE id = ?", (n + 1, time.time(), k))
            else:
                c.execute("BEGIN IMMEDIATE")
                c.execute("INSERT INTO events(ts, payload) VALUES(?, ?)", (time.time(), "x" * 40))
                c.execute("UPDATE counters SET n = n + 1, ts = ? WHERE id = ?", (time.time(), k))
            c.execute("COMMIT")
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            refusals += 1
            refused = True
            if c.in_transaction:
                c.execute("ROLLBACK")
            time.sleep(0.001)
    lat.append(int((time.perf_counter() - start) * 1e6))
    refused_txns += refused
    if paced:
        time.sleep(0.001)
with open(out, "w") as f:
    json.dump({"lat": lat, "refused_txns": refused_txns, "refusals": refusals}, f)
"#;

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// The replica, recording for every `events` row it commits how long
/// after the writer's commit that was (from the row's own `ts`).
struct Timed {
    replica: SqliteTarget,
    pending: Vec<f64>,
    lags: Arc<Mutex<Vec<(f64, f64)>>>,
}

impl Target for Timed {
    fn open(&mut self, source: &Source) -> cdc::Result<Option<cdc::DeliveryState>> {
        self.replica.open(source)
    }
    fn apply(&mut self, events: &[Event]) -> cdc::Result<()> {
        for e in events {
            if let Event::Change(c) = e
                && &*c.table == "events"
                && let Some(Value::Real(ts)) = c.after.as_ref().and_then(|r| r.values.get(1))
            {
                self.pending.push(*ts);
            }
        }
        self.replica.apply(events)
    }
    fn commit(&mut self, state: &cdc::DeliveryState) -> cdc::Result<()> {
        self.replica.commit(state)?;
        let now = now_secs();
        self.lags.lock().unwrap().extend(self.pending.drain(..).map(|ts| (ts, now - ts)));
        Ok(())
    }
    fn sync(&mut self) -> cdc::Result<()> {
        self.replica.sync()
    }
    fn rollback(&mut self) -> cdc::Result<()> {
        self.pending.clear();
        self.replica.rollback()
    }
}

#[derive(Clone, Copy)]
struct Scenario {
    paced: bool,
    busy_ms: u32,
    /// A deferred read-then-write transaction instead of `BEGIN IMMEDIATE`.
    deferred: bool,
}

impl Scenario {
    fn label(&self) -> String {
        let pace = if self.paced { "paced (1 ms)" } else { "full speed" };
        let kind = if self.deferred { "deferred read-then-write" } else { "immediate" };
        format!("{pace}, {kind}")
    }
}

struct Outcome {
    lat: Vec<u64>,
    refused_txns: u64,
    refusals: u64,
    lags: Vec<(f64, f64)>,
    wal_max: u64,
    wal_end: u64,
    secs: f64,
    /// CPU time of this process (the sidecar's engine) over the run.
    cpu_secs: f64,
    /// Log rows left when the writer stopped (pruning keeping up or not).
    backlog: i64,
    /// The sidecar's write transactions to the source, and those it put
    /// off (another process in a transaction).
    writes: (u64, u64),
}

/// CPU seconds this process has used (user + system), from `/proc`.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn wal_size(db: &Path) -> u64 {
    std::fs::metadata(db.with_extension("db-wal")).map_or(0, |m| m.len())
}

fn run(s: Scenario, secs: f64, sidecar: bool, dir: &Path) -> Outcome {
    let db = dir.join(format!("app-{}-{}-{}-{sidecar}.db", s.paced, s.busy_ms, s.deferred));
    let replica = db.with_extension("replica.db");
    let mut conn = cdc_benches::open(&db);
    conn.execute_batch(SCHEMA).unwrap();
    cdc::capture::install(&mut conn, &["events".into(), "counters".into()]).unwrap();
    drop(conn);
    let lags = Arc::new(Mutex::new(Vec::new()));
    let engine = sidecar.then(|| {
        let mut builder = Engine::builder(&db);
        // `LOAD_PRUNE_INTERVAL=10s` (say) to see forced maintenances under
        // a writer that never pauses; the default is the binary's.
        if let Some(every) = std::env::var("LOAD_PRUNE_INTERVAL").ok().and_then(|s| humantime::parse_duration(&s).ok())
        {
            builder = builder.prune_interval(every);
        }
        let mut engine = builder.open().unwrap();
        let stop = engine.stop_handle();
        let stats = engine.stats();
        let mut target =
            Timed { replica: SqliteTarget::open(&replica).unwrap(), pending: Vec::new(), lags: lags.clone() };
        let signal_db = db.clone();
        let thread = std::thread::spawn(move || {
            // The binary's default; `LOAD_SIGNAL=timer` (etc.) to compare.
            let kind: SignalKind = std::env::var("LOAD_SIGNAL").map_or(SignalKind::FsAndTimer, |k| k.parse().unwrap());
            let mut signal = kind.build(&signal_db, Duration::from_millis(500));
            engine.run(&mut target, signal.as_mut()).unwrap();
        });
        // Caught up (bootstrapped) before the writer starts.
        let deadline = Instant::now() + Duration::from_secs(60);
        let seeded = || {
            rusqlite::Connection::open(&replica)
                .and_then(|r| r.query_row("SELECT count(*) FROM counters", [], |r| r.get::<_, i64>(0)))
                .is_ok_and(|n| n == 100)
        };
        while !seeded() {
            assert!(Instant::now() < deadline, "the sidecar did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        (stop, thread, stats)
    });
    let script = dir.join("writer.py");
    let report = db.with_extension("json");
    std::fs::write(&script, WRITER).unwrap();
    let mut child = Command::new("python3")
        .arg(&script)
        .args([db.to_str().unwrap(), if s.paced { "paced" } else { "full" }, &s.busy_ms.to_string(), &secs.to_string()])
        .arg(&report)
        .arg(if s.deferred { "deferred" } else { "immediate" })
        .spawn()
        .expect("python3 runs the writer");
    let started = Instant::now();
    let cpu_start = cpu_secs();
    let (mut wal_max, mut wal_end) = (0, 0);
    while child.try_wait().unwrap().is_none() {
        wal_end = wal_size(&db);
        wal_max = wal_max.max(wal_end);
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu_start;
    let backlog = cdc::capture::status(&rusqlite::Connection::open(&db).unwrap()).unwrap().log_rows;
    assert!(child.wait().unwrap().success(), "the writer failed");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let mut writes = (0, 0);
    if let Some((stop, thread, stats)) = engine {
        // Every committed row reaches the replica before the sidecar stops.
        let committed = json["lat"].as_array().unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(120);
        while lags.lock().unwrap().len() < committed {
            assert!(Instant::now() < deadline, "the replica did not catch up");
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.stop();
        thread.join().unwrap();
        let s = stats.snapshot();
        writes = (s.source_writes, s.source_writes_deferred);
    }
    let mut lags = std::mem::take(&mut *lags.lock().unwrap());
    lags.sort_by(|a, b| a.0.total_cmp(&b.0));
    Outcome {
        lat: json["lat"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect(),
        refused_txns: json["refused_txns"].as_u64().unwrap(),
        refusals: json["refusals"].as_u64().unwrap(),
        lags,
        wal_max,
        wal_end,
        secs: elapsed,
        cpu_secs: cpu,
        backlog,
        writes,
    }
}

fn pct<T: Copy + PartialOrd>(sorted: &[T], p: f64) -> T {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn sorted_lat(o: &Outcome) -> Vec<u64> {
    let mut v = o.lat.clone();
    v.sort_unstable();
    v
}

fn lag_ms(lags: &[(f64, f64)], p: f64) -> f64 {
    let mut v: Vec<f64> = lags.iter().map(|l| l.1 * 1e3).collect();
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { pct(&v, p) }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let full = std::env::args().any(|a| a == "--bench");
    let secs: f64 = std::env::var("LOAD_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60.0);
    // `LOAD_ONLY=deferred` (or any part of a label) runs only those.
    let only = std::env::var("LOAD_ONLY").unwrap_or_default();
    let (secs, scenarios) = if full {
        let all = [false, true].into_iter().flat_map(|paced| {
            [(0, false), (100, false), (5000, true)].map(|(busy_ms, deferred)| Scenario { paced, busy_ms, deferred })
        });
        (secs, all.filter(|s| s.label().contains(&only)).collect::<Vec<_>>())
    } else {
        (2.0, vec![Scenario { paced: true, busy_ms: 5000, deferred: true }])
    };
    let dir = tempfile::tempdir().unwrap();
    let mut table = String::from(
        "| writer | busy_timeout | commits/s alone | commit p50 with / without | commit p99 with / without | BUSY txns/min without → with (refusals) | lag p50 / p99 | lag p99 by quarter | -wal max / end | sidecar CPU | log rows at end | source writes (put off) |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for s in scenarios {
        let alone = run(s, secs, false, dir.path());
        let with = run(s, secs, true, dir.path());
        let (a, w) = (sorted_lat(&alone), sorted_lat(&with));
        let quarters: Vec<String> =
            with.lags.chunks(with.lags.len().div_ceil(4).max(1)).map(|q| format!("{:.0}", lag_ms(q, 0.99))).collect();
        let per_min = |o: &Outcome| o.refused_txns as f64 * 60.0 / o.secs;
        table.push_str(&format!(
            "| {} | {} ms | {:.0} | {:.2} ({} → {} µs) | {:.2} ({} → {} µs) | {:.1} → {:.1} ({}) | {:.1} / {:.1} ms | {} ms | {:.1} / {:.1} MiB | {:.0}% | {} | {} ({}) |\n",
            s.label(),
            s.busy_ms,
            alone.lat.len() as f64 / alone.secs,
            pct(&w, 0.5) as f64 / pct(&a, 0.5) as f64,
            pct(&a, 0.5),
            pct(&w, 0.5),
            pct(&w, 0.99) as f64 / pct(&a, 0.99) as f64,
            pct(&a, 0.99),
            pct(&w, 0.99),
            per_min(&alone),
            per_min(&with),
            with.refusals,
            lag_ms(&with.lags, 0.5),
            lag_ms(&with.lags, 0.99),
            quarters.join(" · "),
            with.wal_max as f64 / (1 << 20) as f64,
            with.wal_end as f64 / (1 << 20) as f64,
            with.cpu_secs * 100.0 / with.secs,
            with.backlog,
            with.writes.0,
            with.writes.1,
        ));
        eprint!("{table}");
    }
    println!("{table}");
    if full {
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
        let _ = std::fs::create_dir_all(&out);
        let _ = std::fs::write(out.join("load.md"), &table);
    }
}
