//! Ingest end to end: the real gateway binary with its embedded rumqttd and a real redb file.
//! Every rejection reason is counted and never crashes the gateway; valid batches are acked
//! after they are on disk; duplicates and gaps are handled as the sequencer promises.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::mqtt_client::TestClient;
use e2e::uplink::batch;
use e2e::{GatewayOptions, GatewayProcess};
use gateway::buffer::Buffer;
use std::time::Duration;
use telemetry_wire::Ack;

const WAIT: Duration = Duration::from_secs(10);

fn next_ack(client: &TestClient) -> (String, u32, u32) {
    let (topic, payload) = client.recv(WAIT).expect("an ack arrives");
    let ack = Ack::decode(&payload).expect("ack decodes");
    assert_eq!(topic, format!("tlm/v1/{}/ack", ack.device_id));
    (ack.device_id.as_str().to_owned(), ack.boot, ack.through_seq)
}

/// (device, boot, seq) of every reading in the buffer file, in log order.
fn stored(data_dir: &std::path::Path) -> Vec<(String, u32, u32)> {
    let (buffer, _) = Buffer::open(&data_dir.join("buffer.redb")).expect("buffer opens");
    let mut out = Vec::new();
    for (_, record) in buffer.read_log(None, usize::MAX).expect("log reads") {
        for i in 0..record.readings.len() as u32 {
            out.push((record.device.clone(), record.boot, record.first_seq + i));
        }
    }
    out
}

fn rejected(gw: &GatewayProcess, reason: &str) -> f64 {
    gw.metric(&format!(
        "gateway_ingest_rejected_total{{reason=\"{reason}\"}}"
    ))
    .expect("metrics")
}

#[test]
fn every_bad_input_is_a_counted_rejection_and_the_gateway_keeps_working() {
    let mut gw = GatewayProcess::start(GatewayOptions::default()).expect("gateway starts");
    // Each device may publish only on its own uplink topic (tests/tests/device_trust.rs), so
    // the bad inputs come from the device the topic names.
    let client = TestClient::connect_v5(gw.mqtt5, "dev-1", None).expect("connects");
    let other = TestClient::connect_v5(gw.mqtt5, "dev-2", None).expect("connects");
    let dotted = TestClient::connect_v5(gw.mqtt5, "dev.x", None).expect("connects");
    let good = batch("dev-1", 1, 0, 3, 0);
    let mut cases: Vec<(&TestClient, &str, Vec<u8>, &str)> = vec![
        (
            &client,
            "tlm/v1/dev-1/up",
            vec![0xff, 0xff, 0x00],
            "malformed_cbor",
        ),
        (&client, "tlm/v1/dev-1/up", Vec::new(), "malformed_cbor"),
        (&client, "tlm/v1/dev-1/up", vec![0u8; 4097], "too_large"),
        (
            &client,
            "tlm/v1/dev-1/up",
            good[..good.len() - 1].to_vec(),
            "malformed_cbor",
        ),
        (&other, "tlm/v1/dev-2/up", good.clone(), "device_mismatch"),
        (
            &dotted,
            "tlm/v1/dev.x/up",
            batch("dev-1", 1, 0, 1, 0),
            "device_mismatch",
        ),
    ];
    // A hand-patched NaN value, schema version 2, trailing bytes.
    let mut nan = good.clone();
    let at = nan
        .windows(1)
        .rposition(|w| w[0] == 0xfa)
        .expect("a float32");
    nan[at + 1..at + 5].copy_from_slice(&f32::NAN.to_be_bytes());
    cases.push((&client, "tlm/v1/dev-1/up", nan, "non_finite_value"));
    let mut v2 = good.clone();
    assert_eq!(&v2[1..3], &[0x00, 0x01]);
    v2[2] = 0x02;
    cases.push((&client, "tlm/v1/dev-1/up", v2, "unsupported_version"));
    let mut trailing = good.clone();
    trailing.push(0);
    cases.push((&client, "tlm/v1/dev-1/up", trailing, "trailing_bytes"));
    for (sender, topic, payload, reason) in &cases {
        let before = rejected(&gw, reason);
        sender.publish(topic, payload).expect("publish");
        gw.wait_metric(
            &format!("gateway_ingest_rejected_total{{reason=\"{reason}\"}}"),
            WAIT,
            |v| v > before,
        )
        .unwrap_or_else(|e| panic!("{reason}: {e}"));
    }
    // Topics that are not the sender's own uplink never reach the gateway: the broker refuses
    // them (counted as refusals, not rejections).
    client.publish("tlm/v1/a b/up", &good).expect("publish");
    client.publish("other/topic", &good).expect("publish");
    gw.wait_metric(
        "gateway_ingest_refused_total{action=\"publish\",reason=\"not_uplink_topic\"}",
        WAIT,
        |v| v >= 2.0,
    )
    .expect("refused by the broker");

    // Nothing was stored, and the gateway still takes good data and acks it.
    client.subscribe("tlm/v1/dev-1/ack").expect("subscribe");
    client.publish("tlm/v1/dev-1/up", &good).expect("publish");
    assert_eq!(next_ack(&client), ("dev-1".into(), 1, 2));
    assert_eq!(
        gw.metric("gateway_buffer_readings_stored_total")
            .expect("metric"),
        3.0
    );
    let status = gw.terminate(WAIT).expect("clean exit");
    assert!(status.success(), "{status}");
    assert_eq!(
        stored(gw.data_dir()),
        vec![
            ("dev-1".into(), 1, 0),
            ("dev-1".into(), 1, 1),
            ("dev-1".into(), 1, 2)
        ]
    );
}

#[test]
fn duplicates_gaps_and_boots_follow_the_sequencer() {
    let mut gw = GatewayProcess::start(GatewayOptions::default()).expect("gateway starts");
    let device = TestClient::connect_v5(gw.mqtt5, "dev-7", None).expect("connects");
    device.subscribe("tlm/v1/dev-7/ack").expect("subscribe");
    let up = "tlm/v1/dev-7/up";

    device
        .publish(up, &batch("dev-7", 4, 0, 5, 0))
        .expect("publish");
    assert_eq!(next_ack(&device), ("dev-7".into(), 4, 4));
    // Exact resend: all duplicates, acked again.
    device
        .publish(up, &batch("dev-7", 4, 0, 5, 0))
        .expect("publish");
    assert_eq!(next_ack(&device), ("dev-7".into(), 4, 4));
    // A batch past a gap is not stored; the ack stays at the gap.
    device
        .publish(up, &batch("dev-7", 4, 8, 2, 5))
        .expect("publish");
    assert_eq!(next_ack(&device), ("dev-7".into(), 4, 4));
    // The gap is resent together with what follows (go-back-N): stored, ack jumps.
    device
        .publish(up, &batch("dev-7", 4, 3, 7, 3))
        .expect("publish");
    assert_eq!(next_ack(&device), ("dev-7".into(), 4, 9));
    // The device's ring overflowed: it no longer holds 10..14 and says so with held_from.
    device
        .publish(up, &batch("dev-7", 4, 15, 1, 15))
        .expect("publish");
    assert_eq!(next_ack(&device), ("dev-7".into(), 4, 15));
    // A new boot starts a new sequence space; the old boot is stale from then on.
    device
        .publish(up, &batch("dev-7", 5, 0, 2, 0))
        .expect("publish");
    assert_eq!(next_ack(&device), ("dev-7".into(), 5, 1));
    device
        .publish(up, &batch("dev-7", 4, 16, 1, 16))
        .expect("publish");
    gw.wait_metric("gateway_buffer_stale_boot_batches_total", WAIT, |v| {
        v == 1.0
    })
    .expect("stale");

    assert_eq!(
        gw.metric("gateway_buffer_duplicate_readings_total")
            .expect("m"),
        7.0
    );
    assert_eq!(
        gw.metric("gateway_buffer_out_of_order_batches_total")
            .expect("m"),
        1.0
    );
    assert_eq!(
        gw.metric("gateway_buffer_readings_lost_at_device_total")
            .expect("m"),
        5.0
    );
    gw.terminate(WAIT).expect("clean exit");
    let mut expected: Vec<(String, u32, u32)> = (0..10).map(|s| ("dev-7".into(), 4, s)).collect();
    expected.push(("dev-7".into(), 4, 15));
    expected.extend((0..2).map(|s| ("dev-7".into(), 5, s)));
    assert_eq!(stored(gw.data_dir()), expected);
}

#[test]
fn dedupe_state_survives_restart_and_mqtt311_sensors_are_served() {
    let mut gw = GatewayProcess::start(GatewayOptions::default()).expect("gateway starts");
    {
        let sensor = TestClient::connect_v311(gw.mqtt311, "thirdparty-1").expect("v3.1.1 connects");
        sensor
            .subscribe("tlm/v1/thirdparty-1/ack")
            .expect("subscribe");
        sensor
            .publish("tlm/v1/thirdparty-1/up", &batch("thirdparty-1", 1, 0, 4, 0))
            .expect("publish");
        assert_eq!(next_ack(&sensor), ("thirdparty-1".into(), 1, 3));
    }
    // SIGKILL right after the ack: the dedupe state comes back from the log replay.
    gw.kill();
    gw.spawn().expect("restarts");
    let sensor = TestClient::connect_v311(gw.mqtt311, "thirdparty-1").expect("v3.1.1 connects");
    sensor
        .subscribe("tlm/v1/thirdparty-1/ack")
        .expect("subscribe");
    sensor
        .publish("tlm/v1/thirdparty-1/up", &batch("thirdparty-1", 1, 2, 4, 2))
        .expect("publish");
    assert_eq!(next_ack(&sensor), ("thirdparty-1".into(), 1, 5));
    assert_eq!(
        gw.metric("gateway_buffer_duplicate_readings_total")
            .expect("m"),
        2.0
    );
    gw.terminate(WAIT).expect("clean exit");
    let seqs: Vec<u32> = stored(gw.data_dir())
        .into_iter()
        .map(|(_, _, s)| s)
        .collect();
    assert_eq!(seqs, vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn device_login_ties_client_id_to_username() {
    let creds = tempfile::NamedTempFile::new().expect("temp file");
    let line = format!(
        "[devices]\n\"dev-a\" = \"{}\"\n",
        gateway::ingest::auth::hash_password("pw-a").expect("hashes")
    );
    std::fs::write(creds.path(), line).expect("write");
    let options = GatewayOptions {
        embedded_toml: format!("credentials_file = \"{}\"", creds.path().display()),
        ..GatewayOptions::default()
    };
    let gw = GatewayProcess::start(options).expect("gateway starts");
    TestClient::connect_v5(gw.mqtt5, "dev-a", Some(("dev-a", "pw-a")))
        .expect("right login connects");
    assert!(
        TestClient::connect_v5(gw.mqtt5, "dev-b", Some(("dev-a", "pw-a"))).is_err(),
        "other client id"
    );
    assert!(
        TestClient::connect_v5(gw.mqtt5, "dev-a", Some(("dev-a", "wrong"))).is_err(),
        "wrong password"
    );
    assert!(
        TestClient::connect_v5(gw.mqtt5, "dev-a", None).is_err(),
        "no credentials"
    );
    gw.wait_metric("gateway_ingest_auth_failures_total", WAIT, |v| v >= 2.0)
        .expect("counted");
}

#[test]
fn invalid_config_fails_at_start_with_the_key_named() {
    let options = GatewayOptions {
        buffer_toml: "capacity = 5".into(),
        ..GatewayOptions::default()
    };
    let err = GatewayProcess::start(options).expect_err("refuses to start");
    assert!(
        err.to_string().contains("unknown field `capacity`"),
        "{err}"
    );
}
