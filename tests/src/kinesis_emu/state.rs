//! The emulator's data: streams, shards, per-shard 1-second windows, failure injection and
//! the log of everything that arrived.

use md5::{Digest, Md5};
use std::collections::VecDeque;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The window Kinesis limits are defined over.
const WINDOW: Duration = Duration::from_secs(1);

/// How the endpoint fails during an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// Connections are closed without an answer (like a dead network path or a refused port).
    Refuse,
    /// Every call answers HTTP 500 `InternalFailure`.
    ServerError,
    /// Requests are read and never answered (the client's timeouts must fire).
    Hang,
    /// Every call answers HTTP 400 `UnrecognizedClientException` (bad credentials).
    BadCredentials,
}

/// What happened to one record of a PutRecords/PutRecord call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Written.
    Accepted,
    /// Refused because the shard's 1-second window was full.
    Throttled,
    /// Refused by failure injection (`throttle_share`).
    InjectedThrottle,
}

/// One record as it arrived (accepted or not).
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Partition key.
    pub partition_key: String,
    /// SipHash of the data (identifies identical resends).
    pub data_hash: u64,
    /// SipHash of each user record's data when the record is a KPL aggregate (identifies a
    /// user record resent in another aggregate); the data's hash for a plain record.
    pub user_hashes: Vec<u64>,
    /// The outcome.
    pub outcome: Outcome,
    /// The shard it maps to.
    pub shard_id: String,
    /// When the call was handled.
    pub at: Instant,
}

/// A record written to a shard.
#[derive(Debug, Clone)]
pub struct AcceptedRecord {
    /// Shard written to.
    pub shard_id: String,
    /// Partition key.
    pub partition_key: String,
    /// Data (empty unless the emulator keeps data).
    pub data: Vec<u8>,
    /// Bytes counted against the shard (key + data).
    pub bytes: u64,
    /// When the call was handled (monotonic).
    pub arrival: Instant,
    /// The same as Unix ms (to compare with the gateway's `received_ms`).
    pub arrival_unix_ms: f64,
    /// Sequence number within the shard.
    pub sequence_number: u64,
}

/// A shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// `shardId-000000000003`.
    pub shard_id: String,
    /// First hash key.
    pub start: u128,
    /// Last hash key (inclusive).
    pub end: u128,
    /// Parent when created by a split.
    pub parent: Option<String>,
    /// Closed by a reshard.
    pub closed: bool,
}

#[derive(Debug)]
pub(crate) struct Shard {
    pub(crate) info: ShardInfo,
    /// Accepted (time, bytes) within the last window.
    window: VecDeque<(Instant, u64)>,
    window_bytes: u64,
    next_seq: u64,
    pub(crate) closing_seq: Option<u64>,
}

#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) name: String,
    pub(crate) shards: Vec<Shard>,
    pub(crate) created_unix: f64,
}

/// Limits and behaviour, changeable while running.
#[derive(Debug, Clone)]
pub struct EmulatorSettings {
    /// Records per shard per 1-second window.
    pub records_per_sec: u32,
    /// Bytes (key + data) per shard per 1-second window.
    pub bytes_per_sec: u64,
    /// Share of records refused with `ProvisionedThroughputExceededException` at random.
    pub throttle_share: f64,
    /// The endpoint fails while set.
    pub outage: Option<Outage>,
    /// Keep every accepted record's data (tests); off for long benchmarks saves memory.
    pub keep_data: bool,
    /// Shards per ListShards page (small by default so pagination is always exercised).
    pub list_page_size: usize,
    /// Delay added to every call (simulates network latency).
    pub latency: Duration,
}

impl Default for EmulatorSettings {
    fn default() -> Self {
        Self {
            records_per_sec: 1000,
            bytes_per_sec: 1 << 20,
            throttle_share: 0.0,
            outage: None,
            keep_data: true,
            list_page_size: 2,
            latency: Duration::ZERO,
        }
    }
}

/// Counters over the whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmulatorStats {
    /// PutRecords calls handled (not counting outages).
    pub put_records_calls: u64,
    /// PutRecord calls handled.
    pub put_record_calls: u64,
    /// ListShards calls handled.
    pub list_shards_calls: u64,
    /// Calls refused or failed by an outage.
    pub outage_calls: u64,
    /// Requests that broke a Kinesis limit (too many records/bytes, key length, ...).
    pub invalid_requests: u64,
    /// Records throttled because a window was full.
    pub throttled: u64,
    /// Records throttled by injection.
    pub injected_throttles: u64,
    /// Records accepted.
    pub accepted: u64,
}

/// Everything behind the emulator's lock.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) settings: EmulatorSettings,
    pub(crate) streams: Vec<Stream>,
    pub(crate) accepted: Vec<AcceptedRecord>,
    pub(crate) attempts: Vec<Attempt>,
    pub(crate) stats: EmulatorStats,
    rng: fastrand::Rng,
    next_shard: u64,
}

/// The Kinesis hash key of a partition key.
pub fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// `n` ranges splitting the hash key space at exact multiples of 2^128 / n (as AWS does).
pub fn even_ranges(n: u32) -> Vec<(u128, u128)> {
    let n = u128::from(n.max(1));
    let step = u128::MAX / n + u128::from(u128::MAX % n == n - 1);
    (0..n)
        .map(|i| {
            let start = i * step;
            let end = if i == n - 1 {
                u128::MAX
            } else {
                (i + 1) * step - 1
            };
            (start, end)
        })
        .collect()
}

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn shard_id(n: u64) -> String {
    format!("shardId-{n:012}")
}

impl Shard {
    fn new(id: String, start: u128, end: u128, parent: Option<String>) -> Self {
        Self {
            info: ShardInfo {
                shard_id: id,
                start,
                end,
                parent,
                closed: false,
            },
            window: VecDeque::new(),
            window_bytes: 0,
            next_seq: 0,
            closing_seq: None,
        }
    }

    /// Admits a record into the window if it stays within the limits.
    fn admit(&mut self, now: Instant, bytes: u64, s: &EmulatorSettings) -> bool {
        // The window is (now - 1 s, now].
        while let Some(&(t, b)) = self.window.front() {
            if now.duration_since(t) < WINDOW {
                break;
            }
            self.window.pop_front();
            self.window_bytes -= b;
        }
        if self.window.len() as u64 + 1 > u64::from(s.records_per_sec)
            || self.window_bytes + bytes > s.bytes_per_sec
        {
            return false;
        }
        self.window.push_back((now, bytes));
        self.window_bytes += bytes;
        true
    }
}

impl State {
    pub(crate) fn new(
        settings: EmulatorSettings,
        streams: &[(String, Vec<(u128, u128)>)],
        seed: u64,
    ) -> Self {
        let mut next_shard = 0;
        let streams = streams
            .iter()
            .map(|(name, ranges)| Stream {
                name: name.clone(),
                shards: ranges
                    .iter()
                    .map(|&(s, e)| {
                        let sh = Shard::new(shard_id(next_shard), s, e, None);
                        next_shard += 1;
                        sh
                    })
                    .collect(),
                created_unix: unix_ms() / 1000.0,
            })
            .collect();
        Self {
            settings,
            streams,
            accepted: Vec::new(),
            attempts: Vec::new(),
            stats: EmulatorStats::default(),
            rng: fastrand::Rng::with_seed(seed),
            next_shard,
        }
    }

    pub(crate) fn stream_mut(&mut self, name: &str) -> Option<&mut Stream> {
        self.streams.iter_mut().find(|s| s.name == name)
    }

    /// Writes (or refuses) one record; returns the outcome and the shard.
    pub(crate) fn put(
        &mut self,
        stream: usize,
        partition_key: &str,
        explicit_hash_key: Option<u128>,
        data: Vec<u8>,
        now: Instant,
    ) -> (Outcome, String, u64) {
        let hash = explicit_hash_key.unwrap_or_else(|| hash_key(partition_key));
        let bytes = (partition_key.len() + data.len()) as u64;
        let injected =
            self.settings.throttle_share > 0.0 && self.rng.f64() < self.settings.throttle_share;
        let settings = self.settings.clone();
        let Some(shard) = self.streams[stream]
            .shards
            .iter_mut()
            .find(|s| !s.info.closed && s.info.start <= hash && hash <= s.info.end)
        else {
            // Unreachable with a consistent shard list: the open shards cover the space.
            return (Outcome::Throttled, String::new(), 0);
        };
        let outcome = if injected {
            Outcome::InjectedThrottle
        } else if shard.admit(now, bytes, &settings) {
            Outcome::Accepted
        } else {
            Outcome::Throttled
        };
        let id = shard.info.shard_id.clone();
        let siphash = |bytes: &[u8]| {
            let mut hasher = DefaultHasher::new();
            bytes.hash(&mut hasher);
            hasher.finish()
        };
        let user_hashes = match crate::kpl::deaggregate(&data) {
            Ok(Some(users)) => users.iter().map(|(_, d)| siphash(d)).collect(),
            _ => vec![siphash(&data)],
        };
        self.attempts.push(Attempt {
            partition_key: partition_key.to_owned(),
            data_hash: siphash(&data),
            user_hashes,
            outcome,
            shard_id: id.clone(),
            at: now,
        });
        let mut seq = 0;
        match outcome {
            Outcome::Accepted => {
                seq = shard.next_seq;
                shard.next_seq += 1;
                self.stats.accepted += 1;
                self.accepted.push(AcceptedRecord {
                    shard_id: id.clone(),
                    partition_key: partition_key.to_owned(),
                    data: if settings.keep_data { data } else { Vec::new() },
                    bytes,
                    arrival: now,
                    arrival_unix_ms: unix_ms(),
                    sequence_number: seq,
                });
            }
            Outcome::Throttled => self.stats.throttled += 1,
            Outcome::InjectedThrottle => self.stats.injected_throttles += 1,
        }
        (outcome, id, seq)
    }

    /// Splits an open shard at `at` (the second child starts there).
    pub(crate) fn split(&mut self, stream: &str, shard: &str, at: u128) -> Result<(), String> {
        let mut next = self.next_shard;
        let s = self
            .stream_mut(stream)
            .ok_or_else(|| format!("no stream {stream}"))?;
        let parent = s
            .shards
            .iter_mut()
            .find(|x| x.info.shard_id == shard && !x.info.closed)
            .ok_or_else(|| format!("no open shard {shard}"))?;
        if at <= parent.info.start || at > parent.info.end {
            return Err(format!("{at} is not inside {shard}"));
        }
        parent.info.closed = true;
        parent.closing_seq = Some(parent.next_seq);
        let (start, end, pid) = (
            parent.info.start,
            parent.info.end,
            parent.info.shard_id.clone(),
        );
        let a = Shard::new(shard_id(next), start, at - 1, Some(pid.clone()));
        let b = Shard::new(shard_id(next + 1), at, end, Some(pid));
        next += 2;
        s.shards.push(a);
        s.shards.push(b);
        self.next_shard = next;
        Ok(())
    }

    /// Closes every open shard and opens `n` even ones.
    pub(crate) fn update_shard_count(&mut self, stream: &str, n: u32) -> Result<(), String> {
        let mut next = self.next_shard;
        let s = self
            .stream_mut(stream)
            .ok_or_else(|| format!("no stream {stream}"))?;
        for sh in s.shards.iter_mut().filter(|x| !x.info.closed) {
            sh.info.closed = true;
            sh.closing_seq = Some(sh.next_seq);
        }
        for (start, end) in even_ranges(n) {
            s.shards.push(Shard::new(shard_id(next), start, end, None));
            next += 1;
        }
        self.next_shard = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_ranges_cover_the_space() {
        for n in 1..9 {
            let r = even_ranges(n);
            assert_eq!(r.len(), n as usize);
            assert_eq!(r[0].0, 0);
            assert_eq!(r[r.len() - 1].1, u128::MAX);
            for w in r.windows(2) {
                assert_eq!(w[0].1 + 1, w[1].0);
            }
        }
    }
}
