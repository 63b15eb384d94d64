//! Integration tests across crates and processes, in one binary (as
//! ripgrep does) with shared helpers in `support`. Writers here are
//! programs this project did not write: the `sqlite3` shell and Python's
//! `sqlite3` module, each in its own process.

mod apply;
mod beside;
mod busy;
mod debezium;
mod first_hour;
mod ground;
#[cfg(feature = "kafka")]
mod kafka;
mod nats;
mod replicator;
mod rowids;
mod schema;
mod schema_gap;
mod setup_cli;
mod soak;
mod support;
mod triggers;
mod upgrade;
mod views;
mod watch;
