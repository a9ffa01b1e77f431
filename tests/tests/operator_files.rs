//! The operator's files shipped in the .deb (issue 15): `gateway/deploy/prometheus/alerts.yml`
//! passes `promtool check rules`, and `promtool test rules` fires each alert on a synthetic
//! series (tests/support/prometheus/alerts_test.yml); every metric the alerts and the Grafana
//! dashboard (`gateway/deploy/grafana/gateway.json`) query is one a running gateway exports.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::forward_check::forward_toml;
use e2e::mqtt_client::TestClient;
use e2e::{GatewayOptions, GatewayProcess, KinesisEmulator, devsim};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool").args(args).output().unwrap_or_else(|e| {
        panic!("promtool is missing ({e}): tests/install-prerequisites installs Debian's prometheus package")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// `gateway_*` metric names in a PromQL expression.
fn metric_names(expr: &str, out: &mut BTreeSet<String>) {
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("gateway_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(expr.len(), |n| start + n);
        if boundary {
            out.insert(expr[start..end].to_owned());
        }
        i = end;
    }
}

#[test]
fn the_alert_rules_pass_promtool_and_fire_on_synthetic_series() {
    let rules = repo().join("gateway/deploy/prometheus/alerts.yml");
    let checked = promtool(&["check", "rules", rules.to_str().unwrap()]);
    assert!(checked.contains("SUCCESS: 5 rules found"), "{checked}");
    let tests = repo().join("tests/support/prometheus/alerts_test.yml");
    promtool(&["test", "rules", tests.to_str().unwrap()]);
}

#[test]
fn every_metric_the_dashboard_and_alerts_query_is_exported() {
    // A gateway with forwarding on (the forwarder's metrics exist only then) and some traffic.
    let emu = KinesisEmulator::start(&[("ops", 2)]).expect("emulator");
    let gw = GatewayProcess::start(GatewayOptions {
        extra_toml: forward_toml("ops", ""),
        env: emu.env_vars(),
        ..GatewayOptions::default()
    })
    .expect("gateway starts");
    #[rustfmt::skip]
    let sim = devsim::spawn(gw.mqtt5, &["--devices", "3", "--rate", "5", "--duration", "2"]).expect("devsim");
    let (ok, stdout, stderr) = devsim::finish(sim).expect("devsim finishes");
    assert!(ok, "devsim: {stdout}\n{stderr}");
    // A labelled family shows once it has a sample: one garbage message for `rejected`.
    let client = TestClient::connect_v5(gw.mqtt5, "ops-junk", None).expect("connects");
    client
        .publish("tlm/v1/ops-junk/up", b"not cbor")
        .expect("publish");
    gw.wait_metric(
        "gateway_ingest_rejected_total{reason=\"malformed_cbor\"}",
        std::time::Duration::from_secs(10),
        |v| v >= 1.0,
    )
    .expect("the garbage is rejected");
    let (_, exposition) = gw.http_get("/metrics").expect("/metrics");
    // Families by their TYPE line (counters without `_total`), and every sample name.
    let mut exported = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            exported.extend(rest.split_whitespace().next().map(str::to_owned));
        } else if !line.starts_with('#') {
            exported.extend(line.split(['{', ' ']).next().map(str::to_owned));
        }
    }
    let known = |name: &str| {
        exported.contains(name)
            || ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| {
                    name.strip_suffix(suffix)
                        .is_some_and(|base| exported.contains(base))
                })
    };

    let mut queried = BTreeSet::new();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("gateway/deploy/grafana/gateway.json"))
            .expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "a panel per concern");
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            metric_names(target["expr"].as_str().expect("expr"), &mut queried);
        }
    }
    let rules = std::fs::read_to_string(repo().join("gateway/deploy/prometheus/alerts.yml"))
        .expect("rules");
    for line in rules
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:"))
    {
        metric_names(line, &mut queried);
    }
    let missing: Vec<&String> = queried.iter().filter(|n| !known(n)).collect();
    assert!(
        missing.is_empty(),
        "queried but not exported: {missing:?}\n{exposition}"
    );
    for needed in [
        "gateway_ingest_readings_total",
        "gateway_buffer_oldest_age_seconds",
        "gateway_forward_records_sent_total",
        "gateway_forward_throttled_records_total",
        "gateway_forward_lag_seconds",
        "gateway_buffer_commit_seconds_bucket",
        "gateway_buffer_commits_total",
        "gateway_devices_silent",
        "gateway_buffer_writable",
    ] {
        assert!(
            queried.contains(needed),
            "the dashboard or alerts show {needed}"
        );
    }
}
