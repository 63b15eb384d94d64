//! The library's own tests across processes: writers this project did not
//! write (the `sqlite3` shell, Python's `sqlite3` module) beside the
//! engine, capture and bootstrap, run by `cargo test -p sqlite-cdc`. The
//! command lines are tested in the top-level `tests/integration`.

mod bulk;
mod capture;
mod engine;
#[path = "../support/mod.rs"]
mod support;
