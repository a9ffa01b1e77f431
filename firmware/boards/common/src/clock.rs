//! The core's clock on embassy-time: milliseconds since the time driver started (reset).

use core::future::Future;
use embassy_time::{Instant, Timer};
use sensor_node_core::Clock;

/// [`Clock`] over the board's embassy-time driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmbassyClock;

impl Clock for EmbassyClock {
    fn now_ms(&self) -> u64 {
        Instant::now().as_millis()
    }

    fn sleep_until(&self, deadline_ms: u64) -> impl Future<Output = ()> {
        // Instant::from_millis multiplies by the tick rate: clamp so it cannot overflow.
        let deadline_ms = deadline_ms.min(Instant::MAX.as_millis());
        Timer::at(Instant::from_millis(deadline_ms))
    }
}
