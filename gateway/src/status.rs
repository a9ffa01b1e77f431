//! `gateway status`: fetches `/health` from the running gateway and prints it at a glance.

use crate::telemetry::HealthReport;
use crate::telemetry::devices::{DeviceFacts, DevicesReport};
use anyhow::Context as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Fetches the health report from `endpoint` (`host:port`).
pub fn fetch(endpoint: &str) -> anyhow::Result<HealthReport> {
    fetch_path(endpoint, "/health")
}

/// Fetches the health report with each device's facts (`/health?devices`).
pub fn fetch_devices(endpoint: &str) -> anyhow::Result<DevicesReport> {
    fetch_path(endpoint, "/health?devices")?
        .devices
        .context("the gateway does not report devices (an older version?)")
}

fn fetch_path(endpoint: &str, path: &str) -> anyhow::Result<HealthReport> {
    let mut stream = TcpStream::connect(endpoint).with_context(|| {
        format!("no gateway answers at {endpoint} (is it running? see telemetry.listen)")
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n\r\n"
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

/// The device table of `gateway devices list --status`: every device the gateway reports, and
/// the devices of the credentials file (`listed`) it has no facts about yet ("never").
pub fn render_devices(report: &DevicesReport, listed: &[String]) -> String {
    use std::fmt::Write as _;
    let mut rows: Vec<DeviceFacts> = report.devices.clone();
    for id in listed {
        if !rows.iter().any(|d| &d.device == id) {
            rows.push(DeviceFacts {
                device: id.clone(),
                last_seen_utc: None,
                last_seen_seconds_ago: None,
                readings_stored: 0,
                readings_lost_at_device: 0,
                refusals: 0,
                refused_logins: 0,
                refused_actions: 0,
                rejected_messages: 0,
                last_refusal: None,
                silent: false,
            });
        }
    }
    rows.sort_by(|a, b| a.device.cmp(&b.device));
    let width = rows
        .iter()
        .map(|d| d.device.len())
        .chain([6])
        .max()
        .unwrap_or(6);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:width$}  {:24}  {:>9}  {:>10}  {:>6}  {:>8}  {:6}  LAST REFUSAL",
        "DEVICE", "LAST SEEN (UTC)", "AGO (s)", "STORED", "LOST", "REFUSALS", "SILENT"
    );
    for d in &rows {
        let ago = d
            .last_seen_seconds_ago
            .map_or("-".to_owned(), |s| format!("{s:.1}"));
        let silent = match (d.last_seen_utc.is_some(), d.silent) {
            (false, _) => "-",
            (true, true) => "yes",
            (true, false) => "no",
        };
        let _ = writeln!(
            out,
            "{:width$}  {:24}  {:>9}  {:>10}  {:>6}  {:>8}  {:6}  {}",
            d.device,
            d.last_seen_utc.as_deref().unwrap_or("never"),
            ago,
            d.readings_stored,
            d.readings_lost_at_device,
            d.refusals,
            silent,
            d.last_refusal.as_deref().unwrap_or("-"),
        );
    }
    let _ = writeln!(
        out,
        "{} devices, {} seen since the gateway started, {} silent",
        rows.len(),
        report.seen,
        report.silent
    );
    if report.untracked_updates > 0 {
        let _ = writeln!(
            out,
            "{} updates about devices beyond the table's {} entries were not recorded",
            report.untracked_updates,
            crate::telemetry::devices::MAX_DEVICES
        );
    }
    out
}
