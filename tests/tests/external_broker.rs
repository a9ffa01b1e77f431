//! External-broker mode against a real mosquitto: the gateway subscribes with an MQTT v5
//! shared subscription and acks through the broker. With two gateways in one share group the
//! fleet is split between them, and every reading a device saw acked is in one of the two
//! buffers.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::devsim;
use e2e::mosquitto::Mosquitto;
use e2e::{GatewayOptions, GatewayProcess};
use std::time::Duration;

fn external(broker: std::net::SocketAddr, client_id: &str) -> GatewayOptions {
    GatewayOptions {
        extra_toml: format!(
            "[ingest]\nmode = \"external\"\n[ingest.external]\nbroker = \"{broker}\"\nclient_id = \"{client_id}\"\nshare_group = \"site-7\"\n"
        ),
        external_broker: true,
        ..GatewayOptions::default()
    }
}

fn wait_subscribed(gw: &GatewayProcess) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !gw.log_text().contains("Connected to the external broker.") {
        assert!(
            std::time::Instant::now() < deadline,
            "never connected:\n{}",
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn one_gateway_on_mosquitto_stores_and_acks_everything() {
    let broker = Mosquitto::start().expect("mosquitto starts");
    let mut gw = GatewayProcess::start(external(broker.addr, "gw-a")).expect("gateway starts");
    wait_subscribed(&gw);
    let log = gw.dir().join("acked.csv");
    let log_arg = log.display().to_string();
    #[rustfmt::skip]
    let sim = devsim::spawn(broker.addr, &[
        "--devices", "20", "--rate", "50", "--duration", "5", "--batch-max", "10",
        "--drain-timeout", "30", "--acked-log", &log_arg, "--json",
    ]).expect("devsim");
    let (ok, stdout, stderr) = devsim::finish(sim).expect("devsim finishes");
    assert!(ok, "{stdout}\n{stderr}");
    gw.terminate(Duration::from_secs(10)).expect("clean exit");
    let acked = devsim::acked_readings(&log).expect("acked");
    let stored = devsim::buffer_contents(&gw.data_dir().join("buffer.redb")).expect("buffer");
    assert_eq!(acked.len(), 20 * 250);
    assert!(acked.iter().all(|k| stored.get(k) == Some(&1)));
}

#[test]
fn two_gateways_split_the_fleet_and_lose_nothing_acked() {
    let broker = Mosquitto::start().expect("mosquitto starts");
    let mut a = GatewayProcess::start(external(broker.addr, "gw-a")).expect("gateway a");
    let mut b = GatewayProcess::start(external(broker.addr, "gw-b")).expect("gateway b");
    wait_subscribed(&a);
    wait_subscribed(&b);
    let log = a.dir().join("acked.csv");
    let log_arg = log.display().to_string();
    #[rustfmt::skip]
    let sim = devsim::spawn(broker.addr, &[
        "--devices", "20", "--rate", "20", "--duration", "5", "--batch-max", "10",
        "--ack-timeout-ms", "500", "--drain-timeout", "60", "--acked-log", &log_arg, "--json",
    ]).expect("devsim");
    let (ok, stdout, stderr) = devsim::finish(sim).expect("devsim finishes");
    assert!(ok, "{stdout}\n{stderr}");
    a.terminate(Duration::from_secs(10)).expect("clean exit a");
    b.terminate(Duration::from_secs(10)).expect("clean exit b");
    let acked = devsim::acked_readings(&log).expect("acked");
    let in_a = devsim::buffer_contents(&a.data_dir().join("buffer.redb")).expect("buffer a");
    let in_b = devsim::buffer_contents(&b.data_dir().join("buffer.redb")).expect("buffer b");
    assert_eq!(acked.len(), 20 * 100);
    assert!(
        !in_a.is_empty() && !in_b.is_empty(),
        "both gateways took a share"
    );
    let missing: Vec<_> = acked
        .iter()
        .filter(|k| !in_a.contains_key(*k) && !in_b.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "acked but in neither buffer: {missing:?}"
    );
    assert!(
        in_a.values().chain(in_b.values()).all(|&n| n == 1),
        "no gateway stored a reading twice"
    );
}
