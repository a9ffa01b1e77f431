//! The awsJson1_1 operations: ListShards, DescribeStreamSummary, PutRecords, PutRecord.
//! Requests are checked against Kinesis' limits (a violation is counted in
//! `EmulatorStats::invalid_requests` and refused like Kinesis would).

use super::state::{Outcome, State};
use serde_json::{Value, json};
use std::time::Instant;

/// Largest data + key of one record.
const MAX_RECORD_BYTES: usize = 1 << 20;
/// PutRecords limits.
const MAX_REQUEST_RECORDS: usize = 500;
const MAX_REQUEST_BYTES: usize = 5 << 20;

/// An HTTP answer: status and JSON body.
pub(crate) type Answer = (u16, Value);

fn error(status: u16, kind: &str, message: &str) -> Answer {
    (status, json!({ "__type": kind, "message": message }))
}

fn invalid(state: &mut State, message: &str) -> Answer {
    state.stats.invalid_requests += 1;
    error(400, "InvalidArgumentException", message)
}

/// The stream a request names (by `StreamName` or `StreamARN`).
fn stream_index(state: &State, body: &Value) -> Option<usize> {
    let name = body
        .get("StreamName")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            body.get("StreamARN")
                .and_then(Value::as_str)
                .and_then(|a| a.rsplit_once("stream/").map(|(_, n)| n.to_owned()))
        })?;
    state.streams.iter().position(|s| s.name == name)
}

fn not_found() -> Answer {
    error(400, "ResourceNotFoundException", "Stream not found")
}

/// Dispatches one call by its `X-Amz-Target`.
pub(crate) fn handle(state: &mut State, target: &str, body: &[u8]) -> Answer {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        state.stats.invalid_requests += 1;
        return error(400, "SerializationException", "body is not JSON");
    };
    match target.strip_prefix("Kinesis_20131202.") {
        Some("PutRecords") => put_records(state, &body),
        Some("PutRecord") => put_record(state, &body),
        Some("ListShards") => list_shards(state, &body),
        Some("DescribeStreamSummary") => describe_stream_summary(state, &body),
        _ => error(400, "UnknownOperationException", target),
    }
}

/// Parses one record entry; `Err` is the refusal.
fn record_entry(
    state: &mut State,
    entry: &Value,
) -> Result<(String, Option<u128>, Vec<u8>), Answer> {
    let key = entry
        .get("PartitionKey")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if key.is_empty() || key.chars().count() > 256 {
        return Err(invalid(state, "PartitionKey must be 1 to 256 characters"));
    }
    let data = entry
        .get("Data")
        .and_then(Value::as_str)
        .and_then(|d| aws_smithy_types::base64::decode(d).ok());
    let Some(data) = data else {
        return Err(invalid(state, "Data must be base64"));
    };
    if data.len() + key.len() > MAX_RECORD_BYTES {
        return Err(invalid(state, "record larger than 1 MiB"));
    }
    let explicit = match entry.get("ExplicitHashKey").and_then(Value::as_str) {
        None => None,
        Some(h) => match h.parse::<u128>() {
            Ok(h) => Some(h),
            Err(_) => return Err(invalid(state, "ExplicitHashKey is not a 128-bit decimal")),
        },
    };
    Ok((key.to_owned(), explicit, data))
}

fn put_records(state: &mut State, body: &Value) -> Answer {
    let Some(stream) = stream_index(state, body) else {
        return not_found();
    };
    let entries = body
        .get("Records")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if entries.is_empty() || entries.len() > MAX_REQUEST_RECORDS {
        return invalid(state, "Records must hold 1 to 500 records");
    }
    let mut parsed = Vec::with_capacity(entries.len());
    let mut total = 0;
    for e in &entries {
        match record_entry(state, e) {
            Ok(r) => {
                total += r.0.len() + r.2.len();
                parsed.push(r);
            }
            Err(answer) => return answer,
        }
    }
    if total > MAX_REQUEST_BYTES {
        return invalid(state, "request larger than 5 MiB");
    }
    state.stats.put_records_calls += 1;
    let now = Instant::now();
    let mut failed = 0;
    let results: Vec<Value> = parsed
        .into_iter()
        .map(|(key, explicit, data)| {
            let (outcome, shard, seq) = state.put(stream, &key, explicit, data, now);
            match outcome {
                Outcome::Accepted => json!({
                    "SequenceNumber": format!("{seq:056}"),
                    "ShardId": shard,
                }),
                Outcome::Throttled | Outcome::InjectedThrottle => {
                    failed += 1;
                    json!({
                        "ErrorCode": "ProvisionedThroughputExceededException",
                        "ErrorMessage": format!("Rate exceeded for shard {shard}"),
                    })
                }
            }
        })
        .collect();
    (
        200,
        json!({ "FailedRecordCount": failed, "Records": results, "EncryptionType": "NONE" }),
    )
}

fn put_record(state: &mut State, body: &Value) -> Answer {
    let Some(stream) = stream_index(state, body) else {
        return not_found();
    };
    let (key, explicit, data) = match record_entry(state, body) {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    state.stats.put_record_calls += 1;
    let (outcome, shard, seq) = state.put(stream, &key, explicit, data, Instant::now());
    match outcome {
        Outcome::Accepted => (
            200,
            json!({ "SequenceNumber": format!("{seq:056}"), "ShardId": shard, "EncryptionType": "NONE" }),
        ),
        _ => error(
            400,
            "ProvisionedThroughputExceededException",
            &format!("Rate exceeded for shard {shard}"),
        ),
    }
}

fn list_shards(state: &mut State, body: &Value) -> Answer {
    state.stats.list_shards_calls += 1;
    let page = state.settings.list_page_size.max(1);
    // NextToken: "<stream index>:<offset>:<open only>".
    let (stream, offset, open_only) = match body.get("NextToken").and_then(Value::as_str) {
        Some(token) => {
            if body.get("StreamName").is_some() || body.get("StreamARN").is_some() {
                return invalid(state, "NextToken cannot be combined with StreamName");
            }
            let parts: Vec<&str> = token.split(':').collect();
            match parts.as_slice() {
                [s, o, f] => match (s.parse::<usize>(), o.parse::<usize>()) {
                    (Ok(s), Ok(o)) if s < state.streams.len() => (s, o, *f == "1"),
                    _ => return invalid(state, "bad NextToken"),
                },
                _ => return invalid(state, "bad NextToken"),
            }
        }
        None => {
            let Some(s) = stream_index(state, body) else {
                return not_found();
            };
            let filter = body
                .get("ShardFilter")
                .and_then(|f| f.get("Type"))
                .and_then(Value::as_str);
            (s, 0, filter == Some("AT_LATEST"))
        }
    };
    let shards: Vec<Value> = state.streams[stream]
        .shards
        .iter()
        .filter(|s| !open_only || !s.info.closed)
        .map(|s| {
            let mut range = json!({ "StartingSequenceNumber": format!("{:056}", 0) });
            if let Some(end) = s.closing_seq {
                range["EndingSequenceNumber"] = json!(format!("{end:056}"));
            }
            let mut v = json!({
                "ShardId": s.info.shard_id,
                "HashKeyRange": {
                    "StartingHashKey": s.info.start.to_string(),
                    "EndingHashKey": s.info.end.to_string(),
                },
                "SequenceNumberRange": range,
            });
            if let Some(p) = &s.info.parent {
                v["ParentShardId"] = json!(p);
            }
            v
        })
        .collect();
    let end = (offset + page).min(shards.len());
    let mut out = json!({ "Shards": shards.get(offset..end).unwrap_or_default() });
    if end < shards.len() {
        out["NextToken"] = json!(format!("{stream}:{end}:{}", u8::from(open_only)));
    }
    (200, out)
}

fn describe_stream_summary(state: &mut State, body: &Value) -> Answer {
    let Some(i) = stream_index(state, body) else {
        return not_found();
    };
    let s = &state.streams[i];
    let open = s.shards.iter().filter(|x| !x.info.closed).count();
    (
        200,
        json!({ "StreamDescriptionSummary": {
            "StreamName": s.name,
            "StreamARN": format!("arn:aws:kinesis:us-east-1:000000000000:stream/{}", s.name),
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": { "StreamMode": "PROVISIONED" },
            "RetentionPeriodHours": 24,
            "StreamCreationTimestamp": s.created_unix,
            "EnhancedMonitoring": [ { "ShardLevelMetrics": [] } ],
            "EncryptionType": "NONE",
            "OpenShardCount": open,
            "ConsumerCount": 0,
        }}),
    )
}
