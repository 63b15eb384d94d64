//! Replication throughput: draining a backlog of captured changes into a
//! SQLite replica, per batch size, against two baselines measured in the
//! same run: copying the same final rows with `INSERT INTO ... SELECT`
//! through `ATTACH` (SQLite's bulk path), and applying the same writes as
//! SQL statements in one transaction, as the `sqlite3` shell would run a
//! script of them. Run:
//! `cargo bench -p cdc-benches --bench replication`.

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use cdc::targets::SqliteTarget;
use cdc::{BootstrapMode, Engine};
use cdc_benches::{NARROW, backlog_source, copy_of, empty_narrow_replica, open, remove_db};

const BACKLOG: usize = 20_000;

fn replication(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let template = backlog_source(dir.path(), BACKLOG);
    let mut group = c.benchmark_group("replication/narrow-inserts");
    group.throughput(Throughput::Elements(BACKLOG as u64));

    group.bench_function("baseline: INSERT INTO ... SELECT via ATTACH", |b| {
        b.iter_batched(
            || {
                let source = copy_of(&template, "attach-source.db");
                let replica = dir.path().join("attach-replica.db");
                let _ = std::fs::remove_file(&replica);
                let conn = open(&replica);
                conn.execute_batch(&format!("{NARROW}; PRAGMA synchronous=FULL;")).unwrap();
                (conn, source)
            },
            |(conn, source)| {
                conn.execute("ATTACH ?1 AS src", [source.to_str().unwrap()]).unwrap();
                conn.execute_batch("BEGIN; INSERT INTO main.narrow SELECT * FROM src.narrow; COMMIT; DETACH src;")
                    .unwrap();
                conn
            },
            BatchSize::PerIteration,
        )
    });

    // The same 20 000 inserts as a SQL script, one statement each.
    let script = {
        let conn = open(&template);
        let mut stmt = conn.prepare("SELECT 'INSERT INTO narrow VALUES(' || quote(id) || ',' || quote(a) || ',' || quote(b) || ',' || quote(c) || ',' || quote(d) || ',' || quote(e) || ');' FROM narrow").unwrap();
        let lines: Vec<String> = stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        format!("BEGIN;\n{}\nCOMMIT;", lines.join("\n"))
    };
    group.bench_function("baseline: the same writes as SQL statements", |b| {
        b.iter_batched(
            || {
                let replica = dir.path().join("script-replica.db");
                let _ = std::fs::remove_file(&replica);
                let conn = open(&replica);
                conn.execute_batch(&format!("{NARROW}; PRAGMA synchronous=FULL;")).unwrap();
                conn
            },
            |conn| {
                conn.execute_batch(&script).unwrap();
                conn
            },
            BatchSize::PerIteration,
        )
    });

    for batch in [1, 10, 100, 1000, 10_000] {
        group.bench_function(format!("replicator, batch {batch}"), |b| {
            b.iter_batched(
                || {
                    let source = copy_of(&template, "source.db");
                    let replica = dir.path().join("replica.db");
                    let _ = std::fs::remove_file(&replica);
                    let engine =
                        Engine::builder(&source).batch_size(batch).bootstrap(BootstrapMode::Never).open().unwrap();
                    let mut target = SqliteTarget::open(&replica).unwrap();
                    let mut engine = engine;
                    engine.connect(&mut target).unwrap();
                    (engine, target)
                },
                |(mut engine, mut target)| {
                    assert_eq!(engine.drain(&mut target).unwrap().changes, BACKLOG as u64);
                    (engine, target)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
    large_backlog(c);
}

/// 400 000 changes (20 000 in a debug build, which `cargo test --benches`
/// runs once).
/// One row of `narrow`, every column bound.
const INSERT_NARROW: &str = "INSERT INTO narrow VALUES(?1, ?2, ?3, ?4, ?5, ?6)";

const LARGE: usize = if cfg!(debug_assertions) { 20_000 } else { 400_000 };

/// A large backlog drained to the end (`--once`: read, applied, the
/// replica flushed, the source's log pruned), against the same inserts as
/// plain SQL: one prepared statement, values bound, one transaction, into
/// the same kind of replica file.
fn large_backlog(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let template = backlog_source(dir.path(), LARGE);
    let rows: Vec<Vec<rusqlite::types::Value>> = {
        let conn = open(&template);
        let mut stmt = conn.prepare("SELECT id, a, b, c, d, e FROM narrow ORDER BY id").unwrap();
        stmt.query_map([], |r| (0..6).map(|i| r.get(i)).collect()).unwrap().map(Result::unwrap).collect()
    };
    let mut group = c.benchmark_group("replication/narrow-400k");
    group.throughput(Throughput::Elements(LARGE as u64));
    group.sample_size(10);
    group.bench_function("baseline: the same inserts as plain SQL", |b| {
        b.iter_batched(
            || empty_narrow_replica(dir.path(), "plain-replica.db"),
            |mut conn| {
                let tx = conn.transaction().unwrap();
                {
                    let mut stmt = tx.prepare(INSERT_NARROW).unwrap();
                    for row in &rows {
                        stmt.execute(rusqlite::params_from_iter(row)).unwrap();
                    }
                }
                tx.commit().unwrap();
                conn
            },
            BatchSize::PerIteration,
        )
    });
    // What any replicator reading this log pays at least: every change
    // read with one plain SELECT, its after image inserted as above, and
    // the log emptied with one DELETE (each in one transaction).
    group.bench_function("floor: SELECT the log, the same inserts, DELETE the log", |b| {
        b.iter_batched(
            || (open(&copy_of(&template, "floor-source.db")), empty_narrow_replica(dir.path(), "floor-replica.db")),
            |(mut source, mut conn)| {
                let tx = conn.transaction().unwrap();
                let mut n = 0;
                {
                    let mut insert = tx.prepare(INSERT_NARROW).unwrap();
                    // v0..v5 are the columns (the after image of an insert;
                    // the INTEGER PRIMARY KEY carries the rowid).
                    let mut read = source
                        .prepare("SELECT seq, kind, v0, v1, v2, v3, v4, v5 FROM _cdc_log WHERE (kind & 7) BETWEEN 1 AND 3 ORDER BY seq")
                        .unwrap();
                    let mut rows = read.query([]).unwrap();
                    while let Some(r) = rows.next().unwrap() {
                        for i in 0..2 {
                            std::hint::black_box(r.get_ref(i).unwrap());
                        }
                        for i in 0..6 {
                            let v = rusqlite::types::ToSqlOutput::Borrowed(r.get_ref(2 + i).unwrap());
                            insert.raw_bind_parameter(i + 1, &v).unwrap();
                        }
                        insert.raw_execute().unwrap();
                        n += 1;
                    }
                }
                tx.commit().unwrap();
                assert_eq!(n, LARGE);
                let prune = source.transaction().unwrap();
                prune.execute("DELETE FROM _cdc_log WHERE (kind & 7) BETWEEN 1 AND 3", []).unwrap();
                prune.commit().unwrap();
                (source, conn)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("replicator drain to the end, batch 1000", |b| {
        b.iter_batched(
            || {
                let source = copy_of(&template, "large-source.db");
                let replica = dir.path().join("large-replica.db");
                remove_db(&replica);
                let mut engine = Engine::builder(&source).bootstrap(BootstrapMode::Never).open().unwrap();
                let mut target = SqliteTarget::open(&replica).unwrap();
                engine.connect(&mut target).unwrap();
                (engine, target)
            },
            |(mut engine, mut target)| {
                assert_eq!(engine.drain(&mut target).unwrap().changes, LARGE as u64);
                (engine, target)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = replication
}
criterion_main!(benches);
