//! `gateway status`: fetches `/health` from the running gateway and prints it at a glance.

use crate::telemetry::HealthReport;
use anyhow::Context as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Fetches the health report from `endpoint` (`host:port`).
pub fn fetch(endpoint: &str) -> anyhow::Result<HealthReport> {
    let mut stream = TcpStream::connect(endpoint).with_context(|| {
        format!("no gateway answers at {endpoint} (is it running? see telemetry.listen)")
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .context("malformed HTTP response")?;
    serde_json::from_str(body).context("unexpected /health document")
}

/// Prints the report; fails when the gateway is unreachable.
pub fn print(endpoint: &str) -> anyhow::Result<()> {
    let r = fetch(endpoint)?;
    println!("status: {}", r.status);
    for p in &r.problems {
        println!("  problem: {p}");
    }
    let b = &r.buffer;
    println!(
        "buffer: {} readings, {} bytes, oldest {:.1} s, writable {}, stored since start {}, commit failures {}",
        b.buffered_readings,
        b.buffered_bytes,
        b.oldest_age_seconds,
        b.writable,
        b.readings_stored,
        b.commit_failures
    );
    println!(
        "ingest: {} messages, {} acks published",
        r.ingest.messages, r.ingest.acks_published
    );
    match &r.forward {
        None => println!("forward: disabled (readings stay buffered)"),
        Some(f) => {
            let state = if f.reachable {
                "reachable".to_owned()
            } else {
                format!(
                    "FAILING for {:.0} s: {}",
                    f.failing_for_seconds,
                    f.last_error.as_deref().unwrap_or("unknown error")
                )
            };
            println!(
                "forward: stream {}, {} open shards, {state}",
                f.stream, f.open_shards
            );
            for s in &f.shards {
                println!(
                    "  {}: {} records, {} bytes sent, {} throttled, {} retried, {} in flight, lag {:.1} s",
                    s.shard_id,
                    s.records_sent,
                    s.bytes_sent,
                    s.throttled,
                    s.retried,
                    s.in_flight,
                    s.lag_seconds
                );
            }
        }
    }
    Ok(())
}
