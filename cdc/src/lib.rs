#![doc = include_str!("../../README.md")]
#![forbid(unsafe_code)]
//!
//! # Crate map
//!
//! - [`capture`]: attach and remove capture, the registry, drift checks, status.
//! - [`log`]: read the log back as [`Change`]s, positions, pruning.
//! - [`schema`]: introspect live tables into [`TableDesc`].
//! - [`Value`], [`Event`], [`Change`], [`TypedChange`], the [`Cdc`] trait
//!   implemented by `#[derive(Cdc)]`.

mod bootstrap;
pub mod capture;
pub mod db;
mod engine;
mod error;
mod event;
pub mod json;
pub mod log;
pub mod schema;
pub mod signal;
mod target;
pub mod targets;
mod value;

pub use bootstrap::Progress;
pub use cdc_derive::Cdc;
pub use cdc_schema::{self as sql, ColumnDesc, Op, TableDesc};
pub use engine::{BootstrapMode, Drained, Engine, EngineBuilder, Retry, StopHandle};
pub use error::{Error, Result};
pub use event::{Cdc, Change, Event, Row, TypedChange};
pub use rusqlite;
pub use target::{Source, SourceTable, Target};
pub use value::Value;

/// Re-exports used by code that `#[derive(Cdc)]` generates. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use std::borrow::Cow;
    pub use std::format;
    pub use std::result::Result::{Err, Ok};
    pub use std::string::String;
    pub use std::vec::Vec;
}
