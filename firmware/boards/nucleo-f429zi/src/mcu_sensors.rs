//! The MCU's own inputs through ADC1: die temperature and the analog supply (VDDA), from the
//! internal temperature sensor and the internal reference (VREFINT).

use core::convert::Infallible;
use embassy_stm32::Peri;
use embassy_stm32::adc::{Adc, SampleTime, Temperature, VrefInt};
use embassy_stm32::peripherals::ADC1;
use embassy_time::{Duration, block_for};
use sensor_node_core::{Measurement, Sensor};
use telemetry_wire::SensorKind;

/// VREFINT typical voltage (STM32F429 datasheet, "Embedded reference voltage").
const VREFINT_V: f32 = 1.21;
/// Temperature sensor: voltage at 25 °C and slope, typical values (datasheet,
/// "Temperature sensor characteristics"; ±1.5 °C linearity, offset varies by chip up to 45 mV
/// or so: good for trends, not absolute readings).
const V25: f32 = 0.76;
const AVG_SLOPE_V_PER_C: f32 = 0.0025;
const FULL_SCALE: f32 = 4095.0;

/// Die temperature on `channel`, VDDA on `channel + 1`. Reading takes about 50 µs (two
/// conversions with the 10 µs minimum sampling time these inputs need).
pub struct McuSensors {
    adc: Adc<'static, ADC1>,
    vrefint: VrefInt,
    temperature: Temperature,
    channel: u8,
}

impl McuSensors {
    /// Enables the internal channels of `adc`.
    pub fn new(adc: Peri<'static, ADC1>, channel: u8) -> Self {
        let adc = Adc::new(adc);
        let vrefint = adc.enable_vrefint();
        let temperature = adc.enable_temperature();
        // Both need 10 µs to start up (VrefInt::start_time_us, Temperature::start_time_us).
        block_for(Duration::from_micros(10));
        Self {
            adc,
            vrefint,
            temperature,
            channel,
        }
    }
}

impl Sensor for McuSensors {
    type Error = Infallible;

    fn start(&mut self) -> Result<u32, Infallible> {
        Ok(0)
    }

    fn fetch(&mut self, emit: &mut dyn FnMut(Measurement)) -> Result<(), Infallible> {
        let vref = self
            .adc
            .blocking_read(&mut self.vrefint, SampleTime::CYCLES480);
        let temp = self
            .adc
            .blocking_read(&mut self.temperature, SampleTime::CYCLES480);
        // A zero reading gives an infinite value, which the core refuses and counts.
        let vdda = VREFINT_V * FULL_SCALE / f32::from(vref);
        let sense_v = f32::from(temp) * vdda / FULL_SCALE;
        emit(Measurement {
            channel: self.channel,
            kind: SensorKind::DIE_TEMPERATURE_C,
            value: (sense_v - V25) / AVG_SLOPE_V_PER_C + 25.0,
        });
        emit(Measurement {
            channel: self.channel + 1,
            kind: SensorKind::VOLTAGE_V,
            value: vdda,
        });
        Ok(())
    }
}
