//! Reading a stream's shards within Kinesis' read limits: at most 5 GetRecords calls per
//! second per shard, a parent shard read to its end before its children (so each device's
//! readings come in order across a split or merge), children found when their parent closes.

use anyhow::Context as _;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::ShardIteratorType;
use std::time::Duration;
use tokio::sync::mpsc;

/// Least time between two GetRecords calls on one shard (Kinesis allows 5 per second).
pub const CALL_SPACING: Duration = Duration::from_millis(200);
/// Pause when a shard is caught up and returned nothing.
const IDLE_PAUSE: Duration = Duration::from_secs(1);

/// A shard as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// `ShardId`.
    pub id: String,
    /// Parents (split: one; merge: two).
    pub parents: Vec<String>,
    /// Its hash key range.
    pub range: std::ops::RangeInclusive<u128>,
    /// Closed (has an ending sequence number).
    pub closed: bool,
}

/// Every shard of `stream` still in the retention period, open and closed.
pub async fn list_shards(client: &Client, stream: &str) -> anyhow::Result<Vec<ShardInfo>> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let request = match token.take() {
            Some(t) => client.list_shards().next_token(t),
            None => client.list_shards().stream_name(stream),
        };
        let out = request
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_kinesis::error::DisplayErrorContext(e)))
            .with_context(|| format!("ListShards of {stream}"))?;
        for s in out.shards() {
            let range = s
                .hash_key_range()
                .and_then(|r| {
                    Some(r.starting_hash_key().parse().ok()?..=r.ending_hash_key().parse().ok()?)
                })
                .with_context(|| {
                    format!("shard {} has no readable hash key range", s.shard_id())
                })?;
            shards.push(ShardInfo {
                id: s.shard_id().to_owned(),
                parents: s
                    .parent_shard_id()
                    .into_iter()
                    .chain(s.adjacent_parent_shard_id())
                    .map(str::to_owned)
                    .collect(),
                range,
                closed: s
                    .sequence_number_range()
                    .and_then(|r| r.ending_sequence_number())
                    .is_some(),
            });
        }
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(shards),
        }
    }
}

/// Where a shard reader starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// The oldest record kept.
    TrimHorizon,
    /// Only what arrives from now on.
    Latest,
    /// The first record at or after this time.
    At(DateTime),
}

/// One record as read.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    /// Approximate arrival, Unix ms.
    pub arrival_ms: i64,
    /// Partition key.
    pub partition_key: String,
    /// Data.
    pub data: Vec<u8>,
}

/// What a reader reports.
#[derive(Debug)]
pub enum ShardEvent {
    /// Records from one call; `behind_ms` is MillisBehindLatest.
    Records {
        shard: String,
        records: Vec<ReadRecord>,
        behind_ms: i64,
    },
    /// The shard is closed and read to its end.
    Done { shard: String },
    /// The reader gave up (the error).
    Failed { shard: String, error: String },
}

async fn iterator(
    client: &Client,
    stream: &str,
    shard: &str,
    start: &Start,
    after: Option<&str>,
) -> Result<Option<String>, String> {
    let mut request = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard);
    request = match (after, start) {
        (Some(seq), _) => request
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .starting_sequence_number(seq),
        (None, Start::TrimHorizon) => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        (None, Start::Latest) => request.shard_iterator_type(ShardIteratorType::Latest),
        (None, Start::At(t)) => request
            .shard_iterator_type(ShardIteratorType::AtTimestamp)
            .timestamp(*t),
    };
    let out = request
        .send()
        .await
        .map_err(|e| aws_sdk_kinesis::error::DisplayErrorContext(e).to_string())?;
    Ok(out.shard_iterator().map(str::to_owned))
}

/// Reads `shard` from `start` until it is closed and read to its end (or forever while it
/// is open), reporting to `events`.
pub async fn read_shard(
    client: Client,
    stream: String,
    shard: String,
    start: Start,
    events: mpsc::UnboundedSender<ShardEvent>,
) {
    // An iterator, or `None` after reporting the shard done (no iterator: closed and read)
    // or failed.
    let open =
        async |after: Option<&str>| match iterator(&client, &stream, &shard, &start, after).await {
            Ok(Some(it)) => Some(it),
            Ok(None) => {
                let _ = events.send(ShardEvent::Done {
                    shard: shard.clone(),
                });
                None
            }
            Err(error) => {
                let _ = events.send(ShardEvent::Failed {
                    shard: shard.clone(),
                    error,
                });
                None
            }
        };
    let mut last_sequence: Option<String> = None;
    let Some(mut it) = open(None).await else {
        return;
    };
    let mut failures = 0u32;
    loop {
        let called = tokio::time::Instant::now();
        let result = client
            .get_records()
            .shard_iterator(&it)
            .limit(10_000)
            .send()
            .await;
        let out = match result {
            Ok(out) => {
                failures = 0;
                out
            }
            Err(e) => {
                let code = e.code().unwrap_or_default().to_owned();
                if code == "ExpiredIteratorException" {
                    match open(last_sequence.as_deref()).await {
                        Some(fresh) => it = fresh,
                        None => return,
                    }
                    continue;
                }
                failures += 1;
                if failures > 10 {
                    let _ = events.send(ShardEvent::Failed {
                        shard: shard.clone(),
                        error: aws_sdk_kinesis::error::DisplayErrorContext(e).to_string(),
                    });
                    return;
                }
                // Throttled or a passing failure: back off, then the same iterator again.
                tokio::time::sleep(IDLE_PAUSE * failures).await;
                continue;
            }
        };
        let records: Vec<ReadRecord> = out
            .records()
            .iter()
            .map(|r| ReadRecord {
                arrival_ms: r
                    .approximate_arrival_timestamp()
                    .and_then(|t| t.to_millis().ok())
                    .unwrap_or_default(),
                partition_key: r.partition_key().unwrap_or_default().to_owned(),
                data: r.data().as_ref().to_vec(),
            })
            .collect();
        if let Some(last) = out.records().last() {
            last_sequence = Some(last.sequence_number().to_owned());
        }
        let empty = records.is_empty();
        let behind_ms = out.millis_behind_latest().unwrap_or(0);
        let _ = events.send(ShardEvent::Records {
            shard: shard.clone(),
            records,
            behind_ms,
        });
        match out.next_shard_iterator() {
            Some(next) => it = next.to_owned(),
            None => {
                let _ = events.send(ShardEvent::Done { shard });
                return;
            }
        }
        let pause = if empty && behind_ms == 0 {
            IDLE_PAUSE
        } else {
            CALL_SPACING
        };
        tokio::time::sleep_until(called + pause).await;
    }
}
