//! Bootstrap speed: reseeding a replica from a 1M-row table, against
//! `VACUUM INTO` (SQLite copying the whole file itself, each page written
//! once, no journal) and against the floor of a copy that ends in a WAL
//! replica (SQLite attaching the source and copying the table with one
//! `INSERT … SELECT` into a WAL file, then its checkpoint). Run:
//! `cargo bench -p cdc-benches --bench bootstrap`.

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use cdc::targets::SqliteTarget;
use cdc::{BootstrapMode, Engine};
use cdc_benches::{NARROW, fill_narrow, open, remove_db};

/// 1M rows when benchmarking (release); a small table when `cargo test
/// --benches` runs each bench once in a debug build, to keep CI quick.
const ROWS: usize = if cfg!(debug_assertions) { 20_000 } else { 1_000_000 };

fn bootstrap(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.db");
    {
        let mut conn = open(&source);
        conn.execute_batch(NARROW).unwrap();
        fill_narrow(&conn, ROWS);
        cdc::capture::install(&mut conn, &["narrow".into()]).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    }
    let mut group = c.benchmark_group("bootstrap/narrow-1M");
    group.throughput(Throughput::Elements(ROWS as u64));

    group.bench_function("baseline: VACUUM INTO", |b| {
        let copy = dir.path().join("vacuum-copy.db");
        b.iter_batched(
            || {
                let _ = std::fs::remove_file(&copy);
                open(&source)
            },
            |conn| {
                conn.execute("VACUUM INTO ?1", [copy.to_str().unwrap()]).unwrap();
                conn
            },
            BatchSize::PerIteration,
        )
    });

    group.bench_function("baseline: INSERT INTO ... SELECT into a WAL file", |b| {
        let copy = dir.path().join("insert-copy.db");
        b.iter_batched(
            || {
                remove_db(&copy);
                let conn = open(&copy);
                conn.execute_batch(NARROW).unwrap();
                conn.execute("ATTACH ?1 AS src", [format!("file:{}?mode=ro", source.display())]).unwrap();
                conn
            },
            |conn| {
                conn.execute_batch(
                    "BEGIN IMMEDIATE; INSERT INTO main.narrow SELECT * FROM src.narrow; COMMIT; \
                     PRAGMA wal_checkpoint(PASSIVE);",
                )
                .unwrap();
                conn
            },
            BatchSize::PerIteration,
        )
    });

    group.bench_function("replicator bootstrap, batch 1000", |b| {
        let replica = dir.path().join("replica.db");
        let mut n = 0u64;
        b.iter_batched(
            || {
                remove_db(&replica);
                n += 1;
                let mut engine = Engine::builder(&source)
                    .consumer(format!("bench{n}"))
                    .bootstrap(BootstrapMode::Always)
                    .open()
                    .unwrap();
                let mut target = SqliteTarget::open(&replica).unwrap();
                engine.connect(&mut target).unwrap();
                (engine, target)
            },
            |(mut engine, mut target)| {
                assert_eq!(engine.drain(&mut target).unwrap().bootstrapped_rows, ROWS as u64);
                (engine, target)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(100)).measurement_time(Duration::from_secs(10));
    targets = bootstrap
}
criterion_main!(benches);
