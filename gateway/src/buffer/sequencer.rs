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
//!   [`BOOT_CONFIRM_BATCHES`] batches in a row claim that boot with no batch of the current
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
//! So a batch with boot 0xFFFFFFFF changes nothing, and one with a boot a little ahead costs
//! the real device [`BOOT_CONFIRM_BATCHES`] batches (a few ack timeouts) of delay.
//!
//! Identities: the broker lets a connection publish only as its own device
//! (`ingest::authorize`), so only that device, or a client with its credentials, can move its
//! boot at all.

use super::layout::{BootCandidate, BootPosition, DeviceState};

/// The largest boot advance adopted at once.
pub const MAX_BOOT_ADVANCE: u32 = 16;

/// Batches in a row that must claim a refused boot (far ahead, or the previous one) before it
/// is adopted.
pub const BOOT_CONFIRM_BATCHES: u32 = 8;

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
    /// A boot refused before was adopted now (see the module docs).
    pub boot_confirmed: bool,
}

impl Admission {
    /// The batch's boot was refused: nothing stored, nothing acked.
    pub fn boot_refused(&self) -> bool {
        self.stale_boot || self.boot_jump
    }
}

/// Decides on `batch` given the device's state (`None` for a device never seen) and returns
/// the decision with the state to persist if the readings are stored.
pub fn admit(state: Option<DeviceState>, batch: BatchSeq) -> (Admission, DeviceState) {
    let mut decision = Admission::default();
    let mut next = match state {
        Some(s) if s.boot == batch.boot => DeviceState {
            candidate: BootCandidate::default(),
            ..s
        },
        Some(s) if batch.boot > s.boot && batch.boot - s.boot <= MAX_BOOT_ADVANCE => {
            new_boot(s, batch)
        }
        Some(mut s) => {
            let returning = s.previous.is_some_and(|p| p.boot == batch.boot);
            if batch.boot < s.boot && !returning {
                decision.stale_boot = true;
                return (decision, s);
            }
            // Far ahead, or back to the previous boot: adopted once enough batches in a row
            // claim it.
            let claims = if s.candidate.boot == batch.boot {
                s.candidate.batches.saturating_add(1)
            } else {
                1
            };
            if claims < BOOT_CONFIRM_BATCHES {
                s.candidate = BootCandidate {
                    boot: batch.boot,
                    batches: claims,
                };
                decision.stale_boot = batch.boot < s.boot;
                decision.boot_jump = batch.boot > s.boot;
                return (decision, s);
            }
            decision.boot_confirmed = true;
            new_boot(s, batch)
        }
        None => DeviceState {
            boot: batch.boot,
            next_seq: batch.held_from,
            ..DeviceState::default()
        },
    };
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

/// `state` moved to the batch's boot. A boot never seen starts at `held_from` (the device
/// holds nothing below it); the previous boot resumes where it stood. The boot left becomes
/// the previous one.
fn new_boot(state: DeviceState, batch: BatchSeq) -> DeviceState {
    let next_seq = match state.previous {
        Some(p) if p.boot == batch.boot => p.next_seq,
        _ => batch.held_from,
    };
    DeviceState {
        boot: batch.boot,
        next_seq,
        last_seen_ms: state.last_seen_ms,
        previous: Some(BootPosition {
            boot: state.boot,
            next_seq: state.next_seq,
        }),
        candidate: BootCandidate::default(),
    }
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
        assert!(d.stale_boot && d.boot_refused());
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
        for _ in 1..BOOT_CONFIRM_BATCHES {
            let (d, next) = admit(Some(s), batch(5, 28, 4, 28));
            assert!(d.stale_boot && d.store_count == 0);
            s = next;
        }
        // ...then boot 5 resumes at 30: 28 and 29 are duplicates, 30 and 31 are stored.
        let (d, s) = admit(Some(s), batch(5, 28, 4, 28));
        assert!(d.boot_confirmed);
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
        for i in 0..3 * BOOT_CONFIRM_BATCHES {
            let b = if i % 4 == 3 {
                batch(5, 0, 1, 0)
            } else {
                batch(1000, 0, 1, 0)
            };
            let (d, next) = admit(Some(s), b);
            assert!(!d.boot_confirmed, "batch {i}");
            s = next;
        }
        assert_eq!(s.boot, 5);
        for _ in 1..BOOT_CONFIRM_BATCHES {
            let (d, next) = admit(Some(s), batch(1000, 0, 1, 0));
            assert!(d.boot_jump);
            s = next;
        }
        let (d, s) = admit(Some(s), batch(1000, 0, 1, 0));
        assert!(d.boot_confirmed && !d.boot_refused());
        assert_eq!((d.store_count, s.boot, s.next_seq), (1, 1000, 1));
    }

    #[test]
    fn an_older_boot_than_the_previous_one_stays_stale() {
        // A counter reset by a flash erase: its seqs may name old readings of boot 1.
        let mut s = state(90, 7);
        for _ in 0..3 * BOOT_CONFIRM_BATCHES {
            let (d, next) = admit(Some(s), batch(1, 0, 2, 0));
            assert!(d.stale_boot && !d.boot_confirmed);
            s = next;
        }
        assert_eq!((s.boot, s.next_seq), (90, 7));
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
