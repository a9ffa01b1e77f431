//! The forwarder loop: one task owns all state (shard map, lanes, what is in memory) and
//! reacts to events; PutRecords calls, ListShards and buffer deletes run as their own tasks
//! and report back. Nothing blocks the loop but a scan of the log (bounded, on the blocking
//! pool).
//!
//! Delivery invariants:
//! - A log entry is in `claimed` from the moment a lane queues it until the buffer delete
//!   that removes it has committed; scans skip claimed ids, so nothing in memory is queued
//!   twice, even when cursors move back after a shard map change.
//! - An entry is deleted only after Kinesis accepted the record holding it (records never
//!   split entries). Deletes are batched every `forward.delete_interval_ms`; the buffer holds
//!   those of entries newer than its last checkpoint for the next one (`buffer.delete_delay_ms`,
//!   SD-card wear), and they stay claimed until it commits.
//! - A failed record (throttled, record error, failed call) goes back to the front of the
//!   lane its device maps to *now*, and is resent as is (an aggregate: its parts, each to the
//!   lane its device maps to now, rebuilt into new aggregates); accepted records are never
//!   resent (except after a crash before their delete: at least once).
//! - An aggregate that lands on another shard than predicted is accepted only for the parts
//!   whose hash key that shard owns; which ones is decided with the next shard map, until then
//!   the parts stay in memory (`misplaced`), and the others are sent again (KCL would drop
//!   them where they landed).
//! - Only the lane whose call failed backs off; a throttled lane is slowed by its bucket, not
//!   paused.
//! - A lane that has read the log up to the buffer's `committed_end` takes new entries from
//!   the fresh window ([`super::fresh`]) as the writer admits them, in id order, so it need not
//!   wait for their commit; a lane further behind (a backlog, a full read-ahead) reads the log.

use super::config::{LiveLimits, ValidForwardConfig};
use super::error::{ApiError, ApiErrorKind};
use super::fresh::FreshWindow;
use super::id_set::IdSet;
use super::kinesis::{KinesisApi, PutResult, THROTTLED};
use super::lane::Lane;
use super::metrics::ForwardMetrics;
use super::record::{OutRecord, Part};
use super::scan::{ScanLane, scan};
use super::shard_map::ShardMap;
use crate::buffer::writer::HELD_IDS_MAX;
use crate::buffer::{Buffer, WriterHandle};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

/// Entries read per scan pass at most.
const SCAN_MAX_ENTRIES: usize = 20_000;
/// Shortest interval between shard map refreshes triggered by mispredictions.
const MISPREDICTION_REFRESH_GAP: Duration = Duration::from_secs(1);
/// Pause after a failed scan (the buffer is reopening after an I/O error).
const SCAN_RETRY: Duration = Duration::from_millis(500);
/// Gauges (lag, queued, in flight) are refreshed this often.
const GAUGE_INTERVAL: Duration = Duration::from_millis(250);
/// Longest the loop sleeps without a reason.
const MAX_IDLE: Duration = Duration::from_secs(1);
/// Failed-call warnings are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// How long shutdown waits for calls in flight and the last delete.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);
/// Entries queued between the buffer writer and this loop (more: a gap, the scan catches up).
const FRESH_QUEUE: usize = 4096;
/// Bytes (as stored) of admitted entries kept for lanes that have not passed them yet. A
/// caught-up lane needs only the entries after `committed_end`, at most one commit group
/// (`buffer.commit_bytes`, 256 KiB by default); a lane further behind reads the log anyway.
const FRESH_WINDOW_BYTES: u64 = 1 << 20;

/// What the spawned tasks report.
#[derive(Debug)]
enum Event {
    Put {
        id: u64,
        records: Vec<OutRecord>,
        result: Result<Vec<PutResult>, ApiError>,
        done: Instant,
    },
    Listed(Result<Vec<super::kinesis::ListedShard>, ApiError>),
    Deleted {
        ids: Vec<u64>,
        result: Result<u64, String>,
    },
}

/// A call in flight.
#[derive(Debug)]
struct Request {
    lane: Arc<str>,
    ticket: super::bucket::Ticket,
    records: u64,
    oldest_received_ms: i64,
}

/// Runs the forwarder until `shutdown` completes; then waits (bounded) for calls in flight
/// and deletes what they delivered. New per-shard limits arriving on `live` (a reload) apply
/// from the next request on.
pub async fn run(
    config: ValidForwardConfig,
    api: Arc<dyn KinesisApi>,
    buffer: Buffer,
    writer: WriterHandle,
    metrics: ForwardMetrics,
    mut live: watch::Receiver<LiveLimits>,
    shutdown: impl Future<Output = ()>,
) {
    let mut watching = true;
    metrics.set_stream(
        &config.stream.to_string(),
        config.unhealthy_after.as_secs_f64(),
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut fresh_rx = buffer.subscribe_fresh(FRESH_QUEUE);
    let mut f = Forwarder {
        now: Instant::now(),
        config,
        api,
        buffer,
        writer,
        metrics,
        tx,
        map: None,
        lanes: HashMap::new(),
        claimed: Arc::new(Mutex::new(IdSet::new())),
        corrupt: HashSet::new(),
        accepted: Vec::new(),
        deletes_running: 0,
        next_delete: Instant::now(),
        requests: HashMap::new(),
        next_request: 0,
        refresh_running: false,
        refresh_due: Instant::now(),
        refresh_backoff: Duration::ZERO,
        last_misprediction_refresh: None,
        log_end: None,
        poll_due: Instant::now(),
        scan_blocked_until: Instant::now(),
        next_gauges: Instant::now(),
        last_warn: None,
        window: FreshWindow::new(FRESH_WINDOW_BYTES),
        misplaced: Vec::new(),
    };
    tokio::pin!(shutdown);
    loop {
        f.now = Instant::now();
        f.step().await;
        let wake = f.next_wake();
        tokio::select! {
            () = &mut shutdown => break,
            event = rx.recv() => {
                if let Some(e) = event {
                    f.now = Instant::now();
                    f.handle(e);
                }
            }
            Some(entry) = fresh_rx.recv() => f.window.push(entry),
            changed = live.changed(), if watching => match changed {
                Ok(()) => {
                    let limits = *live.borrow_and_update();
                    f.set_live_limits(limits);
                }
                // Nobody can send new limits any more.
                Err(_) => watching = false,
            },
            () = tokio::time::sleep_until(wake.into()) => {}
        }
        while let Ok(e) = rx.try_recv() {
            f.now = Instant::now();
            f.handle(e);
        }
        while let Ok(entry) = fresh_rx.try_recv() {
            f.window.push(entry);
        }
    }
    f.shutdown(&mut rx).await;
}

struct Forwarder {
    /// The loop's clock, set when it wakes.
    now: Instant,
    config: ValidForwardConfig,
    api: Arc<dyn KinesisApi>,
    buffer: Buffer,
    writer: WriterHandle,
    metrics: ForwardMetrics,
    tx: mpsc::UnboundedSender<Event>,
    map: Option<Arc<ShardMap>>,
    /// By shard id: the current map's shards plus retired ones with calls in flight.
    lanes: HashMap<Arc<str>, Lane>,
    /// Log ids in memory (queued, in flight, accepted and not yet deleted).
    claimed: Arc<Mutex<IdSet>>,
    /// Corrupt entries already reported.
    corrupt: HashSet<u64>,
    /// Accepted, awaiting delete.
    accepted: Vec<u64>,
    /// Delete requests the buffer has not answered yet: one at a time, unless the buffer holds
    /// one for its next checkpoint while [`HELD_IDS_MAX`] more ids were accepted; a second
    /// request then makes the buffer commit them all at once (bounds `claimed` at high rates).
    deletes_running: usize,
    next_delete: Instant,
    requests: HashMap<u64, Request>,
    next_request: u64,
    refresh_running: bool,
    refresh_due: Instant,
    refresh_backoff: Duration,
    last_misprediction_refresh: Option<Instant>,
    /// Last log id seen by a scan.
    log_end: Option<u64>,
    poll_due: Instant,
    scan_blocked_until: Instant,
    next_gauges: Instant,
    last_warn: Option<Instant>,
    /// Entries admitted by the writer, not yet passed by every lane.
    window: FreshWindow,
    /// Aggregates accepted by another shard than predicted: (that shard, the aggregate's
    /// explicit hash key, its parts), until the next shard map says which parts it owns.
    misplaced: Vec<(String, u128, Vec<Part>)>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `base / 2 + random(0..=base / 2)`: jittered, never zero.
fn jitter(base: Duration) -> Duration {
    let half = base / 2;
    half + Duration::from_nanos(fastrand::u64(0..=half.as_nanos() as u64))
}

impl Forwarder {
    /// Reloaded limits: every shard's bucket, the aggregation interval and the in-flight cap.
    fn set_live_limits(&mut self, live: LiveLimits) {
        if live == self.config.live_limits() {
            return;
        }
        self.config.set_live_limits(live);
        for lane in self.lanes.values_mut() {
            lane.bucket.set_limits(live.limits);
        }
        tracing::info!(
            records_per_sec = live.limits.records,
            bytes_per_sec = live.limits.bytes,
            aggregate_interval_ms = live.aggregate_interval.as_millis() as u64,
            max_in_flight_per_shard = live.max_in_flight_per_shard,
            "Forwarder limits reloaded."
        );
    }

    fn claimed(&self) -> std::sync::MutexGuard<'_, IdSet> {
        self.claimed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything that can happen now without waiting.
    async fn step(&mut self) {
        if !self.refresh_running && self.now >= self.refresh_due {
            self.start_refresh();
        }
        if self.map.is_some() {
            self.scan_if_needed().await;
            self.take_fresh();
            self.send_ready();
        }
        let due = self.deletes_running == 0 && self.now >= self.next_delete;
        let many = self.deletes_running < 2 && self.accepted.len() >= HELD_IDS_MAX;
        if !self.accepted.is_empty() && (due || many) {
            self.start_delete();
        }
        if self.now >= self.next_gauges {
            self.update_gauges();
            self.next_gauges = self.now + GAUGE_INTERVAL;
        }
    }

    /// When the loop must wake up even without an event.
    fn next_wake(&mut self) -> Instant {
        let now = self.now;
        let mut wake = now + MAX_IDLE;
        let mut at = |t: Instant| wake = wake.min(t.max(now));
        if !self.refresh_running {
            at(self.refresh_due);
        }
        let budget = self.config.queue_bytes_per_shard;
        if self.map.is_some() && self.lanes.values().any(|l| l.hungry(budget)) {
            at(self.poll_due);
        }
        if !self.accepted.is_empty() && self.deletes_running == 0 {
            at(self.next_delete);
        }
        at(self.next_gauges);
        for lane in self.lanes.values() {
            if !lane.has_work() || lane.in_flight >= self.config.max_in_flight_per_shard {
                continue;
            }
            if let Some(t) = lane.backoff_until.filter(|&t| t > now) {
                at(t);
            } else if let Some(t) = lane.next_aggregate.filter(|&t| t > now) {
                at(t);
            } else if let Some(t) = lane.bucket.next_return() {
                at(t);
            }
        }
        wake
    }

    fn start_refresh(&mut self) {
        self.refresh_running = true;
        let (api, tx) = (self.api.clone(), self.tx.clone());
        tokio::spawn(async move {
            let result = api.list_open_shards().await;
            let _ = tx.send(Event::Listed(result));
        });
    }

    /// Scans when a lane is hungry and there is (or may be) something new for it.
    async fn scan_if_needed(&mut self) {
        let Some(map) = self.map.clone() else {
            return;
        };
        let budget = self.config.queue_bytes_per_shard;
        let lanes: Vec<ScanLane> = map
            .shards()
            .iter()
            .map(|s| match self.lanes.get(&s.shard_id) {
                Some(l) => ScanLane {
                    hungry: l.hungry(budget),
                    cursor: l.cursor,
                    room: budget.saturating_sub(l.queued_bytes()),
                },
                None => ScanLane {
                    hungry: false,
                    cursor: None,
                    room: 0,
                },
            })
            .collect();
        let behind = lanes.iter().any(|l| {
            l.hungry
                && self
                    .log_end
                    .is_some_and(|end| l.cursor.is_none_or(|c| c < end))
        });
        let polling = self.now >= self.poll_due && lanes.iter().any(|l| l.hungry);
        if (!behind && !polling) || self.now < self.scan_blocked_until {
            return;
        }
        let (buffer, claimed) = (self.buffer.clone(), self.claimed.clone());
        let scan_map = map.clone();
        let result = tokio::task::spawn_blocking(move || {
            scan(&buffer, &scan_map, &lanes, &claimed, SCAN_MAX_ENTRIES)
        })
        .await;
        self.now = Instant::now();
        let out = match result {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                // The buffer is reopening after an I/O error: try again at the next poll.
                tracing::debug!(error = %e, "Buffer scan failed; retrying.");
                self.scan_blocked_until = self.now + SCAN_RETRY;
                self.poll_due = self.scan_blocked_until;
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "Buffer scan task failed; retrying.");
                self.scan_blocked_until = self.now + SCAN_RETRY;
                self.poll_due = self.scan_blocked_until;
                return;
            }
        };
        for id in out.corrupt {
            if self.corrupt.insert(id) {
                self.metrics.corrupt_entries.inc();
                tracing::error!(
                    id,
                    "A buffer entry does not decode; it cannot be forwarded and stays in the buffer."
                );
            }
        }
        self.log_end = out.log_end;
        {
            let mut claimed = self.claimed.lock().unwrap_or_else(|p| p.into_inner());
            for (i, entry) in out.entries {
                let shard = &map.shards()[i].shard_id;
                if let Some(lane) = self.lanes.get_mut(shard) {
                    claimed.insert(entry.id);
                    let device: Arc<str> = Arc::from(entry.record.device.as_str());
                    lane.push_entry(device, entry);
                }
            }
        }
        for (s, cursor) in map.shards().iter().zip(out.cursors) {
            if let Some(lane) = self.lanes.get_mut(&s.shard_id) {
                lane.cursor = cursor;
            }
        }
        // Caught up: look again after the poll interval.
        let caught_up = self.lanes.values().all(|l| {
            l.retired
                || !l.hungry(budget)
                || self
                    .log_end
                    .is_none_or(|end| l.cursor.is_some_and(|c| c >= end))
        });
        if caught_up {
            self.poll_due = self.now + self.config.poll_interval;
        }
    }

    /// Hands each lane that has read the log to its end the new entries of its shard from the
    /// fresh window, in id order, while it has room; then forgets what every lane passed.
    fn take_fresh(&mut self) {
        let Some(map) = self.map.clone() else {
            return;
        };
        let budget = self.config.queue_bytes_per_shard;
        let claimed = self.claimed.clone();
        let mut claimed = claimed.lock().unwrap_or_else(|p| p.into_inner());
        let mut taken = Vec::new();
        for (i, shard) in map.shards().iter().enumerate() {
            let Some(lane) = self.lanes.get_mut(&shard.shard_id) else {
                continue;
            };
            if lane.retired || !lane.hungry(budget) || !self.window.covers(lane.cursor) {
                continue;
            }
            let mut room = budget.saturating_sub(lane.queued_bytes());
            let mut took = false;
            for (&id, entry) in self.window.after(lane.cursor) {
                if map.index_of(&entry.record.device) == i && !claimed.contains(&id) {
                    if took && room < entry.stored_bytes {
                        // Full: the rest waits here (or for the scan) with the cursor before it.
                        break;
                    }
                    room = room.saturating_sub(entry.stored_bytes);
                    took = true;
                    taken.push((i, id));
                }
                lane.cursor = Some(id);
            }
        }
        for (i, id) in taken {
            let Some(entry) = self.window.take(id) else {
                continue;
            };
            if let Some(lane) = self.lanes.get_mut(&map.shards()[i].shard_id) {
                claimed.insert(id);
                self.metrics.fresh_entries.inc();
                let device: Arc<str> = Arc::from(entry.record.device.as_str());
                lane.push_entry(device, entry);
            }
        }
        let passed = map
            .shards()
            .iter()
            .map(|s| self.lanes.get(&s.shard_id).and_then(|l| l.cursor))
            .min()
            .flatten();
        if let Some(passed) = passed {
            self.window.prune_through(passed);
        }
    }

    /// Sends every request the lanes' buckets and in-flight limits allow.
    fn send_ready(&mut self) {
        let now = self.now;
        let max_in_flight = self.config.max_in_flight_per_shard;
        let (format, max_record) = (self.config.record_format, self.config.max_record_bytes);
        let max_request = self.config.max_request_bytes;
        let mut ready = Vec::new();
        for lane in self.lanes.values_mut() {
            while lane.may_send(now, max_in_flight) {
                let records = lane.build_request(now, format, max_record, max_request);
                if records.is_empty() {
                    break;
                }
                let bytes = records.iter().map(OutRecord::kinesis_bytes).sum();
                let ticket = lane.bucket.spend(records.len() as u64, bytes);
                if format.aggregated() && !self.config.aggregate_interval.is_zero() {
                    lane.next_aggregate = Some(now + self.config.aggregate_interval);
                }
                lane.in_flight += 1;
                lane.in_flight_records += records.len() as u64;
                ready.push((lane.shard_id.clone(), ticket, records));
            }
        }
        for (lane, ticket, records) in ready {
            let id = self.next_request;
            self.next_request += 1;
            self.requests.insert(
                id,
                Request {
                    lane,
                    ticket,
                    records: records.len() as u64,
                    oldest_received_ms: records
                        .iter()
                        .map(|r| r.oldest_received_ms)
                        .min()
                        .unwrap_or(i64::MAX),
                },
            );
            let (api, tx) = (self.api.clone(), self.tx.clone());
            let timer = self.metrics.put_seconds.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let result = api.put_records(&records).await;
                let done = Instant::now();
                timer.observe(done.duration_since(started).as_secs_f64());
                let _ = tx.send(Event::Put {
                    id,
                    records,
                    result,
                    done,
                });
            });
        }
    }

    fn start_delete(&mut self) {
        self.deletes_running += 1;
        let ids = std::mem::take(&mut self.accepted);
        let (writer, tx) = (self.writer.clone(), self.tx.clone());
        tokio::task::spawn_blocking(move || {
            // Entries newer than the buffer's last checkpoint are deleted with the next one
            // (seconds later; SD-card wear): they stay claimed, not sent again, until then.
            let result = writer.delete_later(ids.clone());
            let _ = tx.send(Event::Deleted { ids, result });
        });
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Put {
                id,
                records,
                result,
                done,
            } => self.on_put(id, records, result, done),
            Event::Listed(result) => self.on_listed(result),
            Event::Deleted { ids, result } => {
                self.deletes_running = self.deletes_running.saturating_sub(1);
                self.next_delete = self.now + self.config.delete_interval;
                match result {
                    Ok(_) => {
                        let mut claimed = self.claimed();
                        for id in &ids {
                            claimed.remove(id);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, entries = ids.len(), "Deleting delivered entries from the buffer failed; retrying.");
                        self.accepted.extend(ids);
                    }
                }
            }
        }
    }

    fn on_listed(&mut self, result: Result<Vec<super::kinesis::ListedShard>, ApiError>) {
        self.refresh_running = false;
        let listed = result.and_then(|shards| {
            ShardMap::new(
                shards
                    .iter()
                    .map(|(id, s, e)| (id.as_str(), s.as_str(), e.as_str())),
            )
            .map_err(|e| ApiError::new(ApiErrorKind::Server, e.to_string()))
        });
        match listed {
            Ok(map) => {
                self.metrics.reached();
                self.refresh_backoff = Duration::ZERO;
                self.refresh_due = self.now + self.config.shard_refresh;
                if self.map.as_deref() != Some(&map) {
                    self.apply_map(map);
                }
                self.resolve_misplaced(true);
            }
            Err(e) => {
                self.refresh_backoff =
                    (self.refresh_backoff * 2).clamp(self.config.retry_min, self.config.retry_max);
                self.refresh_due = self.now + jitter(self.refresh_backoff);
                self.call_failed(&e, "ListShards");
            }
        }
    }

    /// Switches to a new shard map: lanes for new shards start reading from the lowest
    /// cursor (claimed ids are skipped); waiting work of closed shards moves to the lanes
    /// its devices map to now.
    fn apply_map(&mut self, map: ShardMap) {
        let map = Arc::new(map);
        let first = self.map.is_none();
        let restart = self.lanes.values().map(|l| l.cursor).min().flatten();
        let open: HashSet<&Arc<str>> = map.shards().iter().map(|s| &s.shard_id).collect();
        let mut moved_records = Vec::new();
        let mut moved_parts = Vec::new();
        let mut moved_entries = Vec::new();
        for lane in self.lanes.values_mut() {
            if !open.contains(&lane.shard_id) {
                lane.retired = true;
                let (r, p, e) = lane.take_all();
                moved_records.extend(r);
                moved_parts.extend(p);
                moved_entries.extend(e);
            }
        }
        self.lanes.retain(|_, l| !l.retired || l.in_flight > 0);
        for s in map.shards() {
            self.lanes.entry(s.shard_id.clone()).or_insert_with(|| {
                Lane::new(
                    s.shard_id.clone(),
                    self.config.limits,
                    if first { None } else { restart },
                )
            });
            self.metrics.shard(&s.shard_id);
        }
        moved_entries.sort_by_key(|(_, e)| e.id);
        for (device, entry) in moved_entries {
            if let Some(lane) = self.lanes.get_mut(map.shard_of(&device)) {
                lane.push_entry(device, entry);
            }
        }
        self.map = Some(map.clone());
        self.reroute(moved_records);
        self.reroute_parts(moved_parts);
        self.metrics.open_shards.set(map.len() as i64);
        self.metrics.shard_map_changes.inc();
        self.poll_due = self.now;
        tracing::info!(
            open_shards = map.len(),
            stream = %self.config.stream,
            "Shard map {}.",
            if first { "loaded" } else { "changed" }
        );
    }

    /// Puts failed records back at the front of the lane each device maps to now.
    fn reroute(&mut self, records: Vec<OutRecord>) {
        let Some(map) = self.map.clone() else {
            return;
        };
        let mut by_lane: HashMap<Arc<str>, Vec<OutRecord>> = HashMap::new();
        for r in records {
            by_lane
                .entry(map.shard_of(&r.device).clone())
                .or_default()
                .push(r);
        }
        for (shard, records) in by_lane {
            if let Some(lane) = self.lanes.get_mut(&shard) {
                lane.push_retry_front(records);
            }
        }
    }

    /// Puts the parts of failed aggregates back at the front of the lane each device maps to
    /// now, in their order.
    fn reroute_parts(&mut self, parts: Vec<Part>) {
        let Some(map) = self.map.clone() else {
            return;
        };
        let mut by_lane: HashMap<Arc<str>, Vec<Part>> = HashMap::new();
        for p in parts {
            by_lane
                .entry(map.shard_of(&p.device).clone())
                .or_default()
                .push(p);
        }
        for (shard, parts) in by_lane {
            if let Some(lane) = self.lanes.get_mut(&shard) {
                lane.push_retry_parts_front(parts);
            }
        }
    }

    /// Settles misplaced aggregates with the current map: a part whose hash key the shard it
    /// landed on owns is delivered; the others are sent again. A shard the map does not hold
    /// waits for the next listing (`listed`: this map is that listing); after it, the shard
    /// keeps only the parts of the aggregate's own hash key (its range is unknown: it closed
    /// again).
    fn resolve_misplaced(&mut self, listed: bool) {
        let Some(map) = self.map.clone() else {
            return;
        };
        let mut resend = Vec::new();
        let mut waiting = Vec::new();
        for (shard, explicit_hash_key, parts) in std::mem::take(&mut self.misplaced) {
            let range = map
                .shards()
                .iter()
                .find(|s| *s.shard_id == *shard)
                .map(|s| s.start..=s.end);
            if range.is_none() && !listed {
                waiting.push((shard, explicit_hash_key, parts));
                continue;
            }
            let label = self.metrics.shard(&shard);
            for part in parts {
                let owned = match &range {
                    Some(r) => r.contains(&part.hash),
                    None => part.hash == explicit_hash_key,
                };
                if owned {
                    self.metrics
                        .readings_sent
                        .get_or_create(&label)
                        .inc_by(part.readings);
                    self.accepted.extend_from_slice(&part.ids);
                } else {
                    self.metrics
                        .misplaced_user_records
                        .inc_by(part.user_records.len() as u64);
                    resend.push(part);
                }
            }
        }
        self.misplaced = waiting;
        self.reroute_parts(resend);
    }

    fn on_put(
        &mut self,
        id: u64,
        records: Vec<OutRecord>,
        result: Result<Vec<PutResult>, ApiError>,
        done: Instant,
    ) {
        let Some(request) = self.requests.remove(&id) else {
            return;
        };
        let label = self.metrics.shard(&request.lane);
        let mut failed = Vec::new();
        let mut failed_parts = Vec::new();
        match result {
            Ok(results) => {
                self.metrics.reached();
                let mut refused = (0, 0);
                let mut throttled = false;
                let mut record_errors = false;
                for (mut record, result) in records.into_iter().zip(results) {
                    match result {
                        PutResult::Accepted { shard_id } => {
                            let to = self.metrics.shard(&shard_id);
                            let mispredicted = *shard_id != *request.lane;
                            if mispredicted {
                                self.metrics.shard_mispredictions.inc();
                                self.refresh_soon();
                            }
                            self.metrics.records_sent.get_or_create(&to).inc();
                            self.metrics
                                .bytes_sent
                                .get_or_create(&to)
                                .inc_by(record.kinesis_bytes());
                            if mispredicted && record.parts.len() > 1 {
                                // Which parts the shard owns is known with the next map.
                                let hash = record.explicit_hash_key.unwrap_or_default();
                                self.misplaced.push((shard_id, hash, record.parts));
                                continue;
                            }
                            self.metrics
                                .readings_sent
                                .get_or_create(&to)
                                .inc_by(record.readings);
                            self.accepted.extend_from_slice(&record.ids);
                        }
                        PutResult::Failed { code, message } => {
                            refused.0 += 1;
                            refused.1 += record.kinesis_bytes();
                            if code == THROTTLED {
                                throttled = true;
                                self.metrics.throttled_records.get_or_create(&label).inc();
                            } else {
                                record_errors = true;
                                tracing::debug!(code, message, "Kinesis refused a record.");
                            }
                            self.metrics.retried_records.get_or_create(&label).inc();
                            record.attempts += 1;
                            if record.parts.is_empty() {
                                failed.push(record);
                            } else {
                                failed_parts.append(&mut record.parts);
                            }
                        }
                    }
                }
                if let Some(lane) = self.lanes.get_mut(&request.lane) {
                    lane.bucket.complete(request.ticket, done, refused);
                    lane.backoff = Duration::ZERO;
                    if throttled {
                        lane.bucket.throttled(done);
                    }
                    if record_errors {
                        // InternalFailure: a short pause for this shard only.
                        lane.backoff_until = Some(self.now + jitter(self.config.retry_min));
                    }
                }
            }
            Err(e) => {
                let n = records.len() as u64;
                self.metrics.retried_records.get_or_create(&label).inc_by(n);
                let (min, max) = (self.config.retry_min, self.config.retry_max);
                if let Some(lane) = self.lanes.get_mut(&request.lane) {
                    let refund = if e.kind.maybe_written() {
                        (0, 0)
                    } else {
                        (n, records.iter().map(OutRecord::kinesis_bytes).sum())
                    };
                    lane.bucket.complete(request.ticket, done, refund);
                    if e.kind == ApiErrorKind::Throttled {
                        lane.bucket.throttled(done);
                    }
                    lane.backoff = (lane.backoff * 2).clamp(min, max);
                    lane.backoff_until = Some(self.now + jitter(lane.backoff));
                }
                if e.kind == ApiErrorKind::NotFound {
                    // The stream may have been recreated: list its shards again.
                    self.refresh_soon();
                }
                self.call_failed(&e, "PutRecords");
                for mut r in records {
                    r.attempts += 1;
                    if r.parts.is_empty() {
                        failed.push(r);
                    } else {
                        failed_parts.append(&mut r.parts);
                    }
                }
            }
        }
        if let Some(lane) = self.lanes.get_mut(&request.lane) {
            lane.in_flight -= 1;
            lane.in_flight_records -= request.records;
            if lane.retired && lane.in_flight == 0 {
                self.lanes.remove(&request.lane);
                self.metrics.in_flight_records.get_or_create(&label).set(0);
                self.metrics.lag_seconds.get_or_create(&label).set(0.0);
            }
        }
        self.reroute(failed);
        self.reroute_parts(failed_parts);
        if !self.misplaced.is_empty() {
            // Settled now if the map already knows the shards (a refresh came first).
            self.resolve_misplaced(false);
        }
    }

    /// Lists the shards again now, or, if that happened within the last
    /// `MISPREDICTION_REFRESH_GAP`, once that gap has passed (never dropped: a misplaced
    /// aggregate waits for it).
    fn refresh_soon(&mut self) {
        let at = match self.last_misprediction_refresh {
            // Already scheduled.
            Some(t) if t > self.now => t,
            Some(t) if self.now.duration_since(t) < MISPREDICTION_REFRESH_GAP => {
                t + MISPREDICTION_REFRESH_GAP
            }
            _ => self.now,
        };
        self.last_misprediction_refresh = Some(at);
        self.refresh_due = self.refresh_due.min(at);
    }

    fn call_failed(&mut self, e: &ApiError, call: &str) {
        self.metrics.failed(e.kind.label(), &e.message);
        let quiet = self
            .last_warn
            .is_some_and(|t| self.now.duration_since(t) < WARN_EVERY);
        if !quiet {
            self.last_warn = Some(self.now);
            let failing = self.metrics.failing_for().unwrap_or_default();
            if failing >= self.config.unhealthy_after {
                tracing::error!(call, kind = e.kind.label(), failing_secs = failing.as_secs(), error = %e.message,
                    "Kinesis keeps failing: forwarding is stopped, readings stay buffered.");
            } else {
                tracing::warn!(call, kind = e.kind.label(), error = %e.message, "Kinesis call failed; retrying with backoff.");
            }
        }
    }

    fn update_gauges(&self) {
        let now = now_ms();
        let mut in_flight_oldest: HashMap<&Arc<str>, i64> = HashMap::new();
        for r in self.requests.values() {
            let e = in_flight_oldest.entry(&r.lane).or_insert(i64::MAX);
            *e = (*e).min(r.oldest_received_ms);
        }
        for lane in self.lanes.values() {
            let label = self.metrics.shard(&lane.shard_id);
            let oldest = lane
                .oldest_waiting_ms()
                .into_iter()
                .chain(in_flight_oldest.get(&lane.shard_id).copied())
                .min();
            let lag = oldest.map_or(0.0, |t| ((now - t) as f64 / 1000.0).max(0.0));
            self.metrics.lag_seconds.get_or_create(&label).set(lag);
            self.metrics
                .in_flight_records
                .get_or_create(&label)
                .set(lane.in_flight_records as i64);
            self.metrics
                .queued_bytes
                .get_or_create(&label)
                .set(lane.queued_bytes() as i64);
        }
    }

    /// Waits (bounded) for calls in flight, then deletes what was accepted, with the deletes
    /// the buffer still holds for its next checkpoint (a `Now` delete brings them forward).
    async fn shutdown(mut self, rx: &mut mpsc::UnboundedReceiver<Event>) {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
        while !self.requests.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => {
                    self.now = Instant::now();
                    self.handle(e);
                }
                _ => break,
            }
        }
        // A `Now` delete commits what is accepted and what the buffer holds for its next
        // checkpoint. A `Later` request may reach the buffer just after it (both were on their
        // way) and be held again, or come back failed: so until every request is answered and
        // nothing waits, flush again.
        while !self.accepted.is_empty() || self.deletes_running > 0 {
            let ids = std::mem::take(&mut self.accepted);
            let writer = self.writer.clone();
            let n = ids.len();
            let flushed = tokio::time::timeout_at(
                deadline,
                tokio::task::spawn_blocking(move || writer.delete(ids)),
            )
            .await;
            if !matches!(flushed, Ok(Ok(Ok(_)))) {
                tracing::warn!(
                    entries = n + self.accepted.len(),
                    "Could not delete the last delivered entries; they will be sent again (duplicates)."
                );
                break;
            }
            // Answers of the flushed `Later` requests (a failed one puts its ids back).
            let settle = (tokio::time::Instant::now() + Duration::from_millis(100)).min(deadline);
            while self.deletes_running > 0 {
                match tokio::time::timeout_at(settle, rx.recv()).await {
                    Ok(Some(e)) => {
                        self.now = Instant::now();
                        self.handle(e);
                    }
                    _ => break,
                }
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    entries = self.accepted.len(),
                    "Could not delete the last delivered entries; they will be sent again (duplicates)."
                );
                break;
            }
        }
        tracing::info!("Forwarder stopped.");
    }
}

/// Builds the SDK client and spawns the forwarder; the task ends after `shutdown` (see
/// [`run`]). Fails only on configuration problems (no region).
pub async fn start(
    config: ValidForwardConfig,
    buffer: Buffer,
    writer: WriterHandle,
    metrics: ForwardMetrics,
    live: watch::Receiver<LiveLimits>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, super::error::StartError> {
    let api = Arc::new(super::kinesis::SdkKinesis::new(&config).await?);
    tracing::info!(
        stream = %config.stream,
        format = ?config.record_format,
        "Forwarding to Kinesis."
    );
    Ok(tokio::spawn(run(
        config, api, buffer, writer, metrics, live, shutdown,
    )))
}
