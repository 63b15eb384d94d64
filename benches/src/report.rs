//! Reads criterion's results (`target/criterion/*/*/new/estimates.json`)
//! and renders ratios against the baselines measured in the same run.

use std::collections::BTreeMap;
use std::path::Path;

/// Mean time in nanoseconds of every benchmark, keyed by group then function.
pub fn load(dir: &Path) -> BTreeMap<String, BTreeMap<String, f64>> {
    load_with(dir, |bench| {
        let text = std::fs::read_to_string(bench.join("new/estimates.json")).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json["mean"]["point_estimate"].as_f64()
    })
}

/// The fastest sample's time per iteration, in nanoseconds, of every
/// benchmark: for a CPU-bound workload on a shared machine, the least
/// disturbed measurement (noise only ever adds time).
pub fn load_fastest(dir: &Path) -> BTreeMap<String, BTreeMap<String, f64>> {
    load_with(dir, |bench| {
        let text = std::fs::read_to_string(bench.join("new/sample.json")).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        let (iters, times) = (json["iters"].as_array()?, json["times"].as_array()?);
        iters.iter().zip(times).filter_map(|(i, t)| Some(t.as_f64()? / i.as_f64()?)).min_by(f64::total_cmp)
    })
}

/// One figure (`figure(bench folder)`) of every benchmark in criterion's
/// results (`dir/*/*/new/`), keyed by group then function.
fn load_with(dir: &Path, figure: impl Fn(&Path) -> Option<f64>) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let Ok(groups) = std::fs::read_dir(dir) else { return out };
    for group in groups.flatten() {
        let Ok(benches) = std::fs::read_dir(group.path()) else { continue };
        for bench in benches.flatten() {
            let Some(value) = figure(&bench.path()) else { continue };
            // The benchmark.json holds the real (unescaped) names.
            let meta = std::fs::read_to_string(bench.path().join("new/benchmark.json")).unwrap_or_default();
            let meta: serde_json::Value = serde_json::from_str(&meta).unwrap_or_default();
            let (Some(g), Some(f)) = (meta["group_id"].as_str(), meta["function_id"].as_str()) else { continue };
            out.entry(g.to_string()).or_default().insert(f.to_string(), value);
        }
    }
    out
}

/// The capture variants' labels (see `shapes::Variant`), in the tables' order.
const OURS: &str = "cdc";
const KEVIN: &str = "kevinconway/sqlite-cdc";
const COMPARED: [&str; 5] =
    ["cdc", "cdc, inserts reread", "cdc format 1", "json_object trigger", "floor: trigger to a plain table"];

fn cell(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

/// One table: per group, each compared variant over kevinconway's
/// triggers, and this project's over no capture. `get(group, variant)`.
fn capture_table(title: &str, groups: &[String], get: &dyn Fn(&str, &str) -> Option<f64>, unit: &str) -> String {
    let mut out = format!("| {title} | {unit}, no capture |");
    for v in COMPARED {
        out.push_str(&format!(" {v} / kevinconway |"));
    }
    out.push_str(" cdc / no capture |\n|");
    out.push_str(&" --- |".repeat(COMPARED.len() + 3));
    out.push('\n');
    for g in groups {
        let none = get(g, "none");
        let shown =
            none.map_or("–".into(), |n| if unit == "instructions" { format!("{n:.0}") } else { format!("{n:.2}") });
        out.push_str(&format!("| {g} | {shown} |"));
        for v in COMPARED {
            out.push_str(&format!(" {} |", cell(get(g, v), get(g, KEVIN))));
        }
        out.push_str(&format!(" {} |\n", cell(get(g, OURS), none)));
    }
    out
}

/// The capture tables: instructions (callgrind, both SQLites), wall time
/// through Rust (criterion) and through Python.
fn capture(results: &BTreeMap<String, BTreeMap<String, f64>>, dir: &Path) -> String {
    let mut out = String::new();
    let read = |name: &str| -> serde_json::Map<String, serde_json::Value> {
        std::fs::read_to_string(dir.join(name)).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
    };
    let counted = read("capture-instructions.json");
    let engines: Vec<String> = counted
        .values()
        .flat_map(|v| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let groups: Vec<String> = counted.keys().cloned().collect();
    for engine in &engines {
        let get = |g: &str, v: &str| counted.get(g)?.get(engine)?.get(v)?.as_f64();
        let title = format!("instructions per statement, one transaction, {engine}");
        out.push_str(&capture_table(&title, &groups, &get, "instructions"));
        out.push('\n');
    }
    let fastest = load_fastest(dir);
    let capture_groups: Vec<String> = results
        .keys()
        .filter(|g| g.starts_with("capture/"))
        .map(|g| g.trim_start_matches("capture/").to_string())
        .collect();
    if !capture_groups.is_empty() {
        let get = |g: &str, v: &str| {
            let rows = if g.ends_with("one-txn") { 2000.0 } else { 200.0 };
            fastest.get(&format!("capture/{g}"))?.get(v).map(|ns| ns / rows / 1e3)
        };
        let title = "wall time per statement, Rust (criterion, fastest of 20 samples)";
        out.push_str(&capture_table(title, &capture_groups, &get, "µs"));
        out.push('\n');
    }
    let python = read("capture-python-us.json");
    if !python.is_empty() {
        let groups: Vec<String> = python.keys().cloned().collect();
        let get = |g: &str, v: &str| python.get(g)?.get(v)?.as_f64();
        out.push_str(&capture_table(
            "wall time per statement, Python's sqlite3 (fastest of 15 rounds)",
            &groups,
            &get,
            "µs",
        ));
        out.push('\n');
    }
    out
}

/// The Markdown report: capture overhead, replication, bootstrap, latency.
pub fn render(results: &BTreeMap<String, BTreeMap<String, f64>>, dir: &Path) -> String {
    let mut out = String::new();
    out.push_str(&capture(results, dir));
    for (prefix, baseline, what) in [
        ("replication/narrow-inserts", "baseline: INSERT INTO ... SELECT via ATTACH", "INSERT … SELECT via ATTACH"),
        (
            "replication/narrow-inserts",
            "baseline: the same writes as SQL statements",
            "the same writes as SQL statements",
        ),
        ("replication/narrow-400k", "baseline: the same inserts as plain SQL", "the same inserts as plain SQL"),
        (
            "replication/narrow-400k",
            "floor: SELECT the log, the same inserts, DELETE the log",
            "SELECT + inserts + DELETE (floor)",
        ),
        ("bootstrap/", "baseline: VACUUM INTO", "VACUUM INTO"),
        ("bootstrap/", "baseline: INSERT INTO ... SELECT into a WAL file", "INSERT … SELECT into a WAL file"),
        ("drain", "baseline: SELECT every log row", "SELECT of the log rows"),
        ("nats/backlog", "direct-replica", "the direct replica"),
        ("nats/backlog", "floor: the same messages pulled by a bare consumer", "a bare consumer's pull (floor)"),
    ] {
        for (group, r) in results.iter().filter(|(g, _)| g.starts_with(prefix)) {
            out.push_str(&format!("\n| {group} | time | / {what} |\n| --- | --- | --- |\n"));
            let base = r.get(baseline).copied();
            for (name, ns) in r.iter().filter(|(n, _)| !n.starts_with("baseline") && *n != baseline) {
                let ratio = base.map_or("–".into(), |b| format!("{:.2}", ns / b));
                out.push_str(&format!("| {name} | {:.1} ms | {ratio} |\n", ns / 1e6));
            }
            if let Some(b) = base {
                out.push_str(&format!("| ({what}) | {:.1} ms | 1.00 |\n", b / 1e6));
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("memory-rss.json"))
        && let Ok(json) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text)
    {
        let mib = |v: &serde_json::Value| v["peak_rss_mib"].as_f64().unwrap_or(f64::NAN);
        let mut rows: Vec<(u64, f64)> = json.iter().filter_map(|(k, v)| Some((k.parse().ok()?, mib(v)))).collect();
        rows.sort_by_key(|r| r.0);
        let base = rows.first().map(|r| r.1);
        out.push_str("\n| peak RSS of a drain into a replica | MiB | / an empty backlog |\n| --- | --- | --- |\n");
        for (changes, rss) in rows {
            let ratio = base.map_or("–".into(), |b| format!("{:.2}", rss / b));
            out.push_str(&format!("| {changes} changes | {rss:.1} | {ratio} |\n"));
        }
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("latency-percentiles.json"))
        && let Ok(json) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(map) = json.as_object()
    {
        out.push_str("\n| commit-to-replica latency | p50 | p99 | commits |\n| --- | --- | --- | --- |\n");
        for (signal, v) in map {
            out.push_str(&format!(
                "| {signal} | {:.1} ms | {:.1} ms | {} |\n",
                v["p50_ms"].as_f64().unwrap_or(f64::NAN),
                v["p99_ms"].as_f64().unwrap_or(f64::NAN),
                v["samples"]
            ));
        }
    }
    out
}
