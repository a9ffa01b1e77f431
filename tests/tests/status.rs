//! `gateway status --json` (for scripts) and `gateway status --watch` (the live view), against
//! a running gateway under devsim load.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::binaries::binary;
use e2e::{GatewayOptions, GatewayProcess, devsim};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn status_prints_json_and_a_live_view_with_rates() {
    let gw = GatewayProcess::start(GatewayOptions::default()).expect("gateway starts");
    #[rustfmt::skip]
    let sim = devsim::spawn(gw.mqtt5, &[
        "--devices", "5", "--rate", "100", "--duration", "6", "--batch-max", "10", "--json",
    ]).expect("devsim starts");
    std::thread::sleep(Duration::from_secs(2));
    let endpoint = gw.telemetry.to_string();

    let out = Command::new(binary("gateway").unwrap())
        .args(["status", "--json", "--endpoint", &endpoint])
        .output()
        .expect("status runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["status"], "ok", "{report}");
    assert!(
        report["buffer"]["readings_stored"].as_u64().unwrap() > 0,
        "{report}"
    );

    // Not a terminal: views follow one another, each after a separator line.
    let mut watch = Command::new(binary("gateway").unwrap())
        .args([
            "status",
            "--watch",
            "--interval",
            "0.5",
            "--endpoint",
            &endpoint,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("status --watch runs");
    std::thread::sleep(Duration::from_millis(2_300));
    watch.kill().unwrap();
    let mut text = String::new();
    watch
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let _ = watch.wait();
    assert!(text.matches("status: ok").count() >= 3, "{text}");
    let rates: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("rates: "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    assert!(rates.len() >= 2, "{text}");
    assert!(
        rates.iter().any(|&r| r > 0.0),
        "the live view shows readings arriving: {text}"
    );
    let (ok, stdout, stderr) = devsim::finish(sim).unwrap();
    assert!(ok, "{stdout}\n{stderr}");
}
