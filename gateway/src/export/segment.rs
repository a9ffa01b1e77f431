//! A segment: the data files written from one contiguous range of log entries, one file per
//! partition (UTC hour) its readings fall in, committed together (see the module doc of
//! [`super`]).

use super::config::ExportFormat;
use super::durable::{Written, rename, sync_dir};
use super::error::ExportError;
use super::exported::ExportedSet;
use super::json_part::JsonPart;
use super::manifest::FileEntry;
use super::parquet_part::ParquetPart;
use super::selection::partition_path;
use super::table::Table;
use crate::buffer::BatchRecord;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

/// One data file being written.
pub trait PartWriter: Send + std::fmt::Debug {
    /// Appends `rec.readings[range]` (all selected, all in this file's partition).
    fn push(&mut self, rec: &BatchRecord, range: Range<usize>) -> Result<(), ExportError>;
    /// About the size the file would have if finished now.
    fn size_estimate(&self) -> u64;
    /// Rows held in memory, not yet encoded into the file.
    fn buffered_rows(&self) -> usize;
    /// Encodes the rows held in memory.
    fn flush(&mut self) -> Result<(), ExportError>;
    /// Completes the file and fsyncs it.
    fn finish(self: Box<Self>) -> Result<Written, ExportError>;
}

/// A segment closes when one of its files reaches the target size, or when it has this many
/// partitions open (readings spread over many hours: many smaller files, bounded memory).
pub const MAX_OPEN_PARTS: usize = 16;
/// Rows held in memory across a segment's Parquet files before the largest is encoded.
pub const MAX_BUFFERED_ROWS: usize = 1 << 20;
/// A segment closes after this many deletable entries, so deletes come in bounded commits.
pub const MAX_DELETES: usize = 100_000;

/// A file of the segment.
#[derive(Debug)]
struct Part {
    writer: Box<dyn PartWriter>,
    tmp: PathBuf,
    rows: u64,
    first_id: u64,
    last_id: u64,
    min_time_ms: i64,
    max_time_ms: i64,
}

/// The files of one segment, and what committing it settles.
#[derive(Debug)]
pub struct Segment {
    run: u64,
    number: u64,
    format: ExportFormat,
    target_bytes: u64,
    bytes_per_row: f64,
    parts: BTreeMap<i64, Part>,
    /// Readings written to the segment's files.
    pub exported: ExportedSet,
    /// Log entries whose readings are all exported once the segment is committed.
    pub deletable: Vec<u64>,
    /// Rows written to the segment's files.
    pub rows: u64,
}

/// A committed-ready segment: its files, in staging under their final names.
#[derive(Debug)]
pub struct Staged {
    /// Manifest entries of the files.
    pub files: Vec<FileEntry>,
}

impl Segment {
    /// An empty segment of `run` (segments are numbered from 1 within a run).
    pub fn new(
        run: u64,
        number: u64,
        format: ExportFormat,
        target_bytes: u64,
        bytes_per_row: f64,
    ) -> Self {
        Self {
            run,
            number,
            format,
            target_bytes,
            bytes_per_row,
            parts: BTreeMap::new(),
            exported: ExportedSet::default(),
            deletable: Vec::new(),
            rows: 0,
        }
    }

    /// Sets the size estimate per row for files opened from now on.
    pub fn set_bytes_per_row(&mut self, bytes_per_row: f64) {
        self.bytes_per_row = bytes_per_row;
    }

    /// The segment number within its run.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// True when nothing was written or settled.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty() && self.deletable.is_empty()
    }

    /// Appends `rec.readings[range]` of log entry `id`, all in partition `hour`.
    pub fn push(
        &mut self,
        table: &Table,
        id: u64,
        rec: &BatchRecord,
        range: Range<usize>,
        hour: i64,
    ) -> Result<(), ExportError> {
        if range.is_empty() {
            return Ok(());
        }
        if !self.parts.contains_key(&hour) {
            let tmp = table.staging_path(&format!(
                ".tmp-{:06}-{:06}-{hour}.{}",
                self.run,
                self.number,
                self.format.extension()
            ));
            let writer: Box<dyn PartWriter> = match self.format {
                ExportFormat::Parquet => {
                    Box::new(ParquetPart::create(tmp.clone(), self.bytes_per_row)?)
                }
                ExportFormat::Json => Box::new(JsonPart::create(tmp.clone())?),
            };
            self.parts.insert(
                hour,
                Part {
                    writer,
                    tmp,
                    rows: 0,
                    first_id: id,
                    last_id: id,
                    min_time_ms: i64::MAX,
                    max_time_ms: i64::MIN,
                },
            );
        }
        let Some(part) = self.parts.get_mut(&hour) else {
            return Ok(());
        };
        for r in &rec.readings[range.clone()] {
            let t = rec.utc_ms(r);
            part.min_time_ms = part.min_time_ms.min(t);
            part.max_time_ms = part.max_time_ms.max(t);
        }
        part.writer.push(rec, range.clone())?;
        part.rows += range.len() as u64;
        part.last_id = id;
        self.rows += range.len() as u64;
        let from = rec.first_seq.saturating_add(range.start as u32);
        let to = rec.first_seq.saturating_add(range.end as u32 - 1);
        self.exported.insert(&rec.device, rec.boot, from, to);
        self.bound_memory()
    }

    /// Encodes the largest in-memory row group while too many rows wait.
    fn bound_memory(&mut self) -> Result<(), ExportError> {
        let buffered: usize = self.parts.values().map(|p| p.writer.buffered_rows()).sum();
        if buffered > MAX_BUFFERED_ROWS
            && let Some(p) = self
                .parts
                .values_mut()
                .max_by_key(|p| p.writer.buffered_rows())
        {
            p.writer.flush()?;
        }
        Ok(())
    }

    /// True when the segment should be committed now.
    pub fn full(&self) -> bool {
        self.parts.len() >= MAX_OPEN_PARTS
            || self.deletable.len() >= MAX_DELETES
            || self
                .parts
                .values()
                .any(|p| p.writer.size_estimate() >= self.target_bytes)
    }

    /// Finishes every file, moves each to its final name in staging and fsyncs staging
    /// (step 1 of the commit). Returns the manifest entries and the bytes per row seen.
    pub fn stage(&mut self, table: &Table) -> Result<(Staged, Option<f64>), ExportError> {
        let mut files = Vec::new();
        let (mut bytes, mut rows) = (0u64, 0u64);
        for (hour, part) in std::mem::take(&mut self.parts) {
            let written = part.writer.finish()?;
            let rel = format!(
                "{}/part-{:06}-{:012}-{:012}.{}",
                partition_path(hour),
                self.run,
                part.first_id,
                part.last_id,
                self.format.extension()
            );
            rename(&part.tmp, &table.staging_path(&staged_name(&rel)))?;
            bytes += written.bytes;
            rows += part.rows;
            files.push(FileEntry {
                path: rel,
                rows: part.rows,
                bytes: written.bytes,
                sha256: written.sha256,
                run: self.run,
                first_log_id: part.first_id,
                last_log_id: part.last_id,
                min_time_ms: part.min_time_ms,
                max_time_ms: part.max_time_ms,
            });
        }
        if !files.is_empty() {
            sync_dir(table.staging_dir())?;
        }
        let ratio = (rows > 0).then(|| bytes as f64 / rows as f64);
        Ok((Staged { files }, ratio))
    }
}

/// The name a file has in staging: its path with `/` replaced by `#` (unique in the table).
pub fn staged_name(rel: &str) -> String {
    rel.replace('/', "#")
}
