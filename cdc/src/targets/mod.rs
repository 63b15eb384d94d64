//! Built-in targets and the target strings that name them:
//! `sqlite:PATH`, `jsonl:PATH`, `jsonl:-`, `bincode:PATH`,
//! `http://URL`, `https://URL` (with the `http` feature, on by default).

pub mod bincode;
#[cfg(feature = "http")]
pub mod http;
pub mod jsonl;
pub mod sqlite;

use crate::error::{Error, Result};

pub use self::bincode::{BincodeReader, BincodeTarget};
#[cfg(feature = "http")]
pub use self::http::HttpTarget;
pub use self::jsonl::JsonlTarget;
pub use self::sqlite::SqliteTarget;

/// Opens `path` for appending, creating it if missing (its folder must exist).
pub(crate) fn open_append(path: &std::path::Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::Io { context: path.display().to_string(), source: e })
}
