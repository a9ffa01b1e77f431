//! A tiny deterministic pseudo-random generator (SplitMix64) for reconnect jitter and
//! simulated sensors. Not for cryptography.

/// SplitMix64: 64-bit state, full period, good enough statistics for jitter and noise.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose sequence depends only on `seed`.
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (0 when `bound` is 0); the modulo bias is negligible for our bounds.
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }

    /// Uniform in `[0, 1)`.
    pub fn unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(any(test, feature = "target-tests"))]
// Test code: a failed expectation is the test failing (clippy.toml allows this under
// `#[cfg(test)]` only, which this module is not when `target-tests` compiles it for a target).
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
pub(crate) mod tests {
    use super::*;

    #[cfg_attr(test, test)]
    pub(crate) fn deterministic_and_bounded() {
        let (mut a, mut b) = (SplitMix64::new(42), SplitMix64::new(42));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
            let x = a.below(7);
            assert!(x < 7);
            assert_eq!(x, b.below(7));
            let u = a.unit_f32();
            assert_eq!(u, b.unit_f32());
            assert!((0.0..1.0).contains(&u));
        }
        assert_eq!(a.below(0), 0);
    }
}
