//! The table of MQTT topics and the payload each carries.
//!
//! | kind | topic | direction | QoS | payload |
//! |---|---|---|---|---|
//! | [`TopicKind::Uplink`] | `tlm/v1/{device}/up` | device → gateway | 1 | [`UplinkBatch`](crate::UplinkBatch) |
//! | [`TopicKind::Ack`] | `tlm/v1/{device}/ack` | gateway → device | 0 | [`Ack`](crate::Ack) |
//!
//! Acks go at QoS 0: a lost ack is repaired by the device resending unacknowledged readings,
//! which the gateway answers with a fresh ack.

use crate::device_id::{DeviceId, DeviceIdError};
use crate::limits::{MAX_ACK_BYTES, MAX_TOPIC_LEN, MAX_UPLINK_BYTES};
use core::fmt::Write as _;

/// Every topic starts with this prefix; `v1` is the topic-tree version, not the schema version.
pub const PREFIX: &str = "tlm/v1/";

/// The kinds of topic in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TopicKind {
    /// A device's batches of readings.
    Uplink,
    /// The gateway's durable acknowledgements for one device.
    Ack,
}

/// Who publishes on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Published by the device, consumed by the gateway.
    DeviceToGateway,
    /// Published by the gateway, consumed by the device.
    GatewayToDevice,
}

/// One row of the topic table.
#[derive(Debug, Clone, Copy)]
pub struct TopicSpec {
    /// Which topic this row describes.
    pub kind: TopicKind,
    /// The last topic level, after `tlm/v1/{device}/`.
    pub suffix: &'static str,
    /// Subscription filter matching this topic for every device.
    pub filter: &'static str,
    /// Who publishes.
    pub direction: Direction,
    /// MQTT QoS used for publishing.
    pub qos: u8,
    /// Name of the payload type (a rule in `telemetry.cddl`).
    pub payload: &'static str,
    /// Largest payload in bytes.
    pub max_payload: usize,
}

/// The topic table. Everything that names a topic goes through it.
pub const TOPICS: [TopicSpec; 2] = [
    TopicSpec {
        kind: TopicKind::Uplink,
        suffix: "up",
        filter: "tlm/v1/+/up",
        direction: Direction::DeviceToGateway,
        qos: 1,
        payload: "uplink-batch",
        max_payload: MAX_UPLINK_BYTES,
    },
    TopicSpec {
        kind: TopicKind::Ack,
        suffix: "ack",
        filter: "tlm/v1/+/ack",
        direction: Direction::GatewayToDevice,
        qos: 0,
        payload: "ack",
        max_payload: MAX_ACK_BYTES,
    },
];

impl TopicKind {
    /// This kind's row of [`TOPICS`].
    pub fn spec(self) -> &'static TopicSpec {
        match self {
            Self::Uplink => &TOPICS[0],
            Self::Ack => &TOPICS[1],
        }
    }
}

/// A topic string built for one device.
pub type TopicString = heapless::String<MAX_TOPIC_LEN>;

/// Builds the topic of `kind` for `device`. Cannot fail: IDs are bounded and the buffer fits
/// the longest ID.
pub fn topic_for(kind: TopicKind, device: DeviceId<'_>) -> TopicString {
    let mut topic = TopicString::new();
    // MAX_TOPIC_LEN leaves room for PREFIX + MAX_DEVICE_ID_LEN + "/" + the longest suffix,
    // which the `topic_buffer_fits_longest_id` test proves, so this write never fails.
    let _ = write!(topic, "{PREFIX}{}/{}", device.as_str(), kind.spec().suffix);
    topic
}

/// Why a topic is not one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TopicError {
    /// The topic does not have the form `tlm/v1/{device}/{suffix}` with a known suffix.
    Unknown,
    /// The device level is not a valid device ID.
    DeviceId(DeviceIdError),
}

impl core::fmt::Display for TopicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Unknown => f.write_str("not a tlm/v1/{device}/{up|ack} topic"),
            Self::DeviceId(e) => write!(f, "invalid device id in topic: {e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TopicError {}

/// Splits a topic into its kind and device ID.
pub fn parse_topic(topic: &str) -> Result<(TopicKind, DeviceId<'_>), TopicError> {
    let rest = topic.strip_prefix(PREFIX).ok_or(TopicError::Unknown)?;
    let (device, suffix) = rest.rsplit_once('/').ok_or(TopicError::Unknown)?;
    let spec = TOPICS
        .iter()
        .find(|s| s.suffix == suffix)
        .ok_or(TopicError::Unknown)?;
    let device = DeviceId::new(device).map_err(TopicError::DeviceId)?;
    Ok((spec.kind, device))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_DEVICE_ID_LEN;

    #[test]
    fn topic_buffer_fits_longest_id() {
        let long = "d".repeat(MAX_DEVICE_ID_LEN);
        for spec in TOPICS {
            let topic = topic_for(spec.kind, DeviceId::new(&long).expect("valid"));
            assert!(topic.ends_with(spec.suffix), "{topic}");
            assert_eq!(
                parse_topic(&topic),
                Ok((spec.kind, DeviceId::new(&long).expect("valid")))
            );
        }
    }

    #[test]
    fn round_trips_and_rejects() {
        let id = DeviceId::new("node-7").expect("valid");
        assert_eq!(
            topic_for(TopicKind::Uplink, id).as_str(),
            "tlm/v1/node-7/up"
        );
        assert_eq!(topic_for(TopicKind::Ack, id).as_str(), "tlm/v1/node-7/ack");
        assert_eq!(parse_topic("tlm/v1/node-7/up"), Ok((TopicKind::Uplink, id)));
        assert_eq!(parse_topic("tlm/v1/node-7/down"), Err(TopicError::Unknown));
        assert_eq!(
            parse_topic("tlm/v1/a/b/up"),
            Err(TopicError::DeviceId(DeviceIdError::BadCharacter))
        );
        assert_eq!(parse_topic("tlm/v2/node/up"), Err(TopicError::Unknown));
        assert_eq!(
            parse_topic("tlm/v1//up"),
            Err(TopicError::DeviceId(DeviceIdError::Empty))
        );
    }
}
