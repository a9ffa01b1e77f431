//! Health: what each stage reports, summarised for `/health` and `gateway status`.

use crate::buffer::BufferMetrics;
use crate::forward::{ForwardHealth, ForwardMetrics};
use crate::ingest::IngestMetrics;
use crate::telemetry::devices::DevicesReport;
use serde::Serialize;

/// Read-only view of the gauges and counters health is derived from.
#[derive(Debug, Clone)]
pub struct Health {
    buffer: BufferMetrics,
    ingest: IngestMetrics,
    forward: Option<ForwardMetrics>,
}

/// The `/health` document.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct HealthReport {
    /// `ok` or `degraded`.
    pub status: String,
    /// Human-readable problems, empty when ok.
    pub problems: Vec<String>,
    /// Buffer summary.
    pub buffer: BufferHealth,
    /// Ingest summary.
    pub ingest: IngestHealth,
    /// Forwarder summary (absent when forwarding is disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<ForwardHealth>,
    /// Per-device facts (only with `/health?devices`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<DevicesReport>,
}

/// Buffer part of the report.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct BufferHealth {
    /// Commits succeed.
    pub writable: bool,
    /// Readings buffered.
    pub buffered_readings: i64,
    /// Record bytes buffered.
    pub buffered_bytes: i64,
    /// Age of the oldest buffered reading, seconds.
    pub oldest_age_seconds: f64,
    /// Readings stored since start.
    pub readings_stored: u64,
    /// Failed commits since start.
    pub commit_failures: u64,
}

/// Ingest part of the report.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct IngestHealth {
    /// Uplink messages since start.
    pub messages: u64,
    /// Acks published since start.
    pub acks_published: u64,
}

impl Health {
    /// Health over the stages' metrics.
    pub fn new(buffer: BufferMetrics, ingest: IngestMetrics) -> Self {
        Self {
            buffer,
            ingest,
            forward: None,
        }
    }

    /// Adds the forwarder (when forwarding is enabled).
    pub fn with_forward(mut self, forward: ForwardMetrics) -> Self {
        self.forward = Some(forward);
        self
    }

    /// The current report; with `devices`, each device's facts too.
    pub fn report(&self, devices: bool) -> HealthReport {
        let writable = self.buffer.writable.get() == 1;
        let mut problems = Vec::new();
        if self.ingest.link_lost.get() != 0 {
            problems.push("ingest stopped: the gateway's link to its embedded MQTT broker is lost; no device is acknowledged (the gateway exits so that systemd restarts it)".to_owned());
        }
        if !writable {
            problems.push("buffer not writable (disk full or I/O errors): devices are not acknowledged and keep their readings".to_owned());
        }
        let forward = self.forward.as_ref().map(|f| {
            let (report, problem) = f.health();
            problems.extend(problem);
            report
        });
        HealthReport {
            status: if problems.is_empty() {
                "ok"
            } else {
                "degraded"
            }
            .to_owned(),
            problems,
            buffer: BufferHealth {
                writable,
                buffered_readings: self.buffer.buffered_readings.get(),
                buffered_bytes: self.buffer.buffered_bytes.get(),
                oldest_age_seconds: self.buffer.oldest_age_seconds.get(),
                readings_stored: self.buffer.readings_stored.get(),
                commit_failures: self.buffer.commit_failures.get(),
            },
            ingest: IngestHealth {
                messages: self.ingest.messages.get(),
                acks_published: self.ingest.acks_published.get(),
            },
            forward,
            devices: devices.then(|| self.ingest.devices.report(std::time::Instant::now())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_broker_link_is_named_and_degrades_health() {
        let mut registry = prometheus_client::registry::Registry::default();
        let buffer = BufferMetrics::register(&mut registry);
        buffer.writable.set(1);
        let ingest = IngestMetrics::register(&mut registry);
        let health = Health::new(buffer, ingest.clone());
        assert_eq!(health.report(false).status, "ok");
        ingest.link_lost.set(1);
        let report = health.report(false);
        assert_eq!(report.status, "degraded");
        assert!(report.problems[0].contains("link to its embedded MQTT broker is lost"));
    }
}
