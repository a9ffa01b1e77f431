//! The offline ring: every reading of this boot that the gateway has not yet acknowledged.
//!
//! Readings get consecutive sequence numbers as they are pushed. The ring is a window
//! `[held_from, next_seq)` of that sequence:
//!
//! - **Invariant 1 (contiguous):** the readings in the ring have consecutive sequence numbers;
//!   the front holds `held_from`, the back `next_seq - 1`. Readings only ever leave at the front
//!   (by ack or by overflow), so there are never holes.
//! - **Invariant 2 (settled below):** every `seq < held_from` was acknowledged by the gateway or
//!   dropped by the overflow policy, and is never sent again. This is what `held_from` in a batch
//!   promises the gateway.
//! - **Invariant 3 (nothing lost silently):** `pushed == acked + dropped + len` at all times.
//!
//! Overflow policy: when the ring is full, pushing drops the *oldest* reading (fresh data is
//! worth more than stale data after a long outage) and counts it in [`Ring::unreported_drops`],
//! which the next batch carries in its `dropped` field.
//!
//! Memory: `N` readings of [`Reading`] (16 bytes each on Cortex-M, RISC-V and x86-64, see
//! [`READING_BYTES`]) plus at most 96 bytes of bookkeeping: a `Ring<1024>` is about 16 KiB.

use heapless::Deque;
use telemetry_wire::Reading;

/// Bytes one reading occupies in the ring.
pub const READING_BYTES: usize = core::mem::size_of::<Reading>();

/// Bytes a ring of `n` readings occupies, bookkeeping included (rounded up).
pub const fn ring_bytes(n: usize) -> usize {
    n * READING_BYTES + 96
}

/// The sequence space of one boot is used up: the device must reboot (new boot counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SeqExhausted;

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Pushed {
    /// Sequence number given to the new reading.
    pub seq: u32,
    /// Sequence number of the oldest reading dropped to make room, if the ring was full.
    pub dropped: Option<u32>,
}

/// What an ack did to the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Freed {
    /// Readings `from..=through` were freed.
    Range {
        /// First freed sequence number (the previous `held_from`).
        from: u32,
        /// Last freed sequence number.
        through: u32,
    },
    /// The ack is at or below what was already settled: nothing freed.
    Stale,
    /// The ack names a sequence number never assigned in this boot: refused, nothing freed.
    Beyond,
}

/// A fixed-capacity ring of readings with sequence numbers; see the module docs.
#[derive(Debug)]
pub struct Ring<const N: usize> {
    readings: Deque<Reading, N>,
    /// Effective capacity, `1..=N` (a host simulator picks it at run time).
    limit: usize,
    /// Sequence number of the front reading (or of the next push when empty). u64 like
    /// `next_seq`, so that acking `u32::MAX` does not wrap.
    held_from: u64,
    /// Sequence number the next push gets; `u32::MAX + 1` once exhausted.
    next_seq: u64,
    pushed: u64,
    acked: u64,
    dropped: u64,
    unreported_drops: u32,
}

impl<const N: usize> Default for Ring<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Ring<N> {
    /// Capacity in readings.
    pub const CAPACITY: usize = N;
    /// Capacity in bytes (see [`ring_bytes`]).
    pub const BYTES: usize = ring_bytes(N);

    /// An empty ring whose first reading will get sequence number 0.
    pub const fn new() -> Self {
        Self::with_limit(N)
    }

    /// An empty ring that holds at most `limit` readings (clamped to `1..=N`): for simulators
    /// that choose the capacity at run time.
    pub const fn with_limit(limit: usize) -> Self {
        let limit = if limit > N {
            N
        } else if limit == 0 {
            1
        } else {
            limit
        };
        Self {
            readings: Deque::new(),
            limit,
            held_from: 0,
            next_seq: 0,
            pushed: 0,
            acked: 0,
            dropped: 0,
            unreported_drops: 0,
        }
    }

    /// Appends a reading and gives it the next sequence number. When full, drops the oldest
    /// reading first and counts it.
    pub fn push(&mut self, reading: Reading) -> Result<Pushed, SeqExhausted> {
        let seq = u32::try_from(self.next_seq).map_err(|_| SeqExhausted)?;
        let mut dropped = None;
        if self.readings.len() >= self.limit {
            // N == 0 would make the ring useless; pop_front then returns None and the push below
            // fails, which we also count as a drop of the new reading.
            if self.readings.pop_front().is_some() {
                // held_from < next_seq <= u32::MAX here, so the cast is lossless.
                dropped = Some(self.held_from as u32);
                self.held_from += 1;
                self.count_drop();
            }
        }
        if self.readings.push_back(reading).is_err() {
            // Only reachable with N == 0: the reading is dropped at once.
            self.count_drop();
            self.held_from += 1;
            dropped = Some(seq);
        }
        self.next_seq += 1;
        self.pushed += 1;
        Ok(Pushed { seq, dropped })
    }

    fn count_drop(&mut self) {
        self.dropped += 1;
        self.unreported_drops = self.unreported_drops.saturating_add(1);
    }

    /// Frees every reading with `seq <= through` (the gateway has them on disk).
    pub fn ack(&mut self, through: u32) -> Freed {
        let through64 = u64::from(through);
        if through64 >= self.next_seq {
            return Freed::Beyond;
        }
        if through64 < self.held_from {
            return Freed::Stale;
        }
        // held_from <= through <= u32::MAX, so the cast is lossless.
        let from = self.held_from as u32;
        let count = (through - from) as usize + 1;
        for _ in 0..count {
            // Invariant 1: the ring holds exactly held_from..next_seq, so these pops succeed.
            let _ = self.readings.pop_front();
        }
        self.held_from = through64 + 1;
        self.acked += count as u64;
        Freed::Range { from, through }
    }

    /// Lowest sequence number still held (the `held_from` of the next batch). When the ring is
    /// empty, the sequence number of the next push.
    pub fn held_from(&self) -> u32 {
        u32::try_from(self.held_from).unwrap_or(u32::MAX)
    }

    /// Lowest sequence number still held, as u64 (`u32::MAX + 1` once the last reading of an
    /// exhausted boot was acked).
    pub fn front_seq(&self) -> u64 {
        self.held_from
    }

    /// Sequence number the next push gets, or `None` once the boot's sequence space is used up.
    pub fn next_seq(&self) -> Option<u32> {
        u32::try_from(self.next_seq).ok()
    }

    /// One past the newest sequence number (as u64, so it can be `u32::MAX + 1`).
    pub fn end_seq(&self) -> u64 {
        self.next_seq
    }

    /// Effective capacity in readings.
    pub fn capacity(&self) -> usize {
        self.limit
    }

    /// Readings held.
    pub fn len(&self) -> usize {
        self.readings.len()
    }

    /// Whether no reading is held.
    pub fn is_empty(&self) -> bool {
        self.readings.is_empty()
    }

    /// Readings pushed since start.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Readings freed by acks since start.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Readings dropped by the overflow policy since start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Drops not yet reported to the gateway. The batch that reports them calls
    /// [`Ring::mark_drops_reported`] once it is handed to the MQTT client.
    pub fn unreported_drops(&self) -> u32 {
        self.unreported_drops
    }

    /// Marks `count` drops as reported (each drop is reported exactly once).
    pub fn mark_drops_reported(&mut self, count: u32) {
        self.unreported_drops = self.unreported_drops.saturating_sub(count);
    }

    /// The reading with sequence number `seq`, if held.
    pub fn get(&self, seq: u32) -> Option<&Reading> {
        let index = u64::from(seq).checked_sub(self.held_from)? as usize;
        self.readings.get(index)
    }

    /// Up to `count` readings starting at `from` (clamped to what is held), oldest first.
    /// Empty if `from` is not held.
    pub fn span(&self, from: u32, count: usize) -> Span<'_> {
        let (a, b) = self.readings.as_slices();
        let Some(skip) = u64::from(from)
            .checked_sub(self.held_from)
            .map(|s| s as usize)
        else {
            return Span::default();
        };
        if skip >= a.len() + b.len() {
            return Span::default();
        }
        let (a, b) = if skip >= a.len() {
            (&b[skip - a.len()..], &b[..0])
        } else {
            (&a[skip..], b)
        };
        let take_a = count.min(a.len());
        let take_b = (count - take_a).min(b.len());
        Span {
            a: a[..take_a].iter(),
            b: b[..take_b].iter(),
        }
    }

    /// All held readings, oldest first.
    pub fn iter(&self) -> Span<'_> {
        self.span(self.held_from(), N)
    }
}

/// A run of consecutive readings borrowed from the ring. Cloneable and exact-size, as
/// [`telemetry_wire::uplink::encode_uplink`] needs (it validates in a first pass, then encodes).
#[derive(Debug, Clone, Default)]
pub struct Span<'a> {
    a: core::slice::Iter<'a, Reading>,
    b: core::slice::Iter<'a, Reading>,
}

impl<'a> Iterator for Span<'a> {
    type Item = &'a Reading;

    fn next(&mut self) -> Option<Self::Item> {
        self.a.next().or_else(|| self.b.next())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.a.len() + self.b.len();
        (n, Some(n))
    }
}

impl ExactSizeIterator for Span<'_> {}

#[cfg(any(test, feature = "target-tests"))]
// Test code: a failed expectation is the test failing (clippy.toml allows this under
// `#[cfg(test)]` only, which this module is not when `target-tests` compiles it for a target).
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
pub(crate) mod tests {
    use super::*;
    use telemetry_wire::SensorKind;

    fn reading(t_ms: u64) -> Reading {
        Reading {
            t_ms,
            channel: 0,
            kind: SensorKind::TEMPERATURE_C,
            value: t_ms as f32,
        }
    }

    fn times(span: Span<'_>) -> heapless::Vec<u64, 16> {
        span.map(|r| r.t_ms).collect()
    }

    #[cfg_attr(test, test)]
    pub(crate) fn push_assigns_consecutive_seqs() {
        let mut ring = Ring::<4>::new();
        for i in 0..3 {
            assert_eq!(
                ring.push(reading(i)),
                Ok(Pushed {
                    seq: i as u32,
                    dropped: None
                })
            );
        }
        assert_eq!(ring.held_from(), 0);
        assert_eq!(ring.next_seq(), Some(3));
        assert_eq!(ring.get(2).map(|r| r.t_ms), Some(2));
        assert_eq!(ring.get(3), None);
    }

    #[cfg_attr(test, test)]
    pub(crate) fn overflow_drops_oldest_and_counts_each_once() {
        let mut ring = Ring::<3>::new();
        for i in 0..5 {
            let pushed = ring.push(reading(i)).expect("seq space");
            assert_eq!(pushed.dropped, i.checked_sub(3).map(|s| s as u32));
        }
        assert_eq!(ring.held_from(), 2);
        assert_eq!(times(ring.iter()).as_slice(), &[2, 3, 4]);
        assert_eq!(ring.dropped(), 2);
        assert_eq!(ring.unreported_drops(), 2);
        ring.mark_drops_reported(2);
        assert_eq!(ring.unreported_drops(), 0, "reported once");
        ring.push(reading(5)).expect("seq space");
        assert_eq!(ring.unreported_drops(), 1);
        ring.mark_drops_reported(1);
        assert_eq!(ring.unreported_drops(), 0);
        assert_eq!(
            ring.pushed(),
            ring.acked() + ring.dropped() + ring.len() as u64
        );
    }

    #[cfg_attr(test, test)]
    pub(crate) fn ack_is_cumulative_and_ignores_stale_and_unassigned() {
        let mut ring = Ring::<8>::new();
        for i in 0..6 {
            ring.push(reading(i)).expect("seq space");
        }
        assert_eq!(ring.ack(6), Freed::Beyond);
        assert_eq!(
            ring.ack(2),
            Freed::Range {
                from: 0,
                through: 2
            }
        );
        assert_eq!(ring.ack(1), Freed::Stale);
        assert_eq!(ring.ack(2), Freed::Stale);
        assert_eq!(ring.held_from(), 3);
        assert_eq!(
            ring.ack(5),
            Freed::Range {
                from: 3,
                through: 5
            }
        );
        assert!(ring.is_empty());
        assert_eq!(ring.acked(), 6);
        assert_eq!(ring.held_from(), 6);
    }

    #[cfg_attr(test, test)]
    pub(crate) fn runtime_limit_caps_the_capacity() {
        let mut ring = Ring::<8>::with_limit(3);
        for i in 0..5 {
            ring.push(reading(i)).expect("seq space");
        }
        assert_eq!(
            (
                ring.capacity(),
                ring.len(),
                ring.dropped(),
                ring.held_from()
            ),
            (3, 3, 2, 2)
        );
        assert_eq!(Ring::<8>::with_limit(100).capacity(), 8);
    }

    #[cfg_attr(test, test)]
    pub(crate) fn span_crosses_the_wrap_point() {
        let mut ring = Ring::<4>::new();
        for i in 0..6 {
            ring.push(reading(i)).expect("seq space");
        }
        // Ring holds 2..=5, stored wrapped around the end of the array.
        assert_eq!(times(ring.span(2, 4)).as_slice(), &[2, 3, 4, 5]);
        assert_eq!(times(ring.span(3, 2)).as_slice(), &[3, 4]);
        assert_eq!(times(ring.span(4, 10)).as_slice(), &[4, 5]);
        assert_eq!(ring.span(4, 10).len(), 2);
        assert_eq!(ring.span(1, 3).len(), 0, "not held");
        assert_eq!(ring.span(6, 3).len(), 0, "not yet pushed");
    }

    #[cfg_attr(test, test)]
    pub(crate) fn sequence_space_ends_at_u32_max() {
        let mut ring = Ring::<2>::new();
        ring.next_seq = u64::from(u32::MAX);
        ring.held_from = u64::from(u32::MAX);
        assert_eq!(ring.push(reading(0)).map(|p| p.seq), Ok(u32::MAX));
        assert_eq!(ring.push(reading(1)), Err(SeqExhausted));
        assert_eq!(ring.next_seq(), None);
        assert_eq!(
            ring.ack(u32::MAX),
            Freed::Range {
                from: u32::MAX,
                through: u32::MAX
            }
        );
        assert_eq!(ring.ack(0), Freed::Stale, "no wrap after the last seq");
    }

    #[cfg_attr(test, test)]
    pub(crate) fn documented_sizes_hold() {
        assert_eq!(READING_BYTES, 16);
        assert!(core::mem::size_of::<Ring<1024>>() <= Ring::<1024>::BYTES);
    }
}
