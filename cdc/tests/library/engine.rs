//! The engine: signals, positions across SIGKILL, pruning with two
//! consumers, commit points, bootstrap under concurrent writers, retries.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cdc::signal::{AnySignal, FsSignal, Signal, SignalKind, TimerSignal, Waker};
use cdc::{BootstrapMode, Engine, Event, Retry, Target, Value};

use crate::support::{Model, Seed, TempDb, apply_events, python, snapshot, sqlite3, wait_until};

const DEADLINE: Duration = Duration::from_secs(30);

fn db_with_table() -> TempDb {
    let db = TempDb::with_schema("CREATE TABLE t(id INTEGER PRIMARY KEY, v);");
    db.install(&["t"]);
    db
}

/// Runs an engine on its own thread, sending every event to a channel.
fn spawn_engine(
    db: &TempDb,
    mut signal: Box<dyn Signal>,
) -> (cdc::StopHandle, mpsc::Receiver<Event>, std::thread::JoinHandle<cdc::Result<cdc::Drained>>) {
    // Never: a write racing the first drain would otherwise arrive as a
    // bootstrap row, and these tests are about change delivery.
    let mut engine = Engine::builder(&db.path).consumer("test").bootstrap(BootstrapMode::Never).open().unwrap();
    let stop = engine.stop_handle();
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut target = |events: &[Event]| {
            events.iter().for_each(|e| tx.send(e.clone()).unwrap());
            Ok(())
        };
        let result = engine.run(&mut target, signal.as_mut());
        if let Err(e) = &result {
            eprintln!("engine stopped with an error: {e}");
        }
        result
    });
    (stop, rx, thread)
}

fn expect_change(rx: &mpsc::Receiver<Event>, value: &str) {
    expect_change_within(rx, value, DEADLINE)
}

fn expect_change_within(rx: &mpsc::Receiver<Event>, value: &str, deadline: Duration) {
    let end = std::time::Instant::now() + deadline;
    loop {
        let left = end.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left).unwrap_or_else(|e| panic!("no change {value:?} within {deadline:?}: {e}")) {
            Event::Change(c) if c.after.as_ref().is_some_and(|a| a.values[1] == cdc::Value::Text(value.into())) => {
                return;
            }
            _ => continue,
        }
    }
}

fn delivers_with(kind: SignalKind) {
    let db = db_with_table();
    // A long timer interval for `fs`-including kinds would hide a dead
    // watcher, so the timer only runs where it is the point.
    let interval = if kind == SignalKind::Timer { Duration::from_millis(50) } else { Duration::from_secs(3600) };
    let (stop, rx, thread) = spawn_engine(&db, kind.build(&db.path, interval));
    sqlite3(&db.path, "INSERT INTO t VALUES(1, 'from the shell');");
    expect_change(&rx, "from the shell");
    python(
        &db.path,
        "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nc.execute(\"INSERT INTO t VALUES(2, 'from python')\")\nc.commit()\n",
    );
    expect_change(&rx, "from python");
    stop.stop();
    let drained = thread.join().unwrap().unwrap();
    assert!(drained.stopped);
}

#[test]
fn fs_signal_delivers_a_foreign_write() {
    delivers_with(SignalKind::Fs);
}

#[test]
fn timer_signal_delivers_a_foreign_write() {
    delivers_with(SignalKind::Timer);
}

#[test]
fn fs_and_timer_signal_delivers_a_foreign_write() {
    // The default combination, with both parts live.
    let db = db_with_table();
    let (stop, rx, thread) = spawn_engine(&db, SignalKind::FsAndTimer.build(&db.path, Duration::from_millis(200)));
    sqlite3(&db.path, "INSERT INTO t VALUES(1, 'both');");
    expect_change(&rx, "both");
    stop.stop();
    thread.join().unwrap().unwrap();
}

#[test]
fn timer_carries_on_when_the_watcher_never_fires() {
    let db = db_with_table();
    let elsewhere = tempfile::tempdir().unwrap();
    let quiet = elsewhere.path().join("never-changes.db");
    let signal =
        AnySignal(vec![Box::new(FsSignal::new(&quiet)), Box::new(TimerSignal::new(Duration::from_millis(50)))]);
    let (stop, rx, thread) = spawn_engine(&db, Box::new(signal));
    sqlite3(&db.path, "INSERT INTO t VALUES(1, 'timer only');");
    expect_change(&rx, "timer only");
    stop.stop();
    thread.join().unwrap().unwrap();
}

/// A user's own signal: rings whenever a message arrives on a channel.
struct ChannelSignal(Option<mpsc::Receiver<()>>, Option<std::thread::JoinHandle<()>>);

impl Signal for ChannelSignal {
    fn start(&mut self, waker: Waker) -> cdc::Result<()> {
        let rx = self.0.take().unwrap();
        self.1 = Some(std::thread::spawn(move || {
            while !waker.is_stopped() {
                if rx.recv_timeout(Duration::from_millis(20)).is_ok() {
                    waker.wake();
                }
            }
        }));
        Ok(())
    }

    fn join(&mut self) {
        if let Some(t) = self.1.take() {
            t.join().unwrap();
        }
    }
}

#[test]
fn a_custom_signal_drives_the_engine() {
    let db = db_with_table();
    let (ring, rung) = mpsc::channel();
    let (stop, rx, thread) = spawn_engine(&db, Box::new(ChannelSignal(Some(rung), None)));
    sqlite3(&db.path, "INSERT INTO t VALUES(1, 'custom');");
    ring.send(()).unwrap();
    expect_change(&rx, "custom");
    stop.stop();
    thread.join().unwrap().unwrap();
}

#[test]
fn a_commit_made_visible_just_after_the_ring_is_not_missed() {
    // A file event can precede the visibility of its commit (WAL frames
    // are written before the commit is published). Model it: ring first,
    // commit right after, and never ring again.
    let db = db_with_table();
    let (ring, rung) = mpsc::channel();
    let (stop, rx, thread) = spawn_engine(&db, Box::new(ChannelSignal(Some(rung), None)));
    let writer = rusqlite::Connection::open(&db.path).unwrap();
    writer.busy_timeout(Duration::from_secs(10)).unwrap();
    for i in 0..30 {
        ring.send(()).unwrap();
        writer.execute("INSERT INTO t VALUES(?1, ?2)", rusqlite::params![i, format!("late {i}")]).unwrap();
        expect_change_within(&rx, &format!("late {i}"), Duration::from_secs(5));
    }
    stop.stop();
    thread.join().unwrap().unwrap();
}

#[test]
fn stopping_while_signals_fire_is_clean_every_time() {
    let db = db_with_table();
    for round in 0..40 {
        let signal = SignalKind::FsAndTimer.build(&db.path, Duration::from_millis(1));
        let (stop, _rx, thread) = spawn_engine(&db, signal);
        sqlite3(&db.path, &format!("INSERT INTO t VALUES({round}, 'r');"));
        stop.stop();
        let started = std::time::Instant::now();
        let result = thread.join().expect("no panic");
        assert!(result.unwrap().stopped);
        assert!(started.elapsed() < Duration::from_secs(5), "stop was blocked");
    }
}

/// A target recording what it got and when it committed.
#[derive(Default)]
struct Recorder {
    applies: Vec<usize>,
    commits: Vec<i64>,
    events: Vec<Event>,
    /// Fail this many apply calls first.
    fail_first: usize,
}

impl Target for Recorder {
    fn apply(&mut self, events: &[Event]) -> cdc::Result<()> {
        if self.fail_first > 0 {
            self.fail_first -= 1;
            return Err(cdc::Error::Target { target: "recorder".into(), message: "injected failure".into() });
        }
        self.applies.push(events.len());
        self.events.extend_from_slice(events);
        Ok(())
    }

    fn commit(&mut self, state: &cdc::DeliveryState) -> cdc::Result<()> {
        self.commits.push(state.position);
        Ok(())
    }
}

#[test]
fn a_large_transaction_is_committed_once_at_its_end() {
    let db = db_with_table();
    let mut engine = Engine::builder(&db.path).batch_size(100).bootstrap(BootstrapMode::Never).open().unwrap();
    sqlite3(
        &db.path,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000) INSERT INTO t SELECT i, i FROM n;",
    );
    let high_water = cdc::log::high_water(&db.conn()).unwrap();
    let mut target = Recorder::default();
    let drained = engine.drain(&mut target).unwrap();
    assert_eq!(drained.changes, 10_000);
    assert_eq!(target.applies, vec![100; 100], "bounded batches");
    assert_eq!(target.commits, vec![drained.position], "one commit, at the transaction's end");
    assert_eq!(drained.position, high_water);
}

#[test]
fn the_log_is_pruned_only_past_the_slower_consumer() {
    let db = db_with_table();
    let mut slow = Engine::builder(&db.path).consumer("slow").bootstrap(BootstrapMode::Never).open().unwrap();
    let mut fast = Engine::builder(&db.path).consumer("fast").bootstrap(BootstrapMode::Never).open().unwrap();
    sqlite3(&db.path, "INSERT INTO t VALUES(1, 'a'), (2, 'b');");
    // A consumer is registered by its first drain.
    assert_eq!(fast.drain(&mut Recorder::default()).unwrap().changes, 2);
    let slow_at = slow.drain(&mut Recorder::default()).unwrap().position;
    sqlite3(&db.path, "INSERT INTO t VALUES(3, 'c'), (4, 'd'); UPDATE t SET v = 'e';");
    let mut r = Recorder::default();
    fast.drain(&mut r).unwrap();
    assert_eq!(r.events.len(), 6);
    let mut conn = db.conn();
    // Nothing the slow consumer needs went with the fast one's drain, and
    // freeing again frees nothing.
    assert_eq!(cdc::source::prune(&mut conn).unwrap(), 0);
    let oldest = cdc::log::low_water(&conn).unwrap().unwrap();
    assert!(oldest <= slow_at + 1, "every change after the slow consumer's position is kept");
    let mut r = Recorder::default();
    slow.drain(&mut r).unwrap();
    assert_eq!(r.events.len(), 6, "the slow consumer still gets everything, across the sealed segment");
    // Both have the sealed segment whole now: the slow one's drain freed it.
    let rows: i64 = conn.query_row("SELECT count(*) FROM _cdc_log", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 1, "only the marker that starts the new table (the seq high-water) is kept");
    assert_eq!(cdc::log::segments(&conn).unwrap().len(), 1, "the sealed segment is gone");
    assert_eq!(fast.drain(&mut Recorder::default()).unwrap().changes, 0);
}

#[test]
fn a_failing_target_is_retried_then_gives_up_without_acknowledging() {
    let db = db_with_table();
    let quick = Retry { attempts: 3, initial: Duration::from_millis(1), max: Duration::from_millis(5) };
    sqlite3(&db.path, "INSERT INTO t VALUES(1, 'x');");
    let mut engine =
        Engine::builder(&db.path).consumer("r").bootstrap(BootstrapMode::Never).retry(quick).open().unwrap();
    let mut flaky = Recorder { fail_first: 2, ..Recorder::default() };
    assert_eq!(engine.drain(&mut flaky).unwrap().changes, 1);
    assert_eq!(flaky.events.len(), 1);

    sqlite3(&db.path, "INSERT INTO t VALUES(2, 'y');");
    let before = cdc::source::position(&db.conn(), "r").unwrap();
    let mut broken = Recorder { fail_first: usize::MAX, ..Recorder::default() };
    let err = engine.drain(&mut broken).unwrap_err().to_string();
    assert!(err.contains("injected failure") && err.contains("gave up after 4 attempts"), "{err}");
    assert_eq!(cdc::source::position(&db.conn(), "r").unwrap(), before, "nothing undelivered acknowledged");
}

#[test]
fn schema_drift_halts_that_table_only_and_the_printed_fix_resumes_it() {
    let db =
        TempDb::with_schema("CREATE TABLE t(id INTEGER PRIMARY KEY, v); CREATE TABLE u(id INTEGER PRIMARY KEY, v);");
    db.install(&["t", "u"]);
    let mut engine = Engine::builder(&db.path).follow_schema(false).open().unwrap();
    let mut target = Recorder::default();
    engine.drain(&mut target).unwrap();
    sqlite3(
        &db.path,
        "ALTER TABLE t ADD COLUMN w; INSERT INTO t VALUES(1, 'a', 'lost?'); INSERT INTO u VALUES(1, 'b');",
    );
    let drained = engine.drain(&mut target).unwrap();
    assert_eq!(drained.changes, 1, "u flows on");
    let halted = engine.halted().to_vec();
    assert_eq!(halted.len(), 1);
    let cdc::Halted { table, reason, fix, migrating } = &halted[0];
    assert!(!migrating);
    assert_eq!(table, "t");
    assert!(reason.contains("column \"w\" was added"), "{reason}");
    assert_eq!(fix, &cdc::Fix::Reattach { db: db.path.clone(), table: "t".into() });
    assert!(!halted[0].to_string().contains('\n'));
    // What the line says to run: t is reseeded, the value written to the
    // new column before the fix included.
    cdc::capture::install(&mut db.conn(), &["t".to_string()]).unwrap();
    target.events.clear();
    let drained = engine.drain(&mut target).unwrap();
    assert_eq!(drained.bootstrapped_rows, 1);
    assert!(engine.halted().is_empty());
    let row = target.events.iter().find_map(|e| match e {
        Event::Bootstrap { row, .. } => Some(row.values.clone()),
        _ => None,
    });
    assert_eq!(row.unwrap()[2], Value::Text("lost?".into()));
}

#[test]
fn bad_engine_settings_are_refused() {
    let db = db_with_table();
    let err = Engine::builder(&db.path).batch_size(0).open().err().unwrap().to_string();
    assert_eq!(err, "batch size must be at least 1");
    let err = Engine::builder(&db.path).tables(["nope"]).open().err().unwrap().to_string();
    assert_eq!(err, format!("{}: no table named \"nope\"", db.path.display()));
    let err = Engine::builder(&db.path).tables(["nope", "t", "gone", "nope"]).open().err().unwrap().to_string();
    assert_eq!(err, format!("{}: no tables named \"nope\", \"gone\"", db.path.display()), "listed together, once");
    sqlite3(&db.path, "CREATE TABLE other(a);");
    let err = Engine::builder(&db.path).tables(["other"]).open().err().unwrap();
    assert_eq!(err.to_string(), format!("{}: table \"other\" is not captured", db.path.display()));
    assert_eq!(err.fix(), Some(cdc::Fix::Attach { db: db.path.clone(), tables: vec!["other".into()] }));
}

/// Updates, deletes and inserts in small transactions until a file
/// appears; seeded by `SEED` (replaced before it runs).
const CHURN: &str = r#"
import sqlite3, sys, os, random
c = sqlite3.connect(sys.argv[1], timeout=30)
random.seed(SEED)
i = 0
while not os.path.exists(sys.argv[2]):
    i += 1
    k = random.randint(1, 200000)
    try:
        c.execute("UPDATE big SET v = v + 1, w = ? WHERE id = ?", ("u%d" % i, k))
        c.execute("DELETE FROM big WHERE id = ?", (random.randint(1, 200000),))
        c.execute("INSERT INTO big(v, w) VALUES(?, ?)", (i, "new"))
        c.commit()
    except sqlite3.OperationalError as e:
        # As an application would: a lock held past the busy timeout
        # refuses this transaction; roll it back and go on.
        if not any(w in str(e) for w in ("locked", "busy")):
            raise
        c.rollback()
"#;

#[test]
fn bootstrap_under_concurrent_writers_converges() {
    let db = TempDb::with_schema(
        "CREATE TABLE big(id INTEGER PRIMARY KEY, v, w TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
         INSERT INTO big SELECT i, i * 3, 'row ' || i FROM n;",
    );
    db.install(&["big"]);
    // A writer that churns until told to stop (a file appears).
    let seed = Seed::new("engine::bootstrap_under_concurrent_writers_converges", 7);
    let stop_file = db.dir.path().join("stop");
    let churn = CHURN.replace("SEED", &seed.value.to_string());
    let mut writer = crate::support::spawn_python_until(&db.path, &stop_file, &churn);
    let desc = cdc::schema::describe(&db.conn(), "big").unwrap();
    let watcher = db.conn();
    let start_hw = cdc::log::high_water(&watcher).unwrap();
    let mut waited = false;
    let mut engine = Engine::builder(&db.path)
        .batch_size(5000)
        .on_progress(move |p| {
            // After the first batch, make sure writers have committed in
            // the middle of the bootstrap.
            if !waited && !p.done {
                waited = true;
                wait_until("writes during bootstrap", DEADLINE, || {
                    cdc::log::high_water(&watcher).unwrap() > start_hw + 30
                });
            }
        })
        .open()
        .unwrap();
    let mut events = Vec::new();
    let mut target = |batch: &[Event]| {
        events.extend_from_slice(batch);
        Ok(())
    };
    let first = engine.drain(&mut target).unwrap();
    assert_eq!(first.bootstrapped_rows, 200_000, "the snapshot is the state at the cut");
    let after = cdc::log::high_water(&db.conn()).unwrap();
    assert!(after > first.position, "writers wrote during the bootstrap");
    engine.drain(&mut target).unwrap();
    std::fs::write(&stop_file, b"").unwrap();
    assert!(writer.wait().unwrap().success());
    engine.drain(&mut target).unwrap();

    // Schema, Begin, rows, End in that order, once.
    assert!(
        matches!(&events[0], Event::Schema(s) if s.bootstrap && s.sql.as_deref().is_some_and(|q| q.starts_with("CREATE TABLE")))
    );
    assert!(matches!(events[1], Event::BootstrapBegin { .. }));
    let end = events.iter().position(|e| matches!(e, Event::BootstrapEnd { .. })).unwrap();
    assert_eq!(end, 200_002);
    assert!(events[2..end].iter().all(|e| matches!(e, Event::Bootstrap { .. })));
    assert!(events[end + 1..].iter().all(|e| matches!(e, Event::Change(_))));
    let mut model = Model::new();
    apply_events(&desc, &events, &mut model);
    assert_eq!(model, snapshot(&db.conn(), &desc), "the target equals the source");
}

#[test]
fn a_position_older_than_the_pruned_log_bootstraps_in_auto_mode() {
    let db = db_with_table();
    sqlite3(&db.path, "INSERT INTO t VALUES(1, 'a'), (2, 'b');");
    let mut other = Engine::builder(&db.path).consumer("other").bootstrap(BootstrapMode::Never).open().unwrap();
    other.drain(&mut Recorder::default()).unwrap();
    sqlite3(&db.path, "UPDATE t SET v = 'c'; INSERT INTO t VALUES(3, 'd');");
    other.drain(&mut Recorder::default()).unwrap();
    // Its drain freed what it had consumed: the log starts after it now.
    assert!(cdc::log::low_water(&db.conn()).unwrap().unwrap() > 2, "freed");
    /// A target that holds table t live at position 1 (restored from an
    /// old backup, say).
    struct Stale(Vec<Event>);
    impl Target for Stale {
        fn open(&mut self, source: &cdc::Source) -> cdc::Result<Option<cdc::DeliveryState>> {
            let mut state = cdc::DeliveryState::empty(&source.log_id);
            state.set_live("t", 1);
            state.advance(1, None);
            Ok(Some(state))
        }
        fn apply(&mut self, events: &[Event]) -> cdc::Result<()> {
            self.0.extend_from_slice(events);
            Ok(())
        }
    }
    let mut stale = Stale(Vec::new());
    let mut engine = Engine::builder(&db.path).consumer("stale").open().unwrap();
    let drained = engine.drain(&mut stale).unwrap();
    assert_eq!(drained.bootstrapped_rows, 3);
    assert!(matches!(stale.0[1], Event::BootstrapBegin { .. }));

    let mut never = Engine::builder(&db.path).consumer("stale2").bootstrap(BootstrapMode::Never).open().unwrap();
    let err = never.drain(&mut Stale(Vec::new())).unwrap_err().to_string();
    assert!(err.contains("no longer holds the changes"), "{err}");
}

/// The engine process of the SIGKILL test, not a test of its own: run
/// by `positions_survive_sigkill_at_random_moments` (which sets
/// `CDC_CHILD_DB` and `CDC_CHILD_RECORD`), it runs an engine whose target
/// appends each event's id to a file and fsyncs it before every commit,
/// then writes `commit <pos>`.
#[test]
#[ignore = "the child process of positions_survive_sigkill_at_random_moments, started by it"]
fn engine_child_process() {
    let db = std::env::var("CDC_CHILD_DB").expect("run by positions_survive_sigkill_at_random_moments");
    let record = std::env::var("CDC_CHILD_RECORD").expect("run by positions_survive_sigkill_at_random_moments");
    struct FileRecorder(std::fs::File);
    impl Target for FileRecorder {
        fn apply(&mut self, events: &[Event]) -> cdc::Result<()> {
            for e in events {
                if let Event::Change(c) = e {
                    let rowid = c.after.as_ref().and_then(|a| a.rowid).unwrap();
                    // One write(2) per line: a SIGKILL cannot tear it.
                    self.0.write_all(format!("{} {rowid}\n", c.seq).as_bytes()).unwrap();
                }
            }
            Ok(())
        }
        fn commit(&mut self, state: &cdc::DeliveryState) -> cdc::Result<()> {
            self.0.sync_all().unwrap();
            self.0.write_all(format!("commit {}\n", state.position).as_bytes()).unwrap();
            self.0.sync_all().unwrap();
            Ok(())
        }
    }
    let file = std::fs::OpenOptions::new().create(true).append(true).open(record).unwrap();
    let mut engine = Engine::builder(&db).consumer("rec").batch_size(7).bootstrap(BootstrapMode::Never).open().unwrap();
    let mut signal = SignalKind::FsAndTimer.build(std::path::Path::new(&db), Duration::from_millis(20));
    engine.run(&mut FileRecorder(file), signal.as_mut()).unwrap();
}

/// Parses the record file: delivered seqs with their rowid, and commits.
fn read_record(path: &std::path::Path) -> (Vec<(i64, i64)>, Vec<i64>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (mut seen, mut commits) = (Vec::new(), Vec::new());
    for line in text.lines() {
        if let Some(pos) = line.strip_prefix("commit ") {
            commits.push(pos.parse().unwrap());
        } else {
            let parsed = line.split_once(' ').and_then(|(seq, rowid)| Some((seq.parse().ok()?, rowid.parse().ok()?)));
            seen.push(parsed.unwrap_or_else(|| panic!("torn or unknown record line {line:?}")));
        }
    }
    (seen, commits)
}

#[test]
fn positions_survive_sigkill_at_random_moments() {
    let db = db_with_table();
    let record = db.dir.path().join("record.txt");
    let total = 1500;
    let mut writer =
        Command::new("python3").args(["-", db.path.to_str().unwrap()]).stdin(Stdio::piped()).spawn().unwrap();
    let program = format!(
        "import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1], timeout=30)\nfor i in range(1, {total} + 1):\n    \
         c.execute('INSERT INTO t VALUES(?, ?)', (i, 'v'))\n    c.commit()\n    time.sleep(0.002)\n"
    );
    writer.stdin.take().unwrap().write_all(program.as_bytes()).unwrap();
    let spawn_child = || {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "engine::engine_child_process", "--ignored", "--test-threads=1"])
            .env("CDC_CHILD_DB", &db.path)
            .env("CDC_CHILD_RECORD", &record)
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    // The fault: SIGKILL after a random 50-400 ms of work, ten times.
    let seed = Seed::new("engine::positions_survive_sigkill_at_random_moments", 0x2545_f491_4f6c_dd1d);
    let mut rng = crate::support::Xorshift::seeded(seed.value);
    crate::support::kill_at_random_moments(10, &mut rng, (50, 350), spawn_child, || {
        let acked = cdc::source::position(&db.conn(), "rec").unwrap().unwrap_or(0);
        let (seen, commits) = read_record(&record);
        assert!(
            commits.iter().any(|c| *c >= acked) || acked == 0,
            "position {acked} acknowledged before the target committed it"
        );
        // Log row 1 is the install marker; every later row is one
        // single-row insert, so every seq from 2 up to the acknowledged
        // position must have reached the target.
        let delivered: std::collections::HashSet<i64> = seen.iter().map(|(s, _)| *s).collect();
        if let Some(missing) = (2..=acked).find(|s| !delivered.contains(s)) {
            panic!("seq {missing} acknowledged (position {acked}) but never delivered");
        }
    });
    assert!(writer.wait().unwrap().success());
    let mut child = spawn_child();
    let hw = cdc::log::high_water(&db.conn()).unwrap();
    wait_until("the final drain", DEADLINE, || cdc::source::position(&db.conn(), "rec").unwrap() == Some(hw));
    child.kill().unwrap();
    child.wait().unwrap();
    // Every insert arrived, and first deliveries are in log order.
    let (seen, _) = read_record(&record);
    let mut first: Vec<(i64, i64)> = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (seq, rowid) in seen {
        if ids.insert(rowid) {
            first.push((seq, rowid));
        }
    }
    assert_eq!(ids.len(), total as usize, "every change arrived");
    assert!(first.windows(2).all(|w| w[0].0 < w[1].0), "in order");
}

#[test]
fn idle_engine_stays_idle() {
    // Not a timing test: counts drains, which an idle engine must not do.
    let db = db_with_table();
    let drains = Arc::new(Mutex::new(0));
    let count = drains.clone();
    let mut engine = Engine::builder(&db.path).bootstrap(BootstrapMode::Never).open().unwrap();
    let stop = engine.stop_handle();
    let thread = std::thread::spawn(move || {
        let mut target = |_: &[Event]| {
            *count.lock().unwrap() += 1;
            Ok(())
        };
        let mut signal = SignalKind::Timer.build(std::path::Path::new("/"), Duration::from_millis(2));
        engine.run(&mut target, signal.as_mut())
    });
    sqlite3(&db.path, "INSERT INTO t VALUES(1, 'one');");
    wait_until("the one change", DEADLINE, || *drains.lock().unwrap() >= 1);
    let (tx, rx) = mpsc::channel::<()>();
    // ~100 timer wake-ups with nothing new: no target call.
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    drop(tx);
    stop.stop();
    thread.join().unwrap().unwrap();
    assert_eq!(*drains.lock().unwrap(), 1);
}

#[test]
fn a_replica_never_moves_a_table_back_except_by_reseeding_it() {
    let db = db_with_table();
    sqlite3(&db.path, "INSERT INTO t VALUES(1, 'a');");
    let replica = db.dir.path().join("replica.db");
    let mut target = cdc::targets::SqliteTarget::open(&replica).unwrap();
    let mut engine = Engine::builder(&db.path).open().unwrap();
    engine.drain(&mut target).unwrap();
    let held = engine.state().unwrap().clone();
    let at = held.live_position("t").unwrap();
    assert!(at > 0);
    // A smaller position for a table that was not reseeded is refused...
    let mut back = held.clone();
    back.forget("t");
    back.set_live("t", at - 1);
    let err = Target::commit(&mut target, &back).unwrap_err().to_string();
    assert!(err.contains("refusing to move table \"t\" back"), "{err}");
    Target::rollback(&mut target).unwrap();
    // ...and allowed when the same transaction purged and reseeded it.
    let begin = Event::BootstrapBegin { table: "t".into(), columns: vec!["id".to_string(), "v".to_string()].into() };
    Target::apply(&mut target, &[begin]).unwrap();
    Target::commit(&mut target, &back).unwrap();
    // Another engine on the same replica file is refused while this one holds it.
    let err = cdc::targets::SqliteTarget::open(&replica).err().unwrap().to_string();
    assert!(err.contains(&format!("already in use by process {}", std::process::id())), "{err}");
}

#[test]
fn a_layout_nothing_refers_to_any_more_is_forgotten_once_pruned() {
    let db = db_with_table();
    sqlite3(&db.path, "INSERT INTO t(v) VALUES(1), (2); ALTER TABLE t ADD COLUMN w;");
    // Re-attached: the old layout stays registered for its log rows.
    db.install(&["t"]);
    sqlite3(&db.path, "INSERT INTO t(v, w) VALUES(3, 4);");
    let layouts = || db.conn().query_row("SELECT count(*) FROM _cdc_tables", [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(layouts(), 2);
    let mut engine = Engine::builder(&db.path).open().unwrap();
    let mut target = |_: &[Event]| Ok(());
    cdc::source::set_position(&db.conn(), "behind", 0).unwrap();
    engine.drain(&mut target).unwrap();
    assert_eq!(layouts(), 2, "a consumer that read nothing yet keeps every log row");
    cdc::source::remove_consumer(&mut db.conn(), "behind").unwrap();
    cdc::source::prune(&mut db.conn()).unwrap();
    assert_eq!(layouts(), 1, "the old layout went with its last log row");
}
