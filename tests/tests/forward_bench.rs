//! Forwarder benchmark (ignored by default; about 2 minutes). Run it with release binaries:
//!
//! ```sh
//! cargo build --release --bins
//! cargo test --release -p e2e --test forward_bench -- --ignored --nocapture
//! ```
//!
//! It prints a Markdown section (also written to `$CARGO_TARGET_DIR/forward-bench.md`) for
//! `docs/benchmarks.md`:
//!
//! 1. Backlog drain: a buffer pre-filled with 16 MiB of Kinesis bytes per shard (4 shards,
//!    the same number of devices per shard so the ideal is exactly bytes / (shards × 1 MiB/s)),
//!    forwarded by the real gateway binary to the emulator, which enforces 1,000 records/s and
//!    1 MiB/s per shard in every 1-second window. Measured from arrival times: utilisation of
//!    the binding limit while the backlog lasts, the highest 1-second window, throttles, and
//!    the drain time against bytes / (shards × 1 MiB/s). Every reading is checked to arrive
//!    exactly once.
//! 2. Latency online, under the limits: devsim (200 devices × 5 readings/s, 20 s) → gateway →
//!    emulator; per batch, acceptance time at the emulator minus the gateway's arrival time
//!    (`received_ms`; the MQTT hop on loopback adds well under a millisecond), with the
//!    buffer's default commit policy and with `min_commit_interval_ms = 50`.
//! 3. A site online, per record format (issue 13): 1,000 devices × 1 reading/s for 60 s on one
//!    shard, and 200 devices × 100 readings/s (20,000/s) for 20 s on four: readings per
//!    Kinesis record, records/s per shard (mean and highest 1-second window) against the
//!    1,000/s limit, Kinesis bytes per reading, publish → acceptance latency, and the largest
//!    site one shard carries at 1 reading/s per device. `FORWARD_BENCH_SITE_ONLY=1` runs only
//!    this part; `FORWARD_BENCH_FORMATS=json,cbor` only those formats' rows, and
//!    `FORWARD_BENCH_BUFFER_TOML` adds `[buffer]` settings to compare (e.g. `coalesce_wait_us = 0`).
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::forward_check::{
    check_exactly_once, decode_batches, devices_per_shard, forward_toml, percentile, prefill,
    utilisation,
};
use e2e::kinesis_emu::{EmulatorSettings, even_ranges};
use e2e::{GatewayOptions, GatewayProcess, KinesisEmulator, devsim};
use gateway::buffer::{self, Buffer, BufferConfig, BufferMetrics};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

const STREAM: &str = "bench";
const SHARDS: u32 = 4;
const DEVICES_PER_SHARD: usize = 50;
/// Batches of 32 readings per device: about 16 MiB of CBOR records per shard.
const BATCHES: u32 = 900;
const READINGS: u32 = 32;
const MIB: f64 = (1 << 20) as f64;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{date}; {cpu}, {cores} cores (shared); load average at start {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Pre-fills `dir/buffer.redb`; returns the devices.
fn prefill_dir(dir: &std::path::Path, ranges: &[(u128, u128)]) -> Vec<String> {
    let (buf, recovered) = Buffer::open(&dir.join("buffer.redb")).expect("buffer");
    let config = BufferConfig {
        data_dir: dir.to_owned(),
        capacity_bytes: 4 << 30,
        // Few, large commits: the pre-fill is not what is measured.
        commit_bytes: 16 << 20,
        max_commit_delay_ms: 1000,
        min_commit_interval_ms: 1000,
        ..BufferConfig::default()
    }
    .validate()
    .expect("valid");
    let mut registry = prometheus_client::registry::Registry::default();
    let (acks, _) = crossbeam_channel::unbounded();
    let (writer, thread) = buffer::writer::spawn(
        buf.clone(),
        recovered,
        config,
        BufferMetrics::register(&mut registry),
        acks,
    )
    .expect("writer");
    let devices = devices_per_shard("bench-", ranges, DEVICES_PER_SHARD);
    let total = prefill(&writer, &devices, BATCHES, READINGS, now_ms()).expect("prefill");
    drop(writer);
    thread.join().expect("writer thread");
    drop(buf);
    let (buf, _) = Buffer::open(&dir.join("buffer.redb")).expect("reopen");
    assert_eq!(buf.stats().expect("stats").readings, total);
    devices
}

fn drain_phase(report: &mut String) {
    let ranges = even_ranges(SHARDS);
    let settings = EmulatorSettings {
        list_page_size: 1000,
        ..EmulatorSettings::default()
    };
    let emu = KinesisEmulator::start_with(settings, &[(STREAM.to_owned(), ranges.clone())], 1)
        .expect("emulator");
    let data = tempfile::tempdir().expect("tempdir");
    let t = Instant::now();
    let devices = prefill_dir(data.path(), &ranges);
    eprintln!("prefill took {:?}", t.elapsed());
    let gw = GatewayProcess::start(GatewayOptions {
        data_dir: Some(data.path().to_owned()),
        buffer_toml: "capacity_bytes = 4294967296".into(),
        // FORWARD_BENCH_TOML: extra [forward] settings to compare (e.g. max_request_bytes).
        extra_toml: forward_toml(
            STREAM,
            &std::env::var("FORWARD_BENCH_TOML").unwrap_or_default(),
        ),
        env: emu.env_vars(),
        ..GatewayOptions::default()
    })
    .expect("gateway");
    let started = Instant::now();
    gw.wait_metric(
        "gateway_buffer_buffered_readings",
        Duration::from_secs(300),
        |v| v == 0.0,
    )
    .expect("drained");
    let wall = started.elapsed();
    let status =
        std::process::Command::new(e2e::binaries::binary(e2e::binaries::GATEWAY).expect("binary"))
            .args(["status", "--endpoint", &gw.telemetry.to_string()])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
    drop(gw);

    let accepted = emu.accepted();
    let stats = emu.stats();
    let mut spans = Vec::new();
    for r in &accepted {
        spans.extend(decode_batches(&r.data).expect("decodes"));
    }
    let exactly_once = check_exactly_once(&mut spans, &devices, BATCHES * READINGS);
    let samples: Vec<_> = accepted
        .iter()
        .map(|r| (r.shard_id.clone(), r.arrival, r.bytes))
        .collect();
    let first = samples.iter().map(|s| s.1).min().expect("records");
    let last = samples.iter().map(|s| s.1).max().expect("records");
    // The backlog runs out during the last second (a partial window): leave it out.
    let u = utilisation(&samples, first, last - Duration::from_secs(1), 1000.0, MIB);
    for s in &u {
        let times: Vec<Instant> = accepted
            .iter()
            .filter(|r| r.shard_id == s.shard_id)
            .map(|r| r.arrival)
            .collect();
        let gap = times
            .windows(2)
            .map(|w| (w[1] - w[0], w[0] - first))
            .max()
            .unwrap_or_default();
        eprintln!(
            "{}: longest gap between acceptances {:?} at {:?}",
            s.shard_id, gap.0, gap.1
        );
    }
    let bytes: u64 = accepted.iter().map(|r| r.bytes).sum();
    let max_shard = u
        .iter()
        .map(|s| {
            accepted
                .iter()
                .filter(|r| r.shard_id == s.shard_id)
                .map(|r| r.bytes)
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0);
    let took = (last - first).as_secs_f64();
    let ideal = bytes as f64 / (f64::from(SHARDS) * MIB);
    let bound = (max_shard as f64 / MIB).ceil() - 1.0;
    let per_record = bytes as f64 / accepted.len() as f64;
    let _ = writeln!(
        report,
        "\n### Backlog drain ({SHARDS} shards, {} devices, {:.1} MiB of records)\n",
        devices.len(),
        bytes as f64 / MIB
    );
    let _ = writeln!(
        report,
        "- {} Kinesis records of {per_record:.0} bytes on average ({:.0} records/s per shard): byte-bound.",
        accepted.len(),
        accepted.len() as f64 / took / f64::from(SHARDS)
    );
    let _ = writeln!(
        report,
        "- Drain, first to last acceptance: **{took:.2} s**; bytes / (shards × 1 MiB/s) = {ideal:.2} s: **{:.3}x**. Lower bound for the fullest shard (ceil(B / 1 MiB) − 1 s): {bound:.0} s ({:.3}x). Gateway start to empty buffer: {:.2} s.",
        took / ideal,
        took / bound.max(1.0),
        wall.as_secs_f64()
    );
    let _ = writeln!(
        report,
        "- Throttled records: **{}** (window full) with the default `limit_percent = 100`; injected: {}; requests breaking a Kinesis limit: {}.",
        stats.throttled, stats.injected_throttles, stats.invalid_requests
    );
    let _ = writeln!(
        report,
        "- Every reading exactly once: {}.\n",
        match &exactly_once {
            Ok(()) => "yes".to_owned(),
            Err(e) => format!("NO ({e})"),
        }
    );
    let _ = writeln!(
        report,
        "| shard | records in the period | MiB in the period | mean utilisation of the byte limit, 1-s windows while the backlog lasts | 5th percentile window | lowest window | highest 1-s window (sliding) |\n|---|---|---|---|---|---|---|"
    );
    for s in &u {
        let _ = writeln!(
            report,
            "| {} | {} | {:.2} | {:.1} % | {:.1} % | {:.1} % | {:.2} % |",
            s.shard_id,
            s.records,
            s.bytes as f64 / MIB,
            s.mean * 100.0,
            s.p5_window * 100.0,
            s.min_window * 100.0,
            s.max_sliding_window * 100.0
        );
    }
    let _ = writeln!(
        report,
        "\n`gateway status` at the end:\n\n```\n{}```",
        status
    );
}

/// devsim with `devsim_args` against a gateway (`buffer_toml`, `[forward]` + `forward_extra`)
/// forwarding to a fresh emulator of `shards` shards; returns the emulator once the gateway's
/// buffer is empty (everything accepted).
fn online_run(
    shards: u32,
    buffer_toml: &str,
    forward_extra: &str,
    devsim_args: &[&str],
) -> KinesisEmulator {
    let settings = EmulatorSettings {
        list_page_size: 1000,
        ..EmulatorSettings::default()
    };
    let emu = KinesisEmulator::start_with(settings, &[(STREAM.to_owned(), even_ranges(shards))], 2)
        .expect("emulator");
    let gw = GatewayProcess::start(GatewayOptions {
        buffer_toml: buffer_toml.into(),
        extra_toml: forward_toml(STREAM, forward_extra),
        env: emu.env_vars(),
        ..GatewayOptions::default()
    })
    .expect("gateway");
    let sim = devsim::spawn(gw.mqtt5, devsim_args).expect("devsim");
    let (ok, stdout, stderr) = devsim::finish(sim).expect("devsim finishes");
    assert!(ok, "devsim: {stdout}\n{stderr}");
    gw.wait_metric(
        "gateway_buffer_buffered_readings",
        Duration::from_secs(120),
        |v| v == 0.0,
    )
    .expect("drained");
    emu
}

fn latency_phase(report: &mut String, label: &str, buffer_toml: &str) {
    #[rustfmt::skip]
    let args = ["--devices", "200", "--rate", "5", "--duration", "20", "--seed", "21", "--json"];
    let emu = online_run(SHARDS, buffer_toml, "", &args);
    let accepted = emu.accepted();
    let mut latencies = Vec::new();
    let mut readings = 0u64;
    for r in &accepted {
        for (_, _, _, n, received_ms) in decode_batches(&r.data).expect("decodes") {
            latencies.push(r.arrival_unix_ms - received_ms as f64);
            readings += u64::from(n);
        }
    }
    let stats = emu.stats();
    let mut p = |q| percentile(&mut latencies, q);
    let _ = writeln!(
        report,
        "| {label} | {readings} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
        accepted.len(),
        p(50.0),
        p(90.0),
        p(99.0),
        p(100.0),
        stats.throttled
    );
}

/// One site run: `devices` × `rate` readings/s for `secs` on `shards` shards in `format`.
fn site_phase(report: &mut String, format: &str, shards: u32, devices: u32, rate: u32, secs: u32) {
    let prefix = format!("site-{format}-{devices}-");
    let (devices_arg, rate_arg, secs_arg) =
        (devices.to_string(), rate.to_string(), secs.to_string());
    #[rustfmt::skip]
    let args = ["--devices", &devices_arg, "--rate", &rate_arg, "--duration", &secs_arg, "--id-prefix", &prefix, "--seed", "31", "--json"];
    let buffer_toml = std::env::var("FORWARD_BENCH_BUFFER_TOML").unwrap_or_default();
    let emu = online_run(
        shards,
        &buffer_toml,
        &format!("record_format = \"{format}\""),
        &args,
    );
    let accepted = emu.accepted();
    let mut latencies = Vec::new();
    let mut readings = 0u64;
    let mut bytes = 0u64;
    let mut per_second: std::collections::HashMap<(String, i64), u64> = Default::default();
    for r in &accepted {
        bytes += r.bytes;
        *per_second
            .entry((r.shard_id.clone(), (r.arrival_unix_ms / 1000.0) as i64))
            .or_default() += 1;
        for (_, _, _, n, received_ms) in decode_batches(&r.data).expect("decodes") {
            latencies.push(r.arrival_unix_ms - received_ms as f64);
            readings += u64::from(n);
        }
    }
    let first = accepted
        .iter()
        .map(|r| r.arrival_unix_ms)
        .fold(f64::MAX, f64::min);
    let last = accepted
        .iter()
        .map(|r| r.arrival_unix_ms)
        .fold(0.0, f64::max);
    let span = ((last - first) / 1000.0).max(1.0);
    let records_per_sec = accepted.len() as f64 / span / f64::from(shards);
    let max_window = per_second.values().copied().max().unwrap_or(0);
    let bytes_per_reading = bytes as f64 / readings.max(1) as f64;
    // Devices at 1 reading/s one shard carries: bound by bytes, and for plain formats by
    // records (which grow with the devices; aggregates' do not: at most 1000 /
    // aggregate_interval_ms per shard whatever the load).
    let by_bytes = MIB / bytes_per_reading;
    let readings_per_record = readings as f64 / accepted.len().max(1) as f64;
    let by_records = if format.starts_with("kpl") {
        f64::INFINITY
    } else {
        1000.0 * readings_per_record
    };
    let capacity = by_bytes.min(by_records);
    let stats = emu.stats();
    let mut p = |q| percentile(&mut latencies, q);
    let _ = writeln!(
        report,
        "| `{format}` | {shards} × {devices} devices × {rate}/s | {readings} | {} | {readings_per_record:.1} | {records_per_sec:.1} ({:.1} %) | {max_window} | {bytes_per_reading:.1} | {:.0} / {:.0} / {:.0} | {} | ~{:.0} |",
        accepted.len(),
        records_per_sec / 10.0,
        p(50.0),
        p(99.0),
        p(100.0),
        stats.throttled,
        capacity
    );
}

#[test]
#[ignore = "benchmark: about 5 minutes; run with --ignored in release"]
fn forward_benchmark() {
    let mut report = String::new();
    let _ = writeln!(
        report,
        "## Forwarder to Kinesis (emulator enforcing the shard limits)\n\nMachine: {}.\n\nCommand: `cargo build --release --bins && cargo test --release -p e2e --test forward_bench -- --ignored --nocapture` (tests/tests/forward_bench.rs).",
        machine()
    );
    let site_only = std::env::var_os("FORWARD_BENCH_SITE_ONLY").is_some();
    let drain_only = std::env::var_os("FORWARD_BENCH_DRAIN_ONLY").is_some();
    if !site_only {
        drain_phase(&mut report);
    }
    if drain_only {
        println!("{report}");
        return;
    }
    let _ = writeln!(
        report,
        "\n### A site online, per record format\n\nPer shard: records/s mean over the run (share of the 1,000/s limit) and the highest 1-second window; latency = acceptance at the emulator minus arrival at the gateway, per device batch (ms).\n\n| format | load | readings | records | readings/record | records/s/shard | max records in 1 s | Kinesis bytes/reading | p50 / p99 / max | throttled | devices at 1/s one shard carries |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let formats = std::env::var("FORWARD_BENCH_FORMATS").unwrap_or_default();
    let wanted = |f: &str| formats.is_empty() || formats.split(',').any(|w| w.trim() == f);
    for format in ["kpl-cbor", "cbor", "kpl-json", "json"] {
        if wanted(format) {
            site_phase(&mut report, format, 1, 1000, 1, 60);
        }
    }
    for format in ["kpl-cbor", "cbor"] {
        if wanted(format) {
            site_phase(&mut report, format, 4, 200, 100, 20);
        }
    }
    if site_only {
        println!("{report}");
        return;
    }
    let _ = writeln!(
        report,
        "\n### Latency online, under the limits ({SHARDS} shards, devsim 200 devices × 5 readings/s for 20 s)\n\nPer device batch: acceptance at the emulator minus arrival at the gateway (ms).\n\n| buffer setting | readings | records | p50 | p90 | p99 | max | throttled |\n|---|---|---|---|---|---|---|---|"
    );
    latency_phase(&mut report, "default commit policy", "");
    latency_phase(
        &mut report,
        "`min_commit_interval_ms = 50`",
        "min_commit_interval_ms = 50",
    );
    println!("{report}");
    let out = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("target"))
        .join("forward-bench.md");
    let _ = std::fs::write(&out, &report);
    eprintln!("written to {}", out.display());
}
