//! What the engine itself costs: draining a backlog of captured changes
//! into a target that does nothing, against the floor of reading the same
//! log rows with a plain `SELECT` (the ratio is the engine's decode and
//! bookkeeping overhead). Run: `cargo bench -p cdc-benches --bench drain`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use cdc::{BootstrapMode, Engine, Event};
use cdc_benches::{backlog_source, copy_of, open};

const BACKLOG: usize = 20_000;

fn drain(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let template = backlog_source(dir.path(), BACKLOG);
    let mut group = c.benchmark_group("drain");
    group.throughput(Throughput::Elements(BACKLOG as u64));
    group.sample_size(10);

    group.bench_function("baseline: SELECT every log row", |b| {
        b.iter_batched(
            || copy_of(&template, "select.db"),
            |path| {
                let conn = open(&path);
                let mut stmt = conn.prepare("SELECT * FROM _cdc_log WHERE (kind & 7) != 4").unwrap(); // not the install marker
                let mut rows = stmt.query([]).unwrap();
                let mut n = 0usize;
                while let Some(r) = rows.next().unwrap() {
                    for i in 0..8 {
                        std::hint::black_box(r.get_ref(i).unwrap());
                    }
                    n += 1;
                }
                assert_eq!(n, BACKLOG);
            },
            BatchSize::PerIteration,
        )
    });

    for batch in [100, 1000] {
        group.bench_function(format!("engine drain, no-op target, batch {batch}"), |b| {
            b.iter_batched(
                || copy_of(&template, "engine.db"),
                |path| {
                    let mut engine =
                        Engine::builder(&path).batch_size(batch).bootstrap(BootstrapMode::Never).open().unwrap();
                    let mut target = |events: &[Event]| {
                        std::hint::black_box(events);
                        Ok(())
                    };
                    assert_eq!(engine.drain(&mut target).unwrap().changes, BACKLOG as u64);
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, drain);
criterion_main!(benches);
