//! `gateway export`. On a stopped gateway's data directory it opens the buffer itself and,
//! with `--mark-delivered`, runs its own buffer writer for the deletes. When a running gateway
//! holds the buffer, it reads and deletes through that gateway's control socket
//! ([`super::live`]) instead.

use super::config::ExportFormat;
use super::error::ExportError;
use super::live::LiveGateway;
use super::progress::Progress;
use super::run::{Deleter, ExportRequest, ExportSummary, Origin, export};
use super::selection::Selection;
use crate::buffer::{self, Buffer, BufferMetrics, OpenError, ValidBufferConfig};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// An export from the command line.
#[derive(Debug, Clone)]
pub struct CliExport {
    /// Buffer settings (the file, and the writer's settings for `--mark-delivered`).
    pub buffer: ValidBufferConfig,
    /// Target directory.
    pub dir: PathBuf,
    /// File format.
    pub format: ExportFormat,
    /// Which readings.
    pub selection: Selection,
    /// Delete what was exported from the buffer.
    pub mark_delivered: bool,
    /// Target file size.
    pub target_file_bytes: u64,
}

/// Why an offline export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// There is no buffer file.
    #[error("no buffer at {0} (set buffer.data_dir in the config, or pass --data-dir)")]
    NoBuffer(PathBuf),
    /// A running gateway holds the buffer and does not answer on its control socket.
    #[error(
        "{0} is open in a running gateway that does not answer on its control socket {1}: stop the gateway and export again, or let the gateway export old readings itself (buffer.retention_action = \"backfill\")"
    )]
    InUse(PathBuf, PathBuf),
    /// The buffer could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The buffer writer could not be started.
    #[error("cannot start the buffer writer: {0}")]
    Writer(std::io::Error),
    /// The export failed.
    #[error(transparent)]
    Export(#[from] ExportError),
}

/// Runs the export; `stop` ends it early (Ctrl-C), keeping what was committed.
pub fn run_cli(job: &CliExport, stop: &AtomicBool) -> Result<ExportSummary, CliError> {
    let path = &job.buffer.path;
    if !path.is_file() {
        return Err(CliError::NoBuffer(path.clone()));
    }
    let (buffer, recovered) = match Buffer::open_with_cache(path, job.buffer.cache_bytes) {
        Ok(b) => b,
        Err(OpenError::Database { source, .. })
            if matches!(*source, redb::DatabaseError::DatabaseAlreadyOpen) =>
        {
            return run_live(job, stop);
        }
        Err(e) => return Err(e.into()),
    };
    let request = request(job);
    let mut progress = Progress::auto();
    if !job.mark_delivered {
        return Ok(export(&buffer, None, &request, &mut progress, stop)?);
    }
    // Deletes go through a writer like the gateway's, without retention or backfill: the
    // export must not drop or move anything it was not asked to.
    let mut config = job.buffer.clone();
    config.retention = None;
    config.backfill = None;
    // Nothing else writes: commit each segment's deletes at once instead of waiting for
    // company (the commit policy's low-load interval is for SD-card wear under ingest).
    config.max_commit_delay = std::time::Duration::from_millis(1);
    config.min_commit_interval = std::time::Duration::from_millis(1);
    let (acks, _ignored) = crossbeam_channel::bounded(1);
    let metrics = BufferMetrics::register(&mut prometheus_client::registry::Registry::default());
    let (writer, thread) = buffer::writer::spawn(buffer.clone(), recovered, config, metrics, acks)
        .map_err(CliError::Writer)?;
    let result = export(
        &buffer,
        Some(&writer as &dyn Deleter),
        &request,
        &mut progress,
        stop,
    );
    drop(writer);
    // The writer ends with a checkpoint; a panic in it was already reported on stderr.
    let _ = thread.join();
    Ok(result?)
}

fn request(job: &CliExport) -> ExportRequest {
    ExportRequest {
        dir: job.dir.clone(),
        format: job.format,
        selection: job.selection.clone(),
        target_file_bytes: job.target_file_bytes,
        origin: Origin::Cli,
        through_log_id: None,
    }
}

/// The export through a running gateway's control socket.
fn run_live(job: &CliExport, stop: &AtomicBool) -> Result<ExportSummary, CliError> {
    let path = &job.buffer.path;
    let Some(live) = LiveGateway::connect(path) else {
        return Err(CliError::InUse(
            path.clone(),
            super::live::socket_path(path),
        ));
    };
    let live = live
        .exporting_to(&job.dir)
        .map_err(|e| ExportError::io("resolve", &job.dir, e))?;
    tracing::info!(socket = %live.socket().display(), "The gateway is running: exporting through it.");
    let deleter = job.mark_delivered.then_some(&live as &dyn Deleter);
    let mut progress = Progress::auto();
    Ok(export(&live, deleter, &request(job), &mut progress, stop)?)
}
