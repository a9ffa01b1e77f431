//! Publish → durable-ack latency, measured per batch: from the first time a batch's last
//! reading was handed to the MQTT client to the ack that covers it. Resends do not restart
//! the clock, so link drops and lost batches show up as long latencies.

use std::collections::VecDeque;
use std::time::Instant;

/// Per-device latency tracker.
#[derive(Debug, Default)]
pub struct LatencyTracker {
    /// (last seq of a first-sent batch, when it was sent), in seq order.
    pending: VecDeque<(u32, Instant)>,
    /// Highest seq sent so far (first sends only are timed).
    highest_sent: Option<u32>,
    /// Latencies in milliseconds.
    pub samples_ms: Vec<f32>,
}

impl LatencyTracker {
    /// A batch with readings `first..=last` was sent.
    pub fn sent(&mut self, last: u32) {
        if self.highest_sent.is_none_or(|h| last > h) {
            self.highest_sent = Some(last);
            self.pending.push_back((last, Instant::now()));
        }
    }

    /// Everything through `through` was acked.
    pub fn acked(&mut self, through: u32) {
        let now = Instant::now();
        while let Some(&(last, at)) = self.pending.front() {
            if last > through {
                break;
            }
            self.samples_ms
                .push(now.duration_since(at).as_secs_f32() * 1000.0);
            self.pending.pop_front();
        }
    }
}

/// The `q`-quantile (0..=1) of `sorted` samples, nearest rank; 0 when empty.
pub fn quantile(sorted: &[f32], q: f64) -> f32 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_first_sends_until_covered() {
        let mut t = LatencyTracker::default();
        t.sent(9);
        t.sent(19);
        t.sent(9); // a resend: not timed again
        t.acked(9);
        assert_eq!(t.samples_ms.len(), 1);
        t.acked(25);
        assert_eq!(t.samples_ms.len(), 2);
        assert!(t.pending.is_empty());
    }

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f32> = (1..=100).map(|i| i as f32).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
