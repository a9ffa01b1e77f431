//! `gateway export` while the gateway runs: the CLI reads and deletes through the gateway's
//! control socket (gateway/src/export/live.rs) while devices keep publishing; every acked
//! reading ends up in the table exactly once and nothing is left behind. Without the socket
//! the CLI refuses and says what to do.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::export_check::{buffer_rows, read_export, run_export};
use e2e::{GatewayOptions, GatewayProcess, devsim};
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn export_from_a_running_gateway_under_load_loses_and_duplicates_nothing() {
    let mut gw = GatewayProcess::start(GatewayOptions::default()).expect("gateway starts");
    let socket = gw.data_dir().join("control.sock");
    assert!(socket.exists(), "control socket at {}", socket.display());
    let acked_log = gw.dir().join("acked.csv");
    let acked_arg = acked_log.display().to_string();
    let sim = devsim::spawn(
        gw.mqtt5,
        &[
            "--devices",
            "8",
            "--rate",
            "50",
            "--duration",
            "6",
            "--seed",
            "17",
            "--drain-timeout",
            "30",
            "--acked-log",
            &acked_arg,
            "--json",
        ],
    )
    .expect("devsim starts");
    let out = gw.dir().join("table");
    let export = |label: &str| {
        let o = run_export(None, gw.data_dir(), &out, &["--mark-delivered"], &[]).expect("runs");
        assert!(
            o.status.success(),
            "{label}: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            gw.log_text()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };

    // While devices publish: exports what is there, deletes it, devices go on.
    std::thread::sleep(Duration::from_millis(2500));
    let first = export("export under load");
    assert!(!first.contains("exported 0 readings"), "{first}");
    let (ok, stdout, stderr) = devsim::finish(sim).expect("devsim finishes");
    assert!(ok, "devsim: {stdout}\n{stderr}");
    let acked = devsim::acked_readings(&acked_log).expect("acked log");

    // The rest, then the buffer is empty and the table holds every acked reading once.
    export("export of the rest");
    gw.wait_metric(
        "gateway_buffer_buffered_readings",
        Duration::from_secs(10),
        |v| v == 0.0,
    )
    .expect("buffer emptied by the exports");
    let rows = read_export(&out, "parquet").expect("reads back");
    let ids: BTreeSet<_> = rows.iter().map(|r| (r.0.clone(), r.1, r.2)).collect();
    assert_eq!(ids.len(), rows.len(), "no reading twice in the table");
    assert_eq!(ids, acked, "every acked reading, nothing else");

    gw.terminate(Duration::from_secs(20)).expect("clean exit");
    assert!(!socket.exists(), "the socket is removed on exit");
    assert!(
        buffer_rows(&gw.data_dir().join("buffer.redb"))
            .expect("rows")
            .is_empty()
    );
}

#[test]
fn without_the_control_socket_the_export_refuses_and_says_why() {
    let gw = GatewayProcess::start(GatewayOptions::default()).expect("gateway starts");
    std::fs::remove_file(gw.data_dir().join("control.sock")).expect("socket removed");
    let out = gw.dir().join("table");
    let refused = run_export(None, gw.data_dir(), &out, &[], &[]).expect("runs");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "refused");
    assert!(
        err.contains("running gateway")
            && err.contains("control socket")
            && err.contains("backfill"),
        "{err}"
    );
}
