//! Hand-made payloads of the wire contract, for tests that publish as (or against) a device
//! without the firmware core.

use telemetry_wire::uplink::encode_uplink;
use telemetry_wire::{Ack, DeviceId, Reading, SensorKind, UplinkHeader};

/// An uplink batch of `count` temperature readings from `first_seq` in `boot`, with the
/// device holding readings from `held_from`. Reading times are small offsets from boot and
/// values differ per seq (so each is a 4-byte float in the CBOR).
///
/// # Panics
/// On an invalid device ID or a batch the contract refuses to encode (a test's mistake).
#[allow(clippy::expect_used)]
pub fn batch(device: &str, boot: u32, first_seq: u32, count: u32, held_from: u32) -> Vec<u8> {
    let header = UplinkHeader {
        device_id: DeviceId::new(device).expect("valid device id"),
        boot,
        first_seq,
        held_from,
        dropped: 0,
        sent_at_ms: 100_000,
        boot_utc_ms: None,
        mac: None,
    };
    let readings: Vec<Reading> = (0..count)
        .map(|i| Reading {
            t_ms: u64::from(i) * 10,
            channel: 0,
            kind: SensorKind::TEMPERATURE_C,
            value: 20.0 + first_seq.wrapping_add(i) as f32 / 100.0,
        })
        .collect();
    let mut out = vec![0u8; 4096];
    let n = encode_uplink(&header, readings.iter(), &mut out).expect("encodes");
    out.truncate(n);
    out
}

/// An ack payload (what only the gateway may publish).
///
/// # Panics
/// On an invalid device ID.
#[allow(clippy::expect_used)]
pub fn ack(device: &str, boot: u32, through_seq: u32) -> Vec<u8> {
    let ack = Ack {
        device_id: DeviceId::new(device).expect("valid device id"),
        boot,
        through_seq,
    };
    let mut out = [0u8; telemetry_wire::limits::MAX_ACK_BYTES];
    let n = ack.encode(&mut out).expect("encodes");
    out[..n].to_vec()
}
