//! `bincode:PATH`: each event as a frame, a little-endian `u32` length
//! then the event encoded with bincode 2 (serde, standard configuration).
//! [`BincodeReader`] reads them back. Fsynced before a commit is
//! acknowledged; at-least-once like `jsonl`.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::event::Event;
use crate::target::Target;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Appends every event to a file as a length-prefixed bincode frame.
pub struct BincodeTarget {
    path: PathBuf,
    out: BufWriter<File>,
}

impl BincodeTarget {
    /// Appends frames to `path` (created if missing; its folder must exist).
    pub fn open(path: &Path) -> Result<BincodeTarget> {
        let file = super::open_append(path)?;
        Ok(BincodeTarget { path: path.into(), out: BufWriter::new(file) })
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::Io { context: self.path.display().to_string(), source: e }
    }
}

impl Target for BincodeTarget {
    fn apply(&mut self, events: &[Event]) -> Result<()> {
        for event in events {
            let frame = bincode::serde::encode_to_vec(event, config()).map_err(|e| Error::Encode(e.to_string()))?;
            let len = u32::try_from(frame.len())
                .map_err(|_| Error::Encode(format!("an event of {} bytes is too large for a frame", frame.len())))?;
            self.out.write_all(&len.to_le_bytes()).and_then(|_| self.out.write_all(&frame)).map_err(|e| self.io(e))?;
        }
        Ok(())
    }

    fn commit(&mut self, _state: &crate::state::DeliveryState) -> Result<()> {
        self.out.flush().map_err(|e| self.io(e))?;
        self.out.get_ref().sync_data().map_err(|e| self.io(e))
    }
}

/// Reads the frames a [`BincodeTarget`] wrote, in order. A frame cut short
/// (a crash while writing) is an error naming its offset.
pub struct BincodeReader<R> {
    input: R,
    offset: u64,
}

impl<R: Read> BincodeReader<R> {
    /// Reads frames from the start of `input` (a file, standard input).
    pub fn new(input: R) -> Self {
        BincodeReader { input, offset: 0 }
    }

    fn next_frame(&mut self) -> Result<Option<Event>> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.input.read(&mut len[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(self.truncated()),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::Io { context: "reading bincode frames".into(), source: e });
                }
            }
        }
        let mut frame = vec![0u8; u32::from_le_bytes(len) as usize];
        self.input.read_exact(&mut frame).map_err(|_| self.truncated())?;
        let (event, _) = bincode::serde::decode_from_slice(&frame, config()).map_err(|e| Error::Decode {
            what: format!("bincode frame at byte {}", self.offset),
            message: e.to_string(),
        })?;
        self.offset += 4 + frame.len() as u64;
        Ok(Some(event))
    }

    fn truncated(&self) -> Error {
        Error::Decode { what: format!("bincode frame at byte {}", self.offset), message: "truncated".into() }
    }
}

impl<R: Read> Iterator for BincodeReader<R> {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}
