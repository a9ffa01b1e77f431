//! The chip's own cheap input: the internal temperature sensor (TSENS).

use core::convert::Infallible;
use esp_hal::tsens::TemperatureSensor;
use sensor_node_core::{Measurement, Sensor};
use telemetry_wire::SensorKind;

/// Die temperature on `channel` (±a few °C, with esp-hal's fixed offset: good for trends).
pub struct ChipTemperature {
    sensor: TemperatureSensor<'static>,
    channel: u8,
}

impl ChipTemperature {
    /// Samples `sensor` (already powered up).
    pub fn new(sensor: TemperatureSensor<'static>, channel: u8) -> Self {
        Self { sensor, channel }
    }
}

impl Sensor for ChipTemperature {
    type Error = Infallible;

    fn start(&mut self) -> Result<u32, Infallible> {
        Ok(0)
    }

    fn fetch(&mut self, emit: &mut dyn FnMut(Measurement)) -> Result<(), Infallible> {
        emit(Measurement {
            channel: self.channel,
            kind: SensorKind::DIE_TEMPERATURE_C,
            value: self.sensor.get_temperature().to_celsius(),
        });
        Ok(())
    }
}
