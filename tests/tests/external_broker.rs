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

/// mosquitto configured as `gateway/deploy/mosquitto/` ships it (logins, client ID = username,
/// the ACL file): a device cannot write as, read, or take the session of another client, and
/// the gateway stores only what devices published as themselves.
#[test]
fn with_the_shipped_acl_devices_cannot_write_or_read_as_others() {
    use e2e::mqtt_client::{Reply, TestClient};
    let acl = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gateway/deploy/mosquitto/mosquitto.acl");
    let mut users = vec![
        ("telemetry-gateway", "gw-pw".to_owned()),
        ("dev-a", "pw-a".to_owned()),
        ("dev-b", "pw-b".to_owned()),
    ];
    users.extend((0..5).map(|i| {
        (
            ["sim-0000", "sim-0001", "sim-0002", "sim-0003", "sim-0004"][i],
            "sim-pw".to_owned(),
        )
    }));
    let users: Vec<(&str, &str)> = users.iter().map(|(u, p)| (*u, p.as_str())).collect();
    let broker = Mosquitto::start_secured(&users, &acl).expect("mosquitto starts");
    let mut options = external(broker.addr, "gw-a");
    options
        .extra_toml
        .push_str("username = \"telemetry-gateway\"\npassword = \"gw-pw\"\n");
    let mut gw = GatewayProcess::start(options).expect("gateway starts");
    wait_subscribed(&gw);

    // Devices as themselves: everything acked and stored.
    let log = gw.dir().join("acked.csv");
    let log_arg = log.display().to_string();
    #[rustfmt::skip]
    let sim = devsim::spawn(broker.addr, &[
        "--devices", "5", "--rate", "20", "--duration", "3", "--batch-max", "10",
        "--mqtt-password", "sim-pw", "--drain-timeout", "30", "--acked-log", &log_arg, "--json",
    ]).expect("devsim");
    let (ok, stdout, stderr) = devsim::finish(sim).expect("devsim finishes");
    assert!(ok, "{stdout}\n{stderr}");

    // dev-b writes as dev-a, reads everything, forges an ack: mosquitto refuses each.
    let victim = TestClient::connect_v5(broker.addr, "dev-a", Some(("dev-a", "pw-a"))).expect("in");
    victim.subscribe("tlm/v1/dev-a/ack").expect("subscribe");
    assert_eq!(
        victim.next_reply(Duration::from_secs(5)),
        Some(Reply::SubAck(vec![0]))
    );
    let attacker =
        TestClient::connect_v5(broker.addr, "dev-b", Some(("dev-b", "pw-b"))).expect("in");
    // mosquitto grants `#` and then checks the read ACL on every message it would deliver:
    // dev-b must receive nothing (checked after dev-a's publish below).
    attacker.subscribe("#").expect("subscribe");
    assert!(matches!(
        attacker.next_reply(Duration::from_secs(5)),
        Some(Reply::SubAck(_))
    ));
    let forged = e2e::uplink::batch("dev-a", 1, 0, 1, 0);
    attacker
        .publish("tlm/v1/dev-a/up", &forged)
        .expect("publish");
    assert_eq!(
        attacker.next_reply(Duration::from_secs(5)),
        Some(Reply::PubAck(0x87))
    );
    attacker
        .publish("tlm/v1/dev-a/ack", &[0xa0])
        .expect("publish");
    assert_eq!(
        attacker.next_reply(Duration::from_secs(5)),
        Some(Reply::PubAck(0x87))
    );
    assert!(
        victim.recv(Duration::from_secs(1)).is_none(),
        "dev-a got a forged message"
    );
    // Nobody takes the gateway's session without its password.
    assert!(
        TestClient::connect_v5(
            broker.addr,
            "telemetry-gateway",
            Some(("telemetry-gateway", "wrong"))
        )
        .is_err()
    );
    // The gateway still serves dev-a, as itself.
    victim.publish("tlm/v1/dev-a/up", &forged).expect("publish");
    let (topic, _) = victim
        .recv(Duration::from_secs(10))
        .expect("dev-a is acked");
    assert_eq!(topic, "tlm/v1/dev-a/ack");
    assert!(
        attacker.recv(Duration::from_millis(500)).is_none(),
        "dev-b read another device's message"
    );

    gw.terminate(Duration::from_secs(10)).expect("clean exit");
    let acked = devsim::acked_readings(&log).expect("acked");
    let stored = devsim::buffer_contents(&gw.data_dir().join("buffer.redb")).expect("buffer");
    assert!(acked.iter().all(|k| stored.get(k) == Some(&1)));
    let dev_a: Vec<_> = stored.keys().filter(|(d, _, _)| d == "dev-a").collect();
    assert_eq!(dev_a.len(), 1, "only dev-a's own reading: {dev_a:?}");
}

#[test]
fn over_tls_with_certificates_and_the_password_from_the_environment() {
    use e2e::site_certs::SiteCerts;
    let certs = SiteCerts::create("broker").expect("site CA");
    let (gw_cert, gw_key) = certs.device("telemetry-gateway", 30).expect("certificate");
    for i in 0..3 {
        certs
            .device(&format!("sim-{i:04}"), 30)
            .expect("certificate");
    }
    let acl = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gateway/deploy/mosquitto/mosquitto.acl");
    let users = [
        ("telemetry-gateway", "gw-pw"),
        ("sim-0000", "sim-pw"),
        ("sim-0001", "sim-pw"),
        ("sim-0002", "sim-pw"),
    ];
    // mosquitto serves TLS with the site's server certificate and wants a client certificate
    // and a login from everyone.
    let (server_cert, server_key) = certs.gateway_files();
    let broker =
        Mosquitto::start_secured_tls(&users, &acl, &certs.ca(), (&server_cert, &server_key))
            .expect("mosquitto starts");
    let mut options = external(broker.addr, "gw-a");
    options.extra_toml.push_str(&format!(
        "username = \"telemetry-gateway\"\ntls = true\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        certs.ca().display(),
        gw_cert.display(),
        gw_key.display()
    ));
    options
        .env
        .push(("GATEWAY_EXTERNAL_PASSWORD".into(), "gw-pw".into()));
    let mut gw = GatewayProcess::start(options).expect("gateway starts");
    wait_subscribed(&gw);
    assert!(
        gw.log_text()
            .contains("password=\"GATEWAY_EXTERNAL_PASSWORD\""),
        "{}",
        gw.log_text()
    );
    assert!(
        !gw.log_text().contains("gw-pw"),
        "the password is never logged"
    );

    let log = gw.dir().join("acked.csv");
    let log_arg = log.display().to_string();
    let ca = certs.ca().display().to_string();
    let (cert, key) = certs.device_template();
    #[rustfmt::skip]
    let sim = devsim::spawn(broker.addr, &[
        "--devices", "3", "--rate", "20", "--duration", "3", "--batch-max", "10",
        "--tls", "--ca", &ca, "--cert", &cert, "--key", &key, "--mqtt-password", "sim-pw",
        "--drain-timeout", "30", "--acked-log", &log_arg, "--json",
    ]).expect("devsim");
    let (ok, stdout, stderr) = devsim::finish(sim).expect("devsim finishes");
    assert!(ok, "{stdout}\n{stderr}");
    let produced = devsim::summary_number(&stdout, "produced").expect("produced");
    assert_eq!(
        devsim::summary_number(&stdout, "acked").expect("acked"),
        produced
    );

    gw.terminate(Duration::from_secs(10)).expect("clean exit");
    let acked = devsim::acked_readings(&log).expect("acked");
    let stored = devsim::buffer_contents(&gw.data_dir().join("buffer.redb")).expect("buffer");
    assert_eq!(acked.len() as u64, produced);
    assert!(acked.iter().all(|k| stored.get(k) == Some(&1)));
}
