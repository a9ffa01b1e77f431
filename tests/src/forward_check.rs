//! Checking what the gateway forwarded: decoding its Kinesis records (CBOR or JSON lines,
//! with an independent CBOR library; KPL aggregates of either, with prost, see [`crate::kpl`])
//! and measuring shard utilisation from arrival times.

use crate::HarnessError;
use ciborium::Value;
use md5::Digest as _;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// A reading's identity and its arrival at the gateway, as a record carries them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadingKey {
    /// Device ID.
    pub device: String,
    /// Boot counter.
    pub boot: u32,
    /// Sequence number.
    pub seq: u32,
}

/// One decoded reading.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedReading {
    /// Identity.
    pub key: ReadingKey,
    /// Gateway UTC ms when its batch arrived.
    pub received_ms: i64,
}

fn bad(what: &str) -> HarnessError {
    HarnessError::InvalidResponse(format!("record: {what}"))
}

fn field<'a>(map: &'a Value, key: &str) -> Result<&'a Value, HarnessError> {
    map.as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some(key)))
        .map(|(_, v)| v)
        .ok_or_else(|| bad(&format!("no {key}")))
}

fn int(v: &Value) -> Result<i128, HarnessError> {
    v.as_integer()
        .map(i128::from)
        .ok_or_else(|| bad("not an integer"))
}

/// Decodes one record's data: CBOR, JSON lines (when it starts with `{`), or a KPL aggregate
/// of either (every user record, wherever its key hashes).
pub fn decode_record(data: &[u8]) -> Result<Vec<DecodedReading>, HarnessError> {
    match crate::kpl::deaggregate(data)? {
        Some(users) => {
            let mut out = Vec::new();
            for (_, user) in users {
                out.extend(decode_plain(&user)?);
            }
            Ok(out)
        }
        None => decode_plain(data),
    }
}

/// Decodes a plain record's data (CBOR, or JSON lines when it starts with `{`).
pub fn decode_plain(data: &[u8]) -> Result<Vec<DecodedReading>, HarnessError> {
    if data.first() == Some(&b'{') {
        return decode_json(data);
    }
    let v: Value = ciborium::from_reader(data).map_err(|e| bad(&e.to_string()))?;
    if int(field(&v, "v")?)? != 1 {
        return Err(bad("unknown version"));
    }
    let device = field(&v, "device")?
        .as_text()
        .ok_or_else(|| bad("device"))?
        .to_owned();
    let mut out = Vec::new();
    for b in field(&v, "batches")?
        .as_array()
        .ok_or_else(|| bad("batches"))?
    {
        let b = b.as_array().ok_or_else(|| bad("batch"))?;
        let [boot, first_seq, received_ms, _offset, readings] = b.as_slice() else {
            return Err(bad("batch shape"));
        };
        let (boot, first, received_ms) = (int(boot)?, int(first_seq)?, int(received_ms)?);
        let n = readings.as_array().ok_or_else(|| bad("readings"))?.len();
        for i in 0..n {
            out.push(DecodedReading {
                key: ReadingKey {
                    device: device.clone(),
                    boot: boot as u32,
                    seq: (first + i as i128) as u32,
                },
                received_ms: received_ms as i64,
            });
        }
    }
    Ok(out)
}

fn decode_json(data: &[u8]) -> Result<Vec<DecodedReading>, HarnessError> {
    let text = std::str::from_utf8(data).map_err(|_| bad("not UTF-8"))?;
    text.lines()
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
            let num = |k: &str| v[k].as_i64().ok_or_else(|| bad(k));
            Ok(DecodedReading {
                key: ReadingKey {
                    device: v["device"]
                        .as_str()
                        .ok_or_else(|| bad("device"))?
                        .to_owned(),
                    boot: num("boot")? as u32,
                    seq: num("seq")? as u32,
                },
                received_ms: num("received_ms")?,
            })
        })
        .collect()
}

/// A run of readings as a record carries it: `(device, boot, first_seq, count,
/// received_ms)`. CBOR batches come whole; JSON lines come one reading each.
pub type BatchSpan = (String, u32, u32, u32, i64);

/// The batches of one record (cheaper than [`decode_record`] for large volumes); aggregates
/// are unpacked.
pub fn decode_batches(data: &[u8]) -> Result<Vec<BatchSpan>, HarnessError> {
    match crate::kpl::deaggregate(data)? {
        Some(users) => {
            let mut out = Vec::new();
            for (_, user) in users {
                out.extend(decode_plain_batches(&user)?);
            }
            Ok(out)
        }
        None => decode_plain_batches(data),
    }
}

fn decode_plain_batches(data: &[u8]) -> Result<Vec<BatchSpan>, HarnessError> {
    if data.first() == Some(&b'{') {
        return Ok(decode_json(data)?
            .into_iter()
            .map(|r| (r.key.device, r.key.boot, r.key.seq, 1, r.received_ms))
            .collect());
    }
    let v: Value = ciborium::from_reader(data).map_err(|e| bad(&e.to_string()))?;
    let device = field(&v, "device")?
        .as_text()
        .ok_or_else(|| bad("device"))?
        .to_owned();
    let mut out = Vec::new();
    for b in field(&v, "batches")?
        .as_array()
        .ok_or_else(|| bad("batches"))?
    {
        let b = b.as_array().ok_or_else(|| bad("batch"))?;
        let [boot, first_seq, received_ms, _offset, readings] = b.as_slice() else {
            return Err(bad("batch shape"));
        };
        let n = readings.as_array().ok_or_else(|| bad("readings"))?.len();
        out.push((
            device.clone(),
            int(boot)? as u32,
            int(first_seq)? as u32,
            n as u32,
            int(received_ms)? as i64,
        ));
    }
    Ok(out)
}

/// Checks that `spans` cover sequence numbers `0..per_device` of boot 1 for every device in
/// `devices` exactly once. Returns a description of the first problem.
pub fn check_exactly_once(
    spans: &mut [BatchSpan],
    devices: &[String],
    per_device: u32,
) -> Result<(), String> {
    spans.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
    let mut next: HashMap<&str, u32> = devices.iter().map(|d| (d.as_str(), 0)).collect();
    for (device, boot, first, count, _) in spans.iter() {
        let Some(n) = next.get_mut(device.as_str()) else {
            return Err(format!("unexpected device {device}"));
        };
        if *boot != 1 || *first != *n {
            return Err(format!(
                "{device}: expected seq {n}, got boot {boot} seq {first} (duplicate or gap)"
            ));
        }
        *n += count;
    }
    match next.iter().find(|(_, n)| **n != per_device) {
        Some((d, n)) => Err(format!("{d}: {n} of {per_device} readings")),
        None => Ok(()),
    }
}

/// Occurrences of every reading in `records` (data blobs).
pub fn count_readings<'a>(
    records: impl IntoIterator<Item = &'a [u8]>,
) -> Result<BTreeMap<(String, u32, u32), u32>, HarnessError> {
    let mut out = BTreeMap::new();
    for data in records {
        for r in decode_record(data)? {
            *out.entry((r.key.device, r.key.boot, r.key.seq))
                .or_insert(0) += 1;
        }
    }
    Ok(out)
}

/// Occurrences of every `(device, boot, seq)`.
pub type ReadingCounts = BTreeMap<(String, u32, u32), u32>;

/// Occurrences of every reading as a KCL consumer reads the `(shard, partition key, data)`
/// records: a user record of an aggregate whose key hashes outside the range of the shard it
/// landed on is dropped, as KCL drops it; their number is the second value.
pub fn count_consumed_readings<'a>(
    records: impl IntoIterator<Item = (&'a str, &'a str, &'a [u8])>,
    ranges: &HashMap<String, std::ops::RangeInclusive<u128>>,
) -> Result<(ReadingCounts, u64), HarnessError> {
    let mut out = BTreeMap::new();
    let mut misplaced = 0;
    for (shard, key, data) in records {
        let range = ranges
            .get(shard)
            .ok_or_else(|| bad(&format!("unknown shard {shard}")))?;
        for (user_key, user) in crate::kpl::user_records(key, data)? {
            let hash = u128::from_be_bytes(md5::Md5::digest(user_key.as_bytes()).into());
            if !range.contains(&hash) {
                misplaced += 1;
                continue;
            }
            for r in decode_plain(&user)? {
                *out.entry((r.key.device, r.key.boot, r.key.seq))
                    .or_insert(0) += 1;
            }
        }
    }
    Ok((out, misplaced))
}

/// Utilisation of one shard while a backlog exists, from arrival times.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardUtilisation {
    /// Shard.
    pub shard_id: String,
    /// Records accepted in the period.
    pub records: u64,
    /// Bytes accepted in the period.
    pub bytes: u64,
    /// Mean share of the binding limit over every 1-second window `[t, t + 1 s)` that lies
    /// inside the period (`t` on a 10 ms grid): bytes / byte limit or records / record limit,
    /// whichever is higher.
    pub mean: f64,
    /// 5th percentile of those windows.
    pub p5_window: f64,
    /// Lowest share of the binding limit among those windows.
    pub min_window: f64,
    /// Highest share of either limit in any 1-second window starting at an arrival (the
    /// whole run, not just the period): above 1.0 means the shard was overrun.
    pub max_sliding_window: f64,
}

/// Per-shard utilisation of `(shard, arrival, bytes)` samples over `from..=to` (the time a
/// backlog existed: first to last arrival), against per-second limits.
pub fn utilisation(
    samples: &[(String, Instant, u64)],
    from: Instant,
    to: Instant,
    records_limit: f64,
    bytes_limit: f64,
) -> Vec<ShardUtilisation> {
    const STEP: Duration = Duration::from_millis(10);
    let second = Duration::from_secs(1);
    let mut by_shard: HashMap<&str, Vec<(Instant, u64)>> = HashMap::new();
    for (s, t, b) in samples {
        by_shard.entry(s).or_default().push((*t, *b));
    }
    let share = |r: f64, b: f64| (r / records_limit).max(b / bytes_limit);
    let mut out: Vec<ShardUtilisation> = by_shard
        .into_iter()
        .map(|(shard, mut v)| {
            v.sort_by_key(|x| x.0);
            // Window sums over [a, a + 1 s) via two pointers on the sorted samples.
            let window = |a: Instant| {
                let lo = v.partition_point(|x| x.0 < a);
                let hi = v.partition_point(|x| x.0 < a + second);
                let w = &v[lo..hi];
                share(w.len() as f64, w.iter().map(|x| x.1).sum::<u64>() as f64)
            };
            let inside: Vec<&(Instant, u64)> =
                v.iter().filter(|x| x.0 >= from && x.0 <= to).collect();
            let mut windows = Vec::new();
            let mut a = from;
            while a + second <= to {
                windows.push(window(a));
                a += STEP;
            }
            let n = windows.len();
            let sum: f64 = windows.iter().sum();
            let min = windows.iter().copied().fold(f64::INFINITY, f64::min);
            let p5 = percentile(&mut windows, 5.0);
            let period = to.saturating_duration_since(from).as_secs_f64().max(1e-9);
            let bytes: u64 = inside.iter().map(|x| x.1).sum();
            let mean = if n > 0 {
                sum / n as f64
            } else {
                share(inside.len() as f64 / period, bytes as f64 / period)
            };
            let max_sliding = v.iter().map(|x| window(x.0)).fold(0.0, f64::max);
            ShardUtilisation {
                shard_id: shard.to_owned(),
                records: inside.len() as u64,
                bytes,
                mean,
                p5_window: if n > 0 { p5 } else { mean },
                min_window: if min.is_finite() { min } else { mean },
                max_sliding_window: max_sliding,
            }
        })
        .collect();
    out.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
    out
}

/// The `p`-th percentile (0..=100) of `values` (sorted in place); 0 when empty.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank.min(values.len() - 1)]
}

/// Sum of every sample of metric `name` whatever its labels (e.g. all shards of
/// `gateway_forward_records_sent_total`).
pub fn metric_sum(gw: &crate::GatewayProcess, name: &str) -> Result<f64, HarnessError> {
    let (_, body) = gw.http_get("/metrics")?;
    Ok(body
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(sample, _)| {
            sample
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum())
}

/// Every sample of metric `name` as (labels, value), e.g. (`shard_id="shardId-…"`, 3.0).
pub fn metric_samples(
    gw: &crate::GatewayProcess,
    name: &str,
) -> Result<Vec<(String, f64)>, HarnessError> {
    let (_, body) = gw.http_get("/metrics")?;
    Ok(body
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(sample, v)| {
            let labels = sample
                .strip_prefix(name)?
                .strip_prefix('{')?
                .strip_suffix('}')?;
            Some((labels.to_owned(), v.parse().ok()?))
        })
        .collect())
}

/// A `[forward]` table for `stream` plus extra lines.
pub fn forward_toml(stream: &str, extra: &str) -> String {
    format!("[forward]\nenabled = true\nstream_name = \"{stream}\"\n{extra}\n")
}

/// `per_shard` device IDs `<prefix><n>` for each of `ranges` (hash key ranges), so every
/// shard holds the same number of devices (a balanced backlog for benchmarks).
pub fn devices_per_shard(prefix: &str, ranges: &[(u128, u128)], per_shard: usize) -> Vec<String> {
    let mut count = vec![0usize; ranges.len()];
    let mut out = Vec::new();
    let mut n = 0u64;
    while count.iter().any(|&c| c < per_shard) {
        let id = format!("{prefix}{n:05}");
        n += 1;
        let h = crate::kinesis_emu::hash_key(&id);
        if let Some(i) = ranges.iter().position(|&(s, e)| s <= h && h <= e)
            && count[i] < per_shard
        {
            count[i] += 1;
            out.push(id);
        }
    }
    out
}

/// Appends `batches` batches of `readings` readings for every device (boot 1, sequence
/// from 0) through the buffer writer, arrived `received_ms`. Returns the readings stored
/// (the writer commits them before it answers the next delete or stops).
pub fn prefill(
    writer: &gateway::buffer::WriterHandle,
    devices: &[String],
    batches: u32,
    readings: u32,
    received_ms: i64,
) -> Result<u64, HarnessError> {
    let mut rng = fastrand::Rng::with_seed(17);
    for b in 0..batches {
        for d in devices {
            let batch = gateway::buffer::IncomingBatch {
                device: d.clone(),
                boot: 1,
                first_seq: b * readings,
                held_from: 0,
                received_ms,
                utc_offset_ms: received_ms - 3_600_000,
                readings: (0..readings)
                    .map(|i| gateway::buffer::RecordReading {
                        t_ms: 3_600_000 + u64::from(b * readings + i) * 100,
                        channel: (i % 4) as u8,
                        kind: (i % 2) as u8,
                        value: rng.f32() * 40.0,
                    })
                    .collect(),
                arrived: Instant::now(),
            };
            writer
                .append(batch)
                .map_err(|_| HarnessError::setup("buffer writer stopped"))?;
        }
    }
    Ok(u64::from(batches) * u64::from(readings) * devices.len() as u64)
}
