//! Reopen after a crash (issue 4: "reopen after a crash must be fast and lose nothing
//! committed"), reproducible from a clean checkout:
//!
//! ```sh
//! cargo build --release --bins && $CARGO_TARGET_DIR/release/bench-reopen [READINGS] [DEVICES] [BATCH]
//! ```
//!
//! A child process fills a fresh buffer through the real writer with checkpoints turned off
//! (`checkpoint_interval` of a day), waits for the last commit and aborts, as a power cut
//! would stop it: every entry is then after the last checkpoint, the worst case for the
//! replay (the gateway checkpoints every 30 s, so a real crash replays at most 30 s of log).
//! The parent then measures `Buffer::open` (recovery and replay), checks that every reading
//! is there, lets a writer checkpoint, and measures the open again. Page cache: dropped
//! before each open when `/proc/sys/vm/drop_caches` is writable (root), said in the output.
//!
//! Prints one Markdown table row per open.

use e2e::export_fill::{Fill, append_all};
use gateway::buffer::{self, Buffer, BufferConfig, BufferMetrics};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const CHILD: &str = "--fill-and-abort";

fn config(dir: &Path, checkpoint: Duration) -> Result<buffer::ValidBufferConfig> {
    let mut config = BufferConfig {
        data_dir: dir.to_owned(),
        capacity_bytes: 64 << 30,
        commit_bytes: 8 << 20,
        ..BufferConfig::default()
    }
    .validate()?;
    config.checkpoint_interval = checkpoint;
    config.max_commit_delay = Duration::from_millis(200);
    config.min_commit_interval = Duration::from_millis(200);
    Ok(config)
}

fn spawn_writer(
    dir: &Path,
    checkpoint: Duration,
) -> Result<(buffer::WriterHandle, std::thread::JoinHandle<()>, u64)> {
    let config = config(dir, checkpoint)?;
    let (buf, recovered) = Buffer::open(&config.path)?;
    let replayed = recovered.replayed;
    let (acks, _acks_rx) = crossbeam_channel::unbounded();
    let metrics = BufferMetrics::register(&mut prometheus_client::registry::Registry::default());
    let (writer, thread) = buffer::writer::spawn(buf, recovered, config, metrics, acks)?;
    Ok((writer, thread, replayed))
}

/// The child: fill without checkpoints, then abort once everything is committed.
fn fill_and_abort(dir: &Path, fill: Fill) -> Result<()> {
    let (writer, _thread, _) = spawn_writer(dir, Duration::from_secs(86_400))?;
    append_all(&writer, fill)?;
    std::process::abort();
}

fn drop_caches() -> bool {
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

fn timed_open(path: &Path) -> Result<(Duration, buffer::Recovered, bool)> {
    let cold = drop_caches();
    let started = Instant::now();
    let (buffer, recovered) = Buffer::open(path)?;
    let took = started.elapsed();
    drop(buffer);
    Ok((took, recovered, cold))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| -> Result<u64> {
        Ok(match args.get(i) {
            Some(a) => a.parse().map_err(|e| format!("argument {a}: {e}"))?,
            None => default,
        })
    };
    if args.first().map(String::as_str) == Some("--growth") {
        return growth(num(1, 1_000_000)?, num(2, 1000)? as u32);
    }
    if args.first().map(String::as_str) == Some(CHILD) {
        let dir = PathBuf::from(args.get(1).ok_or("child: no dir")?);
        let fill = Fill {
            readings: num(2, 0)?,
            devices: num(3, 1)? as u32,
            batch: num(4, 1)? as u32,
            step_ms: 1000,
            start_utc_ms: 1_764_000_000_000,
        };
        return fill_and_abort(&dir, fill);
    }
    let (readings, devices, batch) = (num(0, 2_000_000)?, num(1, 1000)?, num(2, 1)?);
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg(CHILD)
        .arg(dir.path())
        .args([readings, devices, batch].map(|n| n.to_string()))
        .stderr(std::process::Stdio::null())
        .status()?;
    if status.success() {
        return Err("the fill child was expected to abort".into());
    }
    let filled = started.elapsed();
    let path = dir.path().join("buffer.redb");
    let size = std::fs::metadata(&path)?.len();
    println!(
        "bench-reopen: {readings} readings, {devices} devices, {batch} per batch; filled in {:.1} s, then aborted; file {:.1} MiB",
        filled.as_secs_f64(),
        size as f64 / f64::from(1 << 20)
    );
    println!(
        "\n| state at open | log entries replayed | readings recovered | open time | page cache |\n|---|---|---|---|---|"
    );
    let row = |label: &str, took: Duration, r: &buffer::Recovered, cold: bool| {
        println!(
            "| {label} | {} | {} | {:.0} ms | {} |",
            r.replayed,
            r.buffered_readings,
            took.as_secs_f64() * 1000.0,
            if cold { "dropped" } else { "warm (not root)" }
        );
    };
    let (took, recovered, cold) = timed_open(&path)?;
    row(
        "after a crash, no checkpoint since the start",
        took,
        &recovered,
        cold,
    );
    if recovered.buffered_readings != readings {
        return Err(format!(
            "recovered {} readings, expected {readings}",
            recovered.buffered_readings
        )
        .into());
    }
    // A writer run checkpoints (at its first commit after a replay, and on its clean stop).
    let (writer, thread, _) = spawn_writer(dir.path(), Duration::from_secs(30))?;
    writer.delete(Vec::new())?;
    drop(writer);
    thread.join().map_err(|_| "writer panicked")?;
    let (took, recovered, cold) = timed_open(&path)?;
    row("after a clean stop (checkpointed)", took, &recovered, cold);
    if recovered.buffered_readings != readings {
        return Err("readings lost across the clean reopen".into());
    }
    Ok(())
}

fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `--growth READINGS DEVICES`: commits of one reading per device (a site's second), and the
/// disk bytes each commit writes as the backlog grows.
fn growth(readings: u64, devices: u32) -> Result<()> {
    use gateway::buffer::{IncomingBatch, RecordReading};
    let dir = tempfile::tempdir()?;
    let (writer, thread, _) = spawn_writer(dir.path(), Duration::from_secs(30))?;
    println!("| log entries | disk bytes per commit | per stored reading |\n|---|---|---|");
    let (mut last_bytes, mut last_at) = (write_bytes(), 0u64);
    let steps = readings / u64::from(devices.max(1));
    for step in 0..steps {
        for d in 0..devices {
            let batch = IncomingBatch {
                device: format!("node-{d:05}"),
                boot: 1,
                first_seq: step as u32,
                held_from: step as u32,
                received_ms: 1_764_000_000_000 + step as i64 * 1000,
                utc_offset_ms: 1_764_000_000_000,
                readings: vec![RecordReading {
                    t_ms: step * 1000,
                    channel: 0,
                    kind: 0,
                    value: 21.5,
                }],
                arrived: Instant::now(),
            };
            writer.append(batch).map_err(|_| "writer stopped")?;
        }
        writer.delete(Vec::new())?;
        let done = (step + 1) * u64::from(devices);
        if (step + 1).is_power_of_two() || step + 1 == steps {
            let now = write_bytes();
            let commits = (step + 1 - last_at).max(1);
            let per_commit = (now - last_bytes) / commits;
            println!(
                "| {done} | {per_commit} | {:.1} |",
                per_commit as f64 / f64::from(devices)
            );
            (last_bytes, last_at) = (now, step + 1);
        }
    }
    drop(writer);
    thread.join().map_err(|_| "writer panicked")?;
    Ok(())
}
