//! Hooks let a host (the simulator, tests) observe and steer the I/O loop without forking it.
//! Boards pass [`NoHooks`] or hooks that feed their watchdog ([`Hooks::on_wake`]).

use crate::node::AckOutcome;
use crate::sender::BatchPlan;
use crate::stats::Status;

/// Something the I/O loop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Event {
    /// An MQTT session is up and subscribed to the ack topic.
    Connected,
    /// The transport could not be opened, the handshake failed, or the connection was lost.
    Disconnected,
    /// A batch was handed to the MQTT client.
    BatchSent(BatchPlan),
    /// An ack payload arrived on our ack topic.
    Ack(AckOutcome),
    /// The ack timer expired: sending goes back to the oldest unacked reading.
    AckTimeout,
    /// An extra payload from [`Hooks::extra_uplink`] was published.
    ExtraSent,
}

/// Observation and control points of the I/O loop. Every method has a do-nothing default.
pub trait Hooks {
    /// Whether to keep sampling (checked at every wake-up). Returning `false` stops producing
    /// readings while the uplink goes on.
    fn sampling_enabled(&mut self, _now_ms: u64, _status: &Status) -> bool {
        true
    }

    /// The loop woke up (at least every `idle_wake_ms`, connected or not) and goes on:
    /// proof of progress, where a board feeds its watchdog. The only waits without such
    /// wake-ups are writes to the transport, bounded by its own timeout.
    fn on_wake(&mut self, _now_ms: u64) {}

    /// Whether the loop should end now (checked at every wake-up, at least every
    /// `idle_wake_ms`). The loop then disconnects gracefully and returns `Ok(())`.
    fn should_stop(&mut self, _now_ms: u64, _status: &Status) -> bool {
        false
    }

    /// Whether to publish an extra payload on the uplink topic after the batch just sent.
    fn wants_extra_uplink(&mut self) -> bool {
        false
    }

    /// Writes the extra payload into `out` (the MQTT client's buffer) and returns its length,
    /// or `None` to skip it. Fault injection: garbage the gateway must reject.
    fn extra_uplink(&mut self, _out: &mut [u8]) -> Option<usize> {
        None
    }

    /// Observes an event.
    fn on_event(&mut self, _event: Event) {}
}

/// Hooks that do nothing: what a board uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {}

impl<H: Hooks + ?Sized> Hooks for &mut H {
    fn sampling_enabled(&mut self, now_ms: u64, status: &Status) -> bool {
        (**self).sampling_enabled(now_ms, status)
    }
    fn should_stop(&mut self, now_ms: u64, status: &Status) -> bool {
        (**self).should_stop(now_ms, status)
    }
    fn wants_extra_uplink(&mut self) -> bool {
        (**self).wants_extra_uplink()
    }
    fn extra_uplink(&mut self, out: &mut [u8]) -> Option<usize> {
        (**self).extra_uplink(out)
    }
    fn on_event(&mut self, event: Event) {
        (**self).on_event(event)
    }
}
