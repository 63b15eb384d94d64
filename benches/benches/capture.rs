//! What capture costs per write: INSERT, UPDATE and DELETE on a narrow, a
//! wide and a BLOB table, in one large transaction and one statement per
//! transaction, each against three baselines measured in the same run (no
//! capture, a `json_object` trigger, the application writing the same log
//! row itself). Run: `cargo bench -p cdc-benches --bench capture`, then
//! `cargo run -p cdc-benches --bin report` for the ratios.

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rusqlite::{Connection, params_from_iter};

use cdc::{Op, Value};
use cdc_benches::shapes::{Shape, Variant, app_log, app_log_sql, install};
use cdc_benches::{open_scratch, scratch_dir};

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

/// One prepared write: statement parameters and, for the floor variant,
/// the log row's values.
struct Write {
    params: Vec<Value>,
    log: Vec<Value>,
}

struct Fixture {
    _dir: tempfile::TempDir,
    conn: Connection,
    sql: String,
    log_sql: Vec<(String, usize)>,
    writes: Vec<Write>,
}

fn image(i: i64, row: &[Value]) -> Vec<Value> {
    [Value::Integer(i), Value::Integer(i)].into_iter().chain(row.iter().cloned()).collect()
}

fn fixture(shape: &Shape, variant: Variant, op: Op, rows: i64) -> Fixture {
    let dir = scratch_dir();
    let mut conn = open_scratch(&dir.path().join("bench.db"));
    conn.execute_batch(&shape.create_sql()).unwrap();
    if op != Op::Insert {
        let tx = conn.transaction().unwrap();
        for i in 1..=rows {
            let params: Vec<Value> = std::iter::once(Value::Integer(i)).chain(shape.row(i, 0)).collect();
            tx.execute(&shape.insert_sql(), params_from_iter(&params)).unwrap();
        }
        tx.commit().unwrap();
    }
    install(&mut conn, shape, variant);
    let desc = shape.desc(&conn);
    let image_len = desc.image_len();
    let writes = (1..=rows)
        .map(|i| {
            let before = shape.row(i, 0);
            match op {
                Op::Insert => Write {
                    params: std::iter::once(Value::Integer(i)).chain(before.iter().cloned()).collect(),
                    log: image(i, &before),
                },
                Op::Update => {
                    let changed = shape.row(i, 1);
                    let mut after = before.clone();
                    for &c in &shape.updated {
                        after[c] = changed[c].clone();
                    }
                    let params = std::iter::once(Value::Integer(i))
                        .chain(shape.updated.iter().map(|&c| after[c].clone()))
                        .collect();
                    let mut log = image(i, &before);
                    log.extend(image(i, &after));
                    Write { params, log }
                }
                Op::Delete => Write { params: vec![Value::Integer(i)], log: image(i, &before) },
            }
        })
        .collect();
    let sql = match op {
        Op::Insert => shape.insert_sql(),
        Op::Update => shape.update_sql(),
        Op::Delete => "DELETE FROM t WHERE id = ?1".to_string(),
    };
    let values = if op == Op::Update { 2 * image_len } else { image_len };
    Fixture { _dir: dir, conn, sql, log_sql: app_log_sql(&desc, op, values), writes }
}

fn run(f: &Fixture, variant: Variant, mode: Mode) {
    let conn = &f.conn;
    let mut stmt = conn.prepare_cached(&f.sql).unwrap();
    if mode == Mode::OneTransaction {
        conn.execute_batch("BEGIN").unwrap();
    }
    for w in &f.writes {
        if mode == Mode::TransactionPerStatement {
            conn.execute_batch("BEGIN").unwrap();
        }
        stmt.execute(params_from_iter(&w.params)).unwrap();
        if variant == Variant::AppLog {
            app_log(conn, &f.log_sql, &w.log);
        }
        if mode == Mode::TransactionPerStatement {
            conn.execute_batch("COMMIT").unwrap();
        }
    }
    if mode == Mode::OneTransaction {
        conn.execute_batch("COMMIT").unwrap();
    }
}

fn capture(c: &mut Criterion) {
    for shape in [Shape::narrow(), Shape::wide(), Shape::blob()] {
        for op in [Op::Insert, Op::Update, Op::Delete] {
            for mode in [Mode::OneTransaction, Mode::TransactionPerStatement] {
                let name = format!("capture/{}/{}/{}", shape.name, op.keyword().to_lowercase(), mode.label());
                let mut group = c.benchmark_group(name);
                group.throughput(Throughput::Elements(mode.rows() as u64));
                for variant in Variant::ALL {
                    group.bench_function(variant.label(), |b| {
                        b.iter_batched(
                            || fixture(&shape, variant, op, mode.rows()),
                            |f| {
                                run(&f, variant, mode);
                                f
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
