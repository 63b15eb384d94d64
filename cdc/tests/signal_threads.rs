//! Stopping an engine while its signals fire leaves no thread behind. In a
//! test binary of its own, so that no other test's threads are counted.

use std::time::{Duration, Instant};

use cdc::signal::SignalKind;
use cdc::{BootstrapMode, Engine, Event};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn no_thread_is_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let mut conn = cdc::rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(a);").unwrap();
    cdc::capture::install(&mut conn, &["t".into()]).unwrap();
    let before = threads();
    for i in 0..50 {
        let mut engine = Engine::builder(&path).bootstrap(BootstrapMode::Never).open().unwrap();
        let stop = engine.stop_handle();
        let watched = path.clone();
        let runner = std::thread::spawn(move || {
            let mut target = |_: &[Event]| Ok(());
            let mut signal = SignalKind::FsAndTimer.build(&watched, Duration::from_millis(1));
            engine.run(&mut target, signal.as_mut())
        });
        conn.execute("INSERT INTO t VALUES(?1)", [i]).unwrap();
        stop.stop();
        assert!(runner.join().expect("no panic").unwrap().stopped);
    }
    // notify's inotify thread is detached (its Drop sends a shutdown
    // message without joining), so it exits just after the stop: wait for
    // that with a deadline rather than expecting it at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while threads() != before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).unwrap().trim().to_string())
        .collect();
    assert_eq!(threads(), before, "signal threads exited; threads now: {names:?}");
}
