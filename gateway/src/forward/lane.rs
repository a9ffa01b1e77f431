//! One shard's lane: its read-ahead queue, its retry queue, its bucket, its backoff.
//!
//! Invariants:
//! - `devices[d]` holds device `d`'s entries in log order, so records leave in `(boot, seq)`
//!   order per device (see [`super::record`] for what a retry does to that).
//! - `retry` holds records that failed, oldest first; they leave before any new record.
//!   Aggregated formats keep the parts of failed aggregates instead (`retry_parts`), so the
//!   next aggregates are rebuilt from them for whatever the shard map says then.
//! - `cursor`: every log entry with an id at or below it that belongs to this shard is in
//!   memory (queued, in flight, accepted and awaiting delete) or deleted. The scanner
//!   continues from there; a lane whose queue is full stops its cursor, others go on.
//! - A request never takes more than the bucket has (records, bytes), 500 records or
//!   5 MiB.

use super::bucket::WindowBucket;
use super::config::{
    KINESIS_MAX_REQUEST_BYTES, KINESIS_MAX_REQUEST_RECORDS, RecordFormat, ShardLimits,
};
use super::record::{AggregateBuilder, OutRecord, Part, RecordBuilder};
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

/// What [`Lane::take_all`] hands over.
pub type Waiting = (Vec<OutRecord>, Vec<Part>, Vec<(Arc<str>, Entry)>);

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
    /// Aggregated formats: no request before this (`forward.aggregate_interval_ms`).
    pub next_aggregate: Option<Instant>,
    retry: VecDeque<OutRecord>,
    retry_parts: VecDeque<Part>,
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
            next_aggregate: None,
            retry: VecDeque::new(),
            retry_parts: VecDeque::new(),
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

    /// Puts the parts of failed aggregates back, ahead of everything (in their order).
    pub fn push_retry_parts_front(&mut self, parts: Vec<Part>) {
        for p in parts.into_iter().rev() {
            self.retry_parts.push_front(p);
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
        !self.retry.is_empty() || !self.retry_parts.is_empty() || !self.order.is_empty()
    }

    /// Arrival time (gateway UTC ms) of the oldest waiting reading.
    pub fn oldest_waiting_ms(&self) -> Option<i64> {
        let queued = self
            .order
            .iter()
            .filter_map(|d| self.devices.get(d)?.front())
            .map(|e| e.record.received_ms);
        let retry = self.retry.iter().map(|r| r.oldest_received_ms);
        let parts = self.retry_parts.iter().map(|p| p.received_ms);
        queued.chain(retry).chain(parts).min()
    }

    /// Everything waiting, for rerouting after a shard map change: failed records, parts of
    /// failed aggregates, queued entries (in log order).
    pub fn take_all(&mut self) -> Waiting {
        let retry = self.retry.drain(..).collect();
        let parts = self.retry_parts.drain(..).collect();
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
        (retry, parts, entries)
    }

    /// May a request go out now (not counting the bucket)?
    pub fn may_send(&self, now: Instant, max_in_flight: usize) -> bool {
        self.has_work()
            && self.in_flight < max_in_flight
            && self.backoff_until.is_none_or(|t| now >= t)
            && self.next_aggregate.is_none_or(|t| now >= t)
    }

    /// Records and bytes one request may carry now: what the bucket has, within
    /// `max_request_bytes` and PutRecords' limits.
    fn request_budget(&mut self, now: Instant, max_request_bytes: u64) -> (u64, u64) {
        let (records, bytes) = self.bucket.available(now);
        (
            records.min(KINESIS_MAX_REQUEST_RECORDS as u64),
            bytes.min(max_request_bytes.min(KINESIS_MAX_REQUEST_BYTES)),
        )
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
        if format.aggregated() {
            return self.build_aggregates(now, format, max_record_bytes, max_request_bytes);
        }
        let (mut records, mut bytes) = self.request_budget(now, max_request_bytes);
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

    /// [`Self::build_request`] for aggregated formats: aggregates of up to
    /// `max_record_bytes`, each one record of the bucket. Parts of failed aggregates go
    /// first, in order; then devices in turn, each giving as many of its queued entries (in
    /// log order) as fit. Nothing is held back to fill an aggregate.
    fn build_aggregates(
        &mut self,
        now: Instant,
        format: RecordFormat,
        max_record_bytes: u64,
        max_request_bytes: u64,
    ) -> Vec<OutRecord> {
        let (mut records, mut bytes) = self.request_budget(now, max_request_bytes);
        let mut out = Vec::new();
        while records > 0 && self.has_work() {
            let cap = max_record_bytes.min(bytes);
            let mut agg = AggregateBuilder::new();
            let mut full = false;
            while let Some(part) = self.retry_parts.pop_front() {
                if let Err(part) = agg.try_add(part, cap) {
                    self.retry_parts.push_front(part);
                    full = true;
                    break;
                }
            }
            while !full {
                let Some(device) = self.order.pop_front() else {
                    break;
                };
                let Some(q) = self.devices.get_mut(&device) else {
                    continue;
                };
                if format == RecordFormat::KplCbor {
                    // One user record of as many of its entries as fit: the CBOR record of
                    // `cbor`, within what the aggregate has left (its framing in the part is
                    // at most 14 bytes + the key beyond what the builder counts).
                    let room = cap
                        .saturating_sub(agg.kinesis_bytes())
                        .saturating_sub(14 + device.len() as u64);
                    let mut b = RecordBuilder::new(RecordFormat::Cbor, device.clone());
                    let mut taken = Vec::new();
                    while let Some(e) = q.front() {
                        if !b.try_add(e.id, &e.record, room) {
                            break;
                        }
                        if let Some(e) = q.pop_front() {
                            taken.push(e);
                        }
                    }
                    let part = (!b.is_empty()).then(|| Part::from_cbor(b.finish()));
                    match part.map(|p| agg.try_add(p, cap)) {
                        Some(Ok(())) => {
                            self.queued_bytes -= taken.iter().map(|e| e.stored_bytes).sum::<u64>();
                            full = !q.is_empty();
                        }
                        // Nothing fits (or, against the bound above, the part did not):
                        // the entries stay queued, in order.
                        _ => {
                            for e in taken.into_iter().rev() {
                                q.push_front(e);
                            }
                            full = true;
                        }
                    }
                } else {
                    while let Some(e) = q.front() {
                        let part = Part::new(format, device.clone(), e.id, &e.record);
                        if agg.try_add(part, cap).is_err() {
                            full = true;
                            break;
                        }
                        self.queued_bytes -= e.stored_bytes;
                        q.pop_front();
                    }
                }
                if q.is_empty() {
                    self.devices.remove(&device);
                } else {
                    // Its next entry goes first into the next aggregate.
                    self.order.push_front(device);
                }
            }
            let Some(record) = agg.finish() else {
                break; // not even one part fits what is left of the bucket
            };
            records -= 1;
            bytes = bytes.saturating_sub(record.kinesis_bytes());
            out.push(record);
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
    fn aggregates_hold_many_devices_in_log_order_within_the_cap() {
        let mut lane = Lane::new("s".into(), LIMITS, None);
        for i in 0..300u64 {
            let d: Arc<str> = format!("d{}", i % 30).into();
            lane.push_entry(d.clone(), entry(i, &d, (i / 30) as u32, 3));
        }
        let out = lane.build_request(Instant::now(), RecordFormat::KplCbor, 8 << 10, 5 << 20);
        assert!(out.len() > 1, "more than one aggregate: {}", out.len());
        let mut next_seq: HashMap<String, u32> = HashMap::new();
        for r in &out {
            assert!(r.kinesis_bytes() <= 8 << 10, "{}", r.kinesis_bytes());
            assert_eq!(r.explicit_hash_key, Some(r.parts[0].hash));
            assert_eq!(*r.device, *r.parts[0].device);
            let users = crate::formats::kpl::deaggregate(&r.data).unwrap().unwrap();
            assert_eq!(
                users.len(),
                r.parts.len(),
                "kpl-cbor: one user record per entry"
            );
            for (p, u) in r.parts.iter().zip(&users) {
                assert_eq!(u.partition_key, &*p.device);
                let readings = crate::formats::read::readings(u.data).unwrap();
                let first = readings[0].seq as u32;
                let expected = next_seq.entry(p.device.to_string()).or_insert(0);
                assert_eq!(first, *expected, "{}: in order", p.device);
                *expected += 1;
            }
        }
        let total: u64 = out.iter().map(|r| r.readings).sum();
        assert_eq!(total, 900);
        assert!(!lane.has_work());
        assert_eq!(lane.queued_bytes(), 0);
    }

    #[test]
    fn failed_aggregates_come_back_as_parts_first() {
        let mut lane = Lane::new("s".into(), LIMITS, None);
        for i in 0..10u64 {
            lane.push_entry("a".into(), entry(i, "a", i as u32, 1));
        }
        let first = lane.build_request(Instant::now(), RecordFormat::KplJson, 64 << 10, 5 << 20);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].parts.len(), 10);
        lane.push_entry("a".into(), entry(10, "a", 10, 1));
        lane.push_retry_parts_front(first[0].parts.clone());
        let again = lane.build_request(Instant::now(), RecordFormat::KplJson, 64 << 10, 5 << 20);
        let ids: Vec<u64> = again.iter().flat_map(|r| r.ids.clone()).collect();
        assert_eq!(
            ids,
            (0..=10).collect::<Vec<_>>(),
            "retried parts, then the new entry"
        );
    }

    #[test]
    fn take_all_keeps_log_order() {
        let mut lane = Lane::new("s".into(), LIMITS, None);
        for (id, d) in [(5, "b"), (6, "a"), (7, "b")] {
            lane.push_entry(d.into(), entry(id, d, id as u32, 1));
        }
        let (_, _, entries) = lane.take_all();
        let ids: Vec<u64> = entries.iter().map(|(_, e)| e.id).collect();
        assert_eq!(ids, vec![5, 6, 7]);
        assert!(!lane.has_work());
    }
}
