//! Throughput measurement (ignored by default: it takes ~20 s and both cores). Run with
//! `cargo test --release -p devsim --test throughput -- --ignored --nocapture`; set
//! `DEVSIM_DEVICES`/`DEVSIM_RATE` to change the load. The ack responder runs in this process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{Mosquitto, Responder, devsim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check: takes ~20 s of both cores"]
async fn hundred_devices_at_500_per_second() {
    let devices = std::env::var("DEVSIM_DEVICES").unwrap_or_else(|_| "100".into());
    let rate = std::env::var("DEVSIM_RATE").unwrap_or_else(|_| "500".into());
    let broker = Mosquitto::start();
    let gateway = Responder::start(broker.port, true, None).await;
    let run = devsim(&[
        "--broker",
        &broker.addr(),
        "--devices",
        &devices,
        "--rate",
        &rate,
        "--duration",
        "10",
        "--drain-timeout",
        "30",
        "--id-prefix",
        "tp-",
    ])
    .await;
    eprintln!("{}", run.stderr);
    let (valid, gaps) = {
        let seen = gateway.seen.lock().unwrap();
        (seen.valid_batches, seen.gap_batches)
    };
    eprintln!("responder: {valid} valid batches, {gaps} gap batches");
    assert_eq!(run.code, Some(0), "{}", run.summary);
}
