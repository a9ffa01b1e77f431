//! Sensor inputs. A board or simulator plugs its inputs in through [`Sensor`]; the sampler
//! turns measurements into readings with sequence numbers.
//!
//! The trait is two-phase (start a conversion, fetch it later) so that a conversion time is
//! waited for on the node's async clock instead of blocking the executor in a delay.

mod crc;
mod sht4x;

pub use crc::sensirion_crc8;
pub use sht4x::{Precision, SHT4X_ADDRESS, Sht4x, Sht4xError};
#[cfg(feature = "target-tests")]
pub(crate) use {crc::tests as crc_tests, sht4x::tests as sht4x_tests};

use telemetry_wire::SensorKind;

/// One measured value, not yet stamped with time or sequence number.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Measurement {
    /// Which input of the device (stable per device model).
    pub channel: u8,
    /// What is measured.
    pub kind: SensorKind,
    /// The value in the kind's unit. Non-finite values are rejected (counted) by the node.
    pub value: f32,
}

/// A source of measurements.
pub trait Sensor {
    /// Why a conversion could not be started or read.
    type Error: core::fmt::Debug;

    /// Starts a conversion and returns the milliseconds until [`Sensor::fetch`] may be called
    /// (0: at once).
    fn start(&mut self) -> Result<u32, Self::Error>;

    /// Reads the finished conversion and hands each value to `emit`.
    fn fetch(&mut self, emit: &mut dyn FnMut(Measurement)) -> Result<(), Self::Error>;
}

impl<S: Sensor + ?Sized> Sensor for &mut S {
    type Error = S::Error;

    fn start(&mut self) -> Result<u32, Self::Error> {
        (**self).start()
    }

    fn fetch(&mut self, emit: &mut dyn FnMut(Measurement)) -> Result<(), Self::Error> {
        (**self).fetch(emit)
    }
}
