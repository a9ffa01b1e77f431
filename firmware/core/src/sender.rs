//! The go-back-N sender: which readings of the ring to send next, and when to start over.
//!
//! The gateway stores a device's readings strictly in sequence and ignores a batch that starts
//! beyond the next sequence number it expects. So after any loss (a dropped batch, a lost ack,
//! a reconnect) the sender goes back to the oldest unacked reading and resends from there.
//!
//! State, with `held_from` the ring's oldest reading and `end` one past its newest:
//!
//! ```text
//!   acked/dropped | sent, unacked        | not yet sent
//! ----------------+----------------------+-----------------
//!                 ^ held_from            ^ next_unsent     ^ end
//! ```
//!
//! Invariants:
//! - `held_from <= next_unsent <= end` (read `next_unsent` through [`Sender::cursor`], which
//!   clamps it up to `held_from` after overflow drops or acks moved the front).
//! - `next_unsent - held_from <= window`: at most `window` readings are in flight.
//! - `high_water` is one past the highest sequence number ever sent; a sent reading below it is
//!   a resend.
//! - The ack timer runs exactly while readings are in flight. It starts when a batch is sent
//!   with none in flight, restarts on ack progress, and is *not* restarted by further sends
//!   (otherwise a steady stream of batches the gateway ignores would never time out). When it
//!   expires, `next_unsent` goes back to `held_from`.
//! - A reconnect also goes back to `held_from`: everything unacked is resent, in order.

use crate::config::NodeConfig;
use crate::ring::Ring;

/// One batch to send: readings `first_seq..first_seq + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BatchPlan {
    /// Sequence number of the first reading.
    pub first_seq: u32,
    /// Number of readings, `1..=batch_max`.
    pub count: usize,
    /// The ring's oldest sequence number when planned.
    pub held_from: u32,
    /// Overflow drops to report in this batch.
    pub dropped: u32,
    /// How many of the readings were sent before (go-back-N resends).
    pub resent: usize,
}

impl BatchPlan {
    /// Sequence number of the last reading.
    pub fn last_seq(&self) -> u32 {
        // count >= 1 and the ring never holds seqs past u32::MAX.
        self.first_seq + (self.count as u32).saturating_sub(1)
    }
}

/// Go-back-N sender state; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct Sender {
    next_unsent: u64,
    high_water: u64,
    ack_deadline: Option<u64>,
}

impl Sender {
    /// A sender that has sent nothing.
    pub const fn new() -> Self {
        Self {
            next_unsent: 0,
            high_water: 0,
            ack_deadline: None,
        }
    }

    /// Next sequence number to send (clamped to the ring's front).
    pub fn cursor<const N: usize>(&self, ring: &Ring<N>) -> u64 {
        self.next_unsent.max(ring.front_seq()).min(ring.end_seq())
    }

    /// Readings sent and not yet acked.
    pub fn in_flight<const N: usize>(&self, ring: &Ring<N>) -> u64 {
        self.cursor(ring) - ring.front_seq()
    }

    /// One past the highest sequence number ever sent.
    pub fn high_water(&self) -> u64 {
        self.high_water
    }

    /// When the ack timer expires, if it runs.
    pub fn ack_deadline(&self) -> Option<u64> {
        self.ack_deadline
    }

    /// The batch to send now, if any: a full batch, a partial one whose oldest reading has
    /// waited `batch_interval_ms`, or any resend (those go out without waiting). Nothing while
    /// the window is full.
    pub fn plan<const N: usize>(
        &self,
        ring: &Ring<N>,
        config: &NodeConfig,
        now: u64,
    ) -> Option<BatchPlan> {
        let first = self.cursor(ring);
        let unsent = ring.end_seq() - first;
        let room = u64::from(config.window).saturating_sub(self.in_flight(ring));
        let count = unsent.min(config.batch_max as u64).min(room);
        if count == 0 {
            return None;
        }
        let first_seq = u32::try_from(first).ok()?;
        let resending = first < self.high_water;
        let full = count >= config.batch_max as u64;
        let waited = ring
            .get(first_seq)
            .is_some_and(|r| now >= r.t_ms.saturating_add(config.batch_interval_ms));
        if !(resending || full || waited) {
            return None;
        }
        let end = first + count;
        Some(BatchPlan {
            first_seq,
            count: count as usize,
            held_from: ring.held_from(),
            dropped: ring.unreported_drops(),
            resent: (self.high_water.min(end).saturating_sub(first)) as usize,
        })
    }

    /// When [`Sender::plan`] may next return a batch without new readings or acks arriving:
    /// the ack timer, or the batch interval of the oldest unsent reading.
    pub fn next_deadline<const N: usize>(
        &self,
        ring: &Ring<N>,
        config: &NodeConfig,
    ) -> Option<u64> {
        let first = self.cursor(ring);
        let window_open = self.in_flight(ring) < u64::from(config.window);
        let batch_due = u32::try_from(first)
            .ok()
            .filter(|_| window_open)
            .and_then(|seq| ring.get(seq))
            .map(|r| r.t_ms.saturating_add(config.batch_interval_ms));
        match (self.ack_deadline, batch_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Records that `plan` was handed to the MQTT client at `now`.
    pub fn sent<const N: usize>(
        &mut self,
        plan: &BatchPlan,
        ring: &mut Ring<N>,
        config: &NodeConfig,
        now: u64,
    ) {
        ring.mark_drops_reported(plan.dropped);
        let end = u64::from(plan.first_seq) + plan.count as u64;
        self.next_unsent = end;
        self.high_water = self.high_water.max(end);
        if self.ack_deadline.is_none() {
            self.ack_deadline = Some(now.saturating_add(config.ack_timeout_ms));
        }
    }

    /// Records ack progress: readings through `through` were freed from the ring at `now`.
    pub fn acked<const N: usize>(
        &mut self,
        through: u32,
        ring: &Ring<N>,
        config: &NodeConfig,
        now: u64,
    ) {
        // The gateway may ack past our cursor (it had stored readings we are resending).
        self.next_unsent = self.next_unsent.max(u64::from(through) + 1);
        self.ack_deadline =
            (self.in_flight(ring) > 0).then(|| now.saturating_add(config.ack_timeout_ms));
    }

    /// Goes back to the oldest unacked reading if the ack timer expired. Returns whether it did.
    pub fn check_timeout<const N: usize>(&mut self, ring: &Ring<N>, now: u64) -> bool {
        match self.ack_deadline {
            Some(deadline) if now >= deadline => {
                self.ack_deadline = None;
                let had_in_flight = self.in_flight(ring) > 0;
                self.rewind(ring);
                had_in_flight
            }
            _ => false,
        }
    }

    /// A new connection: resend everything unacked, in order.
    pub fn on_connected<const N: usize>(&mut self, ring: &Ring<N>) {
        self.ack_deadline = None;
        self.rewind(ring);
    }

    fn rewind<const N: usize>(&mut self, ring: &Ring<N>) {
        self.next_unsent = ring.front_seq();
    }
}
