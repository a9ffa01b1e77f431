//! One shard's lane: its read-ahead queue, its retry queue, its bucket, its backoff.
//!
//! Invariants:
//! - `devices[d]` holds device `d`'s entries in log order, so records leave in `(boot, seq)`
//!   order per device (see [`super::record`] for what a retry does to that).
//! - `retry` holds records that failed, oldest first; they leave before any new record.
//! - `cursor`: every log entry with an id at or below it that belongs to this shard is in
//!   memory (queued, in flight, accepted and awaiting delete) or deleted. The scanner
//!   continues from there; a lane whose queue is full stops its cursor, others go on.
//! - A request never takes more than the bucket has (records, bytes), 500 records or
//!   5 MiB.

use super::bucket::WindowBucket;
use super::config::{
    KINESIS_MAX_REQUEST_BYTES, KINESIS_MAX_REQUEST_RECORDS, RecordFormat, ShardLimits,
};
use super::record::{OutRecord, RecordBuilder};
use crate::buffer::BatchRecord;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Devices tried in one request build whose next entry did not fit what is left in the
/// bucket, before the request is sent as it is.
const MAX_MISSES: usize = 8;

/// A log entry waiting to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Log id.
    pub id: u64,
    /// Stored size (read-ahead accounting).
    pub stored_bytes: u64,
    /// The decoded entry.
    pub record: BatchRecord,
}

/// One shard's state.
#[derive(Debug)]
pub struct Lane {
    /// The shard.
    pub shard_id: Arc<str>,
    /// Not in the current map any more: kept only until its requests return.
    pub retired: bool,
    /// See the module invariants.
    pub cursor: Option<u64>,
    /// Records/bytes per 1-second window.
    pub bucket: WindowBucket,
    /// Requests in flight.
    pub in_flight: usize,
    /// Records in flight.
    pub in_flight_records: u64,
    /// No request before this (after a failed call).
    pub backoff_until: Option<Instant>,
    /// Current backoff step (doubles per failed call, reset by a success).
    pub backoff: Duration,
    retry: VecDeque<OutRecord>,
    devices: HashMap<Arc<str>, VecDeque<Entry>>,
    /// Devices with queued entries, round robin.
    order: VecDeque<Arc<str>>,
    queued_bytes: u64,
}

impl Lane {
    /// An empty lane reading from after `cursor`.
    pub fn new(shard_id: Arc<str>, limits: ShardLimits, cursor: Option<u64>) -> Self {
        Self {
            shard_id,
            retired: false,
            cursor,
            bucket: WindowBucket::new(limits),
            in_flight: 0,
            in_flight_records: 0,
            backoff_until: None,
            backoff: Duration::ZERO,
            retry: VecDeque::new(),
            devices: HashMap::new(),
            order: VecDeque::new(),
            queued_bytes: 0,
        }
    }

    /// Queues a log entry of `device` (newer than everything queued for it).
    pub fn push_entry(&mut self, device: Arc<str>, entry: Entry) {
        self.queued_bytes += entry.stored_bytes;
        let q = self.devices.entry(device.clone()).or_default();
        if q.is_empty() {
            self.order.push_back(device);
        }
        q.push_back(entry);
    }

    /// Puts failed records back, ahead of everything (they keep their relative order).
    pub fn push_retry_front(&mut self, records: Vec<OutRecord>) {
        for r in records.into_iter().rev() {
            self.retry.push_front(r);
        }
    }

    /// Bytes of queued entries.
    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes
    }

    /// True when the read-ahead is below half of `budget`.
    pub fn hungry(&self, budget: u64) -> bool {
        !self.retired && self.queued_bytes < budget / 2
    }

    /// Something to send.
    pub fn has_work(&self) -> bool {
        !self.retry.is_empty() || !self.order.is_empty()
    }

    /// Arrival time (gateway UTC ms) of the oldest waiting reading.
    pub fn oldest_waiting_ms(&self) -> Option<i64> {
        let queued = self
            .order
            .iter()
            .filter_map(|d| self.devices.get(d)?.front())
            .map(|e| e.record.received_ms);
        let retry = self.retry.iter().map(|r| r.oldest_received_ms);
        queued.chain(retry).min()
    }

    /// Everything waiting, for rerouting after a shard map change.
    pub fn take_all(&mut self) -> (Vec<OutRecord>, Vec<(Arc<str>, Entry)>) {
        let retry = self.retry.drain(..).collect();
        let mut entries = Vec::new();
        for d in self.order.drain(..) {
            if let Some(q) = self.devices.remove(&d) {
                entries.extend(q.into_iter().map(|e| (d.clone(), e)));
            }
        }
        // Log order, so per-device order survives the move.
        entries.sort_by_key(|(_, e)| e.id);
        self.devices.clear();
        self.queued_bytes = 0;
        (retry, entries)
    }

    /// May a request go out now (not counting the bucket)?
    pub fn may_send(&self, now: Instant, max_in_flight: usize) -> bool {
        self.has_work()
            && self.in_flight < max_in_flight
            && self.backoff_until.is_none_or(|t| now >= t)
    }

    /// Builds the next request within the bucket, `max_request_bytes` and the PutRecords
    /// limits: retries first, in order; then one record per device in turn, each coalescing
    /// that device's queued entries up to `max_record_bytes` or what is left of the request.
    /// Empty when nothing fits (the bucket is spent).
    pub fn build_request(
        &mut self,
        now: Instant,
        format: RecordFormat,
        max_record_bytes: u64,
        max_request_bytes: u64,
    ) -> Vec<OutRecord> {
        let (records, bytes) = self.bucket.available(now);
        let mut records = records.min(KINESIS_MAX_REQUEST_RECORDS as u64);
        let mut bytes = bytes.min(max_request_bytes.min(KINESIS_MAX_REQUEST_BYTES));
        let mut out = Vec::new();
        while let Some(r) = self.retry.front() {
            if records == 0 || r.kinesis_bytes() > bytes {
                return out;
            }
            records -= 1;
            bytes -= r.kinesis_bytes();
            if let Some(r) = self.retry.pop_front() {
                out.push(r);
            }
        }
        let mut skipped = Vec::new();
        while records > 0 && skipped.len() < MAX_MISSES {
            let Some(device) = self.order.pop_front() else {
                break;
            };
            let Some(q) = self.devices.get_mut(&device) else {
                continue;
            };
            let mut b = RecordBuilder::new(format, device.clone());
            let cap = max_record_bytes.min(bytes);
            while let Some(e) = q.front() {
                if !b.try_add(e.id, &e.record, cap) {
                    break;
                }
                self.queued_bytes -= e.stored_bytes;
                q.pop_front();
            }
            let empty = q.is_empty();
            if b.is_empty() {
                skipped.push(device);
                continue;
            }
            let r = b.finish();
            records -= 1;
            bytes -= r.kinesis_bytes();
            out.push(r);
            if empty {
                self.devices.remove(&device);
            } else {
                self.order.push_back(device);
            }
        }
        // Devices whose entry did not fit go first next time.
        for d in skipped.into_iter().rev() {
            self.order.push_front(d);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::RecordReading;

    const LIMITS: ShardLimits = ShardLimits {
        records: 1000,
        bytes: 1 << 20,
    };

    fn entry(id: u64, device: &str, seq: u32, n: usize) -> Entry {
        let record = BatchRecord {
            device: device.into(),
            boot: 1,
            first_seq: seq,
            received_ms: 1_000 + id as i64,
            utc_offset_ms: 0,
            readings: vec![
                RecordReading {
                    t_ms: 5,
                    channel: 0,
                    kind: 0,
                    value: 1.0,
                };
                n
            ],
        };
        Entry {
            id,
            stored_bytes: 36 + 14 * n as u64,
            record,
        }
    }

    #[test]
    fn coalesces_per_device_in_log_order_and_round_robins() {
        let mut lane = Lane::new("s".into(), LIMITS, None);
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        lane.push_entry(a.clone(), entry(1, "a", 0, 2));
        lane.push_entry(b.clone(), entry(2, "b", 0, 2));
        lane.push_entry(a.clone(), entry(3, "a", 2, 2));
        let out = lane.build_request(Instant::now(), RecordFormat::Cbor, 64 << 10, 5 << 20);
        assert_eq!(out.len(), 2);
        assert_eq!(&*out[0].device, "a");
        assert_eq!(out[0].ids, vec![1, 3]);
        assert_eq!(out[1].ids, vec![2]);
        assert!(!lane.has_work());
        assert_eq!(lane.queued_bytes(), 0);
    }

    #[test]
    fn requests_stay_within_the_bucket_and_retries_go_first() {
        let now = Instant::now();
        let mut lane = Lane::new("s".into(), LIMITS, None);
        for i in 0..2000u64 {
            let d: Arc<str> = format!("d{}", i % 50).into();
            lane.push_entry(d.clone(), entry(i, &d, i as u32, 128));
        }
        let first = lane.build_request(now, RecordFormat::Cbor, 64 << 10, 5 << 20);
        let bytes: u64 = first.iter().map(OutRecord::kinesis_bytes).sum();
        assert!(bytes <= 1 << 20);
        // Filled to within one entry (~2 KB) of the window.
        assert!(bytes > (1 << 20) - 4096, "{bytes}");
        let t = lane.bucket.spend(first.len() as u64, bytes);
        assert!(
            lane.build_request(now, RecordFormat::Cbor, 64 << 10, 5 << 20)
                .is_empty()
        );
        // The response refuses two records: they come back first, before new records.
        let refused: Vec<OutRecord> = first[3..5].to_vec();
        let refused_bytes = refused.iter().map(OutRecord::kinesis_bytes).sum();
        lane.bucket.complete(t, now, (2, refused_bytes));
        lane.push_retry_front(refused.clone());
        let next = lane.build_request(now, RecordFormat::Cbor, 64 << 10, 5 << 20);
        assert_eq!(next[..2], refused[..]);
        assert!(next.len() == 2, "only the refunded tokens are available");
    }

    #[test]
    fn at_most_500_records_per_request() {
        let mut lane = Lane::new("s".into(), LIMITS, None);
        for i in 0..1000u64 {
            let d: Arc<str> = format!("d{i}").into();
            lane.push_entry(d.clone(), entry(i, &d, 0, 1));
        }
        let out = lane.build_request(Instant::now(), RecordFormat::Cbor, 64 << 10, 5 << 20);
        assert_eq!(out.len(), 500);
    }

    #[test]
    fn take_all_keeps_log_order() {
        let mut lane = Lane::new("s".into(), LIMITS, None);
        for (id, d) in [(5, "b"), (6, "a"), (7, "b")] {
            lane.push_entry(d.into(), entry(id, d, id as u32, 1));
        }
        let (_, entries) = lane.take_all();
        let ids: Vec<u64> = entries.iter().map(|(_, e)| e.id).collect();
        assert_eq!(ids, vec![5, 6, 7]);
        assert!(!lane.has_work());
    }
}
