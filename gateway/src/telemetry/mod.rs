//! Telemetry: the metrics registry, health, the HTTP endpoint and logging setup.
//! Each stage defines and registers its own metrics (`gateway_<stage>_*`).

pub mod config;
pub mod devices;
pub mod health;
pub mod http;
pub mod logging;

pub use config::{LogFormat, TelemetryConfig};
pub use health::{Health, HealthReport};
