//! Driver for the Sensirion SHT4x (SHT40/41/43/45) temperature and humidity sensor over
//! embedded-hal 1.0 I2C.
//!
//! Protocol (datasheet SHT4x v6.6): write one command byte, wait for the conversion, read six
//! bytes `T_msb T_lsb CRC RH_msb RH_lsb CRC`. Each word is checked with
//! [`sensirion_crc8`](super::sensirion_crc8); a mismatch is an error, never a reading.
//! `T = -45 + 175 * raw / 65535` °C, `RH = -6 + 125 * raw / 65535` %, clamped to 0..=100.

use super::{Measurement, Sensor, sensirion_crc8};
use embedded_hal::i2c::I2c;
use telemetry_wire::SensorKind;

/// I2C address of SHT40-AD1B and most variants (others use 0x45 or 0x46).
pub const SHT4X_ADDRESS: u8 = 0x44;

const SOFT_RESET: u8 = 0x94;

/// Measurement repeatability: better precision takes longer and more energy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Precision {
    /// Command 0xFD, up to 8.3 ms.
    High,
    /// Command 0xF6, up to 4.5 ms.
    Medium,
    /// Command 0xE0, up to 1.6 ms.
    Low,
}

impl Precision {
    fn command(self) -> u8 {
        match self {
            Self::High => 0xFD,
            Self::Medium => 0xF6,
            Self::Low => 0xE0,
        }
    }

    /// Worst-case conversion time in whole milliseconds.
    pub fn conversion_ms(self) -> u32 {
        match self {
            Self::High => 9,
            Self::Medium => 5,
            Self::Low => 2,
        }
    }
}

/// Why an SHT4x transaction failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Sht4xError<E> {
    /// The I2C bus reported an error (NACK while converting, arbitration loss, ...).
    I2c(E),
    /// A word's CRC did not match: the transfer was corrupted.
    Crc,
}

/// An SHT4x on an I2C bus. Emits temperature on `channel` and humidity on `channel + 1`.
#[derive(Debug)]
pub struct Sht4x<I2C> {
    i2c: I2C,
    address: u8,
    precision: Precision,
    channel: u8,
}

impl<I2C: I2c> Sht4x<I2C> {
    /// A driver for the sensor at `address` (usually [`SHT4X_ADDRESS`]).
    pub fn new(i2c: I2C, address: u8, precision: Precision, channel: u8) -> Self {
        Self {
            i2c,
            address,
            precision,
            channel,
        }
    }

    /// Sends a soft reset; the sensor is ready again after 1 ms.
    pub fn soft_reset(&mut self) -> Result<(), Sht4xError<I2C::Error>> {
        self.i2c
            .write(self.address, &[SOFT_RESET])
            .map_err(Sht4xError::I2c)
    }

    /// Starts a conversion; returns how many ms to wait before [`Sht4x::read_measurement`].
    pub fn start_measurement(&mut self) -> Result<u32, Sht4xError<I2C::Error>> {
        self.i2c
            .write(self.address, &[self.precision.command()])
            .map_err(Sht4xError::I2c)?;
        Ok(self.precision.conversion_ms())
    }

    /// Reads a finished conversion as (°C, %RH).
    pub fn read_measurement(&mut self) -> Result<(f32, f32), Sht4xError<I2C::Error>> {
        let mut buf = [0u8; 6];
        self.i2c
            .read(self.address, &mut buf)
            .map_err(Sht4xError::I2c)?;
        let t = word(&buf[0..3])?;
        let rh = word(&buf[3..6])?;
        Ok((temperature_c(t), humidity_pct(rh)))
    }

    /// Gives the bus back.
    pub fn release(self) -> I2C {
        self.i2c
    }
}

/// Checks a `msb lsb crc` triple and returns the word.
fn word<E>(bytes: &[u8]) -> Result<u16, Sht4xError<E>> {
    match bytes {
        [msb, lsb, crc] if sensirion_crc8(&[*msb, *lsb]) == *crc => {
            Ok(u16::from_be_bytes([*msb, *lsb]))
        }
        _ => Err(Sht4xError::Crc),
    }
}

fn temperature_c(raw: u16) -> f32 {
    -45.0 + 175.0 * f32::from(raw) / 65535.0
}

fn humidity_pct(raw: u16) -> f32 {
    (-6.0 + 125.0 * f32::from(raw) / 65535.0).clamp(0.0, 100.0)
}

impl<I2C: I2c> Sensor for Sht4x<I2C> {
    type Error = Sht4xError<I2C::Error>;

    fn start(&mut self) -> Result<u32, Self::Error> {
        self.start_measurement()
    }

    fn fetch(&mut self, emit: &mut dyn FnMut(Measurement)) -> Result<(), Self::Error> {
        let (t, rh) = self.read_measurement()?;
        emit(Measurement {
            channel: self.channel,
            kind: SensorKind::TEMPERATURE_C,
            value: t,
        });
        emit(Measurement {
            channel: self.channel.wrapping_add(1),
            kind: SensorKind::HUMIDITY_PCT,
            value: rh,
        });
        Ok(())
    }
}

#[cfg(any(test, feature = "target-tests"))]
// Test code: a failed expectation is the test failing (clippy.toml allows this under
// `#[cfg(test)]` only, which this module is not when `target-tests` compiles it for a target).
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
pub(crate) mod tests {
    use super::*;

    #[cfg_attr(test, test)]
    pub(crate) fn conversion_formulas_match_the_datasheet_end_points() {
        assert_eq!(temperature_c(0), -45.0);
        assert_eq!(temperature_c(u16::MAX), 130.0);
        assert_eq!(humidity_pct(0), 0.0, "clamped from -6");
        assert_eq!(humidity_pct(u16::MAX), 100.0, "clamped from 119");
    }

    #[cfg_attr(test, test)]
    pub(crate) fn word_checks_the_crc() {
        assert_eq!(word::<()>(&[0xBE, 0xEF, 0x92]), Ok(0xBEEF));
        assert_eq!(word::<()>(&[0xBE, 0xEF, 0x93]), Err(Sht4xError::Crc));
    }
}
