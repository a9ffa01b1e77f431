//! Hardening (issue 17), attacked from outside with plain MQTT clients: no single packet may
//! stop ingest or make the gateway forget readings it acknowledged.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::mqtt_client::TestClient;
use e2e::{GatewayOptions, GatewayProcess};
use gateway::buffer::Buffer;
use std::time::Duration;
use telemetry_wire::uplink::encode_uplink;
use telemetry_wire::{Ack, DeviceId, Reading, SensorKind, UplinkHeader};

const WAIT: Duration = Duration::from_secs(10);

fn batch(device: &str, boot: u32, first_seq: u32, count: u32, held_from: u32) -> Vec<u8> {
    let header = UplinkHeader {
        device_id: DeviceId::new(device).expect("valid id"),
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
            t_ms: u64::from(i),
            channel: 0,
            kind: SensorKind::TEMPERATURE_C,
            value: 20.0,
        })
        .collect();
    let mut out = vec![0u8; 4096];
    let n = encode_uplink(&header, readings.iter(), &mut out).expect("encodes");
    out.truncate(n);
    out
}

fn next_ack(client: &TestClient) -> (u32, u32) {
    let (_, payload) = client.recv(WAIT).expect("an ack arrives");
    let ack = Ack::decode(&payload).expect("ack decodes");
    (ack.boot, ack.through_seq)
}

/// seq of every stored reading of `device`.
fn stored_seqs(gw: &GatewayProcess, device: &str) -> Vec<u32> {
    let (buffer, _) = Buffer::open(&gw.data_dir().join("buffer.redb")).expect("buffer opens");
    let mut out = Vec::new();
    for (_, record) in buffer.read_log(None, usize::MAX).expect("log reads") {
        if record.device == device {
            out.extend((0..record.readings.len() as u32).map(|i| record.first_seq + i));
        }
    }
    out
}

#[test]
fn a_held_from_far_ahead_cannot_make_real_readings_look_like_duplicates() {
    let mut gw = GatewayProcess::start(GatewayOptions::default()).expect("gateway starts");
    let device = TestClient::connect_v5(gw.mqtt5, "dev-h", None).expect("connects");
    device.subscribe("tlm/v1/dev-h/ack").expect("subscribe");
    device
        .publish("tlm/v1/dev-h/up", &batch("dev-h", 1, 0, 3, 0))
        .expect("publish");
    assert_eq!(next_ack(&device), (1, 2));
    // One packet claiming the device dropped a billion readings (held_from = first_seq).
    let far = 1_000_000_000;
    device
        .publish("tlm/v1/dev-h/up", &batch("dev-h", 1, far, 1, far))
        .expect("publish");
    gw.wait_metric("gateway_buffer_held_from_jump_batches_total", WAIT, |v| {
        v == 1.0
    })
    .expect("refused and counted");
    // The device's next real readings are stored, and the ack says where it really is.
    device
        .publish("tlm/v1/dev-h/up", &batch("dev-h", 1, 3, 4, 3))
        .expect("publish");
    assert_eq!(next_ack(&device), (1, 6));
    assert_eq!(
        gw.metric("gateway_buffer_duplicate_readings_total")
            .expect("m"),
        0.0
    );
    gw.terminate(WAIT).expect("clean exit");
    assert_eq!(stored_seqs(&gw, "dev-h"), (0..7).collect::<Vec<_>>());
}
