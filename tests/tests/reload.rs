//! Reload on SIGHUP (`systemctl reload`, issue 15), against the release gateway under devsim
//! load: a new log level takes effect in the gateway's own log, a device added to the
//! credentials file connects, a setting that needs a restart is named, nothing acked is lost
//! and no other device reconnects; and new forwarder limits change the rate a shard is fed
//! at, measured on the Kinesis emulator.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::forward_check::forward_toml;
use e2e::kinesis_emu::{EmulatorSettings, even_ranges};
use e2e::{GatewayOptions, GatewayProcess, KinesisEmulator, devsim};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Waits until the gateway's log holds `text` at least `n` times.
fn wait_log(gw: &GatewayProcess, text: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.log_text().matches(text).count() < n {
        assert!(
            Instant::now() < deadline,
            "{text:?} not {n} times in the log:\n{}",
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn edit(path: &std::path::Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read");
    assert!(text.contains(from), "{from:?} not in {text}");
    std::fs::write(path, text.replacen(from, to, 1)).expect("write");
}

#[test]
fn a_reload_under_load_changes_the_log_level_and_adds_a_device_without_reconnects() {
    let creds = tempfile::NamedTempFile::new().expect("temp file");
    let sim_hash = gateway::ingest::auth::hash_password("sim-pw").expect("hashes");
    let mut listed = String::from("[devices]\n");
    for i in 0..5 {
        listed += &format!("\"sim-{i:04}\" = \"{sim_hash}\"\n");
    }
    std::fs::write(creds.path(), &listed).expect("write credentials");
    let mut gw = GatewayProcess::start(GatewayOptions {
        embedded_toml: format!("credentials_file = \"{}\"", creds.path().display()),
        extra_toml: "log_level = \"info\"".into(),
        ..GatewayOptions::default()
    })
    .expect("gateway starts");
    let acked_a = gw.dir().join("acked-a.csv");
    #[rustfmt::skip]
    let sim = devsim::spawn(gw.mqtt5, &[
        "--devices", "5", "--rate", "50", "--duration", "8", "--batch-max", "10",
        "--mqtt-password", "sim-pw", "--acked-log", acked_a.to_str().unwrap(),
        "--drain-timeout", "30", "--json",
    ]).expect("devsim starts");
    std::thread::sleep(Duration::from_secs(2));

    // The level goes to warn; a device is added; a buffer setting changes (needs a restart).
    let late_hash = gateway::ingest::auth::hash_password("late-pw").expect("hashes");
    std::fs::write(
        creds.path(),
        format!("{listed}\"late-0000\" = \"{late_hash}\"\n"),
    )
    .expect("write credentials");
    edit(
        gw.config_path(),
        "log_level = \"info\"",
        "log_level = \"warn\"",
    );
    edit(
        gw.config_path(),
        "[buffer]\n",
        "[buffer]\nmax_commit_delay_ms = 30\n",
    );
    let restart = "Reload: buffer.max_commit_delay_ms changed; it needs a restart";
    gw.reload().expect("SIGHUP");
    wait_log(&gw, restart, 1);
    let log = gw.log_text();
    assert!(log.contains("Device credentials reloaded."), "{log}");
    assert!(log.contains("added=[\"late-0000\"]"), "{log}");
    assert!(
        log.contains("Reload: applying telemetry.log_level."),
        "{log}"
    );
    assert_eq!(log.matches("SIGHUP: reloading").count(), 1, "{log}");

    // The new device logs in and is acknowledged while the others keep sending.
    let acked_b = gw.dir().join("acked-b.csv");
    #[rustfmt::skip]
    let late = devsim::spawn(gw.mqtt5, &[
        "--devices", "1", "--id-prefix", "late-", "--rate", "50", "--duration", "2",
        "--mqtt-password", "late-pw", "--acked-log", acked_b.to_str().unwrap(),
        "--drain-timeout", "30", "--json",
    ]).expect("devsim starts");
    let (ok, stdout, stderr) = devsim::finish(late).expect("devsim finishes");
    assert!(ok, "the added device: {stdout}\n{stderr}");
    assert_eq!(devsim::summary_number(&stdout, "produced").unwrap(), 100);
    assert_eq!(devsim::summary_number(&stdout, "acked").unwrap(), 100);

    // At warn, a second reload's INFO lines are gone and its WARN line (the setting still
    // waiting for a restart) is there.
    gw.reload().expect("SIGHUP");
    wait_log(&gw, restart, 2);
    assert_eq!(gw.log_text().matches("SIGHUP: reloading").count(), 1);

    let (ok, stdout, stderr) = devsim::finish(sim).expect("devsim finishes");
    assert!(ok, "devsim: {stdout}\n{stderr}");
    let produced = devsim::summary_number(&stdout, "produced").unwrap();
    assert_eq!(devsim::summary_number(&stdout, "acked").unwrap(), produced);
    assert_eq!(
        devsim::summary_number(&stdout, "reconnects").unwrap(),
        0,
        "no device reconnected: {stdout}"
    );
    assert_eq!(
        gw.metric("gateway_ingest_revoked_disconnects_total")
            .unwrap(),
        0.0
    );
    assert_eq!(
        gw.metric("gateway_ingest_auth_failures_total").unwrap(),
        0.0
    );

    // Nothing acknowledged is missing from the buffer.
    gw.terminate(Duration::from_secs(20)).expect("stops");
    let held = devsim::buffer_contents(&gw.data_dir().join("buffer.redb")).expect("buffer");
    for log in [&acked_a, &acked_b] {
        let acked = devsim::acked_readings(log).expect("acked log");
        assert!(!acked.is_empty());
        let missing: Vec<_> = acked.iter().filter(|k| !held.contains_key(*k)).collect();
        assert!(
            missing.is_empty(),
            "acked but not stored: {:?}",
            &missing[..1]
        );
    }
}

/// Records the emulator accepted in each whole second since `start`.
fn records_per_second(emu: &KinesisEmulator, start: Instant) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    for r in emu.accepted() {
        *out.entry(r.arrival.saturating_duration_since(start).as_secs())
            .or_insert(0) += 1;
    }
    out
}

#[test]
fn a_reload_changes_the_forwarders_shard_limits_while_it_runs() {
    const STREAM: &str = "limits";
    let emu = KinesisEmulator::start_with(
        EmulatorSettings::default(),
        &[(STREAM.to_owned(), even_ranges(1))],
        1,
    )
    .expect("emulator");
    // Plain CBOR records (one device's batches each), 20 records/s: 60 devices want more.
    let forward = forward_toml(
        STREAM,
        "record_format = \"cbor\"\nshard_records_per_sec = 20\nmax_in_flight_per_shard = 1",
    );
    let mut gw = GatewayProcess::start(GatewayOptions {
        extra_toml: forward,
        env: emu.env_vars(),
        ..GatewayOptions::default()
    })
    .expect("gateway starts");
    let start = Instant::now();
    #[rustfmt::skip]
    let sim = devsim::spawn(gw.mqtt5, &[
        "--devices", "60", "--rate", "4", "--duration", "10", "--batch-max", "1",
        "--drain-timeout", "30", "--json",
    ]).expect("devsim starts");
    std::thread::sleep(Duration::from_secs(4));
    edit(
        gw.config_path(),
        "shard_records_per_sec = 20\nmax_in_flight_per_shard = 1",
        "shard_records_per_sec = 200\nmax_in_flight_per_shard = 4",
    );
    let reloaded = Instant::now();
    gw.reload().expect("SIGHUP");
    wait_log(&gw, "Forwarder limits reloaded.", 1);
    let (ok, stdout, stderr) = devsim::finish(sim).expect("devsim finishes");
    assert!(ok, "devsim: {stdout}\n{stderr}");
    // Delivered readings leave the buffer with its next checkpoint (`buffer.delete_delay_ms`).
    gw.wait_metric(
        "gateway_buffer_buffered_readings",
        Duration::from_secs(60),
        |v| v == 0.0,
    )
    .expect("drained");
    let log = gw.log_text();
    assert!(!log.contains("needs a restart"), "{log}");

    let per_second = records_per_second(&emu, start);
    let switch = reloaded.duration_since(start).as_secs();
    println!("records accepted per second (reload in second {switch}): {per_second:?}");
    let before: Vec<u64> = per_second.range(..switch).map(|(_, &n)| n).collect();
    let after: Vec<u64> = per_second.range(switch + 2..).map(|(_, &n)| n).collect();
    // Every whole second is a 1-second window of the emulator's clock: never above 20.
    assert!(
        before.iter().all(|&n| n <= 20) && before.iter().any(|&n| n >= 15),
        "at 20 records/s: {per_second:?}"
    );
    assert!(
        after.iter().any(|&n| n > 40),
        "after the reload the shard takes more: {per_second:?}"
    );
    assert_eq!(emu.stats().throttled, 0, "never above the shard's limit");
    gw.terminate(Duration::from_secs(20)).expect("stops");
}
