//! `retention_action = "backfill"`: the running gateway moves readings older than the
//! retention age into the backfill directory (same layout and manifest as `gateway export`)
//! and out of the buffer, losing none and duplicating none.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::export_check::{read_export, require_pyarrow};
use e2e::{GatewayOptions, GatewayProcess, devsim};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[test]
fn old_readings_go_to_the_backfill_table_and_leave_the_buffer() {
    require_pyarrow().expect("python3 with pyarrow");
    let scratch = tempfile::tempdir().expect("tempdir");
    let backfill = scratch.path().join("backfill");
    let mut gw = GatewayProcess::start(GatewayOptions {
        buffer_toml: "retention_secs = 1\nretention_action = \"backfill\"\n".into(),
        extra_toml: format!(
            "[export]\nbackfill_dir = \"{}\"\nbackfill_interval_secs = 1\ntarget_file_bytes = 65536\n",
            backfill.display()
        ),
        ..GatewayOptions::default()
    })
    .expect("gateway starts");
    let acked_log = gw.dir().join("acked.csv");
    let acked_arg = acked_log.display().to_string();
    let sim = devsim::spawn(
        gw.mqtt5,
        &[
            "--devices",
            "10",
            "--rate",
            "50",
            "--duration",
            "3",
            "--seed",
            "3",
            "--drain-timeout",
            "30",
            "--acked-log",
            &acked_arg,
            "--json",
        ],
    )
    .expect("devsim starts");
    let (ok, stdout, stderr) = devsim::finish(sim).expect("devsim finishes");
    assert!(ok, "devsim: {stdout}\n{stderr}");
    let acked = devsim::acked_readings(&acked_log).expect("acked log");

    // Within a few sweeps everything is older than 1 s, exported and deleted.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let buffered = gw
            .metric("gateway_buffer_buffered_readings")
            .expect("metric");
        let exported = std::fs::read_to_string(backfill.join("_manifest.json"))
            .ok()
            .and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
            .and_then(|m| m["totals"]["rows"].as_u64())
            .unwrap_or(0);
        if buffered == 0.0 && exported == acked.len() as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "buffered {buffered}, exported {exported} of {}",
            acked.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The backfill's counters are on /metrics.
    assert_eq!(
        gw.metric("gateway_export_readings_deleted_total")
            .expect("export metrics registered"),
        acked.len() as f64
    );
    assert!(gw.metric("gateway_export_files_total").expect("metric") >= 1.0);
    gw.terminate(Duration::from_secs(20)).expect("clean exit");
    let log = gw.log_text();
    assert!(
        log.contains("Backfilled readings older than the retention limit."),
        "{log}"
    );
    assert!(
        !log.contains("Dropped undelivered readings"),
        "nothing dropped: {log}"
    );

    let rows = read_export(&backfill, "parquet").expect("reads back");
    let ids: BTreeSet<_> = rows.iter().map(|r| (r.0.clone(), r.1, r.2)).collect();
    assert_eq!(ids.len(), rows.len(), "no duplicates");
    assert_eq!(ids, acked, "every acked reading, nothing else");
}
