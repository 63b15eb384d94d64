//! Built-in targets and the target strings that name them:
//! `sqlite:PATH`, `jsonl:PATH`, `jsonl:-`, `bincode:PATH`,
//! `http://URL`, `https://URL`.

pub mod bincode;
pub mod http;
pub mod jsonl;
pub mod sqlite;

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::target::Target;

pub use self::bincode::{BincodeReader, BincodeTarget};
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

/// A parsed target string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetSpec {
    Sqlite(PathBuf),
    /// `None`: standard output.
    Jsonl(Option<PathBuf>),
    Bincode(PathBuf),
    Http(String),
}

const FORMS: &str = "expected sqlite:PATH, jsonl:PATH, jsonl:-, bincode:PATH, http://URL or https://URL";

impl std::str::FromStr for TargetSpec {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self> {
        let bad = |why: &str| Error::Config(format!("bad target {spec:?}: {why}"));
        if spec.starts_with("http://") || spec.starts_with("https://") {
            let rest = spec.split_once("://").map(|(_, r)| r).unwrap_or_default();
            if rest.is_empty() || rest.starts_with('/') {
                return Err(Error::Config(format!("bad target {:?}: the URL has no host", http::redacted(spec))));
            }
            http::check_url(spec)?;
            return Ok(TargetSpec::Http(spec.to_string()));
        }
        let (kind, path) = spec.split_once(':').ok_or_else(|| bad(FORMS))?;
        // A `file:` URI names a file too (SQLite's own form): its path is
        // what counts, query parameters aside.
        let path = match path.strip_prefix("file:") {
            Some(uri) => uri.split('?').next().unwrap_or_default().trim_start_matches("//localhost"),
            None => path,
        };
        if path.is_empty() {
            return Err(bad("the path is empty"));
        }
        match kind {
            "sqlite" => Ok(TargetSpec::Sqlite(path.into())),
            "jsonl" if path == "-" => Ok(TargetSpec::Jsonl(None)),
            "jsonl" => Ok(TargetSpec::Jsonl(Some(path.into()))),
            "bincode" => Ok(TargetSpec::Bincode(path.into())),
            _ => Err(bad(FORMS)),
        }
    }
}

impl TargetSpec {
    /// A stable consumer name for this target: its kind and absolute path
    /// (or URL), so the same destination keeps its position whatever the
    /// working directory.
    pub fn consumer_name(&self) -> String {
        let abs = |p: &PathBuf| crate::lock::resolved(p).display().to_string();
        match self {
            TargetSpec::Sqlite(p) => format!("sqlite:{}", abs(p)),
            TargetSpec::Jsonl(None) => "jsonl:stdout".into(),
            TargetSpec::Jsonl(Some(p)) => format!("jsonl:{}", abs(p)),
            TargetSpec::Bincode(p) => format!("bincode:{}", abs(p)),
            // Never the credentials: the name is stored and logged.
            TargetSpec::Http(url) => http::redacted(url),
        }
    }

    /// The file this target writes, if any.
    pub fn path(&self) -> Option<&PathBuf> {
        match self {
            TargetSpec::Sqlite(p) | TargetSpec::Bincode(p) | TargetSpec::Jsonl(Some(p)) => Some(p),
            _ => None,
        }
    }

    /// Opens the target for the source database at `source` (creating
    /// its file if missing). A target file that is the source itself,
    /// through any path, is refused before anything is written.
    pub fn open(&self, source: &std::path::Path) -> Result<Box<dyn Target + Send>> {
        if let Some(path) = self.path() {
            crate::lock::refuse_source_as_target(source, path)?;
        }
        if let Some(dir) = self.path().and_then(|p| p.parent()).filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(Error::Config(format!("target folder {} does not exist", dir.display())));
        }
        Ok(match self {
            TargetSpec::Sqlite(p) => Box::new(SqliteTarget::open(p)?),
            TargetSpec::Jsonl(None) => Box::new(JsonlTarget::stdout()),
            TargetSpec::Jsonl(Some(p)) => Box::new(JsonlTarget::file(p)?),
            TargetSpec::Bincode(p) => Box::new(BincodeTarget::open(p)?),
            TargetSpec::Http(url) => Box::new(HttpTarget::new(url)?),
        })
    }
}
