//! `jsonl:PATH` and `jsonl:-`: one JSON object per event per line, in the
//! form documented in [`crate::json`]. A file is flushed and fsynced before
//! a commit is acknowledged. At-least-once: after a crash, events after
//! the last acknowledged position are written again.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::debezium::Debezium;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::json;
use crate::target::Target;

/// Writes every event as one line of JSON to a file or standard output.
pub struct JsonlTarget {
    out: BufWriter<Box<dyn Write + Send>>,
    /// Debezium envelopes instead of this project's form.
    debezium: Option<Debezium>,
    /// Where the lines go, as errors name it: the path, or `stdout`.
    name: String,
    /// The file, for fsync; `None` for stdout, and for a path that is not
    /// a regular file (`/dev/null`, a FIFO: nothing to make durable, and
    /// fsync refuses them).
    file: Option<File>,
}

impl JsonlTarget {
    /// Appends to `path` (created if missing; its folder must exist).
    pub fn file(path: &Path) -> Result<JsonlTarget> {
        let file = super::open_append(path)?;
        let io = |e| Error::Io { context: path.display().to_string(), source: e };
        let regular = file.metadata().map_err(io)?.is_file();
        let sync = if regular { Some(file.try_clone().map_err(io)?) } else { None };
        let name = path.display().to_string();
        Ok(JsonlTarget { out: BufWriter::new(Box::new(file)), debezium: None, name, file: sync })
    }

    /// Writes to standard output.
    pub fn stdout() -> JsonlTarget {
        JsonlTarget {
            out: BufWriter::new(Box::new(std::io::stdout())),
            debezium: None,
            name: "stdout".into(),
            file: None,
        }
    }

    /// With `Some`, writes Debezium envelopes (see [`crate::debezium`])
    /// instead, a tombstone as a `null` line.
    pub fn with_debezium(mut self, debezium: Option<Debezium>) -> JsonlTarget {
        self.debezium = debezium;
        self
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::Io { context: self.name.clone(), source: e }
    }
}

impl Target for JsonlTarget {
    fn apply(&mut self, events: &[Event]) -> Result<()> {
        let lines: Vec<String> = match &mut self.debezium {
            Some(d) => d.envelopes(events).iter().map(serde_json::to_string).collect::<serde_json::Result<_>>()?,
            None => events.iter().map(json::to_line).collect::<Result<_>>()?,
        };
        for line in lines {
            self.out.write_all(line.as_bytes()).and_then(|_| self.out.write_all(b"\n")).map_err(|e| self.io(e))?;
        }
        Ok(())
    }

    fn rollback(&mut self) -> Result<()> {
        if let Some(d) = &mut self.debezium {
            d.reset();
        }
        Ok(())
    }

    fn commit(&mut self, _state: &crate::state::DeliveryState) -> Result<()> {
        self.out.flush().map_err(|e| self.io(e))?;
        if let Some(file) = &self.file {
            file.sync_data().map_err(|e| self.io(e))?;
        }
        Ok(())
    }
}
