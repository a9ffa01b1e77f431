//! Reconnect backoff: exponential from a base up to a cap, with "equal jitter" (half fixed,
//! half random) from a seeded generator so a fleet that lost the broker together does not
//! reconnect in step, yet every run with the same seed waits the same.

use crate::rng::SplitMix64;

/// Exponential backoff with a cap and seeded jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    base_ms: u64,
    cap_ms: u64,
    attempt: u32,
    rng: SplitMix64,
}

impl Backoff {
    /// Delays grow `base, 2 base, 4 base, ...` up to `cap` (each then jittered into
    /// `[d/2, d]`).
    pub fn new(base_ms: u64, cap_ms: u64, seed: u64) -> Self {
        let base_ms = base_ms.max(1);
        Self {
            base_ms,
            cap_ms: cap_ms.max(base_ms),
            attempt: 0,
            rng: SplitMix64::new(seed),
        }
    }

    /// The delay before the next attempt; each call counts one more failed attempt.
    pub fn next_delay_ms(&mut self) -> u64 {
        let shift = self.attempt.min(32);
        let full = self.base_ms.saturating_mul(1u64 << shift).min(self.cap_ms);
        self.attempt = self.attempt.saturating_add(1);
        let half = full / 2;
        half + self.rng.below(full - half + 1)
    }

    /// Failed attempts since the last [`Backoff::reset`].
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// A connection succeeded: start again from the base delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(any(test, feature = "target-tests"))]
// Test code: a failed expectation is the test failing (clippy.toml allows this under
// `#[cfg(test)]` only, which this module is not when `target-tests` compiles it for a target).
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
pub(crate) mod tests {
    use super::*;

    #[cfg_attr(test, test)]
    pub(crate) fn grows_to_the_cap_with_bounded_jitter_and_resets() {
        let mut b = Backoff::new(100, 1_000, 7);
        let expected_full = [100u64, 200, 400, 800, 1_000, 1_000, 1_000];
        for full in expected_full {
            let d = b.next_delay_ms();
            assert!(
                d >= full / 2 && d <= full,
                "{d} not in [{}, {full}]",
                full / 2
            );
        }
        assert_eq!(b.attempts(), 7);
        b.reset();
        assert!(b.next_delay_ms() <= 100);
    }

    #[cfg_attr(test, test)]
    pub(crate) fn same_seed_same_delays_different_seed_differs() {
        let delays = |seed| {
            let mut b = Backoff::new(1_000, 60_000, seed);
            [(); 8].map(|()| b.next_delay_ms())
        };
        assert_eq!(delays(1), delays(1));
        assert_ne!(delays(1), delays(2));
    }

    #[cfg_attr(test, test)]
    pub(crate) fn never_overflows() {
        let mut b = Backoff::new(u64::MAX / 2, u64::MAX, 0);
        for _ in 0..100 {
            let _ = b.next_delay_ms();
        }
    }
}
