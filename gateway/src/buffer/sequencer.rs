//! Per-device admission: which readings of a batch are new, which are duplicates, and what
//! the device may be acknowledged. Pure logic; the writer applies it inside its transaction.
//!
//! The device sends readings in sequence order and resends from its oldest unacknowledged
//! reading after a reconnect or an ack timeout (go-back-N). So the gateway keeps one number
//! per device, `next_seq`, and:
//! - stores only readings at `next_seq` onwards that are contiguous with it;
//! - drops (and counts) readings below `next_seq`: duplicates of stored readings;
//! - ignores a batch that starts beyond `next_seq` (readings in between were lost between
//!   device and gateway, e.g. evicted by the broker): storing it would leave a hole the ack
//!   cannot cover. The device still holds the missing readings and resends them;
//! - jumps `next_seq` to the batch's `held_from` when the device says it no longer holds
//!   readings we never got (its ring overflowed): those are counted as lost at the device;
//! - treats a higher boot counter as a new sequence space starting at `held_from`, and a lower
//!   one as stale (a message delayed across a reboot, or a device whose counter was reset).
//!
//! How the boot may move (so that one bad batch cannot silence a device for good):
//! - up by 1 to [`MAX_BOOT_ADVANCE`]: adopted at once (the device rebooted, perhaps a few times
//!   while it could not reach the gateway);
//! - up by more (`boot_jump`): refused and counted, nothing stored or acked, until
//!   [`CONFIRM_BATCHES`] batches in a row claim that boot with no batch of the current
//!   boot in between (the device really did reboot that often offline);
//! - back to the boot the device left last (`stale_boot` until confirmed the same way): the
//!   sequencer keeps that boot's position, so a device pushed onto a wrong boot (a corrupt
//!   counter, or a client holding its credentials) comes back after a few of its own batches,
//!   resuming where it was: nothing stored twice, nothing it holds lost (unacked readings are
//!   resent). A message delayed across a reboot comes alone or in a short run, interleaved
//!   with the new boot's batches, which reset the count;
//! - back to any older boot (`stale_boot`): refused for good. Its sequence numbers may already
//!   name other readings (a counter reset by a full flash erase): such a board needs a new
//!   device ID, or its readings would share identities with old ones.
//!
//! How far `held_from` may skip: a device says with `held_from` that it dropped readings the
//! gateway never got (its ring overflowed), and the gateway moves past them. A skip of more
//! than [`MAX_HELD_FROM_ADVANCE`] readings (`held_from_jump`) is refused the same way until
//! [`CONFIRM_BATCHES`] batches in a row claim it: one batch with `held_from` far ahead would
//! otherwise make the device's next real readings look like duplicates, acked and never
//! stored. A new boot starts at 0 for this check (a device that rebooted holds its new boot's
//! readings from the start).
//!
//! So a batch with boot 0xFFFFFFFF changes nothing, and one with a boot a little ahead costs
//! the real device [`CONFIRM_BATCHES`] batches (a few ack timeouts) of delay.
//!
//! Identities: the broker lets a connection publish only as its own device
//! (`ingest::authorize`), so only that device, or a client with its credentials, can move its
//! boot at all.

use super::layout::{BootPosition, Claim, DeviceState};

/// The largest boot advance adopted at once.
pub const MAX_BOOT_ADVANCE: u32 = 16;

/// The most readings a batch's `held_from` may skip (readings the gateway never got and the
/// device says it dropped) without confirmation. A device offline for long may drop more:
/// then [`CONFIRM_BATCHES`] batches in a row must say so.
pub const MAX_HELD_FROM_ADVANCE: u32 = 65_536;

/// Batches in a row that must make an unusual claim (a boot far ahead, the previous boot, a
/// `held_from` far ahead) before it is adopted.
pub const CONFIRM_BATCHES: u32 = 8;

/// The part of an uplink batch the sequencer looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSeq {
    /// Boot counter.
    pub boot: u32,
    /// Sequence number of the first reading.
    pub first_seq: u32,
    /// Number of readings (at least 1).
    pub count: u32,
    /// Lowest sequence number the device still holds.
    pub held_from: u32,
}

/// What to do with one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Admission {
    /// Index into the batch's readings of the first reading to store.
    pub store_from: u32,
    /// How many readings to store, starting at `store_from`.
    pub store_count: u32,
    /// Readings already stored (dropped here).
    pub duplicates: u32,
    /// Readings the device gave up on before the gateway received them.
    pub lost_at_device: u32,
    /// The batch was ignored because it starts beyond the next expected sequence number.
    pub out_of_order: bool,
    /// The batch belongs to an older boot than the current one, not (yet) adopted.
    pub stale_boot: bool,
    /// The batch's boot is more than [`MAX_BOOT_ADVANCE`] ahead, not (yet) adopted.
    pub boot_jump: bool,
    /// The batch's `held_from` skips more than [`MAX_HELD_FROM_ADVANCE`] readings the gateway
    /// never got, not (yet) adopted.
    pub held_from_jump: bool,
    /// An unusual claim refused before (boot or `held_from`) was adopted now.
    pub claim_confirmed: bool,
}

impl Admission {
    /// The batch was refused as an unconfirmed claim: nothing stored, nothing acked.
    pub fn refused(&self) -> bool {
        self.stale_boot || self.boot_jump || self.held_from_jump
    }
}

/// Decides on `batch` given the device's state (`None` for a device never seen) and returns
/// the decision with the state to keep (also when refused: it counts the claims).
pub fn admit(state: Option<DeviceState>, batch: BatchSeq) -> (Admission, DeviceState) {
    let mut decision = Admission::default();
    let Some(mut current) = state else {
        // First sight: nothing to compare with; the device holds nothing below held_from.
        let next = DeviceState {
            boot: batch.boot,
            next_seq: batch.held_from,
            ..DeviceState::default()
        };
        return store(decision, next, batch);
    };
    // Where the batch's boot stands, and whether moving there needs confirmation.
    let here = BootPosition {
        boot: current.boot,
        next_seq: current.next_seq,
    };
    let (start, unusual_boot) = match current.previous {
        _ if batch.boot == current.boot => (here, false),
        Some(p) if p.boot == batch.boot => (p, true),
        _ if batch.boot < current.boot => {
            decision.stale_boot = true;
            return (decision, current);
        }
        _ => (
            BootPosition {
                boot: batch.boot,
                next_seq: 0,
            },
            batch.boot - current.boot > MAX_BOOT_ADVANCE,
        ),
    };
    let held_from_jump = batch.held_from.saturating_sub(start.next_seq) > MAX_HELD_FROM_ADVANCE;
    if unusual_boot || held_from_jump {
        let claim = Claim {
            boot: batch.boot,
            held_from: batch.held_from,
            batches: 1,
        };
        let claims = match current.candidate {
            c if c.boot == claim.boot && c.held_from == claim.held_from => {
                c.batches.saturating_add(1)
            }
            _ => 1,
        };
        if claims < CONFIRM_BATCHES {
            current.candidate = Claim {
                batches: claims,
                ..claim
            };
            decision.stale_boot = unusual_boot && batch.boot < current.boot;
            decision.boot_jump = unusual_boot && batch.boot > current.boot;
            decision.held_from_jump = !unusual_boot;
            return (decision, current);
        }
        decision.claim_confirmed = true;
    }
    let next = DeviceState {
        boot: start.boot,
        next_seq: start.next_seq,
        last_seen_ms: current.last_seen_ms,
        // The boot left becomes the previous one.
        previous: if start.boot == current.boot {
            current.previous
        } else {
            Some(here)
        },
        candidate: Claim::default(),
    };
    store(decision, next, batch)
}

/// The admission of `batch` against `next`, a state of the batch's boot.
fn store(
    mut decision: Admission,
    mut next: DeviceState,
    batch: BatchSeq,
) -> (Admission, DeviceState) {
    if batch.held_from > next.next_seq {
        decision.lost_at_device = batch.held_from - next.next_seq;
        next.next_seq = batch.held_from;
    }
    if batch.first_seq > next.next_seq {
        decision.out_of_order = true;
        return (decision, next);
    }
    // first_seq <= next_seq: the batch overlaps or continues what is stored.
    let skip = next.next_seq - batch.first_seq;
    decision.duplicates = skip.min(batch.count);
    if skip < batch.count {
        decision.store_from = skip;
        decision.store_count = batch.count - skip;
        next.next_seq = batch.first_seq + batch.count;
    }
    (decision, next)
}

/// The ack a device may receive in `state`: every `seq <= through_seq` is settled. `None`
/// while nothing of this boot is.
pub fn ack_through(state: &DeviceState) -> Option<u32> {
    state.next_seq.checked_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(boot: u32, first_seq: u32, count: u32, held_from: u32) -> BatchSeq {
        BatchSeq {
            boot,
            first_seq,
            count,
            held_from,
        }
    }

    fn state(boot: u32, next_seq: u32) -> DeviceState {
        DeviceState {
            boot,
            next_seq,
            ..DeviceState::default()
        }
    }

    #[test]
    fn new_device_stores_everything_from_held_from() {
        let (d, s) = admit(None, batch(1, 0, 5, 0));
        assert_eq!((d.store_from, d.store_count, d.duplicates), (0, 5, 0));
        assert_eq!((s.boot, s.next_seq), (1, 5));
        assert_eq!(ack_through(&s), Some(4));
    }

    #[test]
    fn exact_resend_is_all_duplicates_and_reacked() {
        let (d, s) = admit(Some(state(1, 5)), batch(1, 0, 5, 0));
        assert_eq!((d.store_count, d.duplicates), (0, 5));
        assert_eq!(s.next_seq, 5);
        assert_eq!(ack_through(&s), Some(4));
    }

    #[test]
    fn overlapping_resend_stores_only_the_new_tail() {
        let (d, s) = admit(Some(state(1, 5)), batch(1, 3, 4, 3));
        assert_eq!((d.store_from, d.store_count, d.duplicates), (2, 2, 2));
        assert_eq!(s.next_seq, 7);
    }

    #[test]
    fn batch_beyond_a_hole_is_ignored_until_the_hole_is_resent() {
        let (d, s) = admit(Some(state(1, 5)), batch(1, 8, 2, 5));
        assert!(d.out_of_order);
        assert_eq!((d.store_count, s.next_seq), (0, 5));
        let (d, s) = admit(Some(s), batch(1, 5, 5, 5));
        assert_eq!((d.store_count, s.next_seq), (5, 10));
    }

    #[test]
    fn device_overflow_moves_past_readings_never_received() {
        let (d, s) = admit(Some(state(1, 5)), batch(1, 9, 2, 9));
        assert_eq!((d.lost_at_device, d.store_count, s.next_seq), (4, 2, 11));
        assert!(!d.out_of_order);
    }

    #[test]
    fn new_boot_restarts_sequence_space_and_old_boot_is_stale() {
        let (d, s) = admit(Some(state(1, 500)), batch(2, 0, 3, 0));
        assert_eq!((d.store_count, s.boot, s.next_seq), (3, 2, 3));
        let (d, s2) = admit(Some(s), batch(1, 500, 3, 500));
        assert!(d.stale_boot && d.refused());
        assert_eq!((d.store_count, s2.boot, s2.next_seq), (0, 2, 3));
    }

    #[test]
    fn a_boot_far_ahead_is_refused_and_changes_nothing() {
        let (d, s) = admit(Some(state(3, 40)), batch(u32::MAX, 0, 1, 0));
        assert!(d.boot_jump && !d.stale_boot);
        assert_eq!((d.store_count, s.boot, s.next_seq), (0, 3, 40));
        // The device's real batches go on as before, and reset the candidate.
        let (d, s) = admit(Some(s), batch(3, 40, 2, 40));
        assert_eq!((d.store_count, s.next_seq, s.candidate.batches), (2, 42, 0));
        // The largest advance adopted at once.
        let (d, s) = admit(Some(s), batch(3 + MAX_BOOT_ADVANCE, 0, 1, 0));
        assert_eq!((d.store_count, s.boot), (1, 3 + MAX_BOOT_ADVANCE));
    }

    #[test]
    fn a_device_pushed_onto_a_wrong_boot_comes_back_where_it_was() {
        // One batch a little ahead is adopted at once...
        let (d, s) = admit(Some(state(5, 30)), batch(9, 0, 1, 0));
        assert_eq!((d.store_count, s.boot, s.next_seq), (1, 9, 1));
        // ...the real device's batches are stale until enough in a row claim boot 5...
        let mut s = s;
        for _ in 1..CONFIRM_BATCHES {
            let (d, next) = admit(Some(s), batch(5, 28, 4, 28));
            assert!(d.stale_boot && d.store_count == 0);
            s = next;
        }
        // ...then boot 5 resumes at 30: 28 and 29 are duplicates, 30 and 31 are stored.
        let (d, s) = admit(Some(s), batch(5, 28, 4, 28));
        assert!(d.claim_confirmed);
        assert_eq!((d.duplicates, d.store_from, d.store_count), (2, 2, 2));
        assert_eq!((s.boot, s.next_seq), (5, 32));
        assert_eq!(
            s.previous,
            Some(BootPosition {
                boot: 9,
                next_seq: 1
            })
        );
    }

    #[test]
    fn a_boot_far_ahead_claimed_often_enough_in_a_row_is_adopted() {
        let mut s = state(5, 0);
        // Batches of the current boot in between start the count again.
        for i in 0..3 * CONFIRM_BATCHES {
            let b = if i % 4 == 3 {
                batch(5, 0, 1, 0)
            } else {
                batch(1000, 0, 1, 0)
            };
            let (d, next) = admit(Some(s), b);
            assert!(!d.claim_confirmed, "batch {i}");
            s = next;
        }
        assert_eq!(s.boot, 5);
        for _ in 1..CONFIRM_BATCHES {
            let (d, next) = admit(Some(s), batch(1000, 0, 1, 0));
            assert!(d.boot_jump);
            s = next;
        }
        let (d, s) = admit(Some(s), batch(1000, 0, 1, 0));
        assert!(d.claim_confirmed && !d.refused());
        assert_eq!((d.store_count, s.boot, s.next_seq), (1, 1000, 1));
    }

    #[test]
    fn an_older_boot_than_the_previous_one_stays_stale() {
        // A counter reset by a flash erase: its seqs may name old readings of boot 1.
        let mut s = state(90, 7);
        for _ in 0..3 * CONFIRM_BATCHES {
            let (d, next) = admit(Some(s), batch(1, 0, 2, 0));
            assert!(d.stale_boot && !d.claim_confirmed);
            s = next;
        }
        assert_eq!((s.boot, s.next_seq), (90, 7));
    }

    #[test]
    fn a_held_from_far_ahead_is_refused_until_confirmed() {
        // One batch claiming the device dropped a billion readings: refused, nothing moves.
        let (d, s) = admit(
            Some(state(2, 100)),
            batch(2, 1_000_000_000, 1, 1_000_000_000),
        );
        assert!(d.held_from_jump && d.refused());
        assert_eq!((s.boot, s.next_seq), (2, 100));
        // The device's real readings are stored and acked, not taken for duplicates.
        let (d, s) = admit(Some(s), batch(2, 100, 3, 100));
        assert_eq!((d.duplicates, d.store_count, s.next_seq), (0, 3, 103));
        // A skip within the bound is the usual ring overflow.
        let (d, s) = admit(
            Some(s),
            batch(
                2,
                103 + MAX_HELD_FROM_ADVANCE,
                1,
                103 + MAX_HELD_FROM_ADVANCE,
            ),
        );
        assert_eq!(
            (d.lost_at_device, d.store_count),
            (MAX_HELD_FROM_ADVANCE, 1)
        );
        // A device offline for long says so in every batch: adopted after CONFIRM_BATCHES.
        let far = s.next_seq + 10 * MAX_HELD_FROM_ADVANCE;
        let mut s = s;
        for _ in 1..CONFIRM_BATCHES {
            let (d, next) = admit(Some(s), batch(2, far, 4, far));
            assert!(d.held_from_jump);
            s = next;
        }
        let (d, s) = admit(Some(s), batch(2, far, 4, far));
        assert!(d.claim_confirmed && !d.refused());
        assert_eq!((d.store_count, s.next_seq), (4, far + 4));
        // A new boot is checked from 0.
        let (d, _) = admit(Some(s), batch(3, 1_000_000_000, 1, 1_000_000_000));
        assert!(d.held_from_jump);
    }

    #[test]
    fn first_sight_after_device_restarted_sending_midway() {
        // A device the gateway never saw (or whose state was lost) resending from held_from.
        let (d, s) = admit(None, batch(4, 10, 2, 7));
        assert!(d.out_of_order, "7..10 must come first");
        assert_eq!(s.next_seq, 7);
    }

    #[test]
    fn no_ack_before_anything_settled() {
        assert_eq!(ack_through(&state(3, 0)), None);
    }
}
