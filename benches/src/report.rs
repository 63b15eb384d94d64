//! Reads criterion's results (`target/criterion/*/*/new/estimates.json`)
//! and renders ratios against the baselines measured in the same run.

use std::collections::BTreeMap;
use std::path::Path;

/// Mean time in nanoseconds of every benchmark, keyed by group then function.
pub fn load(dir: &Path) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let Ok(groups) = std::fs::read_dir(dir) else { return out };
    for group in groups.flatten() {
        let Ok(benches) = std::fs::read_dir(group.path()) else { continue };
        for bench in benches.flatten() {
            let Ok(text) = std::fs::read_to_string(bench.path().join("new/estimates.json")) else { continue };
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            let Some(mean) = json["mean"]["point_estimate"].as_f64() else { continue };
            // The benchmark.json holds the real (unescaped) names.
            let meta = std::fs::read_to_string(bench.path().join("new/benchmark.json")).unwrap_or_default();
            let meta: serde_json::Value = serde_json::from_str(&meta).unwrap_or_default();
            let (Some(g), Some(f)) = (meta["group_id"].as_str(), meta["function_id"].as_str()) else { continue };
            out.entry(g.to_string()).or_default().insert(f.to_string(), mean);
        }
    }
    out
}

fn ratio(results: &BTreeMap<String, f64>, ours: &str, baseline: &str) -> String {
    match (results.get(ours), results.get(baseline)) {
        (Some(a), Some(b)) if *b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

/// The Markdown report: capture overhead, replication, bootstrap, latency.
pub fn render(results: &BTreeMap<String, BTreeMap<String, f64>>, dir: &Path) -> String {
    let mut out = String::new();
    out.push_str(
        "| capture: group | µs per row, no capture | cdc / no capture | cdc / json_object | cdc / app-writes-log | cdc / new-image trigger |\n",
    );
    out.push_str("| --- | --- | --- | --- | --- | --- |\n");
    for (group, r) in results.iter().filter(|(g, _)| g.starts_with("capture/")) {
        let rows = if group.ends_with("one-txn") { 2000.0 } else { 200.0 };
        let base = r.get("none").map_or("–".into(), |ns| format!("{:.2}", ns / rows / 1e3));
        out.push_str(&format!(
            "| {} | {base} | {} | {} | {} | {} |\n",
            group.trim_start_matches("capture/"),
            ratio(r, "cdc", "none"),
            ratio(r, "cdc", "json_object"),
            ratio(r, "cdc", "app-writes-log"),
            ratio(r, "cdc", "new-image-trigger"),
        ));
    }
    // Every log shape against kevinconway/sqlite-cdc's triggers, and
    // against the floor (the application writing capture's own row).
    let shapes = [
        "cdc",
        "cand: julianday()",
        "cand: 8 values per row",
        "cand: 16 values per row",
        "cand: rowid once",
        "cand: all three",
        "app-writes-log",
    ];
    out.push_str("\n| log shape / json_object: group |");
    for s in shapes {
        out.push_str(&format!(" {s} |"));
    }
    out.push_str(&format!("\n|{}\n", " --- |".repeat(shapes.len() + 1)));
    for (group, r) in results.iter().filter(|(g, r)| g.starts_with("capture/") && r.contains_key("cand: all three")) {
        out.push_str(&format!("| {} |", group.trim_start_matches("capture/")));
        for s in shapes {
            out.push_str(&format!(" {} |", ratio(r, s, "json_object")));
        }
        out.push('\n');
    }
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
