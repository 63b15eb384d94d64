//! Prints one Markdown table of ratios (this project / baseline) from the
//! last `cargo bench -p cdc-benches` run. Run:
//! `cargo run -p cdc-benches --bin report` (reads `target/criterion`).

use std::path::PathBuf;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion"));
    let results = cdc_benches::report::load(&dir);
    let figures =
        std::fs::read_dir(&dir).is_ok_and(|d| d.flatten().any(|e| e.path().extension().is_some_and(|x| x == "json")));
    if results.is_empty() && !figures {
        eprintln!("report: no criterion results in {} (run `cargo bench -p cdc-benches` first)", dir.display());
        std::process::exit(1);
    }
    print!("{}", cdc_benches::report::render(&results, &dir));
}
