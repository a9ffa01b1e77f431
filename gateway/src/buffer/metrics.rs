//! The buffer's counters, all named `gateway_buffer_*` (see README "Metrics").

use crate::telemetry::devices::DeviceActivity;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// Buffer metrics. Cheap to clone (shared handles).
#[derive(Debug, Clone)]
pub struct BufferMetrics {
    /// Readings newly stored.
    pub readings_stored: Counter,
    /// Readings received again after they were stored (dropped).
    pub duplicate_readings: Counter,
    /// Batches ignored because they started beyond the next expected sequence number.
    pub out_of_order_batches: Counter,
    /// Readings the devices gave up on before the gateway received them (sequence gaps).
    pub readings_lost_at_device: Counter,
    /// Batches from an older boot than the current one (ignored, see `sequencer`).
    pub stale_boot_batches: Counter,
    /// Batches whose boot is too far ahead of the current one (ignored, see `sequencer`).
    pub boot_jump_batches: Counter,
    /// Batches whose `held_from` skips too far ahead (ignored, see `sequencer`).
    pub held_from_jump_batches: Counter,
    /// Unusual claims (boot, `held_from`) adopted after enough batches in a row made them.
    pub claims_confirmed: Counter,
    /// Readings not stored because the buffer was full under `reject-new` (not acked).
    pub readings_rejected_full: Counter,
    /// Readings refused because their device held more than its fair share of a buffer past
    /// `fair_share_above` (not acked: the device keeps them).
    pub readings_refused_quota: Counter,
    /// Readings evicted under `drop-oldest` (data loss).
    pub readings_evicted: Counter,
    /// Readings removed by the retention limit (data loss with `retention_action = "drop"`).
    pub readings_expired: Counter,
    /// Readings deleted after delivery (Kinesis or export).
    pub readings_delivered: Counter,
    /// Readings currently buffered.
    pub buffered_readings: Gauge,
    /// Record bytes currently buffered.
    pub buffered_bytes: Gauge,
    /// Age of the oldest buffered reading (by arrival), seconds.
    pub oldest_age_seconds: Gauge<f64, AtomicU64>,
    /// Delivered log entries whose delete waits for the next checkpoint (still counted in
    /// `buffered_readings`; see `buffer.delete_delay_ms`).
    pub delete_held_entries: Gauge,
    /// Successful commits.
    pub commits: Counter,
    /// Failed commits (nothing of the group was acked).
    pub commit_failures: Counter,
    /// Commit duration, seconds.
    pub commit_seconds: Histogram,
    /// Readings per commit.
    pub commit_readings: Histogram,
    /// Acks handed to ingest for publishing.
    pub acks: Counter,
    /// 1 while commits succeed, 0 while the disk refuses writes.
    pub writable: Gauge,
    /// The device table, told after each commit how many readings each device had stored
    /// (`/health?devices`); none outside the running gateway.
    pub devices: Option<Arc<DeviceActivity>>,
}

impl BufferMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            readings_stored: Counter::default(),
            duplicate_readings: Counter::default(),
            out_of_order_batches: Counter::default(),
            readings_lost_at_device: Counter::default(),
            stale_boot_batches: Counter::default(),
            boot_jump_batches: Counter::default(),
            held_from_jump_batches: Counter::default(),
            claims_confirmed: Counter::default(),
            readings_rejected_full: Counter::default(),
            readings_refused_quota: Counter::default(),
            readings_evicted: Counter::default(),
            readings_expired: Counter::default(),
            readings_delivered: Counter::default(),
            buffered_readings: Gauge::default(),
            buffered_bytes: Gauge::default(),
            oldest_age_seconds: Gauge::default(),
            delete_held_entries: Gauge::default(),
            commits: Counter::default(),
            commit_failures: Counter::default(),
            commit_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            commit_readings: Histogram::new(exponential_buckets(1.0, 2.0, 18)),
            acks: Counter::default(),
            writable: Gauge::default(),
            devices: None,
        };
        let r = registry.sub_registry_with_prefix("gateway_buffer");
        r.register(
            "readings_stored",
            "Readings newly stored",
            m.readings_stored.clone(),
        );
        r.register(
            "duplicate_readings",
            "Readings received again after being stored",
            m.duplicate_readings.clone(),
        );
        r.register(
            "out_of_order_batches",
            "Batches ignored because they start past a sequence gap",
            m.out_of_order_batches.clone(),
        );
        r.register(
            "readings_lost_at_device",
            "Readings devices dropped before the gateway got them",
            m.readings_lost_at_device.clone(),
        );
        r.register(
            "stale_boot_batches",
            "Batches from an older boot than the current one",
            m.stale_boot_batches.clone(),
        );
        r.register(
            "boot_jump_batches",
            "Batches whose boot is too far ahead of the current one",
            m.boot_jump_batches.clone(),
        );
        r.register(
            "held_from_jump_batches",
            "Batches whose held_from skips too far ahead of what the gateway has",
            m.held_from_jump_batches.clone(),
        );
        r.register(
            "claims_confirmed",
            "Unusual boot or held_from claims adopted after enough batches in a row made them",
            m.claims_confirmed.clone(),
        );
        r.register(
            "readings_rejected_full",
            "Readings not stored because the buffer is full (reject-new)",
            m.readings_rejected_full.clone(),
        );
        r.register(
            "readings_refused_quota",
            "Readings refused because their device held more than its fair share of the buffer",
            m.readings_refused_quota.clone(),
        );
        r.register(
            "readings_evicted",
            "Readings evicted because the buffer is full (drop-oldest)",
            m.readings_evicted.clone(),
        );
        r.register(
            "readings_expired",
            "Readings removed by the retention limit",
            m.readings_expired.clone(),
        );
        r.register(
            "readings_delivered",
            "Readings deleted after delivery",
            m.readings_delivered.clone(),
        );
        r.register(
            "buffered_readings",
            "Readings buffered",
            m.buffered_readings.clone(),
        );
        r.register(
            "buffered_bytes",
            "Record bytes buffered",
            m.buffered_bytes.clone(),
        );
        r.register(
            "oldest_age_seconds",
            "Age of the oldest buffered reading",
            m.oldest_age_seconds.clone(),
        );
        r.register(
            "delete_held_entries",
            "Delivered log entries whose delete waits for the next checkpoint",
            m.delete_held_entries.clone(),
        );
        r.register("commits", "Successful commits", m.commits.clone());
        r.register(
            "commit_failures",
            "Failed commits",
            m.commit_failures.clone(),
        );
        r.register(
            "commit_seconds",
            "Commit duration",
            m.commit_seconds.clone(),
        );
        r.register(
            "commit_readings",
            "Readings per commit",
            m.commit_readings.clone(),
        );
        r.register("acks", "Durable acks handed to ingest", m.acks.clone());
        r.register("writable", "1 while commits succeed", m.writable.clone());
        m
    }
}
