//! The forwarder's metrics, all named `gateway_forward_*` (see README "Metrics"), and the
//! summary `/health` and `gateway status` show.
//!
//! Per-shard series carry the label `shard_id`: the shard Kinesis reported for accepted
//! records, the shard the forwarder predicted for the rest.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Label of per-shard series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabel {
    /// The Kinesis `ShardId`.
    pub shard_id: String,
}

/// Label of request failures.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// A stable failure kind (see `ApiErrorKind::label`).
    pub kind: &'static str,
}

/// What health needs beyond counters.
#[derive(Debug, Default)]
struct Status {
    stream: String,
    shards: BTreeSet<String>,
    failing_since: Option<Instant>,
    last_error: Option<String>,
    unhealthy_after_secs: f64,
}

/// Forwarder metrics. Cheap to clone (shared handles).
#[derive(Debug, Clone)]
pub struct ForwardMetrics {
    /// Kinesis records accepted.
    pub records_sent: Family<ShardLabel, Counter>,
    /// Readings in accepted records.
    pub readings_sent: Family<ShardLabel, Counter>,
    /// Bytes (partition key + data) of accepted records.
    pub bytes_sent: Family<ShardLabel, Counter>,
    /// Records refused with `ProvisionedThroughputExceededException`.
    pub throttled_records: Family<ShardLabel, Counter>,
    /// Records sent again after any failure (throttle, record error, failed request).
    pub retried_records: Family<ShardLabel, Counter>,
    /// Records in requests awaiting an answer.
    pub in_flight_records: Family<ShardLabel, Gauge>,
    /// Age of the oldest reading not yet accepted, by its arrival at the gateway.
    pub lag_seconds: Family<ShardLabel, Gauge<f64, AtomicU64>>,
    /// Log-entry bytes read ahead and waiting per shard.
    pub queued_bytes: Family<ShardLabel, Gauge>,
    /// PutRecords/ListShards calls that failed as a whole, by kind.
    pub request_failures: Family<KindLabel, Counter>,
    /// Accepted records whose shard differed from the prediction (stale shard map).
    pub shard_mispredictions: Counter,
    /// User records of aggregates that landed on a shard not owning their hash key, sent
    /// again (KCL drops them where they landed).
    pub misplaced_user_records: Counter,
    /// Shard map changes applied.
    pub shard_map_changes: Counter,
    /// Open shards in the current map.
    pub open_shards: Gauge,
    /// 1 while Kinesis answers, 0 while calls fail as a whole.
    pub up: Gauge,
    /// PutRecords call duration.
    pub put_seconds: Histogram,
    /// Buffer entries that do not decode (skipped, left in the buffer).
    pub corrupt_entries: Counter,
    /// Buffer entries taken as the writer admitted them, ahead of their commit (the rest were
    /// read from the log).
    pub fresh_entries: Counter,
    status: Arc<Mutex<Status>>,
}

/// One shard in the health report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardHealth {
    /// `ShardId`.
    pub shard_id: String,
    /// Records accepted since start.
    pub records_sent: u64,
    /// Bytes accepted since start.
    pub bytes_sent: u64,
    /// Throttled records since start.
    pub throttled: u64,
    /// Records resent since start.
    pub retried: u64,
    /// Records in flight.
    pub in_flight: i64,
    /// Oldest undelivered reading's age, seconds.
    pub lag_seconds: f64,
}

/// The forwarder part of `/health`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ForwardHealth {
    /// Stream name or ARN.
    pub stream: String,
    /// False while calls to Kinesis fail as a whole.
    pub reachable: bool,
    /// How long calls have been failing, seconds (0 when reachable).
    pub failing_for_seconds: f64,
    /// The last failure, if calls are failing.
    pub last_error: Option<String>,
    /// Open shards in the map.
    pub open_shards: i64,
    /// Per shard, in `ShardId` order.
    pub shards: Vec<ShardHealth>,
}

impl ForwardMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            records_sent: Family::default(),
            readings_sent: Family::default(),
            bytes_sent: Family::default(),
            throttled_records: Family::default(),
            retried_records: Family::default(),
            in_flight_records: Family::default(),
            lag_seconds: Family::default(),
            queued_bytes: Family::default(),
            request_failures: Family::default(),
            shard_mispredictions: Counter::default(),
            misplaced_user_records: Counter::default(),
            shard_map_changes: Counter::default(),
            open_shards: Gauge::default(),
            up: Gauge::default(),
            put_seconds: Histogram::new(exponential_buckets(0.002, 2.0, 14)),
            corrupt_entries: Counter::default(),
            fresh_entries: Counter::default(),
            status: Arc::default(),
        };
        let r = registry.sub_registry_with_prefix("gateway_forward");
        r.register(
            "records_sent",
            "Kinesis records accepted, by shard",
            m.records_sent.clone(),
        );
        r.register(
            "readings_sent",
            "Readings in accepted records, by shard",
            m.readings_sent.clone(),
        );
        r.register(
            "bytes_sent",
            "Partition key + data bytes accepted, by shard",
            m.bytes_sent.clone(),
        );
        r.register(
            "throttled_records",
            "Records refused with ProvisionedThroughputExceeded, by shard",
            m.throttled_records.clone(),
        );
        r.register(
            "retried_records",
            "Records sent again after a failure, by shard",
            m.retried_records.clone(),
        );
        r.register(
            "in_flight_records",
            "Records awaiting an answer, by shard",
            m.in_flight_records.clone(),
        );
        r.register(
            "lag_seconds",
            "Age of the oldest reading not yet accepted, by shard",
            m.lag_seconds.clone(),
        );
        r.register(
            "queued_bytes",
            "Buffer bytes read ahead and waiting, by shard",
            m.queued_bytes.clone(),
        );
        r.register(
            "request_failures",
            "Kinesis calls that failed as a whole, by kind",
            m.request_failures.clone(),
        );
        r.register(
            "shard_mispredictions",
            "Accepted records that landed in another shard than predicted",
            m.shard_mispredictions.clone(),
        );
        r.register(
            "misplaced_user_records",
            "Parts of aggregates that landed on a shard not owning their hash key, sent again",
            m.misplaced_user_records.clone(),
        );
        r.register(
            "shard_map_changes",
            "Shard map changes applied",
            m.shard_map_changes.clone(),
        );
        r.register(
            "open_shards",
            "Open shards in the map",
            m.open_shards.clone(),
        );
        r.register("up", "1 while Kinesis answers", m.up.clone());
        r.register(
            "put_seconds",
            "PutRecords call duration",
            m.put_seconds.clone(),
        );
        r.register(
            "corrupt_entries",
            "Buffer entries that do not decode (left in the buffer)",
            m.corrupt_entries.clone(),
        );
        r.register(
            "fresh_entries",
            "Buffer entries taken as the writer admitted them, ahead of their commit",
            m.fresh_entries.clone(),
        );
        m
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Names the stream and the health threshold (called once at start).
    pub fn set_stream(&self, stream: &str, unhealthy_after_secs: f64) {
        let mut s = self.status();
        s.stream = stream.to_owned();
        s.unhealthy_after_secs = unhealthy_after_secs;
    }

    /// The label of `shard_id`, remembering the shard for health.
    pub fn shard(&self, shard_id: &str) -> ShardLabel {
        let mut s = self.status();
        if !s.shards.contains(shard_id) {
            s.shards.insert(shard_id.to_owned());
        }
        ShardLabel {
            shard_id: shard_id.to_owned(),
        }
    }

    /// A call succeeded.
    pub fn reached(&self) {
        self.up.set(1);
        let mut s = self.status();
        s.failing_since = None;
        s.last_error = None;
    }

    /// A call failed as a whole.
    pub fn failed(&self, kind: &'static str, error: &str) {
        self.up.set(0);
        self.request_failures
            .get_or_create(&KindLabel { kind })
            .inc();
        let mut s = self.status();
        s.failing_since.get_or_insert_with(Instant::now);
        s.last_error = Some(error.to_owned());
    }

    /// How long calls have been failing.
    pub fn failing_for(&self) -> Option<std::time::Duration> {
        self.status().failing_since.map(|t| t.elapsed())
    }

    /// The report and, when Kinesis has been failing too long, the problem to show.
    pub fn health(&self) -> (ForwardHealth, Option<String>) {
        let s = self.status();
        let failing = s.failing_since.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let shards = s
            .shards
            .iter()
            .map(|id| {
                let l = ShardLabel {
                    shard_id: id.clone(),
                };
                ShardHealth {
                    shard_id: id.clone(),
                    records_sent: self.records_sent.get_or_create(&l).get(),
                    bytes_sent: self.bytes_sent.get_or_create(&l).get(),
                    throttled: self.throttled_records.get_or_create(&l).get(),
                    retried: self.retried_records.get_or_create(&l).get(),
                    in_flight: self.in_flight_records.get_or_create(&l).get(),
                    lag_seconds: self.lag_seconds.get_or_create(&l).get(),
                }
            })
            .collect();
        let problem = (s.failing_since.is_some() && failing >= s.unhealthy_after_secs).then(|| {
            format!(
                "kinesis stream {} failing for {failing:.0} s ({}): readings stay buffered and are sent when it answers again",
                s.stream,
                s.last_error.as_deref().unwrap_or("unknown error")
            )
        });
        (
            ForwardHealth {
                stream: s.stream.clone(),
                reachable: s.failing_since.is_none(),
                failing_for_seconds: failing,
                last_error: s.last_error.clone(),
                open_shards: self.open_shards.get(),
                shards,
            },
            problem,
        )
    }
}
