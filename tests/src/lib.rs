//! End-to-end test harness for the IoT edge gateway.
//!
//! It runs [kinesis-local](https://www.npmjs.com/package/kinesis-local) (a Node.js build of
//! kinesis-mock, pinned in `tests/package-lock.json`) on free loopback ports and gives tests an
//! `aws_sdk_kinesis::Client` pointed at it, the environment a child process (the gateway) needs
//! to reach it, and a helper that reads every record of a stream back.
//!
//! For rates and failures kinesis-local cannot show, [`KinesisEmulator`] is a fast in-process
//! Kinesis data plane that enforces the per-shard limits and injects throttling and outages;
//! [`forward_check`] decodes the gateway's records and measures shard utilisation.
//!
//! Requirements: `node` and `npm` on `PATH` (or `E2E_NODE` / `E2E_NPM`). The harness installs
//! kinesis-local itself (`npm ci` in `tests/`) the first time it is needed.
//!
//! ```no_run
//! # async fn demo() -> Result<(), e2e::HarnessError> {
//! let mock = e2e::KinesisLocal::start(&[("telemetry", 2)]).await?;
//! let client = mock.client();
//! client.put_record().stream_name("telemetry").partition_key("dev-1")
//!     .data(aws_sdk_kinesis::primitives::Blob::new(b"hello".to_vec()))
//!     .send().await.map_err(|e| e2e::HarnessError::kinesis("PutRecord", e))?;
//! let records = e2e::read_all_records(&client, "telemetry").await?;
//! assert_eq!(records.len(), 1);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod binaries;
pub mod devsim;
mod error;
pub mod export_check;
pub mod export_fill;
pub mod forward_check;
pub mod gateway_process;
pub mod kinesis_emu;
mod kinesis_local;
pub mod kpl;
pub mod mosquitto;
pub mod mqtt_client;
pub mod node;
pub mod ports;
pub mod raw_mqtt;
mod read_back;
pub mod site_certs;
pub mod tail;
pub mod uplink;
pub mod virtual_board;

pub use error::HarnessError;
pub use gateway_process::{GatewayOptions, GatewayProcess};
pub use kinesis_emu::KinesisEmulator;
pub use kinesis_local::{KinesisLocal, REGION};
pub use read_back::{StreamRecord, hash_key_range, list_shards, read_all_records};
