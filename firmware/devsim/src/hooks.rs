//! The simulator's hooks into the core's I/O loop: when to stop producing, when to stop
//! (drained or drain timeout), corrupt extra payloads, and the log of acked ranges.

use crate::faults::corrupt_payload;
use crate::latency::LatencyTracker;
use sensor_node_core::rng::SplitMix64;
use sensor_node_core::{AckOutcome, Event, Hooks, Status};
use telemetry_wire::DeviceId;

/// One acked range of this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckedRange {
    /// Boot of the readings.
    pub boot: u32,
    /// First acked seq.
    pub from: u32,
    /// Last acked seq.
    pub through: u32,
}

/// Per-device simulator hooks.
#[derive(Debug)]
pub struct SimHooks<'d> {
    /// This device.
    pub device: DeviceId<'d>,
    /// This boot.
    pub boot: u32,
    /// Stop producing at this device time.
    pub produce_until_ms: Option<u64>,
    /// Stop producing after this many readings.
    pub produce_limit: Option<u64>,
    /// After producing stopped, wait this long for outstanding acks.
    pub drain_timeout_ms: u64,
    /// Expected corrupt payloads per real batch (0..=1).
    pub corrupt_share: f64,
    /// Random source for fault injection.
    pub rng: SplitMix64,
    /// When producing stopped.
    pub producing_stopped_at: Option<u64>,
    /// Acked ranges, when the acked log is wanted.
    pub acked: Option<Vec<AckedRange>>,
    /// Publish → ack latency.
    pub latency: LatencyTracker,
}

impl SimHooks<'_> {
    fn producing(&self, now: u64, status: &Status) -> bool {
        self.produce_until_ms.is_none_or(|end| now < end)
            && self.produce_limit.is_none_or(|n| status.produced < n)
    }
}

impl Hooks for SimHooks<'_> {
    fn sampling_enabled(&mut self, now_ms: u64, status: &Status) -> bool {
        let producing = self.producing(now_ms, status);
        if !producing && self.producing_stopped_at.is_none() {
            self.producing_stopped_at = Some(now_ms);
        }
        producing
    }

    fn should_stop(&mut self, now_ms: u64, status: &Status) -> bool {
        if self.sampling_enabled(now_ms, status) {
            return false;
        }
        let drained = status.buffered == 0;
        let timed_out = self
            .producing_stopped_at
            .is_some_and(|t| now_ms >= t.saturating_add(self.drain_timeout_ms));
        drained || timed_out
    }

    fn wants_extra_uplink(&mut self) -> bool {
        self.corrupt_share > 0.0 && f64::from(self.rng.unit_f32()) < self.corrupt_share
    }

    fn extra_uplink(&mut self, out: &mut [u8]) -> Option<usize> {
        corrupt_payload(&mut self.rng, self.device, self.boot, out)
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::BatchSent(plan) if plan.count > 0 => {
                self.latency.sent(plan.first_seq + (plan.count as u32 - 1));
            }
            Event::Ack(AckOutcome::Freed {
                boot,
                from,
                through,
            }) => {
                self.latency.acked(through);
                if let Some(log) = self.acked.as_mut() {
                    log.push(AckedRange {
                        boot,
                        from,
                        through,
                    });
                }
            }
            _ => {}
        }
    }
}
