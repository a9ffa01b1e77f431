//! The injected clock. Everything time-dependent in the core (sampling, batch interval, ack
//! timeout, reconnect backoff) reads this one clock, so tests drive time by hand.

use core::future::Future;

/// A monotonic millisecond clock starting near 0 at boot; readings' `t_ms` and batches'
/// `sent_at_ms` come from it. Invariant: `now_ms` never decreases within one boot.
pub trait Clock {
    /// Milliseconds since boot.
    fn now_ms(&self) -> u64;

    /// Completes once `now_ms() >= deadline_ms` (at once if already past).
    fn sleep_until(&self, deadline_ms: u64) -> impl Future<Output = ()>;

    /// The UTC instant of boot (ms since the Unix epoch, so that `utc = boot_utc_ms + now_ms`)
    /// once the device knows it (SNTP, RTC), else `None`. Batches carry it from the moment it
    /// is known; without it the gateway dates readings by its own arrival time.
    fn boot_utc_ms(&self) -> Option<u64> {
        None
    }
}

impl<C: Clock> Clock for &C {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }

    fn sleep_until(&self, deadline_ms: u64) -> impl Future<Output = ()> {
        (**self).sleep_until(deadline_ms)
    }

    fn boot_utc_ms(&self) -> Option<u64> {
        (**self).boot_utc_ms()
    }
}
