//! The ground moves under the replicator: bootstraps cut short, replicas
//! deleted, tables followed later or captured anew, a second replicator,
//! the source as its own target, the source file replaced or restored from
//! an older backup. Each test runs the `replicator` binary in its own
//! process against writers it did not write, and ends with the replica
//! compared to the source value by value and storage class by storage
//! class, or with the one line that says what could not be followed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::replicator::{APP_TABLES, app_db, python_workload};
use crate::support::{Sidecar, TempDb, assert_equal, lines_with, run_bin, sqlite3, wait_equal, wait_until};

const DEADLINE: Duration = Duration::from_secs(120);

fn target(replica: &Path) -> String {
    format!("sqlite:{}", replica.display())
}

/// `replicator ARGS --once`: exit code and stderr.
fn once(args: &[&str]) -> (i32, String) {
    let (code, _, err) = run_bin("replicator", &[args, &["--once"]].concat());
    (code, err)
}

/// The delivery state a replica stores, as JSON text ("" when none).
fn replica_state(replica: &Path) -> String {
    let Ok(conn) = rusqlite::Connection::open_with_flags(replica, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return String::new();
    };
    conn.query_row("SELECT state FROM _cdc_replica_state", [], |r| r.get(0)).unwrap_or_default()
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

fn big_db(rows: u32) -> TempDb {
    let db = TempDb::with_schema(&format!(
        "CREATE TABLE big(id INTEGER PRIMARY KEY, v TEXT, r REAL, b BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO big SELECT i, 'row ' || i, i / 7.0, CASE WHEN i % 3 = 0 THEN randomblob(i % 11) END FROM n;"
    ));
    db.install(&["big"]);
    db
}

#[test]
fn an_interrupted_first_bootstrap_is_done_again_on_restart() {
    for signal in ["KILL", "TERM"] {
        let db = big_db(300_000);
        let replica = db.dir.path().join("replica.db");
        let log = db.dir.path().join("sidecar.log");
        let src = db.path.to_str().unwrap();
        let t = target(&replica);
        let sidecar = Sidecar::start(&["--db", src, "--target", &t, "--batch-size", "500"], &log);
        // The replica says a bootstrap is under way before it starts.
        wait_until("the bootstrap to start", DEADLINE, || replica_state(&replica).contains("seeding"));
        if signal == "KILL" {
            sidecar.kill();
        } else {
            let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
            assert_eq!(sidecar.terminate(), Some(0), "SIGTERM is a clean stop: {}", log_text());
            assert_eq!(lines_with(&log_text(), "stopped cleanly").len(), 1, "{}", log_text());
        }
        // What the interrupted run wrote is rolled back: no half table.
        let conn = rusqlite::Connection::open(&replica).unwrap();
        let held: i64 = conn.query_row("SELECT count(*) FROM big", [], |r| r.get(0)).unwrap();
        assert_eq!(held, 0, "SIG{signal}: a reader never sees a half-filled table");
        drop(conn);
        sqlite3(&db.path, "UPDATE big SET v = 'changed' WHERE id % 1000 = 0; DELETE FROM big WHERE id > 299990;");
        let (code, err) = once(&["--db", src, "--target", &t]);
        assert_eq!(code, 0, "{err}");
        let said = lines_with(
            &err,
            "its previous bootstrap was interrupted, or its table must be rebuilt for a new schema); bootstrapping it",
        );
        assert_eq!(said.len(), 1, "SIG{signal}: one line says what was found and done: {err}");
        assert!(said[0].contains("table=big"), "{}", said[0]);
        assert_equal(&db.path, &replica, &["big"]);
    }
}

#[test]
fn a_deleted_or_new_replica_under_an_existing_consumer_is_bootstrapped() {
    let db = app_db();
    let replica = db.dir.path().join("replica.db");
    let src = db.path.to_str().unwrap();
    python_workload(&db.path, 11, 200);
    let (code, err) = once(&["--db", src, "--target", &target(&replica), "--consumer", "main"]);
    assert_eq!(code, 0, "{err}");
    assert_equal(&db.path, &replica, &APP_TABLES);

    // The replica is deleted; the consumer's pin in the source remains.
    remove_db(&replica);
    python_workload(&db.path, 12, 200);
    let (code, err) = once(&["--db", src, "--target", &target(&replica), "--consumer", "main"]);
    assert_eq!(code, 0, "{err}");
    let said = lines_with(&err, "the target holds nothing of it yet; bootstrapping it");
    assert_eq!(said.len(), APP_TABLES.len(), "one line per table: {err}");
    assert_equal(&db.path, &replica, &APP_TABLES);

    // A brand-new replica file under the same consumer name.
    let other = db.dir.path().join("other.db");
    python_workload(&db.path, 13, 200);
    let (code, err) = once(&["--db", src, "--target", &target(&other), "--consumer", "main"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines_with(&err, "holds nothing of it yet").len(), APP_TABLES.len(), "{err}");
    assert_equal(&db.path, &other, &APP_TABLES);
    // The new replica moves on, and the shared consumer's pin lets the log
    // be freed past the first replica (each drain frees what it can).
    python_workload(&db.path, 14, 200);
    let (code, err) = once(&["--db", src, "--target", &target(&other), "--consumer", "main"]);
    assert_eq!(code, 0, "{err}");
    // The first replica is behind now, and what it needs is gone: said,
    // and reseeded.
    let (code, err) = once(&["--db", src, "--target", &target(&replica), "--consumer", "main"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines_with(&err, "no longer holds the changes after seq").len(), APP_TABLES.len(), "{err}");
    assert_equal(&db.path, &replica, &APP_TABLES);
}

#[test]
fn a_table_followed_later_is_bootstrapped_and_the_others_keep_flowing() {
    let db = TempDb::with_schema(
        "CREATE TABLE a(id INTEGER PRIMARY KEY, v); CREATE TABLE b(id INTEGER PRIMARY KEY, v);
         INSERT INTO a VALUES(1, 'a1'), (2, x'02'); INSERT INTO b VALUES(1, 1.5), (2, 'b2');",
    );
    db.install(&["a", "b"]);
    let replica = db.dir.path().join("replica.db");
    let (src, t) = (db.path.to_str().unwrap(), target(&replica));
    let (code, err) = once(&["--db", src, "--target", &t, "--table", "a"]);
    assert_eq!(code, 0, "{err}");
    sqlite3(
        &db.path,
        "INSERT INTO a VALUES(3, 'a3'); UPDATE b SET v = -0.0 WHERE id = 1; INSERT INTO b VALUES(3, NULL);",
    );
    let (code, err) = once(&["--db", src, "--target", &t, "--table", "a", "--table", "b"]);
    assert_eq!(code, 0, "{err}");
    let said = lines_with(&err, "bootstrapping it");
    assert_eq!(said.len(), 1, "only b is reseeded: {err}");
    assert!(said[0].contains("table=b") && said[0].contains("holds nothing of it yet"), "{}", said[0]);
    assert_equal(&db.path, &replica, &["a", "b"]);
}

#[test]
fn a_table_captured_while_the_sidecar_runs_under_all_is_bootstrapped() {
    let db = TempDb::with_schema(
        "CREATE TABLE a(id INTEGER PRIMARY KEY, v); CREATE TABLE c(k TEXT PRIMARY KEY, n INT) WITHOUT ROWID;
         INSERT INTO a VALUES(1, 'a1'); INSERT INTO c VALUES('x', 1), ('y', 2);",
    );
    db.install(&["a"]);
    let replica = db.dir.path().join("replica.db");
    let log = db.dir.path().join("sidecar.log");
    let t = target(&replica);
    let mut sidecar =
        Sidecar::start(&["--db", db.path.to_str().unwrap(), "--target", &t, "--poll-interval", "50ms"], &log);
    wait_equal(&db.path, &replica, &["a"], DEADLINE);
    let (code, _, err) = run_bin("cdc-setup", &["install", "--db", db.path.to_str().unwrap(), "--table", "c"]);
    assert_eq!(code, 0, "{err}");
    sqlite3(&db.path, "INSERT INTO c VALUES('z', 3); UPDATE c SET n = n * 10; INSERT INTO a VALUES(2, 'a2');");
    wait_equal(&db.path, &replica, &["a", "c"], DEADLINE);
    assert!(sidecar.running(), "{}", sidecar.log());
    assert_eq!(lines_with(&sidecar.log(), "bootstrapping it").iter().filter(|l| l.contains("table=c")).count(), 1);
}

#[test]
fn capture_removed_and_reinstalled_reseeds_the_gap() {
    let db = TempDb::with_schema("CREATE TABLE a(id INTEGER PRIMARY KEY, v); INSERT INTO a VALUES(1, 'one');");
    db.install(&["a"]);
    sqlite3(&db.path, "CREATE TABLE keep(x); ");
    db.install(&["keep"]);
    let replica = db.dir.path().join("replica.db");
    let (src, t) = (db.path.to_str().unwrap(), target(&replica));
    assert_eq!(once(&["--db", src, "--target", &t]).0, 0);
    let (code, _, err) = run_bin("cdc-setup", &["uninstall", "--db", src, "--table", "a"]);
    assert_eq!(code, 0, "{err}");
    // Written while nothing captures it: not in the log.
    sqlite3(&db.path, "UPDATE a SET v = 'unseen'; INSERT INTO a VALUES(2, 'also unseen');");
    let (code, _, err) = run_bin("cdc-setup", &["install", "--db", src, "--table", "a"]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = once(&["--db", src, "--target", &t]);
    assert_eq!(code, 0, "{err}");
    let said = lines_with(&err, "its capture was attached again");
    assert_eq!(said.len(), 1, "{err}");
    assert!(said[0].contains("table=a"), "{}", said[0]);
    assert_equal(&db.path, &replica, &["a", "keep"]);
}

#[test]
fn a_second_replicator_is_refused_naming_the_first_and_a_killed_one_leaves_no_lock() {
    let db = app_db();
    let replica = db.dir.path().join("replica.db");
    let log = db.dir.path().join("sidecar.log");
    let (src, t) = (db.path.to_str().unwrap(), target(&replica));
    python_workload(&db.path, 5, 100);
    let first = Sidecar::start(&["--db", src, "--target", &t], &log);
    wait_equal(&db.path, &replica, &APP_TABLES, DEADLINE);
    let pid = first.child.id();
    let state = |p: &Path| std::fs::read(p).unwrap();
    let (source_before, replica_before) = (state(&db.path), state(&replica));
    // The same command again, and the same replica under another consumer.
    for args in [vec!["--db", src, "--target", &t], vec!["--db", src, "--target", &t, "--consumer", "other"]] {
        let (code, err) = once(&args);
        assert_eq!(code, 1, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&format!("already in use by process {pid}")), "{err}");
    }
    // A second consumer name on the same source is a different consumer,
    // but the same consumer with another target is refused too.
    let jsonl = format!("jsonl:{}", db.dir.path().join("out.jsonl").display());
    let consumer = format!("sqlite:{}", cdc::lock::resolved(&replica).display());
    let (code, err) = once(&["--db", src, "--target", &jsonl, "--consumer", &consumer]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("process {pid}")), "{err}");
    assert!(!db.dir.path().join("out.jsonl").exists(), "nothing written");
    assert_eq!((state(&db.path), state(&replica)), (source_before, replica_before), "nothing written");
    // The kernel drops the lock of a killed holder.
    first.kill();
    python_workload(&db.path, 6, 100);
    let (code, err) = once(&["--db", src, "--target", &t]);
    assert_eq!(code, 0, "{err}");
    assert_equal(&db.path, &replica, &APP_TABLES);
}

#[test]
fn the_source_is_never_its_own_target_through_any_path() {
    let db = app_db();
    let dir = db.dir.path();
    let src = db.path.to_str().unwrap();
    std::os::unix::fs::symlink(&db.path, dir.join("link.db")).unwrap();
    std::fs::hard_link(&db.path, dir.join("hard.db")).unwrap();
    let cases = [
        format!("sqlite:{src}"),
        format!("sqlite:{}", dir.join("link.db").display()),
        format!("sqlite:{}", dir.join("hard.db").display()),
        format!("sqlite:{}/./sub/../source.db", dir.display()),
        format!("sqlite:file:{src}?mode=rw"),
        format!("jsonl:{src}"),
        format!("bincode:{}", dir.join("hard.db").display()),
    ];
    std::fs::create_dir(dir.join("sub")).unwrap();
    let before = std::fs::read(&db.path).unwrap();
    let listing = || {
        let mut v: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        v.sort();
        v
    };
    let files = listing();
    for t in &cases {
        let (code, err) = once(&["--db", src, "--target", t]);
        assert_eq!(code, 1, "{t}: {err}");
        assert_eq!(err.lines().count(), 1, "{t}: {err}");
        assert!(err.contains("is the source database"), "{t}: {err}");
        assert_eq!(std::fs::read(&db.path).unwrap(), before, "{t}: the source was written");
        assert_eq!(listing(), files, "{t}: a file was created");
    }
    // A relative path from the source's folder.
    let out = Command::new(crate::support::bin("replicator"))
        .current_dir(dir)
        .args(["--db", "source.db", "--target", "sqlite:./source.db", "--once"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is the source database"), "{err}");
}

#[test]
fn a_chain_of_replicas_works_and_a_loop_back_is_refused() {
    let db = app_db();
    python_workload(&db.path, 21, 150);
    let (a, b) = (db.path.clone(), db.dir.path().join("b.db"));
    let (code, err) = once(&["--db", a.to_str().unwrap(), "--target", &target(&b)]);
    assert_eq!(code, 0, "{err}");
    // b is captured in turn and replicated to c: chained replication.
    let c = db.dir.path().join("c.db");
    let (code, _, err) = run_bin("cdc-setup", &["install", "--db", b.to_str().unwrap(), "--all"]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = once(&["--db", b.to_str().unwrap(), "--target", &target(&c), "--table", "users"]);
    assert_eq!(code, 0, "{err}");
    python_workload(&db.path, 22, 150);
    assert_eq!(once(&["--db", a.to_str().unwrap(), "--target", &target(&b)]).0, 0);
    assert_eq!(once(&["--db", b.to_str().unwrap(), "--target", &target(&c), "--table", "users"]).0, 0);
    assert_equal(&a, &c, &["users"]);
    // c back into b would close a loop (b -> c -> b): refused. And b back
    // into a: a is not captured... it is: a -> b -> a is a loop too.
    let (code, _, err) = run_bin("cdc-setup", &["install", "--db", c.to_str().unwrap(), "--all"]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = once(&["--db", c.to_str().unwrap(), "--target", &target(&b)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("would loop"), "{err}");
    let (code, err) = once(&["--db", b.to_str().unwrap(), "--target", &target(&a)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("would loop"), "{err}");
}

/// A replacement done in two steps (`mv app.db app.old; ...; mv new.db
/// app.db`): while nothing is at the path the sidecar waits, says so
/// once, and follows the file that comes back; it never exits.
#[test]
fn a_source_that_vanishes_from_its_path_is_waited_for() {
    let db = app_db();
    let dir = db.dir.path();
    let replica = dir.join("replica.db");
    python_workload(&db.path, 51, 100);
    let mut sidecar =
        Sidecar::start(&["--db", db.path.to_str().unwrap(), "--target", &target(&replica)], &dir.join("sidecar.log"));
    wait_equal(&db.path, &replica, &APP_TABLES, DEADLINE);
    let fresh = dir.join("fresh.db");
    sqlite3(&db.path, &format!(".backup '{}'", fresh.display()));
    python_workload(&fresh, 52, 100);
    wait_until("the sidecar closed the source", DEADLINE, || !sidecar.holds(&db.path));
    crate::support::checkpoint_away(&db.path);
    std::fs::rename(&db.path, dir.join("old.db")).unwrap();
    // A file event or the timer wakes it; nothing is there.
    wait_until("the wait is said", DEADLINE, || sidecar.log().contains("the source file is gone from its path"));
    assert!(sidecar.running(), "{}", sidecar.log());
    std::fs::rename(&fresh, &db.path).unwrap();
    python_workload(&db.path, 53, 100);
    wait_equal(&db.path, &replica, &APP_TABLES, DEADLINE);
    assert!(sidecar.running(), "{}", sidecar.log());
    let log = sidecar.log();
    assert_eq!(lines_with(&log, "the source file is gone").len(), 1, "said once: {log}");
    assert_eq!(lines_with(&log, "recovered").len(), 1, "and its end once: {log}");

    // A restored file moved in before capture was attached to it: waited
    // for, with the command that attaches capture, then followed.
    let bare = dir.join("bare.db");
    sqlite3(&db.path, &format!(".backup '{}'", bare.display()));
    let (code, _, err) = run_bin("cdc-setup", &["uninstall", "--db", bare.to_str().unwrap(), "--force"]);
    assert_eq!(code, 0, "{err}");
    python_workload(&bare, 54, 50);
    crate::support::replace_file(&db.path, &bare, Some(&sidecar));
    wait_until("the wait is said", DEADLINE, || sidecar.log().contains("is not ready ("));
    assert!(sidecar.log().contains("cdc-setup install --db"), "{}", sidecar.log());
    assert!(sidecar.running(), "{}", sidecar.log());
    let (code, _, err) = run_bin("cdc-setup", &["install", "--db", db.path.to_str().unwrap(), "--all"]);
    assert_eq!(code, 0, "{err}");
    python_workload(&db.path, 55, 50);
    wait_equal(&db.path, &replica, &APP_TABLES, DEADLINE);
    assert!(sidecar.running(), "{}", sidecar.log());
    assert_eq!(lines_with(&sidecar.log(), "is not ready (").len(), 1, "said once: {}", sidecar.log());
}

/// What an operator in a hurry does: the writer stops, and the moment the
/// replica caught up (the sidecar may owe the source an acknowledgement)
/// the WAL is checkpointed, a new file made and moved over the old one as
/// soon as no connection has the old one open, and the application writes
/// to the new file within microseconds. Round after round, the new file is
/// never damaged and the replica follows it. Two ways the sidecar broke it
/// before: its connection kept open while idle handed the new file the old
/// one's WAL index (every run), and an acknowledgement made after the
/// checkpoint left its frames in the WAL the new file then read (about
/// one round in two, found by an adversarial review).
#[test]
fn files_moved_into_place_in_a_hurry_are_never_damaged_and_followed() {
    let seed = crate::support::Seed::new("ground::files_moved_into_place_in_a_hurry_are_never_damaged_and_followed", 5);
    let db = app_db();
    let dir = db.dir.path();
    let replica = dir.join("replica.db");
    let mut writes = seed.value * 1000;
    let mut write = |path: &Path| {
        writes += 1;
        python_workload(path, writes, 80);
    };
    write(&db.path);
    // A short acknowledgement interval puts the deferred acknowledgement
    // right where a restore script works (between its checkpoint and its
    // move).
    let mut sidecar = Sidecar::start(
        &["--db", db.path.to_str().unwrap(), "--target", &target(&replica), "--ack-interval", "200ms"],
        &dir.join("sidecar.log"),
    );
    const ROUNDS: usize = 8;
    for round in 0..ROUNDS {
        let fresh = dir.join(format!("fresh{round}.db"));
        sqlite3(&db.path, &format!(".backup '{}'", fresh.display()));
        write(&db.path);
        wait_equal(&db.path, &replica, &APP_TABLES, DEADLINE);
        crate::support::checkpoint_away(&db.path);
        // The new file is made after the checkpoint (as a restore script
        // does): the sidecar's acknowledgement, deferred up to a second
        // after its last delivery, often lands meanwhile. Its frames must
        // not be left in the WAL the new file will use.
        write(&fresh);
        // The sidecar may be reading (the checkpoint's own writes woke
        // it); SQLite requires that no connection has the old file open
        // when a new one takes its name. It must let go by itself.
        wait_until("the sidecar closed the source", DEADLINE, || !sidecar.holds(&db.path));
        std::fs::rename(&fresh, &db.path).unwrap();
        // An application already running writes within microseconds.
        let app = rusqlite::Connection::open(&db.path).unwrap();
        app.busy_timeout(Duration::from_secs(30)).unwrap();
        app.execute_batch(&format!(
            "INSERT INTO nokey VALUES('moved', {round}); UPDATE users SET score = coalesce(score, 0) + 1 WHERE id % 4 = {};",
            round % 4
        ))
        .unwrap();
        drop(app);
        write(&db.path);
        assert_eq!(sqlite3(&db.path, "PRAGMA integrity_check;").trim(), "ok", "round {round}");
    }
    wait_equal(&db.path, &replica, &APP_TABLES, DEADLINE);
    assert!(sidecar.running(), "{}", sidecar.log());
    assert_eq!(lines_with(&sidecar.log(), "the source file was replaced").len(), ROUNDS, "{}", sidecar.log());
}

#[test]
fn a_source_file_replaced_while_the_sidecar_runs_is_reopened() {
    let db = app_db();
    let dir = db.dir.path();
    let replica = dir.join("replica.db");
    let log = dir.join("sidecar.log");
    python_workload(&db.path, 31, 150);
    let mut sidecar = Sidecar::start(
        &["--db", db.path.to_str().unwrap(), "--target", &target(&replica), "--poll-interval", "50ms"],
        &log,
    );
    wait_equal(&db.path, &replica, &APP_TABLES, DEADLINE);
    // As a restore tool does: a copy made and changed elsewhere, then
    // moved over the original (checkpointed first, as SQLite requires of
    // a WAL-mode file replaced under its readers).
    let fresh = dir.join("fresh.db");
    sqlite3(&db.path, &format!(".backup '{}'", fresh.display()));
    python_workload(&fresh, 32, 150);
    crate::support::replace_file(&db.path, &fresh, Some(&sidecar));
    python_workload(&db.path, 33, 150);
    wait_equal(&db.path, &replica, &APP_TABLES, DEADLINE);
    assert!(sidecar.running(), "{}", sidecar.log());
    assert_eq!(lines_with(&sidecar.log(), "the source file was replaced").len(), 1, "{}", sidecar.log());

    // Replaced by a different database altogether (its own log): reseeded.
    let other = TempDb::with_schema(crate::replicator::APP_SCHEMA);
    other.install(&APP_TABLES);
    python_workload(&other.path, 34, 150);
    wait_equal(&db.path, &replica, &APP_TABLES, DEADLINE);
    crate::support::replace_file(&db.path, &other.path, Some(&sidecar));
    python_workload(&db.path, 35, 100);
    wait_equal(&db.path, &replica, &APP_TABLES, DEADLINE);
    assert_eq!(lines_with(&sidecar.log(), "another source log").len(), 1, "{}", sidecar.log());
    assert!(sidecar.running());
}

#[test]
fn a_source_restored_from_an_older_backup_is_a_rewind() {
    let db = app_db();
    let dir = db.dir.path();
    let replica = dir.join("replica.db");
    let (src, t) = (db.path.to_str().unwrap(), target(&replica));
    python_workload(&db.path, 41, 200);
    let backup = dir.join("backup.db");
    sqlite3(&db.path, &format!(".backup '{}'", backup.display()));
    python_workload(&db.path, 42, 200);
    assert_eq!(once(&["--db", src, "--target", &t]).0, 0);
    assert_equal(&db.path, &replica, &APP_TABLES);
    // Restored in place, then written again: the log reuses seqs the
    // replica already applied, with other changes.
    sqlite3(&db.path, &format!(".restore '{}'", backup.display()));
    python_workload(&db.path, 43, 400);

    // Asked to stop: one line, exit 1, the replica untouched.
    let replica_before = std::fs::read(&replica).unwrap();
    let (code, err) = once(&["--db", src, "--target", &t, "--on-rewind", "stop"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(lines_with(&err, "error:").len(), 1, "{err}");
    assert!(err.contains("the source was rewound") && err.contains("--on-rewind reseed"), "{err}");
    assert_eq!(std::fs::read(&replica).unwrap(), replica_before);

    // By default: said once, then reseeded.
    let (code, err) = once(&["--db", src, "--target", &t]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines_with(&err, "the source was rewound").len(), 1, "{err}");
    assert_equal(&db.path, &replica, &APP_TABLES);

    // Restored and not written since: the log ends before the replica.
    sqlite3(&db.path, &format!(".restore '{}'", backup.display()));
    let (code, err) = once(&["--db", src, "--target", &t]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines_with(&err, "behind seq").len(), 1, "{err}");
    assert_equal(&db.path, &replica, &APP_TABLES);
}

#[test]
fn input_hygiene_duplicates_and_damaged_sources() {
    let db = TempDb::with_schema("CREATE TABLE t(id INTEGER PRIMARY KEY, v); INSERT INTO t VALUES(1, 'x');");
    db.install(&["t"]);
    let replica = db.dir.path().join("replica.db");
    let (src, t) = (db.path.to_str().unwrap(), target(&replica));
    let (code, err) = once(&["--db", src, "--target", &t, "--table", "t", "--table", "t", "--table", "T"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(lines_with(&err, "bootstrapped table=t").len(), 1, "one bootstrap of t: {err}");
    assert_equal(&db.path, &replica, &["t"]);

    // Not a database, and a database whose pages are damaged.
    let junk = db.dir.path().join("junk.db");
    std::fs::write(&junk, b"this is not a database, just text that is long enough to look like one".repeat(100))
        .unwrap();
    let damaged = db.dir.path().join("damaged.db");
    sqlite3(
        &damaged,
        "PRAGMA page_size=1024; CREATE TABLE t(id INTEGER PRIMARY KEY, v);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) INSERT INTO t SELECT i, hex(randomblob(40)) FROM n;",
    );
    cdc::capture::install(&mut rusqlite::Connection::open(&damaged).unwrap(), &["t".into()]).unwrap();
    sqlite3(&damaged, "INSERT INTO t VALUES(6000, 'x'); PRAGMA wal_checkpoint(TRUNCATE);");
    let mut bytes = std::fs::read(&damaged).unwrap();
    let len = bytes.len();
    for b in &mut bytes[len / 2..len / 2 + 8192] {
        *b = 0x5a;
    }
    std::fs::write(&damaged, &bytes).unwrap();
    for (bad, expected) in [(&junk, "not a SQLite database"), (&damaged, "damaged")] {
        let fresh = db.dir.path().join("fresh.db");
        let before = std::fs::read(bad).unwrap();
        let (code, err) = once(&["--db", bad.to_str().unwrap(), "--target", &target(&fresh)]);
        assert_eq!(code, 1, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(bad.to_str().unwrap()) && err.contains(expected), "{err}");
        assert!(!fresh.exists(), "no replica created for a bad source");
        assert_eq!(std::fs::read(bad).unwrap(), before, "the source is not written");
        assert!(!err.contains("(none"), "no placeholder text: {err}");
    }
}

#[test]
fn consumers_are_listed_removed_and_uninstall_waits_for_them() {
    let db = TempDb::with_schema("CREATE TABLE t(id INTEGER PRIMARY KEY, v);");
    db.install(&["t"]);
    let src = db.path.to_str().unwrap();
    let trial = format!("jsonl:{}", db.dir.path().join("trial.jsonl").display());
    assert_eq!(once(&["--db", src, "--target", &trial, "--consumer", "trial"]).0, 0);
    sqlite3(&db.path, "INSERT INTO t VALUES(1, 'a'), (2, 'b'); INSERT INTO t VALUES(3, 'c');");
    let (code, out, err) = run_bin("cdc-setup", &["consumers", "--db", src]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("trial: 3 changes behind; acknowledged "), "{out}");
    assert!(out.contains("; acknowledged ") && !out.contains("STALE"), "acknowledged just now: {out}");
    // Changes wait and nothing was acknowledged for longer than --stale-after.
    let (code, out, _) = run_bin("cdc-setup", &["consumers", "--db", src, "--stale-after", "0s"]);
    assert_eq!(code, 0);
    assert!(out.contains("STALE: nothing acknowledged for "), "{out}");
    assert!(out.contains(&format!("cdc-setup consumers --db {src} --remove=trial")), "{out}");
    let (code, out, _) = run_bin("cdc-setup", &["status", "--db", src, "--stale-after", "0s"]);
    assert_eq!(code, 0);
    assert!(out.contains("1 consumer:\n  trial: 3 changes behind") && out.contains("STALE"), "{out}");
    let (code, out, _) = run_bin("cdc-setup", &["consumers", "--db", src, "--json", "--stale-after", "0s"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["consumers"][0]["stale"], true, "{out}");
    let (code, out, _) = run_bin("cdc-setup", &["consumers", "--db", src, "--json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["consumers"][0]["stale"], false, "{out}");
    assert_eq!(json["stale_after_seconds"], 600.0, "{out}");
    assert_eq!(json["consumers"][0]["pending"], 3, "{out}");
    assert!(json["consumers"][0]["acknowledged_seconds_ago"].as_f64().unwrap() >= 0.0);
    assert_eq!(json["consumers"][0]["state_in_source"], true);

    // Uninstalling would drop three changes the consumer still waits for.
    let before = std::fs::read(&db.path).unwrap();
    let (code, _, err) = run_bin("cdc-setup", &["uninstall", "--db", src]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("1 consumer has unacknowledged changes (\"trial\": 3)") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&db.path).unwrap(), before);

    let (code, out, err) = run_bin("cdc-setup", &["consumers", "--db", src, "--remove", "trial"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed consumer \"trial\""), "{out}");
    let (code, _, err) = run_bin("cdc-setup", &["consumers", "--db", src, "--remove", "trial"]);
    assert_eq!(code, 1);
    assert!(err.contains("no consumer named \"trial\""), "{err}");
    let (code, out, err) = run_bin("cdc-setup", &["uninstall", "--db", src]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed capture from \"t\""), "{out}");
    // --force drops a waiting consumer's log too.
    db.install(&["t"]);
    assert_eq!(once(&["--db", src, "--target", &trial, "--consumer", "again"]).0, 0);
    sqlite3(&db.path, "INSERT INTO t VALUES(4, 'd');");
    let (code, _, err) = run_bin("cdc-setup", &["uninstall", "--db", src, "--force"]);
    assert_eq!(code, 0, "{err}");
}

/// What the property test does between writer rounds.
#[derive(Clone, Copy, Debug)]
enum Move {
    Start,
    Kill,
    Terminate,
    DeleteReplica,
    AddTable,
    RemoveTable,
    ReinstallCapture,
    Backup,
    RestoreBackup,
    ReplaceFile,
}

const MOVES: [Move; 10] = [
    Move::Start,
    Move::Kill,
    Move::Terminate,
    Move::DeleteReplica,
    Move::AddTable,
    Move::RemoveTable,
    Move::ReinstallCapture,
    Move::Backup,
    Move::RestoreBackup,
    Move::ReplaceFile,
];

const EXTRA: [&str; 3] = ["x0", "x1", "x2"];

/// Runs `moves` against a source with a Python writer between them, then a
/// final `--once`; the replica must equal the source on every table
/// captured at the end.
fn ground_moves(seed: u64, moves: &[Move]) {
    let db = app_db();
    let dir = db.dir.path().to_path_buf();
    let src = db.path.clone();
    for x in EXTRA {
        sqlite3(
            &src,
            &format!("CREATE TABLE {x}(id INTEGER PRIMARY KEY, v); INSERT INTO {x}(v) VALUES('a'), (1.5), (x'00');"),
        );
    }
    let replica = dir.join("replica.db");
    let log = dir.join("sidecar.log");
    let t = target(&replica);
    let args = ["--db", src.to_str().unwrap(), "--target", &t, "--poll-interval", "30ms", "--batch-size", "40"];
    let mut sidecar: Option<Sidecar> = None;
    let mut backups: Vec<PathBuf> = Vec::new();
    let mut rng = crate::support::Xorshift::seeded(seed);
    let captured = |src: &Path| -> Vec<String> {
        let conn = rusqlite::Connection::open(src).unwrap();
        cdc::capture::verify(&conn, &[]).unwrap().into_iter().map(|r| r.desc.name.to_string()).collect()
    };
    let mut writes = 0u64;
    for (i, m) in moves.iter().enumerate() {
        let pick = |rng: &mut crate::support::Xorshift| EXTRA[rng.below(EXTRA.len() as u64) as usize];
        match m {
            Move::Start if sidecar.is_none() => sidecar = Some(Sidecar::start(&args, &log)),
            Move::Kill => {
                if let Some(s) = sidecar.take() {
                    s.kill();
                }
            }
            Move::Terminate => {
                if let Some(s) = sidecar.take() {
                    assert_eq!(s.terminate(), Some(0), "SIGTERM: {}", std::fs::read_to_string(&log).unwrap());
                }
            }
            Move::DeleteReplica => {
                if let Some(s) = sidecar.take() {
                    s.kill();
                }
                remove_db(&replica);
            }
            Move::AddTable => {
                let x = pick(&mut rng);
                cdc::capture::install(&mut rusqlite::Connection::open(&src).unwrap(), &[x.to_string()]).unwrap();
            }
            Move::RemoveTable => {
                let x = pick(&mut rng);
                let _ = cdc::capture::uninstall(
                    &mut rusqlite::Connection::open(&src).unwrap(),
                    Some(&[x.to_string()]),
                    true,
                );
            }
            Move::ReinstallCapture => {
                let x = pick(&mut rng);
                let mut conn = rusqlite::Connection::open(&src).unwrap();
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                let _ = cdc::capture::uninstall(&mut conn, Some(&[x.to_string()]), true);
                conn.execute_batch(&format!("UPDATE {x} SET v = 'unseen {i}'; INSERT INTO {x}(v) VALUES({i});"))
                    .unwrap();
                cdc::capture::install(&mut conn, &[x.to_string()]).unwrap();
            }
            Move::Backup => {
                let b = dir.join(format!("backup{i}.db"));
                sqlite3(&src, &format!(".backup '{}'", b.display()));
                backups.push(b);
            }
            Move::RestoreBackup => {
                if let Some(b) = backups.get(rng.below(backups.len() as u64) as usize) {
                    sqlite3(&src, &format!(".restore '{}'", b.display()));
                }
            }
            Move::ReplaceFile => {
                // SQLite's rule for replacing a WAL file: nothing writes to
                // the old one (the sidecar is caught up and idle), its WAL
                // checkpointed away, then the move.
                if sidecar.is_some() {
                    wait_equal(
                        &src,
                        &replica,
                        &captured(&src).iter().map(String::as_str).collect::<Vec<_>>(),
                        DEADLINE,
                    );
                }
                let fresh = dir.join("fresh.db");
                sqlite3(&src, &format!(".backup '{}'", fresh.display()));
                writes += 1;
                python_workload(&fresh, seed.wrapping_mul(1000) + writes, 48);
                crate::support::replace_file(&src, &fresh, sidecar.as_ref());
            }
            _ => {}
        }
        writes += 1;
        python_workload(&src, seed.wrapping_mul(1000) + writes, 48);
        let x = pick(&mut rng);
        sqlite3(
            &src,
            &format!("INSERT INTO {x}(v) VALUES({writes}); UPDATE {x} SET v = v || '+' WHERE id % 3 = {};", writes % 3),
        );
    }
    if let Some(s) = sidecar.take() {
        s.kill();
    }
    let (code, err) = once(&args[..4]);
    assert_eq!(code, 0, "{err}");
    let tables = captured(&src);
    let tables: Vec<&str> = tables.iter().map(String::as_str).collect();
    if let Some(diff) = crate::support::difference(&src, &replica, &tables) {
        panic!(
            "moves {moves:?}: the replica differs from the source: {diff}\n--- sidecar log ---\n{}\n--- final run ---\n{err}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

#[test]
fn the_ground_moves_fixed_sequence() {
    let seed = crate::support::Seed::new("ground::the_ground_moves_fixed_sequence", 7);
    use Move::*;
    ground_moves(
        seed.value,
        &[
            Start,
            AddTable,
            Backup,
            Kill,
            DeleteReplica,
            Start,
            ReinstallCapture,
            RestoreBackup,
            ReplaceFile,
            Terminate,
            AddTable,
            RemoveTable,
            Start,
            Kill,
        ],
    );
}

mod prop {
    use proptest::prelude::*;

    proptest! {
        // More cases with CDC_PROPTEST_CASES=N (default 2: CI stays fast).
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("CDC_PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2)
        ))]

        #[test]
        fn the_ground_moves_and_the_replica_converges(
            seed in 1u64..1_000_000,
            moves in proptest::collection::vec(0usize..super::MOVES.len(), 4..12),
        ) {
            let moves: Vec<super::Move> = moves.into_iter().map(|i| super::MOVES[i]).collect();
            super::ground_moves(seed, &moves);
        }
    }
}

#[test]
fn rowids_that_sqlite_renumbers_do_not_mislead_the_replica() {
    // Rowid tables without an INTEGER PRIMARY KEY: no key at all (VACUUM
    // renumbers it), duplicates included, and a TEXT primary key.
    let db = TempDb::with_schema(
        "CREATE TABLE plain(x, y);
         CREATE TABLE tk(k TEXT PRIMARY KEY, v);
         CREATE TABLE ipk(id INTEGER PRIMARY KEY, v);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60)
         INSERT INTO plain SELECT i % 20, CASE i % 4 WHEN 0 THEN NULL WHEN 1 THEN i WHEN 2 THEN i * 1.0 ELSE 'v' || i END FROM n;
         INSERT INTO tk SELECT 'k' || x || '-' || rowid, y FROM plain;
         INSERT INTO ipk SELECT rowid * 3, y FROM plain;",
    );
    db.install(&["plain", "tk", "ipk"]);
    let tables = ["plain", "tk", "ipk"];
    let replica = db.dir.path().join("replica.db");
    let (src, t) = (db.path.to_str().unwrap(), target(&replica));
    // Holes in the rowids, replicated; then VACUUM closes them on the source.
    sqlite3(&db.path, "DELETE FROM plain WHERE rowid % 3 = 0; DELETE FROM tk WHERE rowid % 4 = 0;");
    assert_eq!(once(&["--db", src, "--target", &t]).0, 0);
    let before: Vec<i64> = rusqlite::Connection::open(&db.path)
        .unwrap()
        .prepare("SELECT rowid FROM plain ORDER BY rowid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    sqlite3(&db.path, "VACUUM;");
    let after: Vec<i64> = rusqlite::Connection::open(&db.path)
        .unwrap()
        .prepare("SELECT rowid FROM plain ORDER BY rowid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_ne!(before, after, "this SQLite renumbered the rowids (the case under test)");
    // The application changes rows by content, duplicates and storage classes included.
    sqlite3(
        &db.path,
        "UPDATE plain SET y = 'changed' WHERE x = 5; DELETE FROM plain WHERE x = 7;
         UPDATE plain SET x = x + 100 WHERE y IS NULL; INSERT INTO plain VALUES(1, 1), (1, 1.0), (NULL, NULL);
         DELETE FROM plain WHERE rowid IN (SELECT rowid FROM plain WHERE x = 1 AND typeof(y) = 'real' LIMIT 1);
         UPDATE tk SET v = x'ff' WHERE k LIKE 'k3-%'; DELETE FROM tk WHERE k LIKE 'k4-%';
         UPDATE ipk SET v = -0.0 WHERE id % 2 = 0;",
    );
    let (code, err) = once(&["--db", src, "--target", &t]);
    assert_eq!(code, 0, "{err}");
    assert_equal(&db.path, &replica, &tables);

    // A `.dump` reload renumbers every such table; moved into place.
    let reloaded = db.dir.path().join("reloaded.db");
    let dump = sqlite3(&db.path, ".dump");
    sqlite3(&reloaded, &format!("PRAGMA journal_mode=WAL;\n{dump}"));
    crate::support::replace_file(&db.path, &reloaded, None);
    sqlite3(
        &db.path,
        "UPDATE plain SET y = 'after dump' WHERE x = 3; DELETE FROM plain WHERE x = 11; DELETE FROM tk WHERE k LIKE 'k2-%';",
    );
    let (code, err) = once(&["--db", src, "--target", &t]);
    assert_eq!(code, 0, "{err}");
    assert_equal(&db.path, &replica, &tables);
}
