//! The retention backfill (`buffer.retention_action = "backfill"`): runs on the buffer
//! writer's `buffer-backfill` thread while the gateway runs. Every
//! `export.backfill_interval_secs` it exports the head of the log that arrived more than
//! `buffer.retention_secs` ago to `export.backfill_dir` (one run per sweep, same layout,
//! manifest and commit protocol as `gateway export`) and deletes those entries through the
//! writer only after their files and the manifest are durable. A failed sweep loses
//! nothing: the readings stay buffered, and the next sweep skips what is already exported.

use super::config::{ExportFormat, ValidExportConfig};
use super::error::ExportError;
use super::metrics::ExportMetrics;
use super::progress::Progress;
use super::run::{ExportRequest, Origin, export};
use super::selection::Selection;
use crate::buffer::layout::{LOG, RecordHeader};
use crate::buffer::writer::RetentionBackfill;
use crate::buffer::{Buffer, ReadError, WriterHandle};
use redb::{ReadableDatabase, ReadableTable};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Exports readings past the retention age.
#[derive(Debug)]
pub struct BackfillExporter {
    dir: PathBuf,
    format: ExportFormat,
    target_file_bytes: u64,
    interval: Duration,
    metrics: ExportMetrics,
}

impl BackfillExporter {
    /// An exporter into `dir` with the `[export]` settings.
    pub fn new(dir: PathBuf, config: &ValidExportConfig) -> Self {
        Self {
            dir,
            format: config.format,
            target_file_bytes: config.target_file_bytes,
            interval: config.backfill_interval,
            metrics: config.metrics.clone(),
        }
    }

    /// Its counters (register them to expose them).
    pub fn metrics(&self) -> &ExportMetrics {
        &self.metrics
    }

    /// One sweep: exports and deletes the entries that arrived before `now - retention`.
    fn sweep(
        &self,
        buffer: &Buffer,
        retention: Duration,
        writer: &WriterHandle,
        stop: &AtomicBool,
    ) -> Result<(), ExportError> {
        let cutoff = now_ms().saturating_sub(retention.as_millis() as i64);
        let Some(through) = expired_through(buffer, cutoff)? else {
            return Ok(());
        };
        let request = ExportRequest {
            dir: self.dir.clone(),
            format: self.format,
            selection: Selection::default(),
            target_file_bytes: self.target_file_bytes,
            origin: Origin::Retention,
            through_log_id: Some(through),
        };
        let s = export(
            buffer,
            Some(writer),
            &request,
            &mut Progress::silent(),
            stop,
        )?;
        self.metrics.observe(&s);
        tracing::info!(
            dir = %self.dir.display(),
            readings = s.readings,
            files = s.files,
            deleted = s.deleted_readings,
            "Backfilled readings older than the retention limit."
        );
        Ok(())
    }
}

impl RetentionBackfill for BackfillExporter {
    fn run(&self, buffer: Buffer, retention: Duration, writer: WriterHandle, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            match self.sweep(&buffer, retention, &writer, stop) {
                Ok(()) => {}
                Err(_) if stop.load(Ordering::Relaxed) => return,
                Err(e) => {
                    self.metrics.runs_failed.inc();
                    tracing::warn!(
                        error = %e,
                        dir = %self.dir.display(),
                        "Backfill export failed; the readings stay buffered and are retried."
                    );
                }
            }
            let until = Instant::now() + self.interval;
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The last id of the log's head that arrived before `cutoff` (the same prefix the `drop`
/// action would delete), or `None` if the oldest entry is newer.
pub fn expired_through(buffer: &Buffer, cutoff: i64) -> Result<Option<u64>, ReadError> {
    let db = buffer.db()?;
    let txn = db.begin_read()?;
    let log = txn.open_table(LOG)?;
    let mut through = None;
    for entry in log.iter()? {
        let (k, v) = entry?;
        if RecordHeader::decode(v.value())?.received_ms >= cutoff {
            break;
        }
        through = Some(k.value());
    }
    Ok(through)
}
