//! Turning an untrusted MQTT publish into an [`IncomingBatch`], or a counted rejection.
//! Nothing here panics: every failure is a [`Rejection`] with a stable reason label.

use crate::buffer::{IncomingBatch, RecordReading};
use std::time::Instant;
use telemetry_wire::topics::{self, TopicKind};
use telemetry_wire::{DecodeError, TopicError, UplinkBatch};

/// Why a publish was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The topic is not UTF-8.
    #[error("topic is not UTF-8")]
    TopicNotUtf8,
    /// The topic is not an uplink topic of the protocol.
    #[error("not an uplink topic")]
    UnknownTopic,
    /// The topic's device level is not a valid device ID.
    #[error("invalid device id in topic")]
    TopicDeviceId,
    /// The payload does not decode or breaks the contract.
    #[error("payload: {0}")]
    Payload(DecodeError),
    /// The payload's device ID differs from the topic's.
    #[error("payload device id differs from topic")]
    DeviceMismatch,
}

impl Rejection {
    /// Stable label for the `gateway_ingest_rejected_total{reason}` counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TopicNotUtf8 => "topic_not_utf8",
            Self::UnknownTopic => "unknown_topic",
            Self::TopicDeviceId => "topic_device_id",
            Self::Payload(e) => e.reason(),
            Self::DeviceMismatch => "device_mismatch",
        }
    }
}

/// A validated batch and what the device reported dropping.
#[derive(Debug)]
pub struct Validated {
    /// The batch for the buffer.
    pub batch: IncomingBatch,
    /// Readings the device dropped since its previous batch.
    pub device_dropped: u32,
}

/// The device whose uplink topic `topic` is, if it is one: a rejected message on it counts
/// against that device (the broker lets only the device itself publish there).
pub fn uplink_device(topic: &[u8]) -> Option<String> {
    let topic = std::str::from_utf8(topic).ok()?;
    match topics::parse_topic(topic) {
        Ok((TopicKind::Uplink, device)) => Some(device.as_str().to_owned()),
        _ => None,
    }
}

/// Validates one publish received at `received_ms` (gateway UTC ms).
pub fn validate(topic: &[u8], payload: &[u8], received_ms: i64) -> Result<Validated, Rejection> {
    let topic = std::str::from_utf8(topic).map_err(|_| Rejection::TopicNotUtf8)?;
    let (kind, device) = topics::parse_topic(topic).map_err(|e| match e {
        TopicError::DeviceId(_) => Rejection::TopicDeviceId,
        _ => Rejection::UnknownTopic,
    })?;
    if kind != TopicKind::Uplink {
        return Err(Rejection::UnknownTopic);
    }
    let batch = UplinkBatch::decode(payload).map_err(Rejection::Payload)?;
    if batch.header.device_id != device {
        return Err(Rejection::DeviceMismatch);
    }
    let h = &batch.header;
    let utc_offset_ms = telemetry_wire::time::reading_utc_ms(h, 0, received_ms);
    let readings = batch
        .readings
        .iter()
        .map(|r| RecordReading {
            t_ms: r.t_ms,
            channel: r.channel,
            kind: r.kind.0,
            value: r.value,
        })
        .collect();
    Ok(Validated {
        batch: IncomingBatch {
            device: device.as_str().to_owned(),
            boot: h.boot,
            first_seq: h.first_seq,
            held_from: h.held_from,
            received_ms,
            utc_offset_ms,
            readings,
            arrived: Instant::now(),
        },
        device_dropped: h.dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use telemetry_wire::{DeviceId, Reading, SensorKind, UplinkHeader};

    fn payload(device: &str) -> Vec<u8> {
        let header = UplinkHeader {
            device_id: DeviceId::new(device).expect("valid"),
            boot: 2,
            first_seq: 10,
            held_from: 8,
            dropped: 1,
            sent_at_ms: 5_000,
            boot_utc_ms: None,
            mac: None,
        };
        let r = Reading {
            t_ms: 4_000,
            channel: 0,
            kind: SensorKind::TEMPERATURE_C,
            value: 20.0,
        };
        let mut out = vec![0u8; 512];
        let n =
            telemetry_wire::uplink::encode_uplink(&header, [r].iter(), &mut out).expect("encodes");
        out.truncate(n);
        out
    }

    #[test]
    fn accepts_and_anchors_time() {
        let v = validate(b"tlm/v1/dev-1/up", &payload("dev-1"), 1_000_000).expect("valid");
        assert_eq!(
            (v.batch.device.as_str(), v.batch.boot, v.batch.first_seq),
            ("dev-1", 2, 10)
        );
        assert_eq!(v.batch.held_from, 8);
        assert_eq!(v.device_dropped, 1);
        // Reading at t=4000 sent at 5000, received at 1_000_000 → UTC 999_000.
        assert_eq!(v.batch.utc_offset_ms + 4_000, 999_000);
    }

    #[test]
    fn every_rejection_has_its_reason() {
        let cases: Vec<(&[u8], Vec<u8>, &str)> = vec![
            (b"tlm/v1/dev-1/\xff", payload("dev-1"), "topic_not_utf8"),
            (b"other/topic", payload("dev-1"), "unknown_topic"),
            (b"tlm/v1/dev-1/ack", payload("dev-1"), "unknown_topic"),
            (b"tlm/v1/d+v/up", payload("dev-1"), "topic_device_id"),
            (b"tlm/v1/dev-1/up", payload("dev-2"), "device_mismatch"),
            (b"tlm/v1/dev-1/up", vec![0xff, 0x00], "malformed_cbor"),
            (b"tlm/v1/dev-1/up", vec![0u8; 5000], "too_large"),
        ];
        for (topic, payload, reason) in cases {
            let err = validate(topic, &payload, 0).expect_err("rejected");
            assert_eq!(err.reason(), reason, "{err}");
        }
    }
}
