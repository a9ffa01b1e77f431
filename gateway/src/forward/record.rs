//! What one Kinesis record holds, for each record format (the shapes themselves are in
//! [`crate::formats`]).
//!
//! - `cbor`, `json`: one device's consecutive log entries (device batches), in log order,
//!   coalesced up to `forward.max_record_bytes` (data + partition key); the partition key is
//!   the device ID. Coalescing what is waiting keeps records large while a backlog drains (the
//!   drain is bound by bytes, the limit that moves the data); online, a record is whatever
//!   arrived since the last send.
//! - `kpl-cbor`, `kpl-json`: many devices per record, all predicted to hash into the shard the
//!   record is sent to, as a KPL aggregate of [`Part`]s, each under its device ID as partition
//!   key. `kpl-cbor`: a part is one user record, the CBOR record of a device's consecutive
//!   entries (one online; as many as fit while a backlog drains, so a drain costs the same
//!   bytes per reading as `cbor`). `kpl-json`: a part is one log entry, one user record per
//!   reading. The aggregate's partition key is its first part's device and
//!   its ExplicitHashKey that device's hash key, so it lands on the first part's shard. A part
//!   is never split, and the parts of one aggregate are accepted or refused together, except
//!   when the aggregate lands on another shard than predicted (a split the map has not seen
//!   yet): then the parts outside that shard are sent again (see `forward/forwarder.rs`).
//!
//! A log entry is never split across records, so it is deleted once the record holding it is
//! accepted.

use super::config::RecordFormat;
use super::shard_map::hash_key;
use crate::buffer::BatchRecord;
use crate::formats::cbor::{CBOR_HEADER_MAX, write_batch, write_header};
use crate::formats::{json, kpl};
use std::sync::Arc;

/// A Kinesis record ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct OutRecord {
    /// Partition key (the device ID).
    pub device: Arc<str>,
    /// Data blob.
    pub data: Vec<u8>,
    /// Log entries it holds (deleted from the buffer once it is accepted).
    pub ids: Vec<u64>,
    /// Readings it holds.
    pub readings: u64,
    /// Arrival time of its oldest entry (gateway UTC ms), for the lag metric.
    pub oldest_received_ms: i64,
    /// Times it was sent and refused or lost.
    pub attempts: u32,
    /// Aggregates: where Kinesis puts it (the first part's hash key).
    pub explicit_hash_key: Option<u128>,
    /// Aggregates: the user records it holds, per log entry; empty for plain records.
    pub parts: Vec<Part>,
}

/// One log entry as user records of an aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// Partition key of its user records (the device ID).
    pub device: Arc<str>,
    /// The device's hash key.
    pub hash: u128,
    /// Its user records' data.
    pub user_records: Vec<Vec<u8>>,
    /// Its log entries.
    pub ids: Vec<u64>,
    /// Readings it holds.
    pub readings: u64,
    /// Arrival of its entry (gateway UTC ms).
    pub received_ms: i64,
}

impl Part {
    /// A `kpl-cbor` part: the CBOR record `record` built (one device's entries).
    pub fn from_cbor(record: OutRecord) -> Self {
        Self {
            hash: hash_key(&record.device),
            device: record.device,
            user_records: vec![record.data],
            ids: record.ids,
            readings: record.readings,
            received_ms: record.oldest_received_ms,
        }
    }

    /// The user records of log entry `id` in `format` (`kpl-cbor` or `kpl-json`).
    pub fn new(format: RecordFormat, device: Arc<str>, id: u64, entry: &BatchRecord) -> Self {
        let user_records = match format {
            RecordFormat::KplJson => (0..entry.readings.len())
                .map(|i| {
                    let mut data = Vec::with_capacity(192);
                    json::write_reading(&mut data, entry, i);
                    data
                })
                .collect(),
            _ => {
                let mut data = Vec::with_capacity(CBOR_HEADER_MAX + 32 + 21 * entry.readings.len());
                write_header(&mut data, &device, 1);
                write_batch(&mut data, entry);
                vec![data]
            }
        };
        Self {
            hash: hash_key(&device),
            device,
            user_records,
            ids: vec![id],
            readings: entry.readings.len() as u64,
            received_ms: entry.received_ms,
        }
    }
}

impl OutRecord {
    /// Bytes Kinesis counts: partition key + data.
    pub fn kinesis_bytes(&self) -> u64 {
        (self.device.len() + self.data.len()) as u64
    }
}

/// Builds one record from a device's entries, within a byte cap.
#[derive(Debug)]
pub struct RecordBuilder {
    format: RecordFormat,
    device: Arc<str>,
    /// CBOR: the encoded batches (the header is added by `finish`); JSON: the lines.
    body: Vec<u8>,
    batches: usize,
    ids: Vec<u64>,
    readings: u64,
    oldest_received_ms: i64,
}

impl RecordBuilder {
    /// An empty record for `device`.
    pub fn new(format: RecordFormat, device: Arc<str>) -> Self {
        Self {
            format,
            device,
            body: Vec::new(),
            batches: 0,
            ids: Vec::new(),
            readings: 0,
            oldest_received_ms: i64::MAX,
        }
    }

    /// Upper bound of the finished record's Kinesis bytes (key + data).
    pub fn kinesis_bytes(&self) -> u64 {
        let header = match self.format {
            RecordFormat::Json | RecordFormat::KplJson => 0,
            RecordFormat::Cbor | RecordFormat::KplCbor => CBOR_HEADER_MAX + self.device.len(),
        };
        (self.device.len() + header + self.body.len()) as u64
    }

    /// Entries added so far.
    pub fn is_empty(&self) -> bool {
        self.batches == 0
    }

    /// Adds log entry `id` if the record stays within `cap` Kinesis bytes; false (and
    /// nothing added) otherwise.
    pub fn try_add(&mut self, id: u64, entry: &BatchRecord, cap: u64) -> bool {
        let before = self.body.len();
        match self.format {
            RecordFormat::Json | RecordFormat::KplJson => {
                for i in 0..entry.readings.len() {
                    json::write_line(&mut self.body, entry, i);
                }
            }
            RecordFormat::Cbor | RecordFormat::KplCbor => write_batch(&mut self.body, entry),
        }
        if self.kinesis_bytes() > cap {
            self.body.truncate(before);
            return false;
        }
        self.batches += 1;
        self.ids.push(id);
        self.readings += entry.readings.len() as u64;
        self.oldest_received_ms = self.oldest_received_ms.min(entry.received_ms);
        true
    }

    /// The finished record.
    pub fn finish(self) -> OutRecord {
        let data = match self.format {
            RecordFormat::Json | RecordFormat::KplJson => self.body,
            RecordFormat::Cbor | RecordFormat::KplCbor => {
                let mut data = Vec::with_capacity(CBOR_HEADER_MAX + self.body.len());
                write_header(&mut data, &self.device, self.batches);
                data.extend_from_slice(&self.body);
                data
            }
        };
        OutRecord {
            device: self.device,
            data,
            ids: self.ids,
            readings: self.readings,
            oldest_received_ms: self.oldest_received_ms,
            attempts: 0,
            explicit_hash_key: None,
            parts: Vec::new(),
        }
    }
}

/// Builds one KPL aggregate from [`Part`]s, within a byte cap (partition key + data).
#[derive(Debug, Default)]
pub struct AggregateBuilder {
    size: kpl::SizeCounter,
    parts: Vec<Part>,
}

impl AggregateBuilder {
    /// An empty aggregate.
    pub fn new() -> Self {
        Self::default()
    }

    /// No part yet.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Kinesis bytes of the aggregate with `part` added (its partition key is the first
    /// part's device).
    fn bytes_with(&self, part: &Part) -> u64 {
        let mut size = self.size.clone();
        for data in &part.user_records {
            size.add(&part.device, data.len());
        }
        let key = self
            .parts
            .first()
            .map_or(part.device.len(), |p| p.device.len());
        (key + size.size()) as u64
    }

    /// Adds `part` if the aggregate stays within `cap`; gives it back otherwise.
    pub fn try_add(&mut self, part: Part, cap: u64) -> Result<(), Part> {
        if self.bytes_with(&part) > cap {
            return Err(part);
        }
        for data in &part.user_records {
            self.size.add(&part.device, data.len());
        }
        self.parts.push(part);
        Ok(())
    }

    /// Kinesis bytes so far (partition key + aggregate; the framing when empty).
    pub fn kinesis_bytes(&self) -> u64 {
        let key = self.parts.first().map_or(0, |p| p.device.len());
        (key + self.size.size()) as u64
    }

    /// Whether `part` would fit within `cap`.
    pub fn fits(&self, part: &Part, cap: u64) -> bool {
        self.bytes_with(part) <= cap
    }

    /// The finished Kinesis record (`None` when empty).
    pub fn finish(self) -> Option<OutRecord> {
        let first = self.parts.first()?;
        let data = kpl::encode(self.parts.iter().flat_map(|p| {
            p.user_records
                .iter()
                .map(move |d| (p.device.as_ref(), d.as_slice()))
        }));
        Some(OutRecord {
            device: first.device.clone(),
            explicit_hash_key: Some(first.hash),
            data,
            ids: self
                .parts
                .iter()
                .flat_map(|p| p.ids.iter().copied())
                .collect(),
            readings: self.parts.iter().map(|p| p.readings).sum(),
            oldest_received_ms: self
                .parts
                .iter()
                .map(|p| p.received_ms)
                .min()
                .unwrap_or(i64::MAX),
            attempts: 0,
            parts: self.parts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::RecordReading;
    use ciborium::Value;

    fn entry(boot: u32, first_seq: u32, n: usize) -> BatchRecord {
        BatchRecord {
            device: "node-1".into(),
            boot,
            first_seq,
            received_ms: 1_764_000_000_000,
            utc_offset_ms: 1_763_999_000_000,
            readings: (0..n)
                .map(|i| RecordReading {
                    t_ms: 1000 + i as u64,
                    channel: i as u8,
                    kind: 1,
                    value: 21.5,
                })
                .collect(),
        }
    }

    fn get<'a>(map: &'a Value, key: &str) -> &'a Value {
        map.as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some(key)))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("{key} missing"))
    }

    #[test]
    fn cbor_record_decodes_with_an_independent_library() {
        let mut b = RecordBuilder::new(RecordFormat::Cbor, "node-1".into());
        assert!(b.try_add(7, &entry(3, 40, 2), 1 << 20));
        assert!(b.try_add(9, &entry(4, 0, 30), 1 << 20));
        let estimate = b.kinesis_bytes();
        let r = b.finish();
        assert!(r.kinesis_bytes() <= estimate);
        assert_eq!((r.ids.clone(), r.readings), (vec![7, 9], 32));
        let v: Value = ciborium::from_reader(r.data.as_slice()).expect("valid CBOR");
        assert_eq!(get(&v, "v").as_integer(), Some(1.into()));
        assert_eq!(get(&v, "device").as_text(), Some("node-1"));
        let batches = get(&v, "batches").as_array().expect("array");
        assert_eq!(batches.len(), 2);
        let b0 = batches[0].as_array().expect("batch");
        assert_eq!(b0[0].as_integer(), Some(3.into()));
        assert_eq!(b0[1].as_integer(), Some(40.into()));
        assert_eq!(b0[2].as_integer(), Some(1_764_000_000_000i64.into()));
        let readings = b0[4].as_array().expect("readings");
        let r1 = readings[1].as_array().expect("reading");
        assert_eq!(r1[0].as_integer(), Some(1001.into()));
        assert_eq!(r1[1].as_integer(), Some(1.into()));
        assert_eq!(r1[3].as_float(), Some(21.5));
    }

    #[test]
    fn json_lines_are_complete_objects() {
        let mut b = RecordBuilder::new(RecordFormat::Json, "node-1".into());
        assert!(b.try_add(1, &entry(3, 40, 2), 1 << 20));
        let r = b.finish();
        let text = String::from_utf8(r.data).expect("utf-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["device"], "node-1");
        assert_eq!(lines[1]["boot"], 3);
        assert_eq!(lines[1]["seq"], 41);
        assert_eq!(lines[1]["time_ms"], 1_763_999_001_001i64);
        assert_eq!(lines[1]["value"], 21.5);
    }

    #[test]
    fn the_cap_is_never_exceeded_and_entries_are_never_split() {
        for format in [RecordFormat::Cbor, RecordFormat::Json] {
            let mut b = RecordBuilder::new(format, "node-1".into());
            let cap = 2_000;
            let mut added = 0;
            for i in 0..100 {
                if b.try_add(i, &entry(1, i as u32 * 10, 10), cap) {
                    added += 1;
                }
            }
            assert!(added > 0);
            let r = b.finish();
            assert!(
                r.kinesis_bytes() <= cap,
                "{format:?}: {}",
                r.kinesis_bytes()
            );
            assert_eq!(r.readings, added * 10);
        }
    }

    #[test]
    fn a_full_batch_fits_the_minimum_cap() {
        let mut long = entry(u32::MAX, u32::MAX - 200, 128);
        long.device = "d".repeat(64);
        for r in &mut long.readings {
            r.t_ms = u64::MAX / 2;
            r.value = -1.234_567_8e-30;
        }
        for format in [RecordFormat::Cbor, RecordFormat::Json] {
            let mut b = RecordBuilder::new(format, long.device.as_str().into());
            assert!(
                b.try_add(1, &long, super::super::config::min_record_bytes(format)),
                "{format:?}"
            );
        }
    }
}
