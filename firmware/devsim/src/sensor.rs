//! A deterministic simulated environment sensor: temperature and humidity random walks from a
//! seed, emitting a fixed number of readings per sample up to an optional total.

use sensor_node_core::rng::SplitMix64;
use sensor_node_core::{Measurement, Sensor};
use telemetry_wire::SensorKind;

/// Random-walk temperature/humidity source. Channel `2k` is a temperature, `2k + 1` a
/// humidity; `per_sample` readings per sample cycle.
#[derive(Debug, Clone)]
pub struct SimSensor {
    rng: SplitMix64,
    temperature_c: f32,
    humidity_pct: f32,
    per_sample: u32,
    remaining: Option<u64>,
}

impl SimSensor {
    /// A sensor whose values depend only on `seed`; stops emitting after `limit` readings.
    pub fn new(seed: u64, per_sample: u32, limit: Option<u64>) -> Self {
        let mut rng = SplitMix64::new(seed);
        let temperature_c = 15.0 + 10.0 * rng.unit_f32();
        let humidity_pct = 30.0 + 40.0 * rng.unit_f32();
        Self {
            rng,
            temperature_c,
            humidity_pct,
            per_sample: per_sample.max(1),
            remaining: limit,
        }
    }

    /// Whether the reading limit is reached.
    #[cfg(test)]
    pub fn exhausted(&self) -> bool {
        self.remaining == Some(0)
    }
}

impl Sensor for SimSensor {
    type Error = std::convert::Infallible;

    fn start(&mut self) -> Result<u32, Self::Error> {
        Ok(0)
    }

    fn fetch(&mut self, emit: &mut dyn FnMut(Measurement)) -> Result<(), Self::Error> {
        for i in 0..self.per_sample {
            if self.remaining == Some(0) {
                break;
            }
            if let Some(r) = self.remaining.as_mut() {
                *r -= 1;
            }
            let step = self.rng.unit_f32() - 0.5;
            let m = if i % 2 == 0 {
                self.temperature_c = (self.temperature_c + 0.05 * step).clamp(-40.0, 85.0);
                Measurement {
                    channel: i as u8,
                    kind: SensorKind::TEMPERATURE_C,
                    value: self.temperature_c,
                }
            } else {
                self.humidity_pct = (self.humidity_pct + 0.2 * step).clamp(0.0, 100.0);
                Measurement {
                    channel: i as u8,
                    kind: SensorKind::HUMIDITY_PCT,
                    value: self.humidity_pct,
                }
            };
            emit(m);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(s: &mut SimSensor) -> Vec<Measurement> {
        let mut v = Vec::new();
        let _ = s.fetch(&mut |m| v.push(m));
        v
    }

    #[test]
    fn same_seed_same_values_and_limit_is_exact() {
        let (mut a, mut b) = (SimSensor::new(9, 3, Some(7)), SimSensor::new(9, 3, Some(7)));
        let (va, vb): (Vec<_>, Vec<_>) = (
            (0..4).flat_map(|_| collect(&mut a)).collect(),
            (0..4).flat_map(|_| collect(&mut b)).collect(),
        );
        assert_eq!(va, vb);
        assert_eq!(va.len(), 7);
        assert!(a.exhausted());
        assert!(va.iter().all(|m| m.value.is_finite()));
    }
}
