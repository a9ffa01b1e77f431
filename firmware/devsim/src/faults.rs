//! Corrupt uplink payloads for fault injection. Every payload made here is guaranteed to be
//! rejected by `UplinkBatch::decode` (checked before it is returned), so it can never be
//! stored as a reading: the real readings must still all arrive.

use sensor_node_core::rng::SplitMix64;
use telemetry_wire::{DeviceId, Reading, SensorKind, UplinkBatch, UplinkHeader};

/// Kinds of garbage, chosen at random.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Garbage {
    RandomBytes,
    Truncated,
    WrongVersion,
    TrailingBytes,
    BitFlip,
}

/// Writes a corrupt uplink payload for `device`/`boot` into `out`; returns its length.
pub fn corrupt_payload(
    rng: &mut SplitMix64,
    device: DeviceId<'_>,
    boot: u32,
    out: &mut [u8],
) -> Option<usize> {
    let kind = match rng.below(5) {
        0 => Garbage::RandomBytes,
        1 => Garbage::Truncated,
        2 => Garbage::WrongVersion,
        3 => Garbage::TrailingBytes,
        _ => Garbage::BitFlip,
    };
    let len = match kind {
        Garbage::RandomBytes => {
            let len = (1 + rng.below(64) as usize).min(out.len());
            out[..len]
                .iter_mut()
                .for_each(|b| *b = rng.next_u64() as u8);
            len
        }
        _ => {
            let valid = plausible_batch(rng, device, boot, out)?;
            match kind {
                Garbage::Truncated => 1 + rng.below(valid as u64 - 1) as usize,
                Garbage::WrongVersion => {
                    // Bytes 0..3 are: map header, key 0, version.
                    out[2] = telemetry_wire::SCHEMA_VERSION.wrapping_add(1);
                    valid
                }
                Garbage::TrailingBytes => {
                    *out.get_mut(valid)? = 0;
                    valid + 1
                }
                _ => {
                    let bit = rng.below(valid as u64 * 8) as usize;
                    out[bit / 8] ^= 1 << (bit % 8);
                    valid
                }
            }
        }
    };
    if UplinkBatch::decode(&out[..len]).is_ok() {
        // A bit flip can land in a value and still decode: fall back to a sure rejection.
        out[2] = telemetry_wire::SCHEMA_VERSION.wrapping_add(1);
        if UplinkBatch::decode(&out[..len]).is_ok() {
            return None;
        }
    }
    Some(len)
}

/// A valid batch for this device with made-up readings; returns its length.
fn plausible_batch(
    rng: &mut SplitMix64,
    device: DeviceId<'_>,
    boot: u32,
    out: &mut [u8],
) -> Option<usize> {
    let count = 1 + rng.below(8) as usize;
    let readings: Vec<Reading> = (0..count)
        .map(|i| Reading {
            t_ms: i as u64,
            channel: 0,
            kind: SensorKind::TEMPERATURE_C,
            value: rng.unit_f32(),
        })
        .collect();
    let header = UplinkHeader {
        device_id: device,
        boot,
        first_seq: rng.below(1_000) as u32,
        held_from: 0,
        dropped: 0,
        sent_at_ms: count as u64,
        boot_utc_ms: None,
        mac: None,
    };
    telemetry_wire::uplink::encode_uplink(&header, readings.iter(), out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_corrupt_payload_is_rejected_by_the_decoder() {
        let mut rng = SplitMix64::new(1);
        let device = DeviceId::new("sim-0001").expect("valid");
        let mut out = [0u8; 4096];
        let mut made = 0;
        for _ in 0..5_000 {
            if let Some(len) = corrupt_payload(&mut rng, device, 3, &mut out) {
                assert!(UplinkBatch::decode(&out[..len]).is_err());
                made += 1;
            }
        }
        assert!(made > 4_900);
    }
}
