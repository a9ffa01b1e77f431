//! Golden vectors, checked in both directions: our encoder must produce exactly the committed
//! bytes, and the committed bytes must decode to exactly the fixture. A failure here means the
//! wire format changed: that needs a schema version bump, not a vector update.
#![allow(clippy::expect_used, clippy::panic)]

mod common;

use common::{R0, R1, batch, header};
use telemetry_wire::{Ack, DecodeError, DeviceId, UplinkBatch};

fn vector(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/vectors/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let hex: String = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    hex::decode(hex).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn encode_uplink(b: &UplinkBatch<'_>) -> Vec<u8> {
    let mut out = [0u8; 4096];
    let n = b.encode(&mut out).expect("encodes");
    out[..n].to_vec()
}

#[test]
fn uplink_minimal() {
    let fixture = batch(header("node-1"), &[R0, R1]);
    let bytes = vector("uplink_minimal");
    assert_eq!(hex::encode(encode_uplink(&fixture)), hex::encode(&bytes));
    assert_eq!(UplinkBatch::decode(&bytes), Ok(fixture));
}

#[test]
fn uplink_full() {
    let mac = [0xA5u8; 16];
    let mut h = header("site3.room-12_a");
    h.boot_utc_ms = Some(1_764_000_000_000);
    h.mac = Some(&mac);
    let fixture = batch(h, &[R0]);
    let bytes = vector("uplink_full");
    assert_eq!(hex::encode(encode_uplink(&fixture)), hex::encode(&bytes));
    assert_eq!(UplinkBatch::decode(&bytes), Ok(fixture));
}

#[test]
fn ack() {
    let fixture = Ack {
        device_id: DeviceId::new("node-1").expect("valid"),
        boot: 7,
        through_seq: 1001,
    };
    let bytes = vector("ack");
    let mut out = [0u8; 128];
    let n = fixture.encode(&mut out).expect("encodes");
    assert_eq!(hex::encode(&out[..n]), hex::encode(&bytes));
    assert_eq!(Ack::decode(&bytes), Ok(fixture));
}

/// Hand-written payloads that break one rule each, with the rejection they must get.
#[test]
fn rejections() {
    let cases: &[(&str, DecodeError)] = &[
        (
            "reject_unsupported_version",
            DecodeError::UnsupportedVersion,
        ),
        ("reject_missing_readings", DecodeError::MissingField(8)),
        ("reject_duplicate_key", DecodeError::DuplicateField(2)),
        ("reject_nan_value", DecodeError::NonFiniteValue),
        (
            "reject_bad_device_id",
            DecodeError::DeviceId(telemetry_wire::DeviceIdError::BadCharacter),
        ),
        (
            "reject_held_from_after_first_seq",
            DecodeError::HeldFromAfterFirstSeq,
        ),
        ("reject_trailing_bytes", DecodeError::TrailingBytes),
        ("reject_indefinite_map", DecodeError::IndefiniteLength),
    ];
    for (name, expected) in cases {
        assert_eq!(
            UplinkBatch::decode(&vector(name)).err(),
            Some(*expected),
            "{name}"
        );
    }
}

/// Unknown keys are skipped so that newer senders can add optional fields.
#[test]
fn skips_unknown_keys() {
    let bytes = vector("uplink_unknown_key");
    let decoded = UplinkBatch::decode(&bytes).expect("unknown key 20 is skipped");
    assert_eq!(decoded, batch(header("node-1"), &[R0]));
}
