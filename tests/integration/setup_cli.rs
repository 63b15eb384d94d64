//! `cdc-setup` as a user runs it: exit codes, messages, files unchanged on error.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::support::{TempDb, run_bin, schema_dump, sqlite3};

const SCHEMA: &str = "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE kv(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
CREATE INDEX users_name ON users(name);
CREATE VIEW names AS SELECT name FROM users;
INSERT INTO users VALUES(1, 'ann'), (2, 'bob');";

fn setup(db: &TempDb, args: &[&str]) -> (i32, String, String) {
    let mut all = vec![args[0], "--db", db.path.to_str().unwrap()];
    all.extend(&args[1..]);
    run_bin("cdc-setup", &all)
}

#[test]
fn install_uninstall_round_trip_restores_the_schema_exactly() {
    let db = TempDb::with_schema(SCHEMA);
    let before = schema_dump(&db.path);
    let data_before = sqlite3(&db.path, "SELECT * FROM users ORDER BY id;");

    let (code, out, err) = setup(&db, &["install", "--all"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("installed capture on \"kv\"") && out.contains("installed capture on \"users\""), "{out}");
    let installed = schema_dump(&db.path);

    let (code, out, _) = setup(&db, &["install", "--table", "users", "--table", "kv"]);
    assert_eq!(code, 0);
    assert_eq!(out.matches("already installed, nothing changed").count(), 2, "{out}");
    assert_eq!(schema_dump(&db.path), installed, "installing twice is a no-op");

    sqlite3(&db.path, "UPDATE users SET name = 'carl' WHERE id = 1;");
    let (code, out, _) = setup(&db, &["status"]);
    assert_eq!(code, 0);
    // Names and plural-correct counts for people; ids only in --json.
    assert!(out.contains("2 captured tables:\n  kv: captured\n  users: captured"), "{out}");
    assert!(out.contains("log: 1 change kept"), "{out}");
    assert!(!out.contains("capture id") && !out.contains("fingerprint"), "{out}");

    let (code, out, _) = setup(&db, &["status", "--json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["tables"].as_array().unwrap().len(), 2);
    assert!(json["tables"][0]["capture_id"].is_i64() && json["tables"][0]["fingerprint"].is_string());
    assert_eq!(json["wal"], true);

    let (code, _, _) = setup(&db, &["uninstall", "--table", "kv"]);
    assert_eq!(code, 0);
    let (code, out, _) = setup(&db, &["uninstall"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("internal _cdc_ tables dropped"), "{out}");
    assert_eq!(schema_dump(&db.path), before, "uninstall restores sqlite_master exactly");
    let data_after = sqlite3(&db.path, "SELECT * FROM users ORDER BY id;");
    assert_eq!(data_after, data_before.replace("1|ann", "1|carl"), "application data untouched");
}

#[test]
fn schema_drift_shows_in_status() {
    let db = TempDb::with_schema(SCHEMA);
    setup(&db, &["install", "--table", "users"]);
    sqlite3(&db.path, "ALTER TABLE users ADD COLUMN age INT;");
    let (code, out, _) = setup(&db, &["status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(
            "users: CHANGED since capture was attached (column \"age\" was added); re-attach it (its targets then reseed it) with: cdc-setup install"
        ),
        "{out}"
    );
}

#[test]
fn warns_when_not_in_wal_mode() {
    let db = TempDb::with_schema("PRAGMA journal_mode=DELETE; CREATE TABLE t(a);");
    let (code, _, err) = setup(&db, &["install", "--table", "t"]);
    assert_eq!(code, 0);
    assert!(err.contains("is not in WAL mode"), "{err}");
}

/// Runs a failing command and checks: exit code 1, one line on stderr
/// naming the problem, no panic, and no file changed.
fn assert_refused(db: &TempDb, args: &[&str], expected: &str) {
    let files_before = snapshot_files(db);
    let (code, out, err) = setup(db, args);
    assert_eq!(code, 1, "{args:?}: {out}{err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: one line expected: {err}");
    assert!(err.starts_with("cdc-setup: error: ") && err.contains(expected), "{args:?}: {err}");
    assert!(!err.contains("panicked"));
    assert_eq!(snapshot_files(db), files_before, "{args:?} changed a file");
}

fn snapshot_files(db: &TempDb) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(db.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with("-shm"))
        .map(|p| (p.display().to_string(), fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn bad_input_is_refused_with_one_line_and_no_change() {
    let db = TempDb::with_schema(&format!("{SCHEMA}\nCREATE VIRTUAL TABLE docs USING fts5(body);"));
    sqlite3(&db.path, "PRAGMA wal_checkpoint(TRUNCATE);");
    assert_refused(&db, &["install", "--table", "nope"], "no table named \"nope\"");
    assert_refused(&db, &["install", "--table", "docs"], "\"docs\" is a virtual table");
    assert_refused(&db, &["install", "--table", "names"], "\"names\" is a view");
    assert_refused(&db, &["install", "--table", "users", "--table", "nope"], "no table named \"nope\"");
    assert_refused(&db, &["uninstall", "--table", "users"], "table \"users\" is not captured");

    let missing = db.dir.path().join("missing.db");
    let (code, _, err) = run_bin("cdc-setup", &["install", "--db", missing.to_str().unwrap(), "--all"]);
    assert_eq!(code, 1);
    assert!(err.contains("missing.db: no such file"), "{err}");
    assert!(!missing.exists(), "a missing database is never created");

    let text = db.dir.path().join("notes.txt");
    let content = "this is not a database, just some text that is long enough to have a header";
    fs::write(&text, content).unwrap();
    let (code, _, err) = run_bin("cdc-setup", &["status", "--db", text.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("notes.txt: not a SQLite database"), "{err}");
    assert_eq!(fs::read_to_string(&text).unwrap(), content);

    let (code, _, err) = run_bin("cdc-setup", &["install", "--db", db.path.to_str().unwrap()]);
    assert_eq!(code, 2, "clap usage error: {err}");
    assert!(err.contains("<--table <NAME>|--all>") && err.lines().count() == 1, "names both ways: {err}");
    let (code, _, err) = run_bin("cdc-setup", &["install", "--db", db.path.to_str().unwrap(), "--all", "--table", "t"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("'--all' cannot be used with '--table <NAME>'"), "{err}");
}

#[test]
fn read_only_and_locked_databases_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let db = TempDb::with_schema(SCHEMA);
    sqlite3(&db.path, "PRAGMA journal_mode=DELETE;");
    let mut perms = fs::metadata(&db.path).unwrap().permissions();
    perms.set_mode(0o444);
    fs::set_permissions(&db.path, perms.clone()).unwrap();
    // Root can write read-only files; only check when permissions bite.
    if fs::OpenOptions::new().write(true).open(&db.path).is_err() {
        assert_refused(&db, &["install", "--table", "users"], "read-only");
    }
    perms.set_mode(0o644);
    fs::set_permissions(&db.path, perms).unwrap();

    // An exclusive lock held by another process: wait, then fail cleanly.
    let mut holder = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(30)\n",
            db.path.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    let started = std::time::Instant::now();
    let (code, _, err) = setup(&db, &["install", "--table", "users"]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("database is locked"), "{err}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(4), "waited with a busy timeout first");
}

#[test]
fn migrate_pauses_capture_around_a_command_and_refuses_misuse() {
    let db = TempDb::with_schema(SCHEMA);
    let src = db.path.to_str().unwrap().to_string();
    let (code, _, err) = setup(&db, &["install", "--all"]);
    assert_eq!(code, 0, "{err}");
    let installed = schema_dump(&db.path);
    // Nothing to run: a usage error, nothing changed.
    let (code, _, err) = setup(&db, &["migrate"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = setup(&db, &["migrate", "--finish"]);
    assert_eq!((code, err.lines().count()), (1, 1), "{err}");
    assert!(err.contains("no migration window is open"), "{err}");
    assert_eq!(schema_dump(&db.path), installed);
    // A command that fails before writing, or cannot be run at all: its
    // status is said in one line, and capture is exactly as it was (no
    // marker in the log: replicators do not reseed).
    let capture = |db: &TempDb| {
        schema_dump(&db.path) + &sqlite3(&db.path, "SELECT * FROM _cdc_log; SELECT * FROM _cdc_tables ORDER BY tid;")
    };
    let before = capture(&db);
    for (command, said) in [
        (vec!["sqlite3", &src, "ALTER TABLE users DROP COLUMN nope"], "exited with status 1"),
        (vec!["false"], "exited with status 1"),
        (vec!["/no/such/migration"], "could not run"),
    ] {
        let args = [&["migrate", "--"][..], &command].concat();
        let (code, out, err) = setup(&db, &args);
        // The command's own output, then one line of ours.
        let ours: Vec<&str> = err.lines().filter(|l| l.starts_with("cdc-setup:")).collect();
        assert_eq!((code, ours.len()), (1, 1), "{command:?}: {out}{err}");
        assert!(ours[0].contains(said) && ours[0].contains("capture was restored as it was"), "{err}");
        assert!(out.contains("no reseed") && !out.contains("attached again"), "{out}");
        assert_eq!(capture(&db), before, "{command:?} changed capture");
    }
    // One that wrote before failing: capture comes back with a reseed, so
    // what it wrote reaches replicators.
    let write_then_fail = format!("sqlite3 {src} \"INSERT INTO users(name) VALUES('during')\" && exit 3");
    let (code, out, err) = setup(&db, &["migrate", "--", "sh", "-c", &write_then_fail]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("exited with status 3") && err.contains("replicators reseed"), "{err}");
    assert!(out.contains("capture attached again to \"users\""), "{out}");
    let (_, status, _) = setup(&db, &["status"]);
    assert!(!status.contains("CHANGED") && !status.contains("migration window"), "{status}");
    // The two halves; a second --start names the way out.
    let (code, out, _) = setup(&db, &["migrate", "--start"]);
    assert_eq!(code, 0);
    assert!(out.contains("capture paused on 2 table(s)") && out.contains("--finish"), "{out}");
    let (code, _, err) = setup(&db, &["migrate", "--start"]);
    assert_eq!((code, err.lines().count()), (1, 1), "{err}");
    assert!(err.contains("already open") && err.contains("cdc-setup migrate --db"), "{err}");
    let (_, status, _) = setup(&db, &["status"]);
    assert!(status.contains("migration window open since"), "{status}");
    sqlite3(&db.path, "DROP VIEW names; DROP INDEX users_name; ALTER TABLE users DROP COLUMN name; DROP TABLE kv;");
    let (code, out, err) = setup(&db, &["migrate", "--finish"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("capture attached again to \"users\""), "{out}");
    assert!(out.contains("\"kv\" no longer exists (dropped or renamed): capture removed from it"), "{out}");
    let (_, status, _) = setup(&db, &["status"]);
    assert!(
        status.contains("1 captured table:\n  users: captured")
            && !status.contains("kv")
            && !status.contains("CHANGED"),
        "{status}"
    );
}

/// The systemd unit in `contrib/` is well formed, restarts on failure, runs
/// under its own user, and starts the replicator with `--db` and
/// `--target`; `systemd-analyze verify` accepts it (pointed at the built
/// binary) where systemd is installed.
#[test]
fn the_systemd_unit_is_valid() {
    let unit_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/replicator@.service");
    let text = std::fs::read_to_string(&unit_path).unwrap();
    let mut section = String::new();
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
        assert!(!section.is_empty(), "{line} outside a section");
        keys.push((section.clone(), key.to_string(), value.to_string()));
    }
    let get = |s: &str, k: &str| keys.iter().find(|(a, b, _)| a == s && b == k).map(|(_, _, v)| v.as_str());
    assert_eq!(get("Service", "Restart"), Some("on-failure"));
    assert!(get("Service", "User").is_some_and(|u| u != "root"), "its own user");
    let exec = get("Service", "ExecStart").unwrap();
    assert!(exec.contains("replicator --db ") && exec.contains(" --target "), "{exec}");
    assert_eq!(get("Install", "WantedBy"), Some("multi-user.target"));
    if Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("replicator@test.service");
        let binary = crate::support::bin("replicator");
        std::fs::write(&copy, text.replace("/usr/local/bin/replicator", binary.to_str().unwrap())).unwrap();
        let out = Command::new("systemd-analyze").arg("verify").arg(&copy).output().unwrap();
        let complaints = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && complaints.trim().is_empty(), "systemd-analyze verify: {complaints}");
    }
}

/// Shell completions name every subcommand and option.
#[test]
fn shell_completions_cover_the_command_lines() {
    let (code, out, err) = run_bin("replicator", &["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    for word in ["_replicator", "--target", "--metrics", "--format", "demo"] {
        assert!(out.contains(word), "{word} missing from:\n{out}");
    }
    let (code, out, err) = run_bin("cdc-setup", &["completions", "zsh"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("#compdef cdc-setup"), "{out}");
    for word in ["install", "consumers", "--stale-after", "migrate"] {
        assert!(out.contains(word), "{word} missing from:\n{out}");
    }
    let (code, _, err) = run_bin("cdc-setup", &["completions", "tcsh"]);
    assert_eq!((code, err.lines().count()), (2, 1), "{err}");
}
