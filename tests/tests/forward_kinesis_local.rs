//! The forwarder against the real Kinesis API (kinesis-local): devsim → gateway → stream,
//! resharding (UpdateShardCount 2 → 3) in the middle of the run. Everything acked is read
//! back with GetRecords, once, each record in the shard its key hashes to, and the
//! gateway's shard map follows the reshard.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use aws_sdk_kinesis::types::ScalingType;
use e2e::forward_check::{count_readings, forward_toml, metric_sum};
use e2e::{GatewayOptions, GatewayProcess, KinesisLocal, devsim, hash_key_range, list_shards};
use md5::{Digest, Md5};
use std::collections::HashMap;
use std::time::Duration;

const STREAM: &str = "forward";

fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_to_kinesis_local_follows_a_reshard_and_loses_nothing() {
    let mock = KinesisLocal::start(&[(STREAM, 2)])
        .await
        .expect("kinesis-local starts");
    let client = mock.client();
    let env = mock
        .env_vars()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    // Periodic refresh effectively off: only a misprediction can make the map follow.
    let gw = GatewayProcess::start(GatewayOptions {
        extra_toml: forward_toml(
            STREAM,
            "shard_refresh_secs = 3600\ndelete_interval_ms = 100",
        ),
        env,
        ..GatewayOptions::default()
    })
    .expect("gateway starts");
    let acked_log = gw.dir().join("acked.csv");
    let acked_arg = acked_log.display().to_string();
    let sim = devsim::spawn(
        gw.mqtt5,
        &[
            "--devices",
            "10",
            "--rate",
            "10",
            "--duration",
            "12",
            "--seed",
            "11",
            "--acked-log",
            &acked_arg,
            "--json",
            "--drain-timeout",
            "60",
        ],
    )
    .expect("devsim starts");

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

    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || devsim::finish(sim))
        .await
        .expect("join")
        .expect("devsim finishes");
    assert!(ok, "devsim: {stdout}\n{stderr}");
    let acked = devsim::acked_readings(&acked_log).expect("acked log");
    gw.wait_metric(
        "gateway_buffer_buffered_readings",
        Duration::from_secs(60),
        |v| v == 0.0,
    )
    .unwrap_or_else(|e| panic!("not drained: {e}\n{}", gw.log_text()));

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
    let counts = count_readings(records.iter().map(|r| r.data.as_slice())).expect("decodes");
    let missing = acked.iter().filter(|k| !counts.contains_key(*k)).count();
    assert_eq!(missing, 0, "every acked reading is in the stream");
    assert_eq!(counts.len(), acked.len());
    assert!(counts.values().all(|&n| n == 1), "no reading twice");

    // Each record is in the shard (open or since closed) whose range holds its key's hash,
    // and records reached the new shards after the reshard.
    let shards = list_shards(&client, STREAM).await.expect("ListShards");
    let ranges: HashMap<String, std::ops::RangeInclusive<u128>> = shards
        .iter()
        .map(|s| (s.shard_id().to_owned(), hash_key_range(s).expect("range")))
        .collect();
    for r in &records {
        assert!(
            ranges[&r.shard_id].contains(&hash_key(&r.partition_key)),
            "record of {} in {}",
            r.partition_key,
            r.shard_id
        );
    }
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
