//! `gateway tail --check`: what the stream holds, per device (readings, duplicates, gaps in
//! `(boot, seq)`) and per shard (records and bytes per second), and what a consumer would
//! have had to drop.

use crate::formats::read::Reading;
use serde::Serialize;
use std::collections::BTreeMap;

/// Sequence numbers seen, as disjoint inclusive ranges keyed by their start. Readings mostly
/// arrive in order, so an insert usually extends the last range.
#[derive(Debug, Default, Clone)]
struct Ranges(BTreeMap<u64, u64>);

impl Ranges {
    /// Records `seq`; false if it was already there (a duplicate).
    fn insert(&mut self, seq: u64) -> bool {
        if let Some((&start, &end)) = self.0.range(..=seq).next_back() {
            if seq <= end {
                return false;
            }
            if seq == end + 1 {
                let mut new_end = seq;
                if let Some(&next_end) = self.0.get(&(seq + 1)) {
                    self.0.remove(&(seq + 1));
                    new_end = next_end;
                }
                self.0.insert(start, new_end);
                return true;
            }
        }
        match self.0.get(&(seq + 1)).copied() {
            Some(end) => {
                self.0.remove(&(seq + 1));
                self.0.insert(seq, end);
            }
            None => {
                self.0.insert(seq, seq);
            }
        }
        true
    }

    /// Sequence numbers missing between the first and the last seen.
    fn gaps(&self) -> u64 {
        let mut gaps = 0;
        let mut previous_end: Option<u64> = None;
        for (&start, &end) in &self.0 {
            if let Some(p) = previous_end {
                gaps += start - p - 1;
            }
            previous_end = Some(end);
        }
        gaps
    }

    #[cfg(test)]
    fn count(&self) -> u64 {
        self.0.iter().map(|(s, e)| e - s + 1).sum()
    }
}

/// One device's readings in the stream.
#[derive(Debug, Default, Clone, Serialize)]
pub struct DeviceReport {
    /// Distinct readings.
    pub readings: u64,
    /// Readings seen more than once (at-least-once delivery allows them).
    pub duplicates: u64,
    /// Sequence numbers missing inside each boot's range.
    pub gaps: u64,
    /// Boots seen.
    pub boots: usize,
    /// Per boot: first and last sequence number seen.
    pub ranges: BTreeMap<u32, (u64, u64)>,
}

/// One shard's records.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ShardReport {
    /// Kinesis records.
    pub records: u64,
    /// User records in them (a plain record counts as one).
    pub user_records: u64,
    /// Bytes (partition key + data).
    pub bytes: u64,
    /// Records per second over the seconds between the first and the last arrival.
    pub records_per_sec_mean: f64,
    /// Most records arriving in one second.
    pub records_per_sec_max: u64,
    /// Bytes per second, mean as above.
    pub bytes_per_sec_mean: f64,
    /// Most bytes arriving in one second.
    pub bytes_per_sec_max: u64,
    /// User records whose partition key hashes outside this shard (KCL drops them).
    pub misplaced: u64,
    #[serde(skip)]
    seconds: BTreeMap<i64, (u64, u64)>,
}

/// The whole check.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    /// By device ID.
    pub devices: BTreeMap<String, DeviceReport>,
    /// By shard ID.
    pub shards: BTreeMap<String, ShardReport>,
    /// Records (or user records) that are not one of the gateway's shapes.
    pub undecodable: u64,
    /// Distinct readings in total.
    pub readings: u64,
    /// Duplicates in total.
    pub duplicates: u64,
    /// Gaps in total.
    pub gaps: u64,
    /// Misplaced user records in total.
    pub misplaced: u64,
    #[serde(skip)]
    seen: BTreeMap<(String, u32), Ranges>,
}

impl Report {
    /// Counts a Kinesis record arriving at `arrival_ms` on `shard` with `user_records`.
    pub fn record(&mut self, shard: &str, arrival_ms: i64, bytes: u64, user_records: u64) {
        let s = self.shards.entry(shard.to_owned()).or_default();
        s.records += 1;
        s.user_records += user_records;
        s.bytes += bytes;
        let second = s.seconds.entry(arrival_ms.div_euclid(1000)).or_default();
        second.0 += 1;
        second.1 += bytes;
    }

    /// Counts a user record that KCL would drop.
    pub fn misplaced(&mut self, shard: &str) {
        self.shards.entry(shard.to_owned()).or_default().misplaced += 1;
        self.misplaced += 1;
    }

    /// Counts data that is not a gateway record.
    pub fn undecodable(&mut self) {
        self.undecodable += 1;
    }

    /// Counts a reading.
    pub fn reading(&mut self, r: &Reading) {
        let ranges = self.seen.entry((r.device.clone(), r.boot)).or_default();
        let device = self.devices.entry(r.device.clone()).or_default();
        if ranges.insert(r.seq) {
            device.readings += 1;
        } else {
            device.duplicates += 1;
        }
    }

    /// Fills in the derived numbers.
    pub fn finish(&mut self) {
        for ((device, boot), ranges) in &self.seen {
            let d = self.devices.entry(device.clone()).or_default();
            d.gaps += ranges.gaps();
            d.boots += 1;
            if let (Some((&first, _)), Some((_, &last))) =
                (ranges.0.first_key_value(), ranges.0.last_key_value())
            {
                d.ranges.insert(*boot, (first, last));
            }
        }
        self.readings = self.devices.values().map(|d| d.readings).sum();
        self.duplicates = self.devices.values().map(|d| d.duplicates).sum();
        self.gaps = self.devices.values().map(|d| d.gaps).sum();
        for s in self.shards.values_mut() {
            let (Some((&first, _)), Some((&last, _))) =
                (s.seconds.first_key_value(), s.seconds.last_key_value())
            else {
                continue;
            };
            let span = (last - first + 1) as f64;
            s.records_per_sec_mean = s.records as f64 / span;
            s.bytes_per_sec_mean = s.bytes as f64 / span;
            s.records_per_sec_max = s.seconds.values().map(|v| v.0).max().unwrap_or(0);
            s.bytes_per_sec_max = s.seconds.values().map(|v| v.1).max().unwrap_or(0);
        }
    }

    /// Whether the stream holds everything it should: no gaps, nothing undecodable.
    /// Duplicates are allowed (delivery is at least once), and so are misplaced user records:
    /// a consumer drops them, and the gateway sends them again to their own shard (a gap
    /// shows if it did not).
    pub fn passed(&self) -> bool {
        self.gaps == 0 && self.undecodable == 0
    }

    /// The report as text.
    pub fn human(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for (id, s) in &self.shards {
            let _ = writeln!(
                out,
                "shard {id}: {} records, {} user records, {} bytes; records/s mean {:.1} max {}; bytes/s mean {:.0} max {}; misplaced {}",
                s.records,
                s.user_records,
                s.bytes,
                s.records_per_sec_mean,
                s.records_per_sec_max,
                s.bytes_per_sec_mean,
                s.bytes_per_sec_max,
                s.misplaced
            );
        }
        for (id, d) in &self.devices {
            let _ = writeln!(
                out,
                "device {id}: {} readings, {} duplicates, {} gaps, {} boot(s)",
                d.readings, d.duplicates, d.gaps, d.boots
            );
        }
        let _ = writeln!(
            out,
            "total: {} readings from {} devices, {} duplicates, {} gaps, {} misplaced user records, {} undecodable records: {}",
            self.readings,
            self.devices.len(),
            self.duplicates,
            self.gaps,
            self.misplaced,
            self.undecodable,
            if self.passed() { "PASS" } else { "FAIL" }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_count_gaps_and_duplicates_in_any_order() {
        let mut r = Ranges::default();
        for seq in [5, 3, 4, 10, 6, 12, 11, 0] {
            assert!(r.insert(seq), "{seq}");
        }
        assert!(!r.insert(4));
        assert!(!r.insert(11));
        // 0, 3..=6, 10..=12: missing 1, 2, 7, 8, 9
        assert_eq!(r.gaps(), 5);
        assert_eq!(r.count(), 8);
        for seq in [1, 2, 7, 8, 9] {
            assert!(r.insert(seq));
        }
        assert_eq!((r.gaps(), r.0.len()), (0, 1));
    }
}
