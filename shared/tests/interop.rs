//! Interoperability with an independent CBOR implementation (ciborium), built from the CDDL
//! alone: payloads another library produces must decode, and ours must read as the schema says.
#![allow(clippy::expect_used)]

use ciborium::value::{Integer, Value};
use telemetry_wire::{Ack, SensorKind, UplinkBatch};

fn int(n: i128) -> Value {
    Value::Integer(Integer::try_from(n).expect("fits"))
}

fn to_bytes(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("ciborium encodes");
    out
}

fn key(k: i128, v: Value) -> (Value, Value) {
    (int(k), v)
}

/// What a Python or JavaScript producer typically emits: double-precision or integer values,
/// keys in another order, an optional field this version does not know.
#[test]
fn foreign_payload_decodes() {
    let readings = Value::Array(vec![
        Value::Array(vec![int(5_000), int(0), int(0), Value::Float(21.25)]),
        Value::Array(vec![int(5_100), int(2), int(2), int(101_325)]),
        Value::Array(vec![int(5_200), int(9), int(200), Value::Float(-3.5)]),
    ]);
    let map = Value::Map(vec![
        key(8, readings),
        key(6, int(6_000)),
        key(1, Value::Text("py-sensor-01".into())),
        key(0, int(1)),
        key(2, int(4_000_000_000)),
        key(3, int(17)),
        key(4, int(12)),
        key(5, int(0)),
        key(7, int(1_764_000_000_000)),
        key(31, Value::Text("future field".into())),
    ]);
    let bytes = to_bytes(&map);
    let batch = UplinkBatch::decode(&bytes).expect("decodes");
    assert_eq!(batch.header.device_id.as_str(), "py-sensor-01");
    assert_eq!(batch.header.boot, 4_000_000_000);
    assert_eq!((batch.header.first_seq, batch.header.held_from), (17, 12));
    assert_eq!(batch.header.boot_utc_ms, Some(1_764_000_000_000));
    assert_eq!(batch.last_seq(), 19);
    let values: Vec<_> = batch
        .readings
        .iter()
        .map(|r| (r.t_ms, r.channel, r.kind, r.value))
        .collect();
    assert_eq!(
        values,
        vec![
            (5_000, 0, SensorKind::TEMPERATURE_C, 21.25),
            (5_100, 2, SensorKind::PRESSURE_PA, 101_325.0),
            (5_200, 9, SensorKind(200), -3.5),
        ]
    );
}

/// A foreign encoder's half-precision float (ciborium never emits one, so the bytes are
/// spliced: 0xf9 0x3e 0x00 is 1.5).
#[test]
fn half_precision_value_decodes() {
    let readings = Value::Array(vec![Value::Array(vec![int(1), int(0), int(0), int(777)])]);
    let map = Value::Map(vec![
        key(0, int(1)),
        key(1, Value::Text("h".into())),
        key(2, int(0)),
        key(3, int(0)),
        key(4, int(0)),
        key(5, int(0)),
        key(6, int(1)),
        key(8, readings),
    ]);
    let mut bytes = to_bytes(&map);
    let at = bytes.len() - 3; // 777 is encoded as 19 03 09
    assert_eq!(&bytes[at..], &[0x19, 0x03, 0x09]);
    bytes.splice(at.., [0xf9, 0x3e, 0x00]);
    let batch = UplinkBatch::decode(&bytes).expect("decodes");
    assert_eq!(batch.readings[0].value, 1.5);
}

/// Our encoding, read by ciborium, has the shape the CDDL describes.
#[test]
fn our_payload_reads_as_the_schema_says() {
    let ack = Ack {
        device_id: telemetry_wire::DeviceId::new("dev-9").expect("valid"),
        boot: 3,
        through_seq: 70_000,
    };
    let mut out = [0u8; 128];
    let n = ack.encode(&mut out).expect("encodes");
    let value: Value = ciborium::from_reader(&out[..n]).expect("ciborium decodes");
    assert_eq!(
        value,
        Value::Map(vec![
            key(0, int(1)),
            key(1, Value::Text("dev-9".into())),
            key(2, int(3)),
            key(3, int(70_000)),
        ])
    );
    // And a foreign ack decodes with us.
    assert_eq!(Ack::decode(&to_bytes(&value)), Ok(ack));
}
