//! Watching a running replicator: a periodic status line in the log and a
//! Prometheus endpoint (`--metrics ADDR`, `GET /metrics`), both reading
//! the engine's [`cdc::Stats`]. The endpoint is `tiny_http` on one thread
//! (no async runtime) and `prometheus-client`'s text encoder over a
//! collector that copies the stats at each scrape.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cdc::{Stats, StatsSnapshot};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// The kinds of [`StatsSnapshot::errors`].
const ERROR_KINDS: [&str; 7] = ["locked", "unavailable", "target", "refused", "source", "moved", "fatal"];

/// The states a table can be in, as `cdc_table_state{state=...}` series.
const TABLE_STATES: [&str; 4] = ["live", "bootstrapping", "waiting", "halted"];

/// The status-line thread and the metrics server of one run; stopped by
/// [`Watch::stop`].
pub struct Watch {
    stop: Arc<(Mutex<bool>, Condvar)>,
    server: Option<Arc<tiny_http::Server>>,
    threads: Vec<JoinHandle<()>>,
}

impl Watch {
    /// Starts what was asked for: a status line every `interval` (none
    /// when `None`), and the metrics endpoint on `metrics` (from [`bind`]).
    pub fn start(
        stats: Arc<Stats>,
        interval: Option<Duration>,
        metrics: Option<tiny_http::Server>,
    ) -> crate::Result<Watch> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let mut watch = Watch { stop: stop.clone(), server: None, threads: Vec::new() };
        if let Some(server) = metrics {
            let server = Arc::new(server);
            tracing::info!(addr = %server.server_addr(), "serving metrics at /metrics");
            watch.server = Some(server.clone());
            let stats = stats.clone();
            watch.threads.push(spawn("cdc-metrics", move || serve(&server, &stats))?);
        }
        if let Some(interval) = interval {
            watch.threads.push(spawn("cdc-status", move || status_lines(&stats, interval, &stop))?);
        }
        Ok(watch)
    }

    /// Stops both and waits for their threads.
    pub fn stop(self) {
        *self.stop.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.stop.1.notify_all();
        if let Some(server) = &self.server {
            server.unblock();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Binds the metrics endpoint's address: done before anything else runs,
/// so that an address in use or not allowed is refused with nothing
/// written anywhere.
pub fn bind(addr: SocketAddr) -> crate::Result<tiny_http::Server> {
    tiny_http::Server::http(addr).map_err(|e| crate::Error::Io {
        context: format!("cannot serve metrics on {addr}"),
        source: std::io::Error::other(e.to_string()),
    })
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> crate::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(crate::Error::io(format!("starting the {name} thread")))
}

/// One `status` line per interval until stopped: position, what is
/// behind (changes and seconds), what was applied, the rate over the
/// interval, and each table's state.
fn status_lines(stats: &Stats, interval: Duration, stop: &(Mutex<bool>, Condvar)) {
    let mut before = (Instant::now(), stats.snapshot().changes_applied);
    let mut stopped = stop.0.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let deadline = Instant::now() + interval;
        while !*stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            stopped = stop.1.wait_timeout(stopped, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        if *stopped {
            return;
        }
        let s = stats.snapshot();
        let now = Instant::now();
        let rate = (s.changes_applied - before.1) as f64 / now.duration_since(before.0).as_secs_f64();
        before = (now, s.changes_applied);
        // Numbers as numbers (JSON logs), rounded for people.
        tracing::info!(
            position = s.position,
            behind = s.pending,
            lag_seconds = (s.lag_seconds(cdc::stats::now_ms()) * 10.0).round() / 10.0,
            applied = s.changes_applied,
            per_second = rate.round(),
            bootstrapped_rows = s.bootstrap_rows,
            tables = %tables_line(&s.tables),
            "status"
        );
    }
}

/// `users live, "order items" bootstrapping`.
fn tables_line(tables: &BTreeMap<String, String>) -> String {
    tables.iter().map(|(t, state)| format!("{} {state}", crate::sql_name(t))).collect::<Vec<_>>().join(", ")
}

/// Answers `GET /metrics` (anything else: 404) until the server is
/// unblocked.
fn serve(server: &tiny_http::Server, stats: &Arc<Stats>) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StatsCollector(stats.clone())));
    for request in server.incoming_requests() {
        let get = matches!(request.method(), tiny_http::Method::Get | tiny_http::Method::Head);
        let response = if !get {
            tiny_http::Response::from_string("only GET\n").with_status_code(405)
        } else if request.url().split('?').next() == Some("/metrics") {
            let mut body = String::new();
            match prometheus_client::encoding::prometheus_text::encode(&mut body, &registry) {
                Ok(()) => tiny_http::Response::from_string(body)
                    .with_header(header("Content-Type", prometheus_client::encoding::prometheus_text::CONTENT_TYPE)),
                Err(_) => tiny_http::Response::from_string("encoding failed\n").with_status_code(500),
            }
        } else {
            tiny_http::Response::from_string("not found; metrics are at /metrics\n").with_status_code(404)
        };
        let _ = request.respond(response);
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

/// Copies the engine's stats into Prometheus series at each scrape.
#[derive(Debug)]
struct StatsCollector(Arc<Stats>);

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s: StatsSnapshot = self.0.snapshot();
        let now = cdc::stats::now_ms();
        let seconds = |ms: Option<i64>| ms.map_or(0.0, |ms| ms as f64 / 1000.0);
        let counters = [
            ("cdc_changes_applied", "Changes the target committed since the replicator started.", s.changes_applied),
            (
                "cdc_bootstrap_rows",
                "Rows the target received from bootstraps since the replicator started.",
                s.bootstrap_rows,
            ),
            (
                "cdc_source_writes",
                "Write transactions the replicator committed to the source (freeing its log: the only writes it makes there).",
                s.source_writes,
            ),
            ("cdc_log_freed", "Log positions those writes freed.", s.log_freed),
            (
                "cdc_source_writes_deferred",
                "Writes to the source put off because another process was inside a transaction on it.",
                s.source_writes_deferred,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        let gauges = [
            (
                "cdc_lag_seconds",
                "Age of the oldest change the target does not have yet (0 when it has them all).",
                s.lag_seconds(now),
            ),
            ("cdc_lag_changes", "Changes the target did not have when the source was last read.", s.pending as f64),
            ("cdc_position", "The log position (seq) the target holds.", s.position as f64),
            (
                "cdc_last_apply_timestamp_seconds",
                "When the target last committed changes or bootstrap rows (Unix time; 0: not yet).",
                seconds(s.last_apply_ms),
            ),
            ("cdc_last_look_timestamp_seconds", "When the source was last read (Unix time).", seconds(s.last_look_ms)),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let mut errors = encoder.encode_descriptor(
            "cdc_errors",
            "Failures by kind (locked, unavailable, target, refused, source, moved, fatal); see docs/operations.md.",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        // Every kind, zeros included: an alert on a rate needs the series
        // before the first failure.
        for kind in ERROR_KINDS {
            let n = s.errors.get(kind).copied().unwrap_or(0);
            ConstCounter::new(n).encode(errors.encode_family(&[("kind", kind)])?)?;
        }
        let mut tables = encoder.encode_descriptor(
            "cdc_table_state",
            "1 for each followed table's current delivery state (live, bootstrapping, waiting, halted), 0 for the others.",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (table, state) in &s.tables {
            for candidate in TABLE_STATES {
                let labels = [("table", table.as_str()), ("state", candidate)];
                ConstGauge::new(i64::from(candidate == state)).encode(tables.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
