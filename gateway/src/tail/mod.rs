//! `gateway tail`: a consumer of the stream, for the operator's proof that the cloud side got
//! everything and for our own tests. Reads every shard within the read limits (parents before
//! children, see [`reader`]), de-aggregates KPL records as KCL does (dropping, and counting, user
//! records whose partition key hashes outside the shard they arrived on), decodes the
//! gateway's shapes ([`crate::formats`]) and prints readings, or with `--check` reports per
//! device and per shard ([`check`]).

pub mod check;
pub mod reader;

use crate::formats::{kpl, read};
use crate::forward::hash_key;
use anyhow::Context as _;
use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use check::Report;
use reader::{ShardEvent, ShardInfo, Start};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What to read and how to show it.
#[derive(Debug, Clone)]
pub struct TailOptions {
    /// Stream name.
    pub stream: String,
    /// Where to start.
    pub start: Start,
    /// Only this device's readings.
    pub device: Option<String>,
    /// Readings (or the report) as JSON.
    pub json: bool,
    /// Report instead of printing readings, and stop once the stream is read.
    pub check: bool,
    /// With `check`: stop after every shard has been caught up and nothing arrived for this
    /// long.
    pub idle: Duration,
    /// Region override (else the standard chain).
    pub region: Option<String>,
    /// Endpoint override (else `AWS_ENDPOINT_URL` or the public endpoint).
    pub endpoint_url: Option<String>,
}

/// `--from`: `trim-horizon`, `latest`, or a time (RFC 3339, or Unix seconds).
pub fn parse_start(text: &str) -> anyhow::Result<Start> {
    use aws_sdk_kinesis::primitives::{DateTime, DateTimeFormat};
    match text {
        "trim-horizon" => Ok(Start::TrimHorizon),
        "latest" => Ok(Start::Latest),
        _ => {
            if let Ok(secs) = text.parse::<i64>() {
                return Ok(Start::At(DateTime::from_secs(secs)));
            }
            DateTime::from_str(text, DateTimeFormat::DateTime)
                .map(Start::At)
                .map_err(|_| {
                    anyhow::anyhow!(
                        "--from {text:?}: expected trim-horizon, latest, an RFC 3339 time (2026-12-04T10:00:00Z) or Unix seconds"
                    )
                })
        }
    }
}

async fn client(options: &TailOptions) -> anyhow::Result<aws_sdk_kinesis::Client> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_timeout(Duration::from_secs(30))
            .build(),
    );
    if let Some(region) = &options.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(url) = &options.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let sdk = loader.load().await;
    anyhow::ensure!(
        sdk.region().is_some(),
        "no AWS region: pass --region or set AWS_REGION"
    );
    Ok(aws_sdk_kinesis::Client::new(&sdk))
}

/// Reads the stream until Ctrl-C (or, with `check`, until it is read and idle); prints
/// readings to `out` as they come, and returns the report.
pub async fn run(options: TailOptions, out: &mut dyn std::io::Write) -> anyhow::Result<Report> {
    let client = client(&options).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut shards: HashMap<String, ShardInfo> = HashMap::new();
    let mut started: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut behind: HashMap<String, i64> = HashMap::new();
    let mut report = Report::default();
    let mut last_arrival = Instant::now();
    let mut first_listing = true;
    let mut relist = true;
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    loop {
        if relist {
            relist = false;
            for s in reader::list_shards(&client, &options.stream).await? {
                shards.insert(s.id.clone(), s);
            }
            for s in shards.values() {
                if started.contains(&s.id) {
                    continue;
                }
                // A parent still listed must be read to its end first.
                let parents_done = s
                    .parents
                    .iter()
                    .all(|p| finished.contains(p) || !shards.contains_key(p));
                let start = match (&options.start, first_listing) {
                    // From the latest: the shards open now, from their tip.
                    (Start::Latest, true) if s.closed => continue,
                    (Start::Latest, true) => Start::Latest,
                    _ if !parents_done => continue,
                    // Children of shards read here start at their beginning.
                    (_, false) => Start::TrimHorizon,
                    (start, true) => start.clone(),
                };
                started.insert(s.id.clone());
                behind.insert(s.id.clone(), i64::MAX);
                tokio::spawn(reader::read_shard(
                    client.clone(),
                    options.stream.clone(),
                    s.id.clone(),
                    start,
                    tx.clone(),
                ));
            }
            first_listing = false;
        }
        let event = tokio::select! {
            e = rx.recv() => e,
            _ = ticker.tick() => None,
            _ = tokio::signal::ctrl_c() => break,
        };
        match event {
            Some(ShardEvent::Records {
                shard,
                records,
                behind_ms,
            }) => {
                behind.insert(shard.clone(), behind_ms);
                if !records.is_empty() {
                    last_arrival = Instant::now();
                }
                let range = shards.get(&shard).map(|s| s.range.clone());
                for r in records {
                    take_record(&options, &shard, range.as_ref(), r, &mut report, out)?;
                }
                out.flush().ok();
            }
            Some(ShardEvent::Done { shard }) => {
                behind.remove(&shard);
                finished.insert(shard);
                relist = true;
            }
            Some(ShardEvent::Failed { shard, error }) => {
                anyhow::bail!("reading shard {shard}: {error}");
            }
            None => {}
        }
        let caught_up = behind.values().all(|&b| b == 0);
        if options.check && caught_up && last_arrival.elapsed() >= options.idle {
            break;
        }
    }
    report.finish();
    Ok(report)
}

/// De-aggregates one record, counts it, and prints its readings (unless checking).
fn take_record(
    options: &TailOptions,
    shard: &str,
    range: Option<&std::ops::RangeInclusive<u128>>,
    record: reader::ReadRecord,
    report: &mut Report,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let bytes = (record.partition_key.len() + record.data.len()) as u64;
    let users = match kpl::deaggregate(&record.data) {
        Ok(Some(users)) => users
            .into_iter()
            .map(|u| (u.partition_key, u.data))
            .collect(),
        // A bad digest: KCL treats the bytes as one plain record; so does this.
        Ok(None) | Err(kpl::KplError::Digest) => {
            vec![(record.partition_key.as_str(), record.data.as_slice())]
        }
        Err(_) => {
            report.record(shard, record.arrival_ms, bytes, 0);
            report.undecodable();
            return Ok(());
        }
    };
    report.record(shard, record.arrival_ms, bytes, users.len() as u64);
    for (key, data) in users {
        if range.is_some_and(|r| !r.contains(&hash_key(key))) {
            report.misplaced(shard);
            continue;
        }
        let Ok(readings) = read::readings(data) else {
            report.undecodable();
            continue;
        };
        for r in readings {
            if options.device.as_ref().is_some_and(|d| *d != r.device) {
                continue;
            }
            report.reading(&r);
            if options.check {
                continue;
            }
            if options.json {
                serde_json::to_writer(&mut *out, &r).context("writing a reading")?;
                writeln!(out).context("writing a reading")?;
            } else {
                writeln!(
                    out,
                    "{} {} boot {} seq {} ch {} kind {} = {}",
                    r.time_ms,
                    r.device,
                    r.boot,
                    r.seq,
                    r.channel,
                    r.kind,
                    r.value.map_or("null".into(), |v| v.to_string())
                )
                .context("writing a reading")?;
            }
        }
    }
    Ok(())
}
