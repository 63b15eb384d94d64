//! Peak memory of a drain, flat in the backlog: the engine drains a
//! backlog of 10 000, 100 000 and 1 000 000 captured changes into a SQLite
//! replica in a process of its own (this bench binary run again as a
//! child), which reports its peak resident set (`VmHWM`, Linux). The
//! baseline, measured in the same run, is the same process draining an
//! empty backlog. Criterion times each drain; the peaks are printed and
//! saved to `target/criterion/memory-rss.json` for the report. Run:
//! `cargo bench -p cdc-benches --bench memory`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};

use cdc::targets::SqliteTarget;
use cdc::{BootstrapMode, Engine};
use cdc_benches::{backlog_source, copy_of, remove_db};

/// Set in the child's environment: the source to drain, then the replica.
const CHILD: &str = "CDC_BENCH_MEMORY_CHILD";

/// Backlogs drained (smaller in a debug build, which `cargo test
/// --benches` runs once).
const BACKLOGS: [usize; 4] =
    if cfg!(debug_assertions) { [0, 1_000, 5_000, 10_000] } else { [0, 10_000, 100_000, 1_000_000] };

/// The child: drains `source` into `replica`, prints the changes
/// delivered and its peak resident set in KiB.
fn child(source: &str, replica: &str) {
    let mut engine = Engine::builder(Path::new(source)).bootstrap(BootstrapMode::Never).open().unwrap();
    let mut target = SqliteTarget::open(Path::new(replica)).unwrap();
    let drained = engine.drain(&mut target).unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    println!("{} {peak}", drained.changes);
}

/// Runs the child once on a fresh copy of `template`: its wall time and
/// peak resident set (KiB).
fn drain_in_child(template: &Path, dir: &Path) -> (Duration, u64) {
    let source = copy_of(template, "memory-source.db");
    let replica = dir.join("memory-replica.db");
    remove_db(&replica);
    let started = Instant::now();
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, format!("{}\n{}", source.display(), replica.display()))
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let peak = text.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    (took, peak)
}

fn memory(c: &mut Criterion) {
    let mut report = serde_json::Map::new();
    let mut group = c.benchmark_group("memory/drain");
    group.sample_size(10);
    for backlog in BACKLOGS {
        let dir = tempfile::tempdir().unwrap();
        let template = backlog_source(dir.path(), backlog);
        let mut peak = 0u64;
        group.bench_function(format!("{backlog} changes"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (took, rss) = drain_in_child(&template, dir.path());
                    peak = peak.max(rss);
                    total += took;
                }
                total
            })
        });
        println!("memory/drain: {backlog} changes, peak RSS {:.1} MiB", peak as f64 / 1024.0);
        report.insert(backlog.to_string(), serde_json::json!({ "peak_rss_mib": peak as f64 / 1024.0 }));
    }
    group.finish();
    cdc_benches::save_figures("memory-rss.json", &report);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(100)).measurement_time(Duration::from_secs(3));
    targets = memory
}

fn main() {
    if let Ok(paths) = std::env::var(CHILD) {
        let (source, replica) = paths.split_once('\n').expect("source and replica");
        child(source, replica);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
