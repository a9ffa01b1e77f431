//! Hooks that feed a hardware watchdog from the core's loop: the watchdog is fed only when the
//! loop wakes up and goes on ([`Hooks::on_wake`]), so a hung loop (a stuck driver, a deadlock,
//! a wait that never ends) resets the board. The boot counter is persisted before any reading
//! of a boot exists, so the reboot starts the next boot number.
//!
//! Invariant: the watchdog's period exceeds the longest wait without a wake-up, a transport
//! write bounded by the TCP timeout ([`crate::connector::TCP_TIMEOUT`]).

use sensor_node_core::Hooks;

/// Feeds the watchdog through `feed` at every wake-up of the loop.
#[derive(Debug)]
pub struct FeedWatchdog<F: FnMut()> {
    feed: F,
}

impl<F: FnMut()> FeedWatchdog<F> {
    /// Hooks calling `feed` (e.g. the IWDG's `pet`) on every wake-up.
    pub fn new(feed: F) -> Self {
        Self { feed }
    }
}

impl<F: FnMut()> Hooks for FeedWatchdog<F> {
    fn on_wake(&mut self, _now_ms: u64) {
        (self.feed)();
    }
}
