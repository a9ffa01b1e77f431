//! The buffer's limits end to end: both capacity policies and the retention age.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::mqtt_client::TestClient;
use e2e::{GatewayOptions, GatewayProcess};
use gateway::buffer::Buffer;
use std::time::Duration;
use telemetry_wire::uplink::encode_uplink;
use telemetry_wire::{Ack, DeviceId, Reading, SensorKind, UplinkHeader};

const WAIT: Duration = Duration::from_secs(15);
const CAPACITY: u64 = 1 << 20;
/// Readings per batch: a full batch is a ~0.9 KB record (7 bytes a reading), so ~1,150 fill
/// the capacity.
const PER_BATCH: u32 = 128;
/// Batches published: well past the capacity.
const BATCHES: u32 = 1_500;

fn full_batch(device: &str, first_seq: u32) -> Vec<u8> {
    let header = UplinkHeader {
        device_id: DeviceId::new(device).expect("valid"),
        boot: 1,
        first_seq,
        held_from: first_seq,
        dropped: 0,
        sent_at_ms: u64::from(first_seq) + 1_000,
        boot_utc_ms: None,
        mac: None,
    };
    let readings: Vec<Reading> = (0..PER_BATCH)
        .map(|i| Reading {
            t_ms: u64::from(first_seq + i),
            channel: 1,
            kind: SensorKind::HUMIDITY_PCT,
            value: 50.0,
        })
        .collect();
    let mut out = vec![0u8; 4096];
    let n = encode_uplink(&header, readings.iter(), &mut out).expect("encodes");
    out.truncate(n);
    out
}

/// Batches a device has in flight beyond its last ack (the firmware's window is 8; a larger
/// one keeps the test fast). Unbounded publishing overran the broker's in-memory log
/// (`broker_log_bytes`), and since these batches claim `held_from = first_seq` the dropped
/// ones counted as readings the device gave up.
const WINDOW: u32 = 32;

/// Publishes `batches` consecutive full batches, at most [`WINDOW`] ahead of the last ack; a
/// window that gets no ack within 500 ms (capacity reached) is passed anyway: a device keeps
/// unacked readings, here the test just moves on. Returns the last ack seen.
fn publish_batches(client: &TestClient, device: &str, batches: u32) -> Option<u32> {
    let mut last_ack: Option<u32> = None;
    // Batches below this may be published now.
    let mut allowed = WINDOW;
    for b in 0..batches {
        while b >= allowed {
            match client.recv(Duration::from_millis(500)) {
                Some((_, payload)) => {
                    let ack = Ack::decode(&payload).expect("ack").through_seq;
                    last_ack = Some(ack);
                    allowed = allowed.max((ack + 1) / PER_BATCH + WINDOW);
                }
                None => allowed = b + WINDOW,
            }
        }
        client
            .publish(
                &format!("tlm/v1/{device}/up"),
                &full_batch(device, b * PER_BATCH),
            )
            .expect("publish");
    }
    while let Some((_, payload)) = client.recv(Duration::from_secs(3)) {
        last_ack = Some(Ack::decode(&payload).expect("ack").through_seq);
    }
    last_ack
}

fn stored_seqs(gw: &GatewayProcess) -> Vec<u32> {
    let (buffer, _) = Buffer::open(&gw.data_dir().join("buffer.redb")).expect("opens");
    let mut seqs = Vec::new();
    for (_, r) in buffer.read_log(None, usize::MAX).expect("reads") {
        seqs.extend((0..r.readings.len() as u32).map(|i| r.first_seq + i));
    }
    seqs
}

/// One device fills the buffer here: the per-device quota (`fair_share_above`, which would
/// stop it at half; tested in hardening.rs) is off, so the capacity policy alone is seen.
fn options(policy: &str) -> GatewayOptions {
    GatewayOptions {
        buffer_toml: format!(
            "capacity_bytes = {CAPACITY}\nfull_policy = \"{policy}\"\nmax_commit_delay_ms = 5\nmin_commit_interval_ms = 5\nfair_share_above = 1.0"
        ),
        ..GatewayOptions::default()
    }
}

#[test]
fn reject_new_stops_acking_at_capacity_and_keeps_what_it_has() {
    let mut gw = GatewayProcess::start(options("reject-new")).expect("starts");
    let client = TestClient::connect_v5(gw.mqtt5, "filler", None).expect("connects");
    client.subscribe("tlm/v1/filler/ack").expect("subscribe");
    let last_ack = publish_batches(&client, "filler", BATCHES).expect("some acks");
    let rejected = gw
        .metric("gateway_buffer_readings_rejected_full_total")
        .expect("m");
    let bytes = gw.metric("gateway_buffer_buffered_bytes").expect("m");
    assert!(rejected > 0.0, "capacity was reached");
    assert!(bytes <= CAPACITY as f64, "{bytes} bytes buffered");
    gw.terminate(WAIT).expect("clean exit");
    let seqs = stored_seqs(&gw);
    // Everything acked is stored, contiguous from 0, and nothing beyond the ack was stored:
    // the device still holds those readings.
    assert_eq!(seqs, (0..=last_ack).collect::<Vec<_>>());
    assert_eq!(
        rejected as u64 + seqs.len() as u64,
        u64::from(BATCHES) * u64::from(PER_BATCH)
    );
}

#[test]
fn drop_oldest_evicts_the_head_and_keeps_acking() {
    let mut gw = GatewayProcess::start(options("drop-oldest")).expect("starts");
    let client = TestClient::connect_v5(gw.mqtt5, "filler", None).expect("connects");
    client.subscribe("tlm/v1/filler/ack").expect("subscribe");
    let total = BATCHES * PER_BATCH;
    let last_ack = publish_batches(&client, "filler", BATCHES).expect("acks");
    assert_eq!(last_ack, total - 1, "every reading acked");
    let evicted = gw
        .metric("gateway_buffer_readings_evicted_total")
        .expect("m");
    assert!(evicted > 0.0);
    assert!(gw.metric("gateway_buffer_buffered_bytes").expect("m") <= CAPACITY as f64);
    gw.terminate(WAIT).expect("clean exit");
    let seqs = stored_seqs(&gw);
    // The newest readings are kept, contiguous up to the last one; the evicted are the oldest.
    assert_eq!(*seqs.last().expect("some"), total - 1);
    assert_eq!(seqs, (seqs[0]..total).collect::<Vec<_>>());
    assert_eq!(u64::from(seqs[0]), evicted as u64);
}

#[test]
fn retention_drops_what_is_older_than_the_limit() {
    let options = GatewayOptions {
        buffer_toml: "retention_secs = 8\nmax_commit_delay_ms = 5\nmin_commit_interval_ms = 5"
            .into(),
        ..GatewayOptions::default()
    };
    let gw = GatewayProcess::start(options).expect("starts");
    let client = TestClient::connect_v5(gw.mqtt5, "old", None).expect("connects");
    client.subscribe("tlm/v1/old/ack").expect("subscribe");
    publish_batches(&client, "old", 3).expect("acked");
    assert_eq!(
        gw.metric("gateway_buffer_buffered_readings").expect("m"),
        3.0 * f64::from(PER_BATCH)
    );
    gw.wait_metric("gateway_buffer_readings_expired_total", WAIT, |v| {
        v == 3.0 * f64::from(PER_BATCH)
    })
    .expect("expired");
    gw.wait_metric("gateway_buffer_buffered_readings", WAIT, |v| v == 0.0)
        .expect("empty");
}
