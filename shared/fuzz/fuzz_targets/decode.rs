//! Feeds arbitrary bytes to every decoder of the contract. Invariants checked beyond "no
//! panic": an accepted uplink obeys the contract's rules and re-encodes to a payload that
//! decodes to the same batch; an accepted ack round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telemetry_wire::limits::{MAX_ACK_BYTES, MAX_UPLINK_BYTES};
use telemetry_wire::{Ack, UplinkBatch, topics};

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = UplinkBatch::decode(data) {
        assert!(batch.header.held_from <= batch.header.first_seq);
        let mut out = [0u8; MAX_UPLINK_BYTES];
        let n = batch.encode(&mut out).expect("an accepted batch re-encodes");
        assert_eq!(UplinkBatch::decode(&out[..n]).as_ref(), Ok(&batch));
    }
    if let Ok(ack) = Ack::decode(data) {
        let mut out = [0u8; MAX_ACK_BYTES];
        let n = ack.encode(&mut out).expect("an accepted ack re-encodes");
        assert_eq!(Ack::decode(&out[..n]), Ok(ack));
    }
    if let Ok(topic) = core::str::from_utf8(data) {
        let _ = topics::parse_topic(topic);
    }
});
