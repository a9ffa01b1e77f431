//! The ack message: the gateway's promise that readings are on its disk.
//!
//! `Ack { device_id, boot, through_seq }` means every reading of that device and boot with
//! `seq <= through_seq` is durably stored by the gateway, or was declared dropped by the
//! device (`seq < held_from`). The device may free those readings. Acks are cumulative and
//! idempotent: a stale or repeated ack frees nothing new.
//!
//! Wire form: a map with keys `0` version, `1` device ID, `2` boot, `3` through_seq.

use crate::codec::{finish, read_map, require, version};
use crate::device_id::DeviceId;
use crate::error::{DecodeError, EncodeError};
use crate::limits::MAX_ACK_BYTES;
use minicbor::encode::write::Cursor;
use minicbor::{Decoder, Encoder};

/// A durable acknowledgement for one device and boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Ack<'a> {
    /// The device the ack is for; must match the device level of the topic.
    pub device_id: DeviceId<'a>,
    /// The boot the sequence numbers belong to.
    pub boot: u32,
    /// Highest sequence number up to which everything is settled (inclusive).
    pub through_seq: u32,
}

impl<'a> Ack<'a> {
    /// Encodes the ack into `out` and returns the number of bytes written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        let mut e = Encoder::new(Cursor::new(out));
        e.map(4)?;
        e.u8(0)?.u8(crate::SCHEMA_VERSION)?;
        e.u8(1)?.str(self.device_id.as_str())?;
        e.u8(2)?.u32(self.boot)?;
        e.u8(3)?.u32(self.through_seq)?;
        Ok(e.writer().position())
    }

    /// Decodes and validates an untrusted payload. Never panics.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_ACK_BYTES {
            return Err(DecodeError::TooLarge);
        }
        let mut d = Decoder::new(bytes);
        let (mut device, mut boot, mut through_seq) = ("", 0, 0);
        let seen = read_map(&mut d, |key, d| {
            match key {
                0 => version(d)?,
                1 => device = d.str()?,
                2 => boot = d.u32()?,
                3 => through_seq = d.u32()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        finish(&d)?;
        require(seen, &[0, 1, 2, 3])?;
        Ok(Self {
            device_id: DeviceId::new(device).map_err(DecodeError::DeviceId)?,
            boot,
            through_seq,
        })
    }
}
