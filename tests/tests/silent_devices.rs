//! `gateway_devices_silent` (issue 15): when one device of a running site stops sending, the
//! metric turns on within the configured time while the others keep sending; when they all
//! stop, every device counts.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::{GatewayOptions, GatewayProcess, devsim};
use std::time::Duration;

#[test]
fn a_device_that_stops_sending_is_counted_silent_in_time() {
    // Silent after 3 usual intervals and at least 2 s.
    let gw = GatewayProcess::start(GatewayOptions {
        extra_toml: "silent_after_intervals = 3\nsilent_min_secs = 2".into(),
        ..GatewayOptions::default()
    })
    .expect("gateway starts");
    #[rustfmt::skip]
    let steady = devsim::spawn(gw.mqtt5, &["--devices", "2", "--rate", "5", "--duration", "14", "--id-prefix", "steady-", "--drain-timeout", "10"])
        .expect("devsim steady");
    #[rustfmt::skip]
    let brief = devsim::spawn(gw.mqtt5, &["--devices", "1", "--rate", "5", "--duration", "3", "--id-prefix", "brief-", "--drain-timeout", "10"])
        .expect("devsim brief");
    gw.wait_metric("gateway_devices_seen", Duration::from_secs(10), |v| {
        v == 3.0
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", gw.log_text()));
    assert_eq!(gw.metric("gateway_devices_silent").expect("metric"), 0.0);

    let (ok, stdout, stderr) = devsim::finish(brief).expect("devsim brief finishes");
    assert!(ok, "devsim brief: {stdout}\n{stderr}");
    // Its usual interval is well under a second: the 2-s floor decides, plus the 1-s update.
    gw.wait_metric("gateway_devices_silent", Duration::from_secs(6), |v| {
        v == 1.0
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", gw.log_text()));
    // The steady devices still send: exactly one is silent.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(gw.metric("gateway_devices_silent").expect("metric"), 1.0);

    let (ok, stdout, stderr) = devsim::finish(steady).expect("devsim steady finishes");
    assert!(ok, "devsim steady: {stdout}\n{stderr}");
    gw.wait_metric("gateway_devices_silent", Duration::from_secs(6), |v| {
        v == 3.0
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", gw.log_text()));
}
