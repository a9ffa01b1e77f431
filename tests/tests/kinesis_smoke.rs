//! Smoke test of the harness and of kinesis-local's Kinesis semantics the gateway relies on:
//! PutRecords lands every record exactly once, in the shard whose HashKeyRange holds
//! MD5(partition key) read as a big-endian u128.
// Tests report failures by panicking; the workspace warns on expect/panic for library code.
#![allow(clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use e2e::{KinesisLocal, hash_key_range, list_shards, read_all_records};
use md5::{Digest, Md5};

const STREAM: &str = "smoke";
const RECORDS: usize = 50;

/// The Kinesis hash key of a partition key: MD5 of its UTF-8 bytes as a big-endian u128.
fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// A mix of partition keys: repeated device ids, non-ASCII, the 1- and 256-character limits.
fn partition_key(i: usize) -> String {
    match i % 5 {
        0 => format!("device-{:04}", i % 7),
        1 => format!("Gerät-ü-{i}"),
        2 => "k".to_owned(),
        3 => format!("{i}").repeat(256).chars().take(256).collect(),
        _ => format!("sensor/{i}/temperature"),
    }
}

#[tokio::test]
async fn put_records_land_once_in_the_md5_shard() {
    let mock = KinesisLocal::start(&[(STREAM, 2)])
        .await
        .expect("kinesis-local should start with a 2-shard stream");
    let client = mock.client();

    let shards = list_shards(&client, STREAM)
        .await
        .expect("ListShards should succeed");
    assert_eq!(shards.len(), 2, "the stream was created with 2 shards");
    let ranges: Vec<(String, std::ops::RangeInclusive<u128>)> = shards
        .iter()
        .map(|s| {
            let range = hash_key_range(s).expect("shards should have a hash key range");
            (s.shard_id().to_owned(), range)
        })
        .collect();
    let predicted_shard = |key: &str| -> String {
        let hash = hash_key(key);
        let owners: Vec<&String> = ranges
            .iter()
            .filter(|(_, range)| range.contains(&hash))
            .map(|(id, _)| id)
            .collect();
        assert_eq!(
            owners.len(),
            1,
            "exactly one open shard must own hash {hash}"
        );
        owners[0].clone()
    };

    // Each record's data is unique, so read-back records can be matched to what was sent.
    let sent: Vec<(String, Vec<u8>)> = (0..RECORDS)
        .map(|i| {
            let mut data = format!("record-{i:03}|").into_bytes();
            data.extend([0x00, 0xff, i as u8]); // binary bytes survive the round trip
            (partition_key(i), data)
        })
        .collect();
    let entries = sent
        .iter()
        .map(|(key, data)| {
            PutRecordsRequestEntry::builder()
                .partition_key(key)
                .data(Blob::new(data.clone()))
                .build()
                .expect("entry has the required fields")
        })
        .collect();
    let out = client
        .put_records()
        .stream_name(STREAM)
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords should succeed");
    assert_eq!(out.failed_record_count(), Some(0), "no record should fail");
    assert_eq!(out.records().len(), RECORDS);
    for ((key, _), result) in sent.iter().zip(out.records()) {
        assert_eq!(
            result.shard_id(),
            Some(predicted_shard(key).as_str()),
            "PutRecords result for key {key:?} names the MD5 shard"
        );
    }

    let read = read_all_records(&client, STREAM)
        .await
        .expect("reading the stream back should succeed");
    assert_eq!(read.len(), RECORDS, "every record read back exactly once");
    let by_data: HashMap<&[u8], &e2e::StreamRecord> =
        read.iter().map(|r| (r.data.as_slice(), r)).collect();
    assert_eq!(by_data.len(), RECORDS, "no record read back twice");
    for (key, data) in &sent {
        let record = by_data
            .get(data.as_slice())
            .unwrap_or_else(|| panic!("record {:?} missing", String::from_utf8_lossy(data)));
        assert_eq!(&record.partition_key, key);
        assert_eq!(
            record.shard_id,
            predicted_shard(key),
            "key {key:?} (hash {}) landed outside its hash key range",
            hash_key(key)
        );
    }
    for (shard_id, _) in &ranges {
        assert!(
            read.iter().any(|r| &r.shard_id == shard_id),
            "these keys spread over both shards; {shard_id} got none"
        );
    }
}
