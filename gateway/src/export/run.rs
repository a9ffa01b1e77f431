//! One export run: scan the log, write segments, commit them, delete what is exported.

use super::config::ExportFormat;
use super::error::ExportError;
use super::exported::Coverage;
use super::manifest::RunEntry;
use super::progress::Progress;
use super::segment::Segment;
use super::selection::{Selection, hour_of};
use super::source::LogSource;
use super::table::{Recovery, Table};
use crate::buffer::{BatchRecord, WriterHandle};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Test seam: `GATEWAY_TEST_EXPORT_CRASH=<point>:<segment>` aborts the process (as a power
/// cut would stop it) in segment `<segment>` of a run at `<point>`: `staged` (files fsynced
/// in staging, manifest not replaced), `committed` (manifest replaced, files still in
/// staging) or `moved` (files in place, entries not yet deleted).
pub const CRASH_ENV: &str = "GATEWAY_TEST_EXPORT_CRASH";

/// Log entries read per buffer read transaction.
const READ_CHUNK: usize = 2048;

/// Deletes exported log entries from the buffer (after their files are durable).
pub trait Deleter {
    /// Deletes the entries, returns after the commit with the readings deleted.
    fn delete(&self, ids: Vec<u64>) -> Result<u64, String>;
}

impl Deleter for WriterHandle {
    fn delete(&self, ids: Vec<u64>) -> Result<u64, String> {
        WriterHandle::delete(self, ids)
    }
}

/// Who started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `gateway export`.
    Cli,
    /// The retention sweep (`retention_action = "backfill"`).
    Retention,
}

impl Origin {
    fn name(self) -> &'static str {
        match self {
            Self::Cli => "cli",
            Self::Retention => "retention",
        }
    }
}

/// What to export where.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// The table directory.
    pub dir: PathBuf,
    /// File format (must match the directory's).
    pub format: ExportFormat,
    /// Which readings.
    pub selection: Selection,
    /// Target file size.
    pub target_file_bytes: u64,
    /// Who asked.
    pub origin: Origin,
    /// Last log id to consider; `None`: the last entry when the run starts.
    pub through_log_id: Option<u64>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportSummary {
    /// Run number in the directory's manifest (0 if the run recorded nothing).
    pub run: u64,
    /// Readings scanned.
    pub scanned: u64,
    /// Readings written.
    pub readings: u64,
    /// Selected readings skipped because the directory already held them.
    pub skipped: u64,
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Log entries deleted from the buffer.
    pub deleted_entries: u64,
    /// Readings deleted from the buffer.
    pub deleted_readings: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// What opening the directory recovered.
    pub recovered: Recovery,
}

impl ExportSummary {
    /// Readings scanned per second.
    pub fn rate(&self) -> f64 {
        self.scanned as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn crash_point(point: &str, segment: u64) {
    let Ok(spec) = std::env::var(CRASH_ENV) else {
        return;
    };
    if spec == format!("{point}:{segment}") {
        eprintln!("{CRASH_ENV}: aborting at {point} of segment {segment}");
        std::process::abort();
    }
}

/// Exports `req` from `buffer`. With a `deleter` (`--mark-delivered`, the retention sweep),
/// entries whose readings are all in the directory are deleted after each segment commit.
/// Checks `stop` between entries: then commits what it has and returns
/// [`ExportError::Stopped`].
pub fn export(
    buffer: &dyn LogSource,
    deleter: Option<&dyn Deleter>,
    req: &ExportRequest,
    progress: &mut Progress,
    stop: &AtomicBool,
) -> Result<ExportSummary, ExportError> {
    let started = Instant::now();
    let (mut table, recovered) = Table::open(&req.dir, req.format)?;
    if recovered.renamed + recovered.removed > 0 {
        tracing::info!(
            dir = %req.dir.display(),
            committed_files_moved = recovered.renamed,
            uncommitted_files_removed = recovered.removed,
            "Recovered an interrupted export."
        );
    }
    let through = match req.through_log_id {
        Some(t) => t,
        None => buffer.last_log_id()?.unwrap_or(0),
    };
    let mut run = RunEntry {
        run: table.manifest().next_run(),
        origin: req.origin.name().to_owned(),
        buffer: buffer.label(),
        selection: req.selection.clone(),
        through_log_id: through,
        mark_delivered: deleter.is_some(),
        started_ms: now_ms(),
        finished_ms: None,
        readings: 0,
        files: 0,
        skipped_already_exported: 0,
    };
    let mut s = ExportSummary {
        run: run.run,
        recovered,
        ..ExportSummary::default()
    };
    progress.start(buffer.buffered_readings()?);
    let mut runner = Runner {
        table: &mut table,
        deleter,
        req,
        run: &mut run,
        summary: &mut s,
        bytes_per_row: 6.0,
    };
    let mut segment = runner.new_segment(1);
    let mut after = None;
    let mut stopped = false;
    'scan: loop {
        let chunk = buffer.read_log(after, READ_CHUNK)?;
        if chunk.is_empty() {
            break;
        }
        let mut scanned = 0;
        for (id, rec) in chunk {
            if id > through {
                break 'scan;
            }
            if stop.load(Ordering::Relaxed) {
                stopped = true;
                break 'scan;
            }
            after = Some(id);
            scanned += rec.readings.len() as u64;
            runner.entry(&mut segment, id, &rec)?;
            if segment.full() {
                let next = runner.new_segment(segment.number() + 1);
                runner.commit(std::mem::replace(&mut segment, next))?;
                segment.set_bytes_per_row(runner.bytes_per_row);
            }
        }
        runner.summary.scanned += scanned;
        progress.advance(scanned);
    }
    runner.commit(segment)?;
    progress.finish();
    // Record the finished run if it wrote something (or the directory has no manifest yet,
    // so that an empty export still leaves a valid, empty table).
    let record = run.files > 0 || !super::manifest::Manifest::path(&req.dir).exists();
    if !stopped {
        run.finished_ms = Some(now_ms());
    }
    if record {
        table.commit(Vec::new(), &Default::default(), &run, || {})?;
    } else {
        s.run = 0;
    }
    s.elapsed = started.elapsed();
    if stopped {
        return Err(ExportError::Stopped);
    }
    Ok(s)
}

/// The state of a run while it scans.
struct Runner<'a> {
    table: &'a mut Table,
    deleter: Option<&'a dyn Deleter>,
    req: &'a ExportRequest,
    run: &'a mut RunEntry,
    summary: &'a mut ExportSummary,
    /// Bytes per row of the files written so far (size estimate of new files).
    bytes_per_row: f64,
}

impl Runner<'_> {
    fn new_segment(&self, number: u64) -> Segment {
        Segment::new(
            self.run.run,
            number,
            self.req.format,
            self.req.target_file_bytes,
            self.bytes_per_row,
        )
    }

    /// Routes the selected readings of one entry into the segment, skipping those the
    /// directory already holds.
    fn entry(
        &mut self,
        segment: &mut Segment,
        id: u64,
        rec: &BatchRecord,
    ) -> Result<(), ExportError> {
        let sel = &self.req.selection;
        if rec.readings.is_empty() || !sel.device(&rec.device) {
            return Ok(());
        }
        let n = rec.readings.len();
        let last_seq = rec.first_seq.saturating_add(n as u32 - 1);
        let held = self.table.exported().get(&rec.device, rec.boot);
        let coverage = held.map_or(Coverage::None, |r| r.coverage(rec.first_seq, last_seq));
        // Every reading of the entry selected (written now or already held): deletable.
        let mut all_taken = true;
        let mut skipped = 0;
        // The run of consecutive readings going to one partition: (start, hour).
        let mut pending: Option<(usize, i64)> = None;
        for (i, r) in rec.readings.iter().enumerate() {
            let utc = rec.utc_ms(r);
            let take = sel.time(utc);
            let already = take
                && match coverage {
                    Coverage::None => false,
                    Coverage::All => true,
                    Coverage::Some => held.is_some_and(|h| h.contains(rec.first_seq + i as u32)),
                };
            all_taken &= take;
            skipped += u64::from(already);
            let hour = (take && !already).then(|| hour_of(utc));
            match (pending, hour) {
                (Some((_, h)), Some(hour)) if h == hour => {}
                (p, hour) => {
                    if let Some((start, h)) = p {
                        segment.push(self.table, id, rec, start..i, h)?;
                    }
                    pending = hour.map(|h| (i, h));
                }
            }
        }
        if let Some((start, h)) = pending {
            segment.push(self.table, id, rec, start..n, h)?;
        }
        self.summary.skipped += skipped;
        self.run.skipped_already_exported += skipped;
        if all_taken && self.deleter.is_some() {
            segment.deletable.push(id);
        }
        Ok(())
    }

    /// Commits a segment: stage, manifest, move, then delete (protocol in the module doc).
    fn commit(&mut self, mut segment: Segment) -> Result<(), ExportError> {
        if segment.is_empty() {
            return Ok(());
        }
        let number = segment.number();
        let (staged, ratio) = segment.stage(self.table)?;
        if let Some(r) = ratio {
            self.bytes_per_row = r;
        }
        crash_point("staged", number);
        if !staged.files.is_empty() {
            self.run.files += staged.files.len() as u64;
            self.run.readings += segment.rows;
            self.summary.files += staged.files.len() as u64;
            self.summary.readings += segment.rows;
            self.summary.bytes += staged.files.iter().map(|f| f.bytes).sum::<u64>();
            self.table
                .commit(staged.files, &segment.exported, self.run, || {
                    crash_point("committed", number)
                })?;
        }
        crash_point("moved", number);
        if let Some(deleter) = self.deleter
            && !segment.deletable.is_empty()
        {
            let ids = std::mem::take(&mut segment.deletable);
            let entries = ids.len() as u64;
            let readings = deleter.delete(ids).map_err(ExportError::Delete)?;
            self.summary.deleted_entries += entries;
            self.summary.deleted_readings += readings;
        }
        Ok(())
    }
}
