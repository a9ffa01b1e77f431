//! Ingest benchmarks (issue 4), reproducible from a clean checkout:
//!
//! ```sh
//! cargo build --release --bins && target/release/bench-ingest all
//! ```
//! (with `CARGO_TARGET_DIR` set, the binary is under that directory instead).
//!
//! - `throughput`: durable readings/s through the gateway (embedded rumqttd + redb, acks after
//!   the commit) and, on the same devsim load in the same run, through mosquitto (persistence
//!   on) with `ack-responder` acking at once: the ratio is what the issue asks for.
//! - `latency`: publish → durable ack latency at 20,000 readings/s.
//! - `site`: a typical site, 1,000 devices at 1 reading/s at random phases (`BENCH_PHASE=lockstep`
//!   for all devices ticking together): resident memory, disk bytes written per payload byte
//!   (from the gateway's /proc/PID/io) and the ack latency at that load.
//! - `tls`: MQTT over TLS next to plaintext on one gateway (issue 12): throughput, the
//!   20,000 readings/s ack latency, login time, and 1,000 certificate devices connecting at once.
//!
//! Prints one Markdown table row per measurement. `BENCH_BUFFER_TOML` adds `[buffer]`
//! settings to the gateway under test (`BENCH_BUFFER_TOML='max_commit_delay_ms = 10'`), and
//! `BENCH_EMBEDDED_TOML` `[ingest.embedded]` ones (`BENCH_EMBEDDED_TOML='broker_log_bytes = 262144'`).

use e2e::mosquitto::Mosquitto;
use e2e::site_certs::SiteCerts;
use e2e::{GatewayOptions, GatewayProcess, binaries, devsim};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn run_devsim(broker: SocketAddr, args: &[&str]) -> Result<Value> {
    let mut all = args.to_vec();
    all.push("--json");
    let child = devsim::spawn(broker, &all)?;
    let (_, stdout, stderr) = devsim::finish(child)?;
    let json: Value = serde_json::from_str(stdout.trim())
        .map_err(|e| format!("devsim output {e}: {stdout}\n{stderr}"))?;
    Ok(json)
}

fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

/// Acked readings per second of devsim's whole run, from the first reading to the last ack
/// (a system that falls behind pays for its drain tail).
fn acked_rate(v: &Value, producing_s: f64) -> f64 {
    num(v, "acked") / num(v, "elapsed_s").max(producing_s)
}

fn proc_field(pid: u32, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").trim().parse().ok())
}

/// The gateway under test; `BENCH_BUFFER_TOML` adds `[buffer]` settings to compare (e.g.
/// `max_commit_delay_ms = 10`).
fn options() -> GatewayOptions {
    GatewayOptions {
        buffer_toml: std::env::var("BENCH_BUFFER_TOML").unwrap_or_default(),
        embedded_toml: std::env::var("BENCH_EMBEDDED_TOML").unwrap_or_default(),
        ..GatewayOptions::default()
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn throughput() -> Result<()> {
    let seconds = 15.0;
    // Saturating load; BENCH_RATE (per device) and BENCH_BATCH (readings per message) vary it.
    let (rate, batch) = (env_or("BENCH_RATE", "3000"), env_or("BENCH_BATCH", "10"));
    #[rustfmt::skip]
    let load = [
        "--devices", "100", "--rate", &rate, "--duration", "15", "--batch-max", &batch,
        "--batch-interval-ms", "5", "--drain-timeout", "30", "--ring-capacity", "65536",
    ];
    let gw = GatewayProcess::start(options())?;
    let g = run_devsim(gw.mqtt5, &load)?;
    drop(gw);
    let broker = Mosquitto::start()?;
    let mut responder = std::process::Command::new(binaries::binary("ack-responder")?)
        .arg(broker.addr.to_string())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(500));
    let m = run_devsim(broker.addr, &load)?;
    let _ = responder.kill();
    let _ = responder.wait();
    let (gr, mr) = (acked_rate(&g, seconds), acked_rate(&m, seconds));
    println!(
        "| durable ingest, 100 devices x {rate}/s offered, {batch} readings/batch | gateway {gr:.0} readings/s acked durable (produced {:.0}/s) | mosquitto+responder {mr:.0} readings/s (produced {:.0}/s) | ratio {:.2}x |",
        num(&g, "produced_per_s"),
        num(&m, "produced_per_s"),
        gr / mr
    );
    Ok(())
}

fn latency() -> Result<()> {
    let gw = GatewayProcess::start(options())?;
    let pid = gw.pid().ok_or("gateway not running")?;
    let sim = devsim::spawn(
        gw.mqtt5,
        &[
            "--devices",
            "100",
            "--rate",
            "200",
            "--duration",
            "30",
            "--batch-max",
            "10",
            "--batch-interval-ms",
            "20",
            "--drain-timeout",
            "30",
            "--json",
        ],
    )?;
    // Disk bytes per payload byte over 20 s of steady load (the wear side of the latency).
    std::thread::sleep(Duration::from_secs(5));
    let (w0, p0) = (
        proc_field(pid, "io", "write_bytes:").unwrap_or(0),
        gw.metric("gateway_ingest_payload_bytes_total")?,
    );
    std::thread::sleep(Duration::from_secs(20));
    let (w1, p1) = (
        proc_field(pid, "io", "write_bytes:").unwrap_or(0),
        gw.metric("gateway_ingest_payload_bytes_total")?,
    );
    let commits = gw.metric("gateway_buffer_commits_total")?;
    let (_, stdout, stderr) = devsim::finish(sim)?;
    let v: Value =
        serde_json::from_str(stdout.trim()).map_err(|e| format!("{e}: {stdout}\n{stderr}"))?;
    println!(
        "| publish -> durable ack at 20,000 readings/s (100 devices x 200/s, 10/batch) | p50 {:.1} ms | p99 {:.1} ms | max {:.1} ms | {:.0} readings/s acked, {} batches timed | {:.2} disk bytes per payload byte, {} commits in all |",
        num(&v, "ack_latency_p50_ms"),
        num(&v, "ack_latency_p99_ms"),
        num(&v, "ack_latency_max_ms"),
        num(&v, "acked_per_s"),
        num(&v, "ack_latency_samples"),
        (w1 - w0) as f64 / (p1 - p0).max(1.0),
        commits
    );
    Ok(())
}

fn site() -> Result<()> {
    // Devices at random phases, as on a real site; `BENCH_PHASE=lockstep` for the burstiest.
    let phase = env_or("BENCH_PHASE", "random");
    let gw = GatewayProcess::start(options())?;
    let pid = gw.pid().ok_or("gateway not running")?;
    let sim = devsim::spawn(
        gw.mqtt5,
        &[
            "--devices",
            "1000",
            "--rate",
            "1",
            "--duration",
            "220",
            "--batch-max",
            "1",
            "--drain-timeout",
            "30",
            "--phase",
            &phase,
            "--json",
        ],
    )?;
    // Warm up: connections, first commits, the broker's log and redb's cache filling (memory
    // keeps rising for the first minute or two; the resident size reported is the steady one).
    std::thread::sleep(Duration::from_secs(60));
    let (w0, p0, c0) = (
        proc_field(pid, "io", "write_bytes:").unwrap_or(0),
        gw.metric("gateway_ingest_payload_bytes_total")?,
        gw.metric("gateway_buffer_commits_total")?,
    );
    let rss0_kb = proc_field(pid, "status", "VmRSS:").unwrap_or(0);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(120));
    let (w1, p1, c1) = (
        proc_field(pid, "io", "write_bytes:").unwrap_or(0),
        gw.metric("gateway_ingest_payload_bytes_total")?,
        gw.metric("gateway_buffer_commits_total")?,
    );
    let rss_kb = proc_field(pid, "status", "VmRSS:").unwrap_or(0);
    let hwm_kb = proc_field(pid, "status", "VmHWM:").unwrap_or(0);
    let window = started.elapsed().as_secs_f64();
    let (_, stdout, stderr) = devsim::finish(sim)?;
    let v: Value =
        serde_json::from_str(stdout.trim()).map_err(|e| format!("{e}: {stdout}\n{stderr}"))?;
    let payload = p1 - p0;
    let commits = (c1 - c0).max(1.0);
    println!(
        "| typical site, 1,000 devices x 1 reading/s, 1 reading/batch, {phase} phases | RSS {:.1} MiB (peak {:.1} MiB; {:.1} MiB after warm-up) | {:.2} disk bytes written per payload byte ({:.0} KB/s written for {:.0} KB/s payload; {:.0} commits, {:.1} KB written and {:.1} KB payload per commit) | ack p50 {:.0} ms p99 {:.0} ms |",
        rss_kb as f64 / 1024.0,
        hwm_kb as f64 / 1024.0,
        rss0_kb as f64 / 1024.0,
        (w1 - w0) as f64 / payload.max(1.0),
        (w1 - w0) as f64 / 1000.0 / window,
        payload / 1000.0 / window,
        commits,
        (w1 - w0) as f64 / 1000.0 / commits,
        payload / 1000.0 / commits,
        num(&v, "ack_latency_p50_ms"),
        num(&v, "ack_latency_p99_ms")
    );
    Ok(())
}

/// `--tls` arguments for devsim against a gateway of `certs` (with device certificates if
/// `certificates`).
fn tls_args(certs: &SiteCerts, certificates: bool) -> Vec<String> {
    let mut args = vec![
        "--tls".into(),
        "--ca".into(),
        certs.ca().display().to_string(),
    ];
    if certificates {
        let (cert, key) = certs.device_template();
        args.extend(["--cert".into(), cert, "--key".into(), key]);
    }
    args
}

fn with(load: &[&str], extra: &[String]) -> Vec<String> {
    load.iter()
        .map(|s| (*s).to_owned())
        .chain(extra.iter().cloned())
        .collect()
}

fn run_devsim_owned(broker: SocketAddr, args: &[String]) -> Result<Value> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_devsim(broker, &args)
}

/// Login time (TCP connect, TLS handshake if any, CONNECT -> CONNACK) of `n` sequential
/// clients, as (mean, p99) in ms.
fn login_times(
    n: usize,
    mut login: impl FnMut(usize) -> std::result::Result<e2e::mqtt_client::TestClient, e2e::HarnessError>,
) -> Result<(f64, f64)> {
    let mut ms = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let client = login(i)?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        drop(client);
    }
    ms.sort_by(f64::total_cmp);
    let mean = ms.iter().sum::<f64>() / n as f64;
    Ok((mean, ms[(n * 99 / 100).min(n - 1)]))
}

/// MQTT over TLS next to plaintext, on one gateway in one run (issue 12): ingest throughput,
/// the 20,000 readings/s ack latency, login time per device, and 1,000 devices with
/// certificates connecting at once.
fn tls() -> Result<()> {
    let certs = SiteCerts::create("bench")?;
    let devices = 1_000;
    for i in 0..devices {
        certs.device(&format!("sim-{i:04}"), 30)?;
    }
    let gw = GatewayProcess::start(GatewayOptions {
        tls_toml: Some(certs.gateway_toml(Some("optional"))),
        ..options()
    })?;
    let (rate, batch) = (env_or("BENCH_RATE", "3000"), env_or("BENCH_BATCH", "10"));
    #[rustfmt::skip]
    let saturate = [
        "--devices", "100", "--rate", &rate, "--duration", "15", "--batch-max", &batch,
        "--batch-interval-ms", "5", "--drain-timeout", "30", "--ring-capacity", "65536",
    ];
    // Each run has its own device IDs: devsim numbers boots by the clock, and devices coming
    // back more than 16 boots ahead are held as a boot jump until confirmed (issue 11).
    let prefix = |p: &str| vec!["--id-prefix".to_owned(), p.to_owned()];
    let plain = run_devsim_owned(gw.mqtt5, &with(&saturate, &prefix("pt-")))?;
    let secure = run_devsim_owned(
        gw.mqtts5,
        &with(
            &saturate,
            &[tls_args(&certs, false), prefix("tt-")].concat(),
        ),
    )?;
    let (pr, sr) = (acked_rate(&plain, 15.0), acked_rate(&secure, 15.0));
    println!(
        "| durable ingest, 100 devices x {rate}/s offered, {batch}/batch | plaintext {pr:.0} readings/s | TLS {sr:.0} readings/s | TLS/plaintext {:.2} |",
        sr / pr
    );

    #[rustfmt::skip]
    let twenty_k = [
        "--devices", "100", "--rate", "200", "--duration", "20", "--batch-max", "10",
        "--batch-interval-ms", "20", "--drain-timeout", "30",
    ];
    let plain = run_devsim_owned(gw.mqtt5, &with(&twenty_k, &prefix("pl-")))?;
    let secure = run_devsim_owned(
        gw.mqtts5,
        &with(
            &twenty_k,
            &[tls_args(&certs, false), prefix("tl-")].concat(),
        ),
    )?;
    println!(
        "| publish -> durable ack at 20,000 readings/s | plaintext p50 {:.1} ms p99 {:.1} ms | TLS p50 {:.1} ms p99 {:.1} ms | p99 TLS/plaintext {:.2} |",
        num(&plain, "ack_latency_p50_ms"),
        num(&plain, "ack_latency_p99_ms"),
        num(&secure, "ack_latency_p50_ms"),
        num(&secure, "ack_latency_p99_ms"),
        num(&secure, "ack_latency_p99_ms") / num(&plain, "ack_latency_p99_ms")
    );

    let logins = 200;
    let plain = login_times(logins, |i| {
        e2e::mqtt_client::TestClient::connect_v5(gw.mqtt5, &format!("login-{i:04}"), None)
    })?;
    let client_tls: Vec<_> = (0..logins)
        .map(|i| {
            let (cert, key) = certs.device_files(&format!("sim-{i:04}"));
            e2e::site_certs::client_tls(&certs.ca(), Some((&cert, &key)))
        })
        .collect::<std::result::Result<_, _>>()?;
    let mutual = login_times(logins, |i| {
        e2e::mqtt_client::TestClient::connect_v5_tls(
            gw.mqtts5,
            &format!("sim-{i:04}"),
            None,
            client_tls[i].clone(),
        )
    })?;
    println!(
        "| login (TCP, TLS 1.3 with a P-256 device certificate, CONNECT -> CONNACK), {logins} in a row | plaintext mean {:.2} ms p99 {:.2} ms | mutual TLS mean {:.2} ms p99 {:.2} ms | |",
        plain.0, plain.1, mutual.0, mutual.1
    );

    #[rustfmt::skip]
    let herd = [
        "--devices", "1000", "--rate", "1", "--readings", "1", "--batch-max", "1",
        "--drain-timeout", "60",
    ];
    let plain = run_devsim_owned(gw.mqtt5, &with(&herd, &prefix("ph-")))?;
    let mutual = run_devsim_owned(gw.mqtts5, &with(&herd, &tls_args(&certs, true)))?;
    println!(
        "| 1,000 devices connecting at once, 1 reading each, until all acked | plaintext {:.2} s ({:.0} acked) | mutual TLS {:.2} s ({:.0} acked) | |",
        num(&plain, "elapsed_s"),
        num(&plain, "acked"),
        num(&mutual, "elapsed_s"),
        num(&mutual, "acked"),
    );
    Ok(())
}

fn main() -> Result<()> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    println!(
        "bench-ingest {which}: {} on {} cores",
        chrono_free_date(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if matches!(which.as_str(), "throughput" | "all") {
        throughput()?;
    }
    if matches!(which.as_str(), "latency" | "all") {
        latency()?;
    }
    if matches!(which.as_str(), "site" | "all") {
        site()?;
    }
    if matches!(which.as_str(), "tls" | "all") {
        tls()?;
    }
    Ok(())
}

/// `date -u` output, without a date crate.
fn chrono_free_date() -> String {
    std::process::Command::new("date")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
