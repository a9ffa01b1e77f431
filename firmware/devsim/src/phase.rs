//! When each simulated device boots, and so where its sampling slots fall (`--phase`).
//!
//! A device's first sample is taken the moment it boots and every `sample_period_ms` after
//! that (the core's sampler keeps the slots fixed), so a device's boot time is its phase.
//!
//! - [`Phase::Lockstep`] (the default): every device boots at once, so the whole fleet samples
//!   within a few ms of each other, every period. The behaviour the tests and benchmarks were
//!   calibrated on, and the worst case for a gateway (bursts).
//! - [`Phase::Random`]: device `i` boots [`start_offset_ms`] after the others' common start,
//!   uniform in `0..sample_period_ms` and fixed by `--seed`: what a real site looks like,
//!   devices powered on at unrelated moments.
//!
//! Invariant: an offset is always below the sample period, so every device has taken its
//! first sample within one period of the run's start, and `--duration` (device time) still
//! bounds how long each one produces.

use crate::device::seed_for;
use sensor_node_core::rng::SplitMix64;

/// `--phase`: how the devices' sampling slots line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Phase {
    /// All devices boot together and sample at the same moments.
    #[default]
    Lockstep,
    /// Each device boots at a random moment within one sample period (seeded by `--seed`).
    Random,
}

/// The seed stream of the boot offsets (streams 1-4 are jitter, sensor, link drops, faults).
const PHASE_STREAM: u64 = 5;

/// How long after the run's start device `index` boots, in ms (always `< period_ms`, 0 in
/// lockstep).
pub fn start_offset_ms(phase: Phase, seed: u64, index: usize, period_ms: u64) -> u64 {
    match phase {
        Phase::Lockstep => 0,
        Phase::Random => SplitMix64::new(seed_for(seed, index, PHASE_STREAM)).below(period_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(phase: Phase, seed: u64, n: usize, period_ms: u64) -> Vec<u64> {
        (0..n)
            .map(|i| start_offset_ms(phase, seed, i, period_ms))
            .collect()
    }

    #[test]
    fn lockstep_devices_all_start_at_once() {
        assert!(
            offsets(Phase::Lockstep, 7, 100, 2_000)
                .iter()
                .all(|&o| o == 0)
        );
    }

    #[test]
    fn random_phases_spread_evenly_over_one_period() {
        let period = 2_000;
        let all = offsets(Phase::Random, 1, 1_000, period);
        assert!(all.iter().all(|&o| o < period));
        // Ten equal slices of the period: 100 devices expected in each. A uniform spread of
        // 1,000 stays within 100 +- 40 with overwhelming probability (sd about 9.5); a
        // lockstep or clustered schedule does not.
        let mut slices = [0u32; 10];
        for o in &all {
            slices[(o * 10 / period) as usize] += 1;
        }
        for (i, n) in slices.iter().enumerate() {
            assert!(
                (60..=140).contains(n),
                "slice {i} has {n} devices: {slices:?}"
            );
        }
        // No burst: at most a few devices share any one millisecond.
        let mut sorted = all.clone();
        sorted.sort_unstable();
        let most_at_once = sorted
            .chunk_by(|a, b| a == b)
            .map(<[u64]>::len)
            .max()
            .unwrap_or(0);
        assert!(most_at_once <= 5, "{most_at_once} devices in one ms");
    }

    #[test]
    fn random_phases_are_reproducible_per_seed() {
        assert_eq!(
            offsets(Phase::Random, 42, 50, 1_000),
            offsets(Phase::Random, 42, 50, 1_000)
        );
        assert_ne!(
            offsets(Phase::Random, 42, 50, 1_000),
            offsets(Phase::Random, 43, 50, 1_000)
        );
    }

    #[test]
    fn a_one_ms_period_leaves_no_room_to_spread() {
        assert!(offsets(Phase::Random, 3, 20, 1).iter().all(|&o| o == 0));
    }
}
