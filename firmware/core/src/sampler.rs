//! The sampling schedule: one sensor cycle (start, wait for the conversion, fetch) every
//! `sample_period_ms`.
//!
//! Invariants:
//! - Slots are `start + k * period`; a late wake-up does not shift later slots.
//! - After a late wake-up at most `max_catch_up` due slots are sampled at once; older ones are
//!   skipped and counted, never invented.
//! - A reading's `t_ms` is the time its conversion was started.
//! - State lives here, not in a future, so the sleeping that surrounds it may be cancelled at
//!   any point without losing a started conversion.

use crate::sensor::{Measurement, Sensor};

/// What one call to [`Sampler::poll`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SampleReport {
    /// Sensor cycles completed.
    pub cycles: u32,
    /// Sensor errors (start or fetch).
    pub errors: u32,
    /// Slots skipped because the node woke too late.
    pub skipped: u64,
}

/// Sampling schedule state.
#[derive(Debug, Clone)]
pub struct Sampler {
    period_ms: u64,
    max_catch_up: u32,
    next_slot: u64,
    /// A started conversion: (started at, ready at).
    converting: Option<(u64, u64)>,
}

impl Sampler {
    /// First slot at `start_ms`.
    pub fn new(period_ms: u64, max_catch_up: u32, start_ms: u64) -> Self {
        Self {
            period_ms: period_ms.max(1),
            max_catch_up: max_catch_up.max(1),
            next_slot: start_ms,
            converting: None,
        }
    }

    /// When [`Sampler::poll`] next has work.
    pub fn next_deadline(&self) -> u64 {
        match self.converting {
            Some((_, ready)) => ready,
            None => self.next_slot,
        }
    }

    /// Runs every due sensor step; `record` gets each measurement with its time.
    pub fn poll<S: Sensor + ?Sized>(
        &mut self,
        now: u64,
        sensor: &mut S,
        record: &mut dyn FnMut(Measurement, u64),
    ) -> SampleReport {
        let mut report = SampleReport::default();
        for _ in 0..self.max_catch_up {
            if let Some((started, ready)) = self.converting {
                if now < ready {
                    return report;
                }
                self.converting = None;
                self.fetch(started, sensor, record, &mut report);
                continue;
            }
            if now < self.next_slot {
                return report;
            }
            self.next_slot = self.next_slot.saturating_add(self.period_ms);
            match sensor.start() {
                Ok(0) => self.fetch(now, sensor, record, &mut report),
                Ok(wait) => self.converting = Some((now, now.saturating_add(u64::from(wait)))),
                Err(_) => report.errors += 1,
            }
        }
        if self.converting.is_none() && self.next_slot <= now {
            let behind = (now - self.next_slot) / self.period_ms + 1;
            self.next_slot = self
                .next_slot
                .saturating_add(behind.saturating_mul(self.period_ms));
            report.skipped += behind;
        }
        report
    }

    fn fetch<S: Sensor + ?Sized>(
        &mut self,
        started: u64,
        sensor: &mut S,
        record: &mut dyn FnMut(Measurement, u64),
        report: &mut SampleReport,
    ) {
        match sensor.fetch(&mut |m| record(m, started)) {
            Ok(()) => report.cycles += 1,
            Err(_) => report.errors += 1,
        }
    }
}

#[cfg(any(test, feature = "target-tests"))]
// Test code: a failed expectation is the test failing (clippy.toml allows this under
// `#[cfg(test)]` only, which this module is not when `target-tests` compiles it for a target).
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
pub(crate) mod tests {
    use super::*;
    use telemetry_wire::SensorKind;

    /// Counts up; conversion takes `wait` ms; fails every `fail_every`-th start.
    struct Fake {
        wait: u32,
        n: u32,
        fail_every: u32,
    }

    impl Sensor for Fake {
        type Error = ();
        fn start(&mut self) -> Result<u32, ()> {
            self.n += 1;
            if self.fail_every != 0 && self.n.is_multiple_of(self.fail_every) {
                Err(())
            } else {
                Ok(self.wait)
            }
        }
        fn fetch(&mut self, emit: &mut dyn FnMut(Measurement)) -> Result<(), ()> {
            emit(Measurement {
                channel: 0,
                kind: SensorKind::COUNTER,
                value: self.n as f32,
            });
            Ok(())
        }
    }

    fn run(
        s: &mut Sampler,
        now: u64,
        sensor: &mut Fake,
        out: &mut heapless::Vec<(u64, f32), 32>,
    ) -> SampleReport {
        s.poll(now, sensor, &mut |m, t| {
            let _ = out.push((t, m.value));
        })
    }

    #[cfg_attr(test, test)]
    pub(crate) fn samples_on_schedule_with_conversion_time() {
        let mut s = Sampler::new(100, 4, 0);
        let mut sensor = Fake {
            wait: 9,
            n: 0,
            fail_every: 0,
        };
        let mut out = heapless::Vec::new();
        run(&mut s, 0, &mut sensor, &mut out);
        assert!(out.is_empty());
        assert_eq!(s.next_deadline(), 9);
        run(&mut s, 9, &mut sensor, &mut out);
        assert_eq!(
            out.as_slice(),
            &[(0, 1.0)],
            "stamped at start of conversion"
        );
        assert_eq!(s.next_deadline(), 100);
        run(&mut s, 50, &mut sensor, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[cfg_attr(test, test)]
    pub(crate) fn catches_up_a_little_then_skips() {
        let mut s = Sampler::new(10, 3, 0);
        let mut sensor = Fake {
            wait: 0,
            n: 0,
            fail_every: 0,
        };
        let mut out = heapless::Vec::new();
        let r = run(&mut s, 95, &mut sensor, &mut out);
        assert_eq!(r.cycles, 3);
        assert_eq!(r.skipped, 7, "slots 30..=90 skipped");
        assert_eq!(s.next_deadline(), 100);
        let r = run(&mut s, 100, &mut sensor, &mut out);
        assert_eq!((r.cycles, r.skipped), (1, 0));
    }

    #[cfg_attr(test, test)]
    pub(crate) fn sensor_errors_are_counted_not_recorded() {
        let mut s = Sampler::new(10, 1, 0);
        let mut sensor = Fake {
            wait: 0,
            n: 0,
            fail_every: 2,
        };
        let mut out = heapless::Vec::new();
        let mut errors = 0;
        for t in 0..4 {
            errors += run(&mut s, t * 10, &mut sensor, &mut out).errors;
        }
        assert_eq!((out.len(), errors), (2, 2));
    }
}
