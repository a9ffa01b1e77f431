//! The forwarder end to end against the Kinesis emulator (tests/src/kinesis_emu): devsim →
//! gateway → emulator, with injected throttling, an outage, and a hot device.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use e2e::forward_check::{
    count_readings, decode_plain, decode_record, forward_toml, metric_samples, metric_sum,
    percentile,
};
use e2e::kinesis_emu::{EmulatorSettings, Outage, Outcome, even_ranges};
use e2e::kpl::user_records;
use e2e::{GatewayOptions, GatewayProcess, KinesisEmulator, devsim};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

const STREAM: &str = "telemetry";

fn gateway(emu: &KinesisEmulator, forward_extra: &str) -> GatewayProcess {
    GatewayProcess::start(GatewayOptions {
        extra_toml: forward_toml(STREAM, forward_extra),
        env: emu.env_vars(),
        ..GatewayOptions::default()
    })
    .expect("gateway starts")
}

fn run_devsim(gw: &GatewayProcess, args: &[&str]) -> BTreeSet<(String, u32, u32)> {
    let acked_log = gw.dir().join(format!("acked-{}.csv", fastrand_name()));
    let acked = acked_log.display().to_string();
    let mut all = vec!["--acked-log", &acked, "--json", "--drain-timeout", "60"];
    all.extend_from_slice(args);
    let sim = devsim::spawn(gw.mqtt5, &all).expect("devsim starts");
    let (ok, stdout, stderr) = devsim::finish(sim).expect("devsim finishes");
    assert!(ok, "devsim: {stdout}\n{stderr}");
    devsim::acked_readings(&acked_log).expect("acked log")
}

fn fastrand_name() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Waits until the gateway's buffer is empty (everything forwarded and deleted).
fn wait_drained(gw: &GatewayProcess, timeout: Duration) {
    gw.wait_metric("gateway_buffer_buffered_readings", timeout, |v| v == 0.0)
        .unwrap_or_else(|e| panic!("buffer not drained: {e}\n{}", gw.log_text()));
}

fn assert_all_delivered_once(emu: &KinesisEmulator, acked: &BTreeSet<(String, u32, u32)>) {
    let accepted = emu.accepted();
    let counts = count_readings(accepted.iter().map(|r| r.data.as_slice())).expect("decodes");
    let missing: Vec<_> = acked.iter().filter(|k| !counts.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acked readings never reached Kinesis, e.g. {:?}",
        missing.len(),
        acked.len(),
        missing.first()
    );
    let dupes = counts.values().filter(|&&n| n > 1).count();
    assert_eq!(dupes, 0, "readings accepted more than once");
    assert_eq!(counts.len(), acked.len(), "exactly the acked readings");
    // Partition key = device ID for every user record, each in the shard its key hashes to.
    let ranges: HashMap<String, (u128, u128)> = emu
        .shards(STREAM)
        .into_iter()
        .map(|s| (s.shard_id, (s.start, s.end)))
        .collect();
    for r in &accepted {
        for (key, data) in user_records(&r.partition_key, &r.data).expect("de-aggregates") {
            let readings = decode_plain(&data).expect("decodes");
            assert!(readings.iter().all(|x| x.key.device == key));
            let (start, end) = ranges[&r.shard_id];
            let h = e2e::kinesis_emu::hash_key(&key);
            assert!(start <= h && h <= end, "{key} in {}", r.shard_id);
        }
    }
    assert_eq!(
        emu.stats().invalid_requests,
        0,
        "no request broke a Kinesis limit"
    );
}

/// 30 % of records are refused at random: every reading still arrives exactly once, and
/// the only user records sent again are those of refused records (identical bytes, in a new
/// aggregate, sent until accepted, never after).
#[test]
fn forward_resends_only_throttled_records_and_loses_nothing() {
    let settings = EmulatorSettings {
        throttle_share: 0.3,
        ..EmulatorSettings::default()
    };
    let emu = KinesisEmulator::start_with(settings, &[(STREAM.to_owned(), even_ranges(3))], 42)
        .expect("emulator");
    let gw = gateway(&emu, "delete_interval_ms = 100");
    let acked = run_devsim(
        &gw,
        &[
            "--devices",
            "20",
            "--rate",
            "20",
            "--duration",
            "8",
            "--batch-max",
            "16",
            "--seed",
            "3",
        ],
    );
    wait_drained(&gw, Duration::from_secs(60));
    assert_all_delivered_once(&emu, &acked);

    // Per user record (identified by its bytes): refused k times, then accepted once, last.
    let mut history: HashMap<u64, Vec<Outcome>> = HashMap::new();
    let attempts = emu.attempts();
    for a in &attempts {
        for hash in &a.user_hashes {
            history.entry(*hash).or_default().push(a.outcome);
        }
    }
    for (hash, h) in &history {
        let accepted = h.iter().filter(|o| **o == Outcome::Accepted).count();
        assert_eq!(accepted, 1, "user record {hash:x}: {h:?}");
        assert_eq!(
            h.last(),
            Some(&Outcome::Accepted),
            "user record {hash:x}: {h:?}"
        );
    }
    let refused = attempts
        .iter()
        .filter(|a| a.outcome != Outcome::Accepted)
        .count();
    let stats = emu.stats();
    assert_eq!(stats.throttled, 0, "no window was exceeded");
    assert_eq!(refused as u64, stats.injected_throttles);
    // Aggregated, 3,200 readings take ~180 records: ~50 of them refused.
    assert!(stats.injected_throttles > 20, "{stats:?}");
    // The gateway counted exactly those as throttled and retried.
    let throttled = metric_sum(&gw, "gateway_forward_throttled_records_total").expect("metric");
    let retried = metric_sum(&gw, "gateway_forward_retried_records_total").expect("metric");
    assert_eq!(throttled as u64, stats.injected_throttles);
    assert_eq!(retried as u64, stats.injected_throttles);
    assert_eq!(
        metric_sum(&gw, "gateway_forward_shard_mispredictions_total").expect("metric"),
        0.0,
        "every record landed in the shard its MD5 predicted"
    );
    // Online, readings went to Kinesis as the buffer admitted them, not after their commit.
    assert!(
        gw.metric("gateway_forward_fresh_entries_total")
            .expect("metric")
            > 0.0,
        "no entry came through the fresh feed"
    );
    // A clean stop (SIGTERM) with the forwarder running.
    let mut gw = gw;
    let status = gw.terminate(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{status}");
}

/// Delivered readings newer than the buffer's last checkpoint stay in it until the next one
/// (`buffer.delete_delay_ms`, SD-card wear), and a stop deletes them: after SIGTERM the buffer
/// file holds nothing that Kinesis accepted.
#[test]
fn forward_stop_deletes_the_delivered_readings_the_buffer_held() {
    let emu = KinesisEmulator::start(&[(STREAM, 1)]).expect("emulator");
    // Held far longer than the stop may take: only the stop's flush can delete them in time.
    let mut gw = GatewayProcess::start(GatewayOptions {
        buffer_toml: "delete_delay_ms = 120000".into(),
        extra_toml: forward_toml(STREAM, ""),
        env: emu.env_vars(),
        ..GatewayOptions::default()
    })
    .expect("gateway starts");
    #[rustfmt::skip]
    let acked = run_devsim(&gw, &[
        "--devices", "10", "--rate", "5", "--duration", "4", "--batch-max", "1", "--seed", "5",
    ]);
    let readings = acked.len() as f64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric_sum(&gw, "gateway_forward_readings_sent_total").expect("metric") < readings {
        assert!(
            Instant::now() < deadline,
            "not forwarded\n{}",
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Everything is in Kinesis; the buffer still holds it, waiting for a checkpoint.
    let held = gw
        .metric("gateway_buffer_delete_held_entries")
        .expect("metric");
    let buffered = gw
        .metric("gateway_buffer_buffered_readings")
        .expect("metric");
    assert!(
        held > 0.0 && buffered > 0.0,
        "held {held}, buffered {buffered}"
    );
    let stopping = Instant::now();
    let status = gw.terminate(Duration::from_secs(30)).expect("exits");
    assert!(status.success(), "{status}");
    assert!(
        stopping.elapsed() < Duration::from_secs(20),
        "the stop waited {:?} for held deletes",
        stopping.elapsed()
    );
    assert_all_delivered_once(&emu, &acked);
    let left = e2e::export_check::buffer_rows(&gw.data_dir().join("buffer.redb")).expect("rows");
    assert!(
        left.is_empty(),
        "{} delivered readings left in the buffer after a stop\n{}",
        left.len(),
        gw.log_text()
    );
}

/// Kinesis refuses connections, then fails with HTTP 500, for 25 s while devices keep
/// publishing: the buffer grows, health says so, and when Kinesis is back everything is
/// delivered without a loss.
#[test]
fn forward_outage_buffers_reports_and_then_delivers_everything() {
    let emu = KinesisEmulator::start(&[(STREAM, 2)]).expect("emulator");
    let gw = gateway(
        &emu,
        "unhealthy_after_secs = 3\nretry_max_ms = 2000\nattempt_timeout_ms = 2000\noperation_timeout_ms = 3000",
    );
    let acked_log = gw.dir().join("acked.csv");
    let acked_arg = acked_log.display().to_string();
    let sim = devsim::spawn(
        gw.mqtt5,
        &[
            "--devices",
            "20",
            "--rate",
            "10",
            "--duration",
            "40",
            "--seed",
            "5",
            "--acked-log",
            &acked_arg,
            "--json",
            "--drain-timeout",
            "60",
        ],
    )
    .expect("devsim");
    std::thread::sleep(Duration::from_secs(4));
    let before = emu.accepted_count();
    assert!(before > 0, "records flow before the outage");
    emu.set_outage(Some(Outage::Refuse));
    let outage_start = Instant::now();

    // Health turns degraded and names Kinesis; the buffer grows.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (code, body) = loop {
        let (code, body) = gw.http_get("/health").expect("health");
        if code == 503 || Instant::now() > deadline {
            break (code, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(code, 503, "health during the outage: {body}");
    assert!(body.contains("kinesis"), "{body}");
    assert!(body.contains("\"reachable\": false"), "{body}");

    std::thread::sleep(Duration::from_secs(10).saturating_sub(outage_start.elapsed()));
    emu.set_outage(Some(Outage::BadCredentials));
    std::thread::sleep(Duration::from_secs(17).saturating_sub(outage_start.elapsed()));
    emu.set_outage(Some(Outage::ServerError));
    std::thread::sleep(Duration::from_secs(25).saturating_sub(outage_start.elapsed()));
    let buffered = gw
        .metric("gateway_buffer_buffered_readings")
        .expect("metric");
    assert!(buffered > 1000.0, "the buffer holds the outage: {buffered}");
    assert_eq!(
        gw.metric("gateway_forward_up").expect("metric"),
        0.0,
        "up = 0 during the outage"
    );
    emu.set_outage(None);
    let outage = outage_start.elapsed();

    let (ok, stdout, stderr) = devsim::finish(sim).expect("devsim finishes");
    assert!(ok, "devsim: {stdout}\n{stderr}");
    let acked = devsim::acked_readings(&acked_log).expect("acked log");
    wait_drained(&gw, Duration::from_secs(60));
    let (code, body) = gw.http_get("/health").expect("health");
    assert_eq!(code, 200, "health after the outage: {body}");
    assert_all_delivered_once(&emu, &acked);
    let failures = metric_sum(&gw, "gateway_forward_request_failures_total").expect("metric");
    for kind in ["unreachable", "auth", "server"] {
        let n = gw
            .metric(&format!(
                "gateway_forward_request_failures_total{{kind=\"{kind}\"}}"
            ))
            .expect("metric");
        assert!(n > 0.0, "failures of kind {kind} counted");
    }
    eprintln!(
        "outage {outage:?}: {} readings, {failures} failed calls, {} outage calls at the emulator",
        acked.len(),
        emu.stats().outage_calls
    );
}

/// One device publishes well above its shard's byte limit: its shard runs at the limit
/// without a single throttle, while devices on the other shards keep their latency.
#[test]
fn forward_hot_device_saturates_only_its_shard() {
    const BYTES_PER_SEC: u64 = 8192;
    let settings = EmulatorSettings {
        bytes_per_sec: BYTES_PER_SEC,
        ..EmulatorSettings::default()
    };
    let emu = KinesisEmulator::start_with(settings, &[(STREAM.to_owned(), even_ranges(4))], 1)
        .expect("emulator");
    let gw = gateway(
        &emu,
        &format!("shard_bytes_per_sec = {BYTES_PER_SEC}\nmax_record_bytes = 5120"),
    );
    let acked_cold = gw.dir().join("cold.csv");
    let cold_arg = acked_cold.display().to_string();
    let cold = devsim::spawn(
        gw.mqtt5,
        &[
            "--devices",
            "30",
            "--rate",
            "5",
            "--duration",
            "10",
            "--id-prefix",
            "cold-",
            "--batch-interval-ms",
            "100",
            "--seed",
            "8",
            "--acked-log",
            &cold_arg,
            "--drain-timeout",
            "60",
        ],
    )
    .expect("devsim cold");
    let acked_hot = gw.dir().join("hot.csv");
    let hot_arg = acked_hot.display().to_string();
    let hot = devsim::spawn(
        gw.mqtt5,
        &[
            "--devices",
            "1",
            "--rate",
            "1200",
            "--duration",
            "8",
            "--id-prefix",
            "hot-",
            "--seed",
            "9",
            "--acked-log",
            &hot_arg,
            "--drain-timeout",
            "60",
        ],
    )
    .expect("devsim hot");
    std::thread::sleep(Duration::from_secs(7));
    // While the hot device is publishing: its shard lags, the others do not.
    let lags = metric_samples(&gw, "gateway_forward_lag_seconds").expect("metric");
    let hot_shard = {
        let shards: Vec<(u128, u128)> = even_ranges(4);
        let h = e2e::kinesis_emu::hash_key("hot-0000");
        let i = shards
            .iter()
            .position(|&(s, e)| s <= h && h <= e)
            .expect("covered");
        format!("shardId-{i:012}")
    };
    for (labels, lag) in &lags {
        if labels.contains(&hot_shard) {
            assert!(*lag > 1.0, "hot shard lags: {lags:?}");
        } else {
            // A reading waits for its buffer commit (up to the low-load interval) first.
            assert!(*lag < 2.0, "cold shards keep up: {lags:?}");
        }
    }
    for (name, child) in [("cold", cold), ("hot", hot)] {
        let (ok, stdout, stderr) = devsim::finish(child).expect("devsim finishes");
        assert!(ok, "devsim {name}: {stdout}\n{stderr}");
    }
    wait_drained(&gw, Duration::from_secs(60));
    let mut acked = devsim::acked_readings(&acked_cold).expect("acked");
    acked.extend(devsim::acked_readings(&acked_hot).expect("acked"));
    assert_all_delivered_once(&emu, &acked);
    assert_eq!(
        emu.stats().throttled,
        0,
        "the bucket kept every window within the limit"
    );

    let accepted = emu.accepted();
    // The hot shard ran at its byte limit while the hot device had a backlog.
    let hot_samples: Vec<(String, Instant, u64)> = accepted
        .iter()
        .filter(|r| r.shard_id == hot_shard)
        .map(|r| (r.shard_id.clone(), r.arrival, r.bytes))
        .collect();
    let first = hot_samples.first().expect("hot records").1;
    let u = e2e::forward_check::utilisation(
        &hot_samples,
        first + Duration::from_secs(2),
        first + Duration::from_secs(8),
        1000.0,
        BYTES_PER_SEC as f64,
    );
    assert!(u[0].mean > 0.85, "hot shard utilisation {u:?}");
    assert!(u[0].max_sliding_window <= 1.0, "{u:?}");
    // Cold devices on other shards: publish-to-acceptance latency stays low.
    let mut latencies: Vec<f64> = accepted
        .iter()
        .filter(|r| r.shard_id != hot_shard && r.partition_key.starts_with("cold-"))
        .flat_map(|r| {
            decode_record(&r.data)
                .expect("decodes")
                .into_iter()
                .map(move |x| r.arrival_unix_ms - x.received_ms as f64)
        })
        .collect();
    let p99 = percentile(&mut latencies, 99.0);
    assert!(p99 < 2000.0, "cold p99 latency {p99} ms");
}
