//! The virtual board's "sensor": QEMU models no sensor on this board, so channel 0 reports
//! how many sensor cycles this boot has run (a `counter` reading). Every value is known in
//! advance, which lets the end-to-end tests check what the gateway stored.

use core::convert::Infallible;
use sensor_node_core::{Measurement, Sensor};
use telemetry_wire::SensorKind;

/// Counts its own conversions on one channel.
#[derive(Debug, Default)]
pub struct CycleCounter {
    cycles: u32,
}

impl Sensor for CycleCounter {
    type Error = Infallible;

    fn start(&mut self) -> Result<u32, Infallible> {
        self.cycles = self.cycles.wrapping_add(1);
        Ok(0)
    }

    fn fetch(&mut self, emit: &mut dyn FnMut(Measurement)) -> Result<(), Infallible> {
        emit(Measurement {
            channel: 0,
            kind: SensorKind::COUNTER,
            value: self.cycles as f32,
        });
        Ok(())
    }
}
