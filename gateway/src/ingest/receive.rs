//! The common receive path of both ingest modes: validate, count, hand to the buffer.

use super::metrics::IngestMetrics;
use super::validate::validate;
use crate::buffer::WriterHandle;
use crate::telemetry::devices::Refusal;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often one rejection reason may be logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Validates publishes and queues them for the buffer writer.
#[derive(Debug)]
pub struct Receiver {
    writer: WriterHandle,
    metrics: IngestMetrics,
    /// Per reason: when it was last logged and how many were suppressed since.
    last_logged: HashMap<&'static str, (Instant, u64)>,
}

impl Receiver {
    /// A receiver feeding `writer`.
    pub fn new(writer: WriterHandle, metrics: IngestMetrics) -> Self {
        Self {
            writer,
            metrics,
            last_logged: HashMap::new(),
        }
    }

    /// Handles one publish. Returns false once the buffer writer has stopped.
    pub fn handle(&mut self, topic: &[u8], payload: &[u8]) -> bool {
        self.metrics.messages.inc();
        let received_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        match validate(topic, payload, received_ms) {
            Ok(v) => {
                self.metrics.readings.inc_by(v.batch.readings.len() as u64);
                self.metrics.payload_bytes.inc_by(payload.len() as u64);
                self.metrics
                    .device_dropped_readings
                    .inc_by(u64::from(v.device_dropped));
                self.metrics.devices.batch(
                    &v.batch.device,
                    Instant::now(),
                    received_ms,
                    v.device_dropped,
                );
                self.writer.append(v.batch).is_ok()
            }
            Err(rejection) => {
                let reason = rejection.reason();
                self.metrics.reject(reason);
                if let Some(device) = super::validate::uplink_device(topic) {
                    self.metrics
                        .devices
                        .refused(&device, Refusal::Message, "message", reason);
                }
                self.log_rejection(reason, &rejection, topic);
                true
            }
        }
    }

    fn log_rejection(
        &mut self,
        reason: &'static str,
        rejection: &super::validate::Rejection,
        topic: &[u8],
    ) {
        let now = Instant::now();
        let entry = self
            .last_logged
            .entry(reason)
            .or_insert((now - LOG_EVERY, 0));
        if now.duration_since(entry.0) >= LOG_EVERY {
            tracing::warn!(
                reason,
                topic = %String::from_utf8_lossy(topic),
                suppressed = entry.1,
                "Rejected a message: {rejection}."
            );
            *entry = (now, 0);
        } else {
            entry.1 += 1;
        }
    }
}
