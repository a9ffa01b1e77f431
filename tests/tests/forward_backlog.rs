//! The forwarder in process against the Kinesis emulator, on a pre-filled buffer: a backlog
//! drains at the shards' byte limit with no throttle and no 1-second window above the limit,
//! on an uneven shard split, and both record formats carry every reading exactly once.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::KinesisEmulator;
use e2e::forward_check::{count_consumed_readings, devices_per_shard, prefill, utilisation};
use e2e::kinesis_emu::EmulatorSettings;
use gateway::buffer::{self, Buffer, BufferConfig, BufferMetrics};
use gateway::forward::{ForwardConfig, ForwardMetrics, RecordFormat, SdkKinesis, StreamRef};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::{Duration, Instant};

const STREAM: &str = "backlog";

struct Run {
    emu: KinesisEmulator,
    expected: usize,
    drain: Duration,
    metrics: ForwardMetrics,
}

/// Pre-fills a buffer with `batches` batches of `readings` readings for `per_shard` devices
/// per shard of `ranges`, forwards it, and returns once the buffer is empty.
async fn drain(
    ranges: Vec<(u128, u128)>,
    per_shard: usize,
    batches: u32,
    readings: u32,
    forward: ForwardConfig,
    during: impl FnOnce(&KinesisEmulator),
) -> Run {
    let emu = KinesisEmulator::start_with(
        EmulatorSettings::default(),
        &[(STREAM.to_owned(), ranges.clone())],
        1,
    )
    .expect("emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let (buf, recovered) = Buffer::open(&dir.path().join("buffer.redb")).expect("buffer");
    let config = BufferConfig {
        data_dir: dir.path().to_owned(),
        ..BufferConfig::default()
    }
    .validate()
    .expect("valid");
    let mut registry = Registry::default();
    let (acks, _) = crossbeam_channel::unbounded();
    let (writer, writer_thread) = buffer::writer::spawn(
        buf.clone(),
        recovered,
        config,
        BufferMetrics::register(&mut registry),
        acks,
    )
    .expect("writer");
    let devices = devices_per_shard("dev-", &ranges, per_shard);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let expected = prefill(&writer, &devices, batches, readings, now_ms).expect("prefill") as usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while buf.stats().expect("stats").readings < expected as u64 {
        assert!(Instant::now() < deadline, "prefill did not commit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let valid = ForwardConfig {
        enabled: true,
        stream_name: Some(STREAM.into()),
        ..forward
    }
    .validate()
    .expect("valid")
    .expect("enabled");
    let api = Arc::new(SdkKinesis::from_client(
        emu.client(),
        StreamRef::Name(STREAM.into()),
    ));
    let metrics = ForwardMetrics::register(&mut registry);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let (_, live) = tokio::sync::watch::channel(valid.live_limits());
    let task = tokio::spawn(gateway::forward::run(
        valid,
        api,
        buf.clone(),
        writer.clone(),
        metrics.clone(),
        live,
        async {
            let _ = stopped.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    during(&emu);
    let deadline = Instant::now() + Duration::from_secs(90);
    while buf.stats().expect("stats").readings > 0 {
        assert!(Instant::now() < deadline, "backlog not drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain = started.elapsed();
    let _ = stop.send(());
    task.await.expect("forwarder ends");
    drop(writer);
    tokio::task::spawn_blocking(move || writer_thread.join())
        .await
        .expect("join")
        .expect("writer thread");
    Run {
        emu,
        expected,
        drain,
        metrics,
    }
}

/// Every reading arrived once, as a KCL consumer reads the stream (user records an aggregate
/// carried into the wrong child of a split are dropped there, and the gateway sent them
/// again: exactly as many as its metric says).
fn assert_exactly_once(run: &Run) {
    let accepted = run.emu.accepted();
    let ranges = run
        .emu
        .shards(STREAM)
        .into_iter()
        .map(|s| (s.shard_id, s.start..=s.end))
        .collect();
    let (counts, misplaced) = count_consumed_readings(
        accepted.iter().map(|r| {
            (
                r.shard_id.as_str(),
                r.partition_key.as_str(),
                r.data.as_slice(),
            )
        }),
        &ranges,
    )
    .expect("decodes");
    assert_eq!(counts.len(), run.expected, "every reading arrived");
    assert!(counts.values().all(|&n| n == 1), "none twice");
    assert_eq!(
        misplaced,
        run.metrics.misplaced_user_records.get(),
        "the gateway sent again what landed in the wrong child"
    );
    assert_eq!(run.emu.stats().invalid_requests, 0);
}

/// 25 % / 75 % split; about 3 MB per shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_backlog_runs_each_shard_at_its_byte_limit_without_throttles() {
    let ranges = vec![(0, (1u128 << 126) - 1), (1u128 << 126, u128::MAX)];
    let run = drain(ranges, 20, 200, 64, ForwardConfig::default(), |_| {}).await;
    assert_exactly_once(&run);
    let stats = run.emu.stats();
    assert_eq!(stats.throttled, 0, "{stats:?}");
    let accepted = run.emu.accepted();
    let samples: Vec<_> = accepted
        .iter()
        .map(|r| (r.shard_id.clone(), r.arrival, r.bytes))
        .collect();
    let first = samples.iter().map(|s| s.1).min().expect("records");
    let last = samples.iter().map(|s| s.1).max().expect("records");
    // The backlog runs out during the last second (a partial window): leave it out.
    let u = utilisation(
        &samples,
        first,
        last - Duration::from_secs(1),
        1000.0,
        (1 << 20) as f64,
    );
    let mean_records = accepted.len() as f64 / 2.0 / (last - first).as_secs_f64().max(1.0);
    eprintln!(
        "drain {:?}, {} records ({mean_records:.0}/s/shard), utilisation {u:#?}",
        run.drain,
        accepted.len()
    );
    if std::env::var_os("FORWARD_TRACE").is_some() {
        let mut bursts: Vec<(String, Instant, u64, usize)> = Vec::new();
        for r in &accepted {
            match bursts.last_mut() {
                Some(b) if b.0 == r.shard_id && b.1 == r.arrival => {
                    b.2 += r.bytes;
                    b.3 += 1;
                }
                _ => bursts.push((r.shard_id.clone(), r.arrival, r.bytes, 1)),
            }
        }
        for b in bursts {
            eprintln!(
                "{} {:>8.3} s {:>8} B {:>4} records",
                b.0,
                (b.1 - first).as_secs_f64(),
                b.2,
                b.3
            );
        }
    }
    assert_eq!(u.len(), 2);
    // Lower bound of the drain: a shard takes at most 1 MiB in [t0, t0 + 1 s), so the last of
    // B bytes arrives at least ceil(B / 1 MiB) - 1 seconds after the first.
    let max_bytes = ["shardId-000000000000", "shardId-000000000001"]
        .iter()
        .map(|id| {
            accepted
                .iter()
                .filter(|r| r.shard_id == *id)
                .map(|r| r.bytes)
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0);
    let bound = (max_bytes as f64 / (1 << 20) as f64).ceil() - 1.0;
    let took = (last - first).as_secs_f64();
    // Loose bounds: CI machines are noisy and debug builds slow; the benchmark
    // (tests/tests/forward_bench.rs) measures the real figures.
    assert!(
        took <= bound * 1.5 + 0.5,
        "drain took {took:.3} s, bound {bound} s"
    );
    assert!(max_bytes > 3_000_000, "{max_bytes}");
    for s in &u {
        // Byte-bound: far below 1000 records/s.
        assert!(s.records < 500, "{s:?}");
        assert!(s.max_sliding_window <= 1.0, "{s:?}");
        assert!(s.mean > 0.6, "{s:?}");
    }
    assert_eq!(
        run.metrics
            .throttled_records
            .get_or_create(&run.metrics.shard("shardId-000000000000"))
            .get(),
        0
    );
    assert_eq!(
        run.metrics.shard_mispredictions.get(),
        0,
        "MD5 prediction on an uneven split"
    );
}

/// A shard splits (at an arbitrary hash key) while a backlog drains: nothing is lost or
/// duplicated, the map follows, and the children take their devices' records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_split_during_a_backlog_loses_nothing_and_the_map_follows() {
    let ranges = e2e::kinesis_emu::even_ranges(2);
    let at = (1u128 << 126) + 12_345_678_901_234_567;
    let run = drain(ranges, 10, 150, 64, ForwardConfig::default(), |emu| {
        emu.split_shard(STREAM, "shardId-000000000000", at)
            .expect("split");
    })
    .await;
    assert_exactly_once(&run);
    assert_eq!(run.metrics.open_shards.get(), 3);
    assert!(run.metrics.shard_mispredictions.get() >= 1);
    let accepted = run.emu.accepted();
    for child in ["shardId-000000000002", "shardId-000000000003"] {
        assert!(
            accepted.iter().any(|r| r.shard_id == child),
            "{child} received records"
        );
    }
    // Every record is in the shard its key hashes to at its arrival: parents before the
    // split, children after (the emulator routes by MD5; the check is that none was lost
    // in the move between lanes).
    assert_eq!(run.emu.stats().throttled, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_json_records_carry_every_reading_once() {
    let ranges = e2e::kinesis_emu::even_ranges(2);
    let run = drain(
        ranges,
        5,
        20,
        16,
        ForwardConfig {
            record_format: RecordFormat::Json,
            ..ForwardConfig::default()
        },
        |_| {},
    )
    .await;
    assert_exactly_once(&run);
    let accepted = run.emu.accepted();
    assert!(accepted.iter().all(|r| r.data.starts_with(b"{\"device\":")));
    assert!(accepted.iter().all(|r| r.bytes <= 64 << 10));
}

/// `kpl-json` through a split during a backlog: every reading once as a consumer reads it,
/// every aggregate within the record cap, one JSON object per user record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_kpl_json_through_a_split_carries_every_reading_once() {
    let ranges = e2e::kinesis_emu::even_ranges(2);
    let run = drain(
        ranges,
        20,
        40,
        16,
        ForwardConfig {
            record_format: RecordFormat::KplJson,
            ..ForwardConfig::default()
        },
        |emu| {
            emu.split_shard(STREAM, "shardId-000000000000", 1u128 << 126)
                .expect("split");
        },
    )
    .await;
    assert_exactly_once(&run);
    let accepted = run.emu.accepted();
    let mut users = 0;
    for r in &accepted {
        assert!(r.bytes <= 64 << 10);
        for (_, data) in e2e::kpl::user_records(&r.partition_key, &r.data).expect("unpacks") {
            assert!(data.starts_with(b"{\"device\":") && !data.contains(&b'\n'));
            users += 1;
        }
    }
    assert_eq!(
        users as u64,
        run.expected as u64 + run.metrics.misplaced_user_records.get()
    );
    assert!(
        accepted.len() * 20 < users,
        "{} records for {users} readings",
        accepted.len()
    );
}
