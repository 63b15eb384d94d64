//! A consumer's record beside the source, not in it: where it is, its
//! retention pin, and the delivery state of a target that keeps none.
//!
//! Why not in the source: every write to the source is a commit, and a
//! commit by another connection between an application's read and its
//! write refuses that application transaction at once, whatever its busy
//! timeout (`SQLITE_BUSY_SNAPSHOT`, what ORMs' deferred transactions
//! meet). So a running replicator writes its record here, as often as it
//! likes, and touches the source only to prune ([`super::maintain`]).
//!
//! The file sits beside the consumer's lock file
//! (`app.db-cdc-consumer-<hash>.json`), is replaced whole (written to a
//! temporary file, flushed, renamed, the folder flushed), and names the
//! log it belongs to: a record of another log (a restored file, a file
//! moved into place) is ignored.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::lock::resolved;
use crate::state::DeliveryState;

/// What a consumer last made durable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsumerRecord {
    /// The consumer's name.
    pub consumer: String,
    /// The log it follows ([`crate::source::log_id`]).
    pub log_id: String,
    /// Its retention pin: no log row after it may be pruned.
    pub pin: i64,
    /// The position its target holds.
    pub position: i64,
    /// The delivery state, for a target that keeps none itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<DeliveryState>,
    /// When it was written (Unix milliseconds).
    pub written_ms: i64,
    /// It pins the log only while its replicator runs (holds the
    /// consumer's lock): a peek (`jsonl:-` without `--consumer`), or a
    /// consumer that has delivered nothing yet. A trial run that died or
    /// never reached its target does not hold the log back for ever.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provisional: bool,
    /// A digest of the schema its target was last told (schema events):
    /// a replicator started after the schema changed tells it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
}

fn hash(consumer: &str) -> String {
    format!("{:016x}", cdc_schema::fnv1a64([consumer.as_bytes()]))
}

/// The record file of `consumer` of the source at `db`.
pub fn record_path(db: &Path, consumer: &str) -> PathBuf {
    let mut p = resolved(db).into_os_string();
    p.push(format!("-cdc-consumer-{}.json", hash(consumer)));
    PathBuf::from(p)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { context: format!("consumer record {}", path.display()), source }
}

impl ConsumerRecord {
    /// Writes the record whole: after this returns, a crash leaves either
    /// it or the one before, never a mix.
    pub fn save(&self, db: &Path) -> Result<()> {
        let path = record_path(db, &self.consumer);
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let text = serde_json::to_vec(self)?;
        let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(&text).and_then(|()| file.sync_data()).map_err(io(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        if let Some(dir) = path.parent()
            && let Ok(dir) = std::fs::File::open(dir)
        {
            // The rename itself reaches the disk (a failure here leaves
            // the previous record, which is only more cautious).
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// The record of `consumer` of the source at `db`, if it has one.
    pub fn load(db: &Path, consumer: &str) -> Result<Option<ConsumerRecord>> {
        let path = record_path(db, consumer);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(serde_json::from_slice::<ConsumerRecord>(&bytes).ok().filter(|r| r.consumer == consumer)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Every record beside the source at `db` (unreadable ones skipped,
    /// and provisional ones whose replicator is gone).
    pub fn all(db: &Path) -> Result<Vec<ConsumerRecord>> {
        Self::scan(db, false)
    }

    fn scan(db: &Path, sweep: bool) -> Result<Vec<ConsumerRecord>> {
        let db = resolved(db);
        let (Some(dir), Some(name)) = (db.parent(), db.file_name()) else { return Ok(Vec::new()) };
        let prefix = format!("{}-cdc-consumer-", name.to_string_lossy());
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(dir)(e)),
        };
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            if !(file.starts_with(&prefix) && file.ends_with(".json")) {
                continue;
            }
            if let Ok(bytes) = std::fs::read(entry.path())
                && let Ok(record) = serde_json::from_slice::<ConsumerRecord>(&bytes)
                && file == format!("{prefix}{}.json", hash(&record.consumer))
            {
                if record.provisional && !crate::lock::held(&crate::lock::consumer_lock_path(&db, &record.consumer)) {
                    if sweep {
                        // Its lock file stays: removing one another process
                        // may be taking would let two owners in.
                        let _ = std::fs::remove_file(entry.path());
                    }
                    continue;
                }
                records.push(record);
            }
        }
        records.sort_by(|a, b| a.consumer.cmp(&b.consumer));
        Ok(records)
    }

    /// Removes the provisional records whose replicator is gone (killed
    /// before it delivered anything): they pin nothing, and would only
    /// clutter the folder.
    pub fn sweep(db: &Path) -> Result<()> {
        Self::scan(db, true).map(drop)
    }

    /// Removes the record of `consumer` (none is no error).
    pub fn remove(db: &Path, consumer: &str) -> Result<()> {
        let path = record_path(db, consumer);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_are_found_beside_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        std::fs::write(&db, b"").unwrap();
        let r = ConsumerRecord {
            consumer: "sqlite:/r.db".into(),
            log_id: "L".into(),
            pin: 4,
            position: 9,
            state: None,
            written_ms: 1,
            provisional: false,
            schema: None,
        };
        r.save(&db).unwrap();
        assert_eq!(ConsumerRecord::load(&db, "sqlite:/r.db").unwrap(), Some(r.clone()));
        assert_eq!(ConsumerRecord::load(&db, "other").unwrap(), None);
        // Another source's record in the same folder is not this one's.
        let other = ConsumerRecord { consumer: "x".into(), ..r.clone() };
        other.save(&dir.path().join("app2.db")).unwrap();
        assert_eq!(ConsumerRecord::all(&db).unwrap(), vec![r]);
        ConsumerRecord::remove(&db, "sqlite:/r.db").unwrap();
        assert!(ConsumerRecord::all(&db).unwrap().is_empty());
        ConsumerRecord::remove(&db, "sqlite:/r.db").unwrap();
    }
}
