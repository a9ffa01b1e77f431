//! The exported set: which readings a directory already holds, by identity.
//!
//! `(device, boot, seq)` identifies a reading (the sequencer stores each one once per
//! buffer, and devices never reuse a sequence number within a boot). The set keeps, per
//! device and boot, sorted disjoint ranges of sequence numbers. Since a device's readings
//! are exported in `(boot, seq)` order, a device usually needs one range per boot.
//!
//! Invariant: ranges of one `(device, boot)` are sorted, disjoint and not adjacent (adjacent
//! ranges are merged), so lookups are a binary search.

use std::collections::BTreeMap;

/// Inclusive sequence ranges of one device boot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranges(Vec<(u32, u32)>);

/// How much of a run of sequence numbers a [`Ranges`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// None of it.
    None,
    /// All of it.
    All,
    /// Some of it (check each number with [`Ranges::contains`]).
    Some,
}

impl Ranges {
    /// True if `seq` is in a range.
    pub fn contains(&self, seq: u32) -> bool {
        let i = self.0.partition_point(|&(_, to)| to < seq);
        self.0.get(i).is_some_and(|&(from, _)| from <= seq)
    }

    /// How much of `from..=to` is held.
    pub fn coverage(&self, from: u32, to: u32) -> Coverage {
        let i = self.0.partition_point(|&(_, end)| end < from);
        match self.0.get(i) {
            Some(&(a, b)) if a <= from && to <= b => Coverage::All,
            Some(&(a, _)) if a <= to => Coverage::Some,
            _ => Coverage::None,
        }
    }

    /// Adds `from..=to`, merging with overlapping or adjacent ranges.
    pub fn insert(&mut self, from: u32, to: u32) {
        debug_assert!(from <= to);
        // Fast path: exports usually extend the last range.
        if let Some(last) = self.0.last_mut()
            && from >= last.0
            && from <= last.1.saturating_add(1)
        {
            last.1 = last.1.max(to);
            return;
        }
        let start = self.0.partition_point(|&(_, b)| b.saturating_add(1) < from);
        let end = self.0.partition_point(|&(a, _)| a <= to.saturating_add(1));
        if start == end {
            self.0.insert(start, (from, to));
            return;
        }
        let merged = (from.min(self.0[start].0), to.max(self.0[end - 1].1));
        self.0.splice(start..end, [merged]);
    }

    /// The ranges, sorted.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.0.iter().copied()
    }

    /// Readings held.
    pub fn len(&self) -> u64 {
        self.0.iter().map(|&(a, b)| u64::from(b - a) + 1).sum()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Readings held by a directory, by device and boot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportedSet {
    devices: BTreeMap<String, BTreeMap<u32, Ranges>>,
}

impl ExportedSet {
    /// The ranges of a device boot, if any.
    pub fn get(&self, device: &str, boot: u32) -> Option<&Ranges> {
        self.devices.get(device).and_then(|b| b.get(&boot))
    }

    /// Adds `from..=to` of a device boot.
    pub fn insert(&mut self, device: &str, boot: u32, from: u32, to: u32) {
        let boots = match self.devices.get_mut(device) {
            Some(b) => b,
            None => self.devices.entry(device.to_owned()).or_default(),
        };
        boots.entry(boot).or_default().insert(from, to);
    }

    /// Adds everything in `other`.
    pub fn extend(&mut self, other: &ExportedSet) {
        for (device, boot, from, to) in other.triples() {
            self.insert(device, boot, from, to);
        }
    }

    /// Every range as `(device, boot, from, to)`, sorted.
    pub fn triples(&self) -> impl Iterator<Item = (&str, u32, u32, u32)> + '_ {
        self.devices.iter().flat_map(|(d, boots)| {
            boots
                .iter()
                .flat_map(move |(&b, r)| r.iter().map(move |(f, t)| (d.as_str(), b, f, t)))
        })
    }

    /// Readings held.
    pub fn len(&self) -> u64 {
        self.devices
            .values()
            .flat_map(|b| b.values())
            .map(Ranges::len)
            .sum()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Clears the set.
    pub fn clear(&mut self) {
        self.devices.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        /// The ranges behave like the set of numbers inserted (model test).
        #[test]
        fn ranges_match_a_set_model(ops in proptest::collection::vec((0u32..200, 0u32..8), 1..60)) {
            let mut r = Ranges::default();
            let mut model = BTreeSet::new();
            for (from, len) in ops {
                r.insert(from, from + len);
                model.extend(from..=from + len);
                let v: Vec<_> = r.iter().collect();
                prop_assert!(v.windows(2).all(|w| w[0].1 + 1 < w[1].0), "{v:?}");
            }
            prop_assert_eq!(r.len(), model.len() as u64);
            for s in 0..220 {
                prop_assert_eq!(r.contains(s), model.contains(&s));
            }
            for (a, b) in [(0, 5), (10, 30), (150, 215), (199, 199)] {
                let n = (a..=b).filter(|s| model.contains(s)).count();
                let expected = match n {
                    0 => Coverage::None,
                    n if n == (b - a + 1) as usize => Coverage::All,
                    _ => Coverage::Some,
                };
                prop_assert_eq!(r.coverage(a, b), expected);
            }
        }
    }

    #[test]
    fn set_keys_by_device_and_boot() {
        let mut s = ExportedSet::default();
        s.insert("a", 1, 0, 9);
        s.insert("a", 2, 0, 0);
        s.insert("b", 1, 5, 5);
        assert_eq!(s.len(), 12);
        assert!(s.get("a", 1).is_some_and(|r| r.contains(9)));
        assert!(s.get("a", 3).is_none() && s.get("c", 1).is_none());
        let mut t = ExportedSet::default();
        t.extend(&s);
        assert_eq!(t, s);
    }
}
