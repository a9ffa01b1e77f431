//! `[telemetry]` settings.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines with timestamps (terminals).
    Text,
    /// Lines without timestamps or colours, for journald (which stamps them itself).
    Journald,
    /// One JSON object per line.
    Json,
}

/// `[telemetry]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Address of the HTTP endpoint serving `/metrics` and `/health`.
    pub listen: SocketAddr,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (tracing-subscriber `EnvFilter` syntax); `RUST_LOG` overrides it.
    pub log_level: String,
    /// A device is silent (`gateway_devices_silent`) after this many of its usual intervals
    /// between batches without one...
    pub silent_after_intervals: f64,
    /// ...and at least this many seconds.
    pub silent_min_secs: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9184)),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            silent_after_intervals: 10.0,
            silent_min_secs: 60.0,
        }
    }
}
