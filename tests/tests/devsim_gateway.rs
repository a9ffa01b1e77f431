//! Simulated devices (the real firmware core) drive the real gateway end to end, with link
//! drops and corrupt payloads: every reading is acked, every acked reading is stored exactly
//! once, and every corrupt payload is a counted rejection.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::devsim;
use e2e::{GatewayOptions, GatewayProcess};
use std::time::Duration;

fn field(json: &str, name: &str) -> u64 {
    devsim::summary_number(json, name).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn devsim_with_link_drops_and_corruption_is_fully_acked_and_stored_once() {
    let mut gw = GatewayProcess::start(GatewayOptions::default()).expect("gateway starts");
    let acked_log = gw.dir().join("acked.csv");
    let acked_arg = acked_log.display().to_string();
    let sim = devsim::spawn(
        gw.mqtt5,
        &[
            "--devices",
            "50",
            "--rate",
            "40",
            "--duration",
            "8",
            "--batch-max",
            "20",
            "--drop-every",
            "3",
            "--drop-for",
            "0.5",
            "--corrupt-share",
            "0.1",
            "--ack-timeout-ms",
            "1500",
            "--drain-timeout",
            "30",
            "--seed",
            "7",
            "--acked-log",
            &acked_arg,
            "--json",
        ],
    )
    .expect("devsim starts");
    let (ok, stdout, stderr) = devsim::finish(sim).expect("devsim finishes");
    assert!(ok, "devsim: {stdout}\n{stderr}");
    let (produced, acked, dropped) = (
        field(&stdout, "produced"),
        field(&stdout, "acked"),
        field(&stdout, "dropped"),
    );
    assert_eq!((acked, dropped), (produced, 0), "{stdout}");
    assert!(
        field(&stdout, "link_cuts") > 0 && field(&stdout, "corrupt_sent") > 0,
        "{stdout}"
    );

    let rejected: f64 = [
        "malformed_cbor",
        "trailing_bytes",
        "device_mismatch",
        "too_large",
        "unsupported_version",
        "missing_field",
    ]
    .iter()
    .map(|r| {
        gw.metric(&format!("gateway_ingest_rejected_total{{reason=\"{r}\"}}"))
            .expect("m")
    })
    .sum();
    assert!(rejected > 0.0, "corrupt payloads were rejected and counted");
    gw.terminate(Duration::from_secs(20)).expect("clean exit");

    let acked_set = devsim::acked_readings(&acked_log).expect("acked log");
    let stored = devsim::buffer_contents(&gw.data_dir().join("buffer.redb")).expect("buffer");
    assert_eq!(acked_set.len() as u64, produced);
    assert_eq!(
        stored.len() as u64,
        produced,
        "exactly the produced readings are stored"
    );
    assert!(stored.values().all(|&n| n == 1), "nothing stored twice");
    assert!(acked_set.iter().all(|k| stored.contains_key(k)));
}

#[test]
fn devices_log_in_with_their_id_and_password() {
    let creds = tempfile::NamedTempFile::new().expect("temp file");
    let lines: String = (0..5)
        .map(|i| {
            format!(
                "\"sim-{i:04}\" = \"{}\"\n",
                gateway::ingest::auth::hash_password("s3cret").expect("hashes")
            )
        })
        .collect();
    std::fs::write(creds.path(), format!("[devices]\n{lines}")).expect("write");
    let options = GatewayOptions {
        embedded_toml: format!("credentials_file = \"{}\"", creds.path().display()),
        ..GatewayOptions::default()
    };
    let gw = GatewayProcess::start(options).expect("gateway starts");
    #[rustfmt::skip]
    let args = ["--devices", "5", "--rate", "20", "--readings", "40", "--drain-timeout", "15", "--json"];
    let with = |password: &str| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--mqtt-password", password]);
        devsim::finish(devsim::spawn(gw.mqtt5, &all).expect("devsim starts"))
            .expect("devsim finishes")
    };
    let (ok, stdout, stderr) = with("s3cret");
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(field(&stdout, "acked"), 200, "{stdout}");
    let (ok, stdout, _) = with("wrong");
    assert!(
        !ok,
        "a wrong password must not get readings acked: {stdout}"
    );
    assert_eq!(field(&stdout, "acked"), 0, "{stdout}");
    assert!(gw.metric("gateway_ingest_auth_failures_total").expect("m") >= 5.0);
}
