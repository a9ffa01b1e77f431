//! Property tests: every valid batch round-trips, and no input of any shape makes a decoder
//! panic. Truncated payloads are always rejected.
#![allow(clippy::expect_used)]

use proptest::prelude::*;
use telemetry_wire::limits::{MAX_MAC_LEN, MAX_READINGS_PER_BATCH, MAX_UPLINK_BYTES};
use telemetry_wire::{Ack, DeviceId, Reading, SensorKind, UplinkBatch, UplinkHeader};

fn device_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}"
}

fn reading(sent_at: u64) -> impl Strategy<Value = Reading> {
    (
        0..=sent_at,
        any::<u8>(),
        any::<u8>(),
        any::<f32>().prop_filter("finite", |v| v.is_finite()),
    )
        .prop_map(|(t_ms, channel, kind, value)| Reading {
            t_ms,
            channel,
            kind: SensorKind(kind),
            value,
        })
}

prop_compose! {
    fn batch_parts()(
        id in device_id(),
        boot in any::<u32>(),
        first_seq in 0..=u32::MAX - MAX_READINGS_PER_BATCH as u32,
        back in any::<u32>(),
        dropped in any::<u32>(),
        sent_at in any::<u64>(),
        boot_utc in proptest::option::of(any::<u64>()),
        mac in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=MAX_MAC_LEN)),
    )(
        readings in proptest::collection::vec(reading(sent_at), 1..=MAX_READINGS_PER_BATCH),
        id in Just(id), boot in Just(boot), first_seq in Just(first_seq),
        held_from in Just(first_seq.saturating_sub(back)), dropped in Just(dropped),
        sent_at in Just(sent_at), boot_utc in Just(boot_utc), mac in Just(mac),
    ) -> (String, u32, u32, u32, u32, u64, Option<u64>, Option<Vec<u8>>, Vec<Reading>) {
        (id, boot, first_seq, held_from, dropped, sent_at, boot_utc, mac, readings)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn valid_batches_round_trip((id, boot, first_seq, held_from, dropped, sent_at, boot_utc, mac, readings) in batch_parts()) {
        let header = UplinkHeader {
            device_id: DeviceId::new(&id).expect("strategy makes valid ids"),
            boot, first_seq, held_from, dropped, sent_at_ms: sent_at, boot_utc_ms: boot_utc,
            mac: mac.as_deref(),
        };
        let batch = UplinkBatch { header, readings: heapless::Vec::from_slice(&readings).expect("fits") };
        let mut out = vec![0u8; MAX_UPLINK_BYTES];
        // The limits are chosen so that any valid batch fits the payload limit.
        let n = batch.encode(&mut out).expect("a valid batch always encodes");
        prop_assert_eq!(UplinkBatch::decode(&out[..n]), Ok(batch.clone()));
        // Every strict prefix is rejected, never accepted or panicking.
        for cut in 0..n {
            prop_assert!(UplinkBatch::decode(&out[..cut]).is_err(), "prefix {} of {} accepted", cut, n);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = UplinkBatch::decode(&bytes);
        let _ = Ack::decode(&bytes);
    }

    /// Mutations of a valid payload reach deeper decoder paths than random bytes.
    #[test]
    fn mutated_payloads_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = include_golden();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Ok(b) = UplinkBatch::decode(&bytes) {
            // Anything accepted obeys the contract.
            prop_assert!(b.header.held_from <= b.header.first_seq);
            prop_assert!(b.readings.iter().all(|r| r.value.is_finite() && r.t_ms <= b.header.sent_at_ms));
        }
    }

    #[test]
    fn acks_round_trip(id in device_id(), boot in any::<u32>(), through_seq in any::<u32>()) {
        let ack = Ack { device_id: DeviceId::new(&id).expect("valid"), boot, through_seq };
        let mut out = [0u8; telemetry_wire::limits::MAX_ACK_BYTES];
        let n = ack.encode(&mut out).expect("fits");
        prop_assert_eq!(Ack::decode(&out[..n]), Ok(ack));
    }
}

fn include_golden() -> Vec<u8> {
    hex::decode("a8000101666e6f64652d310207031903e8041903de0503061a05265c7b0882841a05265c000000fa41ac0000841a05265c640101fa42410000")
        .expect("hex")
}

#[test]
fn deeply_nested_unknown_field_is_rejected_or_skipped_without_overflow() {
    // A map with an unknown key whose value nests 100k arrays: skip must not recurse.
    let mut bytes = hex::decode("a9000101616402000300040005000600").expect("hex");
    bytes.push(0x14);
    bytes.extend(std::iter::repeat_n(0x81, 100_000));
    bytes.push(0x00);
    bytes.extend(hex::decode("0881840000000000").expect("hex"));
    let _ = UplinkBatch::decode(&bytes); // too large: rejected before parsing
    let mut small = bytes.clone();
    small.truncate(4000);
    let _ = UplinkBatch::decode(&small);
}
