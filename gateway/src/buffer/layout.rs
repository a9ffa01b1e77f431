//! On-disk layout of the buffer (redb). A long-lived format: change it only with a migration
//! and a bump of [`LAYOUT_VERSION`].
//!
//! # Tables
//!
//! | table | key | value | written |
//! |---|---|---|---|
//! | `log` | arrival id `u64`, strictly increasing | [`BatchRecord`]: one device's newly stored readings | every group commit (append) |
//! | `devices` | device ID `&str` | [`DeviceState`] as of checkpoint | at checkpoints |
//! | `meta` | `&str` | `u64` | every commit (totals), checkpoints |
//!
//! # Why an append-only log
//!
//! SD-card wear decides the layout. Every redb commit rewrites the B-tree pages it touched.
//! Keys that grow monotonically touch only the rightmost path of the tree, so a commit writes
//! about its payload plus a fixed cost (see `../shared/reference/RUMQTTD.md`). Keying readings
//! by device instead would touch one leaf per device per commit: with 1,000 devices that is
//! about 4 MB written for 50 KB of readings.
//!
//! Readers fit the log: the forwarder scans it in arrival order and routes each record to
//! the shard its device maps to (a record holds one device's readings, so one shard), keeping a
//! cursor per shard so a hot shard does not hold back the others; the export scans it and
//! filters by time; retention and drop-oldest eviction cut its head, which is the oldest data.
//!
//! # Device state and checkpoints
//!
//! Dedupe needs each device's `(boot, next_seq)` (see [`super::sequencer`]). Writing it on
//! every commit would again touch many leaves, so the writer keeps it in memory and persists
//! it as a checkpoint: the `devices` table plus `meta.checkpoint_log_id`, the highest log id
//! the checkpoint reflects. On open, states are the checkpoint advanced by replaying the log
//! entries after `checkpoint_log_id`.
//!
//! # Invariants
//!
//! - A log entry exists only if the commit that wrote it is durable (`Durability::Immediate`),
//!   and acks are sent only after that commit returned.
//! - No log entry with an id above `checkpoint_log_id` is deleted without a checkpoint at or
//!   above its id in the same transaction; so replay after a crash never misses a batch and
//!   dedupe never regresses.
//! - `meta.buffered_readings` / `meta.buffered_bytes` equal the sums over `log` (updated in the
//!   transaction that changes `log`).
//! - Within a device, log order is `(boot, seq)` order: the sequencer only appends readings
//!   past the device's `next_seq`.

use redb::TableDefinition;

/// Version of this layout, stored in `meta` under [`META_LAYOUT_VERSION`].
pub const LAYOUT_VERSION: u64 = 1;

/// Arrival id → [`BatchRecord`] bytes.
pub const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Device ID → [`DeviceState`] bytes, as of the checkpoint.
pub const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("devices");
/// Named counters.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// `meta` key of the layout version.
pub const META_LAYOUT_VERSION: &str = "layout_version";
/// `meta` key of the number of readings in `log`.
pub const META_BUFFERED_READINGS: &str = "buffered_readings";
/// `meta` key of the bytes of the values in `log`.
pub const META_BUFFERED_BYTES: &str = "buffered_bytes";
/// `meta` key of the highest log id reflected in `devices`.
pub const META_CHECKPOINT_LOG_ID: &str = "checkpoint_log_id";

/// One sensor reading inside a [`BatchRecord`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordReading {
    /// Device monotonic ms since boot.
    pub t_ms: u64,
    /// Sensor input on the device.
    pub channel: u8,
    /// Sensor kind code (`telemetry_wire::SensorKind`).
    pub kind: u8,
    /// The value (finite).
    pub value: f32,
}

/// One device's consecutive readings stored by one commit.
///
/// Encoding (little-endian):
///
/// | bytes | field |
/// |---|---|
/// | 0 | record format, 1 |
/// | 1 | device ID length `n` (1..=64) |
/// | 2..2+n | device ID |
/// | +4 | `boot` u32 |
/// | +4 | `first_seq` u32 |
/// | +8 | `received_ms` i64: gateway UTC ms at arrival |
/// | +8 | `utc_offset_ms` i64: reading UTC = `t_ms + utc_offset_ms` |
/// | +2 | reading count `c` u16 (1..=128) |
/// | 14 × c | readings: `t_ms` u64, `channel` u8, `kind` u8, `value` f32 |
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRecord {
    /// The device.
    pub device: String,
    /// Boot counter.
    pub boot: u32,
    /// Sequence number of `readings[0]`.
    pub first_seq: u32,
    /// Gateway UTC ms when the batch arrived.
    pub received_ms: i64,
    /// Added to a reading's `t_ms` gives its UTC ms (see `telemetry_wire::time`).
    pub utc_offset_ms: i64,
    /// The readings; `readings[i]` has sequence number `first_seq + i`.
    pub readings: Vec<RecordReading>,
}

const RECORD_FORMAT: u8 = 1;
const READING_LEN: usize = 14;

/// A stored record that does not parse: the file was damaged outside redb's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("corrupt batch record")]
pub struct CorruptRecord;

impl BatchRecord {
    /// Sequence number of the last reading.
    pub fn last_seq(&self) -> u32 {
        self.first_seq + (self.readings.len() as u32).saturating_sub(1)
    }

    /// UTC ms of a reading of this record.
    pub fn utc_ms(&self, reading: &RecordReading) -> i64 {
        i64::try_from(reading.t_ms)
            .unwrap_or(i64::MAX)
            .saturating_add(self.utc_offset_ms)
    }

    /// Encodes the record, appending to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(2 + self.device.len() + 26 + READING_LEN * self.readings.len());
        out.push(RECORD_FORMAT);
        out.push(self.device.len() as u8);
        out.extend_from_slice(self.device.as_bytes());
        out.extend_from_slice(&self.boot.to_le_bytes());
        out.extend_from_slice(&self.first_seq.to_le_bytes());
        out.extend_from_slice(&self.received_ms.to_le_bytes());
        out.extend_from_slice(&self.utc_offset_ms.to_le_bytes());
        out.extend_from_slice(&(self.readings.len() as u16).to_le_bytes());
        for r in &self.readings {
            out.extend_from_slice(&r.t_ms.to_le_bytes());
            out.push(r.channel);
            out.push(r.kind);
            out.extend_from_slice(&r.value.to_le_bytes());
        }
    }

    /// Decodes a stored record.
    pub fn decode(bytes: &[u8]) -> Result<Self, CorruptRecord> {
        let header = RecordHeader::decode(bytes)?;
        let body = bytes.get(header.readings_at..).ok_or(CorruptRecord)?;
        if body.len() != header.count as usize * READING_LEN {
            return Err(CorruptRecord);
        }
        let readings = body
            .chunks_exact(READING_LEN)
            .map(|c| RecordReading {
                t_ms: u64::from_le_bytes(array(&c[0..8])),
                channel: c[8],
                kind: c[9],
                value: f32::from_le_bytes(array(&c[10..14])),
            })
            .collect();
        Ok(Self {
            device: header.device.to_owned(),
            boot: header.boot,
            first_seq: header.first_seq,
            received_ms: header.received_ms,
            utc_offset_ms: header.utc_offset_ms,
            readings,
        })
    }
}

/// The fixed part of a record, parsed without touching the readings (for replay and routing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader<'a> {
    /// The device.
    pub device: &'a str,
    /// Boot counter.
    pub boot: u32,
    /// First sequence number.
    pub first_seq: u32,
    /// Gateway UTC ms at arrival.
    pub received_ms: i64,
    /// UTC offset of the readings.
    pub utc_offset_ms: i64,
    /// Number of readings.
    pub count: u16,
    readings_at: usize,
}

fn array<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    a
}

impl<'a> RecordHeader<'a> {
    /// Parses the header of a stored record.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, CorruptRecord> {
        let (&format, rest) = bytes.split_first().ok_or(CorruptRecord)?;
        let (&n, rest) = rest.split_first().ok_or(CorruptRecord)?;
        if format != RECORD_FORMAT || rest.len() < n as usize + 26 {
            return Err(CorruptRecord);
        }
        let device = std::str::from_utf8(&rest[..n as usize]).map_err(|_| CorruptRecord)?;
        let f = &rest[n as usize..];
        Ok(Self {
            device,
            boot: u32::from_le_bytes(array(&f[0..4])),
            first_seq: u32::from_le_bytes(array(&f[4..8])),
            received_ms: i64::from_le_bytes(array(&f[8..16])),
            utc_offset_ms: i64::from_le_bytes(array(&f[16..24])),
            count: u16::from_le_bytes(array(&f[24..26])),
            readings_at: 2 + n as usize + 26,
        })
    }

    /// Sequence number after the last reading.
    pub fn end_seq(&self) -> u32 {
        self.first_seq.saturating_add(u32::from(self.count))
    }
}

/// Per-device dedupe state (see [`super::sequencer`]).
///
/// Encoding: `boot` u32, `next_seq` u32, `last_seen_ms` i64, little-endian (16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceState {
    /// Latest boot seen from the device.
    pub boot: u32,
    /// Next sequence number expected in `boot`; every `seq < next_seq` is stored or settled.
    pub next_seq: u32,
    /// Gateway UTC ms of the last batch that stored readings.
    pub last_seen_ms: i64,
}

impl DeviceState {
    /// Encoded length in bytes.
    pub const LEN: usize = 16;

    /// Encodes into the fixed layout.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..4].copy_from_slice(&self.boot.to_le_bytes());
        b[4..8].copy_from_slice(&self.next_seq.to_le_bytes());
        b[8..16].copy_from_slice(&self.last_seen_ms.to_le_bytes());
        b
    }

    /// Decodes the fixed layout.
    pub fn from_bytes(b: &[u8]) -> Result<Self, CorruptRecord> {
        if b.len() != Self::LEN {
            return Err(CorruptRecord);
        }
        Ok(Self {
            boot: u32::from_le_bytes(array(&b[0..4])),
            next_seq: u32::from_le_bytes(array(&b[4..8])),
            last_seen_ms: i64::from_le_bytes(array(&b[8..16])),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> BatchRecord {
        BatchRecord {
            device: "node-1".into(),
            boot: 3,
            first_seq: 40,
            received_ms: 1_764_000_000_000,
            utc_offset_ms: 1_763_999_000_000,
            readings: vec![
                RecordReading {
                    t_ms: 1_000,
                    channel: 0,
                    kind: 0,
                    value: 21.5,
                },
                RecordReading {
                    t_ms: 2_000,
                    channel: 1,
                    kind: 1,
                    value: -3.25,
                },
            ],
        }
    }

    #[test]
    fn record_round_trips_and_header_agrees() {
        let mut bytes = Vec::new();
        record().encode_into(&mut bytes);
        assert_eq!(bytes.len(), 2 + 6 + 26 + 28);
        assert_eq!(BatchRecord::decode(&bytes), Ok(record()));
        let h = RecordHeader::decode(&bytes).expect("header");
        assert_eq!(
            (h.device, h.boot, h.first_seq, h.count, h.end_seq()),
            ("node-1", 3, 40, 2, 42)
        );
        assert_eq!(record().utc_ms(&record().readings[1]), 1_763_999_002_000);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let mut bytes = Vec::new();
        record().encode_into(&mut bytes);
        for cut in 0..bytes.len() {
            assert_eq!(
                BatchRecord::decode(&bytes[..cut]),
                Err(CorruptRecord),
                "cut {cut}"
            );
        }
        bytes[1] = 200;
        assert_eq!(BatchRecord::decode(&bytes), Err(CorruptRecord));
    }

    #[test]
    fn device_state_round_trips() {
        let s = DeviceState {
            boot: 9,
            next_seq: 77,
            last_seen_ms: -1,
        };
        assert_eq!(DeviceState::from_bytes(&s.to_bytes()), Ok(s));
        assert_eq!(DeviceState::from_bytes(&[0u8; 17]), Err(CorruptRecord));
    }
}
