//! The gateway: ingest → buffer → forward → export.
//!
//! - [`ingest`]: MQTT in (embedded rumqttd or an external broker), validation, acks out.
//! - [`buffer`]: the durable redb buffer and its single writer.
//! - [`forward`]: the buffer to Kinesis Data Streams, per-shard rate limits, per-record retry.
//! - [`export`]: the buffer to Parquet / gzip JSON files for batch backfill.
//! - [`formats`]: the shapes readings leave in (Kinesis records, files), shared by the stages
//!   and read back by [`tail`].
//! - [`tail`]: `gateway tail`, a consumer of the stream: de-aggregates, prints, checks.
//! - [`telemetry`]: metrics, health and the HTTP endpoint serving them.
//! - [`config`]: the one TOML file, validated before use; [`validate`]: `gateway validate`'s
//!   checks of files, directories and listeners.
//! - [`service`]: wiring the stages together, `run(config, shutdown)`; [`reload`]: what a
//!   SIGHUP applies without a restart.

pub mod allocator;
pub mod buffer;
pub mod config;
pub mod export;
pub mod formats;
pub mod forward;
pub mod ingest;
pub mod reload;
pub mod service;
pub mod status;
pub mod tail;
pub mod telemetry;
pub mod validate;
