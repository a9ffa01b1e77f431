//! `--mark-delivered` deletes exactly the exported entries from the buffer, and the export
//! refuses a buffer that a running gateway holds, saying what to do.
//!
//! Note: the forwarder (gateway/src/forward/) was not merged when this was written, so the
//! test asserts the buffer no longer holds the exported readings (the forwarder only sends
//! what the buffer holds) rather than reading Kinesis.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::export_check::{buffer_rows, read_export, run_export};
use e2e::{GatewayOptions, GatewayProcess, devsim};
use std::time::Duration;

#[test]
fn mark_delivered_removes_exported_readings_and_keeps_the_rest() {
    let mut gw = GatewayProcess::start(GatewayOptions::default()).expect("gateway starts");
    let sim = devsim::spawn(
        gw.mqtt5,
        &[
            "--devices",
            "6",
            "--rate",
            "50",
            "--duration",
            "2",
            "--seed",
            "5",
            "--drain-timeout",
            "30",
            "--json",
        ],
    )
    .expect("devsim starts");
    let (ok, stdout, stderr) = devsim::finish(sim).expect("devsim finishes");
    assert!(ok, "devsim: {stdout}\n{stderr}");

    // While the gateway runs, the CLI refuses and names the way out.
    let out = gw.dir().join("export");
    let refused = run_export(None, gw.data_dir(), &out, &["--mark-delivered"], &[]).expect("runs");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "refused while the gateway runs");
    assert!(
        err.contains("running gateway") && err.contains("backfill"),
        "{err}"
    );

    gw.terminate(Duration::from_secs(20)).expect("clean exit");
    let buffer = gw.data_dir().join("buffer.redb");
    let all = buffer_rows(&buffer).expect("rows");
    let device = all[0].0.clone();

    // One device: its entries leave the buffer, the others' stay.
    let one = run_export(
        None,
        gw.data_dir(),
        &out,
        &["--format", "json", "--device", &device, "--mark-delivered"],
        &[],
    )
    .expect("runs");
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    let left = buffer_rows(&buffer).expect("rows");
    let exported: Vec<_> = all.iter().filter(|r| r.0 == device).cloned().collect();
    assert!(!exported.is_empty());
    assert!(
        left.iter().all(|r| r.0 != device),
        "the device's readings are gone"
    );
    assert_eq!(
        left.len() + exported.len(),
        all.len(),
        "nothing else was deleted"
    );
    assert!(read_export(&out, "json").expect("reads back") == exported);

    // The rest: the buffer is empty, the table holds everything once.
    let rest = run_export(
        None,
        gw.data_dir(),
        &out,
        &["--format", "json", "--mark-delivered"],
        &[],
    )
    .expect("runs");
    assert!(
        rest.status.success(),
        "{}",
        String::from_utf8_lossy(&rest.stderr)
    );
    assert!(buffer_rows(&buffer).expect("rows").is_empty());
    assert!(read_export(&out, "json").expect("reads back") == all);

    // The restarted gateway has nothing left to forward.
    gw.spawn().expect("restarts");
    let buffered = gw
        .metric("gateway_buffer_buffered_readings")
        .expect("metric");
    assert_eq!(buffered, 0.0);
}
