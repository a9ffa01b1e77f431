//! The wire contract between sensor firmware and the gateway.
//!
//! This crate is the *only* place the protocol is defined. Firmware and gateway both import it,
//! so a change here is a protocol change: bump [`SCHEMA_VERSION`] and add golden vectors.
//!
//! - [`device_id`]: which device IDs exist (one validation function, used everywhere).
//! - [`topics`]: the table of MQTT topics and the payload type each one carries.
//! - [`uplink`]: one device's batch of readings (device → gateway).
//! - [`ack`]: the gateway's durable acknowledgement (gateway → device).
//! - [`time`]: the device time base and its conversion to UTC.
//! - [`limits`]: every size limit as a constant.
//!
//! The encoding is CBOR (RFC 8949) with small integer map keys; the normative schema is
//! `shared/telemetry.cddl` and `shared/tests/vectors/` holds golden vectors.
//!
//! Decoding never panics on any input: it returns a [`DecodeError`] whose
//! [`reason`](DecodeError::reason) is a stable label for counting rejections.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

pub mod ack;
mod codec;
pub mod device_id;
mod error;
pub mod limits;
pub mod time;
pub mod topics;
pub mod uplink;

pub use ack::Ack;
pub use device_id::{DeviceId, DeviceIdError};
pub use error::{DecodeError, EncodeError};
pub use topics::{TopicError, TopicKind};
pub use uplink::{Reading, SensorKind, UplinkBatch, UplinkHeader};

/// Version of the message schema carried in every message (key 0). Decoders reject others.
pub const SCHEMA_VERSION: u8 = 1;
