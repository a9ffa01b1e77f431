//! Export benchmark helper (see docs/benchmarks.md "Export"): fills a buffer with a few
//! million readings through the buffer's writer API, quickly and reproducibly, so that
//! `gateway export` can be timed on it.
//!
//! ```sh
//! cargo build --release --bins
//! target/release/bench-export fill /tmp/bench-export/data 5000000
//! time target/release/telemetry-gateway export --data-dir /tmp/bench-export/data --out /tmp/bench-export/parquet
//! ```
//!
//! Arguments: `fill DATA_DIR READINGS [DEVICES=1000] [BATCH=50]`. Readings are one per device
//! per second (device time), starting 2026-11-27T00:00:00Z.

use e2e::export_fill::{Fill, fill};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: bench-export fill DATA_DIR READINGS [DEVICES=1000] [BATCH=50]";
    if args.len() < 3 || args[0] != "fill" {
        return Err(usage.into());
    }
    let dir = PathBuf::from(&args[1]);
    let readings: u64 = args[2].parse().map_err(|_| usage)?;
    let devices: u32 = args
        .get(3)
        .map_or(Ok(1000), |a| a.parse())
        .map_err(|_| usage)?;
    let batch: u32 = args
        .get(4)
        .map_or(Ok(50), |a| a.parse())
        .map_err(|_| usage)?;
    if dir.join("buffer.redb").exists() {
        return Err(format!("{} already holds a buffer", dir.display()).into());
    }
    let took = fill(
        &dir,
        Fill {
            readings,
            devices,
            batch,
            step_ms: 1000,
            start_utc_ms: 1_795_737_600_000,
        },
    )?;
    let size = std::fs::metadata(dir.join("buffer.redb"))?.len();
    println!(
        "filled {} with {readings} readings of {devices} devices in batches of {batch}: {:.1} s, buffer.redb {size} bytes",
        dir.display(),
        took.as_secs_f64()
    );
    Ok(())
}
