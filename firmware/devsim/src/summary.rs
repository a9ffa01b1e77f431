//! The final summary: one human line on stderr, optionally one JSON object on stdout.

use crate::device::DeviceReport;
use crate::latency::quantile;
use serde::Serialize;
use std::io::Write as _;
use std::path::Path;

/// Totals over all devices. Reading counts satisfy `produced == acked + dropped + buffered`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    /// Devices simulated.
    pub devices: usize,
    /// Readings recorded.
    pub produced: u64,
    /// Readings published at least once (first sends).
    pub sent: u64,
    /// Readings published again (go-back-N after ack timeout or reconnect).
    pub resent: u64,
    /// Readings acked by the gateway.
    pub acked: u64,
    /// Readings still buffered, never acked.
    pub buffered: u64,
    /// Readings dropped by the ring's overflow policy.
    pub dropped: u64,
    /// Corrupt extra payloads published.
    pub corrupt_sent: u64,
    /// Successful reconnections (connections after each device's first).
    pub reconnects: u64,
    /// Connections cut by `--drop-every`.
    pub link_cuts: u64,
    /// Failed connection attempts and lost connections.
    pub connect_failures: u64,
    /// Ack timeouts (go-back-N restarts).
    pub ack_timeouts: u64,
    /// Batches published (resends included).
    pub batches_sent: u64,
    /// Acks refused (undecodable, other device or boot, unsent seq).
    pub acks_rejected: u64,
    /// Sampling slots skipped because a device woke too late (simulator overloaded).
    pub samples_skipped: u64,
    /// Wall time in seconds.
    pub elapsed_s: f64,
    /// Readings produced per second over all devices.
    pub produced_per_s: f64,
    /// Readings acked per second over all devices.
    pub acked_per_s: f64,
    /// Device errors.
    pub errors: Vec<String>,
    /// Whether every reading was acked or dropped by the overflow policy, with no error.
    pub complete: bool,
    /// Publish → durable-ack latency of batches (first sends), median, ms.
    pub ack_latency_p50_ms: f32,
    /// 99th percentile, ms.
    pub ack_latency_p99_ms: f32,
    /// Largest, ms.
    pub ack_latency_max_ms: f32,
    /// Batches timed.
    pub ack_latency_samples: u64,
}

impl Summary {
    /// Adds up device reports.
    pub fn from_reports(reports: &[DeviceReport], elapsed_s: f64) -> Self {
        let mut s = Summary {
            devices: reports.len(),
            elapsed_s,
            ..Summary::default()
        };
        for r in reports {
            let st = &r.status;
            s.produced += st.produced;
            s.sent += st.stats.readings_sent - st.stats.readings_resent;
            s.resent += st.stats.readings_resent;
            s.acked += st.acked;
            s.buffered += st.buffered;
            s.dropped += st.dropped;
            s.corrupt_sent += st.stats.extra_sent;
            s.reconnects += st.stats.connects.saturating_sub(1);
            s.link_cuts += r.link_cuts;
            s.connect_failures += st.stats.connect_failures;
            s.ack_timeouts += st.stats.ack_timeouts;
            s.batches_sent += st.stats.batches_sent;
            s.acks_rejected += st.stats.acks_rejected;
            s.samples_skipped += st.stats.samples_skipped;
            if let Some(e) = &r.error {
                s.errors.push(format!("{}: {e}", r.id));
            }
        }
        let mut latencies: Vec<f32> = reports
            .iter()
            .flat_map(|r| r.latencies_ms.iter().copied())
            .collect();
        latencies.sort_by(f32::total_cmp);
        s.ack_latency_p50_ms = quantile(&latencies, 0.50);
        s.ack_latency_p99_ms = quantile(&latencies, 0.99);
        s.ack_latency_max_ms = latencies.last().copied().unwrap_or(0.0);
        s.ack_latency_samples = latencies.len() as u64;
        if elapsed_s > 0.0 {
            s.produced_per_s = s.produced as f64 / elapsed_s;
            s.acked_per_s = s.acked as f64 / elapsed_s;
        }
        s.complete = s.buffered == 0 && s.errors.is_empty() && s.produced == s.acked + s.dropped;
        s
    }

    /// The human line.
    pub fn human(&self) -> String {
        format!(
            "devsim: {} devices, {} produced, {} sent, {} acked, {} buffered, {} dropped, {} resent, {} corrupt sent, {} reconnects ({} link cuts), {} ack timeouts, {:.1}s, {:.0} readings/s produced, {:.0}/s acked, ack latency p50 {:.1} ms p99 {:.1} ms{}",
            self.devices,
            self.produced,
            self.sent,
            self.acked,
            self.buffered,
            self.dropped,
            self.resent,
            self.corrupt_sent,
            self.reconnects,
            self.link_cuts,
            self.ack_timeouts,
            self.elapsed_s,
            self.produced_per_s,
            self.acked_per_s,
            self.ack_latency_p50_ms,
            self.ack_latency_p99_ms,
            if self.complete { "" } else { " — INCOMPLETE" },
        )
    }
}

/// Writes the acked log: `device_id,boot,from_seq,through_seq` per acked range.
pub fn write_acked_log(path: &Path, reports: &[DeviceReport]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "device_id,boot,from_seq,through_seq")?;
    for r in reports {
        for a in &r.acked {
            writeln!(out, "{},{},{},{}", r.id, a.boot, a.from, a.through)?;
        }
    }
    out.flush()
}
