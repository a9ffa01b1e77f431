//! Reading a stream back: shards and every record in them.

use std::ops::RangeInclusive;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::{Shard, ShardIteratorType};

use crate::HarnessError;

/// Upper bound on GetRecords calls per shard in [`read_all_records`]; reaching it means the
/// shard never reported being caught up, which is a bug (in the mock or here), not a big shard.
const MAX_GET_RECORDS_CALLS: usize = 10_000;
/// Records per GetRecords call (the API maximum).
const GET_RECORDS_LIMIT: i32 = 10_000;

/// One record as read back from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// The shard it was read from.
    pub shard_id: String,
    /// Its partition key.
    pub partition_key: String,
    /// Its data blob.
    pub data: Vec<u8>,
    /// Its sequence number (unique within the shard, increasing in write order).
    pub sequence_number: String,
}

/// Every shard of `stream` (open and closed), following `NextToken` until the list ends.
pub async fn list_shards(client: &Client, stream: &str) -> Result<Vec<Shard>, HarnessError> {
    let mut shards = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        // The API rejects StreamName together with NextToken: the token alone names the stream.
        let request = match next_token.take() {
            None => client.list_shards().stream_name(stream),
            Some(token) => client.list_shards().next_token(token),
        };
        let out = request
            .send()
            .await
            .map_err(|e| HarnessError::kinesis("ListShards", e))?;
        shards.extend_from_slice(out.shards());
        match out.next_token() {
            Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
            _ => return Ok(shards),
        }
    }
}

/// The hash keys `shard` owns: `StartingHashKey..=EndingHashKey` parsed from their decimal
/// strings. A record belongs to the open shard whose range holds MD5(partition key) read as a
/// big-endian `u128` (or its ExplicitHashKey).
pub fn hash_key_range(shard: &Shard) -> Result<RangeInclusive<u128>, HarnessError> {
    let range = shard.hash_key_range().ok_or_else(|| {
        HarnessError::InvalidResponse(format!("shard {} has no HashKeyRange", shard.shard_id()))
    })?;
    let parse = |text: &str| {
        text.parse::<u128>().map_err(|e| {
            HarnessError::InvalidResponse(format!(
                "shard {}: hash key {text:?} is not a u128: {e}",
                shard.shard_id()
            ))
        })
    };
    Ok(parse(range.starting_hash_key())?..=parse(range.ending_hash_key())?)
}

/// Reads every record of `stream`: all shards from `ListShards`, each from TRIM_HORIZON with
/// GetRecords until it is caught up (an empty answer with `MillisBehindLatest` 0) or closed and
/// drained (no next iterator). Records come grouped by shard in `ListShards` order, in sequence
/// order within a shard. Meant for the small volumes tests write (no read throttling).
pub async fn read_all_records(
    client: &Client,
    stream: &str,
) -> Result<Vec<StreamRecord>, HarnessError> {
    let mut records = Vec::new();
    for shard in list_shards(client, stream).await? {
        read_shard(client, stream, shard.shard_id(), &mut records).await?;
    }
    Ok(records)
}

/// Appends every record of one shard to `records`.
async fn read_shard(
    client: &Client,
    stream: &str,
    shard_id: &str,
    records: &mut Vec<StreamRecord>,
) -> Result<(), HarnessError> {
    let mut iterator = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard_id)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .map_err(|e| HarnessError::kinesis("GetShardIterator", e))?
        .shard_iterator()
        .map(str::to_owned)
        .ok_or_else(|| {
            HarnessError::InvalidResponse(format!("no shard iterator for shard {shard_id}"))
        })?;
    for _ in 0..MAX_GET_RECORDS_CALLS {
        let out = client
            .get_records()
            .shard_iterator(&iterator)
            .limit(GET_RECORDS_LIMIT)
            .send()
            .await
            .map_err(|e| HarnessError::kinesis("GetRecords", e))?;
        for record in out.records() {
            let partition_key = record.partition_key().ok_or_else(|| {
                HarnessError::InvalidResponse(format!(
                    "record {} in shard {shard_id} has no partition key",
                    record.sequence_number()
                ))
            })?;
            records.push(StreamRecord {
                shard_id: shard_id.to_owned(),
                partition_key: partition_key.to_owned(),
                data: record.data().as_ref().to_vec(),
                sequence_number: record.sequence_number().to_owned(),
            });
        }
        let caught_up = out.records().is_empty() && out.millis_behind_latest().unwrap_or(0) == 0;
        match out.next_shard_iterator() {
            // A closed shard that has been read to its end.
            None => return Ok(()),
            Some(_) if caught_up => return Ok(()),
            Some(next) => iterator = next.to_owned(),
        }
    }
    Err(HarnessError::InvalidResponse(format!(
        "shard {shard_id} of {stream} was not caught up after {MAX_GET_RECORDS_CALLS} GetRecords calls"
    )))
}
