//! Target strings: `sqlite:PATH`, `jsonl:PATH`, `jsonl:-`, `bincode:PATH`,
//! `http(s)://URL`, `nats://HOST:PORT/STREAM`, `kafka://HOST:PORT/PREFIX`,
//! parsed and opened.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::redact::redacted;
use crate::target::Target;
#[cfg(feature = "http")]
use crate::targets::HttpTarget;
use crate::targets::{BincodeTarget, JsonlTarget, SqliteTarget};

/// A parsed target string. More built-in targets may be added, so a match
/// needs a wildcard arm.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetSpec {
    /// `sqlite:PATH`: a replica database ([`SqliteTarget`]).
    Sqlite(PathBuf),
    /// `jsonl:PATH`, or `jsonl:-` (`None`) for standard output
    /// ([`JsonlTarget`]).
    Jsonl(Option<PathBuf>),
    /// `bincode:PATH`: length-prefixed frames ([`BincodeTarget`]).
    Bincode(PathBuf),
    /// `http://URL` or `https://URL`, checked but not yet contacted
    /// ([`HttpTarget`]). It holds the URL as given, credentials included:
    /// show [`TargetSpec::consumer_name`] instead.
    #[cfg(feature = "http")]
    Http(String),
    /// `nats://HOST:PORT/STREAM` (or `tls://`): a NATS JetStream stream
    /// ([`crate::nats::NatsTarget`]), checked but not yet contacted.
    #[cfg(feature = "nats")]
    Nats(crate::nats::NatsUrl),
    /// `kafka://HOST:PORT[,HOST:PORT…]/PREFIX`: Kafka topics
    /// `PREFIX.TABLE` ([`crate::kafka::KafkaTarget`]), checked but not yet
    /// contacted.
    #[cfg(feature = "kafka")]
    Kafka(crate::kafka::KafkaUrl),
}

#[cfg(feature = "http")]
const FORMS: &str = "expected sqlite:PATH, jsonl:PATH, jsonl:-, bincode:PATH, http://URL, https://URL, \
                     nats://HOST:PORT/STREAM or kafka://HOST:PORT/PREFIX";
#[cfg(not(feature = "http"))]
const FORMS: &str = "expected sqlite:PATH, jsonl:PATH, jsonl:- or bincode:PATH";

impl std::str::FromStr for TargetSpec {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self> {
        let bad = |why: &str| Error::InvalidSetting(format!("bad target {spec:?}: {why}"));
        if spec.starts_with("http://") || spec.starts_with("https://") {
            return http_spec(spec);
        }
        if spec.starts_with("nats://") || spec.starts_with("tls://") {
            #[cfg(feature = "nats")]
            return Ok(TargetSpec::Nats(spec.parse()?));
            #[cfg(not(feature = "nats"))]
            return Err(Error::InvalidSetting(format!(
                "bad target {:?}: this build has no NATS target (enable the \"nats\" feature of sqlite-cdc)",
                redacted(spec)
            )));
        }
        if spec.starts_with("kafka://") {
            #[cfg(feature = "kafka")]
            return Ok(TargetSpec::Kafka(spec.parse()?));
            #[cfg(not(feature = "kafka"))]
            return Err(Error::InvalidSetting(format!(
                "bad target {:?}: this build has no Kafka target (enable the \"kafka\" feature of sqlite-cdc)",
                redacted(spec)
            )));
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

/// An `http://` or `https://` target string, checked without connecting.
#[cfg(feature = "http")]
fn http_spec(spec: &str) -> Result<TargetSpec> {
    crate::targets::http::check_url(spec)?;
    Ok(TargetSpec::Http(spec.to_string()))
}

/// Without the `http` feature, an HTTP target string is refused as such
/// rather than as a malformed one.
#[cfg(not(feature = "http"))]
fn http_spec(spec: &str) -> Result<TargetSpec> {
    Err(Error::InvalidSetting(format!(
        "bad target {:?}: this build has no HTTP target (enable the \"http\" feature of sqlite-cdc)",
        redacted(spec)
    )))
}

/// How the `jsonl` and `http` targets write events.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EventFormat {
    /// This project's lossless form ([`crate::json`]).
    #[default]
    Json,
    /// Debezium's change-event envelope ([`crate::debezium`]), with a
    /// tombstone (`null`) after each delete when `tombstones`.
    Debezium {
        /// A `null` after each delete.
        tombstones: bool,
    },
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
            #[cfg(feature = "http")]
            TargetSpec::Http(url) => redacted(url),
            #[cfg(feature = "nats")]
            TargetSpec::Nats(url) => url.redacted(),
            #[cfg(feature = "kafka")]
            TargetSpec::Kafka(url) => url.consumer_name(),
        }
    }

    /// Whether this target writes events as JSON (`jsonl`, `http`): the
    /// targets an [`EventFormat`] applies to.
    pub fn writes_json(&self) -> bool {
        #[cfg(feature = "http")]
        if matches!(self, TargetSpec::Http(_)) {
            return true;
        }
        matches!(self, TargetSpec::Jsonl(_))
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
        self.open_as(source, EventFormat::Json)
    }

    /// [`Self::open`], writing events in `format` (only the `jsonl` and
    /// `http` targets write events as JSON; another format for the others
    /// is refused). The Debezium envelope names the source after the
    /// database file's stem.
    pub fn open_as(&self, source: &std::path::Path, format: EventFormat) -> Result<Box<dyn Target + Send>> {
        let debezium = match format {
            EventFormat::Json => None,
            EventFormat::Debezium { tombstones } => {
                #[cfg(feature = "kafka")]
                let kafka = matches!(self, TargetSpec::Kafka(_));
                #[cfg(not(feature = "kafka"))]
                let kafka = false;
                if !self.writes_json() && !kafka {
                    return Err(Error::InvalidSetting(
                        "the Debezium format is for the jsonl, http and kafka targets (a replica or bincode file holds values, not JSON)"
                            .into(),
                    ));
                }
                let name = source.file_stem().map_or("sqlite".into(), |s| s.to_string_lossy().into_owned());
                Some(crate::debezium::Debezium::new(&name, tombstones))
            }
        };
        if let Some(path) = self.path() {
            crate::lock::refuse_source_as_target(source, path)?;
        }
        if let Some(dir) = self.path().and_then(|p| p.parent()).filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(Error::MissingFolder(dir.into()));
        }
        Ok(match self {
            TargetSpec::Sqlite(p) => Box::new(SqliteTarget::open(p)?),
            TargetSpec::Jsonl(None) => Box::new(JsonlTarget::stdout().with_debezium(debezium)),
            TargetSpec::Jsonl(Some(p)) => Box::new(JsonlTarget::file(p)?.with_debezium(debezium)),
            TargetSpec::Bincode(p) => Box::new(BincodeTarget::open(p)?),
            #[cfg(feature = "http")]
            TargetSpec::Http(url) => Box::new(HttpTarget::new(url)?.with_debezium(debezium)),
            #[cfg(feature = "nats")]
            TargetSpec::Nats(url) => {
                let name = source.file_stem().map_or("sqlite".into(), |s| s.to_string_lossy().into_owned());
                Box::new(crate::nats::NatsTarget::connect(url, &name)?)
            }
            // Always Debezium's envelope: what Kafka's consumers read.
            #[cfg(feature = "kafka")]
            TargetSpec::Kafka(url) => {
                let name = source.file_stem().map_or("sqlite".into(), |s| s.to_string_lossy().into_owned());
                Box::new(crate::kafka::KafkaTarget::connect(url, &name)?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_targets_need_the_http_feature() {
        let parsed = "https://u:secret@h/hook".parse::<TargetSpec>();
        #[cfg(feature = "http")]
        assert_eq!(parsed.unwrap(), TargetSpec::Http("https://u:secret@h/hook".into()));
        #[cfg(not(feature = "http"))]
        assert_eq!(
            parsed.unwrap_err().to_string(),
            r#"bad target "https://u:***@h/hook": this build has no HTTP target (enable the "http" feature of sqlite-cdc)"#
        );
    }
}
