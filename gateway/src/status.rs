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

/// Kinesis' per-shard write limits, for the use shown next to each shard's rates.
const SHARD_RECORDS_PER_S: f64 = 1_000.0;
const SHARD_BYTES_PER_S: f64 = 1_048_576.0;

/// The report as text; with the previous report and the time between them, also rates and
/// each shard's use of its limits.
pub fn render(r: &HealthReport, previous: Option<(&HealthReport, Duration)>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let per_s = |now: u64, before: u64, dt: Duration| {
        now.saturating_sub(before) as f64 / dt.as_secs_f64().max(1e-3)
    };
    let _ = writeln!(out, "status: {}", r.status);
    for p in &r.problems {
        let _ = writeln!(out, "  problem: {p}");
    }
    let b = &r.buffer;
    let _ = writeln!(
        out,
        "buffer: {} readings, {} bytes, oldest {:.1} s, writable {}, stored since start {}, commit failures {}",
        b.buffered_readings,
        b.buffered_bytes,
        b.oldest_age_seconds,
        b.writable,
        b.readings_stored,
        b.commit_failures
    );
    let _ = writeln!(
        out,
        "ingest: {} messages, {} acks published",
        r.ingest.messages, r.ingest.acks_published
    );
    if let Some((p, dt)) = previous {
        let _ = writeln!(
            out,
            "rates: {:.0} readings/s stored, {:.0} messages/s, {:.0} acks/s",
            per_s(b.readings_stored, p.buffer.readings_stored, dt),
            per_s(r.ingest.messages, p.ingest.messages, dt),
            per_s(r.ingest.acks_published, p.ingest.acks_published, dt),
        );
    }
    match &r.forward {
        None => {
            let _ = writeln!(out, "forward: disabled (readings stay buffered)");
        }
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
            let _ = writeln!(
                out,
                "forward: stream {}, {} open shards, {state}",
                f.stream, f.open_shards
            );
            for s in &f.shards {
                let _ = write!(
                    out,
                    "  {}: {} records, {} bytes sent, {} throttled, {} retried, {} in flight, lag {:.1} s",
                    s.shard_id,
                    s.records_sent,
                    s.bytes_sent,
                    s.throttled,
                    s.retried,
                    s.in_flight,
                    s.lag_seconds
                );
                let before = previous.and_then(|(p, dt)| {
                    let shards = &p.forward.as_ref()?.shards;
                    Some((shards.iter().find(|o| o.shard_id == s.shard_id)?, dt))
                });
                if let Some((o, dt)) = before {
                    let records = per_s(s.records_sent, o.records_sent, dt);
                    let bytes = per_s(s.bytes_sent, o.bytes_sent, dt);
                    let _ = write!(
                        out,
                        "; {records:.0} records/s ({:.0} % of the limit), {:.0} KB/s ({:.0} %)",
                        100.0 * records / SHARD_RECORDS_PER_S,
                        bytes / 1000.0,
                        100.0 * bytes / SHARD_BYTES_PER_S
                    );
                }
                let _ = writeln!(out);
            }
        }
    }
    out
}

/// Prints the report; fails when the gateway is unreachable.
pub fn print(endpoint: &str) -> anyhow::Result<()> {
    print!("{}", render(&fetch(endpoint)?, None));
    Ok(())
}

/// Prints the `/health` document as JSON (for scripts).
pub fn print_json(endpoint: &str) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&fetch(endpoint)?)?);
    Ok(())
}

/// Shows the report every `interval` with the rates since the previous one, until
/// interrupted (Ctrl-C). On a terminal each view replaces the last; otherwise views follow
/// one another, each after a line naming the endpoint and the interval. A gateway that stops answering is said
/// so in the view, and watching goes on.
pub fn watch(endpoint: &str, interval: Duration) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    let terminal = std::io::stdout().is_terminal();
    let mut previous: Option<(HealthReport, std::time::Instant)> = None;
    loop {
        let now = std::time::Instant::now();
        let view = match fetch(endpoint) {
            Ok(r) => {
                let text = render(&r, previous.as_ref().map(|(p, t)| (p, now - *t)));
                previous = Some((r, now));
                text
            }
            Err(e) => format!("{e:#}\n"),
        };
        let mut out = std::io::stdout().lock();
        if terminal {
            write!(out, "\x1b[2J\x1b[H")?;
        } else {
            writeln!(out, "--- {endpoint}, every {:.1} s", interval.as_secs_f64())?;
        }
        write!(out, "{view}")?;
        out.flush()?;
        drop(out);
        std::thread::sleep(interval);
    }
}
