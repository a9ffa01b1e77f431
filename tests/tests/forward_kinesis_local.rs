//! The forwarder against the real Kinesis API (kinesis-local): devsim → gateway → stream in
//! the KPL aggregated formats, resharding (UpdateShardCount 2 → 3) in the middle of the run.
//! Everything acked is read back with GetRecords, once, each user record in the shard its key
//! hashes to (a user record an aggregate carried to the wrong child of a split is what KCL
//! drops: the gateway must have sent it again), and the gateway's shard map follows the
//! reshard. `gateway tail --check` reads the same stream and agrees; the AWS library
//! aws-kinesis-agg (Python) unpacks the records into the same user records as prost.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use aws_sdk_kinesis::types::ScalingType;
use e2e::forward_check::{DecodedReading, decode_plain, forward_toml, metric_sum};
use e2e::kpl::user_records;
use e2e::tail::{aws_kinesis_agg, tail_check};
use e2e::{GatewayOptions, GatewayProcess, KinesisLocal, devsim, hash_key_range, list_shards};
use md5::{Digest, Md5};
use std::collections::HashMap;
use std::time::Duration;

const STREAM: &str = "forward";

fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// kinesis-local with `stream` of `shards` shards, and a gateway forwarding to it with
/// `forward_extra`; also the endpoint and credential environment (for `gateway tail`).
async fn start(
    stream: &str,
    shards: u32,
    forward_extra: &str,
) -> (KinesisLocal, GatewayProcess, Vec<(String, String)>) {
    let mock = KinesisLocal::start(&[(stream, shards)])
        .await
        .expect("kinesis-local starts");
    let env: Vec<(String, String)> = mock
        .env_vars()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let gw = GatewayProcess::start(GatewayOptions {
        extra_toml: forward_toml(stream, forward_extra),
        env: env.clone(),
        ..GatewayOptions::default()
    })
    .expect("gateway starts");
    (mock, gw, env)
}

/// Starts devsim with `args` and an acked log.
fn spawn_devsim(gw: &GatewayProcess, args: &[&str]) -> (std::process::Child, std::path::PathBuf) {
    let acked_log = gw.dir().join("acked.csv");
    let acked_arg = acked_log.display().to_string();
    let mut all = vec!["--acked-log", &acked_arg, "--json", "--drain-timeout", "60"];
    all.extend_from_slice(args);
    (
        devsim::spawn(gw.mqtt5, &all).expect("devsim starts"),
        acked_log,
    )
}

/// Waits for devsim to finish (it must succeed) and for the gateway to have forwarded
/// everything; the readings devsim saw acked.
async fn finish_and_drain(
    gw: &GatewayProcess,
    sim: std::process::Child,
    acked_log: &std::path::Path,
) -> std::collections::BTreeSet<(String, u32, u32)> {
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || devsim::finish(sim))
        .await
        .expect("join")
        .expect("devsim finishes");
    assert!(ok, "devsim: {stdout}\n{stderr}");
    let acked = devsim::acked_readings(acked_log).expect("acked log");
    gw.wait_metric(
        "gateway_buffer_buffered_readings",
        Duration::from_secs(60),
        |v| v == 0.0,
    )
    .unwrap_or_else(|e| panic!("not drained: {e}\n{}", gw.log_text()));
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_to_kinesis_local_follows_a_reshard_and_loses_nothing() {
    // Periodic refresh effectively off: only a misprediction can make the map follow.
    let (mock, gw, env_pairs) = start(
        STREAM,
        2,
        "shard_refresh_secs = 3600\ndelete_interval_ms = 100",
    )
    .await;
    let client = mock.client();
    #[rustfmt::skip]
    let (sim, acked_log) = spawn_devsim(&gw, &["--devices", "10", "--rate", "10", "--duration", "12", "--seed", "11"]);

    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        gw.metric("gateway_forward_open_shards").expect("metric"),
        2.0
    );
    client
        .update_shard_count()
        .stream_name(STREAM)
        .target_shard_count(3)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .expect("UpdateShardCount");

    let acked = finish_and_drain(&gw, sim, &acked_log).await;

    // The map followed: 3 open shards, found through a misprediction.
    assert_eq!(
        gw.metric("gateway_forward_open_shards").expect("metric"),
        3.0
    );
    assert!(
        gw.metric("gateway_forward_shard_mispredictions_total")
            .expect("metric")
            >= 1.0
    );
    assert!(
        gw.metric("gateway_forward_shard_map_changes_total")
            .expect("metric")
            >= 2.0
    );

    let records = e2e::read_all_records(&client, STREAM)
        .await
        .expect("read back");
    let shards = list_shards(&client, STREAM).await.expect("ListShards");
    let ranges: HashMap<String, std::ops::RangeInclusive<u128>> = shards
        .iter()
        .map(|s| (s.shard_id().to_owned(), hash_key_range(s).expect("range")))
        .collect();
    // Every user record as a consumer sees it: in range of its shard, or dropped (counted).
    let mut counts: HashMap<(String, u32, u32), u32> = HashMap::new();
    let mut misplaced: u32 = 0;
    let mut users = 0;
    for r in &records {
        assert!(
            ranges[&r.shard_id].contains(&hash_key(&r.partition_key)),
            "record of {} in {}",
            r.partition_key,
            r.shard_id
        );
        for (key, data) in user_records(&r.partition_key, &r.data).expect("de-aggregates") {
            users += 1;
            if !ranges[&r.shard_id].contains(&hash_key(&key)) {
                misplaced += 1;
                continue;
            }
            for DecodedReading { key: k, .. } in decode_plain(&data).expect("decodes") {
                assert_eq!(
                    k.device, key,
                    "a user record holds its own device's readings"
                );
                *counts.entry((k.device, k.boot, k.seq)).or_insert(0) += 1;
            }
        }
    }
    assert!(
        users > records.len(),
        "aggregates hold many user records ({users} in {})",
        records.len()
    );
    let missing = acked.iter().filter(|k| !counts.contains_key(*k)).count();
    assert_eq!(
        missing, 0,
        "every acked reading is in the stream, in its shard"
    );
    assert_eq!(counts.len(), acked.len());
    assert!(counts.values().all(|&n| n == 1), "no reading twice");
    assert_eq!(
        gw.metric("gateway_forward_misplaced_user_records_total")
            .expect("metric"),
        f64::from(misplaced),
        "the gateway sent again exactly the user records that landed in the wrong child"
    );

    // `gateway tail --check` reads the stream as an operator would and agrees.
    let (passed, report) = tail_check(STREAM, &env_pairs, 3).expect("gateway tail");
    assert!(passed, "tail --check: {report}");
    assert_eq!(
        report["readings"].as_u64(),
        Some(acked.len() as u64),
        "{report}"
    );
    assert_eq!(report["gaps"].as_u64(), Some(0), "{report}");
    assert_eq!(report["duplicates"].as_u64(), Some(0), "{report}");
    assert_eq!(
        report["misplaced"].as_u64(),
        Some(u64::from(misplaced)),
        "{report}"
    );
    assert_eq!(report["undecodable"].as_u64(), Some(0), "{report}");
    assert_eq!(
        report["devices"].as_object().map(|d| d.len()),
        Some(10),
        "{report}"
    );

    // The AWS library unpacks a sample into the same user records as prost.
    let sample = &records[..records.len().min(40)];
    let theirs = aws_kinesis_agg(sample).expect("aws-kinesis-agg");
    let ours: Vec<(String, Vec<u8>)> = sample
        .iter()
        .flat_map(|r| user_records(&r.partition_key, &r.data).expect("de-aggregates"))
        .collect();
    assert_eq!(theirs.len(), ours.len());
    assert_same_users(&theirs, &ours);

    let open: Vec<&str> = shards
        .iter()
        .filter(|s| {
            s.sequence_number_range()
                .is_some_and(|r| r.ending_sequence_number().is_none())
        })
        .map(|s| s.shard_id())
        .collect();
    assert_eq!(open.len(), 3);
    let in_new = records
        .iter()
        .filter(|r| open.contains(&r.shard_id.as_str()))
        .count();
    assert!(in_new > 0, "records were written to the new shards");
    let sent = metric_sum(&gw, "gateway_forward_records_sent_total").expect("metric");
    assert_eq!(
        sent as usize,
        records.len(),
        "every accepted record was read back"
    );
}

/// `kpl-json` (one reading per user record, for Firehose → S3/Athena) through the real API:
/// every acked reading arrives once, `tail --check` agrees, aws-kinesis-agg unpacks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpl_json_records_are_read_back_by_tail_and_aws_kinesis_agg() {
    const JSON_STREAM: &str = "forward-json";
    let (mock, gw, env_pairs) = start(
        JSON_STREAM,
        2,
        "record_format = \"kpl-json\"\ndelete_interval_ms = 100",
    )
    .await;
    let client = mock.client();
    #[rustfmt::skip]
    let (sim, acked_log) = spawn_devsim(&gw, &["--devices", "8", "--rate", "10", "--duration", "5", "--seed", "3"]);
    let acked = finish_and_drain(&gw, sim, &acked_log).await;

    let records = e2e::read_all_records(&client, JSON_STREAM)
        .await
        .expect("read back");
    let mut users = 0;
    let mut seen = std::collections::HashSet::new();
    for r in &records {
        for (key, data) in user_records(&r.partition_key, &r.data).expect("de-aggregates") {
            users += 1;
            // One reading per user record, a complete JSON object.
            let v: serde_json::Value = serde_json::from_slice(&data).expect("a JSON object");
            assert_eq!(v["device"].as_str(), Some(key.as_str()));
            let id = (
                key,
                v["boot"].as_u64().unwrap() as u32,
                v["seq"].as_u64().unwrap() as u32,
            );
            assert!(seen.insert(id), "no reading twice");
        }
    }
    assert_eq!(users, acked.len());
    assert!(
        acked.iter().all(|k| seen.contains(k)),
        "every acked reading arrived"
    );
    assert!(
        records.len() * 5 < users,
        "{} records for {users} readings",
        records.len()
    );

    let (passed, report) = tail_check(JSON_STREAM, &env_pairs, 3).expect("gateway tail");
    assert!(passed, "tail --check: {report}");
    assert_eq!(
        report["readings"].as_u64(),
        Some(acked.len() as u64),
        "{report}"
    );

    let theirs = aws_kinesis_agg(&records).expect("aws-kinesis-agg");
    let ours: Vec<(String, Vec<u8>)> = records
        .iter()
        .flat_map(|r| user_records(&r.partition_key, &r.data).expect("de-aggregates"))
        .collect();
    assert_same_users(&theirs, &ours);
}

/// The AWS library and prost unpack the same user records, in the same order.
fn assert_same_users(theirs: &[(String, Vec<u8>)], ours: &[(String, Vec<u8>)]) {
    assert_eq!(theirs.len(), ours.len(), "user records");
    for (i, (t, o)) in theirs.iter().zip(ours).enumerate() {
        assert_eq!(
            (t.0.as_str(), String::from_utf8_lossy(&t.1)),
            (o.0.as_str(), String::from_utf8_lossy(&o.1)),
            "user record {i}: aws-kinesis-agg vs prost"
        );
    }
}
