//! Per-device facts (issue 15): `/health?devices` and `gateway devices list --status` show, for
//! each device, when it was last seen, the readings stored for it, the readings it lost from
//! its ring, what it was refused, and whether it is silent. Driven from outside: devsim devices
//! (a small ring and link cuts, so they lose readings; corrupt payloads, so they are refused
//! messages) and a plain MQTT client with a wrong password, then with a publish as another
//! device; checked against the gateway's own counters and its buffer file.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::binaries::{GATEWAY, binary};
use e2e::mqtt_client::{Reply, TestClient};
use e2e::{GatewayOptions, GatewayProcess, devsim};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// `/health?devices` as JSON, by device ID.
fn facts(gw: &GatewayProcess) -> (serde_json::Value, BTreeMap<String, serde_json::Value>) {
    let (code, body) = gw.http_get("/health?devices").expect("GET /health?devices");
    assert_eq!(code, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let devices = report["devices"]["devices"]
        .as_array()
        .unwrap_or_else(|| panic!("no device list: {report}"))
        .iter()
        .map(|d| (d["device"].as_str().unwrap().to_owned(), d.clone()))
        .collect();
    (report["devices"].clone(), devices)
}

fn number(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn each_device_is_reported_with_its_last_batch_readings_losses_and_refusals() {
    let creds = tempfile::NamedTempFile::new().expect("temp file");
    let hash = |pw: &str| gateway::ingest::auth::hash_password(pw).expect("hashes");
    let sim_hash = hash("sim-pw");
    std::fs::write(
        creds.path(),
        format!(
            "[devices]\n\"sim-0000\" = \"{sim_hash}\"\n\"sim-0001\" = \"{sim_hash}\"\n\
             \"dev-x\" = \"{}\"\n\"dev-never\" = \"{}\"\n",
            hash("pw-x"),
            hash("pw-never")
        ),
    )
    .expect("write credentials");
    let mut gw = GatewayProcess::start(GatewayOptions {
        embedded_toml: format!("credentials_file = \"{}\"", creds.path().display()),
        extra_toml: "silent_after_intervals = 3\nsilent_min_secs = 2".into(),
        ..GatewayOptions::default()
    })
    .expect("gateway starts");
    let before_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();

    // Two devices with a 16-reading ring, offline 1 s of every 2 at 40 readings/s: they drop
    // readings and report it in their next batch's `dropped`.
    #[rustfmt::skip]
    let sim = devsim::spawn(gw.mqtt5, &[
        "--devices", "2", "--rate", "40", "--duration", "6", "--batch-max", "8",
        "--ring-capacity", "16", "--drop-every", "2", "--drop-for", "1",
        "--corrupt-share", "0.2", "--mqtt-password", "sim-pw", "--seed", "3",
        "--drain-timeout", "30", "--json",
    ]).expect("devsim starts");

    // A plain client: a wrong password for a listed device, one for a made-up name, then a
    // login that publishes as another device and sends garbage on its own topic.
    assert!(TestClient::connect_v5(gw.mqtt5, "dev-x", Some(("dev-x", "wrong"))).is_err());
    assert!(TestClient::connect_v5(gw.mqtt5, "ghost", Some(("ghost", "wrong"))).is_err());
    let x = TestClient::connect_v5(gw.mqtt5, "dev-x", Some(("dev-x", "pw-x"))).expect("logs in");
    x.publish(
        "tlm/v1/sim-0000/up",
        &e2e::uplink::batch("sim-0000", 1, 0, 1, 0),
    )
    .expect("publish");
    assert_eq!(x.next_reply(WAIT), Some(Reply::PubAck(0x87)));
    x.publish("tlm/v1/dev-x/up", b"\xff\x00not cbor")
        .expect("publish");
    assert_eq!(x.next_reply(WAIT), Some(Reply::PubAck(0)));

    let (ok, stdout, stderr) = devsim::finish(sim).expect("devsim finishes");
    assert!(ok, "devsim: {stdout}\n{stderr}");
    let dropped = devsim::summary_number(&stdout, "dropped").unwrap();
    let corrupt = devsim::summary_number(&stdout, "corrupt_sent").unwrap();
    assert!(
        dropped > 0 && corrupt > 0,
        "devsim lost and corrupted: {stdout}"
    );

    // Silent after 2 s without a batch (3 × well under a second, and the 2-s floor).
    let deadline = Instant::now() + WAIT;
    let (summary, devices) = loop {
        let (summary, devices) = facts(&gw);
        let settled = number(&summary["silent"]) == 2
            && devices
                .get("dev-x")
                .is_some_and(|x| number(&x["refusals"]) == 3);
        if settled || Instant::now() > deadline {
            break (summary, devices);
        }
        std::thread::sleep(Duration::from_millis(200));
    };

    // The table: the two devsim devices (seen) and dev-x (refused only); neither the made-up
    // name nor dev-never (listed, never connected).
    assert_eq!(
        devices.keys().collect::<Vec<_>>(),
        ["dev-x", "sim-0000", "sim-0001"],
        "{summary}"
    );
    assert_eq!(number(&summary["seen"]), 2, "{summary}");
    assert_eq!(number(&summary["untracked_updates"]), 0, "{summary}");
    let x = &devices["dev-x"];
    assert_eq!(
        (
            number(&x["refused_logins"]),
            number(&x["refused_actions"]),
            number(&x["rejected_messages"])
        ),
        (1, 1, 1),
        "{x}"
    );
    assert_eq!(x["last_refusal"], "message: malformed_cbor", "{x}");
    assert!(x["last_seen_utc"].is_null() && x["silent"] == false, "{x}");

    let after_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let (mut stored, mut lost, mut rejected) = (0, 0, 0);
    for id in ["sim-0000", "sim-0001"] {
        let d = &devices[id];
        assert_eq!(d["silent"], true, "{d}");
        let ago = d["last_seen_seconds_ago"].as_f64().unwrap();
        assert!((2.0..WAIT.as_secs_f64() + 5.0).contains(&ago), "{d}");
        // The UTC time lies within the run.
        let utc = d["last_seen_utc"].as_str().unwrap();
        assert!(utc.ends_with('Z') && utc.len() == 24, "{d}");
        assert!(utc >= rfc3339(before_ms).as_str() && utc <= rfc3339(after_ms).as_str());
        assert_eq!(
            number(&d["refused_logins"]) + number(&d["refused_actions"]),
            0
        );
        stored += number(&d["readings_stored"]);
        lost += number(&d["readings_lost_at_device"]);
        rejected += number(&d["rejected_messages"]);
    }
    // Against the gateway's own counters: every stored reading, every reported drop and every
    // rejected message belongs to one device.
    let metric = |name: &str| gw.metric(name).unwrap() as u64;
    assert_eq!(stored, metric("gateway_buffer_readings_stored_total"));
    assert_eq!(lost, metric("gateway_ingest_device_dropped_readings_total"));
    assert!(
        lost > 0 && lost <= dropped,
        "lost {lost}, devsim dropped {dropped}"
    );
    let (_, metrics) = gw.http_get("/metrics").unwrap();
    let all_rejected: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("gateway_ingest_rejected_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    assert!(
        rejected > 0 && rejected <= corrupt,
        "{rejected} of {corrupt}"
    );
    assert_eq!(
        rejected + 1,
        all_rejected,
        "dev-x's garbage is the one more"
    );

    // The CLI table: every listed device, and dev-never as never seen.
    let out = std::process::Command::new(binary(GATEWAY).unwrap())
        .args(["devices", "list", "--status", "--endpoint"])
        .arg(gw.telemetry.to_string())
        .arg("--file")
        .arg(creds.path())
        .output()
        .expect("devices list runs");
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = |id: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("no row for {id}:\n{table}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    println!("{table}");
    assert!(table.starts_with("DEVICE"), "{table}");
    // DEVICE, LAST SEEN, AGO, STORED, LOST, REFUSALS, SILENT, LAST REFUSAL...
    let s0 = row("sim-0000");
    assert_eq!(s0[1], devices["sim-0000"]["last_seen_utc"], "{table}");
    assert_eq!(s0[3], devices["sim-0000"]["readings_stored"].to_string());
    assert_eq!(
        s0[4],
        devices["sim-0000"]["readings_lost_at_device"].to_string()
    );
    assert_eq!(s0[6], "yes", "{table}");
    assert_eq!(
        row("dev-x")[1..],
        [
            "never",
            "-",
            "0",
            "0",
            "3",
            "-",
            "message:",
            "malformed_cbor"
        ]
    );
    assert_eq!(
        row("dev-never")[1..],
        ["never", "-", "0", "0", "0", "-", "-"]
    );
    assert!(!table.contains("ghost"), "{table}");
    assert!(
        table.contains("4 devices, 2 seen since the gateway started, 2 silent"),
        "{table}"
    );

    // And what was stored per device is what the buffer file holds.
    gw.terminate(Duration::from_secs(20)).expect("stops");
    let held = devsim::buffer_contents(&gw.data_dir().join("buffer.redb")).expect("buffer reads");
    for id in ["sim-0000", "sim-0001"] {
        let n = held.keys().filter(|(d, _, _)| d == id).count() as u64;
        assert_eq!(n, number(&devices[id]["readings_stored"]), "{id}");
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of Unix ms, as the gateway writes it.
fn rfc3339(ms: u128) -> String {
    gateway::telemetry::devices::rfc3339_ms(ms as i64)
}
