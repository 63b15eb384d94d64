//! The single source of truth for every piece of SQL the project generates.
//!
//! Both `#[derive(Cdc)]` (at compile time) and the `cdc` runtime (when it
//! introspects a live table) build a [`TableDesc`] and call the same
//! functions here, so the trigger SQL a struct carries is byte-for-byte the
//! SQL that `cdc-setup` installs for the same table. A proc-macro crate can
//! only export macros, which is why this lives in a plain crate of its own
//! (the pattern of `sqlx-macros-core` and diesel's `migrations_internals`).
//!
//! This crate has no SQLite dependency: it only builds strings and hashes.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bookkeeping;
mod compat;
mod fingerprint;
mod ident;
pub mod legacy;
pub mod log;
pub mod replica;
mod table;
mod triggers;

pub use compat::{Against, mismatches};
pub use fingerprint::{fnv1a, fnv1a64};
pub use ident::{quote_ident, quote_literal};
pub use log::{CHUNK_WIDTH, LOG_TABLE, Op};
pub use replica::Identity;
pub use table::{Affinity, ColumnDesc, TableDesc};
pub use triggers::{InsertImage, SchemaError};
