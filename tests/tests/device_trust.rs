//! Device trust, attacked from outside: plain MQTT clients (rumqttc, and raw packets written
//! by hand), not our firmware core, against the release gateway with its embedded rumqttd and
//! a real redb file. Each attack seen on the gateway (`../shared/reference/TRUST.md`, issue
//! 11) must fail: nothing is stored under the victim, nothing of the victim is read, the
//! victim loses nothing, and every refusal is counted on `/metrics`.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::mqtt_client::{Reply, TestClient};
use e2e::raw_mqtt;
use e2e::{GatewayOptions, GatewayProcess};
use gateway::buffer::Buffer;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use telemetry_wire::Ack;

/// A batch of `count` readings from `first_seq`, the device holding nothing older.
fn batch(device: &str, boot: u32, first_seq: u32, count: u32) -> Vec<u8> {
    e2e::uplink::batch(device, boot, first_seq, count, first_seq)
}

const WAIT: Duration = Duration::from_secs(10);
/// How long a client listens for something that must not arrive.
const QUIET: Duration = Duration::from_secs(1);
/// MQTT v5 reason code "not authorized".
const NOT_AUTHORIZED: u8 = 0x87;

/// The next ack `client` receives, as (device, boot, through_seq).
fn next_ack(client: &TestClient) -> (String, u32, u32) {
    let (topic, payload) = client.recv(WAIT).expect("an ack arrives");
    let ack = Ack::decode(&payload).expect("ack decodes");
    assert_eq!(topic, format!("tlm/v1/{}/ack", ack.device_id));
    (ack.device_id.as_str().to_owned(), ack.boot, ack.through_seq)
}

/// (device, boot, seq) of every reading in the buffer file.
fn stored(gw: &GatewayProcess) -> Vec<(String, u32, u32)> {
    let (buffer, _) = Buffer::open(&gw.data_dir().join("buffer.redb")).expect("buffer opens");
    let mut out = Vec::new();
    for (_, record) in buffer.read_log(None, usize::MAX).expect("log reads") {
        for i in 0..record.readings.len() as u32 {
            out.push((record.device.clone(), record.boot, record.first_seq + i));
        }
    }
    out
}

fn refused(gw: &GatewayProcess, action: &str, reason: &str) -> f64 {
    gw.metric(&format!(
        "gateway_ingest_refused_total{{action=\"{action}\",reason=\"{reason}\"}}"
    ))
    .unwrap_or(0.0)
}

/// A gateway with a credentials file listing dev-a (password pw-a) and dev-b (pw-b).
fn gateway_with_credentials() -> (GatewayProcess, tempfile::NamedTempFile) {
    let creds = tempfile::NamedTempFile::new().expect("temp file");
    let text = format!(
        "[devices]\n\"dev-a\" = \"{}\"\n\"dev-b\" = \"{}\"\n",
        gateway::ingest::auth::hash_password("pw-a").expect("hashes"),
        gateway::ingest::auth::hash_password("pw-b").expect("hashes"),
    );
    std::fs::write(creds.path(), text).expect("write");
    let options = GatewayOptions {
        embedded_toml: format!("credentials_file = \"{}\"", creds.path().display()),
        ..GatewayOptions::default()
    };
    (
        GatewayProcess::start(options).expect("gateway starts"),
        creds,
    )
}

fn login(gw: &GatewayProcess, device: &str, password: &str) -> TestClient {
    let client =
        TestClient::connect_v5(gw.mqtt5, device, Some((device, password))).expect("logs in");
    client
        .subscribe(&format!("tlm/v1/{device}/ack"))
        .expect("subscribe");
    assert_eq!(client.next_reply(WAIT), Some(Reply::SubAck(vec![0])));
    client
}

#[test]
fn impersonation_is_refused_and_nothing_is_stored_under_the_victim() {
    let (mut gw, _creds) = gateway_with_credentials();
    let victim = login(&gw, "dev-a", "pw-a");
    let attacker = login(&gw, "dev-b", "pw-b");

    // dev-b publishes a batch claiming dev-a on dev-a's topic: refused by the broker.
    attacker
        .publish("tlm/v1/dev-a/up", &batch("dev-a", 1, 0, 5))
        .expect("publish");
    assert_eq!(
        attacker.next_reply(WAIT),
        Some(Reply::PubAck(NOT_AUTHORIZED))
    );
    // On its own topic with dev-a's payload: the gateway's own check refuses it.
    attacker
        .publish("tlm/v1/dev-b/up", &batch("dev-a", 1, 0, 5))
        .expect("publish");
    gw.wait_metric(
        "gateway_ingest_rejected_total{reason=\"device_mismatch\"}",
        WAIT,
        |v| v >= 1.0,
    )
    .expect("payload device checked against the topic");
    assert_eq!(refused(&gw, "publish", "other_device"), 1.0);
    assert!(victim.recv(QUIET).is_none(), "no ack for a forged batch");

    // The victim's own readings start at seq 0 and are all stored and acked.
    victim
        .publish("tlm/v1/dev-a/up", &batch("dev-a", 1, 0, 3))
        .expect("publish");
    assert_eq!(next_ack(&victim), ("dev-a".into(), 1, 2));
    gw.terminate(WAIT).expect("clean exit");
    let expected: Vec<_> = (0..3).map(|s| ("dev-a".to_owned(), 1, s)).collect();
    assert_eq!(stored(&gw), expected);
}

#[test]
fn snooping_receives_nothing() {
    let (gw, _creds) = gateway_with_credentials();
    let victim = login(&gw, "dev-a", "pw-a");
    let snoop = TestClient::connect_v5(gw.mqtt5, "dev-b", Some(("dev-b", "pw-b"))).expect("in");
    for filter in [
        "tlm/v1/dev-a/ack",
        "tlm/v1/+/up",
        "tlm/v1/+/ack",
        "#",
        "$share/g/tlm/v1/+/up",
    ] {
        snoop.subscribe(filter).expect("subscribe");
        assert_eq!(
            snoop.next_reply(WAIT),
            Some(Reply::SubAck(vec![NOT_AUTHORIZED])),
            "{filter}"
        );
    }
    victim
        .publish("tlm/v1/dev-a/up", &batch("dev-a", 1, 0, 2))
        .expect("publish");
    assert_eq!(next_ack(&victim), ("dev-a".into(), 1, 1));
    assert!(
        snoop.recv(QUIET).is_none(),
        "the snoop received a message of dev-a"
    );
    assert_eq!(refused(&gw, "subscribe", "other_device"), 1.0);
    assert_eq!(refused(&gw, "subscribe", "wildcard"), 4.0);

    // MQTT v3.1.1 has one refusal code in SUBACK, 0x80 (open mode here: identity = client ID).
    let gw311 = GatewayProcess::start(GatewayOptions::default()).expect("gateway starts");
    let sensor = TestClient::connect_v311(gw311.mqtt311, "sensor-1").expect("connects");
    sensor.subscribe("#").expect("subscribe");
    assert_eq!(sensor.next_reply(WAIT), Some(Reply::SubAck(vec![0x80])));
    sensor.subscribe("tlm/v1/sensor-1/ack").expect("subscribe");
    assert_eq!(sensor.next_reply(WAIT), Some(Reply::SubAck(vec![0])));
}

#[test]
fn a_forged_ack_never_reaches_the_victim_and_the_victim_loses_nothing() {
    let (mut gw, _creds) = gateway_with_credentials();
    let victim = login(&gw, "dev-a", "pw-a");
    let attacker = login(&gw, "dev-b", "pw-b");
    victim
        .publish("tlm/v1/dev-a/up", &batch("dev-a", 1, 0, 2))
        .expect("publish");
    assert_eq!(next_ack(&victim), ("dev-a".into(), 1, 1));
    // An ack for readings the gateway never got would make dev-a free them.
    attacker
        .publish("tlm/v1/dev-a/ack", &e2e::uplink::ack("dev-a", 1, 1_000))
        .expect("publish");
    assert_eq!(
        attacker.next_reply(WAIT),
        Some(Reply::PubAck(NOT_AUTHORIZED))
    );
    // Nor may a device publish acks for itself.
    victim
        .publish("tlm/v1/dev-a/ack", &e2e::uplink::ack("dev-a", 1, 1_000))
        .expect("publish");
    assert!(
        victim.recv(QUIET).is_none(),
        "a forged ack reached the victim"
    );
    assert_eq!(refused(&gw, "publish", "not_uplink_topic"), 2.0);
    // Its next readings are acked by the gateway, from where it really is.
    victim
        .publish("tlm/v1/dev-a/up", &batch("dev-a", 1, 2, 3))
        .expect("publish");
    assert_eq!(next_ack(&victim), ("dev-a".into(), 1, 4));
    gw.terminate(WAIT).expect("clean exit");
    let expected: Vec<_> = (0..5).map(|s| ("dev-a".to_owned(), 1, s)).collect();
    assert_eq!(stored(&gw), expected);
}

#[test]
fn boot_poisoning_leaves_the_victims_later_batches_acked() {
    let (mut gw, _creds) = gateway_with_credentials();
    let victim = login(&gw, "dev-a", "pw-a");
    let attacker = login(&gw, "dev-b", "pw-b");
    victim
        .publish("tlm/v1/dev-a/up", &batch("dev-a", 3, 0, 2))
        .expect("publish");
    assert_eq!(next_ack(&victim), ("dev-a".into(), 3, 1));
    // From another device: refused by the broker.
    attacker
        .publish("tlm/v1/dev-a/up", &batch("dev-a", u32::MAX, 0, 1))
        .expect("publish");
    assert_eq!(
        attacker.next_reply(WAIT),
        Some(Reply::PubAck(NOT_AUTHORIZED))
    );
    // From the right identity (a corrupt boot counter, or stolen credentials): refused and
    // counted by the sequencer, not adopted.
    drop(victim);
    let thief =
        TestClient::connect_v5(gw.mqtt5, "dev-a", Some(("dev-a", "pw-a"))).expect("logs in");
    thief
        .publish("tlm/v1/dev-a/up", &batch("dev-a", u32::MAX, 0, 1))
        .expect("publish");
    gw.wait_metric("gateway_buffer_boot_jump_batches_total", WAIT, |v| v == 1.0)
        .expect("boot jump counted");
    drop(thief);
    // The real device goes on, before and after a restart of the gateway.
    let victim = login(&gw, "dev-a", "pw-a");
    victim
        .publish("tlm/v1/dev-a/up", &batch("dev-a", 3, 2, 2))
        .expect("publish");
    assert_eq!(next_ack(&victim), ("dev-a".into(), 3, 3));
    drop(victim);
    gw.terminate(WAIT).expect("clean exit");
    gw.spawn().expect("restarts");
    let victim = login(&gw, "dev-a", "pw-a");
    victim
        .publish("tlm/v1/dev-a/up", &batch("dev-a", 3, 4, 1))
        .expect("publish");
    assert_eq!(next_ack(&victim), ("dev-a".into(), 3, 4));
    assert_eq!(
        gw.metric("gateway_buffer_stale_boot_batches_total")
            .expect("m"),
        0.0
    );
    gw.terminate(WAIT).expect("clean exit");
    let expected: Vec<_> = (0..5).map(|s| ("dev-a".to_owned(), 3, s)).collect();
    assert_eq!(stored(&gw), expected);
}

#[test]
fn wills_and_retained_messages_are_refused() {
    // Open mode: the same rules hold with the client ID as identity.
    let mut gw = GatewayProcess::start(GatewayOptions::default()).expect("gateway starts");
    let victim = TestClient::connect_v5(gw.mqtt5, "dev-a", None).expect("connects");
    victim.subscribe("tlm/v1/dev-a/ack").expect("subscribe");
    assert_eq!(victim.next_reply(WAIT), Some(Reply::SubAck(vec![0])));

    // dev-b leaves a will that writes as dev-a, then drops its TCP connection unannounced.
    let mut socket = TcpStream::connect(gw.mqtt311).expect("tcp");
    socket
        .write_all(&raw_mqtt::connect(
            b"dev-b",
            Some((b"tlm/v1/dev-a/up", &batch("dev-a", 1, 0, 4))),
        ))
        .expect("connect");
    let mut connack = [0u8; 4];
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    socket.read_exact(&mut connack).expect("CONNACK");
    assert_eq!(connack, raw_mqtt::CONNACK_ACCEPTED, "connected");
    drop(socket);
    // A retained message on its own uplink: refused too (the broker keeps none).
    victim
        .publish_with("tlm/v1/dev-a/up", &batch("dev-a", 1, 0, 1), true)
        .expect("publish");
    assert_eq!(victim.next_reply(WAIT), Some(Reply::PubAck(NOT_AUTHORIZED)));
    std::thread::sleep(QUIET);
    assert_eq!(refused(&gw, "will", "will"), 1.0);
    assert_eq!(refused(&gw, "publish", "retain"), 1.0);
    assert!(victim.recv(QUIET).is_none(), "nothing acked for dev-a");
    assert_eq!(
        gw.metric("gateway_ingest_messages_total").expect("m"),
        0.0,
        "nothing reached the gateway"
    );
    gw.terminate(WAIT).expect("clean exit");
    assert_eq!(stored(&gw), Vec::new());
}

#[test]
fn the_gateways_own_link_id_and_invalid_ids_are_refused_at_connect() {
    let gw = GatewayProcess::start(GatewayOptions::default()).expect("gateway starts");
    for id in [gateway::ingest::authorize::LINK_ID, "x/y", "x/y", "a b"] {
        assert!(
            TestClient::connect_v5(gw.mqtt5, id, None).is_err(),
            "{id:?} connected"
        );
    }
    assert_eq!(refused(&gw, "connect", "reserved_client_id"), 1.0);
    assert_eq!(refused(&gw, "connect", "invalid_client_id"), 3.0);
    // Ingest still works: a device is acked, and /health is ok.
    let device = TestClient::connect_v5(gw.mqtt5, "dev-1", None).expect("connects");
    device.subscribe("tlm/v1/dev-1/ack").expect("subscribe");
    device
        .publish("tlm/v1/dev-1/up", &batch("dev-1", 1, 0, 2))
        .expect("publish");
    assert_eq!(next_ack(&device), ("dev-1".into(), 1, 1));
    let (code, body) = gw.http_get("/health").expect("health");
    assert_eq!(code, 200, "{body}");
    // Every refusal was logged, and the listeners' addresses were printed at start.
    let log = gw.log_text();
    assert!(log.contains("Refused a connection"), "{log}");
    assert!(
        log.contains(&format!("MQTT v5 listener on {}", gw.mqtt5)),
        "{log}"
    );
}

#[test]
fn the_mqtt311_listener_can_be_turned_off() {
    let options = GatewayOptions {
        mqtt311_off: true,
        ..GatewayOptions::default()
    };
    let gw = GatewayProcess::start(options).expect("gateway starts");
    assert!(
        TcpStream::connect(gw.mqtt311).is_err(),
        "the v3.1.1 port is open"
    );
    assert!(gw.log_text().contains("MQTT v3.1.1 listener off"));
}

#[test]
fn passwords_are_salted_slow_hashes_read_from_stdin_and_old_sha256_lines_are_refused() {
    let gateway = e2e::binaries::binary(e2e::binaries::GATEWAY).expect("gateway binary");
    let mut child = std::process::Command::new(&gateway)
        .args(["hash-password", "dev-a"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"pw-a\n")
        .expect("password on stdin");
    let out = child.wait_with_output().expect("exits");
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).expect("utf-8");
    assert!(line.starts_with("\"dev-a\" = \"$argon2id$v=19$"), "{line}");
    assert!(!line.contains("pw-a"), "{line}");

    // The printed line logs dev-a in.
    let creds = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(creds.path(), format!("[devices]\n{line}")).expect("write");
    let options = GatewayOptions {
        embedded_toml: format!("credentials_file = \"{}\"", creds.path().display()),
        ..GatewayOptions::default()
    };
    let gw = GatewayProcess::start(options.clone()).expect("gateway starts");
    login(&gw, "dev-a", "pw-a");
    drop(gw);

    // An unsalted line of the old format stops the start with a way out.
    let sha =
        "\"dev-a\" = \"sha256:0b14d501a594442a01c6859541bcb3e8164d183d32937b851835442f69d5c94e\"";
    std::fs::write(creds.path(), format!("[devices]\n{sha}\n")).expect("write");
    let err = GatewayProcess::start(options).expect_err("refused");
    assert!(
        err.to_string().contains("gateway hash-password DEVICE"),
        "{err}"
    );
}

/// Runs `gateway devices ARGS --file FILE`, with `stdin` as the password input.
fn devices_command(file: &std::path::Path, args: &[&str], stdin: &str) -> String {
    let gateway = e2e::binaries::binary(e2e::binaries::GATEWAY).expect("gateway binary");
    let mut child = std::process::Command::new(&gateway)
        .arg("devices")
        .args(args)
        .arg("--file")
        .arg(file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("stdin");
    let out = child.wait_with_output().expect("exits");
    assert!(
        out.status.success(),
        "devices {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn devices_are_provisioned_and_revoked_on_reload_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("devices.toml");
    std::fs::write(&file, "# Devices of this site\n[devices]\n").expect("write");
    devices_command(&file, &["add", "dev-a"], "pw-a\n");
    devices_command(&file, &["add", "dev-b"], "pw-b\n");
    assert_eq!(devices_command(&file, &["list"], ""), "dev-a\ndev-b\n");
    let options = GatewayOptions {
        embedded_toml: format!("credentials_file = \"{}\"", file.display()),
        ..GatewayOptions::default()
    };
    let gw = GatewayProcess::start(options).expect("gateway starts");
    let a = login(&gw, "dev-a", "pw-a");
    let b = login(&gw, "dev-b", "pw-b");
    assert!(
        TestClient::connect_v5(gw.mqtt5, "dev-c", Some(("dev-c", "pw-c"))).is_err(),
        "dev-c is not provisioned yet"
    );

    // Add dev-c, remove dev-b, reload: dev-c logs in, dev-b is cut off within a second,
    // dev-a is not disturbed.
    devices_command(&file, &["add", "dev-c"], "pw-c\n");
    devices_command(&file, &["remove", "dev-b"], "");
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(text.starts_with("# Devices of this site\n"), "{text}");
    gw.reload().expect("SIGHUP");
    assert_eq!(
        b.next_reply(Duration::from_secs(1)),
        Some(Reply::Closed),
        "dev-b still connected a second after the reload"
    );
    gw.wait_metric("gateway_ingest_revoked_disconnects_total", WAIT, |v| {
        v == 1.0
    })
    .expect("counted");
    assert_eq!(
        gw.metric("gateway_ingest_credential_reloads_total")
            .expect("m"),
        1.0
    );
    assert!(
        TestClient::connect_v5(gw.mqtt5, "dev-b", Some(("dev-b", "pw-b"))).is_err(),
        "a removed device logged in"
    );
    let c = login(&gw, "dev-c", "pw-c");
    c.publish("tlm/v1/dev-c/up", &batch("dev-c", 1, 0, 1))
        .expect("publish");
    assert_eq!(next_ack(&c), ("dev-c".into(), 1, 0));
    a.publish("tlm/v1/dev-a/up", &batch("dev-a", 1, 0, 1))
        .expect("publish");
    assert_eq!(next_ack(&a), ("dev-a".into(), 1, 0));
    assert_eq!(a.next_reply(Duration::ZERO), Some(Reply::PubAck(0)));
    assert_eq!(
        a.next_reply(Duration::from_millis(200)),
        None,
        "dev-a was disturbed"
    );

    // A broken file is not applied: the devices in force stay as they were.
    std::fs::write(&file, "[devices]\n\"dev-a\" = \"sha256:00\"\n").expect("write");
    gw.reload().expect("SIGHUP");
    gw.wait_metric(
        "gateway_ingest_credential_reload_failures_total",
        WAIT,
        |v| v == 1.0,
    )
    .expect("refused reload counted");
    login(&gw, "dev-c", "pw-c");
}
