//! Logging setup: `tracing` to stderr in the configured format.

use super::config::{LogFormat, TelemetryConfig};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` overrides the configured level.
pub fn init(config: &TelemetryConfig) {
    // rumqttd logs every connection at INFO and reports routine disconnect races at ERROR;
    // its warnings are kept, the rest would drown the gateway's own lines. `segments` warns
    // each time a device's ack log skips ahead, which is by design (acks are cumulative and
    // each device's ack log holds a few: `ingest/embedded.rs`, `ack_logs`).
    let quiet_broker = ",rumqttd=warn,rumqttd::router::routing=off,rumqttd::segments=error";
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{}{quiet_broker}", config.log_level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Journald => builder.without_time().with_ansi(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
