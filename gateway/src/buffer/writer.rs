//! The single writer: group commit, dedupe, capacity policy, checkpoints, acks.
//!
//! Ingest hands over validated batches ([`IncomingBatch`]); the writer groups them until the
//! [`CommitPolicy`] says commit, applies the [`sequencer`](super::sequencer) per device,
//! appends one log record per device batch, commits with `Durability::Immediate`, and only
//! then hands the acks to ingest. Deletes of delivered readings come through the same thread,
//! so every change to the file is serialised here and the in-memory dedupe state always
//! matches the last commit.
//!
//! When a commit fails (disk full, I/O error) nothing of the group is acknowledged: devices
//! keep those readings and resend them. The writer then reopens the file (redb refuses further
//! use of a handle after an I/O error), restores its state from the file, and retries with
//! backoff; health reports the buffer not writable until a commit succeeds again.

use super::coalesce;
use super::commit_policy::{CommitPolicy, RateEstimator};
use super::config::{FullPolicy, RetentionAction, ValidBufferConfig};
use super::device_bytes::{self, DeviceBytes};
use super::error::WriteError;
use super::fresh::FreshEntry;
use super::layout::{
    BatchRecord, DEVICES, DeviceState, LOG, META, META_BUFFERED_BYTES, META_BUFFERED_READINGS,
    META_CHECKPOINT_LOG_ID, META_TOTALS_LOG_ID, RecordHeader, RecordReading, TOTALS_EVERY_ENTRIES,
};
use super::metrics::BufferMetrics;
use super::sequencer::{self, BatchSeq};
use super::store::{Buffer, Recovered};
use crossbeam_channel::Sender;
// The writer's queues are flume's: a bounded flume channel allocates its slots as they fill
// (crossbeam's bounded channel preallocated all 8,192, 0.85 MiB resident at any load).
use flume::{Receiver, RecvTimeoutError};
use redb::{Durability, ReadableTable};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A validated uplink batch, handed from ingest to the buffer.
#[derive(Debug, Clone)]
pub struct IncomingBatch {
    /// The device.
    pub device: String,
    /// Boot counter.
    pub boot: u32,
    /// Sequence number of `readings[0]`.
    pub first_seq: u32,
    /// Lowest sequence number the device still holds.
    pub held_from: u32,
    /// Gateway UTC ms at arrival.
    pub received_ms: i64,
    /// Reading UTC = `t_ms + utc_offset_ms`.
    pub utc_offset_ms: i64,
    /// The readings (1..=128).
    pub readings: Vec<RecordReading>,
    /// When ingest received it (for latency metrics).
    pub arrived: Instant,
}

/// A durable ack to publish: every `seq <= through_seq` of `boot` is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckOut {
    /// The device.
    pub device: String,
    /// Its boot.
    pub boot: u32,
    /// Highest settled sequence number.
    pub through_seq: u32,
}

/// Requests to the writer.
#[derive(Debug)]
pub enum Command {
    /// Store a batch (and ack it once durable).
    Append(IncomingBatch),
    /// Delete delivered log entries by id; `done` receives the number of readings deleted.
    Delete {
        /// Log ids.
        ids: Vec<u64>,
        /// Completion signal, sent after the commit.
        done: Option<crossbeam_channel::Sender<Result<u64, String>>>,
        /// When: at once, or (`Later`) entries newer than the last checkpoint with the next
        /// checkpoint (see [`WriterHandle::delete_later`]).
        when: DeleteWhen,
    },
}

/// When a [`Command::Delete`] takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteWhen {
    /// With the next commit; also brings held `Later` deletes forward (a flush).
    Now,
    /// A request with an entry newer than the last checkpoint waits, whole, for the next
    /// checkpoint, due at most `buffer.delete_delay_ms` later; one of older entries only goes
    /// with the next commit.
    Later,
}

/// Sending side of the writer's queue.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    tx: flume::Sender<Command>,
}

impl WriterHandle {
    /// Queues a batch. Blocks while the queue is full (backpressure on ingest). Returns the
    /// batch back if the writer has stopped.
    pub fn append(&self, batch: IncomingBatch) -> Result<(), IncomingBatch> {
        self.tx.send(Command::Append(batch)).map_err(|e| match e.0 {
            Command::Append(b) => b,
            Command::Delete { .. } => unreachable_batch(),
        })
    }

    /// Deletes delivered entries and waits for the commit. Returns readings deleted. Deletes
    /// held by [`Self::delete_later`] are committed with it.
    pub fn delete(&self, ids: Vec<u64>) -> Result<u64, String> {
        self.delete_when(ids, DeleteWhen::Now)
    }

    /// Deletes delivered entries, and waits, like [`Self::delete`]; but entries newer than the
    /// last checkpoint wait for the next checkpoint (at most `buffer.delete_delay_ms`): deleting
    /// them at once costs a checkpoint of every active device (SD-card wear). For the
    /// forwarder, which keeps such entries claimed (not sent again) until this returns.
    pub fn delete_later(&self, ids: Vec<u64>) -> Result<u64, String> {
        self.delete_when(ids, DeleteWhen::Later)
    }

    fn delete_when(&self, ids: Vec<u64>, when: DeleteWhen) -> Result<u64, String> {
        let (done, wait) = crossbeam_channel::bounded(1);
        self.tx
            .send(Command::Delete {
                ids,
                done: Some(done),
                when,
            })
            .map_err(|_| "buffer writer stopped".to_string())?;
        wait.recv()
            .map_err(|_| "buffer writer stopped".to_string())?
    }
}

/// Moves readings past the retention age out of the buffer under
/// `retention_action = "backfill"`. Implemented by the export stage; the writer runs it on a
/// thread of its own (`buffer-backfill`) and stops it before the writer exits.
pub trait RetentionBackfill: Send + Sync + std::fmt::Debug {
    /// Runs until `stop` is set: periodically writes the log entries that arrived more than
    /// `retention` ago to durable files, then deletes them through `writer`.
    fn run(&self, buffer: Buffer, retention: Duration, writer: WriterHandle, stop: &AtomicBool);
}

/// The running backfill thread.
struct BackfillWorker {
    /// Deletes it asks for (a queue of its own, so it does not keep the writer alive).
    rx: Receiver<Command>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl BackfillWorker {
    fn start(buffer: &Buffer, config: &ValidBufferConfig) -> std::io::Result<Option<Self>> {
        if config.retention_action != RetentionAction::Backfill {
            return Ok(None);
        }
        let (Some(retention), Some(backfill)) = (config.retention, config.backfill.clone()) else {
            tracing::error!(
                "retention_action = \"backfill\" needs retention_secs and [export] backfill_dir; old readings are kept."
            );
            return Ok(None);
        };
        let (tx, rx) = flume::bounded(16);
        let stop = Arc::new(AtomicBool::new(false));
        let (buffer, flag) = (buffer.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("buffer-backfill".into())
            .spawn(move || backfill.run(buffer, retention, WriterHandle { tx }, &flag))?;
        Ok(Some(Self { rx, stop, thread }))
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        // Pending and later delete requests fail: the backfill sees the writer stopped.
        drop(self.rx);
        let _ = self.thread.join();
    }
}

fn unreachable_batch() -> IncomingBatch {
    // `append` only ever sends `Command::Append`, so the returned command is always one.
    IncomingBatch {
        device: String::new(),
        boot: 0,
        first_seq: 0,
        held_from: 0,
        received_ms: 0,
        utc_offset_ms: 0,
        readings: Vec::new(),
        arrived: Instant::now(),
    }
}

/// Queue length between ingest and the writer, in batches.
const QUEUE_BATCHES: usize = 8192;
/// Backoff bounds while the disk refuses writes.
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Starts the writer thread. It stops when every [`WriterHandle`] is dropped, after
/// committing what it holds and writing a final checkpoint.
pub fn spawn(
    buffer: Buffer,
    recovered: Recovered,
    config: ValidBufferConfig,
    metrics: BufferMetrics,
    acks: Sender<Vec<AckOut>>,
) -> std::io::Result<(WriterHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = flume::bounded(QUEUE_BATCHES);
    let backfill = BackfillWorker::start(&buffer, &config)?;
    let mut writer = Writer::new(buffer, recovered, config, metrics, acks);
    let handle = std::thread::Builder::new()
        .name("buffer-writer".into())
        .spawn(move || {
            writer.run(&rx, backfill.as_ref().map(|b| &b.rx));
            if let Some(b) = backfill {
                b.stop();
            }
        })?;
    Ok((WriterHandle { tx }, handle))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Writer {
    buffer: Buffer,
    config: ValidBufferConfig,
    policy: CommitPolicy,
    metrics: BufferMetrics,
    acks: Sender<Vec<AckOut>>,
    /// Dedupe state as of the last successful commit.
    states: HashMap<String, DeviceState>,
    /// Devices whose state changed since the last checkpoint.
    dirty: HashSet<String>,
    next_log_id: u64,
    checkpoint_log_id: u64,
    /// `meta.totals_log_id` as committed.
    totals_log_id: u64,
    last_checkpoint: Instant,
    buffered_readings: u64,
    buffered_bytes: u64,
    oldest_received_ms: Option<i64>,
    rate: RateEstimator,
    last_rate_sample: Instant,
    /// `Some(when to retry)` while the disk refuses writes.
    broken: Option<(Instant, Duration)>,
    record_buf: Vec<u8>,
    /// Bytes per device, for the per-device quota.
    device_bytes: DeviceBytes,
    /// `Later` deletes waiting for the next checkpoint, and since when the first waits.
    held: HeldDeletes,
}

/// [`DeleteWhen::Later`] requests with entries newer than the last checkpoint: they are
/// committed with the next checkpoint, which they make due after `buffer.delete_delay_ms`
/// or once [`HELD_IDS_MAX`] ids wait.
#[derive(Default)]
struct HeldDeletes {
    requests: Vec<DeleteRequest>,
    ids: usize,
    since: Option<Instant>,
}

/// Held delete ids that make a checkpoint due at once: bounds the memory of the held requests
/// and of the forwarder's claimed set (fast sites reach it within seconds; at a 1,000-device
/// site of one reading per second and device it takes ~16 s, past the default 10 s delay).
pub const HELD_IDS_MAX: usize = 16_384;

impl HeldDeletes {
    fn hold(&mut self, request: DeleteRequest) {
        self.ids += request.0.len();
        self.since.get_or_insert_with(Instant::now);
        self.requests.push(request);
    }

    /// When the held deletes make a checkpoint due (`None`: nothing held).
    fn due_at(&self, delay: Duration) -> Option<Instant> {
        let since = self.since?;
        Some(if self.ids >= HELD_IDS_MAX {
            since
        } else {
            since + delay
        })
    }

    fn take(&mut self) -> Vec<DeleteRequest> {
        self.ids = 0;
        self.since = None;
        std::mem::take(&mut self.requests)
    }
}

/// Takes a log entry removed by this commit off the totals and its device's bytes; returns
/// its readings (0 for an entry that does not decode, whose bytes still count).
fn removed(o: &mut Outcome, value: &[u8]) -> u64 {
    let len = value.len() as u64;
    o.buffered_bytes = o.buffered_bytes.saturating_sub(len);
    let Ok(header) = RecordHeader::decode(value) else {
        return 0;
    };
    add_bytes(&mut o.device_bytes, header.device, -(len as i64));
    let n = u64::from(header.count);
    o.buffered_readings = o.buffered_readings.saturating_sub(n);
    n
}

/// Adds `delta` to `device`'s entry (allocating its key only the first time).
fn add_bytes(bytes: &mut HashMap<String, i64>, device: &str, delta: i64) {
    match bytes.get_mut(device) {
        Some(b) => *b += delta,
        None => {
            bytes.insert(device.to_owned(), delta);
        }
    }
}

/// A log entry the open group will insert.
struct PendingRecord {
    id: u64,
    record: BatchRecord,
    /// Its encoded length.
    len: u64,
}

/// Hands `records[*published..]` to the fresh feed (or marks them skipped while the buffer is
/// not writable: the group will be refused, so it must not be delivered ahead).
fn publish(buffer: &Buffer, broken: bool, records: &[PendingRecord], published: &mut usize) {
    let fresh = buffer.fresh();
    for p in records.get(*published..).unwrap_or_default() {
        if broken {
            fresh.skipped();
        } else if fresh.has_subscriber() {
            fresh.publish(FreshEntry {
                id: p.id,
                stored_bytes: p.len,
                record: p.record.clone(),
                after_gap: false,
            });
        }
    }
    *published = records.len();
}

/// A delete request and where to report its outcome.
type DeleteRequest = (Vec<u64>, Option<Sender<Result<u64, String>>>);

/// The group being collected. Batches are admitted as they arrive (dedupe, capacity, log id,
/// encoding) into `pending`, so the forwarder can have them at once (see [`super::fresh`]);
/// the transaction then only writes what was decided.
struct Group {
    /// Admission results so far: states, acks, counters, ids, totals.
    pending: Outcome,
    /// Log entries to insert, in id order. `records[published..]` (at most the last one) are
    /// not in the fresh feed yet; only such a record may still take a later batch of its
    /// device (see [`super::coalesce`]).
    records: Vec<PendingRecord>,
    /// How many of `records` were handed to the fresh feed.
    published: usize,
    /// Batches admitted (duplicates included: they are re-acked after the commit).
    appends: usize,
    /// Readings in `records`.
    readings: u64,
    deletes: Vec<DeleteRequest>,
    /// A `Now` delete came while deletes were held: commit those too (a checkpoint), without
    /// waiting for the commit policy (the forwarder's last delete at shutdown).
    flush_held: bool,
    bytes: u64,
    oldest: Option<Instant>,
    newest: Option<Instant>,
}

impl Group {
    fn is_empty(&self) -> bool {
        self.appends == 0 && self.deletes.is_empty()
    }
}

/// What one commit did, applied to memory only after it succeeded.
#[derive(Default)]
struct Outcome {
    states: HashMap<String, DeviceState>,
    acks: HashMap<String, AckOut>,
    stored: u64,
    /// Readings stored per device.
    stored_by_device: HashMap<String, u64>,
    duplicates: u64,
    out_of_order: u64,
    lost_at_device: u64,
    stale: u64,
    boot_jumps: u64,
    held_from_jumps: u64,
    claims_confirmed: u64,
    rejected_full: u64,
    refused_quota: u64,
    /// Net bytes added per device by this commit.
    device_bytes: HashMap<String, i64>,
    evicted: u64,
    expired: u64,
    /// Readings deleted per delete command, in group order.
    delivered: Vec<u64>,
    deleted: Vec<u64>,
    checkpointed: bool,
    /// The commit wrote the totals to `meta`.
    totals_written: bool,
    next_log_id: u64,
    buffered_readings: u64,
    buffered_bytes: u64,
    oldest_received_ms: Option<i64>,
}

impl Writer {
    fn new(
        buffer: Buffer,
        recovered: Recovered,
        config: ValidBufferConfig,
        metrics: BufferMetrics,
        acks: Sender<Vec<AckOut>>,
    ) -> Self {
        let policy = CommitPolicy {
            commit_bytes: config.commit_bytes,
            max_commit_delay: config.max_commit_delay,
            min_commit_interval: config.min_commit_interval,
            low_load_bytes_per_sec: config.low_load_bytes_per_sec,
        };
        let mut w = Self {
            buffer,
            config,
            policy,
            metrics,
            acks,
            states: HashMap::new(),
            dirty: HashSet::new(),
            next_log_id: 0,
            checkpoint_log_id: 0,
            totals_log_id: 0,
            last_checkpoint: Instant::now(),
            buffered_readings: 0,
            buffered_bytes: 0,
            oldest_received_ms: None,
            rate: RateEstimator::default(),
            last_rate_sample: Instant::now(),
            broken: None,
            record_buf: Vec::with_capacity(4096),
            device_bytes: DeviceBytes::empty(),
            held: HeldDeletes::default(),
        };
        w.restore(recovered);
        w.metrics.writable.set(1);
        w
    }

    fn restore(&mut self, r: Recovered) {
        // Replayed devices differ from their checkpoint: checkpoint them again.
        self.dirty = if r.replayed > 0 {
            r.states.keys().cloned().collect()
        } else {
            HashSet::new()
        };
        self.states = r.states;
        // Never below ids already handed out (a failed group burns its ids).
        self.next_log_id = self.next_log_id.max(r.next_log_id);
        self.checkpoint_log_id = r.checkpoint_log_id;
        self.totals_log_id = r.totals_log_id;
        self.buffered_readings = r.buffered_readings;
        self.buffered_bytes = r.buffered_bytes;
        self.oldest_received_ms = r.oldest_received_ms;
        // Counted again from the log as it is now (before the next commit).
        if let Ok(db) = self.buffer.db() {
            self.device_bytes = DeviceBytes::start(&db);
        }
        self.publish_gauges();
    }

    fn publish_gauges(&self) {
        self.metrics
            .buffered_readings
            .set(self.buffered_readings as i64);
        self.metrics.buffered_bytes.set(self.buffered_bytes as i64);
        let age = self
            .oldest_received_ms
            .map_or(0.0, |t| ((now_ms() - t) as f64 / 1000.0).max(0.0));
        self.metrics.oldest_age_seconds.set(age);
        self.metrics.delete_held_entries.set(self.held.ids as i64);
    }

    fn run(&mut self, rx: &Receiver<Command>, backfill: Option<&Receiver<Command>>) {
        let mut disconnected = false;
        while !disconnected {
            self.device_bytes.poll();
            let mut group = self.new_group();
            // Deletes from the backfill thread join the group (checked at least every second).
            for c in backfill.into_iter().flat_map(Receiver::try_iter) {
                self.add(&mut group, c);
            }
            let wait = if group.is_empty() {
                self.idle_wait()
            } else {
                Duration::ZERO
            };
            // Wait for work, waking up for checkpoints and retries.
            match rx.recv_timeout(wait) {
                Ok(c) => self.add(&mut group, c),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => disconnected = true,
            }
            // Collect until the policy says commit.
            while !disconnected && !group.is_empty() {
                let age = group.oldest.map_or(Duration::ZERO, |t| t.elapsed());
                let since_last = group.newest.map_or(age, |t| t.elapsed());
                let load = self
                    .policy
                    .load(self.rate_now(), group.bytes, age, since_last);
                if group.flush_held || self.policy.should_commit(group.bytes, age, load) {
                    // A step recognised on the group's own rate: later groups need not wait
                    // for the step window again.
                    self.rate.raise_to(load);
                    // What already waits in the queue joins this commit: it would only wait
                    // for the next one. Without this, a backlog (every batch arriving
                    // already older than the commit delay) made one commit per batch, the
                    // slowest and most wearing way to catch up.
                    while group.bytes < self.policy.commit_bytes {
                        match rx.try_recv() {
                            Ok(c) => self.add(&mut group, c),
                            Err(_) => break,
                        }
                    }
                    break;
                }
                // Nothing queued: a device's next batch is often a few µs behind its last
                // one, so the group's newest record stays open for `coalesce_wait` (0.2 ms by
                // default: the forwarder gets it at most that much later); then it goes to
                // the fresh feed before the writer waits longer.
                if rx.is_empty() && group.published < group.records.len() {
                    if !self.config.coalesce_wait.is_zero() {
                        match rx.recv_timeout(self.config.coalesce_wait) {
                            Ok(c) => {
                                self.add(&mut group, c);
                                continue;
                            }
                            Err(RecvTimeoutError::Timeout) => {}
                            Err(RecvTimeoutError::Disconnected) => {
                                disconnected = true;
                                continue;
                            }
                        }
                    }
                    self.publish_fresh(&mut group);
                }
                // A timeout only means "decide again": the group may have become old enough
                // to be judged on its own rate.
                match rx.recv_timeout(self.policy.recheck_in(load, age)) {
                    Ok(c) => self.add(&mut group, c),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => disconnected = true,
                }
            }
            self.rate
                .observe(group.bytes, self.last_rate_sample.elapsed());
            self.last_rate_sample = Instant::now();
            // Held deletes ride on a commit that happens anyway when there is one (a live site
            // commits about every second); an idle writer wakes for them (`idle_wait`).
            let held_due = self
                .held
                .due_at(self.config.delete_delay)
                .is_some_and(|t| Instant::now() >= t);
            let checkpoint_due = disconnected
                || held_due
                || group.flush_held
                || (!self.dirty.is_empty()
                    && self.last_checkpoint.elapsed() >= self.config.checkpoint_interval);
            let expiry_due = self.drops_expired()
                && self.config.retention.is_some_and(|r| {
                    let cutoff = now_ms().saturating_sub(r.as_millis() as i64);
                    self.oldest_received_ms.is_some_and(|t| t < cutoff)
                });
            if !group.is_empty() || checkpoint_due || expiry_due {
                self.commit_group(group, checkpoint_due);
            }
            self.publish_gauges();
        }
    }

    fn new_group(&self) -> Group {
        Group {
            pending: Outcome {
                next_log_id: self.next_log_id,
                buffered_readings: self.buffered_readings,
                buffered_bytes: self.buffered_bytes,
                oldest_received_ms: self.oldest_received_ms,
                ..Outcome::default()
            },
            records: Vec::new(),
            published: 0,
            appends: 0,
            readings: 0,
            deletes: Vec::new(),
            flush_held: false,
            bytes: 0,
            oldest: None,
            newest: None,
        }
    }

    fn add(&mut self, group: &mut Group, command: Command) {
        match command {
            Command::Append(batch) => {
                group.bytes += 36 + batch.device.len() as u64 + 14 * batch.readings.len() as u64;
                group.oldest.get_or_insert(batch.arrived);
                group.newest = Some(batch.arrived);
                group.appends += 1;
                self.admit(group, &batch);
            }
            Command::Delete { ids, done, when } => {
                // Entries the last checkpoint reflects go at once: no checkpoint needed.
                if when == DeleteWhen::Later && self.past_checkpoint(&ids) {
                    self.held.hold((ids, done));
                    return;
                }
                group.flush_held |= when == DeleteWhen::Now && self.held.since.is_some();
                group.oldest.get_or_insert_with(Instant::now);
                group.deletes.push((ids, done));
            }
        }
    }

    /// Whether deleting `ids` needs a checkpoint in the same commit (`layout.rs`, invariants).
    fn past_checkpoint(&self, ids: &[u64]) -> bool {
        ids.iter().any(|&id| id > self.checkpoint_log_id)
    }

    /// True when retention deletes old readings here (`drop`); under `backfill` the backfill
    /// thread exports them and asks for their deletion.
    fn drops_expired(&self) -> bool {
        self.config.retention_action == RetentionAction::Drop
    }

    fn rate_now(&self) -> f64 {
        self.rate.bytes_per_sec()
    }

    fn idle_wait(&self) -> Duration {
        // Only a dirty state has a checkpoint to wait for: a clean one would otherwise wake
        // the writer every millisecond once the interval has passed (idle CPU on a Pi).
        let checkpoint = if self.dirty.is_empty() {
            Duration::MAX
        } else {
            self.config
                .checkpoint_interval
                .saturating_sub(self.last_checkpoint.elapsed())
        };
        let retry = self.broken.map_or(Duration::MAX, |(at, _)| {
            at.saturating_duration_since(Instant::now())
        });
        let held = self
            .held
            .due_at(self.config.delete_delay)
            .map_or(Duration::MAX, |t| {
                t.saturating_duration_since(Instant::now())
            });
        checkpoint
            .min(retry)
            .min(held)
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(1))
    }

    /// Hands the group's unpublished record (if any) to the fresh feed.
    fn publish_fresh(&self, group: &mut Group) {
        publish(
            &self.buffer,
            self.broken.is_some(),
            &group.records,
            &mut group.published,
        );
    }

    fn commit_group(&mut self, mut group: Group, checkpoint_due: bool) {
        self.publish_fresh(&mut group);
        // A checkpoint may delete any entry: the held deletes go with every commit that takes
        // one (or, if it fails, are answered with the failure and sent again). Also when the
        // buffer is nearly full: delivered entries must not take the space of new readings,
        // nor be evicted (and counted lost) under drop-oldest.
        let checkpoint_due = checkpoint_due
            || (self.held.since.is_some()
                && (group
                    .deletes
                    .iter()
                    .any(|(ids, _)| self.past_checkpoint(ids))
                    || group.pending.buffered_bytes >= self.config.capacity_bytes / 10 * 9));
        if checkpoint_due {
            let mut held = self.held.take();
            held.append(&mut group.deletes);
            group.deletes = held;
        }
        // The group's ids are spent whether or not it commits: an id the forwarder may hold
        // must never name a different entry later.
        let reserved_end = group.pending.next_log_id;
        if let Some((retry_at, backoff)) = self.broken {
            if Instant::now() < retry_at {
                self.burn_ids(reserved_end);
                self.refuse(group, "buffer not writable");
                return;
            }
            match self.buffer.reopen(Duration::from_secs(5)) {
                Ok(recovered) => self.restore(recovered),
                Err(e) => {
                    tracing::error!(error = %e, "Buffer reopen failed; readings are not acknowledged.");
                    self.broken = Some((Instant::now() + backoff, (backoff * 2).min(RETRY_MAX)));
                    self.burn_ids(reserved_end);
                    self.refuse(group, "buffer reopen failed");
                    return;
                }
            }
        }
        let started = Instant::now();
        let count = group.readings;
        let pending = std::mem::take(&mut group.pending);
        match self.write(&group, pending, checkpoint_due) {
            Ok(outcome) => {
                if self.broken.take().is_some() {
                    tracing::info!("Buffer is writable again.");
                }
                self.metrics.writable.set(1);
                self.metrics.commits.inc();
                self.metrics
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.commit_readings.observe(count as f64);
                self.apply(outcome, group);
            }
            Err(e) => {
                self.metrics.commit_failures.inc();
                self.metrics.writable.set(0);
                let backoff = self.broken.map_or(RETRY_MIN, |(_, b)| b);
                if e.is_out_of_space() {
                    tracing::error!(error = %e, "Disk full: readings are not acknowledged; devices keep them. Retrying.");
                } else {
                    tracing::error!(error = %e, "Buffer commit failed: readings are not acknowledged. Retrying.");
                }
                self.broken = Some((Instant::now() + backoff, (backoff * 2).min(RETRY_MAX)));
                self.burn_ids(reserved_end);
                self.refuse(group, "commit failed");
            }
        }
    }

    /// Skips the ids of a group that did not commit (they will never exist).
    fn burn_ids(&mut self, reserved_end: u64) {
        self.next_log_id = self.next_log_id.max(reserved_end);
        self.buffer.fresh().set_committed_end(self.next_log_id);
    }

    /// Answers a group that could not be committed: no acks, deletes report failure.
    fn refuse(&self, group: Group, why: &str) {
        for (_, done) in group.deletes {
            if let Some(done) = done {
                let _ = done.send(Err(why.to_string()));
            }
        }
    }

    /// Runs one write transaction for the admitted group (`o`); memory is untouched until it
    /// returns Ok.
    fn write(
        &mut self,
        group: &Group,
        mut o: Outcome,
        checkpoint_due: bool,
    ) -> Result<Outcome, WriteError> {
        let db = self
            .buffer
            .db()
            .map_err(|_| WriteError::from(redb::StorageError::PreviousIo))?;
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut log = txn.open_table(LOG)?;
            for p in &group.records {
                self.record_buf.clear();
                p.record.encode_into(&mut self.record_buf);
                log.insert(p.id, self.record_buf.as_slice())?;
            }
            for (ids, _) in &group.deletes {
                let mut readings = 0;
                for &id in ids {
                    if let Some(v) = log.remove(id)? {
                        readings += removed(&mut o, v.value());
                        o.deleted.push(id);
                    }
                }
                o.delivered.push(readings);
            }
            if self.config.full_policy == FullPolicy::DropOldest {
                while o.buffered_bytes > self.config.capacity_bytes {
                    let Some((k, v)) = log.pop_first()? else {
                        break;
                    };
                    o.evicted += removed(&mut o, v.value());
                    o.deleted.push(k.value());
                }
            }
            if let Some(retention) = self.config.retention.filter(|_| self.drops_expired()) {
                let cutoff = now_ms().saturating_sub(retention.as_millis() as i64);
                self.expire(&mut log, cutoff, &mut o)?;
            }
            o.oldest_received_ms = match log.first()? {
                Some((_, v)) => RecordHeader::decode(v.value()).ok().map(|h| h.received_ms),
                None => None,
            };
        }
        let deletes_past_checkpoint = o.deleted.iter().any(|&id| id > self.checkpoint_log_id);
        if checkpoint_due || deletes_past_checkpoint {
            let mut devices = txn.open_table(DEVICES)?;
            for device in self.dirty.iter().chain(o.states.keys()) {
                let state = o.states.get(device).or_else(|| self.states.get(device));
                if let Some(state) = state {
                    devices.insert(device.as_str(), state.to_bytes().as_slice())?;
                }
            }
            o.checkpointed = true;
        }
        let last_id = o.next_log_id.saturating_sub(1);
        o.totals_written = o.checkpointed
            || !o.deleted.is_empty()
            || last_id.saturating_sub(self.totals_log_id) >= TOTALS_EVERY_ENTRIES;
        if o.totals_written {
            let mut meta = txn.open_table(META)?;
            meta.insert(META_BUFFERED_READINGS, o.buffered_readings)?;
            meta.insert(META_BUFFERED_BYTES, o.buffered_bytes)?;
            meta.insert(META_TOTALS_LOG_ID, last_id)?;
            if o.checkpointed {
                meta.insert(META_CHECKPOINT_LOG_ID, last_id)?;
            }
        }
        txn.commit()?;
        Ok(o)
    }

    /// Removes log entries that arrived before `cutoff` (retention), oldest first.
    fn expire(
        &self,
        log: &mut redb::Table<'_, u64, &[u8]>,
        cutoff: i64,
        o: &mut Outcome,
    ) -> Result<(), WriteError> {
        loop {
            let old = match log.first()? {
                Some((k, v)) => RecordHeader::decode(v.value())
                    .ok()
                    .filter(|h| h.received_ms < cutoff)
                    .map(|_| k.value()),
                None => None,
            };
            let Some(id) = old else {
                return Ok(());
            };
            if let Some(v) = log.remove(id)? {
                o.expired += removed(o, v.value());
            }
            o.deleted.push(id);
        }
    }

    /// Admits one batch into the group: dedupe, capacity, log id. Nothing is written yet.
    fn admit(&mut self, group: &mut Group, batch: &IncomingBatch) {
        let o = &mut group.pending;
        let current = o
            .states
            .get(&batch.device)
            .or_else(|| self.states.get(&batch.device))
            .copied();
        let seq = BatchSeq {
            boot: batch.boot,
            first_seq: batch.first_seq,
            count: batch.readings.len() as u32,
            held_from: batch.held_from,
        };
        let (decision, mut next) = sequencer::admit(current, seq);
        o.duplicates += u64::from(decision.duplicates);
        o.lost_at_device += u64::from(decision.lost_at_device);
        o.out_of_order += u64::from(decision.out_of_order);
        o.stale += u64::from(decision.stale_boot);
        o.boot_jumps += u64::from(decision.boot_jump);
        o.held_from_jumps += u64::from(decision.held_from_jump);
        o.claims_confirmed += u64::from(decision.claim_confirmed);
        if decision.store_count > 0 {
            let from = decision.store_from as usize;
            let first_seq = batch.first_seq + decision.store_from;
            let readings = &batch.readings[from..from + decision.store_count as usize];
            // The group's last record, if unpublished and this batch may join it.
            let open = group.records.get(group.published..).and_then(<[_]>::last);
            let joins = open.filter(|p| {
                coalesce::extends(
                    &p.record,
                    &batch.device,
                    batch.boot,
                    first_seq,
                    batch.received_ms,
                    batch.utc_offset_ms,
                    readings,
                )
            });
            let (record, old_len) = match joins {
                Some(p) => {
                    let mut r = p.record.clone();
                    r.readings.extend_from_slice(readings);
                    (r, p.len)
                }
                None => (
                    BatchRecord {
                        device: batch.device.clone(),
                        boot: batch.boot,
                        first_seq,
                        received_ms: batch.received_ms,
                        utc_offset_ms: batch.utc_offset_ms,
                        readings: readings.to_vec(),
                    },
                    0,
                ),
            };
            let joins = joins.is_some();
            self.record_buf.clear();
            record.encode_into(&mut self.record_buf);
            let new_len = self.record_buf.len() as u64;
            // The bytes this batch adds to the log.
            let len = new_len.saturating_sub(old_len);
            let full = o.buffered_bytes + len > self.config.capacity_bytes;
            // Also under drop-oldest: a device over its share must not push out the others.
            let over_share = !self.within_fair_share(o, &batch.device, len);
            if (full && self.config.full_policy == FullPolicy::RejectNew) || over_share {
                // Not stored, so not acked and the state does not advance: the device keeps
                // these readings and resends them when space returns.
                if over_share {
                    o.refused_quota += u64::from(decision.store_count);
                } else {
                    o.rejected_full += u64::from(decision.store_count);
                }
                next = current.unwrap_or(DeviceState {
                    boot: batch.boot,
                    ..DeviceState::default()
                });
                if current.is_none() {
                    return;
                }
            } else {
                match group.records.last_mut().filter(|_| joins) {
                    Some(p) => {
                        p.record = record;
                        p.len = new_len;
                    }
                    None => {
                        // The previous record can no longer grow: the forwarder may have it.
                        publish(
                            &self.buffer,
                            self.broken.is_some(),
                            &group.records,
                            &mut group.published,
                        );
                        group.records.push(PendingRecord {
                            id: o.next_log_id,
                            record,
                            len: new_len,
                        });
                        o.next_log_id += 1;
                    }
                }
                group.readings += u64::from(decision.store_count);
                o.stored += u64::from(decision.store_count);
                match o.stored_by_device.get_mut(&batch.device) {
                    Some(n) => *n += u64::from(decision.store_count),
                    None => {
                        o.stored_by_device
                            .insert(batch.device.clone(), u64::from(decision.store_count));
                    }
                }
                o.buffered_readings += u64::from(decision.store_count);
                o.buffered_bytes += len;
                add_bytes(&mut o.device_bytes, &batch.device, len as i64);
                next.last_seen_ms = batch.received_ms;
            }
        }
        if decision.refused() {
            // Nothing stored or acked; only the boot candidate's count moves.
            o.states.insert(batch.device.clone(), next);
        } else {
            if let Some(through_seq) =
                sequencer::ack_through(&next).filter(|_| next.boot == batch.boot)
            {
                o.acks.insert(
                    batch.device.clone(),
                    AckOut {
                        device: batch.device.clone(),
                        boot: next.boot,
                        through_seq,
                    },
                );
            }
            o.states.insert(batch.device.clone(), next);
        }
    }

    /// Whether `device` may add `len` bytes under the per-device quota (see
    /// [`super::device_bytes`]), given what the open group `o` already admitted.
    fn within_fair_share(&self, o: &Outcome, device: &str, len: u64) -> bool {
        let total = o.buffered_bytes + len;
        // Mostly the buffer is below the threshold: no lookups then.
        if !device_bytes::quota_applies(
            total,
            self.config.capacity_bytes,
            self.config.fair_share_above,
        ) {
            return true;
        }
        let Some((held, devices)) = self.device_bytes.usage(device) else {
            return true; // still counting
        };
        let pending = o.device_bytes.get(device).copied().unwrap_or(0).max(0) as u64;
        let newcomer = usize::from(held == 0 && pending == 0);
        device_bytes::within_fair_share(
            held,
            pending,
            len,
            total,
            devices + newcomer,
            self.config.capacity_bytes,
            self.config.fair_share_above,
        )
    }

    /// Applies a committed outcome to memory, metrics and acks.
    fn apply(&mut self, o: Outcome, group: Group) {
        for (device, delta) in &o.device_bytes {
            self.device_bytes.change(device, *delta);
        }
        for (device, state) in o.states {
            self.dirty.insert(device.clone());
            self.states.insert(device, state);
        }
        if o.checkpointed {
            self.dirty.clear();
            self.checkpoint_log_id = o.next_log_id.saturating_sub(1);
            self.last_checkpoint = Instant::now();
        }
        if o.totals_written {
            self.totals_log_id = o.next_log_id.saturating_sub(1);
        }
        self.next_log_id = o.next_log_id;
        self.buffer.fresh().set_committed_end(self.next_log_id);
        self.buffered_readings = o.buffered_readings;
        self.buffered_bytes = o.buffered_bytes;
        self.oldest_received_ms = o.oldest_received_ms;
        let m = &self.metrics;
        m.readings_stored.inc_by(o.stored);
        if let Some(devices) = &m.devices {
            devices.stored(o.stored_by_device.iter().map(|(d, n)| (d.as_str(), *n)));
        }
        m.duplicate_readings.inc_by(o.duplicates);
        m.out_of_order_batches.inc_by(o.out_of_order);
        m.readings_lost_at_device.inc_by(o.lost_at_device);
        m.stale_boot_batches.inc_by(o.stale);
        m.boot_jump_batches.inc_by(o.boot_jumps);
        m.held_from_jump_batches.inc_by(o.held_from_jumps);
        m.claims_confirmed.inc_by(o.claims_confirmed);
        m.readings_rejected_full.inc_by(o.rejected_full);
        if o.refused_quota > 0 {
            let before = m.readings_refused_quota.get();
            m.readings_refused_quota.inc_by(o.refused_quota);
            // A line at each power of two of the count: a flood writes a few lines, not one each.
            let after = before + o.refused_quota;
            if before == 0 || after.ilog2() > before.ilog2() {
                tracing::warn!(
                    readings = before + o.refused_quota,
                    "Readings refused: their device holds more than its fair share of a buffer past buffer.fair_share_above (not acked; the device keeps them)."
                );
            }
        }
        if o.evicted > 0 {
            m.readings_evicted.inc_by(o.evicted);
            tracing::error!(
                readings = o.evicted,
                "Buffer full: evicted the oldest undelivered readings (drop-oldest)."
            );
        }
        if o.expired > 0 {
            m.readings_expired.inc_by(o.expired);
            tracing::error!(
                readings = o.expired,
                "Dropped undelivered readings older than the retention limit."
            );
        }
        for ((_, done), n) in group.deletes.into_iter().zip(o.delivered) {
            m.readings_delivered.inc_by(n);
            if let Some(done) = done {
                let _ = done.send(Ok(n));
            }
        }
        if !o.acks.is_empty() {
            m.acks.inc_by(o.acks.len() as u64);
            // Ingest may have stopped during shutdown; the acks are then simply not sent and
            // the devices resend, which dedupe absorbs.
            let _ = self.acks.send(o.acks.into_values().collect());
        }
    }
}
