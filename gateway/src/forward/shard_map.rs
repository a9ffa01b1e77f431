//! Which open shard a partition key goes to.
//!
//! Kinesis hashes a partition key with MD5, reads the digest as a big-endian `u128`, and writes
//! the record to the open shard whose `HashKeyRange` (`StartingHashKey..=EndingHashKey`)
//! contains it. Ranges come from `ListShards`; nothing here assumes equal splits.
//!
//! Invariant of a [`ShardMap`]: its ranges are sorted, do not overlap and cover
//! `0..=u128::MAX` without gaps, so every key has exactly one shard. A listing that breaks this
//! (e.g. read in the middle of a reshard without the open-shard filter) is rejected and the
//! previous map stays in use.

use md5::{Digest, Md5};
use std::sync::Arc;

/// An open shard and the hash keys it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRange {
    /// `ShardId`.
    pub shard_id: Arc<str>,
    /// `StartingHashKey`.
    pub start: u128,
    /// `EndingHashKey` (inclusive).
    pub end: u128,
}

/// The open shards of a stream by hash key range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    ranges: Vec<ShardRange>,
}

/// Why a shard listing cannot be used as a map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardMapError {
    /// No open shard was listed.
    #[error("the stream has no open shard")]
    Empty,
    /// A hash key is not a decimal `u128`.
    #[error("shard {shard_id}: hash key {key:?} is not a 128-bit decimal")]
    BadHashKey {
        /// The shard.
        shard_id: String,
        /// The text.
        key: String,
    },
    /// The open shards leave a gap or overlap.
    #[error("open shards do not cover the hash key space exactly (at {at})")]
    NotCovering {
        /// First hash key where coverage breaks.
        at: u128,
    },
}

/// The Kinesis hash key of a partition key.
pub fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

impl ShardMap {
    /// Builds a map from `(shard id, starting hash key, ending hash key)` of the open shards.
    pub fn new<'a>(
        open_shards: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) -> Result<Self, ShardMapError> {
        let mut ranges = Vec::new();
        for (id, start, end) in open_shards {
            let parse = |key: &str| {
                key.parse::<u128>().map_err(|_| ShardMapError::BadHashKey {
                    shard_id: id.to_owned(),
                    key: key.to_owned(),
                })
            };
            ranges.push(ShardRange {
                shard_id: Arc::from(id),
                start: parse(start)?,
                end: parse(end)?,
            });
        }
        Self::from_ranges(ranges)
    }

    /// Builds a map from parsed ranges, checking the coverage invariant.
    pub fn from_ranges(mut ranges: Vec<ShardRange>) -> Result<Self, ShardMapError> {
        if ranges.is_empty() {
            return Err(ShardMapError::Empty);
        }
        ranges.sort_by_key(|r| r.start);
        let mut next: Option<u128> = Some(0);
        for r in &ranges {
            match next {
                Some(n) if n == r.start && r.end >= r.start => next = r.end.checked_add(1),
                Some(n) => return Err(ShardMapError::NotCovering { at: n }),
                // The previous range already ended at u128::MAX: this one overlaps.
                None => return Err(ShardMapError::NotCovering { at: r.start }),
            }
        }
        if let Some(n) = next {
            return Err(ShardMapError::NotCovering { at: n });
        }
        Ok(Self { ranges })
    }

    /// Index (into [`Self::shards`]) of the shard owning `partition_key`.
    pub fn index_of(&self, partition_key: &str) -> usize {
        let h = hash_key(partition_key);
        // The first range starting above h, minus one; ranges cover everything from 0.
        self.ranges
            .partition_point(|r| r.start <= h)
            .saturating_sub(1)
    }

    /// The shard owning `partition_key`.
    pub fn shard_of(&self, partition_key: &str) -> &Arc<str> {
        &self.ranges[self.index_of(partition_key)].shard_id
    }

    /// The shards in hash key order.
    pub fn shards(&self) -> &[ShardRange] {
        &self.ranges
    }

    /// Number of open shards.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Always false (a map has at least one shard).
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_hash_key_matches_known_digests() {
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(hash_key(""), 0xd41d8cd98f00b204e9800998ecf8427e);
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(hash_key("a"), 0x0cc175b9c0f1b6a831c399e269772661);
    }

    #[test]
    fn unequal_ranges_route_by_range_not_by_count() {
        let a = hash_key("a"); // 0x0cc1..., low
        let empty = hash_key(""); // 0xd41d..., high
        let split = (1u128 << 127).to_string();
        let below = (a + 1).to_string();
        let map = ShardMap::new([
            ("s-low", "0", below.as_str()),
            (
                "s-mid",
                &(a + 2).to_string(),
                &((1u128 << 127) - 1).to_string(),
            ),
            ("s-high", split.as_str(), &u128::MAX.to_string()),
        ])
        .expect("covers");
        assert_eq!(map.shard_of("a").as_ref(), "s-low");
        assert_eq!(map.shard_of("").as_ref(), "s-high");
        assert!(empty >= 1u128 << 127);
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn boundaries_are_inclusive() {
        let map = ShardMap::from_ranges(vec![
            ShardRange {
                shard_id: "b".into(),
                start: 11,
                end: u128::MAX,
            },
            ShardRange {
                shard_id: "a".into(),
                start: 0,
                end: 10,
            },
        ])
        .expect("covers");
        let idx = |h: u128| map.ranges.partition_point(|r| r.start <= h) - 1;
        assert_eq!(idx(0), 0);
        assert_eq!(idx(10), 0);
        assert_eq!(idx(11), 1);
        assert_eq!(idx(u128::MAX), 1);
    }

    #[test]
    fn gaps_overlaps_and_garbage_are_rejected() {
        let max = u128::MAX.to_string();
        assert_eq!(
            ShardMap::new([("a", "0", "10"), ("b", "12", max.as_str())]),
            Err(ShardMapError::NotCovering { at: 11 })
        );
        assert!(ShardMap::new([("a", "0", "10"), ("b", "5", max.as_str())]).is_err());
        assert!(ShardMap::new([("a", "0", "10")]).is_err());
        assert!(ShardMap::new([("a", "0", max.as_str()), ("b", "0", max.as_str())]).is_err());
        assert!(matches!(
            ShardMap::new([("a", "0", "x")]),
            Err(ShardMapError::BadHashKey { .. })
        ));
        assert_eq!(ShardMap::new(std::iter::empty()), Err(ShardMapError::Empty));
    }
}
