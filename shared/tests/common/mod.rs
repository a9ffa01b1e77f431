//! Fixtures shared by the contract's integration tests.
#![allow(dead_code, clippy::expect_used)]

use telemetry_wire::{DeviceId, Reading, SensorKind, UplinkBatch, UplinkHeader};

/// A header with the given device and fields that pass validation.
pub fn header(device: &str) -> UplinkHeader<'_> {
    UplinkHeader {
        device_id: DeviceId::new(device).expect("valid id"),
        boot: 7,
        first_seq: 1000,
        held_from: 990,
        dropped: 3,
        sent_at_ms: 86_400_123,
        boot_utc_ms: None,
        mac: None,
    }
}

/// A batch from `header` with `readings`.
pub fn batch<'a>(header: UplinkHeader<'a>, readings: &[Reading]) -> UplinkBatch<'a> {
    UplinkBatch {
        header,
        readings: heapless::Vec::from_slice(readings).expect("fits"),
    }
}

pub const R0: Reading = Reading {
    t_ms: 86_400_000,
    channel: 0,
    kind: SensorKind::TEMPERATURE_C,
    value: 21.5,
};
pub const R1: Reading = Reading {
    t_ms: 86_400_100,
    channel: 1,
    kind: SensorKind::HUMIDITY_PCT,
    value: 48.25,
};
