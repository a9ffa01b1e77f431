//! The fresh window: entries the buffer writer admitted (see [`crate::buffer::fresh`]), kept
//! until every lane has passed them, so a lane that has caught up with the log takes new
//! entries at once instead of after their commit and the next scan.
//!
//! Invariant: with `start = Some(s)`, every entry published with an id at or above `s` is in
//! `entries` or was taken by a lane (and is then claimed). A lane whose cursor has reached
//! `s - 1` therefore finds here everything it has not seen; a lane further back reads the log
//! first (the scan), which ends at the buffer's `committed_end`.

use super::lane::Entry;
use crate::buffer::FreshEntry;
use std::collections::BTreeMap;

/// Recently admitted entries, in id order.
#[derive(Debug)]
pub struct FreshWindow {
    entries: BTreeMap<u64, Entry>,
    start: Option<u64>,
    bytes: u64,
    max_bytes: u64,
}

impl FreshWindow {
    /// An empty window holding at most `max_bytes` of entries (the oldest go first).
    pub fn new(max_bytes: u64) -> Self {
        Self {
            entries: BTreeMap::new(),
            start: None,
            bytes: 0,
            max_bytes,
        }
    }

    /// Adds an entry from the feed.
    pub fn push(&mut self, fresh: FreshEntry) {
        let id = fresh.id;
        if fresh.after_gap || self.start.is_none() || self.last().is_some_and(|l| id <= l) {
            // Something before it was not published: nothing older can be vouched for.
            self.entries.clear();
            self.bytes = 0;
            self.start = Some(id);
        }
        self.bytes += fresh.stored_bytes;
        self.entries.insert(
            id,
            Entry {
                id,
                stored_bytes: fresh.stored_bytes,
                record: fresh.record,
            },
        );
        while self.bytes > self.max_bytes {
            let Some((first, e)) = self.entries.pop_first() else {
                break;
            };
            self.bytes -= e.stored_bytes;
            self.start = Some(first + 1);
        }
    }

    fn last(&self) -> Option<u64> {
        self.entries.last_key_value().map(|(k, _)| *k)
    }

    /// True when a lane at `cursor` finds here every entry after it that it has not taken.
    pub fn covers(&self, cursor: Option<u64>) -> bool {
        match (self.start, cursor) {
            (Some(start), Some(c)) => c.saturating_add(1) >= start,
            (Some(start), None) => start == 0,
            (None, _) => false,
        }
    }

    /// Entries after `cursor`, in id order.
    pub fn after(&self, cursor: Option<u64>) -> impl Iterator<Item = (&u64, &Entry)> {
        let from = cursor.map_or(0, |c| c.saturating_add(1));
        self.entries.range(from..)
    }

    /// Removes an entry a lane took.
    pub fn take(&mut self, id: u64) -> Option<Entry> {
        let e = self.entries.remove(&id)?;
        self.bytes -= e.stored_bytes;
        Some(e)
    }

    /// Drops entries at or below `id` (every lane has passed them).
    pub fn prune_through(&mut self, id: u64) {
        while let Some(entry) = self.entries.first_entry() {
            if *entry.key() > id {
                break;
            }
            self.bytes -= entry.remove().stored_bytes;
        }
        if let Some(start) = self.start.as_mut() {
            *start = (*start).max(id.saturating_add(1));
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::BatchRecord;

    fn fresh(id: u64, after_gap: bool) -> FreshEntry {
        FreshEntry {
            id,
            stored_bytes: 10,
            record: BatchRecord {
                device: format!("d{id}"),
                boot: 1,
                first_seq: 0,
                received_ms: 0,
                utc_offset_ms: 0,
                readings: Vec::new(),
            },
            after_gap,
        }
    }

    #[test]
    fn covers_only_lanes_that_reached_the_start() {
        let mut w = FreshWindow::new(1000);
        assert!(!w.covers(Some(100)), "nothing published yet");
        w.push(fresh(5, true));
        w.push(fresh(6, false));
        assert!(w.covers(Some(4)) && w.covers(Some(6)) && w.covers(Some(9)));
        assert!(!w.covers(Some(3)) && !w.covers(None));
        let ids: Vec<u64> = w.after(Some(5)).map(|(k, _)| *k).collect();
        assert_eq!(ids, [6]);
    }

    #[test]
    fn a_gap_forgets_everything_before_it() {
        let mut w = FreshWindow::new(1000);
        w.push(fresh(5, true));
        w.push(fresh(9, true));
        assert!(!w.covers(Some(5)), "ids 6..=8 were never seen");
        assert!(w.covers(Some(8)));
        assert_eq!(w.after(None).count(), 1);
    }

    #[test]
    fn the_cap_moves_the_start_past_what_it_dropped() {
        let mut w = FreshWindow::new(25);
        for id in 0..4 {
            w.push(fresh(id, id == 0));
        }
        assert_eq!(w.bytes(), 20);
        assert!(!w.covers(Some(0)) && w.covers(Some(1)));
        assert_eq!(w.after(None).next().map(|(k, _)| *k), Some(2));
    }

    #[test]
    fn taking_and_pruning_keep_the_byte_count() {
        let mut w = FreshWindow::new(1000);
        for id in 10..15 {
            w.push(fresh(id, id == 10));
        }
        assert_eq!(w.take(12).map(|e| e.id), Some(12));
        assert_eq!(w.take(12), None);
        w.prune_through(11);
        assert_eq!(w.bytes(), 20);
        assert!(!w.covers(Some(10)) && w.covers(Some(11)));
        assert_eq!(w.after(None).map(|(k, _)| *k).collect::<Vec<_>>(), [13, 14]);
    }
}
