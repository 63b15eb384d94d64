//! Decoding log rows into [`Change`]s, in either format: the current one
//! (`_cdc_log`, [`cdc_schema::log`]) and format 1, whose rows an upgraded
//! log keeps in `_cdc_log_v1` until every consumer is past them.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, params};

use cdc_schema::legacy;
use cdc_schema::log::{CHUNK_WIDTH, MARKER_OP, read_sql, split_kind};
use cdc_schema::{Op, TableDesc};

use super::registry::registry;
use crate::error::{Error, Result};
use crate::event::{Change, Row};
use crate::value::Value;

/// A registered layout, ready for decoding.
#[derive(Debug)]
pub struct Layout {
    /// The table's name, shared by every change decoded with this layout.
    pub table: Arc<str>,
    /// The captured columns in image order, shared likewise.
    pub columns: Arc<[String]>,
    /// The description the triggers were generated from.
    pub desc: TableDesc,
    /// How each format lays this table's images out, worked out once
    /// (not per log row: the description answers by scanning columns).
    shapes: [Shape; 2],
}

impl Layout {
    fn new(desc: TableDesc) -> Layout {
        Layout {
            table: desc.name.as_ref().into(),
            columns: desc.captured().map(|c| c.name.to_string()).collect(),
            shapes: [Shape::new(CURRENT, &desc), Shape::new(LEGACY, &desc)],
            desc,
        }
    }

    fn shape(&self, format: Format) -> Shape {
        self.shapes[usize::from(format.legacy)]
    }
}

/// How one format lays out the images of one table.
#[derive(Clone, Copy, Debug)]
struct Shape {
    /// Images have a slot of their own for the rowid.
    rowid_slot: bool,
    /// Values per image.
    image_len: usize,
    /// The image position of the column that carries the rowid where it
    /// has no slot: the INTEGER PRIMARY KEY.
    key_rowid: Option<usize>,
    /// An UPDATE's after image starts a row of its own.
    split_update: bool,
}

impl Shape {
    fn new(format: Format, desc: &TableDesc) -> Shape {
        let rowid_slot = format.rowid_slot(desc);
        let key_rowid = if rowid_slot || desc.without_rowid { None } else { desc.key_positions().first().copied() };
        Shape { rowid_slot, image_len: format.image_len(desc), key_rowid, split_update: format.split_update(desc) }
    }
}

/// Changes read in one go, and the last log `seq` they cover (which can be
/// past the last change when rows were skipped).
#[derive(Debug, Default)]
pub struct Batch {
    /// Whole changes, in `seq` order.
    pub changes: Vec<Change>,
    /// Where the next read starts (its `after`).
    pub end_seq: i64,
}

/// Julian day (as format 1 wrote it with `julianday('now')`) to Unix
/// milliseconds.
pub fn julian_to_unix_ms(jd: f64) -> i64 {
    ((jd - 2_440_587.5) * 86_400_000.0).round() as i64
}

/// The current time, Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// How one format lays a change out in rows.
#[derive(Clone, Copy)]
struct Format {
    /// Values per row.
    width: usize,
    /// Format 1: every image of a rowid table starts with the rowid, and
    /// an UPDATE's two images run on in one sequence of values.
    legacy: bool,
}

const CURRENT: Format = Format { width: CHUNK_WIDTH, legacy: false };
const LEGACY: Format = Format { width: legacy::CHUNK_WIDTH, legacy: true };

impl Format {
    /// Whether images have a slot of their own for the rowid.
    fn rowid_slot(self, desc: &TableDesc) -> bool {
        if self.legacy { !desc.without_rowid } else { desc.log_rowid_slot() }
    }

    /// Values per image.
    fn image_len(self, desc: &TableDesc) -> usize {
        desc.captured_len() + usize::from(self.rowid_slot(desc))
    }

    /// Whether an UPDATE's after image starts a row of its own (so that a
    /// row gone by the time the trigger looked logs only the before image:
    /// a delete). In the current format, whenever both do not fit one row.
    fn split_update(self, desc: &TableDesc) -> bool {
        !self.legacy && 2 * self.image_len(desc) > self.width
    }
}

/// One log row, as either format stores it.
struct RawRow<'r> {
    seq: i64,
    tid: i64,
    op: i64,
    /// Format 1's write time.
    time_ms: Option<i64>,
    row: &'r rusqlite::Row<'r>,
    /// Column of the first value.
    first: usize,
    /// Values per row (the format's).
    width: usize,
}

/// A change being put together from its rows.
struct Pending {
    change: Change,
    layout: Arc<Layout>,
    shape: Shape,
    /// Values in so far.
    filled: usize,
}

impl Pending {
    fn total(&self) -> usize {
        self.shape.image_len * if self.change.op == Op::Update { 2 } else { 1 }
    }

    /// The change ends here (the next row starts another, or the read
    /// ends): whole, or an UPDATE of the current format that logged only
    /// its before image because its row was gone (a delete).
    fn finish(mut self) -> Result<Change> {
        if self.filled == self.total() {
            return Ok(self.change);
        }
        if self.change.op == Op::Update && self.filled == self.shape.image_len && self.shape.split_update {
            self.change.op = Op::Delete;
            self.change.after = None;
            return Ok(self.change);
        }
        Err(Error::CorruptLog { seq: self.change.seq, problem: "change ends early (missing continuation rows)".into() })
    }

    /// Takes this row's values (`row` continues the change, or starts it).
    fn take(&mut self, raw: &RawRow<'_>) -> Result<()> {
        let Shape { rowid_slot, image_len: len, key_rowid, split_update } = self.shape;
        // A split UPDATE's after image starts a row of its own.
        let segment_end = if split_update && self.filled < len { len } else { self.total() };
        let here = (segment_end - self.filled).min(raw.width);
        for i in 0..here {
            let at = self.filled;
            let value = Value::from_ref(raw.row.get_ref(raw.first + i)?).map_err(|_| Error::InvalidUtf8 {
                table: self.change.table.to_string(),
                seq: self.change.seq,
                column: column_name(&self.layout, rowid_slot, at % len),
            })?;
            // The first image is the before image except for INSERT.
            let before = at < len && self.change.op != Op::Insert;
            let image = if before { &mut self.change.before } else { &mut self.change.after };
            let image = image.as_mut().expect("allocated for this op");
            let p = at % len;
            let rowid = |v: &Value| match v {
                Value::Integer(rowid) => Ok(*rowid),
                other => {
                    Err(Error::CorruptLog { seq: self.change.seq, problem: format!("rowid is {}", other.type_name()) })
                }
            };
            if rowid_slot && p == 0 {
                image.rowid = Some(rowid(&value)?);
            } else {
                if key_rowid == Some(p) {
                    image.rowid = Some(rowid(&value)?);
                }
                image.values.push(value);
            }
            self.filled += 1;
        }
        Ok(())
    }
}

/// Decodes log rows into [`Change`]s, caching registered layouts.
///
/// The current format records no write time (a time function in a
/// trigger costs every application statement a statement journal): a
/// change's [`Change::time_ms`] is when this reader first saw the log
/// reach it ([`LogReader::saw`]), within milliseconds of its commit while
/// a replicator follows the file, or when the read happened. Rows of
/// format 1 carry their write time.
#[derive(Debug, Default)]
pub struct LogReader {
    layouts: HashMap<i64, Arc<Layout>>,
    /// `(high-water seq, Unix ms)` pairs: when the log was first seen to
    /// reach each mark, oldest first.
    seen: VecDeque<(i64, i64)>,
}

/// Most marks kept by [`LogReader::saw`]; past it, every other one goes
/// (times get coarser, never later).
const SEEN_MARKS: usize = 4096;

impl LogReader {
    /// A reader with no layout cached yet: the registry is read on first
    /// use and again whenever a log row names a capture id not seen before.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the log was seen to reach `high_water` now (a commit
    /// point): changes up to it that were not seen before get this time.
    pub fn saw(&mut self, high_water: i64, now_ms: i64) {
        match self.seen.back() {
            Some((seq, _)) if *seq == high_water => return,
            // Lower than before: another log (a restored backup).
            Some((seq, _)) if *seq > high_water => self.seen.clear(),
            _ => {}
        }
        if self.seen.len() >= SEEN_MARKS {
            let kept: VecDeque<(i64, i64)> = self.seen.iter().copied().skip(1).step_by(2).collect();
            self.seen = kept;
        }
        self.seen.push_back((high_water, now_ms));
    }

    /// When the log was first seen to reach `seq` (now, if never).
    pub fn time_of(&self, seq: i64) -> i64 {
        self.seen.iter().find(|(mark, _)| *mark >= seq).map_or_else(now_ms, |(_, ms)| *ms)
    }

    /// Forgets the marks below `seq` (delivered).
    fn forget_before(&mut self, seq: i64) {
        while self.seen.len() > 1 && self.seen.front().is_some_and(|(mark, _)| *mark < seq) {
            self.seen.pop_front();
        }
    }

    fn layout(&mut self, conn: &Connection, tid: i64, seq: i64) -> Result<Arc<Layout>> {
        if let Some(l) = self.layouts.get(&tid) {
            return Ok(l.clone());
        }
        for r in registry(conn)? {
            self.layouts.entry(r.tid).or_insert_with(|| Arc::new(Layout::new(r.desc)));
        }
        self.layouts.get(&tid).cloned().ok_or_else(|| Error::CorruptLog {
            seq,
            problem: format!("unknown capture id {tid} (was the registry edited?)"),
        })
    }

    /// Reads up to `max_changes` whole changes after `after`, in `seq`
    /// order, never more than `up_to` (inclusive), which must be a commit
    /// point. Rows are streamed from SQLite, so memory is bounded by
    /// `max_changes`, not by the backlog.
    pub fn read(&mut self, conn: &Connection, after: i64, up_to: i64, max_changes: usize) -> Result<Batch> {
        self.saw(up_to, now_ms());
        self.forget_before(after);
        let mut batch = Batch { changes: Vec::new(), end_seq: after };
        // The segments in order; a change never spans two (sealing is a
        // transaction of its own, between the application's).
        for segment in super::segments(conn)? {
            let end = if segment.current {
                up_to
            } else {
                match segment.last(conn)? {
                    Some(last) if last > batch.end_seq => up_to.min(last),
                    _ => continue,
                }
            };
            let (sql, format) =
                if segment.legacy { (legacy::read_sql(), LEGACY) } else { (read_sql(&segment.table), CURRENT) };
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query(params![batch.end_seq, end])?;
            let full = self.decode(conn, rows, format, max_changes, &mut batch)?;
            if full || end == up_to {
                return Ok(batch);
            }
            // Read to the segment's end: the next one goes on after it.
            batch.end_seq = end;
        }
        Ok(batch)
    }

    /// Decodes `rows` of `format` into `batch` until they end or the batch
    /// holds `max_changes` (then returns `true`).
    fn decode(
        &mut self,
        conn: &Connection,
        mut rows: rusqlite::Rows<'_>,
        format: Format,
        max_changes: usize,
        batch: &mut Batch,
    ) -> Result<bool> {
        let mut pending: Option<Pending> = None;
        while let Some(r) = rows.next()? {
            let raw = if format.legacy {
                let ts: Option<f64> = r.get(3)?;
                // Continuation rows have no capture id.
                let tid = r.get::<_, Option<i64>>(1)?.unwrap_or(0);
                RawRow {
                    seq: r.get(0)?,
                    tid,
                    op: r.get(2)?,
                    time_ms: ts.map(julian_to_unix_ms),
                    row: r,
                    first: 4,
                    width: format.width,
                }
            } else {
                let (tid, op) = split_kind(r.get::<_, Option<i64>>(1)?.unwrap_or(0));
                RawRow { seq: r.get(0)?, tid, op, time_ms: None, row: r, first: 2, width: format.width }
            };
            if raw.op == 0 {
                // Without a change under way: a continuation whose head was
                // pruned or read before.
                if let Some(p) = pending.as_mut() {
                    p.take(&raw)?;
                }
                batch.end_seq = raw.seq;
                continue;
            }
            if let Some(p) = pending.take() {
                batch.changes.push(p.finish()?);
            }
            if raw.op == MARKER_OP {
                // Capture attached here: nothing to deliver.
                batch.end_seq = raw.seq;
                continue;
            }
            if batch.changes.len() >= max_changes {
                return Ok(true);
            }
            let op = Op::from_code(raw.op).ok_or_else(|| Error::CorruptLog {
                seq: raw.seq,
                problem: format!("unknown operation code {}", raw.op),
            })?;
            let layout = self.layout(conn, raw.tid, raw.seq)?;
            let image = || Some(Row { rowid: None, values: Vec::with_capacity(layout.columns.len()) });
            let change = Change {
                seq: raw.seq,
                table: layout.table.clone(),
                columns: layout.columns.clone(),
                op,
                time_ms: raw.time_ms.unwrap_or_else(|| self.time_of(raw.seq)),
                before: if op == Op::Insert { None } else { image() },
                after: if op == Op::Delete { None } else { image() },
            };
            // (A DELETE may be an UPDATE whose row was gone: its one row
            // holds the before image, then NULLs where the after image
            // would be, which `take` leaves.)
            let shape = layout.shape(format);
            let mut p = Pending { change, layout, shape, filled: 0 };
            p.take(&raw)?;
            pending = Some(p);
            batch.end_seq = raw.seq;
        }
        if let Some(p) = pending.take() {
            batch.changes.push(p.finish()?);
        }
        Ok(false)
    }
}

/// The column that value position `p` of an image belongs to.
fn column_name(layout: &Layout, rowid_slot: bool, p: usize) -> String {
    match (rowid_slot, p) {
        (true, 0) => "rowid".into(),
        (true, p) => layout.columns[p - 1].clone(),
        (false, p) => layout.columns[p].clone(),
    }
}

/// A checksum of one log row's values, read from column `first` on.
pub(super) fn checksum(row: &rusqlite::Row<'_>, first: usize, count: usize) -> Result<u64> {
    let mut parts: Vec<Vec<u8>> = Vec::with_capacity(count);
    for i in first..first + count {
        let mut part = Vec::new();
        match row.get_ref(i)? {
            ValueRef::Null => part.push(0),
            ValueRef::Integer(v) => {
                part.push(1);
                part.extend_from_slice(&v.to_le_bytes());
            }
            ValueRef::Real(v) => {
                part.push(2);
                part.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            ValueRef::Text(v) => {
                part.push(3);
                part.extend_from_slice(v);
            }
            ValueRef::Blob(v) => {
                part.push(4);
                part.extend_from_slice(v);
            }
        }
        parts.push(part);
    }
    Ok(cdc_schema::fnv1a64(parts.iter().map(Vec::as_slice)))
}
