//! Stage 1, ingest: MQTT publishes in, validated batches to the buffer, durable acks out.
//!
//! - [`embedded`]: the built-in rumqttd broker (MQTT v5 and v3.1.1 listeners).
//! - [`external`]: a shared subscription on an existing broker; [`external_login`]: its TLS
//!   and login.
//! - [`validate`]: untrusted publish → batch, or a counted [`validate::Rejection`].
//! - [`receive`]: the path shared by both modes.
//! - [`auth`]: per-device credentials.
//! - [`authorize`]: what each connection may publish and subscribe to (its own topics only).
//! - [`provision`]: editing the credentials file (`gateway devices`).
//! - [`tls`]: MQTT over TLS, device certificates as identities.
//! - [`log_limit`]: a bound on the log lines clients can cause.
//! - [`acks`]: ack encoding.

pub mod acks;
pub mod auth;
pub mod authorize;
pub mod config;
pub mod embedded;
pub mod external;
pub mod external_login;
pub mod log_limit;
pub mod metrics;
pub mod provision;
pub mod receive;
pub mod tls;
pub mod validate;

pub use config::{IngestConfig, IngestMode};
pub use metrics::IngestMetrics;
