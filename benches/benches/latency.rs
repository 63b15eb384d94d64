//! Commit-to-replica latency for single-row commits, with each signal
//! (`fs`, `timer`, `fs+timer`; timer interval 100 ms). Criterion measures
//! the mean; every sample is also kept and p50/p99 are printed and saved
//! to `target/criterion/latency-percentiles.json` for the report. The
//! floor, measured the same way in the same run: a thread woken by an
//! inotify watch that reads the table until it sees the commit. Run:
//! `cargo bench -p cdc-benches --bench latency`.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

use cdc::signal::SignalKind;
use cdc::targets::SqliteTarget;
use cdc::{BootstrapMode, Engine, Event, Source, Target};
use cdc_benches::{NARROW, open, percentile};

const INTERVAL: Duration = Duration::from_millis(100);

/// The replica target, reporting each committed position.
struct Reporting(SqliteTarget, mpsc::Sender<i64>);

impl Target for Reporting {
    fn open(&mut self, source: &Source) -> cdc::Result<Option<cdc::DeliveryState>> {
        self.0.open(source)
    }
    fn apply(&mut self, events: &[Event]) -> cdc::Result<()> {
        self.0.apply(events)
    }
    fn commit(&mut self, state: &cdc::DeliveryState) -> cdc::Result<()> {
        self.0.commit(state)?;
        let _ = self.1.send(state.position);
        Ok(())
    }
    fn sync(&mut self) -> cdc::Result<()> {
        self.0.sync()
    }
    fn rollback(&mut self) -> cdc::Result<()> {
        self.0.rollback()
    }
}

/// What is measured: the replicator with one signal, or the floor.
#[derive(Clone, Copy)]
enum Reader {
    Engine(SignalKind),
    /// The least any reader woken by file events pays: a thread whose
    /// inotify watch (notify, as `fs` uses) wakes it, which then reads
    /// the table's last rowid with a plain `SELECT` until it sees the
    /// commit (no capture, no replica, no sleep between reads).
    Floor,
}

/// Starts `reader` on `source`; returns what stops it and the channel on
/// which it reports each position (log `seq`, or rowid for the floor) it
/// has made visible.
fn start(reader: Reader, source: &Path, replica: &Path) -> (Box<dyn FnOnce()>, mpsc::Receiver<i64>) {
    let (tx, rx) = mpsc::channel();
    match reader {
        Reader::Engine(kind) => {
            let mut engine = Engine::builder(source).bootstrap(BootstrapMode::Never).open().unwrap();
            let stop = engine.stop_handle();
            let (source, replica) = (source.to_path_buf(), replica.to_path_buf());
            let thread = std::thread::spawn(move || {
                let mut target = Reporting(SqliteTarget::open(&replica).unwrap(), tx);
                let mut signal = kind.build(&source, INTERVAL);
                engine.run(&mut target, signal.as_mut()).unwrap();
            });
            (
                Box::new(move || {
                    stop.stop();
                    thread.join().unwrap();
                }),
                rx,
            )
        }
        Reader::Floor => {
            use notify::Watcher;
            let (events, woken) = mpsc::channel();
            let mut watcher = notify::recommended_watcher(move |_| {
                let _ = events.send(());
            })
            .unwrap();
            watcher.watch(source.parent().unwrap(), notify::RecursiveMode::NonRecursive).unwrap();
            let conn = open(source);
            let thread = std::thread::spawn(move || {
                let mut seen = 0i64;
                while woken.recv().is_ok() {
                    let deadline = Instant::now() + Duration::from_millis(5);
                    loop {
                        let now: i64 =
                            conn.query_row("SELECT ifnull(max(id), 0) FROM narrow", [], |r| r.get(0)).unwrap();
                        if now > seen {
                            seen = now;
                            let _ = tx.send(now);
                            break;
                        }
                        if Instant::now() > deadline {
                            break;
                        }
                    }
                }
            });
            (
                Box::new(move || {
                    drop(watcher);
                    thread.join().unwrap();
                }),
                rx,
            )
        }
    }
}

fn latency(c: &mut Criterion) {
    let mut report = serde_json::Map::new();
    let mut group = c.benchmark_group("latency/commit-to-replica");
    group.sample_size(10);
    for (label, reader) in [
        ("fs", Reader::Engine(SignalKind::Fs)),
        ("timer", Reader::Engine(SignalKind::Timer)),
        ("fs+timer", Reader::Engine(SignalKind::FsAndTimer)),
        ("floor: inotify wake, then SELECT until seen", Reader::Floor),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (source, replica) = (dir.path().join("source.db"), dir.path().join("replica.db"));
        let mut writer = open(&source);
        writer.execute_batch(NARROW).unwrap();
        let captured = matches!(reader, Reader::Engine(_));
        if captured {
            cdc::capture::install(&mut writer, &["narrow".into()]).unwrap();
        }
        let (stop, rx) = start(reader, &source, &replica);
        let mut samples = Vec::new();
        let mut jitter = 0x2545_f491_4f6c_dd1du64;
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // An unmeasured pause of 0-20 ms, so commits do not
                    // phase-lock with the timer.
                    jitter ^= jitter << 13;
                    jitter ^= jitter >> 7;
                    jitter ^= jitter << 17;
                    std::thread::sleep(Duration::from_micros(jitter % 20_000));
                    while rx.try_recv().is_ok() {}
                    let started = Instant::now();
                    writer.execute("INSERT INTO narrow(a, b) VALUES(1, 'x')", []).unwrap();
                    let seq =
                        if captured { cdc::log::high_water(&writer).unwrap() } else { writer.last_insert_rowid() };
                    while rx.recv().unwrap() < seq {}
                    let took = started.elapsed();
                    samples.push(took);
                    total += took;
                }
                total
            })
        });
        stop();
        if samples.is_empty() {
            // Not selected by the command line's filter.
            continue;
        }
        samples.sort();
        let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
        let key = if captured { label } else { "floor" };
        println!("latency/{key}: p50 {p50:?}, p99 {p99:?} over {} commits", samples.len());
        report.insert(
            key.to_string(),
            serde_json::json!({ "p50_ms": p50.as_secs_f64() * 1e3, "p99_ms": p99.as_secs_f64() * 1e3, "samples": samples.len() }),
        );
    }
    group.finish();
    cdc_benches::save_figures("latency-percentiles.json", &report);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(10));
    targets = latency
}
criterion_main!(benches);
