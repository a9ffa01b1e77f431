//! On-disk layout of the buffer (redb). A long-lived format: change it only with a migration
//! and a bump of [`LAYOUT_VERSION`].
//!
//! # Tables
//!
//! | table | key | value | written |
//! |---|---|---|---|
//! | `log` | arrival id `u64`, strictly increasing | [`BatchRecord`]: one device's newly stored readings | every group commit (append) |
//! | `devices` | device ID `&str` | [`DeviceState`] as of checkpoint | at checkpoints |
//! | `meta` | `&str` | `u64` | commits that delete, checkpoints, every [`TOTALS_EVERY_ENTRIES`] appends |
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
//! A record is usually one batch, but a device's batches that reach the writer back to back,
//! with the same arrival ms and clock offset, share one record (see [`super::coalesce`]): a
//! log entry costs about 46 bytes of leaf for a one-reading record, a second reading in it 8.
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
//!   dedupe never regresses. (So the writer holds the forwarder's deletes of such entries for
//!   the next checkpoint, `buffer.delete_delay_ms`, instead of checkpointing with each.)
//! - `meta.buffered_readings` / `meta.buffered_bytes` equal the sums over the `log` entries with
//!   ids up to `meta.totals_log_id`; the entries above it are only appends, so the true totals
//!   are those plus the sums over the tail. Every transaction that removes entries writes the
//!   totals; one that only appends need not (a page less per commit: SD-card wear), until
//!   [`TOTALS_EVERY_ENTRIES`] entries wait uncounted. `totals_log_id >= checkpoint_log_id`, so
//!   recovery counts the tail in the replay it does anyway. A file without the key (written
//!   before it existed) had its totals written by every commit and gets the key at open.
//! - Within a device, log order is `(boot, seq)` order: the sequencer only appends readings
//!   past the device's `next_seq`.

use super::varint;
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
/// `meta` key of the highest log id reflected in `buffered_readings` / `buffered_bytes`.
pub const META_TOTALS_LOG_ID: &str = "totals_log_id";
/// Appended log entries after which the totals are written even without a delete or a
/// checkpoint: bounds the tail that [`META_TOTALS_LOG_ID`] readers add up.
pub const TOTALS_EVERY_ENTRIES: u64 = 10_000;

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
/// Encoding, format 2 (written since the buffer's wear was cut; format 1 is still read, so a
/// buffer written by an older gateway opens unchanged). `varint` is unsigned LEB128,
/// `zigzag` a signed value zigzag-mapped and then varint-coded; both at most 10 bytes.
///
/// | field | encoding |
/// |---|---|
/// | record format, 2 | u8 |
/// | device ID length `n` (1..=64), device ID | u8, `n` bytes |
/// | `boot` | varint (u32) |
/// | `first_seq` | varint (u32) |
/// | `received_ms` | zigzag |
/// | `received_ms - utc_offset_ms` (wrapping; about the device's uptime) | zigzag |
/// | reading count `c` (1..=128) | varint (u16) |
/// | `c` readings: `t_ms` minus the previous reading's (the first: minus `received_ms - utc_offset_ms`, the device's uptime at arrival, so a reading's age), wrapping | zigzag |
/// | then `channel`, `kind` | u8, u8 |
/// | then `value` | f32 little-endian |
///
/// A one-reading record of an 8-character device is ~32 bytes (format 1: 50), which is most
/// of what a commit writes at a typical site (see `docs/benchmarks.md`, SD-card wear).
///
/// Format 1 (little-endian, fixed width): format u8, `n` u8, device, `boot` u32, `first_seq`
/// u32, `received_ms` i64, `utc_offset_ms` i64, count u16, then per reading `t_ms` u64,
/// `channel` u8, `kind` u8, `value` f32 (14 bytes).
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

/// The format [`BatchRecord::encode_into`] writes.
const RECORD_FORMAT: u8 = 2;
/// The fixed-width format of the first layout, still decoded.
const RECORD_FORMAT_FIXED: u8 = 1;
/// Bytes of a format-1 reading.
const FIXED_READING_LEN: usize = 14;
/// Bytes of a format-1 header after the device ID.
const FIXED_HEADER_LEN: usize = 26;

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

    /// Encodes the record (format 2), appending to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(2 + self.device.len() + 32 + 12 * self.readings.len());
        out.push(RECORD_FORMAT);
        out.push(self.device.len() as u8);
        out.extend_from_slice(self.device.as_bytes());
        varint::put(out, u64::from(self.boot));
        varint::put(out, u64::from(self.first_seq));
        let uptime_ms = self.received_ms.wrapping_sub(self.utc_offset_ms);
        varint::put_signed(out, self.received_ms);
        varint::put_signed(out, uptime_ms);
        varint::put(out, self.readings.len() as u64);
        let mut previous_t = uptime_ms as u64;
        for r in &self.readings {
            varint::put_signed(out, r.t_ms.wrapping_sub(previous_t) as i64);
            previous_t = r.t_ms;
            out.push(r.channel);
            out.push(r.kind);
            out.extend_from_slice(&r.value.to_le_bytes());
        }
    }

    /// Decodes a stored record (either format).
    pub fn decode(bytes: &[u8]) -> Result<Self, CorruptRecord> {
        let header = RecordHeader::decode(bytes)?;
        let body = bytes.get(header.readings_at..).ok_or(CorruptRecord)?;
        let readings = match header.format {
            RECORD_FORMAT_FIXED => decode_fixed_readings(body, header.count)?,
            _ => {
                let uptime_ms = header.received_ms.wrapping_sub(header.utc_offset_ms);
                decode_readings(body, header.count, uptime_ms as u64)?
            }
        };
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

/// Format-2 readings: exactly `count` of them and nothing after; the first reading's time is
/// relative to `uptime_ms`.
fn decode_readings(
    mut body: &[u8],
    count: u16,
    uptime_ms: u64,
) -> Result<Vec<RecordReading>, CorruptRecord> {
    let mut readings = Vec::with_capacity(usize::from(count));
    let mut previous_t = uptime_ms;
    for _ in 0..count {
        let delta = varint::take_signed(&mut body)?;
        let (fixed, rest) = body.split_at_checked(6).ok_or(CorruptRecord)?;
        body = rest;
        previous_t = previous_t.wrapping_add(delta as u64);
        readings.push(RecordReading {
            t_ms: previous_t,
            channel: fixed[0],
            kind: fixed[1],
            value: f32::from_le_bytes(array(&fixed[2..6])),
        });
    }
    if !body.is_empty() {
        return Err(CorruptRecord);
    }
    Ok(readings)
}

/// Format-1 readings: fixed width, exactly `count` of them.
fn decode_fixed_readings(body: &[u8], count: u16) -> Result<Vec<RecordReading>, CorruptRecord> {
    if body.len() != usize::from(count) * FIXED_READING_LEN {
        return Err(CorruptRecord);
    }
    Ok(body
        .chunks_exact(FIXED_READING_LEN)
        .map(|c| RecordReading {
            t_ms: u64::from_le_bytes(array(&c[0..8])),
            channel: c[8],
            kind: c[9],
            value: f32::from_le_bytes(array(&c[10..14])),
        })
        .collect())
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
    format: u8,
    readings_at: usize,
}

fn array<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    a
}

impl<'a> RecordHeader<'a> {
    /// Parses the header of a stored record (either format).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, CorruptRecord> {
        let (&format, rest) = bytes.split_first().ok_or(CorruptRecord)?;
        let (&n, rest) = rest.split_first().ok_or(CorruptRecord)?;
        let (device, mut f) = rest.split_at_checked(usize::from(n)).ok_or(CorruptRecord)?;
        let device = std::str::from_utf8(device).map_err(|_| CorruptRecord)?;
        match format {
            RECORD_FORMAT => {
                let boot = u32::try_from(varint::take(&mut f)?).map_err(|_| CorruptRecord)?;
                let first_seq = u32::try_from(varint::take(&mut f)?).map_err(|_| CorruptRecord)?;
                let received_ms = varint::take_signed(&mut f)?;
                let uptime_ms = varint::take_signed(&mut f)?;
                let count = u16::try_from(varint::take(&mut f)?).map_err(|_| CorruptRecord)?;
                Ok(Self {
                    device,
                    boot,
                    first_seq,
                    received_ms,
                    utc_offset_ms: received_ms.wrapping_sub(uptime_ms),
                    count,
                    format,
                    readings_at: bytes.len() - f.len(),
                })
            }
            RECORD_FORMAT_FIXED if f.len() >= FIXED_HEADER_LEN => Ok(Self {
                device,
                boot: u32::from_le_bytes(array(&f[0..4])),
                first_seq: u32::from_le_bytes(array(&f[4..8])),
                received_ms: i64::from_le_bytes(array(&f[8..16])),
                utc_offset_ms: i64::from_le_bytes(array(&f[16..24])),
                count: u16::from_le_bytes(array(&f[24..26])),
                format,
                readings_at: 2 + usize::from(n) + FIXED_HEADER_LEN,
            }),
            _ => Err(CorruptRecord),
        }
    }

    /// Sequence number after the last reading.
    pub fn end_seq(&self) -> u32 {
        self.first_seq.saturating_add(u32::from(self.count))
    }
}

/// Per-device dedupe state (see [`super::sequencer`]).
///
/// Encoding: `boot` u32, `next_seq` u32, `last_seen_ms` i64, then `previous.boot` u32 and
/// `previous.next_seq` u32, little-endian (24 bytes; files written before the previous boot
/// was kept have 16, read with no previous boot). The boot candidate is kept in memory only:
/// after a restart it is counted again from zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceState {
    /// The device's current boot (see [`super::sequencer`] for how it may move).
    pub boot: u32,
    /// Next sequence number expected in `boot`; every `seq < next_seq` is stored or settled.
    pub next_seq: u32,
    /// Gateway UTC ms of the last batch that stored readings.
    pub last_seen_ms: i64,
    /// The boot before `boot`, where it stood when the device left it (`None`: no switch yet).
    pub previous: Option<BootPosition>,
    /// An unusual claim the sequencer has not adopted yet (a boot far ahead or the previous
    /// one, a `held_from` far ahead), and how many batches in a row made it. Not persisted.
    pub candidate: Claim,
}

/// A boot and its next expected sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootPosition {
    /// The boot.
    pub boot: u32,
    /// Every `seq < next_seq` of that boot is stored or settled.
    pub next_seq: u32,
}

/// Batches in a row that made a claim the sequencer has not adopted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Claim {
    /// The claimed boot.
    pub boot: u32,
    /// The claimed `held_from`.
    pub held_from: u32,
    /// How many batches in a row made it (0: no claim).
    pub batches: u32,
}

impl DeviceState {
    /// Encoded length in bytes.
    pub const LEN: usize = 24;
    /// Encoded length before the previous boot was kept.
    const LEN_V1: usize = 16;

    /// Encodes into the fixed layout. No previous boot is stored as `next_seq = u32::MAX`
    /// with boot equal to the current one (a position the sequencer never records).
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let previous = self.previous.unwrap_or(BootPosition {
            boot: self.boot,
            next_seq: u32::MAX,
        });
        let mut b = [0u8; Self::LEN];
        b[0..4].copy_from_slice(&self.boot.to_le_bytes());
        b[4..8].copy_from_slice(&self.next_seq.to_le_bytes());
        b[8..16].copy_from_slice(&self.last_seen_ms.to_le_bytes());
        b[16..20].copy_from_slice(&previous.boot.to_le_bytes());
        b[20..24].copy_from_slice(&previous.next_seq.to_le_bytes());
        b
    }

    /// Decodes the fixed layout (24 bytes, or 16 from older files).
    pub fn from_bytes(b: &[u8]) -> Result<Self, CorruptRecord> {
        if b.len() != Self::LEN && b.len() != Self::LEN_V1 {
            return Err(CorruptRecord);
        }
        let boot = u32::from_le_bytes(array(&b[0..4]));
        let previous = match b.get(16..24) {
            Some(p) => Some(BootPosition {
                boot: u32::from_le_bytes(array(&p[0..4])),
                next_seq: u32::from_le_bytes(array(&p[4..8])),
            })
            .filter(|p| !(p.boot == boot && p.next_seq == u32::MAX)),
            None => None,
        };
        Ok(Self {
            boot,
            next_seq: u32::from_le_bytes(array(&b[4..8])),
            last_seen_ms: i64::from_le_bytes(array(&b[8..16])),
            previous,
            candidate: Claim::default(),
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
        // format, id, boot 1, first_seq 1, received_ms 6, uptime 3, count 1, then readings:
        // age -999,000 ms (3), 6; delta 1,000 ms (2), 6.
        assert_eq!(bytes.len(), 2 + 6 + 12 + 17);
        assert_eq!(BatchRecord::decode(&bytes), Ok(record()));
        let h = RecordHeader::decode(&bytes).expect("header");
        assert_eq!(
            (h.device, h.boot, h.first_seq, h.count, h.end_seq()),
            ("node-1", 3, 40, 2, 42)
        );
        assert_eq!(record().utc_ms(&record().readings[1]), 1_763_999_002_000);
    }

    /// A record as the first layout wrote it (format 1, fixed width): still read.
    fn fixed_width_bytes(r: &BatchRecord) -> Vec<u8> {
        let mut b = vec![RECORD_FORMAT_FIXED, r.device.len() as u8];
        b.extend_from_slice(r.device.as_bytes());
        b.extend_from_slice(&r.boot.to_le_bytes());
        b.extend_from_slice(&r.first_seq.to_le_bytes());
        b.extend_from_slice(&r.received_ms.to_le_bytes());
        b.extend_from_slice(&r.utc_offset_ms.to_le_bytes());
        b.extend_from_slice(&(r.readings.len() as u16).to_le_bytes());
        for x in &r.readings {
            b.extend_from_slice(&x.t_ms.to_le_bytes());
            b.extend_from_slice(&[x.channel, x.kind]);
            b.extend_from_slice(&x.value.to_le_bytes());
        }
        b
    }

    #[test]
    fn format_1_records_still_decode() {
        let bytes = fixed_width_bytes(&record());
        assert_eq!(bytes.len(), 2 + 6 + 26 + 28);
        assert_eq!(BatchRecord::decode(&bytes), Ok(record()));
        let h = RecordHeader::decode(&bytes).expect("header");
        assert_eq!((h.received_ms, h.count), (record().received_ms, 2));
        for cut in 0..bytes.len() {
            assert_eq!(
                BatchRecord::decode(&bytes[..cut]),
                Err(CorruptRecord),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn extreme_values_round_trip() {
        let mut r = record();
        r.boot = u32::MAX;
        r.first_seq = u32::MAX - 1;
        r.received_ms = i64::MIN;
        r.utc_offset_ms = i64::MAX;
        r.readings[0].t_ms = u64::MAX;
        r.readings[1].t_ms = 0;
        r.readings[1].value = f32::MIN_POSITIVE;
        let mut bytes = Vec::new();
        r.encode_into(&mut bytes);
        assert_eq!(BatchRecord::decode(&bytes), Ok(r));
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
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(BatchRecord::decode(&longer), Err(CorruptRecord));
        // Every single-byte change decodes to something or to an error, never a panic.
        for at in 0..bytes.len() {
            for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut changed = bytes.clone();
                changed[at] = value;
                let _ = BatchRecord::decode(&changed);
            }
        }
        bytes[0] = 3;
        assert_eq!(BatchRecord::decode(&bytes), Err(CorruptRecord));
        bytes[0] = RECORD_FORMAT;
        bytes[1] = 200;
        assert_eq!(BatchRecord::decode(&bytes), Err(CorruptRecord));
    }

    #[test]
    fn device_state_round_trips() {
        let s = DeviceState {
            boot: 9,
            next_seq: 77,
            last_seen_ms: -1,
            ..DeviceState::default()
        };
        assert_eq!(DeviceState::from_bytes(&s.to_bytes()), Ok(s));
        let with_previous = DeviceState {
            previous: Some(BootPosition {
                boot: 8,
                next_seq: 1_000,
            }),
            ..s
        };
        assert_eq!(
            DeviceState::from_bytes(&with_previous.to_bytes()),
            Ok(with_previous)
        );
        // A 16-byte state from an older file: no previous boot.
        assert_eq!(DeviceState::from_bytes(&s.to_bytes()[..16]), Ok(s));
        assert_eq!(DeviceState::from_bytes(&[0u8; 17]), Err(CorruptRecord));
    }
}
