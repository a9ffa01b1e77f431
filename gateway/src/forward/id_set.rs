//! A set of log ids stored as ranges: the forwarder's claimed ids.
//!
//! Log ids are handed out in order and the forwarder claims nearly all of them in order, so
//! its claimed set is a few long runs (a live site: ~10,000-20,000 ids while deletes wait for
//! a checkpoint, in one or a few runs). A `HashSet<u64>` held ~18 bytes per id (~300 KiB at a
//! 1,000-device site, `docs/benchmarks.md` "Footprint (issue 16)"); runs cost 16 bytes each.
//! Operations are O(log runs).

use std::collections::BTreeMap;

/// Log ids, as disjoint runs `start..end` that never touch (adjacent runs are merged).
#[derive(Debug, Default, Clone)]
pub struct IdSet {
    /// Run start -> run end (exclusive).
    runs: BTreeMap<u64, u64>,
    len: usize,
}

impl IdSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ids in the set.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Runs the set is stored as (its memory is ~16 bytes each).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// The run holding `id`, as `(start, end)`.
    fn run_of(&self, id: u64) -> Option<(u64, u64)> {
        self.runs
            .range(..=id)
            .next_back()
            .filter(|&(_, &end)| id < end)
            .map(|(&start, &end)| (start, end))
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: &u64) -> bool {
        self.run_of(*id).is_some()
    }

    /// Adds `id`; false if it was already in.
    pub fn insert(&mut self, id: u64) -> bool {
        if self.contains(&id) {
            return false;
        }
        // Id `u64::MAX` cannot end a run (`end` is exclusive): it is never a log id.
        let end = id.saturating_add(1);
        let before = self
            .runs
            .range(..id)
            .next_back()
            .filter(|&(_, &e)| e == id)
            .map(|(&s, _)| s);
        let after = self.runs.get(&end).copied();
        match (before, after) {
            (Some(start), Some(after_end)) => {
                self.runs.remove(&end);
                self.runs.insert(start, after_end);
            }
            (Some(start), None) => {
                self.runs.insert(start, end);
            }
            (None, Some(after_end)) => {
                self.runs.remove(&end);
                self.runs.insert(id, after_end);
            }
            (None, None) => {
                self.runs.insert(id, end);
            }
        }
        self.len += 1;
        true
    }

    /// Removes `id`; false if it was not in.
    pub fn remove(&mut self, id: &u64) -> bool {
        let id = *id;
        let Some((start, end)) = self.run_of(id) else {
            return false;
        };
        self.runs.remove(&start);
        if start < id {
            self.runs.insert(start, id);
        }
        if id + 1 < end {
            self.runs.insert(id + 1, end);
        }
        self.len -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::IdSet;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn ids_in_order_make_one_run() {
        let mut set = IdSet::new();
        for id in 100..20_100 {
            assert!(set.insert(id));
        }
        assert_eq!((set.len(), set.runs()), (20_000, 1));
        assert!(!set.insert(150));
        assert!(set.contains(&100) && set.contains(&20_099));
        assert!(!set.contains(&99) && !set.contains(&20_100));
        // Deleted from the front, as the forwarder's deletes go.
        for id in 100..10_100 {
            assert!(set.remove(&id));
        }
        assert_eq!((set.len(), set.runs()), (10_000, 1));
        assert!(!set.remove(&100));
    }

    #[test]
    fn a_hole_splits_a_run_and_filling_it_merges_them() {
        let mut set = IdSet::new();
        for id in 0..10 {
            set.insert(id);
        }
        assert!(set.remove(&5));
        assert_eq!((set.len(), set.runs()), (9, 2));
        assert!(!set.contains(&5));
        assert!(set.insert(5));
        assert_eq!((set.len(), set.runs()), (10, 1));
        set.insert(u64::MAX - 1);
        assert!(set.contains(&(u64::MAX - 1)) && !set.contains(&u64::MAX));
    }

    proptest! {
        /// Any sequence of inserts and removes: the same answers as a `BTreeSet`, and runs
        /// that are disjoint, non-empty and never touch.
        #[test]
        fn behaves_like_a_set(ops in proptest::collection::vec((any::<bool>(), 0u64..64), 0..400)) {
            let (mut set, mut model) = (IdSet::new(), BTreeSet::new());
            for (insert, id) in ops {
                if insert {
                    prop_assert_eq!(set.insert(id), model.insert(id));
                } else {
                    prop_assert_eq!(set.remove(&id), model.remove(&id));
                }
                prop_assert_eq!(set.len(), model.len());
            }
            for id in 0..64 {
                prop_assert_eq!(set.contains(&id), model.contains(&id));
            }
            let mut last_end = None;
            for (&start, &end) in &set.runs {
                prop_assert!(start < end);
                if let Some(e) = last_end {
                    prop_assert!(e < start, "runs {e} and {start} touch or overlap");
                }
                last_end = Some(end);
            }
        }
    }
}
