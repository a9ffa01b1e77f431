//! Hardening (issue 17), attacked from outside with plain MQTT clients: no single packet may
//! stop ingest or make the gateway forget readings it acknowledged.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::mqtt_client::TestClient;
use e2e::uplink::batch;
use e2e::{GatewayOptions, GatewayProcess};
use gateway::buffer::Buffer;
use std::time::Duration;
use telemetry_wire::Ack;

const WAIT: Duration = Duration::from_secs(10);

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

/// Opens `n` TCP connections to `addr` that say nothing; returns them, and how many the
/// gateway closed within `within`.
fn silent_connections(
    addr: std::net::SocketAddr,
    n: usize,
    within: Duration,
) -> (Vec<std::net::TcpStream>, usize) {
    use std::io::Read;
    let sockets: Vec<_> = (0..n)
        .filter_map(|_| std::net::TcpStream::connect(addr).ok())
        .collect();
    std::thread::sleep(within);
    let closed = sockets
        .iter()
        .filter(|s| {
            s.set_nonblocking(true).expect("nonblocking");
            let mut byte = [0u8; 1];
            let closed = match (&**s).read(&mut byte) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            };
            s.set_nonblocking(false).expect("blocking");
            closed
        })
        .count();
    (sockets, closed)
}

#[test]
fn connections_are_capped_before_connect() {
    let options = GatewayOptions {
        embedded_toml: "max_connections = 20".into(),
        ..GatewayOptions::default()
    };
    let gw = GatewayProcess::start(options).expect("gateway starts");
    let (sockets, closed) = silent_connections(gw.mqtt5, 60, Duration::from_secs(2));
    // 20 silent sockets hold every slot; the other 40 were closed at once.
    assert!(
        closed >= 35,
        "only {closed} of 60 silent connections were closed"
    );
    drop(sockets);
    std::thread::sleep(Duration::from_millis(300));
    let device = TestClient::connect_v5(gw.mqtt5, "dev-c", None).expect("connects");
    device.subscribe("tlm/v1/dev-c/ack").expect("subscribe");
    device
        .publish("tlm/v1/dev-c/up", &batch("dev-c", 1, 0, 2, 0))
        .expect("publish");
    assert_eq!(next_ack(&device), (1, 1));
}

#[test]
fn accept_errors_back_off_instead_of_spinning() {
    let gateway = e2e::binaries::binary(e2e::binaries::GATEWAY).expect("gateway binary");
    let options = GatewayOptions {
        // Few file descriptors: accepting more connections fails with EMFILE.
        launcher: Some(vec![
            "prlimit".into(),
            "--nofile=96:96".into(),
            gateway.into_os_string(),
        ]),
        ..GatewayOptions::default()
    };
    let gw = GatewayProcess::start(options).expect("gateway starts under prlimit");
    let started = std::time::Instant::now();
    let (sockets, _) = silent_connections(gw.mqtt5, 150, Duration::from_millis(100));
    std::thread::sleep(Duration::from_secs(3).saturating_sub(started.elapsed()));
    let log = gw.log_text();
    let lines = log.matches("Unable to accept socket").count();
    assert!(
        (1..=16).contains(&lines),
        "{lines} accept-error lines in 3 s:\n{}",
        log.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
    drop(sockets);
    // Descriptors free again: a device is served.
    std::thread::sleep(Duration::from_millis(1_500));
    let device = TestClient::connect_v5(gw.mqtt5, "dev-e", None).expect("connects");
    device.subscribe("tlm/v1/dev-e/ack").expect("subscribe");
    device
        .publish("tlm/v1/dev-e/up", &batch("dev-e", 1, 0, 1, 0))
        .expect("publish");
    assert_eq!(next_ack(&device), (1, 0));
}

/// One request on the gateway's control socket; the reply's first line.
fn control(gw: &GatewayProcess, request: &str) -> String {
    use std::io::{BufRead, Write};
    let socket = gw.data_dir().join("control.sock");
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).expect("control socket");
    stream
        .write_all(format!("{request}\n").as_bytes())
        .expect("request");
    let mut line = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut line)
        .expect("reply");
    line
}

#[test]
fn the_control_socket_deletes_only_what_an_export_durably_wrote() {
    let gw = GatewayProcess::start(GatewayOptions::default()).expect("gateway starts");
    let device = TestClient::connect_v5(gw.mqtt5, "dev-s", None).expect("connects");
    device.subscribe("tlm/v1/dev-s/ack").expect("subscribe");
    device
        .publish("tlm/v1/dev-s/up", &batch("dev-s", 1, 0, 5, 0))
        .expect("publish");
    assert_eq!(next_ack(&device), (1, 4));
    let stored = || {
        gw.metric("gateway_buffer_buffered_readings")
            .expect("metric")
    };
    assert_eq!(stored(), 5.0);

    // No export directory: refused as a bad request.
    let reply = control(&gw, r#"{"op":"delete","ids":[1]}"#);
    assert!(reply.contains("\"ok\":false"), "{reply}");
    // A directory with a planted manifest claiming log id 1, without its file.
    let planted = gw.dir().join("planted");
    std::fs::create_dir_all(&planted).expect("dir");
    let manifest = r#"{"manifest_version":1,"format":"json","totals":{"files":1,"rows":5,"bytes":10},
        "files":[{"path":"dt=2026-01-01/hour=00/part-1.json.gz","rows":5,"bytes":10,"sha256":"00",
        "run":1,"first_log_id":0,"last_log_id":99,"min_time_ms":0,"max_time_ms":0}],
        "runs":[],"exported":{"dev-s":[[1,0,4]]}}"#;
    std::fs::write(planted.join("_manifest.json"), manifest).expect("plant");
    let request = format!(
        r#"{{"op":"delete","dir":"{}","ids":[1]}}"#,
        planted.display()
    );
    let reply = control(&gw, &request);
    assert!(
        reply.contains("\"ok\":false") && reply.contains("nothing deleted"),
        "{reply}"
    );
    // The same with the file present but not what the manifest says.
    let file = planted.join("dt=2026-01-01/hour=00/part-1.json.gz");
    std::fs::create_dir_all(file.parent().expect("parent")).expect("dir");
    std::fs::write(&file, b"0123456789").expect("file");
    let reply = control(&gw, &request);
    assert!(reply.contains("\"ok\":false"), "{reply}");
    assert_eq!(stored(), 5.0, "nothing deleted");
}

/// One device floods a 1 MiB buffer (forwarding off), then another device publishes three
/// full batches. Returns whether all of those were acked, the buffer's bytes once the flood
/// was absorbed, and the readings refused by the per-device quota.
fn flood_then_newcomer(fair_share_above: &str) -> (bool, f64, f64) {
    let gw = GatewayProcess::start(GatewayOptions {
        buffer_toml: format!("capacity_bytes = 1048576\nfair_share_above = {fair_share_above}"),
        ..GatewayOptions::default()
    })
    .expect("gateway starts");
    let flooder = TestClient::connect_v5(gw.mqtt5, "dev-flood", None).expect("connects");
    // 2,000 full batches (~1.8 MB of records): more than the whole buffer. In steps of 100
    // that the gateway takes in before the next (the embedded broker drops what its reader
    // lags behind by more than broker_log_bytes).
    let batches = 2_000u32;
    for i in 0..batches {
        flooder
            .publish(
                "tlm/v1/dev-flood/up",
                &batch("dev-flood", 1, i * 128, 128, i * 128),
            )
            .expect("publish");
        if (i + 1) % 100 == 0 {
            gw.wait_metric("gateway_ingest_messages_total", WAIT, |v| {
                v >= f64::from(i + 1)
            })
            .expect("the flood arrives");
        }
    }
    // Let the writer commit what it admitted.
    std::thread::sleep(Duration::from_secs(2));
    let held = gw.metric("gateway_buffer_buffered_bytes").expect("m");
    let newcomer = TestClient::connect_v5(gw.mqtt5, "dev-new", None).expect("connects");
    newcomer.subscribe("tlm/v1/dev-new/ack").expect("subscribe");
    std::thread::sleep(Duration::from_millis(200));
    // Three full batches: more than the few hundred bytes a full buffer may have left.
    for i in 0..3 {
        newcomer
            .publish(
                "tlm/v1/dev-new/up",
                &batch("dev-new", 1, i * 128, 128, i * 128),
            )
            .expect("publish");
    }
    let mut acked = false;
    while let Some((_, payload)) = newcomer.recv(Duration::from_secs(5)) {
        let ack = Ack::decode(&payload).expect("ack decodes");
        if ack.through_seq == 3 * 128 - 1 {
            acked = true;
            break;
        }
    }
    let refused = gw
        .metric("gateway_buffer_readings_refused_quota_total")
        .expect("m");
    (acked, held, refused)
}

#[test]
fn one_device_cannot_take_the_buffer_from_the_others() {
    // Without the quota (1 = off) the attack works: the flood fills the buffer, the next
    // device is refused (reject-new), and nothing says why but "full".
    let (acked, held, _) = flood_then_newcomer("1.0");
    assert!(
        !acked,
        "without the quota the flood starves the newcomer (flood holds {held} bytes)"
    );
    assert!(held > 1_000_000.0, "{held}");
    // With the default quota the flood stops at half the buffer, and the newcomer is acked.
    let (acked, held, refused) = flood_then_newcomer("0.5");
    assert!(acked, "the newcomer is stored and acked");
    assert!(held <= 524_288.0 + 2_048.0, "the flood holds {held} bytes");
    assert!(refused > 0.0, "the flood's refusals are counted");
}
