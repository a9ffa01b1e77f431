//! The embedded broker's memory does not grow with the acks it carries.
//!
//! rumqttd keeps an in-memory log per subscription filter and every device subscribes to its
//! own ack topic; with the uplink's log limits each of those logs grew toward 4 MiB, one ack at
//! a time (a 1,000-device site grew ~0.5 MB/s). Measured with this test's load before the fix:
//! ~800 bytes of resident memory per ack without end (~45 MiB over the measured acks); after
//! it, ~3 MiB (redb's page cache still filling) and flat from then on.
#![allow(clippy::expect_used, clippy::panic)]

use e2e::devsim;
use e2e::{GatewayOptions, GatewayProcess};
use std::time::Duration;

const ACKS: &str = "gateway_ingest_acks_published_total";
/// Acks before the first sample: connections made, buffers and most of redb's cache warm.
const WARM_UP_ACKS: f64 = 60_000.0;
/// Acks between the two samples.
const MEASURED_ACKS: f64 = 60_000.0;
/// Allowed growth over the measured acks (redb's page cache is still filling, allocator noise).
const ALLOWED_GROWTH_KIB: u64 = 10 * 1024;

#[test]
fn resident_memory_does_not_grow_with_acks() {
    let gw = GatewayProcess::start(GatewayOptions {
        // Frequent commits: many acks per device.
        buffer_toml: "max_commit_delay_ms = 5\nmin_commit_interval_ms = 5".into(),
        ..GatewayOptions::default()
    })
    .expect("gateway starts");
    let sim = devsim::spawn(
        gw.mqtt5,
        &[
            "--devices",
            "100",
            "--rate",
            "100",
            "--duration",
            "120",
            "--batch-max",
            "1",
            "--json",
        ],
    )
    .expect("devsim starts");
    let timeout = Duration::from_secs(120);
    let start = gw
        .wait_metric(ACKS, timeout, |v| v >= WARM_UP_ACKS)
        .expect("acks flow");
    let before = gw.resident_kib().expect("RSS");
    let end = gw
        .wait_metric(ACKS, timeout, |v| v >= start + MEASURED_ACKS)
        .expect("acks keep flowing");
    let after = gw.resident_kib().expect("RSS");
    let mut sim = sim;
    let _ = sim.kill();
    let _ = sim.wait();
    let growth = after.saturating_sub(before);
    eprintln!(
        "RSS {before} KiB -> {after} KiB over {:.0} acks ({:.0} bytes per ack)",
        end - start,
        growth as f64 * 1024.0 / (end - start)
    );
    assert!(
        growth <= ALLOWED_GROWTH_KIB,
        "resident memory grew {growth} KiB over {:.0} acks (allowed {ALLOWED_GROWTH_KIB} KiB): \
         something keeps every ack",
        end - start
    );
}
