//! The Kinesis record format: a long-lived contract with consumers. Change it only with a new
//! version number (`v` in CBOR, a new field set in JSON) and a note in the README.
//!
//! # What one record holds
//!
//! One Kinesis record holds one device's consecutive log entries (device batches), in log
//! order, coalesced up to `forward.max_record_bytes` (default 64 KiB, data + partition key).
//! A log entry is never split. The partition key is the device ID.
//!
//! Why coalesce: a shard takes 1,000 records/s *and* 1 MiB/s. One reading per record (~60
//! bytes) would use 6 % of the bytes at the record limit; one device batch per record is as
//! small as the device's batches (often 1-4 readings online). Coalescing what is waiting
//! keeps records large while a backlog drains, so the drain is bound by bytes, the limit
//! that moves the data; online, a record is whatever arrived since the last send, so
//! coalescing adds no delay.
//!
//! # `record_format = "cbor"` (default)
//!
//! ```cddl
//! record = {
//!   "v": 1,                  ; format version
//!   "device": tstr,          ; device ID (= partition key)
//!   "batches": [+ batch],    ; in (boot, seq) order
//! }
//! batch = [
//!   boot: uint,              ; device boot counter
//!   first_seq: uint,         ; readings[i] has sequence number first_seq + i
//!   received_ms: int,        ; gateway UTC ms when the batch arrived
//!   utc_offset_ms: int,      ; a reading's UTC ms = t_ms + utc_offset_ms
//!   readings: [+ reading],
//! ]
//! reading = [t_ms: uint, channel: uint, kind: uint, value: float32]
//! ```
//!
//! # `record_format = "json"`
//!
//! Newline-delimited JSON, one object per reading, every line complete on its own (Firehose
//! delivers records back to back, so Athena sees one row per line; a Lambda splits on `\n`):
//!
//! ```json
//! {"device":"node-1","boot":3,"seq":40,"t_ms":1000,"time_ms":1763999001000,"received_ms":1764000000000,"channel":0,"kind":0,"value":21.5}
//! ```
//!
//! # Identity and order
//!
//! `(device, boot, seq)` identifies a reading. Delivery is at least once: a crash between
//! Kinesis accepting a record and the buffer deleting it sends the record again, so
//! consumers drop duplicates by that triple. Order per device: records leave in log order,
//! which is `(boot, seq)` order; a record that failed (throttled or an error) is resent
//! before anything newer of its shard is sent, but newer records of the same device that were
//! already in flight may be accepted before it. So the stream holds each device's readings in
//! order except around a retry; consumers that need strict order sort by `(boot, seq)`.

use super::config::RecordFormat;
use crate::buffer::BatchRecord;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;

/// Format version written as `v`.
pub const CBOR_VERSION: u8 = 1;
/// Largest CBOR header beyond the device ID: map(3), "v", 1, "device", str header, "batches",
/// array header.
const CBOR_HEADER_MAX: usize = 1 + 2 + 1 + 7 + 2 + 8 + 5;

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
}

impl OutRecord {
    /// Bytes Kinesis counts: partition key + data.
    pub fn kinesis_bytes(&self) -> u64 {
        (self.device.len() + self.data.len()) as u64
    }
}

/// `minicbor` writer appending to a `Vec`.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl minicbor::encode::Write for VecWriter<'_> {
    type Error = Infallible;
    fn write_all(&mut self, buf: &[u8]) -> Result<(), Infallible> {
        self.0.extend_from_slice(buf);
        Ok(())
    }
}

type CborResult = Result<(), minicbor::encode::Error<Infallible>>;

fn cbor_batch(out: &mut Vec<u8>, e: &BatchRecord) -> CborResult {
    let mut enc = minicbor::Encoder::new(VecWriter(out));
    enc.array(5)?
        .u32(e.boot)?
        .u32(e.first_seq)?
        .i64(e.received_ms)?
        .i64(e.utc_offset_ms)?
        .array(e.readings.len() as u64)?;
    for r in &e.readings {
        enc.array(4)?
            .u64(r.t_ms)?
            .u8(r.channel)?
            .u8(r.kind)?
            .f32(r.value)?;
    }
    Ok(())
}

fn cbor_header(out: &mut Vec<u8>, device: &str, batches: usize) -> CborResult {
    minicbor::Encoder::new(VecWriter(out))
        .map(3)?
        .str("v")?
        .u8(CBOR_VERSION)?
        .str("device")?
        .str(device)?
        .str("batches")?
        .array(batches as u64)?;
    Ok(())
}

fn json_batch(out: &mut Vec<u8>, device: &str, e: &BatchRecord) {
    let mut line = String::with_capacity(160);
    for (i, r) in e.readings.iter().enumerate() {
        line.clear();
        // Device IDs are [A-Za-z0-9._-] (telemetry_wire::device_id): no escaping needed.
        let _ = write!(
            line,
            "{{\"device\":\"{device}\",\"boot\":{},\"seq\":{},\"t_ms\":{},\"time_ms\":{},\"received_ms\":{},\"channel\":{},\"kind\":{},\"value\":",
            e.boot,
            u64::from(e.first_seq) + i as u64,
            r.t_ms,
            e.utc_ms(r),
            e.received_ms,
            r.channel,
            r.kind,
        );
        let _ = write!(line, "{}", JsonNumber(r.value));
        line.push_str("}\n");
        out.extend_from_slice(line.as_bytes());
    }
}

/// A finite `f32` as a JSON number in its shortest round-trip form: plain decimals for
/// ordinary magnitudes, an exponent for very large or small ones (ingest rejects non-finite
/// values; one would be written as `null`). Shared with the export's JSON files.
#[derive(Debug, Clone, Copy)]
pub struct JsonNumber(pub f32);

impl std::fmt::Display for JsonNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        let a = v.abs();
        if !v.is_finite() {
            write!(f, "null")
        } else if a == 0.0 || (1e-5..1e16).contains(&a) {
            write!(f, "{v}")
        } else {
            write!(f, "{v:e}")
        }
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
            RecordFormat::Cbor => CBOR_HEADER_MAX + self.device.len(),
            RecordFormat::Json => 0,
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
            RecordFormat::Cbor => {
                // Writing to a Vec cannot fail.
                let _ = cbor_batch(&mut self.body, entry);
            }
            RecordFormat::Json => json_batch(&mut self.body, &self.device, entry),
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
            RecordFormat::Cbor => {
                let mut data = Vec::with_capacity(CBOR_HEADER_MAX + self.body.len());
                let _ = cbor_header(&mut data, &self.device, self.batches);
                data.extend_from_slice(&self.body);
                data
            }
            RecordFormat::Json => self.body,
        };
        OutRecord {
            device: self.device,
            data,
            ids: self.ids,
            readings: self.readings,
            oldest_received_ms: self.oldest_received_ms,
            attempts: 0,
        }
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
