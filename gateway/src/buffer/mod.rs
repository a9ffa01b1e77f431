//! Stage 2, the durable buffer: every accepted reading is in redb before its device is
//! acknowledged, and stays there until the forwarder or the export delivered it.
//!
//! - [`layout`]: the file format and its invariants.
//! - [`sequencer`]: dedupe and gap logic per device.
//! - [`commit_policy`]: when to commit (latency vs SD-card wear).
//! - [`coalesce`]: when a device's next batch joins its record (SD-card wear).
//! - [`writer`]: the single writer thread (group commit, capacity, checkpoints, acks).
//! - [`store`]: open, recovery and reads.
//! - [`fresh`]: admitted entries handed to the forwarder ahead of their commit.
//! - [`device_bytes`]: bytes per device, for the per-device quota.

pub mod coalesce;
pub mod commit_policy;
pub mod config;
pub mod device_bytes;
pub mod error;
pub mod fresh;
pub mod layout;
pub mod metrics;
pub mod sequencer;
pub mod store;
mod varint;
pub mod writer;

pub use config::{
    BufferConfig, DEFAULT_CACHE_BYTES, FullPolicy, RetentionAction, ValidBufferConfig,
};
pub use error::{OpenError, ReadError, WriteError};
pub use fresh::FreshEntry;
pub use layout::{BatchRecord, RecordReading};
pub use metrics::BufferMetrics;
pub use store::{Buffer, BufferStats, Recovered};
pub use writer::{AckOut, Command, IncomingBatch, WriterHandle};
