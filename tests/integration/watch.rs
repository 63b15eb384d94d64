//! Watching a running replicator as an operator does: the periodic status
//! line, JSON logs read by a JSON parser, and the Prometheus endpoint
//! scraped by a real HTTP client (Python's urllib, in its own process).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::replicator::{APP_TABLES, app_db, python_workload};
use crate::support::{Sidecar, lines_with, run_bin, sqlite3, wait_equal, wait_until};

const DEADLINE: Duration = Duration::from_secs(120);

/// GETs `url` with Python's urllib: `(status, body)`.
fn http_get(url: &str) -> (u16, String) {
    let program = "import sys, urllib.request, urllib.error\n\
                   try:\n    r = urllib.request.urlopen(sys.argv[1], timeout=30); print(r.status); print(r.headers['Content-Type']); sys.stdout.write(r.read().decode())\n\
                   except urllib.error.HTTPError as e:\n    print(e.code); print(''); sys.stdout.write(e.read().decode())\n";
    let out = Command::new("python3").args(["-c", program, url]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.splitn(3, '\n');
    let status = lines.next().unwrap().parse().unwrap();
    let content_type = lines.next().unwrap_or_default();
    if status == 200 {
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    }
    (status, lines.next().unwrap_or_default().to_string())
}

/// The value of the series `name` (with its labels, as printed) in a
/// Prometheus text body.
fn series(body: &str, name: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.parse().unwrap()))
}

/// The address of the sidecar's metrics endpoint (the port the OS chose
/// for `127.0.0.1:0`), from its log line.
fn metrics_addr(sidecar: &Sidecar) -> String {
    let mut addr = String::new();
    wait_until("the metrics address in the log", DEADLINE, || {
        addr = lines_with(&sidecar.log(), "serving metrics at /metrics")
            .first()
            .and_then(|l| l.split("addr=").nth(1))
            .map(|a| a.trim().to_string())
            .unwrap_or_default();
        !addr.is_empty()
    });
    addr
}

fn start(db: &Path, replica: &Path, log: &Path, extra: &[&str]) -> Sidecar {
    let t = format!("sqlite:{}", replica.display());
    Sidecar::start(&[&["--db", db.to_str().unwrap(), "--target", &t][..], extra].concat(), log)
}

#[test]
fn metrics_are_scraped_by_a_real_client_and_say_what_the_replica_holds() {
    let db = app_db();
    let dir = db.dir.path();
    let (replica, log) = (dir.join("replica.db"), dir.join("sidecar.log"));
    python_workload(&db.path, 41, 150);
    let sidecar = start(&db.path, &replica, &log, &["--metrics", "127.0.0.1:0"]);
    wait_equal(&db.path, &replica, &APP_TABLES, DEADLINE);
    let addr = metrics_addr(&sidecar);
    let rows: u64 = APP_TABLES
        .iter()
        .map(|t| sqlite3(&db.path, &format!("SELECT count(*) FROM \"{t}\";")).trim().parse::<u64>().unwrap())
        .sum();
    let (status, body) = http_get(&format!("http://{addr}/metrics"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(series(&body, "cdc_bootstrap_rows_total"), Some(rows as f64), "{rows} rows: {body}");
    assert_eq!(series(&body, "cdc_lag_seconds"), Some(0.0), "{body}");
    assert_eq!(series(&body, "cdc_lag_changes"), Some(0.0), "{body}");
    assert!(series(&body, "cdc_last_apply_timestamp_seconds").unwrap() > 1.7e9, "{body}");
    for t in APP_TABLES {
        assert_eq!(series(&body, &format!("cdc_table_state{{table=\"{t}\",state=\"live\"}}")), Some(1.0), "{body}");
        assert_eq!(series(&body, &format!("cdc_table_state{{table=\"{t}\",state=\"bootstrapping\"}}")), Some(0.0));
    }
    assert!(body.contains("# TYPE cdc_errors_total counter"), "{body}");
    assert_eq!(series(&body, "cdc_errors_total{kind=\"locked\"}"), Some(0.0), "every kind, zeros too: {body}");

    // Changes after the bootstrap are counted and the position follows.
    let before = series(&body, "cdc_position").unwrap();
    sqlite3(&db.path, "INSERT INTO nokey VALUES('m1', 2), ('m2', 4); DELETE FROM nokey WHERE x = 'm1';");
    wait_equal(&db.path, &replica, &APP_TABLES, DEADLINE);
    wait_until("the changes counted", DEADLINE, || {
        let (_, body) = http_get(&format!("http://{addr}/metrics"));
        series(&body, "cdc_changes_applied_total") == Some(3.0) && series(&body, "cdc_position").unwrap() > before
    });
    // What the replicator wrote to the source (only ever freeing its
    // log: nothing yet, the log is short) and what it put off.
    let (_, body) = http_get(&format!("http://{addr}/metrics"));
    for name in ["cdc_source_writes_total", "cdc_log_freed_total", "cdc_source_writes_deferred_total"] {
        assert_eq!(series(&body, name), Some(0.0), "{name}: {body}");
    }
    let (status, _) = http_get(&format!("http://{addr}/other"));
    assert_eq!(status, 404);
    sidecar.kill();
}

#[test]
fn a_status_line_comes_every_interval_and_json_logs_parse() {
    let db = app_db();
    let dir = db.dir.path();
    let (replica, log) = (dir.join("replica.db"), dir.join("sidecar.log"));
    python_workload(&db.path, 42, 100);
    let sidecar = start(&db.path, &replica, &log, &["--status-interval", "200ms", "--log-format", "json"]);
    wait_equal(&db.path, &replica, &APP_TABLES, DEADLINE);
    let mut status = serde_json::Value::Null;
    wait_until("two status lines after the bootstrap", DEADLINE, || {
        let text = sidecar.log();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .filter(|v| v["fields"]["message"] == "status")
            .collect();
        status = lines.last().cloned().unwrap_or_default();
        lines.len() >= 2 && status["fields"]["tables"].as_str().is_some_and(|t| t.contains("users live"))
    });
    let fields = &status["fields"];
    assert_eq!(status["level"], "INFO", "{status}");
    assert_eq!(fields["behind"], 0, "{status}");
    assert_eq!(fields["lag_seconds"], 0.0, "{status}");
    assert!(fields["bootstrapped_rows"].as_u64().unwrap() > 0, "{status}");
    assert!(fields["per_second"].as_f64().unwrap() >= 0.0, "{status}");
    assert!(fields["position"].as_i64().unwrap() > 0, "{status}");
    sidecar.kill();
    // Every line the sidecar wrote is one JSON object (the replicating
    // line too).
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v.is_object())), "{text}");
}

#[test]
fn bad_watch_options_are_refused_with_one_line_and_no_change() {
    let db = app_db();
    let dir = db.dir.path();
    let replica = dir.join("replica.db");
    // A port already taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let t = format!("sqlite:{}", replica.display());
    let src = db.path.to_str().unwrap();
    let before = std::fs::read(&db.path).unwrap();
    for (extra, expected, code) in [
        (vec!["--metrics", "nowhere"], "invalid value 'nowhere' for '--metrics <ADDR>'", 2),
        (vec!["--metrics", &taken], "cannot serve metrics on", 1),
        (vec!["--status-interval", "soon"], "invalid value 'soon' for '--status-interval <DURATION>'", 2),
        (vec!["--log-format", "xml"], "invalid value 'xml' for '--log-format <FORMAT>'", 2),
    ] {
        let (got, _, err) = run_bin("replicator", &[&["--db", src, "--target", &t, "--once"][..], &extra].concat());
        assert_eq!(got, code, "{extra:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{extra:?}: {err}");
        assert!(err.contains(expected), "{extra:?}: {err}");
        assert!(!replica.exists(), "{extra:?}: the replica was created");
        assert_eq!(std::fs::read(&db.path).unwrap(), before, "{extra:?}: the source was written");
    }
}

/// A target down from the start: the metrics say so (no table live, changes
/// and seconds behind growing, the outage counted); before, they showed a
/// healthy lag of 0 and no tables at all (found by a new-user trial).
#[test]
fn a_target_down_from_the_start_shows_in_the_metrics() {
    let db = app_db();
    let dir = db.dir.path();
    python_workload(&db.path, 43, 60);
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/events");
    let log = dir.join("sidecar.log");
    let sidecar =
        Sidecar::start(&["--db", db.path.to_str().unwrap(), "--target", &url, "--metrics", "127.0.0.1:0"], &log);
    let addr = metrics_addr(&sidecar);
    let mut body = String::new();
    wait_until("the outage in the metrics", DEADLINE, || {
        body = http_get(&format!("http://{addr}/metrics")).1;
        series(&body, "cdc_errors_total{kind=\"unavailable\"}").is_some_and(|n| n >= 2.0)
            && series(&body, "cdc_lag_seconds").is_some_and(|s| s > 0.0)
    });
    assert!(series(&body, "cdc_lag_changes").unwrap() > 0.0, "{body}");
    for t in APP_TABLES {
        // Waiting for, or in, a bootstrap that cannot get through: not live.
        let state = |s: &str| series(&body, &format!("cdc_table_state{{table=\"{t}\",state=\"{s}\"}}"));
        assert_eq!(state("live"), Some(0.0), "{body}");
        assert_eq!(state("waiting").unwrap() + state("bootstrapping").unwrap(), 1.0, "{body}");
    }
    assert_eq!(series(&body, "cdc_last_apply_timestamp_seconds"), Some(0.0), "{body}");
    sidecar.kill();
}
