//! Round trip: simulated devices fill the real gateway's buffer, `gateway export` writes it
//! as Parquet and as gzip JSON, and an independent reader (pyarrow; Python's gzip + json)
//! reads back exactly the rows the buffer held, each in its partition, every file matching
//! the manifest's row count, size and SHA-256.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::export_check::{
    buffer_rows, read_export, require_pyarrow, run_export, small_files_config,
};
use e2e::{GatewayOptions, GatewayProcess, devsim};
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn parquet_and_json_exports_read_back_row_for_row() {
    // Fail early, naming what is missing, before spending time on the gateway.
    require_pyarrow().expect("python3 with pyarrow");
    let mut gw = GatewayProcess::start(GatewayOptions::default()).expect("gateway starts");
    let acked_log = gw.dir().join("acked.csv");
    let acked_arg = acked_log.display().to_string();
    let sim = devsim::spawn(
        gw.mqtt5,
        &[
            "--devices",
            "20",
            "--rate",
            "50",
            "--duration",
            "3",
            "--batch-max",
            "20",
            "--seed",
            "11",
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
    gw.terminate(Duration::from_secs(20)).expect("clean exit");

    let expected = buffer_rows(&gw.data_dir().join("buffer.redb")).expect("buffer");
    let acked = devsim::acked_readings(&acked_log).expect("acked log");
    let ids: BTreeSet<_> = expected.iter().map(|r| (r.0.clone(), r.1, r.2)).collect();
    assert_eq!(ids, acked, "the buffer holds exactly what devsim saw acked");
    assert!(expected.len() >= 2000, "{} readings", expected.len());

    let config = small_files_config(gw.dir(), 16 << 10).expect("config");
    for format in ["parquet", "json"] {
        let out = gw.dir().join(format!("export-{format}"));
        let run = run_export(
            Some(&config),
            gw.data_dir(),
            &out,
            &["--format", format],
            &[],
        )
        .expect("runs");
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{format}: {stdout}\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let rows = read_export(&out, format).expect("reads back");
        assert_eq!(rows.len(), expected.len(), "{format}: row count");
        assert!(
            rows == expected,
            "{format}: every column of every row matches the buffer"
        );
    }
    // The buffer is untouched without --mark-delivered.
    assert_eq!(
        buffer_rows(&gw.data_dir().join("buffer.redb")).expect("buffer"),
        expected
    );
}
