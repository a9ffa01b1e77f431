//! MQTT over TLS on the gateway's embedded broker, attacked and used from outside: openssl
//! s_client (an independent TLS stack speaking hand-written MQTT) and rumqttc over rustls, with
//! certificates made by the site-certs script README gives site owners. A device certificate
//! proves a device ID: every way around that (no certificate, an expired one, one from another
//! CA, a revoked one, a certificate for A used as B, a client that does not trust the gateway)
//! fails and is counted on `/metrics`.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::mqtt_client::{Reply, TestClient};
use e2e::site_certs::{SiteCerts, client_tls};
use e2e::{GatewayOptions, GatewayProcess};
use e2e::{devsim, raw_mqtt};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use telemetry_wire::Ack;

const WAIT: Duration = Duration::from_secs(10);
/// MQTT v5 reason code "not authorized".
const NOT_AUTHORIZED: u8 = 0x87;

fn batch(device: &str, first_seq: u32, count: u32) -> Vec<u8> {
    e2e::uplink::batch(device, 1, first_seq, count, first_seq)
}

fn tls_gateway(
    certs: &SiteCerts,
    client_certificates: Option<&str>,
    embedded: &str,
) -> GatewayProcess {
    GatewayProcess::start(GatewayOptions {
        embedded_toml: embedded.to_owned(),
        tls_toml: Some(certs.gateway_toml(client_certificates)),
        mqtt311_off: true,
        ..GatewayOptions::default()
    })
    .expect("gateway starts")
}

fn handshakes(gw: &GatewayProcess, result: &str) -> f64 {
    gw.metric(&format!(
        "gateway_ingest_tls_handshakes_total{{result=\"{result}\"}}"
    ))
    .unwrap_or(0.0)
}

/// Waits until the handshake counter for `result` reaches `n`.
fn wait_handshakes(gw: &GatewayProcess, result: &str, n: f64) {
    let sample = format!("gateway_ingest_tls_handshakes_total{{result=\"{result}\"}}");
    if let Err(e) = gw.wait_metric(&sample, WAIT, |v| v >= n) {
        panic!(
            "{e}: {}",
            gw.http_get("/metrics").map(|(_, m)| m).unwrap_or_default()
        );
    }
}

/// Connects over TLS as `client_id`, showing `certificate` (cert, key) if given, and
/// subscribes to the device's ack topic.
fn connect(
    gw: &GatewayProcess,
    certs: &SiteCerts,
    client_id: &str,
    certificate: Option<(&Path, &Path)>,
    login: Option<(&str, &str)>,
) -> Result<TestClient, e2e::HarnessError> {
    let tls = client_tls(&certs.ca(), certificate)?;
    let client = TestClient::connect_v5_tls(gw.mqtts5, client_id, login, tls)?;
    client.subscribe(&format!("tlm/v1/{client_id}/ack"))?;
    assert_eq!(client.next_reply(WAIT), Some(Reply::SubAck(vec![0])));
    Ok(client)
}

/// Publishes a batch and waits for its durable ack.
fn publish_and_ack(client: &TestClient, device: &str, first_seq: u32, count: u32) {
    client
        .publish(
            &format!("tlm/v1/{device}/up"),
            &batch(device, first_seq, count),
        )
        .expect("publish");
    assert_eq!(client.next_reply(WAIT), Some(Reply::PubAck(0)));
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, payload) = client
            .recv(deadline.saturating_duration_since(Instant::now()))
            .expect("the device is acked");
        let ack = Ack::decode(&payload).expect("ack decodes");
        if ack.through_seq >= first_seq + count - 1 {
            return;
        }
    }
}

fn sighup(gw: &GatewayProcess) {
    let status = Command::new("kill")
        .args(["-HUP", &gw.pid().expect("running").to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[test]
fn openssl_s_client_speaks_mqtt_to_the_tls_listener() {
    let certs = SiteCerts::create("s_client").expect("site CA");
    let (cert, key) = certs.device("dev-s", 30).expect("device certificate");
    let gw = tls_gateway(&certs, Some("required"), "");
    let mut s_client = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-connect"])
        .arg(gw.mqtts5.to_string())
        .arg("-CAfile")
        .arg(certs.ca())
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed (tests/install-prerequisites installs it)");
    let mut stdin = s_client.stdin.take().unwrap();
    let mut packets = raw_mqtt::connect_v5(b"dev-s");
    packets.extend(raw_mqtt::subscribe_v5(b"tlm/v1/dev-s/ack", 1));
    packets.extend(raw_mqtt::publish_v5(
        b"tlm/v1/dev-s/up",
        &batch("dev-s", 0, 3),
        2,
    ));
    stdin.write_all(&packets).unwrap();
    stdin.flush().unwrap();
    // Read until the gateway's ack publish arrives (s_client copies the decrypted stream).
    let mut stdout = s_client.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if seen.windows(16).any(|w| w == b"tlm/v1/dev-s/ack") {
                break;
            }
        }
        seen
    });
    let deadline = Instant::now() + WAIT;
    while !reader.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = s_client.kill();
    let output = s_client.wait_with_output().unwrap();
    let seen = reader.join().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // CONNACK: type 2, no session, reason 0 (success).
    assert!(
        seen.len() >= 4 && seen[0] == 0x20 && seen[2] == 0 && seen[3] == 0,
        "no successful CONNACK over TLS: {seen:02x?}; s_client: {stderr}"
    );
    assert!(
        seen.windows(16).any(|w| w == b"tlm/v1/dev-s/ack"),
        "no durable ack over TLS: {seen:02x?}; s_client: {stderr}"
    );
    assert!(stderr.contains("verify return:1"), "{stderr}");
    assert_eq!(handshakes(&gw, "ok"), 1.0);
}

#[test]
fn a_device_certificate_proves_its_device_and_nothing_else() {
    let certs = SiteCerts::create("identity").expect("site CA");
    let (a_cert, a_key) = certs.device("dev-a", 30).expect("certificate");
    let (old_cert, old_key) = certs.device("dev-old", -1).expect("expired certificate");
    let other_site = SiteCerts::create("other site").expect("other CA");
    let (stranger_cert, stranger_key) = other_site.device("dev-x", 30).expect("certificate");
    let gw = tls_gateway(&certs, Some("required"), "");

    // dev-a with its own certificate: no password needed, publishes, is acked.
    let a = connect(&gw, &certs, "dev-a", Some((&a_cert, &a_key)), None).expect("dev-a logs in");
    publish_and_ack(&a, "dev-a", 0, 5);

    // dev-a's certificate used to publish as dev-b: refused at CONNECT, and in the session.
    assert!(
        connect(&gw, &certs, "dev-b", Some((&a_cert, &a_key)), None).is_err(),
        "dev-a's certificate must not log in as dev-b"
    );
    assert_eq!(
        gw.metric(
            "gateway_ingest_refused_total{action=\"connect\",reason=\"certificate_mismatch\"}"
        )
        .unwrap_or(0.0),
        1.0
    );
    a.publish("tlm/v1/dev-b/up", &batch("dev-b", 0, 5))
        .expect("publish");
    assert_eq!(a.next_reply(WAIT), Some(Reply::PubAck(NOT_AUTHORIZED)));

    // No certificate, an expired one, one from another CA: the handshake fails, counted.
    assert!(connect(&gw, &certs, "dev-a", None, None).is_err());
    wait_handshakes(&gw, "no_certificate", 1.0);
    assert!(connect(&gw, &certs, "dev-old", Some((&old_cert, &old_key)), None).is_err());
    wait_handshakes(&gw, "expired", 1.0);
    assert!(
        connect(
            &gw,
            &certs,
            "dev-x",
            Some((&stranger_cert, &stranger_key)),
            None
        )
        .is_err()
    );
    wait_handshakes(&gw, "unknown_issuer", 1.0);

    // A device that trusts another CA refuses the gateway; the gateway counts its alert.
    let wrong_ca = client_tls(&other_site.ca(), Some((&a_cert, &a_key))).unwrap();
    assert!(TestClient::connect_v5_tls(gw.mqtts5, "dev-a", None, wrong_ca).is_err());
    wait_handshakes(&gw, "client_alert", 1.0);

    // dev-a was not disturbed by any of it.
    publish_and_ack(&a, "dev-a", 5, 5);
    let log = gw.log_text();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn revocation_and_new_certificates_apply_on_reload_without_dropping_other_devices() {
    let certs = SiteCerts::create("reload").expect("site CA");
    let (a_cert, a_key) = certs.device("dev-a", 30).expect("certificate");
    let (c_cert, c_key) = certs.device("dev-c", 30).expect("certificate");
    let gw = tls_gateway(&certs, Some("required"), "");
    let a = connect(&gw, &certs, "dev-a", Some((&a_cert, &a_key)), None).expect("dev-a");
    let c = connect(&gw, &certs, "dev-c", Some((&c_cert, &c_key)), None).expect("dev-c");
    let expiry_before = gw
        .metric("gateway_ingest_tls_certificate_expiry_timestamp_seconds")
        .unwrap();

    // Revoke dev-c and renew the gateway's certificate, then reload.
    certs.revoke("dev-c").expect("revoke");
    std::thread::sleep(Duration::from_millis(1100)); // a later notAfter, to see the renewal
    certs.renew_gateway().expect("renew");
    sighup(&gw);
    gw.wait_metric("gateway_ingest_tls_reloads_total", WAIT, |v| v >= 1.0)
        .expect("TLS files reloaded");

    // dev-c, revoked while logged in, is disconnected, and cannot log in again.
    assert_eq!(
        c.next_reply(WAIT),
        Some(Reply::Closed),
        "the revoked device is dropped"
    );
    assert!(connect(&gw, &certs, "dev-c", Some((&c_cert, &c_key)), None).is_err());
    wait_handshakes(&gw, "revoked", 1.0);
    assert!(
        gw.metric("gateway_ingest_tls_certificate_expiry_timestamp_seconds")
            .unwrap()
            > expiry_before,
        "the renewed gateway certificate is served"
    );
    // dev-a's session outlived the reload, and new logins work with the new certificate.
    publish_and_ack(&a, "dev-a", 0, 3);
    let (d_cert, d_key) = certs.device("dev-d", 30).expect("certificate");
    drop(connect(&gw, &certs, "dev-d", Some((&d_cert, &d_key)), None).expect("dev-d"));

    // A broken file changes nothing: the reload is refused and counted.
    std::fs::write(certs.crl(), "not a CRL").unwrap();
    sighup(&gw);
    gw.wait_metric("gateway_ingest_tls_reload_failures_total", WAIT, |v| {
        v >= 1.0
    })
    .expect("reload refused");
    publish_and_ack(&a, "dev-a", 3, 3);
}

#[test]
fn without_a_certificate_a_device_logs_in_with_its_password_over_tls() {
    let certs = SiteCerts::create("optional").expect("site CA");
    let (a_cert, a_key) = certs.device("dev-a", 30).expect("certificate");
    let creds = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        creds.path(),
        format!(
            "[devices]\n\"dev-p\" = \"{}\"\n",
            gateway::ingest::auth::hash_password("pw-p").unwrap()
        ),
    )
    .unwrap();
    let embedded = format!("credentials_file = \"{}\"", creds.path().display());
    let gw = tls_gateway(&certs, Some("optional"), &embedded);

    let p = connect(&gw, &certs, "dev-p", None, Some(("dev-p", "pw-p"))).expect("password login");
    publish_and_ack(&p, "dev-p", 0, 4);
    assert!(connect(&gw, &certs, "dev-p", None, Some(("dev-p", "wrong"))).is_err());
    assert!(connect(&gw, &certs, "dev-q", None, None).is_err());
    // A certificate is a credential of its own: dev-a is not in the credentials file.
    let a =
        connect(&gw, &certs, "dev-a", Some((&a_cert, &a_key)), None).expect("certificate login");
    publish_and_ack(&a, "dev-a", 0, 2);
}

/// Runs devsim over TLS against `gw` and returns its JSON summary (it must succeed).
fn devsim_tls(gw: &GatewayProcess, certs: &SiteCerts, args: &[&str]) -> String {
    let ca = certs.ca().display().to_string();
    let mut all = vec!["--tls", "--ca", &ca, "--json"];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) =
        devsim::finish(devsim::spawn(gw.mqtts5, &all).expect("devsim starts"))
            .expect("devsim finishes");
    assert!(ok, "devsim over TLS: {stdout}\n{stderr}");
    stdout
}

fn number(json: &str, name: &str) -> u64 {
    devsim::summary_number(json, name).expect("summary field")
}

#[test]
fn devsim_over_tls_with_passwords_and_with_certificates_is_acked_and_stored_once() {
    let certs = SiteCerts::create("devsim").expect("site CA");
    for i in 0..10 {
        certs
            .device(&format!("crt-{i:04}"), 30)
            .expect("certificate");
    }
    let creds = tempfile::NamedTempFile::new().unwrap();
    let hash = gateway::ingest::auth::hash_password("s3cret").unwrap();
    let lines: String = (0..10)
        .map(|i| format!("\"pw-{i:04}\" = \"{hash}\"\n"))
        .collect();
    std::fs::write(creds.path(), format!("[devices]\n{lines}")).unwrap();
    let embedded = format!("credentials_file = \"{}\"", creds.path().display());
    let mut gw = tls_gateway(&certs, Some("optional"), &embedded);

    #[rustfmt::skip]
    let load = ["--devices", "10", "--rate", "40", "--duration", "4", "--batch-max", "20", "--drain-timeout", "30"];
    // Server-only TLS: the devices trust the site CA and log in with their password.
    let mut args = load.to_vec();
    args.extend(["--id-prefix", "pw-", "--mqtt-password", "s3cret"]);
    let with_passwords = devsim_tls(&gw, &certs, &args);
    // Mutual TLS: each device shows its own certificate, no password.
    let (cert, key) = certs.device_template();
    let mut args = load.to_vec();
    args.extend(["--id-prefix", "crt-", "--cert", &cert, "--key", &key]);
    let with_certificates = devsim_tls(&gw, &certs, &args);

    let mut produced = 0;
    for summary in [&with_passwords, &with_certificates] {
        assert_eq!(
            number(summary, "acked"),
            number(summary, "produced"),
            "{summary}"
        );
        assert_eq!(number(summary, "dropped"), 0, "{summary}");
        produced += number(summary, "produced");
    }
    assert!(handshakes(&gw, "ok") >= 20.0);
    gw.terminate(Duration::from_secs(20)).expect("clean exit");
    let stored = devsim::buffer_contents(&gw.data_dir().join("buffer.redb")).expect("buffer");
    assert_eq!(
        stored.len() as u64,
        produced,
        "every produced reading stored"
    );
    assert!(stored.values().all(|&n| n == 1), "nothing stored twice");
}

/// The firmware core's TLS (in devsim) refuses a gateway it cannot verify: one whose
/// certificate another site's CA signed, and one that does not carry the name the device
/// dials. Nothing is sent, so nothing is stored or acked; with the right CA and name the same
/// devices get through.
#[test]
fn the_firmware_tls_refuses_a_gateway_it_cannot_verify() {
    let certs = SiteCerts::create("site").expect("site CA");
    let other = SiteCerts::create("impostor").expect("another CA");
    let mut gw = tls_gateway(&certs, Some("optional"), "");
    #[rustfmt::skip]
    let load = ["--devices", "2", "--rate", "20", "--duration", "2", "--drain-timeout", "3"];
    let refused = |ca: &SiteCerts, extra: &[&str], prefix: &str| {
        let ca = ca.ca().display().to_string();
        let mut args = vec!["--tls", "--ca", &ca, "--json", "--id-prefix", prefix];
        args.extend_from_slice(&load);
        args.extend_from_slice(extra);
        let (ok, stdout, stderr) =
            devsim::finish(devsim::spawn(gw.mqtts5, &args).expect("devsim starts"))
                .expect("devsim finishes");
        assert!(!ok, "devsim must not complete: {stdout}\n{stderr}");
        assert!(number(&stdout, "produced") > 0, "{stdout}");
        assert_eq!(number(&stdout, "acked"), 0, "{stdout}");
    };
    // Another site's CA: the gateway's certificate does not verify.
    refused(&other, &[], "wrong-ca-");
    // The right CA, but the device dials a name the certificate does not carry.
    refused(
        &certs,
        &["--server-name", "gateway.elsewhere.lan"],
        "wrong-name-",
    );
    assert_eq!(handshakes(&gw, "ok"), 0.0, "no handshake completed");

    // The same load with the right CA and name is acked in full.
    let mut args = load.to_vec();
    args.extend(["--id-prefix", "right-", "--server-name", "localhost"]);
    let summary = devsim_tls(&gw, &certs, &args);
    assert_eq!(number(&summary, "acked"), number(&summary, "produced"));
    gw.terminate(Duration::from_secs(20)).expect("clean exit");
    let stored = devsim::buffer_contents(&gw.data_dir().join("buffer.redb")).expect("buffer");
    assert_eq!(stored.len() as u64, number(&summary, "produced"));
}

/// Whether the gateway has not closed `s` yet.
fn still_open(s: &std::net::TcpStream) -> bool {
    let mut byte = [0u8; 1];
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    match s.peek(&mut byte) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    }
}

/// Opens `n` TCP connections to `addr` that never send a byte, and keeps `n` open (the gateway
/// closes each after its handshake timeout; it is opened again) until `stop`.
fn hold_silent_connections(
    addr: std::net::SocketAddr,
    n: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let mut open: Vec<std::net::TcpStream> = Vec::with_capacity(n);
        let mut opened = 0u64;
        while !stop.load(Ordering::SeqCst) {
            // Drop the ones the gateway closed (a read of 0 bytes), refill to n.
            open.retain(still_open);
            while open.len() < n {
                match std::net::TcpStream::connect(addr) {
                    Ok(s) => {
                        open.push(s);
                        opened += 1;
                    }
                    Err(e) => panic!(
                        "cannot hold {n} silent connections ({e}); raise `ulimit -n` above {}",
                        2 * n + 256
                    ),
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        opened
    })
}

#[test]
fn a_thousand_silent_connections_do_not_delay_tls_logins_or_acks() {
    let certs = SiteCerts::create("silent").expect("site CA");
    // Commits as soon as the load allows (not the SD-card-saving wait of up to 900 ms at low
    // load), so the ack latency measures the broker and TLS path, not the commit timer.
    let gw = GatewayProcess::start(GatewayOptions {
        tls_toml: Some(certs.gateway_toml(None)),
        buffer_toml: "min_commit_interval_ms = 25".into(),
        mqtt311_off: true,
        ..GatewayOptions::default()
    })
    .expect("gateway starts");
    #[rustfmt::skip]
    let load = ["--devices", "20", "--rate", "50", "--duration", "12", "--batch-max", "10", "--batch-interval-ms", "20", "--drain-timeout", "30"];

    // Other device IDs in the second run: devsim numbers boots by the clock, and the same
    // devices coming back more than 16 boots ahead would be held as a boot jump (issue 11).
    let with_prefix = |prefix: &'static str| {
        let mut args = load.to_vec();
        args.extend(["--id-prefix", prefix]);
        args
    };
    let quiet = devsim_tls(&gw, &certs, &with_prefix("quiet-"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let holder = hold_silent_connections(gw.mqtts5, 1_000, stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    let busy = devsim_tls(&gw, &certs, &with_prefix("busy-"));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let opened = holder.join().expect("holder");

    for summary in [&quiet, &busy] {
        assert_eq!(
            number(summary, "acked"),
            number(summary, "produced"),
            "{summary}"
        );
    }
    let p99 = |json: &str| {
        let at = json
            .find("\"ack_latency_p99_ms\":")
            .expect("p99 in summary")
            + 21;
        json[at..]
            .split([',', '}'])
            .next()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .expect("p99 parses")
    };
    let (p99_quiet, p99_busy) = (p99(&quiet), p99(&busy));
    // Below ~10 ms the machine's scheduling noise is the measurement: compare against that.
    assert!(
        p99_busy <= 2.0 * p99_quiet.max(10.0),
        "ack p99 {p99_busy} ms with {opened} silent connections vs {p99_quiet} ms without"
    );
    // The silent ones held their slots until the handshake timeout (10 s), and were counted.
    assert!(opened >= 1_000, "{opened}");
    wait_handshakes(&gw, "timeout", 1.0);
    println!(
        "ack p99: {p99_quiet} ms quiet, {p99_busy} ms with 1,000 silent TLS connections ({opened} opened)"
    );
}
