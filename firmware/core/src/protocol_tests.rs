//! Protocol tests of the pure node: time is driven by hand, the "gateway" is a few lines that
//! decode batches and build acks. No std, so they also run on the target under QEMU.

use crate::config::NodeConfig;
use crate::node::{AckOutcome, Node};
use crate::sender::BatchPlan;
use crate::sensor::Measurement;
use telemetry_wire::limits::{MAX_READINGS_PER_BATCH, MAX_UPLINK_BYTES};
use telemetry_wire::{Ack, DeviceId, SensorKind, UplinkBatch};

const DEVICE: &str = "node-1";
const BOOT: u32 = 5;

fn id() -> DeviceId<'static> {
    DeviceId::new(DEVICE).expect("valid id")
}

fn config() -> NodeConfig {
    NodeConfig::new()
        .with_batch_max(4)
        .with_batch_interval_ms(100)
        .with_ack_timeout_ms(1_000)
        .with_window(64)
}

fn node<const N: usize>(config: NodeConfig) -> Node<'static, N> {
    let mut n = Node::new(id(), BOOT, config);
    n.on_connected();
    n
}

fn record<const N: usize>(n: &mut Node<'_, N>, count: u32, t_ms: u64) {
    for i in 0..count {
        let m = Measurement {
            channel: 0,
            kind: SensorKind::TEMPERATURE_C,
            value: i as f32,
        };
        n.record(m, t_ms).expect("recorded");
    }
}

fn ack_bytes(device: &str, boot: u32, through_seq: u32) -> heapless::Vec<u8, 128> {
    let ack = Ack {
        device_id: DeviceId::new(device).expect("valid"),
        boot,
        through_seq,
    };
    let mut buf = [0u8; 128];
    let len = ack.encode(&mut buf).expect("encodes");
    heapless::Vec::from_slice(&buf[..len]).expect("fits")
}

fn ack<const N: usize>(n: &mut Node<'_, N>, through: u32, now: u64) -> AckOutcome {
    n.on_ack_payload(&ack_bytes(DEVICE, BOOT, through), now)
}

/// Sends every batch the node plans at `now`; returns (first_seq, count) of each.
fn send_all<const N: usize>(n: &mut Node<'_, N>, now: u64) -> heapless::Vec<(u32, usize), 64> {
    let mut sent = heapless::Vec::new();
    while let Some(plan) = n.next_batch(now) {
        let mut out = [0u8; MAX_UPLINK_BYTES];
        let len = n.encode(&plan, now, &mut out).expect("encodes");
        let batch = UplinkBatch::decode(&out[..len]).expect("gateway decodes it");
        assert_eq!(batch.header.first_seq, plan.first_seq);
        assert_eq!(batch.readings.len(), plan.count);
        n.batch_sent(&plan, now);
        let _ = sent.push((plan.first_seq, plan.count));
    }
    sent
}

#[cfg_attr(test, test)]
pub(crate) fn batches_fill_then_wait_for_the_interval() {
    let mut n = node::<32>(config());
    record(&mut n, 6, 0);
    assert_eq!(
        send_all(&mut n, 0).as_slice(),
        &[(0, 4)],
        "one full batch, 2 readings wait"
    );
    assert_eq!(
        n.next_deadline(),
        Some(100),
        "batch interval of the oldest unsent reading"
    );
    assert!(n.next_batch(99).is_none());
    assert_eq!(send_all(&mut n, 100).as_slice(), &[(4, 2)]);
}

#[cfg_attr(test, test)]
pub(crate) fn nothing_is_sent_while_disconnected() {
    let mut n = Node::<'_, 8>::new(id(), BOOT, config());
    record(&mut n, 4, 0);
    assert!(n.next_batch(1_000).is_none());
    n.on_connected();
    assert!(n.next_batch(1_000).is_some());
}

#[cfg_attr(test, test)]
pub(crate) fn overflow_drops_oldest_and_reports_the_count_once() {
    let mut n = node::<4>(config());
    record(&mut n, 7, 0);
    let s = n.status();
    assert_eq!((s.produced, s.dropped, s.buffered), (7, 3, 4));
    let plan = n.next_batch(0).expect("full batch");
    assert_eq!((plan.first_seq, plan.held_from, plan.dropped), (3, 3, 3));
    n.batch_sent(&plan, 0);
    assert_eq!(
        ack(&mut n, 4, 10),
        AckOutcome::Freed {
            boot: BOOT,
            from: 3,
            through: 4
        }
    );
    record(&mut n, 2, 20);
    let plan = n.next_batch(200).expect("interval passed");
    assert_eq!(plan.dropped, 0, "already reported");
    assert_eq!(plan.first_seq, 7);
    assert_eq!(plan.held_from, 5);
}

#[cfg_attr(test, test)]
pub(crate) fn drops_of_sent_readings_move_the_cursor() {
    let mut n = node::<4>(config());
    record(&mut n, 4, 0);
    send_all(&mut n, 0);
    record(&mut n, 2, 5); // drops seq 0 and 1, both sent and unacked
    let s = n.status();
    assert_eq!((s.dropped, s.in_flight, s.buffered), (2, 2, 4));
    let plan = n.next_batch(200).expect("interval passed");
    assert_eq!((plan.first_seq, plan.held_from, plan.dropped), (4, 2, 2));
}

#[cfg_attr(test, test)]
pub(crate) fn acks_are_cumulative_and_stale_or_foreign_ones_free_nothing() {
    let mut n = node::<32>(config());
    record(&mut n, 8, 0);
    send_all(&mut n, 0);
    assert_eq!(
        ack(&mut n, 2, 10),
        AckOutcome::Freed {
            boot: BOOT,
            from: 0,
            through: 2
        }
    );
    assert_eq!(ack(&mut n, 1, 11), AckOutcome::Stale);
    assert_eq!(ack(&mut n, 2, 12), AckOutcome::Stale);
    assert_eq!(
        n.on_ack_payload(&ack_bytes(DEVICE, BOOT - 1, 7), 13),
        AckOutcome::OtherBoot
    );
    assert_eq!(
        n.on_ack_payload(&ack_bytes("node-2", BOOT, 7), 14),
        AckOutcome::OtherDevice
    );
    assert_eq!(
        ack(&mut n, 8, 15),
        AckOutcome::Unsent,
        "seq 8 was never sent"
    );
    assert!(matches!(
        n.on_ack_payload(b"\xff\x00", 16),
        AckOutcome::Invalid(_)
    ));
    assert_eq!(n.status().buffered, 5);
    assert_eq!(
        ack(&mut n, 7, 17),
        AckOutcome::Freed {
            boot: BOOT,
            from: 3,
            through: 7
        }
    );
    let s = n.status();
    assert_eq!((s.acked, s.buffered, s.in_flight), (8, 0, 0));
    assert_eq!(
        (
            s.stats.acks_progress,
            s.stats.acks_stale,
            s.stats.acks_rejected
        ),
        (2, 2, 4)
    );
    assert_eq!(s.produced, s.acked + s.dropped + s.buffered);
}

#[cfg_attr(test, test)]
pub(crate) fn acks_of_unsent_but_recorded_readings_are_refused() {
    let mut n = node::<32>(config());
    record(&mut n, 6, 0);
    send_all(&mut n, 0); // sends 0..=3; 4 and 5 wait for the interval
    assert_eq!(ack(&mut n, 5, 1), AckOutcome::Unsent);
    assert_eq!(n.status().buffered, 6);
}

#[cfg_attr(test, test)]
pub(crate) fn reconnect_resends_everything_unacked_in_order() {
    let mut n = node::<64>(config());
    record(&mut n, 12, 0);
    assert_eq!(send_all(&mut n, 0).as_slice(), &[(0, 4), (4, 4), (8, 4)]);
    assert_eq!(
        ack(&mut n, 3, 5),
        AckOutcome::Freed {
            boot: BOOT,
            from: 0,
            through: 3
        }
    );
    n.on_disconnected();
    record(&mut n, 2, 50);
    assert!(n.next_batch(500).is_none(), "offline");
    n.on_connected();
    let resent = send_all(&mut n, 500);
    assert_eq!(
        resent.as_slice(),
        &[(4, 4), (8, 4), (12, 2)],
        "from the oldest unacked, in order"
    );
    let s = n.status().stats;
    assert_eq!(
        (s.readings_sent, s.readings_resent, s.connects),
        (12 + 10, 8, 2)
    );
}

#[cfg_attr(test, test)]
pub(crate) fn ack_timeout_goes_back_to_the_oldest_unacked() {
    let mut n = node::<64>(config());
    record(&mut n, 8, 0);
    send_all(&mut n, 0);
    assert_eq!(
        n.next_deadline(),
        Some(1_000),
        "ack timer started by the first send"
    );
    // The gateway stored 0..=1 and lost the rest (it ignores batches beyond its next seq).
    ack(&mut n, 1, 400);
    assert_eq!(
        n.next_deadline(),
        Some(1_400),
        "progress restarts the timer"
    );
    record(&mut n, 4, 500);
    send_all(&mut n, 500);
    assert_eq!(n.next_deadline(), Some(1_400), "sends do not restart it");
    assert!(!n.check_ack_timeout(1_399));
    assert!(n.check_ack_timeout(1_400));
    assert_eq!(
        send_all(&mut n, 1_400).as_slice(),
        &[(2, 4), (6, 4), (10, 2)]
    );
    assert_eq!(n.status().stats.ack_timeouts, 1);
    assert_eq!(n.status().stats.readings_resent, 10);
    // A late ack for readings we are resending moves the cursor past them.
    ack(&mut n, 9, 1_450);
    record(&mut n, 1, 1_460);
    let plan = n.next_batch(1_600).expect("interval passed");
    assert_eq!((plan.first_seq, plan.resent), (12, 0));
}

#[cfg_attr(test, test)]
pub(crate) fn no_timeout_when_nothing_is_in_flight() {
    let mut n = node::<16>(config());
    record(&mut n, 4, 0);
    send_all(&mut n, 0);
    ack(&mut n, 3, 10);
    assert_eq!(n.next_deadline(), None);
    assert!(!n.check_ack_timeout(1_000_000));
}

#[cfg_attr(test, test)]
pub(crate) fn window_limits_readings_in_flight() {
    let mut n = node::<64>(config().with_window(8));
    record(&mut n, 20, 0);
    assert_eq!(send_all(&mut n, 0).as_slice(), &[(0, 4), (4, 4)]);
    assert_eq!(n.status().in_flight, 8);
    ack(&mut n, 1, 10);
    assert!(
        send_all(&mut n, 10).is_empty(),
        "a window-limited partial batch waits (no silly window)"
    );
    assert_eq!(
        send_all(&mut n, 100).as_slice(),
        &[(8, 2)],
        "only as far as the window allows"
    );
}

#[cfg_attr(test, test)]
pub(crate) fn batches_respect_the_contract_limits() {
    let cfg = NodeConfig::new()
        .with_batch_max(10_000)
        .with_window(100_000);
    assert_eq!(cfg.batch_max, MAX_READINGS_PER_BATCH);
    let mut n = node::<1024>(cfg);
    record(&mut n, 1000, 0);
    let mut total = 0;
    while let Some(plan) = n.next_batch(0) {
        assert!(plan.count <= MAX_READINGS_PER_BATCH);
        let mut out = [0u8; MAX_UPLINK_BYTES];
        let len = n
            .encode(&plan, 0, &mut out)
            .expect("a full batch fits MAX_UPLINK_BYTES");
        assert!(len <= MAX_UPLINK_BYTES);
        n.batch_sent(&plan, 0);
        total += plan.count;
    }
    assert_eq!(
        total,
        1000 - 1000 % MAX_READINGS_PER_BATCH,
        "the partial rest waits"
    );
}

#[cfg_attr(test, test)]
pub(crate) fn non_finite_values_are_refused_and_counted() {
    let mut n = node::<8>(config());
    let nan = Measurement {
        channel: 0,
        kind: SensorKind::TEMPERATURE_C,
        value: f32::NAN,
    };
    assert!(n.record(nan, 0).is_err());
    assert_eq!(
        (n.status().produced, n.status().stats.readings_rejected),
        (0, 1)
    );
}

#[cfg_attr(test, test)]
pub(crate) fn end_to_end_with_a_lossy_gateway_model() {
    // A model gateway: stores in order, ignores batches beyond its next seq, acks after each
    // stored batch; every third batch is lost in transit. Everything must arrive exactly once.
    let mut n = node::<256>(config().with_window(16));
    let mut next_expected = 0u32;
    let mut stored = 0u32;
    let mut batch_no = 0;
    let mut now = 0;
    for _ in 0..5_000 {
        now += 10;
        if n.status().produced < 200 {
            record(&mut n, 1, now);
        }
        n.check_ack_timeout(now);
        while let Some(plan) = n.next_batch(now) {
            let mut out = [0u8; MAX_UPLINK_BYTES];
            let len = n.encode(&plan, now, &mut out).expect("encodes");
            n.batch_sent(&plan, now);
            batch_no += 1;
            if batch_no % 3 == 0 {
                continue; // lost
            }
            let batch = UplinkBatch::decode(&out[..len]).expect("decodes");
            if batch.header.first_seq > next_expected {
                continue; // gap: ignored
            }
            for (seq, _) in batch.sequenced() {
                if seq == next_expected {
                    next_expected += 1;
                    stored += 1;
                }
            }
            let _ = n.on_ack_payload(&ack_bytes(DEVICE, BOOT, next_expected - 1), now);
        }
    }
    let s = n.status();
    assert_eq!((stored, s.acked, s.buffered, s.dropped), (200, 200, 0, 0));
    assert!(s.stats.ack_timeouts > 0 && s.stats.readings_resent > 0);
}

#[cfg_attr(test, test)]
pub(crate) fn plan_reports_resent_counts() {
    let mut n = node::<16>(config());
    record(&mut n, 6, 0);
    send_all(&mut n, 0);
    n.on_connected();
    let plan: BatchPlan = n.next_batch(0).expect("resend");
    assert_eq!((plan.first_seq, plan.count, plan.resent), (0, 4, 4));
}
