//! Combining a board's inputs (an external sensor and the MCU's own cheap ones) into the one
//! [`Sensor`] the core samples.

use sensor_node_core::{Measurement, Sensor};

/// Two sensors sampled together. One failing does not lose the other's readings: the failure
/// is reported (and counted by the core) after the other's measurements were emitted.
#[derive(Debug)]
pub struct Both<A: Sensor, B: Sensor> {
    first: A,
    second: B,
    /// Start errors, reported by the following fetch.
    start_failed: (Option<A::Error>, Option<B::Error>),
}

impl<A: Sensor, B: Sensor> Both<A, B> {
    /// Samples `first` and `second` in every cycle.
    pub fn new(first: A, second: B) -> Self {
        Self {
            first,
            second,
            start_failed: (None, None),
        }
    }
}

/// Which of the two sensors failed (the first one's error wins if both did).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BothError<A, B> {
    /// The first sensor failed.
    First(A),
    /// The second sensor failed.
    Second(B),
}

impl<A: Sensor, B: Sensor> Sensor for Both<A, B> {
    type Error = BothError<A::Error, B::Error>;

    /// Starts both; never fails (a failure is kept for [`Sensor::fetch`]), so the other
    /// sensor's conversion still happens.
    fn start(&mut self) -> Result<u32, Self::Error> {
        let a = self.first.start();
        let b = self.second.start();
        let wait = a
            .as_ref()
            .copied()
            .unwrap_or(0)
            .max(b.as_ref().copied().unwrap_or(0));
        self.start_failed = (a.err(), b.err());
        Ok(wait)
    }

    fn fetch(&mut self, emit: &mut dyn FnMut(Measurement)) -> Result<(), Self::Error> {
        let a = match self.start_failed.0.take() {
            Some(e) => Err(e),
            None => self.first.fetch(emit),
        };
        let b = match self.start_failed.1.take() {
            Some(e) => Err(e),
            None => self.second.fetch(emit),
        };
        a.map_err(BothError::First)?;
        b.map_err(BothError::Second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use telemetry_wire::SensorKind;

    struct Fake {
        channel: u8,
        wait: u32,
        fail_start: bool,
    }

    impl Sensor for Fake {
        type Error = u8;
        fn start(&mut self) -> Result<u32, u8> {
            if self.fail_start {
                Err(self.channel)
            } else {
                Ok(self.wait)
            }
        }
        fn fetch(&mut self, emit: &mut dyn FnMut(Measurement)) -> Result<(), u8> {
            emit(Measurement {
                channel: self.channel,
                kind: SensorKind::COUNTER,
                value: 1.0,
            });
            Ok(())
        }
    }

    fn cycle<A: Sensor, B: Sensor>(s: &mut Both<A, B>) -> (u32, heapless::Vec<u8, 4>, bool) {
        let wait = s.start().unwrap_or(u32::MAX);
        let mut channels = heapless::Vec::new();
        let ok = s
            .fetch(&mut |m| {
                let _ = channels.push(m.channel);
            })
            .is_ok();
        (wait, channels, ok)
    }

    #[test]
    fn waits_for_the_slower_and_emits_both() {
        let mut s = Both::new(
            Fake {
                channel: 0,
                wait: 9,
                fail_start: false,
            },
            Fake {
                channel: 2,
                wait: 0,
                fail_start: false,
            },
        );
        assert_eq!(
            cycle(&mut s),
            (9, heapless::Vec::from_slice(&[0, 2]).unwrap(), true)
        );
    }

    #[test]
    fn one_failing_keeps_the_other_and_reports_the_error() {
        let mut s = Both::new(
            Fake {
                channel: 0,
                wait: 9,
                fail_start: true,
            },
            Fake {
                channel: 2,
                wait: 0,
                fail_start: false,
            },
        );
        assert_eq!(s.start(), Ok(0));
        let mut seen = heapless::Vec::<u8, 4>::new();
        let r = s.fetch(&mut |m| {
            let _ = seen.push(m.channel);
        });
        assert_eq!((seen.as_slice(), r), (&[2][..], Err(BothError::First(0))));
        // The error is reported once: the next cycle starts afresh.
        s.first.fail_start = false;
        assert!(cycle(&mut s).2);
    }
}
