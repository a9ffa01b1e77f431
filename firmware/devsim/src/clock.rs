//! The core's clock on tokio time: milliseconds since the simulated device booted.

use sensor_node_core::Clock;
use tokio::time::{Duration, Instant};

/// Monotonic ms since `boot`.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    boot: Instant,
}

impl TokioClock {
    /// A clock whose 0 is now.
    pub fn start() -> Self {
        Self {
            boot: Instant::now(),
        }
    }

    /// The tokio instant of device time `ms`.
    pub fn instant(&self, ms: u64) -> Instant {
        self.boot + Duration::from_millis(ms)
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.boot.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn sleep_until(&self, deadline_ms: u64) -> impl Future<Output = ()> {
        tokio::time::sleep_until(self.instant(deadline_ms))
    }
}
