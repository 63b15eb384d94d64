//! What capture costs per write, in wall time: INSERT, UPDATE and DELETE on
//! a narrow, a wide and a BLOB table, in one large transaction and one
//! statement per transaction, for every variant of `shapes::Variant`
//! measured in the same run (no capture, this project's triggers with
//! inserts from `NEW` and read back, format 1, kevinconway/sqlite-cdc's
//! JSON triggers, the floor). The same workload counted in instructions,
//! which noise does not move: `--bench instructions`. Run: `cargo bench
//! -p cdc-benches --bench capture`, then `cargo run -p cdc-benches --bin
//! report` for the ratios.

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use cdc::Op;
use cdc_benches::shapes::{Shape, Variant, prepare, write};
use cdc_benches::{copy_of, open_scratch, scratch_dir};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    OneTransaction,
    TransactionPerStatement,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::OneTransaction => "one-txn",
            Mode::TransactionPerStatement => "txn-per-stmt",
        }
    }

    fn rows(self) -> i64 {
        match self {
            Mode::OneTransaction => 2000,
            Mode::TransactionPerStatement => 200,
        }
    }
}

fn capture(c: &mut Criterion) {
    let dir = scratch_dir();
    for shape in Shape::all() {
        for op in Op::ALL {
            // Each variant's database, made once; every iteration writes
            // into a fresh copy of it.
            let templates: Vec<_> = Variant::ALL
                .into_iter()
                .map(|variant| {
                    let path = dir.path().join(format!("{}-{}-{}.db", shape.name, op.code(), variant as u8));
                    drop(prepare(&path, &shape, variant, op, true));
                    path
                })
                .collect();
            for mode in [Mode::OneTransaction, Mode::TransactionPerStatement] {
                let name = format!("capture/{}/{}/{}", shape.name, op.keyword().to_lowercase(), mode.label());
                let mut group = c.benchmark_group(name);
                group.throughput(Throughput::Elements(mode.rows() as u64));
                for (variant, template) in Variant::ALL.into_iter().zip(&templates) {
                    group.bench_function(variant.label(), |b| {
                        b.iter_batched(
                            || open_scratch(&copy_of(template, "bench.db")),
                            |conn| {
                                write(&conn, &shape, op, mode.rows(), mode == Mode::OneTransaction);
                                conn
                            },
                            BatchSize::PerIteration,
                        )
                    });
                }
                group.finish();
            }
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_millis(1500));
    targets = capture
}
criterion_main!(benches);
