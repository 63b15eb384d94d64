//! What a newcomer's trial runs leave behind, and what they are told:
//! peeks at stdout, endpoints that never answer or refuse, runs killed
//! before they delivered anything. None of them may pin the source's log
//! for ever; a consumer that did deliver stays remembered. An outage is
//! said once when it starts and once when it ends, and `--once` ends by
//! itself.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::replicator::http_server_on;
use crate::support::{Sidecar, TempDb, lines_with, run_bin, sqlite3, wait_until};

const DEADLINE: Duration = Duration::from_secs(120);

fn source() -> TempDb {
    let db = TempDb::with_schema(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v); CREATE TABLE u(k TEXT PRIMARY KEY, w);
         INSERT INTO t VALUES(1, 'a'), (2, x'00'); INSERT INTO u VALUES('k', 1.5);",
    );
    db.install(&["t", "u"]);
    db
}

/// `cdc-setup consumers` for `db`, and the consumer record files beside it.
fn consumers(db: &Path) -> (String, Vec<String>) {
    let (code, out, err) = run_bin("cdc-setup", &["consumers", "--db", db.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let dir = db.parent().unwrap();
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.contains("-cdc-consumer-") && f.ends_with(".json"))
        .collect();
    files.sort();
    (out, files)
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn trial_runs_that_delivered_nothing_leave_nothing_behind() {
    let db = source();
    let src = db.path.to_str().unwrap();
    // A peek at stdout, twice: each is a whole bootstrap, nothing kept.
    for _ in 0..2 {
        let (code, out, err) = run_bin("replicator", &["--db", src, "--target", "jsonl:-", "--once"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.lines().filter(|l| l.contains("\"kind\":\"bootstrap\"")).count(), 3, "{out}{err}");
    }
    // An endpoint that never answers: --once gives up by itself, saying
    // the outage once and each table's bootstrap once.
    let url = format!("http://127.0.0.1:{}/hook", closed_port());
    let started = Instant::now();
    let (code, _, err) = run_bin("replicator", &["--db", src, "--target", &url, "--once", "--give-up-after", "3s"]);
    assert_eq!(code, 1, "{err}");
    assert!(started.elapsed() < DEADLINE);
    assert_eq!(lines_with(&err, "transient failure").len(), 1, "{err}");
    assert!(lines_with(&err, "transient failure")[0].contains("for up to 3s"), "{err}");
    for table in ["t", "u"] {
        assert_eq!(lines_with(&err, &format!("bootstrapping it table={table}")).len(), 1, "{err}");
    }
    let last = err.lines().last().unwrap();
    assert!(last.starts_with("replicator: error:") && last.contains("gave up after"), "{err}");
    // One that refuses (404): stops at once.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/missing", listener.local_addr().unwrap());
    let server = http_server_on(listener, 1, |_| "404 Not Found");
    let (code, _, err) = run_bin("replicator", &["--db", src, "--target", &url]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("404"), "{err}");
    server.join().unwrap();
    // A sidecar killed while its endpoint is down: listed while it runs,
    // as pinning the log only until then.
    let url = format!("http://127.0.0.1:{}/down", closed_port());
    let sidecar = Sidecar::start(&["--db", src, "--target", &url], &db.dir.path().join("sidecar.log"));
    wait_until("the running consumer listed", DEADLINE, || consumers(&db.path).0.contains("running, nothing kept yet"));
    sidecar.kill();
    let (listed, files) = consumers(&db.path);
    assert!(!listed.contains("http") && !listed.contains("jsonl:-"), "{listed}");
    // Its record stays (SIGKILL), but pins nothing; the next replicator
    // clears it away.
    assert!(files.len() <= 1, "{files:?}");
    let kept = db.dir.path().join("kept.jsonl");
    let target = format!("jsonl:{}", kept.display());
    let (code, _, err) = run_bin("replicator", &["--db", src, "--target", &target, "--once"]);
    assert_eq!(code, 0, "{err}");
    sqlite3(&db.path, "INSERT INTO t VALUES(3, 'c'); DELETE FROM u;");
    let (code, _, err) = run_bin("replicator", &["--db", src, "--target", &target, "--once"]);
    assert_eq!(code, 0, "{err}");
    // The one that delivered is remembered, and nothing else.
    let (listed, files) = consumers(&db.path);
    assert_eq!((listed.lines().count(), files.len()), (1, 1), "{listed}{files:?}");
    assert!(listed.starts_with(&format!("{target}: caught up")), "{listed}");
    // Caught up, the log is not "kept" for anyone; times carry their zone;
    // both JSON forms are flat.
    let (code, status, err) = run_bin("cdc-setup", &["status", "--db", src]);
    assert_eq!(code, 0, "{err}");
    assert!(status.contains("log: every consumer has all of it") || status.contains("log: empty"), "{status}");
    for what in ["status", "consumers"] {
        let (code, out, err) = run_bin("cdc-setup", &[what, "--db", src, "--json"]);
        assert_eq!(code, 0, "{err}");
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["db"], src, "{out}");
        let at = json["consumers"][0]["acknowledged_at"].as_str().unwrap().to_string();
        assert!(at.len() == 20 && at.ends_with('Z') && at.contains('T'), "{at}");
    }
}

/// Capture removed from a followed table while the sidecar runs: its copy
/// in the target is frozen from then on, and the sidecar says so loudly.
#[test]
fn capture_removed_under_a_running_sidecar_is_said() {
    let db = source();
    let src = db.path.to_str().unwrap();
    let replica = db.dir.path().join("replica.db");
    let target = format!("sqlite:{}", replica.display());
    let mut sidecar = Sidecar::start(&["--db", src, "--target", &target], &db.dir.path().join("sidecar.log"));
    crate::support::wait_equal(&db.path, &replica, &["t", "u"], DEADLINE);
    let (code, _, err) = run_bin("cdc-setup", &["uninstall", "--db", src, "--table", "u"]);
    assert_eq!(code, 0, "{err}");
    sqlite3(&db.path, "INSERT INTO t VALUES(7, 'still'); INSERT INTO u VALUES('frozen', 0);");
    crate::support::wait_equal(&db.path, &replica, &["t"], DEADLINE);
    wait_until("the warning", DEADLINE, || {
        lines_with(&sidecar.log(), "its copy is not updated")
            .iter()
            .any(|l| l.contains("WARN") && l.contains("table=u"))
    });
    assert!(sidecar.running(), "{}", sidecar.log());
    // Said once, and again by the next replicator that finds the copy.
    assert_eq!(lines_with(&sidecar.log(), "its copy is not updated").len(), 1, "{}", sidecar.log());
    sidecar.kill();
    let (code, _, err) = run_bin("replicator", &["--db", src, "--target", &target, "--once"]);
    assert_eq!(code, 0, "{err}");
    assert!(lines_with(&err, "its copy is not updated").iter().any(|l| l.contains("table=u")), "{err}");
    // Capture removed from the whole file: a running sidecar waits for it
    // with the command that attaches it, instead of failing.
    let mut sidecar = Sidecar::start(&["--db", src, "--target", &target], &db.dir.path().join("sidecar2.log"));
    wait_until("the sidecar started", DEADLINE, || sidecar.log().contains("replicating"));
    let (code, _, err) = run_bin("cdc-setup", &["uninstall", "--db", src, "--force"]);
    assert_eq!(code, 0, "{err}");
    wait_until("the sidecar to say it waits for capture", DEADLINE, || {
        assert!(sidecar.running(), "{}", sidecar.log());
        sidecar.log().contains("no table is captured")
    });
    assert!(sidecar.running(), "{}", sidecar.log());
    let (code, _, err) = run_bin("cdc-setup", &["install", "--db", src, "--all"]);
    assert_eq!(code, 0, "{err}");
    sqlite3(&db.path, "INSERT INTO t VALUES(8, 'back');");
    crate::support::wait_equal(&db.path, &replica, &["t"], DEADLINE);
    assert!(sidecar.running(), "{}", sidecar.log());
}

/// A file the replicator cannot use is named as the source or the replica,
/// in one line, with exit 1, and is left exactly as it was.
#[test]
fn unusable_files_are_named_as_source_or_replica_and_left_alone() {
    let db = source();
    let dir = db.dir.path();
    let src = db.path.to_str().unwrap();
    let notdb = dir.join("notes.db");
    std::fs::write(&notdb, "not a database\n").unwrap();
    let listing = || {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    };
    let before = listing();
    for (args, said) in [
        (vec!["--db", src, "--target", &format!("sqlite:{}", notdb.display())], "the replica"),
        (vec!["--db", notdb.to_str().unwrap(), "--target", "jsonl:-"], "the source"),
    ] {
        let (code, _, err) = run_bin("replicator", &[&args[..], &["--once"]].concat());
        assert_eq!((code, err.lines().count()), (1, 1), "{err}");
        assert!(err.contains(&format!("{said} {}: not a SQLite database", notdb.display())), "{err}");
        assert_eq!(std::fs::read_to_string(&notdb).unwrap(), "not a database\n");
        assert_eq!(listing(), before, "files were made");
    }
    // A source with no capture: the command that attaches it.
    let bare = TempDb::with_schema("CREATE TABLE t(a);");
    let (code, _, err) = run_bin("replicator", &["--db", bare.path.to_str().unwrap(), "--target", "jsonl:-", "--once"]);
    assert_eq!((code, err.lines().count()), (1, 1), "{err}");
    assert!(err.contains("no table is captured") && err.contains("cdc-setup install --db"), "{err}");
    // Two unknown tables: both named.
    let (code, _, err) = run_bin("cdc-setup", &["install", "--db", src, "--table", "nope", "--table", "nada"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("\"nope\"") && err.contains("\"nada\""), "{err}");
}

/// A replica (or source) this user may not write: refused before SQLite
/// opens it, so no `-wal`/`-shm` appears beside it. (Run as `nobody` when
/// the tests run as root, whom file modes do not stop.)
#[test]
fn a_read_only_replica_is_refused_without_a_trace() {
    let db = source();
    let dir = db.dir.path();
    let replica = dir.join("replica.db");
    let (code, _, err) = run_bin(
        "replicator",
        &["--db", db.path.to_str().unwrap(), "--target", &format!("sqlite:{}", replica.display()), "--once"],
    );
    assert_eq!(code, 0, "{err}");
    crate::support::checkpoint_away(&replica);
    for name in ["replica.db-wal", "replica.db-shm"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(&db.path, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(&replica, std::fs::Permissions::from_mode(0o444)).unwrap();
    sqlite3(&db.path, "INSERT INTO t VALUES(9, 'later');");
    let root = String::from_utf8(std::process::Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    let bin = crate::support::bin("replicator");
    let target = format!("sqlite:{}", replica.display());
    let args = ["--db", db.path.to_str().unwrap(), "--target", &target, "--once"];
    let out = if root.trim() == "0" {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(args)
            .output()
            .unwrap()
    } else {
        std::process::Command::new(&bin).args(args).output().unwrap()
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.lines().last().unwrap().contains("the replica") && err.contains("read-only for this user"), "{err}");
    for name in ["replica.db-wal", "replica.db-shm"] {
        assert!(!dir.join(name).exists(), "{name} made beside a replica it cannot write");
    }
}

/// Output into a pipe whose reader goes away (`| head`): the program
/// stops quietly with 0, as any filter.
#[test]
fn a_closed_pipe_ends_quietly() {
    use std::io::BufRead;
    let db = source();
    sqlite3(
        &db.path,
        "WITH RECURSIVE i(j) AS (SELECT 10 UNION ALL SELECT j + 1 FROM i WHERE j < 20000) INSERT INTO t SELECT j, j FROM i;",
    );
    let src = db.path.to_str().unwrap();
    for (program, args) in [
        ("replicator", vec!["--db", src, "--target", "jsonl:-", "--once"]),
        ("cdc-setup", vec!["consumers", "--db", src, "--json"]),
        ("cdc-setup", vec!["status", "--db", src, "--json"]),
    ] {
        let mut child = std::process::Command::new(crate::support::bin(program))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        // The reader is gone now.
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{program} {args:?}: {err}");
        assert!(!err.contains("error") && !err.to_lowercase().contains("broken pipe"), "{err}");
    }
}

/// Looking (`status`, `consumers`) at a WAL source nobody has open leaves
/// no `-wal`/`-shm` beside it.
#[test]
fn looking_leaves_no_files_behind() {
    let db = source();
    crate::support::checkpoint_away(&db.path);
    drop(db.conn());
    let dir = db.dir.path();
    let companions = || ["source.db-wal", "source.db-shm"].iter().filter(|n| dir.join(n).exists()).count();
    // The test's own handles are closed: nothing is beside it now.
    for name in ["source.db-wal", "source.db-shm"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    assert_eq!(sqlite3(&db.path, "PRAGMA journal_mode;").trim(), "wal");
    for name in ["source.db-wal", "source.db-shm"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    for what in [&["status"][..], &["consumers"], &["status", "--json"]] {
        let args = [what, &["--db", db.path.to_str().unwrap()]].concat();
        let (code, _, err) = run_bin("cdc-setup", &args);
        assert_eq!(code, 0, "{err}");
        assert_eq!(companions(), 0, "{what:?} left files beside the source");
    }
}

/// A run of a consumer that delivered before, refused before it could
/// deliver again (its replica in use by another replicator), keeps the
/// consumer's record: its pin still holds the log.
#[test]
fn a_refused_run_keeps_a_durable_consumer() {
    let db = source();
    let src = db.path.to_str().unwrap();
    let dir = db.dir.path();
    let (first, second) =
        (format!("sqlite:{}", dir.join("a.db").display()), format!("sqlite:{}", dir.join("b.db").display()));
    let (code, _, err) = run_bin("replicator", &["--db", src, "--target", &first, "--consumer", "x", "--once"]);
    assert_eq!(code, 0, "{err}");
    let sidecar = Sidecar::start(&["--db", src, "--target", &second], &dir.join("sidecar.log"));
    crate::support::wait_equal(&db.path, &dir.join("b.db"), &["t", "u"], DEADLINE);
    let (code, _, err) = run_bin("replicator", &["--db", src, "--target", &second, "--consumer", "x", "--once"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already in use"), "{err}");
    let (listed, _) = consumers(&db.path);
    assert!(listed.lines().any(|l| l.starts_with("x: ")), "{listed}");
    sidecar.kill();
}
