//! Forwarder settings (`[forward]` in the config file), validated into [`ValidForwardConfig`].
//!
//! Limits are clamped to what Kinesis allows (a warning names the key); values that make no
//! sense (zero, both or neither of stream name and ARN, a malformed ARN) stop the start.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Kinesis write limits per shard (provisioned and on-demand streams alike).
pub const KINESIS_RECORDS_PER_SEC: u32 = 1000;
/// Bytes per second per shard (partition key + data).
pub const KINESIS_BYTES_PER_SEC: u64 = 1 << 20;
/// Records per PutRecords request.
pub const KINESIS_MAX_REQUEST_RECORDS: usize = 500;
/// Bytes per PutRecords request (partition keys included).
pub const KINESIS_MAX_REQUEST_BYTES: u64 = 5 << 20;
/// Default largest record (data + key) a stream takes.
pub const KINESIS_DEFAULT_MAX_RECORD_BYTES: u64 = 1 << 20;
/// Largest record a stream can be configured to take.
pub const KINESIS_MAX_RECORD_BYTES: u64 = 10 << 20;

/// Smallest coalescing cap for a format: the largest possible log entry (128 readings,
/// 64-character device ID, widest numbers) must fit in one record, since entries are never
/// split.
pub fn min_record_bytes(format: RecordFormat) -> u64 {
    match format {
        RecordFormat::Cbor => 4 << 10,
        // The aggregate's framing, key table and per-record protobuf overhead on top.
        RecordFormat::KplCbor => 5 << 10,
        RecordFormat::Json => 48 << 10,
        RecordFormat::KplJson => 52 << 10,
    }
}

/// How a Kinesis record's data is encoded (see [`crate::formats`] and [`super::record`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordFormat {
    /// KPL aggregates of CBOR user records, one per device batch (the default: the fewest
    /// Kinesis records per reading, de-aggregated by KCL, aws-kinesis-agg and Firehose).
    KplCbor,
    /// KPL aggregates of JSON user records, one per reading (Firehose → S3/Athena).
    KplJson,
    /// Compact CBOR: one device's batches per record (consumers that cannot de-aggregate).
    Cbor,
    /// Newline-delimited JSON: one device's readings per record, one object per reading.
    Json,
}

impl RecordFormat {
    /// Many devices per record (KPL aggregation).
    pub fn aggregated(self) -> bool {
        matches!(self, Self::KplCbor | Self::KplJson)
    }
}

/// `[forward]` as written in the file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    /// Forward to Kinesis at all (false: buffer only, no cloud account needed).
    pub enabled: bool,
    /// Stream name (exactly one of `stream_name` and `stream_arn`).
    pub stream_name: Option<String>,
    /// Stream ARN; its region is used when `region` is not set.
    pub stream_arn: Option<String>,
    /// AWS region; default: the standard chain (`AWS_REGION`, profile, ...).
    pub region: Option<String>,
    /// Endpoint override; default: `AWS_ENDPOINT_URL(_KINESIS)` or the public endpoint.
    pub endpoint_url: Option<String>,
    /// Record data format.
    pub record_format: RecordFormat,
    /// Largest record the forwarder builds when coalescing a device's log entries, or
    /// aggregating many devices' (data + key). Larger records mean fewer records per second
    /// (the 1,000/s/shard limit).
    pub max_record_bytes: u64,
    /// Aggregated formats: a shard's requests leave at least this far apart, so each carries
    /// everything that arrived meanwhile (at most 1000 / this requests per second, each one
    /// record when online). 0 = as soon as anything waits.
    pub aggregate_interval_ms: u64,
    /// The stream's record size limit (1 MiB unless the stream was configured larger).
    pub stream_max_record_bytes: u64,
    /// Share of each shard's limits the forwarder uses, percent (5..=100).
    pub limit_percent: u32,
    /// Records per second per shard (at most 1000).
    pub shard_records_per_sec: u32,
    /// Bytes per second per shard, key + data (at most 1048576).
    pub shard_bytes_per_sec: u64,
    /// Largest PutRecords request per shard (at most 5 MiB). Smaller requests return their
    /// share of the shard's window sooner (see `bucket.rs`), so a shard with a backlog runs
    /// closer to its limit; each request costs a signature and a round trip.
    pub max_request_bytes: u64,
    /// PutRecords requests in flight per shard.
    pub max_in_flight_per_shard: usize,
    /// Log-entry bytes read ahead per shard (memory bound of the per-shard queues).
    pub queue_bytes_per_shard: u64,
    /// How often the shard map is refreshed even without a hint.
    pub shard_refresh_secs: u64,
    /// How often delivered entries are deleted from the buffer (one commit each).
    pub delete_interval_ms: u64,
    /// How often the buffer is checked for new entries when the forwarder is idle.
    pub poll_interval_ms: u64,
    /// TCP/TLS connect timeout.
    pub connect_timeout_ms: u64,
    /// Timeout of one HTTP attempt.
    pub attempt_timeout_ms: u64,
    /// Timeout of one call (the SDK does not retry: the forwarder retries per record).
    pub operation_timeout_ms: u64,
    /// First backoff after a failed request; doubles up to `retry_max_ms` (jittered: half
    /// to all of the step).
    pub retry_min_ms: u64,
    /// Longest backoff.
    pub retry_max_ms: u64,
    /// Health turns `degraded` after Kinesis has been failing this long.
    pub unhealthy_after_secs: u64,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            stream_name: None,
            stream_arn: None,
            region: None,
            endpoint_url: None,
            record_format: RecordFormat::KplCbor,
            max_record_bytes: 64 << 10,
            aggregate_interval_ms: 25,
            stream_max_record_bytes: KINESIS_DEFAULT_MAX_RECORD_BYTES,
            limit_percent: 100,
            shard_records_per_sec: KINESIS_RECORDS_PER_SEC,
            shard_bytes_per_sec: KINESIS_BYTES_PER_SEC,
            max_request_bytes: 256 << 10,
            max_in_flight_per_shard: 4,
            queue_bytes_per_shard: 2 << 20,
            shard_refresh_secs: 60,
            delete_interval_ms: 250,
            poll_interval_ms: 20,
            connect_timeout_ms: 5_000,
            attempt_timeout_ms: 20_000,
            operation_timeout_ms: 25_000,
            retry_min_ms: 100,
            retry_max_ms: 10_000,
            unhealthy_after_secs: 10,
        }
    }
}

/// Which stream, by name or ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRef {
    /// `StreamName`.
    Name(String),
    /// `StreamARN`.
    Arn(String),
}

impl std::fmt::Display for StreamRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Name(n) | Self::Arn(n) => f.write_str(n),
        }
    }
}

/// Effective per-shard limits (after `limit_percent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardLimits {
    /// Records per 1-second window.
    pub records: u32,
    /// Bytes (key + data) per 1-second window.
    pub bytes: u64,
}

/// The settings a running forwarder takes on reload (SIGHUP): the per-shard rate and
/// aggregation limits. Everything else in `[forward]` needs a restart (see `crate::reload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveLimits {
    /// Limits per shard and 1-second window (`limit_percent`, `shard_records_per_sec`,
    /// `shard_bytes_per_sec`).
    pub limits: ShardLimits,
    /// `aggregate_interval_ms`.
    pub aggregate_interval: Duration,
    /// `max_in_flight_per_shard`.
    pub max_in_flight_per_shard: usize,
}

/// The `[forward]` keys behind [`LiveLimits`], as the config file names them.
pub const LIVE_KEYS: [&str; 5] = [
    "limit_percent",
    "shard_records_per_sec",
    "shard_bytes_per_sec",
    "aggregate_interval_ms",
    "max_in_flight_per_shard",
];

impl ForwardConfig {
    /// Copies the [`LIVE_KEYS`] from `other`.
    pub fn take_live_keys(&mut self, other: &Self) {
        self.limit_percent = other.limit_percent;
        self.shard_records_per_sec = other.shard_records_per_sec;
        self.shard_bytes_per_sec = other.shard_bytes_per_sec;
        self.aggregate_interval_ms = other.aggregate_interval_ms;
        self.max_in_flight_per_shard = other.max_in_flight_per_shard;
    }
}

impl ValidForwardConfig {
    /// The settings a reload may change.
    pub fn live_limits(&self) -> LiveLimits {
        LiveLimits {
            limits: self.limits,
            aggregate_interval: self.aggregate_interval,
            max_in_flight_per_shard: self.max_in_flight_per_shard,
        }
    }

    /// Takes reloaded [`LiveLimits`].
    pub fn set_live_limits(&mut self, live: LiveLimits) {
        self.limits = live.limits;
        self.aggregate_interval = live.aggregate_interval;
        self.max_in_flight_per_shard = live.max_in_flight_per_shard;
    }
}

/// Checked forwarder settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidForwardConfig {
    /// The stream.
    pub stream: StreamRef,
    /// Region override (from `region` or the ARN).
    pub region: Option<String>,
    /// Endpoint override.
    pub endpoint_url: Option<String>,
    /// Record format.
    pub record_format: RecordFormat,
    /// Coalescing cap per record (data + key), within the stream limit and the shard window.
    pub max_record_bytes: u64,
    /// Aggregated formats: least time between a shard's requests.
    pub aggregate_interval: Duration,
    /// Limits per shard and 1-second window.
    pub limits: ShardLimits,
    /// Largest request per shard (key + data bytes).
    pub max_request_bytes: u64,
    /// Requests in flight per shard.
    pub max_in_flight_per_shard: usize,
    /// Read-ahead per shard.
    pub queue_bytes_per_shard: u64,
    /// Periodic shard map refresh.
    pub shard_refresh: Duration,
    /// Delete batching interval.
    pub delete_interval: Duration,
    /// Idle poll interval.
    pub poll_interval: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Attempt timeout.
    pub attempt_timeout: Duration,
    /// Operation timeout.
    pub operation_timeout: Duration,
    /// Backoff bounds.
    pub retry_min: Duration,
    /// Backoff bounds.
    pub retry_max: Duration,
    /// Failure time before health degrades.
    pub unhealthy_after: Duration,
}

fn valid_stream_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The region of `arn:aws[-partition]:kinesis:<region>:<account>:stream/<name>`.
fn arn_region(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "kinesis", region, account, resource]
            if partition.starts_with("aws")
                && !region.is_empty()
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && resource
                    .strip_prefix("stream/")
                    .is_some_and(valid_stream_name) =>
        {
            Some(region)
        }
        _ => None,
    }
}

/// Clamps `value` to `max`, warning with the key name.
fn clamp<T: PartialOrd + Copy + std::fmt::Display>(key: &str, value: T, max: T) -> T {
    if value > max {
        tracing::warn!(key, value = %value, max = %max, "Setting is above what Kinesis allows; using the maximum.");
        max
    } else {
        value
    }
}

impl ForwardConfig {
    /// Checks the settings; `Ok(None)` when forwarding is disabled.
    pub fn validate(&self) -> Result<Option<ValidForwardConfig>, String> {
        if !self.enabled {
            return Ok(None);
        }
        let stream = match (&self.stream_name, &self.stream_arn) {
            (Some(name), None) if valid_stream_name(name) => StreamRef::Name(name.clone()),
            (Some(name), None) => {
                return Err(format!(
                    "forward.stream_name {name:?} must be 1-128 characters of [A-Za-z0-9_.-]"
                ));
            }
            (None, Some(arn)) if arn_region(arn).is_some() => StreamRef::Arn(arn.clone()),
            (None, Some(arn)) => {
                return Err(format!(
                    "forward.stream_arn {arn:?} is not arn:aws:kinesis:<region>:<account>:stream/<name>"
                ));
            }
            _ => {
                return Err(
                    "forward.enabled needs exactly one of forward.stream_name and forward.stream_arn"
                        .into(),
                );
            }
        };
        let region = match (&self.region, &stream) {
            (Some(r), _) if r.is_empty() => return Err("forward.region must not be empty".into()),
            (Some(r), StreamRef::Arn(arn)) if arn_region(arn) != Some(r.as_str()) => {
                return Err(format!(
                    "forward.region {r:?} differs from the region in forward.stream_arn"
                ));
            }
            (Some(r), _) => Some(r.clone()),
            (None, StreamRef::Arn(arn)) => arn_region(arn).map(str::to_owned),
            (None, StreamRef::Name(_)) => None,
        };
        if let Some(url) = &self.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!(
                "forward.endpoint_url {url:?} must start with http:// or https://"
            ));
        }
        if !(5..=100).contains(&self.limit_percent) {
            return Err("forward.limit_percent must be between 5 and 100".into());
        }
        if self.shard_records_per_sec == 0 || self.shard_bytes_per_sec == 0 {
            return Err(
                "forward.shard_records_per_sec and forward.shard_bytes_per_sec must be positive"
                    .into(),
            );
        }
        let records = clamp(
            "forward.shard_records_per_sec",
            self.shard_records_per_sec,
            KINESIS_RECORDS_PER_SEC,
        );
        let bytes = clamp(
            "forward.shard_bytes_per_sec",
            self.shard_bytes_per_sec,
            KINESIS_BYTES_PER_SEC,
        );
        let limits = ShardLimits {
            records: (u64::from(records) * u64::from(self.limit_percent) / 100).max(1) as u32,
            bytes: bytes * u64::from(self.limit_percent) / 100,
        };
        let stream_max = clamp(
            "forward.stream_max_record_bytes",
            self.stream_max_record_bytes,
            KINESIS_MAX_RECORD_BYTES,
        );
        let max_request_bytes = clamp(
            "forward.max_request_bytes",
            self.max_request_bytes,
            KINESIS_MAX_REQUEST_BYTES,
        );
        // A record must fit in one request and one shard window, or it could never be sent.
        let max_record_bytes = self
            .max_record_bytes
            .min(stream_max)
            .min(limits.bytes)
            .min(max_request_bytes);
        let min = min_record_bytes(self.record_format);
        if max_record_bytes < min {
            return Err(format!(
                "forward.max_record_bytes (and max_request_bytes, and the shard byte limit after limit_percent) must be at least {min} for this record_format: one device batch must fit in one record"
            ));
        }
        if self.aggregate_interval_ms > 1_000 {
            return Err("forward.aggregate_interval_ms must be at most 1000".into());
        }
        if self.max_in_flight_per_shard == 0 || self.max_in_flight_per_shard > 16 {
            return Err("forward.max_in_flight_per_shard must be between 1 and 16".into());
        }
        if self.queue_bytes_per_shard < 64 << 10 {
            return Err("forward.queue_bytes_per_shard must be at least 65536".into());
        }
        let ms = Duration::from_millis;
        let positive = |key: &str, v: u64| {
            if v == 0 {
                Err(format!("forward.{key} must be positive"))
            } else {
                Ok(v)
            }
        };
        positive("shard_refresh_secs", self.shard_refresh_secs)?;
        positive("delete_interval_ms", self.delete_interval_ms)?;
        positive("poll_interval_ms", self.poll_interval_ms)?;
        positive("connect_timeout_ms", self.connect_timeout_ms)?;
        positive("attempt_timeout_ms", self.attempt_timeout_ms)?;
        positive("retry_min_ms", self.retry_min_ms)?;
        positive("unhealthy_after_secs", self.unhealthy_after_secs)?;
        if self.operation_timeout_ms < self.attempt_timeout_ms {
            return Err("forward.operation_timeout_ms must be at least attempt_timeout_ms".into());
        }
        if self.retry_max_ms < self.retry_min_ms {
            return Err("forward.retry_max_ms must be at least retry_min_ms".into());
        }
        Ok(Some(ValidForwardConfig {
            stream,
            region,
            endpoint_url: self.endpoint_url.clone(),
            record_format: self.record_format,
            max_record_bytes,
            aggregate_interval: ms(self.aggregate_interval_ms),
            limits,
            max_request_bytes,
            max_in_flight_per_shard: self.max_in_flight_per_shard,
            queue_bytes_per_shard: self.queue_bytes_per_shard,
            shard_refresh: Duration::from_secs(self.shard_refresh_secs),
            delete_interval: ms(self.delete_interval_ms),
            poll_interval: ms(self.poll_interval_ms),
            connect_timeout: ms(self.connect_timeout_ms),
            attempt_timeout: ms(self.attempt_timeout_ms),
            operation_timeout: ms(self.operation_timeout_ms),
            retry_min: ms(self.retry_min_ms),
            retry_max: ms(self.retry_max_ms),
            unhealthy_after: Duration::from_secs(self.unhealthy_after_secs),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> ForwardConfig {
        ForwardConfig {
            enabled: true,
            stream_name: Some("telemetry".into()),
            ..ForwardConfig::default()
        }
    }

    #[test]
    fn disabled_is_none_and_defaults_are_valid() {
        assert_eq!(ForwardConfig::default().validate(), Ok(None));
        let v = enabled().validate().expect("valid").expect("enabled");
        assert_eq!(
            v.limits,
            ShardLimits {
                records: 1000,
                bytes: 1 << 20
            }
        );
        assert_eq!(v.max_record_bytes, 64 << 10);
    }

    #[test]
    fn limits_are_clamped_and_scaled() {
        let c = ForwardConfig {
            shard_records_per_sec: 5000,
            shard_bytes_per_sec: 10 << 20,
            limit_percent: 50,
            max_record_bytes: 4 << 20,
            max_request_bytes: 10 << 20,
            ..enabled()
        };
        let v = c.validate().expect("valid").expect("enabled");
        assert_eq!(
            v.limits,
            ShardLimits {
                records: 500,
                bytes: 1 << 19
            }
        );
        // Capped by the stream limit and then by the shard window.
        assert_eq!(v.max_record_bytes, 1 << 19);
        assert_eq!(v.max_request_bytes, 5 << 20);
        // And by the request size.
        let small = ForwardConfig {
            max_request_bytes: 100_000,
            ..enabled()
        };
        let v = small.validate().expect("valid").expect("enabled");
        assert_eq!(v.max_record_bytes, 65_536);
        let smaller = ForwardConfig {
            max_request_bytes: 50_000,
            ..enabled()
        };
        assert_eq!(
            smaller
                .validate()
                .expect("valid")
                .expect("on")
                .max_record_bytes,
            50_000
        );
    }

    #[test]
    fn bad_settings_name_the_key() {
        let cases = [
            (
                ForwardConfig {
                    stream_name: None,
                    ..enabled()
                },
                "exactly one of",
            ),
            (
                ForwardConfig {
                    stream_arn: Some("arn:aws:kinesis:eu-west-1:123456789012:stream/x".into()),
                    ..enabled()
                },
                "exactly one of",
            ),
            (
                ForwardConfig {
                    stream_name: Some("bad name".into()),
                    ..enabled()
                },
                "stream_name",
            ),
            (
                ForwardConfig {
                    limit_percent: 0,
                    ..enabled()
                },
                "limit_percent",
            ),
            (
                ForwardConfig {
                    max_record_bytes: 1000,
                    ..enabled()
                },
                "max_record_bytes",
            ),
            (
                ForwardConfig {
                    record_format: RecordFormat::Json,
                    shard_bytes_per_sec: 20_000,
                    ..enabled()
                },
                "max_record_bytes",
            ),
            (
                ForwardConfig {
                    endpoint_url: Some("localhost:4566".into()),
                    ..enabled()
                },
                "endpoint_url",
            ),
            (
                ForwardConfig {
                    operation_timeout_ms: 10,
                    ..enabled()
                },
                "operation_timeout_ms",
            ),
        ];
        for (config, needle) in cases {
            let err = config.validate().expect_err(needle);
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn arn_gives_the_region() {
        let c = ForwardConfig {
            stream_name: None,
            stream_arn: Some("arn:aws:kinesis:eu-west-1:123456789012:stream/telemetry".into()),
            ..enabled()
        };
        let v = c.validate().expect("valid").expect("enabled");
        assert_eq!(v.region.as_deref(), Some("eu-west-1"));
        let bad = ForwardConfig {
            region: Some("us-east-1".into()),
            ..c.clone()
        };
        assert!(bad.validate().is_err());
        let malformed = ForwardConfig {
            stream_arn: Some("arn:aws:kinesis:eu-west-1:123:stream/telemetry".into()),
            ..c
        };
        assert!(malformed.validate().is_err());
    }
}
