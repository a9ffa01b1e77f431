//! The fresh feed: log entries handed to the forwarder the moment the writer admits them, before
//! their group commits, so delivery does not wait for the commit policy's interval (up to
//! ~0.9 s at low load, chosen for SD-card wear).
//!
//! What still waits for durability: the device's ack (after the commit, as always) and the
//! delete of a delivered entry (a delete is a later writer command, so it lands in the same
//! group as the append at the earliest, and redb applies both or neither).
//!
//! Invariants:
//! - Entries are published in id order. `after_gap` is set on the first entry published after
//!   one that was not (queue full, buffer not writable): the consumer must not assume it saw
//!   every id before it.
//! - `committed_end`: every log id below it is committed or will never exist (its group failed
//!   and the id was burned; ids are never reused). The forwarder's scan uses it to know that a
//!   lane has seen everything committed, after which the feed alone keeps it complete.
//! - An entry whose group fails to commit may already be in Kinesis; the device was not acked
//!   and resends it, so it is delivered again (at least once, as documented for retries).

use super::layout::BatchRecord;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// A log entry as admitted by the writer, not necessarily committed yet.
#[derive(Debug, Clone, PartialEq)]
pub struct FreshEntry {
    /// Its log id.
    pub id: u64,
    /// Encoded size in the log.
    pub stored_bytes: u64,
    /// The entry.
    pub record: BatchRecord,
    /// Some earlier id was not published (see the module invariants).
    pub after_gap: bool,
}

/// The publishing side, inside [`super::Buffer`].
#[derive(Debug, Default)]
pub(crate) struct FreshFeed {
    subscriber: Mutex<Option<Subscriber>>,
    committed_end: AtomicU64,
}

#[derive(Debug)]
struct Subscriber {
    tx: mpsc::Sender<FreshEntry>,
    gap: bool,
}

impl FreshFeed {
    /// Replaces the subscriber; the new one starts after a gap.
    pub(crate) fn subscribe(&self, capacity: usize) -> mpsc::Receiver<FreshEntry> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        *self.lock() = Some(Subscriber { tx, gap: true });
        rx
    }

    pub(crate) fn has_subscriber(&self) -> bool {
        self.lock().is_some()
    }

    /// Publishes an entry; never blocks (a full queue only marks a gap).
    pub(crate) fn publish(&self, mut entry: FreshEntry) {
        let mut slot = self.lock();
        let Some(s) = slot.as_mut() else {
            return;
        };
        entry.after_gap = s.gap;
        match s.tx.try_send(entry) {
            Ok(()) => s.gap = false,
            Err(mpsc::error::TrySendError::Full(_)) => s.gap = true,
            Err(mpsc::error::TrySendError::Closed(_)) => *slot = None,
        }
    }

    /// An id was admitted without being published.
    pub(crate) fn skipped(&self) {
        if let Some(s) = self.lock().as_mut() {
            s.gap = true;
        }
    }

    pub(crate) fn committed_end(&self) -> u64 {
        self.committed_end.load(Ordering::Acquire)
    }

    pub(crate) fn set_committed_end(&self, end: u64) {
        self.committed_end.fetch_max(end, Ordering::AcqRel);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Subscriber>> {
        self.subscriber.lock().unwrap_or_else(|p| p.into_inner())
    }
}
