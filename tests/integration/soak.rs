//! The soak: three writers this project did not write the workload of
//! (Python's sqlite3, the sqlite3 shell, and a Rust thread) for ten
//! minutes, the sidecar SIGKILLed about every minute and restarted. At the
//! end the replica equals the source, the sidecar's RSS stayed flat after
//! warm-up, and its log holds no line above a warning. Run by hand:
//!
//! `cargo test -p sqlite-cdc-replicator --test integration -- --ignored soak --nocapture`
//!
//! (`CDC_SOAK_SECS` shortens or lengthens it; `CDC_SEED` replays a run.)

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::replicator::{app_db, assert_replica_equals, looping_workload};
use crate::support::{Seed, Sidecar, Xorshift, lines_with, spawn_python_until};

/// The sidecar's resident set in KiB, from `/proc`.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[test]
#[ignore = "ten minutes; run by hand (see the module docs)"]
fn soak_three_writers_and_a_sidecar_killed_every_minute() {
    let seed = Seed::new("soak::soak_three_writers_and_a_sidecar_killed_every_minute", 2026);
    let secs: u64 = std::env::var("CDC_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let mut rng = Xorshift::seeded(seed.value);
    let db = app_db();
    let replica = db.dir.path().join("replica.db");
    let (src, target) = (db.path.to_str().unwrap().to_string(), format!("sqlite:{}", replica.display()));
    let log = db.dir.path().join("sidecar.log");
    let stop_file = db.dir.path().join("stop");

    // Python: the seeded random workload of the convergence tests.
    let mut python = spawn_python_until(&db.path, &stop_file, &looping_workload(seed.value));
    // The sqlite3 shell, fed transactions through a pipe; what SQLite
    // refuses it reports (to /dev/null) and goes on, as its users do.
    let mut shell = Command::new("sqlite3")
        .arg(&db.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut shell_in = shell.stdin.take().unwrap();
    writeln!(shell_in, ".timeout 5000").unwrap();
    // Rust: a thread with its own connection.
    let done = Arc::new(AtomicBool::new(false));
    let rust = {
        let (path, done) = (db.path.clone(), done.clone());
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.busy_timeout(Duration::from_secs(5)).unwrap();
            let mut i: i64 = 0;
            while !done.load(Ordering::Relaxed) {
                i += 1;
                let r = conn.execute_batch(&format!(
                    "BEGIN IMMEDIATE;
                     INSERT INTO st(a, b) VALUES({i}, 'rust {i}');
                     UPDATE st SET b = b || '+' WHERE id % 13 = {};
                     DELETE FROM st WHERE id % 17 = {} AND id < {i} - 50;
                     COMMIT;",
                    i % 13,
                    i % 17
                ));
                if r.is_err() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let started = Instant::now();
    let mut runs: Vec<(u64, u64, u64)> = Vec::new(); // (seconds, RSS at 20 s, RSS at the end), KiB
    let mut shell_n = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        let mut sidecar = Sidecar::start(&["--db", &src, "--target", &target], &log);
        let life = Duration::from_secs(45 + rng.below(30));
        let born = Instant::now();
        let (mut early, mut late) = (0, 0);
        while born.elapsed() < life && started.elapsed() < Duration::from_secs(secs) {
            shell_n += 1;
            writeln!(
                shell_in,
                "BEGIN IMMEDIATE; INSERT INTO nokey VALUES({shell_n}, randomblob(8)); \
                 UPDATE users SET score = coalesce(score, 0) + 0.25 WHERE id = abs(random()) % 40; \
                 DELETE FROM nokey WHERE x = {} ; COMMIT;",
                shell_n.saturating_sub(30)
            )
            .unwrap();
            std::thread::sleep(Duration::from_millis(20));
            assert!(sidecar.running(), "the sidecar exited:\n{}", sidecar.log());
            let rss = rss_kib(sidecar.child.id()).unwrap_or(0);
            if born.elapsed() < Duration::from_secs(20) {
                early = rss;
            }
            late = rss;
        }
        runs.push((born.elapsed().as_secs(), early, late));
        sidecar.kill(); // SIGKILL
    }
    std::fs::write(&stop_file, b"").unwrap();
    done.store(true, Ordering::Relaxed);
    rust.join().unwrap();
    drop(shell_in);
    assert!(shell.wait().unwrap().success(), "the sqlite3 shell failed");
    assert!(python.wait().unwrap().success(), "the Python writer failed");

    let sidecar = Sidecar::start(&["--db", &src, "--target", &target], &log);
    crate::support::wait_until("the replica catches up", Duration::from_secs(300), || {
        crate::support::difference(&db.path, &replica, &crate::replicator::APP_TABLES).is_none()
    });
    assert_replica_equals(&db.path, &replica);
    let text = sidecar.log();
    drop(sidecar);
    let worse: Vec<&str> = lines_with(&text, "ERROR");
    assert!(worse.is_empty(), "error lines in the sidecar's log: {worse:#?}");
    let rows: i64 = db.conn().query_row("SELECT count(*) FROM users", [], |r| r.get(0)).unwrap();
    println!("soak: {secs} s, {} sidecar runs, {shell_n} shell transactions, {rows} users rows", runs.len());
    for (life, early, late) in &runs {
        println!("  run of {life} s: RSS {early} KiB at 20 s, {late} KiB at the end");
        if *life >= 40 {
            assert!(*late <= early + 8 * 1024, "RSS grew by more than 8 MiB after warm-up: {early} → {late} KiB");
        }
    }
    println!("warnings: {}", lines_with(&text, "WARN").len());
}
