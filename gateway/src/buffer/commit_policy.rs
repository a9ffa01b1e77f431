//! When to commit: the trade between ack latency, device RAM and SD-card wear.
//!
//! Every redb commit costs about 28 KB of writes on top of its payload (see
//! `../shared/reference/RUMQTTD.md`), so many small commits wear an SD card out, while few
//! large ones make devices wait longer for their acks (and hold more readings in RAM).
//! The policy slides with the load, measured as record bytes per second:
//!
//! - at or below `low_load_bytes_per_sec`, readings wait up to `min_commit_interval` (a typical
//!   site of 1,000 devices at 1 reading/s makes about 60 KB/s of records: 0.9 s, so about 43 KB
//!   of payload per commit and about 1.4 disk bytes per payload byte, see `docs/benchmarks.md`
//!   "Wear at random phases");
//! - at or above 2x that rate, they wait at most `max_commit_delay` (latency first: the commit
//!   cost is small next to the payload anyway);
//! - in between, the wait falls geometrically from one to the other.
//!
//! Independently, a group commits as soon as `commit_bytes` are waiting.

use std::time::Duration;

/// The commit decision, given the load.
#[derive(Debug, Clone, Copy)]
pub struct CommitPolicy {
    /// Commit when this many record bytes wait.
    pub commit_bytes: u64,
    /// Wait at high load.
    pub max_commit_delay: Duration,
    /// Wait at low load.
    pub min_commit_interval: Duration,
    /// Load (bytes/s) at or below which the low-load wait applies.
    pub low_load_bytes_per_sec: f64,
}

/// Ratio between the rate where the high-load wait applies and `low_load_bytes_per_sec`.
const HIGH_LOAD_FACTOR: f64 = 2.0;

/// The step window in units of `max_commit_delay` (see [`CommitPolicy::step_window`]).
const STEP_WINDOW_FACTOR: u32 = 4;

impl CommitPolicy {
    /// How long the oldest waiting reading may wait at `bytes_per_sec`.
    pub fn wait_for(&self, bytes_per_sec: f64) -> Duration {
        let low = self.low_load_bytes_per_sec;
        let (slow, fast) = (self.min_commit_interval, self.max_commit_delay);
        if bytes_per_sec.is_nan() || bytes_per_sec <= low {
            return slow;
        }
        if bytes_per_sec >= low * HIGH_LOAD_FACTOR {
            return fast;
        }
        // Geometric interpolation: position 0 at `low`, 1 at `low * HIGH_LOAD_FACTOR`.
        let position = (bytes_per_sec / low).ln() / HIGH_LOAD_FACTOR.ln();
        let ratio = fast.as_secs_f64() / slow.as_secs_f64().max(f64::EPSILON);
        slow.mul_f64(ratio.powf(position)).max(fast)
    }

    /// How long a group's own arrival rate must last before it counts as a load step:
    /// [`STEP_WINDOW_FACTOR`] times `max_commit_delay` (100 ms by default). Shorter bursts
    /// (a fleet ticking in lockstep, 1,000 devices within a few tens of ms every second) are
    /// over by then and leave the slow, low-wear interval alone.
    pub fn step_window(&self) -> Duration {
        self.max_commit_delay * STEP_WINDOW_FACTOR
    }

    /// The load to decide on: the long-run estimate, or, once the group is older than
    /// [`Self::step_window`] and data is still arriving, the group's own arrival rate if that
    /// is higher. So a sustained load step is answered within the step window instead of after
    /// the estimate has caught up (the writer then raises the estimate to it, see
    /// [`RateEstimator::raise_to`]), while a burst that is over is not mistaken for high load,
    /// and a quiet site is never judged on a window too short to be meaningful.
    pub fn load(
        &self,
        estimate: f64,
        pending_bytes: u64,
        age: Duration,
        since_last_arrival: Duration,
    ) -> f64 {
        let ongoing = since_last_arrival < self.max_commit_delay / 2;
        if ongoing && age >= self.step_window() && !age.is_zero() {
            estimate.max(pending_bytes as f64 / age.as_secs_f64())
        } else {
            estimate
        }
    }

    /// How long to wait before deciding again on a group of this `age`: until the policy's
    /// wait runs out, but no later than when the group reaches the step window (when
    /// [`Self::load`] starts counting the group's own rate).
    pub fn recheck_in(&self, bytes_per_sec: f64, age: Duration) -> Duration {
        let wait = self.wait_for(bytes_per_sec).saturating_sub(age);
        match self.step_window().checked_sub(age) {
            Some(until_step) if !until_step.is_zero() => wait.min(until_step),
            _ => wait,
        }
    }

    /// Whether a group with `pending_bytes`, whose oldest reading has waited `age`, commits now.
    pub fn should_commit(&self, pending_bytes: u64, age: Duration, bytes_per_sec: f64) -> bool {
        pending_bytes >= self.commit_bytes || age >= self.wait_for(bytes_per_sec)
    }
}

/// Exponentially weighted moving average of a byte rate, with a time constant of about 2 s.
#[derive(Debug, Clone, Copy, Default)]
pub struct RateEstimator {
    bytes_per_sec: f64,
}

const TIME_CONSTANT_SECS: f64 = 2.0;

impl RateEstimator {
    /// Accounts for `bytes` that arrived over `elapsed`.
    pub fn observe(&mut self, bytes: u64, elapsed: Duration) {
        let dt = elapsed.as_secs_f64();
        if dt <= 0.0 {
            return;
        }
        let weight = 1.0 - (-dt / TIME_CONSTANT_SECS).exp();
        self.bytes_per_sec += weight * (bytes as f64 / dt - self.bytes_per_sec);
    }

    /// The current estimate.
    pub fn bytes_per_sec(&self) -> f64 {
        self.bytes_per_sec
    }

    /// Takes a load step the policy recognised (a rate sustained over its step window) at
    /// once, instead of converging on it over seconds while every group waits for the window.
    pub fn raise_to(&mut self, bytes_per_sec: f64) {
        if bytes_per_sec.is_finite() {
            self.bytes_per_sec = self.bytes_per_sec.max(bytes_per_sec);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CommitPolicy {
        CommitPolicy {
            commit_bytes: 256 * 1024,
            max_commit_delay: Duration::from_millis(25),
            min_commit_interval: Duration::from_millis(750),
            low_load_bytes_per_sec: 64.0 * 1024.0,
        }
    }

    #[test]
    fn wait_slides_from_slow_to_fast_with_load() {
        let p = policy();
        assert_eq!(p.wait_for(0.0), Duration::from_millis(750));
        assert_eq!(p.wait_for(50_000.0), Duration::from_millis(750));
        assert_eq!(p.wait_for(2.0 * 65_536.0), Duration::from_millis(25));
        assert_eq!(p.wait_for(1e9), Duration::from_millis(25));
        let mid = p.wait_for(2f64.sqrt() * 65_536.0);
        // Halfway on the log scale: the geometric mean of 750 ms and 25 ms.
        assert!(
            (mid.as_secs_f64() - (0.75f64 * 0.025).sqrt()).abs() < 1e-3,
            "{mid:?}"
        );
        let mut last = Duration::MAX;
        for rate in (1..200).map(|i| f64::from(i) * 2_000.0) {
            let w = p.wait_for(rate);
            assert!(w <= last, "wait must not grow with load");
            last = w;
        }
        assert_eq!(p.wait_for(f64::NAN), Duration::from_millis(750));
    }

    #[test]
    fn size_triggers_regardless_of_age() {
        let p = policy();
        assert!(p.should_commit(256 * 1024, Duration::ZERO, 0.0));
        assert!(!p.should_commit(1_000, Duration::from_millis(100), 0.0));
        assert!(p.should_commit(1_000, Duration::from_millis(30), 1e9));
    }

    #[test]
    fn a_load_step_is_answered_within_the_step_window() {
        let p = policy();
        let ms = Duration::from_millis;
        assert_eq!(p.step_window(), ms(100));
        // The long-run estimate still says idle, but 48 KB arrived in 100 ms (480 KB/s).
        assert_eq!(
            p.load(0.0, 12_000, ms(25), ms(0)),
            0.0,
            "too early to judge the group"
        );
        let load = p.load(0.0, 48_000, ms(100), ms(1));
        assert!(p.should_commit(48_000, ms(100), load));
        // The same bytes as a burst that ended 20 ms ago: not a load step.
        let burst = p.load(0.0, 48_000, ms(100), ms(20));
        assert!(!p.should_commit(48_000, ms(100), burst));
        assert_eq!(
            p.recheck_in(0.0, ms(10)),
            ms(90),
            "re-decide when the group is 100 ms old"
        );
        // A quiet site: 4.8 KB in 100 ms (48 KB/s) keeps waiting for the slow interval.
        let load = p.load(0.0, 4_800, ms(100), ms(1));
        assert!(!p.should_commit(4_800, ms(100), load));
        assert_eq!(p.recheck_in(load, ms(100)), ms(650));
    }

    #[test]
    fn a_recognised_step_raises_the_estimate_at_once() {
        let mut r = RateEstimator::default();
        r.observe(1_000, Duration::from_secs(1));
        r.raise_to(480_000.0);
        assert_eq!(r.bytes_per_sec(), 480_000.0);
        r.raise_to(1.0);
        assert_eq!(r.bytes_per_sec(), 480_000.0, "never lowers");
        r.raise_to(f64::NAN);
        assert_eq!(r.bytes_per_sec(), 480_000.0);
    }

    #[test]
    fn rate_estimate_converges() {
        let mut r = RateEstimator::default();
        for _ in 0..400 {
            r.observe(10_000, Duration::from_millis(100));
        }
        assert!((r.bytes_per_sec() - 100_000.0).abs() < 1.0);
    }
}
