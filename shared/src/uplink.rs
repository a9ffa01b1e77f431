//! The uplink message: one device's batch of readings.
//!
//! A reading is identified forever by `(device ID, boot, seq)`: `boot` is the device's boot
//! counter (persisted, incremented at every start) and `seq` counts readings from 0 within one
//! boot. A batch carries consecutive readings: reading `i` has `seq = first_seq + i`.
//!
//! `held_from` is the lowest sequence number the device still holds in its offline ring.
//! Every `seq < held_from` was either acknowledged by the gateway or dropped by the device's
//! overflow policy and will never be sent again; the gateway uses it to move its ack past
//! readings the device gave up on. `dropped` counts the readings the device dropped since its
//! previous batch.
//!
//! Wire form (see `telemetry.cddl`): a map with keys
//! `0` version, `1` device ID, `2` boot, `3` first_seq, `4` held_from, `5` dropped,
//! `6` sent_at_ms, `7` boot_utc_ms (optional), `8` readings, `9` MAC (optional, reserved);
//! each reading is the array `[t_ms, channel, kind, value]`.

use crate::codec::{finish, number, read_map, require, version};
use crate::device_id::DeviceId;
use crate::error::{DecodeError, EncodeError};
use crate::limits::{MAX_MAC_LEN, MAX_READINGS_PER_BATCH, MAX_UPLINK_BYTES};
use minicbor::encode::write::Cursor;
use minicbor::{Decoder, Encoder};

/// What a reading measures, with its unit. The code travels on the wire; codes this version
/// does not name are carried through unchanged so that new sensor kinds need no gateway update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SensorKind(pub u8);

impl SensorKind {
    /// Air temperature in degrees Celsius.
    pub const TEMPERATURE_C: Self = Self(0);
    /// Relative humidity in percent.
    pub const HUMIDITY_PCT: Self = Self(1);
    /// Barometric pressure in pascal.
    pub const PRESSURE_PA: Self = Self(2);
    /// Supply or battery voltage in volts.
    pub const VOLTAGE_V: Self = Self(3);
    /// Illuminance in lux.
    pub const ILLUMINANCE_LX: Self = Self(4);
    /// CO2 concentration in parts per million.
    pub const CO2_PPM: Self = Self(5);
    /// A count of events (pulses, button presses) since boot.
    pub const COUNTER: Self = Self(6);
    /// MCU die temperature in degrees Celsius.
    pub const DIE_TEMPERATURE_C: Self = Self(7);

    /// A stable name with the unit, or `None` for codes this version does not know.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::TEMPERATURE_C => "temperature_c",
            Self::HUMIDITY_PCT => "humidity_pct",
            Self::PRESSURE_PA => "pressure_pa",
            Self::VOLTAGE_V => "voltage_v",
            Self::ILLUMINANCE_LX => "illuminance_lx",
            Self::CO2_PPM => "co2_ppm",
            Self::COUNTER => "counter",
            Self::DIE_TEMPERATURE_C => "die_temperature_c",
            _ => return None,
        })
    }
}

/// One sensor reading.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Reading {
    /// When it was taken: milliseconds since boot on the device's monotonic clock
    /// (see [`crate::time`]).
    pub t_ms: u64,
    /// Which sensor input on the device (device-defined, stable per device model).
    pub channel: u8,
    /// What is measured.
    pub kind: SensorKind,
    /// The measured value in the kind's unit; always finite.
    pub value: f32,
}

/// Everything in a batch but the readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UplinkHeader<'a> {
    /// The sending device; must match the device level of the topic.
    pub device_id: DeviceId<'a>,
    /// Boot counter of the device.
    pub boot: u32,
    /// Sequence number of the first reading of the batch.
    pub first_seq: u32,
    /// Lowest sequence number the device still holds; `held_from <= first_seq`.
    pub held_from: u32,
    /// Readings dropped by the device since its previous batch.
    pub dropped: u32,
    /// Device monotonic time (ms since boot) when the batch was encoded.
    pub sent_at_ms: u64,
    /// UTC time of boot in ms since the Unix epoch, if the device knows it (RTC or SNTP).
    pub boot_utc_ms: Option<u64>,
    /// Per-batch message authentication code. Reserved: not yet computed or checked.
    pub mac: Option<&'a [u8]>,
}

/// A decoded, validated batch.
#[derive(Debug, Clone, PartialEq)]
pub struct UplinkBatch<'a> {
    /// The batch header.
    pub header: UplinkHeader<'a>,
    /// The readings; reading `i` has sequence number `header.first_seq + i`.
    pub readings: heapless::Vec<Reading, MAX_READINGS_PER_BATCH>,
}

impl UplinkHeader<'_> {
    /// Checks the header rules for a batch of `count` readings.
    pub fn validate(&self, count: usize) -> Result<(), DecodeError> {
        if count == 0 {
            return Err(DecodeError::EmptyBatch);
        }
        if count > MAX_READINGS_PER_BATCH {
            return Err(DecodeError::TooManyReadings);
        }
        if self.first_seq.checked_add(count as u32 - 1).is_none() {
            return Err(DecodeError::SequenceOverflow);
        }
        if self.held_from > self.first_seq {
            return Err(DecodeError::HeldFromAfterFirstSeq);
        }
        if self.mac.is_some_and(|m| m.len() > MAX_MAC_LEN) {
            return Err(DecodeError::MacTooLong);
        }
        Ok(())
    }
}

impl Reading {
    /// Checks the reading rules against the batch's send time.
    pub fn validate(&self, sent_at_ms: u64) -> Result<(), DecodeError> {
        if !self.value.is_finite() {
            return Err(DecodeError::NonFiniteValue);
        }
        if self.t_ms > sent_at_ms {
            return Err(DecodeError::ReadingAfterSend);
        }
        Ok(())
    }
}

/// Encodes a batch straight from the caller's storage (the firmware's ring buffer) into `out`
/// and returns the number of bytes written. Refuses anything the decoder would reject.
pub fn encode_uplink<'r, I>(
    header: &UplinkHeader<'_>,
    readings: I,
    out: &mut [u8],
) -> Result<usize, EncodeError>
where
    I: ExactSizeIterator<Item = &'r Reading> + Clone,
{
    header
        .validate(readings.len())
        .map_err(EncodeError::Invalid)?;
    for r in readings.clone() {
        r.validate(header.sent_at_ms)
            .map_err(EncodeError::Invalid)?;
    }
    let fields = 8 + u64::from(header.boot_utc_ms.is_some()) + u64::from(header.mac.is_some());
    let mut e = Encoder::new(Cursor::new(out));
    e.map(fields)?;
    e.u8(0)?.u8(crate::SCHEMA_VERSION)?;
    e.u8(1)?.str(header.device_id.as_str())?;
    e.u8(2)?.u32(header.boot)?;
    e.u8(3)?.u32(header.first_seq)?;
    e.u8(4)?.u32(header.held_from)?;
    e.u8(5)?.u32(header.dropped)?;
    e.u8(6)?.u64(header.sent_at_ms)?;
    if let Some(utc) = header.boot_utc_ms {
        e.u8(7)?.u64(utc)?;
    }
    e.u8(8)?.array(readings.len() as u64)?;
    for r in readings {
        e.array(4)?
            .u64(r.t_ms)?
            .u8(r.channel)?
            .u8(r.kind.0)?
            .f32(r.value)?;
    }
    if let Some(mac) = header.mac {
        e.u8(9)?.bytes(mac)?;
    }
    let len = e.writer().position();
    if len > MAX_UPLINK_BYTES {
        return Err(EncodeError::Invalid(DecodeError::TooLarge));
    }
    Ok(len)
}

fn decode_reading(d: &mut Decoder<'_>) -> Result<Reading, DecodeError> {
    match d.array()? {
        Some(4) => {}
        None => return Err(DecodeError::IndefiniteLength),
        Some(_) => return Err(DecodeError::Malformed),
    }
    Ok(Reading {
        t_ms: d.u64()?,
        channel: d.u8()?,
        kind: SensorKind(d.u8()?),
        value: number(d)?,
    })
}

fn decode_readings(
    d: &mut Decoder<'_>,
) -> Result<heapless::Vec<Reading, MAX_READINGS_PER_BATCH>, DecodeError> {
    let count = d.array()?.ok_or(DecodeError::IndefiniteLength)?;
    if count > MAX_READINGS_PER_BATCH as u64 {
        return Err(DecodeError::TooManyReadings);
    }
    let mut readings = heapless::Vec::new();
    for _ in 0..count {
        readings
            .push(decode_reading(d)?)
            .map_err(|_| DecodeError::TooManyReadings)?;
    }
    Ok(readings)
}

impl<'a> UplinkBatch<'a> {
    /// Decodes and validates an untrusted payload. Never panics.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_UPLINK_BYTES {
            return Err(DecodeError::TooLarge);
        }
        let mut d = Decoder::new(bytes);
        let (mut device, mut boot, mut first_seq, mut held_from) = ("", 0, 0, 0);
        let (mut dropped, mut sent_at_ms, mut boot_utc_ms, mut mac) = (0, 0, None, None);
        let mut readings = heapless::Vec::new();
        let seen = read_map(&mut d, |key, d| {
            match key {
                0 => version(d)?,
                1 => device = d.str()?,
                2 => boot = d.u32()?,
                3 => first_seq = d.u32()?,
                4 => held_from = d.u32()?,
                5 => dropped = d.u32()?,
                6 => sent_at_ms = d.u64()?,
                7 => boot_utc_ms = Some(d.u64()?),
                8 => readings = decode_readings(d)?,
                9 => mac = Some(d.bytes()?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        finish(&d)?;
        require(seen, &[0, 1, 2, 3, 4, 5, 6, 8])?;
        let header = UplinkHeader {
            device_id: DeviceId::new(device).map_err(DecodeError::DeviceId)?,
            boot,
            first_seq,
            held_from,
            dropped,
            sent_at_ms,
            boot_utc_ms,
            mac,
        };
        header.validate(readings.len())?;
        for r in &readings {
            r.validate(sent_at_ms)?;
        }
        Ok(Self { header, readings })
    }

    /// Encodes the batch into `out`; see [`encode_uplink`].
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        encode_uplink(&self.header, self.readings.iter(), out)
    }

    /// Sequence number of the last reading.
    pub fn last_seq(&self) -> u32 {
        // validate() guarantees 1..=MAX readings and no overflow.
        self.header.first_seq + (self.readings.len() as u32).saturating_sub(1)
    }

    /// The readings with their sequence numbers.
    pub fn sequenced(&self) -> impl Iterator<Item = (u32, &Reading)> {
        (self.header.first_seq..).zip(self.readings.iter())
    }
}
