//! KPL aggregated records, read with an independent protobuf implementation (prost), to
//! check the gateway's hand-written encoder from outside.

use crate::HarnessError;
use md5::{Digest, Md5};

/// `F3 89 9A C2`.
const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// `message AggregatedRecord` of the KPL.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AggregatedRecord {
    /// Partition keys, referred to by index.
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    /// Explicit hash keys, referred to by index.
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    /// The user records.
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<UserRecord>,
}

/// `message Record` of the KPL (proto2: the key index and the data are required).
#[derive(Clone, PartialEq, prost::Message)]
pub struct UserRecord {
    /// Index into `partition_key_table`.
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    /// Index into `explicit_hash_key_table`.
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    /// The user record's data.
    #[prost(bytes = "vec", required, tag = "3")]
    pub data: Vec<u8>,
}

/// A user record: partition key and data.
pub type User = (String, Vec<u8>);

/// The user records of a Kinesis record's data; `None` when the data is not an aggregate (no
/// magic), an error when it claims to be one but is damaged.
pub fn deaggregate(data: &[u8]) -> Result<Option<Vec<User>>, HarnessError> {
    if data.len() < MAGIC.len() + 16 || data[..4] != MAGIC {
        return Ok(None);
    }
    let bad = |what: String| HarnessError::InvalidResponse(format!("aggregate: {what}"));
    let protobuf = &data[4..data.len() - 16];
    if Md5::digest(protobuf).as_slice() != &data[data.len() - 16..] {
        return Err(bad("MD5 does not match".into()));
    }
    let agg =
        <AggregatedRecord as prost::Message>::decode(protobuf).map_err(|e| bad(e.to_string()))?;
    agg.records
        .into_iter()
        .map(|r| {
            let key = usize::try_from(r.partition_key_index)
                .ok()
                .and_then(|i| agg.partition_key_table.get(i))
                .ok_or_else(|| bad(format!("key index {}", r.partition_key_index)))?;
            Ok((key.clone(), r.data))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `(partition key, data)` of every user record in a Kinesis record: the user records of an
/// aggregate, or the record itself.
pub fn user_records(partition_key: &str, data: &[u8]) -> Result<Vec<User>, HarnessError> {
    Ok(deaggregate(data)?.unwrap_or_else(|| vec![(partition_key.to_owned(), data.to_vec())]))
}
