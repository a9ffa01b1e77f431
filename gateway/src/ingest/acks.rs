//! Encoding acks for publishing, shared by the embedded and external modes.

use crate::buffer::AckOut;
use telemetry_wire::limits::MAX_ACK_BYTES;
use telemetry_wire::topics::{TopicKind, topic_for};
use telemetry_wire::{Ack, DeviceId};

/// Topic and payload of an ack; `None` if the device ID is invalid (never, for stored IDs).
pub fn encode(ack: &AckOut) -> Option<(String, Vec<u8>)> {
    let device_id = DeviceId::new(&ack.device).ok()?;
    let message = Ack {
        device_id,
        boot: ack.boot,
        through_seq: ack.through_seq,
    };
    let mut buf = [0u8; MAX_ACK_BYTES];
    let n = message.encode(&mut buf).ok()?;
    // Exactly sized: the broker keeps recent acks per device (a 128-byte buffer behind each
    // ~25-byte ack cost ~2 MB at 1,000 devices).
    let payload = buf.get(..n)?.to_vec();
    Some((
        topic_for(TopicKind::Ack, device_id).as_str().to_owned(),
        payload,
    ))
}
