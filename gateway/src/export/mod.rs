//! Stage 4, the export: the buffer's readings as files for batch backfill (Athena, Spark,
//! Glue, pyarrow), written by `gateway export` on a stopped gateway's data directory and by
//! the retention sweep under `retention_action = "backfill"`.
//!
//! # What is exported
//!
//! The buffer holds only undelivered readings: the forwarder deletes what Kinesis accepted,
//! and an export with `--mark-delivered` deletes what it wrote. So "all buffered readings"
//! and "the undelivered backlog" are one set: the log as it is when a run starts (every entry
//! up to the last log id at that moment), narrowed by the [`Selection`] (reading UTC time
//! range, devices). Readings that are already in the target directory are skipped (see
//! "Exported set"), so running the same export again only adds what is new.
//!
//! # Directory layout (one directory = one table, one format)
//!
//! ```text
//! <dir>/
//!   _manifest.json                                  manifest and progress journal
//!   _export.lock                                    held (flock) while a run writes
//!   _staging/                                       files not yet committed
//!   dt=2026-11-27/hour=10/part-000001-000000000001-000000081234.parquet
//!   dt=2026-11-27/hour=11/part-000001-000000040000-000000081234.parquet
//! ```
//!
//! Partitions are Hive-style on the reading's UTC time (`dt=YYYY-MM-DD/hour=HH`, like a
//! Firehose custom prefix), so Athena/Glue/Spark read `<dir>` as a table partitioned by `dt`
//! and `hour`. Names starting with `_` or `.` are ignored by those readers. A data file is
//! named `part-<run>-<first log id>-<last log id>.<ext>`: the run that wrote it and the
//! range of log entries its rows came from. Within a run, the files of one partition cover
//! disjoint id ranges, and run numbers are never reused, so names never collide.
//!
//! Formats ([`ExportFormat`]): Parquet with GZIP and typed columns (see [`parquet_part`]), or
//! gzip-compressed newline-delimited JSON with one object per reading, the shape of the
//! forwarder's JSON Kinesis records (see [`json_part`]).
//!
//! # Segments and the commit protocol
//!
//! A run scans the log in id order and cuts it into segments; a segment ends when one of its
//! files reaches `target_file_bytes`, when it has too many partitions open, or at the end of
//! the scan. A segment commits in this order:
//!
//! 1. each file is written in `_staging/`, flushed and fsynced, then `_staging/` is fsynced;
//! 2. `_manifest.json` is replaced atomically (temporary file, fsync, rename, fsync of
//!    `<dir>`) with the new files, their row counts, sizes and SHA-256, and the exported set
//!    extended by the segment's readings. **This rename is the commit point.**
//! 3. each file is renamed from `_staging/` into its partition directory and the directories
//!    are fsynced;
//! 4. with `--mark-delivered` (always in the retention sweep), the log entries whose readings
//!    are all in the exported set are deleted through the buffer's writer.
//!
//! # Invariants
//!
//! - Every data file in a partition directory is listed in the manifest (files appear there
//!   only after step 2).
//! - Every file the manifest lists is in its partition, or still in `_staging/` under the
//!   same name (crash between 2 and 3); the next run finishes those renames first and deletes
//!   everything else in `_staging/` (uncommitted segments).
//! - The exported set (per device and boot, ranges of sequence numbers) holds exactly the
//!   readings of the listed files. `(device, boot, seq)` identifies a reading, so a reading
//!   in the set is never written again, whatever run, buffer or log id it comes from.
//! - A log entry is deleted only when every one of its readings is in the exported set of a
//!   durable manifest and its file is in its partition (after step 3).
//!
//! # Interrupted runs
//!
//! Run the same command again. The new run (the next run number; the interrupted one stays in
//! the manifest without `finished_ms`) completes the renames, skips every reading already
//! exported, writes the rest and deletes what the interrupted run had exported but not yet
//! deleted. No reading is written twice, and every selected reading in the buffer ends up in
//! the table: no duplicates, no holes. Deterministic crash points for tests: see
//! [`run::CRASH_ENV`].
//!
//! # Offline and live
//!
//! redb lets one process open the buffer. On a stopped gateway's data directory `gateway
//! export` opens it itself. While the gateway runs and holds the file, `gateway export` reads
//! the log and deletes exported entries through the gateway's control socket ([`live`]) and
//! writes the files itself; devices and the forwarder go on meanwhile. The gateway also
//! exports on its own: `retention_action = "backfill"` moves readings older than
//! `retention_secs` to `[export] backfill_dir` in the writer's backfill thread
//! ([`backfill`]). All three use the same run, layout, manifest and commit protocol; a run
//! reads through a [`source::LogSource`].
//!
//! # Modules
//!
//! - [`config`]: `[export]` settings; [`error`]: [`ExportError`]; [`metrics`]: counters.
//! - [`selection`]: what to export, time parsing and the partition calendar.
//! - [`exported`]: the exported set; [`manifest`]: `_manifest.json`; [`durable`]: fsync and
//!   atomic replacement; [`table`]: directory lock and recovery.
//! - [`parquet_part`], [`json_part`]: one data file each; [`segment`]: the files of a segment.
//! - [`run`]: one export run; [`source`]: where it reads; [`progress`]: progress bar or log
//!   lines; [`cli`]: `gateway export`; [`live`]: the control socket of a running gateway;
//!   [`backfill`]: the retention sweep.

pub mod backfill;
pub mod cli;
pub mod config;
pub mod durable;
pub mod error;
pub mod exported;
pub mod json_part;
pub mod live;
pub mod manifest;
pub mod metrics;
pub mod parquet_part;
pub mod progress;
pub mod run;
pub mod segment;
pub mod selection;
pub mod source;
pub mod table;

#[cfg(test)]
mod tests;

pub use backfill::BackfillExporter;
pub use cli::{CliExport, run_cli};
pub use config::{ExportConfig, ExportFormat, ValidExportConfig};
pub use error::ExportError;
pub use metrics::ExportMetrics;
pub use progress::Progress;
pub use run::{Deleter, ExportRequest, ExportSummary, Origin, export};
pub use selection::Selection;
