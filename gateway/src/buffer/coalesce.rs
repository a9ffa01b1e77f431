//! Coalescing: a device's next batch joins the log record its previous batch opened in the
//! same group, instead of a record (and a log entry) of its own.
//!
//! Why: SD-card wear. At a typical site every batch holds one reading, and a log entry costs
//! about 46 bytes of B-tree leaf for a one-reading record (33 bytes of record, the 8-byte key
//! and redb's slot), of which a second reading in the same record adds only its own 7 or 8
//! bytes; the commit's own cost (header, table and freed-page trees, the log's right edge:
//! about 7 pages) does not change. Measured with `gateway/examples/commit_wear.rs` and
//! `docs/benchmarks.md` ("Wear at random phases").
//!
//! Invariants (what makes a coalesced record the same data as two records):
//! - Only a record that is still the group's last, not yet handed to the fresh feed
//!   ([`super::fresh`]), is extended: the forwarder only ever sees a record in its final form,
//!   under its final id. The writer holds back at most that one record: while it admits
//!   batches already queued, then at most `buffer.coalesce_wait_us` (200 µs) for the next one
//!   when none is queued, so the feed is delayed by no more than that.
//! - Same device and boot, and the batch's stored readings start right after the record's last
//!   (so log order stays `(boot, seq)` order and `first_seq + count` covers exactly them).
//! - Same `received_ms` and `utc_offset_ms`: every reading keeps the arrival time and UTC time
//!   a record of its own would have given it (a batch of a different millisecond or clock
//!   offset starts a record of its own).
//! - At most [`MAX_READINGS`] readings per record, the most a single batch may carry.

use super::layout::{BatchRecord, RecordReading};

/// Most readings in one record (the uplink contract's batch limit).
pub const MAX_READINGS: usize = 128;

/// Whether `readings` of `device`/`boot` starting at `first_seq`, received at `received_ms`
/// with `utc_offset_ms`, may be appended to `record`.
pub fn extends(
    record: &BatchRecord,
    device: &str,
    boot: u32,
    first_seq: u32,
    received_ms: i64,
    utc_offset_ms: i64,
    readings: &[RecordReading],
) -> bool {
    record.device == device
        && record.boot == boot
        && u64::from(record.first_seq) + record.readings.len() as u64 == u64::from(first_seq)
        && record.received_ms == received_ms
        && record.utc_offset_ms == utc_offset_ms
        && record.readings.len() + readings.len() <= MAX_READINGS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(t_ms: u64) -> RecordReading {
        RecordReading {
            t_ms,
            channel: 0,
            kind: 0,
            value: 1.0,
        }
    }

    fn record() -> BatchRecord {
        BatchRecord {
            device: "sim-0001".into(),
            boot: 4,
            first_seq: 10,
            received_ms: 1_764_000_000_000,
            utc_offset_ms: 1_763_999_000_000,
            readings: vec![reading(1_000)],
        }
    }

    fn next(r: &BatchRecord, device: &str, boot: u32, seq: u32, at: i64, offset: i64) -> bool {
        extends(r, device, boot, seq, at, offset, &[reading(1_000)])
    }

    #[test]
    fn only_the_same_device_boot_instant_and_next_seq_join() {
        let r = record();
        let (at, off) = (r.received_ms, r.utc_offset_ms);
        assert!(next(&r, "sim-0001", 4, 11, at, off));
        assert!(!next(&r, "sim-0002", 4, 11, at, off), "another device");
        assert!(!next(&r, "sim-0001", 5, 11, at, off), "another boot");
        assert!(!next(&r, "sim-0001", 4, 12, at, off), "a gap");
        assert!(!next(&r, "sim-0001", 4, 10, at, off), "overlap");
        assert!(
            !next(&r, "sim-0001", 4, 11, at + 1, off),
            "another arrival ms"
        );
        assert!(
            !next(&r, "sim-0001", 4, 11, at, off - 1),
            "another clock offset"
        );
    }

    #[test]
    fn a_record_never_exceeds_one_batch_worth_of_readings() {
        let mut r = record();
        r.readings = vec![reading(1); MAX_READINGS - 1];
        let seq = r.first_seq + r.readings.len() as u32;
        let (at, off) = (r.received_ms, r.utc_offset_ms);
        assert!(extends(&r, "sim-0001", 4, seq, at, off, &[reading(2)]));
        assert!(!extends(&r, "sim-0001", 4, seq, at, off, &[reading(2); 2]));
    }

    #[test]
    fn a_coalesced_record_decodes_to_the_readings_of_both_batches() {
        let mut r = record();
        r.readings.push(reading(1_001));
        let mut bytes = Vec::new();
        r.encode_into(&mut bytes);
        let back = BatchRecord::decode(&bytes).expect("decodes");
        assert_eq!((back.first_seq, back.last_seq()), (10, 11));
        assert_eq!(back.utc_ms(&back.readings[1]), r.utc_offset_ms + 1_001);
    }
}
