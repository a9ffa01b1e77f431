//! `--mark-delivered` on a stopped gateway's buffer deletes exactly the exported entries, and
//! the forwarder then sends none of the exported readings (and every other one once). The
//! export from a running gateway is in export_live.rs.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::export_check::{buffer_rows, read_export, run_export};
use e2e::forward_check::{decode_batches, forward_toml};
use e2e::kinesis_emu::{Outage, even_ranges};
use e2e::{GatewayOptions, GatewayProcess, KinesisEmulator, devsim};
use std::collections::BTreeMap;
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

    let out = gw.dir().join("export");
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

#[test]
fn the_forwarder_sends_none_of_the_exported_readings() {
    // The site is offline: Kinesis answers every call with a server error.
    let emu = KinesisEmulator::start_with(
        Default::default(),
        &[("site".to_owned(), even_ranges(2))],
        2,
    )
    .expect("emulator");
    emu.set_outage(Some(Outage::ServerError));
    let mut gw = GatewayProcess::start(GatewayOptions {
        extra_toml: forward_toml("site", ""),
        env: emu.env_vars(),
        ..GatewayOptions::default()
    })
    .expect("gateway starts");
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
            "9",
            "--drain-timeout",
            "30",
            "--json",
        ],
    )
    .expect("devsim starts");
    let (ok, stdout, stderr) = devsim::finish(sim).expect("devsim finishes");
    assert!(ok, "devsim: {stdout}\n{stderr}");
    gw.terminate(Duration::from_secs(20)).expect("clean exit");
    assert_eq!(
        emu.accepted_count(),
        0,
        "nothing reached Kinesis while offline"
    );

    // Two devices go to the backfill files and are marked delivered.
    let buffer = gw.data_dir().join("buffer.redb");
    let all = buffer_rows(&buffer).expect("rows");
    let mut devices: Vec<String> = all.iter().map(|r| r.0.clone()).collect();
    devices.dedup();
    devices.sort();
    devices.dedup();
    assert!(devices.len() >= 3, "devices: {devices:?}");
    let out = gw.dir().join("export");
    let exported = run_export(
        None,
        gw.data_dir(),
        &out,
        &[
            "--format",
            "json",
            "--device",
            &devices[0],
            "--device",
            &devices[1],
            "--mark-delivered",
        ],
        &[],
    )
    .expect("runs");
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let in_files = read_export(&out, "json").expect("reads back");
    assert!(
        in_files
            .iter()
            .all(|r| r.0 == devices[0] || r.0 == devices[1])
    );

    // Back online: the forwarder delivers the rest, each reading once, none of the exported.
    emu.set_outage(None);
    gw.spawn().expect("restarts");
    gw.wait_metric(
        "gateway_buffer_buffered_readings",
        Duration::from_secs(60),
        |v| v == 0.0,
    )
    .unwrap_or_else(|e| panic!("not drained: {e}\n{}", gw.log_text()));
    let mut sent: BTreeMap<(String, u32, u32), u32> = BTreeMap::new();
    for record in emu.accepted() {
        for (device, boot, first, count, _) in decode_batches(&record.data).expect("decodes") {
            for seq in first..first + count {
                *sent.entry((device.clone(), boot, seq)).or_default() += 1;
            }
        }
    }
    assert!(sent.values().all(|&n| n == 1), "a reading was sent twice");
    let exported_keys: Vec<_> = in_files.iter().map(|r| (r.0.clone(), r.1, r.2)).collect();
    assert!(
        exported_keys.iter().all(|k| !sent.contains_key(k)),
        "an exported reading was forwarded"
    );
    let expected: Vec<_> = all
        .iter()
        .filter(|r| r.0 != devices[0] && r.0 != devices[1])
        .map(|r| (r.0.clone(), r.1, r.2))
        .collect();
    assert_eq!(sent.len(), expected.len(), "every other reading sent once");
    assert!(expected.iter().all(|k| sent.contains_key(k)));
    assert_eq!(exported_keys.len() + expected.len(), all.len());
}
