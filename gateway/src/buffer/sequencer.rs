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

use super::layout::DeviceState;

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
    /// The batch belongs to an older boot than the latest seen.
    pub stale_boot: bool,
}

/// Decides on `batch` given the device's state (`None` for a device never seen) and returns
/// the decision with the state to persist if the readings are stored.
pub fn admit(state: Option<DeviceState>, batch: BatchSeq) -> (Admission, DeviceState) {
    let mut next = match state {
        Some(s) if s.boot == batch.boot => s,
        Some(s) if s.boot > batch.boot => {
            let decision = Admission {
                stale_boot: true,
                ..Admission::default()
            };
            return (decision, s);
        }
        // New device or new boot: the device holds nothing below held_from.
        Some(s) => DeviceState {
            boot: batch.boot,
            next_seq: batch.held_from,
            ..s
        },
        None => DeviceState {
            boot: batch.boot,
            next_seq: batch.held_from,
            ..DeviceState::default()
        },
    };
    let mut decision = Admission::default();
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
        assert!(d.stale_boot);
        assert_eq!((d.store_count, s2), (0, s));
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
