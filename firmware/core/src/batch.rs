//! Encoding a planned batch straight from the ring into the MQTT payload buffer.
//!
//! Size guarantee: a batch of `MAX_READINGS_PER_BATCH` readings always fits in
//! `MAX_UPLINK_BYTES`, whatever the values (see [`WORST_CASE_BATCH_BYTES`]), so batches are
//! limited by count only and an encode can fail only for lack of buffer space.

use crate::ring::Ring;
use crate::sender::BatchPlan;
use telemetry_wire::limits::{
    MAX_DEVICE_ID_LEN, MAX_MAC_LEN, MAX_READINGS_PER_BATCH, MAX_UPLINK_BYTES,
};
use telemetry_wire::uplink::encode_uplink;
use telemetry_wire::{DecodeError, DeviceId, EncodeError, UplinkHeader};

/// Largest CBOR encoding of one reading: array header 1, `t_ms` u64 9, channel 2, kind 2,
/// f32 value 5.
pub const MAX_READING_BYTES: usize = 1 + 9 + 2 + 2 + 5;

/// Largest header: map header 1; keys 1 byte each (10); version 1; device ID 2 + 64;
/// boot, first_seq, held_from, dropped 5 each; sent_at and boot_utc 9 each; readings array
/// header 3; MAC 2 + 32.
pub const MAX_HEADER_BYTES: usize =
    1 + 10 + 1 + (2 + MAX_DEVICE_ID_LEN) + 4 * 5 + 2 * 9 + 3 + (2 + MAX_MAC_LEN);

/// Largest possible encoded batch.
pub const WORST_CASE_BATCH_BYTES: usize =
    MAX_HEADER_BYTES + MAX_READINGS_PER_BATCH * MAX_READING_BYTES;

const _: () = assert!(
    WORST_CASE_BATCH_BYTES <= MAX_UPLINK_BYTES,
    "a full batch must always fit"
);

/// Who is sending: the fields of the header that do not change from batch to batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Identity<'d> {
    /// This device.
    pub device_id: DeviceId<'d>,
    /// This boot's counter value.
    pub boot: u32,
    /// UTC of boot in ms since the epoch, once known.
    pub boot_utc_ms: Option<u64>,
}

/// Encodes `plan`'s readings from `ring` into `out`, stamped `sent_at_ms = now` (or the newest
/// reading's time if the clock disagrees). Returns the payload length.
pub fn encode_batch<const N: usize>(
    identity: &Identity<'_>,
    ring: &Ring<N>,
    plan: &BatchPlan,
    now: u64,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let readings = ring.span(plan.first_seq, plan.count);
    if readings.len() != plan.count {
        // The plan no longer matches the ring (it must be encoded before the ring changes).
        return Err(EncodeError::Invalid(DecodeError::EmptyBatch));
    }
    let newest = readings.clone().map(|r| r.t_ms).max().unwrap_or(0);
    let header = UplinkHeader {
        device_id: identity.device_id,
        boot: identity.boot,
        first_seq: plan.first_seq,
        held_from: plan.held_from,
        dropped: plan.dropped,
        sent_at_ms: now.max(newest),
        boot_utc_ms: identity.boot_utc_ms,
        mac: None,
    };
    encode_uplink(&header, readings, out)
}

#[cfg(any(test, feature = "target-tests"))]
// Test code: a failed expectation is the test failing (clippy.toml allows this under
// `#[cfg(test)]` only, which this module is not when `target-tests` compiles it for a target).
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
pub(crate) mod tests {
    use super::*;
    use telemetry_wire::limits::MAX_DEVICE_ID_LEN;
    use telemetry_wire::{Reading, SensorKind, UplinkBatch};

    fn plan(first_seq: u32, count: usize) -> BatchPlan {
        BatchPlan {
            first_seq,
            count,
            held_from: first_seq,
            dropped: 3,
            resent: 0,
        }
    }

    #[cfg_attr(test, test)]
    pub(crate) fn round_trips_through_the_decoder() {
        let mut ring = Ring::<8>::new();
        for i in 0..5u64 {
            let r = Reading {
                t_ms: 100 + i,
                channel: 1,
                kind: SensorKind::HUMIDITY_PCT,
                value: 40.5 + i as f32,
            };
            ring.push(r).expect("seq space");
        }
        let id = Identity {
            device_id: DeviceId::new("node-1").expect("valid"),
            boot: 7,
            boot_utc_ms: Some(5),
        };
        let mut out = [0u8; MAX_UPLINK_BYTES];
        let p = BatchPlan {
            first_seq: 1,
            count: 3,
            held_from: 0,
            dropped: 2,
            resent: 0,
        };
        let len = encode_batch(&id, &ring, &p, 1_000, &mut out).expect("encodes");
        let batch = UplinkBatch::decode(&out[..len]).expect("decodes");
        assert_eq!(batch.header.device_id.as_str(), "node-1");
        assert_eq!(
            (
                batch.header.boot,
                batch.header.first_seq,
                batch.header.held_from
            ),
            (7, 1, 0)
        );
        assert_eq!(
            (
                batch.header.dropped,
                batch.header.sent_at_ms,
                batch.header.boot_utc_ms
            ),
            (2, 1_000, Some(5))
        );
        let got: heapless::Vec<(u32, u64, f32), 8> = batch
            .sequenced()
            .map(|(s, r)| (s, r.t_ms, r.value))
            .collect();
        assert_eq!(
            got.as_slice(),
            &[(1, 101, 41.5), (2, 102, 42.5), (3, 103, 43.5)]
        );
    }

    #[cfg_attr(test, test)]
    pub(crate) fn worst_case_full_batch_fits_the_uplink_limit() {
        let mut ring = Ring::<{ MAX_READINGS_PER_BATCH }>::new();
        for _ in 0..MAX_READINGS_PER_BATCH {
            let r = Reading {
                t_ms: u64::MAX - 1,
                channel: 255,
                kind: SensorKind(255),
                value: 1.0e-30,
            };
            ring.push(r).expect("seq space");
        }
        let long = [b'd'; MAX_DEVICE_ID_LEN];
        let long = core::str::from_utf8(&long).expect("ascii");
        let id = Identity {
            device_id: DeviceId::new(long).expect("valid"),
            boot: u32::MAX,
            boot_utc_ms: Some(u64::MAX),
        };
        let mut out = [0u8; MAX_UPLINK_BYTES];
        let len = encode_batch(
            &id,
            &ring,
            &plan(0, MAX_READINGS_PER_BATCH),
            u64::MAX,
            &mut out,
        )
        .expect("fits");
        assert!(
            len <= WORST_CASE_BATCH_BYTES,
            "{len} > {WORST_CASE_BATCH_BYTES}"
        );
        let batch = UplinkBatch::decode(&out[..len]).expect("decodes");
        assert_eq!(batch.readings.len(), MAX_READINGS_PER_BATCH);
    }

    #[cfg_attr(test, test)]
    pub(crate) fn small_buffer_and_stale_plan_are_errors_not_panics() {
        let mut ring = Ring::<4>::new();
        ring.push(Reading {
            t_ms: 1,
            channel: 0,
            kind: SensorKind::TEMPERATURE_C,
            value: 1.0,
        })
        .expect("seq");
        let id = Identity {
            device_id: DeviceId::new("n").expect("valid"),
            boot: 1,
            boot_utc_ms: None,
        };
        let mut tiny = [0u8; 8];
        assert_eq!(
            encode_batch(&id, &ring, &plan(0, 1), 5, &mut tiny),
            Err(EncodeError::BufferTooSmall)
        );
        let mut out = [0u8; 256];
        assert!(encode_batch(&id, &ring, &plan(0, 2), 5, &mut out).is_err());
    }
}
