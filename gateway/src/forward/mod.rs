//! Stage 3, forward: the buffer's log to Kinesis Data Streams, partition key = device ID,
//! never above a shard's limits, nothing deleted before Kinesis accepted it.
//!
//! - [`config`]: `[forward]`, validated and clamped to Kinesis' limits.
//! - [`record`]: what one record holds (one device's batches, or a KPL aggregate of many
//!   devices' for the shard); the shapes are [`crate::formats`]'.
//! - [`shard_map`]: MD5 hash key → open shard, from ListShards.
//! - [`bucket`]: per-shard records/bytes bucket over an exact 1-second window.
//! - [`lane`]: per-shard queues (read-ahead, retries, backoff).
//! - [`scan`]: one pass over the log serving every hungry shard from its own cursor.
//! - [`fresh`]: entries the writer admitted, for lanes that have read the whole log.
//! - [`kinesis`]: the Kinesis calls behind a trait, and the SDK implementation.
//! - [`forwarder`]: the loop that ties them together, and the delivery invariants.
//! - [`metrics`], [`error`].

pub mod bucket;
pub mod config;
pub mod error;
pub mod forwarder;
pub mod fresh;
pub mod id_set;
pub mod kinesis;
pub mod lane;
pub mod metrics;
pub mod record;
pub mod scan;
pub mod shard_map;

pub use config::{ForwardConfig, LiveLimits, RecordFormat, StreamRef, ValidForwardConfig};
pub use error::{ApiError, ApiErrorKind, StartError};
pub use forwarder::{run, start};
pub use kinesis::{KinesisApi, PutResult, SdkKinesis};
pub use metrics::{ForwardHealth, ForwardMetrics, ShardHealth};
pub use record::OutRecord;
pub use shard_map::{ShardMap, hash_key};
