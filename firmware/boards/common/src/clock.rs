//! The core's clock on embassy-time: milliseconds since the time driver started (reset), and
//! the UTC instant of boot once SNTP ([`crate::sntp`]) has learnt it.

use core::cell::Cell;
use core::future::Future;
use critical_section::Mutex;
use embassy_time::{Instant, Timer};
use sensor_node_core::Clock;

/// UTC of boot in ms since the Unix epoch, `None` until a time server answered.
static BOOT_UTC_MS: Mutex<Cell<Option<u64>>> = Mutex::new(Cell::new(None));

/// [`Clock`] over the board's embassy-time driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmbassyClock;

impl EmbassyClock {
    /// Records the UTC instant of boot (from SNTP); batches carry it from now on.
    pub fn set_boot_utc_ms(boot_utc_ms: u64) {
        critical_section::with(|cs| BOOT_UTC_MS.borrow(cs).set(Some(boot_utc_ms)));
    }
}

impl Clock for EmbassyClock {
    fn now_ms(&self) -> u64 {
        Instant::now().as_millis()
    }

    fn sleep_until(&self, deadline_ms: u64) -> impl Future<Output = ()> {
        // Instant::from_millis multiplies by the tick rate: clamp so it cannot overflow.
        let deadline_ms = deadline_ms.min(Instant::MAX.as_millis());
        Timer::at(Instant::from_millis(deadline_ms))
    }

    fn boot_utc_ms(&self) -> Option<u64> {
        critical_section::with(|cs| BOOT_UTC_MS.borrow(cs).get())
    }
}
