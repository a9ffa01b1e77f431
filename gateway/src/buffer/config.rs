//! Buffer settings (`[buffer]` in the config file).

use super::writer::RetentionBackfill;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What to do when the buffer reaches `capacity_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FullPolicy {
    /// Store nothing new and send no acks: devices keep their readings (backpressure).
    RejectNew,
    /// Evict the oldest undelivered readings (counted and logged as data loss).
    DropOldest,
}

/// What happens to readings older than `retention_secs` that were not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetentionAction {
    /// Delete them (counted as expired, logged as data loss).
    Drop,
    /// Export them to `[export] backfill_dir` (files and manifest durable first), then
    /// delete them (counted as delivered). See `crate::export`.
    Backfill,
}

/// `[buffer]` as written in the file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    /// Directory holding `buffer.redb`.
    pub data_dir: PathBuf,
    /// Most bytes of readings to hold (record bytes; the file is larger by B-tree overhead).
    pub capacity_bytes: u64,
    /// Policy at capacity.
    pub full_policy: FullPolicy,
    /// Commit as soon as this many record bytes wait (throughput under load).
    pub commit_bytes: u64,
    /// Longest a reading waits for its commit, and so for its ack (latency at low load).
    pub max_commit_delay_ms: u64,
    /// Shortest interval between commits at low load (SD-card wear; see README).
    pub min_commit_interval_ms: u64,
    /// Record bytes per second at or below which commits are spaced `min_commit_interval_ms`
    /// apart; at 2x this rate and above they come `max_commit_delay_ms` apart.
    pub low_load_bytes_per_sec: u64,
    /// How often per-device dedupe state is checkpointed (bounds the replay at open).
    pub checkpoint_interval_ms: u64,
    /// How long the writer, with nothing queued, keeps a device's newest record open for that
    /// device's next batch to join it (one log entry instead of two: SD-card wear; see
    /// `coalesce.rs`) before handing it to the forwarder. 0 never waits.
    pub coalesce_wait_us: u64,
    /// Longest the forwarder's delivered entries newer than the last checkpoint wait to be
    /// deleted with one (see [`DEFAULT_DELETE_DELAY_MS`]). 0 deletes them with the next commit.
    pub delete_delay_ms: u64,
    /// Age (by arrival) after which undelivered readings leave the buffer; 0 keeps them
    /// until delivered or evicted.
    pub retention_secs: u64,
    /// What leaving means.
    pub retention_action: RetentionAction,
    /// Fill of `capacity_bytes` (0 to 1) above which a device holding more than its fair share
    /// (`capacity_bytes / (devices with readings buffered + 1)`) is refused until it holds
    /// less: one device cannot take the space the others need. 1 turns this off.
    pub fair_share_above: f64,
    /// redb's page cache in bytes: the read cache of backlog scans and, up to half of it, a
    /// commit's write buffer. Memory against disk reads (see [`DEFAULT_CACHE_BYTES`]).
    pub cache_bytes: u64,
}

/// Default of `buffer.delete_delay_ms`: 10 s. Deleting an entry newer than the last checkpoint
/// takes a checkpoint in the same commit (`layout.rs`, invariants), which rewrites the state of
/// every device that stored readings since: at a live site that is every device, each time the
/// forwarder deletes. Holding those deletes for the next checkpoint, due at most this long
/// after the first one, cut a 1,000-device site's wear with forwarding on from 3.0 to 1.43 disk
/// bytes per payload byte (5 s: 1.55; `docs/benchmarks.md`, "Wear with forwarding on"). The
/// price: a crash (not a stop) sends the readings delivered in the last ~2 x 10 s again
/// (duplicates, never a loss), and the forwarder keeps their ids claimed meanwhile.
pub const DEFAULT_DELETE_DELAY_MS: u64 = 10_000;

/// Default of `buffer.cache_bytes`: 256 KiB. New readings reach the forwarder through the fresh
/// feed, not the cache, and backlog scans read in id order (sequential reads the OS page cache
/// serves as well), so a larger cache mostly costs memory: at 4 MiB it was the largest thing
/// still growing in a 1,000-device site's first minutes, and 1 MiB held ~0.7 MiB at that site
/// (`docs/benchmarks.md`, "Footprint (issue 16)"). A commit group larger than the write half
/// (128 KiB) is written in more than one go: measured side by side with 1 MiB, the same
/// durable ingest, 20,000/s ack p99 and disk bytes written (4.07 per payload byte at 20,000/s,
/// 1.44 at the 1,000-device site).
pub const DEFAULT_CACHE_BYTES: u64 = 256 << 10;

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            capacity_bytes: 1 << 30,
            full_policy: FullPolicy::RejectNew,
            commit_bytes: 256 * 1024,
            max_commit_delay_ms: 25,
            min_commit_interval_ms: 900,
            low_load_bytes_per_sec: 128 * 1024,
            checkpoint_interval_ms: 30_000,
            coalesce_wait_us: 200,
            delete_delay_ms: DEFAULT_DELETE_DELAY_MS,
            retention_secs: 0,
            retention_action: RetentionAction::Drop,
            fair_share_above: 0.5,
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

/// `$STATE_DIRECTORY` (set by systemd's `StateDirectory=`) or `./gateway-data`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("STATE_DIRECTORY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("gateway-data"))
}

/// Checked buffer settings.
#[derive(Debug, Clone)]
pub struct ValidBufferConfig {
    /// The redb file.
    pub path: PathBuf,
    /// See [`BufferConfig::capacity_bytes`].
    pub capacity_bytes: u64,
    /// See [`BufferConfig::full_policy`].
    pub full_policy: FullPolicy,
    /// See [`BufferConfig::commit_bytes`].
    pub commit_bytes: u64,
    /// See [`BufferConfig::max_commit_delay_ms`].
    pub max_commit_delay: Duration,
    /// See [`BufferConfig::min_commit_interval_ms`].
    pub min_commit_interval: Duration,
    /// See [`BufferConfig::low_load_bytes_per_sec`].
    pub low_load_bytes_per_sec: f64,
    /// See [`BufferConfig::checkpoint_interval_ms`].
    pub checkpoint_interval: Duration,
    /// See [`BufferConfig::coalesce_wait_us`].
    pub coalesce_wait: Duration,
    /// See [`BufferConfig::delete_delay_ms`].
    pub delete_delay: Duration,
    /// See [`BufferConfig::retention_secs`]; `None` for no limit.
    pub retention: Option<Duration>,
    /// See [`BufferConfig::retention_action`].
    pub retention_action: RetentionAction,
    /// See [`BufferConfig::fair_share_above`].
    pub fair_share_above: f64,
    /// See [`BufferConfig::cache_bytes`].
    pub cache_bytes: usize,
    /// The exporter run under [`RetentionAction::Backfill`] (set by `crate::config` from
    /// `[export]`; the buffer does not know the export stage).
    pub backfill: Option<Arc<dyn RetentionBackfill>>,
}

impl BufferConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<ValidBufferConfig, String> {
        if self.capacity_bytes < 1 << 20 {
            return Err("buffer.capacity_bytes must be at least 1048576 (1 MiB)".into());
        }
        if self.commit_bytes == 0 {
            return Err("buffer.commit_bytes must be positive".into());
        }
        if self.max_commit_delay_ms == 0 || self.max_commit_delay_ms > 60_000 {
            return Err("buffer.max_commit_delay_ms must be between 1 and 60000".into());
        }
        if self.min_commit_interval_ms > 60_000 {
            return Err("buffer.min_commit_interval_ms must be at most 60000".into());
        }
        if self.min_commit_interval_ms < self.max_commit_delay_ms {
            return Err(
                "buffer.min_commit_interval_ms must be at least max_commit_delay_ms".into(),
            );
        }
        if self.low_load_bytes_per_sec == 0 {
            return Err("buffer.low_load_bytes_per_sec must be positive".into());
        }
        if self.checkpoint_interval_ms < 100 {
            return Err("buffer.checkpoint_interval_ms must be at least 100".into());
        }
        if self.coalesce_wait_us > 10_000 {
            return Err("buffer.coalesce_wait_us must be at most 10000".into());
        }
        if self.delete_delay_ms > 600_000 {
            return Err("buffer.delete_delay_ms must be at most 600000".into());
        }
        if !(self.fair_share_above > 0.0 && self.fair_share_above <= 1.0) {
            return Err("buffer.fair_share_above must be above 0 and at most 1".into());
        }
        // Checked as u64 first: on 32-bit ARM a usize cannot hold the upper bound.
        let cache_bytes = Some(self.cache_bytes)
            .filter(|b| (64 * 1024..=1u64 << 40).contains(b))
            .and_then(|b| usize::try_from(b).ok())
            .ok_or("buffer.cache_bytes must be between 65536 (64 KiB) and 2^40 (and fit in this machine's address space)")?;
        Ok(ValidBufferConfig {
            path: self.data_dir.join("buffer.redb"),
            capacity_bytes: self.capacity_bytes,
            full_policy: self.full_policy,
            commit_bytes: self.commit_bytes,
            max_commit_delay: Duration::from_millis(self.max_commit_delay_ms),
            min_commit_interval: Duration::from_millis(self.min_commit_interval_ms),
            low_load_bytes_per_sec: self.low_load_bytes_per_sec as f64,
            checkpoint_interval: Duration::from_millis(self.checkpoint_interval_ms),
            coalesce_wait: Duration::from_micros(self.coalesce_wait_us),
            delete_delay: Duration::from_millis(self.delete_delay_ms),
            retention: (self.retention_secs > 0).then(|| Duration::from_secs(self.retention_secs)),
            retention_action: self.retention_action,
            fair_share_above: self.fair_share_above,
            cache_bytes,
            backfill: None,
        })
    }
}
